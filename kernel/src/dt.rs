//! The device-tree facts the kernel core needs before any driver runs: RAM, reservations, the
//! console, the interrupt controller, the timer, PSCI, and which ranges are device registers.
//! Everything is read through the `of` crate, which validates the blob first; a property that
//! does not parse is reported with its node and name.

use alloc::string::String;
use alloc::vec::Vec;

use kapi::irq::{IrqLine, Trigger};
use of::{DtError, Node};

use crate::arch::psci::Conduit;

/// A physical address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl From<addr::Range<addr::PhysAddr>> for MemRange {
    fn from(r: addr::Range<addr::PhysAddr>) -> Self {
        Self {
            base: r.start.0,
            size: r.size,
        }
    }
}

/// The boot device tree.
pub struct DeviceTree {
    tree: &'static of::DeviceTree<'static>,
    /// Where the loader put the blob (the parsed copy may live elsewhere, see [`Self::new`]).
    loaded: MemRange,
}

/// Converts a decoded GIC interrupt.
pub fn irq_line(irq: of::GicIrq) -> IrqLine {
    IrqLine {
        intid: irq.intid,
        trigger: match irq.trigger {
            of::Trigger::Edge => Trigger::Edge,
            of::Trigger::Level => Trigger::Level,
        },
    }
}

fn warn(e: &DtError) {
    log::warn!(target: "of", "{e} (ignored)");
}

impl DeviceTree {
    /// Validates and indexes the blob the loader handed over (see [`crate::mm::loader_blob`]).
    /// The index lives for the kernel's lifetime and is published to drivers (`of::boot_tree`).
    ///
    /// A blob with `FDT_NOP` tokens is read from a compacted copy: QEMU leaves them in a tree
    /// given with `-dtb` (it replaces the memory node and `/psci` through libfdt), and `of`
    /// parses none.
    pub fn new(blob: &'static [u8]) -> Result<Self, DtError> {
        let loaded = MemRange {
            base: blob.as_ptr() as u64,
            size: blob.len() as u64,
        };
        let parsed = match of::DeviceTree::parse(blob) {
            Err(DtError::Blob {
                problem: of::BlobProblem::Nop,
                ..
            }) => match of::without_nops(blob)? {
                Some(copy) => {
                    of::DeviceTree::parse(alloc::boxed::Box::leak(copy.into_boxed_slice()))?
                }
                None => of::DeviceTree::parse(blob)?,
            },
            other => other?,
        };
        let tree: &'static of::DeviceTree<'static> =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(parsed));
        of::set_boot_tree(tree);
        Ok(Self { tree, loaded })
    }

    /// The `of` view.
    pub fn tree(&self) -> &'static of::DeviceTree<'static> {
        self.tree
    }

    /// Where the loader put the blob, and its size: the memory to keep reserved.
    pub fn blob_range(&self) -> MemRange {
        self.loaded
    }

    /// `/model`.
    pub fn model(&self) -> &'static str {
        self.tree
            .root()
            .string("model")
            .ok()
            .flatten()
            .unwrap_or("unknown machine")
    }

    /// `/chosen/bootargs`.
    pub fn bootargs(&self) -> &'static str {
        self.tree
            .find("/chosen")
            .and_then(|c| c.string("bootargs").ok().flatten())
            .unwrap_or("")
    }

    /// The console's registers, and where they were found: the PL011 that
    /// `/chosen/stdout-path` names (an alias or a path; options after `:` ignored), or, when the
    /// tree has no usable `stdout-path`, the first enabled `arm,pl011` node.
    pub fn console_pl011(&self) -> Option<(MemRange, ConsoleSource)> {
        let regs = |n: Node<'_>| n.reg().ok()?.first().map(|r| MemRange::from(*r));
        let named = self
            .tree
            .find("/chosen")
            .and_then(|c| c.string("stdout-path").ok().flatten())
            .and_then(|p| p.split(':').next())
            .and_then(|p| {
                if p.starts_with('/') {
                    self.tree.find(p)
                } else {
                    self.tree.alias(p).ok().flatten()
                }
            });
        if let Some(n) = named.filter(|n| n.is_compatible("arm,pl011")) {
            return regs(n).map(|r| (r, ConsoleSource::StdoutPath));
        }
        self.tree
            .nodes()
            .filter(|n| n.is_compatible("arm,pl011") && n.is_enabled().unwrap_or(false))
            .find_map(regs)
            .map(|r| (r, ConsoleSource::FirstPl011))
    }

    fn is_memory(n: &Node<'_>) -> bool {
        n.device_type().ok().flatten() == Some("memory")
    }

    /// RAM from every `device_type = "memory"` node under the root.
    pub fn memory(&self) -> Vec<MemRange> {
        let mut out = Vec::new();
        for n in self.tree.root().children().filter(Self::is_memory) {
            match n.reg() {
                Ok(regs) => out.extend(regs.into_iter().filter(|r| r.size > 0).map(MemRange::from)),
                Err(e) => warn(&e),
            }
        }
        out
    }

    /// `/memreserve/` entries of the blob header.
    pub fn memreserve(&self) -> Vec<MemRange> {
        self.tree
            .memory_reservations()
            .into_iter()
            .map(MemRange::from)
            .collect()
    }

    /// `/reserved-memory` children: (name, range, no-map).
    pub fn reserved_memory(&self) -> Vec<(String, MemRange, bool)> {
        let Some(rm) = self.tree.find("/reserved-memory") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for n in rm.children() {
            match n.reg() {
                Ok(regs) => {
                    let no_map = n.has_property("no-map");
                    out.extend(
                        regs.into_iter()
                            .map(|r| (String::from(n.name()), MemRange::from(r), no_map)),
                    );
                }
                Err(e) => warn(&e),
            }
        }
        out
    }

    /// `/psci` conduit.
    pub fn psci_conduit(&self) -> Option<Conduit> {
        let psci = self.tree.root().children().find(|n| {
            n.compatible()
                .is_ok_and(|c| c.iter().any(|s| s.starts_with("arm,psci")))
        })?;
        match psci.string("method").ok()?? {
            "hvc" => Some(Conduit::Hvc),
            "smc" => Some(Conduit::Smc),
            _ => None,
        }
    }

    fn enabled_compatible(&self, compat: &'static str) -> Option<Node<'static>> {
        self.tree
            .compatible(compat)
            .find(|n| n.is_enabled().unwrap_or(false))
    }

    /// GICv3 distributor and redistributor ranges.
    pub fn gic_v3(&self) -> Option<(MemRange, MemRange)> {
        let regs = self.enabled_compatible("arm,gic-v3")?.reg().ok()?;
        Some(((*regs.first()?).into(), (*regs.get(1)?).into()))
    }

    /// The GICv3 ITS register frames (control + translation), if there is an enabled ITS.
    pub fn gic_its(&self) -> Option<MemRange> {
        self.enabled_compatible("arm,gic-v3-its")?
            .reg()
            .ok()?
            .first()
            .map(|r| MemRange::from(*r))
    }

    /// Interrupt `index` of the `arm,armv8-timer` node, whose four are, in order: secure
    /// physical, non-secure physical, virtual, hypervisor.
    fn timer_irq(&self, index: usize) -> Option<IrqLine> {
        let irqs = self
            .enabled_compatible("arm,armv8-timer")?
            .gic_interrupts()
            .ok()?;
        irqs.get(index).copied().map(irq_line)
    }

    /// The EL1 physical timer's interrupt (the profiler's).
    pub fn physical_timer_irq(&self) -> Option<IrqLine> {
        self.timer_irq(1)
    }

    /// The EL1 virtual timer's interrupt (the kernel's clock).
    pub fn virtual_timer_irq(&self) -> Option<IrqLine> {
        self.timer_irq(2)
    }

    /// Every register range named in the tree and every PCI host window: what the kernel maps
    /// as device memory. RAM, reserved memory, CPUs and anything below a PCI bus (whose `reg` is
    /// a config-space address) are not device ranges.
    pub fn device_ranges(&self) -> Vec<MemRange> {
        let mut out = Vec::new();
        for n in self.tree.nodes() {
            if n.is_root() || Self::is_memory(&n) {
                continue;
            }
            let path = n.path();
            if path.starts_with("/reserved-memory")
                || path.starts_with("/cpus")
                || path == "/chosen"
            {
                continue;
            }
            if n.parent().is_some_and(|p| p.is_pci_bus().unwrap_or(false)) || !n.has_property("reg")
            {
                continue;
            }
            match n.reg() {
                Ok(regs) => out.extend(regs.into_iter().filter(|r| r.size > 0).map(MemRange::from)),
                Err(e) => warn(&e),
            }
            if n.is_pci_bus().unwrap_or(false) {
                match n.pci_windows() {
                    Ok(ws) => out.extend(
                        ws.iter()
                            .filter(|w| w.space != of::PciSpace::Config && w.size > 0)
                            .map(|w| MemRange {
                                base: w.cpu.0,
                                size: w.size,
                            }),
                    ),
                    Err(e) => warn(&e),
                }
            }
        }
        out
    }
}

/// How the console was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleSource {
    /// `/chosen/stdout-path` names it.
    StdoutPath,
    /// No usable `stdout-path`: the first enabled `arm,pl011` node.
    FirstPl011,
}

impl ConsoleSource {
    /// For the boot log.
    pub fn describe(self) -> &'static str {
        match self {
            ConsoleSource::StdoutPath => "stdout-path",
            ConsoleSource::FirstPl011 => "first arm,pl011 node: no usable stdout-path",
        }
    }
}
