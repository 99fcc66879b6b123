//! Match tables and the order drivers are tried in.

use alloc::boxed::Box;

use super::*;
use crate::fakes::FakeDma;
use crate::{DeviceInfo, DeviceState, DriverError, MatchId, PciAddress, PciIdentity, ProbeError};

fn pci_with_class(dev: u8, class: u32) -> DeviceInfo {
    DeviceInfo::pci(
        PciIdentity::new(PciAddress::new(0, 0, dev, 0), 0x1b36, 0x0010).with_class(class),
    )
}

#[test]
fn no_match_moves_on_to_the_next_matching_driver() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let picky = TestDriver::new("edu-managed", &[EDU])
        .managed()
        .probe(|_| Err(ProbeError::NoMatch));
    m.register_driver(picky.arc()).unwrap();
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    let id = m.add_device(edu_device(2)).unwrap();

    assert_eq!(m.state(id).and_then(DeviceState::driver), Some("edu"));
    let c = m.counters();
    assert_eq!((c.rejections, c.probes, c.failures), (1, 2, 0));
    // The declining driver's DMA setup was undone before the next driver's.
    assert_eq!(
        (dma.configures("0000:00:02.0"), dma.cleanups("0000:00:02.0")),
        (2, 1)
    );
    assert_eq!(dma.configured(), ["0000:00:02.0"]);
}

#[test]
fn a_driver_declining_in_accepts_costs_no_dma_setup() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(
        TestDriver::new("edu-managed", &[EDU])
            .managed()
            .only("0000:00:05.0")
            .arc(),
    )
    .unwrap();
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    let plain = m.add_device(edu_device(2)).unwrap();
    let managed = m.add_device(edu_device(5)).unwrap();
    assert_eq!(m.state(plain).and_then(DeviceState::driver), Some("edu"));
    assert_eq!(
        m.state(managed).and_then(DeviceState::driver),
        Some("edu-managed")
    );
    // One configure each, no cleanup: the managed driver never saw 00:02.0.
    assert_eq!(
        (dma.configures("0000:00:02.0"), dma.cleanups("0000:00:02.0")),
        (1, 0)
    );
    assert_eq!(
        (dma.configures("0000:00:05.0"), dma.cleanups("0000:00:05.0")),
        (1, 0)
    );
    assert_eq!(m.counters().rejections, 0);
}

#[test]
fn every_driver_declining_leaves_the_device_unbound_not_failed() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(
        TestDriver::new("edu", &[EDU])
            .probe(|_| Err(ProbeError::NoMatch))
            .arc(),
    )
    .unwrap();
    let id = m.add_device(edu_device(2)).unwrap();
    assert_eq!(m.state(id), Some(&DeviceState::Unbound));
    assert!(dma.configured().is_empty());
}

#[test]
fn failed_probe_lets_the_next_driver_try() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(
        TestDriver::new("first", &[EDU])
            .probe(|_| Err(ProbeError::failed("BAR0 too small")))
            .arc(),
    )
    .unwrap();
    m.register_driver(TestDriver::new("second", &[EDU]).arc())
        .unwrap();
    let id = m.add_device(edu_device(2)).unwrap();
    assert_eq!(m.state(id).and_then(DeviceState::driver), Some("second"));
    assert_eq!(m.counters().failures, 1);
}

#[test]
fn defer_stops_the_search_for_other_drivers() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(
        TestDriver::new("first", &[EDU])
            .probe(|_| Err(ProbeError::waiting_for("clock", "/clk@0")))
            .arc(),
    )
    .unwrap();
    m.register_driver(TestDriver::new("second", &[EDU]).arc())
        .unwrap();
    let id = m.add_device(edu_device(2)).unwrap();
    assert!(matches!(
        m.state(id),
        Some(DeviceState::Deferred {
            driver: "first",
            ..
        })
    ));
    assert_eq!(m.counters().attempts, 1);
}

#[test]
fn first_failure_is_the_one_kept() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    for (name, msg) in [("first", "one"), ("second", "two")] {
        m.register_driver(
            TestDriver::new(name, &[EDU])
                .probe(move |_| Err(ProbeError::failed(msg)))
                .arc(),
        )
        .unwrap();
    }
    let id = m.add_device(edu_device(2)).unwrap();
    assert_eq!(
        m.state(id),
        Some(&DeviceState::Failed {
            driver: "first",
            error: DriverError::new("one")
        })
    );
}

#[test]
fn pci_class_matches_under_its_mask() {
    // Any NVMe controller: base class 01 (storage), subclass 08 (NVM), any interface.
    let nvme = MatchId::PciClass {
        class: 0x01_08_00,
        mask: 0xff_ff_00,
    };
    assert!(nvme.matches(&pci_with_class(4, 0x01_08_02)));
    assert!(nvme.matches(&pci_with_class(4, 0x01_08_03)));
    assert!(
        !nvme.matches(&pci_with_class(4, 0x01_06_01)),
        "AHCI is not NVMe"
    );
    assert!(
        !nvme.matches(&smmu_device()),
        "platform devices have no class"
    );
    let any_storage = MatchId::PciClass {
        class: 0x01_00_00,
        mask: 0xff_00_00,
    };
    assert!(any_storage.matches(&pci_with_class(4, 0x01_06_01)));
    assert!(!any_storage.matches(&pci_with_class(4, 0x02_00_00)));

    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(TestDriver::new("nvme", &[nvme]).arc())
        .unwrap();
    let yes = m.add_device(pci_with_class(4, 0x01_08_02)).unwrap();
    let no = m.add_device(pci_with_class(5, 0x01_06_01)).unwrap();
    assert_eq!(m.state(yes).and_then(DeviceState::driver), Some("nvme"));
    assert_eq!(m.state(no), Some(&DeviceState::Unbound));
}

#[test]
fn compatible_and_pci_ids_match_only_their_bus() {
    let smmu = MatchId::Compatible("arm,smmu-v3");
    assert!(smmu.matches(&smmu_device()));
    assert!(!smmu.matches(&edu_device(2)));
    assert!(EDU.matches(&edu_device(2)));
    assert!(!EDU.matches(&smmu_device()));
    let other = MatchId::Pci {
        vendor: 0x1234,
        device: 0x1111,
    };
    assert!(!other.matches(&edu_device(2)));
}

#[test]
fn probe_sees_which_table_entry_matched() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let seen = Events::default();
    let s = seen.clone();
    let table = [
        MatchId::Compatible("arm,pl011"),
        MatchId::Compatible("arm,primecell"),
    ];
    m.register_driver(
        TestDriver::new("pl011", &table)
            .probe(move |ctx| {
                s.push(alloc::format!("entry {}", ctx.matched()));
                Ok(Box::new(()))
            })
            .arc(),
    )
    .unwrap();
    m.add_device(
        DeviceInfo::platform("9000000.pl011", "/pl011@9000000").with_compatible("arm,primecell"),
    )
    .unwrap();
    assert_eq!(seen.take(), ["entry 1"]);
}

#[test]
fn a_driver_override_picks_the_one_driver_that_may_bind() {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    m.register_driver(TestDriver::new("edu", &[EDU]).arc())
        .unwrap();
    m.register_driver(TestDriver::new("edu-test", &[EDU]).arc())
        .unwrap();
    let id = m.add_device(edu_device(2)).unwrap();
    assert_eq!(m.state(id).and_then(DeviceState::driver), Some("edu"));
    m.unbind(id).unwrap();
    m.set_driver_override(id, Some("edu-test")).unwrap();
    m.bind(id).unwrap();
    assert_eq!(m.state(id).and_then(DeviceState::driver), Some("edu-test"));
    m.unbind(id).unwrap();
    m.set_driver_override(id, Some("no-such-driver")).unwrap();
    m.bind(id).unwrap();
    assert_eq!(m.state(id), Some(&DeviceState::Unbound));
    m.set_driver_override(id, None).unwrap();
    m.bind(id).unwrap();
    assert_eq!(m.state(id).and_then(DeviceState::driver), Some("edu"));
}
