//! Debug checks (`dma.debug=1`): every live mapping of a device is recorded, and every unmap is
//! checked against the map it undoes. Problems are reported with the device's name; they are
//! broken driver or kernel invariants, not input errors.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::direction::Direction;
use crate::stats::{DEBUG_REPORTS, inc};

/// What kind of mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Single,
    ScatterGather,
    Coherent,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    len: u64,
    dir: Direction,
    kind: Kind,
}

/// The recorded mappings of one device.
#[derive(Default)]
pub(crate) struct Tracker {
    live: BTreeMap<u64, Entry>,
    /// Recently unmapped addresses, to tell a double unmap from an unknown address.
    recent: VecDeque<u64>,
}

const RECENT: usize = 64;

fn report(device: &str, what: core::fmt::Arguments<'_>) {
    inc(&DEBUG_REPORTS);
    log::error!(target: "dma-debug", "{device}: {what}");
}

impl Tracker {
    pub(crate) fn mapped(&mut self, device: &str, addr: u64, len: u64, dir: Direction, kind: Kind) {
        if let Some((a, e)) = self
            .live
            .range(..addr.saturating_add(len.max(1)))
            .next_back()
            && a + e.len > addr
        {
            report(
                device,
                format_args!(
                    "new {kind:?} mapping {addr:#x}+{len:#x} overlaps a live one at {a:#x}+{:#x}",
                    e.len
                ),
            );
        }
        self.live.insert(addr, Entry { len, dir, kind });
        self.recent.retain(|&r| r != addr);
    }

    /// Checks an unmap; returns false when it must not proceed (unknown or double).
    pub(crate) fn unmapped(
        &mut self,
        device: &str,
        addr: u64,
        len: u64,
        dir: Direction,
        kind: Kind,
    ) -> bool {
        let Some(e) = self.live.remove(&addr) else {
            if self.recent.contains(&addr) {
                report(device, format_args!("double unmap of {addr:#x}+{len:#x}"));
            } else {
                report(
                    device,
                    format_args!("unmap of unknown address {addr:#x}+{len:#x}"),
                );
            }
            return false;
        };
        if e.len != len {
            report(
                device,
                format_args!(
                    "unmap of {addr:#x} with size {len:#x}, mapped with {:#x}",
                    e.len
                ),
            );
        }
        if e.dir != dir {
            report(
                device,
                format_args!("unmap of {addr:#x} as {dir:?}, mapped as {:?}", e.dir),
            );
        }
        if e.kind != kind {
            report(
                device,
                format_args!("{kind:?} unmap of {addr:#x}, mapped as {:?}", e.kind),
            );
        }
        self.recent.push_back(addr);
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        true
    }

    /// Mappings still alive (reported when the driver unbinds).
    pub(crate) fn leftovers(&self) -> Vec<String> {
        self.live
            .iter()
            .map(|(a, e)| alloc::format!("{:?} {a:#x}+{:#x} {:?}", e.kind, e.len, e.dir))
            .collect()
    }

    pub(crate) fn report_leftovers(&self, device: &str) -> usize {
        let left = self.leftovers();
        if !left.is_empty() {
            report(
                device,
                format_args!(
                    "{} mappings still alive when the driver unbinds: {}",
                    left.len(),
                    left.join(", ")
                ),
            );
        }
        left.len()
    }
}
