//! The `revkv` command end to end (built with `--features cli`): etcdctl's
//! JSON for put/get/del/txn/compaction, errors in etcd's words with a
//! non-zero exit, no database created by a read-only command, quota alarm
//! listing and disarming, txn from standard input, snapshot save, hashkv,
//! check and salvage of a corrupted file, and the demo.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn revkv(db: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_revkv"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("the revkv binary runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn etcdctl_style_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // A read-only command on a missing file fails and creates nothing.
    let o = revkv(&db, &["get", "k"]);
    assert!(!o.status.success());
    assert!(!db.exists());
    // Create it with a first put (write commands create the file).
    revkv::mvcc::Store::open(&db, revkv::mvcc::StoreOptions::new()).unwrap();
    assert_eq!(stdout(&revkv(&db, &["put", "/a", "1"])), "OK\n");
    let put = stdout(&revkv(&db, &["-w", "json", "put", "/a", "2", "--prev-kv"]));
    assert_eq!(
        put.trim(),
        r#"{"header":{"cluster_id":0,"member_id":0,"revision":3,"raft_term":0},"prev_kv":{"key":"L2E=","create_revision":2,"mod_revision":2,"version":1,"value":"MQ=="}}"#
    );
    stdout(&revkv(&db, &["put", "/b", "x"]));
    assert_eq!(
        stdout(&revkv(&db, &["get", "/", "--prefix"])),
        "/a\n2\n/b\nx\n"
    );
    let get = stdout(&revkv(
        &db,
        &["-w", "json", "get", "/", "--prefix", "--limit", "1"],
    ));
    assert!(
        get.contains(r#""kvs":[{"key":"L2E=","#) && get.contains(r#""more":true"#),
        "{get}"
    );
    assert_eq!(
        stdout(&revkv(&db, &["get", "/", "--prefix", "--count-only"])),
        "2\n"
    );
    let chunks = stdout(&revkv(
        &db,
        &[
            "-w",
            "json",
            "get",
            "/",
            "--prefix",
            "--stream",
            "--chunk-keys",
            "1",
        ],
    ));
    assert_eq!(
        chunks.lines().count(),
        2,
        "one JSON object per chunk: {chunks}"
    );
    let del = stdout(&revkv(&db, &["-w", "json", "del", "/b"]));
    assert!(del.contains(r#""deleted":1"#), "{del}");
    assert_eq!(
        stdout(&revkv(&db, &["compaction", "4"])),
        "compacted revision 4\n"
    );
    let o = revkv(&db, &["get", "/a", "--rev", "2"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("mvcc: required revision has been compacted"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&revkv(&db, &["defrag"]));
    let status = stdout(&revkv(&db, &["-w", "json", "status"]));
    assert!(
        status.contains(r#""revision":5"#) && status.contains(r#""keys":1"#),
        "{status}"
    );
    assert!(stdout(&revkv(&db, &["check"])).starts_with("OK"));
    // A tiny quota: the put is refused in etcd's words, the alarm listed.
    let o = revkv(&db, &["--quota-bytes", "4096", "put", "/c", "y"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("etcdserver: mvcc: database space exceeded")
    );
    assert_eq!(
        stdout(&revkv(&db, &["alarm", "list"])),
        "memberID:0 alarm:NOSPACE\n"
    );
}

fn revkv_stdin(db: &std::path::Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_revkv"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the revkv binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn failure(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure, got success");
    assert_eq!(o.status.code(), Some(1), "exit status 1");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line on standard error: {err}");
    err
}

fn new_store(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let db = dir.path().join("db");
    revkv::mvcc::Store::open(&db, revkv::mvcc::StoreOptions::new()).unwrap();
    db
}

#[test]
fn txn_reads_etcdctl_format_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_store(&dir);
    stdout(&revkv(&db, &["put", "key1", "v1"]));
    // etcdctl's own example: key1 exists, so the success branch runs.
    let input = "mod(\"key1\") > \"0\"\n\nput key1 \"overwrote-key1\"\nget key1\n\nput key1 \"created-key1\"\nput key2 \"some extra key\"\n";
    assert_eq!(
        stdout(&revkv_stdin(&db, &["txn"], input)),
        "SUCCESS\n\nOK\n\nkey1\noverwrote-key1\n"
    );
    let json = stdout(&revkv_stdin(
        &db,
        &["-w", "json", "txn"],
        "value(\"key1\") = \"nope\"\n\nput key1 \"x\"\n\nput key2 \"created\" --prev-kv\ndel key1 --prev-kv\n",
    ));
    assert_eq!(
        json.trim(),
        concat!(
            r#"{"header":{"cluster_id":0,"member_id":0,"revision":4,"raft_term":0},"responses":["#,
            r#"{"Response":{"response_put":{"header":{"revision":4}}}},"#,
            r#"{"Response":{"response_delete_range":{"header":{"revision":4},"deleted":1,"prev_kvs":[{"key":"a2V5MQ==","create_revision":2,"mod_revision":3,"version":2,"value":"b3Zlcndyb3RlLWtleTE="}]}}}]}"#
        )
    );
    // Every compare target and operator etcdctl knows.
    let input = "ver(\"key2\") = \"1\"\nc(\"key2\") = \"4\"\nlease(\"key2\") = \"0\"\nversion(\"key1\") < \"1\"\ncreate(\"key2\") != \"3\"\nval(\"key2\") > \"a\"\n\nget key --prefix --keys-only\n\n";
    assert_eq!(
        stdout(&revkv_stdin(&db, &["txn"], input)),
        "SUCCESS\n\nkey2\n"
    );
    // Malformed input is refused before anything is written.
    let err = failure(&revkv_stdin(&db, &["txn"], "size(\"k\") = \"1\"\n\n\n"));
    assert!(err.contains("malformed comparison"), "{err}");
    let err = failure(&revkv_stdin(&db, &["txn"], "\nfrobnicate k\n\n"));
    assert!(err.contains("invalid txn request"), "{err}");
    // A txn writing one key twice gets etcd's error.
    let err = failure(&revkv_stdin(&db, &["txn"], "\nput a 1\nput a 2\n\n"));
    assert!(err.contains("duplicate key given in txn request"), "{err}");
    let status = stdout(&revkv(&db, &["-w", "json", "status"]));
    assert!(status.contains(r#""revision":4"#), "{status}");
}

#[test]
fn get_and_del_flags() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_store(&dir);
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        stdout(&revkv(&db, &["put", k, v]));
    }
    stdout(&revkv(&db, &["put", "b", "22"]));
    assert_eq!(
        stdout(&revkv(&db, &["get", "b", "--from-key", "--keys-only"])),
        "b\nc\nd\n"
    );
    assert_eq!(stdout(&revkv(&db, &["get", "a", "c"])), "a\n1\nb\n22\n");
    assert_eq!(stdout(&revkv(&db, &["get", "b", "--rev", "3"])), "b\n2\n");
    let o = revkv(&db, &["get", "b", "--rev", "99"]);
    assert!(failure(&o).contains("mvcc: required revision is a future revision"));
    assert_eq!(
        stdout(&revkv(
            &db,
            &["get", "a", "--from-key", "--stream", "--chunk-keys", "2"]
        )),
        "a\n1\nb\n22\nc\n3\nd\n4\n"
    );
    assert_eq!(
        stdout(&revkv(
            &db,
            &["get", "a", "--from-key", "--stream", "--limit", "1"]
        )),
        "a\n1\n"
    );
    assert_eq!(
        stdout(&revkv(&db, &["del", "c", "--from-key", "--prev-kv"])),
        "2\nc\n3\nd\n4\n"
    );
    // A chunk of about one byte still holds one key: a and b, one each.
    let chunks = stdout(&revkv(
        &db,
        &[
            "-w",
            "json",
            "get",
            "a",
            "--from-key",
            "--stream",
            "--chunk-bytes",
            "1",
        ],
    ));
    assert_eq!(chunks.lines().count(), 2, "{chunks}");
    stdout(&revkv(&db, &["put", "pre/1", "x"]));
    stdout(&revkv(&db, &["put", "pre/2", "y"]));
    assert_eq!(stdout(&revkv(&db, &["del", "pre/", "--prefix"])), "2\n");
    let json = stdout(&revkv(&db, &["-w", "json", "get", "a", "--prefix"]));
    assert_eq!(
        json.trim(),
        r#"{"header":{"cluster_id":0,"member_id":0,"revision":10,"raft_term":0},"kvs":[{"key":"YQ==","create_revision":2,"mod_revision":2,"version":1,"value":"MQ=="}],"count":1}"#
    );
    assert_eq!(
        stdout(&revkv(&db, &["-w", "json", "compaction", "7"])).trim(),
        r#"{"header":{"cluster_id":0,"member_id":0,"revision":10,"raft_term":0}}"#
    );
    let o = revkv(&db, &["compaction", "7"]);
    assert!(failure(&o).contains("mvcc: required revision has been compacted"));
    let status = stdout(&revkv(&db, &["status"]));
    assert!(status.contains("compacted revision:  7"), "{status}");
    // Empty keys are refused in etcd's words.
    let o = revkv(&db, &["put", "", "v"]);
    assert!(failure(&o).contains("etcdserver: key is not provided"));
}

#[test]
fn alarm_disarm_after_making_room() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_store(&dir);
    stdout(&revkv(&db, &["put", "k", "v"]));
    let o = revkv(&db, &["--quota-bytes", "4096", "put", "big", "x"]);
    assert!(failure(&o).contains("etcdserver: mvcc: database space exceeded"));
    // While NOSPACE is raised writes are refused even with room.
    let o = revkv(&db, &["put", "k", "w"]);
    assert!(failure(&o).contains("etcdserver: mvcc: database space exceeded"));
    assert_eq!(stdout(&revkv(&db, &["get", "k"])), "k\nv\n");
    assert_eq!(
        stdout(&revkv(&db, &["alarm", "disarm"])),
        "memberID:0 alarm:NOSPACE\n"
    );
    assert_eq!(stdout(&revkv(&db, &["alarm", "list"])), "");
    assert_eq!(stdout(&revkv(&db, &["put", "k", "w"])), "OK\n");
}

#[test]
fn snapshot_save_copies_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_store(&dir);
    for i in 0..300 {
        stdout(&revkv(&db, &["put", &format!("/k/{i:03}"), &"v".repeat(i)]));
        if i == 150 {
            stdout(&revkv(&db, &["compaction", "100"]));
        }
    }
    let copy = dir.path().join("snap.db");
    assert_eq!(
        stdout(&revkv(&db, &["snapshot", "save", copy.to_str().unwrap()])),
        format!("Snapshot saved at {}\n", copy.display())
    );
    let a = revkv::mvcc::Store::open(&db, revkv::mvcc::StoreOptions::new()).unwrap();
    let b = revkv::mvcc::Store::open(&copy, revkv::mvcc::StoreOptions::new()).unwrap();
    assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
    assert_eq!(b.compacted_revision().unwrap(), 100);
    assert!(b.db().stats().file_size <= a.db().stats().file_size);
    let want = a.hash_kv(0).unwrap().hash;
    drop((a, b));
    // hashkv: equal on the store and its copy, etcd's words below the
    // compacted revision.
    for path in [&db, &copy] {
        assert_eq!(
            stdout(&revkv(path, &["hashkv"])),
            format!("{}, {want}\n", path.display())
        );
    }
    let json = stdout(&revkv(&copy, &["-w", "json", "hashkv", "--rev", "200"]));
    assert!(
        json.starts_with(r#"[{"Endpoint":"#) && json.contains(r#""compact_revision":100}"#),
        "{json}"
    );
    let err = failure(&revkv(&db, &["hashkv", "--rev", "50"]));
    assert!(
        err.contains("mvcc: required revision has been compacted"),
        "{err}"
    );
    let json = stdout(&revkv(
        &db,
        &["-w", "json", "snapshot", "save", copy.to_str().unwrap()],
    ));
    assert!(json.contains(r#""revision":301"#), "{json}");
    assert!(!dir.path().join("snap.db.part").exists());
    // The source must exist.
    let o = revkv(
        &dir.path().join("missing"),
        &["snapshot", "save", copy.to_str().unwrap()],
    );
    assert!(failure(&o).contains("does not exist"));
}

#[test]
fn check_reports_a_corrupted_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_store(&dir);
    for i in 0..50 {
        stdout(&revkv(&db, &["put", &format!("key{i:02}"), "some value"]));
    }
    assert!(stdout(&revkv(&db, &["check"])).starts_with("OK"));
    // Flip one byte in the middle of every page past the metas: whichever
    // of them are reachable, check names a page and the problem.
    let mut bytes = std::fs::read(&db).unwrap();
    let pages = bytes.len() / 4096;
    for p in 2..pages {
        bytes[p * 4096 + 2000] ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let o = revkv(&db, &["check"]);
    let err = failure(&o);
    assert!(err.contains("corrupt page"), "{err}");
}

#[test]
fn salvage_copies_what_a_damaged_file_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_store(&dir);
    let store = revkv::mvcc::Store::open(&db, revkv::mvcc::StoreOptions::new()).unwrap();
    for i in 0..400 {
        store
            .put(format!("/key{i:03}").as_bytes(), &[i as u8; 900])
            .unwrap();
    }
    drop(store);
    let mut bytes = std::fs::read(&db).unwrap();
    let pages = bytes.len() / 4096;
    for p in (2..pages).step_by(9) {
        bytes[p * 4096 + 2000] ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    failure(&revkv(&db, &["check"]));
    let out = dir.path().join("salvaged.db");
    let report = stdout(&revkv(&db, &["salvage", out.to_str().unwrap()]));
    let mut lines = report.lines();
    let first = lines.next().unwrap();
    assert!(first.starts_with("Salvaged transaction"), "{report}");
    assert!(first.contains("revision 401"), "{report}");
    assert!(
        lines.any(|l| l.starts_with("lost in kv at page") && l.contains("\"/key")),
        "lost versions are named by key: {report}"
    );
    assert!(stdout(&revkv(&out, &["check"])).starts_with("OK"));
    // Salvage never replaces a file.
    let err = failure(&revkv(&db, &["salvage", out.to_str().unwrap()]));
    assert!(err.contains("never replaces"), "{err}");
    let json = dir.path().join("again.db");
    let o = stdout(&revkv(
        &out,
        &["-w", "json", "salvage", json.to_str().unwrap()],
    ));
    assert!(
        o.starts_with("{\"path\":") && o.contains("\"lost\":[]"),
        "{o}"
    );
}

#[test]
fn demo_with_few_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = stdout(&revkv(&db, &["demo", "--keys", "2000"]));
    for needle in [
        "unary range",
        "stream (",
        "overwrite every key",
        "compact to revision 4001",
        "defragment (online",
        "etcdserver: mvcc: database space exceeded",
        "alarm list: NOSPACE",
        "the next put is accepted",
        "the database is kept at",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    assert!(stdout(&revkv(&db, &["check"])).starts_with("OK"));
    // The demo builds a new database: an existing one is refused.
    let o = revkv(&db, &["demo", "--keys", "10"]);
    assert!(failure(&o).contains("already exists"));
}

#[test]
fn bench_phases_print_one_json_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let phases: &[(&[&str], &[&str])] = &[
        (&["load", "300", "64"], &[r#""ops":300"#]),
        (&["open"], &[r#""open_s":"#, r#""rss_after_open_kb":"#]),
        (&["range"], &[r#""keys":300"#, r#""bytes":"#]),
        (&["first"], &[r#""keys":"#]),
        (&["paged", "50"], &[r#""keys":300"#, r#""pages":"#]),
        (&["get", "100"], &[r#""ops":100"#, r#""found":100"#]),
        (&["txn", "50"], &[r#""ops":50"#]),
        (&["stream", "40"], &[r#""first_chunk_s":"#, r#""chunks":8"#]),
        (&["streams", "3"], &[r#""streams":3"#]),
        (&["watch", "4", "200", "1", "0"], &[r#""engine":"revkv""#]),
        (
            &["churn", "64"],
            &[r#""overwrite_s":"#, r#""size_before_compact":"#],
        ),
        (&["overwrite", "64"], &[r#""ops":300"#, r#""commits":"#]),
        (
            &["compact"],
            &[r#""in_use_before_compact":"#, r#""in_use_after_compact":"#],
        ),
        (
            &["large", "20", "20000"],
            &[r#""ops":20"#, r#""value_bytes":20000"#, r#""put_p99_s":"#],
        ),
    ];
    for (args, fields) in phases {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        let out = stdout(&revkv(&db, &all));
        assert_eq!(out.lines().count(), 1, "bench {args:?}: {out}");
        let line = out.trim();
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(
            line.contains(&format!(r#""phase":"{}""#, args[0])),
            "{line}"
        );
        for f in *fields {
            assert!(line.contains(f), "bench {args:?}: {f} missing from {line}");
        }
        // Where the kernel counts a process's writes, every phase reports
        // its own, and a load writes at least its values.
        if std::fs::read_to_string("/proc/self/io").is_ok() {
            let written = line
                .split(r#""written_bytes":"#)
                .nth(1)
                .and_then(|rest| rest.split([',', '}']).next())
                .and_then(|v| v.parse::<i64>().ok());
            assert!(
                written.is_some(),
                "bench {args:?}: no written_bytes in {line}"
            );
            if args[0] == "load" {
                assert!(written >= Some(300 * 64), "{line}");
            }
        }
    }
    let o = revkv(&db, &["bench", "nonsense"]);
    assert!(failure(&o).contains("nonsense"));
}
