//! The default virtio-blk disk: 64 MiB of deterministic pseudo-random bytes, so a wrong sector, a
//! short read or a stale buffer shows up in the digest.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::target_dir;

/// Size of the generated disk.
pub const DEFAULT_DISK_SIZE: u64 = 64 << 20;

/// Generates `target/disk.img` if it is missing or the wrong size, and returns its path.
pub fn default_disk() -> Result<PathBuf> {
    let path = target_dir().join("disk.img");
    generate(&path, DEFAULT_DISK_SIZE, 0x5eed_d15c)?;
    Ok(path)
}

/// Writes `size` bytes of xorshift64* output seeded with `seed` to `path` (skipped when a file of
/// that size is already there).
pub fn generate(path: &Path, size: u64, seed: u64) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut x = seed | 1;
    let mut written = 0;
    while written < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        f.write_all(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes())?;
        written += 8;
    }
    f.flush()?;
    Ok(())
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_hex(path: &Path) -> Result<String> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
