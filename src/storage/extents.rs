//! A set of page numbers kept as disjoint, non-adjacent runs ("extents").
//!
//! The free-page list is one of these. Runs keep it compact on disk and in
//! memory: a file whose free pages are contiguous costs one entry, whatever
//! their number. Allocation is first-fit from the lowest page, which keeps
//! live data packed toward the start of the file.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::PageId;

/// Disjoint, non-adjacent runs of pages: start -> length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtentSet {
    runs: BTreeMap<PageId, u64>,
    /// The starts of the runs of two pages or more, by length. A request
    /// for several pages (an overflow value) looks only at these, one
    /// length at a time: after a compaction most runs are single pages,
    /// and passing them all made such an allocation cost a walk of the
    /// whole set. Invariant: holds exactly the runs of `runs` longer than
    /// one page.
    long_runs: BTreeMap<u64, BTreeSet<PageId>>,
    pages: u64,
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
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (PageId, u64)> + '_ {
        self.runs.iter().map(|(&s, &l)| (s, l))
    }

    /// Records the run `start..start+len` (disjoint from every other).
    fn add_run(&mut self, start: PageId, len: u64) {
        self.runs.insert(start, len);
        if len > 1 {
            self.long_runs.entry(len).or_default().insert(start);
        }
    }

    /// Forgets the run starting at `start`, of `len` pages.
    fn drop_run(&mut self, start: PageId, len: u64) {
        self.runs.remove(&start);
        if len > 1 {
            self.unindex(start, len);
        }
    }

    /// Takes the run at `start`, of `len` pages, out of the length index.
    fn unindex(&mut self, start: PageId, len: u64) {
        if let Some(starts) = self.long_runs.get_mut(&len) {
            starts.remove(&start);
            if starts.is_empty() {
                self.long_runs.remove(&len);
            }
        }
    }

    /// Whether any page of `start..start+len` is in the set.
    pub fn overlaps(&self, start: PageId, len: u64) -> bool {
        if let Some((&s, &l)) = self.runs.range(..start + len).next_back() {
            return s + l > start;
        }
        false
    }

    /// Adds `start..start+len`, merging with neighbours. The run must not
    /// overlap the set (a double free); returns false and changes nothing if
    /// it does.
    pub fn insert(&mut self, start: PageId, len: u64) -> bool {
        debug_assert!(len > 0);
        if self.overlaps(start, len) {
            return false;
        }
        let mut new_start = start;
        let mut new_len = len;
        if let Some((&s, &l)) = self.runs.range(..start).next_back() {
            if s + l == start {
                new_start = s;
                new_len += l;
                self.drop_run(s, l);
            }
        }
        if let Some(&l) = self.runs.get(&(start + len)) {
            self.drop_run(start + len, l);
            new_len += l;
        }
        self.add_run(new_start, new_len);
        self.pages += len;
        true
    }

    /// Removes `start..start+len`, which must lie inside one run; returns
    /// false and changes nothing otherwise.
    pub fn remove(&mut self, start: PageId, len: u64) -> bool {
        let Some((&s, &l)) = self.runs.range(..=start).next_back() else {
            return false;
        };
        if s + l < start + len {
            return false;
        }
        self.drop_run(s, l);
        if s < start {
            self.add_run(s, start - s);
        }
        if start + len < s + l {
            self.add_run(start + len, s + l - (start + len));
        }
        self.pages -= len;
        true
    }

    /// Whether every page of `start..start+len` is in the set.
    pub fn contains_run(&self, start: PageId, len: u64) -> bool {
        match self.runs.range(..=start).next_back() {
            Some((&s, &l)) => s + l >= start + len,
            None => false,
        }
    }

    /// Adds `start..start+len`, whether or not some of it is already there.
    pub fn insert_overlapping(&mut self, start: PageId, len: u64) {
        for p in start..start + len {
            if !self.overlaps(p, 1) {
                self.insert(p, 1);
            }
        }
    }

    /// Takes the lowest run of `len` contiguous pages, if there is one.
    ///
    /// One page: the set's first run. More: the lowest start among the
    /// runs of each length that is long enough, so the cost grows with the
    /// number of distinct lengths (at most about the square root of twice
    /// the free pages), not with the number of runs.
    pub fn take_first_fit(&mut self, len: u64) -> Option<PageId> {
        let start = if len <= 1 {
            *self.runs.keys().next()?
        } else {
            self.long_runs
                .range(len..)
                .filter_map(|(_, starts)| starts.first().copied())
                .min()?
        };
        let removed = self.remove(start, len);
        debug_assert!(removed);
        Some(start)
    }

    /// Removes and returns the runs at or above `from` (used to give the tail
    /// of a file back to the filesystem).
    pub fn split_off_from(&mut self, from: PageId) -> Vec<(PageId, u64)> {
        if let Some((&s, &l)) = self.runs.range(..from).next_back() {
            if s + l > from {
                self.drop_run(s, l);
                self.add_run(s, from - s);
                self.add_run(from, s + l - from);
            }
        }
        // Split off whole (one tree operation, whatever the tail's size:
        // the trim that calls this holds the writer lock); only the tail's
        // long runs are looked up in the length index.
        let out: Vec<(PageId, u64)> = self.runs.split_off(&from).into_iter().collect();
        for &(s, l) in &out {
            if l > 1 {
                self.unindex(s, l);
            }
        }
        self.pages -= out.iter().map(|&(_, l)| l).sum::<u64>();
        out
    }

    /// The run that ends exactly at `end`, if any.
    pub fn run_ending_at(&self, end: PageId) -> Option<(PageId, u64)> {
        let (&s, &l) = self.runs.range(..end).next_back()?;
        (s + l == end).then_some((s, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        Remove(u64, u64),
        Take(u64),
        SplitOff(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..200, 1u64..8).prop_map(|(s, l)| Op::Insert(s, l)),
            (0u64..200, 1u64..8).prop_map(|(s, l)| Op::Remove(s, l)),
            (1u64..6).prop_map(Op::Take),
            (0u64..220).prop_map(Op::SplitOff),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(0x6578_7465), ..ProptestConfig::default() })]
        /// The extent set behaves exactly like a set of page numbers.
        #[test]
        fn matches_a_plain_set(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 60 } else { 200 })) {
            let mut set = ExtentSet::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(s, l) => {
                        let free = (s..s + l).all(|p| !model.contains(&p));
                        prop_assert_eq!(set.insert(s, l), free);
                        if free { model.extend(s..s + l); }
                    }
                    Op::Remove(s, l) => {
                        // Only runs inside one extent may be removed.
                        let inside = (s..s + l).all(|p| model.contains(&p));
                        let ok = set.remove(s, l);
                        if ok { for p in s..s + l { model.remove(&p); } }
                        prop_assert!(!ok || inside);
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
                }
                prop_assert_eq!(set.pages(), model.len() as u64);
                // Runs are disjoint and never adjacent.
                let runs: Vec<_> = set.iter().collect();
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
            }
        }
    }
}
