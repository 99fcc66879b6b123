//! QEMU profiles (data in `qemu/machines.toml`), the argv built from them, and running QEMU with a
//! timeout, a kept log and the kernel's exit status.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{disk, kbuild, root, setup, target_dir};

/// One machine profile as written in `qemu/machines.toml`; unset fields come from `inherits`.
#[derive(Deserialize, Clone, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    inherits: Option<String>,
    description: Option<String>,
    machine: Option<String>,
    iommu: Option<String>,
    cpu: Option<String>,
    memory: Option<String>,
    seed: Option<u64>,
    semihosting: Option<bool>,
    disk: Option<bool>,
    devices: Option<Vec<String>>,
    extra_devices: Option<Vec<String>>,
    args: Option<Vec<String>>,
}

/// A resolved profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// One line saying what it is for.
    pub description: String,
    machine: String,
    /// `smmuv3` or `none`.
    pub iommu: String,
    cpu: String,
    memory: String,
    seed: u64,
    semihosting: bool,
    disk: bool,
    devices: Vec<String>,
    args: Vec<String>,
}

/// Reads and resolves every profile.
pub fn profiles() -> Result<BTreeMap<String, Profile>> {
    let path = root().join("qemu/machines.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let specs: BTreeMap<String, ProfileSpec> =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = BTreeMap::new();
    for name in specs.keys() {
        out.insert(name.clone(), resolve(&specs, name, 0)?);
    }
    Ok(out)
}

fn resolve(specs: &BTreeMap<String, ProfileSpec>, name: &str, depth: usize) -> Result<Profile> {
    if depth > 8 {
        bail!("profile inheritance loop at `{name}`");
    }
    let s = specs
        .get(name)
        .with_context(|| format!("no QEMU profile `{name}` in qemu/machines.toml"))?;
    let base = match &s.inherits {
        Some(parent) => Some(resolve(specs, parent, depth + 1)?),
        None => None,
    };
    let pick = |own: &Option<String>, inherited: Option<&String>, field: &str| -> Result<String> {
        own.clone()
            .or_else(|| inherited.cloned())
            .with_context(|| format!("profile `{name}` has no `{field}`"))
    };
    let b = base.as_ref();
    let mut devices = s
        .devices
        .clone()
        .or_else(|| b.map(|b| b.devices.clone()))
        .unwrap_or_default();
    devices.extend(s.extra_devices.clone().unwrap_or_default());
    Ok(Profile {
        description: s
            .description
            .clone()
            .or_else(|| b.map(|b| b.description.clone()))
            .unwrap_or_default(),
        machine: pick(&s.machine, b.map(|b| &b.machine), "machine")?,
        iommu: pick(&s.iommu, b.map(|b| &b.iommu), "iommu")?,
        cpu: pick(&s.cpu, b.map(|b| &b.cpu), "cpu")?,
        memory: pick(&s.memory, b.map(|b| &b.memory), "memory")?,
        seed: s.seed.or(b.map(|b| b.seed)).unwrap_or(7),
        semihosting: s.semihosting.or(b.map(|b| b.semihosting)).unwrap_or(true),
        disk: s.disk.or(b.map(|b| b.disk)).unwrap_or(false),
        devices,
        args: s
            .args
            .clone()
            .or_else(|| b.map(|b| b.args.clone()))
            .unwrap_or_default(),
    })
}

/// Arguments shared by everything that boots the kernel.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct QemuArgs {
    /// Machine profile from qemu/machines.toml.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// Put an SMMUv3 in front of PCI (`smmuv3`) or not (`none`).
    #[arg(long)]
    pub iommu: Option<String>,
    /// Kernel command line (`/chosen/bootargs`).
    #[arg(long, default_value = "")]
    pub append: String,
    /// Raw disk image for virtio-blk (default: a generated 64 MiB image).
    #[arg(long)]
    pub disk: Option<PathBuf>,
    /// Wait for gdb on localhost:1234 before the first instruction.
    #[arg(long)]
    pub gdb: bool,
    /// Deterministic time: `-icount shift=N,sleep=off` (guest ticks repeat exactly run to run).
    #[arg(long)]
    pub icount: bool,
    /// Seconds before QEMU is killed.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Attach the disk writable (for a private scratch copy; see `cargo xtask test`).
    #[arg(skip)]
    pub scratch_disk: bool,
    /// Extra QEMU arguments, passed through unchanged.
    #[arg(last = true)]
    pub extra: Vec<String>,
}

/// `-icount` shift used by `--icount`: 2^3 ns per instruction (125 MIPS), fast enough for the
/// whole boot and coarse enough that timer deadlines still make sense.
pub const ICOUNT_SHIFT: u32 = 3;

/// The full QEMU command line for `args` on `kernel`.
pub fn command_line(args: &QemuArgs, kernel: &Path) -> Result<Vec<String>> {
    let profiles = profiles()?;
    let p = profiles.get(&args.profile).with_context(|| {
        format!(
            "no QEMU profile `{}` (have: {})",
            args.profile,
            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let iommu = args.iommu.clone().unwrap_or_else(|| p.iommu.clone());
    let machine = match iommu.as_str() {
        "smmuv3" => format!("{},iommu=smmuv3", p.machine),
        "none" => p.machine.clone(),
        other => bail!("--iommu {other}: expected smmuv3 or none"),
    };
    let mut argv: Vec<String> = vec![
        "qemu-system-aarch64".into(),
        "-M".into(),
        machine,
        "-cpu".into(),
        p.cpu.clone(),
        "-m".into(),
        p.memory.clone(),
        "-nographic".into(),
        "-nic".into(),
        "none".into(),
        "-seed".into(),
        p.seed.to_string(),
    ];
    if p.semihosting {
        argv.push("-semihosting".into());
    }
    argv.extend(p.args.iter().cloned());
    argv.extend(["-kernel".into(), kernel.display().to_string()]);
    if !args.append.is_empty() {
        argv.extend(["-append".into(), args.append.clone()]);
    }
    if p.disk {
        let image = match &args.disk {
            Some(d) => d.clone(),
            None => disk::default_disk()?,
        };
        let len = std::fs::metadata(&image)
            .with_context(|| format!("disk image {}", image.display()))?
            .len();
        if len % 512 != 0 {
            bail!(
                "disk image {} is {len} bytes, not a whole number of 512-byte sectors: QEMU would \
                 pad it and the kernel's digest could not match the file",
                image.display()
            );
        }
        // Read-only: several QEMUs share the default image, and a user's `--disk` is never
        // modified. Tests that write get a private copy (`scratch_disk`).
        let mode = if args.scratch_disk {
            ""
        } else {
            ",readonly=on"
        };
        argv.extend([
            "-drive".into(),
            format!("if=none,id=disk0,format=raw{mode},file={}", image.display()),
        ]);
    }
    for d in &p.devices {
        argv.extend(["-device".into(), d.clone()]);
    }
    if args.icount {
        argv.extend(["-icount".into(), format!("shift={ICOUNT_SHIFT},sleep=off")]);
    }
    if args.gdb {
        // Loopback only (`-s` would listen on every interface).
        argv.extend(["-gdb".into(), "tcp:localhost:1234".into(), "-S".into()]);
    }
    argv.extend(args.extra.iter().cloned());
    Ok(argv)
}

/// Quotes an argv for printing so it can be pasted into a shell.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Kills QEMU if the runner is dropped early (error, Ctrl-C unwinding, timeout).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a QEMU run produced.
#[derive(Debug)]
pub struct RunResult {
    /// QEMU's exit status (the kernel's, under semihosting); `None` if it was killed.
    pub exit_code: Option<i32>,
    /// Every line QEMU printed (serial log and QEMU's own messages).
    pub lines: Vec<String>,
    /// Killed at the timeout.
    pub timed_out: bool,
    /// Host wall time from spawn to exit.
    pub wall: Duration,
    /// Where the log was kept.
    pub log: PathBuf,
}

/// Runs `argv`, keeping the log at `log`; `echo` streams it to the terminal as it comes.
pub fn run(argv: &[String], timeout: Duration, log: &Path, echo: bool) -> Result<RunResult> {
    run_inner(argv, timeout, log, echo, &mut |_| {})
}

/// Like [`run`], calling `watch` with each line as it arrives (for host-side timestamps).
pub fn run_watching(
    argv: &[String],
    timeout: Duration,
    log: &Path,
    mut watch: impl FnMut(&str),
) -> Result<RunResult> {
    run_inner(argv, timeout, log, false, &mut watch)
}

fn run_inner(
    argv: &[String],
    timeout: Duration,
    log: &Path,
    echo: bool,
    watch: &mut dyn FnMut(&str),
) -> Result<RunResult> {
    setup::ensure_qemu()?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    writeln!(file, "$ {}", shell_line(argv))?;
    let start = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", argv[0]))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(text).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut guard = KillOnDrop(child);
    let mut lines = Vec::new();
    let mut timed_out = false;
    let deadline = start + timeout;
    let mut exit = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                watch(&line);
                if echo {
                    println!("{line}");
                }
                writeln!(file, "{line}")?;
                lines.push(line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                exit = Some(guard.0.wait()?);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = guard.0.try_wait()? {
            // Drain what is still buffered.
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if echo {
                    println!("{line}");
                }
                writeln!(file, "{line}")?;
                lines.push(line);
            }
            exit = Some(status);
            break;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = guard.0.kill();
            break;
        }
    }
    let wall = start.elapsed();
    drop(guard);
    if timed_out {
        writeln!(file, "xtask: killed after {} s timeout", timeout.as_secs())?;
    }
    Ok(RunResult {
        exit_code: exit.and_then(|s| s.code()),
        lines,
        timed_out,
        wall,
        log: log.to_path_buf(),
    })
}

/// `cargo xtask qemu`.
pub fn run_interactive(args: &QemuArgs) -> Result<ExitCode> {
    setup::ensure_qemu()?;
    let kernel = kbuild::build_kernel()?;
    let argv = command_line(args, &kernel)?;
    println!("$ {}", shell_line(&argv));
    if args.gdb {
        println!(
            "QEMU waits for gdb: `gdb-multiarch {} -ex 'target remote localhost:1234'`",
            target_dir()
                .join(kbuild::TARGET)
                .join("release/kernel")
                .display()
        );
    }
    let timeout = if args.gdb {
        Duration::from_secs(24 * 3600)
    } else {
        Duration::from_secs(args.timeout)
    };
    let log = target_dir().join("qemu-logs/qemu.log");
    let r = run(&argv, timeout, &log, true)?;
    if r.timed_out {
        bail!(
            "QEMU did not exit within {} s (log: {})",
            args.timeout,
            log.display()
        );
    }
    let mut code = r.exit_code.unwrap_or(1);
    let kernel_spoke = r.lines.iter().any(|l| l.starts_with('['));
    if !kernel_spoke && let Some(l) = r.lines.iter().find(|l| l.starts_with("qemu-system-")) {
        bail!("QEMU did not start the kernel: {l}");
    }
    eprintln!(
        "xtask: kernel exited with status {code} after {:.2} s (log: {})",
        r.wall.as_secs_f64(),
        log.display()
    );
    // The disk is read and hashed by the normal boot's main job, which a test run skips.
    let main_job = !args
        .append
        .split_whitespace()
        .any(|a| a.starts_with("ktest="));
    if main_job && profiles()?.get(&args.profile).is_some_and(|p| p.disk) {
        let image = match &args.disk {
            Some(d) => d.clone(),
            None => disk::default_disk()?,
        };
        match check_disk_digest(&r.lines, &image)? {
            DigestCheck::Match(d) => eprintln!(
                "xtask: the kernel's digest of {} matches the file (sha256 {d})",
                image.display()
            ),
            DigestCheck::Mismatch { kernel, file } => {
                eprintln!(
                    "xtask: DIGEST MISMATCH for {}: the kernel read sha256 {kernel}, the file is {file}",
                    image.display()
                );
                code = 1;
            }
            DigestCheck::NotPrinted => {
                eprintln!(
                    "xtask: the kernel printed no digest of {} (was the disk driver bound?)",
                    image.display()
                );
                code = code.max(1);
            }
        }
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// What the kernel said about the disk, compared with the file.
#[derive(Debug, PartialEq, Eq)]
pub enum DigestCheck {
    /// Same digest.
    Match(String),
    /// Different.
    Mismatch { kernel: String, file: String },
    /// No `<n> bytes, sha256 <hex>` line.
    NotPrinted,
}

/// Finds the kernel's `virtio-blk ...: <n> bytes, sha256 <hex>` line and compares it with the
/// file's own SHA-256.
pub fn check_disk_digest(lines: &[String], image: &Path) -> Result<DigestCheck> {
    let re = regex::Regex::new(r"virtio-blk \S+: (\d+) bytes, sha256 ([0-9a-f]{64})")
        .expect("valid regex");
    let Some(kernel) = lines
        .iter()
        .find_map(|l| re.captures(l).map(|c| c[2].to_string()))
    else {
        return Ok(DigestCheck::NotPrinted);
    };
    let file = disk::sha256_hex(image)?;
    Ok(if kernel == file {
        DigestCheck::Match(file)
    } else {
        DigestCheck::Mismatch { kernel, file }
    })
}

/// `cargo xtask dtb`: QEMU's own device tree for every profile, into `qemu/fixtures/`.
pub fn dump_dtbs() -> Result<()> {
    setup::ensure_qemu()?;
    let dir = root().join("qemu/fixtures");
    std::fs::create_dir_all(&dir)?;
    for (name, _) in profiles()? {
        let out = dir.join(format!("{name}.dtb"));
        let args = QemuArgs {
            profile: name.clone(),
            ..Default::default()
        };
        let mut argv = command_line(&args, Path::new("/dev/null"))?;
        // `dumpdtb` writes the blob and exits before the kernel would run.
        let m = argv.iter().position(|a| a == "-M").context("no -M")? + 1;
        argv[m] = format!("{},dumpdtb={}", argv[m], out.display());
        let k = argv
            .iter()
            .position(|a| a == "-kernel")
            .context("no -kernel")?;
        argv.drain(k..k + 2);
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("dumping the device tree of profile `{name}` failed");
        }
        println!("{}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &QemuArgs) -> Vec<String> {
        command_line(args, Path::new("/k.bin")).unwrap()
    }

    fn after<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn the_default_profile_is_the_documented_machine() {
        let argv = line(&QemuArgs {
            profile: "default".into(),
            ..Default::default()
        });
        assert_eq!(argv[0], "qemu-system-aarch64");
        assert_eq!(after(&argv, "-M"), ["virt,gic-version=3,iommu=smmuv3"]);
        assert_eq!(after(&argv, "-cpu"), ["cortex-a72"]);
        assert_eq!(after(&argv, "-m"), ["1G"]);
        assert_eq!(after(&argv, "-nic"), ["none"]);
        assert_eq!(after(&argv, "-seed"), ["7"]);
        assert_eq!(after(&argv, "-kernel"), ["/k.bin"]);
        assert!(argv.iter().any(|a| a == "-semihosting") && argv.iter().any(|a| a == "-nographic"));
        assert!(
            after(&argv, "-device")
                .contains(&"virtio-blk-pci,drive=disk0,addr=2,disable-legacy=on,iommu_platform=on")
        );
        assert!(after(&argv, "-device").contains(&"edu,addr=3"));
        let drive = after(&argv, "-drive");
        assert!(
            drive[0].starts_with("if=none,id=disk0,format=raw,readonly=on,file="),
            "{drive:?}"
        );
        // No options, no extras: nothing else.
        assert!(
            !argv
                .iter()
                .any(|a| a == "-append" || a == "-icount" || a == "-gdb")
        );
    }

    #[test]
    fn options_change_only_what_they_say() {
        let argv = line(&QemuArgs {
            profile: "el2".into(),
            iommu: Some("none".into()),
            append: "iommu.strict=0 ktest=x".into(),
            icount: true,
            gdb: true,
            extra: vec!["-smp".into(), "2".into()],
            ..Default::default()
        });
        assert_eq!(after(&argv, "-M"), ["virt,gic-version=3,virtualization=on"]);
        assert_eq!(after(&argv, "-append"), ["iommu.strict=0 ktest=x"]);
        assert_eq!(after(&argv, "-icount"), ["shift=3,sleep=off"]);
        assert_eq!(after(&argv, "-gdb"), ["tcp:localhost:1234"]);
        assert!(argv.iter().any(|a| a == "-S"));
        // Extra arguments come last, unchanged.
        assert_eq!(&argv[argv.len() - 2..], ["-smp", "2"]);
        let semihosting = line(&QemuArgs {
            profile: "no-semihosting".into(),
            ..Default::default()
        });
        assert!(!semihosting.iter().any(|a| a == "-semihosting"));
        assert!(
            command_line(
                &QemuArgs {
                    profile: "default".into(),
                    iommu: Some("virtio".into()),
                    ..Default::default()
                },
                Path::new("/k.bin")
            )
            .unwrap_err()
            .to_string()
            .contains("expected smmuv3 or none")
        );
        assert!(
            command_line(
                &QemuArgs {
                    profile: "nope".into(),
                    ..Default::default()
                },
                Path::new("/k.bin")
            )
            .unwrap_err()
            .to_string()
            .contains("no QEMU profile `nope`")
        );
    }
}
