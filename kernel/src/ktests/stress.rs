//! Stress through the real SMMU: thousands of random streaming, scatter-gather and coherent
//! mappings of random sizes on virtio-blk's own domain, made and torn down while the disk reads
//! through the same domain. After every operation the page tables are asked about every live
//! mapping (each page translates to the CPU page behind it) and about the one just removed
//! (nothing translates); at quiet points the domain's mapped bytes and the IOVA allocator's
//! live ranges must equal what the test holds. Every read is checked against the generated
//! disk's known content.

use alloc::collections::{BTreeSet, VecDeque};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use addr::{Iova, PAGE_SIZE, VirtAddr};
use ktest::{kassert, kassert_eq, kfail, ktests, ktry, skip};
use virtio_blk::pattern::DiskPattern;

/// Random operations.
const OPS: usize = 4000;
/// Mappings alive at most; beyond, the test unmaps.
const MAX_LIVE: usize = 96;
/// Reads kept in flight while mappings come and go.
const READS_IN_FLIGHT: usize = 4;
/// Largest streaming buffer (bytes).
const MAX_STREAM: usize = 256 << 10;

/// Deterministic xorshift64 (the same sequence every boot, so a failure reproduces).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// A size skewed small: most mappings in real drivers are a page or less.
    fn size(&mut self, max: usize) -> usize {
        let bits = self.range(0, u64::from(max.ilog2()));
        self.range(1, (1u64 << bits).min(max as u64)) as usize
    }
}

/// One mapping the test holds.
enum Held {
    Stream(dma::DmaStream<dma::Bidirectional>),
    Sg(dma::DmaSgTable<dma::ToDevice>),
    Coherent(dma::DmaCoherent),
}

fn cpu_pa(va: VirtAddr) -> u64 {
    kapi::platform::get()
        .virt_to_phys(va)
        .map_or(u64::MAX, |pa| pa.0)
}

/// The pages a buffer of `len` bytes at `pa` touches.
fn pages_of(pa: u64, len: u64) -> impl Iterator<Item = u64> {
    let first = pa & !(PAGE_SIZE - 1);
    (first..pa + len).step_by(PAGE_SIZE as usize)
}

impl Held {
    /// Bytes of page table this mapping accounts for.
    fn mapped_bytes(&self) -> u64 {
        match self {
            Held::Stream(s) => {
                let (va, len) = s.cpu_span();
                pages_of(cpu_pa(va), len as u64).count() as u64 * PAGE_SIZE
            }
            Held::Sg(t) => t
                .cpu_spans()
                .map(|(va, len)| pages_of(cpu_pa(va), len as u64).count() as u64 * PAGE_SIZE)
                .sum(),
            Held::Coherent(c) => c.size().next_multiple_of(PAGE_SIZE),
        }
    }

    /// The IOVA ranges the device sees.
    fn iova_ranges(&self) -> Vec<(Iova, u64)> {
        match self {
            Held::Stream(s) => vec![(s.addr(), s.len() as u64)],
            Held::Sg(t) => t.segments().to_vec(),
            Held::Coherent(c) => vec![(c.addr(), c.size())],
        }
    }

    /// Checks that every page of the mapping translates to the CPU page behind it.
    fn check(&self, d: &dma::IommuDma) -> Result<(), alloc::string::String> {
        let translate = |iova: u64| d.iova_to_phys(Iova(iova)).map(|p| p.0);
        match self {
            Held::Stream(s) => {
                let pa = cpu_pa(s.cpu_span().0);
                for off in (0..s.len() as u64)
                    .step_by(PAGE_SIZE as usize)
                    .chain([s.len() as u64 - 1])
                {
                    let got = translate(s.addr().0 + off);
                    if got != Some(pa + off) {
                        return Err(alloc::format!(
                            "stream {:#x}+{off:#x} translates to {got:x?}, the buffer is at {:#x}",
                            s.addr().0,
                            pa + off
                        ));
                    }
                }
            }
            Held::Sg(t) => {
                // Every page of every buffer is reachable through the segments, and nothing
                // else is.
                let want: BTreeSet<u64> = t
                    .cpu_spans()
                    .flat_map(|(va, len)| pages_of(cpu_pa(va), len as u64))
                    .collect();
                let mut got = BTreeSet::new();
                for &(iova, len) in t.segments() {
                    for page in pages_of(iova.0, len) {
                        match translate(page) {
                            Some(pa) => got.insert(pa),
                            None => {
                                return Err(alloc::format!(
                                    "segment {:#x}+{len:#x}: page {page:#x} is not mapped",
                                    iova.0
                                ));
                            }
                        };
                    }
                }
                if got != want {
                    return Err(alloc::format!(
                        "scatter-gather pages differ: {} mapped, {} in the buffers",
                        got.len(),
                        want.len()
                    ));
                }
            }
            Held::Coherent(c) => {
                for off in (0..c.size()).step_by(PAGE_SIZE as usize) {
                    let got = translate(c.addr().0 + off);
                    if got != Some(c.phys_at(off).0) {
                        return Err(alloc::format!(
                            "coherent {:#x}+{off:#x} translates to {got:x?}, its memory is at {:#x}",
                            c.addr().0,
                            c.phys_at(off).0
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A read in flight and where on the disk it reads.
type Read<'d> = (u64, virtio_blk::Ticket<'d>);

fn check_read(offset: u64, data: &[u8]) -> Result<(), alloc::string::String> {
    match DiskPattern::at(virtio_blk::pattern::SEED, offset).first_mismatch(data) {
        None => Ok(()),
        Some(i) => Err(alloc::format!(
            "the read at byte {offset:#x} differs from the disk at +{i:#x}"
        )),
    }
}

ktests! {
    /// Random map / map_sg / alloc_coherent / unmap against virtio-blk's domain with the page
    /// tables cross-checked after every operation, while reads through the same domain stay
    /// right; at the end nothing the test made is left in the tables or the allocator.
    fn random_mappings_agree_with_the_page_tables_while_the_disk_reads() -> ktest::Result {
        let Some(disk) = virtio_blk::bound().into_iter().next() else { skip!("no virtio-blk disk") };
        let dev = disk.dma().clone();
        let Some(d) = dev.iommu_dma().cloned() else { skip!("virtio-blk is not behind a translating domain") };
        let first = ktry!(disk.read(0, 4096));
        if check_read(0, &first).is_err() {
            skip!("not the generated test disk: its content is unknown");
        }
        let sectors = disk.capacity_bytes() / 512;
        let domain = Arc::clone(d.domain());
        d.flush_queue();
        let (base_bytes, base_ranges) = (domain.mapped_bytes(), d.live_ranges());

        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut held: Vec<Held> = Vec::new();
        let mut reads: VecDeque<Read<'_>> = VecDeque::new();
        let (mut maps, mut sgs, mut coherents, mut unmaps, mut bytes_read) = (0, 0, 0, 0, 0u64);
        for op in 0..OPS {
            // Keep the disk busy through the same domain.
            while reads.len() < READS_IN_FLIGHT {
                let len = rng.range(1, 16) * 4096;
                let sector = rng.range(0, sectors - len / 512) & !7;
                reads.push_back((sector * 512, ktry!(disk.submit_read(sector, vec![0; len as usize]))));
            }
            if op % 3 == 0 {
                let (offset, t) = reads.pop_front().expect("reads in flight");
                let data = ktry!(t.wait());
                ktry!(check_read(offset, &data));
                bytes_read += data.len() as u64;
            }

            let kind = rng.range(0, 99);
            if held.len() >= MAX_LIVE || (kind < 40 && !held.is_empty()) {
                let victim = held.swap_remove(rng.range(0, held.len() as u64 - 1) as usize);
                let ranges = victim.iova_ranges();
                drop(victim);
                unmaps += 1;
                for (iova, len) in ranges {
                    for page in pages_of(iova.0, len) {
                        if let Some(pa) = d.iova_to_phys(Iova(page)) {
                            kfail!("op {op}: {page:#x} still translates to {:#x} after its unmap", pa.0);
                        }
                    }
                }
            } else if kind < 75 {
                let buf = vec![rng.next() as u8; rng.size(MAX_STREAM)];
                match dev.map::<dma::Bidirectional>(buf) {
                    Ok(s) => held.push(Held::Stream(s)),
                    Err((e, _)) => kfail!("op {op}: map: {e}"),
                }
                maps += 1;
            } else if kind < 92 {
                let n = rng.range(1, 32) as usize;
                let bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0x5a; rng.size(16 << 10)]).collect();
                match dev.map_sg::<dma::ToDevice>(bufs) {
                    Ok(t) => held.push(Held::Sg(t)),
                    Err((e, _)) => kfail!("op {op}: map_sg: {e}"),
                }
                sgs += 1;
            } else {
                match dev.alloc_coherent(rng.size(64 << 10) as u64) {
                    Ok(c) => held.push(Held::Coherent(c)),
                    Err(e) => kfail!("op {op}: alloc_coherent: {e}"),
                }
                coherents += 1;
            }
            if let Some(h) = held.last()
                && let Err(e) = h.check(&d)
            {
                kfail!("op {op}: {e}");
            }

            // A quiet point: no reads in flight, so the domain holds exactly the baseline and
            // what the test holds.
            if op % 500 == 499 {
                for (offset, t) in reads.drain(..) {
                    let data = ktry!(t.wait());
                    ktry!(check_read(offset, &data));
                    bytes_read += data.len() as u64;
                }
                d.flush_queue();
                for h in &held {
                    if let Err(e) = h.check(&d) {
                        kfail!("op {op}: {e}");
                    }
                }
                let want: u64 = held.iter().map(Held::mapped_bytes).sum();
                kassert_eq!(domain.mapped_bytes() - base_bytes, want, "op {op}: the page tables and the test disagree on what is mapped");
                kassert_eq!(d.live_ranges() - base_ranges, held.len(), "op {op}: the IOVA allocator and the test disagree on live ranges");
            }
        }
        for (offset, t) in reads.drain(..) {
            let data = ktry!(t.wait());
            ktry!(check_read(offset, &data));
            bytes_read += data.len() as u64;
        }
        drop(held);
        d.flush_queue();
        kassert_eq!(domain.mapped_bytes(), base_bytes, "mappings left in the page tables");
        kassert_eq!(d.live_ranges(), base_ranges, "IOVA ranges left in the allocator");
        kassert!(maps > 0 && sgs > 0 && coherents > 0 && unmaps > 0);
        log::info!(target: "ktest", "stress: {maps} maps, {sgs} scatter-gather lists, {coherents} coherent buffers, {unmaps} unmaps, {} KiB read and checked", bytes_read >> 10);
        Ok(())
    }
}
