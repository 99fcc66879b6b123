//! One bind attempt: the DMA hook around probe, probe outcomes, unbind, driver data.

use alloc::boxed::Box;
use alloc::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::fakes::{FakeDma, FakeDmaOps, HookCall};
use crate::{
    DeferReason, DeviceInfo, DeviceManager, DeviceState, DmaHooks, DmaState, DriverError,
    ModelError, ProbeError,
};

#[test]
fn probe_failure_runs_cleanup_exactly_once() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let broken =
        TestDriver::new("edu", &[EDU]).probe(|_| Err(ProbeError::failed("reset timed out")));
    m.register_driver(broken.arc()).unwrap();
    let edu = m.add_device(edu_device(2)).unwrap();

    assert_eq!(
        m.state(edu),
        Some(&DeviceState::Failed {
            driver: "edu",
            error: DriverError::new("reset timed out"),
        })
    );
    assert_eq!(
        (dma.configures("0000:00:02.0"), dma.cleanups("0000:00:02.0")),
        (1, 1)
    );
    assert!(dma.configured().is_empty(), "hooks left configured");
    assert!(m.dma_state(edu).is_none());
    let c = m.counters();
    assert_eq!((c.probes, c.failures, c.binds), (1, 1, 0));
    // A failed device is not deferred and not retried by later binds.
    m.register_driver(smmu_driver(&dma)).unwrap();
    m.add_device(smmu_device()).unwrap();
    assert_eq!(m.counters().probes, 2);
    assert!(m.deferred_report().is_empty());
}

#[test]
fn defer_in_probe_also_runs_cleanup() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let waiting = TestDriver::new("edu", &[EDU])
        .probe(|_| Err(ProbeError::Defer(DeferReason::new("firmware not loaded"))));
    m.register_driver(waiting.arc()).unwrap();
    let edu = m.add_device(edu_device(2)).unwrap();

    assert!(matches!(m.state(edu), Some(DeviceState::Deferred { .. })));
    assert_eq!(
        dma.calls(),
        [
            HookCall::Configure {
                device: "0000:00:02.0".into(),
                driver_managed_dma: false
            },
            HookCall::Cleanup {
                device: "0000:00:02.0".into()
            },
        ]
    );
    assert!(dma.configured().is_empty());
}

#[test]
fn dma_configure_defer_skips_probe_and_cleanup() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let probes = Arc::new(AtomicUsize::new(0));
    let p = probes.clone();
    let edu = TestDriver::new("edu", &[EDU]).probe(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(()))
    });
    m.register_driver(edu.arc()).unwrap();
    m.add_device(edu_behind_smmu(&dma, 2)).unwrap();
    assert_eq!(probes.load(Ordering::SeqCst), 0);
    assert_eq!(
        (dma.configures("0000:00:02.0"), dma.cleanups("0000:00:02.0")),
        (1, 0)
    );
    let c = m.counters();
    assert_eq!((c.attempts, c.probes, c.defers), (1, 0, 1));
}

#[test]
fn dma_configure_failure_skips_probe_and_fails_the_device() {
    let dma = FakeDma::new();
    dma.fail_configure("0000:00:02.0", "no stream ID for this device");
    let mut m = manager(&dma);
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    let edu = m.add_device(edu_device(2)).unwrap();
    assert_eq!(
        m.state(edu),
        Some(&DeviceState::Failed {
            driver: "edu",
            error: DriverError::new("no stream ID for this device"),
        })
    );
    assert_eq!(m.counters().probes, 0);
    assert_eq!(dma.cleanups("0000:00:02.0"), 0);
}

#[test]
fn unbind_then_rebind_drops_driver_data_and_rebinds() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let edu = TestDriver::new("edu", &[EDU]).probe(move |_| Ok(Box::new(DropCounter(d.clone()))));
    m.register_driver(edu.arc()).unwrap();
    let id = m.add_device(edu_device(2)).unwrap();
    assert!(m.driver_data::<DropCounter>(id).is_some());

    m.unbind(id).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(m.state(id), Some(&DeviceState::Unbound));
    assert!(m.driver_data::<DropCounter>(id).is_none());
    assert!(dma.configured().is_empty());
    assert_eq!(m.unbind(id), Err(ModelError::NotBound(id)));

    assert_eq!(m.bind(id), Ok(DeviceState::Bound { driver: "edu" }));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(m.reprobe(id), Ok(DeviceState::Bound { driver: "edu" }));
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(
        (dma.configures("0000:00:02.0"), dma.cleanups("0000:00:02.0")),
        (3, 2)
    );
    let c = m.counters();
    assert_eq!((c.binds, c.unbinds), (3, 2));
}

/// Hooks that log into the same event list as the driver.
struct OrderedHooks(Events);

impl DmaHooks for OrderedHooks {
    fn dma_configure(
        &mut self,
        dev: &DeviceInfo,
        _: &[Arc<DeviceInfo>],
        _: bool,
    ) -> Result<Option<DmaState>, ProbeError> {
        self.0.push(alloc::format!("configure {}", dev.name));
        Ok(None)
    }
    fn dma_cleanup(&mut self, dev: &DeviceInfo, _: Option<DmaState>) {
        self.0.push(alloc::format!("cleanup {}", dev.name));
    }
}

/// Driver data that logs its drop.
struct LoggedData(Events);

impl Drop for LoggedData {
    fn drop(&mut self) {
        self.0.push("drop data");
    }
}

#[test]
fn unbind_runs_remove_then_drops_data_then_cleans_up() {
    let events = Events::default();
    let mut m = DeviceManager::new(Box::new(OrderedHooks(events.clone())));
    let (e1, e2) = (events.clone(), events.clone());
    let edu = TestDriver::new("edu", &[EDU])
        .probe(move |ctx| {
            e1.push(alloc::format!("probe {}", ctx.device().name));
            Ok(Box::new(LoggedData(e1.clone())))
        })
        .on_remove(move |dev, _| e2.push(alloc::format!("remove {}", dev.name)));
    m.register_driver(edu.arc()).unwrap();
    let id = m.add_device(edu_device(2)).unwrap();
    m.unbind(id).unwrap();
    assert_eq!(
        events.take(),
        [
            "configure 0000:00:02.0",
            "probe 0000:00:02.0",
            "remove 0000:00:02.0",
            "drop data",
            "cleanup 0000:00:02.0",
        ]
    );
}

#[test]
fn driver_managed_dma_flag_reaches_the_hook_and_the_probe() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(smmu_driver(&dma)).unwrap();
    m.add_device(smmu_device()).unwrap();
    let seen = Events::default();
    let s = seen.clone();
    let vfio = TestDriver::new("edu-managed", &[EDU])
        .managed()
        .probe(move |ctx| {
            let ops = ctx
                .dma::<FakeDmaOps>()
                .expect("dma_configure left its state");
            s.push(alloc::format!(
                "managed={} ops.managed={}",
                ctx.driver_managed_dma(),
                ops.driver_managed_dma
            ));
            Ok(Box::new(()))
        });
    m.register_driver(vfio.arc()).unwrap();
    let id = m.add_device(edu_behind_smmu(&dma, 3)).unwrap();

    assert_eq!(seen.take(), ["managed=true ops.managed=true"]);
    assert!(dma.calls().contains(&HookCall::Configure {
        device: "0000:00:03.0".into(),
        driver_managed_dma: true,
    }));
    let state = m.dma_state(id).cloned().unwrap();
    let ops = state.downcast::<FakeDmaOps>().unwrap();
    assert_eq!(ops.iommu.as_deref(), Some(SMMU_NODE));
}

#[test]
fn driver_data_is_typed() {
    struct EduState {
        irq_count: u32,
    }
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let edu = TestDriver::new("edu", &[EDU]).probe(|_| Ok(Box::new(EduState { irq_count: 0 })));
    m.register_driver(edu.arc()).unwrap();
    let id = m.add_device(edu_device(2)).unwrap();
    m.driver_data_mut::<EduState>(id).unwrap().irq_count += 1;
    assert_eq!(m.driver_data::<EduState>(id).map(|s| s.irq_count), Some(1));
    assert!(m.driver_data::<u32>(id).is_none(), "wrong type gives None");
}

#[test]
fn duplicate_names_and_drivers_are_refused() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let first = m.add_device(edu_device(2)).unwrap();
    assert_eq!(
        m.add_device(edu_device(2)),
        Err(ModelError::DuplicateName(first))
    );
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    assert_eq!(
        m.register_driver(TestDriver::new("edu", &[]).arc()),
        Err(ModelError::DuplicateDriver("edu"))
    );
    let gone = m.add_device(edu_device(4)).unwrap();
    m.remove_device(gone).unwrap();
    assert_eq!(m.bind(gone), Err(ModelError::NoSuchDevice(gone)));
    assert_eq!(
        m.add_device(edu_device(5).with_parent(gone)),
        Err(ModelError::NoSuchDevice(gone))
    );
}

#[test]
fn manager_can_live_in_a_kernel_static() {
    // The kernel keeps it behind a lock in a static: it must be Send.
    fn assert_send<T: Send>() {}
    assert_send::<DeviceManager>();
    assert_send::<crate::DeviceInfo>();
}
