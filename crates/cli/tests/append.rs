//! `sealtrail append` of a file larger than many chunks: the ledger holds
//! the lines in file order, bad lines far into the file are named by their
//! number, `--strict` appends nothing for one bad line near the end and
//! everything otherwise, and the exit statuses say which happened.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod support;

const LINES: usize = 20_000;

fn line(n: usize) -> String {
    format!("{{\"action\":\"cli.order\",\"message\":\"line {n}\"}}")
}

/// Run `sealtrail --data data args`: exit code, stdout, stderr.
fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `message` of every stored event, oldest first.
fn messages(data: &Path) -> Vec<String> {
    let (code, out, err) = run(data, &["export", "--format", "jsonl", "--output", "-"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_large_file_is_stored_in_line_order_with_late_bad_lines_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert_eq!(run(&data, &["init"]).0, 0);
    let mut lines: Vec<String> = (1..=LINES).map(line).collect();
    lines[15_000] = "{\"action\":\"cli.order\",\"outcome\":\"maybe\"}".into();
    lines[18_499] = "{\"action\":".into();
    let file = tmp.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    // --strict: one bad line near the end, nothing appended, both named.
    let (code, out, err) = run(&data, &["append", "--strict", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("appended nothing: 2 of 20000 lines rejected (--strict); tree size 0"),
        "{out}"
    );
    assert!(err.contains("line 15001: outcome: "), "{err}");
    assert!(err.contains("line 18500, column "), "{err}");

    let (code, out, err) = run(&data, &["append", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("appended 19998 events (entries 0..19997), 0 duplicates, 2 rejected; tree size 19998"),
        "{out}"
    );
    let named: Vec<&str> = err.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(named.len(), 2, "{err}");
    assert!(named[0].starts_with("line 15001: outcome: "), "{err}");
    assert!(named[1].starts_with("line 18500, column "), "{err}");
    let expected: Vec<String> = (1..=LINES)
        .filter(|n| *n != 15_001 && *n != 18_500)
        .map(|n| format!("line {n}"))
        .collect();
    assert_eq!(messages(&data), expected);
}

#[test]
fn strict_appends_a_good_file_whole_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert_eq!(run(&data, &["init"]).0, 0);
    let file = tmp.path().join("events.jsonl");
    let text: String = (1..=LINES).map(|n| line(n) + "\r\n").collect();
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = run(&data, &["append", "--strict", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("appended 20000 events (entries 0..19999), 0 duplicates, 0 rejected; tree size 20000"),
        "{out}"
    );
    let expected: Vec<String> = (1..=LINES).map(|n| format!("line {n}")).collect();
    assert_eq!(messages(&data), expected);
}

fn keyed(n: usize) -> String {
    format!("{{\"action\":\"cli.order\",\"message\":\"keyed {n}\",\"idempotency_key\":\"k-{n}\"}}\n")
}

/// The query index of the default log, made unreadable: a directory
/// stands where its manifest goes, so the next open fails with an I/O
/// error and the index is rebuilt from the ledger.
fn break_index(data: &Path) -> std::path::PathBuf {
    let index = data.join("logs").join("default").join("query-index");
    let manifest = index.join("MANIFEST");
    std::fs::remove_file(&manifest).unwrap();
    std::fs::create_dir(&manifest).unwrap();
    index
}

#[test]
fn a_keyed_append_waits_for_an_index_that_did_not_open_to_be_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert_eq!(run(&data, &["init"]).0, 0);
    let first = tmp.path().join("first.jsonl");
    std::fs::write(&first, (0..40).map(keyed).collect::<String>()).unwrap();
    let (code, out, err) = run(&data, &["append", first.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    break_index(&data);

    // Ten resends of stored keys and ten new ones: the resends can only be
    // told apart by an index that holds the stored keys.
    let second = tmp.path().join("second.jsonl");
    std::fs::write(&second, (30..50).map(keyed).collect::<String>()).unwrap();
    let (code, out, err) = run(&data, &["append", second.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("query index of log default did not open; rebuilding it"),
        "{err}"
    );
    assert!(
        out.contains("appended 10 events (entries 40..49), 10 duplicates, 0 rejected; tree size 50"),
        "{out}"
    );
    let expected: Vec<String> = (0..50).map(|n| format!("keyed {n}")).collect();
    assert_eq!(messages(&data), expected);
}

#[test]
fn a_keyed_append_stops_when_the_rebuild_fails_and_names_reindex() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert_eq!(run(&data, &["init"]).0, 0);
    let first = tmp.path().join("first.jsonl");
    std::fs::write(&first, (0..5).map(keyed).collect::<String>()).unwrap();
    assert_eq!(run(&data, &["append", first.to_str().unwrap()]).0, 0);
    let index = break_index(&data);
    // A file where the replaced index is moved makes every rebuild fail.
    let obstacle = index.with_file_name("query-index.retired");
    std::fs::write(&obstacle, b"in the way").unwrap();

    let second = tmp.path().join("second.jsonl");
    std::fs::write(&second, (5..8).map(keyed).collect::<String>()).unwrap();
    let (code, out, err) = run(&data, &["append", second.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("could not be rebuilt from the ledger"), "{err}");
    assert!(err.contains("nothing was appended"), "{err}");
    assert!(err.contains("sealtrail --log default reindex"), "{err}");

    // Once the cause is gone the next append rebuilds and goes on.
    std::fs::remove_file(&obstacle).unwrap();
    let (code, out, err) = run(&data, &["append", second.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("appended 3 events (entries 5..7), 0 duplicates"), "{out}");
}
