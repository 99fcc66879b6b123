//! The fuzz harness behind `cargo xtask fuzz`: what each libFuzzer target runs on one input.
//!
//! - [`topology::check`] (`dt_topology`): a blob through `of::dma_topology` and every accessor
//!   the kernel uses at boot, with the documented properties of every answer checked.
//! - [`bus::run`] (`bus_model`): platform devices from the blob into `devmodel`'s bus model, the
//!   kernel's DMA hook logic resolving `iommus` / `iommu-map` through `of`, fake drivers bound and
//!   unbound in an input-chosen order, the bus model's invariants checked after every call.
//!
//! The harness builds without libFuzzer (`--no-default-features`) so its own tests run as
//! ordinary tests on the committed device trees.

#![forbid(unsafe_code)]

pub mod bus;
pub mod choices;
pub mod topology;

#[cfg(test)]
mod tests;
