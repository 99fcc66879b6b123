//! PSCI (Arm DEN 0022): power the machine off through the conduit the device tree names.

use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

const SYSTEM_OFF: u64 = 0x8400_0008;

/// How to call firmware, from `/psci` `method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0` (QEMU at EL1).
    Hvc,
    /// `smc #0` (QEMU with `virtualization=on`).
    Smc,
}

static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// Records the conduit found in the device tree.
pub fn set_conduit(c: Conduit) {
    CONDUIT.store(if c == Conduit::Hvc { 1 } else { 2 }, Ordering::Relaxed);
}

/// The recorded conduit, if any.
pub fn conduit() -> Option<Conduit> {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => Some(Conduit::Hvc),
        2 => Some(Conduit::Smc),
        _ => None,
    }
}

/// PSCI SYSTEM_OFF; returns only if there is no PSCI or the call failed.
pub fn system_off() {
    match conduit() {
        // SAFETY: SYSTEM_OFF does not return on success; on failure it returns an error in x0,
        // which we ignore. The firmware call clobbers x0-x3 per the SMC calling convention.
        Some(Conduit::Hvc) => unsafe {
            asm!("hvc #0", inout("x0") SYSTEM_OFF => _, out("x1") _, out("x2") _, out("x3") _)
        },
        // SAFETY: as above, through the secure monitor conduit.
        Some(Conduit::Smc) => unsafe {
            asm!("smc #0", inout("x0") SYSTEM_OFF => _, out("x1") _, out("x2") _, out("x3") _)
        },
        None => {}
    }
}
