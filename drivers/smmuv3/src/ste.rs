//! Stream table entries and the stream table's shape (IHI 0070 §5.2 "Stream Table Entry",
//! §5.1 "Level 1 Stream Table Descriptor", §6.3 SMMU_STRTAB_BASE/_CFG).
//!
//! An STE is 64 bytes, eight little-endian 64-bit words. This kernel builds three kinds:
//! [`Ste::abort`] (the default for every StreamID nobody attached), [`Ste::bypass`] (identity
//! DMA, only on request) and [`Ste::stage1`] (translate through one context descriptor). How an
//! STE that the SMMU may be using is changed from one kind to another is [`crate::entry`]'s job.
//!
//! # Table shape
//! A linear table is the simplest and is used when it is small: at most [`LINEAR_MAX_BYTES`]
//! (64 KiB, 1024 StreamIDs, SIDSIZE ≤ 10). Larger StreamID spaces use a two-level table with
//! SPLIT = 8 (as Linux): a level-1 table of 8-byte descriptors, one per 256 StreamIDs (one PCI
//! bus), pointing at 16 KiB level-2 tables that are allocated only for buses that have devices.
//! For QEMU's SIDSIZE 16 that is a 2 KiB level-1 table instead of a 4 MiB linear one. An SMMU
//! without two-level support gets a linear table of at most 2^16 StreamIDs (4 MiB: every PCI
//! requester ID); a two-level table covers at most 2^21 StreamIDs (64 KiB level-1 table).
//! StreamIDs beyond the table are refused with [`SmmuError::SidOutOfRange`].

use core::fmt;

use tock_registers::fields::FieldValue;
use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::features::Features;
use crate::regs::{STRTAB_BASE, STRTAB_BASE_CFG};
use crate::{PA_FIELD_BITS, PhysAddr, SmmuError, StreamId, Structure, check_pa};

register_bitfields! [u64,
    /// STE word 0 (§5.2).
    pub STE0 [
        /// Valid; an invalid STE makes the SMMU abort the stream and record C_BAD_STE.
        V OFFSET(0) NUMBITS(1) [],
        /// What happens to the stream's transactions.
        Config OFFSET(1) NUMBITS(3) [
            Abort = 0b000,
            Bypass = 0b100,
            S1Trans = 0b101,
            S2Trans = 0b110,
            Nested = 0b111
        ],
        /// Format of the CD table S1ContextPtr points at.
        S1Fmt OFFSET(4) NUMBITS(2) [
            Linear = 0,
            TwoLevel4K = 1,
            TwoLevel64K = 2
        ],
        /// Physical address bits [51:6] of the CD (table).
        S1ContextPtr OFFSET(6) NUMBITS(46) [],
        /// log2 of the number of CDs; 0 = one CD, no substreams.
        S1CDMax OFFSET(59) NUMBITS(5) []
    ],
    /// STE word 1 (§5.2).
    pub STE1 [
        /// Default substream: what non-substream traffic uses when S1CDMax > 0.
        S1DSS OFFSET(0) NUMBITS(2) [
            Terminate = 0,
            Bypass = 1,
            Substream0 = 2
        ],
        /// Inner cacheability of CD fetches.
        S1CIR OFFSET(2) NUMBITS(2) [
            NonCacheable = 0,
            WriteBackReadAllocate = 1,
            WriteThrough = 2,
            WriteBack = 3
        ],
        /// Outer cacheability of CD fetches.
        S1COR OFFSET(4) NUMBITS(2) [
            NonCacheable = 0,
            WriteBackReadAllocate = 1,
            WriteThrough = 2,
            WriteBack = 3
        ],
        /// Shareability of CD fetches.
        S1CSH OFFSET(6) NUMBITS(2) [
            NonShareable = 0,
            OuterShareable = 2,
            InnerShareable = 3
        ],
        /// Stall disable: 1 = stage-1 faults terminate even if the CD asks for stalls.
        S1STALLD OFFSET(27) NUMBITS(1) [],
        /// ATS: 0 = ATS translation requests are aborted.
        EATS OFFSET(28) NUMBITS(2) [
            Abort = 0,
            Translate = 1,
            S1Chk = 2
        ],
        /// Translation regime of stage 1.
        STRW OFFSET(30) NUMBITS(2) [
            NsEl1 = 0,
            El2 = 2
        ],
        /// Memory attribute override value (with MTCFG).
        MEMATTR OFFSET(32) NUMBITS(4) [],
        /// Memory type override enable.
        MTCFG OFFSET(36) NUMBITS(1) [],
        /// Allocation hints override.
        ALLOCCFG OFFSET(37) NUMBITS(4) [],
        /// Shareability override.
        SHCFG OFFSET(44) NUMBITS(2) [
            NonShareable = 0,
            UseIncoming = 1,
            OuterShareable = 2,
            InnerShareable = 3
        ],
        /// Security override.
        NSCFG OFFSET(46) NUMBITS(2) [],
        /// Privilege override.
        PRIVCFG OFFSET(48) NUMBITS(2) [],
        /// Instruction/data override.
        INSTCFG OFFSET(50) NUMBITS(2) []
    ],
    /// STE word 2 (§5.2).
    pub STE2 [
        /// VMID; also tags stage-1 TLB entries of this stream.
        S2VMID OFFSET(0) NUMBITS(16) []
    ],
    /// Level-1 stream table descriptor (§5.1).
    pub L1STD [
        /// Number of STEs in the level-2 table: 2^(Span-1); 0 = invalid (C_BAD_STREAMID).
        Span OFFSET(0) NUMBITS(5) [],
        /// Physical address bits [51:6] of the level-2 table.
        L2Ptr OFFSET(6) NUMBITS(46) []
    ]
];

/// Number of 64-bit words in an STE.
pub const STE_WORDS: usize = 8;
/// Size of an STE in bytes.
pub const STE_SIZE: u64 = 64;
/// StreamID bits resolved by a level-2 table (256 STEs, 16 KiB: one PCI bus per table).
pub const SPLIT: u32 = 8;
/// Largest linear stream table this kernel builds when two-level tables are available.
pub const LINEAR_MAX_BYTES: u64 = 64 * 1024;
/// StreamID bits covered by a linear table on an SMMU without two-level tables (every PCI RID).
pub const LINEAR_ONLY_MAX_SID_BITS: u32 = 16;
/// StreamID bits covered by a two-level table (level-1 table of at most 64 KiB).
pub const TWO_LEVEL_MAX_SID_BITS: u32 = 21;
/// Size of a level-1 descriptor.
pub const L1_DESC_SIZE: u64 = 8;

/// A stream table entry: eight words, word 0 first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ste([u64; STE_WORDS]);

/// What an STE does, as far as this kernel distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteConfig {
    /// V = 0: transactions abort and raise C_BAD_STE.
    Invalid,
    /// Config = abort: transactions abort silently.
    Abort,
    /// Config = bypass: transactions pass untranslated.
    Bypass,
    /// Stage 1 translates through the CD at this address.
    Stage1 { cd: PhysAddr },
    /// Any other configuration (stage 2, nested, reserved), raw Config value.
    Other(u8),
}

impl Ste {
    /// All zeroes: V = 0. A freshly zeroed table is made of these.
    pub const fn invalid() -> Ste {
        Ste([0; STE_WORDS])
    }

    /// Valid, Config = abort: the stream's transactions are terminated without an event.
    pub fn abort() -> Ste {
        Self::with(STE0::V::SET + STE0::Config::Abort, FieldValue::none())
    }

    /// Valid, Config = bypass, shareability taken from the incoming transaction (SHCFG = 0
    /// would force non-shareable and break coherent DMA); every other attribute "use incoming".
    pub fn bypass() -> Ste {
        Self::with(
            STE0::V::SET + STE0::Config::Bypass,
            STE1::SHCFG::UseIncoming,
        )
    }

    /// Valid, stage-1 translation through the single CD at `cd` (64-byte aligned): S1CDMax = 0
    /// (no substreams; QEMU refuses anything else), linear S1Fmt, CD fetches write-back
    /// inner-shareable when the SMMU is `coherent` (IDR0.COHACC), non-cacheable outer-shareable
    /// otherwise, NS-EL1 regime, ATS aborted, stalls not disabled (the CD has S = 0, so faults
    /// terminate), VMID 0.
    pub fn stage1(cd: PhysAddr, coherent: bool) -> Result<Ste, SmmuError> {
        check_pa(
            Structure::ContextDescriptor,
            cd,
            crate::cd::CD_SIZE,
            PA_FIELD_BITS,
        )?;
        let fetch = if coherent {
            STE1::S1CIR::WriteBackReadAllocate
                + STE1::S1COR::WriteBackReadAllocate
                + STE1::S1CSH::InnerShareable
        } else {
            STE1::S1CIR::NonCacheable + STE1::S1COR::NonCacheable + STE1::S1CSH::OuterShareable
        };
        let mut ste = Self::with(
            STE0::V::SET
                + STE0::Config::S1Trans
                + STE0::S1Fmt::Linear
                + STE0::S1ContextPtr.val(cd.0 >> 6)
                + STE0::S1CDMax.val(0),
            STE1::S1DSS::Terminate
                + fetch
                + STE1::S1STALLD::CLEAR
                + STE1::EATS::Abort
                + STE1::STRW::NsEl1,
        );
        ste.0[2] = (STE2::S2VMID.val(0)).value;
        Ok(ste)
    }

    fn with(w0: FieldValue<u64, STE0::Register>, w1: FieldValue<u64, STE1::Register>) -> Ste {
        let mut words = [0; STE_WORDS];
        words[0] = w0.value;
        words[1] = w1.value;
        Ste(words)
    }

    /// An STE as read back from a table.
    pub const fn from_words(words: [u64; STE_WORDS]) -> Ste {
        Ste(words)
    }

    /// The words, word 0 first (store each little-endian).
    pub const fn words(&self) -> &[u64; STE_WORDS] {
        &self.0
    }

    /// What the entry does.
    pub fn config(&self) -> SteConfig {
        let w0 = LocalRegisterCopy::<u64, STE0::Register>::new(self.0[0]);
        if !w0.is_set(STE0::V) {
            return SteConfig::Invalid;
        }
        match w0.read_as_enum(STE0::Config) {
            Some(STE0::Config::Value::Abort) => SteConfig::Abort,
            Some(STE0::Config::Value::Bypass) => SteConfig::Bypass,
            Some(STE0::Config::Value::S1Trans) => SteConfig::Stage1 {
                cd: PhysAddr(w0.read(STE0::S1ContextPtr) << 6),
            },
            _ => SteConfig::Other(w0.read(STE0::Config) as u8),
        }
    }
}

impl fmt::Debug for Ste {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ste({:?}, ", self.config())?;
        crate::fmt_words(f, &self.0)?;
        f.write_str(")")
    }
}

/// Stream table format (STRTAB_BASE_CFG.FMT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StFormat {
    /// One array of STEs.
    Linear,
    /// Level-1 descriptors, each covering 2^[`SPLIT`] STEs in a level-2 table.
    TwoLevel,
}

/// How the stream table is organised; built only by [`StreamTableLayout::choose`], so a
/// two-level layout always covers more StreamID bits than [`SPLIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamTableLayout {
    format: StFormat,
    sid_bits: u32,
}

/// Where the STE of a StreamID lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteIndex {
    /// Index into the linear table.
    Linear(u32),
    /// Index of the level-1 descriptor, and of the STE inside that descriptor's level-2 table.
    TwoLevel { l1: u32, l2: u32 },
}

impl StreamTableLayout {
    /// The layout for an SMMU with `sid_bits` StreamID bits (IDR1.SIDSIZE) that may or may not
    /// support two-level tables (IDR0.ST_LEVEL); see the module documentation for the rule.
    pub fn choose(sid_bits: u32, two_level: bool) -> StreamTableLayout {
        let linear_bytes = STE_SIZE << sid_bits.min(32);
        let (format, sid_bits) = if linear_bytes <= LINEAR_MAX_BYTES {
            (StFormat::Linear, sid_bits)
        } else if two_level {
            (StFormat::TwoLevel, sid_bits.min(TWO_LEVEL_MAX_SID_BITS))
        } else {
            (StFormat::Linear, sid_bits.min(LINEAR_ONLY_MAX_SID_BITS))
        };
        StreamTableLayout { format, sid_bits }
    }

    /// [`Self::choose`] from decoded features.
    pub fn for_features(f: &Features) -> StreamTableLayout {
        Self::choose(f.sid_bits, f.two_level_st)
    }

    /// Linear or two-level.
    pub fn format(&self) -> StFormat {
        self.format
    }

    /// Number of StreamID bits the table covers (STRTAB_BASE_CFG.LOG2SIZE).
    pub fn sid_bits(&self) -> u32 {
        self.sid_bits
    }

    /// Size in bytes of the table STRTAB_BASE points at (linear table or level-1 table).
    pub fn table_bytes(&self) -> u64 {
        match self.format {
            StFormat::Linear => STE_SIZE << self.sid_bits,
            StFormat::TwoLevel => L1_DESC_SIZE << (self.sid_bits - SPLIT),
        }
    }

    /// Alignment STRTAB_BASE needs: the table's size, at least 64 bytes (the address field
    /// starts at bit 6 and the SMMU ignores the low bits of a naturally aligned table).
    pub fn table_align(&self) -> u64 {
        self.table_bytes().max(64)
    }

    /// Number of level-1 descriptors (0 for a linear table).
    pub fn l1_entries(&self) -> u32 {
        match self.format {
            StFormat::Linear => 0,
            StFormat::TwoLevel => 1 << (self.sid_bits - SPLIT),
        }
    }

    /// The STRTAB_BASE_CFG value.
    pub fn base_cfg(&self) -> u32 {
        let log2size = STRTAB_BASE_CFG::LOG2SIZE.val(self.sid_bits);
        let v = match self.format {
            StFormat::Linear => STRTAB_BASE_CFG::FMT::Linear + log2size,
            StFormat::TwoLevel => {
                STRTAB_BASE_CFG::FMT::TwoLevel + STRTAB_BASE_CFG::SPLIT.val(SPLIT) + log2size
            }
        };
        v.value
    }

    /// The STRTAB_BASE value for a table at `pa`, with the read-allocate hint set (the SMMU
    /// reads STEs repeatedly; they should stay in the cache).
    pub fn base(&self, pa: PhysAddr) -> Result<u64, SmmuError> {
        check_pa(
            Structure::StreamTable,
            pa,
            self.table_align(),
            PA_FIELD_BITS,
        )?;
        Ok((STRTAB_BASE::ADDR.val(pa.0 >> 6) + STRTAB_BASE::RA::SET).value)
    }

    /// Where the STE of `sid` lives.
    pub fn locate(&self, sid: StreamId) -> Result<SteIndex, SmmuError> {
        let bits = self.sid_bits;
        if bits < 32 && sid.0 >> bits != 0 {
            return Err(SmmuError::SidOutOfRange { sid, bits });
        }
        Ok(match self.format {
            StFormat::Linear => SteIndex::Linear(sid.0),
            StFormat::TwoLevel => SteIndex::TwoLevel {
                l1: sid.0 >> SPLIT,
                l2: sid.0 & ((1 << SPLIT) - 1),
            },
        })
    }
}

impl SteIndex {
    /// Byte offset of the entry in its table (the linear table, or the level-1 descriptor in
    /// the level-1 table and the STE in the level-2 table).
    pub fn offsets(&self) -> (u64, Option<u64>) {
        match *self {
            SteIndex::Linear(i) => (u64::from(i) * STE_SIZE, None),
            SteIndex::TwoLevel { l1, l2 } => {
                (u64::from(l1) * L1_DESC_SIZE, Some(u64::from(l2) * STE_SIZE))
            }
        }
    }
}

/// Size of a level-2 table: 2^[`SPLIT`] STEs.
pub const L2_TABLE_BYTES: u64 = STE_SIZE << SPLIT;
/// Number of STEs in a level-2 table.
pub const L2_TABLE_ENTRIES: u32 = 1 << SPLIT;

/// The level-1 descriptor pointing at a level-2 table of 2^[`SPLIT`] STEs at `l2`, which must be
/// aligned to its size. Fill the level-2 table (abort STEs) and make it visible before writing
/// this descriptor with one 64-bit store: the SMMU may walk it as soon as Span is non-zero.
pub fn l1_descriptor(l2: PhysAddr) -> Result<u64, SmmuError> {
    check_pa(Structure::L2StreamTable, l2, L2_TABLE_BYTES, PA_FIELD_BITS)?;
    // Span = SPLIT + 1: the level-2 table holds 2^(Span - 1) = 2^SPLIT STEs (§5.1).
    Ok((L1STD::Span.val(u64::from(SPLIT) + 1) + L1STD::L2Ptr.val(l2.0 >> 6)).value)
}

/// A level-1 descriptor with Span = 0: its StreamIDs raise C_BAD_STREAMID.
pub const L1_INVALID: u64 = 0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::IdRegs;

    fn shape(l: StreamTableLayout) -> (StFormat, u32) {
        (l.format(), l.sid_bits())
    }

    #[test]
    fn smmuv3_ste_abort_bypass_golden() {
        assert_eq!(Ste::invalid().words(), &[0; 8]);
        // V = 1, Config = 0b000.
        assert_eq!(Ste::abort().words(), &[0x1, 0, 0, 0, 0, 0, 0, 0]);
        // V = 1, Config = 0b100 (bits [3:1] = 0b100 -> 0x8); SHCFG = 1 at bit 44.
        assert_eq!(Ste::bypass().words(), &[0x9, 1 << 44, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ste::abort().config(), SteConfig::Abort);
        assert_eq!(Ste::bypass().config(), SteConfig::Bypass);
        assert_eq!(Ste::invalid().config(), SteConfig::Invalid);
    }

    #[test]
    fn smmuv3_ste_stage1_golden() {
        let ste = Ste::stage1(PhysAddr(0x4123_4540), true).unwrap();
        // V | Config 0b101 << 1 = 0xb; S1Fmt 0; S1ContextPtr = PA [51:6] in place; S1CDMax 0.
        assert_eq!(ste.words()[0], 0x4123_4540 | 0xb);
        // S1DSS 0, S1CIR 1 << 2, S1COR 1 << 4, S1CSH 3 << 6, S1STALLD 0, EATS 0, STRW 0.
        assert_eq!(ste.words()[1], (1 << 2) | (1 << 4) | (3 << 6));
        assert_eq!(ste.words()[1], 0xd4);
        assert_eq!(&ste.words()[2..], &[0; 6]);
        assert_eq!(
            ste.config(),
            SteConfig::Stage1 {
                cd: PhysAddr(0x4123_4540)
            }
        );
        // Non-coherent: CD fetches non-cacheable (S1CIR = S1COR = 0), outer shareable (2 << 6).
        let nc = Ste::stage1(PhysAddr(0x4123_4540), false).unwrap();
        assert_eq!(nc.words()[0], ste.words()[0]);
        assert_eq!(nc.words()[1], 2 << 6);
    }

    #[test]
    fn smmuv3_ste_stage1_refuses_bad_cd_addresses() {
        assert_eq!(
            Ste::stage1(PhysAddr(0x4000_0020), true),
            Err(SmmuError::Misaligned {
                what: Structure::ContextDescriptor,
                addr: PhysAddr(0x4000_0020),
                align: 64
            })
        );
        assert!(matches!(
            Ste::stage1(PhysAddr(1 << 52), true),
            Err(SmmuError::AddressTooWide { bits: 52, .. })
        ));
    }

    #[test]
    fn smmuv3_ste_other_configs_are_reported_raw() {
        assert_eq!(
            Ste::from_words([0b1101, 0, 0, 0, 0, 0, 0, 0]).config(),
            SteConfig::Other(0b110)
        );
    }

    #[test]
    fn smmuv3_ste_layout_qemu_is_two_level() {
        let f = Features::decode(&IdRegs::QEMU_VIRT_10_0);
        let l = StreamTableLayout::for_features(&f);
        assert_eq!((l.format(), l.sid_bits()), (StFormat::TwoLevel, 16));
        assert_eq!(l.table_bytes(), 2048);
        assert_eq!(l.l1_entries(), 256);
        // FMT = 1 at [17:16], SPLIT = 8 at [10:6], LOG2SIZE = 16.
        assert_eq!(l.base_cfg(), (1 << 16) | (8 << 6) | 16);
        assert_eq!(l.base_cfg(), 0x1_0210);
        assert_eq!(
            l.locate(StreamId(0x18)),
            Ok(SteIndex::TwoLevel { l1: 0, l2: 0x18 })
        );
        assert_eq!(
            l.locate(StreamId(0x1234)),
            Ok(SteIndex::TwoLevel { l1: 0x12, l2: 0x34 })
        );
        assert_eq!(
            l.locate(StreamId(0xffff)).unwrap().offsets(),
            (0xff * 8, Some(0xff * 64))
        );
        assert_eq!(
            l.locate(StreamId(0x1_0000)),
            Err(SmmuError::SidOutOfRange {
                sid: StreamId(0x1_0000),
                bits: 16
            })
        );
    }

    #[test]
    fn smmuv3_ste_layout_small_tables_are_linear() {
        // 2^10 STEs = 64 KiB: still linear.
        let l = StreamTableLayout::choose(10, true);
        assert_eq!((l.format(), l.sid_bits()), (StFormat::Linear, 10));
        assert_eq!(l.table_bytes(), 64 * 1024);
        assert_eq!(l.base_cfg(), 10);
        assert_eq!(l.locate(StreamId(0x3ff)), Ok(SteIndex::Linear(0x3ff)));
        assert_eq!(
            l.locate(StreamId(0x3ff)).unwrap().offsets(),
            (0x3ff * 64, None)
        );
        assert!(l.locate(StreamId(0x400)).is_err());
        // 2^11 with two-level support: two-level.
        assert_eq!(
            shape(StreamTableLayout::choose(11, true)),
            (StFormat::TwoLevel, 11)
        );
        // Zero StreamID bits: one STE.
        let one = StreamTableLayout::choose(0, true);
        assert_eq!(one.table_bytes(), 64);
        assert_eq!(one.locate(StreamId(0)), Ok(SteIndex::Linear(0)));
        assert!(one.locate(StreamId(1)).is_err());
    }

    #[test]
    fn smmuv3_ste_layout_caps_large_sid_spaces() {
        assert_eq!(
            shape(StreamTableLayout::choose(16, false)),
            (StFormat::Linear, 16)
        );
        assert_eq!(
            shape(StreamTableLayout::choose(32, false)),
            (StFormat::Linear, 16)
        );
        let l = StreamTableLayout::choose(32, true);
        assert_eq!(shape(l), (StFormat::TwoLevel, 21));
        assert_eq!(l.table_bytes(), 64 * 1024);
        assert!(l.locate(StreamId(u32::MAX)).is_err());
    }

    #[test]
    fn smmuv3_ste_base_register_value() {
        let l = StreamTableLayout::choose(16, true);
        // ADDR [51:6] in place, RA at bit 62.
        assert_eq!(l.base(PhysAddr(0x4000_0800)), Ok(0x4000_0800 | (1 << 62)));
        assert!(matches!(
            l.base(PhysAddr(0x4000_0400)),
            Err(SmmuError::Misaligned { align: 2048, .. })
        ));
        let tiny = StreamTableLayout::choose(0, true);
        assert_eq!(tiny.table_align(), 64);
        assert_eq!(tiny.base(PhysAddr(0x40)), Ok(0x40 | (1 << 62)));
    }

    #[test]
    fn smmuv3_ste_l1_descriptor_golden() {
        // Span = SPLIT + 1 = 9 in [4:0], L2Ptr [51:6] in place.
        assert_eq!(l1_descriptor(PhysAddr(0x4010_c000)), Ok(0x4010_c000 | 9));
        assert_eq!(L2_TABLE_BYTES, 16 * 1024);
        assert!(matches!(
            l1_descriptor(PhysAddr(0x4010_1000)),
            Err(SmmuError::Misaligned {
                what: Structure::L2StreamTable,
                align: 0x4000,
                ..
            })
        ));
    }
}
