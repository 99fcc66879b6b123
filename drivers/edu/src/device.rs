//! The ordinary edu driver.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use addr::Iova;
use devmodel::{Driver, DriverData, MatchId, ProbeCtx, ProbeError};
use dma::{DmaDevice, DmaStream, FromDevice, ToDevice};
use kapi::irq::{IrqHandle, IrqLine, Trigger};
use kapi::logging::DevLog;
use kapi::mmio::Mmio;
use kapi::msi::MsiAllocation;
use kapi::sync::IrqLock;
use kapi::{dev_info, dev_warn};
use pci_ecam::PciDevice;
use tock_registers::interfaces::{Readable, Writeable};

use crate::regs::{DMA_BUFFER, DMA_BUFFER_SIZE, DMA_CMD, EDU_ID, EduRegs, IRQ_DMA_DONE};
use crate::{DEFAULT_DMA_BITS, DEVICE, EduConfig, VENDOR};

/// One DMA takes 100 ms of virtual time in QEMU; this bound is generous.
const DMA_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a completion interrupt may trail the device's own "done" (QEMU raises it in the
/// same step that clears DMA_CMD.START, so this only covers the interrupt's delivery).
const IRQ_GRACE: Duration = Duration::from_millis(10);

/// Errors of the edu driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EduError {
    /// The transfer does not fit the device's 4 KiB buffer.
    OutOfBuffer { offset: u64, len: u64 },
    /// The device did not finish in time.
    Timeout,
    /// The device finished, but its completion interrupt never arrived (for instance an MSI
    /// write the IOMMU aborted).
    NoInterrupt,
    /// Another transfer is running.
    Busy,
    /// The DMA API refused.
    Dma(dma::DmaError),
    /// The data that came back is not what went out.
    Mismatch { first_bad: usize },
    /// Raw transfers to arbitrary bus addresses are only allowed behind a translating IOMMU.
    NotTranslated,
}

impl fmt::Display for EduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EduError::OutOfBuffer { offset, len } => {
                write!(f, "{offset:#x}+{len:#x} is outside edu's 4 KiB buffer")
            }
            EduError::Timeout => f.write_str("DMA did not complete"),
            EduError::NoInterrupt => {
                f.write_str("DMA finished but its completion interrupt never arrived")
            }
            EduError::Busy => f.write_str("a DMA is already running"),
            EduError::Dma(e) => write!(f, "{e}"),
            EduError::Mismatch { first_bad } => {
                write!(f, "round trip data differs at byte {first_bad}")
            }
            EduError::NotTranslated => f.write_str("raw DMA needs a translating IOMMU domain"),
        }
    }
}

/// Direction of an edu transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Memory -> the device's buffer.
    ToDevice,
    /// The device's buffer -> memory.
    FromDevice,
}

/// State of the round trip started at probe.
enum RoundTrip {
    /// Copying the pattern into the device.
    ToDevice {
        src: DmaStream<ToDevice>,
        dst: DmaStream<FromDevice>,
    },
    /// Copying it back out.
    FromDevice { dst: DmaStream<FromDevice> },
    /// Finished (the copy back is in `dst`), or failed.
    Done(Result<DmaStream<FromDevice>, EduError>),
    /// Reported.
    Reported,
}

/// A bound edu function (shared with its interrupt handler and with tests).
pub struct EduDevice {
    /// Device name.
    pub name: String,
    log: DevLog,
    /// The PCI function.
    pub pci: Arc<PciDevice>,
    regs: Mmio<EduRegs>,
    /// Its DMA ops.
    pub dma: Arc<DmaDevice>,
    interrupts: AtomicU64,
    completions: AtomicU64,
    running: IrqLock<bool>,
    round_trip: IrqLock<RoundTrip>,
    /// How completions are signalled: "MSI" or "INTx".
    pub irq_kind: &'static str,
}

impl fmt::Debug for EduDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EduDevice({})", self.name)
    }
}

/// Driver data: the device and the resources whose drop order matters.
pub struct Edu {
    /// The device.
    pub device: Arc<EduDevice>,
    irq: Option<IrqHandle>,
    msi: Option<Box<dyn MsiAllocation>>,
}

static BOUND: IrqLock<Vec<Arc<EduDevice>>> = IrqLock::new(Vec::new());

/// Every bound edu (for the kernel's main job and for tests).
pub fn bound() -> Vec<Arc<EduDevice>> {
    BOUND.lock().clone()
}

fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

impl EduDevice {
    /// Starts a transfer of `len` bytes between device-buffer offset `offset` and bus address
    /// `bus` (what the DMA API returned), raising an interrupt when done.
    fn start(&self, dir: Transfer, bus: Iova, offset: u64, len: u64) -> Result<(), EduError> {
        if offset.checked_add(len).is_none_or(|e| e > DMA_BUFFER_SIZE) || len == 0 {
            return Err(EduError::OutOfBuffer { offset, len });
        }
        {
            let mut running = self.running.lock();
            if *running {
                return Err(EduError::Busy);
            }
            *running = true;
        }
        let device_addr = DMA_BUFFER + offset;
        let (src, dst, d) = match dir {
            Transfer::ToDevice => (bus.0, device_addr, DMA_CMD::DIRECTION::ToDevice),
            Transfer::FromDevice => (device_addr, bus.0, DMA_CMD::DIRECTION::FromDevice),
        };
        self.regs.DMA_SRC.set(src);
        self.regs.DMA_DST.set(dst);
        self.regs.DMA_COUNT.set(len);
        // The command register is written last: it starts the transfer with the others set.
        self.regs
            .DMA_CMD
            .write(DMA_CMD::START::SET + d + DMA_CMD::IRQ::SET);
        Ok(())
    }

    /// Runs one transfer and waits for its interrupt.
    pub fn transfer(
        &self,
        dir: Transfer,
        bus: Iova,
        offset: u64,
        len: u64,
    ) -> Result<(), EduError> {
        let before = self.completions.load(Ordering::Acquire);
        let completed = || self.completions.load(Ordering::Acquire) != before;
        self.start(dir, bus, offset, len)?;
        kapi::time::wait_until(DMA_TIMEOUT, || completed() || !self.dma_running())
            .map_err(|_| EduError::Timeout)?;
        if kapi::time::wait_until(IRQ_GRACE, completed).is_ok() {
            return Ok(());
        }
        // The device is idle; without its interrupt the driver must mark it so itself.
        *self.running.lock() = false;
        Err(EduError::NoInterrupt)
    }

    /// The device's own view: DMA_CMD.START stays set while a transfer runs.
    fn dma_running(&self) -> bool {
        self.regs.DMA_CMD.is_set(DMA_CMD::START)
    }

    /// Runs a transfer to or from any bus address — for isolation tests that aim the device
    /// at addresses it was never given. Refused unless the device is behind a translating
    /// IOMMU, where the domain decides what such a transfer can reach.
    pub fn transfer_raw(&self, dir: Transfer, bus: Iova, len: u64) -> Result<(), EduError> {
        if !self.dma.is_translated() {
            return Err(EduError::NotTranslated);
        }
        self.transfer(dir, bus, 0, len)
    }

    /// Interrupts taken.
    pub fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }

    /// Interrupt handler: acknowledge, count, and advance the probe's round trip.
    fn on_interrupt(&self) {
        let status = self.regs.IRQ_STATUS.get();
        if status == 0 {
            return; // a shared INTx line: not ours
        }
        // Acknowledge first, so a completion arriving meanwhile raises the line again.
        self.regs.IRQ_ACK.set(status);
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        if status & IRQ_DMA_DONE == 0 {
            return;
        }
        *self.running.lock() = false;
        self.completions.fetch_add(1, Ordering::Release);
        let mut rt = self.round_trip.lock();
        *rt = match core::mem::replace(&mut *rt, RoundTrip::Reported) {
            RoundTrip::ToDevice { src, dst } => {
                drop(src); // the device has its copy: unmap now (allowed in interrupt context)
                match self.start(Transfer::FromDevice, dst.addr(), 0, DMA_BUFFER_SIZE) {
                    Ok(()) => RoundTrip::FromDevice { dst },
                    Err(e) => RoundTrip::Done(Err(e)),
                }
            }
            RoundTrip::FromDevice { dst } => RoundTrip::Done(Ok(dst)),
            other => other,
        };
    }

    /// Waits for the round trip started at probe and checks the bytes that came back.
    pub fn round_trip_result(&self) -> Result<Iova, EduError> {
        let done = || {
            matches!(
                *self.round_trip.lock(),
                RoundTrip::Done(_) | RoundTrip::Reported
            )
        };
        kapi::time::wait_until(2 * DMA_TIMEOUT, done).map_err(|_| EduError::Timeout)?;
        let finished = core::mem::replace(&mut *self.round_trip.lock(), RoundTrip::Reported);
        let RoundTrip::Done(result) = finished else {
            return Err(EduError::Busy);
        };
        let dst = result?;
        let addr = dst.addr();
        let back = dst.into_buffer();
        match back.iter().enumerate().find(|(i, b)| **b != pattern(*i)) {
            Some((i, _)) => Err(EduError::Mismatch { first_bad: i }),
            None => Ok(addr),
        }
    }
}

struct EduDriver {
    config: EduConfig,
}

/// The ordinary edu driver.
pub fn driver(config: EduConfig) -> Arc<dyn Driver> {
    Arc::new(EduDriver { config })
}

const MATCH: [MatchId; 1] = [MatchId::Pci {
    vendor: VENDOR,
    device: DEVICE,
}];

/// A failed probe. The bus model prints it, once, with the device and the driver.
fn failed(e: impl fmt::Display) -> ProbeError {
    ProbeError::failed(e)
}

impl Driver for EduDriver {
    fn name(&self) -> &'static str {
        "edu"
    }
    fn match_table(&self) -> &[MatchId] {
        &MATCH
    }
    fn accepts(&self, dev: &devmodel::DeviceInfo) -> bool {
        !self.config.managed.contains(&dev.name)
    }
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<DriverData, ProbeError> {
        let info = ctx.device_arc();
        let log = DevLog::new("edu", &info.name);
        let pci = info
            .payload_arc::<PciDevice>()
            .ok_or_else(|| failed("not a PCI device"))?;
        let dma = ctx.dma::<DmaDevice>().ok_or_else(|| failed("no DMA ops"))?;
        let bar = pci.map_bar(0).map_err(failed)?;
        let regs = bar.view::<EduRegs>(0).map_err(failed)?;
        let id = regs.ID.get();
        if id != EDU_ID {
            return Err(failed(format!(
                "identification register reads {id:#010x}, expected {EDU_ID:#010x}"
            )));
        }
        let bits = self.config.dma_bits.unwrap_or(DEFAULT_DMA_BITS);
        dma.set_mask(bits).map_err(failed)?;
        // Map the round trip's buffers first: if the device cannot reach memory at all (a
        // 28-bit mask with an identity domain and RAM at 1 GiB) the probe fails here, cleanly,
        // before the device was ever allowed to master the bus.
        let src: Vec<u8> = (0..DMA_BUFFER_SIZE as usize).map(pattern).collect();
        let src = dma.map::<ToDevice>(src).map_err(|(e, _)| {
            failed(format!("its {bits}-bit DMA mask cannot reach a buffer ({e}); without translation edu cannot do DMA here"))
        })?;
        let dst = dma
            .map::<FromDevice>(alloc::vec![0; DMA_BUFFER_SIZE as usize])
            .map_err(|(e, _)| failed(e))?;
        let src_addr = src.addr();
        let (msi, kind) = plan_interrupt(&pci, &dma, &log)?;
        let line = irq_line(&info, &msi);
        let device = Arc::new(EduDevice {
            name: info.name.clone(),
            log: log.clone(),
            pci: pci.clone(),
            regs,
            dma: dma.clone(),
            interrupts: AtomicU64::new(0),
            completions: AtomicU64::new(0),
            running: IrqLock::new(false),
            round_trip: IrqLock::new(RoundTrip::ToDevice { src, dst }),
            irq_kind: kind,
        });
        let irq = install_handler(&device, line).inspect_err(|_| {
            if msi.is_some() {
                pci.disable_msi();
            }
        })?;
        // Everything is set up: now, and only now, the function may master the bus.
        pci.set_bus_master(true);
        device
            .start(Transfer::ToDevice, src_addr, 0, DMA_BUFFER_SIZE)
            .map_err(failed)?;
        dev_info!(
            log,
            "{bits}-bit DMA mask, {} DMA, {kind}; round trip started, out through {src_addr:#x}",
            dma.ops_name()
        );
        BOUND.lock().push(device.clone());
        Ok(Box::new(Edu {
            device,
            irq: Some(irq),
            msi,
        }))
    }
}

fn irq_line(info: &devmodel::DeviceInfo, msi: &Option<Box<dyn MsiAllocation>>) -> Option<IrqLine> {
    match msi {
        Some(m) => m.vectors().first().map(|v| v.line),
        None => info.irq_by_name("intx").map(|r| IrqLine {
            intid: r.intid,
            trigger: match r.trigger {
                devmodel::IrqTrigger::Edge => Trigger::Edge,
                devmodel::IrqTrigger::Level => Trigger::Level,
            },
        }),
    }
}

fn install_handler(
    device: &Arc<EduDevice>,
    line: Option<IrqLine>,
) -> Result<IrqHandle, ProbeError> {
    let line = line.ok_or_else(|| failed("no interrupt (neither MSI nor INTx)"))?;
    let dev = device.clone();
    kapi::irq::request(line, "edu", move || dev.on_interrupt()).map_err(failed)
}

/// The MSI vectors (if MSI is used) and the name of the interrupt kind.
type InterruptPlan = (Option<Box<dyn MsiAllocation>>, &'static str);

/// MSI through the ITS when the device and the platform allow it (the doorbell reached through
/// the device's DMA domain: behind the SMMU, its IOVA in the MSI window), INTx otherwise.
fn plan_interrupt(
    pci: &PciDevice,
    dma: &DmaDevice,
    log: &DevLog,
) -> Result<InterruptPlan, ProbeError> {
    let Some(id) = dma.msi_device_id() else {
        return Ok((None, "INTx"));
    };
    let msi = match kapi::msi::alloc(id, 1) {
        Ok(m) => m,
        Err(e) => {
            dev_warn!(log, "no MSI ({e}); using INTx");
            return Ok((None, "INTx"));
        }
    };
    let Some(v) = msi.vectors().first().copied() else {
        return Ok((None, "INTx"));
    };
    match dma.msi_address(v.doorbell) {
        Some(addr) => {
            pci.enable_msi(addr.0, v.data as u16).map_err(failed)?;
            Ok((Some(msi), "MSI"))
        }
        None => {
            dev_warn!(
                log,
                "the MSI doorbell {:#x} is not reachable by the device; using INTx",
                v.doorbell.0
            );
            Ok((None, "INTx"))
        }
    }
}

impl Drop for Edu {
    fn drop(&mut self) {
        let d = &self.device;
        // Quiet the device before anything it may use goes away: let a running transfer
        // finish, stop bus mastering, then MSI, then the interrupt handler, then the buffers.
        let _ = kapi::time::wait_until(DMA_TIMEOUT, || !d.dma_running());
        d.pci.set_bus_master(false);
        if self.msi.is_some() {
            d.pci.disable_msi();
        }
        self.irq.take();
        self.msi.take();
        *d.round_trip.lock() = RoundTrip::Reported;
        BOUND.lock().retain(|e| !Arc::ptr_eq(e, d));
        dev_info!(d.log, "unbound");
    }
}
