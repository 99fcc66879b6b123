//! A `driver_managed_dma` driver for edu: the kind of driver (a GPU's, a VFIO-like one) that
//! manages IOMMU domains itself. The bus attaches no default domain for it — the device stays
//! blocked until the driver attaches its own UNMANAGED domain — and it maps through the IOMMU
//! API directly, with a fixed IOVA layout instead of an IOVA allocator.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::time::Duration;

use addr::{Iova, PAGE_SIZE};
use devmodel::{Driver, DriverData, MatchId, ProbeCtx, ProbeError};
use iommu::{IommuDomain, Prot};
use kapi::dma_mem::Frames;
use kapi::logging::DevLog;
use kapi::{dev_err, dev_info};
use pci_ecam::PciDevice;
use tock_registers::interfaces::{Readable, Writeable};

use crate::regs::{DMA_BUFFER, DMA_CMD, EDU_ID, EduRegs};
use crate::{DEVICE, EduConfig, VENDOR};

/// The fixed IOVA where the driver maps its source page (below edu's 28-bit mask).
pub const SRC_IOVA: Iova = Iova(0x0010_0000);
/// The fixed IOVA of its destination page.
pub const DST_IOVA: Iova = Iova(0x0020_0000);

/// A bound self-managing edu: its own domain and the two pages mapped in it.
pub struct ManagedEdu {
    /// Device name.
    pub name: String,
    pci: Arc<PciDevice>,
    domain: Arc<dyn IommuDomain>,
    src: Frames,
    dst: Frames,
    log: DevLog,
    /// The round trip at probe worked.
    pub verified: bool,
}

struct ManagedDriver {
    config: EduConfig,
}

/// The self-managing edu driver (binds only functions listed in `edu.managed`).
pub fn managed_driver(config: EduConfig) -> Arc<dyn Driver> {
    Arc::new(ManagedDriver { config })
}

const MATCH: [MatchId; 1] = [MatchId::Pci {
    vendor: VENDOR,
    device: DEVICE,
}];

/// A failed probe. The bus model prints it, once, with the device and the driver.
fn failed(e: impl core::fmt::Display) -> ProbeError {
    ProbeError::failed(e)
}

/// Polls the command register until the transfer is done (the driver keeps no interrupt: it is
/// an example of domain management, not of interrupt handling).
fn run(regs: &EduRegs, src: u64, dst: u64, to_device: bool) -> Result<(), kapi::time::TimedOut> {
    regs.DMA_SRC.set(src);
    regs.DMA_DST.set(dst);
    regs.DMA_COUNT.set(PAGE_SIZE);
    let dir = if to_device {
        DMA_CMD::DIRECTION::ToDevice
    } else {
        DMA_CMD::DIRECTION::FromDevice
    };
    regs.DMA_CMD.write(DMA_CMD::START::SET + dir);
    kapi::time::wait_until(Duration::from_secs(2), || {
        regs.DMA_CMD.read(DMA_CMD::START) == 0
    })
}

impl Driver for ManagedDriver {
    fn name(&self) -> &'static str {
        "edu-managed"
    }
    fn match_table(&self) -> &[MatchId] {
        &MATCH
    }
    fn driver_managed_dma(&self) -> bool {
        true
    }
    fn accepts(&self, dev: &devmodel::DeviceInfo) -> bool {
        self.config.managed.contains(&dev.name)
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let info = ctx.device_arc();
        let log = DevLog::new("edu-managed", &info.name);
        let pci = info
            .payload_arc::<PciDevice>()
            .ok_or_else(|| failed("not a PCI device"))?;
        let regs = pci
            .map_bar(0)
            .and_then(|b| b.view::<EduRegs>(0).map_err(Into::into))
            .map_err(failed)?;
        if regs.ID.get() != EDU_ID {
            return Err(failed("not an edu"));
        }
        let attached = iommu::core().attached_type(&info.name);
        dev_info!(
            log,
            "bound without a default domain (attached: {})",
            attached.map_or(String::from("none"), |t| format!("{t}"))
        );
        let domain = iommu::core().alloc_unmanaged(&info.name).map_err(failed)?;
        let src = Frames::alloc(0).ok_or_else(|| failed("out of memory"))?;
        let dst = Frames::alloc(0).ok_or_else(|| failed("out of memory"))?;
        for i in 0..PAGE_SIZE {
            src.write_u8(i, (i as u8) ^ 0x5a);
        }
        // The driver's own layout: source and destination pages at fixed IOVAs.
        domain
            .map(SRC_IOVA, src.pa(), PAGE_SIZE, Prot::RO)
            .map_err(failed)?;
        domain
            .map(DST_IOVA, dst.pa(), PAGE_SIZE, Prot::RW)
            .map_err(failed)?;
        iommu::core()
            .attach_unmanaged(&info.name, &domain)
            .map_err(failed)?;
        let mut me = ManagedEdu {
            name: info.name.clone(),
            pci: pci.clone(),
            domain,
            src,
            dst,
            log: log.clone(),
            verified: false,
        };
        pci.set_bus_master(true);
        let ok = run(&regs, SRC_IOVA.0, DMA_BUFFER, true).is_ok()
            && run(&regs, DMA_BUFFER, DST_IOVA.0, false).is_ok();
        me.verified = ok && (0..PAGE_SIZE).all(|i| me.dst.read_u8(i) == (i as u8) ^ 0x5a);
        dev_info!(
            log,
            "own {} domain: source at {:#x}, destination at {:#x}; round trip {}",
            me.domain.name(),
            SRC_IOVA.0,
            DST_IOVA.0,
            if me.verified { "ok" } else { "FAILED" }
        );
        Ok(Box::new(me))
    }
}

impl Drop for ManagedEdu {
    fn drop(&mut self) {
        self.pci.set_bus_master(false);
        // Detach before unmapping: the device must not walk tables that are being torn down.
        let _ = iommu::core().detach_unmanaged(&self.name);
        for iova in [SRC_IOVA, DST_IOVA] {
            self.domain.unmap(iova, PAGE_SIZE);
        }
        // Detached first, so even a failed invalidation leaves no path to the pages.
        if let Err(e) = self.domain.iotlb_sync() {
            dev_err!(self.log, "invalidating its domain: {e}");
        }
        dev_info!(self.log, "detached its domain and unmapped its pages");
        let _ = (&self.src, &self.dst);
    }
}
