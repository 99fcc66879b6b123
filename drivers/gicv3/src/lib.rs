//! Arm GICv3: distributor, the boot CPU's redistributor, and the system-register CPU interface.
//!
//! Every interrupt is Group 1 (non-secure), priority [`DEFAULT_PRIORITY`], routed to the boot CPU.
//! The CPU interface is reached through system registers, which only the kernel's arch code may
//! touch; it hands this driver a [`CpuInterface`] implementation.
//!
//! # Resources
//! - Arm IHI 0069H, GIC Architecture Specification v3/v4: §12.9 (GICD), §12.11 (GICR), §12.2 (ICC)
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod its;
pub mod lpi;
pub mod regs;

use core::time::Duration;

use kapi::irq::{IrqChip, IrqError, IrqLine, Trigger};
use kapi::mmio::{Mmio, MmioError, MmioRegion};
use kapi::sync::IrqLock;
use kapi::time::poll_until;
use regs::{FRAME_SIZE, GICD_CTLR, GICD_TYPER, GICR_TYPER, GICR_WAKER, Gicd, GicrRd, GicrSgi};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

/// Priority given to every interrupt (lower is more urgent; anything below the mask is taken).
pub const DEFAULT_PRIORITY: u8 = 0xa0;
/// Priority mask: interrupts with priority numerically lower than this are signalled.
pub const PRIORITY_MASK: u8 = 0xf0;
/// First SPI interrupt ID.
pub const SPI_BASE: u32 = 32;
/// INTIDs 1020..1023 are special (1023 = nothing pending).
pub const SPECIAL_INTID_BASE: u32 = 1020;

/// Register-write handshakes (RWP, ChildrenAsleep) take microseconds; this bound is generous.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(100);

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
    /// Reads ICC_IAR1_EL1 (acknowledges the highest-priority pending Group 1 interrupt).
    fn acknowledge(&self) -> u32;
    /// Writes ICC_EOIR1_EL1.
    fn end_of_interrupt(&self, intid: u32);
    /// This CPU's affinity (MPIDR_EL1 Aff3.Aff2.Aff1.Aff0) in GICR_TYPER's 32-bit layout.
    fn affinity(&self) -> u32;
}

/// Errors while bringing the GIC up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// A register block does not fit in the region given.
    Mmio(MmioError),
    /// No redistributor in the region serves this CPU.
    NoRedistributor { affinity: u32 },
    /// A register handshake did not complete.
    Timeout { register: &'static str },
}

impl From<MmioError> for GicError {
    fn from(e: MmioError) -> Self {
        GicError::Mmio(e)
    }
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GicError::Mmio(e) => write!(f, "{e}"),
            GicError::NoRedistributor { affinity } => {
                write!(f, "no redistributor for CPU affinity {affinity:#x}")
            }
            GicError::Timeout { register } => write!(f, "{register} handshake timed out"),
        }
    }
}

/// A GICv3 serving the boot CPU.
pub struct GicV3 {
    gicd: Mmio<Gicd>,
    gicd_ctlr_lock: IrqLock<()>,
    rd: Mmio<GicrRd>,
    sgi: Mmio<GicrSgi>,
    cpu: alloc::boxed::Box<dyn CpuInterface>,
    spis: u32,
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
        let (rd, sgi) = find_redistributor(gicr, cpu.affinity())?;
        let lines = 32 * (gicd.TYPER.read(GICD_TYPER::ITLinesNumber) + 1);
        let gic = GicV3 {
            gicd,
            gicd_ctlr_lock: IrqLock::new(()),
            rd,
            sgi,
            cpu,
            spis: lines.min(SPECIAL_INTID_BASE) - SPI_BASE,
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

/// Walks the redistributor frames until the one whose affinity matches.
fn find_redistributor(
    gicr: &MmioRegion,
    affinity: u32,
) -> Result<(Mmio<GicrRd>, Mmio<GicrSgi>), GicError> {
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
            return Ok((rd, sgi));
        }
        if typer.is_set(GICR_TYPER::Last) {
            break;
        }
        offset += stride;
    }
    Err(GicError::NoRedistributor { affinity })
}

impl IrqChip for GicV3 {
    fn configure(&self, line: IrqLine) -> Result<(), IrqError> {
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
