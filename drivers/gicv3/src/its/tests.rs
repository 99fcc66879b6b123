//! The ITS driver against a RAM register file. The test plays the ITS by moving GITS_CREADR to
//! where the hardware would be after the commands the call is expected to issue.

use super::*;
use crate::testutil::{GICR_PA, ITS_PA, ItsFixture, QEMU_GITS_TYPER, gic_with_lpis, serial};
use crate::{GicV3, LPI_BASE};
use kapi::irq::IrqChip;

const EDU: u32 = 0x18; // 00:03.0
/// 02:00.0: the requester ID of every function behind a PCIe-to-PCI bridge whose secondary bus
/// is 2 (the functions' DMA alias).
const ALIAS: u32 = 0x200;

fn its_for(gic: &mut GicV3, fx: &ItsFixture) -> Arc<Its> {
    // MAPC + INVALL + SYNC.
    fx.consume_to(3);
    gic.add_its(&fx.region, ITS_PA, ItsConfig::default())
        .unwrap()
}

/// What most tests start from: the fake platform (held: tests run one at a time), a GIC with
/// LPIs on CPU 0 and its register files, and an ITS on QEMU's registers, collection mapped.
struct Rig {
    t: crate::testutil::Serial,
    gic: GicV3,
    _regions: (MmioRegion, MmioRegion),
    fx: ItsFixture,
    its: Arc<Its>,
}

fn rig() -> Rig {
    let t = serial();
    let (mut gic, gicd, gicr) = gic_with_lpis(0);
    let fx = ItsFixture::qemu();
    let its = its_for(&mut gic, &fx);
    Rig {
        t,
        gic,
        _regions: (gicd, gicr),
        fx,
        its,
    }
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
    let Rig {
        t,
        gic,
        _regions,
        fx,
        its,
    } = rig();
    let lpis = its.lpis().clone();
    let before = t.frames();
    let rd = RdBase::ProcessorNumber(0);

    // MAPD + SYNC: an ITT of 256 EventIDs (MAPD.Size = 7), as many as fill its page.
    fx.consume_to(5);
    let mut dev = its.map_device(EDU, 1).unwrap();
    assert_eq!(
        (dev.device_id(), dev.event_bits(), dev.capacity()),
        (EDU, 8, 1)
    );
    let [w0, w1, w2, w3] = its.queued(3);
    assert_eq!((w0, w1, w3), (0x0000_0018_0000_0008, 7, 0));
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

    // A second handle on a mapped DeviceID takes a block of its own, aligned to its size,
    // without a command; bad vector counts are refused before any command.
    let sibling = its.map_device(EDU, 2).unwrap();
    assert_eq!(sibling.first_event(), 2);
    drop(sibling);
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
    let Rig {
        t: _t,
        gic: _gic,
        _regions,
        fx,
        its,
    } = rig();
    fx.consume_to(5);
    let mut dev = its.map_device(EDU, 3).unwrap();
    // Three vectors fit the page-sized ITT: MAPD.Size = 7.
    assert_eq!(its.queued(3)[1], 7);
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
    let Rig {
        t,
        gic: _gic,
        _regions,
        fx,
        its,
    } = rig();
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
    let Rig {
        t: _t,
        gic,
        _regions,
        fx,
        its,
    } = rig();
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

/// How many MAPDs (valid or not) slots `0..end` of the queue hold.
fn mapds(its: &Its, end: u32) -> usize {
    (0..end)
        .filter(|&i| its.queued(i)[0] & 0xff == u64::from(cmd::opcode::MAPD))
        .count()
}

#[test]
fn aliased_functions_share_one_itt_with_their_own_event_ids() {
    let Rig {
        t,
        gic: _gic,
        _regions,
        fx,
        its,
    } = rig();
    let before = t.frames();

    // The first function's MAPD gives the DeviceID an ITT with room for its siblings.
    fx.consume_to(5);
    let mut first = its.map_device(ALIAS, 1).unwrap();
    assert_eq!((first.event_bits(), first.first_event()), (8, 0));
    assert_eq!(its.queued(3)[0], (u64::from(ALIAS) << 32) | 0x08);
    assert_eq!(its.queued(3)[1], 7);
    fx.consume_to(8);
    let v1 = first.alloc_vector().unwrap();
    assert_eq!(v1.event_id, 0);

    // The second function gets the next EventID of the same ITT, without a command.
    let mut second = its.map_device(ALIAS, 1).unwrap();
    assert_eq!(
        fx.cwriter(),
        8 << 5,
        "no MAPD for a DeviceID mapped already"
    );
    assert_eq!((second.event_bits(), second.first_event()), (8, 1));
    fx.consume_to(11);
    let v2 = second.alloc_vector().unwrap();
    assert_eq!(v2.event_id, 1);
    assert_ne!(v2.intid, v1.intid);
    assert_eq!(
        its.queued(8),
        encode(&Command::Mapti {
            device: ALIAS,
            event: 1,
            intid: v2.intid,
            icid: COLLECTION
        })
    );
    assert_eq!(
        (first.msi_message(v1).data, second.msi_message(v2).data),
        (0, 1)
    );
    // Each handle knows only its own vectors.
    assert_eq!(first.vectors().collect::<Vec<_>>(), [v1]);
    assert_eq!(second.vectors().collect::<Vec<_>>(), [v2]);
    assert_eq!(
        first.trigger(v2).err(),
        Some(GicError::NotMapped { intid: v2.intid })
    );

    // A multi-message MSI function gets a block aligned to its size (data = base | vector).
    let third = its.map_device(ALIAS, 3).unwrap();
    assert_eq!((third.first_event(), third.capacity()), (4, 3));

    assert_eq!(mapds(&its, 11), 1, "one MAPD for the three functions");
    assert_eq!(t.frames() - before, 1, "one ITT page");
    drop(third);
    fx.consume_to(13);
    drop(second);
    fx.consume_to(16);
    drop(first);
    assert_eq!(t.frames(), before);
}

#[test]
fn only_the_last_handle_on_a_shared_device_id_unmaps_it() {
    let Rig {
        t,
        gic: _gic,
        _regions,
        fx,
        its,
    } = rig();
    let rd = RdBase::ProcessorNumber(0);
    let before = t.frames();
    fx.consume_to(5);
    let mut first = its.map_device(ALIAS, 1).unwrap();
    fx.consume_to(8);
    let v1 = first.alloc_vector().unwrap();
    let mut second = its.map_device(ALIAS, 1).unwrap();
    fx.consume_to(11);
    let v2 = second.alloc_vector().unwrap();

    // The first function unbinds: its own event is discarded, the DeviceID stays mapped.
    fx.consume_to(13);
    drop(first);
    assert_eq!(fx.cwriter(), 13 << 5);
    assert_eq!(
        its.queued(11),
        encode(&Command::Discard {
            device: ALIAS,
            event: v1.event_id
        })
    );
    assert_eq!(its.queued(12), encode(&Command::Sync { target: rd }));
    assert_eq!(mapds(&its, 13), 1, "no MAPD V=0 yet");
    assert!(!its.lpis().is_allocated(v1.intid), "its LPI is free");
    assert_eq!(its.lpis().in_use(), 1);
    assert_eq!(t.frames() - before, 1, "the ITT stays");
    // The second still works, and a new function may take the EventID the first gave back.
    fx.consume_to(15);
    second.trigger(v2).unwrap();
    let again = its.map_device(ALIAS, 1).unwrap();
    assert_eq!(again.first_event(), v1.event_id);
    drop(again);
    assert_eq!(
        fx.cwriter(),
        15 << 5,
        "a handle without vectors goes without a command"
    );

    // The last one unmaps the DeviceID and frees the ITT.
    fx.consume_to(18);
    drop(second);
    assert_eq!(
        its.queued(15),
        encode(&Command::Discard {
            device: ALIAS,
            event: v2.event_id
        })
    );
    assert_eq!(
        its.queued(16),
        encode(&Command::Mapd {
            device: ALIAS,
            itt: None
        })
    );
    assert_eq!(its.queued(17), encode(&Command::Sync { target: rd }));
    assert_eq!(its.lpis().in_use(), 0);
    assert_eq!(t.frames(), before);
}

#[test]
fn a_full_shared_itt_is_a_clear_error_that_leaks_nothing() {
    let Rig {
        t,
        gic: _gic,
        _regions,
        fx,
        its,
    } = rig();
    let before = t.frames();
    // An ITT of 256 EventIDs, which two functions of 128 vectors fill.
    fx.consume_to(5);
    let mut first = its.map_device(ALIAS, 128).unwrap();
    fx.consume_to(8);
    first.alloc_vector().unwrap();
    let second = its.map_device(ALIAS, 128).unwrap();
    assert_eq!(second.first_event(), 128);

    let frames = t.frames();
    let err = its.map_device(ALIAS, 1).unwrap_err();
    assert_eq!(
        err,
        GicError::IttFull {
            device_id: ALIAS,
            requested: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "DeviceID 0x200's ITT has no room for 1 more vector (shared by aliased functions)"
    );
    // A larger request fails the same way: the ITT cannot grow.
    assert_eq!(
        its.map_device(ALIAS, 4).err(),
        Some(GicError::IttFull {
            device_id: ALIAS,
            requested: 4
        })
    );
    assert_eq!(fx.cwriter(), 8 << 5, "no command");
    assert_eq!(t.frames(), frames, "no ITT allocated");
    assert_eq!(its.lpis().in_use(), 1);

    // The refused calls did not count as users: the second handle goes silently, and the first
    // is the last one, which unmaps the DeviceID and frees everything.
    drop(second);
    assert_eq!(fx.cwriter(), 8 << 5);
    fx.consume_to(11);
    drop(first);
    assert_eq!(
        its.queued(9),
        encode(&Command::Mapd {
            device: ALIAS,
            itt: None
        })
    );
    assert_eq!(its.lpis().in_use(), 0);
    assert_eq!(t.frames(), before);
}

#[test]
fn a_failed_discard_on_a_shared_device_id_keeps_its_event_ids_and_lpis() {
    let Rig {
        t: _t,
        gic: _gic,
        _regions,
        fx,
        its,
    } = rig();
    fx.consume_to(5);
    let first = its.map_device(ALIAS, 1).unwrap();
    let mut second = its.map_device(ALIAS, 1).unwrap();
    fx.consume_to(8);
    second.alloc_vector().unwrap();
    // The ITS does not consume the DISCARD: the EventID may still be translated, so it is not
    // handed out again, and neither is the LPI.
    let lost = second.first_event();
    drop(second);
    assert_eq!(its.lpis().in_use(), 1);
    let next = its.map_device(ALIAS, 1).unwrap();
    assert_eq!(next.first_event(), lost + 1);
    drop(next);
    // The first is still the last user: MAPD V=0 + SYNC after the two unconsumed commands.
    fx.consume_to(12);
    drop(first);
    assert_eq!(
        its.queued(10),
        encode(&Command::Mapd {
            device: ALIAS,
            itt: None
        })
    );
}
