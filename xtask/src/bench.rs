//! `cargo xtask bench`: boots the kernel in bench mode across the mode matrix, repeats each
//! configuration, and reports median, minimum and maximum per case and mode.
//!
//! Modes: `smmu-strict`, `smmu-lazy`, `passthrough`, `no-iommu`, each also under
//! `-icount shift=N,sleep=off` (suffix `-icount`), where guest time advances with instructions
//! and repeats exactly run to run. `boot_wall` is host time from QEMU's start to the kernel's
//! "main job done" line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::qemu::{self, QemuArgs};
use crate::{kbuild, setup, target_dir};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Save the results as a named baseline (target/bench/NAME.json).
    #[arg(long)]
    pub save: Option<String>,
    /// Compare with a saved baseline.
    #[arg(long)]
    pub compare: Option<String>,
    /// Boots per configuration.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Only these modes (comma-separated, e.g. `smmu-strict,no-iommu`).
    #[arg(long, value_delimiter = ',')]
    pub modes: Vec<String>,
    /// Skip the `-icount` variants.
    #[arg(long)]
    pub no_icount: bool,
    /// Also run the host micro-benchmarks (criterion: IOVA allocator, io-pgtable).
    #[arg(long)]
    pub host: bool,
}

/// One configuration of the matrix.
struct Mode {
    name: &'static str,
    iommu: &'static str,
    append: &'static str,
}

const MODES: [Mode; 4] = [
    Mode {
        name: "smmu-strict",
        iommu: "smmuv3",
        append: "",
    },
    Mode {
        name: "smmu-lazy",
        iommu: "smmuv3",
        append: "iommu.strict=0",
    },
    Mode {
        name: "passthrough",
        iommu: "smmuv3",
        append: "iommu.passthrough=1",
    },
    Mode {
        name: "no-iommu",
        iommu: "none",
        append: "",
    },
];

/// One summarised result, as in the JSON file.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct BenchResult {
    /// Case name (`blk_seq_read_1m`, ...).
    pub case: String,
    /// Mode name, `-icount` suffixed for the deterministic variant.
    pub mode: String,
    /// Unit.
    pub unit: String,
    /// Median over runs.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Runs.
    pub runs: usize,
}

/// The JSON file.
#[derive(Serialize, Deserialize, Debug)]
pub struct BenchFile {
    /// QEMU version.
    pub qemu: String,
    /// Results.
    pub results: Vec<BenchResult>,
}

/// A parsed `BENCH` line: (case, unit, value).
fn parse_line(line: &str) -> Option<(String, String, f64)> {
    let rest = line.strip_prefix("BENCH ")?;
    let mut case = None;
    let mut unit = None;
    let mut value = None;
    for kv in rest.split_whitespace() {
        match kv.split_once('=')? {
            ("case", v) => case = Some(v.to_string()),
            ("unit", v) => unit = Some(v.to_string()),
            ("value", v) => value = v.parse::<f64>().ok(),
            _ => {}
        }
    }
    Some((case?, unit?, value?))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summarise(samples: BTreeMap<(String, String), (String, Vec<f64>)>) -> Vec<BenchResult> {
    samples
        .into_iter()
        .map(|((case, mode), (unit, mut v))| {
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let runs = v.len();
            BenchResult {
                case,
                mode,
                unit,
                median: median(&mut v),
                min,
                max,
                runs,
            }
        })
        .collect()
}

/// Runs the matrix.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    setup::ensure_qemu()?;
    let kernel = kbuild::build_kernel()?;
    let modes: Vec<&Mode> = MODES
        .iter()
        .filter(|m| args.modes.is_empty() || args.modes.iter().any(|s| s == m.name))
        .collect();
    if modes.is_empty() {
        bail!(
            "no such mode (have: {})",
            MODES.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        );
    }
    let variants: &[bool] = if args.no_icount {
        &[false]
    } else {
        &[false, true]
    };
    let mut samples: BTreeMap<(String, String), (String, Vec<f64>)> = BTreeMap::new();
    let mut failures = 0;
    for &icount in variants {
        for mode in &modes {
            let label = if icount {
                format!("{}-icount", mode.name)
            } else {
                mode.name.to_string()
            };
            for run in 0..args.runs {
                let q = QemuArgs {
                    profile: "default".into(),
                    iommu: Some(mode.iommu.to_string()),
                    append: format!("bench=all dma.debug=0 {}", mode.append)
                        .trim()
                        .to_string(),
                    icount,
                    timeout: 300,
                    ..Default::default()
                };
                let argv = qemu::command_line(&q, &kernel)?;
                let log = target_dir()
                    .join("bench-logs")
                    .join(format!("{label}-{run}.log"));
                let start = Instant::now();
                let mut main_done_at: Option<Duration> = None;
                let r = qemu::run_watching(&argv, Duration::from_secs(300), &log, |line| {
                    if main_done_at.is_none() && line.starts_with("BENCH case=boot_main_done ") {
                        main_done_at = Some(start.elapsed());
                    }
                })?;
                if r.exit_code != Some(0) {
                    eprintln!(
                        "bench {label} run {run}: exit status {:?} (log: {})",
                        r.exit_code,
                        log.display()
                    );
                    failures += 1;
                }
                let mut push = |case: String, unit: String, value: f64| {
                    samples
                        .entry((case, label.clone()))
                        .or_insert_with(|| (unit, Vec::new()))
                        .1
                        .push(value);
                };
                for (case, unit, value) in r.lines.iter().filter_map(|l| parse_line(l)) {
                    if icount && depends_on_host_io(&case) {
                        continue;
                    }
                    push(case, unit, value);
                }
                if let Some(t) = main_done_at {
                    push("boot_wall".into(), "ms".into(), t.as_secs_f64() * 1e3);
                }
                eprintln!(
                    "bench {label} run {} done ({:.2} s)",
                    run + 1,
                    r.wall.as_secs_f64()
                );
            }
        }
    }
    let results = summarise(samples);
    let qemu =
        setup::qemu_version().map_or_else(|| "unknown".into(), |(a, b, c)| format!("{a}.{b}.{c}"));
    let file = BenchFile { qemu, results };
    print_table(&file.results);
    for r in file.results.iter().filter(|r| r.runs < args.runs) {
        eprintln!(
            "bench: {} {} has {} of {} runs (see the logs in target/bench-logs/)",
            r.case, r.mode, r.runs, args.runs
        );
    }
    let json = serde_json::to_string_pretty(&file)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(name) = &args.save {
        let path = baseline(name);
        std::fs::create_dir_all(path.parent().context("bench dir")?)?;
        std::fs::write(&path, &json)?;
        eprintln!("saved baseline {name} ({})", path.display());
    }
    // After the results are written: a wrong baseline name must not lose a finished run.
    if let Some(name) = &args.compare {
        compare(&file, name)?;
    }
    if args.host {
        host_benches()?;
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Cases that wait for the disk. QEMU completes a disk request on a host thread, whenever the
/// host gets to it, so under `-icount` the instructions executed meanwhile differ from run to
/// run: those numbers would not repeat, and the `-icount` modes promise that they do. They are
/// real-time cases only.
fn depends_on_host_io(case: &str) -> bool {
    case.starts_with("blk_")
}

fn baseline(name: &str) -> PathBuf {
    target_dir().join("bench").join(format!("{name}.json"))
}

fn fmt_value(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn print_table(results: &[BenchResult]) {
    let mut modes: Vec<&str> = results.iter().map(|r| r.mode.as_str()).collect();
    modes.sort_unstable();
    modes.dedup();
    let mut cases: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.case.as_str(), r.unit.as_str()))
        .collect();
    cases.sort_unstable();
    cases.dedup();
    print!("{:<24} {:<5}", "case", "unit");
    for m in &modes {
        print!(" {m:>24}");
    }
    println!();
    for (case, unit) in cases {
        print!("{case:<24} {unit:<5}");
        for m in &modes {
            match results.iter().find(|r| r.case == case && r.mode == *m) {
                Some(r) => print!(
                    " {:>24}",
                    format!(
                        "{} ({}-{})",
                        fmt_value(r.median),
                        fmt_value(r.min),
                        fmt_value(r.max)
                    )
                ),
                None => print!(" {:>24}", "-"),
            }
        }
        println!();
    }
}

fn compare(now: &BenchFile, name: &str) -> Result<()> {
    let path = baseline(name);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading baseline {}", path.display()))?;
    let old: BenchFile = serde_json::from_str(&text)?;
    println!("\ncompared with {name} (QEMU {}):", old.qemu);
    let mut compared = 0;
    for r in &now.results {
        if let Some(o) = old
            .results
            .iter()
            .find(|o| o.case == r.case && o.mode == r.mode)
        {
            let delta = if o.median != 0.0 {
                (r.median - o.median) / o.median * 100.0
            } else {
                0.0
            };
            println!(
                "{:<24} {:<20} {:>12} -> {:>12} {} ({delta:+.1}%)",
                r.case,
                r.mode,
                fmt_value(o.median),
                fmt_value(r.median),
                r.unit
            );
            compared += 1;
        }
    }
    if compared == 0 {
        println!("nothing to compare: {name} has no result for these cases and modes");
    }
    Ok(())
}

fn host_benches() -> Result<()> {
    let status = std::process::Command::new(env!("CARGO"))
        .current_dir(crate::root())
        .args(["bench", "-p", "iova", "-p", "io-pgtable"])
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("host benchmarks failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_parse_and_summarise() {
        assert_eq!(
            parse_line("BENCH case=dma_map_unmap_4k unit=ns value=812.500 iters=20000"),
            Some(("dma_map_unmap_4k".into(), "ns".into(), 812.5))
        );
        assert_eq!(parse_line("[    0.1] bench: x"), None);
        assert_eq!(parse_line("BENCH case=x unit=ns"), None);
        let mut s = BTreeMap::new();
        s.insert(
            ("c".to_string(), "m".to_string()),
            ("ns".to_string(), vec![3.0, 1.0, 2.0]),
        );
        let r = summarise(s);
        assert_eq!(
            (r[0].median, r[0].min, r[0].max, r[0].runs),
            (2.0, 1.0, 3.0, 3)
        );
        let mut even = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut even), 2.5);
    }
}
