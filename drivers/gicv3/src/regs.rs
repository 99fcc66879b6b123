//! GICv3 registers, Arm IHI 0069 (GIC architecture specification) chapter 12.
//!
//! Distributor (§12.9), redistributor (§12.11) and ITS (§12.19, "The ITS register descriptions";
//! register names are stable across spec revisions, subsection numbers are not, so ITS fields
//! cite the register by name). Memory attributes of the GIC's table base registers share one
//! encoding, declared once per register because tock-registers fields belong to one register.
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
        /// Interrupt ID bits supported, minus one (INTIDs < 2^(IDbits + 1)); at least 13 with LPIs.
        IDbits OFFSET(19) NUMBITS(5) [],
        /// The GIC supports LPIs (and so an ITS or direct LPI injection can be used).
        LPIS OFFSET(17) NUMBITS(1) [],
        /// 0: LPIs are bounded by IDbits only; otherwise 2^(num_LPIs + 1) LPIs are implemented.
        num_LPIs OFFSET(11) NUMBITS(5) [],
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
        /// Upstream write pending (a write to the distributor or ITS is still in flight).
        UWP OFFSET(31) NUMBITS(1) [],
        /// Register write pending: set while clearing EnableLPIs (or a DPG change) takes effect.
        RWP OFFSET(3) NUMBITS(1) [],
        /// LPIs are enabled: the redistributor uses GICR_PROPBASER/GICR_PENDBASER from now on.
        /// Whether it can be cleared again once set is IMPLEMENTATION DEFINED.
        EnableLPIs OFFSET(0) NUMBITS(1) []
    ],
    /// GITS_CTLR (§12.19, GITS_CTLR).
    pub GITS_CTLR [
        /// The ITS has finished all work: no commands, translations or table writes in flight.
        /// Tables and the command queue may be reprogrammed only while this reads 1.
        Quiescent OFFSET(31) NUMBITS(1) [],
        /// GICv4.1: the ITS is used for unmapped MSIs (RES0 here).
        UMSIirq OFFSET(8) NUMBITS(1) [],
        /// GICv4.1: ITS number in a multi-ITS system (RES0 here).
        ITS_Number OFFSET(4) NUMBITS(4) [],
        /// GICv4.1: immediate-doorbell enable (RES0 here).
        ImDe OFFSET(1) NUMBITS(1) [],
        /// The ITS translates MSIs and processes commands. Clearing it starts quiescing.
        Enabled OFFSET(0) NUMBITS(1) []
    ],
    /// GITS_IIDR (§12.19, GITS_IIDR).
    pub GITS_IIDR [
        /// Implementation-defined product identifier.
        ProductID OFFSET(24) NUMBITS(8) [],
        /// Major revision.
        Variant OFFSET(16) NUMBITS(4) [],
        /// Minor revision.
        Revision OFFSET(12) NUMBITS(4) [],
        /// JEP106 code of the implementer (0x43b: Arm).
        Implementer OFFSET(0) NUMBITS(12) []
    ]
];

register_bitfields! [u64,
    /// GICR_TYPER (§12.11.35).
    pub GICR_TYPER [
        /// Affinity value of the PE this redistributor serves (Aff3.Aff2.Aff1.Aff0).
        Affinity_Value OFFSET(32) NUMBITS(32) [],
        /// Processor number: the ITS's name for this redistributor when GITS_TYPER.PTA = 0.
        Processor_Number OFFSET(8) NUMBITS(16) [],
        /// Last redistributor in the region.
        Last OFFSET(4) NUMBITS(1) [],
        /// Direct LPIs supported (GICR_SETLPIR, GICR_INVLPIR...).
        DirectLPI OFFSET(3) NUMBITS(1) [],
        /// Virtual LPIs supported: the redistributor then has four 64 KiB frames instead of two.
        VLPIS OFFSET(1) NUMBITS(1) [],
        /// Physical LPIs supported.
        PLPIS OFFSET(0) NUMBITS(1) []
    ],
    /// GICR_PROPBASER (§12.11, GICR_PROPBASER): the LPI configuration table. Written only while
    /// GICR_CTLR.EnableLPIs = 0.
    pub GICR_PROPBASER [
        /// Outer cacheability of table accesses (0 = same as InnerCache).
        OuterCache OFFSET(56) NUMBITS(3) [
            SameAsInner = 0,
            NonCacheable = 1,
            RaWaWb = 7
        ],
        /// Physical address bits [51:12] of the table (4 KiB aligned).
        Physical_Address OFFSET(12) NUMBITS(40) [],
        /// Shareability of table accesses; reads back 0 when the GIC cannot snoop caches.
        Shareability OFFSET(10) NUMBITS(2) [
            NonShareable = 0,
            InnerShareable = 1,
            OuterShareable = 2
        ],
        /// Inner cacheability of table accesses.
        InnerCache OFFSET(7) NUMBITS(3) [
            DeviceNGnRnE = 0,
            NonCacheable = 1,
            RaWt = 2,
            RaWb = 3,
            WaWt = 4,
            WaWb = 5,
            RaWaWt = 6,
            RaWaWb = 7
        ],
        /// LPI INTID bits, minus one: the table covers INTIDs 8192 .. 2^(IDbits + 1).
        IDbits OFFSET(0) NUMBITS(5) []
    ],
    /// GICR_PENDBASER (§12.11, GICR_PENDBASER): the LPI pending table. Written only while
    /// GICR_CTLR.EnableLPIs = 0.
    pub GICR_PENDBASER [
        /// Pending table zero: software promises the table is all zeros, so the GIC need not scan it.
        PTZ OFFSET(62) NUMBITS(1) [],
        /// Outer cacheability of table accesses (0 = same as InnerCache).
        OuterCache OFFSET(56) NUMBITS(3) [
            SameAsInner = 0,
            NonCacheable = 1,
            RaWaWb = 7
        ],
        /// Physical address bits [51:16] of the table (64 KiB aligned).
        Physical_Address OFFSET(16) NUMBITS(36) [],
        /// Shareability of table accesses; reads back 0 when the GIC cannot snoop caches.
        Shareability OFFSET(10) NUMBITS(2) [
            NonShareable = 0,
            InnerShareable = 1,
            OuterShareable = 2
        ],
        /// Inner cacheability of table accesses.
        InnerCache OFFSET(7) NUMBITS(3) [
            DeviceNGnRnE = 0,
            NonCacheable = 1,
            RaWt = 2,
            RaWb = 3,
            WaWt = 4,
            WaWb = 5,
            RaWaWt = 6,
            RaWaWb = 7
        ]
    ],
    /// GITS_TYPER (§12.19, GITS_TYPER): what the ITS implements.
    pub GITS_TYPER [
        /// GICv4.1: GITS_INVR/GITS_INVLPIR-style direct invalidation supported.
        INV OFFSET(46) NUMBITS(1) [],
        /// GICv4.1: unmapped MSIs can raise an interrupt.
        UMSIirq OFFSET(45) NUMBITS(1) [],
        /// GICv4.1: unmapped MSIs are reported.
        UMSI OFFSET(44) NUMBITS(1) [],
        /// RAS: no additional DeviceID/EventID checking.
        nID OFFSET(43) NUMBITS(1) [],
        /// GICv4.1: how vPE tables are shared with the redistributors.
        SVPET OFFSET(41) NUMBITS(2) [],
        /// GICv4.1: VMAPP with the extra fields.
        VMAPP OFFSET(40) NUMBITS(1) [],
        /// GICv4.1: virtual SGIs.
        VSGI OFFSET(39) NUMBITS(1) [],
        /// MPAM supported.
        MPAM OFFSET(38) NUMBITS(1) [],
        /// VMOVP needs no cross-ITS synchronisation.
        VMOVP OFFSET(37) NUMBITS(1) [],
        /// Collection ID limit: 1 = CIDbits gives the collection ID width, 0 = 16 bits.
        CIL OFFSET(36) NUMBITS(1) [],
        /// Collection ID bits, minus one (valid when CIL = 1).
        CIDbits OFFSET(32) NUMBITS(4) [],
        /// Hardware collection count: collections held without a collection table.
        HCC OFFSET(24) NUMBITS(8) [],
        /// Physical target addresses: 1 = RDbase is the redistributor's physical address,
        /// 0 = RDbase is its processor number (GICR_TYPER.Processor_Number).
        PTA OFFSET(19) NUMBITS(1) [],
        /// Generates SErrors on command errors.
        SEIS OFFSET(18) NUMBITS(1) [],
        /// DeviceID bits, minus one.
        Devbits OFFSET(13) NUMBITS(5) [],
        /// EventID bits, minus one.
        ID_bits OFFSET(8) NUMBITS(5) [],
        /// Bytes per interrupt translation table entry, minus one.
        ITT_entry_size OFFSET(4) NUMBITS(4) [],
        /// Cumulative collection tables.
        CCT OFFSET(2) NUMBITS(1) [],
        /// Virtual LPIs (GICv4) supported.
        Virtual OFFSET(1) NUMBITS(1) [],
        /// Physical LPIs supported.
        Physical OFFSET(0) NUMBITS(1) []
    ],
    /// GITS_CBASER (§12.19, GITS_CBASER): the command queue. Written only while the ITS is
    /// disabled and quiescent; writing it resets GITS_CREADR to 0.
    pub GITS_CBASER [
        /// The command queue is valid.
        Valid OFFSET(63) NUMBITS(1) [],
        /// Inner cacheability of queue accesses.
        InnerCache OFFSET(59) NUMBITS(3) [
            DeviceNGnRnE = 0,
            NonCacheable = 1,
            RaWt = 2,
            RaWb = 3,
            WaWt = 4,
            WaWb = 5,
            RaWaWt = 6,
            RaWaWb = 7
        ],
        /// Outer cacheability of queue accesses (0 = same as InnerCache).
        OuterCache OFFSET(53) NUMBITS(3) [
            SameAsInner = 0,
            NonCacheable = 1,
            RaWaWb = 7
        ],
        /// Physical address bits [51:12] of the queue (4 KiB aligned).
        Physical_Address OFFSET(12) NUMBITS(40) [],
        /// Shareability of queue accesses; reads back 0 when the ITS cannot snoop caches.
        Shareability OFFSET(10) NUMBITS(2) [
            NonShareable = 0,
            InnerShareable = 1,
            OuterShareable = 2
        ],
        /// Queue size in 4 KiB pages, minus one.
        Size OFFSET(0) NUMBITS(8) []
    ],
    /// GITS_CWRITER (§12.19, GITS_CWRITER): where software will write the next command.
    pub GITS_CWRITER [
        /// Command index (byte offset / 32) of the next command to write.
        Offset OFFSET(5) NUMBITS(15) [],
        /// Write 1 to retry the command the ITS stalled on.
        Retry OFFSET(0) NUMBITS(1) []
    ],
    /// GITS_CREADR (§12.19, GITS_CREADR): where the ITS will read the next command.
    pub GITS_CREADR [
        /// Command index (byte offset / 32) of the next command the ITS will process.
        Offset OFFSET(5) NUMBITS(15) [],
        /// The ITS stopped at the command at Offset because of an error.
        Stalled OFFSET(0) NUMBITS(1) []
    ],
    /// GITS_BASER<n> (§12.19, GITS_BASER<n>): one in-memory table of the ITS. Type and
    /// Entry_Size are read-only; the rest is written while the ITS is disabled and quiescent.
    pub GITS_BASER [
        /// The table is valid (the ITS may read and write it once enabled).
        Valid OFFSET(63) NUMBITS(1) [],
        /// Two-level table: this level holds 8-byte pointers to pages of entries.
        Indirect OFFSET(62) NUMBITS(1) [],
        /// Inner cacheability of table accesses.
        InnerCache OFFSET(59) NUMBITS(3) [
            DeviceNGnRnE = 0,
            NonCacheable = 1,
            RaWt = 2,
            RaWb = 3,
            WaWt = 4,
            WaWb = 5,
            RaWaWt = 6,
            RaWaWb = 7
        ],
        /// What the table holds.
        Type OFFSET(56) NUMBITS(3) [
            Unimplemented = 0,
            Devices = 1,
            VPEs = 2,
            InterruptCollections = 4
        ],
        /// Outer cacheability of table accesses (0 = same as InnerCache).
        OuterCache OFFSET(53) NUMBITS(3) [
            SameAsInner = 0,
            NonCacheable = 1,
            RaWaWb = 7
        ],
        /// Bytes per table entry, minus one.
        Entry_Size OFFSET(48) NUMBITS(5) [],
        /// Physical address bits [47:12] (4K/16K pages). With 64 KiB pages bits [47:16] sit in
        /// place and bits [51:48] move to bits [15:12] of this field.
        Physical_Address OFFSET(12) NUMBITS(36) [],
        /// Shareability of table accesses; reads back 0 when the ITS cannot snoop caches.
        Shareability OFFSET(10) NUMBITS(2) [
            NonShareable = 0,
            InnerShareable = 1,
            OuterShareable = 2
        ],
        /// Table page size; may be read-only or reject values (read back to check).
        Page_Size OFFSET(8) NUMBITS(2) [
            Size4K = 0,
            Size16K = 1,
            Size64K = 2
        ],
        /// Table size in pages, minus one.
        Size OFFSET(0) NUMBITS(8) []
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
        (0x0070 => pub PROPBASER: ReadWrite<u64, GICR_PROPBASER::Register>),
        (0x0078 => pub PENDBASER: ReadWrite<u64, GICR_PENDBASER::Register>),
        (0x0080 => _reserved1),
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

register_structs! {
    /// ITS control frame (ITS_base), 64 KiB.
    pub Gits {
        (0x0000 => pub CTLR: ReadWrite<u32, GITS_CTLR::Register>),
        (0x0004 => pub IIDR: ReadOnly<u32, GITS_IIDR::Register>),
        (0x0008 => pub TYPER: ReadOnly<u64, GITS_TYPER::Register>),
        (0x0010 => _reserved0),
        (0x0080 => pub CBASER: ReadWrite<u64, GITS_CBASER::Register>),
        (0x0088 => pub CWRITER: ReadWrite<u64, GITS_CWRITER::Register>),
        (0x0090 => pub CREADR: ReadOnly<u64, GITS_CREADR::Register>),
        (0x0098 => _reserved1),
        (0x0100 => pub BASER: [ReadWrite<u64, GITS_BASER::Register>; 8]),
        (0x0140 => _reserved2),
        (0xffe8 => pub PIDR2: ReadOnly<u32>),
        (0xffec => _reserved3),
        (0x10000 => @END),
    }
}

register_structs! {
    /// ITS translation frame (ITS_base + 64 KiB), 64 KiB. Devices write here; the CPU never
    /// needs to, but the frame is declared so its layout is stated once.
    pub GitsTranslation {
        (0x0000 => _reserved0),
        (0x0040 => pub TRANSLATER: WriteOnly<u32>),
        (0x0044 => _reserved1),
        (0x10000 => @END),
    }
}

/// Size of one redistributor frame.
pub const FRAME_SIZE: u64 = 0x1_0000;

/// Offset of the ITS translation frame from ITS_base.
pub const GITS_TRANSLATION_FRAME: u64 = 0x1_0000;

/// Offset of GITS_TRANSLATER from ITS_base: the MSI doorbell. A write of EventID here from a
/// device whose DeviceID the ITS knows becomes an LPI (§12.19, GITS_TRANSLATER).
pub const GITS_TRANSLATER: u64 = GITS_TRANSLATION_FRAME + 0x40;

/// Size of the ITS register region (control frame + translation frame).
pub const GITS_REGION_SIZE: u64 = 2 * 0x1_0000;
