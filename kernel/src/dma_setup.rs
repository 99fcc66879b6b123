//! The bus model's DMA step, run at bind just before a driver's probe (`dma_configure`) and
//! undone when the probe fails or the driver unbinds (`dma_cleanup`).
//!
//! `dma_configure` reads the device's own firmware description — `iommus` for a platform device,
//! the host bridge's `iommu-map` for a PCI function's requester ID (after DMA aliasing) — plus its
//! `dma-ranges` constraint and coherence. A device whose IOMMU has no registered instance yet
//! defers, naming the IOMMU node; one whose IOMMU node is disabled defers for good (its DMA
//! would otherwise pass untranslated). Then the IOMMU core attaches the device's default domain,
//! chosen by the user's and firmware's policy, never by the driver.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use addr::{Iova, PhysAddr, Range};
use devmodel::{BusKind, DeviceInfo, DmaHooks, DmaState, ProbeError};
use iommu::{DomainType, FwSpec, ReservedKind, ReservedRegion};
use kapi::logging::DevLog;
use kapi::{dev_dbg, dev_err, dev_info};

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
    /// Ranges DMA must never be given (PCI host windows: peer-to-peer, never reach the IOMMU).
    pub holes: Vec<Range<PhysAddr>>,
}

/// The DMA state a bound device carries in devmodel's per-device slot.
#[derive(Debug)]
pub struct DeviceDma {
    /// Firmware description.
    pub firmware: FirmwareDma,
    /// What the IOMMU core attached, for devices behind an IOMMU.
    pub iommu: Option<iommu::DeviceDma>,
}

/// The kernel's implementation of the bus model's DMA hooks.
pub struct KernelDmaHooks;

fn fail(log: &DevLog, e: impl core::fmt::Display) -> ProbeError {
    dev_err!(log, "{e}; device left blocked");
    ProbeError::failed(e)
}

fn doorbell_of(tree: &of::DeviceTree<'static>, controller: &of::Node<'_>) -> Option<PhysAddr> {
    let _ = tree;
    if controller.is_compatible("arm,gic-v3-its") {
        controller
            .reg()
            .ok()?
            .first()
            .map(|r| PhysAddr(r.start.0 + GITS_TRANSLATER))
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
                    holes: Vec::new(),
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
                    let ids = entries
                        .iter()
                        .map(|e| e.args.first().copied().unwrap_or(0))
                        .collect();
                    Some(FwSpec {
                        iommu: first.target.path().to_string(),
                        ids,
                    })
                }
            };
            let msi_doorbell = node
                .msi_parents()
                .ok()
                .and_then(|p| p.first().and_then(|m| doorbell_of(tree, &m.target)));
            Ok(FirmwareDma {
                iommu,
                coherent: node.dma_coherent().map_err(|e| e.to_string())?,
                constraint: node.dma_constraint().map_err(|e| e.to_string())?,
                msi_doorbell,
                holes: Vec::new(),
            })
        }
        BusKind::Pci => {
            let host = ancestors
                .iter()
                .find_map(|a| a.node.as_deref())
                .ok_or("a PCI function without a host bridge node")?;
            let host = tree.node(host).map_err(|e| e.to_string())?;
            let rid =
                pci_ecam::host::dma_requester_id(dev).ok_or("a PCI device without its function")?;
            let iommu = host
                .iommu_for_rid(u32::from(rid))
                .map_err(|e| e.to_string())?
                .map(|(node, sid)| FwSpec {
                    iommu: node.path().to_string(),
                    ids: alloc::vec![sid],
                });
            let msi_doorbell = host.msi_map().ok().flatten().and_then(|m| {
                m.translate(u32::from(rid))
                    .and_then(|(n, _)| doorbell_of(tree, n))
            });
            let holes = host
                .pci_windows()
                .map(|ws| {
                    ws.iter()
                        .filter(|w| w.space != of::PciSpace::Config && w.space != of::PciSpace::Io)
                        .map(|w| Range::new(PhysAddr(w.pci), w.size))
                        .collect()
                })
                .unwrap_or_default();
            Ok(FirmwareDma {
                iommu,
                coherent: host.dma_coherent().map_err(|e| e.to_string())?,
                constraint: host.child_dma_constraint().map_err(|e| e.to_string())?,
                msi_doorbell,
                holes,
            })
        }
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
    r
}

impl DmaHooks for KernelDmaHooks {
    fn dma_configure(
        &mut self,
        dev: &DeviceInfo,
        ancestors: &[Arc<DeviceInfo>],
        driver_managed_dma: bool,
    ) -> Result<Option<DmaState>, ProbeError> {
        let log = DevLog::new("iommu", &dev.name);
        let fw = firmware_dma(dev, ancestors).map_err(|e| fail(&log, e))?;
        let Some(spec) = fw.iommu.clone() else {
            dev_dbg!(
                log,
                "no IOMMU: direct DMA, {}coherent",
                if fw.coherent { "" } else { "non-" }
            );
            return Ok(Some(Arc::new(DeviceDma {
                firmware: fw,
                iommu: None,
            })));
        };
        let tree = of::boot_tree().ok_or_else(|| fail(&log, "no device tree"))?;
        match tree.node(&spec.iommu).and_then(|n| n.is_enabled()) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ProbeError::Defer(
                    devmodel::DeferReason::new(format!("iommu {} is disabled", spec.iommu))
                        .on_node(&spec.iommu),
                ));
            }
            Err(e) => return Err(fail(&log, e)),
        }
        let mut core = iommu::core();
        if core.instance(&spec.iommu).is_none() {
            return Err(ProbeError::waiting_for("iommu", &spec.iommu));
        }
        let configured = core
            .configure_device(&dev.name, &spec, driver_managed_dma, &reserved_regions(&fw))
            .map_err(|e| fail(&log, e))?;
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
        drop(core);
        Ok(Some(Arc::new(DeviceDma {
            firmware: fw,
            iommu: Some(configured),
        })))
    }

    fn dma_cleanup(&mut self, dev: &DeviceInfo, state: Option<DmaState>) {
        let Some(state) = state else { return };
        let Ok(dma) = state.downcast::<DeviceDma>() else {
            return;
        };
        if dma.iommu.is_some()
            && let Err(e) = iommu::core().cleanup_device(&dev.name)
        {
            log::error!(target: "iommu", "{}: cleanup failed: {e}", dev.name);
        }
    }
}
