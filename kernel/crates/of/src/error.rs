//! [`DtError`]: everything that can be wrong with a device tree, located precisely.
//!
//! A blob that is not a well-formed FDT gives [`DtError::Blob`] with the byte offset. Every
//! other error names the node by its full path and the property, so a log line like
//! `/pcie@10000000: iommu-map: 7 cells is not a multiple of 4` is enough to fix the source.

use alloc::string::String;
use core::fmt;

/// A device-tree error. The one error type of this crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The blob is not a well-formed flattened device tree.
    Blob {
        /// Byte offset from the start of the blob.
        offset: usize,
        /// What is wrong there.
        problem: BlobProblem,
    },
    /// No node has this path.
    NoNode(String),
    /// A property is missing, malformed, or inconsistent with the rest of the tree.
    Property {
        /// Full path of the node that holds (or lacks) the property.
        node: String,
        /// The property.
        property: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// What is wrong with the blob's structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobProblem {
    /// Shorter than the 40-byte header.
    TooSmall(usize),
    /// The magic number is not 0xd00dfeed.
    BadMagic(u32),
    /// The header's `totalsize` does not fit the buffer.
    TotalSize {
        /// `totalsize` from the header.
        total: u32,
        /// Bytes available.
        available: usize,
    },
    /// A version this crate cannot read (it needs version 17 fields).
    Version {
        /// `version` from the header.
        version: u32,
        /// `last_comp_version` from the header.
        last_compatible: u32,
    },
    /// A block lies (partly) outside the blob or inside the header.
    BlockOutside {
        /// Which block.
        block: Block,
        /// Its offset from the header.
        offset: u32,
        /// Its size from the header.
        size: u32,
    },
    /// A block is not aligned as the specification requires.
    Misaligned(Block),
    /// The memory reservation block has no terminating all-zero entry.
    ReservationsUnterminated,
    /// An unknown token in the structure block.
    Token(u32),
    /// `FDT_NOP`: valid in the format, but the `fdt` crate mis-walks it, so it is refused.
    Nop,
    /// The structure block ends in the middle of a token.
    Truncated,
    /// A node name without its NUL terminator.
    NameUnterminated,
    /// A node name that is not UTF-8.
    NameNotUtf8,
    /// An empty non-root node name, a name with `/` or a control character, or a named root.
    BadNodeName(String),
    /// Two siblings with the same name.
    DuplicateNode(String),
    /// `FDT_PROP` outside any node.
    PropertyOutsideNode,
    /// `FDT_PROP` after the node's first child (the format puts properties first).
    PropertyAfterChild,
    /// A property whose value runs past the end of the structure block.
    PropertyTooLong(u32),
    /// A property name offset outside the strings block.
    NameOffset(u32),
    /// A property name that is not NUL-terminated inside the strings block.
    StringUnterminated(u32),
    /// A property name that is not UTF-8.
    StringNotUtf8(u32),
    /// A property name with a control character (it would break the log line naming it).
    StringControl(u32),
    /// Nodes nested deeper than [`crate::MAX_DEPTH`].
    TooDeep,
    /// `FDT_END_NODE` with no node open.
    Unbalanced,
    /// No root node.
    NoRoot,
    /// A second node at the top level.
    SecondRoot,
    /// `FDT_END` while a node is open, or missing.
    BadEnd,
    /// The `fdt` crate walked the tree differently from the validator (a bug here).
    Inconsistent,
}

/// The blocks of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// The structure block (nodes and properties).
    Structure,
    /// The strings block (property names).
    Strings,
    /// The memory reservation block.
    Reservations,
}

/// What is wrong with a property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A required property is absent.
    Missing,
    /// The node has the property twice.
    Duplicate,
    /// A list property with no entries where at least one is required.
    Empty,
    /// The length is not a whole number of 32-bit cells.
    NotCells(usize),
    /// The number of cells is not a multiple of the entry size.
    NotMultiple {
        /// Cells in the property.
        cells: usize,
        /// Cells per entry.
        entry: usize,
    },
    /// The number of cells is not the one expected.
    WrongLength {
        /// Cells in the property.
        cells: usize,
        /// Cells expected.
        expected: usize,
    },
    /// A `*-names` list whose length differs from the list it names.
    NameCount {
        /// Names given.
        names: usize,
        /// Entries named.
        entries: usize,
    },
    /// A variable-size entry is cut short.
    Truncated {
        /// Index of the entry.
        entry: usize,
        /// Cells it needs.
        needed: usize,
        /// Cells left.
        left: usize,
    },
    /// A `#...-cells` value this crate refuses.
    TooManyCells {
        /// The value.
        value: u32,
        /// The largest accepted.
        max: u32,
    },
    /// Not a NUL-terminated UTF-8 string (list).
    NotString,
    /// A boolean property with a value.
    NotEmpty(usize),
    /// A `status` value outside the specification.
    UnknownStatus(String),
    /// Contradicts another property of the same node.
    Conflicts(String),
    /// A phandle value that cannot be a phandle (0 or 0xffffffff).
    BadPhandle(u32),
    /// Two nodes claim the same phandle.
    DuplicatePhandle {
        /// The phandle.
        phandle: u32,
        /// The other node.
        other: String,
    },
    /// A phandle that no node has.
    Dangling(u32),
    /// The referenced node lacks the property that sizes its specifiers.
    NoCellsProperty {
        /// The referenced node.
        target: String,
        /// The property it lacks (`#iommu-cells`, `#interrupt-cells`, ...).
        cells: &'static str,
    },
    /// An address or size does not fit in 64 bits.
    TooWide(u128),
    /// Entry `entry` has size (or length) 0.
    ZeroSize {
        /// Index of the entry.
        entry: usize,
    },
    /// Two entries overlap.
    Overlap {
        /// Index of the first entry.
        first: usize,
        /// Index of the second entry.
        second: usize,
    },
    /// Entry `entry` runs past the end of its address or ID space.
    Overflow {
        /// Index of the entry.
        entry: usize,
    },
    /// A bus on the way to the root has no `ranges`: addresses below it are not CPU addresses.
    Untranslatable {
        /// The bus without `ranges`.
        bus: String,
    },
    /// An address outside every window of a bus's `ranges` / `dma-ranges`.
    OutsideWindows {
        /// The address (or window start).
        address: u128,
        /// The bus whose windows miss it.
        bus: String,
    },
    /// The node has `interrupts` but no interrupt parent can be found.
    NoInterruptParent,
    /// `interrupt-parent` links form a loop.
    Loop,
    /// An interrupt controller that is not an Arm GIC was asked for a GIC interrupt.
    NotGic {
        /// The controller.
        controller: String,
    },
    /// A GIC specifier whose type/number is out of range.
    BadGicInterrupt {
        /// First cell (0 = SPI, 1 = PPI, 2 = extended SPI, 3 = extended PPI).
        kind: u32,
        /// Second cell.
        number: u32,
    },
    /// A GIC specifier whose trigger bits are neither edge (1, 2) nor level (4, 8).
    BadTrigger(u32),
    /// An interrupt-map lookup given a unit address or specifier of the wrong size.
    QueryCells {
        /// Cells given.
        given: usize,
        /// Cells the nexus uses.
        expected: usize,
    },
    /// No `interrupt-map` entry of the nexus matches the interrupt.
    NoMapEntry {
        /// The nexus.
        nexus: String,
    },
    /// `interrupt-map` nexuses nested deeper than this crate follows.
    TooManyNexuses,
    /// `bus-range` with start > end or end > 255.
    BadBusRange {
        /// First bus.
        start: u32,
        /// Last bus.
        end: u32,
    },
    /// A PCI helper used on a node whose `#address-cells` is not 3.
    NotPci(u32),
    /// A reserved-memory region with neither `reg` nor `iommu-addresses`.
    NoRegionAddress,
    /// An `iommu-addresses` entry of size 0 (skipped).
    EmptyIovaRange {
        /// Index of the entry.
        entry: usize,
    },
    /// An `iommu-addresses` entry that is not the region's own physical range: only a 1:1
    /// mapping is supported, so the IOVA range is reserved and nothing is mapped.
    NotIdentity {
        /// Index of the entry.
        entry: usize,
        /// The entry's IOVA.
        iova: u64,
        /// Its size.
        size: u64,
        /// The region's physical address (`reg`).
        pa: u64,
        /// The region's size.
        pa_size: u64,
    },
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Blob { offset, problem } => {
                write!(f, "device tree blob: offset {offset:#x}: {problem}")
            }
            DtError::NoNode(path) => write!(f, "{path}: no such node"),
            DtError::Property {
                node,
                property,
                problem,
            } => write!(f, "{node}: {property}: {problem}"),
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Block::Structure => "structure block",
            Block::Strings => "strings block",
            Block::Reservations => "memory reservation block",
        })
    }
}

impl fmt::Display for BlobProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BlobProblem as B;
        match self {
            B::TooSmall(n) => write!(f, "{n} bytes is smaller than the 40-byte header"),
            B::BadMagic(m) => write!(f, "magic {m:#010x} is not 0xd00dfeed"),
            B::TotalSize { total, available } => write!(
                f,
                "totalsize {total:#x} does not fit the {available:#x} bytes given"
            ),
            B::Version {
                version,
                last_compatible,
            } => write!(
                f,
                "version {version} (last compatible {last_compatible}) is not readable as version 17"
            ),
            B::BlockOutside {
                block,
                offset,
                size,
            } => write!(
                f,
                "the {block} ({offset:#x} + {size:#x}) lies outside the blob"
            ),
            B::Misaligned(block) => write!(f, "the {block} is misaligned"),
            B::ReservationsUnterminated => {
                f.write_str("the memory reservation block has no terminating entry")
            }
            B::Token(t) => write!(f, "unknown token {t:#x}"),
            B::Nop => f.write_str("FDT_NOP tokens are not supported"),
            B::Truncated => f.write_str("the structure block ends inside a token"),
            B::NameUnterminated => f.write_str("node name without NUL terminator"),
            B::NameNotUtf8 => f.write_str("node name is not UTF-8"),
            B::BadNodeName(n) => write!(f, "bad node name {n:?}"),
            B::DuplicateNode(p) => write!(f, "two nodes are called {p}"),
            B::PropertyOutsideNode => f.write_str("property outside any node"),
            B::PropertyAfterChild => f.write_str("property after a child node"),
            B::PropertyTooLong(len) => {
                write!(f, "property length {len:#x} runs past the structure block")
            }
            B::NameOffset(off) => {
                write!(
                    f,
                    "property name offset {off:#x} is outside the strings block"
                )
            }
            B::StringUnterminated(off) => {
                write!(f, "property name at {off:#x} is not NUL-terminated")
            }
            B::StringNotUtf8(off) => write!(f, "property name at {off:#x} is not UTF-8"),
            B::StringControl(off) => {
                write!(f, "property name at {off:#x} has a control character")
            }
            B::TooDeep => write!(f, "nodes nested deeper than {}", crate::MAX_DEPTH),
            B::Unbalanced => f.write_str("FDT_END_NODE without an open node"),
            B::NoRoot => f.write_str("no root node"),
            B::SecondRoot => f.write_str("a second top-level node"),
            B::BadEnd => f.write_str("FDT_END missing or inside a node"),
            B::Inconsistent => f.write_str("the fdt crate walked a different tree"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Problem as P;
        match self {
            P::Missing => f.write_str("missing"),
            P::Duplicate => f.write_str("appears twice"),
            P::Empty => f.write_str("is empty"),
            P::NotCells(len) => write!(f, "{len} bytes is not a whole number of cells"),
            P::NotMultiple { cells, entry } => {
                write!(f, "{cells} cells is not a multiple of {entry}")
            }
            P::WrongLength { cells, expected } => {
                write!(f, "{cells} cells where {expected} are expected")
            }
            P::NameCount { names, entries } => write!(f, "{names} names for {entries} entries"),
            P::Truncated {
                entry,
                needed,
                left,
            } => write!(f, "entry {entry} needs {needed} more cells, {left} left"),
            P::TooManyCells { value, max } => write!(f, "{value} cells (at most {max})"),
            P::NotString => f.write_str("not a NUL-terminated UTF-8 string"),
            P::NotEmpty(len) => write!(f, "boolean property has a {len}-byte value"),
            P::UnknownStatus(s) => write!(f, "unknown status {s:?}"),
            P::Conflicts(other) => write!(f, "contradicts {other}"),
            P::BadPhandle(v) => write!(f, "{v:#x} is not a valid phandle"),
            P::DuplicatePhandle { phandle, other } => {
                write!(f, "phandle {phandle:#x} is also the phandle of {other}")
            }
            P::Dangling(p) => write!(f, "phandle {p:#x} points nowhere"),
            P::NoCellsProperty { target, cells } => write!(f, "{target} has no {cells}"),
            P::TooWide(v) => write!(f, "{v:#x} does not fit in 64 bits"),
            P::ZeroSize { entry } => write!(f, "entry {entry} has size 0"),
            P::Overlap { first, second } => write!(f, "entries {first} and {second} overlap"),
            P::Overflow { entry } => write!(f, "entry {entry} runs past the end of its space"),
            P::Untranslatable { bus } => write!(
                f,
                "{bus} has no ranges, so addresses below it are not CPU addresses"
            ),
            P::OutsideWindows { address, bus } => {
                write!(f, "{address:#x} is outside every window of {bus}")
            }
            P::NoInterruptParent => f.write_str("no interrupt parent"),
            P::Loop => f.write_str("interrupt-parent links form a loop"),
            P::NotGic { controller } => write!(f, "{controller} is not an Arm GIC"),
            P::BadGicInterrupt { kind, number } => {
                write!(
                    f,
                    "GIC interrupt type {kind} number {number} is out of range"
                )
            }
            P::BadTrigger(flags) => write!(
                f,
                "flags {flags:#x}: trigger must be 1 or 2 (edge) or 4 or 8 (level)"
            ),
            P::QueryCells { given, expected } => {
                write!(f, "lookup with {given} cells, the map uses {expected}")
            }
            P::NoMapEntry { nexus } => write!(f, "no interrupt-map entry of {nexus} matches"),
            P::TooManyNexuses => f.write_str("interrupt-map nexuses nest too deep"),
            P::BadBusRange { start, end } => write!(f, "bus range {start}..={end} is invalid"),
            P::NotPci(cells) => {
                write!(f, "#address-cells is {cells}, not a PCI bus (3)")
            }
            P::NoRegionAddress => {
                f.write_str("missing, and the region has no reg either: nothing to map or reserve")
            }
            P::EmptyIovaRange { entry } => {
                write!(f, "entry {entry} has size 0: nothing to reserve, skipped")
            }
            P::NotIdentity {
                entry,
                iova,
                size,
                pa,
                pa_size,
            } => write!(
                f,
                "entry {entry}: IOVA [{iova:#x}-{:#x}] is not the region's reg [{pa:#x}-{:#x}]: \
                 only 1:1 mappings are supported, reserved instead (nothing mapped)",
                iova + (size - 1),
                pa + (pa_size - 1)
            ),
        }
    }
}
