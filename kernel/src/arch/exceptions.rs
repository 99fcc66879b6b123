//! Exception handling: IRQ dispatch, the semihosting probe, and readable dumps of everything
//! unexpected (decoded ESR, FAR, ELR, registers) followed by a failure exit.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::registers::{Readable, TPIDRRO_EL0};
use esr::Esr;

core::arch::global_asm!(include_str!("vectors.S"));
core::arch::global_asm!(include_str!("fiq.S"));

/// Register state saved by `vectors.S` (layout shared with it: keep in sync with FRAME_SIZE).
#[repr(C)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// Exception link register: where execution resumes.
    pub elr: u64,
    /// Saved PSTATE.
    pub spsr: u64,
    /// Exception syndrome.
    pub esr: u64,
    /// Fault address.
    pub far: u64,
    /// Stack pointer at the time of the exception.
    pub sp: u64,
    /// FPCR, FPSR.
    pub fp_ctl: [u64; 2],
    /// q0..q31.
    pub q: [u128; 32],
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 816);

/// Vector index (0..16) -> (source, type) for the dump.
fn vector_name(kind: u64) -> (&'static str, &'static str) {
    let source = match kind / 4 {
        0 => "current EL with SP0",
        1 => "current EL",
        2 => "lower EL (AArch64)",
        _ => "lower EL (AArch32)",
    };
    let ty = match kind % 4 {
        0 => "synchronous",
        1 => "IRQ",
        2 => "FIQ",
        _ => "SError",
    };
    (source, ty)
}

static IN_FATAL: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    static semihosting_trap: u8;
}

/// Address of the semihosting HLT instruction.
pub fn semihosting_trap_addr() -> u64 {
    core::ptr::addr_of!(semihosting_trap) as u64
}

/// Entry from `vectors.S`.
#[unsafe(no_mangle)]
extern "C" fn exception_handler(frame: &mut TrapFrame, kind: u64) {
    let image = crate::mm::layout::image();
    let at = core::ptr::from_mut(frame) as u64;
    if (image.overflow_stack_bottom..image.overflow_stack_top).contains(&at) {
        // vectors.S moved here because the boot stack was exhausted; it kept the real SP.
        frame.sp = TPIDRRO_EL0.get();
        fatal(frame, kind, Some(image.stack_guard));
    }
    match kind {
        // IRQ from the current EL: the normal path.
        5 | 1 => kapi::irq::handle_pending(),
        4 if Esr(frame.esr).ec() == 0 && frame.elr == semihosting_trap_addr() => {
            // HLT without -semihosting: no semihosting host; fall back to PSCI for exit.
            super::semihosting::mark_absent();
            frame.x[0] = u64::MAX;
            frame.elr += 4;
        }
        _ => fatal(frame, kind, None),
    }
}

/// Dumps `frame` and exits; `overflow` is the boot stack's guard page when the exception came
/// from a stack overflow.
fn fatal(frame: &TrapFrame, kind: u64, overflow: Option<u64>) -> ! {
    if IN_FATAL.swap(true, Ordering::SeqCst) {
        // A fault while dumping a fault: do not try to print again.
        super::exit(crate::ExitCode::Exception);
    }
    let mut out = crate::console::Emergency;
    let (source, ty) = vector_name(kind);
    let esr = Esr(frame.esr);
    let t = crate::console::timestamp();
    let _ = writeln!(out, "[{t}] kernel: unexpected {ty} exception from {source}");
    if let Some(guard) = overflow {
        let _ = writeln!(
            out,
            "[{t}] kernel:   boot stack overflow: SP {:#x} is at or within a frame of the guard page [{guard:#x}-{:#x}]",
            frame.sp,
            guard + 0xfff
        );
    }
    let _ = writeln!(out, "[{t}] kernel:   {esr}");
    let _ = writeln!(
        out,
        "[{t}] kernel:   FAR {:#018x}  ELR {:#018x}  SPSR {:#010x}  SP {:#018x}",
        frame.far, frame.elr, frame.spsr, frame.sp
    );
    for row in 0..8 {
        let _ = write!(out, "[{t}] kernel:  ");
        for col in 0..4 {
            let i = row * 4 + col;
            if i < 31 {
                let _ = write!(out, " x{i:<2} {:#018x}", frame.x[i]);
            }
        }
        let _ = writeln!(out);
    }
    if let Some(test) = crate::ktest_runner::current() {
        let _ = writeln!(out, "KTEST FAIL {test} at exception: {esr}");
    }
    let _ = writeln!(
        out,
        "[{t}] kernel: halting after unexpected exception (exit status {})",
        crate::ExitCode::Exception as u32
    );
    super::exit(crate::ExitCode::Exception);
}
