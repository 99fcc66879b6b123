//! virtio-pci and virtio-blk register layouts (Virtual I/O Device Version 1.2).
//!
//! The common configuration structure is a register block; the ISR status is a one-register
//! block; the notification and device-specific structures are addressed at run-time offsets
//! (a queue's notify offset, feature-dependent config fields), so their offsets are named here
//! and accessed through bounds-checked [`kapi::mmio::MmioRegion`] accessors.
#![allow(non_snake_case)]
// `register_structs!` checks each field's alignment with `offset % size`, which for the
// one-byte ISR block is `% 1`.
#![allow(clippy::modulo_one)]

use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! [u8,
    /// Device status field (virtio 1.2 §2.1).
    pub DEVICE_STATUS [
        /// The guest has noticed the device.
        ACKNOWLEDGE OFFSET(0) NUMBITS(1) [],
        /// The guest knows how to drive the device.
        DRIVER OFFSET(1) NUMBITS(1) [],
        /// The driver is set up and ready to drive the device.
        DRIVER_OK OFFSET(2) NUMBITS(1) [],
        /// The driver has acknowledged the features it understands; negotiation is complete.
        FEATURES_OK OFFSET(3) NUMBITS(1) [],
        /// The device hit an error it cannot recover from without a reset.
        DEVICE_NEEDS_RESET OFFSET(6) NUMBITS(1) [],
        /// The guest has given up on the device.
        FAILED OFFSET(7) NUMBITS(1) []
    ],
    /// ISR status (virtio 1.2 §4.1.4.5); reading it clears it and de-asserts INTx.
    pub ISR [
        /// A virtqueue has used buffers.
        QUEUE OFFSET(0) NUMBITS(1) [],
        /// The device configuration changed.
        CONFIG OFFSET(1) NUMBITS(1) []
    ]
];

register_structs! {
    /// `struct virtio_pci_common_cfg` (virtio 1.2 §4.1.4.3), up to `queue_device`: the fields
    /// every 1.x device has. 64-bit fields are accessed as two 32-bit halves (low half first),
    /// which every transport implementation accepts.
    pub CommonCfg {
        (0x00 => pub DEVICE_FEATURE_SELECT: ReadWrite<u32>),
        (0x04 => pub DEVICE_FEATURE: ReadOnly<u32>),
        (0x08 => pub DRIVER_FEATURE_SELECT: ReadWrite<u32>),
        (0x0c => pub DRIVER_FEATURE: ReadWrite<u32>),
        (0x10 => pub CONFIG_MSIX_VECTOR: ReadWrite<u16>),
        (0x12 => pub NUM_QUEUES: ReadOnly<u16>),
        (0x14 => pub DEVICE_STATUS: ReadWrite<u8, DEVICE_STATUS::Register>),
        (0x15 => pub CONFIG_GENERATION: ReadOnly<u8>),
        (0x16 => pub QUEUE_SELECT: ReadWrite<u16>),
        (0x18 => pub QUEUE_SIZE: ReadWrite<u16>),
        (0x1a => pub QUEUE_MSIX_VECTOR: ReadWrite<u16>),
        (0x1c => pub QUEUE_ENABLE: ReadWrite<u16>),
        (0x1e => pub QUEUE_NOTIFY_OFF: ReadOnly<u16>),
        (0x20 => pub QUEUE_DESC_LO: ReadWrite<u32>),
        (0x24 => pub QUEUE_DESC_HI: ReadWrite<u32>),
        (0x28 => pub QUEUE_DRIVER_LO: ReadWrite<u32>),
        (0x2c => pub QUEUE_DRIVER_HI: ReadWrite<u32>),
        (0x30 => pub QUEUE_DEVICE_LO: ReadWrite<u32>),
        (0x34 => pub QUEUE_DEVICE_HI: ReadWrite<u32>),
        (0x38 => @END),
    }
}

register_structs! {
    /// The ISR status structure (virtio 1.2 §4.1.4.5): one byte.
    pub IsrCfg {
        (0x0 => pub ISR: ReadOnly<u8, ISR::Register>),
        (0x1 => @END),
    }
}

/// "No MSI-X vector" for `config_msix_vector` / `queue_msix_vector` (virtio 1.2 §4.1.5.1.2).
pub const NO_VECTOR: u16 = 0xffff;

/// `struct virtio_pci_cap` (virtio 1.2 §4.1.4): byte offsets inside the PCI capability.
pub mod cap {
    /// Capability length in bytes (`cap_len`).
    pub const CAP_LEN: u16 = 2;
    /// Structure type (`cfg_type`).
    pub const CFG_TYPE: u16 = 3;
    /// BAR holding the structure.
    pub const BAR: u16 = 4;
    /// Offset of the structure in the BAR (le32).
    pub const OFFSET: u16 = 8;
    /// Length of the structure (le32).
    pub const LENGTH: u16 = 12;
    /// `notify_off_multiplier` of `struct virtio_pci_notify_cap` (le32).
    pub const NOTIFY_OFF_MULTIPLIER: u16 = 16;
    /// Size of `struct virtio_pci_cap`.
    pub const SIZE: u8 = 16;
    /// Size of `struct virtio_pci_notify_cap`.
    pub const NOTIFY_SIZE: u8 = 20;

    /// `cfg_type` values.
    pub mod cfg_type {
        /// Common configuration.
        pub const COMMON: u8 = 1;
        /// Notifications.
        pub const NOTIFY: u8 = 2;
        /// ISR status.
        pub const ISR: u8 = 3;
        /// Device-specific configuration.
        pub const DEVICE: u8 = 4;
        /// PCI configuration access (not used: the BARs are mapped).
        pub const PCI: u8 = 5;
    }
}

/// `struct virtio_blk_config` (virtio 1.2 §5.2.4): byte offsets in the device-specific
/// configuration. A field is only meaningful when its feature was negotiated.
pub mod blk_config {
    /// Capacity in 512-byte sectors (le64).
    pub const CAPACITY: u64 = 0;
    /// Largest segment (le32; VIRTIO_BLK_F_SIZE_MAX).
    pub const SIZE_MAX: u64 = 8;
    /// Most segments in one request (le32; VIRTIO_BLK_F_SEG_MAX).
    pub const SEG_MAX: u64 = 12;
    /// Logical block size in bytes (le32; VIRTIO_BLK_F_BLK_SIZE).
    pub const BLK_SIZE: u64 = 20;
}
