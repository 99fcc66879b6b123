//! The few device-tree facts the kernel needs before any driver runs: RAM, reservations, the
//! console, the interrupt controller, the timer, PSCI, and which ranges are device registers.

use alloc::string::String;
use alloc::vec::Vec;

use fdt::Fdt;
use fdt::node::FdtNode;
use kapi::irq::{IrqLine, Trigger};

use crate::arch::psci::Conduit;

/// A physical address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Why the device tree could not be used at all.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // the fields show in Debug output
pub enum DtBootError {
    /// No FDT header (magic 0xd00dfeed) at the address `boot` was given.
    NoBlob(u64),
    /// The header's size is implausible.
    BadSize(u64),
    /// The header is there but the blob does not parse.
    Corrupt(u64),
}

/// The boot device tree.
pub struct DeviceTree {
    fdt: Fdt<'static>,
    blob: &'static [u8],
    addr: u64,
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    b.get(i * 4..i * 4 + 4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

fn cells(b: &[u8], at: usize, n: usize) -> Option<u64> {
    (0..n).try_fold(0u64, |acc, k| {
        Some((acc << 32) | u64::from(be32(b, at + k)?))
    })
}

impl DeviceTree {
    /// Parses the blob the loader handed over (see [`crate::mm::loader_blob`]).
    pub fn new(blob: &'static [u8]) -> Result<Self, DtBootError> {
        let addr = blob.as_ptr() as u64;
        let fdt = Fdt::new(blob).map_err(|_| DtBootError::Corrupt(addr))?;
        Ok(Self { fdt, blob, addr })
    }

    /// The blob's location and size.
    pub fn blob_range(&self) -> MemRange {
        MemRange {
            base: self.addr,
            size: self.fdt.total_size() as u64,
        }
    }

    /// The raw blob.
    pub fn blob(&self) -> &'static [u8] {
        self.blob
    }

    fn root(&self) -> Option<FdtNode<'_, 'static>> {
        self.fdt.find_node("/")
    }

    /// `/model`.
    pub fn model(&self) -> &str {
        self.root()
            .and_then(|r| r.property("model"))
            .and_then(|p| p.as_str())
            .unwrap_or("unknown machine")
    }

    /// `/chosen/bootargs`.
    pub fn bootargs(&self) -> &str {
        self.fdt
            .find_node("/chosen")
            .and_then(|c| c.property("bootargs"))
            .and_then(|p| p.as_str())
            .unwrap_or("")
    }

    fn reg_ranges(node: &FdtNode<'_, '_>) -> Vec<MemRange> {
        node.reg()
            .map(|it| {
                it.filter_map(|r| {
                    let size = r.size? as u64;
                    (size > 0).then_some(MemRange {
                        base: r.starting_address as u64,
                        size,
                    })
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// The console's registers, from `/chosen/stdout-path` (an alias or a path, options after
    /// `:` ignored), if it is a PL011.
    pub fn stdout_pl011(&self) -> Option<MemRange> {
        let path = self
            .fdt
            .find_node("/chosen")?
            .property("stdout-path")?
            .as_str()?;
        let path = path.split(':').next()?;
        let node = if path.starts_with('/') {
            self.fdt.find_node(path)?
        } else {
            let full = self.fdt.find_node("/aliases")?.property(path)?.as_str()?;
            self.fdt.find_node(full)?
        };
        node.compatible()?
            .all()
            .any(|c| c == "arm,pl011")
            .then_some(())?;
        Self::reg_ranges(&node).first().copied()
    }

    /// RAM from every `device_type = "memory"` node.
    pub fn memory(&self) -> Vec<MemRange> {
        let Some(root) = self.root() else {
            return Vec::new();
        };
        root.children()
            .filter(|n| n.property("device_type").and_then(|p| p.as_str()) == Some("memory"))
            .flat_map(|n| Self::reg_ranges(&n))
            .collect()
    }

    /// `/memreserve/` entries of the blob header.
    pub fn memreserve(&self) -> Vec<MemRange> {
        self.fdt
            .memory_reservations()
            .map(|r| MemRange {
                base: r.address() as u64,
                size: r.size() as u64,
            })
            .filter(|r| r.size > 0)
            .collect()
    }

    /// `/reserved-memory` children: (name, range, no-map).
    pub fn reserved_memory(&self) -> Vec<(String, MemRange, bool)> {
        let Some(rm) = self.fdt.find_node("/reserved-memory") else {
            return Vec::new();
        };
        rm.children()
            .flat_map(|n| {
                let no_map = n.property("no-map").is_some();
                let name = String::from(n.name);
                Self::reg_ranges(&n)
                    .into_iter()
                    .map(move |r| (name.clone(), r, no_map))
            })
            .collect()
    }

    /// `/psci` conduit.
    pub fn psci_conduit(&self) -> Option<Conduit> {
        let psci = self.root()?.children().find(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|s| s.starts_with("arm,psci")))
        })?;
        match psci.property("method")?.as_str()? {
            "hvc" => Some(Conduit::Hvc),
            "smc" => Some(Conduit::Smc),
            _ => None,
        }
    }

    fn find_compatible(&self, compat: &str) -> Option<FdtNode<'_, 'static>> {
        self.fdt.all_nodes().find(|n| {
            n.compatible().is_some_and(|c| c.all().any(|s| s == compat))
                && n.property("status")
                    .and_then(|p| p.as_str())
                    .is_none_or(|s| s == "okay" || s == "ok")
        })
    }

    /// GICv3 distributor and redistributor ranges.
    pub fn gic_v3(&self) -> Option<(MemRange, MemRange)> {
        let node = self.find_compatible("arm,gic-v3")?;
        let regs = Self::reg_ranges(&node);
        Some((*regs.first()?, *regs.get(1)?))
    }

    /// The EL1 virtual timer's interrupt (third entry of the `arm,armv8-timer` node).
    pub fn virtual_timer_irq(&self) -> Option<IrqLine> {
        let node = self.find_compatible("arm,armv8-timer")?;
        let v = node.property("interrupts")?.value;
        gic_irq(v, 2)
    }

    /// Every register range of the root's children and of PCI host bridge windows: what the
    /// kernel maps as device memory.
    pub fn device_ranges(&self) -> Vec<MemRange> {
        let mut out = Vec::new();
        let Some(root) = self.root() else { return out };
        for node in root.children() {
            let is_memory = node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
            if is_memory
                || node.name == "reserved-memory"
                || node.name == "cpus"
                || node.name == "chosen"
            {
                continue;
            }
            out.extend(Self::reg_ranges(&node));
            let is_pci = node.property("device_type").and_then(|p| p.as_str()) == Some("pci");
            if is_pci && let Some(ranges) = node.property("ranges") {
                // (phys.hi phys.mid phys.lo) (cpu addr, 2 cells) (size, 2 cells)
                let b = ranges.value;
                let n = b.len() / 28;
                for i in 0..n {
                    let at = i * 7;
                    if let (Some(cpu), Some(size)) = (cells(b, at + 3, 2), cells(b, at + 5, 2)) {
                        out.push(MemRange { base: cpu, size });
                    }
                }
            }
        }
        out
    }
}

/// Decodes entry `index` of a GIC three-cell `interrupts` property.
pub fn gic_irq(prop: &[u8], index: usize) -> Option<IrqLine> {
    let ty = be32(prop, index * 3)?;
    let num = be32(prop, index * 3 + 1)?;
    let flags = be32(prop, index * 3 + 2)?;
    let intid = match ty {
        0 => num + 32,
        1 => num + 16,
        _ => return None,
    };
    let trigger = if flags & 0x3 != 0 {
        Trigger::Edge
    } else {
        Trigger::Level
    };
    Some(IrqLine { intid, trigger })
}
