//! The Interrupt Translation Service: MSIs from PCI devices become LPIs.
//!
//! A device signals an MSI by writing its EventID to GITS_TRANSLATER; the bus tags the write with
//! the device's DeviceID (for PCI, the requester ID mapped through the DT `msi-map`). The ITS looks
//! the pair up in in-memory tables (IHI 0069 §5.2):
//!
//! ```text
//!   DeviceID --device table--> ITT --(EventID)--> (LPI INTID, collection)
//!   collection --collection table--> redistributor
//! ```
//!
//! Software edits those tables only through commands in a ring in memory ([`cmd`], [`queue`]).
//! This driver maps one collection (ICID 0) to the boot CPU's redistributor, gives each device an
//! [`ItsDevice`] (an ITT and a MAPD) and each vector an LPI (MAPTI + INV + SYNC). Dropping the
//! `ItsDevice` discards every vector and unmaps the DeviceID, so unbinding a driver leaves nothing
//! behind.
//!
//! # Shared DeviceIDs
//! Functions behind a conventional PCI bridge all write their MSIs with the bridge's requester
//! ID, so the ITS sees one DeviceID for several functions, each with its own driver. A DeviceID
//! therefore has one ITT and one MAPD, and any number of [`ItsDevice`] handles on it: each
//! handle reserves its own block of EventIDs in the shared ITT (so the MSI data of two functions
//! never collide), dropping a handle discards only its own events, and only the last handle
//! unmaps the DeviceID (MAPD V=0) and frees the ITT.
//!
//! # Ordering rules this module follows
//! - Tables and the command queue are programmed only while GITS_CTLR.Enabled = 0 and
//!   GITS_CTLR.Quiescent = 1, and are zeroed and visible in memory before Enabled is set
//!   (GITS_BASER<n>, GITS_CBASER: "behaviour is UNPREDICTABLE if written while the ITS is enabled").
//! - A command (and any configuration byte or ITT it relies on) is written to memory, then a
//!   barrier, then GITS_CWRITER (§5.2: the ITS may read commands as soon as CWRITER moves).
//! - A changed LPI configuration byte takes effect only after INV; the effects of MAPTI, INV and
//!   DISCARD are guaranteed at the redistributor only once a later SYNC has completed.
//! - Every wait is bounded: GITS_CREADR catching up with GITS_CWRITER, or Stalled, or a timeout.
//!
//! # Locking
//! The command queue, the write index and the LPI -> (DeviceID, EventID) routes live under one
//! [`IrqLock`]: `kapi::irq` enables and disables lines from thread context, but also disables an
//! unexpected interrupt from IRQ context, and both paths issue INV + SYNC.

pub mod cmd;
pub mod queue;
pub mod table;

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use kapi::dma_mem::Frames;
use kapi::irq::{IrqLine, Trigger};
use kapi::mmio::{Mmio, MmioRegion};
use kapi::sync::IrqLock;
use kapi::time::poll_until;
use kapi::{PhysAddr, platform};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

use crate::lpi::{Lpis, TableAccess, access_from_shareability};
use crate::regs::{
    GITS_BASER, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER, GITS_TRANSLATER,
    GITS_TRANSLATION_FRAME, GITS_TYPER, Gits, GitsTranslation,
};
use crate::{DEFAULT_PRIORITY, GicError, GicTable, HANDSHAKE_TIMEOUT};
use cmd::{Command, ITT_ALIGN, Itt, RdBase, encode};
use queue::Ring;
use table::{PageSize, TableType, baser_info, baser_value, cbaser_value, flat_table};

/// Size of the command queue: 2047 commands, far more than any batch this driver issues.
pub const COMMAND_QUEUE_BYTES: u64 = 0x1_0000;

/// The one collection this driver uses, mapped to the boot CPU's redistributor.
pub const COLLECTION: u16 = 0;

/// How long the ITS may take to consume a batch of commands. QEMU consumes them synchronously
/// on the GITS_CWRITER write; hardware takes microseconds.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(100);

/// What the kernel asks of the ITS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItsConfig {
    /// DeviceIDs the device table covers: `0 .. 2^device_id_bits`, clamped to GITS_TYPER.Devbits.
    /// 16 covers every PCI requester ID (the DT `msi-map` of QEMU `virt` maps RIDs 0..0xffff
    /// one to one); with QEMU's 8-byte entries that is a 512 KiB flat table.
    pub device_id_bits: u32,
}

impl Default for ItsConfig {
    fn default() -> Self {
        ItsConfig { device_id_bits: 16 }
    }
}

/// One line describing the ITS, for the boot log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItsSummary {
    /// Physical address of the control frame.
    pub base: PhysAddr,
    /// DeviceID bits the device table covers.
    pub device_id_bits: u32,
    /// EventID bits the ITS supports.
    pub event_id_bits: u32,
    /// Bytes per ITT entry.
    pub itt_entry_size: u32,
    /// Device table size in bytes.
    pub device_table_bytes: u64,
    /// Collection table size in bytes (0 when the ITS holds collections itself).
    pub collection_table_bytes: u64,
    /// Page size of the device table.
    pub page_size: PageSize,
    /// How the collection is named in commands.
    pub target: RdBase,
    /// How the ITS accesses its tables and queue.
    pub access: TableAccess,
}

impl fmt::Display for ItsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-bit DeviceIDs, {}-bit EventIDs, {}-byte ITT entries, device table {} KiB ({} pages), collection table {} KiB, command queue {} KiB, ",
            self.device_id_bits,
            self.event_id_bits,
            self.itt_entry_size,
            self.device_table_bytes / 1024,
            self.page_size,
            self.collection_table_bytes / 1024,
            COMMAND_QUEUE_BYTES / 1024,
        )?;
        match self.target {
            RdBase::ProcessorNumber(n) => write!(f, "collection {COLLECTION} -> CPU {n}")?,
            RdBase::Physical(pa) => write!(f, "collection {COLLECTION} -> RD {:#x}", pa.0)?,
        }
        write!(f, ", {}", self.access)
    }
}

/// An MSI vector: the LPI a device's EventID becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiVector {
    /// LPI INTID, for `kapi::irq::request`.
    pub intid: u32,
    /// EventID: the MSI data the device writes.
    pub event_id: u32,
}

impl MsiVector {
    /// The line to pass to `kapi::irq::request` (LPIs are always edge-triggered).
    pub fn line(&self) -> IrqLine {
        IrqLine {
            intid: self.intid,
            trigger: Trigger::Edge,
        }
    }
}

/// What a device writes to signal a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Physical address of GITS_TRANSLATER. A device whose DMA is translated by an IOMMU must be
    /// given the IOVA at which its domain maps this page (same offset within the page).
    pub address: PhysAddr,
    /// The 32-bit value to write: the EventID.
    pub data: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    device: u32,
    event: u32,
}

/// A DeviceID with a live MAPD: the ITT every [`ItsDevice`] on it shares.
struct MappedDevice {
    itt: Frames,
    event_bits: u32,
    /// One flag per EventID of the ITT: reserved by some handle (or lost to a failed DISCARD).
    reserved: Vec<bool>,
    /// Live handles; the last one to go unmaps the DeviceID.
    users: u32,
}

impl MappedDevice {
    /// Reserves the first free block of `nvec` EventIDs, rounded up to a power of two and
    /// aligned to its size: multi-message MSI writes `data | vector number`, so a handle's
    /// EventIDs must be such a block. Returns its first EventID.
    fn reserve(&mut self, nvec: u32) -> Option<u32> {
        let size = nvec.next_power_of_two() as usize;
        let base = (0..self.reserved.len()).step_by(size).find(|&b| {
            b + size <= self.reserved.len() && !self.reserved[b..b + size].contains(&true)
        })?;
        self.reserved[base..base + size].fill(true);
        Some(base as u32)
    }

    fn release(&mut self, base: u32, nvec: u32) {
        let size = nvec.next_power_of_two() as usize;
        self.reserved[base as usize..base as usize + size].fill(false);
    }
}

struct ItsState {
    /// Next command slot (GITS_CWRITER.Offset once published).
    write: u32,
    /// LPI INTID -> where it comes from, for INV on enable/disable.
    routes: BTreeMap<u32, Route>,
    /// DeviceIDs with a live MAPD.
    devices: BTreeMap<u32, MappedDevice>,
}

struct ItsMemory {
    queue: Frames,
    _device_table: Frames,
    _collection_table: Option<Frames>,
}

/// One ITS, enabled, with collection [`COLLECTION`] mapped to the boot CPU.
pub struct Its {
    regs: Mmio<Gits>,
    base: PhysAddr,
    lpis: Arc<Lpis>,
    target: RdBase,
    ring: Ring,
    queue_access: TableAccess,
    table_access: TableAccess,
    device_id_bits: u32,
    event_id_bits: u32,
    itt_entry_size: u32,
    summary: ItsSummary,
    /// `None` only after the memory had to be leaked because the ITS would not quiesce.
    memory: Option<ItsMemory>,
    state: IrqLock<ItsState>,
}

impl fmt::Debug for Its {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Its({:#x})", self.base.0)
    }
}

/// One programmed GITS_BASER<n>.
struct Table {
    frames: Frames,
    access: TableAccess,
    page_size: PageSize,
}

impl Its {
    /// Probes and enables the ITS whose registers are `region` (control + translation frames, as
    /// the DT `reg` gives them) at physical address `base`, delivering to the redistributor that
    /// owns `lpis`.
    pub(crate) fn new(
        region: &MmioRegion,
        base: PhysAddr,
        lpis: Arc<Lpis>,
        cfg: ItsConfig,
    ) -> Result<Its, GicError> {
        let regs = region.view::<Gits>(0)?;
        // Devices write to the translation frame; it must be part of what the DT describes.
        region.view::<GitsTranslation>(GITS_TRANSLATION_FRAME)?;
        let typer = regs.TYPER.extract();
        if !typer.is_set(GITS_TYPER::Physical) {
            return Err(GicError::ItsNotPhysical);
        }
        quiesce(&regs)?;

        let device_id_bits = cfg
            .device_id_bits
            .clamp(1, typer.read(GITS_TYPER::Devbits) as u32 + 1);
        let event_id_bits = typer.read(GITS_TYPER::ID_bits) as u32 + 1;
        let itt_entry_size = typer.read(GITS_TYPER::ITT_entry_size) as u32 + 1;
        // GITS_TYPER.PTA decides how MAPC and SYNC name a redistributor.
        let target = if typer.is_set(GITS_TYPER::PTA) {
            RdBase::Physical(lpis.redistributor_pa())
        } else {
            RdBase::ProcessorNumber(lpis.processor_number())
        };
        let hardware_collections = typer.read(GITS_TYPER::HCC);

        let memory = match program_tables(&regs, device_id_bits, hardware_collections) {
            Ok(m) => m,
            Err(e) => {
                reset_tables(&regs);
                return Err(e);
            }
        };
        let (device_table, collection_table, queue, queue_access) = memory;

        let summary = ItsSummary {
            base,
            device_id_bits,
            event_id_bits,
            itt_entry_size,
            device_table_bytes: device_table.frames.size(),
            collection_table_bytes: collection_table.as_ref().map_or(0, |t| t.frames.size()),
            page_size: device_table.page_size,
            target,
            access: device_table.access,
        };
        // Everything the ITS reads once enabled (zeroed tables, zeroed queue) must be visible to
        // it before GITS_CTLR.Enabled is set.
        kapi::barrier::dsb_sy();
        regs.CTLR.modify(GITS_CTLR::Enabled::SET);

        let its = Its {
            regs,
            base,
            lpis,
            target,
            ring: Ring::new(COMMAND_QUEUE_BYTES),
            queue_access,
            table_access: device_table.access,
            device_id_bits,
            event_id_bits,
            itt_entry_size,
            summary,
            memory: Some(ItsMemory {
                queue,
                _device_table: device_table.frames,
                _collection_table: collection_table.map(|t| t.frames),
            }),
            state: IrqLock::new(ItsState {
                write: 0,
                routes: BTreeMap::new(),
                devices: BTreeMap::new(),
            }),
        };
        // Commands are processed only while the ITS is enabled. Map the collection to the boot
        // CPU and have the redistributor load the (all-disabled) configuration of its LPIs.
        {
            let mut st = its.state.lock();
            its.submit(
                &mut st,
                &[
                    Command::Mapc {
                        icid: COLLECTION,
                        target: Some(target),
                    },
                    Command::Invall { icid: COLLECTION },
                    Command::Sync { target },
                ],
            )?;
        }
        Ok(its)
    }

    /// Physical address of GITS_TRANSLATER, the MSI doorbell (ITS base + 0x1_0040).
    pub fn msi_doorbell(&self) -> PhysAddr {
        PhysAddr(self.base.0 + GITS_TRANSLATER)
    }

    /// DeviceIDs this ITS accepts: `0 .. 2^device_id_bits`.
    pub fn device_id_bits(&self) -> u32 {
        self.device_id_bits
    }

    /// EventID bits: a device can have up to `2^event_id_bits` vectors.
    pub fn event_id_bits(&self) -> u32 {
        self.event_id_bits
    }

    /// The LPI tables this ITS delivers to.
    pub fn lpis(&self) -> &Arc<Lpis> {
        &self.lpis
    }

    /// A summary for the boot log.
    pub fn summary(&self) -> ItsSummary {
        self.summary
    }

    /// Gives `device_id` an interrupt translation table and maps it (MAPD + SYNC), with a block
    /// of `nvec` EventIDs for this handle. Vectors are then added with
    /// [`ItsDevice::alloc_vector`].
    ///
    /// Functions behind a conventional PCI bridge share one DeviceID and bind one by one, and a
    /// mapped ITT cannot grow; so the ITT covers as many EventIDs as fill the page it occupies
    /// anyway ([`table::itt_event_bits`]), and when `device_id` is mapped already no command is
    /// issued: the new handle reserves `nvec` free EventIDs of the existing ITT, or fails with
    /// [`GicError::IttFull`].
    pub fn map_device(self: &Arc<Self>, device_id: u32, nvec: u32) -> Result<ItsDevice, GicError> {
        if u64::from(device_id) >> self.device_id_bits != 0 {
            return Err(GicError::DeviceIdOutOfRange {
                device_id,
                bits: self.device_id_bits,
            });
        }
        let max = 1u64 << self.event_id_bits;
        if nvec == 0 || u64::from(nvec) > max {
            return Err(GicError::VectorCount {
                requested: nvec,
                max,
            });
        }
        if let Some(dev) = self.share_device(&mut self.state.lock(), device_id, nvec)? {
            return Ok(dev);
        }
        let event_bits = table::itt_event_bits(nvec, self.itt_entry_size, self.event_id_bits);
        let bytes = table::itt_bytes(event_bits, self.itt_entry_size).max(ITT_ALIGN);
        // Frames are zeroed (every ITT entry invalid) and page aligned (MAPD wants 256 bytes).
        let itt = Frames::alloc_bytes(bytes).ok_or(GicError::OutOfMemory {
            table: GicTable::Itt,
            bytes,
        })?;
        if self.table_access == TableAccess::NonCoherent {
            platform::get().cache_clean(itt.va(), itt.size());
        }
        let mut st = self.state.lock();
        // Another function on this DeviceID may have mapped it while the ITT was allocated; the
        // new ITT was never shown to the ITS and simply goes back.
        if let Some(dev) = self.share_device(&mut st, device_id, nvec)? {
            return Ok(dev);
        }
        let mapd = Command::Mapd {
            device: device_id,
            itt: Some(Itt {
                pa: itt.pa(),
                event_bits,
            }),
        };
        if let Err(e) = self.submit(
            &mut st,
            &[
                mapd,
                Command::Sync {
                    target: self.target,
                },
            ],
        ) {
            // The ITS may still act on the MAPD later: never hand its ITT out again.
            core::mem::forget(itt);
            return Err(e);
        }
        let mut mapped = MappedDevice {
            itt,
            event_bits,
            reserved: vec![false; 1 << event_bits],
            users: 1,
        };
        // An empty ITT holds any block that fits it; nvec <= 2^event_bits.
        let base = mapped.reserve(nvec).unwrap_or(0);
        st.devices.insert(device_id, mapped);
        drop(st);
        Ok(ItsDevice {
            its: self.clone(),
            device_id,
            event_bits,
            base,
            vectors: vec![None; nvec as usize],
        })
    }

    /// A new handle on `device_id`'s ITT if it is mapped already (`None` if it is not).
    fn share_device(
        self: &Arc<Self>,
        st: &mut ItsState,
        device_id: u32,
        nvec: u32,
    ) -> Result<Option<ItsDevice>, GicError> {
        let Some(mapped) = st.devices.get_mut(&device_id) else {
            return Ok(None);
        };
        let base = mapped.reserve(nvec).ok_or(GicError::IttFull {
            device_id,
            requested: nvec,
        })?;
        mapped.users += 1;
        Ok(Some(ItsDevice {
            its: self.clone(),
            device_id,
            event_bits: mapped.event_bits,
            base,
            vectors: vec![None; nvec as usize],
        }))
    }

    /// Sets the enable bit of LPI `intid` and makes the redistributor reload it (INV + SYNC) if
    /// the LPI is mapped through this ITS.
    pub(crate) fn set_lpi_enabled(&self, intid: u32, enabled: bool) -> Result<(), GicError> {
        let mut st = self.state.lock();
        self.lpis.set_config(intid, DEFAULT_PRIORITY, enabled);
        match st.routes.get(&intid).copied() {
            Some(r) => self.submit(
                &mut st,
                &[
                    Command::Inv {
                        device: r.device,
                        event: r.event,
                    },
                    Command::Sync {
                        target: self.target,
                    },
                ],
            ),
            None => Ok(()),
        }
    }

    /// Writes `cmds` to the queue, publishes them and waits until the ITS has consumed them,
    /// in chunks the ring can hold.
    fn submit(&self, st: &mut ItsState, cmds: &[Command]) -> Result<(), GicError> {
        let queue = &self.memory.as_ref().ok_or(GicError::ItsDisabled)?.queue;
        for chunk in cmds.chunks(self.ring.capacity() as usize) {
            for cmd in chunk {
                let offset = Ring::byte_offset(st.write);
                for (i, word) in encode(cmd).iter().enumerate() {
                    queue.write_u64(offset + 8 * i as u64, *word);
                }
                if self.queue_access == TableAccess::NonCoherent {
                    platform::get().cache_clean(queue.va() + offset, cmd::COMMAND_SIZE);
                }
                st.write = self.ring.next(st.write);
            }
            self.publish_and_wait(queue, st.write)?;
        }
        Ok(())
    }

    fn publish_and_wait(&self, queue: &Frames, write: u32) -> Result<(), GicError> {
        // The commands, and the configuration bytes and ITTs they refer to, must be observable by
        // the ITS before GITS_CWRITER tells it to read them (§5.2). A non-coherent ITS reads
        // memory directly: the caches were cleaned, and the DSB waits for that to complete.
        if self.queue_access == TableAccess::Coherent {
            kapi::barrier::dsb_ishst();
        } else {
            kapi::barrier::dsb_sy();
        }
        self.regs
            .CWRITER
            .write(GITS_CWRITER::Offset.val(u64::from(write)));
        let mut stalled = None;
        poll_until(COMMAND_TIMEOUT, || {
            let r = self.regs.CREADR.extract();
            if r.is_set(GITS_CREADR::Stalled) {
                stalled = Some(r.read(GITS_CREADR::Offset) as u32);
                return true;
            }
            r.read(GITS_CREADR::Offset) as u32 == write
        })
        .map_err(|_| GicError::Timeout {
            register: "GITS_CREADR",
        })?;
        match stalled {
            Some(index) => {
                let offset = Ring::byte_offset(index);
                let opcode = if self.ring.valid(index) {
                    queue.read_u64(offset) as u8
                } else {
                    0
                };
                Err(GicError::CommandStalled { offset, opcode })
            }
            None => Ok(()),
        }
    }

    /// The four words of command slot `index` (tests read back what was queued).
    #[cfg(test)]
    fn queued(&self, index: u32) -> [u64; 4] {
        let Some(m) = &self.memory else {
            return [0; 4];
        };
        let o = Ring::byte_offset(index);
        [
            m.queue.read_u64(o),
            m.queue.read_u64(o + 8),
            m.queue.read_u64(o + 16),
            m.queue.read_u64(o + 24),
        ]
    }
}

impl Drop for Its {
    fn drop(&mut self) {
        // The ITS owns its tables while enabled: disable it and wait for it to go quiet before
        // the memory is freed; if it will not, keep the memory.
        if quiesce(&self.regs).is_err() {
            log::error!(target: "gicv3", "ITS {:#x} does not quiesce; keeping its tables", self.base.0);
            core::mem::forget(self.memory.take());
            return;
        }
        reset_tables(&self.regs);
    }
}

/// Clears GITS_CTLR.Enabled and waits for GITS_CTLR.Quiescent: the state in which the tables and
/// the command queue may be (re)programmed (§12.19, GITS_CTLR).
fn quiesce(regs: &Mmio<Gits>) -> Result<(), GicError> {
    if regs.CTLR.is_set(GITS_CTLR::Enabled) {
        regs.CTLR.modify(GITS_CTLR::Enabled::CLEAR);
    }
    poll_until(HANDSHAKE_TIMEOUT, || regs.CTLR.is_set(GITS_CTLR::Quiescent)).map_err(|_| {
        GicError::Timeout {
            register: "GITS_CTLR.Quiescent",
        }
    })
}

/// Marks every table and the command queue invalid (the ITS is disabled and quiescent).
fn reset_tables(regs: &Mmio<Gits>) {
    for baser in regs.BASER.iter() {
        baser.set(read_only_fields(baser.get()));
    }
    regs.CBASER.set(0);
}

/// Type and Entry_Size of a GITS_BASER<n> value: read-only, written back as they were read.
fn read_only_fields(value: u64) -> u64 {
    let r = tock_registers::LocalRegisterCopy::<u64, GITS_BASER::Register>::new(value);
    (GITS_BASER::Type.val(r.read(GITS_BASER::Type))
        + GITS_BASER::Entry_Size.val(r.read(GITS_BASER::Entry_Size)))
    .value
}

type TablesAndQueue = (Table, Option<Table>, Frames, TableAccess);

/// Allocates and programs the device table, the collection table and the command queue.
fn program_tables(
    regs: &Mmio<Gits>,
    device_id_bits: u32,
    hardware_collections: u64,
) -> Result<TablesAndQueue, GicError> {
    let mut devices = None;
    let mut collections = None;
    for (n, baser) in regs.BASER.iter().enumerate() {
        let info = baser_info(baser.get());
        match info.table {
            TableType::Devices if devices.is_none() => {
                devices = Some(program_baser(
                    regs,
                    n,
                    1u64 << device_id_bits,
                    GicTable::Device,
                )?);
            }
            TableType::Collections if collections.is_none() => {
                // One collection (the boot CPU); a flat table of one page holds it.
                collections = Some(program_baser(regs, n, 1, GicTable::Collection)?);
            }
            // vPE tables (GICv4) and unimplemented registers stay invalid.
            _ => {}
        }
    }
    let devices = devices.ok_or(GicError::MissingTable {
        table: GicTable::Device,
    })?;
    // With GITS_TYPER.HCC > 0 the ITS holds some collections itself and needs no table for them.
    if collections.is_none() && hardware_collections == 0 {
        return Err(GicError::MissingTable {
            table: GicTable::Collection,
        });
    }

    let queue = Frames::alloc_bytes(COMMAND_QUEUE_BYTES).ok_or(GicError::OutOfMemory {
        table: GicTable::CommandQueue,
        bytes: COMMAND_QUEUE_BYTES,
    })?;
    regs.CBASER.set(cbaser_value(
        queue.pa(),
        COMMAND_QUEUE_BYTES,
        TableAccess::Coherent,
    ));
    let queue_access = access_from_shareability(regs.CBASER.read(GITS_CBASER::Shareability));
    if queue_access == TableAccess::NonCoherent {
        regs.CBASER
            .set(cbaser_value(queue.pa(), COMMAND_QUEUE_BYTES, queue_access));
        platform::get().cache_clean(queue.va(), queue.size());
    }
    // Writing GITS_CBASER resets GITS_CREADR to 0; start the writer there too.
    regs.CWRITER.set(0);
    Ok((devices, collections, queue, queue_access))
}

/// Programs GITS_BASER<`n`> with a flat table of `entries`: the register's current page size
/// first, then the others largest first, keeping the first one the register accepts.
fn program_baser(
    regs: &Mmio<Gits>,
    n: usize,
    entries: u64,
    kind: GicTable,
) -> Result<Table, GicError> {
    let baser = &regs.BASER[n];
    let info = baser_info(baser.get());
    let ro = read_only_fields(baser.get());
    let mut too_large = None;
    let sizes = core::iter::once(info.page_size).chain(
        PageSize::PREFERENCE
            .into_iter()
            .filter(|p| *p != info.page_size),
    );
    for page_size in sizes {
        let plan = match flat_table(entries, info.entry_size, page_size) {
            Ok(plan) => plan,
            Err(bytes) => {
                too_large = Some(bytes);
                continue;
            }
        };
        let bytes = plan.bytes();
        // Zeroed and naturally aligned, so aligned to the page size.
        let frames =
            Frames::alloc_bytes(bytes).ok_or(GicError::OutOfMemory { table: kind, bytes })?;
        baser.set(baser_value(&plan, frames.pa(), TableAccess::Coherent) | ro);
        // Page_Size may be read-only or refuse a value; Shareability reads back 0 when the ITS
        // cannot snoop (§12.19, GITS_BASER<n>). Read back to find out.
        let back = baser.extract();
        if PageSize::from_field(back.read(GITS_BASER::Page_Size)) != page_size {
            continue;
        }
        let access = access_from_shareability(back.read(GITS_BASER::Shareability));
        if access == TableAccess::NonCoherent {
            baser.set(baser_value(&plan, frames.pa(), access) | ro);
            platform::get().cache_clean(frames.va(), frames.size());
        }
        return Ok(Table {
            frames,
            access,
            page_size,
        });
    }
    baser.set(ro);
    Err(match too_large {
        Some(bytes) => GicError::TableTooLarge { table: kind, bytes },
        None => GicError::PageSizeRejected { index: n },
    })
}

/// One function's share of a DeviceID mapped to an interrupt translation table: a block of
/// EventIDs and the vectors on them. Dropping it discards its vectors (DISCARD); the last handle
/// on the DeviceID also unmaps it (MAPD V=0). Only after the SYNC are the LPIs, the EventIDs
/// and (with the last handle) the ITT freed.
///
/// Drop order for a driver: free its `kapi::irq` handles, turn off MSI in the device, then drop
/// the `ItsDevice`.
pub struct ItsDevice {
    its: Arc<Its>,
    device_id: u32,
    event_bits: u32,
    /// First EventID of this handle's block.
    base: u32,
    /// EventID `base + i` -> LPI INTID.
    vectors: Vec<Option<u32>>,
}

impl fmt::Debug for ItsDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ItsDevice({:#x}, EventIDs {}.., {} vectors)",
            self.device_id,
            self.base,
            self.vectors.len()
        )
    }
}

impl ItsDevice {
    /// The DeviceID.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// EventID bits the ITT covers (shared by every handle on the DeviceID).
    pub fn event_bits(&self) -> u32 {
        self.event_bits
    }

    /// The first EventID of this handle's block (0 unless the DeviceID is shared).
    pub fn first_event(&self) -> u32 {
        self.base
    }

    /// Vectors this device may have (the `nvec` it was mapped with).
    pub fn capacity(&self) -> u32 {
        self.vectors.len() as u32
    }

    /// The vectors mapped now, by EventID.
    pub fn vectors(&self) -> impl Iterator<Item = MsiVector> + '_ {
        self.vectors.iter().enumerate().filter_map(|(i, v)| {
            v.map(|intid| MsiVector {
                intid,
                event_id: self.base + i as u32,
            })
        })
    }

    /// The slot of `vector`, if it is mapped on this handle.
    fn slot(&self, vector: MsiVector) -> Option<usize> {
        let i = vector.event_id.checked_sub(self.base)? as usize;
        (self.vectors.get(i).copied().flatten() == Some(vector.intid)).then_some(i)
    }

    /// Maps the lowest free EventID of this handle's block to a new LPI (MAPTI + INV + SYNC).
    /// The LPI starts disabled; `kapi::irq::request(vector.line(), ..)` enables it. EventIDs are
    /// handed out from the block's base up, as PCI multi-message MSI expects (data = base |
    /// vector number).
    pub fn alloc_vector(&mut self) -> Result<MsiVector, GicError> {
        let slot = self
            .vectors
            .iter()
            .position(Option::is_none)
            .ok_or(GicError::NoFreeEvent {
                device_id: self.device_id,
            })?;
        let event = self.base + slot as u32;
        let intid = self.its.lpis.alloc()?;
        // From here the slot owns the LPI: if the commands fail, drop still discards it.
        self.vectors[slot] = Some(intid);
        let mut st = self.its.state.lock();
        self.its.submit(
            &mut st,
            &[
                Command::Mapti {
                    device: self.device_id,
                    event,
                    intid,
                    icid: COLLECTION,
                },
                Command::Inv {
                    device: self.device_id,
                    event,
                },
                Command::Sync {
                    target: self.its.target,
                },
            ],
        )?;
        st.routes.insert(
            intid,
            Route {
                device: self.device_id,
                event,
            },
        );
        Ok(MsiVector {
            intid,
            event_id: event,
        })
    }

    /// Unmaps one vector (DISCARD + SYNC) and frees its LPI. Its `kapi::irq` handle must already
    /// be gone.
    pub fn free_vector(&mut self, vector: MsiVector) -> Result<(), GicError> {
        let slot = self.slot(vector).ok_or(GicError::NotMapped {
            intid: vector.intid,
        })?;
        self.its
            .lpis
            .set_config(vector.intid, DEFAULT_PRIORITY, false);
        let mut st = self.its.state.lock();
        self.its.submit(
            &mut st,
            &[
                Command::Discard {
                    device: self.device_id,
                    event: vector.event_id,
                },
                Command::Sync {
                    target: self.its.target,
                },
            ],
        )?;
        st.routes.remove(&vector.intid);
        drop(st);
        self.vectors[slot] = None;
        self.its.lpis.free(vector.intid);
        Ok(())
    }

    /// The MSI address and data for `vector`.
    pub fn msi_message(&self, vector: MsiVector) -> MsiMessage {
        MsiMessage {
            address: self.its.msi_doorbell(),
            data: vector.event_id,
        }
    }

    /// Makes `vector` pending as if the device had written its MSI (INT + SYNC): a self-test that
    /// needs no device.
    pub fn trigger(&self, vector: MsiVector) -> Result<(), GicError> {
        if self.slot(vector).is_none() {
            return Err(GicError::NotMapped {
                intid: vector.intid,
            });
        }
        let mut st = self.its.state.lock();
        self.its.submit(
            &mut st,
            &[
                Command::Int {
                    device: self.device_id,
                    event: vector.event_id,
                },
                Command::Sync {
                    target: self.its.target,
                },
            ],
        )
    }
}

impl Drop for ItsDevice {
    fn drop(&mut self) {
        let mapped: Vec<(u32, u32)> = self.vectors().map(|v| (v.event_id, v.intid)).collect();
        for &(_, intid) in &mapped {
            self.its.lpis.set_config(intid, DEFAULT_PRIORITY, false);
        }
        let mut cmds: Vec<Command> = mapped
            .iter()
            .map(|&(event, _)| Command::Discard {
                device: self.device_id,
                event,
            })
            .collect();
        let mut st = self.its.state.lock();
        // Decided under the lock: another handle on the DeviceID may be going at the same time.
        let last = st.devices.get(&self.device_id).is_none_or(|d| d.users <= 1);
        if last {
            cmds.push(Command::Mapd {
                device: self.device_id,
                itt: None,
            });
        }
        let result = if cmds.is_empty() {
            Ok(())
        } else {
            cmds.push(Command::Sync {
                target: self.its.target,
            });
            self.its.submit(&mut st, &cmds)
        };
        for &(_, intid) in &mapped {
            st.routes.remove(&intid);
        }
        let gone = if last {
            st.devices.remove(&self.device_id)
        } else {
            if let Some(d) = st.devices.get_mut(&self.device_id) {
                d.users -= 1;
                // EventIDs the ITS may still translate stay reserved until the DeviceID goes.
                if result.is_ok() {
                    d.release(self.base, self.capacity());
                }
            }
            None
        };
        drop(st);
        match result {
            Ok(()) => {
                for &(_, intid) in &mapped {
                    self.its.lpis.free(intid);
                }
                // The ITT goes here, after the SYNC that completed the MAPD V=0.
                drop(gone);
            }
            Err(e) => {
                // The ITS may still use the ITT and raise these LPIs: keep both out of reuse.
                if last {
                    log::error!(target: "gicv3", "ITS: unmapping DeviceID {:#x} failed: {e}; keeping its ITT and {} LPIs",
                        self.device_id, mapped.len());
                } else {
                    log::error!(target: "gicv3", "ITS: discarding {} events of DeviceID {:#x} failed: {e}; keeping their EventIDs and LPIs",
                        mapped.len(), self.device_id);
                }
                core::mem::forget(gone.map(|d| d.itt));
            }
        }
    }
}

#[cfg(test)]
mod tests;
