//! Streaming mappings of one buffer, typed by direction.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use addr::{Iova, VirtAddr};

use crate::debug::Kind;
use crate::device::{DmaDevice, How, RawMapping};
use crate::direction::DmaDirection;
use crate::error::DmaError;

/// A buffer mapped for a device. While it exists the device owns the buffer: the CPU gets it
/// back through [`DmaStream::cpu`] or [`DmaStream::into_buffer`]. Dropping it unmaps it (and
/// drops the buffer).
pub struct DmaStream<D: DmaDirection> {
    dev: Arc<DmaDevice>,
    buf: Vec<u8>,
    map: RawMapping,
    /// Cleared once unmapped (by `into_buffer`), so `Drop` does not unmap again.
    mapped: bool,
    _dir: PhantomData<D>,
}

impl<D: DmaDirection> core::fmt::Debug for DmaStream<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "DmaStream<{:?}>({} {:#x}+{:#x})",
            D::DIRECTION,
            self.dev.name(),
            self.map.addr.0,
            self.map.len
        )
    }
}

impl DmaDevice {
    /// Maps `buf` (its whole length) for the device. On failure the buffer comes back with the
    /// error. May run in interrupt context.
    pub fn map<D: DmaDirection>(
        self: &Arc<Self>,
        buf: Vec<u8>,
    ) -> Result<DmaStream<D>, (DmaError, Vec<u8>)> {
        let pa = match DmaDevice::virt_to_phys(&buf) {
            Ok(pa) => pa,
            Err(e) => return Err((e, buf)),
        };
        match self.map_range(pa, buf.len() as u64, D::DIRECTION, Some(&buf)) {
            Ok(map) => {
                self.track_map(map.addr, map.len, D::DIRECTION, Kind::Single);
                Ok(DmaStream {
                    dev: self.clone(),
                    buf,
                    map,
                    mapped: true,
                    _dir: PhantomData,
                })
            }
            Err(e) => Err((e, buf)),
        }
    }
}

impl<D: DmaDirection> DmaStream<D> {
    /// Where the CPU's buffer is (for diagnostics and cross-checks; its contents belong to the
    /// device while it is mapped).
    pub fn cpu_span(&self) -> (VirtAddr, usize) {
        (VirtAddr(self.buf.as_ptr() as u64), self.buf.len())
    }

    /// The address to give the device.
    pub fn addr(&self) -> Iova {
        self.map.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True for an empty buffer (never: empty buffers cannot be mapped).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// True when the buffer goes through a bounce slot.
    pub fn is_bounced(&self) -> bool {
        matches!(self.map.how, How::Bounce { .. })
    }

    /// Hands the buffer to the CPU (what the device wrote becomes visible) until the guard
    /// drops, which hands it back to the device (what the CPU wrote becomes visible to it). Only
    /// call it when the device is not using the buffer. May run in interrupt context.
    pub fn cpu(&mut self) -> CpuAccess<'_, D> {
        self.sync_for_cpu();
        CpuAccess { stream: self }
    }

    fn sync_for_cpu(&mut self) {
        if let (How::Bounce { slot }, true) = (self.map.how, self.map.dir.device_writes())
            && let crate::device::Backend::Direct { bounce: Some(pool) } = &self.dev.backend
        {
            self.dev.sync_for_cpu_cache(&self.map);
            pool.read(slot, &mut self.buf);
            return;
        }
        self.dev.sync_for_cpu_cache(&self.map);
    }

    fn sync_for_device(&mut self) {
        if let (How::Bounce { slot }, true) = (self.map.how, self.map.dir.device_reads())
            && let crate::device::Backend::Direct { bounce: Some(pool) } = &self.dev.backend
        {
            pool.write(slot, &self.buf);
        }
        self.dev.sync_for_device_cache(&self.map);
    }

    fn unmap(&mut self) -> Result<(), DmaError> {
        if !core::mem::replace(&mut self.mapped, false) {
            return Ok(());
        }
        if !self
            .dev
            .track_unmap(self.map.addr, self.map.len, D::DIRECTION, Kind::Single)
        {
            return Err(DmaError::Invariant(alloc::format!(
                "{}: stream {:#x} unmapped twice",
                self.dev.name(),
                self.map.addr.0
            )));
        }
        let out = if self.map.dir.device_writes() {
            Some(&mut self.buf[..])
        } else {
            None
        };
        self.dev.unmap_range(&self.map, out)
    }

    /// Unmaps and returns the buffer, with what the device wrote. Should the invalidation fail,
    /// the bytes come back in a copy and the buffer itself is never freed.
    pub fn into_buffer(mut self) -> Vec<u8> {
        let r = self.unmap();
        if let Err(e) = r {
            log::error!(target: "dma", "{}: {e}", self.dev.name());
            if matches!(e, DmaError::InvalidationFailed(_)) {
                let copy = self.buf.clone();
                retire_buffer(&mut self.buf);
                return copy;
            }
        }
        core::mem::take(&mut self.buf)
    }
}

/// Keeps a buffer the device may still reach through a stale IOTLB entry from ever being
/// reused: it is leaked, deliberately.
pub(crate) fn retire_buffer(buf: &mut Vec<u8>) {
    core::mem::forget(core::mem::take(buf));
}

impl<D: DmaDirection> Drop for DmaStream<D> {
    fn drop(&mut self) {
        if let Err(e) = self.unmap() {
            log::error!(target: "dma", "{}: {e}", self.dev.name());
            if matches!(e, DmaError::InvalidationFailed(_)) {
                retire_buffer(&mut self.buf);
            }
        }
    }
}

/// The CPU's access to a mapped buffer; dropping it gives the buffer back to the device.
pub struct CpuAccess<'a, D: DmaDirection> {
    stream: &'a mut DmaStream<D>,
}

impl<D: DmaDirection> Deref for CpuAccess<'_, D> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.stream.buf
    }
}

impl<D: DmaDirection> DerefMut for CpuAccess<'_, D> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.stream.buf
    }
}

impl<D: DmaDirection> Drop for CpuAccess<'_, D> {
    fn drop(&mut self) {
        self.stream.sync_for_device();
    }
}
