//! Block requests (virtio 1.2 §5.2.6): the header the device reads, the status byte it writes,
//! the checks of a request against the disk's limits, and of a completion against what the
//! request allows. Pure functions.

use crate::error::{BlkError, BrokenReason};

/// Sector size of the protocol: always 512 bytes, whatever the disk's block size (§5.2.6).
pub const SECTOR_SIZE: u64 = 512;
/// Length of `struct virtio_blk_req`'s header: type, reserved, sector.
pub const HEADER_LEN: u32 = 16;
/// Length of a GET_ID answer (`VIRTIO_BLK_ID_BYTES`).
pub const ID_BYTES: usize = 20;
/// The largest request this driver builds: big enough to stream a disk efficiently, small
/// enough that a few in flight fit the kernel heap comfortably.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Request types (`VIRTIO_BLK_T_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors (`VIRTIO_BLK_T_IN`).
    In,
    /// Write sectors (`VIRTIO_BLK_T_OUT`).
    Out,
    /// Flush the device's write cache (`VIRTIO_BLK_T_FLUSH`).
    Flush,
    /// Read the device's ID string (`VIRTIO_BLK_T_GET_ID`).
    GetId,
}

impl RequestType {
    /// The `type` field.
    pub const fn code(self) -> u32 {
        match self {
            RequestType::In => 0,
            RequestType::Out => 1,
            RequestType::Flush => 4,
            RequestType::GetId => 8,
        }
    }

    /// True when the device writes the data buffer (otherwise it reads it, or there is none).
    pub const fn device_writes_data(self) -> bool {
        matches!(self, RequestType::In | RequestType::GetId)
    }
}

/// Status values (`VIRTIO_BLK_S_*`).
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Request unsupported by the device.
    pub const UNSUPP: u8 = 2;
}

/// The request header: le32 type, le32 reserved, le64 sector.
pub fn encode_header(kind: RequestType, sector: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(&kind.code().to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

/// What a status byte means.
pub fn decode_status(s: u8) -> Result<(), BlkError> {
    match s {
        status::OK => Ok(()),
        status::IOERR => Err(BlkError::IoError),
        status::UNSUPP => Err(BlkError::Unsupported),
        other => Err(BlkError::BadStatus(other)),
    }
}

/// How a completion turned out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request's own result (success or a device-reported error).
    Request(Result<(), BlkError>),
    /// The device broke the protocol: stop trusting it.
    Broken(BrokenReason),
}

/// Judges a completion: `written` is the used element's `len`, `writable` the bytes of the
/// request's device-writable buffers (data for reads, then the status byte), `status` the
/// status byte as it is now in memory.
///
/// The status byte is the last writable byte, so it is only meaningful when the device says
/// it wrote every writable byte (§2.7.8: the driver must not rely on anything beyond `len`).
/// A `len` beyond the buffers is impossible for a correct device.
pub fn judge(written: u32, writable: u32, status: u8) -> Outcome {
    if written > writable {
        return Outcome::Broken(BrokenReason::UsedLengthOverflow { written, writable });
    }
    if written < writable {
        return Outcome::Request(Err(BlkError::ShortCompletion {
            written,
            expected: writable,
        }));
    }
    Outcome::Request(decode_status(status))
}

/// What the device's configuration allows a request to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Logical block size in bytes (512 unless VIRTIO_BLK_F_BLK_SIZE says otherwise).
    pub block_size: u32,
    /// Largest data segment (VIRTIO_BLK_F_SIZE_MAX), if the device has a limit.
    pub size_max: Option<u32>,
    /// Most data segments per request: `seg_max` (VIRTIO_BLK_F_SEG_MAX) and what the queue
    /// can hold besides the header and status descriptors, whichever is lower.
    pub max_segments: u32,
    /// VIRTIO_BLK_F_RO.
    pub read_only: bool,
}

impl Limits {
    /// Checks the configuration values the driver depends on.
    pub fn validate(&self) -> Result<(), BlkError> {
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(512..=65536).contains(&bs) {
            return Err(BlkError::BadConfig {
                field: "blk_size",
                value: u64::from(bs),
            });
        }
        if let Some(0) = self.size_max {
            return Err(BlkError::BadConfig {
                field: "size_max",
                value: 0,
            });
        }
        if self.max_segments == 0 {
            return Err(BlkError::BadConfig {
                field: "seg_max",
                value: 0,
            });
        }
        Ok(())
    }

    /// The largest data length of one request, a multiple of the block size.
    pub fn max_transfer(&self) -> usize {
        let by_segments = match self.size_max {
            Some(s) => (s as usize).saturating_mul(self.max_segments as usize),
            None => MAX_REQUEST_BYTES,
        };
        let max = by_segments.min(MAX_REQUEST_BYTES);
        max - max % self.block_size.max(1) as usize
    }

    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity.saturating_mul(SECTOR_SIZE)
    }

    /// Checks a read or write of `len` bytes at `sector`.
    pub fn check(&self, kind: RequestType, sector: u64, len: usize) -> Result<(), BlkError> {
        if kind == RequestType::Out && self.read_only {
            return Err(BlkError::ReadOnly);
        }
        self.check_range(sector, len as u64)?;
        self.check_request_size(len)
    }

    /// Checks that `len` bytes at `sector` are whole, block-aligned and on the disk (a range
    /// of any size: several requests may cover it).
    pub fn check_range(&self, sector: u64, len: u64) -> Result<(), BlkError> {
        let bad_len = || BlkError::BadLength {
            len: usize::try_from(len).unwrap_or(usize::MAX),
        };
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(bad_len());
        }
        let per_block = u64::from(self.block_size) / SECTOR_SIZE;
        if !sector.is_multiple_of(per_block) || !len.is_multiple_of(self.block_size.into()) {
            return Err(BlkError::Misaligned {
                sector,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                block_size: self.block_size,
            });
        }
        let sectors = len / SECTOR_SIZE;
        if sector
            .checked_add(sectors)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(BlkError::OutOfRange {
                sector,
                sectors,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Checks that one request may carry `len` bytes.
    pub fn check_request_size(&self, len: usize) -> Result<(), BlkError> {
        if len == 0 || !(len as u64).is_multiple_of(u64::from(self.block_size)) {
            return Err(BlkError::BadLength { len });
        }
        let max = self.max_transfer();
        if len > max {
            return Err(BlkError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Splits a data buffer of `len` bytes at bus address `addr` into segments of at most
    /// `size_max` bytes: (address, length) pairs.
    pub fn segments(&self, addr: u64, len: usize) -> impl Iterator<Item = (u64, u32)> {
        let step = self
            .size_max
            .map_or(MAX_REQUEST_BYTES as u64, u64::from)
            .min(MAX_REQUEST_BYTES as u64);
        let len = len as u64;
        (0..len.div_ceil(step)).map(move |i| {
            let off = i * step;
            (addr + off, (len - off).min(step) as u32)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn limits() -> Limits {
        Limits {
            capacity: 131072,
            block_size: 512,
            size_max: None,
            max_segments: 126,
            read_only: false,
        }
    }

    #[test]
    fn headers_are_little_endian_type_reserved_sector() {
        assert_eq!(
            encode_header(RequestType::In, 0x0102_0304_0506_0708),
            [0, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(encode_header(RequestType::Out, 1)[0..4], [1, 0, 0, 0]);
        assert_eq!(encode_header(RequestType::Flush, 0)[0..4], [4, 0, 0, 0]);
        assert_eq!(encode_header(RequestType::GetId, 0)[0..4], [8, 0, 0, 0]);
        assert!(RequestType::In.device_writes_data() && RequestType::GetId.device_writes_data());
        assert!(!RequestType::Out.device_writes_data() && !RequestType::Flush.device_writes_data());
    }

    #[test]
    fn status_bytes_decode() {
        assert_eq!(decode_status(0), Ok(()));
        assert_eq!(decode_status(1), Err(BlkError::IoError));
        assert_eq!(decode_status(2), Err(BlkError::Unsupported));
        assert_eq!(decode_status(0xff), Err(BlkError::BadStatus(0xff)));
    }

    #[test]
    fn completions_are_judged_by_length_then_status() {
        assert_eq!(judge(4097, 4097, 0), Outcome::Request(Ok(())));
        assert_eq!(judge(1, 1, 1), Outcome::Request(Err(BlkError::IoError)));
        assert_eq!(
            judge(4096, 4097, 0),
            Outcome::Request(Err(BlkError::ShortCompletion {
                written: 4096,
                expected: 4097
            }))
        );
        assert_eq!(
            judge(0, 1, 0),
            Outcome::Request(Err(BlkError::ShortCompletion {
                written: 0,
                expected: 1
            }))
        );
        assert_eq!(
            judge(8193, 4097, 0),
            Outcome::Broken(BrokenReason::UsedLengthOverflow {
                written: 8193,
                writable: 4097
            })
        );
        assert_eq!(
            judge(1, 1, 7),
            Outcome::Request(Err(BlkError::BadStatus(7)))
        );
    }

    #[test]
    fn requests_are_checked_against_the_disk() {
        let l = limits();
        assert_eq!(l.check(RequestType::In, 0, 512), Ok(()));
        assert_eq!(l.check(RequestType::In, 131071, 512), Ok(()));
        assert_eq!(
            l.check(RequestType::In, 131071, 1024),
            Err(BlkError::OutOfRange {
                sector: 131071,
                sectors: 2,
                capacity: 131072
            })
        );
        assert!(matches!(
            l.check(RequestType::In, u64::MAX, 512),
            Err(BlkError::OutOfRange { .. })
        ));
        assert_eq!(
            l.check(RequestType::In, 0, 0),
            Err(BlkError::BadLength { len: 0 })
        );
        assert_eq!(
            l.check(RequestType::In, 0, 100),
            Err(BlkError::BadLength { len: 100 })
        );
        assert_eq!(l.check_range(0, 1 << 26), Ok(()));
        assert!(l.check_range(0, (1 << 26) + 512).is_err());
        assert_eq!(l.check_request_size(8192), Ok(()));
        assert_eq!(
            l.check(RequestType::In, 0, MAX_REQUEST_BYTES + 512),
            Err(BlkError::TooLarge {
                len: MAX_REQUEST_BYTES + 512,
                max: MAX_REQUEST_BYTES
            })
        );
        let ro = Limits {
            read_only: true,
            ..l
        };
        assert_eq!(ro.check(RequestType::Out, 0, 512), Err(BlkError::ReadOnly));
        assert_eq!(ro.check(RequestType::In, 0, 512), Ok(()));
    }

    #[test]
    fn block_size_alignment_is_enforced() {
        let l = Limits {
            block_size: 4096,
            ..limits()
        };
        assert_eq!(l.check(RequestType::In, 8, 4096), Ok(()));
        assert_eq!(
            l.check(RequestType::In, 1, 4096),
            Err(BlkError::Misaligned {
                sector: 1,
                len: 4096,
                block_size: 4096
            })
        );
        assert!(matches!(
            l.check(RequestType::In, 8, 512),
            Err(BlkError::Misaligned { .. })
        ));
    }

    #[test]
    fn size_max_and_seg_max_bound_a_request_and_split_it() {
        let l = Limits {
            size_max: Some(65536),
            max_segments: 4,
            ..limits()
        };
        assert_eq!(l.max_transfer(), 262144);
        assert!(matches!(
            l.check(RequestType::In, 0, 262144 + 512),
            Err(BlkError::TooLarge { max: 262144, .. })
        ));
        let segs: Vec<_> = l.segments(0x1000, 65536 * 2 + 512).collect();
        assert_eq!(segs, [(0x1000, 65536), (0x11000, 65536), (0x21000, 512)]);
        assert_eq!(
            limits().segments(0x10, 4096).collect::<Vec<_>>(),
            [(0x10, 4096)]
        );
        // An odd size_max never yields a transfer that is not a whole number of blocks.
        let odd = Limits {
            size_max: Some(1000),
            max_segments: 3,
            ..limits()
        };
        assert_eq!(odd.max_transfer(), 2560);
    }

    #[test]
    fn unusable_configuration_values_are_refused() {
        for bs in [0, 256, 513, 3072, 1 << 17] {
            let l = Limits {
                block_size: bs,
                ..limits()
            };
            assert!(matches!(
                l.validate(),
                Err(BlkError::BadConfig {
                    field: "blk_size",
                    ..
                })
            ));
        }
        let l = Limits {
            size_max: Some(0),
            ..limits()
        };
        assert!(l.validate().is_err());
        let l = Limits {
            max_segments: 0,
            ..limits()
        };
        assert!(l.validate().is_err());
        assert_eq!(limits().validate(), Ok(()));
    }

    proptest::proptest! {
        /// Segments cover the buffer exactly, in order, none larger than size_max.
        #[test]
        fn segments_tile_the_buffer(addr in 0u64..1 << 40, len in 1usize..(1 << 22), size_max in 512u32..(1 << 20)) {
            let l = Limits { size_max: Some(size_max), ..limits() };
            let mut next = addr;
            for (a, n) in l.segments(addr, len) {
                proptest::prop_assert_eq!(a, next);
                proptest::prop_assert!(n > 0 && n <= size_max);
                next += u64::from(n);
            }
            proptest::prop_assert_eq!(next, addr + len as u64);
        }
    }
}
