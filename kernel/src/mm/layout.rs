//! Addresses the linker script defines.

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
    static __overflow_stack_guard: u8;
    static __overflow_stack_bottom: u8;
    static __overflow_stack_top: u8;
    static __stack_guard: u8;
    static __stack_bottom: u8;
    static __image_end: u8;
    static __ktest_start: u8;
    static __ktest_end: u8;
}

macro_rules! symbol_addr {
    ($s:ident) => {
        core::ptr::addr_of!($s) as u64
    };
}

/// The kernel image's sections, as physical (= virtual) address ranges.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Start of the image (the arm64 header).
    pub start: u64,
    /// End of code, start of read-only data.
    pub rodata: u64,
    /// End of read-only data, start of data/BSS.
    pub data: u64,
    /// The unmapped guard page below the overflow stack (end of data/BSS).
    pub overflow_stack_guard: u64,
    /// Lowest address of the stack exceptions switch to when the boot stack overflows.
    pub overflow_stack_bottom: u64,
    /// One past the overflow stack's highest address.
    pub overflow_stack_top: u64,
    /// The unmapped guard page below the boot stack.
    pub stack_guard: u64,
    /// Lowest address of the boot stack.
    pub stack_bottom: u64,
    /// One past the end of the image (BSS and stack included).
    pub end: u64,
}

/// The linker's layout of this image.
pub fn image() -> ImageLayout {
    ImageLayout {
        start: symbol_addr!(__image_start),
        rodata: symbol_addr!(__rodata_start),
        data: symbol_addr!(__data_start),
        overflow_stack_guard: symbol_addr!(__overflow_stack_guard),
        overflow_stack_bottom: symbol_addr!(__overflow_stack_bottom),
        overflow_stack_top: symbol_addr!(__overflow_stack_top),
        stack_guard: symbol_addr!(__stack_guard),
        stack_bottom: symbol_addr!(__stack_bottom),
        end: symbol_addr!(__image_end),
    }
}

/// Every in-kernel test record, from the `.ktest` section.
pub fn ktests() -> &'static [ktest::KTest] {
    let start = core::ptr::addr_of!(__ktest_start).cast::<ktest::KTest>();
    let end = core::ptr::addr_of!(__ktest_end).cast::<ktest::KTest>();
    let bytes = end as usize - start as usize;
    let len = bytes / core::mem::size_of::<ktest::KTest>();
    // SAFETY: the linker script places only `KTest` statics (each `#[used]`, 8-byte aligned, of
    // exactly this type) between the two symbols, and they live for the kernel's lifetime.
    unsafe { core::slice::from_raw_parts(start, len) }
}
