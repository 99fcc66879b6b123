//! ESR_ELx decoding, Arm ARM DDI 0487 D23.2.41 (ESR_EL1): the exception class and, for aborts,
//! the fault status code, so a fault dump says "data abort, translation fault level 3, write"
//! rather than a hex number.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;

/// A decoded ESR value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Exception class, ESR[31:26].
    pub fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }
    /// Instruction-specific syndrome, ESR[24:0].
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }
    /// Human name of the exception class.
    pub fn class_name(self) -> &'static str {
        match self.ec() {
            0x00 => "unknown reason (undefined instruction)",
            0x01 => "trapped WFI/WFE",
            0x07 => "FP/SIMD access trapped",
            0x0e => "illegal execution state",
            0x15 => "SVC",
            0x16 => "HVC",
            0x17 => "SMC",
            0x18 => "trapped MSR/MRS/system instruction",
            0x20 => "instruction abort from a lower EL",
            0x21 => "instruction abort",
            0x22 => "PC alignment fault",
            0x24 => "data abort from a lower EL",
            0x25 => "data abort",
            0x26 => "SP alignment fault",
            0x2c => "floating-point exception",
            0x2f => "SError",
            0x30 | 0x31 => "breakpoint",
            0x32 | 0x33 => "software step",
            0x34 | 0x35 => "watchpoint",
            0x3c => "BRK instruction",
            _ => "reserved exception class",
        }
    }
    /// True for instruction and data aborts, whose ISS carries a fault status code.
    pub fn is_abort(self) -> bool {
        matches!(self.ec(), 0x20 | 0x21 | 0x24 | 0x25)
    }
    /// For data aborts: the access was a write (WnR, ISS bit 6).
    pub fn is_write(self) -> bool {
        matches!(self.ec(), 0x24 | 0x25) && self.iss() & (1 << 6) != 0
    }
    /// Fault status code (DFSC/IFSC, ISS[5:0]) decoded, for aborts.
    pub fn fault_status(self) -> Option<FaultStatus> {
        self.is_abort()
            .then(|| FaultStatus::decode((self.iss() & 0x3f) as u8))
    }
}

/// A decoded DFSC/IFSC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// Address size fault at a level.
    AddressSize(u8),
    /// Translation fault (no valid descriptor) at a level.
    Translation(u8),
    /// Access flag fault at a level.
    AccessFlag(u8),
    /// Permission fault at a level.
    Permission(u8),
    /// Synchronous external abort.
    External,
    /// Alignment fault.
    Alignment,
    /// TLB conflict abort.
    TlbConflict,
    /// Anything else, raw.
    Other(u8),
}

impl FaultStatus {
    /// Decodes a 6-bit fault status code.
    pub fn decode(fsc: u8) -> Self {
        let level = fsc & 3;
        match fsc & 0x3c {
            0x00 => FaultStatus::AddressSize(level),
            0x04 => FaultStatus::Translation(level),
            0x08 if level != 0 => FaultStatus::AccessFlag(level),
            0x0c => FaultStatus::Permission(level),
            _ => match fsc {
                0x10 => FaultStatus::External,
                0x21 => FaultStatus::Alignment,
                0x30 => FaultStatus::TlbConflict,
                other => FaultStatus::Other(other),
            },
        }
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultStatus::AddressSize(l) => write!(f, "address size fault, level {l}"),
            FaultStatus::Translation(l) => write!(f, "translation fault, level {l}"),
            FaultStatus::AccessFlag(l) => write!(f, "access flag fault, level {l}"),
            FaultStatus::Permission(l) => write!(f, "permission fault, level {l}"),
            FaultStatus::External => f.write_str("synchronous external abort"),
            FaultStatus::Alignment => f.write_str("alignment fault"),
            FaultStatus::TlbConflict => f.write_str("TLB conflict abort"),
            FaultStatus::Other(c) => write!(f, "fault status {c:#04x}"),
        }
    }
}

impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESR {:#010x}: EC {:#04x} {}",
            self.0,
            self.ec(),
            self.class_name()
        )?;
        if let Some(fs) = self.fault_status() {
            write!(f, ", {fs}")?;
            if matches!(self.ec(), 0x24 | 0x25) {
                f.write_str(if self.is_write() { ", write" } else { ", read" })?;
            }
        } else {
            write!(f, ", ISS {:#x}", self.iss())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_write_translation_level_1() {
        // EC 0x25, IL, WnR, DFSC 0b000101 (translation fault, level 1).
        let e = Esr((0x25 << 26) | (1 << 25) | (1 << 6) | 0x05);
        assert_eq!(e.fault_status(), Some(FaultStatus::Translation(1)));
        assert!(e.is_write());
        assert_eq!(
            e.to_string(),
            "ESR 0x96000045: EC 0x25 data abort, translation fault, level 1, write"
        );
    }

    #[test]
    fn undefined_instruction_and_brk() {
        assert_eq!(
            Esr(1 << 25).to_string(),
            "ESR 0x02000000: EC 0x00 unknown reason (undefined instruction), ISS 0x0"
        );
        let brk = Esr((0x3c << 26) | 0x1234);
        assert_eq!(brk.class_name(), "BRK instruction");
        assert_eq!(brk.iss(), 0x1234);
        assert_eq!(brk.fault_status(), None);
    }

    #[test]
    fn fault_status_codes() {
        assert_eq!(FaultStatus::decode(0x0f), FaultStatus::Permission(3));
        assert_eq!(FaultStatus::decode(0x0b), FaultStatus::AccessFlag(3));
        assert_eq!(FaultStatus::decode(0x21), FaultStatus::Alignment);
        assert_eq!(FaultStatus::decode(0x10), FaultStatus::External);
        assert_eq!(FaultStatus::decode(0x3f), FaultStatus::Other(0x3f));
    }
}
