//! Salvage of damaged files: every page of a revision store damaged in
//! turn, the file cut at every page boundary, and bytes flipped at seeded
//! random places. Salvage never panics; its copy is a healthy store (both
//! checks pass, the history hash can be computed, so every log entry has
//! its version); every version it copied is byte for byte one the salvaged
//! commit held; and every version it did not copy lies in a part its report
//! says was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;

use revkv::mvcc::{RangeOptions, Store, StoreOptions};
use revkv::{Db, ErrorKind, Options, TxnRead};

const PAGE: u32 = 512;

/// The raw `kv` table of a commit: `kv` key to record.
type Versions = BTreeMap<Vec<u8>, Vec<u8>>;

fn versions(db: &Db) -> (u64, Versions) {
    let r = db.begin_read().unwrap();
    let t = r.open_table("kv").unwrap();
    let all = r
        .range(t, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    (r.txid(), all)
}

/// A store with history, deletions, a multi-page value and a compaction;
/// returns each commit's versions by transaction id.
fn build(path: &Path) -> BTreeMap<u64, Versions> {
    let store = Store::open(path, StoreOptions::new().page_size(PAGE)).unwrap();
    let mut commits = BTreeMap::new();
    let mut record = |store: &Store| {
        let (txid, v) = versions(store.db());
        commits.insert(txid, v);
    };
    for i in 0..60u32 {
        let key = format!("/registry/pods/p{:02}", i % 23);
        store
            .put(key.as_bytes(), &vec![i as u8; 4 + (i as usize % 5) * 9])
            .unwrap();
        record(&store);
    }
    store.put(b"/big", &[7u8; 1500]).unwrap();
    store
        .delete_range(b"/registry/pods/p03", b"/registry/pods/p06", false)
        .unwrap();
    store.compact(40).unwrap();
    record(&store);
    for i in 0..5u32 {
        store.put(format!("/late/{i}").as_bytes(), b"v").unwrap();
        record(&store);
    }
    commits
}

/// Salvages `damaged` and checks everything the module doc promises.
/// Returns the number of versions lost, or None when salvage failed.
fn salvage_and_judge(
    damaged: &Path,
    out: &Path,
    commits: &BTreeMap<u64, Versions>,
    what: &str,
) -> Option<usize> {
    let _ = std::fs::remove_file(out);
    let report = match Store::salvage(damaged, out) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotADatabase),
                "{what}: salvage failed with {e}"
            );
            return None;
        }
    };
    let s = &report.storage;
    let Some(held) = commits.get(&s.txid) else {
        panic!(
            "{what}: salvaged transaction {} was never committed",
            s.txid
        )
    };
    let db = Options::new().read_only(true).open(out).unwrap();
    db.check()
        .unwrap_or_else(|e| panic!("{what}: the salvaged file fails its check: {e}"));
    let (_, got) = versions(&db);
    drop(db);
    let store = Store::open(out, StoreOptions::new()).unwrap();
    store
        .check()
        .unwrap_or_else(|e| panic!("{what}: the salvaged store fails its check: {e}"));
    store
        .hash_kv(0)
        .unwrap_or_else(|e| panic!("{what}: the salvaged log does not match its versions: {e}"));
    assert_eq!(store.current_revision().unwrap(), report.revision, "{what}");
    assert_eq!(got.len() as u64, report.versions, "{what}");
    let newest = got
        .keys()
        .map(|k| !u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap()))
        .max()
        .unwrap_or(1);
    assert!(
        report.revision as u64 >= newest,
        "{what}: revision below a version"
    );
    // A write to the salvaged store gets a revision no version has.
    let rev = store.put(b"/after-salvage", b"x").unwrap().header.revision;
    assert!(rev as u64 > newest, "{what}");
    let r = store
        .range(b"/after-salvage", b"", &RangeOptions::default())
        .unwrap();
    assert_eq!(r.kvs[0].value, b"x", "{what}");
    drop(store);
    for (k, v) in &got {
        assert_eq!(
            held.get(k),
            Some(v),
            "{what}: a salvaged version is not what transaction {} held",
            s.txid
        );
    }
    let covers = |l: &revkv::LostPart, k: &[u8]| {
        l.from.as_deref().is_none_or(|f| k >= f) && l.to.as_deref().is_none_or(|t| k < t)
    };
    // A lost catalog part that held the `kv` table's record loses it all.
    let table_lost = s
        .lost
        .iter()
        .any(|l| l.table == "the catalog" && covers(l, b"kv"));
    let missing: BTreeSet<&Vec<u8>> = held.keys().filter(|k| !got.contains_key(*k)).collect();
    for k in &missing {
        assert!(
            table_lost || s.lost.iter().any(|l| l.table == "kv" && covers(l, k)),
            "{what}: version {:?} is missing but no lost part covers it (lost: {:?})",
            String::from_utf8_lossy(k),
            s.lost
        );
    }
    // The log names the lost versions it still holds: exactly the missing
    // ones when no part of the log (or of the catalog) was lost.
    let named: BTreeSet<Vec<u8>> = report
        .lost_versions
        .iter()
        .map(|(key, rev)| revkv::mvcc::keys::kv_key(key, *rev as u64))
        .collect();
    for k in &named {
        assert!(
            missing.contains(k),
            "{what}: {:?} named lost but salvaged",
            String::from_utf8_lossy(k)
        );
    }
    if !s.lost.iter().any(|l| l.table != "kv") {
        assert_eq!(
            named.len(),
            missing.len(),
            "{what}: lost versions not all named"
        );
    }
    Some(missing.len())
}

#[test]
fn an_intact_store_salvages_to_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.db");
    let commits = build(&path);
    let before = {
        let store = Store::open(&path, StoreOptions::new()).unwrap();
        (
            store.hash_kv(0).unwrap(),
            store.current_revision().unwrap(),
            store.compacted_revision().unwrap(),
        )
    };
    let out = dir.path().join("salvaged.db");
    let report = Store::salvage(&path, &out).unwrap();
    assert!(report.storage.lost.is_empty(), "{:?}", report.storage.lost);
    assert!(report.storage.rejected.is_empty() && report.notes.is_empty());
    let store = Store::open(&out, StoreOptions::new()).unwrap();
    let after = (
        store.hash_kv(0).unwrap(),
        store.current_revision().unwrap(),
        store.compacted_revision().unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(before.2, 40);
    drop(store);
    assert_eq!(
        salvage_and_judge(&path, &dir.path().join("again.db"), &commits, "intact"),
        Some(0)
    );
}

#[test]
fn salvage_never_replaces_a_file_and_never_writes_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.db");
    build(&path);
    let bytes = std::fs::read(&path).unwrap();
    let taken = dir.path().join("taken.db");
    std::fs::write(&taken, b"keep me").unwrap();
    let e = Store::salvage(&path, &taken).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption, "{e}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"keep me");
    let e = Store::salvage(&path, &path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption, "{e}");
    Store::salvage(&path, dir.path().join("new.db")).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the damaged file was written"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".part")),
        "a temporary file was left: {names:?}"
    );
}

#[test]
fn a_file_without_an_intact_meta_page_is_reported_not_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.db");
    build(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[..2 * PAGE as usize] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let out = dir.path().join("out.db");
    let e = Store::salvage(&path, &out).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotADatabase),
        "{e}"
    );
    assert!(!out.exists());
}

/// A built store's bytes, and where damaged copies and salvages go.
struct Fixture {
    dir: tempfile::TempDir,
    commits: BTreeMap<u64, Versions>,
    bytes: Vec<u8>,
    damaged: std::path::PathBuf,
    out: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    let commits = build(&good);
    Fixture {
        bytes: std::fs::read(&good).unwrap(),
        damaged: dir.path().join("damaged.db"),
        out: dir.path().join("out.db"),
        commits,
        dir,
    }
}

#[test]
fn every_page_damaged_in_turn() {
    let Fixture {
        dir,
        commits,
        bytes,
        damaged,
        out,
    } = fixture();
    let pages = bytes.len() / PAGE as usize;
    let (mut lost_some, mut lost_none, mut named) = (0, 0, 0);
    for p in 0..pages {
        let mut image = bytes.clone();
        // The middle of the page: a header field for small pages' cells,
        // cell bytes for others.
        let at = p * PAGE as usize + PAGE as usize / 2;
        for b in &mut image[at..at + 8] {
            *b ^= 0xa5;
        }
        std::fs::write(&damaged, &image).unwrap();
        let what = format!("page {p} of {pages} damaged");
        match salvage_and_judge(&damaged, &out, &commits, &what) {
            Some(0) => lost_none += 1,
            Some(_) => {
                lost_some += 1;
                let listed = Store::salvage(&damaged, dir.path().join(format!("listed{p}.db")));
                named += usize::from(!listed.unwrap().lost_versions.is_empty());
            }
            None => panic!("{what}: one damaged page left no intact meta"),
        }
    }
    eprintln!("{pages} pages damaged in turn: {lost_some} lost versions ({named} named them by key), {lost_none} lost none");
    assert!(lost_some > 0, "some damaged pages held versions");
    assert!(named > 0, "the log names versions lost with a kv page");
}

#[test]
fn every_truncation_and_seeded_flips() {
    let f = fixture();
    let (bytes, damaged) = (&f.bytes, &f.damaged);
    let pages = bytes.len() / PAGE as usize;
    for p in 0..=pages {
        std::fs::write(damaged, &bytes[..p * PAGE as usize]).unwrap();
        let what = format!("cut to {p} of {pages} pages");
        let salvaged = salvage_and_judge(damaged, &f.out, &f.commits, &what);
        assert_eq!(salvaged.is_none(), p < 1, "{what}: {salvaged:?}");
    }
    let seed = 0x5a1_7a9e_u64;
    let mut rng = revkv::testing::Xorshift::new(seed);
    let mut next = move || rng.next();
    for round in 0..300 {
        let mut image = bytes.clone();
        let flips = 1 + next() % 12;
        for _ in 0..flips {
            let i = (next() % image.len() as u64) as usize;
            image[i] ^= 1 << (next() % 8);
        }
        std::fs::write(damaged, &image).unwrap();
        let what = format!("round {round} of seed {seed:#x}: {flips} bits flipped");
        salvage_and_judge(damaged, &f.out, &f.commits, &what);
    }
}

/// A batched store's file copied while it is open, between syncs (unsynced
/// commits half in the file, the meta naming the last durable one): the
/// salvage is a healthy store, and every version it holds is one the store
/// wrote, byte for byte.
#[test]
fn a_batched_store_copied_between_syncs() {
    use revkv::mvcc::CommitMode;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let mode = CommitMode::Batched {
        max_writes: 1_000_000,
        max_delay: std::time::Duration::from_secs(3600),
    };
    let store = Store::open(&path, StoreOptions::new().page_size(PAGE).commit_mode(mode)).unwrap();
    let mut images = Vec::new();
    for i in 0..600u32 {
        let key = format!("/registry/pods/p{:03}", i % 157);
        store
            .put(key.as_bytes(), &vec![i as u8; 20 + (i as usize % 7) * 30])
            .unwrap();
        if i % 100 == 99 {
            images.push(std::fs::read(&path).unwrap());
        }
        if i == 299 {
            store.sync().unwrap();
        }
    }
    store.sync().unwrap();
    let (_, written) = versions(store.db());
    drop(store);
    for (n, image) in images.iter().enumerate() {
        let what = format!("image {n}");
        let damaged = dir.path().join(format!("image{n}.db"));
        std::fs::write(&damaged, image).unwrap();
        let out = dir.path().join(format!("salvaged{n}.db"));
        let report = Store::salvage(&damaged, &out).unwrap_or_else(|e| panic!("{what}: {e}"));
        let store = Store::open(&out, StoreOptions::new()).unwrap();
        store.check().unwrap_or_else(|e| panic!("{what}: {e}"));
        store.hash_kv(0).unwrap_or_else(|e| panic!("{what}: {e}"));
        let (_, got) = versions(store.db());
        assert_eq!(got.len() as u64, report.versions, "{what}");
        // Images from after the sync at the 300th write hold at least it.
        assert!(n < 3 || report.versions >= 300, "{what}: {report:?}");
        for (k, v) in &got {
            assert_eq!(
                written.get(k),
                Some(v),
                "{what}: a version the store never wrote"
            );
        }
    }
}
