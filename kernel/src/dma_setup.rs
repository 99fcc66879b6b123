//! The bus model's DMA step, run at bind just before a driver's probe (`dma_configure`) and
//! undone when the probe fails or the driver unbinds (`dma_cleanup`).
//!
//! `dma_configure` reads the device's own firmware description with `firmware_dma::read`
//! (`iommus` for a platform device, the host bridge's `iommu-map` for a PCI function's requester
//! ID after DMA aliasing, its `dma-ranges` constraint, coherence, MSI doorbell and
//! `reserved-memory` regions). A device whose IOMMU has no registered instance yet
//! defers, naming the IOMMU node; one whose IOMMU node is disabled defers for good (its DMA
//! would otherwise pass untranslated). Then the IOMMU core attaches the device's default domain,
//! chosen by the user's and firmware's policy, never by the driver.
//!
//! A description that does not parse, or that the IOMMU core cannot take (an IOMMU whose
//! `#iommu-cells` is not 1), fails the bind: the device gets no DMA ops and no driver, and its
//! streams keep the ABORT entries the SMMU starts with. Nothing is guessed from a broken
//! description (Linux, for one, treats a disabled IOMMU as "no IOMMU" and gives the device
//! untranslated DMA; QEMU's SMMU then bypasses). The failure is one line, printed by the bus model
//! (`devmodel <device>: error: DMA setup with <driver> failed: <node>: <property>: <problem>;
//! device left blocked`); see `docs/robustness.md`.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use addr::{Iova, Range};
use devmodel::{BusKind, DeviceInfo, DmaHooks, DmaState, ProbeError};
use iommu::{DomainType, ReservedKind, ReservedRegion};
use kapi::logging::DevLog;
use kapi::{dev_dbg, dev_info, dev_warn};

use firmware_dma::{FirmwareDma, fail};

/// The kernel's implementation of the bus model's DMA hooks.
pub struct KernelDmaHooks;

/// Reads the device's firmware DMA description from the boot tree.
pub fn firmware_dma(
    dev: &DeviceInfo,
    ancestors: &[Arc<DeviceInfo>],
) -> Result<FirmwareDma, String> {
    let tree = of::boot_tree().ok_or("no device tree")?;
    firmware_dma::read(tree, dev, ancestors, pci_ecam::host::dma_requester_id(dev))
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
        firmware_dma::check_iommu_enabled(tree, &spec)?;
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
            // Whoever kept the ops (a stray `Arc`) can no longer start DMA with them.
            ops.revoke();
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
