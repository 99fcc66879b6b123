//! Host tests of the driver (instance, command queue, events, domains) against the
//! register-level model [`FakeSmmu`], and through the real IOMMU core.

extern crate std;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use iommu::{
    AttachTarget, DomainType, FwSpec, IommuCore, IommuDomain, IommuError, IommuOps, Prot,
    ReservedKind, ReservedRegion,
};
use kapi::platform::Platform;
use kapi::platform::fake::FakePlatform;
use kapi::{Iova, PhysAddr};

use crate::cmd::opcode;
use crate::event::{CmdqError, EventId};
use crate::fake::{Access, FakeSmmu};
use crate::features::IdRegs;
use crate::hw::{Reg, Reg64};
use crate::instance::Smmu;
use crate::ste::SteConfig;
use crate::{CmdqFault, Requirement, SmmuError, StreamId};

/// Tests that allocate frames hold this, so the fake platform's frame counter is theirs alone.
pub(crate) type Serial = std::sync::MutexGuard<'static, ()>;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs the fake platform and the capturing logger, and serialises the test.
pub(crate) fn serial() -> (Serial, &'static FakePlatform) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    LOGGER_INSTALLED.call_once(|| {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Debug);
    });
    LINES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    (guard, kapi::platform::fake::install())
}

struct Capture;
static LOGGER: Capture = Capture;
static LOGGER_INSTALLED: std::sync::Once = std::sync::Once::new();
static LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        // As the kernel's console prints them, without the timestamp.
        let level = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        let line = format!("{}: {level}{}", record.target(), record.args());
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Lines logged since the test's `serial()` that contain `needle`.
fn logged(needle: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

const NAME: &str = "9050000.smmuv3";
const NODE: &str = "/smmuv3@9050000";
const EDU: &str = "0000:00:03.0";
const EDU_SID: u32 = 0x18;

/// Brought up and enabled, as the driver's probe does.
fn up(fake: &FakeSmmu) -> Arc<Smmu> {
    let smmu = Smmu::bring_up(Box::new(fake.clone()), NAME, NODE).unwrap();
    smmu.enable_interrupts(true, true).unwrap();
    smmu.enable_translation().unwrap();
    smmu
}

fn op(words: &[u64; 2]) -> u8 {
    (words[0] & 0xff) as u8
}

fn sid_of(words: &[u64; 2]) -> u32 {
    (words[0] >> 32) as u32
}

/// Index of the first write matching `access` at or after `from`.
fn index_of(writes: &[Access], from: usize, access: Access) -> usize {
    writes[from..]
        .iter()
        .position(|w| *w == access)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("{access:?} not written after #{from}: {writes:?}"))
}

/// A stage-1 F_TRANSLATION event record (CLASS = IN).
fn translation_fault(sid: u32, iova: u64, read: bool) -> [u64; 4] {
    [
        u64::from(sid) << 32 | 0x10,
        2 << 40 | u64::from(read) << 35,
        iova,
        0,
    ]
}

// -------------------------------------------------------------------------------------------
// Bring-up

#[test]
fn smmuv3_instance_reset_follows_the_architectural_order() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    let w = fake.writes();
    // GBPA.ABORT with UPDATE before anything else: no bypass while the SMMU is reset.
    assert_eq!(w[0], Access::Write(Reg::Gbpa, 0x8010_1000));
    let cr0_off = index_of(&w, 1, Access::Write(Reg::Cr0, 0));
    let cr1 = index_of(&w, cr0_off, Access::Write(Reg::Cr1, 0xd75));
    let cr2 = index_of(&w, cr1, Access::Write(Reg::Cr2, 0b110));
    let strtab_cfg = index_of(&w, cr2, Access::Write(Reg::StrtabBaseCfg, 0x1_0210));
    let strtab = w
        .iter()
        .position(|a| matches!(a, Access::Write64(Reg64::StrtabBase, _)))
        .unwrap();
    assert!(cr2 < strtab && strtab < strtab_cfg);
    let cmdq_base = w
        .iter()
        .position(|a| matches!(a, Access::Write64(Reg64::CmdqBase, v) if v & 0x1f == 8))
        .unwrap();
    let cmdqen = index_of(&w, cmdq_base, Access::Write(Reg::Cr0, 0b1000));
    assert!(strtab_cfg < cmdq_base);
    index_of(&w, cmdq_base, Access::Write(Reg::CmdqProd, 0));
    let evtq_base = w
        .iter()
        .position(|a| matches!(a, Access::Write64(Reg64::EventqBase, v) if v & 0x1f == 9))
        .unwrap();
    assert!(cmdqen < evtq_base);
    let eventqen = index_of(&w, evtq_base, Access::Write(Reg::Cr0, 0b1100));
    let irq_off = index_of(&w, eventqen, Access::Write(Reg::IrqCtrl, 0));
    let irq_on = index_of(&w, irq_off, Access::Write(Reg::IrqCtrl, 0b101));
    let smmuen = index_of(&w, irq_on, Access::Write(Reg::Cr0, 0b1101));
    assert_eq!(smmuen, w.len() - 1, "SMMUEN is the last write");
    // CFGI_ALL and TLBI_NSNH_ALL with their CMD_SYNC, between CMDQEN and EVENTQEN; no EL2
    // invalidation without IDR0.HYP.
    assert_eq!(
        fake.commands(),
        [[0x04, 0x1f], [0x30, 0], [opcode::CMD_SYNC, 0]]
    );
    assert_eq!(fake.reg(Reg::Cr0Ack), 0b1101);
    assert_eq!(fake.reg(Reg::Gbpa) & (1 << 20 | 1 << 31), 1 << 20);
    assert_eq!(smmu.cr0(), 0b1101);
    // The level-1 table starts all invalid (Span = 0).
    let l1 = fake.with(|m| m.reg64(Reg64::StrtabBase)) & !(1 << 62);
    for i in 0..256 {
        assert_eq!(fake.read_memory(l1 + 8 * i), Some(0));
    }
    assert_eq!(smmu.l2_tables(), 0);
    // The feature line, once.
    assert_eq!(
        logged("SMMUv3.1"),
        [
            "smmuv3 9050000.smmuv3: SMMUv3.1, S1+S2, 4K/16K/64K, OAS 44, SIDSIZE 16, 2-level ST, \
             CMDQS 19, EVENTQS 19, ASID16, RIL, COHACC"
        ]
    );
    assert!(logged("warning").is_empty() && logged("error").is_empty());
}

#[test]
fn smmuv3_instance_hyp_adds_the_el2_invalidation() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::with_ids(IdRegs {
        idr0: IdRegs::QEMU_VIRT_10_0.idr0 | 1 << 9,
        ..IdRegs::QEMU_VIRT_10_0
    });
    let _smmu = up(&fake);
    assert_eq!(fake.opcodes(), [0x04, 0x30, 0x20, opcode::CMD_SYNC as u8]);
}

#[test]
fn smmuv3_instance_slow_acknowledgements_are_waited_for() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    fake.with(|m| {
        m.cr0_ack_delay = 5;
        m.lazy = true;
    });
    let smmu = up(&fake);
    assert_eq!(fake.reg(Reg::Cr0Ack), 0b1101);
    assert!(smmu.sync().is_ok());
}

#[test]
fn smmuv3_instance_stuck_handshakes_time_out_naming_the_register() {
    let (_serial, platform) = serial();
    let before = platform.frames_in_use();
    let fake = FakeSmmu::qemu();
    fake.with(|m| m.cr0_stuck = true);
    let err = Smmu::bring_up(Box::new(fake.clone()), NAME, NODE).unwrap_err();
    assert_eq!(
        err,
        SmmuError::Timeout {
            register: Reg::Cr0Ack
        }
    );
    assert_eq!(err.to_string(), "SMMU_CR0ACK handshake timed out");
    // It was disabled again (CR0 = 0 reads back acknowledged), so its memory could go.
    assert_eq!(fake.reg(Reg::Cr0), 0);
    assert_eq!(platform.frames_in_use(), before);

    let fake = FakeSmmu::qemu();
    fake.with(|m| m.gbpa_stuck = true);
    assert_eq!(
        Smmu::bring_up(Box::new(fake), NAME, NODE).unwrap_err(),
        SmmuError::Timeout {
            register: Reg::Gbpa
        }
    );
}

#[test]
fn smmuv3_instance_refuses_an_smmu_it_cannot_use_without_touching_it() {
    let (_serial, platform) = serial();
    let before = platform.frames_in_use();
    let fake = FakeSmmu::with_ids(IdRegs {
        idr0: IdRegs::QEMU_VIRT_10_0.idr0 & !(1 << 1),
        ..IdRegs::QEMU_VIRT_10_0
    });
    assert_eq!(
        Smmu::bring_up(Box::new(fake.clone()), NAME, NODE).unwrap_err(),
        SmmuError::Unsupported(Requirement::Stage1)
    );
    assert!(fake.writes().is_empty());
    assert_eq!(platform.frames_in_use(), before);
    // The feature line still says what it is.
    assert_eq!(logged("SMMUv3.1, S2,").len(), 1);
}

#[test]
fn smmuv3_instance_small_sid_spaces_get_a_linear_all_abort_table() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::with_ids(IdRegs {
        idr1: (IdRegs::QEMU_VIRT_10_0.idr1 & !0x3f) | 8,
        ..IdRegs::QEMU_VIRT_10_0
    });
    let smmu = up(&fake);
    assert_eq!(fake.reg(Reg::StrtabBaseCfg), 8);
    for sid in 0..256 {
        assert_eq!(smmu.ste(StreamId(sid)).unwrap().config(), SteConfig::Abort);
    }
    assert_eq!(
        smmu.probe_device(EDU, &[0x100]),
        Err(IommuError::InvalidId {
            id: 0x100,
            limit: 0xff
        })
    );
    fake.clear_log();
    smmu.probe_device(EDU, &[0xff]).unwrap();
    assert!(fake.commands().is_empty(), "no level-2 table to publish");
}

// -------------------------------------------------------------------------------------------
// Streams

#[test]
fn smmuv3_instance_probe_device_publishes_level2_tables_lazily() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    fake.clear_log();
    assert_eq!(smmu.ste(StreamId(EDU_SID)), None);
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    assert_eq!(smmu.l2_tables(), 1);
    // CFGI_STE_RANGE over the 256 StreamIDs of bus 0 (Range = 7), then CMD_SYNC.
    assert_eq!(fake.commands(), [[0x04, 7], [opcode::CMD_SYNC, 0]]);
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
    assert_eq!(smmu.master(StreamId(EDU_SID)).as_deref(), Some(EDU));
    // Same bus: nothing to publish. Bus 0x12: its own table.
    fake.clear_log();
    smmu.probe_device("0000:00:04.0", &[0x20]).unwrap();
    assert!(fake.commands().is_empty());
    smmu.probe_device("0000:12:00.0", &[0x1200]).unwrap();
    assert_eq!(fake.commands()[0], [0x0000_1200_0000_0004, 7]);
    assert_eq!(smmu.l2_tables(), 2);
    // Beyond SIDSIZE: refused before anything is allocated.
    assert_eq!(
        smmu.probe_device("x", &[0x30, 0x1_0000]),
        Err(IommuError::InvalidId {
            id: 0x1_0000,
            limit: 0xffff
        })
    );
    assert_eq!(smmu.master(StreamId(0x30)), None);
    assert_eq!(smmu.stats().streams_not_blocked, 0);
}

#[test]
fn smmuv3_instance_attach_writes_stes_and_keeps_the_domain_alive() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    fake.clear_log();

    smmu.attach(&[EDU_SID], &AttachTarget::Identity).unwrap();
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Bypass
    );
    // Every sync point is CFGI_STE (Leaf = 0) for the StreamID, then CMD_SYNC.
    let cmds = fake.commands();
    assert!(!cmds.is_empty());
    for pair in cmds.chunks(2) {
        assert_eq!(op(&pair[0]), opcode::CFGI_STE as u8);
        assert_eq!(
            (sid_of(&pair[0]), pair[0][0] >> 10 & 1, pair[0][1]),
            (EDU_SID, 0, 0)
        );
        assert_eq!(op(&pair[1]), opcode::CMD_SYNC as u8);
    }
    assert_eq!(smmu.stats().streams_not_blocked, 1);

    let domain = smmu.new_domain().unwrap();
    let cd = domain.cd_address();
    let asid = domain.asid();
    let as_dyn: Arc<dyn IommuDomain> = domain.clone();
    smmu.attach(&[EDU_SID], &AttachTarget::Translated(as_dyn))
        .unwrap();
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Stage1 { cd }
    );
    assert!(domain.cd().is_valid());
    assert_eq!(domain.cd().asid(), asid);
    // The attached stream holds the domain: dropping the caller's handle frees nothing.
    let weak = Arc::downgrade(&domain);
    drop(domain);
    assert!(weak.upgrade().is_some());
    assert_eq!(smmu.stats().domains, 1);

    fake.clear_log();
    smmu.attach(&[EDU_SID], &AttachTarget::Blocked).unwrap();
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
    // Detached: the domain went, its ASID invalidated (after the STE stopped using it).
    assert!(weak.upgrade().is_none());
    let cmds = fake.commands();
    let tlbi = cmds
        .iter()
        .position(|c| op(c) == opcode::TLBI_NH_ASID as u8)
        .unwrap();
    assert_eq!((cmds[tlbi][0] >> 48) as u16, asid.0);
    assert!(cmds[..tlbi].iter().any(|c| op(c) == opcode::CFGI_STE as u8));
    assert_eq!(smmu.asids_in_use(), 0);
    assert_eq!(smmu.stats(), iommu::InstanceStats::default());
}

#[test]
fn smmuv3_instance_attach_refuses_foreign_domains_and_unprobed_streams() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    let other = up(&FakeSmmu::host());
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    let foreign = other.alloc_domain().unwrap();
    assert_eq!(
        smmu.attach(&[EDU_SID], &AttachTarget::Translated(foreign)),
        Err(IommuError::Driver(
            "the domain belongs to another IOMMU".into()
        ))
    );
    assert_eq!(
        smmu.attach(&[EDU_SID, 0x40], &AttachTarget::Identity),
        Err(IommuError::Driver("StreamID 0x40 was not probed".into()))
    );
    // Nothing changed for the probed one either.
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
}

#[test]
fn smmuv3_instance_release_blocks_a_stream_left_attached() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    smmu.attach(&[EDU_SID], &AttachTarget::Identity).unwrap();
    smmu.release_device(&[EDU_SID]);
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
    assert_eq!(smmu.master(StreamId(EDU_SID)), None);
    assert_eq!(logged("released while not blocked").len(), 1);
}

// -------------------------------------------------------------------------------------------
// Command queue

fn check_illegal_command_recovery(lazy: bool) {
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    fake.with(|m| m.lazy = lazy);
    let index = smmu.cmdq_registers().0 & 0xff;
    fake.clear_log();
    // Opcode 0x07 does not exist: CERROR_ILL.
    let err = smmu.submit_raw_for_test([0x07, 0]).unwrap_err();
    let fault = CmdqFault {
        error: CmdqError::Illegal,
        index,
        opcode: 0x07,
    };
    assert_eq!(err, SmmuError::CommandRefused(fault));
    assert_eq!(
        logged("command queue error"),
        [format!(
            "smmuv3 9050000.smmuv3: error: command queue error CERROR_ILL at index {index} (opcode 0x07)"
        )]
    );
    let stats = smmu.cmdq_stats();
    assert_eq!((stats.errors, stats.last_error), (1, Some(fault)));
    // Acknowledged; the refused entry became a CMD_SYNC and was consumed with the rest.
    assert_eq!(fake.reg(Reg::Gerror), fake.reg(Reg::Gerrorn));
    assert_eq!(fake.opcodes(), [opcode::CMD_SYNC as u8; 2]);
    // The queue keeps working.
    smmu.sync().unwrap();
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    let (prod, cons) = smmu.cmdq_registers();
    assert_eq!(prod, cons & 0xf_ffff);
    assert_eq!(smmu.cmdq_stats().errors, 1);
}

#[test]
fn smmuv3_cmdq_illegal_command_is_reported_and_skipped() {
    let (_serial, _) = serial();
    check_illegal_command_recovery(false);
}

#[test]
fn smmuv3_cmdq_illegal_command_is_skipped_on_slow_hardware_too() {
    let (_serial, _) = serial();
    check_illegal_command_recovery(true);
}

#[test]
fn smmuv3_cmdq_secure_commands_are_refused_on_the_non_secure_queue() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    // CFGI_STE with SSec = 1.
    let err = smmu.submit_raw_for_test([0x18_0000_0403, 0]).unwrap_err();
    assert!(matches!(
        err,
        SmmuError::CommandRefused(CmdqFault {
            error: CmdqError::Illegal,
            opcode: 0x03,
            ..
        })
    ));
}

#[test]
fn smmuv3_cmdq_wraps_around_the_queue() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    // 256-entry queue: 300 syncs wrap it.
    for _ in 0..300 {
        smmu.sync().unwrap();
    }
    let (prod, cons) = smmu.cmdq_registers();
    assert_eq!(prod, cons);
    assert_eq!(smmu.cmdq_stats().syncs, 301);
}

#[test]
fn smmuv3_gerror_handler_repairs_a_stopped_command_queue() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    fake.raise_command_error(1);
    smmu.handle_gerror();
    assert_eq!(fake.reg(Reg::Gerror), fake.reg(Reg::Gerrorn));
    assert_eq!(smmu.cmdq_stats().errors, 1);
    assert!(smmu.sync().is_ok());
}

#[test]
fn smmuv3_cmdq_a_disabled_smmu_takes_no_commands() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    smmu.shutdown().unwrap();
    assert_eq!(smmu.sync(), Err(SmmuError::Disabled));
    let w = fake.writes();
    assert_eq!(
        w[w.len() - 2..],
        [Access::Write(Reg::IrqCtrl, 0), Access::Write(Reg::Cr0, 0)]
    );
}

// -------------------------------------------------------------------------------------------
// Events

#[test]
fn smmuv3_events_are_decoded_logged_counted_and_kept() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    assert!(fake.inject_event(translation_fault(EDU_SID, 0x800_0000, false)));
    assert!(fake.inject_event(translation_fault(0x99, 0x1000, true)));
    smmu.handle_eventq();
    let events = smmu.recent_events();
    assert_eq!(events.len(), 2);
    let e = events[0];
    assert_eq!(
        (e.id, e.sid, e.input_addr, e.read),
        (
            EventId::FTranslation,
            StreamId(EDU_SID),
            Iova(0x800_0000),
            false
        )
    );
    assert_eq!(smmu.fault_count(StreamId(EDU_SID)), 1);
    assert_eq!(smmu.fault_total(), 2);
    assert_eq!(
        logged("F_TRANSLATION"),
        [
            "smmuv3 9050000.smmuv3: warning: F_TRANSLATION sid 0x18 (0000:00:03.0) iova 0x8000000 write",
            "smmuv3 9050000.smmuv3: warning: F_TRANSLATION sid 0x99 iova 0x1000 read",
        ]
    );
    assert_eq!(fake.reg(Reg::EventqCons), fake.reg(Reg::EventqProd));
}

#[test]
fn smmuv3_events_are_rate_limited() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    for i in 0..30 {
        assert!(fake.inject_event(translation_fault(0x40, i << 12, true)));
    }
    smmu.handle_eventq();
    assert_eq!(smmu.fault_total(), 30);
    assert_eq!(logged("F_TRANSLATION").len(), 10);
    assert_eq!(
        smmu.recent_events().len(),
        crate::evtq::RECENT_EVENTS.min(30)
    );
}

#[test]
fn smmuv3_event_queue_overflow_is_reported_once() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    for round in 0..2 {
        // 512 entries: the 513th event is dropped and GERROR.EVENTQ_ABT_ERR raised.
        for i in 0..512 {
            assert!(fake.inject_event(translation_fault(0x40, i << 12, true)));
        }
        assert!(!fake.inject_event(translation_fault(0x40, 0, true)));
        smmu.handle_gerror();
        assert_eq!(fake.reg(Reg::Gerror), fake.reg(Reg::Gerrorn));
        assert_eq!(smmu.fault_total(), 512 * (round + 1));
        assert_eq!(smmu.event_overflows(), round + 1);
    }
    let lines = logged("overflowed");
    assert_eq!(
        lines,
        [
            "smmuv3 9050000.smmuv3: warning: event queue overflowed: events lost (at least 1; \
          the SMMU does not count them) after 512 received; later overflows are counted, not logged"
        ]
    );
}

#[test]
fn smmuv3_fault_flood_cuts_the_stream_off_until_release() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::qemu();
    let smmu = up(&fake);
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    smmu.attach(&[EDU_SID], &AttachTarget::Identity).unwrap();
    for _ in 0..2 {
        for i in 0..500 {
            assert!(fake.inject_event(translation_fault(EDU_SID, i << 12, false)));
        }
        smmu.handle_eventq();
    }
    assert_eq!(smmu.fault_count(StreamId(EDU_SID)), 1000);
    assert!(smmu.is_cut_off(StreamId(EDU_SID)));
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
    assert_eq!(
        logged("stream aborted"),
        [
            "smmuv3 9050000.smmuv3: error: StreamID 0x18 (0000:00:03.0): 1000 events within 1s: \
          stream aborted until the device is released"
        ]
    );
    // What the rate limiter held back is counted just before the cut-off line.
    let lines = logged("smmuv3");
    let cut = lines
        .iter()
        .position(|l| l.contains("stream aborted"))
        .unwrap();
    assert!(
        lines[cut - 1].ends_with(" events suppressed"),
        "{:?}",
        &lines[..=cut]
    );
    // Attaching again does not reopen it...
    smmu.attach(&[EDU_SID], &AttachTarget::Identity).unwrap();
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
    assert_eq!(smmu.stats().streams_not_blocked, 0);
    // ... releasing the device does, for whoever probes it next.
    smmu.attach(&[EDU_SID], &AttachTarget::Blocked).unwrap();
    smmu.release_device(&[EDU_SID]);
    assert_eq!(smmu.fault_count(StreamId(EDU_SID)), 0);
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    assert!(!smmu.is_cut_off(StreamId(EDU_SID)));
    smmu.attach(&[EDU_SID], &AttachTarget::Identity).unwrap();
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Bypass
    );
}

// -------------------------------------------------------------------------------------------
// Domains

/// The TLBI commands among `cmds`.
fn tlbis(cmds: &[[u64; 2]]) -> Vec<[u64; 2]> {
    cmds.iter()
        .copied()
        .filter(|c| (0x10..=0x30).contains(&op(c)))
        .collect()
}

#[test]
fn smmuv3_domain_unmap_gathers_and_sync_issues_the_planned_tlbis() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    let d = smmu.new_domain().unwrap();
    let asid = u64::from(d.asid().0);
    d.map(Iova(0x10_0000), PhysAddr(0x4000_0000), 0x4000, Prot::RW)
        .unwrap();
    assert_eq!(d.iova_to_phys(Iova(0x10_1234)), Some(PhysAddr(0x4000_1234)));
    assert_eq!(d.table_pages(), 4);
    fake.clear_log();
    // Mapping needs no invalidation; unmapping gathers and invalidates nothing yet.
    assert_eq!(d.unmap(Iova(0x10_1000), 0x1000), 0x1000);
    assert!(fake.commands().is_empty());
    assert!(d.has_pending_invalidation());
    d.iotlb_sync().expect("invalidation");
    // One range TLBI_NH_VA (RIL): 1 page, TG = 4K, TTL = 3, Leaf = 1; then CMD_SYNC.
    assert_eq!(
        fake.commands(),
        [
            [asid << 48 | 0x12, 0x10_1000 | 1 << 10 | 3 << 8 | 1],
            [opcode::CMD_SYNC, 0]
        ]
    );
    // The queue was known empty: CONS is read only to see the sync consumed.
    assert_eq!(fake.cons_reads(), 1);
    let s = d.stats();
    assert_eq!((s.tlbi_commands, s.syncs), (1, 1));
    assert!(s.last_flush.is_some_and(|f| f.leaf && !f.whole_asid));
    assert_eq!(d.iova_to_phys(Iova(0x10_1000)), None);
    // The rest, page by page: the emptied tables stay for the next map, so leaf TLBIs do.
    fake.clear_log();
    d.unmap(Iova(0x10_0000), 0x1000);
    d.unmap(Iova(0x10_2000), 0x2000);
    d.iotlb_sync().expect("invalidation");
    let t = tlbis(&fake.commands());
    assert!(!t.is_empty() && t.iter().all(|c| c[1] & 1 == 1), "{t:?}");
    assert_eq!(d.table_pages(), 4);
    // An unmap of the first level-0 entry's span takes its tables, so walk caches go too
    // (Leaf = 0, TTL = 0).
    fake.clear_log();
    assert_eq!(d.unmap(Iova(0), 512 << 30), 0);
    assert_eq!(d.table_pages(), 4, "freed tables are held until the sync");
    d.iotlb_sync().expect("invalidation");
    let t = tlbis(&fake.commands());
    assert!(!t.is_empty() && t.len() <= 4, "{t:?}");
    assert!(t.iter().all(|c| c[1] & 1 == 0 && c[1] >> 8 & 3 == 0));
    assert_eq!(d.table_pages(), 1);
    assert!(!d.has_pending_invalidation());
    // flush_all: one TLBI_NH_ASID.
    fake.clear_log();
    d.flush_all().expect("invalidation");
    assert_eq!(
        fake.commands(),
        [[asid << 48 | 0x11, 0], [opcode::CMD_SYNC, 0]]
    );
}

#[test]
fn smmuv3_domain_without_ril_invalidates_page_by_page() {
    let (_serial, _) = serial();
    let fake = FakeSmmu::with_ids(IdRegs {
        idr3: IdRegs::QEMU_VIRT_10_0.idr3 & !(1 << 10),
        idr5: (IdRegs::QEMU_VIRT_10_0.idr5 & !7) | 5,
        ..IdRegs::QEMU_VIRT_10_0
    });
    let smmu = up(&fake);
    let d = smmu.new_domain().unwrap();
    d.map(Iova(0x20_0000), PhysAddr(0x4000_0000), 0x8000, Prot::RW)
        .unwrap();
    fake.clear_log();
    d.unmap(Iova(0x20_1000), 0x3000);
    d.iotlb_sync().expect("invalidation");
    let t = tlbis(&fake.commands());
    assert_eq!(
        t.iter().map(|c| c[1]).collect::<Vec<_>>(),
        [0x20_1001, 0x20_2001, 0x20_3001]
    );
    assert_eq!(d.stats().tlbi_commands, 3);
}

#[test]
fn smmuv3_domain_drop_invalidates_the_asid_and_frees_everything() {
    let (_serial, platform) = serial();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    let before = platform.frames_in_use();
    let d = smmu.new_domain().unwrap();
    let asid = d.asid();
    d.map(Iova(0x40_0000), PhysAddr(0x4000_0000), 0x20_0000, Prot::RW)
        .unwrap();
    d.unmap(Iova(0x40_0000), 0x1000);
    assert!(platform.frames_in_use() > before);
    assert_eq!(smmu.asids_in_use(), 1);
    fake.clear_log();
    drop(d);
    assert_eq!(
        fake.commands(),
        [[u64::from(asid.0) << 48 | 0x11, 0], [opcode::CMD_SYNC, 0]]
    );
    assert_eq!(smmu.asids_in_use(), 0);
    assert_eq!(platform.frames_in_use(), before);
    assert_eq!(smmu.stats().domains, 0);
}

#[test]
fn smmuv3_domain_map_errors_keep_their_meaning() {
    let (_serial, _) = serial();
    let smmu = up(&FakeSmmu::host());
    let d = smmu.alloc_domain().unwrap();
    d.map(Iova(0x1000), PhysAddr(0x4000_0000), 0x1000, Prot::RW)
        .unwrap();
    assert_eq!(
        d.map(Iova(0x1000), PhysAddr(0x4000_0000), 0x1000, Prot::RW),
        Err(IommuError::AlreadyMapped { iova: 0x1000 })
    );
    assert!(matches!(
        d.map(Iova(0x1800), PhysAddr(0x4000_0000), 0x1000, Prot::RW),
        Err(IommuError::Misaligned { .. })
    ));
    assert_eq!(
        d.map(Iova(1 << 48), PhysAddr(0x4000_0000), 0x1000, Prot::RW),
        Err(IommuError::OutOfAperture {
            iova: 1 << 48,
            size: 0x1000
        })
    );
    let none = Prot {
        read: false,
        write: false,
        ..Prot::RW
    };
    assert!(matches!(
        d.map(Iova(0x8000), PhysAddr(0x4000_0000), 0x1000, none),
        Err(IommuError::Driver(_))
    ));
    // The MSI doorbell: write-only Device memory.
    d.map(
        Iova(0x800_0000),
        PhysAddr(0x0808_0000),
        0x1000,
        Prot::MMIO_WO,
    )
    .unwrap();
    assert_eq!(d.aperture(), addr::Range::new(Iova(0), 1 << 48));
    assert_eq!(d.name(), "asid 1");
}

// -------------------------------------------------------------------------------------------
// Through the IOMMU core

#[test]
fn smmuv3_core_configures_and_cleans_up_a_device() {
    let (_serial, platform) = serial();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    let mut core = IommuCore::new();
    core.register(NODE, smmu.clone()).unwrap();
    let before = platform.frames_in_use();
    let fw = FwSpec {
        iommu: NODE.into(),
        ids: vec![EDU_SID],
    };
    let msi = ReservedRegion {
        range: addr::Range::new(iommu::SW_MSI_BASE, iommu::SW_MSI_SIZE),
        kind: ReservedKind::Msi {
            doorbell: PhysAddr(0x0808_0040),
        },
    };
    let dma = core.configure_device(EDU, &fw, false, &[msi]).unwrap();
    assert_eq!(dma.domain_type, DomainType::Dma);
    assert_eq!(dma.iommu, NAME);
    let domain = dma.domain.clone().unwrap();
    assert_eq!(
        domain.iova_to_phys(iommu::SW_MSI_BASE),
        Some(PhysAddr(0x0808_0000))
    );
    assert!(matches!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Stage1 { .. }
    ));
    let stats = core.stats();
    assert_eq!((stats.hw.streams_not_blocked, stats.hw.domains), (1, 1));
    assert!(stats.hw.table_pages >= 4);
    drop((dma, domain));
    core.cleanup_device(EDU).unwrap();
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
    assert_eq!(core.stats().hw, iommu::InstanceStats::default());
    assert_eq!(smmu.asids_in_use(), 0);
    // The level-2 table stays (see strtab.rs); everything else went back.
    assert_eq!(platform.frames_in_use(), before + 4);
    assert_eq!(core.unregister(NODE), Ok(()));
}

#[test]
fn smmuv3_core_refuses_to_unregister_while_in_use() {
    let (_serial, _) = serial();
    let smmu = up(&FakeSmmu::host());
    let mut core = IommuCore::new();
    core.register(NODE, smmu.clone()).unwrap();
    let fw = FwSpec {
        iommu: NODE.into(),
        ids: vec![EDU_SID],
    };
    core.configure_device(EDU, &fw, false, &[]).unwrap();
    assert_eq!(core.unregister(NODE), Err(IommuError::InUse(NODE.into())));
}

#[test]
fn smmuv3_instance_drop_disables_the_smmu_and_frees_its_memory() {
    let (_serial, platform) = serial();
    let before = platform.frames_in_use();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    smmu.probe_device(EDU, &[EDU_SID]).unwrap();
    let d = smmu.alloc_domain().unwrap();
    smmu.attach(&[EDU_SID], &AttachTarget::Translated(d.clone()))
        .unwrap();
    drop(smmu);
    // Disabled before the memory went: IRQ_CTRL and CR0 cleared last.
    assert_eq!(fake.reg(Reg::Cr0), 0);
    assert_eq!(fake.reg(Reg::IrqCtrl), 0);
    // The domain outlives its SMMU harmlessly; its pages go with it.
    d.map(Iova(0), PhysAddr(0x4000_0000), 0x1000, Prot::RW)
        .unwrap();
    d.iotlb_sync().expect("invalidation");
    drop(d);
    assert_eq!(platform.frames_in_use(), before);
}

#[test]
fn smmuv3_and_an_iommu_of_another_type_share_one_core_each_serving_its_own_devices() {
    let (_serial, platform) = serial();
    let fake = FakeSmmu::host();
    let smmu = up(&fake);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // Another driver type that cannot bypass, with the same StreamID space.
    let other = iommu::fake::FakeIommu::new("other-iommu", "other.iommu", false, 1 << 16, log);
    let mut core = IommuCore::new();
    core.register(NODE, smmu.clone()).unwrap();
    core.register("/iommu@other", other.clone()).unwrap();
    core.set_policy(iommu::Policy {
        passthrough: true,
        identity: vec![],
    });
    let on = |iommu: &str| FwSpec {
        iommu: iommu.into(),
        ids: vec![EDU_SID],
    };
    // The same ID on both: each device finds its IOMMU through its own firmware description.
    let a = core.configure_device(EDU, &on(NODE), false, &[]).unwrap();
    let b = core
        .configure_device("platform-dev", &on("/iommu@other"), false, &[])
        .unwrap();
    assert_eq!((a.iommu.as_str(), b.iommu.as_str()), (NAME, "other.iommu"));
    assert_ne!(a.group, b.group);
    // Passthrough is the user's choice: the SMMU grants it (bypass STE), the other vetoes it
    // and gives a translated domain of its own type.
    assert_eq!(a.domain_type, DomainType::Identity);
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Bypass
    );
    assert_eq!((b.domain_type, b.identity_vetoed), (DomainType::Dma, true));
    assert!(other.stream(EDU_SID).starts_with("other.iommu#"));
    // Mapping in the other's domain touches nothing of the SMMU's.
    let before = platform.frames_in_use();
    let d = b.domain.clone().unwrap();
    d.map(Iova(0x1000), PhysAddr(0x4000_0000), 0x1000, Prot::RW)
        .unwrap();
    assert_eq!(d.iova_to_phys(Iova(0x1000)), Some(PhysAddr(0x4000_0000)));
    assert_eq!(
        platform.frames_in_use(),
        before,
        "no SMMU table page for it"
    );
    assert_eq!(core.stats().hw.streams_not_blocked, 2);
    // Cleanup returns each stream to blocked on its own instance.
    drop((a, b, d));
    core.cleanup_device(EDU).unwrap();
    core.cleanup_device("platform-dev").unwrap();
    assert_eq!(
        smmu.ste(StreamId(EDU_SID)).unwrap().config(),
        SteConfig::Abort
    );
    assert_eq!(other.stream(EDU_SID), "blocked");
    assert_eq!(core.stats().hw.streams_not_blocked, 0);
}
