//! Scatter-gather layout: how a list of CPU buffers becomes DMA segments.
//!
//! Behind an IOMMU the whole list gets one IOVA range. Each buffer is mapped page by page at a
//! position that keeps its offset within the page, so two buffers merge into one DMA segment
//! when the first ends on a page boundary and the second starts on one. Two device limits shape
//! the result: the maximum segment size, and the segment boundary (a segment must never cross an
//! address that is a multiple of `boundary_mask + 1`). The layout pads the IOVA range so a buffer
//! that fits between two boundaries does not straddle one, and splits what cannot fit.
//!
//! Pure arithmetic, so it is tested on the host against brute-force checks.

use alloc::vec::Vec;

/// One CPU buffer of a scatter-gather list: physical address and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSegment {
    /// Physical address of the first byte.
    pub pa: u64,
    /// Length in bytes (non-zero).
    pub len: u64,
}

/// Device limits on DMA segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLimits {
    /// Largest segment the device takes.
    pub max_segment_size: u64,
    /// Segments must not cross a multiple of `boundary_mask + 1` (all ones = no boundary).
    pub boundary_mask: u64,
}

impl SegmentLimits {
    /// No limits beyond 4 GiB segments (the DMA API default, like Linux's 64 KiB is not used here).
    pub const NONE: SegmentLimits = SegmentLimits {
        max_segment_size: u32::MAX as u64,
        boundary_mask: u64::MAX,
    };
}

/// Where each buffer's pages go in the IOVA range, and the merged DMA segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SgLayout {
    /// Total IOVA bytes to allocate (a multiple of the page size).
    pub iova_len: u64,
    /// For each buffer: offset in the IOVA range where its first page is mapped.
    pub page_offsets: Vec<u64>,
    /// DMA segments as (offset in the IOVA range, length).
    pub segments: Vec<(u64, u64)>,
}

/// Does `[start, start + len)` stay inside one boundary window?
fn within_boundary(start: u64, len: u64, mask: u64) -> bool {
    if mask == u64::MAX || len == 0 {
        return true;
    }
    (start & !mask) == ((start + len - 1) & !mask)
}

/// Splits `[start, start + len)` into pieces that respect both limits.
fn split(start: u64, len: u64, limits: SegmentLimits, out: &mut Vec<(u64, u64)>) {
    let mut s = start;
    let end = start + len;
    while s < end {
        let mut piece = (end - s).min(limits.max_segment_size);
        if limits.boundary_mask != u64::MAX {
            let next_boundary = (s | limits.boundary_mask).saturating_add(1);
            piece = piece.min(next_boundary - s);
        }
        out.push((s, piece));
        s += piece;
    }
}

/// Lays out `buffers` in one IOVA range of `page`-sized pages (the range itself is allocated
/// aligned to `boundary_mask + 1` or more by the caller, so offsets relative to its start keep
/// their alignment).
pub fn layout(buffers: &[CpuSegment], page: u64, limits: SegmentLimits) -> SgLayout {
    let mut page_offsets = Vec::with_capacity(buffers.len());
    let mut cursor = 0u64;
    // First the placement: each buffer's pages at the cursor; pad to the next boundary when the
    // buffer would straddle one but fits inside a boundary window on its own.
    for b in buffers {
        let in_page = b.pa & (page - 1);
        let span = (in_page + b.len).next_multiple_of(page);
        let data_start = cursor + in_page;
        if !within_boundary(data_start, b.len, limits.boundary_mask)
            && limits.boundary_mask != u64::MAX
        {
            let window = limits.boundary_mask + 1;
            if in_page + b.len <= window {
                cursor = (cursor | limits.boundary_mask) + 1;
            }
        }
        page_offsets.push(cursor);
        cursor += span;
    }
    // Then the segments: merge a buffer into the previous segment when they touch in IOVA space
    // and the merged segment still respects both limits; split anything that does not fit.
    let mut segments: Vec<(u64, u64)> = Vec::new();
    let mut pieces = Vec::new();
    for (b, &off) in buffers.iter().zip(&page_offsets) {
        let start = off + (b.pa & (page - 1));
        pieces.clear();
        split(start, b.len, limits, &mut pieces);
        for &(s, l) in &pieces {
            if let Some(last) = segments.last_mut() {
                let touches = last.0 + last.1 == s;
                if touches
                    && last.1 + l <= limits.max_segment_size
                    && within_boundary(last.0, last.1 + l, limits.boundary_mask)
                {
                    last.1 += l;
                    continue;
                }
            }
            segments.push((s, l));
        }
    }
    SgLayout {
        iova_len: cursor,
        page_offsets,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: u64 = 4096;

    fn seg(pa: u64, len: u64) -> CpuSegment {
        CpuSegment { pa, len }
    }

    #[test]
    fn page_aligned_buffers_merge_into_one_segment() {
        let l = layout(
            &[seg(0x10_0000, P), seg(0x50_0000, 2 * P), seg(0x20_0000, P)],
            P,
            SegmentLimits::NONE,
        );
        assert_eq!(l.iova_len, 4 * P);
        assert_eq!(l.page_offsets, [0, P, 3 * P]);
        assert_eq!(l.segments, [(0, 4 * P)]);
    }

    #[test]
    fn unaligned_buffers_keep_their_offsets_and_do_not_merge() {
        let l = layout(
            &[seg(0x10_0100, 0x100), seg(0x20_0200, 0x100)],
            P,
            SegmentLimits::NONE,
        );
        assert_eq!(l.page_offsets, [0, P]);
        assert_eq!(l.segments, [(0x100, 0x100), (P + 0x200, 0x100)]);
        // A buffer ending on a page boundary merges with one starting on a page boundary.
        let l = layout(
            &[seg(0x10_0800, 0x800), seg(0x30_0000, 0x100)],
            P,
            SegmentLimits::NONE,
        );
        assert_eq!(l.segments, [(0x800, 0x900)]);
    }

    #[test]
    fn max_segment_size_stops_merging_and_splits_big_buffers() {
        let lim = SegmentLimits {
            max_segment_size: 2 * P,
            boundary_mask: u64::MAX,
        };
        let l = layout(&[seg(0, P), seg(0x10_0000, P), seg(0x20_0000, P)], P, lim);
        assert_eq!(l.segments, [(0, 2 * P), (2 * P, P)]);
        let l = layout(&[seg(0, 5 * P)], P, lim);
        assert_eq!(l.segments, [(0, 2 * P), (2 * P, 2 * P), (4 * P, P)]);
    }

    #[test]
    fn a_buffer_that_fits_a_boundary_window_is_padded_not_split() {
        // 16 KiB boundary; the second 8 KiB buffer would straddle 0x4000 at offset 0x3000.
        let lim = SegmentLimits {
            max_segment_size: u64::MAX,
            boundary_mask: 0x3fff,
        };
        let l = layout(&[seg(0x1000_0000, 3 * P), seg(0x2000_0000, 2 * P)], P, lim);
        assert_eq!(l.page_offsets, [0, 0x4000]);
        assert_eq!(l.segments, [(0, 3 * P), (0x4000, 2 * P)]);
        assert_eq!(l.iova_len, 0x6000);
    }

    #[test]
    fn a_buffer_larger_than_the_boundary_window_is_split_at_boundaries() {
        let lim = SegmentLimits {
            max_segment_size: u64::MAX,
            boundary_mask: 0x1fff,
        };
        let l = layout(&[seg(0x1000_0000, 5 * P)], P, lim);
        assert_eq!(
            l.segments,
            [(0, 0x2000), (0x2000, 0x2000), (0x4000, 0x1000)]
        );
    }

    /// Merges touching intervals, so two descriptions of the same bytes compare equal.
    fn coalesce(v: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &(s, n) in v {
            match out.last_mut() {
                Some(last) if last.0 + last.1 == s => last.1 += n,
                _ => out.push((s, n)),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever the buffers and limits: every byte of every buffer is covered exactly once,
        /// in order; no segment exceeds the size limit or crosses a boundary; buffers keep their
        /// in-page offsets; nothing overlaps.
        #[test]
        fn layout_respects_limits(
            bufs in prop::collection::vec((0u64..1 << 20, 1u64..40_000), 1..16),
            max_seg_pages in 1u64..16,
            boundary_shift in prop::option::of(13u32..20),
        ) {
            let buffers: Vec<CpuSegment> = bufs.iter().map(|&(pa, len)| seg(pa, len)).collect();
            let lim = SegmentLimits {
                max_segment_size: max_seg_pages * P,
                boundary_mask: boundary_shift.map_or(u64::MAX, |s| (1u64 << s) - 1),
            };
            let l = layout(&buffers, P, lim);
            prop_assert_eq!(l.iova_len % P, 0);
            // Segments cover exactly the data bytes, in buffer order.
            let mut expected = Vec::new();
            for (b, off) in buffers.iter().zip(&l.page_offsets) {
                prop_assert_eq!(off % P, 0);
                let start = off + (b.pa & (P - 1));
                prop_assert!(start + b.len <= l.iova_len);
                expected.push((start, b.len));
            }
            let covered: u64 = l.segments.iter().map(|s| s.1).sum();
            prop_assert_eq!(covered, buffers.iter().map(|b| b.len).sum::<u64>());
            for &(s, n) in &l.segments {
                prop_assert!(n > 0 && n <= lim.max_segment_size);
                prop_assert!(within_boundary(s, n, lim.boundary_mask), "segment {:#x}+{:#x} crosses", s, n);
            }
            prop_assert_eq!(coalesce(&l.segments), coalesce(&expected));
            // Buffers' page spans never overlap.
            for w in l.page_offsets.windows(2) {
                prop_assert!(w[0] < w[1]);
            }
        }
    }
}
