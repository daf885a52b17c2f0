//! The page header every non-meta page starts with, and its checksum.
//!
//! Layout (little-endian), 32 bytes:
//!
//! | bytes  | field    | meaning                                                    |
//! |--------|----------|------------------------------------------------------------|
//! | 0..4   | checksum | CRC32 of bytes 4..span*page_size of the run                 |
//! | 4      | kind     | [`PageKind`]                                                |
//! | 5      | reserved | zero                                                        |
//! | 6..8   | count    | cells on a tree page; zero otherwise                        |
//! | 8..16  | id       | the page's own number, so a misdirected write is caught     |
//! | 16..24 | txid     | the transaction that wrote it; parents record it too        |
//! | 24..28 | span     | pages in this run (1 for tree pages)                        |
//! | 28..32 | word     | tree pages: start of the cell area; overflow: value length; |
//! |        |          | free list: extent count                                    |
//!
//! A page is identified by the pair (id, txid): a parent stores both, so a page
//! that is intact but stale (a lost write left its previous content) is caught
//! as surely as a torn one.

use crate::error::{Error, PageId, Result};

/// Size of the header at the start of every non-meta page.
pub const HEADER_LEN: usize = 32;

/// Smallest page size a database may be created with.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest page size a database may be created with.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Page size used unless the options say otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 4096;

/// A pointer to a page run: its number, the transaction that wrote it and
/// its checksum. Parents hold these for their children (and the meta for the
/// roots), which makes the file a Merkle tree: a child that is intact but not
/// the version its parent expects (a lost write left older content, possibly
/// from an earlier, lost commit that used the same transaction id) is caught
/// by the checksum mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PageRef {
    /// First page of the run; 0 means "none" (page 0 is a meta page).
    pub id: PageId,
    /// The transaction that wrote it.
    pub txid: u64,
    /// The run's checksum as stored in its header.
    pub crc: u32,
}

impl PageRef {
    /// The null pointer: no page.
    pub const NONE: PageRef = PageRef {
        id: 0,
        txid: 0,
        crc: 0,
    };

    pub fn is_none(&self) -> bool {
        self.id == 0
    }
}

/// What a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageKind {
    /// Interior B+tree node: separator keys and child pointers.
    Branch = 1,
    /// B+tree leaf: keys and values (or pointers to overflow runs).
    Leaf = 2,
    /// A run of pages holding one large value.
    Overflow = 3,
    /// A run of pages holding the persisted free-page list.
    Freelist = 4,
}

impl PageKind {
    pub(crate) fn from_byte(b: u8) -> Option<PageKind> {
        match b {
            1 => Some(PageKind::Branch),
            2 => Some(PageKind::Leaf),
            3 => Some(PageKind::Overflow),
            4 => Some(PageKind::Freelist),
            _ => None,
        }
    }
}

#[inline]
pub(crate) fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
#[inline]
pub(crate) fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
#[inline]
pub(crate) fn write_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub(crate) fn write_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub(crate) fn write_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Read-only view of a page header.
#[derive(Clone, Copy)]
pub(crate) struct Header<'a>(pub &'a [u8]);

impl<'a> Header<'a> {
    pub fn checksum(self) -> u32 {
        read_u32(self.0, 0)
    }
    pub fn kind_byte(self) -> u8 {
        self.0[4]
    }
    pub fn count(self) -> usize {
        read_u16(self.0, 6) as usize
    }
    pub fn id(self) -> PageId {
        read_u64(self.0, 8)
    }
    pub fn txid(self) -> u64 {
        read_u64(self.0, 16)
    }
    pub fn span(self) -> u32 {
        read_u32(self.0, 24)
    }
    pub fn word(self) -> u32 {
        read_u32(self.0, 28)
    }
}

/// Writes a fresh header; the checksum is filled in by [`seal`] at commit.
pub(crate) fn init_header(buf: &mut [u8], kind: PageKind, id: PageId, txid: u64, span: u32) {
    buf[..HEADER_LEN].fill(0);
    buf[4] = kind as u8;
    write_u64(buf, 8, id);
    write_u64(buf, 16, txid);
    write_u32(buf, 24, span);
}

pub(crate) fn set_count(buf: &mut [u8], count: usize) {
    debug_assert!(count <= u16::MAX as usize);
    write_u16(buf, 6, count as u16);
}

pub(crate) fn set_word(buf: &mut [u8], word: u32) {
    write_u32(buf, 28, word);
}

/// The checksum of a whole run as stored in its first four bytes.
pub(crate) fn compute_checksum(run: &[u8]) -> u32 {
    crc32fast::hash(&run[4..])
}

/// Fills in the checksum of a run that is about to be written.
pub(crate) fn seal(run: &mut [u8]) -> u32 {
    let sum = compute_checksum(run);
    write_u32(run, 0, sum);
    sum
}

/// Checks the header of a run read from `id` against what its parent
/// expects. Cheap: no checksum; see [`verify_checksum`].
pub(crate) fn check_header(run: &[u8], want: PageRef, kind: PageKind) -> Result<Header<'_>> {
    let (id, txid) = (want.id, want.txid);
    let h = Header(run);
    if h.id() != id {
        return Err(Error::corrupt(
            id,
            format!("header names page {} (misdirected write)", h.id()),
        ));
    }
    if h.kind_byte() != kind as u8 {
        return Err(Error::corrupt(
            id,
            format!(
                "expected a {:?} page, found kind byte {}",
                kind,
                h.kind_byte()
            ),
        ));
    }
    if h.txid() != txid {
        return Err(Error::corrupt(
            id,
            format!(
                "written by transaction {} but its parent expects transaction {} (lost or stale write)",
                h.txid(),
                txid
            ),
        ));
    }
    if h.checksum() != want.crc && !checksums_ignored() {
        return Err(Error::corrupt(
            id,
            format!(
                "checksum {:#010x} differs from the {:#010x} its parent expects (lost or stale write)",
                h.checksum(),
                want.crc
            ),
        ));
    }
    Ok(h)
}

/// Verifies the CRC of a whole run.
pub(crate) fn verify_checksum(run: &[u8], id: PageId) -> Result<()> {
    let stored = read_u32(run, 0);
    let actual = compute_checksum(run);
    if stored != actual && !checksums_ignored() {
        return Err(Error::corrupt(
            id,
            format!("checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
        ));
    }
    Ok(())
}

/// Whether checksum comparisons are switched off: only ever by the fuzzing
/// harness (feature `fuzzing`), so that mutated files reach the structural
/// checks behind the checksums. Always false in normal builds.
#[inline]
pub(crate) fn checksums_ignored() -> bool {
    #[cfg(feature = "fuzzing")]
    {
        IGNORE_CHECKSUMS.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "fuzzing"))]
    {
        false
    }
}

#[cfg(feature = "fuzzing")]
pub(crate) static IGNORE_CHECKSUMS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Number of pages needed to hold `payload` bytes after a header.
pub(crate) fn span_for(payload: usize, page_size: usize) -> u32 {
    (HEADER_LEN + payload).div_ceil(page_size) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_verify_and_detect_flip() {
        let mut page = vec![0u8; 4096];
        init_header(&mut page, PageKind::Leaf, 7, 3, 1);
        page[100] = 42;
        let crc = seal(&mut page);
        verify_checksum(&page, 7).unwrap();
        let at = |id, txid, crc| PageRef { id, txid, crc };
        check_header(&page, at(7, 3, crc), PageKind::Leaf).unwrap();
        assert!(check_header(&page, at(8, 3, crc), PageKind::Leaf).is_err());
        assert!(check_header(&page, at(7, 4, crc), PageKind::Leaf).is_err());
        assert!(check_header(&page, at(7, 3, crc ^ 1), PageKind::Leaf).is_err());
        assert!(check_header(&page, at(7, 3, crc), PageKind::Branch).is_err());
        page[200] ^= 1;
        assert!(verify_checksum(&page, 7).is_err());
    }

    #[test]
    fn spans() {
        assert_eq!(span_for(0, 4096), 1);
        assert_eq!(span_for(4096 - 32, 4096), 1);
        assert_eq!(span_for(4096 - 31, 4096), 2);
    }
}
