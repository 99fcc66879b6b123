//! Decisions taken from the fuzz input.
//!
//! An input is a device-tree blob, optionally followed by control bytes: the blob's header
//! (`totalsize`) says where it ends, and whatever follows steers the bus model (registration
//! order, probe outcomes, unbind/rebind operations). A plain DTB from the seed corpus has no
//! control bytes: every decision then reads 0, which is always the kernel's own behaviour
//! (devices first, drivers in table order, every probe succeeds).

/// A cursor over the control bytes; 0 once they run out.
#[derive(Debug)]
pub struct Choices<'a> {
    bytes: &'a [u8],
    used: usize,
}

impl<'a> Choices<'a> {
    /// Splits `input` into the blob (as long as its header's `totalsize` says, when that fits)
    /// and the control bytes after it.
    pub fn split(input: &'a [u8]) -> (&'a [u8], Self) {
        let total = input
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .filter(|&t| t <= input.len())
            .unwrap_or(input.len());
        let (blob, rest) = input.split_at(total);
        (blob, Self::new(rest))
    }

    /// Decisions read from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, used: 0 }
    }

    /// The next byte, 0 when none is left.
    pub fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.used).copied().unwrap_or(0);
        self.used = self.used.saturating_add(1);
        b
    }

    /// A number in `0..n` (0 when `n` is 0 or the bytes ran out).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let hi = usize::from(self.byte());
        let lo = usize::from(self.byte());
        ((hi << 8) | lo) % n
    }

    /// True when control bytes remain.
    pub fn has_more(&self) -> bool {
        self.used < self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_follow_the_blob_totalsize() {
        let mut input = vec![0u8; 43];
        input[4..8].copy_from_slice(&40u32.to_be_bytes());
        input[40] = 7;
        let (blob, mut c) = Choices::split(&input);
        assert_eq!(blob.len(), 40);
        assert_eq!(c.byte(), 7);
        assert!(c.has_more());
        assert_eq!(c.below(5), 0, "exhausted bytes read 0");
        assert!(!c.has_more());
    }

    #[test]
    fn a_totalsize_past_the_input_keeps_everything_as_blob() {
        let mut input = vec![0u8; 16];
        input[4..8].copy_from_slice(&999u32.to_be_bytes());
        let (blob, mut c) = Choices::split(&input);
        assert_eq!(blob.len(), 16);
        assert_eq!(c.byte(), 0);
        let (blob, _) = Choices::split(&[1, 2]);
        assert_eq!(blob, &[1, 2]);
    }
}
