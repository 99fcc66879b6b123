//! The fake drivers: an IOMMU driver, a PCI host bridge driver that adds functions as children,
//! a generic platform driver that waits for its clock, and two PCI function drivers (one
//! managing its own DMA). Every probe checks what the hooks left for it, then ends as its
//! device's planned [`Fate`] says.

use std::sync::{Arc, Mutex, MutexGuard};

use devmodel::{
    DeferReason, DeviceInfo, DeviceState, Driver, DriverData, MatchId, PciAddress, PciIdentity,
    ProbeCtx, ProbeError,
};

use super::firmware::{Configured, FakeFunction, Firmware};
use super::state::{Fate, Shared};

/// Vendor of the fake PCI functions (QEMU's).
pub const VENDOR: u16 = 0x1234;
/// Device ID of QEMU's edu device.
pub const EDU: u16 = 0x11e8;

/// Compatibles the generic driver takes: what QEMU `virt` and the `of` fixtures describe.
const GENERIC: &[MatchId] = &[
    MatchId::Compatible("virtio,mmio"),
    MatchId::Compatible("arm,pl011"),
    MatchId::Compatible("arm,pl031"),
    MatchId::Compatible("arm,pl061"),
    MatchId::Compatible("arm,gic-v3"),
    MatchId::Compatible("arm,armv8-timer"),
    MatchId::Compatible("arm,armv8-pmuv3"),
    MatchId::Compatible("arm,psci-1.0"),
    MatchId::Compatible("qemu,fw-cfg-mmio"),
    MatchId::Compatible("cfi-flash"),
    MatchId::Compatible("fixed-clock"),
    MatchId::Compatible("gpio-keys"),
    MatchId::Compatible("example,dev"),
    MatchId::Compatible("example,gpu"),
    MatchId::Compatible("example,display"),
    MatchId::Compatible("example,camera"),
    MatchId::Compatible("example,net"),
    MatchId::Compatible("example,uart"),
];

const IOMMU: &[MatchId] = &[
    MatchId::Compatible("arm,smmu-v3"),
    MatchId::Compatible("arm,mmu-500"),
];
const PCI_HOST: &[MatchId] = &[MatchId::Compatible("pci-host-ecam-generic")];
const ANY_PCI: &[MatchId] = &[MatchId::PciClass { class: 0, mask: 0 }];
const EDU_ONLY: &[MatchId] = &[MatchId::Pci {
    vendor: VENDOR,
    device: EDU,
}];

/// Every driver, in the kernel's order (IOMMU first).
pub fn all(fw: &Arc<Firmware>, shared: &Arc<Mutex<Shared>>) -> Vec<Arc<dyn Driver>> {
    let base = |name| Base {
        name,
        fw: fw.clone(),
        shared: shared.clone(),
    };
    vec![
        Arc::new(IommuDriver(base("iommu"))),
        Arc::new(PciHostDriver(base("pci-host"))),
        Arc::new(GenericDriver(base("generic"))),
        Arc::new(ManagedDriver(base("pci-managed"))),
        Arc::new(PciFunctionDriver(base("pci-fn"))),
    ]
}

/// What every fake driver has.
struct Base {
    name: &'static str,
    fw: Arc<Firmware>,
    shared: Arc<Mutex<Shared>>,
}

impl Base {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().expect("shared state")
    }

    /// Checks the DMA state the hooks left, then applies the device's fate.
    fn start(&self, ctx: &ProbeCtx<'_>, managed: bool) -> Result<(), ProbeError> {
        let dev = ctx.device();
        let dma = ctx
            .dma::<Configured>()
            .unwrap_or_else(|| panic!("{}: probe without the hooks' DMA state", dev.name));
        assert_eq!(dma.device, dev.name, "probe got another device's DMA state");
        assert_eq!(
            dma.driver_managed_dma, managed,
            "{}: driver_managed_dma",
            dev.name
        );
        assert_eq!(ctx.driver_managed_dma(), managed);
        assert_eq!(ctx.state_of(ctx.id()), Some(&DeviceState::Probing));
        assert!(
            self.shared().configured.contains(&dev.name),
            "{}: probed while not configured",
            dev.name
        );
        let fate = self.shared().fate(&dev.name);
        match fate {
            Fate::Bind => Ok(()),
            Fate::Fail => Err(ProbeError::failed(format!(
                "{} refuses {}",
                self.name, dev.name
            ))),
            Fate::Decline => Err(ProbeError::NoMatch),
            Fate::Defer => Err(ProbeError::Defer(DeferReason::new("firmware not loaded"))),
        }
    }
}

/// Driver data that says which driver made it.
struct Data {
    driver: &'static str,
    device: String,
    /// Children added (PCI host bridge).
    children: Vec<String>,
}

fn data(base: &Base, dev: &DeviceInfo, children: Vec<String>) -> DriverData {
    Box::new(Data {
        driver: base.name,
        device: dev.name.clone(),
        children,
    })
}

fn check_data(base: &Base, dev: &DeviceInfo, data: &mut DriverData) -> Vec<String> {
    let d = data
        .downcast_mut::<Data>()
        .unwrap_or_else(|| panic!("{}: remove got foreign driver data", dev.name));
    assert_eq!(
        (d.driver, d.device.as_str()),
        (base.name, dev.name.as_str())
    );
    std::mem::take(&mut d.children)
}

struct IommuDriver(Base);

impl Driver for IommuDriver {
    fn name(&self) -> &'static str {
        self.0.name
    }
    fn match_table(&self) -> &[MatchId] {
        IOMMU
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        self.0.start(ctx, false)?;
        let dev = ctx.device();
        let node = dev.node.clone().expect("a platform device has a node");
        self.0.shared().live_iommus.insert(node);
        Ok(data(&self.0, dev, Vec::new()))
    }
    fn remove(&self, dev: &DeviceInfo, data: &mut DriverData) {
        check_data(&self.0, dev, data);
        let node = dev.node.as_deref().expect("a platform device has a node");
        assert!(
            self.0.shared().live_iommus.remove(node),
            "{node}: IOMMU removed twice"
        );
    }
}

struct PciHostDriver(Base);

impl Driver for PciHostDriver {
    fn name(&self) -> &'static str {
        self.0.name
    }
    fn match_table(&self) -> &[MatchId] {
        PCI_HOST
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let dev = ctx.device_arc();
        // As the real driver: read the node before touching anything.
        let node = dev.node.as_deref().expect("a platform device has a node");
        let pci = self
            .0
            .fw
            .node(node)
            .and_then(|f| f.pci.as_ref())
            .ok_or_else(|| ProbeError::failed("not a PCI host bridge node"))?;
        let bus_range = pci
            .bus_range
            .clone()
            .map_err(ProbeError::failed)?
            .unwrap_or(0..=0xff);
        let segment = pci.domain.clone().map_err(ProbeError::failed)?.unwrap_or(0) as u16;
        pci.windows.as_ref().map_err(ProbeError::failed)?;
        let plan = self
            .0
            .shared()
            .functions
            .get(&dev.name)
            .cloned()
            .unwrap_or_default();
        let mut children = Vec::new();
        for f in plan {
            let address = PciAddress::new(segment, *bus_range.start(), f.dev, f.func);
            let rid = f.alias.unwrap_or(address.rid());
            let info = DeviceInfo::pci(PciIdentity::new(address, VENDOR, f.device_id))
                .with_payload(Arc::new(FakeFunction { rid }));
            self.0.shared().fates.insert(info.name.clone(), f.fate);
            children.push(info.name.clone());
            // Binds the child at once: the shared state must not be held here.
            ctx.add_child(info).map_err(ProbeError::failed)?;
        }
        for c in ctx.children() {
            let parent = ctx.info_of(*c).and_then(|i| i.parent);
            assert_eq!(parent, Some(ctx.id()), "a child with another parent");
        }
        // The outcome comes after the children: a host that fails or defers leaves them.
        self.0.start(ctx, false)?;
        Ok(data(&self.0, &dev, children))
    }
    fn remove(&self, dev: &DeviceInfo, data: &mut DriverData) {
        let children = check_data(&self.0, dev, data);
        let shared = self.0.shared();
        for c in children {
            assert!(
                !shared.configured.contains(&c),
                "{}: removed while its child {c} still has DMA set up",
                dev.name
            );
        }
    }
}

struct GenericDriver(Base);

impl Driver for GenericDriver {
    fn name(&self) -> &'static str {
        self.0.name
    }
    fn match_table(&self) -> &[MatchId] {
        GENERIC
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let dev = ctx.device_arc();
        let node = dev.node.as_deref().expect("a platform device has a node");
        // Like a clock lookup in a real probe: the provider must be bound first.
        if let Some(clock) = self.0.fw.node(node).and_then(|f| f.clock.clone()) {
            let ready = ctx
                .find_by_node(&clock)
                .and_then(|id| ctx.state_of(id))
                .is_some_and(|s| s.driver().is_some());
            if !ready {
                return Err(ProbeError::waiting_for("clock", &clock));
            }
        }
        self.0.start(ctx, false)?;
        Ok(data(&self.0, &dev, Vec::new()))
    }
    fn remove(&self, dev: &DeviceInfo, data: &mut DriverData) {
        check_data(&self.0, dev, data);
    }
}

/// Takes edu functions with an odd device number, and manages their DMA itself.
struct ManagedDriver(Base);

impl Driver for ManagedDriver {
    fn name(&self) -> &'static str {
        self.0.name
    }
    fn match_table(&self) -> &[MatchId] {
        EDU_ONLY
    }
    fn accepts(&self, dev: &DeviceInfo) -> bool {
        dev.pci.is_some_and(|p| p.address.dev % 2 == 1)
    }
    fn driver_managed_dma(&self) -> bool {
        true
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        assert!(
            self.accepts(ctx.device()),
            "probed a device it does not accept"
        );
        self.0.start(ctx, true)?;
        Ok(data(&self.0, ctx.device(), Vec::new()))
    }
    fn remove(&self, dev: &DeviceInfo, data: &mut DriverData) {
        check_data(&self.0, dev, data);
    }
}

struct PciFunctionDriver(Base);

impl Driver for PciFunctionDriver {
    fn name(&self) -> &'static str {
        self.0.name
    }
    fn match_table(&self) -> &[MatchId] {
        ANY_PCI
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        self.0.start(ctx, false)?;
        Ok(data(&self.0, ctx.device(), Vec::new()))
    }
    fn remove(&self, dev: &DeviceInfo, data: &mut DriverData) {
        check_data(&self.0, dev, data);
    }
}
