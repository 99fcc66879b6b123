//! What a PCI driver gets for its function: config space (its own function only), BARs, the
//! capability list, bus mastering and MSI.

use alloc::sync::Arc;
use core::fmt;

use kapi::mmio::{MmioError, MmioRegion};
use tock_registers::LocalRegisterCopy;

use crate::Ecam;
use crate::config::{CMD, COMMAND, cap_id};
use crate::enumerate::{Bar, ConfigAccess, PciFunction, Space};

/// One PCI function, as handed to its driver (the devmodel payload of a PCI device).
pub struct PciDevice {
    ecam: Arc<Ecam>,
    /// What enumeration found.
    pub function: PciFunction,
    /// PCI segment (domain).
    pub segment: u16,
}

impl fmt::Debug for PciDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PciDevice({:04x}:{})", self.segment, self.function.bdf)
    }
}

/// Errors of the PCI driver API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// No such BAR, or it was not assigned.
    NoBar(u8),
    /// The BAR is an I/O BAR.
    NotMemory(u8),
    /// The kernel refused to map it.
    Mmio(MmioError),
    /// The function has no such capability.
    NoCapability(u8),
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::NoBar(i) => write!(f, "BAR{i} is not implemented or not assigned"),
            PciError::NotMemory(i) => write!(f, "BAR{i} is an I/O BAR"),
            PciError::Mmio(e) => write!(f, "{e}"),
            PciError::NoCapability(id) => write!(f, "no capability {id:#04x}"),
        }
    }
}

impl From<MmioError> for PciError {
    fn from(e: MmioError) -> Self {
        PciError::Mmio(e)
    }
}

/// MSI capability registers (PCI 3.0 §6.8.1): control at +2; address low at +4; 64-bit
/// capable functions have address high at +8 and data at +12, others data at +8.
const MSI_CONTROL: u16 = 2;
const MSI_ADDR_LO: u16 = 4;
const MSI_ENABLE: u16 = 1 << 0;
const MSI_64BIT: u16 = 1 << 7;
const MSI_MME_MASK: u16 = 0b111 << 4;

impl PciDevice {
    /// A handle on `function` behind `ecam`.
    pub fn new(ecam: Arc<Ecam>, function: PciFunction, segment: u16) -> Self {
        Self {
            ecam,
            function,
            segment,
        }
    }

    /// 8-bit config read.
    pub fn read8(&self, offset: u16) -> u8 {
        self.ecam.read8(self.function.bdf, offset)
    }
    /// 16-bit config read.
    pub fn read16(&self, offset: u16) -> u16 {
        self.ecam.read16(self.function.bdf, offset)
    }
    /// 32-bit config read.
    pub fn read32(&self, offset: u16) -> u32 {
        self.ecam.read32(self.function.bdf, offset)
    }
    /// 16-bit config write.
    pub fn write16(&self, offset: u16, value: u16) {
        self.ecam.write16(self.function.bdf, offset, value)
    }
    /// 32-bit config write.
    pub fn write32(&self, offset: u16, value: u32) {
        self.ecam.write32(self.function.bdf, offset, value)
    }

    fn modify_command(&self, f: impl FnOnce(&mut LocalRegisterCopy<u16, CMD::Register>)) {
        let mut cmd = LocalRegisterCopy::new(self.read16(COMMAND));
        f(&mut cmd);
        self.write16(COMMAND, cmd.get());
    }

    /// Lets the function issue memory requests (DMA, MSI writes). Drivers call this only after
    /// their DMA set-up, at the end of probe; and turn it off again before tearing DMA down.
    pub fn set_bus_master(&self, enable: bool) {
        self.modify_command(|c| {
            if enable {
                c.modify(CMD::BUS_MASTER::SET)
            } else {
                c.modify(CMD::BUS_MASTER::CLEAR)
            }
        });
    }

    /// True while bus mastering is on.
    pub fn is_bus_master(&self) -> bool {
        LocalRegisterCopy::<u16, CMD::Register>::new(self.read16(COMMAND)).is_set(CMD::BUS_MASTER)
    }

    /// Masks legacy INTx (when MSI is used).
    pub fn set_intx_disabled(&self, disabled: bool) {
        self.modify_command(|c| {
            if disabled {
                c.modify(CMD::INTX_DISABLE::SET)
            } else {
                c.modify(CMD::INTX_DISABLE::CLEAR)
            }
        });
    }

    /// The BAR with this index, if implemented and assigned.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.function
            .bars
            .iter()
            .find(|b| b.index == index && b.cpu_addr.is_some())
    }

    /// Maps a memory BAR.
    pub fn map_bar(&self, index: u8) -> Result<MmioRegion, PciError> {
        let bar = self.bar(index).ok_or(PciError::NoBar(index))?;
        if bar.space == Space::Io {
            return Err(PciError::NotMemory(index));
        }
        let cpu = bar.cpu_addr.ok_or(PciError::NoBar(index))?;
        Ok(kapi::platform::get().map_mmio(kapi::PhysAddr(cpu), bar.size)?)
    }

    /// Offset of the first capability `id`.
    pub fn capability(&self, id: u8) -> Option<u16> {
        self.function.capability(id)
    }

    /// Every vendor-specific capability offset (virtio-pci describes itself this way).
    pub fn vendor_capabilities(&self) -> impl Iterator<Item = u16> + '_ {
        self.function
            .capabilities
            .iter()
            .filter(|(c, _)| *c == cap_id::VENDOR)
            .map(|(_, o)| *o)
    }

    /// Programs and enables single-vector MSI: the function will write `data` to `address`
    /// (a bus address: behind an IOMMU, the doorbell's IOVA). INTx is masked.
    pub fn enable_msi(&self, address: u64, data: u16) -> Result<(), PciError> {
        let cap = self
            .capability(cap_id::MSI)
            .ok_or(PciError::NoCapability(cap_id::MSI))?;
        let control = self.read16(cap + MSI_CONTROL);
        // One vector (Multiple Message Enable = 0), disabled while it is programmed.
        self.write16(cap + MSI_CONTROL, control & !(MSI_ENABLE | MSI_MME_MASK));
        self.write32(cap + MSI_ADDR_LO, address as u32);
        let data_at = if control & MSI_64BIT != 0 {
            self.write32(cap + 8, (address >> 32) as u32);
            cap + 12
        } else {
            cap + 8
        };
        self.write16(data_at, data);
        self.set_intx_disabled(true);
        self.write16(cap + MSI_CONTROL, (control & !MSI_MME_MASK) | MSI_ENABLE);
        Ok(())
    }

    /// Turns MSI off and unmasks INTx.
    pub fn disable_msi(&self) {
        if let Some(cap) = self.capability(cap_id::MSI) {
            let control = self.read16(cap + MSI_CONTROL);
            self.write16(cap + MSI_CONTROL, control & !MSI_ENABLE);
        }
        self.set_intx_disabled(false);
    }
}
