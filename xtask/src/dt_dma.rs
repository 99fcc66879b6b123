//! `cargo xtask dt-dma <file.dtb> [--json]`: the DMA topology of a device tree.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

/// Arguments of `dt-dma`.
#[derive(clap::Args)]
pub struct DtDmaArgs {
    /// The device-tree blob.
    pub dtb: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dt-dma`.
pub fn run(args: &DtDmaArgs) -> Result<ExitCode> {
    bail!("dt-dma is not implemented yet ({})", args.dtb.display())
}
