//! Interrupt requests: the generic layer between the interrupt controller and drivers.
//!
//! The kernel registers the interrupt controller ([`IrqChip`], the GICv3 driver) once at boot.
//! Drivers call [`request`] with a line resolved from the device tree and get an [`IrqHandle`];
//! dropping the handle removes the handler (and disables the line when it was the last one).
//! Lines may be shared (PCI INTx): every handler on a line runs, each checks its own device.
//!
//! Context rules: [`request`] and dropping an [`IrqHandle`] are thread-context only. Handlers run
//! in interrupt context with IRQs masked; they must not request or free interrupts and must not
//! sleep, but may take [`crate::sync::IrqLock`]s.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::IrqLock;

/// How a line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Rising edge (a pulse): the SMMU's wired interrupts on QEMU.
    Edge,
    /// Level high (held until the device is serviced): PCI INTx, the timers.
    Level,
}

/// One interrupt line: the controller's interrupt ID and its trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqLine {
    /// Interrupt ID as the controller numbers it (GIC INTID: SPI n = 32 + n, PPI n = 16 + n).
    pub intid: u32,
    /// Edge or level.
    pub trigger: Trigger,
}

/// Errors from the IRQ layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// No interrupt controller has been registered.
    NoController,
    /// The controller does not implement this interrupt ID.
    InvalidLine(u32),
    /// The line is already used with a different trigger.
    TriggerConflict(u32),
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IrqError::NoController => f.write_str("no interrupt controller"),
            IrqError::InvalidLine(i) => {
                write!(f, "interrupt {i} does not exist on this controller")
            }
            IrqError::TriggerConflict(i) => {
                write!(f, "interrupt {i} is already in use with another trigger")
            }
        }
    }
}

/// What the generic layer needs from an interrupt controller.
pub trait IrqChip: Send + Sync {
    /// Sets the trigger of a line (and routes it to this CPU).
    fn configure(&self, line: IrqLine) -> Result<(), IrqError>;
    /// Unmasks a line.
    fn enable(&self, intid: u32);
    /// Masks a line.
    fn disable(&self, intid: u32);
    /// Acknowledges the highest-priority pending interrupt, `None` when nothing is pending.
    fn ack(&self) -> Option<u32>;
    /// Signals end of interrupt.
    fn eoi(&self, intid: u32);
}

/// Masked/unmasked state of the local CPU's IRQs, as saved by [`local_save`].
#[derive(Clone, Copy, Debug)]
pub struct IrqState(#[allow(dead_code)] u64);

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[allow(unsafe_code)]
mod cpu {
    use super::IrqState;
    use aarch64_cpu::registers::{DAIF, Readable};

    // The immediate forms (DAIFSet/DAIFClr) change PSTATE.I alone, and only when it has to
    // change: nested locks then cost a DAIF read. The asm blocks are compiler barriers (no
    // `nomem`): memory accesses stay on their side of a mask or unmask. Under QEMU's TCG every unmask also ends the
    // translated block to look for pending interrupts, so skipping redundant ones matters.
    pub fn save() -> IrqState {
        let saved = DAIF.get();
        if saved & DAIF::I::Masked.value == 0 {
            // SAFETY: masks IRQs on this CPU; nothing else changes.
            unsafe { core::arch::asm!("msr daifset, #2", options(nostack)) };
        }
        IrqState(saved)
    }
    pub fn restore(s: IrqState) {
        if s.0 & DAIF::I::Masked.value == 0 {
            enable();
        }
    }
    pub fn enable() {
        // SAFETY: unmasks IRQs on this CPU; nothing else changes.
        unsafe { core::arch::asm!("msr daifclr, #2", options(nostack)) };
    }
    pub fn disable() {
        // SAFETY: masks IRQs on this CPU; nothing else changes.
        unsafe { core::arch::asm!("msr daifset, #2", options(nostack)) };
    }
    pub fn enabled() -> bool {
        !DAIF.is_set(DAIF::I)
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
mod cpu {
    use super::IrqState;
    pub fn save() -> IrqState {
        IrqState(0)
    }
    pub fn restore(_: IrqState) {}
    pub fn enable() {}
    pub fn disable() {}
    pub fn enabled() -> bool {
        true
    }
}

/// Masks IRQs on this CPU and returns the previous state.
pub fn local_save() -> IrqState {
    cpu::save()
}
/// Restores a state saved by [`local_save`].
pub fn local_restore(state: IrqState) {
    cpu::restore(state)
}
/// Runs `f` with IRQs masked on this CPU (restored afterwards). An operation that takes
/// several IRQ-masking locks in a row runs them inside one masked section this way: nested
/// locks find IRQs masked already and leave DAIF alone, and under emulation every DAIF write
/// is costly.
pub fn with_irqs_masked<R>(f: impl FnOnce() -> R) -> R {
    let saved = local_save();
    let r = f();
    local_restore(saved);
    r
}
/// Unmasks IRQs on this CPU.
pub fn local_enable() {
    cpu::enable()
}
/// Masks IRQs on this CPU.
pub fn local_disable() {
    cpu::disable()
}
/// True when IRQs are unmasked on this CPU.
pub fn local_enabled() -> bool {
    cpu::enabled()
}

type Handler = Arc<dyn Fn() + Send + Sync>;

struct Action {
    id: u64,
    name: String,
    handler: Handler,
}

struct Line {
    trigger: Trigger,
    actions: Vec<Action>,
    count: u64,
}

static CHIP: spin::Once<Arc<dyn IrqChip>> = spin::Once::new();
static LINES: IrqLock<BTreeMap<u32, Line>> = IrqLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Handlers installed across all lines (for leak checks: a driver that unbinds, or whose probe
/// fails, must leave this where it found it).
pub fn handlers_installed() -> usize {
    LINES.lock().values().map(|l| l.actions.len()).sum()
}

/// Registers the interrupt controller. Only the first call has an effect.
pub fn set_chip(chip: Arc<dyn IrqChip>) {
    CHIP.call_once(|| chip);
}

fn chip() -> Result<&'static Arc<dyn IrqChip>, IrqError> {
    CHIP.get().ok_or(IrqError::NoController)
}

/// A registered handler; dropping it unregisters the handler.
#[must_use = "dropping the handle frees the interrupt"]
pub struct IrqHandle {
    intid: u32,
    id: u64,
}

impl IrqHandle {
    /// The interrupt ID this handle owns a handler on.
    pub fn intid(&self) -> u32 {
        self.intid
    }
}

impl core::fmt::Debug for IrqHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "IrqHandle({})", self.intid)
    }
}

/// Installs `handler` on `line` and enables the line. Thread context only.
pub fn request(
    line: IrqLine,
    name: &str,
    handler: impl Fn() + Send + Sync + 'static,
) -> Result<IrqHandle, IrqError> {
    let chip = chip()?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let first = {
        let mut lines = LINES.lock();
        if let Some(existing) = lines.get(&line.intid)
            && existing.trigger != line.trigger
        {
            return Err(IrqError::TriggerConflict(line.intid));
        }
        let entry = lines.entry(line.intid).or_insert_with(|| Line {
            trigger: line.trigger,
            actions: Vec::new(),
            count: 0,
        });
        entry.actions.push(Action {
            id,
            name: String::from(name),
            handler: Arc::new(handler),
        });
        entry.actions.len() == 1
    };
    if first {
        if let Err(e) = chip.configure(line) {
            LINES.lock().remove(&line.intid);
            return Err(e);
        }
        chip.enable(line.intid);
    }
    Ok(IrqHandle {
        intid: line.intid,
        id,
    })
}

impl Drop for IrqHandle {
    fn drop(&mut self) {
        let now_empty = {
            let mut lines = LINES.lock();
            let Some(line) = lines.get_mut(&self.intid) else {
                return;
            };
            line.actions.retain(|a| a.id != self.id);
            if line.actions.is_empty() {
                lines.remove(&self.intid);
                true
            } else {
                false
            }
        };
        if now_empty && let Ok(chip) = chip() {
            chip.disable(self.intid);
        }
    }
}

/// Called by the kernel's IRQ exception vector: acknowledges and dispatches every pending
/// interrupt. Runs in interrupt context.
pub fn handle_pending() {
    let Ok(chip) = chip() else { return };
    while let Some(intid) = chip.ack() {
        let handlers: Option<Vec<Handler>> = {
            let mut lines = LINES.lock();
            lines.get_mut(&intid).map(|l| {
                l.count += 1;
                l.actions.iter().map(|a| a.handler.clone()).collect()
            })
        };
        match handlers {
            Some(hs) => hs.iter().for_each(|h| h()),
            None => {
                SPURIOUS.fetch_add(1, Ordering::Relaxed);
                chip.disable(intid);
            }
        }
        chip.eoi(intid);
    }
}

/// How many times `intid` has been dispatched.
pub fn count(intid: u32) -> u64 {
    LINES.lock().get(&intid).map_or(0, |l| l.count)
}

/// Interrupts that arrived with no handler installed (they are disabled on arrival).
pub fn spurious_count() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

/// Names of the handlers installed on `intid` (diagnostics).
pub fn handler_names(intid: u32) -> Vec<String> {
    LINES.lock().get(&intid).map_or_else(Vec::new, |l| {
        l.actions.iter().map(|a| a.name.clone()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32;

    struct FakeChip {
        pending: IrqLock<Vec<u32>>,
        enabled: IrqLock<Vec<u32>>,
        eois: AtomicU32,
    }
    impl IrqChip for FakeChip {
        fn configure(&self, line: IrqLine) -> Result<(), IrqError> {
            if line.intid >= 1020 {
                Err(IrqError::InvalidLine(line.intid))
            } else {
                Ok(())
            }
        }
        fn enable(&self, intid: u32) {
            self.enabled.lock().push(intid);
        }
        fn disable(&self, intid: u32) {
            self.enabled.lock().retain(|&i| i != intid);
        }
        fn ack(&self) -> Option<u32> {
            self.pending.lock().pop()
        }
        fn eoi(&self, _: u32) {
            self.eois.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn shared_lines_run_every_handler_and_drop_disables() {
        let chip = Arc::new(FakeChip {
            pending: IrqLock::new(Vec::new()),
            enabled: IrqLock::new(Vec::new()),
            eois: AtomicU32::new(0),
        });
        set_chip(chip.clone());
        let hits = Arc::new(AtomicU32::new(0));
        let (h1, h2) = (hits.clone(), hits.clone());
        let line = IrqLine {
            intid: 40,
            trigger: Trigger::Level,
        };
        let a = request(line, "a", move || {
            h1.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        let b = request(line, "b", move || {
            h2.fetch_add(10, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(
            request(
                IrqLine {
                    intid: 40,
                    trigger: Trigger::Edge
                },
                "c",
                || {}
            )
            .unwrap_err(),
            IrqError::TriggerConflict(40)
        );
        assert_eq!(handler_names(40), ["a", "b"]);
        chip.pending.lock().push(40);
        handle_pending();
        assert_eq!(hits.load(Ordering::Relaxed), 11);
        assert_eq!(count(40), 1);
        drop(a);
        assert!(chip.enabled.lock().contains(&40));
        drop(b);
        assert!(!chip.enabled.lock().contains(&40));
        // A stray interrupt with no handler is counted and masked, not dispatched.
        chip.pending.lock().push(41);
        handle_pending();
        assert_eq!(spurious_count(), 1);
        assert_eq!(chip.eois.load(Ordering::Relaxed), 2);
    }
}
