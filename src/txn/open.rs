//! Opening a database file: choose the meta, verify the last commit, load
//! the free list. Reads O(pages of the last small commit + free-list size),
//! never the whole file.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

use parking_lot::Mutex;

use super::pages::MappedPages;
use super::table::TableRecord;
use super::{readers, Db, Options, Published, Recovery, Shared, Space, State, Writer};
use crate::btree::node::{Limits, ValueRef};
use crate::error::{Error, Result};
use crate::storage::extents::{ExtentSet, PageSet};
use crate::storage::file::DbFile;
use crate::storage::mapping::Mapping;
use crate::storage::meta::{Meta, META_LEN};
use crate::storage::page::{self, PageRef, HEADER_LEN, MAX_PAGE_SIZE, MIN_PAGE_SIZE};
use crate::storage::unwritten::UnwrittenPages;
use crate::storage::verified::VerifiedPages;

pub(crate) fn open(path: &Path, opts: Options) -> Result<Db> {
    if let Some(ps) = opts.page_size {
        if !ps.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) {
            return Err(Error::InvalidOption(format!(
                "page size {ps} is not a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}"
            )));
        }
    }
    #[allow(unused_mut)]
    let mut file = DbFile::open(path, opts.read_only, opts.create, opts.lock_timeout)?;
    #[cfg(feature = "fault-injection")]
    file.set_observer(opts.observer.clone());
    let mut len = file.len()?;
    if len == 0 {
        if opts.read_only {
            return Err(Error::NotADatabase(format!("{} is empty", path.display())));
        }
        initialize(&file, opts.page_size.unwrap_or(page::DEFAULT_PAGE_SIZE))?;
        len = file.len()?;
    }
    let (mut metas, damaged) = read_metas(&file, len)?;
    let ps = metas[0].0.page_size;
    if let Some(req) = opts.page_size {
        if req != ps {
            return Err(Error::PageSizeMismatch {
                file: ps,
                requested: req,
            });
        }
    }
    // Newest first; of two copies of one commit (see `sync_writer`), the
    // one that says it is synced, which needs no verification.
    metas.sort_by_key(|(m, _)| std::cmp::Reverse((m.txid, m.synced_txid)));
    let limits = Limits::new(ps as usize);
    let verified = VerifiedPages::new();
    // Only the file's own bytes are mapped now; a meta claiming more pages
    // than the file holds is rejected below, not trusted for a reservation.
    let mapping = Arc::new(Mapping::new(file.raw(), len)?);
    let mut problems: Vec<String> = damaged.iter().map(|e| e.to_string()).collect();
    let mut chosen = None;
    let metas_found = metas.len();
    for (i, (meta, slot)) in metas.into_iter().enumerate() {
        if opts.salvage.is_some_and(|n| n != i) {
            continue;
        }
        let pages = MappedPages {
            mapping: Arc::clone(&mapping),
            hwm: meta.hwm,
            file_pages: len / ps as u64,
            written: meta.txid,
            newest: meta.txid,
            limits,
        };
        let attempt = (|| {
            if meta.hwm * ps as u64 > len {
                return Err(Error::CorruptFile(format!(
                    "the file has {len} bytes but transaction {} needs {} pages of {ps}",
                    meta.txid, meta.hwm
                )));
            }
            if meta.synced_txid < meta.txid {
                verify_commit(&meta, &pages, &verified)?;
            }
            load_freelist(&meta, &pages)
        })();
        if opts.salvage.is_some() {
            // Whatever this commit reaches and can still be read is what a
            // salvage copies: a truncated file, a damaged free list or an
            // unverifiable last commit are reported, and the walk finds
            // what they cost page by page.
            let free = attempt.unwrap_or_else(|e| {
                problems.push(format!("transaction {}: {e}", meta.txid));
                ExtentSet::default()
            });
            chosen = Some((meta, slot, free));
            break;
        }
        match attempt {
            Ok(free) => {
                chosen = Some((meta, slot, free));
                break;
            }
            // A meta that says all its pages were durable cannot be explained
            // by an interrupted commit: the damage is corruption, and falling
            // back would silently drop acknowledged commits.
            Err(e) if meta.synced_txid == meta.txid => return Err(e),
            Err(e) => problems.push(format!("transaction {}: {e}", meta.txid)),
        }
    }
    if let (Some(n), None) = (opts.salvage, &chosen) {
        return Err(Error::CorruptFile(format!(
            "no meta page {n} to salvage from: {metas_found} have a valid checksum"
        )));
    }
    let Some((meta, slot, free)) = chosen else {
        return Err(Error::CorruptFile(format!(
            "no meta page leads to an intact commit ({})",
            problems.join("; ")
        )));
    };
    if !opts.read_only && meta.synced_txid < meta.txid {
        // The chosen commit reached the file but maybe not stable storage:
        // make it durable before anything builds on it.
        file.sync()
            .map_err(|e| Error::io("syncing the last commit at open", e))?;
    }
    let writer = Writer {
        meta,
        unreferenced: free.clone(),
        free,
        pending: VecDeque::new(),
        pending_volatile: VecDeque::new(),
        volatile_dropped: 0,
        pending_dropped: 0,
        allocated_since_sync: ExtentSet::new(),
        pending_pages: 0,
        file_len: len,
        mapping: Arc::clone(&mapping),
        poisoned: None,
        buffers: Vec::new(),
        page_size: ps as usize,
        meta_slot: slot,
        synced_txid: meta.txid,
        durable_slot: slot,
        unsynced_pages: 0,
        written_txid: meta.txid,
        unwritten_live: PageSet::default(),
        written_ahead: PageSet::default(),
        writing_ahead: BTreeSet::new(),
        deferred: Vec::new(),
        trim_to: None,
        data_synced_txid: meta.txid,
        retired: VecDeque::new(),
        held: Vec::new(),
        snapshots: Vec::new(),
        writing_ahead_bytes: 0,
    };
    let shared = Arc::new(Shared {
        file,
        limits,
        read_only: opts.read_only,
        durability: opts.durability,
        verified,
        unwritten: UnwrittenPages::new(),
        unwritten_limit: opts.unwritten_limit,
        write_ahead_min: opts.write_ahead_min,
        syncing: Mutex::new(()),
        sync_closing: Default::default(),
        trimming: Mutex::new(()),
        writing_ahead_bytes: AtomicUsize::new(0),
        state: Mutex::new(State {
            snapshot: Published::new(&meta, len / ps as u64, meta.txid),
            mapping,
            readers: readers::Readers::default(),
            space: Space::default(),
        }),
        writer: Arc::new(Mutex::new(writer)),
        waiting: Default::default(),
        parked: Default::default(),
        serial: AtomicU64::new(1),
        recovery: (!problems.is_empty()).then_some(Recovery {
            txid: meta.txid,
            rejected: problems,
        }),
    });
    shared.publish_space(&shared.writer.lock());
    Ok(Db { shared })
}

/// Writes the two meta pages of an empty database and syncs them.
fn initialize(file: &DbFile, ps: u32) -> Result<()> {
    let mut buf = vec![0u8; 2 * ps as usize];
    let mut m = Meta::empty(ps);
    m.txid = 0;
    m.synced_txid = 0;
    m.encode(&mut buf[..ps as usize]);
    m.txid = 1;
    m.synced_txid = 1;
    m.encode(&mut buf[ps as usize..]);
    let ctx = |e| Error::io("initializing a new database file", e);
    file.set_len(2 * ps as u64).map_err(ctx)?;
    file.write_at(&buf, 0).map_err(ctx)?;
    file.sync().map_err(ctx)
}

/// The valid meta pages of a file with their slots, and what was wrong with
/// the others.
type MetaSlots = (Vec<(Meta, u64)>, Vec<Error>);

/// The valid meta pages of the file with their slots, or the most telling
/// error.
fn read_metas(file: &DbFile, len: u64) -> Result<MetaSlots> {
    let mut buf = [0u8; META_LEN];
    let read = |buf: &mut [u8; META_LEN], at: u64| -> Result<bool> {
        if at + META_LEN as u64 > len {
            return Ok(false);
        }
        file.read_at(buf, at)
            .map_err(|e| Error::io(format!("reading the meta page at byte {at}"), e))?;
        Ok(true)
    };
    let mut metas = Vec::new();
    let mut errors = Vec::new();
    if read(&mut buf, 0)? {
        match Meta::decode(&buf, 0) {
            Ok(m) => metas.push((m, 0)),
            Err(e) => errors.push(e),
        }
    }
    // The second meta sits one page in; if the first is unreadable, try
    // every legal page size.
    let sizes: Vec<u32> = match metas.first() {
        Some((m, _)) => vec![m.page_size],
        None => (9..=16)
            .map(|s| 1u32 << s)
            .filter(|s| (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(s))
            .collect(),
    };
    for ps in sizes {
        if !read(&mut buf, ps as u64)? {
            continue;
        }
        match Meta::decode(&buf, 1) {
            Ok(m) if m.page_size == ps => {
                metas.push((m, 1));
                break;
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if metas.len() == 2 && metas[0].0.page_size != metas[1].0.page_size {
        return Err(Error::CorruptFile(format!(
            "the meta pages disagree on the page size ({} and {})",
            metas[0].0.page_size, metas[1].0.page_size
        )));
    }
    if metas.is_empty() {
        if len < META_LEN as u64 {
            return Err(Error::NotADatabase(format!(
                "the file has only {len} bytes"
            )));
        }
        // Prefer the most specific reason: a version or a foreign file.
        if let Some(i) = errors
            .iter()
            .position(|e| matches!(e, Error::UnsupportedVersion { .. }))
        {
            return Err(errors.swap_remove(i));
        }
        if errors.iter().all(|e| matches!(e, Error::NotADatabase(_))) {
            return Err(Error::NotADatabase(
                "neither meta page carries revkv's magic number".into(),
            ));
        }
        let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(Error::CorruptFile(format!(
            "both meta pages are damaged: {}",
            why.join("; ")
        )));
    }
    Ok((metas, errors))
}

/// Verifies every page written since the meta's last sync: walks down from
/// the roots through pointers stamped with a newer transaction, checking
/// each page's checksum against the one its parent recorded.
fn verify_commit(meta: &Meta, pages: &MappedPages, verified: &VerifiedPages) -> Result<()> {
    let synced = meta.synced_txid;
    let t = meta.txid;
    let mut stack: Vec<(PageRef, bool)> = Vec::new();
    if !meta.catalog.is_none() && meta.catalog.txid > synced {
        stack.push((meta.catalog, true));
    }
    let mut visited = 0u64;
    // Nothing is in memory at open.
    let none = UnwrittenPages::new();
    while let Some((at, is_catalog)) = stack.pop() {
        visited += 1;
        if visited > meta.written_pages + 1 {
            return Err(Error::corrupt(
                at.id,
                format!(
                    "commit {t} reaches more unsynced pages than the {} written",
                    meta.written_pages
                ),
            ));
        }
        let node = pages.node(at, verified, &none)?;
        for i in 0..node.count() {
            if !node.is_leaf() {
                let child = node.child(i);
                if child.txid > synced {
                    stack.push((child, is_catalog));
                }
                continue;
            }
            match node.value(i) {
                ValueRef::Inline(v) if is_catalog => {
                    let rec = TableRecord::decode(v, node.key(i))?;
                    if !rec.root.is_none() && rec.root.txid > synced {
                        stack.push((rec.root, false));
                    }
                }
                ValueRef::Overflow { page, len } if page.txid > synced => {
                    pages.overflow(page, len, verified, &none)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Reads the free list named by `meta`, checking that its runs are in
/// order, disjoint, and inside the file.
pub(crate) fn load_freelist(meta: &Meta, pages: &MappedPages) -> Result<ExtentSet> {
    let mut set = ExtentSet::new();
    if meta.freelist.is_none() {
        return Ok(set);
    }
    let run = pages.freelist(meta.freelist, meta.freelist_span)?;
    let id = meta.freelist.id;
    let count = page::Header(run).word() as usize;
    if HEADER_LEN + count * 16 > run.len() {
        return Err(Error::corrupt(
            id,
            format!("free list claims {count} runs, more than its pages hold"),
        ));
    }
    let mut last_end = 2;
    for i in 0..count {
        let at = HEADER_LEN + i * 16;
        let (start, n) = (page::read_u64(run, at), page::read_u64(run, at + 8));
        let end = start.saturating_add(n);
        let overlaps_self = start < id + meta.freelist_span as u64 && id < end;
        if n == 0 || start < last_end || end > meta.hwm || overlaps_self {
            return Err(Error::corrupt(
                id,
                format!("free list run {i} (pages {start}..{end}) is out of order, empty, overlapping or past the high-water mark {}", meta.hwm),
            ));
        }
        set.insert(start, n);
        last_end = end;
    }
    Ok(set)
}
