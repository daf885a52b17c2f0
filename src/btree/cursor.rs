//! Cursors and range iterators over one B+tree.
//!
//! A copy-on-write tree has no sibling pointers (a sibling link would force a
//! rewrite of the neighbour on every change), so a cursor keeps its path from
//! the root and climbs back up to move between leaves. Keys and values are
//! borrowed straight from the mapped file (or the writer's dirty pages): a
//! scan allocates nothing per entry.

use std::ops::Bound;

use super::node::Node;
use super::{PageSource, Root, MAX_DEPTH};
use crate::error::{Error, Result};

/// A position in a tree: the path from the root to a leaf cell.
pub struct Cursor<'a, S: PageSource + ?Sized> {
    src: &'a S,
    root: Root,
    path: [(Option<Node<'a>>, usize); MAX_DEPTH],
    depth: usize,
    /// Leaves entered by stepping since the cursor was last positioned: a
    /// cursor that has stepped across more than one leaf is scanning, and
    /// only then is the next leaf worth prefetching (a point read that
    /// steps once to check the next key would fetch a page for nothing).
    stepped: u32,
}

impl<'a, S: PageSource + ?Sized> Cursor<'a, S> {
    pub fn new(src: &'a S, root: Root) -> Cursor<'a, S> {
        Cursor {
            src,
            root,
            path: [(None, 0); MAX_DEPTH],
            depth: 0,
            stepped: 0,
        }
    }

    fn push(&mut self, node: Node<'a>, idx: usize) -> Result<()> {
        if self.depth == MAX_DEPTH {
            return Err(Error::corrupt(
                node.id(),
                format!("tree deeper than {MAX_DEPTH} levels"),
            ));
        }
        // No empty page ever stays below the root (removal unlinks them):
        // one here is damage, and skipping it could loop over a hostile
        // file's shared empty subtrees for ever.
        if self.depth > 0 && node.count() == 0 {
            return Err(Error::corrupt(node.id(), "empty page below the root"));
        }
        self.path[self.depth] = (Some(node), idx);
        self.depth += 1;
        Ok(())
    }

    fn top(&self) -> Option<(Node<'a>, usize)> {
        if self.depth == 0 {
            return None;
        }
        let (n, i) = self.path[self.depth - 1];
        n.map(|n| (n, i))
    }

    /// Descends from the child at the top of the path to its first
    /// (`leftmost`) or last leaf cell.
    fn descend_edge(&mut self, mut node: Node<'a>, leftmost: bool) -> Result<()> {
        loop {
            let idx = if leftmost {
                0
            } else {
                node.count().saturating_sub(1)
            };
            self.push(node, idx)?;
            if node.is_leaf() {
                return Ok(());
            }
            node = self.src.node(node.child(idx))?;
        }
    }

    fn root_node(&self) -> Result<Option<Node<'a>>> {
        if self.root.is_none() {
            return Ok(None);
        }
        self.src.node(self.root).map(Some)
    }

    /// Positions at the first entry; false if the tree is empty.
    pub fn first(&mut self) -> Result<bool> {
        self.depth = 0;
        self.stepped = 0;
        let Some(root) = self.root_node()? else {
            return Ok(false);
        };
        self.descend_edge(root, true)?;
        self.skip_empty_forward()
    }

    /// Positions at the last entry; false if the tree is empty.
    pub fn last(&mut self) -> Result<bool> {
        self.depth = 0;
        self.stepped = 0;
        let Some(root) = self.root_node()? else {
            return Ok(false);
        };
        self.descend_edge(root, false)?;
        self.skip_empty_backward()
    }

    /// Positions at the first entry whose key is >= `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<bool> {
        self.depth = 0;
        self.stepped = 0;
        let Some(node) = self.root_node()? else {
            return Ok(false);
        };
        self.descend_to(node, key)
    }

    /// Like [`Cursor::seek`], for a `key` at or after the current entry:
    /// climbs only to the lowest branch whose subtree bounds `key`, not to
    /// the root. A pass that seeks keys in ascending order (a compaction's
    /// plan) then reads the branches above its leaf once for many keys,
    /// not once per key. Anywhere else it is a plain seek.
    pub fn seek_forward(&mut self, key: &[u8]) -> Result<bool> {
        if self.key().is_none_or(|at| at > key) {
            return self.seek(key);
        }
        // Invariant: the subtree at `path[d]` holds every key from the
        // current one up to (not including) the next separator of each
        // branch above it.
        let mut d = self.depth - 1;
        while d > 0 {
            let (parent, idx) = self.path[d - 1];
            if parent.is_some_and(|p| idx + 1 < p.count() && key < p.key(idx + 1)) {
                break;
            }
            d -= 1;
        }
        // Every level below `self.depth` holds a node (see `push`).
        let Some(node) = self.path[d].0 else {
            return self.seek(key);
        };
        self.depth = d;
        self.stepped = 0;
        self.descend_to(node, key)
    }

    /// Descends from `node` (the child of the top of the path) to the
    /// first entry at or after `key`.
    fn descend_to(&mut self, mut node: Node<'a>, key: &[u8]) -> Result<bool> {
        loop {
            if node.is_leaf() {
                let idx = match node.search(key) {
                    Ok(i) | Err(i) => i,
                };
                self.push(node, idx)?;
                let found = self.skip_empty_forward()?;
                // Separators that do not bound their subtrees (damage) can
                // lead below the key: fail rather than hand a caller that
                // seeks forward the same entry again and again.
                if found && self.key().is_some_and(|k| k < key) {
                    let (leaf, _) = self.top().expect("positioned");
                    return Err(Error::corrupt(
                        leaf.id(),
                        "a separator leads to keys below the one sought",
                    ));
                }
                return Ok(found);
            }
            let idx = node.child_index(key);
            self.push(node, idx)?;
            node = self.src.node(node.child(idx))?;
        }
    }

    /// Positions at the last entry whose key is <= `key`.
    pub fn seek_back(&mut self, key: &[u8]) -> Result<bool> {
        if !self.seek(key)? {
            return self.last();
        }
        if self.key() == Some(key) {
            return Ok(true);
        }
        self.prev()
    }

    /// If the cursor sits past the end of its leaf, moves to the next leaf.
    fn skip_empty_forward(&mut self) -> Result<bool> {
        loop {
            let Some((leaf, idx)) = self.top() else {
                return Ok(false);
            };
            if idx < leaf.count() {
                return Ok(true);
            }
            if !self.next_leaf()? {
                return Ok(false);
            }
        }
    }

    fn skip_empty_backward(&mut self) -> Result<bool> {
        loop {
            let Some((leaf, _)) = self.top() else {
                return Ok(false);
            };
            if leaf.count() > 0 {
                return Ok(true);
            }
            if !self.prev_leaf()? {
                return Ok(false);
            }
        }
    }

    /// Climbs to the nearest ancestor with a next child and descends to its
    /// leftmost leaf. On false the cursor is exhausted.
    ///
    /// The new leaf's first key must follow the old leaf's last: in a
    /// damaged or hostile file where subtrees are shared or out of order,
    /// the cursor fails instead of returning keys again (every step then
    /// makes progress, so no file can keep it busy for ever).
    fn next_leaf(&mut self) -> Result<bool> {
        let last = self
            .top()
            .and_then(|(leaf, _)| leaf.count().checked_sub(1).map(|i| leaf.key(i)));
        self.depth -= 1;
        while self.depth > 0 {
            let (node, idx) = self.top().expect("depth > 0");
            if idx + 1 < node.count() {
                self.path[self.depth - 1].1 = idx + 1;
                let child = self.src.node(node.child(idx + 1))?;
                self.descend_edge(child, true)?;
                let (leaf, _) = self.top().expect("descended to a leaf");
                if last.is_some_and(|last| leaf.key(0) <= last) {
                    return Err(Error::corrupt(leaf.id(), "keys out of order across leaves"));
                }
                self.stepped = self.stepped.saturating_add(1);
                if self.stepped > 1 {
                    self.prefetch_sibling(true);
                }
                return Ok(true);
            }
            self.depth -= 1;
        }
        Ok(false)
    }

    fn prev_leaf(&mut self) -> Result<bool> {
        let first = self
            .top()
            .and_then(|(leaf, _)| (leaf.count() > 0).then(|| leaf.key(0)));
        self.depth -= 1;
        while self.depth > 0 {
            let (node, idx) = self.top().expect("depth > 0");
            if idx > 0 {
                self.path[self.depth - 1].1 = idx - 1;
                let child = self.src.node(node.child(idx - 1))?;
                self.descend_edge(child, false)?;
                let (leaf, _) = self.top().expect("descended to a leaf");
                if first.is_some_and(|first| leaf.key(leaf.count() - 1) >= first) {
                    return Err(Error::corrupt(leaf.id(), "keys out of order across leaves"));
                }
                self.stepped = self.stepped.saturating_add(1);
                if self.stepped > 1 {
                    self.prefetch_sibling(false);
                }
                return Ok(true);
            }
            self.depth -= 1;
        }
        Ok(false)
    }

    /// Hints that the leaf after (`forward`) or before the current one is
    /// read next: a scan spent a quarter of its time waiting for each new
    /// leaf's first cache and TLB misses, and this overlaps them with the
    /// work on the current leaf.
    #[inline]
    fn prefetch_sibling(&self, forward: bool) {
        if self.depth < 2 {
            return;
        }
        if let (Some(parent), idx) = self.path[self.depth - 2] {
            let sibling = if forward {
                idx + 1
            } else {
                idx.wrapping_sub(1)
            };
            if sibling < parent.count() {
                self.src.prefetch(parent.child(sibling));
            }
        }
    }

    /// Moves to the next entry; false when there is none.
    #[inline]
    pub fn next(&mut self) -> Result<bool> {
        let Some((leaf, idx)) = self.top() else {
            return Ok(false);
        };
        self.path[self.depth - 1].1 = idx + 1;
        if idx + 1 < leaf.count() {
            return Ok(true);
        }
        self.skip_empty_forward()
    }

    /// Moves to the previous entry; false when there is none.
    pub fn prev(&mut self) -> Result<bool> {
        let Some((_, idx)) = self.top() else {
            return Ok(false);
        };
        if idx > 0 {
            self.path[self.depth - 1].1 = idx - 1;
            return Ok(true);
        }
        loop {
            if !self.prev_leaf()? {
                return Ok(false);
            }
            let (leaf, _) = self.top().expect("on a leaf");
            if leaf.count() > 0 {
                return Ok(true);
            }
        }
    }

    /// The current key, if the cursor is on an entry.
    pub fn key(&self) -> Option<&'a [u8]> {
        let (leaf, idx) = self.top()?;
        (idx < leaf.count()).then(|| leaf.key(idx))
    }

    /// The current entry with its value read (from an overflow run if need be).
    pub fn entry(&self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        let Some((leaf, idx)) = self.top() else {
            return Ok(None);
        };
        if idx >= leaf.count() {
            return Ok(None);
        }
        let (key, value) = leaf.leaf_entry(idx);
        Ok(Some((key, self.src.value(value)?)))
    }

    /// The pages on the path from the root to the current leaf.
    pub fn path(&self) -> impl Iterator<Item = Node<'a>> + '_ {
        self.path[..self.depth].iter().filter_map(|(n, _)| *n)
    }

    /// Moves to the first entry of the next leaf; false at the end.
    pub fn next_leaf_first(&mut self) -> Result<bool> {
        if self.depth == 0 {
            return Ok(false);
        }
        if !self.next_leaf()? {
            return Ok(false);
        }
        self.skip_empty_forward()
    }

    /// Identity of the current position, to tell when two cursors meet.
    fn position(&self) -> Option<(usize, usize)> {
        let (leaf, idx) = self.top()?;
        Some((leaf.bytes().as_ptr() as usize, idx))
    }
}

/// An iterator over the entries of a tree between two bounds, in either
/// direction. Yields `Result` because a page may turn out to be corrupt.
pub struct Range<'a, S: PageSource + ?Sized> {
    front: Cursor<'a, S>,
    back: Cursor<'a, S>,
    done: bool,
    /// Where each cursor stands, kept so that a step compares one cached
    /// position instead of walking both paths.
    front_pos: Option<(usize, usize)>,
    back_pos: Option<(usize, usize)>,
}

impl<'a, S: PageSource + ?Sized> Range<'a, S> {
    pub fn new(
        src: &'a S,
        root: Root,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Range<'a, S>> {
        let mut front = Cursor::new(src, root);
        let mut back = Cursor::new(src, root);
        let mut ok = match start {
            Bound::Unbounded => front.first()?,
            Bound::Included(k) => front.seek(k)?,
            Bound::Excluded(k) => front.seek(k)? && (front.key() != Some(k) || front.next()?),
        };
        ok = ok
            && match end {
                Bound::Unbounded => back.last()?,
                Bound::Included(k) => back.seek_back(k)?,
                Bound::Excluded(k) => {
                    back.seek_back(k)? && (back.key() != Some(k) || back.prev()?)
                }
            };
        if ok {
            // Empty when the ends have crossed.
            ok = front.key() <= back.key();
        }
        let (front_pos, back_pos) = (front.position(), back.position());
        Ok(Range {
            front,
            back,
            done: !ok,
            front_pos,
            back_pos,
        })
    }

    fn finish_if_met(&mut self) {
        if self.front_pos == self.back_pos {
            self.done = true;
        }
    }
}

impl<'a, S: PageSource + ?Sized> Iterator for Range<'a, S> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.front.entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.finish_if_met();
        if !self.done {
            let moved = self.front.next();
            self.front_pos = self.front.position();
            match moved {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        Some(Ok(item))
    }
}

impl<'a, S: PageSource + ?Sized> DoubleEndedIterator for Range<'a, S> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.back.entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.finish_if_met();
        if !self.done {
            let moved = self.back.prev();
            self.back_pos = self.back.position();
            match moved {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        Some(Ok(item))
    }
}
