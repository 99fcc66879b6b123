//! Devices and drivers: platform devices from the device tree, the driver table, and the
//! end-of-boot report. The bus model itself (`devmodel`) is generic; this is the wiring.
//!
//! Like Linux, every device is created first and drivers register afterwards, in the order of
//! [`driver_table`]; binding is attempted at each registration, and a device whose IOMMU has not
//! probed yet defers until it has (see [`crate::dma_setup`]).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use devmodel::{
    DeviceInfo, DeviceManager, DeviceState, Driver, DriverData, IrqResource, IrqTrigger, MatchId,
    MmioResource, ProbeCtx, ProbeError,
};

static MANAGER: spin::Mutex<Option<DeviceManager>> = spin::Mutex::new(None);

/// Runs `f` on the device manager. Thread context only; not from inside a probe (probes get
/// their `ProbeCtx`).
pub fn with<R>(f: impl FnOnce(&mut DeviceManager) -> R) -> Option<R> {
    MANAGER.lock().as_mut().map(f)
}

/// Drivers for hardware the kernel core runs itself since boot (interrupt controller, console,
/// timer, PSCI): binding them makes the device list say so.
struct CoreDriver;

const CORE_MATCH: [MatchId; 6] = [
    MatchId::Compatible("arm,gic-v3"),
    MatchId::Compatible("arm,pl011"),
    MatchId::Compatible("arm,armv8-timer"),
    MatchId::Compatible("arm,psci-1.0"),
    MatchId::Compatible("arm,psci-0.2"),
    MatchId::Compatible("arm,psci"),
];

impl Driver for CoreDriver {
    fn name(&self) -> &'static str {
        "kernel-core"
    }
    fn match_table(&self) -> &[MatchId] {
        &CORE_MATCH
    }
    fn probe(&self, _: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        Ok(Box::new(()))
    }
}

/// Every driver, in registration order (the IOMMU driver among the first), with
/// `devmodel.register_last` applied (scenario tests use it to register the IOMMU driver after
/// its clients).
pub fn driver_table(args: &bootargs::BootArgs) -> Vec<Arc<dyn Driver>> {
    let edu = edu::EduConfig {
        dma_bits: args.edu_dma_bits,
        managed: args.edu_managed.clone(),
    };
    let mut table: Vec<Arc<dyn Driver>> = alloc::vec![
        Arc::new(CoreDriver),
        smmuv3::driver(),
        pci_ecam::driver(),
        edu::managed_driver(edu.clone()),
        edu::driver(edu),
        virtio_blk::driver(),
    ];
    for name in &args.skip_drivers {
        if !table.iter().any(|d| d.name() == name) {
            log::warn!(target: "devmodel", "devmodel.skip: no driver named `{name}`");
        }
    }
    table.retain(|d| !args.skip_drivers.iter().any(|s| s == d.name()));
    for name in args.register_last.iter() {
        if let Some(i) = table.iter().position(|d| d.name() == name) {
            let d = table.remove(i);
            table.push(d);
        } else {
            log::warn!(target: "devmodel", "devmodel.register_last: no driver named `{name}`");
        }
    }
    table
}

fn irq_resource(irq: of::GicIrq) -> IrqResource {
    let trigger = match irq.trigger {
        of::Trigger::Edge => IrqTrigger::Edge,
        of::Trigger::Level => IrqTrigger::Level,
    };
    IrqResource::new(irq.intid, trigger)
}

/// A `*-names` list, or none (said once) when it does not parse: the resources stay, unnamed.
fn names_or_none(names: Result<Vec<&str>, of::DtError>) -> Vec<&str> {
    names.unwrap_or_else(|e| {
        log::warn!(target: "devmodel", "{e} (names ignored)");
        Vec::new()
    })
}

/// A platform device for `node`, or the reason it cannot be described.
fn platform_device(node: &of::Node<'_>) -> Result<DeviceInfo, of::DtError> {
    let regs = node.reg()?;
    let name = devmodel::platform_name(node.path(), regs.first().map(|r| r.start));
    let mut info = DeviceInfo::platform(&name, node.path());
    for c in node.compatible()? {
        info = info.with_compatible(c);
    }
    let reg_names = names_or_none(node.reg_names());
    for (i, r) in regs.iter().enumerate() {
        let mut m = MmioResource::new(r.start, r.size);
        if let Some(n) = reg_names.get(i) {
            m = m.named(n);
        }
        info = info.with_mmio(m);
    }
    if node.has_property("interrupts") || node.has_property("interrupts-extended") {
        let irq_names = names_or_none(node.interrupt_names());
        for (i, irq) in node.gic_interrupts()?.into_iter().enumerate() {
            let mut r = irq_resource(irq);
            if let Some(n) = irq_names.get(i) {
                r = r.named(n);
            }
            info = info.with_irq(r);
        }
    }
    Ok(info)
}

/// Children of the root and of `simple-bus` nodes that have a `compatible`.
fn add_platform_devices(dm: &mut DeviceManager, parent: of::Node<'static>) {
    for node in parent.children() {
        if !node.has_property("compatible") {
            continue;
        }
        match node.is_enabled() {
            Ok(true) => {}
            Ok(false) => {
                dm.note_disabled_node(node.path());
                continue;
            }
            Err(e) => {
                log::error!(target: "devmodel", "{e}; no device created");
                continue;
            }
        }
        match platform_device(&node) {
            Ok(info) => {
                if let Err(e) = dm.add_device(info) {
                    log::error!(target: "devmodel", "{}: {e}", node.path());
                }
            }
            Err(e) => log::error!(target: "devmodel", "{e}; no device created"),
        }
        if node.is_compatible("simple-bus") {
            add_platform_devices(dm, node);
        }
    }
}

/// What `init` reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Devices known.
    pub devices: usize,
    /// Bound to a driver.
    pub bound: usize,
    /// Still deferred.
    pub deferred: usize,
    /// Probe failed.
    pub failed: usize,
}

/// Creates every platform device, registers every driver (binding as it goes), and reports
/// what is still deferred.
pub fn init(tree: &'static of::DeviceTree<'static>, args: &bootargs::BootArgs) -> Summary {
    let mut dm = DeviceManager::new(Box::new(crate::dma_setup::KernelDmaHooks));
    add_platform_devices(&mut dm, tree.root());
    for driver in driver_table(args) {
        if let Err(e) = dm.register_driver(driver) {
            log::error!(target: "devmodel", "{e}");
        }
        if !smmuv3::instances().is_empty() {
            crate::timeline::mark(crate::timeline::Mark::SmmuBound);
        }
    }
    dm.log_deferred_report();
    let s = summarize(&dm);
    *MANAGER.lock() = Some(dm);
    s
}

fn summarize(dm: &DeviceManager) -> Summary {
    let mut s = Summary::default();
    for id in dm.devices() {
        s.devices += 1;
        match dm.state(id) {
            Some(DeviceState::Bound { .. }) => s.bound += 1,
            Some(DeviceState::Deferred { .. }) => s.deferred += 1,
            Some(DeviceState::Failed { .. }) => s.failed += 1,
            _ => {}
        }
    }
    s
}
