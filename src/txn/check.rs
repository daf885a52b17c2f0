//! The full integrity check behind [`Db::check`](crate::Db::check) and
//! `revkv check`.

use super::open::load_freelist;
use super::read::ReadTxn;
use super::table::TableRecord;
use crate::btree::node::{self, Node, ValueRef};
use crate::btree::{Root, MAX_DEPTH};
use crate::error::{Error, PageId, Result};
use crate::storage::meta::Meta;
use crate::storage::page::{check_header, span_for, verify_checksum, PageKind};

/// What [`Db::check`](crate::Db::check) found in a healthy file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The commit that was checked.
    pub txid: u64,
    /// Pages allocated in the file (high-water mark).
    pub allocated_pages: u64,
    /// Pages reachable from the commit (meta pages included).
    pub reachable_pages: u64,
    /// Pages on the free list.
    pub free_pages: u64,
    /// Each table's name and number of entries.
    pub tables: Vec<(String, u64)>,
}

/// Marks pages as seen, failing on a page reached twice.
pub(super) struct Seen {
    bits: Vec<u64>,
    count: u64,
    hwm: u64,
}

impl Seen {
    /// Nothing seen yet of a file of `hwm` pages.
    pub(super) fn new(hwm: u64) -> Seen {
        Seen {
            bits: vec![0; hwm.div_ceil(64) as usize],
            count: 0,
            hwm,
        }
    }

    pub(super) fn mark(&mut self, id: PageId, span: u64, what: &str) -> Result<()> {
        if id.checked_add(span).is_none_or(|end| end > self.hwm) {
            return Err(Error::corrupt(
                id,
                format!("{what} points past the end of the file ({span} pages)"),
            ));
        }
        for p in id..id + span {
            let (w, b) = ((p / 64) as usize, 1u64 << (p % 64));
            if self.bits[w] & b != 0 {
                return Err(Error::corrupt(
                    p,
                    format!("{what} reaches a page that is already in use"),
                ));
            }
            self.bits[w] |= b;
            self.count += 1;
        }
        Ok(())
    }
}

pub(crate) fn check(r: &ReadTxn) -> Result<CheckReport> {
    let hwm = r.hwm();
    let mut seen = Seen::new(hwm);
    seen.mark(0, 2, "the meta pages")?;
    let mut tables = Vec::new();
    let mut records = Vec::new();
    walk(
        r,
        &mut seen,
        r.catalog(),
        "the catalog",
        &mut |key, value| {
            let rec = TableRecord::decode(value, key)?;
            records.push((String::from_utf8_lossy(key).into_owned(), rec));
            Ok(())
        },
    )?;
    for (name, rec) in records {
        let mut entries = 0u64;
        walk(
            r,
            &mut seen,
            rec.root,
            &format!("table {name:?}"),
            &mut |_, _| {
                entries += 1;
                Ok(())
            },
        )?;
        if entries != rec.len {
            return Err(Error::corrupt(
                rec.root.id,
                format!(
                    "table {name:?} holds {entries} entries but the catalog records {}",
                    rec.len
                ),
            ));
        }
        tables.push((name, entries));
    }
    let reachable = seen.count;
    let (fl, span) = r.freelist;
    let meta = Meta {
        page_size: r.mapped().limits.page_size as u32,
        txid: r.txid(),
        catalog: r.catalog(),
        freelist: fl,
        freelist_span: span,
        flags: 0,
        hwm,
        written_pages: 0,
        synced_txid: 0,
    };
    let free = load_freelist(&meta, r.mapped())?;
    if !fl.is_none() {
        seen.mark(fl.id, span as u64, "the free list's own run")?;
    }
    for (start, len) in free.iter() {
        seen.mark(start, len, "the free list")?;
    }
    if seen.count != hwm {
        let leaked = (0..hwm)
            .find(|&p| seen.bits[(p / 64) as usize] & (1 << (p % 64)) == 0)
            .unwrap_or(0);
        return Err(Error::corrupt(
            leaked,
            format!(
                "{} pages are neither reachable nor free (leaked)",
                hwm - seen.count
            ),
        ));
    }
    Ok(CheckReport {
        txid: r.txid(),
        allocated_pages: hwm,
        reachable_pages: reachable + if fl.is_none() { 0 } else { span as u64 },
        free_pages: free.pages(),
        tables,
    })
}

/// What a walk calls for each entry: key and value.
type VisitEntry<'v> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'v;

/// Walks one tree depth-first, checking every page fully and the key order
/// across pages, and calls `visit` for each entry in order.
fn walk(
    r: &ReadTxn,
    seen: &mut Seen,
    root: Root,
    what: &str,
    visit: &mut VisitEntry<'_>,
) -> Result<()> {
    if root.is_none() {
        return Ok(());
    }
    let pages = r.mapped();
    let limits = pages.limits;
    let mut leaf_depth = None;
    let mut last_key: Option<Vec<u8>> = None;
    // (page, depth, bounds from the parent: lower inclusive, upper exclusive)
    type Bounds = (Option<Vec<u8>>, Option<Vec<u8>>);
    let mut stack: Vec<(crate::storage::page::PageRef, usize, Bounds)> =
        vec![(root, 0, (None, None))];
    while let Some((at, depth, (lower, upper))) = stack.pop() {
        if depth >= MAX_DEPTH {
            return Err(Error::corrupt(
                at.id,
                format!("{what} is deeper than {MAX_DEPTH} levels"),
            ));
        }
        seen.mark(at.id, 1, what)?;
        let bytes = pages
            .node(at, &r.shared().verified, &r.shared().unwritten)?
            .bytes();
        // Checked again in full, whatever this handle verified before.
        verify_checksum(bytes, at.id)?;
        node::validate(bytes, at.id, &limits)?;
        let n = Node::new(bytes);
        check_header(
            bytes,
            at,
            if n.is_leaf() {
                PageKind::Leaf
            } else {
                PageKind::Branch
            },
        )?;
        let first_real = usize::from(!n.is_leaf());
        for i in first_real..n.count() {
            let k = n.key(i);
            if lower.as_deref().is_some_and(|lo| k < lo)
                || upper.as_deref().is_some_and(|hi| k >= hi)
            {
                return Err(Error::corrupt(
                    at.id,
                    format!("{what}: key {i} lies outside its parent's separators"),
                ));
            }
        }
        if n.is_leaf() {
            match leaf_depth {
                None => leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    return Err(Error::corrupt(
                        at.id,
                        format!("{what}: leaves at depths {d} and {depth}"),
                    ))
                }
                _ => {}
            }
            for i in 0..n.count() {
                let key = n.key(i);
                if last_key.as_deref().is_some_and(|k| k >= key) {
                    return Err(Error::corrupt(
                        at.id,
                        format!("{what}: keys out of order across pages"),
                    ));
                }
                last_key = Some(key.to_vec());
                let value = match n.value(i) {
                    ValueRef::Inline(v) => v,
                    ValueRef::Overflow { page, len } => {
                        let span = span_for(len as usize, limits.page_size) as u64;
                        seen.mark(page.id, span, what)?;
                        let v = pages.overflow(
                            page,
                            len,
                            &r.shared().verified,
                            &r.shared().unwritten,
                        )?;
                        let run = pages.mapping.bytes(
                            page.id as usize * limits.page_size,
                            span as usize * limits.page_size,
                        );
                        verify_checksum(run, page.id)?;
                        v
                    }
                };
                visit(key, value)?;
            }
        } else {
            // Push right to left so children are visited in key order.
            for i in (0..n.count()).rev() {
                let lo = if i == 0 {
                    lower.clone()
                } else {
                    Some(n.key(i).to_vec())
                };
                let hi = if i + 1 == n.count() {
                    upper.clone()
                } else {
                    Some(n.key(i + 1).to_vec())
                };
                stack.push((n.child(i), depth + 1, (lo, hi)));
            }
        }
    }
    Ok(())
}
