//! A bound virtio-blk device: probe, interrupts, the request API, teardown.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use devmodel::{DeviceInfo, ProbeCtx};
use dma::{DmaDevice, FromDevice, ToDevice};
use kapi::irq::{IrqHandle, IrqLine, Trigger};
use kapi::logging::DevLog;
use kapi::msi::MsiAllocation;
use kapi::sync::IrqLock;
use kapi::{dev_err, dev_info, dev_warn};
use pci_ecam::PciDevice;
use pci_ecam::device::MsiMessage;

use crate::caps;
use crate::engine::{Data, Engine, SlotId, Stats};
use crate::error::{BlkError, BrokenReason};
use crate::features::{Features, bit};
use crate::regs::blk_config;
use crate::request::{ID_BYTES, Limits, RequestType, SECTOR_SIZE};
use crate::transport::{self, RESET_TIMEOUT, StatusRegs, Transport, status};

/// How long one request may take before the device is declared broken.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest queue the driver sets up (the device may offer more).
pub const MAX_QUEUE_SIZE: u16 = 128;
/// The request queue (virtio-blk's queue 0; MQ is not negotiated).
const REQUEST_QUEUE: u16 = 0;
/// MSI-X table entries the driver programs: configuration changes, then the request queue.
const MSIX_CONFIG: u16 = 0;
const MSIX_QUEUE: u16 = 1;

/// How the device interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupts {
    /// MSI-X: one vector for configuration changes, one for the queue; `address` is the
    /// message address programmed (the doorbell's bus address: an IOVA behind an IOMMU).
    MsiX {
        /// Vectors in use.
        vectors: u16,
        /// Message address given to the device.
        address: u64,
    },
    /// The legacy INTx line, acknowledged by reading the ISR status.
    Intx {
        /// Its interrupt ID.
        intid: u32,
    },
}

impl fmt::Display for Interrupts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupts::MsiX { vectors, address } => {
                write!(f, "MSI-X ({vectors} vectors, message address {address:#x})")
            }
            Interrupts::Intx { intid } => write!(f, "INTx (INTID {intid})"),
        }
    }
}

/// Mutable state, shared by request submitters and the interrupt handler.
struct State {
    engine: Engine,
    limits: Limits,
    /// The device was reset after breaking: it touches no memory any more.
    quiesced: bool,
    /// The reset did not complete: the device may still write the buffers it holds, so they
    /// are never freed.
    leak_buffers: bool,
}

/// A bound virtio-blk disk. Shared (an `Arc`) between its driver binding, its interrupt
/// handler and users ([`bound`]); once the driver unbinds, every request fails with
/// [`BlkError::Removed`].
pub struct Disk {
    name: String,
    log: DevLog,
    pci: Arc<PciDevice>,
    dma: Arc<DmaDevice>,
    transport: Transport,
    notify_offset: u32,
    negotiated: transport::Negotiated,
    queue_size: u16,
    slots: u16,
    interrupts: IrqLock<Option<Interrupts>>,
    interrupt_count: AtomicU64,
    state: IrqLock<Option<State>>,
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Disk({})", self.name)
    }
}

static BOUND: IrqLock<Vec<Arc<Disk>>> = IrqLock::new(Vec::new());

/// Every bound virtio-blk disk, in bind order.
pub fn bound() -> Vec<Arc<Disk>> {
    BOUND.lock().clone()
}

/// A submitted request. [`Ticket::wait`] gives its result; dropping it without waiting
/// abandons the request (its buffer is released when the device returns it).
#[must_use = "a request's result is only known by waiting for it"]
pub struct Ticket<'d> {
    disk: &'d Disk,
    id: SlotId,
    waited: bool,
}

impl Ticket<'_> {
    /// Sleeps until the request completes (at most [`REQUEST_TIMEOUT`]) and returns its
    /// buffer: the data read, or the data written handed back for reuse (empty for a flush).
    /// Thread context only.
    pub fn wait(mut self) -> Result<Vec<u8>, BlkError> {
        self.waited = true;
        self.disk.wait(self.id)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.waited
            && let Some(st) = self.disk.state.lock().as_mut()
        {
            st.engine.abandon(self.id);
        }
    }
}

impl Disk {
    /// Device name (`0000:00:02.0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Features offered by the device.
    pub fn offered_features(&self) -> Features {
        self.negotiated.offered
    }

    /// Features negotiated.
    pub fn features(&self) -> Features {
        self.negotiated.accepted
    }

    /// The disk's limits (capacity, block size, segments, read-only), as last read.
    pub fn limits(&self) -> Result<Limits, BlkError> {
        self.with_state(|st| Ok(st.limits))
    }

    /// The `log` target of this disk's lines (`virtio-blk 0000:00:02.0`).
    pub fn log_target(&self) -> &str {
        self.log.target()
    }

    /// Capacity in bytes (0 once unbound).
    pub fn capacity_bytes(&self) -> u64 {
        self.limits().map_or(0, |l| l.capacity_bytes())
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.limits().map_or(512, |l| l.block_size)
    }

    /// True for a read-only device (VIRTIO_BLK_F_RO).
    pub fn read_only(&self) -> bool {
        self.features().has(bit::RO)
    }

    /// Largest data length of one request.
    pub fn max_transfer(&self) -> usize {
        self.limits().map_or(0, |l| l.max_transfer())
    }

    /// Most requests in flight at once.
    pub fn max_in_flight(&self) -> usize {
        usize::from(self.slots)
    }

    /// Requests the device holds right now.
    pub fn in_flight(&self) -> usize {
        self.state
            .lock()
            .as_ref()
            .map_or(0, |st| st.engine.in_flight())
    }

    /// The device's DMA ops.
    pub fn dma(&self) -> &Arc<DmaDevice> {
        &self.dma
    }

    /// Test hook: the device stops announcing completions (the queue's MSI-X vector set to
    /// NO_VECTOR), as if its MSIs were lost.
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    pub(crate) fn silence_queue_interrupt(&self) -> Result<(), BlkError> {
        self.transport.set_queue_vector(REQUEST_QUEUE, None)
    }

    /// Entries in the request queue.
    pub fn queue_size(&self) -> u16 {
        self.queue_size
    }

    /// How the device interrupts.
    pub fn interrupt_mode(&self) -> Option<Interrupts> {
        *self.interrupts.lock()
    }

    /// Interrupts handled for this device.
    pub fn interrupt_count(&self) -> u64 {
        self.interrupt_count.load(Ordering::Relaxed)
    }

    /// The DMA ops the device uses (`iommu` or `direct`).
    pub fn dma_ops(&self) -> &'static str {
        self.dma.ops_name()
    }

    /// Request counters.
    pub fn stats(&self) -> Stats {
        self.with_state(|st| Ok(st.engine.stats()))
            .unwrap_or_default()
    }

    /// Why the device is no longer used, if it is not.
    pub fn broken(&self) -> Option<BrokenReason> {
        self.state.lock().as_ref().and_then(|st| st.engine.broken())
    }

    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, BlkError>,
    ) -> Result<T, BlkError> {
        match self.state.lock().as_mut() {
            Some(st) => f(st),
            None => Err(BlkError::Removed),
        }
    }

    fn submit(&self, kind: RequestType, sector: u64, data: Data) -> Result<Ticket<'_>, BlkError> {
        let id = self.with_state(|st| {
            let (id, notify) = st.engine.submit(kind, sector, data, &st.limits)?;
            if notify {
                // The available index (normal memory) must reach the device before the
                // notification (device memory) makes it look (virtio 1.2 §2.7.13.3-4; the
                // split queue ordered the ring entries before the index).
                kapi::barrier::dmb_oshst();
                if let Err(e) = self.transport.notify(self.notify_offset, REQUEST_QUEUE) {
                    // Published but possibly never seen: nobody will wait for it.
                    st.engine.abandon(id);
                    return Err(e);
                }
            }
            Ok(id)
        })?;
        Ok(Ticket {
            disk: self,
            id,
            waited: false,
        })
    }

    /// Starts reading `buf.len()` bytes (one request: at most [`Disk::max_transfer`]) at
    /// `sector` into `buf` (its old contents do not matter). Submitting does not sleep and may
    /// run in interrupt context; waiting for the ticket is thread context only.
    pub fn submit_read(&self, sector: u64, buf: Vec<u8>) -> Result<Ticket<'_>, BlkError> {
        self.limits()?.check(RequestType::In, sector, buf.len())?;
        let s = self.dma.map::<FromDevice>(buf).map_err(|(e, _)| e)?;
        self.submit(RequestType::In, sector, Data::FromDevice(s))
    }

    /// Starts writing `data` (one request) at `sector`. Interrupt context allowed.
    pub fn submit_write(&self, sector: u64, data: Vec<u8>) -> Result<Ticket<'_>, BlkError> {
        self.limits()?.check(RequestType::Out, sector, data.len())?;
        let s = self.dma.map::<ToDevice>(data).map_err(|(e, _)| e)?;
        self.submit(RequestType::Out, sector, Data::ToDevice(s))
    }

    /// Starts a cache flush. Without VIRTIO_BLK_F_FLUSH the device has no volatile cache to
    /// flush and this is refused with [`BlkError::Unsupported`] (use [`Disk::flush`], which
    /// treats that as done).
    pub fn submit_flush(&self) -> Result<Ticket<'_>, BlkError> {
        if !self.features().has(bit::FLUSH) {
            return Err(BlkError::Unsupported);
        }
        self.submit(RequestType::Flush, 0, Data::None)
    }

    /// Submits with `submit`, waiting (bounded) for a request to complete whenever every slot
    /// is taken — by requests in flight elsewhere, or abandoned ones the device still holds.
    fn submit_when_free<'d>(
        &'d self,
        mut submit: impl FnMut() -> Result<Ticket<'d>, BlkError>,
    ) -> Result<Ticket<'d>, BlkError> {
        loop {
            let busy = self.in_flight();
            match submit() {
                // Every slot holds a finished request whose ticket is not waited for yet:
                // nothing the device does will free one.
                Err(BlkError::QueueFull) if busy == 0 => return Err(BlkError::QueueFull),
                Err(BlkError::QueueFull) => {
                    kapi::time::wait_until(REQUEST_TIMEOUT, || self.in_flight() < busy)
                        .map_err(|_| BlkError::QueueFull)?;
                }
                r => return r,
            }
        }
    }

    /// Reads `len` bytes at `sector` in one request (at most [`Disk::max_transfer`]; see
    /// [`Disk::read_range`] for more). Thread context.
    pub fn read(&self, sector: u64, len: usize) -> Result<Vec<u8>, BlkError> {
        self.submit_when_free(|| self.submit_read(sector, alloc::vec![0; len]))?
            .wait()
    }

    /// Writes `data` at `sector` in one request. Thread context.
    pub fn write(&self, sector: u64, data: &[u8]) -> Result<(), BlkError> {
        self.submit_when_free(|| self.submit_write(sector, data.to_vec()))?
            .wait()
            .map(drop)
    }

    /// Makes completed writes durable (a no-op without VIRTIO_BLK_F_FLUSH: no volatile
    /// cache). Thread context.
    pub fn flush(&self) -> Result<(), BlkError> {
        match self.submit_when_free(|| self.submit_flush()) {
            Err(BlkError::Unsupported) => Ok(()),
            t => t?.wait().map(drop),
        }
    }

    /// The device's ID string (VIRTIO_BLK_T_GET_ID; empty when the device has none).
    pub fn id(&self) -> Result<String, BlkError> {
        let bytes = self
            .submit_when_free(|| {
                let s = self
                    .dma
                    .map::<FromDevice>(alloc::vec![0; ID_BYTES])
                    .map_err(|(e, _)| e)?;
                self.submit(RequestType::GetId, 0, Data::FromDevice(s))
            })?
            .wait()?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }

    /// Reads `bytes` bytes from `start_sector` in requests of `request_bytes` with up to
    /// `depth` in flight, handing each chunk to `sink` in disk order with its byte offset
    /// from the start. Buffers are reused, so the heap holds `depth` of them at most.
    /// Returns the bytes read. Thread context.
    pub fn stream(
        &self,
        start_sector: u64,
        bytes: u64,
        request_bytes: usize,
        depth: usize,
        mut sink: impl FnMut(u64, &[u8]),
    ) -> Result<u64, BlkError> {
        let limits = self.limits()?;
        // The whole range, and the request size, are checked before anything is read.
        if bytes > 0 {
            limits.check_range(start_sector, bytes)?;
        }
        limits.check_request_size(request_bytes)?;
        let depth = depth.clamp(1, self.max_in_flight());
        let mut pending: VecDeque<(u64, Ticket<'_>)> = VecDeque::with_capacity(depth);
        let mut spare: Vec<Vec<u8>> = Vec::with_capacity(depth);
        let mut next = 0u64;
        loop {
            while pending.len() < depth && next < bytes {
                let len = (bytes - next).min(request_bytes as u64) as usize;
                let mut buf = spare.pop().unwrap_or_default();
                buf.resize(len, 0);
                let t = self.submit_read(start_sector + next / SECTOR_SIZE, buf)?;
                pending.push_back((next, t));
                next += len as u64;
            }
            let Some((offset, t)) = pending.pop_front() else {
                return Ok(bytes);
            };
            let data = t.wait()?;
            sink(offset, &data);
            spare.push(data);
        }
    }

    /// Reads `bytes` bytes from `start_sector` into one buffer (see [`Disk::stream`]); refused
    /// if the heap cannot hold it.
    pub fn read_range(
        &self,
        start_sector: u64,
        bytes: u64,
        request_bytes: usize,
        depth: usize,
    ) -> Result<Vec<u8>, BlkError> {
        self.limits()?.check_range(start_sector, bytes)?;
        let mut out = Vec::new();
        out.try_reserve_exact(bytes as usize)
            .map_err(|_| BlkError::NoMemory { bytes })?;
        self.stream(start_sector, bytes, request_bytes, depth, |_, d| {
            out.extend_from_slice(d)
        })?;
        Ok(out)
    }

    /// Waits for request `id` (see [`Ticket::wait`]).
    fn wait(&self, id: SlotId) -> Result<Vec<u8>, BlkError> {
        let settled = || {
            self.state
                .lock()
                .as_ref()
                .is_none_or(|st| st.engine.is_finished(id) || st.engine.broken().is_some())
        };
        let timed_out = kapi::time::wait_until(REQUEST_TIMEOUT, settled).is_err();
        let (result, data, leak) = {
            let mut guard = self.state.lock();
            let st = guard.as_mut().ok_or(BlkError::Removed)?;
            if timed_out && !st.engine.is_finished(id) {
                st.engine.set_broken(BrokenReason::Timeout {
                    completed_unannounced: st.engine.has_unreaped(),
                });
            }
            if let Some(reason) = st.engine.broken() {
                self.quiesce(st, reason);
            }
            let Some((result, data)) = st.engine.take(id) else {
                return Err(BlkError::Removed);
            };
            let result = match result {
                Err(BlkError::Broken(BrokenReason::Timeout { .. })) if timed_out => {
                    Err(BlkError::Timeout)
                }
                r => r,
            };
            (result, data, st.leak_buffers)
        };
        if leak {
            // The device may still write into it: never give the memory back.
            core::mem::forget(data);
            return result.map(|()| Vec::new());
        }
        // Unmapping (an IOTLB invalidation behind an IOMMU) happens outside the lock.
        let buf = match data {
            Data::None => Vec::new(),
            Data::FromDevice(s) => s.into_buffer(),
            Data::ToDevice(s) => s.into_buffer(),
        };
        result.map(|()| buf)
    }

    /// Stops a broken device from touching memory (reset), then fails what it held. Runs
    /// once; called with the state locked.
    fn quiesce(&self, st: &mut State, reason: BrokenReason) {
        if st.quiesced {
            return;
        }
        st.quiesced = true;
        match transport::reset(&self.transport, RESET_TIMEOUT) {
            Ok(()) => dev_err!(self.log, "{reason}; device reset, its requests failed"),
            Err(e) => {
                st.leak_buffers = true;
                dev_err!(
                    self.log,
                    "{reason}; {e}: its {} buffers are leaked, not reused",
                    st.engine.in_flight()
                );
            }
        }
        st.engine.fail_all(BlkError::Broken(reason));
    }

    /// The request queue's interrupt: reap completions (waiters notice at their next look).
    fn on_queue_interrupt(&self) {
        self.interrupt_count.fetch_add(1, Ordering::Relaxed);
        if let Some(st) = self.state.lock().as_mut()
            && !st.quiesced
        {
            st.engine.reap();
        }
    }

    /// A configuration change: the device may need a reset, or the capacity changed.
    fn on_config_interrupt(&self) {
        self.interrupt_count.fetch_add(1, Ordering::Relaxed);
        let needs_reset = self.transport.status() & status::DEVICE_NEEDS_RESET != 0;
        let capacity = self
            .transport
            .read_config(|c| c.read_u64(blk_config::CAPACITY));
        let mut guard = self.state.lock();
        let Some(st) = guard.as_mut() else { return };
        if needs_reset {
            st.engine.set_broken(BrokenReason::NeedsReset);
            return;
        }
        match capacity {
            Ok(c) if c != st.limits.capacity => {
                dev_warn!(
                    self.log,
                    "capacity changed from {} to {c} sectors",
                    st.limits.capacity
                );
                st.limits.capacity = c;
            }
            Ok(_) => {}
            Err(e) => dev_warn!(self.log, "configuration change: {e}"),
        }
    }

    /// The INTx handler: the ISR status says what happened (0: another device on the line).
    fn on_intx(&self) {
        let isr = self.transport.isr();
        if isr & crate::regs::ISR::QUEUE::SET.value != 0 {
            self.on_queue_interrupt();
        }
        if isr & crate::regs::ISR::CONFIG::SET.value != 0 {
            self.on_config_interrupt();
        }
    }
}

/// The driver's data for a bound device: the disk and the resources whose release order
/// matters. Dropping it quiets the device first, then frees the interrupts, then the memory.
pub struct Binding {
    disk: Arc<Disk>,
    irqs: Vec<IrqHandle>,
    msi: Option<Box<dyn MsiAllocation>>,
    /// The probe completed (so dropping it is an unbind, and says so).
    bound: bool,
}

impl Binding {
    /// The disk.
    pub fn disk(&self) -> &Arc<Disk> {
        &self.disk
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        let d = &self.disk;
        BOUND.lock().retain(|e| !Arc::ptr_eq(e, d));
        // 1. The device stops: a completed reset means it no longer reads or writes the
        //    queues or any buffer, and raises no interrupt (virtio 1.2 §2.4).
        let reset = transport::reset(&d.transport, RESET_TIMEOUT);
        // 2. Its interrupt sources off, then its bus mastering.
        if self.msi.is_some() {
            d.pci.disable_msix();
        }
        d.pci.set_intx_disabled(true);
        d.pci.set_bus_master(false);
        // 3. The handlers go (nothing can call them now), then the MSI vectors.
        self.irqs.clear();
        self.msi.take();
        // 4. The memory: queue, headers, buffers of requests still in flight.
        let state = d.state.lock().take();
        match (reset, state) {
            (Ok(()), Some(st)) if !st.leak_buffers => drop(st),
            (r, st) => {
                if let Err(e) = r {
                    dev_err!(d.log, "{e} on unbind: queue memory and buffers leaked");
                }
                core::mem::forget(st);
            }
        }
        if self.bound {
            dev_info!(d.log, "unbound");
        }
    }
}

fn read_limits(t: &Transport, accepted: Features) -> Result<Limits, BlkError> {
    t.read_config(|c| {
        let opt = |b: u32, off: u64| -> Result<Option<u32>, BlkError> {
            accepted.has(b).then(|| c.read_u32(off)).transpose()
        };
        Ok(Limits {
            capacity: c.read_u64(blk_config::CAPACITY)?,
            block_size: opt(bit::BLK_SIZE, blk_config::BLK_SIZE)?.unwrap_or(512),
            size_max: opt(bit::SIZE_MAX, blk_config::SIZE_MAX)?,
            max_segments: opt(bit::SEG_MAX, blk_config::SEG_MAX)?.unwrap_or(u32::MAX),
            read_only: accepted.has(bit::RO),
        })
    })
}

fn intx_line(info: &DeviceInfo) -> Option<IrqLine> {
    info.irq_by_name("intx").map(|r| IrqLine {
        intid: r.intid,
        trigger: match r.trigger {
            devmodel::IrqTrigger::Edge => Trigger::Edge,
            devmodel::IrqTrigger::Level => Trigger::Level,
        },
    })
}

/// Sets up MSI-X with a configuration and a queue vector, if the function, the platform and
/// the DMA ops allow: the message address is the doorbell as the device's DMA reaches it
/// (behind the SMMU, its IOVA in the MSI window). `None` (with the reason logged) otherwise.
fn try_msix(disk: &Arc<Disk>, binding: &mut Binding) -> Result<Option<Interrupts>, BlkError> {
    let log = &disk.log;
    let (Some(info), Some(device_id)) = (disk.pci.msix_info(), disk.dma.msi_device_id()) else {
        return Ok(None);
    };
    if info.table_size < 2 {
        dev_warn!(
            log,
            "MSI-X table has {} entries; using INTx",
            info.table_size
        );
        return Ok(None);
    }
    let msi = match kapi::msi::alloc(device_id, 2) {
        Ok(m) => m,
        Err(e) => {
            dev_warn!(log, "no MSI vectors ({e}); using INTx");
            return Ok(None);
        }
    };
    let [config, queue, ..] = *msi.vectors() else {
        dev_warn!(
            log,
            "the MSI controller gave fewer than 2 vectors; using INTx"
        );
        return Ok(None);
    };
    // The device reaches the doorbell through its DMA ops: behind an IOMMU, at its IOVA.
    let mut messages = [MsiMessage {
        address: 0,
        data: 0,
    }; 2];
    for (m, v) in messages.iter_mut().zip([config, queue]) {
        let Some(address) = disk.dma.msi_address(v.doorbell) else {
            dev_warn!(
                log,
                "the MSI doorbell {:#x} is not reachable by the device; using INTx",
                v.doorbell.0
            );
            return Ok(None);
        };
        *m = MsiMessage {
            address: address.0,
            data: v.data,
        };
    }
    let [_, MsiMessage { address, .. }] = messages;
    let d = disk.clone();
    binding.irqs.push(kapi::irq::request(
        config.line,
        "virtio-blk config",
        move || d.on_config_interrupt(),
    )?);
    let d = disk.clone();
    binding.irqs.push(kapi::irq::request(
        queue.line,
        "virtio-blk queue",
        move || d.on_queue_interrupt(),
    )?);
    binding.msi = Some(msi);
    disk.pci.enable_msix(&messages)?;
    Ok(Some(Interrupts::MsiX {
        vectors: 2,
        address,
    }))
}

/// What the probe settles before the disk exists.
struct Plan {
    negotiated: transport::Negotiated,
    limits: Limits,
    queue_size: u16,
    notify_offset: u32,
}

/// Steps 1-6 of the initialization sequence (virtio 1.2 §3.1.1), then the device
/// configuration and the request queue's size and notification address.
fn plan(t: &Transport, dma: &DmaDevice) -> Result<Plan, BlkError> {
    let negotiated = transport::negotiate(t, dma.is_translated(), RESET_TIMEOUT)?;
    let mut limits = read_limits(t, negotiated.accepted)?;
    limits.validate()?;
    if t.num_queues() == 0 {
        return Err(BlkError::NoQueue);
    }
    let max = t.queue_max_size(REQUEST_QUEUE);
    if max == 0 {
        return Err(BlkError::NoQueue);
    }
    // Split queues are a power of two in size (virtio 1.2 §2.7), which the ring indices,
    // wrapping at 2^16, rely on.
    let queue_size = (1u16 << max.ilog2()).min(MAX_QUEUE_SIZE);
    if queue_size < 4 {
        return Err(BlkError::BadConfig {
            field: "queue_size",
            value: u64::from(max),
        });
    }
    // Every request takes a header and a status descriptor besides its data.
    limits.max_segments = limits.max_segments.min(u32::from(queue_size) - 2);
    let notify_offset = caps::notify_offset(t.layout(), t.queue_notify_off(REQUEST_QUEUE))?;
    // The device sees bus addresses from the DMA API; with ACCESS_PLATFORM they may be
    // anywhere the IOMMU puts them.
    dma.set_mask(64)?;
    Ok(Plan {
        negotiated,
        limits,
        queue_size,
        notify_offset,
    })
}

/// Probes the function: finds and maps the virtio structures, negotiates, sets up the queue
/// and the interrupts, and starts the device.
pub(crate) fn probe(ctx: &mut ProbeCtx<'_>) -> Result<Binding, BlkError> {
    let info = ctx.device_arc();
    let log = DevLog::new("virtio-blk", &info.name);
    let pci = info.payload_arc::<PciDevice>().ok_or(BlkError::NotPci)?;
    let dma = ctx.dma::<DmaDevice>().ok_or(BlkError::NoDmaOps)?;
    let layout = caps::parse(&*pci, pci.vendor_capabilities(), |i| {
        transport::bar_span(&pci, i)
    })?;
    let transport = Transport::map(&pci, layout)?;
    // From the first status write on, a failure leaves the device marked FAILED.
    let planned = plan(&transport, &dma).and_then(|p| {
        // A third of the ring: each request takes at least three descriptors.
        let slots = p.queue_size / 3;
        Ok((Engine::new(&dma, p.queue_size, slots)?, slots, p))
    });
    let (engine, slots, p) = match planned {
        Ok(x) => x,
        Err(e) => {
            transport::fail(&transport);
            return Err(e);
        }
    };
    let disk = Arc::new(Disk {
        name: info.name.clone(),
        log,
        pci,
        dma,
        transport,
        notify_offset: p.notify_offset,
        negotiated: p.negotiated,
        queue_size: p.queue_size,
        slots,
        interrupts: IrqLock::new(None),
        interrupt_count: AtomicU64::new(0),
        state: IrqLock::new(Some(State {
            engine,
            limits: p.limits,
            quiesced: false,
            leak_buffers: false,
        })),
    });
    let mut binding = Binding {
        disk: disk.clone(),
        irqs: Vec::new(),
        msi: None,
        bound: false,
    };
    if let Err(e) = start(&disk, intx_line(&info), &mut binding) {
        // Dropping the binding resets the device and releases everything in order; then the
        // device is told the driver gave up.
        drop(binding);
        transport::fail(&disk.transport);
        return Err(e);
    }
    binding.bound = true;
    BOUND.lock().push(disk);
    Ok(binding)
}

/// Interrupts, queue registers, bus mastering, DRIVER_OK.
fn start(disk: &Arc<Disk>, intx: Option<IrqLine>, binding: &mut Binding) -> Result<(), BlkError> {
    let t = &disk.transport;
    let msix = match try_msix(disk, binding) {
        Ok(m) => m,
        Err(e) => {
            dev_warn!(disk.log, "MSI-X set-up failed ({e}); using INTx");
            disk.pci.disable_msix();
            binding.irqs.clear();
            binding.msi.take();
            None
        }
    };
    let irq = match msix {
        Some(m) => {
            t.set_config_vector(Some(MSIX_CONFIG))?;
            m
        }
        None => {
            let line = intx.ok_or(BlkError::NoInterrupt)?;
            disk.pci.set_intx_disabled(false);
            let d = disk.clone();
            binding
                .irqs
                .push(kapi::irq::request(line, "virtio-blk", move || d.on_intx())?);
            Interrupts::Intx { intid: line.intid }
        }
    };
    *disk.interrupts.lock() = Some(irq);
    let vector = matches!(irq, Interrupts::MsiX { .. }).then_some(MSIX_QUEUE);
    let rings = disk.with_state(|st| Ok(st.engine.ring_addresses()))?;
    t.setup_queue(REQUEST_QUEUE, disk.queue_size, rings, vector)?;
    t.enable_queue(REQUEST_QUEUE);
    // Everything the device may touch is in place: now it may master the bus (DMA and MSI
    // writes), and then start (DRIVER_OK, §3.1.1 step 8).
    disk.pci.set_bus_master(true);
    transport::driver_ok(t);
    let l = disk.limits()?;
    dev_info!(
        disk.log,
        "negotiated {}; the device offered {}",
        disk.features(),
        disk.offered_features()
    );
    dev_info!(
        disk.log,
        "{} MiB ({} sectors), {}-byte blocks, {}, queue of {} ({} requests of up to {} KiB in flight), {}, {} DMA",
        l.capacity_bytes() >> 20,
        l.capacity,
        l.block_size,
        if l.read_only { "read-only" } else { "writable" },
        disk.queue_size,
        disk.slots,
        l.max_transfer() >> 10,
        irq,
        disk.dma.ops_name()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tests::fake_layout;
    use crate::virtqueue::fake_device;
    use kapi::mmio::MmioRegion;
    use pci_ecam::config::{Bdf, COMMAND};
    use pci_ecam::{Ecam, PciFunction};

    const BUS_MASTER: u16 = 1 << 2;
    const INTX_DISABLE: u16 = 1 << 10;

    /// A disk over RAM-backed registers and config space (a function without MSI-X, on
    /// INTx), with a direct DMA device on the host heap; bound and registered, as a probe
    /// leaves it. Returns the common configuration's region too, to play the device.
    fn fake_disk() -> (Arc<Disk>, Binding, MmioRegion) {
        kapi::platform::fake::install();
        let ecam = Arc::new(Ecam::new(kapi::mmio::fake_region(1 << 20), 0));
        let bdf = Bdf::new(0, 2, 0);
        let function = PciFunction {
            bdf,
            vendor: crate::VENDOR,
            device: crate::DEVICE_MODERN_BLK,
            class: 0x010000,
            revision: 1,
            multifunction: false,
            bars: Vec::new(),
            capabilities: Vec::new(),
            pcie_type: None,
            interrupt_pin: 1,
            intx_route: None,
            upstream_bridge: None,
            dma_alias: bdf,
            bridge: None,
        };
        let pci = Arc::new(PciDevice::new(ecam, function, 0));
        pci.write16(COMMAND, BUS_MASTER | 2);
        let regs = kapi::mmio::fake_region(0x1000);
        let transport = Transport::fake(regs, fake_layout());
        transport.set_status(0xf);
        let dma = dma::DmaDeviceBuilder::direct("0000:00:02.0", None).build();
        dma.set_mask(64).expect("mask");
        let limits = Limits {
            capacity: 2048,
            block_size: 512,
            size_max: None,
            max_segments: 6,
            read_only: false,
        };
        let disk = Arc::new(Disk {
            name: "0000:00:02.0".into(),
            log: DevLog::new("virtio-blk", "0000:00:02.0"),
            pci,
            dma: dma.clone(),
            transport,
            notify_offset: 0,
            negotiated: transport::Negotiated {
                offered: Features(0),
                accepted: Features(0),
            },
            queue_size: 8,
            slots: 2,
            interrupts: IrqLock::new(Some(Interrupts::Intx { intid: 37 })),
            interrupt_count: AtomicU64::new(0),
            state: IrqLock::new(Some(State {
                engine: Engine::new(&dma, 8, 2).expect("engine"),
                limits,
                quiesced: false,
                leak_buffers: false,
            })),
        });
        BOUND.lock().push(disk.clone());
        let binding = Binding {
            disk: disk.clone(),
            irqs: Vec::new(),
            msi: None,
            bound: true,
        };
        (disk, binding, regs)
    }

    /// Plays the device: completes every available request with status OK and everything
    /// written, then raises the queue interrupt.
    fn device_completes_all(disk: &Disk, seen: &mut u16) {
        {
            let guard = disk.state.lock();
            let Some(st) = guard.as_ref() else { return };
            let ring = st.engine.ring();
            let l = st.engine.layout();
            for (head, chain) in fake_device::take_available(ring, l, seen) {
                let writable: u32 = chain.iter().filter(|d| d.2 & 2 != 0).map(|d| d.1).sum();
                fake_device::complete(ring, l, u32::from(head), writable);
                let status = chain.last().expect("status descriptor").0;
                let mem = ring.coherent();
                mem.write_u8(status - mem.addr().0, 0);
            }
        }
        disk.on_queue_interrupt();
    }

    #[test]
    fn requests_complete_through_the_interrupt_handler() {
        let (disk, _binding, _) = fake_disk();
        let mut seen = 0;
        let t = disk.submit_read(8, alloc::vec![0xee; 1024]).unwrap();
        assert_eq!(disk.in_flight(), 1);
        device_completes_all(&disk, &mut seen);
        assert_eq!(disk.in_flight(), 0);
        assert_eq!(t.wait().unwrap().len(), 1024);
        assert_eq!(disk.interrupt_count(), 1);
        let s = disk.stats();
        assert_eq!((s.requests, s.bytes_read, s.errors), (1, 1024, 0));
    }

    #[test]
    fn unbinding_resets_the_device_before_anything_is_released() {
        let (disk, binding, regs) = fake_disk();
        let t = disk.submit_read(0, alloc::vec![0; 512]).unwrap();
        assert!(bound().iter().any(|d| Arc::ptr_eq(d, &disk)));
        drop(binding);
        assert_eq!(regs.read8(0x14).unwrap(), 0, "device_status: reset");
        let cmd = disk.pci.read16(COMMAND);
        assert_eq!(cmd & BUS_MASTER, 0, "bus mastering off");
        assert_eq!(cmd & INTX_DISABLE, INTX_DISABLE, "INTx masked");
        assert!(!bound().iter().any(|d| Arc::ptr_eq(d, &disk)));
        // The outstanding request and every later one see the disk gone.
        assert_eq!(t.wait(), Err(BlkError::Removed));
        assert_eq!(disk.read(0, 512), Err(BlkError::Removed));
        assert_eq!(disk.in_flight(), 0);
        assert_eq!(disk.capacity_bytes(), 0);
    }

    #[test]
    fn a_request_that_never_completes_times_out_and_breaks_the_device() {
        let (disk, _binding, regs) = fake_disk();
        let t = disk.submit_read(0, alloc::vec![0; 512]).unwrap();
        let other = disk.submit_read(8, alloc::vec![0; 512]).unwrap();
        assert_eq!(t.wait(), Err(BlkError::Timeout));
        let reason = BrokenReason::Timeout {
            completed_unannounced: false,
        };
        assert_eq!(disk.broken(), Some(reason));
        assert_eq!(regs.read8(0x14).unwrap(), 0, "the broken device was reset");
        assert_eq!(other.wait(), Err(BlkError::Broken(reason)));
        assert_eq!(disk.read(0, 512), Err(BlkError::Broken(reason)));
        assert_eq!(disk.stats().errors, 2);
    }

    /// The device on its own thread, completing whatever is queued until `stop`.
    fn device_thread(
        disk: &Arc<Disk>,
        stop: &Arc<core::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        extern crate std;
        let (d, stop) = (disk.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                device_completes_all(&d, &mut seen);
                std::thread::yield_now();
            }
        })
    }

    #[test]
    fn streams_arrive_in_order_with_depth() {
        let (disk, _binding, _) = fake_disk();
        let stop = Arc::new(core::sync::atomic::AtomicBool::new(false));
        let device = device_thread(&disk, &stop);
        let mut offsets = Vec::new();
        let n = disk.stream(16, 8 * 1024, 1024, 2, |off, data| {
            offsets.push((off, data.len()))
        });
        let all = disk.read_range(0, 3 * 512, 1024, 2);
        stop.store(true, Ordering::Relaxed);
        device.join().unwrap();
        assert_eq!(n, Ok(8 * 1024));
        let want: Vec<(u64, usize)> = (0..8).map(|i| (i * 1024, 1024)).collect();
        assert_eq!(offsets, want);
        assert_eq!(disk.stats().max_in_flight, 2);
        assert_eq!(all.map(|v| v.len()), Ok(3 * 512), "a short last request");
        assert_eq!(disk.stats().bytes_read, 8 * 1024 + 3 * 512);
    }

    #[test]
    fn stream_arguments_are_checked_before_any_request() {
        let (disk, _binding, _) = fake_disk();
        let r = |start, bytes, req| disk.stream(start, bytes, req, 4, |_, _| {});
        assert!(matches!(
            r(2041, 8 * 512, 512),
            Err(BlkError::OutOfRange { .. })
        ));
        assert!(matches!(
            r(0, 4096, (4 << 20) + 512),
            Err(BlkError::TooLarge { .. })
        ));
        assert!(matches!(r(0, 1000, 512), Err(BlkError::BadLength { .. })));
        assert!(matches!(r(0, 4096, 0), Err(BlkError::BadLength { .. })));
        assert!(matches!(r(0, 4096, 100), Err(BlkError::BadLength { .. })));
        assert_eq!(r(0, 0, 512), Ok(0));
        assert_eq!(disk.stats().requests, 0);
        assert_eq!(disk.in_flight(), 0);
    }
}
