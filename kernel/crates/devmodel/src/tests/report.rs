//! The end-of-boot report of devices still deferred.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::*;
use crate::fakes::FakeDma;
use crate::{DeviceInfo, DeviceManager, MatchId, ProbeError};

fn lines(m: &DeviceManager) -> Vec<String> {
    m.deferred_report()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A driver for `compat` that always waits for the device at `dep`.
fn waits_on(name: &'static str, compat: &'static str, dep: &'static str) -> TestDriver {
    TestDriver::new(name, &[MatchId::Compatible(compat)])
        .probe(move |_| Err(ProbeError::waiting_for("supplier", dep)))
}

#[test]
fn a_cycle_is_reported_as_a_cycle() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(waits_on("a", "test,a", "/b").arc())
        .unwrap();
    m.register_driver(waits_on("b", "test,b", "/a").arc())
        .unwrap();
    m.add_device(DeviceInfo::platform("a.dev", "/a").with_compatible("test,a"))
        .unwrap();
    m.add_device(DeviceInfo::platform("b.dev", "/b").with_compatible("test,b"))
        .unwrap();
    assert_eq!(
        lines(&m),
        [
            "a.dev: deferred: waiting for supplier /b \
             (deferred: waiting for supplier /a (dependency cycle: a.dev -> b.dev -> a.dev))",
            "b.dev: deferred: waiting for supplier /a \
             (deferred: waiting for supplier /b (dependency cycle: b.dev -> a.dev -> b.dev))",
        ]
    );
    assert_eq!(
        m.counters().attempts,
        2,
        "a cycle is not retried: nothing ever binds"
    );
}

#[test]
fn a_device_waiting_on_a_cycle_shows_where_the_cycle_closes() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(waits_on("x", "test,x", "/a").arc())
        .unwrap();
    m.register_driver(waits_on("a", "test,a", "/b").arc())
        .unwrap();
    m.register_driver(waits_on("b", "test,b", "/a").arc())
        .unwrap();
    for (name, compat) in [("x", "test,x"), ("a", "test,a"), ("b", "test,b")] {
        m.add_device(
            DeviceInfo::platform(name, &alloc::format!("/{name}")).with_compatible(compat),
        )
        .unwrap();
    }
    assert_eq!(
        lines(&m)[0],
        "x: deferred: waiting for supplier /a (deferred: waiting for supplier /b \
         (deferred: waiting for supplier /a (dependency cycle: a -> b -> a)))"
    );
}

#[test]
fn a_self_dependency_is_a_cycle() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(waits_on("a", "test,a", "/a").arc())
        .unwrap();
    m.add_device(DeviceInfo::platform("a", "/a").with_compatible("test,a"))
        .unwrap();
    assert_eq!(
        lines(&m),
        ["a: deferred: waiting for supplier /a (dependency cycle: a -> a)"]
    );
}

#[test]
fn each_dependency_state_has_its_words() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.note_disabled_node("/disabled@0");
    m.register_driver(waits_on("c1", "test,c1", "/missing@0").arc())
        .unwrap();
    m.register_driver(waits_on("c2", "test,c2", "/disabled@0").arc())
        .unwrap();
    m.register_driver(waits_on("c3", "test,c3", "/broken@0").arc())
        .unwrap();
    m.register_driver(waits_on("c4", "test,c4", "/declined@0").arc())
        .unwrap();
    m.register_driver(waits_on("c5", "test,c5", "/bound@0").arc())
        .unwrap();
    m.register_driver(waits_on("c6", "test,c6", "/unbound@0").arc())
        .unwrap();
    m.register_driver(
        TestDriver::new("broken", &[MatchId::Compatible("test,broken")])
            .probe(|_| Err(ProbeError::failed("clock did not lock")))
            .arc(),
    )
    .unwrap();
    m.register_driver(
        TestDriver::new("picky", &[MatchId::Compatible("test,declined")])
            .probe(|_| Err(ProbeError::NoMatch))
            .arc(),
    )
    .unwrap();
    m.register_driver(
        TestDriver::new("plain", &[MatchId::Compatible("test,plain")])
            .probe(|_| Ok(Box::new(())))
            .arc(),
    )
    .unwrap();
    for (name, node, compat) in [
        ("broken", "/broken@0", "test,broken"),
        ("declined", "/declined@0", "test,declined"),
        ("bound", "/bound@0", "test,plain"),
        ("unbound", "/unbound@0", "test,plain"),
    ] {
        m.add_device(DeviceInfo::platform(name, node).with_compatible(compat))
            .unwrap();
    }
    let unbound = m.find_by_name("unbound").unwrap();
    m.unbind(unbound).unwrap();
    for i in 1..=6 {
        let name = alloc::format!("c{i}");
        let compat = alloc::format!("test,c{i}");
        m.add_device(
            DeviceInfo::platform(&name, &alloc::format!("/{name}")).with_compatible(&compat),
        )
        .unwrap();
    }
    assert_eq!(
        lines(&m),
        [
            "c1: deferred: waiting for supplier /missing@0 (no such device)",
            "c2: deferred: waiting for supplier /disabled@0 (disabled)",
            "c3: deferred: waiting for supplier /broken@0 (probe failed: clock did not lock)",
            "c4: deferred: waiting for supplier /declined@0 \
             (not bound: declined by every matching driver)",
            "c5: deferred: waiting for supplier /bound@0 (bound to plain)",
            "c6: deferred: waiting for supplier /unbound@0 (not bound: unbound on request)",
        ]
    );
}

#[test]
fn a_reason_without_a_dependency_ends_the_line() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(
        TestDriver::new("fw", &[EDU])
            .probe(|_| {
                Err(ProbeError::Defer(crate::DeferReason::new(
                    "firmware not loaded",
                )))
            })
            .arc(),
    )
    .unwrap();
    m.add_device(edu_device(2)).unwrap();
    assert_eq!(lines(&m), ["0000:00:02.0: deferred: firmware not loaded"]);
}

#[test]
fn the_iommu_chain_is_followed() {
    // The edu function waits for the SMMU, whose driver waits for a clock that does not exist.
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(
        TestDriver::new("smmuv3", &[MatchId::Compatible("arm,smmu-v3")])
            .probe(|_| Err(ProbeError::waiting_for("clock", "/apb-pclk")))
            .arc(),
    )
    .unwrap();
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    m.add_device(smmu_device()).unwrap();
    m.add_device(edu_behind_smmu(&dma, 3)).unwrap();
    assert_eq!(
        lines(&m),
        [
            "9050000.smmuv3: deferred: waiting for clock /apb-pclk (no such device)",
            "0000:00:03.0: deferred: waiting for iommu /smmuv3@9050000 \
             (deferred: waiting for clock /apb-pclk (no such device))",
        ]
    );
}
