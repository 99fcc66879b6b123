//! A sampling profiler (`profile=<period-us>`): the EL1 physical timer fires every period as a
//! Group 0 interrupt, which the GIC signals as FIQ; the FIQ handler (`arch/fiq.S`) records the
//! interrupted program counter. Masking IRQs, which every kernel lock does, leaves FIQs alone,
//! so samples land where the time goes even inside locked sections (an IRQ-based sampler would
//! see all of them at the unlock). At exit the kernel prints how often each address was hit as
//! `PROFILE` lines, which `cargo xtask profile` symbolizes. Under `-icount` the period is counted
//! in instructions: an exact instruction profile of the kernel's own code (QEMU's emulation of
//! device registers costs no guest time there).
//!
//! The virtual timer stays the kernel's own; the profiler takes the physical one, so it never
//! shares a lock or a callback list with the code it measures.

use alloc::vec;
use alloc::vec::Vec;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::println;

/// Samples kept (at 20 µs, 0.65 s of guest time).
const CAPACITY: usize = 32 * 1024;
/// Shortest period: below this the handler's own cost would dominate.
const MIN_PERIOD_US: u64 = 5;
/// Group 0 priority of the sampling interrupt (the most urgent).
pub const FIQ_PRIORITY: u8 = 0x00;

// Shared with arch/fiq.S (see there).
#[unsafe(no_mangle)]
static PROFILE_FIQ_PERIOD: AtomicU64 = AtomicU64::new(0);
#[unsafe(no_mangle)]
static PROFILE_FIQ_BUFFER: AtomicPtr<u64> = AtomicPtr::new(core::ptr::null_mut());
#[unsafe(no_mangle)]
static PROFILE_FIQ_CAPACITY: AtomicU64 = AtomicU64::new(0);
#[unsafe(no_mangle)]
static PROFILE_FIQ_NEXT: AtomicU64 = AtomicU64::new(0);

/// The physical timer's interrupt is routed to FIQ (see [`prepare`]).
static ROUTED: AtomicBool = AtomicBool::new(false);
static ON: AtomicBool = AtomicBool::new(false);
static PERIOD_US: AtomicU64 = AtomicU64::new(0);

/// Routes the EL1 physical timer's interrupt (`line`, from the device tree) to FIQ; called
/// while the GIC is brought up, when `profile=` asks for sampling.
pub fn prepare(gic: &gicv3::GicV3, line: kapi::irq::IrqLine) {
    match gic.route_private_to_fiq(line.intid, FIQ_PRIORITY) {
        Ok(()) => ROUTED.store(true, Ordering::Relaxed),
        Err(e) => log::warn!(target: "profile", "cannot sample: {e}"),
    }
}

/// Starts sampling every `period_us` microseconds of guest time.
pub fn start(period_us: u64) {
    if !ROUTED.load(Ordering::Relaxed) {
        log::warn!(target: "profile", "no FIQ for the physical timer: not sampling");
        return;
    }
    let period_us = period_us.max(MIN_PERIOD_US);
    let ticks = (period_us * kapi::time::frequency() / 1_000_000).max(1);
    // The buffer lives as long as the kernel: the handler may write to it until the end.
    let buffer = vec![0u64; CAPACITY].leak();
    PROFILE_FIQ_BUFFER.store(buffer.as_mut_ptr(), Ordering::Relaxed);
    PROFILE_FIQ_CAPACITY.store(CAPACITY as u64, Ordering::Relaxed);
    PROFILE_FIQ_PERIOD.store(ticks, Ordering::Relaxed);
    PERIOD_US.store(period_us, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
    // SAFETY: the EL1 physical timer is the profiler's alone (CNTHCTL_EL2.EL1PCEN is set by
    // boot when entered at EL2); unmasking FIQ lets its interrupt in, and the vector for it
    // is fiq.S, which reads the statics set above.
    unsafe {
        asm!(
            "msr cntp_tval_el0, {t}",
            "msr cntp_ctl_el0, {on}",
            "isb",
            "msr daifclr, #1",
            t = in(reg) ticks,
            on = in(reg) 1u64,
            options(nostack)
        )
    };
    log::info!(target: "profile", "sampling every {period_us} us (physical timer FIQ)");
}

/// Forgets the samples so far (bench mode calls this as the cases start, so a profile of a
/// bench run shows the cases, not the boot before them).
pub fn restart() {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: FIQ masked around the reset, so the handler does not store meanwhile.
    unsafe { asm!("msr daifset, #1", options(nostack)) };
    PROFILE_FIQ_NEXT.store(0, Ordering::Relaxed);
    // SAFETY: sampling goes on.
    unsafe { asm!("msr daifclr, #1", options(nostack)) };
}

/// Stops sampling and prints `PROFILE pc=<hex> samples=<n>` per address, most frequent first.
pub fn dump() {
    if !ON.swap(false, Ordering::Relaxed) {
        return;
    }
    // SAFETY: masks FIQ and stops the physical timer: the handler runs no more.
    unsafe {
        asm!(
            "msr daifset, #1",
            "msr cntp_ctl_el0, xzr",
            "isb",
            options(nostack)
        )
    };
    let taken = PROFILE_FIQ_NEXT.load(Ordering::Relaxed);
    let kept = taken.min(CAPACITY as u64) as usize;
    let buffer = PROFILE_FIQ_BUFFER.load(Ordering::Relaxed);
    let mut pcs: Vec<u64> = if buffer.is_null() {
        Vec::new()
    } else {
        // SAFETY: the buffer holds CAPACITY entries, the first `kept` written by the handler,
        // which can no longer run.
        unsafe { core::slice::from_raw_parts(buffer, kept) }.to_vec()
    };
    pcs.sort_unstable();
    let mut counts: Vec<(u64, u64)> = Vec::new();
    for pc in pcs {
        match counts.last_mut() {
            Some((p, c)) if *p == pc => *c += 1,
            _ => counts.push((pc, 1)),
        }
    }
    counts.sort_unstable_by_key(|&(_, n)| core::cmp::Reverse(n));
    println!(
        "PROFILE total={kept} dropped={} period_us={}",
        taken - kept as u64,
        PERIOD_US.load(Ordering::Relaxed)
    );
    for (pc, c) in counts {
        println!("PROFILE pc={pc:#x} samples={c}");
    }
}
