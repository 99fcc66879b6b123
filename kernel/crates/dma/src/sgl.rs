//! Scatter-gather mappings: a list of buffers mapped for one transfer.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;

use addr::{Iova, PAGE_SIZE, PhysAddr, VirtAddr};

use crate::debug::Kind;
use crate::device::{Backend, DmaDevice, RawMapping, prot};
use crate::direction::DmaDirection;
use crate::error::DmaError;
use crate::sg::{CpuSegment, SegmentLimits, layout};
use crate::stats::{LIVE_MAPPINGS, dec, inc};
use crate::stream::retire_buffer;

enum Mapped {
    /// One IOVA range for the whole list: `[base, base + len)`, of which `mapped` bytes hold pages.
    Iommu { base: Iova, len: u64, mapped: u64 },
    /// Each buffer mapped on its own (direct or bounced).
    PerBuffer(Vec<RawMapping>),
}

/// A scatter-gather list mapped for a device. Owns its buffers like [`crate::DmaStream`].
pub struct DmaSgTable<D: DmaDirection> {
    dev: Arc<DmaDevice>,
    bufs: Vec<Vec<u8>>,
    segments: Vec<(Iova, u64)>,
    mapped: Option<Mapped>,
    _dir: PhantomData<D>,
}

impl<D: DmaDirection> core::fmt::Debug for DmaSgTable<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "DmaSgTable<{:?}>({}, {} buffers, {} segments)",
            D::DIRECTION,
            self.dev.name(),
            self.bufs.len(),
            self.segments.len()
        )
    }
}

/// Splits a segment wherever it crosses an absolute boundary (when the IOVA range could not be
/// aligned to the boundary window, offsets alone do not guarantee it).
fn split_at_boundaries(segs: Vec<(Iova, u64)>, limits: SegmentLimits) -> Vec<(Iova, u64)> {
    if limits.boundary_mask == u64::MAX {
        return segs;
    }
    let mut out = Vec::with_capacity(segs.len());
    for (mut a, mut l) in segs {
        while l > 0 {
            let to_boundary = (a.0 | limits.boundary_mask).saturating_add(1) - a.0;
            let n = l.min(to_boundary);
            out.push((a, n));
            a = Iova(a.0 + n);
            l -= n;
        }
    }
    out
}

/// Merges per-buffer bus ranges that touch, within the limits.
fn merge_direct(maps: &[RawMapping], limits: SegmentLimits) -> Vec<(Iova, u64)> {
    let mut out: Vec<(Iova, u64)> = Vec::new();
    for m in maps {
        if let Some(last) = out.last_mut() {
            let merged = last.1 + m.len;
            let same_window = (last.0.0 & !limits.boundary_mask)
                == ((last.0.0 + merged - 1) & !limits.boundary_mask);
            if last.0.0 + last.1 == m.addr.0 && merged <= limits.max_segment_size && same_window {
                last.1 = merged;
                continue;
            }
        }
        out.push((m.addr, m.len));
    }
    split_at_boundaries(out, limits)
}

impl DmaDevice {
    /// Maps a list of buffers for one transfer. Behind an IOMMU the list gets one IOVA range and
    /// merges into as few segments as the device's maximum segment size and segment boundary
    /// allow; otherwise buffers that happen to be contiguous on the bus merge. On failure the
    /// buffers come back with the error. May run in interrupt context.
    pub fn map_sg<D: DmaDirection>(
        self: &Arc<Self>,
        bufs: Vec<Vec<u8>>,
    ) -> Result<DmaSgTable<D>, (DmaError, Vec<Vec<u8>>)> {
        if bufs.is_empty() || bufs.iter().any(|b| b.is_empty()) {
            return Err((DmaError::Empty, bufs));
        }
        let mut pas = Vec::with_capacity(bufs.len());
        for b in &bufs {
            match DmaDevice::virt_to_phys(b) {
                Ok(pa) => pas.push(pa),
                Err(e) => return Err((e, bufs)),
            }
        }
        if let Err(e) = self.check_not_revoked() {
            return Err((e, bufs));
        }
        let limits = *self.limits.lock();
        let dir = D::DIRECTION;
        let result = match &self.backend {
            Backend::None(reason) => Err(DmaError::NoDma(reason.clone())),
            Backend::Iommu(d) => {
                let cpu: Vec<CpuSegment> = pas
                    .iter()
                    .zip(&bufs)
                    .map(|(pa, b)| CpuSegment {
                        pa: pa.0,
                        len: b.len() as u64,
                    })
                    .collect();
                let plan = layout(&cpu, PAGE_SIZE, limits);
                d.alloc_iova(plan.iova_len, self.limit(false))
                    .and_then(|base| {
                        let mut mapped = 0;
                        for (i, (seg, off)) in cpu.iter().zip(&plan.page_offsets).enumerate() {
                            let page_pa = seg.pa & !(PAGE_SIZE - 1);
                            let span = ((seg.pa - page_pa) + seg.len).next_multiple_of(PAGE_SIZE);
                            if let Err(e) = d.map(
                                Iova(base.0 + off),
                                PhysAddr(page_pa),
                                span,
                                prot(dir, self.is_coherent()),
                            ) {
                                // Undo what was mapped so far; the IOVA goes back with it.
                                let _ = i;
                                if mapped > 0 {
                                    let _ = d.unmap(base, plan.iova_len, mapped, self.name());
                                } else {
                                    d.free_unmapped_iova(base, plan.iova_len);
                                }
                                return Err(e);
                            }
                            mapped += span;
                        }
                        let segs = plan
                            .segments
                            .iter()
                            .map(|&(o, l)| (Iova(base.0 + o), l))
                            .collect();
                        Ok((
                            split_at_boundaries(segs, limits),
                            Mapped::Iommu {
                                base,
                                len: plan.iova_len,
                                mapped,
                            },
                        ))
                    })
            }
            Backend::Direct { .. } => {
                let mut maps: Vec<RawMapping> = Vec::with_capacity(bufs.len());
                let mut err = None;
                for (pa, b) in pas.iter().zip(&bufs) {
                    match self.map_range(*pa, b.len() as u64, dir, Some(b)) {
                        Ok(m) => maps.push(m),
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                match err {
                    Some(e) => {
                        for m in &maps {
                            let _ = self.unmap_range(m, None);
                        }
                        Err(e)
                    }
                    None => Ok((merge_direct(&maps, limits), Mapped::PerBuffer(maps))),
                }
            }
        };
        match result {
            Ok((segments, mapped)) => {
                let first = segments.first().map_or(Iova(0), |s| s.0);
                let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
                self.track_map(first, total, dir, Kind::ScatterGather);
                if matches!(mapped, Mapped::Iommu { .. }) {
                    inc(&LIVE_MAPPINGS);
                }
                Ok(DmaSgTable {
                    dev: self.clone(),
                    bufs,
                    segments,
                    mapped: Some(mapped),
                    _dir: PhantomData,
                })
            }
            Err(e) => Err((e, bufs)),
        }
    }
}

impl<D: DmaDirection> DmaSgTable<D> {
    /// The DMA segments to give the device, in order.
    pub fn segments(&self) -> &[(Iova, u64)] {
        &self.segments
    }

    /// Where the CPU's buffers are (see [`DmaStream::cpu_span`](crate::DmaStream::cpu_span)).
    pub fn cpu_spans(&self) -> impl Iterator<Item = (VirtAddr, usize)> + '_ {
        self.bufs
            .iter()
            .map(|b| (VirtAddr(b.as_ptr() as u64), b.len()))
    }

    /// Unmaps; false when an invalidation failed and the buffers must never be reused.
    fn unmap(&mut self) -> bool {
        let Some(mapped) = self.mapped.take() else {
            return true;
        };
        let mut reusable = true;
        let mut report = |e: DmaError| {
            log::error!(target: "dma", "{}: {e}", self.dev.name());
            if matches!(e, DmaError::InvalidationFailed(_)) {
                reusable = false;
            }
        };
        let first = self.segments.first().map_or(Iova(0), |s| s.0);
        let total: u64 = self.bufs.iter().map(|b| b.len() as u64).sum();
        self.dev
            .track_unmap(first, total, D::DIRECTION, Kind::ScatterGather);
        match mapped {
            Mapped::Iommu { base, len, mapped } => {
                dec(&LIVE_MAPPINGS);
                if let Some(d) = self.dev.iommu_dma()
                    && let Err(e) = d.unmap(base, len, mapped, self.dev.name())
                {
                    report(e);
                }
                if !self.dev.is_coherent() && D::DIRECTION.device_writes() {
                    for b in &self.bufs {
                        if let Ok(pa) = DmaDevice::virt_to_phys(b) {
                            kapi::platform::get().cache_invalidate(
                                kapi::platform::get().phys_to_virt(pa),
                                b.len() as u64,
                            );
                        }
                    }
                }
            }
            Mapped::PerBuffer(maps) => {
                for (m, b) in maps.iter().zip(self.bufs.iter_mut()) {
                    let out = if m.dir.device_writes() {
                        Some(&mut b[..])
                    } else {
                        None
                    };
                    if let Err(e) = self.dev.unmap_range(m, out) {
                        report(e);
                    }
                }
            }
        }
        reusable
    }

    /// Unmaps and returns the buffers, with what the device wrote. Should the invalidation
    /// fail, the bytes come back in copies and the buffers themselves are never freed.
    pub fn into_buffers(mut self) -> Vec<Vec<u8>> {
        if self.unmap() {
            return core::mem::take(&mut self.bufs);
        }
        let copies = self.bufs.clone();
        self.bufs.iter_mut().for_each(retire_buffer);
        copies
    }
}

impl<D: DmaDirection> Drop for DmaSgTable<D> {
    fn drop(&mut self) {
        if !self.unmap() {
            self.bufs.iter_mut().for_each(retire_buffer);
        }
    }
}
