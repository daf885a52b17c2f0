//! Checked access to committed pages through the mapping.
//!
//! Every pointer is checked against the snapshot's high-water mark before the
//! mapping is touched (so a corrupt pointer is an error, never a read past the
//! end of the file), every header against what its parent expects, and every
//! page's checksum and layout the first time this handle reads it.

use std::sync::Arc;

use crate::btree::node::{self, Limits, Node};
use crate::error::{Error, Result};
use crate::storage::mapping::Mapping;
use crate::storage::page::{
    check_header, span_for, verify_checksum, Header, PageKind, PageRef, HEADER_LEN,
};
use crate::storage::verified::VerifiedPages;

/// Committed pages as one snapshot sees them.
pub struct MappedPages {
    pub mapping: Arc<Mapping>,
    /// Pages 0..hwm exist in this snapshot.
    pub hwm: u64,
    pub limits: Limits,
}

impl MappedPages {
    fn run(&self, at: PageRef, span: u64) -> Result<&[u8]> {
        if span == 0 || at.id < 2 || at.id.checked_add(span).is_none_or(|end| end > self.hwm) {
            return Err(Error::corrupt(
                at.id,
                format!(
                    "pointer to a run of {span} pages beyond the high-water mark {}",
                    self.hwm
                ),
            ));
        }
        let ps = self.limits.page_size;
        Ok(self.mapping.bytes(at.id as usize * ps, span as usize * ps))
    }

    /// A tree page, checked.
    pub fn node(&self, at: PageRef, verified: &VerifiedPages) -> Result<Node<'_>> {
        let bytes = self.run(at, 1)?;
        let kind = match PageKind::from_byte(Header(bytes).kind_byte()) {
            Some(k @ (PageKind::Leaf | PageKind::Branch)) => k,
            _ => PageKind::Leaf,
        };
        check_header(bytes, at, kind)?;
        if !verified.contains(at.id) {
            verify_checksum(bytes, at.id)?;
            node::validate(bytes, at.id, &self.limits)?;
            verified.insert(at.id, 1);
        }
        Ok(Node::new(bytes))
    }

    /// The value stored in an overflow run, checked.
    pub fn overflow(&self, at: PageRef, len: u32, verified: &VerifiedPages) -> Result<&[u8]> {
        let span = span_for(len as usize, self.limits.page_size);
        let bytes = self.run(at, span as u64)?;
        let h = check_header(bytes, at, PageKind::Overflow)?;
        if h.span() != span || h.word() != len {
            return Err(Error::corrupt(
                at.id,
                format!(
                    "overflow run holds {} bytes in {} pages, its leaf expects {len} in {span}",
                    h.word(),
                    h.span()
                ),
            ));
        }
        if !verified.contains(at.id) {
            verify_checksum(bytes, at.id)?;
            verified.insert(at.id, 1);
        }
        Ok(&bytes[HEADER_LEN..HEADER_LEN + len as usize])
    }

    /// A free-list run, always fully verified (it is read once, at open).
    pub fn freelist(&self, at: PageRef, span: u32) -> Result<&[u8]> {
        let bytes = self.run(at, span as u64)?;
        let h = check_header(bytes, at, PageKind::Freelist)?;
        if h.span() != span {
            return Err(Error::corrupt(
                at.id,
                format!("free list run of {} pages, meta says {span}", h.span()),
            ));
        }
        verify_checksum(bytes, at.id)?;
        Ok(bytes)
    }
}
