//! Command-queue index arithmetic (IHI 0069 §5.2, "The ITS command queue").
//!
//! The queue is a ring of 32-byte commands. GITS_CWRITER.Offset names the slot software writes
//! next, GITS_CREADR.Offset the slot the ITS reads next; both hold the *index* of a command in
//! bits [19:5], i.e. its byte offset. The queue is empty when they are equal, so one slot always
//! stays unused and a queue of `n` slots holds at most `n - 1` commands.

use super::cmd::COMMAND_SIZE;

/// Largest command queue GITS_CBASER.Size can describe: 256 pages of 4 KiB.
pub const MAX_QUEUE_BYTES: u64 = 256 * 4096;

/// The command ring: `slots` commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    slots: u32,
}

impl Ring {
    /// A ring over `bytes` of queue memory (a multiple of 4 KiB, at most [`MAX_QUEUE_BYTES`]).
    pub fn new(bytes: u64) -> Self {
        Ring {
            slots: (bytes.min(MAX_QUEUE_BYTES) / COMMAND_SIZE) as u32,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Most commands that can be outstanding at once.
    pub fn capacity(&self) -> u32 {
        self.slots - 1
    }

    /// The slot after `index`.
    pub fn next(&self, index: u32) -> u32 {
        (index + 1) % self.slots
    }

    /// Byte offset of slot `index` in the queue memory (and the value GITS_CWRITER/GITS_CREADR
    /// bits [19:0] hold for it).
    pub fn byte_offset(index: u32) -> u64 {
        u64::from(index) * COMMAND_SIZE
    }

    /// Commands written but not yet read: from `read` up to `write`, wrapping.
    pub fn pending(&self, write: u32, read: u32) -> u32 {
        (write + self.slots - read) % self.slots
    }

    /// Free slots with the ITS at `read` and software at `write`.
    pub fn free(&self, write: u32, read: u32) -> u32 {
        self.capacity() - self.pending(write, read)
    }

    /// Whether an index read from GITS_CREADR is one this ring can hold (a larger one means the
    /// ITS and the driver disagree about the queue).
    pub fn valid(&self, index: u32) -> bool {
        index < self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_four_kib_queue_holds_2047_commands() {
        let r = Ring::new(64 * 1024);
        assert_eq!(r.slots(), 2048);
        assert_eq!(r.capacity(), 2047);
        assert_eq!(r.free(0, 0), 2047);
        assert_eq!(Ring::byte_offset(1), 32);
        assert_eq!(Ring::byte_offset(2047), 0xffe0);
    }

    #[test]
    fn indices_wrap_at_the_end() {
        let r = Ring::new(4096);
        assert_eq!(r.slots(), 128);
        assert_eq!(r.next(126), 127);
        assert_eq!(r.next(127), 0);
        // Writer wrapped past the end, reader behind it.
        assert_eq!(r.pending(2, 126), 4);
        assert_eq!(r.free(2, 126), 123);
        // Full: the writer sits one slot behind the reader.
        assert_eq!(r.pending(125, 126), 127);
        assert_eq!(r.free(125, 126), 0);
        assert!(r.valid(127));
        assert!(!r.valid(128));
    }

    #[test]
    fn queue_size_is_capped_at_what_cbaser_can_describe() {
        assert_eq!(Ring::new(4 * MAX_QUEUE_BYTES).slots(), 32768);
    }
}
