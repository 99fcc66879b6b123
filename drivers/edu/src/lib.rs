//! QEMU's `edu` device (1234:11e8): a PCI function with a 4 KiB buffer and a DMA engine that
//! copies between it and memory, 100 ms (virtual time) after each command. Its default 28-bit
//! DMA mask — it cannot reach RAM at 1 GiB without an IOMMU — makes it the natural test of "the
//! IOVA allocator honours the DMA mask".
//!
//! Two drivers share the hardware description here:
//! - [`driver`]: an ordinary driver. It uses the DMA API only: sets the mask, maps buffers,
//!   enables bus mastering last, and starts an interrupt-driven round trip (RAM -> device ->
//!   RAM) at probe whose result [`EduDevice::round_trip_result`] reports.
//! - [`managed_driver`]: a `driver_managed_dma` driver for the functions named by
//!   `edu.managed=`: no default domain is attached for it; it allocates its own UNMANAGED
//!   domain with a fixed IOVA layout and maps through the IOMMU API directly.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod device;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod ktests;
mod managed;
pub mod regs;

pub use device::{Edu, EduDevice, EduError, Transfer, bound, driver};
pub use managed::{ManagedEdu, managed_driver};

/// PCI vendor ID of QEMU's test devices.
pub const VENDOR: u16 = 0x1234;
/// PCI device ID of edu.
pub const DEVICE: u16 = 0x11e8;
/// edu's DMA mask unless QEMU's `dma_mask` property says otherwise.
pub const DEFAULT_DMA_BITS: u32 = 28;

/// How the edu drivers are configured (from the boot arguments).
#[derive(Clone, Debug, Default)]
pub struct EduConfig {
    /// DMA mask bits (`edu.dma_bits`, default 28).
    pub dma_bits: Option<u32>,
    /// Functions that bind to the self-managing driver (`edu.managed`).
    pub managed: alloc::vec::Vec<alloc::string::String>,
}
