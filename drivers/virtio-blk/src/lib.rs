//! virtio-blk on modern virtio-pci.
//!
//! # Resources
//! - Virtual I/O Device (VIRTIO) Version 1.2: §2.7 split virtqueues, §4.1 virtio over PCI,
//!   §5.2 block device, §6 reserved feature bits (VERSION_1 = 32, ACCESS_PLATFORM = 33)
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod virtqueue;
