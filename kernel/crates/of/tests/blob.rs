//! Blob validation: every structural defect is an error with an offset, never a panic.

mod common;

use common::*;
use of::{BlobProblem, Block, DeviceTree, DtError, MAX_DEPTH, Problem, without_nops};

fn problem(blob: &[u8]) -> BlobProblem {
    match DeviceTree::parse(blob) {
        Err(DtError::Blob { problem, .. }) => problem,
        Err(e) => panic!("expected a blob error, got {e}"),
        Ok(_) => panic!("expected a blob error, the blob parsed"),
    }
}

/// A small valid tree: `/`, `/a` with a property, `/b`.
fn small() -> Writer {
    let mut w = Writer::new();
    w.begin("").cells("#address-cells", &[1]);
    w.begin("a").str("compatible", "x,a").end();
    w.begin("b").end();
    w.end();
    w
}

#[test]
fn every_committed_fixture_parses() {
    for (name, blob) in ALL {
        let dt = DeviceTree::parse(blob).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(dt.len() > 1, "{name}");
        assert!(dt.root().is_root());
    }
}

#[test]
fn qemu_blob_is_indexed_with_paths_and_phandles() {
    let dt = parse(QEMU);
    assert_eq!(dt.root().path(), "/");
    assert_eq!(dt.root().string("model").unwrap(), Some("linux,dummy-virt"));
    let smmu = node(&dt, "/smmuv3@9050000");
    assert_eq!(smmu.name(), "smmuv3@9050000");
    assert_eq!(smmu.base_name(), "smmuv3");
    assert_eq!(smmu.unit_address(), Some("9050000"));
    assert_eq!(smmu.parent(), Some(dt.root()));
    let ph = smmu.phandle().expect("the SMMU has a phandle");
    assert_eq!(dt.by_phandle(ph), Some(smmu));
    let its = node(&dt, "/intc@8000000/its@8080000");
    assert_eq!(
        its.ancestors().map(|n| n.path()).collect::<Vec<_>>(),
        ["/intc@8000000", "/"]
    );
    assert!(
        dt.find("/intc@8000000/its").is_none(),
        "unit addresses are part of names"
    );
    assert!(dt.find("smmuv3@9050000").is_none(), "paths are absolute");
    assert_eq!(
        dt.node("/nope").unwrap_err().to_string(),
        "/nope: no such node"
    );
    let core0 = node(&dt, "/cpus/cpu-map/socket0/cluster0/core0");
    assert_eq!(core0.path(), "/cpus/cpu-map/socket0/cluster0/core0");
    assert_eq!(dt.nodes().count(), dt.len());
    assert_eq!(dt.compatible("virtio,mmio").count(), 32);
}

#[test]
fn writer_output_is_a_valid_blob() {
    let blob = small().finish();
    let dt = DeviceTree::parse(&blob).unwrap();
    assert_eq!(dt.len(), 3);
    assert_eq!(node(&dt, "/a").compatible().unwrap(), ["x,a"]);
}

#[test]
fn header_defects_are_reported() {
    assert_eq!(problem(&[0xd0, 0x0d]), BlobProblem::TooSmall(2));
    let good = small().finish();

    let mut b = good.clone();
    set_header(&mut b, 0, 0xfeed_d00d);
    assert_eq!(problem(&b), BlobProblem::BadMagic(0xfeed_d00d));

    let mut b = good.clone();
    set_header(&mut b, 1, good.len() as u32 + 1);
    assert!(matches!(problem(&b), BlobProblem::TotalSize { .. }));
    assert!(matches!(
        problem(&good[..good.len() - 1]),
        BlobProblem::TotalSize { .. }
    ));

    let mut b = good.clone();
    set_header(&mut b, 5, 16);
    assert!(matches!(
        problem(&b),
        BlobProblem::Version { version: 16, .. }
    ));

    let mut b = good.clone();
    set_header(&mut b, 9, 0x10_0000);
    assert!(matches!(
        problem(&b),
        BlobProblem::BlockOutside {
            block: Block::Structure,
            ..
        }
    ));

    let mut b = good.clone();
    set_header(&mut b, 3, 0xffff_fff0);
    assert!(matches!(
        problem(&b),
        BlobProblem::BlockOutside {
            block: Block::Strings,
            ..
        }
    ));

    let mut b = good.clone();
    set_header(&mut b, 2, header(&good, 2) + 2);
    set_header(&mut b, 9, header(&good, 9) - 4);
    assert_eq!(problem(&b), BlobProblem::Misaligned(Block::Structure));

    let mut b = good.clone();
    set_header(&mut b, 4, 44);
    assert_eq!(problem(&b), BlobProblem::Misaligned(Block::Reservations));

    // Fewer than 16 bytes from the reservation map to the end: no terminating entry.
    let mut b = good.clone();
    set_header(&mut b, 4, (good.len() as u32 - 8) & !7);
    assert_eq!(problem(&b), BlobProblem::ReservationsUnterminated);
}

#[test]
fn structure_defects_are_reported() {
    let mut w = small();
    w.token(7);
    assert_eq!(problem(&w.finish()), BlobProblem::Token(7));

    let mut w = Writer::new();
    w.begin("").token(NOP).end();
    assert_eq!(problem(&w.finish()), BlobProblem::Nop);

    let mut w = Writer::new();
    w.begin("").end().end();
    assert_eq!(problem(&w.finish()), BlobProblem::Unbalanced);

    let mut w = Writer::new();
    w.begin("");
    assert_eq!(problem(&w.finish()), BlobProblem::BadEnd);

    assert_eq!(problem(&Writer::new().finish()), BlobProblem::NoRoot);

    let mut w = small();
    w.begin("").end();
    assert_eq!(problem(&w.finish()), BlobProblem::SecondRoot);

    let mut w = Writer::new();
    w.cells("x", &[1]).begin("").end();
    assert_eq!(problem(&w.finish()), BlobProblem::PropertyOutsideNode);

    let mut w = Writer::new();
    w.begin("").begin("a").end().cells("late", &[1]).end();
    assert_eq!(problem(&w.finish()), BlobProblem::PropertyAfterChild);

    assert_eq!(problem(&small().finish_with(false)), BlobProblem::Truncated);
}

#[test]
fn names_are_checked() {
    let mut w = Writer::new();
    w.begin("").begin_bytes(&[0xff, 0xfe]).end().end();
    assert_eq!(problem(&w.finish()), BlobProblem::NameNotUtf8);

    let mut w = Writer::new();
    w.begin("").begin("").end().end();
    assert_eq!(
        problem(&w.finish()),
        BlobProblem::BadNodeName(String::new())
    );

    let mut w = Writer::new();
    w.begin("").begin("a/b").end().end();
    assert_eq!(problem(&w.finish()), BlobProblem::BadNodeName("a/b".into()));

    let mut w = Writer::new();
    w.begin("root").end();
    assert_eq!(
        problem(&w.finish()),
        BlobProblem::BadNodeName("root".into())
    );

    // The name runs to the end of the structure block without a NUL.
    let mut w = Writer::new();
    w.begin("").token(BEGIN_NODE).raw(b"abcd");
    assert_eq!(
        problem(&w.finish_with(false)),
        BlobProblem::NameUnterminated
    );

    let mut w = Writer::new();
    w.begin("").begin("a").end().begin("a").end().end();
    assert_eq!(
        problem(&w.finish()),
        BlobProblem::DuplicateNode("/a".into())
    );
}

#[test]
fn property_headers_are_checked() {
    let mut w = Writer::new();
    w.begin("").prop_at(0x1000, &[]).end();
    w.string(b"x");
    assert_eq!(problem(&w.finish()), BlobProblem::NameOffset(0x1000));

    let mut w = Writer::new();
    w.raw_strings(b"abc");
    w.begin("").prop_at(1, &[]).end();
    assert_eq!(problem(&w.finish()), BlobProblem::StringUnterminated(1));

    let mut w = Writer::new();
    w.raw_strings(&[b'a', 0xc3, 0xa9, 0]);
    w.begin("")
        .prop_at(0, &[])
        .prop_at(1, &[])
        .prop_at(2, &[])
        .end();
    assert_eq!(
        problem(&w.finish()),
        BlobProblem::StringNotUtf8(2),
        "offsets 0 and 1 start valid names, 2 is inside a character"
    );

    let mut w = Writer::new();
    let off = w.string(b"big");
    w.begin("").token(PROP).token(0x1000).token(off).end();
    assert_eq!(problem(&w.finish()), BlobProblem::PropertyTooLong(0x1000));

    let mut w = Writer::new();
    w.begin("").token(PROP).token(u32::MAX).token(0);
    assert_eq!(problem(&w.finish()), BlobProblem::PropertyTooLong(u32::MAX));
}

#[test]
fn nesting_is_limited() {
    let deep = |levels: usize| {
        let mut w = Writer::new();
        w.begin("");
        for i in 1..levels {
            w.begin(&format!("n{i}"));
        }
        for _ in 0..levels {
            w.end();
        }
        w.finish()
    };
    let ok = deep(MAX_DEPTH);
    let dt = DeviceTree::parse(&ok).unwrap();
    assert_eq!(
        dt.nodes().last().unwrap().ancestors().count(),
        MAX_DEPTH - 1
    );
    assert_eq!(problem(&deep(MAX_DEPTH + 1)), BlobProblem::TooDeep);
    assert_eq!(problem(&deep(200)), BlobProblem::TooDeep);
}

#[test]
fn duplicate_properties_and_phandles_are_refused() {
    let mut w = Writer::new();
    w.begin("").cells("x", &[1]).cells("x", &[2]).end();
    assert_eq!(
        message(DeviceTree::parse(&w.finish())),
        "/: x: appears twice"
    );

    let mut w = Writer::new();
    w.begin("");
    w.begin("a").cells("phandle", &[5]).end();
    w.begin("b").cells("phandle", &[5]).end();
    w.end();
    assert_eq!(
        message(DeviceTree::parse(&w.finish())),
        "/b: phandle: phandle 0x5 is also the phandle of /a"
    );

    let mut w = Writer::new();
    w.begin("").begin("a").cells("phandle", &[0]).end().end();
    assert_eq!(
        message(DeviceTree::parse(&w.finish())),
        "/a: phandle: 0x0 is not a valid phandle"
    );

    let mut w = Writer::new();
    w.begin("")
        .begin("a")
        .cells("linux,phandle", &[u32::MAX])
        .end()
        .end();
    assert_eq!(
        message(DeviceTree::parse(&w.finish())),
        "/a: linux,phandle: 0xffffffff is not a valid phandle"
    );

    let mut w = Writer::new();
    w.begin("")
        .begin("a")
        .cells("phandle", &[1])
        .cells("linux,phandle", &[2])
        .end()
        .end();
    assert_eq!(
        message(DeviceTree::parse(&w.finish())),
        "/a: phandle: contradicts linux,phandle"
    );

    let mut w = Writer::new();
    w.begin("").begin("a").prop("phandle", &[0, 1]).end().end();
    assert_eq!(
        message(DeviceTree::parse(&w.finish())),
        "/a: phandle: 2 bytes is not a whole number of cells"
    );

    let mut w = Writer::new();
    w.begin("")
        .begin("a")
        .cells("phandle", &[7])
        .cells("linux,phandle", &[7])
        .end()
        .end();
    let blob = w.finish();
    let dt = DeviceTree::parse(&blob).unwrap();
    assert_eq!(dt.by_phandle(7), Some(node(&dt, "/a")));
}

#[test]
fn blob_errors_display_offset_and_cause() {
    let mut w = Writer::new();
    w.begin("").token(NOP).end();
    let e = DeviceTree::parse(&w.finish()).unwrap_err();
    // header (40) + reservations (16) + BEGIN_NODE "" (8)
    assert_eq!(
        e.to_string(),
        "device tree blob: offset 0x40: FDT_NOP tokens are not supported"
    );
    assert_eq!(
        DeviceTree::parse(b"short").unwrap_err().to_string(),
        "device tree blob: offset 0x0: 5 bytes is smaller than the 40-byte header"
    );
    let p = Problem::NotMultiple { cells: 7, entry: 4 };
    assert_eq!(p.to_string(), "7 cells is not a multiple of 4");
}

#[test]
fn memreserve_entries_are_read_from_the_header() {
    // A blob with /memreserve/ 0x1000 0x2000; built by hand: header, reservation block with one
    // entry and the terminator, an empty root node.
    let mut blob = Vec::new();
    let header_len = 40u32;
    let rsv = header_len;
    let structs = rsv + 32;
    let struct_block: Vec<u8> = [1u32, 0, 2, 9]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    let strings = structs + struct_block.len() as u32;
    let total = strings;
    for w in [
        0xd00d_feedu32,
        total,
        structs,
        strings,
        rsv,
        17,
        16,
        0,
        0,
        struct_block.len() as u32,
    ] {
        blob.extend_from_slice(&w.to_be_bytes());
    }
    for w in [0x1000u64, 0x2000, 0, 0] {
        blob.extend_from_slice(&w.to_be_bytes());
    }
    blob.extend_from_slice(&struct_block);
    let dt = of::DeviceTree::parse(&blob).expect("hand-made blob parses");
    assert_eq!(
        dt.memory_reservations(),
        [addr::Range::new(addr::PhysAddr(0x1000), 0x2000)]
    );
    assert_eq!(dt.blob().len(), total as usize);
}

/// Found by the `bus_model` fuzz target: a node called `iommu@\r000000` put a carriage return
/// into the deferred report (and into every error naming the node), breaking the one-line-per-
/// event log. Node and property names with a control character are refused.
#[test]
fn names_with_control_characters_are_refused() {
    for name in [
        "iommu@\r000000",
        "a\nb",
        "esc\u{1b}[2J",
        "del\u{7f}",
        "c1\u{85}",
    ] {
        let mut w = Writer::new();
        w.begin("").begin(name).end().end();
        assert_eq!(
            problem(&w.finish()),
            BlobProblem::BadNodeName(name.into()),
            "{name:?}"
        );
    }

    let mut w = Writer::new();
    w.begin("").prop("status\n", b"okay\0").end();
    assert_eq!(problem(&w.finish()), BlobProblem::StringControl(0));
    let err = DeviceTree::parse(&w.finish()).unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err:?}");

    // Printable UTF-8 and the characters the specification lists stay accepted.
    let mut w = Writer::new();
    w.begin("")
        .prop("linux,pci-domain#1?", &[0, 0, 0, 0])
        .begin("caméra_0+1,x@1f.2")
        .end()
        .end();
    assert!(DeviceTree::parse(&w.finish()).is_ok());
}

/// `small()` with `FDT_NOP` tokens wherever a token may stand: first in a node, between
/// properties, between nodes, before `FDT_END`.
fn small_with_nops() -> Writer {
    let mut w = Writer::new();
    w.begin("")
        .token(NOP)
        .cells("#address-cells", &[1])
        .token(NOP);
    w.begin("a").token(NOP).str("compatible", "x,a").end();
    w.token(NOP).token(NOP);
    w.begin("b").end();
    w.end().token(NOP);
    w
}

#[test]
fn nop_tokens_are_removed_by_a_compacting_copy() {
    let with = small_with_nops().finish();
    assert_eq!(
        problem(&with),
        BlobProblem::Nop,
        "parse itself still refuses them"
    );
    let copy = without_nops(&with).unwrap().expect("the blob has NOPs");
    assert_eq!(
        copy,
        small().finish(),
        "the same blob as one written without them"
    );
    let dt = parse(&copy);
    assert_eq!(node(&dt, "/a").string("compatible").unwrap(), Some("x,a"));
    assert!(dt.find("/b").is_some());
}

#[test]
fn a_compacting_copy_keeps_reservations_and_the_boot_cpu() {
    let plain = small_with_nops().finish();
    // Rebuild with one reservation: header, reservation block (one entry + terminator), the rest.
    let off_struct = header(&plain, 2) as usize;
    let mut b = plain[..off_struct - 16].to_vec();
    b.extend_from_slice(&0x4800_0000u64.to_be_bytes());
    b.extend_from_slice(&0x1000u64.to_be_bytes());
    b.extend_from_slice(&plain[off_struct - 16..]);
    for (i, shift) in [(1, 16), (2, 16), (3, 16)] {
        let v = header(&b, i) + shift;
        set_header(&mut b, i, v);
    }
    set_header(&mut b, 7, 3);
    let copy = without_nops(&b).unwrap().unwrap();
    assert_eq!(header(&copy, 7), 3, "boot_cpuid_phys");
    let dt = parse(&copy);
    assert_eq!(dt.memory_reservations().len(), 1);
    assert_eq!(dt.memory_reservations()[0].size, 0x1000);
}

#[test]
fn a_blob_without_nops_needs_no_copy_and_other_defects_stay_errors() {
    assert_eq!(without_nops(&small().finish()), Ok(None));
    assert_eq!(without_nops(QEMU), Ok(None));
    let mut w = small_with_nops();
    w.token(7);
    let broken = w.finish();
    assert!(matches!(
        without_nops(&broken),
        Err(DtError::Blob {
            problem: BlobProblem::Token(7),
            ..
        })
    ));
    assert!(without_nops(b"short").is_err());
}
