/*
 * Entry point. Runs with the MMU off: every access is a Device access and must be aligned.
 */

.equ HCR_EL2_RW,        (1 << 31)          /* EL1 is AArch64 */
.equ CNTHCTL_EL1_ACCESS, 3                 /* EL1PCTEN | EL1PCEN: EL1 may use the counter/timer */
.equ CPTR_EL2_NOTRAP,   0x33ff             /* RES1 bits only: TFP = 0, so FP/SIMD does not trap */
.equ ICC_SRE_EL2_BITS,  0x9                /* Enable (EL1 may use ICC_SRE_EL1) | SRE */
.equ SCTLR_EL1_INIT,    0x30d00800         /* RES1 bits, MMU/caches off, little-endian */
.equ SPSR_EL1H_MASKED,  0x3c5              /* EL1h, D, A, I, F masked */
.equ CPACR_FPEN,        (3 << 20)          /* FP/SIMD at EL1 and EL0 do not trap */
.equ SCTLR_M_C_I,       ((1 << 0) | (1 << 2) | (1 << 12))

/* Early map: 1 GiB blocks. AF (bit 10), block type 0b01. Device: AttrIndx 0, PXN|UXN. */
.equ BLOCK_DEVICE_LO,   0x401
.equ BLOCK_XN_HI,       0x0060             /* bits 53 and 54 -> (0x60 << 48) */
/* Normal WB: AttrIndx 1 (bits 4:2 = 0b001), inner shareable (SH = 0b11 at bits 9:8). */
.equ BLOCK_NORMAL,      0x705
/* TCR_EL1: T0SZ = 16 (48-bit VA), IRGN0 = ORGN0 = WB-WA, SH0 = inner, TG0 = 4K, EPD1, TG1 = 4K. */
.equ TCR_LO,            0x3510
.equ TCR_HI16,          0x8080             /* bits 31..16: EPD1 (23), TG1 = 0b10 (31:30) */

.section .text.head, "ax"
.global _start
_start:
    /* arm64 Image header (64 bytes). QEMU finds the magic at offset 56 and passes the DTB in x0. */
    b       primary_entry               /* code0 */
    .long   0                           /* code1 */
    .quad   0x200000                    /* text_offset: loaded at RAM base + 2 MiB */
    .quad   __image_size                /* image_size from linker.ld (BSS and stack included) */
    .quad   0xa                         /* flags: LE, 4 KiB pages, placement anywhere */
    .quad   0, 0, 0                     /* res2..res4 */
    .long   0x644d5241                  /* magic "ARM\x64" */
    .long   0                           /* res5 */

primary_entry:
    mov     x19, x0                     /* keep the DTB pointer (0 when booted as an ELF) */
    mrs     x20, CurrentEL              /* and the EL we were entered at, for the boot log */
    lsr     x20, x20, #2

    /* Only the boot CPU runs the kernel; any other CPU that gets here parks. */
    mrs     x1, mpidr_el1
    and     x1, x1, #0xffffff
    cbnz    x1, park

    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #1
    b.eq    at_el1
    cmp     x1, #2
    b.ne    park                        /* EL3 is not supported */

    /* EL2 -> EL1. */
    mov     x1, #HCR_EL2_RW
    msr     hcr_el2, x1
    mrs     x1, cnthctl_el2
    orr     x1, x1, #CNTHCTL_EL1_ACCESS
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr            /* virtual counter == physical counter */
    mov     x1, #CPTR_EL2_NOTRAP
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    msr     vttbr_el2, xzr
    /* GICv3 CPU interface: let EL1 use the system-register interface, if the CPU has one. */
    mrs     x1, id_aa64pfr0_el1
    ubfx    x1, x1, #24, #4
    cbz     x1, 1f
    mrs     x1, S3_4_C12_C9_5           /* ICC_SRE_EL2 */
    mov     x2, #ICC_SRE_EL2_BITS
    orr     x1, x1, x2
    msr     S3_4_C12_C9_5, x1
    isb
1:
    movz    x1, #(SCTLR_EL1_INIT & 0xffff)
    movk    x1, #(SCTLR_EL1_INIT >> 16), lsl #16
    msr     sctlr_el1, x1
    mov     x1, #SPSR_EL1H_MASKED
    msr     spsr_el2, x1
    adr     x1, at_el1
    msr     elr_el2, x1
    eret

at_el1:
    /* FP/SIMD must not trap before the first Rust instruction. */
    mov     x1, #CPACR_FPEN
    msr     cpacr_el1, x1
    isb

    /* Exception vectors before anything can fault. */
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el1, x1
    isb

    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1

    /* Zero BSS (linker.ld aligns both ends to 16 bytes). */
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:
    bl      early_mmu_on

    mov     x0, x19
    mov     x1, x20
    bl      kernel_entry                /* kernel_entry(dtb_pa, entry_el): never returns */

park:
    wfe
    b       park

/*
 * Coarse identity map so Rust runs with caches on: the first 512 GiB as 1 GiB Device blocks,
 * except the GiB holding the kernel image and the GiB holding the DTB, which are Normal WB.
 * The kernel replaces it with a map built from the device tree as soon as it has parsed it.
 */
early_mmu_on:
    adrp    x1, early_l1
    movz    x4, #BLOCK_DEVICE_LO
    movk    x4, #BLOCK_XN_HI, lsl #48
    mov     x3, #0
4:  orr     x5, x4, x3, lsl #30
    str     x5, [x1, x3, lsl #3]
    add     x3, x3, #1
    cmp     x3, #512
    b.lo    4b

    mov     x4, #BLOCK_NORMAL
    adrp    x3, _start
    lsr     x3, x3, #30
    orr     x5, x4, x3, lsl #30
    str     x5, [x1, x3, lsl #3]
    lsr     x3, x19, #30                /* the DTB's GiB (GiB 0 if x19 is 0: harmless) */
    cmp     x3, #512
    b.hs    5f
    cbz     x19, 5f
    orr     x5, x4, x3, lsl #30
    str     x5, [x1, x3, lsl #3]
5:
    adrp    x2, early_l0
    orr     x3, x1, #3                  /* table descriptor */
    str     x3, [x2]

    movz    x1, #0xff04                 /* MAIR: attr0 0x04 Device-nGnRE, attr1 0xff Normal WB */
    movk    x1, #0x44, lsl #16          /*       attr2 0x44 Normal non-cacheable */
    msr     mair_el1, x1

    mrs     x1, id_aa64mmfr0_el1
    ubfx    x1, x1, #0, #4              /* PARange -> TCR.IPS */
    movz    x3, #TCR_LO
    movk    x3, #TCR_HI16, lsl #16
    bfi     x3, x1, #32, #3
    msr     tcr_el1, x3

    msr     ttbr0_el1, x2
    dsb     ish                         /* table writes complete before the walker can use them */
    tlbi    vmalle1
    dsb     ish
    isb

    mrs     x1, sctlr_el1
    movz    x3, #(SCTLR_M_C_I & 0xffff)
    orr     x1, x1, x3
    msr     sctlr_el1, x1
    isb
    ret

.section .bss.early_pt, "aw", %nobits
.balign 4096
.global early_l0
early_l0:
    .space 4096
early_l1:
    .space 4096
