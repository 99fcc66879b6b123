//! SHA-256 block compression with the Armv8 Cryptographic Extension (FEAT_SHA256: SHA256H,
//! SHA256H2, SHA256SU0, SHA256SU1), when the CPU has it; the portable implementation otherwise.
//! Reading a whole disk is dominated by hashing it, and under TCG the instructions are far
//! cheaper than the equivalent integer code.

use core::arch::aarch64::*;
use core::sync::atomic::{AtomicU8, Ordering};

/// Round constants (FIPS 180-4 §4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// 0 = not checked yet, 1 = absent, 2 = present.
static HW: AtomicU8 = AtomicU8::new(0);

/// True when the CPU implements the SHA-256 instructions (ID_AA64ISAR0_EL1.SHA2, bits 15:12).
pub fn has_hw() -> bool {
    match HW.load(Ordering::Relaxed) {
        0 => {
            let isar0: u64;
            // SAFETY: reading an ID register has no side effects.
            unsafe {
                core::arch::asm!("mrs {}, id_aa64isar0_el1", out(reg) isar0, options(nomem, nostack))
            };
            let present = (isar0 >> 12) & 0xf != 0;
            HW.store(if present { 2 } else { 1 }, Ordering::Relaxed);
            present
        }
        v => v == 2,
    }
}

/// Compresses `blocks` into `state`.
pub fn compress(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    if has_hw() {
        // SAFETY: the CPU implements FEAT_SHA256 (checked above).
        unsafe { compress_hw(state, blocks) }
    } else {
        for block in blocks {
            let block = sha2::digest::generic_array::GenericArray::from_slice(block);
            sha2::compress256(state, core::slice::from_ref(block));
        }
    }
}

/// Four rounds with schedule words `w` (already in registers): the SHA256H/SHA256H2 pair.
macro_rules! quad {
    ($abcd:ident, $efgh:ident, $w:expr, $k:expr) => {{
        let wk = vaddq_u32($w, vld1q_u32(K[$k * 4..$k * 4 + 4].as_ptr()));
        let abcd_prev = $abcd;
        $abcd = vsha256hq_u32($abcd, $efgh, wk);
        $efgh = vsha256h2q_u32($efgh, abcd_prev, wk);
    }};
}

/// The next four schedule words from the previous sixteen (SHA256SU0/SU1).
macro_rules! extend {
    ($w0:ident, $w1:ident, $w2:ident, $w3:ident) => {
        $w0 = vsha256su1q_u32(vsha256su0q_u32($w0, $w1), $w2, $w3)
    };
}

#[target_feature(enable = "sha2")]
unsafe fn compress_hw(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // Fully unrolled so the schedule stays in registers.
    // SAFETY: for every intrinsic below, the caller checked FEAT_SHA256; loads and stores use
    // in-bounds slices of the right length.
    unsafe {
        let mut abcd = vld1q_u32(state[0..4].as_ptr());
        let mut efgh = vld1q_u32(state[4..8].as_ptr());
        for block in blocks {
            let (abcd_in, efgh_in) = (abcd, efgh);
            // The message as big-endian words.
            let mut w0 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block[0..16].as_ptr())));
            let mut w1 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block[16..32].as_ptr())));
            let mut w2 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block[32..48].as_ptr())));
            let mut w3 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block[48..64].as_ptr())));
            quad!(abcd, efgh, w0, 0);
            extend!(w0, w1, w2, w3);
            quad!(abcd, efgh, w1, 1);
            extend!(w1, w2, w3, w0);
            quad!(abcd, efgh, w2, 2);
            extend!(w2, w3, w0, w1);
            quad!(abcd, efgh, w3, 3);
            extend!(w3, w0, w1, w2);
            quad!(abcd, efgh, w0, 4);
            extend!(w0, w1, w2, w3);
            quad!(abcd, efgh, w1, 5);
            extend!(w1, w2, w3, w0);
            quad!(abcd, efgh, w2, 6);
            extend!(w2, w3, w0, w1);
            quad!(abcd, efgh, w3, 7);
            extend!(w3, w0, w1, w2);
            quad!(abcd, efgh, w0, 8);
            extend!(w0, w1, w2, w3);
            quad!(abcd, efgh, w1, 9);
            extend!(w1, w2, w3, w0);
            quad!(abcd, efgh, w2, 10);
            extend!(w2, w3, w0, w1);
            quad!(abcd, efgh, w3, 11);
            extend!(w3, w0, w1, w2);
            quad!(abcd, efgh, w0, 12);
            quad!(abcd, efgh, w1, 13);
            quad!(abcd, efgh, w2, 14);
            quad!(abcd, efgh, w3, 15);
            abcd = vaddq_u32(abcd, abcd_in);
            efgh = vaddq_u32(efgh, efgh_in);
        }
        vst1q_u32(state[0..4].as_mut_ptr(), abcd);
        vst1q_u32(state[4..8].as_mut_ptr(), efgh);
    }
}
