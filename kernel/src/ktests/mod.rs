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
        // Interrupts masked: a timer callback (a lazy flush, say) must not allocate or free
        // between the two readings.
        static QUIET: kapi::sync::IrqLock<()> = kapi::sync::IrqLock::new(());
        let _quiet = QUIET.lock();
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

    /// The kernel's memset and memcpy (arch/mem.S) at every size up to 300 bytes and every
    /// alignment of source and destination: exactly the bytes asked for change, to the right
    /// values, and the guard bytes around them do not.
    fn memset_and_memcpy_are_exact_at_every_size_and_alignment() -> ktest::Result {
        const GUARD: u8 = 0xee;
        let mut dst = alloc::vec![0u8; 400];
        let src: Vec<u8> = (0..400u32).map(|i| (i * 7 + 1) as u8).collect();
        for len in 0..300usize {
            for align in 0..16usize {
                let src_align = (align * 5) % 16;
                // Volatile writes: the compiler must not turn the reference into a memset.
                for b in dst.iter_mut() {
                    // SAFETY: a valid, exclusive reference.
                    unsafe { core::ptr::write_volatile(b, GUARD) };
                }
                let (d, s) = (dst[align..].as_mut_ptr(), src[src_align..].as_ptr());
                // SAFETY: both ranges lie inside their (distinct) vectors: 15 + 299 < 400.
                unsafe { core::ptr::copy_nonoverlapping(s, d, core::hint::black_box(len)) };
                for (i, &b) in dst.iter().enumerate() {
                    let want = if (align..align + len).contains(&i) { src[src_align + i - align] } else { GUARD };
                    kassert_eq!(b, want, "memcpy of {len} bytes at +{align} from +{src_align}: byte {i}");
                }
                // SAFETY: as above, inside `dst`.
                unsafe { core::ptr::write_bytes(d, core::hint::black_box(0x3c), core::hint::black_box(len)) };
                for (i, &b) in dst.iter().enumerate() {
                    let want = if (align..align + len).contains(&i) { 0x3c } else { GUARD };
                    kassert_eq!(b, want, "memset of {len} bytes at +{align}: byte {i}");
                }
            }
        }
        Ok(())
    }

    /// memmove (arch/mem.S) with overlapping ranges in both directions, at every size up to
    /// 100 and every shift up to 40; memcmp's sign and zero at every size, difference position
    /// and alignment.
    fn memmove_and_memcmp_are_exact() -> ktest::Result {
        let original: Vec<u8> = (0..200u32).map(|i| (i * 13 + 5) as u8).collect();
        for len in 0..100usize {
            for shift in 0..40usize {
                for forward in [true, false] {
                    let mut buf = original.clone();
                    let (src, dst) = if forward { (50 + shift, 50) } else { (50, 50 + shift) };
                    buf.copy_within(src..src + core::hint::black_box(len), dst);
                    for (i, &b) in buf.iter().enumerate() {
                        let want = if (dst..dst + len).contains(&i) { original[src + i - dst] } else { original[i] };
                        kassert_eq!(b, want, "memmove of {len} bytes from +{src} to +{dst}: byte {i}");
                    }
                }
            }
        }
        for len in 0..40usize {
            for at in 0..len {
                for align in 0..8usize {
                    let a: Vec<u8> = original[align..align + len].to_vec();
                    let mut b = a.clone();
                    kassert!(core::hint::black_box(&a[..]) == core::hint::black_box(&b[..]), "equal, {len} bytes");
                    b[at] = b[at].wrapping_add(1);
                    let want = a[at].cmp(&b[at]);
                    kassert_eq!(core::hint::black_box(&a[..]).cmp(core::hint::black_box(&b[..])), want, "{len} bytes, differing at {at}");
                    kassert!(a != b);
                }
            }
        }
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

    /// Recurses until the boot stack runs into its guard page: proves an overflow is reported
    /// as one (from the overflow stack) with a dump and a failure exit, instead of faulting
    /// over and over into the memory below the guard.
    #[manual]
    fn stack_overflow() -> ktest::Result {
        let depth = recurse_forever(0);
        kfail!("recursion {depth} deep returned")
    }
}

/// Uses 512 bytes of stack a level and never stops (the compiler cannot turn it into a loop:
/// the frame's contents are used after the call).
#[inline(never)]
fn recurse_forever(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    if frame[0] == u64::MAX {
        return 0;
    }
    recurse_forever(depth + 1).wrapping_add(frame[63])
}

mod flood;
mod isolation;
mod lifecycle;
mod reserved;
mod stress;
