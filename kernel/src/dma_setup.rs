//! The bus model's DMA step, run at bind just before a driver's probe (`dma_configure`) and
//! undone when the probe fails or the driver unbinds (`dma_cleanup`).
//!
//! `dma_configure` reads the device's own firmware description — `iommus` for a platform device,
//! the host bridge's `iommu-map` for a PCI function's requester ID (after DMA aliasing) — plus its
//! `dma-ranges` constraint and coherence. A device whose IOMMU has no registered instance yet
//! defers, naming the IOMMU node; one whose IOMMU node is disabled defers for good (its DMA
//! would otherwise pass untranslated). Then the IOMMU core attaches the device's default domain,
//! chosen by the user's and firmware's policy, never by the driver.
//!
//! A description that does not parse, or that the IOMMU core cannot take (an IOMMU whose
//! `#iommu-cells` is not 1), fails the bind: the device gets no DMA ops and no driver, and its
//! streams keep the ABORT entries the SMMU starts with. Nothing is guessed from a broken
//! description (Linux, for one, treats a disabled IOMMU as "no IOMMU" and gives the device
//! untranslated DMA; QEMU's SMMU then bypasses). The failure is one line, printed by the bus model
//! (`devmodel <device>: warning: DMA setup with <driver> failed: <node>: <property>: <problem>;
//! device left blocked`); see `docs/robustness.md`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use addr::{Iova, PhysAddr, Range};
use devmodel::{BusKind, DeviceInfo, DmaHooks, DmaState, ProbeError};
use iommu::{DomainType, FwSpec, ReservedKind, ReservedRegion};
use kapi::logging::DevLog;
use kapi::{dev_dbg, dev_info, dev_warn};

/// GITS_TRANSLATER's offset in the ITS register frame (IHI 0069 §12.19): the MSI doorbell.
const GITS_TRANSLATER: u64 = 0x1_0040;

/// What the firmware says about a device's DMA.
#[derive(Clone, Debug)]
pub struct FirmwareDma {
    /// The IOMMU and IDs, if the device is behind one.
    pub iommu: Option<FwSpec>,
    /// `dma-coherent` (inherited).
    pub coherent: bool,
    /// Bus windows and limit from `dma-ranges`.
    pub constraint: of::DmaConstraint,
    /// Where the device's MSIs land (the interrupt controller's doorbell), if it has one.
    pub msi_doorbell: Option<PhysAddr>,
    /// The DeviceID the MSI controller knows the device by (`msi-map`), if any.
    pub msi_device_id: Option<u32>,
    /// Why the device has no MSI doorbell although the tree describes one: the `msi-map` or
    /// `msi-parent` does not parse. Not fatal (the device has INTx; an MSI write it makes anyway
    /// hits no mapping), but said once when the device binds.
    pub msi_problem: Option<of::DtError>,
    /// Ranges DMA must never be given (PCI host windows: peer-to-peer, never reach the IOMMU).
    pub holes: Vec<Range<PhysAddr>>,
    /// `reserved-memory` regions the device's `memory-region` names with `iommu-addresses`
    /// (read only behind an IOMMU: without one they mean nothing to the DMA set-up).
    pub memory_regions: Vec<MemoryRegion>,
    /// What was odd about them but not fatal (an entry skipped or downgraded to a
    /// reservation): said once when the device binds.
    pub memory_region_warnings: Vec<of::DtError>,
}

/// One IOVA range from the device's `memory-region`.
#[derive(Clone, Debug)]
pub struct MemoryRegion {
    /// The region node's path, for the log.
    pub node: String,
    /// The IOVA range.
    pub iova: Range<Iova>,
    /// Mapped 1:1 (`Direct`) or only kept out of the IOVA allocator.
    pub direct: bool,
}

/// The kernel's implementation of the bus model's DMA hooks.
pub struct KernelDmaHooks;

/// Cells in an IOMMU specifier the IOMMU core takes: one 32-bit ID per entry (an SMMUv3
/// StreamID; the SMMUv3 binding fixes `#iommu-cells = <1>`).
const IOMMU_CELLS: u32 = 1;

/// A failed DMA set-up. The bus model logs it, once, with the device and the driver.
fn fail(e: impl core::fmt::Display) -> ProbeError {
    ProbeError::failed(format!("{e}; device left blocked"))
}

/// Checks that `iommu`, named by `user`'s `property`, takes specifiers the IOMMU core can hold.
/// Without this a `#iommu-cells = <0>` IOMMU would give its masters stream 0 (another device's),
/// and a two-cell one would lose its second cell.
fn check_iommu_cells(
    iommu: &of::Node<'_>,
    user: &of::Node<'_>,
    property: &str,
) -> Result<(), String> {
    let cells = iommu
        .specifier_cells("#iommu-cells")
        .map_err(|e| e.to_string())?;
    if cells == Some(IOMMU_CELLS) {
        return Ok(());
    }
    let found = match cells {
        Some(n) => format!("{n} cells where {IOMMU_CELLS} is expected (a stream ID)"),
        None => String::from("missing"),
    };
    Err(format!(
        "{}: #iommu-cells: {found}, as used by {}: {property}",
        iommu.path(),
        user.path()
    ))
}

fn doorbell_of(tree: &of::DeviceTree<'static>, controller: &of::Node<'_>) -> Option<PhysAddr> {
    let _ = tree;
    if controller.is_compatible("arm,gic-v3-its") {
        controller
            .reg()
            .ok()?
            .first()
            // A `reg` at the very top of the address space has no doorbell inside it.
            .and_then(|r| r.start.0.checked_add(GITS_TRANSLATER).map(PhysAddr))
    } else {
        None
    }
}

/// Reads the device's firmware DMA description.
pub fn firmware_dma(
    dev: &DeviceInfo,
    ancestors: &[Arc<DeviceInfo>],
) -> Result<FirmwareDma, String> {
    let tree = of::boot_tree().ok_or("no device tree")?;
    match dev.bus {
        BusKind::Platform => {
            let Some(path) = dev.node.as_deref() else {
                return Ok(FirmwareDma {
                    iommu: None,
                    coherent: false,
                    constraint: of::DmaConstraint::Unrestricted,
                    msi_doorbell: None,
                    msi_device_id: None,
                    msi_problem: None,
                    holes: Vec::new(),
                    memory_regions: Vec::new(),
                    memory_region_warnings: Vec::new(),
                });
            };
            let node = tree.node(path).map_err(|e| e.to_string())?;
            let entries = node.iommus().map_err(|e| e.to_string())?;
            let iommu = match entries.first() {
                None => None,
                Some(first) => {
                    if entries
                        .iter()
                        .any(|e| e.target.path() != first.target.path())
                    {
                        return Err(format!(
                            "{path}: iommus: entries name different IOMMUs, which is not supported"
                        ));
                    }
                    check_iommu_cells(&first.target, &node, "iommus")?;
                    // One cell per entry, as just checked.
                    let ids = entries
                        .iter()
                        .flat_map(|e| e.args.first().copied())
                        .collect();
                    Some(FwSpec {
                        iommu: first.target.path().to_string(),
                        ids,
                    })
                }
            };
            let (msi_parents, msi_problem) = match node.msi_parents() {
                Ok(p) => (p, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            let msi_parent = msi_parents.into_iter().next();
            let (memory_regions, memory_region_warnings) = match &iommu {
                Some(_) => memory_regions(&node)?,
                None => (Vec::new(), Vec::new()),
            };
            Ok(FirmwareDma {
                iommu,
                coherent: node.dma_coherent().map_err(|e| e.to_string())?,
                constraint: node.dma_constraint().map_err(|e| e.to_string())?,
                msi_doorbell: msi_parent
                    .as_ref()
                    .and_then(|m| doorbell_of(tree, &m.target)),
                msi_device_id: msi_parent.and_then(|m| m.args.first().copied()),
                msi_problem,
                holes: Vec::new(),
                memory_regions,
                memory_region_warnings,
            })
        }
        BusKind::Pci => {
            // The nearest platform ancestor: bridges above the function may have nodes too.
            let host = ancestors
                .iter()
                .filter(|a| a.bus == BusKind::Platform)
                .find_map(|a| a.node.as_deref())
                .ok_or("a PCI function without a host bridge node")?;
            let host = tree.node(host).map_err(|e| e.to_string())?;
            let rid =
                pci_ecam::host::dma_requester_id(dev).ok_or("a PCI device without its function")?;
            let iommu = match host
                .iommu_for_rid(u32::from(rid))
                .map_err(|e| e.to_string())?
            {
                Some((node, sid)) => {
                    check_iommu_cells(&node, &host, "iommu-map")?;
                    Some(FwSpec {
                        iommu: node.path().to_string(),
                        ids: alloc::vec![sid],
                    })
                }
                None => None,
            };
            // MSIs carry the same requester ID as DMA (QEMU: pci_requester_id, after aliasing).
            let (msi, msi_problem) = match host.msi_map() {
                Ok(m) => (m, None),
                Err(e) => (None, Some(e)),
            };
            let msi_target = msi.as_ref().and_then(|m| m.translate(u32::from(rid)));
            let msi_doorbell = msi_target.and_then(|(n, _)| doorbell_of(tree, n));
            let msi_device_id = msi_target.map(|(_, id)| id);
            let holes = host
                .pci_windows()
                .map(|ws| {
                    ws.iter()
                        .filter(|w| w.space != of::PciSpace::Config && w.space != of::PciSpace::Io)
                        .map(|w| Range::new(PhysAddr(w.pci), w.size))
                        .collect()
                })
                .unwrap_or_default();
            // The function's own node (found by `pci-ecam` under the host bridge), if any.
            let (memory_regions, memory_region_warnings) = match (&iommu, dev.node.as_deref()) {
                (Some(_), Some(path)) => {
                    memory_regions(&tree.node(path).map_err(|e| e.to_string())?)?
                }
                _ => (Vec::new(), Vec::new()),
            };
            Ok(FirmwareDma {
                iommu,
                coherent: host.dma_coherent().map_err(|e| e.to_string())?,
                constraint: host.child_dma_constraint().map_err(|e| e.to_string())?,
                msi_doorbell,
                msi_device_id,
                msi_problem,
                holes,
                memory_regions,
                memory_region_warnings,
            })
        }
    }
}

/// The device's `memory-region` ranges for its IOMMU domains. A description that does not parse
/// fails the DMA set-up, as every other broken DMA description does: binding without the
/// region could hand its IOVAs to buffers, or leave a device that must reach firmware-owned
/// memory unable to.
fn memory_regions(node: &of::Node<'_>) -> Result<(Vec<MemoryRegion>, Vec<of::DtError>), String> {
    let r = node.iommu_reserved_regions().map_err(|e| e.to_string())?;
    let regions = r
        .regions
        .iter()
        .map(|m| MemoryRegion {
            node: m.region.path().to_string(),
            iova: m.iova,
            direct: matches!(m.kind, of::IommuRegionKind::Direct { .. }),
        })
        .collect();
    Ok((regions, r.warnings))
}

/// One line per `memory-region` range a translated domain of the device has.
fn report_memory_regions(log: &DevLog, fw: &FirmwareDma) {
    for m in &fw.memory_regions {
        let (first, last) = (m.iova.start.0, m.iova.start.0 + (m.iova.size - 1));
        if m.direct {
            dev_info!(
                log,
                "reserved-memory {} mapped 1:1 [{first:#x}-{last:#x}]",
                m.node
            );
        } else {
            dev_info!(
                log,
                "reserved-memory {} reserves IOVA [{first:#x}-{last:#x}] (nothing mapped)",
                m.node
            );
        }
    }
}

fn report_msi_problem(log: &DevLog, dev: &DeviceInfo, fw: &FirmwareDma) {
    if let Some(e) = &fw.msi_problem {
        let wired = match dev.bus {
            BusKind::Pci => "INTx",
            BusKind::Platform => "wired interrupts",
        };
        dev_warn!(log, "{e}; no MSIs for this device ({wired} only)");
    }
}

/// The regions every DMA domain of this device needs.
fn reserved_regions(fw: &FirmwareDma) -> Vec<ReservedRegion> {
    let mut r = Vec::new();
    if let Some(doorbell) = fw.msi_doorbell {
        r.push(ReservedRegion {
            range: Range::new(iommu::SW_MSI_BASE, iommu::SW_MSI_SIZE),
            kind: ReservedKind::Msi { doorbell },
        });
    }
    for h in &fw.holes {
        r.push(ReservedRegion {
            range: Range::new(Iova(h.start.0), h.size),
            kind: ReservedKind::Reserved,
        });
    }
    for m in &fw.memory_regions {
        r.push(ReservedRegion {
            range: m.iova,
            kind: if m.direct {
                ReservedKind::Direct
            } else {
                ReservedKind::Reserved
            },
        });
    }
    r
}

/// DMA settings from the boot arguments, and the bounce pool.
struct Settings {
    strict: bool,
    debug: bool,
    bounce: Option<Arc<dma::BouncePool>>,
}

static SETTINGS: spin::Once<Settings> = spin::Once::new();

/// Size of the bounce pool allocated at boot.
const BOUNCE_POOL_ORDER: u32 = 10; // 4 MiB

/// Reads the DMA boot arguments and allocates the bounce pool. Call once, before devices bind.
pub fn init(args: &bootargs::BootArgs) {
    // Not cleared: every slot is written before a device sees it (see `dma::BouncePool`).
    let bounce = kapi::dma_mem::Frames::alloc_unzeroed(BOUNCE_POOL_ORDER)
        .and_then(|f| dma::BouncePool::new(f).ok())
        .map(Arc::new);
    match &bounce {
        Some(p) => {
            log::info!(target: "dma", "bounce pool [{:#x}-{:#x}], {} invalidation, debug checks {}",
            p.range().start.0, p.range().start.0 + p.range().size - 1,
            if args.iommu_strict.unwrap_or(true) { "strict" } else { "lazy" },
            if args.dma_debug { "on" } else { "off" })
        }
        None => {
            log::warn!(target: "dma", "no memory for a bounce pool: out-of-reach buffers will be refused")
        }
    }
    SETTINGS.call_once(|| Settings {
        strict: args.iommu_strict.unwrap_or(true),
        debug: args.dma_debug,
        bounce,
    });
}

fn settings() -> &'static Settings {
    SETTINGS.call_once(|| Settings {
        strict: true,
        debug: true,
        bounce: None,
    })
}

fn bus_map(c: &of::DmaConstraint) -> dma::BusMap {
    dma::BusMap {
        windows: c
            .windows()
            .iter()
            .map(|w| dma::DmaWindow {
                bus: w.bus.0,
                cpu: w.cpu.0,
                size: w.size,
            })
            .collect(),
    }
}

/// The device's DMA ops for what the IOMMU core attached (or for no IOMMU at all).
fn dma_device(
    dev: &DeviceInfo,
    fw: &FirmwareDma,
    attached: Option<&iommu::DeviceDma>,
) -> Result<Arc<dma::DmaDevice>, dma::DmaError> {
    let s = settings();
    let bus = bus_map(&fw.constraint);
    let builder = match attached {
        Some(a) => match (a.domain_type, &a.domain) {
            (DomainType::Dma, Some(domain)) => {
                let d = dma::IommuDma::for_domain(domain, &a.reserved, &bus, s.strict)?;
                dma::DmaDeviceBuilder::iommu(&dev.name, d)
            }
            (DomainType::Identity, _) => dma::DmaDeviceBuilder::direct(&dev.name, s.bounce.clone()),
            _ => dma::DmaDeviceBuilder::blocked(
                &dev.name,
                "the driver manages the device's IOMMU domain itself",
            ),
        },
        None => dma::DmaDeviceBuilder::direct(&dev.name, s.bounce.clone()),
    };
    let mut builder = builder.coherent(fw.coherent).bus(bus).debug(s.debug);
    if let (Some(doorbell), Some(id)) = (fw.msi_doorbell, fw.msi_device_id) {
        builder = builder.msi(doorbell, id);
    }
    Ok(builder.build())
}

impl DmaHooks for KernelDmaHooks {
    fn dma_configure(
        &mut self,
        dev: &DeviceInfo,
        ancestors: &[Arc<DeviceInfo>],
        driver_managed_dma: bool,
    ) -> Result<Option<DmaState>, ProbeError> {
        let log = DevLog::new("iommu", &dev.name);
        let fw = firmware_dma(dev, ancestors).map_err(fail)?;
        let Some(spec) = fw.iommu.clone() else {
            dev_dbg!(
                log,
                "no IOMMU: direct DMA, {}coherent",
                if fw.coherent { "" } else { "non-" }
            );
            let ops = dma_device(dev, &fw, None).map_err(fail)?;
            report_msi_problem(&log, dev, &fw);
            return Ok(Some(ops));
        };
        let tree = of::boot_tree().ok_or_else(|| fail("no device tree"))?;
        match tree.node(&spec.iommu).and_then(|n| n.is_enabled()) {
            Ok(true) => {}
            // Deferred for good: no driver will ever register a disabled IOMMU. Not "no IOMMU"
            // either: an SMMU left alone passes DMA through untranslated (QEMU's GBPA resets to
            // bypass), so the device must not be bound at all.
            Ok(false) => {
                return Err(ProbeError::Defer(devmodel::DeferReason::new(format!(
                    "iommu {} is disabled: device left blocked, not given untranslated DMA",
                    spec.iommu
                ))));
            }
            Err(e) => return Err(fail(e)),
        }
        let mut core = iommu::core();
        if core.instance(&spec.iommu).is_none() {
            return Err(ProbeError::waiting_for("iommu", &spec.iommu));
        }
        for w in &fw.memory_region_warnings {
            dev_warn!(log, "{w}");
        }
        let configured = core
            .configure_device(&dev.name, &spec, driver_managed_dma, &reserved_regions(&fw))
            .map_err(fail)?;
        let ids: Vec<String> = spec.ids.iter().map(|id| format!("{id:#x}")).collect();
        let domain = match (configured.domain_type, &configured.domain) {
            (DomainType::Dma, Some(d)) => format!("DMA domain ({})", d.name()),
            (DomainType::Blocked, _) if driver_managed_dma => {
                String::from("no default domain (driver-managed DMA)")
            }
            (t, _) => format!("{t} domain"),
        };
        let veto = if configured.identity_vetoed {
            " (identity requested, the IOMMU cannot bypass)"
        } else {
            ""
        };
        dev_info!(
            log,
            "group {}, {domain}{veto}, stream {} on {}",
            configured.group.0,
            ids.join(","),
            configured.iommu
        );
        match dma_device(dev, &fw, Some(&configured)) {
            Ok(ops) => {
                if configured.domain_type == DomainType::Dma {
                    report_memory_regions(&log, &fw);
                }
                report_msi_problem(&log, dev, &fw);
                Ok(Some(ops))
            }
            Err(e) => {
                // Nothing of the set-up may stay behind: back to blocked.
                let _ = core.cleanup_device(&dev.name);
                Err(fail(e))
            }
        }
    }

    fn dma_cleanup(&mut self, dev: &DeviceInfo, state: Option<DmaState>) {
        if let Some(ops) = state.and_then(|s| s.downcast::<dma::DmaDevice>().ok()) {
            ops.report_leftovers();
        }
        // Blocked before anything the device used is released.
        let mut core = iommu::core();
        if core.group_of(&dev.name).is_some()
            && let Err(e) = core.cleanup_device(&dev.name)
        {
            log::error!(target: "iommu", "{}: cleanup failed: {e}", dev.name);
        }
    }
}
