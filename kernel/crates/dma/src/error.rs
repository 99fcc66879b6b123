//! Errors of the DMA API.

use alloc::string::String;
use core::fmt;

/// Why a DMA request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The device has no DMA access (blocked), with the reason.
    NoDma(String),
    /// The device cannot reach the buffer (above its mask or outside its bus windows) and no
    /// bounce pool can serve it.
    Unreachable { pa: u64, len: u64, mask: u64 },
    /// No IOVA range of this size is free below the limit.
    NoIova { size: u64, limit: u64 },
    /// Out of page frames.
    NoMemory { size: u64 },
    /// The buffer is not kernel RAM.
    NotRam { va: u64 },
    /// A zero-length request.
    Empty,
    /// A mask narrower than a page or wider than 64 bits.
    BadMask(u32),
    /// The IOMMU refused a mapping.
    Iommu(iommu::IommuError),
    /// A broken kernel invariant (page tables and allocator disagree, a double unmap...).
    Invariant(String),
    /// The IOTLB invalidation after an unmap did not complete: the device may still reach the
    /// memory through a stale entry, so the IOVA range is never reused and the memory must not
    /// be either.
    InvalidationFailed(String),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::NoDma(r) => write!(f, "no DMA access: {r}"),
            DmaError::Unreachable { pa, len, mask } => write!(
                f,
                "buffer {pa:#x}+{len:#x} is beyond the device's reach (mask {mask:#x}) and no bounce pool can serve it"
            ),
            DmaError::NoIova { size, limit } => {
                write!(f, "no free IOVA range of {size:#x} bytes below {limit:#x}")
            }
            DmaError::NoMemory { size } => write!(f, "out of memory for {size:#x} bytes"),
            DmaError::NotRam { va } => write!(f, "{va:#x} is not kernel RAM"),
            DmaError::Empty => f.write_str("zero-length DMA request"),
            DmaError::BadMask(bits) => write!(f, "a {bits}-bit DMA mask is not supported"),
            DmaError::Iommu(e) => write!(f, "IOMMU: {e}"),
            DmaError::Invariant(s) => write!(f, "broken invariant: {s}"),
            DmaError::InvalidationFailed(s) => write!(
                f,
                "{s}: the IOVA range is retired and the memory kept from reuse"
            ),
        }
    }
}

impl From<iommu::IommuError> for DmaError {
    fn from(e: iommu::IommuError) -> Self {
        DmaError::Iommu(e)
    }
}
