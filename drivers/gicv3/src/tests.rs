use super::*;
use crate::testutil::{
    FakeCpu, GICR_PA, ITS_PA, ItsFixture, Recorded, cpu, gic_regions, gic_with_lpis, serial,
};
use alloc::boxed::Box;
use alloc::vec::Vec;
use kapi::mmio::fake_region;
use std::sync::Mutex;

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
        grp0: false,
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
        grp0: false,
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
        grp0: false,
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

#[test]
fn enable_lpis_programs_both_tables_then_sets_enable_lpis() {
    let t = serial();
    let before = t.frames();
    let (gicd, gicr) = gic_regions();
    let mut gic = GicV3::new(&gicd, &gicr, cpu(1)).unwrap();
    let s = gic.enable_lpis(GICR_PA, LpiConfig::default()).unwrap();
    assert_eq!(s.id_bits, 14);
    assert_eq!(s.lpis, 8192);
    assert_eq!(s.config_bytes, 8 * 1024);
    assert_eq!(s.pending_bytes, 64 * 1024);
    assert_eq!(s.access, TableAccess::Coherent);
    // CPU 1's redistributor (the second one) got the tables.
    let rd = 2 * FRAME_SIZE;
    assert_eq!(gicr.read32(rd).unwrap() & 1, 1, "GICR_CTLR.EnableLPIs");
    assert_eq!(
        gicr.read32(0).unwrap() & 1,
        0,
        "the other CPU's redistributor is untouched"
    );
    // PROPBASER: address, IDbits = 13, inner shareable [11:10] = 1, RaWaWb [9:7] = 7.
    let prop = gicr.read64(rd + 0x70).unwrap();
    assert_eq!(prop & 0xfff, 0x400 | 0x380 | 13);
    assert_eq!(prop & 0x000f_ffff_ffff_f000, s.config_table.0);
    // PENDBASER: PTZ [62], address 64 KiB aligned, inner shareable, RaWaWb.
    let pend = gicr.read64(rd + 0x78).unwrap();
    assert_eq!(pend & !0x000f_ffff_ffff_0000, (1 << 62) | 0x400 | 0x380);
    assert_eq!(pend & 0x000f_ffff_ffff_0000, s.pending_table.0);
    assert!(s.pending_table.is_aligned(0x1_0000));
    // Every LPI starts disabled at the default priority.
    let lpis = gic.lpis().unwrap();
    assert_eq!(lpis.config(LPI_BASE), Some(0xa2));
    assert_eq!(lpis.config(LPI_BASE + 8191), Some(0xa2));
    assert_eq!(lpis.config(LPI_BASE + 8192), None);
    assert_eq!(lpis.processor_number(), 1);
    assert_eq!(lpis.redistributor_pa(), PhysAddr(0x080c_0000));
    // 8 KiB + 64 KiB of tables; asking again changes nothing.
    assert_eq!(t.frames() - before, 2 + 16);
    assert_eq!(gic.enable_lpis(GICR_PA, LpiConfig::default()), Ok(s));
    assert_eq!(t.frames() - before, 2 + 16);
    // Dropping the GIC turns LPIs off before the tables are freed.
    drop(gic);
    assert_eq!(gicr.read32(rd).unwrap() & 1, 0);
    assert_eq!(t.frames(), before);
}

#[test]
fn lpis_need_gicd_lpis_and_gicr_plpis() {
    let _t = serial();
    let (gicd, gicr) = gic_regions();
    gicd.write32(0x4, 3).unwrap();
    let mut gic = GicV3::new(&gicd, &gicr, cpu(0)).unwrap();
    assert_eq!(
        gic.enable_lpis(GICR_PA, LpiConfig::default()),
        Err(GicError::NoLpis)
    );
    let (gicd, gicr) = gic_regions();
    gicr.write64(0x8, 0).unwrap();
    let mut gic = GicV3::new(&gicd, &gicr, cpu(0)).unwrap();
    assert_eq!(
        gic.enable_lpis(GICR_PA, LpiConfig::default()),
        Err(GicError::NoLpis)
    );
}

#[test]
fn lpi_id_bits_must_be_14_up_to_gicd_typer_idbits() {
    let _t = serial();
    let (gicd, gicr) = gic_regions();
    let mut gic = GicV3::new(&gicd, &gicr, cpu(0)).unwrap();
    for bits in [13, 17] {
        assert_eq!(
            gic.enable_lpis(GICR_PA, LpiConfig { id_bits: bits }),
            Err(GicError::LpiIdBits {
                requested: bits,
                supported: 16
            })
        );
    }
    let s = gic.enable_lpis(GICR_PA, LpiConfig { id_bits: 16 }).unwrap();
    assert_eq!((s.lpis, s.config_bytes), (65536 - 8192, 65536 - 8192));
}

#[test]
fn gicd_typer_num_lpis_caps_the_allocator() {
    let _t = serial();
    let (gicd, gicr) = gic_regions();
    gicd.write32(0x4, testutil::GICD_TYPER_LPIS | (3 << 11))
        .unwrap();
    let mut gic = GicV3::new(&gicd, &gicr, cpu(0)).unwrap();
    assert_eq!(
        gic.enable_lpis(GICR_PA, LpiConfig::default()).unwrap().lpis,
        16
    );
}

#[test]
fn a_stale_enable_lpis_is_cleared_first() {
    let _t = serial();
    let (gicd, gicr) = gic_regions();
    gicr.write32(0, 1).unwrap(); // EnableLPIs left set by an earlier boot stage
    let mut gic = GicV3::new(&gicd, &gicr, cpu(0)).unwrap();
    // The RAM fake clears it as written, RWP reads 0: the driver goes ahead.
    gic.enable_lpis(GICR_PA, LpiConfig::default()).unwrap();
    assert_eq!(gicr.read32(0).unwrap() & 1, 1);
}

#[test]
fn its_needs_lpis_first() {
    let _t = serial();
    let (gicd, gicr) = gic_regions();
    let mut gic = GicV3::new(&gicd, &gicr, cpu(0)).unwrap();
    let its = ItsFixture::qemu();
    assert_eq!(
        gic.add_its(&its.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::LpisNotEnabled)
    );
}

#[test]
fn lpis_are_refused_by_irqchip_until_allocated() {
    let _t = serial();
    let (gic, _gicd, _gicr) = gic_with_lpis(0);
    let lpis = gic.lpis().unwrap().clone();
    let edge = |intid| IrqLine {
        intid,
        trigger: Trigger::Edge,
    };
    assert_eq!(
        gic.configure(edge(LPI_BASE)),
        Err(IrqError::InvalidLine(LPI_BASE))
    );
    let intid = lpis.alloc().unwrap();
    assert_eq!(intid, LPI_BASE);
    gic.configure(edge(intid)).unwrap();
    assert_eq!(
        gic.configure(IrqLine {
            intid,
            trigger: Trigger::Level
        }),
        Err(IrqError::InvalidLine(intid))
    );
    // Without an ITS, enable and disable only write the configuration byte.
    gic.enable(intid);
    assert_eq!(lpis.config(intid), Some(0xa3));
    gic.disable(intid);
    assert_eq!(lpis.config(intid), Some(0xa2));
    // Unallocated LPIs are ignored.
    gic.enable(intid + 1);
    assert_eq!(lpis.config(intid + 1), Some(0xa2));
    lpis.free(intid);
    // The SPI/PPI paths are unchanged: INTIDs between the SPIs and the LPIs do not exist.
    assert_eq!(gic.configure(edge(4000)), Err(IrqError::InvalidLine(4000)));
}

#[test]
fn a_private_interrupt_can_be_routed_to_fiq_without_security_states() {
    static REC: Mutex<Recorded> = Mutex::new(Recorded {
        sre: false,
        pmr: 0,
        grp1: false,
        grp0: false,
        eois: Vec::new(),
    });
    let (gicd, gicr) = gic_regions();
    let gic = GicV3::new(&gicd, &gicr, Box::new(FakeCpu(&REC, 0))).unwrap();
    // With security states, Group 0 is not ours.
    assert_eq!(
        gic.route_private_to_fiq(30, 0x10),
        Err(GicError::Group0Secure)
    );
    assert!(!REC.lock().unwrap().grp0);
    gicd.write32(0, gicd.read32(0).unwrap() | (1 << 6)).unwrap(); // DS: one security state
    assert_eq!(
        gic.route_private_to_fiq(40, 0x10),
        Err(GicError::NotPrivate { intid: 40 })
    );
    gic.route_private_to_fiq(30, 0x10).unwrap();
    let sgi = FRAME_SIZE;
    assert_eq!(
        gicr.read32(sgi + 0x80).unwrap(),
        !(1 << 30),
        "PPI 30 in Group 0, the rest Group 1"
    );
    assert_eq!(gicr.read8(sgi + 0x400 + 30).unwrap(), 0x10);
    assert_eq!(
        gicr.read32(sgi + 0x100).unwrap() & (1 << 30),
        1 << 30,
        "enabled"
    );
    assert_eq!(gicd.read32(0).unwrap() & 0b11, 0b11, "both groups enabled");
    assert!(REC.lock().unwrap().grp0);
}
