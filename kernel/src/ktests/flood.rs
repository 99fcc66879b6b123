//! A device that faults in a loop, with the real SMMU and the real edu: edu is aimed over and
//! over at an IOVA its domain does not map, 1024 faulting 4-byte writes per transfer, which
//! overflows the 512-entry event queue on the first transfer. The kernel must report the
//! overflow (once: the scenario counts the log lines), cut the stream off by the fault-flood
//! policy (1000 events within 1 s: STE ABORT), keep serving virtio-blk meanwhile, and give the
//! device a clean stream again when it is released and bound anew. A cut-off stream loses its
//! MSIs too (they are writes through the same STE): the device can no longer signal anything.

use addr::Iova;
use alloc::vec;
use devmodel::DeviceId;
use ktest::{kassert, kassert_eq, kfail, ktests, ktry, skip};
use smmuv3::StreamId;
use smmuv3::ste::SteConfig;

use crate::devices;

/// edu on the default machine (00:03.0): StreamID 0x18.
const EDU_SID: StreamId = StreamId(0x18);
const EDU: &str = "0000:00:03.0";
/// Transfers before the test gives up waiting for the cut-off (the policy needs ~1 of them).
const MAX_TRANSFERS: usize = 64;
/// The disk region read back between transfers.
const DISK_CHECK_BYTES: usize = 64 << 10;

fn edu_id() -> Option<DeviceId> {
    devices::with(|dm| dm.find_by_name(EDU)).flatten()
}

/// An IOVA below edu's 28-bit reach that its domain does not map.
fn unmapped_iova(edu: &edu::EduDevice) -> Option<Iova> {
    let d = edu.dma.iommu_dma()?;
    (1..0x1000u64)
        .map(|page| Iova(0x0fff_f000 - page * 0x1_0000))
        .find(|&iova| d.iova_to_phys(iova).is_none())
}

ktests! {
    /// The flood: the overflow is counted, the stream is cut off (STE ABORT) and records no
    /// further events, the device can no longer write even to memory it was given, virtio-blk
    /// reads stay right throughout, and unbinding and rebinding edu gives it a working stream.
    fn a_fault_flood_is_cut_off_and_other_devices_keep_working() -> ktest::Result {
        let Some(edu) = edu::bound().into_iter().find(|e| e.name == EDU) else { skip!("no edu at {EDU}") };
        let Some(smmu) = smmuv3::instances().into_iter().next() else { skip!("no SMMU") };
        let Some(disk) = virtio_blk::bound().into_iter().next() else { skip!("no virtio-blk disk") };
        if edu.dma.iommu_dma().is_none() {
            skip!("edu is not behind a translating domain");
        }
        let _ = edu.round_trip_result();
        let reference = ktry!(disk.read(0, DISK_CHECK_BYTES));
        let Some(target) = unmapped_iova(&edu) else { kfail!("no unmapped IOVA below 256 MiB") };
        let overflows_before = smmu.event_overflows();

        let mut transfers = 0;
        while !smmu.is_cut_off(EDU_SID) && transfers < MAX_TRANSFERS {
            // Aborted writes still complete (edu does not see the error): the wait succeeds.
            ktry!(edu.transfer_raw(edu::Transfer::FromDevice, target, 4096));
            transfers += 1;
            kassert_eq!(ktry!(disk.read(0, DISK_CHECK_BYTES)), reference, "virtio-blk read back wrong data during the flood (transfer {transfers})");
        }
        kassert!(smmu.is_cut_off(EDU_SID), "{transfers} faulting transfers ({} events) and the stream is not cut off", smmu.fault_count(EDU_SID));
        kassert_eq!(smmu.ste(EDU_SID).map(|s| s.config()), Some(SteConfig::Abort));
        kassert!(smmu.event_overflows() > overflows_before, "the event queue never overflowed ({} events)", smmu.fault_count(EDU_SID));

        // Aborted by the STE, silently: the write to a buffer the device was given does not
        // land, no event is recorded, and the completion MSI — a write through the same
        // stream — is aborted too, so the transfer never reports completion.
        let events = smmu.fault_count(EDU_SID);
        let mapped = match edu.dma.map::<dma::FromDevice>(vec![0xa5u8; 4096]) {
            Ok(s) => s,
            Err((e, _)) => kfail!("{e}"),
        };
        match edu.transfer(edu::Transfer::FromDevice, mapped.addr(), 0, 4096) {
            Err(edu::EduError::NoInterrupt) => {}
            other => kfail!("a transfer of a cut-off device completed: {other:?}"),
        }
        kassert!(mapped.into_buffer().iter().all(|&b| b == 0xa5), "a cut-off device wrote to memory");
        kassert_eq!(smmu.fault_count(EDU_SID), events, "events after the cut-off");
        kassert_eq!(ktry!(disk.read(0, DISK_CHECK_BYTES)), reference, "virtio-blk read back wrong data after the flood");

        // Released and bound again: a fresh stream, and DMA works.
        let Some(id) = edu_id() else { kfail!("edu has no device id") };
        ktry!(ktry!(devices::with(|dm| dm.unbind(id)).ok_or("no device manager")));
        kassert!(!smmu.is_cut_off(EDU_SID), "still cut off after release");
        kassert_eq!(smmu.fault_count(EDU_SID), 0, "the fault count was not reset on release");
        ktry!(ktry!(devices::with(|dm| dm.bind(id)).ok_or("no device manager")));
        let Some(edu) = edu::bound().into_iter().find(|e| e.name == EDU) else { kfail!("edu did not bind again") };
        kassert!(edu.round_trip_result().is_ok(), "edu's round trip failed after rebinding");
        kassert!(matches!(smmu.ste(EDU_SID).map(|s| s.config()), Some(SteConfig::Stage1 { .. })), "edu's STE after rebinding: {:?}", smmu.ste(EDU_SID).map(|s| s.config()));
        Ok(())
    }
}
