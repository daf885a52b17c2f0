//! Remembers which pages have had their checksum verified in this process.
//!
//! Verifying a page's CRC on every access would double the cost of a point
//! read. Instead each page is verified the first time this handle reads it
//! (and pages this handle writes are known good), so every page that reaches
//! a caller has passed its checksum once, and `check` verifies every page
//! again on demand. One bit per page: 32 KiB per GiB of file at 4 KiB pages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::PageId;

const SEGMENT_PAGES: u64 = 1 << 20;
const SEGMENT_WORDS: usize = (SEGMENT_PAGES / 64) as usize;
const SEGMENTS: usize = 1 << 12;

/// A lock-free bitmap over page numbers, allocated a segment at a time as
/// the file grows. Pages beyond its range (over 16 TiB at 4 KiB pages) are
/// simply verified on every read.
pub struct VerifiedPages {
    segments: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Default for VerifiedPages {
    fn default() -> Self {
        Self::new()
    }
}

impl VerifiedPages {
    pub fn new() -> VerifiedPages {
        VerifiedPages {
            segments: (0..SEGMENTS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn locate(id: PageId) -> Option<(usize, usize, u64)> {
        let seg = (id / SEGMENT_PAGES) as usize;
        if seg >= SEGMENTS {
            return None;
        }
        let bit = id % SEGMENT_PAGES;
        Some((seg, (bit / 64) as usize, 1u64 << (bit % 64)))
    }

    #[inline]
    pub fn contains(&self, id: PageId) -> bool {
        let Some((seg, word, mask)) = Self::locate(id) else {
            return false;
        };
        match self.segments[seg].get() {
            Some(words) => words[word].load(Ordering::Acquire) & mask != 0,
            None => false,
        }
    }

    /// Marks `span` pages starting at `id` as verified.
    pub fn insert(&self, id: PageId, span: u64) {
        for p in id..id + span {
            let Some((seg, word, mask)) = Self::locate(p) else {
                return;
            };
            let words = self.segments[seg]
                .get_or_init(|| (0..SEGMENT_WORDS).map(|_| AtomicU64::new(0)).collect());
            words[word].fetch_or(mask, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_contains() {
        let v = VerifiedPages::new();
        assert!(!v.contains(5));
        v.insert(5, 3);
        assert!(v.contains(5) && v.contains(7) && !v.contains(8));
        v.insert(SEGMENT_PAGES + 1, 1);
        assert!(v.contains(SEGMENT_PAGES + 1));
        assert!(!v.contains(u64::MAX));
    }
}
