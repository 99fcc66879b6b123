//! The parsed tree ([`DeviceTree`]), node handles ([`Node`]) and the generic property readers.
//!
//! Parsing validates the blob (see `blob`), then lets the `fdt` crate enumerate nodes and
//! properties and indexes them once: parent/child links, full paths, phandles. Every accessor
//! after that is a lookup in that index and cannot panic.

use addr::{PhysAddr, Range};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;

use crate::blob;
use crate::error::{BlobProblem, DtError, Problem};

/// Largest `#address-cells` / `#size-cells` accepted: four cells fill a `u128`.
pub const MAX_ADDRESS_CELLS: u32 = 4;
/// Largest `#iommu-cells`, `#interrupt-cells`, `#msi-cells` accepted.
pub const MAX_SPECIFIER_CELLS: u32 = 16;

struct NodeData<'a> {
    name: &'a str,
    path: String,
    parent: Option<usize>,
    children: Vec<usize>,
    props: Vec<(&'a str, &'a [u8])>,
    phandle: Option<u32>,
}

/// A parsed, validated device tree. Borrows the blob.
pub struct DeviceTree<'a> {
    nodes: Vec<NodeData<'a>>,
    phandles: BTreeMap<u32, usize>,
    blob: &'a [u8],
    reservations: Vec<(u64, u64)>,
}

impl fmt::Debug for DeviceTree<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceTree")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

fn inconsistent() -> DtError {
    DtError::Blob {
        offset: 0,
        problem: BlobProblem::Inconsistent,
    }
}

impl<'a> DeviceTree<'a> {
    /// Validates and indexes a flattened device tree. Never panics, whatever the bytes.
    ///
    /// Beyond the format, refuses: duplicate property names in a node, duplicate sibling names,
    /// malformed or duplicate `phandle` / `linux,phandle` values.
    pub fn parse(data: &'a [u8]) -> Result<Self, DtError> {
        let v = blob::validate(data)?;
        let fdt = Fdt::new(v.blob).map_err(|_| inconsistent())?;
        let mut nodes: Vec<NodeData<'a>> = Vec::with_capacity(v.nodes.len());
        let mut walk = fdt.all_nodes();
        for raw in &v.nodes {
            let seen = walk.next().ok_or_else(inconsistent)?;
            let expected = if raw.name.is_empty() { "/" } else { raw.name };
            if seen.name != expected {
                return Err(inconsistent());
            }
            let props: Vec<(&'a str, &'a [u8])> =
                seen.properties().map(|p| (p.name, p.value)).collect();
            let path = match raw.parent {
                None => String::from("/"),
                Some(p) => {
                    let parent = &nodes[p].path;
                    let mut path = String::with_capacity(parent.len() + 1 + raw.name.len());
                    path.push_str(parent);
                    if parent != "/" {
                        path.push('/');
                    }
                    path.push_str(raw.name);
                    path
                }
            };
            let id = nodes.len();
            if let Some(p) = raw.parent {
                nodes[p].children.push(id);
            }
            nodes.push(NodeData {
                name: raw.name,
                path,
                parent: raw.parent,
                children: Vec::new(),
                props,
                phandle: None,
            });
        }
        if walk.next().is_some() {
            return Err(inconsistent());
        }
        let mut dt = DeviceTree {
            nodes,
            phandles: BTreeMap::new(),
            blob: v.blob,
            reservations: v.reservations.clone(),
        };
        dt.check_duplicates(&v.nodes)?;
        dt.index_phandles()?;
        Ok(dt)
    }

    fn check_duplicates(&self, raw: &[blob::RawNode<'_>]) -> Result<(), DtError> {
        for (id, n) in self.nodes.iter().enumerate() {
            let mut names: Vec<&str> = n.props.iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(self.node_at(id).err(w[0], Problem::Duplicate));
            }
            let mut kids: Vec<(&str, usize)> = n
                .children
                .iter()
                .map(|&c| (self.nodes[c].name, c))
                .collect();
            kids.sort_unstable();
            if let Some(w) = kids.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(DtError::Blob {
                    offset: raw.get(w[1].1).map_or(0, |r| r.offset),
                    problem: BlobProblem::DuplicateNode(self.nodes[w[1].1].path.clone()),
                });
            }
        }
        Ok(())
    }

    fn index_phandles(&mut self) -> Result<(), DtError> {
        let mut map: BTreeMap<u32, usize> = BTreeMap::new();
        for id in 0..self.nodes.len() {
            let node = self.node_at(id);
            let ph = node.phandle_property("phandle")?;
            let legacy = node.phandle_property("linux,phandle")?;
            let value = match (ph, legacy) {
                (Some(a), Some(b)) if a != b => {
                    return Err(node.err("phandle", Problem::Conflicts("linux,phandle".into())));
                }
                (a, b) => a.or(b),
            };
            if let Some(v) = value {
                if let Some(&other) = map.get(&v) {
                    return Err(node.err(
                        "phandle",
                        Problem::DuplicatePhandle {
                            phandle: v,
                            other: self.nodes[other].path.clone(),
                        },
                    ));
                }
                map.insert(v, id);
                self.nodes[id].phandle = Some(v);
            }
        }
        self.phandles = map;
        Ok(())
    }

    fn node_at(&self, id: usize) -> Node<'_> {
        Node { dt: self, id }
    }

    /// The blob, cut to its header's `totalsize`.
    pub fn blob(&self) -> &'a [u8] {
        self.blob
    }

    /// The `/memreserve/` entries of the blob header as CPU physical ranges (zero-sized entries
    /// skipped, sizes clipped so a range never wraps past the top of the address space).
    pub fn memory_reservations(&self) -> Vec<Range<PhysAddr>> {
        self.reservations
            .iter()
            .filter(|(_, size)| *size > 0)
            .map(|&(addr, size)| Range::new(PhysAddr(addr), size.min(u64::MAX - addr)))
            .collect()
    }

    /// The root node.
    pub fn root(&self) -> Node<'_> {
        self.node_at(0)
    }

    /// The node with this full path (`/soc/uart@1000`; unit addresses are part of the name).
    pub fn find(&self, path: &str) -> Option<Node<'_>> {
        let mut node = self.root();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node.child(part)?;
        }
        path.starts_with('/').then_some(node)
    }

    /// Like [`find`](Self::find), with an error naming the path.
    pub fn node(&self, path: &str) -> Result<Node<'_>, DtError> {
        self.find(path).ok_or_else(|| DtError::NoNode(path.into()))
    }

    /// Every node, depth first in blob order, the root first.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> + '_ {
        (0..self.nodes.len()).map(|id| self.node_at(id))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a valid tree has a root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node whose `phandle` (or `linux,phandle`) is `phandle`.
    pub fn by_phandle(&self, phandle: u32) -> Option<Node<'_>> {
        self.phandles.get(&phandle).map(|&id| self.node_at(id))
    }

    /// Nodes whose `compatible` list contains `compat`.
    pub fn compatible<'s>(&'s self, compat: &'s str) -> impl Iterator<Item = Node<'s>> + 's {
        self.nodes().filter(move |n| n.is_compatible(compat))
    }

    /// The node an `/aliases` entry names, `None` when there is no such alias.
    pub fn alias(&self, name: &str) -> Result<Option<Node<'_>>, DtError> {
        let Some(aliases) = self.find("/aliases") else {
            return Ok(None);
        };
        match aliases.string(name)? {
            None => Ok(None),
            Some(path) => self.node(path).map(Some),
        }
    }
}

/// The `status` of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<'t> {
    /// `"okay"`, the legacy `"ok"`, or no `status` at all: the device is usable.
    Okay,
    /// `"disabled"`: present but not usable now.
    Disabled,
    /// `"reserved"`: usable but owned by other software.
    Reserved,
    /// `"fail"` or `"fail-<condition>"`: broken.
    Fail(&'t str),
}

/// A handle on one node. Cheap to copy; compares equal to handles on the same node.
#[derive(Clone, Copy)]
pub struct Node<'t> {
    dt: &'t DeviceTree<'t>,
    id: usize,
}

impl PartialEq for Node<'_> {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::eq(self.dt, other.dt) && self.id == other.id
    }
}

impl Eq for Node<'_> {}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({})", self.path())
    }
}

impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// Big-endian cells of a property value.
pub(crate) fn to_cells(value: &[u8]) -> Option<Vec<u32>> {
    if !value.len().is_multiple_of(4) {
        return None;
    }
    Some(
        value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// The number in up to four cells, most significant first.
pub(crate) fn number(cells: &[u32]) -> u128 {
    cells
        .iter()
        .fold(0u128, |acc, &c| (acc << 32) | u128::from(c))
}

impl<'t> Node<'t> {
    fn data(&self) -> &'t NodeData<'t> {
        &self.dt.nodes[self.id]
    }

    /// An error about `property` of this node.
    pub fn err(&self, property: &str, problem: Problem) -> DtError {
        DtError::Property {
            node: self.path().into(),
            property: property.into(),
            problem,
        }
    }

    /// The tree this node belongs to.
    pub fn tree(&self) -> &'t DeviceTree<'t> {
        self.dt
    }

    /// Name with unit address (`uart@9000000`); `""` for the root.
    pub fn name(&self) -> &'t str {
        self.data().name
    }

    /// Name without unit address (`uart`).
    pub fn base_name(&self) -> &'t str {
        let name = self.name();
        name.split_once('@').map_or(name, |(base, _)| base)
    }

    /// The unit address (`9000000`), if the name has one.
    pub fn unit_address(&self) -> Option<&'t str> {
        self.name().split_once('@').map(|(_, unit)| unit)
    }

    /// Full path (`/soc/uart@9000000`, `/` for the root).
    pub fn path(&self) -> &'t str {
        &self.data().path
    }

    /// True for the root node.
    pub fn is_root(&self) -> bool {
        self.id == 0
    }

    /// The parent, `None` for the root.
    pub fn parent(&self) -> Option<Node<'t>> {
        self.data().parent.map(|id| Node { dt: self.dt, id })
    }

    /// Parent, grandparent, ... up to the root.
    pub fn ancestors(&self) -> impl Iterator<Item = Node<'t>> + 't {
        let mut cur = self.parent();
        core::iter::from_fn(move || {
            let n = cur?;
            cur = n.parent();
            Some(n)
        })
    }

    /// This node, then its ancestors up to the root.
    pub fn self_and_ancestors(&self) -> impl Iterator<Item = Node<'t>> + 't {
        core::iter::once(*self).chain(self.ancestors())
    }

    /// Children in blob order.
    pub fn children(&self) -> impl Iterator<Item = Node<'t>> + 't {
        let dt = self.dt;
        self.data().children.iter().map(move |&id| Node { dt, id })
    }

    /// The child with this name (including unit address).
    pub fn child(&self, name: &str) -> Option<Node<'t>> {
        self.children().find(|c| c.name() == name)
    }

    /// Raw value of a property.
    pub fn property(&self, name: &str) -> Option<&'t [u8]> {
        self.data()
            .props
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// True when the node has the property (with or without a value).
    pub fn has_property(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// Every property: (name, raw value), in blob order.
    pub fn properties(&self) -> impl Iterator<Item = (&'t str, &'t [u8])> + 't {
        self.data().props.iter().copied()
    }

    /// A boolean property: present and empty = true, absent = false, with a value = error.
    pub fn flag(&self, name: &str) -> Result<bool, DtError> {
        match self.property(name) {
            None => Ok(false),
            Some([]) => Ok(true),
            Some(v) => Err(self.err(name, Problem::NotEmpty(v.len()))),
        }
    }

    /// The property as cells; `None` when absent.
    pub fn cells(&self, name: &str) -> Result<Option<Vec<u32>>, DtError> {
        self.property(name)
            .map(|v| to_cells(v).ok_or_else(|| self.err(name, Problem::NotCells(v.len()))))
            .transpose()
    }

    /// A one-cell property; `None` when absent.
    pub fn u32(&self, name: &str) -> Result<Option<u32>, DtError> {
        // Read in place: `#address-cells` and friends are looked up on every `reg`.
        match self.property(name) {
            None => Ok(None),
            Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
            Some(v) if !v.len().is_multiple_of(4) => {
                Err(self.err(name, Problem::NotCells(v.len())))
            }
            Some(v) => Err(self.err(
                name,
                Problem::WrongLength {
                    cells: v.len() / 4,
                    expected: 1,
                },
            )),
        }
    }

    /// A string list property; empty when absent.
    pub fn strings(&self, name: &str) -> Result<Vec<&'t str>, DtError> {
        let Some(v) = self.property(name) else {
            return Ok(Vec::new());
        };
        let bad = || self.err(name, Problem::NotString);
        let body = v.strip_suffix(&[0]).ok_or_else(bad)?;
        body.split(|&b| b == 0)
            .map(|s| core::str::from_utf8(s).map_err(|_| bad()))
            .collect()
    }

    /// A string property (the first string of a list); `None` when absent.
    pub fn string(&self, name: &str) -> Result<Option<&'t str>, DtError> {
        if !self.has_property(name) {
            return Ok(None);
        }
        Ok(self.strings(name)?.first().copied())
    }

    /// The `compatible` list, most specific first; empty when absent.
    pub fn compatible(&self) -> Result<Vec<&'t str>, DtError> {
        self.strings("compatible")
    }

    /// True when `compatible` contains `compat`. A malformed `compatible` matches nothing
    /// ([`compatible`](Self::compatible) reports it).
    pub fn is_compatible(&self, compat: &str) -> bool {
        // Compared in place, without building the list: driver matching asks this of every
        // node. Well-formed means NUL-terminated UTF-8, as `strings` requires.
        let Some(body) = self
            .property("compatible")
            .and_then(|v| v.strip_suffix(&[0]))
        else {
            return false;
        };
        core::str::from_utf8(body).is_ok()
            && body.split(|&b| b == 0).any(|s| s == compat.as_bytes())
    }

    /// `device_type`.
    pub fn device_type(&self) -> Result<Option<&'t str>, DtError> {
        self.string("device_type")
    }

    /// The raw `status` string, `None` when absent.
    pub fn status_str(&self) -> Result<Option<&'t str>, DtError> {
        self.string("status")
    }

    /// `status`, absent = okay.
    pub fn status(&self) -> Result<Status<'t>, DtError> {
        Ok(match self.status_str()? {
            None | Some("okay" | "ok") => Status::Okay,
            Some("disabled") => Status::Disabled,
            Some("reserved") => Status::Reserved,
            Some(s) if s == "fail" || s.starts_with("fail-") => Status::Fail(s),
            Some(s) => return Err(self.err("status", Problem::UnknownStatus(s.into()))),
        })
    }

    /// True when `status` is okay (or absent).
    pub fn is_enabled(&self) -> Result<bool, DtError> {
        Ok(self.status()? == Status::Okay)
    }

    fn phandle_property(&self, name: &str) -> Result<Option<u32>, DtError> {
        match self.u32(name)? {
            Some(v @ (0 | u32::MAX)) => Err(self.err(name, Problem::BadPhandle(v))),
            v => Ok(v),
        }
    }

    /// This node's phandle (`phandle`, or the legacy `linux,phandle`).
    pub fn phandle(&self) -> Option<u32> {
        self.data().phandle
    }

    /// The node `phandle` points at; the error names this node and `property`.
    pub fn resolve(&self, property: &str, phandle: u32) -> Result<Node<'t>, DtError> {
        self.dt
            .by_phandle(phandle)
            .ok_or_else(|| self.err(property, Problem::Dangling(phandle)))
    }

    fn cell_count(&self, name: &'static str, default: u32, max: u32) -> Result<u32, DtError> {
        match self.u32(name)? {
            None => Ok(default),
            Some(v) if v <= max => Ok(v),
            Some(v) => Err(self.err(name, Problem::TooManyCells { value: v, max })),
        }
    }

    /// `#address-cells` for this node's children (default 2).
    pub fn address_cells(&self) -> Result<u32, DtError> {
        self.cell_count("#address-cells", 2, MAX_ADDRESS_CELLS)
    }

    /// `#size-cells` for this node's children (default 1).
    pub fn size_cells(&self) -> Result<u32, DtError> {
        self.cell_count("#size-cells", 1, MAX_ADDRESS_CELLS)
    }

    /// A specifier-size property such as `#iommu-cells`: `None` when absent.
    pub fn specifier_cells(&self, name: &'static str) -> Result<Option<u32>, DtError> {
        match self.u32(name)? {
            Some(v) if v > MAX_SPECIFIER_CELLS => Err(self.err(
                name,
                Problem::TooManyCells {
                    value: v,
                    max: MAX_SPECIFIER_CELLS,
                },
            )),
            v => Ok(v),
        }
    }

    /// True for a PCI bus node: `device_type = "pci"` (or `"pciex"`) with 3 address cells.
    /// Addresses below it are `phys.hi phys.mid phys.lo`, and only the low 64 bits are an
    /// address.
    pub fn is_pci_bus(&self) -> Result<bool, DtError> {
        Ok(matches!(self.device_type()?, Some("pci" | "pciex")) && self.address_cells()? == 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_big_endian_words() {
        assert_eq!(
            to_cells(&[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]),
            Some(vec![1, 0xdead_beef])
        );
        assert_eq!(to_cells(&[]), Some(vec![]));
        assert_eq!(to_cells(&[1, 2, 3]), None);
    }

    #[test]
    fn numbers_fold_most_significant_first() {
        assert_eq!(number(&[]), 0);
        assert_eq!(number(&[0x1, 0x2]), 0x1_0000_0002);
        assert_eq!(
            number(&[0x0200_0000, 0x1, 0x2]),
            (0x0200_0000u128 << 64) | 0x1_0000_0002
        );
        assert_eq!(number(&[u32::MAX; 4]), u128::MAX);
    }
}
