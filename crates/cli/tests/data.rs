//! `sealtrail data`: diff, keys and validate from the command line, their
//! exit statuses, reports written whole or not at all, every run recorded
//! with its system-log event, row changes recorded as audit events, and
//! the run history's compare and trend. Expected answers come from the
//! tables the tests write, not from the code under test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::Digest;

mod support;
use support::cli;

/// Writes a CSV of `rows` under `header`.
fn write_csv(path: &Path, header: &str, rows: &[String]) {
    let mut text = format!("{header}\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Two tables with known differences: left ids 0..n; right drops every 7th,
/// changes `amount` of every 5th (not dropped), adds n..n+extra, and lists
/// its rows in reverse order.
struct Pair {
    removed: u64,
    changed: u64,
    added: u64,
    unchanged: u64,
}

fn pair(dir: &Path, n: u64, extra: u64) -> Pair {
    let mut left = Vec::new();
    let mut right = Vec::new();
    let (mut removed, mut changed, mut unchanged) = (0, 0, 0);
    for id in 0..n {
        left.push(format!("{id},name {id},{}", id * 10));
        if id % 7 == 3 {
            removed += 1;
        } else if id % 5 == 1 {
            changed += 1;
            right.push(format!("{id},name {id},{}", id * 10 + 1));
        } else {
            unchanged += 1;
            right.push(format!("{id},name {id},{}", id * 10));
        }
    }
    for id in n..n + extra {
        right.push(format!("{id},name {id},0"));
    }
    right.reverse();
    write_csv(&dir.join("left.csv"), "id,name,amount", &left);
    write_csv(&dir.join("right.csv"), "id,name,amount", &right);
    Pair {
        removed,
        changed,
        added: extra,
        unchanged,
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

fn runs(data: &Path) -> Vec<Value> {
    let (code, out, err) = cli(data, &["data", "runs", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

#[test]
fn diff_reports_exact_counts_and_exit_statuses_and_every_run_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let want = pair(dir.path(), 2000, 37);
    let (l, r) = (path(dir.path(), "left.csv"), path(dir.path(), "right.csv"));

    let (code, out, err) = cli(
        &data,
        &[
            "data",
            "diff",
            &l,
            &r,
            "--key",
            "id",
            "--format",
            "json",
            "--no-progress",
        ],
    );
    assert_eq!(code, 1, "differences exit 1: {err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let s = &doc["summary"];
    assert_eq!(s["left_rows"], 2000);
    assert_eq!(s["right_rows"], 2000 - want.removed + want.added);
    assert_eq!(s["added"], want.added);
    assert_eq!(s["removed"], want.removed);
    assert_eq!(s["changed"], want.changed);
    assert_eq!(s["unchanged"], want.unchanged);
    assert_eq!(s["left_duplicate_keys"], 0);
    assert_eq!(s["right_duplicate_keys"], 0);
    assert_eq!(s["changed_fields"], serde_json::json!({"amount": want.changed}));
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len() as u64, want.added + want.removed + want.changed);
    let mut kinds = BTreeMap::new();
    for c in changes {
        *kinds.entry(c["kind"].as_str().unwrap().to_string()).or_insert(0u64) += 1;
        if c["kind"] == "changed" {
            let id: u64 = c["key"][0].as_str().unwrap().parse().unwrap();
            assert_eq!(id % 5, 1);
            assert_eq!(c["fields"][0]["old"], (id * 10).to_string());
            assert_eq!(c["fields"][0]["new"], (id * 10 + 1).to_string());
        }
    }
    assert_eq!(kinds["removed"], want.removed);

    // The same table on both sides: exit 0.
    let (code, _, err) = cli(&data, &["data", "diff", &l, &l, "--key", "id", "--no-progress"]);
    assert_eq!(code, 0, "{err}");

    // A missing key column: exit 2, the error names the input and column,
    // and the report file is not written at all.
    let report = dir.path().join("report.xlsx");
    let (code, _, err) = cli(
        &data,
        &[
            "data",
            "diff",
            &l,
            &r,
            "--key",
            "nope",
            "--format",
            "xlsx",
            "--output",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("left.csv") && err.contains("\"nope\""), "{err}");
    assert!(!report.exists(), "a failed run leaves no report");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // With --output the report is complete.
    let (code, _, err) = cli(
        &data,
        &[
            "data",
            "diff",
            &l,
            &r,
            "--key",
            "id",
            "--format",
            "xlsx",
            "--output",
            report.to_str().unwrap(),
            "--no-progress",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(&std::fs::read(&report).unwrap()[..2], b"PK");

    // Every run is recorded, newest first, failures included, with the
    // inputs' fingerprints.
    let list = runs(&data);
    let outcomes: Vec<&str> = list.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["differences", "failure", "success", "differences"]);
    let digest = sha2::Sha256::digest(std::fs::read(dir.path().join("left.csv")).unwrap());
    let sha: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(list[0]["inputs"][0]["sha256"], sha);
    assert!(list[1]["error"].as_str().unwrap().contains("nope"));

    // Each with its system-log event.
    let (code, out, err) = cli(
        &data,
        &[
            "--log",
            "system",
            "query",
            "--action",
            "data.run.*",
            "--format",
            "jsonl",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let actions: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "data.run.completed").count(),
        3,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "data.run.failed").count(),
        1,
        "{actions:?}"
    );
}

#[test]
fn record_appends_each_row_change_as_an_audit_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let want = pair(dir.path(), 100, 3);
    let (l, r) = (path(dir.path(), "left.csv"), path(dir.path(), "right.csv"));
    let (code, _, err) = cli(&data, &["init"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        &data,
        &[
            "data",
            "diff",
            &l,
            &r,
            "--key",
            "id",
            "--record",
            "--name",
            "orders",
            "--format",
            "jsonl",
            "--no-progress",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = cli(
        &data,
        &[
            "query",
            "--action",
            "data.row.*",
            "--format",
            "jsonl",
            "--limit",
            "1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len() as u64, want.added + want.removed + want.changed);
    let changed = events.iter().find(|e| e["action"] == "data.row.changed").unwrap();
    let id: u64 = changed["targets"][1]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        changed["targets"][0],
        serde_json::json!({"type": "dataset", "id": "orders"})
    );
    assert_eq!(changed["changes"]["fields"], serde_json::json!(["amount"]));
    assert_eq!(changed["changes"]["before"]["amount"], (id * 10).to_string());
    assert_eq!(changed["changes"]["after"]["amount"], (id * 10 + 1).to_string());
    let added = events.iter().find(|e| e["action"] == "data.row.added").unwrap();
    assert_eq!(added["changes"]["after"]["amount"], "0");
}

#[test]
fn keys_prints_the_documented_json_and_validate_reports_violations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // a is unique; (b, c) together are; d is constant.
    let rows: Vec<String> = (0..40).map(|i| format!("{i},{},{},x", i % 4, i / 4)).collect();
    write_csv(&dir.path().join("t.csv"), "a,b,c,d", &rows);
    let t = path(dir.path(), "t.csv");
    let (code, out, err) = cli(&data, &["data", "keys", &t, "--format", "json", "--no-progress"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["rows"], 40);
    assert_eq!(doc["columns"], serde_json::json!(["a", "b", "c", "d"]));
    assert_eq!(doc["keys"], serde_json::json!([["a"], ["b", "c"]]));

    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[columns.b]\ntype = \"integer\"\nrange = { min = 0, max = 2 }\n",
    )
    .unwrap();
    let (code, out, err) = cli(
        &data,
        &[
            "data",
            "validate",
            &t,
            "--rules",
            rules.to_str().unwrap(),
            "--format",
            "csv",
            "--no-progress",
        ],
    );
    assert_eq!(code, 1, "{err}");
    // b = 3 on every fourth row: lines 5, 9, … (line 1 is the header).
    let lines: Vec<&str> = out.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    let want: Vec<String> = (0..40).filter(|i| i % 4 == 3).map(|i| (i + 2).to_string()).collect();
    assert_eq!(lines, want);

    // A rule on a column the input lacks: exit 2, naming the column.
    std::fs::write(&rules, "[columns.zz]\nrequired = true\n").unwrap();
    let (code, _, err) = cli(
        &data,
        &[
            "data",
            "validate",
            &t,
            "--rules",
            rules.to_str().unwrap(),
            "--no-progress",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("zz"), "{err}");
}

#[test]
fn runs_compare_and_trend_flag_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (l, r) = (path(dir.path(), "left.csv"), path(dir.path(), "right.csv"));
    // Six clean runs, then one with differences.
    pair(dir.path(), 300, 0);
    std::fs::copy(dir.path().join("left.csv"), dir.path().join("right.csv")).unwrap();
    let nightly = || {
        cli(
            &data,
            &[
                "data",
                "diff",
                &l,
                &r,
                "--key",
                "id",
                "--name",
                "nightly",
                "--no-progress",
            ],
        )
    };
    for _ in 0..6 {
        let (code, _, err) = nightly();
        assert_eq!(code, 0, "{err}");
    }
    pair(dir.path(), 300, 5);
    let (code, _, err) = nightly();
    assert_eq!(code, 1, "{err}");

    let list = runs(&data);
    let (last, before) = (list[0]["id"].as_i64().unwrap(), list[1]["id"].as_i64().unwrap());
    let (code, out, err) = cli(
        &data,
        &[
            "data",
            "runs",
            "compare",
            &before.to_string(),
            &last.to_string(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["metrics"]["added"]["after"], 5.0);
    assert!(c["quality_change"].as_f64().unwrap() < 0.0, "{c}");

    let (code, out, err) = cli(&data, &["data", "runs", "trend", "nightly", "--json"]);
    assert_eq!(code, 0, "{err}");
    let points: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(points.len(), 7);
    let newest = points.last().unwrap();
    assert!(
        newest["anomalies"].as_array().unwrap().iter().any(|a| a == "added"),
        "{newest}"
    );
    assert!(!newest["regressions"].as_array().unwrap().is_empty(), "{newest}");
    assert!(points[..6]
        .iter()
        .all(|p| p["regressions"].as_array().unwrap().is_empty()));
}
