//! The store's side of the space quota: what a request costs, refusing
//! writes while NOSPACE is raised, alarms and status.

use super::txn::{RequestOp, TxnRequest};
use super::Store;
use crate::error::Result;
use crate::quota::{self, Alarm, Quota};
use crate::txn::Durability;

/// Bytes a stored version takes beyond its key and value (its record,
/// revision-log entry and cell headers), for estimating a request's cost.
const VERSION_OVERHEAD: u64 = 64;

/// About how many bytes `req` adds to the database: the larger of its two
/// branches' puts (etcd's quota cost). 0 for a request without puts.
pub(crate) fn cost(req: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                RequestOp::Put(p) => (p.key.len() + p.value.len()) as u64 + VERSION_OVERHEAD,
                _ => 0,
            })
            .sum()
    };
    branch(&req.success).max(branch(&req.failure))
}

/// The store's state at a glance (etcd's endpoint status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The current revision.
    pub revision: i64,
    /// The revision history was compacted to (0 if never).
    pub compacted_revision: i64,
    /// The file's length (it grows ahead of use, in steps).
    pub file_size: u64,
    /// The database's size as the quota counts it: the high-water mark of
    /// its pages (etcd's `dbSize`).
    pub db_size: u64,
    /// Bytes of pages in use (etcd's `dbSizeInUse`); the rest of `db_size`
    /// is free pages that defragmentation gives back.
    pub db_size_in_use: u64,
    /// The quota, `None` if there is none.
    pub quota: Option<u64>,
    /// The raised alarms.
    pub alarms: Vec<Alarm>,
}

impl Store {
    fn quota(&self) -> Quota {
        Quota {
            bytes: self.inner.opts.quota,
        }
    }

    /// Refuses a request that adds `cost` bytes while NOSPACE is raised, and
    /// raises it for a request that would pass the quota.
    pub(crate) fn check_space(&self, cost: u64) -> Result<()> {
        if cost == 0 {
            return Ok(());
        }
        let quota = self.quota();
        let raised = self.raised(Alarm::NoSpace).is_some();
        if raised {
            return Err(quota.refused(Quota::size(self.db())));
        }
        let size = Quota::size(self.db());
        if quota.exceeded_by(size, cost) {
            self.set_alarm(Alarm::NoSpace, Some(cost))?;
            return Err(quota.refused(size));
        }
        Ok(())
    }

    /// The detail `alarm` was raised with, if it is raised.
    fn raised(&self, alarm: Alarm) -> Option<u64> {
        let alarms = self.inner.alarms.lock();
        alarms.iter().find(|(a, _)| *a == alarm).map(|&(_, d)| d)
    }

    fn set_alarm(&self, alarm: Alarm, detail: Option<u64>) -> Result<()> {
        let mut alarms = self.inner.alarms.lock();
        if alarms.iter().any(|(a, _)| *a == alarm) == detail.is_some() {
            return Ok(());
        }
        let mut w = self.db().begin_write()?;
        w.set_durability(Durability::Immediate);
        quota::set(&mut w, alarm, detail)?;
        w.commit()?;
        match detail {
            Some(d) => {
                alarms.push((alarm, d));
                alarms.sort();
            }
            None => alarms.retain(|(a, _)| *a != alarm),
        }
        Ok(())
    }

    /// The raised alarms (etcd's `AlarmList`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::mvcc::{Store, StoreOptions};
    /// use revkv::quota::Alarm;
    /// let store = Store::open(dir.path().join("kv.db"), StoreOptions::new().quota_bytes(256 << 10))?;
    /// let big = vec![0u8; 16 << 10];
    /// let mut i = 0;
    /// let err = loop {
    ///     match store.put(format!("k{i}").as_bytes(), &big) {
    ///         Ok(_) => i += 1,
    ///         Err(e) => break e,
    ///     }
    /// };
    /// assert_eq!(err.kind(), revkv::ErrorKind::NoSpace);
    /// assert_eq!(store.alarms(), [Alarm::NoSpace]);
    /// // Deletes still work; disarming waits until the database is back
    /// // under its quota (compact, then defragment).
    /// store.delete_range(b"k", &revkv::mvcc::prefix_end(b"k"), false)?;
    /// store.compact(store.current_revision()?)?;
    /// store.db().defrag()?;
    /// store.disarm(Alarm::NoSpace)?;
    /// store.put(b"k", b"small")?;
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn alarms(&self) -> Vec<Alarm> {
        self.inner.alarms.lock().iter().map(|&(a, _)| a).collect()
    }

    /// Raises `alarm` (etcd's `AlarmRequest` with `ACTIVATE`), persisted.
    pub fn raise_alarm(&self, alarm: Alarm) -> Result<()> {
        self.set_alarm(alarm, Some(0))
    }

    /// Clears `alarm` (etcd's `AlarmRequest` with `DEACTIVATE`). Clearing
    /// NOSPACE fails with [`crate::Error::NoSpace`] until the database has
    /// room under its quota for the write that raised it.
    pub fn disarm(&self, alarm: Alarm) -> Result<()> {
        if let (Alarm::NoSpace, Some(cost)) = (alarm, self.raised(Alarm::NoSpace)) {
            let quota = self.quota();
            let size = Quota::size(self.db());
            if quota.exceeded_by(size, cost) {
                return Err(quota.refused(size));
            }
        }
        self.set_alarm(alarm, None)
    }

    /// Revisions, sizes, quota and alarms.
    pub fn status(&self) -> Result<Status> {
        let (_, _, revs) = self.snapshot()?;
        let s = self.db().stats();
        Ok(Status {
            revision: revs.current as i64,
            compacted_revision: revs.compacted as i64,
            file_size: s.file_size,
            db_size: Quota::size_of(&s),
            db_size_in_use: s.bytes_in_use,
            quota: self.inner.opts.quota,
            alarms: self.alarms(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{DeleteRangeRequest, PutRequest};

    #[test]
    fn cost_counts_the_larger_branch_of_puts() {
        let put = |k: &str, v: usize| {
            RequestOp::Put(PutRequest {
                key: k.into(),
                value: vec![0; v],
                ..Default::default()
            })
        };
        let del = RequestOp::DeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        });
        let req = TxnRequest {
            compare: vec![],
            success: vec![put("ab", 10), del.clone()],
            failure: vec![put("a", 100)],
        };
        assert_eq!(cost(&req), 101 + VERSION_OVERHEAD);
        let deletes = TxnRequest {
            success: vec![del],
            ..Default::default()
        };
        assert_eq!(cost(&deletes), 0);
    }
}
