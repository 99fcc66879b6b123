//! TLB maintenance, gathered.
//!
//! The page table never issues TLB invalidations itself. `unmap` records into a [`Gather`] what
//! the caller must invalidate (one [`Invalidation`] however many entries were removed) and keeps
//! everything that must wait for that invalidation: freed table pages, and in break-before-make
//! mode the tables that replace split blocks. [`PageTable::flush`](crate::PageTable::flush) runs
//! the caller's invalidation and releases those only when it reports success, so the unsafe
//! order (page reused while a walk cache still points at it) cannot be written by accident.

use addr::{Address, Iova, PhysAddr, Range};
use alloc::vec::Vec;
use core::marker::PhantomData;

/// What the caller must invalidate before the gathered work can be released.
///
/// For SMMUv3: one `TLBI_NH_VA` (or range) command over `range` for the domain's ASID with
/// `Leaf = leaf_only`, `TTL = ttl()`, `TG = 1` (4 KiB), then `CMD_SYNC`; or `TLBI_NH_ASID`
/// when the range is large. For a CPU: `TLBI VAE1IS`/`RVAE1IS` (or `VALE1IS` when leaf-only),
/// then `DSB ISH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalidation<A: Address = Iova> {
    /// Covers every input address whose cached translation or walk may now be stale.
    pub range: Range<A>,
    /// Only leaf entries were removed (Leaf = 1). False when table pages were removed, so
    /// walk caches must be invalidated too (Leaf = 0).
    pub leaf_only: bool,
    /// The level of every removed leaf entry when they share one (1: 1 GiB blocks, 2: 2 MiB
    /// blocks, 3: pages); `None` when levels were mixed.
    pub leaf_level: Option<u8>,
}

impl<A: Address> Invalidation<A> {
    /// Range-invalidation TTL hint: the leaf level when known and only leaves are invalidated,
    /// 0 ("any level") otherwise: a walk-cache invalidation must not be limited to one level.
    pub fn ttl(&self) -> u8 {
        match (self.leaf_only, self.leaf_level) {
            (true, Some(level)) => level,
            _ => 0,
        }
    }
}

/// A block-replacing table to link once the break has been invalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingLink {
    pub parent: PhysAddr,
    pub index: usize,
    pub table: PhysAddr,
    pub sequence: u64,
}

/// Accumulates the TLB maintenance of one or more `unmap` calls on one page table.
///
/// Hand it to [`PageTable::flush`](crate::PageTable::flush). Dropping a non-empty gather leaks
/// its table pages (they are never reused, which is the safe failure) and leaves break-before-make
/// splits unlinked; [`PageTable::tables_in_use`](crate::PageTable::tables_in_use) keeps counting
/// the leaked pages so leak checks see them.
#[must_use = "a gather holds TLB maintenance the caller must flush"]
#[derive(Debug)]
pub struct Gather<A: Address = Iova> {
    /// Identity of the page table this gather belongs to.
    pub(crate) owner: Option<u64>,
    range: Option<(u64, u64)>,
    /// Bit `n` set: leaves at level `n` were removed.
    leaf_levels: u8,
    tables_removed: bool,
    pub(crate) freed_tables: Vec<PhysAddr>,
    pub(crate) pending_links: Vec<PendingLink>,
    _address: PhantomData<A>,
}

impl<A: Address> Default for Gather<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Address> Gather<A> {
    /// An empty gather.
    pub fn new() -> Self {
        Self {
            owner: None,
            range: None,
            leaf_levels: 0,
            tables_removed: false,
            freed_tables: Vec::new(),
            pending_links: Vec::new(),
            _address: PhantomData,
        }
    }

    /// True when nothing needs invalidating or releasing.
    pub fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    /// Table pages waiting for the invalidation before they can be freed.
    pub fn tables_to_free(&self) -> usize {
        self.freed_tables.len()
    }

    /// Break-before-make replacement tables waiting for the invalidation to be linked.
    pub fn links_to_make(&self) -> usize {
        self.pending_links.len()
    }

    /// The invalidation the caller must perform, `None` when nothing was removed.
    pub fn invalidation(&self) -> Option<Invalidation<A>> {
        let (start, end) = self.range?;
        let single_level = self.leaf_levels.count_ones() == 1;
        Some(Invalidation {
            range: Range::new(A::from_raw(start), end - start),
            leaf_only: !self.tables_removed,
            leaf_level: single_level.then(|| self.leaf_levels.trailing_zeros() as u8),
        })
    }

    fn cover(&mut self, start: u64, end: u64) {
        self.range = Some(match self.range {
            None => (start, end),
            // Disjoint ranges from several unmaps merge into their hull: over-invalidation is
            // safe, and the caller still issues one command sequence.
            Some((s, e)) => (s.min(start), e.max(end)),
        });
    }

    /// Leaf entries at `level` translating `[start, end)` were removed or broken.
    pub(crate) fn add_leaves(&mut self, start: u64, end: u64, level: u8) {
        self.cover(start, end);
        self.leaf_levels |= 1 << level;
    }

    /// A table entry (walk-cache material) covering part of `[start, end)` was removed; the
    /// table page waits in the gather.
    pub(crate) fn add_freed_table(&mut self, start: u64, end: u64, table: PhysAddr) {
        self.cover(start, end);
        self.tables_removed = true;
        self.freed_tables.push(table);
    }

    pub(crate) fn add_pending_link(&mut self, link: PendingLink) {
        self.pending_links.push(link);
    }
}
