//! The etcdctl-style commands: put, get, del, compaction, defrag, status,
//! alarm, check. `-w json` prints what etcdctl 3.x prints (keys and values
//! in base64, zero fields omitted); `-w simple` prints what etcdctl prints.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use revkv::mvcc::{
    prefix_end, DeleteRangeResponse, KeyValue, PutResponse, RangeOptions, RangeResponse,
    ResponseHeader, ResponseOp, Store, StoreOptions, TxnRequest,
};
use revkv::Options;

/// Output format, etcdctl's `-w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Simple,
    Json,
}

/// Which keys a get or del covers.
pub struct KeyRange {
    pub key: String,
    pub range_end: Option<String>,
    pub prefix: bool,
    pub from_key: bool,
}

impl KeyRange {
    pub fn end(&self) -> Vec<u8> {
        if self.prefix {
            prefix_end(self.key.as_bytes())
        } else if self.from_key {
            vec![0]
        } else {
            self.range_end.clone().unwrap_or_default().into_bytes()
        }
    }
}

/// Opens an existing store (never creates one for these commands).
pub fn open(db: &Path, quota: Option<u64>, read_only: bool) -> revkv::Result<Store> {
    if !db.exists() {
        return Err(revkv::Error::InvalidOption(format!(
            "database file {} does not exist",
            db.display()
        )));
    }
    // A moment's wait for the lock: another process that just closed the
    // file may still share its lock with a child it forked.
    let d = Options::new()
        .create(false)
        .read_only(read_only)
        .lock_timeout(std::time::Duration::from_secs(2))
        .open(db)?;
    let mut opts = StoreOptions::new().read_only(read_only);
    if let Some(q) = quota {
        opts = if q == 0 {
            opts.no_quota()
        } else {
            opts.quota_bytes(q)
        };
    }
    Store::with_db(d, opts)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn header(h: ResponseHeader) -> String {
    format!(
        "\"header\":{{\"cluster_id\":0,\"member_id\":0,\"revision\":{},\"raft_term\":0}}",
        h.revision
    )
}

fn kv_json(kv: &KeyValue) -> String {
    let mut s = format!("{{\"key\":\"{}\"", b64(&kv.key));
    for (name, v) in [
        ("create_revision", kv.create_revision),
        ("mod_revision", kv.mod_revision),
        ("version", kv.version),
    ] {
        if v != 0 {
            let _ = write!(s, ",\"{name}\":{v}");
        }
    }
    if !kv.value.is_empty() {
        let _ = write!(s, ",\"value\":\"{}\"", b64(&kv.value));
    }
    if kv.lease != 0 {
        let _ = write!(s, ",\"lease\":{}", kv.lease);
    }
    s.push('}');
    s
}

fn kvs_json(name: &str, kvs: &[KeyValue]) -> String {
    if kvs.is_empty() {
        return String::new();
    }
    let items: Vec<String> = kvs.iter().map(kv_json).collect();
    format!(",\"{name}\":[{}]", items.join(","))
}

fn print_simple_kvs(kvs: &[KeyValue]) {
    for kv in kvs {
        println!("{}", String::from_utf8_lossy(&kv.key));
        if !kv.value.is_empty() {
            println!("{}", String::from_utf8_lossy(&kv.value));
        }
    }
}

fn put_json(header: &str, resp: &PutResponse) -> String {
    let prev = resp
        .prev_kv
        .as_ref()
        .map(|p| format!(",\"prev_kv\":{}", kv_json(p)))
        .unwrap_or_default();
    format!("{{{header}{prev}}}")
}

fn range_json(header: &str, resp: &RangeResponse) -> String {
    let mut s = format!("{{{header}{}", kvs_json("kvs", &resp.kvs));
    if resp.more {
        s.push_str(",\"more\":true");
    }
    if resp.count != 0 {
        let _ = write!(s, ",\"count\":{}", resp.count);
    }
    s.push('}');
    s
}

fn del_json(header: &str, resp: &DeleteRangeResponse) -> String {
    let mut s = format!("{{{header}");
    if resp.deleted != 0 {
        let _ = write!(s, ",\"deleted\":{}", resp.deleted);
    }
    s.push_str(&kvs_json("prev_kvs", &resp.prev_kvs));
    s.push('}');
    s
}

pub fn put(store: &Store, key: &str, value: &str, prev_kv: bool, w: Format) -> revkv::Result<()> {
    let resp = store.put_with(revkv::mvcc::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease: 0,
        prev_kv,
    })?;
    match w {
        Format::Simple => {
            println!("OK");
            if let Some(p) = &resp.prev_kv {
                print_simple_kvs(std::slice::from_ref(p));
            }
        }
        Format::Json => println!("{}", put_json(&header(resp.header), &resp)),
    }
    Ok(())
}

pub fn get(store: &Store, r: &KeyRange, opts: RangeOptions, w: Format) -> revkv::Result<()> {
    let resp = store.range(r.key.as_bytes(), &r.end(), &opts)?;
    match w {
        Format::Simple if opts.count_only => println!("{}", resp.count),
        Format::Simple => print_simple_kvs(&resp.kvs),
        Format::Json => println!("{}", range_json(&header(resp.header), &resp)),
    }
    Ok(())
}

/// `get --stream`: one JSON object (or the simple lines) per chunk.
pub fn get_stream(
    store: &Store,
    r: &KeyRange,
    stream: revkv::stream::StreamOptions,
    w: Format,
) -> revkv::Result<()> {
    for chunk in store.range_stream(r.key.as_bytes(), &r.end(), stream)? {
        let chunk = chunk?;
        let kvs = chunk.to_kvs();
        match w {
            Format::Simple => print_simple_kvs(&kvs),
            Format::Json => println!(
                "{{{}{},\"count\":{}}}",
                header(ResponseHeader {
                    revision: chunk.revision
                }),
                kvs_json("kvs", &kvs),
                kvs.len()
            ),
        }
    }
    Ok(())
}

pub fn del(store: &Store, r: &KeyRange, prev_kv: bool, w: Format) -> revkv::Result<()> {
    let resp = store.delete_range(r.key.as_bytes(), &r.end(), prev_kv)?;
    match w {
        Format::Simple => {
            println!("{}", resp.deleted);
            print_simple_kvs(&resp.prev_kvs);
        }
        Format::Json => println!("{}", del_json(&header(resp.header), &resp)),
    }
    Ok(())
}

/// `txn`: etcdctl prints SUCCESS or FAILURE, then each response after an
/// empty line; with -w json its TxnResponse (each response wrapped in
/// `{"Response":{"response_put":...}}`, as Go's encoding of the oneof).
pub fn txn(store: &Store, req: TxnRequest, w: Format) -> revkv::Result<()> {
    let resp = store.txn(req)?;
    match w {
        Format::Simple => {
            println!("{}", if resp.succeeded { "SUCCESS" } else { "FAILURE" });
            for r in &resp.responses {
                println!();
                match r {
                    ResponseOp::Put(p) => {
                        println!("OK");
                        if let Some(prev) = &p.prev_kv {
                            print_simple_kvs(std::slice::from_ref(prev));
                        }
                    }
                    ResponseOp::Range(g) if g.kvs.is_empty() && g.count > 0 => {
                        println!("{}", g.count)
                    }
                    ResponseOp::Range(g) => print_simple_kvs(&g.kvs),
                    ResponseOp::DeleteRange(d) => {
                        println!("{}", d.deleted);
                        print_simple_kvs(&d.prev_kvs);
                    }
                }
            }
        }
        Format::Json => {
            let sub = format!("\"header\":{{\"revision\":{}}}", resp.header.revision);
            let items: Vec<String> = resp
                .responses
                .iter()
                .map(|r| {
                    let (name, body) = match r {
                        ResponseOp::Put(p) => ("response_put", put_json(&sub, p)),
                        ResponseOp::Range(g) => ("response_range", range_json(&sub, g)),
                        ResponseOp::DeleteRange(d) => ("response_delete_range", del_json(&sub, d)),
                    };
                    format!("{{\"Response\":{{\"{name}\":{body}}}}}")
                })
                .collect();
            let mut s = format!("{{{}", header(resp.header));
            if resp.succeeded {
                s.push_str(",\"succeeded\":true");
            }
            if !items.is_empty() {
                let _ = write!(s, ",\"responses\":[{}]", items.join(","));
            }
            s.push('}');
            println!("{s}");
        }
    }
    Ok(())
}

/// `snapshot save`: a consistent copy taken while the store stays in use,
/// then opened and checked; prints etcdctl's line.
pub fn snapshot_save(store: &Store, file: &Path, w: Format) -> revkv::Result<()> {
    let bar = crate::progress::spinner("saving snapshot");
    let report = store.db().save_snapshot(file)?;
    bar.set_message("checking the copy");
    let hash = check_copy(file)?;
    bar.finish_and_clear();
    match w {
        Format::Simple => println!("Snapshot saved at {}", file.display()),
        Format::Json => println!(
            "{{\"path\":{:?},\"revision\":{},\"hash\":{},\"entries\":{},\"file_size\":{}}}",
            file.display().to_string(),
            hash.header.revision,
            hash.hash,
            report.entries,
            report.file_size
        ),
    }
    Ok(())
}

pub fn compaction(store: &Store, rev: i64, w: Format) -> revkv::Result<()> {
    let h = store.compact(rev)?;
    match w {
        Format::Simple => println!("compacted revision {rev}"),
        Format::Json => println!("{{{}}}", header(h)),
    }
    Ok(())
}

pub fn defrag(store: &Store, w: Format) -> revkv::Result<()> {
    let before = store.db().stats();
    let bar = crate::progress::spinner("defragmenting");
    let report = store.db().defrag()?;
    bar.finish_and_clear();
    let after = store.db().stats();
    match w {
        Format::Simple => println!(
            "Finished defragmenting: file {} -> {} bytes, {} pages moved in {} batches (longest {:.1?})",
            before.file_size, after.file_size, report.pages_moved, report.batches, report.longest_batch
        ),
        Format::Json => println!(
            "{{\"file_size_before\":{},\"file_size_after\":{},\"pages_moved\":{},\"batches\":{},\"longest_batch_s\":{}}}",
            before.file_size,
            after.file_size,
            report.pages_moved,
            report.batches,
            report.longest_batch.as_secs_f64()
        ),
    }
    Ok(())
}

pub fn hashkv(store: &Store, path: &Path, rev: i64, w: Format) -> revkv::Result<()> {
    let h = store.hash_kv(rev)?;
    match w {
        Format::Simple => println!("{}, {}", path.display(), h.hash),
        Format::Json => println!(
            "[{{\"Endpoint\":{:?},\"HashKV\":{{{},\"hash\":{},\"compact_revision\":{}}}}}]",
            path.display().to_string(),
            header(h.header),
            h.hash,
            h.compact_revision
        ),
    }
    Ok(())
}

pub fn status(store: &Store, w: Format) -> revkv::Result<()> {
    let s = store.status()?;
    let keys = store
        .range(
            b"\0",
            b"\0",
            &RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )?
        .count;
    let alarms: Vec<&str> = s.alarms.iter().map(|a| a.name()).collect();
    match w {
        Format::Simple => {
            println!("revision:            {}", s.revision);
            println!("compacted revision:  {}", s.compacted_revision);
            println!("keys:                {keys}");
            println!("file size:           {}", s.file_size);
            println!("db size:             {}", s.db_size);
            println!("db size in use:      {}", s.db_size_in_use);
            match s.quota {
                Some(q) => println!("quota:               {q}"),
                None => println!("quota:               none"),
            }
            println!("alarms:              {}", alarms.join(", "));
        }
        Format::Json => println!(
            "{{\"revision\":{},\"compact_revision\":{},\"keys\":{keys},\"file_size\":{},\"dbSize\":{},\"dbSizeInUse\":{},\"quota\":{},\"alarms\":[{}]}}",
            s.revision,
            s.compacted_revision,
            s.file_size,
            s.db_size,
            s.db_size_in_use,
            s.quota.map_or("null".to_string(), |q| q.to_string()),
            alarms.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(",")
        ),
    }
    Ok(())
}

pub fn alarm_list(store: &Store) {
    for a in store.alarms() {
        println!("memberID:0 alarm:{a}");
    }
}

pub fn alarm_disarm(store: &Store) -> revkv::Result<()> {
    for a in store.alarms() {
        store.disarm(a)?;
        println!("memberID:0 alarm:{a}");
    }
    Ok(())
}

/// Full check; an error (with the page and the problem) exits non-zero.
pub fn check(store: &Store) -> revkv::Result<()> {
    let bar = crate::progress::spinner("checking");
    let versions = store.check()?;
    let report = store.db().check()?;
    bar.finish_and_clear();
    println!(
        "OK: {} versions; {} pages reachable, {} free, {} allocated; tables {}",
        versions,
        report.reachable_pages,
        report.free_pages,
        report.allocated_pages,
        report
            .tables
            .iter()
            .map(|(n, c)| format!("{n}={c}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// Opens a copy just written read-only and checks it: the storage file,
/// the store's tables, and the history hash (every log entry's version).
fn check_copy(path: &Path) -> revkv::Result<revkv::mvcc::HashKvResponse> {
    let copy = Store::with_db(
        Options::new().read_only(true).create(false).open(path)?,
        StoreOptions::new().read_only(true),
    )?;
    copy.check()?;
    copy.hash_kv(0)
}

pub fn salvage(from: &Path, to: &Path, w: Format) -> revkv::Result<()> {
    let bar = crate::progress::spinner("salvaging");
    let report = Store::salvage(from, to)?;
    bar.set_message("checking the copy");
    let hash = check_copy(to)?;
    bar.finish_and_clear();
    let s = &report.storage;
    let lost = |l: &revkv::LostPart| {
        // A `kv` table key is shown as the user's key and revision.
        let key = |k: &Option<Vec<u8>>| match k {
            Some(k) => match revkv::mvcc::keys::split_kv_key(k)
                .filter(|_| l.table == "kv")
                .and_then(|(esc, rev)| Some((revkv::mvcc::keys::unescape(esc)?, rev)))
            {
                Some((user, rev)) => format!("{:?}@{rev}", String::from_utf8_lossy(&user)),
                None => format!("{:?}", String::from_utf8_lossy(k)),
            },
            None => "the end".into(),
        };
        let from = match &l.from {
            Some(_) => key(&l.from),
            None => "the start".into(),
        };
        (from, key(&l.to))
    };
    match w {
        Format::Simple => {
            println!(
                "Salvaged transaction {} into {}: {} versions, revision {}, compacted {}, {} bytes",
                s.txid,
                to.display(),
                report.versions,
                report.revision,
                report.compacted_revision,
                s.file_size
            );
            for r in &s.rejected {
                println!("open would refuse or fall back: {r}");
            }
            for l in &s.lost {
                let (from, end) = lost(l);
                println!(
                    "lost in {} at page {}: keys from {from} to {end}: {}",
                    l.table, l.page, l.reason
                );
            }
            for (key, rev) in &report.lost_versions {
                println!("lost version {:?}@{rev}", String::from_utf8_lossy(key));
            }
            for n in &report.notes {
                println!("note: {n}");
            }
        }
        Format::Json => {
            let lost: Vec<String> = s
                .lost
                .iter()
                .map(|l| {
                    let (from, end) = lost(l);
                    format!(
                        "{{\"table\":{:?},\"page\":{},\"from\":{:?},\"to\":{:?},\"reason\":{:?}}}",
                        l.table, l.page, from, end, l.reason
                    )
                })
                .collect();
            let versions: Vec<String> = report
                .lost_versions
                .iter()
                .map(|(key, rev)| {
                    format!(
                        "{{\"key\":{:?},\"revision\":{rev}}}",
                        String::from_utf8_lossy(key)
                    )
                })
                .collect();
            println!(
                "{{\"path\":{:?},\"txid\":{},\"versions\":{},\"revision\":{},\"compact_revision\":{},\"hash\":{},\"file_size\":{},\"lost\":[{}],\"lost_versions\":[{}],\"rejected\":{:?},\"notes\":{:?}}}",
                to.display().to_string(),
                s.txid,
                report.versions,
                report.revision,
                report.compacted_revision,
                hash.hash,
                s.file_size,
                lost.join(","),
                versions.join(","),
                s.rejected,
                report.notes
            );
        }
    }
    Ok(())
}
