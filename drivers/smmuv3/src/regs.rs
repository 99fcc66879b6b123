//! SMMUv3 registers, Arm IHI 0070 (SMMU architecture version 3) chapter 6, "Memory map and
//! registers"; each register's layout is in §6.3 under its name.
//!
//! The programming interface is two 64 KiB pages: page 0 at the base of the `reg` range and page 1
//! at base + 64 KiB, which holds only the producer/consumer indices of the queues the SMMU writes
//! (event queue, PRI queue) so that they can be mapped separately (§6.2).
//!
//! Access widths matter: every 32-bit register is a 32-bit cell here because QEMU's model (and
//! the architecture, which only promises 32-bit single-copy atomicity for them) returns 0 for a
//! 64-bit read of a 32-bit register. The 64-bit cells are exactly the registers the architecture
//! defines as 64-bit and QEMU accepts 64-bit accesses for: `STRTAB_BASE`, `CMDQ_BASE`,
//! `EVENTQ_BASE`, `GERROR_IRQ_CFG0`, `EVENTQ_IRQ_CFG0` (plus the PRI queue's, RAZ/WI on QEMU).
//! `register_structs!` checks at compile time that every cell exactly fills the gap to the next
//! offset, so a 32-bit register cannot silently become a 64-bit cell.
#![allow(non_snake_case)]

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

/// Size of each of the two register pages.
pub const PAGE_SIZE: u64 = 0x1_0000;
/// Offset of page 1 from the base of the register range.
pub const PAGE1_OFFSET: u64 = PAGE_SIZE;

register_bitfields! [u32,
    /// SMMU_IDR0: features (§6.3, SMMU_IDR0).
    pub IDR0 [
        /// Stage 2 translation supported.
        S2P OFFSET(0) NUMBITS(1) [],
        /// Stage 1 translation supported.
        S1P OFFSET(1) NUMBITS(1) [],
        /// Translation table formats supported.
        TTF OFFSET(2) NUMBITS(2) [
            AArch32 = 1,
            AArch64 = 2,
            AArch32AndAArch64 = 3
        ],
        /// Coherent access to tables, queues and translation tables.
        COHACC OFFSET(4) NUMBITS(1) [],
        /// Broadcast TLB maintenance from the PEs.
        BTM OFFSET(5) NUMBITS(1) [],
        /// Hardware translation table update: access flag, dirty state.
        HTTU OFFSET(6) NUMBITS(2) [
            None = 0,
            AccessFlag = 1,
            AccessFlagDirty = 2
        ],
        /// Dormant hint (SMMU_STATUSR.DORMANT) supported.
        DORMHINT OFFSET(8) NUMBITS(1) [],
        /// EL2 translation regime (E2H) supported.
        HYP OFFSET(9) NUMBITS(1) [],
        /// PCIe ATS supported.
        ATS OFFSET(10) NUMBITS(1) [],
        /// Stage-1-only ATS for non-secure streams.
        NS1ATS OFFSET(11) NUMBITS(1) [],
        /// 16-bit ASIDs supported (otherwise 8-bit).
        ASID16 OFFSET(12) NUMBITS(1) [],
        /// The SMMU can signal interrupts and CMD_SYNC completion by MSI.
        MSI OFFSET(13) NUMBITS(1) [],
        /// The SMMU sends SEV events (CMD_SYNC CS=SEV).
        SEV OFFSET(14) NUMBITS(1) [],
        /// Address translation operations (SMMU_S_GATOS etc.) supported.
        ATOS OFFSET(15) NUMBITS(1) [],
        /// Page Request Interface (PRI queue) supported.
        PRI OFFSET(16) NUMBITS(1) [],
        /// VMID wildcard matching (CR0.VMW) supported.
        VMW OFFSET(17) NUMBITS(1) [],
        /// 16-bit VMIDs supported (otherwise 8-bit).
        VMID16 OFFSET(18) NUMBITS(1) [],
        /// Two-level context descriptor tables supported.
        CD2L OFFSET(19) NUMBITS(1) [],
        /// Virtual ATOS supported.
        VATOS OFFSET(20) NUMBITS(1) [],
        /// Endianness of translation tables.
        TTENDIAN OFFSET(21) NUMBITS(2) [
            Mixed = 0,
            LittleEndian = 2,
            BigEndian = 3
        ],
        /// ATS response error recording.
        ATSRECERR OFFSET(23) NUMBITS(1) [],
        /// Stall model: which fault behaviours are available.
        STALL_MODEL OFFSET(24) NUMBITS(2) [
            StallAndTerminate = 0,
            TerminateOnly = 1,
            StallForced = 2
        ],
        /// 1 = terminated transactions are always aborted (no RAZ/WI option).
        TERM_MODEL OFFSET(26) NUMBITS(1) [],
        /// Stream table formats supported.
        ST_LEVEL OFFSET(27) NUMBITS(2) [
            Linear = 0,
            TwoLevel = 1
        ],
        /// Realm Management Extension implemented.
        RME_IMPL OFFSET(30) NUMBITS(1) []
    ],
    /// SMMU_IDR1: table and queue sizes (§6.3, SMMU_IDR1).
    pub IDR1 [
        /// Number of StreamID bits.
        SIDSIZE OFFSET(0) NUMBITS(6) [],
        /// Number of SubstreamID bits (0: no substreams).
        SSIDSIZE OFFSET(6) NUMBITS(5) [],
        /// log2 of the maximum number of PRI queue entries.
        PRIQS OFFSET(11) NUMBITS(5) [],
        /// log2 of the maximum number of event queue entries.
        EVENTQS OFFSET(16) NUMBITS(5) [],
        /// log2 of the maximum number of command queue entries.
        CMDQS OFFSET(21) NUMBITS(5) [],
        /// Incoming permission attributes can be overridden (STE.INSTCFG/PRIVCFG).
        ATTR_PERMS_OVR OFFSET(26) NUMBITS(1) [],
        /// Incoming memory attributes can be overridden (STE.MTCFG/ALLOCCFG/SHCFG).
        ATTR_TYPES_OVR OFFSET(27) NUMBITS(1) [],
        /// Relative base addresses for preset tables/queues.
        REL OFFSET(28) NUMBITS(1) [],
        /// Queue base registers are fixed by the implementation.
        QUEUES_PRESET OFFSET(29) NUMBITS(1) [],
        /// Stream table base registers are fixed by the implementation.
        TABLES_PRESET OFFSET(30) NUMBITS(1) [],
        /// Enhanced command queue interfaces implemented.
        ECMDQ OFFSET(31) NUMBITS(1) []
    ],
    /// SMMU_IDR3: further features (§6.3, SMMU_IDR3).
    pub IDR3 [
        /// Hierarchical attribute disables (CD.HAD0/1) supported.
        HAD OFFSET(2) NUMBITS(1) [],
        /// Execute-never distinction between EL0 and EL1 at stage 2.
        XNX OFFSET(4) NUMBITS(1) [],
        /// Small translation tables: T0SZ above 39 allowed.
        STT OFFSET(9) NUMBITS(1) [],
        /// Range-based TLB invalidation (TLBI_*_VA with TG/NUM/SCALE).
        RIL OFFSET(10) NUMBITS(1) [],
        /// Break-before-make level supported on block size changes.
        BBML OFFSET(11) NUMBITS(2) []
    ],
    /// SMMU_IDR5: output address size and granules (§6.3, SMMU_IDR5).
    pub IDR5 [
        /// Output address size.
        OAS OFFSET(0) NUMBITS(3) [
            Bits32 = 0,
            Bits36 = 1,
            Bits40 = 2,
            Bits42 = 3,
            Bits44 = 4,
            Bits48 = 5,
            Bits52 = 6
        ],
        /// 4 KiB translation granule supported.
        GRAN4K OFFSET(4) NUMBITS(1) [],
        /// 16 KiB translation granule supported.
        GRAN16K OFFSET(5) NUMBITS(1) [],
        /// 64 KiB translation granule supported.
        GRAN64K OFFSET(6) NUMBITS(1) [],
        /// Virtual address extension: 1 = 52-bit VA with 64 KiB granule.
        VAX OFFSET(10) NUMBITS(2) [],
        /// Maximum number of outstanding stalled transactions.
        STALL_MAX OFFSET(16) NUMBITS(16) []
    ],
    /// SMMU_IIDR: implementation identification (§6.3, SMMU_IIDR).
    pub IIDR [
        /// JEP106 code of the implementer.
        Implementer OFFSET(0) NUMBITS(12) [],
        /// Minor revision of the product.
        Revision OFFSET(12) NUMBITS(4) [],
        /// Major revision of the product.
        Variant OFFSET(16) NUMBITS(4) [],
        /// Implementation-defined product number.
        ProductID OFFSET(20) NUMBITS(12) []
    ],
    /// SMMU_AIDR: architecture revision (§6.3, SMMU_AIDR).
    pub AIDR [
        /// Minor revision: 0 = SMMUv3.0, 1 = SMMUv3.1, ...
        ArchMinorRev OFFSET(0) NUMBITS(4) [],
        /// Major revision: 0 = SMMUv3.
        ArchMajorRev OFFSET(4) NUMBITS(4) []
    ],
    /// SMMU_CR0 and SMMU_CR0ACK: enables; a change is in effect once CR0ACK mirrors it (§6.3, SMMU_CR0).
    pub CR0 [
        /// Translation enabled; while 0 every stream follows SMMU_GBPA.
        SMMUEN OFFSET(0) NUMBITS(1) [],
        /// PRI queue enabled.
        PRIQEN OFFSET(1) NUMBITS(1) [],
        /// Event queue enabled.
        EVENTQEN OFFSET(2) NUMBITS(1) [],
        /// Command queue enabled.
        CMDQEN OFFSET(3) NUMBITS(1) [],
        /// ATS requests checked against the STE (ATS translated transactions).
        ATSCHK OFFSET(4) NUMBITS(1) [],
        /// VMID wildcard for TLB invalidation.
        VMW OFFSET(6) NUMBITS(3) []
    ],
    /// SMMU_CR1: memory attributes of the SMMU's own table and queue accesses (§6.3, SMMU_CR1).
    pub CR1 [
        /// Queue accesses, inner cacheability.
        QUEUE_IC OFFSET(0) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        /// Queue accesses, outer cacheability.
        QUEUE_OC OFFSET(2) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        /// Queue accesses, shareability.
        QUEUE_SH OFFSET(4) NUMBITS(2) [NonShareable = 0, OuterShareable = 2, InnerShareable = 3],
        /// Table accesses (STE, CD), inner cacheability.
        TABLE_IC OFFSET(6) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        /// Table accesses, outer cacheability.
        TABLE_OC OFFSET(8) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        /// Table accesses, shareability.
        TABLE_SH OFFSET(10) NUMBITS(2) [NonShareable = 0, OuterShareable = 2, InnerShareable = 3]
    ],
    /// SMMU_CR2: further controls (§6.3, SMMU_CR2).
    pub CR2 [
        /// EL2-E2H translation regime for STRW=EL2 streams.
        E2H OFFSET(0) NUMBITS(1) [],
        /// Record C_BAD_STREAMID for out-of-range StreamIDs.
        RECINVSID OFFSET(1) NUMBITS(1) [],
        /// Private TLB maintenance: ignore broadcast TLB invalidations from the PEs.
        PTM OFFSET(2) NUMBITS(1) []
    ],
    /// SMMU_STATUSR (§6.3, SMMU_STATUSR).
    pub STATUSR [
        /// The SMMU and its caches are dormant (see IDR0.DORMHINT).
        DORMANT OFFSET(0) NUMBITS(1) []
    ],
    /// SMMU_GBPA: what happens to transactions while SMMUEN=0 (§6.3, SMMU_GBPA).
    pub GBPA [
        /// Memory attribute override value.
        MEMATTR OFFSET(0) NUMBITS(4) [],
        /// Memory type: 0 = use incoming, 1 = use MEMATTR.
        MTCFG OFFSET(4) NUMBITS(1) [],
        /// Read/write allocate hints override.
        ALLOCCFG OFFSET(8) NUMBITS(4) [],
        /// Shareability override.
        SHCFG OFFSET(12) NUMBITS(2) [
            NonShareable = 0,
            UseIncoming = 1,
            OuterShareable = 2,
            InnerShareable = 3
        ],
        /// Privilege override.
        PRIVCFG OFFSET(16) NUMBITS(2) [],
        /// Instruction/data override.
        INSTCFG OFFSET(18) NUMBITS(2) [],
        /// 1 = abort every incoming transaction instead of bypassing it.
        ABORT OFFSET(20) NUMBITS(1) [],
        /// Written 1 together with new fields; the SMMU clears it once they apply.
        UPDATE OFFSET(31) NUMBITS(1) []
    ],
    /// SMMU_IRQ_CTRL and SMMU_IRQ_CTRLACK: interrupt enables (§6.3, SMMU_IRQ_CTRL).
    pub IRQ_CTRL [
        /// Global error interrupt enabled.
        GERROR_IRQEN OFFSET(0) NUMBITS(1) [],
        /// PRI queue interrupt enabled.
        PRIQ_IRQEN OFFSET(1) NUMBITS(1) [],
        /// Event queue interrupt enabled.
        EVENTQ_IRQEN OFFSET(2) NUMBITS(1) []
    ],
    /// SMMU_GERROR and SMMU_GERRORN: an error is active while the two bits differ (§6.3, SMMU_GERROR).
    pub GERROR [
        /// Command queue error; the reason is in CMDQ_CONS.ERR.
        CMDQ_ERR OFFSET(0) NUMBITS(1) [],
        /// Event queue write aborted (on QEMU also: event dropped because the queue was full).
        EVENTQ_ABT_ERR OFFSET(2) NUMBITS(1) [],
        /// PRI queue write aborted.
        PRIQ_ABT_ERR OFFSET(3) NUMBITS(1) [],
        /// CMD_SYNC MSI write aborted.
        MSI_CMDQ_ABT_ERR OFFSET(4) NUMBITS(1) [],
        /// Event queue MSI write aborted.
        MSI_EVENTQ_ABT_ERR OFFSET(5) NUMBITS(1) [],
        /// PRI queue MSI write aborted.
        MSI_PRIQ_ABT_ERR OFFSET(6) NUMBITS(1) [],
        /// GERROR MSI write aborted.
        MSI_GERROR_ABT_ERR OFFSET(7) NUMBITS(1) [],
        /// Service failure mode: the SMMU stopped translating.
        SFM_ERR OFFSET(8) NUMBITS(1) [],
        /// Command queue control page error (ECMDQ).
        CMDQP_ERR OFFSET(9) NUMBITS(1) []
    ],
    /// SMMU_*_IRQ_CFG1: MSI payload (§6.3, SMMU_GERROR_IRQ_CFG1).
    pub IRQ_CFG1 [
        /// Data written to the MSI address.
        DATA OFFSET(0) NUMBITS(32) []
    ],
    /// SMMU_*_IRQ_CFG2: MSI memory attributes (§6.3, SMMU_GERROR_IRQ_CFG2).
    pub IRQ_CFG2 [
        /// Memory attributes of the MSI write.
        MEMATTR OFFSET(0) NUMBITS(4) [],
        /// Shareability of the MSI write.
        SH OFFSET(4) NUMBITS(2) []
    ],
    /// SMMU_STRTAB_BASE_CFG: stream table format and size (§6.3, SMMU_STRTAB_BASE_CFG).
    pub STRTAB_BASE_CFG [
        /// log2 of the number of StreamIDs the table covers.
        LOG2SIZE OFFSET(0) NUMBITS(6) [],
        /// Two-level tables: StreamID bits resolved by the level-2 tables.
        SPLIT OFFSET(6) NUMBITS(5) [],
        /// Table format.
        FMT OFFSET(16) NUMBITS(2) [
            Linear = 0,
            TwoLevel = 1
        ]
    ],
    /// SMMU_CMDQ_PROD: software's producer index; the wrap bit sits at bit LOG2SIZE (§6.3, SMMU_CMDQ_PROD).
    pub CMDQ_PROD [
        /// Write index and wrap bit (queue sizes up to 2^19 entries).
        WR OFFSET(0) NUMBITS(20) []
    ],
    /// SMMU_CMDQ_CONS: the SMMU's consumer index and command error (§6.3, SMMU_CMDQ_CONS).
    pub CMDQ_CONS [
        /// Read index and wrap bit.
        RD OFFSET(0) NUMBITS(20) [],
        /// Why the command at RD was refused (valid while GERROR.CMDQ_ERR is active).
        ERR OFFSET(24) NUMBITS(7) [
            CERROR_NONE = 0,
            CERROR_ILL = 1,
            CERROR_ABT = 2,
            CERROR_ATC_INV_SYNC = 3
        ]
    ],
    /// SMMU_EVENTQ_PROD (page 1): the SMMU's producer index (§6.3, SMMU_EVENTQ_PROD).
    pub EVENTQ_PROD [
        /// Write index and wrap bit.
        WR OFFSET(0) NUMBITS(20) [],
        /// Toggled by the SMMU when events were lost to a full queue.
        OVFLG OFFSET(31) NUMBITS(1) []
    ],
    /// SMMU_EVENTQ_CONS (page 1): software's consumer index (§6.3, SMMU_EVENTQ_CONS).
    pub EVENTQ_CONS [
        /// Read index and wrap bit.
        RD OFFSET(0) NUMBITS(20) [],
        /// Software copies EVENTQ_PROD.OVFLG here to acknowledge an overflow.
        OVACKFLG OFFSET(31) NUMBITS(1) []
    ]
];

register_bitfields! [u64,
    /// SMMU_STRTAB_BASE: stream table address (§6.3, SMMU_STRTAB_BASE).
    pub STRTAB_BASE [
        /// Physical address bits [51:6]; the table is aligned to its size.
        ADDR OFFSET(6) NUMBITS(46) [],
        /// Read-allocate hint for table accesses.
        RA OFFSET(62) NUMBITS(1) []
    ],
    /// SMMU_CMDQ_BASE: command queue address and size (§6.3, SMMU_CMDQ_BASE).
    pub CMDQ_BASE [
        /// log2 of the number of entries (at most IDR1.CMDQS).
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        /// Physical address bits [51:5]; aligned to the queue size, at least 32 bytes.
        ADDR OFFSET(5) NUMBITS(47) [],
        /// Read-allocate hint for queue accesses.
        RA OFFSET(62) NUMBITS(1) []
    ],
    /// SMMU_EVENTQ_BASE: event queue address and size (§6.3, SMMU_EVENTQ_BASE).
    pub EVENTQ_BASE [
        /// log2 of the number of entries (at most IDR1.EVENTQS).
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        /// Physical address bits [51:5]; aligned to the queue size, at least 32 bytes.
        ADDR OFFSET(5) NUMBITS(47) [],
        /// Write-allocate hint for queue accesses.
        WA OFFSET(62) NUMBITS(1) []
    ],
    /// SMMU_PRIQ_BASE: PRI queue address and size (§6.3, SMMU_PRIQ_BASE).
    pub PRIQ_BASE [
        /// log2 of the number of entries (at most IDR1.PRIQS).
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        /// Physical address bits [51:5].
        ADDR OFFSET(5) NUMBITS(47) [],
        /// Write-allocate hint for queue accesses.
        WA OFFSET(62) NUMBITS(1) []
    ],
    /// SMMU_*_IRQ_CFG0: MSI target address (§6.3, SMMU_GERROR_IRQ_CFG0).
    pub IRQ_CFG0 [
        /// Physical address bits [51:2]; 0 disables the MSI.
        ADDR OFFSET(2) NUMBITS(50) []
    ]
];

register_structs! {
    /// Register page 0 (base + 0): identification, control, tables, command queue.
    pub Page0 {
        (0x000 => pub IDR0: ReadOnly<u32, IDR0::Register>),
        (0x004 => pub IDR1: ReadOnly<u32, IDR1::Register>),
        (0x008 => pub IDR2: ReadOnly<u32>),
        (0x00c => pub IDR3: ReadOnly<u32, IDR3::Register>),
        (0x010 => pub IDR4: ReadOnly<u32>),
        (0x014 => pub IDR5: ReadOnly<u32, IDR5::Register>),
        (0x018 => pub IIDR: ReadOnly<u32, IIDR::Register>),
        (0x01c => pub AIDR: ReadOnly<u32, AIDR::Register>),
        (0x020 => pub CR0: ReadWrite<u32, CR0::Register>),
        (0x024 => pub CR0ACK: ReadOnly<u32, CR0::Register>),
        (0x028 => pub CR1: ReadWrite<u32, CR1::Register>),
        (0x02c => pub CR2: ReadWrite<u32, CR2::Register>),
        (0x030 => _reserved0),
        (0x040 => pub STATUSR: ReadOnly<u32, STATUSR::Register>),
        (0x044 => pub GBPA: ReadWrite<u32, GBPA::Register>),
        (0x048 => pub AGBPA: ReadWrite<u32>),
        (0x04c => _reserved1),
        (0x050 => pub IRQ_CTRL: ReadWrite<u32, IRQ_CTRL::Register>),
        (0x054 => pub IRQ_CTRLACK: ReadOnly<u32, IRQ_CTRL::Register>),
        (0x058 => _reserved2),
        (0x060 => pub GERROR: ReadOnly<u32, GERROR::Register>),
        (0x064 => pub GERRORN: ReadWrite<u32, GERROR::Register>),
        (0x068 => pub GERROR_IRQ_CFG0: ReadWrite<u64, IRQ_CFG0::Register>),
        (0x070 => pub GERROR_IRQ_CFG1: ReadWrite<u32, IRQ_CFG1::Register>),
        (0x074 => pub GERROR_IRQ_CFG2: ReadWrite<u32, IRQ_CFG2::Register>),
        (0x078 => _reserved3),
        (0x080 => pub STRTAB_BASE: ReadWrite<u64, STRTAB_BASE::Register>),
        (0x088 => pub STRTAB_BASE_CFG: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x08c => _reserved4),
        (0x090 => pub CMDQ_BASE: ReadWrite<u64, CMDQ_BASE::Register>),
        (0x098 => pub CMDQ_PROD: ReadWrite<u32, CMDQ_PROD::Register>),
        (0x09c => pub CMDQ_CONS: ReadWrite<u32, CMDQ_CONS::Register>),
        (0x0a0 => pub EVENTQ_BASE: ReadWrite<u64, EVENTQ_BASE::Register>),
        // 0x0a8/0x0ac: EVENTQ_PROD/CONS live in page 1 (QEMU also aliases them here; do not rely on it).
        (0x0a8 => _reserved5),
        (0x0b0 => pub EVENTQ_IRQ_CFG0: ReadWrite<u64, IRQ_CFG0::Register>),
        (0x0b8 => pub EVENTQ_IRQ_CFG1: ReadWrite<u32, IRQ_CFG1::Register>),
        (0x0bc => pub EVENTQ_IRQ_CFG2: ReadWrite<u32, IRQ_CFG2::Register>),
        (0x0c0 => pub PRIQ_BASE: ReadWrite<u64, PRIQ_BASE::Register>),
        // 0x0c8/0x0cc: PRIQ_PROD/CONS live in page 1.
        (0x0c8 => _reserved6),
        (0x0d0 => pub PRIQ_IRQ_CFG0: ReadWrite<u64, IRQ_CFG0::Register>),
        (0x0d8 => pub PRIQ_IRQ_CFG1: ReadWrite<u32, IRQ_CFG1::Register>),
        (0x0dc => pub PRIQ_IRQ_CFG2: ReadWrite<u32, IRQ_CFG2::Register>),
        (0x0e0 => _reserved7),
        (0x10000 => @END),
    }
}

register_structs! {
    /// Register page 1 (base + 64 KiB): indices of the queues the SMMU produces into.
    pub Page1 {
        (0x000 => _reserved0),
        (0x0a8 => pub EVENTQ_PROD: ReadWrite<u32, EVENTQ_PROD::Register>),
        (0x0ac => pub EVENTQ_CONS: ReadWrite<u32, EVENTQ_CONS::Register>),
        (0x0b0 => _reserved1),
        (0x0c8 => pub PRIQ_PROD: ReadWrite<u32>),
        (0x0cc => pub PRIQ_CONS: ReadWrite<u32>),
        (0x0d0 => _reserved2),
        (0x10000 => @END),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use tock_registers::LocalRegisterCopy;

    #[test]
    fn smmuv3_regs_page0_offsets_match_the_spec() {
        assert_eq!(offset_of!(Page0, IDR0), 0x000);
        assert_eq!(offset_of!(Page0, IDR5), 0x014);
        assert_eq!(offset_of!(Page0, AIDR), 0x01c);
        assert_eq!(offset_of!(Page0, CR0), 0x020);
        assert_eq!(offset_of!(Page0, CR0ACK), 0x024);
        assert_eq!(offset_of!(Page0, GBPA), 0x044);
        assert_eq!(offset_of!(Page0, IRQ_CTRL), 0x050);
        assert_eq!(offset_of!(Page0, GERROR), 0x060);
        assert_eq!(offset_of!(Page0, GERRORN), 0x064);
        assert_eq!(offset_of!(Page0, GERROR_IRQ_CFG0), 0x068);
        assert_eq!(offset_of!(Page0, STRTAB_BASE), 0x080);
        assert_eq!(offset_of!(Page0, STRTAB_BASE_CFG), 0x088);
        assert_eq!(offset_of!(Page0, CMDQ_BASE), 0x090);
        assert_eq!(offset_of!(Page0, CMDQ_PROD), 0x098);
        assert_eq!(offset_of!(Page0, CMDQ_CONS), 0x09c);
        assert_eq!(offset_of!(Page0, EVENTQ_BASE), 0x0a0);
        assert_eq!(offset_of!(Page0, EVENTQ_IRQ_CFG0), 0x0b0);
        assert_eq!(offset_of!(Page0, PRIQ_BASE), 0x0c0);
        assert_eq!(offset_of!(Page0, PRIQ_IRQ_CFG2), 0x0dc);
        assert_eq!(size_of::<Page0>() as u64, PAGE_SIZE);
    }

    #[test]
    fn smmuv3_regs_page1_holds_the_smmu_produced_indices() {
        assert_eq!(offset_of!(Page1, EVENTQ_PROD), 0x0a8);
        assert_eq!(offset_of!(Page1, EVENTQ_CONS), 0x0ac);
        assert_eq!(offset_of!(Page1, PRIQ_PROD), 0x0c8);
        assert_eq!(offset_of!(Page1, PRIQ_CONS), 0x0cc);
        assert_eq!(size_of::<Page1>() as u64, PAGE_SIZE);
    }

    #[test]
    fn smmuv3_regs_qemu_idr0_decodes_field_by_field() {
        let idr0 = LocalRegisterCopy::<u32, IDR0::Register>::new(0x0D44_101B);
        assert!(idr0.is_set(IDR0::S2P) && idr0.is_set(IDR0::S1P));
        assert_eq!(
            idr0.read_as_enum(IDR0::TTF),
            Some(IDR0::TTF::Value::AArch64)
        );
        assert!(idr0.is_set(IDR0::COHACC));
        assert!(idr0.is_set(IDR0::ASID16) && idr0.is_set(IDR0::VMID16));
        assert!(!idr0.is_set(IDR0::MSI) && !idr0.is_set(IDR0::CD2L));
        assert_eq!(
            idr0.read_as_enum(IDR0::TTENDIAN),
            Some(IDR0::TTENDIAN::Value::LittleEndian)
        );
        assert_eq!(
            idr0.read_as_enum(IDR0::STALL_MODEL),
            Some(IDR0::STALL_MODEL::Value::TerminateOnly)
        );
        assert!(idr0.is_set(IDR0::TERM_MODEL));
        assert_eq!(
            idr0.read_as_enum(IDR0::ST_LEVEL),
            Some(IDR0::ST_LEVEL::Value::TwoLevel)
        );
    }

    #[test]
    fn smmuv3_regs_control_values_match_spec_bits() {
        let cr0 = CR0::SMMUEN::SET + CR0::EVENTQEN::SET + CR0::CMDQEN::SET;
        assert_eq!(cr0.value, 0b1101);
        let gbpa = GBPA::UPDATE::SET + GBPA::ABORT::SET;
        assert_eq!(gbpa.value, 0x8010_0000);
        let cr1 = CR1::TABLE_SH::InnerShareable
            + CR1::TABLE_OC::WriteBack
            + CR1::TABLE_IC::WriteBack
            + CR1::QUEUE_SH::InnerShareable
            + CR1::QUEUE_OC::WriteBack
            + CR1::QUEUE_IC::WriteBack;
        assert_eq!(cr1.value, 0xd75);
        let cfg = STRTAB_BASE_CFG::FMT::TwoLevel
            + STRTAB_BASE_CFG::SPLIT.val(8)
            + STRTAB_BASE_CFG::LOG2SIZE.val(16);
        assert_eq!(cfg.value, 0x1_0210);
        assert_eq!(GERROR::SFM_ERR::SET.value, 0x100);
    }
}
