//! The EL1 virtual timer (CNTV): one-shot deadlines that wake the CPU from WFI, and a list of
//! software timers (callbacks at a deadline) multiplexed on it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTV_CTL_EL0, CNTV_CVAL_EL0, ReadWriteable, Writeable};
use kapi::irq::IrqLine;
use kapi::sync::IrqLock;
use kapi::time::Instant;

struct SoftTimer {
    deadline: Instant,
    callback: Box<dyn FnMut() + Send>,
}

static TIMERS: IrqLock<Vec<SoftTimer>> = IrqLock::new(Vec::new());
static WAKEUP: AtomicU64 = AtomicU64::new(u64::MAX);
static FIRED: AtomicU64 = AtomicU64::new(0);

/// Programs CNTV for the earliest of the wake-up deadline and the software timers.
fn reprogram() {
    let soft = TIMERS
        .lock()
        .iter()
        .map(|t| t.deadline.0)
        .min()
        .unwrap_or(u64::MAX);
    let next = soft.min(WAKEUP.load(Ordering::Relaxed));
    if next == u64::MAX {
        CNTV_CTL_EL0.modify(CNTV_CTL_EL0::IMASK::SET);
    } else {
        CNTV_CVAL_EL0.set(next);
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    }
}

/// Timer interrupt: run expired software timers, then re-arm for what is left.
fn on_interrupt() {
    FIRED.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    if WAKEUP.load(Ordering::Relaxed) <= now.0 {
        WAKEUP.store(u64::MAX, Ordering::Relaxed);
    }
    let due: Vec<SoftTimer> = {
        let mut timers = TIMERS.lock();
        let (due, rest): (Vec<_>, Vec<_>) = core::mem::take(&mut *timers)
            .into_iter()
            .partition(|t| t.deadline <= now);
        *timers = rest;
        due
    };
    for mut t in due {
        (t.callback)();
    }
    reprogram();
}

/// Installs the timer interrupt handler. The handle lives for the kernel's lifetime.
pub fn init(line: IrqLine) -> Result<(), kapi::irq::IrqError> {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    let handle = kapi::irq::request(line, "arch_timer", on_interrupt)?;
    core::mem::forget(handle);
    Ok(())
}

/// Makes sure the CPU is woken at `deadline` at the latest.
pub fn arm_wakeup(deadline: Instant) {
    WAKEUP.fetch_min(deadline.0, Ordering::Relaxed);
    reprogram();
}

/// Runs `callback` in interrupt context at (or soon after) `deadline`.
pub fn call_at(deadline: Instant, callback: impl FnMut() + Send + 'static) {
    call_at_boxed(deadline, Box::new(callback));
}

/// [`call_at`] for an already boxed callback.
pub fn call_at_boxed(deadline: Instant, callback: Box<dyn FnMut() + Send>) {
    TIMERS.lock().push(SoftTimer { deadline, callback });
    reprogram();
}

/// Number of timer interrupts taken.
pub fn interrupts() -> u64 {
    FIRED.load(Ordering::Relaxed)
}
