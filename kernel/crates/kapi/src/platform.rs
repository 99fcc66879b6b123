//! Services the kernel provides to drivers, installed once at boot.

use crate::mmio::{MmioError, MmioRegion};
use crate::time::Instant;
use crate::{PhysAddr, VirtAddr};

/// What the kernel provides to drivers. Implemented by the kernel (and by [`fake`] on the host).
pub trait Platform: Sync {
    /// Allocates `2^order` physically contiguous, zeroed page frames aligned to their size.
    fn alloc_frames(&self, order: u32) -> Option<PhysAddr>;

    /// Like [`Platform::alloc_frames`], but the contents are whatever was there (a previous
    /// owner's data): for memory the caller always overwrites before anyone reads it. Saves
    /// clearing large buffers nobody reads as zeroes.
    fn alloc_frames_unzeroed(&self, order: u32) -> Option<PhysAddr> {
        self.alloc_frames(order)
    }

    /// Returns frames to the allocator.
    ///
    /// # Safety
    /// `pa` and `order` must come from one earlier [`Platform::alloc_frames`] call, and neither the
    /// CPU nor any device may access the frames afterwards.
    unsafe fn free_frames(&self, pa: PhysAddr, order: u32);

    /// Frames currently allocated (for leak checks).
    fn frames_in_use(&self) -> u64;

    /// Kernel virtual address of RAM at `pa`.
    fn phys_to_virt(&self, pa: PhysAddr) -> VirtAddr;

    /// Physical address of kernel memory at `va` (`None` if `va` is not RAM).
    fn virt_to_phys(&self, va: VirtAddr) -> Option<PhysAddr>;

    /// Validates that `pa..pa+size` is device memory mapped by the kernel and returns it.
    fn map_mmio(&self, pa: PhysAddr, size: u64) -> Result<MmioRegion, MmioError>;

    /// Cleans data caches for `va..va+size` to the point of coherency (before a non-coherent
    /// device reads memory the CPU wrote).
    fn cache_clean(&self, va: VirtAddr, size: u64);

    /// Invalidates data caches for `va..va+size` (before the CPU reads what a non-coherent
    /// device wrote).
    fn cache_invalidate(&self, va: VirtAddr, size: u64);

    /// Sleeps until an interrupt arrives or `deadline` passes (the platform arms a timer so the
    /// CPU always wakes). Thread context only.
    fn wait_for_interrupt(&self, deadline: Instant);

    /// Runs `callback` in interrupt context at `deadline` (or soon after). Callbacks must be
    /// short and must not sleep.
    fn call_at(&self, deadline: Instant, callback: alloc::boxed::Box<dyn FnMut() + Send>);
}

static PLATFORM: spin::Once<&'static dyn Platform> = spin::Once::new();

/// Installs the platform. Only the first call has an effect.
pub fn install(p: &'static dyn Platform) {
    PLATFORM.call_once(|| p);
}

/// The installed platform.
///
/// # Panics
/// If nothing was installed: the kernel installs it before any driver runs, and host tests that
/// need it call [`fake::install`] first.
pub fn get() -> &'static dyn Platform {
    *PLATFORM
        .get()
        .expect("kapi::platform used before the kernel installed it")
}

/// True once a platform is installed.
pub fn installed() -> bool {
    PLATFORM.get().is_some()
}

#[cfg(any(test, feature = "fakes"))]
pub mod fake {
    //! A host platform: frames come from the Rust heap and "physical" = virtual address.

    extern crate std;
    use super::*;
    use std::alloc::{Layout, alloc_zeroed, dealloc};
    use std::sync::atomic::{AtomicU64, Ordering};

    type Timer = alloc::boxed::Box<dyn FnMut() + Send>;

    /// Heap-backed platform for unit tests.
    pub struct FakePlatform {
        in_use: AtomicU64,
        /// When set, orders above this fail (to test fallback paths).
        pub max_order: AtomicU64,
        timers: std::sync::Mutex<alloc::vec::Vec<Timer>>,
    }

    static FAKE: FakePlatform = FakePlatform {
        in_use: AtomicU64::new(0),
        max_order: AtomicU64::new(u64::MAX),
        timers: std::sync::Mutex::new(alloc::vec::Vec::new()),
    };

    impl FakePlatform {
        /// Runs every timer callback armed so far (the host has no timer interrupt), returning
        /// how many ran.
        pub fn run_timers(&self) -> usize {
            let due = core::mem::take(&mut *self.timers.lock().unwrap_or_else(|e| e.into_inner()));
            let n = due.len();
            for mut t in due {
                t();
            }
            n
        }
    }

    /// Installs the fake platform (idempotent) and returns it.
    pub fn install() -> &'static FakePlatform {
        super::install(&FAKE);
        &FAKE
    }

    fn layout(order: u32) -> Layout {
        let size = (crate::PAGE_SIZE as usize) << order;
        Layout::from_size_align(size, size).expect("valid layout")
    }

    impl Platform for FakePlatform {
        fn alloc_frames(&self, order: u32) -> Option<PhysAddr> {
            if u64::from(order) > self.max_order.load(Ordering::Relaxed) {
                return None;
            }
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { alloc_zeroed(layout(order)) };
            if p.is_null() {
                return None;
            }
            self.in_use.fetch_add(1 << order, Ordering::Relaxed);
            Some(PhysAddr(p as u64))
        }
        unsafe fn free_frames(&self, pa: PhysAddr, order: u32) {
            self.in_use.fetch_sub(1 << order, Ordering::Relaxed);
            // SAFETY: the caller returns a block from alloc_frames with the same order/layout.
            unsafe { dealloc(pa.0 as *mut u8, layout(order)) };
        }
        fn frames_in_use(&self) -> u64 {
            self.in_use.load(Ordering::Relaxed)
        }
        fn phys_to_virt(&self, pa: PhysAddr) -> VirtAddr {
            VirtAddr(pa.0)
        }
        fn virt_to_phys(&self, va: VirtAddr) -> Option<PhysAddr> {
            Some(PhysAddr(va.0))
        }
        fn map_mmio(&self, pa: PhysAddr, size: u64) -> Result<MmioRegion, MmioError> {
            Err(MmioError::NotMapped { pa: pa.0, size })
        }
        fn cache_clean(&self, _: VirtAddr, _: u64) {}
        fn cache_invalidate(&self, _: VirtAddr, _: u64) {}
        fn wait_for_interrupt(&self, _: Instant) {}
        fn call_at(&self, _: Instant, callback: alloc::boxed::Box<dyn FnMut() + Send>) {
            // Held until the test runs them (`run_timers`).
            self.timers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(callback);
        }
    }
}
