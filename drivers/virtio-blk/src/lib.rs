//! virtio-blk on modern virtio-pci, behind an IOMMU.
//!
//! The device negotiates VIRTIO_F_ACCESS_PLATFORM, so it reaches memory through the platform's
//! DMA translation: every address it is given comes from the DMA API (`dma::DmaDevice`) the
//! bus model attached at bind — IOVAs behind the SMMU, bus addresses otherwise. The queue and
//! the request headers live in one coherent allocation; data buffers are streaming mappings
//! typed by direction; MSI-X messages target the doorbell as the device's DMA sees it.
//!
//! Layers, each host-tested where it is pure:
//! - [`caps`]: finding the virtio structures in the PCI capability list;
//! - [`transport`]: the mapped structures, the status handshake, feature negotiation
//!   ([`features`]), queue set-up, notification;
//! - [`virtqueue`]: the split ring; [`engine`]: requests in flight and their completion
//!   bookkeeping; [`request`]: request encoding and the checks of requests and completions;
//! - [`disk`]: probe, interrupts, the request API ([`Disk`], [`Ticket`]) and teardown.
//!
//! A device is untrusted: capability fields, configuration values, used-ring indices and
//! lengths and status bytes are all checked. A device that breaks the protocol (an unknown
//! used index, an impossible length, a request that never completes) is reset and marked
//! broken; its outstanding requests fail, and no buffer it could still write is freed.
//!
//! Context: requests are submitted and waited for in thread context; completions are reaped
//! by the interrupt handler.
//!
//! # Resources
//! - Virtual I/O Device (VIRTIO) Version 1.2: §2.7 split virtqueues, §3.1 device
//!   initialization, §4.1 virtio over PCI, §5.2 block device, §6 reserved feature bits
//!   (VERSION_1 = 32, ACCESS_PLATFORM = 33)
//! - PCI Local Bus 3.0 §6.8.2 (MSI-X)
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod caps;
pub mod disk;
pub mod engine;
pub mod error;
pub mod features;
pub mod pattern;
pub mod regs;
pub mod request;
pub mod transport;
pub mod virtqueue;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod ktests;

use alloc::boxed::Box;
use alloc::sync::Arc;

use devmodel::{Driver, DriverData, MatchId, ProbeCtx, ProbeError};

pub use disk::{Disk, Interrupts, REQUEST_TIMEOUT, Ticket, bound};
pub use engine::Stats;
pub use error::{BlkError, BrokenReason};
pub use features::Features;
pub use request::{Limits, SECTOR_SIZE};

/// PCI vendor ID of virtio devices.
pub const VENDOR: u16 = 0x1af4;
/// PCI device ID of a modern (non-transitional) virtio block device: 0x1040 + type 2.
pub const DEVICE_MODERN_BLK: u16 = 0x1042;

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
        Ok(Box::new(disk::probe(ctx)?))
    }
}
