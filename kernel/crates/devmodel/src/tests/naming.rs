//! Device names and descriptions as bus code builds them.

use alloc::sync::Arc;

use super::*;
use crate::{BusKind, DeviceInfo, PciAddress, platform_name};
use addr::PhysAddr;

#[test]
fn pci_names_print_like_linux() {
    assert_eq!(PciAddress::new(0, 0, 2, 0).to_string(), "0000:00:02.0");
    assert_eq!(
        PciAddress::new(1, 0x1a, 0x1f, 7).to_string(),
        "0001:1a:1f.7"
    );
    assert_eq!(edu_device(3).name, "0000:00:03.0");
    assert_eq!(edu_device(3).bus, BusKind::Pci);
}

#[test]
fn pci_requester_id_packs_bus_device_function() {
    assert_eq!(PciAddress::new(0, 0, 2, 0).rid(), 0x10);
    assert_eq!(PciAddress::new(0, 1, 0x1f, 7).rid(), 0x1ff);
}

#[test]
fn platform_names_are_base_dot_node_name() {
    assert_eq!(
        platform_name("/smmuv3@9050000", Some(PhysAddr(0x905_0000))),
        "9050000.smmuv3"
    );
    assert_eq!(
        platform_name("/soc/pl011@9000000", Some(PhysAddr(0x900_0000))),
        "9000000.pl011"
    );
    assert_eq!(platform_name("/psci", None), "psci");
}

#[test]
fn named_resources_and_payload_are_found() {
    struct ConfigSpace {
        ecam_offset: u64,
    }
    let info = smmu_device().with_payload(Arc::new(ConfigSpace {
        ecam_offset: 0x8000,
    }));
    assert_eq!(info.irq_by_name("priq").map(|i| i.intid), Some(107));
    assert!(info.irq_by_name("gerror").is_none());
    assert_eq!(info.mmio[0].range.size, 0x2_0000);
    assert_eq!(
        info.payload::<ConfigSpace>().map(|c| c.ecam_offset),
        Some(0x8000)
    );
    assert!(info.payload::<u32>().is_none());
    assert!(info.payload_arc::<ConfigSpace>().is_some());
    let plain = DeviceInfo::platform("x", "/x");
    assert!(plain.payload::<ConfigSpace>().is_none());
}
