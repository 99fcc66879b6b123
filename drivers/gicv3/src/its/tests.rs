//! The ITS driver against a RAM register file. The test plays the ITS by moving GITS_CREADR to
//! where the hardware would be after the commands the call is expected to issue.

use super::*;
use crate::testutil::{GICR_PA, ITS_PA, ItsFixture, QEMU_GITS_TYPER, gic_with_lpis, serial};
use crate::{GicV3, LPI_BASE};
use kapi::irq::IrqChip;

const EDU: u32 = 0x18; // 00:03.0

fn its_for(gic: &mut GicV3, fx: &ItsFixture) -> Arc<Its> {
    // MAPC + INVALL + SYNC.
    fx.consume_to(3);
    gic.add_its(&fx.region, ITS_PA, ItsConfig::default())
        .unwrap()
}

#[test]
fn init_programs_tables_and_queue_then_maps_the_collection() {
    let t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(1);
    let before = t.frames();
    let fx = ItsFixture::qemu();
    let its = its_for(&mut gic, &fx);

    // Device table: 2^16 DeviceIDs x 8 bytes = 8 pages of 64K, Type/Entry_Size written back.
    let b0 = fx.baser(0);
    assert_eq!(b0 >> 63, 1, "Valid");
    assert_eq!((b0 >> 56) & 7, 1, "Type = Devices kept");
    assert_eq!((b0 >> 48) & 0x1f, 7, "Entry_Size kept");
    assert_eq!((b0 >> 8) & 3, 2, "64K pages");
    assert_eq!(b0 & 0xff, 7, "8 pages");
    assert_eq!((b0 >> 10) & 3, 1, "inner shareable");
    assert_ne!(b0 & 0x0000_ffff_ffff_0000, 0, "address bits [47:16]");
    assert_eq!(
        (b0 >> 12) & 0xf,
        0,
        "address bits [51:48] (none below 256 TiB)"
    );
    // Collection table: one page.
    let b1 = fx.baser(1);
    assert_eq!((b1 >> 63, (b1 >> 56) & 7, b1 & 0xff), (1, 4, 0));
    // No other table was made valid.
    assert_eq!(fx.baser(2), 0);
    // Command queue: 64 KiB = 16 pages of 4K, valid; the ITS is enabled.
    let cb = fx.cbaser();
    assert_eq!((cb >> 63, cb & 0xff), (1, 15));
    assert_eq!(fx.ctlr() & 1, 1, "GITS_CTLR.Enabled");
    assert_eq!(fx.cwriter(), 3 << 5);
    // CPU 1 is processor 1; QEMU's PTA = 0 names it by number.
    let rd = RdBase::ProcessorNumber(1);
    assert_eq!(
        its.queued(0),
        encode(&Command::Mapc {
            icid: 0,
            target: Some(rd)
        })
    );
    assert_eq!(its.queued(0), [0x09, 0, 0x8000_0000_0001_0000, 0]);
    assert_eq!(its.queued(1), encode(&Command::Invall { icid: 0 }));
    assert_eq!(its.queued(2), encode(&Command::Sync { target: rd }));

    let s = its.summary();
    assert_eq!(
        (s.device_id_bits, s.event_id_bits, s.itt_entry_size),
        (16, 16, 12)
    );
    assert_eq!(s.device_table_bytes, 512 * 1024);
    assert_eq!(s.collection_table_bytes, 64 * 1024);
    assert_eq!(its.msi_doorbell(), PhysAddr(0x0809_0040));
    // 512 KiB + 64 KiB + 64 KiB of tables and queue.
    assert_eq!(t.frames() - before, 128 + 16 + 16);
    assert_eq!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::ItsAlreadyPresent)
    );
    drop(its);
    drop(gic);
    assert_eq!(fx.ctlr() & 1, 0, "dropping the ITS disables it");
    assert_eq!(fx.baser(0) >> 63, 0, "and invalidates its tables");
}

#[test]
fn pta_names_the_redistributor_by_address() {
    let _t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(1);
    let fx = ItsFixture::with_typer(QEMU_GITS_TYPER | (1 << 19));
    let its = its_for(&mut gic, &fx);
    // The second redistributor sits 128 KiB into the region at 0x080a_0000.
    let rd = RdBase::Physical(PhysAddr(0x080c_0000));
    assert_eq!(its.queued(0), [0x09, 0, 0x8000_0000_080c_0000, 0]);
    assert_eq!(its.queued(2), encode(&Command::Sync { target: rd }));
    assert_eq!(GICR_PA, PhysAddr(0x080a_0000));
}

#[test]
fn device_id_bits_are_clamped_to_devbits() {
    let _t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    // Devbits = 7: 8-bit DeviceIDs, a one-page device table.
    let fx = ItsFixture::with_typer((QEMU_GITS_TYPER & !(0x1f << 13)) | (7 << 13));
    let its = its_for(&mut gic, &fx);
    assert_eq!(its.device_id_bits(), 8);
    assert_eq!(fx.baser(0) & 0xff, 0);
    assert_eq!(
        its.map_device(0x100, 1).err(),
        Some(GicError::DeviceIdOutOfRange {
            device_id: 0x100,
            bits: 8
        })
    );
}

#[test]
fn creadr_not_moving_times_out_and_frees_everything() {
    let t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let before = t.frames();
    let fx = ItsFixture::qemu();
    assert_eq!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::Timeout {
            register: "GITS_CREADR"
        })
    );
    // The half-initialised ITS was disabled, its tables invalidated and its memory freed.
    assert_eq!(fx.ctlr() & 1, 0);
    assert_eq!(fx.baser(0) >> 63, 0);
    assert_eq!(fx.baser(0) >> 56, 1, "Type survives");
    assert_eq!(fx.cbaser(), 0);
    assert_eq!(t.frames(), before);
    assert!(gic.its().is_none());
}

#[test]
fn a_stall_reports_the_command_it_stopped_at() {
    let _t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let fx = ItsFixture::qemu();
    fx.region.write64(0x90, (1 << 5) | 1).unwrap(); // stalled at slot 1
    assert_eq!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::CommandStalled {
            offset: 0x20,
            opcode: cmd::opcode::INVALL
        })
    );
}

#[test]
fn missing_tables_and_non_physical_its_are_refused() {
    let t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let before = t.frames();
    let fx = ItsFixture::qemu();
    fx.region.write64(0x100, 0).unwrap();
    assert_eq!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::MissingTable {
            table: GicTable::Device
        })
    );
    let fx = ItsFixture::qemu();
    fx.region.write64(0x108, 0).unwrap();
    assert_eq!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::MissingTable {
            table: GicTable::Collection
        })
    );
    assert_eq!(
        fx.baser(0) >> 63,
        0,
        "the device table was made invalid again"
    );
    assert_eq!(t.frames(), before);
    // GITS_TYPER.HCC > 0: collections held in the ITS, no table needed.
    let fx = ItsFixture::with_typer(QEMU_GITS_TYPER | (1 << 24));
    fx.region.write64(0x108, 0).unwrap();
    fx.consume_to(3);
    assert!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default())
            .is_ok()
    );

    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let fx = ItsFixture::with_typer(QEMU_GITS_TYPER & !1);
    assert_eq!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::ItsNotPhysical)
    );
}

#[test]
fn an_enabled_its_that_never_quiesces_is_left_alone() {
    let _t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let fx = ItsFixture::qemu();
    fx.region.write32(0, 1).unwrap(); // Enabled, not quiescent
    assert_eq!(
        gic.add_its(&fx.region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::Timeout {
            register: "GITS_CTLR.Quiescent"
        })
    );
    assert_eq!(fx.ctlr() & 1, 0, "it was asked to disable");
    assert_eq!(fx.cbaser(), 0, "nothing was programmed");
}

#[test]
fn a_region_without_the_translation_frame_is_refused() {
    let _t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let region = kapi::mmio::fake_region(0x1_0000);
    assert!(matches!(
        gic.add_its(&region, ITS_PA, ItsConfig::default()).err(),
        Some(GicError::Mmio(_))
    ));
}

#[test]
fn device_lifecycle_map_vector_enable_disable_unmap() {
    let t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let fx = ItsFixture::qemu();
    let its = its_for(&mut gic, &fx);
    let lpis = its.lpis().clone();
    let before = t.frames();
    let rd = RdBase::ProcessorNumber(0);

    // MAPD + SYNC: one EventID bit for one vector, ITT in its own page.
    fx.consume_to(5);
    let mut dev = its.map_device(EDU, 1).unwrap();
    assert_eq!(
        (dev.device_id(), dev.event_bits(), dev.capacity()),
        (EDU, 1, 1)
    );
    let [w0, w1, w2, w3] = its.queued(3);
    assert_eq!((w0, w1, w3), (0x0000_0018_0000_0008, 0, 0));
    assert_eq!(w2 >> 63, 1, "V");
    let itt = w2 & 0x000f_ffff_ffff_ff00;
    assert!(itt != 0 && itt % 4096 == 0);
    assert_eq!(its.queued(4), encode(&Command::Sync { target: rd }));
    assert_eq!(t.frames() - before, 1, "one page of ITT");

    // MAPTI + INV + SYNC.
    fx.consume_to(8);
    let v = dev.alloc_vector().unwrap();
    assert_eq!(
        v,
        MsiVector {
            intid: LPI_BASE,
            event_id: 0
        }
    );
    assert_eq!(
        its.queued(5),
        [0x0000_0018_0000_000a, 0x0000_2000_0000_0000, 0, 0]
    );
    assert_eq!(its.queued(6), [0x0000_0018_0000_000c, 0, 0, 0]);
    assert_eq!(its.queued(7), encode(&Command::Sync { target: rd }));
    assert_eq!(lpis.config(v.intid), Some(0xa2), "starts disabled");
    assert_eq!(dev.vectors().collect::<Vec<_>>(), [v]);
    assert_eq!(
        dev.msi_message(v),
        MsiMessage {
            address: PhysAddr(0x0809_0040),
            data: 0
        }
    );
    assert_eq!(
        dev.alloc_vector().err(),
        Some(GicError::NoFreeEvent { device_id: EDU })
    );

    // kapi::irq::request: configure as edge, then enable (byte + INV + SYNC).
    gic.configure(v.line()).unwrap();
    fx.consume_to(10);
    gic.enable(v.intid);
    assert_eq!(lpis.config(v.intid), Some(0xa3));
    assert_eq!(
        its.queued(8),
        encode(&Command::Inv {
            device: EDU,
            event: 0
        })
    );
    assert_eq!(fx.cwriter(), 10 << 5);
    fx.consume_to(12);
    gic.disable(v.intid);
    assert_eq!(lpis.config(v.intid), Some(0xa2));
    assert_eq!(fx.cwriter(), 12 << 5);

    // A software MSI for self-tests.
    fx.consume_to(14);
    dev.trigger(v).unwrap();
    assert_eq!(its.queued(12), [0x0000_0018_0000_0003, 0, 0, 0]);

    // The same DeviceID cannot be mapped twice; bad vector counts are refused before any command.
    assert_eq!(
        its.map_device(EDU, 1).err(),
        Some(GicError::DeviceAlreadyMapped { device_id: EDU })
    );
    assert_eq!(
        its.map_device(1, 0).err(),
        Some(GicError::VectorCount {
            requested: 0,
            max: 1 << 16
        })
    );
    assert_eq!(fx.cwriter(), 14 << 5);

    // Unbind: DISCARD every vector, MAPD V=0, SYNC; then the LPI and the ITT are free.
    fx.consume_to(17);
    drop(dev);
    assert_eq!(its.queued(14), [0x0000_0018_0000_000f, 0, 0, 0]);
    assert_eq!(its.queued(15), [0x0000_0018_0000_0008, 0, 0, 0]);
    assert_eq!(its.queued(16), encode(&Command::Sync { target: rd }));
    assert_eq!(lpis.in_use(), 0);
    assert_eq!(t.frames(), before);
    // The LPI is gone from the IRQ chip too, and enabling it now does nothing.
    assert!(gic.configure(v.line()).is_err());
    gic.enable(v.intid);
    assert_eq!(lpis.config(v.intid), Some(0xa2));
    assert_eq!(fx.cwriter(), 17 << 5);
    // The DeviceID can be mapped again.
    fx.consume_to(19);
    let _again = its.map_device(EDU, 1).unwrap();
}

#[test]
fn vectors_take_event_ids_from_zero_and_can_be_freed_one_by_one() {
    let _t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let fx = ItsFixture::qemu();
    let its = its_for(&mut gic, &fx);
    fx.consume_to(5);
    let mut dev = its.map_device(EDU, 3).unwrap();
    // Three vectors need two EventID bits: MAPD.Size = 1.
    assert_eq!(its.queued(3)[1], 1);
    let mut next = 5;
    let mut vs = Vec::new();
    for e in 0..3 {
        next += 3;
        fx.consume_to(next);
        let v = dev.alloc_vector().unwrap();
        assert_eq!(v.event_id, e);
        vs.push(v);
    }
    next += 2;
    fx.consume_to(next);
    dev.free_vector(vs[1]).unwrap();
    assert_eq!(its.queued(next - 2), [0x0000_0018_0000_000f, 1, 0, 0]);
    assert_eq!(its.lpis().in_use(), 2);
    assert_eq!(
        dev.free_vector(vs[1]).err(),
        Some(GicError::NotMapped { intid: vs[1].intid })
    );
    assert_eq!(
        dev.trigger(vs[1]).err(),
        Some(GicError::NotMapped { intid: vs[1].intid })
    );
    // The freed EventID is reused; the LPI allocator moves on to a fresh INTID.
    next += 3;
    fx.consume_to(next);
    let v = dev.alloc_vector().unwrap();
    assert_eq!(v.event_id, 1);
    assert_eq!(v.intid, LPI_BASE + 3);
    // Drop: three DISCARDs, MAPD V=0, SYNC.
    fx.consume_to(next + 5);
    drop(dev);
    assert_eq!(its.lpis().in_use(), 0);
}

#[test]
fn a_failed_unmap_keeps_the_itt_and_the_lpis() {
    let t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let fx = ItsFixture::qemu();
    let its = its_for(&mut gic, &fx);
    let before = t.frames();
    fx.consume_to(5);
    let mut dev = its.map_device(EDU, 1).unwrap();
    fx.consume_to(8);
    dev.alloc_vector().unwrap();
    // The ITS does not consume the unmap: nothing it may still use is reused.
    drop(dev);
    assert_eq!(its.lpis().in_use(), 1);
    assert_eq!(t.frames() - before, 1);
}

#[test]
fn the_command_ring_wraps() {
    let _t = serial();
    let (mut gic, _gicd, _gicr) = gic_with_lpis(0);
    let fx = ItsFixture::qemu();
    let its = its_for(&mut gic, &fx);
    fx.consume_to(5);
    let mut dev = its.map_device(EDU, 1).unwrap();
    fx.consume_to(8);
    let v = dev.alloc_vector().unwrap();
    gic.configure(v.line()).unwrap();
    // Each enable or disable queues INV + SYNC; 2048 slots wrap after 1020 of them.
    let mut write = 8u32;
    for i in 0..1030 {
        write = (write + 2) % 2048;
        fx.consume_to(write);
        if i % 2 == 0 {
            gic.enable(v.intid);
        } else {
            gic.disable(v.intid);
        }
        assert_eq!(fx.cwriter(), u64::from(write) << 5);
    }
    assert_eq!(write, (8 + 2060) % 2048);
    // Slots 2046/2047 held the last pair before the wrap; slots 0/1 the first after it.
    assert_eq!(
        its.queued(2046),
        encode(&Command::Inv {
            device: EDU,
            event: 0
        })
    );
    assert_eq!(
        its.queued(0),
        encode(&Command::Inv {
            device: EDU,
            event: 0
        })
    );
    assert_eq!(
        its.queued(1),
        encode(&Command::Sync {
            target: RdBase::ProcessorNumber(0)
        })
    );
    fx.consume_to(write + 3);
    drop(dev);
}
