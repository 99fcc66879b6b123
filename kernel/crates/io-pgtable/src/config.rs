//! What a page table is configured with, and what a mapping asks for.

use addr::PAGE_SIZE;

/// Which translation regime the leaf attributes are encoded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// SMMUv3 stage 1 for a DMA domain: unprivileged-accessible (AP[1] = 1), non-global
    /// (nG = 1, tagged with the domain's ASID), never executable unless asked.
    Smmu,
    /// The kernel's own EL1 tables: privileged only (AP[1] = 0), global, never executable at EL0,
    /// executable at EL1 only when asked.
    CpuEl1,
}

/// How a block is replaced by a table when an unmap covers only part of it.
///
/// The architecture requires break-before-make (invalid entry, TLB invalidation, new entry)
/// when a block is replaced by a table, unless the implementation supports changing the block
/// size directly: SMMU `IDR3.BBML` = 2 (FEAT_BBM level 2 on a CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSplit {
    /// BBML 0 or 1. The unmap writes the block entry invalid and leaves a software marker
    /// pointing at the replacement table; [`PageTable::flush`](crate::PageTable::flush) links
    /// that table only after the caller's invalidation has completed. Until then the rest of
    /// the block faults (the cost of break-before-make), and so does anything `map` puts into
    /// that block meanwhile: callers flush right after the unmap, before mapping again.
    BreakBeforeMake,
    /// BBML 2. The unmap replaces the block with a fully built table in one 64-bit store; the
    /// rest of the block stays mapped throughout.
    Direct,
}

impl BlockSplit {
    /// The strategy an SMMU with this `IDR3.BBML` value allows.
    pub const fn from_smmu_bbml(bbml: u32) -> Self {
        if bbml >= 2 {
            BlockSplit::Direct
        } else {
            BlockSplit::BreakBeforeMake
        }
    }
}

/// The leaf sizes `map` may use, as a bitmap of sizes in bytes (bit 12 = 4 KiB, 21 = 2 MiB,
/// 30 = 1 GiB), like an IOMMU domain's page-size bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSizes(pub u64);

impl PageSizes {
    /// 4 KiB pages only.
    pub const PAGES_ONLY: PageSizes = PageSizes(PAGE_SIZE);
    /// 4 KiB pages and 2 MiB blocks.
    pub const UP_TO_2M: PageSizes = PageSizes(PAGE_SIZE | (2 << 20));
    /// 4 KiB pages, 2 MiB and 1 GiB blocks.
    pub const ALL: PageSizes = PageSizes(PAGE_SIZE | (2 << 20) | (1 << 30));

    /// True when leaves of `size` bytes may be used.
    pub const fn contains(self, size: u64) -> bool {
        self.0 & size != 0
    }
}

/// A page table's shape and encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Leaf attribute encoding.
    pub flavour: Flavour,
    /// Input address bits (IAS): 25..=48. 48 gives a 4-level walk starting at level 0; the
    /// SMMU's CD takes `T0SZ = 64 - input_bits`.
    pub input_bits: u32,
    /// Output address bits (OAS, from SMMU IDR5 or ID_AA64MMFR0_EL1.PARange): 32..=48.
    pub output_bits: u32,
    /// Leaf sizes `map` may use; must include 4 KiB.
    pub page_sizes: PageSizes,
    /// How partial unmaps of blocks are done.
    pub block_split: BlockSplit,
}

impl Config {
    /// An SMMUv3 stage-1 DMA domain: 48-bit IOVAs, every leaf size.
    pub const fn smmu(output_bits: u32, block_split: BlockSplit) -> Self {
        Self {
            flavour: Flavour::Smmu,
            input_bits: 48,
            output_bits,
            page_sizes: PageSizes::ALL,
            block_split,
        }
    }

    /// Kernel EL1 tables: 48-bit virtual addresses, every leaf size.
    pub const fn cpu_el1(output_bits: u32, block_split: BlockSplit) -> Self {
        Self {
            flavour: Flavour::CpuEl1,
            input_bits: 48,
            output_bits,
            page_sizes: PageSizes::ALL,
            block_split,
        }
    }
}

/// Memory type of a mapping: selects AttrIndx. The indices are the kernel's MAIR layout
/// (`boot::mair`), which the SMMU driver must program into each context descriptor's MAIR too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryType {
    /// Normal, inner/outer write-back cacheable (MAIR index 1). DMA memory on a coherent SMMU.
    NormalWriteBack,
    /// Normal, non-cacheable (MAIR index 2).
    NormalNonCacheable,
    /// Device-nGnRE (MAIR index 0): MMIO, e.g. another device's doorbell.
    Device,
}

impl MemoryType {
    /// AttrIndx value: must match `boot::mair`.
    pub const fn attr_index(self) -> u64 {
        match self {
            MemoryType::Device => 0,
            MemoryType::NormalWriteBack => 1,
            MemoryType::NormalNonCacheable => 2,
        }
    }
}

/// Access rights and memory type of a mapping. Stage-1 entries are always readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prot {
    /// Writes allowed (AP[2] = 0).
    pub writable: bool,
    /// Instruction fetches allowed (XN clear). Never combined with `writable` or Device memory.
    pub executable: bool,
    /// Memory type.
    pub memory: MemoryType,
}

impl Prot {
    /// Read-only, not executable.
    pub const fn read_only(memory: MemoryType) -> Self {
        Self {
            writable: false,
            executable: false,
            memory,
        }
    }

    /// Read-write, not executable.
    pub const fn read_write(memory: MemoryType) -> Self {
        Self {
            writable: true,
            executable: false,
            memory,
        }
    }

    /// The same rights plus instruction fetch.
    pub const fn executable(self) -> Self {
        Self {
            executable: true,
            ..self
        }
    }
}
