//! Deferred probe: parking, triggering, retrying, giving up quietly.

use alloc::boxed::Box;
use alloc::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::fakes::FakeDma;
use crate::{DeferReason, DeviceInfo, DeviceState, MatchId, ProbeError};

#[test]
fn consumer_before_provider_defers_then_binds() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    let edu = m.add_device(edu_behind_smmu(&dma, 3)).unwrap();
    assert_eq!(
        m.state(edu),
        Some(&DeviceState::Deferred {
            driver: "edu",
            reason: DeferReason::waiting_for("iommu", SMMU_NODE),
        })
    );
    assert_eq!(
        m.counters().probes,
        0,
        "a deferring dma_configure skips probe"
    );

    let smmu = m.add_device(smmu_device()).unwrap();
    m.register_driver(smmu_driver(&dma)).unwrap();

    assert_eq!(m.state(smmu).and_then(DeviceState::driver), Some("smmuv3"));
    assert_eq!(m.state(edu).and_then(DeviceState::driver), Some("edu"));
    assert!(m.deferred_report().is_empty());
    let c = m.counters();
    assert_eq!((c.defers, c.binds), (1, 2));
    assert_eq!(
        c.retries, 1,
        "the provider's bind retried the consumer once"
    );
}

#[test]
fn provider_first_binds_at_once() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(smmu_driver(&dma)).unwrap();
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    m.add_device(smmu_device()).unwrap();
    let edu = m.add_device(edu_behind_smmu(&dma, 3)).unwrap();
    assert_eq!(m.state(edu).and_then(DeviceState::driver), Some("edu"));
    let c = m.counters();
    assert_eq!((c.defers, c.retries, c.attempts, c.binds), (0, 0, 2, 2));
}

#[test]
fn missing_dependency_is_reported_not_looped_on() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    // The SMMU is described but no driver for it is ever registered.
    m.add_device(smmu_device()).unwrap();
    let edu = m.add_device(edu_behind_smmu(&dma, 3)).unwrap();
    // Unrelated binds retry the deferred device, each once, and every call returns.
    let other = TestDriver::new("widget", &[MatchId::Compatible("acme,widget")]).arc();
    m.register_driver(other).unwrap();
    for i in 0..3 {
        let name = alloc::format!("{i}.widget");
        let node = alloc::format!("/widget@{i}");
        m.add_device(DeviceInfo::platform(&name, &node).with_compatible("acme,widget"))
            .unwrap();
    }
    assert!(matches!(m.state(edu), Some(DeviceState::Deferred { .. })));
    let c = m.counters();
    assert_eq!(c.retries, 3, "one retry per bind, no more");
    assert_eq!(c.defers, 4);
    assert_eq!(c.probes, 3, "only the widgets were probed");

    let report: Vec<String> = m.deferred_report().iter().map(|l| l.to_string()).collect();
    assert_eq!(
        report,
        ["0000:00:03.0: deferred: waiting for iommu /smmuv3@9050000 (not bound: no driver)"]
    );
}

#[test]
fn bind_during_probe_retries_the_device_that_deferred_meanwhile() {
    // The bridge checks for its provider, then adds the provider as a child (bound at once,
    // which triggers deferred probing), then defers because its check came too early. The
    // trigger fired while the bridge was not yet on the pending list; it must still be retried.
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let ready = Arc::new(AtomicBool::new(false));
    let events = Events::default();

    let r = ready.clone();
    let provider =
        TestDriver::new("provider", &[MatchId::Compatible("test,provider")]).probe(move |_| {
            r.store(true, Ordering::SeqCst);
            Ok(Box::new(()))
        });
    let r = ready.clone();
    let e = events.clone();
    let bridge =
        TestDriver::new("bridge", &[MatchId::Compatible("test,bridge")]).probe(move |ctx| {
            let was_ready = r.load(Ordering::SeqCst);
            let child = DeviceInfo::platform("provider", "/bridge/provider")
                .with_compatible("test,provider");
            let id = ctx.add_child(child).map_err(ProbeError::failed)?;
            e.push(alloc::format!("bridge probe, child {id:?}"));
            if was_ready {
                Ok(Box::new(()))
            } else {
                Err(ProbeError::waiting_for("provider", "/bridge/provider"))
            }
        });
    m.register_driver(provider.arc()).unwrap();
    m.register_driver(bridge.arc()).unwrap();
    let b = m
        .add_device(DeviceInfo::platform("bridge", "/bridge").with_compatible("test,bridge"))
        .unwrap();

    assert_eq!(m.state(b).and_then(DeviceState::driver), Some("bridge"));
    let child = m.find_by_name("provider").unwrap();
    assert_eq!(m.children(b), [child]);
    assert_eq!(
        events.take(),
        ["bridge probe, child dev#1", "bridge probe, child dev#1"],
        "the retried probe gets its existing child back"
    );
    let c = m.counters();
    assert_eq!((c.probes, c.binds, c.defers, c.retries), (3, 2, 1, 1));
}

#[test]
fn child_deferred_during_probe_binds_when_its_sibling_appears() {
    // A bus driver adds two children: the first waits for the second.
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let needs = TestDriver::new("consumer", &[MatchId::Compatible("test,consumer")]).probe(|ctx| {
        let provider_bound = ctx
            .find_by_name("p")
            .and_then(|p| ctx.state_of(p))
            .and_then(DeviceState::driver)
            .is_some();
        if provider_bound {
            Ok(Box::new(()))
        } else {
            Err(ProbeError::waiting_for("provider", "/bus/p"))
        }
    });
    let bus = TestDriver::new("bus", &[MatchId::Compatible("simple-bus")]).probe(|ctx| {
        for (name, compat) in [("c", "test,consumer"), ("p", "test,provider")] {
            let node = alloc::format!("/bus/{name}");
            ctx.add_child(DeviceInfo::platform(name, &node).with_compatible(compat))
                .map_err(ProbeError::failed)?;
        }
        Ok(Box::new(()))
    });
    m.register_driver(needs.arc()).unwrap();
    m.register_driver(TestDriver::new("provider", &[MatchId::Compatible("test,provider")]).arc())
        .unwrap();
    m.register_driver(bus.arc()).unwrap();
    m.add_device(DeviceInfo::platform("bus", "/bus").with_compatible("simple-bus"))
        .unwrap();

    let c = m.find_by_name("c").unwrap();
    assert_eq!(m.state(c).and_then(DeviceState::driver), Some("consumer"));
    assert_eq!(m.counters().defers, 1);
    assert!(m.deferred_report().is_empty());
}

#[test]
fn retry_chain_runs_until_a_pass_binds_nothing() {
    // c waits for b, b waits for a (through its IOMMU-like hook), a arrives last.
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let waits = |name: &'static str, compat: &'static str, dep: &'static str| {
        TestDriver::new(name, &[MatchId::Compatible(compat)]).probe(move |ctx| {
            let up = ctx
                .find_by_node(dep)
                .and_then(|d| ctx.state_of(d))
                .and_then(DeviceState::driver)
                .is_some();
            if up {
                Ok(Box::new(()))
            } else {
                Err(ProbeError::waiting_for("supplier", dep))
            }
        })
    };
    m.register_driver(waits("c", "test,c", "/b").arc()).unwrap();
    m.register_driver(waits("b", "test,b", "/a").arc()).unwrap();
    m.register_driver(TestDriver::new("a", &[MatchId::Compatible("test,a")]).arc())
        .unwrap();
    let c = m
        .add_device(DeviceInfo::platform("c", "/c").with_compatible("test,c"))
        .unwrap();
    let b = m
        .add_device(DeviceInfo::platform("b", "/b").with_compatible("test,b"))
        .unwrap();
    assert_eq!(
        m.deferred_report()
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>(),
        [
            "c: deferred: waiting for supplier /b (deferred: waiting for supplier /a (no such device))",
            "b: deferred: waiting for supplier /a (no such device)",
        ]
    );
    m.add_device(DeviceInfo::platform("a", "/a").with_compatible("test,a"))
        .unwrap();
    assert_eq!(m.state(b).and_then(DeviceState::driver), Some("b"));
    assert_eq!(m.state(c).and_then(DeviceState::driver), Some("c"));
}

#[test]
fn pci_functions_behind_the_bridge_iommu_defer_until_it_binds() {
    // QEMU virt: the SMMU translates for the PCIe root complex (iommu-map on the host bridge
    // node), not for the host bridge itself. The bridge enumerates its functions in probe; they
    // defer in dma_configure until the SMMU's driver binds.
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let bridge = TestDriver::new(
        "pci-host-ecam",
        &[MatchId::Compatible("pci-host-ecam-generic")],
    )
    .probe(|ctx| {
        for dev in [2, 3] {
            ctx.add_child(edu_device(dev)).map_err(ProbeError::failed)?;
        }
        Ok(Box::new(()))
    });
    m.register_driver(bridge.arc()).unwrap();
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    dma.place_below("4010000000.pcie", SMMU_NODE);
    let host = m
        .add_device(
            DeviceInfo::platform("4010000000.pcie", "/pcie@10000000")
                .with_compatible("pci-host-ecam-generic"),
        )
        .unwrap();
    assert_eq!(
        m.state(host).and_then(DeviceState::driver),
        Some("pci-host-ecam")
    );
    assert_eq!(m.deferred().count(), 2);
    assert_eq!(
        m.deferred_report()[0].to_string(),
        "0000:00:02.0: deferred: waiting for iommu /smmuv3@9050000 (no such device)"
    );

    m.add_device(smmu_device()).unwrap();
    m.register_driver(smmu_driver(&dma)).unwrap();
    for &f in m.children(host) {
        assert_eq!(m.state(f).and_then(DeviceState::driver), Some("edu"));
    }
    assert!(m.deferred_report().is_empty());
}
