//! Behaviour tests of the page table over the in-memory fake.

use super::*;
use crate::descriptor::{Descriptor, LAST_LEVEL, decode, level_size, table_index};
use crate::fake::FakeTableMemory;
use proptest::prelude::*;

const K4: u64 = 4 << 10;
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;
const RW: Prot = Prot::read_write(MemoryType::NormalWriteBack);

type Table = PageTable<FakeTableMemory>;

fn smmu_table(block_split: BlockSplit) -> Table {
    PageTable::new(FakeTableMemory::default(), Config::smmu(44, block_split)).unwrap()
}

/// What the SMMU would see: a walk that follows only valid table descriptors, and finds every
/// entry it reads synced (made visible to a non-coherent walker).
fn hardware_walk<A: Address>(
    table: &PageTable<FakeTableMemory, A>,
    input: u64,
) -> Option<PhysAddr> {
    let mut next = table.root();
    for level in table.start_level()..=LAST_LEVEL {
        let index = table_index(input, level);
        assert!(
            !table.memory().is_unsynced(next, index),
            "the walker would read entry {index} of {next:?} (level {level}) before its sync"
        );
        let raw = table.memory().read(next, index);
        match decode(raw, level) {
            Descriptor::Table(t) => next = t,
            Descriptor::Leaf { output, .. } => {
                return Some(output + (input & (level_size(level) - 1)));
            }
            Descriptor::Invalid | Descriptor::PendingTable(_) => return None,
        }
    }
    None
}

/// The raw descriptor the walk for `input` ends on, and its level.
fn last_descriptor(table: &Table, input: u64) -> (u64, u8) {
    let mut next = table.root();
    for level in table.start_level()..=LAST_LEVEL {
        let raw = table.memory().read(next, table_index(input, level));
        match decode(raw, level) {
            Descriptor::Table(t) | Descriptor::PendingTable(t) if level < LAST_LEVEL => next = t,
            _ => return (raw, level),
        }
    }
    unreachable!()
}

fn flush_ok(table: &mut Table, gather: Gather<Iova>) -> Option<Invalidation<Iova>> {
    let mut seen = None;
    table
        .flush(gather, |inv| {
            seen = Some(*inv);
            Ok::<(), ()>(())
        })
        .unwrap();
    seen
}

#[test]
fn a_page_maps_through_four_levels() {
    let mut table = smmu_table(BlockSplit::Direct);
    table
        .map(Iova(0x1234_5000), PhysAddr(0x8000_1000), K4, RW)
        .unwrap();
    assert_eq!(
        table.translate(Iova(0x1234_5678)),
        Some(PhysAddr(0x8000_1678))
    );
    assert_eq!(table.translate(Iova(0x1234_6000)), None);
    assert_eq!(table.tables_in_use(), 4);
    assert_eq!(table.memory().pages_in_use(), 4);
    let (raw, level) = last_descriptor(&table, 0x1234_5000);
    assert_eq!((raw, level), (0x0060_0000_8000_1f47, 3));
    assert_eq!(table.mapped_bytes(), K4);
}

#[test]
fn blocks_are_used_where_alignment_allows() {
    let mut table = smmu_table(BlockSplit::Direct);
    table.map(Iova(G1), PhysAddr(4 * G1), G1, RW).unwrap();
    assert_eq!(last_descriptor(&table, G1).1, 1);
    assert_eq!(table.tables_in_use(), 2);
    // 4 KiB below a 2 MiB boundary, one 2 MiB block, 8 KiB after.
    let start = 3 * G1 + M2 - K4;
    table
        .map(
            Iova(start),
            PhysAddr(0x1_0000_0000 + M2 - K4),
            M2 + 3 * K4,
            RW,
        )
        .unwrap();
    assert_eq!(last_descriptor(&table, start).1, 3);
    assert_eq!(last_descriptor(&table, start + K4).1, 2);
    assert_eq!(last_descriptor(&table, start + K4 + M2).1, 3);
    assert_eq!(
        table.translate(Iova(start + K4 + M2 + 0x1abc)),
        Some(PhysAddr(0x1_0000_0000 + 2 * M2 + 0x1abc))
    );
}

#[test]
fn output_misalignment_forces_smaller_leaves() {
    let mut table = smmu_table(BlockSplit::Direct);
    table.map(Iova(M2), PhysAddr(0x4000_1000), M2, RW).unwrap();
    assert_eq!(last_descriptor(&table, M2).1, 3);
    assert_eq!(
        table.translate(Iova(2 * M2 - 1)),
        Some(PhysAddr(0x4000_1000 + M2 - 1))
    );
}

#[test]
fn the_page_size_bitmap_is_honoured() {
    let config = Config {
        page_sizes: PageSizes::PAGES_ONLY,
        ..Config::smmu(44, BlockSplit::Direct)
    };
    let mut table = Table::new(FakeTableMemory::default(), config).unwrap();
    table.map(Iova(G1), PhysAddr(G1), 2 * M2, RW).unwrap();
    assert_eq!(last_descriptor(&table, G1 + M2).1, 3);
    let config = Config {
        page_sizes: PageSizes::UP_TO_2M,
        ..Config::smmu(44, BlockSplit::Direct)
    };
    let mut table = Table::new(FakeTableMemory::default(), config).unwrap();
    table.map(Iova(G1), PhysAddr(G1), G1, RW).unwrap();
    assert_eq!(last_descriptor(&table, G1).1, 2);
}

#[test]
fn mapping_over_a_mapping_changes_nothing() {
    let mut table = smmu_table(BlockSplit::Direct);
    table
        .map(Iova(M2 + 5 * K4), PhysAddr(0x4000_0000), K4, RW)
        .unwrap();
    let tables = table.tables_in_use();
    assert_eq!(
        table.map(Iova(M2), PhysAddr(0x5000_0000), M2, RW),
        Err(PageTableError::AlreadyMapped {
            input: Iova(M2 + 5 * K4)
        })
    );
    assert_eq!(table.translate(Iova(M2)), None);
    assert_eq!(table.tables_in_use(), tables);
    assert_eq!(table.mapped_bytes(), K4);
    // Over a block, from a smaller request.
    table.map(Iova(G1), PhysAddr(G1), G1, RW).unwrap();
    assert_eq!(
        table.map(Iova(G1 + 7 * K4), PhysAddr(0), K4, RW),
        Err(PageTableError::AlreadyMapped {
            input: Iova(G1 + 7 * K4)
        })
    );
}

#[test]
fn running_out_of_table_memory_maps_nothing() {
    let mut table = smmu_table(BlockSplit::Direct);
    // Root exists; the first 4 KiB map needs L1, L2, L3.
    let mut memory_limit = FakeTableMemory::default();
    memory_limit.limit_allocations(Some(3));
    let mut table_limited = Table::new(memory_limit, Config::smmu(44, BlockSplit::Direct)).unwrap();
    assert_eq!(
        table_limited.map(Iova(0x1000), PhysAddr(0x1000), K4, RW),
        Err(PageTableError::OutOfTableMemory)
    );
    assert_eq!(table_limited.translate(Iova(0x1000)), None);
    assert_eq!(table_limited.mapped_bytes(), 0);
    // The two tables allocated before the failure stay linked and empty, also through an
    // unmap of less than their spans; one of the whole space sweeps them.
    assert_eq!(table_limited.tables_in_use(), 3);
    let mut gather = Gather::new();
    assert_eq!(table_limited.unmap(Iova(0), M2, &mut gather), Ok(0));
    assert!(gather.is_empty());
    assert_eq!(table_limited.tables_in_use(), 3);
    assert_eq!(table_limited.unmap(Iova(0), 1 << 44, &mut gather), Ok(0));
    assert!(!gather.invalidation().unwrap().leaf_only);
    table_limited.flush(gather, |_| Ok::<(), ()>(())).unwrap();
    assert_eq!(table_limited.tables_in_use(), 1);
    assert_eq!(table_limited.memory().pages_in_use(), 1);
    // And a normal table is unaffected by all this.
    table.map(Iova(0x1000), PhysAddr(0x1000), K4, RW).unwrap();
}

#[test]
fn emptied_tables_stay_until_an_unmap_covers_them_then_go_after_the_flush() {
    let mut table = smmu_table(BlockSplit::Direct);
    table
        .map(Iova(0x1234_5000), PhysAddr(0x8000_1000), K4, RW)
        .unwrap();
    // The last page out leaves its (now empty) tables for the next map nearby.
    let mut gather = Gather::new();
    assert_eq!(table.unmap(Iova(0x1234_5000), K4, &mut gather), Ok(K4));
    assert_eq!(table.translate(Iova(0x1234_5000)), None);
    assert_eq!(gather.tables_to_free(), 0);
    let inv = flush_ok(&mut table, gather).unwrap();
    assert_eq!((inv.leaf_only, inv.ttl()), (true, 3));
    assert_eq!(table.tables_in_use(), 4);
    table
        .map(Iova(0x1234_6000), PhysAddr(0x8000_2000), K4, RW)
        .unwrap();
    assert_eq!(table.tables_in_use(), 4, "reused, none allocated");
    // An unmap of the level-0 entry's whole span (512 GiB) takes the tables below it.
    let mut gather = Gather::new();
    assert_eq!(table.unmap(Iova(0), 512 * G1, &mut gather), Ok(K4));
    assert_eq!(gather.tables_to_free(), 3);
    // Held, not returned to memory, until the invalidation completed.
    assert_eq!(table.memory().pages_in_use(), 4);
    assert_eq!(table.tables_in_use(), 4);
    let inv = flush_ok(&mut table, gather).unwrap();
    assert_eq!(inv.range, Range::new(Iova(0), 512 * G1));
    assert!(!inv.leaf_only);
    assert_eq!(inv.ttl(), 0);
    assert_eq!(table.memory().pages_in_use(), 1);
    assert_eq!(table.tables_in_use(), 1);
}

#[test]
fn leaf_only_invalidation_carries_the_level() {
    let mut table = smmu_table(BlockSplit::Direct);
    table
        .map(Iova(0x10_0000), PhysAddr(0x4000_0000), 2 * K4, RW)
        .unwrap();
    table
        .map(Iova(2 * M2), PhysAddr(0x4020_0000), 2 * M2, RW)
        .unwrap();
    let mut gather = Gather::new();
    table.unmap(Iova(0x10_0000), K4, &mut gather).unwrap();
    let inv = gather.invalidation().unwrap();
    assert_eq!(
        (inv.leaf_only, inv.leaf_level, inv.ttl()),
        (true, Some(3), 3)
    );
    let inv = flush_ok(&mut table, gather).unwrap();
    assert_eq!(inv.range, Range::new(Iova(0x10_0000), K4));

    let mut gather = Gather::new();
    assert_eq!(table.unmap(Iova(2 * M2), M2, &mut gather), Ok(M2));
    let inv = gather.invalidation().unwrap();
    assert_eq!((inv.leaf_only, inv.ttl()), (true, 2));
    // A second unmap into the same gather: mixed levels, hull range.
    table.unmap(Iova(0x10_1000), K4, &mut gather).unwrap();
    let inv = flush_ok(&mut table, gather).unwrap();
    assert_eq!(inv.leaf_level, None);
    assert_eq!(inv.ttl(), 0);
    assert_eq!(
        inv.range,
        Range::new(Iova(0x10_0000 + K4), 3 * M2 - 0x10_1000)
    );
}

#[test]
fn an_empty_gather_skips_the_invalidation() {
    let mut table = smmu_table(BlockSplit::Direct);
    let mut gather = Gather::new();
    assert_eq!(table.unmap(Iova(G1), G1, &mut gather), Ok(0));
    assert!(gather.is_empty());
    table
        .flush(gather, |_| -> Result<(), ()> {
            panic!("nothing to invalidate")
        })
        .unwrap();
}

#[test]
fn partial_unmap_of_a_block_replaces_it_directly() {
    let mut table = smmu_table(BlockSplit::Direct);
    table.map(Iova(M2), PhysAddr(0x4020_0000), M2, RW).unwrap();
    let hole = M2 + 10 * K4;
    let mut gather = Gather::new();
    assert_eq!(table.unmap(Iova(hole), 2 * K4, &mut gather), Ok(2 * K4));
    // The table is in place at once and the rest stays visible to the walker throughout.
    let (raw, level) = last_descriptor(&table, M2);
    assert_eq!(level, 3);
    assert_eq!(raw & 0x3, 0x3);
    assert_eq!(
        hardware_walk(&table, M2 + 9 * K4),
        Some(PhysAddr(0x4020_0000 + 9 * K4))
    );
    assert_eq!(hardware_walk(&table, hole), None);
    assert_eq!(
        hardware_walk(&table, hole + 2 * K4),
        Some(PhysAddr(0x4020_0000 + 12 * K4))
    );
    let inv = gather.invalidation().unwrap();
    // Only the hole, at the level where a TLB may hold the old block.
    assert_eq!(inv.range, Range::new(Iova(hole), 2 * K4));
    assert_eq!((inv.leaf_only, inv.ttl()), (true, 2));
    assert_eq!(gather.links_to_make(), 0);
    flush_ok(&mut table, gather);
    assert_eq!(table.mapped_bytes(), M2 - 2 * K4);
}

#[test]
fn partial_unmap_of_a_block_breaks_before_making() {
    let mut table = smmu_table(BlockSplit::BreakBeforeMake);
    table.map(Iova(M2), PhysAddr(0x4020_0000), M2, RW).unwrap();
    let mut gather = Gather::new();
    assert_eq!(table.unmap(Iova(M2), K4, &mut gather), Ok(K4));
    // Broken: the walker sees nothing in the whole block, the table knows what will be there.
    assert_eq!(hardware_walk(&table, M2 + K4), None);
    assert_eq!(table.translate(Iova(M2 + K4)), Some(PhysAddr(0x4020_1000)));
    assert_eq!(table.translate(Iova(M2)), None);
    let inv = gather.invalidation().unwrap();
    assert_eq!(inv.range, Range::new(Iova(M2), M2));
    assert_eq!((inv.leaf_only, inv.ttl()), (true, 2));
    assert_eq!(gather.links_to_make(), 1);
    // A failed invalidation makes nothing and frees nothing; the gather comes back.
    let Err(unflushed) = table.flush(gather, |_| Err("CMD_SYNC timeout")) else {
        panic!("flush must fail")
    };
    assert_eq!(unflushed.error, "CMD_SYNC timeout");
    assert_eq!(hardware_walk(&table, M2 + K4), None);
    // Made, once the invalidation completed.
    flush_ok(&mut table, unflushed.gather);
    assert_eq!(hardware_walk(&table, M2 + K4), Some(PhysAddr(0x4020_1000)));
    assert_eq!(hardware_walk(&table, M2), None);
    assert_eq!(table.tables_in_use(), 4);
}

#[test]
fn a_pending_split_emptied_before_its_flush_is_dropped() {
    let mut table = smmu_table(BlockSplit::BreakBeforeMake);
    table.map(Iova(M2), PhysAddr(0x4020_0000), M2, RW).unwrap();
    let mut first = Gather::new();
    table.unmap(Iova(M2 + M2 / 2), K4, &mut first).unwrap();
    // Mapping into the hole of a pending split works on the replacement table.
    table
        .map(Iova(M2 + M2 / 2), PhysAddr(0x9000_0000), K4, RW)
        .unwrap();
    assert_eq!(
        table.translate(Iova(M2 + M2 / 2)),
        Some(PhysAddr(0x9000_0000))
    );
    let mut second = Gather::new();
    assert_eq!(table.unmap(Iova(M2), M2, &mut second), Ok(M2));
    // The replacement was never linked, so it is freed at once; the L2 table is now empty
    // but stays (the unmap did not cover its 1 GiB span).
    assert_eq!(second.tables_to_free(), 0);
    flush_ok(&mut table, second);
    flush_ok(&mut table, first);
    assert_eq!(table.translate(Iova(M2 + K4)), None);
    assert_eq!(table.tables_in_use(), 3);
    assert_eq!(table.memory().pages_in_use(), 3);
}

#[test]
fn partial_unmap_of_a_gigabyte_block_splits_twice() {
    for block_split in [BlockSplit::Direct, BlockSplit::BreakBeforeMake] {
        let mut table = smmu_table(block_split);
        table.map(Iova(G1), PhysAddr(2 * G1), G1, RW).unwrap();
        assert_eq!(table.tables_in_use(), 2);
        let hole = G1 + 5 * M2 + 3 * K4;
        let mut gather = Gather::new();
        assert_eq!(table.unmap(Iova(hole), K4, &mut gather), Ok(K4));
        flush_ok(&mut table, gather);
        assert_eq!(table.tables_in_use(), 4, "{block_split:?}");
        assert_eq!(last_descriptor(&table, G1).1, 2);
        assert_eq!(last_descriptor(&table, hole - K4).1, 3);
        for probe in [G1, hole - K4, hole + K4, G1 + 5 * M2, 2 * G1 - 1] {
            assert_eq!(
                hardware_walk(&table, probe),
                Some(PhysAddr(probe + G1)),
                "{probe:#x}"
            );
        }
        assert_eq!(hardware_walk(&table, hole), None);
        let mut gather = Gather::new();
        assert_eq!(table.unmap(Iova(G1), G1, &mut gather), Ok(G1 - K4));
        flush_ok(&mut table, gather);
        // The split's tables went with their span; the level-1 table (512 GiB) stays.
        assert_eq!(table.tables_in_use(), 2);
    }
}

#[test]
fn unmap_spanning_two_blocks_splits_both_ends() {
    let mut table = smmu_table(BlockSplit::Direct);
    table.map(Iova(0), PhysAddr(0), 4 * M2, RW).unwrap();
    let mut gather = Gather::new();
    let start = M2 - K4;
    assert_eq!(
        table.unmap(Iova(start), M2 + 2 * K4, &mut gather),
        Ok(M2 + 2 * K4)
    );
    flush_ok(&mut table, gather);
    assert_eq!(
        table.translate(Iova(start - K4)),
        Some(PhysAddr(start - K4))
    );
    assert_eq!(table.translate(Iova(start)), None);
    assert_eq!(table.translate(Iova(2 * M2)), None);
    assert_eq!(
        table.translate(Iova(2 * M2 + K4)),
        Some(PhysAddr(2 * M2 + K4))
    );
    assert_eq!(table.mapped_bytes(), 3 * M2 - 2 * K4);
}

#[test]
fn a_split_without_table_memory_changes_nothing() {
    let mut table = smmu_table(BlockSplit::Direct);
    table.map(Iova(G1), PhysAddr(G1), G1, RW).unwrap();
    let mut memory = table.destroy();
    memory.limit_allocations(Some(3));
    let mut table = Table::new(memory, Config::smmu(44, BlockSplit::Direct)).unwrap();
    table.map(Iova(G1), PhysAddr(G1), G1, RW).unwrap();
    let mut gather = Gather::new();
    // Needs an L2 and an L3 table; only one is left.
    assert_eq!(
        table.unmap(Iova(G1 + K4), K4, &mut gather),
        Err(PageTableError::OutOfTableMemory)
    );
    assert!(gather.is_empty());
    assert_eq!(table.translate(Iova(G1 + K4)), Some(PhysAddr(G1 + K4)));
    assert_eq!(table.tables_in_use(), 2);
    assert_eq!(table.memory().pages_in_use(), 2);
}

#[test]
fn a_whole_gigabyte_of_pages_maps_and_frees() {
    let mut table = smmu_table(BlockSplit::Direct);
    // Output offset by one page: no block can be used.
    table.map(Iova(G1), PhysAddr(0x4000_1000), G1, RW).unwrap();
    assert_eq!(table.tables_in_use(), 1 + 1 + 1 + 512);
    assert_eq!(
        table.translate(Iova(2 * G1 - 1)),
        Some(PhysAddr(0x4000_1000 + G1 - 1))
    );
    let mut gather = Gather::new();
    assert_eq!(table.unmap(Iova(G1), G1, &mut gather), Ok(G1));
    // 512 level-3 tables and the level-2 table; the level-1 table spans more and stays.
    assert_eq!(gather.tables_to_free(), 513);
    flush_ok(&mut table, gather);
    assert_eq!(table.memory().pages_in_use(), 2);
}

#[test]
fn gathers_stay_with_their_table() {
    let mut a = smmu_table(BlockSplit::Direct);
    let mut b = smmu_table(BlockSplit::Direct);
    a.map(Iova(0x1000), PhysAddr(0x1000), K4, RW).unwrap();
    let mut gather = Gather::new();
    a.unmap(Iova(0x1000), K4, &mut gather).unwrap();
    assert_eq!(
        b.unmap(Iova(0x1000), K4, &mut gather),
        Err(PageTableError::ForeignGather)
    );
    a.flush(gather, |_| Ok::<(), ()>(())).unwrap();
}

#[test]
fn bad_requests_are_refused() {
    let mut table = smmu_table(BlockSplit::Direct);
    assert_eq!(
        table.map(Iova(0), PhysAddr(0), 0, RW),
        Err(PageTableError::ZeroSize)
    );
    assert_eq!(
        table.map(Iova(0x800), PhysAddr(0), K4, RW),
        Err(PageTableError::Misaligned {
            input: Iova(0x800),
            size: K4
        })
    );
    assert_eq!(
        table.map(Iova(0), PhysAddr(0x10), K4, RW),
        Err(PageTableError::MisalignedOutput(PhysAddr(0x10)))
    );
    assert_eq!(
        table.map(Iova((1 << 48) - K4), PhysAddr(0), 2 * K4, RW),
        Err(PageTableError::InputOutOfRange {
            input: Iova((1 << 48) - K4),
            size: 2 * K4
        })
    );
    assert_eq!(
        table.map(Iova(0), PhysAddr((1 << 44) - K4), 2 * K4, RW),
        Err(PageTableError::OutputOutOfRange {
            output: PhysAddr((1 << 44) - K4),
            size: 2 * K4
        })
    );
    let wx = RW.executable();
    assert_eq!(
        table.map(Iova(0), PhysAddr(0), K4, wx),
        Err(PageTableError::UnsupportedProt(wx))
    );
    let device_x = Prot::read_only(MemoryType::Device).executable();
    assert_eq!(
        table.map(Iova(0), PhysAddr(0), K4, device_x),
        Err(PageTableError::UnsupportedProt(device_x))
    );
    assert_eq!(table.tables_in_use(), 1);
    // The top page of the input range is fine.
    table
        .map(Iova((1 << 48) - K4), PhysAddr((1 << 44) - K4), K4, RW)
        .unwrap();
}

#[test]
fn bad_configs_are_refused() {
    let base = Config::smmu(44, BlockSplit::Direct);
    let new = |config| Table::new(FakeTableMemory::default(), config).map(|_| ());
    assert_eq!(
        new(Config {
            input_bits: 49,
            ..base
        }),
        Err(PageTableError::UnsupportedInputBits(49))
    );
    assert_eq!(
        new(Config {
            output_bits: 52,
            ..base
        }),
        Err(PageTableError::UnsupportedOutputBits(52))
    );
    let no_4k = PageSizes(M2);
    assert_eq!(
        new(Config {
            page_sizes: no_4k,
            ..base
        }),
        Err(PageTableError::UnsupportedPageSizes(no_4k))
    );
    // A table page the walker cannot reach is refused.
    let high = FakeTableMemory::new(PhysAddr(1 << 44));
    assert_eq!(
        Table::new(high, base).map(|_| ()),
        Err(PageTableError::BadTablePage(PhysAddr(1 << 44)))
    );
    assert_eq!(BlockSplit::from_smmu_bbml(2), BlockSplit::Direct);
    assert_eq!(BlockSplit::from_smmu_bbml(1), BlockSplit::BreakBeforeMake);
}

#[test]
fn smaller_input_sizes_start_lower() {
    let config = Config {
        input_bits: 39,
        ..Config::smmu(44, BlockSplit::Direct)
    };
    let mut table = Table::new(FakeTableMemory::default(), config).unwrap();
    assert_eq!(table.start_level(), 1);
    table
        .map(Iova((1 << 39) - G1), PhysAddr(G1), G1, RW)
        .unwrap();
    assert_eq!(table.tables_in_use(), 1);
    assert_eq!(
        table.translate(Iova((1 << 39) - 1)),
        Some(PhysAddr(2 * G1 - 1))
    );
    assert!(matches!(
        table.map(Iova(1 << 39), PhysAddr(0), K4, RW),
        Err(PageTableError::InputOutOfRange { .. })
    ));
}

#[test]
fn cpu_tables_use_virtual_addresses_and_el1_attributes() {
    let mut table: PageTable<FakeTableMemory, VirtAddr> = PageTable::new(
        FakeTableMemory::default(),
        Config::cpu_el1(40, BlockSplit::BreakBeforeMake),
    )
    .unwrap();
    let text = Prot::read_only(MemoryType::NormalWriteBack).executable();
    table
        .map(VirtAddr(0x4008_0000), PhysAddr(0x4008_0000), 16 * K4, text)
        .unwrap();
    assert_eq!(
        table.translate(VirtAddr(0x4008_1234)),
        Some(PhysAddr(0x4008_1234))
    );
    let raw = table.memory().read(
        {
            let mut t = table.root();
            for level in 0..3 {
                match decode(
                    table.memory().read(t, table_index(0x4008_0000, level)),
                    level,
                ) {
                    Descriptor::Table(next) => t = next,
                    other => panic!("{other:?}"),
                }
            }
            t
        },
        table_index(0x4008_0000, 3),
    );
    assert_eq!(raw, 0x0040_0000_4008_0787);
    assert_eq!(
        hardware_walk(&table, 0x4008_f000),
        Some(PhysAddr(0x4008_f000))
    );
}

#[test]
fn destroy_returns_every_page() {
    let mut table = smmu_table(BlockSplit::BreakBeforeMake);
    table
        .map(Iova(0), PhysAddr(0), 3 * G1 + 5 * M2 + 7 * K4, RW)
        .unwrap();
    table
        .map(Iova(1 << 47), PhysAddr(0x1000), 3 * K4, RW)
        .unwrap();
    assert!(table.memory().syncs() > 0);
    let memory = table.destroy();
    assert_eq!(memory.pages_in_use(), 0);
}

#[test]
fn errors_read_well() {
    let e: PageTableError = PageTableError::AlreadyMapped {
        input: Iova(0x1000),
    };
    assert_eq!(e.to_string(), "0x1000 is already mapped");
}

// ---------------------------------------------------------------------------------------------
// Model-checked random sequences

/// The address space the random tests use: 8 GiB.
const SPACE: u64 = 8 * G1;

#[derive(Clone, Debug)]
enum Op {
    Map { input: u64, size: u64, output: u64 },
    Unmap { input: u64, size: u64 },
    Flush,
}

fn page_aligned(max: u64) -> impl Strategy<Value = u64> {
    (0..max / K4).prop_map(|p| p * K4)
}

fn op() -> impl Strategy<Value = Op> {
    // Inputs and sizes at page, 2 MiB and 1 GiB granularity, so pages, blocks and splits mix.
    let small = (page_aligned(SPACE), 1u64..=20).prop_map(|(i, n)| (i, n * K4));
    let medium =
        (0..SPACE / M2, 1u64..=3, 0u64..3).prop_map(|(b, n, skew)| (b * M2 + skew * K4, n * M2));
    let large = (0..SPACE / G1, 1u64..=2).prop_map(|(g, n)| (g * G1, n * G1));
    let range = prop_oneof![4 => small, 3 => medium, 1 => large];
    // Outputs: the same offset as the input (blocks possible) or shifted by a page (pages only
    // for small ranges; large ranges keep 2 MiB alignment so the test stays fast).
    let map = (range.clone(), 0u64..4, any::<bool>()).prop_map(|((input, size), g, shift)| {
        let shift = if shift && size < M2 { K4 } else { 0 };
        Op::Map {
            input,
            size: size.min(SPACE - input),
            output: g * 8 * G1 + input + shift,
        }
    });
    let unmap = range.prop_map(|(input, size)| Op::Unmap {
        input,
        size: size.min(SPACE - input),
    });
    prop_oneof![5 => map, 4 => unmap, 1 => Just(Op::Flush)]
}

/// Mapped extents: start -> (end, output of start).
type Model = std::collections::BTreeMap<u64, (u64, u64)>;

fn model_translate(model: &Model, input: u64) -> Option<PhysAddr> {
    let (&start, &(end, output)) = model.range(..=input).next_back()?;
    (input < end).then(|| PhysAddr(output + (input - start)))
}

/// Removes `[start, end)` from the model, returns the removed pieces.
fn model_unmap(model: &mut Model, start: u64, end: u64) -> Vec<(u64, u64)> {
    let hits: Vec<(u64, u64, u64)> = model
        .range(..end)
        .filter(|(_, (e, _))| *e > start)
        .map(|(&s, &(e, o))| (s, e, o))
        .collect();
    let mut removed = Vec::new();
    for (s, e, o) in hits {
        model.remove(&s);
        if s < start {
            model.insert(s, (start, o));
        }
        if e > end {
            model.insert(end, (e, o + (end - s)));
        }
        removed.push((s.max(start), e.min(end)));
    }
    removed
}

/// Every leaf of the tree (following pending links too) as (input, size, output).
fn leaves(table: &Table) -> Vec<(u64, u64, u64)> {
    fn walk(table: &Table, at: PhysAddr, level: u8, base: u64, out: &mut Vec<(u64, u64, u64)>) {
        for index in 0..descriptor::ENTRIES {
            let input = base + index as u64 * level_size(level);
            match decode(table.memory().read(at, index), level) {
                Descriptor::Invalid => {}
                Descriptor::Table(next) | Descriptor::PendingTable(next) => {
                    walk(table, next, level + 1, input, out)
                }
                Descriptor::Leaf { output, .. } => out.push((input, level_size(level), output.0)),
            }
        }
    }
    let mut out = Vec::new();
    walk(table, table.root(), table.start_level(), 0, &mut out);
    out
}

/// Merges (input, size, output) pieces that continue each other in both spaces.
fn runs(pieces: impl IntoIterator<Item = (u64, u64, u64)>) -> Vec<(u64, u64, u64)> {
    let mut out: Vec<(u64, u64, u64)> = Vec::new();
    for (input, size, output) in pieces {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == input && last.2 + last.1 == output => last.1 += size,
            _ => out.push((input, size, output)),
        }
    }
    out
}

fn check_against_model(table: &Table, model: &Model, probes: &[u64]) -> Result<(), TestCaseError> {
    // The whole tree, leaf by leaf, against the model.
    let expected = runs(model.iter().map(|(&s, &(e, o))| (s, e - s, o)));
    prop_assert_eq!(runs(leaves(table)), expected);
    for (&start, &(end, _)) in model {
        for input in [start, end - 1, start + (end - start) / 2, end] {
            if input < SPACE {
                prop_assert_eq!(
                    table.translate(Iova(input)),
                    model_translate(model, input),
                    "at {:#x}",
                    input
                );
            }
        }
    }
    for &input in probes {
        prop_assert_eq!(
            table.translate(Iova(input)),
            model_translate(model, input),
            "at {:#x}",
            input
        );
    }
    let bytes: u64 = model
        .values()
        .zip(model.keys())
        .map(|((e, _), s)| e - s)
        .sum();
    prop_assert_eq!(table.mapped_bytes(), bytes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn random_maps_and_unmaps_match_the_model(
        ops in proptest::collection::vec(op(), 1..40),
        probes in proptest::collection::vec(0..SPACE, 16),
        break_before_make in any::<bool>(),
    ) {
        let block_split = if break_before_make { BlockSplit::BreakBeforeMake } else { BlockSplit::Direct };
        let mut table = smmu_table(block_split);
        let mut model = Model::new();
        let mut gather = Gather::new();
        let mut since_flush: Vec<(u64, u64)> = Vec::new();
        for op in ops {
            match op {
                Op::Map { input, size, output } => {
                    let overlaps = model.range(..input + size).any(|(_, (e, _))| *e > input);
                    let result = table.map(Iova(input), PhysAddr(output), size, RW);
                    if overlaps {
                        let refused = matches!(result, Err(PageTableError::AlreadyMapped { .. }));
                        prop_assert!(refused, "{:?}", result);
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        model.insert(input, (input + size, output));
                    }
                }
                Op::Unmap { input, size } => {
                    let removed = model_unmap(&mut model, input, input + size);
                    let bytes: u64 = removed.iter().map(|(s, e)| e - s).sum();
                    prop_assert_eq!(table.unmap(Iova(input), size, &mut gather), Ok(bytes));
                    since_flush.extend(removed);
                }
                Op::Flush => {
                    let done = core::mem::take(&mut gather);
                    let covered = since_flush.clone();
                    table.flush(done, |inv| {
                        let (s, e) = (inv.range.start.0, inv.range.start.0 + inv.range.size);
                        assert!(covered.iter().all(|&(a, b)| s <= a && b <= e), "{inv:?} misses {covered:?}");
                        Ok::<(), ()>(())
                    }).unwrap();
                    since_flush.clear();
                    // Nothing pending: the hardware view is the model.
                    for &input in &probes {
                        prop_assert_eq!(hardware_walk(&table, input), model_translate(&model, input));
                    }
                }
            }
            check_against_model(&table, &model, &probes)?;
        }
        // Unmapping the whole input space returns every table but the root.
        let mut last = Gather::new();
        let removed = model_unmap(&mut model, 0, SPACE);
        let bytes: u64 = removed.iter().map(|(s, e)| e - s).sum();
        prop_assert_eq!(table.unmap(Iova(0), 1 << 44, &mut last), Ok(bytes));
        table.flush(gather, |_| Ok::<(), ()>(())).unwrap();
        table.flush(last, |_| Ok::<(), ()>(())).unwrap();
        prop_assert_eq!(table.tables_in_use(), 1);
        prop_assert_eq!(table.mapped_bytes(), 0);
        prop_assert_eq!(table.memory().pages_in_use(), 1);
        prop_assert_eq!(table.destroy().pages_in_use(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The DMA pattern: buffers of a few pages mapped and unmapped in a small window (16
    /// pages across a 2 MiB and 1 GiB boundary), which takes the one-walk paths when a buffer
    /// sits in one level-3 table and the general path when it straddles; translations and
    /// counts always match the model, and tables stay once made.
    #[test]
    fn small_buffers_in_and_out_keep_the_tables_exact(
        ops in proptest::collection::vec((0u64..16, 1u64..=4, any::<bool>()), 1..200),
    ) {
        // Few pages, so tables fill and empty often; straddling a 1 GiB boundary.
        let base = 0x4000_0000 - 8 * K4;
        let mut table = smmu_table(BlockSplit::Direct);
        let mut model = Model::new();
        let (mut low, mut high) = (false, false);
        for (page, pages, map) in ops {
            let pages = pages.min(16 - page);
            let (input, size) = (base + page * K4, pages * K4);
            let mapped: Vec<u64> = (0..pages).map(|p| input + p * K4).filter(|a| model.contains_key(a)).collect();
            if map {
                let result = table.map(Iova(input), PhysAddr(0x8000_0000 + page * K4), size, RW);
                if mapped.is_empty() {
                    prop_assert_eq!(result, Ok(()));
                    for p in 0..pages {
                        model.insert(input + p * K4, (input + (p + 1) * K4, 0x8000_0000 + (page + p) * K4));
                    }
                } else {
                    prop_assert!(matches!(result, Err(PageTableError::AlreadyMapped { .. })), "{:?}", result);
                    // The general path made the tables for the pages before the one in the
                    // way (documented: they stay, empty, for later).
                    low |= input < 0x4000_0000;
                    high |= mapped[0] >= 0x4000_0000;
                }
            } else {
                let mut gather = Gather::new();
                prop_assert_eq!(table.unmap(Iova(input), size, &mut gather), Ok(mapped.len() as u64 * K4));
                if let Some(&first) = mapped.first() {
                    let inv = gather.invalidation().expect("unmapped pages are invalidated");
                    let last = mapped[mapped.len() - 1] + K4;
                    prop_assert!(inv.range.start.0 <= first && last <= inv.range.start.0 + inv.range.size);
                }
                table.flush(gather, |_| Ok::<(), ()>(())).unwrap();
                for a in &mapped {
                    model.remove(a);
                }
            }
            for p in 0..pages {
                let a = input + p * K4;
                prop_assert_eq!(hardware_walk(&table, a), model_translate(&model, a));
            }
            // Root, the level-1 table both halves share, and a level-2 and a level-3 table per
            // half that ever had a page (page unmaps leave emptied tables for the next map).
            low |= model.keys().any(|&k| k < 0x4000_0000);
            high |= model.keys().any(|&k| k >= 0x4000_0000);
            let expected = 1 + usize::from(low || high) + 2 * usize::from(low) + 2 * usize::from(high);
            prop_assert_eq!(table.tables_in_use(), expected, "low {} high {}", low, high);
            prop_assert_eq!(table.mapped_bytes(), model.len() as u64 * K4);
        }
        // The entry counts stayed right: an unmap of everything frees every table.
        let mut gather = Gather::new();
        prop_assert_eq!(table.unmap(Iova(0), 1 << 44, &mut gather), Ok(model.len() as u64 * K4));
        table.flush(gather, |_| Ok::<(), ()>(())).unwrap();
        prop_assert_eq!(table.tables_in_use(), 1);
    }
}
