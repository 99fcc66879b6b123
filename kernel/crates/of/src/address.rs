//! `reg`, `reg-names`, `ranges` and translation of bus addresses to CPU physical addresses.
//!
//! Rules (DT spec 2.3.6-2.3.8, Linux `of_translate_address`):
//! - `reg` entries use the parent's `#address-cells` / `#size-cells` (defaults 2 / 1; the root's
//!   own `reg` uses the root's).
//! - An address on a bus is translated by the bus's `ranges` to the bus's parent, and so on up
//!   to the root, whose children's addresses are CPU physical addresses. Empty `ranges` is the
//!   identity; a bus without `ranges` (other than the root) makes its children untranslatable,
//!   which is an error naming the bus.
//! - A `ranges` entry matches an address when the address lies inside it (only the start
//!   address is checked, as Linux does). On a PCI bus (see [`Node::is_pci_bus`]) the entry must
//!   also have the same space (I/O or memory; 32- and 64-bit memory are one space), and only the
//!   low 64 bits of `phys.mid phys.lo` are compared.
//! - Entries of size 0 and lengths that are not whole entries are errors.

use addr::{PhysAddr, Range};
use alloc::vec::Vec;

use crate::error::{DtError, Problem};
use crate::tree::{Node, number};

/// One raw `reg` entry, in the parent bus's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegEntry {
    /// Address on the parent bus (all address cells, so a PCI `phys.hi` stays in bits 64..96).
    pub address: u128,
    /// Size (0 when the bus has `#size-cells = <0>`).
    pub size: u128,
}

/// One entry of `ranges` or `dma-ranges`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusRange {
    /// Address on this node's (child) bus, all cells: a PCI child address keeps `phys.hi` in
    /// bits 64..96.
    pub child: u128,
    /// Address on the parent bus.
    pub parent: u128,
    /// Size in bytes (never 0).
    pub size: u128,
}

impl BusRange {
    /// The low 64 bits of the child address: the bus address proper on a PCI bus.
    pub fn child_low64(&self) -> u64 {
        self.child as u64
    }
}

/// `ranges` or `dma-ranges` of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusRanges {
    /// The property is absent.
    Absent,
    /// The property is empty: child and parent addresses are the same, without limit.
    Identity,
    /// The property lists windows.
    Windows(Vec<BusRange>),
}

impl BusRanges {
    /// The windows (empty for [`Absent`](Self::Absent) and [`Identity`](Self::Identity)).
    pub fn windows(&self) -> &[BusRange] {
        match self {
            BusRanges::Windows(w) => w,
            _ => &[],
        }
    }
}

/// Cell counts of a `ranges` / `dma-ranges` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeCells {
    /// This node's `#address-cells`.
    pub child: u32,
    /// The parent's `#address-cells` (the node's own for the root).
    pub parent: u32,
    /// This node's `#size-cells`.
    pub size: u32,
}

/// `phys.hi` space code of a PCI address (bits 24..25 of the top cell): 0 config, 1 I/O,
/// 2 32-bit memory, 3 64-bit memory.
pub(crate) fn pci_space(address: u128) -> u32 {
    ((address >> 88) & 3) as u32
}

/// The value of `address` as a plain number on `bus`: the low 64 bits on a PCI bus.
pub(crate) fn bus_value(bus: &Node<'_>, address: u128) -> Result<u128, DtError> {
    Ok(if bus.is_pci_bus()? {
        u128::from(address as u64)
    } else {
        address
    })
}

/// `address` if it fits in 64 bits, else an error on `node`'s `prop`.
pub(crate) fn fit64(node: &Node<'_>, prop: &str, value: u128) -> Result<u64, DtError> {
    u64::try_from(value).map_err(|_| node.err(prop, Problem::TooWide(value)))
}

/// Maps `address` (on `bus`'s child side) through `ranges` windows; `None` when none covers it.
fn through_ranges(windows: &[BusRange], address: u128, pci: bool) -> Option<u128> {
    let memory_or = |space: u32| if space >= 2 { 2 } else { space };
    windows.iter().find_map(|w| {
        let (a, c) = if pci {
            if memory_or(pci_space(address)) != memory_or(pci_space(w.child)) {
                return None;
            }
            (u128::from(address as u64), u128::from(w.child as u64))
        } else {
            (address, w.child)
        };
        let off = a.checked_sub(c)?;
        (off < w.size).then(|| w.parent.checked_add(off)).flatten()
    })
}

impl<'t> Node<'t> {
    /// Cell counts of this node's `ranges` / `dma-ranges` entries.
    pub fn range_cells(&self) -> Result<RangeCells, DtError> {
        let child = self.address_cells()?;
        Ok(RangeCells {
            child,
            parent: match self.parent() {
                Some(p) => p.address_cells()?,
                None => child,
            },
            size: self.size_cells()?,
        })
    }

    pub(crate) fn bus_ranges(&self, prop: &'static str) -> Result<BusRanges, DtError> {
        let Some(cells) = self.cells(prop)? else {
            return Ok(BusRanges::Absent);
        };
        if cells.is_empty() {
            return Ok(BusRanges::Identity);
        }
        let rc = self.range_cells()?;
        let (na, pna, ns) = (rc.child as usize, rc.parent as usize, rc.size as usize);
        let entry = na + pna + ns;
        if entry == 0 || !cells.len().is_multiple_of(entry) {
            return Err(self.err(
                prop,
                Problem::NotMultiple {
                    cells: cells.len(),
                    entry,
                },
            ));
        }
        let mut out = Vec::with_capacity(cells.len() / entry);
        for (i, c) in cells.chunks_exact(entry).enumerate() {
            let r = BusRange {
                child: number(&c[..na]),
                parent: number(&c[na..na + pna]),
                size: number(&c[na + pna..]),
            };
            if r.size == 0 {
                return Err(self.err(prop, Problem::ZeroSize { entry: i }));
            }
            out.push(r);
        }
        Ok(BusRanges::Windows(out))
    }

    /// `ranges`: how this bus's child addresses map to its parent's.
    pub fn ranges(&self) -> Result<BusRanges, DtError> {
        self.bus_ranges("ranges")
    }

    /// Translates `address`, an address on this node's child bus, to a CPU physical address
    /// through the `ranges` of this node and every ancestor. Errors name `who` and `prop`.
    pub(crate) fn translate_for(
        &self,
        address: u128,
        who: &Node<'_>,
        prop: &str,
    ) -> Result<u64, DtError> {
        let mut bus = *self;
        let mut a = address;
        while let Some(parent) = bus.parent() {
            match bus.ranges()? {
                BusRanges::Absent => {
                    return Err(who.err(
                        prop,
                        Problem::Untranslatable {
                            bus: bus.path().into(),
                        },
                    ));
                }
                BusRanges::Identity => a = bus_value(&bus, a)?,
                BusRanges::Windows(w) => {
                    a = through_ranges(&w, a, bus.is_pci_bus()?).ok_or_else(|| {
                        who.err(
                            prop,
                            Problem::OutsideWindows {
                                address: a,
                                bus: bus.path().into(),
                            },
                        )
                    })?;
                }
            }
            bus = parent;
        }
        fit64(who, prop, a)
    }

    /// Translates an address on this node's child bus to a CPU physical address.
    pub fn translate(&self, address: u128) -> Result<PhysAddr, DtError> {
        self.translate_for(address, self, "ranges").map(PhysAddr)
    }

    /// The raw `reg` entries (parent bus addresses); empty when absent.
    pub fn reg_raw(&self) -> Result<Vec<RegEntry>, DtError> {
        let Some(cells) = self.cells("reg")? else {
            return Ok(Vec::new());
        };
        let sizes_from = self.parent().unwrap_or(*self);
        let na = sizes_from.address_cells()? as usize;
        let ns = sizes_from.size_cells()? as usize;
        let entry = na + ns;
        if cells.is_empty() {
            return Ok(Vec::new());
        }
        if entry == 0 || !cells.len().is_multiple_of(entry) {
            return Err(self.err(
                "reg",
                Problem::NotMultiple {
                    cells: cells.len(),
                    entry,
                },
            ));
        }
        Ok(cells
            .chunks_exact(entry)
            .map(|c| RegEntry {
                address: number(&c[..na]),
                size: number(&c[na..]),
            })
            .collect())
    }

    /// `reg` translated to CPU physical address ranges; empty when absent.
    pub fn reg(&self) -> Result<Vec<Range<PhysAddr>>, DtError> {
        let raw = self.reg_raw()?;
        let mut out = Vec::with_capacity(raw.len());
        for (i, e) in raw.iter().enumerate() {
            let cpu = match self.parent() {
                Some(bus) => bus.translate_for(e.address, self, "reg")?,
                None => fit64(self, "reg", e.address)?,
            };
            let size = fit64(self, "reg", e.size)?;
            if size > 0 && cpu.checked_add(size - 1).is_none() {
                return Err(self.err("reg", Problem::Overflow { entry: i }));
            }
            out.push(Range::new(PhysAddr(cpu), size));
        }
        Ok(out)
    }

    /// `reg-names`; empty when absent.
    pub fn reg_names(&self) -> Result<Vec<&'t str>, DtError> {
        self.strings("reg-names")
    }

    /// The `reg` entry called `name` in `reg-names`, translated; `None` when no such name.
    pub fn reg_by_name(&self, name: &str) -> Result<Option<Range<PhysAddr>>, DtError> {
        let names = self.reg_names()?;
        let Some(i) = names.iter().position(|n| *n == name) else {
            return Ok(None);
        };
        let regs = self.reg()?;
        match regs.get(i) {
            Some(r) => Ok(Some(*r)),
            None => Err(self.err(
                "reg-names",
                Problem::NameCount {
                    names: names.len(),
                    entries: regs.len(),
                },
            )),
        }
    }
}
