//! virtio-blk on modern virtio-pci.
//!
//! # Resources
//! - Virtual I/O Device (VIRTIO) Version 1.2: §2.7 split virtqueues, §4.1 virtio over PCI,
//!   §5.2 block device, §6 reserved feature bits (VERSION_1 = 32, ACCESS_PLATFORM = 33)
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod virtqueue;

use alloc::boxed::Box;
use alloc::sync::Arc;

use devmodel::{Driver, DriverData, MatchId, ProbeCtx, ProbeError};
use kapi::dev_info;
use kapi::logging::DevLog;
use pci_ecam::PciDevice;

/// PCI vendor ID of virtio devices.
pub const VENDOR: u16 = 0x1af4;
/// PCI device ID of a modern (non-transitional) virtio block device: 0x1040 + type 2.
pub const DEVICE_MODERN_BLK: u16 = 0x1042;

/// A bound virtio-blk function.
pub struct VirtioBlk {
    /// The PCI function.
    pub pci: Arc<PciDevice>,
}

struct VirtioBlkDriver;

/// The virtio-blk driver.
pub fn driver() -> Arc<dyn Driver> {
    Arc::new(VirtioBlkDriver)
}

const MATCH: [MatchId; 1] = [MatchId::Pci {
    vendor: VENDOR,
    device: DEVICE_MODERN_BLK,
}];

impl Driver for VirtioBlkDriver {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }
    fn match_table(&self) -> &[MatchId] {
        &MATCH
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let dev = ctx.device_arc();
        let log = DevLog::new("virtio-blk", &dev.name);
        let pci = dev
            .payload_arc::<PciDevice>()
            .ok_or_else(|| ProbeError::failed("not a PCI device"))?;
        dev_info!(
            log,
            "{} virtio capabilities",
            pci.vendor_capabilities().count()
        );
        Ok(Box::new(VirtioBlk { pci }))
    }
}
