//! A set of page numbers, read and written as disjoint, non-adjacent runs
//! ("extents").
//!
//! The free-page list is one of these, and so are the writer's other page
//! sets (pages no commit reaches, pages allocated since the last sync).
//! Membership is a bitmap, one bit per page, allocated 4096 pages (512
//! bytes) at a time where pages are: a commit adds and takes thousands of
//! scattered single pages, and in an ordered map of runs each of those was
//! a chain of cache misses (a tenth of a compaction's time). Runs of two
//! pages or more are also indexed by length, for multi-page allocations.
//! Allocation is first-fit from the lowest page, which keeps live data
//! packed toward the start of the file. Memory: 32 KB per GB of file at
//! 4 KiB pages, for the part of the file the set has held pages in.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::PageId;

/// Words of one chunk of the bitmap.
const CHUNK_WORDS: usize = 64;
/// Pages one chunk covers.
const CHUNK_PAGES: u64 = 64 * CHUNK_WORDS as u64;

#[derive(Clone)]
struct Chunk {
    words: [u64; CHUNK_WORDS],
    /// Bits set in `words`.
    ones: u32,
}

/// Disjoint, non-adjacent runs of pages.
#[derive(Clone, Default)]
pub struct ExtentSet {
    /// Chunk `i` holds pages `i * CHUNK_PAGES..(i + 1) * CHUNK_PAGES`;
    /// `None` where the set never held a page.
    chunks: Vec<Option<Box<Chunk>>>,
    /// Every chunk below this one is empty or absent (a hint for finding
    /// the lowest page; it may lag behind, never run ahead).
    low: usize,
    /// The starts of the runs of two pages or more, by length. A request
    /// for several pages (an overflow value) looks only at these, one
    /// length at a time: after a compaction most runs are single pages.
    /// Invariant: holds exactly the maximal runs longer than one page.
    long_runs: BTreeMap<u64, BTreeSet<PageId>>,
    pages: u64,
    runs: usize,
}

impl PartialEq for ExtentSet {
    fn eq(&self, other: &ExtentSet) -> bool {
        self.pages == other.pages && self.runs == other.runs && self.iter().eq(other.iter())
    }
}

impl Eq for ExtentSet {}

impl std::fmt::Debug for ExtentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtentSet")
            .field("pages", &self.pages)
            .field("runs", &self.runs)
            .field("first_runs", &self.iter().take(8).collect::<Vec<_>>())
            .finish()
    }
}

impl ExtentSet {
    pub fn new() -> ExtentSet {
        ExtentSet::default()
    }

    /// Total pages in the set.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.runs
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// The runs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (PageId, u64)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let start = self.first_set_from(at)?;
            let end = self.first_clear_from(start);
            at = end;
            Some((start, end - start))
        })
    }

    /// Whether any page of `start..start+len` is in the set.
    pub fn overlaps(&self, start: PageId, len: u64) -> bool {
        self.words_of(start, len).any(|(w, mask)| w & mask != 0)
    }

    /// Whether every page of `start..start+len` is in the set.
    pub fn contains_run(&self, start: PageId, len: u64) -> bool {
        self.words_of(start, len).all(|(w, mask)| w & mask == mask)
    }

    /// Adds `start..start+len`, merging with neighbours. The run must not
    /// overlap the set (a double free); returns false and changes nothing if
    /// it does.
    pub fn insert(&mut self, start: PageId, len: u64) -> bool {
        debug_assert!(len > 0);
        if len == 0 || self.overlaps(start, len) {
            return false;
        }
        let end = start + len;
        let joins_left = start > 0 && self.contains(start - 1);
        let joins_right = self.contains(end);
        let mut run = start..end;
        if joins_left {
            run.start = self.run_start(start - 1);
            self.unindex(run.start, start - run.start);
        }
        if joins_right {
            run.end = self.first_clear_from(end);
            self.unindex(end, run.end - end);
        }
        self.fill(start, len, true);
        self.index(run.start, run.end - run.start);
        self.runs = self.runs + 1 - joins_left as usize - joins_right as usize;
        self.pages += len;
        true
    }

    /// Removes `start..start+len`, which must lie inside one run; returns
    /// false and changes nothing otherwise.
    pub fn remove(&mut self, start: PageId, len: u64) -> bool {
        if len == 0 || !self.contains_run(start, len) {
            return false;
        }
        let end = start + len;
        let run = self.run_start(start)..self.first_clear_from(end);
        self.unindex(run.start, run.end - run.start);
        self.fill(start, len, false);
        self.index(run.start, start - run.start);
        self.index(end, run.end - end);
        self.runs = self.runs + (run.start < start) as usize + (end < run.end) as usize - 1;
        self.pages -= len;
        true
    }

    /// Adds `start..start+len`, whether or not some of it is already there.
    pub fn insert_overlapping(&mut self, start: PageId, len: u64) {
        let end = start + len;
        let mut at = start;
        while at < end {
            if self.contains(at) {
                at = self.first_clear_from(at);
                continue;
            }
            let gap_end = self.first_set_from(at).map_or(end, |p| p.min(end));
            self.insert(at, gap_end - at);
            at = gap_end;
        }
    }

    /// Takes the lowest run of `len` contiguous pages, if there is one.
    ///
    /// One page: the lowest page. More: the lowest start among the runs
    /// of each length that is long enough, so the cost grows with the
    /// number of distinct lengths (at most about the square root of twice
    /// the free pages), not with the number of runs.
    pub fn take_first_fit(&mut self, len: u64) -> Option<PageId> {
        let start = if len <= 1 {
            let start = self.first_set_from(0)?;
            self.low = (start / CHUNK_PAGES) as usize;
            start
        } else {
            self.long_runs
                .range(len..)
                .filter_map(|(_, starts)| starts.first().copied())
                .min()?
        };
        let removed = self.remove(start, len.max(1));
        debug_assert!(removed);
        Some(start)
    }

    /// Removes and returns the runs at or above `from` (used to give the tail
    /// of a file back to the filesystem).
    pub fn split_off_from(&mut self, from: PageId) -> Vec<(PageId, u64)> {
        if from > 0 && self.contains(from) && self.contains(from - 1) {
            // A run across `from`: it becomes two, the upper one going.
            let run = self.run_start(from)..self.first_clear_from(from);
            self.unindex(run.start, run.end - run.start);
            self.index(run.start, from - run.start);
            self.index(from, run.end - from);
            self.runs += 1;
        }
        let mut out = Vec::new();
        let mut at = from;
        while let Some(start) = self.first_set_from(at) {
            let end = self.first_clear_from(start);
            self.unindex(start, end - start);
            self.fill(start, end - start, false);
            self.runs -= 1;
            self.pages -= end - start;
            out.push((start, end - start));
            at = end;
        }
        // The bitmap of the part given back goes too.
        while self
            .chunks
            .last()
            .is_some_and(|c| c.as_ref().is_none_or(|c| c.ones == 0))
        {
            self.chunks.pop();
        }
        out
    }

    /// The run that ends exactly at `end`, if any.
    pub fn run_ending_at(&self, end: PageId) -> Option<(PageId, u64)> {
        if end == 0 || !self.contains(end - 1) {
            return None;
        }
        let start = self.run_start(end - 1);
        Some((start, end - start))
    }

    /// Whether page `p` is in the set.
    fn contains(&self, p: PageId) -> bool {
        self.word(p / 64) & (1 << (p % 64)) != 0
    }

    /// Word `wi` of the bitmap (pages `wi * 64..`); zero where absent.
    #[inline]
    fn word(&self, wi: u64) -> u64 {
        match self.chunks.get((wi / CHUNK_WORDS as u64) as usize) {
            Some(Some(c)) => c.words[(wi % CHUNK_WORDS as u64) as usize],
            _ => 0,
        }
    }

    /// The words covering `start..start+len`, each with the mask of the
    /// range's bits in it.
    fn words_of(&self, start: PageId, len: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let end = start.saturating_add(len);
        let mut at = start;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let bit = at % 64;
            let n = (64 - bit).min(end - at);
            let mask = mask(bit, n);
            let w = self.word(at / 64);
            at += n;
            Some((w, mask))
        })
    }

    /// Sets (or clears) every bit of `start..start+len`, which are all
    /// clear (or set).
    fn fill(&mut self, start: PageId, len: u64, set: bool) {
        let end = start + len;
        let last_chunk = ((end - 1) / CHUNK_PAGES) as usize;
        if set && self.chunks.len() <= last_chunk {
            self.chunks.resize_with(last_chunk + 1, || None);
        }
        let mut at = start;
        while at < end {
            let bit = at % 64;
            let n = (64 - bit).min(end - at);
            let ci = (at / CHUNK_PAGES) as usize;
            let wi = ((at % CHUNK_PAGES) / 64) as usize;
            let chunk = self.chunks[ci].get_or_insert_with(|| {
                Box::new(Chunk {
                    words: [0; CHUNK_WORDS],
                    ones: 0,
                })
            });
            let m = mask(bit, n);
            if set {
                debug_assert_eq!(chunk.words[wi] & m, 0);
                chunk.words[wi] |= m;
                chunk.ones += n as u32;
            } else {
                debug_assert_eq!(chunk.words[wi] & m, m);
                chunk.words[wi] &= !m;
                chunk.ones -= n as u32;
            }
            at += n;
        }
        if set {
            self.low = self.low.min((start / CHUNK_PAGES) as usize);
        }
    }

    /// The lowest page in the set at or above `from`.
    fn first_set_from(&self, from: PageId) -> Option<PageId> {
        let mut ci = ((from / CHUNK_PAGES) as usize).max(self.low);
        let mut from = from.max(ci as u64 * CHUNK_PAGES);
        while ci < self.chunks.len() {
            if let Some(chunk) = self.chunks[ci].as_deref().filter(|c| c.ones > 0) {
                let base = ci as u64 * CHUNK_PAGES;
                let mut wi = ((from - base) / 64) as usize;
                let mut keep = !0u64 << (from % 64);
                while wi < CHUNK_WORDS {
                    let w = chunk.words[wi] & keep;
                    if w != 0 {
                        return Some(base + wi as u64 * 64 + w.trailing_zeros() as u64);
                    }
                    wi += 1;
                    keep = !0;
                }
            }
            ci += 1;
            from = ci as u64 * CHUNK_PAGES;
        }
        None
    }

    /// The lowest page not in the set at or above `from`.
    fn first_clear_from(&self, from: PageId) -> PageId {
        let mut wi = from / 64;
        let mut keep = !0u64 << (from % 64);
        loop {
            let w = !self.word(wi) & keep;
            if w != 0 {
                return wi * 64 + w.trailing_zeros() as u64;
            }
            wi += 1;
            keep = !0;
        }
    }

    /// The first page of the run holding page `p` (which is in the set).
    fn run_start(&self, p: PageId) -> PageId {
        let mut wi = p / 64;
        // The bits below `p` in its word.
        let mut keep = (1u64 << (p % 64)) - 1;
        loop {
            let w = !self.word(wi) & keep;
            if w != 0 {
                return wi * 64 + (63 - w.leading_zeros() as u64) + 1;
            }
            if wi == 0 {
                return 0;
            }
            wi -= 1;
            keep = !0;
        }
    }

    /// Records the run `start..start+len` in the length index (if long).
    fn index(&mut self, start: PageId, len: u64) {
        if len > 1 {
            self.long_runs.entry(len).or_default().insert(start);
        }
    }

    /// Takes the run at `start`, of `len` pages, out of the length index.
    fn unindex(&mut self, start: PageId, len: u64) {
        if len < 2 {
            return;
        }
        if let Some(starts) = self.long_runs.get_mut(&len) {
            starts.remove(&start);
            if starts.is_empty() {
                self.long_runs.remove(&len);
            }
        }
    }
}

/// A set of page numbers with the interface of an ordered set of ids,
/// kept as an [`ExtentSet`]: inserting and removing one id is a few bit
/// operations instead of a walk down an ordered tree, and the ids come out
/// in ascending order. For the writer's sets of pages held in memory, which
/// a full commit updates once for each of its thousand pages.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct PageSet(ExtentSet);

impl PageSet {
    /// Adds `id`; false if it was there.
    pub fn insert(&mut self, id: PageId) -> bool {
        self.0.insert(id, 1)
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: &PageId) -> bool {
        self.0.remove(*id, 1)
    }

    pub fn len(&self) -> usize {
        self.0.pages() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = PageId> + '_ {
        self.0.iter().flat_map(|(start, len)| start..start + len)
    }

    /// Moves every id of `other` into this set, leaving `other` empty.
    pub fn append(&mut self, other: &mut PageSet) {
        for (start, len) in std::mem::take(other).0.iter() {
            self.0.insert_overlapping(start, len);
        }
    }
}

impl Extend<PageId> for PageSet {
    fn extend<I: IntoIterator<Item = PageId>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

impl IntoIterator for PageSet {
    type Item = PageId;
    type IntoIter = std::vec::IntoIter<PageId>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter().collect::<Vec<_>>().into_iter()
    }
}

/// The mask of `n` bits (1 to 64) from bit `bit` up.
#[inline]
fn mask(bit: u64, n: u64) -> u64 {
    debug_assert!(n >= 1 && bit + n <= 64);
    (!0u64 >> (64 - n)) << bit
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        InsertOverlapping(u64, u64),
        Remove(u64, u64),
        Take(u64),
        SplitOff(u64),
        Probe(u64, u64),
    }

    /// Pages near a word and a chunk boundary, and far from zero, so runs
    /// cross both and chunks are absent below them.
    fn page() -> impl Strategy<Value = u64> {
        (
            prop_oneof![Just(0u64), Just(4_000), Just(8_150), Just(1_000_000)],
            0u64..200,
        )
            .prop_map(|(base, off)| base + off)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (page(), 1u64..8).prop_map(|(s, l)| Op::Insert(s, l)),
            (page(), 1u64..150).prop_map(|(s, l)| Op::Insert(s, l)),
            (page(), 1u64..80).prop_map(|(s, l)| Op::InsertOverlapping(s, l)),
            (page(), 1u64..8).prop_map(|(s, l)| Op::Remove(s, l)),
            (1u64..6).prop_map(Op::Take),
            page().prop_map(Op::SplitOff),
            (page(), 1u64..100).prop_map(|(s, l)| Op::Probe(s, l)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(0x6578_7465), ..ProptestConfig::default() })]
        /// The extent set behaves exactly like a set of page numbers.
        #[test]
        #[cfg_attr(miri, ignore = "safe code only, and about a minute under Miri; the deterministic test below runs there")]
        fn matches_a_plain_set(ops in proptest::collection::vec(op(), 1..200)) {
            let mut set = ExtentSet::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(s, l) => {
                        let free = (s..s + l).all(|p| !model.contains(&p));
                        prop_assert_eq!(set.insert(s, l), free);
                        if free { model.extend(s..s + l); }
                    }
                    Op::InsertOverlapping(s, l) => {
                        set.insert_overlapping(s, l);
                        model.extend(s..s + l);
                    }
                    Op::Remove(s, l) => {
                        // Only runs inside one extent may be removed.
                        let inside = (s..s + l).all(|p| model.contains(&p));
                        let ok = set.remove(s, l);
                        prop_assert_eq!(ok, inside);
                        if ok { for p in s..s + l { model.remove(&p); } }
                    }
                    Op::Take(l) => {
                        let got = set.take_first_fit(l);
                        let want = model.iter().copied().find(|&p| (p..p + l).all(|q| model.contains(&q)));
                        prop_assert_eq!(got, want);
                        if let Some(p) = got { for q in p..p + l { model.remove(&q); } }
                    }
                    Op::SplitOff(from) => {
                        let tail = set.split_off_from(from);
                        let tail_pages: BTreeSet<u64> = tail.iter().flat_map(|&(s, l)| s..s + l).collect();
                        let want: BTreeSet<u64> = model.range(from..).copied().collect();
                        prop_assert_eq!(tail_pages, want);
                        model.retain(|&p| p < from);
                    }
                    Op::Probe(s, l) => {
                        prop_assert_eq!(set.overlaps(s, l), (s..s + l).any(|p| model.contains(&p)));
                        prop_assert_eq!(set.contains_run(s, l), (s..s + l).all(|p| model.contains(&p)));
                        let want = (s > 0 && model.contains(&(s - 1))).then(|| {
                            let start = (0..s).rev().take_while(|p| model.contains(p)).last().unwrap();
                            (start, s - start)
                        });
                        prop_assert_eq!(set.run_ending_at(s), want);
                    }
                }
                prop_assert_eq!(set.pages(), model.len() as u64);
                prop_assert_eq!(set.is_empty(), model.is_empty());
                // Runs are disjoint and never adjacent.
                let runs: Vec<_> = set.iter().collect();
                prop_assert_eq!(set.runs(), runs.len());
                for w in runs.windows(2) {
                    prop_assert!(w[0].0 + w[0].1 < w[1].0);
                }
                let pages: BTreeSet<u64> = runs.iter().flat_map(|&(s, l)| s..s + l).collect();
                prop_assert_eq!(&pages, &model);
                // The index of long runs holds exactly the runs over a page.
                let long: BTreeSet<(u64, u64)> = runs.iter().filter(|r| r.1 > 1).map(|&(s, l)| (l, s)).collect();
                let indexed: BTreeSet<(u64, u64)> = set.long_runs.iter().flat_map(|(&l, starts)| starts.iter().map(move |&s| (l, s))).collect();
                prop_assert_eq!(long, indexed);
                prop_assert!(set.long_runs.values().all(|starts| !starts.is_empty()));
                // Chunks count their bits, and the lowest-page hint never
                // runs ahead of the lowest page.
                for c in set.chunks.iter().flatten() {
                    prop_assert_eq!(c.ones, c.words.iter().map(|w| w.count_ones()).sum::<u32>());
                }
                if let Some(&lowest) = model.first() {
                    prop_assert!(set.low as u64 <= lowest / CHUNK_PAGES);
                }
            }
        }
    }

    #[test]
    fn a_page_set_is_an_ordered_set_of_ids() {
        let mut a = PageSet::default();
        let mut model = BTreeSet::new();
        // Neighbours, a gap, ids across a chunk boundary, repeats.
        for id in [7u64, 9, 8, 4095, 4096, 4097, 100_000, 9, 3] {
            assert_eq!(a.insert(id), model.insert(id), "insert {id}");
        }
        for id in [8u64, 8, 4096, 5] {
            assert_eq!(a.remove(&id), model.remove(&id), "remove {id}");
        }
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            model.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!((a.len(), a.is_empty()), (model.len(), false));
        let mut b = PageSet::default();
        b.extend([8u64, 9, 200_000]);
        a.append(&mut b);
        model.extend([8u64, 9, 200_000]);
        assert!(b.is_empty());
        assert_eq!(
            a.clone().into_iter().collect::<Vec<_>>(),
            model.into_iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn equal_sets_compare_equal_whatever_their_history() {
        let mut a = ExtentSet::new();
        a.insert(9_000, 5);
        a.insert(3, 2);
        let mut b = ExtentSet::new();
        b.insert(3, 1);
        b.insert(20_000, 1);
        b.insert(4, 1);
        b.insert(9_000, 5);
        assert_ne!(a, b);
        b.split_off_from(10_000);
        assert_eq!(a, b);
        assert!(b.chunks.len() <= 3, "the bitmap given back shrinks");
    }
}
