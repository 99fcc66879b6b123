//! The final result does not depend on the order drivers and devices arrive in.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::*;
use crate::fakes::FakeDma;
use crate::{DeferReason, DeviceInfo, DeviceState, MatchId, ProbeError};

const MANAGED: &str = "0000:00:03.0";

/// What a boot ends with: each device's state by name, the deferred report, the devices the DMA
/// hooks hold configured, and how many driver attempts it took.
#[derive(Debug, PartialEq)]
struct Outcome {
    states: Vec<(String, DeviceState)>,
    report: Vec<String>,
    configured: Vec<String>,
}

/// Runs one boot, registering item `i` of the scenario at step `order[i]`: items 0-3 are drivers
/// (smmuv3, edu, edu-managed, widget), 4-7 devices (the SMMU, edu 02.0 and 03.0 behind it, a
/// widget whose clock never appears). 03.0 is meant for the self-managing driver, as with
/// `edu.managed=0000:00:03.0`: each edu driver declines the other's devices.
fn boot(order: &[usize]) -> (Outcome, u64) {
    let dma = FakeDma::new();
    let mut m = manager(&dma);
    let edu = TestDriver::new("edu", &[EDU]).probe(|ctx| {
        if ctx.device().name == MANAGED {
            Err(ProbeError::NoMatch)
        } else {
            Ok(Box::new(()))
        }
    });
    let edu_managed = TestDriver::new("edu-managed", &[EDU])
        .managed()
        .probe(|ctx| {
            if ctx.device().name == MANAGED {
                Ok(Box::new(()))
            } else {
                Err(ProbeError::NoMatch)
            }
        });
    let widget = TestDriver::new("widget", &[MatchId::Compatible("acme,widget")])
        .probe(|_| Err(ProbeError::waiting_for("clock", "/clk@0")));
    let mut drivers = [
        Some(smmu_driver(&dma)),
        Some(edu.arc()),
        Some(edu_managed.arc()),
        Some(widget.arc()),
    ];
    let mut devices = [
        Some(smmu_device()),
        Some(edu_behind_smmu(&dma, 2)),
        Some(edu_behind_smmu(&dma, 3)),
        Some(
            DeviceInfo::platform("a000000.widget", "/widget@a000000")
                .with_compatible("acme,widget"),
        ),
    ];
    for &item in order {
        if item < 4 {
            m.register_driver(drivers[item].take().unwrap()).unwrap();
        } else {
            m.add_device(devices[item - 4].take().unwrap()).unwrap();
        }
    }
    let mut states: Vec<(String, DeviceState)> = m
        .devices()
        .map(|id| {
            (
                m.info(id).unwrap().name.clone(),
                m.state(id).unwrap().clone(),
            )
        })
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    let outcome = Outcome {
        states,
        report: m
            .deferred_report()
            .iter()
            .map(ToString::to_string)
            .collect(),
        configured: dma.configured(),
    };
    (outcome, m.counters().attempts)
}

/// Calls `f` with every permutation of `0..n` (Heap's algorithm).
fn for_each_permutation(n: usize, mut f: impl FnMut(&[usize])) {
    let mut items: Vec<usize> = (0..n).collect();
    let mut c = alloc::vec![0; n];
    f(&items);
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                items.swap(0, i);
            } else {
                items.swap(c[i], i);
            }
            f(&items);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
}

#[test]
fn registration_order_does_not_change_the_result() {
    let expected = Outcome {
        states: alloc::vec![
            ("0000:00:02.0".into(), DeviceState::Bound { driver: "edu" }),
            (
                "0000:00:03.0".into(),
                DeviceState::Bound {
                    driver: "edu-managed"
                }
            ),
            (
                "9050000.smmuv3".into(),
                DeviceState::Bound { driver: "smmuv3" }
            ),
            (
                "a000000.widget".into(),
                DeviceState::Deferred {
                    driver: "widget",
                    reason: DeferReason::waiting_for("clock", "/clk@0"),
                }
            ),
        ],
        report: alloc::vec![
            "a000000.widget: deferred: waiting for clock /clk@0 (no such device)".into()
        ],
        configured: alloc::vec![
            "0000:00:02.0".into(),
            "0000:00:03.0".into(),
            "9050000.smmuv3".into()
        ],
    };
    let mut runs = 0;
    let mut most_attempts = 0;
    for_each_permutation(8, |order| {
        let (outcome, attempts) = boot(order);
        assert_eq!(outcome, expected, "order {order:?}");
        most_attempts = most_attempts.max(attempts);
        runs += 1;
    });
    assert_eq!(runs, 40320);
    // Each device is tried at most once per event plus once per bind: no runaway retrying.
    assert!(most_attempts <= 24, "{most_attempts} attempts");
}
