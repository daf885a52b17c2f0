//! The `revkv` command end to end (built with `--features cli`): etcdctl's
//! JSON for put/get/del/compaction, errors in etcd's words with a non-zero
//! exit, no database created by a read-only command, quota alarm listing.

use std::process::{Command, Output};

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
