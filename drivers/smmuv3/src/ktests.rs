//! In-QEMU tests of the bound SMMU (`smmuv3::ktests::*`); each skips when no SMMU is bound
//! (a machine without `iommu=smmuv3`, or the driver not registered).

use alloc::sync::Arc;

use iommu::{AttachTarget, IommuDomain, IommuOps, Prot};
use kapi::Iova;
use kapi::dma_mem::Frames;
use ktest::{kassert, kassert_eq, kfail, ktests, ktry, skip};

use crate::cmd::{Command, encode};
use crate::event::CmdqError;
use crate::hw::Reg;
use crate::regs::{CR0, GBPA, IRQ_CTRL};
use crate::ste::SteConfig;
use crate::{Smmu, SmmuError, StreamId};

/// A StreamID no device on QEMU `virt` uses (bus 0xfe), for the STE tests.
const SPARE_SID: u32 = 0xfe00;

fn live() -> Option<Arc<Smmu>> {
    crate::instances().into_iter().next()
}

ktests! {
    /// The SMMU is up as the bring-up left it: translation and both queues on, both
    /// interrupts on, GBPA aborting, no global error pending.
    fn smmu_is_enabled_with_queues_and_interrupts() -> ktest::Result {
        let Some(s) = live() else { skip!("no SMMUv3 bound") };
        let on = (CR0::SMMUEN::SET + CR0::EVENTQEN::SET + CR0::CMDQEN::SET).value;
        kassert_eq!(s.register(Reg::Cr0Ack) & on, on);
        let irqs = (IRQ_CTRL::EVENTQ_IRQEN::SET + IRQ_CTRL::GERROR_IRQEN::SET).value;
        kassert_eq!(s.register(Reg::IrqCtrlAck) & irqs, irqs);
        kassert!(GBPA::ABORT.is_set(s.register(Reg::Gbpa)), "GBPA does not abort");
        kassert_eq!(s.register(Reg::Gerror) ^ s.register(Reg::Gerrorn), 0);
        Ok(())
    }

    /// A CMD_SYNC on its own completes: CMDQ_CONS catches up with CMDQ_PROD.
    fn cmd_sync_completes() -> ktest::Result {
        let Some(s) = live() else { skip!("no SMMUv3 bound") };
        let before = s.cmdq_stats();
        ktry!(s.sync());
        kassert_eq!(s.cmdq_stats().syncs, before.syncs + 1);
        let (prod, cons) = s.cmdq_registers();
        kassert_eq!(prod & 0xf_ffff, cons & 0xf_ffff);
        Ok(())
    }

    /// An illegal command (opcode 0x07) is reported with its index and opcode, skipped, and
    /// acknowledged; the queue then takes commands as before.
    fn illegal_command_is_reported_and_skipped() -> ktest::Result {
        let Some(s) = live() else { skip!("no SMMUv3 bound") };
        let before = s.cmdq_stats();
        let index = s.cmdq_registers().0 & (s.cmdq_entries() - 1);
        match s.submit_raw_for_test([0x07, 0]) {
            Err(SmmuError::CommandRefused(fault)) => {
                kassert_eq!(fault.error, CmdqError::Illegal);
                kassert_eq!(fault.opcode, 0x07);
                kassert_eq!(fault.index, index);
            }
            other => kfail!("expected CommandRefused, got {other:?}"),
        }
        let after = s.cmdq_stats();
        kassert_eq!(after.errors, before.errors + 1);
        kassert_eq!(s.register(Reg::Gerror) ^ s.register(Reg::Gerrorn), 0);
        ktry!(s.sync());
        ktry!(s.submit_raw_for_test(encode(&Command::CfgiAll)));
        kassert_eq!(s.cmdq_stats().errors, after.errors);
        Ok(())
    }

    /// A domain maps and translates; unmap issues nothing until iotlb_sync, which issues one
    /// TLBI per planned command (one for a single page, Leaf = 1) and one CMD_SYNC; unmapping
    /// the rest page by page leaves the tables; unmapping their span frees them (Leaf = 0);
    /// dropping the domain returns its ASID.
    fn domain_maps_and_unmaps_with_the_planned_tlbis() -> ktest::Result {
        let Some(s) = live() else { skip!("no SMMUv3 bound") };
        let asids = s.asids_in_use();
        let target = ktry!(Frames::alloc(2).ok_or("no frames"));
        let d = ktry!(s.new_domain());
        ktry!(d.map(Iova(0x10_0000), target.pa(), 0x4000, Prot::RW));
        kassert_eq!(d.iova_to_phys(Iova(0x10_1234)), Some(target.pa() + 0x1234));
        kassert_eq!(d.table_pages(), 4);
        let before = s.cmdq_stats();
        kassert_eq!(d.unmap(Iova(0x10_1000), 0x1000), 0x1000);
        kassert_eq!(s.cmdq_stats().commands, before.commands, "unmap issued commands");
        d.iotlb_sync().expect("invalidation");
        let after = s.cmdq_stats();
        kassert_eq!(after.tlbi, before.tlbi + 1);
        kassert_eq!(after.syncs, before.syncs + 1);
        let st = d.stats();
        kassert_eq!(st.tlbi_commands, 1);
        kassert!(st.last_flush.is_some_and(|f| f.leaf && !f.whole_asid), "{st:?}");
        kassert_eq!(d.iova_to_phys(Iova(0x10_1000)), None);
        d.unmap(Iova(0x10_0000), 0x1000);
        d.unmap(Iova(0x10_2000), 0x2000);
        d.iotlb_sync().expect("invalidation");
        kassert!(d.stats().last_flush.is_some_and(|f| f.leaf), "{:?}", d.stats());
        kassert_eq!(d.table_pages(), 4, "emptied tables stay for the next map");
        // An unmap of the level-0 entry's whole span takes them (Leaf = 0: walk caches too).
        d.unmap(Iova(0), 512 << 30);
        d.iotlb_sync().expect("invalidation");
        kassert!(d.stats().last_flush.is_some_and(|f| !f.leaf), "{:?}", d.stats());
        kassert_eq!(d.table_pages(), 1);
        drop(d);
        kassert_eq!(s.asids_in_use(), asids);
        Ok(())
    }

    /// STE writes are visible in the table: a spare StreamID gets its level-2 table on probe,
    /// and reads back ABORT, bypass, stage 1 with the domain's CD, ABORT again.
    fn ste_writes_are_visible() -> ktest::Result {
        let Some(s) = live() else { skip!("no SMMUv3 bound") };
        let sid = StreamId(SPARE_SID);
        if s.master(sid).is_some() {
            skip!("StreamID {sid} is in use");
        }
        let blocked = s.stats().streams_not_blocked;
        ktry!(s.probe_device("ktest", &[sid.0]));
        kassert_eq!(s.ste(sid).map(|e| e.config()), Some(SteConfig::Abort));
        ktry!(s.attach(&[sid.0], &AttachTarget::Identity));
        kassert_eq!(s.ste(sid).map(|e| e.config()), Some(SteConfig::Bypass));
        kassert_eq!(s.stats().streams_not_blocked, blocked + 1);
        let d = ktry!(s.new_domain());
        let cd = d.cd_address();
        let target: Arc<dyn IommuDomain> = d.clone();
        ktry!(s.attach(&[sid.0], &AttachTarget::Translated(target)));
        kassert_eq!(s.ste(sid).map(|e| e.config()), Some(SteConfig::Stage1 { cd }));
        kassert_eq!(d.cd().asid(), d.asid());
        ktry!(s.attach(&[sid.0], &AttachTarget::Blocked));
        kassert_eq!(s.ste(sid).map(|e| e.config()), Some(SteConfig::Abort));
        s.release_device(&[sid.0]);
        kassert_eq!(s.stats().streams_not_blocked, blocked);
        Ok(())
    }
}
