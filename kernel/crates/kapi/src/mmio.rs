//! Typed, bounds-checked handles on device registers.
//!
//! The kernel validates a physical MMIO range against its own memory map (it must be mapped as
//! Device-nGnRE) and hands drivers an [`MmioRegion`]. From a region a driver takes typed views
//! ([`Mmio<T>`], a tock-registers `register_structs!` block) at checked offsets, or does
//! bounds-checked volatile accesses at run-time offsets (PCI config space, virtio capabilities).
//! Creating a region is the only `unsafe` step and only the kernel does it.

use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

use crate::VirtAddr;

/// Why an MMIO request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The physical range is not mapped as device memory by the kernel.
    NotMapped { pa: u64, size: u64 },
    /// The view or access does not fit inside the region.
    OutOfBounds {
        offset: u64,
        size: u64,
        region_size: u64,
    },
    /// The offset is not aligned for the access or register block.
    Misaligned { offset: u64, align: u64 },
}

impl core::fmt::Display for MmioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmioError::NotMapped { pa, size } => {
                write!(
                    f,
                    "MMIO range {pa:#x}+{size:#x} is not mapped as device memory"
                )
            }
            MmioError::OutOfBounds {
                offset,
                size,
                region_size,
            } => write!(
                f,
                "MMIO access {offset:#x}+{size:#x} outside a region of {region_size:#x} bytes"
            ),
            MmioError::Misaligned { offset, align } => {
                write!(f, "MMIO offset {offset:#x} is not {align}-byte aligned")
            }
        }
    }
}

/// A validated range of device memory, mapped for the lifetime of the kernel.
#[derive(Clone, Copy, Debug)]
pub struct MmioRegion {
    base: NonNull<u8>,
    size: u64,
}

// SAFETY: an MmioRegion is only an address range of device memory; every access through it is a
// volatile access to a register, which is how hardware shared between contexts is meant to be used.
unsafe impl Send for MmioRegion {}
// SAFETY: as above; the region itself holds no CPU-side state.
unsafe impl Sync for MmioRegion {}

impl MmioRegion {
    /// Wraps `size` bytes of device memory at `base`.
    ///
    /// # Safety
    /// `base..base + size` must be mapped as device memory for the rest of the kernel's life and
    /// must contain device registers only (no RAM), so that volatile accesses to it cannot break
    /// Rust's aliasing rules for any Rust object.
    pub const unsafe fn new(base: VirtAddr, size: u64) -> Self {
        // SAFETY: the caller promises a mapped device range, which is never at address 0.
        let base = unsafe { NonNull::new_unchecked(base.0 as *mut u8) };
        Self { base, size }
    }

    /// Start of the region.
    pub fn base(&self) -> VirtAddr {
        VirtAddr(self.base.as_ptr() as u64)
    }

    /// Length of the region in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn check(&self, offset: u64, size: u64, align: u64) -> Result<(), MmioError> {
        if !offset.is_multiple_of(align) {
            return Err(MmioError::Misaligned { offset, align });
        }
        match offset.checked_add(size) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(MmioError::OutOfBounds {
                offset,
                size,
                region_size: self.size,
            }),
        }
    }

    /// A sub-region of `size` bytes at `offset`.
    pub fn subregion(&self, offset: u64, size: u64) -> Result<MmioRegion, MmioError> {
        self.check(offset, size, 1)?;
        // SAFETY: the sub-range lies inside this region (checked above), which is device memory.
        Ok(unsafe { MmioRegion::new(VirtAddr(self.base().0 + offset), size) })
    }

    /// A typed register block at `offset`.
    pub fn view<T>(&self, offset: u64) -> Result<Mmio<T>, MmioError> {
        self.check(
            offset,
            core::mem::size_of::<T>() as u64,
            core::mem::align_of::<T>() as u64,
        )?;
        Ok(Mmio {
            // SAFETY: the block lies inside the region (checked above), so the pointer is non-null.
            ptr: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset as usize).cast()) },
            _marker: PhantomData,
        })
    }
}

macro_rules! accessors {
    ($read:ident, $write:ident, $t:ty) => {
        impl MmioRegion {
            #[doc = concat!("Volatile ", stringify!($t), " read at `offset`.")]
            pub fn $read(&self, offset: u64) -> Result<$t, MmioError> {
                self.check(
                    offset,
                    core::mem::size_of::<$t>() as u64,
                    core::mem::size_of::<$t>() as u64,
                )?;
                // SAFETY: in bounds and aligned (checked), inside device memory (type invariant).
                Ok(unsafe {
                    self.base
                        .as_ptr()
                        .add(offset as usize)
                        .cast::<$t>()
                        .read_volatile()
                })
            }
            #[doc = concat!("Volatile ", stringify!($t), " write at `offset`.")]
            pub fn $write(&self, offset: u64, value: $t) -> Result<(), MmioError> {
                self.check(
                    offset,
                    core::mem::size_of::<$t>() as u64,
                    core::mem::size_of::<$t>() as u64,
                )?;
                // SAFETY: in bounds and aligned (checked), inside device memory (type invariant).
                unsafe {
                    self.base
                        .as_ptr()
                        .add(offset as usize)
                        .cast::<$t>()
                        .write_volatile(value)
                };
                Ok(())
            }
        }
    };
}
accessors!(read8, write8, u8);
accessors!(read16, write16, u16);
accessors!(read32, write32, u32);
accessors!(read64, write64, u64);

/// A typed register block (a tock-registers `register_structs!` type) in device memory.
pub struct Mmio<T> {
    ptr: NonNull<T>,
    _marker: PhantomData<T>,
}

// SAFETY: register blocks are made of tock-registers cells whose every access is volatile; sharing
// the handle between contexts is the normal way to drive a device (callers add their own locking
// where a sequence of accesses must be atomic).
unsafe impl<T> Send for Mmio<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Mmio<T> {}

impl<T> Deref for Mmio<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` came from a checked view of a device region that stays mapped forever; the
        // register types use interior mutability with volatile accesses, so a shared reference
        // never lets the compiler assume the contents are stable.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> core::fmt::Debug for Mmio<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Mmio({:p})", self.ptr)
    }
}

/// A heap-backed, zeroed "device" region for host tests of drivers: it behaves like RAM, so tests
/// pre-load register values and inspect what the driver wrote. Leaked on purpose (tests only).
#[cfg(any(test, feature = "fakes"))]
pub fn fake_region(size: u64) -> MmioRegion {
    extern crate std;
    let words = (size as usize).div_ceil(8);
    let mem: &'static mut [u64] = std::boxed::Box::leak(std::vec![0u64; words].into_boxed_slice());
    // SAFETY: the memory is leaked, so it lives forever, and only this region accesses it.
    unsafe { MmioRegion::new(VirtAddr(mem.as_mut_ptr() as u64), size) }
}
