//! Global counters for leak checks: after every driver has unbound they must be back to zero.

use core::sync::atomic::{AtomicI64, Ordering};

pub(crate) static LIVE_MAPPINGS: AtomicI64 = AtomicI64::new(0);
pub(crate) static LIVE_COHERENT: AtomicI64 = AtomicI64::new(0);
pub(crate) static LIVE_IOVA_RANGES: AtomicI64 = AtomicI64::new(0);
pub(crate) static LIVE_DOMAINS: AtomicI64 = AtomicI64::new(0);
pub(crate) static BOUNCED: AtomicI64 = AtomicI64::new(0);
pub(crate) static DEBUG_REPORTS: AtomicI64 = AtomicI64::new(0);

/// A snapshot of the DMA layer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaStats {
    /// Streaming and scatter-gather mappings alive.
    pub mappings: i64,
    /// Coherent allocations alive.
    pub coherent: i64,
    /// IOVA ranges allocated (mapped, or waiting in a flush queue) across all domains.
    pub iova_ranges: i64,
    /// IOMMU DMA domains alive.
    pub domains: i64,
    /// Buffers ever bounced.
    pub bounced: i64,
    /// Problems the debug checks reported.
    pub debug_reports: i64,
}

/// Current counters.
pub fn stats() -> DmaStats {
    DmaStats {
        mappings: LIVE_MAPPINGS.load(Ordering::Relaxed),
        coherent: LIVE_COHERENT.load(Ordering::Relaxed),
        iova_ranges: LIVE_IOVA_RANGES.load(Ordering::Relaxed),
        domains: LIVE_DOMAINS.load(Ordering::Relaxed),
        bounced: BOUNCED.load(Ordering::Relaxed),
        debug_reports: DEBUG_REPORTS.load(Ordering::Relaxed),
    }
}

pub(crate) fn inc(c: &AtomicI64) {
    c.fetch_add(1, Ordering::Relaxed);
}
pub(crate) fn dec(c: &AtomicI64) {
    c.fetch_sub(1, Ordering::Relaxed);
}
