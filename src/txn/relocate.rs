//! Relocation for defragmentation, across the database's trees: which
//! leaves to move is planned on a snapshot ([`ReadTxn::plan_relocations`]),
//! without the writer, and a write transaction moves them
//! ([`WriteTxn::relocate`](crate::WriteTxn)), a few at a time. The writer
//! then holds the lock only for the copies, never for the walk over leaves
//! that need nothing (see `btree::relocate`).

use crate::btree::relocate::{plan_relocation, RelocationPlan};
use crate::error::{PageId, Result};
use crate::txn::read::ReadTxn;

/// Where a relocation pass stands: tree 0 is the catalog, tree i > 0 the
/// i-th table in name order (in the snapshot planned on); `key` is the key
/// to resume at.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelocatePosition {
    tree: usize,
    key: Vec<u8>,
}

/// Leaves of one tree to move, planned on a snapshot, and how many of them
/// were moved.
#[derive(Debug, Default)]
pub(crate) struct Relocations {
    /// The table planned, or None for the catalog.
    pub(crate) table: Option<String>,
    pub(crate) plan: RelocationPlan,
    pub(crate) applied: usize,
}

impl Relocations {
    /// Whether every planned leaf was handled.
    pub(crate) fn is_used_up(&self) -> bool {
        self.applied >= self.plan.len()
    }
}

impl ReadTxn {
    /// Plans, in `out`, the next leaves to move from `pos` on: those with a
    /// page or an overflow run at or above `limit`, in this snapshot. Looks
    /// at about `max_leaves` leaves; `out` may then be empty. Returns true
    /// once every tree was passed (and `out` is empty).
    pub(crate) fn plan_relocations(
        &self,
        limit: PageId,
        pos: &mut RelocatePosition,
        max_leaves: usize,
        out: &mut Relocations,
    ) -> Result<bool> {
        out.applied = 0;
        let mut looked = 0;
        loop {
            let (table, root) = if pos.tree == 0 {
                (None, self.catalog())
            } else {
                let names = self.table_names()?;
                let Some(name) = names.into_iter().nth(pos.tree - 1) else {
                    out.plan = RelocationPlan::default();
                    return Ok(true);
                };
                let root = self.open_table(&name)?.record.root;
                (Some(name), root)
            };
            let budget = max_leaves.saturating_sub(looked).max(1);
            plan_relocation(self, root, limit, &pos.key, budget, &mut out.plan)?;
            out.table = table;
            looked += out.plan.looked;
            match out.plan.next.take() {
                Some(k) => pos.key = k,
                None => {
                    pos.tree += 1;
                    pos.key.clear();
                }
            }
            if !out.plan.is_empty() || looked >= max_leaves {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::btree::node::ValueRef;
    use crate::btree::{PageSource, Root};
    use crate::storage::page::{span_for, PageRef};
    use crate::{Db, TxnRead};

    type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

    fn key(i: u32) -> Vec<u8> {
        format!("key-{i:06}").into_bytes()
    }

    /// Values of 100 bytes, every 50th one large enough for an overflow run.
    fn value(i: u32, round: u8) -> Vec<u8> {
        let len = if i.is_multiple_of(50) { 9_000 } else { 100 };
        vec![round ^ (i as u8); len]
    }

    /// Two tables of 20,000 entries each, the first 19,000 of each then
    /// removed: the survivors lie far beyond the pages they need. Every
    /// 50th value has an overflow run.
    fn fragmented(dir: &std::path::Path) -> (Db, Model) {
        let db = Db::open(dir.join("db")).unwrap();
        let mut model = Model::new();
        for name in ["a", "b"] {
            let mut w = db.begin_write().unwrap();
            let t = w.open_table(name).unwrap();
            for i in 0..20_000 {
                w.insert(t, &key(i), &value(i, 1)).unwrap();
            }
            w.commit().unwrap();
        }
        let mut w = db.begin_write().unwrap();
        for name in ["a", "b"] {
            let t = w.open_table(name).unwrap();
            for i in 0..19_000 {
                w.remove(t, &key(i)).unwrap();
            }
            let m = model.entry(name.to_string()).or_default();
            for i in 19_000..20_000 {
                m.insert(key(i), value(i, 1));
            }
        }
        w.commit().unwrap();
        // The leaves holding overflow runs copied low (a neighbour
        // rewritten) while the runs stay high: there only the runs need
        // moving.
        let mut w = db.begin_write().unwrap();
        for name in ["a", "b"] {
            let t = w.open_table(name).unwrap();
            for i in (19_000..20_000).step_by(50) {
                w.insert(t, &key(i + 1), &value(i + 1, 1)).unwrap();
            }
        }
        w.commit().unwrap();
        (db, model)
    }

    /// Defragmentation's limit for the file as it is.
    fn limit(db: &Db) -> PageId {
        let live = db.stats().bytes_in_use / db.stats().page_size as u64;
        live + live / 64 + 16
    }

    /// The last page of the tree at `root` or of one of its overflow runs,
    /// found by walking every page (independently of the planning code).
    fn highest_page(r: &ReadTxn, root: Root) -> PageId {
        fn walk(r: &ReadTxn, at: PageRef, high: &mut PageId) {
            let node = r.node(at).unwrap();
            *high = (*high).max(node.id());
            for i in 0..node.count() {
                if node.is_leaf() {
                    if let ValueRef::Overflow { page, len } = node.value(i) {
                        let span = span_for(len as usize, r.limits().page_size) as u64;
                        *high = (*high).max(page.id + span - 1);
                    }
                } else {
                    walk(r, node.child(i), high);
                }
            }
        }
        let mut high = 0;
        if !root.is_none() {
            walk(r, root, &mut high);
        }
        high
    }

    fn highest_of_all(db: &Db) -> PageId {
        let r = db.begin_read().unwrap();
        let mut high = highest_page(&r, r.catalog());
        for name in r.table_names().unwrap() {
            high = high.max(highest_page(&r, r.open_table(&name).unwrap().record.root));
        }
        high
    }

    fn contents(db: &Db) -> Model {
        let r = db.begin_read().unwrap();
        let mut model = Model::new();
        for name in r.table_names().unwrap() {
            let t = r.open_table(&name).unwrap();
            let m = model.entry(name).or_default();
            for e in r
                .range(t, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
                .unwrap()
            {
                let (k, v) = e.unwrap();
                m.insert(k.to_vec(), v.to_vec());
            }
        }
        model
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_pass_of_plans_made_on_snapshots_leaves_no_page_at_or_above_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (db, model) = fragmented(dir.path());
        let limit = limit(&db);
        assert!(highest_of_all(&db) >= limit, "the test needs a high tail");

        let mut pos = RelocatePosition::default();
        let mut plan = Relocations::default();
        let (mut plans, mut moved) = (0, 0);
        loop {
            // Small plans: many snapshots, each after the last plan's commit.
            let r = db.begin_read().unwrap();
            if r.plan_relocations(limit, &mut pos, 2, &mut plan).unwrap() {
                break;
            }
            drop(r);
            plans += 1;
            let mut w = db.begin_write().unwrap();
            while !plan.is_used_up() {
                moved += w.relocate(limit, &mut plan, 3, usize::MAX).unwrap();
            }
            w.commit().unwrap();
        }
        assert!(
            plans > 10 && moved > 0,
            "{plans} plans, {moved} pages moved"
        );
        let high = highest_of_all(&db);
        assert!(high < limit, "page {high} is at or above the limit {limit}");
        assert_eq!(contents(&db), model);
        db.check().unwrap();
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn plans_from_an_older_snapshot_move_only_what_is_still_there() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut model) = fragmented(dir.path());
        let limit = limit(&db);

        // A whole pass planned on one snapshot, before the writes below.
        let mut plans = Vec::new();
        {
            let r = db.begin_read().unwrap();
            let mut pos = RelocatePosition::default();
            loop {
                let mut plan = Relocations::default();
                if r.plan_relocations(limit, &mut pos, 64, &mut plan).unwrap() {
                    break;
                }
                plans.push(plan);
            }
        }
        let planned = |name: &str| {
            plans
                .iter()
                .filter(|p| p.table.as_deref() == Some(name))
                .map(|p| p.plan.len())
                .sum::<usize>()
        };
        assert!(planned("a") > 10 && planned("b") > 10);

        // Then: planned keys removed, new keys splitting planned leaves,
        // values that now need overflow runs and ones that no longer do,
        // and a planned table dropped.
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("a").unwrap();
        let a = model.get_mut("a").unwrap();
        for i in (19_000..20_000).step_by(3) {
            w.remove(t, &key(i)).unwrap();
            a.remove(&key(i));
        }
        for i in (19_001..20_000).step_by(3) {
            let (k, v) = (format!("key-{i:06}-new").into_bytes(), value(i + 1, 2));
            w.insert(t, &k, &v).unwrap();
            a.insert(k, v);
            let v = vec![9; if i % 2 == 0 { 5_000 } else { 10 }];
            w.insert(t, &key(i), &v).unwrap();
            a.insert(key(i), v);
        }
        assert!(w.delete_table("b").unwrap());
        model.remove("b");
        w.commit().unwrap();

        let mut w = db.begin_write().unwrap();
        for plan in &mut plans {
            while !plan.is_used_up() {
                w.relocate(limit, plan, 5, usize::MAX).unwrap();
            }
        }
        w.commit().unwrap();
        assert_eq!(contents(&db), model, "the dropped table is not re-created");
        db.check().unwrap();
    }
}
