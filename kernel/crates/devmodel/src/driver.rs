//! What a driver is: a name, a match table, a probe that may accept, reject, defer or fail.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use core::any::Any;
use core::fmt;

use crate::device::DeviceInfo;
use crate::manager::ProbeCtx;

/// Per-device state a driver returns from probe. The manager keeps it with the device and drops
/// it on unbind, after [`Driver::remove`]: RAII resources in it (DMA mappings, IRQ handles) are
/// released by unbinding.
pub type DriverData = Box<dyn Any + Send + Sync>;

/// One entry of a driver's match table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchId {
    /// A DT `compatible` string.
    Compatible(&'static str),
    /// A PCI vendor and device ID.
    Pci {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
    },
    /// A PCI class code under a mask: matches when `(dev.class ^ class) & mask == 0`.
    PciClass {
        /// 24-bit class code: base class, subclass, programming interface.
        class: u32,
        /// Which of the 24 bits must be equal.
        mask: u32,
    },
}

impl MatchId {
    /// True when this entry matches `dev`.
    pub fn matches(&self, dev: &DeviceInfo) -> bool {
        match *self {
            MatchId::Compatible(c) => dev.is_compatible(c),
            MatchId::Pci { vendor, device } => dev
                .pci
                .is_some_and(|p| p.vendor == vendor && p.device == device),
            MatchId::PciClass { class, mask } => {
                dev.pci.is_some_and(|p| (p.class ^ class) & mask == 0)
            }
        }
    }
}

/// Index of the first entry of `table` matching `dev`.
pub(crate) fn first_match(table: &[MatchId], dev: &DeviceInfo) -> Option<usize> {
    table.iter().position(|m| m.matches(dev))
}

/// The driver's match for `dev`: its table, then its own [`Driver::accepts`] check.
pub(crate) fn driver_match(driver: &dyn Driver, dev: &DeviceInfo) -> Option<usize> {
    first_match(driver.match_table(), dev).filter(|_| driver.accepts(dev))
}

/// Why a probe (or the DMA setup before it) cannot complete yet.
///
/// The message says in words what is missing; the dependency, when known, names the DT node of
/// the device waited on so the end-of-boot report can follow the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeferReason {
    message: String,
    dependency: Option<String>,
}

impl DeferReason {
    /// A reason with no named dependency, e.g. `"firmware not loaded"`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            dependency: None,
        }
    }

    /// Waiting for the device at DT node `node`: `waiting_for("iommu", "/smmuv3@9050000")` reads
    /// `waiting for iommu /smmuv3@9050000`.
    pub fn waiting_for(what: &str, node: &str) -> Self {
        Self {
            message: format!("waiting for {what} {node}"),
            dependency: Some(node.to_string()),
        }
    }

    /// Names the DT node of the device waited on (keeps the message as it is).
    pub fn on_node(mut self, node: &str) -> Self {
        self.dependency = Some(node.to_string());
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The DT node path of the dependency, if named.
    pub fn dependency(&self) -> Option<&str> {
        self.dependency.as_deref()
    }
}

impl fmt::Display for DeferReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A probe that failed for good: the driver's own error, rendered when it crossed into this layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverError {
    message: String,
}

impl DriverError {
    /// From any displayable error (a driver's error enum).
    pub fn new(error: impl fmt::Display) -> Self {
        Self {
            message: error.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The three ways a probe (or `dma_configure`) can decline a device.
///
/// Drivers convert their own errors with `impl From<MyError> for ProbeError` (usually to
/// [`ProbeError::Failed`]), or with [`ProbeError::failed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The driver does not handle this device after all: silent, the next matching driver is tried.
    NoMatch,
    /// Something the device needs is not there yet: the device is retried after the next bind.
    /// No other driver is tried.
    Defer(DeferReason),
    /// The probe failed: logged, the next matching driver is tried.
    Failed(DriverError),
}

impl ProbeError {
    /// [`ProbeError::Failed`] from any displayable error.
    pub fn failed(error: impl fmt::Display) -> Self {
        ProbeError::Failed(DriverError::new(error))
    }

    /// [`ProbeError::Defer`] waiting for the device at `node` (see [`DeferReason::waiting_for`]).
    pub fn waiting_for(what: &str, node: &str) -> Self {
        ProbeError::Defer(DeferReason::waiting_for(what, node))
    }
}

impl From<DeferReason> for ProbeError {
    fn from(reason: DeferReason) -> Self {
        ProbeError::Defer(reason)
    }
}

impl From<DriverError> for ProbeError {
    fn from(error: DriverError) -> Self {
        ProbeError::Failed(error)
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NoMatch => f.write_str("device not handled by this driver"),
            ProbeError::Defer(r) => write!(f, "deferred: {r}"),
            ProbeError::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// A device driver.
///
/// Drivers are shared objects (`Arc<dyn Driver>`); all per-device state lives in the
/// [`DriverData`] that probe returns.
pub trait Driver: Send + Sync {
    /// Name, as in logs and [`crate::DeviceState::Bound`]: `smmuv3`, `edu`. Unique in a manager.
    fn name(&self) -> &'static str;

    /// Which devices to offer this driver. Entries are tried in order; the index of the first
    /// one that matches is available in probe as [`ProbeCtx::matched`].
    fn match_table(&self) -> &[MatchId];

    /// A finer match than the table, decided before any DMA set-up (e.g. a driver that takes
    /// only the functions a boot argument names). Declining here is silent and free; declining
    /// in probe costs a `dma_configure`/`dma_cleanup` round.
    fn accepts(&self, dev: &DeviceInfo) -> bool {
        let _ = dev;
        true
    }

    /// True for drivers that manage the device's IOMMU domain themselves (VFIO-like): passed to
    /// `dma_configure`, which then leaves the device without a kernel-managed DMA domain.
    fn driver_managed_dma(&self) -> bool {
        false
    }

    /// Takes the device: returns the per-device state, or declines with [`ProbeError`].
    ///
    /// Runs after `dma_configure` succeeded for this device and driver. A probe may add child
    /// devices ([`ProbeCtx::add_child`]); they are bound at once.
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError>;

    /// Releases the device. Called on unbind before `data` is dropped and before `dma_cleanup`;
    /// children this driver added have already been removed.
    fn remove(&self, dev: &DeviceInfo, data: &mut DriverData) {
        let _ = (dev, data);
    }
}
