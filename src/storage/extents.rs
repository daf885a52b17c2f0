//! A set of page numbers kept as disjoint, non-adjacent runs ("extents").
//!
//! The free-page list is one of these. Runs keep it compact on disk and in
//! memory: a file whose free pages are contiguous costs one entry, whatever
//! their number. Allocation is first-fit from the lowest page, which keeps
//! live data packed toward the start of the file.

use std::collections::BTreeMap;

use crate::error::PageId;

/// Disjoint, non-adjacent runs of pages: start -> length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtentSet {
    runs: BTreeMap<PageId, u64>,
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
                self.runs.remove(&s);
            }
        }
        if let Some(&l) = self.runs.get(&(start + len)) {
            self.runs.remove(&(start + len));
            new_len += l;
        }
        self.runs.insert(new_start, new_len);
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
        self.runs.remove(&s);
        if s < start {
            self.runs.insert(s, start - s);
        }
        if start + len < s + l {
            self.runs.insert(start + len, s + l - (start + len));
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
    pub fn take_first_fit(&mut self, len: u64) -> Option<PageId> {
        let start = if len == 1 {
            *self.runs.keys().next()?
        } else {
            self.runs.iter().find(|(_, &l)| l >= len).map(|(&s, _)| s)?
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
                self.runs.insert(s, from - s);
                self.runs.insert(from, s + l - from);
            }
        }
        let tail = self.runs.split_off(&from);
        let out: Vec<_> = tail.into_iter().collect();
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
        #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, failure_persistence: None, ..ProptestConfig::default() })]
        /// The extent set behaves exactly like a set of page numbers.
        #[test]
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
            }
        }
    }
}
