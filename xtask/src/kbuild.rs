//! Builds the kernel ELF and turns it into the flat arm64 Image QEMU boots.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};

use crate::{root, setup, target_dir};

/// The kernel's target triple.
pub const TARGET: &str = "aarch64-unknown-none";

/// What selects the kernel in a cargo command (`build`, `clippy`): release, the only profile
/// it is run with, for its target.
pub const KERNEL_SELECTION: [&str; 6] = [
    "--quiet",
    "--release",
    "--package",
    "kernel",
    "--target",
    TARGET,
];

/// Builds `target/kernel.bin` (release, the only profile the kernel is run with) and returns it.
pub fn build_kernel() -> Result<PathBuf> {
    setup::ensure_rust()?;
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(root())
        .arg("build")
        .args(KERNEL_SELECTION);
    let status = run_kernel_cargo(&mut build).context("running cargo build")?;
    if !status.success() {
        bail!("kernel build failed");
    }
    let elf = target_dir().join(TARGET).join("release/kernel");
    let bin = target_dir().join("kernel.bin");
    let objcopy = setup::llvm_objcopy()?;
    let status = Command::new(&objcopy)
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&bin)
        .status()
        .with_context(|| format!("running {}", objcopy.display()))?;
    if !status.success() {
        bail!("llvm-objcopy failed on {}", elf.display());
    }
    Ok(bin)
}

/// The first line of rustc's warning about `-C target-feature=-strict-align` (see
/// `.cargo/config.toml`). The flag is deliberate: Rust runs only with the MMU on, where
/// unaligned accesses to RAM are allowed, and without it the compiler splits every load it cannot
/// prove aligned into bytes (SHA-256 of the disk runs 2.5 times slower). rustc calls every
/// negative target feature it does not list "unstable", with no lint to allow it.
const STRICT_ALIGN_WARNING: &str =
    "warning: unknown and unstable feature specified for `-Ctarget-feature`: `strict-align`";

/// Runs a cargo command for the kernel target, passing its diagnostics through except the
/// known `strict-align` warning (its first line and the note lines under it).
pub fn run_kernel_cargo(cmd: &mut Command) -> Result<ExitStatus> {
    let mut child = cmd.stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().context("cargo's stderr")?;
    let mut skipping = false;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.starts_with(STRICT_ALIGN_WARNING) {
            skipping = true;
            continue;
        }
        if skipping && (line.trim().is_empty() || line.trim_start().starts_with(['|', '='])) {
            continue;
        }
        skipping = false;
        eprintln!("{line}");
    }
    Ok(child.wait()?)
}
