//! The kernel's device-tree glue, rebuilt for the host: platform devices from the tree (as
//! `kernel/src/devices.rs` makes them) and the DMA hooks (as `kernel/src/dma_setup.rs` reads the
//! firmware: `iommus` for a platform device, the host bridge's `iommu-map` for a PCI function's
//! requester ID, `dma-ranges`, coherence, the MSI doorbell).
//!
//! The hooks must be `'static`, so everything they read is taken from the tree once, through
//! the same `of` accessors the kernel calls at bind, and kept per node ([`NodeFacts`]).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use devmodel::{
    BusKind, DeferReason, DeviceInfo, DmaHooks, DmaState, IrqResource, IrqTrigger, MmioResource,
    ProbeError,
};
use of::{DeviceTree, DmaConstraint, DtError, IdMap, Node, PciSpace, PciWindow, PhandleArgs};

use super::state::Shared;

/// GITS_TRANSLATER's offset in the ITS register frame: the MSI doorbell (as the kernel adds it).
const GITS_TRANSLATER: u64 = 0x1_0040;
/// Cells in an IOMMU specifier the kernel's IOMMU core takes (one stream ID).
const IOMMU_CELLS: u32 = 1;

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
    /// `iommus`, targets as paths.
    pub iommus: Result<Vec<PhandleArgs<String>>, String>,
    /// `iommu-map`, targets as paths.
    pub iommu_map: Result<Option<IdMap<String>>, String>,
    /// `#iommu-cells` (for an IOMMU).
    pub iommu_cells: Result<Option<u32>, String>,
    /// `msi-map` (a broken one costs the device its MSIs, not its bind).
    pub msi_map: Result<Option<IdMap<String>>, String>,
    /// The first `msi-parent` (likewise).
    pub msi_parent: Result<Option<PhandleArgs<String>>, String>,
    /// Inherited coherence.
    pub coherent: Result<bool, String>,
    /// What the node reaches as a device.
    pub dma: Result<DmaConstraint, String>,
    /// What its children (PCI functions) reach.
    pub child_dma: Result<DmaConstraint, String>,
    /// For a PCI host bridge.
    pub pci: Option<PciFacts>,
    /// For an ITS: its doorbell, `None` when the address does not fit (the kernel adds the
    /// offset unchecked).
    pub doorbell: Option<u64>,
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
        let doorbell = if node.is_compatible("arm,gic-v3-its") {
            node.reg()
                .ok()
                .and_then(|r| r.first().map(|r| r.start.0.checked_add(GITS_TRANSLATER)))
                .flatten()
        } else {
            None
        };
        let clock = node
            .cells("clocks")
            .ok()
            .flatten()
            .and_then(|c| c.first().copied())
            .and_then(|ph| node.tree().by_phandle(ph))
            .map(|n| path(&n));
        Self {
            enabled: text(node.is_enabled()),
            iommus: text(node.iommus()).map(|l| l.iter().map(|e| e.map_target(path)).collect()),
            iommu_map: text(node.iommu_map()).map(|m| m.map(|m| m.map_targets(path))),
            iommu_cells: text(node.specifier_cells("#iommu-cells")),
            msi_map: text(node.msi_map()).map(|m| m.map(|m| m.map_targets(path))),
            msi_parent: text(node.msi_parents()).map(|p| p.first().map(|p| p.map_target(path))),
            coherent: text(node.dma_coherent()),
            dma: text(node.dma_constraint()),
            child_dma: text(node.child_dma_constraint()),
            pci: node
                .is_compatible("pci-host-ecam-generic")
                .then(|| PciFacts {
                    bus_range: text(node.pci_bus_range()),
                    domain: text(node.pci_domain()),
                    windows: text(node.pci_windows()),
                }),
            doorbell,
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

/// What the firmware says about one device's DMA (the kernel's `FirmwareDma`).
#[derive(Clone, Debug)]
pub struct FirmwareDma {
    /// The IOMMU node and the device's IDs on it.
    pub iommu: Option<(String, Vec<u32>)>,
    /// Coherent DMA.
    pub coherent: bool,
    /// The bus windows.
    pub constraint: DmaConstraint,
    /// The MSI doorbell and DeviceID.
    pub msi: Option<(u64, u32)>,
    /// Why the device has no MSIs although the tree describes them.
    pub msi_problem: Option<String>,
    /// PCI host memory windows: never DMA targets.
    pub holes: usize,
}

fn facts<'f>(fw: &'f Firmware, path: &str) -> Result<&'f NodeFacts, String> {
    fw.node(path).ok_or_else(|| format!("no node {path}"))
}

/// A value the kernel uses when it parses, and reports (without failing) when it does not.
fn split<T: Clone>(r: &Result<T, String>) -> (Option<T>, Option<String>) {
    match r {
        Ok(v) => (Some(v.clone()), None),
        Err(e) => (None, Some(e.clone())),
    }
}

/// The kernel's `check_iommu_cells`: the IOMMU core holds one-cell specifiers only.
fn check_iommu_cells(fw: &Firmware, iommu: &str, user: &str, property: &str) -> Result<(), String> {
    let cells = facts(fw, iommu)?.iommu_cells.clone()?;
    if cells == Some(IOMMU_CELLS) {
        return Ok(());
    }
    let found = match cells {
        Some(n) => format!("{n} cells where {IOMMU_CELLS} is expected (a stream ID)"),
        None => String::from("missing"),
    };
    Err(format!(
        "{iommu}: #iommu-cells: {found}, as used by {user}: {property}"
    ))
}

/// The kernel's `firmware_dma`.
pub fn firmware_dma(
    fw: &Firmware,
    dev: &DeviceInfo,
    ancestors: &[Arc<DeviceInfo>],
) -> Result<FirmwareDma, String> {
    match dev.bus {
        BusKind::Platform => {
            let Some(node) = dev.node.as_deref() else {
                return Ok(FirmwareDma {
                    iommu: None,
                    coherent: false,
                    constraint: DmaConstraint::Unrestricted,
                    msi: None,
                    msi_problem: None,
                    holes: 0,
                });
            };
            let f = facts(fw, node)?;
            let entries = f.iommus.clone()?;
            let iommu = match entries.first() {
                None => None,
                Some(first) => {
                    if entries.iter().any(|e| e.target != first.target) {
                        return Err(format!(
                            "{node}: iommus: entries name different IOMMUs, which is not supported"
                        ));
                    }
                    check_iommu_cells(fw, &first.target, node, "iommus")?;
                    let ids = entries
                        .iter()
                        .flat_map(|e| e.args.first().copied())
                        .collect();
                    Some((first.target.clone(), ids))
                }
            };
            let (parent, msi_problem) = split(&f.msi_parent);
            let msi = parent.flatten().and_then(|m| {
                let doorbell = fw.node(&m.target)?.doorbell?;
                Some((doorbell, m.args.first().copied()?))
            });
            Ok(FirmwareDma {
                iommu,
                coherent: f.coherent.clone()?,
                constraint: f.dma.clone()?,
                msi,
                msi_problem,
                holes: 0,
            })
        }
        BusKind::Pci => {
            let host = ancestors
                .iter()
                .find_map(|a| a.node.as_deref())
                .ok_or("a PCI function without a host bridge node")?;
            let f = facts(fw, host)?;
            let rid = dev
                .payload::<FakeFunction>()
                .ok_or("a PCI device without its function")?
                .rid;
            let iommu = match f
                .iommu_map
                .clone()?
                .and_then(|m| m.translate(u32::from(rid)).map(|(n, id)| (n.clone(), id)))
            {
                Some((iommu, id)) => {
                    check_iommu_cells(fw, &iommu, host, "iommu-map")?;
                    Some((iommu, vec![id]))
                }
                None => None,
            };
            let (map, msi_problem) = split(&f.msi_map);
            let msi = map.flatten().and_then(|m| {
                let (controller, id) = m.translate(u32::from(rid))?;
                Some((fw.node(controller)?.doorbell?, id))
            });
            let holes = f
                .pci
                .as_ref()
                .and_then(|p| p.windows.as_ref().ok())
                .map_or(0, |ws| {
                    ws.iter()
                        .filter(|w| !matches!(w.space, PciSpace::Config | PciSpace::Io))
                        .count()
                });
            Ok(FirmwareDma {
                iommu,
                coherent: f.coherent.clone()?,
                constraint: f.child_dma.clone()?,
                msi,
                msi_problem,
                holes,
            })
        }
    }
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
    fw: Arc<Firmware>,
    shared: Arc<Mutex<Shared>>,
}

impl FirmwareHooks {
    /// Hooks reading `fw`, accounting in `shared`.
    pub fn new(fw: Arc<Firmware>, shared: Arc<Mutex<Shared>>) -> Self {
        Self { fw, shared }
    }
}

impl DmaHooks for FirmwareHooks {
    fn dma_configure(
        &mut self,
        dev: &DeviceInfo,
        ancestors: &[Arc<DeviceInfo>],
        driver_managed_dma: bool,
    ) -> Result<Option<DmaState>, ProbeError> {
        let mut shared = self.shared.lock().expect("shared state");
        shared.spend_attempt();
        let firmware = firmware_dma(&self.fw, dev, ancestors).map_err(fail)?;
        if let Some((iommu, _)) = &firmware.iommu {
            match fw_enabled(&self.fw, iommu) {
                Ok(true) => {}
                // Deferred for good, without untranslated DMA.
                Ok(false) => {
                    return Err(ProbeError::Defer(DeferReason::new(format!(
                        "iommu {iommu} is disabled: device left blocked, not given untranslated DMA"
                    ))));
                }
                Err(e) => return Err(fail(e)),
            }
            if !shared.live_iommus.contains(iommu) {
                return Err(ProbeError::waiting_for("iommu", iommu));
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

/// A failed DMA set-up, worded as the kernel's.
fn fail(e: String) -> ProbeError {
    ProbeError::failed(format!("{e}; device left blocked"))
}

fn fw_enabled(fw: &Firmware, node: &str) -> Result<bool, String> {
    facts(fw, node)?.enabled.clone()
}
