//! Arm PL011 UART, used as the kernel console (transmit only, polled).
//!
//! Polled output is deliberate: the console must work before interrupts exist and from inside
//! exception handlers. Firmware (here: QEMU) leaves the UART usable; [`Pl011::new`] only makes sure
//! the transmitter is enabled and never changes the line settings the user's terminal expects.
//!
//! # Resources
//! - Arm DDI 0183G, PrimeCell UART (PL011) Technical Reference Manual
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod regs;

use kapi::mmio::{Mmio, MmioError, MmioRegion};
use regs::{CR, FR, Pl011Regs};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

/// Upper bound on spins waiting for FIFO space, so a wedged UART cannot hang the kernel.
const TX_SPIN_LIMIT: u32 = 1_000_000;

/// A PL011 in transmit mode.
pub struct Pl011 {
    regs: Mmio<Pl011Regs>,
}

impl Pl011 {
    /// Takes the UART at `region` and enables its transmitter.
    pub fn new(region: &MmioRegion) -> Result<Self, MmioError> {
        let regs = region.view::<Pl011Regs>(0)?;
        if !regs.CR.is_set(CR::UARTEN) || !regs.CR.is_set(CR::TXE) {
            regs.CR.modify(CR::UARTEN::SET + CR::TXE::SET);
        }
        Ok(Self { regs })
    }

    /// Writes one byte, waiting (bounded) for FIFO space; drops the byte if the UART is stuck.
    pub fn write_byte(&self, b: u8) {
        let mut spins = 0;
        while self.regs.FR.is_set(FR::TXFF) {
            spins += 1;
            if spins > TX_SPIN_LIMIT {
                return;
            }
            core::hint::spin_loop();
        }
        self.regs.DR.set(u32::from(b));
    }

    /// Writes a string, turning `\n` into `\r\n` for terminals.
    pub fn write_str(&self, s: &str) {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }

    /// Waits (bounded) until everything written has left the UART.
    pub fn flush(&self) {
        let mut spins = 0;
        while self.regs.FR.is_set(FR::BUSY) && spins < TX_SPIN_LIMIT {
            spins += 1;
            core::hint::spin_loop();
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Pl011::write_str(self, s);
        Ok(())
    }
}
