//! IOVA range allocator for one DMA domain.
//!
//! Every DMA domain (one set of SMMU page tables) hands out I/O virtual addresses from its own
//! space. [`IovaAllocator`] manages that space in 4 KiB pages:
//!
//! - **Size-aligned.** A request of `n` pages starts on a multiple of `n.next_power_of_two()`
//!   pages, capped at [`MAX_ALIGNMENT`] (2 MiB). Natural alignment lets the page-table code use
//!   2 MiB blocks when the physical side allows and keeps the space from fragmenting into odd
//!   offsets; the cap stops a 1 GiB buffer from wasting up to 1 GiB of space on alignment.
//! - **Limit-bounded.** Each request carries an inclusive limit, the device's DMA mask combined
//!   with its bus limit. No byte of a returned range is ever above it.
//! - **Top-down.** Placement is the highest that fits below the limit, so low addresses stay
//!   free for devices with small masks.
//! - **Never page 0**, and never inside a window marked with [`IovaAllocator::reserve`] (MSI
//!   doorbell, PCI host bridge windows, whatever lies outside the bus `dma-ranges`).
//! - **Checked frees.** [`IovaAllocator::free`] must name exactly one live allocation; an
//!   unknown address, a wrong size or a double free is reported as its own [`IovaError`].
//!
//! # Data structures and cost
//!
//! - Free space: an AVL tree of free ranges augmented with per-alignment capacities (`tree`),
//!   so the highest fitting range below a limit is found in O(log n) even when the space is
//!   fragmented into many small holes. Allocating or releasing a range is a constant number of
//!   O(log n) tree updates.
//! - Live allocations: records in a slab, found by first page through a hash index (`index`),
//!   so `free` validates in O(1) expected and the cache hit path updates its record in O(1).
//! - Recently freed ranges of up to 32 pages: per-size bounded stacks (`cache`). Requests of up to
//!   32 pages are rounded up to a power of two so they share these classes. A hit costs one
//!   bounded stack scan on `alloc` and one hash lookup on `free`; the free-space tree is not
//!   touched. A cached range still counts as allocated in the tree until
//!   [`IovaAllocator::flush_caches`] or a full class releases it, or an allocation finds no
//!   room without it: then every cache is flushed and the search runs again, so the caches
//!   never make an allocation fail.
//!
//! # The caller's side of the contract
//!
//! An IOVA must not be reused while an IOTLB may still translate it. The allocator knows nothing
//! about TLBs: the DMA layer frees a range only after the unmap's TLB invalidation and its
//! `CMD_SYNC` have completed, so everything this allocator holds (cached or in the tree) is
//! already safe to hand out again.
//!
//! The allocator is not internally synchronised: the DMA layer keeps one per domain behind that
//! domain's lock.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod cache;
mod index;
mod tree;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

pub use addr::{Iova, PAGE_SHIFT, PAGE_SIZE, Range};

use cache::{CachedRange, MAX_CACHED_ORDER, RangeCache};
use index::PageIndex;
use tree::{FreeRange, FreeRangeTree};

/// Largest alignment applied to a request, as a power-of-two order of pages (2 MiB).
pub const MAX_ALIGN_ORDER: u32 = 9;
/// Largest alignment applied to a request, in bytes.
pub const MAX_ALIGNMENT: u64 = PAGE_SIZE << MAX_ALIGN_ORDER;
/// Largest request size whose freed ranges are cached, in bytes (32 pages).
pub const MAX_CACHED_SIZE: u64 = PAGE_SIZE << MAX_CACHED_ORDER;
/// Largest request, in bytes (`u32::MAX` pages, just under 16 TiB).
pub const MAX_ALLOCATION: u64 = (u32::MAX as u64) << PAGE_SHIFT;

/// What went wrong in the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IovaError {
    /// A request or reservation of zero bytes.
    ZeroSize,
    /// A request larger than [`MAX_ALLOCATION`].
    TooLarge {
        /// Requested size in bytes.
        size: u64,
    },
    /// The aperture holds no page once page 0 is excluded.
    EmptyAperture(Range<Iova>),
    /// No free, suitably aligned range of this size lies below the limit.
    NoSpace {
        /// Requested size in bytes.
        size: u64,
        /// Inclusive limit of the request.
        limit: Iova,
    },
    /// No allocation starts at this address (never allocated, inside another allocation or a
    /// reserved window, outside the aperture, or not page aligned).
    UnknownAllocation {
        /// Address passed to `free`.
        iova: Iova,
    },
    /// The range at this address was already freed: it sits in a per-size cache, or its first
    /// page is free space. (A never-allocated address in free space reads the same: without a
    /// history the two cannot be told apart.)
    DoubleFree {
        /// Address passed to `free`.
        iova: Iova,
    },
    /// An allocation starts here, but with another size.
    WrongSize {
        /// Address passed to `free`.
        iova: Iova,
        /// Size of the allocation, in bytes (whole pages).
        allocated: u64,
        /// Size passed to `free`, rounded up to whole pages.
        freed: u64,
    },
    /// A reserved window would cover a live allocation.
    ReserveOverlapsAllocation {
        /// The window being reserved.
        window: Range<Iova>,
        /// The live allocation in its way.
        allocation: Range<Iova>,
    },
}

impl fmt::Display for IovaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IovaError::ZeroSize => write!(f, "zero-sized IOVA range"),
            IovaError::TooLarge { size } => {
                write!(
                    f,
                    "IOVA request of {size:#x} bytes exceeds {MAX_ALLOCATION:#x}"
                )
            }
            IovaError::EmptyAperture(range) => write!(
                f,
                "IOVA aperture {}+{:#x} holds no usable page",
                range.start, range.size
            ),
            IovaError::NoSpace { size, limit } => {
                write!(
                    f,
                    "no free IOVA range of {size:#x} bytes at or below {limit}"
                )
            }
            IovaError::UnknownAllocation { iova } => {
                write!(f, "free of IOVA {iova}: no allocation starts there")
            }
            IovaError::DoubleFree { iova } => {
                write!(f, "free of IOVA {iova}: already free (double free)")
            }
            IovaError::WrongSize {
                iova,
                allocated,
                freed,
            } => write!(
                f,
                "free of IOVA {iova} with size {freed:#x}, but {allocated:#x} bytes were allocated"
            ),
            IovaError::ReserveOverlapsAllocation { window, allocation } => write!(
                f,
                "cannot reserve IOVA {}+{:#x}: live allocation at {}+{:#x}",
                window.start, window.size, allocation.start, allocation.size
            ),
        }
    }
}

impl core::error::Error for IovaError {}

/// Where an allocation record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Handed out.
    Live,
    /// Freed by its owner and waiting in a per-size cache: still taken in the free-space tree.
    Cached,
    /// Slot unused (the range went back to free space).
    Vacant,
}

/// One allocation, live or cached.
#[derive(Clone, Copy, Debug)]
struct Allocation {
    first_page: u64,
    /// Pages taken from the space (the request, rounded up to a power of two when cacheable).
    footprint: u64,
    /// Pages the current owner asked for; `free` must name the same count.
    requested: u64,
    state: State,
}

/// The IOVA space of one DMA domain.
#[derive(Debug)]
pub struct IovaAllocator {
    /// First usable page (at least 1: page 0 is never handed out).
    first_page: u64,
    /// One past the last usable page.
    end_page: u64,
    free_space: FreeRangeTree,
    /// First page of each live or cached allocation -> index into `records`.
    allocations: PageIndex,
    records: Vec<Allocation>,
    vacant_records: Vec<u32>,
    /// Reserved windows as page ranges, merged, clipped to the aperture: first -> end.
    reserved: BTreeMap<u64, u64>,
    cache: RangeCache,
    live_ranges: usize,
    live_pages: u64,
}

/// Exclusive end page of everything at or below the inclusive byte address `last`.
fn end_page_at_or_below(last: Iova) -> u64 {
    // Pages p with (p + 1) * PAGE_SIZE - 1 <= last, i.e. p < (last + 1) / PAGE_SIZE.
    ((u128::from(last.as_u64()) + 1) >> PAGE_SHIFT) as u64
}

/// Pages needed for `size` bytes.
fn pages_for(size: u64) -> Result<u64, IovaError> {
    if size == 0 {
        return Err(IovaError::ZeroSize);
    }
    if size > MAX_ALLOCATION {
        return Err(IovaError::TooLarge { size });
    }
    Ok(size.div_ceil(PAGE_SIZE))
}

fn page_range(first_page: u64, pages: u64) -> Range<Iova> {
    Range::new(Iova(first_page << PAGE_SHIFT), pages << PAGE_SHIFT)
}

/// Order of the power of two at or above `pages`.
fn order_at_or_above(pages: u64) -> u32 {
    pages.next_power_of_two().trailing_zeros()
}

/// How a request of `pages` is placed: pages taken, alignment order, cache class.
#[derive(Clone, Copy, Debug)]
struct Shape {
    footprint: u64,
    align_order: u32,
    cache_class: Option<u32>,
}

impl Shape {
    fn of(pages: u64) -> Self {
        let order = order_at_or_above(pages);
        let cache_class = (order <= MAX_CACHED_ORDER).then_some(order);
        Self {
            footprint: if cache_class.is_some() {
                1 << order
            } else {
                pages
            },
            align_order: order.min(MAX_ALIGN_ORDER),
            cache_class,
        }
    }
}

impl IovaAllocator {
    /// An allocator over the pages that lie wholly inside `aperture` (the domain's input
    /// address range, e.g. 48 bits), less page 0.
    pub fn new(aperture: Range<Iova>) -> Result<Self, IovaError> {
        let Some(last) = aperture.last() else {
            return Err(IovaError::EmptyAperture(aperture));
        };
        let first_page = aperture
            .start
            .checked_align_up(PAGE_SIZE)
            .map_or(u64::MAX, |start| start.as_u64() >> PAGE_SHIFT)
            .max(1);
        let end_page = end_page_at_or_below(last);
        if first_page >= end_page {
            return Err(IovaError::EmptyAperture(aperture));
        }
        let mut free_space = FreeRangeTree::new();
        free_space.insert(FreeRange {
            start: first_page,
            end: end_page,
        });
        Ok(Self {
            first_page,
            end_page,
            free_space,
            allocations: PageIndex::new(),
            records: Vec::new(),
            vacant_records: Vec::new(),
            reserved: BTreeMap::new(),
            cache: RangeCache::new(),
            live_ranges: 0,
            live_pages: 0,
        })
    }

    /// Allocates `size` bytes (rounded up to whole pages) of IOVA space whose last byte is at or
    /// below `limit`, aligned as the module documentation describes.
    pub fn alloc(&mut self, size: u64, limit: Iova) -> Result<Iova, IovaError> {
        let pages = pages_for(size)?;
        let shape = Shape::of(pages);
        let limit_end = end_page_at_or_below(limit).min(self.end_page);
        if let Some(class) = shape.cache_class
            && let Some(cached) = self.cache.take(class, limit_end)
        {
            let record = &mut self.records[cached.record as usize];
            record.state = State::Live;
            record.requested = pages;
            self.count_live(pages);
            return Ok(Iova(cached.first_page << PAGE_SHIFT));
        }
        let first_page = match self.take_from_free_space(shape, limit_end) {
            Some(page) => page,
            // Ranges held in the caches are free too, and may be what is in the way (a cached
            // page in the middle of the only aligned hole): give them back and look again, so
            // the caches never make an allocation fail.
            None if self.cache.len() > 0 => {
                self.flush_caches();
                self.take_from_free_space(shape, limit_end)
                    .ok_or(IovaError::NoSpace { size, limit })?
            }
            None => return Err(IovaError::NoSpace { size, limit }),
        };
        self.add_record(Allocation {
            first_page,
            footprint: shape.footprint,
            requested: pages,
            state: State::Live,
        });
        self.count_live(pages);
        Ok(Iova(first_page << PAGE_SHIFT))
    }

    /// Frees the allocation of `size` bytes at `iova`. `size` must round up to the same number
    /// of pages as the size passed to [`alloc`](Self::alloc).
    ///
    /// The caller has completed the TLB invalidation covering the range (see the module docs).
    pub fn free(&mut self, iova: Iova, size: u64) -> Result<(), IovaError> {
        let pages = pages_for(size)?;
        if !iova.is_aligned(PAGE_SIZE) {
            return Err(IovaError::UnknownAllocation { iova });
        }
        let first_page = iova.as_u64() >> PAGE_SHIFT;
        let Some(index) = self.allocations.get(first_page) else {
            return Err(self.explain_unknown_free(iova, first_page));
        };
        let record = &mut self.records[index as usize];
        if record.state == State::Cached {
            return Err(IovaError::DoubleFree { iova });
        }
        if record.requested != pages {
            return Err(IovaError::WrongSize {
                iova,
                allocated: record.requested << PAGE_SHIFT,
                freed: pages << PAGE_SHIFT,
            });
        }
        let footprint = record.footprint;
        self.live_ranges -= 1;
        self.live_pages -= pages;
        let class = Shape::of(pages).cache_class;
        if let Some(class) = class {
            let cached = CachedRange {
                first_page,
                record: index,
            };
            if self.cache.put(class, cached).is_ok() {
                self.records[index as usize].state = State::Cached;
                return Ok(());
            }
        }
        self.release(first_page, footprint, index);
        Ok(())
    }

    /// Marks the pages touching `window` as never to be handed out. Windows may overlap each
    /// other; the part outside the aperture is ignored. Ranges waiting in the caches are released
    /// first, so only live allocations can be in the way.
    pub fn reserve(&mut self, window: Range<Iova>) -> Result<(), IovaError> {
        let Some(last) = window.last() else {
            return Err(IovaError::ZeroSize);
        };
        let first = (window.start.as_u64() >> PAGE_SHIFT).max(self.first_page);
        let end = ((last.as_u64() >> PAGE_SHIFT) + 1).min(self.end_page);
        if first >= end {
            return Ok(());
        }
        // Reserving is rare (domain setup): a scan of the records is cheaper than keeping an
        // ordered index of allocations for it.
        let in_window = |record: &Allocation| {
            record.state != State::Vacant
                && record.first_page < end
                && record.first_page + record.footprint > first
        };
        if let Some(live) = self
            .records
            .iter()
            .filter(|record| in_window(record) && record.state == State::Live)
            .min_by_key(|record| record.first_page)
        {
            return Err(IovaError::ReserveOverlapsAllocation {
                window,
                allocation: page_range(live.first_page, live.footprint),
            });
        }
        if self.records.iter().any(in_window) {
            self.flush_caches();
        }
        self.carve_reserved(first, end);
        Ok(())
    }

    /// Returns every cached range to the free space.
    pub fn flush_caches(&mut self) {
        for cached in self.cache.drain() {
            let record = self.records[cached.record as usize];
            self.release(record.first_page, record.footprint, cached.record);
        }
    }

    /// Number of allocations handed out and not yet freed.
    pub fn live_ranges(&self) -> usize {
        self.live_ranges
    }

    /// Bytes of the allocations handed out and not yet freed, in whole pages as requested.
    pub fn live_bytes(&self) -> u64 {
        self.live_pages << PAGE_SHIFT
    }

    /// Number of freed ranges waiting in the per-size caches.
    pub fn cached_ranges(&self) -> usize {
        self.cache.len()
    }

    /// Number of separate free ranges: a fragmentation measure.
    pub fn free_ranges(&self) -> usize {
        self.free_space.len()
    }

    /// True when `iova` lies in a reserved window.
    pub fn is_reserved(&self, iova: Iova) -> bool {
        let page = iova.as_u64() >> PAGE_SHIFT;
        self.reserved
            .range(..=page)
            .next_back()
            .is_some_and(|(_, &end)| page < end)
    }

    fn count_live(&mut self, pages: u64) {
        self.live_ranges += 1;
        self.live_pages += pages;
    }

    fn explain_unknown_free(&self, iova: Iova, first_page: u64) -> IovaError {
        let in_aperture = (self.first_page..self.end_page).contains(&first_page);
        if in_aperture && self.free_space.containing(first_page).is_some() {
            IovaError::DoubleFree { iova }
        } else {
            IovaError::UnknownAllocation { iova }
        }
    }

    /// Highest placement of `shape` ending at or below `limit_end`, removed from free space.
    fn take_from_free_space(&mut self, shape: Shape, limit_end: u64) -> Option<u64> {
        let pages = shape.footprint;
        let align_mask = !((1u64 << shape.align_order) - 1);
        // Only the free range with the highest start below the limit can straddle it; try it
        // truncated, then the tree's highest untruncated fit below it.
        let top = self.free_space.last_starting_below(limit_end)?;
        let top_end = top.end.min(limit_end);
        if let Some(first) = top_end.checked_sub(pages).map(|p| p & align_mask)
            && first >= top.start
        {
            self.carve(top, first, first + pages);
            return Some(first);
        }
        let pages_u32 = u32::try_from(pages).ok()?;
        let fit =
            self.free_space
                .highest_fit_below(top.start, pages_u32, shape.align_order as usize)?;
        let first = (fit.end - pages) & align_mask;
        debug_assert!(first >= fit.start);
        self.carve(fit, first, first + pages);
        Some(first)
    }

    /// Removes `[cut_start, cut_end)` (inside `range`) from free space.
    fn carve(&mut self, range: FreeRange, cut_start: u64, cut_end: u64) {
        let keeps_left = range.start < cut_start;
        let keeps_right = cut_end < range.end;
        let left = FreeRange {
            start: range.start,
            end: cut_start,
        };
        let right = FreeRange {
            start: cut_end,
            end: range.end,
        };
        match (keeps_left, keeps_right) {
            (true, true) => {
                self.free_space.reshape(range.start, left);
                self.free_space.insert(right);
            }
            (true, false) => self.free_space.reshape(range.start, left),
            (false, true) => self.free_space.reshape(range.start, right),
            (false, false) => self.free_space.remove(range.start),
        }
    }

    /// Puts `[first, first + pages)` back into free space, merged with its neighbours.
    fn give_back(&mut self, first: u64, pages: u64) {
        let end = first + pages;
        let below = self
            .free_space
            .last_starting_below(first)
            .filter(|range| range.end == first);
        let above = self.free_space.starting_at(end);
        match (below, above) {
            (Some(below), Some(above)) => {
                self.free_space.remove(above.start);
                self.free_space.reshape(
                    below.start,
                    FreeRange {
                        start: below.start,
                        end: above.end,
                    },
                );
            }
            (Some(below), None) => self.free_space.reshape(
                below.start,
                FreeRange {
                    start: below.start,
                    end,
                },
            ),
            (None, Some(above)) => self.free_space.reshape(
                above.start,
                FreeRange {
                    start: first,
                    end: above.end,
                },
            ),
            (None, None) => self.free_space.insert(FreeRange { start: first, end }),
        }
    }

    fn add_record(&mut self, allocation: Allocation) {
        let index = match self.vacant_records.pop() {
            Some(index) => {
                self.records[index as usize] = allocation;
                index
            }
            None => {
                let index = u32::try_from(self.records.len()).expect("IOVA record overflow");
                self.records.push(allocation);
                index
            }
        };
        self.allocations.insert(allocation.first_page, index);
    }

    /// Ends an allocation (already accounted as not live) and returns its pages to free space.
    fn release(&mut self, first_page: u64, footprint: u64, index: u32) {
        self.allocations.remove(first_page);
        self.records[index as usize].state = State::Vacant;
        self.vacant_records.push(index);
        self.give_back(first_page, footprint);
    }

    /// Removes `[first, end)` from free space and records it as reserved.
    fn carve_reserved(&mut self, first: u64, end: u64) {
        // Each step removes the free part of the window with the highest start.
        while let Some(range) = self.free_space.last_starting_below(end) {
            if range.end <= first {
                break;
            }
            self.carve(range, range.start.max(first), range.end.min(end));
        }
        // Merge with the reserved windows it overlaps or touches.
        let (mut merged_first, mut merged_end) = (first, end);
        let touching: Vec<(u64, u64)> = self
            .reserved
            .range(..=end)
            .rev()
            .take_while(|&(_, &window_end)| window_end >= first)
            .map(|(&start, &window_end)| (start, window_end))
            .collect();
        for (start, window_end) in touching {
            self.reserved.remove(&start);
            merged_first = merged_first.min(start);
            merged_end = merged_end.max(window_end);
        }
        self.reserved.insert(merged_first, merged_end);
    }

    /// Checks that free space, allocations and reserved windows tile the aperture exactly, and
    /// that the counters agree with the records.
    #[cfg(test)]
    fn check_invariants(&self) {
        self.free_space.check_invariants();
        let mut pieces: Vec<(u64, u64, &str)> = Vec::new();
        pieces.extend(
            self.free_space
                .ranges()
                .iter()
                .map(|r| (r.start, r.end, "free")),
        );
        let (mut live, mut live_pages, mut cached) = (0, 0, 0);
        for (index, record) in self.records.iter().enumerate() {
            let first = record.first_page;
            match record.state {
                State::Vacant => {
                    assert!(self.vacant_records.contains(&(index as u32)));
                    continue;
                }
                State::Cached => {
                    cached += 1;
                    assert!(
                        self.cache
                            .contains(order_at_or_above(record.footprint), first)
                    );
                }
                State::Live => {
                    live += 1;
                    live_pages += record.requested;
                }
            }
            assert_eq!(self.allocations.get(first), Some(index as u32));
            pieces.push((first, first + record.footprint, "allocated"));
        }
        assert_eq!(self.allocations.len(), live + cached);
        pieces.extend(self.reserved.iter().map(|(&s, &e)| (s, e, "reserved")));
        pieces.sort_unstable();
        let mut next = self.first_page;
        for (start, end, what) in pieces {
            assert_eq!(
                start, next,
                "gap or overlap before {what} {start:#x}..{end:#x}"
            );
            next = end;
        }
        assert_eq!(next, self.end_page);
        assert_eq!(live, self.live_ranges);
        assert_eq!(live_pages, self.live_pages);
        assert_eq!(cached, self.cache.len());
    }
}

#[cfg(test)]
mod tests;
