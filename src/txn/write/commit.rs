//! The commit of a write transaction (see docs/format.md, "Commit"):
//!
//! * A commit writes its data pages, then its meta into the slot that does
//!   not hold the durable meta, then (for [`Durability::Immediate`]) syncs
//!   once. If power fails before the sync completes, the meta may reach the
//!   disk without some of its pages; open detects that by walking the pages
//!   written since the meta's `synced_txid` (each pointer carries the
//!   checksum of the page it points to) and falls back to the durable meta,
//!   which no later commit overwrote.
//! * When more than [`VERIFY_BUDGET`] pages are unsynced, a durable commit
//!   syncs its data first and writes a meta whose `synced_txid` is its own,
//!   so open never verifies more than that many pages after a durable
//!   commit.
//! * Pages freed by a commit are reused only once that commit is durable and
//!   no open snapshot predates it, so a fallback never finds its pages
//!   overwritten.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::WriteTxn;
use crate::btree::write as tree;
use crate::error::{Error, PageId, Result};
use crate::storage::extents::ExtentSet;
use crate::storage::meta::Meta;
use crate::storage::page::{self, init_header, set_word, span_for, PageKind, PageRef, HEADER_LEN};
use crate::storage::unwritten::PageHasher;
use crate::txn::sync::WriteAhead;
use crate::txn::{Durability, Published, Retired};

/// Most pages a commit writes with a single sync; larger commits sync their
/// data before writing the meta. This bounds the work open does to verify
/// the last commit.
pub const VERIFY_BUDGET: u64 = 256;
/// Bytes of a free-list entry: first page u64, length u64.
const FREELIST_ENTRY: usize = 16;
/// Largest write handed to the operating system at once.
pub(in crate::txn) const MAX_WRITE: usize = 8 << 20;

/// Sorted, disjoint runs with neighbours merged.
fn coalesced(runs: &[(PageId, u64)]) -> impl Iterator<Item = (PageId, u64)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let &(start, mut len) = runs.get(i)?;
        i += 1;
        while let Some(&(next, l)) = runs.get(i) {
            if next != start + len {
                break;
            }
            len += l;
            i += 1;
        }
        Some((start, len))
    })
}

/// Gathers pages given in ascending order into runs of neighbours, at most
/// [`MAX_WRITE`] bytes each, handing each finished run to a sink (one
/// [`DbFile::write_run`](crate::storage::file::DbFile::write_run) per run).
/// A run borrows the pages' buffers: nothing is copied on the way to the
/// kernel.
pub(in crate::txn) struct PageRuns<'a> {
    run: Vec<&'a [u8]>,
    run_bytes: usize,
    start: PageId,
    next: PageId,
    page_size: u64,
}

impl<'a> PageRuns<'a> {
    pub fn new(page_size: u64) -> PageRuns<'a> {
        PageRuns {
            run: Vec::new(),
            run_bytes: 0,
            start: 0,
            next: 0,
            page_size,
        }
    }

    /// Appends the page (or overflow run) `buf` at `id`, above every id
    /// pushed before.
    pub fn push(
        &mut self,
        id: PageId,
        buf: &'a [u8],
        sink: &mut impl FnMut(PageId, &[&[u8]]) -> Result<()>,
    ) -> Result<()> {
        debug_assert!(self.run.is_empty() || id >= self.next, "pages out of order");
        if !self.run.is_empty() && (id != self.next || self.run_bytes + buf.len() > MAX_WRITE) {
            sink(self.start, &self.run)?;
            self.run.clear();
            self.run_bytes = 0;
        }
        if self.run.is_empty() {
            self.start = id;
        }
        self.run.push(buf);
        self.run_bytes += buf.len();
        self.next = id + buf.len() as u64 / self.page_size;
        Ok(())
    }

    /// Hands over the last run.
    pub fn finish(self, sink: &mut impl FnMut(PageId, &[&[u8]]) -> Result<()>) -> Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        sink(self.start, &self.run)
    }
}

/// The largest step by which a commit grows the file.
const GROW_MAX: u64 = 64 << 20;

impl WriteTxn {
    /// Makes the changes durable (unless the database was opened with
    /// [`Durability::None`]) and visible to new readers.
    ///
    /// On an error nothing of this transaction is visible. If the error came
    /// before the meta page was written, the handle stays usable; if writing
    /// or syncing the meta failed, the handle refuses further writes
    /// ([`Error::Poisoned`]) because the disk's state is then unknown, and
    /// must be reopened. Reads keep working either way.
    pub fn commit(mut self) -> Result<()> {
        if !self.is_changed() {
            return Ok(());
        }
        self.seal()?;

        let durable = self.durability == Durability::Immediate;
        let ps = self.shared.limits.page_size;
        let dirty_bytes: usize = self.dirty.values().map(|b| b.len()).sum();
        // An unsynced commit leaves its pages in memory; a durable one, or
        // one that would hold too much there, writes them and every page of
        // earlier unsynced commits still reachable ("writes out").
        // Pages a write-ahead is writing leave memory when it ends: writing
        // them out here too would only double the writes.
        let held_bytes =
            (self.shared.unwritten.bytes()).saturating_sub(self.writer.writing_ahead_bytes);
        let write_out =
            durable || (!self.hold && held_bytes + dirty_bytes > self.shared.unwritten_limit);
        // Only a durable commit writes a free list and a meta: an unsynced
        // commit's pages are reachable from no meta on disk until the next
        // durable commit or sync writes one, which is what makes losing them
        // to a crash harmless.
        let (freelist, freelist_span) = if durable {
            self.write_freelist()?
        } else {
            (self.writer.meta.freelist, self.writer.meta.freelist_span)
        };
        let written = if write_out {
            let held: usize = self
                .writer
                .unwritten_live
                .iter()
                .filter_map(|id| self.shared.unwritten.get(id))
                .map(|b| b.len())
                .sum();
            ((dirty_bytes + held) / ps) as u64
        } else {
            0
        };
        let unsynced = self.writer.unsynced_pages + written;
        let barrier = durable && unsynced > VERIFY_BUDGET;
        let slot = 1 - self.writer.durable_slot;
        let meta = if barrier {
            self.meta((freelist, freelist_span), 0, self.txid)
        } else {
            let synced = self.writer.synced_txid.max(self.writer.data_synced_txid);
            self.meta((freelist, freelist_span), unsynced, synced)
        };
        // Phase 1: data pages. A failure here leaves the old state intact:
        // the pages written so far are free in every committed snapshot.
        if write_out {
            self.write_data(barrier)?;
        }
        // Phase 2: the meta. From here a failure leaves the disk in an
        // unknown state: poison the handle.
        let mut buf = vec![0u8; self.shared.limits.page_size];
        meta.encode(&mut buf);
        let file = &self.shared.file;
        let result = if durable {
            file.write_at(&buf, slot * self.shared.limits.page_size as u64)
                .and_then(|()| file.sync())
        } else {
            Ok(())
        };
        if let Err(e) = result {
            let why = format!("writing the meta page of transaction {}: {e}", self.txid);
            self.writer.poisoned = Some(why);
            return Err(Error::io(
                format!("committing transaction {}", self.txid),
                e,
            ));
        }
        self.publish(meta, slot, durable, write_out, unsynced);
        Ok(())
    }

    /// Commits as the durable commit of a sync that writes nothing under the
    /// writer lock but its meta (see `txn::sync`).
    ///
    /// The commit gets its own free list and the meta a durable commit
    /// writes after syncing its data (`synced_txid` its own), the file grows
    /// to hold its pages, and its pages stay in memory like an unsynced
    /// commit's. The pages of every commit up to it still held in memory
    /// are listed for a write-ahead, which the sync writes and syncs once
    /// the lock is released, then writes the meta (under the lock again:
    /// one page and one sync).
    ///
    /// Until that meta is on disk this commit is, to every rule about
    /// reuse, an unsynced one: what it and the commits before it freed
    /// waits until `synced_txid` reaches it. Pages allocated up to it are
    /// from here on treated as reachable from a durable meta (this one
    /// will be): a later commit that frees one waits for the next durable
    /// commit, not only for readers.
    pub(in crate::txn) fn commit_for_sync(mut self) -> Result<(Meta, u64, WriteAhead)> {
        self.force();
        self.seal()?;
        let freelist = self.write_freelist()?;
        if let Err(e) = self.grow_file() {
            self.rollback();
            return Err(e);
        }
        let slot = 1 - self.writer.durable_slot;
        let meta = self.meta(freelist, 0, self.txid);
        let unsynced = self.writer.unsynced_pages;
        self.publish(meta, slot, false, false, unsynced);
        self.writer.allocated_since_sync = ExtentSet::new();
        let ahead = WriteAhead::list(&self.shared, &mut self.writer);
        Ok((meta, slot, ahead))
    }

    /// The meta of this commit.
    fn meta(&self, freelist: (PageRef, u32), written_pages: u64, synced_txid: u64) -> Meta {
        Meta {
            page_size: self.shared.limits.page_size as u32,
            txid: self.txid,
            catalog: self.catalog,
            freelist: freelist.0,
            freelist_span: freelist.1,
            flags: 0,
            hwm: self.hwm,
            written_pages,
            synced_txid,
        }
    }

    /// Seals every dirty tree bottom-up and records its root in the catalog.
    fn seal(&mut self) -> Result<()> {
        for i in 0..self.tables.len() {
            if !self.tables[i].dirty {
                continue;
            }
            let root = self.tables[i].record.root;
            self.tables[i].record.root = tree::seal_tree(self, root);
            let name = self.tables[i].name.clone();
            let rec = self.tables[i].record.encode();
            let mut catalog = self.catalog;
            tree::insert(self, &mut catalog, name.as_bytes(), &rec)?;
            self.catalog = catalog;
        }
        let catalog = self.catalog;
        let catalog = tree::seal_tree(self, catalog);
        self.catalog = catalog;
        Ok(())
    }

    /// Writes the free list for the state after this commit: every page not
    /// referenced by it (free now, or freed by this or an earlier commit and
    /// still visible to an open snapshot). Its own old run is freed.
    fn write_freelist(&mut self) -> Result<(PageRef, u32)> {
        let old = self.writer.meta.freelist;
        if !old.is_none() && !self.drop_old_freelist {
            self.freed
                .push((old.id, self.writer.meta.freelist_span as u64));
        }
        let mut unreferenced = self.writer.unreferenced.clone();
        for &(id, len) in &self.freed {
            unreferenced.insert(id, len);
        }
        for (id, len) in self.txn_free.iter() {
            unreferenced.insert(id, len);
        }
        if unreferenced.is_empty() {
            return Ok((PageRef::NONE, 0));
        }
        let ps = self.shared.limits.page_size;
        let mut extra = 2;
        loop {
            let span = span_for((unreferenced.runs() + extra) * FREELIST_ENTRY, ps);
            let id = self.alloc(span as u64)?;
            let mut set = unreferenced.clone();
            if set.overlaps(id, span as u64) {
                set.remove(id, span as u64);
            }
            if HEADER_LEN + set.runs() * FREELIST_ENTRY > span as usize * ps {
                // Taking the run split an extent; try again with more room.
                self.release(id, span as u64);
                extra += 4;
                continue;
            }
            let mut buf = self.buffer(span as usize);
            init_header(&mut buf, PageKind::Freelist, id, self.txid, span);
            set_word(&mut buf, set.runs() as u32);
            for (i, (start, len)) in set.iter().enumerate() {
                let at = HEADER_LEN + i * FREELIST_ENTRY;
                page::write_u64(&mut buf, at, start);
                page::write_u64(&mut buf, at + 8, len);
            }
            let crc = page::seal(&mut buf);
            self.dirty.insert(id, buf);
            return Ok((
                PageRef {
                    id,
                    txid: self.txid,
                    crc,
                },
                span,
            ));
        }
    }

    /// Writes the dirty pages in file order, coalescing neighbours, after
    /// growing the file if needed. On error, rolls the allocation back.
    fn write_data(&mut self, barrier: bool) -> Result<()> {
        let result = self.try_write_data(barrier);
        if result.is_err() {
            self.rollback();
        }
        result
    }

    /// Grows the file to hold every page this commit allocated: in steps of
    /// a sixteenth of the file (at least 16 pages, at most GROW_MAX) so a
    /// growing database does not extend its file on every commit. Not by
    /// doubling: right after a defrag has cut the file to its last live
    /// page, the first commit that needs one more page would double the
    /// file again.
    fn grow_file(&mut self) -> Result<()> {
        let ps = self.shared.limits.page_size as u64;
        let needed = self.hwm * ps;
        if self.writer.file_len >= needed {
            return Ok(());
        }
        let len = self.writer.file_len;
        let step = (len / 16).clamp(16 * ps, GROW_MAX);
        let target = needed.max(len + step).div_ceil(ps) * ps;
        // After any truncation in flight, which may be cutting bytes from
        // `len` on (see `Db::trim_file`).
        let _trimmed = self.shared.trimming.lock();
        self.shared
            .file
            .set_len(target)
            .map_err(|e| Error::io(format!("growing the file to {target} bytes"), e))?;
        self.writer.file_len = target;
        Ok(())
    }

    fn try_write_data(&mut self, barrier: bool) -> Result<()> {
        self.grow_file()?;
        let ps = self.shared.limits.page_size as u64;
        let file = &self.shared.file;
        // Pages of earlier unsynced commits that this commit still reaches
        // (it may have freed some of them).
        let freed: HashSet<PageId, BuildHasherDefault<PageHasher>> =
            self.freed.iter().map(|&(id, _)| id).collect();
        let mut ids: Vec<PageId> = self.dirty.keys().copied().collect();
        ids.extend(
            self.writer
                .unwritten_live
                .iter()
                .filter(|id| !freed.contains(id)),
        );
        ids.sort_unstable();
        let unwritten = &self.shared.unwritten;
        let mut write = |start: PageId, run: &[&[u8]]| {
            file.write_run(run, start * ps)
                .map_err(|e| Error::io(format!("writing pages at {start}"), e))
        };
        let mut runs = PageRuns::new(ps);
        for id in ids {
            let Some(buf) = self
                .dirty
                .get(&id)
                .map(|b| &**b)
                .or_else(|| unwritten.get(id))
            else {
                return Err(Error::corrupt(
                    id,
                    "an unwritten page to write out is not held",
                ));
            };
            runs.push(id, buf, &mut write)?;
        }
        runs.finish(&mut write)?;
        if barrier {
            file.sync().map_err(|e| {
                Error::io(format!("syncing the data of transaction {}", self.txid), e)
            })?;
        }
        Ok(())
    }

    /// Makes the commit visible: new readers see it, its freed pages wait
    /// for older readers to end.
    fn publish(&mut self, meta: Meta, slot: u64, durable: bool, write_out: bool, unsynced: u64) {
        let ps = self.shared.limits.page_size;
        let mut freed = std::mem::take(&mut self.freed);
        // In page order, the sets below are updated where they were last
        // touched (a compaction frees thousands of scattered pages a commit).
        freed.sort_unstable();
        let txn_free = std::mem::take(&mut self.txn_free);
        let dirty = std::mem::take(&mut self.dirty);
        let w = &mut *self.writer;
        let unwritten = &self.shared.unwritten;
        for &(id, _) in &freed {
            w.unwritten_live.remove(&id);
            w.written_ahead.remove(&id);
        }
        // Neighbours freed together (pages a commit allocated side by side)
        // go into the set as one run: each insert is several lookups in a
        // set of up to hundreds of thousands of runs.
        for (id, len) in coalesced(&freed) {
            w.unreferenced.insert(id, len);
        }
        if write_out {
            // Pages this handle wrote are known good.
            for (&id, buf) in &dirty {
                self.shared.verified.insert(id, (buf.len() / ps) as u64);
            }
            let mut held = std::mem::take(&mut w.unwritten_live);
            held.append(&mut w.written_ahead);
            for id in held.iter() {
                if let Some(buf) = unwritten.get(id) {
                    self.shared.verified.insert(id, (buf.len() / ps) as u64);
                }
            }
            if !held.is_empty() {
                // Snapshots from before this commit still look for these
                // pages in memory: drop them once those have ended.
                w.retired.push_back(Retired {
                    read_before: self.txid,
                    written: self.txid,
                    ids: held.into_iter().collect(),
                });
            }
            w.written_txid = self.txid;
            w.recycle(dirty.into_values());
        } else {
            for (id, buf) in dirty {
                // SAFETY: `id` was allocated by this commit, so it was free:
                // whatever memory still held for it no open snapshot reaches.
                let old = unsafe { unwritten.insert(id, buf) };
                w.recycle(old.into_iter());
                w.unwritten_live.insert(id);
            }
        }
        for (id, len) in txn_free.iter() {
            w.unreferenced.insert(id, len);
            w.free.insert(id, len);
        }
        // Pages allocated since the last sync are reachable from no meta on
        // disk: once freed they wait only for readers, not for a sync.
        let (volatile, durable_bound): (Vec<_>, Vec<_>) = freed
            .into_iter()
            .partition(|&(id, len)| w.allocated_since_sync.contains_run(id, len));
        let freed_pages: u64 = durable_bound.iter().chain(&volatile).map(|&(_, l)| l).sum();
        w.pending_pages += durable_bound
            .iter()
            .chain(&volatile)
            .map(|&(_, l)| l)
            .sum::<u64>();
        if !durable_bound.is_empty() {
            w.pending.push_back((self.txid, durable_bound));
        }
        if !volatile.is_empty() {
            w.pending_volatile.push_back((self.txid, volatile));
        }
        w.meta = meta;
        if durable {
            w.meta_slot = slot;
            w.synced_txid = meta.txid;
            w.durable_slot = slot;
            w.unsynced_pages = 0;
            w.allocated_since_sync = ExtentSet::new();
        } else {
            w.unsynced_pages = unsynced;
        }
        if w.mapping.capacity() < w.file_len {
            // Readers keep the old mapping until they end; none waits.
            match crate::storage::mapping::Mapping::new(self.shared.file.raw(), w.file_len) {
                Ok(m) => w.mapping = Arc::new(m),
                Err(e) => w.poisoned = Some(format!("remapping the grown file: {e}")),
            }
        }
        if self.shrunk && durable {
            // The shorter file is what the durable meta describes now. The
            // truncation itself can take a while (ext4 frees about 2 GB/s
            // here), so it is left to `Db::trim_file`, a step per lock hold.
            w.trim_to = Some(meta.hwm * ps as u64);
        }
        self.allocated.clear();
        let mut state = self.shared.state.lock();
        if freed_pages > 0 {
            state.space.pending.push_back((self.txid, freed_pages));
        }
        state.snapshot = Published::new(&meta, w.file_len / ps as u64, w.written_txid);
        state.mapping = Arc::clone(&w.mapping);
        drop(state);
        self.shared.publish_space(w);
        self.changed = false;
    }

    /// Returns every allocation to the free set (abort or failed commit).
    pub(super) fn rollback(&mut self) {
        let w = &mut *self.writer;
        for (id, len) in self.allocated.drain(..) {
            w.free.insert(id, len);
            w.unreferenced.insert(id, len);
        }
        let dirty = std::mem::take(&mut self.dirty);
        w.recycle(dirty.into_values());
        self.freed.clear();
        self.txn_free = ExtentSet::new();
        self.changed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::coalesced;

    #[test]
    fn coalesced_merges_neighbours_only() {
        let runs = [(3, 1), (4, 2), (6, 1), (9, 1), (10, 1), (10, 1), (20, 3)];
        let got: Vec<_> = coalesced(&runs).collect();
        // A repeated run (a double free) is not merged: its insert fails
        // as it did alone.
        assert_eq!(got, [(3, 4), (9, 2), (10, 1), (20, 3)]);
        assert_eq!(coalesced(&[]).count(), 0);
    }
}
