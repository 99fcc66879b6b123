//! A stand-in for the kernel's DMA hooks, for host tests of binding and of drivers.
//!
//! [`FakeDma`] plays the IOMMU wiring: a device, or everything below a bridge (as `iommu-map` on
//! a PCI host bridge node does), may be placed behind an IOMMU named by DT node path. Its
//! `dma_configure` defers until that IOMMU is marked up (a fake IOMMU driver's probe does it), as
//! the real hook does until the IOMMU's driver has registered. Every call is recorded, and
//! unbalanced calls (configure twice, clean up what was not configured) panic.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::device::DeviceInfo;
use crate::driver::ProbeError;
use crate::manager::{DmaHooks, DmaState};

/// One recorded hook call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookCall {
    /// `dma_configure(device, driver_managed_dma)`.
    Configure {
        /// Device name.
        device: String,
        /// The flag as passed.
        driver_managed_dma: bool,
    },
    /// `dma_cleanup(device)`.
    Cleanup {
        /// Device name.
        device: String,
    },
}

/// The DMA state [`FakeDma`] leaves for a configured device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeDmaOps {
    /// The device it was made for.
    pub device: String,
    /// The IOMMU node the device sits behind, if any.
    pub iommu: Option<String>,
    /// The flag `dma_configure` got.
    pub driver_managed_dma: bool,
}

#[derive(Default)]
struct Inner {
    behind: BTreeMap<String, String>,
    below: BTreeMap<String, String>,
    live: BTreeSet<String>,
    fail: BTreeMap<String, String>,
    configured: BTreeSet<String>,
    calls: Vec<HookCall>,
}

/// Recording [`DmaHooks`]; clones share one state, so a test keeps a clone to look inside.
#[derive(Clone, Default)]
pub struct FakeDma {
    inner: Arc<Mutex<Inner>>,
}

impl core::fmt::Debug for FakeDma {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("FakeDma")
            .field("behind", &inner.behind)
            .field("live", &inner.live)
            .field("configured", &inner.configured)
            .finish()
    }
}

impl FakeDma {
    /// No device behind any IOMMU, no IOMMU up.
    pub fn new() -> Self {
        Self::default()
    }

    /// A boxed clone, to hand to [`crate::DeviceManager::new`].
    pub fn hooks(&self) -> Box<dyn DmaHooks> {
        Box::new(self.clone())
    }

    /// Puts the device named `device` behind the IOMMU at DT node `iommu`.
    pub fn place_behind(&self, device: &str, iommu: &str) {
        self.inner
            .lock()
            .behind
            .insert(device.to_owned(), iommu.to_owned());
    }

    /// Puts every descendant of the device named `bridge` (not the bridge itself) behind the
    /// IOMMU at `iommu`, as `iommu-map` on a PCI host bridge node does.
    pub fn place_below(&self, bridge: &str, iommu: &str) {
        self.inner
            .lock()
            .below
            .insert(bridge.to_owned(), iommu.to_owned());
    }

    /// The IOMMU at `iommu` is ready: devices behind it configure from now on.
    pub fn iommu_up(&self, iommu: &str) {
        self.inner.lock().live.insert(iommu.to_owned());
    }

    /// The IOMMU at `iommu` went away.
    pub fn iommu_down(&self, iommu: &str) {
        self.inner.lock().live.remove(iommu);
    }

    /// Makes `dma_configure` of `device` fail with `message`.
    pub fn fail_configure(&self, device: &str, message: &str) {
        self.inner
            .lock()
            .fail
            .insert(device.to_owned(), message.to_owned());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<HookCall> {
        self.inner.lock().calls.clone()
    }

    /// How many times `device` was configured.
    pub fn configures(&self, device: &str) -> usize {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| matches!(c, HookCall::Configure { device: d, .. } if d == device))
            .count()
    }

    /// How many times `device` was cleaned up.
    pub fn cleanups(&self, device: &str) -> usize {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| matches!(c, HookCall::Cleanup { device: d } if d == device))
            .count()
    }

    /// Devices configured and not cleaned up since.
    pub fn configured(&self) -> Vec<String> {
        self.inner.lock().configured.iter().cloned().collect()
    }
}

impl DmaHooks for FakeDma {
    fn dma_configure(
        &mut self,
        dev: &DeviceInfo,
        ancestors: &[Arc<DeviceInfo>],
        driver_managed_dma: bool,
    ) -> Result<Option<DmaState>, ProbeError> {
        let mut inner = self.inner.lock();
        inner.calls.push(HookCall::Configure {
            device: dev.name.clone(),
            driver_managed_dma,
        });
        if let Some(msg) = inner.fail.get(&dev.name) {
            return Err(ProbeError::failed(msg));
        }
        let iommu = inner.behind.get(&dev.name).cloned().or_else(|| {
            ancestors
                .iter()
                .find_map(|a| inner.below.get(&a.name))
                .cloned()
        });
        if let Some(node) = &iommu
            && !inner.live.contains(node)
        {
            return Err(ProbeError::waiting_for("iommu", node));
        }
        assert!(
            inner.configured.insert(dev.name.clone()),
            "FakeDma: {} configured twice without cleanup",
            dev.name
        );
        Ok(Some(Arc::new(FakeDmaOps {
            device: dev.name.clone(),
            iommu,
            driver_managed_dma,
        })))
    }

    fn dma_cleanup(&mut self, dev: &DeviceInfo, state: Option<DmaState>) {
        let mut inner = self.inner.lock();
        inner.calls.push(HookCall::Cleanup {
            device: dev.name.clone(),
        });
        assert!(
            inner.configured.remove(&dev.name),
            "FakeDma: {} cleaned up without a configure",
            dev.name
        );
        let ops = state.and_then(|s| s.downcast::<FakeDmaOps>().ok());
        assert_eq!(
            ops.map(|o| o.device.clone()).as_deref(),
            Some(dev.name.as_str()),
            "FakeDma: cleanup got another device's state"
        );
    }
}
