//! Coherent allocations: memory the CPU and the device share for the allocation's lifetime
//! (queues, descriptor rings). Both sides may access it at any time, so the CPU does so only
//! through volatile accessors.

use alloc::sync::Arc;
use alloc::vec::Vec;

use addr::{Iova, PAGE_SIZE, PhysAddr};
use kapi::dma_mem::{Frames, order_for};

use crate::debug::Kind;
use crate::device::{Backend, DmaDevice, prot};
use crate::direction::Direction;
use crate::error::DmaError;
use crate::stats::{LIVE_COHERENT, dec, inc};

enum Memory {
    /// Page-frame blocks, contiguous in the device's address space (an IOMMU stitches them).
    Frames(Vec<Frames>),
    /// A slot of the bounce pool (for direct devices that cannot reach ordinary frames).
    Pool { pa: PhysAddr },
}

/// A coherent allocation.
pub struct DmaCoherent {
    dev: Arc<DmaDevice>,
    memory: Memory,
    /// Start offset of each frame block within the allocation.
    starts: Vec<u64>,
    addr: Iova,
    size: u64,
    /// For a translated device: the IOVA range to unmap.
    iova: Option<(Iova, u64)>,
}

impl core::fmt::Debug for DmaCoherent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "DmaCoherent({} {:#x}+{:#x}, {} blocks)",
            self.dev.name(),
            self.addr.0,
            self.size,
            self.starts.len().max(1)
        )
    }
}

/// Allocates `pages` pages as frame blocks, largest first: one block of the whole size if the
/// allocator has one, otherwise smaller and smaller orders down to single pages.
fn alloc_blocks(pages: u64) -> Option<Vec<Frames>> {
    let mut blocks = Vec::new();
    let mut left = pages;
    let mut order = order_for(pages * PAGE_SIZE);
    while left > 0 {
        // Never take a block bigger than what is still needed (beyond the first try).
        while order > 0 && (1u64 << order) > left && !blocks.is_empty() {
            order -= 1;
        }
        match Frames::alloc(order) {
            Some(f) => {
                left = left.saturating_sub(1 << order);
                blocks.push(f);
            }
            None if order == 0 => return None,
            None => order -= 1,
        }
    }
    Some(blocks)
}

impl DmaDevice {
    /// Allocates `size` bytes of zeroed memory shared with the device, below its coherent mask.
    /// Behind an IOMMU it tries one physically contiguous block first and falls back to smaller
    /// blocks and single pages, mapped contiguously in IOVA space; a direct device needs one
    /// block it can reach, or a slot of the bounce pool. Thread context only.
    pub fn alloc_coherent(self: &Arc<Self>, size: u64) -> Result<DmaCoherent, DmaError> {
        if size == 0 {
            return Err(DmaError::Empty);
        }
        self.check_not_revoked()?;
        let pages = size.div_ceil(PAGE_SIZE);
        let c = match &self.backend {
            Backend::None(reason) => return Err(DmaError::NoDma(reason.clone())),
            Backend::Iommu(d) => {
                let blocks = alloc_blocks(pages).ok_or(DmaError::NoMemory { size })?;
                // The device gets the pages it asked for, not the rest of a rounded-up block.
                let total = pages * PAGE_SIZE;
                let base = d.alloc_iova(total, self.limit(true))?;
                let mut at = 0;
                let mut starts = Vec::new();
                for b in &blocks {
                    if let Err(e) = d.map(
                        Iova(base.0 + at),
                        b.pa(),
                        b.size().min(total - at),
                        prot(Direction::Bidirectional, self.is_coherent()),
                    ) {
                        if at > 0 {
                            // Strict whatever the policy: the frames are freed on return.
                            if d.unmap_strict(base, total, at, self.name()).is_err() {
                                core::mem::forget(blocks);
                            }
                        } else {
                            d.free_unmapped_iova(base, total);
                        }
                        return Err(e);
                    }
                    starts.push(at);
                    at += b.size();
                }
                DmaCoherent {
                    dev: self.clone(),
                    memory: Memory::Frames(blocks),
                    starts,
                    addr: base,
                    size,
                    iova: Some((base, total)),
                }
            }
            Backend::Direct { bounce } => {
                let limit = self.coherent_mask();
                let reach = |pa: PhysAddr, len: u64| self.bus.reachable(pa.0, len, limit);
                let block = Frames::alloc(order_for(size)).ok_or(DmaError::NoMemory { size })?;
                match reach(block.pa(), block.size()) {
                    Some(bus) => DmaCoherent {
                        dev: self.clone(),
                        memory: Memory::Frames(alloc::vec![block]),
                        starts: alloc::vec![0],
                        addr: Iova(bus),
                        size,
                        iova: None,
                    },
                    None => {
                        drop(block);
                        let unreachable = DmaError::Unreachable {
                            pa: 0,
                            len: size,
                            mask: limit,
                        };
                        let pool = bounce.as_ref().ok_or(unreachable.clone())?;
                        let highest = self
                            .bus
                            .reachable_cpu_ranges(limit)
                            .last()
                            .map(|r| r.1)
                            .ok_or(unreachable.clone())?;
                        let pa = pool.alloc(size, highest).ok_or(unreachable.clone())?;
                        let Some(bus) = reach(pa, size) else {
                            pool.free(pa, size);
                            return Err(unreachable);
                        };
                        pool.frames().fill(
                            pa.0 - pool.range().start.0,
                            size.next_multiple_of(PAGE_SIZE),
                            0,
                        );
                        DmaCoherent {
                            dev: self.clone(),
                            memory: Memory::Pool { pa },
                            starts: Vec::new(),
                            addr: Iova(bus),
                            size,
                            iova: None,
                        }
                    }
                }
            }
        };
        self.track_map(c.addr, size, Direction::Bidirectional, Kind::Coherent);
        inc(&LIVE_COHERENT);
        Ok(c)
    }
}

impl DmaCoherent {
    /// The address to give the device.
    pub fn addr(&self) -> Iova {
        self.addr
    }
    /// Size requested.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Number of physically contiguous blocks backing it (1 = one contiguous block).
    pub fn blocks(&self) -> usize {
        match &self.memory {
            Memory::Frames(f) => f.len(),
            Memory::Pool { .. } => 1,
        }
    }

    /// Physical address of the byte at `offset` (diagnostics and tests).
    pub fn phys_at(&self, offset: u64) -> PhysAddr {
        match &self.memory {
            Memory::Frames(blocks) => {
                let i = self.starts.partition_point(|&s| s <= offset) - 1;
                PhysAddr(blocks[i].pa().0 + offset - self.starts[i])
            }
            Memory::Pool { pa } => PhysAddr(pa.0 + offset),
        }
    }

    fn locate(&self, offset: u64, len: u64) -> (&Frames, u64) {
        assert!(
            offset.checked_add(len).is_some_and(|e| e <= self.size),
            "coherent access {offset:#x}+{len} outside {self:?}"
        );
        match &self.memory {
            Memory::Frames(blocks) => {
                let i = self.starts.partition_point(|&s| s <= offset) - 1;
                (&blocks[i], offset - self.starts[i])
            }
            Memory::Pool { pa } => {
                let Backend::Direct { bounce: Some(pool) } = &self.dev.backend else {
                    unreachable!("pool memory only exists for direct devices with a pool")
                };
                (pool.frames(), pa.0 - pool.range().start.0 + offset)
            }
        }
    }

    /// Volatile 16-bit read (naturally aligned accesses never straddle blocks).
    pub fn read_u16(&self, offset: u64) -> u16 {
        let (f, o) = self.locate(offset, 2);
        f.read_u16(o)
    }
    /// Volatile 32-bit read.
    pub fn read_u32(&self, offset: u64) -> u32 {
        let (f, o) = self.locate(offset, 4);
        f.read_u32(o)
    }
    /// Volatile 64-bit read.
    pub fn read_u64(&self, offset: u64) -> u64 {
        let (f, o) = self.locate(offset, 8);
        f.read_u64(o)
    }
    /// Volatile 8-bit read.
    pub fn read_u8(&self, offset: u64) -> u8 {
        let (f, o) = self.locate(offset, 1);
        f.read_u8(o)
    }
    /// Volatile 8-bit write.
    pub fn write_u8(&self, offset: u64, v: u8) {
        let (f, o) = self.locate(offset, 1);
        f.write_u8(o, v)
    }
    /// Volatile 16-bit write.
    pub fn write_u16(&self, offset: u64, v: u16) {
        let (f, o) = self.locate(offset, 2);
        f.write_u16(o, v)
    }
    /// Volatile 32-bit write.
    pub fn write_u32(&self, offset: u64, v: u32) {
        let (f, o) = self.locate(offset, 4);
        f.write_u32(o, v)
    }
    /// Volatile 64-bit write.
    pub fn write_u64(&self, offset: u64, v: u64) {
        let (f, o) = self.locate(offset, 8);
        f.write_u64(o, v)
    }

    /// Copies out `out.len()` bytes at `offset`, across blocks.
    pub fn read_bytes(&self, mut offset: u64, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let (f, o) = self.locate(offset, 1);
            let n = ((f.size() - o) as usize).min(out.len() - done);
            f.read_bytes(o, &mut out[done..done + n]);
            done += n;
            offset += n as u64;
        }
    }

    /// Copies `data` in at `offset`, across blocks.
    pub fn write_bytes(&self, mut offset: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let (f, o) = self.locate(offset, 1);
            let n = ((f.size() - o) as usize).min(data.len() - done);
            f.write_bytes(o, &data[done..done + n]);
            done += n;
            offset += n as u64;
        }
    }
}

impl Drop for DmaCoherent {
    fn drop(&mut self) {
        self.dev.track_unmap(
            self.addr,
            self.size,
            Direction::Bidirectional,
            Kind::Coherent,
        );
        if let (Some((base, total)), Backend::Iommu(d)) = (self.iova, &self.dev.backend) {
            // Unmapped and invalidated before the frames go back to the allocator, in lazy mode
            // too: the frames are reused at once, and a stale IOTLB entry would let the device
            // reach their next owner.
            if let Err(e) = d.unmap_strict(base, total, total, self.dev.name()) {
                log::error!(target: "dma", "{}: {e}; coherent memory leaked rather than reused", self.dev.name());
                if let Memory::Frames(blocks) = &mut self.memory {
                    core::mem::forget(core::mem::take(blocks));
                }
            }
        }
        if let (Memory::Pool { pa }, Backend::Direct { bounce: Some(pool) }) =
            (&self.memory, &self.dev.backend)
        {
            pool.free(*pa, self.size);
        }
        dec(&LIVE_COHERENT);
    }
}
