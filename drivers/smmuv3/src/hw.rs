//! How the driver reaches an SMMU: its registers, and memory it can read and write.
//!
//! Every register access of the driver goes through [`SmmuIo`], naming the register with
//! [`Reg`] / [`Reg64`]; [`MmioIo`] implements it on the declared register blocks of
//! [`crate::regs`] (pages 0 and 1), `fake::FakeSmmu` on the host with a model of the SMMU's
//! behaviour (acknowledgements, command consumption, event production). Memory the SMMU reads
//! or writes (stream table, queues) is allocated through the same trait, so the model can find
//! it from the base registers the driver programs; page tables and context descriptors, which
//! the model does not walk, come from [`Frames`] directly.
//!
//! Access widths follow the architecture and QEMU: 32-bit registers are accessed with 32-bit
//! loads and stores (QEMU reads 0 for a 64-bit read of one), the three base registers with one
//! 64-bit store.

use alloc::sync::Arc;
use core::fmt;

use kapi::VirtAddr;
use kapi::dma_mem::Frames;
use kapi::mmio::{Mmio, MmioError, MmioRegion};
use tock_registers::interfaces::{Readable, Writeable};

use crate::regs::{PAGE1_OFFSET, Page0, Page1};

/// A 32-bit register the driver uses, named as in IHI 0070 §6.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reg {
    /// SMMU_IDR0 (read-only).
    Idr0,
    /// SMMU_IDR1 (read-only).
    Idr1,
    /// SMMU_IDR3 (read-only).
    Idr3,
    /// SMMU_IDR5 (read-only).
    Idr5,
    /// SMMU_AIDR (read-only).
    Aidr,
    /// SMMU_CR0.
    Cr0,
    /// SMMU_CR0ACK (read-only).
    Cr0Ack,
    /// SMMU_CR1.
    Cr1,
    /// SMMU_CR2.
    Cr2,
    /// SMMU_GBPA.
    Gbpa,
    /// SMMU_IRQ_CTRL.
    IrqCtrl,
    /// SMMU_IRQ_CTRLACK (read-only).
    IrqCtrlAck,
    /// SMMU_GERROR (read-only).
    Gerror,
    /// SMMU_GERRORN.
    Gerrorn,
    /// SMMU_STRTAB_BASE_CFG.
    StrtabBaseCfg,
    /// SMMU_CMDQ_PROD.
    CmdqProd,
    /// SMMU_CMDQ_CONS.
    CmdqCons,
    /// SMMU_EVENTQ_PROD, in page 1.
    EventqProd,
    /// SMMU_EVENTQ_CONS, in page 1.
    EventqCons,
}

impl Reg {
    /// The spec's name.
    pub fn name(self) -> &'static str {
        match self {
            Reg::Idr0 => "SMMU_IDR0",
            Reg::Idr1 => "SMMU_IDR1",
            Reg::Idr3 => "SMMU_IDR3",
            Reg::Idr5 => "SMMU_IDR5",
            Reg::Aidr => "SMMU_AIDR",
            Reg::Cr0 => "SMMU_CR0",
            Reg::Cr0Ack => "SMMU_CR0ACK",
            Reg::Cr1 => "SMMU_CR1",
            Reg::Cr2 => "SMMU_CR2",
            Reg::Gbpa => "SMMU_GBPA",
            Reg::IrqCtrl => "SMMU_IRQ_CTRL",
            Reg::IrqCtrlAck => "SMMU_IRQ_CTRLACK",
            Reg::Gerror => "SMMU_GERROR",
            Reg::Gerrorn => "SMMU_GERRORN",
            Reg::StrtabBaseCfg => "SMMU_STRTAB_BASE_CFG",
            Reg::CmdqProd => "SMMU_CMDQ_PROD",
            Reg::CmdqCons => "SMMU_CMDQ_CONS",
            Reg::EventqProd => "SMMU_EVENTQ_PROD",
            Reg::EventqCons => "SMMU_EVENTQ_CONS",
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A 64-bit register the driver writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reg64 {
    /// SMMU_STRTAB_BASE.
    StrtabBase,
    /// SMMU_CMDQ_BASE.
    CmdqBase,
    /// SMMU_EVENTQ_BASE.
    EventqBase,
}

/// An SMMU's register interface and DMA memory, as the driver uses them.
pub trait SmmuIo: Send + Sync {
    /// Reads a 32-bit register.
    fn read(&self, reg: Reg) -> u32;
    /// Writes a 32-bit register (writes to read-only registers are ignored).
    fn write(&self, reg: Reg, value: u32);
    /// Writes a 64-bit register with one 64-bit store.
    fn write64(&self, reg: Reg64, value: u64);
    /// Zeroed, naturally aligned memory of at least `bytes` that the SMMU will read or write
    /// (stream table, queues); `None` when memory is exhausted.
    fn alloc(&self, bytes: u64) -> Option<Arc<Frames>> {
        Frames::alloc_bytes(bytes).map(Arc::new)
    }
}

/// The SMMU's two register pages, mapped.
#[derive(Debug)]
pub struct MmioIo {
    page0: Mmio<Page0>,
    page1: Mmio<Page1>,
}

/// Size of the register region the driver maps: page 0 and page 1.
pub const REGION_SIZE: u64 = 2 * crate::regs::PAGE_SIZE;

impl MmioIo {
    /// Views pages 0 and 1 of `region` (which must span [`REGION_SIZE`] bytes).
    pub fn new(region: &MmioRegion) -> Result<Self, MmioError> {
        Ok(Self {
            page0: region.view::<Page0>(0)?,
            page1: region.view::<Page1>(PAGE1_OFFSET)?,
        })
    }
}

impl SmmuIo for MmioIo {
    fn read(&self, reg: Reg) -> u32 {
        let (p0, p1) = (&self.page0, &self.page1);
        match reg {
            Reg::Idr0 => p0.IDR0.get(),
            Reg::Idr1 => p0.IDR1.get(),
            Reg::Idr3 => p0.IDR3.get(),
            Reg::Idr5 => p0.IDR5.get(),
            Reg::Aidr => p0.AIDR.get(),
            Reg::Cr0 => p0.CR0.get(),
            Reg::Cr0Ack => p0.CR0ACK.get(),
            Reg::Cr1 => p0.CR1.get(),
            Reg::Cr2 => p0.CR2.get(),
            Reg::Gbpa => p0.GBPA.get(),
            Reg::IrqCtrl => p0.IRQ_CTRL.get(),
            Reg::IrqCtrlAck => p0.IRQ_CTRLACK.get(),
            Reg::Gerror => p0.GERROR.get(),
            Reg::Gerrorn => p0.GERRORN.get(),
            Reg::StrtabBaseCfg => p0.STRTAB_BASE_CFG.get(),
            Reg::CmdqProd => p0.CMDQ_PROD.get(),
            Reg::CmdqCons => p0.CMDQ_CONS.get(),
            Reg::EventqProd => p1.EVENTQ_PROD.get(),
            Reg::EventqCons => p1.EVENTQ_CONS.get(),
        }
    }

    fn write(&self, reg: Reg, value: u32) {
        let (p0, p1) = (&self.page0, &self.page1);
        match reg {
            Reg::Cr0 => p0.CR0.set(value),
            Reg::Cr1 => p0.CR1.set(value),
            Reg::Cr2 => p0.CR2.set(value),
            Reg::Gbpa => p0.GBPA.set(value),
            Reg::IrqCtrl => p0.IRQ_CTRL.set(value),
            Reg::Gerrorn => p0.GERRORN.set(value),
            Reg::StrtabBaseCfg => p0.STRTAB_BASE_CFG.set(value),
            Reg::CmdqProd => p0.CMDQ_PROD.set(value),
            Reg::CmdqCons => p0.CMDQ_CONS.set(value),
            Reg::EventqProd => p1.EVENTQ_PROD.set(value),
            Reg::EventqCons => p1.EVENTQ_CONS.set(value),
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

    fn write64(&self, reg: Reg64, value: u64) {
        let p0 = &self.page0;
        match reg {
            Reg64::StrtabBase => p0.STRTAB_BASE.set(value),
            Reg64::CmdqBase => p0.CMDQ_BASE.set(value),
            Reg64::EventqBase => p0.EVENTQ_BASE.set(value),
        }
    }
}

/// How CPU writes reach the SMMU and SMMU writes reach the CPU (IDR0.COHACC).
///
/// A coherent SMMU snoops the CPU caches: a barrier before the register write that makes it
/// look is all it needs. A non-coherent one reads and writes memory behind the caches, so
/// whatever the CPU wrote is cleaned to the point of coherency first, and whatever the SMMU
/// wrote is invalidated from the caches before the CPU reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coherency {
    coherent: bool,
}

impl Coherency {
    /// For an SMMU whose IDR0.COHACC is `coherent`.
    pub const fn new(coherent: bool) -> Self {
        Self { coherent }
    }

    /// True when the SMMU's accesses are coherent.
    pub const fn is_coherent(self) -> bool {
        self.coherent
    }

    /// Makes `len` bytes at `offset` of `mem`, written by the CPU, visible to the SMMU's reads
    /// (a barrier is still needed before the register write that tells it to look).
    pub fn publish(self, mem: &Frames, offset: u64, len: u64) {
        if !self.coherent {
            kapi::platform::get().cache_clean(VirtAddr(mem.va().0 + offset), len);
        }
    }

    /// Drops cached copies of `len` bytes at `offset` of `mem` before the CPU reads what the
    /// SMMU wrote there.
    pub fn fetch(self, mem: &Frames, offset: u64, len: u64) {
        if !self.coherent {
            kapi::platform::get().cache_invalidate(VirtAddr(mem.va().0 + offset), len);
        }
    }
}
