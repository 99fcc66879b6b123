//! Message-signalled interrupts: a device writes `data` to a doorbell address and an interrupt
//! arrives. The kernel registers the interrupt controller's MSI domain (the GICv3 ITS on `virt`);
//! PCI drivers allocate vectors for their function's MSI DeviceID and program the message into
//! the device. Behind an IOMMU the device must be given the doorbell's *bus* address (the DMA
//! layer maps the doorbell into every translated domain; `dma::DmaDevice::msi_address` gives it).
//!
//! Context: thread context only (allocation issues commands to the controller and waits).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;

use crate::PhysAddr;
use crate::irq::IrqLine;

/// One vector: the interrupt to request, and the message the device must write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiVector {
    /// The interrupt line to pass to `irq::request`.
    pub line: IrqLine,
    /// Physical address of the doorbell register.
    pub doorbell: PhysAddr,
    /// Data the device writes.
    pub data: u32,
}

/// Errors from the MSI layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// No MSI controller is registered.
    NoController,
    /// The controller refused, in its own words.
    Controller(alloc::string::String),
}

impl fmt::Display for MsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsiError::NoController => f.write_str("no MSI controller"),
            MsiError::Controller(s) => f.write_str(s),
        }
    }
}

/// Vectors allocated for one device; dropping it frees them (the device must have stopped
/// signalling first).
pub trait MsiAllocation: Send + Sync {
    /// The vectors.
    fn vectors(&self) -> &[MsiVector];
}

/// An MSI controller.
pub trait MsiDomain: Send + Sync {
    /// Allocates `count` vectors for the device the controller knows as `device_id` (for PCI:
    /// the requester ID through the DT `msi-map`).
    fn alloc(&self, device_id: u32, count: u32) -> Result<Box<dyn MsiAllocation>, MsiError>;
}

static DOMAIN: spin::Once<Arc<dyn MsiDomain>> = spin::Once::new();

/// Registers the MSI controller. Only the first call has an effect.
pub fn set_domain(domain: Arc<dyn MsiDomain>) {
    DOMAIN.call_once(|| domain);
}

/// Allocates vectors from the registered controller.
pub fn alloc(device_id: u32, count: u32) -> Result<Box<dyn MsiAllocation>, MsiError> {
    DOMAIN
        .get()
        .ok_or(MsiError::NoController)?
        .alloc(device_id, count)
}
