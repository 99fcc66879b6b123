//! `cargo xtask fuzz`: the libFuzzer targets in `kernel/crates/of/fuzz`, built with cargo-fuzz
//! and run for a bounded time each.
//!
//! - `dt_topology`: a device-tree blob through `of::dma_topology` and every boot-time accessor;
//! - `bus_model`: the bus model (`devmodel`) fed by the blob, with the kernel's DMA hook logic.
//!
//! The toolchain is stable: cargo-fuzz's nightly flags (`-Zsanitizer=address`, coverage passes)
//! are accepted with `RUSTC_BOOTSTRAP=1`. cargo-fuzz is installed from crates.io when missing;
//! libFuzzer itself is compiled from the `libfuzzer-sys` crate and needs a C++ compiler.
//!
//! Each run seeds `target/fuzz/corpus/<target>/` with the committed device trees (QEMU's, cut to
//! their blocks, and the `of` test fixtures), keeps what the fuzzer adds there for the next run
//! on this machine, and fails on any crash, timeout, leak or out-of-memory report; the input
//! that caused it is left in `target/fuzz/artifacts/<target>/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::{root, target_dir};

/// The fuzz crate, relative to the workspace root.
const FUZZ_DIR: &str = "kernel/crates/of/fuzz";
/// Every target, in the order they are reported.
pub const TARGETS: &[&str] = &["dt_topology", "bus_model"];
/// Seconds each target runs by default (targets run side by side, one per CPU).
pub const DEFAULT_SECONDS: u64 = 30;
/// cargo-fuzz release line installed when missing.
const CARGO_FUZZ_VERSION: &str = "0.13";
/// Longest input (the QEMU trees are about 8 KiB once cut to their blocks).
const MAX_LEN: usize = 16 * 1024;
/// One input running longer than this is a hang.
const INPUT_TIMEOUT_S: u64 = 10;
/// How long past its time a fuzzer may take to load its corpus and stop before it is killed.
const GRACE_S: u64 = 120;

/// Arguments of `fuzz`.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = DEFAULT_SECONDS, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Only this target (repeatable): `dt_topology`, `bus_model`.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Targets run at once (default: CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// What one target's run measured.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    execs: u64,
    seconds: f64,
    cov_start: u64,
    cov_end: u64,
    new_inputs: u64,
    corpus: u64,
}

/// One check of the fuzz step: a harness self-test or a target's run.
#[derive(Debug)]
pub struct Check {
    /// `fuzz <target>` or `fuzz-harness <test>`.
    pub name: String,
    /// `Err` says what failed and where to look.
    pub result: std::result::Result<(), String>,
}

fn cargo() -> Command {
    let mut c = Command::new(env!("CARGO"));
    c.current_dir(root());
    c
}

fn output_ok(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_logged(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("$ {what}");
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("`{what}` failed with {status}");
    }
    Ok(())
}

/// cargo-fuzz, installed from crates.io if missing, and a C++ compiler for libFuzzer.
fn ensure_tools() -> Result<()> {
    if output_ok(cargo().args(["fuzz", "--version"])).is_none() {
        run_logged(
            &format!("cargo install cargo-fuzz --locked --version ^{CARGO_FUZZ_VERSION}"),
            cargo().args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                &format!("^{CARGO_FUZZ_VERSION}"),
            ]),
        )?;
    }
    let has_cxx = || {
        ["c++", "g++", "clang++"]
            .iter()
            .any(|c| output_ok(Command::new(c).arg("--version")).is_some())
    };
    if !has_cxx() {
        // libFuzzer is C++.
        crate::setup::apt_install(&["g++"])
            .context("libFuzzer needs a C++ compiler (Debian: `apt-get install g++`)")?;
    }
    if !has_cxx() {
        bail!("libFuzzer needs a C++ compiler and none was found after installing g++");
    }
    Ok(())
}

fn host_triple() -> Result<String> {
    output_ok(Command::new("rustc").arg("-vV"))
        .and_then(|v| {
            v.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .context("cannot tell the host triple from `rustc -vV`")
}

fn fuzz_target_dir() -> PathBuf {
    target_dir().join("fuzz")
}

/// The harness's own tests (it builds without libFuzzer): a harness that stopped binding early
/// would fuzz nothing.
fn harness_tests() -> Vec<Check> {
    eprintln!("fuzz: harness self-tests");
    let out = cargo()
        .args([
            "test",
            "--no-default-features",
            "--color",
            "never",
            "--manifest-path",
        ])
        .arg(root().join(FUZZ_DIR).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(fuzz_target_dir())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return vec![failed(
                "fuzz-harness build",
                format!("running cargo test: {e}"),
            )];
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fuzz_target_dir().join("logs/harness.log");
    let _ = std::fs::create_dir_all(fuzz_target_dir().join("logs"));
    let _ = std::fs::write(&log, &text);
    let line = Regex::new(r"^test (\S+) \.\.\. (ok|FAILED)").expect("valid regex");
    let mut checks: Vec<Check> = text
        .lines()
        .filter_map(|l| line.captures(l))
        .map(|c| Check {
            name: format!("fuzz-harness {}", &c[1]),
            result: if &c[2] == "ok" {
                Ok(())
            } else {
                Err(format!("failed (see {})", log.display()))
            },
        })
        .collect();
    if !out.status.success() && checks.iter().all(|c| c.result.is_ok()) {
        checks.push(failed(
            "fuzz-harness build",
            format!("cargo test failed (see {})", log.display()),
        ));
    }
    checks
}

fn failed(name: &str, why: String) -> Check {
    Check {
        name: name.into(),
        result: Err(why),
    }
}

/// `blob` cut to the end of its structure and strings blocks, `totalsize` to match (QEMU pads
/// its trees to 1 MiB); anything that is not a plausible blob is kept as it is.
fn cut_to_blocks(blob: &[u8]) -> Vec<u8> {
    let word = |i: usize| {
        blob.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (Some(0xd00d_feed), Some(st), Some(str_), Some(st_size), Some(str_size)) =
        (word(0), word(2), word(3), word(9), word(8))
    else {
        return blob.to_vec();
    };
    let end = (st + st_size).max(str_ + str_size);
    if end < 40 || end > blob.len() {
        return blob.to_vec();
    }
    let mut out = blob[..end].to_vec();
    out[4..8].copy_from_slice(&(end as u32).to_be_bytes());
    out
}

/// The committed device trees, as `(file name in the corpus, bytes)`.
fn seeds() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (tag, dir) in [
        ("qemu", root().join("qemu/fixtures")),
        ("of", root().join("kernel/crates/of/tests/fixtures")),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dtb"))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            let stem = f
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into());
            out.push((format!("seed-{tag}-{stem}.dtb"), cut_to_blocks(&bytes)));
        }
    }
    if out.is_empty() {
        bail!("no seed device trees found");
    }
    Ok(out)
}

/// The numbers libFuzzer prints: `#N INITED cov: C ...`, `#N DONE cov: C ft: F corp: N/..b
/// ... exec/s: E`, and the `stat::` lines of `-print_final_stats`.
fn parse_stats(log: &str) -> Stats {
    let field = |line: &str, key: &str| -> Option<u64> {
        let rest = line.split(key).nth(1)?;
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let mut s = Stats::default();
    for line in log.lines() {
        if line.contains("INITED cov:") {
            s.cov_start = field(line, "cov:").unwrap_or(0);
        } else if line.contains("DONE ") && line.contains(" cov:") {
            s.cov_end = field(line, "cov:").unwrap_or(0);
            s.corpus = field(line, "corp:").unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            s.execs = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("stat::new_units_added:") {
            s.new_inputs = v.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // `Done 112731 runs in 61 second(s)`
            s.seconds = rest
                .split(" in ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0.0);
        }
    }
    s
}

/// What went wrong in a failed run, from its log: the panic message, or the sanitizer's or
/// libFuzzer's error line, and the input it saved.
fn failure_reason(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let what = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .map(|i| {
            let at = lines[i]
                .split("panicked at ")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(':');
            let msg = lines.get(i + 1).copied().unwrap_or("");
            format!("panicked at {at}: {msg}")
        })
        .or_else(|| {
            lines
                .iter()
                .find_map(|l| l.find("ERROR: ").map(|i| l[i..].trim().to_string()))
        })
        .unwrap_or_else(|| "exited with an error".into());
    let input = lines
        .iter()
        .find_map(|l| l.split("Test unit written to ").nth(1))
        .map(|p| format!("; input {}", p.trim()))
        .unwrap_or_default();
    format!("{what}{input}")
}

/// Runs one built target for `seconds`; its whole output goes to `target/fuzz/logs/<name>.log`.
fn run_target(bin: &Path, name: &str, seconds: u64) -> Result<Stats, String> {
    let dir = fuzz_target_dir();
    let corpus = dir.join("corpus").join(name);
    let artifacts = dir.join("artifacts").join(name);
    let log_path = dir.join("logs").join(format!("{name}.log"));
    let prepare = || -> Result<()> {
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        for (file, bytes) in seeds()? {
            std::fs::write(corpus.join(file), bytes)?;
        }
        Ok(())
    };
    prepare().map_err(|e| format!("preparing the corpus: {e:#}"))?;
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut artifact_prefix = artifacts.into_os_string();
    artifact_prefix.push("/");
    let mut child = Command::new(bin)
        .arg(&corpus)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!(
            "-dict={}",
            root().join(FUZZ_DIR).join("dt.dict").display()
        ))
        .arg({
            let mut a = std::ffi::OsString::from("-artifact_prefix=");
            a.push(&artifact_prefix);
            a
        })
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    // libFuzzer stops itself; this only guards against the fuzzer itself hanging.
    let deadline = Instant::now() + Duration::from_secs(seconds + GRACE_S);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running {GRACE_S} s past its time; killed (log: {})",
                    log_path.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for {name}: {e}")),
        }
    };
    let mut text = String::new();
    std::fs::File::open(&log_path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let stats = parse_stats(&text);
    let reported = [
        "==ERROR:",
        "ERROR: libFuzzer",
        "SUMMARY: libFuzzer",
        "LeakSanitizer",
    ]
    .iter()
    .any(|m| text.contains(m));
    if !status.success() || reported {
        return Err(format!(
            "{} after {} runs (log: {}; reproduce: {} <input>)",
            failure_reason(&text),
            stats.execs,
            log_path.display(),
            bin.display()
        ));
    }
    if stats.execs == 0 {
        return Err(format!("no input was run (log: {})", log_path.display()));
    }
    Ok(stats)
}

fn summary(name: &str, r: &Result<Stats, String>) -> String {
    match r {
        Ok(s) => format!(
            "fuzz {name}: ok, {} execs in {:.0} s ({:.0}/s), coverage {} -> {} (+{}), {} new \
             inputs (corpus {}), 0 crashes",
            s.execs,
            s.seconds,
            s.execs as f64 / s.seconds.max(1.0),
            s.cov_start,
            s.cov_end,
            s.cov_end.saturating_sub(s.cov_start),
            s.new_inputs,
            s.corpus
        ),
        Err(why) => format!("fuzz {name}: FAILED: {why}"),
    }
}

/// Harness self-tests, then every selected target for `seconds`: one [`Check`] each. Set-up
/// problems (installing cargo-fuzz, building) are failed checks too, so a caller counting tests
/// sees them.
pub fn checks(seconds: u64, only: &[String], jobs: Option<usize>) -> Vec<Check> {
    let started = Instant::now();
    let selected: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
        .collect();
    if let Some(unknown) = only.iter().find(|o| !TARGETS.contains(&o.as_str())) {
        return vec![failed(
            &format!("fuzz {unknown}"),
            format!("no such target (targets: {})", TARGETS.join(", ")),
        )];
    }
    let mut out = harness_tests();
    let built = ensure_tools().and_then(|()| build(&selected));
    let bins = match built {
        Ok(b) => b,
        Err(e) => {
            out.push(failed("fuzz build", format!("{e:#}")));
            return out;
        }
    };
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    eprintln!(
        "fuzz: {} targets, {seconds} s each, {jobs} at a time (logs: target/fuzz/logs/)",
        bins.len()
    );
    let queue = Mutex::new(bins.iter().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(bins.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue").pop();
                    let Some((name, bin)) = next else { break };
                    let r = run_target(bin, name, seconds);
                    eprintln!("{}", summary(name, &r));
                    results.lock().expect("results").push((name.clone(), r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(n, _)| TARGETS.iter().position(|t| t == n));
    for (name, r) in results {
        out.push(Check {
            name: format!("fuzz {name}"),
            result: r.map(|_| ()),
        });
    }
    eprintln!("fuzz: done in {:.0} s", started.elapsed().as_secs_f64());
    out
}

/// Builds the targets with cargo-fuzz; returns `(name, binary)` for each.
fn build(targets: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let triple = host_triple()?;
    let dir = fuzz_target_dir();
    let started = Instant::now();
    for t in targets {
        run_logged(
            &format!("RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir {FUZZ_DIR} {t}"),
            cargo()
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "build", "--fuzz-dir"])
                .arg(root().join(FUZZ_DIR))
                .arg("--target-dir")
                .arg(&dir)
                .args(["--target", &triple, t]),
        )?;
    }
    eprintln!("fuzz: built in {:.0} s", started.elapsed().as_secs_f64());
    Ok(targets
        .iter()
        .map(|t| {
            let bin = dir.join(&triple).join("release").join(t);
            (t.to_string(), bin)
        })
        .collect())
}

/// `cargo xtask fuzz`: one line per target as it ends (and one per failed set-up step or
/// harness test), then the count; exits 1 on any failure.
pub fn run(args: &FuzzArgs) -> Result<ExitCode> {
    let checks = checks(args.seconds, &args.targets, args.jobs);
    let mut failures = 0;
    for c in &checks {
        if let Err(why) = &c.result {
            failures += 1;
            // A target's own line was printed when it ended.
            let target_line = TARGETS.iter().any(|t| c.name == format!("fuzz {t}"));
            if !target_line {
                eprintln!("{}: FAILED: {why}", c.name);
            }
        }
    }
    println!("{} passed, {failures} failed", checks.len() - failures);
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_statistics_are_read() {
        let log = "\
INFO: Seed: 1
#168\tINITED cov: 2476 ft: 6759 corp: 136/439Kb exec/s: 0 rss: 74Mb
#300\tNEW    cov: 2480 ft: 6800 corp: 137/440Kb lim: 8051 exec/s: 0 rss: 74Mb
#112731\tDONE   cov: 2717 ft: 10097 corp: 659/2326Kb lim: 8051 exec/s: 1848 rss: 499Mb
Done 112731 runs in 61 second(s)
stat::number_of_executed_units: 112731
stat::average_exec_per_sec:     1848
stat::new_units_added:          523
";
        assert_eq!(
            parse_stats(log),
            Stats {
                execs: 112_731,
                seconds: 61.0,
                cov_start: 2476,
                cov_end: 2717,
                new_inputs: 523,
                corpus: 659,
            }
        );
    }

    #[test]
    fn a_crash_names_the_panic_and_the_saved_input() {
        let log = "\
thread '<unnamed>' (5734) panicked at src/bus/mod.rs:352:13:
a report line spans several lines
==5734== ERROR: libFuzzer: deadly signal
artifact_prefix='x/'; Test unit written to x/crash-0563
";
        assert_eq!(
            failure_reason(log),
            "panicked at src/bus/mod.rs:352:13: a report line spans several lines; input x/crash-0563"
        );
        let leak =
            "==1==ERROR: LeakSanitizer: detected memory leaks\nTest unit written to y/leak-1\n";
        assert_eq!(
            failure_reason(leak),
            "ERROR: LeakSanitizer: detected memory leaks; input y/leak-1"
        );
    }

    #[test]
    fn qemu_trees_are_cut_to_their_blocks() {
        let qemu = std::fs::read(root().join("qemu/fixtures/default.dtb")).unwrap();
        let cut = cut_to_blocks(&qemu);
        assert!(cut.len() < 16 * 1024 && cut.len() < qemu.len());
        assert_eq!(&cut[4..8], &(cut.len() as u32).to_be_bytes());
        assert!(of::DeviceTree::parse(&cut).is_ok());
        assert_eq!(cut_to_blocks(b"not a blob"), b"not a blob");
        for (name, seed) in seeds().unwrap() {
            assert!(
                seed.len() <= MAX_LEN,
                "{name} is longer than the fuzzers' inputs"
            );
        }
    }
}
