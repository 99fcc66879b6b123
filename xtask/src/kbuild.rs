//! Builds the kernel ELF and turns it into the flat arm64 Image QEMU boots.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, setup, target_dir};

/// The kernel's target triple.
pub const TARGET: &str = "aarch64-unknown-none";

/// Builds `target/kernel.bin` (release, the only profile the kernel is run with) and returns it.
pub fn build_kernel() -> Result<PathBuf> {
    setup::ensure_rust()?;
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "kernel",
            "--target",
            TARGET,
        ])
        .status()
        .context("running cargo build")?;
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
