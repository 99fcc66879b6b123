//! The end-of-boot report: every device still deferred, why, and what its dependency is doing.
//!
//! One line per device, following the chain of named dependencies:
//!
//! ```text
//! 0000:00:03.0: deferred: waiting for iommu /smmuv3@9050000 (not bound: no driver)
//! 0000:00:04.0: deferred: waiting for iommu /smmuv3@9050000 (deferred: waiting for clock /clk@0 (no such device))
//! a.dev: deferred: waiting for b /b (deferred: waiting for a /a (dependency cycle: a.dev -> b.dev -> a.dev))
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::device::DeviceId;
use crate::driver::DeferReason;
use crate::manager::{DeviceManager, DeviceState, UnboundCause, dev_log};

/// One line of the deferred report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeferredLine {
    /// The deferred device.
    pub device: DeviceId,
    /// Its name.
    pub name: String,
    /// `deferred: <reason> (<state of the dependency>...)`.
    pub text: String,
}

impl fmt::Display for DeferredLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.text)
    }
}

impl DeviceManager {
    /// One line for every device still deferred, in the order the devices were added.
    pub fn deferred_report(&self) -> Vec<DeferredLine> {
        self.records()
            .filter_map(|(id, r)| match &r.state {
                DeviceState::Deferred { reason, .. } => Some(DeferredLine {
                    device: id,
                    name: r.info.name.clone(),
                    text: self.chain_text(id, reason),
                }),
                _ => None,
            })
            .collect()
    }

    /// Logs [`DeviceManager::deferred_report`], target `devmodel <device>`: info level, as the
    /// end-of-boot summary already counts them as a problem when there are any.
    pub fn log_deferred_report(&self) {
        for line in self.deferred_report() {
            dev_log!(info, line.name, "{}", line.text);
        }
    }

    /// `deferred: <reason>`, then the state of each dependency in nested parentheses until one
    /// is not deferred, names no dependency, or closes a cycle.
    fn chain_text(&self, start: DeviceId, reason: &DeferReason) -> String {
        let mut out = format!("deferred: {reason}");
        let mut chain = vec![start];
        let mut open = 0;
        let mut next = reason.dependency();
        while let Some(node) = next.take() {
            out.push_str(" (");
            open += 1;
            let Some(dep) = self.find_by_node(node) else {
                out.push_str(if self.disabled_nodes.iter().any(|p| p == node) {
                    "disabled"
                } else {
                    "no such device"
                });
                break;
            };
            if let Some(pos) = chain.iter().position(|&d| d == dep) {
                out.push_str("dependency cycle: ");
                for &d in &chain[pos..] {
                    out.push_str(&self.name_of(d));
                    out.push_str(" -> ");
                }
                out.push_str(&self.name_of(dep));
                break;
            }
            let Ok(rec) = self.record(dep) else { break };
            match &rec.state {
                DeviceState::Unbound => out.push_str(match rec.unbound {
                    UnboundCause::NoDriver => "not bound: no driver",
                    UnboundCause::Declined => "not bound: declined by every matching driver",
                    UnboundCause::Requested => "not bound: unbound on request",
                }),
                DeviceState::Probing => out.push_str("probing"),
                DeviceState::Bound { driver } => {
                    out.push_str("bound to ");
                    out.push_str(driver);
                }
                DeviceState::Failed { error, .. } => {
                    out.push_str("probe failed: ");
                    out.push_str(error.message());
                }
                DeviceState::Deferred { reason, .. } => {
                    out.push_str("deferred: ");
                    out.push_str(reason.message());
                    chain.push(dep);
                    next = reason.dependency();
                }
            }
        }
        for _ in 0..open {
            out.push(')');
        }
        out
    }

    fn name_of(&self, id: DeviceId) -> String {
        self.record(id)
            .map_or_else(|_| format!("{id:?}"), |r| r.info.name.clone())
    }
}
