//! The command's allocator: the system allocator, counting the bytes live
//! and their peak, so the demo can show the memory a range or a stream
//! really takes (the file's mapping is not heap, and RSS would count it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator (System) gave
        // out, with its layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block of ours with its layout and a
        // valid new size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

/// Bytes allocated now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak from the bytes live now.
pub fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

/// The most bytes live since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters follow allocations, growth by realloc and frees. Other
    /// tests of this binary allocate a little at the same time, hence the
    /// slack.
    #[test]
    fn counts_live_bytes_and_their_peak() {
        // Smaller under Miri, which interprets every byte written.
        const MIB: usize = if cfg!(miri) { 64 << 10 } else { 1 << 20 };
        const SLACK: usize = if cfg!(miri) { 8 << 10 } else { 64 << 10 };
        reset_peak();
        let base = live();
        let mut v: Vec<u8> = Vec::with_capacity(MIB);
        v.push(1);
        assert!(live() + SLACK >= base + MIB);
        v.reserve_exact(2 * MIB);
        assert!(live() + SLACK >= base + 2 * MIB);
        drop(v);
        assert!(live() <= base + SLACK);
        assert!(peak() + SLACK >= base + 2 * MIB);
        let z = vec![0u8; MIB];
        assert!(z.iter().all(|&b| b == 0));
        drop(z);
        assert!(live() <= base + SLACK);
    }
}
