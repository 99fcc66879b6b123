//! Host benchmarks of the IOVA allocator: one `alloc` + `free` pair with 10^3, 10^5 and 10^6
//! live ranges in a fragmented space.
//!
//! Setup: allocate 2N one-page ranges from the top of a 48-bit space, free every other one and
//! flush the caches, so N ranges stay live and the free space has N one-page holes. Then:
//! - `cached_1_page`: hits the per-size cache after the first round;
//! - `uncached_64_pages`: above the cached sizes and aligned to 64 pages, so none of the holes
//!   fits and the tree has to find the free space below all of them.
//!
//! `linear_scan_64_pages` runs the same uncached request against the obvious alternative, a
//! `BTreeMap` of allocated ranges scanned downwards for a gap, to show why the allocator indexes
//! free ranges instead.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use iova::{Iova, IovaAllocator, PAGE_SIZE, Range};
use std::collections::BTreeMap;
use std::hint::black_box;

const LIMIT: Iova = Iova((1 << 48) - 1);

fn fragmented(live: usize) -> IovaAllocator {
    let mut iova = IovaAllocator::new(Range::new(Iova(0), 1 << 48)).expect("aperture");
    let all: Vec<Iova> = (0..2 * live)
        .map(|_| iova.alloc(PAGE_SIZE, LIMIT).expect("setup alloc"))
        .collect();
    for a in all.iter().step_by(2) {
        iova.free(*a, PAGE_SIZE).expect("setup free");
    }
    iova.flush_caches();
    assert_eq!(iova.live_ranges(), live);
    iova
}

fn alloc_free(c: &mut Criterion) {
    let mut group = c.benchmark_group("iova_alloc_free");
    for live in [1_000usize, 100_000, 1_000_000] {
        let mut iova = fragmented(live);
        for (name, size) in [
            ("cached_1_page", PAGE_SIZE),
            ("uncached_64_pages", 64 * PAGE_SIZE),
        ] {
            group.bench_with_input(BenchmarkId::new(name, live), &size, |b, &size| {
                b.iter(|| {
                    let a = iova.alloc(black_box(size), LIMIT).expect("alloc");
                    iova.free(black_box(a), size).expect("free");
                })
            });
        }
    }
    group.finish();
}

/// Allocated ranges (first page -> end page), gaps found by scanning down from the limit.
struct LinearScan(BTreeMap<u64, u64>);

impl LinearScan {
    fn alloc(&mut self, pages: u64, align: u64, limit_end: u64) -> Option<u64> {
        let mut gap_end = limit_end;
        for (&start, &end) in self.0.range(..limit_end).rev() {
            let first = gap_end.checked_sub(pages)? & !(align - 1);
            if first >= end {
                self.0.insert(first, first + pages);
                return Some(first);
            }
            gap_end = gap_end.min(start);
        }
        let first = gap_end.checked_sub(pages)? & !(align - 1);
        (first >= 1).then(|| {
            self.0.insert(first, first + pages);
            first
        })
    }
}

fn linear_scan_baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("iova_alloc_free");
    group.sample_size(20);
    for live in [1_000u64, 10_000, 100_000] {
        let top = 1u64 << 36;
        // Same shape as `fragmented`: live pages at every other page below the top.
        let mut scan = LinearScan(
            (0..live)
                .map(|i| (top - 2 - 2 * i, top - 1 - 2 * i))
                .collect(),
        );
        group.bench_function(BenchmarkId::new("linear_scan_64_pages", live), |b| {
            b.iter(|| {
                let first = scan.alloc(black_box(64), 64, top).expect("alloc");
                scan.0.remove(&first);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, alloc_free, linear_scan_baseline);
criterion_main!(benches);
