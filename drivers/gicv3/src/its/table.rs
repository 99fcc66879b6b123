//! ITS table sizing and base-register values (IHI 0069 §5.2, "ITS tables"; §12.19, GITS_BASER<n>
//! and GITS_CBASER).
//!
//! Each GITS_BASER<n> describes one table whose Type and Entry_Size the ITS fixes; software picks
//! a page size the register accepts, allocates `Size + 1` pages and writes the address. This driver
//! only builds flat (single-level) tables: QEMU's 16-bit DeviceIDs with 8-byte entries need
//! 512 KiB, well within what one allocation and GITS_BASER.Size (256 pages) allow.

use core::fmt;

use kapi::PhysAddr;
use tock_registers::LocalRegisterCopy;

use crate::lpi::TableAccess;
use crate::regs::{GITS_BASER, GITS_CBASER};

/// Most pages a GITS_BASER<n> or GITS_CBASER can describe (Size is 8 bits).
pub const MAX_TABLE_PAGES: u64 = 256;

/// Page size of a GITS_BASER<n> table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 16 KiB.
    Size16K,
    /// 64 KiB.
    Size64K,
}

impl PageSize {
    /// The page sizes to try, largest first (fewest pages for a given table).
    pub const PREFERENCE: [PageSize; 3] = [PageSize::Size64K, PageSize::Size16K, PageSize::Size4K];

    /// Bytes per page.
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 0x1000,
            PageSize::Size16K => 0x4000,
            PageSize::Size64K => 0x1_0000,
        }
    }

    /// Decodes GITS_BASER.Page_Size (the reserved 0b11 is read as 64 KiB, as QEMU does).
    pub fn from_field(v: u64) -> PageSize {
        match v {
            0 => PageSize::Size4K,
            1 => PageSize::Size16K,
            _ => PageSize::Size64K,
        }
    }

    fn field(self) -> tock_registers::fields::FieldValue<u64, GITS_BASER::Register> {
        match self {
            PageSize::Size4K => GITS_BASER::Page_Size::Size4K,
            PageSize::Size16K => GITS_BASER::Page_Size::Size16K,
            PageSize::Size64K => GITS_BASER::Page_Size::Size64K,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}K", self.bytes() / 1024)
    }
}

/// What a GITS_BASER<n> holds (its read-only Type field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableType {
    /// No table behind this register.
    Unimplemented,
    /// Device table: DeviceID -> interrupt translation table.
    Devices,
    /// vPE table (GICv4): not used by this driver.
    Vpes,
    /// Collection table: collection ID -> redistributor.
    Collections,
    /// A reserved encoding.
    Reserved(u8),
}

/// The read-only description of one GITS_BASER<n>.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaserInfo {
    /// What the table holds.
    pub table: TableType,
    /// Bytes per entry.
    pub entry_size: u32,
    /// Page size the register currently holds (its reset value, or what was last accepted).
    pub page_size: PageSize,
}

/// Decodes Type, Entry_Size and Page_Size of a GITS_BASER<n> value.
pub fn baser_info(value: u64) -> BaserInfo {
    let r = LocalRegisterCopy::<u64, GITS_BASER::Register>::new(value);
    let table = match r.read(GITS_BASER::Type) {
        0 => TableType::Unimplemented,
        1 => TableType::Devices,
        2 => TableType::Vpes,
        4 => TableType::Collections,
        other => TableType::Reserved(other as u8),
    };
    BaserInfo {
        table,
        entry_size: r.read(GITS_BASER::Entry_Size) as u32 + 1,
        page_size: PageSize::from_field(r.read(GITS_BASER::Page_Size)),
    }
}

/// A flat table: enough whole pages for `entries` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatTable {
    /// Entries needed.
    pub entries: u64,
    /// Bytes per entry.
    pub entry_size: u32,
    /// Page size.
    pub page_size: PageSize,
    /// Pages (1..=256).
    pub pages: u64,
}

impl FlatTable {
    /// Bytes to allocate.
    pub fn bytes(&self) -> u64 {
        self.pages * self.page_size.bytes()
    }
}

/// Sizes a flat table of `entries` entries of `entry_size` bytes in `page_size` pages; `Err` with
/// the bytes it would need when that is more than GITS_BASER.Size can describe.
pub fn flat_table(entries: u64, entry_size: u32, page_size: PageSize) -> Result<FlatTable, u64> {
    let bytes = entries.max(1) * u64::from(entry_size);
    let pages = bytes.div_ceil(page_size.bytes());
    if pages > MAX_TABLE_PAGES {
        return Err(bytes);
    }
    Ok(FlatTable {
        entries,
        entry_size,
        page_size,
        pages,
    })
}

/// GITS_BASER.Physical_Address for a table at `pa`: bits [47:12] in place for 4K/16K pages; for
/// 64K pages bits [47:16] in place and bits [51:48] in register bits [15:12].
pub fn baser_address_field(pa: PhysAddr, page_size: PageSize) -> u64 {
    match page_size {
        PageSize::Size64K => ((pa.0 & 0x0000_ffff_ffff_0000) >> 12) | ((pa.0 >> 48) & 0xf),
        PageSize::Size4K | PageSize::Size16K => (pa.0 & 0x0000_ffff_ffff_f000) >> 12,
    }
}

/// The value that makes GITS_BASER<n> describe `table` at `pa` (flat, valid). Type and
/// Entry_Size are read-only, so they are left 0 here.
pub fn baser_value(table: &FlatTable, pa: PhysAddr, access: TableAccess) -> u64 {
    let attrs = match access {
        TableAccess::Coherent => {
            GITS_BASER::Shareability::InnerShareable + GITS_BASER::InnerCache::RaWaWb
        }
        TableAccess::NonCoherent => {
            GITS_BASER::Shareability::NonShareable + GITS_BASER::InnerCache::NonCacheable
        }
    };
    (GITS_BASER::Valid::SET
        + GITS_BASER::Indirect::CLEAR
        + GITS_BASER::OuterCache::SameAsInner
        + GITS_BASER::Physical_Address.val(baser_address_field(pa, table.page_size))
        + table.page_size.field()
        + GITS_BASER::Size.val(table.pages - 1)
        + attrs)
        .value
}

/// GITS_CBASER for a command queue of `bytes` (a multiple of 4 KiB, at most 1 MiB) at `pa`.
pub fn cbaser_value(pa: PhysAddr, bytes: u64, access: TableAccess) -> u64 {
    let attrs = match access {
        TableAccess::Coherent => {
            GITS_CBASER::Shareability::InnerShareable + GITS_CBASER::InnerCache::RaWaWb
        }
        TableAccess::NonCoherent => {
            GITS_CBASER::Shareability::NonShareable + GITS_CBASER::InnerCache::NonCacheable
        }
    };
    (GITS_CBASER::Valid::SET
        + GITS_CBASER::OuterCache::SameAsInner
        + GITS_CBASER::Physical_Address.val(pa.0 >> 12)
        + GITS_CBASER::Size.val(bytes / 0x1000 - 1)
        + attrs)
        .value
}

/// EventID bits a device with `nvec` vectors needs (at least 1: MAPD.Size is bits minus one).
pub fn event_bits_for(nvec: u32) -> u32 {
    nvec.max(2).next_power_of_two().trailing_zeros()
}

/// The unit an interrupt translation table is allocated in (one page frame).
pub const ITT_PAGE: u64 = 4096;

/// EventID bits of the ITT for a DeviceID whose first user asks for `nvec` vectors: enough for
/// `nvec`, and at least as many EventIDs as fill the page the ITT takes anyway (256 with
/// 12- or 16-byte entries), so that functions aliasing to the same DeviceID find room in it
/// later; never more than the ITS's `max_bits`.
pub fn itt_event_bits(nvec: u32, entry_size: u32, max_bits: u32) -> u32 {
    let per_page = (ITT_PAGE / u64::from(entry_size.max(1))).max(2);
    let page_bits = 63 - per_page.leading_zeros();
    event_bits_for(nvec).max(page_bits).min(max_bits.max(1))
}

/// Bytes of an interrupt translation table for `event_bits` EventIDs of `entry_size` bytes
/// (GITS_TYPER.ITT_entry_size + 1).
pub fn itt_bytes(event_bits: u32, entry_size: u32) -> u64 {
    (1u64 << event_bits) * u64::from(entry_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GITS_BASER0 of QEMU 10.0 at reset: Type = Devices, Entry_Size = 8, Page_Size = 64K.
    const QEMU_BASER0: u64 = (1 << 56) | (7 << 48) | (2 << 8);
    /// GITS_BASER1: Type = Collections, Entry_Size = 8, Page_Size = 64K.
    const QEMU_BASER1: u64 = (4 << 56) | (7 << 48) | (2 << 8);

    #[test]
    fn baser_info_decodes_qemu_reset_values() {
        assert_eq!(
            baser_info(QEMU_BASER0),
            BaserInfo {
                table: TableType::Devices,
                entry_size: 8,
                page_size: PageSize::Size64K
            }
        );
        assert_eq!(baser_info(QEMU_BASER1).table, TableType::Collections);
        assert_eq!(baser_info(0).table, TableType::Unimplemented);
        assert_eq!(baser_info(2 << 56).table, TableType::Vpes);
        assert_eq!(baser_info(3 << 56).table, TableType::Reserved(3));
    }

    #[test]
    fn device_table_for_16_bit_device_ids() {
        // 65536 DeviceIDs x 8 bytes = 512 KiB: 8 pages of 64K, 128 of 4K.
        let t = flat_table(1 << 16, 8, PageSize::Size64K).unwrap();
        assert_eq!((t.pages, t.bytes()), (8, 512 * 1024));
        assert_eq!(flat_table(1 << 16, 8, PageSize::Size4K).unwrap().pages, 128);
        // 20-bit DeviceIDs with 8-byte entries (8 MiB) fit 64K pages but not 4K pages.
        assert_eq!(
            flat_table(1 << 20, 8, PageSize::Size64K).unwrap().pages,
            128
        );
        assert_eq!(
            flat_table(1 << 20, 8, PageSize::Size4K),
            Err(8 * 1024 * 1024)
        );
    }

    #[test]
    fn one_collection_takes_one_page() {
        let t = flat_table(1, 8, PageSize::Size64K).unwrap();
        assert_eq!((t.pages, t.bytes()), (1, 0x1_0000));
        assert_eq!(flat_table(0, 8, PageSize::Size4K).unwrap().pages, 1);
    }

    #[test]
    fn baser_value_golden() {
        // Valid [63], InnerCache RaWaWb [61:59] = 7, Physical_Address, Page_Size 64K [9:8] = 2,
        // Shareability inner [11:10] = 1, Size [7:0] = pages - 1.
        let t = flat_table(1 << 16, 8, PageSize::Size64K).unwrap();
        assert_eq!(
            baser_value(&t, PhysAddr(0x4100_0000), TableAccess::Coherent),
            0xb800_0000_4100_0607
        );
        let t = flat_table(1, 8, PageSize::Size4K).unwrap();
        assert_eq!(
            baser_value(&t, PhysAddr(0x4123_4000), TableAccess::NonCoherent),
            0x8800_0000_4123_4000
        );
    }

    #[test]
    fn sixty_four_k_pages_move_address_bits_51_48() {
        let pa = PhysAddr(0x000a_1234_5678_0000);
        // Bits [47:16] in place, [51:48] = 0xa into register bits [15:12].
        assert_eq!(
            baser_address_field(pa, PageSize::Size64K) << 12,
            0x1234_5678_a000
        );
        assert_eq!(
            baser_address_field(PhysAddr(0x1234_5678_9000), PageSize::Size4K) << 12,
            0x1234_5678_9000
        );
    }

    #[test]
    fn cbaser_value_golden() {
        // 64 KiB queue: Size = 15; Valid, RaWaWb, inner shareable.
        assert_eq!(
            cbaser_value(PhysAddr(0x4201_0000), 0x1_0000, TableAccess::Coherent),
            0xb800_0000_4201_040f
        );
        assert_eq!(
            cbaser_value(PhysAddr(0x4201_0000), 0x1000, TableAccess::NonCoherent),
            0x8800_0000_4201_0000
        );
    }

    #[test]
    fn event_bits_and_itt_size() {
        assert_eq!(event_bits_for(0), 1);
        assert_eq!(event_bits_for(1), 1);
        assert_eq!(event_bits_for(2), 1);
        assert_eq!(event_bits_for(3), 2);
        assert_eq!(event_bits_for(32), 5);
        assert_eq!(event_bits_for(33), 6);
        // QEMU: 12-byte ITT entries.
        assert_eq!(itt_bytes(1, 12), 24);
        // An ITT fills its page: 256 EventIDs of QEMU's 12-byte entries (3 KiB), 512 of 8 bytes.
        assert_eq!(itt_event_bits(1, 12, 16), 8);
        assert_eq!(itt_bytes(itt_event_bits(1, 12, 16), 12), 3072);
        assert_eq!(itt_event_bits(1, 16, 16), 8);
        assert_eq!(itt_event_bits(1, 8, 16), 9);
        // More vectors than a page holds, and an ITS with few EventID bits.
        assert_eq!(itt_event_bits(1000, 12, 16), 10);
        assert_eq!(itt_event_bits(1, 12, 4), 4);
        assert_eq!(itt_event_bits(2, 12, 1), 1);
        assert_eq!(itt_bytes(5, 12), 384);
    }
}
