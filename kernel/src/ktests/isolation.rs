//! Isolation, proved with a real device: edu aimed at memory it was never given. Each test keeps
//! a canary (memory a bypassing or stale translation would hit) and checks it afterwards, and
//! checks what the SMMU reported. The device-side address masking of edu would hide a bypass
//! below 1 GiB, so the scenario that runs these raises edu's mask (`-global edu.dma_mask=...`,
//! `edu.dma_bits=40`); with edu's default mask the tests skip.

use alloc::sync::Arc;
use alloc::vec;
use core::time::Duration;

use addr::Iova;
use kapi::dma_mem::Frames;
use ktest::{kassert, kassert_eq, kfail, ktests, ktry, skip};
use smmuv3::event::EventId;
use smmuv3::{Smmu, StreamId};

/// edu on the default machine (00:03.0): StreamID 0x18.
const EDU_SID: StreamId = StreamId(0x18);
const CANARY: u8 = 0xa5;

fn setup() -> Result<(Arc<edu::EduDevice>, Arc<Smmu>), ktest::Outcome> {
    let Some(edu) = edu::bound().into_iter().find(|e| e.name == "0000:00:03.0") else {
        return Err(ktest::Outcome::Skip("no edu at 0000:00:03.0".into()));
    };
    let Some(smmu) = smmuv3::instances().into_iter().next() else {
        return Err(ktest::Outcome::Skip("no SMMU".into()));
    };
    if edu.dma.iommu_dma().is_none() {
        return Err(ktest::Outcome::Skip(
            "edu is not behind a translating domain".into(),
        ));
    }
    // Let the probe's round trip finish so the device is idle.
    let _ = edu.round_trip_result();
    Ok((edu, smmu))
}

fn canary_page() -> Result<Frames, ktest::Outcome> {
    let f = Frames::alloc(0).ok_or_else(|| ktest::Outcome::Skip("out of memory".into()))?;
    f.fill(0, f.size(), CANARY);
    Ok(f)
}

fn intact(f: &Frames) -> bool {
    (0..f.size()).all(|i| f.read_u8(i) == CANARY)
}

/// Waits for the SMMU to report `id` for edu at `iova`.
fn reported(smmu: &Smmu, id: EventId, iova: u64, write: bool) -> bool {
    kapi::time::wait_until(Duration::from_millis(200), || {
        smmu.recent_events()
            .iter()
            .any(|e| e.id == id && e.sid == EDU_SID && e.input_addr.0 == iova && e.read != write)
    })
    .is_ok()
}

ktests! {
    /// DMA to an IOVA the domain does not map is blocked — the canary at that very address
    /// stays intact — and reported as F_TRANSLATION with edu's StreamID, the IOVA and "write".
    fn dma_to_an_unmapped_iova_is_blocked_and_reported() -> ktest::Result {
        let (edu, smmu) = setup()?;
        if edu.dma.mask() < u64::from(u32::MAX) {
            skip!("edu's mask is {:#x}: run with edu.dma_bits=40 and -global edu.dma_mask=0xffffffffff", edu.dma.mask());
        }
        let canary = canary_page()?;
        // If the SMMU let the transaction through untranslated, it would land on the canary.
        let target = Iova(canary.pa().0);
        kassert!(edu.dma.iommu_dma().is_some_and(|d| d.iova_to_phys(target).is_none()), "the canary's address is mapped");
        let before = smmu.fault_count(EDU_SID);
        ktry!(edu.transfer_raw(edu::Transfer::FromDevice, target, 64));
        kassert!(intact(&canary), "the canary was written");
        kassert!(reported(&smmu, EventId::FTranslation, target.0, true), "no F_TRANSLATION for sid 0x18 at {:#x}", target.0);
        kassert_eq!(smmu.fault_count(EDU_SID) - before, 16, "one event per 4-byte access of the 64-byte transfer");
        Ok(())
    }

    /// A device write to a read-only mapping is blocked and reported as F_PERMISSION.
    fn dma_write_to_a_read_only_mapping_is_blocked_and_reported() -> ktest::Result {
        let (edu, smmu) = setup()?;
        // Mapped for the device to read: read-only in the page tables.
        let ro = match edu.dma.map::<dma::ToDevice>(vec![CANARY; 4096]) {
            Ok(s) => s,
            Err((e, _)) => kfail!("{e}"),
        };
        let iova = ro.addr();
        ktry!(edu.transfer_raw(edu::Transfer::FromDevice, iova, 64));
        kassert!(reported(&smmu, EventId::FPermission, iova.0, true), "no F_PERMISSION at {:#x}", iova.0);
        kassert!(ro.into_buffer().iter().all(|&b| b == CANARY), "the read-only buffer was written");
        Ok(())
    }

    /// Strict mode: once `unmap` has returned, the device's DMA to the old IOVA faults — the
    /// IOTLB entry was invalidated, not left to translate to freed memory.
    fn dma_after_unmap_faults() -> ktest::Result {
        let (edu, smmu) = setup()?;
        if !edu.dma.iommu_dma().is_some_and(|d| d.is_strict()) {
            skip!("lazy invalidation: a stale IOTLB entry may live until the next flush (that is its trade)");
        }
        let s = match edu.dma.map::<dma::Bidirectional>(vec![CANARY; 4096]) {
            Ok(s) => s,
            Err((e, _)) => kfail!("{e}"),
        };
        let old = s.addr();
        // Prime the IOTLB with a translation of the old IOVA.
        ktry!(edu.transfer(edu::Transfer::ToDevice, old, 0, 64));
        let buf = s.into_buffer();
        ktry!(edu.transfer_raw(edu::Transfer::FromDevice, old, 64));
        kassert!(reported(&smmu, EventId::FTranslation, old.0, true), "DMA to the unmapped IOVA {:#x} was not blocked", old.0);
        kassert!(buf.iter().all(|&b| b == CANARY), "the old buffer was written after unmap");
        Ok(())
    }
}

ktests! {
    /// `iommu.passthrough=1`: every bound device behind the SMMU has a bypass STE, and a device
    /// whose probe failed (edu with its 28-bit mask and no translation) is blocked, not bypassing.
    fn passthrough_gives_bound_devices_a_bypass_ste() -> ktest::Result {
        if !iommu::core().policy().passthrough {
            skip!("iommu.passthrough is off");
        }
        let Some(smmu) = smmuv3::instances().into_iter().next() else { skip!("no SMMU") };
        let config = |sid| smmu.ste(StreamId(sid)).map(|s| s.config());
        let edu_bound = edu::bound().iter().any(|e| e.name == "0000:00:03.0");
        kassert_eq!(config(0x10), Some(smmuv3::ste::SteConfig::Bypass), "virtio-blk");
        let want = if edu_bound { smmuv3::ste::SteConfig::Bypass } else { smmuv3::ste::SteConfig::Abort };
        kassert_eq!(config(0x18), Some(want), "edu (bound: {edu_bound})");
        Ok(())
    }
}
