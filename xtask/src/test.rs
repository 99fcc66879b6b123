//! `cargo xtask test`: host unit tests, the fuzz targets for a bounded time, then the in-QEMU
//! tests and scenarios listed in `qemu/scenarios.toml`, counted together and ended with one
//! `N passed, N failed` line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use regex::Regex;
use serde::Deserialize;

use crate::qemu::{self, QemuArgs};
use crate::{dt_variant, fuzz, kbuild, root, setup, target_dir};

/// Arguments of `test`.
#[derive(clap::Args, Debug, Default)]
pub struct TestArgs {
    /// Only the host unit tests.
    #[arg(long, conflicts_with = "qemu")]
    pub host: bool,
    /// Only the QEMU tests.
    #[arg(long)]
    pub qemu: bool,
    /// Only scenarios whose name matches this glob (e.g. `2*`).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Instead of the scenario list: one boot of the default profile with `ktest=<FILTER>`.
    #[arg(long)]
    pub ktest: Option<String>,
    /// QEMU instances run at once (default: CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Skip the fuzz targets (run after the host tests unless `--qemu`).
    #[arg(long)]
    pub no_fuzz: bool,
    /// Skip rustfmt and clippy (run after the host tests unless `--qemu`).
    #[arg(long)]
    pub no_lint: bool,
    /// Seconds each fuzz target runs (default: `cargo xtask fuzz`'s).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub fuzz_seconds: Option<u64>,
}

/// One whole-boot test, as written in `qemu/scenarios.toml`.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// `NN_area_behaviour`.
    pub name: String,
    /// What it shows (documentation in the file; not used by the runner).
    #[serde(default)]
    #[allow(dead_code)]
    pub description: String,
    /// Machine profile.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// `smmuv3` / `none` override.
    pub iommu: Option<String>,
    /// Kernel command line.
    #[serde(default)]
    pub append: String,
    /// Extra QEMU arguments.
    #[serde(default)]
    pub qemu_args: Vec<String>,
    /// Boot with this broken variant of QEMU's device tree (`qemu/dt-variants.toml`), built for
    /// the scenario's machine before the run.
    pub dtb: Option<String>,
    /// Expected exit status.
    #[serde(default)]
    pub exit: i32,
    /// Regexes that must match lines of the log, in this order.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Regexes that must match no line.
    #[serde(default)]
    pub reject: Vec<String>,
    /// Regexes that must match exactly one line each (something reported once, not repeated).
    #[serde(default)]
    pub once: Vec<String>,
    /// Exactly this many lines at error level (`<subsystem>: error: ...`), when set: bad input
    /// is reported once, as an error, and nothing else goes wrong.
    #[serde(default)]
    pub errors: Option<usize>,
    /// Count each `KTEST` result of the run as a test of its own.
    #[serde(default)]
    pub ktests: bool,
    /// Seconds before QEMU is killed.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Attach a private, writable copy of the default disk (for write tests).
    #[serde(default)]
    pub scratch_disk: bool,
    /// Instead of the default disk, one of its own of this many bytes (pseudo-random, seeded by
    /// the scenario's name), as `cargo xtask qemu --disk` would attach it; the kernel's digest
    /// of it must match the file's, as `cargo xtask qemu` checks.
    #[serde(default)]
    pub disk_size: Option<u64>,
}

fn default_profile() -> String {
    "default".into()
}
fn default_timeout() -> u64 {
    90
}

#[derive(Deserialize)]
struct ScenarioFile {
    scenario: Vec<Scenario>,
}

/// Reads `qemu/scenarios.toml`.
pub fn scenarios() -> Result<Vec<Scenario>> {
    let path = root().join("qemu/scenarios.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let f: ScenarioFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut seen = std::collections::BTreeSet::new();
    for s in &f.scenario {
        if !seen.insert(s.name.clone()) {
            bail!("scenario `{}` is listed twice", s.name);
        }
    }
    Ok(f.scenario)
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<(String, String)>,
    skipped: usize,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed.extend(other.failed);
        self.skipped += other.skipped;
    }
}

/// Host unit tests of every host-buildable crate.
fn host_tests() -> Result<Tally> {
    setup::ensure_rust()?;
    eprintln!("host: cargo test (log: target/test-logs/host.log)");
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["test", "--no-fail-fast", "--color", "never"])
        .output()
        .context("running cargo test")?;
    let log = target_dir().join("test-logs/host.log");
    std::fs::create_dir_all(log.parent().context("log dir")?)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&log, &text)?;
    let mut t = Tally::default();
    let line = Regex::new(r"^test (\S+) \.\.\. (ok|FAILED|ignored)").expect("valid regex");
    for l in text.lines() {
        if let Some(c) = line.captures(l) {
            match &c[2] {
                "ok" => t.passed += 1,
                "ignored" => t.skipped += 1,
                _ => t.failed.push((
                    format!("host {}", &c[1]),
                    "failed (see target/test-logs/host.log)".into(),
                )),
            }
        }
    }
    if !out.status.success() && t.failed.is_empty() {
        t.failed.push((
            "host build".into(),
            "cargo test failed before running tests (see target/test-logs/host.log)".into(),
        ));
    }
    eprintln!(
        "host: {} passed, {} failed, {} ignored",
        t.passed,
        t.failed.len(),
        t.skipped
    );
    Ok(t)
}

/// The fuzz step (`cargo xtask fuzz` for a bounded time): each target and each harness
/// self-test counts as one test.
fn fuzz_tests(args: &TestArgs) -> Tally {
    let seconds = args.fuzz_seconds.unwrap_or(fuzz::DEFAULT_SECONDS);
    let mut t = Tally::default();
    for c in fuzz::checks(seconds, &[], None) {
        match c.result {
            Ok(()) => t.passed += 1,
            Err(why) => t.failed.push((c.name, why)),
        }
    }
    eprintln!("fuzz: {} passed, {} failed", t.passed, t.failed.len());
    t
}

/// A kernel log line at error level: `[time] <subsystem>: error: ...`.
fn is_error_line(line: &str) -> bool {
    line.starts_with('[') && line.contains(": error: ")
}

/// A kernel log line (it starts with the timestamp) in the form the serial log promises:
/// `[    0.012345] <subsystem> <device>: <message>`, the device optional; continuation lines of
/// a dump indent their message.
fn is_well_formed_log_line(line: &str) -> bool {
    static FORM: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^\[ *\d+\.\d{6}\] [a-z][a-z0-9_-]*( \S+)?: .*\S").expect("log line regex")
    });
    !line.starts_with('[') || FORM.is_match(line)
}

/// Checks one finished run against its scenario; with `disk`, also that the kernel's digest of
/// the disk is the file's.
fn judge(s: &Scenario, r: &qemu::RunResult, disk: Option<&std::path::Path>) -> Tally {
    let mut t = Tally::default();
    let log = r.log.display().to_string();
    let mut problems = Vec::new();
    let mut wrong_exit = None;
    if r.timed_out {
        problems.push(format!("timed out after {} s", s.timeout));
    } else if r.exit_code != Some(s.exit) {
        wrong_exit = Some(format!(
            "exit status {:?}, expected {}",
            r.exit_code, s.exit
        ));
    }
    let mut compile = |kind: &str, pattern: &str| match Regex::new(pattern) {
        Ok(re) => Some(re),
        Err(e) => {
            problems.push(format!("bad {kind} regex `{pattern}`: {e}"));
            None
        }
    };
    let expect: Vec<_> = s.expect.iter().map(|p| (p, compile("expect", p))).collect();
    let reject: Vec<_> = s.reject.iter().map(|p| (p, compile("reject", p))).collect();
    let once: Vec<_> = s.once.iter().map(|p| (p, compile("once", p))).collect();
    let mut from = 0;
    for (pattern, re) in &expect {
        let Some(re) = re else { continue };
        match r.lines[from..].iter().position(|l| re.is_match(l)) {
            Some(i) => from += i + 1,
            None => {
                problems.push(format!("expected line not found (in order): `{pattern}`"));
                break;
            }
        }
    }
    for (pattern, re) in &reject {
        if let Some(re) = re
            && let Some(l) = r.lines.iter().find(|l| re.is_match(l))
        {
            problems.push(format!("unexpected line `{l}` (matches `{pattern}`)"));
        }
    }
    for (pattern, re) in &once {
        if let Some(re) = re {
            let n = r.lines.iter().filter(|l| re.is_match(l)).count();
            if n != 1 {
                problems.push(format!("{n} lines match `{pattern}`, expected exactly one"));
            }
        }
    }
    if let Some(l) = r.lines.iter().find(|l| !is_well_formed_log_line(l)) {
        problems.push(format!(
            "log line `{l}` is not `[seconds.micros] <subsystem> <device>: <message>`"
        ));
    }
    if let Some(image) = disk {
        match qemu::check_disk_digest(&r.lines, image) {
            Ok(qemu::DigestCheck::Match(_)) => {}
            Ok(qemu::DigestCheck::Mismatch { kernel, file }) => problems.push(format!(
                "the kernel read sha256 {kernel}, {} is {file}",
                image.display()
            )),
            Ok(qemu::DigestCheck::NotPrinted) => {
                problems.push("the kernel printed no disk digest".into())
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if let Some(want) = s.errors {
        let errors: Vec<&String> = r.lines.iter().filter(|l| is_error_line(l)).collect();
        if errors.len() != want {
            problems.push(format!(
                "{} error lines, expected {want}: {errors:?}",
                errors.len()
            ));
        }
    }
    if s.ktests {
        let prefix = if s.name == "01_ktest_all" {
            String::new()
        } else {
            format!("{}/", s.name)
        };
        let mut running: Option<String> = None;
        let mut ended = false;
        for l in &r.lines {
            let Some(rest) = l.strip_prefix("KTEST ") else {
                continue;
            };
            let (kind, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            // Names contain `::`; SKIP lines put a `:` right after the name.
            let name = tail
                .split(' ')
                .next()
                .unwrap_or("")
                .trim_end_matches(':')
                .to_string();
            match kind {
                "RUN" => running = Some(name),
                "PASS" => {
                    t.passed += 1;
                    running = None;
                }
                "SKIP" => {
                    t.skipped += 1;
                    running = None;
                }
                "FAIL" => {
                    t.failed.push((
                        format!("{prefix}{name}"),
                        tail[name.len()..].trim_start().to_string(),
                    ));
                    running = None;
                }
                "END" => ended = true,
                _ => {}
            }
        }
        if let Some(name) = running {
            t.failed.push((
                format!("{prefix}{name}"),
                format!("no result (the run ended inside it; log: {log})"),
            ));
        }
        if !ended {
            problems.push("no `KTEST END` line".into());
        }
        // A failing test makes the kernel exit with 1: that is the same failure, counted once.
        let explained = !t.failed.is_empty() && r.exit_code == Some(1);
        if !explained {
            problems.extend(wrong_exit.take());
        }
        // A filter that selects nothing (a typo, or a broken kernel) must not read as a pass.
        if r.lines
            .iter()
            .any(|l| l.starts_with("KTEST START total=0 "))
        {
            problems.push("the filter selected no test".into());
        }
        if !problems.is_empty() {
            t.failed.push((
                s.name.clone(),
                format!("{} (log: {log})", problems.join("; ")),
            ));
        }
    } else if problems.is_empty() && wrong_exit.is_none() {
        t.passed += 1;
    } else {
        problems.extend(wrong_exit);
        t.failed.push((
            s.name.clone(),
            format!("{} (log: {log})", problems.join("; ")),
        ));
    }
    t
}

fn run_scenario(s: &Scenario, kernel: &std::path::Path) -> Result<(Tally, Duration)> {
    let mut args = QemuArgs {
        profile: s.profile.clone(),
        iommu: s.iommu.clone(),
        append: s.append.clone(),
        extra: s.qemu_args.clone(),
        timeout: s.timeout,
        ..Default::default()
    };
    if s.scratch_disk {
        let scratch = target_dir()
            .join("qemu-logs")
            .join(format!("{}.img", s.name));
        std::fs::create_dir_all(target_dir().join("qemu-logs"))?;
        std::fs::copy(crate::disk::default_disk()?, &scratch)
            .with_context(|| format!("copying the disk to {}", scratch.display()))?;
        args.disk = Some(scratch);
        args.scratch_disk = true;
    }
    if let Some(size) = s.disk_size {
        let image = target_dir()
            .join("qemu-logs")
            .join(format!("{}.img", s.name));
        let seed = s
            .name
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(7) ^ u64::from(b));
        crate::disk::generate(&image, size, seed)?;
        args.disk = Some(image);
    }
    let mut argv = qemu::command_line(&args, kernel)?;
    if let Some(name) = &s.dtb {
        let dtb = dt_variant::build(&dt_variant::find(name)?, &argv, &s.name)?;
        argv.extend(["-dtb".into(), dtb.display().to_string()]);
    }
    let log = target_dir()
        .join("qemu-logs")
        .join(format!("{}.log", s.name));
    let r = qemu::run(&argv, Duration::from_secs(s.timeout), &log, false)?;
    let own_disk = args.disk.as_deref().filter(|_| s.disk_size.is_some());
    Ok((judge(s, &r, own_disk), r.wall))
}

fn glob(pattern: &str, name: &str) -> bool {
    let re = format!(
        "^{}$",
        regex::escape(pattern)
            .replace(r"\*", ".*")
            .replace(r"\?", ".")
    );
    Regex::new(&re).is_ok_and(|r| r.is_match(name))
}

fn qemu_tests(args: &TestArgs) -> Result<Tally> {
    setup::ensure_qemu()?;
    let kernel: PathBuf = kbuild::build_kernel()?;
    let list: Vec<Scenario> = match &args.ktest {
        Some(filter) => vec![Scenario {
            name: "ktest".into(),
            description: String::new(),
            profile: default_profile(),
            iommu: None,
            append: format!("ktest={filter}"),
            qemu_args: Vec::new(),
            dtb: None,
            exit: 0,
            expect: Vec::new(),
            reject: Vec::new(),
            once: Vec::new(),
            errors: None,
            ktests: true,
            timeout: 300,
            scratch_disk: false,
            disk_size: None,
        }],
        None => scenarios()?
            .into_iter()
            .filter(|s| args.scenario.as_deref().is_none_or(|g| glob(g, &s.name)))
            .collect(),
    };
    if list.is_empty() {
        bail!("no scenario matches");
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    eprintln!(
        "qemu: {} scenarios, {} at a time (logs: target/qemu-logs/)",
        list.len(),
        jobs
    );
    let queue = Arc::new(Mutex::new(list.into_iter().enumerate().collect::<Vec<_>>()));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (queue, results, kernel) = (queue.clone(), results.clone(), kernel.clone());
            scope.spawn(move || {
                loop {
                    let next = queue.lock().expect("queue lock").pop();
                    let Some((i, s)) = next else { break };
                    let outcome = run_scenario(&s, &kernel);
                    match &outcome {
                        Ok((t, wall)) if t.failed.is_empty() => {
                            let extra = if s.ktests {
                                format!(" ({} tests)", t.passed + t.skipped)
                            } else {
                                String::new()
                            };
                            eprintln!(
                                "qemu {} ... ok{extra} [{:.1} s]",
                                s.name,
                                wall.as_secs_f64()
                            );
                        }
                        Ok((t, _)) => {
                            eprintln!("qemu {} ... FAILED ({} failures)", s.name, t.failed.len())
                        }
                        Err(e) => eprintln!("qemu {} ... ERROR {e:#}", s.name),
                    }
                    results
                        .lock()
                        .expect("results lock")
                        .insert(i, (s.name.clone(), outcome));
                }
            });
        }
    });
    let mut total = Tally::default();
    let results = std::mem::take(&mut *results.lock().expect("results lock"));
    for (_, (name, outcome)) in results {
        match outcome {
            Ok((t, _)) => total.merge(t),
            Err(e) => total.failed.push((name, format!("{e:#}"))),
        }
    }
    Ok(total)
}

/// `cargo xtask lint`'s checks, one test each: the tree must be formatted and clippy-clean.
fn lint_checks() -> Result<Tally> {
    eprintln!("lint: rustfmt and clippy (cargo xtask lint)");
    let mut t = Tally::default();
    for (what, ok) in crate::lint::checks()? {
        if ok {
            t.passed += 1;
        } else {
            t.failed
                .push((format!("lint {what}"), "see the output above".into()));
        }
    }
    eprintln!("lint: {} passed, {} failed", t.passed, t.failed.len());
    Ok(t)
}

/// Runs the selected tests; exit status 1 on any failure.
pub fn run(args: &TestArgs) -> Result<ExitCode> {
    let mut total = Tally::default();
    if !args.qemu && args.ktest.is_none() && args.scenario.is_none() {
        // Before the host tests: some of them compile device-tree fixtures with dtc.
        setup::ensure_dtc()?;
        total.merge(host_tests()?);
        if !args.no_lint {
            total.merge(lint_checks()?);
        }
        if !args.no_fuzz {
            total.merge(fuzz_tests(args));
        }
    }
    if !args.host {
        total.merge(qemu_tests(args)?);
    }
    if !total.failed.is_empty() {
        eprintln!("\nfailures:");
        for (name, why) in &total.failed {
            eprintln!("  {name}: {why}");
        }
        eprintln!();
    }
    let mut summary = format!("{} passed, {} failed", total.passed, total.failed.len());
    if total.skipped > 0 {
        summary.push_str(&format!(", {} skipped", total.skipped));
    }
    println!("{summary}");
    Ok(if total.failed.is_empty() && total.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(lines: &[&str], exit: Option<i32>) -> qemu::RunResult {
        qemu::RunResult {
            exit_code: exit,
            lines: lines.iter().map(|s| s.to_string()).collect(),
            timed_out: false,
            wall: Duration::ZERO,
            log: PathBuf::from("x.log"),
        }
    }

    fn scenario(ktests: bool) -> Scenario {
        toml::from_str::<ScenarioFile>(&format!(
            "[[scenario]]\nname = \"10_x\"\nexpect = [\"a\", \"b\"]\nreject = [\"panic\"]\nktests = {ktests}\n"
        ))
        .unwrap()
        .scenario
        .remove(0)
    }

    #[test]
    fn expected_lines_must_appear_in_order() {
        let s = scenario(false);
        assert_eq!(
            judge(&s, &result(&["a", "x", "b"], Some(0)), None).passed,
            1
        );
        let t = judge(&s, &result(&["b", "a"], Some(0)), None);
        assert_eq!(t.failed.len(), 1);
        assert!(t.failed[0].1.contains("`b`"), "{:?}", t.failed);
    }

    #[test]
    fn a_once_line_must_appear_exactly_once() {
        let mut s = scenario(false);
        s.once = vec!["overflowed".into()];
        assert_eq!(
            judge(&s, &result(&["a", "x overflowed", "b"], Some(0)), None).passed,
            1
        );
        for lines in [&["a", "b"][..], &["a", "overflowed", "overflowed", "b"][..]] {
            let t = judge(&s, &result(lines, Some(0)), None);
            assert!(
                t.failed[0].1.contains("expected exactly one"),
                "{:?}",
                t.failed
            );
        }
        s.once = vec!["(".into()];
        assert!(
            judge(&s, &result(&["a", "b"], Some(0)), None).failed[0]
                .1
                .contains("bad once regex")
        );
    }

    #[test]
    fn a_scenario_with_its_own_disk_needs_the_kernel_to_print_the_files_digest() {
        let dir = target_dir().join("test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("digest-judge.img");
        crate::disk::generate(&image, 4096, 3).unwrap();
        let digest = crate::disk::sha256_hex(&image).unwrap();
        let line =
            |d: &str| format!("[    0.500000] virtio-blk 0000:00:02.0: 4096 bytes, sha256 {d}");
        let s = scenario(false);
        let judged = |l: &str| judge(&s, &result(&["a", l, "b"], Some(0)), Some(&image));
        let ok = line(&digest);
        assert_eq!(judged(&ok).passed, 1, "{:?}", judged(&ok).failed);
        let other = ok.replace(&digest, &"0".repeat(64));
        assert!(
            judged(&other).failed[0]
                .1
                .contains("the kernel read sha256 0000")
        );
        assert!(
            judged("[    0.500000] kernel: boot complete").failed[0]
                .1
                .contains("printed no disk digest")
        );
    }

    #[test]
    fn kernel_log_lines_must_keep_the_documented_form() {
        for good in [
            "[    0.012345] mm: RAM [0x40000000-0x7fffffff] 1 GiB",
            "[    0.118944] iommu 0000:00:03.0: group 0, DMA domain (asid 1), stream 0x18 on 9050000.smmuv3",
            "[   12.000001] smmuv3 9050000.smmuv3: SMMUv3.1, S1+S2",
            "[    0.091312] kernel:   x0  0x0000000000000001 x1  0x0000000000000029",
            "KTEST PASS x::y us=3",
            "BENCH case=sha256 unit=MB/s value=80.000 iters=16",
        ] {
            assert!(is_well_formed_log_line(good), "{good}");
        }
        for bad in [
            "[    0.0123] mm: three digits",
            "[    0.012345] mm RAM without a colon",
            "[    0.012345] Mm: upper-case subsystem",
            "[    0.012345] mm: ",
            "[    0.012345]mm: no space",
        ] {
            assert!(!is_well_formed_log_line(bad), "{bad}");
        }
        let s = scenario(false);
        let t = judge(
            &s,
            &result(&["a", "[    0.1] kernel: short time", "b"], Some(0)),
            None,
        );
        assert!(
            t.failed[0].1.contains("is not `[seconds.micros]"),
            "{:?}",
            t.failed
        );
    }

    #[test]
    fn exit_status_and_rejected_lines_fail_a_scenario() {
        let s = scenario(false);
        assert!(
            judge(&s, &result(&["a", "b"], Some(1)), None).failed[0]
                .1
                .contains("exit status Some(1)")
        );
        assert!(
            judge(&s, &result(&["a", "kernel: panic", "b"], Some(0)), None).failed[0]
                .1
                .contains("unexpected line")
        );
    }

    #[test]
    fn ktest_lines_count_one_test_each_and_crashes_name_the_test() {
        let s = scenario(true);
        let t = judge(
            &s,
            &result(
                &[
                    "a",
                    "b",
                    "KTEST RUN x::one",
                    "KTEST PASS x::one us=3",
                    "KTEST RUN x::two",
                    "KTEST FAIL x::two at f.rs:1: boom",
                    "KTEST RUN x::three",
                    "KTEST SKIP x::three: no edu",
                    "KTEST END pass=1 fail=1 skip=1",
                ],
                Some(0),
            ),
            None,
        );
        assert_eq!((t.passed, t.skipped), (1, 1));
        assert_eq!(
            t.failed,
            [("10_x/x::two".to_string(), "at f.rs:1: boom".to_string())]
        );
        let none = judge(
            &s,
            &result(
                &[
                    "KTEST START total=0 filter=x::nope",
                    "KTEST END pass=0 fail=0 skip=0",
                ],
                Some(0),
            ),
            None,
        );
        assert_eq!(none.passed, 0);
        assert!(none.failed[0].1.contains("selected no test"));
        let crashed = judge(&s, &result(&["a", "b", "KTEST RUN x::one"], Some(2)), None);
        assert_eq!(crashed.failed[0].0, "10_x/x::one");
        assert!(crashed.failed[1].1.contains("no `KTEST END`"));
    }

    #[test]
    fn globs() {
        assert!(glob("2*", "20_smmu_probe"));
        assert!(!glob("2*", "12_x"));
        assert!(glob("*edu*", "22_edu_dma"));
    }

    #[test]
    fn scenario_file_parses_and_names_are_unique() {
        let list = scenarios().unwrap();
        assert!(
            list.iter()
                .all(|s| s.name.len() > 3 && s.name.as_bytes()[2] == b'_'),
            "names are NN_area_behaviour"
        );
        let profiles = qemu::profiles().unwrap();
        for s in &list {
            assert!(
                profiles.contains_key(&s.profile),
                "{}: unknown profile {}",
                s.name,
                s.profile
            );
        }
    }
}
