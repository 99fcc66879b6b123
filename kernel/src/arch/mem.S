// memset, memcpy, memmove and memcmp for the kernel: 64 bytes per loop iteration (memmove 16,
// memcmp 8), with unaligned accesses (the kernel runs with the MMU on and SCTLR_EL1.A clear, so
// Normal memory takes them). They replace the portable versions, which move a word (memcmp: a
// byte) per iteration: under QEMU's instruction counting every instruction is guest time, and
// zeroing page-table and queue memory was most of the boot. Never use these on Device memory (neither the compiler
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

    .section .text.memmove, "ax"
    .global memmove
    .type memmove, %function
    .balign 16
// void *memmove(void *dst /* x0 */, const void *src /* x1 */, size_t n /* x2 */)
// Forward (memcpy) when the destination is below the source or the ranges do not overlap:
// memcpy loads every chunk before storing it and never stores above what it has loaded.
// Otherwise backwards, 16 bytes at a time, the first 16 bytes loaded first and stored last.
memmove:
    sub     x3, x0, x1
    cmp     x3, x2
    b.hs    memcpy                      // dst - src >= n, unsigned
    cmp     x2, #16
    b.lo    8f
    ldr     q1, [x1]
    add     x4, x1, x2
    add     x5, x0, x2
    mov     x6, x2
2:  subs    x6, x6, #16
    b.lo    3f
    ldr     q2, [x4, #-16]!
    str     q2, [x5, #-16]!
    b       2b
3:  str     q1, [x0]
    ret
8:  cbz     x2, 9f
7:  subs    x2, x2, #1
    ldrb    w3, [x1, x2]
    strb    w3, [x0, x2]
    b.ne    7b
9:  ret
    .size memmove, . - memmove

    .section .text.memcmp, "ax"
    .global memcmp
    .global bcmp
    .type memcmp, %function
    .type bcmp, %function
    .balign 16
// int memcmp(const void *a /* x0 */, const void *b /* x1 */, size_t n /* x2 */): eight bytes
// per step; at the first differing word, byte-reversed words compare as the bytes do.
memcmp:
bcmp:
    cmp     x2, #8
    b.lo    3f
1:  ldr     x3, [x0], #8
    ldr     x4, [x1], #8
    cmp     x3, x4
    b.ne    4f
    sub     x2, x2, #8
    cmp     x2, #8
    b.hs    1b
3:  cbz     x2, 5f
2:  ldrb    w3, [x0], #1
    ldrb    w4, [x1], #1
    subs    w5, w3, w4
    b.ne    6f
    subs    x2, x2, #1
    b.ne    2b
5:  mov     w0, #0
    ret
6:  mov     w0, w5
    ret
4:  rev     x3, x3
    rev     x4, x4
    cmp     x3, x4
    cset    w0, hi
    csinv   w0, w0, wzr, hs             // 1 when a > b, -1 when a < b
    ret
    .size memcmp, . - memcmp
    .size bcmp, . - memcmp
