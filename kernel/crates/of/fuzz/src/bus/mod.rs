//! The `bus_model` target: the bus model fed by a fuzzed device tree.
//!
//! One input is a blob plus control bytes (see [`crate::choices`]). The run:
//! 1. platform devices from the tree (with `FDT_NOP`s removed as the kernel removes them),
//!    exactly as the kernel walks it ([`firmware`]);
//! 2. devices added and the fake drivers ([`drivers`]) registered in an order the control bytes
//!    choose (default: devices first, drivers in the kernel's order), each probe ending as
//!    planned (bind, fail, decline, defer), PCI host bridges adding a planned set of functions;
//! 3. every device offered a bind, the deferred report read;
//! 4. some devices unbound, reprobed, bound or removed;
//! 5. everything unbound, bound again, then removed.
//!
//! After every bus-model call the invariants hold ([`Model::check`]): no device left probing, a
//! device has its DMA set up exactly while it is bound (so after unbinding everything, every
//! successful `dma_configure` had exactly one `dma_cleanup`), the counters agree with the states,
//! the IOMMUs marked live are those whose driver is bound, parent and child links agree, the
//! call made no more driver attempts than deferred probing allows (a runaway retry loop is a
//! crash, not a hang), and the deferred report has one well-formed line per deferred device.

pub mod drivers;
pub mod firmware;
pub mod state;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use devmodel::{DeviceId, DeviceManager, DeviceState, Driver};
use of::DeviceTree;

use crate::choices::Choices;
use firmware::{Firmware, FirmwareHooks, Found, platform_devices};
use state::{Fate, FunctionPlan, Shared};

/// Most functions a host bridge adds.
const MAX_FUNCTIONS: usize = 4;

/// One step of the set-up, in the order the control bytes choose.
enum Step {
    Found(Found),
    Driver(Arc<dyn Driver>),
}

/// The manager and what the checks compare it with.
struct Model {
    dm: DeviceManager,
    shared: Arc<Mutex<Shared>>,
    /// Upper bound on live devices (platform devices plus every planned function).
    max_devices: u64,
    drivers: u64,
}

/// Runs the whole target on one input; returns what it saw (for the harness's own tests), `None`
/// when the blob does not parse.
pub fn run(input: &[u8]) -> Option<Outcome> {
    let (blob, mut choices) = Choices::split(input);
    let blob = crate::topology::boot_blob(blob);
    let dt = DeviceTree::parse(&blob).ok()?;
    let fw = Arc::new(Firmware::of(&dt));
    let found = platform_devices(&dt);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let planned = plan(
        &found,
        &mut choices,
        &mut shared.lock().expect("shared state"),
    );

    let drivers = drivers::all(&fw, &shared);
    let mut model = Model {
        dm: DeviceManager::new(Box::new(FirmwareHooks::new(
            Arc::new(blob.to_vec()),
            &dt,
            &found,
            shared.clone(),
        ))),
        shared: shared.clone(),
        max_devices: (found.len() + planned) as u64,
        drivers: drivers.len() as u64,
    };
    let mut outcome = Outcome::default();
    let mut found_so_far = 0;
    for step in order(found, drivers, &mut choices) {
        match step {
            Step::Found(Found::Device(info)) => {
                found_so_far += 1;
                model.call(|dm| {
                    let _ = dm.add_device(info);
                });
            }
            Step::Found(Found::Disabled(path)) => {
                found_so_far += 1;
                model.dm.note_disabled_node(&path);
            }
            Step::Driver(d) => {
                outcome.registered.push((d.name(), found_so_far));
                model.call(|dm| dm.register_driver(d).expect("driver names are unique"));
            }
        }
    }
    model.bind_all();
    outcome.bound = model
        .bound()
        .into_iter()
        .filter_map(|id| {
            let driver = model.dm.state(id)?.driver()?;
            Some(format!("{}={driver}", model.dm.info(id)?.name))
        })
        .collect();
    outcome.report = model.check_report();

    for _ in 0..choices.byte() % 16 {
        let live: Vec<DeviceId> = model.dm.devices().collect();
        if live.is_empty() {
            break;
        }
        let id = live[choices.below(live.len())];
        match choices.byte() % 4 {
            0 => model.call(|dm| {
                let _ = dm.unbind(id);
            }),
            1 => model.call(|dm| {
                dm.reprobe(id).expect("live device");
            }),
            2 => model.call(|dm| {
                dm.bind(id).expect("live device");
            }),
            _ => model.call(|dm| dm.remove_device(id).expect("live device")),
        }
    }
    model.check_report();

    model.unbind_all();
    model.bind_all();
    model.check_report();
    model.remove_all();
    Some(outcome)
}

/// What a run saw, for the harness's own tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `device=driver` for every device bound after the first bind-everything.
    pub bound: Vec<String>,
    /// Drivers in registration order, each with the number of walk entries before it.
    pub registered: Vec<(&'static str, usize)>,
    /// The deferred report then.
    pub report: Vec<String>,
}

/// Plans probe outcomes and the functions of every PCI host bridge; returns how many functions.
fn plan(found: &[Found], choices: &mut Choices<'_>, shared: &mut Shared) -> usize {
    let mut functions = 0;
    for f in found {
        let Found::Device(info) = f else { continue };
        shared
            .fates
            .insert(info.name.clone(), Fate::from_byte(choices.byte()));
        if !info.is_compatible("pci-host-ecam-generic") {
            continue;
        }
        // Two functions by default: an edu the driver-managed driver takes (odd device number)
        // and one for the generic PCI driver.
        let count = (2 + usize::from(choices.byte())) % (MAX_FUNCTIONS + 1);
        let list: Vec<FunctionPlan> = (0..count)
            .map(|i| {
                let alias = match choices.byte() % 8 {
                    7 => Some(u16::from(choices.byte()) << 8),
                    6 => Some(u16::from_be_bytes([choices.byte(), choices.byte()])),
                    _ => None,
                };
                FunctionPlan {
                    dev: 1 + (i as u8).wrapping_add(choices.byte()) % 31,
                    func: choices.byte() % 8,
                    device_id: if i % 2 == 0 { drivers::EDU } else { 0x0001 },
                    alias,
                    fate: Fate::from_byte(choices.byte()),
                }
            })
            .collect();
        functions += list.len();
        shared.functions.insert(info.name.clone(), list);
    }
    functions
}

/// Devices in tree order with the drivers after them (the kernel's order), unless control bytes
/// permute the drivers and move them in between.
fn order(found: Vec<Found>, mut drivers: Vec<Arc<dyn Driver>>, c: &mut Choices<'_>) -> Vec<Step> {
    let n = drivers.len();
    for i in 0..n {
        let j = i + c.below(n - i);
        drivers.swap(i, j);
    }
    let mut steps: Vec<Step> = found.into_iter().map(Step::Found).collect();
    let devices = steps.len();
    for d in drivers {
        // 0 = after every device.
        let at = devices - c.below(devices + 1);
        let at = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Found(_)))
            .nth(at)
            .map_or(steps.len(), |(i, _)| i);
        steps.insert(at, Step::Driver(d));
    }
    steps
}

impl Model {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().expect("shared state")
    }

    /// Driver attempts one public call may make: each attempt is an `attach` of a device, and
    /// devices are retried only after a bind, of which there are at most one per device.
    fn attempt_bound(&self) -> u64 {
        let d = self.max_devices + 1;
        self.drivers * (1 + d * (2 * d + 2))
    }

    /// One public bus-model call, bounded, then every invariant.
    fn call(&mut self, f: impl FnOnce(&mut DeviceManager)) {
        let bound = self.attempt_bound();
        self.shared().budget = bound;
        let before = self.dm.counters().attempts;
        f(&mut self.dm);
        let made = self.dm.counters().attempts - before;
        assert!(
            made <= bound,
            "{made} driver attempts in one call, bound {bound}"
        );
        self.check();
    }

    fn bound(&self) -> Vec<DeviceId> {
        self.dm
            .devices()
            .filter(|&id| self.dm.state(id).and_then(DeviceState::driver).is_some())
            .collect()
    }

    /// Offers every device without a driver a bind.
    fn bind_all(&mut self) {
        let ids: Vec<DeviceId> = self.dm.devices().collect();
        for id in ids {
            if self.dm.state(id).is_some_and(|s| s.driver().is_none()) {
                self.call(|dm| {
                    dm.bind(id).expect("live device");
                });
            }
        }
    }

    /// Unbinds every device (children a driver added go with it), then checks that every
    /// successful `dma_configure` so far had exactly one `dma_cleanup`.
    fn unbind_all(&mut self) {
        let mut rounds = 0;
        while let Some(&id) = self.bound().last() {
            rounds += 1;
            assert!(
                rounds <= self.max_devices + 1,
                "unbinding does not converge"
            );
            self.call(|dm| dm.unbind(id).expect("bound device"));
        }
        let s = self.shared();
        assert!(
            s.configured.is_empty(),
            "DMA left set up: {:?}",
            s.configured
        );
        assert_eq!(s.configures, s.cleanups, "configures and cleanups differ");
        assert!(
            s.live_iommus.is_empty(),
            "IOMMUs left live: {:?}",
            s.live_iommus
        );
    }

    /// Removes every device, last added first.
    fn remove_all(&mut self) {
        let ids: Vec<DeviceId> = self.dm.devices().collect();
        for id in ids.into_iter().rev() {
            if self.dm.state(id).is_some() {
                self.call(|dm| dm.remove_device(id).expect("live device"));
            }
        }
        assert_eq!(
            self.dm.devices().count(),
            0,
            "devices left after removing all"
        );
        let s = self.shared();
        assert!(
            s.configured.is_empty(),
            "DMA left set up: {:?}",
            s.configured
        );
        assert_eq!(s.configures, s.cleanups);
    }

    /// The invariants that hold between bus-model calls.
    fn check(&self) {
        let s = self.shared();
        let mut bound_names = BTreeSet::new();
        let mut live_iommus = BTreeSet::new();
        for id in self.dm.devices() {
            let info = self.dm.info(id).expect("live device has info");
            let state = self.dm.state(id).expect("live device has a state");
            assert_ne!(state, &DeviceState::Probing, "{} left probing", info.name);
            let bound = state.driver().is_some();
            assert_eq!(
                s.configured.contains(&info.name),
                bound,
                "{}: DMA set up exactly while bound ({state})",
                info.name
            );
            assert_eq!(
                self.dm.dma_state(id).is_some(),
                bound,
                "{}: dma_state",
                info.name
            );
            if bound {
                bound_names.insert(info.name.clone());
                if state.driver() == Some("iommu") {
                    live_iommus.insert(info.node.clone().expect("platform device"));
                }
            }
            assert_eq!(
                matches!(state, DeviceState::Deferred { .. }),
                self.dm.deferred().any(|d| d == id),
                "{}: deferred list",
                info.name
            );
            for &c in self.dm.children(id) {
                let parent = self.dm.info(c).and_then(|i| i.parent);
                assert_eq!(parent, Some(id), "{}: child's parent", info.name);
            }
            if let Some(p) = info.parent {
                assert!(
                    self.dm.children(p).contains(&id),
                    "{}: not among its parent's children",
                    info.name
                );
            }
        }
        assert_eq!(s.configured, bound_names, "DMA set up for unbound devices");
        assert_eq!(
            s.live_iommus, live_iommus,
            "live IOMMUs without a bound driver"
        );
        let c = self.dm.counters();
        assert_eq!(
            c.binds - c.unbinds,
            bound_names.len() as u64,
            "binds - unbinds"
        );
        assert_eq!(
            c.probes, s.configures,
            "probes = successful dma_configure calls"
        );
        assert_eq!(s.configures - s.cleanups, bound_names.len() as u64);
    }

    /// One line per deferred device, each a single line naming the device and its reason
    /// first, of bounded length; returns the lines.
    fn check_report(&self) -> Vec<String> {
        let report = self.dm.deferred_report();
        let deferred: Vec<DeviceId> = self.dm.deferred().collect();
        let listed: Vec<DeviceId> = report.iter().map(|l| l.device).collect();
        assert_eq!(
            listed, deferred,
            "the report lists exactly the deferred devices"
        );
        // Each link of a chain names one device and says its state.
        let per_link = self
            .dm
            .devices()
            .filter_map(|id| {
                Some(self.dm.info(id)?.name.len() + self.dm.state(id)?.to_string().len())
            })
            .max()
            .unwrap_or(0)
            + 64;
        let links = self.dm.devices().count() + 2;
        let mut out = Vec::with_capacity(report.len());
        for line in &report {
            let info = self.dm.info(line.device).expect("deferred device is live");
            assert_eq!(line.name, info.name);
            let Some(DeviceState::Deferred { reason, .. }) = self.dm.state(line.device) else {
                panic!("{}: in the report but not deferred", info.name);
            };
            let head = format!("deferred: {reason}");
            assert!(
                line.text.starts_with(&head),
                "{}: report line {:?} does not start with its reason",
                info.name,
                line.text
            );
            let text = line.to_string();
            assert_eq!(text, format!("{}: {}", line.name, line.text));
            assert!(
                !text.contains(['\n', '\r']),
                "a report line spans several lines: {text:?}"
            );
            assert!(
                text.len() <= links * per_link,
                "{}: report line of {} bytes",
                info.name,
                text.len()
            );
            out.push(text);
        }
        out
    }
}
