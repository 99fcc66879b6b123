//! Boot timeline: guest time (generic-timer ticks since the machine started) at the milestones
//! the benchmarks report. Recording is a single atomic store, so it costs nothing measurable.

use core::sync::atomic::{AtomicU64, Ordering};

/// Milestones of a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// First Rust instruction.
    Entry,
    /// Console up (the first log line can be printed).
    Console,
    /// Memory management and the final page tables ready.
    Memory,
    /// Interrupts (GIC, ITS, timer) ready.
    Interrupts,
    /// The SMMU driver bound (registered its instance).
    SmmuBound,
    /// Every device created and every driver registered: all that can bind has bound.
    AllBound,
    /// The main job (checks) done.
    MainDone,
}

const COUNT: usize = 7;
static TICKS: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];

impl Mark {
    /// Name used in `BENCH` lines.
    pub fn name(self) -> &'static str {
        match self {
            Mark::Entry => "boot_entry",
            Mark::Console => "boot_console",
            Mark::Memory => "boot_memory",
            Mark::Interrupts => "boot_interrupts",
            Mark::SmmuBound => "boot_smmu_bound",
            Mark::AllBound => "boot_all_bound",
            Mark::MainDone => "boot_main_done",
        }
    }

    /// Every mark, in boot order.
    pub const ALL: [Mark; COUNT] = [
        Mark::Entry,
        Mark::Console,
        Mark::Memory,
        Mark::Interrupts,
        Mark::SmmuBound,
        Mark::AllBound,
        Mark::MainDone,
    ];
}

/// Records `mark` now (the first time only).
pub fn mark(m: Mark) {
    let _ = TICKS[m as usize].compare_exchange(
        0,
        kapi::time::ticks(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// When `m` was reached, in ticks, if it was.
pub fn at(m: Mark) -> Option<u64> {
    match TICKS[m as usize].load(Ordering::Relaxed) {
        0 => None,
        t => Some(t),
    }
}
