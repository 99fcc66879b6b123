//! Passes the workspace's one linker script to the kernel link, by absolute path.
use std::path::Path;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("aarch64") && target.ends_with("-none") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../linker.ld");
        let script = script.canonicalize().unwrap_or(script);
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rerun-if-changed={}", script.display());
    }
}
