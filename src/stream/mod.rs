//! Streaming range reads: a range at one revision, pulled chunk by chunk, so
//! no side ever holds more than one chunk of it.
//!
//! etcd 3.7's RangeStream answers a large range in chunks instead of one
//! message, because a unary range builds the whole result in memory on both
//! sides. A [`RangeStream`] goes further: every chunk is read on demand from
//! the copy-on-write file (there is no in-memory index to walk), so the first
//! chunk of a million-key prefix costs what the first chunk of a thousand-key
//! prefix costs, and what the stream holds between calls is its position and
//! a few counters.
//!
//! Two ways to hold the revision:
//!
//! * [`StreamMode::Pinned`] reads from one snapshot. Compaction and
//!   defragmentation cannot break it; the pages it can see are kept from
//!   reuse until it ends or is dropped ([`Stats::pinned_pages`](crate::Stats)
//!   shows how many, [`StreamMetricsSnapshot::pinned`] how many streams and for how
//!   long).
//! * [`StreamMode::Resumable`] holds nothing between chunks: each chunk opens
//!   a snapshot, checks that the stream's revision is not compacted, reads,
//!   and lets go. Its position is a [`ResumeToken`] that can be kept and
//!   used later to continue. If compaction passes the stream's revision, the
//!   next chunk fails with [`Error::Compacted`], as an interrupted etcd
//!   RangeStream does.
//!
//! When to use which: the unary [`Store::range`] for small ranges and point
//! reads; a pinned stream for a large read that must finish (a list that
//! fills a watch cache); a resumable stream for a client that may pause for
//! a long time (paginated APIs, exports) and can afford to restart when
//! compaction overtakes it.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use revkv::mvcc::{prefix_end, Store, StoreOptions};
//! use revkv::stream::StreamOptions;
//! let store = Store::open(dir.path().join("kv.db"), StoreOptions::new())?;
//! for i in 0..100 {
//!     store.put(format!("/registry/pods/p{i:03}").as_bytes(), b"{}")?;
//! }
//! let mut keys = 0;
//! for chunk in store.range_stream(b"/registry/pods/", &prefix_end(b"/registry/pods/"), StreamOptions::new().chunk_keys(30))? {
//!     let chunk = chunk?;
//!     assert_eq!(chunk.revision, 101);
//!     assert!(chunk.len() <= 30);
//!     keys += chunk.len();
//! }
//! assert_eq!(keys, 100);
//! # Ok::<(), revkv::Error>(())
//! ```

mod metrics;

use std::time::Instant;

use bytes::{Bytes, BytesMut};

/// Largest buffer a chunk reserves up front (it can still grow past it).
const MAX_PRESIZE: usize = 16 << 20;

use crate::error::{Error, Result};
use crate::mvcc::read::{LiveAt, RangeEnd};
use crate::mvcc::{KeyValue, Store};
use crate::ReadTxn;

pub use metrics::{StreamMetrics, StreamMetricsSnapshot};

/// How a stream holds its revision; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamMode {
    /// Read from one snapshot for the stream's whole life.
    #[default]
    Pinned,
    /// Hold nothing between chunks; resume from (revision, next key).
    Resumable,
}

/// What a stream reads and how it cuts chunks; a builder.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub(crate) mode: StreamMode,
    pub(crate) revision: i64,
    pub(crate) chunk_keys: usize,
    pub(crate) chunk_bytes: usize,
    pub(crate) adaptive: bool,
    pub(crate) limit: u64,
    pub(crate) keys_only: bool,
    pub(crate) count_only: bool,
    pub(crate) min_mod_revision: i64,
    pub(crate) max_mod_revision: i64,
    pub(crate) min_create_revision: i64,
    pub(crate) max_create_revision: i64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions::new()
    }
}

impl StreamOptions {
    /// Defaults: pinned, at the current revision, chunks of at most 1000 keys
    /// and about 1 MiB, starting at 10 keys and adapting (as etcd does).
    pub fn new() -> StreamOptions {
        StreamOptions {
            mode: StreamMode::Pinned,
            revision: 0,
            chunk_keys: 1000,
            chunk_bytes: 1 << 20,
            adaptive: true,
            limit: 0,
            keys_only: false,
            count_only: false,
            min_mod_revision: 0,
            max_mod_revision: 0,
            min_create_revision: 0,
            max_create_revision: 0,
        }
    }

    /// Pinned or resumable.
    pub fn mode(mut self, mode: StreamMode) -> Self {
        self.mode = mode;
        self
    }
    /// Read as of this revision (0: the current one when the stream opens).
    pub fn revision(mut self, rev: i64) -> Self {
        self.revision = rev;
        self
    }
    /// Most keys in one chunk (at least 1).
    pub fn chunk_keys(mut self, n: usize) -> Self {
        self.chunk_keys = n.max(1);
        self
    }
    /// About this many key and value bytes per chunk; one key-value larger
    /// than this is a chunk of its own.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n.max(1);
        self
    }
    /// Start small (10 keys) and double or halve each chunk to stay near the
    /// byte target (on by default); off: every chunk aims at `chunk_keys`.
    pub fn adaptive(mut self, on: bool) -> Self {
        self.adaptive = on;
        self
    }
    /// Return at most this many keys in all (0: no limit).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = n;
        self
    }
    /// Leave values out.
    pub fn keys_only(mut self, on: bool) -> Self {
        self.keys_only = on;
        self
    }
    /// Return no keys, only how many there are: each chunk carries the
    /// count of the keys it covered in [`Chunk::count`].
    pub fn count_only(mut self, on: bool) -> Self {
        self.count_only = on;
        self
    }
    /// Keep only keys last modified at or after this revision.
    pub fn min_mod_revision(mut self, rev: i64) -> Self {
        self.min_mod_revision = rev;
        self
    }
    /// Keep only keys last modified at or before this revision.
    pub fn max_mod_revision(mut self, rev: i64) -> Self {
        self.max_mod_revision = rev;
        self
    }
    /// Keep only keys created at or after this revision.
    pub fn min_create_revision(mut self, rev: i64) -> Self {
        self.min_create_revision = rev;
        self
    }
    /// Keep only keys created at or before this revision.
    pub fn max_create_revision(mut self, rev: i64) -> Self {
        self.max_create_revision = rev;
        self
    }

    fn keeps(&self, mod_rev: i64, create_rev: i64) -> bool {
        (self.min_mod_revision == 0 || mod_rev >= self.min_mod_revision)
            && (self.max_mod_revision == 0 || mod_rev <= self.max_mod_revision)
            && (self.min_create_revision == 0 || create_rev >= self.min_create_revision)
            && (self.max_create_revision == 0 || create_rev <= self.max_create_revision)
    }
}

/// Where a stream stands: enough to continue it later, in this process or
/// another, with [`Store::resume_stream`]. Encodes to bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeToken {
    /// The revision the stream reads at.
    pub revision: i64,
    /// The first key not yet returned.
    pub next_key: Vec<u8>,
    /// The end of the range (etcd's `range_end` rules).
    pub range_end: Vec<u8>,
    /// Keys still allowed by the limit (0: no limit).
    pub remaining: u64,
}

impl ResumeToken {
    /// A self-describing byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(28 + self.next_key.len() + self.range_end.len());
        b.extend_from_slice(b"rkv1");
        b.extend_from_slice(&self.revision.to_be_bytes());
        b.extend_from_slice(&self.remaining.to_be_bytes());
        b.extend_from_slice(&(self.next_key.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.next_key);
        b.extend_from_slice(&(self.range_end.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.range_end);
        b
    }

    /// Decodes [`ResumeToken::to_bytes`]; [`Error::InvalidOption`] on bytes
    /// that are not a token.
    pub fn from_bytes(b: &[u8]) -> Result<ResumeToken> {
        let bad = || Error::InvalidOption("not a revkv resume token".into());
        let rest = b.strip_prefix(b"rkv1").ok_or_else(bad)?;
        let take = |r: &mut &[u8], n: usize| -> Result<Vec<u8>> {
            if r.len() < n {
                return Err(bad());
            }
            let (a, z) = r.split_at(n);
            *r = z;
            Ok(a.to_vec())
        };
        let mut r = rest;
        let revision = i64::from_be_bytes(take(&mut r, 8)?.try_into().map_err(|_| bad())?);
        let remaining = u64::from_be_bytes(take(&mut r, 8)?.try_into().map_err(|_| bad())?);
        let klen = u32::from_be_bytes(take(&mut r, 4)?.try_into().map_err(|_| bad())?) as usize;
        let next_key = take(&mut r, klen)?;
        let elen = u32::from_be_bytes(take(&mut r, 4)?.try_into().map_err(|_| bad())?) as usize;
        let range_end = take(&mut r, elen)?;
        if !r.is_empty() {
            return Err(bad());
        }
        Ok(ResumeToken {
            revision,
            next_key,
            range_end,
            remaining,
        })
    }
}

/// The position of one key-value inside a chunk's buffer.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key_end: u32,
    value_end: u32,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

/// One chunk of a stream: its key-values in one buffer (no allocation per
/// key), all read at [`Chunk::revision`].
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The revision the whole stream reads at.
    pub revision: i64,
    /// With `count_only`: the keys this chunk covered; otherwise its length.
    pub count: u64,
    /// Whether more chunks follow.
    pub more: bool,
    data: Bytes,
    entries: Vec<Entry>,
}

/// A key-value borrowed from a [`Chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyValueRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value (empty with `keys_only`).
    pub value: &'a [u8],
    /// See [`KeyValue::create_revision`].
    pub create_revision: i64,
    /// See [`KeyValue::mod_revision`].
    pub mod_revision: i64,
    /// See [`KeyValue::version`].
    pub version: i64,
    /// See [`KeyValue::lease`].
    pub lease: i64,
}

impl KeyValueRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> KeyValue {
        KeyValue {
            key: self.key.to_vec(),
            value: self.value.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

impl Chunk {
    /// Key-values in this chunk.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the chunk holds no key-values (a `count_only` chunk, or the
    /// end of an empty range).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Key and value bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The `i`-th key-value.
    pub fn get(&self, i: usize) -> Option<KeyValueRef<'_>> {
        let e = self.entries.get(i)?;
        let start = if i == 0 {
            0
        } else {
            self.entries[i - 1].value_end as usize
        };
        Some(KeyValueRef {
            key: &self.data[start..e.key_end as usize],
            value: &self.data[e.key_end as usize..e.value_end as usize],
            create_revision: e.create_revision,
            mod_revision: e.mod_revision,
            version: e.version,
            lease: e.lease,
        })
    }

    /// The `i`-th value as a shared, zero-copy [`Bytes`].
    pub fn value_bytes(&self, i: usize) -> Option<Bytes> {
        let e = self.entries.get(i)?;
        Some(self.data.slice(e.key_end as usize..e.value_end as usize))
    }

    /// The key-values in order.
    pub fn iter(&self) -> impl Iterator<Item = KeyValueRef<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Owned copies of the key-values.
    pub fn to_kvs(&self) -> Vec<KeyValue> {
        self.iter().map(|kv| kv.to_owned()).collect()
    }
}

enum Hold {
    Pinned(ReadTxn, crate::Table),
    Resumable,
}

/// A range read pulled chunk by chunk; also an `Iterator` of chunks. See the
/// [module docs](self).
pub struct RangeStream {
    store: Store,
    hold: Hold,
    opts: StreamOptions,
    revision: u64,
    end: Vec<u8>,
    /// The next key to read from; None once the stream is done.
    next_key: Option<Vec<u8>>,
    returned: u64,
    target_keys: usize,
    /// Bytes of the last chunk: the next chunk's buffer is sized from it, so
    /// it is allocated once instead of doubling (which would also leave up
    /// to twice the chunk allocated).
    last_bytes: usize,
    started: Instant,
    pinned_id: Option<u64>,
    ended: bool,
}

impl Store {
    /// Opens a stream over `[key, range_end)` (etcd's `range_end` rules) at
    /// the revision in `opts` (0: the current one, fixed now).
    pub fn range_stream(
        &self,
        key: &[u8],
        range_end: &[u8],
        opts: StreamOptions,
    ) -> Result<RangeStream> {
        let token = ResumeToken {
            revision: opts.revision,
            next_key: key.to_vec(),
            range_end: range_end.to_vec(),
            remaining: opts.limit,
        };
        self.open_stream(token, opts, true)
    }

    /// Continues a stream from a token (from [`RangeStream::token`]); the
    /// options give the mode and chunking, the token the rest.
    pub fn resume_stream(&self, token: &ResumeToken, opts: StreamOptions) -> Result<RangeStream> {
        self.open_stream(token.clone(), opts, false)
    }

    fn open_stream(
        &self,
        token: ResumeToken,
        mut opts: StreamOptions,
        fresh: bool,
    ) -> Result<RangeStream> {
        if token.next_key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let metrics = self.stream_metrics();
        let opened = (|| {
            let (r, tables, revs) = self.snapshot_for_stream()?;
            let rev = revs.check_read(token.revision, revs.current)?;
            let hold = match (opts.mode, tables) {
                (StreamMode::Pinned, Some(t)) => Hold::Pinned(r, t.kv),
                _ => Hold::Resumable,
            };
            Ok::<_, Error>((hold, rev))
        })();
        let (hold, revision) = match opened {
            Ok(x) => x,
            Err(e) => {
                metrics.on_failed(std::time::Duration::ZERO);
                return Err(e);
            }
        };
        if !fresh {
            opts.limit = token.remaining;
        }
        let pinned_id = matches!(hold, Hold::Pinned(..)).then(|| metrics.pin());
        metrics.on_opened();
        Ok(RangeStream {
            store: self.clone(),
            hold,
            revision,
            end: token.range_end,
            next_key: Some(token.next_key),
            returned: 0,
            target_keys: if opts.adaptive {
                10.min(opts.chunk_keys)
            } else {
                opts.chunk_keys
            },
            last_bytes: 0,
            opts,
            started: Instant::now(),
            pinned_id,
            ended: false,
        })
    }
}

impl RangeStream {
    /// The revision every chunk reads at.
    pub fn revision(&self) -> i64 {
        self.revision as i64
    }

    /// Where the stream stands now, to continue later; None once it ended.
    pub fn token(&self) -> Option<ResumeToken> {
        let next = self.next_key.clone()?;
        let remaining = if self.opts.limit == 0 {
            0
        } else {
            self.opts.limit.saturating_sub(self.returned).max(1)
        };
        Some(ResumeToken {
            revision: self.revision as i64,
            next_key: next,
            range_end: self.end.clone(),
            remaining,
        })
    }

    /// The next chunk; None once the range is exhausted.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if self.next_key.is_none() {
            self.finish(true);
            return Ok(None);
        }
        match self.read_chunk() {
            Ok(c) => {
                self.store.stream_metrics().on_chunk(c.bytes());
                if !c.more {
                    self.finish(true);
                }
                Ok(Some(c))
            }
            Err(e) => {
                self.next_key = None;
                self.finish(false);
                Err(e)
            }
        }
    }

    fn finish(&mut self, ok: bool) {
        if self.ended {
            return;
        }
        self.ended = true;
        let m = self.store.stream_metrics();
        if ok {
            m.on_finished(self.started.elapsed());
        } else {
            m.on_failed(self.started.elapsed());
        }
        if let Some(id) = self.pinned_id.take() {
            m.unpin(id);
        }
        // A finished pinned stream lets its snapshot go at once.
        self.hold = Hold::Resumable;
    }

    fn read_chunk(&mut self) -> Result<Chunk> {
        let start = self.next_key.clone().expect("checked by the caller");
        let end = RangeEnd::from_etcd(&self.end);
        let resumable_snapshot;
        let (txn, kv): (&ReadTxn, crate::Table) = match &self.hold {
            Hold::Pinned(r, kv) => (r, *kv),
            Hold::Resumable => {
                let (r, tables, revs) = self.store.snapshot_for_stream()?;
                if self.revision < revs.compacted {
                    return Err(Error::Compacted {
                        requested: self.revision as i64,
                        compacted: revs.compacted as i64,
                    });
                }
                let Some(t) = tables else {
                    self.next_key = None;
                    return Ok(self.empty_chunk());
                };
                resumable_snapshot = r;
                (&resumable_snapshot, t.kv)
            }
        };
        let opts = &self.opts;
        let cap_keys = self.target_keys;
        let mut live = LiveAt::new(txn, kv, &start, &end, self.revision)?;
        let mut data =
            BytesMut::with_capacity(self.last_bytes.min(opts.chunk_bytes).min(MAX_PRESIZE));
        let mut entries = Vec::with_capacity(cap_keys.min(1024));
        let mut counted = 0u64;
        let mut exhausted = true;
        while let Some(v) = live.next()? {
            if opts.limit > 0 && self.returned >= opts.limit {
                break;
            }
            if !opts.keeps(v.mod_revision as i64, v.record.create as i64) {
                continue;
            }
            // Stop before this key when the chunk is full; it starts the next
            // (the only key copied out of the chunk's buffer).
            let full = if opts.count_only {
                counted as usize >= cap_keys.max(1000)
            } else {
                entries.len() >= cap_keys || (!entries.is_empty() && data.len() >= opts.chunk_bytes)
            };
            if full {
                self.next_key = Some(v.key()?);
                exhausted = false;
                break;
            }
            self.returned += 1;
            if opts.count_only {
                counted += 1;
                continue;
            }
            if entries.is_empty() && data.capacity() == 0 {
                // First chunk: guess from the first key-value.
                let each = v.escaped.len()
                    + if opts.keys_only {
                        0
                    } else {
                        v.record.value.len()
                    };
                let guess = each.saturating_mul(cap_keys).saturating_add(each);
                data.reserve(
                    guess
                        .min(opts.chunk_bytes.saturating_add(each))
                        .min(MAX_PRESIZE),
                );
            }
            if !crate::mvcc::keys::unescape_into(v.escaped, &mut data) {
                return Err(Error::CorruptFile("malformed key in the kv table".into()));
            }
            let key_end = data.len() as u32;
            if !opts.keys_only {
                data.extend_from_slice(v.record.value);
            }
            entries.push(Entry {
                key_end,
                value_end: data.len() as u32,
                create_revision: v.record.create as i64,
                mod_revision: v.mod_revision as i64,
                version: v.record.version as i64,
                lease: v.record.lease,
            });
        }
        if exhausted {
            self.next_key = None;
        }
        if self.opts.limit > 0 && self.returned >= self.opts.limit {
            self.next_key = None;
        }
        let bytes = data.len();
        // A little more than this chunk, for keys and values of other sizes.
        self.last_bytes = bytes + bytes / 16;
        // Adapt the next chunk's size toward the byte target.
        if self.opts.adaptive {
            if bytes < self.opts.chunk_bytes / 2 && entries.len() >= self.target_keys {
                self.target_keys = (self.target_keys * 2).min(self.opts.chunk_keys);
            } else if bytes > self.opts.chunk_bytes && self.target_keys > 1 {
                self.target_keys /= 2;
            }
        }
        let count = if self.opts.count_only {
            counted
        } else {
            entries.len() as u64
        };
        Ok(Chunk {
            revision: self.revision as i64,
            count,
            more: self.next_key.is_some(),
            data: data.freeze(),
            entries,
        })
    }

    fn empty_chunk(&self) -> Chunk {
        Chunk {
            revision: self.revision as i64,
            count: 0,
            more: false,
            data: Bytes::new(),
            entries: Vec::new(),
        }
    }
}

impl Iterator for RangeStream {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        self.next_chunk().transpose()
    }
}

impl Drop for RangeStream {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped before the end: neither finished nor failed, but its
            // pin (if any) goes now.
            if let Some(id) = self.pinned_id.take() {
                self.store.stream_metrics().unpin(id);
            }
            self.store
                .stream_metrics()
                .on_abandoned(self.started.elapsed());
        }
    }
}

impl std::fmt::Debug for RangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeStream")
            .field("revision", &self.revision)
            .field("pinned", &matches!(self.hold, Hold::Pinned(..)))
            .field("returned", &self.returned)
            .finish()
    }
}
