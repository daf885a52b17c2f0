//! A plain, obviously correct reference model of etcd's v3 KV semantics:
//! the whole history as a list of revisions, every read a replay. Slow by
//! design; only for tests and fuzzing. The property tests in tests/ and the
//! `ops` fuzz target both check the store against it.

use std::collections::BTreeMap;

use crate::mvcc::{
    Compare, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use crate::ErrorKind;

/// One change in a revision: a put (Some value) or a delete (None).
#[derive(Debug, Clone)]
pub struct Change {
    /// The key changed.
    pub key: Vec<u8>,
    /// The new value, or None for a deletion.
    pub value: Option<Vec<u8>>,
    /// The lease of a put.
    pub lease: i64,
}

/// The whole history of a store, replayed for every read.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Revision 2, 3, ...: the changes each write made.
    pub history: Vec<(i64, Vec<Change>)>,
    /// The current revision (1 for a new store).
    pub current: i64,
    /// The compacted revision (0: never compacted).
    pub compacted: i64,
    /// The largest value a put may carry.
    pub max_value: usize,
    /// The largest request.
    pub max_request: usize,
    /// The most operations in one branch of a transaction.
    pub max_ops: usize,
}

/// Every live key's key-value at one revision.
pub type State = BTreeMap<Vec<u8>, KeyValue>;

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        e => key >= start && key < e,
    }
}

fn apply(state: &mut State, rev: i64, c: &Change) {
    match &c.value {
        Some(v) => {
            let (create, version) = match state.get(&c.key) {
                Some(kv) => (kv.create_revision, kv.version + 1),
                None => (rev, 1),
            };
            state.insert(
                c.key.clone(),
                KeyValue {
                    key: c.key.clone(),
                    value: v.clone(),
                    create_revision: create,
                    mod_revision: rev,
                    version,
                    lease: c.lease,
                },
            );
        }
        None => {
            state.remove(&c.key);
        }
    }
}

impl Model {
    /// A new store: revision 1, etcd's default limits.
    pub fn new() -> Model {
        Model {
            history: vec![],
            current: 1,
            compacted: 0,
            max_value: 1 << 20,
            max_request: 3 << 19,
            max_ops: 128,
        }
    }

    /// The live keys as of revision `rev`.
    pub fn state_at(&self, rev: i64) -> State {
        let mut s = State::new();
        for (r, changes) in &self.history {
            if *r > rev {
                break;
            }
            for c in changes {
                apply(&mut s, *r, c);
            }
        }
        s
    }

    fn check_rev(&self, requested: i64) -> Result<i64, ErrorKind> {
        if requested <= 0 {
            return Ok(self.current);
        }
        if requested > self.current {
            return Err(ErrorKind::FutureRevision);
        }
        if requested < self.compacted {
            return Err(ErrorKind::Compacted);
        }
        Ok(requested)
    }

    fn range_in(state: &State, req: &RangeRequest, header: i64) -> RangeResponse {
        let o = &req.options;
        let mut resp = RangeResponse {
            header: ResponseHeader { revision: header },
            ..Default::default()
        };
        let mut matched = 0;
        for (k, kv) in state {
            if !in_range(k, &req.key, &req.range_end) {
                continue;
            }
            if o.count_only || !o.keeps(kv.mod_revision, kv.create_revision) {
                resp.count += 1;
                continue;
            }
            matched += 1;
            if o.limit > 0 && matched > o.limit {
                // revkv's documented difference from etcd: stop counting at
                // the first key past the limit.
                resp.more = true;
                break;
            }
            resp.count += 1;
            let mut kv = kv.clone();
            if o.keys_only {
                kv.value.clear();
            }
            resp.kvs.push(kv);
        }
        resp
    }

    /// A range read, with etcd's errors.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, ErrorKind> {
        if req.key.is_empty() {
            return Err(ErrorKind::EmptyKey);
        }
        let at = self.check_rev(req.options.revision)?;
        Ok(Self::range_in(&self.state_at(at), req, self.current))
    }

    fn validate(&self, req: &TxnRequest) -> Result<(), ErrorKind> {
        if req.success.len().max(req.failure.len()) > self.max_ops {
            return Err(ErrorKind::TooManyOps);
        }
        let mut size = 0;
        for c in &req.compare {
            size += c.key.len() + c.range_end.len() + 16;
            if let CompareTarget::Value(v) = &c.target {
                size += v.len();
            }
            if c.key.is_empty() {
                return Err(ErrorKind::EmptyKey);
            }
        }
        for branch in [&req.success, &req.failure] {
            let mut puts: Vec<&Vec<u8>> = vec![];
            for op in branch {
                match op {
                    RequestOp::Range(r) => {
                        if r.key.is_empty() {
                            return Err(ErrorKind::EmptyKey);
                        }
                        size += r.key.len() + r.range_end.len() + 8;
                    }
                    RequestOp::Put(p) => {
                        if p.key.is_empty() {
                            return Err(ErrorKind::EmptyKey);
                        }
                        if p.value.len() > self.max_value {
                            return Err(ErrorKind::ValueTooLarge);
                        }
                        size += p.key.len() + p.value.len() + 8;
                        puts.push(&p.key);
                    }
                    RequestOp::DeleteRange(d) => {
                        if d.key.is_empty() {
                            return Err(ErrorKind::EmptyKey);
                        }
                        size += d.key.len() + d.range_end.len() + 8;
                    }
                }
            }
            for (i, a) in puts.iter().enumerate() {
                if puts[i + 1..].contains(a) {
                    return Err(ErrorKind::DuplicateKey);
                }
            }
            for op in branch {
                if let RequestOp::DeleteRange(d) = op {
                    if puts.iter().any(|k| in_range(k, &d.key, &d.range_end)) {
                        return Err(ErrorKind::DuplicateKey);
                    }
                }
            }
        }
        if size > self.max_request {
            return Err(ErrorKind::RequestTooLarge);
        }
        Ok(())
    }

    fn compare_holds(state: &State, c: &Compare) -> bool {
        let kvs: Vec<&KeyValue> = state
            .values()
            .filter(|kv| in_range(&kv.key, &c.key, &c.range_end))
            .collect();
        if kvs.is_empty() {
            return c.holds_for(None);
        }
        kvs.iter().all(|kv| c.holds_for(Some(kv)))
    }

    /// A transaction: validation, compares, then one branch at one revision.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, ErrorKind> {
        self.validate(req)?;
        let base = self.state_at(self.current);
        let succeeded = req.compare.iter().all(|c| Self::compare_holds(&base, c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        for op in ops {
            if let RequestOp::Range(r) = op {
                self.check_rev(r.options.revision)?;
            }
        }
        let rev = self.current + 1;
        let mut working = base;
        let mut changes = Vec::new();
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let state = if r.options.revision > 0 {
                        self.state_at(r.options.revision)
                    } else {
                        working.clone()
                    };
                    ResponseOp::Range(Self::range_in(&state, r, 0))
                }
                RequestOp::Put(p) => {
                    let prev = working.get(&p.key).cloned();
                    let c = Change {
                        key: p.key.clone(),
                        value: Some(p.value.clone()),
                        lease: p.lease,
                    };
                    apply(&mut working, rev, &c);
                    changes.push(c);
                    ResponseOp::Put(crate::mvcc::PutResponse {
                        header: ResponseHeader::default(),
                        prev_kv: if p.prev_kv { prev } else { None },
                    })
                }
                RequestOp::DeleteRange(d) => {
                    let victims: Vec<KeyValue> = working
                        .values()
                        .filter(|kv| in_range(&kv.key, &d.key, &d.range_end))
                        .cloned()
                        .collect();
                    for kv in &victims {
                        let c = Change {
                            key: kv.key.clone(),
                            value: None,
                            lease: 0,
                        };
                        apply(&mut working, rev, &c);
                        changes.push(c);
                    }
                    ResponseOp::DeleteRange(DeleteRangeResponse {
                        header: ResponseHeader::default(),
                        deleted: victims.len() as i64,
                        prev_kvs: if d.prev_kv { victims } else { vec![] },
                    })
                }
            });
        }
        if !changes.is_empty() {
            self.history.push((rev, changes));
            self.current = rev;
        }
        for r in &mut responses {
            match r {
                ResponseOp::Range(x) => x.header.revision = self.current,
                ResponseOp::Put(x) => x.header.revision = self.current,
                ResponseOp::DeleteRange(x) => x.header.revision = self.current,
            }
        }
        Ok(TxnResponse {
            header: ResponseHeader {
                revision: self.current,
            },
            succeeded,
            responses,
        })
    }

    /// A put, as a one-operation transaction, answered as `Store::put_with`.
    pub fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        prev_kv: bool,
    ) -> Result<PutResponse, ErrorKind> {
        let r = self.txn(&TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Put(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
                prev_kv,
            })],
            failure: vec![],
        })?;
        match r.responses.into_iter().next() {
            Some(ResponseOp::Put(p)) => Ok(p),
            other => panic!("the model answered a put with {other:?}"),
        }
    }

    /// A delete, as a one-operation transaction, answered as
    /// `Store::delete_range`.
    pub fn delete_range(
        &mut self,
        key: &[u8],
        end: &[u8],
        prev_kv: bool,
    ) -> Result<DeleteRangeResponse, ErrorKind> {
        let r = self.txn(&TxnRequest {
            compare: vec![],
            success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                range_end: end.to_vec(),
                prev_kv,
            })],
            failure: vec![],
        })?;
        match r.responses.into_iter().next() {
            Some(ResponseOp::DeleteRange(d)) => Ok(d),
            other => panic!("the model answered a delete with {other:?}"),
        }
    }

    /// How many versions a store compacted at `self.compacted` still holds:
    /// every version after the compacted revision, plus each key's newest
    /// version at or below it unless that is a deletion.
    pub fn stored_versions(&self) -> u64 {
        let mut newest_below: BTreeMap<&[u8], bool> = BTreeMap::new();
        let mut after = 0;
        for (rev, changes) in &self.history {
            for c in changes {
                if *rev > self.compacted {
                    after += 1;
                } else {
                    newest_below.insert(&c.key, c.value.is_some());
                }
            }
        }
        after + newest_below.values().filter(|live| **live).count() as u64
    }

    /// The history hash at `rev` (0: current), computed from the history
    /// the way `Store::hash_kv` documents it: every change at or below
    /// `rev` in revision and sub-revision order, except that at or below
    /// the compacted revision only each key's newest change counts, and
    /// only if it is a put. Each change hashes its revision, its key and
    /// its stored record (`mvcc::record`'s layout: a deletion's record is
    /// its flag and sub-revision, the rest zero).
    pub fn hash_kv(&self, rev: i64) -> Result<u32, ErrorKind> {
        let at = self.check_rev(rev)?;
        // Each key's newest change at or below the compacted revision.
        let mut newest: BTreeMap<&[u8], i64> = BTreeMap::new();
        for (r, changes) in self
            .history
            .iter()
            .take_while(|(r, _)| *r <= self.compacted)
        {
            for c in changes {
                newest.insert(&c.key, *r);
            }
        }
        let mut h = crc32fast::Hasher::new();
        let mut state = State::new();
        for (r, changes) in self.history.iter().take_while(|(r, _)| *r <= at) {
            for (sub, c) in changes.iter().enumerate() {
                let (create, version) = match (&c.value, state.get(&c.key)) {
                    (None, _) => (0, 0),
                    (Some(_), Some(kv)) => (kv.create_revision, kv.version + 1),
                    (Some(_), None) => (*r, 1),
                };
                apply(&mut state, *r, c);
                let kept =
                    *r > self.compacted || (c.value.is_some() && newest.get(&c.key[..]) == Some(r));
                if !kept {
                    continue;
                }
                h.update(&(*r as u64).to_be_bytes());
                h.update(&(sub as u32).to_be_bytes());
                h.update(&(c.key.len() as u32).to_be_bytes());
                h.update(&c.key);
                h.update(&[u8::from(c.value.is_none())]);
                h.update(&(sub as u32).to_le_bytes());
                h.update(&(create as u64).to_le_bytes());
                h.update(&(version as u64).to_le_bytes());
                let lease = if c.value.is_some() { c.lease } else { 0 };
                h.update(&lease.to_le_bytes());
                h.update(c.value.as_deref().unwrap_or_default());
            }
        }
        Ok(h.finalize())
    }

    /// Compaction's revision checks; the history itself is kept.
    pub fn compact(&mut self, rev: i64) -> Result<(), ErrorKind> {
        if rev <= self.compacted {
            return Err(ErrorKind::Compacted);
        }
        if rev > self.current {
            return Err(ErrorKind::FutureRevision);
        }
        self.compacted = rev;
        Ok(())
    }
}

impl Model {
    /// The changes to keys in `[key, end)` (etcd's rules for `end`) from
    /// revision `from` on, in revision then sub-revision order, each with
    /// the key's previous version: what a watcher from `from` receives.
    pub fn events(
        &self,
        from: i64,
        key: &[u8],
        end: &[u8],
    ) -> Vec<(crate::mvcc::EventKind, KeyValue, Option<KeyValue>)> {
        let mut state = State::new();
        let mut out = Vec::new();
        for (rev, changes) in &self.history {
            for c in changes {
                let prev = state.get(&c.key).cloned();
                apply(&mut state, *rev, c);
                if *rev < from || !in_range(&c.key, key, end) {
                    continue;
                }
                match &c.value {
                    Some(_) => out.push((crate::mvcc::EventKind::Put, state[&c.key].clone(), prev)),
                    None => out.push((
                        crate::mvcc::EventKind::Delete,
                        KeyValue {
                            key: c.key.clone(),
                            mod_revision: *rev,
                            ..Default::default()
                        },
                        prev,
                    )),
                }
            }
        }
        out
    }
}

/// etcd's compareKV, restated for the model.
pub trait HoldsFor {
    /// Whether the compare holds for `kv` (None: the key is absent).
    fn holds_for(&self, kv: Option<&KeyValue>) -> bool;
}

impl HoldsFor for Compare {
    fn holds_for(&self, kv: Option<&KeyValue>) -> bool {
        use crate::mvcc::CompareResult::*;
        let ord = match (&self.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(kv)) => kv.value.cmp(v),
            (CompareTarget::Version(n), kv) => kv.map_or(0, |k| k.version).cmp(n),
            (CompareTarget::CreateRevision(n), kv) => kv.map_or(0, |k| k.create_revision).cmp(n),
            (CompareTarget::ModRevision(n), kv) => kv.map_or(0, |k| k.mod_revision).cmp(n),
            (CompareTarget::Lease(n), kv) => kv.map_or(0, |k| k.lease).cmp(n),
        };
        match self.result {
            Equal => ord.is_eq(),
            NotEqual => ord.is_ne(),
            Less => ord.is_lt(),
            Greater => ord.is_gt(),
        }
    }
}
