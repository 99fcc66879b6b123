//! Removing devices and the children of bus drivers.

use alloc::boxed::Box;

use super::*;
use crate::fakes::FakeDma;
use crate::{DeviceInfo, DeviceState, MatchId, ProbeError};

fn logging_driver(events: &Events) -> TestDriver {
    let e = events.clone();
    TestDriver::new("node", &[MatchId::Compatible("test,node")])
        .on_remove(move |dev, _| e.push(alloc::format!("remove {}", dev.name)))
}

fn node(name: &str) -> DeviceInfo {
    DeviceInfo::platform(name, &alloc::format!("/{name}")).with_compatible("test,node")
}

#[test]
fn removing_a_parent_removes_its_children_first() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let events = Events::default();
    m.register_driver(logging_driver(&events).arc()).unwrap();
    let p = m.add_device(node("p")).unwrap();
    let c1 = m.add_device(node("c1").with_parent(p)).unwrap();
    let c2 = m.add_device(node("c2").with_parent(p)).unwrap();
    let g = m.add_device(node("g").with_parent(c1)).unwrap();
    assert_eq!(m.children(p), [c1, c2]);

    m.remove_device(p).unwrap();
    assert_eq!(
        events.take(),
        ["remove c2", "remove g", "remove c1", "remove p"]
    );
    for id in [p, c1, c2, g] {
        assert!(m.state(id).is_none(), "{id:?} still there");
    }
    assert!(dma.configured().is_empty());
    assert_eq!(m.devices().count(), 0);
}

#[test]
fn removing_a_child_leaves_the_parent() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let events = Events::default();
    m.register_driver(logging_driver(&events).arc()).unwrap();
    let p = m.add_device(node("p")).unwrap();
    let c = m.add_device(node("c").with_parent(p)).unwrap();
    m.remove_device(c).unwrap();
    assert_eq!(events.take(), ["remove c"]);
    assert!(m.children(p).is_empty());
    assert_eq!(m.state(p).and_then(DeviceState::driver), Some("node"));
}

#[test]
fn removing_a_deferred_device_takes_it_off_the_deferred_lists() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    let edu = m.add_device(edu_behind_smmu(&dma, 3)).unwrap();
    m.remove_device(edu).unwrap();
    m.register_driver(smmu_driver(&dma)).unwrap();
    m.add_device(smmu_device()).unwrap();
    assert_eq!(m.counters().retries, 0);
    assert!(m.deferred_report().is_empty());
}

#[test]
fn children_added_in_probe_are_bound_at_once_and_go_with_the_driver() {
    // A host bridge enumerates its functions in probe; unbinding it removes them (first).
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let events = Events::default();
    let e = events.clone();
    let bridge = TestDriver::new(
        "pci-host-ecam",
        &[MatchId::Compatible("pci-host-ecam-generic")],
    )
    .probe(|ctx| {
        for dev in [2, 3] {
            ctx.add_child(edu_device(dev)).map_err(ProbeError::failed)?;
        }
        let bound = ctx
            .children()
            .iter()
            .filter(|&&c| ctx.state_of(c).and_then(DeviceState::driver) == Some("edu"))
            .count();
        assert_eq!(bound, 2, "children are bound before add_child returns");
        Ok(Box::new(()))
    })
    .on_remove(move |dev, _| e.push(alloc::format!("remove {}", dev.name)));
    let e = events.clone();
    let edu = TestDriver::new("edu", &[EDU])
        .on_remove(move |dev, _| e.push(alloc::format!("remove {}", dev.name)));
    m.register_driver(edu.arc()).unwrap();
    m.register_driver(bridge.arc()).unwrap();
    let host = m
        .add_device(
            DeviceInfo::platform("4010000000.pcie", "/pcie@10000000")
                .with_compatible("pci-host-ecam-generic"),
        )
        .unwrap();
    let kids = m.children(host).to_vec();
    assert_eq!(kids.len(), 2);
    assert_eq!(m.info(kids[0]).unwrap().parent, Some(host));

    m.unbind(host).unwrap();
    assert_eq!(
        events.take(),
        [
            "remove 0000:00:03.0",
            "remove 0000:00:02.0",
            "remove 4010000000.pcie"
        ]
    );
    assert!(m.children(host).is_empty());
    assert!(m.find_by_name("0000:00:02.0").is_none());
    assert!(dma.configured().is_empty());

    // Binding again enumerates again.
    m.bind(host).unwrap();
    assert_eq!(m.children(host).len(), 2);
}

#[test]
fn children_added_by_bus_code_stay_when_the_parent_unbinds() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let events = Events::default();
    m.register_driver(logging_driver(&events).arc()).unwrap();
    let bus = m.add_device(node("bus")).unwrap();
    let c = m.add_device(node("c").with_parent(bus)).unwrap();
    m.unbind(bus).unwrap();
    assert_eq!(events.take(), ["remove bus"]);
    assert_eq!(m.state(c).and_then(DeviceState::driver), Some("node"));
}
