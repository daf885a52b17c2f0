//! The read-only memory mapping of the database file, with address space
//! reserved ahead of the file so that growth rarely needs a new mapping.
//!
//! This module and `unwritten` hold all of the crate's `unsafe` code (the
//! writer in `txn` calls `unwritten`'s two unsafe functions, under the
//! release rule their contracts name).
//!
//! Why reserve: bbolt remaps the file as it grows and must stop every reader
//! while it does. revkv maps far more address space than the file holds
//! (address space is free on 64-bit targets; only pages that exist are ever
//! touched). When the file does outgrow a reservation, a new, larger mapping
//! is made and published; readers that hold the old one keep using it, so no
//! reader ever waits for a remap. Old mappings are released when the last
//! reader holding them ends.

use std::fs::File;

#[cfg(not(miri))]
use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};

/// Smallest reservation made for a database, whatever its size.
#[cfg(target_pointer_width = "64")]
const MIN_RESERVE: u64 = 64 << 30;
#[cfg(not(target_pointer_width = "64"))]
const MIN_RESERVE: u64 = 512 << 20;

/// A read-only shared mapping of the database file.
///
/// Invariant: only bytes below the file's committed length are ever read
/// through it (callers check page numbers against the file length their
/// snapshot was published with, and the writer extends the file before it
/// writes pages past its end and publishes that length). Reading beyond the
/// end of the file would raise SIGBUS.
pub struct Mapping {
    #[cfg(not(miri))]
    map: Mmap,
    /// Miri cannot execute file-backed mappings: under Miri the file's
    /// bytes are read once into memory instead, which lets every other test
    /// of the crate's page handling run under Miri.
    #[cfg(miri)]
    map: Box<[u8]>,
}

impl Mapping {
    /// Maps `file` with room for at least `needed` bytes.
    #[cfg(miri)]
    pub fn new(file: &File, needed: u64) -> Result<Mapping> {
        use std::os::unix::fs::FileExt;
        let len = file
            .metadata()
            .map_err(|e| Error::io("sizing the database file", e))?
            .len();
        let mut map = vec![0u8; needed.max(len) as usize].into_boxed_slice();
        file.read_exact_at(&mut map[..len as usize], 0)
            .map_err(|e| Error::io("reading the database file", e))?;
        Ok(Mapping { map })
    }

    #[cfg(not(miri))]
    pub fn new(file: &File, needed: u64) -> Result<Mapping> {
        let reserve = needed.saturating_mul(2).max(MIN_RESERVE);
        let len = usize::try_from(reserve).map_err(|_| {
            Error::InvalidOption(format!(
                "a mapping of {reserve} bytes does not fit in memory"
            ))
        })?;
        // SAFETY: the mapping is read-only and shared. revkv never writes
        // through it; the file is changed only with pwrite by the single
        // writer, which by the free-list invariant never rewrites a page that
        // any live snapshot can reach, so bytes a reader can see do not change
        // under it. Other processes cannot open the file for writing while
        // this handle holds its lock. Reads stay below the file's length (see
        // the type's invariant), so the reservation beyond the end of the file
        // is never touched.
        let map = unsafe { MmapOptions::new().len(len).map(file) }
            .map_err(|e| Error::io("mapping the database file", e))?;
        Ok(Mapping { map })
    }

    /// Bytes the mapping can address.
    pub fn capacity(&self) -> u64 {
        self.map.len() as u64
    }

    /// Asks the processor to start loading `offset..offset+len` into its
    /// caches: a scan calls it for the leaf after the one it is reading, so
    /// that leaf's TLB and cache misses overlap the current leaf's work
    /// instead of stalling the next step. A hint only: it never faults,
    /// and it does nothing where no prefetch instruction is available.
    #[inline]
    pub fn prefetch(&self, offset: usize, len: usize) {
        let Some(bytes) = self.map.get(offset..offset.saturating_add(len)) else {
            return;
        };
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        for line in bytes.chunks(64) {
            // SAFETY: prefetch is a hint that reads nothing architecturally
            // and never faults, whatever the address; this one lies inside
            // the mapping besides.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    line.as_ptr().cast::<i8>(),
                )
            };
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        let _ = bytes;
    }

    /// The bytes at `offset..offset+len`. The caller guarantees that the
    /// range lies inside the committed file (see the type's invariant).
    #[inline]
    pub fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        &self.map[offset..offset + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_the_file() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 8192]).unwrap();
        let m = Mapping::new(&file, 8192).unwrap();
        assert!(m.capacity() >= 8192);
        assert_eq!(m.bytes(4096, 4), &[7, 7, 7, 7]);
        assert_eq!(m.bytes(8188, 4), &[7, 7, 7, 7]);
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot execute file-backed mappings")]
    fn maps_the_file_and_sees_later_writes() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 8192]).unwrap();
        let m = Mapping::new(&file, 8192).unwrap();
        assert!(m.capacity() >= 8192);
        assert_eq!(m.bytes(4096, 4), &[7, 7, 7, 7]);
        // A write through the file is visible through the shared mapping.
        use std::os::unix::fs::FileExt;
        file.write_all_at(&[1, 2, 3], 100).unwrap();
        assert_eq!(m.bytes(100, 3), &[1, 2, 3]);
    }
}
