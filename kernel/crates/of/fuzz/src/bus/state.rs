//! State shared by the hooks, the fake drivers and the invariant checks.

use std::collections::{BTreeMap, BTreeSet};

/// How a fake driver's probe of one device ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Takes the device.
    Bind,
    /// `ProbeError::Failed`.
    Fail,
    /// `ProbeError::NoMatch`.
    Decline,
    /// `ProbeError::Defer` with no named dependency: never binds.
    Defer,
}

impl Fate {
    /// Mostly binds: 0 (no control byte) always does.
    pub fn from_byte(b: u8) -> Self {
        match b % 16 {
            13 => Fate::Fail,
            14 => Fate::Decline,
            15 => Fate::Defer,
            _ => Fate::Bind,
        }
    }
}

/// One PCI function a host bridge's probe adds.
#[derive(Clone, Copy, Debug)]
pub struct FunctionPlan {
    /// Device number on the bridge's first bus.
    pub dev: u8,
    /// Function number.
    pub func: u8,
    /// PCI device ID (vendor 0x1234): 0x11e8 is edu, which the driver-managed driver takes.
    pub device_id: u16,
    /// The requester ID is this function's own (`None`) or this alias.
    pub alias: Option<u16>,
    /// Its probe's outcome.
    pub fate: Fate,
}

/// Hook and driver accounting.
#[derive(Debug, Default)]
pub struct Shared {
    /// IOMMU nodes whose driver is bound.
    pub live_iommus: BTreeSet<String>,
    /// Devices configured and not cleaned up since.
    pub configured: BTreeSet<String>,
    /// Successful `dma_configure` calls.
    pub configures: u64,
    /// `dma_cleanup` calls.
    pub cleanups: u64,
    /// Probe outcome per device name.
    pub fates: BTreeMap<String, Fate>,
    /// Functions per host bridge device name.
    pub functions: BTreeMap<String, Vec<FunctionPlan>>,
    /// Driver attempts the current bus-model call may still make.
    pub budget: u64,
}

impl Shared {
    /// Counts one driver attempt against the current call's budget: running out means the bus
    /// model is retrying without end.
    pub fn spend_attempt(&mut self) {
        assert!(
            self.budget > 0,
            "runaway probing: a single bus-model call made more driver attempts than the \
             deferred-probe rules allow"
        );
        self.budget -= 1;
    }

    /// A successful `dma_configure`.
    pub fn configure(&mut self, device: &str) {
        assert!(
            self.configured.insert(device.to_string()),
            "{device} configured twice without a cleanup"
        );
        self.configures += 1;
    }

    /// A `dma_cleanup`.
    pub fn cleanup(&mut self, device: &str) {
        assert!(
            self.configured.remove(device),
            "{device} cleaned up without a configure"
        );
        self.cleanups += 1;
    }

    /// The outcome planned for `device` (binds when nothing was planned).
    pub fn fate(&self, device: &str) -> Fate {
        self.fates.get(device).copied().unwrap_or(Fate::Bind)
    }
}
