//! Slotted B+tree pages: how keys, values and child pointers sit in a page.
//!
//! After the 32-byte header comes an array of `count` little-endian `u16`
//! cell offsets in key order; cells are packed from the end of the page
//! downward, and the header's `word` holds the offset where the cell area
//! begins. Free space is the gap between the two.
//!
//! Leaf cell:   `klen u16 | flags u8 | vlen u32 | key | value`, or, when
//!              flags bit 0 is set, `... | key | overflow page u64 | txid u64 | crc u32`.
//! Branch cell: `klen u16 | child page u64 | child txid u64 | child crc u32 | key`.
//!
//! In a branch, cell 0's key is ignored (it stands for "minus infinity");
//! for i >= 1 every key under child i is >= key i and every key under child
//! i-1 is < key i.
//!
//! Every page read from the file passes [`validate`] once (with its checksum)
//! before any accessor here touches it, so the accessors may index without
//! re-checking bounds: a page that passed validation cannot make them panic.

use std::cmp::Ordering;

use crate::error::{Error, PageId, Result};
use crate::storage::page::{
    init_header, read_u16, read_u32, read_u64, set_count, set_word, write_u16, write_u32,
    write_u64, Header, PageKind, PageRef, HEADER_LEN,
};

const LEAF_CELL_HEADER: usize = 7;
const BRANCH_CELL_HEADER: usize = 22;
const OVERFLOW_REF_LEN: usize = 20;
const FLAG_OVERFLOW: u8 = 1;

/// Size limits that follow from the page size.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub page_size: usize,
    /// Largest cell cost (cell bytes plus its slot) allowed in a page: any
    /// two such cells fit in one page, which is what makes a split always
    /// succeed.
    pub max_cell_cost: usize,
    /// Largest key: small enough that a branch holds at least four children.
    pub max_key: usize,
}

impl Limits {
    pub fn new(page_size: usize) -> Limits {
        let body = page_size - HEADER_LEN;
        Limits {
            page_size,
            max_cell_cost: body / 2,
            max_key: body / 4 - BRANCH_CELL_HEADER - 2 - 16,
        }
    }

    /// Whether a key/value pair is stored inline in the leaf.
    pub fn inline(&self, key_len: usize, value_len: usize) -> bool {
        LEAF_CELL_HEADER + key_len + value_len + 2 <= self.max_cell_cost
    }
}

/// Where a leaf's value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// The value is in the leaf.
    Inline(&'a [u8]),
    /// The value fills an overflow run.
    Overflow { page: PageRef, len: u32 },
}

/// What to write as a new cell.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Leaf { key: &'a [u8], value: ValueRef<'a> },
    Branch { key: &'a [u8], child: PageRef },
}

impl Cell<'_> {
    pub fn len(&self) -> usize {
        match self {
            Cell::Leaf {
                key,
                value: ValueRef::Inline(v),
            } => LEAF_CELL_HEADER + key.len() + v.len(),
            Cell::Leaf {
                key,
                value: ValueRef::Overflow { .. },
            } => LEAF_CELL_HEADER + key.len() + OVERFLOW_REF_LEN,
            Cell::Branch { key, .. } => BRANCH_CELL_HEADER + key.len(),
        }
    }

    pub fn key(&self) -> &[u8] {
        match self {
            Cell::Leaf { key, .. } | Cell::Branch { key, .. } => key,
        }
    }

    fn write(&self, dst: &mut [u8]) {
        match *self {
            Cell::Leaf { key, value } => {
                write_u16(dst, 0, key.len() as u16);
                let k = LEAF_CELL_HEADER;
                dst[k..k + key.len()].copy_from_slice(key);
                let v = k + key.len();
                match value {
                    ValueRef::Inline(val) => {
                        dst[2] = 0;
                        write_u32(dst, 3, val.len() as u32);
                        dst[v..v + val.len()].copy_from_slice(val);
                    }
                    ValueRef::Overflow { page, len } => {
                        dst[2] = FLAG_OVERFLOW;
                        write_u32(dst, 3, len);
                        write_ref(dst, v, page);
                    }
                }
            }
            Cell::Branch { key, child } => {
                write_u16(dst, 0, key.len() as u16);
                write_ref(dst, 2, child);
                dst[BRANCH_CELL_HEADER..BRANCH_CELL_HEADER + key.len()].copy_from_slice(key);
            }
        }
    }
}

fn write_ref(dst: &mut [u8], at: usize, r: PageRef) {
    write_u64(dst, at, r.id);
    write_u64(dst, at + 8, r.txid);
    write_u32(dst, at + 16, r.crc);
}

fn read_ref(src: &[u8], at: usize) -> PageRef {
    PageRef {
        id: read_u64(src, at),
        txid: read_u64(src, at + 8),
        crc: read_u32(src, at + 16),
    }
}

/// A read-only view of a validated tree page.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    page: &'a [u8],
}

impl<'a> Node<'a> {
    pub fn new(page: &'a [u8]) -> Node<'a> {
        Node { page }
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.page
    }

    pub fn is_leaf(&self) -> bool {
        self.page[4] == PageKind::Leaf as u8
    }

    pub fn count(&self) -> usize {
        Header(self.page).count()
    }

    pub fn id(&self) -> PageId {
        Header(self.page).id()
    }

    #[inline]
    fn offset(&self, i: usize) -> usize {
        read_u16(self.page, HEADER_LEN + 2 * i) as usize
    }

    #[inline]
    pub fn key(&self, i: usize) -> &'a [u8] {
        self.key_with(i, self.cell_header())
    }

    /// Bytes before the key in this page's cells.
    #[inline]
    fn cell_header(&self) -> usize {
        if self.is_leaf() {
            LEAF_CELL_HEADER
        } else {
            BRANCH_CELL_HEADER
        }
    }

    /// Key `i` given the cell header size (hoisted out of search loops).
    #[inline(always)]
    fn key_with(&self, i: usize, cell_header: usize) -> &'a [u8] {
        let page = self.page;
        let o = read_u16(page, HEADER_LEN + 2 * i) as usize;
        let klen = read_u16(page, o) as usize;
        let start = o + cell_header;
        &page[start..start + klen]
    }

    /// The value of leaf cell `i`.
    #[inline]
    pub fn value(&self, i: usize) -> ValueRef<'a> {
        let o = self.offset(i);
        let klen = read_u16(self.page, o) as usize;
        let vlen = read_u32(self.page, o + 3);
        let v = o + LEAF_CELL_HEADER + klen;
        if self.page[o + 2] & FLAG_OVERFLOW != 0 {
            ValueRef::Overflow {
                page: read_ref(self.page, v),
                len: vlen,
            }
        } else {
            ValueRef::Inline(&self.page[v..v + vlen as usize])
        }
    }

    /// Key and value of leaf cell `i`, reading its slot and header once
    /// (the scan loop's accessor).
    #[inline]
    pub fn leaf_entry(&self, i: usize) -> (&'a [u8], ValueRef<'a>) {
        let page = self.page;
        let o = read_u16(page, HEADER_LEN + 2 * i) as usize;
        let klen = read_u16(page, o) as usize;
        let flags = page[o + 2];
        let vlen = read_u32(page, o + 3);
        let k = o + LEAF_CELL_HEADER;
        let v = k + klen;
        let key = &page[k..v];
        if flags & FLAG_OVERFLOW != 0 {
            (
                key,
                ValueRef::Overflow {
                    page: read_ref(page, v),
                    len: vlen,
                },
            )
        } else {
            (key, ValueRef::Inline(&page[v..v + vlen as usize]))
        }
    }

    /// The child pointer of branch cell `i`.
    #[inline]
    pub fn child(&self, i: usize) -> PageRef {
        read_ref(self.page, self.offset(i) + 2)
    }

    /// The cell `i` as a [`Cell`] that can be written elsewhere.
    pub fn cell(&self, i: usize) -> Cell<'a> {
        if self.is_leaf() {
            Cell::Leaf {
                key: self.key(i),
                value: self.value(i),
            }
        } else {
            Cell::Branch {
                key: self.key(i),
                child: self.child(i),
            }
        }
    }

    /// Leaf: the index of `key`, or where it would be inserted.
    #[inline]
    pub fn search(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        let (mut lo, mut hi) = (0usize, self.count());
        let ch = self.cell_header();
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key_with(mid, ch).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Branch: the index of the child whose subtree may hold `key`.
    #[inline]
    pub fn child_index(&self, key: &[u8]) -> usize {
        // The last i >= 1 with key(i) <= key, else 0.
        let (mut lo, mut hi) = (1usize, self.count());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key_with(mid, BRANCH_CELL_HEADER) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - 1
    }

    /// Bytes of cell `i` plus its slot.
    pub fn cell_cost(&self, i: usize) -> usize {
        self.cell_len(i) + 2
    }

    /// The bytes of cell `i`: `self.cell(i).len()`, read from its header
    /// alone ([`Node::used`] sums these over the page).
    #[inline]
    fn cell_len(&self, i: usize) -> usize {
        let page = self.page;
        let o = read_u16(page, HEADER_LEN + 2 * i) as usize;
        let klen = read_u16(page, o) as usize;
        if !self.is_leaf() {
            BRANCH_CELL_HEADER + klen
        } else if page[o + 2] & FLAG_OVERFLOW != 0 {
            LEAF_CELL_HEADER + klen + OVERFLOW_REF_LEN
        } else {
            LEAF_CELL_HEADER + klen + read_u32(page, o + 3) as usize
        }
    }

    /// Bytes used by the header, the slots and the live cells.
    pub fn used(&self) -> usize {
        HEADER_LEN + (0..self.count()).map(|i| self.cell_cost(i)).sum::<usize>()
    }

    /// Bytes outside the free gap between the slots and the cell area:
    /// [`Node::used`] plus the bytes of removed cells not yet reclaimed.
    /// Never less than `used()`, so a page that looks full enough or too
    /// full to merge by it is left alone, which is always safe; and equal
    /// to it on every page this code wrote, since a removal closes its hole
    /// at once ([`NodeMut::remove`]). Constant time: the fill checks after
    /// every removal ask it of a branch and its siblings, where summing
    /// `used()` over a hundred cells each was a tenth of a compaction.
    pub fn occupied(&self) -> usize {
        let h = Header(self.page);
        HEADER_LEN + 2 * h.count() + (self.page.len() - h.word() as usize)
    }
}

/// Checks that a page's cells lie inside it and its keys are in order, so
/// that [`Node`]'s accessors cannot go out of bounds. Called once per page
/// per handle, together with the checksum.
pub fn validate(page: &[u8], id: PageId, limits: &Limits) -> Result<()> {
    let h = Header(page);
    let leaf = match PageKind::from_byte(h.kind_byte()) {
        Some(PageKind::Leaf) => true,
        Some(PageKind::Branch) => false,
        _ => return Err(Error::corrupt(id, "not a tree page")),
    };
    let bad = |what: String| Err(Error::corrupt(id, what));
    let ps = page.len();
    let count = h.count();
    if h.span() != 1 {
        return bad(format!("tree page with span {}", h.span()));
    }
    let cells_start = h.word() as usize;
    if HEADER_LEN + 2 * count > cells_start || cells_start > ps {
        return bad(format!(
            "{count} slots overlap the cell area at {cells_start}"
        ));
    }
    if !leaf && count == 0 {
        return bad("branch page without children".into());
    }
    let node = Node::new(page);
    for i in 0..count {
        let o = node.offset(i);
        let fixed = if leaf {
            LEAF_CELL_HEADER
        } else {
            BRANCH_CELL_HEADER
        };
        if o < cells_start || o + fixed > ps {
            return bad(format!("cell {i} at offset {o} lies outside the cell area"));
        }
        let klen = read_u16(page, o) as usize;
        let mut end = o + fixed + klen;
        if leaf {
            let flags = page[o + 2];
            let vlen = read_u32(page, o + 3) as usize;
            end += if flags & FLAG_OVERFLOW != 0 {
                OVERFLOW_REF_LEN
            } else {
                vlen
            };
            if flags & !FLAG_OVERFLOW != 0 {
                return bad(format!("cell {i} has unknown flags {flags:#x}"));
            }
        }
        if end > ps {
            return bad(format!("cell {i} runs past the end of the page"));
        }
        if i > 0 && (leaf || i > 1) && node.key(i - 1) >= node.key(i) {
            return bad(format!("keys {} and {i} are out of order", i - 1));
        }
        if !leaf {
            let child = node.child(i).id;
            if child < 2 {
                return bad(format!("cell {i} points at meta page {child}"));
            }
        }
    }
    let _ = limits;
    Ok(())
}

/// A mutable tree page being built or edited by the writer.
pub struct NodeMut<'a> {
    page: &'a mut [u8],
}

impl<'a> NodeMut<'a> {
    pub fn new(page: &'a mut [u8]) -> NodeMut<'a> {
        NodeMut { page }
    }

    /// Formats an empty page.
    pub fn init(page: &'a mut [u8], kind: PageKind, id: PageId, txid: u64) -> NodeMut<'a> {
        init_header(page, kind, id, txid, 1);
        let len = page.len();
        set_word(page, len as u32);
        NodeMut { page }
    }

    pub fn view(&self) -> Node<'_> {
        Node::new(self.page)
    }

    fn cells_start(&self) -> usize {
        Header(self.page).word() as usize
    }

    fn free_space(&self) -> usize {
        self.cells_start() - HEADER_LEN - 2 * self.view().count()
    }

    /// Inserts `cell` at slot `i`. Returns false, leaving the page as it was,
    /// when the cell does not fit even after compaction.
    pub fn insert(&mut self, i: usize, cell: &Cell<'_>, scratch: &mut Vec<u8>) -> bool {
        let len = cell.len();
        if self.free_space() < len + 2 {
            if self.view().used() + len + 2 > self.page.len() {
                return false;
            }
            self.compact(scratch);
        }
        let count = self.view().count();
        let start = self.cells_start() - len;
        cell.write(&mut self.page[start..start + len]);
        let slots = HEADER_LEN + 2 * i;
        self.page
            .copy_within(slots..HEADER_LEN + 2 * count, slots + 2);
        write_u16(self.page, slots, start as u16);
        set_count(self.page, count + 1);
        set_word(self.page, start as u32);
        true
    }

    /// Removes slot `i` and closes the hole its cell leaves: the cells
    /// below it in the page move up by its length, so pages edited here
    /// hold no unreclaimed bytes and [`Node::occupied`] is exact for them.
    /// Bytes a page already had unreclaimed (from an older build) move
    /// with the block between the cell area's start and the hole. A page
    /// whose cells overlap (damage that passed its checksum) keeps the
    /// hole instead: moving its cells could push one past the page's end.
    pub fn remove(&mut self, i: usize) {
        let view = self.view();
        let count = view.count();
        let o = view.offset(i);
        let len = view.cell(i).len();
        let start = self.cells_start();
        let slots = HEADER_LEN + 2 * i;
        let movable = (0..count).filter(|&j| j != i).all(|j| {
            let s = view.offset(j);
            match s < o {
                true => s + view.cell_len(j) <= o,
                false => s >= o + len,
            }
        });
        self.page
            .copy_within(slots + 2..HEADER_LEN + 2 * count, slots);
        set_count(self.page, count - 1);
        if !movable {
            if o == start {
                set_word(self.page, (o + len) as u32);
            }
            return;
        }
        self.page.copy_within(start..o, start + len);
        for j in 0..count - 1 {
            let at = HEADER_LEN + 2 * j;
            let s = read_u16(self.page, at) as usize;
            if s < o {
                write_u16(self.page, at, (s + len) as u16);
            }
        }
        set_word(self.page, (start + len) as u32);
    }

    /// Points branch cell `i` at a new child, in place.
    pub fn set_child(&mut self, i: usize, child: PageRef) {
        let o = self.view().offset(i);
        write_ref(self.page, o + 2, child);
    }

    /// Points leaf cell `i`'s overflow value at a new run, in place.
    pub fn set_overflow(&mut self, i: usize, page: PageRef) {
        let o = self.view().offset(i);
        let klen = read_u16(self.page, o) as usize;
        debug_assert!(self.page[o + 2] & FLAG_OVERFLOW != 0);
        write_ref(self.page, o + LEAF_CELL_HEADER + klen, page);
    }

    /// Rewrites the cells contiguously at the end of the page.
    fn compact(&mut self, scratch: &mut Vec<u8>) {
        scratch.clear();
        scratch.extend_from_slice(self.page);
        let old = Node::new(scratch);
        let count = old.count();
        let mut start = self.page.len();
        for i in 0..count {
            let cell = old.cell(i);
            start -= cell.len();
            cell.write(&mut self.page[start..start + cell.len()]);
            write_u16(self.page, HEADER_LEN + 2 * i, start as u16);
        }
        set_word(self.page, start as u32);
    }

    /// Replaces the page's cells with `cells`, which must fit.
    pub fn rebuild<'c>(&mut self, cells: impl Iterator<Item = Cell<'c>>) {
        let mut start = self.page.len();
        let mut n = 0;
        for cell in cells {
            start -= cell.len();
            cell.write(&mut self.page[start..start + cell.len()]);
            write_u16(self.page, HEADER_LEN + 2 * n, start as u16);
            n += 1;
        }
        debug_assert!(HEADER_LEN + 2 * n <= start);
        set_count(self.page, n);
        set_word(self.page, start as u32);
    }
}

/// The shortest key `s` with `left < s <= right`, used as a leaf split's
/// separator so that branches hold short keys and fan out wider.
pub fn separator<'k>(left: &[u8], right: &'k [u8]) -> &'k [u8] {
    debug_assert!(left < right);
    let common = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    &right[..(common + 1).min(right.len())]
}

/// Chooses where to split `n` cells whose costs in order are `cost(i)` so
/// that both halves fit in `capacity` bytes, as evenly as possible; with
/// `append` set the left half is filled as full as it can be (sequential
/// inserts then leave full pages behind). Returns the number of cells that
/// go left. Costs are asked for, not collected: a split allocates nothing.
pub fn split_point(
    n: usize,
    cost: impl Fn(usize) -> usize,
    capacity: usize,
    append: bool,
) -> usize {
    debug_assert!(n >= 2);
    let total: usize = (0..n).map(&cost).sum();
    if append {
        // Everything but the last cell stays left when it fits.
        let left = total - cost(n - 1);
        if left <= capacity {
            return n - 1;
        }
    }
    let mut acc = 0;
    let mut best = 1;
    let mut best_max = usize::MAX;
    for k in 0..n - 1 {
        acc += cost(k);
        let worst = acc.max(total - acc);
        if worst < best_max && acc <= capacity && total - acc <= capacity {
            best_max = worst;
            best = k + 1;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(ps: usize) -> Vec<u8> {
        let mut p = vec![0u8; ps];
        NodeMut::init(&mut p, PageKind::Leaf, 5, 1);
        p
    }

    #[test]
    fn a_cells_length_read_from_its_header_is_the_cells_length() {
        let child = PageRef {
            id: 9,
            txid: 3,
            crc: 7,
        };
        let mut scratch = Vec::new();
        let mut p = leaf(4096);
        let mut n = NodeMut::new(&mut p);
        let cells = [
            Cell::Leaf {
                key: b"a",
                value: ValueRef::Inline(b"xyz"),
            },
            Cell::Leaf {
                key: b"bb",
                value: ValueRef::Overflow {
                    page: child,
                    len: 70_000,
                },
            },
            Cell::Leaf {
                key: b"ccc",
                value: ValueRef::Inline(b""),
            },
        ];
        for (i, cell) in cells.iter().enumerate() {
            assert!(n.insert(i, cell, &mut scratch));
        }
        let mut b = vec![0u8; 4096];
        NodeMut::init(&mut b, PageKind::Branch, 6, 1);
        let mut m = NodeMut::new(&mut b);
        for (i, key) in [&b""[..], b"k", b"kkkk"].into_iter().enumerate() {
            assert!(m.insert(i, &Cell::Branch { key, child }, &mut scratch));
        }
        for page in [&p, &b] {
            let v = Node::new(page);
            for i in 0..v.count() {
                assert_eq!(v.cell_len(i), v.cell(i).len(), "cell {i}");
            }
        }
    }

    #[test]
    fn insert_remove_compact() {
        let mut p = leaf(512);
        let mut scratch = Vec::new();
        let mut n = NodeMut::new(&mut p);
        let keys: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'k', i]).collect();
        for (i, k) in keys.iter().enumerate() {
            let cell = Cell::Leaf {
                key: k,
                value: ValueRef::Inline(b"0123456789"),
            };
            assert!(n.insert(i, &cell, &mut scratch));
        }
        for i in (0..20).step_by(2).rev() {
            n.remove(i);
        }
        // Room freed by removals is found again through compaction.
        let mut i = 0;
        while n.insert(
            0,
            &Cell::Leaf {
                key: b"a",
                value: ValueRef::Inline(&[7; 10]),
            },
            &mut scratch,
        ) {
            n.remove(0);
            i += 1;
            if i > 3 {
                break;
            }
        }
        let v = n.view();
        assert_eq!(v.count(), 10);
        for i in 0..10 {
            assert_eq!(v.key(i), &[b'k', (2 * i + 1) as u8]);
            assert_eq!(v.value(i), ValueRef::Inline(b"0123456789"));
        }
        validate(&p, 5, &Limits::new(512)).unwrap();
    }

    /// A leaf of `n` cells keyed `k0, k1, ...` with values of varied length.
    fn leaf_of(n: u8) -> Vec<u8> {
        let mut p = leaf(4096);
        let mut scratch = Vec::new();
        let mut m = NodeMut::new(&mut p);
        for i in 0..n {
            let value = vec![i; 10 + 37 * i as usize];
            let cell = Cell::Leaf {
                key: &[b'k', i],
                value: ValueRef::Inline(&value),
            };
            assert!(m.insert(i as usize, &cell, &mut scratch));
        }
        p
    }

    fn keys_and_values(p: &[u8]) -> Vec<(Vec<u8>, usize)> {
        let v = Node::new(p);
        (0..v.count())
            .map(|i| match v.value(i) {
                ValueRef::Inline(value) => {
                    assert!(value.iter().all(|&b| b == v.key(i)[1]), "value of cell {i}");
                    (v.key(i).to_vec(), value.len())
                }
                ValueRef::Overflow { .. } => unreachable!("inline values only"),
            })
            .collect()
    }

    #[test]
    fn a_removal_closes_its_hole_so_occupied_is_exact() {
        let mut p = leaf_of(12);
        let mut left: Vec<u8> = (0..12).collect();
        // Middle, first, last and in between, in an order that leaves
        // cells on both sides of each hole.
        for k in [5u8, 0, 11, 3, 8, 1, 10, 6] {
            let at = left.iter().position(|&x| x == k).unwrap();
            NodeMut::new(&mut p).remove(at);
            left.remove(at);
            let v = Node::new(&p);
            assert_eq!(v.occupied(), v.used(), "after removing k{k}");
            validate(&p, 5, &Limits::new(4096)).unwrap();
            let expected: Vec<(Vec<u8>, usize)> = left
                .iter()
                .map(|&i| (vec![b'k', i], 10 + 37 * i as usize))
                .collect();
            assert_eq!(keys_and_values(&p), expected, "after removing k{k}");
        }
    }

    #[test]
    fn a_removal_keeps_bytes_an_older_build_left_unreclaimed() {
        let mut p = leaf_of(6);
        // An older build's removal of slot 2: the slot goes, its cell's
        // bytes stay where they were.
        let count = Node::new(&p).count();
        p.copy_within(HEADER_LEN + 6..HEADER_LEN + 2 * count, HEADER_LEN + 4);
        set_count(&mut p, count - 1);
        let v = Node::new(&p);
        let garbage = v.occupied() - v.used();
        assert_eq!(
            garbage,
            Cell::Leaf {
                key: b"k2",
                value: ValueRef::Inline(&[2; 84]),
            }
            .len()
        );
        NodeMut::new(&mut p).remove(3); // k4
        let v = Node::new(&p);
        assert_eq!(v.occupied() - v.used(), garbage, "the old hole stays");
        validate(&p, 5, &Limits::new(4096)).unwrap();
        let expected: Vec<(Vec<u8>, usize)> = [0u8, 1, 3, 5]
            .iter()
            .map(|&i| (vec![b'k', i], 10 + 37 * i as usize))
            .collect();
        assert_eq!(keys_and_values(&p), expected);
    }

    #[test]
    fn a_removal_from_a_page_whose_cells_overlap_moves_nothing() {
        // Damage that passes validation: the third cell's slot points into
        // k1's value, where a well-formed cell "k9" was written (keys here
        // are `k` and a byte, so k9 sorts last). Removing k1
        // and closing its hole would overwrite k9; the page keeps the hole
        // instead, and k9 stays readable.
        let mut p = leaf_of(3);
        let inner = Node::new(&p).offset(1) + LEAF_CELL_HEADER + 2 + 8;
        p[inner..inner + 9].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, b'k', b'9']);
        write_u16(&mut p, HEADER_LEN + 4, inner as u16);
        validate(&p, 5, &Limits::new(4096)).unwrap();
        let mut q = p.clone();
        NodeMut::new(&mut p).remove(1);
        let v = Node::new(&p);
        assert_eq!((v.count(), v.key(1)), (2, &b"k9"[..]));
        // Removing k0, which nothing overlaps, closes its hole as usual.
        NodeMut::new(&mut q).remove(0);
        let v = Node::new(&q);
        assert_eq!((v.key(0), v.key(1)), (&[b'k', 1][..], &b"k9"[..]));
        validate(&q, 5, &Limits::new(4096)).unwrap();
    }

    #[test]
    fn full_page_refuses() {
        let mut p = leaf(512);
        let mut scratch = Vec::new();
        let mut n = NodeMut::new(&mut p);
        let big = vec![1u8; 200];
        assert!(n.insert(
            0,
            &Cell::Leaf {
                key: b"a",
                value: ValueRef::Inline(&big)
            },
            &mut scratch
        ));
        assert!(n.insert(
            1,
            &Cell::Leaf {
                key: b"b",
                value: ValueRef::Inline(&big)
            },
            &mut scratch
        ));
        assert!(!n.insert(
            2,
            &Cell::Leaf {
                key: b"c",
                value: ValueRef::Inline(&big)
            },
            &mut scratch
        ));
        assert_eq!(n.view().count(), 2);
    }

    #[test]
    fn separators_and_split_points() {
        assert_eq!(separator(b"abc", b"abd"), b"abd");
        assert_eq!(separator(b"ab", b"abzz"), b"abz");
        assert_eq!(separator(b"a", b"b"), b"b");
        assert_eq!(split_point(4, |i| [10, 10, 10, 10][i], 100, false), 2);
        assert_eq!(split_point(4, |i| [10, 10, 10, 10][i], 100, true), 3);
        assert_eq!(split_point(4, |i| [60, 10, 10, 60][i], 80, true), 3);
        assert_eq!(split_point(4, |i| [60, 10, 10, 60][i], 79, true), 2);
    }

    #[test]
    fn branch_child_index() {
        let mut p = vec![0u8; 512];
        let mut scratch = Vec::new();
        let mut n = NodeMut::init(&mut p, PageKind::Branch, 3, 1);
        for (i, k) in [&b""[..], b"g", b"p"].iter().enumerate() {
            let child = PageRef {
                id: 10 + i as u64,
                txid: 1,
                crc: 9,
            };
            assert!(n.insert(i, &Cell::Branch { key: k, child }, &mut scratch));
        }
        let v = n.view();
        assert_eq!(v.child_index(b"a"), 0);
        assert_eq!(v.child_index(b"g"), 1);
        assert_eq!(v.child_index(b"o"), 1);
        assert_eq!(v.child_index(b"p"), 2);
        assert_eq!(v.child_index(b"zzz"), 2);
        assert_eq!(
            v.child(2),
            PageRef {
                id: 12,
                txid: 1,
                crc: 9
            }
        );
    }
}
