//! Test support (feature `fault-injection`): a file layer that records every
//! change revkv makes to a database file and can fail any one of them.
//!
//! Power-loss tests record a workload's operations, then rebuild the images
//! a power failure at each point could have left on disk (see
//! [`crash_image`]) and open them.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

pub use crate::storage::file::IoObserver;

/// One change made to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoOp {
    /// `data` written at `offset`.
    Write {
        /// Byte offset in the file.
        offset: u64,
        /// The bytes written.
        data: Vec<u8>,
    },
    /// The file's data synced to stable storage.
    Sync,
    /// The file's length set.
    SetLen(u64),
    /// A marker the test adds (for example "commit N acknowledged").
    Mark(u64),
}

/// Records every operation; fails the operation with a given index (and,
/// optionally, every one after it) with an I/O error.
#[derive(Default)]
pub struct RecordingIo {
    ops: Mutex<Vec<IoOp>>,
    fail_at: AtomicUsize,
    fail_after: AtomicBool,
    counter: AtomicUsize,
}

impl RecordingIo {
    /// Records and never fails.
    pub fn new() -> RecordingIo {
        RecordingIo {
            fail_at: AtomicUsize::new(usize::MAX),
            ..Default::default()
        }
    }

    /// Fails the `n`th write, sync or set-length call (counting from 0), and
    /// with `sticky` every later one too (a disk that stays broken).
    pub fn fail_at(&self, n: usize, sticky: bool) {
        self.fail_at.store(n, Ordering::SeqCst);
        self.fail_after.store(sticky, Ordering::SeqCst);
    }

    /// Stops failing.
    pub fn heal(&self) {
        self.fail_at.store(usize::MAX, Ordering::SeqCst);
    }

    /// Adds a marker to the log.
    pub fn mark(&self, tag: u64) {
        self.ops.lock().push(IoOp::Mark(tag));
    }

    /// The operations so far.
    pub fn ops(&self) -> Vec<IoOp> {
        self.ops.lock().clone()
    }

    /// Write, sync and set-length calls so far (markers excluded).
    pub fn calls(&self) -> usize {
        self.counter.load(Ordering::SeqCst)
    }

    fn step(&self, op: IoOp) -> io::Result<()> {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let at = self.fail_at.load(Ordering::SeqCst);
        if n == at || (self.fail_after.load(Ordering::SeqCst) && n > at) {
            return Err(io::Error::other(format!("injected fault at operation {n}")));
        }
        self.ops.lock().push(op);
        Ok(())
    }
}

impl IoObserver for RecordingIo {
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.step(IoOp::Write {
            offset,
            data: data.to_vec(),
        })
    }
    fn sync(&self) -> io::Result<()> {
        self.step(IoOp::Sync)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.step(IoOp::SetLen(len))
    }
}

fn apply(image: &mut Vec<u8>, op: &IoOp) {
    match op {
        IoOp::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*offset as usize..end].copy_from_slice(data);
        }
        IoOp::SetLen(len) => image.resize(*len as usize, 0),
        IoOp::Sync | IoOp::Mark(_) => {}
    }
}

/// The file a power loss could leave after the first `upto` operations of
/// `ops` were issued: everything up to the last sync among them is on disk;
/// of the writes after it, those whose bit is set in `keep` (bit i for the
/// i-th unsynced write, cycling) reached the disk, and the write numbered
/// `torn` (if any) reached it only in part: its first `torn_bytes` bytes.
pub fn crash_image(ops: &[IoOp], upto: usize, keep: u64, torn: Option<(usize, usize)>) -> Vec<u8> {
    let ops = &ops[..upto];
    let last_sync = ops
        .iter()
        .rposition(|o| *o == IoOp::Sync)
        .map_or(0, |i| i + 1);
    let mut image = Vec::new();
    for op in &ops[..last_sync] {
        apply(&mut image, op);
    }
    let mut i = 0;
    for op in &ops[last_sync..] {
        match op {
            IoOp::Write { offset, data } => {
                if let Some((t, bytes)) = torn.filter(|&(t, _)| t == i) {
                    let _ = t;
                    let cut = bytes.min(data.len());
                    apply(
                        &mut image,
                        &IoOp::Write {
                            offset: *offset,
                            data: data[..cut].to_vec(),
                        },
                    );
                } else if keep >> (i % 64) & 1 == 1 {
                    apply(&mut image, op);
                }
                i += 1;
            }
            // A length change is metadata; assume it may or may not persist
            // like a write, but never shrink below what synced data needs.
            IoOp::SetLen(_) => apply(&mut image, op),
            _ => {}
        }
    }
    image
}

/// Number of writes issued after the last sync among the first `upto`
/// operations.
pub fn unsynced_writes(ops: &[IoOp], upto: usize) -> usize {
    let ops = &ops[..upto];
    let last_sync = ops
        .iter()
        .rposition(|o| *o == IoOp::Sync)
        .map_or(0, |i| i + 1);
    ops[last_sync..]
        .iter()
        .filter(|o| matches!(o, IoOp::Write { .. }))
        .count()
}

/// A seeded xorshift generator for tests that need repeatable randomness
/// and print their seed when they fail: the same sequence on every
/// platform, with no dependency.
///
/// ```
/// use revkv::testing::Xorshift;
/// let (mut a, mut b) = (Xorshift::new(7), Xorshift::new(7));
/// assert_eq!(a.next(), b.next());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator starting from `seed`; a zero seed (which xorshift would
    /// never leave) is replaced by one.
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed.max(1))
    }

    /// The next number of the sequence.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (zero when `n` is zero).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
