/*
 * Exception vectors (Arm ARM D1.10.2): 16 entries of 0x80 bytes, table aligned to 2 KiB.
 * Every entry saves x0/x1, passes its index in x0 and joins one common path that saves the full
 * register state (general registers, ELR/SPSR/ESR/FAR, and all 32 SIMD registers: Rust code in
 * handlers uses NEON for ordinary copies, so the interrupted code's vector registers must survive)
 * into a TrapFrame on the stack and calls `exception_handler(frame, index)`.
 */
.equ FRAME_SIZE, 816

/* Bytes of boot stack below which an exception cannot save its frame: the guard page, a frame. */
.equ STACK_DANGER, 4096 + FRAME_SIZE

.macro VECTOR idx
.balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\idx
    b       exception_common
.endm

/*
 * The kernel's own exceptions (current EL, SP_EL1). If SP is inside the boot stack's guard page
 * or less than a frame above it, saving the frame would fault again, and again, each time lower,
 * until it wrote over whatever lies below the guard. So such an entry moves to the overflow stack
 * first, leaving the overflowing SP in TPIDRRO_EL0 for the dump; the handler treats every
 * exception taken there as fatal (the interrupted SP is not restored). TPIDR_EL1 holds x0 while
 * the check runs: no register is free yet.
 */
.macro VECTOR_SPX idx
.balign 0x80
    msr     tpidr_el1, x0
    adrp    x0, __stack_guard
    add     x0, x0, :lo12:__stack_guard
    sub     x0, sp, x0                  /* SP - guard; wraps (huge) below the guard */
    lsr     x0, x0, #4                  /* STACK_DANGER / 16 fits a compare immediate */
    cmp     x0, #(STACK_DANGER / 16)
    b.hs    1f
    mov     x0, sp
    msr     tpidrro_el0, x0
    adrp    x0, __overflow_stack_top
    add     x0, x0, :lo12:__overflow_stack_top
    mov     sp, x0
1:  mrs     x0, tpidr_el1
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\idx
    b       exception_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR_SPX 4
    VECTOR_SPX 5
.balign 0x80                            /* 6: FIQ, current EL: only the profiler's (fiq.S) */
    b       profile_fiq_entry
    VECTOR_SPX 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x2, spsr_el1
    mrs     x3, esr_el1
    stp     x2, x3, [sp, #256]
    mrs     x4, far_el1
    add     x5, sp, #FRAME_SIZE
    stp     x4, x5, [sp, #272]
    mrs     x6, fpcr
    mrs     x7, fpsr
    stp     x6, x7, [sp, #288]
    stp     q0, q1, [sp, #304]
    stp     q2, q3, [sp, #336]
    stp     q4, q5, [sp, #368]
    stp     q6, q7, [sp, #400]
    stp     q8, q9, [sp, #432]
    stp     q10, q11, [sp, #464]
    stp     q12, q13, [sp, #496]
    stp     q14, q15, [sp, #528]
    stp     q16, q17, [sp, #560]
    stp     q18, q19, [sp, #592]
    stp     q20, q21, [sp, #624]
    stp     q22, q23, [sp, #656]
    stp     q24, q25, [sp, #688]
    stp     q26, q27, [sp, #720]
    stp     q28, q29, [sp, #752]
    stp     q30, q31, [sp, #784]

    mov     x1, x0
    mov     x0, sp
    bl      exception_handler

    ldp     q0, q1, [sp, #304]
    ldp     q2, q3, [sp, #336]
    ldp     q4, q5, [sp, #368]
    ldp     q6, q7, [sp, #400]
    ldp     q8, q9, [sp, #432]
    ldp     q10, q11, [sp, #464]
    ldp     q12, q13, [sp, #496]
    ldp     q14, q15, [sp, #528]
    ldp     q16, q17, [sp, #560]
    ldp     q18, q19, [sp, #592]
    ldp     q20, q21, [sp, #624]
    ldp     q22, q23, [sp, #656]
    ldp     q24, q25, [sp, #688]
    ldp     q26, q27, [sp, #720]
    ldp     q28, q29, [sp, #752]
    ldp     q30, q31, [sp, #784]
    ldp     x6, x7, [sp, #288]
    msr     fpcr, x6
    msr     fpsr, x7
    ldp     x2, x3, [sp, #256]
    msr     spsr_el1, x2
    ldp     x30, x1, [sp, #240]
    msr     elr_el1, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #FRAME_SIZE
    eret

/*
 * Semihosting call (Arm semihosting spec: HLT #0xF000 in AArch64). Without QEMU's -semihosting
 * the HLT is an undefined instruction; the sync handler recognises `semihosting_trap`, marks
 * semihosting as absent and resumes after it with x0 = -1.
 */
.section .text.semihosting, "ax"
.global semihosting_call
.global semihosting_trap
semihosting_call:
semihosting_trap:
    hlt     #0xf000
    ret
