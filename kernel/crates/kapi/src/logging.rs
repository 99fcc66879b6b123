//! Log-line conventions.
//!
//! Every line is `[    0.012345] <subsystem> <device>: <message>` (or `<subsystem>: <message>`
//! when no single device is concerned). The `log` crate's *target* carries the
//! `<subsystem> <device>` part: use [`DevLog`] for device lines and `target: "subsys"` otherwise.

use alloc::format;
use alloc::string::String;

/// Log target for one device, e.g. `smmuv3 9050000.smmuv3` or `pci 0000:00:02.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevLog {
    target: String,
}

impl DevLog {
    /// Lines about `device` from `subsystem` (a driver or bus name).
    pub fn new(subsystem: &str, device: &str) -> Self {
        Self {
            target: format!("{subsystem} {device}"),
        }
    }
    /// The target string to pass to `log`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// `info!` about a device: `dev_info!(devlog, "format", args...)`.
#[macro_export]
macro_rules! dev_info {
    ($d:expr, $($arg:tt)+) => { ::log::info!(target: $d.target(), $($arg)+) };
}
/// `warn!` about a device.
#[macro_export]
macro_rules! dev_warn {
    ($d:expr, $($arg:tt)+) => { ::log::warn!(target: $d.target(), $($arg)+) };
}
/// `error!` about a device.
#[macro_export]
macro_rules! dev_err {
    ($d:expr, $($arg:tt)+) => { ::log::error!(target: $d.target(), $($arg)+) };
}
/// `debug!` about a device.
#[macro_export]
macro_rules! dev_dbg {
    ($d:expr, $($arg:tt)+) => { ::log::debug!(target: $d.target(), $($arg)+) };
}
