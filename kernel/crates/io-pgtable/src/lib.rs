//! VMSAv8-64 stage-1 translation tables with the 4 KiB granule.
//!
//! One format serves two users: the SMMUv3 driver builds a tree per DMA domain (48-bit IOVAs,
//! output size from `IDR5.OAS`, [`Flavour::Smmu`] leaves), and the kernel can build its own EL1
//! tables with the same code ([`Flavour::CpuEl1`] leaves). What differs is a [`Config`].
//!
//! - Memory goes through [`TableMemory`] (generic, no `dyn` on the hot path, no `unsafe` here);
//!   [`fake::FakeTableMemory`] backs host tests (`feature = "fakes"` for other crates' tests).
//! - [`PageTable::map`] uses 1 GiB and 2 MiB blocks wherever input, output and size allow and
//!   refuses to overwrite anything already mapped.
//! - [`PageTable::unmap`] splits blocks it only partly covers (break-before-make or direct
//!   replacement, per [`BlockSplit`]), frees tables that become empty, and never issues TLB
//!   maintenance: it fills a [`Gather`]. [`PageTable::flush`] hands the gathered
//!   [`Invalidation`] to the caller and frees the held pages only once the caller reports it
//!   completed. One invalidation per gather, not per page:
//!
//! ```text
//! let mut gather = Gather::new();
//! let unmapped = table.unmap(iova, size, &mut gather)?;
//! table.flush(gather, |inv| smmu.invalidate_range(asid, inv))?;   // TLBI + CMD_SYNC inside
//! // only now: iova_allocator.free(iova, size)
//! ```
//!
//! Table pages in use are counted ([`PageTable::tables_in_use`]) for leak checks.
//!
//! Facts used: Arm ARM DDI 0487 D8 (VMSAv8-64 translation, descriptors, break-before-make),
//! SMMUv3 IHI 0070 (CD stage-1 tables, IDR3.BBML, range invalidation).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod config;
pub mod descriptor;
mod gather;
mod memory;
mod table;

#[cfg(test)]
mod tests;

use core::fmt;

pub use addr::{Address, Iova, PAGE_SIZE, PhysAddr, Range, VirtAddr};
pub use config::{BlockSplit, Config, Flavour, MemoryType, PageSizes, Prot};
pub use gather::{Gather, Invalidation};
pub use memory::TableMemory;
#[cfg(any(test, feature = "fakes"))]
pub use memory::fake;
pub use table::{PageTable, Unflushed};

/// What went wrong in a page-table operation. Input addresses are of the table's address type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageTableError<A: Address = Iova> {
    /// `input_bits` outside 25..=48.
    UnsupportedInputBits(u32),
    /// `output_bits` outside 32..=48.
    UnsupportedOutputBits(u32),
    /// Page sizes without 4 KiB, or with sizes other than 4 KiB, 2 MiB and 1 GiB.
    UnsupportedPageSizes(PageSizes),
    /// Executable together with writable or Device memory.
    UnsupportedProt(Prot),
    /// A zero-sized map or unmap.
    ZeroSize,
    /// Input address or size not a multiple of 4 KiB.
    Misaligned {
        /// Start of the range.
        input: A,
        /// Its size in bytes.
        size: u64,
    },
    /// Output address not a multiple of 4 KiB.
    MisalignedOutput(PhysAddr),
    /// The input range does not fit in `input_bits`.
    InputOutOfRange {
        /// Start of the range.
        input: A,
        /// Its size in bytes.
        size: u64,
    },
    /// The output range does not fit in `output_bits`.
    OutputOutOfRange {
        /// Start of the range.
        output: PhysAddr,
        /// Its size in bytes.
        size: u64,
    },
    /// Part of the range is mapped already; nothing was changed.
    AlreadyMapped {
        /// First mapped address found in the range.
        input: A,
    },
    /// `TableMemory::alloc_table` failed; no mapping was changed.
    OutOfTableMemory,
    /// `TableMemory::alloc_table` returned a page the walker cannot use (unaligned, or above
    /// the output size).
    BadTablePage(PhysAddr),
    /// The gather already holds work of another page table.
    ForeignGather,
}

impl<A: Address> fmt::Display for PageTableError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageTableError::UnsupportedInputBits(bits) => {
                write!(f, "unsupported input address size: {bits} bits (25..=48)")
            }
            PageTableError::UnsupportedOutputBits(bits) => {
                write!(f, "unsupported output address size: {bits} bits (32..=48)")
            }
            PageTableError::UnsupportedPageSizes(sizes) => write!(
                f,
                "unsupported page sizes {:#x} (4 KiB required; 2 MiB, 1 GiB optional)",
                sizes.0
            ),
            PageTableError::UnsupportedProt(prot) => write!(
                f,
                "refusing an executable mapping that is writable or Device memory: {prot:?}"
            ),
            PageTableError::ZeroSize => write!(f, "zero-sized range"),
            PageTableError::Misaligned { input, size } => {
                write!(f, "range {:#x}+{size:#x} is not 4 KiB aligned", input.raw())
            }
            PageTableError::MisalignedOutput(output) => {
                write!(f, "output address {output} is not 4 KiB aligned")
            }
            PageTableError::InputOutOfRange { input, size } => write!(
                f,
                "range {:#x}+{size:#x} exceeds the input address size",
                input.raw()
            ),
            PageTableError::OutputOutOfRange { output, size } => write!(
                f,
                "output range {output}+{size:#x} exceeds the output address size"
            ),
            PageTableError::AlreadyMapped { input } => {
                write!(f, "{:#x} is already mapped", input.raw())
            }
            PageTableError::OutOfTableMemory => write!(f, "out of memory for table pages"),
            PageTableError::BadTablePage(table) => {
                write!(
                    f,
                    "table page {table} is unaligned or beyond the output size"
                )
            }
            PageTableError::ForeignGather => {
                write!(f, "gather belongs to another page table")
            }
        }
    }
}

impl<A: Address> core::error::Error for PageTableError<A> {}
