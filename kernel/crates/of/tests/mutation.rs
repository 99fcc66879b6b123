//! Robustness: tens of thousands of mutated blobs (bit flips, interesting words, truncations,
//! header edits, shifted tokens) go through the parser, the whole DMA topology and every
//! accessor on every node. Nothing may panic. The same blobs handed to `fdt` unchecked do panic,
//! which shows the mutations reach the places the validation guards.

mod common;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use common::*;
use of::{DeviceTree, pci_phys_hi};

/// xorshift64*: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Panics inside [`caught`] are reported by the tests themselves: the hook stays quiet for them
/// but remembers where the last one happened. Other panics print as usual.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            } else {
                default(info);
            }
        }));
    });
}

fn caught<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    CATCHING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    r
}

fn be32(b: &[u8], i: usize) -> usize {
    u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap()) as usize
}

/// The blob cut to the end of its strings block (QEMU pads its blob to 1 MiB).
fn trimmed(blob: &[u8]) -> Vec<u8> {
    let end = (be32(blob, 3) + be32(blob, 8)).max(be32(blob, 2) + be32(blob, 9));
    let mut b = blob[..end].to_vec();
    set_header(&mut b, 1, end as u32);
    b
}

const INTERESTING: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    9,
    0x7f,
    0x100,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    for _ in 0..1 + rng.below(2) {
        let len = b.len();
        if len == 0 {
            break;
        }
        // Weighted towards damage the structure walk survives, so the accessors see it.
        match rng.below(11) {
            0..=2 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(len);
                    b[i] ^= 1 << rng.below(8);
                }
            }
            3..=6 => {
                let i = rng.below(len / 4) * 4;
                let v = if rng.below(3) == 0 {
                    rng.next() as u32
                } else {
                    INTERESTING[rng.below(INTERESTING.len())]
                };
                if i + 4 <= len {
                    b[i..i + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
            7 => {
                let cut = rng.below(len);
                b.truncate(cut);
                if rng.below(2) == 0 && cut >= 8 {
                    set_header(&mut b, 1, cut as u32);
                }
            }
            8 => {
                let field = 1 + rng.below(9);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let v = if rng.below(2) == 0 {
                    v
                } else {
                    (be32(original, field) as u32)
                        .wrapping_add((rng.below(9) as u32 * 4).wrapping_sub(16))
                };
                if b.len() >= 40 {
                    set_header(&mut b, field, v);
                }
            }
            9 => {
                // Remove or duplicate one aligned word inside the structure block and keep the
                // header sizes consistent, so the walk goes on past the damage.
                if b.len() < 40 {
                    continue;
                }
                let (off, size) = (be32(&b, 2), be32(&b, 9));
                if size < 8 || off + size > b.len() {
                    continue;
                }
                let at = off + rng.below(size / 4) * 4;
                let grow = rng.below(2) == 0;
                if grow {
                    let word: Vec<u8> = b[at..at + 4].to_vec();
                    b.splice(at..at, word);
                } else {
                    b.drain(at..at + 4);
                }
                let delta = |v: usize| if grow { v + 4 } else { v - 4 };
                let total = b.len();
                set_header(&mut b, 1, total as u32);
                set_header(&mut b, 9, delta(size) as u32);
                let strings = be32(&b, 3);
                if strings > off {
                    set_header(&mut b, 3, delta(strings) as u32);
                }
            }
            _ => {
                // A random byte anywhere in the first 256 bytes of the structure block.
                if b.len() > 40 {
                    let off = be32(&b, 2).min(b.len() - 1);
                    let i = (off + rng.below(256)).min(b.len() - 1);
                    b[i] = rng.next() as u8;
                }
            }
        }
    }
    b
}

/// Every public accessor on every node.
fn exercise(blob: &[u8]) -> usize {
    let mut answers = 0usize;
    let mut count = |ok: bool| answers += usize::from(ok);
    count(of::dma_topology(blob).is_ok());
    if let Ok(Some(copy)) = of::without_nops(blob) {
        count(DeviceTree::parse(&copy).is_ok());
    }
    let Ok(dt) = DeviceTree::parse(blob) else {
        return answers;
    };
    count(dt.alias("serial0").is_ok());
    for n in dt.nodes() {
        count(n.compatible().is_ok());
        count(n.status().is_ok());
        count(n.device_type().is_ok());
        count(n.address_cells().is_ok() && n.size_cells().is_ok());
        count(n.range_cells().is_ok());
        count(n.reg_raw().is_ok());
        count(n.reg().is_ok());
        count(n.reg_by_name("ctrl").is_ok());
        count(n.ranges().is_ok());
        count(n.translate(0x1000).is_ok());
        count(n.interrupt_parent().is_ok());
        if let Ok(irqs) = n.interrupts() {
            count(irqs.iter().all(|i| i.gic().is_ok()));
        }
        count(n.gic_interrupt("eventq").is_ok());
        count(n.iommus().is_ok());
        if let Ok(Some(map)) = n.iommu_map() {
            count(map.translate(0x1234).is_some());
        }
        count(n.iommu_for_rid(0x10).is_ok());
        count(n.msi_map().is_ok());
        count(n.msi_parents().is_ok());
        count(n.dma_ranges().is_ok());
        if let Ok(c) = n.dma_constraint() {
            count(c.bus_limit().is_some());
            count(c.cpu_to_bus(addr::PhysAddr(0x4000_0000)).is_some());
        }
        count(n.child_dma_constraint().is_ok());
        count(n.dma_coherent().is_ok());
        count(n.pci_bus_range().is_ok());
        count(n.pci_domain().is_ok());
        count(n.pci_windows().is_ok());
        for slot in 0..4 {
            for pin in 0..=5 {
                count(n.pci_intx(pci_phys_hi(0, slot, 0), pin).is_ok());
            }
        }
        count(n.map_interrupt(&[0, 0, 0], &[1]).is_ok());
        for (name, _) in n.properties() {
            count(n.cells(name).is_ok());
            count(n.strings(name).is_ok());
            count(n.flag(name).is_ok());
        }
    }
    answers
}

fn payload(e: &(dyn std::any::Any + Send)) -> String {
    let msg = e
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let at = LAST_PANIC.with(|p| p.borrow().clone());
    format!("{msg} ({at})")
}

fn survive(name: &str, original: &[u8], seed: u64, cases: usize) {
    quiet_panics();
    let mut rng = Rng(seed);
    let mut parsed = 0;
    for case in 0..cases {
        let blob = mutate(&mut rng, original);
        match caught(|| exercise(&blob)) {
            Ok(_) => parsed += usize::from(DeviceTree::parse(&blob).is_ok()),
            Err(e) => panic!(
                "{name}: case {case} (seed {seed:#x}) panicked: {}",
                payload(&*e)
            ),
        }
    }
    // Most mutations must leave a parseable tree, or the accessors were barely exercised.
    assert!(
        parsed > cases / 6,
        "{name}: only {parsed} of {cases} mutants parsed"
    );
}

#[test]
fn qemu_blob_mutants_never_panic() {
    survive("qemu", &trimmed(QEMU), 0x5eed_0001, 12_000);
}

#[test]
fn qemu_blob_untrimmed_mutants_never_panic() {
    survive("qemu full", QEMU, 0x5eed_0002, 300);
}

#[test]
fn dma_topology_mutants_never_panic() {
    survive("dma-topology", DMA_TOPOLOGY, 0x5eed_0003, 8_000);
}

#[test]
fn dma_mutants_never_panic() {
    survive("dma", DMA, 0x5eed_0004, 8_000);
}

#[test]
fn bus_mutants_never_panic() {
    survive("bus", BUS, 0x5eed_0005, 8_000);
}

#[test]
fn iommu_mutants_never_panic() {
    survive("iommu", IOMMU, 0x5eed_0006, 6_000);
}

#[test]
fn malformed_mutants_never_panic() {
    survive("malformed", MALFORMED, 0x5eed_0007, 4_000);
}

#[test]
fn every_prefix_of_a_blob_is_handled() {
    quiet_panics();
    let blob = DMA_TOPOLOGY;
    for cut in 0..=blob.len() {
        for fix_total in [false, true] {
            let mut b = blob[..cut].to_vec();
            if fix_total && cut >= 8 {
                set_header(&mut b, 1, cut as u32);
            }
            let r = caught(|| exercise(&b));
            assert!(
                r.is_ok(),
                "prefix {cut} panicked: {}",
                payload(&*r.unwrap_err())
            );
        }
    }
}

/// The mutants are not harmless by construction: `fdt` 0.1.5 given them unchecked panics on a
/// good share, in its own code.
#[test]
fn unchecked_fdt_panics_on_the_same_mutants() {
    quiet_panics();
    let original = trimmed(QEMU);
    let mut rng = Rng(0x5eed_0001);
    let mut fdt_panics = 0;
    for _ in 0..2_000 {
        let blob = mutate(&mut rng, &original);
        let r = caught(|| {
            let Ok(f) = fdt::Fdt::new(&blob) else {
                return 0;
            };
            f.all_nodes().map(|n| n.properties().count()).sum::<usize>()
        });
        fdt_panics += usize::from(r.is_err());
    }
    assert!(fdt_panics > 50, "only {fdt_panics} raw fdt panics");
}
