//! One writer per file: a second read-write open fails at once, from this
//! process or another; read-only opens share a file no writer holds.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use revkv::{Db, ErrorKind, Options};

const CHILD_ENV: &str = "REVKV_LOCK_CHILD_DB";

/// The tests of this file run one at a time: a child spawned by one test
/// inherits, until it execs, the descriptors another test holds, and with
/// them their locks, which would make the lock tests race each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The child: holds the file open for writing until its stdin closes.
#[test]
fn lock_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let _db = Db::open(&path).unwrap();
    println!("locked");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn one_writer_many_readers_in_process() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    let err = Db::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
    assert_eq!(
        Options::new()
            .read_only(true)
            .open(&path)
            .unwrap_err()
            .kind(),
        ErrorKind::Locked
    );
    drop(db);
    let r1 = Options::new().read_only(true).open(&path).unwrap();
    let r2 = Options::new().read_only(true).open(&path).unwrap();
    assert_eq!(Db::open(&path).unwrap_err().kind(), ErrorKind::Locked);
    assert_eq!(r1.begin_write().unwrap_err().kind(), ErrorKind::ReadOnly);
    drop((r1, r2));
    Db::open(&path).unwrap();
}

#[test]
fn one_writer_across_processes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Db::open(&path).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the child reports the lock").unwrap();
        // libtest prints "test lock_child ... " before the child's own output.
        if line.ends_with("locked") {
            break;
        }
    }
    let err = Db::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert_eq!(
        Options::new()
            .read_only(true)
            .open(&path)
            .unwrap_err()
            .kind(),
        ErrorKind::Locked
    );
    drop(child.stdin.take()); // the child exits
    child.wait().unwrap();
    Db::open(&path).unwrap();
}

#[test]
fn read_only_open_of_a_missing_file_creates_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing");
    let err = Options::new().read_only(true).open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(!path.exists());
}

#[test]
fn lock_timeout_waits_then_fails_or_succeeds() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let held = Db::open(&path).unwrap();
    // Held for the whole wait: Locked, but only after the timeout.
    let wait = std::time::Duration::from_millis(30);
    let t = std::time::Instant::now();
    let err = Options::new().lock_timeout(wait).open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(t.elapsed() >= wait, "gave up after {:?}", t.elapsed());
    // Released while another thread waits: that open succeeds.
    let (tx, rx) = std::sync::mpsc::channel();
    let opener = {
        let path = path.clone();
        std::thread::spawn(move || {
            tx.send(()).unwrap();
            Options::new()
                .lock_timeout(std::time::Duration::from_secs(60))
                .open(&path)
                .map(|_| ())
        })
    };
    rx.recv().unwrap();
    drop(held);
    opener.join().unwrap().unwrap();
}
