//! What the SMMU reports: event records (IHI 0070 §7.3 "Event records"), global errors
//! (chapter 7 and §6.3 SMMU_GERROR) and command queue errors (chapter 7, reported in
//! SMMU_CMDQ_CONS.ERR), plus a rate limiter for the log lines they become.
//!
//! A fault line reads `F_TRANSLATION sid 0x18 (0000:00:03.0) iova 0x8000000 write`; the driver
//! logs it with its device prefix (`smmuv3 9050000.smmuv3: ...`) and supplies the master's
//! name, which only it can look up from the StreamID ([`Event::line`]).

use core::fmt;
use core::time::Duration;

use tock_registers::fields::Field;
use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::regs::{CMDQ_CONS, GERROR};
use crate::{Iova, PhysAddr, StreamId};

register_bitfields! [u64,
    /// Event record word 0 (§7.3).
    pub EVT0 [
        /// Event type.
        EventID OFFSET(0) NUMBITS(8) [],
        /// SubstreamID valid.
        SSV OFFSET(11) NUMBITS(1) [],
        /// SubstreamID.
        SubstreamID OFFSET(12) NUMBITS(20) [],
        /// StreamID.
        StreamID OFFSET(32) NUMBITS(32) []
    ],
    /// Event record word 1 (§7.3).
    pub EVT1 [
        /// Stall tag (stalled transactions only).
        STAG OFFSET(0) NUMBITS(16) [],
        /// The transaction is stalled and waits for CMD_RESUME.
        Stall OFFSET(31) NUMBITS(1) [],
        /// Privileged (1) or unprivileged (0) access.
        PnU OFFSET(33) NUMBITS(1) [],
        /// Instruction (1) or data (0) access.
        InD OFFSET(34) NUMBITS(1) [],
        /// Read (1) or write (0).
        RnW OFFSET(35) NUMBITS(1) [],
        /// The fault happened at stage 2.
        S2 OFFSET(39) NUMBITS(1) [],
        /// What was being accessed when the fault occurred.
        CLASS OFFSET(40) NUMBITS(2) [
            CD = 0,
            TT = 1,
            IN = 2
        ]
    ],
    /// Event record word 3 (§7.3).
    pub EVT3 [
        /// Address of the descriptor whose fetch failed, or the IPA of a stage-2 fault.
        FetchAddr OFFSET(3) NUMBITS(49) []
    ]
];

/// Size of an event record.
pub const EVENT_BYTES: usize = 32;

macro_rules! event_ids {
    ($($variant:ident = $value:literal => $name:literal, $doc:literal;)*) => {
        /// Event type (EventID, §7.3), named as in the spec.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum EventId {
            $(#[doc = $doc] $variant,)*
            /// An EventID this driver does not know.
            Unknown(u8),
        }

        impl EventId {
            /// Decodes the 8-bit EventID.
            pub fn from_raw(raw: u8) -> EventId {
                match raw {
                    $($value => EventId::$variant,)*
                    other => EventId::Unknown(other),
                }
            }

            /// The 8-bit EventID.
            pub fn raw(self) -> u8 {
                match self {
                    $(EventId::$variant => $value,)*
                    EventId::Unknown(raw) => raw,
                }
            }

            /// The spec's name, `None` for unknown IDs.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(EventId::$variant => Some($name),)*
                    EventId::Unknown(_) => None,
                }
            }
        }
    };
}

event_ids! {
    FUut = 0x01 => "F_UUT", "Unsupported upstream transaction.";
    CBadStreamId = 0x02 => "C_BAD_STREAMID", "StreamID outside the stream table, or its level-1 descriptor is invalid.";
    FSteFetch = 0x03 => "F_STE_FETCH", "External abort fetching the STE.";
    CBadSte = 0x04 => "C_BAD_STE", "STE invalid (V = 0) or illegal.";
    FBadAtsTreq = 0x05 => "F_BAD_ATS_TREQ", "ATS translation request refused.";
    FStreamDisabled = 0x06 => "F_STREAM_DISABLED", "Non-substream traffic with S1DSS = terminate.";
    FTranslForbidden = 0x07 => "F_TRANSL_FORBIDDEN", "ATS-translated transaction not allowed.";
    CBadSubstreamId = 0x08 => "C_BAD_SUBSTREAMID", "SubstreamID outside the CD table.";
    FCdFetch = 0x09 => "F_CD_FETCH", "External abort fetching the CD.";
    CBadCd = 0x0a => "C_BAD_CD", "CD invalid or illegal.";
    FWalkEabt = 0x0b => "F_WALK_EABT", "External abort during a translation table walk.";
    FTranslation = 0x10 => "F_TRANSLATION", "No valid translation (invalid descriptor or address outside T0SZ).";
    FAddrSize = 0x11 => "F_ADDR_SIZE", "Output address beyond the output size.";
    FAccess = 0x12 => "F_ACCESS", "Access flag 0 in the leaf descriptor.";
    FPermission = 0x13 => "F_PERMISSION", "Access not permitted by the descriptor (for example a write to a read-only page).";
    FTlbConflict = 0x20 => "F_TLB_CONFLICT", "Conflicting TLB entries.";
    FCfgConflict = 0x21 => "F_CFG_CONFLICT", "Conflicting configuration cache entries.";
    EPageRequest = 0x24 => "E_PAGE_REQUEST", "Speculative page request hint.";
}

impl EventId {
    /// Events about one transaction, whose record carries its input address and access type.
    pub fn has_input_addr(self) -> bool {
        matches!(
            self,
            EventId::FUut
                | EventId::FBadAtsTreq
                | EventId::FTranslForbidden
                | EventId::FWalkEabt
                | EventId::FTranslation
                | EventId::FAddrSize
                | EventId::FAccess
                | EventId::FPermission
                | EventId::FTlbConflict
        )
    }

    /// Events whose word 3 holds the address of the structure whose fetch failed.
    pub fn has_fetch_addr(self) -> bool {
        matches!(
            self,
            EventId::FSteFetch | EventId::FCdFetch | EventId::FWalkEabt
        )
    }

    /// Translation faults that may be at stage 2 and then carry the IPA in word 3.
    fn may_carry_ipa(self) -> bool {
        matches!(
            self,
            EventId::FTranslation | EventId::FAddrSize | EventId::FAccess | EventId::FPermission
        )
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "event {:#04x}", self.raw()),
        }
    }
}

/// What the SMMU was accessing when a fault occurred (EVT1.CLASS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// Fetching the CD.
    Cd,
    /// Walking the translation tables.
    TranslationTable,
    /// Translating the input address itself.
    InputAddress,
    /// The reserved encoding.
    Reserved,
}

/// A decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event type.
    pub id: EventId,
    /// StreamID of the transaction.
    pub sid: StreamId,
    /// SubstreamID when SSV = 1.
    pub ssid: Option<u32>,
    /// Stalled (waits for CMD_RESUME with `stag`).
    pub stall: bool,
    /// Stall tag.
    pub stag: u16,
    /// Privileged access.
    pub privileged: bool,
    /// Instruction fetch.
    pub instruction: bool,
    /// Read (true) or write (false).
    pub read: bool,
    /// Stage-2 fault.
    pub stage2: bool,
    /// What was being accessed.
    pub class: FaultClass,
    /// Input address of the transaction (the IOVA).
    pub input_addr: Iova,
    /// Word 3's address: fetch address or IPA, meaningful per [`Event::fetch_addr`] / [`Event::ipa`].
    addr3: u64,
}

impl Event {
    /// Decodes the four little-endian words of a record.
    pub fn decode(words: &[u64; 4]) -> Event {
        let w0 = LocalRegisterCopy::<u64, EVT0::Register>::new(words[0]);
        let w1 = LocalRegisterCopy::<u64, EVT1::Register>::new(words[1]);
        let w3 = LocalRegisterCopy::<u64, EVT3::Register>::new(words[3]);
        Event {
            id: EventId::from_raw(w0.read(EVT0::EventID) as u8),
            sid: StreamId(w0.read(EVT0::StreamID) as u32),
            ssid: w0
                .is_set(EVT0::SSV)
                .then(|| w0.read(EVT0::SubstreamID) as u32),
            stall: w1.is_set(EVT1::Stall),
            stag: w1.read(EVT1::STAG) as u16,
            privileged: w1.is_set(EVT1::PnU),
            instruction: w1.is_set(EVT1::InD),
            read: w1.is_set(EVT1::RnW),
            stage2: w1.is_set(EVT1::S2),
            class: match w1.read_as_enum(EVT1::CLASS) {
                Some(EVT1::CLASS::Value::CD) => FaultClass::Cd,
                Some(EVT1::CLASS::Value::TT) => FaultClass::TranslationTable,
                Some(EVT1::CLASS::Value::IN) => FaultClass::InputAddress,
                None => FaultClass::Reserved,
            },
            input_addr: Iova(words[2]),
            addr3: w3.read(EVT3::FetchAddr) << 3,
        }
    }

    /// Decodes a record as the SMMU wrote it to memory.
    pub fn from_bytes(bytes: &[u8; EVENT_BYTES]) -> Event {
        let mut words = [0u64; 4];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Self::decode(&words)
    }

    /// Address of the STE, CD or descriptor whose fetch failed.
    pub fn fetch_addr(&self) -> Option<PhysAddr> {
        self.id.has_fetch_addr().then_some(PhysAddr(self.addr3))
    }

    /// Intermediate physical address of a stage-2 translation fault.
    pub fn ipa(&self) -> Option<u64> {
        (self.stage2 && self.id.may_carry_ipa()).then_some(self.addr3 & !0xfff)
    }

    /// The log line, with the master's name (for PCI `0000:00:03.0`) after the StreamID.
    pub fn line<'a>(&'a self, master: Option<&'a dyn fmt::Display>) -> EventLine<'a> {
        EventLine {
            event: self,
            master,
        }
    }
}

/// An event as one log line (see [`Event::line`]).
pub struct EventLine<'a> {
    event: &'a Event,
    master: Option<&'a dyn fmt::Display>,
}

impl fmt::Display for EventLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.event;
        write!(f, "{} sid {}", e.id, e.sid)?;
        if let Some(master) = self.master {
            write!(f, " ({master})")?;
        }
        if let Some(ssid) = e.ssid {
            write!(f, " ssid {ssid:#x}")?;
        }
        if e.id.has_input_addr() {
            write!(
                f,
                " iova {:#x} {}",
                e.input_addr,
                if e.read { "read" } else { "write" }
            )?;
            if e.instruction {
                f.write_str(" exec")?;
            }
            if e.privileged {
                f.write_str(" priv")?;
            }
            match e.class {
                FaultClass::InputAddress => {}
                FaultClass::Cd => f.write_str(" during CD fetch")?,
                FaultClass::TranslationTable => f.write_str(" during table walk")?,
                FaultClass::Reserved => f.write_str(" class 3")?,
            }
        }
        if let Some(ipa) = e.ipa() {
            write!(f, " stage 2 ipa {ipa:#x}")?;
        } else if e.stage2 {
            f.write_str(" stage 2")?;
        }
        if let Some(addr) = e.fetch_addr() {
            write!(f, " fetch {addr:#x}")?;
        }
        if e.stall {
            write!(f, " stalled stag {:#x}", e.stag)?;
        }
        Ok(())
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.line(None).fmt(f)
    }
}

/// Linux's default: 10 lines per 5 seconds.
pub const DEFAULT_BURST: u32 = 10;
/// Linux's default interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Whether to print a line now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print it; first print a [`Suppressed`] line when `suppressed` is non-zero (lines dropped
    /// in the previous interval).
    Print { suppressed: u32 },
    /// Drop it (counted).
    Suppress,
}

/// At most `burst` lines per `interval`; the rest are counted and reported as one line when the
/// next interval starts. Pure: the caller passes the time.
#[derive(Clone, Copy, Debug)]
pub struct RateLimiter {
    burst: u32,
    interval: Duration,
    window_start: Option<Duration>,
    printed: u32,
    suppressed: u32,
}

impl RateLimiter {
    /// `burst` lines per `interval`.
    pub const fn new(burst: u32, interval: Duration) -> Self {
        Self {
            burst,
            interval,
            window_start: None,
            printed: 0,
            suppressed: 0,
        }
    }

    fn window_over(&self, now: Duration) -> bool {
        match self.window_start {
            None => true,
            Some(start) => now.saturating_sub(start) >= self.interval,
        }
    }

    /// Decides for a line at time `now` (time since boot, monotonic).
    pub fn check(&mut self, now: Duration) -> Verdict {
        if self.window_over(now) {
            let suppressed = core::mem::take(&mut self.suppressed);
            self.window_start = Some(now);
            self.printed = 1;
            return if self.burst == 0 {
                self.suppressed = 1;
                Verdict::Suppress
            } else {
                Verdict::Print { suppressed }
            };
        }
        if self.printed < self.burst {
            self.printed += 1;
            Verdict::Print { suppressed: 0 }
        } else {
            self.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Lines dropped in an interval that is over, to report when no new line came to carry the
    /// count (call it when the event queue has been drained).
    pub fn flush(&mut self, now: Duration) -> Option<Suppressed> {
        if self.suppressed != 0 && self.window_over(now) {
            self.window_start = None;
            Some(Suppressed(core::mem::take(&mut self.suppressed)))
        } else {
            None
        }
    }

    /// Lines dropped so far in this interval, reported now (before a line that explains them,
    /// such as a stream being cut off); the interval's budget is unchanged.
    pub fn take_suppressed(&mut self) -> Option<Suppressed> {
        match core::mem::take(&mut self.suppressed) {
            0 => None,
            n => Some(Suppressed(n)),
        }
    }
}

/// The line reporting dropped lines: `12 events suppressed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suppressed(pub u32);

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} event{s} suppressed", self.0)
    }
}

/// GERROR bits and their names (§6.3, SMMU_GERROR).
const GERROR_NAMES: [(Field<u32, GERROR::Register>, &str); 9] = [
    (GERROR::CMDQ_ERR, "CMDQ_ERR"),
    (GERROR::EVENTQ_ABT_ERR, "EVENTQ_ABT_ERR"),
    (GERROR::PRIQ_ABT_ERR, "PRIQ_ABT_ERR"),
    (GERROR::MSI_CMDQ_ABT_ERR, "MSI_CMDQ_ABT_ERR"),
    (GERROR::MSI_EVENTQ_ABT_ERR, "MSI_EVENTQ_ABT_ERR"),
    (GERROR::MSI_PRIQ_ABT_ERR, "MSI_PRIQ_ABT_ERR"),
    (GERROR::MSI_GERROR_ABT_ERR, "MSI_GERROR_ABT_ERR"),
    (GERROR::SFM_ERR, "SFM_ERR"),
    (GERROR::CMDQP_ERR, "CMDQP_ERR"),
];

/// The active global errors: the bits where SMMU_GERROR differs from SMMU_GERRORN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalErrors {
    gerror: u32,
    active: u32,
}

impl GlobalErrors {
    /// From the two register values.
    pub fn new(gerror: u32, gerrorn: u32) -> Self {
        Self {
            gerror,
            active: gerror ^ gerrorn,
        }
    }

    /// No error active.
    pub fn is_empty(&self) -> bool {
        self.active == 0
    }

    /// The active bits.
    pub fn bits(&self) -> u32 {
        self.active
    }

    /// True when `field` (for example [`GERROR::CMDQ_ERR`](const@GERROR::CMDQ_ERR)) is active.
    pub fn is_active(&self, field: Field<u32, GERROR::Register>) -> bool {
        field.is_set(self.active)
    }

    /// The GERRORN value that acknowledges exactly these errors: GERRORN toggled in the active
    /// bits, i.e. the GERROR value read. An error raised after that read toggles GERROR again
    /// and stays active.
    pub fn ack_value(&self) -> u32 {
        self.gerror
    }
}

impl fmt::Display for GlobalErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.active == 0 {
            return f.write_str("none");
        }
        let mut known = 0;
        let mut sep = "";
        for (field, name) in GERROR_NAMES {
            known |= field.mask << field.shift;
            if field.is_set(self.active) {
                write!(f, "{sep}{name}")?;
                sep = " ";
            }
        }
        let unknown = self.active & !known;
        if unknown != 0 {
            write!(f, "{sep}{unknown:#x}")?;
        }
        Ok(())
    }
}

/// Why the command queue stopped (SMMU_CMDQ_CONS.ERR, valid while GERROR.CMDQ_ERR is active).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdqError {
    /// CERROR_NONE.
    None,
    /// CERROR_ILL: the command at CONS is illegal (unknown opcode, bad field, SSec on NS queue).
    Illegal,
    /// CERROR_ABT: fetching the command aborted.
    Abort,
    /// CERROR_ATC_INV_SYNC: an ATC invalidation timed out before a CMD_SYNC.
    AtcInvSync,
    /// A reserved / implementation-defined code.
    Other(u8),
}

impl CmdqError {
    /// From a CMDQ_CONS value.
    pub fn from_cons(cons: u32) -> CmdqError {
        let cons = LocalRegisterCopy::<u32, CMDQ_CONS::Register>::new(cons);
        match cons.read_as_enum(CMDQ_CONS::ERR) {
            Some(CMDQ_CONS::ERR::Value::CERROR_NONE) => CmdqError::None,
            Some(CMDQ_CONS::ERR::Value::CERROR_ILL) => CmdqError::Illegal,
            Some(CMDQ_CONS::ERR::Value::CERROR_ABT) => CmdqError::Abort,
            Some(CMDQ_CONS::ERR::Value::CERROR_ATC_INV_SYNC) => CmdqError::AtcInvSync,
            None => CmdqError::Other(cons.read(CMDQ_CONS::ERR) as u8),
        }
    }
}

impl CmdqError {
    /// The spec's name of the code (`CERROR_ILL`), `None` for reserved codes.
    pub fn name(self) -> Option<&'static str> {
        match self {
            CmdqError::None => Some("CERROR_NONE"),
            CmdqError::Illegal => Some("CERROR_ILL"),
            CmdqError::Abort => Some("CERROR_ABT"),
            CmdqError::AtcInvSync => Some("CERROR_ATC_INV_SYNC"),
            CmdqError::Other(_) => None,
        }
    }
}

impl fmt::Display for CmdqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdqError::None => f.write_str("CERROR_NONE"),
            CmdqError::Illegal => f.write_str("CERROR_ILL (illegal command)"),
            CmdqError::Abort => f.write_str("CERROR_ABT (command fetch aborted)"),
            CmdqError::AtcInvSync => f.write_str("CERROR_ATC_INV_SYNC (ATC invalidation timeout)"),
            CmdqError::Other(code) => write!(f, "command error {code:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// A stage-1 translation fault: edu at 00:03.0 (SID 0x18) writing to unmapped IOVA 0x8000000.
    fn translation_write() -> [u64; 4] {
        [
            0x0000_0018_0000_0010,
            // RnW = 0 (write), CLASS = IN (2 << 40).
            2 << 40,
            0x0800_0000,
            0,
        ]
    }

    #[test]
    fn smmuv3_event_translation_fault_decodes() {
        let e = Event::decode(&translation_write());
        assert_eq!(e.id, EventId::FTranslation);
        assert_eq!(e.sid, StreamId(0x18));
        assert_eq!(e.ssid, None);
        assert!(!e.read && !e.instruction && !e.privileged && !e.stage2 && !e.stall);
        assert_eq!(e.class, FaultClass::InputAddress);
        assert_eq!(e.input_addr, Iova(0x800_0000));
        assert_eq!(e.fetch_addr(), None);
        assert_eq!(e.ipa(), None);
    }

    #[test]
    fn smmuv3_event_log_line_matches_the_kernel_format() {
        let e = Event::decode(&translation_write());
        let master = "0000:00:03.0";
        assert_eq!(
            e.line(Some(&master)).to_string(),
            "F_TRANSLATION sid 0x18 (0000:00:03.0) iova 0x8000000 write"
        );
        assert_eq!(e.to_string(), "F_TRANSLATION sid 0x18 iova 0x8000000 write");
    }

    #[test]
    fn smmuv3_event_ids_golden() {
        let ids = [
            (0x02, "C_BAD_STREAMID"),
            (0x03, "F_STE_FETCH"),
            (0x04, "C_BAD_STE"),
            (0x09, "F_CD_FETCH"),
            (0x0a, "C_BAD_CD"),
            (0x0b, "F_WALK_EABT"),
            (0x10, "F_TRANSLATION"),
            (0x11, "F_ADDR_SIZE"),
            (0x12, "F_ACCESS"),
            (0x13, "F_PERMISSION"),
            (0x21, "F_CFG_CONFLICT"),
        ];
        for (raw, name) in ids {
            let id = EventId::from_raw(raw);
            assert_eq!(id.name(), Some(name));
            assert_eq!(id.raw(), raw);
        }
        assert_eq!(EventId::from_raw(0x55), EventId::Unknown(0x55));
        assert_eq!(EventId::Unknown(0x55).to_string(), "event 0x55");
    }

    #[test]
    fn smmuv3_event_fields_decode_from_their_bits() {
        let e = Event::decode(&[
            // F_PERMISSION, SSV, SSID 0x1234, SID 0x100.
            0x0000_0100_0123_4813,
            // STAG 0xbeef, Stall, PnU, InD, RnW, CLASS = TT.
            0xbeef | (1 << 31) | (1 << 33) | (1 << 34) | (1 << 35) | (1 << 40),
            0xffff_8000_1234_5000,
            0,
        ]);
        assert_eq!(e.id, EventId::FPermission);
        assert_eq!(e.ssid, Some(0x1234));
        assert_eq!(e.sid, StreamId(0x100));
        assert!(e.stall && e.privileged && e.instruction && e.read);
        assert_eq!(e.stag, 0xbeef);
        assert_eq!(e.class, FaultClass::TranslationTable);
        assert_eq!(
            e.to_string(),
            "F_PERMISSION sid 0x100 ssid 0x1234 iova 0xffff800012345000 read exec priv \
             during table walk stalled stag 0xbeef"
        );
    }

    #[test]
    fn smmuv3_event_fetch_and_config_events() {
        let walk = Event::decode(&[
            0x0000_0018_0000_000b,
            1 << 35 | 1 << 40,
            0x1000,
            0x4080_0ff8,
        ]);
        assert_eq!(walk.fetch_addr(), Some(PhysAddr(0x4080_0ff8)));
        assert_eq!(
            walk.to_string(),
            "F_WALK_EABT sid 0x18 iova 0x1000 read during table walk fetch 0x40800ff8"
        );
        let ste = Event::decode(&[0x0000_0018_0000_0003, 0, 0, 0xdead_beef_4000_0607]);
        // FetchAddr is [51:3]: bits above 51 and below 3 are not part of it.
        assert_eq!(ste.fetch_addr(), Some(PhysAddr(0x000d_beef_4000_0600)));
        assert_eq!(
            ste.to_string(),
            "F_STE_FETCH sid 0x18 fetch 0xdbeef40000600"
        );
        let bad = Event::decode(&[0x0000_0018_0000_0004, 0, 0, 0]);
        assert_eq!(bad.to_string(), "C_BAD_STE sid 0x18");
        let cd = Event::decode(&[0x0000_0018_0000_000a, 0, 0, 0]);
        assert_eq!(
            cd.line(Some(&"0000:00:03.0")).to_string(),
            "C_BAD_CD sid 0x18 (0000:00:03.0)"
        );
        let s2 = Event::decode(&[
            0x0000_0018_0000_0010,
            1 << 39 | 2 << 40,
            0x2000,
            0x8_0000_2abc,
        ]);
        assert_eq!(s2.ipa(), Some(0x8_0000_2000));
        assert_eq!(
            s2.to_string(),
            "F_TRANSLATION sid 0x18 iova 0x2000 write stage 2 ipa 0x800002000"
        );
    }

    #[test]
    fn smmuv3_event_from_bytes_is_little_endian() {
        let words = translation_write();
        let mut bytes = [0u8; 32];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(Event::from_bytes(&bytes), Event::decode(&words));
    }

    #[test]
    fn smmuv3_event_rate_limiter_bursts_then_reports() {
        let s = Duration::from_secs;
        let mut rl = RateLimiter::new(3, s(5));
        assert_eq!(rl.check(s(0)), Verdict::Print { suppressed: 0 });
        assert_eq!(rl.check(s(1)), Verdict::Print { suppressed: 0 });
        assert_eq!(rl.check(s(1)), Verdict::Print { suppressed: 0 });
        for _ in 0..12 {
            assert_eq!(rl.check(s(2)), Verdict::Suppress);
        }
        assert_eq!(rl.flush(s(4)), None); // interval not over yet
        // Next interval: the first line carries the count.
        assert_eq!(rl.check(s(5)), Verdict::Print { suppressed: 12 });
        assert_eq!(rl.check(s(6)), Verdict::Print { suppressed: 0 });
        assert_eq!(Suppressed(12).to_string(), "12 events suppressed");
        assert_eq!(Suppressed(1).to_string(), "1 event suppressed");
    }

    #[test]
    fn smmuv3_event_rate_limiter_flush_reports_a_quiet_end() {
        let s = Duration::from_secs;
        let mut rl = RateLimiter::new(1, s(5));
        assert_eq!(rl.check(s(0)), Verdict::Print { suppressed: 0 });
        assert_eq!(rl.check(s(0)), Verdict::Suppress);
        assert_eq!(rl.check(s(1)), Verdict::Suppress);
        assert_eq!(rl.flush(s(5)), Some(Suppressed(2)));
        assert_eq!(rl.flush(s(6)), None);
        assert_eq!(rl.check(s(7)), Verdict::Print { suppressed: 0 });
        // A limiter with burst 0 prints nothing, but still counts.
        let mut mute = RateLimiter::new(0, s(5));
        assert_eq!(mute.check(s(0)), Verdict::Suppress);
        assert_eq!(mute.check(s(1)), Verdict::Suppress);
        assert_eq!(mute.flush(s(5)), Some(Suppressed(2)));
    }

    #[test]
    fn smmuv3_event_rate_limiter_take_reports_now_and_keeps_the_budget() {
        let s = Duration::from_secs;
        let mut rl = RateLimiter::new(1, s(5));
        assert_eq!(rl.take_suppressed(), None);
        assert_eq!(rl.check(s(0)), Verdict::Print { suppressed: 0 });
        assert_eq!(rl.check(s(1)), Verdict::Suppress);
        assert_eq!(rl.check(s(1)), Verdict::Suppress);
        assert_eq!(rl.take_suppressed(), Some(Suppressed(2)));
        assert_eq!(rl.take_suppressed(), None);
        // Still within the interval: the budget is spent.
        assert_eq!(rl.check(s(2)), Verdict::Suppress);
        assert_eq!(rl.check(s(5)), Verdict::Print { suppressed: 1 });
    }

    #[test]
    fn smmuv3_event_gerror_active_is_the_difference() {
        let none = GlobalErrors::new(0x5, 0x5);
        assert!(none.is_empty());
        assert_eq!(none.to_string(), "none");
        // CMDQ_ERR toggled on, EVENTQ_ABT_ERR toggled (second time) on, bit 2 acked earlier.
        let g = GlobalErrors::new(0b0000_0001, 0b0000_0100);
        assert_eq!(g.bits(), 0b101);
        assert!(g.is_active(GERROR::CMDQ_ERR) && g.is_active(GERROR::EVENTQ_ABT_ERR));
        assert!(!g.is_active(GERROR::SFM_ERR));
        assert_eq!(g.to_string(), "CMDQ_ERR EVENTQ_ABT_ERR");
        // Writing the ack value to GERRORN clears every active bit.
        assert!(GlobalErrors::new(0b0000_0001, g.ack_value()).is_empty());
        assert_eq!(
            GlobalErrors::new(0x1_0102, 0).to_string(),
            "SFM_ERR 0x10002"
        );
    }

    #[test]
    fn smmuv3_event_cmdq_error_codes() {
        assert_eq!(CmdqError::from_cons(0x0000_0105), CmdqError::None);
        assert_eq!(CmdqError::from_cons(0x0100_0105), CmdqError::Illegal);
        assert_eq!(CmdqError::from_cons(0x0200_0000), CmdqError::Abort);
        assert_eq!(CmdqError::from_cons(0x0300_0000), CmdqError::AtcInvSync);
        assert_eq!(CmdqError::from_cons(0x7f00_0000), CmdqError::Other(0x7f));
        // Bit 31 is not part of ERR.
        assert_eq!(CmdqError::from_cons(0x8100_0000), CmdqError::Illegal);
        assert_eq!(
            CmdqError::Illegal.to_string(),
            "CERROR_ILL (illegal command)"
        );
        assert_eq!(CmdqError::Illegal.name(), Some("CERROR_ILL"));
        assert_eq!(CmdqError::Other(9).name(), None);
    }
}
