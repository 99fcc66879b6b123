//! The core's state: registered instances, groups and configured devices.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use addr::{Iova, PhysAddr};

use crate::types::*;

/// Default-domain policy: the user's (boot arguments) and firmware's choice, never the driver's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `iommu.passthrough=1`: identity by default.
    pub passthrough: bool,
    /// `iommu.identity=<dev>,...`: identity for these devices (no standard DT property asks for
    /// it; see docs/architecture.md).
    pub identity: Vec<String>,
}

/// An IOMMU group's number (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// What `configure_device` set up for a device.
#[derive(Clone)]
pub struct DeviceDma {
    /// The device's group.
    pub group: GroupId,
    /// Domain type now attached.
    pub domain_type: DomainType,
    /// The translated default domain (for `Dma`), shared by the group.
    pub domain: Option<Arc<dyn IommuDomain>>,
    /// Regions reserved in the domain's IOVA space (mapped MSI window, direct regions, holes).
    pub reserved: Vec<ReservedRegion>,
    /// The IOMMU instance's name.
    pub iommu: String,
    /// The user asked for identity but the IOMMU cannot bypass: translated instead.
    pub identity_vetoed: bool,
}

impl core::fmt::Debug for DeviceDma {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceDma")
            .field("group", &self.group)
            .field("domain_type", &self.domain_type)
            .field("domain", &self.domain.as_ref().map(|d| d.name()))
            .field("iommu", &self.iommu)
            .finish()
    }
}

struct Instance {
    node: String,
    ops: Arc<dyn IommuOps>,
}

struct Group {
    id: GroupId,
    iommu: String,
    ids: Vec<u32>,
    /// Devices configured by the kernel (default domain).
    members: Vec<String>,
    /// A `driver_managed_dma` device that owns the group.
    owner: Option<String>,
    attached: DomainType,
    default_domain: Option<Arc<dyn IommuDomain>>,
    reserved: Vec<ReservedRegion>,
}

struct Device {
    fwspec: FwSpec,
    group: GroupId,
}

/// Counters for leak checks and the boot summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Registered instances.
    pub instances: usize,
    /// Live groups.
    pub groups: usize,
    /// Configured devices.
    pub devices: usize,
    /// Sum of the instances' counters.
    pub hw: InstanceStats,
}

/// The IOMMU core. The kernel uses the global one ([`core`]); tests make their own.
pub struct IommuCore {
    instances: Vec<Instance>,
    groups: Vec<Group>,
    devices: BTreeMap<String, Device>,
    policy: Policy,
    next_group: u32,
}

static CORE: spin::Mutex<IommuCore> = spin::Mutex::new(IommuCore::new());

/// The kernel's IOMMU core. Thread context only (bind, unbind, driver probe).
pub fn core() -> spin::MutexGuard<'static, IommuCore> {
    CORE.lock()
}

impl Default for IommuCore {
    fn default() -> Self {
        Self::new()
    }
}

fn overlaps(a: &[u32], b: &[u32]) -> bool {
    a.iter().any(|x| b.contains(x))
}

impl IommuCore {
    /// An empty core.
    pub const fn new() -> Self {
        Self {
            instances: Vec::new(),
            groups: Vec::new(),
            devices: BTreeMap::new(),
            policy: Policy {
                passthrough: false,
                identity: Vec::new(),
            },
            next_group: 0,
        }
    }

    /// Sets the default-domain policy (from the boot arguments).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Registers an instance under its firmware node. Called by the IOMMU driver's probe.
    pub fn register(&mut self, node: &str, ops: Arc<dyn IommuOps>) -> Result<(), IommuError> {
        if self.instances.iter().any(|i| i.node == node) {
            return Err(IommuError::AlreadyRegistered(node.to_string()));
        }
        self.instances.push(Instance {
            node: node.to_string(),
            ops,
        });
        Ok(())
    }

    /// Removes an instance; refused while any device uses it.
    pub fn unregister(&mut self, node: &str) -> Result<(), IommuError> {
        if self.groups.iter().any(|g| g.iommu == node) {
            return Err(IommuError::InUse(node.to_string()));
        }
        let before = self.instances.len();
        self.instances.retain(|i| i.node != node);
        if self.instances.len() == before {
            return Err(IommuError::NoInstance(node.to_string()));
        }
        Ok(())
    }

    /// The instance registered for `node`.
    pub fn instance(&self, node: &str) -> Option<Arc<dyn IommuOps>> {
        self.instances
            .iter()
            .find(|i| i.node == node)
            .map(|i| i.ops.clone())
    }

    /// Every registered instance.
    pub fn instances(&self) -> Vec<(String, Arc<dyn IommuOps>)> {
        self.instances
            .iter()
            .map(|i| (i.node.clone(), i.ops.clone()))
            .collect()
    }

    fn ops(&self, node: &str) -> Result<Arc<dyn IommuOps>, IommuError> {
        self.instance(node)
            .ok_or_else(|| IommuError::NoInstance(node.to_string()))
    }

    /// The group of a configured device.
    pub fn group_of(&self, device: &str) -> Option<GroupId> {
        self.devices.get(device).map(|d| d.group)
    }

    /// Devices in the same group as `device` (itself included).
    pub fn group_members(&self, device: &str) -> Vec<String> {
        let Some(g) = self.group_of(device) else {
            return Vec::new();
        };
        self.devices
            .iter()
            .filter(|(_, d)| d.group == g)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The default domain type the policy gives `device` (before any driver veto).
    pub fn wanted_type(&self, device: &str) -> DomainType {
        if self.policy.passthrough || self.policy.identity.iter().any(|d| d == device) {
            DomainType::Identity
        } else {
            DomainType::Dma
        }
    }

    /// Sets up `device`'s DMA at bind: probes its IDs on the instance, puts it in a group and
    /// attaches the group's default domain — or, for a `driver_managed_dma` driver, leaves it
    /// blocked for the driver to attach its own domain. `reserved` are the regions every DMA
    /// domain of the device needs (the MSI window, direct-mapped memory). On error nothing is
    /// left behind and the device stays blocked.
    pub fn configure_device(
        &mut self,
        device: &str,
        fw: &FwSpec,
        driver_managed: bool,
        reserved: &[ReservedRegion],
    ) -> Result<DeviceDma, IommuError> {
        let ops = self.ops(&fw.iommu)?;
        if self.devices.contains_key(device) {
            // Configured twice without cleanup: a bus-model bug; undo the old state first.
            self.cleanup_device(device)?;
        }
        ops.probe_device(device, &fw.ids)?;
        match self.join_group(device, fw, driver_managed, reserved, &ops) {
            Ok(dma) => {
                self.devices.insert(
                    device.to_string(),
                    Device {
                        fwspec: fw.clone(),
                        group: dma.group,
                    },
                );
                Ok(dma)
            }
            Err(e) => {
                ops.release_device(&fw.ids);
                Err(e)
            }
        }
    }

    fn join_group(
        &mut self,
        device: &str,
        fw: &FwSpec,
        driver_managed: bool,
        reserved: &[ReservedRegion],
        ops: &Arc<dyn IommuOps>,
    ) -> Result<DeviceDma, IommuError> {
        let existing = self
            .groups
            .iter()
            .position(|g| g.iommu == fw.iommu && overlaps(&g.ids, &fw.ids));
        let gi = match existing {
            Some(gi) => gi,
            None => {
                let id = GroupId(self.next_group);
                self.next_group += 1;
                self.groups.push(Group {
                    id,
                    iommu: fw.iommu.clone(),
                    ids: fw.ids.clone(),
                    members: Vec::new(),
                    owner: None,
                    attached: DomainType::Blocked,
                    default_domain: None,
                    reserved: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let result = self.attach_in_group(gi, device, fw, driver_managed, reserved, ops);
        if result.is_err() && self.groups[gi].members.is_empty() && self.groups[gi].owner.is_none()
        {
            self.groups.remove(gi);
        }
        result
    }

    fn attach_in_group(
        &mut self,
        gi: usize,
        device: &str,
        fw: &FwSpec,
        driver_managed: bool,
        reserved: &[ReservedRegion],
        ops: &Arc<dyn IommuOps>,
    ) -> Result<DeviceDma, IommuError> {
        let wanted = self.wanted_type(device);
        let g = &mut self.groups[gi];
        if g.owner.is_some() || (driver_managed && !g.members.is_empty()) {
            // A driver that manages DMA itself must own the whole group: it could otherwise
            // redirect DMA of a device the kernel manages.
            return Err(IommuError::GroupBusy { group: g.id.0 });
        }
        for id in &fw.ids {
            if !g.ids.contains(id) {
                g.ids.push(*id);
            }
        }
        let base = DeviceDma {
            group: g.id,
            domain_type: DomainType::Blocked,
            domain: None,
            reserved: Vec::new(),
            iommu: ops.name().to_string(),
            identity_vetoed: false,
        };
        if driver_managed {
            ops.attach(&fw.ids, &AttachTarget::Blocked)?;
            g.owner = Some(device.to_string());
            g.attached = DomainType::Blocked;
            return Ok(base);
        }
        if !g.members.is_empty() {
            // The group already has its default domain: share it.
            g.members.push(device.to_string());
            if g.attached != DomainType::Blocked {
                let target = match &g.default_domain {
                    Some(d) => AttachTarget::Translated(d.clone()),
                    None => AttachTarget::Identity,
                };
                if let Err(e) = ops.attach(&fw.ids, &target) {
                    g.members.retain(|m| m != device);
                    return Err(e);
                }
            }
            return Ok(DeviceDma {
                domain_type: g.attached,
                domain: g.default_domain.clone(),
                reserved: g.reserved.clone(),
                ..base
            });
        }
        let vetoed = wanted == DomainType::Identity && !ops.supports_identity();
        let ty = if vetoed { DomainType::Dma } else { wanted };
        let (target, domain) = match ty {
            DomainType::Identity => (AttachTarget::Identity, None),
            _ => {
                let d = ops.alloc_domain()?;
                map_reserved(&d, reserved)?;
                (AttachTarget::Translated(d.clone()), Some(d))
            }
        };
        let ids = g.ids.clone();
        ops.attach(&ids, &target)?;
        g.members.push(device.to_string());
        g.attached = ty;
        g.default_domain = domain.clone();
        g.reserved = if domain.is_some() {
            reserved.to_vec()
        } else {
            Vec::new()
        };
        Ok(DeviceDma {
            domain_type: ty,
            domain,
            reserved: g.reserved.clone(),
            identity_vetoed: vetoed,
            ..base
        })
    }

    /// Undoes `configure_device` (probe failed, or the driver unbound): the device's streams go
    /// back to blocked unless other members of its group still use them; a default domain with
    /// no users left is released.
    pub fn cleanup_device(&mut self, device: &str) -> Result<(), IommuError> {
        let dev = self
            .devices
            .remove(device)
            .ok_or_else(|| IommuError::UnknownDevice(device.to_string()))?;
        let ops = self.ops(&dev.fwspec.iommu)?;
        let Some(gi) = self.groups.iter().position(|g| g.id == dev.group) else {
            return Err(IommuError::UnknownDevice(device.to_string()));
        };
        let g = &mut self.groups[gi];
        let was_owner = g.owner.as_deref() == Some(device);
        g.members.retain(|m| m != device);
        if was_owner {
            g.owner = None;
        }
        let last = g.members.is_empty() && g.owner.is_none();
        if last || was_owner {
            // Block before anything is freed: the device may still be doing DMA.
            let ids = g.ids.clone();
            ops.attach(&ids, &AttachTarget::Blocked)?;
            g.attached = DomainType::Blocked;
        }
        if last {
            self.groups.remove(gi);
        }
        // Streams shared with remaining group members stay probed.
        let still_used: Vec<u32> = self
            .devices
            .values()
            .filter(|d| d.fwspec.iommu == dev.fwspec.iommu)
            .flat_map(|d| d.fwspec.ids.iter().copied())
            .collect();
        let release: Vec<u32> = dev
            .fwspec
            .ids
            .iter()
            .copied()
            .filter(|id| !still_used.contains(id))
            .collect();
        if !release.is_empty() {
            ops.release_device(&release);
        }
        Ok(())
    }

    /// A new translated domain for a `driver_managed_dma` device that owns its group.
    pub fn alloc_unmanaged(&mut self, device: &str) -> Result<Arc<dyn IommuDomain>, IommuError> {
        let (ops, _) = self.owned(device)?;
        ops.alloc_domain()
    }

    fn owned(&mut self, device: &str) -> Result<(Arc<dyn IommuOps>, usize), IommuError> {
        let dev = self
            .devices
            .get(device)
            .ok_or_else(|| IommuError::UnknownDevice(device.to_string()))?;
        let gi = self
            .groups
            .iter()
            .position(|g| g.id == dev.group)
            .ok_or_else(|| IommuError::UnknownDevice(device.to_string()))?;
        if self.groups[gi].owner.as_deref() != Some(device) {
            return Err(IommuError::GroupBusy {
                group: self.groups[gi].id.0,
            });
        }
        Ok((self.ops(&dev.fwspec.iommu)?, gi))
    }

    /// Attaches a driver-owned (unmanaged) domain to the device's group.
    pub fn attach_unmanaged(
        &mut self,
        device: &str,
        domain: &Arc<dyn IommuDomain>,
    ) -> Result<(), IommuError> {
        let (ops, gi) = self.owned(device)?;
        let ids = self.groups[gi].ids.clone();
        ops.attach(&ids, &AttachTarget::Translated(domain.clone()))?;
        self.groups[gi].attached = DomainType::Unmanaged;
        Ok(())
    }

    /// Puts a driver-owned group back to blocked.
    pub fn detach_unmanaged(&mut self, device: &str) -> Result<(), IommuError> {
        let (ops, gi) = self.owned(device)?;
        let ids = self.groups[gi].ids.clone();
        ops.attach(&ids, &AttachTarget::Blocked)?;
        self.groups[gi].attached = DomainType::Blocked;
        Ok(())
    }

    /// The domain type currently attached to `device`'s group.
    pub fn attached_type(&self, device: &str) -> Option<DomainType> {
        let g = self.group_of(device)?;
        self.groups.iter().find(|x| x.id == g).map(|x| x.attached)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut hw = InstanceStats::default();
        for i in &self.instances {
            let s = i.ops.stats();
            hw.streams_not_blocked += s.streams_not_blocked;
            hw.domains += s.domains;
            hw.table_pages += s.table_pages;
        }
        Stats {
            instances: self.instances.len(),
            groups: self.groups.len(),
            devices: self.devices.len(),
            hw,
        }
    }

    /// How many IDs the core has let through: those of groups attached to anything but
    /// `Blocked`. The instances' `streams_not_blocked` must add up to this; more would be a
    /// stream open behind the core's back.
    pub fn open_ids(&self) -> u64 {
        self.groups
            .iter()
            .filter(|g| g.attached != DomainType::Blocked)
            .map(|g| g.ids.len() as u64)
            .sum()
    }

    /// Every ID of a group (the union of its members' IDs).
    pub fn group_ids(&self, g: GroupId) -> Option<Vec<u32>> {
        self.groups
            .iter()
            .find(|x| x.id == g)
            .map(|x| x.ids.clone())
    }
}

/// Maps the regions every DMA domain of the device needs: the MSI doorbell page at the start of
/// the MSI window, direct regions 1:1.
fn map_reserved(
    domain: &Arc<dyn IommuDomain>,
    reserved: &[ReservedRegion],
) -> Result<(), IommuError> {
    for r in reserved {
        match r.kind {
            ReservedKind::Msi { doorbell } => {
                let page = domain.page_size();
                domain.map(
                    r.range.start,
                    PhysAddr(doorbell.0 & !(page - 1)),
                    page,
                    Prot::MMIO_WO,
                )?;
            }
            ReservedKind::Direct => {
                // Whole pages, rounded outwards: the device must reach every byte of the region
                // (the IOVA allocator keeps the same pages back).
                let page = domain.page_size();
                let start = r.range.start.0 & !(page - 1);
                let end = r
                    .range
                    .start
                    .0
                    .saturating_add(r.range.size)
                    .saturating_add(page - 1)
                    & !(page - 1);
                domain.map(Iova(start), PhysAddr(start), end - start, Prot::RW)?;
            }
            ReservedKind::Reserved => {}
        }
    }
    Ok(())
}

/// The software MSI window every DMA domain reserves (the IOVA Linux uses for its SW_MSI region).
pub const SW_MSI_BASE: Iova = Iova(0x0800_0000);
/// Size of the software MSI window.
pub const SW_MSI_SIZE: u64 = 0x10_0000;
