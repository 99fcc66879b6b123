//! `dma_topology`: the one-call entry point `cargo xtask dt-dma` and the fuzz target use.

mod common;

use addr::{Iova, PhysAddr};
use common::*;
use of::{BusRange, BusRanges, DmaConstraint, DmaNode, DmaTopology, DmaWindow, dma_topology};

fn topo(blob: &[u8]) -> DmaTopology {
    dma_topology(blob).unwrap_or_else(|e| panic!("{e}"))
}

fn get<'a>(t: &'a DmaTopology, path: &str) -> &'a DmaNode {
    t.node(path)
        .unwrap_or_else(|| panic!("{path} is not in the topology"))
}

fn iommus(n: &DmaNode) -> Vec<(&str, Vec<u32>)> {
    n.iommus
        .iter()
        .map(|e| (e.target.as_str(), e.args.clone()))
        .collect()
}

#[test]
fn qemu_topology_has_the_pci_host_and_every_coherent_device() {
    let t = topo(QEMU);
    assert_eq!(t.model.as_deref(), Some("linux,dummy-virt"));
    let pcie = get(&t, "/pcie@10000000");
    assert!(pcie.dma_coherent);
    assert_eq!(pcie.status, None);
    let map = pcie.iommu_map.as_ref().expect("iommu-map");
    assert_eq!(
        map.entries
            .iter()
            .map(|e| (e.rid_base, e.target.as_str(), e.target_base, e.length))
            .collect::<Vec<_>>(),
        [(0, "/smmuv3@9050000", 0, 0x1_0000)]
    );
    assert_eq!(map.mask, None);
    assert!(pcie.msi_map.is_some());
    assert_eq!(pcie.dma_ranges, BusRanges::Absent);
    assert_eq!(pcie.dma, DmaConstraint::Unrestricted);
    for path in [
        "/",
        "/fw-cfg@9020000",
        "/virtio_mmio@a000000",
        "/virtio_mmio@a003e00",
        "/smmuv3@9050000",
        "/pl011@9000000",
    ] {
        assert!(get(&t, path).dma_coherent, "{path}");
    }
    for path in [
        "/cpus/cpu@0",
        "/chosen",
        "/memory@40000000",
        "/gpio-keys/poweroff",
    ] {
        assert!(t.node(path).is_none(), "{path} is not a DMA device");
    }
    assert!(
        t.nodes.iter().all(|n| n.iommus.is_empty()),
        "QEMU has no iommus"
    );
}

#[test]
fn dma_topology_fixture_matches_the_hand_worked_expectations() {
    let t = topo(DMA_TOPOLOGY);
    assert_eq!(
        iommus(get(&t, "/soc/gpu@100000")),
        [("/iommu@1000000", vec![16]), ("/iommu@1000000", vec![17])]
    );
    assert_eq!(
        iommus(get(&t, "/soc/display@200000")),
        [("/iommu@2000000", vec![1024, 127])]
    );
    let camera = get(&t, "/soc/camera@300000");
    assert_eq!(
        iommus(camera),
        [("/iommu@3000000", vec![]), ("/iommu@1000000", vec![32])]
    );
    assert_eq!(camera.status.as_deref(), Some("disabled"));

    let pcie = get(&t, "/pcie@40000000");
    let map = pcie.iommu_map.as_ref().unwrap();
    assert_eq!(map.mask, Some(0xff07));
    assert_eq!(
        map.entries
            .iter()
            .map(|e| (e.rid_base, e.target.as_str(), e.target_base, e.length))
            .collect::<Vec<_>>(),
        [
            (0, "/iommu@1000000", 0x10000, 0x100),
            (0x100, "/iommu@2000000", 0, 0x100)
        ]
    );
    assert_eq!(
        pcie.dma_ranges.windows(),
        [BusRange {
            child: 0x0200_0000 << 64,
            parent: 0,
            size: 1 << 32
        }]
    );
    assert!(pcie.dma_coherent);

    let soc = get(&t, "/soc");
    assert_eq!(
        soc.dma_range_cells.map(|c| (c.child, c.parent, c.size)),
        Some((1, 2, 1))
    );
    assert_eq!(
        soc.child_dma.as_ref().map(|c| c.windows().to_vec()),
        Some(vec![DmaWindow {
            bus: Iova(0xc000_0000),
            cpu: PhysAddr(0),
            size: 1 << 30
        }])
    );
    assert_eq!(get(&t, "/soc/flat").dma_ranges, BusRanges::Identity);

    let dma = get(&t, "/soc/subbus/dma@400000");
    assert!(dma.dma_coherent);
    assert_eq!(
        dma.dma
            .windows()
            .iter()
            .map(|w| (w.bus.0, w.cpu.0, w.size))
            .collect::<Vec<_>>(),
        [(0, 0, 0x1000_0000), (0x2000_0000, 0x2000_0000, 0x1000_0000)]
    );
    let uart = get(&t, "/soc/flat/uart@500000");
    assert!(uart.dma_coherent);
    assert_eq!(uart.dma.bus_limit(), Some(Iova(0xffff_ffff)));
}

#[test]
fn topology_of_a_malformed_tree_is_the_first_error() {
    let e = dma_topology(MALFORMED).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/iommus-dangling: iommus: phandle 0x999 points nowhere"
    );
    assert!(dma_topology(b"not a device tree").is_err());
}

#[test]
fn topology_is_deterministic_and_in_tree_order() {
    let a = topo(DMA);
    assert_eq!(a, topo(DMA));
    let paths: Vec<&str> = a.nodes.iter().map(|n| n.path.as_str()).collect();
    let dt = parse(DMA);
    let order: Vec<&str> = dt
        .nodes()
        .map(|n| n.path())
        .filter(|p| paths.contains(p))
        .collect();
    assert_eq!(paths, order);
    assert!(
        !paths.contains(&"/plain@70000000"),
        "unrestricted, non-coherent, no DMA properties"
    );
    assert!(
        paths.contains(&"/soc/outer/inner/dev@5000"),
        "inherits coherence"
    );
}
