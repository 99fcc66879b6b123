//! Context descriptors (IHI 0070 §5.4 "Context Descriptor").
//!
//! A CD describes one stage-1 address space: the translation table base (TTB0), its geometry
//! and walk attributes (the TCR fields), the ASID that tags its TLB entries and the MAIR that
//! gives meaning to the leaf descriptors' AttrIndx. This kernel uses one CD per DMA domain,
//! pointed at directly by the STE (S1CDMax = 0: no substreams), with only TTB0 in use.
//!
//! The MAIR is the kernel's own (boot/src/lib.rs `mair`): the IOMMU page tables use the same
//! AttrIndx values as the CPU tables, so a buffer has the same memory type for the CPU and for
//! the device.

use core::fmt;

use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::features::Oas;
use crate::{Asid, PhysAddr, SmmuError, Structure, check_pa};

register_bitfields! [u64,
    /// CD word 0: translation control, validity, ASID (§5.4).
    pub CD0 [
        /// Size offset of the TTB0 region: the IOVA space is 2^(64 - T0SZ) bytes.
        T0SZ OFFSET(0) NUMBITS(6) [],
        /// TTB0 granule.
        TG0 OFFSET(6) NUMBITS(2) [
            Granule4K = 0,
            Granule64K = 1,
            Granule16K = 2
        ],
        /// Inner cacheability of TTB0 walks.
        IR0 OFFSET(8) NUMBITS(2) [
            NonCacheable = 0,
            WriteBackAllocate = 1,
            WriteThrough = 2,
            WriteBackNoAllocate = 3
        ],
        /// Outer cacheability of TTB0 walks.
        OR0 OFFSET(10) NUMBITS(2) [
            NonCacheable = 0,
            WriteBackAllocate = 1,
            WriteThrough = 2,
            WriteBackNoAllocate = 3
        ],
        /// Shareability of TTB0 walks.
        SH0 OFFSET(12) NUMBITS(2) [
            NonShareable = 0,
            OuterShareable = 2,
            InnerShareable = 3
        ],
        /// 1 = no walks through TTB0 (translation faults instead).
        EPD0 OFFSET(14) NUMBITS(1) [],
        /// Endianness of the tables: 0 = little-endian.
        ENDI OFFSET(15) NUMBITS(1) [],
        /// Size offset of the TTB1 region.
        T1SZ OFFSET(16) NUMBITS(6) [],
        /// TTB1 granule.
        TG1 OFFSET(22) NUMBITS(2) [],
        /// Inner cacheability of TTB1 walks.
        IR1 OFFSET(24) NUMBITS(2) [],
        /// Outer cacheability of TTB1 walks.
        OR1 OFFSET(26) NUMBITS(2) [],
        /// Shareability of TTB1 walks.
        SH1 OFFSET(28) NUMBITS(2) [],
        /// 1 = no walks through TTB1 (the upper half of the address space is unused).
        EPD1 OFFSET(30) NUMBITS(1) [],
        /// Valid.
        V OFFSET(31) NUMBITS(1) [],
        /// Intermediate (output) physical address size, encoded as IDR5.OAS.
        IPS OFFSET(32) NUMBITS(3) [],
        /// Access flag fault disable: 1 = AF = 0 in a leaf is not a fault.
        AFFD OFFSET(35) NUMBITS(1) [],
        /// Write implies execute-never.
        WXN OFFSET(36) NUMBITS(1) [],
        /// Unprivileged write implies privileged execute-never.
        UWXN OFFSET(37) NUMBITS(1) [],
        /// Top byte ignore for TTB0 / TTB1.
        TBI OFFSET(38) NUMBITS(2) [],
        /// Privileged access never.
        PAN OFFSET(40) NUMBITS(1) [],
        /// 1 = VMSAv8-64 (AArch64) tables.
        AA64 OFFSET(41) NUMBITS(1) [],
        /// Hardware dirty-state update.
        HD OFFSET(42) NUMBITS(1) [],
        /// Hardware access-flag update.
        HA OFFSET(43) NUMBITS(1) [],
        /// Stall faulting transactions instead of terminating them.
        S OFFSET(44) NUMBITS(1) [],
        /// Record faults as events.
        R OFFSET(45) NUMBITS(1) [],
        /// Abort faulting transactions (instead of RAZ/WI).
        A OFFSET(46) NUMBITS(1) [],
        /// ASID set: 1 = the ASID is private to the SMMU (not shared with PE broadcast TLBIs).
        ASET OFFSET(47) NUMBITS(1) [],
        /// Address space identifier.
        ASID OFFSET(48) NUMBITS(16) []
    ],
    /// CD word 1: TTB0 (§5.4).
    pub CD1 [
        /// Physical address bits [51:4] of the TTB0 table.
        TTB0 OFFSET(4) NUMBITS(48) []
    ],
    /// CD word 2: TTB1 (§5.4).
    pub CD2 [
        /// Physical address bits [51:4] of the TTB1 table.
        TTB1 OFFSET(4) NUMBITS(48) []
    ]
];

/// Number of 64-bit words in a CD.
pub const CD_WORDS: usize = 8;
/// Size of a CD in bytes (also its required alignment).
pub const CD_SIZE: u64 = 64;
/// Index of the CD word holding the MAIR.
pub const CD_MAIR_WORD: usize = 3;

/// AttrIndx of Device-nGnRE memory (kernel MAIR index 0).
pub const MAIR_IDX_DEVICE_NGNRE: u64 = 0;
/// AttrIndx of Normal write-back read/write-allocate memory (kernel MAIR index 1).
pub const MAIR_IDX_NORMAL_WB: u64 = 1;
/// AttrIndx of Normal non-cacheable memory (kernel MAIR index 2).
pub const MAIR_IDX_NORMAL_NC: u64 = 2;
/// MAIR attribute byte: Device-nGnRE.
pub const MAIR_ATTR_DEVICE_NGNRE: u64 = 0x04;
/// MAIR attribute byte: Normal, inner/outer write-back non-transient read/write-allocate.
pub const MAIR_ATTR_NORMAL_WB: u64 = 0xff;
/// MAIR attribute byte: Normal, inner/outer non-cacheable.
pub const MAIR_ATTR_NORMAL_NC: u64 = 0x44;
/// The MAIR every CD carries: the same as MAIR_EL1 (boot/src/lib.rs `mair::MAIR_EL1`).
pub const MAIR: u64 = (MAIR_ATTR_DEVICE_NGNRE << (8 * MAIR_IDX_DEVICE_NGNRE))
    | (MAIR_ATTR_NORMAL_WB << (8 * MAIR_IDX_NORMAL_WB))
    | (MAIR_ATTR_NORMAL_NC << (8 * MAIR_IDX_NORMAL_NC));

/// IOVA sizes a CD with the 4 KiB granule can describe: T0SZ 16..=39 (without IDR3.STT, and
/// QEMU refuses anything else), i.e. 25- to 48-bit address spaces.
pub const IAS_BITS: core::ops::RangeInclusive<u32> = 25..=48;

/// What a stage-1 CD needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1 {
    /// ASID tagging the domain's TLB entries.
    pub asid: Asid,
    /// Physical address of the top-level translation table (4 KiB aligned).
    pub ttb0: PhysAddr,
    /// Size of the IOVA space in bits (48 for a four-level table starting at level 0).
    pub ias_bits: u32,
    /// Output address size of the tables (at most the SMMU's IDR5.OAS).
    pub oas: Oas,
    /// The SMMU's table walks are coherent with the CPU caches (IDR0.COHACC): walks are then
    /// write-back cacheable and inner shareable; otherwise non-cacheable and outer shareable,
    /// and the table code cleans every descriptor it writes to the point of coherency.
    pub coherent_walk: bool,
}

/// A context descriptor: eight words, word 0 first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cd([u64; CD_WORDS]);

impl Cd {
    /// All zeroes: V = 0, stage-1 traffic through it faults with C_BAD_CD.
    pub const fn invalid() -> Cd {
        Cd([0; CD_WORDS])
    }

    /// A valid CD for a 4 KiB-granule AArch64 table at `p.ttb0`: walks write-back cacheable and
    /// inner shareable when the SMMU is coherent, non-cacheable otherwise, TTB1 disabled
    /// (EPD1 = 1; QEMU validates TT1 otherwise), faults recorded (R) and aborted (A), stalls off,
    /// no hardware AF/dirty updates (leaves are written with AF = 1), private ASID (ASET = 1).
    pub fn stage1(p: &Stage1) -> Result<Cd, SmmuError> {
        if !IAS_BITS.contains(&p.ias_bits) {
            return Err(SmmuError::InputSize { bits: p.ias_bits });
        }
        check_pa(
            Structure::TranslationTable,
            p.ttb0,
            kapi::PAGE_SIZE,
            p.oas.bits(),
        )?;
        let walk = if p.coherent_walk {
            CD0::IR0::WriteBackAllocate + CD0::OR0::WriteBackAllocate + CD0::SH0::InnerShareable
        } else {
            CD0::IR0::NonCacheable + CD0::OR0::NonCacheable + CD0::SH0::OuterShareable
        };
        let w0 = CD0::T0SZ.val(u64::from(64 - p.ias_bits))
            + CD0::TG0::Granule4K
            + walk
            + CD0::EPD0::CLEAR
            + CD0::ENDI::CLEAR
            + CD0::EPD1::SET
            + CD0::V::SET
            + CD0::IPS.val(p.oas.field())
            + CD0::AFFD::CLEAR
            + CD0::TBI.val(0)
            + CD0::AA64::SET
            + CD0::HD::CLEAR
            + CD0::HA::CLEAR
            + CD0::S::CLEAR
            + CD0::R::SET
            + CD0::A::SET
            + CD0::ASET::SET
            + CD0::ASID.val(u64::from(p.asid.0));
        let mut words = [0; CD_WORDS];
        words[0] = w0.value;
        words[1] = CD1::TTB0.val(p.ttb0.0 >> 4).value;
        words[CD_MAIR_WORD] = MAIR;
        Ok(Cd(words))
    }

    /// A CD as read back from memory.
    pub const fn from_words(words: [u64; CD_WORDS]) -> Cd {
        Cd(words)
    }

    /// The words, word 0 first (store each little-endian).
    pub const fn words(&self) -> &[u64; CD_WORDS] {
        &self.0
    }

    /// True when V = 1.
    pub fn is_valid(&self) -> bool {
        LocalRegisterCopy::<u64, CD0::Register>::new(self.0[0]).is_set(CD0::V)
    }

    /// The ASID in word 0.
    pub fn asid(&self) -> Asid {
        Asid(LocalRegisterCopy::<u64, CD0::Register>::new(self.0[0]).read(CD0::ASID) as u16)
    }

    /// The TTB0 address in word 1.
    pub fn ttb0(&self) -> PhysAddr {
        PhysAddr(LocalRegisterCopy::<u64, CD1::Register>::new(self.0[1]).read(CD1::TTB0) << 4)
    }
}

impl fmt::Debug for Cd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cd(")?;
        crate::fmt_words(f, &self.0)?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_domain() -> Stage1 {
        Stage1 {
            asid: Asid(1),
            ttb0: PhysAddr(0x4080_0000),
            ias_bits: 48,
            oas: Oas::Bits44,
            coherent_walk: true,
        }
    }

    #[test]
    fn smmuv3_cd_mair_matches_the_kernel_mair_el1() {
        // boot::mair::MAIR_EL1 = 0x04 | 0xff << 8 | 0x44 << 16.
        assert_eq!(MAIR, 0x0044_ff04);
    }

    #[test]
    fn smmuv3_cd_stage1_golden() {
        let cd = Cd::stage1(&qemu_domain()).unwrap();
        let w = cd.words();
        // T0SZ 16 (0x10) | IR0 1 << 8 | OR0 1 << 10 | SH0 3 << 12 | EPD1 1 << 30 | V 1 << 31
        //   = 0xc000_3510 in the low half;
        // IPS 4 << 32 | AA64 1 << 41 | R 1 << 45 | A 1 << 46 | ASET 1 << 47 | ASID 1 << 48
        //   = 0x0001_e204 in the high half.
        assert_eq!(w[0], 0x0001_e204_c000_3510);
        assert_eq!(w[1], 0x4080_0000);
        assert_eq!(w[2], 0);
        assert_eq!(w[3], 0x0044_ff04);
        assert_eq!(&w[4..], &[0; 4]);
        assert!(cd.is_valid());
        assert_eq!(cd.asid(), Asid(1));
        assert_eq!(cd.ttb0(), PhysAddr(0x4080_0000));
    }

    #[test]
    fn smmuv3_cd_t0sz_and_ips_follow_the_parameters() {
        let cd = Cd::stage1(&Stage1 {
            asid: Asid(0xbeef),
            ias_bits: 39,
            oas: Oas::Bits48,
            ..qemu_domain()
        })
        .unwrap();
        let w0 = cd.words()[0];
        assert_eq!(w0 & 0x3f, 25);
        assert_eq!((w0 >> 32) & 0x7, 5);
        assert_eq!(w0 >> 48, 0xbeef);
        assert_eq!(cd.asid(), Asid(0xbeef));
    }

    #[test]
    fn smmuv3_cd_refuses_what_the_smmu_would_reject() {
        for bits in [24, 49, 52] {
            assert_eq!(
                Cd::stage1(&Stage1 {
                    ias_bits: bits,
                    ..qemu_domain()
                }),
                Err(SmmuError::InputSize { bits })
            );
        }
        assert!(matches!(
            Cd::stage1(&Stage1 {
                ttb0: PhysAddr(0x4080_0800),
                ..qemu_domain()
            }),
            Err(SmmuError::Misaligned {
                what: Structure::TranslationTable,
                align: 4096,
                ..
            })
        ));
        assert!(matches!(
            Cd::stage1(&Stage1 {
                ttb0: PhysAddr(1 << 44),
                ..qemu_domain()
            }),
            Err(SmmuError::AddressTooWide { bits: 44, .. })
        ));
    }

    #[test]
    fn smmuv3_cd_non_coherent_walks_are_non_cacheable() {
        let cd = Cd::stage1(&Stage1 {
            coherent_walk: false,
            ..qemu_domain()
        })
        .unwrap();
        // IR0 = OR0 = 0 (non-cacheable), SH0 = 2 (outer shareable) at [13:12].
        assert_eq!(cd.words()[0] & 0x3f00, 0x2000);
        assert_eq!(
            cd.words()[0] & !0x3f00,
            Cd::stage1(&qemu_domain()).unwrap().words()[0] & !0x3f00
        );
    }

    #[test]
    fn smmuv3_cd_invalid_is_zero() {
        assert_eq!(Cd::invalid().words(), &[0; 8]);
        assert!(!Cd::invalid().is_valid());
    }
}
