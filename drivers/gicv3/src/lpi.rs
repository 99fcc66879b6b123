//! Locality-specific peripheral interrupts (LPIs) on the boot CPU's redistributor.
//!
//! LPIs are message-based interrupts with INTIDs from 8192 up. Their state lives in memory rather
//! than in registers (IHI 0069 §5.1):
//! - the **configuration table** (GICR_PROPBASER), one byte per LPI: priority and enable;
//! - the **pending table** (GICR_PENDBASER), one bit per INTID, 64 KiB aligned, owned by the GIC.
//!
//! The redistributor may cache configuration bytes, so a change to one is only guaranteed to take
//! effect after an invalidation (the ITS `INV` command, then `SYNC`).
//!
//! # Sizing
//! The tables cover `2^id_bits` INTIDs. This kernel uses [`LpiConfig::default`]'s 14 bits: the
//! architectural minimum when LPIs exist (GICD_TYPER.IDbits >= 13), and also the smallest value
//! QEMU accepts (it ignores LPIs when GICR_PROPBASER.IDbits < 13). That gives 8192 LPIs
//! (INTIDs 8192..16383), an 8 KiB configuration table and a 2 KiB pending table (allocated as
//! 64 KiB to get the required alignment).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use kapi::PhysAddr;

use crate::regs::{GICR_PENDBASER, GICR_PROPBASER};

/// First LPI INTID.
pub const LPI_BASE: u32 = 8192;

/// Smallest LPI INTID width the architecture allows when LPIs are implemented.
pub const MIN_LPI_ID_BITS: u32 = 14;

/// Alignment (and so minimum allocation) of the LPI pending table (GICR_PENDBASER bits [51:16]).
pub const PENDING_TABLE_ALIGN: u64 = 0x1_0000;

/// Configuration-table byte: bit 1 is RES1 (§5.1.1, "LPI Configuration tables").
const CONFIG_RES1: u8 = 1 << 1;
/// Configuration-table byte: bit 0 enables the LPI.
const CONFIG_ENABLE: u8 = 1 << 0;
/// Configuration-table byte: priority bits [7:2]; the two low priority bits are always 0.
const CONFIG_PRIORITY_MASK: u8 = 0xfc;

/// How many INTID bits the LPI tables cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpiConfig {
    /// INTIDs covered by the tables are `0 .. 2^id_bits`; LPIs are `8192 .. 2^id_bits`.
    /// From [`MIN_LPI_ID_BITS`] up to GICD_TYPER.IDbits + 1; anything else is refused.
    pub id_bits: u32,
}

impl Default for LpiConfig {
    fn default() -> Self {
        LpiConfig {
            id_bits: MIN_LPI_ID_BITS,
        }
    }
}

/// The LPI configuration byte for `priority` (bits [1:0] dropped) and `enabled`.
pub fn config_byte(priority: u8, enabled: bool) -> u8 {
    (priority & CONFIG_PRIORITY_MASK) | CONFIG_RES1 | if enabled { CONFIG_ENABLE } else { 0 }
}

/// Whether a configuration byte has its enable bit set.
pub fn config_enabled(byte: u8) -> bool {
    byte & CONFIG_ENABLE != 0
}

/// Bytes in the configuration table: one per LPI, i.e. `2^id_bits - 8192` (the table starts at
/// LPI 8192, not at INTID 0).
pub fn config_table_bytes(id_bits: u32) -> u64 {
    (1u64 << id_bits) - u64::from(LPI_BASE)
}

/// Bytes in the pending table: one bit per INTID from 0 (the first 1 KiB, INTIDs < 8192, is
/// IMPLEMENTATION DEFINED scratch space the GIC may use and must start zeroed).
pub fn pending_table_bytes(id_bits: u32) -> u64 {
    (1u64 << id_bits) / 8
}

/// Bytes to allocate for the pending table: its size rounded up to the 64 KiB alignment, so a
/// naturally aligned allocation is correctly aligned.
pub fn pending_table_alloc_bytes(id_bits: u32) -> u64 {
    pending_table_bytes(id_bits).max(PENDING_TABLE_ALIGN)
}

/// How the GIC accesses a table in memory, as agreed by reading back the base register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableAccess {
    /// Inner-shareable, write-back cacheable: the GIC snoops the CPU caches.
    Coherent,
    /// Non-shareable, non-cacheable: the CPU must clean its caches to the point of coherency
    /// after writing anything the GIC reads.
    NonCoherent,
}

impl fmt::Display for TableAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableAccess::Coherent => "coherent",
            TableAccess::NonCoherent => "non-coherent",
        })
    }
}

/// GICR_PROPBASER for a configuration table at `pa` covering `id_bits`.
pub fn propbaser_value(pa: PhysAddr, id_bits: u32, access: TableAccess) -> u64 {
    let attrs = match access {
        TableAccess::Coherent => {
            GICR_PROPBASER::Shareability::InnerShareable + GICR_PROPBASER::InnerCache::RaWaWb
        }
        TableAccess::NonCoherent => {
            GICR_PROPBASER::Shareability::NonShareable + GICR_PROPBASER::InnerCache::NonCacheable
        }
    };
    (GICR_PROPBASER::Physical_Address.val(pa.0 >> 12)
        + GICR_PROPBASER::IDbits.val(u64::from(id_bits - 1))
        + GICR_PROPBASER::OuterCache::SameAsInner
        + attrs)
        .value
}

/// GICR_PENDBASER for a zeroed pending table at `pa` (PTZ set: the GIC need not scan it).
pub fn pendbaser_value(pa: PhysAddr, access: TableAccess) -> u64 {
    let attrs = match access {
        TableAccess::Coherent => {
            GICR_PENDBASER::Shareability::InnerShareable + GICR_PENDBASER::InnerCache::RaWaWb
        }
        TableAccess::NonCoherent => {
            GICR_PENDBASER::Shareability::NonShareable + GICR_PENDBASER::InnerCache::NonCacheable
        }
    };
    (GICR_PENDBASER::Physical_Address.val(pa.0 >> 16)
        + GICR_PENDBASER::PTZ::SET
        + GICR_PENDBASER::OuterCache::SameAsInner
        + attrs)
        .value
}

/// What a base register's read-back shareability says about the GIC's access to the table: any
/// shareable domain means it snoops; non-shareable means software keeps caches clean.
pub fn access_from_shareability(shareability: u64) -> TableAccess {
    if shareability == 0 {
        TableAccess::NonCoherent
    } else {
        TableAccess::Coherent
    }
}

/// Which LPI INTIDs are in use: a bitmap over `LPI_BASE .. LPI_BASE + count`, next-fit search so
/// a just-freed INTID is not handed out again at once (a late interrupt on it then stays
/// unclaimed instead of reaching the wrong handler).
#[derive(Clone, Debug)]
pub struct LpiAllocator {
    words: Vec<u64>,
    count: u32,
    used: u32,
    next: u32,
}

impl LpiAllocator {
    /// An allocator for `count` LPIs starting at INTID 8192.
    pub fn new(count: u32) -> Self {
        LpiAllocator {
            words: vec![0; count.div_ceil(64) as usize],
            count,
            used: 0,
            next: 0,
        }
    }

    /// Number of LPIs managed.
    pub fn capacity(&self) -> u32 {
        self.count
    }

    /// Number of LPIs handed out.
    pub fn in_use(&self) -> u32 {
        self.used
    }

    fn bit(&self, i: u32) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, i: u32, v: bool) {
        let w = &mut self.words[(i / 64) as usize];
        if v {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// A free LPI INTID, `None` when all are in use.
    pub fn alloc(&mut self) -> Option<u32> {
        if self.used == self.count {
            return None;
        }
        for k in 0..self.count {
            let i = (self.next + k) % self.count;
            if !self.bit(i) {
                self.set_bit(i, true);
                self.used += 1;
                self.next = (i + 1) % self.count;
                return Some(LPI_BASE + i);
            }
        }
        None
    }

    /// Returns `intid`; false if it was not allocated (or not an LPI of this allocator).
    pub fn free(&mut self, intid: u32) -> bool {
        if !self.contains(intid) {
            return false;
        }
        let i = intid - LPI_BASE;
        if !self.bit(i) {
            return false;
        }
        self.set_bit(i, false);
        self.used -= 1;
        true
    }

    /// Whether `intid` is in this allocator's range.
    pub fn contains(&self, intid: u32) -> bool {
        intid >= LPI_BASE && intid - LPI_BASE < self.count
    }

    /// Whether `intid` is currently allocated.
    pub fn is_allocated(&self, intid: u32) -> bool {
        self.contains(intid) && self.bit(intid - LPI_BASE)
    }
}

#[cfg(test)]
mod tests;
