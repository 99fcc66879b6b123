//! Broken variants of QEMU's own device tree, for robustness scenarios (`qemu/dt-variants.toml`).
//!
//! A variant is a name, a description and a list of edits; an edit sets or deletes one property
//! of one node, the value written in dts syntax (`<0x0 &{/smmuv3@9050000} 0x0 0x10000>`,
//! `"disabled"`; `&{/path}` is the phandle of the node at that path). Building one for a QEMU
//! command line:
//!
//! 1. dump the tree QEMU generates for that machine (`-M ...,dumpdtb=`, without `-kernel` and
//!    `-append`) and decompile it with dtc;
//! 2. append one `&{/node} { ... };` block per edit (dtc merges it into the node: a later value
//!    wins, `/delete-property/` removes) and compile the result;
//! 3. check with the `of` crate that every edit took effect: a set property is there with a value
//!    other than QEMU's, a deleted one was there and is gone.
//!
//! The variant boots with `-dtb`. QEMU still edits a tree given that way (`arm_load_dtb`): it
//! writes `/chosen/bootargs` from `-append` (when not empty), replaces the memory node and
//! `/psci` with its own (turning the old ones into `FDT_NOP` tokens, which the kernel compacts
//! away) and re-randomizes `rng-seed` at reset. Everything else is the variant as built, so the
//! tree describes exactly the machine that command line creates, with the edits.
//!
//! Files go to `target/dt-variants/<tag>/` (the scenario's name, or the variant's):
//! `qemu.dtb` and `qemu.dts` (the dump), `<variant>.dts`, `<variant>.dtb` and
//! `<variant>.dtc.log` (dtc's warnings; QEMU's tree has a few, a broken one more).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::qemu::{self, QemuArgs};
use crate::{kbuild, root, setup, target_dir};

/// Arguments of `dt-variant`.
#[derive(clap::Args, Debug)]
pub struct DtVariantArgs {
    /// A variant from qemu/dt-variants.toml; without one, the variants are listed.
    pub name: Option<String>,
    /// Boot the kernel with it (as `cargo xtask qemu` does) instead of only building the blob.
    #[arg(long)]
    pub boot: bool,
    #[command(flatten)]
    pub qemu: QemuArgs,
}

/// What an edit does.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Add the property, or replace its value.
    Set,
    /// Remove the property (it must exist).
    Delete,
    /// Create the empty node at `node` (its parent must exist, it must not); later `set`
    /// edits give it properties.
    #[serde(rename = "add-node")]
    AddNode,
    /// Add a `/memreserve/` entry to the blob header: `value` is `"<address> <size>"` (two
    /// numbers, dts syntax), `node` is `/`, no property.
    Memreserve,
}

/// One edit: set or delete `property` of the node at `node`, or add the node.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// `set` or `delete`.
    pub op: Op,
    /// Full path of the node (`/pcie@10000000`).
    pub node: String,
    /// The property (`iommu-map`); empty (absent) for `add-node`.
    #[serde(default)]
    pub property: String,
    /// For `set`: the value in dts syntax, without the trailing `;`; absent = empty property.
    pub value: Option<String>,
}

/// One variant, as written in `qemu/dt-variants.toml`.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Lower-case words joined by `-`; scenarios name it in `dtb = "..."`.
    pub name: String,
    /// What is wrong with the tree, and what the kernel should do about it.
    pub description: String,
    /// Applied in order.
    pub edits: Vec<Edit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantFile {
    variant: Vec<Variant>,
}

/// Parses a variant file and checks every variant (see [`Variant::check`]).
fn parse_variants(text: &str) -> Result<Vec<Variant>> {
    let f: VariantFile = toml::from_str(text)?;
    let mut seen = BTreeSet::new();
    for v in &f.variant {
        if !seen.insert(v.name.as_str()) {
            bail!("variant `{}` is listed twice", v.name);
        }
        v.check().with_context(|| format!("variant `{}`", v.name))?;
    }
    Ok(f.variant)
}

/// Reads `qemu/dt-variants.toml`.
pub fn variants() -> Result<Vec<Variant>> {
    let path = root().join("qemu/dt-variants.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_variants(&text).with_context(|| format!("in {}", path.display()))
}

/// The variant called `name`.
pub fn find(name: &str) -> Result<Variant> {
    let all = variants()?;
    let names: Vec<String> = all.iter().map(|v| v.name.clone()).collect();
    all.into_iter().find(|v| v.name == name).with_context(|| {
        format!(
            "no device-tree variant `{name}` in qemu/dt-variants.toml (have: {})",
            names.join(", ")
        )
    })
}

fn is_node_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ",._+-@".contains(c)
}

/// Characters of a property name (DT specification 2.2.4).
fn is_property_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ",._+?#-".contains(c)
}

/// Checks that a dts value is one value: no `;` and no unbalanced `{}` `<>` `[]` outside string
/// literals, so an edit cannot smuggle in further statements.
fn check_value(value: &str) -> Result<()> {
    let mut open = Vec::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    Some('\\') => {
                        chars.next();
                    }
                    Some('"') => break,
                    Some(_) => {}
                    None => bail!("unterminated string in `{value}`"),
                }
            },
            ';' => bail!("`;` in `{value}`: one edit sets one property"),
            '{' | '<' | '[' => open.push(c),
            '}' | '>' | ']' => {
                let want = match c {
                    '}' => '{',
                    '>' => '<',
                    _ => '[',
                };
                if open.pop() != Some(want) {
                    bail!("unbalanced `{c}` in `{value}`");
                }
            }
            _ => {}
        }
    }
    if let Some(c) = open.last() {
        bail!("unclosed `{c}` in `{value}`");
    }
    Ok(())
}

impl Edit {
    fn check(&self) -> Result<()> {
        let path_ok = self.node.starts_with('/')
            && (self.node == "/"
                || self.node[1..]
                    .split('/')
                    .all(|part| !part.is_empty() && part.chars().all(is_node_char)));
        if !path_ok {
            bail!("`{}` is not a full node path", self.node);
        }
        if self.op == Op::AddNode {
            if self.node == "/" || !self.property.is_empty() || self.value.is_some() {
                bail!("add-node takes a node other than / and no property or value");
            }
            return Ok(());
        }
        if self.op == Op::Memreserve {
            if self.node != "/" || !self.property.is_empty() || self.memreserve().is_none() {
                bail!("memreserve takes node = \"/\", no property, value = \"<address> <size>\"");
            }
            return Ok(());
        }
        if self.property.is_empty() || !self.property.chars().all(is_property_char) {
            bail!("`{}` is not a property name", self.property);
        }
        match (self.op, &self.value) {
            (Op::Delete, Some(_)) => bail!("deleting {} takes no value", self.property),
            (Op::Set, Some(v)) => check_value(v),
            _ => Ok(()),
        }
    }

    /// The (address, size) of a `memreserve` edit.
    fn memreserve(&self) -> Option<(u64, u64)> {
        let num = |t: &str| match t.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => t.parse().ok(),
        };
        let mut it = self.value.as_deref()?.split_whitespace();
        let (a, n) = (num(it.next()?)?, num(it.next()?)?);
        (it.next().is_none() && n > 0).then_some((a, n))
    }

    /// The dts block that makes this edit when appended to a complete tree (`memreserve`
    /// entries go in the header instead: [`Variant::apply`]).
    fn dts(&self) -> String {
        let body = match (self.op, &self.value) {
            (Op::Set, Some(v)) => format!("{} = {v};", self.property),
            (Op::Set, None) => format!("{};", self.property),
            (Op::Delete, _) => format!("/delete-property/ {};", self.property),
            (Op::Memreserve, _) => return String::new(),
            (Op::AddNode, _) => {
                // Checked: a full path other than `/`, so it has a parent and a last part.
                let (parent, name) = self.node.rsplit_once('/').unwrap_or(("", &self.node));
                let parent = if parent.is_empty() {
                    String::from("/")
                } else {
                    format!("&{{{parent}}}")
                };
                return format!("{parent} {{\n\t{name} {{\n\t}};\n}};\n");
            }
        };
        format!("&{{{}}} {{\n\t{body}\n}};\n", self.node)
    }
}

impl Variant {
    /// The name is a plain identifier and every edit is well-formed.
    pub fn check(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            bail!(
                "name `{}`: lower-case letters, digits and `-` only",
                self.name
            );
        }
        if self.edits.is_empty() {
            bail!("no edits");
        }
        for (i, e) in self.edits.iter().enumerate() {
            e.check().with_context(|| format!("edit {i}"))?;
        }
        Ok(())
    }

    /// `base` (a complete dts) with the edits appended.
    pub fn apply(&self, base: &str) -> String {
        let mut out = String::with_capacity(base.len() + 256 * self.edits.len());
        // `/memreserve/` lines must come right after `/dts-v1/;`, before the first node.
        let header = "/dts-v1/;\n";
        let body = base.strip_prefix(header).unwrap_or(base);
        if body.len() < base.len() {
            out.push_str(header);
        }
        for (a, n) in self.edits.iter().filter_map(Edit::memreserve) {
            let _ = writeln!(out, "/memreserve/ {a:#x} {n:#x};");
        }
        out.push_str(body);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "\n/* dt-variant {}: {} */",
            self.name, self.description
        );
        for e in &self.edits {
            out.push_str(&e.dts());
        }
        out
    }

    /// Checks on the compiled trees that every edit took effect.
    pub fn verify(&self, base: &[u8], edited: &[u8]) -> Result<()> {
        let before =
            of::DeviceTree::parse(base).map_err(|e| anyhow::anyhow!("QEMU's tree: {e}"))?;
        let after = of::DeviceTree::parse(edited)
            .map_err(|e| anyhow::anyhow!("the edited tree does not parse: {e}"))?;
        for e in &self.edits {
            if let Some((a, n)) = e.memreserve() {
                let has = |t: &of::DeviceTree| {
                    t.memory_reservations()
                        .iter()
                        .any(|r| r.start.0 == a && r.size == n)
                };
                if has(&before) {
                    bail!("/memreserve/ {a:#x} {n:#x}: already in QEMU's tree");
                }
                if !has(&after) {
                    bail!("/memreserve/ {a:#x} {n:#x} was not added");
                }
                continue;
            }
            if e.op == Op::AddNode {
                if before.find(&e.node).is_some() {
                    bail!("{}: already in QEMU's tree: nothing to add", e.node);
                }
                if after.find(&e.node).is_none() {
                    bail!("{} was not added", e.node);
                }
                continue;
            }
            let old = before.find(&e.node).and_then(|n| n.property(&e.property));
            let new = after
                .find(&e.node)
                .with_context(|| format!("{} is gone after the edits", e.node))?
                .property(&e.property);
            match e.op {
                Op::Set if new.is_none() => bail!("{}: {} was not set", e.node, e.property),
                Op::Set if new == old => bail!(
                    "{}: {} already has that value: the edit changes nothing",
                    e.node,
                    e.property
                ),
                Op::Delete if old.is_none() => {
                    bail!("{}: {}: nothing to delete", e.node, e.property)
                }
                Op::Delete if new.is_some() => {
                    bail!("{}: {} is still there", e.node, e.property)
                }
                Op::AddNode | Op::Memreserve => {}
                _ => {}
            }
        }
        Ok(())
    }
}

/// The argv that makes QEMU write the tree it would give `boot_argv`'s guest to `out` and exit:
/// the same machine, without the kernel, its command line, a `-dtb` or gdb's stop.
fn dump_argv(boot_argv: &[String], out: &Path) -> Result<Vec<String>> {
    let mut argv = Vec::with_capacity(boot_argv.len());
    let mut it = boot_argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-kernel" | "-append" | "-dtb" => {
                it.next();
            }
            "-S" | "-s" => {}
            _ => argv.push(a.clone()),
        }
    }
    let m = argv
        .iter()
        .position(|a| a == "-M" || a == "-machine")
        .context("the QEMU command line has no -M")?
        + 1;
    let machine = argv.get_mut(m).context("-M without a value")?;
    *machine = format!("{machine},dumpdtb={}", out.display());
    Ok(argv)
}

/// Converts `input` (`dtb` or `dts`) to the other format in `output`, keeping dtc's warnings in
/// `log`. `-f`: the blob is written even when dtc's checks object (broken trees are the point).
fn dtc(input: &Path, output: &Path, log: &Path) -> Result<()> {
    let (from, to) = match input.extension().and_then(|e| e.to_str()) {
        Some("dtb") => ("dtb", "dts"),
        _ => ("dts", "dtb"),
    };
    let out = Command::new("dtc")
        .args(["-f", "-I", from, "-O", to, "-o"])
        .args([output, input])
        .stdin(Stdio::null())
        .output()
        .context("running dtc")?;
    std::fs::write(log, &out.stderr)?;
    if !out.status.success() {
        bail!(
            "dtc failed on {}:\n{}",
            input.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

/// Builds `variant` for the machine `boot_argv` (a full QEMU command line without `-dtb`) in
/// `target/dt-variants/<tag>/`; returns the blob to pass with `-dtb`.
pub fn build(variant: &Variant, boot_argv: &[String], tag: &str) -> Result<PathBuf> {
    setup::ensure_dtc()?;
    if boot_argv.iter().any(|a| a == "-dtb") {
        bail!("the QEMU command line already has a -dtb");
    }
    let dir = target_dir().join("dt-variants").join(tag);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let qemu_dtb = dir.join("qemu.dtb");
    let qemu_dts = dir.join("qemu.dts");
    let _ = std::fs::remove_file(&qemu_dtb);
    let argv = dump_argv(boot_argv, &qemu_dtb)?;
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", argv[0]))?;
    if !out.status.success() || !qemu_dtb.exists() {
        bail!(
            "dumping QEMU's device tree failed (`{}`):\n{}",
            qemu::shell_line(&argv),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    dtc(&qemu_dtb, &qemu_dts, &dir.join("qemu.dtc.log"))?;
    let base = std::fs::read_to_string(&qemu_dts)?;
    let edited_dts = dir.join(format!("{}.dts", variant.name));
    let edited_dtb = dir.join(format!("{}.dtb", variant.name));
    std::fs::write(&edited_dts, variant.apply(&base))?;
    let log = dir.join(format!("{}.dtc.log", variant.name));
    dtc(&edited_dts, &edited_dtb, &log)?;
    variant
        .verify(&std::fs::read(&qemu_dtb)?, &std::fs::read(&edited_dtb)?)
        .with_context(|| format!("variant `{}` ({})", variant.name, edited_dts.display()))?;
    Ok(edited_dtb)
}

/// `cargo xtask dt-variant`.
pub fn run(args: &DtVariantArgs) -> Result<ExitCode> {
    let Some(name) = &args.name else {
        for v in variants()? {
            println!("{:<28} {}", v.name, v.description);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let variant = find(name)?;
    setup::ensure_qemu()?;
    if !args.boot {
        let argv = qemu::command_line(&args.qemu, Path::new("/dev/null"))?;
        let dtb = build(&variant, &argv, name)?;
        println!("{}", dtb.display());
        eprintln!(
            "boot it: cargo xtask dt-variant {name} --boot --profile {}{}",
            args.qemu.profile,
            args.qemu
                .iommu
                .as_deref()
                .map_or(String::new(), |i| format!(" --iommu {i}"))
        );
        return Ok(ExitCode::SUCCESS);
    }
    let kernel = kbuild::build_kernel()?;
    let mut argv = qemu::command_line(&args.qemu, &kernel)?;
    let dtb = build(&variant, &argv, name)?;
    argv.extend(["-dtb".into(), dtb.display().to_string()]);
    println!("$ {}", qemu::shell_line(&argv));
    let log = target_dir().join(format!("qemu-logs/dt-variant-{name}.log"));
    let r = qemu::run(
        &argv,
        std::time::Duration::from_secs(args.qemu.timeout),
        &log,
        true,
    )?;
    if r.timed_out {
        bail!(
            "QEMU did not exit within {} s (log: {})",
            args.qemu.timeout,
            log.display()
        );
    }
    let code = r.exit_code.unwrap_or(1);
    eprintln!(
        "xtask: kernel exited with status {code} (log: {})",
        log.display()
    );
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(op: Op, node: &str, property: &str, value: Option<&str>) -> Edit {
        Edit {
            op,
            node: node.into(),
            property: property.into(),
            value: value.map(str::to_string),
        }
    }

    fn variant(edits: Vec<Edit>) -> Variant {
        Variant {
            name: "t".into(),
            description: "test".into(),
            edits,
        }
    }

    /// A small tree in the shape dtc decompiles QEMU's: an IOMMU with a phandle, a bus using it.
    const BASE: &str = r#"/dts-v1/;

/ {
	#address-cells = <0x02>;
	#size-cells = <0x02>;

	iommu@1000 {
		phandle = <0x8004>;
		#iommu-cells = <0x01>;
		reg = <0x00 0x1000 0x00 0x1000>;
	};

	bus@2000 {
		iommu-map = <0x00 0x8004 0x00 0x10000>;
		status = "okay";
		reg = <0x00 0x2000 0x00 0x1000>;
	};
};
"#;

    #[test]
    fn edits_render_as_dts_blocks_for_their_node() {
        let set = edit(
            Op::Set,
            "/bus@2000",
            "iommu-map",
            Some("<0x0 &{/iommu@1000} 0x0>"),
        );
        assert_eq!(
            set.dts(),
            "&{/bus@2000} {\n\tiommu-map = <0x0 &{/iommu@1000} 0x0>;\n};\n"
        );
        let empty = edit(Op::Set, "/bus@2000", "dma-coherent", None);
        assert_eq!(empty.dts(), "&{/bus@2000} {\n\tdma-coherent;\n};\n");
        let delete = edit(Op::Delete, "/iommu@1000", "#iommu-cells", None);
        assert_eq!(
            delete.dts(),
            "&{/iommu@1000} {\n\t/delete-property/ #iommu-cells;\n};\n"
        );
        let applied = variant(vec![set, delete]).apply(BASE);
        assert!(applied.starts_with(BASE));
        assert!(applied.contains("/* dt-variant t: test */\n&{/bus@2000} {"));
        assert!(applied.ends_with("/delete-property/ #iommu-cells;\n};\n"));
    }

    #[test]
    fn added_nodes_are_built_by_later_edits_and_verified() {
        let add = |node: &str| edit(Op::AddNode, node, "", None);
        assert_eq!(add("/rm").dts(), "/ {\n\trm {\n\t};\n};\n");
        assert_eq!(
            add("/bus@2000/f@3,0").dts(),
            "&{/bus@2000} {\n\tf@3,0 {\n\t};\n};\n"
        );
        assert!(add("/").check().is_err());
        assert!(edit(Op::AddNode, "/x", "p", None).check().is_err());
        assert!(edit(Op::AddNode, "/x", "", Some("<1>")).check().is_err());
        if Command::new("dtc").arg("--version").output().is_err() {
            eprintln!("dtc is not installed: the compiled half of this test not run");
            return;
        }
        let dir = target_dir().join("dt-variants/host-test-add");
        std::fs::create_dir_all(&dir).unwrap();
        let base = compile(BASE, &dir, "base");
        let v = variant(vec![
            add("/rm"),
            edit(Op::Set, "/rm", "ranges", None),
            add("/rm/r@50"),
            edit(
                Op::Set,
                "/rm/r@50",
                "iommu-addresses",
                Some("<&{/bus@2000/f@3,0} 0x50>"),
            ),
            add("/bus@2000/f@3,0"),
            edit(
                Op::Set,
                "/bus@2000/f@3,0",
                "memory-region",
                Some("<&{/rm/r@50}>"),
            ),
        ]);
        let edited = compile(&v.apply(BASE), &dir, "edited");
        v.verify(&base, &edited).unwrap();
        let dt = of::DeviceTree::parse(&edited).unwrap();
        let f = dt.node("/bus@2000/f@3,0").unwrap();
        assert_eq!(f.memory_regions().unwrap()[0].path(), "/rm/r@50");
        let r = dt.node("/rm/r@50").unwrap();
        assert_eq!(
            r.cells("iommu-addresses").unwrap().unwrap()[0],
            f.phandle().unwrap()
        );
        // Adding a node QEMU's tree already has is caught.
        let again = variant(vec![add("/iommu@1000")]);
        let compiled = compile(&again.apply(BASE), &dir, "again");
        assert!(
            again
                .verify(&base, &compiled)
                .unwrap_err()
                .to_string()
                .contains("already")
        );
    }

    #[test]
    fn memreserve_edits_go_into_the_blob_header() {
        let mr = |v: &str| edit(Op::Memreserve, "/", "", Some(v));
        assert_eq!(
            mr("0x50000000 0x100000").memreserve(),
            Some((0x5000_0000, 0x10_0000))
        );
        for bad in ["0x50000000", "0x1 0x0", "0x1 0x2 0x3", "x 0x10", ""] {
            assert!(mr(bad).check().is_err(), "`{bad}` was accepted");
        }
        assert!(
            edit(Op::Memreserve, "/a", "", Some("0x1000 0x1000"))
                .check()
                .is_err()
        );
        assert!(
            edit(Op::Memreserve, "/", "p", Some("0x1000 0x1000"))
                .check()
                .is_err()
        );
        let v = variant(vec![mr("0x50000000 0x100000")]);
        let text = v.apply(BASE);
        assert!(
            text.starts_with("/dts-v1/;\n/memreserve/ 0x50000000 0x100000;\n"),
            "{text}"
        );
        if Command::new("dtc").arg("--version").output().is_err() {
            eprintln!("dtc is not installed: the compiled half of this test not run");
            return;
        }
        let dir = target_dir().join("dt-variants/host-test-memreserve");
        std::fs::create_dir_all(&dir).unwrap();
        let base = compile(BASE, &dir, "base");
        let edited = compile(&text, &dir, "edited");
        v.verify(&base, &edited).unwrap();
        let dt = of::DeviceTree::parse(&edited).unwrap();
        let r = dt.memory_reservations();
        assert_eq!(
            (r.len(), r[0].start.0, r[0].size),
            (1, 0x5000_0000, 0x10_0000)
        );
        // Verifying against a tree that does not have it fails.
        assert!(
            v.verify(&base, &base)
                .unwrap_err()
                .to_string()
                .contains("was not added")
        );
    }

    #[test]
    fn malformed_edits_are_refused() {
        let bad = [
            edit(Op::Set, "pcie@10000000", "x", None),
            edit(Op::Set, "/pcie@10000000/", "x", None),
            edit(Op::Set, "/a//b", "x", None),
            edit(Op::Set, "/a} /delete-node/ &{/b", "x", None),
            edit(Op::Set, "/a", "", None),
            edit(Op::Set, "/a", "x y", None),
            edit(Op::Set, "/a", "x", Some("<1>; y = <2>")),
            edit(Op::Set, "/a", "x", Some("<1 2")),
            edit(Op::Set, "/a", "x", Some("<1>}; &{/b} {")),
            edit(Op::Set, "/a", "x", Some("\"open")),
            edit(Op::Delete, "/a", "x", Some("<1>")),
        ];
        for e in bad {
            assert!(e.check().is_err(), "{e:?} was accepted");
        }
        let good = [
            edit(Op::Set, "/", "model", Some("\"a; b {\"")),
            edit(
                Op::Set,
                "/intc@8000000/its@8080000",
                "#iommu-cells",
                Some("<0x01>"),
            ),
            edit(Op::Set, "/a", "x", Some("<&{/b} 1>, [00 01], \"s\\\"q\"")),
            edit(Op::Delete, "/a", "linux,pci-domain", None),
        ];
        for e in good {
            assert!(e.check().is_ok(), "{e:?} was refused");
        }
        assert!(
            variant(Vec::new()).check().is_err(),
            "a variant edits something"
        );
        let mut v = variant(vec![edit(Op::Set, "/a", "x", None)]);
        v.name = "Bad Name".into();
        assert!(v.check().is_err());
    }

    #[test]
    fn variant_files_refuse_duplicates_and_unknown_fields() {
        let one = "[[variant]]\nname = \"a\"\ndescription = \"d\"\nedits = [{ op = \"delete\", node = \"/x\", property = \"y\" }]\n";
        assert_eq!(parse_variants(one).unwrap()[0].edits[0].op, Op::Delete);
        assert!(parse_variants(&format!("{one}{one}")).is_err());
        assert!(parse_variants(&one.replace("op =", "kind =")).is_err());
        assert!(parse_variants(&one.replace("delete", "rename")).is_err());
        let add = "[[variant]]\nname = \"a\"\ndescription = \"d\"\nedits = [{ op = \"add-node\", node = \"/x\" }]\n";
        assert_eq!(parse_variants(add).unwrap()[0].edits[0].op, Op::AddNode);
    }

    #[test]
    fn the_variant_file_parses_and_every_scenario_names_a_variant() {
        let names: BTreeSet<String> = variants().unwrap().into_iter().map(|v| v.name).collect();
        assert!(!names.is_empty());
        for s in crate::test::scenarios().unwrap() {
            if let Some(d) = &s.dtb {
                assert!(names.contains(d), "{}: no variant `{d}`", s.name);
            }
        }
    }

    #[test]
    fn the_dump_is_the_same_machine_without_kernel_command_line_or_tree() {
        let boot: Vec<String> = [
            "qemu-system-aarch64",
            "-M",
            "virt,iommu=smmuv3",
            "-kernel",
            "k.bin",
            "-append",
            "ktest=*",
            "-device",
            "edu,addr=3",
            "-dtb",
            "old.dtb",
            "-s",
            "-S",
        ]
        .map(String::from)
        .into();
        let dump = dump_argv(&boot, Path::new("/t/q.dtb")).unwrap();
        assert_eq!(
            dump,
            [
                "qemu-system-aarch64",
                "-M",
                "virt,iommu=smmuv3,dumpdtb=/t/q.dtb",
                "-device",
                "edu,addr=3"
            ]
        );
        assert!(dump_argv(&boot[3..], Path::new("q")).is_err(), "no -M");
    }

    fn compile(dts: &str, dir: &Path, name: &str) -> Vec<u8> {
        let src = dir.join(format!("{name}.dts"));
        let out = dir.join(format!("{name}.dtb"));
        std::fs::write(&src, dts).unwrap();
        dtc(&src, &out, &dir.join(format!("{name}.log"))).unwrap();
        std::fs::read(out).unwrap()
    }

    #[test]
    fn edits_compiled_by_dtc_change_exactly_what_they_say() {
        if Command::new("dtc").arg("--version").output().is_err() {
            eprintln!("dtc is not installed (`cargo xtask dtb` installs it): test not run");
            return;
        }
        let dir = target_dir().join("dt-variants/host-test");
        std::fs::create_dir_all(&dir).unwrap();
        let base = compile(BASE, &dir, "base");
        let v = variant(vec![
            edit(
                Op::Set,
                "/bus@2000",
                "iommu-map",
                Some("<0x0 &{/iommu@1000} 0x0>"),
            ),
            edit(Op::Set, "/bus@2000", "dma-coherent", None),
            edit(Op::Set, "/bus@2000", "iommus", Some("<&{/iommu@1000} 0x7>")),
            edit(Op::Delete, "/iommu@1000", "#iommu-cells", None),
            edit(Op::Set, "/iommu@1000", "status", Some("\"disabled\"")),
        ]);
        let edited = compile(&v.apply(BASE), &dir, "edited");
        v.verify(&base, &edited).unwrap();
        let dt = of::DeviceTree::parse(&edited).unwrap();
        let bus = dt.node("/bus@2000").unwrap();
        assert_eq!(bus.cells("iommu-map").unwrap(), Some(vec![0, 0x8004, 0]));
        assert_eq!(
            bus.cells("iommus").unwrap(),
            Some(vec![0x8004, 7]),
            "&{{path}} is the phandle"
        );
        assert!(bus.flag("dma-coherent").unwrap());
        let iommu = dt.node("/iommu@1000").unwrap();
        assert!(!iommu.has_property("#iommu-cells"));
        assert!(!iommu.is_enabled().unwrap());

        // Edits that change nothing are caught.
        let same = variant(vec![edit(Op::Set, "/bus@2000", "status", Some("\"okay\""))]);
        let compiled = compile(&same.apply(BASE), &dir, "same");
        assert!(
            same.verify(&base, &compiled)
                .unwrap_err()
                .to_string()
                .contains("changes nothing")
        );
        let absent = variant(vec![edit(
            Op::Delete,
            "/bus@2000",
            "no-such-property",
            None,
        )]);
        let compiled = compile(&absent.apply(BASE), &dir, "absent");
        assert!(
            absent
                .verify(&base, &compiled)
                .unwrap_err()
                .to_string()
                .contains("nothing to delete")
        );
    }
}
