//! Device-tree bindings for a DMA-first kernel, on top of the `fdt` crate.
//!
//! [`DeviceTree::parse`] validates a flattened device tree completely (no input can panic this
//! crate or `fdt`), then indexes it; it refuses `FDT_NOP` tokens, which [`without_nops`] removes
//! (QEMU leaves them in a tree given with `-dtb`). [`Node`] handles answer the binding questions
//! a kernel asks at device enumeration and driver bind:
//!
//! | binding | accessors |
//! |---|---|
//! | basics | [`Node::path`], [`Node::status`], [`Node::compatible`], [`DeviceTree::by_phandle`], [`Node::address_cells`] |
//! | `reg`, `ranges` | [`Node::reg`] (CPU addresses), [`Node::reg_raw`], [`Node::reg_by_name`], [`Node::ranges`] |
//! | interrupts | [`Node::interrupts`], [`Node::gic_interrupts`], [`Node::gic_interrupt`], [`Node::map_interrupt`] |
//! | IOMMU | [`Node::iommus`], [`Node::iommu_map`], [`Node::iommu_for_rid`], [`Node::msi_map`], [`Node::msi_parents`] |
//! | DMA | [`Node::dma_ranges`], [`Node::dma_constraint`], [`Node::child_dma_constraint`], [`Node::dma_coherent`] |
//! | PCI host | [`Node::pci_bus_range`], [`Node::pci_domain`], [`Node::pci_windows`], [`Node::pci_intx`], [`Node::pci_child`] |
//! | reserved memory | [`Node::memory_regions`], [`Node::iommu_reserved_regions`] |
//!
//! [`dma_topology`] computes everything DMA-related for a whole blob in one call (the
//! `cargo xtask dt-dma` tool and the fuzz target use it).
//!
//! Every malformed input gives a [`DtError`]; except for blob-structure errors it names the
//! node's full path and the property: `/pcie@10000000: iommu-map: 7 cells is not a multiple
//! of 4`. The rules followed where bindings leave room are documented on each module
//! ([`dma`] has the `dma-ranges` ones).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod address;
mod blob;
pub mod dma;
pub mod error;
pub mod iommu;
pub mod irq;
pub mod pci;
pub mod reserved;
pub mod topology;
mod tree;

pub use address::{BusRange, BusRanges, RangeCells, RegEntry};
pub use blob::without_nops;
pub use dma::{DmaConstraint, DmaWindow};
pub use error::{BlobProblem, Block, DtError, Problem};
pub use iommu::{IdMap, IdMapEntry, PhandleArgs};
pub use irq::{GicIrq, IrqSpec, Trigger};
pub use pci::{PciSpace, PciWindow, pci_phys_hi};
pub use reserved::{IommuRegion, IommuRegionKind, IommuRegions};
pub use topology::{DmaNode, DmaTopology, dma_topology};
pub use tree::{DeviceTree, MAX_ADDRESS_CELLS, MAX_SPECIFIER_CELLS, Node, Status};

static BOOT_TREE: spin::Once<&'static DeviceTree<'static>> = spin::Once::new();

/// Records the device tree the machine booted with, parsed once by the kernel. Only the first
/// call has an effect.
pub fn set_boot_tree(tree: &'static DeviceTree<'static>) {
    BOOT_TREE.call_once(|| tree);
}

/// The device tree the machine booted with, for drivers that read their own node's properties
/// (`None` before the kernel parsed it, and in host tests that did not set one).
pub fn boot_tree() -> Option<&'static DeviceTree<'static>> {
    BOOT_TREE.get().copied()
}

/// Deepest node nesting accepted (the root is level 1), as libfdt's `FDT_MAX_DEPTH`.
pub const MAX_DEPTH: usize = 32;
