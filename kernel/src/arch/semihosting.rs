//! Arm semihosting, used for one thing: exiting QEMU with a status code.

use core::sync::atomic::{AtomicBool, Ordering};

const SYS_EXIT_EXTENDED: u64 = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

static ABSENT: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    fn semihosting_call(op: u64, arg: u64) -> u64;
}

/// Called by the exception handler when the semihosting HLT trapped as undefined.
pub fn mark_absent() {
    ABSENT.store(true, Ordering::Relaxed);
}

/// Exits QEMU with `code` if semihosting is available; returns otherwise.
pub fn exit(code: u32) {
    if ABSENT.load(Ordering::Relaxed) {
        return;
    }
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    // SAFETY: SYS_EXIT_EXTENDED reads the two-word block and terminates QEMU. Without semihosting
    // the HLT traps and the exception handler resumes after it (see vectors.S).
    unsafe { semihosting_call(SYS_EXIT_EXTENDED, block.as_ptr() as u64) };
}
