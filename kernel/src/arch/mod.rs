//! Everything that needs aarch64 instructions: exceptions, system registers, caches, MMU,
//! the generic timer, PSCI and semihosting.

pub mod cpu;
pub mod exceptions;
pub mod mmu;
pub mod psci;
pub mod semihosting;
pub mod sha256;
pub mod timer;

use aarch64_cpu::registers::{CurrentEL, Readable};

// memset, memcpy, memmove, memcmp (see mem.S for why they are not the portable ones).
core::arch::global_asm!(include_str!("mem.S"));

/// Exception level the kernel runs at (1 after the EL2 drop in `boot`).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// Powers the machine off with `code`: semihosting exit when QEMU provides it (the code becomes
/// QEMU's exit status), otherwise PSCI SYSTEM_OFF (QEMU then exits 0), otherwise park.
pub fn exit(code: crate::ExitCode) -> ! {
    crate::console::flush();
    semihosting::exit(code as u32);
    psci::system_off();
    loop {
        aarch64_cpu::asm::wfe();
    }
}
