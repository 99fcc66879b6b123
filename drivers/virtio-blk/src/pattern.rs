//! The content of the generated test disk (`cargo xtask`'s default image): xorshift64*
//! output, eight little-endian bytes per step, seeded with [`SEED`]. Lets in-QEMU tests check
//! any sector without reading the disk from its start.
//!
//! The xorshift step is linear over GF(2), so jumping ahead `n` steps is a 64×64 bit-matrix
//! power: a few thousand word operations for any position on the disk.

use alloc::vec::Vec;

/// Seed of the default disk image.
pub const SEED: u64 = 0x5eed_d15c;
/// Multiplier of the xorshift64* output function.
const MULTIPLIER: u64 = 0x2545_f491_4f6c_dd1d;

fn step(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x
}

/// A linear map on 64-bit vectors, as the images of the 64 unit vectors.
#[derive(Clone, Copy)]
struct Matrix([u64; 64]);

impl Matrix {
    fn of_step() -> Self {
        Matrix(core::array::from_fn(|j| step(1 << j)))
    }
    fn identity() -> Self {
        Matrix(core::array::from_fn(|j| 1 << j))
    }
    fn apply(&self, v: u64) -> u64 {
        (0..64)
            .filter(|j| v >> j & 1 == 1)
            .fold(0, |acc, j| acc ^ self.0[j])
    }
    /// `self` after `other`.
    fn compose(&self, other: &Matrix) -> Matrix {
        Matrix(core::array::from_fn(|j| self.apply(other.0[j])))
    }
}

/// The disk's content as a stream of words from a given position.
#[derive(Clone, Debug)]
pub struct DiskPattern {
    state: u64,
}

impl DiskPattern {
    /// The stream from the disk's first byte.
    pub fn new(seed: u64) -> Self {
        Self { state: seed | 1 }
    }

    /// The stream from byte `offset` (a multiple of 8).
    pub fn at(seed: u64, offset: u64) -> Self {
        let mut n = offset / 8;
        let mut power = Matrix::of_step();
        let mut jump = Matrix::identity();
        while n > 0 {
            if n & 1 == 1 {
                jump = power.compose(&jump);
            }
            power = power.compose(&power);
            n >>= 1;
        }
        Self {
            state: jump.apply(seed | 1),
        }
    }

    /// The next eight bytes, as the little-endian word they are.
    pub fn next_word(&mut self) -> u64 {
        self.state = step(self.state);
        self.state.wrapping_mul(MULTIPLIER)
    }

    /// Index of the first byte of `data` (which continues the stream, length a multiple of 8)
    /// that differs from it.
    pub fn first_mismatch(&mut self, data: &[u8]) -> Option<usize> {
        let mut bad = None;
        for (i, chunk) in data.chunks(8).enumerate() {
            let want = self.next_word().to_le_bytes();
            if bad.is_none()
                && let Some(k) = chunk.iter().zip(&want).position(|(a, b)| a != b)
            {
                bad = Some(i * 8 + k);
            }
        }
        bad
    }

    /// The next `len` bytes (a multiple of 8).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len / 8)
            .flat_map(|_| self.next_word().to_le_bytes())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_words_are_the_generator_s() {
        // `od -t x8 target/disk.img`
        let mut p = DiskPattern::new(SEED);
        assert_eq!(p.next_word(), 0x915c_34ef_b43f_db1f);
        assert_eq!(p.next_word(), 0x8cda_fdff_7255_4867);
        assert_eq!(p.next_word(), 0x934b_b2ae_78ec_e8fb);
    }

    #[test]
    fn jumping_ahead_matches_stepping() {
        let mut p = DiskPattern::new(SEED);
        for i in 0..1000u64 {
            assert_eq!(
                DiskPattern::at(SEED, 8 * i).next_word(),
                p.next_word(),
                "word {i}"
            );
        }
    }

    #[test]
    fn the_last_words_of_the_64_mib_disk() {
        let mut p = DiskPattern::at(SEED, (64 << 20) - 16);
        assert_eq!(p.next_word(), 0xd697_1e0b_d612_be41);
        assert_eq!(p.next_word(), 0xfa66_b22e_eebc_eae1);
    }

    #[test]
    fn mismatches_are_located() {
        let mut data = DiskPattern::at(SEED, 4096).bytes(512);
        assert_eq!(DiskPattern::at(SEED, 4096).first_mismatch(&data), None);
        data[100] ^= 1;
        data[300] ^= 1;
        assert_eq!(DiskPattern::at(SEED, 4096).first_mismatch(&data), Some(100));
    }
}
