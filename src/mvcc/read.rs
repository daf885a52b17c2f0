//! Reading the key space as of one revision, key by key, without
//! collecting: the unary range, counts, and the streams of the next layer
//! are all built on [`LiveAt`].

use super::keys::{self, split_kv_key, REV_LEN};
use super::record::Record;
use crate::error::{Error, Result};
use crate::txn::{Table, TableCursor, TxnRead};

/// The upper end of a user-key range, as etcd reads `range_end`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RangeEnd {
    /// Only the start key (`range_end` empty).
    Single,
    /// Every key from the start on (`range_end` = `"\0"`).
    Unbounded,
    /// Keys below this one.
    Before(Vec<u8>),
}

impl RangeEnd {
    /// etcd's reading of a request's `range_end`.
    pub fn from_etcd(range_end: &[u8]) -> RangeEnd {
        match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            end => RangeEnd::Before(end.to_vec()),
        }
    }

    /// Whether `key` lies in the range that starts at `start`.
    pub fn contains(&self, start: &[u8], key: &[u8]) -> bool {
        match self {
            RangeEnd::Single => key == start,
            RangeEnd::Unbounded => key >= start,
            RangeEnd::Before(end) => key >= start && key < end.as_slice(),
        }
    }

    /// The exclusive bound on `kv` table keys, None for no bound, given
    /// `esc(start)` (which a single-key bound is made of).
    fn kv_bound(&self, escaped_start: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            RangeEnd::Unbounded => None,
            RangeEnd::Before(end) => Some(keys::escape(end)),
            RangeEnd::Single => {
                // esc(start) ends in 00 00; every entry of `start` sorts
                // below the same bytes ending in 00 01, every longer key above.
                let mut b = escaped_start;
                *b.last_mut().expect("escape ends with a terminator") = 1;
                Some(b)
            }
        }
    }
}

/// One live version found by [`LiveAt`].
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    /// The escaped user key (with terminator).
    pub escaped: &'a [u8],
    /// The revision of this version.
    pub mod_revision: u64,
    pub record: Record<'a>,
}

impl Version<'_> {
    pub fn key(&self) -> Result<Vec<u8>> {
        keys::unescape(self.escaped)
            .ok_or_else(|| Error::CorruptFile("malformed key in the kv table".into()))
    }
}

/// The keys of `[start, end)` that are live at revision `rev`, in key order,
/// each with its newest version at or below `rev`. Holds one cursor and a
/// small buffer: memory does not depend on the range.
pub struct LiveAt<'a> {
    cursor: TableCursor<'a>,
    rev: u64,
    bound: Option<Vec<u8>>,
    /// The range is one key: after its version nothing else can match.
    single: bool,
    entry: Option<(&'a [u8], &'a [u8])>,
    scratch: Vec<u8>,
}

impl<'a> LiveAt<'a> {
    /// Positions at the first key at or after `start`.
    pub fn new<T: TxnRead + ?Sized>(
        txn: &'a T,
        kv: Table,
        start: &[u8],
        end: &RangeEnd,
        rev: u64,
    ) -> Result<LiveAt<'a>> {
        let mut cursor = txn.cursor(kv)?;
        let escaped = keys::escape(start);
        let entry = cursor.seek(&escaped)?;
        Ok(LiveAt {
            cursor,
            rev,
            bound: end.kv_bound(escaped),
            single: *end == RangeEnd::Single,
            entry,
            scratch: Vec::new(),
        })
    }

    /// The next live key, or None at the end of the range.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Version<'a>>> {
        loop {
            let Some((k, v)) = self.entry else {
                return Ok(None);
            };
            if self.bound.as_deref().is_some_and(|b| k >= b) {
                self.entry = None;
                return Ok(None);
            }
            let (escaped, rev) = split_kv_key(k)
                .ok_or_else(|| Error::CorruptFile("malformed kv table key".into()))?;
            if rev > self.rev {
                // Newer than the read revision: jump to this key's newest
                // version at or below it (or to the next key).
                self.scratch.clear();
                self.scratch.extend_from_slice(escaped);
                self.scratch.extend_from_slice(&(!self.rev).to_be_bytes());
                self.entry = self.cursor.seek(&self.scratch)?;
                continue;
            }
            let record = Record::decode(v)?;
            if self.single {
                // A point read stops here: stepping past the key's older
                // versions could cross into a leaf the read never needs.
                self.entry = None;
            } else {
                self.skip_key(escaped)?;
            }
            if record.tombstone {
                continue;
            }
            return Ok(Some(Version {
                escaped,
                mod_revision: rev,
                record,
            }));
        }
    }

    /// Moves past the older versions of `escaped`: a few steps, then a seek.
    fn skip_key(&mut self, escaped: &[u8]) -> Result<()> {
        for _ in 0..4 {
            self.entry = self.cursor.next()?;
            match self.entry {
                Some((k, _)) if k.len() == escaped.len() + REV_LEN && k.starts_with(escaped) => {}
                _ => return Ok(()),
            }
        }
        // Many versions: seek past revision 0, which no version has.
        self.scratch.clear();
        self.scratch.extend_from_slice(escaped);
        self.scratch.extend_from_slice(&[0xff; REV_LEN]);
        self.entry = self.cursor.seek(&self.scratch)?;
        if let Some((k, _)) = self.entry {
            if k == self.scratch.as_slice() {
                self.entry = self.cursor.next()?;
            }
        }
        Ok(())
    }
}

/// The newest version of `key` at or below `rev`, tombstones included.
pub fn version_at<'a, T: TxnRead + ?Sized>(
    txn: &'a T,
    kv: Table,
    key: &[u8],
    rev: u64,
) -> Result<Option<(u64, Record<'a>)>> {
    version_at_with(txn, kv, key, rev, &mut Vec::new())
}

/// [`version_at`], building its probe key in `probe` (a buffer kept by a
/// caller that looks up many keys, so none of them allocates).
pub fn version_at_with<'a, T: TxnRead + ?Sized>(
    txn: &'a T,
    kv: Table,
    key: &[u8],
    rev: u64,
    probe: &mut Vec<u8>,
) -> Result<Option<(u64, Record<'a>)>> {
    let mut c = txn.cursor(kv)?;
    keys::kv_key_into(key, rev, probe);
    let Some((k, v)) = c.seek(probe)? else {
        return Ok(None);
    };
    let Some(found) = keys::version_of(k, &probe[..probe.len() - REV_LEN])? else {
        return Ok(None);
    };
    Ok(Some((found, Record::decode(v)?)))
}

/// Executes a range read of `[key, range_end)` (etcd's rules) at revision
/// `rev` (already checked against the compacted and current revisions):
/// etcd's counting, limit and filters. Takes a request's parts, so a caller
/// holding them need not build one.
pub fn range_at<T: TxnRead + ?Sized>(
    txn: &T,
    kv: Table,
    key: &[u8],
    range_end: &[u8],
    opts: &super::txn::RangeOptions,
    rev: u64,
    header_rev: u64,
) -> Result<super::txn::RangeResponse> {
    let end = RangeEnd::from_etcd(range_end);
    let mut live = LiveAt::new(txn, kv, key, &end, rev)?;
    let limit = if opts.limit > 0 {
        opts.limit as usize
    } else {
        usize::MAX
    };
    let mut resp = super::txn::RangeResponse {
        header: super::txn::ResponseHeader {
            revision: header_rev as i64,
        },
        ..Default::default()
    };
    let mut matched = 0usize;
    while let Some(v) = live.next()? {
        if opts.count_only || !opts.keeps(v.mod_revision as i64, v.record.create as i64) {
            resp.count += 1;
            continue;
        }
        matched += 1;
        if matched > limit {
            // Stop at the first key past the limit: a page costs what it
            // returns, not what the range holds (see the docs of `count`).
            resp.more = true;
            break;
        }
        resp.count += 1;
        resp.kvs
            .push(v.record.to_kv(v.key()?, v.mod_revision, opts.keys_only));
    }
    Ok(resp)
}
