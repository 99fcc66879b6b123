//! Arm GICv3: distributor, the boot CPU's redistributor, the system-register CPU interface, and
//! message-based interrupts: LPIs ([`lpi`]) and the Interrupt Translation Service ([`its`]).
//!
//! Every wired interrupt is Group 1 (non-secure), priority [`DEFAULT_PRIORITY`], routed to the
//! boot CPU. LPIs are always Group 1 and edge-triggered; their priority and enable bit live in a
//! configuration table in memory. The CPU interface is reached through system registers, which
//! only the kernel's arch code may touch; it hands this driver a [`CpuInterface`] implementation.
//!
//! # Bring-up
//! 1. [`GicV3::new`]: distributor, redistributor, CPU interface (SGIs, PPIs, SPIs work).
//! 2. [`GicV3::enable_lpis`]: LPI tables for the boot CPU's redistributor, GICR_CTLR.EnableLPIs.
//! 3. [`GicV3::add_its`]: device and collection tables, command queue, ITS enabled, collection 0
//!    mapped to the boot CPU. It returns the [`its::Its`] that PCI MSI set-up goes through.
//! 4. `kapi::irq::set_chip`: [`IrqChip`] then covers SPIs, PPIs and the LPIs handed out by the ITS.
//!
//! # Resources
//! - Arm IHI 0069H, GIC Architecture Specification v3/v4: §12.9 (GICD), §12.11 (GICR), §12.2 (ICC),
//!   §12.19 (GITS), chapter 5 (LPIs §5.1, the ITS and its tables §5.2, ITS commands §5.3)
//! - QEMU 10.0 `hw/intc/arm_gicv3_its.c`, `hw/intc/gicv3_internal.h`: the ITS the kernel runs on
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod its;
pub mod lpi;
pub mod regs;

use alloc::sync::Arc;
use core::fmt;
use core::time::Duration;

use kapi::PhysAddr;
use kapi::irq::{IrqChip, IrqError, IrqLine, Trigger};
use kapi::mmio::{Mmio, MmioError, MmioRegion};
use kapi::sync::IrqLock;
use kapi::time::poll_until;
use regs::{FRAME_SIZE, GICD_CTLR, GICD_TYPER, GICR_TYPER, GICR_WAKER, Gicd, GicrRd, GicrSgi};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

pub use its::{Its, ItsConfig, ItsDevice, ItsSummary, MsiMessage, MsiVector};
pub use lpi::{LPI_BASE, LpiConfig, LpiSummary, Lpis, TableAccess};

/// Priority given to every interrupt (lower is more urgent; anything below the mask is taken).
pub const DEFAULT_PRIORITY: u8 = 0xa0;
/// Priority mask: interrupts with priority numerically lower than this are signalled.
pub const PRIORITY_MASK: u8 = 0xf0;
/// First SPI interrupt ID.
pub const SPI_BASE: u32 = 32;
/// INTIDs 1020..1023 are special (1023 = nothing pending).
pub const SPECIAL_INTID_BASE: u32 = 1020;

/// Register-write handshakes (RWP, ChildrenAsleep, Quiescent) take microseconds; this bound is
/// generous.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(100);

/// The CPU interface system registers (ICC_*_EL1), implemented by the kernel's arch code.
pub trait CpuInterface: Send + Sync {
    /// Sets ICC_SRE_EL1.SRE so the system-register interface is used.
    fn enable_system_registers(&self);
    /// Writes ICC_PMR_EL1.
    fn set_priority_mask(&self, mask: u8);
    /// Writes ICC_BPR1_EL1.
    fn set_binary_point(&self, value: u8);
    /// Writes ICC_IGRPEN1_EL1.
    fn enable_group1(&self, enable: bool);
    /// Writes ICC_IGRPEN0_EL1 (Group 0: FIQs, see [`GicV3::route_private_to_fiq`]).
    fn enable_group0(&self, enable: bool);
    /// Reads ICC_IAR1_EL1 (acknowledges the highest-priority pending Group 1 interrupt).
    fn acknowledge(&self) -> u32;
    /// Writes ICC_EOIR1_EL1.
    fn end_of_interrupt(&self, intid: u32);
    /// This CPU's affinity (MPIDR_EL1 Aff3.Aff2.Aff1.Aff0) in GICR_TYPER's 32-bit layout.
    fn affinity(&self) -> u32;
}

/// Memory the GIC reads or writes, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicTable {
    /// LPI configuration table (GICR_PROPBASER).
    LpiConfiguration,
    /// LPI pending table (GICR_PENDBASER).
    LpiPending,
    /// ITS device table (GITS_BASER<n>.Type = Devices).
    Device,
    /// ITS collection table (GITS_BASER<n>.Type = Collections).
    Collection,
    /// ITS command queue (GITS_CBASER).
    CommandQueue,
    /// A device's interrupt translation table (MAPD).
    Itt,
}

impl fmt::Display for GicTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GicTable::LpiConfiguration => "LPI configuration table",
            GicTable::LpiPending => "LPI pending table",
            GicTable::Device => "ITS device table",
            GicTable::Collection => "ITS collection table",
            GicTable::CommandQueue => "ITS command queue",
            GicTable::Itt => "interrupt translation table",
        })
    }
}

/// Errors of the GIC driver: bring-up, LPIs and the ITS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// A register block does not fit in the region given.
    Mmio(MmioError),
    /// No redistributor in the region serves this CPU.
    NoRedistributor { affinity: u32 },
    /// A register handshake (or the ITS consuming commands) did not complete in time.
    Timeout { register: &'static str },
    /// The GIC has no physical LPIs (GICD_TYPER.LPIS or GICR_TYPER.PLPIS is 0).
    NoLpis,
    /// GICR_CTLR.EnableLPIs was set before the kernel ran and cannot be cleared, so the LPI
    /// tables cannot be replaced.
    LpisAlreadyEnabled,
    /// The LPI INTID width asked for is below 14 or above what GICD_TYPER.IDbits allows.
    LpiIdBits { requested: u32, supported: u32 },
    /// [`GicV3::add_its`] was called before [`GicV3::enable_lpis`].
    LpisNotEnabled,
    /// This driver drives one ITS; a second was offered.
    ItsAlreadyPresent,
    /// The ITS was disabled (its memory is gone); no commands can be issued.
    ItsDisabled,
    /// Page frames for a table could not be allocated.
    OutOfMemory { table: GicTable, bytes: u64 },
    /// The ITS does not translate to physical LPIs (GITS_TYPER.Physical = 0).
    ItsNotPhysical,
    /// No GITS_BASER<n> holds a table this driver needs.
    MissingTable { table: GicTable },
    /// A flat table would need more pages than GITS_BASER<n>.Size can describe.
    TableTooLarge { table: GicTable, bytes: u64 },
    /// GITS_BASER<index> accepted none of the page sizes tried.
    PageSizeRejected { index: usize },
    /// The ITS stopped at a command (GITS_CREADR.Stalled): its byte offset in the queue and its
    /// command number.
    CommandStalled { offset: u64, opcode: u8 },
    /// The DeviceID does not fit the device table.
    DeviceIdOutOfRange { device_id: u32, bits: u32 },
    /// The DeviceID is mapped already (its functions alias to one requester ID) and its shared
    /// ITT has no free block of EventIDs for `requested` more vectors.
    IttFull { device_id: u32, requested: u32 },
    /// Zero vectors, or more than the ITS's EventID bits allow.
    VectorCount { requested: u32, max: u64 },
    /// Every LPI is in use.
    NoFreeLpi,
    /// Every EventID of the device already has a vector.
    NoFreeEvent { device_id: u32 },
    /// The vector is not mapped on this device.
    NotMapped { intid: u32 },
    /// Only private interrupts (SGIs, PPIs) can be routed to FIQ by this driver.
    NotPrivate { intid: u32 },
    /// The GIC has two security states (GICD_CTLR.DS = 0): Group 0 belongs to the secure side.
    Group0Secure,
}

impl From<MmioError> for GicError {
    fn from(e: MmioError) -> Self {
        GicError::Mmio(e)
    }
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GicError::Mmio(e) => write!(f, "{e}"),
            GicError::NoRedistributor { affinity } => {
                write!(f, "no redistributor for CPU affinity {affinity:#x}")
            }
            GicError::Timeout { register } => write!(f, "{register} handshake timed out"),
            GicError::NoLpis => f.write_str("the GIC does not implement physical LPIs"),
            GicError::LpisAlreadyEnabled => {
                f.write_str("LPIs were enabled before boot and cannot be disabled")
            }
            GicError::LpiIdBits {
                requested,
                supported,
            } => write!(
                f,
                "{requested} LPI ID bits asked for, the GIC supports 14 to {supported}"
            ),
            GicError::LpisNotEnabled => f.write_str("LPIs must be enabled before the ITS"),
            GicError::ItsAlreadyPresent => f.write_str("an ITS is already in use"),
            GicError::ItsDisabled => f.write_str("the ITS is disabled"),
            GicError::OutOfMemory { table, bytes } => {
                write!(f, "no memory for the {table} ({bytes} bytes)")
            }
            GicError::ItsNotPhysical => f.write_str("the ITS does not support physical LPIs"),
            GicError::MissingTable { table } => write!(f, "the ITS has no {table}"),
            GicError::TableTooLarge { table, bytes } => {
                write!(
                    f,
                    "the {table} would need {bytes} bytes, more than GITS_BASER can hold"
                )
            }
            GicError::PageSizeRejected { index } => {
                write!(f, "GITS_BASER{index} accepts no page size tried")
            }
            GicError::CommandStalled { offset, opcode } => write!(
                f,
                "the ITS stalled on command {opcode:#04x} at queue offset {offset:#x}"
            ),
            GicError::DeviceIdOutOfRange { device_id, bits } => {
                write!(f, "DeviceID {device_id:#x} does not fit in {bits} bits")
            }
            GicError::IttFull {
                device_id,
                requested,
            } => write!(
                f,
                "DeviceID {device_id:#x}'s ITT has no room for {requested} more vector{} (shared by aliased functions)",
                if *requested == 1 { "" } else { "s" }
            ),
            GicError::VectorCount { requested, max } => {
                write!(f, "{requested} MSI vectors asked for, 1 to {max} possible")
            }
            GicError::NoFreeLpi => f.write_str("no free LPI"),
            GicError::NoFreeEvent { device_id } => {
                write!(f, "DeviceID {device_id:#x} has no free EventID")
            }
            GicError::NotMapped { intid } => write!(f, "LPI {intid} is not mapped on this device"),
            GicError::NotPrivate { intid } => {
                write!(f, "INTID {intid} is not a private interrupt (SGI or PPI)")
            }
            GicError::Group0Secure => f.write_str(
                "the GIC has security states: Group 0 (FIQ) belongs to the secure world",
            ),
        }
    }
}

/// A GICv3 serving the boot CPU.
pub struct GicV3 {
    gicd: Mmio<Gicd>,
    gicd_ctlr_lock: IrqLock<()>,
    gicr: MmioRegion,
    rd_offset: u64,
    rd: Mmio<GicrRd>,
    sgi: Mmio<GicrSgi>,
    cpu: alloc::boxed::Box<dyn CpuInterface>,
    spis: u32,
    lpis: Option<Arc<Lpis>>,
    its: Option<Arc<Its>>,
}

impl GicV3 {
    /// Finds this CPU's redistributor in `gicr`, resets both the distributor and it to a known
    /// state (everything masked, Group 1, default priority) and enables the CPU interface.
    pub fn new(
        gicd: &MmioRegion,
        gicr: &MmioRegion,
        cpu: alloc::boxed::Box<dyn CpuInterface>,
    ) -> Result<Self, GicError> {
        let gicd = gicd.view::<Gicd>(0)?;
        let (rd_offset, rd, sgi) = find_redistributor(gicr, cpu.affinity())?;
        let lines = 32 * (gicd.TYPER.read(GICD_TYPER::ITLinesNumber) + 1);
        let gic = GicV3 {
            gicd,
            gicd_ctlr_lock: IrqLock::new(()),
            gicr: *gicr,
            rd_offset,
            rd,
            sgi,
            cpu,
            spis: lines.min(SPECIAL_INTID_BASE) - SPI_BASE,
            lpis: None,
            its: None,
        };
        gic.init_distributor()?;
        gic.init_redistributor()?;
        gic.init_cpu_interface();
        Ok(gic)
    }

    /// Number of SPIs the distributor implements.
    pub fn spi_count(&self) -> u32 {
        self.spis
    }

    /// Gives the boot CPU's redistributor its LPI configuration and pending tables and sets
    /// GICR_CTLR.EnableLPIs. `gicr_pa` is the physical address of the redistributor region
    /// passed to [`GicV3::new`] (an ITS with GITS_TYPER.PTA = 1 names redistributors by address).
    /// Calling it again returns the existing set-up.
    pub fn enable_lpis(
        &mut self,
        gicr_pa: PhysAddr,
        cfg: LpiConfig,
    ) -> Result<LpiSummary, GicError> {
        if let Some(lpis) = &self.lpis {
            return Ok(lpis.summary());
        }
        let typer = self.gicd.TYPER.extract();
        if !typer.is_set(GICD_TYPER::LPIS) || !self.rd.TYPER.is_set(GICR_TYPER::PLPIS) {
            return Err(GicError::NoLpis);
        }
        let lpis = Lpis::enable(
            &self.gicr,
            self.rd_offset,
            PhysAddr(gicr_pa.0 + self.rd_offset),
            self.rd.TYPER.read(GICR_TYPER::Processor_Number) as u16,
            typer.read(GICD_TYPER::IDbits) + 1,
            typer.read(GICD_TYPER::num_LPIs),
            cfg,
        )?;
        let summary = lpis.summary();
        self.lpis = Some(Arc::new(lpis));
        Ok(summary)
    }

    /// Brings up the ITS whose registers are `its` (the DT `reg` of the `arm,gic-v3-its` node:
    /// control and translation frames, 128 KiB) at physical address `its_pa`, and maps
    /// collection 0 to the boot CPU. LPIs must be enabled first.
    pub fn add_its(
        &mut self,
        its: &MmioRegion,
        its_pa: PhysAddr,
        cfg: ItsConfig,
    ) -> Result<Arc<Its>, GicError> {
        let lpis = self.lpis.clone().ok_or(GicError::LpisNotEnabled)?;
        if self.its.is_some() {
            return Err(GicError::ItsAlreadyPresent);
        }
        let its = Arc::new(Its::new(its, its_pa, lpis, cfg)?);
        self.its = Some(its.clone());
        Ok(its)
    }

    /// The LPI tables, once [`GicV3::enable_lpis`] succeeded.
    pub fn lpis(&self) -> Option<&Arc<Lpis>> {
        self.lpis.as_ref()
    }

    /// The ITS, once [`GicV3::add_its`] succeeded.
    pub fn its(&self) -> Option<&Arc<Its>> {
        self.its.as_ref()
    }

    /// Makes private interrupt `intid` a Group 0 interrupt of priority `priority` and enables
    /// it. Without security states (GICD_CTLR.DS = 1, QEMU `virt` without `secure=on`) Group 0
    /// is signalled as FIQ, which masking IRQs (PSTATE.I, what the kernel's locks do) does not
    /// hold back: a sampling profiler on it sees inside IRQ-masked code. Its handler must
    /// acknowledge through ICC_IAR0_EL1 and end through ICC_EOIR0_EL1, not the IRQ path.
    pub fn route_private_to_fiq(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        if !Self::is_private(intid) {
            return Err(GicError::NotPrivate { intid });
        }
        if !self.gicd.CTLR.is_set(GICD_CTLR::DS) {
            return Err(GicError::Group0Secure);
        }
        let bit = 1 << intid;
        // Disabled while its group and priority change.
        self.sgi.ICENABLER0.set(bit);
        self.sgi.IGROUPR0.set(self.sgi.IGROUPR0.get() & !bit);
        self.sgi.IPRIORITYR[intid as usize].set(priority);
        self.gicd.CTLR.modify(GICD_CTLR::EnableGrp0::SET);
        self.wait_gicd_rwp()?;
        self.cpu.enable_group0(true);
        self.sgi.ISENABLER0.set(bit);
        Ok(())
    }

    fn wait_gicd_rwp(&self) -> Result<(), GicError> {
        poll_until(HANDSHAKE_TIMEOUT, || !self.gicd.CTLR.is_set(GICD_CTLR::RWP)).map_err(|_| {
            GicError::Timeout {
                register: "GICD_CTLR.RWP",
            }
        })
    }

    fn init_distributor(&self) -> Result<(), GicError> {
        // Disable before reprogramming: group and trigger changes need the interrupt disabled.
        self.gicd.CTLR.set(0);
        self.wait_gicd_rwp()?;
        let regs = (SPI_BASE + self.spis).div_ceil(32) as usize;
        for i in 1..regs {
            self.gicd.ICENABLER[i].set(u32::MAX);
            self.gicd.ICPENDR[i].set(u32::MAX);
            self.gicd.ICACTIVER[i].set(u32::MAX);
            self.gicd.IGROUPR[i].set(u32::MAX);
        }
        for intid in SPI_BASE..SPI_BASE + self.spis {
            self.gicd.IPRIORITYR[intid as usize].set(DEFAULT_PRIORITY);
        }
        self.wait_gicd_rwp()?;
        // ARE must be set for affinity routing (IROUTER); Group 1 enabled. In the single security
        // state both enable bits exist; with security they alias the non-secure view's bits.
        self.gicd
            .CTLR
            .write(GICD_CTLR::ARE::SET + GICD_CTLR::EnableGrp1::SET);
        self.wait_gicd_rwp()
    }

    fn init_redistributor(&self) -> Result<(), GicError> {
        // Wake the redistributor: the PE is not asleep; wait until its interfaces are awake.
        self.rd.WAKER.modify(GICR_WAKER::ProcessorSleep::CLEAR);
        poll_until(HANDSHAKE_TIMEOUT, || {
            !self.rd.WAKER.is_set(GICR_WAKER::ChildrenAsleep)
        })
        .map_err(|_| GicError::Timeout {
            register: "GICR_WAKER.ChildrenAsleep",
        })?;
        self.sgi.ICENABLER0.set(u32::MAX);
        self.sgi.ICPENDR0.set(u32::MAX);
        self.sgi.IGROUPR0.set(u32::MAX);
        for p in self.sgi.IPRIORITYR.iter() {
            p.set(DEFAULT_PRIORITY);
        }
        poll_until(HANDSHAKE_TIMEOUT, || {
            !self.rd.CTLR.is_set(regs::GICR_CTLR::RWP)
        })
        .map_err(|_| GicError::Timeout {
            register: "GICR_CTLR.RWP",
        })
    }

    fn init_cpu_interface(&self) {
        self.cpu.enable_system_registers();
        self.cpu.set_priority_mask(PRIORITY_MASK);
        self.cpu.set_binary_point(0);
        self.cpu.enable_group1(true);
    }

    fn is_private(intid: u32) -> bool {
        intid < SPI_BASE
    }

    fn check(&self, intid: u32) -> Result<(), IrqError> {
        if intid < SPI_BASE + self.spis {
            Ok(())
        } else {
            Err(IrqError::InvalidLine(intid))
        }
    }
}

/// GICD_IROUTER value targeting one PE: Aff2.Aff1.Aff0 in bits 23:0, Aff3 in bits 39:32, IRM = 0
/// (§12.9.22). `affinity` is in GICR_TYPER's layout (Aff3 in bits 31:24).
fn irouter_for(affinity: u32) -> u64 {
    let low = u64::from(affinity & 0xff_ffff);
    let aff3 = u64::from(affinity >> 24);
    low | (aff3 << 32)
}

/// Walks the redistributor frames until the one whose affinity matches; returns its offset in
/// the region and its two frames.
fn find_redistributor(
    gicr: &MmioRegion,
    affinity: u32,
) -> Result<(u64, Mmio<GicrRd>, Mmio<GicrSgi>), GicError> {
    let mut offset = 0;
    while offset + 2 * FRAME_SIZE <= gicr.size() {
        let rd = gicr.view::<GicrRd>(offset)?;
        let typer = rd.TYPER.extract();
        let stride = if typer.is_set(GICR_TYPER::VLPIS) {
            4
        } else {
            2
        } * FRAME_SIZE;
        if typer.read(GICR_TYPER::Affinity_Value) as u32 == affinity {
            let sgi = gicr.view::<GicrSgi>(offset + FRAME_SIZE)?;
            return Ok((offset, rd, sgi));
        }
        if typer.is_set(GICR_TYPER::Last) {
            break;
        }
        offset += stride;
    }
    Err(GicError::NoRedistributor { affinity })
}

impl GicV3 {
    /// LPIs are edge-triggered and routed by their collection; only allocated ones exist.
    fn configure_lpi(&self, line: IrqLine) -> Result<(), IrqError> {
        match &self.lpis {
            Some(lpis) if lpis.is_allocated(line.intid) && line.trigger == Trigger::Edge => Ok(()),
            _ => Err(IrqError::InvalidLine(line.intid)),
        }
    }

    /// Enables or disables an LPI: its configuration byte, then INV + SYNC through the ITS.
    fn set_lpi_enabled(&self, intid: u32, enabled: bool) {
        let Some(lpis) = &self.lpis else { return };
        if !lpis.is_allocated(intid) {
            return;
        }
        match &self.its {
            Some(its) => {
                if let Err(e) = its.set_lpi_enabled(intid, enabled) {
                    log::error!(target: "gicv3", "LPI {intid}: {e}");
                }
            }
            None => lpis.set_config(intid, DEFAULT_PRIORITY, enabled),
        }
    }
}

impl IrqChip for GicV3 {
    fn configure(&self, line: IrqLine) -> Result<(), IrqError> {
        if line.intid >= LPI_BASE {
            return self.configure_lpi(line);
        }
        self.check(line.intid)?;
        if line.intid < 16 {
            // SGIs are always edge-triggered; nothing to configure.
            return Ok(());
        }
        let bit = 2 * (line.intid % 16) + 1;
        let edge = line.trigger == Trigger::Edge;
        let set = |reg: &tock_registers::registers::ReadWrite<u32>| {
            let v = reg.get();
            reg.set(if edge {
                v | (1 << bit)
            } else {
                v & !(1 << bit)
            });
        };
        if Self::is_private(line.intid) {
            set(&self.sgi.ICFGR[(line.intid / 16) as usize]);
        } else {
            let _g = self.gicd_ctlr_lock.lock();
            set(&self.gicd.ICFGR[(line.intid / 16) as usize]);
            // Route to this CPU (IRM = 0: one specific PE).
            self.gicd.IROUTER[line.intid as usize].set(irouter_for(self.cpu.affinity()));
        }
        Ok(())
    }

    fn enable(&self, intid: u32) {
        if intid >= LPI_BASE {
            return self.set_lpi_enabled(intid, true);
        }
        if self.check(intid).is_err() {
            return;
        }
        let bit = 1 << (intid % 32);
        if Self::is_private(intid) {
            self.sgi.ISENABLER0.set(bit);
        } else {
            self.gicd.ISENABLER[(intid / 32) as usize].set(bit);
        }
    }

    fn disable(&self, intid: u32) {
        if intid >= LPI_BASE {
            return self.set_lpi_enabled(intid, false);
        }
        if self.check(intid).is_err() {
            return;
        }
        let bit = 1 << (intid % 32);
        if Self::is_private(intid) {
            self.sgi.ICENABLER0.set(bit);
        } else {
            self.gicd.ICENABLER[(intid / 32) as usize].set(bit);
            // A disable is only guaranteed once RWP clears (§12.9.4); a timeout here would mean a
            // broken distributor, and there is nothing better to do than carry on.
            let _ = self.wait_gicd_rwp();
        }
    }

    fn ack(&self) -> Option<u32> {
        let intid = self.cpu.acknowledge() & 0xff_ffff;
        if (SPECIAL_INTID_BASE..=1023).contains(&intid) {
            None
        } else {
            Some(intid)
        }
    }

    fn eoi(&self, intid: u32) {
        self.cpu.end_of_interrupt(intid);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
