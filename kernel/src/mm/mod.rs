//! Physical memory: what RAM exists, what is reserved, the page-frame allocator (buddy), the
//! kernel heap, the final page tables, and the [`kapi::platform::Platform`] services drivers use.

pub mod layout;

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use addr::{PAGE_SIZE, PhysAddr, VirtAddr};
use buddy_system_allocator::FrameAllocator;
use kapi::mmio::{MmioError, MmioRegion};
use kapi::sync::IrqLock;
use kapi::time::Instant;
use linked_list_allocator::Heap;

use crate::arch::mmu::{self, Kind};
use crate::dt::{DeviceTree, MemRange};

const FDT_MAGIC: u32 = 0xd00d_feed;
/// Larger blobs are refused: QEMU's is 1 MiB and real ones are far smaller.
const FDT_MAX_SIZE: u32 = 16 << 20;

/// Why memory management could not start, or no blob was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// No FDT header (magic 0xd00dfeed) where the loader pointed.
    NoBlob(u64),
    /// The blob's header gives an implausible size.
    BlobSize(u64),
    /// No `memory` node with a usable `reg`.
    NoMemory,
    /// No free RAM range holds the heap.
    NoHeapRange,
    /// Building the page tables failed.
    PageTables(mmu::MapError),
}

impl core::fmt::Display for MmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmError::NoBlob(pa) => write!(f, "no device tree at {pa:#x}"),
            MmError::BlobSize(s) => write!(f, "device tree size {s:#x} is implausible"),
            MmError::NoMemory => f.write_str("no memory node with a usable reg"),
            MmError::NoHeapRange => write!(
                f,
                "no free RAM range holds the {} MiB kernel heap",
                HEAP_SIZE >> 20
            ),
            MmError::PageTables(e) => write!(f, "building the page tables failed: {e:?}"),
        }
    }
}

impl From<mmu::MapError> for MmError {
    fn from(e: mmu::MapError) -> Self {
        MmError::PageTables(e)
    }
}

/// The device-tree blob the loader left at `pa` (the `x0` of the boot protocol).
pub fn loader_blob(pa: u64) -> Result<&'static [u8], MmError> {
    if pa == 0 || !pa.is_multiple_of(8) {
        return Err(MmError::NoBlob(pa));
    }
    // SAFETY: the loader put the DTB in RAM at `pa`, and entry.S's early map covers that GiB as
    // Normal memory; the two header words (magic, totalsize) are read before trusting anything.
    let (magic, size) = unsafe {
        let p = pa as *const u32;
        (
            u32::from_be(p.read_volatile()),
            u32::from_be(p.add(1).read_volatile()),
        )
    };
    if magic != FDT_MAGIC {
        return Err(MmError::NoBlob(pa));
    }
    if !(40..=FDT_MAX_SIZE).contains(&size) || (pa >> 30) != ((pa + u64::from(size) - 1) >> 30) {
        return Err(MmError::BlobSize(u64::from(size)));
    }
    // SAFETY: the blob lies within the early-mapped GiB (checked above) and stays in reserved,
    // never-written RAM for the kernel's lifetime (`init` reserves it).
    Ok(unsafe { core::slice::from_raw_parts(pa as *const u8, size as usize) })
}

/// The console's registers before the final page tables exist. `entry.S` maps every GiB but the
/// kernel's and the DTB's as Device memory, so any range outside RAM is usable.
pub fn early_mmio(range: crate::dt::MemRange, ram: &[crate::dt::MemRange]) -> Option<MmioRegion> {
    let image = layout::image();
    let overlaps = |b: u64, s: u64| range.base < b + s && b < range.base + range.size;
    let in_kernel_gib = (range.base >> 30) == (image.start >> 30);
    if range.size == 0 || in_kernel_gib || ram.iter().any(|r| overlaps(r.base, r.size)) {
        return None;
    }
    // SAFETY: outside RAM and outside the kernel image, so the early map has it as Device memory
    // and no Rust object lives there; the final map keeps it (it is a DT `reg`).
    Some(unsafe { MmioRegion::new(VirtAddr(range.base), range.size) })
}

/// Kernel heap size, carved from the first free RAM.
const HEAP_SIZE: u64 = 64 << 20;

/// Size of the boot heap in BSS, which serves allocations made before RAM is known.
const BOOT_HEAP_SIZE: usize = 512 << 10;

#[repr(C, align(4096))]
struct BootArena([u8; BOOT_HEAP_SIZE]);
// Heap memory: not cleared at entry (the allocator hands out memory without promising zeroes).
#[unsafe(link_section = ".noinit.boot_arena")]
static mut BOOT_ARENA: core::mem::MaybeUninit<BootArena> = core::mem::MaybeUninit::uninit();

/// The kernel heap, behind a lock that masks IRQs (so interrupt handlers may allocate too).
/// Small layouts (up to 2 KiB) come from size-class free lists (`kheap`: constant time); the
/// rest, and the chunks the classes split, from linked-list heaps: a small boot arena serves
/// what has to happen before RAM is known (device-tree parsing), the main heap in RAM
/// everything after `init`. Large frees go back to whichever heap the address belongs to.
struct KernelHeap(IrqLock<Heaps>);

struct Heaps {
    small: kheap::SizeClasses,
    large: LargeHeaps,
}

struct LargeHeaps {
    boot: Heap,
    main: Heap,
}

impl LargeHeaps {
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if self.boot.size() == 0 {
            // SAFETY: BOOT_ARENA is used only here, once, as the boot heap's memory.
            unsafe {
                self.boot
                    .init(core::ptr::addr_of_mut!(BOOT_ARENA).cast(), BOOT_HEAP_SIZE)
            };
        }
        let heap = if self.main.size() > 0 {
            &mut self.main
        } else {
            &mut self.boot
        };
        heap.allocate_first_fit(layout).ok()
    }

    /// # Safety
    /// `p` came from [`LargeHeaps::alloc`] with `layout`.
    unsafe fn dealloc(&mut self, p: NonNull<u8>, layout: Layout) {
        let heap = if contains(&self.main, p.as_ptr()) {
            &mut self.main
        } else {
            &mut self.boot
        };
        // SAFETY: per the contract, from the heap that owns its address.
        unsafe { heap.deallocate(p, layout) }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(IrqLock::new(Heaps {
    small: kheap::SizeClasses::new(),
    large: LargeHeaps {
        boot: Heap::empty(),
        main: Heap::empty(),
    },
}));

fn contains(h: &Heap, p: *mut u8) -> bool {
    h.size() > 0 && p >= h.bottom() && p < h.top()
}

// SAFETY: allocation is serialised by the IRQ-masking lock; size-class blocks come from chunks
// the linked-list heaps gave up for good, each linked-list heap hands out disjoint blocks of
// its own region, and frees are routed by layout (class) or address (heap) to their owner.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut h = self.0.lock();
        let Heaps { small, large } = &mut *h;
        let block = match kheap::SizeClasses::class_of(layout) {
            // SAFETY: chunks from the linked-list heaps are never freed there again.
            Some(class) => unsafe { small.alloc(class, |chunk| large.alloc(chunk)) },
            None => large.alloc(layout),
        };
        block.map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else { return };
        let mut h = self.0.lock();
        match kheap::SizeClasses::class_of(layout) {
            // SAFETY: the caller returns a block allocated with this layout, hence this class.
            Some(class) => unsafe { h.small.dealloc(class, p) },
            // SAFETY: likewise, a large block from the linked-list heaps.
            None => unsafe { h.large.dealloc(p, layout) },
        }
    }
}

/// Page frames: a buddy allocator over frame numbers (PA >> 12), so blocks of 2^n frames are
/// naturally aligned to their size.
static FRAMES: IrqLock<FrameAllocator<33>> = IrqLock::new(FrameAllocator::new());
static FRAMES_IN_USE: AtomicU64 = AtomicU64::new(0);
static FRAMES_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Device memory the kernel mapped, for validating driver MMIO requests.
static DEVICE_RANGES: IrqLock<Vec<MemRange>> = IrqLock::new(Vec::new());
/// RAM ranges, for virt_to_phys checks.
static RAM_RANGES: IrqLock<Vec<MemRange>> = IrqLock::new(Vec::new());
/// What `init` kept out of the frame allocator and the heap: (what, range).
static RESERVED: IrqLock<Vec<(&'static str, MemRange)>> = IrqLock::new(Vec::new());

/// Subtracts `hole` from every range in `ranges`.
fn subtract(ranges: &mut Vec<MemRange>, hole: MemRange) {
    let mut out = Vec::new();
    for r in ranges.drain(..) {
        let (r_end, h_end) = (r.base + r.size, hole.base.saturating_add(hole.size));
        if h_end <= r.base || hole.base >= r_end {
            out.push(r);
            continue;
        }
        if hole.base > r.base {
            out.push(MemRange {
                base: r.base,
                size: hole.base - r.base,
            });
        }
        if h_end < r_end {
            out.push(MemRange {
                base: h_end,
                size: r_end - h_end,
            });
        }
    }
    *ranges = out;
}

fn page_align_inward(r: MemRange) -> Option<MemRange> {
    let start = r.base.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    let end = (r.base + r.size) & !(PAGE_SIZE - 1);
    (end > start).then(|| MemRange {
        base: start,
        size: end - start,
    })
}

fn fmt_size(bytes: u64) -> alloc::string::String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        alloc::format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        alloc::format!("{} MiB", bytes >> 20)
    } else {
        alloc::format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Finds RAM, reserves what is in use, starts the heap and the frame allocator and switches to
/// page tables built from the device tree.
pub fn init(dt: &DeviceTree, dtb: MemRange) -> Result<(), MmError> {
    let ram: Vec<MemRange> = dt.memory();
    if ram.is_empty() {
        return Err(MmError::NoMemory);
    }
    for r in &ram {
        mmu::early_map_ram(r.base, r.size);
        log::info!(target: "mm", "RAM [{:#x}-{:#x}] {}", r.base, r.base + r.size - 1, fmt_size(r.size));
    }
    let image = layout::image();
    let mut reserved = Vec::new();
    reserved.push((
        "kernel image",
        MemRange {
            base: image.start,
            size: image.end - image.start,
        },
    ));
    reserved.push(("device tree", dtb));
    for r in dt.memreserve() {
        reserved.push(("/memreserve/", r));
    }
    for (name, r, no_map) in dt.reserved_memory() {
        log::info!(target: "mm", "reserved-memory {name} [{:#x}-{:#x}]{}", r.base, r.base + r.size - 1,
            if no_map { " no-map" } else { "" });
        reserved.push(("/reserved-memory", r));
    }
    let mut free = ram.clone();
    for (what, r) in &reserved {
        if r.size == 0 {
            continue;
        }
        log::info!(target: "mm", "reserved [{:#x}-{:#x}] {} ({})", r.base, r.base + r.size - 1, what, fmt_size(r.size));
        subtract(&mut free, *r);
    }
    *RESERVED.lock() = reserved.clone();
    let mut free: Vec<MemRange> = free.into_iter().filter_map(page_align_inward).collect();
    free.sort_by_key(|r| r.base);

    // Heap: the first free range that holds it, 2 MiB aligned.
    let heap = free
        .iter()
        .find_map(|r| {
            let start = (r.base + (2 << 20) - 1) & !((2 << 20) - 1);
            (start + HEAP_SIZE <= r.base + r.size).then_some(MemRange {
                base: start,
                size: HEAP_SIZE,
            })
        })
        .ok_or(MmError::NoHeapRange)?;
    // SAFETY: the heap range is RAM (from /memory), outside every reservation, page aligned, and
    // handed to no one else: it is subtracted from the frame allocator's ranges below.
    unsafe {
        HEAP.0
            .lock()
            .large
            .main
            .init(heap.base as *mut u8, heap.size as usize)
    };
    subtract(&mut free, heap);

    let mut total = 0;
    {
        let mut frames = FRAMES.lock();
        for r in &free {
            frames.add_frame(
                (r.base / PAGE_SIZE) as usize,
                ((r.base + r.size) / PAGE_SIZE) as usize,
            );
            total += r.size / PAGE_SIZE;
        }
    }
    FRAMES_TOTAL.store(total, Ordering::Relaxed);
    *RAM_RANGES.lock() = ram.clone();
    log::info!(target: "mm", "heap [{:#x}-{:#x}] {}, {} page frames free ({})",
        heap.base, heap.base + heap.size - 1, fmt_size(heap.size), total, fmt_size(total * PAGE_SIZE));

    build_page_tables(dt, &ram)
}

fn build_page_tables(dt: &DeviceTree, ram: &[MemRange]) -> Result<(), MmError> {
    let image = layout::image();
    let mut alloc_table = || alloc_frames(0).map(|pa| pa.0);
    let mut b = mmu::Builder::new(&mut alloc_table)?;
    // RAM outside the image: read-write, never executable. `no-map` reserved memory is left out.
    let mut normal: Vec<MemRange> = ram.to_vec();
    subtract(
        &mut normal,
        MemRange {
            base: image.start,
            size: image.end - image.start,
        },
    );
    let mut shared = Vec::new();
    for (name, r, no_map) in dt.reserved_memory() {
        if no_map {
            log::info!(target: "mm", "{name}: no-map, left out of the kernel's page tables");
            subtract(&mut normal, r);
        } else if let Some(r) = page_align_inward(r) {
            shared.push(r);
        }
    }
    *RESERVED_MAPPED.lock() = shared;
    for r in normal.iter().filter_map(|r| page_align_inward(*r)) {
        b.map(r.base, r.size, Kind::ReadWrite)?;
    }
    // The image: text RX, rodata R, data/BSS RW, then each stack RW above an unmapped guard page.
    let sections = [
        (image.start, image.rodata, Kind::Text),
        (image.rodata, image.data, Kind::ReadOnly),
        (image.data, image.overflow_stack_guard, Kind::ReadWrite),
        (
            image.overflow_stack_bottom,
            image.stack_guard,
            Kind::ReadWrite,
        ),
        (image.stack_bottom, image.end, Kind::ReadWrite),
    ];
    for (start, end, kind) in sections {
        if end > start {
            b.map(start, end - start, kind)?;
        }
    }
    // Device registers named by the device tree.
    let mut devices = dt.device_ranges();
    devices.sort_by_key(|r| r.base);
    let mut merged: Vec<MemRange> = Vec::new();
    for r in devices {
        let start = r.base & !(PAGE_SIZE - 1);
        let end = (r.base + r.size + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        if ram.iter().any(|m| start < m.base + m.size && m.base < end) {
            log::warn!(target: "mm", "device range [{start:#x}-{:#x}] overlaps RAM; not mapped", end - 1);
            continue;
        }
        match merged.last_mut() {
            Some(last) if start <= last.base + last.size => {
                last.size = last.size.max(end - last.base);
            }
            _ => merged.push(MemRange {
                base: start,
                size: end - start,
            }),
        }
    }
    for r in &merged {
        if let Err(e) = b.map(r.base, r.size, Kind::Device) {
            log::warn!(target: "mm", "device range [{:#x}-{:#x}] not mapped: {e:?}", r.base, r.base + r.size - 1);
        }
    }
    let tables = b.tables;
    b.activate();
    log::info!(target: "mm", "page tables: {} device ranges, {} table pages, W^X kernel image, stack guard at {:#x}",
        merged.len(), tables, image.stack_guard);
    *DEVICE_RANGES.lock() = merged;
    Ok(())
}

/// `/reserved-memory` regions the kernel maps (those without `no-map`), whole pages.
static RESERVED_MAPPED: IrqLock<Vec<MemRange>> = IrqLock::new(Vec::new());

/// The mapped `/reserved-memory` region holding all of `[pa, pa + len)`, as a virtual address.
fn reserved_va(pa: PhysAddr, len: usize) -> Option<VirtAddr> {
    let end = pa.0.checked_add(len as u64)?;
    RESERVED_MAPPED
        .lock()
        .iter()
        .any(|r| r.base <= pa.0 && end <= r.base + r.size)
        .then_some(VirtAddr(pa.0))
}

/// Writes `data` at `pa` inside a mapped `/reserved-memory` region and cleans it to the point
/// of coherency, so a device sharing the region reads it. False (nothing written) outside one.
/// For tests of devices that must reach such a region.
pub fn reserved_memory_write(pa: PhysAddr, data: &[u8]) -> bool {
    let Some(va) = reserved_va(pa, data.len()) else {
        return false;
    };
    for (i, b) in data.iter().enumerate() {
        // SAFETY: inside a `/reserved-memory` range mapped read-write (checked above), which
        // the frame allocator and the heap never hand out; volatile because a device shares it.
        unsafe { core::ptr::write_volatile((va.0 as *mut u8).add(i), *b) };
    }
    crate::arch::cpu::dcache_clean(va.0, data.len() as u64);
    true
}

/// Reads `out.len()` bytes at `pa` inside a mapped `/reserved-memory` region, after
/// invalidating stale cache lines. False (nothing read) outside one.
pub fn reserved_memory_read(pa: PhysAddr, out: &mut [u8]) -> bool {
    let Some(va) = reserved_va(pa, out.len()) else {
        return false;
    };
    crate::arch::cpu::dcache_clean_invalidate(va.0, out.len() as u64);
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: as in `reserved_memory_write`.
        *b = unsafe { core::ptr::read_volatile((va.0 as *const u8).add(i)) };
    }
    true
}

/// Allocates `2^order` zeroed frames.
pub fn alloc_frames(order: u32) -> Option<PhysAddr> {
    let pa = alloc_frames_unzeroed(order)?;
    // SAFETY: the frames were free (owned by the allocator, mapped RAM) and are now ours.
    unsafe { core::ptr::write_bytes(pa.0 as *mut u8, 0, (PAGE_SIZE << order) as usize) };
    Some(pa)
}

/// Allocates `2^order` frames with whatever they held.
pub fn alloc_frames_unzeroed(order: u32) -> Option<PhysAddr> {
    let frame = FRAMES.lock().alloc(1 << order)?;
    FRAMES_IN_USE.fetch_add(1 << order, Ordering::Relaxed);
    Some(PhysAddr(frame as u64 * PAGE_SIZE))
}

/// Frames currently allocated.
pub fn frames_in_use() -> u64 {
    FRAMES_IN_USE.load(Ordering::Relaxed)
}

/// Frames managed in total.
pub fn frames_total() -> u64 {
    FRAMES_TOTAL.load(Ordering::Relaxed)
}

/// Heap bytes in use: large blocks, and small blocks at their class size (chunks the size
/// classes hold but have not handed out do not count).
pub fn heap_used() -> usize {
    let h = HEAP.0.lock();
    h.large.boot.used() + h.large.main.used() - h.small.reserved_bytes() + h.small.live_bytes()
}

/// The kernel's implementation of the driver-facing platform services.
pub struct KernelPlatform;

/// The one instance.
pub static PLATFORM: KernelPlatform = KernelPlatform;

impl kapi::platform::Platform for KernelPlatform {
    fn alloc_frames(&self, order: u32) -> Option<PhysAddr> {
        alloc_frames(order)
    }
    fn alloc_frames_unzeroed(&self, order: u32) -> Option<PhysAddr> {
        alloc_frames_unzeroed(order)
    }

    unsafe fn free_frames(&self, pa: PhysAddr, order: u32) {
        FRAMES
            .lock()
            .dealloc((pa.0 / PAGE_SIZE) as usize, 1 << order);
        FRAMES_IN_USE.fetch_sub(1 << order, Ordering::Relaxed);
    }

    fn frames_in_use(&self) -> u64 {
        frames_in_use()
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> VirtAddr {
        VirtAddr(pa.0)
    }

    fn virt_to_phys(&self, va: VirtAddr) -> Option<PhysAddr> {
        RAM_RANGES
            .lock()
            .iter()
            .any(|r| va.0 >= r.base && va.0 - r.base < r.size)
            .then_some(PhysAddr(va.0))
    }

    fn map_mmio(&self, pa: PhysAddr, size: u64) -> Result<MmioRegion, MmioError> {
        let end =
            pa.0.checked_add(size)
                .ok_or(MmioError::NotMapped { pa: pa.0, size })?;
        let mapped = DEVICE_RANGES
            .lock()
            .iter()
            .any(|r| pa.0 >= r.base && end <= r.base + r.size);
        if !mapped || size == 0 {
            return Err(MmioError::NotMapped { pa: pa.0, size });
        }
        // SAFETY: the range lies inside a device range the kernel mapped Device-nGnRE for good
        // (checked above); device ranges never overlap RAM (build_page_tables skips those).
        Ok(unsafe { MmioRegion::new(VirtAddr(pa.0), size) })
    }

    fn cache_clean(&self, va: VirtAddr, size: u64) {
        crate::arch::cpu::dcache_clean(va.0, size);
    }

    fn cache_invalidate(&self, va: VirtAddr, size: u64) {
        crate::arch::cpu::dcache_clean_invalidate(va.0, size);
    }

    fn wait_for_interrupt(&self, deadline: Instant) {
        crate::arch::timer::arm_wakeup(deadline);
        crate::arch::cpu::wfi();
    }

    fn call_at(&self, deadline: Instant, callback: alloc::boxed::Box<dyn FnMut() + Send>) {
        crate::arch::timer::call_at_boxed(deadline, callback);
    }
}

/// Writes to the boot stack's guard page, which the final page tables leave unmapped: the write
/// must fault. Used by the test that proves faults produce a dump and a failure exit.
pub fn write_stack_guard() {
    let guard = layout::image().stack_guard as *mut u64;
    // SAFETY: the guard page is unmapped, so this store cannot modify memory; it raises a
    // synchronous data abort, which the exception handler reports.
    unsafe { guard.write_volatile(0xdead) };
}

ktest::ktests! {
    /// Every frame the allocator can hand out, taken in the largest blocks it has: none
    /// overlaps the image, the device tree, a `/memreserve/` entry or `/reserved-memory`, and
    /// all of them together are the count the boot log gave.
    fn no_frame_overlaps_a_reservation() -> ktest::Result {
        let reserved = RESERVED.lock().clone();
        ktest::kassert!(reserved.iter().any(|(w, _)| *w == "kernel image"), "no reservations recorded");
        let mut taken: Vec<(PhysAddr, u32)> = Vec::new();
        let mut order = 10;
        let mut found = None;
        loop {
            match alloc_frames_unzeroed(order) {
                Some(pa) => {
                    let size = PAGE_SIZE << order;
                    if let Some((what, r)) = reserved
                        .iter()
                        .find(|(_, r)| pa.0 < r.base + r.size && r.base < pa.0 + size)
                    {
                        found.get_or_insert((pa.0, size, *what, *r));
                    }
                    taken.push((pa, order));
                }
                None if order == 0 => break,
                None => order -= 1,
            }
        }
        let frames: u64 = taken.iter().map(|&(_, o)| 1u64 << o).sum();
        let in_use = frames_in_use();
        for (pa, o) in taken {
            // SAFETY: allocated above, never shared, returned once.
            unsafe { kapi::platform::Platform::free_frames(&PLATFORM, pa, o) };
        }
        if let Some((pa, size, what, r)) = found {
            ktest::kfail!("frames [{pa:#x}+{size:#x}] overlap the {what} reservation [{:#x}+{:#x}]", r.base, r.size);
        }
        ktest::kassert_eq!(in_use, frames_total(), "frames handed out when the allocator ran dry");
        ktest::kassert!(frames > 0, "no frame at all");
        Ok(())
    }
}
