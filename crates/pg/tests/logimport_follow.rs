//! Following a growing stderr log across rotation, truncation and a
//! restart, on text a real PostgreSQL 15 wrote.

use sealtrail_pg::logimport::{follow, import, BatchOutcome, FollowOptions, ImportOptions, LogFormat, Position};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PREFIX: &str = "%m [%p] %q%u@%d app=%a host=%h sess=%c line=%l state=%e xid=%x vxid=%v ";

fn fixture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/server.log")).expect("fixture")
}

/// The fixture as if written on another day by other sessions.
fn variant(day: &str) -> String {
    fixture()
        .replace("2026-12-06", day)
        .replace("sess=", &format!("sess=d{}-", &day[8..]))
}

fn opts() -> ImportOptions {
    ImportOptions {
        format: Some(LogFormat::Stderr),
        line_prefix: Some(PREFIX.to_owned()),
        batch_size: 5,
    }
}

/// Messages of `text`'s entries, by a plain import of a file holding it.
fn messages_of(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("whole.log");
    std::fs::write(&path, text).expect("write");
    let mut out = Vec::new();
    let report = import(&path, &opts(), |batch: &[String]| {
        out.extend(batch.iter().map(|t| message(t)));
        Ok(BatchOutcome::default())
    })
    .expect("import");
    assert!(report.errors.is_empty());
    out
}

fn message(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("JSON");
    v["details"]["message"].as_str().expect("message").to_owned()
}

fn key(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("JSON");
    v["idempotency_key"].as_str().expect("key").to_owned()
}

type Seen = Arc<Mutex<Vec<String>>>;

/// Follow `path` on a thread until `stop` is set.
fn start(path: PathBuf, position: Option<PathBuf>, seen: Seen, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let o = FollowOptions {
            import: opts(),
            poll: Duration::from_millis(10),
            position_file: position,
            settle: Duration::from_millis(300),
        };
        let report = follow(
            &path,
            &o,
            |batch: &[String]| {
                seen.lock().expect("lock").extend(batch.iter().cloned());
                Ok(BatchOutcome::default())
            },
            |_| stop.load(Ordering::SeqCst),
        )
        .expect("follow runs");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    })
}

fn wait_for(seen: &Seen, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").len() < n {
        assert!(
            Instant::now() < deadline,
            "waited for {n} events, have {}",
            seen.lock().expect("lock").len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

#[test]
fn follows_growth_rotation_and_truncation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("postgresql.log");
    let (a, b, c) = (variant("2026-12-06"), variant("2026-12-07"), variant("2026-12-08"));
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let follower = start(path.clone(), None, seen.clone(), stop.clone());

    // The file appears late, and grows in pieces cut anywhere, even
    // inside a line and inside a multi-line entry.
    std::thread::sleep(Duration::from_millis(30));
    for piece in a.as_bytes().chunks(97) {
        append(&path, std::str::from_utf8(piece).expect("fixture is ASCII"));
        std::thread::sleep(Duration::from_millis(2));
    }
    let expected_a = messages_of(&a);
    wait_for(&seen, expected_a.len());

    // logrotate's default: rename, then the server opens a new file.
    std::fs::rename(&path, dir.path().join("postgresql.log.1")).expect("rotate");
    append(&path, &b);
    let expected_b = messages_of(&b);
    wait_for(&seen, expected_a.len() + expected_b.len());

    // copytruncate: same file emptied, then written again.
    std::fs::File::create(&path).expect("truncate");
    append(&path, &c);
    let expected_c = messages_of(&c);
    wait_for(&seen, expected_a.len() + expected_b.len() + expected_c.len());
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::SeqCst);
    follower.join().expect("follower");

    let seen = seen.lock().expect("lock");
    let got: Vec<String> = seen.iter().map(|t| message(t)).collect();
    let want: Vec<String> = [expected_a, expected_b, expected_c].concat();
    assert_eq!(got, want);
    let mut keys: Vec<String> = seen.iter().map(|t| key(t)).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), seen.len(), "no event delivered twice");
}

#[test]
fn a_restart_resumes_at_the_stored_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("postgresql.log");
    let position = dir.path().join("position.json");
    let text = fixture();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // Cut before an entry that starts a line, so the first run's last
    // entry is complete.
    assert!(lines[15].contains(" LOG:  statement: SELECT * FROM no_such_table"));
    let (first, second) = (lines[..15].concat(), lines[15..].concat());
    append(&path, &first);

    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let follower = start(path.clone(), Some(position.clone()), seen.clone(), stop.clone());
    let expected_first = messages_of(&first);
    wait_for(&seen, expected_first.len());
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::SeqCst);
    follower.join().expect("follower");
    let stored = Position::load(&position).expect("readable").expect("stored");
    assert_eq!(stored.offset, first.len() as u64);
    assert_eq!(stored.line, 16);

    append(&path, &second);
    let stop = Arc::new(AtomicBool::new(false));
    let follower = start(path.clone(), Some(position.clone()), seen.clone(), stop.clone());
    let all = messages_of(&text);
    wait_for(&seen, all.len());
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::SeqCst);
    follower.join().expect("follower");
    let got: Vec<String> = seen.lock().expect("lock").iter().map(|t| message(t)).collect();
    assert_eq!(got, all, "each entry once, none again after the restart");
}

#[test]
fn a_damaged_position_file_is_refused_with_its_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("postgresql.log");
    append(&path, &fixture());
    let position = dir.path().join("position.json");
    std::fs::write(&position, "{\"device\": 1,\n oops").expect("write");
    let o = FollowOptions {
        import: opts(),
        position_file: Some(position.clone()),
        ..FollowOptions::default()
    };
    let err = follow(&path, &o, |_: &[String]| Ok(BatchOutcome::default()), |_| true).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: position file: line 2, column", position.display())),
        "{text}"
    );
}
