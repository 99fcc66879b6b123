//! `cargo xtask lint`: formatting and clippy, for the host crates and for the kernel target.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::{kbuild::TARGET, root, setup};

fn cargo(args: &[&str]) -> Result<bool> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(args)
        .status()
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
