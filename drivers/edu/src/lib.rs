//! QEMU's `edu` device (1234:11e8): a PCI function with a 4 KiB buffer and a DMA engine that
//! copies between it and memory. Its default 28-bit DMA mask (it cannot reach RAM at 1 GiB
//! without an IOMMU) makes it the natural test of "the IOVA allocator honours the DMA mask".
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod regs;

use alloc::boxed::Box;
use alloc::sync::Arc;

use devmodel::{Driver, DriverData, MatchId, ProbeCtx, ProbeError};
use kapi::dev_info;
use kapi::logging::DevLog;
use kapi::mmio::Mmio;
use pci_ecam::PciDevice;
use regs::{EDU_ID, EduRegs};
use tock_registers::interfaces::Readable;

/// PCI vendor ID of QEMU's test devices.
pub const VENDOR: u16 = 0x1234;
/// PCI device ID of edu.
pub const DEVICE: u16 = 0x11e8;

/// A bound edu.
pub struct Edu {
    /// The PCI function.
    pub pci: Arc<PciDevice>,
    /// BAR0.
    pub regs: Mmio<EduRegs>,
    /// Log target.
    pub log: DevLog,
}

struct EduDriver;

/// The edu driver.
pub fn driver() -> Arc<dyn Driver> {
    Arc::new(EduDriver)
}

const MATCH: [MatchId; 1] = [MatchId::Pci {
    vendor: VENDOR,
    device: DEVICE,
}];

impl Driver for EduDriver {
    fn name(&self) -> &'static str {
        "edu"
    }
    fn match_table(&self) -> &[MatchId] {
        &MATCH
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let dev = ctx.device_arc();
        let log = DevLog::new("edu", &dev.name);
        let pci = dev
            .payload_arc::<PciDevice>()
            .ok_or_else(|| ProbeError::failed("not a PCI device"))?;
        let bar = pci.map_bar(0).map_err(ProbeError::failed)?;
        let regs = bar.view::<EduRegs>(0).map_err(ProbeError::failed)?;
        let id = regs.ID.get();
        if id != EDU_ID {
            return Err(ProbeError::failed(alloc::format!(
                "identification register reads {id:#010x}, expected {EDU_ID:#010x}"
            )));
        }
        dev_info!(
            log,
            "edu {}.{}, BAR0 at {:#x}",
            id >> 24,
            (id >> 16) & 0xff,
            bar.base().0
        );
        Ok(Box::new(Edu { pci, regs, log }))
    }
}
