extern crate std;

use std::alloc::{alloc, dealloc};
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

/// Backing memory from the host allocator, freed when dropped.
struct Backing(Vec<(NonNull<u8>, Layout)>);

impl Backing {
    fn refill(&mut self, l: Layout) -> Option<NonNull<u8>> {
        // SAFETY: a non-zero layout.
        let p = NonNull::new(unsafe { alloc(l) })?;
        self.0.push((p, l));
        Some(p)
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        for (p, l) in self.0.drain(..) {
            // SAFETY: allocated above with this layout.
            unsafe { dealloc(p.as_ptr(), l) };
        }
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn classes_cover_size_and_alignment() {
    assert_eq!(CLASSES, 8);
    assert_eq!(SizeClasses::class_of(layout(1, 1)), Some(0));
    assert_eq!(SizeClasses::class_of(layout(16, 8)), Some(0));
    assert_eq!(SizeClasses::class_of(layout(17, 1)), Some(1));
    assert_eq!(
        SizeClasses::class_of(layout(8, 64)),
        Some(2),
        "alignment decides"
    );
    assert_eq!(SizeClasses::class_of(layout(2048, 8)), Some(7));
    assert_eq!(SizeClasses::class_of(layout(2049, 8)), None);
    assert_eq!(SizeClasses::class_of(layout(8, 4096)), None);
    for c in 0..CLASSES {
        let size = SizeClasses::block_size(c);
        assert_eq!(SizeClasses::class_of(layout(size, 1)), Some(c));
    }
}

#[test]
fn a_freed_block_is_reused_and_chunks_are_taken_only_when_dry() {
    let mut b = Backing(Vec::new());
    let mut s = SizeClasses::new();
    let per_chunk = CHUNK / 64;
    // SAFETY: the backing hands out fresh memory.
    let blocks: Vec<_> = (0..per_chunk)
        .map(|_| unsafe { s.alloc(2, |l| b.refill(l)) }.unwrap())
        .collect();
    assert_eq!(b.0.len(), 1, "one chunk serves {per_chunk} blocks");
    assert_eq!(s.reserved_bytes(), CHUNK);
    assert_eq!((s.live_blocks(), s.live_bytes()), (per_chunk, CHUNK));
    // SAFETY: returning a block of this class.
    unsafe { s.dealloc(2, blocks[5]) };
    // SAFETY: as above.
    let again = unsafe { s.alloc(2, |_| panic!("refill with a free block")) }.unwrap();
    assert_eq!(again, blocks[5], "last freed, first reused");
    // SAFETY: as above.
    let _next = unsafe { s.alloc(2, |l| b.refill(l)) }.unwrap();
    assert_eq!(b.0.len(), 2);
    // A refill that fails is reported, not hidden.
    // SAFETY: nothing is handed out.
    assert!(unsafe { s.alloc(7, |_| None) }.is_none());
}

proptest! {
    /// Random allocations and frees: every block is aligned to the layout, blocks alive at
    /// the same time never overlap, contents survive, and the counters match.
    #[test]
    fn random_sequences_never_overlap(ops in prop::collection::vec((0usize..3000, 0u32..7, any::<bool>()), 1..400)) {
        let mut b = Backing(Vec::new());
        let mut s = SizeClasses::new();
        let mut live: Vec<(NonNull<u8>, Layout, usize, u8)> = Vec::new();
        for (i, (size, align_log, free)) in ops.into_iter().enumerate() {
            if free && !live.is_empty() {
                let (p, l, c, tag) = live.swap_remove(i % live.len());
                // SAFETY: a live block of its class; its bytes were written with `tag`.
                let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), l.size()) };
                prop_assert!(bytes.iter().all(|&x| x == tag), "a block was overwritten");
                // SAFETY: as above.
                unsafe { s.dealloc(c, p) };
                continue;
            }
            let l = layout(size.max(1), 1 << align_log);
            let Some(c) = SizeClasses::class_of(l) else { continue };
            // SAFETY: the backing hands out fresh memory.
            let p = unsafe { s.alloc(c, |l| b.refill(l)) }.unwrap();
            prop_assert_eq!(p.as_ptr() as usize % l.align(), 0);
            let tag = i as u8;
            // SAFETY: the block holds at least `l.size()` bytes.
            unsafe { core::ptr::write_bytes(p.as_ptr(), tag, l.size()) };
            for (q, m, _, _) in &live {
                let (a, e) = (p.as_ptr() as usize, p.as_ptr() as usize + l.size());
                let (qa, qe) = (q.as_ptr() as usize, q.as_ptr() as usize + m.size());
                prop_assert!(e <= qa || qe <= a, "blocks overlap");
            }
            live.push((p, l, c, tag));
        }
        prop_assert_eq!(s.live_blocks(), live.len());
        prop_assert!(s.live_bytes() <= s.reserved_bytes());
    }
}
