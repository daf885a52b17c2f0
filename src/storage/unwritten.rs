//! Pages of unsynced commits that are held in memory instead of the file.
//!
//! A commit with `Durability::None` promises nothing about the disk, so its
//! pages need not reach the file until the next durable commit or sync. In a
//! batch of small commits most of those pages (a tree's root and branches,
//! rewritten by every commit) are superseded by the next commit anyway:
//! keeping them here and writing only the survivors at the sync turns ten
//! page writes per commit into a few per batch, the way etcd's backend keeps
//! a batch in one bbolt transaction.
//!
//! Readers reach a page here when its pointer's transaction id is newer than
//! the last commit that wrote its pages out (their snapshot's `written`);
//! older pages are in the file. This module and `mapping` hold the crate's
//! `unsafe` code.
//!
//! Invariant (kept by the writer, see `txn::Writer`): an entry is replaced or
//! removed only once no open snapshot can reach the page it holds: after
//! the page was freed, or written to the file, and every snapshot that
//! could read it from memory ended (one of a commit from the page's own up
//! to the freeing commit, or up to the write; snapshots of older commits
//! never reach it); and never while a sync's write-ahead (`txn::sync`),
//! which reads entries without the writer lock, is writing it. A reader therefore
//! never sees an entry change or vanish under it, which is what makes
//! handing out plain slices sound.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::error::PageId;

/// Hashes page ids (already well spread) with one multiply.
#[derive(Default)]
pub(crate) struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map from page id to a page (or overflow run) not yet in the file.
#[derive(Default)]
pub struct UnwrittenPages {
    pages: RwLock<HashMap<PageId, Box<[u8]>, BuildHasherDefault<PageHasher>>>,
    bytes: AtomicUsize,
}

impl UnwrittenPages {
    pub fn new() -> UnwrittenPages {
        UnwrittenPages::default()
    }

    /// The page or run stored at `id`.
    #[inline]
    pub fn get(&self, id: PageId) -> Option<&[u8]> {
        let map = self.pages.read();
        let buf = map.get(&id)?;
        let (ptr, len) = (buf.as_ptr(), buf.len());
        drop(map);
        // SAFETY: `ptr..ptr+len` is the heap buffer of a `Box<[u8]>` owned by
        // the map. Rehashing moves the box, never the buffer it points to,
        // and the buffer is freed only by `insert` (replacing) or
        // `remove_if`, whose callers guarantee that no slice handed out for
        // that entry is still in use (module invariant). The returned slice
        // borrows `self`, so the map itself outlives it.
        Some(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// Stores `buf` at `id`, returning what was there.
    ///
    /// # Safety
    /// If an entry exists at `id`, no slice that `get` returned for it may
    /// still be in use: no open snapshot may reach the page it holds.
    pub unsafe fn insert(&self, id: PageId, buf: Box<[u8]>) -> Option<Box<[u8]>> {
        self.bytes.fetch_add(buf.len(), Ordering::Relaxed);
        let old = self.pages.write().insert(id, buf);
        if let Some(b) = &old {
            self.bytes.fetch_sub(b.len(), Ordering::Relaxed);
        }
        old
    }

    /// Removes the entry at `id` if `keep` says no to it.
    ///
    /// # Safety
    /// No slice that `get` returned for the removed entry may still be in
    /// use: no open snapshot may reach the page it holds.
    pub unsafe fn remove_if(
        &self,
        id: PageId,
        remove: impl FnOnce(&[u8]) -> bool,
    ) -> Option<Box<[u8]>> {
        let mut map = self.pages.write();
        if !remove(map.get(&id)?) {
            return None;
        }
        let old = map.remove(&id)?;
        self.bytes.fetch_sub(old.len(), Ordering::Relaxed);
        Some(old)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_remove() {
        let pages = UnwrittenPages::new();
        assert!(pages.get(3).is_none());
        // SAFETY: no slice for id 3 exists yet.
        assert!(unsafe { pages.insert(3, vec![1u8; 64].into()) }.is_none());
        let before = pages.get(3).unwrap().as_ptr();
        for id in 10..200 {
            // SAFETY: fresh ids; forces the map to rehash.
            unsafe { pages.insert(id, vec![id as u8; 8].into()) };
        }
        let a = pages.get(3).unwrap();
        assert_eq!(a.as_ptr(), before, "rehashing must not move a buffer");
        assert_eq!(a, &[1u8; 64][..]);
        assert_eq!(pages.bytes(), 64 + 190 * 8);
        // SAFETY: `a` is not used after this point.
        let old = unsafe { pages.insert(3, vec![2u8; 32].into()) }.unwrap();
        assert_eq!(&*old, &[1u8; 64][..]);
        assert_eq!(pages.get(3).unwrap(), &[2u8; 32][..]);
        // SAFETY: no slice for id 3 is in use.
        assert!(unsafe { pages.remove_if(3, |b| b[0] == 9) }.is_none());
        // SAFETY: as above; this call removes the entry.
        assert!(unsafe { pages.remove_if(3, |b| b[0] == 2) }.is_some());
        assert!(pages.get(3).is_none());
        assert_eq!(pages.bytes(), 190 * 8);
    }
}
