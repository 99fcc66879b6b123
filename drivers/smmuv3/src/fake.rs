//! A register-level model of an SMMUv3, for host tests of the driver.
//!
//! [`FakeSmmu`] implements [`SmmuIo`] with the behaviour the driver depends on, as QEMU 10.0.2
//! (`hw/arm/smmuv3.c`) shows it, and records every register write so tests can check the order
//! of a sequence:
//! - CR0ACK follows CR0 (optionally after some reads, or never: a stuck SMMU); IRQ_CTRLACK
//!   follows IRQ_CTRL; GBPA takes a write only with UPDATE set, and clears UPDATE (or never).
//! - Commands are consumed from CMDQ_CONS to CMDQ_PROD while CR0.CMDQEN is set and CMDQ_ERR is
//!   not active: inside the PROD and GERRORN writes like QEMU, or one per CMDQ_CONS read like
//!   slow hardware ([`Model::lazy`]). An unknown opcode or SSec = 1 stops consumption with
//!   CMDQ_CONS.ERR = CERROR_ILL and toggles GERROR.CMDQ_ERR. Consumed commands are recorded.
//! - [`FakeSmmu::inject_event`] writes an event record at EVENTQ_PROD, or, when the queue is
//!   full, drops it and raises GERROR.EVENTQ_ABT_ERR (only if not active), as QEMU does.
//!
//! The model finds the queues in memory through the base registers and the allocations made
//! through [`SmmuIo::alloc`], which it remembers (weakly: it never keeps memory alive).

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use kapi::dma_mem::Frames;
use kapi::sync::IrqLock;

use crate::features::IdRegs;
use crate::hw::{Reg, Reg64, SmmuIo};
use crate::queue::{Queue, QueueKind};

/// One recorded register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A 32-bit write.
    Write(Reg, u32),
    /// A 64-bit write.
    Write64(Reg64, u64),
}

const CR0_MASK: u32 = 0x3df;
const CMDQEN: u32 = 1 << 3;
const EVENTQEN: u32 = 1 << 2;
const GBPA_UPDATE: u32 = 1 << 31;
const GERROR_CMDQ: u32 = 1 << 0;
const GERROR_EVTQ_ABT: u32 = 1 << 2;
const ADDR_MASK: u64 = ((1 << 52) - 1) & !0x1f;
/// Opcodes QEMU 10.0.2 accepts on the non-secure queue.
const KNOWN_OPCODES: [u8; 24] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x18, 0x1a, 0x20, 0x21, 0x22, 0x23,
    0x28, 0x2a, 0x30, 0x40, 0x41, 0x44, 0x45, 0x46,
];

/// The model's state; tests reach it through [`FakeSmmu::with`].
#[derive(Debug, Default)]
pub struct Model {
    /// The ID registers it reports.
    pub ids: IdRegs,
    /// CR0ACK follows CR0 only after this many CR0ACK reads.
    pub cr0_ack_delay: u32,
    /// CR0ACK never follows CR0.
    pub cr0_stuck: bool,
    /// GBPA.UPDATE never clears.
    pub gbpa_stuck: bool,
    /// Commands are consumed one per CMDQ_CONS read instead of inside the PROD write.
    pub lazy: bool,
    /// Every register write, in order.
    pub writes: Vec<Access>,
    /// Every command consumed, in order.
    pub commands: Vec<[u64; 2]>,
    /// CMDQ_CONS reads (each an exit to the device model on real hardware emulation).
    pub cons_reads: u64,
    cr0: u32,
    cr0ack: u32,
    ack_reads_left: u32,
    cr1: u32,
    cr2: u32,
    gbpa: u32,
    irq_ctrl: u32,
    gerror: u32,
    gerrorn: u32,
    strtab_cfg: u32,
    cmdq_prod: u32,
    cmdq_cons: u32,
    cmdq_err: u32,
    evtq_prod: u32,
    evtq_cons: u32,
    strtab_base: u64,
    cmdq_base: u64,
    evtq_base: u64,
    memory: Vec<Weak<Frames>>,
}

/// The model's default machine is QEMU's.
impl Default for IdRegs {
    fn default() -> Self {
        IdRegs::QEMU_VIRT_10_0
    }
}

impl Model {
    fn frames_at(&self, pa: u64) -> Option<(Arc<Frames>, u64)> {
        self.memory.iter().filter_map(Weak::upgrade).find_map(|f| {
            let start = f.pa().0;
            (pa >= start && pa < start + f.size()).then(|| (f.clone(), pa - start))
        })
    }

    fn cmdq(&self) -> Queue {
        Queue::new(QueueKind::Command, (self.cmdq_base & 0x1f) as u32, 19)
            .unwrap_or(Queue::sized_for(QueueKind::Command, 0))
    }

    fn evtq(&self) -> Queue {
        Queue::new(QueueKind::Event, (self.evtq_base & 0x1f) as u32, 19)
            .unwrap_or(Queue::sized_for(QueueKind::Event, 0))
    }

    /// Consumes up to `budget` commands.
    fn consume(&mut self, budget: usize) {
        let q = self.cmdq();
        for _ in 0..budget {
            if self.cr0 & CMDQEN == 0 || (self.gerror ^ self.gerrorn) & GERROR_CMDQ != 0 {
                return;
            }
            let (prod, cons) = (q.pos(self.cmdq_prod), q.pos(self.cmdq_cons));
            if q.is_empty(prod, cons) {
                return;
            }
            let at = (self.cmdq_base & ADDR_MASK) + q.offset(cons);
            let Some((mem, off)) = self.frames_at(at) else {
                self.command_error(2);
                return;
            };
            let words = [mem.read_u64(off), mem.read_u64(off + 8)];
            let opcode = (words[0] & 0xff) as u8;
            let ssec = words[0] >> 10 & 1 == 1;
            if !KNOWN_OPCODES.contains(&opcode) || ssec {
                self.command_error(1);
                return;
            }
            self.commands.push(words);
            self.cmdq_cons = q.advance(cons, 1).get();
        }
    }

    fn command_error(&mut self, code: u32) {
        self.cmdq_err = code;
        self.gerror ^= GERROR_CMDQ;
    }

    fn raise(&mut self, bit: u32) {
        // QEMU toggles only errors that are not active already.
        if (self.gerror ^ self.gerrorn) & bit == 0 {
            self.gerror ^= bit;
        }
    }

    fn read(&mut self, reg: Reg) -> u32 {
        match reg {
            Reg::Idr0 => self.ids.idr0,
            Reg::Idr1 => self.ids.idr1,
            Reg::Idr3 => self.ids.idr3,
            Reg::Idr5 => self.ids.idr5,
            Reg::Aidr => self.ids.aidr,
            Reg::Cr0 => self.cr0,
            Reg::Cr0Ack => {
                if !self.cr0_stuck {
                    if self.ack_reads_left == 0 {
                        self.cr0ack = self.cr0;
                    } else {
                        self.ack_reads_left -= 1;
                    }
                }
                self.cr0ack
            }
            Reg::Cr1 => self.cr1,
            Reg::Cr2 => self.cr2,
            Reg::Gbpa => self.gbpa,
            Reg::IrqCtrl | Reg::IrqCtrlAck => self.irq_ctrl,
            Reg::Gerror => self.gerror,
            Reg::Gerrorn => self.gerrorn,
            Reg::StrtabBaseCfg => self.strtab_cfg,
            Reg::CmdqProd => self.cmdq_prod,
            Reg::CmdqCons => {
                self.cons_reads += 1;
                if self.lazy {
                    self.consume(1);
                }
                self.cmdq_cons | self.cmdq_err << 24
            }
            Reg::EventqProd => self.evtq_prod,
            Reg::EventqCons => self.evtq_cons,
        }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        self.writes.push(Access::Write(reg, value));
        match reg {
            Reg::Cr0 => {
                self.cr0 = value & CR0_MASK;
                self.ack_reads_left = self.cr0_ack_delay;
                self.consume(usize::MAX);
            }
            Reg::Cr1 => self.cr1 = value,
            Reg::Cr2 => self.cr2 = value,
            Reg::Gbpa => {
                if value & GBPA_UPDATE != 0 {
                    self.gbpa = if self.gbpa_stuck {
                        value
                    } else {
                        value & !GBPA_UPDATE
                    };
                }
            }
            Reg::IrqCtrl => self.irq_ctrl = value,
            Reg::Gerrorn => {
                self.gerrorn = value;
                if !self.lazy {
                    self.consume(usize::MAX);
                }
            }
            Reg::StrtabBaseCfg => self.strtab_cfg = value,
            Reg::CmdqProd => {
                self.cmdq_prod = value;
                if !self.lazy {
                    self.consume(usize::MAX);
                }
            }
            Reg::CmdqCons => self.cmdq_cons = value,
            Reg::EventqProd => self.evtq_prod = value,
            Reg::EventqCons => self.evtq_cons = value,
            Reg::Idr0
            | Reg::Idr1
            | Reg::Idr3
            | Reg::Idr5
            | Reg::Aidr
            | Reg::Cr0Ack
            | Reg::IrqCtrlAck
            | Reg::Gerror => {}
        }
    }

    /// The value a register holds, without the side effects of a read.
    pub fn reg(&self, reg: Reg) -> u32 {
        match reg {
            Reg::Cr0Ack => self.cr0ack,
            Reg::CmdqCons => self.cmdq_cons | self.cmdq_err << 24,
            Reg::Idr0 => self.ids.idr0,
            Reg::Idr1 => self.ids.idr1,
            Reg::Idr3 => self.ids.idr3,
            Reg::Idr5 => self.ids.idr5,
            Reg::Aidr => self.ids.aidr,
            Reg::Cr0 => self.cr0,
            Reg::Cr1 => self.cr1,
            Reg::Cr2 => self.cr2,
            Reg::Gbpa => self.gbpa,
            Reg::IrqCtrl | Reg::IrqCtrlAck => self.irq_ctrl,
            Reg::Gerror => self.gerror,
            Reg::Gerrorn => self.gerrorn,
            Reg::StrtabBaseCfg => self.strtab_cfg,
            Reg::CmdqProd => self.cmdq_prod,
            Reg::EventqProd => self.evtq_prod,
            Reg::EventqCons => self.evtq_cons,
        }
    }

    /// The value a 64-bit base register holds.
    pub fn reg64(&self, reg: Reg64) -> u64 {
        match reg {
            Reg64::StrtabBase => self.strtab_base,
            Reg64::CmdqBase => self.cmdq_base,
            Reg64::EventqBase => self.evtq_base,
        }
    }
}

/// A shared handle on one modelled SMMU: clones see the same state.
#[derive(Clone, Default)]
pub struct FakeSmmu {
    model: Arc<IrqLock<Model>>,
}

impl core::fmt::Debug for FakeSmmu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FakeSmmu")
    }
}

impl FakeSmmu {
    /// An SMMU with the ID registers of QEMU 10.0.2 `virt`, just out of reset.
    pub fn qemu() -> Self {
        Self::with_ids(IdRegs::QEMU_VIRT_10_0)
    }

    /// QEMU's ID registers with a 48-bit OAS: on the host, the fake platform's "physical"
    /// addresses are heap addresses (up to 47 bits), beyond QEMU's 44-bit OAS.
    pub fn host() -> Self {
        Self::with_ids(IdRegs {
            idr5: (IdRegs::QEMU_VIRT_10_0.idr5 & !7) | 5,
            ..IdRegs::QEMU_VIRT_10_0
        })
    }

    /// An SMMU reporting `ids`, just out of reset (GBPA bypasses, as QEMU's does).
    pub fn with_ids(ids: IdRegs) -> Self {
        let fake = Self::default();
        fake.with(|m| {
            m.ids = ids;
            m.gbpa = 0x1000;
        });
        fake
    }

    /// Runs `f` on the model.
    pub fn with<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        f(&mut self.model.lock())
    }

    /// A register's value, without read side effects.
    pub fn reg(&self, reg: Reg) -> u32 {
        self.with(|m| m.reg(reg))
    }

    /// Every register write so far.
    pub fn writes(&self) -> Vec<Access> {
        self.with(|m| m.writes.clone())
    }

    /// Every command consumed so far.
    pub fn commands(&self) -> Vec<[u64; 2]> {
        self.with(|m| m.commands.clone())
    }

    /// Opcodes of the commands consumed so far.
    pub fn opcodes(&self) -> Vec<u8> {
        self.with(|m| m.commands.iter().map(|c| (c[0] & 0xff) as u8).collect())
    }

    /// Forgets the recorded writes, commands and CMDQ_CONS reads.
    pub fn clear_log(&self) {
        self.with(|m| {
            m.writes.clear();
            m.commands.clear();
            m.cons_reads = 0;
        });
    }

    /// CMDQ_CONS reads since the log was last cleared.
    pub fn cons_reads(&self) -> u64 {
        self.with(|m| m.cons_reads)
    }

    /// Points the event queue at `base` (an EVENTQ_BASE value) and enables it, for tests of
    /// the event queue alone.
    pub fn program_event_queue(&self, base: u64) {
        self.with(|m| {
            m.evtq_base = base;
            m.evtq_prod = 0;
            m.evtq_cons = 0;
            m.cr0 |= EVENTQEN;
        });
    }

    /// Produces an event record; false when the event queue is disabled or full (then, as on
    /// QEMU, the event is lost and GERROR.EVENTQ_ABT_ERR raised).
    pub fn inject_event(&self, words: [u64; 4]) -> bool {
        self.with(|m| {
            if m.cr0 & EVENTQEN == 0 {
                return false;
            }
            let q = m.evtq();
            let (prod, cons) = (q.pos(m.evtq_prod), q.pos(m.evtq_cons));
            if q.is_full(prod, cons) {
                m.raise(GERROR_EVTQ_ABT);
                return false;
            }
            let at = (m.evtq_base & ADDR_MASK) + q.offset(prod);
            let Some((mem, off)) = m.frames_at(at) else {
                m.raise(GERROR_EVTQ_ABT);
                return false;
            };
            for (i, w) in words.iter().enumerate() {
                mem.write_u64(off + 8 * i as u64, *w);
            }
            m.evtq_prod = (m.evtq_prod & (1 << 31)) | q.advance(prod, 1).get();
            true
        })
    }

    /// Stops the command queue as if the SMMU refused the command at CMDQ_CONS with error
    /// `code` (1 = CERROR_ILL): sets CMDQ_CONS.ERR and raises GERROR.CMDQ_ERR.
    pub fn raise_command_error(&self, code: u32) {
        self.with(|m| m.command_error(code));
    }

    /// Toggles EVENTQ_PROD.OVFLG, as hardware does when it loses events.
    pub fn set_prod_overflow_flag(&self) {
        self.with(|m| m.evtq_prod ^= 1 << 31);
    }

    /// Reads 64 bits of memory the driver allocated through [`SmmuIo::alloc`].
    pub fn read_memory(&self, pa: u64) -> Option<u64> {
        self.with(|m| m.frames_at(pa).map(|(mem, off)| mem.read_u64(off)))
    }
}

impl SmmuIo for FakeSmmu {
    fn read(&self, reg: Reg) -> u32 {
        self.with(|m| m.read(reg))
    }

    fn write(&self, reg: Reg, value: u32) {
        self.with(|m| m.write(reg, value));
    }

    fn write64(&self, reg: Reg64, value: u64) {
        self.with(|m| {
            m.writes.push(Access::Write64(reg, value));
            match reg {
                Reg64::StrtabBase => m.strtab_base = value,
                Reg64::CmdqBase => m.cmdq_base = value,
                Reg64::EventqBase => m.evtq_base = value,
            }
        });
    }

    fn alloc(&self, bytes: u64) -> Option<Arc<Frames>> {
        let frames = Arc::new(Frames::alloc_bytes(bytes)?);
        self.with(|m| {
            m.memory.retain(|w| w.strong_count() > 0);
            m.memory.push(Arc::downgrade(&frames));
        });
        Some(frames)
    }
}
