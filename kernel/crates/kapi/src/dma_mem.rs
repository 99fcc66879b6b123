//! Memory shared with devices.
//!
//! [`Frames`] owns physically contiguous page frames that a device may read or write at any time
//! (queues, stream tables, page tables, DMA buffers). The CPU touches them only through the
//! volatile accessors here, so the compiler never assumes their contents are stable. The frames
//! go back to the allocator on drop; whoever gave a device their address must take it away
//! first (the owner of a `Frames` keeps that promise: an SMMU queue is disabled before its memory
//! is dropped, a DMA buffer is unmapped before it is freed).

use crate::platform;
use crate::{PAGE_SIZE, PhysAddr, VirtAddr};

/// `2^order` zeroed, naturally aligned, physically contiguous page frames.
pub struct Frames {
    pa: PhysAddr,
    /// Cached translation: every accessor needs it, and asking the platform each time costs a
    /// dynamic call on the DMA hot paths.
    va: VirtAddr,
    order: u32,
}

impl core::fmt::Debug for Frames {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Frames({:#x}, {} KiB)", self.pa.0, self.size() / 1024)
    }
}

/// Smallest order whose block holds `bytes`.
pub fn order_for(bytes: u64) -> u32 {
    let pages = bytes.div_ceil(PAGE_SIZE).max(1);
    pages.next_power_of_two().trailing_zeros()
}

impl Frames {
    /// Allocates `2^order` frames, `None` when memory is exhausted.
    pub fn alloc(order: u32) -> Option<Frames> {
        Self::take(platform::get().alloc_frames(order)?, order)
    }

    /// Allocates `2^order` frames without clearing them (see
    /// [`Platform::alloc_frames_unzeroed`](platform::Platform::alloc_frames_unzeroed)).
    pub fn alloc_unzeroed(order: u32) -> Option<Frames> {
        Self::take(platform::get().alloc_frames_unzeroed(order)?, order)
    }

    /// Owns the `2^order` frames at `pa` the platform just allocated.
    fn take(pa: PhysAddr, order: u32) -> Option<Frames> {
        Some(Frames {
            pa,
            va: platform::get().phys_to_virt(pa),
            order,
        })
    }

    /// Allocates enough frames for `bytes` (rounded up to a power-of-two number of pages).
    pub fn alloc_bytes(bytes: u64) -> Option<Frames> {
        Self::alloc(order_for(bytes))
    }

    /// Physical address of the first frame.
    pub fn pa(&self) -> PhysAddr {
        self.pa
    }
    /// Kernel virtual address of the first frame.
    pub fn va(&self) -> VirtAddr {
        self.va
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        PAGE_SIZE << self.order
    }
    /// Allocation order.
    pub fn order(&self) -> u32 {
        self.order
    }

    #[inline(always)]
    fn ptr<T>(&self, offset: u64) -> *mut T {
        let size = core::mem::size_of::<T>() as u64;
        let ok = offset.is_multiple_of(size)
            && offset
                .checked_add(size)
                .is_some_and(|end| end <= self.size());
        if !ok {
            self.out_of_bounds(offset, size);
        }
        (self.va().0 + offset) as *mut T
    }

    /// Out of line, so the accessors stay small enough to inline into every table walk and
    /// queue write.
    #[cold]
    #[inline(never)]
    fn out_of_bounds(&self, offset: u64, size: u64) -> ! {
        panic!("DMA memory access {offset:#x}+{size} outside {self:?}")
    }

    /// Volatile 64-bit read.
    #[inline]
    pub fn read_u64(&self, offset: u64) -> u64 {
        // SAFETY: in bounds and aligned (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u64>(offset).read_volatile() }
    }
    /// Volatile 64-bit write.
    #[inline]
    pub fn write_u64(&self, offset: u64, v: u64) {
        // SAFETY: in bounds and aligned (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u64>(offset).write_volatile(v) }
    }
    /// Volatile 32-bit read.
    #[inline]
    pub fn read_u32(&self, offset: u64) -> u32 {
        // SAFETY: in bounds and aligned (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u32>(offset).read_volatile() }
    }
    /// Volatile 32-bit write.
    #[inline]
    pub fn write_u32(&self, offset: u64, v: u32) {
        // SAFETY: in bounds and aligned (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u32>(offset).write_volatile(v) }
    }
    /// Volatile 16-bit read.
    pub fn read_u16(&self, offset: u64) -> u16 {
        // SAFETY: in bounds and aligned (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u16>(offset).read_volatile() }
    }
    /// Volatile 16-bit write.
    pub fn write_u16(&self, offset: u64, v: u16) {
        // SAFETY: in bounds and aligned (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u16>(offset).write_volatile(v) }
    }
    /// Volatile 8-bit read.
    pub fn read_u8(&self, offset: u64) -> u8 {
        // SAFETY: in bounds (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u8>(offset).read_volatile() }
    }
    /// Volatile 8-bit write.
    pub fn write_u8(&self, offset: u64, v: u8) {
        // SAFETY: in bounds (checked by `ptr`), memory owned by `self`.
        unsafe { self.ptr::<u8>(offset).write_volatile(v) }
    }

    fn check_range(&self, offset: u64, len: usize) {
        assert!(
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.size()),
            "DMA memory copy {offset:#x}+{len:#x} outside {self:?}"
        );
    }

    /// Copies `src` into the frames at `offset`. Callers order it against the device with the
    /// barrier their protocol needs (e.g. before ringing a doorbell).
    pub fn write_bytes(&self, offset: u64, src: &[u8]) {
        self.check_range(offset, src.len());
        // SAFETY: in bounds (checked); `src` is a Rust slice and cannot overlap frames that only
        // this object hands out through volatile accessors and copies.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr::<u8>(offset), src.len());
        }
    }

    /// Copies from the frames at `offset` into `dst`.
    pub fn read_bytes(&self, offset: u64, dst: &mut [u8]) {
        self.check_range(offset, dst.len());
        // Order the copy after whatever completion signal the caller observed.
        crate::barrier::dmb_osh();
        // SAFETY: in bounds (checked); `dst` cannot overlap these frames (see write_bytes).
        unsafe {
            core::ptr::copy_nonoverlapping(self.ptr::<u8>(offset), dst.as_mut_ptr(), dst.len());
        }
    }

    /// Fills `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: u64, len: u64, byte: u8) {
        self.check_range(offset, len as usize);
        // SAFETY: in bounds (checked), memory owned by `self`.
        unsafe { core::ptr::write_bytes(self.ptr::<u8>(offset), byte, len as usize) }
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        // SAFETY: the frames came from alloc_frames with this order; by this type's contract the
        // owner has revoked every device's access before dropping it.
        unsafe { platform::get().free_frames(self.pa, self.order) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    /// The fake platform's frame counter is global; tests that read it run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn frames_are_zeroed_aligned_and_freed() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = platform::fake::install();
        let before = p.frames_in_use();
        let f = Frames::alloc_bytes(3 * PAGE_SIZE).unwrap();
        assert_eq!(f.order(), 2);
        assert!(f.pa().is_aligned(4 * PAGE_SIZE));
        assert_eq!(f.read_u64(8), 0);
        f.write_u64(8, 0xdead_beef);
        assert_eq!(f.read_u32(8), 0xdead_beef);
        let mut buf = [0u8; 4];
        f.read_bytes(8, &mut buf);
        assert_eq!(buf, 0xdead_beefu32.to_le_bytes());
        assert_eq!(p.frames_in_use(), before + 4);
        drop(f);
        assert_eq!(p.frames_in_use(), before);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn out_of_bounds_access_is_caught() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        platform::fake::install();
        let f = Frames::alloc(0).unwrap();
        f.read_u64(PAGE_SIZE);
    }
}
