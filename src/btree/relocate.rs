//! Relocation: moving a tree's pages that lie at or above a limit to new
//! pages, so that defragmentation can empty the file's tail.
//!
//! It runs in two parts. A [`RelocationPlan`] is found read-only, on any
//! [`PageSource`] (defragmentation uses a snapshot, without the writer):
//! walking the leaves in key order, it notes one key of each leaf whose
//! path from the root, or whose overflow runs, reach the limit. Walking is
//! most of the work (at 1M keys a pass looks at 400,000 leaves to move
//! about 12,000), and a reader can do it while writers go on. The writer
//! then moves each planned leaf ([`relocate_leaf`]): it checks the leaf's
//! path again in the tree as it is now, since a plan made on an older
//! snapshot may name leaves that writes have moved since, and makes it
//! dirty, which copies every page on it to the lowest free pages. Planned
//! keys may be gone by then; the descent by key still reaches the leaf that
//! holds the neighbours the key had.

use super::cursor::Cursor;
use super::node::{Node, NodeMut, ValueRef};
use super::write::{dirty_path, PageStore};
use super::{PageSource, Root, MAX_DEPTH};
use crate::error::{Error, PageId, Result};
use crate::storage::page::{span_for, Header};

/// Leaves of one tree to move, in key order: one key of each.
///
/// The keys share one buffer, so a plan costs no allocation per leaf and
/// can be reused.
#[derive(Debug, Default)]
pub struct RelocationPlan {
    keys: Vec<u8>,
    ends: Vec<usize>,
    /// Where the next plan of the same tree starts; None once the walk
    /// reached the tree's end.
    pub next: Option<Vec<u8>>,
    /// Leaves looked at.
    pub looked: usize,
}

impl RelocationPlan {
    /// Leaves planned.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no leaf was planned.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// A key of the `i`-th planned leaf.
    pub fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.keys[start..self.ends[i]]
    }

    fn push(&mut self, key: &[u8]) {
        self.keys.extend_from_slice(key);
        self.ends.push(self.keys.len());
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.ends.clear();
        self.next = None;
        self.looked = 0;
    }
}

/// Fills `plan` with the leaves, from the one holding `from` on, that have
/// a page at or above `limit` on their path or an overflow run there,
/// looking at `max_leaves` leaves at most (most need nothing). When `from`
/// lies past the last entry, only the path to the tree's end is looked at,
/// and the last key planned if a page on it is high.
pub fn plan_relocation<S: PageSource + ?Sized>(
    src: &S,
    root: Root,
    limit: PageId,
    from: &[u8],
    max_leaves: usize,
    plan: &mut RelocationPlan,
) -> Result<()> {
    plan.clear();
    if root.is_none() {
        return Ok(());
    }
    let mut c = Cursor::new(src, root);
    c.seek(from)?;
    if c.key().is_none() {
        // `from` is past the last entry: only the path may need moving.
        if c.path().any(|n| n.id() >= limit) {
            let mut last = Cursor::new(src, root);
            if last.last()? {
                if let Some(k) = last.key() {
                    plan.push(k);
                }
            }
        }
        return Ok(());
    }
    loop {
        plan.looked += 1;
        if leaf_is_high(c.path(), limit) {
            if let Some(k) = c.key() {
                plan.push(k);
            }
        }
        if !c.next_leaf_first()? {
            return Ok(());
        }
        if plan.looked >= max_leaves.max(1) {
            plan.next = c.key().map(<[u8]>::to_vec);
            return Ok(());
        }
    }
}

/// Whether any page on a root-to-leaf path, or any overflow run of its
/// leaf (the last node), lies at or above `limit`.
fn leaf_is_high<'a>(path: impl Iterator<Item = Node<'a>>, limit: PageId) -> bool {
    let mut leaf = None;
    for n in path {
        if n.id() >= limit {
            return true;
        }
        leaf = Some(n);
    }
    leaf.is_some_and(|leaf| has_high_overflow(&leaf, limit))
}

/// Whether an overflow run of `leaf` starts at or above `limit`.
fn has_high_overflow(leaf: &Node<'_>, limit: PageId) -> bool {
    (0..leaf.count())
        .any(|i| matches!(leaf.value(i), ValueRef::Overflow { page, .. } if page.id >= limit))
}

/// Moves the leaf that holds `key` (or would) when it, a page above it, or
/// one of its overflow runs lies at or above `limit` in the tree as it is
/// now: every page on its path that is not yet dirty is copied to a new
/// page, and its overflow runs at or above the limit to free runs below
/// their current place. Returns the pages moved (0 when nothing was high).
pub fn relocate_leaf<W: PageStore>(
    w: &mut W,
    root: &mut Root,
    key: &[u8],
    limit: PageId,
) -> Result<usize> {
    let Some(clean) = high_path(&*w, *root, key, limit)? else {
        return Ok(0);
    };
    let (_, leaf) = dirty_path(w, root, key)?;
    let mut moved = clean;
    let count = Node::new(w.dirty(leaf)).count();
    for i in 0..count {
        let v = Node::new(w.dirty(leaf)).value(i);
        if let ValueRef::Overflow { page, len } = v {
            if page.id >= limit && page.txid != w.txid() {
                let copy = w.overflow(page, len)?.to_vec();
                // A run moved to the end of the file would only have to move
                // again: leave it where it is when no hole below is long
                // enough (the file then shrinks to just past it).
                if let Some(new) = w.write_overflow_below(&copy, page.id)? {
                    w.free_overflow(page, len);
                    NodeMut::new(w.dirty(leaf)).set_overflow(i, new);
                    moved += span_for(len as usize, w.limits().page_size) as usize;
                }
            }
        }
    }
    Ok(moved)
}

/// Descends by `key` as a dirtying edit would: Some(pages on the path not
/// yet dirty in this transaction) when the path or the leaf's overflow runs
/// reach `limit`, None when nothing there needs moving. (A run this
/// transaction wrote hangs from a leaf already dirty, so its path is too:
/// moving it then moves nothing.)
fn high_path<W: PageStore>(w: &W, root: Root, key: &[u8], limit: PageId) -> Result<Option<usize>> {
    if root.is_none() {
        return Ok(None);
    }
    let txid = w.txid();
    let mut node = w.node(root)?;
    let (mut high, mut clean) = (false, 0);
    for _ in 0..MAX_DEPTH {
        high |= node.id() >= limit;
        clean += usize::from(Header(node.bytes()).txid() != txid);
        if node.is_leaf() {
            high |= has_high_overflow(&node, limit);
            return Ok(high.then_some(clean));
        }
        node = w.node(node.child(node.child_index(key)))?;
    }
    Err(Error::corrupt(
        root.id,
        format!("tree deeper than {MAX_DEPTH} levels"),
    ))
}
