//! The `devmodel` driver for `arm,smmu-v3`, and the registry of bound instances.
//!
//! Probe: map the two register pages (128 KiB) of the first `reg` window, bring the SMMU up
//! ([`Smmu::bring_up`]), request its wired interrupts (`eventq` and `gerror`, or `combined`;
//! the trigger comes from the DT, edge on QEMU), enable them, enable translation, and register
//! the instance with the IOMMU core under its DT node, after which devices behind it can be
//! configured. The command-sync interrupt is not used (completion is polled) and the PRI queue
//! is not supported.
//!
//! Remove: unregister from the IOMMU core, then disable the SMMU and free everything. The core
//! refuses while any device still uses the instance; the driver cannot fail an unbind, and
//! freeing tables the SMMU still walks, or letting those devices bypass, is not an option, so
//! it logs an error and keeps the instance running for good (leaked, interrupts still handled).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use devmodel::{DeviceInfo, Driver, DriverData, IrqTrigger, MatchId, ProbeCtx, ProbeError};
use kapi::irq::{IrqHandle, IrqLine, Trigger};
use kapi::sync::IrqLock;

use crate::SmmuError;
use crate::hw::{MmioIo, REGION_SIZE};
use crate::instance::Smmu;

/// The driver, for the kernel's driver table.
pub fn driver() -> Arc<dyn Driver> {
    Arc::new(Smmuv3Driver)
}

/// Every SMMU bound to this driver, in probe order (tests find the live instance here).
pub fn instances() -> Vec<Arc<Smmu>> {
    INSTANCES.lock().clone()
}

static INSTANCES: IrqLock<Vec<Arc<Smmu>>> = IrqLock::new(Vec::new());
/// Instances whose removal was refused: kept running, with their interrupts, for good.
static KEPT: IrqLock<Vec<Bound>> = IrqLock::new(Vec::new());

const MATCH: [MatchId; 1] = [MatchId::Compatible("arm,smmu-v3")];

struct Smmuv3Driver;

/// Per-device state: the instance and its interrupt handlers.
struct Bound {
    smmu: Arc<Smmu>,
    node: String,
    irqs: Vec<IrqHandle>,
}

fn trigger(t: IrqTrigger) -> Trigger {
    match t {
        IrqTrigger::Edge => Trigger::Edge,
        IrqTrigger::Level => Trigger::Level,
    }
}

/// Installs `handler` on the interrupt named `name`, if the device has one.
fn request(
    dev: &DeviceInfo,
    smmu: &Arc<Smmu>,
    name: &str,
    handler: fn(&Smmu),
) -> Result<Option<IrqHandle>, SmmuError> {
    let Some(irq) = dev.irq_by_name(name) else {
        return Ok(None);
    };
    let line = IrqLine {
        intid: irq.intid,
        trigger: trigger(irq.trigger),
    };
    // The handler holds a weak reference: dropping the IrqHandle, not the instance, ends it.
    let weak = Arc::downgrade(smmu);
    let label = alloc::format!("smmuv3 {name}");
    let handle = kapi::irq::request(line, &label, move || {
        if let Some(smmu) = weak.upgrade() {
            handler(&smmu);
        }
    })?;
    Ok(Some(handle))
}

/// Requests the wired interrupts; returns the handles and which of eventq / gerror are served.
fn request_irqs(
    dev: &DeviceInfo,
    smmu: &Arc<Smmu>,
) -> Result<(Vec<IrqHandle>, bool, bool), SmmuError> {
    let mut handles = Vec::new();
    if let Some(h) = request(dev, smmu, "combined", Smmu::handle_combined)? {
        handles.push(h);
        return Ok((handles, true, true));
    }
    let eventq = request(dev, smmu, "eventq", Smmu::handle_eventq)?;
    let gerror = request(dev, smmu, "gerror", Smmu::handle_gerror)?;
    let served = (eventq.is_some(), gerror.is_some());
    handles.extend(eventq);
    handles.extend(gerror);
    if !served.0 || !served.1 {
        kapi::dev_warn!(
            smmu.devlog(),
            "no {} interrupt in the device tree: those reports are not delivered",
            if served.0 { "gerror" } else { "eventq" }
        );
    }
    Ok((handles, served.0, served.1))
}

fn probe(dev: &DeviceInfo) -> Result<Bound, SmmuError> {
    let node = dev.node.clone().ok_or(SmmuError::NoFirmwareNode)?;
    let window = dev.mmio.first().ok_or(SmmuError::NoRegisters)?;
    if window.range.size < REGION_SIZE {
        return Err(SmmuError::RegionTooSmall {
            size: window.range.size,
        });
    }
    let region = kapi::platform::get().map_mmio(window.range.start, REGION_SIZE)?;
    let io = MmioIo::new(&region)?;
    let smmu = Smmu::bring_up(alloc::boxed::Box::new(io), &dev.name, &node)?;
    // On any error below, dropping `smmu` (and the handles) disables it again.
    let (irqs, eventq, gerror) = request_irqs(dev, &smmu)?;
    smmu.enable_interrupts(eventq, gerror)?;
    smmu.enable_translation()?;
    iommu::core()
        .register(&node, smmu.clone())
        .map_err(|_| SmmuError::AlreadyRegistered)?;
    INSTANCES.lock().push(smmu.clone());
    Ok(Bound { smmu, node, irqs })
}

impl Driver for Smmuv3Driver {
    fn name(&self) -> &'static str {
        "smmuv3"
    }

    fn match_table(&self) -> &[MatchId] {
        &MATCH
    }

    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let bound = probe(ctx.device())?;
        Ok(alloc::boxed::Box::new(Some(bound)))
    }

    fn remove(&self, _dev: &DeviceInfo, data: &mut DriverData) {
        let Some(bound) = data.downcast_mut::<Option<Bound>>().and_then(Option::take) else {
            return;
        };
        let log = bound.smmu.devlog().clone();
        if let Err(e) = iommu::core().unregister(&bound.node) {
            kapi::dev_err!(log, "cannot be removed: {e}; left running");
            KEPT.lock().push(bound);
            return;
        }
        INSTANCES.lock().retain(|s| !Arc::ptr_eq(s, &bound.smmu));
        // Interrupt handlers first, then the hardware, then the memory (when the last
        // reference goes; domains only hold weak ones).
        let Bound { smmu, irqs, .. } = bound;
        drop(irqs);
        if let Err(e) = smmu.shutdown() {
            kapi::dev_err!(log, "disable failed: {e}");
        }
        drop(smmu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use addr::PhysAddr;
    use devmodel::{DeviceManager, DeviceState, MmioResource, NoDmaHooks};

    #[test]
    fn smmuv3_driver_matches_the_dt_compatible() {
        let d = driver();
        assert_eq!(d.name(), "smmuv3");
        let dev = DeviceInfo::platform("9050000.smmuv3", "/smmuv3@9050000")
            .with_compatible("arm,smmu-v3");
        assert!(d.match_table().iter().any(|m| m.matches(&dev)));
    }

    #[test]
    fn smmuv3_driver_refuses_devices_without_usable_registers() {
        let (_serial, _) = crate::driver_tests::serial();
        let no_reg = DeviceInfo::platform("9050000.smmuv3", "/smmuv3@9050000");
        assert!(matches!(probe(&no_reg), Err(SmmuError::NoRegisters)));
        let small = no_reg
            .clone()
            .with_mmio(MmioResource::new(PhysAddr(0x905_0000), 0x1_0000));
        assert!(matches!(
            probe(&small),
            Err(SmmuError::RegionTooSmall { size: 0x1_0000 })
        ));
        // The host platform maps no device memory: the probe fails cleanly, nothing registered.
        let unmapped = no_reg.with_mmio(MmioResource::new(PhysAddr(0x905_0000), 0x2_0000));
        assert!(matches!(probe(&unmapped), Err(SmmuError::Mmio(_))));
        assert!(instances().is_empty());
    }

    #[test]
    fn smmuv3_driver_probe_failure_is_reported_to_the_bus() {
        let (_serial, _) = crate::driver_tests::serial();
        let mut m = DeviceManager::new(alloc::boxed::Box::new(NoDmaHooks));
        m.register_driver(driver()).unwrap();
        let id = m
            .add_device(
                DeviceInfo::platform("9050000.smmuv3", "/smmuv3@9050000")
                    .with_compatible("arm,smmu-v3")
                    .with_mmio(MmioResource::new(PhysAddr(0x905_0000), 0x2_0000)),
            )
            .unwrap();
        assert!(!matches!(m.state(id), Some(DeviceState::Bound { .. })));
    }
}
