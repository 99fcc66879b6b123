// memset and memcpy for the kernel: 64 bytes per loop iteration through SIMD registers, with
// unaligned accesses (the kernel runs with the MMU on and SCTLR_EL1.A clear, so Normal memory
// takes them). They replace the portable versions, which store one word per iteration: under
// QEMU's instruction counting every instruction is guest time, and zeroing page-table and
// queue memory at boot was most of it. Never use these on Device memory (neither the compiler
// nor the kernel does: MMIO goes through volatile accessors).

    .section .text.memset, "ax"
    .global memset
    .type memset, %function
    .balign 16
// void *memset(void *dst /* x0 */, int c /* w1 */, size_t n /* x2 */)
memset:
    mov     x8, x0
    cmp     x2, #16
    b.lo    8f
    and     w1, w1, #0xff
    dup     v0.16b, w1
    add     x10, x0, x2             // end
    subs    x11, x2, #64
    b.lo    2f
1:  stp     q0, q0, [x8]
    stp     q0, q0, [x8, #32]
    add     x8, x8, #64
    subs    x11, x11, #64
    b.hs    1b
    add     x11, x11, #64           // 0..63 left
    b       3f
2:  mov     x11, x2                 // 16..63 left
3:  subs    x11, x11, #16
    b.lo    4f
    str     q0, [x8], #16
    b       3b
4:  str     q0, [x10, #-16]         // the last 16 bytes, overlapping what is already set
    ret
8:  cbz     x2, 9f
7:  strb    w1, [x8], #1
    subs    x2, x2, #1
    b.ne    7b
9:  ret
    .size memset, . - memset

    .section .text.memcpy, "ax"
    .global memcpy
    .type memcpy, %function
    .balign 16
// void *memcpy(void *dst /* x0 */, const void *src /* x1 */, size_t n /* x2 */); no overlap
memcpy:
    mov     x8, x0
    cmp     x2, #16
    b.lo    8f
    add     x9, x1, x2              // source end
    add     x10, x0, x2             // destination end
    ldr     q1, [x9, #-16]          // the last 16 bytes, stored at the very end
    subs    x11, x2, #64
    b.lo    2f
1:  ldp     q2, q3, [x1]
    ldp     q4, q5, [x1, #32]
    add     x1, x1, #64
    stp     q2, q3, [x8]
    stp     q4, q5, [x8, #32]
    add     x8, x8, #64
    subs    x11, x11, #64
    b.hs    1b
    add     x11, x11, #64           // 0..63 left
    b       3f
2:  mov     x11, x2                 // 16..63 left
3:  subs    x11, x11, #16
    b.lo    4f
    ldr     q2, [x1], #16
    str     q2, [x8], #16
    b       3b
4:  str     q1, [x10, #-16]
    ret
8:  cbz     x2, 9f
7:  ldrb    w3, [x1], #1
    strb    w3, [x8], #1
    subs    x2, x2, #1
    b.ne    7b
9:  ret
    .size memcpy, . - memcpy
