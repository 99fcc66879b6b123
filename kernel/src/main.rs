//! The kernel: boots on QEMU `virt`, brings up memory, the console and interrupts from the device
//! tree, then runs either the in-kernel tests (`ktest=`) or its boot-time checks, prints a summary
//! and powers the machine off with a status (0 = all good).
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod bench;
mod console;
mod devices;
mod digest;
mod dma_setup;
mod dt;
mod ktest_runner;
mod ktests;
mod mm;
mod msi;
mod profile;
mod timeline;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::time::Duration;

use kapi::time::Instant;

// The boot crate's entry code must be linked in.
use boot as _;

/// The kernel's exit status, which becomes QEMU's exit status under semihosting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything passed.
    Success = 0,
    /// A check or a test failed.
    Failure = 1,
    /// The kernel panicked.
    Panic = 2,
    /// An unexpected exception.
    Exception = 3,
    /// No usable device tree: nothing can be reported on the console.
    BadBoot = 4,
}

/// Rust entry, called by `boot/src/entry.S` with the MMU on and BSS zeroed.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry(dtb_pa: u64, entry_el: u64) -> ! {
    timeline::mark(timeline::Mark::Entry);
    let status = boot(dtb_pa, entry_el);
    profile::dump();
    // Said here because PSCI SYSTEM_OFF, unlike semihosting, cannot hand the status to QEMU.
    log::info!(target: "kernel", "powering off, status {}", status as u32);
    arch::exit(status)
}

/// A boot-time check: a name and whether it passed, with detail for the log.
struct Check {
    name: &'static str,
    result: Result<String, String>,
}

fn boot(dtb_pa: u64, entry_el: u64) -> ExitCode {
    let Ok(blob) = mm::loader_blob(dtb_pa) else {
        return ExitCode::BadBoot;
    };
    let Ok(dt) = dt::DeviceTree::new(blob) else {
        return ExitCode::BadBoot;
    };
    let ram = dt.memory();
    let Some((console_regs, console_source)) = dt.console_pl011() else {
        return ExitCode::BadBoot;
    };
    let Some(uart) = mm::early_mmio(console_regs, &ram) else {
        return ExitCode::BadBoot;
    };
    let Ok(uart) = pl011::Pl011::new(&uart) else {
        return ExitCode::BadBoot;
    };
    console::init(uart);
    timeline::mark(timeline::Mark::Console);

    let (args, problems) = bootargs::parse(dt.bootargs());
    console::init_logger(args.loglevel);
    let conduit = dt.psci_conduit();
    if let Some(c) = conduit {
        arch::psci::set_conduit(c);
    }
    let el = arch::current_el();
    let entered = if entry_el != el {
        alloc::format!("entered at EL{entry_el}, ")
    } else {
        String::new()
    };
    log::info!(target: "kernel", "{} {entered}running at EL{el}, device tree at {:#x} ({} KiB), PSCI {}, console PL011 at {:#x} ({})",
        dt.model(), dt.blob_range().base, dt.blob_range().size / 1024,
        conduit.map_or("absent", |c| if c == arch::psci::Conduit::Hvc { "hvc" } else { "smc" }),
        console_regs.base, console_source.describe());
    if !dt.bootargs().is_empty() {
        log::info!(target: "kernel", "command line: {}", dt.bootargs());
    }
    for p in &problems {
        log::warn!(target: "kernel", "{p}");
    }

    if let Err(e) = mm::init(&dt, dt.blob_range()) {
        log::error!(target: "mm", "{e}");
        return ExitCode::Failure;
    }
    kapi::platform::install(&mm::PLATFORM);
    timeline::mark(timeline::Mark::Memory);

    if let Err(e) = init_interrupts(&dt, args.profile_us.is_some()) {
        log::error!(target: "kernel", "interrupts unavailable: {e}");
        return ExitCode::Failure;
    }

    timeline::mark(timeline::Mark::Interrupts);
    if let Some(p) = args.profile_us {
        profile::start(p);
    }
    iommu::core().set_policy(iommu::Policy {
        passthrough: args.iommu_passthrough.unwrap_or(false),
        identity: args.iommu_identity.clone(),
    });
    dma_setup::init(&args);
    let devs = devices::init(dt.tree(), &args);
    timeline::mark(timeline::Mark::AllBound);
    log::info!(target: "devmodel", "{} devices: {} bound, {} deferred, {} failed, {} with no driver",
        devs.devices, devs.bound, devs.deferred, devs.failed,
        devs.devices - devs.bound - devs.deferred - devs.failed);

    if !args.ktest.is_empty() {
        let tally = ktest_runner::run(&args.ktest);
        if tally.pass + tally.fail + tally.skip == 0 {
            log::error!(target: "kernel", "ktest={}: no test has that name or prefix", args.ktest.join(","));
            return ExitCode::Failure;
        }
        return if tally.fail == 0 {
            ExitCode::Success
        } else {
            ExitCode::Failure
        };
    }

    let mut checks = alloc::vec![check_timer()];
    checks.extend(check_disks());
    checks.extend(check_edu());
    checks.push(check_dma_access());
    let passed = checks.iter().filter(|c| c.result.is_ok()).count();
    for c in &checks {
        match &c.result {
            Ok(detail) => log::info!(target: "kernel", "check {}: ok ({detail})", c.name),
            Err(why) => log::error!(target: "kernel", "check {}: FAILED: {why}", c.name),
        }
    }
    timeline::mark(timeline::Mark::MainDone);
    log::info!(target: "kernel", "boot complete in {:.3} ms: {passed}/{} checks passed, {} of {} page frames in use",
        Instant::now().since_boot().as_micros() as f64 / 1000.0, checks.len(),
        mm::frames_in_use(), mm::frames_total());
    if !args.bench.is_empty() {
        bench::report_timeline();
        if !bench::run(&args.bench) {
            return ExitCode::Failure;
        }
    }
    if passed == checks.len() {
        ExitCode::Success
    } else {
        ExitCode::Failure
    }
}

fn init_interrupts(dt: &dt::DeviceTree, profile: bool) -> Result<(), String> {
    let (gicd, gicr) = dt
        .gic_v3()
        .ok_or("no arm,gic-v3 node with distributor and redistributor reg")?;
    let p = kapi::platform::get();
    let map = |r: dt::MemRange| {
        p.map_mmio(kapi::PhysAddr(r.base), r.size)
            .map_err(|e| alloc::format!("{e}"))
    };
    let mut gic = gicv3::GicV3::new(
        &map(gicd)?,
        &map(gicr)?,
        Box::new(arch::cpu::GicCpuInterface),
    )
    .map_err(|e| alloc::format!("gicv3: {e}"))?;
    log::info!(target: "gicv3", "distributor {:#x}, redistributor {:#x} (CPU affinity {:#x}), {} SPIs, CPU interface through ICC_* system registers",
        gicd.base, gicr.base, arch::cpu::affinity(), gic.spi_count());
    // LPIs and the ITS carry MSIs; without them devices fall back to INTx.
    match dt.gic_its() {
        Some(its) => {
            let lpis = gic
                .enable_lpis(kapi::PhysAddr(gicr.base), gicv3::LpiConfig::default())
                .map_err(|e| alloc::format!("gicv3: LPIs: {e}"))?;
            log::info!(target: "gicv3", "{lpis}");
            let its = gic
                .add_its(
                    &map(its)?,
                    kapi::PhysAddr(its.base),
                    gicv3::ItsConfig::default(),
                )
                .map_err(|e| alloc::format!("gicv3: ITS: {e}"))?;
            log::info!(target: "gicv3", "{}", its.summary());
            kapi::msi::set_domain(Arc::new(msi::ItsMsi(its)));
        }
        None => log::warn!(target: "gicv3", "no ITS in the device tree: MSIs unavailable"),
    }
    if profile {
        match dt.physical_timer_irq() {
            Some(line) => profile::prepare(&gic, line),
            None => log::warn!(target: "profile", "no physical-timer interrupt in the device tree"),
        }
    }
    kapi::irq::set_chip(Arc::new(gic));
    let line = dt
        .virtual_timer_irq()
        .ok_or("no arm,armv8-timer node with a virtual-timer interrupt")?;
    arch::timer::init(line).map_err(|e| alloc::format!("arch_timer: {e}"))?;
    log::info!(target: "arch_timer", "virtual timer at {} MHz, INTID {}",
        kapi::time::frequency() as f64 / 1e6, line.intid);
    kapi::irq::local_enable();
    Ok(())
}

/// Request size and depth for reading a whole disk.
const DISK_REQUEST_BYTES: usize = 1 << 20;
const DISK_DEPTH: usize = 4;

/// Reads every bound disk from start to end through the DMA API and prints its SHA-256 (which
/// `cargo xtask qemu` compares with the image file's own).
fn check_disks() -> alloc::vec::Vec<Check> {
    virtio_blk::bound()
        .into_iter()
        .map(|disk| {
            let start = Instant::now();
            let mut hasher = digest::Sha256::new();
            let bytes = disk.capacity_bytes();
            let result = disk.stream(0, bytes, DISK_REQUEST_BYTES, DISK_DEPTH, |_, data| {
                hasher.update(data)
            });
            let result = match result {
                Ok(read) => {
                    let digest = digest::hex(&hasher.finish());
                    log::info!(target: disk.log_target(), "{read} bytes, sha256 {digest}");
                    let ms = start.elapsed().as_micros() as f64 / 1000.0;
                    Ok(alloc::format!(
                        "{}: read and hashed in {ms:.1} ms ({:.0} MB/s)",
                        disk.name(),
                        read as f64 / ms / 1000.0
                    ))
                }
                Err(e) => Err(alloc::format!("{}: {e}", disk.name())),
            };
            Check {
                name: "disk-read",
                result,
            }
        })
        .collect()
}

/// The round trip each bound edu started at probe came back intact.
fn check_edu() -> alloc::vec::Vec<Check> {
    edu::bound()
        .into_iter()
        .map(|e| Check {
            name: "edu-round-trip",
            result: match e.round_trip_result() {
                Ok(addr) => Ok(alloc::format!(
                    "{}: 4096 bytes out and back, in through {:#x}, {} DMA, {}",
                    e.name,
                    addr.0,
                    e.dma.ops_name(),
                    e.irq_kind
                )),
                Err(err) => Err(alloc::format!("{}: {err}", e.name)),
            },
        })
        .collect()
}

/// No device has DMA access it should not have: every stream the SMMUs let through belongs to
/// a group the IOMMU core opened, and no device without a bound driver (none matched, its
/// probe or DMA set-up failed, still deferred) has an open domain or, on a PCI endpoint, bus
/// mastering.
fn check_dma_access() -> Check {
    let result = devices::with(|dm| {
        let core = iommu::core();
        let mut problems = alloc::vec::Vec::new();
        let (opened, hw) = (core.open_ids(), core.stats().hw.streams_not_blocked);
        if hw != opened {
            problems.push(alloc::format!(
                "{hw} streams let through by the SMMUs, {opened} opened by the IOMMU core"
            ));
        }
        let mut without_driver = 0;
        for id in dm.devices() {
            if matches!(dm.state(id), Some(devmodel::DeviceState::Bound { .. })) {
                continue;
            }
            let Some(info) = dm.info(id) else { continue };
            without_driver += 1;
            if let Some(t) = core
                .attached_type(&info.name)
                .filter(|t| *t != iommu::DomainType::Blocked)
            {
                problems.push(alloc::format!("{} has no driver but a {t} domain", info.name));
            }
            // Bridges keep bus mastering on: it is what forwards their subordinates' DMA
            // upstream, not DMA of their own.
            if info
                .payload_arc::<pci_ecam::PciDevice>()
                .is_some_and(|p| !p.function.is_bridge() && p.is_bus_master())
            {
                problems.push(alloc::format!("{} has no driver but bus mastering on", info.name));
            }
        }
        if problems.is_empty() {
            Ok(alloc::format!(
                "{hw} streams open, all for bound devices; {without_driver} devices without a driver have none"
            ))
        } else {
            Err(problems.join("; "))
        }
    })
    .unwrap_or_else(|| Err(String::from("no device manager")));
    Check {
        name: "dma-access",
        result,
    }
}

/// The timer interrupt arrives through the GIC.
fn check_timer() -> Check {
    use core::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    let start = Instant::now();
    arch::timer::call_at(start.after(Duration::from_micros(200)), || {
        FIRED.store(true, Ordering::Relaxed)
    });
    let result =
        match kapi::time::wait_until(Duration::from_secs(1), || FIRED.load(Ordering::Relaxed)) {
            Ok(()) => Ok(alloc::format!(
                "fired after {} us",
                start.elapsed().as_micros()
            )),
            Err(_) => Err(String::from("no timer interrupt within 1 s")),
        };
    Check {
        name: "timer-interrupt",
        result,
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    kapi::irq::local_disable();
    let mut out = console::Emergency;
    let t = console::timestamp();
    let _ = writeln!(out, "[{t}] kernel: panic: {}", info.message());
    if let Some(loc) = info.location() {
        let _ = writeln!(out, "[{t}] kernel:   at {}:{}", loc.file(), loc.line());
    }
    if let Some(test) = ktest_runner::current() {
        let loc = info.location().map_or(String::from("?"), |l| {
            alloc::format!("{}:{}", l.file(), l.line())
        });
        let _ = writeln!(
            out,
            "KTEST FAIL {test} at {loc}: panicked: {}",
            info.message()
        );
    }
    let _ = writeln!(
        out,
        "[{t}] kernel: halting after panic (exit status {})",
        ExitCode::Panic as u32
    );
    arch::exit(ExitCode::Panic)
}
