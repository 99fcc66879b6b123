//! The whole DMA topology of a blob in one call: [`dma_topology`]. This is what
//! `cargo xtask dt-dma` prints and what the fuzz target drives.

use alloc::string::String;
use alloc::vec::Vec;

use crate::address::{BusRanges, RangeCells};
use crate::dma::DmaConstraint;
use crate::error::DtError;
use crate::iommu::{IdMap, PhandleArgs, path_of};
use crate::tree::{DeviceTree, Node};

/// The DMA-relevant facts of one node, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaNode {
    /// Full path.
    pub path: String,
    /// The node's own `status` string, `None` when absent.
    pub status: Option<String>,
    /// Effective coherence (inherited).
    pub dma_coherent: bool,
    /// `iommus` entries (IOMMU path, specifier).
    pub iommus: Vec<PhandleArgs<String>>,
    /// `iommu-map` with its mask.
    pub iommu_map: Option<IdMap<String>>,
    /// `msi-map` with its mask.
    pub msi_map: Option<IdMap<String>>,
    /// The node's own `dma-ranges`.
    pub dma_ranges: BusRanges,
    /// Cell counts of `dma-ranges` entries, when the node has `dma-ranges`.
    pub dma_range_cells: Option<RangeCells>,
    /// What the node reaches as a device.
    pub dma: DmaConstraint,
    /// What its children (or PCI functions) reach, when it has `dma-ranges`.
    pub child_dma: Option<DmaConstraint>,
}

/// Every node that has DMA properties or, as a device, inherits coherence or DMA windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaTopology {
    /// The root's `model`.
    pub model: Option<String>,
    /// The nodes, in tree order.
    pub nodes: Vec<DmaNode>,
}

/// Properties that make a node part of the DMA topology by themselves.
pub const DMA_PROPERTIES: &[&str] = &[
    "iommus",
    "iommu-map",
    "dma-ranges",
    "dma-coherent",
    "dma-noncoherent",
];

/// A device, for the purpose of inheriting DMA facts: a non-root node with `compatible` on a
/// bus that maps its children into the CPU's space (the root, or a node with `ranges`).
fn is_device(node: &Node<'_>) -> Result<bool, DtError> {
    let Some(parent) = node.parent() else {
        return Ok(false);
    };
    Ok(!node.compatible()?.is_empty() && (parent.is_root() || parent.has_property("ranges")))
}

impl DmaNode {
    fn of(node: &Node<'_>) -> Result<Option<Self>, DtError> {
        let own = DMA_PROPERTIES.iter().any(|p| node.has_property(p));
        if !own && !is_device(node)? {
            return Ok(None);
        }
        let dma_coherent = node.dma_coherent()?;
        let dma = node.dma_constraint()?;
        if !own && !dma_coherent && dma == DmaConstraint::Unrestricted {
            return Ok(None);
        }
        node.status()?;
        let dma_ranges = node.dma_ranges()?;
        let has_ranges = dma_ranges != BusRanges::Absent;
        Ok(Some(DmaNode {
            path: node.path().into(),
            status: node.status_str()?.map(String::from),
            dma_coherent,
            iommus: node
                .iommus()?
                .iter()
                .map(|e| e.map_target(path_of))
                .collect(),
            iommu_map: node.iommu_map()?.map(|m| m.map_targets(path_of)),
            msi_map: node.msi_map()?.map(|m| m.map_targets(path_of)),
            dma_range_cells: if has_ranges {
                Some(node.range_cells()?)
            } else {
                None
            },
            child_dma: if has_ranges {
                Some(node.child_dma_constraint()?)
            } else {
                None
            },
            dma_ranges,
            dma,
        }))
    }
}

impl DmaTopology {
    /// The topology of a parsed tree.
    pub fn of(dt: &DeviceTree<'_>) -> Result<Self, DtError> {
        let mut nodes = Vec::new();
        for node in dt.nodes() {
            if let Some(n) = DmaNode::of(&node)? {
                nodes.push(n);
            }
        }
        Ok(DmaTopology {
            model: dt.root().string("model")?.map(String::from),
            nodes,
        })
    }

    /// The node with this path.
    pub fn node(&self, path: &str) -> Option<&DmaNode> {
        self.nodes.iter().find(|n| n.path == path)
    }
}

/// Parses `blob` and computes its whole DMA topology. Never panics; the first problem found is
/// returned as a [`DtError`] naming node and property.
pub fn dma_topology(blob: &[u8]) -> Result<DmaTopology, DtError> {
    DmaTopology::of(&DeviceTree::parse(blob)?)
}
