//! PCI: the ECAM configuration-space window of a generic host bridge (`pci-host-ecam-generic`)
//! and the enumeration of everything behind it.
//!
//! Nothing assigns BARs on a bare-metal `virt` boot, so enumeration does what firmware does
//! elsewhere: numbers the buses behind bridges, sizes every BAR and places it in one of the host
//! bridge's windows (from its DT `ranges`), programs the bridges' forwarding windows and turns on
//! memory decode. It never turns on bus mastering for an endpoint: a device may not DMA until its
//! driver has bound and its DMA set-up is done.
//!
//! # Resources
//! - PCI Express Base 6.0 §7.2.2 (ECAM), PCI Local Bus 3.0 §6 (configuration header)
//! - PCI-to-PCI Bridge Architecture 1.2 (bus numbers, windows, interrupt swizzling)
//! - Linux `Documentation/devicetree/bindings/pci/host-generic-pci.yaml`
#![cfg_attr(not(any(test, feature = "fakes")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
pub mod device;
pub mod enumerate;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
pub mod host;

pub use config::Bdf;
pub use device::PciDevice;
pub use enumerate::{
    Bar, BridgeInfo, ConfigAccess, EnumWarning, HostWindow, PciFunction, Space, Topology, enumerate,
};
pub use host::driver;

use kapi::mmio::MmioRegion;

/// Configuration space through ECAM: function (bus, dev, fn) at `(bus - first_bus) << 20 |
/// dev << 15 | fn << 12` in the window. Accesses outside the window read as all-ones (no
/// function) and writes are dropped.
pub struct Ecam {
    region: MmioRegion,
    first_bus: u8,
}

impl Ecam {
    /// ECAM over `region`, whose first bus is `first_bus` (DT `bus-range`).
    pub fn new(region: MmioRegion, first_bus: u8) -> Self {
        Self { region, first_bus }
    }

    /// Buses the window covers.
    pub fn bus_count(&self) -> u64 {
        self.region.size() >> 20
    }

    fn offset(&self, bdf: Bdf, offset: u16) -> Option<u64> {
        let bus = u64::from(bdf.bus.checked_sub(self.first_bus)?);
        if bus >= self.bus_count() || offset >= 4096 {
            return None;
        }
        Some(
            (bus << 20)
                | (u64::from(bdf.dev) << 15)
                | (u64::from(bdf.func) << 12)
                | u64::from(offset),
        )
    }
}

impl ConfigAccess for Ecam {
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        self.offset(bdf, offset)
            .and_then(|o| self.region.read8(o).ok())
            .unwrap_or(0xff)
    }
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        self.offset(bdf, offset)
            .and_then(|o| self.region.read16(o).ok())
            .unwrap_or(0xffff)
    }
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        self.offset(bdf, offset)
            .and_then(|o| self.region.read32(o).ok())
            .unwrap_or(u32::MAX)
    }
    fn write8(&self, bdf: Bdf, offset: u16, value: u8) {
        if let Some(o) = self.offset(bdf, offset) {
            let _ = self.region.write8(o, value);
        }
    }
    fn write16(&self, bdf: Bdf, offset: u16, value: u16) {
        if let Some(o) = self.offset(bdf, offset) {
            let _ = self.region.write16(o, value);
        }
    }
    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(o) = self.offset(bdf, offset) {
            let _ = self.region.write32(o, value);
        }
    }
}

#[cfg(test)]
mod tests;
