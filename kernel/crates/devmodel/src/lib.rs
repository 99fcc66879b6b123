//! The bus model: devices, drivers, binding and deferred probe.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
