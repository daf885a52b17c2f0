//! Watch: the changes to a key range, from any revision not yet compacted,
//! then live, in revision order, pulled by the caller.
//!
//! A watcher remembers one number, the next revision it needs. Recent
//! revisions come from the store's in-memory feed, which the writer fills
//! once per commit while anyone watches (so a thousand watchers cost one
//! copy of each change, and each filters it by range); a watcher that falls
//! behind the feed (it holds the last 8 MiB of changes) reads the revision
//! log on disk instead and catches up. Nothing is ever buffered per watcher,
//! so a slow or stalled consumer never blocks a writer and never makes the
//! process grow; it fails with the compacted error only when compaction
//! passed the revision it still needs, as an etcd watch does.
//!
//! The Kubernetes list-then-watch handoff is exact: stream (or range) a
//! prefix at revision R, then watch it from R + 1; every change after R
//! arrives once, in order.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use revkv::mvcc::{prefix_end, EventKind, Store, StoreOptions};
//! use revkv::watch::WatchOptions;
//! let store = Store::open(dir.path().join("kv.db"), StoreOptions::new())?;
//! store.put(b"/pods/a", b"1")?;
//! let listed_at = store.current_revision()?;
//! let mut watcher = store.watch(b"/pods/", &prefix_end(b"/pods/"),
//!     WatchOptions::new().start_revision(listed_at + 1))?;
//! store.put(b"/pods/b", b"2")?;
//! store.delete_range(b"/pods/a", b"", false)?;
//! let mut seen = Vec::new();
//! while seen.len() < 2 {
//!     for e in watcher.recv()?.events {
//!         seen.push((e.event.kind, e.event.kv.key.clone()));
//!     }
//! }
//! assert_eq!(seen, [(EventKind::Put, b"/pods/b".to_vec()), (EventKind::Delete, b"/pods/a".to_vec())]);
//! # Ok::<(), revkv::Error>(())
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mvcc::changes::{self, Event, EventKind, WatchedRange, Window, MAX_WAIT};
use crate::mvcc::{KeyValue, RangeEnd, Store};

/// How to watch; a builder.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    start_revision: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: Option<Duration>,
    max_events: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions::new()
    }
}

impl WatchOptions {
    /// From the next revision on, every event, no previous key-values, no
    /// progress notifications, responses of up to 1000 events.
    pub fn new() -> WatchOptions {
        WatchOptions {
            start_revision: 0,
            no_put: false,
            no_delete: false,
            prev_kv: false,
            progress_notify: None,
            max_events: 1000,
        }
    }

    /// The first revision to report (0: the one after the current one).
    /// Revisions in the past are replayed from the revision log.
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Drop put events (etcd's `NOPUT` filter).
    pub fn no_put(mut self, on: bool) -> Self {
        self.no_put = on;
        self
    }

    /// Drop delete events (etcd's `NODELETE` filter).
    pub fn no_delete(mut self, on: bool) -> Self {
        self.no_delete = on;
        self
    }

    /// Report each event's previous key-value (etcd's `prev_kv`).
    pub fn prev_kv(mut self, on: bool) -> Self {
        self.prev_kv = on;
        self
    }

    /// When no event arrives for this long, [`Watcher::recv`] returns a
    /// progress notification carrying the current revision (etcd's
    /// `progress_notify`, which uses 10 minutes).
    pub fn progress_notify(mut self, every: Duration) -> Self {
        self.progress_notify = Some(every);
        self
    }

    /// Most events in one response; a revision is never split, so a
    /// response may hold more when one revision changed more keys.
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n.max(1);
        self
    }
}

/// One event as a watcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The change, shared by every watcher that receives it.
    pub event: Arc<Event>,
    /// With [`WatchOptions::prev_kv`]: the key's version before the change
    /// (None for a new key, or when compaction removed it).
    pub prev_kv: Option<KeyValue>,
}

/// What one pull returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    /// The store's revision when the response was made (etcd's header).
    pub revision: i64,
    /// Events in revision order, then sub-revision order.
    pub events: Vec<WatchEvent>,
    /// A progress notification: no events, and every change up to
    /// `revision` has been reported.
    pub progress: bool,
}

/// Counters of a store's watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchMetrics {
    /// Watchers open now (etcd's `watch_stream_total` is per stream; this
    /// is per watcher).
    pub watchers: usize,
    /// Watchers that fell behind the in-memory feed and are reading the
    /// revision log (etcd's `slow_watcher_total`).
    pub slow_watchers: usize,
    /// Events delivered (etcd's `events_total`).
    pub events: u64,
    /// Revision-log reads by slow watchers.
    pub catchup_reads: u64,
}

/// A watch on a key range; see the module docs. `Send`; dropping it
/// releases everything it held.
pub struct Watcher {
    store: Store,
    /// Shared with every watcher of the same bounds.
    range: Arc<WatchedRange>,
    /// The next revision to report.
    next: u64,
    opts: WatchOptions,
    last_response: Instant,
    /// Whether this watcher counts as catching up in the metrics.
    catching_up: bool,
    failed: bool,
    /// Set by [`Watcher::try_visit_all`] when its window did not hold this
    /// watcher's next revision.
    missed_window: bool,
}

impl Store {
    /// Watches `[key, range_end)` (etcd's `range_end` rules) with `opts`.
    /// Fails with [`Error::Compacted`] if the start revision was compacted.
    pub fn watch(&self, key: &[u8], range_end: &[u8], opts: WatchOptions) -> Result<Watcher> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let current = self.current_revision()?;
        let compacted = self.compacted_revision()?;
        let start = if opts.start_revision <= 0 {
            current + 1
        } else {
            opts.start_revision
        };
        if start < compacted {
            return Err(Error::Compacted {
                requested: start,
                compacted,
            });
        }
        // Registered before anything is read: every commit from now on is
        // recorded in the feed, older ones come from the revision log.
        self.feed().watchers.fetch_add(1, Ordering::Relaxed);
        Ok(Watcher {
            store: self.clone(),
            range: self
                .feed()
                .watched_range(key, &RangeEnd::from_etcd(range_end)),
            next: start as u64,
            opts,
            last_response: Instant::now(),
            catching_up: false,
            failed: false,
            missed_window: false,
        })
    }

    /// Waits until the store's revision is past `revision` or `timeout`
    /// passes, and returns the revision. For serving many watchers from one
    /// thread: wait once, then [`Watcher::try_visit_all`] (or
    /// [`Watcher::try_recv`] each), instead of a thread blocked in
    /// [`Watcher::recv`] per watcher. While commits come less than a
    /// millisecond apart, the wait polls every 100 us rather than have
    /// every commit wake it (a system call on the writer's path), so a
    /// delivery may take that much longer.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use revkv::mvcc::{Store, StoreOptions};
    /// # use std::time::Duration;
    /// let store = Store::open(dir.path().join("kv.db"), StoreOptions::new())?;
    /// assert_eq!(store.wait_revision_past(1, Duration::from_millis(1)), 1);
    /// store.put(b"k", b"v")?;
    /// assert_eq!(store.wait_revision_past(1, Duration::from_millis(1)), 2);
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn wait_revision_past(&self, revision: i64, timeout: Duration) -> i64 {
        self.feed()
            .wait_past(revision.max(0) as u64, Some(Instant::now() + timeout)) as i64
    }

    /// Counters of this store's watchers.
    pub fn watch_metrics(&self) -> WatchMetrics {
        let f = &self.feed();
        WatchMetrics {
            watchers: f.watchers.load(Ordering::Relaxed),
            slow_watchers: f.catching_up.load(Ordering::Relaxed),
            events: f.delivered.load(Ordering::Relaxed),
            catchup_reads: f.catchup_reads.load(Ordering::Relaxed),
        }
    }
}

impl Watcher {
    /// The next revision this watcher will report.
    pub fn next_revision(&self) -> i64 {
        self.next as i64
    }

    /// The events available now, without waiting; None if there are none
    /// yet.
    pub fn try_recv(&mut self) -> Result<Option<WatchResponse>> {
        if self.failed {
            return Err(Error::InvalidOption("the watcher already failed".into()));
        }
        let result = self.poll();
        if result.is_err() {
            self.failed = true;
            self.set_catching_up(false);
        }
        result
    }

    /// Waits for events (or, with progress notifications, for the interval
    /// to pass) and returns them.
    pub fn recv(&mut self) -> Result<WatchResponse> {
        loop {
            if let Some(r) = self.recv_timeout(MAX_WAIT)? {
                return Ok(r);
            }
        }
    }

    /// Like [`recv`](Self::recv), giving up after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<WatchResponse>> {
        let give_up = Instant::now() + timeout;
        loop {
            if let Some(r) = self.try_recv()? {
                return Ok(Some(r));
            }
            let mut deadline = give_up;
            if let Some(every) = self.opts.progress_notify {
                let due = self.last_response + every;
                if Instant::now() >= due {
                    self.last_response = Instant::now();
                    return Ok(Some(WatchResponse {
                        revision: self.next as i64 - 1,
                        events: Vec::new(),
                        progress: true,
                    }));
                }
                deadline = deadline.min(due);
            }
            if Instant::now() >= give_up {
                return Ok(None);
            }
            self.store.feed().wait_past(self.next - 1, Some(deadline));
        }
    }

    fn set_catching_up(&mut self, on: bool) {
        if self.catching_up != on {
            let f = &self.store.feed().catching_up;
            if on {
                f.fetch_add(1, Ordering::Relaxed);
            } else {
                f.fetch_sub(1, Ordering::Relaxed);
            }
            self.catching_up = on;
        }
    }

    /// Like [`try_recv`](Self::try_recv), but hands each available event
    /// to `visit` by reference instead of collecting them: no allocation
    /// and no reference counting per event, for a server that encodes
    /// events straight into its connection. Returns how many were visited
    /// (0 when none are available yet).
    pub fn try_visit(&mut self, mut visit: impl FnMut(&Event, Option<&KeyValue>)) -> Result<usize> {
        if !self.opts.prev_kv && !self.failed {
            let mut n = 0;
            if self
                .step_ring(|e| {
                    n += 1;
                    visit(e, None);
                })
                .is_some()
            {
                self.delivered(n);
                return Ok(n);
            }
        }
        // Behind the feed, or previous key-values wanted (reads of their
        // own): through a response.
        let Some(r) = self.try_recv()? else {
            return Ok(0);
        };
        for e in &r.events {
            visit(&e.event, e.prev_kv.as_ref());
        }
        Ok(r.events.len())
    }

    /// Whether the watcher's filters keep an event of its range.
    fn keeps(&self, e: &Event) -> bool {
        match e.kind {
            EventKind::Put => !self.opts.no_put,
            EventKind::Delete => !self.opts.no_delete,
        }
    }

    /// Hands `visit` the ring's events this watcher keeps, from its next
    /// revision on, and moves past them; None if the ring does not hold its
    /// next revision (it is behind, and must read the log).
    fn step_ring(&mut self, visit: impl FnMut(&Arc<Event>)) -> Option<()> {
        let last = {
            let this = &*self;
            let window = this.store.feed().window(this.next, this.opts.max_events);
            this.visit_window(&window, visit)?
        };
        self.advance(last);
        Some(())
    }

    /// The visiting half of [`step_ring`](Self::step_ring), on a window the
    /// caller took; returns the last revision visited.
    fn visit_window(&self, window: &Window, mut visit: impl FnMut(&Arc<Event>)) -> Option<u64> {
        window.visit(self.next, self.opts.max_events, &self.range, |e| {
            if self.keeps(e) {
                visit(e);
            }
        })
    }

    /// Moves past revision `last`, visited in the ring.
    fn advance(&mut self, last: u64) {
        self.set_catching_up(false);
        self.next = self.next.max(last + 1);
    }

    /// Counts `n` delivered events.
    fn delivered(&mut self, n: usize) {
        if n > 0 {
            self.store
                .feed()
                .delivered
                .fetch_add(n as u64, Ordering::Relaxed);
            self.responded();
        }
    }

    /// Notes a response with events. Only progress notifications need its
    /// time, and a clock read per watcher per pass is not free.
    fn responded(&mut self) {
        if self.opts.progress_notify.is_some() {
            self.last_response = Instant::now();
        }
    }

    /// [`try_visit`](Self::try_visit) for many watchers at once, as a
    /// server serving them from one thread does after
    /// [`Store::wait_revision_past`]: the watchers the store's in-memory
    /// feed can serve are served from one window taken from it (one lock
    /// instead of one per watcher), the rest one by one. `visit` gets the watcher's index
    /// with each event. Returns how many events were visited; on a
    /// watcher's error (such as [`Error::Compacted`]), that watcher's index
    /// and the error, the watchers after it being left for the next call.
    /// Watchers that already failed are skipped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::mvcc::{prefix_end, Store, StoreOptions};
    /// use revkv::watch::{WatchOptions, Watcher};
    /// let store = Store::open(dir.path().join("kv.db"), StoreOptions::new())?;
    /// let mut watchers: Vec<Watcher> = (0..3)
    ///     .map(|_| store.watch(b"/pods/", &prefix_end(b"/pods/"), WatchOptions::new()))
    ///     .collect::<Result<_, _>>()?;
    /// store.put(b"/pods/a", b"1")?;
    /// let mut seen = [0; 3];
    /// let n = Watcher::try_visit_all(&mut watchers, |i, event, _| {
    ///     assert_eq!(event.kv.key, b"/pods/a");
    ///     seen[i] += 1;
    /// })
    /// .map_err(|(_, e)| e)?;
    /// assert_eq!((n, seen), (3, [1, 1, 1]));
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn try_visit_all(
        watchers: &mut [Watcher],
        mut visit: impl FnMut(usize, &Event, Option<&KeyValue>),
    ) -> std::result::Result<usize, (usize, Error)> {
        let Some(store) = watchers.first().map(|w| w.store.clone()) else {
            return Ok(0);
        };
        let feed = store.feed();
        let mut served = 0;
        let servable = |w: &Watcher| !w.opts.prev_kv && !w.failed && w.store.same_store(&store);
        let (mut from, mut limit) = (u64::MAX, 0);
        for w in watchers.iter().filter(|w| servable(w)) {
            from = from.min(w.next);
            limit = limit.max(w.opts.max_events);
        }
        let window = feed.window(from, limit);
        for (i, w) in watchers.iter_mut().enumerate() {
            if !servable(w) {
                continue;
            }
            let mut n = 0;
            let last = w.visit_window(&window, |e| {
                n += 1;
                visit(i, e, None);
            });
            match last {
                Some(last) => {
                    w.advance(last);
                    if n > 0 {
                        w.responded();
                    }
                    served += n;
                }
                None => w.missed_window = true,
            }
        }
        drop(window);
        feed.delivered.fetch_add(served as u64, Ordering::Relaxed);
        // Behind the feed (or far ahead of the slowest), wanting previous
        // key-values, or of another store: one by one.
        let mut rest = 0;
        for (i, w) in watchers.iter_mut().enumerate() {
            let pending = std::mem::take(&mut w.missed_window) || !servable(w);
            if pending && !w.failed {
                rest += w.try_visit(|e, kv| visit(i, e, kv)).map_err(|e| (i, e))?;
            }
        }
        Ok(served + rest)
    }

    fn poll(&mut self) -> Result<Option<WatchResponse>> {
        let mut events: Vec<WatchEvent> = Vec::new();
        let in_ring = self
            .step_ring(|e| {
                events.push(WatchEvent {
                    event: Arc::clone(e),
                    prev_kv: None,
                })
            })
            .is_some();
        if !in_ring {
            // Behind the feed (or before it): read the revision log.
            let (r, t, revs) = self.store.snapshot_for_stream()?;
            if self.next > revs.current {
                return Ok(None);
            }
            if self.next < revs.compacted {
                return Err(Error::Compacted {
                    requested: self.next as i64,
                    compacted: revs.compacted as i64,
                });
            }
            let Some(t) = t else { return Ok(None) };
            self.set_catching_up(true);
            self.store
                .feed()
                .catchup_reads
                .fetch_add(1, Ordering::Relaxed);
            let max = self.opts.max_events;
            let (read, last) = changes::read_log(
                &r,
                t,
                self.next,
                revs.current,
                &self.range.start,
                &self.range.end,
                max,
            )?;
            events.extend(
                read.into_iter()
                    .filter(|e| self.keeps(e))
                    .map(|event| WatchEvent {
                        event,
                        prev_kv: None,
                    }),
            );
            self.next = self.next.max(last + 1);
        }
        if events.is_empty() {
            return Ok(None);
        }
        if self.opts.prev_kv {
            let (r, t, _) = self.store.snapshot_for_stream()?;
            let t = t.ok_or_else(|| Error::CorruptFile("watched store has no tables".into()))?;
            for e in &mut events {
                let kv = &e.event.kv;
                e.prev_kv = changes::prev_kv(&r, t, &kv.key, kv.mod_revision as u64)?;
            }
        }
        self.delivered(events.len());
        Ok(Some(WatchResponse {
            revision: self.store.feed().revision().max(self.next - 1) as i64,
            events,
            progress: false,
        }))
    }
}

impl Iterator for Watcher {
    type Item = Result<WatchResponse>;

    /// Blocks until the next response; ends after an error.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        Some(self.recv())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.set_catching_up(false);
        self.store.feed().watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("key", &String::from_utf8_lossy(&self.range.start))
            .field("next_revision", &self.next)
            .finish()
    }
}
