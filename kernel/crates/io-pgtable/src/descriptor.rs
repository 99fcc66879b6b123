//! VMSAv8-64 stage-1 descriptors, 4 KiB granule (Arm ARM DDI 0487 D8.3; SMMUv3 uses the same
//! format for its stage-1 context descriptors' tables).
//!
//! Pure functions from named fields to the 64-bit word and back; nothing here touches memory.
//!
//! | bits    | table (L0-L2)      | block (L1-L2) / page (L3)                                  |
//! |---------|--------------------|------------------------------------------------------------|
//! | [1:0]   | 0b11               | block 0b01, page 0b11; bit 0 = 0: invalid                   |
//! | [4:2]   |                    | AttrIndx (index into MAIR)                                  |
//! | [7:6]   |                    | AP[2:1]: bit 6 unprivileged access, bit 7 read-only         |
//! | [9:8]   |                    | SH: 0b11 inner, 0b10 outer shareable                        |
//! | 10      |                    | AF (access flag)                                            |
//! | 11      |                    | nG (not global: tagged with the ASID)                       |
//! | [47:12] | next table address | output address (page [47:12], 2 MiB [47:21], 1 GiB [47:30]) |
//! | 53, 54  |                    | PXN, UXN (XN for the SMMU)                                  |

use crate::config::{Flavour, MemoryType, Prot};
use addr::PhysAddr;

/// Entries in one table page.
pub const ENTRIES: usize = 512;
/// Deepest level (4 KiB pages).
pub const LAST_LEVEL: u8 = 3;

/// Bit 0: the descriptor is valid. With it clear, hardware ignores every other bit.
pub const VALID: u64 = 1 << 0;
/// Bit 1 of a valid descriptor: table (levels 0-2) or page (level 3); clear for a block.
pub const TABLE_OR_PAGE: u64 = 1 << 1;
/// AttrIndx, bits [4:2].
pub const ATTR_INDEX_SHIFT: u32 = 2;
/// AP[1], bit 6: unprivileged (EL0, or unprivileged device transactions) may access.
pub const AP_UNPRIVILEGED: u64 = 1 << 6;
/// AP[2], bit 7: read-only.
pub const AP_READ_ONLY: u64 = 1 << 7;
/// SH, bits [9:8] = 0b11: inner shareable.
pub const SH_INNER: u64 = 0b11 << 8;
/// SH, bits [9:8] = 0b10: outer shareable.
pub const SH_OUTER: u64 = 0b10 << 8;
/// AF, bit 10. The SMMU faults on AF = 0 unless the CD sets AFFD, so leaves always carry it.
pub const ACCESS_FLAG: u64 = 1 << 10;
/// nG, bit 11: the translation is tagged with the ASID.
pub const NOT_GLOBAL: u64 = 1 << 11;
/// PXN, bit 53: no execution at EL1 (privileged transactions for the SMMU).
pub const PXN: u64 = 1 << 53;
/// UXN / XN, bit 54: no execution at EL0 (unprivileged transactions for the SMMU).
pub const UXN: u64 = 1 << 54;
/// Output / next-level table address, bits [47:12] (48-bit output addresses at most).
pub const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;
/// The attribute bits of a leaf that a split copies into the smaller entries.
const LEAF_ATTRIBUTE_MASK: u64 = !(ADDRESS_MASK | VALID | TABLE_OR_PAGE);

/// Software encoding, not an architectural one: an *invalid* descriptor (bit 0 clear, so the
/// walker ignores the rest) that records a table waiting to be linked once a break-before-make
/// invalidation has completed. Bits [1:0] = 0b10, address in [47:12].
const PENDING_TABLE: u64 = 0b10;

/// log2 of the input range one entry at `level` covers.
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (LAST_LEVEL - level) as u32
}

/// Bytes one entry at `level` covers: 512 GiB, 1 GiB, 2 MiB, 4 KiB for levels 0..=3.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// Index of the entry translating `input` in a table at `level`.
pub const fn table_index(input: u64, level: u8) -> usize {
    ((input >> level_shift(level)) as usize) & (ENTRIES - 1)
}

/// A descriptor read back from a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Translation faults here.
    Invalid,
    /// Points at the next-level table.
    Table(PhysAddr),
    /// Invalid for the walker; the table that replaces a block once its break-before-make
    /// invalidation has completed (see [`pending_table`]).
    PendingTable(PhysAddr),
    /// A block (levels 1-2) or page (level 3) mapping.
    Leaf {
        /// Output address of the first byte.
        output: PhysAddr,
        /// Attribute bits, as [`leaf_attributes`] builds them.
        attributes: u64,
    },
}

/// Decodes the descriptor `raw` found at `level`.
pub fn decode(raw: u64, level: u8) -> Descriptor {
    let address = PhysAddr(raw & ADDRESS_MASK);
    if raw & VALID == 0 {
        return if raw & (VALID | TABLE_OR_PAGE) == PENDING_TABLE {
            Descriptor::PendingTable(address)
        } else {
            Descriptor::Invalid
        };
    }
    let table_or_page = raw & TABLE_OR_PAGE != 0;
    match (level, table_or_page) {
        (LAST_LEVEL, false) => Descriptor::Invalid, // reserved encoding: the walker faults
        (LAST_LEVEL, true) | (_, false) => Descriptor::Leaf {
            output: PhysAddr(raw & ADDRESS_MASK & !(level_size(level) - 1)),
            attributes: raw & LEAF_ATTRIBUTE_MASK,
        },
        (_, true) => Descriptor::Table(address),
    }
}

/// A table descriptor (levels 0-2). APTable, XNTable, PXNTable and NSTable stay 0: the leaves
/// carry all permissions.
pub const fn table(next: PhysAddr) -> u64 {
    (next.0 & ADDRESS_MASK) | TABLE_OR_PAGE | VALID
}

/// The software "pending table" marker (invalid to the walker).
pub const fn pending_table(next: PhysAddr) -> u64 {
    (next.0 & ADDRESS_MASK) | PENDING_TABLE
}

/// A block (level 1-2) or page (level 3) descriptor for `output` with `attributes` from
/// [`leaf_attributes`].
pub const fn leaf(output: PhysAddr, level: u8, attributes: u64) -> u64 {
    let kind = if level == LAST_LEVEL {
        TABLE_OR_PAGE | VALID
    } else {
        VALID
    };
    (output.0 & ADDRESS_MASK) | (attributes & LEAF_ATTRIBUTE_MASK) | kind
}

/// The attribute bits of a leaf with `prot` in `flavour` (everything but address and type).
///
/// - both flavours: AttrIndx from the memory type, SH inner for Normal memory (outer for
///   Device, which hardware treats as outer shareable whatever SH says), AF = 1, AP[2] = 1 when
///   read-only;
/// - SMMU: AP[1] = 1 (devices issue unprivileged transactions unless configured otherwise),
///   nG = 1 (translations belong to the domain's ASID), PXN = UXN = 1 unless executable;
/// - CPU EL1: AP[1] = 0 (no EL0 access), nG = 0 (kernel mappings are global), UXN = 1 always,
///   PXN = 1 unless executable.
pub const fn leaf_attributes(flavour: Flavour, prot: Prot) -> u64 {
    let mut bits = ACCESS_FLAG | (prot.memory.attr_index() << ATTR_INDEX_SHIFT);
    bits |= match prot.memory {
        MemoryType::Device => SH_OUTER,
        MemoryType::NormalWriteBack | MemoryType::NormalNonCacheable => SH_INNER,
    };
    if !prot.writable {
        bits |= AP_READ_ONLY;
    }
    match flavour {
        Flavour::Smmu => {
            bits |= AP_UNPRIVILEGED | NOT_GLOBAL;
            if !prot.executable {
                bits |= PXN | UXN;
            }
        }
        Flavour::CpuEl1 => {
            bits |= UXN;
            if !prot.executable {
                bits |= PXN;
            }
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW_WB: Prot = Prot::read_write(MemoryType::NormalWriteBack);
    const RO_WB: Prot = Prot::read_only(MemoryType::NormalWriteBack);

    #[test]
    fn smmu_page_golden_bits() {
        let pa = PhysAddr(0x4000_1000);
        let rw = leaf(pa, 3, leaf_attributes(Flavour::Smmu, RW_WB));
        // valid|page 0b11, AttrIndx 1, AP[1], SH inner, AF, nG, PXN|UXN
        assert_eq!(rw, 0x0060_0000_4000_1f47);
        let ro = leaf(pa, 3, leaf_attributes(Flavour::Smmu, RO_WB));
        assert_eq!(ro, 0x0060_0000_4000_1fc7);
        let nc = leaf(
            pa,
            3,
            leaf_attributes(
                Flavour::Smmu,
                Prot::read_write(MemoryType::NormalNonCacheable),
            ),
        );
        assert_eq!(nc, 0x0060_0000_4000_1f4b);
        let dev = leaf(
            PhysAddr(0x0900_0000),
            3,
            leaf_attributes(Flavour::Smmu, Prot::read_write(MemoryType::Device)),
        );
        assert_eq!(dev, 0x0060_0000_0900_0e43);
        let exec = leaf(pa, 3, leaf_attributes(Flavour::Smmu, RO_WB.executable()));
        assert_eq!(exec, 0x0000_0000_4000_1fc7);
    }

    #[test]
    fn smmu_block_golden_bits() {
        let attributes = leaf_attributes(Flavour::Smmu, RW_WB);
        assert_eq!(
            leaf(PhysAddr(0x4020_0000), 2, attributes),
            0x0060_0000_4020_0f45
        );
        assert_eq!(
            leaf(PhysAddr(0x1_4000_0000), 1, attributes),
            0x0060_0001_4000_0f45
        );
    }

    #[test]
    fn cpu_el1_golden_bits() {
        let pa = PhysAddr(0x4008_0000);
        let data = leaf(pa, 3, leaf_attributes(Flavour::CpuEl1, RW_WB));
        // valid|page, AttrIndx 1, SH inner, AF; global; PXN|UXN
        assert_eq!(data, 0x0060_0000_4008_0707);
        let text = leaf(pa, 3, leaf_attributes(Flavour::CpuEl1, RO_WB.executable()));
        // read-only, UXN only
        assert_eq!(text, 0x0040_0000_4008_0787);
        let mmio = leaf(
            PhysAddr(0x0900_0000),
            2,
            leaf_attributes(Flavour::CpuEl1, Prot::read_write(MemoryType::Device)),
        );
        assert_eq!(mmio, 0x0060_0000_0900_0601);
    }

    #[test]
    fn table_and_pending_golden_bits() {
        assert_eq!(table(PhysAddr(0x4123_4000)), 0x0000_0000_4123_4003);
        assert_eq!(pending_table(PhysAddr(0x4123_4000)), 0x0000_0000_4123_4002);
    }

    #[test]
    fn decode_round_trips() {
        let attributes = leaf_attributes(Flavour::Smmu, RW_WB);
        let t = PhysAddr(0x4123_4000);
        assert_eq!(decode(0, 0), Descriptor::Invalid);
        assert_eq!(decode(table(t), 1), Descriptor::Table(t));
        assert_eq!(decode(pending_table(t), 2), Descriptor::PendingTable(t));
        // A page-type descriptor at level 3 is a page; block-type there is reserved (invalid).
        let page = leaf(t, 3, attributes);
        assert_eq!(
            decode(page, 3),
            Descriptor::Leaf {
                output: t,
                attributes
            }
        );
        assert_eq!(decode(page & !TABLE_OR_PAGE, 3), Descriptor::Invalid);
        let block = leaf(PhysAddr(0x4020_0000), 2, attributes);
        assert_eq!(
            decode(block, 2),
            Descriptor::Leaf {
                output: PhysAddr(0x4020_0000),
                attributes
            }
        );
    }

    #[test]
    fn levels_cover_the_expected_sizes() {
        assert_eq!(level_size(3), 4 << 10);
        assert_eq!(level_size(2), 2 << 20);
        assert_eq!(level_size(1), 1 << 30);
        assert_eq!(level_size(0), 512 << 30);
        let input = (0x101 << 39) | (0x1 << 30) | (0x1ff << 21) | (0x42 << 12) | 0x123;
        assert_eq!(table_index(input, 0), 0x101);
        assert_eq!(table_index(input, 1), 0x1);
        assert_eq!(table_index(input, 2), 0x1ff);
        assert_eq!(table_index(input, 3), 0x42);
    }
}
