//! The page table: map, unmap with gathered TLB maintenance, translate, destroy.

use crate::PageTableError;
use crate::config::{BlockSplit, Config, MemoryType, Prot};
use crate::descriptor::{self, Descriptor, ENTRIES, LAST_LEVEL, level_size};
use crate::gather::{Gather, PendingLink};
use crate::memory::TableMemory;
use addr::{Address, Iova, PAGE_SIZE, PhysAddr};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::Cell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(0);

/// A failed [`PageTable::flush`]: the caller's invalidation error, and the gather, untouched, to
/// retry with (or to drop, leaking its pages, which is safe).
#[derive(Debug)]
pub struct Unflushed<E, A: Address = Iova> {
    /// What the invalidation reported.
    pub error: E,
    /// The gather, still holding its work.
    pub gather: Gather<A>,
}

/// Valid entries per table page, sorted by page address: a binary search finds a count in a
/// few steps (every map and unmap updates one), and pages come and go rarely enough that
/// keeping the vector sorted costs nothing that matters.
#[derive(Debug, Default)]
struct EntryCounts(Vec<(PhysAddr, u16)>);

impl EntryCounts {
    fn position(&self, table: PhysAddr) -> Result<usize, usize> {
        self.0.binary_search_by_key(&table, |&(t, _)| t)
    }
    fn insert(&mut self, table: PhysAddr, count: u16) {
        match self.position(table) {
            Ok(i) => self.0[i].1 = count,
            Err(i) => self.0.insert(i, (table, count)),
        }
    }
    fn remove(&mut self, table: &PhysAddr) {
        if let Ok(i) = self.position(*table) {
            self.0.remove(i);
        }
    }
    fn get(&self, table: &PhysAddr) -> Option<&u16> {
        self.position(*table).ok().map(|i| &self.0[i].1)
    }
    fn get_mut(&mut self, table: &PhysAddr) -> Option<&mut u16> {
        self.position(*table).ok().map(|i| &mut self.0[i].1)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn tables(&self) -> impl Iterator<Item = PhysAddr> + '_ {
        self.0.iter().map(|&(t, _)| t)
    }
}

/// One VMSAv8-64 stage-1 translation table tree (4 KiB granule) over input addresses `A`
/// (`Iova` for a DMA domain, `VirtAddr` for the kernel's own tables).
///
/// Not internally synchronised: the owner (an IOMMU domain, the kernel's address space) holds
/// it behind its lock.
#[derive(Debug)]
pub struct PageTable<M: TableMemory, A: Address = Iova> {
    /// Tells gathers which table they belong to (root addresses can repeat across memories).
    id: u64,
    memory: M,
    config: Config,
    root: PhysAddr,
    start_level: u8,
    /// Valid (or pending-link) entries of each table page owned by the tree, root included.
    /// An entry count of 0 means the page can go.
    entry_counts: EntryCounts,
    /// Table pages handed to gathers and not yet released.
    held_tables: usize,
    /// Break-before-make links not yet made: (parent, index) -> sequence number of the split.
    pending_links: BTreeMap<(PhysAddr, usize), u64>,
    next_sequence: u64,
    mapped_bytes: u64,
    /// The level-3 table the last fast-path walk found, by its 2 MiB region: the next fast map
    /// or unmap in that region (a buffer unmapped after it was mapped, or its neighbour) skips
    /// the walk. Only the fast paths use and fill it, and they change no entry above level 3;
    /// every other path that may change the tree clears it first.
    walk_cache: Cell<Option<(u64, PhysAddr)>>,
    _address: PhantomData<A>,
}

/// Everything one `map` call needs at each level.
#[derive(Clone, Copy, Debug)]
struct MapRequest {
    start: u64,
    end: u64,
    /// Output address of `start`.
    output: u64,
    attributes: u64,
}

impl MapRequest {
    fn output_at(&self, input: u64) -> u64 {
        self.output + (input - self.start)
    }

    /// The part of the request inside `slot`.
    fn narrowed_to(&self, slot: &Slot) -> MapRequest {
        MapRequest {
            start: slot.start,
            end: slot.end,
            output: self.output_at(slot.start),
            attributes: self.attributes,
        }
    }
}

/// The part of `[start, end)` that entry `index` of a table at `level` covers, with the entry's
/// own bounds.
#[derive(Clone, Copy, Debug)]
struct Slot {
    index: usize,
    entry_start: u64,
    entry_end: u64,
    start: u64,
    end: u64,
}

impl Slot {
    fn covers_entry(&self) -> bool {
        self.start == self.entry_start && self.end == self.entry_end
    }
}

/// The entries of a table at `level` (whose first entry starts at `table_base`) that overlap
/// `[start, end)`.
fn slots(level: u8, start: u64, end: u64) -> impl Iterator<Item = Slot> {
    let size = level_size(level);
    let first = start & !(size - 1);
    (0..)
        .map(move |n| first + n * size)
        .take_while(move |&entry_start| entry_start < end)
        .map(move |entry_start| Slot {
            index: descriptor::table_index(entry_start, level),
            entry_start,
            entry_end: entry_start + size,
            start: start.max(entry_start),
            end: end.min(entry_start + size),
        })
}

/// State of one `unmap` call.
struct Unmapping<'g, A: Address> {
    gather: &'g mut Gather<A>,
    /// Tables taken before anything changed, for the splits the unmap will do.
    spare_tables: Vec<PhysAddr>,
}

/// Lowest and highest index written in one table, for one `sync` per table.
#[derive(Clone, Copy, Debug, Default)]
struct Touched(Option<(usize, usize)>);

impl Touched {
    fn add(&mut self, index: usize) {
        self.0 = Some(match self.0 {
            None => (index, index),
            Some((lo, hi)) => (lo.min(index), hi.max(index)),
        });
    }

    fn sync(self, memory: &mut impl TableMemory, table: PhysAddr) {
        if let Some((lo, hi)) = self.0 {
            memory.sync(table, lo, hi - lo + 1);
        }
    }
}

impl<M: TableMemory, A: Address> PageTable<M, A> {
    /// An empty tree (one zeroed root table) in `memory`.
    pub fn new(memory: M, config: Config) -> Result<Self, PageTableError<A>> {
        if !(25..=48).contains(&config.input_bits) {
            return Err(PageTableError::UnsupportedInputBits(config.input_bits));
        }
        if !(32..=48).contains(&config.output_bits) {
            return Err(PageTableError::UnsupportedOutputBits(config.output_bits));
        }
        let known_sizes = crate::PageSizes::ALL.0;
        if !config.page_sizes.contains(PAGE_SIZE) || config.page_sizes.0 & !known_sizes != 0 {
            return Err(PageTableError::UnsupportedPageSizes(config.page_sizes));
        }
        // Levels needed to resolve input_bits - 12 bits, 9 per level.
        let levels = (config.input_bits - 12).div_ceil(9) as u8;
        let mut table = Self {
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            memory,
            config,
            root: PhysAddr(0),
            start_level: LAST_LEVEL + 1 - levels,
            entry_counts: EntryCounts::default(),
            held_tables: 0,
            pending_links: BTreeMap::new(),
            next_sequence: 0,
            mapped_bytes: 0,
            walk_cache: Cell::new(None),
            _address: PhantomData,
        };
        table.root = table.new_table()?;
        Ok(table)
    }

    /// Physical address of the root table (SMMU `CD.TTB0`, CPU `TTBRn_EL1`).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Level the walk starts at (0 for 48 input bits).
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    /// The configuration this tree was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Table pages this tree holds, root included, plus those waiting in gathers (released
    /// by `flush`, or leaked by dropping a gather).
    pub fn tables_in_use(&self) -> usize {
        self.entry_counts.len() + self.held_tables
    }

    /// Bytes currently mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// The table memory (tests read raw entries through it).
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Maps `[input, input + size)` to `[output, output + size)` with `prot`, using the largest
    /// leaves (1 GiB, 2 MiB, 4 KiB, as `Config::page_sizes` allows) that input alignment, output
    /// alignment and the remaining size permit.
    ///
    /// Fails without changing any mapping when any part of the range is already mapped. When
    /// table memory runs out, nothing is mapped either; intermediate tables allocated before
    /// the failure stay linked, empty, and are reused by a later map or freed by an unmap that
    /// covers them or by `destroy`.
    ///
    /// New valid entries need no TLB invalidation (invalid entries are not cached), so `map`
    /// produces no gather.
    pub fn map(
        &mut self,
        input: A,
        output: PhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), PageTableError<A>> {
        self.check_input_range(input, size)?;
        if !output.is_aligned(PAGE_SIZE) {
            return Err(PageTableError::MisalignedOutput(output));
        }
        if output
            .checked_add(size)
            .is_none_or(|end| end.0 > 1 << self.config.output_bits)
        {
            return Err(PageTableError::OutputOutOfRange { output, size });
        }
        if prot.executable && (prot.writable || prot.memory == MemoryType::Device) {
            return Err(PageTableError::UnsupportedProt(prot));
        }
        let attributes = descriptor::leaf_attributes(self.config.flavour, prot);
        if self.map_pages_fast(input.raw(), size, output, attributes) {
            return Ok(());
        }
        self.walk_cache.set(None);
        let request = MapRequest {
            start: input.raw(),
            end: input.raw() + size,
            output: output.0,
            attributes,
        };
        // Two passes so that a failure leaves no partial mapping behind: the first checks the
        // whole range and allocates every table it needs, the second only writes leaves.
        self.prepare(self.root, self.start_level, &request, false)?;
        self.install(self.root, self.start_level, &request);
        self.mapped_bytes += size;
        Ok(())
    }

    /// Unmaps whatever is mapped in `[input, input + size)` and returns the number of bytes
    /// unmapped (holes are skipped). TLB maintenance and table pages that became empty go into
    /// `gather`, which the caller passes to [`flush`](Self::flush); one gather may collect
    /// several unmaps.
    ///
    /// A block only partly inside the range is split into smaller entries as
    /// `Config::block_split` says; that needs new tables, taken before anything changes, so an
    /// `OutOfTableMemory` error leaves every mapping as it was.
    pub fn unmap(
        &mut self,
        input: A,
        size: u64,
        gather: &mut Gather<A>,
    ) -> Result<u64, PageTableError<A>> {
        self.check_input_range(input, size)?;
        match gather.owner {
            Some(owner) if owner != self.id => return Err(PageTableError::ForeignGather),
            _ => gather.owner = Some(self.id),
        }
        let (start, end) = (input.raw(), input.raw() + size);
        if self.unmap_pages_fast(start, size, gather) {
            return Ok(size);
        }
        self.walk_cache.set(None);
        let mut work = Unmapping {
            gather,
            spare_tables: Vec::new(),
        };
        for boundary in [start, end] {
            for _ in 0..self.split_tables_needed(boundary) {
                match self.new_table() {
                    Ok(table) => work.spare_tables.push(table),
                    Err(error) => {
                        self.discard_unlinked(work.spare_tables);
                        return Err(error);
                    }
                }
            }
        }
        let removed = self.unmap_level(self.root, self.start_level, start, end, true, &mut work);
        self.discard_unlinked(work.spare_tables);
        self.mapped_bytes -= removed;
        Ok(removed)
    }

    /// Runs `invalidate` on the gather's invalidation (skipped when there is none) and, only when
    /// it returns `Ok` (invalidation issued *and* completed, e.g. `CMD_SYNC` consumed), links the
    /// break-before-make replacement tables and frees the table pages the gather held.
    pub fn flush<E>(
        &mut self,
        gather: Gather<A>,
        invalidate: impl FnOnce(&crate::Invalidation<A>) -> Result<(), E>,
    ) -> Result<(), Unflushed<E, A>> {
        if let Some(owner) = gather.owner {
            assert_eq!(owner, self.id, "gather flushed on another page table");
        }
        // Links are made and tables freed below.
        self.walk_cache.set(None);
        if let Some(invalidation) = gather.invalidation()
            && let Err(error) = invalidate(&invalidation)
        {
            return Err(Unflushed { error, gather });
        }
        for link in &gather.pending_links {
            // The split may have been undone since (its table emptied by a later unmap).
            if self.pending_links.get(&(link.parent, link.index)) == Some(&link.sequence) {
                self.pending_links.remove(&(link.parent, link.index));
                // Make, after the break's invalidation has completed (break-before-make).
                self.memory
                    .write(link.parent, link.index, descriptor::table(link.table));
                self.memory.sync(link.parent, link.index, 1);
            }
        }
        for &table in &gather.freed_tables {
            self.memory.free_table(table);
            self.held_tables -= 1;
        }
        Ok(())
    }

    /// Output address `input` translates to, `None` when unmapped. Follows break-before-make
    /// links not made yet: this is the mapping as `map`/`unmap` define it, which the walker sees
    /// once the pending gather is flushed.
    pub fn translate(&self, input: A) -> Option<PhysAddr> {
        let input = input.raw();
        if input >> self.config.input_bits != 0 {
            return None;
        }
        let mut table = self.root;
        for level in self.start_level..=LAST_LEVEL {
            let raw = self
                .memory
                .read(table, descriptor::table_index(input, level));
            match descriptor::decode(raw, level) {
                Descriptor::Invalid => return None,
                Descriptor::Table(next) | Descriptor::PendingTable(next) => table = next,
                Descriptor::Leaf { output, .. } => {
                    return Some(output + (input & (level_size(level) - 1)));
                }
            }
        }
        None
    }

    /// Frees every table page and returns the memory.
    ///
    /// The caller has made the tree unreachable first: SMMU context descriptor invalidated,
    /// ASID invalidated, synced (CPU: TTBR switched away, TLBs invalidated). Gathers not flushed
    /// by then keep (leak) their pages.
    pub fn destroy(mut self) -> M {
        for table in self.entry_counts.tables() {
            self.memory.free_table(table);
        }
        self.memory
    }

    // ---------------------------------------------------------------------------------------
    // Internals

    /// The level-3 table that holds `input`'s entry when every table above it is linked
    /// (nothing pending), `None` otherwise.
    fn last_level_table(&self, input: u64) -> Option<PhysAddr> {
        let region = input / level_size(LAST_LEVEL - 1);
        if let Some((cached, table)) = self.walk_cache.get()
            && cached == region
        {
            return Some(table);
        }
        let mut table = self.root;
        for level in self.start_level..LAST_LEVEL {
            let raw = self
                .memory
                .read(table, descriptor::table_index(input, level));
            match descriptor::decode(raw, level) {
                Descriptor::Table(next) => table = next,
                _ => return None,
            }
        }
        self.walk_cache.set(Some((region, table)));
        Some(table)
    }

    /// The level-3 entries `[first, first + count)` of one table that `[input, input + size)`
    /// covers, when it fits in one level-3 table (less than 2 MiB, not crossing a 2 MiB
    /// boundary): the case the single-walk paths handle.
    fn within_one_last_level_table(input: u64, size: u64) -> Option<(usize, usize)> {
        let span = level_size(LAST_LEVEL - 1);
        (size < span && input / span == (input + size - 1) / span).then(|| {
            (
                descriptor::table_index(input, LAST_LEVEL),
                (size / PAGE_SIZE) as usize,
            )
        })
    }

    /// The common DMA case, a few 4 KiB pages (a buffer) into one level-3 table that exists:
    /// one walk, the leaves stored, no allocation. False (nothing done) when the general path
    /// is needed: a table missing or pending, a block in the way, an entry taken (the general
    /// path reports it), or 4 KiB leaves disabled. Less than 2 MiB, so no block would be used.
    fn map_pages_fast(&mut self, input: u64, size: u64, output: PhysAddr, attributes: u64) -> bool {
        let Some((first, count)) = Self::within_one_last_level_table(input, size) else {
            return false;
        };
        if !self.config.page_sizes.contains(PAGE_SIZE) {
            return false;
        }
        let Some(table) = self.last_level_table(input) else {
            return false;
        };
        let free = (first..first + count).all(|i| {
            descriptor::decode(self.memory.read(table, i), LAST_LEVEL) == Descriptor::Invalid
        });
        if !free {
            return false;
        }
        for (n, i) in (first..first + count).enumerate() {
            let page = output + n as u64 * PAGE_SIZE;
            self.memory
                .write(table, i, descriptor::leaf(page, LAST_LEVEL, attributes));
        }
        self.memory.sync(table, first, count);
        self.count_entries(table, count, 0);
        self.mapped_bytes += size;
        true
    }

    /// The common DMA case, a buffer's pages out of one level-3 table: one walk, the leaves
    /// cleared and gathered (the table stays, see `unmap_level`). False (nothing done) when
    /// the general path is needed: a page not mapped, a block to split, a pending table.
    fn unmap_pages_fast(&mut self, input: u64, size: u64, gather: &mut Gather<A>) -> bool {
        let Some((first, count)) = Self::within_one_last_level_table(input, size) else {
            return false;
        };
        let Some(table) = self.last_level_table(input) else {
            return false;
        };
        let mapped = (first..first + count).all(|i| {
            matches!(
                descriptor::decode(self.memory.read(table, i), LAST_LEVEL),
                Descriptor::Leaf { .. }
            )
        });
        if !mapped {
            return false;
        }
        for i in first..first + count {
            self.memory.write(table, i, 0);
        }
        self.memory.sync(table, first, count);
        self.count_entries(table, 0, count);
        gather.add_leaves(input, input + size, LAST_LEVEL);
        self.mapped_bytes -= size;
        true
    }

    fn check_input_range(&self, input: A, size: u64) -> Result<(), PageTableError<A>> {
        if size == 0 {
            return Err(PageTableError::ZeroSize);
        }
        if !input.raw().is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(PageTableError::Misaligned { input, size });
        }
        if input
            .raw()
            .checked_add(size)
            .is_none_or(|end| end > 1 << self.config.input_bits)
        {
            return Err(PageTableError::InputOutOfRange { input, size });
        }
        Ok(())
    }

    /// A new zeroed table, counted (0 entries), not linked yet.
    fn new_table(&mut self) -> Result<PhysAddr, PageTableError<A>> {
        let table = self
            .memory
            .alloc_table()
            .ok_or(PageTableError::OutOfTableMemory)?;
        if !table.is_aligned(PAGE_SIZE) || table.0 >= 1 << self.config.output_bits {
            // The walker could not reach it through a table descriptor.
            self.memory.free_table(table);
            return Err(PageTableError::BadTablePage(table));
        }
        self.entry_counts.insert(table, 0);
        Ok(table)
    }

    /// Frees tables that were never linked (no walker can have seen them).
    fn discard_unlinked(&mut self, tables: Vec<PhysAddr>) {
        for table in tables {
            self.entry_counts.remove(&table);
            self.memory.free_table(table);
        }
    }

    fn count_entries(&mut self, table: PhysAddr, added: usize, removed: usize) {
        if added == removed {
            return;
        }
        let count = self
            .entry_counts
            .get_mut(&table)
            .expect("table page not owned by this tree");
        *count = (*count as usize + added - removed) as u16;
    }

    /// A leaf at `level` can map this slot: the size is enabled, the slot is the whole entry and
    /// the output is aligned to it.
    fn leaf_fits(&self, level: u8, slot: &Slot, request: &MapRequest) -> bool {
        let size = level_size(level);
        level >= 1
            && self.config.page_sizes.contains(size)
            && slot.covers_entry()
            && request.output_at(slot.start).is_multiple_of(size)
    }

    /// Pass 1 of `map`: fails on anything mapped in the range, allocates and links every table
    /// the leaves will need. `known_empty`: `table` was just allocated, no need to read it.
    fn prepare(
        &mut self,
        table: PhysAddr,
        level: u8,
        request: &MapRequest,
        known_empty: bool,
    ) -> Result<(), PageTableError<A>> {
        let mut touched = Touched::default();
        let mut linked = 0;
        let mut result = Ok(());
        for slot in slots(level, request.start, request.end) {
            let raw = if known_empty {
                0
            } else {
                self.memory.read(table, slot.index)
            };
            result = match descriptor::decode(raw, level) {
                Descriptor::Invalid if self.leaf_fits(level, &slot, request) => Ok(()),
                Descriptor::Invalid => match self.new_table() {
                    Ok(child) => {
                        // A zeroed table may be linked at once: its invalid entries translate
                        // nothing.
                        self.memory
                            .write(table, slot.index, descriptor::table(child));
                        touched.add(slot.index);
                        linked += 1;
                        self.prepare(child, level + 1, &request.narrowed_to(&slot), true)
                    }
                    Err(error) => Err(error),
                },
                Descriptor::Table(child) | Descriptor::PendingTable(child) => {
                    self.prepare(child, level + 1, &request.narrowed_to(&slot), false)
                }
                Descriptor::Leaf { .. } => Err(PageTableError::AlreadyMapped {
                    input: A::from_raw(slot.start),
                }),
            };
            if result.is_err() {
                break;
            }
        }
        touched.sync(&mut self.memory, table);
        self.count_entries(table, linked, 0);
        result
    }

    /// Pass 2 of `map`: writes the leaves into the tables `prepare` made ready.
    fn install(&mut self, table: PhysAddr, level: u8, request: &MapRequest) {
        let mut touched = Touched::default();
        let mut written = 0;
        for slot in slots(level, request.start, request.end) {
            let raw = self.memory.read(table, slot.index);
            match descriptor::decode(raw, level) {
                Descriptor::Invalid if self.leaf_fits(level, &slot, request) => {
                    let output = PhysAddr(request.output_at(slot.start));
                    let leaf = descriptor::leaf(output, level, request.attributes);
                    self.memory.write(table, slot.index, leaf);
                    touched.add(slot.index);
                    written += 1;
                }
                Descriptor::Table(child) | Descriptor::PendingTable(child) => {
                    self.install(child, level + 1, &request.narrowed_to(&slot));
                }
                other => unreachable!("map: {other:?} at level {level} after prepare"),
            }
        }
        touched.sync(&mut self.memory, table);
        self.count_entries(table, written, 0);
    }

    /// Tables a split at `boundary` needs: 0 unless `boundary` falls strictly inside a block;
    /// then one table per level below the block down to where `boundary` is aligned.
    fn split_tables_needed(&self, boundary: u64) -> usize {
        if boundary >> self.config.input_bits != 0 {
            return 0;
        }
        let mut table = self.root;
        for level in self.start_level..=LAST_LEVEL {
            let raw = self
                .memory
                .read(table, descriptor::table_index(boundary, level));
            match descriptor::decode(raw, level) {
                Descriptor::Invalid => return 0,
                Descriptor::Table(next) | Descriptor::PendingTable(next) => table = next,
                Descriptor::Leaf { .. } => {
                    return (level + 1..=LAST_LEVEL)
                        .take_while(|&sub| !boundary.is_multiple_of(level_size(sub - 1)))
                        .count();
                }
            }
        }
        0
    }

    /// Removes `[start, end)` below `table`; returns the bytes unmapped. `visible`: the walker
    /// can reach `table` (false inside a break-before-make replacement not linked yet, where
    /// nothing can be cached and pages can be freed at once).
    fn unmap_level(
        &mut self,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        visible: bool,
        work: &mut Unmapping<'_, A>,
    ) -> u64 {
        let mut touched = Touched::default();
        let mut cleared = 0;
        let mut removed = 0;
        for slot in slots(level, start, end) {
            let raw = self.memory.read(table, slot.index);
            match descriptor::decode(raw, level) {
                Descriptor::Invalid => {}
                Descriptor::Leaf { .. } if slot.covers_entry() => {
                    self.memory.write(table, slot.index, 0);
                    touched.add(slot.index);
                    cleared += 1;
                    removed += slot.end - slot.start;
                    if visible {
                        work.gather
                            .add_leaves(slot.entry_start, slot.entry_end, level);
                    }
                }
                Descriptor::Leaf { output, attributes } => {
                    removed += slot.end - slot.start;
                    let replacement =
                        self.build_split(level, &slot, output, attributes, &mut work.spare_tables);
                    touched.add(slot.index);
                    self.link_split(table, level, &slot, replacement, visible, work.gather);
                }
                Descriptor::Table(child) => {
                    removed +=
                        self.unmap_level(child, level + 1, slot.start, slot.end, visible, work);
                    // A table goes only with an unmap of its whole span. One emptied by
                    // smaller unmaps stays linked: the next map nearby needs it again (a DMA
                    // domain maps and unmaps the same few IOVAs all day), and `destroy` or
                    // an unmap of the span frees it.
                    if slot.covers_entry() && self.entry_counts.get(&child) == Some(&0) {
                        self.memory.write(table, slot.index, 0);
                        touched.add(slot.index);
                        cleared += 1;
                        self.retire(child, &slot, visible, work.gather);
                    }
                }
                Descriptor::PendingTable(child) => {
                    removed +=
                        self.unmap_level(child, level + 1, slot.start, slot.end, false, work);
                    if self.entry_counts.get(&child) == Some(&0) {
                        // Never linked: the split is undone and its flush will skip it.
                        self.pending_links.remove(&(table, slot.index));
                        self.memory.write(table, slot.index, 0);
                        touched.add(slot.index);
                        cleared += 1;
                        self.retire(child, &slot, false, work.gather);
                    }
                }
            }
        }
        touched.sync(&mut self.memory, table);
        self.count_entries(table, 0, cleared);
        removed
    }

    /// Builds, unlinked, the table that replaces the block in `slot` (at `level`, mapping
    /// `output` with `attributes`) with everything but `[slot.start, slot.end)` still mapped.
    fn build_split(
        &mut self,
        level: u8,
        slot: &Slot,
        output: PhysAddr,
        attributes: u64,
        spares: &mut Vec<PhysAddr>,
    ) -> PhysAddr {
        let table = spares
            .pop()
            .expect("unmap reserved fewer split tables than it needed");
        let sub_level = level + 1;
        let mut entries = 0;
        for sub in slots(sub_level, slot.entry_start, slot.entry_end) {
            let sub_output = output + (sub.entry_start - slot.entry_start);
            let inside = sub.entry_start >= slot.start && sub.entry_end <= slot.end;
            let outside = sub.entry_end <= slot.start || sub.entry_start >= slot.end;
            let value = if outside {
                descriptor::leaf(sub_output, sub_level, attributes)
            } else if inside {
                continue;
            } else {
                let partial = Slot {
                    start: slot.start.max(sub.entry_start),
                    end: slot.end.min(sub.entry_end),
                    ..sub
                };
                descriptor::table(
                    self.build_split(sub_level, &partial, sub_output, attributes, spares),
                )
            };
            self.memory.write(table, sub.index, value);
            entries += 1;
        }
        // The whole new table is visible before anything links it.
        self.memory.sync(table, 0, ENTRIES);
        self.count_entries(table, entries, 0);
        table
    }

    /// Puts the split `replacement` in place of the block in `slot` of `table`.
    fn link_split(
        &mut self,
        table: PhysAddr,
        level: u8,
        slot: &Slot,
        replacement: PhysAddr,
        visible: bool,
        gather: &mut Gather<A>,
    ) {
        if !visible {
            // Nothing can have cached the block: it was never reachable.
            self.memory
                .write(table, slot.index, descriptor::table(replacement));
            return;
        }
        match self.config.block_split {
            BlockSplit::Direct => {
                // BBML2: a block may be replaced by a table covering the same translations in
                // one store; only the unmapped part needs invalidating (TTL: the block's level,
                // where a TLB may hold it).
                self.memory
                    .write(table, slot.index, descriptor::table(replacement));
                gather.add_leaves(slot.start, slot.end, level);
            }
            BlockSplit::BreakBeforeMake => {
                // Break: the whole block becomes invalid now; make happens in `flush`, after
                // the invalidation of the whole block has completed.
                self.memory
                    .write(table, slot.index, descriptor::pending_table(replacement));
                self.next_sequence += 1;
                self.pending_links
                    .insert((table, slot.index), self.next_sequence);
                gather.add_leaves(slot.entry_start, slot.entry_end, level);
                gather.add_pending_link(PendingLink {
                    parent: table,
                    index: slot.index,
                    table: replacement,
                    sequence: self.next_sequence,
                });
            }
        }
    }

    /// `child` (now unlinked from `slot`) is empty and leaves the tree: freed now when no walker
    /// ever reached it, held by the gather until the walk caches are invalidated otherwise.
    fn retire(&mut self, child: PhysAddr, slot: &Slot, visible: bool, gather: &mut Gather<A>) {
        self.entry_counts.remove(&child);
        if visible {
            gather.add_freed_table(slot.start, slot.end, child);
            self.held_tables += 1;
        } else {
            self.memory.free_table(child);
        }
    }
}
