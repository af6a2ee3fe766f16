//! `sealtrail report` end to end: generated events appended with
//! `sealtrail append`, the reports written in each format and compared
//! with a count of the events the test sent, an empty period, and the
//! refusals of bad arguments, each naming its argument.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::Value;

mod support;

use support::expect;

#[test]
fn reports_are_written_in_each_format_and_bad_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    expect(&data, &["init"], b"", 0);
    let shape = sealtrail_testgen::Shape {
        mean_gap_ms: 60_000.0,
        ..Default::default()
    };
    let mut input = Vec::new();
    let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = 0;
    let (since, until): (jiff::Timestamp, jiff::Timestamp) = (
        "2026-01-01T12:00:00Z".parse().unwrap(),
        "2026-01-02T12:00:00Z".parse().unwrap(),
    );
    for e in sealtrail_testgen::events_with(3, 3_000, &shape) {
        let v: Value = serde_json::from_slice(&e).unwrap();
        let at: jiff::Timestamp = v["occurred_at"].as_str().unwrap().parse().unwrap();
        if at >= since && at < until {
            *by_action.entry(v["action"].as_str().unwrap().to_string()).or_default() += 1;
            failures += u64::from(v["outcome"] == "failure");
        }
        input.extend_from_slice(&e);
        input.push(b'\n');
    }
    expect(&data, &["append"], &input, 0);

    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let range = ["--since", "2026-01-01T12:00:00Z", "--until", "2026-01-02T12:00:00Z"];
    let mut args = vec!["report", "summary", "--format", "json", "--output", "-"];
    args.extend(range);
    let (stdout, _) = expect(&data, &args, b"", 0);
    let j: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["total"], by_action.values().sum::<u64>());
    assert_eq!(j["by_action"], serde_json::json!(by_action));
    assert_eq!(j["failures"]["count"], failures);
    assert_eq!(j["checkpoint"]["size"], 3_000);
    assert_eq!(j["bucket"], "hour");
    assert_eq!(j["volume"].as_array().unwrap().len(), 24);

    for (kind, format) in [("summary", "html"), ("compliance", "xlsx"), ("compliance", "json")] {
        let file = out(&format!("{kind}.{format}"));
        let mut args = vec!["report", kind, "--format", format, "--output", &file];
        args.extend(range);
        let (_, stderr) = expect(&data, &args, b"", 0);
        assert!(
            stderr.contains(&format!(
                "wrote the {kind} report of log default (3000 entries counted)"
            )),
            "{stderr}"
        );
        let bytes = std::fs::read(&file).unwrap();
        match format {
            "html" => assert!(String::from_utf8(bytes).unwrap().contains("Summary of log default")),
            "xlsx" => assert!(bytes.starts_with(b"PK\x03\x04")),
            _ => assert_eq!(
                serde_json::from_slice::<Value>(&bytes).unwrap()["classes"]
                    .as_array()
                    .unwrap()
                    .len(),
                6
            ),
        }
    }

    // A period without events: a report that says so, exit 0.
    let (stdout, stderr) = expect(
        &data,
        &[
            "report",
            "summary",
            "--since",
            "2030-01-01",
            "--until",
            "2030-01-02",
            "--format",
            "json",
            "--output",
            "-",
        ],
        b"",
        0,
    );
    assert!(stderr.contains("no events in the period"), "{stderr}");
    let j: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((j["total"].clone(), j["empty"].clone()), (0.into(), true.into()));

    // access-review without meta.db is refused, saying why.
    let (_, stderr) = expect(
        &data,
        &["report", "access-review", "--format", "json", "--output", "-"],
        b"",
        2,
    );
    assert!(stderr.contains("access-review needs the metadata database"), "{stderr}");

    // Bad arguments, each named; nothing written.
    let bad = out("bad.json");
    for (args, needle) in [
        (
            vec!["report", "weekly", "--format", "json", "--output", &bad],
            "TYPE: \"weekly\" is not a report type",
        ),
        (
            vec!["report", "summary", "--format", "pdf", "--output", &bad],
            "--format: \"pdf\" is not a report format",
        ),
        (
            vec![
                "report",
                "summary",
                "--since",
                "yesterday",
                "--format",
                "json",
                "--output",
                &bad,
            ],
            "--since",
        ),
        (
            vec![
                "report",
                "summary",
                "--since",
                "2026-01-02",
                "--until",
                "2026-01-01",
                "--format",
                "json",
                "--output",
                &bad,
            ],
            "--since 2026-01-02T00:00:00Z is not before --until 2026-01-01T00:00:00Z",
        ),
        (vec!["report", "summary", "--format", "json"], "--output"),
    ] {
        let (_, stderr) = expect(&data, &args, b"", 2);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!std::path::Path::new(&bad).exists());
    }
}

/// A diff run of comparison `name` started at `at` with these counts
/// (all zero: a run that found nothing), or failed with `error`.
fn diff_run(name: &str, at: &str, counts: [u64; 3], error: Option<&str>) -> sealtrail_meta::DataRun {
    use sealtrail_meta::{RunKind, RunOutcome};
    let [added, removed, changed] = counts;
    let outcome = match error {
        Some(_) => RunOutcome::Failure,
        None if added + removed + changed > 0 => RunOutcome::Differences,
        None => RunOutcome::Success,
    };
    sealtrail_meta::DataRun {
        kind: RunKind::Diff,
        name: Some(name.to_string()),
        inputs: Vec::new(),
        parameters: serde_json::json!({}),
        summary: match error {
            Some(_) => serde_json::json!({}),
            None => serde_json::json!({"left_rows": 100, "right_rows": 100 + added - removed,
                "added": added, "removed": removed, "changed": changed, "unchanged": 100 - removed - changed}),
        },
        started_at: at.to_string(),
        finished_at: at.to_string(),
        duration_ms: 0,
        outcome,
        error: error.map(str::to_string),
        quality_score: None,
        actor: serde_json::json!({"id": "cli:test", "type": "user"}),
    }
}

#[test]
fn a_reconciliation_report_covers_the_named_comparison_and_refuses_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    expect(&data, &["init"], b"", 0);
    let mut input = Vec::new();
    for e in sealtrail_testgen::events_with(5, 40, &sealtrail_testgen::Shape::default()) {
        input.extend_from_slice(&e);
        input.push(b'\n');
    }
    expect(&data, &["append"], &input, 0);

    // Without meta.db the report cannot run, and says why.
    let (_, stderr) = expect(
        &data,
        &[
            "report",
            "reconciliation",
            "--name",
            "nightly",
            "--format",
            "json",
            "--output",
            "-",
        ],
        b"",
        2,
    );
    assert!(
        stderr.contains("reconciliation needs the metadata database"),
        "{stderr}"
    );

    let runs = [
        ("nightly", "2026-04-01T01:00:00Z", [3, 1, 4], None),
        ("nightly", "2026-04-02T01:00:00Z", [0, 0, 0], None),
        (
            "nightly",
            "2026-04-03T01:00:00Z",
            [0, 0, 0],
            Some("left.csv: no such file"),
        ),
        ("nightly", "2026-04-04T01:00:00Z", [2, 0, 5], None),
        // Outside the period, and another comparison.
        ("nightly", "2026-04-09T01:00:00Z", [50, 50, 50], None),
        ("weekly-ledger", "2026-04-02T03:00:00Z", [9, 9, 9], None),
    ];
    {
        let meta = sealtrail_meta::Meta::open(&data).unwrap();
        for (name, at, counts, error) in runs {
            meta.record_data_run(&diff_run(name, at, counts, error)).unwrap();
        }
    }
    let (since, until) = ("2026-04-01", "2026-04-08");
    let chosen: Vec<_> = runs
        .iter()
        .filter(|(name, at, _, _)| *name == "nightly" && *at >= since && *at < until)
        .collect();
    let ran: Vec<_> = chosen.iter().filter(|r| r.3.is_none()).collect();
    let total: u64 = ran.iter().map(|r| r.2.iter().sum::<u64>()).sum();
    assert_eq!((chosen.len(), ran.len(), total), (4, 3, 15));

    let base = ["report", "reconciliation", "--since", since, "--until", until];
    let mut args = base.to_vec();
    args.extend(["--name", "nightly", "--format", "json", "--output", "-"]);
    let (stdout, _) = expect(&data, &args, b"", 0);
    let j: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["report"], "reconciliation");
    assert_eq!(j["name"], "nightly");
    assert_eq!(j["runs_total"], chosen.len());
    assert_eq!(j["by_outcome"]["failure"], 1);
    assert_eq!(j["totals"]["differences"], total);
    assert_eq!(j["trend"].as_array().unwrap().len(), ran.len());
    assert_eq!(j["failures"][0]["error"], "left.csv: no such file");
    assert_eq!(j["checkpoint"]["size"], 40);

    for format in ["html", "xlsx"] {
        let file = dir.path().join(format!("reconciliation.{format}"));
        let mut args = base.to_vec();
        args.extend([
            "--name",
            "nightly",
            "--format",
            format,
            "--output",
            file.to_str().unwrap(),
        ]);
        let (_, stderr) = expect(&data, &args, b"", 0);
        assert!(
            stderr.contains("wrote the reconciliation report of log default (40 entries counted)"),
            "{stderr}"
        );
        let bytes = std::fs::read(&file).unwrap();
        if format == "html" {
            let html = String::from_utf8(bytes).unwrap();
            assert!(html.contains("Reconciliation of nightly"), "{html}");
            assert!(html.contains("left.csv: no such file"));
            assert!(!html.contains("weekly-ledger") && !html.contains("<script"));
        } else {
            assert!(bytes.starts_with(b"PK\x03\x04"));
        }
    }

    // A missing, empty or unknown name, or a name for another type: refused,
    // naming it, nothing written.
    let bad = dir.path().join("bad.json");
    let bad = bad.to_str().unwrap();
    for (extra, needle) in [
        (
            vec![],
            "--name: a reconciliation report covers one named comparison: give its name",
        ),
        (
            vec!["--name", ""],
            "--name: a reconciliation report covers one named comparison",
        ),
        (
            vec!["--name", "nightly-old"],
            "--name \"nightly-old\": no data run of a comparison of that name (known: \"nightly\", \"weekly-ledger\")",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend(extra);
        args.extend(["--format", "json", "--output", bad]);
        let (_, stderr) = expect(&data, &args, b"", 2);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!std::path::Path::new(bad).exists());
    }
    let (_, stderr) = expect(
        &data,
        &[
            "report", "summary", "--name", "nightly", "--format", "json", "--output", bad,
        ],
        b"",
        2,
    );
    assert!(
        stderr.contains("--name \"nightly\": only a reconciliation report covers a named comparison, not summary"),
        "{stderr}"
    );
}
