//! Checked access to committed pages through the mapping.
//!
//! Every pointer is checked against the snapshot's high-water mark before the
//! mapping is touched (so a corrupt pointer is an error, never a read past the
//! end of the file), every header against what its parent expects, and every
//! page's checksum and layout the first time this handle reads it.
//!
//! Pages of unsynced commits newer than the snapshot's `written` commit live
//! in memory ([`UnwrittenPages`]), not in the file; they were made by this
//! handle, so only their headers are checked.

use std::sync::Arc;

use crate::btree::node::{self, Limits, Node};
use crate::error::{Error, Result};
use crate::storage::mapping::Mapping;
use crate::storage::page::{
    check_header, span_for, verify_checksum, Header, PageKind, PageRef, HEADER_LEN,
};
use crate::storage::unwritten::UnwrittenPages;
use crate::storage::verified::VerifiedPages;

/// Committed pages as one snapshot sees them.
pub struct MappedPages {
    pub mapping: Arc<Mapping>,
    /// Pages 0..hwm exist in this snapshot.
    pub hwm: u64,
    /// Pages 0..file_pages are in the file (and the mapping).
    pub file_pages: u64,
    /// Every page with a transaction id up to this one is in the file;
    /// newer ones are in the unwritten pages.
    pub written: u64,
    /// The commit this snapshot is of: no page it reaches is newer. Memory
    /// lets go of newer pages while it is open (`Writer::release_pending`).
    pub newest: u64,
    pub limits: Limits,
}

/// Where a page's bytes come from.
enum Source<'a> {
    File(&'a [u8]),
    Memory(&'a [u8]),
}

impl MappedPages {
    fn run<'a>(
        &'a self,
        at: PageRef,
        span: u64,
        unwritten: &'a UnwrittenPages,
    ) -> Result<Source<'a>> {
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
        if at.txid > self.written {
            if at.txid > self.newest {
                return Err(Error::corrupt(
                    at.id,
                    format!(
                        "pointer to a page of transaction {}, newer than the snapshot's {}",
                        at.txid, self.newest
                    ),
                ));
            }
            return match unwritten.get(at.id) {
                Some(bytes) if bytes.len() == span as usize * ps => Ok(Source::Memory(bytes)),
                _ => Err(Error::corrupt(
                    at.id,
                    format!(
                        "pointer to a run of {span} pages of unwritten transaction {} that is not held",
                        at.txid
                    ),
                )),
            };
        }
        self.file_run(at, span).map(Source::File)
    }

    /// A run that must be in the file (after the high-water mark check).
    fn file_run(&self, at: PageRef, span: u64) -> Result<&[u8]> {
        let ps = self.limits.page_size;
        if at.id + span > self.file_pages {
            return Err(Error::corrupt(
                at.id,
                format!(
                    "pointer to a run of {span} pages beyond the end of the file ({} pages)",
                    self.file_pages
                ),
            ));
        }
        Ok(self.mapping.bytes(at.id as usize * ps, span as usize * ps))
    }

    /// Starts loading the page `at` into the processor's caches if it is
    /// in the file (a hint: nothing is checked or read).
    #[inline]
    pub fn prefetch(&self, at: PageRef) {
        if at.txid <= self.written && at.id < self.file_pages.min(self.hwm) {
            let ps = self.limits.page_size;
            self.mapping.prefetch(at.id as usize * ps, ps);
        }
    }

    /// A tree page, checked.
    pub fn node<'a>(
        &'a self,
        at: PageRef,
        verified: &VerifiedPages,
        unwritten: &'a UnwrittenPages,
    ) -> Result<Node<'a>> {
        let (bytes, check) = match self.run(at, 1, unwritten)? {
            Source::File(b) => (b, !verified.contains(at.id)),
            Source::Memory(b) => (b, false),
        };
        let kind = match PageKind::from_byte(Header(bytes).kind_byte()) {
            Some(k @ (PageKind::Leaf | PageKind::Branch)) => k,
            _ => PageKind::Leaf,
        };
        check_header(bytes, at, kind)?;
        if check {
            verify_checksum(bytes, at.id)?;
            node::validate(bytes, at.id, &self.limits)?;
            verified.insert(at.id, 1);
        }
        Ok(Node::new(bytes))
    }

    /// The value stored in an overflow run, checked.
    pub fn overflow<'a>(
        &'a self,
        at: PageRef,
        len: u32,
        verified: &VerifiedPages,
        unwritten: &'a UnwrittenPages,
    ) -> Result<&'a [u8]> {
        let span = span_for(len as usize, self.limits.page_size);
        let (bytes, check) = match self.run(at, span as u64, unwritten)? {
            Source::File(b) => (b, !verified.contains(at.id)),
            Source::Memory(b) => (b, false),
        };
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
        if check {
            verify_checksum(bytes, at.id)?;
            verified.insert(at.id, 1);
        }
        Ok(&bytes[HEADER_LEN..HEADER_LEN + len as usize])
    }

    /// A free-list run, always fully verified (it is read once, at open).
    pub fn freelist(&self, at: PageRef, span: u32) -> Result<&[u8]> {
        // Free lists are written only by durable commits: always in the file.
        if at.txid > self.written {
            return Err(Error::corrupt(
                at.id,
                format!("free list of transaction {} was never written", at.txid),
            ));
        }
        self.run(at, span as u64, &UnwrittenPages::new())?;
        let bytes = self.file_run(at, span as u64)?;
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
