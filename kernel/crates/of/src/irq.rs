//! `interrupts`, `interrupts-extended`, `interrupt-parent`, `interrupt-names`, `interrupt-map`
//! and the Arm GIC three-cell specifier.
//!
//! Rules (DT spec 2.4, Linux `of_irq_find_parent` / `of_irq_parse_raw`):
//! - `interrupts-extended`, when present, wins over `interrupts`.
//! - The interrupt parent: follow `interrupt-parent` if the node has one, else go to the tree
//!   parent; repeat until the node reached has `#interrupt-cells`. A loop is an error.
//! - `interrupt-map` entries are: child unit address (the nexus's `#address-cells`, default 2),
//!   child specifier (the nexus's `#interrupt-cells`), parent phandle, parent unit address (the
//!   parent's own `#address-cells`, **default 0**, as Linux and dtc read it), parent specifier
//!   (the parent's `#interrupt-cells`). `interrupt-map-mask` (absent = all ones) is applied to
//!   both the lookup key and the entry. A result whose parent is itself a nexus (has
//!   `interrupt-map`, no `interrupt-controller`) is looked up again, up to
//!   [`MAX_NEXUS_DEPTH`] levels.
//! - GIC: cell 0 is the type (0 SPI: INTID 32 + n; 1 PPI: 16 + n; 2 extended SPI: 4096 + n;
//!   3 extended PPI: 1056 + n), cell 1 the number, cell 2 the flags whose bits 0..3 are
//!   1 / 2 = edge, 4 / 8 = level; anything else (including 0) is an error.

use alloc::vec::Vec;

use crate::error::{DtError, Problem};
use crate::iommu::phandle_args;
use crate::tree::Node;

/// How deep `interrupt-map` lookups follow nexus after nexus.
pub const MAX_NEXUS_DEPTH: usize = 8;

/// `compatible` strings of the Arm GIC bindings this crate decodes.
pub const GIC_COMPATIBLES: &[&str] = &[
    "arm,gic-v3",
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,arm11mp-gic",
    "arm,pl390",
];

/// How an interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge (rising or falling).
    Edge,
    /// Level (high or low).
    Level,
}

/// A decoded GIC interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicIrq {
    /// GIC interrupt ID.
    pub intid: u32,
    /// Edge or level.
    pub trigger: Trigger,
}

/// One interrupt: its controller and the specifier cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqSpec<'t> {
    /// The interrupt controller.
    pub controller: Node<'t>,
    /// The specifier, `#interrupt-cells` of the controller long.
    pub cells: Vec<u32>,
    /// Where the specifier came from, for errors.
    origin: Node<'t>,
    origin_prop: &'static str,
}

impl<'t> IrqSpec<'t> {
    /// Decodes the specifier as an Arm GIC interrupt. Errors name the node and property the
    /// specifier came from.
    pub fn gic(&self) -> Result<GicIrq, DtError> {
        let err = |p| self.origin.err(self.origin_prop, p);
        if !GIC_COMPATIBLES
            .iter()
            .any(|c| self.controller.is_compatible(c))
        {
            return Err(err(Problem::NotGic {
                controller: self.controller.path().into(),
            }));
        }
        let [kind, number, flags, ..] = self.cells[..] else {
            return Err(err(Problem::WrongLength {
                cells: self.cells.len(),
                expected: 3,
            }));
        };
        let intid = match (kind, number) {
            (0, n @ 0..988) => 32 + n,
            (1, n @ 0..16) => 16 + n,
            (2, n @ 0..1024) => 4096 + n,
            (3, n @ 0..64) => 1056 + n,
            _ => return Err(err(Problem::BadGicInterrupt { kind, number })),
        };
        let trigger = match flags & 0xf {
            1 | 2 => Trigger::Edge,
            4 | 8 => Trigger::Level,
            _ => return Err(err(Problem::BadTrigger(flags))),
        };
        Ok(GicIrq { intid, trigger })
    }
}

/// A parsed `interrupt-map` with its mask.
struct InterruptMap<'t> {
    mask: Vec<u32>,
    entries: Vec<MapEntry<'t>>,
}

/// One parsed `interrupt-map` entry.
struct MapEntry<'t> {
    key: Vec<u32>,
    parent: Node<'t>,
    parent_unit: Vec<u32>,
    parent_spec: Vec<u32>,
}

impl<'t> Node<'t> {
    /// `#interrupt-cells` of this controller or nexus, `None` when absent.
    pub fn interrupt_cells(&self) -> Result<Option<u32>, DtError> {
        self.specifier_cells("#interrupt-cells")
    }

    fn required_interrupt_cells(&self, who: &Node<'_>, prop: &str) -> Result<usize, DtError> {
        match self.interrupt_cells()? {
            Some(n) => Ok(n as usize),
            None => Err(who.err(
                prop,
                Problem::NoCellsProperty {
                    target: self.path().into(),
                    cells: "#interrupt-cells",
                },
            )),
        }
    }

    /// The interrupt parent of this node's `interrupts`; `None` when there is none.
    pub fn interrupt_parent(&self) -> Result<Option<Node<'t>>, DtError> {
        let mut cur = *self;
        // Every step lands on a distinct node unless there is a loop.
        for _ in 0..=self.tree().len() {
            let next = match cur.u32("interrupt-parent")? {
                Some(ph) => cur.resolve("interrupt-parent", ph)?,
                None => match cur.parent() {
                    Some(p) => p,
                    None => return Ok(None),
                },
            };
            if next.has_property("#interrupt-cells") {
                return Ok(Some(next));
            }
            cur = next;
        }
        Err(self.err("interrupt-parent", Problem::Loop))
    }

    /// This node's interrupts (`interrupts-extended`, else `interrupts`); empty when neither.
    pub fn interrupts(&self) -> Result<Vec<IrqSpec<'t>>, DtError> {
        if self.has_property("interrupts-extended") {
            let list = phandle_args(*self, "interrupts-extended", "#interrupt-cells", None)?;
            return list
                .into_iter()
                .map(|p| {
                    self.through_nexus(IrqSpec {
                        controller: p.target,
                        cells: p.args,
                        origin: *self,
                        origin_prop: "interrupts-extended",
                    })
                })
                .collect();
        }
        let Some(cells) = self.cells("interrupts")? else {
            return Ok(Vec::new());
        };
        let parent = self
            .interrupt_parent()?
            .ok_or_else(|| self.err("interrupts", Problem::NoInterruptParent))?;
        let n = parent.required_interrupt_cells(self, "interrupts")?;
        if n == 0 || !cells.len().is_multiple_of(n) {
            return Err(self.err(
                "interrupts",
                Problem::NotMultiple {
                    cells: cells.len(),
                    entry: n,
                },
            ));
        }
        cells
            .chunks_exact(n)
            .map(|c| {
                self.through_nexus(IrqSpec {
                    controller: parent,
                    cells: c.to_vec(),
                    origin: *self,
                    origin_prop: "interrupts",
                })
            })
            .collect()
    }

    /// When `spec`'s controller is an interrupt nexus, maps it with this node's unit address
    /// (the first cells of `reg`, zeros without `reg`), as Linux `of_irq_parse_one` does.
    fn through_nexus(&self, spec: IrqSpec<'t>) -> Result<IrqSpec<'t>, DtError> {
        let nexus = spec.controller;
        if !nexus.has_property("interrupt-map") || nexus.has_property("interrupt-controller") {
            return Ok(spec);
        }
        let na = nexus.address_cells()? as usize;
        let mut unit = self.cells("reg")?.unwrap_or_default();
        unit.resize(na, 0);
        nexus.map_interrupt(&unit, &spec.cells)?.ok_or_else(|| {
            self.err(
                spec.origin_prop,
                Problem::NoMapEntry {
                    nexus: nexus.path().into(),
                },
            )
        })
    }

    /// `interrupt-names`; empty when absent.
    pub fn interrupt_names(&self) -> Result<Vec<&'t str>, DtError> {
        self.strings("interrupt-names")
    }

    /// Every interrupt decoded as a GIC interrupt.
    pub fn gic_interrupts(&self) -> Result<Vec<GicIrq>, DtError> {
        self.interrupts()?.iter().map(IrqSpec::gic).collect()
    }

    /// The interrupt called `name` in `interrupt-names`, decoded as a GIC interrupt; `None` when
    /// no such name.
    pub fn gic_interrupt(&self, name: &str) -> Result<Option<GicIrq>, DtError> {
        let names = self.interrupt_names()?;
        let Some(i) = names.iter().position(|n| *n == name) else {
            return Ok(None);
        };
        let irqs = self.interrupts()?;
        match irqs.get(i) {
            Some(spec) => spec.gic().map(Some),
            None => Err(self.err(
                "interrupt-names",
                Problem::NameCount {
                    names: names.len(),
                    entries: irqs.len(),
                },
            )),
        }
    }

    fn interrupt_map(&self) -> Result<Option<InterruptMap<'t>>, DtError> {
        const P: &str = "interrupt-map";
        let Some(cells) = self.cells(P)? else {
            return Ok(None);
        };
        let na = self.address_cells()? as usize;
        let ni = self.required_interrupt_cells(self, P)?;
        let key_len = na + ni;
        let mask = match self.cells("interrupt-map-mask")? {
            None => alloc::vec![u32::MAX; key_len],
            Some(m) if m.len() == key_len => m,
            Some(m) => {
                return Err(self.err(
                    "interrupt-map-mask",
                    Problem::WrongLength {
                        cells: m.len(),
                        expected: key_len,
                    },
                ));
            }
        };
        let mut entries = Vec::new();
        let mut rest = &cells[..];
        while !rest.is_empty() {
            let entry = entries.len();
            let short = |needed: usize, left: usize| {
                self.err(
                    P,
                    Problem::Truncated {
                        entry,
                        needed,
                        left,
                    },
                )
            };
            if rest.len() < key_len + 1 {
                return Err(short(key_len + 1, rest.len()));
            }
            let key: Vec<u32> = rest[..key_len]
                .iter()
                .zip(&mask)
                .map(|(c, m)| c & m)
                .collect();
            let parent = self.resolve(P, rest[key_len])?;
            rest = &rest[key_len + 1..];
            let pna = parent.specifier_cells("#address-cells")?.unwrap_or(0) as usize;
            let pni = parent.required_interrupt_cells(self, P)?;
            if rest.len() < pna + pni {
                return Err(short(pna + pni, rest.len()));
            }
            entries.push(MapEntry {
                key,
                parent,
                parent_unit: rest[..pna].to_vec(),
                parent_spec: rest[pna..pna + pni].to_vec(),
            });
            rest = &rest[pna + pni..];
        }
        Ok(Some(InterruptMap { mask, entries }))
    }

    /// Looks up (`unit`, `spec`) in this nexus's `interrupt-map` and follows further nexuses.
    /// `None` when the node has no `interrupt-map` or no entry matches.
    pub fn map_interrupt(
        &self,
        unit: &[u32],
        spec: &[u32],
    ) -> Result<Option<IrqSpec<'t>>, DtError> {
        let mut nexus = *self;
        let mut unit = unit.to_vec();
        let mut spec = spec.to_vec();
        for _ in 0..MAX_NEXUS_DEPTH {
            let Some(InterruptMap { mask, entries }) = nexus.interrupt_map()? else {
                return Ok(None);
            };
            let given = unit.len() + spec.len();
            if given != mask.len() {
                return Err(nexus.err(
                    "interrupt-map",
                    Problem::QueryCells {
                        given,
                        expected: mask.len(),
                    },
                ));
            }
            let key: Vec<u32> = unit
                .iter()
                .chain(&spec)
                .zip(&mask)
                .map(|(c, m)| c & m)
                .collect();
            let Some(hit) = entries.into_iter().find(|e| e.key == key) else {
                return Ok(None);
            };
            let parent = hit.parent;
            let is_nexus = parent.has_property("interrupt-map")
                && !parent.has_property("interrupt-controller");
            if !is_nexus {
                return Ok(Some(IrqSpec {
                    controller: parent,
                    cells: hit.parent_spec,
                    origin: nexus,
                    origin_prop: "interrupt-map",
                }));
            }
            nexus = parent;
            unit = hit.parent_unit;
            spec = hit.parent_spec;
        }
        Err(self.err("interrupt-map", Problem::TooManyNexuses))
    }
}
