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
