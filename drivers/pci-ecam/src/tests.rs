use alloc::vec;

use crate::config::*;
use crate::enumerate::*;
use crate::fake::{FakeBus, FakeFunction};

/// QEMU `virt`'s windows: 32-bit memory at 0x1000_0000, 64-bit at 0x80_0000_0000, I/O at CPU
/// 0x3eff_0000 (PCI address 0).
fn virt_windows() -> [HostWindow; 3] {
    [
        HostWindow {
            space: Space::Io,
            pci_base: 0,
            cpu_base: 0x3eff_0000,
            size: 0x1_0000,
        },
        HostWindow {
            space: Space::Mem32,
            pci_base: 0x1000_0000,
            cpu_base: 0x1000_0000,
            size: 0x2eff_0000,
        },
        HostWindow {
            space: Space::Mem64Pref,
            pci_base: 0x80_0000_0000,
            cpu_base: 0x80_0000_0000,
            size: 0x80_0000_0000,
        },
    ]
}

fn edu() -> FakeFunction {
    FakeFunction::endpoint(0x1234, 0x11e8, 0x00ff00)
        .bar32(0, 1 << 20)
        .pin(1)
}

fn virtio_blk() -> FakeFunction {
    FakeFunction::endpoint(0x1af4, 0x1042, 0x010000)
        .bar32(1, 0x1000)
        .bar64_pref(4, 0x4000)
        .pin(1)
        .pcie(pcie_type::ENDPOINT)
}

/// The default profile plus a root port with an edu behind it.
fn virt_tree() -> FakeBus {
    FakeBus::new(vec![
        ((0, 0), FakeFunction::endpoint(0x1b36, 0x0008, 0x060000)),
        ((2, 0), virtio_blk()),
        ((3, 0), edu()),
        (
            (4, 0),
            FakeFunction::pcie_bridge(pcie_type::ROOT_PORT, FakeBus::new(vec![((0, 0), edu())])),
        ),
    ])
}

fn func(t: &Topology, bdf: Bdf) -> &PciFunction {
    t.functions
        .iter()
        .find(|f| f.bdf == bdf)
        .unwrap_or_else(|| panic!("{bdf} not found"))
}

#[test]
fn every_function_is_found_with_its_identity() {
    let bus = virt_tree();
    let t = enumerate(&bus, 0, 0xff, &virt_windows());
    let found: Vec<_> = t
        .functions
        .iter()
        .map(|f| (f.bdf.to_string(), f.vendor, f.device))
        .collect();
    assert_eq!(
        found,
        [
            ("00:00.0".to_string(), 0x1b36, 0x0008),
            ("00:02.0".to_string(), 0x1af4, 0x1042),
            ("00:03.0".to_string(), 0x1234, 0x11e8),
            ("00:04.0".to_string(), 0x1b36, 0x0001),
            ("01:00.0".to_string(), 0x1234, 0x11e8),
        ]
    );
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(func(&t, Bdf::new(0, 2, 0)).class, 0x010000);
    assert_eq!(
        func(&t, Bdf::new(0, 2, 0)).pcie_type,
        Some(pcie_type::ENDPOINT)
    );
}

#[test]
fn bars_are_sized_assigned_aligned_and_programmed() {
    let bus = virt_tree();
    let t = enumerate(&bus, 0, 0xff, &virt_windows());
    let blk = func(&t, Bdf::new(0, 2, 0));
    assert_eq!(blk.bars.len(), 2);
    let (b1, b4) = (blk.bars[0], blk.bars[1]);
    assert_eq!((b1.index, b1.space, b1.size), (1, Space::Mem32, 0x1000));
    assert_eq!(
        (b4.index, b4.space, b4.size, b4.is_64bit, b4.prefetchable),
        (4, Space::Mem64Pref, 0x4000, true, true)
    );
    let a4 = b4.pci_addr.unwrap();
    assert!(a4 >= 0x80_0000_0000 && a4 % 0x4000 == 0);
    let f = bus.function(Bdf::new(0, 2, 0)).unwrap();
    assert_eq!(
        f.reg32(BAR0 + 16),
        (a4 as u32) | 0b1100,
        "low half keeps the type bits"
    );
    assert_eq!(f.reg32(BAR0 + 20), (a4 >> 32) as u32);
    // Every memory BAR sits in a window, aligned to its size, and no two overlap.
    let mut all: Vec<(u64, u64)> = Vec::new();
    for f in &t.functions {
        for b in &f.bars {
            let a = b
                .pci_addr
                .unwrap_or_else(|| panic!("{}: BAR{} unassigned", f.bdf, b.index));
            assert_eq!(a % b.size, 0, "{}: BAR{} misaligned", f.bdf, b.index);
            assert_eq!(b.cpu_addr, Some(a), "memory windows are 1:1 on virt");
            all.push((a, a + b.size));
        }
    }
    all.sort();
    assert!(
        all.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlap in {all:x?}"
    );
}

#[test]
fn endpoints_decode_memory_but_never_bus_master_and_bridges_forward() {
    let bus = virt_tree();
    enumerate(&bus, 0, 0xff, &virt_windows());
    let cmd = |bdf| bus.function(bdf).unwrap().reg32(COMMAND) & 0xffff;
    assert_eq!(cmd(Bdf::new(0, 3, 0)), 0b010, "edu: memory decode only");
    assert_eq!(cmd(Bdf::new(1, 0, 0)), 0b010);
    assert_eq!(
        cmd(Bdf::new(0, 4, 0)),
        0b111,
        "root port: io, memory, bus master"
    );
    assert_eq!(cmd(Bdf::new(0, 0, 0)), 0, "nothing to decode");
}

#[test]
fn bridges_get_bus_numbers_and_windows_covering_their_subtree() {
    let bus = virt_tree();
    let t = enumerate(&bus, 0, 0xff, &virt_windows());
    let rp = func(&t, Bdf::new(0, 4, 0));
    let info = rp.bridge.as_ref().unwrap();
    assert_eq!((info.secondary, info.subordinate), (1, 1));
    let (_, base, size) = *info.windows.iter().find(|w| w.0 == Space::Mem32).unwrap();
    assert_eq!(base % (1 << 20), 0);
    let behind = func(&t, Bdf::new(1, 0, 0)).bars[0].pci_addr.unwrap();
    assert!(base <= behind && behind + (1 << 20) <= base + size);
    let f = bus.function(Bdf::new(0, 4, 0)).unwrap();
    assert_eq!(f.reg32(PRIMARY_BUS) & 0xff_ffff, 0x01_01_00);
    let mem = f.reg32(MEMORY_BASE);
    assert_eq!(u64::from(mem & 0xfff0) << 16, base);
    assert_eq!((u64::from(mem >> 16) << 16) | 0xf_ffff, base + size - 1);
    // No I/O or prefetchable BARs behind it: those windows are closed (base > limit).
    assert_eq!(f.reg32(PREF_MEMORY_BASE), 0x0000_fff0);
}

#[test]
fn nested_bridges_are_numbered_depth_first() {
    let switch = FakeBus::new(vec![(
        (0, 0),
        FakeFunction::pcie_bridge(
            pcie_type::UPSTREAM,
            FakeBus::new(vec![
                (
                    (0, 0),
                    FakeFunction::pcie_bridge(
                        pcie_type::DOWNSTREAM,
                        FakeBus::new(vec![((0, 0), edu())]),
                    ),
                ),
                (
                    (1, 0),
                    FakeFunction::pcie_bridge(
                        pcie_type::DOWNSTREAM,
                        FakeBus::new(vec![((0, 0), edu())]),
                    ),
                ),
            ]),
        ),
    )]);
    let bus = FakeBus::new(vec![
        (
            (1, 0),
            FakeFunction::pcie_bridge(pcie_type::ROOT_PORT, switch),
        ),
        ((2, 0), edu()),
    ]);
    let t = enumerate(&bus, 0, 0xff, &virt_windows());
    let nums = |bdf| {
        let b = func(&t, bdf).bridge.clone().unwrap();
        (b.secondary, b.subordinate)
    };
    assert_eq!(nums(Bdf::new(0, 1, 0)), (1, 4));
    assert_eq!(nums(Bdf::new(1, 0, 0)), (2, 4));
    assert_eq!(nums(Bdf::new(2, 0, 0)), (3, 3));
    assert_eq!(nums(Bdf::new(2, 1, 0)), (4, 4));
    assert!(
        t.functions
            .iter()
            .any(|f| f.bdf == Bdf::new(4, 0, 0) && f.vendor == 0x1234)
    );
    assert!(
        t.functions
            .iter()
            .all(|f| f.bars.iter().all(|b| b.pci_addr.is_some()))
    );
    // INTx is swizzled at every bridge by the device number below it: 04:00.0 INTA stays INTA
    // at 02:01.0 (device 0), becomes INTB at 01:00.0 (device 1 on bus 2), stays INTB at
    // 00:01.0 (device 0 on bus 1), which is where the host bridge sees it.
    assert_eq!(
        func(&t, Bdf::new(4, 0, 0)).intx_route,
        Some((Bdf::new(0, 1, 0), 2))
    );
}

#[test]
fn conventional_bridges_alias_their_subordinates() {
    let bus = FakeBus::new(vec![
        (
            (5, 0),
            FakeFunction::pci_bridge(FakeBus::new(vec![((1, 0), edu()), ((2, 0), edu())])),
        ),
        (
            (6, 0),
            FakeFunction::pcie_bridge(
                pcie_type::PCIE_TO_PCI_BRIDGE,
                FakeBus::new(vec![((3, 0), edu())]),
            ),
        ),
        (
            (7, 0),
            FakeFunction::pcie_bridge(pcie_type::ROOT_PORT, FakeBus::new(vec![((0, 0), edu())])),
        ),
    ]);
    let t = enumerate(&bus, 0, 0xff, &virt_windows());
    // Behind a conventional PCI-to-PCI bridge: the bridge's own requester ID.
    assert_eq!(func(&t, Bdf::new(1, 1, 0)).dma_alias, Bdf::new(0, 5, 0));
    assert_eq!(func(&t, Bdf::new(1, 2, 0)).dma_alias, Bdf::new(0, 5, 0));
    // Behind a PCIe-to-PCI bridge: (secondary bus, 00.0).
    assert_eq!(func(&t, Bdf::new(2, 3, 0)).dma_alias, Bdf::new(2, 0, 0));
    // Behind a root port: the function's own ID.
    assert_eq!(func(&t, Bdf::new(3, 0, 0)).dma_alias, Bdf::new(3, 0, 0));
    assert_eq!(Bdf::new(0, 3, 0).rid(), 0x18);
}

#[test]
fn a_bar_that_does_not_fit_is_reported_and_left_unassigned() {
    let bus = FakeBus::new(vec![((1, 0), edu()), ((2, 0), edu())]);
    let small = [HostWindow {
        space: Space::Mem32,
        pci_base: 0x1000_0000,
        cpu_base: 0x1000_0000,
        size: 1 << 20,
    }];
    let t = enumerate(&bus, 0, 0xff, &small);
    assert_eq!(
        t.warnings,
        [EnumWarning::NoSpace {
            bdf: Bdf::new(0, 2, 0),
            bar: 0,
            size: 1 << 20
        }]
    );
    assert_eq!(func(&t, Bdf::new(0, 2, 0)).bars[0].pci_addr, None);
    assert_eq!(
        bus.function(Bdf::new(0, 2, 0)).unwrap().reg32(COMMAND) & 0xffff,
        0,
        "no decode without an address"
    );
    assert_eq!(
        bus.function(Bdf::new(0, 1, 0)).unwrap().reg32(COMMAND) & 0xffff,
        0b010
    );
}

#[test]
fn prefetchable_64bit_bars_fall_back_to_the_32bit_window() {
    let bus = FakeBus::new(vec![((2, 0), virtio_blk())]);
    let only32 = [HostWindow {
        space: Space::Mem32,
        pci_base: 0x1000_0000,
        cpu_base: 0x1000_0000,
        size: 0x100_0000,
    }];
    let t = enumerate(&bus, 0, 0xff, &only32);
    let b4 = func(&t, Bdf::new(0, 2, 0)).bars[1];
    assert!(
        b4.pci_addr
            .is_some_and(|a| (0x1000_0000..0x1100_0000).contains(&a))
    );
}

#[test]
fn io_bars_use_the_io_window_with_its_cpu_offset() {
    let bus = FakeBus::new(vec![(
        (2, 0),
        FakeFunction::endpoint(0x8086, 0x100e, 0x020000).bar_io(1, 0x40),
    )]);
    let t = enumerate(&bus, 0, 0xff, &virt_windows());
    let b = func(&t, Bdf::new(0, 2, 0)).bars[0];
    assert_eq!((b.space, b.size), (Space::Io, 0x40));
    assert_eq!(b.cpu_addr.unwrap() - b.pci_addr.unwrap(), 0x3eff_0000);
    assert_eq!(
        bus.function(Bdf::new(0, 2, 0)).unwrap().reg32(COMMAND) & 0xffff,
        0b001
    );
}

#[test]
fn multifunction_devices_and_broken_capability_lists() {
    let bus = FakeBus::new(vec![
        ((1, 0), edu().multifunction()),
        ((1, 3), edu()),
        ((2, 0), edu().looping_capabilities()),
    ]);
    let t = enumerate(&bus, 0, 0xff, &virt_windows());
    assert!(t.functions.iter().any(|f| f.bdf == Bdf::new(0, 1, 3)));
    assert_eq!(
        t.warnings,
        [EnumWarning::BadCapabilityList {
            bdf: Bdf::new(0, 2, 0)
        }]
    );
}

#[test]
fn running_out_of_bus_numbers_is_reported() {
    let bus = FakeBus::new(vec![(
        (1, 0),
        FakeFunction::pcie_bridge(pcie_type::ROOT_PORT, FakeBus::new(vec![((0, 0), edu())])),
    )]);
    let t = enumerate(&bus, 0, 0, &virt_windows());
    assert_eq!(
        t.warnings,
        [EnumWarning::NoBusNumber {
            bdf: Bdf::new(0, 1, 0)
        }]
    );
    assert_eq!(t.functions.len(), 1);
}
