//! What a PCI driver gets for its function: config space (its own function only), BARs, the
//! capability list, bus mastering and MSI.

use alloc::sync::Arc;
use core::fmt;

use kapi::mmio::{MmioError, MmioRegion};
use tock_registers::interfaces::Writeable;
use tock_registers::registers::ReadWrite;
use tock_registers::{LocalRegisterCopy, register_bitfields, register_structs};

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
    /// More MSI-X vectors were asked for than the function's table holds (or none at all).
    MsixVectors { requested: usize, table_size: u16 },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::NoBar(i) => write!(f, "BAR{i} is not implemented or not assigned"),
            PciError::NotMemory(i) => write!(f, "BAR{i} is an I/O BAR"),
            PciError::Mmio(e) => write!(f, "{e}"),
            PciError::NoCapability(id) => write!(f, "no capability {id:#04x}"),
            PciError::MsixVectors {
                requested,
                table_size,
            } => write!(
                f,
                "{requested} MSI-X vectors requested, the table holds {table_size}"
            ),
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

/// MSI-X capability registers (PCI 3.0 §6.8.2): Message Control at +2, Table Offset/BIR at +4,
/// PBA Offset/BIR at +8.
const MSIX_CONTROL: u16 = 2;
const MSIX_TABLE: u16 = 4;
const MSIX_PBA: u16 = 8;

register_bitfields! [u16,
    /// MSI-X Message Control (PCI 3.0 §6.8.2.3).
    MSIX_CTRL [
        /// Table size minus one.
        TABLE_SIZE OFFSET(0) NUMBITS(11) [],
        /// Every vector masked, whatever its own mask bit says.
        FUNCTION_MASK OFFSET(14) NUMBITS(1) [],
        /// MSI-X on (MSI and INTx off).
        ENABLE OFFSET(15) NUMBITS(1) []
    ]
];

register_bitfields! [u32,
    /// MSI-X Table Offset/BIR and PBA Offset/BIR (PCI 3.0 §6.8.2.4-5).
    MSIX_LOCATION [
        /// Which BAR holds the structure.
        BIR OFFSET(0) NUMBITS(3) [],
        /// Offset in the BAR, in units of 8 bytes.
        OFFSET_QWORDS OFFSET(3) NUMBITS(29) []
    ],
    /// MSI-X table entry Vector Control (PCI 3.0 §6.8.2.9).
    MSIX_VECTOR_CTRL [
        /// The vector may not signal.
        MASK OFFSET(0) NUMBITS(1) []
    ]
];

register_structs! {
    /// One MSI-X table entry (PCI 3.0 §6.8.2.6-9).
    #[allow(non_snake_case)]
    MsixEntry {
        (0x0 => MSG_ADDR_LO: ReadWrite<u32>),
        (0x4 => MSG_ADDR_HI: ReadWrite<u32>),
        (0x8 => MSG_DATA: ReadWrite<u32>),
        (0xc => VECTOR_CTRL: ReadWrite<u32, MSIX_VECTOR_CTRL::Register>),
        (0x10 => @END),
    }
}

/// Where a function's MSI-X table and pending-bit array live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixInfo {
    /// Entries in the table.
    pub table_size: u16,
    /// BAR holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u64,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the pending-bit array in that BAR.
    pub pba_offset: u64,
}

/// One MSI-X message: the function writes `data` to `address` (a bus address: behind an
/// IOMMU, the doorbell's IOVA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
}

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

    /// The function's MSI-X table and pending-bit array, if it has an MSI-X capability.
    pub fn msix_info(&self) -> Option<MsixInfo> {
        let cap = self.capability(cap_id::MSIX)?;
        let control =
            LocalRegisterCopy::<u16, MSIX_CTRL::Register>::new(self.read16(cap + MSIX_CONTROL));
        let table =
            LocalRegisterCopy::<u32, MSIX_LOCATION::Register>::new(self.read32(cap + MSIX_TABLE));
        let pba =
            LocalRegisterCopy::<u32, MSIX_LOCATION::Register>::new(self.read32(cap + MSIX_PBA));
        Some(MsixInfo {
            table_size: control.read(MSIX_CTRL::TABLE_SIZE) + 1,
            table_bar: table.read(MSIX_LOCATION::BIR) as u8,
            table_offset: u64::from(table.read(MSIX_LOCATION::OFFSET_QWORDS)) * 8,
            pba_bar: pba.read(MSIX_LOCATION::BIR) as u8,
            pba_offset: u64::from(pba.read(MSIX_LOCATION::OFFSET_QWORDS)) * 8,
        })
    }

    /// Programs and enables MSI-X with one table entry per message (entry `i` gets
    /// `messages[i]`); every other entry stays masked, and INTx is masked. The table must lie
    /// inside its (assigned, memory) BAR.
    pub fn enable_msix(&self, messages: &[MsiMessage]) -> Result<(), PciError> {
        let cap = self
            .capability(cap_id::MSIX)
            .ok_or(PciError::NoCapability(cap_id::MSIX))?;
        let info = self
            .msix_info()
            .ok_or(PciError::NoCapability(cap_id::MSIX))?;
        if messages.is_empty() || messages.len() > usize::from(info.table_size) {
            return Err(PciError::MsixVectors {
                requested: messages.len(),
                table_size: info.table_size,
            });
        }
        let bar = self.map_bar(info.table_bar)?;
        let table = bar.subregion(info.table_offset, 16 * u64::from(info.table_size))?;
        let entries = (0..u64::from(info.table_size))
            .map(|i| table.view::<MsixEntry>(16 * i))
            .collect::<Result<alloc::vec::Vec<_>, _>>()?;
        let control = self.read16(cap + MSIX_CONTROL);
        let mut ctrl = LocalRegisterCopy::<u16, MSIX_CTRL::Register>::new(control);
        // Some functions decode their table only once MSI-X is enabled: enable it with the
        // whole function masked (Function Mask, PCI 3.0 §6.8.2.3), so no half-written entry
        // can fire while the table is programmed.
        ctrl.modify(MSIX_CTRL::ENABLE::SET + MSIX_CTRL::FUNCTION_MASK::SET);
        self.write16(cap + MSIX_CONTROL, ctrl.get());
        for (i, entry) in entries.iter().enumerate() {
            match messages.get(i) {
                Some(m) => {
                    entry.VECTOR_CTRL.write(MSIX_VECTOR_CTRL::MASK::SET);
                    entry.MSG_ADDR_LO.set(m.address as u32);
                    entry.MSG_ADDR_HI.set((m.address >> 32) as u32);
                    entry.MSG_DATA.set(m.data);
                    entry.VECTOR_CTRL.write(MSIX_VECTOR_CTRL::MASK::CLEAR);
                }
                None => entry.VECTOR_CTRL.write(MSIX_VECTOR_CTRL::MASK::SET),
            }
        }
        self.set_intx_disabled(true);
        ctrl.modify(MSIX_CTRL::FUNCTION_MASK::CLEAR);
        self.write16(cap + MSIX_CONTROL, ctrl.get());
        Ok(())
    }

    /// True while MSI-X is enabled.
    pub fn msix_enabled(&self) -> bool {
        self.capability(cap_id::MSIX).is_some_and(|cap| {
            LocalRegisterCopy::<u16, MSIX_CTRL::Register>::new(self.read16(cap + MSIX_CONTROL))
                .is_set(MSIX_CTRL::ENABLE)
        })
    }

    /// Turns MSI-X off (the function masked first, so nothing fires on the way) and unmasks
    /// INTx.
    pub fn disable_msix(&self) {
        if let Some(cap) = self.capability(cap_id::MSIX) {
            let mut ctrl =
                LocalRegisterCopy::<u16, MSIX_CTRL::Register>::new(self.read16(cap + MSIX_CONTROL));
            ctrl.modify(MSIX_CTRL::FUNCTION_MASK::SET);
            self.write16(cap + MSIX_CONTROL, ctrl.get());
            ctrl.modify(MSIX_CTRL::ENABLE::CLEAR + MSIX_CTRL::FUNCTION_MASK::CLEAR);
            self.write16(cap + MSIX_CONTROL, ctrl.get());
        }
        self.set_intx_disabled(false);
    }
}

#[cfg(test)]
mod msix_tests {
    use super::*;
    use crate::config::Bdf;
    use alloc::vec;

    /// A function at 00:00.0 over a RAM-backed ECAM window, with an MSI-X capability at 0x40
    /// whose table sits in BAR1 at 0x800 and pending bits in BAR1 at 0xc00 (the layout QEMU's
    /// virtio-pci uses, table size 3).
    fn function_with_msix() -> PciDevice {
        let ecam = Arc::new(Ecam::new(kapi::mmio::fake_region(1 << 20), 0));
        let function = PciFunction {
            bdf: Bdf::new(0, 0, 0),
            vendor: 0x1af4,
            device: 0x1042,
            class: 0x010000,
            revision: 1,
            multifunction: false,
            bars: vec![],
            capabilities: vec![(cap_id::MSIX, 0x40)],
            pcie_type: None,
            interrupt_pin: 1,
            intx_route: None,
            upstream_bridge: None,
            dma_alias: Bdf::new(0, 0, 0),
            bridge: None,
        };
        let dev = PciDevice::new(ecam, function, 0);
        dev.write16(0x40 + MSIX_CONTROL, 2);
        dev.write32(0x40 + MSIX_TABLE, 0x800 | 1);
        dev.write32(0x40 + MSIX_PBA, 0xc00 | 1);
        dev
    }

    #[test]
    fn msix_capability_decodes_table_and_pba() {
        let dev = function_with_msix();
        assert_eq!(
            dev.msix_info(),
            Some(MsixInfo {
                table_size: 3,
                table_bar: 1,
                table_offset: 0x800,
                pba_bar: 1,
                pba_offset: 0xc00,
            })
        );
        assert!(!dev.msix_enabled());
    }

    #[test]
    fn msix_refuses_no_vectors_too_many_and_an_unassigned_bar() {
        let dev = function_with_msix();
        let m = MsiMessage {
            address: 0x0800_0040,
            data: 7,
        };
        assert_eq!(
            dev.enable_msix(&[]),
            Err(PciError::MsixVectors {
                requested: 0,
                table_size: 3
            })
        );
        assert_eq!(
            dev.enable_msix(&[m; 4]),
            Err(PciError::MsixVectors {
                requested: 4,
                table_size: 3
            })
        );
        assert_eq!(dev.enable_msix(&[m]), Err(PciError::NoBar(1)));
        // Nothing was turned on on the way.
        assert!(!dev.msix_enabled());
    }
}
