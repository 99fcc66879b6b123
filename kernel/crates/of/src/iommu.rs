//! `iommus`, `iommu-map` / `iommu-map-mask`, `msi-map` / `msi-map-mask`, `msi-parent`.
//!
//! Rules (Linux `of_iommu_configure` / `of_map_id`, DT bindings `iommu.txt`, `pci-iommu.yaml`):
//! - `iommus` is a list of `<phandle specifier...>`; the specifier has the target's
//!   `#iommu-cells` cells (0, 1, 2, ...). A target without `#iommu-cells` is an error.
//! - An `iommu-map` / `msi-map` entry is always four cells `<rid-base phandle base length>`,
//!   whatever the target's `#iommu-cells` says (as Linux reads it; some Qualcomm boards point
//!   such maps at SMMUs with `#iommu-cells = <2>`).
//! - Lookup: `id = rid & mask` (mask absent = all ones); the entry with
//!   `rid-base <= id < rid-base + length` gives `base + (id - rid-base)`; no entry = no
//!   translation for that RID.
//! - Refused (each a [`DtError`] naming node and property): an empty map, a length that is not
//!   whole entries, a dangling phandle, a zero length, an entry running past 2^32 on either side,
//!   overlapping entries.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{DtError, Problem};
use crate::tree::Node;

/// One phandle with its argument cells: an entry of `iommus`, `msi-parent`,
/// `interrupts-extended`. `N` is a [`Node`] when read from a tree, a path when owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhandleArgs<N> {
    /// The referenced node.
    pub target: N,
    /// The specifier cells (as many as the target's `#...-cells`).
    pub args: Vec<u32>,
}

impl<N> PhandleArgs<N> {
    /// The same entry with the target converted (for example to its path).
    pub fn map_target<M>(&self, f: impl FnOnce(&N) -> M) -> PhandleArgs<M> {
        PhandleArgs {
            target: f(&self.target),
            args: self.args.clone(),
        }
    }
}

/// One entry of an `iommu-map` or `msi-map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMapEntry<N> {
    /// First input ID (RID) covered.
    pub rid_base: u32,
    /// The IOMMU or MSI controller.
    pub target: N,
    /// Output ID for `rid_base`.
    pub target_base: u32,
    /// Number of IDs covered (never 0).
    pub length: u32,
}

/// A validated `iommu-map` or `msi-map` with its mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMap<N> {
    /// `*-map-mask`, `None` when absent (all ones).
    pub mask: Option<u32>,
    /// The entries in property order; they do not overlap.
    pub entries: Vec<IdMapEntry<N>>,
}

impl<N> IdMap<N> {
    /// The mask applied to an input ID.
    pub fn effective_mask(&self) -> u32 {
        self.mask.unwrap_or(u32::MAX)
    }

    /// The target and output ID for requester ID `rid`, or `None` when no entry covers it
    /// (the device has no IOMMU / MSI translation).
    pub fn translate(&self, rid: u32) -> Option<(&N, u32)> {
        let id = rid & self.effective_mask();
        self.entries.iter().find_map(|e| {
            let off = id.checked_sub(e.rid_base)?;
            (off < e.length).then(|| (&e.target, e.target_base.wrapping_add(off)))
        })
    }

    /// The same map with every target converted (for example to its path).
    pub fn map_targets<M>(&self, mut f: impl FnMut(&N) -> M) -> IdMap<M> {
        IdMap {
            mask: self.mask,
            entries: self
                .entries
                .iter()
                .map(|e| IdMapEntry {
                    rid_base: e.rid_base,
                    target: f(&e.target),
                    target_base: e.target_base,
                    length: e.length,
                })
                .collect(),
        }
    }
}

/// Parses `<phandle args...>` entries whose argument count is the target's `cells_prop`
/// (`default` when the target lacks it; `None` makes that an error). Absent = empty.
pub(crate) fn phandle_args<'t>(
    node: Node<'t>,
    prop: &str,
    cells_prop: &'static str,
    default: Option<u32>,
) -> Result<Vec<PhandleArgs<Node<'t>>>, DtError> {
    let Some(cells) = node.cells(prop)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut rest = &cells[..];
    while let Some((&phandle, after)) = rest.split_first() {
        let entry = out.len();
        let target = node.resolve(prop, phandle)?;
        let n = match target.specifier_cells(cells_prop)? {
            Some(n) => n,
            None => default.ok_or_else(|| {
                node.err(
                    prop,
                    Problem::NoCellsProperty {
                        target: target.path().into(),
                        cells: cells_prop,
                    },
                )
            })?,
        } as usize;
        if after.len() < n {
            return Err(node.err(
                prop,
                Problem::Truncated {
                    entry,
                    needed: n,
                    left: after.len(),
                },
            ));
        }
        let (args, tail) = after.split_at(n);
        out.push(PhandleArgs {
            target,
            args: args.to_vec(),
        });
        rest = tail;
    }
    Ok(out)
}

fn id_map<'t>(
    node: Node<'t>,
    prop: &'static str,
    mask_prop: &'static str,
) -> Result<Option<IdMap<Node<'t>>>, DtError> {
    let Some(cells) = node.cells(prop)? else {
        return Ok(None);
    };
    if cells.is_empty() {
        return Err(node.err(prop, Problem::Empty));
    }
    if !cells.len().is_multiple_of(4) {
        return Err(node.err(
            prop,
            Problem::NotMultiple {
                cells: cells.len(),
                entry: 4,
            },
        ));
    }
    let mask = node.u32(mask_prop)?;
    let mut entries = Vec::with_capacity(cells.len() / 4);
    for (entry, c) in cells.chunks_exact(4).enumerate() {
        let (rid_base, phandle, target_base, length) = (c[0], c[1], c[2], c[3]);
        let target = node.resolve(prop, phandle)?;
        if length == 0 {
            return Err(node.err(prop, Problem::ZeroSize { entry }));
        }
        let end = u64::from(length);
        if u64::from(rid_base) + end > 1 << 32 || u64::from(target_base) + end > 1 << 32 {
            return Err(node.err(prop, Problem::Overflow { entry }));
        }
        entries.push(IdMapEntry {
            rid_base,
            target,
            target_base,
            length,
        });
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&i| (entries[i].rid_base, i));
    for w in order.windows(2) {
        let (a, b) = (&entries[w[0]], &entries[w[1]]);
        if u64::from(a.rid_base) + u64::from(a.length) > u64::from(b.rid_base) {
            return Err(node.err(
                prop,
                Problem::Overlap {
                    first: w[0].min(w[1]),
                    second: w[0].max(w[1]),
                },
            ));
        }
    }
    Ok(Some(IdMap { mask, entries }))
}

impl<'t> Node<'t> {
    /// `iommus`: the IOMMUs this master sits behind, with their specifiers (StreamIDs for an
    /// SMMUv3). Empty when absent. Targets are returned whatever their `status`: a disabled
    /// IOMMU means "no IOMMU", a not-yet-probed one means "defer"; both are the caller's call.
    pub fn iommus(&self) -> Result<Vec<PhandleArgs<Node<'t>>>, DtError> {
        phandle_args(*self, "iommus", "#iommu-cells", None)
    }

    /// `iommu-map` with `iommu-map-mask`; `None` when absent.
    pub fn iommu_map(&self) -> Result<Option<IdMap<Node<'t>>>, DtError> {
        id_map(*self, "iommu-map", "iommu-map-mask")
    }

    /// `msi-map` with `msi-map-mask`; `None` when absent.
    pub fn msi_map(&self) -> Result<Option<IdMap<Node<'t>>>, DtError> {
        id_map(*self, "msi-map", "msi-map-mask")
    }

    /// `msi-parent`: MSI controllers with their `#msi-cells` arguments (0 when the controller
    /// has no `#msi-cells`, as for a GICv2m frame). Empty when absent.
    pub fn msi_parents(&self) -> Result<Vec<PhandleArgs<Node<'t>>>, DtError> {
        phandle_args(*self, "msi-parent", "#msi-cells", Some(0))
    }

    /// The IOMMU and StreamID for requester ID `rid` below this bus (`iommu-map`); `None` when
    /// there is no map or no entry covers the RID.
    pub fn iommu_for_rid(&self, rid: u32) -> Result<Option<(Node<'t>, u32)>, DtError> {
        Ok(self
            .iommu_map()?
            .and_then(|m| m.translate(rid).map(|(n, id)| (*n, id))))
    }
}

/// Paths instead of node handles, for owned results.
pub(crate) fn path_of(n: &Node<'_>) -> String {
    n.path().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(mask: Option<u32>, entries: &[(u32, u32, u32)]) -> IdMap<&'static str> {
        IdMap {
            mask,
            entries: entries
                .iter()
                .map(|&(rid_base, target_base, length)| IdMapEntry {
                    rid_base,
                    target: "t",
                    target_base,
                    length,
                })
                .collect(),
        }
    }

    #[test]
    fn translate_covers_exactly_base_to_base_plus_length() {
        let m = map(None, &[(0x100, 0x8000, 0x10)]);
        assert_eq!(m.translate(0xff), None);
        assert_eq!(m.translate(0x100), Some((&"t", 0x8000)));
        assert_eq!(m.translate(0x10f), Some((&"t", 0x800f)));
        assert_eq!(m.translate(0x110), None);
    }

    #[test]
    fn translate_masks_before_matching() {
        let m = map(Some(0xfff8), &[(0x0, 0x0, 0x1_0000)]);
        assert_eq!(m.translate(0x0f), Some((&"t", 0x08)));
        assert_eq!(m.effective_mask(), 0xfff8);
    }

    #[test]
    fn translate_never_overflows_on_hand_built_maps() {
        let m = map(None, &[(0, u32::MAX, u32::MAX)]);
        assert_eq!(m.translate(2), Some((&"t", 1)));
    }
}
