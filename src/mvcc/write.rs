//! Applying write requests inside one storage write transaction.
//!
//! Each request that changes something gets the next main revision; its
//! changes get sub revisions 0, 1, ... Several requests may be applied in
//! one storage transaction (group commit); each still gets its own revision.

use std::sync::Arc;

use super::changes::{Event, EventKind};
use super::keys;
use super::read::{self, RangeEnd};
use super::record::{KeyValue, Record};
use super::txn::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use super::{Revisions, Tables};
use crate::btree::write::Next;
use crate::error::{Error, Result};
use crate::txn::parked::TouchedKeys;
use crate::txn::{TxnRead, WriteTxn};

/// Applies requests to one write transaction, tracking revisions.
pub(crate) struct Applier<'w> {
    pub w: &'w mut WriteTxn,
    pub t: Tables,
    pub revs: Revisions,
    /// The main revision the request being applied writes at.
    main: u64,
    sub: u32,
    /// Buffers for the request being applied, kept across requests so a
    /// write allocates nothing of its own: the encoded record, the `kv`
    /// key (or a probe for one), the `rev` table entry.
    record: Vec<u8>,
    kv_key: Vec<u8>,
    log: Vec<u8>,
    /// When set, every change is also kept as an event for the change feed
    /// (only while someone watches), grouped by revision.
    pub events: Option<Vec<(u64, Vec<Arc<Event>>)>>,
    /// Batched mode: where the keys written are marked for point readers
    /// (see `txn::parked::TouchedKeys`).
    pub touched: Option<&'w TouchedKeys>,
}

impl<'w> Applier<'w> {
    pub fn new(w: &'w mut WriteTxn, t: Tables, revs: Revisions) -> Applier<'w> {
        Applier {
            w,
            t,
            revs,
            main: 0,
            sub: 0,
            record: Vec::new(),
            kv_key: Vec::new(),
            log: Vec::new(),
            events: None,
            touched: None,
        }
    }

    /// Applies a transaction request (puts and deletes are one-op
    /// transactions) as one revision.
    pub fn apply(&mut self, req: &TxnRequest) -> Result<TxnResponse> {
        self.main = self.revs.current + 1;
        self.sub = 0;
        let succeeded = self.compares_hold(req)?;
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        // Fail before writing anything: a read of a compacted or future
        // revision is the one error an operation can meet mid-request.
        for op in ops {
            if let RequestOp::Range(r) = op {
                self.revs
                    .check_read(r.options.revision, self.revs.current)?;
            }
        }
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(d)?),
            });
        }
        if self.sub > 0 {
            self.revs.current = self.main;
        }
        // Headers carry the revision after the whole request, as in etcd.
        let rev = self.revs.current as i64;
        for r in &mut responses {
            match r {
                ResponseOp::Range(x) => x.header.revision = rev,
                ResponseOp::Put(x) => x.header.revision = rev,
                ResponseOp::DeleteRange(x) => x.header.revision = rev,
            }
        }
        Ok(TxnResponse {
            header: ResponseHeader { revision: rev },
            succeeded,
            responses,
        })
    }

    /// Whether the request being applied has written something (so an
    /// error now cannot be undone without aborting the transaction).
    pub fn wrote(&self) -> bool {
        self.sub > 0
    }

    fn compares_hold(&self, req: &TxnRequest) -> Result<bool> {
        compares_hold(&*self.w, self.t.kv, req, self.revs.current)
    }

    /// The revision reads inside the request see: its own changes included.
    fn read_rev(&self) -> u64 {
        if self.sub > 0 {
            self.main
        } else {
            self.revs.current
        }
    }

    fn range(&mut self, r: &super::txn::RangeRequest) -> Result<RangeResponse> {
        let rev = self.read_rev();
        let at = self.revs.check_read(r.options.revision, rev)?;
        read::range_at(
            &*self.w,
            self.t.kv,
            &r.key,
            &r.range_end,
            &r.options,
            at,
            rev,
        )
    }

    /// The live version of `key`, if any: its create revision and version,
    /// and, when `want_kv`, the whole key-value (etcd's `prev_kv`; copying
    /// the value costs an allocation a plain put does not need).
    fn latest(
        &mut self,
        key: &[u8],
        want_kv: bool,
    ) -> Result<Option<(u64, u64, Option<KeyValue>)>> {
        let found = read::version_at_with(&*self.w, self.t.kv, key, u64::MAX, &mut self.kv_key)?;
        Ok(match found {
            Some((rev, rec)) if !rec.tombstone => Some((
                rec.create,
                rec.version,
                want_kv.then(|| rec.to_kv(key, rev, false)),
            )),
            _ => None,
        })
    }

    fn put(&mut self, p: &PutRequest) -> Result<PutResponse> {
        let mut rec = Record {
            tombstone: false,
            sub: self.sub,
            create: self.main,
            version: 1,
            lease: p.lease,
            value: &p.value,
        };
        self.log_version(&p.key, false)?;
        // etcd's prev_kv needs the whole previous value: looked up apart.
        let placed = !p.prev_kv && self.place_new_version(&p.key, &mut rec)?;
        let mut prev_kv = None;
        if !placed {
            if let Some((create, version, kv)) = self.latest(&p.key, p.prev_kv)? {
                (rec.create, rec.version, prev_kv) = (create, version + 1, kv);
            }
            rec.encode_into(&mut self.record);
            keys::kv_key_into(&p.key, self.main, &mut self.kv_key);
            self.w.insert(self.t.kv, &self.kv_key, &self.record)?;
        }
        self.finish_version(&p.key, &rec);
        Ok(PutResponse {
            header: ResponseHeader::default(),
            prev_kv,
        })
    }

    /// Inserts the put's version into `kv` with the create revision and
    /// version taken from the key's newest version, found next to where the
    /// new one goes (versions of a key are ordered newest first): one
    /// descent instead of a lookup and then an insertion, a sixth of a bulk
    /// load's time. Returns false, having written nothing to `kv`, when
    /// that neighbour cannot tell: the newest version is in the next leaf,
    /// or stored out of line.
    fn place_new_version(&mut self, key: &[u8], rec: &mut Record<'_>) -> Result<bool> {
        keys::kv_key_into(key, self.main, &mut self.kv_key);
        rec.encode_into(&mut self.record);
        let probe = &self.kv_key;
        // The escaped key with its terminator: what every version shares.
        let escaped = &probe[..probe.len() - keys::REV_LEN];
        let mut newest: Option<(u64, u64)> = None;
        let placed = self
            .w
            .insert_with(self.t.kv, probe, &mut self.record, |next, record| {
                let live = match next {
                    Next::Entry { key: k, value } => {
                        if k.len() == probe.len() && k.starts_with(escaped) {
                            let r = Record::decode(value)?;
                            (!r.tombstone).then_some((r.create, r.version + 1))
                        } else {
                            None
                        }
                    }
                    // Every later entry is at or after the bound: any
                    // version of the key there would make the bound start
                    // with the escaped key too.
                    Next::Beyond(Some(bound)) if bound.starts_with(escaped) => return Ok(false),
                    Next::Beyond(_) => None,
                    Next::OutOfLine => return Ok(false),
                };
                if let Some((create, version)) = live {
                    Record::set_create_and_version(record, create, version);
                }
                newest = live;
                Ok(true)
            })?;
        if let Some((create, version)) = newest {
            (rec.create, rec.version) = (create, version);
        }
        Ok(placed)
    }

    fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let end = RangeEnd::from_etcd(&d.range_end);
        // Collect first: the tombstones change the table being read.
        let mut victims = Vec::new();
        {
            let mut live = read::LiveAt::new(&*self.w, self.t.kv, &d.key, &end, u64::MAX)?;
            while let Some(v) = live.next()? {
                let key = v.key()?;
                let kv = if d.prev_kv {
                    Some(v.record.to_kv(key.as_slice(), v.mod_revision, false))
                } else {
                    None
                };
                victims.push((key, kv));
            }
        }
        let mut resp = DeleteRangeResponse {
            deleted: victims.len() as i64,
            ..Default::default()
        };
        for (key, kv) in victims {
            let rec = Record {
                tombstone: true,
                sub: self.sub,
                create: 0,
                version: 0,
                lease: 0,
                value: &[],
            };
            self.write_version(&key, &rec)?;
            resp.prev_kvs.extend(kv);
        }
        Ok(resp)
    }

    /// Takes back what the request being applied wrote, after it failed
    /// part way: in a parked transaction (batched mode) the writes before
    /// it are acknowledged and must be committed without it. Every change
    /// is in the revision log at (main, 0..=sub) before it is in `kv`
    /// (see [`Applier::write_version`]), and the log entry names its key.
    pub fn undo(&mut self) -> Result<()> {
        for sub in 0..=self.sub {
            let at = keys::rev_key(self.main, sub);
            let Some(log) = self.w.get(self.t.rev, &at)? else {
                continue;
            };
            let Some(key) = log.get(1..) else {
                return Err(Error::CorruptFile(format!(
                    "revision log entry {}.{sub} is empty",
                    self.main
                )));
            };
            let kv_key = keys::kv_key(key, self.main);
            self.w.remove(self.t.kv, &kv_key)?;
            self.w.remove(self.t.rev, &at)?;
        }
        if let Some(events) = &mut self.events {
            if events.last().is_some_and(|(rev, _)| *rev == self.main) {
                events.pop();
            }
        }
        self.sub = 0;
        Ok(())
    }

    /// Writes one version at (main, sub) to both tables: the revision log
    /// first, so that [`Applier::undo`] finds every `kv` entry written.
    fn write_version(&mut self, key: &[u8], rec: &Record<'_>) -> Result<()> {
        self.log_version(key, rec.tombstone)?;
        rec.encode_into(&mut self.record);
        keys::kv_key_into(key, self.main, &mut self.kv_key);
        self.w.insert(self.t.kv, &self.kv_key, &self.record)?;
        self.finish_version(key, rec);
        Ok(())
    }

    /// The revision log's entry for the version at (main, sub), written
    /// before the version itself.
    fn log_version(&mut self, key: &[u8], tombstone: bool) -> Result<()> {
        self.log.clear();
        self.log.push(u8::from(tombstone));
        self.log.extend_from_slice(key);
        self.w
            .insert(self.t.rev, &keys::rev_key(self.main, self.sub), &self.log)?;
        Ok(())
    }

    /// After a version is in both tables: marks the key for point readers,
    /// keeps the event for watchers, and moves to the next sub revision.
    fn finish_version(&mut self, key: &[u8], rec: &Record<'_>) {
        if let Some(touched) = self.touched {
            touched.mark(key);
        }
        if let Some(events) = &mut self.events {
            let kv = if rec.tombstone {
                KeyValue {
                    key: key.to_vec(),
                    mod_revision: self.main as i64,
                    ..Default::default()
                }
            } else {
                rec.to_kv(key, self.main, false)
            };
            let event = Arc::new(Event {
                kind: if rec.tombstone {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                kv,
                sub_revision: self.sub,
            });
            match events.last_mut() {
                Some((rev, evs)) if *rev == self.main => evs.push(event),
                _ => events.push((self.main, vec![event])),
            }
        }
        self.sub += 1;
    }
}

/// Evaluates a transaction's compares at revision `rev`.
pub(crate) fn compares_hold<T: TxnRead + ?Sized>(
    txn: &T,
    kv: crate::Table,
    req: &TxnRequest,
    rev: u64,
) -> Result<bool> {
    for c in &req.compare {
        let end = RangeEnd::from_etcd(&c.range_end);
        if end == RangeEnd::Single {
            let found = match read::version_at(txn, kv, &c.key, rev)? {
                Some((r, rec)) if !rec.tombstone => Some(rec.to_kv(c.key.as_slice(), r, false)),
                _ => None,
            };
            if !c.holds(found.as_ref()) {
                return Ok(false);
            }
            continue;
        }
        let mut live = read::LiveAt::new(txn, kv, &c.key, &end, rev)?;
        let mut any = false;
        while let Some(v) = live.next()? {
            any = true;
            if !c.holds(Some(&v.record.to_kv(v.key()?, v.mod_revision, false))) {
                return Ok(false);
            }
        }
        if !any && !c.holds(None) {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Revisions {
    /// The revision a read asking for `requested` (0: current) runs at.
    pub(crate) fn check_read(&self, requested: i64, current: u64) -> Result<u64> {
        if requested <= 0 {
            return Ok(current);
        }
        let r = requested as u64;
        if r > current {
            return Err(Error::FutureRevision {
                requested,
                current: current as i64,
            });
        }
        if r < self.compacted {
            return Err(Error::Compacted {
                requested,
                compacted: self.compacted as i64,
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{read_revisions, tables, Store, StoreOptions};
    use crate::TxnRead;

    /// Every entry of a table, in order.
    fn dump(w: &WriteTxn, table: crate::Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        w.range(
            table,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
        )
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
    }

    /// What a request wrote before it failed comes out again, and only
    /// that: the writes applied before it stay.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn undo_takes_back_the_request_in_hand_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("kv.db"), StoreOptions::new()).unwrap();
        store.put(b"a", b"1").unwrap();
        store.put(b"b", b"1").unwrap();
        let db = store.db();
        let mut w = db.begin_write().unwrap();
        let t = tables(&mut w).unwrap();
        let revs = read_revisions(&w, t.meta).unwrap();
        let put = |k: &[u8]| {
            RequestOp::Put(PutRequest {
                key: k.to_vec(),
                value: b"2".to_vec(),
                ..Default::default()
            })
        };
        let mut applier = Applier::new(&mut w, t, revs);
        applier.events = Some(Vec::new());
        // Applied and kept.
        let kept = TxnRequest {
            success: vec![put(b"a")],
            ..Default::default()
        };
        applier.apply(&kept).unwrap();
        let before = (dump(applier.w, t.kv), dump(applier.w, t.rev));
        // Applied, then taken back as if its last operation had failed.
        let undone = TxnRequest {
            success: vec![
                put(b"b"),
                put(b"c"),
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key: b"a".to_vec(),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        };
        let current = applier.revs.current;
        applier.apply(&undone).unwrap();
        applier.revs.current = current;
        assert!(applier.wrote());
        applier.undo().unwrap();
        assert!(!applier.wrote());
        assert_eq!((dump(applier.w, t.kv), dump(applier.w, t.rev)), before);
        let events = applier.events.take().unwrap();
        assert_eq!(events.iter().map(|(rev, _)| *rev).collect::<Vec<_>>(), [4]);
        // Nothing was written: undoing again changes nothing.
        applier.undo().unwrap();
        assert_eq!((dump(applier.w, t.kv), dump(applier.w, t.rev)), before);
    }
}
