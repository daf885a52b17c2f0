//! The file of pages: layout, checksums, meta pages, the free list and the
//! mapping. Nothing here knows about trees or transactions.
#![allow(missing_docs)]

pub(crate) mod extents;
pub(crate) mod file;
pub(crate) mod mapping;
pub(crate) mod meta;
pub mod page;
pub(crate) mod unwritten;
pub(crate) mod verified;

#[cfg(feature = "fault-injection")]
pub use file::IoObserver;
