//! Server-log import from files a real PostgreSQL 15 wrote (committed
//! fixtures captured by scripts/pg-log-fixtures, and a fresh capture when
//! the server binaries are installed).

use sealtrail_pg::logimport::{import, BatchOutcome, ImportOptions, ImportReport, LogFormat};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const PREFIX: &str = "%m [%p] %q%u@%d app=%a host=%h sess=%c line=%l state=%e xid=%x vxid=%v ";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Import into a collecting sink that also plays the trail: every event
/// must pass the schema validator, and a repeated idempotency key counts
/// as a duplicate.
fn run(path: &Path, opts: &ImportOptions, seen: &mut HashSet<String>) -> (ImportReport, Vec<Value>) {
    let mut events = Vec::new();
    let report = import(path, opts, |batch: &[String]| {
        let mut outcome = BatchOutcome::default();
        for text in batch {
            sealtrail_event::accept_json(
                text.as_bytes(),
                sealtrail_event::Timestamp::now(),
                sealtrail_event::Ulid::nil(),
            )
            .unwrap_or_else(|e| panic!("the trail refuses {text}: {e:?}"));
            let v: Value = serde_json::from_str(text).expect("event is JSON");
            let key = v["idempotency_key"].as_str().expect("a key").to_owned();
            if seen.insert(key) {
                events.push(v);
            } else {
                outcome.duplicates += 1;
            }
        }
        Ok(outcome)
    })
    .expect("import runs");
    (report, events)
}

fn opts(format: LogFormat) -> ImportOptions {
    ImportOptions {
        format: Some(format),
        line_prefix: (format == LogFormat::Stderr).then(|| PREFIX.to_owned()),
        batch_size: 7,
    }
}

/// csvlog records counted by the csv crate alone.
fn csv_records(path: &Path) -> Vec<csv::StringRecord> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .expect("fixture opens")
        .records()
        .collect::<Result<_, _>>()
        .expect("fixture is CSV")
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

fn check_three_formats(dir: &Path) {
    let records = csv_records(&dir.join("server.csv"));
    assert!(records.len() > 20, "the capture has statements");
    let json_lines = std::fs::read_to_string(dir.join("server.json"))
        .expect("fixture")
        .lines()
        .count();
    assert_eq!(json_lines, records.len(), "csvlog and jsonlog hold the same entries");

    let (csv_report, csv_events) = run(&dir.join("server.csv"), &opts(LogFormat::Csvlog), &mut HashSet::new());
    let (json_report, json_events) = run(&dir.join("server.json"), &opts(LogFormat::Jsonlog), &mut HashSet::new());
    let (err_report, err_events) = run(&dir.join("server.log"), &opts(LogFormat::Stderr), &mut HashSet::new());
    for r in [&csv_report, &json_report, &err_report] {
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.imported as usize, records.len());
    }
    for (i, rec) in records.iter().enumerate() {
        let (c, j, e) = (&csv_events[i], &json_events[i], &err_events[i]);
        // Each format says the same about the same entry.
        for v in [c, j, e] {
            assert_eq!(s(v, "/details/message"), Some(&rec[13]), "entry {i}");
            assert_eq!(s(v, "/details/level"), Some(&rec[11]));
            assert_eq!(v["details"]["pid"].as_u64(), rec[3].parse().ok());
            assert_eq!(s(v, "/details/detail"), Some(&rec[14]).filter(|d| !d.is_empty()));
            assert_eq!(s(v, "/details/statement"), Some(&rec[19]).filter(|d| !d.is_empty()));
            assert_eq!(s(v, "/actor/id"), Some(&rec[1]).filter(|d| !d.is_empty()));
            assert_eq!(s(v, "/details/database"), Some(&rec[2]).filter(|d| !d.is_empty()));
            assert_eq!(s(v, "/action"), Some("pg.log"));
            assert_eq!(v["details"]["cursor_position"].as_u64(), rec[20].parse().ok());
            let ts = rec[0].replace(" UTC", "Z").replacen(' ', "T", 1);
            assert_eq!(s(v, "/occurred_at"), Some(ts.as_str()));
        }
        assert_eq!(s(c, "/context/session_id"), Some(&rec[5]));
        assert_eq!(s(j, "/context/session_id"), Some(&rec[5]));
        // stderr's %c comes after %q: printed for sessions only.
        let session = !rec[1].is_empty();
        assert_eq!(s(e, "/context/session_id"), Some(&rec[5]).filter(|_| session));
        // csvlog and jsonlog count lines alike: the same entry, the same key.
        assert_eq!(c["idempotency_key"], j["idempotency_key"]);
        assert_eq!(
            s(c, "/idempotency_key"),
            Some(format!("pg.log:{}:{}", &rec[5], &rec[6]).as_str())
        );
        assert_ne!(c["idempotency_key"], e["idempotency_key"]);
    }
    let dup = csv_events
        .iter()
        .position(|v| s(v, "/details/sqlstate") == Some("23505"))
        .expect("the duplicate-key error");
    for v in [&csv_events[dup], &json_events[dup], &err_events[dup]] {
        assert_eq!(s(v, "/severity"), Some("error"));
        assert_eq!(s(v, "/outcome"), Some("failure"));
        assert_eq!(s(v, "/details/detail"), Some("Key (id)=(1) already exists."));
        assert_eq!(
            s(v, "/details/statement"),
            Some("INSERT INTO accounts VALUES (1, 'mallory', 0);")
        );
        assert_eq!(s(v, "/context/ip"), Some("127.0.0.1"));
        assert_eq!(s(v, "/details/application"), Some("fixture-app"));
    }
    let multi = err_events
        .iter()
        .find(|v| s(v, "/message").is_some_and(|m| m.starts_with("statement: SELECT owner,")))
        .expect("the multi-line statement");
    assert_eq!(
        s(multi, "/message"),
        Some("statement: SELECT owner,\n       balance\n  FROM accounts\n WHERE id = 1;")
    );
}

#[test]
fn committed_fixtures_parse_alike_in_all_three_formats() {
    check_three_formats(&fixtures());
}

/// A fresh capture from this machine's PostgreSQL, when installed; the
/// committed fixtures above cover machines without it.
#[test]
fn a_fresh_capture_parses_alike() {
    let initdb = Path::new("/usr/lib/postgresql/15/bin/initdb");
    if !initdb.exists() {
        eprintln!("no PostgreSQL 15 server binaries: the committed fixtures stand in");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-log-fixtures");
    let status = std::process::Command::new(script)
        .arg(dir.path())
        .status()
        .expect("the capture script runs");
    assert!(status.success());
    check_three_formats(dir.path());
}

#[test]
fn reimport_stores_nothing_twice() {
    let mut seen = HashSet::new();
    let path = fixtures().join("server.csv");
    let (first, _) = run(&path, &opts(LogFormat::Csvlog), &mut seen);
    let (second, _) = run(&path, &opts(LogFormat::Csvlog), &mut seen);
    assert_eq!(second.imported, 0);
    assert_eq!(second.duplicates, first.imported);
    // jsonlog of the same server names the same entries.
    let (json, _) = run(&fixtures().join("server.json"), &opts(LogFormat::Jsonlog), &mut seen);
    assert_eq!((json.imported, json.duplicates), (0, first.imported));
}

#[test]
fn prefix_and_format_are_detected() {
    let path = fixtures().join("default-prefix.log");
    let (report, events) = run(&path, &ImportOptions::default(), &mut HashSet::new());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Entries: the lines not continuing another (tab) nor attached to it.
    let text = std::fs::read_to_string(&path).expect("fixture");
    let expected = text
        .lines()
        .filter(|l| !l.starts_with('\t') && !l.contains(" STATEMENT:  "))
        .count();
    assert_eq!(events.len(), expected);
    let err = events
        .iter()
        .find(|v| s(v, "/severity") == Some("error"))
        .expect("the syntax error");
    assert_eq!(s(err, "/actor/id"), Some("postgres"));
    assert_eq!(s(err, "/details/database"), Some("postgres"));
    assert_eq!(s(err, "/details/statement"), Some("SELECT * FROM accounts WHERE"));
    // No session id in this prefix: the key is the file's identity and line.
    assert!(s(err, "/idempotency_key").is_some_and(|k| k.starts_with("pg.stderr:") && k.ends_with(":7")));
    let two = events
        .iter()
        .find(|v| s(v, "/message") == Some("statement: SELECT 'two\nlines'"))
        .expect("continuation line joined");
    assert_eq!(s(two, "/severity"), Some("info"));
}

/// Copy `name` with `bad` put in place of line `at` (1-based).
fn with_bad_line(dir: &Path, name: &str, at: usize, bad: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(at - 1, bad);
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write copy");
    path
}

#[test]
fn a_malformed_line_is_reported_and_the_rest_imported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let total = csv_records(&fixtures().join("server.csv")).len() as u64;
    for (name, format, bad) in [
        (
            "server.json",
            LogFormat::Jsonlog,
            "{\"timestamp\": \"2026-12-06\", oops",
        ),
        (
            "server.csv",
            LogFormat::Csvlog,
            "2026-12-06 20:20:42.342 UTC,\"postgres\",only,four",
        ),
        (
            "server.log",
            LogFormat::Stderr,
            "this line was not written by the server",
        ),
    ] {
        let path = with_bad_line(dir.path(), name, 3, bad);
        let (report, _) = run(&path, &opts(format), &mut HashSet::new());
        assert_eq!(report.imported, total, "{name}");
        assert_eq!(report.errors.len(), 1, "{name}: {:?}", report.errors);
        let e = &report.errors[0];
        assert_eq!(
            (e.file.as_str(), e.line),
            (path.to_str().expect("utf-8 path"), 3),
            "{name}"
        );
        assert!(e.to_string().starts_with(&format!("{}:3: ", path.display())));
    }
}

#[test]
fn a_wrong_prefix_is_reported_line_by_line() {
    let mut o = opts(LogFormat::Stderr);
    o.line_prefix = Some("%t <%p> ".to_owned());
    let (report, events) = run(&fixtures().join("server.log"), &o, &mut HashSet::new());
    assert!(events.is_empty());
    assert!(report.error_count > 20);
    assert_eq!(report.errors[0].line, 1);
}

#[test]
fn an_unknown_prefix_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.log");
    std::fs::write(&path, "<<1>> LOG:  a\n<<2>> LOG:  b\n").expect("write");
    let err = import(&path, &ImportOptions::default(), |_: &[String]| {
        Ok(BatchOutcome::default())
    })
    .expect_err("no common prefix fits");
    assert!(err.to_string().contains("log_line_prefix"), "{err}");
}

#[test]
fn sink_refusals_are_reported_with_their_line() {
    let path = fixtures().join("server.json");
    let report = import(&path, &opts(LogFormat::Jsonlog), |batch: &[String]| {
        Ok(BatchOutcome {
            duplicates: 0,
            rejected: vec![(batch.len() - 1, "too big".to_owned())],
        })
    })
    .expect("import runs");
    assert!(report
        .errors
        .iter()
        .any(|e| e.line == 7 && e.message.contains("too big")));
}
