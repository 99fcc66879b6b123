//! PCI host bridge helpers: `bus-range`, `linux,pci-domain`, `ranges` windows by space, and
//! legacy INTx routing through `interrupt-map`.
//!
//! PCI addresses are three cells: `phys.hi` = `npt000ss bbbbbbbb dddddfff rrrrrrrr` (n
//! non-relocatable, p prefetchable, t aliased, ss space: 0 config, 1 I/O, 2 32-bit memory,
//! 3 64-bit memory; bus, device, function, register), then the 64-bit address.

use addr::PhysAddr;
use alloc::vec::Vec;
use core::ops::RangeInclusive;

use crate::address::{BusRanges, fit64, pci_space};
use crate::error::{DtError, Problem};
use crate::irq::GicIrq;
use crate::tree::Node;

/// The address space of a PCI `ranges` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciSpace {
    /// Configuration space (not normally in `ranges`).
    Config,
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Mem32,
    /// 64-bit memory space.
    Mem64,
}

/// One decoded `ranges` window of a PCI host bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciWindow {
    /// Space code from `phys.hi`.
    pub space: PciSpace,
    /// `p` bit of `phys.hi`.
    pub prefetchable: bool,
    /// First PCI bus address of the window.
    pub pci: u64,
    /// CPU physical address of `pci`.
    pub cpu: PhysAddr,
    /// Length in bytes.
    pub size: u64,
}

/// `phys.hi` of a function: `bus << 16 | device << 11 | function << 8` (the `interrupt-map`
/// unit address key, and the RID shifted left by 8).
pub const fn pci_phys_hi(bus: u8, device: u8, function: u8) -> u32 {
    (bus as u32) << 16 | ((device as u32) & 0x1f) << 11 | ((function as u32) & 7) << 8
}

impl<'t> Node<'t> {
    fn require_pci(&self, prop: &str) -> Result<(), DtError> {
        match self.address_cells()? {
            3 => Ok(()),
            n => Err(self.err(prop, Problem::NotPci(n))),
        }
    }

    /// `bus-range`; `None` when absent (the bridge then decodes buses 0..=255).
    pub fn pci_bus_range(&self) -> Result<Option<RangeInclusive<u8>>, DtError> {
        const P: &str = "bus-range";
        let Some(c) = self.cells(P)? else {
            return Ok(None);
        };
        let [start, end] = c[..] else {
            return Err(self.err(
                P,
                Problem::WrongLength {
                    cells: c.len(),
                    expected: 2,
                },
            ));
        };
        match (u8::try_from(start), u8::try_from(end)) {
            (Ok(s), Ok(e)) if s <= e => Ok(Some(s..=e)),
            _ => Err(self.err(P, Problem::BadBusRange { start, end })),
        }
    }

    /// `linux,pci-domain`; `None` when absent.
    pub fn pci_domain(&self) -> Result<Option<u32>, DtError> {
        self.u32("linux,pci-domain")
    }

    /// `ranges` of a PCI host bridge decoded by space, CPU addresses translated through the
    /// ancestors. Empty when `ranges` is absent or empty.
    pub fn pci_windows(&self) -> Result<Vec<PciWindow>, DtError> {
        const P: &str = "ranges";
        self.require_pci(P)?;
        let BusRanges::Windows(ranges) = self.ranges()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(ranges.len());
        for (i, r) in ranges.iter().enumerate() {
            let hi = (r.child >> 64) as u32;
            let cpu = match self.parent() {
                Some(bus) => bus.translate_for(r.parent, self, P)?,
                None => fit64(self, P, r.parent)?,
            };
            let size = fit64(self, P, r.size)?;
            let pci = r.child_low64();
            if pci.checked_add(size - 1).is_none() || cpu.checked_add(size - 1).is_none() {
                return Err(self.err(P, Problem::Overflow { entry: i }));
            }
            out.push(PciWindow {
                space: match pci_space(r.child) {
                    0 => PciSpace::Config,
                    1 => PciSpace::Io,
                    2 => PciSpace::Mem32,
                    _ => PciSpace::Mem64,
                },
                prefetchable: hi & (1 << 30) != 0,
                pci,
                cpu: PhysAddr(cpu),
                size,
            });
        }
        Ok(out)
    }

    /// The child node describing the function at `devfn` (`device << 3 | function`) on the bus
    /// this node (a host bridge or a PCI-to-PCI bridge's node) leads to: the first child whose
    /// `reg` starts with a `phys.hi` of that device and function. The bus number in `phys.hi`
    /// is not compared (as Linux's `of_pci_find_child_device`): firmware often writes 0 there
    /// whatever number enumeration gives the bus, and the parent node already says which bus
    /// it is. Children without `reg` are not functions and are passed over; a malformed `reg`
    /// is an error. `None` when no child matches.
    pub fn pci_child(&self, devfn: u8) -> Result<Option<Node<'t>>, DtError> {
        self.require_pci("reg")?;
        for child in self.children() {
            if !child.has_property("reg") {
                continue;
            }
            let Some(first) = child.reg_raw()?.into_iter().next() else {
                continue;
            };
            let phys_hi = (first.address >> 64) as u32;
            if (phys_hi >> 8) & 0xff == u32::from(devfn) {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }

    /// The GIC interrupt of legacy INTx `pin` (1 = INTA .. 4 = INTD) of the function whose
    /// `phys.hi` is `phys_hi` (see [`pci_phys_hi`]), through this host bridge's
    /// `interrupt-map`. `None` for pin 0 (no INTx), a pin above 4, no `interrupt-map`, or no
    /// matching entry. Swizzling across PCI-to-PCI bridges is the caller's job: pass the
    /// function's address and pin as seen on the host bridge's root bus.
    pub fn pci_intx(&self, phys_hi: u32, pin: u8) -> Result<Option<GicIrq>, DtError> {
        if !(1..=4).contains(&pin) {
            return Ok(None);
        }
        self.require_pci("interrupt-map")?;
        match self.map_interrupt(&[phys_hi, 0, 0], &[u32::from(pin)])? {
            Some(spec) => spec.gic().map(Some),
            None => Ok(None),
        }
    }
}
