//! In-QEMU tests of the bound disk (`virtio_blk::ktests::*`). Each skips when no virtio-blk
//! device is bound (no disk on the machine, or the device still deferred waiting for its
//! IOMMU). The content checks expect the generated default image (64 MiB of
//! [`crate::pattern`] data) and skip on another disk.

use alloc::sync::Arc;
use alloc::vec::Vec;

use kapi::time::Instant;
use ktest::{kassert, kassert_eq, kfail, ktests, ktry, skip};

use crate::features::bit;
use crate::pattern::{DiskPattern, SEED};
use crate::{BlkError, Disk, Interrupts};

/// Size of the generated default image.
const GENERATED_SIZE: u64 = 64 << 20;

fn disk() -> Option<Arc<Disk>> {
    crate::bound().into_iter().next()
}

/// The disk, if it is the generated image (checked by its size and its first sector).
fn generated_disk() -> Result<Arc<Disk>, ktest::Outcome> {
    let Some(d) = disk() else {
        return Err(ktest::Outcome::Skip("no virtio-blk device bound".into()));
    };
    if d.capacity_bytes() != GENERATED_SIZE {
        return Err(ktest::Outcome::Skip(alloc::format!(
            "{} bytes: not the generated image",
            d.capacity_bytes()
        )));
    }
    Ok(d)
}

fn matches_pattern(offset: u64, data: &[u8]) -> Option<usize> {
    DiskPattern::at(SEED, offset).first_mismatch(data)
}

ktests! {
    /// The device offered, and the driver accepted, VERSION_1 and ACCESS_PLATFORM (QEMU only
    /// latches FEATURES_OK with `iommu_platform=on` when ACCESS_PLATFORM is accepted).
    fn negotiated_version_1_and_access_platform() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        kassert!(d.features().has(bit::VERSION_1), "negotiated {}", d.features());
        kassert!(d.offered_features().has(bit::ACCESS_PLATFORM),
            "offered {}: is iommu_platform=on?", d.offered_features());
        kassert!(d.features().has(bit::ACCESS_PLATFORM), "negotiated {}", d.features());
        kassert!(!d.features().has(bit::EVENT_IDX) && !d.features().has(bit::INDIRECT_DESC));
        Ok(())
    }

    /// The first and last sectors read back as the image generator wrote them.
    fn first_and_last_sectors_match_the_generated_disk() -> ktest::Result {
        let d = generated_disk()?;
        let first = ktry!(d.read(0, 4096));
        kassert_eq!(matches_pattern(0, &first), None, "first 4 KiB differ");
        let last_sector = d.capacity_bytes() / 512 - 1;
        let last = ktry!(d.read(last_sector, 512));
        kassert_eq!(matches_pattern(last_sector * 512, &last), None, "last sector differs");
        Ok(())
    }

    /// Eight reads spread over the disk are all in the ring at once, and each completes with
    /// its own data, whatever order the device finishes them in.
    fn eight_requests_in_flight_complete() -> ktest::Result {
        let d = generated_disk()?;
        let stride = d.capacity_bytes() / 512 / 8;
        let sectors: Vec<u64> = (0..8).map(|i| i * stride + 8 * i).collect();
        // Submitted with interrupts masked, so none completes before all are in flight.
        let saved = kapi::irq::local_save();
        let tickets: Result<Vec<_>, BlkError> = sectors
            .iter()
            .map(|&s| d.submit_read(s, alloc::vec![0; 8192]))
            .collect();
        let in_flight = d.in_flight();
        kapi::irq::local_restore(saved);
        let tickets = ktry!(tickets);
        kassert_eq!(in_flight, 8);
        // Waited for in reverse: completions are matched by slot, not by order.
        for (s, t) in sectors.iter().zip(tickets).rev() {
            let data = ktry!(t.wait());
            kassert_eq!(data.len(), 8192);
            kassert_eq!(matches_pattern(s * 512, &data), None, "sector {s}");
        }
        kassert_eq!(d.in_flight(), 0);
        Ok(())
    }

    /// Requests whose tickets are dropped unwaited free their slots when the device returns
    /// them: after filling every slot with abandoned reads, a blocking read still gets one.
    fn abandoned_requests_release_their_slot() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        let saved = kapi::irq::local_save();
        let mut submitted = 0;
        let full = loop {
            match d.submit_read(0, alloc::vec![0; 512]) {
                Ok(t) => { drop(t); submitted += 1; }
                Err(e) => break e,
            }
        };
        kapi::irq::local_restore(saved);
        kassert_eq!(full, BlkError::QueueFull);
        kassert_eq!(submitted, d.max_in_flight());
        ktry!(d.read(8, 512));
        kassert!(kapi::time::wait_until(crate::REQUEST_TIMEOUT, || d.in_flight() == 0).is_ok(),
            "{} requests still in flight", d.in_flight());
        Ok(())
    }

    /// A write to a read-only disk is refused by the driver; nothing reaches the device.
    fn write_to_read_only_disk_is_refused() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        if !d.read_only() {
            skip!("the disk is writable");
        }
        let before = d.stats().requests;
        kassert_eq!(d.write(0, &[0xa5; 512]), Err(BlkError::ReadOnly));
        kassert_eq!(d.stats().requests, before);
        Ok(())
    }

    /// Write a pattern, flush, read it back, then restore what was there (scratch disk only).
    fn write_then_read_back() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        if d.read_only() {
            skip!("the disk is read-only (needs a writable scratch image)");
        }
        let sector = d.capacity_bytes() / 512 - 64;
        let original = ktry!(d.read(sector, 16384));
        let pattern: Vec<u8> = (0..16384u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        ktry!(d.write(sector, &pattern));
        ktry!(d.flush());
        let back = ktry!(d.read(sector, 16384));
        let restore = d.write(sector, &original).and_then(|()| d.flush());
        kassert!(back == pattern, "the read-back differs from what was written");
        ktry!(restore);
        kassert!(ktry!(d.read(sector, 16384)) == original, "the restored data differs");
        Ok(())
    }

    /// Requests outside the disk, of no or odd length, or too large are refused before any
    /// descriptor is written.
    fn malformed_requests_are_refused() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        let before = d.stats().requests;
        let end = d.capacity_bytes() / 512;
        kassert!(matches!(d.read(end, 512), Err(BlkError::OutOfRange { .. })));
        kassert!(matches!(d.read(end - 1, 1024), Err(BlkError::OutOfRange { .. })));
        kassert!(matches!(d.read(u64::MAX, 512), Err(BlkError::OutOfRange { .. })));
        kassert_eq!(d.read(0, 0), Err(BlkError::BadLength { len: 0 }));
        kassert_eq!(d.read(0, 100), Err(BlkError::BadLength { len: 100 }));
        let max = d.max_transfer();
        kassert_eq!(d.read(0, max + 512), Err(BlkError::TooLarge { len: max + 512, max }));
        kassert_eq!(d.stats().requests, before);
        Ok(())
    }

    /// Completions are announced by interrupts: MSI-X when the platform has an MSI controller
    /// (behind the SMMU the message goes to the doorbell's IOVA), INTx otherwise.
    fn completions_arrive_by_interrupt() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        let before = d.interrupt_count();
        ktry!(d.read(0, 512));
        kassert!(d.interrupt_count() > before, "no interrupt for a completed request");
        let mode = d.interrupt_mode();
        if d.dma().msi_device_id().is_some() {
            kassert!(matches!(mode, Some(Interrupts::MsiX { .. })), "{mode:?} although MSIs are available");
        }
        Ok(())
    }

    /// GET_ID and FLUSH complete (QEMU's ID is the drive's serial, empty by default).
    fn get_id_and_flush_complete() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        let id = ktry!(d.id());
        kassert!(id.len() <= crate::request::ID_BYTES);
        ktry!(d.flush());
        Ok(())
    }

    /// The whole disk, streamed in 64 KiB requests eight deep, arrives in order and matches
    /// the generator byte for byte.
    fn whole_disk_streams_in_order_and_matches() -> ktest::Result {
        let d = generated_disk()?;
        let mut expect = DiskPattern::new(SEED);
        let mut next = 0u64;
        let mut bad: Option<(u64, usize)> = None;
        let start = Instant::now();
        let n = ktry!(d.stream(0, d.capacity_bytes(), 64 << 10, 8, |offset, data| {
            if offset != next && bad.is_none() {
                bad = Some((offset, usize::MAX));
            }
            next = offset + data.len() as u64;
            if let Some(i) = expect.first_mismatch(data)
                && bad.is_none()
            {
                bad = Some((offset, i));
            }
        }));
        let took = start.elapsed();
        if let Some((offset, i)) = bad {
            kfail!("chunk at {offset:#x}: first bad byte {i} (usize::MAX: out of order)");
        }
        kassert_eq!(n, d.capacity_bytes());
        kassert_eq!(next, d.capacity_bytes());
        log::info!(target: "virtio-blk ktest",
            "{} MiB read and checked in {} ms ({} DMA, {})", n >> 20, took.as_millis(),
            d.dma_ops(), d.interrupt_mode().map_or(alloc::string::String::new(), |m| alloc::format!("{m}")));
        Ok(())
    }

    /// A device whose completions go unannounced (its queue vector set to NO_VECTOR, as if
    /// the MSI were lost) times out after REQUEST_TIMEOUT, is reset and marked broken, and
    /// refuses further requests. Manual: it leaves the device unusable until re-bound.
    #[manual]
    fn lost_interrupts_time_out_and_break_the_device() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        if !matches!(d.interrupt_mode(), Some(Interrupts::MsiX { .. })) {
            skip!("needs MSI-X");
        }
        ktry!(d.silence_queue_interrupt());
        let start = Instant::now();
        kassert_eq!(d.read(0, 512), Err(BlkError::Timeout));
        kassert!(start.elapsed() >= crate::REQUEST_TIMEOUT);
        let reason = crate::BrokenReason::Timeout { completed_unannounced: true };
        kassert_eq!(d.broken(), Some(reason));
        kassert_eq!(d.read(0, 512), Err(BlkError::Broken(reason)));
        kassert_eq!(d.in_flight(), 0);
        Ok(())
    }

    /// Throughput of whole-disk reads for several request sizes and depths (no checking),
    /// one log line each. Manual: `ktest=virtio_blk::ktests::read_throughput`.
    #[manual]
    fn read_throughput() -> ktest::Result {
        let Some(d) = disk() else { skip!("no virtio-blk device bound") };
        for (size, depth) in [(4usize << 10, 1usize), (64 << 10, 1), (64 << 10, 8), (256 << 10, 8), (1 << 20, 4), (4 << 20, 4)] {
            let start = Instant::now();
            let n = ktry!(d.stream(0, d.capacity_bytes(), size, depth, |_, _| {}));
            let us = start.elapsed().as_micros().max(1) as u64;
            log::info!(target: "virtio-blk ktest",
                "{} MiB in {} ms with {} KiB requests, {} deep: {} MiB/s ({} DMA)",
                n >> 20, us / 1000, size >> 10, depth, (n * 1_000_000 / us) >> 20, d.dma_ops());
        }
        Ok(())
    }
}
