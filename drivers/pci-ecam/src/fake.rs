//! A fake PCI hierarchy for host tests: functions with BAR masks, bridges that route config
//! cycles by the bus numbers enumeration programs into them, like real hardware.

extern crate std;

use alloc::boxed::Box;
use alloc::vec::Vec;
use std::sync::Mutex;

use crate::config::*;
use crate::enumerate::ConfigAccess;

/// One fake function.
pub struct FakeFunction {
    regs: Mutex<[u8; 4096]>,
    /// Writable address bits of each BAR (0 = BAR not implemented).
    bar_masks: [u32; 6],
    /// For bridges: the bus below.
    pub child: Option<Box<FakeBus>>,
}

/// A fake bus: functions by (device, function).
#[derive(Default)]
pub struct FakeBus {
    /// Slots.
    pub functions: Vec<((u8, u8), FakeFunction)>,
}

impl FakeFunction {
    fn with_header(vendor: u16, device: u16, class: u32, layout: u8) -> Self {
        let mut r = [0u8; 4096];
        r[0..2].copy_from_slice(&vendor.to_le_bytes());
        r[2..4].copy_from_slice(&device.to_le_bytes());
        r[8..12].copy_from_slice(&((class << 8) | 1).to_le_bytes());
        r[HEADER_TYPE as usize] = layout;
        Self {
            regs: Mutex::new(r),
            bar_masks: [0; 6],
            child: None,
        }
    }

    /// An endpoint.
    pub fn endpoint(vendor: u16, device: u16, class: u32) -> Self {
        Self::with_header(vendor, device, class, HEADER_LAYOUT_ENDPOINT)
    }

    /// A conventional PCI-to-PCI bridge (no PCIe capability) with `child` below it.
    pub fn pci_bridge(child: FakeBus) -> Self {
        let mut f = Self::with_header(0x1b36, 0x0001, 0x060400, HEADER_LAYOUT_BRIDGE);
        f.child = Some(Box::new(child));
        f
    }

    /// A PCIe bridge of `port_type` (root port, switch port, PCIe-to-PCI) with `child` below.
    pub fn pcie_bridge(port_type: u8, child: FakeBus) -> Self {
        let mut f = Self::pci_bridge(child).pcie(port_type);
        f.set8(HEADER_TYPE, HEADER_LAYOUT_BRIDGE);
        f
    }

    fn set8(&mut self, off: u16, v: u8) {
        self.regs.get_mut().expect("regs")[off as usize] = v;
    }

    /// Adds a PCIe capability of `port_type` at 0x40.
    pub fn pcie(mut self, port_type: u8) -> Self {
        let r = self.regs.get_mut().expect("regs");
        r[STATUS as usize] |= 1 << 4;
        r[CAPABILITIES_PTR as usize] = 0x40;
        r[0x40] = cap_id::PCIE;
        r[0x41] = 0;
        r[0x42] = (port_type << 4) | 2;
        self
    }

    /// Sets the multi-function bit.
    pub fn multifunction(mut self) -> Self {
        self.regs.get_mut().expect("regs")[HEADER_TYPE as usize] |= 0x80;
        self
    }

    /// A 32-bit memory BAR of `size` bytes.
    pub fn bar32(mut self, index: usize, size: u32) -> Self {
        self.bar_masks[index] = !(size - 1) & BAR_MEM_ADDR_MASK;
        self
    }

    /// A 64-bit prefetchable memory BAR of `size` bytes (takes `index` and `index + 1`).
    pub fn bar64_pref(mut self, index: usize, size: u64) -> Self {
        let mask = !(size - 1);
        self.bar_masks[index] = (mask as u32) & BAR_MEM_ADDR_MASK;
        self.bar_masks[index + 1] = (mask >> 32) as u32;
        let r = self.regs.get_mut().expect("regs");
        let flags: u32 = 0b1100; // 64-bit, prefetchable
        r[(BAR0 as usize + 4 * index)..][..4].copy_from_slice(&flags.to_le_bytes());
        // Mark the upper half so a write keeps it recognisable as the upper half.
        self
    }

    /// An I/O BAR of `size` bytes.
    pub fn bar_io(mut self, index: usize, size: u32) -> Self {
        self.bar_masks[index] = !(size - 1) & BAR_IO_ADDR_MASK & 0xffff;
        let r = self.regs.get_mut().expect("regs");
        r[(BAR0 as usize + 4 * index)..][..4].copy_from_slice(&1u32.to_le_bytes());
        self
    }

    /// Interrupt pin (1 = INTA).
    pub fn pin(mut self, pin: u8) -> Self {
        self.set8(INTERRUPT_PIN, pin);
        self
    }

    /// A capability list that loops on itself.
    pub fn looping_capabilities(mut self) -> Self {
        let r = self.regs.get_mut().expect("regs");
        r[STATUS as usize] |= 1 << 4;
        r[CAPABILITIES_PTR as usize] = 0x40;
        r[0x40] = cap_id::MSI;
        r[0x41] = 0x40;
        self
    }

    /// Reads a register as enumeration left it.
    pub fn reg32(&self, off: u16) -> u32 {
        let r = self.regs.lock().expect("regs");
        u32::from_le_bytes([
            r[off as usize],
            r[off as usize + 1],
            r[off as usize + 2],
            r[off as usize + 3],
        ])
    }

    fn read(&self, off: u16, len: usize) -> u32 {
        let r = self.regs.lock().expect("regs");
        (0..len).fold(0u32, |acc, i| {
            acc | (u32::from(r[off as usize + i]) << (8 * i))
        })
    }

    fn write(&self, off: u16, len: usize, value: u32) {
        let layout = self.read(HEADER_TYPE, 1) as u8 & 0x7f;
        let mut r = self.regs.lock().expect("regs");
        for i in 0..len {
            let o = off as usize + i;
            let byte = (value >> (8 * i)) as u8;
            let bar_end = if layout == HEADER_LAYOUT_BRIDGE {
                0x18
            } else {
                0x28
            };
            let writable = match o {
                0x04..=0x05 => true,
                0x10..=0x27 if o < bar_end => {
                    let bar = (o - 0x10) / 4;
                    let mask = (self.bar_masks[bar] >> (8 * (o % 4))) as u8;
                    let old = r[o];
                    r[o] = (byte & mask) | (old & !mask);
                    false
                }
                0x18..=0x3f if layout == HEADER_LAYOUT_BRIDGE => {
                    o != 0x1e && o != 0x1f && o != 0x3d && o != 0x34
                }
                0x3c => true,
                _ => false,
            };
            if writable {
                r[o] = byte;
            }
        }
    }
}

impl FakeBus {
    /// A bus with these functions at (device, function).
    pub fn new(functions: Vec<((u8, u8), FakeFunction)>) -> Self {
        Self { functions }
    }

    fn route(&self, this_bus: u8, bdf: Bdf) -> Option<&FakeFunction> {
        if bdf.bus == this_bus {
            return self
                .functions
                .iter()
                .find(|((d, f), _)| *d == bdf.dev && *f == bdf.func)
                .map(|(_, f)| f);
        }
        for (_, f) in &self.functions {
            let Some(child) = &f.child else { continue };
            let secondary = f.read(SECONDARY_BUS, 1) as u8;
            let subordinate = f.read(SUBORDINATE_BUS, 1) as u8;
            if secondary != 0 && secondary <= bdf.bus && bdf.bus <= subordinate {
                return child.route(secondary, bdf);
            }
        }
        None
    }

    /// The function at `bdf` as the current bus numbering routes to it.
    pub fn function(&self, bdf: Bdf) -> Option<&FakeFunction> {
        self.route(0, bdf)
    }
}

impl ConfigAccess for FakeBus {
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        self.function(bdf).map_or(0xff, |f| f.read(offset, 1) as u8)
    }
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        self.function(bdf)
            .map_or(0xffff, |f| f.read(offset, 2) as u16)
    }
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        self.function(bdf).map_or(u32::MAX, |f| f.read(offset, 4))
    }
    fn write8(&self, bdf: Bdf, offset: u16, value: u8) {
        if let Some(f) = self.function(bdf) {
            f.write(offset, 1, u32::from(value));
        }
    }
    fn write16(&self, bdf: Bdf, offset: u16, value: u16) {
        if let Some(f) = self.function(bdf) {
            f.write(offset, 2, u32::from(value));
        }
    }
    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(f) = self.function(bdf) {
            f.write(offset, 4, value);
        }
    }
}
