//! The modern virtio-pci transport (virtio 1.2 §4.1): the mapped structures, the device
//! status handshake (§3.1.1), feature negotiation, queue set-up and notification.
//!
//! The handshake runs over [`StatusRegs`], so its logic (bounded reset, FEATURES_OK
//! re-checked, FAILED on the way out) is tested on the host against a fake device.

use alloc::collections::BTreeMap;
use core::time::Duration;

use kapi::Iova;
use kapi::mmio::{Mmio, MmioRegion};
use pci_ecam::PciDevice;
use tock_registers::interfaces::{Readable, Writeable};

use crate::caps::{BarSpan, VirtioLayout};
use crate::error::BlkError;
use crate::features::{self, Features};
use crate::regs::{CommonCfg, DEVICE_STATUS, IsrCfg, NO_VECTOR};

/// How long a reset may take to read back 0. QEMU resets synchronously; real devices may take
/// a while, the spec sets no bound.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the device configuration is re-read when `config_generation` moves under it.
const CONFIG_RETRIES: usize = 8;

/// Device status bits as a raw byte.
pub mod status {
    use super::DEVICE_STATUS;
    /// ACKNOWLEDGE.
    pub const ACKNOWLEDGE: u8 = DEVICE_STATUS::ACKNOWLEDGE::SET.value;
    /// DRIVER.
    pub const DRIVER: u8 = DEVICE_STATUS::DRIVER::SET.value;
    /// FEATURES_OK.
    pub const FEATURES_OK: u8 = DEVICE_STATUS::FEATURES_OK::SET.value;
    /// DRIVER_OK.
    pub const DRIVER_OK: u8 = DEVICE_STATUS::DRIVER_OK::SET.value;
    /// DEVICE_NEEDS_RESET.
    pub const DEVICE_NEEDS_RESET: u8 = DEVICE_STATUS::DEVICE_NEEDS_RESET::SET.value;
    /// FAILED.
    pub const FAILED: u8 = DEVICE_STATUS::FAILED::SET.value;
}

/// What the handshake needs from the common configuration.
pub trait StatusRegs {
    /// Reads `device_status`.
    fn status(&self) -> u8;
    /// Writes `device_status`.
    fn set_status(&self, value: u8);
    /// Reads all 64 device feature bits.
    fn device_features(&self) -> Features;
    /// Writes all 64 driver feature bits.
    fn set_driver_features(&self, f: Features);
}

/// Resets the device and waits (bounded) for the reset to complete: "After writing 0 to
/// device_status, the driver MUST wait for a read of device_status to return 0 before
/// reinitializing the device" (virtio 1.2 §4.1.4.3.2).
pub fn reset(regs: &impl StatusRegs, timeout: Duration) -> Result<(), BlkError> {
    regs.set_status(0);
    kapi::time::poll_until(timeout, || regs.status() == 0).map_err(|_| BlkError::ResetTimeout {
        status: regs.status(),
    })
}

/// The outcome of feature negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// What the device offered.
    pub offered: Features,
    /// What the driver accepted (and the device confirmed with FEATURES_OK).
    pub accepted: Features,
}

/// Steps 1-6 of the initialization sequence (virtio 1.2 §3.1.1): reset, ACKNOWLEDGE, DRIVER,
/// read the offer, write the accepted subset, set FEATURES_OK and re-read it to make sure the
/// device took the subset. `translated`: the device's DMA goes through an IOMMU domain.
///
/// On failure the device is left for the caller to mark FAILED ([`fail`]).
pub fn negotiate(
    regs: &impl StatusRegs,
    translated: bool,
    timeout: Duration,
) -> Result<Negotiated, BlkError> {
    reset(regs, timeout)?;
    regs.set_status(status::ACKNOWLEDGE);
    regs.set_status(status::ACKNOWLEDGE | status::DRIVER);
    let offered = regs.device_features();
    let accepted = features::negotiate(offered, translated)?;
    regs.set_driver_features(accepted);
    regs.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    // §3.1.1 step 6: the device clears FEATURES_OK if it does not support the subset; the
    // driver must re-read the status to find out.
    let s = regs.status();
    if s & status::FEATURES_OK == 0 {
        return Err(BlkError::FeaturesRefused {
            offered,
            accepted,
            status: s,
        });
    }
    Ok(Negotiated { offered, accepted })
}

/// Tells the device the driver is ready (§3.1.1 step 8): it may now use the queues.
pub fn driver_ok(regs: &impl StatusRegs) {
    regs.set_status(regs.status() | status::DRIVER_OK);
}

/// Tells the device the driver gave up on it (§3.1.1: "the driver SHOULD set the FAILED status
/// bit to indicate that it has given up on the device").
pub fn fail(regs: &impl StatusRegs) {
    regs.set_status(regs.status() | status::FAILED);
}

/// The mapped virtio structures of one function.
pub struct Transport {
    common: Mmio<CommonCfg>,
    isr: Mmio<IsrCfg>,
    device: MmioRegion,
    notify: MmioRegion,
    layout: VirtioLayout,
}

impl StatusRegs for Transport {
    fn status(&self) -> u8 {
        self.common.DEVICE_STATUS.get()
    }
    fn set_status(&self, value: u8) {
        self.common.DEVICE_STATUS.set(value);
    }
    fn device_features(&self) -> Features {
        self.common.DEVICE_FEATURE_SELECT.set(0);
        let low = self.common.DEVICE_FEATURE.get();
        self.common.DEVICE_FEATURE_SELECT.set(1);
        let high = self.common.DEVICE_FEATURE.get();
        Features::from_words(low, high)
    }
    fn set_driver_features(&self, f: Features) {
        self.common.DRIVER_FEATURE_SELECT.set(0);
        self.common.DRIVER_FEATURE.set(f.low());
        self.common.DRIVER_FEATURE_SELECT.set(1);
        self.common.DRIVER_FEATURE.set(f.high());
    }
}

/// What [`crate::caps::parse`] needs to know of a PCI function's BARs.
pub fn bar_span(pci: &PciDevice, index: u8) -> Option<BarSpan> {
    pci.bar(index).map(|b| BarSpan {
        size: b.size,
        io: b.space == pci_ecam::Space::Io,
    })
}

impl Transport {
    /// Maps the structures `layout` names (each BAR once).
    pub fn map(pci: &PciDevice, layout: VirtioLayout) -> Result<Self, BlkError> {
        let mut bars: BTreeMap<u8, MmioRegion> = BTreeMap::new();
        let mut sub = |r: crate::caps::Region| -> Result<MmioRegion, BlkError> {
            let bar = match bars.get(&r.bar) {
                Some(b) => *b,
                None => {
                    let b = pci.map_bar(r.bar)?;
                    bars.insert(r.bar, b);
                    b
                }
            };
            Ok(bar.subregion(u64::from(r.offset), u64::from(r.length))?)
        };
        let common = sub(layout.common)?.view::<CommonCfg>(0)?;
        let isr = sub(layout.isr)?.view::<IsrCfg>(0)?;
        let device = sub(layout.device)?;
        let notify = sub(layout.notify)?;
        Ok(Self {
            common,
            isr,
            device,
            notify,
            layout,
        })
    }

    /// The structures of `layout` in one RAM-backed region standing in for BAR 0 (host tests
    /// of the layers above: registers keep what is written to them).
    #[cfg(test)]
    pub(crate) fn fake(region: MmioRegion, layout: VirtioLayout) -> Self {
        let sub = |r: crate::caps::Region| {
            region
                .subregion(u64::from(r.offset), u64::from(r.length))
                .expect("the fake layout fits its region")
        };
        Self {
            common: sub(layout.common).view::<CommonCfg>(0).expect("common"),
            isr: sub(layout.isr).view::<IsrCfg>(0).expect("isr"),
            device: sub(layout.device),
            notify: sub(layout.notify),
            layout,
        }
    }

    /// Where the structures are.
    pub fn layout(&self) -> &VirtioLayout {
        &self.layout
    }

    /// Reads `f` from the device configuration until `config_generation` is the same before
    /// and after (virtio 1.2 §4.1.4.3.1: a multi-byte field may otherwise be torn).
    pub fn read_config<T>(
        &self,
        mut f: impl FnMut(&DeviceConfig<'_>) -> Result<T, BlkError>,
    ) -> Result<T, BlkError> {
        let cfg = DeviceConfig(&self.device);
        for _ in 0..CONFIG_RETRIES {
            let before = self.common.CONFIG_GENERATION.get();
            let v = f(&cfg)?;
            if self.common.CONFIG_GENERATION.get() == before {
                return Ok(v);
            }
        }
        Err(BlkError::ConfigUnstable)
    }

    /// Number of queues the device has.
    pub fn num_queues(&self) -> u16 {
        self.common.NUM_QUEUES.get()
    }

    /// Largest size of queue `q` (0: the queue does not exist).
    pub fn queue_max_size(&self, q: u16) -> u16 {
        self.common.QUEUE_SELECT.set(q);
        self.common.QUEUE_SIZE.get()
    }

    /// `queue_notify_off` of queue `q`: where in the notification structure it is notified,
    /// in units of `notify_off_multiplier`.
    pub fn queue_notify_off(&self, q: u16) -> u16 {
        self.common.QUEUE_SELECT.set(q);
        self.common.QUEUE_NOTIFY_OFF.get()
    }

    /// Programs queue `q` (size, ring addresses, MSI-X vector). The queue is not enabled yet.
    pub fn setup_queue(
        &self,
        q: u16,
        size: u16,
        (desc, driver, device): (Iova, Iova, Iova),
        vector: Option<u16>,
    ) -> Result<(), BlkError> {
        let c = &self.common;
        c.QUEUE_SELECT.set(q);
        c.QUEUE_SIZE.set(size);
        c.QUEUE_DESC_LO.set(desc.0 as u32);
        c.QUEUE_DESC_HI.set((desc.0 >> 32) as u32);
        c.QUEUE_DRIVER_LO.set(driver.0 as u32);
        c.QUEUE_DRIVER_HI.set((driver.0 >> 32) as u32);
        c.QUEUE_DEVICE_LO.set(device.0 as u32);
        c.QUEUE_DEVICE_HI.set((device.0 >> 32) as u32);
        match vector {
            Some(v) => self.set_queue_vector(q, Some(v)),
            None => Ok(()),
        }
    }

    /// Routes queue `q`'s interrupts to MSI-X vector `v` (or none).
    pub fn set_queue_vector(&self, q: u16, v: Option<u16>) -> Result<(), BlkError> {
        let v = v.unwrap_or(NO_VECTOR);
        self.common.QUEUE_SELECT.set(q);
        self.common.QUEUE_MSIX_VECTOR.set(v);
        // §4.1.5.1.2: a device that cannot use the vector reads back NO_VECTOR.
        if self.common.QUEUE_MSIX_VECTOR.get() != v {
            return Err(BlkError::MsixVectorRefused { which: "queue" });
        }
        Ok(())
    }

    /// Enables queue `q`: the last step of its set-up (§4.1.5.1.3).
    pub fn enable_queue(&self, q: u16) {
        self.common.QUEUE_SELECT.set(q);
        self.common.QUEUE_ENABLE.set(1);
    }

    /// Routes configuration-change interrupts to MSI-X vector `v` (or none).
    pub fn set_config_vector(&self, v: Option<u16>) -> Result<(), BlkError> {
        let v = v.unwrap_or(NO_VECTOR);
        self.common.CONFIG_MSIX_VECTOR.set(v);
        if self.common.CONFIG_MSIX_VECTOR.get() != v {
            return Err(BlkError::MsixVectorRefused {
                which: "configuration",
            });
        }
        Ok(())
    }

    /// Notifies the device that queue `q` has new buffers, at `offset` in the notification
    /// structure (from [`crate::caps::notify_offset`]).
    pub fn notify(&self, offset: u32, q: u16) -> Result<(), BlkError> {
        Ok(self.notify.write16(u64::from(offset), q)?)
    }

    /// Reads (and so clears, de-asserting INTx) the ISR status.
    pub fn isr(&self) -> u8 {
        self.isr.ISR.get()
    }
}

/// Bounds-checked reads of the device-specific configuration. Fields are read as 32-bit (or
/// narrower) accesses; 64-bit fields as two halves, low first.
pub struct DeviceConfig<'a>(&'a MmioRegion);

impl DeviceConfig<'_> {
    /// 8-bit field.
    pub fn read_u8(&self, offset: u64) -> Result<u8, BlkError> {
        Ok(self.0.read8(offset)?)
    }
    /// 16-bit field.
    pub fn read_u16(&self, offset: u64) -> Result<u16, BlkError> {
        Ok(self.0.read16(offset)?)
    }
    /// 32-bit field.
    pub fn read_u32(&self, offset: u64) -> Result<u32, BlkError> {
        Ok(self.0.read32(offset)?)
    }
    /// 64-bit field.
    pub fn read_u64(&self, offset: u64) -> Result<u64, BlkError> {
        let low = self.0.read32(offset)?;
        let high = self.0.read32(offset + 4)?;
        Ok(u64::from(high) << 32 | u64::from(low))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::features::bit;
    use core::cell::Cell;

    /// A device's status/feature logic: reset takes `reset_reads` reads to complete, and
    /// FEATURES_OK is refused when the driver's subset misses `required`.
    struct FakeDevice {
        status: Cell<u8>,
        reset_reads: Cell<u32>,
        offered: Features,
        required: Features,
        driver: Cell<Features>,
        writes: core::cell::RefCell<alloc::vec::Vec<u8>>,
    }

    impl FakeDevice {
        fn new(offered: Features) -> Self {
            Self {
                status: Cell::new(0x0f),
                reset_reads: Cell::new(0),
                offered,
                required: Features(0),
                driver: Cell::new(Features(0)),
                writes: Default::default(),
            }
        }
    }

    impl StatusRegs for FakeDevice {
        fn status(&self) -> u8 {
            if self.reset_reads.get() > 0 {
                self.reset_reads.set(self.reset_reads.get() - 1);
                return 0x40;
            }
            self.status.get()
        }
        fn set_status(&self, v: u8) {
            self.writes.borrow_mut().push(v);
            let refused = self.driver.get().0 & self.required.0 != self.required.0;
            self.status
                .set(if refused { v & !status::FEATURES_OK } else { v });
        }
        fn device_features(&self) -> Features {
            self.offered
        }
        fn set_driver_features(&self, f: Features) {
            self.driver.set(f);
        }
    }

    const OFFER: Features = Features::of(&[
        bit::RO,
        bit::BLK_SIZE,
        bit::EVENT_IDX,
        bit::VERSION_1,
        bit::ACCESS_PLATFORM,
    ]);

    #[test]
    fn the_handshake_follows_the_spec_order() {
        let d = FakeDevice::new(OFFER);
        d.reset_reads.set(3);
        let n = negotiate(&d, true, RESET_TIMEOUT).unwrap();
        assert_eq!(n.offered, OFFER);
        assert_eq!(
            n.accepted,
            Features::of(&[bit::RO, bit::BLK_SIZE, bit::VERSION_1, bit::ACCESS_PLATFORM])
        );
        assert_eq!(d.driver.get(), n.accepted);
        driver_ok(&d);
        assert_eq!(*d.writes.borrow(), [0, 0x1, 0x3, 0xb, 0xf]);
    }

    #[test]
    fn a_reset_that_never_completes_times_out() {
        let d = FakeDevice::new(OFFER);
        d.reset_reads.set(u32::MAX);
        assert_eq!(
            negotiate(&d, true, Duration::from_millis(5)),
            Err(BlkError::ResetTimeout { status: 0x40 })
        );
        assert_eq!(*d.writes.borrow(), [0], "nothing after the failed reset");
    }

    #[test]
    fn features_ok_not_latching_names_offer_and_acceptance() {
        let mut d = FakeDevice::new(OFFER);
        // A device that insists on EVENT_IDX, which this driver never accepts.
        d.required = Features::of(&[bit::EVENT_IDX]);
        let e = negotiate(&d, true, RESET_TIMEOUT).unwrap_err();
        let accepted =
            Features::of(&[bit::RO, bit::BLK_SIZE, bit::VERSION_1, bit::ACCESS_PLATFORM]);
        assert_eq!(
            e,
            BlkError::FeaturesRefused {
                offered: OFFER,
                accepted,
                status: 0x3
            }
        );
        let msg = alloc::format!("{e}");
        assert!(
            msg.contains("EVENT_IDX") && msg.contains("ACCESS_PLATFORM"),
            "{msg}"
        );
        fail(&d);
        assert_eq!(d.status.get() & status::FAILED, status::FAILED);
    }

    #[test]
    fn a_legacy_only_device_is_refused_before_features_are_written() {
        let d = FakeDevice::new(Features::of(&[bit::BLK_SIZE]));
        assert!(matches!(
            negotiate(&d, false, RESET_TIMEOUT),
            Err(BlkError::NoVersion1 { .. })
        ));
        assert_eq!(d.driver.get(), Features(0));
        assert_eq!(*d.writes.borrow(), [0, 0x1, 0x3]);
    }

    /// Common configuration at 0, ISR at 0x100, device configuration at 0x200, notifications
    /// at 0x300 (16 bytes, multiplier 4).
    pub(crate) fn fake_layout() -> VirtioLayout {
        let at = |offset, length| crate::caps::Region {
            bar: 0,
            offset,
            length,
        };
        VirtioLayout {
            common: at(0, 0x100),
            notify: at(0x300, 0x10),
            notify_multiplier: 4,
            isr: at(0x100, 1),
            device: at(0x200, 0x40),
        }
    }

    /// The real register block over RAM: features go out in two selected halves.
    #[test]
    fn mmio_transport_writes_features_in_selected_halves() {
        let region = kapi::mmio::fake_region(0x1000);
        let t = Transport::fake(region, fake_layout());
        t.set_driver_features(Features(0x3_0000_0064));
        // RAM keeps the last write: the high half, with select 1.
        assert_eq!(region.read32(0x08).unwrap(), 1);
        assert_eq!(region.read32(0x0c).unwrap(), 3);
        t.setup_queue(
            0,
            128,
            (Iova(0x1_2345_6000), Iova(0x800), Iova(0x1000)),
            None,
        )
        .unwrap();
        assert_eq!(region.read32(0x20).unwrap(), 0x2345_6000);
        assert_eq!(region.read32(0x24).unwrap(), 1);
        assert_eq!(region.read16(0x18).unwrap(), 128);
        region.write32(0x200, 0x0002_0000).unwrap();
        region.write32(0x204, 0x1).unwrap();
        assert_eq!(t.read_config(|c| c.read_u64(0)), Ok(0x1_0002_0000));
        assert!(matches!(
            t.read_config(|c| c.read_u32(0x40)),
            Err(BlkError::Mmio(_))
        ));
        t.notify(12, 0).unwrap();
        assert!(t.notify(15, 0).is_err());
    }
}
