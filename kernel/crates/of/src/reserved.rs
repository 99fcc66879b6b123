//! `memory-region` with `iommu-addresses`: the reserved-memory regions an IOMMU domain of a
//! device must map 1:1 or keep out of its IOVA space.
//!
//! Rules (reserved-memory binding, `iommu-addresses`; Linux `of_iommu_get_resv_regions`):
//! - The device's `memory-region` is a list of bare phandles (no specifier cells), each naming
//!   a region node (normally a child of `/reserved-memory`). A region whose `status` is not okay
//!   is not reserved at all and is skipped; a region listed twice counts once.
//! - A region may have `reg` (its CPU physical range, translated through its parent's `ranges`;
//!   only the first entry counts) and `iommu-addresses = <&dev ADDR SIZE>, ...`. The cells of
//!   ADDR and SIZE are the `#address-cells` / `#size-cells` of **that entry's device's** parent
//!   bus, so entries for other devices are stepped over with their own counts. ADDR is a bus
//!   address of that device (on a PCI bus only the low 64 bits count) and goes through the
//!   bus's `dma-ranges` like any bus address.
//! - For each entry naming the device asked about: the region has a `reg` of non-zero size and
//!   the entry is exactly that physical range → [`IommuRegionKind::Direct`]; the region has no
//!   `reg` → [`IommuRegionKind::Reserved`]; it has a `reg` but the entry differs → a warning,
//!   and a reservation (mapping one range of memory at another IOVA is not supported); size 0 →
//!   a warning, and the entry is skipped.
//! - A region with `reg` but no `iommu-addresses` says nothing about IOVAs: skipped. A region
//!   with neither is an error. So are a dangling phandle, a cell count that is not whole
//!   entries, an address or size wider than 64 bits, a range that wraps or lies outside the
//!   bus's `dma-ranges` windows.

use addr::{Iova, PhysAddr, Range};
use alloc::vec::Vec;

use crate::address::{bus_value, fit64};
use crate::dma::DmaConstraint;
use crate::error::{DtError, Problem};
use crate::tree::{Node, number};

/// What an IOMMU domain of the device does with a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuRegionKind {
    /// Map the IOVA range 1:1 onto memory starting at `pa` (always equal to the IOVA).
    Direct {
        /// CPU physical address of the range's start.
        pa: PhysAddr,
    },
    /// Never hand out these IOVAs, map nothing there.
    Reserved,
}

/// One IOVA range a device's `memory-region` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuRegion<'t> {
    /// The region node (`/reserved-memory/buffer@50000000`).
    pub region: Node<'t>,
    /// The IOVA range (after `dma-ranges`; never empty, never wraps).
    pub iova: Range<Iova>,
    /// Direct mapping or plain reservation.
    pub kind: IommuRegionKind,
}

/// A device's regions, with what was odd but not fatal about them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuRegions<'t> {
    /// In `memory-region` order, then `iommu-addresses` order.
    pub regions: Vec<IommuRegion<'t>>,
    /// Entries skipped or downgraded to reservations; each names the region and property.
    pub warnings: Vec<DtError>,
}

const P: &str = "iommu-addresses";

/// The bus whose cell counts and `dma-ranges` apply to `dev`'s bus addresses.
fn bus_of<'t>(dev: &Node<'t>) -> Node<'t> {
    dev.parent().unwrap_or(*dev)
}

/// The CPU-side range of `[addr, addr + size)` on `dev`'s bus, through `dma-ranges`. The whole
/// range must sit in one window: a region split across windows has no single IOVA range.
fn translate<'t>(
    region: &Node<'t>,
    dev: &Node<'t>,
    entry: usize,
    addr: u128,
    size: u128,
) -> Result<Range<Iova>, DtError> {
    let bus = bus_of(dev);
    let start = fit64(region, P, bus_value(&bus, addr)?)?;
    let size = fit64(region, P, size)?;
    let last = start
        .checked_add(size - 1)
        .ok_or_else(|| region.err(P, Problem::Overflow { entry }))?;
    let start = match dev.dma_constraint()? {
        DmaConstraint::Unrestricted => start,
        DmaConstraint::Windows(ws) => ws
            .iter()
            .find(|w| w.bus.0 <= start && last <= w.bus_last().0)
            .map(|w| w.cpu.0 + (start - w.bus.0))
            .ok_or_else(|| {
                region.err(
                    P,
                    Problem::OutsideWindows {
                        address: u128::from(start),
                        bus: bus.path().into(),
                    },
                )
            })?,
    };
    Ok(Range::new(Iova(start), size))
}

/// Adds what `region` says about `dev` to `out`.
fn region_entries<'t>(
    dev: &Node<'t>,
    region: Node<'t>,
    out: &mut IommuRegions<'t>,
) -> Result<(), DtError> {
    let phys = region.reg()?.into_iter().next().filter(|r| r.size > 0);
    let Some(cells) = region.cells(P)? else {
        if phys.is_none() {
            return Err(region.err(P, Problem::NoRegionAddress));
        }
        return Ok(());
    };
    if cells.is_empty() {
        return Err(region.err(P, Problem::Empty));
    }
    let mut rest = &cells[..];
    let mut entry = 0;
    while let Some((&phandle, after)) = rest.split_first() {
        let target = region.resolve(P, phandle)?;
        let bus = bus_of(&target);
        let na = bus.address_cells()? as usize;
        let ns = bus.size_cells()? as usize;
        if after.len() < na + ns {
            return Err(region.err(
                P,
                Problem::Truncated {
                    entry,
                    needed: na + ns,
                    left: after.len(),
                },
            ));
        }
        let (addr, size) = (number(&after[..na]), number(&after[na..na + ns]));
        rest = &after[na + ns..];
        let this = entry;
        entry += 1;
        if target != *dev {
            continue;
        }
        if size == 0 {
            out.warnings
                .push(region.err(P, Problem::EmptyIovaRange { entry: this }));
            continue;
        }
        let iova = translate(&region, dev, this, addr, size)?;
        let kind = match phys {
            None => IommuRegionKind::Reserved,
            Some(p) if p.start.0 == iova.start.0 && p.size == iova.size => {
                IommuRegionKind::Direct { pa: p.start }
            }
            Some(p) => {
                out.warnings.push(region.err(
                    P,
                    Problem::NotIdentity {
                        entry: this,
                        iova: iova.start.0,
                        pa: p.start.0,
                        size: iova.size,
                        pa_size: p.size,
                    },
                ));
                IommuRegionKind::Reserved
            }
        };
        out.regions.push(IommuRegion { region, iova, kind });
    }
    Ok(())
}

impl<'t> Node<'t> {
    /// `memory-region` as bare phandles, resolved; empty when absent.
    pub fn memory_regions(&self) -> Result<Vec<Node<'t>>, DtError> {
        const M: &str = "memory-region";
        let Some(cells) = self.cells(M)? else {
            return Ok(Vec::new());
        };
        if cells.is_empty() {
            return Err(self.err(M, Problem::Empty));
        }
        cells.iter().map(|&p| self.resolve(M, p)).collect()
    }

    /// The IOVA ranges this device's `memory-region` asks its IOMMU domains for (see the module
    /// documentation for the rules). Empty when the device has no `memory-region`.
    pub fn iommu_reserved_regions(&self) -> Result<IommuRegions<'t>, DtError> {
        let mut out = IommuRegions::default();
        let mut seen: Vec<Node<'t>> = Vec::new();
        for region in self.memory_regions()? {
            if seen.contains(&region) {
                continue;
            }
            seen.push(region);
            if !region.is_enabled()? {
                continue;
            }
            region_entries(self, region, &mut out)?;
        }
        Ok(out)
    }
}
