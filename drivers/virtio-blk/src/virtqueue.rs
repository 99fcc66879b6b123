//! The split virtqueue (virtio 1.2 §2.7): descriptor table, available ring, used ring, in one
//! block of memory shared with the device.
//!
//! The driver side only: building descriptor chains, publishing them, reclaiming what the device
//! used. Memory goes through [`QueueMemory`] (DMA-coherent memory in the kernel, a plain buffer in
//! host tests), and ordering with the device goes through `kapi::barrier`.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Descriptor continues in `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// The device writes this buffer (otherwise it reads it).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// The device asks not to be notified (used ring flags).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

const DESC_SIZE: u64 = 16;

/// Memory holding a virtqueue, as the device sees it (little-endian).
pub trait QueueMemory {
    /// 16-bit read.
    fn read_u16(&self, offset: u64) -> u16;
    /// 32-bit read.
    fn read_u32(&self, offset: u64) -> u32;
    /// 16-bit write.
    fn write_u16(&self, offset: u64, value: u16);
    /// 32-bit write.
    fn write_u32(&self, offset: u64, value: u32);
    /// 64-bit write.
    fn write_u64(&self, offset: u64, value: u64);
}

/// Where each part of the queue lives in its memory block, for a queue of `size` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Entries (a power of two).
    pub size: u16,
    /// Descriptor table offset (16-byte aligned).
    pub desc: u64,
    /// Available ring offset (2-byte aligned).
    pub avail: u64,
    /// Used ring offset (4-byte aligned; we use 4 KiB so it starts its own page).
    pub used: u64,
    /// Total bytes.
    pub total: u64,
}

impl QueueLayout {
    /// Layout for `size` entries: descriptors, then the available ring, then the used ring on the
    /// next page boundary (keeps device-written and driver-written data in different lines).
    pub fn new(size: u16) -> Self {
        let desc = 0;
        let avail = desc + DESC_SIZE * u64::from(size);
        let avail_len = 6 + 2 * u64::from(size);
        let used = (avail + avail_len).next_multiple_of(4096);
        let used_len = 6 + 8 * u64::from(size);
        Self {
            size,
            desc,
            avail,
            used,
            total: used + used_len,
        }
    }
}

/// One buffer of a chain: bus address (what the device sees), length, direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Device-visible address (an IOVA behind an IOMMU).
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// The device writes it.
    pub device_writes: bool,
}

/// Queue errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// Not enough free descriptors for the chain.
    Full { needed: usize, free: usize },
    /// An empty chain.
    Empty,
    /// The device returned a descriptor index that is not the head of an outstanding chain:
    /// it is misbehaving, and the queue must not trust it further.
    BadUsedId(u32),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Full { needed, free } => {
                write!(f, "queue full: need {needed} descriptors, {free} free")
            }
            QueueError::Empty => f.write_str("empty descriptor chain"),
            QueueError::BadUsedId(id) => write!(f, "device returned unknown descriptor {id}"),
        }
    }
}

/// Driver state of one split virtqueue.
pub struct SplitQueue<M: QueueMemory> {
    mem: M,
    layout: QueueLayout,
    /// Free descriptors, as a stack of indices.
    free: Vec<u16>,
    /// For each chain head: the descriptors of its chain (to free them on completion).
    chains: Vec<Option<Vec<u16>>>,
    avail_idx: u16,
    last_used: u16,
}

impl<M: QueueMemory> SplitQueue<M> {
    /// Takes zeroed memory laid out by `layout`.
    pub fn new(mem: M, layout: QueueLayout) -> Self {
        let size = layout.size;
        Self {
            mem,
            layout,
            free: (0..size).rev().collect(),
            chains: vec![None; usize::from(size)],
            avail_idx: 0,
            last_used: 0,
        }
    }

    /// The layout (to program the device's queue addresses).
    pub fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// The memory (to read its bus address).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Free descriptors.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Chains the device has not returned yet.
    pub fn in_flight(&self) -> usize {
        self.chains.iter().filter(|c| c.is_some()).count()
    }

    /// Writes a chain and makes it available to the device; returns its head (the token the
    /// completion carries). The caller notifies the device afterwards if [`Self::should_notify`].
    pub fn push(&mut self, chain: &[Buffer]) -> Result<u16, QueueError> {
        if chain.is_empty() {
            return Err(QueueError::Empty);
        }
        if chain.len() > self.free.len() {
            return Err(QueueError::Full {
                needed: chain.len(),
                free: self.free.len(),
            });
        }
        let ids: Vec<u16> = (0..chain.len()).filter_map(|_| self.free.pop()).collect();
        for (i, (b, &id)) in chain.iter().zip(&ids).enumerate() {
            let d = self.layout.desc + DESC_SIZE * u64::from(id);
            let last = i + 1 == chain.len();
            let mut flags = if b.device_writes {
                VIRTQ_DESC_F_WRITE
            } else {
                0
            };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.mem.write_u64(d, b.addr);
            self.mem.write_u32(d + 8, b.len);
            self.mem.write_u16(d + 12, flags);
            self.mem
                .write_u16(d + 14, if last { 0 } else { ids[i + 1] });
        }
        let head = ids[0];
        let slot = self.avail_idx % self.layout.size;
        self.mem
            .write_u16(self.layout.avail + 4 + 2 * u64::from(slot), head);
        // The descriptors and the ring entry must be visible to the device before the index
        // that publishes them (virtio 1.2 §2.7.13.3.1).
        kapi::barrier::dmb_oshst();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write_u16(self.layout.avail + 2, self.avail_idx);
        self.chains[usize::from(head)] = Some(ids);
        Ok(head)
    }

    /// True unless the device asked not to be notified. Call after [`Self::push`]; the index
    /// write must be ordered before the notify write (the caller's MMIO write does so with a
    /// barrier).
    pub fn should_notify(&self) -> bool {
        // Read the used ring's flags only after our index update is visible.
        kapi::barrier::dmb_osh();
        self.mem.read_u16(self.layout.used) & VIRTQ_USED_F_NO_NOTIFY == 0
    }

    /// True when the device has published completions not taken yet (diagnostics: a
    /// completion no interrupt announced).
    pub fn has_used(&self) -> bool {
        self.mem.read_u16(self.layout.used + 2) != self.last_used
    }

    /// Takes the next completion: (head, bytes the device wrote). Frees the chain's descriptors.
    pub fn pop_used(&mut self) -> Result<Option<(u16, u32)>, QueueError> {
        let used_idx = self.mem.read_u16(self.layout.used + 2);
        if used_idx == self.last_used {
            return Ok(None);
        }
        // Read the ring entry only after seeing the index that published it (§2.7.14).
        kapi::barrier::dmb_osh();
        let slot = self.last_used % self.layout.size;
        let e = self.layout.used + 4 + 8 * u64::from(slot);
        let id = self.mem.read_u32(e);
        let len = self.mem.read_u32(e + 4);
        let Some(chain) = usize::try_from(id)
            .ok()
            .and_then(|i| self.chains.get_mut(i))
            .and_then(Option::take)
        else {
            return Err(QueueError::BadUsedId(id));
        };
        self.last_used = self.last_used.wrapping_add(1);
        self.free.extend(chain.iter().rev());
        Ok(Some((id as u16, len)))
    }
}

/// The device side of a split queue, for host tests of the queue and of what is built on it.
#[cfg(test)]
pub(crate) mod fake_device {
    use super::*;

    /// A chain as the device found it: its head, and (address, length, flags) per descriptor.
    pub type Chain = (u16, Vec<(u64, u32, u16)>);

    /// Takes every chain made available since `*seen`.
    pub fn take_available(m: &impl QueueMemory, l: QueueLayout, seen: &mut u16) -> Vec<Chain> {
        let avail = m.read_u16(l.avail + 2);
        let mut chains = Vec::new();
        while *seen != avail {
            let head = m.read_u16(l.avail + 4 + 2 * u64::from(*seen % l.size));
            let mut chain = Vec::new();
            let mut d = head;
            loop {
                let o = l.desc + 16 * u64::from(d);
                let addr = u64::from(m.read_u32(o)) | (u64::from(m.read_u32(o + 4)) << 32);
                let flags = m.read_u16(o + 12);
                chain.push((addr, m.read_u32(o + 8), flags));
                if flags & VIRTQ_DESC_F_NEXT == 0 {
                    break;
                }
                d = m.read_u16(o + 14);
            }
            *seen = seen.wrapping_add(1);
            chains.push((head, chain));
        }
        chains
    }

    /// Returns `id` as used with `len` bytes written.
    pub fn complete(m: &impl QueueMemory, l: QueueLayout, id: u32, len: u32) {
        let used = m.read_u16(l.used + 2);
        let e = l.used + 4 + 8 * u64::from(used % l.size);
        m.write_u32(e, id);
        m.write_u32(e + 4, len);
        m.write_u16(l.used + 2, used.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    struct Mem(RefCell<Vec<u8>>);

    impl QueueMemory for Mem {
        fn read_u16(&self, o: u64) -> u16 {
            let m = self.0.borrow();
            u16::from_le_bytes([m[o as usize], m[o as usize + 1]])
        }
        fn read_u32(&self, o: u64) -> u32 {
            let m = self.0.borrow();
            u32::from_le_bytes(m[o as usize..o as usize + 4].try_into().unwrap())
        }
        fn write_u16(&self, o: u64, v: u16) {
            self.0.borrow_mut()[o as usize..o as usize + 2].copy_from_slice(&v.to_le_bytes());
        }
        fn write_u32(&self, o: u64, v: u32) {
            self.0.borrow_mut()[o as usize..o as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn write_u64(&self, o: u64, v: u64) {
            self.0.borrow_mut()[o as usize..o as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    fn queue(size: u16) -> SplitQueue<Mem> {
        let l = QueueLayout::new(size);
        SplitQueue::new(Mem(RefCell::new(vec![0; l.total as usize])), l)
    }

    /// Plays the device: takes every available chain, returns it as used with `len` written.
    fn device_completes(
        q: &SplitQueue<Mem>,
        seen: &mut u16,
        len: u32,
    ) -> Vec<Vec<(u64, u32, u16)>> {
        let l = q.layout();
        let mut chains = Vec::new();
        for (head, chain) in fake_device::take_available(&q.mem, l, seen) {
            fake_device::complete(&q.mem, l, u32::from(head), len);
            chains.push(chain);
        }
        chains
    }

    fn blk_chain(data: u64) -> [Buffer; 3] {
        [
            Buffer {
                addr: 0x1000,
                len: 16,
                device_writes: false,
            },
            Buffer {
                addr: data,
                len: 4096,
                device_writes: true,
            },
            Buffer {
                addr: 0x3000,
                len: 1,
                device_writes: true,
            },
        ]
    }

    #[test]
    fn layout_aligns_each_part() {
        let l = QueueLayout::new(256);
        assert_eq!((l.desc, l.avail, l.used), (0, 4096, 8192));
        assert_eq!(l.total, 8192 + 6 + 8 * 256);
    }

    #[test]
    fn a_chain_reaches_the_device_with_flags_and_links() {
        let mut q = queue(8);
        let head = q.push(&blk_chain(0x2000)).unwrap();
        let mut seen = 0;
        let chains = device_completes(&q, &mut seen, 4097);
        assert_eq!(
            chains,
            [vec![
                (0x1000, 16, VIRTQ_DESC_F_NEXT),
                (0x2000, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE),
                (0x3000, 1, VIRTQ_DESC_F_WRITE)
            ]]
        );
        assert_eq!(q.free_descriptors(), 5);
        assert_eq!(q.pop_used().unwrap(), Some((head, 4097)));
        assert_eq!(q.free_descriptors(), 8);
        assert_eq!(q.pop_used().unwrap(), None);
    }

    #[test]
    fn full_queue_is_refused_and_recovers() {
        let mut q = queue(4);
        q.push(&blk_chain(0)).unwrap();
        assert_eq!(
            q.push(&blk_chain(0)),
            Err(QueueError::Full { needed: 3, free: 1 })
        );
        let mut seen = 0;
        device_completes(&q, &mut seen, 1);
        q.pop_used().unwrap();
        q.push(&blk_chain(0)).unwrap();
    }

    #[test]
    fn indices_wrap_past_u16_and_ring_size() {
        let mut q = queue(4);
        let mut seen = 0;
        for i in 0..70_000u32 {
            let h = q
                .push(&[Buffer {
                    addr: u64::from(i),
                    len: 8,
                    device_writes: true,
                }])
                .unwrap();
            let c = device_completes(&q, &mut seen, 8);
            assert_eq!(c[0][0].0, u64::from(i));
            assert_eq!(q.pop_used().unwrap(), Some((h, 8)));
        }
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn a_device_returning_a_bogus_id_is_caught() {
        let mut q = queue(4);
        let l = q.layout();
        q.mem.write_u32(l.used + 4, 3); // never handed out
        q.mem.write_u16(l.used + 2, 1);
        assert_eq!(q.pop_used(), Err(QueueError::BadUsedId(3)));
        q.mem.write_u32(l.used + 4, 99);
        assert_eq!(q.pop_used(), Err(QueueError::BadUsedId(99)));
    }

    #[test]
    fn no_notify_flag_is_honoured() {
        let q = queue(4);
        assert!(q.should_notify());
        q.mem.write_u16(q.layout().used, VIRTQ_USED_F_NO_NOTIFY);
        assert!(!q.should_notify());
    }
}
