//! Host fixtures: a recording CPU interface and RAM-backed register files preloaded with what
//! QEMU 10.0 `virt,gic-version=3` reports.
//!
//! A RAM register file cannot react to writes, so a test plays the hardware: it sets
//! GITS_CREADR to the slot the ITS would have reached before calling an API that issues commands
//! (see [`ItsFixture::consume_to`]). The driver's wait then ends exactly when the write index it
//! published matches, which also checks how many commands it queued.

use std::boxed::Box;
use std::sync::{Mutex, MutexGuard};
use std::vec::Vec;

use kapi::PhysAddr;
use kapi::mmio::{MmioRegion, fake_region};
use kapi::platform::fake::FakePlatform;

use crate::regs::FRAME_SIZE;
use crate::{CpuInterface, GicV3, LpiConfig};

/// Tests that allocate page frames run one at a time so frame counts are exact.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the test lock and the fake platform.
pub struct Serial {
    _guard: MutexGuard<'static, ()>,
    pub platform: &'static FakePlatform,
}

pub fn serial() -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Serial {
        _guard: guard,
        platform: kapi::platform::fake::install(),
    }
}

impl Serial {
    pub fn frames(&self) -> u64 {
        use kapi::platform::Platform;
        self.platform.frames_in_use()
    }
}

#[derive(Default)]
pub struct Recorded {
    pub sre: bool,
    pub pmr: u8,
    pub grp1: bool,
    pub grp0: bool,
    pub eois: Vec<u32>,
}

pub struct FakeCpu(pub &'static Mutex<Recorded>, pub u32);

impl CpuInterface for FakeCpu {
    fn enable_system_registers(&self) {
        self.0.lock().unwrap().sre = true;
    }
    fn set_priority_mask(&self, mask: u8) {
        self.0.lock().unwrap().pmr = mask;
    }
    fn set_binary_point(&self, _: u8) {}
    fn enable_group1(&self, enable: bool) {
        self.0.lock().unwrap().grp1 = enable;
    }
    fn enable_group0(&self, enable: bool) {
        self.0.lock().unwrap().grp0 = enable;
    }
    fn acknowledge(&self) -> u32 {
        1023
    }
    fn end_of_interrupt(&self, intid: u32) {
        self.0.lock().unwrap().eois.push(intid);
    }
    fn affinity(&self) -> u32 {
        self.1
    }
}

/// A recorder nobody inspects.
pub fn cpu(affinity: u32) -> Box<dyn CpuInterface> {
    Box::new(FakeCpu(Box::leak(Box::default()), affinity))
}

/// GICD_TYPER of QEMU virt with an ITS: IDbits = 15, LPIS, ITLinesNumber = 3 in this fixture.
pub const GICD_TYPER_LPIS: u32 = (15 << 19) | (1 << 17) | 3;

/// Physical address the fixtures pretend the redistributor region has (QEMU virt).
pub const GICR_PA: PhysAddr = PhysAddr(0x080a_0000);
/// Physical address the fixtures pretend the ITS has (QEMU virt).
pub const ITS_PA: PhysAddr = PhysAddr(0x0808_0000);

/// Distributor with LPIs, and two awake redistributors (affinities 0 and 1, processor numbers 0
/// and 1, both with physical LPIs, the second marked Last).
pub fn gic_regions() -> (MmioRegion, MmioRegion) {
    let gicd = fake_region(0x1_0000);
    gicd.write32(0x4, GICD_TYPER_LPIS).unwrap();
    let gicr = fake_region(4 * FRAME_SIZE);
    gicr.write64(0x8, 1).unwrap(); // PLPIS, processor 0, affinity 0
    gicr.write64(2 * FRAME_SIZE + 0x8, (1 << 32) | (1 << 8) | (1 << 4) | 1)
        .unwrap();
    (gicd, gicr)
}

/// A GIC for CPU `affinity` with LPIs enabled at the default 14 bits.
pub fn gic_with_lpis(affinity: u32) -> (GicV3, MmioRegion, MmioRegion) {
    let (gicd, gicr) = gic_regions();
    let mut gic = GicV3::new(&gicd, &gicr, cpu(affinity)).unwrap();
    gic.enable_lpis(GICR_PA, LpiConfig::default()).unwrap();
    (gic, gicd, gicr)
}

/// GITS_TYPER of QEMU 10.0 (gic-version=3): Physical, ITT_entry_size = 12 bytes, ID_bits = 16,
/// Devbits = 16, CIL = 1, CIDbits = 16, PTA = 0.
pub const QEMU_GITS_TYPER: u64 = (1 << 36) | (15 << 32) | (15 << 13) | (15 << 8) | (11 << 4) | 1;
/// GITS_BASER0 at reset: Devices, 8-byte entries, 64K pages.
pub const QEMU_GITS_BASER0: u64 = (1 << 56) | (7 << 48) | (2 << 8);
/// GITS_BASER1 at reset: Collections, 8-byte entries, 64K pages.
pub const QEMU_GITS_BASER1: u64 = (4 << 56) | (7 << 48) | (2 << 8);

/// An ITS register file (control + translation frames) with QEMU's reset values.
pub struct ItsFixture {
    pub region: MmioRegion,
}

impl ItsFixture {
    pub fn qemu() -> Self {
        Self::with_typer(QEMU_GITS_TYPER)
    }

    pub fn with_typer(typer: u64) -> Self {
        let region = fake_region(0x2_0000);
        region.write32(0x0, 1 << 31).unwrap(); // GITS_CTLR.Quiescent
        region.write64(0x8, typer).unwrap();
        region.write64(0x100, QEMU_GITS_BASER0).unwrap();
        region.write64(0x108, QEMU_GITS_BASER1).unwrap();
        ItsFixture { region }
    }

    /// Plays the ITS: it will have consumed every command up to (not including) slot `index`.
    pub fn consume_to(&self, index: u32) {
        self.region.write64(0x90, u64::from(index) << 5).unwrap();
    }

    pub fn ctlr(&self) -> u32 {
        self.region.read32(0x0).unwrap()
    }
    pub fn baser(&self, n: u64) -> u64 {
        self.region.read64(0x100 + 8 * n).unwrap()
    }
    pub fn cbaser(&self) -> u64 {
        self.region.read64(0x80).unwrap()
    }
    pub fn cwriter(&self) -> u64 {
        self.region.read64(0x88).unwrap()
    }
}
