//! Direct DMA (no IOMMU, or an identity domain): the device sees the CPU physical address
//! shifted by its bus's `dma-ranges` windows.

use alloc::vec::Vec;

/// One `dma-ranges` window after translation to CPU addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaWindow {
    /// First bus address the device emits.
    pub bus: u64,
    /// CPU physical address it reaches.
    pub cpu: u64,
    /// Size in bytes.
    pub size: u64,
}

/// How a device's bus addresses relate to CPU physical addresses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BusMap {
    /// Windows; empty means 1:1 with no bus limit (no `dma-ranges` anywhere above the device).
    pub windows: Vec<DmaWindow>,
}

impl BusMap {
    /// 1:1, unlimited.
    pub fn identity() -> Self {
        Self::default()
    }

    /// Highest bus address any window covers (inclusive): the bus DMA limit.
    pub fn bus_limit(&self) -> u64 {
        if self.windows.is_empty() {
            return u64::MAX;
        }
        self.windows
            .iter()
            .map(|w| w.bus.saturating_add(w.size.saturating_sub(1)))
            .max()
            .unwrap_or(0)
    }

    /// Bus address of `[pa, pa + len)`, if one window holds all of it.
    pub fn to_bus(&self, pa: u64, len: u64) -> Option<u64> {
        let last = pa.checked_add(len.max(1) - 1)?;
        if self.windows.is_empty() {
            return Some(pa);
        }
        self.windows
            .iter()
            .find(|w| pa >= w.cpu && last - w.cpu < w.size)
            .map(|w| pa - w.cpu + w.bus)
    }

    /// Bus address of the buffer if the device can reach all of it: inside a window and with its
    /// last byte at or below `mask`.
    pub fn reachable(&self, pa: u64, len: u64, mask: u64) -> Option<u64> {
        let bus = self.to_bus(pa, len)?;
        (bus.checked_add(len.max(1) - 1)? <= mask).then_some(bus)
    }

    /// CPU ranges a device with `mask` can reach, lowest first (for placing a bounce pool).
    pub fn reachable_cpu_ranges(&self, mask: u64) -> Vec<(u64, u64)> {
        if self.windows.is_empty() {
            return alloc::vec![(0, mask)];
        }
        let mut v: Vec<(u64, u64)> = self
            .windows
            .iter()
            .filter(|w| w.bus <= mask)
            .map(|w| {
                let last_bus = w.bus.saturating_add(w.size - 1).min(mask);
                (w.cpu, w.cpu + (last_bus - w.bus))
            })
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_windows() -> BusMap {
        // bus 0 -> RAM at 0x4000_0000 (1 GiB); bus 0x8000_0000 -> 0x1_0000_0000 (256 MiB).
        BusMap {
            windows: alloc::vec![
                DmaWindow {
                    bus: 0,
                    cpu: 0x4000_0000,
                    size: 0x4000_0000
                },
                DmaWindow {
                    bus: 0x8000_0000,
                    cpu: 0x1_0000_0000,
                    size: 0x1000_0000
                },
            ],
        }
    }

    #[test]
    fn identity_maps_everything_one_to_one() {
        let m = BusMap::identity();
        assert_eq!(m.to_bus(0x4000_1000, 0x1000), Some(0x4000_1000));
        assert_eq!(m.bus_limit(), u64::MAX);
        assert_eq!(
            m.reachable(0x4000_1000, 0x1000, (1 << 28) - 1),
            None,
            "edu's 28-bit mask cannot reach RAM"
        );
        assert_eq!(
            m.reachable(0x4000_1000, 0x1000, u32::MAX.into()),
            Some(0x4000_1000)
        );
    }

    #[test]
    fn windows_shift_addresses_and_bound_the_bus() {
        let m = two_windows();
        assert_eq!(m.to_bus(0x4000_2000, 0x100), Some(0x2000));
        assert_eq!(m.to_bus(0x1_0000_0000, 0x1000), Some(0x8000_0000));
        assert_eq!(m.to_bus(0x3fff_f000, 0x1000), None, "below every window");
        assert_eq!(
            m.to_bus(0x7fff_f000, 0x2000),
            None,
            "straddles the end of a window"
        );
        assert_eq!(m.bus_limit(), 0x8fff_ffff);
        assert_eq!(
            m.reachable(0x1_0000_0000, 0x1000, 0x7fff_ffff),
            None,
            "above the mask on the bus"
        );
        assert_eq!(
            m.reachable_cpu_ranges(0x7fff_ffff),
            [(0x4000_0000, 0x7fff_ffff)]
        );
        assert_eq!(m.reachable_cpu_ranges(u64::MAX).len(), 2);
    }
}
