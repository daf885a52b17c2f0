//! The store's change feed: what each revision changed, as etcd's
//! `mvccpb.Event`s, read back from the revision log or, for recent
//! revisions, from a bounded in-memory ring the writer fills once per commit
//! while anyone watches; and a signal that wakes waiters when the revision
//! advances. The watch layer is built on this.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::keys::{self, split_rev_key};
use super::read::{self, RangeEnd};
use super::record::{KeyValue, Record};
use super::Tables;
use crate::error::{Error, Result};
use crate::txn::TxnRead;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was put: the event's key-value is the new version.
    Put,
    /// The key was deleted: the event's key-value holds only the key and
    /// the deletion's revision as `mod_revision`, as in etcd.
    Delete,
}

/// One change to one key (etcd's `mvccpb.Event`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the change.
    pub kv: KeyValue,
    /// The sub-revision of the change within its revision.
    pub sub_revision: u32,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// Bytes of events the ring keeps (the oldest revisions leave first).
pub const RING_BYTES: usize = 8 << 20;

/// Commits closer together than this make waiters poll (see
/// [`Feed::wait_past`]).
const BUSY: Duration = Duration::from_millis(1);
/// How often a waiter polls a busy store: the most it adds to a delivery.
const POLL: Duration = Duration::from_micros(100);

struct Ring {
    /// The ring holds every revision in `(start, end]`, none missing.
    start: u64,
    end: u64,
    revisions: VecDeque<Arc<Revision>>,
    bytes: usize,
}

/// One revision's events in the ring.
struct Revision {
    revision: u64,
    events: Box<[Arc<Event>]>,
    /// Which of the events lie in one watched range, remembered for the
    /// next watcher of the same range: `range id << 32 | bit i set when
    /// event i lies in it`, 0 for nothing remembered. Only revisions of at
    /// most 32 events are remembered. Any watcher may overwrite it; the
    /// answer for a given range never changes, so a reader that finds its
    /// own range's id can trust the bits.
    in_range: AtomicU64,
}

/// The most events of one revision whose range test is remembered.
const REMEMBERED_EVENTS: usize = 32;

/// A key range being watched, shared by every watcher of the same range so
/// that each revision's events are tested against it once, whatever the
/// number of its watchers.
#[derive(Debug)]
pub(crate) struct WatchedRange {
    /// Unique among ranges alive or remembered in the ring; 0 when ids ran
    /// out (such a range is tested per watcher, never remembered).
    id: u32,
    pub start: Vec<u8>,
    pub end: RangeEnd,
}

impl WatchedRange {
    /// Which of `events` (at most 32) lie in the range, as bits.
    fn test(&self, events: &[Arc<Event>]) -> u32 {
        events.iter().enumerate().fold(0, |bits, (i, e)| {
            bits | (u32::from(self.end.contains(&self.start, &e.kv.key)) << i)
        })
    }
}

/// The watched ranges, deduplicated.
struct Ranges {
    by_bounds: HashMap<(Vec<u8>, RangeEnd), Weak<WatchedRange>>,
    /// The last id handed out; ids are never reused, so a remembered test
    /// in the ring can never be mistaken for another range's.
    last_id: u32,
    /// Size of `by_bounds` after its last sweep of dropped ranges.
    swept_len: usize,
}

/// The in-memory tail of the change feed and the revision signal.
pub(crate) struct Feed {
    ring: RwLock<Ring>,
    ranges: Mutex<Ranges>,
    /// The last committed revision, readable without a lock.
    current: AtomicU64,
    /// Paired with `advanced`: held by a waiter from its last check of the
    /// revision until it sleeps, and taken by the writer before it wakes
    /// sleepers, so no wake-up is lost.
    signal: Mutex<()>,
    advanced: Condvar,
    /// Waiters asleep on `advanced` (or about to be). The writer skips the
    /// lock and the wake-up, a system call, when there are none.
    sleepers: AtomicUsize,
    /// When the last commit was published, in nanoseconds since `epoch`.
    last_commit: AtomicU64,
    epoch: Instant,
    /// How many watchers exist: the ring is filled only while some do.
    pub watchers: AtomicUsize,
    /// Watchers reading from the revision log (behind the ring) right now.
    pub catching_up: AtomicUsize,
    /// Events handed to watchers.
    pub delivered: AtomicU64,
    /// Reads of the revision log by watchers behind the ring.
    pub catchup_reads: AtomicU64,
}

fn event_bytes(e: &Event) -> usize {
    e.kv.key.len() + e.kv.value.len() + 96
}

impl Feed {
    pub fn new(current: u64) -> Feed {
        Feed {
            ring: RwLock::new(Ring {
                start: current,
                end: current,
                revisions: VecDeque::new(),
                bytes: 0,
            }),
            ranges: Mutex::new(Ranges {
                by_bounds: HashMap::new(),
                last_id: 0,
                swept_len: 0,
            }),
            current: AtomicU64::new(current),
            signal: Mutex::new(()),
            advanced: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            last_commit: AtomicU64::new(0),
            epoch: Instant::now(),
            watchers: AtomicUsize::new(0),
            catching_up: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            catchup_reads: AtomicU64::new(0),
        }
    }

    /// Whether the writer should record its changes.
    pub fn recording(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Called by the writer after a commit that took the store from revision
    /// `before` to `after`, with the events it recorded (empty when not
    /// recording): appends them and wakes every waiter.
    pub fn committed(&self, before: u64, after: u64, events: Vec<(u64, Vec<Arc<Event>>)>) {
        {
            let mut ring = self.ring.write();
            if ring.end != before || (events.is_empty() && after > before) {
                // A gap (nobody was recording): start over after it.
                ring.revisions.clear();
                ring.bytes = 0;
                ring.start = after;
                ring.end = after;
            } else {
                for (revision, evs) in events {
                    ring.bytes += evs.iter().map(|e| event_bytes(e)).sum::<usize>();
                    ring.revisions.push_back(Arc::new(Revision {
                        revision,
                        events: evs.into(),
                        in_range: AtomicU64::new(0),
                    }));
                }
                ring.end = after;
                while ring.bytes > RING_BYTES {
                    let Some(oldest) = ring.revisions.pop_front() else {
                        break;
                    };
                    ring.bytes -= oldest.events.iter().map(|e| event_bytes(e)).sum::<usize>();
                    ring.start = oldest.revision;
                }
            }
        }
        self.last_commit
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // SeqCst, with `sleepers` below and in `wait_past`: either this
        // sees a waiter's registration, or that waiter's check after it
        // sees the new revision.
        self.current.fetch_max(after, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            // Waits until each registered waiter is asleep (it holds the
            // lock from its registration until then).
            drop(self.signal.lock());
            self.advanced.notify_all();
        }
    }

    /// Waits until the revision is past `seen` or `deadline` passes; returns
    /// the revision.
    ///
    /// While commits come less than [`BUSY`] apart, a waiter polls every
    /// [`POLL`] instead of sleeping until woken: waking a sleeper is a
    /// system call for the writer, on every commit, and costs it more than
    /// a poll costs the waiter.
    pub fn wait_past(&self, seen: u64, deadline: Option<Instant>) -> u64 {
        loop {
            let revision = self.revision();
            if revision > seen {
                return revision;
            }
            let now = Instant::now();
            let left = deadline.map(|d| d.saturating_duration_since(now));
            if left == Some(Duration::ZERO) {
                return revision;
            }
            let since = (self.epoch.elapsed().as_nanos() as u64)
                .saturating_sub(self.last_commit.load(Ordering::Relaxed));
            if since >= BUSY.as_nanos() as u64 {
                break;
            }
            std::thread::sleep(left.map_or(POLL, |l| l.min(POLL)));
        }
        let mut guard = self.signal.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        while self.current.load(Ordering::SeqCst) <= seen {
            match deadline {
                Some(d) => {
                    if self.advanced.wait_until(&mut guard, d).timed_out() {
                        break;
                    }
                }
                None => self.advanced.wait(&mut guard),
            }
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        self.revision()
    }

    /// The shared range for watching `[start, end)`: the same one for
    /// every watcher of these bounds while any holds it.
    pub fn watched_range(&self, start: &[u8], end: &RangeEnd) -> Arc<WatchedRange> {
        let mut ranges = self.ranges.lock();
        let bounds = (start.to_vec(), end.clone());
        if let Some(range) = ranges.by_bounds.get(&bounds).and_then(Weak::upgrade) {
            return range;
        }
        // Dropped ranges leave dead entries; sweep them whenever the map
        // has doubled since the last sweep (amortized O(1) per watch).
        if ranges.by_bounds.len() >= 2 * ranges.swept_len.max(32) {
            ranges.by_bounds.retain(|_, r| r.strong_count() > 0);
            ranges.swept_len = ranges.by_bounds.len();
        }
        let id = ranges.last_id.checked_add(1).unwrap_or(0);
        if id != 0 {
            ranges.last_id = id;
        }
        let range = Arc::new(WatchedRange {
            id,
            start: bounds.0.clone(),
            end: bounds.1.clone(),
        });
        ranges.by_bounds.insert(bounds, Arc::downgrade(&range));
        range
    }

    /// The ring's revisions from `from` on, taken under its read lock (a
    /// reference count each) so that they are visited without it: the
    /// writer never waits for a watcher's visit to publish a commit. If the
    /// ring no longer holds `from`, the window starts where the ring does.
    /// At most `limit` revisions: a visit of up to `limit` events needs no
    /// more (every revision has one).
    pub fn window(&self, from: u64, limit: usize) -> Window {
        let ring = self.ring.read();
        let from = from.clamp(ring.start + 1, ring.end + 1);
        // Every revision in (start, end] is held, in order, so `from` is at
        // a known offset; the search is only a guard.
        let dense = ring.revisions.len() as u64 == ring.end - ring.start;
        debug_assert!(
            dense,
            "the ring misses a revision in ({}, {}]",
            ring.start, ring.end
        );
        let first = if dense {
            (from - ring.start - 1) as usize
        } else {
            ring.revisions.partition_point(|r| r.revision < from)
        };
        let revisions: Vec<_> = ring.revisions.range(first..).take(limit).cloned().collect();
        Window {
            start: from - 1,
            end: revisions.last().map_or(from - 1, |r| r.revision),
            revisions,
        }
    }

    /// The last revision the signal announced.
    pub fn revision(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }
}

/// Revisions taken from the ring: every revision in `(start, end]`, in
/// order.
pub(crate) struct Window {
    start: u64,
    end: u64,
    revisions: Vec<Arc<Revision>>,
}

impl Window {
    /// Visits the events of revisions from `from` on that lie in `range`,
    /// about `max_events` of them (whole revisions, counting events out of
    /// the range too), and returns the last revision visited; None if the
    /// window does not hold `from` (it is behind the ring).
    pub fn visit(
        &self,
        from: u64,
        max_events: usize,
        range: &WatchedRange,
        mut visit: impl FnMut(&Arc<Event>),
    ) -> Option<u64> {
        if from <= self.start || from > self.end + 1 {
            return None;
        }
        let first = self.revisions.partition_point(|r| r.revision < from);
        let mut n = 0;
        for r in &self.revisions[first..] {
            if n >= max_events {
                return Some(r.revision - 1);
            }
            n += r.events.len();
            if range.id == 0 || r.events.len() > REMEMBERED_EVENTS {
                r.events
                    .iter()
                    .filter(|e| range.end.contains(&range.start, &e.kv.key))
                    .for_each(&mut visit);
                continue;
            }
            // Relaxed: the word carries no other data; its value for a
            // given id is the same whoever wrote it.
            let remembered = r.in_range.load(Ordering::Relaxed);
            let mut bits = if remembered >> 32 == u64::from(range.id) {
                remembered as u32
            } else {
                let bits = range.test(&r.events);
                r.in_range.store(
                    u64::from(range.id) << 32 | u64::from(bits),
                    Ordering::Relaxed,
                );
                bits
            };
            while bits != 0 {
                visit(&r.events[bits.trailing_zeros() as usize]);
                bits &= bits - 1;
            }
        }
        Some(self.end)
    }
}

/// Reads the events of revisions `from..=to` touching `[start, end)` from
/// the revision log of a snapshot, stopping after the revision in which
/// `max_events` is reached. Returns the events and the last revision read.
pub(crate) fn read_log<T: TxnRead + ?Sized>(
    txn: &T,
    t: Tables,
    from: u64,
    to: u64,
    start: &[u8],
    end: &RangeEnd,
    max_events: usize,
) -> Result<(Vec<Arc<Event>>, u64)> {
    let mut out = Vec::new();
    let mut c = txn.cursor(t.rev)?;
    let mut entry = c.seek(&keys::rev_key(from, 0))?;
    let mut last = to;
    while let Some((k, v)) = entry {
        let (main, sub) =
            split_rev_key(k).ok_or_else(|| Error::CorruptFile("malformed rev table key".into()))?;
        if main > to {
            break;
        }
        if out.len() >= max_events && main > last_main(&out) {
            last = main - 1;
            break;
        }
        let (&flag, key) = v
            .split_first()
            .ok_or_else(|| Error::CorruptFile("empty rev table entry".into()))?;
        if end.contains(start, key) {
            out.push(Arc::new(event_at(txn, t, key, main, sub, flag != 0)?));
        }
        entry = c.next()?;
    }
    Ok((out, last))
}

fn last_main(events: &[Arc<Event>]) -> u64 {
    events.last().map_or(0, |e| e.kv.mod_revision as u64)
}

/// The event of the change to `key` at revision `main`.
pub(crate) fn event_at<T: TxnRead + ?Sized>(
    txn: &T,
    t: Tables,
    key: &[u8],
    main: u64,
    sub: u32,
    tombstone: bool,
) -> Result<Event> {
    if tombstone {
        return Ok(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_vec(),
                mod_revision: main as i64,
                ..Default::default()
            },
            sub_revision: sub,
        });
    }
    match txn.get(t.kv, &keys::kv_key(key, main))? {
        Some(v) => Ok(Event {
            kind: EventKind::Put,
            kv: Record::decode(v)?.to_kv(key, main, false),
            sub_revision: sub,
        }),
        None => Err(Error::CorruptFile(format!(
            "revision log names a version of {:?} at {main} that the kv table lacks",
            String::from_utf8_lossy(key)
        ))),
    }
}

/// The version of `key` before revision `main` (a watcher's `prev_kv`).
pub(crate) fn prev_kv<T: TxnRead + ?Sized>(
    txn: &T,
    t: Tables,
    key: &[u8],
    main: u64,
) -> Result<Option<KeyValue>> {
    if main <= 1 {
        return Ok(None);
    }
    Ok(match read::version_at(txn, t.kv, key, main - 1)? {
        Some((rev, rec)) if !rec.tombstone => Some(rec.to_kv(key, rev, false)),
        _ => None,
    })
}

/// Waits at most this long at a time, so progress notifications and
/// cancellation are noticed.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_in_thread(feed: &Arc<Feed>, seen: u64) -> std::thread::JoinHandle<u64> {
        let feed = Arc::clone(feed);
        std::thread::spawn(move || {
            feed.wait_past(seen, Some(Instant::now() + Duration::from_secs(60)))
        })
    }

    /// On an idle store a waiter sleeps until woken, and the next commit
    /// wakes it (a lost wake-up would leave it asleep for a minute).
    #[test]
    fn a_sleeping_waiter_is_woken_by_the_next_commit() {
        let feed = Arc::new(Feed::new(1));
        let waiter = wait_in_thread(&feed, 1);
        while feed.sleepers.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        feed.committed(1, 2, Vec::new());
        assert_eq!(waiter.join().unwrap(), 2);
        assert_eq!(feed.sleepers.load(Ordering::SeqCst), 0);
    }

    /// On a busy store a waiter polls, and sees the next commit all the
    /// same.
    #[test]
    fn a_waiter_on_a_busy_store_sees_the_next_commit() {
        let feed = Arc::new(Feed::new(1));
        feed.committed(1, 2, Vec::new());
        let waiter = wait_in_thread(&feed, 2);
        feed.committed(2, 3, Vec::new());
        assert_eq!(waiter.join().unwrap(), 3);
    }
}
