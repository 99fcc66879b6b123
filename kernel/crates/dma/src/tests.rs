//! Host tests of the DMA layer over the fake platform (heap frames) and fake IOMMU domains.

extern crate std;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use std::sync::{Mutex, MutexGuard};

use addr::{Iova, PAGE_SIZE, PhysAddr, Range};
use iommu::fake::FakeDomain;
use iommu::{IommuDomain, ReservedKind, ReservedRegion, SW_MSI_BASE, SW_MSI_SIZE};
use kapi::dma_mem::Frames;
use kapi::platform::Platform;

use crate::*;

/// The fakes' counters and the DMA statistics are global: tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    kapi::platform::fake::install();
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters relative to the start of the test (a test that provokes a broken invariant leaves
/// its IOVA allocated on purpose, so absolute values carry over).
struct Baseline(DmaStats);

impl Baseline {
    fn take() -> Self {
        Baseline(stats())
    }
    fn mappings(&self) -> i64 {
        stats().mappings - self.0.mappings
    }
    fn iova_ranges(&self) -> i64 {
        stats().iova_ranges - self.0.iova_ranges
    }
    fn coherent(&self) -> i64 {
        stats().coherent - self.0.coherent
    }
}

fn fake_domain() -> Arc<FakeDomain> {
    FakeDomain::standalone("fake#1")
}

fn dyn_domain(d: &Arc<FakeDomain>) -> Arc<dyn IommuDomain> {
    d.clone()
}

fn msi_region() -> ReservedRegion {
    ReservedRegion {
        range: Range::new(SW_MSI_BASE, SW_MSI_SIZE),
        kind: ReservedKind::Msi {
            doorbell: PhysAddr(0x0809_0040),
        },
    }
}

fn iommu_device(strict: bool, reserved: &[ReservedRegion]) -> (Arc<DmaDevice>, Arc<FakeDomain>) {
    let domain = fake_domain();
    let dma =
        IommuDma::for_domain(&dyn_domain(&domain), reserved, &BusMap::identity(), strict).unwrap();
    (
        DmaDeviceBuilder::iommu("0000:00:03.0", dma)
            .debug(true)
            .build(),
        domain,
    )
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn iommu_mapping_respects_the_mask_and_maps_the_right_pages() {
    let _s = serial();
    let base = Baseline::take();
    let (dev, domain) = iommu_device(true, &[]);
    dev.set_mask(28).unwrap();
    let buf = pattern(10_000);
    let pa = buf.as_ptr() as u64;
    let s: DmaStream<ToDevice> = dev.map(buf).unwrap();
    assert!(
        s.addr().0 + s.len() as u64 - 1 < 1 << 28,
        "{:#x} above the 28-bit mask",
        s.addr().0
    );
    assert_eq!(
        s.addr().0 & (PAGE_SIZE - 1),
        pa & (PAGE_SIZE - 1),
        "in-page offset kept"
    );
    for off in [0u64, 4095, 9999] {
        assert_eq!(
            domain.iova_to_phys(Iova(s.addr().0 + off)),
            Some(PhysAddr(pa + off))
        );
    }
    assert_eq!(base.mappings(), 1);
    drop(s);
    assert_eq!(domain.mapped_pages(), 0);
    assert_eq!((base.mappings(), base.iova_ranges()), (0, 0));
}

#[test]
fn strict_unmap_invalidates_before_the_iova_is_reused() {
    let _s = serial();
    let (dev, domain) = iommu_device(true, &[]);
    let before = domain.sync_count();
    let a = dev.map::<FromDevice>(vec![0; 4096]).unwrap();
    let first = a.addr();
    drop(a);
    assert_eq!(
        domain.sync_count(),
        before + 1,
        "one invalidation per unmap"
    );
    let b = dev.map::<FromDevice>(vec![0; 4096]).unwrap();
    assert_eq!(
        b.addr(),
        first,
        "strict mode may reuse an IOVA at once: it is already invalidated"
    );
}

#[test]
fn lazy_unmap_holds_iovas_until_the_batched_flush() {
    let _s = serial();
    let base = Baseline::take();
    let (dev, domain) = iommu_device(false, &[]);
    let syncs = || domain.sync_count();
    let before = syncs();
    let first = dev.map::<FromDevice>(vec![0; 4096]).unwrap();
    let first_addr = first.addr();
    drop(first);
    assert_eq!(syncs(), before, "no invalidation yet");
    assert_eq!(domain.mapped_pages(), 0, "but the page-table entry is gone");
    let second = dev.map::<FromDevice>(vec![0; 4096]).unwrap();
    assert_ne!(
        second.addr(),
        first_addr,
        "an IOVA waiting for its invalidation is not handed out"
    );
    assert_eq!(base.iova_ranges(), 2);
    assert_eq!(
        kapi::platform::fake::install().run_timers(),
        1,
        "the flush timer was armed once"
    );
    assert_eq!(syncs(), before + 1, "one invalidation for the batch");
    assert_eq!(base.iova_ranges(), 1);
    drop(second);
    // A full queue flushes without waiting for the timer.
    for _ in 0..FLUSH_QUEUE_LEN {
        drop(dev.map::<FromDevice>(vec![0; 4096]).unwrap());
    }
    assert_eq!(syncs(), before + 2);
    kapi::platform::fake::install().run_timers();
    assert_eq!(base.iova_ranges(), 0);
}

#[test]
fn reserved_windows_are_never_allocated_and_the_doorbell_is_mapped() {
    let _s = serial();
    let hole = ReservedRegion {
        range: Range::new(Iova(0x1000_0000), 0x2eff_0000),
        kind: ReservedKind::Reserved,
    };
    let domain = fake_domain();
    iommu::core(); // the core is not involved: map the MSI page the way it would
    domain
        .map(
            SW_MSI_BASE,
            PhysAddr(0x0809_0000),
            PAGE_SIZE,
            iommu::Prot::MMIO_WO,
        )
        .unwrap();
    let dma = IommuDma::for_domain(
        &dyn_domain(&domain),
        &[msi_region(), hole],
        &BusMap::identity(),
        true,
    )
    .unwrap();
    let dev = DmaDeviceBuilder::iommu("d", dma).build();
    dev.set_mask(32).unwrap();
    assert_eq!(
        dev.msi_address(PhysAddr(0x0809_0040)),
        Some(Iova(0x0800_0040))
    );
    assert_eq!(dev.msi_address(PhysAddr(0x0700_0040)), None);
    let mut held = Vec::new();
    // Fill the 32-bit space with 1 MiB mappings: none may land in a reserved window.
    while let Ok(s) = dev.map::<ToDevice>(vec![1; 1 << 20]) {
        let r = Range::new(s.addr(), s.len() as u64);
        assert!(
            !r.overlaps(&msi_region().range) && !r.overlaps(&hole.range),
            "{r:?}"
        );
        held.push(s);
        if held.len() > 4096 {
            break;
        }
    }
    assert!(held.len() > 1000, "only {} mappings fit", held.len());
    let (e, _) = dev.map::<ToDevice>(vec![1; 1 << 20]).unwrap_err();
    assert!(matches!(e, DmaError::NoIova { .. }), "{e:?}");
}

#[test]
fn dma_ranges_holes_are_kept_out_of_iova_space() {
    let _s = serial();
    let domain = fake_domain();
    let bus = BusMap {
        windows: vec![DmaWindow {
            bus: 0x8000_0000,
            cpu: 0x4000_0000,
            size: 0x1000_0000,
        }],
    };
    let dma = IommuDma::for_domain(&dyn_domain(&domain), &[], &bus, true).unwrap();
    let dev = DmaDeviceBuilder::iommu("d", dma).bus(bus).build();
    dev.set_mask(64).unwrap();
    assert_eq!(
        dev.limit(false),
        0x8fff_ffff,
        "the bus limit caps a 64-bit mask"
    );
    for _ in 0..8 {
        let s = dev.map::<ToDevice>(vec![0; 8192]).unwrap();
        assert!(
            (0x8000_0000..0x9000_0000).contains(&s.addr().0),
            "{:#x}",
            s.addr().0
        );
    }
}

#[test]
fn a_page_only_partly_inside_a_dma_window_is_never_handed_out() {
    let _s = serial();
    let domain = fake_domain();
    // 0x8000_0800..0x8000_3800: two pages lie wholly inside, two only partly.
    let bus = BusMap {
        windows: vec![DmaWindow {
            bus: 0x8000_0800,
            cpu: 0x4000_0800,
            size: 0x3000,
        }],
    };
    let dma = IommuDma::for_domain(&dyn_domain(&domain), &[], &bus, true).unwrap();
    let dev = DmaDeviceBuilder::iommu("d", dma).bus(bus).build();
    dev.set_mask(64).unwrap();
    let mut pages = Vec::new();
    while let Ok(m) = dev.map_single(PhysAddr(0x4000_0000), 4096, Direction::ToDevice) {
        pages.push(m);
    }
    let mut addrs: Vec<u64> = pages.iter().map(|m| m.addr.0).collect();
    addrs.sort_unstable();
    assert_eq!(addrs, [0x8000_1000, 0x8000_2000]);
    for m in &pages {
        dev.unmap_single(m).unwrap();
    }
}

#[test]
fn scatter_gather_uses_one_range_and_merges_within_limits() {
    let _s = serial();
    let base = Baseline::take();
    let (dev, domain) = iommu_device(true, &[]);
    dev.set_max_segment_size(16 * 1024);
    let bufs: Vec<Vec<u8>> = (0..6).map(|i| pattern(4096 + i * 100)).collect();
    let pas: Vec<u64> = bufs.iter().map(|b| b.as_ptr() as u64).collect();
    let lens: Vec<usize> = bufs.iter().map(Vec::len).collect();
    let t: DmaSgTable<Bidirectional> = dev.map_sg(bufs).unwrap();
    let total: u64 = t.segments().iter().map(|s| s.1).sum();
    assert_eq!(total, lens.iter().sum::<usize>() as u64);
    assert!(t.segments().iter().all(|s| s.1 <= 16 * 1024));
    // Every byte of every buffer is reachable at the right IOVA, in order.
    let mut seg_bytes = t
        .segments()
        .iter()
        .flat_map(|&(a, l)| (0..l).map(move |o| a.0 + o));
    for (pa, len) in pas.iter().zip(&lens) {
        for o in [0, *len as u64 - 1] {
            let iova = seg_bytes.clone().nth(o as usize).unwrap();
            assert_eq!(domain.iova_to_phys(Iova(iova)), Some(PhysAddr(pa + o)));
        }
        for _ in 0..*len {
            seg_bytes.next();
        }
    }
    assert_eq!(base.iova_ranges(), 1, "one IOVA range for the whole list");
    let back = t.into_buffers();
    assert_eq!(back.len(), 6);
    assert_eq!((base.iova_ranges(), domain.mapped_pages()), (0, 0));
}

#[test]
fn scatter_gather_segments_never_cross_the_boundary() {
    let _s = serial();
    let (dev, _domain) = iommu_device(true, &[]);
    dev.set_segment_boundary(0xffff);
    let bufs: Vec<Vec<u8>> = (0..10).map(|i| pattern(9000 + i * 1000)).collect();
    let t: DmaSgTable<ToDevice> = dev.map_sg(bufs).unwrap();
    for &(a, l) in t.segments() {
        assert_eq!(
            a.0 >> 16,
            (a.0 + l - 1) >> 16,
            "segment {:#x}+{l:#x} crosses a 64 KiB boundary",
            a.0
        );
    }
}

#[test]
fn coherent_allocation_falls_back_to_smaller_blocks_mapped_contiguously() {
    let _s = serial();
    let base = Baseline::take();
    let p = kapi::platform::fake::install();
    let (dev, domain) = iommu_device(true, &[]);
    let frames_before = p.frames_in_use();
    let whole = dev.alloc_coherent(64 * 1024).unwrap();
    assert_eq!(
        whole.blocks(),
        1,
        "one 64 KiB block when the allocator has one"
    );
    drop(whole);
    // 12 KiB takes a 16 KiB block, but the device is given only the 12 KiB it asked for.
    let odd = dev.alloc_coherent(12 * 1024).unwrap();
    assert_eq!(odd.blocks(), 1);
    assert_eq!(domain.mapped_bytes(), 12 * 1024);
    assert_eq!(domain.iova_to_phys(Iova(odd.addr().0 + 12 * 1024)), None);
    drop(odd);
    assert_eq!(domain.mapped_bytes(), 0);
    p.max_order.store(1, core::sync::atomic::Ordering::Relaxed);
    let c = dev.alloc_coherent(40 * 1024).unwrap();
    p.max_order
        .store(u64::MAX, core::sync::atomic::Ordering::Relaxed);
    assert!(c.blocks() >= 5, "{} blocks", c.blocks());
    for off in (0..40 * 1024).step_by(4096) {
        assert_eq!(
            domain.iova_to_phys(Iova(c.addr().0 + off)),
            Some(c.phys_at(off)),
            "offset {off:#x}"
        );
    }
    c.write_bytes(4000, &pattern(9000));
    let mut back = vec![0; 9000];
    c.read_bytes(4000, &mut back);
    assert_eq!(back, pattern(9000));
    c.write_u32(8192, 0xfeed);
    assert_eq!(c.read_u32(8192), 0xfeed);
    drop(c);
    assert_eq!(p.frames_in_use(), frames_before);
    assert_eq!((base.coherent(), base.iova_ranges()), (0, 0));
}

#[test]
fn a_coherent_allocation_whose_mapping_fails_part_way_gives_everything_back() {
    let _s = serial();
    let base = Baseline::take();
    let p = kapi::platform::fake::install();
    let (dev, domain) = iommu_device(true, &[]);
    let frames_before = p.frames_in_use();
    let syncs_before = domain.sync_count();
    // Single pages only, and the third page's map fails: two pages are mapped by then.
    p.max_order.store(0, core::sync::atomic::Ordering::Relaxed);
    domain
        .maps_before_failure
        .store(2, core::sync::atomic::Ordering::Relaxed);
    let err = dev.alloc_coherent(8 * PAGE_SIZE).unwrap_err();
    p.max_order
        .store(u64::MAX, core::sync::atomic::Ordering::Relaxed);
    domain
        .maps_before_failure
        .store(u32::MAX, core::sync::atomic::Ordering::Relaxed);
    assert_eq!(err, DmaError::Iommu(iommu::IommuError::NoMemory));
    // The two mapped pages were unmapped and invalidated before their frames went back, and
    // the IOVA range is free again: the same allocation now succeeds at the same address.
    assert_eq!(domain.mapped_pages(), 0);
    assert_eq!(domain.sync_count(), syncs_before + 1);
    assert_eq!(p.frames_in_use(), frames_before);
    assert_eq!((base.coherent(), base.iova_ranges()), (0, 0));
    let again = dev.alloc_coherent(8 * PAGE_SIZE).unwrap();
    assert_eq!(domain.mapped_pages(), 8);
    drop(again);
    assert_eq!((base.coherent(), base.iova_ranges()), (0, 0));
}

#[test]
fn direct_devices_use_bus_addresses_and_bounce_what_they_cannot_reach() {
    let _s = serial();
    let pool_frames = Frames::alloc(6).unwrap();
    let pool_pa = pool_frames.pa().0;
    let pool = Arc::new(BouncePool::new(pool_frames).unwrap());
    // The device's bus reaches only the pool, at bus address 0x1000_0000.
    let bus = BusMap {
        windows: vec![DmaWindow {
            bus: 0x1000_0000,
            cpu: pool_pa,
            size: 64 * PAGE_SIZE,
        }],
    };
    let dev = DmaDeviceBuilder::direct("0000:00:05.0", Some(pool.clone()))
        .bus(bus.clone())
        .debug(true)
        .build();
    let data = pattern(5000);
    let s = dev.map::<ToDevice>(data.clone()).unwrap();
    assert!(s.is_bounced());
    assert!((0x1000_0000..0x1004_0000).contains(&s.addr().0));
    let mut seen = vec![0; 5000];
    pool.read(PhysAddr(s.addr().0 - 0x1000_0000 + pool_pa), &mut seen);
    assert_eq!(
        seen, data,
        "the device sees the CPU's data in the bounce slot"
    );
    drop(s);
    // From the device: its writes to the slot come back to the buffer at unmap.
    let mut r = dev.map::<FromDevice>(vec![0; 3000]).unwrap();
    pool.write(PhysAddr(r.addr().0 - 0x1000_0000 + pool_pa), &pattern(3000));
    assert_eq!(
        &r.cpu()[..],
        &pattern(3000)[..],
        "sync_for_cpu copies the slot back"
    );
    assert_eq!(r.into_buffer(), pattern(3000));
    assert_eq!(pool.slots_in_use(), 0);
    // A device that writes nothing leaves the buffer as it was, not what the slot held.
    let quiet = dev.map::<FromDevice>(vec![0x11; 3000]).unwrap();
    assert_eq!(
        quiet.into_buffer(),
        vec![0x11; 3000],
        "a bounce slot leaked old data"
    );
    // Without a pool the same buffer is refused with a clear error.
    let no_pool = DmaDeviceBuilder::direct("0000:00:06.0", None)
        .bus(bus)
        .build();
    let (e, _) = no_pool.map::<ToDevice>(pattern(100)).unwrap_err();
    assert!(matches!(e, DmaError::Unreachable { .. }), "{e}");
    assert!(std::format!("{e}").contains("no bounce pool"));
}

#[test]
fn identity_bus_maps_are_one_to_one_when_the_mask_allows() {
    let _s = serial();
    let dev = DmaDeviceBuilder::direct("d", None).build();
    dev.set_mask(64).unwrap();
    let buf = pattern(100);
    let pa = buf.as_ptr() as u64;
    let s = dev.map::<ToDevice>(buf).unwrap();
    assert_eq!(s.addr().0, pa);
    assert!(!s.is_bounced());
}

#[test]
fn a_blocked_device_cannot_map_anything() {
    let _s = serial();
    let dev = DmaDeviceBuilder::blocked("d", "probe failed").build();
    assert!(matches!(
        dev.map::<ToDevice>(vec![1]).unwrap_err().0,
        DmaError::NoDma(_)
    ));
    assert!(matches!(
        dev.alloc_coherent(4096).unwrap_err(),
        DmaError::NoDma(_)
    ));
    assert!(matches!(
        dev.map_sg::<ToDevice>(vec![vec![1]]).unwrap_err().0,
        DmaError::NoDma(_)
    ));
    assert_eq!(dev.msi_address(PhysAddr(0x0809_0040)), None);
}

#[test]
fn revoked_ops_refuse_new_dma_but_still_unmap_what_exists() {
    let _s = serial();
    let base = Baseline::take();
    for (dev, domain) in [
        (DmaDeviceBuilder::direct("0000:00:05.0", None).build(), None),
        {
            let (d, f) = iommu_device(true, &[]);
            (d, Some(f))
        },
    ] {
        dev.set_mask(64).unwrap();
        let kept = dev.map::<ToDevice>(pattern(8192)).unwrap();
        dev.revoke();
        let refused = |e: DmaError| matches!(&e, DmaError::NoDma(r) if r.contains("revoked"));
        assert!(refused(dev.map::<ToDevice>(vec![1]).unwrap_err().0));
        assert!(refused(dev.alloc_coherent(4096).unwrap_err()));
        assert!(refused(
            dev.map_sg::<ToDevice>(vec![vec![1]]).unwrap_err().0
        ));
        assert!(refused(
            dev.map_single(PhysAddr(0x4000_0000), 64, Direction::ToDevice)
                .unwrap_err()
        ));
        // What the driver still held goes away normally.
        drop(kept);
        assert_eq!(domain.map_or(0, |d| d.mapped_pages()), 0);
    }
    assert_eq!((base.mappings(), base.iova_ranges()), (0, 0));
}

#[test]
fn debug_checks_catch_double_unknown_and_mismatched_unmaps() {
    let _s = serial();
    let (dev, _domain) = iommu_device(true, &[]);
    let buf = pattern(4096);
    let pa = PhysAddr(buf.as_ptr() as u64);
    let before = stats().debug_reports;
    let m = dev.map_single(pa, 4096, Direction::ToDevice).unwrap();
    dev.unmap_single(&m).unwrap();
    assert!(dev.unmap_single(&m).is_err(), "double unmap refused");
    assert_eq!(stats().debug_reports, before + 1);
    let unknown = RawMapping {
        addr: Iova(0xdead_0000),
        ..m.clone()
    };
    assert!(dev.unmap_single(&unknown).is_err());
    assert_eq!(stats().debug_reports, before + 2);
    let m2 = dev.map_single(pa, 4096, Direction::ToDevice).unwrap();
    let wrong = RawMapping {
        len: 100,
        dir: Direction::FromDevice,
        ..m2.clone()
    };
    dev.unmap_single(&wrong).unwrap_err_or_ok();
    assert_eq!(
        stats().debug_reports,
        before + 4,
        "size and direction mismatch both reported"
    );
    let leaked = dev.map_single(pa, 512, Direction::ToDevice).unwrap();
    assert_eq!(
        dev.report_leftovers(),
        1,
        "a mapping still alive at unbind is reported"
    );
    assert_eq!(stats().debug_reports, before + 5);
    dev.unmap_single(&leaked).unwrap();
    drop(buf);
}

trait UnwrapErrOrOk {
    fn unwrap_err_or_ok(self);
}
impl<T, E> UnwrapErrOrOk for Result<T, E> {
    fn unwrap_err_or_ok(self) {}
}

#[test]
fn an_unmap_that_finds_the_page_tables_changed_is_a_loud_invariant_error() {
    let _s = serial();
    let (dev, domain) = iommu_device(true, &[]);
    let s = dev.map::<ToDevice>(pattern(8192)).unwrap();
    // Something unmapped the pages behind the DMA layer's back.
    domain.unmap(Iova(s.addr().0 & !(PAGE_SIZE - 1)), 8192);
    let m = dev
        .map_single(PhysAddr(0x4000_0000), 4096, Direction::ToDevice)
        .unwrap();
    domain.unmap(Iova(m.addr.0), 4096);
    assert!(matches!(dev.unmap_single(&m), Err(DmaError::Invariant(_))));
    drop(s);
}

#[test]
fn a_failed_invalidation_retires_the_iova_and_keeps_the_memory_from_reuse() {
    use core::sync::atomic::Ordering::Relaxed;
    let _s = serial();
    let base = Baseline::take();
    let p = kapi::platform::fake::install();
    let (dev, domain) = iommu_device(true, &[]);

    // Streaming, strict: the IOVA stays allocated and is never handed out again.
    let s = dev.map::<FromDevice>(pattern(4096)).unwrap();
    let first = s.addr();
    domain.failing_syncs.store(true, Relaxed);
    let back = s.into_buffer();
    assert_eq!(back, pattern(4096), "the bytes still come back, in a copy");
    assert_eq!(base.iova_ranges(), 1, "the range is retired, not freed");
    domain.failing_syncs.store(false, Relaxed);
    let next = dev.map::<FromDevice>(vec![0; 4096]).unwrap();
    assert_ne!(next.addr(), first, "a retired IOVA is not reused");
    drop(next);
    assert_eq!(base.iova_ranges(), 1);

    // Coherent: the frames do not go back to the allocator.
    let frames = p.frames_in_use();
    let c = dev.alloc_coherent(8192).unwrap();
    let held = p.frames_in_use() - frames;
    domain.failing_syncs.store(true, Relaxed);
    drop(c);
    domain.failing_syncs.store(false, Relaxed);
    assert_eq!(p.frames_in_use(), frames + held, "coherent frames kept");
    assert_eq!(base.iova_ranges(), 2);

    // Lazy: the queued ranges wait for a flush that works.
    let (lazy, lazy_domain) = iommu_device(false, &[]);
    let lazy_base = Baseline::take();
    drop(lazy.map::<FromDevice>(vec![0; 4096]).unwrap());
    lazy_domain.failing_syncs.store(true, Relaxed);
    p.run_timers();
    assert_eq!(
        lazy_base.iova_ranges(),
        1,
        "still queued after the failed flush"
    );
    lazy_domain.failing_syncs.store(false, Relaxed);
    drop(lazy.map::<FromDevice>(vec![0; 4096]).unwrap());
    p.run_timers();
    assert_eq!(
        lazy_base.iova_ranges(),
        0,
        "freed by the next flush that completes"
    );
}

#[test]
fn direct_regions_are_never_allocated_either_not_even_their_partial_pages() {
    let _s = serial();
    let direct = ReservedRegion {
        range: Range::new(Iova(0x5000_0800), 0x1000),
        kind: ReservedKind::Direct,
    };
    let dma = IommuDma::for_domain(
        &dyn_domain(&fake_domain()),
        &[direct],
        &BusMap::identity(),
        true,
    )
    .unwrap();
    // Allocation below the region's last page: the pages it touches are the nearest ones.
    let got: Vec<Iova> = (0..8)
        .map(|_| dma.alloc_iova(0x1000, 0x5000_1fff).unwrap())
        .collect();
    for iova in &got {
        assert!(
            iova.0 + 0x1000 <= 0x5000_0000 || iova.0 >= 0x5000_2000,
            "{iova:#x} is inside the direct region's pages"
        );
    }
    for iova in got {
        dma.free_unmapped_iova(iova, 0x1000);
    }
}
