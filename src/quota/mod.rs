//! The space quota and its alarm, as etcd has them.
//!
//! A database may not grow past its quota (etcd's `--quota-backend-bytes`,
//! 2 GiB by default). The write that would take it past raises the NOSPACE
//! alarm and fails with etcd's "database space exceeded"; while the alarm is
//! raised every request that adds data fails the same way, and everything
//! else (reads, streams, deletes, compaction, defragmentation) goes on, so an
//! operator can compact, defragment and disarm. Alarms are kept in the
//! database's own `alarm` table (etcd's `alarm` bucket), so they survive
//! reopening. NOSPACE records the bytes the refused write needed; disarming
//! it succeeds only once the database has room for that write again (etcd
//! disarms unconditionally and lets the next write raise it again).
//!
//! The size compared with the quota is the database's allocated size: its
//! high-water mark times the page size, which is what bbolt reports as the
//! size of its file (revkv's file itself grows ahead in steps). Compaction
//! frees pages inside that size; only defragmentation gives them back.

use std::fmt;

use crate::error::{Error, Result};
use crate::txn::{Db, ReadTxn, Stats, TxnRead, WriteTxn};

/// etcd's default quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// The table alarms are kept in.
pub(crate) const ALARM_TABLE: &str = "alarm";

/// An alarm, named as etcd names it (`AlarmType` in etcd's API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Alarm {
    /// The database reached its space quota: writes that add data are
    /// refused until it is disarmed.
    NoSpace,
    /// The data was found corrupt (raised by the operator's tooling; revkv
    /// itself reports corruption as errors).
    Corrupt,
}

impl Alarm {
    /// etcd's name: `NOSPACE` or `CORRUPT`.
    pub fn name(self) -> &'static str {
        match self {
            Alarm::NoSpace => "NOSPACE",
            Alarm::Corrupt => "CORRUPT",
        }
    }

    pub(crate) fn from_name(name: &[u8]) -> Option<Alarm> {
        match name {
            b"NOSPACE" => Some(Alarm::NoSpace),
            b"CORRUPT" => Some(Alarm::Corrupt),
            _ => None,
        }
    }
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A space quota: `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub bytes: Option<u64>,
}

impl Quota {
    /// The database's size as the quota counts it (every write asks: this
    /// reads one figure, not the whole of [`Db::stats`]).
    pub fn size(db: &Db) -> u64 {
        db.allocated_bytes()
    }

    /// The same, from stats already taken.
    pub fn size_of(s: &Stats) -> u64 {
        s.allocated_pages * u64::from(s.page_size)
    }

    /// The error for a write refused at `size`.
    pub fn refused(&self, size: u64) -> Error {
        Error::NoSpace {
            size,
            quota: self.bytes.unwrap_or(u64::MAX),
        }
    }

    /// Whether adding about `cost` bytes to a database of `size` bytes would
    /// pass the quota (etcd: `size + cost > quota`).
    pub fn exceeded_by(&self, size: u64, cost: u64) -> bool {
        self.bytes.is_some_and(|q| size.saturating_add(cost) > q)
    }
}

/// The alarms raised in the snapshot `txn` sees, in order, each with the
/// number it was raised with (for NOSPACE: the bytes the refused write
/// needed).
pub(crate) fn load(txn: &ReadTxn) -> Result<Vec<(Alarm, u64)>> {
    let t = match txn.open_table(ALARM_TABLE) {
        Ok(t) => t,
        Err(e) if e.kind() == crate::ErrorKind::TableNotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut alarms = Vec::new();
    for entry in txn.range(t, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)? {
        let (name, value) = entry?;
        let bad = || {
            Error::CorruptFile(format!(
                "alarm {:?} in the alarm table is unknown or malformed",
                String::from_utf8_lossy(name)
            ))
        };
        let alarm = Alarm::from_name(name).ok_or_else(bad)?;
        let detail = u64::from_be_bytes(value.try_into().map_err(|_| bad())?);
        alarms.push((alarm, detail));
    }
    Ok(alarms)
}

/// Raises `alarm` with `detail` (`Some`) or clears it (`None`) in the write
/// transaction `w`.
pub(crate) fn set(w: &mut WriteTxn, alarm: Alarm, detail: Option<u64>) -> Result<()> {
    let t = w.open_table(ALARM_TABLE)?;
    if let Some(d) = detail {
        w.insert(t, alarm.name().as_bytes(), &d.to_be_bytes())?;
    } else {
        w.remove(t, alarm.name().as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in [Alarm::NoSpace, Alarm::Corrupt] {
            assert_eq!(Alarm::from_name(a.name().as_bytes()), Some(a));
        }
        assert_eq!(Alarm::from_name(b"nospace"), None);
    }

    #[test]
    fn exceeded_only_past_the_quota() {
        let q = Quota { bytes: Some(100) };
        assert!(!q.exceeded_by(60, 40));
        assert!(q.exceeded_by(60, 41));
        assert!(!Quota { bytes: None }.exceeded_by(u64::MAX, u64::MAX));
    }
}
