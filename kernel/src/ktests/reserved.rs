//! Reserved memory a device must reach: a `/reserved-memory` region that edu's node names with
//! `iommu-addresses` equal to its `reg` is mapped 1:1 in edu's DMA domain, so edu reaches it at
//! its physical address without any DMA-API mapping; its IOVAs are never handed out, and the
//! mapping goes with the domain when edu unbinds. Runs on the `reserved-memory-edu-direct`
//! device-tree variant with edu's mask raised (`edu.dma_bits=40`, `-global
//! edu.dma_mask=0xffffffffff`: 0x50000000 is above edu's default 28 bits); skips elsewhere.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use addr::{Iova, PhysAddr, Range};
use ktest::{kassert, kassert_eq, kfail, ktests, ktry, skip};
use smmuv3::StreamId;
use smmuv3::ste::SteConfig;
use tock_registers::interfaces::{Readable, Writeable};

use crate::devices;

const EDU: &str = "0000:00:03.0";
const EDU_SID: StreamId = StreamId(0x18);

/// edu at 00:03.0 and the first region its node asks to have mapped 1:1.
fn setup() -> Result<(Arc<edu::EduDevice>, Range<Iova>), ktest::Outcome> {
    let Some(edu) = edu::bound().into_iter().find(|e| e.name == EDU) else {
        return Err(ktest::Outcome::Skip("no edu bound at 0000:00:03.0".into()));
    };
    let node = devices::with(|dm| {
        let id = dm.find_by_name(EDU)?;
        dm.info(id)?.node.clone()
    })
    .flatten();
    let Some(node) = node else {
        return Err(ktest::Outcome::Skip(
            "edu has no device-tree node (boot the reserved-memory-edu-direct variant)".into(),
        ));
    };
    let fail = |message| ktest::Outcome::Fail {
        file: file!(),
        line: line!(),
        message,
    };
    let tree = of::boot_tree().ok_or_else(|| fail("no device tree".into()))?;
    let regions = tree
        .node(&node)
        .and_then(|n| n.iommu_reserved_regions())
        .map_err(|e| fail(alloc::format!("{e}")))?;
    let Some(region) = regions
        .regions
        .iter()
        .find(|r| matches!(r.kind, of::IommuRegionKind::Direct { .. }))
    else {
        return Err(ktest::Outcome::Skip(alloc::format!(
            "{node} has no 1:1 reserved-memory region"
        )));
    };
    if edu.dma.iommu_dma().is_none() {
        return Err(ktest::Outcome::Skip(
            "edu is not behind a translating domain".into(),
        ));
    }
    let last = region.iova.start.0 + (region.iova.size - 1);
    if edu.dma.mask() < last {
        return Err(ktest::Outcome::Skip(alloc::format!(
            "edu's mask {:#x} does not reach {last:#x}: run with edu.dma_bits=40 and -global edu.dma_mask=0xffffffffff",
            edu.dma.mask()
        )));
    }
    // Let the probe's round trip finish so the device is idle.
    let _ = edu.round_trip_result();
    Ok((edu, region.iova))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

ktests! {
    /// edu copies a pattern the CPU wrote into the region to its own buffer and back to another
    /// part of the region, at bus addresses equal to the physical ones, with no DMA-API mapping;
    /// the domain maps every page of the region 1:1.
    fn edu_reaches_its_reserved_region_1_to_1_without_dma_api_mappings() -> ktest::Result {
        let (edu, region) = setup()?;
        let Some(dma) = edu.dma.iommu_dma() else { skip!("no IOMMU DMA") };
        for off in (0..region.size).step_by(4096) {
            let iova = Iova(region.start.0 + off);
            kassert_eq!(dma.iova_to_phys(iova), Some(PhysAddr(iova.0)), "page at {:#x} not mapped 1:1", iova.0);
        }
        let len = 4096usize;
        let (src, dst) = (region.start.0, region.start.0 + region.size / 2);
        kassert!(region.size >= 2 * len as u64, "region of {:#x} bytes is too small for the test", region.size);
        let data = pattern(len, 0x5a);
        kassert!(crate::mm::reserved_memory_write(PhysAddr(src), &data), "{src:#x} is not in a mapped /reserved-memory region");
        kassert!(crate::mm::reserved_memory_write(PhysAddr(dst), &vec![0; len]));
        ktry!(edu.transfer(edu::Transfer::ToDevice, Iova(src), 0, len as u64));
        ktry!(edu.transfer(edu::Transfer::FromDevice, Iova(dst), 0, len as u64));
        let mut back = vec![0u8; len];
        kassert!(crate::mm::reserved_memory_read(PhysAddr(dst), &mut back));
        kassert_eq!(back, data, "the copy back into the region differs");
        // And from the region to an ordinary DMA-API buffer.
        let out = ktry!(edu.dma.map::<dma::FromDevice>(vec![0; len]).map_err(|(e, _)| e));
        ktry!(edu.transfer(edu::Transfer::FromDevice, out.addr(), 0, len as u64));
        kassert_eq!(out.into_buffer(), data, "the copy into a DMA-API buffer differs");
        Ok(())
    }

    /// The IOVA allocator never hands out the region's IOVAs: allocations asked for right below
    /// its top land below it, and the DMA API's mappings never inside it.
    fn the_reserved_regions_iovas_are_never_handed_out() -> ktest::Result {
        let (edu, region) = setup()?;
        let Some(dma) = edu.dma.iommu_dma() else { skip!("no IOMMU DMA") };
        let last = region.start.0 + (region.size - 1);
        let outside = |iova: u64, size: u64| iova + size <= region.start.0 || iova > last;
        let mut got = Vec::new();
        for _ in 0..32 {
            let iova = ktry!(dma.alloc_iova(0x1000, last));
            got.push(iova);
        }
        let bad: Vec<u64> = got.iter().map(|i| i.0).filter(|&i| !outside(i, 0x1000)).collect();
        for iova in got {
            dma.free_unmapped_iova(iova, 0x1000);
        }
        kassert!(bad.is_empty(), "IOVAs inside the region were handed out: {bad:#x?}");
        let maps: Vec<dma::DmaStream<dma::ToDevice>> = (0..16)
            .filter_map(|_| edu.dma.map::<dma::ToDevice>(vec![1; 64 << 10]).ok())
            .collect();
        kassert_eq!(maps.len(), 16);
        for m in &maps {
            kassert!(outside(m.addr().0, m.len() as u64), "mapping at {:#x} inside the region", m.addr().0);
        }
        Ok(())
    }

    /// Unbinding edu frees its domain, 1:1 mapping and all: the domain is gone, the stream is
    /// ABORT and edu aimed at the region by hand writes nothing; rebinding maps it again.
    fn unbinding_edu_leaves_the_region_unmapped() -> ktest::Result {
        let (edu, region) = setup()?;
        let Some(dma) = edu.dma.iommu_dma() else { skip!("no IOMMU DMA") };
        let domain = Arc::downgrade(dma.domain());
        let Some(pci) = devices::with(|dm| dm.find_by_name(EDU).and_then(|id| dm.info(id)?.payload_arc::<pci_ecam::PciDevice>())).flatten() else {
            kfail!("edu has no PCI payload");
        };
        let Some(id) = devices::with(|dm| dm.find_by_name(EDU)).flatten() else { kfail!("edu vanished") };
        drop(edu);
        ktry!(ktry!(devices::with(|dm| dm.unbind(id)).ok_or("no device manager")));
        kassert!(domain.upgrade().is_none(), "edu's domain (with the region mapped) outlived the unbind");
        let ste = smmuv3::instances().first().and_then(|s| s.ste(EDU_SID)).map(|s| s.config());
        kassert_eq!(ste, Some(SteConfig::Abort), "unbound edu's stream is not ABORT");
        // A device left to itself: bus mastering on, its buffer copied into the region.
        let canary = vec![0xa5u8; 256];
        kassert!(crate::mm::reserved_memory_write(PhysAddr(region.start.0), &canary));
        let regs = ktry!(pci.map_bar(0).and_then(|b| b.view::<edu::regs::EduRegs>(0).map_err(Into::into)));
        pci.set_bus_master(true);
        regs.DMA_SRC.set(edu::regs::DMA_BUFFER);
        regs.DMA_DST.set(region.start.0);
        regs.DMA_COUNT.set(256);
        regs.DMA_CMD.write(edu::regs::DMA_CMD::START::SET + edu::regs::DMA_CMD::DIRECTION::FromDevice);
        let done = kapi::time::wait_until(Duration::from_secs(2), || regs.DMA_CMD.read(edu::regs::DMA_CMD::START) == 0);
        pci.set_bus_master(false);
        kassert!(done.is_ok(), "edu never finished its transfer");
        let mut now = vec![0u8; 256];
        kassert!(crate::mm::reserved_memory_read(PhysAddr(region.start.0), &mut now));
        kassert_eq!(now, canary, "unbound edu wrote into the region");
        devices::with(|dm| {
            let _ = dm.bind(id);
        });
        let Some(edu) = edu::bound().into_iter().find(|e| e.name == EDU) else { kfail!("edu did not bind again") };
        let Some(dma) = edu.dma.iommu_dma() else { kfail!("edu rebound without IOMMU DMA") };
        kassert_eq!(dma.iova_to_phys(region.start), Some(PhysAddr(region.start.0)), "the region is not mapped after rebinding");
        let _ = ktry!(edu.round_trip_result());
        Ok(())
    }
}
