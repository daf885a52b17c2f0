//! The store's change feed: what each revision changed, as etcd's
//! `mvccpb.Event`s, read back from the revision log or, for recent
//! revisions, from a bounded in-memory ring the writer fills once per commit
//! while anyone watches; and a signal that wakes waiters when the revision
//! advances. The watch layer is built on this.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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

struct Ring {
    /// The ring holds every revision in `(start, end]`, none missing.
    start: u64,
    end: u64,
    revisions: VecDeque<(u64, Box<[Arc<Event>]>)>,
    bytes: usize,
}

/// The in-memory tail of the change feed and the revision signal.
pub(crate) struct Feed {
    ring: RwLock<Ring>,
    /// The last committed revision, readable without a lock.
    current: AtomicU64,
    /// Paired with `advanced`: held while the revision is stored and while a
    /// waiter checks it, so no wake-up is lost.
    signal: Mutex<()>,
    advanced: Condvar,
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
            current: AtomicU64::new(current),
            signal: Mutex::new(()),
            advanced: Condvar::new(),
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
                for (rev, evs) in events {
                    ring.bytes += evs.iter().map(|e| event_bytes(e)).sum::<usize>();
                    ring.revisions.push_back((rev, evs.into()));
                }
                ring.end = after;
                while ring.bytes > RING_BYTES {
                    let Some((rev, evs)) = ring.revisions.pop_front() else {
                        break;
                    };
                    ring.bytes -= evs.iter().map(|e| event_bytes(e)).sum::<usize>();
                    ring.start = rev;
                }
            }
        }
        let guard = self.signal.lock();
        self.current.fetch_max(after, Ordering::Release);
        drop(guard);
        self.advanced.notify_all();
    }

    /// Waits until the revision is past `seen` or `deadline` passes; returns
    /// the revision.
    pub fn wait_past(&self, seen: u64, deadline: Option<Instant>) -> u64 {
        let mut guard = self.signal.lock();
        while self.revision() <= seen {
            match deadline {
                Some(d) => {
                    if self.advanced.wait_until(&mut guard, d).timed_out() {
                        break;
                    }
                }
                None => self.advanced.wait(&mut guard),
            }
        }
        self.revision()
    }

    /// Visits the events of revisions from `from` on that the ring holds,
    /// about `max_events` of them (whole revisions), and returns the last
    /// revision visited; None if the ring no longer (or not yet) holds
    /// `from`. The ring stays read-locked during the visit: keep it short.
    pub fn visit_ring(
        &self,
        from: u64,
        max_events: usize,
        mut visit: impl FnMut(&Arc<Event>),
    ) -> Option<u64> {
        let ring = self.ring.read();
        if from <= ring.start || from > ring.end + 1 {
            return None;
        }
        let first = ring.revisions.partition_point(|(rev, _)| *rev < from);
        let mut n = 0;
        for (rev, evs) in ring.revisions.range(first..) {
            if n >= max_events {
                return Some(rev - 1);
            }
            n += evs.len();
            evs.iter().for_each(&mut visit);
        }
        Some(ring.end)
    }

    /// The last revision the signal announced.
    pub fn revision(&self) -> u64 {
        self.current.load(Ordering::Acquire)
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
