//! Time from the architected generic timer (CNTVCT_EL0), and bounded waiting.
//!
//! Every wait in the kernel is bounded: [`poll_until`] spins on a condition, [`wait_until`] sleeps
//! (WFI) between checks and is woken by the device interrupt or, at the latest, by the deadline
//! timer the platform arms. Both return [`TimedOut`] instead of hanging.

use core::time::Duration;

/// A point in time, in generic-timer ticks since the machine started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

/// A bounded wait ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

impl core::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("timed out")
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod imp {
    use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, Readable};

    pub fn ticks() -> u64 {
        // The ISB keeps the counter read from being hoisted above earlier instructions.
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        CNTVCT_EL0.get()
    }
    pub fn freq() -> u64 {
        CNTFRQ_EL0.get()
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
mod imp {
    use core::sync::atomic::{AtomicU64, Ordering};

    /// The host stand-in advances by one microsecond per read, so bounded waits always end.
    static FAKE_TICKS: AtomicU64 = AtomicU64::new(0);

    pub fn ticks() -> u64 {
        FAKE_TICKS.fetch_add(1, Ordering::Relaxed)
    }
    pub fn freq() -> u64 {
        1_000_000
    }
}

/// Raw counter value.
pub fn ticks() -> u64 {
    imp::ticks()
}

/// Counter frequency in Hz (62.5 MHz on QEMU `virt`).
pub fn frequency() -> u64 {
    imp::freq()
}

/// Converts ticks to nanoseconds without overflowing for any realistic uptime.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ((ticks as u128 * 1_000_000_000) / frequency() as u128) as u64
}

/// Converts a duration to ticks (rounded up, so a wait is never shorter than asked).
pub fn duration_to_ticks(d: Duration) -> u64 {
    let t = (d.as_nanos() * frequency() as u128).div_ceil(1_000_000_000);
    t.min(u64::MAX as u128) as u64
}

impl Instant {
    /// Now.
    pub fn now() -> Self {
        Instant(ticks())
    }
    /// Time since the machine started.
    pub fn since_boot(self) -> Duration {
        Duration::from_nanos(ticks_to_ns(self.0))
    }
    /// Time elapsed since `self`.
    pub fn elapsed(self) -> Duration {
        Duration::from_nanos(ticks_to_ns(ticks().saturating_sub(self.0)))
    }
    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> Self {
        Instant(self.0.saturating_add(duration_to_ticks(d)))
    }
    /// Ticks from `earlier` to `self`.
    pub fn ticks_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Spins until `cond` holds or `timeout` passes. Use for short hardware handshakes.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), TimedOut> {
    // The clock is read only once the condition has been false: most polls (a command queue
    // that consumed at once) need no clock at all, and under emulation reading it is not free.
    let mut deadline = None;
    loop {
        if cond() {
            return Ok(());
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now().after(timeout));
        if Instant::now() >= deadline {
            // One last look: the condition may have come true while we read the clock.
            return if cond() { Ok(()) } else { Err(TimedOut) };
        }
        core::hint::spin_loop();
    }
}

/// Longest a [`wait_until`] sleeps between two looks at its condition, so a condition that no
/// interrupt announces (a polled status register) is still noticed promptly.
pub const WAIT_RECHECK: Duration = Duration::from_millis(1);

/// Sleeps (WFI) until `cond` holds or `timeout` passes; an interrupt, the deadline, or at most
/// [`WAIT_RECHECK`] wakes it to look again.
///
/// Thread context only, with IRQs enabled. `cond` is checked with IRQs masked and the CPU then
/// waits with them still masked (WFI wakes on a pending interrupt regardless), so an interrupt
/// that arrives between the check and the WFI cannot be missed; it is taken when they are
/// unmasked again.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), TimedOut> {
    let mut deadline = None;
    loop {
        let saved = crate::irq::local_save();
        if cond() {
            crate::irq::local_restore(saved);
            return Ok(());
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now().after(timeout));
        if Instant::now() >= deadline {
            crate::irq::local_restore(saved);
            return if cond() { Ok(()) } else { Err(TimedOut) };
        }
        let wake = Instant::now().after(WAIT_RECHECK).min(deadline);
        crate::platform::get().wait_for_interrupt(wake);
        crate::irq::local_restore(saved);
    }
}

/// Busy-waits for `d`.
pub fn delay(d: Duration) {
    let deadline = Instant::now().after(d);
    while Instant::now() < deadline {
        core::hint::spin_loop();
    }
}
