//! The `pci-host-ecam-generic` driver: an ordinary driver on the platform bus whose probe
//! enumerates the PCI hierarchy and adds every function as a child device.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use devmodel::{
    DeviceInfo, Driver, DriverData, IrqResource, IrqTrigger, MatchId, MmioResource, PciAddress,
    PciIdentity, ProbeCtx, ProbeError,
};
use kapi::logging::DevLog;
use kapi::{dev_info, dev_warn};

use crate::Ecam;
use crate::config::Bdf;
use crate::device::PciDevice;
use crate::enumerate::{HostWindow, PciFunction, Space, enumerate};

/// The host bridge's driver data: what enumeration found.
pub struct HostBridge {
    /// The config-space window.
    pub ecam: Arc<Ecam>,
    /// Every function, with its assignments.
    pub functions: Vec<PciFunction>,
}

struct EcamHostDriver;

/// The driver for `pci-host-ecam-generic` host bridges.
pub fn driver() -> Arc<dyn Driver> {
    Arc::new(EcamHostDriver)
}

const MATCH: [MatchId; 1] = [MatchId::Compatible("pci-host-ecam-generic")];

/// A failed probe. The bus model prints it, once, with the device and the driver.
fn failed(what: impl core::fmt::Display) -> ProbeError {
    ProbeError::failed(what)
}

fn describe_bar(b: &crate::enumerate::Bar) -> String {
    let kind = match b.space {
        Space::Io => "io",
        _ => "mem",
    };
    let mut flags = String::new();
    if b.is_64bit {
        flags.push_str(" 64bit");
    }
    if b.prefetchable {
        flags.push_str(" pref");
    }
    match b.cpu_addr {
        Some(a) => format!(
            "BAR{} [{kind} {a:#x}-{:#x}{flags}]",
            b.index,
            a + b.size - 1
        ),
        None => format!(
            "BAR{} [{kind} size {:#x}{flags} unassigned]",
            b.index, b.size
        ),
    }
}

impl Driver for EcamHostDriver {
    fn name(&self) -> &'static str {
        "pci-host-ecam-generic"
    }

    fn match_table(&self) -> &[MatchId] {
        &MATCH
    }

    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let dev = ctx.device_arc();
        let log = DevLog::new("pci-host", &dev.name);
        let tree = of::boot_tree().ok_or_else(|| failed("no device tree"))?;
        let node_path = dev
            .node
            .clone()
            .ok_or_else(|| failed("no device-tree node"))?;
        let node = tree.node(&node_path).map_err(failed)?;
        let ecam_res = dev
            .mmio
            .first()
            .ok_or_else(|| failed(format!("{node_path}: reg: no ECAM window")))?;
        let bus_range = node.pci_bus_range().map_err(failed)?.unwrap_or(0..=0xff);
        let segment = node.pci_domain().map_err(failed)?.unwrap_or(0) as u16;
        let windows: Vec<HostWindow> = node
            .pci_windows()
            .map_err(failed)?
            .iter()
            .filter_map(|w| {
                let space = match w.space {
                    of::PciSpace::Io => Space::Io,
                    of::PciSpace::Mem32 => Space::Mem32,
                    of::PciSpace::Mem64 => Space::Mem64Pref,
                    of::PciSpace::Config => return None,
                };
                Some(HostWindow {
                    space,
                    pci_base: w.pci,
                    cpu_base: w.cpu.0,
                    size: w.size,
                })
            })
            .collect();
        let region = kapi::platform::get()
            .map_mmio(ecam_res.range.start, ecam_res.range.size)
            .map_err(failed)?;
        let ecam = Arc::new(Ecam::new(region, *bus_range.start()));
        let last_bus = (*bus_range.start() as u64 + ecam.bus_count().saturating_sub(1))
            .min(*bus_range.end() as u64) as u8;
        dev_info!(
            log,
            "ECAM at {:#x}, buses {:02x}-{last_bus:02x}, {} windows",
            ecam_res.range.start.0,
            bus_range.start(),
            windows.len()
        );
        let topo = enumerate(&*ecam, *bus_range.start(), last_bus, &windows);
        for w in &topo.warnings {
            dev_warn!(log, "{w}");
        }
        // Each function's DT node, if the tree describes it (real boards do, QEMU does not):
        // functions come after the bridge above them, so the bridge's node is known by then.
        let mut nodes: Vec<(Bdf, Option<of::Node<'static>>)> = Vec::new();
        for f in &topo.functions {
            let parent = match f.upstream_bridge {
                None => Some(node),
                Some(b) => nodes.iter().find(|(x, _)| *x == b).and_then(|(_, n)| *n),
            };
            let fn_node = function_node(&log, parent, f.bdf);
            nodes.push((f.bdf, fn_node));
            self.add_function(ctx, &node, fn_node, &ecam, f, segment)?;
        }
        Ok(Box::new(HostBridge {
            ecam,
            functions: topo.functions,
        }))
    }
}

impl EcamHostDriver {
    fn add_function(
        &self,
        ctx: &mut ProbeCtx<'_>,
        host: &of::Node<'_>,
        fn_node: Option<of::Node<'_>>,
        ecam: &Arc<Ecam>,
        f: &PciFunction,
        segment: u16,
    ) -> Result<(), ProbeError> {
        let addr = PciAddress::new(segment, f.bdf.bus, f.bdf.dev, f.bdf.func);
        let id = PciIdentity::new(addr, f.vendor, f.device)
            .with_class(f.class)
            .with_revision(f.revision);
        let mut info = DeviceInfo::pci(id);
        if let Some(n) = fn_node {
            info = info.with_node(n.path());
        }
        let log = DevLog::new("pci", &info.name);
        let mut line = format!("[{:04x}:{:04x}] class {:#08x}", f.vendor, f.device, f.class);
        for b in &f.bars {
            line.push_str(", ");
            line.push_str(&describe_bar(b));
            if let Some(cpu) = b.cpu_addr
                && b.space != Space::Io
            {
                info = info.with_mmio(
                    MmioResource::new(kapi::PhysAddr(cpu), b.size)
                        .named(&format!("bar{}", b.index)),
                );
            }
        }
        if let Some(bridge) = &f.bridge {
            line.push_str(&format!(
                ", bridge to [bus {:02x}-{:02x}]",
                bridge.secondary, bridge.subordinate
            ));
        }
        if let Some((root_dev, pin)) = f.intx_route {
            match host.pci_intx(
                of::pci_phys_hi(root_dev.bus, root_dev.dev, root_dev.func),
                pin,
            ) {
                Ok(Some(irq)) => {
                    let trigger = match irq.trigger {
                        of::Trigger::Edge => IrqTrigger::Edge,
                        of::Trigger::Level => IrqTrigger::Level,
                    };
                    info = info.with_irq(IrqResource::new(irq.intid, trigger).named("intx"));
                    line.push_str(&format!(
                        ", INT{} -> INTID {}",
                        (b'A' + f.interrupt_pin - 1) as char,
                        irq.intid
                    ));
                }
                Ok(None) => line.push_str(", INTx not routed"),
                Err(e) => dev_warn!(log, "{e}"),
            }
        }
        if f.dma_alias != f.bdf {
            line.push_str(&format!(
                ", DMA alias {:02x}:{:02x}.{}",
                f.dma_alias.bus, f.dma_alias.dev, f.dma_alias.func
            ));
        }
        dev_info!(log, "{line}");
        let payload = Arc::new(PciDevice::new(ecam.clone(), f.clone(), segment));
        ctx.add_child(info.with_payload(payload))
            .map_err(ProbeError::failed)?;
        Ok(())
    }
}

/// The child of `parent` (the host bridge's node, or the node of the bridge above) that
/// describes the function at `bdf`; `None` when there is none. A child whose `reg` does not
/// parse is reported and the function goes without a node.
fn function_node<'t>(log: &DevLog, parent: Option<of::Node<'t>>, bdf: Bdf) -> Option<of::Node<'t>> {
    // A bridge's node without children describes nothing below it (and need not be a PCI bus).
    let parent = parent.filter(|p| p.children().next().is_some())?;
    match parent.pci_child(bdf.dev << 3 | bdf.func) {
        Ok(n) => n,
        Err(e) => {
            dev_warn!(
                log,
                "{e}; {:02x}:{:02x}.{} has no device-tree node",
                bdf.bus,
                bdf.dev,
                bdf.func
            );
            None
        }
    }
}

/// The requester ID the IOMMU sees for a PCI device's DMA (its DMA alias), if it is one.
pub fn dma_requester_id(dev: &DeviceInfo) -> Option<u16> {
    dev.payload::<PciDevice>()
        .map(|p| p.function.dma_alias.rid())
}

/// A PCI device's location.
pub fn bdf_of(dev: &DeviceInfo) -> Option<Bdf> {
    dev.payload::<PciDevice>().map(|p| p.function.bdf)
}
