use super::*;

#[test]
fn config_byte_golden() {
    // Priority [7:2], RES1 [1], Enable [0].
    assert_eq!(config_byte(0xa0, false), 0xa2);
    assert_eq!(config_byte(0xa0, true), 0xa3);
    // The two low priority bits cannot be expressed.
    assert_eq!(config_byte(0xff, true), 0xff);
    assert_eq!(config_byte(0x03, false), 0x02);
    assert!(config_enabled(0xa3));
    assert!(!config_enabled(0xa2));
}

#[test]
fn table_sizes_for_14_and_16_id_bits() {
    assert_eq!(config_table_bytes(14), 8192);
    assert_eq!(pending_table_bytes(14), 2048);
    assert_eq!(pending_table_alloc_bytes(14), 64 * 1024);
    assert_eq!(config_table_bytes(16), 65536 - 8192);
    assert_eq!(pending_table_bytes(16), 8192);
    assert_eq!(pending_table_alloc_bytes(16), 64 * 1024);
    // 20 bits: the pending table (128 KiB) is larger than its alignment.
    assert_eq!(pending_table_alloc_bytes(20), 128 * 1024);
}

#[test]
fn propbaser_golden() {
    // Physical_Address [51:12], Shareability [11:10], InnerCache [9:7], IDbits [4:0].
    assert_eq!(
        propbaser_value(PhysAddr(0x4123_4000), 14, TableAccess::Coherent),
        0x4123_4000 | (1 << 10) | (7 << 7) | 13
    );
    assert_eq!(
        propbaser_value(PhysAddr(0x4123_4000), 16, TableAccess::NonCoherent),
        0x4123_4000 | (1 << 7) | 15
    );
}

#[test]
fn pendbaser_golden() {
    // PTZ [62], Physical_Address [51:16].
    assert_eq!(
        pendbaser_value(PhysAddr(0x4201_0000), TableAccess::Coherent),
        (1 << 62) | 0x4201_0000 | (1 << 10) | (7 << 7)
    );
    assert_eq!(
        pendbaser_value(PhysAddr(0x4201_0000), TableAccess::NonCoherent),
        (1 << 62) | 0x4201_0000 | (1 << 7)
    );
}

#[test]
fn shareability_read_back_decides_coherency() {
    assert_eq!(access_from_shareability(0), TableAccess::NonCoherent);
    assert_eq!(access_from_shareability(1), TableAccess::Coherent);
    assert_eq!(access_from_shareability(2), TableAccess::Coherent);
}

#[test]
fn allocator_hands_out_each_lpi_once() {
    let mut a = LpiAllocator::new(4);
    assert_eq!(a.capacity(), 4);
    let got: Vec<u32> = (0..4).map(|_| a.alloc().unwrap()).collect();
    assert_eq!(got, [8192, 8193, 8194, 8195]);
    assert_eq!(a.alloc(), None);
    assert_eq!(a.in_use(), 4);
    assert!(a.is_allocated(8194));
    assert!(a.free(8194));
    assert!(!a.free(8194), "double free is refused");
    assert!(!a.free(8191), "not an LPI");
    assert!(!a.free(8196), "beyond the allocator");
    assert!(!a.is_allocated(8194));
    assert_eq!(a.alloc(), Some(8194));
}

#[test]
fn allocator_does_not_reuse_a_freed_lpi_at_once() {
    let mut a = LpiAllocator::new(100);
    let x = a.alloc().unwrap();
    assert!(a.free(x));
    // Next-fit: the following allocation moves on rather than reusing x.
    assert_eq!(a.alloc(), Some(x + 1));
    // Wrapping round finds x again once everything after it is taken.
    for _ in 0..98 {
        a.alloc().unwrap();
    }
    assert_eq!(a.alloc(), Some(x));
    assert_eq!(a.alloc(), None);
}

#[test]
fn allocator_covers_a_partial_last_word() {
    let mut a = LpiAllocator::new(70);
    for i in 0..70 {
        assert_eq!(a.alloc(), Some(LPI_BASE + i));
    }
    assert_eq!(a.alloc(), None);
    assert!(a.contains(LPI_BASE + 69));
    assert!(!a.contains(LPI_BASE + 70));
}
