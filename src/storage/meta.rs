//! The two meta pages (page 0 and page 1), written alternately.
//!
//! A commit writes its meta to the slot that does not hold the last meta
//! known to be on stable storage ("the durable meta"), so a commit never
//! overwrites the only meta a crash could fall back to. With every commit
//! synced the slots simply alternate. At open the valid meta with the higher
//! transaction id wins, unless the pages written since its last sync turn out
//! to be incomplete (see `txn::open`), in which case the other meta is used.
//!
//! Layout (little-endian), the first [`META_LEN`] bytes of the page, the rest
//! zero:
//!
//! | bytes   | field                                                        |
//! |---------|--------------------------------------------------------------|
//! | 0..4    | CRC32 of bytes 4..128                                        |
//! | 4..8    | zero                                                         |
//! | 8..16   | magic `b"revkv\0db"`                                         |
//! | 16..20  | format version                                               |
//! | 20..24  | page size                                                    |
//! | 24..32  | transaction id                                               |
//! | 32..40  | catalog root page (0 = no tables)                            |
//! | 40..48  | catalog root transaction                                     |
//! | 48..52  | catalog root checksum                                        |
//! | 52..56  | free-list run span in pages                                  |
//! | 56..64  | free-list run first page (0 = none)                          |
//! | 64..72  | free-list run transaction                                    |
//! | 72..76  | free-list run checksum                                       |
//! | 76..80  | flags: zero (reserved)                                       |
//! | 80..88  | high-water mark: pages 0..hwm are allocated in the file      |
//! | 88..96  | pages written since `synced_txid` (this commit included)     |
//! | 96..104 | synced_txid: every page written by this or an earlier        |
//! |         | transaction up to it was on stable storage before this meta  |
//! |         | was written; open verifies only pages newer than it          |
//! | 104..128| zero                                                         |

use super::page::{read_u32, read_u64, write_u32, write_u64, PageRef};
use crate::error::{Error, PageId, Result};

/// Bytes of the meta page covered by its checksum.
pub const META_LEN: usize = 128;
/// Identifies a revkv file.
pub const MAGIC: [u8; 8] = *b"revkv\0db";
/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// One decoded meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub txid: u64,
    pub catalog: PageRef,
    pub freelist: PageRef,
    pub freelist_span: u32,
    pub flags: u32,
    pub hwm: u64,
    pub written_pages: u64,
    pub synced_txid: u64,
}

impl Meta {
    /// The meta of a freshly created, empty database.
    pub fn empty(page_size: u32) -> Meta {
        Meta {
            page_size,
            txid: 1,
            catalog: PageRef::NONE,
            freelist: PageRef::NONE,
            freelist_span: 0,
            flags: 0,
            hwm: 2,
            written_pages: 0,
            synced_txid: 1,
        }
    }

    pub fn encode(&self, page: &mut [u8]) {
        page.fill(0);
        page[8..16].copy_from_slice(&MAGIC);
        write_u32(page, 16, FORMAT_VERSION);
        write_u32(page, 20, self.page_size);
        write_u64(page, 24, self.txid);
        write_u64(page, 32, self.catalog.id);
        write_u64(page, 40, self.catalog.txid);
        write_u32(page, 48, self.catalog.crc);
        write_u32(page, 52, self.freelist_span);
        write_u64(page, 56, self.freelist.id);
        write_u64(page, 64, self.freelist.txid);
        write_u32(page, 72, self.freelist.crc);
        write_u32(page, 76, self.flags);
        write_u64(page, 80, self.hwm);
        write_u64(page, 88, self.written_pages);
        write_u64(page, 96, self.synced_txid);
        let sum = crc32fast::hash(&page[4..META_LEN]);
        write_u32(page, 0, sum);
    }

    /// Decodes the first [`META_LEN`] bytes of a meta page at `slot`.
    ///
    /// Distinguishes a foreign file (wrong magic) from a damaged meta, so
    /// that open can say which one it found.
    pub fn decode(bytes: &[u8], slot: PageId) -> Result<Meta> {
        if bytes.len() < META_LEN {
            return Err(Error::CorruptFile(format!("meta page {slot} is truncated")));
        }
        if bytes[8..16] != MAGIC {
            return Err(Error::NotADatabase(format!(
                "meta page {slot} has no revkv magic"
            )));
        }
        let stored = read_u32(bytes, 0);
        let actual = crc32fast::hash(&bytes[4..META_LEN]);
        if stored != actual && !super::page::checksums_ignored() {
            return Err(Error::corrupt(
                slot,
                format!("meta checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
            ));
        }
        let version = read_u32(bytes, 16);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let meta = Meta {
            page_size: read_u32(bytes, 20),
            txid: read_u64(bytes, 24),
            catalog: PageRef {
                id: read_u64(bytes, 32),
                txid: read_u64(bytes, 40),
                crc: read_u32(bytes, 48),
            },
            freelist_span: read_u32(bytes, 52),
            freelist: PageRef {
                id: read_u64(bytes, 56),
                txid: read_u64(bytes, 64),
                crc: read_u32(bytes, 72),
            },
            flags: read_u32(bytes, 76),
            hwm: read_u64(bytes, 80),
            written_pages: read_u64(bytes, 88),
            synced_txid: read_u64(bytes, 96),
        };
        meta.validate(slot)?;
        Ok(meta)
    }

    /// Structural checks that need nothing but the meta itself.
    fn validate(&self, slot: PageId) -> Result<()> {
        let bad = |what: String| Err(Error::corrupt(slot, what));
        if !self.page_size.is_power_of_two()
            || !(super::page::MIN_PAGE_SIZE..=super::page::MAX_PAGE_SIZE).contains(&self.page_size)
        {
            return bad(format!(
                "meta names an impossible page size {}",
                self.page_size
            ));
        }
        if self.synced_txid > self.txid {
            return bad(format!(
                "synced transaction {} is after the meta's own {}",
                self.synced_txid, self.txid
            ));
        }
        if self.hwm < 2 {
            return bad(format!(
                "high-water mark {} is below the meta pages",
                self.hwm
            ));
        }
        // Every later size computation multiplies page numbers by the page
        // size: a meta whose file could not be addressed is corrupt.
        if self
            .hwm
            .checked_mul(u64::from(self.page_size))
            .is_none_or(|b| b > i64::MAX as u64)
        {
            return bad(format!(
                "high-water mark {} is beyond any possible file size",
                self.hwm
            ));
        }
        for (what, r) in [("catalog", self.catalog), ("free list", self.freelist)] {
            if r.id != 0 && (r.id < 2 || r.id >= self.hwm || r.txid > self.txid) {
                return bad(format!(
                    "{what} pointer (page {}, transaction {}) is outside the file's {} pages or from the future",
                    r.id, r.txid, self.hwm
                ));
            }
        }
        if self.freelist.id != 0
            && (self.freelist_span == 0 || self.freelist.id + self.freelist_span as u64 > self.hwm)
        {
            return bad(format!(
                "free list run of {} pages is empty or passes the high-water mark",
                self.freelist_span
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut m = Meta::empty(4096);
        m.txid = 9;
        m.hwm = 100;
        m.catalog = PageRef {
            id: 5,
            txid: 9,
            crc: 77,
        };
        let mut page = vec![0u8; 4096];
        m.encode(&mut page);
        assert_eq!(Meta::decode(&page, 1).unwrap(), m);
        let mut bad = page.clone();
        bad[30] ^= 0x10;
        assert!(matches!(Meta::decode(&bad, 1), Err(Error::Corrupt { .. })));
        let mut foreign = page.clone();
        foreign[8] = b'x';
        assert!(matches!(
            Meta::decode(&foreign, 1),
            Err(Error::NotADatabase(_))
        ));
    }
}
