//! `dma-ranges`, effective DMA windows, and `dma-coherent` / `dma-noncoherent`.
//!
//! A node's own `dma-ranges` describe how **its children** see memory: entries are
//! `<child-bus-address parent-bus-address size>` with this node's `#address-cells`, the parent's
//! `#address-cells` and this node's `#size-cells`. A device's DMA view is therefore given by
//! the `dma-ranges` of its ancestors, chained up to the root.
//!
//! # Rules implemented (Linux `of_dma_get_range` + `of_translate_dma_address`)
//!
//! Finding the level that restricts a device. Start at the device's parent (for a device not
//! described in the tree, such as a PCI function, at its host bridge: see
//! [`Node::child_dma_constraint`]) and walk up:
//! - non-empty `dma-ranges`: this level's windows are the answer (then translated upward);
//! - empty `dma-ranges`: identity at this level, keep walking;
//! - **absent** `dma-ranges`: tolerated on the first level only (Linux skips the device's own
//!   bus); absent on any level above it means "no DMA translation information": the device is
//!   assumed to reach memory 1:1 without limit ([`DmaConstraint::Unrestricted`]). The DT spec's
//!   stricter reading ("not DMA-capable") is not used.
//! - reaching the root without finding windows: unrestricted.
//!
//! Translating the windows found to CPU addresses, through every ancestor above that level:
//! non-empty `dma-ranges` map (a window may be clipped or split across several entries; a window
//! no entry covers at all is an error), empty **or absent** ones are the identity (Linux
//! translates through a missing `dma-ranges` 1:1).
//!
//! The root is a bus like any other here: its children's addresses are CPU physical addresses,
//! so `dma-ranges` on the root map straight to CPU addresses (Linux cannot translate those and
//! ignores them; the specification has no parent bus to name).
//!
//! On a PCI bus only the low 64 bits of a 3-cell address are the address. Every window must fit
//! in 64 bits on both sides after translation. The entries of a `dma-ranges`, at the level that
//! restricts the device and at every level above it, may not overlap on their child side (so the
//! windows found never overlap on the bus side).
//!
//! Coherence (Linux `of_dma_is_coherent`): the node itself, then its ancestors; the nearest one
//! with `dma-coherent` or `dma-noncoherent` decides; none = non-coherent (the arm64 default).
//! A node with both is an error.

use addr::{Iova, PhysAddr};
use alloc::vec::Vec;

use crate::address::{BusRange, BusRanges, bus_value, fit64};
use crate::error::{DtError, Problem};
use crate::tree::Node;

/// A contiguous range a device can reach: bus addresses `bus .. bus + size` hit CPU physical
/// addresses `cpu .. cpu + size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaWindow {
    /// First bus address (what the device emits).
    pub bus: Iova,
    /// CPU physical address of `bus`.
    pub cpu: PhysAddr,
    /// Length in bytes (not 0; `bus + size - 1` and `cpu + size - 1` fit in 64 bits).
    pub size: u64,
}

impl DmaWindow {
    /// Last bus address in the window.
    pub fn bus_last(&self) -> Iova {
        Iova(self.bus.0.wrapping_add(self.size.wrapping_sub(1)))
    }

    /// The bus address of CPU physical address `pa`, if the window covers it.
    pub fn cpu_to_bus(&self, pa: PhysAddr) -> Option<Iova> {
        let off = pa.0.checked_sub(self.cpu.0)?;
        (off < self.size).then(|| Iova(self.bus.0.wrapping_add(off)))
    }

    /// The CPU physical address of bus address `iova`, if the window covers it.
    pub fn bus_to_cpu(&self, iova: Iova) -> Option<PhysAddr> {
        let off = iova.0.checked_sub(self.bus.0)?;
        (off < self.size).then(|| PhysAddr(self.cpu.0.wrapping_add(off)))
    }
}

/// What a device can reach by DMA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmaConstraint {
    /// No `dma-ranges` restrict it: bus address = CPU physical address, no limit.
    Unrestricted,
    /// Only these windows, sorted by bus address, disjoint on the bus side.
    Windows(Vec<DmaWindow>),
}

impl DmaConstraint {
    /// The windows (empty when unrestricted).
    pub fn windows(&self) -> &[DmaWindow] {
        match self {
            DmaConstraint::Unrestricted => &[],
            DmaConstraint::Windows(w) => w,
        }
    }

    /// Highest bus address the device can emit (inclusive); `None` when unrestricted. With an
    /// IOMMU this bounds the IOVAs handed to the device.
    pub fn bus_limit(&self) -> Option<Iova> {
        self.windows().iter().map(DmaWindow::bus_last).max()
    }

    /// The bus address for CPU physical address `pa`; `None` when no window reaches it.
    pub fn cpu_to_bus(&self, pa: PhysAddr) -> Option<Iova> {
        match self {
            DmaConstraint::Unrestricted => Some(Iova(pa.0)),
            DmaConstraint::Windows(w) => w.iter().find_map(|w| w.cpu_to_bus(pa)),
        }
    }

    /// The CPU physical address for bus address `iova`; `None` outside every window.
    pub fn bus_to_cpu(&self, iova: Iova) -> Option<PhysAddr> {
        match self {
            DmaConstraint::Unrestricted => Some(PhysAddr(iova.0)),
            DmaConstraint::Windows(w) => w.iter().find_map(|w| w.bus_to_cpu(iova)),
        }
    }
}

/// A window on its way up: bus address fixed, `at` the address on the current level's bus.
#[derive(Clone, Copy)]
struct Pending {
    bus: u64,
    at: u128,
    size: u128,
    /// Index of the `dma-ranges` entry it came from, for errors.
    entry: usize,
}

/// Checks that `dma-ranges` entries of `node`, as (start, size) on its child bus in property
/// order, do not overlap.
fn disjoint(node: &Node<'_>, spans: &[(u128, u128)]) -> Result<(), DtError> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_unstable_by_key(|&i| (spans[i].0, i));
    for w in order.windows(2) {
        let ((a, size), (b, _)) = (spans[w[0]], spans[w[1]]);
        // Sorted, so `b >= a`: they overlap when `b` starts inside `a`.
        if b - a < size {
            return Err(node.err(
                "dma-ranges",
                Problem::Overlap {
                    first: w[0].min(w[1]),
                    second: w[0].max(w[1]),
                },
            ));
        }
    }
    Ok(())
}

/// Clips and maps `w` through the windows of one level. `at` values are on that level's child
/// bus (already reduced to plain numbers).
fn through(
    w: Pending,
    windows: &[BusRange],
    child_values: &[u128],
    out: &mut Vec<Pending>,
) -> bool {
    let mut hit = false;
    let end = w.at.saturating_add(w.size);
    for (r, &c) in windows.iter().zip(child_values) {
        let lo = w.at.max(c);
        let hi = end.min(c.saturating_add(r.size));
        if lo >= hi {
            continue;
        }
        let Some(at) = r.parent.checked_add(lo - c) else {
            continue;
        };
        hit = true;
        out.push(Pending {
            // `lo - w.at < w.size` and the bus side was checked to fit in 64 bits.
            bus: w.bus.wrapping_add((lo - w.at) as u64),
            at,
            size: hi - lo,
            entry: w.entry,
        });
    }
    hit
}

impl<'t> Node<'t> {
    /// This node's own `dma-ranges` (how its children's bus maps to its parent's).
    pub fn dma_ranges(&self) -> Result<BusRanges, DtError> {
        self.bus_ranges("dma-ranges")
    }

    /// What this node can reach by DMA as a device: its parent bus's view
    /// ([`child_dma_constraint`](Self::child_dma_constraint) of the parent).
    pub fn dma_constraint(&self) -> Result<DmaConstraint, DtError> {
        match self.parent() {
            Some(bus) => bus.child_dma_constraint(),
            None => Ok(DmaConstraint::Unrestricted),
        }
    }

    /// What devices on this node's child bus can reach by DMA: the view of a PCI function below
    /// this host bridge, or of any child node. See the module documentation for the rules.
    pub fn child_dma_constraint(&self) -> Result<DmaConstraint, DtError> {
        const P: &str = "dma-ranges";
        let mut level = *self;
        let mut first = true;
        let windows = loop {
            match level.dma_ranges()? {
                BusRanges::Windows(w) => break w,
                BusRanges::Identity => {}
                BusRanges::Absent if first => {}
                BusRanges::Absent => return Ok(DmaConstraint::Unrestricted),
            }
            first = false;
            match level.parent() {
                Some(p) => level = p,
                None => return Ok(DmaConstraint::Unrestricted),
            }
        };

        // Bus side: plain 64-bit numbers, disjoint.
        let mut pending = Vec::with_capacity(windows.len());
        for (entry, r) in windows.iter().enumerate() {
            let bus = fit64(&level, P, bus_value(&level, r.child)?)?;
            if u128::from(bus).saturating_add(r.size) > 1 << 64 {
                return Err(level.err(P, Problem::Overflow { entry }));
            }
            pending.push(Pending {
                bus,
                at: r.parent,
                size: r.size,
                entry,
            });
        }
        let spans: Vec<(u128, u128)> = pending
            .iter()
            .map(|p| (u128::from(p.bus), p.size))
            .collect();
        disjoint(&level, &spans)?;

        // Up through every ancestor: its dma-ranges map its child bus to its parent's.
        let mut up = level.parent();
        while let Some(bus) = up {
            for p in &mut pending {
                p.at = bus_value(&bus, p.at)?;
            }
            if let BusRanges::Windows(ranges) = bus.dma_ranges()? {
                let child_values = ranges
                    .iter()
                    .map(|r| bus_value(&bus, r.child))
                    .collect::<Result<Vec<_>, _>>()?;
                // Overlapping entries would map one window twice, to two bus ranges that
                // overlap: the result must stay disjoint on the bus side.
                let spans: Vec<(u128, u128)> = child_values
                    .iter()
                    .zip(&ranges)
                    .map(|(&c, r)| (c, r.size))
                    .collect();
                disjoint(&bus, &spans)?;
                let mut next = Vec::with_capacity(pending.len());
                for w in pending {
                    if !through(w, &ranges, &child_values, &mut next) {
                        return Err(level.err(
                            P,
                            Problem::OutsideWindows {
                                address: w.at,
                                bus: bus.path().into(),
                            },
                        ));
                    }
                }
                pending = next;
            }
            up = bus.parent();
        }

        let mut out = Vec::with_capacity(pending.len());
        for w in pending {
            let cpu = fit64(&level, P, w.at)?;
            let size = fit64(&level, P, w.size)?;
            if cpu.checked_add(size - 1).is_none() {
                return Err(level.err(P, Problem::Overflow { entry: w.entry }));
            }
            out.push(DmaWindow {
                bus: Iova(w.bus),
                cpu: PhysAddr(cpu),
                size,
            });
        }
        out.sort_unstable_by_key(|w| w.bus);
        Ok(DmaConstraint::Windows(out))
    }

    /// Whether DMA from this device is cache-coherent (inherited; see the module docs).
    pub fn dma_coherent(&self) -> Result<bool, DtError> {
        for n in self.self_and_ancestors() {
            let coherent = n.flag("dma-coherent")?;
            let noncoherent = n.flag("dma-noncoherent")?;
            if coherent && noncoherent {
                return Err(n.err("dma-coherent", Problem::Conflicts("dma-noncoherent".into())));
            }
            if coherent || noncoherent {
                return Ok(coherent);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_the_highest_bus_address_of_any_window() {
        let c = DmaConstraint::Windows(alloc::vec![
            DmaWindow {
                bus: Iova(0x1000_0000),
                cpu: PhysAddr(0),
                size: 0x1000
            },
            DmaWindow {
                bus: Iova(0),
                cpu: PhysAddr(0x8000),
                size: 0x2000
            },
        ]);
        assert_eq!(c.bus_limit(), Some(Iova(0x1000_0fff)));
        assert_eq!(c.cpu_to_bus(PhysAddr(0x9000)), Some(Iova(0x1000)));
        assert_eq!(
            c.cpu_to_bus(PhysAddr(0x7fff)),
            None,
            "between the windows' CPU ranges"
        );
        assert_eq!(DmaConstraint::Unrestricted.bus_limit(), None);
        assert!(DmaConstraint::Unrestricted.windows().is_empty());
    }

    #[test]
    fn clipping_keeps_only_the_covered_part() {
        let ranges = [BusRange {
            child: 0x100,
            parent: 0x1_0000,
            size: 0x100,
        }];
        let mut out = Vec::new();
        let w = Pending {
            bus: 0,
            at: 0x80,
            size: 0x100,
            entry: 0,
        };
        assert!(through(w, &ranges, &[0x100], &mut out));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].bus, out[0].at, out[0].size), (0x80, 0x1_0000, 0x80));
        let miss = Pending { at: 0x200, ..w };
        assert!(!through(miss, &ranges, &[0x100], &mut out));
    }
}
