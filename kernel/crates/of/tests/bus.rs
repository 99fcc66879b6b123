//! `reg` / `ranges` translation, status, compatible, interrupts and the PCI host helpers, on
//! QEMU's own tree and on `bus.dts`.

mod common;

use addr::{PhysAddr, Range};
use common::*;
use of::{GicIrq, PciSpace, PciWindow, RegEntry, Status, Trigger, pci_phys_hi};

fn r(start: u64, size: u64) -> Range<PhysAddr> {
    Range::new(PhysAddr(start), size)
}

fn level(intid: u32) -> GicIrq {
    GicIrq {
        intid,
        trigger: Trigger::Level,
    }
}

fn edge(intid: u32) -> GicIrq {
    GicIrq {
        intid,
        trigger: Trigger::Edge,
    }
}

#[test]
fn qemu_reg_is_read_with_the_root_cells() {
    let dt = parse(QEMU);
    assert_eq!(
        node(&dt, "/smmuv3@9050000").reg().unwrap(),
        [r(0x905_0000, 0x2_0000)]
    );
    assert_eq!(
        node(&dt, "/pcie@10000000").reg().unwrap(),
        [r(0x40_1000_0000, 0x1000_0000)],
        "highmem ECAM"
    );
    assert_eq!(
        node(&dt, "/flash@0").reg().unwrap(),
        [r(0, 0x400_0000), r(0x400_0000, 0x400_0000)]
    );
    assert_eq!(
        node(&dt, "/intc@8000000/its@8080000").reg().unwrap(),
        [r(0x808_0000, 0x2_0000)],
        "through the GIC's empty ranges"
    );
    assert_eq!(
        message(node(&dt, "/cpus/cpu@0").reg()),
        "/cpus/cpu@0: reg: /cpus has no ranges, so addresses below it are not CPU addresses"
    );
    assert_eq!(
        node(&dt, "/cpus/cpu@0").reg_raw().unwrap(),
        [RegEntry {
            address: 0,
            size: 0
        }]
    );
    assert!(node(&dt, "/psci").reg().unwrap().is_empty());
}

#[test]
fn qemu_status_compatible_and_aliases() {
    let dt = parse(QEMU);
    let pl061 = node(&dt, "/pl061@9030000");
    assert_eq!(pl061.compatible().unwrap(), ["arm,pl061", "arm,primecell"]);
    assert!(pl061.is_compatible("arm,primecell"));
    assert!(!pl061.is_compatible("arm,pl011"));
    assert_eq!(pl061.status().unwrap(), Status::Okay, "absent = okay");
    assert_eq!(pl061.status_str().unwrap(), None);
    assert!(pl061.flag("gpio-controller").unwrap());
    assert_eq!(
        dt.alias("serial0").unwrap(),
        Some(node(&dt, "/pl011@9000000"))
    );
    assert_eq!(dt.alias("nope").unwrap(), None);
    let root = dt.root();
    assert_eq!(
        (root.address_cells().unwrap(), root.size_cells().unwrap()),
        (2, 2)
    );
    let psci = node(&dt, "/psci");
    assert_eq!(
        (psci.address_cells().unwrap(), psci.size_cells().unwrap()),
        (2, 1),
        "DT spec defaults"
    );
}

#[test]
fn qemu_interrupts_decode_to_gic_intids() {
    let dt = parse(QEMU);
    let smmu = node(&dt, "/smmuv3@9050000");
    assert_eq!(
        smmu.interrupt_names().unwrap(),
        ["eventq", "priq", "cmdq-sync", "gerror"]
    );
    assert_eq!(
        smmu.gic_interrupts().unwrap(),
        [edge(106), edge(107), edge(108), edge(109)]
    );
    assert_eq!(smmu.gic_interrupt("gerror").unwrap(), Some(edge(109)));
    assert_eq!(smmu.gic_interrupt("combined").unwrap(), None);
    assert_eq!(
        smmu.interrupt_parent().unwrap(),
        Some(node(&dt, "/intc@8000000")),
        "inherited from the root"
    );
    assert_eq!(
        node(&dt, "/pl011@9000000").gic_interrupts().unwrap(),
        [level(33)]
    );
    assert_eq!(
        node(&dt, "/timer").gic_interrupts().unwrap(),
        [level(29), level(30), level(27), level(26)],
        "PPIs"
    );
    assert_eq!(
        node(&dt, "/virtio_mmio@a000000").gic_interrupts().unwrap(),
        [edge(48)]
    );
    assert!(node(&dt, "/psci").interrupts().unwrap().is_empty());
}

#[test]
fn qemu_pci_host_windows_and_numbers() {
    let dt = parse(QEMU);
    let pcie = node(&dt, "/pcie@10000000");
    assert!(pcie.is_pci_bus().unwrap());
    assert_eq!(pcie.pci_bus_range().unwrap(), Some(0..=255));
    assert_eq!(pcie.pci_domain().unwrap(), Some(0));
    assert_eq!(
        pcie.pci_windows().unwrap(),
        [
            PciWindow {
                space: PciSpace::Io,
                prefetchable: false,
                pci: 0,
                cpu: PhysAddr(0x3eff_0000),
                size: 0x1_0000
            },
            PciWindow {
                space: PciSpace::Mem32,
                prefetchable: false,
                pci: 0x1000_0000,
                cpu: PhysAddr(0x1000_0000),
                size: 0x2eff_0000
            },
            PciWindow {
                space: PciSpace::Mem64,
                prefetchable: false,
                pci: 0x80_0000_0000,
                cpu: PhysAddr(0x80_0000_0000),
                size: 0x80_0000_0000
            },
        ]
    );
    assert_eq!(
        pcie.translate((0x0200_0000u128 << 64) | 0x1000_1000)
            .unwrap(),
        PhysAddr(0x1000_1000)
    );
}

#[test]
fn qemu_intx_routing_follows_its_interrupt_map() {
    let dt = parse(QEMU);
    let pcie = node(&dt, "/pcie@10000000");
    // QEMU virt: SPI 3 + (slot + pin - 1) % 4, level.
    for slot in 0..8u8 {
        for pin in 1..=4u8 {
            let spi = 3 + (u32::from(slot) + u32::from(pin) - 1) % 4;
            assert_eq!(
                pcie.pci_intx(pci_phys_hi(0, slot, 0), pin).unwrap(),
                Some(level(32 + spi)),
                "slot {slot} pin {pin}"
            );
        }
    }
    // The profile's devices: virtio-blk at slot 2 and edu at slot 3, both INTA.
    assert_eq!(
        pcie.pci_intx(pci_phys_hi(0, 2, 0), 1).unwrap(),
        Some(level(37))
    );
    assert_eq!(
        pcie.pci_intx(pci_phys_hi(0, 3, 0), 1).unwrap(),
        Some(level(38))
    );
    assert_eq!(
        pcie.pci_intx(pci_phys_hi(0, 3, 0), 0).unwrap(),
        None,
        "pin 0: no INTx"
    );
    assert_eq!(pcie.pci_intx(pci_phys_hi(0, 3, 0), 5).unwrap(), None);
    assert_eq!(
        message(node(&dt, "/smmuv3@9050000").pci_intx(0, 1)),
        "/smmuv3@9050000: interrupt-map: #address-cells is 2, not a PCI bus (3)"
    );
}

#[test]
fn reg_is_translated_through_every_ranges() {
    let dt = parse(BUS);
    let uart = node(&dt, "/soc/uart@1000");
    assert_eq!(uart.reg().unwrap(), [r(0x1000_1000, 0x100)]);
    let multi = node(&dt, "/soc/multi@2000");
    assert_eq!(
        multi.reg().unwrap(),
        [r(0x1000_2000, 0x100), r(0x1_0000_0000, 0x1000)],
        "the second soc window"
    );
    assert_eq!(multi.reg_names().unwrap(), ["ctrl", "data"]);
    assert_eq!(
        multi.reg_by_name("data").unwrap(),
        Some(r(0x1_0000_0000, 0x1000))
    );
    assert_eq!(multi.reg_by_name("nope").unwrap(), None);
    assert_eq!(
        node(&dt, "/soc/sub@5000/dev@10").reg().unwrap(),
        [r(0x1000_5010, 0x10)],
        "two levels of ranges"
    );
    assert_eq!(
        node(&dt, "/soc/idsub/dev@20").reg().unwrap(),
        [r(0x1000_0020, 4)],
        "empty ranges is the identity"
    );
    assert_eq!(
        node(&dt, "/soc").translate(0x20_0010).unwrap(),
        PhysAddr(0x1020_0010)
    );
}

#[test]
fn untranslatable_and_out_of_window_reg_are_errors() {
    let dt = parse(BUS);
    assert_eq!(
        message(node(&dt, "/soc/i2c@6000/eeprom@50").reg()),
        "/soc/i2c@6000/eeprom@50: reg: /soc/i2c@6000 has no ranges, so addresses below it are not CPU addresses"
    );
    assert_eq!(
        message(node(&dt, "/soc/outside@3000000").reg()),
        "/soc/outside@3000000: reg: 0x3000000 is outside every window of /soc"
    );
    assert_eq!(
        node(&dt, "/soc/i2c@6000/eeprom@50").reg_raw().unwrap(),
        [RegEntry {
            address: 0x50,
            size: 0
        }]
    );
}

#[test]
fn interrupt_parent_is_inherited_and_names_select_entries() {
    let dt = parse(BUS);
    let gic = node(&dt, "/interrupt-controller@8000000");
    let uart = node(&dt, "/soc/uart@1000");
    assert_eq!(uart.interrupt_parent().unwrap(), Some(gic));
    assert_eq!(uart.gic_interrupts().unwrap(), [level(33)]);
    let multi = node(&dt, "/soc/multi@2000");
    assert_eq!(multi.gic_interrupts().unwrap(), [edge(34), level(25)]);
    assert_eq!(multi.gic_interrupt("ppi").unwrap(), Some(level(25)));
    assert_eq!(
        gic.gic_interrupts().unwrap(),
        [level(25)],
        "a controller's own interrupt goes to itself through the root"
    );
    assert_eq!(
        node(&dt, "/interrupt-controller@9000000")
            .gic_interrupts()
            .unwrap(),
        [level(37)]
    );
}

#[test]
fn interrupts_extended_names_each_controller() {
    let dt = parse(BUS);
    let ext = node(&dt, "/soc/ext@3000");
    let irqs = ext.interrupts().unwrap();
    assert_eq!(irqs.len(), 2);
    assert_eq!(irqs[0].controller.path(), "/interrupt-controller@8000000");
    assert_eq!(irqs[0].gic().unwrap(), level(35));
    assert_eq!(irqs[1].controller.path(), "/interrupt-controller@9000000");
    assert_eq!(irqs[1].cells, [7, 1]);
    assert_eq!(
        message(irqs[1].gic()),
        "/soc/ext@3000: interrupts-extended: /interrupt-controller@9000000 is not an Arm GIC"
    );
}

#[test]
fn a_pci_device_in_the_tree_is_routed_through_the_host_interrupt_map() {
    let dt = parse(BUS);
    let nic = node(&dt, "/pcie@30000000/ethernet@1,0");
    // slot 1, INTB -> the map's (0x800, pin 2) entry: SPI 5.
    assert_eq!(nic.gic_interrupts().unwrap(), [level(37)]);
}

#[test]
fn intx_lookup_follows_a_chain_of_nexuses() {
    let dt = parse(BUS);
    let pcie = node(&dt, "/pcie@20000000");
    assert_eq!(
        pcie.pci_intx(pci_phys_hi(0, 0, 0), 1).unwrap(),
        Some(level(32 + 23))
    );
    assert_eq!(
        pcie.pci_intx(pci_phys_hi(5, 9, 3), 4).unwrap(),
        Some(level(32 + 20))
    );
    let spec = pcie.map_interrupt(&[0, 0, 0], &[2]).unwrap().unwrap();
    assert_eq!(spec.controller.path(), "/interrupt-controller@8000000");
    assert_eq!(spec.cells, [0, 22, 4]);
    assert_eq!(
        message(pcie.map_interrupt(&[0, 0], &[2])),
        "/pcie@20000000: interrupt-map: lookup with 3 cells, the map uses 4"
    );
}

#[test]
fn pci_host_helpers_on_a_second_host() {
    let dt = parse(BUS);
    let pcie = node(&dt, "/pcie@30000000");
    assert_eq!(pcie.pci_bus_range().unwrap(), Some(0..=0x7f));
    assert_eq!(pcie.pci_domain().unwrap(), Some(2));
    let w = pcie.pci_windows().unwrap();
    assert_eq!(
        w.iter()
            .map(|w| (w.space, w.prefetchable))
            .collect::<Vec<_>>(),
        [
            (PciSpace::Io, false),
            (PciSpace::Mem32, false),
            (PciSpace::Mem64, true)
        ]
    );
    assert_eq!(w[2].cpu, PhysAddr(0x80_0000_0000));
    assert_eq!(w[2].size, 1 << 32);
    assert_eq!(
        pcie.pci_intx(pci_phys_hi(0, 2, 0), 1).unwrap(),
        None,
        "not in the map"
    );
    assert_eq!(
        pcie.pci_intx(pci_phys_hi(0, 1, 0), 4).unwrap(),
        Some(level(35))
    );
    assert_eq!(
        node(&dt, "/pcie@20000000").pci_bus_range().unwrap(),
        None,
        "absent: the caller assumes 0..=255"
    );
}

#[test]
fn legacy_linux_phandle_resolves() {
    let dt = parse(BUS);
    assert_eq!(dt.by_phandle(0x1234), Some(node(&dt, "/legacy")));
    assert_eq!(node(&dt, "/legacy").phandle(), Some(0x1234));
}

#[test]
fn malformed_basics_name_node_and_property() {
    let dt = parse(MALFORMED);
    let n = |p: &str| node(&dt, p);
    assert_eq!(
        message(n("/cells-5/dev@0").reg()),
        "/cells-5: #address-cells: 5 cells (at most 4)"
    );
    assert_eq!(
        message(n("/reg-3-cells").reg()),
        "/reg-3-cells: reg: 3 cells is not a multiple of 4"
    );
    assert_eq!(
        message(n("/status-maybe").status()),
        "/status-maybe: status: unknown status \"maybe\""
    );
    assert_eq!(n("/status-maybe").status_str().unwrap(), Some("maybe"));
    assert_eq!(
        message(n("/compatible-unterminated").compatible()),
        "/compatible-unterminated: compatible: not a NUL-terminated UTF-8 string"
    );
    assert!(!n("/compatible-unterminated").is_compatible("abc"));
    assert_eq!(
        message(n("/not-pci").pci_windows()),
        "/not-pci: ranges: #address-cells is 2, not a PCI bus (3)"
    );
}

#[test]
fn malformed_interrupts_name_node_and_property() {
    let dt = parse(MALFORMED);
    let n = |p: &str| node(&dt, p);
    assert_eq!(
        message(n("/interrupts-2-cells").interrupts()),
        "/interrupts-2-cells: interrupts: 2 cells is not a multiple of 3"
    );
    assert_eq!(
        message(n("/gic-type-5").gic_interrupts()),
        "/gic-type-5: interrupts: GIC interrupt type 5 number 1 is out of range"
    );
    assert_eq!(
        message(n("/gic-spi-too-big").gic_interrupts()),
        "/gic-spi-too-big: interrupts: GIC interrupt type 0 number 988 is out of range"
    );
    assert_eq!(
        message(n("/gic-trigger-0").gic_interrupts()),
        "/gic-trigger-0: interrupts: flags 0x0: trigger must be 1 or 2 (edge) or 4 or 8 (level)"
    );
    assert_eq!(
        message(n("/interrupt-parent-dangling").interrupts()),
        "/interrupt-parent-dangling: interrupt-parent: phandle 0x999 points nowhere"
    );
    assert_eq!(
        message(n("/loop-a").interrupts()),
        "/loop-a: interrupt-parent: interrupt-parent links form a loop"
    );
    assert_eq!(
        message(n("/ext-nocells").interrupts()),
        "/ext-nocells: interrupts-extended: /thing@3000000 has no #interrupt-cells"
    );
    assert_eq!(
        message(n("/pcie-bus-range").pci_bus_range()),
        "/pcie-bus-range: bus-range: bus range 5..=2 is invalid"
    );
    assert_eq!(
        message(n("/pcie-intmap-short").pci_intx(0, 1)),
        "/pcie-intmap-short: interrupt-map: entry 0 needs 3 more cells, 2 left"
    );
}
