//! The free-range index: an AVL tree of free page ranges, ordered by start page and augmented
//! with, for every alignment order, the largest aligned request each subtree can hold.
//!
//! Why this shape: the allocator wants "the highest placement of an `n`-page block aligned to
//! `2^k` pages whose end is at or below the limit". A tree of *allocated* ranges has to scan the
//! gaps between them, which is linear when the space is fragmented. Indexing the *free* ranges and
//! keeping per-subtree maxima of
//!
//! ```text
//! capacity_k(range) = end - align_up(start, 2^k)      (0 when negative)
//! ```
//!
//! turns that query into one descent: a subtree whose maximum is below `n` is skipped whole, so
//! the search is O(log n) however fragmented the space is (see `rightmost_fit`). An AVL tree
//! rather than a treap keeps the bound worst-case, and the nodes live in one `Vec` (indices, no
//! pointers) so the crate needs no `unsafe`.
//!
//! Capacities are stored saturated to `u32`: the allocator never asks for more than `u32::MAX`
//! pages, and a saturated capacity still compares correctly against any such request. That keeps a
//! node at 72 bytes.

use alloc::vec::Vec;

/// Alignment orders the index keeps capacities for: `0 ..= MAX_ALIGN_ORDER`.
pub(crate) const ALIGN_ORDERS: usize = crate::MAX_ALIGN_ORDER as usize + 1;

/// "No node" in the index-linked tree.
const NIL: u32 = u32::MAX;
/// An AVL tree of at most 2^32 nodes is less than 1.45 * 32 levels deep.
const MAX_HEIGHT: usize = 48;

/// A free range of pages `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Debug)]
struct Node {
    start: u64,
    end: u64,
    left: u32,
    right: u32,
    height: u8,
    /// Largest `capacity_k` over this subtree, for each alignment order `k`.
    best: [u32; ALIGN_ORDERS],
}

/// The free ranges of one allocator, disjoint and never adjacent (neighbours are merged).
#[derive(Debug, Default)]
pub(crate) struct FreeRangeTree {
    nodes: Vec<Node>,
    vacant: Vec<u32>,
    root: Option<u32>,
}

fn capacity(start: u64, end: u64, order: usize) -> u32 {
    let align = 1u64 << order;
    let aligned_start = (start + align - 1) & !(align - 1);
    u32::try_from(end.saturating_sub(aligned_start)).unwrap_or(u32::MAX)
}

fn capacities(start: u64, end: u64) -> [u32; ALIGN_ORDERS] {
    core::array::from_fn(|order| capacity(start, end, order))
}

impl FreeRangeTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of free ranges.
    pub fn len(&self) -> usize {
        self.nodes.len() - self.vacant.len()
    }

    fn root(&self) -> u32 {
        self.root.unwrap_or(NIL)
    }

    fn set_root(&mut self, root: u32) {
        self.root = (root != NIL).then_some(root);
    }

    fn node(&self, index: u32) -> &Node {
        &self.nodes[index as usize]
    }

    fn node_mut(&mut self, index: u32) -> &mut Node {
        &mut self.nodes[index as usize]
    }

    fn height(&self, index: u32) -> u8 {
        if index == NIL {
            0
        } else {
            self.node(index).height
        }
    }

    fn best(&self, index: u32, order: usize) -> u32 {
        if index == NIL {
            0
        } else {
            self.node(index).best[order]
        }
    }

    fn range_of(&self, index: u32) -> FreeRange {
        let node = self.node(index);
        FreeRange {
            start: node.start,
            end: node.end,
        }
    }

    fn new_node(&mut self, range: FreeRange) -> u32 {
        let node = Node {
            start: range.start,
            end: range.end,
            left: NIL,
            right: NIL,
            height: 1,
            best: capacities(range.start, range.end),
        };
        match self.vacant.pop() {
            Some(index) => {
                self.nodes[index as usize] = node;
                index
            }
            None => {
                let index = u32::try_from(self.nodes.len()).expect("free-range index overflow");
                self.nodes.push(node);
                index
            }
        }
    }

    /// Recomputes height and capacities of `index` from its children; true when they changed.
    fn update(&mut self, index: u32) -> bool {
        let node = self.node(index);
        let mut best = capacities(node.start, node.end);
        let mut height = 1;
        for child in [node.left, node.right] {
            if child != NIL {
                let child = self.node(child);
                height = height.max(child.height + 1);
                for (mine, theirs) in best.iter_mut().zip(child.best) {
                    *mine = (*mine).max(theirs);
                }
            }
        }
        let node = self.node_mut(index);
        // Element-wise rather than `!=` on the arrays, which compiles to a `memcmp` call.
        let changed = node.height != height || node.best.iter().zip(&best).any(|(a, b)| a != b);
        node.height = height;
        node.best = best;
        changed
    }

    fn rotate_right(&mut self, top: u32) -> u32 {
        let pivot = self.node(top).left;
        self.node_mut(top).left = self.node(pivot).right;
        self.node_mut(pivot).right = top;
        self.update(top);
        self.update(pivot);
        pivot
    }

    fn rotate_left(&mut self, top: u32) -> u32 {
        let pivot = self.node(top).right;
        self.node_mut(top).right = self.node(pivot).left;
        self.node_mut(pivot).left = top;
        self.update(top);
        self.update(pivot);
        pivot
    }

    /// Restores the AVL balance at `index` (children already balanced). Returns the subtree
    /// root and whether the subtree (root, height or capacities) changed: when it did not,
    /// ancestors need no update (the recursive operations below stop early on that).
    fn rebalance(&mut self, index: u32) -> (u32, bool) {
        let changed = self.update(index);
        let (left, right) = (self.node(index).left, self.node(index).right);
        let (hl, hr) = (self.height(left), self.height(right));
        if hl > hr + 1 {
            if self.height(self.node(left).left) < self.height(self.node(left).right) {
                let new_left = self.rotate_left(left);
                self.node_mut(index).left = new_left;
            }
            return (self.rotate_right(index), true);
        }
        if hr > hl + 1 {
            if self.height(self.node(right).right) < self.height(self.node(right).left) {
                let new_right = self.rotate_right(right);
                self.node_mut(index).right = new_right;
            }
            return (self.rotate_left(index), true);
        }
        (index, changed)
    }

    /// Adds a free range. The caller guarantees it neither overlaps nor touches another one.
    pub fn insert(&mut self, range: FreeRange) {
        let new = self.new_node(range);
        let (root, _) = self.insert_at(self.root(), new);
        self.set_root(root);
    }

    fn insert_at(&mut self, at: u32, new: u32) -> (u32, bool) {
        if at == NIL {
            return (new, true);
        }
        let goes_left = self.node(new).start < self.node(at).start;
        let child = if goes_left {
            self.node(at).left
        } else {
            self.node(at).right
        };
        let (sub, changed) = self.insert_at(child, new);
        if !changed {
            return (at, false);
        }
        if goes_left {
            self.node_mut(at).left = sub;
        } else {
            self.node_mut(at).right = sub;
        }
        self.rebalance(at)
    }

    /// Removes the range starting at `start` (which must exist).
    pub fn remove(&mut self, start: u64) {
        let (root, _) = self.remove_at(self.root(), start);
        self.set_root(root);
    }

    fn remove_at(&mut self, at: u32, start: u64) -> (u32, bool) {
        assert!(at != NIL, "free range {start:#x} missing from the index");
        let here = self.node(at).start;
        if start == here {
            let (left, right) = (self.node(at).left, self.node(at).right);
            self.vacant.push(at);
            if left == NIL {
                return (right, true);
            }
            if right == NIL {
                return (left, true);
            }
            let ((rest, _), successor) = self.detach_min(right);
            self.node_mut(successor).left = left;
            self.node_mut(successor).right = rest;
            let (root, _) = self.rebalance(successor);
            return (root, true);
        }
        let goes_left = start < here;
        let child = if goes_left {
            self.node(at).left
        } else {
            self.node(at).right
        };
        let (sub, changed) = self.remove_at(child, start);
        if !changed {
            return (at, false);
        }
        if goes_left {
            self.node_mut(at).left = sub;
        } else {
            self.node_mut(at).right = sub;
        }
        self.rebalance(at)
    }

    /// Unlinks the leftmost node of the subtree: ((new subtree root, changed), detached node).
    fn detach_min(&mut self, at: u32) -> ((u32, bool), u32) {
        let left = self.node(at).left;
        if left == NIL {
            return ((self.node(at).right, true), at);
        }
        let ((rest, changed), min) = self.detach_min(left);
        if !changed {
            return ((at, false), min);
        }
        self.node_mut(at).left = rest;
        (self.rebalance(at), min)
    }

    /// Changes the bounds of the range starting at `start` to `new` without changing its place in
    /// the order (the caller guarantees `new` still lies between its neighbours).
    pub fn reshape(&mut self, start: u64, new: FreeRange) {
        debug_assert!(new.start < new.end);
        // The path down to the node; heights do not change, and capacities stop changing at the
        // first ancestor whose maxima come from elsewhere.
        let mut path = [NIL; MAX_HEIGHT];
        let mut depth = 0;
        let mut at = self.root();
        loop {
            assert!(at != NIL, "free range {start:#x} missing from the index");
            path[depth] = at;
            depth += 1;
            let node = self.node(at);
            match start.cmp(&node.start) {
                core::cmp::Ordering::Less => at = node.left,
                core::cmp::Ordering::Greater => at = node.right,
                core::cmp::Ordering::Equal => break,
            }
        }
        let node = self.node_mut(at);
        node.start = new.start;
        node.end = new.end;
        for &index in path[..depth].iter().rev() {
            if !self.update(index) {
                break;
            }
        }
    }

    /// The range with the largest start below `bound`.
    pub fn last_starting_below(&self, bound: u64) -> Option<FreeRange> {
        let mut at = self.root();
        let mut found = NIL;
        while at != NIL {
            let node = self.node(at);
            if node.start < bound {
                found = at;
                at = node.right;
            } else {
                at = node.left;
            }
        }
        (found != NIL).then(|| self.range_of(found))
    }

    /// The range starting exactly at `start`.
    pub fn starting_at(&self, start: u64) -> Option<FreeRange> {
        let mut at = self.root();
        while at != NIL {
            let node = self.node(at);
            match start.cmp(&node.start) {
                core::cmp::Ordering::Less => at = node.left,
                core::cmp::Ordering::Greater => at = node.right,
                core::cmp::Ordering::Equal => return Some(self.range_of(at)),
            }
        }
        None
    }

    /// The free range containing `page`.
    pub fn containing(&self, page: u64) -> Option<FreeRange> {
        let candidate = self.last_starting_below(page.checked_add(1)?)?;
        (page < candidate.end).then_some(candidate)
    }

    /// The range with the largest start below `bound` that can hold `pages` pages aligned to
    /// `2^order` pages, untruncated. O(tree height): see `rightmost_fit`.
    pub fn highest_fit_below(&self, bound: u64, pages: u32, order: usize) -> Option<FreeRange> {
        let found = self.rightmost_fit(self.root(), bound, pages, order);
        (found != NIL).then(|| self.range_of(found))
    }

    /// Rightmost node of the subtree with `start < bound` and `capacity_order >= pages`.
    ///
    /// Only one path follows `bound`; whenever the search leaves that path to the left, the whole
    /// subtree lies below `bound` and its maximum says whether it holds a fit, so at most one
    /// further descent (`rightmost_fit_unbounded`) is needed and it cannot fail.
    fn rightmost_fit(&self, at: u32, bound: u64, pages: u32, order: usize) -> u32 {
        if at == NIL || self.best(at, order) < pages {
            return NIL;
        }
        let node = self.node(at);
        if node.start >= bound {
            return self.rightmost_fit(node.left, bound, pages, order);
        }
        let right = self.rightmost_fit(node.right, bound, pages, order);
        if right != NIL {
            return right;
        }
        if capacity(node.start, node.end, order) >= pages {
            return at;
        }
        self.rightmost_fit_unbounded(node.left, pages, order)
    }

    fn rightmost_fit_unbounded(&self, mut at: u32, pages: u32, order: usize) -> u32 {
        while at != NIL && self.best(at, order) >= pages {
            let node = self.node(at);
            if self.best(node.right, order) >= pages {
                at = node.right;
            } else if capacity(node.start, node.end, order) >= pages {
                return at;
            } else {
                at = node.left;
            }
        }
        NIL
    }

    /// All ranges in address order (tests and invariant checks).
    #[cfg(test)]
    pub fn ranges(&self) -> Vec<FreeRange> {
        let mut out = Vec::new();
        self.collect(self.root(), &mut out);
        out
    }

    #[cfg(test)]
    fn collect(&self, at: u32, out: &mut Vec<FreeRange>) {
        if at == NIL {
            return;
        }
        self.collect(self.node(at).left, out);
        out.push(self.range_of(at));
        self.collect(self.node(at).right, out);
    }

    /// Checks ordering, balance, augmentation and the "disjoint, never adjacent" rule.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        self.check_subtree(self.root());
        let ranges = self.ranges();
        assert_eq!(ranges.len(), self.len());
        for pair in ranges.windows(2) {
            assert!(
                pair[0].end < pair[1].start,
                "free ranges overlap or touch: {pair:?}"
            );
        }
        for r in &ranges {
            assert!(r.start < r.end, "empty free range {r:?}");
        }
    }

    #[cfg(test)]
    fn check_subtree(&self, at: u32) -> u8 {
        if at == NIL {
            return 0;
        }
        let node = self.node(at);
        let (hl, hr) = (
            self.check_subtree(node.left),
            self.check_subtree(node.right),
        );
        assert!(hl.abs_diff(hr) <= 1, "unbalanced at {:#x}", node.start);
        assert_eq!(node.height, 1 + hl.max(hr));
        if node.left != NIL {
            assert!(self.node(node.left).start < node.start);
        }
        if node.right != NIL {
            assert!(self.node(node.right).start > node.start);
        }
        for order in 0..ALIGN_ORDERS {
            let expect = capacity(node.start, node.end, order)
                .max(self.best(node.left, order))
                .max(self.best(node.right, order));
            assert_eq!(
                node.best[order], expect,
                "stale capacity at {:#x}",
                node.start
            );
        }
        node.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> FreeRange {
        FreeRange { start, end }
    }

    #[test]
    fn capacity_accounts_for_alignment() {
        assert_eq!(capacity(3, 10, 0), 7);
        assert_eq!(capacity(3, 10, 2), 6);
        assert_eq!(capacity(3, 10, 3), 2);
        assert_eq!(capacity(3, 10, 4), 0);
        assert_eq!(capacity(0, 1 << 40, 0), u32::MAX);
    }

    #[test]
    fn insert_remove_keep_balance_and_maxima() {
        let mut tree = FreeRangeTree::new();
        for i in 0..1000u64 {
            tree.insert(range(i * 10, i * 10 + 1 + i % 7));
        }
        tree.check_invariants();
        for i in (0..1000u64).step_by(3) {
            tree.remove(i * 10);
        }
        tree.check_invariants();
        assert_eq!(tree.len(), 1000 - 334);
        tree.reshape(10, range(12, 14));
        tree.check_invariants();
        assert_eq!(tree.starting_at(12), Some(range(12, 14)));
        assert_eq!(tree.containing(13), Some(range(12, 14)));
        assert_eq!(tree.containing(14), None);
    }

    #[test]
    fn highest_fit_skips_ranges_that_are_too_small_or_misaligned() {
        let mut tree = FreeRangeTree::new();
        // [100, 200) fits anything up to 64 aligned pages; above it, many 2-page holes starting
        // at odd pages: they hold 2 pages, but never 2 pages aligned to 2.
        tree.insert(range(100, 200));
        for i in 0..100u64 {
            tree.insert(range(1001 + i * 10, 1003 + i * 10));
        }
        tree.check_invariants();
        assert_eq!(
            tree.highest_fit_below(u64::MAX, 2, 0),
            Some(range(1991, 1993))
        );
        assert_eq!(
            tree.highest_fit_below(u64::MAX, 2, 1),
            Some(range(100, 200))
        );
        assert_eq!(
            tree.highest_fit_below(u64::MAX, 1, 1),
            Some(range(1991, 1993))
        );
        assert_eq!(tree.highest_fit_below(1991, 2, 0), Some(range(1981, 1983)));
        assert_eq!(tree.highest_fit_below(100, 1, 0), None);
        assert_eq!(tree.highest_fit_below(u64::MAX, 101, 0), None);
        assert_eq!(tree.last_starting_below(1001), Some(range(100, 200)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// The O(log n) search agrees with a linear scan over random free ranges.
        #[test]
        fn highest_fit_matches_a_linear_scan(
            gaps in proptest::collection::vec((1u64..40, 1u64..40), 1..300),
            removals in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..100),
            queries in proptest::collection::vec((0u64..12_000, 1u32..70, 0usize..ALIGN_ORDERS), 1..50),
        ) {
            let mut tree = FreeRangeTree::new();
            let mut model = Vec::new();
            let mut next = 1;
            for (skip, len) in gaps {
                let r = range(next + skip, next + skip + len);
                tree.insert(r);
                model.push(r);
                next = r.end;
            }
            for index in removals {
                if model.is_empty() {
                    break;
                }
                let r = model.remove(index.index(model.len()));
                tree.remove(r.start);
            }
            tree.check_invariants();
            for (bound, pages, order) in queries {
                let expect = model
                    .iter()
                    .rev()
                    .find(|r| r.start < bound && capacity(r.start, r.end, order) >= pages)
                    .copied();
                proptest::prop_assert_eq!(tree.highest_fit_below(bound, pages, order), expect);
            }
        }
    }
}
