//! edu registers (QEMU `docs/specs/edu.rst`, `hw/misc/edu.c`), BAR0.
#![allow(non_snake_case)]

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

/// Value of the identification register: 0x010000ed (version 1.0, "ed" for edu).
pub const EDU_ID: u32 = 0x0100_00ed;
/// Device-side address of edu's 4 KiB DMA buffer.
pub const DMA_BUFFER: u64 = 0x4_0000;
/// Size of that buffer.
pub const DMA_BUFFER_SIZE: u64 = 4096;
/// Interrupt status bit raised when a DMA command with IRQ requested completes.
pub const IRQ_DMA_DONE: u32 = 0x100;

register_bitfields! [u32,
    /// Status register at 0x20.
    pub STATUS [
        /// Factorial computation running (read-only).
        COMPUTING OFFSET(0) NUMBITS(1) [],
        /// Raise an interrupt when the factorial is done.
        IRQ_FACT OFFSET(7) NUMBITS(1) []
    ]
];

register_bitfields! [u64,
    /// DMA command register at 0x98.
    pub DMA_CMD [
        /// Start a transfer (reads 1 while it runs).
        START OFFSET(0) NUMBITS(1) [],
        /// 0: RAM -> device buffer, 1: device buffer -> RAM.
        DIRECTION OFFSET(1) NUMBITS(1) [ToDevice = 0, FromDevice = 1],
        /// Raise interrupt 0x100 when the transfer completes.
        IRQ OFFSET(2) NUMBITS(1) []
    ]
];

register_structs! {
    /// BAR0 (1 MiB; registers below 0x80 take 32-bit accesses only, from 0x80 also 64-bit).
    pub EduRegs {
        (0x00 => pub ID: ReadOnly<u32>),
        (0x04 => pub LIVENESS: ReadWrite<u32>),
        (0x08 => pub FACTORIAL: ReadWrite<u32>),
        (0x0c => _reserved0),
        (0x20 => pub STATUS: ReadWrite<u32, STATUS::Register>),
        (0x24 => pub IRQ_STATUS: ReadOnly<u32>),
        (0x28 => _reserved1),
        (0x60 => pub IRQ_RAISE: WriteOnly<u32>),
        (0x64 => pub IRQ_ACK: WriteOnly<u32>),
        (0x68 => _reserved2),
        (0x80 => pub DMA_SRC: ReadWrite<u64>),
        (0x88 => pub DMA_DST: ReadWrite<u64>),
        (0x90 => pub DMA_COUNT: ReadWrite<u64>),
        (0x98 => pub DMA_CMD: ReadWrite<u64, DMA_CMD::Register>),
        (0xa0 => @END),
    }
}
