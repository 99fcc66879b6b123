//! Host benchmarks of map + unmap + flush on the in-memory fake (`TableMemory` calls are a
//! `Vec` index here; on hardware they are volatile accesses plus cache maintenance when the walker
//! is not coherent).
//!
//! - `4k_warm`: one page into tables that stay (a neighbour page keeps them alive);
//! - `4k_cold`: one page into a new, empty tree: three tables allocated (they stay after the
//!   unmap, as in a DMA domain, until an unmap covers their span);
//! - `2m_block`: one 2 MiB block next to a resident one;
//! - `1g_of_4k_pages`: a whole 1 GiB region with 4 KiB pages (output only page-aligned);
//! - `1g_of_2m_blocks`: the same region with 2 MiB blocks (output 2 MiB aligned);
//! - `1g_block`: one 1 GiB block.

use criterion::{Criterion, criterion_group, criterion_main};
use io_pgtable::fake::FakeTableMemory;
use io_pgtable::{BlockSplit, Config, Gather, Iova, MemoryType, PageTable, PhysAddr, Prot};
use std::hint::black_box;

const K4: u64 = 4 << 10;
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;
const RW: Prot = Prot::read_write(MemoryType::NormalWriteBack);

fn table() -> PageTable<FakeTableMemory> {
    PageTable::new(
        FakeTableMemory::default(),
        Config::smmu(44, BlockSplit::Direct),
    )
    .expect("table")
}

fn map_unmap(table: &mut PageTable<FakeTableMemory>, input: u64, output: u64, size: u64) {
    table
        .map(Iova(black_box(input)), PhysAddr(output), size, RW)
        .expect("map");
    let mut gather = Gather::new();
    let unmapped = table.unmap(Iova(input), size, &mut gather).expect("unmap");
    assert_eq!(unmapped, size);
    table
        .flush(gather, |invalidation| {
            black_box(invalidation);
            Ok::<(), ()>(())
        })
        .expect("flush");
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("pgtable_map_unmap");

    let mut warm = table();
    warm.map(Iova(0x10_0000), PhysAddr(0x8000_0000), K4, RW)
        .expect("resident");
    group.bench_function("4k_warm", |b| {
        b.iter(|| map_unmap(&mut warm, 0x10_1000, 0x8000_1000, K4))
    });

    group.bench_function("4k_cold", |b| {
        b.iter_batched(
            table,
            |mut cold| map_unmap(&mut cold, 0x10_1000, 0x8000_1000, K4),
            criterion::BatchSize::SmallInput,
        )
    });

    let mut blocks = table();
    blocks
        .map(Iova(0), PhysAddr(0x8000_0000), M2, RW)
        .expect("resident");
    group.bench_function("2m_block", |b| {
        b.iter(|| map_unmap(&mut blocks, M2, 0x8020_0000, M2))
    });

    group.sample_size(20);
    let mut region = table();
    group.bench_function("1g_of_4k_pages", |b| {
        b.iter(|| map_unmap(&mut region, G1, 0x8000_1000, G1))
    });
    group.bench_function("1g_of_2m_blocks", |b| {
        b.iter(|| map_unmap(&mut region, G1, 0x8020_0000, G1))
    });
    group.bench_function("1g_block", |b| {
        b.iter(|| map_unmap(&mut region, G1, 0x8000_0000, G1))
    });
    group.finish();
}

criterion_group!(map_benches, benches);
criterion_main!(map_benches);
