//! A size-class front end for the kernel heap.
//!
//! Most kernel allocations are small and short-lived (`Vec`s of a few entries, boxed closures,
//! B-tree nodes, formatted strings). A first-fit linked-list heap serves them by walking its
//! free list, which grows with fragmentation; under QEMU's instruction counting that walk was
//! a fifth of the boot. [`SizeClasses`] keeps one free list per power-of-two size from 16 to
//! 2048 bytes: allocation pops, deallocation pushes, both in constant time. A class whose list
//! is empty takes a chunk from the backing heap and splits it into blocks.
//!
//! Blocks are aligned to their size (chunks are), so a layout's class is the power of two at
//! least as large as both its size and its alignment; the same layout always maps to the same
//! class, which is how [`SizeClasses::dealloc`] finds the list without a header. Freed blocks
//! stay in their class: memory taken for small blocks is not given back to the backing heap
//! (a bounded amount, set by the peak of small allocations).

#![no_std]

use core::alloc::Layout;
use core::ptr::NonNull;

/// Smallest block: room for the free-list link, and the usual malloc granule.
pub const MIN_BLOCK: usize = 16;
/// Largest block served from a class; bigger layouts go to the backing heap.
pub const MAX_BLOCK: usize = 2048;
/// Number of classes (16, 32, ..., 2048).
pub const CLASSES: usize = (MAX_BLOCK.trailing_zeros() - MIN_BLOCK.trailing_zeros() + 1) as usize;
/// Bytes taken from the backing heap when a class runs dry (at least one block).
pub const CHUNK: usize = 8192;

/// A free block's first word: the next free block of its class.
struct FreeBlock {
    next: Option<NonNull<FreeBlock>>,
}

/// Free lists per size class, with counters.
pub struct SizeClasses {
    free: [Option<NonNull<FreeBlock>>; CLASSES],
    /// Blocks handed out and not returned, per class.
    live: [usize; CLASSES],
    /// Bytes taken from the backing heap for blocks.
    reserved: usize,
}

// SAFETY: the lists hold pointers to heap memory only this structure hands out; whoever owns
// the `SizeClasses` (the kernel heap, behind its lock) owns that memory.
unsafe impl Send for SizeClasses {}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for SizeClasses {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SizeClasses")
            .field("live", &self.live)
            .field("reserved", &self.reserved)
            .finish()
    }
}

impl SizeClasses {
    /// Empty lists.
    pub const fn new() -> Self {
        Self {
            free: [None; CLASSES],
            live: [0; CLASSES],
            reserved: 0,
        }
    }

    /// The class serving `layout`, or `None` when it is too large for the classes.
    pub fn class_of(layout: Layout) -> Option<usize> {
        let need = layout.size().max(layout.align()).max(MIN_BLOCK);
        if need > MAX_BLOCK {
            return None;
        }
        Some((need.next_power_of_two().trailing_zeros() - MIN_BLOCK.trailing_zeros()) as usize)
    }

    /// Block size of `class`.
    pub const fn block_size(class: usize) -> usize {
        MIN_BLOCK << class
    }

    /// A block of `class`; when its list is empty, `refill` is asked for a chunk (size
    /// [`CHUNK`], aligned to the block size) to split. `None` when `refill` has nothing.
    ///
    /// # Safety
    /// `refill` must return memory that is valid, unused and owned by this structure from then
    /// on (it is never returned).
    pub unsafe fn alloc(
        &mut self,
        class: usize,
        refill: impl FnOnce(Layout) -> Option<NonNull<u8>>,
    ) -> Option<NonNull<u8>> {
        if self.free[class].is_none() {
            let size = Self::block_size(class);
            let chunk = Layout::from_size_align(CHUNK.max(size), size).ok()?;
            let base = refill(chunk)?;
            self.reserved += chunk.size();
            // Push the blocks in reverse so they are handed out in address order.
            for i in (0..chunk.size() / size).rev() {
                // SAFETY: inside the chunk just received, aligned to `size` >= 16.
                unsafe { self.push(class, base.add(i * size).cast()) };
            }
        }
        let block = self.free[class]?;
        // SAFETY: blocks on a free list are ours, aligned, and hold a valid link.
        self.free[class] = unsafe { block.as_ref().next };
        self.live[class] += 1;
        Some(block.cast())
    }

    /// Returns a block to its class.
    ///
    /// # Safety
    /// `ptr` came from [`SizeClasses::alloc`] with the same `class` and is not used any more.
    pub unsafe fn dealloc(&mut self, class: usize, ptr: NonNull<u8>) {
        self.live[class] -= 1;
        // SAFETY: per the contract, the block is ours again.
        unsafe { self.push(class, ptr.cast()) };
    }

    /// # Safety
    /// `block` is a free block of `class`, writable for at least 16 bytes.
    unsafe fn push(&mut self, class: usize, block: NonNull<FreeBlock>) {
        // SAFETY: per the contract.
        unsafe {
            block.write(FreeBlock {
                next: self.free[class],
            })
        };
        self.free[class] = Some(block);
    }

    /// Blocks in use, all classes.
    pub fn live_blocks(&self) -> usize {
        self.live.iter().sum()
    }

    /// Bytes in use by blocks (block sizes, not requested sizes).
    pub fn live_bytes(&self) -> usize {
        self.live
            .iter()
            .enumerate()
            .map(|(c, n)| n * Self::block_size(c))
            .sum()
    }

    /// Bytes taken from the backing heap.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved
    }
}

#[cfg(test)]
mod tests;
