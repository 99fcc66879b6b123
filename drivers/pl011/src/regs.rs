//! PL011 registers, Arm DDI 0183 (PrimeCell UART PL011 Technical Reference Manual) §3.2.
#![allow(non_snake_case)]

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    /// UARTFR, flag register (§3.3.3).
    pub FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// UARTLCR_H, line control (§3.3.7).
    pub LCR_H [
        /// Word length.
        WLEN OFFSET(5) NUMBITS(2) [EightBit = 0b11],
        /// FIFOs enabled.
        FEN OFFSET(4) NUMBITS(1) []
    ],
    /// UARTCR, control (§3.3.8).
    pub CR [
        /// Receive enable.
        RXE OFFSET(9) NUMBITS(1) [],
        /// Transmit enable.
        TXE OFFSET(8) NUMBITS(1) [],
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    /// Interrupt bits shared by UARTIMSC/RIS/MIS/ICR (§3.3.10-13).
    pub INT [
        /// Receive interrupt.
        RX OFFSET(4) NUMBITS(1) [],
        /// Transmit interrupt.
        TX OFFSET(5) NUMBITS(1) []
    ]
];

register_structs! {
    /// The PL011 register block.
    pub Pl011Regs {
        (0x000 => pub DR: ReadWrite<u32>),
        (0x004 => _reserved0),
        (0x018 => pub FR: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x02c => pub LCR_H: ReadWrite<u32, LCR_H::Register>),
        (0x030 => pub CR: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x038 => pub IMSC: ReadWrite<u32, INT::Register>),
        (0x03c => pub RIS: ReadOnly<u32, INT::Register>),
        (0x040 => pub MIS: ReadOnly<u32, INT::Register>),
        (0x044 => pub ICR: WriteOnly<u32, INT::Register>),
        (0x048 => @END),
    }
}
