//! The bind engine: devices and drivers meet here.
//!
//! # Binding
//! A device is offered to every registered driver whose match table matches it, in registration
//! order. Each attempt runs, as in Linux's `really_probe`:
//!
//! 1. `dma_configure(dev, driver_managed_dma)` ([`DmaHooks`]); if it fails or defers, probe is
//!    not called and there is nothing to clean up;
//! 2. `probe`; on success the driver data is stored and the device is bound;
//! 3. on any probe error, `dma_cleanup(dev)`.
//!
//! Unbinding runs: remove the children the driver added, `remove`, drop the driver data,
//! `dma_cleanup`. So `dma_cleanup` runs exactly once for every successful `dma_configure`.
//!
//! Outcomes of one attempt: [`ProbeError::NoMatch`] and [`ProbeError::Failed`] move on to the next
//! matching driver (a failure is logged); [`ProbeError::Defer`] stops the search and parks the
//! device.
//!
//! # Deferred probe
//! Deferred devices wait on a pending list. Every successful bind moves the whole pending list to
//! the active list, and the active list is worked off before the public call that caused the bind
//! returns, so retries repeat until a pass binds nothing. A device that defers after some bind
//! happened during its own attempt (a child it added was bound) is moved to the active list at
//! once: the trigger it missed is not lost. Retries only ever follow a bind, so a dependency that
//! never appears leaves the device deferred and the call returns.
//!
//! # Context
//! Single CPU, thread context: every entry point takes `&mut self` and runs hooks and probes
//! synchronously. A probe must not reach the manager other than through its [`ProbeCtx`] (the
//! kernel's lock around the manager is held while it runs).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

use crate::device::{DeviceId, DeviceInfo};
use crate::driver::{DeferReason, Driver, DriverData, DriverError, ProbeError, driver_match};

/// Logs a line with target `devmodel <device name>`.
macro_rules! dev_log {
    ($lvl:ident, $name:expr, $($arg:tt)+) => {
        ::log::$lvl!(target: &::alloc::format!("devmodel {}", $name), $($arg)+)
    };
}
pub(crate) use dev_log;

/// The step between match and probe, as the log names it.
const DMA_SETUP: &str = "DMA setup";

/// Per-device state `dma_configure` leaves for the driver and for `dma_cleanup`; the kernel puts
/// the device's DMA ops here. Drivers read it with [`ProbeCtx::dma`], the kernel with
/// [`DeviceManager::dma_state`].
pub type DmaState = Arc<dyn Any + Send + Sync>;

/// The DMA step of binding, implemented by the kernel (which knows about IOMMUs; this crate does
/// not).
pub trait DmaHooks: Send {
    /// Called between match and probe. Sets up the device's DMA for `dev` as `driver_managed_dma`
    /// asks (a driver-managed device gets no kernel DMA domain) and returns the per-device state
    /// to keep (or `None`). Returning [`ProbeError::Defer`] ("waiting for iommu /smmuv3@9050000",
    /// naming the IOMMU's node) parks the device until the next bind; any error means probe is
    /// not called and `dma_cleanup` is not either.
    ///
    /// `ancestors` are the device's parents, nearest first. A PCI function has no DT node of its
    /// own: its DMA description (`iommu-map`, `dma-ranges`) is on the host bridge's node, found
    /// here.
    fn dma_configure(
        &mut self,
        dev: &DeviceInfo,
        ancestors: &[Arc<DeviceInfo>],
        driver_managed_dma: bool,
    ) -> Result<Option<DmaState>, ProbeError>;

    /// Undoes a successful `dma_configure`: after a failed or deferred probe, and on unbind after
    /// the driver data is dropped. `state` is what `dma_configure` returned.
    fn dma_cleanup(&mut self, dev: &DeviceInfo, state: Option<DmaState>);
}

/// Hooks for a system without DMA setup: configure always succeeds and leaves nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDmaHooks;

impl DmaHooks for NoDmaHooks {
    fn dma_configure(
        &mut self,
        _: &DeviceInfo,
        _: &[Arc<DeviceInfo>],
        _: bool,
    ) -> Result<Option<DmaState>, ProbeError> {
        Ok(None)
    }
    fn dma_cleanup(&mut self, _: &DeviceInfo, _: Option<DmaState>) {}
}

/// Where a device stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// No driver: none matched, every matching one declined ([`ProbeError::NoMatch`]), or it was
    /// unbound on request.
    Unbound,
    /// A driver is being tried right now (only seen from inside a probe).
    Probing,
    /// Bound to `driver`.
    Bound {
        /// The driver's name.
        driver: &'static str,
    },
    /// Waiting for something; retried after the next bind.
    Deferred {
        /// The driver (or its `dma_configure`) that deferred.
        driver: &'static str,
        /// What it waits for.
        reason: DeferReason,
    },
    /// Every matching driver declined and at least one failed; this is the first failure.
    Failed {
        /// The driver that failed.
        driver: &'static str,
        /// Its error.
        error: DriverError,
    },
}

impl DeviceState {
    /// The bound driver's name, if bound.
    pub fn driver(&self) -> Option<&'static str> {
        match self {
            DeviceState::Bound { driver } => Some(driver),
            _ => None,
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceState::Unbound => f.write_str("unbound"),
            DeviceState::Probing => f.write_str("probing"),
            DeviceState::Bound { driver } => write!(f, "bound to {driver}"),
            DeviceState::Deferred { reason, .. } => write!(f, "deferred: {reason}"),
            DeviceState::Failed { driver, error } => {
                write!(f, "probe with {driver} failed: {error}")
            }
        }
    }
}

/// Event counts since the manager was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Driver attempts (each one calls `dma_configure`).
    pub attempts: u64,
    /// `probe` calls (attempts whose `dma_configure` succeeded).
    pub probes: u64,
    /// Successful binds.
    pub binds: u64,
    /// Attempts that deferred (in `dma_configure` or in probe).
    pub defers: u64,
    /// Attempts that failed (in `dma_configure` or in probe).
    pub failures: u64,
    /// Attempts a driver declined with [`ProbeError::NoMatch`].
    pub rejections: u64,
    /// Unbinds.
    pub unbinds: u64,
    /// Deferred devices taken off the active list and tried again.
    pub retries: u64,
}

/// Misuse of the manager's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// No device with this id (never added, or removed).
    NoSuchDevice(DeviceId),
    /// A device with this name exists already (its id).
    DuplicateName(DeviceId),
    /// A driver with this name is registered already.
    DuplicateDriver(&'static str),
    /// The device has no driver.
    NotBound(DeviceId),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::NoSuchDevice(id) => write!(f, "no device {id:?}"),
            ModelError::DuplicateName(id) => write!(f, "device name already used by {id:?}"),
            ModelError::DuplicateDriver(n) => write!(f, "driver {n} already registered"),
            ModelError::NotBound(id) => write!(f, "device {id:?} has no driver"),
        }
    }
}

/// Why an unbound device has no driver (for the deferred report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnboundCause {
    /// No registered driver matched it when it was last tried.
    NoDriver,
    /// Every matching driver returned [`ProbeError::NoMatch`].
    Declined,
    /// Unbound on request.
    Requested,
}

struct Binding {
    driver: Arc<dyn Driver>,
    data: DriverData,
}

pub(crate) struct Record {
    pub(crate) info: Arc<DeviceInfo>,
    pub(crate) state: DeviceState,
    pub(crate) unbound: UnboundCause,
    binding: Option<Binding>,
    dma: Option<DmaState>,
    children: Vec<DeviceId>,
    /// Added by its parent's driver ([`ProbeCtx::add_child`]): removed when that driver unbinds.
    added_by_driver: bool,
    /// Deferrals since the last bind (a bind after a deferral is logged at info).
    deferrals: u32,
    /// Only this driver may bind the device (Linux's `driver_override`).
    driver_override: Option<&'static str>,
}

/// One attempt's result.
enum Attempt {
    Bound,
    Declined(ProbeError),
}

/// Devices, drivers and the deferred lists.
pub struct DeviceManager {
    hooks: Box<dyn DmaHooks>,
    drivers: Vec<Arc<dyn Driver>>,
    pub(crate) devices: Vec<Option<Record>>,
    /// Deferred, waiting for the next bind.
    pending: Vec<DeviceId>,
    /// Deferred, to be retried before the current call returns.
    active: VecDeque<DeviceId>,
    pub(crate) disabled_nodes: Vec<String>,
    counters: Counters,
}

impl fmt::Debug for DeviceManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceManager")
            .field(
                "drivers",
                &self.drivers.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .field("devices", &self.devices.iter().flatten().count())
            .field("pending", &self.pending)
            .field("counters", &self.counters)
            .finish()
    }
}

impl DeviceManager {
    /// An empty manager running `hooks` around every probe.
    pub fn new(hooks: Box<dyn DmaHooks>) -> Self {
        Self {
            hooks,
            drivers: Vec::new(),
            devices: Vec::new(),
            pending: Vec::new(),
            active: VecDeque::new(),
            disabled_nodes: Vec::new(),
            counters: Counters::default(),
        }
    }

    // ---- registration -------------------------------------------------------------------------

    /// Registers a driver and offers it every device without a driver that it matches (like
    /// Linux's `driver_register`). Such a device is tried again with all its matching drivers in
    /// registration order, exactly as if it had been added now; so as long as at most one driver
    /// accepts each device, the end result does not depend on what was registered first.
    pub fn register_driver(&mut self, driver: Arc<dyn Driver>) -> Result<(), ModelError> {
        if self.drivers.iter().any(|d| d.name() == driver.name()) {
            return Err(ModelError::DuplicateDriver(driver.name()));
        }
        let offer: Vec<DeviceId> = self
            .records()
            .filter(|(_, r)| !matches!(r.state, DeviceState::Bound { .. }))
            .filter(|(_, r)| driver_match(driver.as_ref(), &r.info).is_some())
            .map(|(id, _)| id)
            .collect();
        self.drivers.push(driver);
        for id in offer {
            self.attach(id);
        }
        self.run_deferred();
        Ok(())
    }

    /// Adds a device and tries to bind it at once (like Linux's `device_add`). `info.parent`,
    /// if set, must be a live device.
    pub fn add_device(&mut self, info: DeviceInfo) -> Result<DeviceId, ModelError> {
        let id = self.insert(info, false)?;
        self.attach(id);
        self.run_deferred();
        Ok(id)
    }

    /// Removes a device: its children first (last added first), then unbinds it.
    pub fn remove_device(&mut self, id: DeviceId) -> Result<(), ModelError> {
        self.record(id)?;
        self.remove_inner(id);
        Ok(())
    }

    /// Records that the DT node at `path` exists but has `status = "disabled"` (no device is made
    /// for it), so the deferred report can say so.
    pub fn note_disabled_node(&mut self, path: &str) {
        if !self.disabled_nodes.iter().any(|p| p == path) {
            self.disabled_nodes.push(path.to_string());
        }
    }

    // ---- bind / unbind ------------------------------------------------------------------------

    /// Restricts which driver may bind `id` (`None` lifts the restriction), like Linux's
    /// `driver_override`. Takes effect at the next bind attempt; a bound device stays bound.
    pub fn set_driver_override(
        &mut self,
        id: DeviceId,
        driver: Option<&'static str>,
    ) -> Result<(), ModelError> {
        self.record_mut(id)
            .ok_or(ModelError::NoSuchDevice(id))?
            .driver_override = driver;
        Ok(())
    }

    /// Tries to bind a device that has no driver (now, whatever its state); returns its state.
    /// A bound device is left alone.
    pub fn bind(&mut self, id: DeviceId) -> Result<DeviceState, ModelError> {
        self.record(id)?;
        self.attach(id);
        self.run_deferred();
        Ok(self.record(id)?.state.clone())
    }

    /// Unbinds the device's driver: removes the children that driver added, calls `remove`,
    /// drops the driver data, runs `dma_cleanup`. The device stays, unbound (it is not offered to
    /// drivers again until [`DeviceManager::bind`] or a new driver registration).
    pub fn unbind(&mut self, id: DeviceId) -> Result<(), ModelError> {
        if self.record(id)?.binding.is_none() {
            return Err(ModelError::NotBound(id));
        }
        self.unbind_inner(id);
        Ok(())
    }

    /// Unbinds (if bound) and binds again; returns the new state.
    pub fn reprobe(&mut self, id: DeviceId) -> Result<DeviceState, ModelError> {
        if self.record(id)?.binding.is_some() {
            self.unbind_inner(id);
        }
        self.bind(id)
    }

    // ---- queries ------------------------------------------------------------------------------

    /// Ids of all live devices, in the order they were added.
    pub fn devices(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.records().map(|(id, _)| id)
    }

    /// A device's description.
    pub fn info(&self, id: DeviceId) -> Option<&DeviceInfo> {
        Some(&self.record(id).ok()?.info)
    }

    /// A device's description as a shared handle (to keep past the manager's borrow).
    pub fn info_arc(&self, id: DeviceId) -> Option<Arc<DeviceInfo>> {
        Some(self.record(id).ok()?.info.clone())
    }

    /// A device's state.
    pub fn state(&self, id: DeviceId) -> Option<&DeviceState> {
        Some(&self.record(id).ok()?.state)
    }

    /// The device named `name` (`0000:00:02.0`).
    pub fn find_by_name(&self, name: &str) -> Option<DeviceId> {
        self.records()
            .find(|(_, r)| r.info.name == name)
            .map(|(id, _)| id)
    }

    /// The device described by DT node `path`.
    pub fn find_by_node(&self, path: &str) -> Option<DeviceId> {
        self.records()
            .find(|(_, r)| r.info.node.as_deref() == Some(path))
            .map(|(id, _)| id)
    }

    /// A device's children, in the order they were added.
    pub fn children(&self, id: DeviceId) -> &[DeviceId] {
        self.record(id).map_or(&[], |r| &r.children)
    }

    /// The bound driver's data as a `T`; `None` when unbound or of another type.
    pub fn driver_data<T: Any>(&self, id: DeviceId) -> Option<&T> {
        self.record(id)
            .ok()?
            .binding
            .as_ref()?
            .data
            .downcast_ref::<T>()
    }

    /// The bound driver's data as a mutable `T`.
    pub fn driver_data_mut<T: Any>(&mut self, id: DeviceId) -> Option<&mut T> {
        self.record_mut(id)?
            .binding
            .as_mut()?
            .data
            .downcast_mut::<T>()
    }

    /// What `dma_configure` left for a bound device.
    pub fn dma_state(&self, id: DeviceId) -> Option<&DmaState> {
        self.record(id).ok()?.dma.as_ref()
    }

    /// Devices currently deferred, in the order they were added.
    pub fn deferred(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.records()
            .filter(|(_, r)| matches!(r.state, DeviceState::Deferred { .. }))
            .map(|(id, _)| id)
    }

    /// Event counts.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Names of the registered drivers, in registration order.
    pub fn drivers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.drivers.iter().map(|d| d.name())
    }

    // ---- internals ----------------------------------------------------------------------------

    pub(crate) fn records(&self) -> impl Iterator<Item = (DeviceId, &Record)> + '_ {
        self.devices
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((DeviceId(i as u32), r.as_ref()?)))
    }

    pub(crate) fn record(&self, id: DeviceId) -> Result<&Record, ModelError> {
        self.devices
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(ModelError::NoSuchDevice(id))
    }

    fn record_mut(&mut self, id: DeviceId) -> Option<&mut Record> {
        self.devices.get_mut(id.0 as usize)?.as_mut()
    }

    /// Adds the record. A child its parent's driver adds again (a retried probe) gets the
    /// existing device back.
    fn insert(&mut self, info: DeviceInfo, by_driver: bool) -> Result<DeviceId, ModelError> {
        if let Some(existing) = self.find_by_name(&info.name) {
            let same_parent = self.record(existing)?.info.parent == info.parent;
            return if by_driver && same_parent {
                Ok(existing)
            } else {
                Err(ModelError::DuplicateName(existing))
            };
        }
        if let Some(parent) = info.parent {
            self.record(parent)?;
        }
        let id = DeviceId(
            u32::try_from(self.devices.len()).expect("devmodel: more than 2^32 devices added"),
        );
        let parent = info.parent;
        dev_log!(trace, info.name, "added");
        self.devices.push(Some(Record {
            info: Arc::new(info),
            state: DeviceState::Unbound,
            unbound: UnboundCause::NoDriver,
            binding: None,
            dma: None,
            children: Vec::new(),
            added_by_driver: by_driver,
            deferrals: 0,
            driver_override: None,
        }));
        if let Some(p) = parent.and_then(|p| self.record_mut(p)) {
            p.children.push(id);
        }
        Ok(id)
    }

    /// The device's parents, nearest first.
    fn ancestors(&self, id: DeviceId) -> Vec<Arc<DeviceInfo>> {
        let mut out: Vec<Arc<DeviceInfo>> = Vec::new();
        let mut next = self.record(id).ok().and_then(|r| r.info.parent);
        while let Some(p) = next {
            let Ok(rec) = self.record(p) else { break };
            out.push(rec.info.clone());
            next = rec.info.parent;
        }
        out
    }

    /// Takes a device off both deferred lists.
    fn unqueue(&mut self, id: DeviceId) {
        self.pending.retain(|&d| d != id);
        self.active.retain(|&d| d != id);
    }

    /// Moves every pending device to the active list (Linux's `driver_deferred_probe_trigger`).
    fn trigger(&mut self) {
        self.active.extend(self.pending.drain(..));
    }

    /// Works off the active list; a bind on the way refills it. Called last by every public entry
    /// point; never from inside a probe (the nested calls only queue).
    fn run_deferred(&mut self) {
        while let Some(id) = self.active.pop_front() {
            self.counters.retries += 1;
            self.attach(id);
        }
    }

    /// Offers a device without a driver to all its matching drivers (Linux's `__device_attach`).
    fn attach(&mut self, id: DeviceId) {
        let Ok(rec) = self.record(id) else { return };
        if matches!(rec.state, DeviceState::Bound { .. } | DeviceState::Probing) {
            return;
        }
        let info = rec.info.clone();
        let only = rec.driver_override;
        let candidates: Vec<(Arc<dyn Driver>, usize)> = self
            .drivers
            .iter()
            .filter(|d| only.is_none_or(|o| o == d.name()))
            .filter_map(|d| Some((d.clone(), driver_match(d.as_ref(), &info)?)))
            .collect();
        self.unqueue(id);
        let binds_at_start = self.counters.binds;
        self.set_state(id, DeviceState::Probing);

        let mut failed = None;
        let mut deferred = None;
        for (driver, matched) in candidates.iter() {
            match self.really_probe(id, &info, driver, *matched) {
                Attempt::Bound => return,
                Attempt::Declined(ProbeError::NoMatch) => {}
                Attempt::Declined(ProbeError::Failed(e)) => {
                    failed.get_or_insert((driver.name(), e));
                }
                Attempt::Declined(ProbeError::Defer(r)) => {
                    deferred = Some((driver.name(), r));
                    break;
                }
            }
        }

        if let Some((driver, reason)) = deferred {
            if let Some(r) = self.record_mut(id) {
                r.deferrals += 1;
            }
            self.set_state(id, DeviceState::Deferred { driver, reason });
            self.pending.push(id);
            // A bind during this attempt (a child the probe added) triggered before the device
            // was on the pending list: trigger again so the device is not stranded.
            if self.counters.binds != binds_at_start {
                self.trigger();
            }
        } else if let Some((driver, error)) = failed {
            self.set_state(id, DeviceState::Failed { driver, error });
        } else {
            let why = if candidates.is_empty() {
                UnboundCause::NoDriver
            } else {
                UnboundCause::Declined
            };
            if let Some(r) = self.record_mut(id) {
                r.unbound = why;
            }
            self.set_state(id, DeviceState::Unbound);
        }
    }

    fn set_state(&mut self, id: DeviceId, state: DeviceState) {
        if let Some(r) = self.record_mut(id) {
            r.state = state;
        }
    }

    /// One driver's attempt: `dma_configure`, probe, `dma_cleanup` if probe declined.
    fn really_probe(
        &mut self,
        id: DeviceId,
        info: &Arc<DeviceInfo>,
        driver: &Arc<dyn Driver>,
        matched: usize,
    ) -> Attempt {
        let name = driver.name();
        let managed = driver.driver_managed_dma();
        self.counters.attempts += 1;

        let ancestors = self.ancestors(id);
        let dma = match self.hooks.dma_configure(info, &ancestors, managed) {
            Ok(dma) => dma,
            Err(e) => {
                self.count_decline(info, name, &e, DMA_SETUP);
                return Attempt::Declined(e);
            }
        };
        if let Some(r) = self.record_mut(id) {
            r.dma = dma.clone();
        }

        self.counters.probes += 1;
        let result = {
            let mut ctx = ProbeCtx {
                manager: self,
                id,
                info: info.clone(),
                driver: name,
                managed,
                matched,
                dma,
            };
            driver.probe(&mut ctx)
        };

        match result {
            Ok(data) => {
                // Nothing reachable from a probe removes devices, so the record is still there.
                let r = self
                    .record_mut(id)
                    .expect("devmodel: a device vanished during its own probe");
                let after_deferral = r.deferrals > 0;
                r.deferrals = 0;
                r.binding = Some(Binding {
                    driver: driver.clone(),
                    data,
                });
                r.state = DeviceState::Bound { driver: name };
                self.counters.binds += 1;
                if after_deferral {
                    dev_log!(info, info.name, "bound to {name} after deferral");
                } else {
                    dev_log!(debug, info.name, "bound to {name}");
                }
                self.trigger();
                Attempt::Bound
            }
            Err(e) => {
                let dma = self.record_mut(id).and_then(|r| r.dma.take());
                self.hooks.dma_cleanup(info, dma);
                self.count_decline(info, name, &e, "probe");
                Attempt::Declined(e)
            }
        }
    }

    fn count_decline(&mut self, info: &DeviceInfo, driver: &str, e: &ProbeError, stage: &str) {
        match e {
            ProbeError::NoMatch => {
                self.counters.rejections += 1;
                dev_log!(debug, info.name, "{driver} declines the device");
            }
            ProbeError::Defer(r) => {
                self.counters.defers += 1;
                // Worded apart from the end-of-boot report, which says `deferred: ...` once.
                dev_log!(info, info.name, "probe deferred, will retry: {r}");
            }
            ProbeError::Failed(err) => {
                self.counters.failures += 1;
                // A DMA set-up that fails leaves the device blocked, usually over a firmware
                // description that cannot be honoured: an error. A driver's own probe failing
                // is the driver's business: a warning, as Linux prints it.
                if stage == DMA_SETUP {
                    dev_log!(error, info.name, "{stage} with {driver} failed: {err}");
                } else {
                    dev_log!(warn, info.name, "{stage} with {driver} failed: {err}");
                }
            }
        }
    }

    fn unbind_inner(&mut self, id: DeviceId) {
        let Ok(rec) = self.record(id) else { return };
        let owned: Vec<DeviceId> = rec
            .children
            .iter()
            .copied()
            .filter(|&c| self.record(c).is_ok_and(|r| r.added_by_driver))
            .collect();
        for child in owned.into_iter().rev() {
            self.remove_inner(child);
        }
        let Some(rec) = self.record_mut(id) else {
            return;
        };
        let Some(Binding { driver, mut data }) = rec.binding.take() else {
            return;
        };
        let dma = rec.dma.take();
        let info = rec.info.clone();
        driver.remove(&info, &mut data);
        drop(data);
        self.hooks.dma_cleanup(&info, dma);
        if let Some(r) = self.record_mut(id) {
            r.state = DeviceState::Unbound;
            r.unbound = UnboundCause::Requested;
        }
        self.counters.unbinds += 1;
        dev_log!(debug, info.name, "unbound from {}", driver.name());
    }

    fn remove_inner(&mut self, id: DeviceId) {
        let Ok(rec) = self.record(id) else { return };
        let children = rec.children.clone();
        for child in children.into_iter().rev() {
            self.remove_inner(child);
        }
        self.unbind_inner(id);
        self.unqueue(id);
        let Some(rec) = self.devices.get_mut(id.0 as usize).and_then(Option::take) else {
            return;
        };
        if let Some(p) = rec.info.parent.and_then(|p| self.record_mut(p)) {
            p.children.retain(|&c| c != id);
        }
        dev_log!(debug, rec.info.name, "removed");
    }
}

/// What a probe gets: the device, the DMA state `dma_configure` left, and a way to add children.
pub struct ProbeCtx<'a> {
    manager: &'a mut DeviceManager,
    id: DeviceId,
    info: Arc<DeviceInfo>,
    driver: &'static str,
    managed: bool,
    matched: usize,
    dma: Option<DmaState>,
}

impl fmt::Debug for ProbeCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeCtx")
            .field("device", &self.info.name)
            .field("driver", &self.driver)
            .field("matched", &self.matched)
            .finish()
    }
}

impl ProbeCtx<'_> {
    /// The device's id.
    pub fn id(&self) -> DeviceId {
        self.id
    }

    /// The device.
    pub fn device(&self) -> &DeviceInfo {
        &self.info
    }

    /// The device as a shared handle.
    pub fn device_arc(&self) -> Arc<DeviceInfo> {
        self.info.clone()
    }

    /// Index of the match-table entry that matched.
    pub fn matched(&self) -> usize {
        self.matched
    }

    /// The probing driver's `driver_managed_dma()`.
    pub fn driver_managed_dma(&self) -> bool {
        self.managed
    }

    /// What `dma_configure` left for this device.
    pub fn dma_state(&self) -> Option<&DmaState> {
        self.dma.as_ref()
    }

    /// The DMA state as a `T` (the kernel's per-device DMA ops), shared.
    pub fn dma<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.dma.clone()?.downcast::<T>().ok()
    }

    /// Adds a child device (parent = this device) and binds it at once, as `device_add` in a
    /// Linux probe does; a bind here also triggers deferred devices. The child belongs to this
    /// driver: it is removed when this driver unbinds. If this probe then fails or defers, the
    /// child stays, and a retried probe adding a child of the same name gets it back (offered to
    /// drivers again if it has none) instead of an error.
    pub fn add_child(&mut self, mut info: DeviceInfo) -> Result<DeviceId, ModelError> {
        info.parent = Some(self.id);
        let child = self.manager.insert(info, true)?;
        self.manager.attach(child);
        Ok(child)
    }

    /// Another device's state.
    pub fn state_of(&self, id: DeviceId) -> Option<&DeviceState> {
        self.manager.state(id)
    }

    /// Another device's description.
    pub fn info_of(&self, id: DeviceId) -> Option<&DeviceInfo> {
        self.manager.info(id)
    }

    /// The device named `name`.
    pub fn find_by_name(&self, name: &str) -> Option<DeviceId> {
        self.manager.find_by_name(name)
    }

    /// The device described by DT node `path`.
    pub fn find_by_node(&self, path: &str) -> Option<DeviceId> {
        self.manager.find_by_node(path)
    }

    /// This device's children so far.
    pub fn children(&self) -> &[DeviceId] {
        self.manager.children(self.id)
    }
}
