//! Command and event queue geometry and index arithmetic (IHI 0070 §3.5 "Command and Event
//! queues", §6.3 SMMU_CMDQ_BASE/PROD/CONS, SMMU_EVENTQ_BASE/PROD/CONS).
//!
//! A queue is 2^LOG2SIZE entries in a physically contiguous buffer aligned to its size (at least
//! 32 bytes). PROD and CONS hold an index in bits [LOG2SIZE-1:0] and a *wrap* bit at bit
//! LOG2SIZE that flips each time the index wraps: equal index and equal wrap = empty, equal index
//! and different wrap = full. Software produces commands (writes CMDQ_PROD) and consumes events
//! (writes EVENTQ_CONS); the SMMU does the opposite.
//!
//! # Sizes
//! The kernel caps the sizes the hardware allows (IDR1.CMDQS / EVENTQS, up to 2^19):
//! - command queue: 2^[`CMDQ_MAX_LOG2`] = 256 entries, 4 KiB (one page). Commands are batched
//!   (at most [`crate::cmd::DEFAULT_MAX_TLBI_COMMANDS`] invalidations plus a CMD_SYNC), and every
//!   submission waits for its sync, so the queue never needs to hold more.
//! - event queue: 2^[`EVENTQ_MAX_LOG2`] = 512 entries, 16 KiB. Events are faults; a device
//!   faulting in a loop outruns any queue, and the rate-limited log shows only a few lines per
//!   second anyway. 512 holds the first burst of a misbehaving device plus unrelated events.

use tock_registers::LocalRegisterCopy;

use crate::regs::{CMDQ_BASE, EVENTQ_BASE, EVENTQ_CONS, EVENTQ_PROD};
use crate::{PA_FIELD_BITS, PhysAddr, SmmuError, Structure, check_pa};

/// Size of a command queue entry.
pub const CMDQ_ENTRY_BYTES: u64 = 16;
/// Size of an event queue entry.
pub const EVENTQ_ENTRY_BYTES: u64 = 32;
/// Kernel cap on the command queue: 256 entries.
pub const CMDQ_MAX_LOG2: u32 = 8;
/// Kernel cap on the event queue: 512 entries.
pub const EVENTQ_MAX_LOG2: u32 = 9;
/// Largest LOG2SIZE the architecture defines for these queues (PROD/CONS have 20 bits).
pub const ARCH_MAX_LOG2: u32 = 19;
/// Minimum alignment of a queue base (ADDR starts at bit 5).
pub const MIN_QUEUE_ALIGN: u64 = 32;

/// Which queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// The command queue (software produces).
    Command,
    /// The event queue (the SMMU produces).
    Event,
}

impl QueueKind {
    /// Bytes per entry.
    pub fn entry_bytes(self) -> u64 {
        match self {
            QueueKind::Command => CMDQ_ENTRY_BYTES,
            QueueKind::Event => EVENTQ_ENTRY_BYTES,
        }
    }

    /// The kernel's cap on LOG2SIZE.
    pub fn kernel_max_log2(self) -> u32 {
        match self {
            QueueKind::Command => CMDQ_MAX_LOG2,
            QueueKind::Event => EVENTQ_MAX_LOG2,
        }
    }

    fn structure(self) -> Structure {
        match self {
            QueueKind::Command => Structure::CommandQueue,
            QueueKind::Event => Structure::EventQueue,
        }
    }
}

/// A queue position: index and wrap bit, without the flag bits PROD/CONS registers carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePos(u32);

impl QueuePos {
    /// The value for the WR/RD field of a PROD/CONS register.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The geometry of one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    kind: QueueKind,
    log2size: u32,
}

impl Queue {
    /// A queue of 2^`log2size` entries; refused beyond `hw_max_log2` (IDR1.CMDQS/EVENTQS) or the
    /// architecture's 2^19.
    pub fn new(kind: QueueKind, log2size: u32, hw_max_log2: u32) -> Result<Queue, SmmuError> {
        let max = hw_max_log2.min(ARCH_MAX_LOG2);
        if log2size > max {
            return Err(SmmuError::QueueSize { log2size, max });
        }
        Ok(Queue { kind, log2size })
    }

    /// The size this kernel uses: the hardware maximum capped by [`QueueKind::kernel_max_log2`].
    pub fn sized_for(kind: QueueKind, hw_max_log2: u32) -> Queue {
        let log2size = hw_max_log2.min(kind.kernel_max_log2()).min(ARCH_MAX_LOG2);
        Queue { kind, log2size }
    }

    /// Which queue.
    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// LOG2SIZE.
    pub fn log2size(&self) -> u32 {
        self.log2size
    }

    /// Number of entries.
    pub fn entries(&self) -> u32 {
        1 << self.log2size
    }

    /// Size of the buffer in bytes.
    pub fn bytes(&self) -> u64 {
        self.kind.entry_bytes() << self.log2size
    }

    /// Alignment the buffer needs: its size, at least 32 bytes.
    pub fn align(&self) -> u64 {
        self.bytes().max(MIN_QUEUE_ALIGN)
    }

    /// The CMDQ_BASE / EVENTQ_BASE value for a buffer at `pa`, with the allocation hint set
    /// (RA for the command queue the SMMU reads, WA for the event queue it writes).
    pub fn base(&self, pa: PhysAddr) -> Result<u64, SmmuError> {
        check_pa(self.kind.structure(), pa, self.align(), PA_FIELD_BITS)?;
        let log2 = u64::from(self.log2size);
        Ok(match self.kind {
            QueueKind::Command => {
                (CMDQ_BASE::ADDR.val(pa.0 >> 5)
                    + CMDQ_BASE::LOG2SIZE.val(log2)
                    + CMDQ_BASE::RA::SET)
                    .value
            }
            QueueKind::Event => {
                (EVENTQ_BASE::ADDR.val(pa.0 >> 5)
                    + EVENTQ_BASE::LOG2SIZE.val(log2)
                    + EVENTQ_BASE::WA::SET)
                    .value
            }
        })
    }

    /// Index and wrap bits of a PROD or CONS register value (drops ERR, OVFLG, ...).
    pub fn pos(&self, register: u32) -> QueuePos {
        QueuePos(register & self.pos_mask())
    }

    fn pos_mask(&self) -> u32 {
        (2 << self.log2size) - 1
    }

    fn index(&self, p: QueuePos) -> u32 {
        p.0 & (self.entries() - 1)
    }

    /// Nothing between `cons` and `prod`.
    pub fn is_empty(&self, prod: QueuePos, cons: QueuePos) -> bool {
        prod == cons
    }

    /// Every entry between `cons` and `prod`: same index, different wrap bit.
    pub fn is_full(&self, prod: QueuePos, cons: QueuePos) -> bool {
        prod.0 ^ cons.0 == self.entries()
    }

    /// Entries produced and not yet consumed.
    pub fn used(&self, prod: QueuePos, cons: QueuePos) -> u32 {
        prod.0.wrapping_sub(cons.0) & self.pos_mask()
    }

    /// Entries the producer may still write.
    pub fn free(&self, prod: QueuePos, cons: QueuePos) -> u32 {
        self.entries() - self.used(prod, cons)
    }

    /// `p` moved on by `n` entries (at most one lap), flipping the wrap bit on wrap-around.
    pub fn advance(&self, p: QueuePos, n: u32) -> QueuePos {
        debug_assert!(
            n <= self.entries(),
            "advancing a queue by more than its size"
        );
        QueuePos(p.0.wrapping_add(n) & self.pos_mask())
    }

    /// Byte offset of the entry at `p` in the buffer.
    pub fn offset(&self, p: QueuePos) -> u64 {
        u64::from(self.index(p)) * self.kind.entry_bytes()
    }
}

/// True when the SMMU reports lost events: EVENTQ_PROD.OVFLG differs from EVENTQ_CONS.OVACKFLG.
/// (QEMU never sets OVFLG; it toggles GERROR.EVENTQ_ABT_ERR instead.)
pub fn event_overflow(prod: u32, cons: u32) -> bool {
    let p = LocalRegisterCopy::<u32, EVENTQ_PROD::Register>::new(prod);
    let c = LocalRegisterCopy::<u32, EVENTQ_CONS::Register>::new(cons);
    p.is_set(EVENTQ_PROD::OVFLG) != c.is_set(EVENTQ_CONS::OVACKFLG)
}

/// The EVENTQ_CONS value that consumes up to `cons` and acknowledges any overflow flagged in
/// the EVENTQ_PROD value `prod` (OVACKFLG follows OVFLG).
pub fn event_cons_value(cons: QueuePos, prod: u32) -> u32 {
    let p = LocalRegisterCopy::<u32, EVENTQ_PROD::Register>::new(prod);
    (EVENTQ_CONS::RD.val(cons.get()) + EVENTQ_CONS::OVACKFLG.val(p.read(EVENTQ_PROD::OVFLG))).value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smmuv3_queue_sizes_follow_hardware_and_kernel_caps() {
        let cmdq = Queue::sized_for(QueueKind::Command, 19);
        assert_eq!(
            (cmdq.log2size(), cmdq.entries(), cmdq.bytes()),
            (8, 256, 4096)
        );
        let evtq = Queue::sized_for(QueueKind::Event, 19);
        assert_eq!(
            (evtq.log2size(), evtq.entries(), evtq.bytes()),
            (9, 512, 16384)
        );
        let small = Queue::sized_for(QueueKind::Command, 3);
        assert_eq!(
            (small.entries(), small.bytes(), small.align()),
            (8, 128, 128)
        );
        let one = Queue::sized_for(QueueKind::Command, 0);
        assert_eq!((one.bytes(), one.align()), (16, 32));
        assert_eq!(
            Queue::new(QueueKind::Event, 10, 9),
            Err(SmmuError::QueueSize {
                log2size: 10,
                max: 9
            })
        );
        assert_eq!(
            Queue::new(QueueKind::Event, 20, 31),
            Err(SmmuError::QueueSize {
                log2size: 20,
                max: 19
            })
        );
    }

    #[test]
    fn smmuv3_queue_base_register_golden() {
        let cmdq = Queue::sized_for(QueueKind::Command, 19);
        // ADDR [51:5] in place, LOG2SIZE [4:0] = 8, RA bit 62.
        assert_eq!(
            cmdq.base(PhysAddr(0x4020_0000)),
            Ok(0x4020_0000 | 8 | (1 << 62))
        );
        let evtq = Queue::sized_for(QueueKind::Event, 19);
        // WA bit 62, LOG2SIZE 9.
        assert_eq!(
            evtq.base(PhysAddr(0x4021_0000)),
            Ok(0x4021_0000 | 9 | (1 << 62))
        );
        assert_eq!(
            evtq.base(PhysAddr(0x4021_1000)),
            Err(SmmuError::Misaligned {
                what: Structure::EventQueue,
                addr: PhysAddr(0x4021_1000),
                align: 16384
            })
        );
        let one = Queue::sized_for(QueueKind::Command, 0);
        assert_eq!(one.base(PhysAddr(0x20)), Ok(0x20 | (1 << 62)));
        assert!(one.base(PhysAddr(0x10)).is_err());
    }

    #[test]
    fn smmuv3_queue_empty_full_and_wrap() {
        let q = Queue::new(QueueKind::Command, 2, 19).unwrap(); // 4 entries, wrap bit = 4
        let zero = q.pos(0);
        assert!(q.is_empty(zero, zero));
        assert_eq!(q.free(zero, zero), 4);
        let p3 = q.advance(zero, 3);
        assert_eq!(p3.get(), 3);
        assert_eq!((q.used(p3, zero), q.free(p3, zero)), (3, 1));
        let p4 = q.advance(p3, 1);
        assert_eq!(p4.get(), 0b100); // index 0, wrap 1
        assert!(q.is_full(p4, zero) && !q.is_empty(p4, zero));
        assert_eq!(q.free(p4, zero), 0);
        assert_eq!(q.offset(p4), 0);
        // Consumer catches up half-way, producer wraps again.
        let c2 = q.advance(zero, 2);
        let p6 = q.advance(p4, 2);
        assert_eq!(p6.get(), 0b110);
        assert_eq!(q.used(p6, c2), 4);
        assert!(q.is_full(p6, c2));
        let p8 = q.advance(p6, 2);
        assert_eq!(p8.get(), 0); // both wraps done: back to index 0, wrap 0
        let c8 = q.advance(q.advance(c2, 4), 2);
        assert!(q.is_empty(p8, c8));
        // Producer behind the consumer numerically but one lap ahead.
        let c3 = q.pos(3);
        let p1w = q.pos(0b101);
        assert_eq!(q.used(p1w, c3), 2);
        assert_eq!(q.offset(q.pos(3)), 48);
    }

    #[test]
    fn smmuv3_queue_pos_drops_register_flags() {
        let q = Queue::new(QueueKind::Command, 8, 19).unwrap();
        // CMDQ_CONS with ERR = CERROR_ILL (1 << 24) and index 5, wrap 1.
        let cons = q.pos((1 << 24) | 0x105);
        assert_eq!(cons.get(), 0x105);
        assert_eq!(q.offset(cons), 5 * 16);
        let e = Queue::new(QueueKind::Event, 9, 19).unwrap();
        assert_eq!(e.pos(0x8000_0203).get(), 0x203);
        assert_eq!(e.offset(e.pos(0x203)), 3 * 32);
    }

    #[test]
    fn smmuv3_queue_every_position_of_a_small_queue() {
        let q = Queue::new(QueueKind::Event, 3, 19).unwrap(); // 8 entries, positions 0..16
        for cons in 0..16 {
            let c = q.pos(cons);
            for n in 0..=8 {
                let p = q.advance(c, n);
                assert_eq!(q.used(p, c), n, "cons {cons} + {n}");
                assert_eq!(q.free(p, c), 8 - n);
                assert_eq!(q.is_empty(p, c), n == 0);
                assert_eq!(q.is_full(p, c), n == 8);
                assert_eq!(q.offset(p), u64::from((cons + n) % 8) * 32);
            }
        }
    }

    #[test]
    fn smmuv3_queue_event_overflow_ack() {
        assert!(!event_overflow(0x5, 0x5));
        assert!(event_overflow(0x8000_0005, 0x5));
        let q = Queue::new(QueueKind::Event, 9, 19).unwrap();
        let cons = q.pos(0x5);
        let ack = event_cons_value(cons, 0x8000_0005);
        assert_eq!(ack, 0x8000_0005);
        assert!(!event_overflow(0x8000_0005, ack));
        assert_eq!(event_cons_value(cons, 0x5), 0x5);
    }
}
