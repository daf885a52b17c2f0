//! Requests and responses of the KV API, shaped like etcd's
//! `etcdserverpb` messages, and the checks etcd makes before applying them.

use super::read::RangeEnd;
use super::record::KeyValue;
use crate::error::{Error, Result};

/// Every response carries the store's revision, as etcd's header does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseHeader {
    /// The store's revision when the response was made (after the request,
    /// for writes).
    pub revision: i64,
}

/// Options of a range read, as etcd's `RangeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Read as of this revision; 0 for the current one.
    pub revision: i64,
    /// Return at most this many keys; 0 for no limit.
    pub limit: i64,
    /// Return only the count.
    pub count_only: bool,
    /// Leave values out.
    pub keys_only: bool,
    /// Keep only keys last modified at or after this revision (0: no bound).
    pub min_mod_revision: i64,
    /// Keep only keys last modified at or before this revision (0: no bound).
    pub max_mod_revision: i64,
    /// Keep only keys created at or after this revision (0: no bound).
    pub min_create_revision: i64,
    /// Keep only keys created at or before this revision (0: no bound).
    pub max_create_revision: i64,
}

impl RangeOptions {
    /// Whether `kv` passes the revision filters.
    pub fn keeps(&self, mod_revision: i64, create_revision: i64) -> bool {
        (self.min_mod_revision == 0 || mod_revision >= self.min_mod_revision)
            && (self.max_mod_revision == 0 || mod_revision <= self.max_mod_revision)
            && (self.min_create_revision == 0 || create_revision >= self.min_create_revision)
            && (self.max_create_revision == 0 || create_revision <= self.max_create_revision)
    }
}

/// A range read: `[key, range_end)` with etcd's rules for `range_end`
/// (empty: the key alone; `"\0"`: every key from `key` on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, see the type's docs.
    pub range_end: Vec<u8>,
    /// Options.
    pub options: RangeOptions,
}

/// The answer to a range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store's revision.
    pub header: ResponseHeader,
    /// The keys found (none with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// Keys in the range at the read revision, before filters, as etcd
    /// counts them, with one deliberate difference: when a limit cuts the
    /// answer short (`more` is true), revkv stops reading at the first key
    /// past the limit, so `count` covers only the keys read up to there (at
    /// least the keys returned). etcd reads the whole range to count it,
    /// which makes every page of a paginated list cost as much as the whole
    /// list; ask with `limit` 0 or `count_only` for the exact total.
    pub count: i64,
    /// Whether the limit left keys out.
    pub more: bool,
}

/// A put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Lease id to attach, 0 for none.
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
}

/// The answer to a put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The store's revision after the put.
    pub header: ResponseHeader,
    /// The key-value before the put, if asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// A delete of `[key, range_end)` (etcd's rules for `range_end`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range.
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// The answer to a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// The store's revision after the delete.
    pub header: ResponseHeader,
    /// Keys deleted.
    pub deleted: i64,
    /// The deleted key-values, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a compare looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0 when absent).
    Version(i64),
    /// The key's create revision (0 when absent).
    CreateRevision(i64),
    /// The key's mod revision (0 when absent).
    ModRevision(i64),
    /// The key's value (a compare on the value of an absent key fails).
    Value(Vec<u8>),
    /// The key's lease (0 when absent).
    Lease(i64),
}

/// How a compare compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One condition of a transaction, as etcd's `Compare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// Compare every key of `[key, range_end)` (empty: the key alone).
    pub range_end: Vec<u8>,
    /// The field and the operand.
    pub target: CompareTarget,
    /// The comparison.
    pub result: CompareResult,
}

impl Compare {
    /// A compare of one key.
    pub fn new(key: impl Into<Vec<u8>>, result: CompareResult, target: CompareTarget) -> Compare {
        Compare {
            key: key.into(),
            range_end: Vec::new(),
            target,
            result,
        }
    }

    /// etcd's `compareKV`; `kv` None is an absent key, compared as zeros
    /// except for values, where the compare fails.
    pub(crate) fn holds(&self, kv: Option<&KeyValue>) -> bool {
        let ord = match (&self.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
            (CompareTarget::Version(n), kv) => kv.map_or(0, |k| k.version).cmp(n),
            (CompareTarget::CreateRevision(n), kv) => kv.map_or(0, |k| k.create_revision).cmp(n),
            (CompareTarget::ModRevision(n), kv) => kv.map_or(0, |k| k.mod_revision).cmp(n),
            (CompareTarget::Lease(n), kv) => kv.map_or(0, |k| k.lease).cmp(n),
        };
        match self.result {
            CompareResult::Equal => ord.is_eq(),
            CompareResult::NotEqual => ord.is_ne(),
            CompareResult::Less => ord.is_lt(),
            CompareResult::Greater => ord.is_gt(),
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    /// A range read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
}

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    /// From a range read.
    Range(RangeResponse),
    /// From a put.
    Put(PutResponse),
    /// From a delete.
    DeleteRange(DeleteRangeResponse),
}

/// A transaction: if every compare holds, the success operations run,
/// otherwise the failure operations; all at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Conditions, all of which must hold.
    pub compare: Vec<Compare>,
    /// Operations when they hold.
    pub success: Vec<RequestOp>,
    /// Operations otherwise.
    pub failure: Vec<RequestOp>,
}

/// The answer to a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// The store's revision after the transaction.
    pub header: ResponseHeader,
    /// Whether the compares held.
    pub succeeded: bool,
    /// One response per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

impl TxnRequest {
    /// Whether neither branch writes: such a transaction runs on a snapshot
    /// (after any parked writes are committed, see `Store`).
    pub(crate) fn is_read_only(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .all(|op| matches!(op, RequestOp::Range(_)))
    }
}

/// The limits a request is checked against before it is applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_value: usize,
    pub max_request: usize,
    pub max_ops: usize,
    pub max_key: usize,
}

/// etcd's checks: operation count, request size, empty keys, value size,
/// key size, and keys written twice in one branch (`checkIntervals`).
pub(crate) fn validate(req: &TxnRequest, limits: &Limits) -> Result<()> {
    let ops = req.success.len().max(req.failure.len());
    if ops > limits.max_ops {
        return Err(Error::TooManyOps {
            ops,
            max: limits.max_ops,
        });
    }
    let mut size = 0usize;
    for c in &req.compare {
        size += c.key.len() + c.range_end.len() + 16;
        if let CompareTarget::Value(v) = &c.target {
            size += v.len();
        }
        check_key(&c.key, limits)?;
    }
    for branch in [&req.success, &req.failure] {
        for op in branch {
            size += match op {
                RequestOp::Range(r) => {
                    check_key(&r.key, limits)?;
                    r.key.len() + r.range_end.len()
                }
                RequestOp::Put(p) => {
                    check_key(&p.key, limits)?;
                    if p.value.len() > limits.max_value {
                        return Err(Error::ValueTooLarge {
                            len: p.value.len(),
                            max: limits.max_value,
                        });
                    }
                    p.key.len() + p.value.len()
                }
                RequestOp::DeleteRange(d) => {
                    check_key(&d.key, limits)?;
                    d.key.len() + d.range_end.len()
                }
            } + 8;
        }
        check_intervals(branch)?;
    }
    if size > limits.max_request {
        return Err(Error::RequestTooLarge {
            size,
            max: limits.max_request,
        });
    }
    Ok(())
}

fn check_key(key: &[u8], limits: &Limits) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    let encoded = super::keys::escaped_len(key) + super::keys::REV_LEN;
    if encoded > limits.max_key {
        // Say it in the user's terms: how long a key without zero bytes may be.
        let max = limits.max_key - 2 - super::keys::REV_LEN;
        return Err(Error::KeyTooLarge {
            len: key.len().max(max + 1),
            max,
        });
    }
    Ok(())
}

/// A put's key may appear only once among a branch's puts, and not inside
/// any of its delete ranges.
fn check_intervals(ops: &[RequestOp]) -> Result<()> {
    let mut puts: Vec<&[u8]> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::Put(p) => Some(p.key.as_slice()),
            _ => None,
        })
        .collect();
    puts.sort_unstable();
    if let Some(w) = puts.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::DuplicateKey {
            key: String::from_utf8_lossy(w[0]).into_owned(),
        });
    }
    for op in ops {
        if let RequestOp::DeleteRange(d) = op {
            let end = RangeEnd::from_etcd(&d.range_end);
            if let Some(k) = puts.iter().find(|k| end.contains(&d.key, k)) {
                return Err(Error::DuplicateKey {
                    key: String::from_utf8_lossy(k).into_owned(),
                });
            }
        }
    }
    Ok(())
}
