//! Host benchmarks of the IOVA allocator: one `alloc` + `free` pair with 10^3, 10^5 and 10^6
//! live ranges in a fragmented space.
//!
//! Setup: allocate 2N one-page ranges below 4 GiB, free every other one and flush the caches, so
//! N ranges stay live and the tree holds N one-page holes. Then measure:
//! - `cached`: 1 page, hits the per-size cache after the first round;
//! - `uncached`: 64 pages (above the cached sizes), aligned to 64 pages, so none of the holes
//!   fits and the tree has to find the free space below all of them.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use iova::{Iova, IovaAllocator, PAGE_SIZE, Range};
use std::hint::black_box;

const LIMIT: Iova = Iova((1 << 32) - 1);

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

criterion_group!(benches, alloc_free);
criterion_main!(benches);
