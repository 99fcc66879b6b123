//! DMA through an IOMMU domain: the domain's IOVA allocator, and the invalidation policy.
//!
//! One [`IommuDma`] per translated domain, shared by every device of the domain's group.
//!
//! **Strict** (`iommu.strict=1`, the default): every unmap removes the page-table entries,
//! invalidates the IOTLB for that range and waits for the invalidation, then frees the IOVA.
//! **Lazy** (`iommu.strict=0`): the unmap removes the entries and queues the IOVA; the queue is
//! flushed with one whole-domain invalidation when it is full or when its timer fires, and only
//! then are the queued IOVAs freed. Either way an IOVA is never handed out again while a stale
//! IOTLB entry might still translate it. (Lazy mode leaves a window in which the device can still
//! reach a buffer the driver has unmapped; that is the trade it makes for speed.)

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::time::Duration;

use addr::{Iova, PAGE_SIZE, PhysAddr, Range};
use iommu::{IommuDomain, Prot, ReservedKind, ReservedRegion};
use iova::IovaAllocator;
use kapi::sync::IrqLock;
use kapi::time::Instant;

use crate::direct::BusMap;
use crate::error::DmaError;
use crate::stats::{LIVE_DOMAINS, LIVE_IOVA_RANGES, dec, inc};

/// Entries the lazy flush queue holds before it is flushed.
pub const FLUSH_QUEUE_LEN: usize = 256;
/// Longest an IOVA waits in the lazy flush queue.
pub const FLUSH_QUEUE_TIMEOUT: Duration = Duration::from_millis(10);

struct State {
    iova: IovaAllocator,
    /// Lazy mode: unmapped but not yet invalidated.
    queue: Vec<(Iova, u64)>,
    timer_armed: bool,
}

/// DMA state of one translated domain.
pub struct IommuDma {
    domain: Arc<dyn IommuDomain>,
    /// The domain's highest input address (its aperture does not change): every allocation
    /// is bounded by it.
    aperture_last: Iova,
    state: IrqLock<State>,
    strict: bool,
    /// Where the interrupt controller's doorbell is mapped (its page's IOVA), if it is.
    msi_page: Option<(Iova, PhysAddr)>,
    me: Weak<IommuDma>,
}

static REGISTRY: IrqLock<BTreeMap<usize, Weak<IommuDma>>> = IrqLock::new(BTreeMap::new());

fn key(domain: &Arc<dyn IommuDomain>) -> usize {
    Arc::as_ptr(domain) as *const () as usize
}

impl IommuDma {
    /// The DMA state of `domain`, created on first use: an IOVA allocator over the domain's
    /// aperture with `reserved` regions and everything outside the bus windows held back.
    pub fn for_domain(
        domain: &Arc<dyn IommuDomain>,
        reserved: &[ReservedRegion],
        bus: &BusMap,
        strict: bool,
    ) -> Result<Arc<IommuDma>, DmaError> {
        let mut reg = REGISTRY.lock();
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = reg.get(&key(domain)).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        let aperture = domain.aperture();
        let mut iova = IovaAllocator::new(aperture)
            .map_err(|e| DmaError::Invariant(format!("IOVA aperture: {e}")))?;
        let mut msi_page = None;
        for r in reserved {
            // A window outside the aperture needs no reservation.
            let Some(clipped) = clip(r.range, aperture) else {
                continue;
            };
            iova.reserve(clipped)
                .map_err(|e| DmaError::Invariant(format!("reserving {:?}: {e}", r.range)))?;
            if let ReservedKind::Msi { doorbell } = r.kind {
                msi_page = Some((r.range.start, PhysAddr(doorbell.0 & !(PAGE_SIZE - 1))));
            }
        }
        // `dma-ranges` limit which bus addresses reach memory: IOVAs in the holes between
        // windows would never arrive, so they are never handed out.
        for hole in bus_holes(bus, aperture) {
            iova.reserve(hole)
                .map_err(|e| DmaError::Invariant(format!("reserving bus hole {hole:?}: {e}")))?;
        }
        let dma = Arc::new_cyclic(|me| IommuDma {
            domain: domain.clone(),
            aperture_last: aperture.last().unwrap_or(Iova(0)),
            state: IrqLock::new(State {
                iova,
                queue: Vec::new(),
                timer_armed: false,
            }),
            strict,
            msi_page,
            me: me.clone(),
        });
        inc(&LIVE_DOMAINS);
        reg.insert(key(domain), Arc::downgrade(&dma));
        Ok(dma)
    }

    /// The domain.
    pub fn domain(&self) -> &Arc<dyn IommuDomain> {
        &self.domain
    }

    /// Strict invalidation?
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The device-visible address of a doorbell at `pa`, if the domain maps its page.
    pub fn msi_address(&self, pa: PhysAddr) -> Option<Iova> {
        let (iova, page) = self.msi_page?;
        (pa.0 & !(PAGE_SIZE - 1) == page.0).then(|| Iova(iova.0 + (pa.0 & (PAGE_SIZE - 1))))
    }

    /// IOVA ranges allocated (including those waiting in the flush queue).
    pub fn live_ranges(&self) -> usize {
        self.state.lock().iova.live_ranges()
    }

    /// Allocates `size` bytes of IOVA below `limit` (inclusive). Public for benchmarks of the
    /// allocator in place; the DMA API is the way to get IOVAs.
    pub fn alloc_iova(&self, size: u64, limit: u64) -> Result<Iova, DmaError> {
        let limit = limit.min(self.aperture_last.0);
        let iova = self
            .state
            .lock()
            .iova
            .alloc(size, Iova(limit))
            .map_err(|_| DmaError::NoIova { size, limit })?;
        inc(&LIVE_IOVA_RANGES);
        Ok(iova)
    }

    /// Returns an IOVA range that was never mapped (a failed mapping's cleanup; benchmarks).
    pub fn free_unmapped_iova(&self, iova: Iova, size: u64) {
        if let Err(e) = self.state.lock().iova.free(iova, size) {
            log::error!(target: "iommu-dma", "BUG: freeing unmapped IOVA {iova:#x}+{size:#x}: {e}");
        }
        dec(&LIVE_IOVA_RANGES);
    }

    /// Maps `[pa, pa + size)` at `iova`.
    pub(crate) fn map(
        &self,
        iova: Iova,
        pa: PhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), DmaError> {
        Ok(self.domain.map(iova, pa, size, prot)?)
    }

    /// Unmaps `[iova, iova + size)`, of which `mapped` bytes were mapped, and releases the IOVA
    /// range according to the invalidation policy. A page table that disagrees with what was
    /// mapped is a broken invariant: reported loudly, and the IOVA is not reused.
    pub(crate) fn unmap(
        &self,
        iova: Iova,
        size: u64,
        mapped: u64,
        who: &str,
    ) -> Result<(), DmaError> {
        self.unmap_as(iova, size, mapped, who, self.strict)
    }

    /// [`IommuDma::unmap`], invalidated before it returns whatever the policy: for memory that
    /// goes back to the page allocator at once (coherent buffers), where a stale IOTLB entry
    /// would let the device reach its next owner.
    pub(crate) fn unmap_strict(
        &self,
        iova: Iova,
        size: u64,
        mapped: u64,
        who: &str,
    ) -> Result<(), DmaError> {
        self.unmap_as(iova, size, mapped, who, true)
    }

    fn unmap_as(
        &self,
        iova: Iova,
        size: u64,
        mapped: u64,
        who: &str,
        strict: bool,
    ) -> Result<(), DmaError> {
        let unmapped = self.domain.unmap(iova, size);
        if unmapped != mapped {
            // Do not free: whatever the tables hold at this range is unknown.
            let _ = self.domain.iotlb_sync();
            let msg = format!(
                "{who}: unmap of IOVA {iova:#x}+{size:#x} removed {unmapped:#x} bytes, {mapped:#x} were mapped: page tables and IOVA allocator disagree"
            );
            log::error!(target: "iommu-dma", "BUG: {msg}");
            return Err(DmaError::Invariant(msg));
        }
        if strict {
            // Strict: the invalidation completes before the IOVA can be handed out again.
            if let Err(e) = self.domain.iotlb_sync() {
                return Err(retire(iova, size, who, &e));
            }
            self.release(iova, size, who)
        } else {
            let flush_now = {
                let mut st = self.state.lock();
                st.queue.push((iova, size));
                let full = st.queue.len() >= FLUSH_QUEUE_LEN;
                if !full && !st.timer_armed {
                    st.timer_armed = true;
                    let me = self.me.clone();
                    kapi::platform::get().call_at(
                        Instant::now().after(FLUSH_QUEUE_TIMEOUT),
                        alloc::boxed::Box::new(move || {
                            if let Some(me) = me.upgrade() {
                                me.flush_queue();
                            }
                        }),
                    );
                }
                full
            };
            if flush_now {
                self.flush_queue();
            }
            Ok(())
        }
    }

    fn release(&self, iova: Iova, size: u64, who: &str) -> Result<(), DmaError> {
        let r = self.state.lock().iova.free(iova, size);
        dec(&LIVE_IOVA_RANGES);
        r.map_err(|e| {
            let msg = format!("{who}: freeing IOVA {iova:#x}+{size:#x}: {e}");
            log::error!(target: "iommu-dma", "BUG: {msg}");
            DmaError::Invariant(msg)
        })
    }

    /// Lazy mode: invalidates the whole domain once, then frees every queued IOVA.
    pub fn flush_queue(&self) {
        let mut st = self.state.lock();
        st.timer_armed = false;
        if st.queue.is_empty() {
            return;
        }
        // The invalidation and its sync complete before any queued IOVA is freed. When it fails
        // they stay queued, and the next flush (the next unmap arms one) tries again.
        if let Err(e) = self.domain.flush_all() {
            log::error!(
                target: "iommu-dma",
                "flush queue: IOTLB invalidation failed ({e}); {} IOVA ranges stay queued",
                st.queue.len()
            );
            return;
        }
        let queued = core::mem::take(&mut st.queue);
        for (iova, size) in queued {
            if let Err(e) = st.iova.free(iova, size) {
                log::error!(target: "iommu-dma", "BUG: freeing queued IOVA {iova:#x}+{size:#x}: {e}");
            }
            dec(&LIVE_IOVA_RANGES);
        }
    }

    /// Where `iova` is mapped (for the page-table cross-checks of the debug mode and tests).
    pub fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.domain.iova_to_phys(iova)
    }
}

impl Drop for IommuDma {
    fn drop(&mut self) {
        self.flush_queue();
        dec(&LIVE_DOMAINS);
    }
}

/// An unmapped range whose invalidation failed: reported, and never given back to the allocator
/// (it stays allocated, so the leak checks see it too).
fn retire(iova: Iova, size: u64, who: &str, e: &iommu::IommuError) -> DmaError {
    let err = DmaError::InvalidationFailed(format!(
        "{who}: IOTLB invalidation of IOVA {iova:#x}+{size:#x} failed ({e})"
    ));
    log::error!(target: "iommu-dma", "{err}");
    err
}

fn clip(r: Range<Iova>, aperture: Range<Iova>) -> Option<Range<Iova>> {
    let start = r.start.max(aperture.start);
    let end = r
        .checked_end()
        .unwrap_or(Iova(u64::MAX))
        .min(aperture.checked_end().unwrap_or(Iova(u64::MAX)));
    (end > start).then(|| Range::new(start, end.0 - start.0))
}

/// Parts of the aperture no `dma-ranges` window covers (none when the bus is unrestricted).
fn bus_holes(bus: &BusMap, aperture: Range<Iova>) -> Vec<Range<Iova>> {
    if bus.windows.is_empty() {
        return Vec::new();
    }
    let mut windows: Vec<(u64, u64)> = bus
        .windows
        .iter()
        .map(|w| (w.bus, w.bus.saturating_add(w.size)))
        .collect();
    windows.sort_unstable();
    let mut holes = Vec::new();
    let mut cursor = aperture.start.0;
    let end = aperture.checked_end().map_or(u64::MAX, |e| e.0);
    for (s, e) in windows {
        if s > cursor {
            holes.push((cursor, s.min(end)));
        }
        cursor = cursor.max(e);
    }
    if cursor < end {
        holes.push((cursor, end));
    }
    holes
        .into_iter()
        .filter(|(s, e)| e > s)
        .map(|(s, e)| {
            // Whole pages, rounded outwards: a page only partly inside a window would let the
            // device's access to its other part go nowhere.
            let s = s & !(PAGE_SIZE - 1);
            let e = e
                .checked_next_multiple_of(PAGE_SIZE)
                .unwrap_or(!(PAGE_SIZE - 1));
            (s, e)
        })
        .filter(|(s, e)| e > s)
        .map(|(s, e)| Range::new(Iova(s), e - s))
        .collect()
}
