//! Installs what the commands need on a fresh machine: the Rust target and llvm-tools (through
//! rustup and rust-toolchain.toml), QEMU 10 from Debian bookworm-backports, and dtc.
//!
//! Installing packages needs root on Debian bookworm; anywhere else we stop with one line that
//! says what to install.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// Oldest QEMU whose `virt` SMMUv3 model this kernel is written against.
pub const MIN_QEMU_MAJOR: u32 = 10;
const QEMU: &str = "qemu-system-aarch64";
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ {cmd} {}", args.join(" "));
    let status = Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running {cmd}"))?;
    if !status.success() {
        bail!("`{cmd} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// The host's LLVM objcopy from the `llvm-tools` component.
pub fn llvm_objcopy() -> Result<PathBuf> {
    let sysroot = output("rustc", &["--print", "sysroot"]).context("rustc not found")?;
    let host = output("rustc", &["-vV"])
        .and_then(|v| {
            v.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .context("cannot tell the host triple from `rustc -vV`")?;
    Ok(PathBuf::from(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy"))
}

/// The aarch64 target and llvm-tools. rust-toolchain.toml makes rustup install both on the first
/// cargo call; this covers toolchains set up some other way.
pub fn ensure_rust() -> Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    let installed = output("rustup", &["target", "list", "--installed"]);
    match installed {
        Some(list) if list.lines().any(|l| l.trim() == "aarch64-unknown-none") => {}
        Some(_) => run("rustup", &["target", "add", "aarch64-unknown-none"])?,
        None => bail!("rustup not found: install Rust with rustup (https://rustup.rs), then rerun"),
    }
    if !llvm_objcopy()?.exists() {
        run("rustup", &["component", "add", "llvm-tools"])?;
    }
    let _ = DONE.set(());
    Ok(())
}

/// `(major, minor, patch)` of the installed QEMU, if any.
pub fn qemu_version() -> Option<(u32, u32, u32)> {
    let v = output(QEMU, &["--version"])?;
    parse_qemu_version(&v)
}

fn parse_qemu_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let ver = rest.split_whitespace().next()?;
    let mut it = ver.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn is_debian_bookworm() -> bool {
    std::fs::read_to_string("/etc/os-release")
        .map(|s| {
            s.lines().any(|l| l == "VERSION_CODENAME=bookworm")
                && s.lines().any(|l| l == "ID=debian")
        })
        .unwrap_or(false)
}

/// True when this command may install Debian packages itself.
fn can_install() -> bool {
    is_root() && is_debian_bookworm()
}

/// Installs Debian packages from bookworm's main suite (root on bookworm only).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    if !can_install() {
        bail!(
            "not root on Debian bookworm: install {} yourself",
            packages.join(", ")
        );
    }
    run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q"];
    args.extend_from_slice(packages);
    run("apt-get", &args)
}

/// Installs QEMU from bookworm-backports and dtc; `missing` says what is wrong now, for the
/// message when this command cannot install them.
fn install_packages(missing: &[String]) -> Result<()> {
    if !can_install() {
        bail!(
            "{}: as root on Debian bookworm this command installs what is missing itself; otherwise \
             install qemu-system-aarch64 >= {MIN_QEMU_MAJOR}.0 (Debian: `apt-get install -t \
             bookworm-backports qemu-system-arm`) and dtc (`device-tree-compiler`)",
            missing.join("; ")
        );
    }
    let has_backports = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|s| {
                    s.lines().any(|l| {
                        !l.trim_start().starts_with('#') && l.contains("bookworm-backports")
                    })
                })
            })
        })
        .unwrap_or(false)
        || std::fs::read_to_string("/etc/apt/sources.list")
            .is_ok_and(|s| s.contains("bookworm-backports"));
    if !has_backports {
        eprintln!("adding Debian bookworm-backports to {BACKPORTS_SOURCE}");
        std::fs::write(
            BACKPORTS_SOURCE,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .with_context(|| format!("writing {BACKPORTS_SOURCE}"))?;
    }
    run("apt-get", &["update", "-q"])?;
    run(
        "apt-get",
        &[
            "install",
            "-y",
            "-q",
            "-t",
            "bookworm-backports",
            "qemu-system-arm",
        ],
    )?;
    run("apt-get", &["install", "-y", "-q", "device-tree-compiler"])?;
    Ok(())
}

/// QEMU >= 10 and dtc, installed if missing (root on Debian bookworm), refused if too old.
pub fn ensure_qemu() -> Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    ensure_rust()?;
    let mut missing = Vec::new();
    match qemu_version() {
        Some((major, _, _)) if major >= MIN_QEMU_MAJOR => {}
        Some((major, minor, patch)) => missing.push(format!(
            "{QEMU} {major}.{minor}.{patch} is too old ({MIN_QEMU_MAJOR}.0 or newer is needed)"
        )),
        None => missing.push(format!("{QEMU} is not installed")),
    }
    if output("dtc", &["--version"]).is_none() {
        missing.push("dtc is not installed".into());
    }
    if !missing.is_empty() {
        install_packages(&missing)?;
    }
    match qemu_version() {
        Some((major, minor, patch)) if major >= MIN_QEMU_MAJOR => {
            let _ = (minor, patch);
        }
        Some((major, minor, patch)) => bail!(
            "{QEMU} {major}.{minor}.{patch} is too old: the SMMUv3 model this kernel needs arrived in \
             {MIN_QEMU_MAJOR}.0 (Debian: `apt-get install -t bookworm-backports qemu-system-arm`)"
        ),
        None => bail!("{QEMU} is still missing after installing qemu-system-arm"),
    }
    let _ = DONE.set(());
    Ok(())
}

/// dtc, installed if missing.
pub fn ensure_dtc() -> Result<()> {
    if output("dtc", &["--version"]).is_none() {
        ensure_qemu()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_version_lines_parse() {
        assert_eq!(
            parse_qemu_version(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n"
            ),
            Some((10, 0, 2))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)"),
            Some((7, 2, 15))
        );
        assert_eq!(parse_qemu_version("nonsense"), None);
    }
}
