//! `iommus`, `iommu-map` / `msi-map` with masks, `msi-parent`, and their malformed forms.

mod common;

use common::*;
use of::{IdMap, Node, PhandleArgs};

fn specs<'t>(list: &[PhandleArgs<Node<'t>>]) -> Vec<(&'t str, Vec<u32>)> {
    list.iter()
        .map(|e| (e.target.path(), e.args.clone()))
        .collect()
}

#[test]
fn iommus_with_one_cell_and_several_entries() {
    let dt = parse(IOMMU);
    let gpu = node(&dt, "/soc/gpu@100000");
    assert_eq!(
        specs(&gpu.iommus().unwrap()),
        [
            ("/iommu@1000000", vec![0x10]),
            ("/iommu@1000000", vec![0x11])
        ]
    );
}

#[test]
fn iommus_with_two_cells() {
    let dt = parse(IOMMU);
    let display = node(&dt, "/soc/display@200000");
    assert_eq!(
        specs(&display.iommus().unwrap()),
        [("/iommu@2000000", vec![0x400, 0x7f])]
    );
}

#[test]
fn iommus_with_zero_cells_mixed_with_others() {
    let dt = parse(IOMMU);
    let camera = node(&dt, "/soc/camera@300000");
    assert_eq!(
        specs(&camera.iommus().unwrap()),
        [
            ("/iommu@3000000", vec![]),
            ("/iommu@1000000", vec![0x20]),
            ("/iommu@2000000", vec![1, 2]),
        ]
    );
    assert!(
        !camera.is_enabled().unwrap(),
        "status is independent of iommus"
    );
}

#[test]
fn iommus_resolve_a_legacy_linux_phandle() {
    let dt = parse(IOMMU);
    let old = node(&dt, "/soc/old@400000");
    assert_eq!(specs(&old.iommus().unwrap()), [("/iommu@4000000", vec![5])]);
    assert_eq!(node(&dt, "/iommu@4000000").phandle(), Some(0x77));
}

#[test]
fn absent_iommus_and_maps_are_empty() {
    let dt = parse(IOMMU);
    let plain = node(&dt, "/soc/plain@700000");
    assert!(plain.iommus().unwrap().is_empty());
    assert_eq!(plain.iommu_map().unwrap(), None);
    assert_eq!(plain.msi_map().unwrap(), None);
    assert!(plain.msi_parents().unwrap().is_empty());
    assert_eq!(plain.iommu_for_rid(0).unwrap(), None);
}

#[test]
fn msi_parent_uses_msi_cells_default_zero() {
    let dt = parse(IOMMU);
    let net = node(&dt, "/soc/net@500000");
    assert_eq!(
        specs(&net.msi_parents().unwrap()),
        [("/msi-controller@5000000", vec![0x30])]
    );
    let legacy = node(&dt, "/soc/legacy-msi@600000");
    assert_eq!(
        specs(&legacy.msi_parents().unwrap()),
        [("/v2m@6000000", vec![])]
    );
}

#[test]
fn iommu_map_with_mask_translates_rids() {
    let dt = parse(IOMMU);
    let pcie = node(&dt, "/pcie@40000000");
    let map = pcie.iommu_map().unwrap().expect("iommu-map");
    assert_eq!(map.mask, Some(0xfff8));
    let paths = map.map_targets(|n| n.path().to_string());
    assert_eq!(
        paths
            .entries
            .iter()
            .map(|e| (e.rid_base, e.target.as_str(), e.target_base, e.length))
            .collect::<Vec<_>>(),
        [
            (0x0, "/iommu@1000000", 0x10000, 0x100),
            (0x100, "/iommu@2000000", 0x0, 0x100)
        ]
    );
    let sid = |rid| paths.translate(rid).map(|(t, id)| (t.as_str(), id));
    assert_eq!(sid(0x0), Some(("/iommu@1000000", 0x10000)));
    assert_eq!(
        sid(0x7),
        Some(("/iommu@1000000", 0x10000)),
        "function bits masked"
    );
    assert_eq!(sid(0x8), Some(("/iommu@1000000", 0x10008)));
    assert_eq!(sid(0xff), Some(("/iommu@1000000", 0x100f8)));
    assert_eq!(sid(0x100), Some(("/iommu@2000000", 0x0)));
    assert_eq!(sid(0x1ff), Some(("/iommu@2000000", 0xf8)));
    assert_eq!(sid(0x200), None, "no entry: no IOMMU for this RID");
    assert_eq!(
        sid(0x1_0000),
        Some(("/iommu@1000000", 0x10000)),
        "bits outside the mask are dropped before the lookup"
    );
}

#[test]
fn iommu_for_rid_returns_the_iommu_node() {
    let dt = parse(IOMMU);
    let pcie = node(&dt, "/pcie@40000000");
    let (iommu, sid) = pcie.iommu_for_rid(0x10a).unwrap().expect("covered");
    assert_eq!(iommu.path(), "/iommu@2000000");
    assert_eq!(sid, 0x8);
    assert!(iommu.is_compatible("arm,mmu-500"));
}

#[test]
fn four_cell_map_entries_even_when_the_target_has_two_iommu_cells() {
    let dt = parse(IOMMU);
    let pcie = node(&dt, "/pcie@60000000");
    let map = pcie.iommu_map().unwrap().expect("iommu-map");
    assert_eq!(map.entries.len(), 1);
    assert_eq!(
        map.entries[0]
            .target
            .specifier_cells("#iommu-cells")
            .unwrap(),
        Some(2)
    );
    assert_eq!(map.mask, None);
    assert_eq!(map.effective_mask(), u32::MAX);
    let (t, id) = map.translate(0x1234).unwrap();
    assert_eq!((t.path(), id), ("/iommu@2000000", 0x800 + 0x1234));
    assert_eq!(map.translate(0x1_0000), None);
}

#[test]
fn msi_map_is_read_like_iommu_map() {
    let dt = parse(IOMMU);
    let map = node(&dt, "/pcie@40000000")
        .msi_map()
        .unwrap()
        .expect("msi-map");
    let (its, devid) = map.translate(0x0203).unwrap();
    assert_eq!(
        (its.path(), devid),
        ("/msi-controller@5000000", 0x0203),
        "no msi-map-mask"
    );
}

#[test]
fn qemu_virt_maps_every_rid_to_the_smmu_one_to_one() {
    let dt = parse(QEMU);
    let pcie = node(&dt, "/pcie@10000000");
    let map: IdMap<String> = pcie
        .iommu_map()
        .unwrap()
        .expect("iommu-map")
        .map_targets(|n| n.path().into());
    assert_eq!(map.mask, None);
    assert_eq!(map.entries.len(), 1);
    for rid in [0x0, 0x10, 0x18, 0xffff] {
        assert_eq!(
            map.translate(rid),
            Some((&"/smmuv3@9050000".to_string(), rid))
        );
    }
    assert_eq!(map.translate(0x1_0000), None);
    let msi = pcie.msi_map().unwrap().expect("msi-map");
    assert_eq!(msi.entries[0].target.path(), "/intc@8000000/its@8080000");
    assert!(node(&dt, "/pl011@9000000").iommus().unwrap().is_empty());
}

#[test]
fn malformed_iommus_name_node_and_property() {
    let dt = parse(MALFORMED);
    let err = |path: &str| message(node(&dt, path).iommus());
    assert_eq!(
        err("/iommus-dangling"),
        "/iommus-dangling: iommus: phandle 0x999 points nowhere"
    );
    assert_eq!(
        err("/iommus-nocells"),
        "/iommus-nocells: iommus: /thing@3000000 has no #iommu-cells"
    );
    assert_eq!(
        err("/iommus-short"),
        "/iommus-short: iommus: entry 1 needs 2 more cells, 1 left"
    );
    assert_eq!(
        err("/iommus-bytes"),
        "/iommus-bytes: iommus: 5 bytes is not a whole number of cells"
    );
}

#[test]
fn malformed_iommu_maps_name_node_and_property() {
    let dt = parse(MALFORMED);
    let err = |path: &str| message(node(&dt, path).iommu_map());
    assert_eq!(
        err("/map-7-cells"),
        "/map-7-cells: iommu-map: 7 cells is not a multiple of 4"
    );
    assert_eq!(
        err("/map-zero-length"),
        "/map-zero-length: iommu-map: entry 1 has size 0"
    );
    assert_eq!(
        err("/map-overlap"),
        "/map-overlap: iommu-map: entries 0 and 1 overlap"
    );
    assert_eq!(
        err("/map-dangling"),
        "/map-dangling: iommu-map: phandle 0x999 points nowhere"
    );
    assert_eq!(
        err("/map-rid-overflow"),
        "/map-rid-overflow: iommu-map: entry 0 runs past the end of its space"
    );
    assert_eq!(
        err("/map-id-overflow"),
        "/map-id-overflow: iommu-map: entry 0 runs past the end of its space"
    );
    assert_eq!(err("/map-empty"), "/map-empty: iommu-map: is empty");
    assert_eq!(
        err("/map-mask-2-cells"),
        "/map-mask-2-cells: iommu-map-mask: 2 cells where 1 are expected"
    );
    assert_eq!(
        message(node(&dt, "/msi-map-7-cells").msi_map()),
        "/msi-map-7-cells: msi-map: 7 cells is not a multiple of 4"
    );
}

#[test]
fn overlap_is_found_whatever_the_entry_order() {
    let mut w = Writer::new();
    w.begin("");
    w.begin("iommu")
        .cells("phandle", &[1])
        .cells("#iommu-cells", &[1])
        .end();
    w.begin("bus")
        .cells(
            "iommu-map",
            &[0x200, 1, 0, 0x100, 0x0, 1, 0, 0x100, 0x1ff, 1, 0, 2],
        )
        .end();
    w.end();
    let blob = w.finish();
    let dt = parse(&blob);
    assert_eq!(
        message(node(&dt, "/bus").iommu_map()),
        "/bus: iommu-map: entries 0 and 2 overlap"
    );
}
