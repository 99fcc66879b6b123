//! How the page table reaches its memory: a trait, so this crate needs no `unsafe` and runs on the
//! host. The kernel implements it over `kapi::dma_mem::Frames` (volatile 64-bit accesses);
//! [`fake::FakeTableMemory`] keeps tables in host memory for tests.

use addr::PhysAddr;

/// Table pages as the page-table code sees them.
///
/// Implementations for hardware must make each `write` one single-copy-atomic 64-bit store
/// (the walker may read the entry at any time, VMSAv8-64 requires descriptors to be written
/// whole) and each page 4 KiB aligned.
pub trait TableMemory {
    /// A zeroed, 4 KiB aligned page, its zeroes already visible to the table walker; `None`
    /// when memory is exhausted.
    fn alloc_table(&mut self) -> Option<PhysAddr>;

    /// Takes back a page from `alloc_table`. The page table calls this only once no walker can
    /// reach the page any more (after the caller's TLB invalidation and sync when it was linked).
    fn free_table(&mut self, table: PhysAddr);

    /// Entry `index` (0..512) of `table`.
    fn read(&self, table: PhysAddr, index: usize) -> u64;

    /// Stores entry `index` of `table` with one 64-bit write.
    fn write(&mut self, table: PhysAddr, index: usize, value: u64);

    /// Makes entries `first .. first + count` of `table` visible to the table walker: clean to
    /// the point of coherency and DSB when the walker is not coherent (SMMU `IDR0.COHACC` = 0 or
    /// no `dma-coherent`), nothing when it is (the barrier before the next command-queue or
    /// doorbell write orders the stores).
    fn sync(&mut self, table: PhysAddr, first: usize, count: usize);
}

/// Host fake of [`TableMemory`].
#[cfg(any(test, feature = "fakes"))]
pub mod fake {
    use super::TableMemory;
    use crate::descriptor::ENTRIES;
    use addr::{PAGE_SHIFT, PhysAddr};
    use alloc::boxed::Box;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;

    /// Table pages in host memory at made-up physical addresses `base + n * 4 KiB`.
    ///
    /// Access to a page that is not allocated panics, so a use after free shows up at once.
    /// Freed pages are handed out again first, so an early free is likely to corrupt a live
    /// table in a test rather than go unnoticed.
    #[derive(Debug)]
    pub struct FakeTableMemory {
        base: PhysAddr,
        pages: Vec<Option<Box<[u64; ENTRIES]>>>,
        vacant: Vec<usize>,
        in_use: usize,
        allocations_left: Option<usize>,
        syncs: usize,
        /// Entries written and not synced yet: a non-coherent walker would not see them.
        unsynced: BTreeSet<(PhysAddr, usize)>,
    }

    impl Default for FakeTableMemory {
        fn default() -> Self {
            Self::new(PhysAddr(0x4000_0000))
        }
    }

    impl FakeTableMemory {
        /// Pages numbered up from `base` (4 KiB aligned).
        pub fn new(base: PhysAddr) -> Self {
            Self {
                base,
                pages: Vec::new(),
                vacant: Vec::new(),
                in_use: 0,
                allocations_left: None,
                syncs: 0,
                unsynced: BTreeSet::new(),
            }
        }

        /// Table pages currently allocated.
        pub fn pages_in_use(&self) -> usize {
            self.in_use
        }

        /// Number of `sync` calls so far.
        pub fn syncs(&self) -> usize {
            self.syncs
        }

        /// True when entry `index` of `table` was written and not synced since: what a table
        /// walker that is not coherent with the CPU could not see yet.
        pub fn is_unsynced(&self, table: PhysAddr, index: usize) -> bool {
            self.unsynced.contains(&(table, index))
        }

        /// Lets only `count` more allocations succeed (`None`: unlimited).
        pub fn limit_allocations(&mut self, count: Option<usize>) {
            self.allocations_left = count;
        }

        fn slot(&self, table: PhysAddr) -> usize {
            assert!(
                table >= self.base && table.is_aligned(1 << PAGE_SHIFT),
                "not a table page: {table:?}"
            );
            ((table - self.base) >> PAGE_SHIFT) as usize
        }

        fn page(&self, table: PhysAddr) -> &[u64; ENTRIES] {
            match self.pages.get(self.slot(table)) {
                Some(Some(page)) => page,
                _ => panic!("access to unallocated table page {table:?}"),
            }
        }
    }

    impl TableMemory for FakeTableMemory {
        fn alloc_table(&mut self) -> Option<PhysAddr> {
            if let Some(left) = &mut self.allocations_left {
                *left = left.checked_sub(1)?;
            }
            let slot = match self.vacant.pop() {
                Some(slot) => slot,
                None => {
                    self.pages.push(None);
                    self.pages.len() - 1
                }
            };
            self.pages[slot] = Some(Box::new([0; ENTRIES]));
            self.in_use += 1;
            Some(self.base + ((slot as u64) << PAGE_SHIFT))
        }

        fn free_table(&mut self, table: PhysAddr) {
            let slot = self.slot(table);
            assert!(
                matches!(self.pages.get(slot), Some(Some(_))),
                "free of unallocated table page {table:?}"
            );
            self.pages[slot] = None;
            self.unsynced.retain(|&(t, _)| t != table);
            self.vacant.push(slot);
            self.in_use -= 1;
        }

        fn read(&self, table: PhysAddr, index: usize) -> u64 {
            self.page(table)[index]
        }

        fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
            let slot = self.slot(table);
            match self.pages.get_mut(slot) {
                Some(Some(page)) => page[index] = value,
                _ => panic!("write to unallocated table page {table:?}"),
            }
            self.unsynced.insert((table, index));
        }

        fn sync(&mut self, table: PhysAddr, first: usize, count: usize) {
            assert!(first + count <= ENTRIES, "sync beyond the table");
            self.page(table);
            self.syncs += 1;
            for index in first..first + count {
                self.unsynced.remove(&(table, index));
            }
        }
    }
}
