use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use addr::{Iova, PhysAddr, Range};

use crate::fake::{EventLog, FakeIommu};
use crate::*;

fn log() -> EventLog {
    Arc::new(std::sync::Mutex::new(Vec::new()))
}

fn fw(iommu: &str, ids: &[u32]) -> FwSpec {
    FwSpec {
        iommu: iommu.to_string(),
        ids: ids.to_vec(),
    }
}

/// A core with two instances of two different driver types: `a` can bypass, `b` cannot.
fn two_instances() -> (IommuCore, Arc<FakeIommu>, Arc<FakeIommu>, EventLog) {
    let l = log();
    let a = FakeIommu::new("fake-a", "a.iommu", true, 1 << 16, l.clone());
    let b = FakeIommu::new("fake-b", "b.iommu", false, 1 << 8, l.clone());
    let mut c = IommuCore::new();
    c.register("/iommu@a", a.clone()).unwrap();
    c.register("/iommu@b", b.clone()).unwrap();
    (c, a, b, l)
}

#[test]
fn two_instances_of_different_types_serve_their_own_devices() {
    let (mut c, a, b, _) = two_instances();
    let d1 = c
        .configure_device("dev1", &fw("/iommu@a", &[0x18]), false, &[])
        .unwrap();
    let d2 = c
        .configure_device("dev2", &fw("/iommu@b", &[0x18]), false, &[])
        .unwrap();
    assert_eq!(
        (d1.domain_type, d2.domain_type),
        (DomainType::Dma, DomainType::Dma)
    );
    assert_eq!(d1.iommu, "a.iommu");
    assert_eq!(d2.iommu, "b.iommu");
    // Same ID on two IOMMUs: two groups, two domains, each on its own instance.
    assert_ne!(d1.group, d2.group);
    assert!(a.stream(0x18).starts_with("a.iommu#"));
    assert!(b.stream(0x18).starts_with("b.iommu#"));
    assert_eq!(c.stats().groups, 2);
    assert_eq!(c.stats().hw.streams_not_blocked, 2);
}

#[test]
fn an_unregistered_iommu_is_reported_so_the_bus_can_defer() {
    let (mut c, _, _, _) = two_instances();
    let e = c
        .configure_device("dev", &fw("/smmu@x", &[1]), false, &[])
        .unwrap_err();
    assert_eq!(e, IommuError::NoInstance("/smmu@x".into()));
    assert_eq!(c.stats().devices, 0);
}

#[test]
fn an_id_the_hardware_cannot_take_leaves_nothing_behind() {
    let (mut c, _, b, _) = two_instances();
    let e = c
        .configure_device("dev", &fw("/iommu@b", &[0x100]), false, &[])
        .unwrap_err();
    assert_eq!(
        e,
        IommuError::InvalidId {
            id: 0x100,
            limit: 0xff
        }
    );
    assert!(!b.is_probed(0x100));
    assert_eq!(
        c.stats(),
        Stats {
            instances: 2,
            ..Default::default()
        }
    );
}

#[test]
fn aliased_devices_share_a_group_and_a_domain_until_the_last_one_leaves() {
    let (mut c, a, _, l) = two_instances();
    let d1 = c
        .configure_device("00:01.0", &fw("/iommu@a", &[0x100]), false, &[])
        .unwrap();
    let d2 = c
        .configure_device("00:01.1", &fw("/iommu@a", &[0x100]), false, &[])
        .unwrap();
    assert_eq!(d1.group, d2.group);
    assert_eq!(
        d1.domain.as_ref().unwrap().name(),
        d2.domain.as_ref().unwrap().name()
    );
    drop((d1, d2));
    c.cleanup_device("00:01.0").unwrap();
    assert_ne!(
        a.stream(0x100),
        "blocked",
        "the other member still uses the stream"
    );
    assert!(a.is_probed(0x100));
    c.cleanup_device("00:01.1").unwrap();
    assert_eq!(a.stream(0x100), "blocked");
    assert!(!a.is_probed(0x100));
    assert_eq!(c.stats().groups, 0);
    // Blocked before the domain was dropped: the device may still be doing DMA.
    let events = l.lock().unwrap().clone();
    let blocked = events
        .iter()
        .position(|e| e.contains("attach [256] blocked"))
        .unwrap();
    let dropped = events
        .iter()
        .position(|e| e.starts_with("drop a.iommu#"))
        .unwrap();
    assert!(blocked < dropped, "{events:?}");
    assert_eq!(a.stats().domains, 0);
}

#[test]
fn passthrough_gives_identity_unless_the_iommu_cannot_bypass() {
    let (mut c, a, b, _) = two_instances();
    c.set_policy(Policy {
        passthrough: true,
        identity: vec![],
    });
    let d1 = c
        .configure_device("dev1", &fw("/iommu@a", &[1]), false, &[])
        .unwrap();
    assert_eq!(d1.domain_type, DomainType::Identity);
    assert!(d1.domain.is_none());
    assert_eq!(a.stream(1), "identity");
    let d2 = c
        .configure_device("dev2", &fw("/iommu@b", &[1]), false, &[])
        .unwrap();
    assert_eq!(d2.domain_type, DomainType::Dma, "b vetoes identity");
    assert!(d2.identity_vetoed);
    assert!(b.stream(1).starts_with("b.iommu#"));
}

#[test]
fn per_device_identity_override() {
    let (mut c, a, _, _) = two_instances();
    c.set_policy(Policy {
        passthrough: false,
        identity: vec!["0000:00:03.0".into()],
    });
    assert_eq!(
        c.configure_device("0000:00:03.0", &fw("/iommu@a", &[0x18]), false, &[])
            .unwrap()
            .domain_type,
        DomainType::Identity
    );
    assert_eq!(
        c.configure_device("0000:00:02.0", &fw("/iommu@a", &[0x10]), false, &[])
            .unwrap()
            .domain_type,
        DomainType::Dma
    );
    assert_eq!(a.stream(0x18), "identity");
}

#[test]
fn driver_managed_devices_get_no_default_domain_and_attach_their_own() {
    let (mut c, a, _, _) = two_instances();
    let d = c
        .configure_device("gpu", &fw("/iommu@a", &[7]), true, &[])
        .unwrap();
    assert_eq!(d.domain_type, DomainType::Blocked);
    assert!(d.domain.is_none());
    assert_eq!(a.stream(7), "blocked");
    let dom = c.alloc_unmanaged("gpu").unwrap();
    dom.map(Iova(0x1000), PhysAddr(0x4000_0000), 0x1000, Prot::RW)
        .unwrap();
    c.attach_unmanaged("gpu", &dom).unwrap();
    assert_eq!(a.stream(7), dom.name());
    assert_eq!(c.attached_type("gpu"), Some(DomainType::Unmanaged));
    c.detach_unmanaged("gpu").unwrap();
    assert_eq!(a.stream(7), "blocked");
    c.attach_unmanaged("gpu", &dom).unwrap();
    c.cleanup_device("gpu").unwrap();
    assert_eq!(
        a.stream(7),
        "blocked",
        "unbind blocks even with an unmanaged domain attached"
    );
    // Only the owner may attach.
    c.configure_device("nic", &fw("/iommu@a", &[8]), false, &[])
        .unwrap();
    assert!(matches!(
        c.alloc_unmanaged("nic"),
        Err(IommuError::GroupBusy { .. })
    ));
}

#[test]
fn a_driver_managed_device_cannot_share_a_group_with_kernel_managed_ones() {
    let (mut c, a, _, _) = two_instances();
    c.configure_device("f0", &fw("/iommu@a", &[0x20]), false, &[])
        .unwrap();
    assert!(matches!(
        c.configure_device("f1", &fw("/iommu@a", &[0x20]), true, &[]),
        Err(IommuError::GroupBusy { .. })
    ));
    assert_ne!(
        a.stream(0x20),
        "blocked",
        "the failed configure did not disturb f0"
    );
    c.cleanup_device("f0").unwrap();
    c.configure_device("f1", &fw("/iommu@a", &[0x20]), true, &[])
        .unwrap();
    assert!(matches!(
        c.configure_device("f0", &fw("/iommu@a", &[0x20]), false, &[]),
        Err(IommuError::GroupBusy { .. })
    ));
}

#[test]
fn the_msi_window_maps_the_doorbell_into_every_dma_domain() {
    let (mut c, _, _, _) = two_instances();
    let msi = ReservedRegion {
        range: Range::new(SW_MSI_BASE, SW_MSI_SIZE),
        kind: ReservedKind::Msi {
            doorbell: PhysAddr(0x0808_0040),
        },
    };
    let d = c
        .configure_device("dev", &fw("/iommu@a", &[3]), false, &[msi])
        .unwrap();
    let dom = d.domain.unwrap();
    assert_eq!(
        dom.iova_to_phys(Iova(0x0800_0040)),
        Some(PhysAddr(0x0808_0040))
    );
    assert_eq!(d.reserved, [msi]);
}

#[test]
fn an_instance_in_use_cannot_be_unregistered() {
    let (mut c, _, _, _) = two_instances();
    c.configure_device("dev", &fw("/iommu@a", &[3]), false, &[])
        .unwrap();
    assert_eq!(
        c.unregister("/iommu@a"),
        Err(IommuError::InUse("/iommu@a".into()))
    );
    c.cleanup_device("dev").unwrap();
    c.unregister("/iommu@a").unwrap();
    assert_eq!(
        c.unregister("/iommu@a"),
        Err(IommuError::NoInstance("/iommu@a".into()))
    );
    assert!(matches!(
        c.register("/iommu@b", FakeIommu::new("x", "x", true, 1, log())),
        Err(IommuError::AlreadyRegistered(_))
    ));
}

#[test]
fn group_ids_collect_every_member_id() {
    let (mut c, _, _, _) = two_instances();
    let g = c
        .configure_device("d1", &fw("/iommu@a", &[1, 2]), false, &[])
        .unwrap()
        .group;
    c.configure_device("d2", &fw("/iommu@a", &[2, 3]), false, &[])
        .unwrap();
    assert_eq!(c.group_ids(g).unwrap(), [1, 2, 3]);
    assert_eq!(c.group_members("d1"), ["d1", "d2"]);
}

#[test]
fn direct_regions_are_mapped_1_to_1_in_whole_pages_and_go_with_the_domain() {
    let (mut c, _, _, _) = two_instances();
    let direct = ReservedRegion {
        range: Range::new(Iova(0x5000_0800), 0x1000),
        kind: ReservedKind::Direct,
    };
    let hole = ReservedRegion {
        range: Range::new(Iova(0x7000_0000), 0x1000),
        kind: ReservedKind::Reserved,
    };
    let d = c
        .configure_device("dev", &fw("/iommu@a", &[3]), false, &[direct, hole])
        .unwrap();
    let dom = d.domain.clone().unwrap();
    // 0x800 bytes into one page, 0x800 into the next: both pages, 1:1.
    for iova in [0x5000_0000, 0x5000_0800, 0x5000_17ff, 0x5000_1fff] {
        assert_eq!(
            dom.iova_to_phys(Iova(iova)),
            Some(PhysAddr(iova)),
            "{iova:#x}"
        );
    }
    assert_eq!(dom.iova_to_phys(Iova(0x4fff_ffff)), None);
    assert_eq!(dom.iova_to_phys(Iova(0x5000_2000)), None);
    assert_eq!(
        dom.iova_to_phys(Iova(0x7000_0000)),
        None,
        "a reservation maps nothing"
    );
    assert_eq!(d.reserved, [direct, hole]);
    let weak = Arc::downgrade(&dom);
    drop((d, dom));
    c.cleanup_device("dev").unwrap();
    assert!(
        weak.upgrade().is_none(),
        "the domain (and its 1:1 mapping) outlived the device"
    );
}
