//! What a device is: the record bus code fills in before handing the device to the manager.
//!
//! [`DeviceInfo`] is immutable once added. Its fields are public for reading, but the struct is
//! `#[non_exhaustive]`: it is built with [`DeviceInfo::platform`] / [`DeviceInfo::pci`] and the
//! `with_*` builders, so new fields can be added later without touching every bus.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

use addr::{PhysAddr, Range};

/// Handle of a device in a [`crate::DeviceManager`]. Never reused: a removed device's id stays
/// dead, so a stale id is an error, not another device.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub(crate) u32);

impl DeviceId {
    /// The raw index (for keying side tables).
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev#{}", self.0)
    }
}

/// Which bus a device sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// Described by a DT node: children of `/` and of `simple-bus` nodes.
    Platform,
    /// A PCI function found by enumerating a host bridge.
    Pci,
}

/// Bus-specific data a driver may downcast, e.g. the PCI function's config-space accessor.
pub type Payload = Arc<dyn Any + Send + Sync>;

/// A PCI function's address: segment (domain), bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI segment (domain) number.
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..32.
    pub dev: u8,
    /// Function number, 0..8.
    pub func: u8,
}

impl PciAddress {
    /// An address; `dev` and `func` are masked to their 5 and 3 bits.
    pub const fn new(segment: u16, bus: u8, dev: u8, func: u8) -> Self {
        Self {
            segment,
            bus,
            dev: dev & 0x1f,
            func: func & 0x7,
        }
    }

    /// The requester ID the function puts on the bus: `bus << 8 | dev << 3 | func`.
    pub const fn rid(self) -> u16 {
        (self.bus as u16) << 8 | (self.dev as u16) << 3 | self.func as u16
    }
}

impl fmt::Display for PciAddress {
    /// As Linux prints it: `0000:00:02.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment, self.bus, self.dev, self.func
        )
    }
}

/// What a PCI function says about itself in config space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PciIdentity {
    /// Where the function is.
    pub address: PciAddress,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code, 24 bits: base class, subclass, programming interface.
    pub class: u32,
    /// Revision ID.
    pub revision: u8,
}

impl PciIdentity {
    /// A function at `address` with the given IDs; class and revision default to 0.
    pub const fn new(address: PciAddress, vendor: u16, device: u16) -> Self {
        Self {
            address,
            vendor,
            device,
            class: 0,
            revision: 0,
        }
    }

    /// Sets the 24-bit class code (higher bits are dropped).
    pub const fn with_class(mut self, class: u32) -> Self {
        self.class = class & 0x00ff_ffff;
        self
    }

    /// Sets the revision ID.
    pub const fn with_revision(mut self, revision: u8) -> Self {
        self.revision = revision;
        self
    }
}

/// One MMIO window of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MmioResource {
    /// CPU physical range.
    pub range: Range<PhysAddr>,
    /// Name from `reg-names`, if any.
    pub name: Option<String>,
}

impl MmioResource {
    /// An unnamed window of `size` bytes at `start`.
    pub fn new(start: PhysAddr, size: u64) -> Self {
        Self {
            range: Range::new(start, size),
            name: None,
        }
    }

    /// Gives the window a name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// How an interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqTrigger {
    /// Rising edge.
    Edge,
    /// Level high.
    Level,
}

/// One interrupt line of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IrqResource {
    /// Interrupt ID as the controller numbers it (GIC INTID).
    pub intid: u32,
    /// Edge or level.
    pub trigger: IrqTrigger,
    /// Name from `interrupt-names`, if any.
    pub name: Option<String>,
}

impl IrqResource {
    /// An unnamed line.
    pub fn new(intid: u32, trigger: IrqTrigger) -> Self {
        Self {
            intid,
            trigger,
            name: None,
        }
    }

    /// Gives the line a name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// Everything the bus knows about a device. Built by bus code, read by drivers and hooks.
#[derive(Clone)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Name as Linux prints it: `9050000.smmuv3`, `0000:00:02.0`. Unique in a manager.
    pub name: String,
    /// Platform or PCI.
    pub bus: BusKind,
    /// Full path of the DT node describing the device, e.g. `/smmuv3@9050000`.
    pub node: Option<String>,
    /// DT `compatible` strings, most specific first.
    pub compatible: Vec<String>,
    /// PCI identity; `Some` exactly for PCI functions.
    pub pci: Option<PciIdentity>,
    /// MMIO windows in `reg` order.
    pub mmio: Vec<MmioResource>,
    /// Interrupt lines in `interrupts` order.
    pub irqs: Vec<IrqResource>,
    /// The parent device, if any: set by bus code ([`DeviceInfo::with_parent`]) or, for children a
    /// probe adds, by the manager.
    pub parent: Option<DeviceId>,
    /// Bus-specific data for drivers; see [`DeviceInfo::payload`].
    pub payload: Option<Payload>,
}

impl DeviceInfo {
    /// A platform device named `name` (see [`platform_name`]), described by DT node `node`.
    pub fn platform(name: &str, node: &str) -> Self {
        Self {
            name: name.to_string(),
            bus: BusKind::Platform,
            node: Some(node.to_string()),
            compatible: Vec::new(),
            pci: None,
            mmio: Vec::new(),
            irqs: Vec::new(),
            parent: None,
            payload: None,
        }
    }

    /// A PCI function, named after its address (`0000:00:02.0`).
    pub fn pci(id: PciIdentity) -> Self {
        Self {
            name: id.address.to_string(),
            bus: BusKind::Pci,
            node: None,
            compatible: Vec::new(),
            pci: Some(id),
            mmio: Vec::new(),
            irqs: Vec::new(),
            parent: None,
            payload: None,
        }
    }

    /// Adds a `compatible` string (call in DT order, most specific first).
    pub fn with_compatible(mut self, compatible: &str) -> Self {
        self.compatible.push(compatible.to_string());
        self
    }

    /// Sets the DT node (a PCI function may have one too).
    pub fn with_node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// Adds an MMIO window.
    pub fn with_mmio(mut self, mmio: MmioResource) -> Self {
        self.mmio.push(mmio);
        self
    }

    /// Adds an interrupt line.
    pub fn with_irq(mut self, irq: IrqResource) -> Self {
        self.irqs.push(irq);
        self
    }

    /// Sets the parent device.
    pub fn with_parent(mut self, parent: DeviceId) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Attaches bus-specific data.
    pub fn with_payload(mut self, payload: Payload) -> Self {
        self.payload = Some(payload);
        self
    }

    /// The payload as a `T`, if there is one of that type.
    pub fn payload<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.payload.as_deref()?.downcast_ref::<T>()
    }

    /// The payload as a shared `Arc<T>`, for drivers that keep it past probe.
    pub fn payload_arc<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.payload.clone()?.downcast::<T>().ok()
    }

    /// The MMIO window named `name`.
    pub fn mmio_by_name(&self, name: &str) -> Option<&MmioResource> {
        self.mmio.iter().find(|r| r.name.as_deref() == Some(name))
    }

    /// The interrupt line named `name`.
    pub fn irq_by_name(&self, name: &str) -> Option<&IrqResource> {
        self.irqs.iter().find(|r| r.name.as_deref() == Some(name))
    }

    /// True when `compatible` is one of the device's compatible strings.
    pub fn is_compatible(&self, compatible: &str) -> bool {
        self.compatible.iter().any(|c| c == compatible)
    }
}

impl fmt::Debug for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceInfo")
            .field("name", &self.name)
            .field("bus", &self.bus)
            .field("node", &self.node)
            .field("compatible", &self.compatible)
            .field("pci", &self.pci)
            .field("mmio", &self.mmio)
            .field("irqs", &self.irqs)
            .field("parent", &self.parent)
            .field("payload", &self.payload.as_ref().map(|_| ".."))
            .finish()
    }
}

/// A platform device's name the way Linux makes it from its DT node: `<reg base in hex>.<node
/// name>` (`/smmuv3@9050000` with base 0x9050000 gives `9050000.smmuv3`), or just the node name
/// without unit address when the node has no `reg`.
pub fn platform_name(node_path: &str, reg_base: Option<PhysAddr>) -> String {
    let leaf = node_path.rsplit('/').next().unwrap_or(node_path);
    let node_name = leaf.split('@').next().unwrap_or(leaf);
    match reg_base {
        Some(base) => alloc::format!("{:x}.{}", base.as_u64(), node_name),
        None => node_name.to_string(),
    }
}
