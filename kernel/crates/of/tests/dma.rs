//! `dma-ranges` (own and effective), DMA limits, coherence inheritance, and malformed forms.

mod common;

use addr::{Iova, PhysAddr};
use common::*;
use of::{BusRange, BusRanges, DmaConstraint, DmaWindow, RangeCells};

const G: u64 = 1 << 30;
const M: u64 = 1 << 20;

fn w(bus: u64, cpu: u64, size: u64) -> DmaWindow {
    DmaWindow {
        bus: Iova(bus),
        cpu: PhysAddr(cpu),
        size,
    }
}

fn windows(blob: &[u8], path: &str) -> DmaConstraint {
    let dt = parse(blob);
    node(&dt, path).dma_constraint().unwrap()
}

#[test]
fn own_dma_ranges_are_decoded_with_the_right_cells() {
    let dt = parse(DMA);
    let soc = node(&dt, "/soc");
    assert_eq!(
        soc.dma_ranges().unwrap(),
        BusRanges::Windows(vec![BusRange {
            child: 0xc000_0000,
            parent: 0,
            size: 0x4000_0000
        }])
    );
    assert_eq!(
        soc.range_cells().unwrap(),
        RangeCells {
            child: 1,
            parent: 2,
            size: 1
        }
    );
    assert_eq!(
        node(&dt, "/soc/flat").dma_ranges().unwrap(),
        BusRanges::Identity
    );
    assert_eq!(
        node(&dt, "/soc/nodr").dma_ranges().unwrap(),
        BusRanges::Absent
    );
    assert_eq!(
        node(&dt, "/soc/multi")
            .dma_ranges()
            .unwrap()
            .windows()
            .len(),
        2
    );
}

#[test]
fn pci_child_addresses_keep_all_three_cells() {
    let dt = parse(DMA);
    let pcie = node(&dt, "/pcie@40000000");
    let r = pcie.dma_ranges().unwrap();
    let w = r.windows();
    assert_eq!(w[0].child, 0x0200_0000 << 64);
    assert_eq!(w[0].child_low64(), 0);
    assert_eq!((w[0].parent, w[0].size), (0x8000_0000, 0x4000_0000));
    assert_eq!(w[1].child, (0x4300_0000u128 << 64) | 1 << 32);
    assert_eq!(w[1].child_low64(), 1 << 32);
    assert_eq!(w[1].size, 1 << 32);
}

#[test]
fn a_restricted_bus_shifts_and_limits_its_children() {
    let c = windows(DMA, "/soc/dev@1000");
    assert_eq!(c, DmaConstraint::Windows(vec![w(0xc000_0000, 0, G)]));
    assert_eq!(c.bus_limit(), Some(Iova(0xffff_ffff)));
    assert_eq!(c.cpu_to_bus(PhysAddr(0x1234)), Some(Iova(0xc000_1234)));
    assert_eq!(c.cpu_to_bus(PhysAddr(G)), None, "above the 1 GiB window");
    assert_eq!(c.bus_to_cpu(Iova(0xc000_1000)), Some(PhysAddr(0x1000)));
    assert_eq!(c.bus_to_cpu(Iova(0x1000)), None);
}

#[test]
fn multiple_windows_chain_through_the_parent_bus() {
    let c = windows(DMA, "/soc/multi/dev@2000");
    assert_eq!(
        c.windows(),
        [w(0, 0, 256 * M), w(0x2000_0000, 0x2000_0000, 256 * M)]
    );
    assert_eq!(c.bus_limit(), Some(Iova(0x2fff_ffff)));
    assert_eq!(
        c.cpu_to_bus(PhysAddr(0x1000_0000)),
        None,
        "the hole between windows"
    );
}

#[test]
fn empty_dma_ranges_is_identity_at_that_level() {
    assert_eq!(
        windows(DMA, "/soc/flat/dev@3000").windows(),
        [w(0xc000_0000, 0, G)]
    );
}

#[test]
fn absent_dma_ranges_on_the_devices_own_bus_is_skipped() {
    // Linux of_dma_get_range tolerates a missing dma-ranges on the first level.
    assert_eq!(
        windows(DMA, "/soc/nodr/dev@4000").windows(),
        [w(0xc000_0000, 0, G)]
    );
}

#[test]
fn absent_dma_ranges_higher_up_means_no_restriction() {
    // inner (empty) -> outer (absent): no translation information, 1:1 unrestricted,
    // although soc above has windows.
    let c = windows(DMA, "/soc/outer/inner/dev@5000");
    assert_eq!(c, DmaConstraint::Unrestricted);
    assert_eq!(c.bus_limit(), None);
    assert_eq!(c.cpu_to_bus(PhysAddr(0x8000_0000)), Some(Iova(0x8000_0000)));
}

#[test]
fn absent_dma_ranges_between_windowed_levels_translates_one_to_one() {
    assert_eq!(
        windows(DMA, "/soc/hole/sub/dev@6000").windows(),
        [w(0x100_0000, 0, 16 * M)]
    );
}

#[test]
fn a_window_straddling_two_parent_windows_is_split() {
    assert_eq!(
        windows(DMA, "/soc2/split/dev@100").windows(),
        [
            w(0x0800_0000, 0x8800_0000, 128 * M),
            w(0x1000_0000, 0x4000_0000, 128 * M)
        ]
    );
}

#[test]
fn a_window_partly_outside_the_parent_windows_is_clipped() {
    let c = windows(DMA, "/soc2/clipped/dev@200");
    assert_eq!(c.windows(), [w(0, 0x4800_0000, 128 * M)]);
    assert_eq!(c.bus_limit(), Some(Iova(0x07ff_ffff)));
}

#[test]
fn pci_host_windows_apply_to_its_functions() {
    let dt = parse(DMA);
    let pcie = node(&dt, "/pcie@40000000");
    assert_eq!(pcie.dma_constraint().unwrap(), DmaConstraint::Unrestricted);
    let c = pcie.child_dma_constraint().unwrap();
    assert_eq!(c.windows(), [w(0, 0x8000_0000, G), w(1 << 32, 0, 4 * G)]);
    assert_eq!(c.bus_limit(), Some(Iova(0x1_ffff_ffff)));
    assert_eq!(c.cpu_to_bus(PhysAddr(0x8000_1000)), Some(Iova(0x1000)));
    assert_eq!(c.cpu_to_bus(PhysAddr(0x1000)), Some(Iova(0x1_0000_1000)));
}

#[test]
fn no_dma_ranges_anywhere_is_unrestricted() {
    assert_eq!(windows(DMA, "/plain@70000000"), DmaConstraint::Unrestricted);
    let dt = parse(QEMU);
    for n in dt.nodes() {
        assert_eq!(
            n.dma_constraint().unwrap(),
            DmaConstraint::Unrestricted,
            "{n}"
        );
        assert_eq!(n.dma_ranges().unwrap(), BusRanges::Absent, "{n}");
    }
}

#[test]
fn root_dma_ranges_map_straight_to_cpu_addresses() {
    assert_eq!(
        windows(DMA_ROOT, "/dev@1000").windows(),
        [w(0x1000_0000, 0x8000_0000, G)]
    );
}

#[test]
fn the_shared_dma_topology_fixture_gives_the_hand_worked_windows() {
    assert_eq!(
        windows(DMA_TOPOLOGY, "/soc/gpu@100000").windows(),
        [w(0xc000_0000, 0, G)]
    );
    assert_eq!(
        windows(DMA_TOPOLOGY, "/soc/subbus/dma@400000").windows(),
        [w(0, 0, 256 * M), w(0x2000_0000, 0x2000_0000, 256 * M)]
    );
    assert_eq!(
        windows(DMA_TOPOLOGY, "/soc/flat/uart@500000").windows(),
        [w(0xc000_0000, 0, G)]
    );
    let dt = parse(DMA_TOPOLOGY);
    let pcie = node(&dt, "/pcie@40000000");
    assert_eq!(
        pcie.child_dma_constraint().unwrap().windows(),
        [w(0, 0, 4 * G)]
    );
}

#[test]
fn coherence_is_inherited_and_the_nearest_node_decides() {
    let dt = parse(DMA);
    let coherent = |p: &str| node(&dt, p).dma_coherent().unwrap();
    assert!(coherent("/soc"));
    assert!(coherent("/soc/dev@1000"), "inherited from /soc");
    assert!(coherent("/soc/multi/dev@2000"), "inherited over two levels");
    assert!(
        !coherent("/soc/noncoherent@1100"),
        "dma-noncoherent overrides"
    );
    assert!(!coherent("/plain@70000000"), "none anywhere: non-coherent");
    assert!(!coherent("/"));

    let dt = parse(DMA_TOPOLOGY);
    assert!(
        node(&dt, "/soc/gpu@100000").dma_coherent().unwrap(),
        "from the root"
    );

    let dt = parse(QEMU);
    for n in dt.nodes() {
        assert!(
            n.dma_coherent().unwrap(),
            "{n}: QEMU's root is dma-coherent"
        );
    }
}

#[test]
fn malformed_dma_ranges_name_node_and_property() {
    let dt = parse(MALFORMED);
    let err = |path: &str| message(node(&dt, path).dma_constraint());
    assert_eq!(
        err("/dma-size-zero/dev"),
        "/dma-size-zero: dma-ranges: entry 0 has size 0"
    );
    assert_eq!(
        err("/dma-5-cells/dev"),
        "/dma-5-cells: dma-ranges: 5 cells is not a multiple of 4"
    );
    assert_eq!(
        err("/dma-cpu-overflow/dev"),
        "/dma-cpu-overflow: dma-ranges: entry 0 runs past the end of its space"
    );
    assert_eq!(
        err("/dma-bus-overflow/dev"),
        "/dma-bus-overflow: dma-ranges: entry 0 runs past the end of its space"
    );
    assert_eq!(
        err("/dma-overlap/dev"),
        "/dma-overlap: dma-ranges: entries 0 and 1 overlap"
    );
    assert_eq!(
        err("/dma-outside/sub/dev"),
        "/dma-outside/sub: dma-ranges: 0x20000000 is outside every window of /dma-outside"
    );
    assert_eq!(
        err("/dma-too-wide/dev"),
        "/dma-too-wide: dma-ranges: 0x10000000000000000 does not fit in 64 bits"
    );
    assert_eq!(
        message(node(&dt, "/dma-5-cells").dma_ranges()),
        "/dma-5-cells: dma-ranges: 5 cells is not a multiple of 4"
    );
}

#[test]
fn malformed_coherence_names_node_and_property() {
    let dt = parse(MALFORMED);
    assert_eq!(
        message(node(&dt, "/coherent-both").dma_coherent()),
        "/coherent-both: dma-coherent: contradicts dma-noncoherent"
    );
    assert_eq!(
        message(node(&dt, "/coherent-value").dma_coherent()),
        "/coherent-value: dma-coherent: boolean property has a 4-byte value"
    );
}

#[test]
fn window_helpers_stay_inside_the_window() {
    let win = w(u64::MAX - 0xfff, 0x1000, 0x1000);
    assert_eq!(win.bus_last(), Iova(u64::MAX));
    assert_eq!(win.bus_to_cpu(Iova(u64::MAX)), Some(PhysAddr(0x1fff)));
    assert_eq!(win.cpu_to_bus(PhysAddr(0x2000)), None);
    assert_eq!(win.cpu_to_bus(PhysAddr(0xfff)), None);
    assert_eq!(win.bus_to_cpu(Iova(0)), None);
}

/// Found by the `dt_topology` fuzz target: a window that an upper level's overlapping
/// `dma-ranges` entries both cover was mapped twice, giving windows that overlap on the bus side
/// (a bus address with two CPU addresses).
#[test]
fn overlapping_entries_above_the_restricting_level_are_refused() {
    let mut w = Writer::new();
    w.begin("")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1]);
    w.begin("bus")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1])
        .prop("ranges", &[])
        .cells(
            "dma-ranges",
            &[
                0,
                0x8000_0000,
                0x1004_0000,
                0x1000_0000,
                0x4000_0000,
                0x1000_0000,
            ],
        );
    w.begin("sub")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1])
        .prop("ranges", &[])
        .cells("dma-ranges", &[0x0800_0000, 0x0800_0000, 0x1000_0000]);
    w.begin("dev").str("compatible", "example,dev").end();
    w.end().end().end();
    let blob = w.finish();
    let dt = parse(&blob);
    assert_eq!(
        message(node(&dt, "/bus/sub/dev").dma_constraint()),
        "/bus: dma-ranges: entries 0 and 1 overlap"
    );
    assert_eq!(
        message(of::dma_topology(&blob)),
        "/bus: dma-ranges: entries 0 and 1 overlap"
    );
}
