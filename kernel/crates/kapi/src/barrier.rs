//! Memory barriers as safe functions.
//!
//! On aarch64 they are the architectural `dsb`/`dmb` instructions; on the host (unit tests) a
//! sequentially consistent fence stands in, which is enough for the single-threaded fakes.

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod imp {
    use aarch64_cpu::asm::barrier;

    pub fn dsb_sy() {
        barrier::dsb(barrier::SY);
    }
    pub fn dsb_ishst() {
        barrier::dsb(barrier::ISHST);
    }
    pub fn dmb_oshst() {
        barrier::dmb(barrier::OSHST);
    }
    pub fn dmb_osh() {
        barrier::dmb(barrier::OSH);
    }
    pub fn isb() {
        barrier::isb(barrier::SY);
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
mod imp {
    use core::sync::atomic::{Ordering, fence};

    pub fn dsb_sy() {
        fence(Ordering::SeqCst);
    }
    pub fn dsb_ishst() {
        fence(Ordering::SeqCst);
    }
    pub fn dmb_oshst() {
        fence(Ordering::SeqCst);
    }
    pub fn dmb_osh() {
        fence(Ordering::SeqCst);
    }
    pub fn isb() {
        fence(Ordering::SeqCst);
    }
}

/// Full-system data synchronisation barrier: every earlier memory access has completed.
pub fn dsb_sy() {
    imp::dsb_sy();
}
/// Stores before this are visible to the inner-shareable domain before anything after it.
pub fn dsb_ishst() {
    imp::dsb_ishst();
}
/// Orders earlier stores before later stores as seen by observers in the outer-shareable domain
/// (devices such as the SMMU): use between filling a queue entry and publishing its index.
pub fn dmb_oshst() {
    imp::dmb_oshst();
}
/// Orders all earlier accesses before later ones for outer-shareable observers: use after reading
/// a device's producer index and before reading the entries it published.
pub fn dmb_osh() {
    imp::dmb_osh();
}
/// Instruction synchronisation barrier.
pub fn isb() {
    imp::isb();
}
