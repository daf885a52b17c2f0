//! revkv's storage core against redb and LMDB (through heed) on issue 2's
//! workload, in one run: 1M keys of 24 random bytes with 150-byte values;
//! bulk load in one transaction; 1000 durable single-key commits; 1M random
//! point reads; 200k scans of 10 entries; one full scan.
//!
//!   cargo run --release --manifest-path benches/compare/Cargo.toml -- [N] [RUNS]
//!
//! Prints every run and the medians, as a Markdown table.

use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

const VALUE: usize = 150;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Workload {
    keys: Vec<[u8; 24]>,
    reads: Vec<usize>,
    scans: Vec<usize>,
    commits: Vec<usize>,
}

impl Workload {
    fn new(n: usize) -> Workload {
        let mut r = Rng(0x1234_5678_9abc_def1);
        let keys = (0..n)
            .map(|_| {
                let mut k = [0u8; 24];
                for c in k.chunks_mut(8) {
                    c.copy_from_slice(&r.next().to_le_bytes());
                }
                k
            })
            .collect();
        let reads = (0..n).map(|_| r.next() as usize % n).collect();
        let scans = (0..n / 5).map(|_| r.next() as usize % n).collect();
        let commits = (0..1000).map(|_| r.next() as usize % n).collect();
        Workload { keys, reads, scans, commits }
    }
}

#[derive(Default, Clone)]
struct Times {
    load: Duration,
    commits: Duration,
    reads: Duration,
    scans: Duration,
    full: Duration,
}

fn time(f: impl FnOnce() -> u64) -> (Duration, u64) {
    let t = Instant::now();
    let x = f();
    (t.elapsed(), x)
}

fn revkv_run(dir: &Path, w: &Workload) -> Times {
    use revkv::{Durability, Options, TxnRead};
    let db = Options::new().durability(Durability::Immediate).open(dir.join("revkv.db")).unwrap();
    let value = [7u8; VALUE];
    let mut t = Times::default();
    (t.load, _) = time(|| {
        let mut tx = db.begin_write().unwrap();
        let tb = tx.open_table("t").unwrap();
        for k in &w.keys {
            tx.insert(tb, k, &value).unwrap();
        }
        tx.commit().unwrap();
        0
    });
    (t.commits, _) = time(|| {
        for &i in &w.commits {
            let mut tx = db.begin_write().unwrap();
            let tb = tx.open_table("t").unwrap();
            tx.insert(tb, &w.keys[i], &[8u8; VALUE]).unwrap();
            tx.commit().unwrap();
        }
        0
    });
    let r = db.begin_read().unwrap();
    let tb = r.open_table("t").unwrap();
    (t.reads, _) = time(|| w.reads.iter().map(|&i| r.get(tb, &w.keys[i]).unwrap().unwrap().len() as u64).sum());
    (t.scans, _) = time(|| {
        let mut n = 0u64;
        for &i in &w.scans {
            for e in r.range(tb, Bound::Included(&w.keys[i][..]), Bound::Unbounded).unwrap().take(10) {
                n += e.unwrap().1.len() as u64;
            }
        }
        n
    });
    (t.full, _) = time(|| r.range(tb, Bound::Unbounded, Bound::Unbounded).unwrap().map(|e| e.unwrap().1.len() as u64).sum());
    t
}

fn redb_run(dir: &Path, w: &Workload) -> Times {
    use redb::{Database, ReadableTable, TableDefinition};
    const T: TableDefinition<&[u8], &[u8]> = TableDefinition::new("t");
    let db = Database::create(dir.join("redb.db")).unwrap();
    let value = [7u8; VALUE];
    let mut t = Times::default();
    (t.load, _) = time(|| {
        let tx = db.begin_write().unwrap();
        {
            let mut tb = tx.open_table(T).unwrap();
            for k in &w.keys {
                tb.insert(&k[..], &value[..]).unwrap();
            }
        }
        tx.commit().unwrap();
        0
    });
    (t.commits, _) = time(|| {
        for &i in &w.commits {
            let tx = db.begin_write().unwrap();
            {
                let mut tb = tx.open_table(T).unwrap();
                tb.insert(&w.keys[i][..], &[8u8; VALUE][..]).unwrap();
            }
            tx.commit().unwrap();
        }
        0
    });
    let r = db.begin_read().unwrap();
    let tb = r.open_table(T).unwrap();
    (t.reads, _) = time(|| w.reads.iter().map(|&i| tb.get(&w.keys[i][..]).unwrap().unwrap().value().len() as u64).sum());
    (t.scans, _) = time(|| {
        let mut n = 0u64;
        for &i in &w.scans {
            for e in tb.range(&w.keys[i][..]..).unwrap().take(10) {
                n += e.unwrap().1.value().len() as u64;
            }
        }
        n
    });
    (t.full, _) = time(|| tb.iter().unwrap().map(|e| e.unwrap().1.value().len() as u64).sum());
    t
}

fn lmdb_run(dir: &Path, w: &Workload) -> Times {
    use heed::types::Bytes;
    use heed::{Database, EnvOpenOptions};
    let path = dir.join("lmdb");
    std::fs::create_dir_all(&path).unwrap();
    // SAFETY (heed's contract): the environment is opened once in this
    // process and nothing else maps the file.
    let env = unsafe { EnvOpenOptions::new().map_size(16 << 30).max_dbs(2).open(&path).unwrap() };
    let mut wtxn = env.write_txn().unwrap();
    let db: Database<Bytes, Bytes> = env.create_database(&mut wtxn, Some("t")).unwrap();
    wtxn.commit().unwrap();
    let value = [7u8; VALUE];
    let mut t = Times::default();
    (t.load, _) = time(|| {
        let mut tx = env.write_txn().unwrap();
        for k in &w.keys {
            db.put(&mut tx, k, &value).unwrap();
        }
        tx.commit().unwrap();
        0
    });
    (t.commits, _) = time(|| {
        for &i in &w.commits {
            let mut tx = env.write_txn().unwrap();
            db.put(&mut tx, &w.keys[i], &[8u8; VALUE]).unwrap();
            tx.commit().unwrap();
        }
        0
    });
    let r = env.read_txn().unwrap();
    (t.reads, _) = time(|| w.reads.iter().map(|&i| db.get(&r, &w.keys[i]).unwrap().unwrap().len() as u64).sum());
    (t.scans, _) = time(|| {
        let mut n = 0u64;
        for &i in &w.scans {
            let range = (Bound::Included(&w.keys[i][..]), Bound::Unbounded);
            for e in db.range(&r, &range).unwrap().take(10) {
                n += e.unwrap().1.len() as u64;
            }
        }
        n
    });
    (t.full, _) = time(|| db.iter(&r).unwrap().map(|e| e.unwrap().1.len() as u64).sum());
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let runs: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let w = Workload::new(n);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let mut all: Vec<[Times; 3]> = Vec::new();
    for run in 0..runs {
        let mut row: [Times; 3] = Default::default();
        for (e, f) in [revkv_run as fn(&Path, &Workload) -> Times, redb_run, lmdb_run].iter().enumerate() {
            let dir = tempfile::tempdir_in(&base).unwrap();
            row[e] = f(dir.path(), &w);
        }
        eprintln!(
            "run {run}: load {:?}/{:?}/{:?} commits {:?}/{:?}/{:?} reads {:?}/{:?}/{:?} scans {:?}/{:?}/{:?} full {:?}/{:?}/{:?} (revkv/redb/lmdb)",
            row[0].load, row[1].load, row[2].load, row[0].commits, row[1].commits, row[2].commits,
            row[0].reads, row[1].reads, row[2].reads, row[0].scans, row[1].scans, row[2].scans,
            row[0].full, row[1].full, row[2].full
        );
        all.push(row);
    }
    type Pick = fn(&Times) -> Duration;
    let phases: [(&str, Pick); 5] = [
        ("bulk load, one transaction", |t| t.load),
        ("1000 durable single-key commits", |t| t.commits),
        ("point reads (all keys, random order)", |t| t.reads),
        ("scans of 10 entries (N/5)", |t| t.scans),
        ("one full scan", |t| t.full),
    ];
    println!("N = {n}, {runs} runs, medians");
    println!("| phase | revkv | redb | LMDB | revkv/LMDB | revkv/redb |");
    println!("|---|---|---|---|---|---|");
    for (name, pick) in phases {
        let m: Vec<Duration> = (0..3).map(|e| median(all.iter().map(|r| pick(&r[e])).collect())).collect();
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.3} s | {:.2} | {:.2} |",
            m[0].as_secs_f64(),
            m[1].as_secs_f64(),
            m[2].as_secs_f64(),
            m[0].as_secs_f64() / m[2].as_secs_f64(),
            m[0].as_secs_f64() / m[1].as_secs_f64()
        );
    }
}
