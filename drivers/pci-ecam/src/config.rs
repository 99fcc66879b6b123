//! PCI configuration space layout (PCI Local Bus 3.0 §6, PCI-to-PCI Bridge 1.2 §3.2, PCIe 6.0
//! §7.5): offsets of the header registers and the fields this kernel uses.
#![allow(non_snake_case)]

use core::fmt;

use tock_registers::register_bitfields;

/// Bus/device/function of one PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub dev: u8,
    /// Function number (0..8).
    pub func: u8,
}

impl Bdf {
    /// A BDF.
    pub const fn new(bus: u8, dev: u8, func: u8) -> Self {
        Self { bus, dev, func }
    }
    /// The requester ID: `bus << 8 | dev << 3 | fn` (the SMMU's StreamID before `iommu-map`).
    pub const fn rid(self) -> u16 {
        ((self.bus as u16) << 8) | ((self.dev as u16) << 3) | self.func as u16
    }
    /// From a requester ID.
    pub const fn from_rid(rid: u16) -> Self {
        Self {
            bus: (rid >> 8) as u8,
            dev: ((rid >> 3) & 0x1f) as u8,
            func: (rid & 7) as u8,
        }
    }
    /// `phys.hi` of a DT PCI address for this function (bus << 16 | dev << 11 | fn << 8).
    pub const fn dt_phys_hi(self) -> u32 {
        ((self.bus as u32) << 16) | ((self.dev as u32) << 11) | ((self.func as u32) << 8)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// Vendor ID (16 bits); 0xffff reads mean "no function here".
pub const VENDOR_ID: u16 = 0x00;
/// Device ID.
pub const DEVICE_ID: u16 = 0x02;
/// Command register (16 bits).
pub const COMMAND: u16 = 0x04;
/// Status register (16 bits).
pub const STATUS: u16 = 0x06;
/// Revision ID (8 bits), followed by the 24-bit class code.
pub const REVISION_ID: u16 = 0x08;
/// Header type (8 bits): layout in bits 6:0, multi-function in bit 7.
pub const HEADER_TYPE: u16 = 0x0e;
/// First base address register.
pub const BAR0: u16 = 0x10;
/// Capabilities pointer.
pub const CAPABILITIES_PTR: u16 = 0x34;
/// Interrupt line (8 bits) and, at +1, interrupt pin (1 = INTA .. 4 = INTD, 0 = none).
pub const INTERRUPT_LINE: u16 = 0x3c;
/// Interrupt pin.
pub const INTERRUPT_PIN: u16 = 0x3d;

/// Type-1 (bridge) header: primary bus number (then secondary, subordinate, latency).
pub const PRIMARY_BUS: u16 = 0x18;
/// Secondary bus number.
pub const SECONDARY_BUS: u16 = 0x19;
/// Subordinate bus number.
pub const SUBORDINATE_BUS: u16 = 0x1a;
/// I/O base (8 bits) and limit (8 bits): address bits 15:12.
pub const IO_BASE: u16 = 0x1c;
/// Memory base (16 bits; bits 15:4 = address bits 31:20) and limit at +2.
pub const MEMORY_BASE: u16 = 0x20;
/// Prefetchable memory base / limit (16 bits each), 64-bit capable.
pub const PREF_MEMORY_BASE: u16 = 0x24;
/// Upper 32 bits of the prefetchable base.
pub const PREF_BASE_UPPER: u16 = 0x28;
/// Upper 32 bits of the prefetchable limit.
pub const PREF_LIMIT_UPPER: u16 = 0x2c;
/// Upper 16 bits of the I/O base (+0) and limit (+2).
pub const IO_BASE_UPPER: u16 = 0x30;
/// Bridge control (16 bits).
pub const BRIDGE_CONTROL: u16 = 0x3e;

/// Header layout values of HEADER_TYPE bits 6:0.
pub const HEADER_LAYOUT_ENDPOINT: u8 = 0;
/// PCI-to-PCI bridge.
pub const HEADER_LAYOUT_BRIDGE: u8 = 1;

/// Capability IDs (PCI Code and ID Assignment §2).
pub mod cap_id {
    /// Message Signalled Interrupts.
    pub const MSI: u8 = 0x05;
    /// Vendor specific (virtio-pci uses this for its structures).
    pub const VENDOR: u8 = 0x09;
    /// PCI Express.
    pub const PCIE: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// PCIe capability: Device/Port Type (bits 7:4 of PCIe Capabilities at cap + 2).
pub mod pcie_type {
    /// PCIe endpoint.
    pub const ENDPOINT: u8 = 0x0;
    /// Legacy PCIe endpoint.
    pub const LEGACY_ENDPOINT: u8 = 0x1;
    /// Root complex integrated endpoint.
    pub const RC_INTEGRATED: u8 = 0x9;
    /// Root port.
    pub const ROOT_PORT: u8 = 0x4;
    /// Switch upstream port.
    pub const UPSTREAM: u8 = 0x5;
    /// Switch downstream port.
    pub const DOWNSTREAM: u8 = 0x6;
    /// PCIe-to-PCI/PCI-X bridge: the conventional bus below it is seen with an alias RID.
    pub const PCIE_TO_PCI_BRIDGE: u8 = 0x7;
    /// PCI-to-PCIe bridge.
    pub const PCI_TO_PCIE_BRIDGE: u8 = 0x8;
}

register_bitfields! [u16,
    /// Command register (PCI 3.0 §6.2.2).
    pub CMD [
        /// Respond to I/O space accesses.
        IO_SPACE OFFSET(0) NUMBITS(1) [],
        /// Respond to memory space accesses (BARs decode).
        MEMORY_SPACE OFFSET(1) NUMBITS(1) [],
        /// May issue memory requests (DMA and MSI writes). Nothing DMAs until this is set.
        BUS_MASTER OFFSET(2) NUMBITS(1) [],
        /// Report parity errors.
        PARITY_ERROR_RESPONSE OFFSET(6) NUMBITS(1) [],
        /// Report SERR.
        SERR_ENABLE OFFSET(8) NUMBITS(1) [],
        /// INTx assertion disabled (set when MSI is used).
        INTX_DISABLE OFFSET(10) NUMBITS(1) []
    ],
    /// Status register (PCI 3.0 §6.2.3).
    pub STS [
        /// INTx is asserted.
        INTERRUPT_STATUS OFFSET(3) NUMBITS(1) [],
        /// The capabilities list at CAPABILITIES_PTR is valid.
        CAPABILITIES_LIST OFFSET(4) NUMBITS(1) []
    ]
];

register_bitfields! [u32,
    /// Base address register (PCI 3.0 §6.2.5.1).
    pub BAR [
        /// 1 = I/O space BAR.
        IO OFFSET(0) NUMBITS(1) [],
        /// Memory BAR type.
        TYPE OFFSET(1) NUMBITS(2) [Bits32 = 0b00, Bits64 = 0b10],
        /// Prefetchable memory.
        PREFETCHABLE OFFSET(3) NUMBITS(1) []
    ]
];

/// Mask of a memory BAR's address bits.
pub const BAR_MEM_ADDR_MASK: u32 = !0xf;
/// Mask of an I/O BAR's address bits.
pub const BAR_IO_ADDR_MASK: u32 = !0x3;
