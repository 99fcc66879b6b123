//! The harness on the committed device trees: every target accepts them, and the bus model
//! really gets as far as binding devices behind the SMMU (a harness that stops early would
//! fuzz nothing).

use crate::bus::firmware::{Found, platform_devices};
use crate::{bus, topology};

const QEMU: &[u8] = include_bytes!("../../../../../qemu/fixtures/default.dtb");
const QEMU_EL2: &[u8] = include_bytes!("../../../../../qemu/fixtures/el2.dtb");
const FIXTURES: &[(&str, &[u8])] = &[
    ("qemu default", QEMU),
    ("qemu el2", QEMU_EL2),
    ("iommu", include_bytes!("../../tests/fixtures/iommu.dtb")),
    ("dma", include_bytes!("../../tests/fixtures/dma.dtb")),
    (
        "dma-root",
        include_bytes!("../../tests/fixtures/dma-root.dtb"),
    ),
    (
        "dma-topology",
        include_bytes!("../../tests/fixtures/dma-topology.dtb"),
    ),
    ("bus", include_bytes!("../../tests/fixtures/bus.dtb")),
    (
        "malformed",
        include_bytes!("../../tests/fixtures/malformed.dtb"),
    ),
];

/// The QEMU blob followed by control bytes.
fn qemu_with(control: &[u8]) -> Vec<u8> {
    let mut input = QEMU.to_vec();
    input.extend_from_slice(control);
    input
}

/// Index of the device named `name` in the walk (its fate byte's position).
fn device_index(name: &str) -> usize {
    let dt = of::DeviceTree::parse(QEMU).unwrap();
    platform_devices(&dt)
        .iter()
        .filter_map(|f| match f {
            Found::Device(info) => Some(info.name.as_str()),
            Found::Disabled(_) => None,
        })
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no device {name}"))
}

#[test]
fn every_fixture_passes_both_targets() {
    for (name, blob) in FIXTURES {
        topology::check(blob);
        let outcome = bus::run(blob);
        assert!(
            outcome.is_some() || *name == "malformed",
            "{name}: the bus target gave up on a good tree"
        );
    }
}

#[test]
fn qemu_tree_binds_the_smmu_the_host_bridge_and_functions_behind_the_smmu() {
    let outcome = bus::run(QEMU).unwrap();
    for expected in [
        "9050000.smmuv3=iommu",
        "4010000000.pcie=pci-host",
        "9000000.pl011=generic",
        "0000:00:01.0=pci-managed",
        "0000:00:02.0=pci-fn",
    ] {
        assert!(
            outcome.bound.iter().any(|b| b == expected),
            "{expected} missing from {:?}",
            outcome.bound
        );
    }
    assert!(outcome.report.is_empty(), "{:?}", outcome.report);
}

#[test]
fn a_failing_smmu_leaves_its_pci_functions_deferred_in_the_report() {
    let mut control = vec![0; 64];
    control[device_index("9050000.smmuv3")] = 13;
    let outcome = bus::run(&qemu_with(&control)).unwrap();
    assert!(
        outcome
            .bound
            .iter()
            .any(|b| b == "4010000000.pcie=pci-host")
    );
    assert!(
        !outcome
            .bound
            .iter()
            .any(|b| b.starts_with("9050000.smmuv3"))
    );
    assert_eq!(
        outcome.report,
        [
            "0000:00:01.0: deferred: waiting for iommu /smmuv3@9050000 (probe failed: iommu \
             refuses 9050000.smmuv3)",
            "0000:00:02.0: deferred: waiting for iommu /smmuv3@9050000 (probe failed: iommu \
             refuses 9050000.smmuv3)",
        ]
    );
}

#[test]
fn drivers_registered_first_and_in_reverse_bind_the_same_platform_devices() {
    let platform = |bound: &[String]| -> Vec<String> {
        bound
            .iter()
            .filter(|b| !b.starts_with("0000:"))
            .cloned()
            .collect()
    };
    let dt = of::DeviceTree::parse(QEMU).unwrap();
    let walk = platform_devices(&dt).len();
    assert!(walk < 256);
    let default = bus::run(QEMU).unwrap();
    let names = ["iommu", "pci-host", "generic", "pci-managed", "pci-fn"];
    let kernel_order: Vec<(&str, usize)> = names.iter().map(|&n| (n, walk)).collect();
    assert_eq!(default.registered, kernel_order, "without control bytes");
    // One fate byte per device; the host bridge's plan (a count, then four bytes for each of
    // its two functions); the driver permutation (two bytes per pick: reverse the five);
    // then each driver's place, counted back from the end: all before the first device.
    let mut control = vec![0; walk + 1 + 8];
    control.extend_from_slice(&[0, 4, 0, 2, 0, 0, 0, 0, 0, 0]);
    control.extend(std::iter::repeat_n([0, walk as u8], 5).flatten());
    let reordered = bus::run(&qemu_with(&control)).unwrap();
    let reversed: Vec<(&str, usize)> = names.iter().rev().map(|&n| (n, 0)).collect();
    assert_eq!(reordered.registered, reversed);
    assert_eq!(platform(&reordered.bound), platform(&default.bound));
}

#[test]
fn extreme_control_bytes_are_handled() {
    for byte in [0x01, 0x7f, 0x80, 0xfe, 0xff] {
        let outcome = bus::run(&qemu_with(&[byte; 512]));
        assert!(outcome.is_some(), "control bytes {byte:#x}");
    }
}

/// QEMU's tree with one property turned into `FDT_NOP` tokens, as QEMU does to nodes it
/// replaces in a tree given with `-dtb`.
fn qemu_with_nops(property: &str) -> Vec<u8> {
    let mut blob = QEMU.to_vec();
    let word = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let (structure, strings) = (word(&blob, 8) as usize, word(&blob, 12) as usize);
    let (size, strings_size) = (word(&blob, 36) as usize, word(&blob, 32) as usize);
    // A word 3 inside a value is not a token: its "name offset" may be anything.
    let name_at = |off: usize| {
        let s = blob
            .get(strings + off..strings + strings_size)
            .unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(0)]
    };
    let at = (structure..structure + size)
        .step_by(4)
        .find(|&at| {
            word(&blob, at) == 3 && name_at(word(&blob, at + 8) as usize) == property.as_bytes()
        })
        .unwrap_or_else(|| panic!("no property {property}"));
    let words = 3 + (word(&blob, at + 4) as usize).div_ceil(4);
    for w in 0..words {
        blob[at + 4 * w..at + 4 * w + 4].copy_from_slice(&4u32.to_be_bytes());
    }
    blob
}

#[test]
fn a_tree_with_nops_is_used_as_the_kernel_uses_it() {
    let blob = qemu_with_nops("kaslr-seed");
    assert!(of::DeviceTree::parse(&blob).is_err());
    topology::check(&blob);
    let outcome = bus::run(&blob).expect("the copy without FDT_NOP parses");
    assert!(outcome.bound.iter().any(|b| b == "9050000.smmuv3=iommu"));
}
