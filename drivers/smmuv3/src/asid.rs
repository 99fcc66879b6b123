//! ASID allocation for stage-1 domains.
//!
//! Every DMA domain's CD carries an ASID that tags its TLB entries, so two live domains must
//! never share one. The SMMU has 2^16 of them (IDR0.ASID16) or 2^8.
//!
//! Decisions:
//! - **ASID 0 is reserved**, never handed out: a zeroed (invalid or quiet) CD carries ASID 0, so
//!   no live domain shares the tag of a CD that is not in use, and a stray TLBI_NH_ASID(0) hits
//!   no domain. It costs one ASID out of 65535.
//! - **Next fit**: allocation continues after the last ASID handed out and wraps around, so a
//!   freed ASID is reused as late as possible. This does not replace the rule that whoever frees
//!   an ASID first invalidates it (TLBI_NH_ASID + CMD_SYNC, after the CD stopped using it); it
//!   only keeps a missed invalidation from biting at once.
//! - CDs use ASET = 1 (private ASIDs), so these ASIDs are independent of the CPU's.

use alloc::vec;
use alloc::vec::Vec;

use crate::features::Features;
use crate::{Asid, SmmuError};

/// A bitmap allocator over the ASIDs 1..2^bits.
#[derive(Clone, Debug)]
pub struct AsidAllocator {
    used: Vec<u64>,
    count: u32,
    next: u32,
    in_use: u32,
}

impl AsidAllocator {
    /// An allocator for `asid_bits`-bit ASIDs (8 or 16; larger values are treated as 16).
    pub fn new(asid_bits: u32) -> Self {
        let count = 1u32 << asid_bits.min(16);
        let mut used = vec![0u64; count.div_ceil(64) as usize];
        // ASID 0 is reserved (see the module documentation).
        used[0] = 1;
        Self {
            used,
            count,
            next: 1,
            in_use: 0,
        }
    }

    /// An allocator for the SMMU's ASID size.
    pub fn for_features(f: &Features) -> Self {
        Self::new(f.asid_bits())
    }

    /// Number of ASIDs that can be handed out (all but 0).
    pub fn capacity(&self) -> u32 {
        self.count - 1
    }

    /// Number of ASIDs handed out and not freed.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// True when `asid` is handed out.
    pub fn is_allocated(&self, asid: Asid) -> bool {
        asid.0 != 0 && self.test(u32::from(asid.0))
    }

    fn test(&self, i: u32) -> bool {
        i < self.count && self.used[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: u32) {
        self.used[(i / 64) as usize] ^= 1 << (i % 64);
    }

    /// Hands out the next free ASID after the last one handed out.
    pub fn alloc(&mut self) -> Result<Asid, SmmuError> {
        if self.in_use == self.capacity() {
            return Err(SmmuError::AsidsExhausted);
        }
        let words = self.used.len() as u32;
        let mut i = self.next;
        // At most one pass over every word, plus the start word again for bits below `next`.
        for _ in 0..=words {
            let w = i / 64;
            let free = !self.used[w as usize] & (u64::MAX << (i % 64));
            if free != 0 {
                let asid = w * 64 + free.trailing_zeros();
                if asid < self.count {
                    self.flip(asid);
                    self.in_use += 1;
                    self.next = if asid + 1 == self.count { 1 } else { asid + 1 };
                    return Ok(Asid(asid as u16));
                }
            }
            i = if w + 1 == words { 0 } else { (w + 1) * 64 };
        }
        Err(SmmuError::AsidsExhausted)
    }

    /// Returns `asid`. The caller has already made the SMMU forget it: the CD no longer uses
    /// it, and a TLBI_NH_ASID for it was followed by a completed CMD_SYNC.
    pub fn free(&mut self, asid: Asid) -> Result<(), SmmuError> {
        if !self.is_allocated(asid) {
            return Err(SmmuError::AsidNotAllocated(asid));
        }
        self.flip(u32::from(asid.0));
        self.in_use -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::IdRegs;

    #[test]
    fn smmuv3_asid_zero_is_never_handed_out() {
        let mut a = AsidAllocator::new(8);
        assert_eq!(a.capacity(), 255);
        assert_eq!(a.alloc(), Ok(Asid(1)));
        assert!(!a.is_allocated(Asid(0)));
        assert_eq!(a.free(Asid(0)), Err(SmmuError::AsidNotAllocated(Asid(0))));
    }

    #[test]
    fn smmuv3_asid_next_fit_delays_reuse() {
        let mut a = AsidAllocator::new(8);
        let first = a.alloc().unwrap();
        let second = a.alloc().unwrap();
        a.free(first).unwrap();
        // The freed ASID 1 is not reused while higher ASIDs are free.
        assert_eq!(a.alloc(), Ok(Asid(3)));
        assert_eq!(a.in_use(), 2);
        assert!(a.is_allocated(second));
    }

    #[test]
    fn smmuv3_asid_exhaustion_and_wrap_around() {
        let mut a = AsidAllocator::new(8);
        for expect in 1..=255u16 {
            assert_eq!(a.alloc(), Ok(Asid(expect)));
        }
        assert_eq!(a.alloc(), Err(SmmuError::AsidsExhausted));
        a.free(Asid(70)).unwrap();
        a.free(Asid(3)).unwrap();
        // After 255 the search wraps to 1 and finds the lowest free ASID.
        assert_eq!(a.alloc(), Ok(Asid(3)));
        assert_eq!(a.alloc(), Ok(Asid(70)));
        assert_eq!(a.alloc(), Err(SmmuError::AsidsExhausted));
        assert_eq!(a.free(Asid(3)), Ok(()));
        assert_eq!(a.free(Asid(3)), Err(SmmuError::AsidNotAllocated(Asid(3))));
    }

    #[test]
    fn smmuv3_asid_16_bit_space() {
        let f = Features::decode(&IdRegs::QEMU_VIRT_10_0);
        let mut a = AsidAllocator::for_features(&f);
        assert_eq!(a.capacity(), 65535);
        let mut last = Asid(0);
        for _ in 0..65535 {
            last = a.alloc().unwrap();
        }
        assert_eq!(last, Asid(65535));
        assert_eq!(a.alloc(), Err(SmmuError::AsidsExhausted));
        a.free(Asid(40000)).unwrap();
        assert_eq!(a.alloc(), Ok(Asid(40000)));
    }
}
