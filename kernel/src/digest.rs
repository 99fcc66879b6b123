//! Streaming SHA-256 (FIPS 180-4) over the block compression in `arch::sha256`.

use crate::arch::sha256::compress;

/// Initial hash value (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A SHA-256 computation.
pub struct Sha256 {
    state: [u32; 8],
    buf: [u8; 64],
    used: usize,
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A new digest.
    pub fn new() -> Self {
        Self {
            state: H0,
            buf: [0; 64],
            used: 0,
            total: 0,
        }
    }

    /// Adds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.used > 0 {
            let take = (64 - self.used).min(data.len());
            self.buf[self.used..self.used + take].copy_from_slice(&data[..take]);
            self.used += take;
            data = &data[take..];
            if self.used < 64 {
                return;
            }
            compress(&mut self.state, core::slice::from_ref(&self.buf));
            self.used = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        compress(&mut self.state, blocks);
        self.buf[..rest.len()].copy_from_slice(rest);
        self.used = rest.len();
    }

    /// The digest.
    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.total.wrapping_mul(8);
        // Padding: 0x80, zeroes, and the message length in bits, big-endian, to fill a block.
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let zeros = (55usize.wrapping_sub(self.used)) % 64;
        pad[1 + zeros..1 + zeros + 8].copy_from_slice(&bits.to_be_bytes());
        let total = self.total;
        self.update(&pad[..1 + zeros + 8]);
        self.total = total;
        debug_assert_eq!(self.used, 0);
        let mut out = [0u8; 32];
        for (i, w) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// Lower-case hex of a digest.
pub fn hex(d: &[u8]) -> alloc::string::String {
    d.iter().map(|b| alloc::format!("{b:02x}")).collect()
}

ktest::ktests! {
    /// The FIPS 180-4 examples, split across updates in awkward places, match; the hardware
    /// path (when present) and the portable one agree.
    fn sha256_matches_the_standard_vectors() -> ktest::Result {
        let cases: [(&[u8], &str); 3] = [
            (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ];
        for (msg, want) in cases {
            for split in [0, 1, msg.len() / 2, msg.len()] {
                let mut h = Sha256::new();
                h.update(&msg[..split.min(msg.len())]);
                h.update(&msg[split.min(msg.len())..]);
                ktest::kassert_eq!(hex(&h.finish()), want, "split at {split}");
            }
        }
        let million_a = alloc::vec![b'a'; 1_000_000];
        let mut h = Sha256::new();
        for chunk in million_a.chunks(999) {
            h.update(chunk);
        }
        ktest::kassert_eq!(hex(&h.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        // The portable compression gives the same state as the instructions.
        let block = [0x5au8; 64];
        let mut a = H0;
        let mut b = H0;
        crate::arch::sha256::compress(&mut a, &[block]);
        sha2::compress256(&mut b, core::slice::from_ref(sha2::digest::generic_array::GenericArray::from_slice(&block)));
        ktest::kassert_eq!(a, b);
        Ok(())
    }
}
