//! `cargo xtask lint`: formatting and clippy, for the host crates and for the kernel target.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::kbuild::{self, KERNEL_SELECTION, TARGET};
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

/// Runs every lint: (what, passed) for each.
pub fn checks() -> Result<Vec<(&'static str, bool)>> {
    setup::ensure_rust()?;
    Ok(vec![
        ("rustfmt", cargo(&["fmt", "--all", "--", "--check"])?),
        (
            "clippy (host)",
            cargo(&["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"])?,
        ),
        (
            "clippy (kernel)",
            cargo(
                &[
                    &["clippy"][..],
                    &KERNEL_SELECTION,
                    &["--", "-D", "warnings"],
                ]
                .concat(),
            )?,
        ),
    ])
}

/// `cargo xtask lint`: fails if any lint does.
pub fn run() -> Result<ExitCode> {
    Ok(if checks()?.iter().all(|(_, ok)| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
