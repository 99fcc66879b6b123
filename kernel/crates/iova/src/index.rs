//! First page of an allocation -> its record: an open-addressing hash table.
//!
//! `free` must find the allocation it is given on every call, cached or not, so this lookup is
//! on the hot path. A hash table makes it O(1) expected (a `BTreeMap` lookup over a million
//! live ranges costs as much as the rest of the cached path together). No ordered query is
//! needed here: the one ordered question (does a window being reserved cover a live
//! allocation?) is rare and answered from the records.
//!
//! Linear probing with Fibonacci hashing; deletion shifts later entries back instead of leaving
//! tombstones, so lookups never slow down with churn. Grown at half load.

use alloc::vec;
use alloc::vec::Vec;

/// Marks an empty slot; page numbers are below 2^52.
const EMPTY: u64 = u64::MAX;
const INITIAL_SLOTS: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Entry {
    page: u64,
    record: u32,
}

const VACANT: Entry = Entry {
    page: EMPTY,
    record: 0,
};

#[derive(Debug)]
pub(crate) struct PageIndex {
    slots: Vec<Entry>,
    len: usize,
    /// log2 of the slot count.
    bits: u32,
}

impl PageIndex {
    pub fn new() -> Self {
        Self {
            slots: vec![VACANT; INITIAL_SLOTS],
            len: 0,
            bits: INITIAL_SLOTS.trailing_zeros(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, page: u64) -> usize {
        (page.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    /// Slot holding `page`, if any.
    fn find(&self, page: u64) -> Option<usize> {
        let mut at = self.home(page);
        loop {
            let entry = self.slots[at];
            if entry.page == page {
                return Some(at);
            }
            if entry.page == EMPTY {
                return None;
            }
            at = (at + 1) & self.mask();
        }
    }

    /// Record of the allocation starting at `page`.
    pub fn get(&self, page: u64) -> Option<u32> {
        self.find(page).map(|at| self.slots[at].record)
    }

    /// Adds `page` (not present yet).
    pub fn insert(&mut self, page: u64, record: u32) {
        debug_assert!(page != EMPTY && self.find(page).is_none());
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mut at = self.home(page);
        while self.slots[at].page != EMPTY {
            at = (at + 1) & self.mask();
        }
        self.slots[at] = Entry { page, record };
        self.len += 1;
    }

    /// Removes `page`, returning its record.
    pub fn remove(&mut self, page: u64) -> Option<u32> {
        let mut hole = self.find(page)?;
        let record = self.slots[hole].record;
        // Shift back every following entry of the probe run that may move into the hole
        // (its home is not cyclically within (hole, at]).
        let mut at = hole;
        loop {
            at = (at + 1) & self.mask();
            let entry = self.slots[at];
            if entry.page == EMPTY {
                break;
            }
            let home = self.home(entry.page);
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.slots[hole] = entry;
                hole = at;
            }
        }
        self.slots[hole] = VACANT;
        self.len -= 1;
        Some(record)
    }

    fn grow(&mut self) {
        let grown = vec![VACANT; self.slots.len() * 2];
        let old = core::mem::replace(&mut self.slots, grown);
        self.bits += 1;
        self.len = 0;
        for entry in old.into_iter().filter(|entry| entry.page != EMPTY) {
            self.insert(entry.page, entry.record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// Inserts and removes against a `BTreeMap`, through growth and back-shifts.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u64..400, any::<bool>()), 1..600)) {
            let mut index = PageIndex::new();
            let mut model = std::collections::BTreeMap::new();
            for (n, (page, insert)) in ops.into_iter().enumerate() {
                // Spread keys so they collide in interesting ways.
                let page = page * 64;
                if insert && !model.contains_key(&page) {
                    index.insert(page, n as u32);
                    model.insert(page, n as u32);
                } else {
                    prop_assert_eq!(index.remove(page), model.remove(&page));
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for page in 0..400u64 {
                prop_assert_eq!(index.get(page * 64), model.get(&(page * 64)).copied());
            }
        }
    }
}
