//! The command queue (IHI 0070 §3.5 "Command and Event queues", chapter 4 "Commands", §7.1
//! "Command queue errors").
//!
//! One queue per SMMU, behind one lock: every submission writes its commands, then a CMD_SYNC,
//! publishes them with one CMDQ_PROD write, and waits until CMDQ_CONS has passed the CMD_SYNC,
//! which the SMMU does only once every earlier command has completed (§4.7.3 CMD_SYNC). With
//! one producer that always waits, "passed the sync" is "the queue is empty again".
//!
//! QEMU consumes the commands inside the PROD write, so the first CONS read already shows the
//! sync consumed; hardware consumes them in its own time, so the wait polls CONS, bounded by
//! [`SYNC_TIMEOUT`].
//!
//! # Command errors
//! When the SMMU cannot execute a command it stops at it: CMDQ_CONS points at the command,
//! CMDQ_CONS.ERR says why and GERROR.CMDQ_ERR toggles. Nothing is consumed until software
//! acknowledges through GERRORN. The wait loop watches for that (the GERROR interrupt cannot be
//! taken while the queue's lock masks interrupts) and repairs the queue ([`CmdQueue::recover`],
//! also called by the GERROR handler): it logs
//! `command queue error CERROR_ILL at index 5 (opcode 0x7)`, overwrites the refused entry with a
//! CMD_SYNC ([`recovery_for`]: the command is skipped), and acknowledges; the SMMU resumes at
//! the repaired entry. The submission then reports [`SmmuError::CommandRefused`]: its commands
//! ran except the refused one.

use alloc::sync::Arc;
use core::fmt;
use core::time::Duration;

use kapi::barrier::dmb_oshst;
use kapi::dma_mem::Frames;
use kapi::logging::DevLog;
use kapi::time::poll_until;

use crate::SmmuError;
use crate::cmd::{Command, SyncSignal, encode, opcode};
use crate::event::{CmdqError, GlobalErrors};
use crate::hw::{Coherency, Reg, SmmuIo};
use crate::queue::{CMDQ_ENTRY_BYTES, Queue, QueuePos};
use crate::regs::GERROR;

/// How long a submission waits for the SMMU to consume its CMD_SYNC (or for queue space). The
/// wait runs with interrupts masked; a healthy SMMU needs microseconds.
pub const SYNC_TIMEOUT: Duration = Duration::from_millis(100);

/// A command the SMMU refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdqFault {
    /// What CMDQ_CONS.ERR said.
    pub error: CmdqError,
    /// Queue index of the refused command (without the wrap bit).
    pub index: u32,
    /// Its opcode.
    pub opcode: u8,
}

impl fmt::Display for CmdqFault {
    /// `command queue error CERROR_ILL at index 5 (opcode 0x07)`: the log line's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("command queue error ")?;
        match self.error.name() {
            Some(name) => f.write_str(name)?,
            None => write!(f, "{}", self.error)?,
        }
        write!(f, " at index {} (opcode {:#04x})", self.index, self.opcode)
    }
}

/// What to do with the command the SMMU stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Overwrite it with a CMD_SYNC, then acknowledge: the command is skipped.
    ReplaceWithSync,
    /// Acknowledge only: the SMMU retries the command at CONS.
    Retry,
}

/// The repair for each CMDQ_CONS.ERR code (§7.1):
/// - CERROR_ILL: the command is malformed; executing it again fails again. Skip it.
/// - CERROR_ABT: fetching it aborted; the fixed entry is rewritten by the CPU, which is the best
///   chance of a readable one. Skip it.
/// - CERROR_ATC_INV_SYNC: the command at CONS is the CMD_SYNC that waited for ATC
///   invalidations; retrying it is how the queue goes on (this driver issues none).
/// - CERROR_NONE: nothing refused (an acknowledgement crossed the error); retry.
/// - reserved codes: unknown meaning; skipping guarantees progress.
pub fn recovery_for(error: CmdqError) -> Recovery {
    match error {
        CmdqError::Illegal | CmdqError::Abort | CmdqError::Other(_) => Recovery::ReplaceWithSync,
        CmdqError::AtcInvSync | CmdqError::None => Recovery::Retry,
    }
}

/// What went through the queue, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdqStats {
    /// Commands submitted, CMD_SYNCs included.
    pub commands: u64,
    /// CMD_SYNCs completed (one per submission).
    pub syncs: u64,
    /// Configuration invalidations (CFGI_*).
    pub cfgi: u64,
    /// TLB invalidations (TLBI_*).
    pub tlbi: u64,
    /// Commands the SMMU refused.
    pub errors: u64,
    /// The last refused command.
    pub last_error: Option<CmdqFault>,
}

/// The command queue: its memory, geometry and the producer index only this driver moves.
#[derive(Debug)]
pub struct CmdQueue {
    q: Queue,
    mem: Arc<Frames>,
    prod: QueuePos,
    /// CMDQ_CONS as last read. The SMMU only moves CONS forward, so the free space it gives is
    /// never more than the real one: a submission that fits needs no register read first.
    cons: QueuePos,
    coherency: Coherency,
    enabled: bool,
    stats: CmdqStats,
}

/// The encoded CMD_SYNC this driver uses: completion observed by polling CONS.
fn sync_words() -> [u64; 2] {
    encode(&Command::Sync {
        signal: SyncSignal::None,
    })
}

impl CmdQueue {
    /// A queue of geometry `q` in `mem` (at least `q.bytes()`, aligned), empty: PROD = CONS = 0
    /// must have been written to the registers.
    pub fn new(q: Queue, mem: Arc<Frames>, coherency: Coherency) -> Self {
        Self {
            q,
            mem,
            prod: q.pos(0),
            cons: q.pos(0),
            coherency,
            enabled: false,
            stats: CmdqStats::default(),
        }
    }

    /// The queue memory (for teardown: it must outlive the SMMU's use of it).
    pub fn memory(&self) -> &Arc<Frames> {
        &self.mem
    }

    /// Geometry.
    pub fn geometry(&self) -> Queue {
        self.q
    }

    /// Starts accepting submissions (CR0.CMDQEN is acknowledged set).
    pub fn enable(&mut self) {
        self.enabled = true;
    }

    /// Refuses submissions from now on (the SMMU is being disabled).
    pub fn disable(&mut self) {
        self.enabled = false;
    }

    /// True while submissions are accepted.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Counters.
    pub fn stats(&self) -> CmdqStats {
        self.stats
    }

    /// The producer index as last written to CMDQ_PROD.
    pub fn prod(&self) -> QueuePos {
        self.prod
    }

    /// Submits `cmds` (encoded) followed by a CMD_SYNC and waits for the sync to be consumed.
    ///
    /// Returns [`SmmuError::CommandRefused`] when the SMMU refused one of them (it was skipped,
    /// the others ran; the first refusal is reported), [`SmmuError::Timeout`] when the SMMU did
    /// not get there in time, [`SmmuError::Disabled`] when the queue is off.
    pub fn issue(
        &mut self,
        io: &dyn SmmuIo,
        log: &DevLog,
        cmds: &[[u64; 2]],
    ) -> Result<(), SmmuError> {
        if !self.enabled {
            return Err(SmmuError::Disabled);
        }
        let mut refused = None;
        let total = cmds.len() + 1;
        let mut done = 0;
        while done < total {
            let free = match self.q.free(self.prod, self.cons) {
                0 => self.wait(io, log, &mut refused, |q, prod, cons| {
                    q.free(prod, cons) > 0
                })?,
                known => known,
            };
            let n = (free as usize).min(total - done);
            for i in done..done + n {
                let words = cmds.get(i).copied().unwrap_or_else(sync_words);
                self.write_entry(words);
                self.count(words);
            }
            done += n;
            // The SMMU may read an entry as soon as PROD covers it: the entries must be visible
            // to it before the PROD write that publishes them (IHI 0070 §3.5.2 "Queue entry
            // visibility semantics").
            dmb_oshst();
            io.write(Reg::CmdqProd, self.prod.get());
        }
        // Everything before the CMD_SYNC has completed, and is observable, before CONS shows the
        // sync consumed (§4.7.3 CMD_SYNC); this driver is the only producer and always waits, so
        // that is CONS == PROD. §7.1 asks pollers to watch GERROR.CMDQ_ERR too: `wait` does.
        self.wait(io, log, &mut refused, |q, prod, cons| {
            q.is_empty(prod, cons)
        })?;
        self.stats.syncs += 1;
        match refused {
            Some(fault) => Err(SmmuError::CommandRefused(fault)),
            None => Ok(()),
        }
    }

    fn count(&mut self, words: [u64; 2]) {
        self.stats.commands += 1;
        match words[0] & 0xff {
            opcode::CFGI_STE..=opcode::CFGI_CD_ALL => self.stats.cfgi += 1,
            opcode::TLBI_NH_ALL..=opcode::TLBI_NSNH_ALL => self.stats.tlbi += 1,
            _ => {}
        }
    }

    /// Writes one entry at PROD and moves PROD on (not published until CMDQ_PROD is written).
    fn write_entry(&mut self, words: [u64; 2]) {
        let off = self.q.offset(self.prod);
        self.mem.write_u64(off, words[0]);
        self.mem.write_u64(off + 8, words[1]);
        self.coherency.publish(&self.mem, off, CMDQ_ENTRY_BYTES);
        self.prod = self.q.advance(self.prod, 1);
    }

    /// Polls CMDQ_CONS until `ready(queue, prod, cons)`, repairing command errors on the way;
    /// returns the free space at that point.
    fn wait(
        &mut self,
        io: &dyn SmmuIo,
        log: &DevLog,
        refused: &mut Option<CmdqFault>,
        ready: impl Fn(&Queue, QueuePos, QueuePos) -> bool,
    ) -> Result<u32, SmmuError> {
        let mut free = 0;
        let waited = poll_until(SYNC_TIMEOUT, || {
            let cons = self.q.pos(io.read(Reg::CmdqCons));
            self.cons = cons;
            if ready(&self.q, self.prod, cons) {
                free = self.q.free(self.prod, cons);
                return true;
            }
            let errors = GlobalErrors::new(io.read(Reg::Gerror), io.read(Reg::Gerrorn));
            if errors.is_active(GERROR::CMDQ_ERR) {
                let fault = self.recover(io, log);
                refused.get_or_insert(fault);
            }
            false
        });
        match waited {
            Ok(()) => Ok(free),
            Err(_) => Err(SmmuError::Timeout {
                register: Reg::CmdqCons,
            }),
        }
    }

    /// Repairs the queue after GERROR.CMDQ_ERR: reads which command was refused and why, logs
    /// it, skips or retries it ([`recovery_for`]) and acknowledges CMDQ_ERR in GERRORN. Call
    /// only while CMDQ_ERR is active.
    pub fn recover(&mut self, io: &dyn SmmuIo, log: &DevLog) -> CmdqFault {
        let cons_reg = io.read(Reg::CmdqCons);
        let error = CmdqError::from_cons(cons_reg);
        let cons = self.q.pos(cons_reg);
        let off = self.q.offset(cons);
        let opcode = (self.mem.read_u64(off) & 0xff) as u8;
        let fault = CmdqFault {
            error,
            index: (off / CMDQ_ENTRY_BYTES) as u32,
            opcode,
        };
        kapi::dev_err!(log, "{fault}");
        if recovery_for(error) == Recovery::ReplaceWithSync {
            let sync = sync_words();
            self.mem.write_u64(off, sync[0]);
            self.mem.write_u64(off + 8, sync[1]);
            self.coherency.publish(&self.mem, off, CMDQ_ENTRY_BYTES);
            // Commands at CONS are re-fetched once the error is acknowledged (§7.1 "Command queue
            // errors"): the replacement must be visible before the GERRORN write.
            dmb_oshst();
        }
        self.stats.errors += 1;
        self.stats.last_error = Some(fault);
        // Acknowledge CMDQ_ERR alone: an error is active while GERROR and GERRORN differ, so
        // toggling GERRORN's bit ends it (§6.3 SMMU_GERRORN) and the SMMU resumes at CONS.
        let gerrorn = io.read(Reg::Gerrorn);
        io.write(Reg::Gerrorn, gerrorn ^ GERROR::CMDQ_ERR::SET.value);
        fault
    }

    /// Writes `words` as-is and waits for a CMD_SYNC behind it: how a test injects a command the
    /// SMMU must refuse. Same results as [`CmdQueue::issue`].
    pub fn issue_raw(
        &mut self,
        io: &dyn SmmuIo,
        log: &DevLog,
        words: [u64; 2],
    ) -> Result<(), SmmuError> {
        self.issue(io, log, &[words])
    }
}

/// Encodes commands into a fixed buffer for one submission (no allocation on the paths that run
/// in interrupt context).
pub struct Batch<const N: usize> {
    words: [[u64; 2]; N],
    len: usize,
}

impl<const N: usize> Default for Batch<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Batch<N> {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            words: [[0; 2]; N],
            len: 0,
        }
    }

    /// Appends `cmd`; false when the batch is full.
    pub fn push(&mut self, cmd: &Command) -> bool {
        match self.words.get_mut(self.len) {
            Some(slot) => {
                *slot = encode(cmd);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The encoded commands.
    pub fn as_slice(&self) -> &[[u64; 2]] {
        &self.words[..self.len]
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn smmuv3_cmdq_recovery_skips_what_cannot_succeed() {
        assert_eq!(recovery_for(CmdqError::Illegal), Recovery::ReplaceWithSync);
        assert_eq!(recovery_for(CmdqError::Abort), Recovery::ReplaceWithSync);
        assert_eq!(
            recovery_for(CmdqError::Other(0x7f)),
            Recovery::ReplaceWithSync
        );
        assert_eq!(recovery_for(CmdqError::AtcInvSync), Recovery::Retry);
        assert_eq!(recovery_for(CmdqError::None), Recovery::Retry);
    }

    #[test]
    fn smmuv3_cmdq_fault_line() {
        let f = CmdqFault {
            error: CmdqError::Illegal,
            index: 5,
            opcode: 0x07,
        };
        assert_eq!(
            f.to_string(),
            "command queue error CERROR_ILL at index 5 (opcode 0x07)"
        );
        let other = CmdqFault {
            error: CmdqError::Other(9),
            ..f
        };
        assert_eq!(
            other.to_string(),
            "command queue error command error 0x9 at index 5 (opcode 0x07)"
        );
    }

    #[test]
    fn smmuv3_cmdq_batch_is_bounded() {
        let mut b = Batch::<2>::new();
        assert!(b.is_empty());
        assert!(b.push(&Command::CfgiAll));
        assert!(b.push(&Command::TlbiNsnhAll));
        assert!(!b.push(&Command::TlbiNsnhAll));
        assert_eq!(b.len(), 2);
        assert_eq!(b.as_slice(), &[[0x04, 0x1f], [0x30, 0]]);
    }
}
