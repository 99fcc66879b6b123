//! The IOMMU core: what sits between the bus model and IOMMU drivers.
//!
//! - **Instances**: an IOMMU driver registers its instance under its firmware node (DT path) when
//!   it binds, like any other driver. Any number of instances, of any driver type, coexist: each
//!   brings its own [`IommuOps`].
//! - **Per-device fwspec**: a device names its IOMMU through its own firmware description
//!   (`iommus`, or the host bridge's `iommu-map` for PCI) — a [`FwSpec`] of instance + IDs.
//!   There is no per-bus IOMMU pointer anywhere.
//! - **Groups**: devices whose IDs alias (PCI functions behind a conventional bridge share its
//!   requester ID) cannot be isolated from each other, so they share a [`Group`] and one domain.
//! - **Domains**: [`DomainType::Dma`] (translated, owned by the DMA API), `Identity` (bypass),
//!   `Blocked` (no access) and `Unmanaged` (allocated by a driver that declared
//!   `driver_managed_dma`).
//! - **Policy**: whether a device gets a translated or an identity default domain is decided by
//!   the user (boot arguments) and firmware, never by the driver; an IOMMU driver may veto
//!   identity when its hardware cannot bypass. A device with no driver bound, or whose probe
//!   failed, is `Blocked`.
//!
//! The kernel calls [`IommuCore::configure_device`] from the bus's `dma_configure` step (at bind,
//! just before probe) and [`IommuCore::cleanup_device`] from `dma_cleanup` (probe failure or
//! unbind).
#![cfg_attr(not(any(test, feature = "fakes")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod core_state;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
mod types;

pub use core_state::{
    DeviceDma, GroupId, IommuCore, Policy, SW_MSI_BASE, SW_MSI_SIZE, Stats, core,
};
pub use types::*;

#[cfg(test)]
mod tests;
