//! In-QEMU tests of the edu driver.

use ktest::{kassert, kassert_eq, ktests, skip};

ktests! {
    /// The round trip started at probe brings back exactly the bytes that went out, through an
    /// address the device's mask allows.
    fn round_trip_through_the_dma_api() -> ktest::Result {
        let Some(edu) = crate::bound().into_iter().next() else { skip!("no edu bound") };
        let addr = match edu.round_trip_result() {
            Ok(a) => a,
            Err(crate::EduError::Busy) => skip!("the round trip was already reported"),
            Err(e) => ktest::kfail!("{e}"),
        };
        kassert!(addr.0 < 1 << 28, "device address {:#x} above edu's 28-bit mask", addr.0);
        kassert!(edu.interrupts() >= 2, "{} interrupts", edu.interrupts());
        Ok(())
    }

    /// Another transfer after probe works through a fresh mapping.
    fn transfer_after_probe() -> ktest::Result {
        let Some(edu) = crate::bound().into_iter().next() else { skip!("no edu bound") };
        let _ = edu.round_trip_result();
        let data: alloc::vec::Vec<u8> = (0..512).map(|i| (i * 3) as u8).collect();
        let out = ktest::ktry!(edu.dma.map::<dma::ToDevice>(data.clone()).map_err(|(e, _)| e));
        ktest::ktry!(edu.transfer(crate::Transfer::ToDevice, out.addr(), 100, 512));
        drop(out);
        let back = ktest::ktry!(edu.dma.map::<dma::FromDevice>(alloc::vec![0; 512]).map_err(|(e, _)| e));
        ktest::ktry!(edu.transfer(crate::Transfer::FromDevice, back.addr(), 100, 512));
        kassert_eq!(back.into_buffer(), data);
        Ok(())
    }
}
