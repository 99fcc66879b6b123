//! What an SMMU implements, decoded from its ID registers (IHI 0070 §6.3: SMMU_IDR0, SMMU_IDR1,
//! SMMU_IDR3, SMMU_IDR5, SMMU_AIDR), and the check of what this kernel needs.
//!
//! The decoding is total: reserved encodings map to the most conservative meaning (a reserved
//! OAS is read as 48 bits, reserved TTF/TTENDIAN values as "not usable"), so data from the device
//! never makes the driver panic; [`Features::check`] then refuses what the kernel cannot use.

use core::fmt;

use tock_registers::LocalRegisterCopy;

use crate::regs::{AIDR, IDR0, IDR1, IDR3, IDR5};
use crate::{Requirement, SmmuError};

/// Raw values of the ID registers the driver reads at probe time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRegs {
    /// SMMU_IDR0.
    pub idr0: u32,
    /// SMMU_IDR1.
    pub idr1: u32,
    /// SMMU_IDR3.
    pub idr3: u32,
    /// SMMU_IDR5.
    pub idr5: u32,
    /// SMMU_AIDR.
    pub aidr: u32,
}

impl IdRegs {
    /// The values QEMU 10.0.2 `-M virt,iommu=smmuv3` reports (measured), for tests.
    pub const QEMU_VIRT_10_0: IdRegs = IdRegs {
        idr0: 0x0D44_101B,
        idr1: 0x0273_0010,
        idr3: 0x1414,
        idr5: 0x74,
        aidr: 1,
    };
}

/// Output (physical) address size, IDR5.OAS; the same encoding is used for CD.IPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Oas {
    /// 32 bits, 4 GiB.
    Bits32,
    /// 36 bits, 64 GiB.
    Bits36,
    /// 40 bits, 1 TiB.
    Bits40,
    /// 42 bits, 4 TiB.
    Bits42,
    /// 44 bits, 16 TiB.
    Bits44,
    /// 48 bits, 256 TiB.
    Bits48,
    /// 52 bits, 4 PiB (SMMUv3.1+).
    Bits52,
}

impl Oas {
    /// Decodes the 3-bit field; the reserved value 7 is read as 48 bits (the largest size every
    /// granule supports), which is what Linux does too.
    pub fn from_field(value: u32) -> Oas {
        match value {
            0 => Oas::Bits32,
            1 => Oas::Bits36,
            2 => Oas::Bits40,
            3 => Oas::Bits42,
            4 => Oas::Bits44,
            6 => Oas::Bits52,
            _ => Oas::Bits48,
        }
    }

    /// The field encoding (IDR5.OAS, CD.IPS, STE.S2PS).
    pub fn field(self) -> u64 {
        match self {
            Oas::Bits32 => 0,
            Oas::Bits36 => 1,
            Oas::Bits40 => 2,
            Oas::Bits42 => 3,
            Oas::Bits44 => 4,
            Oas::Bits48 => 5,
            Oas::Bits52 => 6,
        }
    }

    /// Number of address bits.
    pub fn bits(self) -> u32 {
        match self {
            Oas::Bits32 => 32,
            Oas::Bits36 => 36,
            Oas::Bits40 => 40,
            Oas::Bits42 => 42,
            Oas::Bits44 => 44,
            Oas::Bits48 => 48,
            Oas::Bits52 => 52,
        }
    }
}

/// The features the driver cares about, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// AIDR.ArchMajorRev (0 = SMMUv3).
    pub arch_major: u8,
    /// AIDR.ArchMinorRev (1 = SMMUv3.1).
    pub arch_minor: u8,
    /// IDR0.S1P.
    pub stage1: bool,
    /// IDR0.S2P.
    pub stage2: bool,
    /// IDR0.TTF allows AArch64 tables.
    pub aarch64_tables: bool,
    /// IDR0.COHACC: table, queue and page-table walks are coherent with the CPU caches.
    pub coherent: bool,
    /// IDR0.BTM: the SMMU snoops broadcast TLB maintenance.
    pub btm: bool,
    /// IDR0.HYP: EL2 regime (needed only with E2H).
    pub hyp: bool,
    /// IDR0.ATS.
    pub ats: bool,
    /// IDR0.PRI.
    pub pri: bool,
    /// IDR0.ASID16: 16-bit ASIDs.
    pub asid16: bool,
    /// IDR0.VMID16: 16-bit VMIDs.
    pub vmid16: bool,
    /// IDR0.MSI: MSI signalling (otherwise the wired interrupts only).
    pub msi: bool,
    /// IDR0.SEV: CMD_SYNC can send SEV.
    pub sev: bool,
    /// IDR0.CD2L: two-level CD tables.
    pub cd2l: bool,
    /// IDR0.TTENDIAN allows little-endian tables (Mixed or LittleEndian).
    pub little_endian: bool,
    /// IDR0.ST_LEVEL: two-level stream tables.
    pub two_level_st: bool,
    /// IDR1.SIDSIZE: StreamID bits.
    pub sid_bits: u32,
    /// IDR1.SSIDSIZE: SubstreamID bits (0: no substreams).
    pub ssid_bits: u32,
    /// IDR1.CMDQS: log2 of the largest command queue.
    pub cmdq_log2max: u32,
    /// IDR1.EVENTQS: log2 of the largest event queue.
    pub eventq_log2max: u32,
    /// IDR1.PRIQS: log2 of the largest PRI queue.
    pub priq_log2max: u32,
    /// IDR1.TABLES_PRESET: the stream table base is fixed.
    pub tables_preset: bool,
    /// IDR1.QUEUES_PRESET: the queue bases are fixed.
    pub queues_preset: bool,
    /// IDR3.RIL: range TLB invalidation.
    pub ril: bool,
    /// IDR3.BBML: how a block may be replaced by a table (2: directly, no break-before-make).
    pub bbml: u32,
    /// IDR0.STALL_MODEL = stall forced: faulting transactions always stall, so every CD would
    /// need S = 1 and software to resume or terminate each one.
    pub stall_forced: bool,
    /// IDR5.OAS.
    pub oas: Oas,
    /// IDR5.GRAN4K.
    pub gran4k: bool,
    /// IDR5.GRAN16K.
    pub gran16k: bool,
    /// IDR5.GRAN64K.
    pub gran64k: bool,
}

impl Features {
    /// Decodes the ID registers.
    pub fn decode(regs: &IdRegs) -> Features {
        let idr0 = LocalRegisterCopy::<u32, IDR0::Register>::new(regs.idr0);
        let idr1 = LocalRegisterCopy::<u32, IDR1::Register>::new(regs.idr1);
        let idr3 = LocalRegisterCopy::<u32, IDR3::Register>::new(regs.idr3);
        let idr5 = LocalRegisterCopy::<u32, IDR5::Register>::new(regs.idr5);
        let aidr = LocalRegisterCopy::<u32, AIDR::Register>::new(regs.aidr);
        Features {
            arch_major: aidr.read(AIDR::ArchMajorRev) as u8,
            arch_minor: aidr.read(AIDR::ArchMinorRev) as u8,
            stage1: idr0.is_set(IDR0::S1P),
            stage2: idr0.is_set(IDR0::S2P),
            aarch64_tables: matches!(
                idr0.read_as_enum(IDR0::TTF),
                Some(IDR0::TTF::Value::AArch64 | IDR0::TTF::Value::AArch32AndAArch64)
            ),
            coherent: idr0.is_set(IDR0::COHACC),
            btm: idr0.is_set(IDR0::BTM),
            hyp: idr0.is_set(IDR0::HYP),
            ats: idr0.is_set(IDR0::ATS),
            pri: idr0.is_set(IDR0::PRI),
            asid16: idr0.is_set(IDR0::ASID16),
            vmid16: idr0.is_set(IDR0::VMID16),
            msi: idr0.is_set(IDR0::MSI),
            sev: idr0.is_set(IDR0::SEV),
            cd2l: idr0.is_set(IDR0::CD2L),
            little_endian: matches!(
                idr0.read_as_enum(IDR0::TTENDIAN),
                Some(IDR0::TTENDIAN::Value::Mixed | IDR0::TTENDIAN::Value::LittleEndian)
            ),
            two_level_st: matches!(
                idr0.read_as_enum(IDR0::ST_LEVEL),
                Some(IDR0::ST_LEVEL::Value::TwoLevel)
            ),
            sid_bits: idr1.read(IDR1::SIDSIZE),
            ssid_bits: idr1.read(IDR1::SSIDSIZE),
            cmdq_log2max: idr1.read(IDR1::CMDQS),
            eventq_log2max: idr1.read(IDR1::EVENTQS),
            priq_log2max: idr1.read(IDR1::PRIQS),
            tables_preset: idr1.is_set(IDR1::TABLES_PRESET),
            queues_preset: idr1.is_set(IDR1::QUEUES_PRESET),
            ril: idr3.is_set(IDR3::RIL),
            bbml: idr3.read(IDR3::BBML),
            stall_forced: matches!(
                idr0.read_as_enum(IDR0::STALL_MODEL),
                Some(IDR0::STALL_MODEL::Value::StallForced)
            ),
            oas: Oas::from_field(idr5.read(IDR5::OAS)),
            gran4k: idr5.is_set(IDR5::GRAN4K),
            gran16k: idr5.is_set(IDR5::GRAN16K),
            gran64k: idr5.is_set(IDR5::GRAN64K),
        }
    }

    /// Refuses an SMMU this kernel cannot drive: DMA domains are stage 1 with VMSAv8-64,
    /// 4 KiB-granule, little-endian tables (the kernel's own page-table format), faults
    /// terminate (the driver never resumes stalled transactions), and the driver places the
    /// stream table and the queues itself.
    pub fn check(&self) -> Result<(), SmmuError> {
        let needs = [
            (self.stage1, Requirement::Stage1),
            (self.aarch64_tables, Requirement::AArch64Tables),
            (self.gran4k, Requirement::Granule4K),
            (self.little_endian, Requirement::LittleEndian),
            (!self.stall_forced, Requirement::TerminatingFaults),
            (
                !self.tables_preset && !self.queues_preset,
                Requirement::ProgrammableBases,
            ),
        ];
        match needs.iter().find(|(present, _)| !present) {
            Some((_, missing)) => Err(SmmuError::Unsupported(*missing)),
            None => Ok(()),
        }
    }

    /// Number of ASIDs the SMMU tags TLB entries with (2^16 or 2^8).
    pub fn asid_bits(&self) -> u32 {
        if self.asid16 { 16 } else { 8 }
    }
}

/// One line for the probe log, e.g.
/// `SMMUv3.1, S1+S2, 4K/16K/64K, OAS 44, SIDSIZE 16, 2-level ST, CMDQS 19, EVENTQS 19, ASID16, RIL, COHACC`:
/// version, stages, granules, OAS, SIDSIZE (and SSIDSIZE when non-zero), stream table formats,
/// the hardware queue limits, then the flags that change what the driver does when present
/// (16-bit ASIDs, range invalidation, coherent walks, MSI, ATS, PRI, BTM).
impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.arch_major == 0 {
            write!(f, "SMMUv3.{}", self.arch_minor)?;
        } else {
            write!(f, "SMMU arch {}.{}", self.arch_major, self.arch_minor)?;
        }
        f.write_str(match (self.stage1, self.stage2) {
            (true, true) => ", S1+S2",
            (true, false) => ", S1",
            (false, true) => ", S2",
            (false, false) => ", no stages",
        })?;
        let granules = [
            (self.gran4k, "4K"),
            (self.gran16k, "16K"),
            (self.gran64k, "64K"),
        ];
        let mut sep = ", ";
        for (_, name) in granules.iter().filter(|(present, _)| *present) {
            write!(f, "{sep}{name}")?;
            sep = "/";
        }
        write!(f, ", OAS {}, SIDSIZE {}", self.oas.bits(), self.sid_bits)?;
        if self.ssid_bits != 0 {
            write!(f, ", SSIDSIZE {}", self.ssid_bits)?;
        }
        f.write_str(if self.two_level_st {
            ", 2-level ST"
        } else {
            ", linear ST"
        })?;
        write!(
            f,
            ", CMDQS {}, EVENTQS {}",
            self.cmdq_log2max, self.eventq_log2max
        )?;
        let flags = [
            (self.asid16, "ASID16"),
            (self.ril, "RIL"),
            (self.coherent, "COHACC"),
            (self.msi, "MSI"),
            (self.ats, "ATS"),
            (self.pri, "PRI"),
            (self.btm, "BTM"),
        ];
        for (_, name) in flags.iter().filter(|(present, _)| *present) {
            write!(f, ", {name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn smmuv3_features_qemu_values_decode() {
        let f = Features::decode(&IdRegs::QEMU_VIRT_10_0);
        assert_eq!((f.arch_major, f.arch_minor), (0, 1));
        assert!(f.stage1 && f.stage2 && f.aarch64_tables && f.coherent);
        assert!(!f.btm && !f.hyp && !f.ats && !f.pri && !f.msi && !f.sev && !f.cd2l);
        assert!(f.asid16 && f.vmid16 && f.little_endian && f.two_level_st);
        assert_eq!((f.sid_bits, f.ssid_bits), (16, 0));
        assert_eq!(
            (f.cmdq_log2max, f.eventq_log2max, f.priq_log2max),
            (19, 19, 0)
        );
        assert!(!f.tables_preset && !f.queues_preset);
        assert!(f.ril);
        assert_eq!(f.bbml, 2);
        assert!(!f.stall_forced);
        assert_eq!(f.oas, Oas::Bits44);
        assert!(f.gran4k && f.gran16k && f.gran64k);
        assert_eq!(f.asid_bits(), 16);
        assert_eq!(f.check(), Ok(()));
    }

    #[test]
    fn smmuv3_features_qemu_summary_line() {
        let f = Features::decode(&IdRegs::QEMU_VIRT_10_0);
        let line = f.to_string();
        assert!(line.starts_with("SMMUv3.1, S1+S2, 4K/16K/64K, OAS 44, SIDSIZE 16, 2-level ST"));
        assert_eq!(
            line,
            "SMMUv3.1, S1+S2, 4K/16K/64K, OAS 44, SIDSIZE 16, 2-level ST, CMDQS 19, EVENTQS 19, \
             ASID16, RIL, COHACC"
        );
    }

    #[test]
    fn smmuv3_features_qemu_9_1_is_stage1_only() {
        let f = Features::decode(&IdRegs {
            idr0: 0x0D44_101A,
            idr3: 0x1404,
            ..IdRegs::QEMU_VIRT_10_0
        });
        assert!(f.stage1 && !f.stage2);
        assert!(f.to_string().starts_with("SMMUv3.1, S1, 4K/16K/64K"));
        assert_eq!(f.check(), Ok(()));
    }

    #[test]
    fn smmuv3_features_minimal_smmu_summary() {
        // S1 only, AArch64 tables, linear ST, 4K only, OAS 48, 8-bit SIDs, 4-bit SSIDs, MSI.
        let f = Features::decode(&IdRegs {
            idr0: (1 << 1) | (2 << 2) | (1 << 13),
            idr1: 8 | (4 << 6) | (8 << 16) | (8 << 21),
            idr3: 0,
            idr5: 5 | (1 << 4),
            aidr: 0,
        });
        assert_eq!(
            f.to_string(),
            "SMMUv3.0, S1, 4K, OAS 48, SIDSIZE 8, SSIDSIZE 4, linear ST, CMDQS 8, EVENTQS 8, MSI"
        );
        assert_eq!(f.asid_bits(), 8);
        assert_eq!(f.check(), Ok(()));
    }

    #[test]
    fn smmuv3_features_check_names_the_first_missing_requirement() {
        let base = IdRegs::QEMU_VIRT_10_0;
        let no_s1 = IdRegs {
            idr0: base.idr0 & !(1 << 1),
            ..base
        };
        assert_eq!(
            Features::decode(&no_s1).check(),
            Err(SmmuError::Unsupported(Requirement::Stage1))
        );
        let aarch32_only = IdRegs {
            idr0: (base.idr0 & !(3 << 2)) | (1 << 2),
            ..base
        };
        assert_eq!(
            Features::decode(&aarch32_only).check(),
            Err(SmmuError::Unsupported(Requirement::AArch64Tables))
        );
        let no_4k = IdRegs {
            idr5: base.idr5 & !(1 << 4),
            ..base
        };
        assert_eq!(
            Features::decode(&no_4k).check(),
            Err(SmmuError::Unsupported(Requirement::Granule4K))
        );
        let big_endian = IdRegs {
            idr0: base.idr0 | (3 << 21),
            ..base
        };
        assert_eq!(
            Features::decode(&big_endian).check(),
            Err(SmmuError::Unsupported(Requirement::LittleEndian))
        );
        let mixed = IdRegs {
            idr0: base.idr0 & !(3 << 21),
            ..base
        };
        assert_eq!(Features::decode(&mixed).check(), Ok(()));
        let stall_forced = IdRegs {
            idr0: (base.idr0 & !(3 << 24)) | (2 << 24),
            ..base
        };
        assert_eq!(
            Features::decode(&stall_forced).check(),
            Err(SmmuError::Unsupported(Requirement::TerminatingFaults))
        );
        let preset = IdRegs {
            idr1: base.idr1 | (1 << 29),
            ..base
        };
        assert_eq!(
            Features::decode(&preset).check(),
            Err(SmmuError::Unsupported(Requirement::ProgrammableBases))
        );
    }

    #[test]
    fn smmuv3_features_oas_encodings() {
        let all = [
            (0, 32),
            (1, 36),
            (2, 40),
            (3, 42),
            (4, 44),
            (5, 48),
            (6, 52),
        ];
        for (field, bits) in all {
            let oas = Oas::from_field(field);
            assert_eq!(oas.bits(), bits);
            assert_eq!(oas.field(), u64::from(field));
        }
        assert_eq!(Oas::from_field(7), Oas::Bits48);
    }
}
