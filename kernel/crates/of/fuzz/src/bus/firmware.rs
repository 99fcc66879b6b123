//! The kernel's device-tree glue on the host: platform devices from the tree (as
//! `kernel/src/devices.rs` makes them), what the drivers read from their nodes, and the DMA
//! hooks. The hooks read each device's DMA description with the kernel's own code (the
//! `firmware-dma` crate: `iommus`, the host bridge's `iommu-map` for a PCI function's requester
//! ID, `dma-ranges`, coherence, the MSI doorbell, `reserved-memory` regions), on the tree the
//! target was given; only the IOMMU core is replaced, by the set of IOMMU nodes whose driver is
//! bound.
//!
//! What the drivers read is taken from the tree once, through the same `of` accessors, and kept
//! per node ([`NodeFacts`]).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use devmodel::{
    BusKind, DeviceInfo, DmaHooks, DmaState, IrqResource, IrqTrigger, MmioResource, ProbeError,
};
use firmware_dma::{FirmwareDma, fail};
use of::{DeviceTree, DtError, Node, PciWindow};

use super::state::Shared;

/// What a PCI host bridge's driver reads from its node.
#[derive(Debug)]
pub struct PciFacts {
    /// `bus-range`.
    pub bus_range: Result<Option<RangeInclusive<u8>>, String>,
    /// `linux,pci-domain`.
    pub domain: Result<Option<u32>, String>,
    /// `ranges` decoded by space.
    pub windows: Result<Vec<PciWindow>, String>,
}

/// What the kernel reads from one node when a device binds, errors kept as their messages.
#[derive(Debug)]
pub struct NodeFacts {
    /// `status` is okay.
    pub enabled: Result<bool, String>,
    /// For a PCI host bridge.
    pub pci: Option<PciFacts>,
    /// The node of the first `clocks` phandle: a dependency the generic driver waits for.
    pub clock: Option<String>,
}

fn text<T>(r: Result<T, DtError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn path(n: &Node<'_>) -> String {
    n.path().to_string()
}

impl NodeFacts {
    fn of(node: &Node<'_>) -> Self {
        let clock = node
            .cells("clocks")
            .ok()
            .flatten()
            .and_then(|c| c.first().copied())
            .and_then(|ph| node.tree().by_phandle(ph))
            .map(|n| path(&n));
        Self {
            enabled: text(node.is_enabled()),
            pci: node
                .is_compatible("pci-host-ecam-generic")
                .then(|| PciFacts {
                    bus_range: text(node.pci_bus_range()),
                    domain: text(node.pci_domain()),
                    windows: text(node.pci_windows()),
                }),
            clock,
        }
    }
}

/// Every node's facts, by path.
#[derive(Debug, Default)]
pub struct Firmware {
    nodes: BTreeMap<String, NodeFacts>,
}

impl Firmware {
    /// Reads every node of `dt`.
    pub fn of(dt: &DeviceTree<'_>) -> Self {
        Self {
            nodes: dt.nodes().map(|n| (path(&n), NodeFacts::of(&n))).collect(),
        }
    }

    /// The facts of the node at `path`.
    pub fn node(&self, path: &str) -> Option<&NodeFacts> {
        self.nodes.get(path)
    }
}

/// What the device walk found, in tree order.
#[derive(Debug)]
pub enum Found {
    /// A device to add.
    Device(DeviceInfo),
    /// A disabled node (the bus model is told, for its report).
    Disabled(String),
}

fn platform_device(node: &Node<'_>) -> Result<DeviceInfo, DtError> {
    let regs = node.reg()?;
    let name = devmodel::platform_name(node.path(), regs.first().map(|r| r.start));
    let mut info = DeviceInfo::platform(&name, node.path());
    for c in node.compatible()? {
        info = info.with_compatible(c);
    }
    let reg_names = node.reg_names().unwrap_or_default();
    for (i, r) in regs.iter().enumerate() {
        let mut m = MmioResource::new(r.start, r.size);
        if let Some(n) = reg_names.get(i) {
            m = m.named(n);
        }
        info = info.with_mmio(m);
    }
    if node.has_property("interrupts") || node.has_property("interrupts-extended") {
        let irq_names = node.interrupt_names().unwrap_or_default();
        for (i, irq) in node.gic_interrupts()?.into_iter().enumerate() {
            let trigger = match irq.trigger {
                of::Trigger::Edge => IrqTrigger::Edge,
                of::Trigger::Level => IrqTrigger::Level,
            };
            let mut r = IrqResource::new(irq.intid, trigger);
            if let Some(n) = irq_names.get(i) {
                r = r.named(n);
            }
            info = info.with_irq(r);
        }
    }
    Ok(info)
}

/// Children of the root and of `simple-bus` nodes that have a `compatible`, as the kernel's
/// `add_platform_devices` walks them (a node that cannot be described is skipped).
pub fn platform_devices(dt: &DeviceTree<'_>) -> Vec<Found> {
    let mut out = Vec::new();
    walk(dt.root(), &mut out);
    out
}

fn walk(parent: Node<'_>, out: &mut Vec<Found>) {
    for node in parent.children() {
        if !node.has_property("compatible") {
            continue;
        }
        match node.is_enabled() {
            Ok(true) => {}
            Ok(false) => {
                out.push(Found::Disabled(path(&node)));
                continue;
            }
            Err(_) => continue,
        }
        if let Ok(info) = platform_device(&node) {
            out.push(Found::Device(info));
        }
        if node.is_compatible("simple-bus") {
            walk(node, out);
        }
    }
}

/// The payload of a fake PCI function: the requester ID its DMA carries (after aliasing).
#[derive(Debug)]
pub struct FakeFunction {
    /// Requester ID.
    pub rid: u16,
}

/// The DMA state the hooks leave for a configured device.
#[derive(Debug)]
pub struct Configured {
    /// The device it was made for.
    pub device: String,
    /// The flag `dma_configure` got.
    pub driver_managed_dma: bool,
    /// What the firmware said.
    pub firmware: FirmwareDma,
}

/// The kernel's `KernelDmaHooks`, with the IOMMU core replaced by the set of IOMMU nodes whose
/// driver is bound, and with the accounting the invariants need.
pub struct FirmwareHooks {
    blob: Arc<Vec<u8>>,
    shared: Arc<Mutex<Shared>>,
    /// What `dma_configure` read for each device. The hooks must be `'static` and the tree
    /// borrows the blob, so what is not here (platform devices are read up front, while the
    /// tree is at hand) costs a parse once.
    read: BTreeMap<ReadKey, Read>,
}

/// Everything `firmware_dma::read` depends on besides the tree: the device's node, its
/// requester ID (PCI), its host bridge's node (PCI: the first platform ancestor with a node).
type ReadKey = (Option<String>, Option<u16>, Option<String>);
/// The description, and whether its IOMMU may be waited for; or why it cannot be used.
type Read = Result<(FirmwareDma, Result<(), ProbeError>), String>;

fn read_key(dev: &DeviceInfo, ancestors: &[Arc<DeviceInfo>]) -> ReadKey {
    let rid = dev.payload::<FakeFunction>().map(|f| f.rid);
    let host = match dev.bus {
        BusKind::Platform => None,
        BusKind::Pci => ancestors
            .iter()
            .filter(|a| a.bus == BusKind::Platform)
            .find_map(|a| a.node.clone()),
    };
    (dev.node.clone(), rid, host)
}

/// The kernel's reading of `dev`'s DMA description, and whether its IOMMU may be waited for.
fn read(tree: &DeviceTree<'_>, dev: &DeviceInfo, ancestors: &[Arc<DeviceInfo>]) -> Read {
    let rid = dev.payload::<FakeFunction>().map(|f| f.rid);
    let firmware = firmware_dma::read(tree, dev, ancestors, rid)?;
    let enabled = match &firmware.iommu {
        Some(spec) => firmware_dma::check_iommu_enabled(tree, spec),
        None => Ok(()),
    };
    Ok((firmware, enabled))
}

impl FirmwareHooks {
    /// Hooks reading the tree in `blob`, with what `tree` (parsed from it) says of the platform
    /// devices `found` read in advance; accounting in `shared`.
    pub fn new(
        blob: Arc<Vec<u8>>,
        tree: &DeviceTree<'_>,
        found: &[Found],
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        let read = found
            .iter()
            .filter_map(|f| match f {
                Found::Device(info) => Some((read_key(info, &[]), read(tree, info, &[]))),
                Found::Disabled(_) => None,
            })
            .collect();
        Self { blob, shared, read }
    }

    fn read(&mut self, dev: &DeviceInfo, ancestors: &[Arc<DeviceInfo>]) -> Read {
        let blob = &self.blob;
        self.read
            .entry(read_key(dev, ancestors))
            .or_insert_with(|| {
                let tree = DeviceTree::parse(blob).map_err(|e| e.to_string())?;
                read(&tree, dev, ancestors)
            })
            .clone()
    }
}

impl DmaHooks for FirmwareHooks {
    fn dma_configure(
        &mut self,
        dev: &DeviceInfo,
        ancestors: &[Arc<DeviceInfo>],
        driver_managed_dma: bool,
    ) -> Result<Option<DmaState>, ProbeError> {
        let shared = self.shared.clone();
        let mut shared = shared.lock().expect("shared state");
        shared.spend_attempt();
        let (firmware, enabled) = self.read(dev, ancestors).map_err(fail)?;
        if let Some(spec) = &firmware.iommu {
            enabled?;
            if !shared.live_iommus.contains(&spec.iommu) {
                return Err(ProbeError::waiting_for("iommu", &spec.iommu));
            }
        }
        shared.configure(&dev.name);
        Ok(Some(Arc::new(Configured {
            device: dev.name.clone(),
            driver_managed_dma,
            firmware,
        })))
    }

    fn dma_cleanup(&mut self, dev: &DeviceInfo, state: Option<DmaState>) {
        let made_for = state
            .and_then(|s| s.downcast::<Configured>().ok())
            .map(|c| c.device.clone());
        assert_eq!(
            made_for.as_deref(),
            Some(dev.name.as_str()),
            "dma_cleanup of {} got another device's state",
            dev.name
        );
        self.shared.lock().expect("shared state").cleanup(&dev.name);
    }
}
