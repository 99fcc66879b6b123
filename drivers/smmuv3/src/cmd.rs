//! Command queue entries (IHI 0070 chapter 4, "Commands") and TLB invalidation planning.
//!
//! [`encode`] turns a [`Command`] into the two little-endian words of a 16-byte queue entry.
//! [`tlbi_va_range`] turns "these IOVAs changed" into the shortest list of TLBI_NH_VA commands:
//! range commands (IDR3.RIL) covering (NUM + 1) × 2^SCALE pages each, per-block commands
//! otherwise, and one TLBI_NH_ASID when that list would be long.

use tock_registers::register_bitfields;

use crate::{Asid, Iova, SmmuError, Ssid, StreamId, Vmid};

register_bitfields! [u64,
    /// Word 0 of configuration commands: PREFETCH_CONFIG, CFGI_* (ch. 4, CMD_PREFETCH_CONFIG, CMD_CFGI_*).
    pub CMD_CFGI0 [
        /// Opcode.
        OP OFFSET(0) NUMBITS(8) [],
        /// Secure stream (must be 0 on the non-secure queue).
        SSEC OFFSET(10) NUMBITS(1) [],
        /// SubstreamID (CFGI_CD).
        SSID OFFSET(12) NUMBITS(20) [],
        /// StreamID.
        SID OFFSET(32) NUMBITS(32) []
    ],
    /// Word 1 of configuration commands (ch. 4, CMD_CFGI_*).
    pub CMD_CFGI1 [
        /// Leaf: 1 = only the STE/CD itself, not structures reached through it.
        LEAF OFFSET(0) NUMBITS(1) [],
        /// CFGI_STE_RANGE: invalidate 2^(RANGE + 1) StreamIDs (31 = all).
        RANGE OFFSET(0) NUMBITS(5) []
    ],
    /// Word 0 of TLB invalidations (ch. 4, CMD_TLBI_*).
    pub CMD_TLBI0 [
        /// Opcode.
        OP OFFSET(0) NUMBITS(8) [],
        /// Range commands: number of 2^SCALE-page blocks, minus one.
        NUM OFFSET(12) NUMBITS(5) [],
        /// Range commands: log2 of the block size in pages.
        SCALE OFFSET(20) NUMBITS(5) [],
        /// VMID.
        VMID OFFSET(32) NUMBITS(16) [],
        /// ASID.
        ASID OFFSET(48) NUMBITS(16) []
    ],
    /// Word 1 of TLB invalidations by address (ch. 4, CMD_TLBI_NH_VA).
    pub CMD_TLBI1 [
        /// Leaf: 1 = only last-level entries (walk caches are kept).
        LEAF OFFSET(0) NUMBITS(1) [],
        /// Translation table level hint of the entries (0 = any).
        TTL OFFSET(8) NUMBITS(2) [],
        /// Range granule: 0 = not a range command, 1 = 4K, 2 = 16K, 3 = 64K.
        TG OFFSET(10) NUMBITS(2) [
            None = 0,
            Granule4K = 1,
            Granule16K = 2,
            Granule64K = 3
        ],
        /// Address bits [63:12].
        ADDR OFFSET(12) NUMBITS(52) []
    ],
    /// Word 0 of CMD_SYNC (ch. 4, CMD_SYNC).
    pub CMD_SYNC0 [
        /// Opcode.
        OP OFFSET(0) NUMBITS(8) [],
        /// Completion signal.
        CS OFFSET(12) NUMBITS(2) [
            None = 0,
            Irq = 1,
            Sev = 2
        ],
        /// Shareability of the MSI write.
        MSH OFFSET(22) NUMBITS(2) [],
        /// Memory attributes of the MSI write.
        MSIATTR OFFSET(24) NUMBITS(4) [],
        /// MSI payload.
        MSIDATA OFFSET(32) NUMBITS(32) []
    ],
    /// Word 1 of CMD_SYNC (ch. 4, CMD_SYNC).
    pub CMD_SYNC1 [
        /// MSI address bits [51:2].
        MSIADDR OFFSET(2) NUMBITS(50) []
    ]
];

/// Command opcodes (ch. 4, each command's format).
pub mod opcode {
    /// PREFETCH_CONFIG.
    pub const PREFETCH_CONFIG: u64 = 0x01;
    /// CFGI_STE.
    pub const CFGI_STE: u64 = 0x03;
    /// CFGI_STE_RANGE (and CFGI_ALL: Range = 31).
    pub const CFGI_STE_RANGE: u64 = 0x04;
    /// CFGI_CD.
    pub const CFGI_CD: u64 = 0x05;
    /// CFGI_CD_ALL.
    pub const CFGI_CD_ALL: u64 = 0x06;
    /// TLBI_NH_ALL.
    pub const TLBI_NH_ALL: u64 = 0x10;
    /// TLBI_NH_ASID.
    pub const TLBI_NH_ASID: u64 = 0x11;
    /// TLBI_NH_VA.
    pub const TLBI_NH_VA: u64 = 0x12;
    /// TLBI_EL2_ALL.
    pub const TLBI_EL2_ALL: u64 = 0x20;
    /// TLBI_NSNH_ALL.
    pub const TLBI_NSNH_ALL: u64 = 0x30;
    /// CMD_SYNC.
    pub const CMD_SYNC: u64 = 0x46;
}

/// Size of a command queue entry.
pub const CMD_SIZE: u64 = 16;

/// CFGI_STE_RANGE's Range value that covers every StreamID.
pub const CFGI_RANGE_ALL: u8 = 31;

/// How CMD_SYNC signals completion (it is always observable as CMDQ_CONS passing it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncSignal {
    /// No signal: poll CMDQ_CONS.
    None,
    /// The wired "cmdq-sync" interrupt (or MSI when IDR0.MSI; the MSI fields are left 0 here).
    Irq,
    /// A SEV event to the PEs (IDR0.SEV).
    Sev,
}

/// Translation granule of a range invalidation (CMD_TLBI1.TG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeGranule {
    /// 4 KiB pages.
    Granule4K,
    /// 16 KiB pages.
    Granule16K,
    /// 64 KiB pages.
    Granule64K,
}

impl RangeGranule {
    /// log2 of the page size.
    pub fn shift(self) -> u32 {
        match self {
            RangeGranule::Granule4K => 12,
            RangeGranule::Granule16K => 14,
            RangeGranule::Granule64K => 16,
        }
    }
}

/// The range part of a TLBI_NH_VA (IDR3.RIL): (NUM + 1) × 2^SCALE pages of the granule, starting
/// at the command's address, whose leaf entries sit at level TTL (0 = unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaRange {
    granule: RangeGranule,
    num: u8,
    scale: u8,
    ttl: u8,
}

impl VaRange {
    /// `None` unless NUM, SCALE ≤ 31 and TTL ≤ 3.
    pub fn new(granule: RangeGranule, num: u8, scale: u8, ttl: u8) -> Option<VaRange> {
        (num <= 31 && scale <= 31 && ttl <= 3).then_some(VaRange {
            granule,
            num,
            scale,
            ttl,
        })
    }

    /// Number of pages covered.
    pub fn pages(&self) -> u64 {
        (u64::from(self.num) + 1) << self.scale
    }

    /// Number of bytes covered.
    pub fn bytes(&self) -> u64 {
        self.pages() << self.granule.shift()
    }
}

/// A command this driver issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Hint: fetch the configuration of `sid` now.
    PrefetchConfig { sid: StreamId },
    /// Drop cached copies of the STE of `sid` (and, unless `leaf`, the CDs reached through it).
    CfgiSte { sid: StreamId, leaf: bool },
    /// Drop cached STEs of 2^(`range` + 1) StreamIDs from `sid` aligned down; `range` above 31
    /// is treated as 31 (all StreamIDs): invalidating more is always safe.
    CfgiSteRange { sid: StreamId, range: u8 },
    /// Drop every cached STE and CD (CFGI_STE_RANGE with Range = 31).
    CfgiAll,
    /// Drop the cached CD `ssid` of `sid` (and, unless `leaf`, what it points at).
    CfgiCd {
        sid: StreamId,
        ssid: Ssid,
        leaf: bool,
    },
    /// Drop every cached CD of `sid`.
    CfgiCdAll { sid: StreamId },
    /// Invalidate all stage-1 (non-hyp) TLB entries of `vmid`.
    TlbiNhAll { vmid: Vmid },
    /// Invalidate the TLB entries of one ASID.
    TlbiNhAsid { asid: Asid, vmid: Vmid },
    /// Invalidate the TLB entries for `addr` (or the range) in one ASID; `leaf` keeps the walk
    /// caches.
    TlbiNhVa {
        asid: Asid,
        vmid: Vmid,
        addr: Iova,
        leaf: bool,
        range: Option<VaRange>,
    },
    /// Invalidate every EL2 TLB entry (needed at reset when IDR0.HYP).
    TlbiEl2All,
    /// Invalidate every non-secure, non-hyp TLB entry.
    TlbiNsnhAll,
    /// Completes once every earlier command has.
    Sync { signal: SyncSignal },
}

/// The two words of the queue entry for `cmd`.
pub fn encode(cmd: &Command) -> [u64; 2] {
    let cfgi = |op: u64, sid: StreamId| {
        (CMD_CFGI0::OP.val(op) + CMD_CFGI0::SSEC::CLEAR + CMD_CFGI0::SID.val(u64::from(sid.0)))
            .value
    };
    let tlbi = |op: u64, asid: Asid, vmid: Vmid| {
        (CMD_TLBI0::OP.val(op)
            + CMD_TLBI0::VMID.val(u64::from(vmid.0))
            + CMD_TLBI0::ASID.val(u64::from(asid.0)))
        .value
    };
    match *cmd {
        Command::PrefetchConfig { sid } => [cfgi(opcode::PREFETCH_CONFIG, sid), 0],
        Command::CfgiSte { sid, leaf } => [
            cfgi(opcode::CFGI_STE, sid),
            CMD_CFGI1::LEAF.val(u64::from(leaf)).value,
        ],
        Command::CfgiSteRange { sid, range } => [
            cfgi(opcode::CFGI_STE_RANGE, sid),
            CMD_CFGI1::RANGE
                .val(u64::from(range.min(CFGI_RANGE_ALL)))
                .value,
        ],
        Command::CfgiAll => [
            cfgi(opcode::CFGI_STE_RANGE, StreamId(0)),
            CMD_CFGI1::RANGE.val(u64::from(CFGI_RANGE_ALL)).value,
        ],
        Command::CfgiCd { sid, ssid, leaf } => [
            cfgi(opcode::CFGI_CD, sid) | CMD_CFGI0::SSID.val(u64::from(ssid.get())).value,
            CMD_CFGI1::LEAF.val(u64::from(leaf)).value,
        ],
        Command::CfgiCdAll { sid } => [cfgi(opcode::CFGI_CD_ALL, sid), 0],
        Command::TlbiNhAll { vmid } => [tlbi(opcode::TLBI_NH_ALL, Asid(0), vmid), 0],
        Command::TlbiNhAsid { asid, vmid } => [tlbi(opcode::TLBI_NH_ASID, asid, vmid), 0],
        Command::TlbiNhVa {
            asid,
            vmid,
            addr,
            leaf,
            range,
        } => {
            let mut w0 = tlbi(opcode::TLBI_NH_VA, asid, vmid);
            let mut w1 = CMD_TLBI1::LEAF.val(u64::from(leaf)) + CMD_TLBI1::ADDR.val(addr.0 >> 12);
            if let Some(r) = range {
                w0 |= (CMD_TLBI0::NUM.val(u64::from(r.num))
                    + CMD_TLBI0::SCALE.val(u64::from(r.scale)))
                .value;
                w1 += CMD_TLBI1::TTL.val(u64::from(r.ttl))
                    + match r.granule {
                        RangeGranule::Granule4K => CMD_TLBI1::TG::Granule4K,
                        RangeGranule::Granule16K => CMD_TLBI1::TG::Granule16K,
                        RangeGranule::Granule64K => CMD_TLBI1::TG::Granule64K,
                    };
            }
            [w0, w1.value]
        }
        Command::TlbiEl2All => [CMD_TLBI0::OP.val(opcode::TLBI_EL2_ALL).value, 0],
        Command::TlbiNsnhAll => [CMD_TLBI0::OP.val(opcode::TLBI_NSNH_ALL).value, 0],
        Command::Sync { signal } => {
            let cs = match signal {
                SyncSignal::None => CMD_SYNC0::CS::None,
                SyncSignal::Irq => CMD_SYNC0::CS::Irq,
                SyncSignal::Sev => CMD_SYNC0::CS::Sev,
            };
            // MSH/MSIAttr/MSIData and MSIAddress stay 0: no MSI write on completion.
            [(CMD_SYNC0::OP.val(opcode::CMD_SYNC) + cs).value, 0]
        }
    }
}

/// Above this many TLBI_NH_VA commands, [`tlbi_va_range`] invalidates the whole ASID instead: a
/// quarter of the kernel's 256-entry command queue, so a flush plus its CMD_SYNC never waits for
/// the queue to drain, and 64 pages (256 KiB) is where refilling the domain's other (few,
/// short-lived) DMA mappings costs less than the commands.
pub const DEFAULT_MAX_TLBI_COMMANDS: usize = 64;

/// Page size of the stage-1 tables (the kernel's 4 KiB granule).
const PAGE_SHIFT: u32 = kapi::PAGE_SIZE.trailing_zeros();

/// What changed in a stage-1 address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaInvalidation {
    /// The domain's ASID.
    pub asid: Asid,
    /// The STE's VMID (0 in this kernel).
    pub vmid: Vmid,
    /// First IOVA (4 KiB aligned).
    pub iova: Iova,
    /// Length in bytes (a multiple of 4 KiB).
    pub size: u64,
    /// Size of the leaf entries that changed: 4 KiB, 2 MiB or 1 GiB.
    pub granule: u64,
    /// Only leaf entries changed (false: tables were freed or replaced, drop walk caches too).
    pub leaf: bool,
}

/// The commands of an invalidation, produced lazily (no allocation on the unmap path).
#[derive(Clone, Debug)]
pub struct TlbiCommands {
    asid: Asid,
    vmid: Vmid,
    leaf: bool,
    mode: Mode,
    addr: u64,
    remaining: usize,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// One TLBI_NH_ASID.
    WholeAsid,
    /// Range commands over `pages` 4 KiB pages, TTL hint `ttl`.
    Range { pages: u64, ttl: u8 },
    /// One single-address command per `step` bytes.
    PerBlock { step: u64 },
}

/// Number of range commands needed for `pages` pages: each takes the lowest set bit's 5-bit
/// window of the remaining count (NUM + 1 ≤ 31 blocks of 2^SCALE pages).
fn range_commands(mut pages: u64) -> usize {
    let mut n = 0;
    while pages != 0 {
        let scale = pages.trailing_zeros();
        pages -= ((pages >> scale) & 31) << scale;
        n += 1;
    }
    n
}

/// Plans the TLB invalidation of `req`: with `ril` (IDR3.RIL) range commands covering exactly
/// the range, otherwise one command per `granule` block; a single TLBI_NH_ASID when more than
/// `max_commands` would be needed. An empty range needs no command.
pub fn tlbi_va_range(
    req: &VaInvalidation,
    ril: bool,
    max_commands: usize,
) -> Result<TlbiCommands, SmmuError> {
    let bad_range = SmmuError::UnalignedRange {
        iova: req.iova,
        size: req.size,
    };
    let end = req.iova.0.checked_add(req.size).ok_or(bad_range)?;
    if !req.iova.is_aligned(kapi::PAGE_SIZE) || !req.size.is_multiple_of(kapi::PAGE_SIZE) {
        return Err(bad_range);
    }
    // Level of the leaf entries for the 4 KiB granule: 4K pages at 3, 2M blocks at 2, 1G at 1.
    let level = match req.granule {
        0x1000 => 3,
        0x20_0000 => 2,
        0x4000_0000 => 1,
        size => return Err(SmmuError::Granule { size }),
    };
    let mut plan = TlbiCommands {
        asid: req.asid,
        vmid: req.vmid,
        leaf: req.leaf,
        mode: Mode::WholeAsid,
        addr: req.iova.0,
        remaining: 0,
    };
    if req.size == 0 {
        return Ok(plan);
    }
    if ril {
        let mut pages = req.size >> PAGE_SHIFT;
        // TTL is only a valid hint when every entry is a leaf of that size; a non-leaf range
        // uses TTL = 0 and, as Linux does, never NUM = SCALE = 0 with it (one page more).
        let ttl = if req.leaf { level } else { 0 };
        if !req.leaf && pages & 31 == 1 {
            pages += 1;
        }
        plan.mode = Mode::Range { pages, ttl };
        plan.remaining = range_commands(pages);
    } else {
        let start = req.iova.0 & !(req.granule - 1);
        let blocks = (end - start).div_ceil(req.granule);
        plan.mode = Mode::PerBlock { step: req.granule };
        plan.addr = start;
        plan.remaining = usize::try_from(blocks).unwrap_or(usize::MAX);
    }
    if plan.remaining > max_commands {
        plan.mode = Mode::WholeAsid;
        plan.remaining = 1;
    }
    Ok(plan)
}

impl TlbiCommands {
    /// True when the plan is one TLBI_NH_ASID (the range needed more commands than allowed).
    pub fn is_whole_asid(&self) -> bool {
        matches!(self.mode, Mode::WholeAsid) && self.remaining > 0
    }
}

impl Iterator for TlbiCommands {
    type Item = Command;

    fn next(&mut self) -> Option<Command> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let va = |addr, range| Command::TlbiNhVa {
            asid: self.asid,
            vmid: self.vmid,
            addr: Iova(addr),
            leaf: self.leaf,
            range,
        };
        Some(match &mut self.mode {
            Mode::WholeAsid => Command::TlbiNhAsid {
                asid: self.asid,
                vmid: self.vmid,
            },
            Mode::Range { pages, ttl } => {
                let scale = pages.trailing_zeros();
                let blocks = (*pages >> scale) & 31;
                *pages -= blocks << scale;
                // `blocks` is odd, so 1..=31: NUM = blocks - 1 fits 5 bits, SCALE < 64 - 12.
                let range = VaRange::new(
                    RangeGranule::Granule4K,
                    (blocks - 1) as u8,
                    scale as u8,
                    *ttl,
                );
                let addr = self.addr;
                // Wrapping: after the last command of a range ending at 2^64 nothing reads it.
                self.addr = self.addr.wrapping_add((blocks << scale) << PAGE_SHIFT);
                va(addr, range)
            }
            Mode::PerBlock { step } => {
                let addr = self.addr;
                self.addr = self.addr.wrapping_add(*step);
                va(addr, None)
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for TlbiCommands {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const SID: StreamId = StreamId(0x18);

    #[test]
    fn smmuv3_cmd_cfgi_golden() {
        // Opcode [7:0], SID [63:32]; Leaf in word 1 bit 0.
        assert_eq!(
            encode(&Command::CfgiSte {
                sid: SID,
                leaf: true
            }),
            [0x0000_0018_0000_0003, 1]
        );
        assert_eq!(
            encode(&Command::CfgiSte {
                sid: StreamId(0xffff),
                leaf: false
            }),
            [0x0000_ffff_0000_0003, 0]
        );
        // Range [4:0] in word 1: 2^(Range+1) StreamIDs.
        assert_eq!(
            encode(&Command::CfgiSteRange {
                sid: StreamId(0x100),
                range: 7
            }),
            [0x0000_0100_0000_0004, 7]
        );
        assert_eq!(
            encode(&Command::CfgiSteRange {
                sid: SID,
                range: 200
            }),
            [0x0000_0018_0000_0004, 31]
        );
        assert_eq!(encode(&Command::CfgiAll), [0x04, 0x1f]);
        // SSID [31:12].
        assert_eq!(
            encode(&Command::CfgiCd {
                sid: SID,
                ssid: Ssid::new(0x12345).unwrap(),
                leaf: true
            }),
            [0x0000_0018_1234_5005, 1]
        );
        assert_eq!(
            encode(&Command::CfgiCdAll { sid: SID }),
            [0x0000_0018_0000_0006, 0]
        );
        assert_eq!(
            encode(&Command::PrefetchConfig { sid: SID }),
            [0x0000_0018_0000_0001, 0]
        );
    }

    #[test]
    fn smmuv3_cmd_tlbi_golden() {
        // VMID [47:32], ASID [63:48].
        assert_eq!(
            encode(&Command::TlbiNhAsid {
                asid: Asid(5),
                vmid: Vmid(0)
            }),
            [0x0005_0000_0000_0011, 0]
        );
        assert_eq!(
            encode(&Command::TlbiNhAsid {
                asid: Asid(0xabcd),
                vmid: Vmid(0x12)
            }),
            [0xabcd_0012_0000_0011, 0]
        );
        assert_eq!(
            encode(&Command::TlbiNhAll { vmid: Vmid(3) }),
            [0x0000_0003_0000_0010, 0]
        );
        assert_eq!(encode(&Command::TlbiEl2All), [0x20, 0]);
        assert_eq!(encode(&Command::TlbiNsnhAll), [0x30, 0]);
        // Single address: Address [63:12] in place, Leaf bit 0, TG = 0.
        assert_eq!(
            encode(&Command::TlbiNhVa {
                asid: Asid(1),
                vmid: Vmid(0),
                addr: Iova(0x8000_0000),
                leaf: true,
                range: None
            }),
            [0x0001_0000_0000_0012, 0x8000_0001]
        );
        // Range: NUM [16:12], SCALE [24:20]; TTL [9:8], TG [11:10].
        let range = VaRange::new(RangeGranule::Granule4K, 31, 5, 3).unwrap();
        assert_eq!(range.pages(), 32 << 5);
        assert_eq!(
            encode(&Command::TlbiNhVa {
                asid: Asid(1),
                vmid: Vmid(0),
                addr: Iova(0x1_2345_6000),
                leaf: true,
                range: Some(range)
            }),
            [
                0x0001_0000_0000_0012 | (31 << 12) | (5 << 20),
                0x1_2345_6000 | (1 << 10) | (3 << 8) | 1
            ]
        );
        let r64 = VaRange::new(RangeGranule::Granule64K, 0, 1, 0).unwrap();
        assert_eq!(
            encode(&Command::TlbiNhVa {
                asid: Asid(1),
                vmid: Vmid(0),
                addr: Iova(0x10000),
                leaf: false,
                range: Some(r64)
            })[1],
            0x10000 | (3 << 10)
        );
        assert_eq!(VaRange::new(RangeGranule::Granule4K, 32, 0, 0), None);
        assert_eq!(VaRange::new(RangeGranule::Granule4K, 0, 32, 0), None);
        assert_eq!(VaRange::new(RangeGranule::Granule4K, 0, 0, 4), None);
    }

    #[test]
    fn smmuv3_cmd_sync_golden() {
        // CS [13:12]; every MSI field 0.
        assert_eq!(
            encode(&Command::Sync {
                signal: SyncSignal::None
            }),
            [0x46, 0]
        );
        assert_eq!(
            encode(&Command::Sync {
                signal: SyncSignal::Irq
            }),
            [0x1046, 0]
        );
        assert_eq!(
            encode(&Command::Sync {
                signal: SyncSignal::Sev
            }),
            [0x2046, 0]
        );
    }

    fn req(iova: u64, size: u64, granule: u64, leaf: bool) -> VaInvalidation {
        VaInvalidation {
            asid: Asid(7),
            vmid: Vmid(0),
            iova: Iova(iova),
            size,
            granule,
            leaf,
        }
    }

    /// The 4 KiB pages each command covers, as (first page, count).
    fn coverage(cmds: &[Command]) -> Vec<(u64, u64)> {
        cmds.iter()
            .map(|c| match c {
                Command::TlbiNhVa {
                    addr,
                    range: Some(r),
                    ..
                } => (addr.0 >> 12, r.pages()),
                Command::TlbiNhVa {
                    addr, range: None, ..
                } => (addr.0 >> 12, 1),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn smmuv3_cmd_tlbi_range_single_page() {
        let cmds: Vec<_> = tlbi_va_range(&req(0x8000_0000, 0x1000, 0x1000, true), true, 64)
            .unwrap()
            .collect();
        assert_eq!(cmds.len(), 1);
        let w = encode(&cmds[0]);
        // NUM = 0, SCALE = 0, TG = 4K, TTL = 3, leaf.
        assert_eq!(
            w,
            [
                0x0007_0000_0000_0012,
                0x8000_0000 | (1 << 10) | (3 << 8) | 1
            ]
        );
    }

    #[test]
    fn smmuv3_cmd_tlbi_range_decomposes_into_5_bit_windows() {
        // 0x1f pages: one command, NUM 30, SCALE 0.
        let cmds: Vec<_> = tlbi_va_range(&req(0x10_0000, 31 << 12, 0x1000, true), true, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(0x100, 31)]);
        // 32 pages = 1 × 2^5: one command, NUM 0, SCALE 5.
        let cmds: Vec<_> = tlbi_va_range(&req(0x10_0000, 32 << 12, 0x1000, true), true, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(0x100, 32)]);
        assert_eq!(encode(&cmds[0])[0] >> 12 & 0x1fff, 5 << 8);
        // 33 pages = 1 + 32: two commands, low bits first.
        let cmds: Vec<_> = tlbi_va_range(&req(0x10_0000, 33 << 12, 0x1000, true), true, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(0x100, 1), (0x101, 32)]);
        // 2 MiB of 2 MiB blocks: 512 pages in one command with TTL = 2.
        let cmds: Vec<_> = tlbi_va_range(&req(0x20_0000, 0x20_0000, 0x20_0000, true), true, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(0x200, 512)]);
        assert_eq!(encode(&cmds[0])[1] >> 8 & 3, 2);
    }

    #[test]
    fn smmuv3_cmd_tlbi_range_covers_exactly_and_minimally() {
        // Fewest terms k × 2^s (1 ≤ k ≤ 32) summing to n, by dynamic programming.
        const N: usize = 2048;
        let mut best = [usize::MAX; N + 1];
        best[0] = 0;
        for n in 1..=N {
            for s in 0..12 {
                for k in 1..=32usize {
                    let term = k << s;
                    if term <= n && best[n - term] != usize::MAX {
                        best[n] = best[n].min(best[n - term] + 1);
                    }
                }
            }
        }
        for n in 1..=N as u64 {
            let start = 0x4000_0000 + n * 0x1000;
            let cmds: Vec<_> = tlbi_va_range(&req(start, n << 12, 0x1000, true), true, usize::MAX)
                .unwrap()
                .collect();
            assert_eq!(cmds.len(), best[n as usize], "{n} pages");
            let mut next = start >> 12;
            for (first, count) in coverage(&cmds) {
                assert_eq!(first, next, "{n} pages: gap or overlap");
                next += count;
            }
            assert_eq!(next, (start >> 12) + n, "{n} pages: wrong total");
        }
    }

    #[test]
    fn smmuv3_cmd_tlbi_range_non_leaf_avoids_num0_scale0() {
        let cmds: Vec<_> = tlbi_va_range(&req(0x8000_0000, 0x1000, 0x1000, false), true, 64)
            .unwrap()
            .collect();
        // Two pages (NUM 0, SCALE 1), TTL 0, leaf 0.
        assert_eq!(coverage(&cmds), [(0x8_0000, 2)]);
        let w = encode(&cmds[0]);
        assert_eq!(w[1], 0x8000_0000 | (1 << 10));
        // 33 pages would start with NUM 0, SCALE 0: 34 = 17 x 2 instead, one command.
        let cmds: Vec<_> = tlbi_va_range(&req(0x8000_0000, 33 << 12, 0x1000, false), true, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(0x8_0000, 34)]);
    }

    #[test]
    fn smmuv3_cmd_tlbi_without_ril_is_per_block() {
        let cmds: Vec<_> = tlbi_va_range(&req(0x8000_0000, 0x3000, 0x1000, true), false, 64)
            .unwrap()
            .collect();
        assert_eq!(
            coverage(&cmds),
            [(0x8_0000, 1), (0x8_0001, 1), (0x8_0002, 1)]
        );
        assert_eq!(encode(&cmds[1]), [0x0007_0000_0000_0012, 0x8000_1000 | 1]);
        // 2 MiB blocks: one command per block, range rounded out to block boundaries.
        let cmds: Vec<_> = tlbi_va_range(&req(0x20_0000, 0x40_0000, 0x20_0000, true), false, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(0x200, 1), (0x400, 1)]);
    }

    #[test]
    fn smmuv3_cmd_tlbi_falls_back_to_the_whole_asid() {
        let plan = tlbi_va_range(&req(0, 65 << 12, 0x1000, true), false, 64).unwrap();
        assert_eq!(plan.len(), 1);
        let cmds: Vec<_> = plan.collect();
        assert_eq!(
            cmds,
            [Command::TlbiNhAsid {
                asid: Asid(7),
                vmid: Vmid(0)
            }]
        );
        // Exactly 64 blocks still go page by page.
        assert_eq!(
            tlbi_va_range(&req(0, 64 << 12, 0x1000, true), false, 64)
                .unwrap()
                .len(),
            64
        );
        // With RIL even a huge range is a handful of commands.
        let plan = tlbi_va_range(&req(0x1000, (1 << 47) - 0x2000, 0x1000, true), true, 64).unwrap();
        assert!(plan.len() <= 10, "{} commands", plan.len());
        assert!(plan.clone().all(|c| matches!(c, Command::TlbiNhVa { .. })));
    }

    #[test]
    fn smmuv3_cmd_tlbi_top_of_the_address_space() {
        // Last page below 2^64, non-leaf: the range grows to two pages ending at 2^64.
        let top = u64::MAX - 0x1fff;
        let cmds: Vec<_> = tlbi_va_range(&req(top, 0x1000, 0x1000, false), true, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(top >> 12, 2)]);
        // The last 2 MiB block, per block.
        let block = u64::MAX - 0x1f_ffff;
        let cmds: Vec<_> = tlbi_va_range(&req(block, 0x10_0000, 0x20_0000, true), false, 64)
            .unwrap()
            .collect();
        assert_eq!(coverage(&cmds), [(block >> 12, 1)]);
    }

    #[test]
    fn smmuv3_cmd_tlbi_plan_says_when_it_is_the_whole_asid() {
        let req = |size| VaInvalidation {
            asid: Asid(5),
            vmid: Vmid(0),
            iova: Iova(0x10_0000),
            size,
            granule: 0x1000,
            leaf: true,
        };
        assert!(
            !tlbi_va_range(&req(0x1000), true, 64)
                .unwrap()
                .is_whole_asid()
        );
        assert!(!tlbi_va_range(&req(0), true, 64).unwrap().is_whole_asid());
        let many = tlbi_va_range(&req(0x100_0000), false, 64).unwrap();
        assert!(many.is_whole_asid());
        assert!(matches!(
            many.collect::<Vec<_>>()[..],
            [Command::TlbiNhAsid { .. }]
        ));
    }

    #[test]
    fn smmuv3_cmd_tlbi_refuses_bad_ranges() {
        assert_eq!(
            tlbi_va_range(&req(0x800, 0x1000, 0x1000, true), true, 64).err(),
            Some(SmmuError::UnalignedRange {
                iova: Iova(0x800),
                size: 0x1000
            })
        );
        assert!(tlbi_va_range(&req(0x1000, 0x1800, 0x1000, true), true, 64).is_err());
        assert!(tlbi_va_range(&req(u64::MAX - 0xfff, 0x2000, 0x1000, true), true, 64).is_err());
        assert_eq!(
            tlbi_va_range(&req(0, 0x1000, 0x4000, true), true, 64).err(),
            Some(SmmuError::Granule { size: 0x4000 })
        );
        assert_eq!(
            tlbi_va_range(&req(0x1000, 0, 0x1000, true), true, 64)
                .unwrap()
                .len(),
            0
        );
    }
}
