//! ITS commands (IHI 0069 §5.3, "ITS commands"): 32-byte records, four little-endian
//! double-words, opcode in bits [7:0] of the first.
//!
//! [`encode`] is a pure function of a [`Command`]; the fields of each double-word are declared
//! once below and shared by the commands that use them.

use kapi::PhysAddr;
use tock_registers::register_bitfields;

register_bitfields! [u64,
    /// Double-word 0 of every command.
    pub ITS_CMD0 [
        /// DeviceID (MAPD, MAPTI, MAPI, INV, DISCARD, INT, CLEAR, MOVI).
        DeviceID OFFSET(32) NUMBITS(32) [],
        /// Command number.
        CommandType OFFSET(0) NUMBITS(8) []
    ],
    /// Double-word 1.
    pub ITS_CMD1 [
        /// Physical LPI INTID the event becomes (MAPTI).
        pINTID OFFSET(32) NUMBITS(32) [],
        /// EventID (MAPTI, MAPI, INV, DISCARD, INT, CLEAR, MOVI).
        EventID OFFSET(0) NUMBITS(32) [],
        /// EventID bits of the device, minus one (MAPD).
        Size OFFSET(0) NUMBITS(5) []
    ],
    /// Double-word 2.
    pub ITS_CMD2 [
        /// Valid: 1 maps, 0 unmaps (MAPD, MAPC).
        V OFFSET(63) NUMBITS(1) [],
        /// Target redistributor (MAPC, SYNC, MOVALL's first): processor number when
        /// GITS_TYPER.PTA = 0, physical address bits [51:16] when PTA = 1.
        RDbase OFFSET(16) NUMBITS(36) [],
        /// Interrupt translation table address bits [51:8] (MAPD; 256-byte aligned).
        ITT_addr OFFSET(8) NUMBITS(44) [],
        /// Interrupt collection ID (MAPC, MAPTI, MAPI, INVALL, MOVI).
        ICID OFFSET(0) NUMBITS(16) []
    ],
    /// Double-word 3.
    pub ITS_CMD3 [
        /// Second target redistributor (MOVALL), encoded like RDbase.
        RDbase2 OFFSET(16) NUMBITS(36) []
    ]
];

/// Command numbers (§5.3).
pub mod opcode {
    /// MOVI: move one event to another collection.
    pub const MOVI: u8 = 0x01;
    /// INT: make the LPI of an event pending, as if the device had written it.
    pub const INT: u8 = 0x03;
    /// CLEAR: clear the pending state of an event's LPI.
    pub const CLEAR: u8 = 0x04;
    /// SYNC: wait until earlier commands' effects are visible at a redistributor.
    pub const SYNC: u8 = 0x05;
    /// MAPD: map (or unmap) a DeviceID to an interrupt translation table.
    pub const MAPD: u8 = 0x08;
    /// MAPC: map (or unmap) a collection to a redistributor.
    pub const MAPC: u8 = 0x09;
    /// MAPTI: map an EventID to an LPI INTID in a collection.
    pub const MAPTI: u8 = 0x0a;
    /// MAPI: MAPTI with INTID = EventID.
    pub const MAPI: u8 = 0x0b;
    /// INV: reload an event's LPI configuration.
    pub const INV: u8 = 0x0c;
    /// INVALL: reload the configuration of every LPI in a collection.
    pub const INVALL: u8 = 0x0d;
    /// MOVALL: move every pending LPI from one redistributor to another.
    pub const MOVALL: u8 = 0x0e;
    /// DISCARD: unmap an event and clear its pending LPI.
    pub const DISCARD: u8 = 0x0f;
}

/// Size of one command.
pub const COMMAND_SIZE: u64 = 32;

/// Alignment of an interrupt translation table (MAPD ITT_addr holds bits [51:8]).
pub const ITT_ALIGN: u64 = 256;

/// How commands name a redistributor (GITS_TYPER.PTA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdBase {
    /// PTA = 0: the redistributor's GICR_TYPER.Processor_Number.
    ProcessorNumber(u16),
    /// PTA = 1: the physical address of its RD_base frame (64 KiB aligned).
    Physical(PhysAddr),
}

impl RdBase {
    /// The value of the RDbase field (bits [51:16] of the double-word).
    pub fn field(self) -> u64 {
        match self {
            RdBase::ProcessorNumber(n) => u64::from(n),
            RdBase::Physical(pa) => pa.0 >> 16,
        }
    }
}

/// A DeviceID's interrupt translation table, as MAPD describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Itt {
    /// Physical address, 256-byte aligned.
    pub pa: PhysAddr,
    /// EventIDs of the device are `0 .. 2^event_bits`; 1 to 32.
    pub event_bits: u32,
}

/// One ITS command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Maps `device` to `itt`, or unmaps it (`itt: None`, V = 0).
    Mapd { device: u32, itt: Option<Itt> },
    /// Maps collection `icid` to `target`, or unmaps it (`target: None`).
    Mapc { icid: u16, target: Option<RdBase> },
    /// Maps (`device`, `event`) to LPI `intid` in collection `icid`.
    Mapti {
        device: u32,
        event: u32,
        intid: u32,
        icid: u16,
    },
    /// Maps (`device`, `event`) to LPI `event` in collection `icid`.
    Mapi { device: u32, event: u32, icid: u16 },
    /// Reloads the configuration of the LPI (`device`, `event`) maps to.
    Inv { device: u32, event: u32 },
    /// Reloads the configuration of every LPI in collection `icid`.
    Invall { icid: u16 },
    /// Completes when every earlier command's effects are visible at `target`.
    Sync { target: RdBase },
    /// Unmaps (`device`, `event`) and clears its LPI's pending state.
    Discard { device: u32, event: u32 },
    /// Makes the LPI of (`device`, `event`) pending (a software-generated MSI).
    Int { device: u32, event: u32 },
    /// Clears the pending state of the LPI of (`device`, `event`).
    Clear { device: u32, event: u32 },
    /// Moves (`device`, `event`) to collection `icid`.
    Movi { device: u32, event: u32, icid: u16 },
    /// Moves every pending LPI of redistributor `from` to `to`.
    Movall { from: RdBase, to: RdBase },
}

impl Command {
    /// The command number.
    pub fn opcode(&self) -> u8 {
        match self {
            Command::Mapd { .. } => opcode::MAPD,
            Command::Mapc { .. } => opcode::MAPC,
            Command::Mapti { .. } => opcode::MAPTI,
            Command::Mapi { .. } => opcode::MAPI,
            Command::Inv { .. } => opcode::INV,
            Command::Invall { .. } => opcode::INVALL,
            Command::Sync { .. } => opcode::SYNC,
            Command::Discard { .. } => opcode::DISCARD,
            Command::Int { .. } => opcode::INT,
            Command::Clear { .. } => opcode::CLEAR,
            Command::Movi { .. } => opcode::MOVI,
            Command::Movall { .. } => opcode::MOVALL,
        }
    }
}

fn dw0(opcode: u8, device: u32) -> u64 {
    (ITS_CMD0::CommandType.val(u64::from(opcode)) + ITS_CMD0::DeviceID.val(u64::from(device))).value
}

fn dw0_op(opcode: u8) -> u64 {
    ITS_CMD0::CommandType.val(u64::from(opcode)).value
}

fn event(event: u32) -> u64 {
    ITS_CMD1::EventID.val(u64::from(event)).value
}

fn icid(icid: u16) -> u64 {
    ITS_CMD2::ICID.val(u64::from(icid)).value
}

/// The four double-words of `cmd`, in queue order. Reserved fields are zero.
///
/// Preconditions, checked by the driver before it builds a command: an ITT address is 256-byte
/// aligned and `event_bits` is 1..=32; a physical RDbase is 64 KiB aligned.
pub fn encode(cmd: &Command) -> [u64; 4] {
    let op = cmd.opcode();
    match *cmd {
        Command::Mapd { device, itt } => {
            let (size, dw2) = match itt {
                Some(itt) => (
                    ITS_CMD1::Size
                        .val(u64::from(itt.event_bits.saturating_sub(1)))
                        .value,
                    (ITS_CMD2::ITT_addr.val(itt.pa.0 >> 8) + ITS_CMD2::V::SET).value,
                ),
                None => (0, 0),
            };
            [dw0(op, device), size, dw2, 0]
        }
        Command::Mapc { icid: id, target } => {
            let dw2 = match target {
                Some(t) => (ITS_CMD2::RDbase.val(t.field()) + ITS_CMD2::V::SET).value | icid(id),
                None => icid(id),
            };
            [dw0_op(op), 0, dw2, 0]
        }
        Command::Mapti {
            device,
            event: e,
            intid,
            icid: id,
        } => [
            dw0(op, device),
            event(e) | ITS_CMD1::pINTID.val(u64::from(intid)).value,
            icid(id),
            0,
        ],
        Command::Mapi {
            device,
            event: e,
            icid: id,
        }
        | Command::Movi {
            device,
            event: e,
            icid: id,
        } => [dw0(op, device), event(e), icid(id), 0],
        Command::Inv { device, event: e }
        | Command::Discard { device, event: e }
        | Command::Int { device, event: e }
        | Command::Clear { device, event: e } => [dw0(op, device), event(e), 0, 0],
        Command::Invall { icid: id } => [dw0_op(op), 0, icid(id), 0],
        Command::Sync { target } => [dw0_op(op), 0, ITS_CMD2::RDbase.val(target.field()).value, 0],
        Command::Movall { from, to } => [
            dw0_op(op),
            0,
            ITS_CMD2::RDbase.val(from.field()).value,
            ITS_CMD3::RDbase2.val(to.field()).value,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: u32 = 0x0018; // edu at 00:03.0
    const RD0: RdBase = RdBase::ProcessorNumber(0);

    #[test]
    fn mapd_golden() {
        // DeviceID [63:32]; Size [4:0] = EventID bits - 1; ITT_addr [51:8]; V [63].
        assert_eq!(
            encode(&Command::Mapd {
                device: DEV,
                itt: Some(Itt {
                    pa: PhysAddr(0x4123_4500),
                    event_bits: 5
                })
            }),
            [0x0000_0018_0000_0008, 4, 0x8000_0000_4123_4500, 0]
        );
        // Unmap: V = 0, Size and ITT_addr zero.
        assert_eq!(
            encode(&Command::Mapd {
                device: 0xffff,
                itt: None
            }),
            [0x0000_ffff_0000_0008, 0, 0, 0]
        );
        // 32 EventID bits is Size = 31; the top ITT address bit 51 lands on bit 51.
        assert_eq!(
            encode(&Command::Mapd {
                device: 1,
                itt: Some(Itt {
                    pa: PhysAddr(0x8_0000_0000_0100),
                    event_bits: 32
                })
            }),
            [0x0000_0001_0000_0008, 31, 0x8008_0000_0000_0100, 0]
        );
    }

    #[test]
    fn mapc_golden() {
        // ICID [15:0], RDbase [51:16], V [63]. PTA = 0: processor number.
        assert_eq!(
            encode(&Command::Mapc {
                icid: 0,
                target: Some(RD0)
            }),
            [0x09, 0, 0x8000_0000_0000_0000, 0]
        );
        assert_eq!(
            encode(&Command::Mapc {
                icid: 3,
                target: Some(RdBase::ProcessorNumber(2))
            }),
            [0x09, 0, 0x8000_0000_0002_0003, 0]
        );
        // PTA = 1: address bits [51:16] stay in place.
        assert_eq!(
            encode(&Command::Mapc {
                icid: 1,
                target: Some(RdBase::Physical(PhysAddr(0x080c_0000)))
            }),
            [0x09, 0, 0x8000_0000_080c_0001, 0]
        );
        assert_eq!(
            encode(&Command::Mapc {
                icid: 7,
                target: None
            }),
            [0x09, 0, 7, 0]
        );
    }

    #[test]
    fn mapti_and_mapi_golden() {
        // EventID [31:0] and pINTID [63:32] in DW1; ICID in DW2.
        assert_eq!(
            encode(&Command::Mapti {
                device: DEV,
                event: 1,
                intid: 8192,
                icid: 0
            }),
            [0x0000_0018_0000_000a, 0x0000_2000_0000_0001, 0, 0]
        );
        assert_eq!(
            encode(&Command::Mapi {
                device: DEV,
                event: 0x2005,
                icid: 2
            }),
            [0x0000_0018_0000_000b, 0x2005, 2, 0]
        );
    }

    #[test]
    fn event_commands_golden() {
        for (cmd, op) in [
            (
                Command::Inv {
                    device: DEV,
                    event: 3,
                },
                0x0c,
            ),
            (
                Command::Discard {
                    device: DEV,
                    event: 3,
                },
                0x0f,
            ),
            (
                Command::Int {
                    device: DEV,
                    event: 3,
                },
                0x03,
            ),
            (
                Command::Clear {
                    device: DEV,
                    event: 3,
                },
                0x04,
            ),
        ] {
            assert_eq!(encode(&cmd), [0x0000_0018_0000_0000 | op, 3, 0, 0]);
        }
        assert_eq!(
            encode(&Command::Movi {
                device: DEV,
                event: 3,
                icid: 1
            }),
            [0x0000_0018_0000_0001, 3, 1, 0]
        );
    }

    #[test]
    fn collection_and_sync_commands_golden() {
        assert_eq!(encode(&Command::Invall { icid: 5 }), [0x0d, 0, 5, 0]);
        assert_eq!(encode(&Command::Sync { target: RD0 }), [0x05, 0, 0, 0]);
        assert_eq!(
            encode(&Command::Sync {
                target: RdBase::ProcessorNumber(1)
            }),
            [0x05, 0, 0x1_0000, 0]
        );
        assert_eq!(
            encode(&Command::Sync {
                target: RdBase::Physical(PhysAddr(0x080a_0000))
            }),
            [0x05, 0, 0x080a_0000, 0]
        );
        assert_eq!(
            encode(&Command::Movall {
                from: RdBase::ProcessorNumber(1),
                to: RD0
            }),
            [0x0e, 0, 0x1_0000, 0]
        );
        assert_eq!(
            encode(&Command::Movall {
                from: RD0,
                to: RdBase::ProcessorNumber(3)
            }),
            [0x0e, 0, 0, 0x3_0000]
        );
    }

    #[test]
    fn opcode_matches_the_encoded_byte() {
        let all = [
            Command::Mapd {
                device: 1,
                itt: None,
            },
            Command::Mapc {
                icid: 0,
                target: None,
            },
            Command::Mapti {
                device: 1,
                event: 0,
                intid: 8192,
                icid: 0,
            },
            Command::Mapi {
                device: 1,
                event: 0,
                icid: 0,
            },
            Command::Inv {
                device: 1,
                event: 0,
            },
            Command::Invall { icid: 0 },
            Command::Sync { target: RD0 },
            Command::Discard {
                device: 1,
                event: 0,
            },
            Command::Int {
                device: 1,
                event: 0,
            },
            Command::Clear {
                device: 1,
                event: 0,
            },
            Command::Movi {
                device: 1,
                event: 0,
                icid: 0,
            },
            Command::Movall { from: RD0, to: RD0 },
        ];
        for cmd in all {
            assert_eq!(encode(&cmd)[0] & 0xff, u64::from(cmd.opcode()), "{cmd:?}");
        }
    }
}
