//! Types shared by the core, IOMMU drivers and the DMA layer.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use addr::{Iova, PhysAddr, Range};

/// What kind of domain a device is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainType {
    /// Translated; IOVAs are managed by the DMA API.
    Dma,
    /// Bypass: the device sees physical addresses.
    Identity,
    /// No DMA at all.
    Blocked,
    /// Translated; managed by a driver that declared `driver_managed_dma`.
    Unmanaged,
}

impl fmt::Display for DomainType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomainType::Dma => "DMA",
            DomainType::Identity => "identity",
            DomainType::Blocked => "blocked",
            DomainType::Unmanaged => "unmanaged",
        })
    }
}

/// Access permissions and memory attributes of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prot {
    /// The device may read.
    pub read: bool,
    /// The device may write.
    pub write: bool,
    /// The device's accesses are cache-coherent (Normal write-back); otherwise non-cacheable.
    pub cacheable: bool,
    /// The target is a device register (an MSI doorbell): Device memory type.
    pub mmio: bool,
}

impl Prot {
    /// Read-write, cacheable.
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        cacheable: true,
        mmio: false,
    };
    /// Read-only, cacheable.
    pub const RO: Prot = Prot {
        read: true,
        write: false,
        cacheable: true,
        mmio: false,
    };
    /// Write-only device register (MSI doorbell).
    pub const MMIO_WO: Prot = Prot {
        read: false,
        write: true,
        cacheable: false,
        mmio: true,
    };
}

/// A device's firmware description of its IOMMU: which instance and which IDs (StreamIDs for an
/// SMMU), already translated through `iommu-map` for PCI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwSpec {
    /// The IOMMU's firmware node (DT path), e.g. `/smmuv3@9050000`.
    pub iommu: String,
    /// IDs the device emits (several for multi-stream devices).
    pub ids: Vec<u32>,
}

/// An IOVA range with a special meaning in every DMA domain of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    /// IOVA range.
    pub range: Range<Iova>,
    /// What it is.
    pub kind: ReservedKind,
}

/// Kinds of reserved regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservedKind {
    /// Software-managed MSI window: the interrupt controller's doorbell page (physical address)
    /// is mapped at the start of the window so MSIs from translated devices reach it.
    Msi { doorbell: PhysAddr },
    /// Identity-mapped memory the device must always reach (firmware `reserved-memory`).
    Direct,
    /// Never allocated (e.g. a PCI window: peer-to-peer addresses that never reach the IOMMU).
    Reserved,
}

/// Errors of the IOMMU layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IommuError {
    /// The firmware names an IOMMU that has no registered instance.
    NoInstance(String),
    /// An instance with this node is already registered.
    AlreadyRegistered(String),
    /// An ID the hardware cannot take (e.g. StreamID beyond SIDSIZE).
    InvalidId { id: u32, limit: u32 },
    /// Out of memory for tables or domains.
    NoMemory,
    /// The driver cannot provide this domain type (e.g. no bypass).
    Unsupported(DomainType),
    /// Address or size not aligned to the smallest page.
    Misaligned { iova: u64, pa: u64, size: u64 },
    /// Outside the domain's input range.
    OutOfAperture { iova: u64, size: u64 },
    /// Something is already mapped there.
    AlreadyMapped { iova: u64 },
    /// Unknown device.
    UnknownDevice(String),
    /// The device's group is shared with devices whose DMA the kernel manages.
    GroupBusy { group: u32 },
    /// The instance still has devices attached.
    InUse(String),
    /// A hardware or driver failure, in the driver's words.
    Driver(String),
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IommuError::NoInstance(n) => write!(f, "no IOMMU registered for {n}"),
            IommuError::AlreadyRegistered(n) => write!(f, "an IOMMU is already registered for {n}"),
            IommuError::InvalidId { id, limit } => {
                write!(f, "ID {id:#x} is beyond the IOMMU's limit {limit:#x}")
            }
            IommuError::NoMemory => f.write_str("out of memory"),
            IommuError::Unsupported(t) => write!(f, "{t} domains are not supported"),
            IommuError::Misaligned { iova, pa, size } => {
                write!(
                    f,
                    "unaligned mapping iova {iova:#x} pa {pa:#x} size {size:#x}"
                )
            }
            IommuError::OutOfAperture { iova, size } => {
                write!(f, "iova {iova:#x}+{size:#x} is outside the domain")
            }
            IommuError::AlreadyMapped { iova } => write!(f, "iova {iova:#x} is already mapped"),
            IommuError::UnknownDevice(d) => write!(f, "device {d} is not known to the IOMMU core"),
            IommuError::GroupBusy { group } => {
                write!(
                    f,
                    "IOMMU group {group} is shared with devices the kernel manages"
                )
            }
            IommuError::InUse(n) => write!(f, "IOMMU {n} still has devices attached"),
            IommuError::Driver(s) => f.write_str(s),
        }
    }
}

/// Where to attach a device's IDs.
#[derive(Clone)]
pub enum AttachTarget {
    /// Abort every transaction.
    Blocked,
    /// Pass transactions through untranslated.
    Identity,
    /// Translate through this domain.
    Translated(Arc<dyn IommuDomain>),
}

impl fmt::Debug for AttachTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachTarget::Blocked => f.write_str("Blocked"),
            AttachTarget::Identity => f.write_str("Identity"),
            AttachTarget::Translated(d) => write!(f, "Translated({})", d.name()),
        }
    }
}

/// Leak and state counters an instance reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Stream entries (STEs) that are not ABORT.
    pub streams_not_blocked: u64,
    /// Translated domains alive.
    pub domains: u64,
    /// Page-table pages in use across domains.
    pub table_pages: u64,
}

/// One IOMMU instance, implemented by its driver (control path).
pub trait IommuOps: Send + Sync {
    /// Driver name, e.g. `smmuv3`.
    fn kind(&self) -> &'static str;
    /// Instance name as the log prints it, e.g. `9050000.smmuv3`.
    fn name(&self) -> &str;
    /// Checks that the hardware can take these IDs and prepares per-stream state (an SMMU may
    /// allocate a level-2 stream table here, and remember `device` to name it in fault reports).
    /// Streams stay blocked.
    fn probe_device(&self, device: &str, ids: &[u32]) -> Result<(), IommuError>;
    /// Undoes `probe_device` (the streams must already be blocked).
    fn release_device(&self, ids: &[u32]);
    /// A new translated domain.
    fn alloc_domain(&self) -> Result<Arc<dyn IommuDomain>, IommuError>;
    /// Points the IDs at `target`, safely while the device may be doing DMA.
    fn attach(&self, ids: &[u32], target: &AttachTarget) -> Result<(), IommuError>;
    /// True when the hardware can give a device an identity (bypass) domain.
    fn supports_identity(&self) -> bool;
    /// Counters for leak checks.
    fn stats(&self) -> InstanceStats;
}

/// A translated domain (data path: the DMA API calls these, possibly from interrupt context).
pub trait IommuDomain: Send + Sync {
    /// Name for logs, e.g. `asid 3`.
    fn name(&self) -> alloc::string::String;
    /// Maps `size` bytes (a multiple of the smallest page) from `iova` to `pa`.
    fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), IommuError>;
    /// Unmaps, returning the bytes that were mapped. The TLB is not invalidated yet: the
    /// invalidation is gathered until [`IommuDomain::iotlb_sync`] or [`IommuDomain::flush_all`],
    /// and page-table pages freed by the unmap are held until then too.
    fn unmap(&self, iova: Iova, size: u64) -> u64;
    /// Issues the gathered invalidation and waits for it (strict mode: after every unmap).
    /// An error means the IOTLB may still hold the unmapped entries: the caller must not
    /// reuse the IOVAs nor free the memory they pointed at.
    fn iotlb_sync(&self) -> Result<(), IommuError>;
    /// Invalidates the whole domain and waits (lazy mode: once per flush-queue batch). An
    /// error means the same as for [`IommuDomain::iotlb_sync`].
    fn flush_all(&self) -> Result<(), IommuError>;
    /// Where `iova` is mapped, if anywhere.
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr>;
    /// The input address range this domain can translate.
    fn aperture(&self) -> Range<Iova>;
    /// Smallest page size.
    fn page_size(&self) -> u64 {
        addr::PAGE_SIZE
    }
    /// Page-table pages this domain uses.
    fn table_pages(&self) -> u64;
    /// Bytes the page tables map right now (what cross-checks compare with the IOVA ranges
    /// the DMA layer believes are mapped).
    fn mapped_bytes(&self) -> u64;
}
