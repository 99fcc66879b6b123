//! `cargo xtask dt-dma <file.dtb> [--json]`: the DMA topology of a device tree.
//!
//! Lists every node that has DMA properties of its own (`iommus`, `iommu-map`, `dma-ranges`,
//! `dma-coherent`, `dma-noncoherent`) or that, as a device, inherits coherence or DMA windows
//! (see `of::topology`). For each: status, effective coherence, `iommus`, `iommu-map`, its own
//! `dma-ranges` and the CPU windows the node reaches as a device.
//!
//! JSON (numbers are plain integers, also above 2^64; empty lists are omitted):
//! `{"nodes":[{"path":..,"status":"okay"|null,"dma_coherent":bool,
//!   "iommus":[{"iommu":path,"args":[u32..]}],
//!   "iommu_map":[{"rid_base":u32,"iommu":path,"iommu_base":u32,"length":u32}],
//!   "dma_ranges":[{"child":u128,"parent":u128,"size":u128}],
//!   "dma_windows":[{"bus":u64,"cpu":u64,"size":u64}]}]}`
//!
//! A malformed tree prints its `DtError` (node and property) and exits non-zero.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use anyhow::{Context, Result, anyhow};
use of::{BusRanges, DmaConstraint, DmaNode, DmaTopology, IdMap};

/// Arguments of `dt-dma`.
#[derive(clap::Args)]
pub struct DtDmaArgs {
    /// The device-tree blob.
    pub dtb: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dt-dma`.
pub fn run(args: &DtDmaArgs) -> Result<ExitCode> {
    let blob =
        std::fs::read(&args.dtb).with_context(|| format!("reading {}", args.dtb.display()))?;
    let topology = of::dma_topology(&blob).map_err(|e| anyhow!("{}: {e}", args.dtb.display()))?;
    let out = if args.json {
        format!("{}\n", json(&topology))
    } else {
        text(&topology, &args.dtb.display().to_string())
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `,"key":[item,item]`, nothing for an empty list.
fn list(out: &mut String, key: &str, items: Vec<String>) {
    if !items.is_empty() {
        let _ = write!(out, ",\"{key}\":[{}]", items.join(","));
    }
}

fn json_node(n: &DmaNode) -> String {
    let mut out = format!(
        "{{\"path\":{},\"status\":{},\"dma_coherent\":{}",
        quote(&n.path),
        n.status.as_deref().map_or_else(|| "null".into(), quote),
        n.dma_coherent
    );
    list(
        &mut out,
        "iommus",
        n.iommus
            .iter()
            .map(|e| {
                let args: Vec<String> = e.args.iter().map(u32::to_string).collect();
                format!(
                    "{{\"iommu\":{},\"args\":[{}]}}",
                    quote(&e.target),
                    args.join(",")
                )
            })
            .collect(),
    );
    list(
        &mut out,
        "iommu_map",
        n.iommu_map
            .iter()
            .flat_map(|m| &m.entries)
            .map(|e| {
                format!(
                    "{{\"rid_base\":{},\"iommu\":{},\"iommu_base\":{},\"length\":{}}}",
                    e.rid_base,
                    quote(&e.target),
                    e.target_base,
                    e.length
                )
            })
            .collect(),
    );
    list(
        &mut out,
        "dma_ranges",
        n.dma_ranges
            .windows()
            .iter()
            .map(|r| {
                format!(
                    "{{\"child\":{},\"parent\":{},\"size\":{}}}",
                    r.child, r.parent, r.size
                )
            })
            .collect(),
    );
    list(
        &mut out,
        "dma_windows",
        n.dma
            .windows()
            .iter()
            .map(|w| {
                format!(
                    "{{\"bus\":{},\"cpu\":{},\"size\":{}}}",
                    w.bus.0, w.cpu.0, w.size
                )
            })
            .collect(),
    );
    out.push('}');
    out
}

fn json(t: &DmaTopology) -> String {
    let nodes: Vec<String> = t.nodes.iter().map(json_node).collect();
    format!("{{\"nodes\":[\n  {}\n]}}", nodes.join(",\n  "))
}

fn id_map(out: &mut String, name: &str, map: &IdMap<String>) {
    let mask = map
        .mask
        .map_or_else(|| "none".into(), |m| format!("{m:#x}"));
    let _ = writeln!(out, "    {name} (mask {mask}):");
    for e in &map.entries {
        let last = |base: u32| u64::from(base) + u64::from(e.length) - 1;
        let _ = writeln!(
            out,
            "        RID {:#06x}..={:#06x} -> {} ID {:#x}..={:#x}",
            e.rid_base,
            last(e.rid_base),
            e.target,
            e.target_base,
            last(e.target_base)
        );
    }
}

fn constraint(out: &mut String, label: &str, c: &DmaConstraint) {
    match c {
        DmaConstraint::Unrestricted => {
            let _ = writeln!(out, "    {label}: unrestricted (bus address = CPU address)");
        }
        DmaConstraint::Windows(windows) => {
            let limit = c.bus_limit().map_or(0, |l| l.0);
            let _ = writeln!(out, "    {label}: bus limit {limit:#x}");
            for w in windows {
                let _ = writeln!(
                    out,
                    "        bus {:#x}..={:#x} -> CPU {:#x} ({:#x} bytes)",
                    w.bus.0,
                    w.bus_last().0,
                    w.cpu.0,
                    w.size
                );
            }
        }
    }
}

fn text_node(out: &mut String, n: &DmaNode) {
    let status = n
        .status
        .as_deref()
        .map_or_else(String::new, |s| format!(" [{s}]"));
    let coherence = if n.dma_coherent {
        "coherent"
    } else {
        "non-coherent"
    };
    let _ = writeln!(out, "{}{status}: {coherence}", n.path);
    for e in &n.iommus {
        let args: Vec<String> = e.args.iter().map(|a| format!("{a:#x}")).collect();
        let _ = writeln!(out, "    iommus: {} <{}>", e.target, args.join(" "));
    }
    if let Some(m) = &n.iommu_map {
        id_map(out, "iommu-map", m);
    }
    if let Some(m) = &n.msi_map {
        id_map(out, "msi-map", m);
    }
    match &n.dma_ranges {
        BusRanges::Absent => {}
        BusRanges::Identity => {
            let _ = writeln!(out, "    dma-ranges: empty (identity, no limit)");
        }
        BusRanges::Windows(ranges) => {
            let cells = n
                .dma_range_cells
                .map(|c| format!(" (cells {}/{}/{})", c.child, c.parent, c.size))
                .unwrap_or_default();
            let _ = writeln!(out, "    dma-ranges{cells}:");
            for r in ranges {
                let _ = writeln!(
                    out,
                    "        child {:#x} parent {:#x} size {:#x}",
                    r.child, r.parent, r.size
                );
            }
        }
    }
    if let Some(c) = &n.child_dma {
        constraint(out, "children reach", c);
    }
    constraint(out, "reaches", &n.dma);
}

fn text(t: &DmaTopology, file: &str) -> String {
    let model = t.model.as_deref().unwrap_or("no model");
    let mut out = format!(
        "DMA topology of {file} ({model}): {} nodes\n",
        t.nodes.len()
    );
    for n in &t.nodes {
        out.push('\n');
        text_node(&mut out, n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &[u8] =
        include_bytes!("../../kernel/crates/of/tests/fixtures/dma-topology.dtb");

    #[test]
    fn json_prints_u128_numbers_whole_and_omits_empty_lists() {
        let t = of::dma_topology(TOPOLOGY).unwrap();
        let j = json(&t);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        let nodes = v["nodes"].as_array().unwrap();
        let pcie = nodes
            .iter()
            .find(|n| n["path"] == "/pcie@40000000")
            .unwrap();
        assert!(
            j.contains("\"child\":618970019642690137449562112,"),
            "the 96-bit PCI child address is printed whole"
        );
        assert_eq!(pcie["iommu_map"][1]["iommu"], "/iommu@2000000");
        assert_eq!(pcie["status"], serde_json::Value::Null);
        assert!(pcie.get("iommus").is_none());
        let camera = nodes
            .iter()
            .find(|n| n["path"] == "/soc/camera@300000")
            .unwrap();
        assert_eq!(camera["status"], "disabled");
        assert_eq!(camera["iommus"][0]["args"].as_array().unwrap().len(), 0);
        let flat = nodes.iter().find(|n| n["path"] == "/soc/flat").unwrap();
        assert!(
            flat.get("dma_ranges").is_none(),
            "empty dma-ranges: no list"
        );
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn text_names_every_node() {
        let t = of::dma_topology(TOPOLOGY).unwrap();
        let s = text(&t, "x.dtb");
        for n in &t.nodes {
            assert!(s.contains(&format!("\n{}", n.path)), "{}", n.path);
        }
        assert!(s.contains("RID 0x0100..=0x01ff -> /iommu@2000000 ID 0x0..=0xff"));
    }
}
