//! Bus enumeration: find every function, number the buses behind bridges, size the BARs, assign
//! them from the host bridge's windows, program the bridges' forwarding windows, and work out
//! each function's INTx route and the requester ID the IOMMU will see (its DMA alias).
//!
//! Pure logic over [`ConfigAccess`], so it is tested on the host against a fake config space.

use alloc::vec::Vec;
use core::fmt;

use tock_registers::LocalRegisterCopy;

use crate::config::*;

/// Access to configuration space (ECAM on `virt`; a fake in tests).
pub trait ConfigAccess {
    /// 8-bit read.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8;
    /// 16-bit read (offset 2-aligned).
    fn read16(&self, bdf: Bdf, offset: u16) -> u16;
    /// 32-bit read (offset 4-aligned).
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    /// 8-bit write.
    fn write8(&self, bdf: Bdf, offset: u16, value: u8);
    /// 16-bit write.
    fn write16(&self, bdf: Bdf, offset: u16, value: u16);
    /// 32-bit write.
    fn write32(&self, bdf: Bdf, offset: u16, value: u32);
}

/// Kinds of address space a BAR or window decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    /// I/O space.
    Io,
    /// 32-bit memory (non-prefetchable, or prefetchable that must stay below 4 GiB).
    Mem32,
    /// 64-bit prefetchable memory.
    Mem64Pref,
}

/// One of the host bridge's windows (from its DT `ranges`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostWindow {
    /// What it decodes.
    pub space: Space,
    /// Start of the window as PCI bus addresses.
    pub pci_base: u64,
    /// The same start as a CPU physical address.
    pub cpu_base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A sized (and, if space allowed, assigned) BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR index (0..6); a 64-bit BAR takes this index and the next.
    pub index: u8,
    /// Address space.
    pub space: Space,
    /// 64-bit BAR.
    pub is_64bit: bool,
    /// Prefetchable.
    pub prefetchable: bool,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// Assigned PCI bus address, if any window had room.
    pub pci_addr: Option<u64>,
    /// The CPU physical address of the assignment.
    pub cpu_addr: Option<u64>,
}

/// Bus numbers and forwarding windows of a bridge.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BridgeInfo {
    /// Secondary bus.
    pub secondary: u8,
    /// Highest bus below.
    pub subordinate: u8,
    /// Forwarding windows as (space, pci base, size).
    pub windows: Vec<(Space, u64, u64)>,
}

/// One function found by enumeration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Location.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code (base class, subclass, programming interface).
    pub class: u32,
    /// Revision.
    pub revision: u8,
    /// Part of a multi-function device.
    pub multifunction: bool,
    /// BARs that decode something.
    pub bars: Vec<Bar>,
    /// Capability list as (ID, offset).
    pub capabilities: Vec<(u8, u16)>,
    /// PCIe device/port type, if the function has a PCIe capability.
    pub pcie_type: Option<u8>,
    /// Interrupt pin (1 = INTA .. 4 = INTD), 0 = none.
    pub interrupt_pin: u8,
    /// For INTx: the root-bus device the interrupt arrives from and the pin after swizzling
    /// through every bridge on the way (what the host bridge's `interrupt-map` is indexed by).
    pub intx_route: Option<(Bdf, u8)>,
    /// The bridge this function sits behind (`None` on the root bus).
    pub upstream_bridge: Option<Bdf>,
    /// The requester ID the IOMMU sees for this function's DMA (PCIe-to-PCI bridges and
    /// conventional bridges take ownership of their subordinates' transactions).
    pub dma_alias: Bdf,
    /// For bridges: bus numbers and windows.
    pub bridge: Option<BridgeInfo>,
}

impl PciFunction {
    /// True for PCI-to-PCI bridges (type-1 header).
    pub fn is_bridge(&self) -> bool {
        self.bridge.is_some()
    }
    /// Capability offset of `id`, if present.
    pub fn capability(&self, id: u8) -> Option<u16> {
        self.capabilities
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, o)| *o)
    }
}

/// Problems enumeration works around (reported, not fatal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnumWarning {
    /// A BAR could not be placed: no window of its kind had room.
    NoSpace { bdf: Bdf, bar: u8, size: u64 },
    /// Ran out of bus numbers: the bridge's subordinate buses are not scanned.
    NoBusNumber { bdf: Bdf },
    /// The capability list loops or points outside the header.
    BadCapabilityList { bdf: Bdf },
}

impl fmt::Display for EnumWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnumWarning::NoSpace { bdf, bar, size } => {
                write!(
                    f,
                    "{bdf}: BAR{bar} ({size:#x} bytes) not assigned: no window has room"
                )
            }
            EnumWarning::NoBusNumber { bdf } => {
                write!(f, "{bdf}: no bus number left for the bridge")
            }
            EnumWarning::BadCapabilityList { bdf } => write!(f, "{bdf}: malformed capability list"),
        }
    }
}

/// Result of enumerating one host bridge.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Every function, in scan order (depth first).
    pub functions: Vec<PciFunction>,
    /// Problems met on the way.
    pub warnings: Vec<EnumWarning>,
}

/// Granularity of bridge memory windows (PCI-to-PCI Bridge 1.2 §3.2.5.8).
const MEM_WINDOW_ALIGN: u64 = 1 << 20;
/// Granularity of bridge I/O windows.
const IO_WINDOW_ALIGN: u64 = 1 << 12;

struct Scanner<'a, C: ConfigAccess> {
    cfg: &'a C,
    next_bus: u16,
    last_bus: u8,
    functions: Vec<PciFunction>,
    warnings: Vec<EnumWarning>,
}

fn read_capabilities<C: ConfigAccess>(cfg: &C, bdf: Bdf) -> Result<Vec<(u8, u16)>, ()> {
    let mut caps = Vec::new();
    let status = LocalRegisterCopy::<u16, STS::Register>::new(cfg.read16(bdf, STATUS));
    if !status.is_set(STS::CAPABILITIES_LIST) {
        return Ok(caps);
    }
    let mut ptr = u16::from(cfg.read8(bdf, CAPABILITIES_PTR) & !3);
    // 48 capabilities fit in the 192 bytes after the header; more means a loop.
    for _ in 0..48 {
        if ptr == 0 {
            return Ok(caps);
        }
        if !(0x40..=0xfc).contains(&ptr) {
            return Err(());
        }
        let id = cfg.read8(bdf, ptr);
        caps.push((id, ptr));
        ptr = u16::from(cfg.read8(bdf, ptr + 1) & !3);
    }
    Err(())
}

impl<C: ConfigAccess> Scanner<'_, C> {
    fn scan_bus(&mut self, bus: u8, upstream: Option<usize>) {
        for dev in 0..32 {
            let f0 = Bdf::new(bus, dev, 0);
            if self.cfg.read16(f0, VENDOR_ID) == 0xffff {
                continue;
            }
            let multifunction = self.cfg.read8(f0, HEADER_TYPE) & 0x80 != 0;
            let funcs = if multifunction { 8 } else { 1 };
            for func in 0..funcs {
                let bdf = Bdf::new(bus, dev, func);
                if self.cfg.read16(bdf, VENDOR_ID) == 0xffff {
                    continue;
                }
                self.probe_function(bdf, multifunction, upstream);
            }
        }
    }

    fn probe_function(&mut self, bdf: Bdf, multifunction: bool, upstream: Option<usize>) {
        let cfg = self.cfg;
        // Stop decoding while BARs are sized (writing all-ones would otherwise claim addresses).
        let cmd = cfg.read16(bdf, COMMAND);
        let mut cmd_reg = LocalRegisterCopy::<u16, CMD::Register>::new(cmd);
        cmd_reg.modify(CMD::IO_SPACE::CLEAR + CMD::MEMORY_SPACE::CLEAR + CMD::BUS_MASTER::CLEAR);
        cfg.write16(bdf, COMMAND, cmd_reg.get());

        let class_rev = cfg.read32(bdf, REVISION_ID);
        let layout = cfg.read8(bdf, HEADER_TYPE) & 0x7f;
        let capabilities = match read_capabilities(cfg, bdf) {
            Ok(c) => c,
            Err(()) => {
                self.warnings.push(EnumWarning::BadCapabilityList { bdf });
                Vec::new()
            }
        };
        let pcie_type = capabilities
            .iter()
            .find(|(id, _)| *id == cap_id::PCIE)
            .map(|(_, off)| ((cfg.read16(bdf, off + 2) >> 4) & 0xf) as u8);
        let is_bridge = layout == HEADER_LAYOUT_BRIDGE;
        let bars = size_bars(cfg, bdf, if is_bridge { 2 } else { 6 });
        let interrupt_pin = cfg.read8(bdf, INTERRUPT_PIN);
        let upstream_bridge = upstream.map(|i| self.functions[i].bdf);
        let index = self.functions.len();
        self.functions.push(PciFunction {
            bdf,
            vendor: cfg.read16(bdf, VENDOR_ID),
            device: cfg.read16(bdf, DEVICE_ID),
            class: class_rev >> 8,
            revision: class_rev as u8,
            multifunction,
            bars,
            capabilities,
            pcie_type,
            interrupt_pin: if interrupt_pin <= 4 { interrupt_pin } else { 0 },
            intx_route: None,
            upstream_bridge,
            dma_alias: bdf,
            bridge: None,
        });
        self.functions[index].intx_route = self.intx_route(index);
        self.functions[index].dma_alias = self.dma_alias(index);
        if is_bridge {
            self.scan_bridge(index);
        }
    }

    fn scan_bridge(&mut self, index: usize) {
        let bdf = self.functions[index].bdf;
        if self.next_bus > u16::from(self.last_bus) {
            self.warnings.push(EnumWarning::NoBusNumber { bdf });
            self.functions[index].bridge = Some(BridgeInfo::default());
            return;
        }
        let secondary = self.next_bus as u8;
        self.next_bus += 1;
        // Open the bridge to every bus number left while its subtree is scanned, then close it
        // down to what was found (PCI-to-PCI Bridge 1.2 §3.2.5.3).
        self.cfg.write8(bdf, PRIMARY_BUS, bdf.bus);
        self.cfg.write8(bdf, SECONDARY_BUS, secondary);
        self.cfg.write8(bdf, SUBORDINATE_BUS, self.last_bus);
        self.scan_bus(secondary, Some(index));
        let subordinate = (self.next_bus - 1) as u8;
        self.cfg.write8(bdf, SUBORDINATE_BUS, subordinate);
        self.functions[index].bridge = Some(BridgeInfo {
            secondary,
            subordinate,
            windows: Vec::new(),
        });
    }

    /// Swizzles the pin through every bridge up to the root bus (PCI-to-PCI Bridge 1.2 §9.1).
    fn intx_route(&self, index: usize) -> Option<(Bdf, u8)> {
        let f = &self.functions[index];
        if f.interrupt_pin == 0 {
            return None;
        }
        let (mut bdf, mut pin) = (f.bdf, f.interrupt_pin);
        let mut up = f.upstream_bridge;
        while let Some(bridge) = up {
            pin = ((pin - 1 + bdf.dev) % 4) + 1;
            bdf = bridge;
            up = self
                .functions
                .iter()
                .find(|x| x.bdf == bridge)
                .and_then(|x| x.upstream_bridge);
        }
        Some((bdf, pin))
    }

    /// The requester ID seen upstream. Walking up: a PCIe-to-PCI bridge forwards its conventional
    /// bus's transactions as (secondary bus, 00.0); a conventional PCI-to-PCI bridge as its own
    /// ID; PCIe ports pass IDs through unchanged.
    fn dma_alias(&self, index: usize) -> Bdf {
        let f = &self.functions[index];
        let mut alias = f.bdf;
        let mut up = f.upstream_bridge;
        while let Some(bridge_bdf) = up {
            let Some(bridge) = self.functions.iter().find(|x| x.bdf == bridge_bdf) else {
                break;
            };
            match bridge.pcie_type {
                Some(pcie_type::PCIE_TO_PCI_BRIDGE) => {
                    // The secondary bus is known once the bridge is being scanned.
                    let secondary = self.secondary_of(bridge_bdf);
                    alias = Bdf::new(secondary, 0, 0);
                }
                Some(_) => {}
                None => alias = bridge_bdf,
            }
            up = bridge.upstream_bridge;
        }
        alias
    }

    fn secondary_of(&self, bridge: Bdf) -> u8 {
        // While a bridge's subtree is scanned its secondary bus is programmed but BridgeInfo is
        // not filled in yet: read it back from config space.
        self.cfg.read8(bridge, SECONDARY_BUS)
    }
}

/// Sizes the BARs of a function (decode must be off): write all-ones, read the mask, restore.
fn size_bars<C: ConfigAccess>(cfg: &C, bdf: Bdf, count: u8) -> Vec<Bar> {
    let mut bars = Vec::new();
    let mut i = 0;
    while i < count {
        let off = BAR0 + 4 * u16::from(i);
        let orig = cfg.read32(bdf, off);
        cfg.write32(bdf, off, u32::MAX);
        let probe = cfg.read32(bdf, off);
        cfg.write32(bdf, off, orig);
        let reg = LocalRegisterCopy::<u32, BAR::Register>::new(probe);
        if probe == 0 {
            i += 1;
            continue;
        }
        if reg.is_set(BAR::IO) {
            let mask = probe & BAR_IO_ADDR_MASK & 0xffff;
            if mask != 0 {
                let size = u64::from((!mask & 0xffff) + 1);
                bars.push(Bar {
                    index: i,
                    space: Space::Io,
                    is_64bit: false,
                    prefetchable: false,
                    size,
                    pci_addr: None,
                    cpu_addr: None,
                });
            }
            i += 1;
            continue;
        }
        let is_64bit = reg.matches_all(BAR::TYPE::Bits64) && i + 1 < count;
        let prefetchable = reg.is_set(BAR::PREFETCHABLE);
        let mut mask = u64::from(probe & BAR_MEM_ADDR_MASK);
        if is_64bit {
            let upper_off = off + 4;
            let orig_hi = cfg.read32(bdf, upper_off);
            cfg.write32(bdf, upper_off, u32::MAX);
            let hi = cfg.read32(bdf, upper_off);
            cfg.write32(bdf, upper_off, orig_hi);
            mask |= u64::from(hi) << 32;
        } else {
            mask |= 0xffff_ffff_0000_0000;
        }
        if mask & !0xf != 0 {
            let size = (!mask).wrapping_add(1);
            let space = if is_64bit && prefetchable {
                Space::Mem64Pref
            } else {
                Space::Mem32
            };
            bars.push(Bar {
                index: i,
                space,
                is_64bit,
                prefetchable,
                size,
                pci_addr: None,
                cpu_addr: None,
            });
        }
        i += if is_64bit { 2 } else { 1 };
    }
    bars
}

/// An allocation request: a BAR of a function, or a bridge's window for one space.
#[derive(Clone, Copy, Debug)]
enum Item {
    Bar { func: usize, bar: usize },
    Window { bridge: usize },
}

/// Size and alignment each bridge needs per space, computed bottom-up.
fn window_need(topo: &[PciFunction], bridge: usize, space: Space) -> (u64, u64) {
    let items = children_items(topo, bridge_secondary(topo, bridge), space);
    let (size, align) = pack(topo, &items, space);
    if size == 0 {
        return (0, 0);
    }
    let gran = if space == Space::Io {
        IO_WINDOW_ALIGN
    } else {
        MEM_WINDOW_ALIGN
    };
    (size.next_multiple_of(gran), align.max(gran))
}

fn bridge_secondary(topo: &[PciFunction], bridge: usize) -> Option<u8> {
    topo[bridge]
        .bridge
        .as_ref()
        .filter(|b| b.secondary != 0)
        .map(|b| b.secondary)
}

fn children_items(topo: &[PciFunction], bus: Option<u8>, space: Space) -> Vec<Item> {
    let Some(bus) = bus else { return Vec::new() };
    let mut items = Vec::new();
    for (fi, f) in topo.iter().enumerate().filter(|(_, f)| f.bdf.bus == bus) {
        for (bi, b) in f.bars.iter().enumerate() {
            if b.space == space {
                items.push(Item::Bar { func: fi, bar: bi });
            }
        }
        if f.is_bridge() {
            items.push(Item::Window { bridge: fi });
        }
    }
    items
}

fn item_need(topo: &[PciFunction], item: Item, space: Space) -> (u64, u64) {
    match item {
        Item::Bar { func, bar } => {
            let s = topo[func].bars[bar].size;
            (s, s)
        }
        Item::Window { bridge } => window_need(topo, bridge, space),
    }
}

/// Packs items largest-alignment first; returns (total size, largest alignment).
fn pack(topo: &[PciFunction], items: &[Item], space: Space) -> (u64, u64) {
    let mut needs: Vec<(u64, u64)> = items
        .iter()
        .map(|i| item_need(topo, *i, space))
        .filter(|n| n.0 > 0)
        .collect();
    needs.sort_by_key(|n| core::cmp::Reverse(n.1));
    let mut end = 0u64;
    let mut max_align = 1;
    for (size, align) in needs {
        end = end.next_multiple_of(align) + size;
        max_align = max_align.max(align);
    }
    (end, max_align)
}

/// Assigns addresses for `items` inside `[base, base + size)` (PCI addresses), recursing into
/// bridges; `cpu_offset` converts PCI to CPU addresses.
fn assign(
    topo: &mut [PciFunction],
    items: &[Item],
    space: Space,
    mut cursor: u64,
    limit: u64,
    cpu_offset: i128,
    warnings: &mut Vec<EnumWarning>,
) {
    let mut ordered: Vec<(Item, u64, u64)> = items
        .iter()
        .map(|i| {
            let (s, a) = item_need(topo, *i, space);
            (*i, s, a)
        })
        .filter(|x| x.1 > 0)
        .collect();
    ordered.sort_by_key(|o| core::cmp::Reverse(o.2));
    for (item, size, align) in ordered {
        let start = cursor.next_multiple_of(align);
        let fits = start.checked_add(size).is_some_and(|end| end <= limit);
        match item {
            Item::Bar { func, bar } => {
                if fits {
                    let b = &mut topo[func].bars[bar];
                    b.pci_addr = Some(start);
                    b.cpu_addr = Some((i128::from(start) + cpu_offset) as u64);
                    cursor = start + size;
                } else {
                    warnings.push(EnumWarning::NoSpace {
                        bdf: topo[func].bdf,
                        bar: topo[func].bars[bar].index,
                        size,
                    });
                }
            }
            Item::Window { bridge } => {
                if fits {
                    if let Some(info) = topo[bridge].bridge.as_mut() {
                        info.windows.push((space, start, size));
                    }
                    let inner = children_items(topo, bridge_secondary(topo, bridge), space);
                    assign(
                        topo,
                        &inner,
                        space,
                        start,
                        start + size,
                        cpu_offset,
                        warnings,
                    );
                    cursor = start + size;
                } else {
                    // Everything behind the bridge stays unassigned in this space.
                    let inner = children_items(topo, bridge_secondary(topo, bridge), space);
                    assign(topo, &inner, space, 0, 0, cpu_offset, warnings);
                }
            }
        }
    }
}

/// Enumerates the buses `first_bus..=last_bus` behind a host bridge, assigns resources from
/// `windows` and programs the hardware: BARs, bridge bus numbers and windows, and each
/// function's command register (memory/I/O decode on where something was assigned; bus
/// mastering only on bridges — an endpoint may not DMA until its driver enables it, after its
/// DMA set-up at bind).
pub fn enumerate<C: ConfigAccess>(
    cfg: &C,
    first_bus: u8,
    last_bus: u8,
    windows: &[HostWindow],
) -> Topology {
    let mut s = Scanner {
        cfg,
        next_bus: u16::from(first_bus) + 1,
        last_bus,
        functions: Vec::new(),
        warnings: Vec::new(),
    };
    s.scan_bus(first_bus, None);
    let mut topo = s.functions;
    let mut warnings = s.warnings;
    for space in [Space::Io, Space::Mem32, Space::Mem64Pref] {
        // 64-bit prefetchable BARs fall back to the 32-bit window when there is no 64-bit one.
        let host = windows.iter().find(|w| w.space == space).or_else(|| {
            (space == Space::Mem64Pref)
                .then(|| windows.iter().find(|w| w.space == Space::Mem32))
                .flatten()
        });
        let root_items = children_items_root(&topo, first_bus, space);
        match host {
            Some(w) => {
                let offset = i128::from(w.cpu_base) - i128::from(w.pci_base);
                assign(
                    &mut topo,
                    &root_items,
                    space,
                    w.pci_base,
                    w.pci_base + w.size,
                    offset,
                    &mut warnings,
                );
            }
            None => assign(&mut topo, &root_items, space, 0, 0, 0, &mut warnings),
        }
    }
    program(cfg, &topo);
    Topology {
        functions: topo,
        warnings,
    }
}

fn children_items_root(topo: &[PciFunction], bus: u8, space: Space) -> Vec<Item> {
    children_items(topo, Some(bus), space)
}

/// Writes BARs, bridge windows and command registers.
fn program<C: ConfigAccess>(cfg: &C, topo: &[PciFunction]) {
    for f in topo {
        let mut cmd = LocalRegisterCopy::<u16, CMD::Register>::new(cfg.read16(f.bdf, COMMAND));
        for b in &f.bars {
            let Some(addr) = b.pci_addr else { continue };
            let off = BAR0 + 4 * u16::from(b.index);
            let flags = cfg.read32(f.bdf, off)
                & !if b.space == Space::Io {
                    BAR_IO_ADDR_MASK
                } else {
                    BAR_MEM_ADDR_MASK
                };
            cfg.write32(f.bdf, off, (addr as u32) | flags);
            if b.is_64bit {
                cfg.write32(f.bdf, off + 4, (addr >> 32) as u32);
            }
            match b.space {
                Space::Io => cmd.modify(CMD::IO_SPACE::SET),
                _ => cmd.modify(CMD::MEMORY_SPACE::SET),
            }
        }
        if let Some(bridge) = &f.bridge {
            program_bridge_windows(cfg, f.bdf, &bridge.windows);
            // A bridge forwards downstream accesses only with decode on, and upstream DMA only
            // with bus mastering on; its endpoints still decide for themselves.
            cmd.modify(CMD::IO_SPACE::SET + CMD::MEMORY_SPACE::SET + CMD::BUS_MASTER::SET);
        }
        cfg.write16(f.bdf, COMMAND, cmd.get());
    }
}

/// Programs a bridge's I/O, memory and prefetchable windows; an unused window is closed
/// (base above limit).
fn program_bridge_windows<C: ConfigAccess>(cfg: &C, bdf: Bdf, windows: &[(Space, u64, u64)]) {
    let find = |s: Space| {
        windows
            .iter()
            .find(|w| w.0 == s)
            .map(|w| (w.1, w.1 + w.2 - 1))
    };
    match find(Space::Io) {
        Some((base, limit)) => {
            cfg.write8(bdf, IO_BASE, ((base >> 8) & 0xf0) as u8);
            cfg.write8(bdf, IO_BASE + 1, ((limit >> 8) & 0xf0) as u8);
            cfg.write16(bdf, IO_BASE_UPPER, (base >> 16) as u16);
            cfg.write16(bdf, IO_BASE_UPPER + 2, (limit >> 16) as u16);
        }
        None => {
            cfg.write8(bdf, IO_BASE, 0xf0);
            cfg.write8(bdf, IO_BASE + 1, 0);
        }
    }
    match find(Space::Mem32) {
        Some((base, limit)) => {
            cfg.write16(bdf, MEMORY_BASE, ((base >> 16) & 0xfff0) as u16);
            cfg.write16(bdf, MEMORY_BASE + 2, ((limit >> 16) & 0xfff0) as u16);
        }
        None => {
            cfg.write16(bdf, MEMORY_BASE, 0xfff0);
            cfg.write16(bdf, MEMORY_BASE + 2, 0);
        }
    }
    match find(Space::Mem64Pref) {
        Some((base, limit)) => {
            cfg.write16(bdf, PREF_MEMORY_BASE, ((base >> 16) & 0xfff0) as u16);
            cfg.write16(bdf, PREF_MEMORY_BASE + 2, ((limit >> 16) & 0xfff0) as u16);
            cfg.write32(bdf, PREF_BASE_UPPER, (base >> 32) as u32);
            cfg.write32(bdf, PREF_LIMIT_UPPER, (limit >> 32) as u32);
        }
        None => {
            cfg.write16(bdf, PREF_MEMORY_BASE, 0xfff0);
            cfg.write16(bdf, PREF_MEMORY_BASE + 2, 0);
            cfg.write32(bdf, PREF_BASE_UPPER, 0);
            cfg.write32(bdf, PREF_LIMIT_UPPER, 0);
        }
    }
}
