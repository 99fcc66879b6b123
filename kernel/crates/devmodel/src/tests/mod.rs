//! Host tests of the bus model, one behaviour each.
//!
//! The fixtures mirror QEMU `virt` with an SMMUv3: the SMMU platform device at `/smmuv3@9050000`
//! and edu PCI functions behind it. [`FakeDma`] plays the kernel's DMA hooks: a device placed
//! behind the SMMU defers in `dma_configure` until the fake SMMU driver's probe marks it up.

mod binding;
mod deferral;
mod matching;
mod naming;
mod ordering;
mod removal;
mod report;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::fakes::FakeDma;
use crate::{
    DeviceInfo, DeviceManager, Driver, DriverData, IrqResource, IrqTrigger, MatchId, MmioResource,
    PciAddress, PciIdentity, ProbeCtx, ProbeError,
};
use addr::PhysAddr;

pub(crate) const SMMU_NODE: &str = "/smmuv3@9050000";
pub(crate) const EDU: MatchId = MatchId::Pci {
    vendor: 0x1234,
    device: 0x11e8,
};

type ProbeFn = dyn Fn(&mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> + Send + Sync;
type RemoveFn = dyn Fn(&DeviceInfo, &mut DriverData) + Send + Sync;

/// A driver made of closures.
pub(crate) struct TestDriver {
    name: &'static str,
    table: Vec<MatchId>,
    managed: bool,
    only: Option<&'static str>,
    probe: Box<ProbeFn>,
    remove: Option<Box<RemoveFn>>,
}

impl TestDriver {
    /// A driver that accepts every device it matches, with `()` as data.
    pub(crate) fn new(name: &'static str, table: &[MatchId]) -> Self {
        Self {
            name,
            table: table.to_vec(),
            managed: false,
            only: None,
            probe: Box::new(|_| Ok(Box::new(()))),
            remove: None,
        }
    }

    /// Accepts only the device with this name (a finer match than the table).
    pub(crate) fn only(mut self, name: &'static str) -> Self {
        self.only = Some(name);
        self
    }

    pub(crate) fn probe(
        mut self,
        f: impl Fn(&mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> + Send + Sync + 'static,
    ) -> Self {
        self.probe = Box::new(f);
        self
    }

    pub(crate) fn on_remove(
        mut self,
        f: impl Fn(&DeviceInfo, &mut DriverData) + Send + Sync + 'static,
    ) -> Self {
        self.remove = Some(Box::new(f));
        self
    }

    pub(crate) fn managed(mut self) -> Self {
        self.managed = true;
        self
    }

    pub(crate) fn arc(self) -> Arc<dyn Driver> {
        Arc::new(self)
    }
}

impl Driver for TestDriver {
    fn name(&self) -> &'static str {
        self.name
    }
    fn match_table(&self) -> &[MatchId] {
        &self.table
    }
    fn driver_managed_dma(&self) -> bool {
        self.managed
    }
    fn accepts(&self, dev: &DeviceInfo) -> bool {
        self.only.is_none_or(|n| n == dev.name)
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        (self.probe)(ctx)
    }
    fn remove(&self, dev: &DeviceInfo, data: &mut DriverData) {
        if let Some(f) = &self.remove {
            f(dev, data);
        }
    }
}

/// A shared, ordered log of events ("probe x", "remove x", ...).
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    pub(crate) fn push(&self, e: impl Into<String>) {
        self.0.lock().unwrap().push(e.into());
    }
    pub(crate) fn take(&self) -> Vec<String> {
        core::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Driver data that counts its drops.
pub(crate) struct DropCounter(pub(crate) Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub(crate) fn manager(dma: &FakeDma) -> DeviceManager {
    DeviceManager::new(dma.hooks())
}

/// The SMMU platform device as the DT walk would describe it.
pub(crate) fn smmu_device() -> DeviceInfo {
    DeviceInfo::platform("9050000.smmuv3", SMMU_NODE)
        .with_compatible("arm,smmu-v3")
        .with_mmio(MmioResource::new(PhysAddr(0x905_0000), 0x2_0000))
        .with_irq(IrqResource::new(106, IrqTrigger::Edge).named("eventq"))
        .with_irq(IrqResource::new(107, IrqTrigger::Edge).named("priq"))
}

/// A fake SMMU driver: its probe brings the IOMMU up for the DMA hooks, its remove takes it down.
pub(crate) fn smmu_driver(dma: &FakeDma) -> Arc<dyn Driver> {
    let up = dma.clone();
    let down = dma.clone();
    TestDriver::new("smmuv3", &[MatchId::Compatible("arm,smmu-v3")])
        .probe(move |ctx| {
            up.iommu_up(ctx.device().node.as_deref().unwrap_or_default());
            Ok(Box::new(()))
        })
        .on_remove(move |dev, _| down.iommu_down(dev.node.as_deref().unwrap_or_default()))
        .arc()
}

/// An edu PCI function at 0000:00:<dev>.0.
pub(crate) fn edu_device(dev: u8) -> DeviceInfo {
    DeviceInfo::pci(
        PciIdentity::new(PciAddress::new(0, 0, dev, 0), 0x1234, 0x11e8)
            .with_class(0x00ff00)
            .with_revision(0x10),
    )
}

/// An edu function placed behind the SMMU.
pub(crate) fn edu_behind_smmu(dma: &FakeDma, dev: u8) -> DeviceInfo {
    let info = edu_device(dev);
    dma.place_behind(&info.name, SMMU_NODE);
    info
}
