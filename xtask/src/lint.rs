//! `cargo xtask lint`: formatting and clippy, for the host crates and for the kernel target.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::kbuild::{self, TARGET};
use crate::{root, setup};

fn cargo(args: &[&str]) -> Result<bool> {
    eprintln!("$ cargo {}", args.join(" "));
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root()).args(args);
    let status = if args.contains(&TARGET) {
        kbuild::run_kernel_cargo(&mut cmd)
    } else {
        cmd.status().map_err(Into::into)
    }
    .context("running cargo")?;
    Ok(status.success())
}

/// Runs every lint; fails if any does.
pub fn run() -> Result<ExitCode> {
    setup::ensure_rust()?;
    let checks = [
        cargo(&["fmt", "--all", "--", "--check"])?,
        cargo(&["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"])?,
        cargo(&[
            "clippy",
            "--quiet",
            "--release",
            "--package",
            "kernel",
            "--target",
            TARGET,
            "--",
            "-D",
            "warnings",
        ])?,
    ];
    Ok(if checks.iter().all(|ok| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
