//! io-pgtable's [`TableMemory`] over `kapi::dma_mem::Frames`: the page-table pages of a DMA
//! domain, which the SMMU walks.
//!
//! Each table page is one `Frames` block of one page (zeroed and 4 KiB aligned by `Frames`),
//! kept here until io-pgtable frees it. Descriptors are read and written with the volatile
//! 64-bit accessors of `Frames`: one single-copy-atomic store per descriptor, as the walker may
//! read it at any time. On an SMMU whose walks are coherent (IDR0.COHACC) nothing else is needed
//! (the barrier before the next command or doorbell orders the stores); otherwise every written
//! range is cleaned to the point of coherency.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::Cell;

use io_pgtable::TableMemory;
use kapi::dma_mem::Frames;
use kapi::{PAGE_SIZE, PhysAddr};

use crate::hw::Coherency;

/// Freed table pages kept for reuse. A DMA domain whose mappings come and go (one buffer mapped
/// at a time) would otherwise allocate and free the same three intermediate tables on every
/// map/unmap pair; with the cache that churn costs a zeroing instead of a trip through the page
/// allocator. Bounded, and released when the domain goes.
const SPARE_PAGES: usize = 16;

/// How many recent page lookups are remembered: a walk touches one table per level, and a map
/// or unmap walks the same four again and again (eight measured slower: the scan costs more
/// than the misses it saves).
const RECENT: usize = 4;
/// Never a table page's address (not page aligned): an empty `recent` entry.
const NO_PAGE: PhysAddr = PhysAddr(u64::MAX);

/// Table pages of one page table.
#[derive(Debug)]
pub struct FramesTableMemory {
    /// The pages, by slot; a slot whose page was freed is `None` until reused.
    slots: Vec<Option<Frames>>,
    free_slots: Vec<usize>,
    /// Slot of each page.
    by_address: BTreeMap<PhysAddr, usize>,
    /// The last pages looked up, so the walk in progress skips `by_address`.
    recent: [Cell<(PhysAddr, usize)>; RECENT],
    recent_next: Cell<usize>,
    spare: Vec<Frames>,
    coherency: Coherency,
}

impl FramesTableMemory {
    /// No pages yet; walks are coherent or not as `coherency` says.
    pub fn new(coherency: Coherency) -> Self {
        Self {
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_address: BTreeMap::new(),
            recent: [const { Cell::new((NO_PAGE, 0)) }; RECENT],
            recent_next: Cell::new(0),
            spare: Vec::new(),
            coherency,
        }
    }

    /// Pages currently held.
    pub fn pages(&self) -> usize {
        self.by_address.len()
    }

    /// Leaks every page: they are never reused. For teardown when the SMMU could not be
    /// stopped from walking them.
    pub fn leak(self) {
        for frames in self.slots.into_iter().flatten() {
            core::mem::forget(frames);
        }
        for frames in self.spare {
            core::mem::forget(frames);
        }
    }

    /// The page at `table`, if this memory holds it.
    #[inline(always)]
    fn page(&self, table: PhysAddr) -> Option<&Frames> {
        let slot = match self.recent.iter().find(|r| r.get().0 == table) {
            Some(r) => r.get().1,
            None => {
                let slot = *self.by_address.get(&table)?;
                let next = self.recent_next.get();
                self.recent[next].set((table, slot));
                self.recent_next.set((next + 1) % RECENT);
                slot
            }
        };
        self.slots[slot].as_ref()
    }
}

impl TableMemory for FramesTableMemory {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let frames = match self.spare.pop() {
            Some(f) => {
                // A freed table is empty but may hold stale invalid words: reuse it zeroed.
                f.fill(0, PAGE_SIZE, 0);
                f
            }
            None => Frames::alloc(0)?,
        };
        // The zeroes must reach memory before the page can be linked and walked.
        self.coherency.publish(&frames, 0, PAGE_SIZE);
        let pa = frames.pa();
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(frames);
                slot
            }
            None => {
                self.slots.push(Some(frames));
                self.slots.len() - 1
            }
        };
        self.by_address.insert(pa, slot);
        Some(pa)
    }

    fn free_table(&mut self, table: PhysAddr) {
        // io-pgtable frees only pages no walk can reach any more (after the invalidation): they
        // may be reused, or returned to the allocator by dropping them.
        let Some(slot) = self.by_address.remove(&table) else {
            debug_assert!(false, "free of unknown table page {table}");
            return;
        };
        for r in &self.recent {
            if r.get().0 == table {
                r.set((NO_PAGE, 0));
            }
        }
        self.free_slots.push(slot);
        if let Some(f) = self.slots[slot].take()
            && self.spare.len() < SPARE_PAGES
        {
            self.spare.push(f);
        }
    }

    #[inline(always)]
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        // An unknown page would be an io-pgtable bug; read it as an invalid descriptor.
        self.page(table).map_or(0, |f| f.read_u64(index as u64 * 8))
    }

    #[inline(always)]
    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        match self.page(table) {
            Some(f) => f.write_u64(index as u64 * 8, value),
            None => debug_assert!(false, "write to unknown table page {table}"),
        }
    }

    fn sync(&mut self, table: PhysAddr, first: usize, count: usize) {
        if self.coherency.is_coherent() {
            return;
        }
        if let Some(f) = self.page(table) {
            self.coherency
                .publish(f, first as u64 * 8, count as u64 * 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver_tests::serial;
    use io_pgtable::{BlockSplit, Config, Gather, MemoryType, PageTable, Prot};
    use kapi::Iova;
    use kapi::platform::Platform;

    #[test]
    fn smmuv3_pgtable_mem_pages_are_zeroed_aligned_and_returned() {
        let (_serial, platform) = serial();
        let before = platform.frames_in_use();
        let mut mem = FramesTableMemory::new(Coherency::new(true));
        let a = mem.alloc_table().unwrap();
        let b = mem.alloc_table().unwrap();
        assert!(a.is_aligned(PAGE_SIZE) && b.is_aligned(PAGE_SIZE) && a != b);
        assert!((0..512).all(|i| mem.read(a, i) == 0));
        mem.write(a, 511, 0xdead_beef_0000_0003);
        mem.sync(a, 511, 1);
        assert_eq!(mem.read(a, 511), 0xdead_beef_0000_0003);
        assert_eq!(mem.read(b, 511), 0);
        assert_eq!(platform.frames_in_use(), before + 2);
        mem.free_table(a);
        assert_eq!(mem.pages(), 1);
        assert_eq!(
            platform.frames_in_use(),
            before + 2,
            "a freed table is kept for reuse"
        );
        let c = mem.alloc_table().unwrap();
        assert_eq!(c, a, "the spare page is reused");
        assert_eq!(mem.read(c, 511), 0, "and zeroed before it is");
        // Looked up afresh, not through what was remembered of the freed page.
        mem.write(c, 3, 7);
        assert_eq!(mem.read(c, 3), 7);
        drop(mem);
        assert_eq!(platform.frames_in_use(), before);
    }

    #[test]
    fn smmuv3_pgtable_mem_backs_a_real_page_table() {
        let (_serial, platform) = serial();
        let before = platform.frames_in_use();
        let mem = FramesTableMemory::new(Coherency::new(true));
        // 48-bit output: the fake platform's "physical" addresses are host virtual addresses.
        let mut table = PageTable::new(mem, Config::smmu(48, BlockSplit::Direct)).unwrap();
        let prot = Prot::read_write(MemoryType::NormalWriteBack);
        table
            .map(Iova(0x10_0000), PhysAddr(0x4000_0000), 0x4000, prot)
            .unwrap();
        // Root, level 1, level 2, level 3.
        assert_eq!(table.tables_in_use(), 4);
        assert_eq!(table.memory().pages(), 4);
        assert_eq!(
            table.translate(Iova(0x10_2345)),
            Some(PhysAddr(0x4000_2345))
        );
        // An unmap of the whole first level-0 entry, so the tables below go too.
        let mut gather = Gather::new();
        assert_eq!(table.unmap(Iova(0), 512 << 30, &mut gather), Ok(0x4000));
        assert!(gather.tables_to_free() > 0);
        table.flush(gather, |_| Ok::<(), ()>(())).unwrap();
        assert_eq!(table.tables_in_use(), 1);
        assert_eq!(table.memory().pages(), 1);
        // The three freed tables wait in the spare cache until the memory is dropped.
        assert_eq!(platform.frames_in_use(), before + 4);
        drop(table.destroy());
        assert_eq!(platform.frames_in_use(), before);
    }
}
