//! Feature bits (virtio 1.2 §5.2.3 for the block device, §6 for the reserved bits) and the
//! negotiation policy: what this driver accepts from what a device offers.

use core::fmt;

use crate::error::BlkError;

/// Feature bit numbers.
pub mod bit {
    /// Maximum size of any single segment is in `size_max`.
    pub const SIZE_MAX: u32 = 1;
    /// Maximum number of segments in a request is in `seg_max`.
    pub const SEG_MAX: u32 = 2;
    /// Disk-style geometry is in `geometry`.
    pub const GEOMETRY: u32 = 4;
    /// The device is read-only.
    pub const RO: u32 = 5;
    /// Block size of the disk is in `blk_size`.
    pub const BLK_SIZE: u32 = 6;
    /// Cache flush command support.
    pub const FLUSH: u32 = 9;
    /// Topology information is available.
    pub const TOPOLOGY: u32 = 10;
    /// The device can toggle its cache between writeback and writethrough.
    pub const CONFIG_WCE: u32 = 11;
    /// More than one virtqueue.
    pub const MQ: u32 = 12;
    /// Discard command support.
    pub const DISCARD: u32 = 13;
    /// Write-zeroes command support.
    pub const WRITE_ZEROES: u32 = 14;
    /// Indirect descriptors.
    pub const INDIRECT_DESC: u32 = 28;
    /// `used_event` / `avail_event` notification suppression.
    pub const EVENT_IDX: u32 = 29;
    /// Compliance with virtio 1.x (not the legacy interface).
    pub const VERSION_1: u32 = 32;
    /// The device accesses memory through the platform's DMA translation (an IOMMU): the
    /// driver hands it bus addresses from the DMA API, never physical addresses.
    pub const ACCESS_PLATFORM: u32 = 33;
    /// Packed virtqueues.
    pub const RING_PACKED: u32 = 34;
    /// Buffers are used in the order they were made available.
    pub const IN_ORDER: u32 = 35;
    /// Memory accesses by driver and device are ordered as the platform describes: the driver
    /// must use the platform's (outer-shareable) barriers, which this driver always does.
    pub const ORDER_PLATFORM: u32 = 36;
    /// Single root I/O virtualization.
    pub const SR_IOV: u32 = 37;
    /// Extra data in device notifications.
    pub const NOTIFICATION_DATA: u32 = 38;
    /// Virtqueue reset.
    pub const RING_RESET: u32 = 40;
}

const NAMES: [(u32, &str); 21] = [
    (bit::SIZE_MAX, "SIZE_MAX"),
    (bit::SEG_MAX, "SEG_MAX"),
    (bit::GEOMETRY, "GEOMETRY"),
    (bit::RO, "RO"),
    (bit::BLK_SIZE, "BLK_SIZE"),
    (bit::FLUSH, "FLUSH"),
    (bit::TOPOLOGY, "TOPOLOGY"),
    (bit::CONFIG_WCE, "CONFIG_WCE"),
    (bit::MQ, "MQ"),
    (bit::DISCARD, "DISCARD"),
    (bit::WRITE_ZEROES, "WRITE_ZEROES"),
    (bit::INDIRECT_DESC, "INDIRECT_DESC"),
    (bit::EVENT_IDX, "EVENT_IDX"),
    (bit::VERSION_1, "VERSION_1"),
    (bit::ACCESS_PLATFORM, "ACCESS_PLATFORM"),
    (bit::RING_PACKED, "RING_PACKED"),
    (bit::IN_ORDER, "IN_ORDER"),
    (bit::ORDER_PLATFORM, "ORDER_PLATFORM"),
    (bit::SR_IOV, "SR_IOV"),
    (bit::NOTIFICATION_DATA, "NOTIFICATION_DATA"),
    (bit::RING_RESET, "RING_RESET"),
];

/// A set of feature bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features(pub u64);

impl Features {
    /// The set of the given bits.
    pub const fn of(bits: &[u32]) -> Self {
        let mut v = 0;
        let mut i = 0;
        while i < bits.len() {
            v |= 1 << bits[i];
            i += 1;
        }
        Features(v)
    }

    /// True when `bit` is in the set.
    pub const fn has(self, bit: u32) -> bool {
        bit < 64 && self.0 & (1 << bit) != 0
    }

    /// The bits in both sets.
    pub const fn and(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    /// Low 32 bits (feature select 0).
    pub const fn low(self) -> u32 {
        self.0 as u32
    }

    /// High 32 bits (feature select 1).
    pub const fn high(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// From the two 32-bit words a device reports.
    pub const fn from_words(low: u32, high: u32) -> Self {
        Features((high as u64) << 32 | low as u64)
    }
}

/// `0x130000064 (VERSION_1 ACCESS_PLATFORM RO BLK_SIZE)`: the value, then the bits by name
/// (unnamed ones as `bit N`).
impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} (", self.0)?;
        let mut first = true;
        for b in 0..64 {
            if !self.has(b) {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            match NAMES.iter().find(|(n, _)| *n == b) {
                Some((_, name)) => f.write_str(name)?,
                None => write!(f, "bit {b}")?,
            }
        }
        if first {
            f.write_str("none")?;
        }
        f.write_str(")")
    }
}

/// Everything this driver knows how to use. Left out on purpose: MQ (one queue is enough),
/// INDIRECT_DESC / EVENT_IDX / RING_PACKED / IN_ORDER (the split queue here does not implement
/// them), DISCARD / WRITE_ZEROES / CONFIG_WCE / GEOMETRY / TOPOLOGY (not used).
pub const DRIVER_FEATURES: Features = Features::of(&[
    bit::SIZE_MAX,
    bit::SEG_MAX,
    bit::RO,
    bit::BLK_SIZE,
    bit::FLUSH,
    bit::VERSION_1,
    bit::ACCESS_PLATFORM,
    bit::ORDER_PLATFORM,
]);

/// The features to accept from `offered`.
///
/// `translated` says whether the device's DMA goes through an IOMMU domain (the DMA API hands
/// out IOVAs). A device that does not offer ACCESS_PLATFORM bypasses the platform's DMA
/// translation and would take those IOVAs for physical addresses: it is refused rather than
/// let loose on memory. VERSION_1 is required (this is a modern-only driver; without it the
/// device expects the legacy interface).
pub fn negotiate(offered: Features, translated: bool) -> Result<Features, BlkError> {
    if !offered.has(bit::VERSION_1) {
        return Err(BlkError::NoVersion1 { offered });
    }
    if translated && !offered.has(bit::ACCESS_PLATFORM) {
        return Err(BlkError::NoAccessPlatform { offered });
    }
    Ok(offered.and(DRIVER_FEATURES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// What QEMU 10.0's virtio-blk-pci offers with `iommu_platform=on` on a read-only drive.
    const QEMU_RO: Features = Features::of(&[
        bit::SEG_MAX,
        bit::GEOMETRY,
        bit::RO,
        bit::BLK_SIZE,
        bit::FLUSH,
        bit::TOPOLOGY,
        bit::CONFIG_WCE,
        bit::DISCARD,
        bit::WRITE_ZEROES,
        bit::INDIRECT_DESC,
        bit::EVENT_IDX,
        bit::VERSION_1,
        bit::ACCESS_PLATFORM,
    ]);

    #[test]
    fn access_platform_and_version_1_are_accepted_and_the_rest_filtered() {
        let got = negotiate(QEMU_RO, true).unwrap();
        assert_eq!(
            got,
            Features::of(&[
                bit::SEG_MAX,
                bit::RO,
                bit::BLK_SIZE,
                bit::FLUSH,
                bit::VERSION_1,
                bit::ACCESS_PLATFORM
            ])
        );
        assert!(!got.has(bit::EVENT_IDX) && !got.has(bit::INDIRECT_DESC));
    }

    #[test]
    fn a_device_without_version_1_is_refused() {
        let legacy = Features::of(&[bit::SEG_MAX, bit::BLK_SIZE]);
        assert_eq!(
            negotiate(legacy, false),
            Err(BlkError::NoVersion1 { offered: legacy })
        );
    }

    #[test]
    fn no_access_platform_is_refused_only_behind_a_translating_iommu() {
        let bypass = Features::of(&[bit::VERSION_1, bit::BLK_SIZE]);
        assert_eq!(
            negotiate(bypass, true),
            Err(BlkError::NoAccessPlatform { offered: bypass })
        );
        assert_eq!(negotiate(bypass, false), Ok(bypass));
    }

    #[test]
    fn access_platform_is_accepted_even_for_direct_dma() {
        let f = Features::of(&[bit::VERSION_1, bit::ACCESS_PLATFORM]);
        assert_eq!(negotiate(f, false), Ok(f));
    }

    #[test]
    fn features_print_by_name() {
        assert_eq!(
            Features::of(&[bit::RO, bit::VERSION_1, bit::ACCESS_PLATFORM, 50]).to_string(),
            "0x4000300000020 (RO VERSION_1 ACCESS_PLATFORM bit 50)"
        );
        assert_eq!(Features(0).to_string(), "0x0 (none)");
        assert_eq!(Features::from_words(0x20, 3), Features(0x3_0000_0020));
        assert_eq!((QEMU_RO.low(), QEMU_RO.high()), (QEMU_RO.0 as u32, 3));
    }

    proptest::proptest! {
        /// Whatever a device offers, nothing outside the driver's set and the offer is accepted.
        #[test]
        fn accepted_is_a_subset_of_offered_and_known(offered: u64, translated: bool) {
            if let Ok(got) = negotiate(Features(offered), translated) {
                proptest::prop_assert_eq!(got.0 & !offered, 0);
                proptest::prop_assert_eq!(got.0 & !DRIVER_FEATURES.0, 0);
                proptest::prop_assert!(got.has(bit::VERSION_1));
            }
        }
    }
}
