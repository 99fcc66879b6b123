//! Shared by the integration tests: the committed fixtures and a tiny FDT writer for blobs dtc
//! would refuse to produce.
#![allow(dead_code)]

use of::{DeviceTree, DtError, Node};

/// QEMU 10.0.2 `virt,gic-version=3,iommu=smmuv3` (`cargo xtask dtb`, profile `default`).
pub const QEMU: &[u8] = include_bytes!("../../../../../qemu/fixtures/default.dtb");
/// The same machine with `virtualization=on` (profile `el2`).
pub const QEMU_EL2: &[u8] = include_bytes!("../../../../../qemu/fixtures/el2.dtb");
/// Hand-written fixtures (sources next to them in `tests/fixtures/`).
pub const IOMMU: &[u8] = include_bytes!("../fixtures/iommu.dtb");
pub const DMA: &[u8] = include_bytes!("../fixtures/dma.dtb");
pub const DMA_ROOT: &[u8] = include_bytes!("../fixtures/dma-root.dtb");
pub const DMA_TOPOLOGY: &[u8] = include_bytes!("../fixtures/dma-topology.dtb");
pub const BUS: &[u8] = include_bytes!("../fixtures/bus.dtb");
pub const MALFORMED: &[u8] = include_bytes!("../fixtures/malformed.dtb");
pub const RESERVED: &[u8] = include_bytes!("../fixtures/reserved.dtb");

/// Every committed blob, with its name.
pub const ALL: &[(&str, &[u8])] = &[
    ("qemu default", QEMU),
    ("qemu el2", QEMU_EL2),
    ("iommu", IOMMU),
    ("dma", DMA),
    ("dma-root", DMA_ROOT),
    ("dma-topology", DMA_TOPOLOGY),
    ("bus", BUS),
    ("malformed", MALFORMED),
    ("reserved", RESERVED),
];

pub fn parse(blob: &[u8]) -> DeviceTree<'_> {
    match DeviceTree::parse(blob) {
        Ok(dt) => dt,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

pub fn node<'t>(dt: &'t DeviceTree<'_>, path: &str) -> Node<'t> {
    match dt.node(path) {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    }
}

/// The error's message, or a panic naming what unexpectedly succeeded.
pub fn message<T: core::fmt::Debug>(r: Result<T, DtError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

pub const BEGIN_NODE: u32 = 1;
pub const END_NODE: u32 = 2;
pub const PROP: u32 = 3;
pub const NOP: u32 = 4;
pub const END: u32 = 9;

/// Writes a version-17 FDT token by token; nothing is checked, so it can write broken blobs.
#[derive(Default)]
pub struct Writer {
    structure: Vec<u8>,
    strings: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn token(&mut self, t: u32) -> &mut Self {
        self.structure.extend_from_slice(&t.to_be_bytes());
        self
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.structure.extend_from_slice(bytes);
        self
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    pub fn begin(&mut self, name: &str) -> &mut Self {
        self.begin_bytes(name.as_bytes())
    }

    pub fn begin_bytes(&mut self, name: &[u8]) -> &mut Self {
        self.token(BEGIN_NODE);
        self.structure.extend_from_slice(name);
        self.structure.push(0);
        self.pad();
        self
    }

    pub fn end(&mut self) -> &mut Self {
        self.token(END_NODE)
    }

    /// Offset of `name` in the strings block (added on first use).
    pub fn string(&mut self, name: &[u8]) -> u32 {
        let mut at = 0;
        for s in self.strings.split(|&b| b == 0) {
            if s == name && at < self.strings.len() {
                return at as u32;
            }
            at += s.len() + 1;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name);
        self.strings.push(0);
        off
    }

    pub fn prop_at(&mut self, nameoff: u32, value: &[u8]) -> &mut Self {
        self.token(PROP);
        self.token(value.len() as u32);
        self.token(nameoff);
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let off = self.string(name.as_bytes());
        self.prop_at(off, value)
    }

    pub fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &v)
    }

    pub fn str(&mut self, name: &str, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.prop(name, &v)
    }

    pub fn raw_strings(&mut self, bytes: &[u8]) -> &mut Self {
        self.strings.extend_from_slice(bytes);
        self
    }

    /// The blob: header, empty reservation map, structure block (as written, plus `FDT_END`
    /// when `end` is set), strings block.
    pub fn finish_with(&self, end: bool) -> Vec<u8> {
        let mut structure = self.structure.clone();
        if end {
            structure.extend_from_slice(&END.to_be_bytes());
        }
        let off_rsv = 40u32;
        let off_struct = off_rsv + 16;
        let off_strings = off_struct + structure.len() as u32;
        let total = off_strings + self.strings.len() as u32;
        let header = [
            0xd00d_feed,
            total,
            off_struct,
            off_strings,
            off_rsv,
            17,
            16,
            0,
            self.strings.len() as u32,
            structure.len() as u32,
        ];
        let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
        blob.extend_from_slice(&[0; 16]);
        blob.extend_from_slice(&structure);
        blob.extend_from_slice(&self.strings);
        blob
    }

    pub fn finish(&self) -> Vec<u8> {
        self.finish_with(true)
    }
}

/// Sets header word `index` (0 = magic .. 9 = size_dt_struct).
pub fn set_header(blob: &mut [u8], index: usize, value: u32) {
    blob[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
}

pub fn header(blob: &[u8], index: usize) -> u32 {
    u32::from_be_bytes(blob[index * 4..index * 4 + 4].try_into().unwrap())
}
