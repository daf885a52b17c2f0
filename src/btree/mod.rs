//! The copy-on-write B+tree: node layout, cursors and the writer's edits.
//!
//! The tree never changes a page that a committed snapshot can reach: the
//! writer copies every page on the path it edits ("makes it dirty") and the
//! commit publishes the new root. Pages are reached through a [`PageSource`],
//! which for a reader is the mapped file and for the writer its dirty pages
//! first and the file second.

pub mod cursor;
pub mod node;
pub mod relocate;
pub mod write;

use crate::error::Result;
use crate::storage::page::PageRef;
use node::{Limits, Node, ValueRef};

/// Deepest tree a cursor follows. With at least four children per branch
/// (see [`Limits::max_key`]) 24 levels hold far more than 2^40 entries; a
/// deeper chain can only come from a corrupt file.
pub const MAX_DEPTH: usize = 24;

/// The root of a tree: a pointer to its root page, or [`PageRef::NONE`]
/// for an empty tree.
pub type Root = PageRef;

/// Where tree pages come from.
pub trait PageSource {
    /// Size limits of this file.
    fn limits(&self) -> &Limits;
    /// The tree page its parent points at with `at`, checked (header and
    /// expected checksum always, computed checksum and layout once per
    /// handle).
    fn node(&self, at: PageRef) -> Result<Node<'_>>;
    /// The bytes of an overflow run holding a value of `len` bytes.
    fn overflow(&self, at: PageRef, len: u32) -> Result<&[u8]>;

    /// A hint that the page `at` points to will be read soon (see
    /// `Mapping::prefetch`); unchecked, so it must not be relied on.
    #[inline]
    fn prefetch(&self, _at: PageRef) {}

    /// The bytes of a leaf value wherever it lives.
    fn value<'a>(&'a self, v: ValueRef<'a>) -> Result<&'a [u8]> {
        match v {
            ValueRef::Inline(b) => Ok(b),
            ValueRef::Overflow { page, len } => self.overflow(page, len),
        }
    }
}

/// Point lookup: descends from `root` to the leaf that may hold `key`.
pub fn get<'a, S: PageSource + ?Sized>(
    src: &'a S,
    root: Root,
    key: &[u8],
) -> Result<Option<&'a [u8]>> {
    if root.is_none() {
        return Ok(None);
    }
    let mut node = src.node(root)?;
    for _ in 0..MAX_DEPTH {
        if node.is_leaf() {
            return match node.search(key) {
                Ok(i) => src.value(node.value(i)).map(Some),
                Err(_) => Ok(None),
            };
        }
        node = src.node(node.child(node.child_index(key)))?;
    }
    Err(crate::error::Error::corrupt(
        root.id,
        format!("tree deeper than {MAX_DEPTH} levels"),
    ))
}
