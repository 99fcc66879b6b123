//! The kernel interface for drivers.
//!
//! Drivers never call the kernel crate (it depends on them); they call this crate, which the
//! kernel fills in at boot with [`platform::install`]. Everything here builds and runs on the host
//! too, with the fakes in [`platform::fake`], so driver logic can be unit-tested on x86_64.
//!
//! This crate is also the one place outside `boot`, `kernel/src/arch` and `kernel/src/mm` where
//! `unsafe` is allowed: [`mmio`] (typed register blocks over device memory) and [`dma_mem`]
//! (memory a device may read or write behind the CPU's back). Both are small and reviewed.
#![cfg_attr(not(any(test, feature = "fakes")), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod barrier;
#[allow(unsafe_code)]
pub mod dma_mem;
pub mod irq;
pub mod logging;
#[allow(unsafe_code)]
pub mod mmio;
pub mod msi;
#[allow(unsafe_code)]
pub mod platform;
pub mod sync;
pub mod time;

pub use addr::{Iova, PAGE_SIZE, PhysAddr, VirtAddr};
