//! Runs the in-kernel tests selected by `ktest=` and prints the `KTEST` protocol lines.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use kapi::time::Instant;
use ktest::{KTest, Outcome};

use crate::println;

static CURRENT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Name of the test running now (for the panic and fault handlers).
pub fn current() -> Option<&'static str> {
    crate::mm::layout::ktests()
        .get(CURRENT.load(Ordering::Relaxed))
        .map(|t| t.name)
}

/// Tally of a run.
#[derive(Default, Debug, Clone, Copy)]
pub struct Tally {
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Skipped.
    pub skip: usize,
}

/// Runs every test selected by `filters`, in name order.
pub fn run(filters: &[String]) -> Tally {
    let all = crate::mm::layout::ktests();
    let mut selected: Vec<(usize, &KTest)> = all
        .iter()
        .enumerate()
        .filter(|(_, t)| ktest::selected(t, filters))
        .collect();
    selected.sort_by_key(|(_, t)| t.name);
    println!(
        "KTEST START total={} filter={}",
        selected.len(),
        filters.join(",")
    );
    let mut tally = Tally::default();
    for (index, test) in selected {
        println!("KTEST RUN {}", test.name);
        CURRENT.store(index, Ordering::Relaxed);
        let start = Instant::now();
        let result = (test.run)();
        let us = start.elapsed().as_micros();
        CURRENT.store(usize::MAX, Ordering::Relaxed);
        match result {
            Ok(()) => {
                tally.pass += 1;
                println!("KTEST PASS {} us={us}", test.name);
            }
            Err(Outcome::Fail {
                file,
                line,
                message,
            }) => {
                tally.fail += 1;
                println!("KTEST FAIL {} at {file}:{line}: {message}", test.name);
            }
            Err(Outcome::Skip(reason)) => {
                tally.skip += 1;
                println!("KTEST SKIP {}: {reason}", test.name);
            }
        }
    }
    println!(
        "KTEST END pass={} fail={} skip={}",
        tally.pass, tally.fail, tally.skip
    );
    tally
}
