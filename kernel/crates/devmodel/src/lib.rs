//! The bus model: devices, drivers, match tables, binding and deferred probe.
//!
//! Bus code (the kernel's DT walk, the PCI host bridge driver) describes devices with
//! [`DeviceInfo`] and adds them to the [`DeviceManager`]; drivers implement [`Driver`] and are
//! registered with it. Either event tries to bind at once, as Linux's `device_add` and
//! `driver_register` do. Between match and probe the manager calls the kernel's
//! [`DmaHooks::dma_configure`], which may defer the device (its IOMMU is not there yet); a
//! deferred device is retried after every successful bind, and whatever is still deferred at the
//! end of boot is reported with the chain of dependencies it waits on
//! ([`DeviceManager::deferred_report`]).
//!
//! This crate knows nothing of IOMMUs, the DT format or hardware: dependencies are DT node paths,
//! DMA setup is a hook, bus-specific data is an opaque payload.
//!
//! Log lines use target `devmodel <device name>`: binds at debug, deferrals at info (and so is the
//! bind that ends one), a failed DMA set-up at error, a failed probe at warn, the end-of-boot
//! report at info. A boot where every provider comes before its consumers logs nothing at info.
//!
//! # Resources
//! - Linux `drivers/base/dd.c` (`really_probe`, deferred probe lists, `deferred_trigger_count`)
//!   and `Documentation/driver-api/driver-model/` for the semantics followed here.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod device;
pub mod driver;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod manager;
pub mod report;

#[cfg(test)]
mod tests;

pub use device::{
    BusKind, DeviceId, DeviceInfo, IrqResource, IrqTrigger, MmioResource, Payload, PciAddress,
    PciIdentity, platform_name,
};
pub use driver::{DeferReason, Driver, DriverData, DriverError, MatchId, ProbeError};
pub use manager::{
    Counters, DeviceManager, DeviceState, DmaHooks, DmaState, ModelError, NoDmaHooks, ProbeCtx,
};
pub use report::DeferredLine;
