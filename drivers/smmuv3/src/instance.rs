//! One SMMU: bring-up in the architectural order, the IOMMU core's control path
//! ([`iommu::IommuOps`]), and the event queue and GERROR interrupt handlers.
//!
//! # Bring-up ([`Smmu::bring_up`], [`Smmu::enable_interrupts`], [`Smmu::enable_translation`])
//! Following IHI 0070 §6.3 (SMMU_CR0, SMMU_GBPA) and the order of Linux's
//! `arm_smmu_device_reset`:
//! 1. ID registers read, decoded, logged as one line, checked ([`Features::check`]); all memory
//!    allocated before any register is written, so a refusal leaves the SMMU untouched.
//! 2. GBPA.ABORT set (UPDATE handshake): from here on, whenever SMMUEN is 0, every transaction
//!    aborts instead of bypassing (QEMU's reset value bypasses).
//! 3. CR0 = 0, CR0ACK awaited: translation and queues off; errors left from before acknowledged.
//! 4. CR1 (table and queue attributes per IDR0.COHACC), CR2 = RECINVSID | PTM.
//! 5. Stream table (every STE ABORT, or an all-invalid level-1 table) in STRTAB_BASE(_CFG).
//! 6. Command queue in CMDQ_BASE, PROD = CONS = 0, CR0.CMDQEN; then CFGI_ALL, TLBI_NSNH_ALL
//!    (and TLBI_EL2_ALL if IDR0.HYP), CMD_SYNC: nothing cached from before survives.
//! 7. Event queue in EVENTQ_BASE, page-1 PROD = CONS = 0, CR0.EVENTQEN.
//! 8. IRQ_CTRL = 0 (acknowledged). The driver then requests the wired interrupts and calls
//!    `enable_interrupts` (IRQ_CTRL, acknowledged), then `enable_translation` (CR0.SMMUEN).
//!
//! Every handshake is bounded ([`ACK_TIMEOUT`], [`crate::cmdq::SYNC_TIMEOUT`]) and fails with
//! [`SmmuError::Timeout`] naming the register. A failure after step 2 disables the SMMU again
//! (CR0 = 0) before its memory is freed, or leaks the memory if even that fails.
//!
//! # Teardown
//! [`Smmu::shutdown`] (and `Drop`, if shutdown was not called) refuses further commands, clears
//! IRQ_CTRL and CR0 (GBPA still aborts) and only then lets the memory go. If the SMMU does not
//! acknowledge, every block it could still read or write is leaked instead.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::time::Duration;

use io_pgtable::Invalidation;
use iommu::{AttachTarget, InstanceStats, IommuDomain, IommuError, IommuOps};
use kapi::barrier::dsb_sy;
use kapi::logging::DevLog;
use kapi::sync::IrqLock;
use kapi::time::{Instant, poll_until};
use kapi::{Iova, PAGE_SIZE};
use tock_registers::LocalRegisterCopy;

use crate::asid::AsidAllocator;
use crate::cmd::{Command, DEFAULT_MAX_TLBI_COMMANDS, VaInvalidation, encode, tlbi_va_range};
use crate::cmdq::{Batch, CmdQueue, CmdqStats};
use crate::domain::{Flush, SmmuDomain};
use crate::entry::{EntrySync, UpdateKind, write_entry};
use crate::event::{Event, GlobalErrors, Suppressed, Verdict};
use crate::evtq::{EventQueue, FaultLog, FloodPolicy, FloodVerdict};
use crate::features::{Features, IdRegs};
use crate::hw::{Coherency, Reg, Reg64, SmmuIo};
use crate::queue::{Queue, QueueKind};
use crate::regs::{CR0, CR1, CR2, GBPA, GERROR, IRQ_CTRL};
use crate::ste::{SPLIT, Ste, SteConfig, StreamTableLayout};
use crate::strtab::{SteSlot, StreamTable};
use crate::{Asid, SmmuError, StreamId, Structure, Vmid};

/// Bound on each register handshake (CR0ACK, GBPA.UPDATE, IRQ_CTRLACK). They take microseconds.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(100);

/// Commands an invalidation's batch holds without reaching for the largest one.
const SMALL_TLBI_BATCH: usize = 4;

/// What a stream is attached to.
#[derive(Clone)]
enum Attached {
    Blocked,
    Identity,
    Translated(Arc<SmmuDomain>),
}

/// A probed StreamID.
struct Slot {
    /// The device last probed with it (named in fault lines).
    master: String,
    attached: Attached,
    /// Cut off by the fault-flood policy: the STE stays ABORT whatever is attached, until the
    /// StreamID is released.
    cut_off: bool,
}

struct Streams {
    table: StreamTable,
    slots: BTreeMap<u32, Slot>,
}

struct Events {
    queue: EventQueue,
    faults: FaultLog,
}

/// One SMMUv3 instance.
pub struct Smmu {
    io: alloc::boxed::Box<dyn SmmuIo>,
    name: String,
    node: String,
    log: DevLog,
    features: Features,
    coherency: Coherency,
    /// CR0 as last written and acknowledged.
    cr0: AtomicU32,
    /// The SMMU was disabled by `shutdown`.
    shut_down: AtomicBool,
    cmdq: IrqLock<CmdQueue>,
    streams: IrqLock<Streams>,
    events: IrqLock<Events>,
    asids: IrqLock<AsidAllocator>,
    domains: IrqLock<Vec<Weak<SmmuDomain>>>,
    this: Weak<Smmu>,
}

impl fmt::Debug for Smmu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Smmu({} at {})", self.name, self.node)
    }
}

/// Writes `value` to CR0 and waits for CR0ACK to show it: a change is in effect only once
/// acknowledged (§6.3 SMMU_CR0ACK).
fn write_cr0(io: &dyn SmmuIo, value: u32) -> Result<(), SmmuError> {
    io.write(Reg::Cr0, value);
    poll_until(ACK_TIMEOUT, || io.read(Reg::Cr0Ack) == value).map_err(|_| SmmuError::Timeout {
        register: Reg::Cr0Ack,
    })
}

/// Sets GBPA.ABORT: software must wait for UPDATE to read 0 before writing GBPA, write the new
/// fields with UPDATE = 1, and wait for UPDATE = 0 again before relying on them (§6.3 SMMU_GBPA).
fn gbpa_abort(io: &dyn SmmuIo) -> Result<(), SmmuError> {
    let idle = || {
        let gbpa = LocalRegisterCopy::<u32, GBPA::Register>::new(io.read(Reg::Gbpa));
        !gbpa.is_set(GBPA::UPDATE)
    };
    let timeout = SmmuError::Timeout {
        register: Reg::Gbpa,
    };
    poll_until(ACK_TIMEOUT, idle).map_err(|_| timeout)?;
    let mut gbpa = LocalRegisterCopy::<u32, GBPA::Register>::new(io.read(Reg::Gbpa));
    gbpa.modify(GBPA::ABORT::SET + GBPA::UPDATE::SET);
    io.write(Reg::Gbpa, gbpa.get());
    poll_until(ACK_TIMEOUT, idle).map_err(|_| timeout)
}

/// Writes IRQ_CTRL and waits for IRQ_CTRLACK (§6.3 SMMU_IRQ_CTRL: a change is in effect once
/// acknowledged).
fn write_irq_ctrl(io: &dyn SmmuIo, value: u32) -> Result<(), SmmuError> {
    io.write(Reg::IrqCtrl, value);
    poll_until(ACK_TIMEOUT, || io.read(Reg::IrqCtrlAck) == value).map_err(|_| SmmuError::Timeout {
        register: Reg::IrqCtrlAck,
    })
}

/// Interrupts off, then translation and queues off (GBPA aborts from then on).
fn disable(io: &dyn SmmuIo) -> Result<(), SmmuError> {
    let irq = write_irq_ctrl(io, 0);
    write_cr0(io, 0)?;
    irq
}

/// Acknowledges every active global error (they predate this driver's reset).
fn ack_stale_errors(io: &dyn SmmuIo, log: &DevLog) {
    let errors = GlobalErrors::new(io.read(Reg::Gerror), io.read(Reg::Gerrorn));
    if !errors.is_empty() {
        kapi::dev_dbg!(
            log,
            "global errors from before reset acknowledged: {errors}"
        );
        // An error is active while GERROR and GERRORN differ (§6.3 SMMU_GERRORN).
        io.write(Reg::Gerrorn, errors.ack_value());
    }
}

fn cr1_value(coherency: Coherency) -> u32 {
    if coherency.is_coherent() {
        (CR1::TABLE_SH::InnerShareable
            + CR1::TABLE_OC::WriteBack
            + CR1::TABLE_IC::WriteBack
            + CR1::QUEUE_SH::InnerShareable
            + CR1::QUEUE_OC::WriteBack
            + CR1::QUEUE_IC::WriteBack)
            .value
    } else {
        (CR1::TABLE_SH::OuterShareable
            + CR1::TABLE_OC::NonCacheable
            + CR1::TABLE_IC::NonCacheable
            + CR1::QUEUE_SH::OuterShareable
            + CR1::QUEUE_OC::NonCacheable
            + CR1::QUEUE_IC::NonCacheable)
            .value
    }
}

/// Steps 2 to 8 of the bring-up; returns the CR0 value in force.
fn reset(
    io: &dyn SmmuIo,
    log: &DevLog,
    features: &Features,
    coherency: Coherency,
    strtab: &StreamTable,
    cmdq: &mut CmdQueue,
    evtq: &EventQueue,
) -> Result<u32, SmmuError> {
    gbpa_abort(io)?;
    write_cr0(io, 0)?;
    ack_stale_errors(io, log);
    io.write(Reg::Cr1, cr1_value(coherency));
    io.write(
        Reg::Cr2,
        (CR2::RECINVSID::SET + CR2::PTM::SET + CR2::E2H::CLEAR).value,
    );

    // The table contents (ABORT STEs, invalid level-1 descriptors) must have reached memory
    // before the SMMU can fetch them through the base registers.
    dsb_sy();
    let layout = strtab.layout();
    io.write64(Reg64::StrtabBase, layout.base(strtab.base())?);
    io.write(Reg::StrtabBaseCfg, layout.base_cfg());

    let q = cmdq.geometry();
    io.write64(Reg64::CmdqBase, q.base(cmdq.memory().pa())?);
    io.write(Reg::CmdqProd, 0);
    io.write(Reg::CmdqCons, 0);
    let mut cr0 = CR0::CMDQEN::SET.value;
    write_cr0(io, cr0)?;
    cmdq.enable();

    // Whatever the SMMU cached before (configurations, TLB entries of any ASID and VMID) goes.
    let mut batch = Batch::<3>::new();
    batch.push(&Command::CfgiAll);
    batch.push(&Command::TlbiNsnhAll);
    if features.hyp {
        batch.push(&Command::TlbiEl2All);
    }
    cmdq.issue(io, log, batch.as_slice())?;

    let q = evtq.geometry();
    io.write64(Reg64::EventqBase, q.base(evtq.memory().pa())?);
    io.write(Reg::EventqProd, 0);
    io.write(Reg::EventqCons, 0);
    cr0 |= CR0::EVENTQEN::SET.value;
    write_cr0(io, cr0)?;

    write_irq_ctrl(io, 0)?;
    Ok(cr0)
}

/// The [`EntrySync`] of an STE: 64-bit stores into the table, and CFGI_STE (non-leaf: the CD it
/// points at goes too) + CMD_SYNC as the sync point. The first failure stops the sequence.
struct SteWriter<'a> {
    slot: &'a SteSlot,
    sid: StreamId,
    io: &'a dyn SmmuIo,
    log: &'a DevLog,
    cmdq: &'a mut CmdQueue,
    coherency: Coherency,
    error: Option<SmmuError>,
}

impl EntrySync for SteWriter<'_> {
    fn write(&mut self, word: usize, value: u64) {
        if self.error.is_none() {
            let off = self.slot.offset + 8 * word as u64;
            self.slot.mem.write_u64(off, value);
            self.coherency.publish(&self.slot.mem, off, 8);
        }
    }

    fn sync(&mut self) {
        if self.error.is_some() {
            return;
        }
        // `issue` puts a barrier between these STE stores and the CMDQ_PROD write, so the
        // SMMU re-reads the new words after the invalidation (§3.21.3).
        let cfgi = encode(&Command::CfgiSte {
            sid: self.sid,
            leaf: false,
        });
        if let Err(e) = self.cmdq.issue(self.io, self.log, &[cfgi]) {
            self.error = Some(e);
        }
    }
}

impl Smmu {
    /// Reads the ID registers, logs the feature line, checks that the kernel can use the SMMU,
    /// allocates its stream table and queues and resets it up to (not including) interrupts
    /// and translation. `name` is the device name (`9050000.smmuv3`), `node` its DT path.
    pub fn bring_up(
        io: alloc::boxed::Box<dyn SmmuIo>,
        name: &str,
        node: &str,
    ) -> Result<Arc<Smmu>, SmmuError> {
        let log = DevLog::new("smmuv3", name);
        let ids = IdRegs {
            idr0: io.read(Reg::Idr0),
            idr1: io.read(Reg::Idr1),
            idr3: io.read(Reg::Idr3),
            idr5: io.read(Reg::Idr5),
            aidr: io.read(Reg::Aidr),
        };
        let features = Features::decode(&ids);
        kapi::dev_info!(log, "{features}");
        features.check()?;

        let coherency = Coherency::new(features.coherent);
        let layout = StreamTableLayout::for_features(&features);
        let cmdq_q = Queue::sized_for(QueueKind::Command, features.cmdq_log2max);
        let evtq_q = Queue::sized_for(QueueKind::Event, features.eventq_log2max);
        let strtab = StreamTable::new(&*io, layout, coherency)?;
        let cmdq_mem = io
            .alloc(cmdq_q.bytes())
            .ok_or(SmmuError::NoMemory(Structure::CommandQueue))?;
        let evtq_mem = io
            .alloc(evtq_q.bytes())
            .ok_or(SmmuError::NoMemory(Structure::EventQueue))?;
        let mut cmdq = CmdQueue::new(cmdq_q, cmdq_mem, coherency);
        let evtq = EventQueue::new(evtq_q, evtq_mem, coherency);

        let cr0 = match reset(&*io, &log, &features, coherency, &strtab, &mut cmdq, &evtq) {
            Ok(cr0) => cr0,
            Err(e) => {
                if disable(&*io).is_err() {
                    // It may still read the tables or write the queue: never reuse them.
                    leak(cmdq.memory());
                    leak(evtq.memory());
                    strtab.memory().for_each(leak);
                }
                return Err(e);
            }
        };

        Ok(Arc::new_cyclic(|this| Smmu {
            io,
            name: name.to_string(),
            node: node.to_string(),
            log,
            coherency,
            cr0: AtomicU32::new(cr0),
            shut_down: AtomicBool::new(false),
            cmdq: IrqLock::new(cmdq),
            streams: IrqLock::new(Streams {
                table: strtab,
                slots: BTreeMap::new(),
            }),
            events: IrqLock::new(Events {
                queue: evtq,
                faults: FaultLog::new(FloodPolicy::DEFAULT),
            }),
            asids: IrqLock::new(AsidAllocator::for_features(&features)),
            domains: IrqLock::new(Vec::new()),
            features,
            this: this.clone(),
        }))
    }

    /// Enables the interrupts whose lines the driver has handlers on (IRQ_CTRL, acknowledged).
    pub fn enable_interrupts(&self, eventq: bool, gerror: bool) -> Result<(), SmmuError> {
        let value = (IRQ_CTRL::EVENTQ_IRQEN.val(u32::from(eventq))
            + IRQ_CTRL::GERROR_IRQEN.val(u32::from(gerror)))
        .value;
        write_irq_ctrl(&*self.io, value)
    }

    /// Sets CR0.SMMUEN: from now on every stream follows its STE (all ABORT until attached).
    pub fn enable_translation(&self) -> Result<(), SmmuError> {
        let cr0 = self.cr0.load(Ordering::Relaxed) | CR0::SMMUEN::SET.value;
        write_cr0(&*self.io, cr0)?;
        self.cr0.store(cr0, Ordering::Relaxed);
        Ok(())
    }

    /// Disables the SMMU: no more commands, interrupts off, translation and queues off (GBPA
    /// aborts every transaction). Memory stays allocated until the instance is dropped.
    pub fn shutdown(&self) -> Result<(), SmmuError> {
        self.cmdq.lock().disable();
        disable(&*self.io)?;
        self.cr0.store(0, Ordering::Relaxed);
        self.shut_down.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn arc(&self) -> Option<Arc<Smmu>> {
        self.this.upgrade()
    }

    /// Device name, e.g. `9050000.smmuv3`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Device-tree node the instance is registered under.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// What the hardware implements.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Its log target.
    pub fn devlog(&self) -> &DevLog {
        &self.log
    }

    /// Coherency of its table walks and queue accesses.
    pub fn coherency(&self) -> Coherency {
        self.coherency
    }

    /// CR0 as last acknowledged.
    pub fn cr0(&self) -> u32 {
        self.cr0.load(Ordering::Relaxed)
    }

    /// The stream table layout.
    pub fn layout(&self) -> StreamTableLayout {
        self.streams.lock().table.layout()
    }

    /// Number of level-2 stream tables allocated.
    pub fn l2_tables(&self) -> usize {
        self.streams.lock().table.l2_tables()
    }

    // ---------------------------------------------------------------------------------------
    // Commands

    /// Issues a CMD_SYNC alone and waits for it.
    pub fn sync(&self) -> Result<(), SmmuError> {
        self.cmdq.lock().issue(&*self.io, &self.log, &[])
    }

    /// Issues `words` unchanged (followed by a CMD_SYNC) and waits: lets a test inject a
    /// command the SMMU must refuse. A refused command is reported as
    /// [`SmmuError::CommandRefused`], skipped, and the queue keeps working.
    pub fn submit_raw_for_test(&self, words: [u64; 2]) -> Result<(), SmmuError> {
        self.cmdq.lock().issue_raw(&*self.io, &self.log, words)
    }

    /// Command queue counters.
    pub fn cmdq_stats(&self) -> CmdqStats {
        self.cmdq.lock().stats()
    }

    /// A register's value as it reads now (diagnostics and tests; reads have no side effects on
    /// the registers the driver uses).
    pub fn register(&self, reg: Reg) -> u32 {
        self.io.read(reg)
    }

    /// Entries in the command queue.
    pub fn cmdq_entries(&self) -> u32 {
        self.cmdq.lock().geometry().entries()
    }

    /// CMDQ_PROD and CMDQ_CONS as the registers read now.
    pub fn cmdq_registers(&self) -> (u32, u32) {
        let _cmdq = self.cmdq.lock();
        (self.io.read(Reg::CmdqProd), self.io.read(Reg::CmdqCons))
    }

    /// Invalidates the TLB entries `inv` describes for `asid` with the fewest TLBI_NH_VA
    /// commands, then CMD_SYNC, and waits.
    pub fn invalidate_range(
        &self,
        asid: Asid,
        inv: &Invalidation<Iova>,
    ) -> Result<Flush, SmmuError> {
        // A known leaf level gives the granule and a TTL hint; otherwise (tables freed, or
        // leaves of mixed sizes) the commands cover every 4 KiB page with TTL = 0 and Leaf = 0.
        let (leaf, granule) = match (inv.leaf_only, inv.leaf_level) {
            (true, Some(level @ 1..=3)) => (true, PAGE_SIZE << (9 * (3 - u32::from(level)))),
            _ => (false, PAGE_SIZE),
        };
        let plan = tlbi_va_range(
            &VaInvalidation {
                asid,
                vmid: Vmid(0),
                iova: inv.range.start,
                size: inv.range.size,
                granule,
                leaf,
            },
            self.features.ril,
            DEFAULT_MAX_TLBI_COMMANDS,
        )?;
        let commands = plan.len();
        let whole_asid = plan.is_whole_asid();
        // Almost every invalidation is one or two range commands: a small batch spares the
        // clearing of the largest one on every unmap.
        if commands <= SMALL_TLBI_BATCH {
            self.issue_batch(&mut Batch::<SMALL_TLBI_BATCH>::new(), plan)?;
        } else {
            self.issue_batch(&mut Batch::<DEFAULT_MAX_TLBI_COMMANDS>::new(), plan)?;
        }
        Ok(Flush {
            commands,
            whole_asid,
            leaf,
        })
    }

    /// Encodes `cmds` into `batch` (which holds them all) and issues them with a CMD_SYNC.
    fn issue_batch<const N: usize>(
        &self,
        batch: &mut Batch<N>,
        cmds: impl Iterator<Item = Command>,
    ) -> Result<(), SmmuError> {
        for cmd in cmds {
            batch.push(&cmd);
        }
        self.cmdq
            .lock()
            .issue(&*self.io, &self.log, batch.as_slice())
    }

    /// Invalidates every TLB entry of `asid` (TLBI_NH_ASID + CMD_SYNC) and waits.
    pub fn invalidate_asid(&self, asid: Asid) -> Result<Flush, SmmuError> {
        let cmd = encode(&Command::TlbiNhAsid {
            asid,
            vmid: Vmid(0),
        });
        self.cmdq.lock().issue(&*self.io, &self.log, &[cmd])?;
        Ok(Flush {
            commands: 1,
            whole_asid: true,
            leaf: false,
        })
    }

    /// Rewrites the STE of `sid` (already probed) to `target` through the entry writer.
    fn write_ste(
        &self,
        table: &StreamTable,
        sid: StreamId,
        target: &Ste,
    ) -> Result<UpdateKind, SmmuError> {
        let slot = table.slot(sid)?.ok_or(SmmuError::SidNotProbed(sid))?;
        let current = slot.read();
        let mut cmdq = self.cmdq.lock();
        let mut writer = SteWriter {
            slot: &slot,
            sid,
            io: &*self.io,
            log: &self.log,
            cmdq: &mut cmdq,
            coherency: self.coherency,
            error: None,
        };
        let kind = write_entry(&current, target, &mut writer);
        match writer.error {
            Some(e) => Err(e),
            None => Ok(kind),
        }
    }

    /// The STE of `sid` as it is in memory (`None` before its table exists).
    pub fn ste(&self, sid: StreamId) -> Option<Ste> {
        let streams = self.streams.lock();
        streams.table.slot(sid).ok().flatten().map(|s| s.read())
    }

    // ---------------------------------------------------------------------------------------
    // Domains

    /// A new translated domain (the concrete type; [`IommuOps::alloc_domain`] hands out the
    /// same as `Arc<dyn IommuDomain>`).
    pub fn new_domain(&self) -> Result<Arc<SmmuDomain>, SmmuError> {
        let smmu = self.arc().ok_or(SmmuError::Disabled)?;
        let asid = self.asids.lock().alloc()?;
        match SmmuDomain::new(&smmu, asid) {
            Ok(domain) => {
                let domain = Arc::new(domain);
                self.domains.lock().push(Arc::downgrade(&domain));
                Ok(domain)
            }
            Err(e) => {
                // The SMMU never saw this ASID: no invalidation needed.
                let _ = self.asids.lock().free(asid);
                Err(e)
            }
        }
    }

    /// A dropped domain invalidated its ASID: it may be handed out again.
    pub(crate) fn release_domain(&self, asid: Asid) {
        let _ = self.asids.lock().free(asid);
        self.forget_domain();
    }

    /// Prunes dropped domains from the list.
    pub(crate) fn forget_domain(&self) {
        self.domains.lock().retain(|d| d.strong_count() > 0);
    }

    fn live_domains(&self) -> Vec<Arc<SmmuDomain>> {
        self.domains
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn find_domain(&self, target: &Arc<dyn IommuDomain>) -> Option<Arc<SmmuDomain>> {
        self.live_domains().into_iter().find(|d| {
            let as_dyn: Arc<dyn IommuDomain> = d.clone();
            Arc::ptr_eq(&as_dyn, target)
        })
    }

    /// ASIDs in use.
    pub fn asids_in_use(&self) -> u32 {
        self.asids.lock().in_use()
    }

    // ---------------------------------------------------------------------------------------
    // Events

    /// The event queue interrupt: drains every event, logs them (rate-limited), counts them
    /// and applies the flood policy.
    pub fn handle_eventq(&self) {
        let mut events = self.events.lock();
        self.drain_events(&mut events);
    }

    fn drain_events(&self, events: &mut Events) {
        let Events { queue, faults } = events;
        // Bounded work in interrupt context: two laps of the queue. What is left (a device
        // producing events as fast as they are read) is read on the next event's interrupt.
        let limit = 2 * queue.geometry().entries() as usize;
        let drained = queue.drain(&*self.io, limit, &mut |e| self.on_event(faults, &e));
        if drained.overflow {
            self.note_overflow(faults);
        }
        if let Some(suppressed) = faults.flush_suppressed(now()) {
            kapi::dev_warn!(self.log, "{suppressed}");
        }
    }

    fn on_event(&self, faults: &mut FaultLog, e: &Event) {
        let action = faults.record(e, now());
        if let Verdict::Print { suppressed } = action.log {
            if suppressed > 0 {
                kapi::dev_warn!(self.log, "{}", Suppressed(suppressed));
            }
            let streams = self.streams.lock();
            match streams.slots.get(&e.sid.0) {
                Some(slot) => {
                    let master: &dyn fmt::Display = &slot.master;
                    kapi::dev_warn!(self.log, "{}", e.line(Some(master)));
                }
                None => kapi::dev_warn!(self.log, "{}", e.line(None)),
            }
        }
        if action.flood == FloodVerdict::CutOff {
            // The suppressed count belongs before the line that ends the flood.
            if let Some(suppressed) = faults.take_suppressed() {
                kapi::dev_warn!(self.log, "{suppressed}");
            }
            self.cut_off(e.sid, faults.policy());
        }
    }

    /// The flood policy's action: the stream's STE becomes ABORT until it is released.
    fn cut_off(&self, sid: StreamId, policy: FloodPolicy) {
        let mut streams = self.streams.lock();
        let Streams { table, slots } = &mut *streams;
        let Some(slot) = slots.get_mut(&sid.0) else {
            kapi::dev_warn!(
                self.log,
                "StreamID {sid}: {} events within {:?}, but no device uses it",
                policy.threshold,
                policy.window
            );
            return;
        };
        slot.cut_off = true;
        match self.write_ste(table, sid, &Ste::abort()) {
            Ok(_) => kapi::dev_err!(
                self.log,
                "StreamID {sid} ({}): {} events within {:?}: stream aborted until the device is released",
                slot.master,
                policy.threshold,
                policy.window
            ),
            Err(e) => kapi::dev_err!(
                self.log,
                "StreamID {sid} ({}): fault flood, but the stream could not be aborted: {e}",
                slot.master
            ),
        }
    }

    fn note_overflow(&self, faults: &mut FaultLog) {
        if faults.note_overflow() {
            kapi::dev_warn!(
                self.log,
                "event queue overflowed: events lost (at least 1; the SMMU does not count them) after {} received; later overflows are counted, not logged",
                faults.total()
            );
        }
    }

    /// The GERROR interrupt: repairs the command queue after CMDQ_ERR, drains the event queue
    /// and reports after EVENTQ_ABT_ERR (QEMU: events were dropped because it was full),
    /// reports the rest, and acknowledges everything through GERRORN.
    pub fn handle_gerror(&self) {
        let errors = GlobalErrors::new(self.io.read(Reg::Gerror), self.io.read(Reg::Gerrorn));
        if errors.is_empty() {
            return;
        }
        if errors.is_active(GERROR::CMDQ_ERR) {
            // Acknowledges CMDQ_ERR itself, after the repair.
            self.cmdq.lock().recover(&*self.io, &self.log);
        }
        let cmdq_bit = GERROR::CMDQ_ERR::SET.value;
        let evtq_bit = GERROR::EVENTQ_ABT_ERR::SET.value;
        let sfm_bit = GERROR::SFM_ERR::SET.value;
        let rest = errors.bits() & !cmdq_bit;
        if rest & evtq_bit != 0 {
            let mut events = self.events.lock();
            self.drain_events(&mut events);
            self.note_overflow(&mut events.faults);
        }
        if rest & sfm_bit != 0 {
            kapi::dev_err!(
                self.log,
                "service failure mode (GERROR.SFM_ERR): the SMMU stopped translating"
            );
        }
        let other = rest & !(evtq_bit | sfm_bit);
        if other != 0 {
            kapi::dev_err!(self.log, "global error {}", GlobalErrors::new(other, 0));
        }
        if rest != 0 {
            // Toggling GERRORN's bits ends exactly these errors (§7.5, §6.3 SMMU_GERRORN).
            let gerrorn = self.io.read(Reg::Gerrorn);
            self.io.write(Reg::Gerrorn, gerrorn ^ rest);
        }
    }

    /// A single interrupt for both ("combined" in the DT).
    pub fn handle_combined(&self) {
        self.handle_gerror();
        self.handle_eventq();
    }

    /// The last few events, oldest first.
    pub fn recent_events(&self) -> Vec<Event> {
        self.events.lock().faults.recent().copied().collect()
    }

    /// Events from `sid` since it was last released.
    pub fn fault_count(&self, sid: StreamId) -> u64 {
        self.events.lock().faults.count(sid.0)
    }

    /// Events since the SMMU was brought up.
    pub fn fault_total(&self) -> u64 {
        self.events.lock().faults.total()
    }

    /// Event queue overflow reports (each: at least one event lost).
    pub fn event_overflows(&self) -> u64 {
        self.events.lock().faults.overflows()
    }

    /// True when `sid` is cut off by the fault-flood policy.
    pub fn is_cut_off(&self, sid: StreamId) -> bool {
        self.streams
            .lock()
            .slots
            .get(&sid.0)
            .is_some_and(|s| s.cut_off)
    }

    /// The device probed with `sid`, if any.
    pub fn master(&self, sid: StreamId) -> Option<String> {
        self.streams
            .lock()
            .slots
            .get(&sid.0)
            .map(|s| s.master.clone())
    }
}

fn now() -> Duration {
    Instant::now().since_boot()
}

/// Makes `mem` permanent: a clone of the handle is forgotten, so the memory is never freed.
fn leak(mem: &Arc<kapi::dma_mem::Frames>) {
    core::mem::forget(mem.clone());
}

impl IommuOps for Smmu {
    fn kind(&self) -> &'static str {
        "smmuv3"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn probe_device(&self, device: &str, ids: &[u32]) -> Result<(), IommuError> {
        let mut streams = self.streams.lock();
        let layout = streams.table.layout();
        for &id in ids {
            layout.locate(StreamId(id))?;
        }
        for &id in ids {
            let sid = StreamId(id);
            if let Some(l1) = streams.table.missing_l2(sid)? {
                streams.table.install_l2(&*self.io, l1)?;
                // The SMMU may have cached the invalid level-1 descriptor: invalidate the
                // StreamIDs it covers (2^(Range + 1) = 2^SPLIT) and wait.
                let cfgi = encode(&Command::CfgiSteRange {
                    sid: StreamTable::l1_first_sid(l1),
                    range: (SPLIT - 1) as u8,
                });
                self.cmdq.lock().issue(&*self.io, &self.log, &[cfgi])?;
            }
            streams
                .slots
                .entry(id)
                .and_modify(|s| s.master = device.to_string())
                .or_insert_with(|| Slot {
                    master: device.to_string(),
                    attached: Attached::Blocked,
                    cut_off: false,
                });
        }
        Ok(())
    }

    fn release_device(&self, ids: &[u32]) {
        let mut streams = self.streams.lock();
        let Streams { table, slots } = &mut *streams;
        for &id in ids {
            let Some(slot) = slots.remove(&id) else {
                continue;
            };
            let sid = StreamId(id);
            let aborts = table
                .slot(sid)
                .ok()
                .flatten()
                .is_none_or(|s| s.read().config() == SteConfig::Abort);
            if !aborts {
                kapi::dev_warn!(
                    self.log,
                    "StreamID {sid} ({}) released while not blocked: blocking it",
                    slot.master
                );
                if let Err(e) = self.write_ste(table, sid, &Ste::abort()) {
                    kapi::dev_err!(self.log, "StreamID {sid}: could not block it: {e}");
                    // The STE may still point at the domain: keep it alive for good.
                    core::mem::forget(slot);
                }
            }
        }
        drop(streams);
        let mut events = self.events.lock();
        for &id in ids {
            events.faults.release(id);
        }
    }

    fn alloc_domain(&self) -> Result<Arc<dyn IommuDomain>, IommuError> {
        Ok(self.new_domain()?)
    }

    fn attach(&self, ids: &[u32], target: &AttachTarget) -> Result<(), IommuError> {
        let (ste, attached) = match target {
            AttachTarget::Blocked => (Ste::abort(), Attached::Blocked),
            AttachTarget::Identity => (Ste::bypass(), Attached::Identity),
            AttachTarget::Translated(d) => {
                let domain = self.find_domain(d).ok_or(SmmuError::ForeignDomain)?;
                let ste = Ste::stage1(domain.cd_address(), self.coherency.is_coherent())?;
                (ste, Attached::Translated(domain))
            }
        };
        let mut streams = self.streams.lock();
        let Streams { table, slots } = &mut *streams;
        if let Some(&id) = ids.iter().find(|id| !slots.contains_key(id)) {
            return Err(SmmuError::SidNotProbed(StreamId(id)).into());
        }
        for &id in ids {
            let Some(slot) = slots.get_mut(&id) else {
                continue;
            };
            if !slot.cut_off {
                self.write_ste(table, StreamId(id), &ste)?;
            }
            // The previous domain, if any, may drop here: its STE no longer points at it.
            slot.attached = attached.clone();
        }
        Ok(())
    }

    fn supports_identity(&self) -> bool {
        true
    }

    fn stats(&self) -> InstanceStats {
        let streams_not_blocked = {
            let streams = self.streams.lock();
            streams
                .slots
                .keys()
                .filter_map(|&id| streams.table.slot(StreamId(id)).ok().flatten())
                .filter(|s| !matches!(s.read().config(), SteConfig::Abort | SteConfig::Invalid))
                .count() as u64
        };
        let domains = self.live_domains();
        InstanceStats {
            streams_not_blocked,
            domains: domains.len() as u64,
            table_pages: domains.iter().map(|d| d.table_pages()).sum(),
        }
    }
}

impl Drop for Smmu {
    fn drop(&mut self) {
        if self.shut_down.load(Ordering::Relaxed) {
            return;
        }
        self.cmdq.lock().disable();
        if disable(&*self.io).is_ok() {
            return;
        }
        kapi::dev_err!(
            self.log,
            "could not be disabled: its tables, queues and attached domains are leaked"
        );
        leak(self.cmdq.lock().memory());
        leak(self.events.lock().queue.memory());
        let streams = self.streams.lock();
        streams.table.memory().for_each(leak);
        for slot in streams.slots.values() {
            if let Attached::Translated(d) = &slot.attached {
                core::mem::forget(d.clone());
            }
        }
    }
}
