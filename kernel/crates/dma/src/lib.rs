//! The DMA API: how a driver gives a device access to memory.
//!
//! Every device gets its [`DmaDevice`] when a driver binds (the kernel builds it in the bus
//! model's `dma_configure` step, just before probe) and loses it when the driver unbinds or its
//! probe fails. What it does depends on what the firmware and the user decided for the device:
//!
//! - **IOMMU-backed** (the device has a translated DMA domain): buffers are mapped into the
//!   domain at IOVAs from the domain's allocator, below the device's mask and bus limit.
//! - **Direct** (no IOMMU, or an identity domain): the device sees physical addresses shifted by
//!   its `dma-ranges`; a buffer it cannot reach is copied through a bounce pool, or refused.
//! - **None** (blocked): every call fails cleanly.
//!
//! Drivers see only this API, never the IOMMU.
//!
//! # Handles
//!
//! Mappings are RAII objects typed by direction ([`ToDevice`], [`FromDevice`], [`Bidirectional`]):
//! [`DmaStream`] (one buffer), [`DmaSgTable`] (a list of buffers, one IOVA range),
//! [`DmaCoherent`] (memory shared with the device for its lifetime). A stream or scatter-gather
//! handle *owns* its buffers: the CPU cannot touch them while the device owns them, and gets
//! them back through [`DmaStream::cpu`] (an explicit sync, undone when the guard drops) or at the
//! end of the mapping ([`DmaStream::into_buffer`]). Dropping a handle unmaps it in the order
//! that makes reuse safe: page-table entries removed, IOTLB invalidated and synced (strict) or
//! queued for a batched invalidation (lazy), and only then the IOVA freed.
//!
//! # Context
//!
//! May run in interrupt context: mapping and unmapping streams and scatter-gather lists,
//! [`DmaStream::cpu`], dropping any handle, reading and writing [`DmaCoherent`] memory.
//! Thread context only: [`DmaDevice::alloc_coherent`] (allocates page frames and may wait for an
//! IOTLB flush), the mask and segment setters (set them in probe, before any mapping), and
//! building devices and domains (the kernel does it at bind).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod bounce;
mod coherent;
mod debug;
mod device;
pub mod direct;
mod direction;
mod error;
mod iommu_dma;
pub mod sg;
mod sgl;
mod stats;
mod stream;

pub use bounce::BouncePool;
pub use coherent::DmaCoherent;
pub use device::{DmaDevice, DmaDeviceBuilder, RawMapping};
pub use direct::{BusMap, DmaWindow};
pub use direction::{Bidirectional, Direction, DmaDirection, FromDevice, ToDevice};
pub use error::DmaError;
pub use iommu_dma::{FLUSH_QUEUE_LEN, FLUSH_QUEUE_TIMEOUT, IommuDma};
pub use sg::SegmentLimits;
pub use sgl::DmaSgTable;
pub use stats::{DmaStats, stats};
pub use stream::{CpuAccess, DmaStream};

#[cfg(test)]
mod tests;
