//! A sampling profiler (`profile=<period-us>`): a periodic timer interrupt records the
//! interrupted program counter; at exit the kernel prints how often each address was hit as
//! `PROFILE` lines, which `cargo xtask profile` symbolizes. Under `-icount` the period is counted
//! in instructions, so the profile is an exact instruction profile of the kernel's own code
//! (QEMU's emulation of device registers costs no guest time there).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use kapi::time::Instant;

use crate::println;

const CAPACITY: usize = 32 * 1024;

static ON: AtomicBool = AtomicBool::new(false);
static PERIOD_US: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Allocated when sampling starts (a static array would be cleared at every boot for nothing).
static SAMPLES: spin::Once<Vec<AtomicU64>> = spin::Once::new();

fn arm() {
    let period = Duration::from_micros(PERIOD_US.load(Ordering::Relaxed));
    crate::arch::timer::call_at(Instant::now().after(period), || {
        if ON.load(Ordering::Relaxed) {
            arm();
        }
    });
}

/// Shortest period: below this the sampling interrupt would take all the time there is.
const MIN_PERIOD_US: u64 = 20;

/// Starts sampling every `period_us` microseconds of guest time.
pub fn start(period_us: u64) {
    let period_us = period_us.max(MIN_PERIOD_US);
    PERIOD_US.store(period_us, Ordering::Relaxed);
    SAMPLES.call_once(|| (0..CAPACITY).map(|_| AtomicU64::new(0)).collect());
    ON.store(true, Ordering::Relaxed);
    arm();
    log::info!(target: "profile", "sampling every {period_us} us");
}

/// Called from the IRQ vector with the interrupted program counter.
pub fn sample(pc: u64) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let i = NEXT.fetch_add(1, Ordering::Relaxed);
    match SAMPLES.get().and_then(|s| s.get(i)) {
        Some(slot) => slot.store(pc, Ordering::Relaxed),
        None => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Stops sampling and prints `PROFILE pc=<hex> samples=<n>` per address, most frequent first.
pub fn dump() {
    if !ON.swap(false, Ordering::Relaxed) {
        return;
    }
    let n = NEXT.load(Ordering::Relaxed).min(CAPACITY);
    let mut pcs: Vec<u64> = SAMPLES
        .get()
        .map_or(&[][..], |s| &s[..n])
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    pcs.sort_unstable();
    let mut counts: Vec<(u64, u64)> = Vec::new();
    for pc in pcs {
        match counts.last_mut() {
            Some((p, c)) if *p == pc => *c += 1,
            _ => counts.push((pc, 1)),
        }
    }
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1));
    println!(
        "PROFILE total={n} dropped={} period_us={}",
        DROPPED.load(Ordering::Relaxed),
        PERIOD_US.load(Ordering::Relaxed)
    );
    for (pc, c) in counts {
        println!("PROFILE pc={pc:#x} samples={c}");
    }
}
