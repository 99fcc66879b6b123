use super::*;
use alloc::boxed::Box;
use alloc::vec::Vec;
use kapi::mmio::fake_region;
use std::sync::Mutex;

#[derive(Default)]
struct Recorded {
    sre: bool,
    pmr: u8,
    grp1: bool,
    eois: Vec<u32>,
}

struct FakeCpu(&'static Mutex<Recorded>, u32);

impl CpuInterface for FakeCpu {
    fn enable_system_registers(&self) {
        self.0.lock().unwrap().sre = true;
    }
    fn set_priority_mask(&self, mask: u8) {
        self.0.lock().unwrap().pmr = mask;
    }
    fn set_binary_point(&self, _: u8) {}
    fn enable_group1(&self, enable: bool) {
        self.0.lock().unwrap().grp1 = enable;
    }
    fn acknowledge(&self) -> u32 {
        1023
    }
    fn end_of_interrupt(&self, intid: u32) {
        self.0.lock().unwrap().eois.push(intid);
    }
    fn affinity(&self) -> u32 {
        self.1
    }
}

/// Two redistributors (affinities 0 and 1), the second marked Last.
fn regions() -> (MmioRegion, MmioRegion) {
    let gicd = fake_region(0x1_0000);
    gicd.write32(0x4, 3).unwrap(); // ITLinesNumber = 3 -> 128 lines, 96 SPIs
    let gicr = fake_region(4 * FRAME_SIZE);
    gicr.write64(0x8, 0).unwrap();
    gicr.write64(2 * FRAME_SIZE + 0x8, (1 << 32) | (1 << 4))
        .unwrap();
    gicr.write32(0x14, 0b110).unwrap(); // asleep at reset
    gicr.write32(2 * FRAME_SIZE + 0x14, 0b110).unwrap();
    (gicd, gicr)
}

#[test]
fn init_wakes_the_matching_redistributor_and_enables_group1() {
    static REC: Mutex<Recorded> = Mutex::new(Recorded {
        sre: false,
        pmr: 0,
        grp1: false,
        eois: Vec::new(),
    });
    let (gicd, gicr) = regions();
    // ChildrenAsleep never clears on the fake, so wake-up must time out ...
    let err = GicV3::new(&gicd, &gicr, Box::new(FakeCpu(&REC, 1))).err();
    assert_eq!(
        err,
        Some(GicError::Timeout {
            register: "GICR_WAKER.ChildrenAsleep"
        })
    );
    // ... and only the redistributor of CPU 1 was asked to wake.
    assert_eq!(gicr.read32(0x14).unwrap(), 0b110);
    assert_eq!(gicr.read32(2 * FRAME_SIZE + 0x14).unwrap(), 0b100);

    gicr.write32(2 * FRAME_SIZE + 0x14, 0).unwrap();
    let gic = GicV3::new(&gicd, &gicr, Box::new(FakeCpu(&REC, 1))).unwrap();
    assert_eq!(gic.spi_count(), 96);
    assert_eq!(gicd.read32(0).unwrap(), (1 << 4) | (1 << 1)); // ARE | EnableGrp1
    assert_eq!(gicd.read32(0x84).unwrap(), u32::MAX); // SPIs 32..63 in Group 1
    assert_eq!(gicd.read8(0x400 + 40).unwrap(), DEFAULT_PRIORITY);
    let r = REC.lock().unwrap();
    assert!(r.sre && r.grp1);
    assert_eq!(r.pmr, PRIORITY_MASK);
}

#[test]
fn missing_redistributor_is_reported() {
    static REC: Mutex<Recorded> = Mutex::new(Recorded {
        sre: false,
        pmr: 0,
        grp1: false,
        eois: Vec::new(),
    });
    let (gicd, gicr) = regions();
    let err = GicV3::new(&gicd, &gicr, Box::new(FakeCpu(&REC, 7))).err();
    assert_eq!(err, Some(GicError::NoRedistributor { affinity: 7 }));
}

#[test]
fn configure_sets_trigger_and_route_and_rejects_unknown_lines() {
    static REC: Mutex<Recorded> = Mutex::new(Recorded {
        sre: false,
        pmr: 0,
        grp1: false,
        eois: Vec::new(),
    });
    let (gicd, gicr) = regions();
    gicr.write32(0x14, 0).unwrap();
    let gic = GicV3::new(&gicd, &gicr, Box::new(FakeCpu(&REC, 0))).unwrap();
    // SPI 74 (INTID 106), edge: ICFGR6 bit 2*(106%16)+1 = 21.
    gic.configure(IrqLine {
        intid: 106,
        trigger: Trigger::Edge,
    })
    .unwrap();
    assert_eq!(gicd.read32(0xc00 + 4 * 6).unwrap(), 1 << 21);
    gic.configure(IrqLine {
        intid: 106,
        trigger: Trigger::Level,
    })
    .unwrap();
    assert_eq!(gicd.read32(0xc00 + 4 * 6).unwrap(), 0);
    gic.enable(106);
    assert_eq!(gicd.read32(0x100 + 4 * 3).unwrap(), 1 << 10);
    // PPI 27 (virtual timer) lives in the redistributor's SGI frame.
    gic.enable(27);
    assert_eq!(gicr.read32(FRAME_SIZE + 0x100).unwrap(), 1 << 27);
    assert_eq!(
        gic.configure(IrqLine {
            intid: 200,
            trigger: Trigger::Level
        }),
        Err(IrqError::InvalidLine(200))
    );
    assert_eq!(gic.ack(), None);
}
