//! `cargo xtask profile`: boots with the kernel's sampling profiler on (`profile=<us>`), by
//! default under `-icount` so samples are spaced by instruction count, and prints the functions
//! the samples fall in, symbolized with `llvm-nm` from the kernel ELF.
//!
//! The kernel samples on an FIQ that IRQ masking does not hold back, so time inside locked
//! sections is attributed where it is spent. With `bench=...` only the bench cases are kept
//! (the boot before them is dropped); without it, the profile covers the boot from interrupt
//! set-up on (use a `ktest=` filter that selects nothing to stop right after the devices bind).
//! `--host` profiles QEMU itself instead (`qemu_profile`).

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::qemu::{self, QemuArgs};
use crate::{kbuild, setup, target_dir};

/// Arguments of `profile`.
#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// What to run while sampling (kernel command line), e.g. `bench=dma_map_unmap_4k`; only
    /// the bench cases are kept when `bench=` is given.
    #[arg(long, default_value = "bench=all")]
    pub append: String,
    /// Sampling period in microseconds of guest time (at least 5; the FIQ handler costs about
    /// twenty instructions, but every sample is an exit from QEMU's translated code).
    #[arg(long, default_value_t = 50)]
    pub period_us: u64,
    /// Machine profile.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// `smmuv3` or `none`.
    #[arg(long)]
    pub iommu: Option<String>,
    /// Sample by real guest time instead of instruction count (no `-icount`).
    #[arg(long)]
    pub no_icount: bool,
    /// Functions to show.
    #[arg(long, default_value_t = 40)]
    pub top: usize,
    /// Profile QEMU on the host instead (`perf record` with call graphs, real time): where the
    /// host's time goes, sorted by what QEMU was doing.
    #[arg(long)]
    pub host: bool,
    /// With `--host`: start the window at the first serial-log line matching this regex.
    #[arg(long, requires = "host")]
    pub from: Option<String>,
    /// With `--host`: end the window at the first serial-log line matching this regex.
    #[arg(long, requires = "host")]
    pub to: Option<String>,
}

/// Function symbols of the kernel, sorted by address: (address, name).
fn symbols() -> Result<Vec<(u64, String)>> {
    let nm = setup::llvm_objcopy()?.with_file_name("llvm-nm");
    let elf = target_dir().join(kbuild::TARGET).join("release/kernel");
    let out = Command::new(&nm)
        .args(["-C", "--defined-only", "-n"])
        .arg(&elf)
        .output()
        .with_context(|| format!("running {}", nm.display()))?;
    if !out.status.success() {
        bail!("llvm-nm failed on {}", elf.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut syms: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let kind = it.next()?;
            let name = it.next()?;
            matches!(kind, "t" | "T").then(|| (addr, name.to_string()))
        })
        .collect();
    syms.sort_by_key(|s| s.0);
    Ok(syms)
}

fn function_of(syms: &[(u64, String)], pc: u64) -> &str {
    match syms.partition_point(|s| s.0 <= pc) {
        0 => "?",
        i => &syms[i - 1].1,
    }
}

/// Strips the hash suffix and generic noise to keep lines readable.
fn short(name: &str) -> String {
    let n = name
        .strip_suffix(|c: char| c.is_ascii_hexdigit())
        .map_or(name, |_| name);
    let n = match n.rfind("::h") {
        Some(i) if n[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => &n[..i],
        _ => n,
    };
    n.to_string()
}

/// Runs `profile`.
pub fn run(args: &ProfileArgs) -> Result<ExitCode> {
    if args.host {
        return crate::qemu_profile::run(args);
    }
    setup::ensure_qemu()?;
    let kernel = kbuild::build_kernel()?;
    let q = QemuArgs {
        profile: args.profile.clone(),
        iommu: args.iommu.clone(),
        append: format!("{} profile={} dma.debug=0", args.append, args.period_us),
        icount: !args.no_icount,
        timeout: 600,
        ..Default::default()
    };
    let argv = qemu::command_line(&q, &kernel)?;
    eprintln!("$ {}", qemu::shell_line(&argv));
    let log = target_dir().join("qemu-logs/profile.log");
    let r = qemu::run(&argv, Duration::from_secs(600), &log, false)?;
    let syms = symbols()?;
    let mut by_fn: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut total = 0;
    for l in &r.lines {
        let Some(rest) = l.strip_prefix("PROFILE pc=") else {
            continue;
        };
        let mut it = rest.split(" samples=");
        let (Some(pc), Some(n)) = (it.next(), it.next()) else {
            continue;
        };
        let (Ok(pc), Ok(n)) = (
            u64::from_str_radix(pc.trim_start_matches("0x"), 16),
            n.parse::<u64>(),
        ) else {
            continue;
        };
        *by_fn.entry(short(function_of(&syms, pc))).or_default() += n;
        total += n;
    }
    if total == 0 {
        bail!("no samples (log: {})", log.display());
    }
    let mut rows: Vec<(String, u64)> = by_fn.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    println!(
        "{total} samples every {} us of guest time{} (log: {})",
        args.period_us,
        if args.no_icount {
            ""
        } else {
            " (-icount: instruction-counted)"
        },
        log.display()
    );
    for (name, n) in rows.iter().take(args.top) {
        println!("{:>6.2}% {n:>7}  {name}", *n as f64 * 100.0 / total as f64);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_fall_in_the_preceding_symbol() {
        let syms = vec![(0x100, "a".to_string()), (0x200, "b".to_string())];
        assert_eq!(function_of(&syms, 0x80), "?");
        assert_eq!(function_of(&syms, 0x100), "a");
        assert_eq!(function_of(&syms, 0x1ff), "a");
        assert_eq!(function_of(&syms, 0x250), "b");
        assert_eq!(
            short("kapi::irq::handle_pending::h0123456789abcdef"),
            "kapi::irq::handle_pending"
        );
    }
}
