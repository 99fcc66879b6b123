//! System registers and cache maintenance that no crate wraps for us.

use core::arch::asm;

use aarch64_cpu::registers::{MPIDR_EL1, Readable};

/// Data cache line size in bytes (CTR_EL0.DminLine, bits 19:16, log2 of words).
fn dcache_line() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Cleans `[va, va+size)` to the point of coherency (`dc cvac`), then waits for completion.
pub fn dcache_clean(va: u64, size: u64) {
    let line = dcache_line();
    let mut a = va & !(line - 1);
    while a < va + size {
        // SAFETY: cache maintenance by VA on mapped kernel memory has no effect on program state.
        unsafe { asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Cleans and invalidates `[va, va+size)` (`dc civac`): used before the CPU reads what a
/// non-coherent device wrote (clean too, so dirty lines sharing the buffer's edges are not lost).
pub fn dcache_clean_invalidate(va: u64, size: u64) {
    let line = dcache_line();
    let mut a = va & !(line - 1);
    while a < va + size {
        // SAFETY: as above; clean+invalidate never discards data the CPU wrote.
        unsafe { asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Waits for an interrupt. Wakes on any pending interrupt even when IRQs are masked.
pub fn wfi() {
    aarch64_cpu::asm::wfi();
}

/// This CPU's affinity (Aff3.Aff2.Aff1.Aff0) in the 32-bit layout of GICR_TYPER.
pub fn affinity() -> u32 {
    let m = MPIDR_EL1.get();
    let aff0_2 = (m & 0xff_ffff) as u32;
    let aff3 = ((m >> 32) & 0xff) as u32;
    (aff3 << 24) | aff0_2
}

/// The GICv3 CPU interface through its system registers (IHI 0069 §12.2).
pub struct GicCpuInterface;

impl gicv3::CpuInterface for GicCpuInterface {
    fn enable_system_registers(&self) {
        // SAFETY: ICC_SRE_EL1 (S3_0_C12_C12_5); setting SRE selects the system-register
        // interface, which is all this kernel uses. The ISB makes the change visible.
        unsafe {
            asm!(
                "mrs {t}, S3_0_C12_C12_5",
                "orr {t}, {t}, #1",
                "msr S3_0_C12_C12_5, {t}",
                "isb",
                t = out(reg) _,
                options(nostack)
            )
        };
    }
    fn set_priority_mask(&self, mask: u8) {
        // SAFETY: ICC_PMR_EL1 (S3_0_C4_C6_0) only filters interrupt priorities.
        unsafe { asm!("msr S3_0_C4_C6_0, {}", in(reg) u64::from(mask), options(nostack)) };
    }
    fn set_binary_point(&self, value: u8) {
        // SAFETY: ICC_BPR1_EL1 (S3_0_C12_C12_3) only affects preemption grouping.
        unsafe { asm!("msr S3_0_C12_C12_3, {}", in(reg) u64::from(value), options(nostack)) };
    }
    fn enable_group1(&self, enable: bool) {
        // SAFETY: ICC_IGRPEN1_EL1 (S3_0_C12_C12_7) enables Group 1 signalling to this CPU.
        unsafe {
            asm!("msr S3_0_C12_C12_7, {}", "isb", in(reg) u64::from(enable), options(nostack))
        };
    }
    fn enable_group0(&self, enable: bool) {
        // SAFETY: ICC_IGRPEN0_EL1 (S3_0_C12_C12_6) enables Group 0 (FIQ) signalling to this CPU.
        unsafe {
            asm!("msr S3_0_C12_C12_6, {}", "isb", in(reg) u64::from(enable), options(nostack))
        };
    }
    fn acknowledge(&self) -> u32 {
        let v: u64;
        // SAFETY: reading ICC_IAR1_EL1 (S3_0_C12_C12_0) acknowledges an interrupt; the caller
        // (the IRQ layer) always follows up with an EOI.
        unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) v, options(nostack)) };
        // The acknowledge must complete before the handler touches the device.
        kapi::barrier::dsb_sy();
        v as u32
    }
    fn end_of_interrupt(&self, intid: u32) {
        // SAFETY: ICC_EOIR1_EL1 (S3_0_C12_C12_1) with an INTID this CPU acknowledged.
        unsafe {
            asm!("msr S3_0_C12_C12_1, {}", "isb", in(reg) u64::from(intid), options(nostack))
        };
    }
    fn affinity(&self) -> u32 {
        affinity()
    }
}
