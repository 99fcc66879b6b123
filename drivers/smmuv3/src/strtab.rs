//! Stream table memory (IHI 0070 §3.3 "Data structures and translation procedure", §5.1 level-1
//! descriptors, §5.2 STEs), in the shape [`StreamTableLayout`] chose.
//!
//! - Linear: one block of STEs, every one written ABORT before the SMMU is enabled.
//! - Two-level: the level-1 table starts all invalid (Span = 0: traffic from those StreamIDs is
//!   refused with C_BAD_STREAMID). A level-2 table of 2^SPLIT STEs is allocated when the first
//!   StreamID in its range is probed, filled with ABORT STEs, made visible, and only then linked
//!   by one 64-bit store of the level-1 descriptor; the caller then invalidates the range
//!   (CFGI_STE_RANGE + CMD_SYNC). Level-2 tables stay until the SMMU is torn down: freeing one
//!   safely would need every STE in it abort, the descriptor invalidated and synced, for 16 KiB.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use kapi::barrier::dmb_oshst;
use kapi::dma_mem::Frames;

use crate::hw::{Coherency, SmmuIo};
use crate::ste::{
    L1_DESC_SIZE, L2_TABLE_BYTES, L2_TABLE_ENTRIES, STE_SIZE, STE_WORDS, Ste, SteIndex,
    StreamTableLayout, l1_descriptor,
};
use crate::{PhysAddr, SmmuError, StreamId, Structure};

/// Where one STE lives: its table's memory and byte offset.
#[derive(Clone, Debug)]
pub struct SteSlot {
    /// The linear or level-2 table.
    pub mem: Arc<Frames>,
    /// Byte offset of the STE.
    pub offset: u64,
}

impl SteSlot {
    /// The STE as it is in memory.
    pub fn read(&self) -> Ste {
        let mut words = [0; STE_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.mem.read_u64(self.offset + 8 * i as u64);
        }
        Ste::from_words(words)
    }
}

#[derive(Debug)]
enum Tables {
    Linear(Arc<Frames>),
    TwoLevel {
        l1: Arc<Frames>,
        l2: BTreeMap<u32, Arc<Frames>>,
    },
}

/// The stream table's memory.
#[derive(Debug)]
pub struct StreamTable {
    layout: StreamTableLayout,
    tables: Tables,
    coherency: Coherency,
}

/// Writes ABORT STEs over `count` entries from `offset` (a fresh table is zero = V = 0, which
/// would raise C_BAD_STE for every transaction instead of aborting quietly).
fn fill_abort(mem: &Frames, offset: u64, count: u64) {
    let abort = Ste::abort();
    for i in 0..count {
        for (w, value) in abort.words().iter().enumerate() {
            if *value != 0 {
                mem.write_u64(offset + i * STE_SIZE + 8 * w as u64, *value);
            }
        }
    }
}

impl StreamTable {
    /// Allocates the table for `layout`: a linear table full of ABORT STEs, or an all-invalid
    /// level-1 table.
    pub fn new(
        io: &dyn SmmuIo,
        layout: StreamTableLayout,
        coherency: Coherency,
    ) -> Result<Self, SmmuError> {
        let bytes = layout.table_bytes();
        let mem = io
            .alloc(bytes)
            .ok_or(SmmuError::NoMemory(Structure::StreamTable))?;
        let tables = match layout.l1_entries() {
            0 => {
                fill_abort(&mem, 0, bytes / STE_SIZE);
                Tables::Linear(mem)
            }
            // Zeroed memory is a table of Span = 0 descriptors already.
            _ => Tables::TwoLevel {
                l1: mem,
                l2: BTreeMap::new(),
            },
        };
        let t = Self {
            layout,
            tables,
            coherency,
        };
        t.coherency.publish(t.base_mem(), 0, bytes);
        Ok(t)
    }

    fn base_mem(&self) -> &Arc<Frames> {
        match &self.tables {
            Tables::Linear(mem) => mem,
            Tables::TwoLevel { l1, .. } => l1,
        }
    }

    /// The layout.
    pub fn layout(&self) -> StreamTableLayout {
        self.layout
    }

    /// Physical address for STRTAB_BASE.
    pub fn base(&self) -> PhysAddr {
        self.base_mem().pa()
    }

    /// Every block of memory the SMMU may read (for teardown).
    pub fn memory(&self) -> impl Iterator<Item = &Arc<Frames>> {
        let (first, rest) = match &self.tables {
            Tables::Linear(mem) => (mem, None),
            Tables::TwoLevel { l1, l2 } => (l1, Some(l2.values())),
        };
        core::iter::once(first).chain(rest.into_iter().flatten())
    }

    /// Number of level-2 tables allocated.
    pub fn l2_tables(&self) -> usize {
        match &self.tables {
            Tables::Linear(_) => 0,
            Tables::TwoLevel { l2, .. } => l2.len(),
        }
    }

    /// The STE of `sid`; `Ok(None)` when its level-2 table is not there yet.
    pub fn slot(&self, sid: StreamId) -> Result<Option<SteSlot>, SmmuError> {
        let index = self.layout.locate(sid)?;
        let (first, second) = index.offsets();
        Ok(match (&self.tables, index, second) {
            (Tables::Linear(mem), SteIndex::Linear(_), _) => Some(SteSlot {
                mem: mem.clone(),
                offset: first,
            }),
            (Tables::TwoLevel { l2, .. }, SteIndex::TwoLevel { l1, .. }, Some(offset)) => {
                l2.get(&l1).map(|mem| SteSlot {
                    mem: mem.clone(),
                    offset,
                })
            }
            _ => None,
        })
    }

    /// For a two-level table without a level-2 table for `sid`: the level-1 index to install.
    pub fn missing_l2(&self, sid: StreamId) -> Result<Option<u32>, SmmuError> {
        let index = self.layout.locate(sid)?;
        Ok(match (&self.tables, index) {
            (Tables::TwoLevel { l2, .. }, SteIndex::TwoLevel { l1, .. })
                if !l2.contains_key(&l1) =>
            {
                Some(l1)
            }
            _ => None,
        })
    }

    /// Allocates the level-2 table of level-1 entry `l1`, fills it with ABORT STEs and links it.
    /// The caller must then invalidate the StreamIDs it covers (CFGI_STE_RANGE + CMD_SYNC):
    /// the SMMU may have cached the invalid descriptor.
    pub fn install_l2(&mut self, io: &dyn SmmuIo, l1_index: u32) -> Result<(), SmmuError> {
        let Tables::TwoLevel { l1, l2 } = &mut self.tables else {
            return Ok(());
        };
        if l2.contains_key(&l1_index) || l1_index >= self.layout.l1_entries() {
            return Ok(());
        }
        let table = io
            .alloc(L2_TABLE_BYTES)
            .ok_or(SmmuError::NoMemory(Structure::L2StreamTable))?;
        let desc = l1_descriptor(table.pa())?;
        fill_abort(&table, 0, u64::from(L2_TABLE_ENTRIES));
        self.coherency.publish(&table, 0, L2_TABLE_BYTES);
        // The SMMU may walk into the level-2 table as soon as Span is non-zero: its ABORT STEs
        // must be visible before the descriptor that makes them reachable (IHI 0070 §3.21.3
        // "Configuration structures and configuration invalidation completion").
        dmb_oshst();
        let off = u64::from(l1_index) * L1_DESC_SIZE;
        // One 64-bit store: the SMMU never sees half a descriptor.
        l1.write_u64(off, desc);
        self.coherency.publish(l1, off, L1_DESC_SIZE);
        l2.insert(l1_index, table);
        Ok(())
    }

    /// The first StreamID covered by level-1 entry `l1`.
    pub fn l1_first_sid(l1: u32) -> StreamId {
        StreamId(l1 << crate::ste::SPLIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeSmmu;
    use crate::ste::{L1STD, SteConfig};
    use tock_registers::LocalRegisterCopy;

    #[test]
    fn smmuv3_strtab_linear_starts_all_abort() {
        let (_serial, _) = crate::driver_tests::serial();
        let io = FakeSmmu::qemu();
        let layout = StreamTableLayout::choose(6, true);
        let t = StreamTable::new(&io, layout, Coherency::new(true)).unwrap();
        for sid in 0..64 {
            let slot = t.slot(StreamId(sid)).unwrap().unwrap();
            assert_eq!(slot.read().config(), SteConfig::Abort, "sid {sid}");
        }
        assert!(t.slot(StreamId(64)).is_err());
        assert_eq!(t.missing_l2(StreamId(3)), Ok(None));
        assert_eq!(t.memory().count(), 1);
    }

    #[test]
    fn smmuv3_strtab_two_level_links_abort_filled_l2_lazily() {
        let (_serial, _) = crate::driver_tests::serial();
        let io = FakeSmmu::qemu();
        let layout = StreamTableLayout::choose(16, true);
        let mut t = StreamTable::new(&io, layout, Coherency::new(true)).unwrap();
        let sid = StreamId(0x1234);
        assert_eq!(t.slot(sid).unwrap().map(|s| s.offset), None);
        assert_eq!(t.missing_l2(sid), Ok(Some(0x12)));
        t.install_l2(&io, 0x12).unwrap();
        assert_eq!(t.missing_l2(sid), Ok(None));
        assert_eq!(t.l2_tables(), 1);
        // The level-1 descriptor: Span = SPLIT + 1, L2Ptr = the table.
        let l2 = t.slot(sid).unwrap().unwrap();
        let desc = LocalRegisterCopy::<u64, L1STD::Register>::new(
            t.base_mem().read_u64(0x12 * L1_DESC_SIZE),
        );
        assert_eq!(desc.read(L1STD::Span), 9);
        assert_eq!(desc.read(L1STD::L2Ptr) << 6, l2.mem.pa().0);
        assert_eq!(l2.offset, 0x34 * STE_SIZE);
        // Every STE of the new table aborts; neighbouring descriptors stay invalid.
        for i in 0..L2_TABLE_ENTRIES {
            let s = t.slot(StreamId(0x1200 | i)).unwrap().unwrap();
            assert_eq!(s.read().config(), SteConfig::Abort);
        }
        assert_eq!(t.base_mem().read_u64(0x13 * L1_DESC_SIZE), 0);
        // Installing twice changes nothing.
        t.install_l2(&io, 0x12).unwrap();
        assert_eq!(t.l2_tables(), 1);
        assert_eq!(t.memory().count(), 2);
        assert_eq!(StreamTable::l1_first_sid(0x12), StreamId(0x1200));
    }
}
