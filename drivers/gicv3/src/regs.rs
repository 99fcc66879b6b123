//! GICv3 registers, Arm IHI 0069 (GIC architecture specification) chapter 12.
#![allow(non_snake_case)]

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    /// GICD_CTLR (§12.9.4), non-secure / single-security-state view.
    pub GICD_CTLR [
        /// Register write pending: set while a write to CTLR or ICENABLER is still taking effect.
        RWP OFFSET(31) NUMBITS(1) [],
        /// Security disabled (single security state, QEMU `virt` without `secure=on`).
        DS OFFSET(6) NUMBITS(1) [],
        /// Affinity routing enabled.
        ARE OFFSET(4) NUMBITS(1) [],
        /// Enable Group 1 interrupts.
        EnableGrp1 OFFSET(1) NUMBITS(1) [],
        /// Enable Group 0 interrupts.
        EnableGrp0 OFFSET(0) NUMBITS(1) []
    ],
    /// GICD_TYPER (§12.9.38).
    pub GICD_TYPER [
        /// Supported SPIs = 32 * (ITLinesNumber + 1), minus the reserved 1020-1023.
        ITLinesNumber OFFSET(0) NUMBITS(5) []
    ],
    /// GICR_WAKER (§12.11.42).
    pub GICR_WAKER [
        /// All interfaces to the connected PE are quiescent.
        ChildrenAsleep OFFSET(2) NUMBITS(1) [],
        /// The PE is asleep as far as the redistributor is concerned.
        ProcessorSleep OFFSET(1) NUMBITS(1) []
    ],
    /// GICR_CTLR (§12.11.2).
    pub GICR_CTLR [
        /// Register write pending.
        RWP OFFSET(3) NUMBITS(1) []
    ]
];

register_bitfields! [u64,
    /// GICR_TYPER (§12.11.35).
    pub GICR_TYPER [
        /// Affinity value of the PE this redistributor serves (Aff3.Aff2.Aff1.Aff0).
        Affinity_Value OFFSET(32) NUMBITS(32) [],
        /// Last redistributor in the region.
        Last OFFSET(4) NUMBITS(1) [],
        /// Virtual LPIs supported: the redistributor then has four 64 KiB frames instead of two.
        VLPIS OFFSET(1) NUMBITS(1) []
    ]
];

register_structs! {
    /// Distributor (GICD_*), 64 KiB.
    pub Gicd {
        (0x0000 => pub CTLR: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => pub TYPER: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => pub IIDR: ReadOnly<u32>),
        (0x000c => _reserved0),
        (0x0080 => pub IGROUPR: [ReadWrite<u32>; 32]),
        (0x0100 => pub ISENABLER: [ReadWrite<u32>; 32]),
        (0x0180 => pub ICENABLER: [ReadWrite<u32>; 32]),
        (0x0200 => pub ISPENDR: [ReadWrite<u32>; 32]),
        (0x0280 => pub ICPENDR: [ReadWrite<u32>; 32]),
        (0x0300 => pub ISACTIVER: [ReadWrite<u32>; 32]),
        (0x0380 => pub ICACTIVER: [ReadWrite<u32>; 32]),
        (0x0400 => pub IPRIORITYR: [ReadWrite<u8>; 1020]),
        (0x07fc => _reserved1),
        (0x0c00 => pub ICFGR: [ReadWrite<u32>; 64]),
        (0x0d00 => pub IGRPMODR: [ReadWrite<u32>; 32]),
        (0x0d80 => _reserved2),
        (0x6000 => pub IROUTER: [ReadWrite<u64>; 1020]),
        (0x7fe0 => _reserved3),
        (0xffe8 => pub PIDR2: ReadOnly<u32>),
        (0xffec => _reserved4),
        (0x10000 => @END),
    }
}

register_structs! {
    /// Redistributor control frame (RD_base), 64 KiB.
    pub GicrRd {
        (0x0000 => pub CTLR: ReadWrite<u32, GICR_CTLR::Register>),
        (0x0004 => pub IIDR: ReadOnly<u32>),
        (0x0008 => pub TYPER: ReadOnly<u64, GICR_TYPER::Register>),
        (0x0010 => pub STATUSR: ReadWrite<u32>),
        (0x0014 => pub WAKER: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => _reserved0),
        (0x10000 => @END),
    }
}

register_structs! {
    /// Redistributor SGI/PPI frame (SGI_base = RD_base + 64 KiB), 64 KiB.
    pub GicrSgi {
        (0x0000 => _reserved0),
        (0x0080 => pub IGROUPR0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => pub ISENABLER0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => pub ICENABLER0: WriteOnly<u32>),
        (0x0184 => _reserved3),
        (0x0200 => pub ISPENDR0: ReadWrite<u32>),
        (0x0204 => _reserved4),
        (0x0280 => pub ICPENDR0: WriteOnly<u32>),
        (0x0284 => _reserved5),
        (0x0400 => pub IPRIORITYR: [ReadWrite<u8>; 32]),
        (0x0420 => _reserved6),
        (0x0c00 => pub ICFGR: [ReadWrite<u32>; 2]),
        (0x0c08 => _reserved7),
        (0x0d00 => pub IGRPMODR0: ReadWrite<u32>),
        (0x0d04 => _reserved8),
        (0x10000 => @END),
    }
}

/// Size of one redistributor frame.
pub const FRAME_SIZE: u64 = 0x1_0000;
