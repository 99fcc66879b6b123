//! Bench mode (`bench=<case>[,<case>...]` or `bench=all`): measures with the generic timer and
//! prints one machine-readable line per result, which `cargo xtask bench` collects:
//!
//! ```text
//! BENCH case=dma_map_unmap_4k unit=ns value=812.4 iters=20000
//! ```
//!
//! The mode (SMMU strict or lazy, passthrough, no IOMMU) is the machine's configuration; xtask
//! knows it, the kernel only reports. Guest time is CNTVCT: under `-icount shift=N,sleep=off` it
//! advances with instructions, so results repeat exactly run to run.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use kapi::time::{Instant, ticks_to_ns};

use crate::println;
use crate::timeline::{self, Mark};

/// Every case the kernel measures (the boot milestones are always reported).
pub const CASES: &[&str] = &[
    "sha256",
    "dma_breakdown_4k",
    "dma_map_unmap_4k",
    "dma_map_unmap_64k",
    "dma_map_unmap_1m",
    "dma_map_sg_64",
    "dma_alloc_coherent",
    "blk_seq_read_1m",
    "blk_seq_read_1m_qd4",
    "blk_rand_read_4k_qd1",
    "blk_rand_read_4k_qd8",
];

fn report(case: &str, unit: &str, value: f64, iters: u64) {
    println!("BENCH case={case} unit={unit} value={value:.3} iters={iters}");
}

/// The device whose DMA ops the DMA-API cases use: the first bound PCI device with DMA ops
/// (virtio-blk on the default machine), so the cases run through whatever that device has —
/// an SMMU domain (strict or lazy) or direct DMA.
fn dma_device() -> Option<Arc<dma::DmaDevice>> {
    crate::devices::with(|dm| {
        dm.devices()
            .filter(|id| dm.state(*id).and_then(|s| s.driver()).is_some())
            .filter(|id| {
                dm.info(*id)
                    .is_some_and(|i| i.bus == devmodel::BusKind::Pci)
            })
            .find_map(|id| {
                dm.dma_state(id)
                    .cloned()
                    .and_then(|s| s.downcast::<dma::DmaDevice>().ok())
            })
    })
    .flatten()
}

/// A case that could not run: said on the log, no number reported, and the boot fails.
fn failed(case: &str, why: impl core::fmt::Display) -> bool {
    log::error!(target: "bench", "{case}: {why}");
    false
}

/// Runs `op` `iters` times and reports the mean in nanoseconds; the first error stops the case
/// (a number made partly of failed operations would be wrong). False if it failed.
fn time_per_op(case: &str, iters: u64, mut op: impl FnMut() -> Result<(), String>) -> bool {
    // One untimed round warms caches, the IOVA caches and the page-table walk.
    if let Err(e) = op() {
        return failed(case, e);
    }
    let start = Instant::now();
    for _ in 0..iters {
        if let Err(e) = op() {
            return failed(case, e);
        }
    }
    let ticks = Instant::now().ticks_since(start);
    report(case, "ns", ticks_to_ns(ticks) as f64 / iters as f64, iters);
    true
}

fn map_unmap(dev: &Arc<dma::DmaDevice>, case: &str, size: usize, iters: u64) -> bool {
    let mut buf = Some(vec![0u8; size]);
    time_per_op(case, iters, || {
        let b = buf.take().ok_or("the buffer was lost")?;
        match dev.map::<dma::Bidirectional>(b) {
            Ok(s) => buf = Some(s.into_buffer()),
            Err((e, b)) => {
                buf = Some(b);
                return Err(alloc::format!("{e}"));
            }
        }
        Ok(())
    })
}

/// Where the time of a strict 4 KiB map+unmap goes, layer by layer: the IOVA allocator, the
/// page table (map + unmap without invalidation), and the IOTLB invalidation (TLBI + CMD_SYNC
/// through the SMMU's command queue, with one page to invalidate).
fn breakdown(dev: &Arc<dma::DmaDevice>, d: &Arc<dma::IommuDma>) -> bool {
    const N: u64 = 5_000;
    let limit = dev.limit(false);
    let mut ok = time_per_op("dma_breakdown_4k_iova", N, || {
        let i = d
            .alloc_iova(4096, limit)
            .map_err(|e| alloc::format!("{e}"))?;
        d.free_unmapped_iova(i, 4096);
        Ok(())
    });
    let iova = match d.alloc_iova(4096, limit) {
        Ok(i) => i,
        Err(e) => return failed("dma_breakdown_4k", e),
    };
    let page = vec![0u8; 8192];
    let pa = kapi::PhysAddr((page.as_ptr() as u64 + 4095) & !4095);
    let domain = d.domain();
    let map_unmap = || {
        domain
            .map(iova, pa, 4096, iommu::Prot::RW)
            .map_err(|e| alloc::format!("{e}"))?;
        match domain.unmap(iova, 4096) {
            4096 => Ok(()),
            n => Err(alloc::format!("unmap removed {n:#x} bytes of 0x1000")),
        }
    };
    ok &= time_per_op("dma_breakdown_4k_pgtable", N, map_unmap);
    let _ = domain.iotlb_sync();
    ok &= time_per_op("dma_breakdown_4k_iotlb_sync", N, || {
        map_unmap()?;
        domain.iotlb_sync().map_err(|e| alloc::format!("{e}"))
    });
    d.free_unmapped_iova(iova, 4096);
    ok
}

/// Runs the selected cases.
pub fn run(selected: &[String]) -> bool {
    let wants = |c: &str| selected.iter().any(|s| s == "all" || s == c);
    let unknown: Vec<&String> = selected
        .iter()
        .filter(|s| *s != "all" && !CASES.contains(&s.as_str()))
        .collect();
    for u in &unknown {
        log::warn!(target: "bench", "unknown case `{u}` (known: {})", CASES.join(", "));
    }
    crate::profile::restart();
    let mut ok = unknown.is_empty();
    if wants("sha256") {
        let data = vec![0x5au8; 1 << 20];
        let start = Instant::now();
        let mut h = crate::digest::Sha256::new();
        for _ in 0..16 {
            h.update(&data);
        }
        let _ = h.finish();
        let ns = ticks_to_ns(Instant::now().ticks_since(start));
        report("sha256", "MB/s", (16 << 20) as f64 / ns as f64 * 1e3, 16);
        log::info!(target: "bench", "sha256 with the {} implementation", if crate::arch::sha256::has_hw() { "SHA-256 instruction" } else { "portable" });
    }
    let want_dma = CASES.iter().any(|c| c.starts_with("dma_") && wants(c));
    let dev = dma_device().filter(|_| want_dma);
    if dev.is_none() && want_dma {
        ok = failed("dma_*", "no PCI device with DMA ops: DMA cases skipped");
    }
    if let Some(dev) = &dev {
        log::info!(target: "bench", "DMA cases through {} ({} DMA)", dev.name(), dev.ops_name());
        dev.set_mask(64).ok();
        // Only a translated device has layers to break down (direct DMA has no IOVA or tables).
        if wants("dma_breakdown_4k")
            && let Some(d) = dev.iommu_dma()
        {
            ok &= breakdown(dev, d);
        }
        if wants("dma_map_unmap_4k") {
            ok &= map_unmap(dev, "dma_map_unmap_4k", 4096, 20_000);
        }
        if wants("dma_map_unmap_64k") {
            ok &= map_unmap(dev, "dma_map_unmap_64k", 64 << 10, 5_000);
        }
        if wants("dma_map_unmap_1m") {
            ok &= map_unmap(dev, "dma_map_unmap_1m", 1 << 20, 500);
        }
        if wants("dma_map_sg_64") {
            let mut bufs = Some((0..64).map(|_| vec![0u8; 4096]).collect::<Vec<_>>());
            ok &= time_per_op("dma_map_sg_64", 2_000, || {
                let b = bufs.take().ok_or("the buffers were lost")?;
                match dev.map_sg::<dma::ToDevice>(b) {
                    Ok(t) => bufs = Some(t.into_buffers()),
                    Err((e, b)) => {
                        bufs = Some(b);
                        return Err(alloc::format!("{e}"));
                    }
                }
                Ok(())
            });
        }
        if wants("dma_alloc_coherent") {
            ok &= time_per_op("dma_alloc_coherent", 2_000, || {
                dev.alloc_coherent(16 << 10)
                    .map(drop)
                    .map_err(|e| alloc::format!("{e}"))
            });
        }
    }
    if CASES.iter().any(|c| c.starts_with("blk_") && wants(c)) {
        match virtio_blk::bound().first() {
            Some(disk) => ok &= blk_cases(disk, &wants),
            None => ok = failed("blk_*", "no virtio-blk disk bound: disk cases skipped"),
        }
    }
    ok
}

/// Sequential read of the whole disk in 1 MiB requests, `depth` in flight; reports MB/s.
fn blk_seq_read(disk: &virtio_blk::Disk, case: &str, depth: usize) -> bool {
    let bytes = disk.capacity_bytes();
    let start = Instant::now();
    match disk.stream(0, bytes, 1 << 20, depth, |_, _| {}) {
        Ok(read) => {
            let ns = ticks_to_ns(Instant::now().ticks_since(start));
            report(case, "MB/s", read as f64 / ns as f64 * 1e3, read >> 20);
            true
        }
        Err(e) => failed(case, e),
    }
}

/// Random 4 KiB reads (4 KiB-aligned, the same pseudo-random sequence every boot), `depth` in
/// flight; reports microseconds per read (total time over reads, so deeper queues show the
/// overlap).
fn blk_rand_read(disk: &virtio_blk::Disk, case: &str, depth: usize, reads: u64) -> bool {
    const PAGE_SECTORS: u64 = 4096 / 512;
    let pages = disk.capacity_bytes() / 4096;
    if pages == 0 {
        return failed(case, "the disk is smaller than 4 KiB");
    }
    // xorshift64: cheap and the same every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_sector = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % pages) * PAGE_SECTORS
    };
    let depth = depth.clamp(1, disk.max_in_flight());
    let mut spare: Vec<Vec<u8>> = (0..depth).map(|_| vec![0u8; 4096]).collect();
    let mut pending = alloc::collections::VecDeque::with_capacity(depth);
    let mut submitted = 0u64;
    let start = Instant::now();
    loop {
        while pending.len() < depth && submitted < reads {
            let buf = spare.pop().unwrap_or_else(|| vec![0u8; 4096]);
            match disk.submit_read(next_sector(), buf) {
                Ok(t) => pending.push_back(t),
                Err(e) => return failed(case, e),
            }
            submitted += 1;
        }
        let Some(t) = pending.pop_front() else { break };
        match t.wait() {
            Ok(buf) => spare.push(buf),
            Err(e) => return failed(case, e),
        }
    }
    let ns = ticks_to_ns(Instant::now().ticks_since(start));
    report(case, "us", ns as f64 / reads as f64 / 1e3, reads);
    true
}

fn blk_cases(disk: &virtio_blk::Disk, wants: &dyn Fn(&str) -> bool) -> bool {
    log::info!(target: "bench", "disk cases on {} ({} DMA)", disk.name(), disk.dma_ops());
    let mut ok = true;
    if wants("blk_seq_read_1m") {
        ok &= blk_seq_read(disk, "blk_seq_read_1m", 1);
    }
    if wants("blk_seq_read_1m_qd4") {
        ok &= blk_seq_read(disk, "blk_seq_read_1m_qd4", 4);
    }
    if wants("blk_rand_read_4k_qd1") {
        ok &= blk_rand_read(disk, "blk_rand_read_4k_qd1", 1, 2_000);
    }
    if wants("blk_rand_read_4k_qd8") {
        ok &= blk_rand_read(disk, "blk_rand_read_4k_qd8", 8, 4_000);
    }
    ok
}

/// Prints the boot timeline (milliseconds of guest time since the machine started).
pub fn report_timeline() {
    for m in Mark::ALL {
        if let Some(t) = timeline::at(m) {
            report(m.name(), "ms", ticks_to_ns(t) as f64 / 1e6, 1);
        }
    }
}
