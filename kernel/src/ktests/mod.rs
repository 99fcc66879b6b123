//! In-kernel tests of the kernel core: interrupts, time, memory, the test harness itself.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use kapi::time::{Instant, wait_until};
use ktest::{kassert, kassert_eq, kfail, ktests};

ktests! {
    /// A one-shot software timer fires through the GIC and the IRQ layer.
    fn timer_interrupt_arrives() -> ktest::Result {
        static HITS: AtomicU32 = AtomicU32::new(0);
        let before = crate::arch::timer::interrupts();
        let start = Instant::now();
        crate::arch::timer::call_at(start.after(Duration::from_micros(500)), || {
            HITS.fetch_add(1, Ordering::Relaxed);
        });
        kassert!(wait_until(Duration::from_secs(1), || HITS.load(Ordering::Relaxed) > 0).is_ok(),
            "no timer interrupt within 1 s");
        kassert!(crate::arch::timer::interrupts() > before);
        kassert!(start.elapsed() >= Duration::from_micros(500), "fired early: {:?}", start.elapsed());
        Ok(())
    }

    /// Frames come back zeroed, naturally aligned, and are returned on drop.
    fn frames_are_aligned_zeroed_and_freed() -> ktest::Result {
        let before = crate::mm::frames_in_use();
        let blocks: Vec<kapi::dma_mem::Frames> =
            (0..6).filter_map(kapi::dma_mem::Frames::alloc).collect();
        kassert_eq!(blocks.len(), 6);
        for b in &blocks {
            kassert!(b.pa().is_aligned(b.size()), "{b:?} not aligned to its size");
            kassert_eq!(b.read_u64(b.size() - 8), 0);
        }
        kassert_eq!(crate::mm::frames_in_use(), before + 63);
        drop(blocks);
        kassert_eq!(crate::mm::frames_in_use(), before);
        Ok(())
    }

    /// The heap serves and frees allocations of many sizes.
    fn heap_round_trip() -> ktest::Result {
        let before = crate::mm::heap_used();
        let v: Vec<Vec<u8>> = (0..64).map(|i| alloc::vec![i as u8; 1 << (i % 16)]).collect();
        kassert!(v.iter().enumerate().all(|(i, x)| x.iter().all(|&b| b == i as u8)));
        drop(v);
        kassert_eq!(crate::mm::heap_used(), before);
        Ok(())
    }

    /// MMIO requests outside the kernel's device map are refused.
    fn mmio_outside_device_map_is_refused() -> ktest::Result {
        let p = kapi::platform::get();
        kassert!(p.map_mmio(kapi::PhysAddr(0x4000_0000), 0x1000).is_err(), "RAM handed out as MMIO");
        kassert!(p.map_mmio(kapi::PhysAddr(u64::MAX - 0xfff), 0x2000).is_err());
        Ok(())
    }

    /// Fails on purpose: proves that a failing test fails the run and is named.
    #[manual]
    fn deliberate_failure() -> ktest::Result {
        kfail!("this test fails on purpose")
    }

    /// Touches an unmapped address: proves a kernel fault prints a decoded dump and exits
    /// non-zero instead of hanging.
    #[manual]
    fn fault_dump() -> ktest::Result {
        crate::mm::write_stack_guard();
        kfail!("the write to the guard page did not fault")
    }
}

mod flood;
mod isolation;
mod lifecycle;
mod stress;
