//! The event queue (IHI 0070 §3.5 queues, §7.2 "Event queue recorded faults and events", §7.4
//! "Event queue overflow") and what the driver keeps about the events it reads.
//!
//! [`EventQueue::drain`] reads every record the SMMU has published (PROD/CONS with wrap, a
//! barrier between reading PROD and reading the records, CONS written back after the records
//! were read). [`FaultLog`] keeps what tests and diagnostics look at: a total, a count per
//! StreamID, the last [`RECENT_EVENTS`] decoded events, the log rate limiter and the overflow
//! count. [`FloodDetector`] implements the fault-flood policy.
//!
//! # Fault-flood policy
//! A StreamID that raises [`FloodPolicy::DEFAULT`]`.threshold` (1000) events within one window of
//! `window` (1 s) is cut off: its STE is set to ABORT, which records no further events, and one
//! line says so. A device driver's bug touching an unmapped page causes a handful of faults; a
//! thousand a second is a device scribbling in a loop, whose events would otherwise fill the
//! queue, hide every other device's faults and keep the CPU in the handler. The stream stays cut
//! off until the device is released (unbind / `release_device`), which resets its detector.
//!
//! # Overflow
//! Architecturally a full event queue sets EVENTQ_PROD.OVFLG; QEMU instead drops the event and
//! raises GERROR.EVENTQ_ABT_ERR (and does not raise it again while it is active). Neither says
//! how many events were lost, so the driver counts overflow *reports* and says "at least one
//! event lost" the first time, once.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::time::Duration;

use kapi::barrier::dmb_osh;
use kapi::dma_mem::Frames;

use crate::event::{Event, RateLimiter, Verdict};
use crate::hw::{Coherency, Reg, SmmuIo};
use crate::queue::{EVENTQ_ENTRY_BYTES, Queue, QueuePos, event_cons_value, event_overflow};

/// Decoded events kept for tests and diagnostics.
pub const RECENT_EVENTS: usize = 32;

/// What one [`EventQueue::drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Records read.
    pub events: usize,
    /// EVENTQ_PROD.OVFLG reported lost events (acknowledged).
    pub overflow: bool,
    /// The limit stopped the drain with records left.
    pub more: bool,
}

/// The event queue: its memory, geometry and the consumer index only this driver moves.
#[derive(Debug)]
pub struct EventQueue {
    q: Queue,
    mem: Arc<Frames>,
    cons: QueuePos,
    /// The EVENTQ_CONS value last written (its OVACKFLG is what the SMMU compares against).
    cons_reg: u32,
    coherency: Coherency,
}

impl EventQueue {
    /// An empty queue of geometry `q` in `mem`; EVENTQ_PROD = EVENTQ_CONS = 0 must have been
    /// written to the registers.
    pub fn new(q: Queue, mem: Arc<Frames>, coherency: Coherency) -> Self {
        Self {
            q,
            mem,
            cons: q.pos(0),
            cons_reg: 0,
            coherency,
        }
    }

    /// The queue memory (for teardown: the SMMU writes it until EVENTQEN is clear).
    pub fn memory(&self) -> &Arc<Frames> {
        &self.mem
    }

    /// Geometry.
    pub fn geometry(&self) -> Queue {
        self.q
    }

    /// Reads the records published since the last drain, at most `limit`, oldest first, and
    /// hands each to `sink`; gives the slots back to the SMMU as it goes.
    pub fn drain(&mut self, io: &dyn SmmuIo, limit: usize, sink: &mut dyn FnMut(Event)) -> Drained {
        let mut out = Drained::default();
        loop {
            let prod_reg = io.read(Reg::EventqProd);
            // The records PROD covers were written before PROD moved; reading them must not be
            // satisfied before the PROD read (IHI 0070 §3.5.2 "Queue entry visibility
            // semantics").
            dmb_osh();
            let flagged = event_overflow(prod_reg, self.cons_reg);
            out.overflow |= flagged;
            let prod = self.q.pos(prod_reg);
            let mut read = 0;
            while self.cons != prod && out.events < limit {
                let off = self.q.offset(self.cons);
                self.coherency.fetch(&self.mem, off, EVENTQ_ENTRY_BYTES);
                let words = [0, 1, 2, 3].map(|w| self.mem.read_u64(off + 8 * w));
                self.cons = self.q.advance(self.cons, 1);
                out.events += 1;
                read += 1;
                sink(Event::decode(&words));
            }
            if read == 0 && !flagged {
                return out;
            }
            // The reads of the records must be complete before CONS hands their slots back to
            // the SMMU, which may overwrite them at once (§3.5.2).
            dmb_osh();
            // OVACKFLG copies OVFLG: acknowledges an overflow the SMMU flagged (§7.4).
            self.cons_reg = event_cons_value(self.cons, prod_reg);
            io.write(Reg::EventqCons, self.cons_reg);
            if out.events >= limit {
                out.more = self.cons != self.q.pos(io.read(Reg::EventqProd));
                return out;
            }
            if read == 0 {
                return out;
            }
        }
    }
}

/// The fault-flood thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodPolicy {
    /// Events from one StreamID within `window` that cut it off.
    pub threshold: u32,
    /// The window.
    pub window: Duration,
}

impl FloodPolicy {
    /// 1000 events within 1 s (see the module documentation).
    pub const DEFAULT: FloodPolicy = FloodPolicy {
        threshold: 1000,
        window: Duration::from_secs(1),
    };
}

/// What a fault means for its stream under the flood policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodVerdict {
    /// Below the threshold.
    Normal,
    /// This fault reached the threshold: cut the stream off now (reported exactly once).
    CutOff,
    /// The stream was cut off already (events that were queued before the cut).
    AlreadyCut,
}

/// Counts one StreamID's faults in fixed windows that start at the first fault after the last
/// window ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodDetector {
    window_start: Option<Duration>,
    count: u32,
    tripped: bool,
}

impl FloodDetector {
    /// Records a fault at `now` (time since boot).
    pub fn record(&mut self, now: Duration, policy: FloodPolicy) -> FloodVerdict {
        if self.tripped {
            return FloodVerdict::AlreadyCut;
        }
        match self.window_start {
            Some(start) if now.saturating_sub(start) < policy.window => {
                self.count = self.count.saturating_add(1);
            }
            _ => {
                self.window_start = Some(now);
                self.count = 1;
            }
        }
        if self.count >= policy.threshold {
            self.tripped = true;
            FloodVerdict::CutOff
        } else {
            FloodVerdict::Normal
        }
    }

    /// True once the stream was cut off.
    pub fn is_tripped(&self) -> bool {
        self.tripped
    }

    /// Forgets everything (the device was released).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Faults of one StreamID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SidFaults {
    /// Events recorded since the StreamID was last released.
    pub count: u64,
    /// Its flood detector.
    pub flood: FloodDetector,
}

/// What to do about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventAction {
    /// Whether to log it (and a suppressed count before it).
    pub log: Verdict,
    /// The flood policy's verdict for its stream.
    pub flood: FloodVerdict,
}

/// Everything the driver remembers about events.
#[derive(Debug)]
pub struct FaultLog {
    total: u64,
    per_sid: BTreeMap<u32, SidFaults>,
    recent: VecDeque<Event>,
    limiter: RateLimiter,
    policy: FloodPolicy,
    overflows: u64,
    overflow_reported: bool,
}

impl Default for FaultLog {
    fn default() -> Self {
        Self::new(FloodPolicy::DEFAULT)
    }
}

impl FaultLog {
    /// Empty, with Linux's rate limit (10 lines per 5 s) and `policy`.
    pub fn new(policy: FloodPolicy) -> Self {
        Self {
            total: 0,
            per_sid: BTreeMap::new(),
            recent: VecDeque::with_capacity(RECENT_EVENTS),
            limiter: RateLimiter::new(crate::event::DEFAULT_BURST, crate::event::DEFAULT_INTERVAL),
            policy,
            overflows: 0,
            overflow_reported: false,
        }
    }

    /// Records `e` at `now` and says whether to log it and whether its stream floods.
    pub fn record(&mut self, e: &Event, now: Duration) -> EventAction {
        self.total += 1;
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(*e);
        let sid = self.per_sid.entry(e.sid.0).or_default();
        sid.count += 1;
        EventAction {
            log: self.limiter.check(now),
            flood: sid.flood.record(now, self.policy),
        }
    }

    /// Lines suppressed in an interval that has ended, to report after a drain.
    pub fn flush_suppressed(&mut self, now: Duration) -> Option<crate::event::Suppressed> {
        self.limiter.flush(now)
    }

    /// Lines suppressed so far, reported now whatever the interval (see
    /// [`crate::event::RateLimiter::take_suppressed`]).
    pub fn take_suppressed(&mut self) -> Option<crate::event::Suppressed> {
        self.limiter.take_suppressed()
    }

    /// Events recorded since boot.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Events recorded for `sid` since it was last released.
    pub fn count(&self, sid: u32) -> u64 {
        self.per_sid.get(&sid).map_or(0, |s| s.count)
    }

    /// True when `sid` was cut off by the flood policy and not released since.
    pub fn is_cut_off(&self, sid: u32) -> bool {
        self.per_sid.get(&sid).is_some_and(|s| s.flood.is_tripped())
    }

    /// The last [`RECENT_EVENTS`] events, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Event> {
        self.recent.iter()
    }

    /// Forgets `sid`'s counters and flood state (its device was released).
    pub fn release(&mut self, sid: u32) {
        self.per_sid.remove(&sid);
    }

    /// Notes an overflow report; true the first time (the one to log).
    pub fn note_overflow(&mut self) -> bool {
        self.overflows += 1;
        !core::mem::replace(&mut self.overflow_reported, true)
    }

    /// Overflow reports since boot (each means at least one event was lost).
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// The flood policy.
    pub fn policy(&self) -> FloodPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use crate::fake::FakeSmmu;
    use crate::queue::QueueKind;
    use crate::{Iova, StreamId};
    use alloc::vec::Vec;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn smmuv3_evtq_flood_detector_trips_once_within_the_window() {
        let p = FloodPolicy {
            threshold: 3,
            window: Duration::from_secs(1),
        };
        let mut d = FloodDetector::default();
        assert_eq!(d.record(Duration::ZERO, p), FloodVerdict::Normal);
        assert_eq!(d.record(10 * MS, p), FloodVerdict::Normal);
        assert_eq!(d.record(20 * MS, p), FloodVerdict::CutOff);
        assert!(d.is_tripped());
        assert_eq!(d.record(30 * MS, p), FloodVerdict::AlreadyCut);
        d.reset();
        assert!(!d.is_tripped());
        // Spread out: each window sees fewer than the threshold.
        for i in 0..10 {
            assert_eq!(d.record(i * 600 * MS, p), FloodVerdict::Normal, "fault {i}");
        }
    }

    #[test]
    fn smmuv3_evtq_flood_default_is_1000_per_second() {
        let mut d = FloodDetector::default();
        for i in 0..999 {
            assert_eq!(
                d.record(Duration::from_micros(i), FloodPolicy::DEFAULT),
                FloodVerdict::Normal
            );
        }
        assert_eq!(
            d.record(Duration::from_micros(999), FloodPolicy::DEFAULT),
            FloodVerdict::CutOff
        );
    }

    fn fault(sid: u32, iova: u64) -> [u64; 4] {
        // F_TRANSLATION, write, CLASS = IN.
        [u64::from(sid) << 32 | 0x10, 2 << 40, iova, 0]
    }

    #[test]
    fn smmuv3_evtq_fault_log_counts_and_keeps_the_last_events() {
        let mut log = FaultLog::new(FloodPolicy::DEFAULT);
        for i in 0..40u64 {
            let e = Event::decode(&fault(0x18 + (i % 2) as u32, i << 12));
            log.record(&e, Duration::from_millis(i));
        }
        assert_eq!(log.total(), 40);
        assert_eq!(
            (log.count(0x18), log.count(0x19), log.count(7)),
            (20, 20, 0)
        );
        let recent: Vec<u64> = log.recent().map(|e| e.input_addr.0 >> 12).collect();
        assert_eq!(recent, (8..40).collect::<Vec<_>>());
        log.release(0x18);
        assert_eq!(log.count(0x18), 0);
        assert!(log.note_overflow());
        assert!(!log.note_overflow());
        assert_eq!(log.overflows(), 2);
    }

    #[test]
    fn smmuv3_evtq_fault_log_rate_limits_lines() {
        let mut log = FaultLog::default();
        let e = Event::decode(&fault(0x18, 0x8000_0000));
        let verdicts: Vec<Verdict> = (0..12).map(|_| log.record(&e, MS).log).collect();
        assert!(
            verdicts[..10]
                .iter()
                .all(|v| matches!(v, Verdict::Print { .. }))
        );
        assert_eq!(verdicts[10..], [Verdict::Suppress, Verdict::Suppress]);
        assert_eq!(
            log.flush_suppressed(Duration::from_secs(6)),
            Some(crate::event::Suppressed(2))
        );
    }

    /// An 8-entry event queue on the model: events are produced by `inject`, drained here.
    fn small_queue() -> (crate::driver_tests::Serial, FakeSmmu, EventQueue) {
        let (serial, _) = crate::driver_tests::serial();
        let io = FakeSmmu::qemu();
        let q = Queue::new(QueueKind::Event, 3, 19).unwrap();
        let mem = crate::hw::SmmuIo::alloc(&io, q.bytes()).unwrap();
        io.program_event_queue(q.base(mem.pa()).unwrap());
        (serial, io, EventQueue::new(q, mem, Coherency::new(true)))
    }

    #[test]
    fn smmuv3_evtq_drain_reads_in_order_across_the_wrap() {
        let (_serial, io, mut evq) = small_queue();
        let mut seen = Vec::new();
        let mut next = 0u64;
        // 5 rounds of 5 events through an 8-entry queue: wraps three times.
        for _ in 0..5 {
            for _ in 0..5 {
                assert!(io.inject_event(fault(0x18, next << 12)));
                next += 1;
            }
            let d = evq.drain(&io, 64, &mut |e| seen.push(e));
            assert_eq!(
                d,
                Drained {
                    events: 5,
                    overflow: false,
                    more: false
                }
            );
        }
        assert_eq!(seen.len(), 25);
        for (i, e) in seen.iter().enumerate() {
            assert_eq!(e.id, EventId::FTranslation);
            assert_eq!(e.sid, StreamId(0x18));
            assert_eq!(e.input_addr, Iova((i as u64) << 12));
            assert!(!e.read);
        }
        // Consumer caught up: CONS equals PROD, nothing more to read.
        assert_eq!(io.reg(Reg::EventqCons) & 0xf, io.reg(Reg::EventqProd) & 0xf);
        assert_eq!(evq.drain(&io, 64, &mut |_| panic!("no event")).events, 0);
    }

    #[test]
    fn smmuv3_evtq_drain_limit_leaves_the_rest_for_later() {
        let (_serial, io, mut evq) = small_queue();
        for i in 0..6 {
            assert!(io.inject_event(fault(0x20, i << 12)));
        }
        let mut seen = Vec::new();
        let d = evq.drain(&io, 4, &mut |e| seen.push(e.input_addr.0));
        assert_eq!(
            d,
            Drained {
                events: 4,
                overflow: false,
                more: true
            }
        );
        let d = evq.drain(&io, 4, &mut |e| seen.push(e.input_addr.0));
        assert_eq!(
            d,
            Drained {
                events: 2,
                overflow: false,
                more: false
            }
        );
        assert_eq!(seen, [0, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000]);
    }

    #[test]
    fn smmuv3_evtq_full_queue_drops_and_flags() {
        let (_serial, io, mut evq) = small_queue();
        for i in 0..8 {
            assert!(io.inject_event(fault(0x20, i << 12)));
        }
        // The ninth does not fit: QEMU drops it and raises GERROR.EVENTQ_ABT_ERR.
        assert!(!io.inject_event(fault(0x20, 8 << 12)));
        assert_eq!(io.reg(Reg::Gerror) ^ io.reg(Reg::Gerrorn), 1 << 2);
        let d = evq.drain(&io, 64, &mut |_| {});
        assert_eq!(d.events, 8);
        // Hardware flags overflow in EVENTQ_PROD.OVFLG instead: the drain acknowledges it.
        io.set_prod_overflow_flag();
        assert!(evq.drain(&io, 64, &mut |_| {}).overflow);
        assert_eq!(io.reg(Reg::EventqCons) >> 31, 1);
        assert!(!evq.drain(&io, 64, &mut |_| {}).overflow);
    }
}
