//! The database file: its lock and every write and sync made to it.
//!
//! All changes to the file go through [`DbFile`], which makes them easy to
//! observe: with the `fault-injection` feature a test can record every write
//! and sync, or fail any one of them, and so replay power loss at any point.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
#[cfg(feature = "fault-injection")]
use std::sync::Arc;

use crate::error::{Error, Result};

/// Largest piece of a write handed to the kernel in one call: one memory
/// page.
///
/// Linux (ext4 and XFS since 6.x) caches a file in folios as large as the
/// write that filled them, up to 2 MiB, and a later write of one 4 KiB page
/// into such a folio costs the whole folio: the write walks every block of
/// it (`ext4_block_write_begin`), and writeback sends far more than the
/// page to the disk. After a bulk load written in 8 MiB calls, a durable
/// single-key commit took 0.63 ms instead of 0.46 ms, a third of it in that
/// walk; with 64 KiB pieces, 100k read-compare-write updates after a load
/// sent 2.84 GB to the disk for 0.84 GB of writes, and with one-page pieces
/// 0.77 GB for 0.77 GB (`/proc/PID/io`, docs/benchmarks.md). A
/// copy-on-write tree rewrites single pages all its life, so every folio is
/// kept at one page; a bulk load pays for the extra calls (about a tenth
/// of its time at 1M keys).
const WRITE_PIECE: usize = 4 << 10;

/// Watches and may veto every change revkv makes to a database file.
///
/// Only available with the `fault-injection` feature; tests use it to record
/// writes for power-loss replay and to fail chosen writes or syncs.
#[cfg(feature = "fault-injection")]
pub trait IoObserver: Send + Sync {
    /// Called before `data` is written at `offset`; an error fails the write.
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Called before the file's data is synced; an error fails the sync.
    fn sync(&self) -> io::Result<()>;
    /// Called before the file's length is set; an error fails the call.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The open database file.
pub struct DbFile {
    file: File,
    path: PathBuf,
    #[cfg(feature = "fault-injection")]
    observer: Option<Arc<dyn IoObserver>>,
}

impl DbFile {
    /// Opens (or creates) the file and takes its lock: exclusive for a
    /// writer, shared for read-only handles. A held lock is retried until
    /// `lock_timeout` has passed (zero: an error at once), as bbolt's
    /// `Options.Timeout` does: the lock can be held for a moment by a
    /// process that forked while another handle had the file open.
    pub fn open(
        path: &Path,
        read_only: bool,
        create: bool,
        lock_timeout: std::time::Duration,
    ) -> Result<DbFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .create(create && !read_only)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let give_up = std::time::Instant::now() + lock_timeout;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            let locked = if read_only {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match locked {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                    // Polling, as flock has no wait with a deadline.
                    std::thread::sleep(pause.min(give_up - std::time::Instant::now()));
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                        reason: if read_only {
                            "a writer has it open".into()
                        } else {
                            "another handle has it open".into()
                        },
                    })
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e))
                }
            }
        }
        Ok(DbFile {
            file,
            path: path.to_path_buf(),
            #[cfg(feature = "fault-injection")]
            observer: None,
        })
    }

    #[cfg(feature = "fault-injection")]
    pub fn set_observer(&mut self, observer: Option<Arc<dyn IoObserver>>) {
        self.observer = observer;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw(&self) -> &File {
        &self.file
    }

    pub fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(format!("reading the length of {}", self.path.display()), e))
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(o) = &self.observer {
            o.write(offset, data)?;
        }
        // Handed to the kernel in pieces: see WRITE_PIECE.
        let mut at = offset;
        for piece in data.chunks(WRITE_PIECE) {
            self.file.write_all_at(piece, at)?;
            at += piece.len() as u64;
        }
        Ok(())
    }

    /// Writes `pages`, neighbours in the file, from `offset` on: one change
    /// for an observer, handed to the kernel page by page (see
    /// [`WRITE_PIECE`]) straight from the callers' buffers.
    pub fn write_run(&self, pages: &[&[u8]], offset: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(o) = &self.observer {
            // Tests only: the observer sees the run as one write, as a
            // contiguous buffer.
            o.write(offset, &pages.concat())?;
        }
        let mut at = offset;
        for page in pages {
            for piece in page.chunks(WRITE_PIECE) {
                self.file.write_all_at(piece, at)?;
                at += piece.len() as u64;
            }
        }
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(o) = &self.observer {
            o.sync()?;
        }
        self.file.sync_data()
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(o) = &self.observer {
            o.set_len(len)?;
        }
        self.file.set_len(len)
    }
}
