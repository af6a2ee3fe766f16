//! The `reconciliation` report on data runs recorded through `meta.db`'s
//! public API: its JSON figures checked against sums the test makes of
//! the counts it recorded, the HTML for the runs, the failure and the
//! checkpoint, and the XLSX read by openpyxl (scripts/report-xlsx).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_meta::{DataRun, Meta, RunInput, RunKind, RunOutcome};
use sealtrail_report::{generate, render, Format, ReportKind, Request};
use sealtrail_trail::{Trail, TrailOptions};
use serde_json::{json, Value};

mod support;
use support::{in_browser, json_of, openpyxl, screens, sheet, signed_root, ts};

const NAME: &str = "nightly-invoices";
const OTHER: &str = "payroll-sync";
const SINCE: &str = "2026-03-01T00:00:00Z";
const UNTIL: &str = "2026-03-08T00:00:00Z";

/// One run as the test records it: what the report must show.
#[derive(Clone)]
struct Spec {
    name: &'static str,
    kind: RunKind,
    started_at: &'static str,
    outcome: RunOutcome,
    /// left_rows, right_rows, added, removed, changed, unchanged (diff).
    diff: Option<[u64; 6]>,
    /// rows and keys found (keys).
    keys: Option<(u64, Vec<Vec<&'static str>>)>,
    error: Option<&'static str>,
}

fn diff(name: &'static str, started_at: &'static str, counts: [u64; 6]) -> Spec {
    let [_, _, added, removed, changed, _] = counts;
    Spec {
        name,
        kind: RunKind::Diff,
        started_at,
        outcome: if added + removed + changed > 0 {
            RunOutcome::Differences
        } else {
            RunOutcome::Success
        },
        diff: Some(counts),
        keys: None,
        error: None,
    }
}

/// The runs recorded, in the order recorded (ids grow in this order).
fn specs() -> Vec<Spec> {
    vec![
        // Before the period: the report's `previous`.
        diff(NAME, "2026-02-20T02:00:00Z", [900, 990, 100, 10, 1, 889]),
        diff(NAME, "2026-03-01T02:00:00Z", [1000, 1003, 5, 2, 7, 991]),
        // Another comparison, in the period: never shown.
        diff(OTHER, "2026-03-02T01:00:00Z", [50, 777, 727, 0, 0, 50]),
        diff(NAME, "2026-03-02T02:00:00Z", [1003, 1003, 0, 0, 0, 1003]),
        Spec {
            name: NAME,
            kind: RunKind::Diff,
            started_at: "2026-03-03T02:00:00Z",
            outcome: RunOutcome::Failure,
            diff: None,
            keys: None,
            error: Some("right.csv:7: 3 values, expected 4"),
        },
        Spec {
            name: NAME,
            kind: RunKind::Keys,
            started_at: "2026-03-04T02:00:00Z",
            outcome: RunOutcome::Success,
            diff: None,
            keys: Some((1003, vec![vec!["invoice_id"], vec!["number", "year"]])),
            error: None,
        },
        diff(NAME, "2026-03-05T02:00:00Z", [1003, 1010, 9, 2, 11, 990]),
        // After the period.
        diff(NAME, "2026-03-10T02:00:00Z", [1010, 1010, 40, 40, 40, 930]),
    ]
}

fn data_run(s: &Spec) -> DataRun {
    let summary = match (&s.diff, &s.keys) {
        (Some([l, r, a, d, c, u]), _) => json!({
            "left": "left.csv", "right": "right.csv", "key_columns": ["invoice_id"],
            "left_rows": l, "right_rows": r, "added": a, "removed": d, "changed": c, "unchanged": u,
            "left_duplicate_keys": 0, "right_duplicate_keys": 0, "spilled": false,
        }),
        (None, Some((rows, keys))) => json!({"rows": rows, "columns": 6, "keys": keys}),
        (None, None) => json!({}),
    };
    let started = ts(s.started_at);
    let finished = Timestamp::from_second(started.as_second() + 90).unwrap();
    DataRun {
        kind: s.kind,
        name: Some(s.name.to_string()),
        inputs: vec![RunInput {
            address: "left.csv".into(),
            sha256: Some("ab".repeat(32)),
            bytes: Some(4096),
        }],
        parameters: json!({"key": ["invoice_id"]}),
        summary,
        started_at: s.started_at.to_string(),
        finished_at: finished.to_string(),
        duration_ms: 90_000,
        outcome: s.outcome,
        error: s.error.map(str::to_string),
        quality_score: None,
        actor: json!({"id": "job:nightly-invoices", "type": "service"}),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    /// Ids of `specs()`, in order.
    ids: Vec<i64>,
    /// The run begun in the period and not finished.
    open_id: i64,
    size: u64,
}

/// A log of generated events (the report's checkpoint) and the runs of
/// [`specs`] recorded in `meta.db`, then one more begun and left open.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dd = DataDir::new(&data);
    dd.create_log("default", None).unwrap();
    let texts: Vec<Vec<u8>> = sealtrail_testgen::events_with(11, 300, &sealtrail_testgen::Shape::default()).collect();
    let trail = Trail::open(&dd, "default", TrailOptions::default()).unwrap();
    let refs: Vec<&[u8]> = texts.iter().map(|t| t.as_slice()).collect();
    trail.ingest(&refs, true).unwrap();
    trail.sync_index().unwrap();
    let size = trail.log().size();
    drop(trail);

    let meta = Meta::open(&data).unwrap();
    let ids = specs()
        .iter()
        .map(|s| meta.record_data_run(&data_run(s)).unwrap())
        .collect();
    let mut begun = data_run(&diff(NAME, "2026-03-06T02:00:00Z", [0; 6]));
    begun.summary = json!({});
    let open_id = meta.begin_data_run(&begun).unwrap();
    Fixture {
        _dir: dir,
        data,
        ids,
        open_id,
        size,
    }
}

fn request(name: Option<&str>, since: Option<&str>, until: Option<&str>) -> Request {
    Request {
        kind: ReportKind::Reconciliation,
        log: "default".into(),
        since: since.map(ts),
        until: until.map(ts),
        now: ts("2026-03-20T00:00:00Z"),
        name: name.map(str::to_string),
    }
}

/// The specs of `NAME` started in the period, with their ids, oldest first.
fn in_period(f: &Fixture) -> Vec<(i64, Spec)> {
    let (since, until) = (ts(SINCE), ts(UNTIL));
    let mut v: Vec<(i64, Spec)> = f
        .ids
        .iter()
        .copied()
        .zip(specs())
        .filter(|(_, s)| s.name == NAME && ts(s.started_at) >= since && ts(s.started_at) < until)
        .collect();
    v.sort_by_key(|(_, s)| ts(s.started_at));
    v
}

#[test]
fn the_runs_of_one_comparison_and_their_trend_match_what_was_recorded() {
    let f = fixture();
    let report = generate(&f.data, &request(Some(NAME), Some(SINCE), Some(UNTIL))).unwrap();
    let j = json_of(&report);
    let runs = in_period(&f);
    assert_eq!(runs.len(), 5);

    assert_eq!(j["report"], "reconciliation");
    assert_eq!(j["name"], NAME);
    assert_eq!(j["title"], format!("Reconciliation of {NAME}"));
    assert_eq!(j["empty"], false);
    assert_eq!(j["period"], json!({"since": SINCE, "until": UNTIL}));
    // The checkpoint of the log the report was asked about.
    let (signed_size, signed_root) = signed_root(&f.data, "default");
    assert_eq!(j["checkpoint"]["size"], f.size);
    assert_eq!(signed_size, f.size);
    assert_eq!(j["checkpoint"]["root_hash"], signed_root);
    assert_eq!(j["checkpoint"]["signature_valid"], true);

    // Five recorded runs and the open one.
    assert_eq!(j["runs_total"], 6);
    let finished = |o: RunOutcome| runs.iter().filter(|(_, s)| s.outcome == o).count();
    assert_eq!(
        j["by_outcome"],
        json!({
            "success": finished(RunOutcome::Success),
            "differences": finished(RunOutcome::Differences),
            "failure": finished(RunOutcome::Failure),
            "running": 1,
        })
    );
    assert_eq!(j["by_outcome"]["success"], 2);
    assert_eq!(j["by_kind"], json!({"diff": 5, "keys": 1}));

    // Every run, oldest first, the open one last; its counts as written.
    let listed = j["runs"].as_array().unwrap();
    let mut want_ids: Vec<i64> = runs.iter().map(|(id, _)| *id).collect();
    want_ids.push(f.open_id);
    assert_eq!(
        listed.iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>(),
        want_ids
    );
    for ((id, s), r) in runs.iter().zip(listed) {
        assert_eq!(r["started_at"], s.started_at, "run {id}");
        assert_eq!(r["kind"], s.kind.as_str(), "run {id}");
        assert_eq!(r["outcome"], s.outcome.as_str(), "run {id}");
        assert_eq!(r["open"], false, "run {id}");
        assert_eq!(r["duration_ms"], 90_000, "run {id}");
        match (&s.diff, &s.keys) {
            (Some([l, rr, a, d, c, u]), _) => {
                assert_eq!(
                    [
                        &r["left_rows"],
                        &r["right_rows"],
                        &r["added"],
                        &r["removed"],
                        &r["changed"],
                        &r["unchanged"]
                    ],
                    [&json!(l), &json!(rr), &json!(a), &json!(d), &json!(c), &json!(u)],
                    "run {id}"
                );
                assert_eq!(r["differences"], a + d + c, "run {id}");
                assert_eq!(r["keys_found"], Value::Null, "run {id}");
                assert_eq!(
                    r["metrics"],
                    json!({"left_rows": l, "right_rows": rr, "added": a, "removed": d, "changed": c,
                        "unchanged": u, "left_duplicate_keys": 0, "right_duplicate_keys": 0}),
                    "run {id}"
                );
            }
            (None, Some((rows, keys))) => {
                assert_eq!(r["rows"], *rows, "run {id}");
                assert_eq!(r["keys_found"], keys.len(), "run {id}");
                assert_eq!(r["added"], Value::Null, "run {id}");
                assert_eq!(r["differences"], Value::Null, "run {id}");
            }
            (None, None) => {
                assert_eq!(r["error"], s.error.unwrap(), "run {id}");
                assert_eq!(r["added"], Value::Null, "run {id}");
            }
        }
    }
    let open = listed.last().unwrap();
    assert_eq!(
        (open["open"].clone(), open["started_at"].clone()),
        (json!(true), json!("2026-03-06T02:00:00Z"))
    );

    // The failure with its error; not in the trend.
    let failed: Vec<&(i64, Spec)> = runs.iter().filter(|(_, s)| s.outcome == RunOutcome::Failure).collect();
    assert_eq!(
        j["failures"],
        json!([{
            "id": failed[0].0,
            "kind": "diff",
            "started_at": failed[0].1.started_at,
            "error": "right.csv:7: 3 values, expected 4",
        }])
    );

    // The trend: one point per run that ran to the end.
    let ended: Vec<&(i64, Spec)> = runs.iter().filter(|(_, s)| s.outcome != RunOutcome::Failure).collect();
    let trend = j["trend"].as_array().unwrap();
    assert_eq!(trend.len(), ended.len());
    assert_eq!(trend.len(), 4);
    for ((id, s), p) in ended.iter().zip(trend) {
        assert_eq!(p["id"], *id);
        assert_eq!(p["started_at"], s.started_at);
        match &s.diff {
            Some([_, _, a, d, c, _]) => {
                assert_eq!(
                    [&p["added"], &p["removed"], &p["changed"]],
                    [&json!(a), &json!(d), &json!(c)]
                );
                assert_eq!(p["differences"], a + d + c);
            }
            None => {
                assert_eq!(p["differences"], Value::Null);
                assert_eq!(p["keys_found"], 2);
            }
        }
    }
    let sum = |k: usize| -> u64 { ended.iter().filter_map(|(_, s)| s.diff.map(|d| d[k])).sum() };
    let (added, removed, changed) = (sum(2), sum(3), sum(4));
    assert_eq!((added, removed, changed), (14, 4, 18));
    assert_eq!(
        j["totals"],
        json!({"added": added, "removed": removed, "changed": changed, "differences": added + removed + changed})
    );

    // The run before the period, and nothing of the other comparison or
    // after the period.
    assert_eq!(j["previous"]["id"], f.ids[0]);
    assert_eq!(j["previous"]["differences"], 111);
    assert_eq!(j["truncated"], false);
    let text = j.to_string();
    assert!(!text.contains(OTHER), "{text}");
    assert!(!text.contains("2026-03-10"), "{text}");

    // HTML: one self-contained file with the runs, the failure, the trend
    // chart and the checkpoint.
    let html = String::from_utf8(render(&report, Format::Html).unwrap()).unwrap();
    assert!(!html.contains("<script"));
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count(),
        "a link or resource outside the file"
    );
    assert!(html.contains(&format!("Reconciliation of {NAME}")), "{html}");
    let table = html
        .split("<section id=\"runs\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    for (id, s) in &runs {
        let row = format!(
            "<tr><td class=\"num\">{id}</td><td>{}</td>",
            s.started_at.replacen('T', " ", 1)
        );
        assert!(table.contains(&row), "run {id} missing: {table}");
    }
    assert!(table.contains(&format!("<tr><td class=\"num\">{}</td>", f.open_id)));
    assert!(table.contains("<td class=\"num\">1,000 / 1,003</td>"), "{table}");
    assert!(html.contains("right.csv:7: 3 values, expected 4"));
    assert!(html.contains(&signed_root), "no root hash");
    assert!(html.contains(&format!("Entries counted</th><td class=\"num\">{}", f.size)));
    let trend_svg = html.split("id=\"trend\"").nth(1).unwrap();
    assert!(
        trend_svg.contains("<svg") && trend_svg.contains("<polyline"),
        "no trend chart"
    );
    assert!(!html.contains(OTHER) && !html.contains("2026-03-10"));

    // XLSX: a zip; openpyxl's view in the test below.
    assert!(render(&report, Format::Xlsx).unwrap().starts_with(b"PK\x03\x04"));
}

#[test]
fn an_open_period_shows_every_run_and_an_empty_one_says_so() {
    let f = fixture();
    let j = json_of(&generate(&f.data, &request(Some(NAME), None, None)).unwrap());
    let all = specs().iter().filter(|s| s.name == NAME).count() + 1;
    assert_eq!(j["runs_total"], all as u64);
    assert_eq!(j["previous"], Value::Null);

    let report = generate(
        &f.data,
        &request(Some(NAME), Some("2030-01-01T00:00:00Z"), Some("2030-02-01T00:00:00Z")),
    )
    .unwrap();
    let j = json_of(&report);
    assert_eq!(j["empty"], true);
    assert_eq!(j["runs_total"], 0);
    assert_eq!(j["trend"], json!([]));
    assert_eq!(
        j["totals"],
        json!({"added": null, "removed": null, "changed": null, "differences": null})
    );
    let html = String::from_utf8(render(&report, Format::Html).unwrap()).unwrap();
    assert!(
        html.contains("No run of this comparison started in this period"),
        "{html}"
    );
    assert!(render(&report, Format::Xlsx).unwrap().starts_with(b"PK"));
}

#[test]
fn a_missing_or_unknown_name_is_refused_naming_it() {
    let f = fixture();
    let e = generate(&f.data, &request(None, None, None)).unwrap_err().to_string();
    assert!(
        e.starts_with("--name: a reconciliation report covers one named comparison"),
        "{e}"
    );
    let e = generate(&f.data, &request(Some("  "), None, None))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--name:"), "{e}");
    let e = generate(&f.data, &request(Some("nightly-invoice"), None, None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "--name \"nightly-invoice\": no data run of a comparison of that name (known: \"{NAME}\", \"{OTHER}\")"
        )
    );
    let mut summary = request(Some(NAME), None, None);
    summary.kind = ReportKind::Summary;
    let e = generate(&f.data, &summary).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("--name \"{NAME}\": only a reconciliation report covers a named comparison, not summary")
    );
    assert_eq!(
        "reconciliation".parse::<ReportKind>().unwrap(),
        ReportKind::Reconciliation
    );

    // Without meta.db.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    DataDir::new(&data).create_log("default", None).unwrap();
    let e = generate(&data, &request(Some(NAME), None, None))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("reconciliation needs the metadata database"), "{e}");
}

// --- the XLSX read by openpyxl --------------------------------------------

#[test]
fn the_workbook_opens_in_openpyxl_with_a_line_chart_of_the_trend() {
    let f = fixture();
    let report = generate(&f.data, &request(Some(NAME), Some(SINCE), Some(UNTIL))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reconciliation.xlsx");
    std::fs::write(&path, render(&report, Format::Xlsx).unwrap()).unwrap();
    let book = openpyxl(&path);
    let names: Vec<&str> = book["sheets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Report", "Trend", "Runs", "Failures"]);
    for s in book["sheets"].as_array().unwrap() {
        assert_eq!(s["freeze_panes"], "A2", "{}", s["name"]);
    }

    let runs = in_period(&f);
    let ended: Vec<&(i64, Spec)> = runs.iter().filter(|(_, s)| s.outcome != RunOutcome::Failure).collect();
    let trend = sheet(&book, "Trend");
    let chart = &trend["charts"][0];
    assert_eq!(chart["kind"], "LineChart");
    let series = chart["series"].as_array().unwrap();
    assert_eq!(series.len(), 4);
    let last = ended.len() + 1;
    for (i, col) in ["B", "C", "D", "E"].iter().enumerate() {
        assert_eq!(series[i]["values"], format!("Trend!${col}$2:${col}${last}"));
        assert_eq!(series[i]["categories"], format!("Trend!$A$2:$A${last}"));
    }
    let rows = trend["rows"].as_array().unwrap();
    assert_eq!(rows.len(), ended.len() + 1);
    for ((id, s), row) in ended.iter().zip(&rows[1..]) {
        assert_eq!(row[0], s.started_at.trim_end_matches('Z'));
        match &s.diff {
            Some([_, _, a, d, c, _]) => {
                assert_eq!(row[1].as_f64().unwrap() as u64, a + d + c, "run {id}");
                assert_eq!(row[2].as_f64().unwrap() as u64, *a, "run {id}");
            }
            None => {
                assert_eq!(row[1], Value::Null, "run {id}");
                assert_eq!(row[5].as_f64().unwrap(), 2.0, "run {id}");
            }
        }
        assert_eq!(row[6].as_f64().unwrap() as i64, *id);
    }
    assert_eq!(trend["formats"][1][1], "#,##0");

    let listed = sheet(&book, "Runs")["rows"].as_array().unwrap();
    assert_eq!(listed.len(), runs.len() + 2, "the runs, the open one and the header");
    let failures = sheet(&book, "Failures")["rows"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[1][3], "right.csv:7: 3 values, expected 4");

    let facts = sheet(&book, "Report")["rows"].as_array().unwrap();
    let fact = |name: &str| facts.iter().find(|r| r[0] == name).unwrap()[1].clone();
    assert_eq!(fact("comparison"), NAME);
    assert_eq!(fact("runs").as_f64().unwrap(), 6.0);
    assert_eq!(fact("differences").as_f64().unwrap(), 36.0);
    assert_eq!(fact("checkpoint.size").as_f64().unwrap() as u64, f.size);
    assert_eq!(fact("checkpoint.root_hash"), signed_root(&f.data, "default").1);
}

// --- the HTML in a real browser -----------------------------------------

#[test]
fn the_html_renders_and_prints_in_a_real_browser() {
    let f = fixture();
    let report = generate(&f.data, &request(Some(NAME), Some(SINCE), Some(UNTIL))).unwrap();
    let html = String::from_utf8(render(&report, Format::Html).unwrap()).unwrap();
    let out = screens();
    let seen = in_browser(&html, &out, "reconciliation");
    for s in ["checkpoint", "runs-overview", "trend", "runs", "run-failures", "note"] {
        assert!(
            seen["sections"].as_array().unwrap().contains(&json!(s)),
            "no section {s}: {seen}"
        );
    }
    assert_eq!(seen["svgs"], 1, "{seen}");
    assert!(std::fs::read(out.join("reconciliation.pdf"))
        .unwrap()
        .starts_with(b"%PDF-"));
    assert!(std::fs::read(out.join("reconciliation.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
}
