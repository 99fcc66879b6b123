//! The bounce pool: memory allocated at boot where restricted devices can reach it, through
//! which a direct-mapped device's out-of-reach buffers are copied.
//!
//! The pool is never cleared: a streaming slot is filled with the buffer's own bytes whatever
//! the direction (so a device that writes less than the whole buffer hands back the buffer's
//! bytes, not an earlier user's), and a coherent slot is zeroed when it is handed out.

use addr::{Iova, PAGE_SIZE, PhysAddr, Range};
use iova::IovaAllocator;
use kapi::dma_mem::Frames;
use kapi::sync::IrqLock;

use crate::error::DmaError;

/// A pool of bounce slots.
pub struct BouncePool {
    frames: Frames,
    /// Slot allocation: a range allocator over the pool's physical pages (the same allocator the
    /// IOVA spaces use; here its "addresses" are physical addresses inside the pool).
    slots: IrqLock<IovaAllocator>,
}

impl core::fmt::Debug for BouncePool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BouncePool({:?})", self.frames)
    }
}

impl BouncePool {
    /// Wraps `frames` (allocated at boot as low as possible) as a bounce pool.
    pub fn new(frames: Frames) -> Result<Self, DmaError> {
        // The allocator never hands out "address 0"; the pool's first page is its own start.
        let aperture = Range::new(Iova(frames.pa().0), frames.size());
        let slots = IovaAllocator::new(aperture)
            .map_err(|e| DmaError::Invariant(alloc::format!("bounce pool: {e}")))?;
        Ok(Self {
            frames,
            slots: IrqLock::new(slots),
        })
    }

    /// The pool's physical range.
    pub fn range(&self) -> Range<PhysAddr> {
        Range::new(self.frames.pa(), self.frames.size())
    }

    /// Slots in use.
    pub fn slots_in_use(&self) -> usize {
        self.slots.lock().live_ranges()
    }

    /// A slot of `len` bytes (rounded up to pages) whose last byte is at or below `limit_pa`.
    pub(crate) fn alloc(&self, len: u64, limit_pa: u64) -> Option<PhysAddr> {
        let size = len.next_multiple_of(PAGE_SIZE);
        self.slots
            .lock()
            .alloc(size, Iova(limit_pa))
            .ok()
            .map(|i| PhysAddr(i.0))
    }

    /// Returns a slot.
    pub(crate) fn free(&self, pa: PhysAddr, len: u64) {
        let size = len.next_multiple_of(PAGE_SIZE);
        if let Err(e) = self.slots.lock().free(Iova(pa.0), size) {
            log::error!(target: "dma", "BUG: bounce slot {pa:#x}+{size:#x}: {e}");
        }
    }

    fn offset(&self, pa: PhysAddr) -> u64 {
        pa.0 - self.frames.pa().0
    }

    /// Copies `data` into the slot at `pa`.
    pub(crate) fn write(&self, pa: PhysAddr, data: &[u8]) {
        self.frames.write_bytes(self.offset(pa), data);
    }

    /// Copies the slot at `pa` into `out`.
    pub(crate) fn read(&self, pa: PhysAddr, out: &mut [u8]) {
        self.frames.read_bytes(self.offset(pa), out);
    }

    /// The pool's memory, for coherent allocations carved from it.
    pub(crate) fn frames(&self) -> &Frames {
        &self.frames
    }
}
