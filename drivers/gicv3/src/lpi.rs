//! Locality-specific peripheral interrupts (LPIs) on the boot CPU's redistributor.
//!
//! LPIs are message-based interrupts with INTIDs from 8192 up. Their state lives in memory rather
//! than in registers (IHI 0069 §5.1):
//! - the **configuration table** (GICR_PROPBASER), one byte per LPI: priority and enable;
//! - the **pending table** (GICR_PENDBASER), one bit per INTID, 64 KiB aligned, owned by the GIC.
//!
//! The redistributor may cache configuration bytes, so a change to one is only guaranteed to take
//! effect after an invalidation (the ITS `INV` command, then `SYNC`); see [`crate::its`].
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

use kapi::dma_mem::Frames;
use kapi::mmio::{Mmio, MmioRegion};
use kapi::sync::IrqLock;
use kapi::time::poll_until;
use kapi::{PhysAddr, platform};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

use crate::regs::{GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER, GicrRd};
use crate::{DEFAULT_PRIORITY, GicError, GicTable, HANDSHAKE_TIMEOUT};

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

/// The LPI tables of the boot CPU's redistributor and the INTIDs handed out from them.
pub struct Lpis {
    rd: Mmio<GicrRd>,
    rd_pa: PhysAddr,
    processor_number: u16,
    id_bits: u32,
    /// Configuration table and pending table; `None` only if they had to be leaked on drop.
    tables: Option<(Frames, Frames)>,
    config_access: TableAccess,
    pending_access: TableAccess,
    alloc: IrqLock<LpiAllocator>,
}

impl fmt::Debug for Lpis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lpis({} ID bits, rd {:#x})", self.id_bits, self.rd_pa.0)
    }
}

/// One line describing the LPI set-up, for the boot log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpiSummary {
    /// INTID bits covered.
    pub id_bits: u32,
    /// Number of LPIs that can be allocated.
    pub lpis: u32,
    /// Configuration table address.
    pub config_table: PhysAddr,
    /// Configuration table size in bytes.
    pub config_bytes: u64,
    /// Pending table address.
    pub pending_table: PhysAddr,
    /// Pending table allocation in bytes.
    pub pending_bytes: u64,
    /// How the GIC reads the configuration table.
    pub access: TableAccess,
}

impl fmt::Display for LpiSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} LPIs ({}-bit INTIDs), configuration table {:#x} ({} KiB), pending table {:#x} ({} KiB), {}",
            self.lpis,
            self.id_bits,
            self.config_table.0,
            self.config_bytes / 1024,
            self.pending_table.0,
            self.pending_bytes / 1024,
            self.access
        )
    }
}

impl Lpis {
    /// Programs the tables into the redistributor at `rd_offset` in `gicr` and enables LPIs.
    ///
    /// `supported_id_bits` (IDbits + 1) and `num_lpis_field` come from GICD_TYPER; the caller
    /// has checked GICD_TYPER.LPIS and GICR_TYPER.PLPIS.
    pub(crate) fn enable(
        gicr: &MmioRegion,
        rd_offset: u64,
        rd_pa: PhysAddr,
        processor_number: u16,
        supported_id_bits: u32,
        num_lpis_field: u32,
        cfg: LpiConfig,
    ) -> Result<Lpis, GicError> {
        let rd = gicr.view::<GicrRd>(rd_offset)?;
        if cfg.id_bits < MIN_LPI_ID_BITS || cfg.id_bits > supported_id_bits {
            return Err(GicError::LpiIdBits {
                requested: cfg.id_bits,
                supported: supported_id_bits,
            });
        }
        let id_bits = cfg.id_bits;

        // GICR_PROPBASER/PENDBASER may only be written while EnableLPIs is 0 (§12.11). Firmware or
        // an earlier kernel may have left it set; clearing it is IMPLEMENTATION DEFINED, so try,
        // wait for RWP, and give up if it sticks.
        if rd.CTLR.is_set(GICR_CTLR::EnableLPIs) {
            rd.CTLR.modify(GICR_CTLR::EnableLPIs::CLEAR);
            wait_rwp(&rd)?;
            if rd.CTLR.is_set(GICR_CTLR::EnableLPIs) {
                return Err(GicError::LpisAlreadyEnabled);
            }
        }

        let config_bytes = config_table_bytes(id_bits);
        let config = Frames::alloc_bytes(config_bytes).ok_or(GicError::OutOfMemory {
            table: GicTable::LpiConfiguration,
            bytes: config_bytes,
        })?;
        // Every LPI starts disabled at the default priority.
        config.fill(0, config_bytes, config_byte(DEFAULT_PRIORITY, false));
        let pending_bytes = pending_table_alloc_bytes(id_bits);
        // Frames are zeroed and naturally aligned: 64 KiB or more is 64 KiB aligned.
        let pending = Frames::alloc_bytes(pending_bytes).ok_or(GicError::OutOfMemory {
            table: GicTable::LpiPending,
            bytes: pending_bytes,
        })?;

        // Ask for coherent (shareable, cacheable) access and read back what stuck; a GIC that
        // cannot snoop reads back non-shareable, and the tables must then be non-cacheable and
        // cleaned by the CPU (§12.11, GICR_PROPBASER.Shareability).
        rd.PROPBASER
            .set(propbaser_value(config.pa(), id_bits, TableAccess::Coherent));
        let config_access =
            access_from_shareability(rd.PROPBASER.read(GICR_PROPBASER::Shareability));
        if config_access == TableAccess::NonCoherent {
            rd.PROPBASER
                .set(propbaser_value(config.pa(), id_bits, config_access));
        }
        rd.PENDBASER
            .set(pendbaser_value(pending.pa(), TableAccess::Coherent));
        let pending_access =
            access_from_shareability(rd.PENDBASER.read(GICR_PENDBASER::Shareability));
        if pending_access == TableAccess::NonCoherent {
            rd.PENDBASER
                .set(pendbaser_value(pending.pa(), pending_access));
        }
        if config_access == TableAccess::NonCoherent {
            platform::get().cache_clean(config.va(), config.size());
        }
        if pending_access == TableAccess::NonCoherent {
            platform::get().cache_clean(pending.va(), pending.size());
        }

        // The tables' contents must be visible to the GIC before EnableLPIs lets it read them
        // (§5.1: the redistributor may fetch configuration as soon as LPIs are enabled).
        kapi::barrier::dsb_sy();
        rd.CTLR.modify(GICR_CTLR::EnableLPIs::SET);
        kapi::barrier::dsb_sy();

        let mut count = config_table_bytes(id_bits);
        if num_lpis_field != 0 {
            // GICD_TYPER.num_LPIs caps the LPIs actually implemented below the ID width.
            count = count.min(1u64 << (num_lpis_field + 1));
        }
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        Ok(Lpis {
            rd,
            rd_pa,
            processor_number,
            id_bits,
            tables: Some((config, pending)),
            config_access,
            pending_access,
            alloc: IrqLock::new(LpiAllocator::new(count)),
        })
    }

    /// INTID bits the tables cover.
    pub fn id_bits(&self) -> u32 {
        self.id_bits
    }

    /// Physical address of the redistributor's RD_base frame.
    pub fn redistributor_pa(&self) -> PhysAddr {
        self.rd_pa
    }

    /// The redistributor's processor number (GICR_TYPER.Processor_Number).
    pub fn processor_number(&self) -> u16 {
        self.processor_number
    }

    /// How the GIC reads the configuration table.
    pub fn config_access(&self) -> TableAccess {
        self.config_access
    }

    /// How the GIC accesses the pending table.
    pub fn pending_access(&self) -> TableAccess {
        self.pending_access
    }

    /// A summary for the boot log.
    pub fn summary(&self) -> LpiSummary {
        let (config_table, config_bytes, pending_table, pending_bytes) = match &self.tables {
            Some((c, p)) => (c.pa(), config_table_bytes(self.id_bits), p.pa(), p.size()),
            None => (PhysAddr(0), 0, PhysAddr(0), 0),
        };
        LpiSummary {
            id_bits: self.id_bits,
            lpis: self.alloc.lock().capacity(),
            config_table,
            config_bytes,
            pending_table,
            pending_bytes,
            access: self.config_access,
        }
    }

    /// Allocates an LPI INTID; it starts disabled at the default priority.
    pub fn alloc(&self) -> Result<u32, GicError> {
        let intid = self.alloc.lock().alloc().ok_or(GicError::NoFreeLpi)?;
        self.set_config(intid, DEFAULT_PRIORITY, false);
        Ok(intid)
    }

    /// Returns an LPI INTID. The caller has removed every way for it to become pending.
    pub fn free(&self, intid: u32) {
        self.set_config(intid, DEFAULT_PRIORITY, false);
        self.alloc.lock().free(intid);
    }

    /// Whether `intid` is an allocated LPI.
    pub fn is_allocated(&self, intid: u32) -> bool {
        self.alloc.lock().is_allocated(intid)
    }

    /// LPIs handed out.
    pub fn in_use(&self) -> u32 {
        self.alloc.lock().in_use()
    }

    /// The configuration byte of `intid` (`None` if it is not an LPI of these tables).
    pub fn config(&self, intid: u32) -> Option<u8> {
        let (config, _) = self.tables.as_ref()?;
        let offset = self.config_offset(intid)?;
        Some(config.read_u8(offset))
    }

    fn config_offset(&self, intid: u32) -> Option<u64> {
        let offset = u64::from(intid.checked_sub(LPI_BASE)?);
        (offset < config_table_bytes(self.id_bits)).then_some(offset)
    }

    /// Writes the configuration byte of `intid` and, for a non-coherent GIC, cleans it to the
    /// point of coherency. The change takes effect only after an invalidation (ITS INV + SYNC);
    /// the caller orders that after this write.
    pub(crate) fn set_config(&self, intid: u32, priority: u8, enabled: bool) {
        let (Some((config, _)), Some(offset)) = (&self.tables, self.config_offset(intid)) else {
            return;
        };
        config.write_u8(offset, config_byte(priority, enabled));
        if self.config_access == TableAccess::NonCoherent {
            platform::get().cache_clean(config.va() + offset, 1);
        }
    }
}

fn wait_rwp(rd: &Mmio<GicrRd>) -> Result<(), GicError> {
    poll_until(HANDSHAKE_TIMEOUT, || !rd.CTLR.is_set(GICR_CTLR::RWP)).map_err(|_| {
        GicError::Timeout {
            register: "GICR_CTLR.RWP",
        }
    })
}

impl Drop for Lpis {
    fn drop(&mut self) {
        // The GIC owns the tables while EnableLPIs is set: turn LPIs off first, and if that is
        // not possible (IMPLEMENTATION DEFINED) keep the memory rather than hand it out again.
        self.rd.CTLR.modify(GICR_CTLR::EnableLPIs::CLEAR);
        let off = wait_rwp(&self.rd).is_ok() && !self.rd.CTLR.is_set(GICR_CTLR::EnableLPIs);
        if !off {
            log::error!(target: "gicv3", "LPIs cannot be disabled; keeping their tables");
            core::mem::forget(self.tables.take());
        }
    }
}

#[cfg(test)]
mod tests;
