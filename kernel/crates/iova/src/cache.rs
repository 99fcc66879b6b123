//! Per-size caches of recently freed ranges.
//!
//! DMA traffic frees and re-allocates the same few sizes over and over (one page for a
//! descriptor, a few pages for a block request). Keeping recently freed ranges in a small stack
//! per power-of-two size makes that cycle two array operations instead of two tree updates.
//! A cached range stays allocated in the tree's eyes until [`RangeCache::drain`] hands it back.
//!
//! A stack is scanned from the top for the first range that ends below the request's limit, so a
//! range freed by a 64-bit device is never handed to a device with a smaller mask. The scan is
//! bounded by [`CACHE_DEPTH`].

use alloc::vec::Vec;

/// Largest cached size, as a power-of-two order of pages: 32 pages (128 KiB).
pub(crate) const MAX_CACHED_ORDER: u32 = 5;
/// Ranges kept per size class; beyond this a freed range goes straight back to the tree. As
/// deep as a lazy flush queue, whose IOVAs come back all at once.
pub(crate) const CACHE_DEPTH: usize = 256;

const CLASSES: usize = MAX_CACHED_ORDER as usize + 1;

/// A freed range waiting in a cache: its first page and its allocation record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CachedRange {
    pub first_page: u64,
    pub record: u32,
}

/// One bounded stack per size class `2^order` pages, `order <= MAX_CACHED_ORDER`.
#[derive(Debug)]
pub(crate) struct RangeCache {
    classes: [Vec<CachedRange>; CLASSES],
    len: usize,
}

impl RangeCache {
    pub fn new() -> Self {
        Self {
            classes: core::array::from_fn(|_| Vec::with_capacity(CACHE_DEPTH)),
            len: 0,
        }
    }

    /// Number of cached ranges over all classes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The most recently freed range of `2^order` pages that ends at or below `limit_end`
    /// (exclusive page number).
    pub fn take(&mut self, order: u32, limit_end: u64) -> Option<CachedRange> {
        let pages = 1u64 << order;
        let stack = &mut self.classes[order as usize];
        let position = stack
            .iter()
            .rposition(|cached| cached.first_page + pages <= limit_end)?;
        self.len -= 1;
        // Keep the stack's age order: the common hit is the top, where `remove` moves nothing.
        Some(stack.remove(position))
    }

    /// Keeps `range` for reuse; gives it back when its class is full.
    pub fn put(&mut self, order: u32, range: CachedRange) -> Result<(), CachedRange> {
        let stack = &mut self.classes[order as usize];
        if stack.len() == CACHE_DEPTH {
            return Err(range);
        }
        stack.push(range);
        self.len += 1;
        Ok(())
    }

    /// Empties every class, returning what was cached.
    pub fn drain(&mut self) -> Vec<CachedRange> {
        self.len = 0;
        self.classes
            .iter_mut()
            .flat_map(|stack| stack.drain(..))
            .collect()
    }

    /// True when `first_page` is waiting in the cache of class `order`.
    #[cfg(test)]
    pub fn contains(&self, order: u32, first_page: u64) -> bool {
        self.classes[order as usize]
            .iter()
            .any(|cached| cached.first_page == first_page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_honours_the_limit_and_prefers_recent_ranges() {
        let mut cache = RangeCache::new();
        let range = |first_page, record| CachedRange { first_page, record };
        cache.put(1, range(0x100, 0)).unwrap();
        cache.put(1, range(0x9000, 1)).unwrap();
        assert_eq!(cache.len(), 2);
        // The top (0x9000..0x9002) is above the limit, the older one fits.
        assert_eq!(cache.take(1, 0x9001), Some(range(0x100, 0)));
        assert_eq!(cache.take(1, 0x9001), None);
        assert_eq!(cache.take(1, 0x9002), Some(range(0x9000, 1)));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn put_refuses_beyond_the_depth() {
        let mut cache = RangeCache::new();
        for i in 0..CACHE_DEPTH as u64 {
            cache
                .put(
                    0,
                    CachedRange {
                        first_page: i,
                        record: 0,
                    },
                )
                .unwrap();
        }
        let extra = CachedRange {
            first_page: 99,
            record: 0,
        };
        assert_eq!(cache.put(0, extra), Err(extra));
        assert_eq!(cache.drain().len(), CACHE_DEPTH);
        assert_eq!(cache.len(), 0);
    }
}
