//! The Interrupt Translation Service: MSIs from PCI devices become LPIs.
//!
//! A device signals an MSI by writing its EventID to GITS_TRANSLATER; the bus tags the write with
//! the device's DeviceID (for PCI, the requester ID mapped through the DT `msi-map`). The ITS looks
//! the pair up in in-memory tables (IHI 0069 §5.2):
//!
//! ```text
//!   DeviceID --device table--> ITT --(EventID)--> (LPI INTID, collection)
//!   collection --collection table--> redistributor
//! ```
//!
//! Software edits those tables only through commands in a ring in memory ([`cmd`], [`queue`]);
//! [`table`] sizes the tables and builds the base-register values.

pub mod cmd;
pub mod queue;
pub mod table;
