//! Behaviour tests of the allocator (the tree and cache have their own unit tests).

use super::*;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const BITS_48: Iova = Iova((1 << 48) - 1);
const BITS_32: Iova = Iova((1 << 32) - 1);
const BITS_28: Iova = Iova((1 << 28) - 1);

fn space_48() -> IovaAllocator {
    IovaAllocator::new(Range::new(Iova(0), 1 << 48)).unwrap()
}

fn pages(n: u64) -> u64 {
    n * PAGE_SIZE
}

#[test]
fn allocations_come_from_the_top_of_the_limit() {
    let mut iova = space_48();
    assert_eq!(iova.alloc(pages(1), BITS_32), Ok(Iova(0xffff_f000)));
    assert_eq!(iova.alloc(pages(1), BITS_32), Ok(Iova(0xffff_e000)));
    assert_eq!(iova.alloc(pages(1), BITS_48), Ok(Iova(0xffff_ffff_f000)));
    iova.check_invariants();
}

#[test]
fn limit_exactly_at_a_page_boundary() {
    let mut iova = space_48();
    // The page ending exactly at the limit is usable...
    assert_eq!(
        iova.alloc(pages(1), Iova(0x1_0000_0fff)),
        Ok(Iova(0x1_0000_0000))
    );
    // ...a page whose last byte would be one past it is not.
    assert_eq!(
        iova.alloc(pages(1), Iova(0x2_0000_0ffe)),
        Ok(Iova(0x1_ffff_f000))
    );
    // A limit in the middle of the aperture's top page.
    assert_eq!(
        iova.alloc(pages(2), Iova(0x3_0000_1fff)),
        Ok(Iova(0x3_0000_0000))
    );
    iova.check_invariants();
}

#[test]
fn limit_below_every_free_range_is_no_space() {
    let mut iova = space_48();
    // Page 0 is never handed out, so a limit inside it leaves nothing.
    assert_eq!(
        iova.alloc(pages(1), Iova(0xfff)),
        Err(IovaError::NoSpace {
            size: PAGE_SIZE,
            limit: Iova(0xfff)
        })
    );
    iova.reserve(Range::new(Iova(0), MIB)).unwrap();
    let limit = Iova(MIB - 1);
    assert_eq!(
        iova.alloc(pages(1), limit),
        Err(IovaError::NoSpace {
            size: PAGE_SIZE,
            limit
        })
    );
    assert_eq!(iova.alloc(pages(1), Iova(MIB + 0xfff)), Ok(Iova(MIB)));
    iova.check_invariants();
}

#[test]
fn page_zero_is_never_handed_out() {
    let mut iova = IovaAllocator::new(Range::new(Iova(0), pages(4))).unwrap();
    let mut got = Vec::new();
    while let Ok(a) = iova.alloc(pages(1), Iova(u64::MAX)) {
        got.push(a);
    }
    got.sort();
    assert_eq!(got, [Iova(0x1000), Iova(0x2000), Iova(0x3000)]);
    assert!(matches!(
        IovaAllocator::new(Range::new(Iova(0), PAGE_SIZE)),
        Err(IovaError::EmptyAperture(_))
    ));
}

#[test]
fn requests_are_size_aligned_up_to_two_mib() {
    let mut iova = space_48();
    for n in [
        1u64, 2, 3, 5, 8, 17, 33, 100, 256, 511, 512, 513, 1000, 4096,
    ] {
        let a = iova.alloc(pages(n), BITS_48).unwrap();
        let expect = n.next_power_of_two().min(512) * PAGE_SIZE;
        assert!(a.is_aligned(expect), "{n} pages at {a}");
        // Knock the next request off any lucky alignment.
        iova.alloc(pages(1), BITS_48).unwrap();
    }
    iova.check_invariants();
}

#[test]
fn cacheable_requests_take_a_power_of_two_footprint() {
    let mut iova = space_48();
    let a = iova.alloc(pages(3), BITS_32).unwrap();
    assert_eq!(a, Iova(0xffff_c000));
    // The fourth page belongs to the 3-page allocation's footprint.
    assert_eq!(iova.alloc(pages(1), BITS_32), Ok(Iova(0xffff_b000)));
    assert_eq!(iova.live_bytes(), pages(4));
    iova.check_invariants();
}

#[test]
fn reserved_windows_are_never_handed_out() {
    let mut iova = space_48();
    let msi = Range::new(Iova(0x0800_0000), MIB);
    iova.reserve(msi).unwrap();
    assert!(iova.is_reserved(Iova(0x0800_0000)));
    assert!(iova.is_reserved(Iova(0x080f_ffff)));
    assert!(!iova.is_reserved(Iova(0x0810_0000)));
    // Limit inside the window: the allocation lands below it.
    assert_eq!(
        iova.alloc(pages(1), Iova(0x080f_ffff)),
        Ok(Iova(0x07ff_f000))
    );
    // A large request that does not fit between the window and the limit goes below it, aligned.
    assert_eq!(
        iova.alloc(MIB * 4, Iova(0x0840_0000 - 1)),
        Ok(Iova(0x07a0_0000))
    );
    // Overlapping and unaligned windows merge, and round outwards to pages.
    iova.reserve(Range::new(Iova(0x080f_f800), 0x1000)).unwrap();
    assert!(iova.is_reserved(Iova(0x0810_0000)));
    iova.check_invariants();
}

#[test]
fn reserving_over_a_live_allocation_fails() {
    let mut iova = space_48();
    let a = iova.alloc(pages(64), BITS_32).unwrap();
    let window = Range::new(a + pages(10), PAGE_SIZE);
    assert_eq!(
        iova.reserve(window),
        Err(IovaError::ReserveOverlapsAllocation {
            window,
            allocation: Range::new(a, pages(64)),
        })
    );
    assert!(!iova.is_reserved(a + pages(10)));
    iova.check_invariants();
}

#[test]
fn reserving_over_a_cached_range_releases_it_first() {
    let mut iova = space_48();
    let a = iova.alloc(pages(1), BITS_32).unwrap();
    iova.free(a, pages(1)).unwrap();
    assert_eq!(iova.cached_ranges(), 1);
    iova.reserve(Range::new(a, PAGE_SIZE)).unwrap();
    assert_eq!(iova.cached_ranges(), 0);
    assert_ne!(iova.alloc(pages(1), BITS_32), Ok(a));
    iova.check_invariants();
}

#[test]
fn exhaustion_then_recovery() {
    // Pages 1..=65: 32 two-page ranges from the top, then page 1 alone.
    let mut iova = IovaAllocator::new(Range::new(Iova(0), pages(66))).unwrap();
    let mut live = Vec::new();
    while let Ok(a) = iova.alloc(pages(2), Iova(u64::MAX)) {
        live.push(a);
    }
    assert_eq!(live.len(), 32);
    assert_eq!(iova.alloc(pages(1), Iova(u64::MAX)), Ok(Iova(0x1000)));
    assert!(matches!(
        iova.alloc(pages(1), Iova(u64::MAX)),
        Err(IovaError::NoSpace { .. })
    ));
    for a in live.drain(..) {
        iova.free(a, pages(2)).unwrap();
    }
    iova.flush_caches();
    assert_eq!(iova.free_ranges(), 1);
    assert_eq!(
        iova.alloc(pages(64), Iova(u64::MAX)),
        Err(IovaError::NoSpace {
            size: pages(64),
            limit: Iova(u64::MAX)
        })
    );
    assert_eq!(iova.alloc(pages(32), Iova(u64::MAX)), Ok(Iova(0x20000)));
    iova.check_invariants();
}

#[test]
fn fragmented_space_is_searched_past_small_holes() {
    let mut iova = space_48();
    let live: Vec<Iova> = (0..2000)
        .map(|_| iova.alloc(pages(1), BITS_32).unwrap())
        .collect();
    for a in live.iter().step_by(2) {
        iova.free(*a, pages(1)).unwrap();
    }
    iova.flush_caches();
    assert_eq!(iova.free_ranges(), 1001);
    // One page fits the highest hole; two aligned pages fit none of them.
    assert_eq!(iova.alloc(pages(1), BITS_32), Ok(live[0]));
    let lowest_live = *live.last().unwrap();
    let two = iova.alloc(pages(2), BITS_32).unwrap();
    assert!(two + pages(2) <= lowest_live, "{two} above {lowest_live}");
    iova.check_invariants();
}

#[test]
fn frees_are_checked() {
    let mut iova = space_48();
    let small = iova.alloc(pages(1), BITS_32).unwrap();
    let large = iova.alloc(pages(100), BITS_32).unwrap();
    assert_eq!(
        iova.free(large, pages(99)),
        Err(IovaError::WrongSize {
            iova: large,
            allocated: pages(100),
            freed: pages(99)
        })
    );
    assert_eq!(
        iova.free(large + pages(1), pages(99)),
        Err(IovaError::UnknownAllocation {
            iova: large + pages(1)
        })
    );
    assert_eq!(
        iova.free(large + 8, pages(100)),
        Err(IovaError::UnknownAllocation { iova: large + 8 })
    );
    assert_eq!(iova.free(large, 0), Err(IovaError::ZeroSize));
    // Cached (small) and released (large) ranges both report a double free.
    iova.free(small, pages(1)).unwrap();
    assert_eq!(
        iova.free(small, pages(1)),
        Err(IovaError::DoubleFree { iova: small })
    );
    iova.free(large, pages(100)).unwrap();
    assert_eq!(
        iova.free(large, pages(100)),
        Err(IovaError::DoubleFree { iova: large })
    );
    assert_eq!(
        iova.free(Iova(1 << 50), pages(1)),
        Err(IovaError::UnknownAllocation {
            iova: Iova(1 << 50)
        })
    );
    assert_eq!(iova.live_ranges(), 0);
    iova.check_invariants();
}

#[test]
fn sizes_within_the_same_page_count_free_alike() {
    let mut iova = space_48();
    let a = iova.alloc(5000, BITS_32).unwrap();
    assert_eq!(iova.free(a, 8192), Ok(()));
}

#[test]
fn cached_ranges_honour_the_limit() {
    let mut iova = space_48();
    let high = iova.alloc(pages(1), BITS_48).unwrap();
    assert!(high > BITS_32);
    iova.free(high, pages(1)).unwrap();
    assert_eq!(iova.cached_ranges(), 1);
    // A 28-bit device must not get the range cached by the 64-bit one.
    let low = iova.alloc(pages(1), BITS_28).unwrap();
    assert!(low + (PAGE_SIZE - 1) <= BITS_28);
    assert_eq!(iova.cached_ranges(), 1);
    // A 48-bit device does.
    assert_eq!(iova.alloc(pages(1), BITS_48), Ok(high));
    assert_eq!(iova.cached_ranges(), 0);
    iova.check_invariants();
}

#[test]
fn cached_ranges_stay_in_the_tree_until_an_allocation_needs_their_space() {
    let mut iova = IovaAllocator::new(Range::new(Iova(0x8000), pages(8))).unwrap();
    let a = iova.alloc(pages(8), Iova(u64::MAX)).unwrap();
    assert_eq!(a, Iova(0x8000));
    iova.free(a, pages(8)).unwrap();
    assert_eq!(iova.cached_ranges(), 1);
    iova.check_invariants();
    // No free space left but what the cache holds: a request of another class gets it back
    // (the caches are flushed) rather than failing.
    assert_eq!(iova.alloc(pages(1), Iova(u64::MAX)), Ok(Iova(0xf000)));
    assert_eq!(iova.cached_ranges(), 0);
    iova.check_invariants();
    // With nothing cached, a request that does not fit still fails.
    assert!(matches!(
        iova.alloc(pages(8), Iova(u64::MAX)),
        Err(IovaError::NoSpace { .. })
    ));
    iova.check_invariants();
}

#[test]
fn counters_track_live_and_cached_ranges() {
    let mut iova = space_48();
    let a = iova.alloc(pages(3), BITS_32).unwrap();
    let b = iova.alloc(pages(40), BITS_32).unwrap();
    assert_eq!((iova.live_ranges(), iova.live_bytes()), (2, pages(43)));
    iova.free(a, pages(3)).unwrap();
    iova.free(b, pages(40)).unwrap();
    assert_eq!((iova.live_ranges(), iova.live_bytes()), (0, 0));
    assert_eq!(iova.cached_ranges(), 1);
    iova.flush_caches();
    assert_eq!(iova.cached_ranges(), 0);
    assert_eq!(iova.free_ranges(), 1);
    iova.check_invariants();
}

#[test]
fn a_full_cache_class_releases_to_the_tree() {
    let mut iova = space_48();
    let live: Vec<Iova> = (0..cache::CACHE_DEPTH + 8)
        .map(|_| iova.alloc(pages(2), BITS_32).unwrap())
        .collect();
    for a in &live {
        iova.free(*a, pages(2)).unwrap();
    }
    assert_eq!(iova.cached_ranges(), cache::CACHE_DEPTH);
    iova.check_invariants();
}

#[test]
fn errors_read_well() {
    let e = IovaError::WrongSize {
        iova: Iova(0x1000),
        allocated: 0x2000,
        freed: 0x3000,
    };
    assert_eq!(
        e.to_string(),
        "free of IOVA 0x1000 with size 0x3000, but 0x2000 bytes were allocated"
    );
}

/// One step of a random workload.
#[derive(Clone, Debug)]
enum Op {
    Alloc { pages: u64, limit: Iova },
    Free { which: usize },
    FreeWrongSize { which: usize },
    Reserve { first_page: u64, pages: u64 },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let limit = prop_oneof![
        Just(Iova(u64::MAX)),
        Just(Iova((1 << 20) - 1)),
        Just(Iova((1 << 19) - 1)),
        Just(Iova(0x5_3fff)),
        (1u64..1 << 20).prop_map(Iova),
    ];
    let pages = prop_oneof![4 => 1u64..=4, 2 => 5u64..=40, 1 => 41u64..=700];
    prop_oneof![
        8 => (pages, limit).prop_map(|(pages, limit)| Op::Alloc { pages, limit }),
        6 => any::<usize>().prop_map(|which| Op::Free { which }),
        1 => any::<usize>().prop_map(|which| Op::FreeWrongSize { which }),
        1 => (0u64..256, 1u64..16).prop_map(|(first_page, pages)| Op::Reserve { first_page, pages }),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random workloads against a model: no overlap, within limit, aligned, outside reserved
    /// windows and page 0, exact accounting, and frees checked.
    #[test]
    fn random_workloads_match_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        // 1 MiB aperture (256 pages) so limits, exhaustion and windows all come into play.
        let mut iova = IovaAllocator::new(Range::new(Iova(0), 1 << 20)).unwrap();
        // (start, requested pages); what an allocation occupies is its footprint.
        let mut live: Vec<(Iova, u64)> = Vec::new();
        let footprint =
            |pages: u64| if pages <= 32 { pages.next_power_of_two() } else { pages } * PAGE_SIZE;
        let mut reserved: Vec<Range<Iova>> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { pages, limit } => {
                    let result = iova.alloc(pages * PAGE_SIZE, limit);
                    if result.is_err() {
                        // A refusal is right only when the model has no room either: no
                        // aligned place at or above page 1, within the limit and the aperture,
                        // clear of every live range and reserved window.
                        let align = pages.next_power_of_two().min(512) * PAGE_SIZE;
                        let size = footprint(pages);
                        let top = limit.as_u64().min((1 << 20) - 1);
                        let fits = (1..)
                            .map(|k| k * align)
                            .take_while(|start| start + size - 1 <= top)
                            .any(|start| {
                                let r = Range::new(Iova(start), size);
                                !live.iter().any(|(b, n)| r.overlaps(&Range::new(*b, footprint(*n))))
                                    && !reserved.iter().any(|w| r.overlaps(w))
                            });
                        prop_assert!(!fits, "{} pages below {:#x} refused with room left", pages, top);
                    }
                    if let Ok(a) = result {
                        let r = Range::new(a, footprint(pages));
                        prop_assert!(a.as_u64() >= PAGE_SIZE);
                        prop_assert!(r.last().unwrap() <= limit);
                        prop_assert!(a.is_aligned(pages.next_power_of_two().min(512) * PAGE_SIZE));
                        for (b, n) in &live {
                            prop_assert!(!r.overlaps(&Range::new(*b, footprint(*n))));
                        }
                        for w in &reserved {
                            prop_assert!(!r.overlaps(w));
                        }
                        live.push((a, pages));
                    }
                }
                Op::Free { which } => {
                    if !live.is_empty() {
                        let (a, n) = live.swap_remove(which % live.len());
                        prop_assert_eq!(iova.free(a, n * PAGE_SIZE), Ok(()));
                        prop_assert_eq!(
                            iova.free(a, n * PAGE_SIZE),
                            Err(IovaError::DoubleFree { iova: a })
                        );
                    }
                }
                Op::FreeWrongSize { which } => {
                    if !live.is_empty() {
                        let (a, n) = live[which % live.len()];
                        let is_wrong_size = matches!(
                            iova.free(a, (n + 1) * PAGE_SIZE),
                            Err(IovaError::WrongSize { .. })
                        );
                        prop_assert!(is_wrong_size);
                    }
                }
                Op::Reserve { first_page, pages } => {
                    let w = Range::new(Iova(first_page * PAGE_SIZE), pages * PAGE_SIZE);
                    let hits_live = live
                        .iter()
                        .any(|(a, n)| w.overlaps(&Range::new(*a, footprint(*n))));
                    let result = iova.reserve(w);
                    prop_assert_eq!(result.is_err(), hits_live);
                    if result.is_ok() {
                        reserved.push(w);
                    }
                }
                Op::Flush => iova.flush_caches(),
            }
            prop_assert_eq!(iova.live_ranges(), live.len());
            let bytes: u64 = live.iter().map(|(_, n)| n * PAGE_SIZE).sum();
            prop_assert_eq!(iova.live_bytes(), bytes);
            iova.check_invariants();
        }
        for (a, n) in live.drain(..) {
            prop_assert_eq!(iova.free(a, n * PAGE_SIZE), Ok(()));
        }
        iova.flush_caches();
        prop_assert_eq!((iova.live_ranges(), iova.live_bytes(), iova.cached_ranges()), (0, 0, 0));
        iova.check_invariants();
    }
}
