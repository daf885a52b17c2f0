//! The value stored for each version of a key in the `kv` table, and the
//! public key-value type.
//!
//! Record layout: `flags u8 | sub_revision u32 | create_revision u64 |
//! version u64 | lease i64 | value` (little-endian). Flags bit 0 marks a
//! deletion (a tombstone), which has no value.

use crate::error::{Error, Result};

const FLAG_TOMBSTONE: u8 = 1;
/// Bytes before the value.
pub const RECORD_HEADER: usize = 29;

/// One version of a key, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty for keys-only reads).
    pub value: Vec<u8>,
    /// Revision of the put that created the key (after its last deletion).
    pub create_revision: i64,
    /// Revision of the last put to the key.
    pub mod_revision: i64,
    /// Number of puts since the key was created: 1 for a new key.
    pub version: i64,
    /// The lease attached to the key, 0 for none.
    pub lease: i64,
}

/// A decoded record, borrowing its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub tombstone: bool,
    pub sub: u32,
    pub create: u64,
    pub version: u64,
    pub lease: i64,
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    pub fn decode(b: &'a [u8]) -> Result<Record<'a>> {
        if b.len() < RECORD_HEADER || b[0] & !FLAG_TOMBSTONE != 0 {
            return Err(Error::CorruptFile(format!(
                "malformed revision record of {} bytes",
                b.len()
            )));
        }
        Ok(Record {
            tombstone: b[0] & FLAG_TOMBSTONE != 0,
            sub: u32::from_le_bytes(b[1..5].try_into().expect("4 bytes")),
            create: u64::from_le_bytes(b[5..13].try_into().expect("8 bytes")),
            version: u64::from_le_bytes(b[13..21].try_into().expect("8 bytes")),
            lease: i64::from_le_bytes(b[21..29].try_into().expect("8 bytes")),
            value: &b[RECORD_HEADER..],
        })
    }

    /// Sets the create revision and version of an encoded record, for a
    /// writer that encodes a put before it has looked at the key's newest
    /// version (see `Applier::place_new_version`).
    pub fn set_create_and_version(encoded: &mut [u8], create: u64, version: u64) {
        encoded[5..13].copy_from_slice(&create.to_le_bytes());
        encoded[13..21].copy_from_slice(&version.to_le_bytes());
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(if self.tombstone { FLAG_TOMBSTONE } else { 0 });
        out.extend_from_slice(&self.sub.to_le_bytes());
        out.extend_from_slice(&self.create.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.lease.to_le_bytes());
        out.extend_from_slice(self.value);
    }

    /// The public key-value of this record at `mod_revision`. An owned key
    /// is moved in, not copied again.
    pub fn to_kv(self, key: impl Into<Vec<u8>>, mod_revision: u64, keys_only: bool) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: if keys_only {
                Vec::new()
            } else {
                self.value.to_vec()
            },
            create_revision: self.create as i64,
            mod_revision: mod_revision as i64,
            version: self.version as i64,
            lease: self.lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Record {
            tombstone: false,
            sub: 3,
            create: 7,
            version: 2,
            lease: -5,
            value: b"v",
        };
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        assert_eq!(Record::decode(&buf).unwrap(), r);
        assert!(Record::decode(&buf[..10]).is_err());
    }
}
