//! What the device tree says about one device's DMA, read when a driver binds: which IOMMU and
//! IDs (`iommus` for a platform device, the host bridge's `iommu-map` for a PCI function's
//! requester ID), the bus windows (`dma-ranges`), coherence, the MSI doorbell and DeviceID
//! (`msi-parent` / `msi-map`), the PCI windows DMA must never be given, and the
//! `reserved-memory` regions the device must reach.
//!
//! One place for these rules: the kernel's DMA set-up (`kernel/src/dma_setup.rs`) calls
//! [`read`] at bind, and the bus-model fuzz target runs the same code on arbitrary trees.
//!
//! A description that cannot be used is an error naming node and property; the caller fails
//! the bind with it ([`fail`]), so the device is left blocked. Nothing is guessed.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use addr::{Iova, PhysAddr, Range};
use devmodel::{BusKind, DeferReason, DeviceInfo, ProbeError};
use iommu::FwSpec;

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

/// Cells in an IOMMU specifier the IOMMU core takes: one 32-bit ID per entry (an SMMUv3
/// StreamID; the SMMUv3 binding fixes `#iommu-cells = <1>`).
const IOMMU_CELLS: u32 = 1;

/// A failed DMA set-up. The bus model logs it, once, with the device and the driver.
pub fn fail(e: impl core::fmt::Display) -> ProbeError {
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

/// The MSI doorbell of `controller`, when it is an ITS this kernel can send MSIs to.
fn doorbell_of(controller: &of::Node<'_>) -> Option<PhysAddr> {
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

/// Reads `dev`'s DMA description from `tree`. `ancestors` are the devices above it (a PCI
/// function's host bridge among them); `requester_id` is a PCI function's requester ID as the
/// IOMMU sees it, after DMA aliasing (`None` for platform devices).
pub fn read(
    tree: &of::DeviceTree<'_>,
    dev: &DeviceInfo,
    ancestors: &[Arc<DeviceInfo>],
    requester_id: Option<u16>,
) -> Result<FirmwareDma, String> {
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
                msi_doorbell: msi_parent.as_ref().and_then(|m| doorbell_of(&m.target)),
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
            let rid = requester_id.ok_or("a PCI device without its function")?;
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
            let msi_doorbell = msi_target.and_then(|(n, _)| doorbell_of(n));
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

/// Whether the IOMMU `spec` names may be waited for. A disabled IOMMU defers the device for
/// good: no driver will ever register it, and it is not "no IOMMU" either (an SMMU left alone
/// passes DMA through untranslated; QEMU's GBPA resets to bypass), so the device must not be
/// bound at all.
pub fn check_iommu_enabled(tree: &of::DeviceTree<'_>, spec: &FwSpec) -> Result<(), ProbeError> {
    match tree.node(&spec.iommu).and_then(|n| n.is_enabled()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ProbeError::Defer(DeferReason::new(format!(
            "iommu {} is disabled: device left blocked, not given untranslated DMA",
            spec.iommu
        )))),
        Err(e) => Err(fail(e)),
    }
}
