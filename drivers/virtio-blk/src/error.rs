//! The driver's one error type.

use core::fmt;

use kapi::irq::IrqError;
use kapi::mmio::MmioError;
use pci_ecam::device::PciError;

use crate::features::Features;
use crate::virtqueue::QueueError;

/// A virtio structure the driver needs (virtio 1.2 §4.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure {
    /// Common configuration.
    Common,
    /// Notifications.
    Notify,
    /// ISR status.
    Isr,
    /// Device-specific configuration.
    Device,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Structure::Common => "common configuration",
            Structure::Notify => "notification",
            Structure::Isr => "ISR status",
            Structure::Device => "device configuration",
        })
    }
}

/// What is wrong with a virtio vendor capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapProblem {
    /// `cap_len` is too small for the structure type.
    TooShort { cap_len: u8, need: u8 },
    /// The BAR is not implemented or was not assigned.
    NoSuchBar(u8),
    /// The BAR is an I/O BAR (only memory BARs are mapped).
    IoBar(u8),
    /// The structure does not fit inside its BAR.
    OutsideBar {
        bar: u8,
        offset: u32,
        length: u32,
        bar_size: u64,
    },
    /// The structure's offset is not aligned as the spec requires.
    Misaligned { offset: u32, align: u32 },
    /// The structure is shorter than the driver reads.
    TooSmall { length: u32, need: u32 },
    /// `notify_off_multiplier` is neither 0 nor an even power of two (virtio 1.2 §4.1.4.4).
    BadMultiplier(u32),
}

impl fmt::Display for CapProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CapProblem::TooShort { cap_len, need } => {
                write!(
                    f,
                    "cap_len {cap_len} is shorter than the {need} bytes of its type"
                )
            }
            CapProblem::NoSuchBar(b) => write!(f, "BAR{b} is not implemented or not assigned"),
            CapProblem::IoBar(b) => write!(f, "BAR{b} is an I/O BAR"),
            CapProblem::OutsideBar {
                bar,
                offset,
                length,
                bar_size,
            } => write!(
                f,
                "{offset:#x}+{length:#x} lies outside BAR{bar} ({bar_size:#x} bytes)"
            ),
            CapProblem::Misaligned { offset, align } => {
                write!(f, "offset {offset:#x} is not {align}-byte aligned")
            }
            CapProblem::TooSmall { length, need } => {
                write!(f, "length {length:#x} is below the {need:#x} bytes needed")
            }
            CapProblem::BadMultiplier(m) => write!(
                f,
                "notify_off_multiplier {m} is neither 0 nor an even power of two"
            ),
        }
    }
}

/// Why the device was declared broken. A broken device is reset (so it stops touching
/// memory), its outstanding requests fail, and it takes no new ones until it is re-bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokenReason {
    /// A request did not complete in time. `completed_unannounced` is true when the used ring
    /// did hold completions that no interrupt announced (an MSI that never arrived).
    Timeout { completed_unannounced: bool },
    /// The used ring returned a descriptor index that is not an outstanding request.
    UnknownUsedId(u32),
    /// The used ring claims more bytes written than the request's writable buffers hold.
    UsedLengthOverflow { written: u32, writable: u32 },
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
}

impl fmt::Display for BrokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BrokenReason::Timeout {
                completed_unannounced: false,
            } => f.write_str("a request did not complete in time"),
            BrokenReason::Timeout {
                completed_unannounced: true,
            } => f.write_str(
                "a request completed but no interrupt announced it (is the MSI doorbell reachable?)",
            ),
            BrokenReason::UnknownUsedId(id) => {
                write!(f, "the device used descriptor {id}, which heads no outstanding request")
            }
            BrokenReason::UsedLengthOverflow { written, writable } => write!(
                f,
                "the device claims {written} bytes written into {writable} writable bytes"
            ),
            BrokenReason::NeedsReset => f.write_str("the device set DEVICE_NEEDS_RESET"),
        }
    }
}

/// Errors of the virtio-blk driver: probe (transport, negotiation, set-up) and requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// The device is not a PCI function.
    NotPci,
    /// The bus gave the device no DMA ops.
    NoDmaOps,
    /// The PCI layer refused (BAR mapping, MSI-X).
    Pci(PciError),
    /// A register access was out of bounds.
    Mmio(MmioError),
    /// The DMA API refused.
    Dma(dma::DmaError),
    /// A malformed virtio capability, at its config-space offset.
    Capability { offset: u16, problem: CapProblem },
    /// A structure the driver needs has no (usable) capability.
    Missing(Structure),
    /// Device status did not read back 0 after a reset.
    ResetTimeout { status: u8 },
    /// The device does not offer VIRTIO_F_VERSION_1.
    NoVersion1 { offered: Features },
    /// The device's DMA would bypass the IOMMU the DMA API translates through.
    NoAccessPlatform { offered: Features },
    /// FEATURES_OK did not stay set: the device refused the accepted subset.
    FeaturesRefused {
        offered: Features,
        accepted: Features,
        status: u8,
    },
    /// The device configuration kept changing while it was read.
    ConfigUnstable,
    /// A device configuration field has a value the driver cannot work with.
    BadConfig { field: &'static str, value: u64 },
    /// The device has no request queue (num_queues or queue 0's size is 0).
    NoQueue,
    /// Queue 0's notification address lies outside the notification structure.
    NotifyOutOfRange {
        queue_notify_off: u16,
        multiplier: u32,
        length: u32,
    },
    /// The device could not take the MSI-X vector written to it.
    MsixVectorRefused { which: &'static str },
    /// No interrupt: neither MSI-X nor an INTx line.
    NoInterrupt,
    /// The IRQ layer refused.
    Irq(IrqError),
    /// A write to a read-only device (VIRTIO_BLK_F_RO).
    ReadOnly,
    /// Zero bytes, or not a whole number of 512-byte sectors.
    BadLength { len: usize },
    /// Not aligned to the device's logical block size.
    Misaligned {
        sector: u64,
        len: usize,
        block_size: u32,
    },
    /// Beyond the end of the disk.
    OutOfRange {
        sector: u64,
        sectors: u64,
        capacity: u64,
    },
    /// Larger than one request can carry (seg_max × size_max, or the driver's own limit).
    TooLarge { len: usize, max: usize },
    /// Every request slot or descriptor is in use.
    QueueFull,
    /// No memory for a buffer of this size.
    NoMemory { bytes: u64 },
    /// The virtqueue refused a chain.
    Queue(QueueError),
    /// The device reported VIRTIO_BLK_S_IOERR.
    IoError,
    /// The device reported VIRTIO_BLK_S_UNSUPP.
    Unsupported,
    /// The device wrote a status byte virtio does not define.
    BadStatus(u8),
    /// The device wrote fewer bytes than the request needs (the status byte included).
    ShortCompletion { written: u32, expected: u32 },
    /// The request did not complete in time (the device is now broken).
    Timeout,
    /// The device is broken; see the reason.
    Broken(BrokenReason),
    /// The driver was unbound.
    Removed,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::NotPci => f.write_str("not a PCI device"),
            BlkError::NoDmaOps => f.write_str("no DMA ops for the device"),
            BlkError::Pci(e) => write!(f, "{e}"),
            BlkError::Mmio(e) => write!(f, "{e}"),
            BlkError::Dma(e) => write!(f, "DMA: {e}"),
            BlkError::Capability { offset, problem } => {
                write!(f, "virtio capability at {offset:#x}: {problem}")
            }
            BlkError::Missing(s) => write!(f, "no usable virtio {s} capability"),
            BlkError::ResetTimeout { status } => {
                write!(f, "device status reads {status:#x}, not 0, after reset")
            }
            BlkError::NoVersion1 { offered } => write!(
                f,
                "the device does not offer VERSION_1 (offered {offered}): legacy devices are not driven"
            ),
            BlkError::NoAccessPlatform { offered } => write!(
                f,
                "the device does not offer ACCESS_PLATFORM (offered {offered}) but sits behind a translating IOMMU: its DMA would bypass it (use iommu_platform=on)"
            ),
            BlkError::FeaturesRefused {
                offered,
                accepted,
                status,
            } => write!(
                f,
                "FEATURES_OK did not latch (status {status:#x}): offered {offered}, accepted {accepted}"
            ),
            BlkError::ConfigUnstable => {
                f.write_str("the device configuration kept changing while it was read")
            }
            BlkError::BadConfig { field, value } => {
                write!(f, "device configuration {field} = {value:#x} is unusable")
            }
            BlkError::NoQueue => f.write_str("the device has no request queue"),
            BlkError::NotifyOutOfRange {
                queue_notify_off,
                multiplier,
                length,
            } => write!(
                f,
                "queue_notify_off {queue_notify_off} × {multiplier} lies outside the {length:#x}-byte notification structure"
            ),
            BlkError::MsixVectorRefused { which } => {
                write!(f, "the device refused the {which} MSI-X vector")
            }
            BlkError::NoInterrupt => f.write_str("no interrupt: neither MSI-X nor INTx"),
            BlkError::Irq(e) => write!(f, "{e}"),
            BlkError::ReadOnly => f.write_str("the device is read-only"),
            BlkError::BadLength { len } => {
                write!(
                    f,
                    "{len} bytes is not a whole, non-zero number of 512-byte sectors"
                )
            }
            BlkError::Misaligned {
                sector,
                len,
                block_size,
            } => write!(
                f,
                "sector {sector} + {len} bytes is not aligned to the {block_size}-byte block size"
            ),
            BlkError::OutOfRange {
                sector,
                sectors,
                capacity,
            } => write!(
                f,
                "sectors {sector}+{sectors} lie beyond the end of the disk ({capacity} sectors)"
            ),
            BlkError::TooLarge { len, max } => {
                write!(f, "{len} bytes exceed the {max}-byte request limit")
            }
            BlkError::QueueFull => f.write_str("every request slot is in use"),
            BlkError::NoMemory { bytes } => write!(f, "no memory for a {bytes}-byte buffer"),
            BlkError::Queue(e) => write!(f, "virtqueue: {e}"),
            BlkError::IoError => f.write_str("the device reported an I/O error"),
            BlkError::Unsupported => f.write_str("the device does not support the request"),
            BlkError::BadStatus(s) => write!(f, "the device wrote an undefined status {s:#x}"),
            BlkError::ShortCompletion { written, expected } => write!(
                f,
                "the device wrote {written} of the {expected} bytes the request needs"
            ),
            BlkError::Timeout => f.write_str("the request timed out"),
            BlkError::Broken(r) => write!(f, "device broken: {r}"),
            BlkError::Removed => f.write_str("the device was unbound"),
        }
    }
}

impl From<PciError> for BlkError {
    fn from(e: PciError) -> Self {
        BlkError::Pci(e)
    }
}

impl From<MmioError> for BlkError {
    fn from(e: MmioError) -> Self {
        BlkError::Mmio(e)
    }
}

impl From<dma::DmaError> for BlkError {
    fn from(e: dma::DmaError) -> Self {
        BlkError::Dma(e)
    }
}

impl From<IrqError> for BlkError {
    fn from(e: IrqError) -> Self {
        BlkError::Irq(e)
    }
}

impl From<BlkError> for devmodel::ProbeError {
    fn from(e: BlkError) -> Self {
        devmodel::ProbeError::failed(e)
    }
}
