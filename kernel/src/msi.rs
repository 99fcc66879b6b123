//! The GICv3 ITS as the kernel's MSI domain (`kapi::msi`).

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;

use gicv3::its::{Its, ItsDevice};
use kapi::msi::{MsiAllocation, MsiDomain, MsiError, MsiVector};

/// MSIs through one ITS.
pub struct ItsMsi(pub Arc<Its>);

struct ItsAllocation {
    vectors: Vec<MsiVector>,
    // Dropped after the vectors' users: discards them, and unmaps the DeviceID from the ITS if
    // no aliased function still uses it.
    _device: ItsDevice,
}

impl MsiAllocation for ItsAllocation {
    fn vectors(&self) -> &[MsiVector] {
        &self.vectors
    }
}

impl MsiDomain for ItsMsi {
    fn alloc(&self, device_id: u32, count: u32) -> Result<Box<dyn MsiAllocation>, MsiError> {
        let err = |e: gicv3::GicError| MsiError::Controller(format!("ITS: {e}"));
        // A DeviceID mapped already by an aliased sibling gives a handle on the same ITT, with
        // EventIDs of its own.
        let mut device = self.0.map_device(device_id, count).map_err(err)?;
        let mut vectors = Vec::new();
        for _ in 0..count {
            let v = device.alloc_vector().map_err(err)?;
            let m = device.msi_message(v);
            vectors.push(MsiVector {
                line: v.line(),
                doorbell: m.address,
                data: m.data,
            });
        }
        Ok(Box::new(ItsAllocation {
            vectors,
            _device: device,
        }))
    }
}
