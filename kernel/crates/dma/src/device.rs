//! A device's DMA ops, chosen at bind.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use addr::{Iova, PAGE_SIZE, PhysAddr, VirtAddr};
use iommu::Prot;
use kapi::sync::IrqLock;

use crate::bounce::BouncePool;
use crate::debug::{Kind, Tracker};
use crate::direct::BusMap;
use crate::direction::Direction;
use crate::error::DmaError;
use crate::iommu_dma::IommuDma;
use crate::sg::SegmentLimits;
use crate::stats::{BOUNCED, LIVE_MAPPINGS, dec, inc};

/// How the device reaches memory.
pub(crate) enum Backend {
    Iommu(Arc<IommuDma>),
    Direct { bounce: Option<Arc<BouncePool>> },
    None(String),
}

/// A device's DMA ops and limits. Built by the kernel at bind; drivers get it from their probe
/// context and use it for every mapping.
pub struct DmaDevice {
    name: String,
    pub(crate) backend: Backend,
    coherent: bool,
    dma_mask: AtomicU64,
    coherent_mask: AtomicU64,
    pub(crate) bus: BusMap,
    pub(crate) limits: IrqLock<SegmentLimits>,
    pub(crate) tracker: Option<IrqLock<Tracker>>,
    msi_doorbell: Option<PhysAddr>,
    msi_device_id: Option<u32>,
    /// Set when the driver unbinds: no new mapping or allocation from then on, even through an
    /// `Arc` that outlived the binding (unmaps and frees still work).
    revoked: AtomicBool,
}

impl core::fmt::Debug for DmaDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DmaDevice({}, {})", self.name, self.ops_name())
    }
}

/// Builds a [`DmaDevice`] (the kernel's side).
pub struct DmaDeviceBuilder {
    dev: DmaDevice,
}

/// The default DMA mask until the driver sets its own (PCI's traditional 32 bits).
pub const DEFAULT_MASK_BITS: u32 = 32;

fn mask_of(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl DmaDeviceBuilder {
    fn with(name: &str, backend: Backend) -> Self {
        Self {
            dev: DmaDevice {
                name: name.to_string(),
                backend,
                coherent: true,
                dma_mask: AtomicU64::new(mask_of(DEFAULT_MASK_BITS)),
                coherent_mask: AtomicU64::new(mask_of(DEFAULT_MASK_BITS)),
                bus: BusMap::identity(),
                limits: IrqLock::new(SegmentLimits::NONE),
                tracker: None,
                msi_doorbell: None,
                msi_device_id: None,
                revoked: AtomicBool::new(false),
            },
        }
    }
    /// A device translated by an IOMMU domain.
    pub fn iommu(name: &str, dma: Arc<IommuDma>) -> Self {
        Self::with(name, Backend::Iommu(dma))
    }
    /// A device that reaches physical memory directly (no IOMMU, or an identity domain).
    pub fn direct(name: &str, bounce: Option<Arc<BouncePool>>) -> Self {
        Self::with(name, Backend::Direct { bounce })
    }
    /// A device with no DMA access.
    pub fn blocked(name: &str, reason: &str) -> Self {
        Self::with(name, Backend::None(reason.to_string()))
    }
    /// `dma-coherent`.
    pub fn coherent(mut self, coherent: bool) -> Self {
        self.dev.coherent = coherent;
        self
    }
    /// The bus's `dma-ranges` windows.
    pub fn bus(mut self, bus: BusMap) -> Self {
        self.dev.bus = bus;
        self
    }
    /// Record and check every mapping (`dma.debug=1`).
    pub fn debug(mut self, on: bool) -> Self {
        self.dev.tracker = on.then(|| IrqLock::new(Tracker::default()));
        self
    }
    /// The device's MSI target: the controller's doorbell and the DeviceID it knows it by.
    pub fn msi(mut self, doorbell: PhysAddr, device_id: u32) -> Self {
        self.dev.msi_doorbell = Some(doorbell);
        self.dev.msi_device_id = Some(device_id);
        self
    }
    /// The device.
    pub fn build(self) -> Arc<DmaDevice> {
        Arc::new(self.dev)
    }
}

/// A mapping made with [`DmaDevice::map_single`] (the address-based API the handles build on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMapping {
    /// What the device uses.
    pub addr: Iova,
    /// Length in bytes.
    pub len: u64,
    /// Direction.
    pub dir: Direction,
    pub(crate) pa: PhysAddr,
    pub(crate) how: How,
}

impl RawMapping {
    /// The memory the device actually accesses: the buffer, or its bounce slot.
    pub(crate) fn device_side_pa(&self) -> PhysAddr {
        match self.how {
            How::Bounce { slot } => slot,
            _ => self.pa,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// Pages mapped at `base` (IOVA) spanning `size` bytes.
    Iommu { base: Iova, size: u64 },
    /// The device uses the physical address, shifted by the bus.
    Direct,
    /// Copied through the bounce slot at `slot`.
    Bounce { slot: PhysAddr },
}

pub(crate) fn prot(dir: Direction, coherent: bool) -> Prot {
    Prot {
        read: dir.device_reads(),
        write: dir.device_writes(),
        cacheable: coherent,
        mmio: false,
    }
}

impl DmaDevice {
    /// Device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `iommu`, `direct` or `none`, for logs.
    pub fn ops_name(&self) -> &'static str {
        match self.backend {
            Backend::Iommu(_) => "iommu",
            Backend::Direct { .. } => "direct",
            Backend::None(_) => "none",
        }
    }

    /// True when the device's DMA goes through a translated IOMMU domain (its bus addresses
    /// are IOVAs), false for direct DMA or none. What a driver may know of the IOMMU.
    pub fn is_translated(&self) -> bool {
        matches!(self.backend, Backend::Iommu(_))
    }

    /// The IOMMU DMA state, for devices behind a translated domain. For the kernel's own tests,
    /// benchmarks and leak checks; drivers use the DMA API and [`DmaDevice::is_translated`].
    pub fn iommu_dma(&self) -> Option<&Arc<IommuDma>> {
        match &self.backend {
            Backend::Iommu(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the device's accesses are cache-coherent.
    pub fn is_coherent(&self) -> bool {
        self.coherent
    }

    /// Sets the streaming and coherent masks to `bits` address bits. Thread context, in probe.
    pub fn set_mask(&self, bits: u32) -> Result<(), DmaError> {
        self.set_streaming_mask(bits)?;
        self.set_coherent_mask(bits)
    }

    /// Sets the streaming mask.
    pub fn set_streaming_mask(&self, bits: u32) -> Result<(), DmaError> {
        if !(12..=64).contains(&bits) {
            return Err(DmaError::BadMask(bits));
        }
        self.dma_mask.store(mask_of(bits), Ordering::Relaxed);
        Ok(())
    }

    /// Sets the coherent-allocation mask.
    pub fn set_coherent_mask(&self, bits: u32) -> Result<(), DmaError> {
        if !(12..=64).contains(&bits) {
            return Err(DmaError::BadMask(bits));
        }
        self.coherent_mask.store(mask_of(bits), Ordering::Relaxed);
        Ok(())
    }

    /// The streaming mask.
    pub fn mask(&self) -> u64 {
        self.dma_mask.load(Ordering::Relaxed)
    }

    /// The coherent mask.
    pub fn coherent_mask(&self) -> u64 {
        self.coherent_mask.load(Ordering::Relaxed)
    }

    /// Highest address the device may be given: its mask combined with the bus limit.
    pub fn limit(&self, coherent: bool) -> u64 {
        let mask = if coherent {
            self.coherent_mask()
        } else {
            self.mask()
        };
        mask.min(self.bus.bus_limit())
    }

    /// Sets the largest segment a scatter-gather list may produce.
    pub fn set_max_segment_size(&self, size: u64) {
        self.limits.lock().max_segment_size = size.max(PAGE_SIZE);
    }

    /// Sets the segment boundary: no segment crosses a multiple of `mask + 1`.
    pub fn set_segment_boundary(&self, mask: u64) {
        self.limits.lock().boundary_mask = mask | (PAGE_SIZE - 1);
    }

    /// The MSI message address to give the device for a doorbell at `pa`: the doorbell's IOVA
    /// in a translated domain, its bus address otherwise. `None` if the device cannot reach it.
    pub fn msi_address(&self, pa: PhysAddr) -> Option<Iova> {
        match &self.backend {
            Backend::Iommu(d) => d.msi_address(pa),
            Backend::Direct { .. } => self.bus.to_bus(pa.0, 4).map(Iova),
            Backend::None(_) => None,
        }
    }

    /// The DeviceID the MSI controller knows this device by, if it has one.
    pub fn msi_device_id(&self) -> Option<u32> {
        self.msi_device_id
    }

    /// Ends the device's DMA ops (the kernel calls it when the driver unbinds, before the
    /// IOMMU blocks the device): every later map or allocation fails, whoever still holds the
    /// ops. Mappings that still exist can be unmapped. Thread context.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    /// `Err` once [`DmaDevice::revoke`] has run.
    pub(crate) fn check_not_revoked(&self) -> Result<(), DmaError> {
        if self.revoked.load(Ordering::Acquire) {
            return Err(DmaError::NoDma(alloc::format!(
                "{}: the driver has unbound, its DMA ops are revoked",
                self.name
            )));
        }
        Ok(())
    }

    /// The doorbell the firmware routes this device's MSIs to.
    pub fn msi_doorbell(&self) -> Option<PhysAddr> {
        self.msi_doorbell
    }

    pub(crate) fn virt_to_phys(buf: &[u8]) -> Result<PhysAddr, DmaError> {
        let va = buf.as_ptr() as u64;
        kapi::platform::get()
            .virt_to_phys(VirtAddr(va))
            .ok_or(DmaError::NotRam { va })
    }

    /// Maps `len` bytes at `pa` for `dir`. `data` is the buffer's content for a bounce (so the
    /// copy needs no raw access): without it an out-of-reach buffer is refused.
    pub(crate) fn map_range(
        &self,
        pa: PhysAddr,
        len: u64,
        dir: Direction,
        data: Option<&[u8]>,
    ) -> Result<RawMapping, DmaError> {
        if len == 0 {
            return Err(DmaError::Empty);
        }
        self.check_not_revoked()?;
        let mapping = match &self.backend {
            Backend::None(reason) => return Err(DmaError::NoDma(reason.clone())),
            Backend::Iommu(d) => {
                let offset = pa.0 & (PAGE_SIZE - 1);
                let size = (offset + len).next_multiple_of(PAGE_SIZE);
                // One IRQ-masked section for the allocator's lock and the table's.
                let base = kapi::irq::with_irqs_masked(|| {
                    let base = d.alloc_iova(size, self.limit(false))?;
                    if let Err(e) = d.map(
                        base,
                        PhysAddr(pa.0 - offset),
                        size,
                        prot(dir, self.coherent),
                    ) {
                        d.free_unmapped_iova(base, size);
                        return Err(e);
                    }
                    Ok(base)
                })?;
                RawMapping {
                    addr: Iova(base.0 + offset),
                    len,
                    dir,
                    pa,
                    how: How::Iommu { base, size },
                }
            }
            Backend::Direct { bounce } => match self.bus.reachable(pa.0, len, self.mask()) {
                Some(bus) => RawMapping {
                    addr: Iova(bus),
                    len,
                    dir,
                    pa,
                    how: How::Direct,
                },
                None => {
                    let unreachable = DmaError::Unreachable {
                        pa: pa.0,
                        len,
                        mask: self.mask(),
                    };
                    let (Some(pool), Some(data)) = (bounce, data) else {
                        return Err(unreachable);
                    };
                    let limit_pa = self.highest_reachable_pa().ok_or(unreachable.clone())?;
                    let slot = pool.alloc(len, limit_pa).ok_or(unreachable.clone())?;
                    let Some(bus) = self.bus.reachable(slot.0, len, self.mask()) else {
                        pool.free(slot, len);
                        return Err(unreachable);
                    };
                    // Whatever the direction: a device that writes less than the whole
                    // buffer must leave the buffer's own bytes in the rest, not what an
                    // earlier user left in the slot.
                    pool.write(slot, data);
                    inc(&BOUNCED);
                    RawMapping {
                        addr: Iova(bus),
                        len,
                        dir,
                        pa,
                        how: How::Bounce { slot },
                    }
                }
            },
        };
        self.sync_for_device_cache(&mapping);
        inc(&LIVE_MAPPINGS);
        Ok(mapping)
    }

    /// The highest physical address this device can reach (for placing a bounce slot).
    fn highest_reachable_pa(&self) -> Option<u64> {
        self.bus
            .reachable_cpu_ranges(self.mask())
            .last()
            .map(|r| r.1)
    }

    /// Undoes `map_range`; `out` receives a bounced buffer's content for the CPU.
    pub(crate) fn unmap_range(
        &self,
        m: &RawMapping,
        out: Option<&mut [u8]>,
    ) -> Result<(), DmaError> {
        dec(&LIVE_MAPPINGS);
        match (&self.backend, m.how) {
            (Backend::Iommu(d), How::Iommu { base, size }) => {
                // The table's lock, the command queue's and the allocator's in one masked
                // section.
                kapi::irq::with_irqs_masked(|| d.unmap(base, size, size, &self.name))?
            }
            (Backend::Direct { bounce: Some(pool) }, How::Bounce { slot }) => {
                if m.dir.device_writes()
                    && let Some(out) = out
                {
                    pool.read(slot, out);
                }
                pool.free(slot, m.len);
            }
            (Backend::Direct { .. }, How::Direct) => {}
            _ => {
                return Err(DmaError::Invariant(alloc::format!(
                    "{}: mapping does not belong to these DMA ops",
                    self.name
                )));
            }
        }
        self.sync_for_cpu_cache(m);
        Ok(())
    }

    /// Makes what the device wrote visible to the CPU (non-coherent: invalidate the lines of
    /// the memory the device wrote: the buffer, or its bounce slot).
    pub(crate) fn sync_for_cpu_cache(&self, m: &RawMapping) {
        if m.dir.device_writes() && !self.coherent {
            let va = kapi::platform::get().phys_to_virt(m.device_side_pa());
            kapi::platform::get().cache_invalidate(va, m.len);
        }
    }

    /// Makes what the CPU wrote visible to the device (non-coherent: clean to the point of
    /// coherency, Arm ARM D7.5, so the device reads memory rather than stale lines).
    pub(crate) fn sync_for_device_cache(&self, m: &RawMapping) {
        if m.dir.device_reads() && !self.coherent {
            let va = kapi::platform::get().phys_to_virt(m.device_side_pa());
            kapi::platform::get().cache_clean(va, m.len);
        }
    }

    pub(crate) fn track_map(&self, addr: Iova, len: u64, dir: Direction, kind: Kind) {
        if let Some(t) = &self.tracker {
            t.lock().mapped(&self.name, addr.0, len, dir, kind);
        }
    }

    pub(crate) fn track_unmap(&self, addr: Iova, len: u64, dir: Direction, kind: Kind) -> bool {
        match &self.tracker {
            Some(t) => t.lock().unmapped(&self.name, addr.0, len, dir, kind),
            None => true,
        }
    }

    /// Maps `len` bytes of kernel memory at `pa` for the device — the address-based API, for
    /// buffers a driver does not own as a `Vec` (prefer [`DmaDevice::map`] otherwise). A buffer
    /// the device cannot reach is refused (bouncing needs the owned buffer).
    pub fn map_single(
        &self,
        pa: PhysAddr,
        len: u64,
        dir: Direction,
    ) -> Result<RawMapping, DmaError> {
        let m = self.map_range(pa, len, dir, None)?;
        self.track_map(m.addr, m.len, dir, Kind::Single);
        Ok(m)
    }

    /// Unmaps a [`DmaDevice::map_single`] mapping. With debug checks on, an unmap that does not
    /// match a live mapping (unknown address, double unmap, other size or direction) is reported
    /// with the device's name; unknown and double unmaps are then not performed.
    pub fn unmap_single(&self, m: &RawMapping) -> Result<(), DmaError> {
        if !self.track_unmap(m.addr, m.len, m.dir, Kind::Single) {
            return Err(DmaError::Invariant(alloc::format!(
                "{}: unmap of {:#x} does not match a live mapping",
                self.name,
                m.addr.0
            )));
        }
        self.unmap_range(m, None)
    }

    /// Called when the driver unbinds: reports mappings it left behind (debug checks).
    pub fn report_leftovers(&self) -> usize {
        self.tracker
            .as_ref()
            .map_or(0, |t| t.lock().report_leftovers(&self.name))
    }
}
