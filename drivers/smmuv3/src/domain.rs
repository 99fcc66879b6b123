//! A stage-1 DMA domain: one context descriptor, one ASID, one VMSAv8-64 page table
//! (IHI 0070 §5.4 "Context Descriptor", §4.4 "TLB invalidation").
//!
//! The CD is alone in its page (S1CDMax = 0: the STE points straight at it), with the kernel's
//! MAIR, TTB0 = the table root, a 48-bit IOVA space, the SMMU's output size (at most 48 bits),
//! R = 1 so faults are recorded, and walk attributes following IDR0.COHACC. It is written
//! before any STE points at it; the attach that makes it reachable syncs (CFGI_STE + CMD_SYNC)
//! behind a barrier.
//!
//! Data path, which may run in interrupt context: `map` and `unmap` change the table under the
//! domain's [`IrqLock`]; `map` needs no TLB maintenance (invalid entries are never cached),
//! `unmap` only gathers. `iotlb_sync` turns the gather into the fewest TLBI_NH_VA commands
//! ([`crate::cmd::tlbi_va_range`]: range commands with IDR3.RIL, Leaf = 0 when table pages were
//! freed so walk caches go too, one TLBI_NH_ASID when the list would be long), waits for their
//! CMD_SYNC, and only then frees the table pages the gather held. `flush_all` does the same
//! with one TLBI_NH_ASID.
//!
//! Dropping the domain (no STE can point at it then: attached streams hold an `Arc`)
//! invalidates its ASID, waits, frees the table pages and the CD, and returns the ASID.

use alloc::format;
use alloc::string::String;
use alloc::sync::{Arc, Weak};

use io_pgtable::{BlockSplit, Config, Gather, Invalidation, MemoryType, PageTable, PageTableError};
use iommu::{IommuDomain, IommuError, Prot};
use kapi::dma_mem::Frames;
use kapi::logging::DevLog;
use kapi::sync::IrqLock;
use kapi::{Iova, PhysAddr};

use crate::cd::{CD_SIZE, CD_WORDS, Cd, Stage1};
use crate::features::Oas;
use crate::instance::Smmu;
use crate::pgtable_mem::FramesTableMemory;
use crate::{Asid, SmmuError, Structure};

/// IOVA bits of every domain: a four-level table starting at level 0 (T0SZ = 16).
pub const IAS_BITS: u32 = 48;

/// One TLB invalidation a domain issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flush {
    /// TLBI commands issued (the CMD_SYNC not counted).
    pub commands: usize,
    /// The whole ASID was invalidated (TLBI_NH_ASID) instead of a range.
    pub whole_asid: bool,
    /// Leaf-only invalidation (Leaf = 1): no table page was freed.
    pub leaf: bool,
}

/// What a domain did, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainStats {
    /// TLBI commands issued since the domain was made.
    pub tlbi_commands: u64,
    /// Invalidations completed (each ends with one CMD_SYNC).
    pub syncs: u64,
    /// The last one.
    pub last_flush: Option<Flush>,
}

struct Inner {
    /// `None` only while the domain is being dropped.
    table: Option<PageTable<FramesTableMemory>>,
    /// Unmaps since the last invalidation.
    gather: Option<Gather<Iova>>,
    stats: DomainStats,
}

/// A translated domain of one SMMU.
pub struct SmmuDomain {
    smmu: Weak<Smmu>,
    log: DevLog,
    asid: Asid,
    cd: Arc<Frames>,
    inner: IrqLock<Inner>,
}

impl core::fmt::Debug for SmmuDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SmmuDomain(asid {}, cd {:#x})", self.asid, self.cd.pa())
    }
}

/// The output size the tables use: the SMMU's OAS, at most 48 bits (io-pgtable's limit, and
/// the 4 KiB granule's without LPA2).
fn table_oas(oas: Oas) -> Oas {
    oas.min(Oas::Bits48)
}

impl SmmuDomain {
    /// A new, empty domain of `smmu` with a fresh ASID.
    pub(crate) fn new(smmu: &Arc<Smmu>, asid: Asid) -> Result<Self, SmmuError> {
        let features = smmu.features();
        let coherency = smmu.coherency();
        let oas = table_oas(features.oas);
        let config = Config::smmu(oas.bits(), BlockSplit::from_smmu_bbml(features.bbml));
        let table = PageTable::new(FramesTableMemory::new(coherency), config)?;
        let cd = Cd::stage1(&Stage1 {
            asid,
            ttb0: table.root(),
            ias_bits: config.input_bits,
            oas,
            coherent_walk: coherency.is_coherent(),
        })?;
        let frame = Frames::alloc(0).ok_or(SmmuError::NoMemory(Structure::ContextDescriptor))?;
        // Nothing points at the CD yet: plain stores, word 0 (V) last anyway. The attach that
        // makes it reachable issues CFGI_STE + CMD_SYNC behind a barrier.
        for w in (0..CD_WORDS).rev() {
            frame.write_u64(8 * w as u64, cd.words()[w]);
        }
        coherency.publish(&frame, 0, CD_SIZE);
        Ok(Self {
            smmu: Arc::downgrade(smmu),
            log: smmu.devlog().clone(),
            asid,
            cd: Arc::new(frame),
            inner: IrqLock::new(Inner {
                table: Some(table),
                gather: None,
                stats: DomainStats::default(),
            }),
        })
    }

    /// The ASID tagging this domain's TLB entries.
    pub fn asid(&self) -> Asid {
        self.asid
    }

    /// Physical address of the CD (what a stage-1 STE points at).
    pub fn cd_address(&self) -> PhysAddr {
        self.cd.pa()
    }

    /// The CD as it is in memory.
    pub fn cd(&self) -> Cd {
        let mut words = [0; CD_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.cd.read_u64(8 * i as u64);
        }
        Cd::from_words(words)
    }

    /// Counters.
    pub fn stats(&self) -> DomainStats {
        self.inner.lock().stats
    }

    /// True when unmaps are waiting for `iotlb_sync`.
    pub fn has_pending_invalidation(&self) -> bool {
        self.inner
            .lock()
            .gather
            .as_ref()
            .is_some_and(|g| !g.is_empty())
    }

    fn record(stats: &mut DomainStats, flush: Flush) {
        stats.tlbi_commands += flush.commands as u64;
        stats.syncs += 1;
        stats.last_flush = Some(flush);
    }

    /// Invalidates `inv` on the SMMU (falling back to the whole ASID when the range commands
    /// are refused); `Ok` without anything to do when the SMMU is gone (it is disabled then).
    fn invalidate(
        smmu: Option<&Arc<Smmu>>,
        asid: Asid,
        inv: &Invalidation<Iova>,
        stats: &mut DomainStats,
    ) -> Result<(), SmmuError> {
        let Some(smmu) = smmu else { return Ok(()) };
        let flush = match smmu.invalidate_range(asid, inv) {
            Err(SmmuError::CommandRefused(_)) => smmu.invalidate_asid(asid)?,
            other => other?,
        };
        Self::record(stats, flush);
        Ok(())
    }
}

fn pgtable_prot(prot: Prot) -> Result<io_pgtable::Prot, SmmuError> {
    // Stage-1 entries are always readable: a write-only mapping (an MSI doorbell) is mapped
    // read-write; one allowing neither is refused.
    if !prot.read && !prot.write {
        return Err(SmmuError::NoAccess);
    }
    let memory = if prot.mmio {
        MemoryType::Device
    } else if prot.cacheable {
        MemoryType::NormalWriteBack
    } else {
        MemoryType::NormalNonCacheable
    };
    Ok(if prot.write {
        io_pgtable::Prot::read_write(memory)
    } else {
        io_pgtable::Prot::read_only(memory)
    })
}

fn map_error(e: PageTableError, iova: Iova, pa: PhysAddr, size: u64) -> IommuError {
    match e {
        PageTableError::ZeroSize
        | PageTableError::Misaligned { .. }
        | PageTableError::MisalignedOutput(_) => IommuError::Misaligned {
            iova: iova.0,
            pa: pa.0,
            size,
        },
        PageTableError::InputOutOfRange { .. } => IommuError::OutOfAperture { iova: iova.0, size },
        PageTableError::AlreadyMapped { input } => IommuError::AlreadyMapped { iova: input.0 },
        other => SmmuError::PageTable(other).into(),
    }
}

impl IommuDomain for SmmuDomain {
    fn name(&self) -> String {
        format!("asid {}", self.asid)
    }

    fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), IommuError> {
        let prot = pgtable_prot(prot)?;
        let mut inner = self.inner.lock();
        let table = inner.table.as_mut().ok_or(SmmuError::Disabled)?;
        table
            .map(iova, pa, size, prot)
            .map_err(|e| map_error(e, iova, pa, size))
    }

    fn unmap(&self, iova: Iova, size: u64) -> u64 {
        let mut inner = self.inner.lock();
        let Inner { table, gather, .. } = &mut *inner;
        let Some(table) = table else { return 0 };
        let gather = gather.get_or_insert_with(Gather::new);
        match table.unmap(iova, size, gather) {
            Ok(bytes) => bytes,
            Err(e) => {
                kapi::dev_warn!(
                    self.log,
                    "asid {}: unmap {:#x}+{size:#x} failed: {e}",
                    self.asid,
                    iova.0
                );
                0
            }
        }
    }

    fn iotlb_sync(&self) -> Result<(), IommuError> {
        let smmu = self.smmu.upgrade();
        let mut inner = self.inner.lock();
        let Inner {
            table,
            gather,
            stats,
        } = &mut *inner;
        let (Some(table), Some(pending)) = (table.as_mut(), gather.take()) else {
            return Ok(());
        };
        let asid = self.asid;
        table
            .flush(pending, |inv| {
                Self::invalidate(smmu.as_ref(), asid, inv, stats)
            })
            .map_err(|unflushed| {
                let e = unflushed.error;
                kapi::dev_err!(
                    self.log,
                    "asid {asid}: TLB invalidation failed: {e}; table pages held"
                );
                *gather = Some(unflushed.gather);
                e.into()
            })
    }

    fn flush_all(&self) -> Result<(), IommuError> {
        let smmu = self.smmu.upgrade();
        let mut inner = self.inner.lock();
        let Inner {
            table,
            gather,
            stats,
        } = &mut *inner;
        let Some(table) = table.as_mut() else {
            return Ok(());
        };
        if let Some(smmu) = &smmu {
            match smmu.invalidate_asid(self.asid) {
                Ok(flush) => Self::record(stats, flush),
                Err(e) => {
                    kapi::dev_err!(self.log, "asid {}: TLB invalidation failed: {e}", self.asid);
                    return Err(e.into());
                }
            }
        }
        if let Some(pending) = gather.take() {
            // The whole ASID is invalidated and synced: nothing cached refers to these pages.
            let _ = table.flush(pending, |_| Ok::<(), SmmuError>(()));
        }
        Ok(())
    }

    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.inner.lock().table.as_ref()?.translate(iova)
    }

    fn aperture(&self) -> addr::Range<Iova> {
        addr::Range::new(Iova(0), 1 << IAS_BITS)
    }

    fn table_pages(&self) -> u64 {
        self.inner
            .lock()
            .table
            .as_ref()
            .map_or(0, |t| t.tables_in_use() as u64)
    }

    fn mapped_bytes(&self) -> u64 {
        self.inner
            .lock()
            .table
            .as_ref()
            .map_or(0, |t| t.mapped_bytes())
    }
}

impl Drop for SmmuDomain {
    fn drop(&mut self) {
        let (table, gather) = {
            let mut inner = self.inner.lock();
            (inner.table.take(), inner.gather.take())
        };
        let Some(mut table) = table else { return };
        let Some(smmu) = self.smmu.upgrade() else {
            // The SMMU was torn down: it is disabled and walks nothing.
            drop(gather);
            drop(table.destroy());
            return;
        };
        // No STE points at the CD any more (attached streams hold an Arc of the domain), but
        // the TLBs may still hold its translations and walks: invalidate the ASID and wait
        // before its tables or the ASID are reused (IHI 0070 §4.4, TLBI_NH_ASID + CMD_SYNC).
        match smmu.invalidate_asid(self.asid) {
            Ok(_) => {
                if let Some(pending) = gather {
                    let _ = table.flush(pending, |_| Ok::<(), SmmuError>(()));
                }
                drop(table.destroy());
                smmu.release_domain(self.asid);
            }
            Err(e) => {
                kapi::dev_err!(
                    self.log,
                    "asid {}: not invalidated ({e}): its tables, CD and ASID are leaked",
                    self.asid
                );
                core::mem::forget(gather);
                table.destroy().leak();
                core::mem::forget(self.cd.clone());
                smmu.forget_domain();
            }
        }
    }
}
