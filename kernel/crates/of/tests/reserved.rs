//! `memory-region` / `iommu-addresses` (reserved-memory regions for IOMMU domains) and
//! `pci_child` (a PCI function's node), with their malformed forms.

mod common;

use addr::{Iova, PhysAddr, Range};
use common::*;
use of::{DeviceTree, IommuRegionKind, Node};

/// (region path, IOVA start, size, kind) of a device's regions.
fn regions<'t>(n: &Node<'t>) -> Vec<(&'t str, u64, u64, IommuRegionKind)> {
    n.iommu_reserved_regions()
        .unwrap()
        .regions
        .iter()
        .map(|r| (r.region.path(), r.iova.start.0, r.iova.size, r.kind))
        .collect()
}

fn warnings(n: &Node<'_>) -> Vec<String> {
    n.iommu_reserved_regions()
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn direct(pa: u64) -> IommuRegionKind {
    IommuRegionKind::Direct { pa: PhysAddr(pa) }
}

#[test]
fn an_entry_equal_to_the_regions_reg_is_a_direct_mapping() {
    let dt = parse(RESERVED);
    let r = node(&dt, "/soc/dev@1000").iommu_reserved_regions().unwrap();
    let first = r.regions[0];
    assert_eq!(first.region.path(), "/reserved-memory/shared@50000000");
    assert_eq!(first.iova, Range::new(Iova(0x5000_0000), 0x1_0000));
    assert_eq!(first.kind, direct(0x5000_0000));
}

#[test]
fn every_rule_for_one_device_in_memory_region_order() {
    let dt = parse(RESERVED);
    let dev = node(&dt, "/soc/dev@1000");
    assert_eq!(
        regions(&dev),
        [
            (
                "/reserved-memory/shared@50000000",
                0x5000_0000,
                0x1_0000,
                direct(0x5000_0000)
            ),
            // No reg: a reservation.
            (
                "/reserved-memory/iova-hole",
                0x7000_0000,
                0x10_0000,
                IommuRegionKind::Reserved
            ),
            // A reg, but another start; then the same start with another size: reservations.
            (
                "/reserved-memory/mismatch@51000000",
                0x6100_0000,
                0x1000,
                IommuRegionKind::Reserved
            ),
            (
                "/reserved-memory/mismatch@51000000",
                0x5100_0000,
                0x1000,
                IommuRegionKind::Reserved
            ),
            // zero (skipped), plain (no iommu-addresses), disabled, shared again: nothing.
        ]
    );
    assert_eq!(
        warnings(&dev),
        [
            "/reserved-memory/mismatch@51000000: iommu-addresses: entry 0: IOVA [0x61000000-0x61000fff] is not the region's reg [0x51000000-0x51001fff]: only 1:1 mappings are supported, reserved instead (nothing mapped)",
            "/reserved-memory/mismatch@51000000: iommu-addresses: entry 1: IOVA [0x51000000-0x51000fff] is not the region's reg [0x51000000-0x51001fff]: only 1:1 mappings are supported, reserved instead (nothing mapped)",
            "/reserved-memory/zero@52000000: iommu-addresses: entry 0 has size 0: nothing to reserve, skipped",
        ]
    );
}

#[test]
fn entries_for_other_devices_are_stepped_over_with_their_own_cell_counts() {
    // shared's entries: `other` (1+1 cells), the PCI function (3+2), `dev` (1+1). Reading them
    // with the asking device's counts would misalign every entry after the first.
    let dt = parse(RESERVED);
    let shared = [(
        "/reserved-memory/shared@50000000",
        0x5000_0000,
        0x1_0000,
        direct(0x5000_0000),
    )];
    assert_eq!(regions(&node(&dt, "/pcie@10000000/func@3,0")), shared);
    assert_eq!(regions(&node(&dt, "/soc/dev@1000"))[..1], shared);
    // `other`'s own entry is a different range from the reg: a reservation, with a warning.
    assert_eq!(
        regions(&node(&dt, "/soc/other@2000")),
        [(
            "/reserved-memory/shared@50000000",
            0x2000,
            0x800,
            IommuRegionKind::Reserved
        )]
    );
    assert_eq!(warnings(&node(&dt, "/soc/other@2000")).len(), 1);
}

#[test]
fn bus_addresses_go_through_dma_ranges() {
    // Bus 0x20000000 behind dmabus is CPU 0x60000000: the region's reg, so 1:1.
    let dt = parse(RESERVED);
    assert_eq!(
        regions(&node(&dt, "/dmabus/behind@1000")),
        [(
            "/reserved-memory/offset@60000000",
            0x6000_0000,
            0x1000,
            direct(0x6000_0000)
        )]
    );
}

#[test]
fn devices_without_memory_region_have_none() {
    let dt = parse(RESERVED);
    let r = node(&dt, "/soc/nothing@3000")
        .iommu_reserved_regions()
        .unwrap();
    assert!(r.regions.is_empty() && r.warnings.is_empty());
    assert!(
        node(&dt, "/pcie@10000000/func@4,1")
            .memory_regions()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn malformed_descriptions_name_node_and_property() {
    let dt = parse(RESERVED);
    let err = |path: &str| message(node(&dt, path).iommu_reserved_regions());
    assert_eq!(
        err("/soc/bad-dangling@4000"),
        "/soc/bad-dangling@4000: memory-region: phandle 0xdead points nowhere"
    );
    assert_eq!(
        err("/soc/bad-empty@5000"),
        "/soc/bad-empty@5000: memory-region: is empty"
    );
    assert_eq!(
        err("/soc/bad-noaddr@7000"),
        "/reserved-memory/noaddr: iommu-addresses: missing, and the region has no reg either: nothing to map or reserve"
    );
    assert_eq!(
        err("/soc/bad-truncated@8000"),
        "/reserved-memory/truncated: iommu-addresses: entry 0 needs 2 more cells, 1 left"
    );
    assert_eq!(
        err("/soc/bad-dangling-entry@9000"),
        "/reserved-memory/dangling: iommu-addresses: phandle 0xdead points nowhere"
    );
    assert_eq!(
        err("/soc/bad-empty-entry@a000"),
        "/reserved-memory/empty: iommu-addresses: is empty"
    );
    assert_eq!(
        err("/dmabus/bad-outside@2000"),
        "/reserved-memory/outside@70000000: iommu-addresses: 0x50000000 is outside every window of /dmabus"
    );
    assert_eq!(
        err("/pcie@10000000/bad-wraps@6,0"),
        "/reserved-memory/wraps: iommu-addresses: entry 0 runs past the end of its space"
    );
}

#[test]
fn a_memory_region_that_is_not_whole_cells_is_an_error() {
    let mut w = Writer::new();
    w.begin("")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1]);
    w.begin("dev").prop("memory-region", &[0, 0, 1]).end();
    w.end();
    let blob = w.finish();
    let dt = DeviceTree::parse(&blob).unwrap();
    assert_eq!(
        message(node(&dt, "/dev").iommu_reserved_regions()),
        "/dev: memory-region: 3 bytes is not a whole number of cells"
    );
}

#[test]
fn pci_functions_are_found_by_device_and_function() {
    let dt = parse(RESERVED);
    let host = node(&dt, "/pcie@10000000");
    let find = |n: &Node<'_>, devfn: u8| n.pci_child(devfn).unwrap().map(|c| c.path().to_string());
    assert_eq!(
        find(&host, 3 << 3).as_deref(),
        Some("/pcie@10000000/func@3,0")
    );
    assert_eq!(
        find(&host, 4 << 3 | 1).as_deref(),
        Some("/pcie@10000000/func@4,1")
    );
    assert_eq!(
        find(&host, 4 << 3),
        None,
        "function 0 of device 4 is not described"
    );
    assert_eq!(
        find(&host, 5 << 3).as_deref(),
        Some("/pcie@10000000/pci@5,0")
    );
    assert_eq!(find(&host, 7 << 3), None);
    // A bridge's node without children describes none of its functions.
    assert_eq!(find(&node(&dt, "/pcie@10000000/pci@5,0"), 0), None);
    assert_eq!(
        message(node(&dt, "/pcie@20000000").pci_child(1 << 3)),
        "/pcie@20000000/broken@1,0: reg: 4 cells is not a multiple of 5"
    );
    assert_eq!(
        message(node(&dt, "/soc").pci_child(0)),
        "/soc: reg: #address-cells is 1, not a PCI bus (3)"
    );
}

#[test]
fn functions_behind_a_bridge_node_ignore_the_bus_number_in_phys_hi() {
    // dtc 1.6.1 aborts on a device node below a PCI bridge node, so this tree is written by hand:
    // host -> bridge@1,0 -> ep@0,0 with bus 1 in phys.hi (enumeration may call it bus 2).
    let mut w = Writer::new();
    w.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2]);
    w.begin("pcie")
        .cells("#address-cells", &[3])
        .cells("#size-cells", &[2]);
    w.begin("pci@1,0")
        .cells("reg", &[0x800, 0, 0, 0, 0])
        .cells("#address-cells", &[3])
        .cells("#size-cells", &[2]);
    w.begin("ep@0,0")
        .cells("reg", &[0x1_0000, 0, 0, 0, 0])
        .end();
    w.begin("ep@0,1")
        .cells("reg", &[0x1_0100, 0, 0, 0, 0])
        .end();
    w.end().end().end();
    let blob = w.finish();
    let dt = DeviceTree::parse(&blob).unwrap();
    let bridge = node(&dt, "/pcie").pci_child(1 << 3).unwrap().unwrap();
    assert_eq!(bridge.path(), "/pcie/pci@1,0");
    let ep = |devfn| {
        bridge
            .pci_child(devfn)
            .unwrap()
            .map(|n| n.path().to_string())
    };
    assert_eq!(ep(0).as_deref(), Some("/pcie/pci@1,0/ep@0,0"));
    assert_eq!(ep(1).as_deref(), Some("/pcie/pci@1,0/ep@0,1"));
    assert_eq!(ep(2), None);
}
