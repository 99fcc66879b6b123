//! Requests in flight: the queue's memory, a table of request slots, and the bookkeeping that
//! matches the device's completions to them.
//!
//! One coherent allocation per queue holds the split ring (layout from [`QueueLayout`]) and,
//! after it, one slot per request that may be in flight: the 16-byte header the device reads
//! and the status byte it writes. Data buffers are streaming mappings owned by the slot until
//! the request is finished and its submitter takes the result.
//!
//! Runs under the device's lock, in thread context (submit, take) and in the interrupt handler
//! (reap). Nothing here sleeps; dropping a mapping (allowed in interrupt context) is the only
//! DMA API call made from [`Engine::reap`].

use alloc::sync::Arc;
use alloc::vec::Vec;

use dma::{DmaCoherent, DmaDevice, DmaStream, FromDevice, ToDevice};
use kapi::Iova;

use crate::error::{BlkError, BrokenReason};
use crate::request::{self, HEADER_LEN, Limits, Outcome, RequestType};
use crate::virtqueue::{Buffer, QueueError, QueueLayout, QueueMemory, SplitQueue};

/// Bytes per request slot: header (16), status (1), padding to keep slots 16-byte aligned.
const SLOT_STRIDE: u64 = 32;
/// Offset of the status byte in a slot.
const STATUS_AT: u64 = HEADER_LEN as u64;
/// What the status byte holds until the device writes it: not a defined status, so a device
/// that claims completion without writing it is caught.
const STATUS_UNWRITTEN: u8 = 0xff;

/// A queue's coherent memory as the split ring sees it.
pub struct RingMem(DmaCoherent);

impl QueueMemory for RingMem {
    fn read_u16(&self, offset: u64) -> u16 {
        self.0.read_u16(offset)
    }
    fn read_u32(&self, offset: u64) -> u32 {
        self.0.read_u32(offset)
    }
    fn write_u16(&self, offset: u64, value: u16) {
        self.0.write_u16(offset, value)
    }
    fn write_u32(&self, offset: u64, value: u32) {
        self.0.write_u32(offset, value)
    }
    fn write_u64(&self, offset: u64, value: u64) {
        self.0.write_u64(offset, value)
    }
}

impl RingMem {
    /// The allocation.
    pub fn coherent(&self) -> &DmaCoherent {
        &self.0
    }
}

/// The data buffer of a request, mapped for the device.
#[derive(Debug)]
pub enum Data {
    /// No data (flush).
    None,
    /// The device fills it (read, get-ID).
    FromDevice(DmaStream<FromDevice>),
    /// The device reads it (write).
    ToDevice(DmaStream<ToDevice>),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::None => 0,
            Data::FromDevice(s) => s.len(),
            Data::ToDevice(s) => s.len(),
        }
    }
    fn addr(&self) -> Option<Iova> {
        match self {
            Data::None => None,
            Data::FromDevice(s) => Some(s.addr()),
            Data::ToDevice(s) => Some(s.addr()),
        }
    }
}

/// Identifies a submitted request: its slot and the slot's use count when it was submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotId {
    /// Slot index.
    pub slot: u16,
    /// Use count of the slot.
    pub generation: u32,
}

struct InFlight {
    generation: u32,
    kind: RequestType,
    data: Data,
    /// Device-writable bytes: data (reads) plus the status byte.
    writable: u32,
    /// The submitter gave up waiting: free the slot as soon as the device returns it.
    abandoned: bool,
}

struct Finished {
    generation: u32,
    result: Result<(), BlkError>,
    data: Data,
}

enum Slot {
    Free,
    InFlight(InFlight),
    Finished(Finished),
}

/// Request statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests completed (successfully or not).
    pub requests: u64,
    /// Bytes read by successful requests.
    pub bytes_read: u64,
    /// Bytes written by successful requests.
    pub bytes_written: u64,
    /// Requests that completed with an error (device-reported or detected).
    pub errors: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u64,
}

/// The request engine of one queue.
pub struct Engine {
    queue: SplitQueue<RingMem>,
    slots_at: u64,
    slots: Vec<Slot>,
    /// Chain head descriptor -> slot.
    by_head: Vec<Option<u16>>,
    next_generation: u32,
    in_flight: usize,
    broken: Option<BrokenReason>,
    stats: Stats,
}

impl Engine {
    /// Allocates the memory of a queue of `size` entries (a power of two) with `slots` request
    /// slots. Thread context.
    pub fn new(dma: &Arc<DmaDevice>, size: u16, slots: u16) -> Result<Engine, BlkError> {
        let layout = QueueLayout::new(size);
        let slots_at = layout.total.next_multiple_of(SLOT_STRIDE);
        let mem = dma.alloc_coherent(slots_at + SLOT_STRIDE * u64::from(slots))?;
        Ok(Engine {
            queue: SplitQueue::new(RingMem(mem), layout),
            slots_at,
            slots: (0..slots).map(|_| Slot::Free).collect(),
            by_head: alloc::vec![None; usize::from(size)],
            next_generation: 0,
            in_flight: 0,
            broken: None,
            stats: Stats::default(),
        })
    }

    /// Bus addresses of the descriptor table, the available ring and the used ring.
    pub fn ring_addresses(&self) -> (Iova, Iova, Iova) {
        let base = self.queue.memory().coherent().addr().0;
        let l = self.queue.layout();
        (
            Iova(base + l.desc),
            Iova(base + l.avail),
            Iova(base + l.used),
        )
    }

    /// The queue's layout.
    pub fn layout(&self) -> QueueLayout {
        self.queue.layout()
    }

    /// Requests the device holds.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Why the device is no longer trusted, if it is not.
    pub fn broken(&self) -> Option<BrokenReason> {
        self.broken
    }

    /// Declares the device broken (the caller then quiesces it and calls [`Engine::fail_all`]).
    pub fn set_broken(&mut self, reason: BrokenReason) {
        self.broken.get_or_insert(reason);
    }

    /// Statistics so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True when the used ring holds completions not yet reaped.
    pub fn has_unreaped(&self) -> bool {
        self.queue.has_used()
    }

    /// The queue's memory, for a fake device in host tests.
    #[cfg(test)]
    pub(crate) fn ring(&self) -> &RingMem {
        self.queue.memory()
    }

    fn slot_offset(&self, slot: u16) -> u64 {
        self.slots_at + SLOT_STRIDE * u64::from(slot)
    }

    /// Publishes a request. Returns its slot and whether the device must be notified. On
    /// error the data buffer is dropped (unmapped): the device never saw it.
    pub fn submit(
        &mut self,
        kind: RequestType,
        sector: u64,
        data: Data,
        limits: &Limits,
    ) -> Result<(SlotId, bool), BlkError> {
        if let Some(r) = self.broken {
            return Err(BlkError::Broken(r));
        }
        let Some(slot) = self.slots.iter().position(|s| matches!(s, Slot::Free)) else {
            return Err(BlkError::QueueFull);
        };
        let slot = slot as u16;
        let at = self.slot_offset(slot);
        let mem = self.queue.memory().coherent();
        mem.write_bytes(at, &request::encode_header(kind, sector));
        mem.write_u8(at + STATUS_AT, STATUS_UNWRITTEN);
        let base = mem.addr().0;
        let mut chain: Vec<Buffer> = Vec::with_capacity(2 + limits.max_segments as usize);
        chain.push(Buffer {
            addr: base + at,
            len: HEADER_LEN,
            device_writes: false,
        });
        if let Some(addr) = data.addr() {
            for (a, n) in limits.segments(addr.0, data.len()) {
                chain.push(Buffer {
                    addr: a,
                    len: n,
                    device_writes: kind.device_writes_data(),
                });
            }
        }
        chain.push(Buffer {
            addr: base + at + STATUS_AT,
            len: 1,
            device_writes: true,
        });
        let head = match self.queue.push(&chain) {
            Ok(h) => h,
            Err(QueueError::Full { .. }) => return Err(BlkError::QueueFull),
            Err(e) => return Err(BlkError::Queue(e)),
        };
        let writable = if kind.device_writes_data() {
            data.len() as u32 + 1
        } else {
            1
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        self.slots[usize::from(slot)] = Slot::InFlight(InFlight {
            generation,
            kind,
            data,
            writable,
            abandoned: false,
        });
        self.by_head[usize::from(head)] = Some(slot);
        self.in_flight += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.in_flight as u64);
        Ok((SlotId { slot, generation }, self.queue.should_notify()))
    }

    /// Takes every completion the device published. Returns how many were reaped; stops (and
    /// marks the engine broken) at the first one that breaks the protocol.
    pub fn reap(&mut self) -> usize {
        let mut n = 0;
        while self.broken.is_none() {
            let (head, written) = match self.queue.pop_used() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(QueueError::BadUsedId(id)) => {
                    self.broken = Some(BrokenReason::UnknownUsedId(id));
                    break;
                }
                Err(_) => break,
            };
            // The queue frees only chains it handed out, so the head maps to a slot.
            let Some(slot) = self
                .by_head
                .get_mut(usize::from(head))
                .and_then(Option::take)
            else {
                self.broken = Some(BrokenReason::UnknownUsedId(u32::from(head)));
                break;
            };
            let state = core::mem::replace(&mut self.slots[usize::from(slot)], Slot::Free);
            let Slot::InFlight(req) = state else {
                self.slots[usize::from(slot)] = state;
                self.broken = Some(BrokenReason::UnknownUsedId(u32::from(head)));
                break;
            };
            self.in_flight -= 1;
            n += 1;
            let status = self
                .queue
                .memory()
                .coherent()
                .read_u8(self.slot_offset(slot) + STATUS_AT);
            let result = match request::judge(written, req.writable, status) {
                Outcome::Request(r) => r,
                Outcome::Broken(reason) => {
                    self.broken = Some(reason);
                    Err(BlkError::Broken(reason))
                }
            };
            self.account(req.kind, &req.data, &result);
            if req.abandoned {
                continue; // the slot is free; dropping the data unmaps it
            }
            self.slots[usize::from(slot)] = Slot::Finished(Finished {
                generation: req.generation,
                result,
                data: req.data,
            });
        }
        n
    }

    fn account(&mut self, kind: RequestType, data: &Data, result: &Result<(), BlkError>) {
        self.stats.requests += 1;
        match (result, kind) {
            (Err(_), _) => self.stats.errors += 1,
            (Ok(()), RequestType::In) => self.stats.bytes_read += data.len() as u64,
            (Ok(()), RequestType::Out) => self.stats.bytes_written += data.len() as u64,
            (Ok(()), _) => {}
        }
    }

    /// True once the request has finished (or no longer exists).
    pub fn is_finished(&self, id: SlotId) -> bool {
        match self.slots.get(usize::from(id.slot)) {
            Some(Slot::InFlight(r)) => r.generation != id.generation,
            _ => true,
        }
    }

    /// Takes a finished request's result and data, freeing its slot. `None` while it is still
    /// in flight or if it does not exist.
    pub fn take(&mut self, id: SlotId) -> Option<(Result<(), BlkError>, Data)> {
        let slot = self.slots.get_mut(usize::from(id.slot))?;
        match slot {
            Slot::Finished(f) if f.generation == id.generation => {
                let Slot::Finished(f) = core::mem::replace(slot, Slot::Free) else {
                    return None;
                };
                Some((f.result, f.data))
            }
            _ => None,
        }
    }

    /// The submitter no longer wants the result: free the slot now if finished, or as soon as
    /// the device returns it.
    pub fn abandon(&mut self, id: SlotId) {
        let Some(slot) = self.slots.get_mut(usize::from(id.slot)) else {
            return;
        };
        match slot {
            Slot::Finished(f) if f.generation == id.generation => *slot = Slot::Free,
            Slot::InFlight(r) if r.generation == id.generation => r.abandoned = true,
            _ => {}
        }
    }

    /// Ends every request in flight with `error`. Only call once the device can no longer
    /// touch their buffers (it was reset): their mappings are released when the results are
    /// taken (or now, for abandoned requests).
    pub fn fail_all(&mut self, error: BlkError) {
        for slot in &mut self.slots {
            if let Slot::InFlight(r) = core::mem::replace(slot, Slot::Free) {
                self.stats.requests += 1;
                self.stats.errors += 1;
                if !r.abandoned {
                    *slot = Slot::Finished(Finished {
                        generation: r.generation,
                        result: Err(error.clone()),
                        data: r.data,
                    });
                }
            }
        }
        self.by_head.iter_mut().for_each(|h| *h = None);
        self.in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtqueue::fake_device;
    use crate::virtqueue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
    use alloc::vec;

    fn dma() -> Arc<DmaDevice> {
        kapi::platform::fake::install();
        let d = dma::DmaDeviceBuilder::direct("blk-test", None).build();
        // Host heap addresses lie above 4 GiB.
        d.set_mask(64).unwrap();
        d
    }

    fn limits() -> Limits {
        Limits {
            capacity: 1 << 17,
            block_size: 512,
            size_max: None,
            max_segments: 6,
            read_only: false,
        }
    }

    /// The engine and a device-side view of its queue.
    struct Rig {
        dma: Arc<DmaDevice>,
        e: Engine,
        seen: u16,
    }

    impl Rig {
        fn new(size: u16, slots: u16) -> Self {
            let dma = dma();
            let e = Engine::new(&dma, size, slots).unwrap();
            Rig { dma, e, seen: 0 }
        }

        fn read(&mut self, sector: u64, len: usize) -> SlotId {
            let s = self.dma.map::<FromDevice>(vec![0; len]).unwrap();
            self.e
                .submit(RequestType::In, sector, Data::FromDevice(s), &limits())
                .unwrap()
                .0
        }

        /// Chains the device has been given since last time.
        fn device_takes(&mut self) -> Vec<fake_device::Chain> {
            let l = self.e.layout();
            fake_device::take_available(self.e.queue.memory(), l, &mut self.seen)
        }

        /// The device writes `status` for the request whose header is at `hdr` and returns
        /// `head` with `len` bytes written.
        fn device_completes(&mut self, head: u16, hdr: u64, status: u8, len: u32) {
            let mem = self.e.queue.memory().coherent();
            mem.write_u8(hdr - mem.addr().0 + STATUS_AT, status);
            fake_device::complete(self.e.queue.memory(), self.e.layout(), u32::from(head), len);
        }

        /// The header bytes the device would read at bus address `addr`.
        fn header_at(&self, addr: u64) -> [u8; 16] {
            let mem = self.e.queue.memory().coherent();
            let mut h = [0; 16];
            mem.read_bytes(addr - mem.addr().0, &mut h);
            h
        }
    }

    #[test]
    fn a_read_is_header_data_status_and_completes() {
        let mut r = Rig::new(8, 4);
        let id = r.read(40, 4096);
        assert_eq!(r.e.in_flight(), 1);
        let chains = r.device_takes();
        let [(head, chain)] = &chains[..] else {
            panic!("{chains:?}")
        };
        assert_eq!(chain.len(), 3);
        let (hdr, hlen, hflags) = chain[0];
        assert_eq!((hlen, hflags), (16, VIRTQ_DESC_F_NEXT));
        assert_eq!(
            r.header_at(hdr),
            request::encode_header(RequestType::In, 40)
        );
        assert_eq!(
            (chain[1].1, chain[1].2),
            (4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE)
        );
        assert_eq!(
            (chain[2].0, chain[2].1, chain[2].2),
            (hdr + 16, 1, VIRTQ_DESC_F_WRITE)
        );
        assert!(!r.e.is_finished(id));
        assert!(r.e.take(id).is_none());
        r.device_completes(*head, hdr, 0, 4097);
        assert_eq!(r.e.reap(), 1);
        assert!(r.e.is_finished(id));
        let (result, data) = r.e.take(id).unwrap();
        assert_eq!(result, Ok(()));
        assert!(matches!(data, Data::FromDevice(ref s) if s.len() == 4096));
        assert!(r.e.take(id).is_none(), "a result is taken once");
        let s = r.e.stats();
        assert_eq!(
            (s.requests, s.bytes_read, s.errors, s.max_in_flight),
            (1, 4096, 0, 1)
        );
    }

    #[test]
    fn a_write_has_a_device_readable_data_buffer_and_a_flush_none() {
        let mut r = Rig::new(8, 4);
        let out = r.dma.map::<ToDevice>(vec![7; 1024]).unwrap();
        let (w, _) =
            r.e.submit(RequestType::Out, 2, Data::ToDevice(out), &limits())
                .unwrap();
        let (f, _) =
            r.e.submit(RequestType::Flush, 0, Data::None, &limits())
                .unwrap();
        let chains = r.device_takes();
        assert_eq!(chains[0].1[1].1, 1024);
        assert_eq!(chains[0].1[1].2, VIRTQ_DESC_F_NEXT);
        assert_eq!(chains[1].1.len(), 2);
        assert_eq!(r.header_at(chains[1].1[0].0)[0..4], [4, 0, 0, 0]);
        for (head, chain) in &chains {
            r.device_completes(*head, chain[0].0, 0, 1);
        }
        assert_eq!(r.e.reap(), 2);
        assert_eq!(r.e.take(w).unwrap().0, Ok(()));
        assert_eq!(r.e.take(f).unwrap().0, Ok(()));
        assert_eq!(r.e.stats().bytes_written, 1024);
    }

    #[test]
    fn out_of_order_completions_reach_their_own_requests() {
        let mut r = Rig::new(16, 4);
        let ids: Vec<SlotId> = (0..4)
            .map(|i| r.read(i * 8, 512 * (i as usize + 1)))
            .collect();
        assert_eq!(r.e.stats().max_in_flight, 4);
        let chains = r.device_takes();
        // Complete in reverse, the second one with an I/O error.
        for (i, (head, chain)) in chains.iter().enumerate().rev() {
            let status = if i == 1 { 1 } else { 0 };
            r.device_completes(*head, chain[0].0, status, chain[1].1 + 1);
        }
        assert_eq!(r.e.reap(), 4);
        for (i, id) in ids.iter().enumerate() {
            let (result, data) = r.e.take(*id).unwrap();
            assert_eq!(result.is_err(), i == 1, "request {i}: {result:?}");
            let Data::FromDevice(s) = data else { panic!() };
            assert_eq!(s.len(), 512 * (i + 1));
        }
        assert_eq!(r.e.stats().errors, 1);
    }

    #[test]
    fn slots_and_descriptors_run_out_and_come_back() {
        let mut r = Rig::new(8, 4);
        // 8 descriptors hold two 3-descriptor requests.
        let a = r.read(0, 512);
        let _b = r.read(8, 512);
        let s = r.dma.map::<FromDevice>(vec![0; 512]).unwrap();
        let err =
            r.e.submit(RequestType::In, 0, Data::FromDevice(s), &limits())
                .unwrap_err();
        assert_eq!(err, BlkError::QueueFull);
        let chains = r.device_takes();
        r.device_completes(chains[0].0, chains[0].1[0].0, 0, 513);
        r.e.reap();
        assert_eq!(r.e.take(a).unwrap().0, Ok(()));
        let c = r.read(16, 512);
        assert_ne!(c, a, "a reused slot gets a new generation");
        assert!(r.e.take(a).is_none());
    }

    #[test]
    fn an_unknown_used_id_breaks_the_device_and_nothing_is_freed() {
        let mut r = Rig::new(8, 4);
        let id = r.read(0, 512);
        let l = r.e.layout();
        fake_device::complete(r.e.queue.memory(), l, 5, 513); // never handed out
        assert_eq!(r.e.reap(), 0);
        assert_eq!(r.e.broken(), Some(BrokenReason::UnknownUsedId(5)));
        assert!(
            !r.e.is_finished(id),
            "the real request is still the device's"
        );
        assert_eq!(r.e.in_flight(), 1);
        // New requests are refused from now on.
        let s = r.dma.map::<FromDevice>(vec![0; 512]).unwrap();
        let err =
            r.e.submit(RequestType::In, 0, Data::FromDevice(s), &limits())
                .unwrap_err();
        assert_eq!(err, BlkError::Broken(BrokenReason::UnknownUsedId(5)));
        // Once the device is reset, the request fails and its buffer comes back.
        r.e.fail_all(BlkError::Broken(BrokenReason::UnknownUsedId(5)));
        assert_eq!(r.e.in_flight(), 0);
        let (result, data) = r.e.take(id).unwrap();
        assert!(matches!(result, Err(BlkError::Broken(_))));
        assert!(matches!(data, Data::FromDevice(_)));
    }

    #[test]
    fn a_used_id_returned_twice_breaks_the_device() {
        let mut r = Rig::new(8, 4);
        let _id = r.read(0, 512);
        let chains = r.device_takes();
        let (head, hdr) = (chains[0].0, chains[0].1[0].0);
        r.device_completes(head, hdr, 0, 513);
        r.device_completes(head, hdr, 0, 513);
        assert_eq!(r.e.reap(), 1);
        assert_eq!(
            r.e.broken(),
            Some(BrokenReason::UnknownUsedId(u32::from(head)))
        );
    }

    #[test]
    fn bad_lengths_and_statuses_fail_the_request_or_break_the_device() {
        let mut r = Rig::new(16, 4);
        let short = r.read(0, 1024);
        let unwritten = r.read(2, 512);
        let undefined = r.read(4, 512);
        let chains = r.device_takes();
        r.device_completes(chains[0].0, chains[0].1[0].0, 0, 1024); // status byte not covered
        // Claims completion without writing the status byte.
        fake_device::complete(
            r.e.queue.memory(),
            r.e.layout(),
            u32::from(chains[1].0),
            513,
        );
        r.device_completes(chains[2].0, chains[2].1[0].0, 9, 513);
        assert_eq!(r.e.reap(), 3);
        assert_eq!(
            r.e.take(short).unwrap().0,
            Err(BlkError::ShortCompletion {
                written: 1024,
                expected: 1025
            })
        );
        assert_eq!(
            r.e.take(unwritten).unwrap().0,
            Err(BlkError::BadStatus(0xff))
        );
        assert_eq!(r.e.take(undefined).unwrap().0, Err(BlkError::BadStatus(9)));
        assert_eq!(
            r.e.broken(),
            None,
            "request errors, not protocol violations"
        );

        let over = r.read(6, 512);
        let chains = r.device_takes();
        r.device_completes(chains[0].0, chains[0].1[0].0, 0, 4096);
        r.e.reap();
        let reason = BrokenReason::UsedLengthOverflow {
            written: 4096,
            writable: 513,
        };
        assert_eq!(r.e.broken(), Some(reason));
        assert_eq!(r.e.take(over).unwrap().0, Err(BlkError::Broken(reason)));
    }

    #[test]
    fn abandoned_requests_free_their_slot_when_the_device_returns_them() {
        let mut r = Rig::new(8, 2);
        let a = r.read(0, 512);
        let b = r.read(8, 512);
        r.e.abandon(a);
        assert_eq!(r.e.in_flight(), 2, "still the device's until it returns it");
        let chains = r.device_takes();
        for (head, chain) in &chains {
            r.device_completes(*head, chain[0].0, 0, 513);
        }
        r.e.reap();
        assert!(r.e.take(a).is_none());
        r.e.abandon(b); // finished: freed at once
        assert!(r.e.take(b).is_none());
        // Both slots are free again.
        r.read(0, 512);
        r.read(0, 512);
    }

    #[test]
    fn segments_follow_size_max() {
        let mut r = Rig::new(16, 2);
        let l = Limits {
            size_max: Some(4096),
            ..limits()
        };
        let s = r.dma.map::<FromDevice>(vec![0; 3 * 4096]).unwrap();
        let base = s.addr().0;
        r.e.submit(RequestType::In, 0, Data::FromDevice(s), &l)
            .unwrap();
        let chains = r.device_takes();
        let data: Vec<(u64, u32)> = chains[0].1[1..4].iter().map(|d| (d.0, d.1)).collect();
        assert_eq!(
            data,
            [(base, 4096), (base + 4096, 4096), (base + 8192, 4096)]
        );
        assert_eq!(chains[0].1.len(), 5);
    }

    #[test]
    fn ring_addresses_are_inside_the_allocation() {
        let r = Rig::new(128, 42);
        let (d, a, u) = r.e.ring_addresses();
        let base = r.e.queue.memory().coherent().addr().0;
        assert_eq!((d.0 - base, a.0 - base, u.0 - base), (0, 2048, 4096));
        assert!(r.e.slot_offset(41) + SLOT_STRIDE <= r.e.queue.memory().coherent().size());
    }
}
