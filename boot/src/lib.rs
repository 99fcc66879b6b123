//! The kernel's first instructions (`entry.S`).
//!
//! QEMU's `virt` loader recognises the arm64 Image header and boots us the way it boots Linux:
//! the boot CPU at EL1 (EL2 with `virtualization=on`), MMU and caches off, `x0` = physical address
//! of the device tree. `entry.S` parks other CPUs, drops from EL2 to EL1, stops FP/SIMD from
//! trapping (Rust uses NEON registers for ordinary copies), installs the exception vectors, sets up
//! the stack, zeroes BSS, turns the MMU on with a coarse identity map (so Rust never runs with all
//! memory treated as Device memory) and calls `kernel_entry(dtb_pa)`.
//!
//! # Resources
//! - Linux `Documentation/arch/arm64/booting.rst` (Image header and boot protocol)
//! - Arm ARM DDI 0487: HCR_EL2, CPTR_EL2, CPACR_EL1, TCR_EL1, MAIR_EL1, SCTLR_EL1
#![no_std]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
core::arch::global_asm!(include_str!("entry.S"));

/// Index of the early identity map's memory attributes in MAIR_EL1; the kernel's final page
/// tables use the same MAIR, so these are shared facts.
pub mod mair {
    /// Device-nGnRE (MAIR byte 0x04).
    pub const DEVICE_NGNRE: u64 = 0;
    /// Normal, inner/outer write-back read/write-allocate (MAIR byte 0xff).
    pub const NORMAL_WB: u64 = 1;
    /// Normal, non-cacheable (MAIR byte 0x44).
    pub const NORMAL_NC: u64 = 2;
    /// The MAIR_EL1 value `entry.S` programs.
    pub const MAIR_EL1: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
}
