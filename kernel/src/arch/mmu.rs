//! The CPU's stage-1 translation tables (VMSAv8-64, 4 KiB granule, 48-bit VA, identity map).
//!
//! `boot` turns the MMU on with a coarse 1 GiB map. Once the device tree is parsed the kernel
//! first marks every RAM GiB Normal in that early map ([`early_map_ram`]), then builds the final
//! map from the DT ([`Builder`]): RAM Normal write-back and non-executable, the kernel's text
//! read-only and executable, its read-only data read-only, device registers Device-nGnRE, a guard
//! page under the boot stack, and nothing else.

use core::arch::asm;

use aarch64_cpu::registers::{TTBR0_EL1, Writeable};
use boot::mair;

const ENTRIES: usize = 512;
const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE: u64 = 1 << 1; // table (levels 0-2) or page (level 3)
const ATTR_INDX_SHIFT: u64 = 2;
const AP_RO: u64 = 1 << 7; // AP[2]: read-only
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
/// entry.S's BLOCK_NORMAL: Normal WB, inner shareable, AF, valid block.
const EARLY_NORMAL_BLOCK: u64 = (mair::NORMAL_WB << ATTR_INDX_SHIFT) | SH_INNER | AF | DESC_VALID;

/// What a region holds, which decides its attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Kernel code: read-only, executable.
    Text,
    /// Kernel read-only data.
    ReadOnly,
    /// RAM: read-write, never executable.
    ReadWrite,
    /// Device registers: Device-nGnRE, never executable.
    Device,
}

impl Kind {
    fn leaf_attrs(self) -> u64 {
        let normal = (mair::NORMAL_WB << ATTR_INDX_SHIFT) | SH_INNER | AF;
        match self {
            Kind::Text => normal | AP_RO | UXN,
            Kind::ReadOnly => normal | AP_RO | UXN | PXN,
            Kind::ReadWrite => normal | UXN | PXN,
            Kind::Device => (mair::DEVICE_NGNRE << ATTR_INDX_SHIFT) | AF | UXN | PXN,
        }
    }
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a table page.
    OutOfMemory,
    /// The range overlaps one already mapped with other attributes.
    Conflict { pa: u64 },
    /// Not page aligned or beyond the 48-bit address space.
    BadRange { pa: u64, size: u64 },
}

fn level_shift(level: usize) -> u64 {
    12 + 9 * (3 - level as u64)
}

fn table(pa: u64) -> *mut u64 {
    pa as *mut u64
}

fn read_entry(t: u64, i: usize) -> u64 {
    // SAFETY: `t` is a 4 KiB table page owned by the builder (identity-mapped RAM), `i` < 512.
    unsafe { table(t).add(i).read_volatile() }
}

fn write_entry(t: u64, i: usize, v: u64) {
    // SAFETY: as in read_entry; table pages are only written here, before or during switch-over.
    unsafe { table(t).add(i).write_volatile(v) }
}

/// Builds a fresh identity map.
pub struct Builder<'a> {
    root: u64,
    alloc_table: &'a mut dyn FnMut() -> Option<u64>,
    /// Table pages allocated (for the boot log).
    pub tables: usize,
}

impl<'a> Builder<'a> {
    /// A builder whose table pages come from `alloc_table` (zeroed 4 KiB frames).
    pub fn new(alloc_table: &'a mut dyn FnMut() -> Option<u64>) -> Result<Self, MapError> {
        let root = alloc_table().ok_or(MapError::OutOfMemory)?;
        Ok(Self {
            root,
            alloc_table,
            tables: 1,
        })
    }

    /// Identity-maps `[pa, pa+size)` as `kind`, with the largest blocks alignment allows.
    pub fn map(&mut self, pa: u64, size: u64, kind: Kind) -> Result<(), MapError> {
        let end = pa.checked_add(size).filter(|e| *e <= 1 << 48);
        if !pa.is_multiple_of(4096) || !size.is_multiple_of(4096) || end.is_none() {
            return Err(MapError::BadRange { pa, size });
        }
        self.map_at(self.root, 0, pa, size, kind.leaf_attrs())
    }

    fn map_at(
        &mut self,
        t: u64,
        level: usize,
        mut pa: u64,
        size: u64,
        attrs: u64,
    ) -> Result<(), MapError> {
        let end = pa + size;
        let shift = level_shift(level);
        let block = 1u64 << shift;
        while pa < end {
            let idx = ((pa >> shift) & 511) as usize;
            let next = ((pa >> shift) + 1) << shift;
            let chunk_end = next.min(end);
            let entry = read_entry(t, idx);
            let fits_block = pa.is_multiple_of(block) && chunk_end - pa == block;
            if level == 3 || (level >= 1 && fits_block && entry & DESC_VALID == 0) {
                let desc = pa | attrs | DESC_VALID | if level == 3 { DESC_TABLE } else { 0 };
                if entry & DESC_VALID != 0 && entry != desc {
                    return Err(MapError::Conflict { pa });
                }
                write_entry(t, idx, desc);
            } else {
                let sub = if entry & DESC_VALID == 0 {
                    let page = (self.alloc_table)().ok_or(MapError::OutOfMemory)?;
                    self.tables += 1;
                    write_entry(t, idx, page | DESC_TABLE | DESC_VALID);
                    page
                } else if entry & DESC_TABLE != 0 {
                    entry & OA_MASK
                } else {
                    // A block already covers this: fine if identical, a conflict otherwise.
                    let desc = (pa & !(block - 1)) | attrs | DESC_VALID;
                    if entry != desc {
                        return Err(MapError::Conflict { pa });
                    }
                    pa = chunk_end;
                    continue;
                };
                self.map_at(sub, level + 1, pa, chunk_end - pa, attrs)?;
            }
            pa = chunk_end;
        }
        Ok(())
    }

    /// Switches TTBR0_EL1 to the new tables and drops every cached translation.
    pub fn activate(self) {
        // Table writes must be visible to the walker before TTBR0 points at them.
        kapi::barrier::dsb_ishst();
        TTBR0_EL1.set(self.root);
        // SAFETY: TLB invalidation and barriers only drop cached translations; the new map
        // identity-maps everything the kernel is executing and touching with the same memory
        // types, so there is no window in which the running code loses its mapping.
        unsafe { asm!("isb", "tlbi vmalle1", "dsb ish", "isb", options(nostack)) };
    }
}

unsafe extern "C" {
    static early_l0: u64;
}

/// Marks the 1 GiB blocks covering `[pa, pa+size)` Normal write-back in `boot`'s early map, so the
/// heap and page-table frames can live anywhere in RAM before the final map exists.
pub fn early_map_ram(pa: u64, size: u64) {
    // SAFETY: reading the address of boot's early L0 table and its first entry (the L1 table
    // pointer that entry.S wrote); the tables are identity-mapped RAM in the kernel image.
    let l1 = unsafe { core::ptr::addr_of!(early_l0).read_volatile() } & OA_MASK;
    let first = pa >> 30;
    let last = (pa + size - 1) >> 30;
    for gib in first..=last.min(ENTRIES as u64 - 1) {
        // Same attributes entry.S gives the kernel's own GiB (BLOCK_NORMAL), executable included.
        let desc = (gib << 30) | EARLY_NORMAL_BLOCK;
        if read_entry(l1, gib as usize) == desc {
            continue;
        }
        // Break-before-make (Arm ARM D8.14.1): invalidate the old block, flush it from the TLB,
        // only then install the new attributes.
        write_entry(l1, gib as usize, 0);
        // SAFETY: barriers and a TLB flush; nothing executes from or uses this GiB yet.
        unsafe {
            asm!(
                "dsb ishst",
                "tlbi vmalle1",
                "dsb ish",
                "isb",
                options(nostack)
            )
        };
        write_entry(l1, gib as usize, desc);
        kapi::barrier::dsb_ishst();
        kapi::barrier::isb();
    }
}
