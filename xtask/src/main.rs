//! `cargo xtask`: the one entry point for building, running and testing the kernel.
//!
//! Every command installs what it is missing on first use (see `setup`), so a fresh clone needs
//! only Rust through rustup (and root on Debian bookworm for QEMU 10 and dtc).

mod bench;
mod disk;
mod dt_dma;
mod dt_variant;
mod fuzz;
mod kbuild;
mod lint;
mod profile;
mod qemu;
mod qemu_profile;
mod setup;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test the kernel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the kernel image (target/kernel.bin).
    Build,
    /// Build, boot on QEMU and stream the serial log; exits with the kernel's status.
    Qemu(qemu::QemuArgs),
    /// Host unit tests, then in-QEMU tests and scenarios; ends with "N passed, N failed".
    Test(test::TestArgs),
    /// Boot in bench mode across the mode matrix and report median/min/max per case.
    Bench(bench::BenchArgs),
    /// Boot with the sampling profiler on and print where guest time goes, by function.
    Profile(profile::ProfileArgs),
    /// Fuzz the device-tree parser and the bus model for a bounded time (libFuzzer).
    Fuzz(fuzz::FuzzArgs),
    /// Print the DMA topology of a device-tree blob.
    DtDma(dt_dma::DtDmaArgs),
    /// Dump QEMU's generated device trees into qemu/fixtures/ (one per profile).
    Dtb,
    /// List the broken device-tree variants (qemu/dt-variants.toml), build one, or boot with it.
    DtVariant(dt_variant::DtVariantArgs),
    /// rustfmt check and clippy for the host crates and for aarch64-unknown-none.
    Lint,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build => setup::ensure_rust()
            .and_then(|()| kbuild::build_kernel())
            .map(|p| {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }),
        Command::Qemu(args) => qemu::run_interactive(&args),
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Profile(args) => profile::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::DtDma(args) => dt_dma::run(&args),
        Command::Dtb => qemu::dump_dtbs().map(|()| ExitCode::SUCCESS),
        Command::DtVariant(args) => dt_variant::run(&args),
        Command::Lint => lint::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `target/` under the workspace root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}
