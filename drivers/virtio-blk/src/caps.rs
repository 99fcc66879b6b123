//! Finding the virtio structures (virtio 1.2 §4.1.4): the vendor-specific PCI capabilities of a
//! modern virtio-pci function say in which BAR, at which offset and how long each structure
//! is. Pure logic over [`ConfigSpace`], tested on the host against a fake config space.
//!
//! Rules followed: the first capability of each type is the one used (the device lists them in
//! its order of preference); capabilities of unknown type or with a reserved BAR number
//! (6..=255) are ignored, as the spec requires; a used capability that is malformed (too short
//! for its type, naming an absent or I/O BAR, reaching past the BAR's end, misaligned, too small
//! for what the driver reads) fails the probe with the reason, and so does a missing structure.

use pci_ecam::PciDevice;

use crate::error::{BlkError, CapProblem, Structure};
use crate::regs::CommonCfg;
use crate::regs::cap::{self, cfg_type};

/// Read access to a function's configuration space.
pub trait ConfigSpace {
    /// 8-bit read.
    fn read8(&self, offset: u16) -> u8;
    /// 32-bit read (offset 4-aligned).
    fn read32(&self, offset: u16) -> u32;
}

impl ConfigSpace for PciDevice {
    fn read8(&self, offset: u16) -> u8 {
        PciDevice::read8(self, offset)
    }
    fn read32(&self, offset: u16) -> u32 {
        PciDevice::read32(self, offset)
    }
}

/// What the parser needs to know of a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpan {
    /// Size in bytes.
    pub size: u64,
    /// An I/O BAR (unusable here).
    pub io: bool,
}

/// Where one structure lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// BAR index.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

/// The four structures a virtio-blk driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioLayout {
    /// Common configuration.
    pub common: Region,
    /// Notifications: queue `q` is notified at `queue_notify_off(q) * notify_multiplier`.
    pub notify: Region,
    /// `notify_off_multiplier`.
    pub notify_multiplier: u32,
    /// ISR status.
    pub isr: Region,
    /// Device-specific configuration.
    pub device: Region,
}

/// Bytes of `struct virtio_blk_config` the driver always reads (the capacity).
const DEVICE_CFG_MIN: u32 = 8;

struct Raw {
    at: u16,
    cap_len: u8,
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
}

fn read_cap(cfg: &impl ConfigSpace, at: u16) -> Raw {
    Raw {
        at,
        cap_len: cfg.read8(at + cap::CAP_LEN),
        cfg_type: cfg.read8(at + cap::CFG_TYPE),
        bar: cfg.read8(at + cap::BAR),
        offset: cfg.read32(at + cap::OFFSET),
        length: cfg.read32(at + cap::LENGTH),
    }
}

fn region(
    raw: &Raw,
    bars: &impl Fn(u8) -> Option<BarSpan>,
    need_cap_len: u8,
    align: u32,
    min_len: u32,
) -> Result<Region, BlkError> {
    let fail = |problem| BlkError::Capability {
        offset: raw.at,
        problem,
    };
    if raw.cap_len < need_cap_len {
        return Err(fail(CapProblem::TooShort {
            cap_len: raw.cap_len,
            need: need_cap_len,
        }));
    }
    let bar = bars(raw.bar).ok_or(fail(CapProblem::NoSuchBar(raw.bar)))?;
    if bar.io {
        return Err(fail(CapProblem::IoBar(raw.bar)));
    }
    if u64::from(raw.offset) + u64::from(raw.length) > bar.size {
        return Err(fail(CapProblem::OutsideBar {
            bar: raw.bar,
            offset: raw.offset,
            length: raw.length,
            bar_size: bar.size,
        }));
    }
    if !raw.offset.is_multiple_of(align) {
        return Err(fail(CapProblem::Misaligned {
            offset: raw.offset,
            align,
        }));
    }
    if raw.length < min_len {
        return Err(fail(CapProblem::TooSmall {
            length: raw.length,
            need: min_len,
        }));
    }
    Ok(Region {
        bar: raw.bar,
        offset: raw.offset,
        length: raw.length,
    })
}

/// Finds and checks the virtio structures among the vendor capabilities at `caps` (offsets in
/// config space, in list order). `bars(i)` describes BAR `i` (`None`: absent or unassigned).
pub fn parse(
    cfg: &impl ConfigSpace,
    caps: impl IntoIterator<Item = u16>,
    bars: impl Fn(u8) -> Option<BarSpan>,
) -> Result<VirtioLayout, BlkError> {
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    for at in caps {
        let raw = read_cap(cfg, at);
        // virtio 1.2 §4.1.4: "The driver MUST ignore any vendor-specific capability structure
        // which has a reserved bar value."
        if raw.bar > 5 {
            continue;
        }
        match raw.cfg_type {
            cfg_type::COMMON if common.is_none() => {
                // Common configuration fields are up to 32 bits wide; the driver reads all
                // of `CommonCfg`.
                let size = core::mem::size_of::<CommonCfg>() as u32;
                common = Some(region(&raw, &bars, cap::SIZE, 4, size)?);
            }
            cfg_type::NOTIFY if notify.is_none() => {
                // Notifications are 16-bit writes (§4.1.4.4: offset 2-aligned).
                let r = region(&raw, &bars, cap::NOTIFY_SIZE, 2, 2)?;
                let m = cfg.read32(at + cap::NOTIFY_OFF_MULTIPLIER);
                if m != 0 && (!m.is_power_of_two() || m == 1) {
                    return Err(BlkError::Capability {
                        offset: at,
                        problem: CapProblem::BadMultiplier(m),
                    });
                }
                notify = Some((r, m));
            }
            cfg_type::ISR if isr.is_none() => {
                isr = Some(region(&raw, &bars, cap::SIZE, 1, 1)?);
            }
            cfg_type::DEVICE if device.is_none() => {
                device = Some(region(&raw, &bars, cap::SIZE, 4, DEVICE_CFG_MIN)?);
            }
            _ => {}
        }
    }
    let common = common.ok_or(BlkError::Missing(Structure::Common))?;
    let (notify, notify_multiplier) = notify.ok_or(BlkError::Missing(Structure::Notify))?;
    let isr = isr.ok_or(BlkError::Missing(Structure::Isr))?;
    let device = device.ok_or(BlkError::Missing(Structure::Device))?;
    Ok(VirtioLayout {
        common,
        notify,
        notify_multiplier,
        isr,
        device,
    })
}

/// Offset of queue notification `queue_notify_off` in the notification structure, checked to
/// leave room for the 16-bit write (virtio 1.2 §4.1.4.4).
pub fn notify_offset(layout: &VirtioLayout, queue_notify_off: u16) -> Result<u32, BlkError> {
    u32::from(queue_notify_off)
        .checked_mul(layout.notify_multiplier)
        .filter(|o| {
            o.checked_add(2)
                .is_some_and(|end| end <= layout.notify.length)
        })
        .ok_or(BlkError::NotifyOutOfRange {
            queue_notify_off,
            multiplier: layout.notify_multiplier,
            length: layout.notify.length,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    /// A 256-byte config space holding a capability list.
    struct FakeConfig {
        bytes: RefCell<[u8; 256]>,
        caps: RefCell<Vec<u16>>,
    }

    impl ConfigSpace for FakeConfig {
        fn read8(&self, offset: u16) -> u8 {
            self.bytes.borrow()[usize::from(offset)]
        }
        fn read32(&self, offset: u16) -> u32 {
            let b = self.bytes.borrow();
            let o = usize::from(offset);
            u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
        }
    }

    impl FakeConfig {
        fn new() -> Self {
            Self {
                bytes: RefCell::new([0; 256]),
                caps: RefCell::new(Vec::new()),
            }
        }

        /// Appends a virtio capability at the next free slot (0x40, 0x54, ...).
        fn cap(&self, cfg_type: u8, bar: u8, offset: u32, length: u32, extra: Option<u32>) -> u16 {
            let at = 0x40 + 0x18 * self.caps.borrow().len() as u16;
            let mut b = self.bytes.borrow_mut();
            let o = usize::from(at);
            b[o] = 0x09;
            b[o + 2] = if extra.is_some() { 20 } else { 16 };
            b[o + 3] = cfg_type;
            b[o + 4] = bar;
            b[o + 8..o + 12].copy_from_slice(&offset.to_le_bytes());
            b[o + 12..o + 16].copy_from_slice(&length.to_le_bytes());
            if let Some(x) = extra {
                b[o + 16..o + 20].copy_from_slice(&x.to_le_bytes());
            }
            self.caps.borrow_mut().push(at);
            at
        }

        fn set8(&self, at: u16, v: u8) {
            self.bytes.borrow_mut()[usize::from(at)] = v;
        }

        /// QEMU 10.0's virtio-blk-pci: four structures of 4 KiB each in the 16 KiB BAR4, plus
        /// a PCI-configuration-access capability.
        fn qemu() -> Self {
            let c = Self::new();
            c.cap(cfg_type::COMMON, 4, 0x0000, 0x1000, None);
            c.cap(cfg_type::ISR, 4, 0x1000, 0x1000, None);
            c.cap(cfg_type::DEVICE, 4, 0x2000, 0x1000, None);
            c.cap(cfg_type::NOTIFY, 4, 0x3000, 0x1000, Some(4));
            c.cap(cfg_type::PCI, 0, 0, 0, Some(0));
            c
        }

        fn parse(&self) -> Result<VirtioLayout, BlkError> {
            parse(self, self.caps.borrow().clone(), qemu_bars)
        }
    }

    fn qemu_bars(i: u8) -> Option<BarSpan> {
        match i {
            1 => Some(BarSpan {
                size: 0x1000,
                io: false,
            }),
            4 => Some(BarSpan {
                size: 0x4000,
                io: false,
            }),
            5 => Some(BarSpan { size: 32, io: true }),
            _ => None,
        }
    }

    fn at(bar: u8, offset: u32, length: u32) -> Region {
        Region {
            bar,
            offset,
            length,
        }
    }

    #[test]
    fn qemu_layout_is_found() {
        let l = FakeConfig::qemu().parse().unwrap();
        assert_eq!(
            l,
            VirtioLayout {
                common: at(4, 0, 0x1000),
                notify: at(4, 0x3000, 0x1000),
                notify_multiplier: 4,
                isr: at(4, 0x1000, 0x1000),
                device: at(4, 0x2000, 0x1000),
            }
        );
        assert_eq!(notify_offset(&l, 0), Ok(0));
        assert_eq!(notify_offset(&l, 1023), Ok(4092));
        assert!(matches!(
            notify_offset(&l, 1024),
            Err(BlkError::NotifyOutOfRange { .. })
        ));
    }

    #[test]
    fn the_first_capability_of_a_type_wins_and_reserved_bars_are_skipped() {
        let c = FakeConfig::new();
        c.cap(cfg_type::COMMON, 7, 0, 0x1000, None); // reserved BAR: ignored
        c.cap(cfg_type::COMMON, 4, 0x0000, 0x100, None);
        c.cap(cfg_type::COMMON, 4, 0x0800, 0x100, None); // second choice: unused
        c.cap(cfg_type::ISR, 1, 0x10, 1, None);
        c.cap(cfg_type::DEVICE, 4, 0x2000, 0x40, None);
        c.cap(cfg_type::NOTIFY, 4, 0x3000, 2, Some(0));
        c.cap(0x42, 4, 0, 0, None); // unknown type: ignored
        let l = c.parse().unwrap();
        assert_eq!(l.common, at(4, 0, 0x100));
        assert_eq!(l.isr, at(1, 0x10, 1));
        // A multiplier of 0: every queue notifies at the same address.
        assert_eq!(notify_offset(&l, 9), Ok(0));
    }

    #[test]
    fn each_missing_structure_is_named() {
        for (skip, what) in [
            (cfg_type::COMMON, Structure::Common),
            (cfg_type::NOTIFY, Structure::Notify),
            (cfg_type::ISR, Structure::Isr),
            (cfg_type::DEVICE, Structure::Device),
        ] {
            let c = FakeConfig::new();
            for t in [
                cfg_type::COMMON,
                cfg_type::ISR,
                cfg_type::DEVICE,
                cfg_type::NOTIFY,
            ] {
                if t != skip {
                    let extra = (t == cfg_type::NOTIFY).then_some(4);
                    c.cap(t, 4, 0x1000 * u32::from(t - 1), 0x1000, extra);
                }
            }
            assert_eq!(c.parse(), Err(BlkError::Missing(what)), "without {what}");
        }
    }

    fn problem(c: &FakeConfig) -> CapProblem {
        match c.parse() {
            Err(BlkError::Capability { problem, .. }) => problem,
            other => panic!("expected a capability error, got {other:?}"),
        }
    }

    /// QEMU's layout with one capability replaced by `(type, bar, offset, length, extra)`.
    fn qemu_with(replace: u8, bar: u8, offset: u32, length: u32, extra: Option<u32>) -> FakeConfig {
        let c = FakeConfig::new();
        for (t, o) in [
            (cfg_type::COMMON, 0),
            (cfg_type::ISR, 0x1000),
            (cfg_type::DEVICE, 0x2000),
            (cfg_type::NOTIFY, 0x3000),
        ] {
            let n = (t == cfg_type::NOTIFY).then_some(4);
            if t == replace {
                c.cap(t, bar, offset, length, extra);
            } else {
                c.cap(t, 4, o, 0x1000, n);
            }
        }
        c
    }

    #[test]
    fn structures_outside_their_bar_are_rejected() {
        let c = qemu_with(cfg_type::DEVICE, 4, 0x3800, 0x1000, None);
        assert_eq!(
            problem(&c),
            CapProblem::OutsideBar {
                bar: 4,
                offset: 0x3800,
                length: 0x1000,
                bar_size: 0x4000
            }
        );
        // Offset + length overflowing 32 bits is still outside, not wrapped back in.
        let c = qemu_with(cfg_type::ISR, 4, 0xffff_f000, 0x2000, None);
        assert!(matches!(problem(&c), CapProblem::OutsideBar { .. }));
    }

    #[test]
    fn absent_and_io_bars_are_rejected() {
        assert_eq!(
            problem(&qemu_with(cfg_type::COMMON, 2, 0, 0x100, None)),
            CapProblem::NoSuchBar(2)
        );
        assert_eq!(
            problem(&qemu_with(cfg_type::COMMON, 5, 0, 0x20, None)),
            CapProblem::IoBar(5)
        );
    }

    #[test]
    fn misaligned_short_and_tiny_structures_are_rejected() {
        assert_eq!(
            problem(&qemu_with(cfg_type::COMMON, 4, 0x2, 0x100, None)),
            CapProblem::Misaligned {
                offset: 2,
                align: 4
            }
        );
        assert_eq!(
            problem(&qemu_with(cfg_type::COMMON, 4, 0, 0x20, None)),
            CapProblem::TooSmall {
                length: 0x20,
                need: 0x38
            }
        );
        assert_eq!(
            problem(&qemu_with(cfg_type::NOTIFY, 4, 0x3001, 0x100, Some(4))),
            CapProblem::Misaligned {
                offset: 0x3001,
                align: 2
            }
        );
        assert_eq!(
            problem(&qemu_with(cfg_type::DEVICE, 4, 0x2000, 4, None)),
            CapProblem::TooSmall { length: 4, need: 8 }
        );
        // A notify capability without room for notify_off_multiplier.
        let c = qemu_with(cfg_type::NOTIFY, 4, 0x3000, 0x1000, None);
        assert_eq!(
            problem(&c),
            CapProblem::TooShort {
                cap_len: 16,
                need: 20
            }
        );
        let c = FakeConfig::qemu();
        c.set8(0x40 + cap::CAP_LEN, 12);
        assert_eq!(
            problem(&c),
            CapProblem::TooShort {
                cap_len: 12,
                need: 16
            }
        );
    }

    #[test]
    fn odd_notify_multipliers_are_rejected() {
        for m in [1, 3, 6, 0x8000_0001] {
            let c = qemu_with(cfg_type::NOTIFY, 4, 0x3000, 0x1000, Some(m));
            assert_eq!(problem(&c), CapProblem::BadMultiplier(m));
        }
        for m in [0, 2, 4, 0x1000] {
            let c = qemu_with(cfg_type::NOTIFY, 4, 0x3000, 0x1000, Some(m));
            assert_eq!(c.parse().map(|l| l.notify_multiplier), Ok(m));
        }
    }

    proptest::proptest! {
        /// Whatever the capability bytes say, an accepted layout lies inside its BARs.
        #[test]
        fn accepted_layouts_fit_their_bars(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 4 * 0x18)
        ) {
            let c = FakeConfig::new();
            for i in 0..4u16 {
                let at = 0x40 + 0x18 * i;
                for (k, b) in raw[usize::from(0x18 * i)..][..0x18].iter().enumerate() {
                    c.set8(at + k as u16, *b);
                }
                c.caps.borrow_mut().push(at);
            }
            if let Ok(l) = c.parse() {
                for r in [l.common, l.notify, l.isr, l.device] {
                    let bar = qemu_bars(r.bar).unwrap();
                    proptest::prop_assert!(!bar.io);
                    proptest::prop_assert!(u64::from(r.offset) + u64::from(r.length) <= bar.size);
                }
            }
        }
    }
}
