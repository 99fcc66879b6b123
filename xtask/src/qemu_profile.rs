//! `cargo xtask profile --host`: where the *host's* time goes while QEMU runs the kernel.
//!
//! The kernel's own profiler (`profile=`) sees only guest instructions. Under TCG most of a real
//! second is QEMU's: translating guest code, emulating devices, walking the SMMU's page tables
//! for a device's DMA. This runs QEMU under `perf record` with call graphs, and sorts every
//! sample by what its stack shows QEMU was doing. `--from` / `--to` cut a window out of the run
//! by serial-log lines (perf's clock is CLOCK_MONOTONIC, which xtask reads when a line arrives).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::profile::ProfileArgs;
use crate::qemu::{self, QemuArgs};
use crate::{kbuild, setup, target_dir};

/// Samples per second of host CPU time.
const FREQUENCY: u32 = 4000;

/// What a sample shows QEMU doing, decided from its stack (innermost frame first) as
/// (function, object) pairs; the first rule that applies wins.
pub fn classify(frames: &[(&str, &str)]) -> &'static str {
    let any = |f: &dyn Fn(&str) -> bool| frames.iter().any(|(name, _)| f(name));
    let Some(&(top, top_dso)) = frames.first() else {
        return "unknown";
    };
    if top_dso.contains("/perf-") && top_dso.ends_with(".map") {
        return "running translated guest code";
    }
    if any(&|n| matches!(n, "tb_gen_code" | "gen_intermediate_code" | "tcg_gen_code")) {
        return "TCG: translating guest code";
    }
    if any(&|n| n == "cpu_io_recompile") {
        return "TCG: a register access mid-block (the block is re-run up to it)";
    }
    if any(&|n| n == "helper_lookup_tb_ptr") {
        return "TCG: indirect branches (every return, calls through pointers)";
    }
    if any(&|n| n == "arm_rebuild_hflags") {
        return "TCG: CPU state rebuilt after DAIF and system-register writes";
    }
    if any(&|n| {
        matches!(
            n,
            "qemu_init" | "_dl_start" | "dl_main" | "_dl_relocate_object"
        )
    }) {
        return "QEMU start-up (before the guest runs)";
    }
    if any(&|n| n.starts_with("smmu")) {
        return "SMMUv3 model: DMA translation, IOTLB, commands";
    }
    if top.starts_with("helper_crypto") {
        return "emulated crypto instructions (SHA-256)";
    }
    if any(&|n| n.contains("page_fault")) {
        return "host page faults (first touch of guest RAM, code buffer)";
    }
    if any(&|n| {
        matches!(
            n,
            "vfs_read"
                | "vfs_write"
                | "__x64_sys_pread64"
                | "__x64_sys_preadv"
                | "__x64_sys_pwrite64"
        )
    }) {
        return "host kernel: the disk image's file I/O";
    }
    if any(&|n| n.starts_with("memory_region_dispatch")) {
        return "device models (register accesses)";
    }
    if any(&|n| n.starts_with("address_space_") || n.starts_with("flatview_")) {
        return "memory API (device DMA outside the SMMU)";
    }
    if top.starts_with("helper_") {
        return "TCG helpers";
    }
    if top_dso.contains("kernel.kallsyms") {
        return "host kernel: other (scheduling, futexes, interrupts)";
    }
    "QEMU and libraries: other"
}

/// One sample of `perf script -F time,ip,sym,dso`: its time and stack.
#[derive(Debug, PartialEq)]
pub struct Sample {
    /// Seconds, CLOCK_MONOTONIC.
    pub time: f64,
    /// (function, object), innermost first.
    pub frames: Vec<(String, String)>,
}

/// Parses `perf script -F time,ip,sym,dso` output: blocks of a `<time>:` line followed by
/// `<ip> <function> (<object>)` frames, separated by blank lines.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.trim().is_empty());
        let Some(head) = lines.next() else { continue };
        let Ok(time) = head.trim().trim_end_matches(':').parse::<f64>() else {
            continue;
        };
        let frames = lines
            .filter_map(|l| {
                let l = l.trim();
                let (_ip, rest) = l.split_once(' ')?;
                let open = rest.rfind(" (")?;
                let dso = rest[open + 2..].strip_suffix(')')?;
                Some((rest[..open].to_string(), dso.to_string()))
            })
            .collect();
        out.push(Sample { time, frames });
    }
    out
}

/// CLOCK_MONOTONIC now, in seconds (the clock `perf record -k CLOCK_MONOTONIC` stamps with).
fn monotonic() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn perf_works() -> bool {
    Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `profile --host`.
pub fn run(args: &ProfileArgs) -> Result<ExitCode> {
    setup::ensure_qemu()?;
    if !perf_works() {
        setup::apt_install(&["linux-perf"])?;
    }
    let from = args.from.as_deref().map(Regex::new).transpose()?;
    let to = args.to.as_deref().map(Regex::new).transpose()?;
    let kernel = kbuild::build_kernel()?;
    let q = QemuArgs {
        profile: args.profile.clone(),
        iommu: args.iommu.clone(),
        append: args.append.clone(),
        timeout: 600,
        ..Default::default()
    };
    let dir = target_dir().join("profile");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("qemu.perf.data");
    let mut argv: Vec<String> = [
        "perf",
        "record",
        "-q",
        "-F",
        &FREQUENCY.to_string(),
        "-k",
        "CLOCK_MONOTONIC",
        "--call-graph",
        "dwarf,16384",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(data.display().to_string());
    argv.push("--".into());
    argv.extend(qemu::command_line(&q, &kernel)?);
    eprintln!("$ {}", qemu::shell_line(&argv));
    let (mut start, mut end) = (None, None);
    let log = target_dir().join("qemu-logs/profile-host.log");
    qemu::run_watching(&argv, Duration::from_secs(600), &log, |line| {
        if start.is_none() && from.as_ref().is_some_and(|r| r.is_match(line)) {
            start = Some(monotonic());
        }
        if end.is_none() && to.as_ref().is_some_and(|r| r.is_match(line)) {
            end = Some(monotonic());
        }
    })?;
    if from.is_some() && start.is_none() {
        bail!("no line matched --from (log: {})", log.display());
    }
    if to.is_some() && end.is_none() {
        bail!("no line matched --to (log: {})", log.display());
    }
    let samples = perf_script(&data)?;
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| start.is_none_or(|t| s.time >= t) && end.is_none_or(|t| s.time <= t))
        .collect();
    if window.is_empty() {
        bail!("no samples in the window (data: {})", data.display());
    }
    let mut by_where: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &window {
        let frames: Vec<(&str, &str)> = s
            .frames
            .iter()
            .map(|(f, d)| (f.as_str(), d.as_str()))
            .collect();
        *by_where.entry(classify(&frames)).or_default() += 1;
    }
    let mut rows: Vec<(&str, usize)> = by_where.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let ms = |n: usize| n as f64 * 1e3 / f64::from(FREQUENCY);
    let span = match (window.first(), window.last()) {
        (Some(a), Some(b)) => (b.time - a.time) * 1e3,
        _ => 0.0,
    };
    println!(
        "{:.1} ms of host CPU over {span:.1} ms of the run ({} samples at {FREQUENCY} Hz; log: {})",
        ms(window.len()),
        window.len(),
        log.display()
    );
    for (what, n) in rows {
        println!(
            "{:>8.1} ms {:>5.1}%  {what}",
            ms(n),
            n as f64 * 100.0 / window.len() as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn perf_script(data: &Path) -> Result<Vec<Sample>> {
    let out = Command::new("perf")
        .args(["script", "-F", "time,ip,sym,dso", "-i"])
        .arg(data)
        .output()
        .context("running perf script")?;
    if !out.status.success() {
        bail!(
            "perf script failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_samples(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = " 1859.940047: \n\t    7efd8c0d5118 [unknown] (/tmp/perf-2975.map)\n\n \
        1859.968000: \n\t          997b1 __libc_calloc (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\t          \
        86fe99 smmu_translate (/usr/bin/qemu-system-aarch64)\n\t          bffe35 address_space_map \
        (/usr/bin/qemu-system-aarch64)\n\n 1860.000001: \n\tffffffff81ba4f70 _copy_to_iter \
        ([kernel.kallsyms])\n\tffffffff816dc794 vfs_read ([kernel.kallsyms])\n";

    #[test]
    fn perf_script_blocks_parse_into_timed_stacks() {
        let s = parse_samples(SCRIPT);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].time, 1859.940047);
        assert_eq!(
            s[1].frames[1],
            (
                "smmu_translate".to_string(),
                "/usr/bin/qemu-system-aarch64".to_string()
            )
        );
        assert_eq!(s[2].frames.len(), 2);
    }

    #[test]
    fn stacks_are_attributed_by_what_they_contain() {
        let s = parse_samples(SCRIPT);
        let class = |i: usize| {
            let f: Vec<(&str, &str)> = s[i]
                .frames
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            classify(&f)
        };
        assert_eq!(class(0), "running translated guest code");
        assert_eq!(class(1), "SMMUv3 model: DMA translation, IOTLB, commands");
        assert_eq!(class(2), "host kernel: the disk image's file I/O");
        let q = "/usr/bin/qemu-system-aarch64";
        assert_eq!(
            classify(&[("[unknown]", q), ("tb_gen_code", q), ("cpu_exec", q)]),
            "TCG: translating guest code"
        );
        assert_eq!(
            classify(&[("helper_crypto_sha256h", q)]),
            "emulated crypto instructions (SHA-256)"
        );
        assert_eq!(
            classify(&[("x", q), ("memory_region_dispatch_write", q)]),
            "device models (register accesses)"
        );
        assert_eq!(
            classify(&[("qht_lookup_custom", q), ("helper_lookup_tb_ptr", q)]),
            "TCG: indirect branches (every return, calls through pointers)"
        );
        assert_eq!(
            classify(&[("q_tree_lookup", q), ("cpu_io_recompile", q)]),
            "TCG: a register access mid-block (the block is re-run up to it)"
        );
        assert_eq!(classify(&[]), "unknown");
    }
}
