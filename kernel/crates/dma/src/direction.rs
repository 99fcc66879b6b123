//! DMA directions, as values and as types.

/// Who writes the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The CPU filled it; the device reads it.
    ToDevice,
    /// The device fills it; the CPU reads it afterwards.
    FromDevice,
    /// Both.
    Bidirectional,
}

impl Direction {
    /// The device reads the buffer.
    pub fn device_reads(self) -> bool {
        !matches!(self, Direction::FromDevice)
    }
    /// The device writes the buffer.
    pub fn device_writes(self) -> bool {
        !matches!(self, Direction::ToDevice)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A direction as a type, for handles whose direction is fixed at compile time.
pub trait DmaDirection: sealed::Sealed + Send + Sync + 'static {
    /// The direction.
    const DIRECTION: Direction;
}

/// The device reads.
#[derive(Debug)]
pub enum ToDevice {}
/// The device writes.
#[derive(Debug)]
pub enum FromDevice {}
/// Both.
#[derive(Debug)]
pub enum Bidirectional {}

impl sealed::Sealed for ToDevice {}
impl sealed::Sealed for FromDevice {}
impl sealed::Sealed for Bidirectional {}

impl DmaDirection for ToDevice {
    const DIRECTION: Direction = Direction::ToDevice;
}
impl DmaDirection for FromDevice {
    const DIRECTION: Direction = Direction::FromDevice;
}
impl DmaDirection for Bidirectional {
    const DIRECTION: Direction = Direction::Bidirectional;
}
