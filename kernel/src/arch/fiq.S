/*
 * The profiler's FIQ handler (Current EL with SPx, FIQ). FIQs reach the kernel only from the
 * EL1 physical timer, routed to Group 0 by `profile::start`: masking IRQs (PSTATE.I, what the
 * kernel's locks do) does not hold them back, so a sample lands on the very instruction that
 * was running, inside locked sections too. The handler touches four scratch registers and no
 * SIMD state, and calls no Rust code: acknowledge, re-arm the timer, record ELR_EL1, end.
 *
 *   PROFILE_FIQ_PERIOD   u64   timer ticks between samples
 *   PROFILE_FIQ_BUFFER   u64*  sample buffer (0: record nothing)
 *   PROFILE_FIQ_CAPACITY u64   entries in the buffer
 *   PROFILE_FIQ_NEXT     u64   samples taken (may exceed the capacity: the rest were dropped)
 */
.section .text.fiq, "ax"
.global profile_fiq_entry
profile_fiq_entry:
    stp     x0, x1, [sp, #-32]!
    stp     x2, x3, [sp, #16]
    mrs     x0, S3_0_C12_C8_0           /* ICC_IAR0_EL1: acknowledge */
    cmp     x0, #1020
    b.hs    2f                          /* special INTID: nothing to end */
    adrp    x1, PROFILE_FIQ_PERIOD
    ldr     x1, [x1, :lo12:PROFILE_FIQ_PERIOD]
    msr     cntp_tval_el0, x1           /* next sample one period from now */
    adrp    x1, PROFILE_FIQ_NEXT
    add     x1, x1, :lo12:PROFILE_FIQ_NEXT
    ldr     x2, [x1]
    add     x3, x2, #1
    str     x3, [x1]
    adrp    x1, PROFILE_FIQ_CAPACITY
    ldr     x1, [x1, :lo12:PROFILE_FIQ_CAPACITY]
    cmp     x2, x1
    b.hs    1f
    adrp    x1, PROFILE_FIQ_BUFFER
    ldr     x1, [x1, :lo12:PROFILE_FIQ_BUFFER]
    cbz     x1, 1f
    mrs     x3, elr_el1
    str     x3, [x1, x2, lsl #3]
1:  msr     S3_0_C12_C8_1, x0           /* ICC_EOIR0_EL1 */
2:  ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp], #32
    eret
