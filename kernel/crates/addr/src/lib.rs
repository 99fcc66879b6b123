//! Typed addresses.
//!
//! Three address spaces meet in a DMA kernel and mixing them up is the classic bug:
//! - [`PhysAddr`]: what the CPU puts on the bus after its own MMU (a RAM or MMIO location);
//! - [`VirtAddr`]: what kernel code dereferences (identity-mapped here, but still a separate type);
//! - [`Iova`]: what a *device* emits: an I/O virtual address when an IOMMU translates it, or a bus
//!   address (physical address shifted by `dma-ranges`) when it does not.
//!
//! Conversions between them are explicit and live where the mapping is known (the MMU code, the
//! DMA layer), never here.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;
use core::ops::{Add, Sub};

macro_rules! address_type {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            pub const fn as_u64(self) -> u64 {
                self.0
            }
            /// The raw value as `usize` (the kernel is 64-bit only).
            pub const fn as_usize(self) -> usize {
                self.0 as usize
            }
            /// True when the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to a multiple of `align` (a power of two); `None` on overflow.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }
            /// Offset within a naturally aligned block of `align` bytes.
            pub const fn offset_in(self, align: u64) -> u64 {
                self.0 & (align - 1)
            }
            /// `self + off`, `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl Add<u64> for $name {
            type Output = Self;
            fn add(self, rhs: u64) -> Self {
                Self(self.0 + rhs)
            }
        }

        impl Sub<u64> for $name {
            type Output = Self;
            fn sub(self, rhs: u64) -> Self {
                Self(self.0 - rhs)
            }
        }

        impl Sub<$name> for $name {
            type Output = u64;
            fn sub(self, rhs: $name) -> u64 {
                self.0 - rhs.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A CPU physical address.
    PhysAddr,
    "PA"
);
address_type!(
    /// A kernel virtual address (the kernel identity-maps RAM and MMIO, but the type stays distinct).
    VirtAddr,
    "VA"
);
address_type!(
    /// An address as a device emits it on the bus: an IOVA behind an IOMMU, a bus address otherwise.
    Iova,
    "IOVA"
);

/// Size of a translation granule / page frame.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A half-open address range `[start, start + size)` over one address type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Range<A> {
    /// First address.
    pub start: A,
    /// Length in bytes.
    pub size: u64,
}

/// What the three address types have in common, so [`Range`] works over any of them.
pub trait Address: Copy + Ord + fmt::Debug {
    /// The raw value.
    fn raw(self) -> u64;
    /// From a raw value.
    fn from_raw(v: u64) -> Self;
}

macro_rules! address_trait {
    ($($a:ident),*) => {$(
        impl Address for $a {
            fn raw(self) -> u64 { self.0 }
            fn from_raw(v: u64) -> Self { $a(v) }
        }
    )*};
}
address_trait!(PhysAddr, VirtAddr, Iova);

impl<A: Address> Range<A> {
    /// A range of `size` bytes at `start`.
    pub const fn new(start: A, size: u64) -> Self {
        Self { start, size }
    }
    /// One past the last byte, `None` if that does not fit in 64 bits.
    pub fn checked_end(&self) -> Option<A> {
        self.start.raw().checked_add(self.size).map(A::from_raw)
    }
    /// Last byte of the range (`None` for an empty range).
    pub fn last(&self) -> Option<A> {
        if self.size == 0 {
            return None;
        }
        self.start.raw().checked_add(self.size - 1).map(A::from_raw)
    }
    /// True when `addr` lies inside the range.
    pub fn contains(&self, addr: A) -> bool {
        addr >= self.start && (addr.raw() - self.start.raw()) < self.size
    }
    /// True when the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Self) -> bool {
        match (self.last(), other.last()) {
            (Some(a_last), Some(b_last)) => self.start <= b_last && other.start <= a_last,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers_round_correctly() {
        let a = PhysAddr(0x4020_1234);
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr(0x4020_1000));
        assert_eq!(a.checked_align_up(PAGE_SIZE), Some(PhysAddr(0x4020_2000)));
        assert_eq!(a.offset_in(PAGE_SIZE), 0x234);
        assert!(!a.is_aligned(PAGE_SIZE));
        assert_eq!(PhysAddr(u64::MAX).checked_align_up(PAGE_SIZE), None);
    }

    #[test]
    fn ranges_overlap_and_contain() {
        let r = Range::new(Iova(0x1000), 0x2000);
        assert!(r.contains(Iova(0x1000)));
        assert!(r.contains(Iova(0x2fff)));
        assert!(!r.contains(Iova(0x3000)));
        assert!(r.overlaps(&Range::new(Iova(0x2fff), 1)));
        assert!(!r.overlaps(&Range::new(Iova(0x3000), 0x1000)));
        assert!(!r.overlaps(&Range::new(Iova(0x1000), 0)));
        let top = Range::new(Iova(u64::MAX - 0xfff), 0x1000);
        assert_eq!(top.checked_end(), None);
        assert_eq!(top.last(), Some(Iova(u64::MAX)));
    }
}
