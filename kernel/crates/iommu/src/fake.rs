//! Fake IOMMU drivers for host tests: they keep stream attachments and page mappings in maps and
//! record every control-path call in a shared event log, so tests can assert ordering.

extern crate std;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use addr::{Iova, PhysAddr, Range};
use std::sync::Mutex;

use crate::types::*;

/// Shared, ordered record of what the fakes were asked to do.
pub type EventLog = Arc<Mutex<Vec<String>>>;

/// A fake IOMMU instance.
pub struct FakeIommu {
    kind: &'static str,
    name: String,
    bypass: bool,
    id_limit: u32,
    log: EventLog,
    /// What each stream is attached to: "blocked", "identity" or a domain name.
    pub streams: Mutex<BTreeMap<u32, String>>,
    probed: Mutex<BTreeMap<u32, String>>,
    domains: Arc<AtomicU64>,
    next_domain: AtomicU32,
}

impl FakeIommu {
    /// A fake of driver type `kind` named `name`; `bypass` says whether identity is possible;
    /// IDs must be below `id_limit`.
    pub fn new(
        kind: &'static str,
        name: &str,
        bypass: bool,
        id_limit: u32,
        log: EventLog,
    ) -> Arc<Self> {
        Arc::new(Self {
            kind,
            name: name.to_string(),
            bypass,
            id_limit,
            log,
            streams: Mutex::new(BTreeMap::new()),
            probed: Mutex::new(BTreeMap::new()),
            domains: Arc::new(AtomicU64::new(0)),
            next_domain: AtomicU32::new(1),
        })
    }

    fn record(&self, what: String) {
        self.log
            .lock()
            .expect("log")
            .push(format!("{}: {what}", self.name));
    }

    /// What stream `id` is attached to (`blocked` when never attached).
    pub fn stream(&self, id: u32) -> String {
        self.streams
            .lock()
            .expect("streams")
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "blocked".into())
    }

    /// True when `probe_device` was called for `id` and not released.
    pub fn is_probed(&self, id: u32) -> bool {
        self.probed.lock().expect("probed").contains_key(&id)
    }
}

impl IommuOps for FakeIommu {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn probe_device(&self, device: &str, ids: &[u32]) -> Result<(), IommuError> {
        if let Some(bad) = ids.iter().find(|&&id| id >= self.id_limit) {
            return Err(IommuError::InvalidId {
                id: *bad,
                limit: self.id_limit - 1,
            });
        }
        let mut p = self.probed.lock().expect("probed");
        for id in ids {
            p.insert(*id, device.to_string());
        }
        self.record(format!("probe {device} {ids:?}"));
        Ok(())
    }
    fn release_device(&self, ids: &[u32]) {
        let mut p = self.probed.lock().expect("probed");
        for id in ids {
            p.remove(id);
        }
        self.record(format!("release {ids:?}"));
    }
    fn alloc_domain(&self) -> Result<Arc<dyn IommuDomain>, IommuError> {
        let n = self.next_domain.fetch_add(1, Ordering::Relaxed);
        self.domains.fetch_add(1, Ordering::Relaxed);
        self.record(format!("alloc domain {n}"));
        Ok(Arc::new(FakeDomain {
            name: format!("{}#{n}", self.name),
            log: self.log.clone(),
            alive: self.domains.clone(),
            pages: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Vec::new()),
            syncs: AtomicU32::new(0),
            failing_syncs: AtomicBool::new(false),
            maps_before_failure: AtomicU32::new(u32::MAX),
            aperture: Range::new(Iova(0), 1 << 48),
        }))
    }
    fn attach(&self, ids: &[u32], target: &AttachTarget) -> Result<(), IommuError> {
        let what = match target {
            AttachTarget::Blocked => "blocked".to_string(),
            AttachTarget::Identity => {
                if !self.bypass {
                    return Err(IommuError::Unsupported(DomainType::Identity));
                }
                "identity".to_string()
            }
            AttachTarget::Translated(d) => d.name(),
        };
        let mut s = self.streams.lock().expect("streams");
        for id in ids {
            s.insert(*id, what.clone());
        }
        drop(s);
        self.record(format!("attach {ids:?} {what}"));
        Ok(())
    }
    fn supports_identity(&self) -> bool {
        self.bypass
    }
    fn stats(&self) -> InstanceStats {
        let s = self.streams.lock().expect("streams");
        InstanceStats {
            streams_not_blocked: s.values().filter(|v| *v != "blocked").count() as u64,
            domains: self.domains.load(Ordering::Relaxed),
            table_pages: 0,
        }
    }
}

/// A fake translated domain: a map of 4 KiB pages.
pub struct FakeDomain {
    name: String,
    log: EventLog,
    alive: Arc<AtomicU64>,
    /// page IOVA -> (PA, prot)
    pub pages: Mutex<BTreeMap<u64, (u64, Prot)>>,
    pending: Mutex<Vec<(u64, u64)>>,
    /// Number of iotlb_sync / flush_all calls.
    pub syncs: AtomicU32,
    /// While set, every invalidation fails (a hardware that stopped answering).
    pub failing_syncs: AtomicBool,
    /// Map calls that succeed before every later one fails with `NoMemory` (table memory
    /// running out part way through a mapping); `u32::MAX` means never.
    pub maps_before_failure: AtomicU32,
    aperture: Range<Iova>,
}

impl Drop for FakeDomain {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
        self.log
            .lock()
            .expect("log")
            .push(format!("drop {}", self.name));
    }
}

const PAGE: u64 = addr::PAGE_SIZE;

impl FakeDomain {
    /// A domain not tied to any fake instance, with a 48-bit aperture (for tests of the layers
    /// above that need the concrete type to look inside).
    pub fn standalone(name: &str) -> Arc<FakeDomain> {
        Arc::new(FakeDomain {
            name: name.to_string(),
            log: Arc::new(Mutex::new(Vec::new())),
            alive: Arc::new(AtomicU64::new(1)),
            pages: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Vec::new()),
            syncs: AtomicU32::new(0),
            failing_syncs: AtomicBool::new(false),
            maps_before_failure: AtomicU32::new(u32::MAX),
            aperture: Range::new(Iova(0), 1 << 48),
        })
    }

    /// Pages mapped.
    pub fn mapped_pages(&self) -> usize {
        self.pages.lock().expect("pages").len()
    }

    /// Invalidations issued (iotlb_sync + flush_all).
    pub fn sync_count(&self) -> u32 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl IommuDomain for FakeDomain {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), IommuError> {
        let aligned = |v: u64| v.is_multiple_of(PAGE);
        if !aligned(iova.0) || !aligned(pa.0) || !aligned(size) || size == 0 {
            return Err(IommuError::Misaligned {
                iova: iova.0,
                pa: pa.0,
                size,
            });
        }
        let left = self.maps_before_failure.load(Ordering::Relaxed);
        if left == 0 {
            return Err(IommuError::NoMemory);
        }
        if left != u32::MAX {
            self.maps_before_failure.store(left - 1, Ordering::Relaxed);
        }
        let mut pages = self.pages.lock().expect("pages");
        for off in (0..size).step_by(PAGE as usize) {
            if pages.contains_key(&(iova.0 + off)) {
                return Err(IommuError::AlreadyMapped { iova: iova.0 + off });
            }
        }
        for off in (0..size).step_by(PAGE as usize) {
            pages.insert(iova.0 + off, (pa.0 + off, prot));
        }
        Ok(())
    }
    fn unmap(&self, iova: Iova, size: u64) -> u64 {
        let mut pages = self.pages.lock().expect("pages");
        let mut n = 0;
        for off in (0..size).step_by(PAGE as usize) {
            if pages.remove(&(iova.0 + off)).is_some() {
                n += PAGE;
            }
        }
        self.pending.lock().expect("pending").push((iova.0, size));
        n
    }
    fn iotlb_sync(&self) -> Result<(), IommuError> {
        if self.failing_syncs.load(Ordering::Relaxed) {
            return Err(IommuError::Driver("invalidation timed out (fake)".into()));
        }
        self.pending.lock().expect("pending").clear();
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn flush_all(&self) -> Result<(), IommuError> {
        self.iotlb_sync()
    }
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        let pages = self.pages.lock().expect("pages");
        pages
            .get(&(iova.0 & !(PAGE - 1)))
            .map(|(pa, _)| PhysAddr(pa + (iova.0 & (PAGE - 1))))
    }
    fn aperture(&self) -> Range<Iova> {
        self.aperture
    }
    fn table_pages(&self) -> u64 {
        0
    }
    fn mapped_bytes(&self) -> u64 {
        self.pages.lock().expect("pages").len() as u64 * PAGE
    }
}
