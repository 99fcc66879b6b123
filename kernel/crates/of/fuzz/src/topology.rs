//! The `dt_topology` target: a blob through [`of::dma_topology`] and every accessor a kernel
//! uses at boot, on every node, with the promises the `of` documentation makes checked on every
//! answer. Errors are fine (most fuzz inputs are broken trees); panics and broken promises are
//! not.

use std::borrow::Cow;

use addr::{Iova, PhysAddr};
use of::{BlobProblem, DeviceTree, DmaConstraint, DtError, IdMap, Node, RegEntry, pci_phys_hi};

/// The blob the kernel ends up parsing (`kernel/src/dt.rs`): the blob itself, or, when `parse`
/// refuses it for an `FDT_NOP`, the compacted copy `of::without_nops` makes.
pub fn boot_blob(blob: &[u8]) -> Cow<'_, [u8]> {
    match DeviceTree::parse(blob) {
        Err(DtError::Blob {
            problem: BlobProblem::Nop,
            ..
        }) => match of::without_nops(blob) {
            Ok(Some(copy)) => Cow::Owned(copy),
            _ => Cow::Borrowed(blob),
        },
        _ => Cow::Borrowed(blob),
    }
}

/// Runs the whole target on one input.
pub fn check(input: &[u8]) {
    check_without_nops(input);
    let blob: &[u8] = &boot_blob(input);
    let topology = of::dma_topology(blob);
    let dt = match DeviceTree::parse(blob) {
        Ok(dt) => dt,
        Err(e) => {
            assert_eq!(
                topology,
                Err(e),
                "dma_topology and parse disagree on a bad blob"
            );
            return;
        }
    };
    check_tree(&dt);
    for node in dt.nodes() {
        check_node(&dt, &node);
    }
    if let Ok(topology) = topology {
        check_topology(&dt, &topology);
    }
}

/// `of::without_nops` checks as `parse` does and, when it copies, leaves nothing to remove and
/// nothing the blob checks refuse.
fn check_without_nops(blob: &[u8]) {
    let copy = of::without_nops(blob);
    match DeviceTree::parse(blob) {
        Ok(_) => assert_eq!(copy, Ok(None), "a copy of a blob without FDT_NOP"),
        Err(DtError::Blob {
            problem: BlobProblem::Nop,
            ..
        }) => assert_ne!(copy, Ok(None), "no copy of a blob with FDT_NOP"),
        // Found after the blob checks, when the tree is indexed.
        Err(DtError::Blob {
            problem: BlobProblem::DuplicateNode(_) | BlobProblem::Inconsistent,
            ..
        }) => {}
        Err(e @ DtError::Blob { .. }) => {
            assert_eq!(copy, Err(e), "without_nops and parse disagree")
        }
        Err(_) => {}
    }
    let Ok(Some(copy)) = copy else { return };
    assert_eq!(
        of::without_nops(&copy),
        Ok(None),
        "FDT_NOP left in the copy"
    );
    if let Err(DtError::Blob { problem, offset }) = DeviceTree::parse(&copy) {
        assert!(
            matches!(problem, BlobProblem::DuplicateNode(_)),
            "the copy is refused at {offset}: {problem:?}"
        );
    }
}

fn check_tree(dt: &DeviceTree<'_>) {
    assert!(!dt.is_empty());
    assert!(dt.root().is_root());
    for r in dt.memory_reservations() {
        assert!(r.size > 0, "zero-sized reservation kept");
        assert!(
            r.start.0.checked_add(r.size - 1).is_some(),
            "reservation wraps: {r:?}"
        );
    }
    let _ = dt.alias("serial0");
    let _ = dt.compatible("arm,smmu-v3").count();
}

/// Per-node structure, then every binding accessor.
fn check_node(dt: &DeviceTree<'_>, n: &Node<'_>) {
    assert_eq!(dt.find(n.path()), Some(*n), "path does not find its node");
    assert!(n.path().ends_with(n.name()));
    match n.parent() {
        Some(p) => assert!(
            p.children().any(|c| c == *n),
            "not among its parent's children"
        ),
        None => assert!(n.is_root()),
    }
    if let Some(ph) = n.phandle() {
        assert_eq!(
            dt.by_phandle(ph),
            Some(*n),
            "phandle does not find its node"
        );
    }
    assert_eq!(
        n.unit_address().is_some(),
        n.name().contains('@'),
        "unit address of {}",
        n.path()
    );
    assert!(n.name().starts_with(n.base_name()));

    let _ = n.status();
    let _ = n.is_enabled();
    let _ = n.device_type();
    let _ = n.is_pci_bus();
    if let Ok(list) = n.compatible()
        && let Some(first) = list.first()
    {
        assert!(n.is_compatible(first));
    }
    let _ = n.range_cells();
    for (name, _) in n.properties() {
        assert!(n.has_property(name));
        let _ = n.cells(name);
        let _ = n.strings(name);
        let _ = n.string(name);
        let _ = n.flag(name);
        let _ = n.u32(name);
    }

    check_addresses(n);
    check_interrupts(n);
    check_iommu(n);
    check_dma(n);
    check_pci(n);
}

fn check_addresses(n: &Node<'_>) {
    let raw: Option<Vec<RegEntry>> = n.reg_raw().ok();
    if let Ok(regs) = n.reg() {
        if let Some(raw) = &raw {
            assert_eq!(raw.len(), regs.len(), "reg and reg_raw lengths");
        }
        for r in &regs {
            assert!(
                r.size == 0 || r.start.0.checked_add(r.size - 1).is_some(),
                "{}: reg entry wraps: {r:?}",
                n.path()
            );
        }
        if let Ok(names) = n.reg_names() {
            for (i, name) in names.iter().enumerate() {
                match n.reg_by_name(name) {
                    // The first entry of that name, which is entry `i` unless the name repeats.
                    Ok(Some(r)) if names.iter().position(|m| m == name) == Some(i) => {
                        assert_eq!(Some(&r), regs.get(i), "reg_by_name({name})")
                    }
                    _ => {}
                }
            }
        }
    }
    for prop in [n.ranges(), n.dma_ranges()].into_iter().flatten() {
        assert!(
            prop.windows().iter().all(|w| w.size != 0),
            "zero-sized window"
        );
    }
    let _ = n.translate(0x1000);
    let _ = n.translate(0);
}

fn check_interrupts(n: &Node<'_>) {
    let _ = n.interrupt_parent();
    let _ = n.interrupt_cells();
    if let Ok(specs) = n.interrupts() {
        for spec in &specs {
            if let Ok(irq) = spec.gic() {
                let id = irq.intid;
                assert!(
                    (16..1020).contains(&id)
                        || (1056..1120).contains(&id)
                        || (4096..5120).contains(&id),
                    "GIC INTID {id} out of every range"
                );
            }
        }
        if let Ok(irqs) = n.gic_interrupts() {
            assert_eq!(irqs.len(), specs.len());
        }
    }
    if let Ok(names) = n.interrupt_names() {
        for name in names.iter().take(8) {
            let _ = n.gic_interrupt(name);
        }
    }
    let _ = n.gic_interrupt("eventq");
    // A lookup key of the size the nexus expects, and a wrong one.
    let na = n.address_cells().unwrap_or(2) as usize;
    let ni = n.interrupt_cells().ok().flatten().unwrap_or(1).min(4) as usize;
    let _ = n.map_interrupt(&vec![0; na.min(4)], &vec![1; ni]);
    let _ = n.map_interrupt(&[0, 0, 0], &[1]);
}

/// The documented shape of an `iommu-map` / `msi-map`.
fn check_id_map(n: &Node<'_>, what: &str, map: &IdMap<Node<'_>>) {
    assert!(
        !map.entries.is_empty(),
        "{}: empty {what} accepted",
        n.path()
    );
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for e in &map.entries {
        assert!(e.length > 0, "{}: {what}: zero length accepted", n.path());
        let end = u64::from(e.rid_base) + u64::from(e.length);
        assert!(end <= 1 << 32 && u64::from(e.target_base) + u64::from(e.length) <= 1 << 32);
        spans.push((u64::from(e.rid_base), end));
        if map.effective_mask() == u32::MAX {
            assert_eq!(map.translate(e.rid_base), Some((&e.target, e.target_base)));
            let last = e.length - 1;
            assert_eq!(
                map.translate(e.rid_base + last),
                Some((&e.target, e.target_base + last))
            );
        }
    }
    spans.sort_unstable();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "{}: overlapping {what} entries accepted",
        n.path()
    );
}

fn check_iommu(n: &Node<'_>) {
    if let Ok(list) = n.iommus() {
        for e in &list {
            let cells = e.target.specifier_cells("#iommu-cells");
            assert_eq!(
                cells,
                Ok(Some(e.args.len() as u32)),
                "{}: iommus specifier size",
                n.path()
            );
        }
    }
    let map = n.iommu_map();
    if let Ok(Some(m)) = &map {
        check_id_map(n, "iommu-map", m);
    }
    for rid in [0u32, 0x8, 0x10, 0x100, 0xffff] {
        match (n.iommu_for_rid(rid), &map) {
            (Ok(found), Ok(m)) => {
                let expected = m
                    .as_ref()
                    .and_then(|m| m.translate(rid).map(|(t, id)| (*t, id)));
                assert_eq!(found, expected, "iommu_for_rid({rid:#x})");
            }
            (Ok(_), Err(e)) => panic!("iommu_for_rid succeeded where iommu_map failed: {e}"),
            _ => {}
        }
    }
    if let Ok(Some(m)) = n.msi_map() {
        check_id_map(n, "msi-map", &m);
    }
    if let Ok(parents) = n.msi_parents() {
        for p in &parents {
            let cells = p.target.specifier_cells("#msi-cells");
            assert_eq!(cells.map(|c| c.unwrap_or(0)), Ok(p.args.len() as u32));
        }
    }
}

/// The documented shape of a [`DmaConstraint`].
fn check_constraint(n: &Node<'_>, c: &DmaConstraint) {
    let DmaConstraint::Windows(w) = c else {
        assert_eq!(c.bus_limit(), None);
        assert_eq!(c.cpu_to_bus(PhysAddr(0x4000_0000)), Some(Iova(0x4000_0000)));
        return;
    };
    for win in w {
        assert!(win.size > 0, "{}: empty DMA window", n.path());
        let bus_last = win.bus.0.checked_add(win.size - 1);
        let cpu_last = win.cpu.0.checked_add(win.size - 1);
        assert!(
            bus_last.is_some() && cpu_last.is_some(),
            "{}: DMA window wraps: {win:?}",
            n.path()
        );
        assert_eq!(
            c.bus_to_cpu(win.bus),
            Some(win.cpu),
            "{}: window start",
            n.path()
        );
        assert_eq!(
            c.bus_to_cpu(win.bus_last()).map(|p| p.0),
            cpu_last,
            "{}: window end",
            n.path()
        );
        assert_eq!(win.cpu_to_bus(win.cpu), Some(win.bus));
    }
    assert!(
        w.windows(2).all(|p| p[0].bus_last().0 < p[1].bus.0),
        "{}: DMA windows not sorted and disjoint on the bus side: {w:?}",
        n.path()
    );
    assert_eq!(c.bus_limit(), w.iter().map(|x| x.bus_last()).max());
}

fn check_dma(n: &Node<'_>) {
    let own = n.dma_constraint();
    if let Ok(c) = &own {
        check_constraint(n, c);
    }
    if let Some(p) = n.parent() {
        assert_eq!(
            own,
            p.child_dma_constraint(),
            "{}: constraint = parent's child view",
            n.path()
        );
    }
    if let Ok(c) = n.child_dma_constraint() {
        check_constraint(n, &c);
    }
    let _ = n.dma_coherent();
}

fn check_pci(n: &Node<'_>) {
    if let Ok(Some(r)) = n.pci_bus_range() {
        assert!(r.start() <= r.end());
    }
    let _ = n.pci_domain();
    if let Ok(windows) = n.pci_windows() {
        for w in &windows {
            assert!(w.size > 0);
            assert!(
                w.pci.checked_add(w.size - 1).is_some()
                    && w.cpu.0.checked_add(w.size - 1).is_some(),
                "{}: PCI window wraps: {w:?}",
                n.path()
            );
        }
    }
    for slot in 0..4 {
        for pin in 0..=5 {
            let _ = n.pci_intx(pci_phys_hi(0, slot, 0), pin);
        }
    }
}

/// The one-call topology says what the per-node accessors say.
fn check_topology(dt: &DeviceTree<'_>, topology: &of::DmaTopology) {
    for t in &topology.nodes {
        let n = dt
            .find(&t.path)
            .expect("topology names a node that does not exist");
        assert_eq!(Ok(&t.dma), n.dma_constraint().as_ref(), "{}: dma", t.path);
        assert_eq!(
            Ok(t.dma_coherent),
            n.dma_coherent(),
            "{}: coherence",
            t.path
        );
        let iommus: Vec<String> = n
            .iommus()
            .expect("topology built from failing iommus")
            .iter()
            .map(|e| e.target.path().to_string())
            .collect();
        let listed: Vec<&str> = t.iommus.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(listed, iommus, "{}: iommus", t.path);
        assert_eq!(t.path.as_str(), n.path());
        assert_eq!(topology.node(&t.path).map(|x| &x.path), Some(&t.path));
    }
}
