//! Arm SMMUv3: the driver, and the pure parts it is built from.
//!
//! The pure modules are functions of values: register layouts, ID-register decoding, the
//! in-memory structures the SMMU reads (stream table entries, context descriptors, commands) and
//! writes (event records), queue index arithmetic, and the order in which a live table entry may
//! be rewritten. The driver modules put them to work on one SMMU; every hardware access goes
//! through [`hw::SmmuIo`] (registers, and the memory the SMMU reads), so the whole driver runs on
//! the host against [`fake::FakeSmmu`], a register-level model of the SMMU.
//!
//! | module | what |
//! |---|---|
//! | [`regs`] | MMIO pages 0 and 1, register fields named as in the spec |
//! | [`features`] | IDR0/1/3/5 + AIDR decoding, the one-line summary, what this kernel requires |
//! | [`ste`] | stream table entries (abort, bypass, stage 1), stream table layout and indexing |
//! | [`cd`] | stage-1 context descriptors |
//! | [`entry`] | rewriting a live STE or CD without the SMMU ever seeing a mix of two configurations |
//! | [`cmd`] | command encoding, TLB invalidation planning for an IOVA range |
//! | [`queue`] | command/event queue sizes, PROD/CONS wrap arithmetic, base register values |
//! | [`event`] | event records, GERROR / CMDQ_CONS.ERR decoding, a rate limiter for fault lines |
//! | [`asid`] | ASID allocation |
//! | [`hw`] | the register interface as the driver sees it; the MMIO implementation |
//! | [`cmdq`] | the command queue: batches, CMD_SYNC completion, command error recovery |
//! | [`evtq`] | the event queue: draining, fault statistics, the fault-flood policy |
//! | [`strtab`] | stream table memory: linear or two-level with lazily allocated level-2 tables |
//! | [`pgtable_mem`] | io-pgtable's `TableMemory` over `kapi::dma_mem::Frames` |
//! | [`domain`] | a stage-1 DMA domain: one CD, one ASID, one page table |
//! | [`instance`] | one SMMU: reset, `iommu::IommuOps`, interrupt handlers |
//! | [`driver`] | the `devmodel` driver for `arm,smmu-v3` and the registry of bound instances |
//!
//! # Locking
//! One CPU; every lock is a [`kapi::sync::IrqLock`] (the event and GERROR handlers and the DMA
//! data path run in interrupt context). A path that holds several takes them in this order and
//! never the other way: instance events → instance streams → domain page table → command queue.
//! The ASID allocator and the domain list are leaves.
//!
//! # Resources
//! - Arm IHI 0070, System Memory Management Unit Architecture Specification, SMMU architecture
//!   version 3: chapter 3 (operation: queues §3.5, configuration and invalidation), chapter 4
//!   (commands), chapter 5 (STE, CD), chapter 6 (registers), chapter 7 (events, GERROR). Section
//!   numbers are given where a revision-stable one exists; otherwise the structure or register name.
//! - Arm DDI 0487 (Arm ARM): VMSAv8-64 TCR/MAIR encodings reused by the CD, TLBI range encoding.
//! - QEMU 10.0.2 `hw/arm/smmuv3.c`: the model the kernel runs on (see `shared/reference`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod asid;
pub mod cd;
pub mod cmd;
pub mod cmdq;
pub mod domain;
pub mod driver;
pub mod entry;
pub mod event;
pub mod evtq;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
pub mod features;
pub mod hw;
pub mod instance;
pub mod pgtable_mem;
pub mod queue;
pub mod regs;
pub mod ste;
pub mod strtab;

#[cfg(test)]
mod driver_tests;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod ktests;

use alloc::string::ToString;
use core::fmt;

pub use cmdq::CmdqFault;
pub use domain::SmmuDomain;
pub use driver::{driver, instances};
pub use hw::Reg;
pub use instance::Smmu;
pub use kapi::{Iova, PhysAddr};

/// A StreamID: which device (for PCI: the requester ID) a transaction comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A SubstreamID (PASID): at most 20 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ssid(u32);

impl Ssid {
    /// Largest SubstreamID the architecture allows (20 bits).
    pub const MAX: u32 = (1 << 20) - 1;

    /// `value` as a SubstreamID, `None` if it does not fit in 20 bits.
    pub const fn new(value: u32) -> Option<Self> {
        if value <= Self::MAX {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// An address space identifier tagging stage-1 TLB entries (8 or 16 bits, see IDR0.ASID16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asid(pub u16);

impl fmt::Display for Asid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A virtual machine identifier. This kernel runs no guests and uses VMID 0 everywhere; the
/// type exists because stage-1 TLB entries are tagged with the STE's S2VMID as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Vmid(pub u16);

/// A structure in memory the SMMU reads, for error reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure {
    /// A linear stream table or the level-1 table of a two-level one.
    StreamTable,
    /// A level-2 stream table.
    L2StreamTable,
    /// A context descriptor.
    ContextDescriptor,
    /// A stage-1 translation table (CD.TTB0).
    TranslationTable,
    /// The command queue.
    CommandQueue,
    /// The event queue.
    EventQueue,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Structure::StreamTable => "stream table",
            Structure::L2StreamTable => "level-2 stream table",
            Structure::ContextDescriptor => "context descriptor",
            Structure::TranslationTable => "translation table",
            Structure::CommandQueue => "command queue",
            Structure::EventQueue => "event queue",
        })
    }
}

/// Something this kernel needs from the SMMU (checked by [`features::Features::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// IDR0.S1P: stage-1 translation (all DMA domains are stage 1).
    Stage1,
    /// IDR0.TTF: AArch64 translation tables (io-pgtable builds VMSAv8-64 tables).
    AArch64Tables,
    /// IDR5.GRAN4K: the 4 KiB granule (the kernel's page size).
    Granule4K,
    /// IDR0.TTENDIAN: little-endian translation tables and structures.
    LittleEndian,
    /// IDR0.STALL_MODEL other than "stall forced": faults terminate, nothing waits for a resume.
    TerminatingFaults,
    /// IDR1.TABLES_PRESET / QUEUES_PRESET clear: the driver places the stream table and queues.
    ProgrammableBases,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Requirement::Stage1 => "stage-1 translation",
            Requirement::AArch64Tables => "AArch64 translation tables",
            Requirement::Granule4K => "the 4K granule",
            Requirement::LittleEndian => "little-endian translation tables",
            Requirement::TerminatingFaults => "terminating faults (stalls are forced)",
            Requirement::ProgrammableBases => "programmable stream table and queue bases",
        })
    }
}

/// Errors of the SMMUv3 layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmuError {
    /// The SMMU lacks a feature this kernel relies on.
    Unsupported(Requirement),
    /// A structure's physical address is not aligned as the SMMU requires.
    Misaligned {
        what: Structure,
        addr: PhysAddr,
        align: u64,
    },
    /// A structure's physical address does not fit in the address field or the output size.
    AddressTooWide {
        what: Structure,
        addr: PhysAddr,
        bits: u32,
    },
    /// A stage-1 input (IOVA) size the context descriptor cannot express.
    InputSize { bits: u32 },
    /// A StreamID outside the stream table.
    SidOutOfRange { sid: StreamId, bits: u32 },
    /// A queue size outside what the architecture or the SMMU allows.
    QueueSize { log2size: u32, max: u32 },
    /// An invalidation range not aligned to the 4 KiB page, or wrapping around.
    UnalignedRange { iova: Iova, size: u64 },
    /// A TLB invalidation granule that is not a 4 KiB-granule leaf size (4K, 2M, 1G).
    Granule { size: u64 },
    /// Every ASID is in use.
    AsidsExhausted,
    /// An ASID freed that was not allocated.
    AsidNotAllocated(Asid),
    /// A register handshake (CR0ACK, GBPA.UPDATE, IRQ_CTRLACK) or a command queue wait did not
    /// complete in time.
    Timeout { register: Reg },
    /// The register region could not be mapped or viewed.
    Mmio(kapi::mmio::MmioError),
    /// The device has no MMIO resource.
    NoRegisters,
    /// The MMIO resource is smaller than the two 64 KiB register pages.
    RegionTooSmall { size: u64 },
    /// The device has no device-tree node (the IOMMU core names instances by node path).
    NoFirmwareNode,
    /// No memory for a structure the SMMU reads or writes.
    NoMemory(Structure),
    /// The SMMU refused a command (SMMU_CMDQ_CONS.ERR); the entry was repaired and the queue
    /// keeps working, but the command had no effect.
    CommandRefused(CmdqFault),
    /// The SMMU is disabled (removed, or its bring-up failed) and takes no commands.
    Disabled,
    /// A StreamID that was not prepared with `probe_device`.
    SidNotProbed(StreamId),
    /// An interrupt could not be requested.
    Irq(kapi::irq::IrqError),
    /// A page-table operation failed.
    PageTable(io_pgtable::PageTableError),
    /// The IOMMU core already has an instance for this device-tree node.
    AlreadyRegistered,
    /// The domain was not allocated by this SMMU.
    ForeignDomain,
    /// A mapping that allows neither reads nor writes.
    NoAccess,
}

impl fmt::Display for SmmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmmuError::Unsupported(r) => write!(f, "SMMU does not support {r}"),
            SmmuError::Misaligned { what, addr, align } => {
                write!(f, "{what} at {addr:#x} is not {align:#x}-byte aligned")
            }
            SmmuError::AddressTooWide { what, addr, bits } => {
                write!(
                    f,
                    "{what} at {addr:#x} is beyond the {bits}-bit address size"
                )
            }
            SmmuError::InputSize { bits } => {
                write!(
                    f,
                    "a {bits}-bit IOVA space cannot be described by a context descriptor"
                )
            }
            SmmuError::SidOutOfRange { sid, bits } => {
                write!(f, "StreamID {sid} is outside the {bits}-bit stream table")
            }
            SmmuError::QueueSize { log2size, max } => {
                write!(
                    f,
                    "queue of 2^{log2size} entries exceeds the maximum 2^{max}"
                )
            }
            SmmuError::UnalignedRange { iova, size } => {
                write!(
                    f,
                    "invalidation range {iova:#x}+{size:#x} is not page aligned"
                )
            }
            SmmuError::Granule { size } => write!(f, "invalid TLB invalidation granule {size:#x}"),
            SmmuError::AsidsExhausted => f.write_str("no free ASID"),
            SmmuError::AsidNotAllocated(a) => write!(f, "ASID {a} freed but not allocated"),
            SmmuError::Timeout { register } => write!(f, "{register} handshake timed out"),
            SmmuError::Mmio(e) => write!(f, "{e}"),
            SmmuError::NoRegisters => f.write_str("no register region in the device tree"),
            SmmuError::RegionTooSmall { size } => write!(
                f,
                "register region of {size:#x} bytes is smaller than the two 64 KiB pages"
            ),
            SmmuError::NoFirmwareNode => f.write_str("no device-tree node"),
            SmmuError::NoMemory(what) => write!(f, "out of memory for the {what}"),
            SmmuError::CommandRefused(fault) => write!(f, "{fault}"),
            SmmuError::Disabled => f.write_str("the SMMU is disabled"),
            SmmuError::SidNotProbed(sid) => write!(f, "StreamID {sid} was not probed"),
            SmmuError::Irq(e) => write!(f, "{e}"),
            SmmuError::PageTable(e) => write!(f, "{e}"),
            SmmuError::AlreadyRegistered => {
                f.write_str("an IOMMU is already registered for this node")
            }
            SmmuError::ForeignDomain => f.write_str("the domain belongs to another IOMMU"),
            SmmuError::NoAccess => f.write_str("a mapping must allow reads or writes"),
        }
    }
}

impl From<kapi::mmio::MmioError> for SmmuError {
    fn from(e: kapi::mmio::MmioError) -> Self {
        SmmuError::Mmio(e)
    }
}

impl From<kapi::irq::IrqError> for SmmuError {
    fn from(e: kapi::irq::IrqError) -> Self {
        SmmuError::Irq(e)
    }
}

impl From<io_pgtable::PageTableError> for SmmuError {
    fn from(e: io_pgtable::PageTableError) -> Self {
        SmmuError::PageTable(e)
    }
}

/// At the IOMMU core boundary: the kinds the core distinguishes keep their meaning, the rest
/// become the driver's words.
impl From<SmmuError> for iommu::IommuError {
    fn from(e: SmmuError) -> Self {
        use iommu::IommuError;
        match e {
            SmmuError::SidOutOfRange { sid, bits } => IommuError::InvalidId {
                id: sid.0,
                limit: if bits >= 32 {
                    u32::MAX
                } else {
                    (1u32 << bits) - 1
                },
            },
            SmmuError::AsidsExhausted | SmmuError::NoMemory(_) => IommuError::NoMemory,
            SmmuError::PageTable(io_pgtable::PageTableError::OutOfTableMemory) => {
                IommuError::NoMemory
            }
            other => IommuError::Driver(other.to_string()),
        }
    }
}

/// A failed bring-up fails the probe (the device is left with translation disabled and
/// GBPA aborting, or untouched when the ID registers were refused).
impl From<SmmuError> for devmodel::ProbeError {
    fn from(e: SmmuError) -> Self {
        devmodel::ProbeError::failed(e)
    }
}

/// Checks that `addr` is aligned to `align` and fits in `bits` bits.
fn check_pa(what: Structure, addr: PhysAddr, align: u64, bits: u32) -> Result<(), SmmuError> {
    if !addr.is_aligned(align) {
        return Err(SmmuError::Misaligned { what, addr, align });
    }
    if bits < 64 && addr.0 >> bits != 0 {
        return Err(SmmuError::AddressTooWide { what, addr, bits });
    }
    Ok(())
}

/// `[0x..., 0x..., ...]`: the words of an STE or CD for Debug output.
fn fmt_words(f: &mut fmt::Formatter<'_>, words: &[u64]) -> fmt::Result {
    f.write_str("[")?;
    for (i, w) in words.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        write!(f, "{sep}{w:#018x}")?;
    }
    f.write_str("]")
}

/// Physical address bits every address field of the SMMUv3 structures can hold (`[51:x]`).
pub const PA_FIELD_BITS: u32 = 52;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn smmuv3_error_display_names_the_structure_and_numbers() {
        let e = SmmuError::Misaligned {
            what: Structure::CommandQueue,
            addr: PhysAddr(0x4000_0010),
            align: 0x1000,
        };
        assert_eq!(
            e.to_string(),
            "command queue at 0x40000010 is not 0x1000-byte aligned"
        );
        assert_eq!(
            SmmuError::Unsupported(Requirement::Stage1).to_string(),
            "SMMU does not support stage-1 translation"
        );
    }

    #[test]
    fn smmuv3_ids_ssid_is_20_bits() {
        assert_eq!(Ssid::new(0xf_ffff).map(Ssid::get), Some(0xf_ffff));
        assert_eq!(Ssid::new(0x10_0000), None);
    }

    #[test]
    fn smmuv3_check_pa_rejects_misaligned_and_wide() {
        assert!(check_pa(Structure::StreamTable, PhysAddr(0x4000_0000), 64, 44).is_ok());
        assert!(matches!(
            check_pa(Structure::StreamTable, PhysAddr(0x4000_0020), 64, 44),
            Err(SmmuError::Misaligned { .. })
        ));
        assert!(matches!(
            check_pa(Structure::StreamTable, PhysAddr(1 << 44), 64, 44),
            Err(SmmuError::AddressTooWide { bits: 44, .. })
        ));
    }
}
