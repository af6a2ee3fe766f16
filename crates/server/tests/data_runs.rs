//! Data reconciliation runs over HTTP: uploads and configured sources,
//! the run's state and results, reports, scopes, and the bounds.

// The shared harness unwraps; this file's own code says why with expect.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Cursor, Write};
use std::time::Duration;

use axum::http::Method;
use calamine::Reader;
use sealtrail_meta::Scope;
use serde_json::{json, Value};
use support::{Harness, Reply};

const LEFT: &str = "id,name,amount\n1,alice,10\n2,bob,20\n3,carol,30\n4,dave,40\n";
const RIGHT: &str = "id,name,amount\n1,alice,10\n2,bob,25\n3,caroline,30\n5,erin,50\n";
const BOUNDARY: &str = "sealtrail-test-boundary";

/// A multipart body of `(part, file name, content)`; text parts have no
/// file name.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Option<(String, Vec<u8>)> {
    let mut body = Vec::new();
    for (name, file, content) in parts {
        write!(body, "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").expect("write");
        if let Some(f) = file {
            write!(body, "; filename=\"{f}\"\r\nContent-Type: application/octet-stream").expect("write");
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{BOUNDARY}--\r\n").expect("write");
    Some((format!("multipart/form-data; boundary={BOUNDARY}"), body))
}

async fn submit(h: &Harness, key: &str, body: Option<(String, Vec<u8>)>) -> Reply {
    let body = body.as_ref().map(|(t, b)| (t.as_str(), b.clone()));
    h.call(Method::POST, "/api/v1/data/runs", Some(key), body).await
}

fn diff_form(options: &Value, left: &str, right: &str) -> Option<(String, Vec<u8>)> {
    let options = options.to_string();
    form(&[
        ("kind", None, b"diff"),
        ("options", None, options.as_bytes()),
        ("left", Some("left.csv"), left.as_bytes()),
        ("right", Some("right.csv"), right.as_bytes()),
    ])
}

/// Poll run `id` until it has finished; the run.
async fn finished(h: &Harness, key: &str, id: i64) -> Value {
    for _ in 0..1500 {
        let r = h.get(&format!("/api/v1/data/runs/{id}"), Some(key)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let run = r.json();
        if run["state"] == "finished" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("data run {id} did not finish");
}

fn id_of(r: &Reply) -> i64 {
    assert_eq!(r.status, 202, "{}", r.text());
    let run = r.json();
    let id = run["id"].as_i64().expect("an id");
    assert_eq!(
        r.headers.get("location").expect("Location").to_str().expect("text"),
        format!("/api/v1/data/runs/{id}")
    );
    assert!(run["state"] == "queued" || run["state"] == "running", "{run}");
    id
}

/// Every page of `uri` (which has its query string), `limit` at a time.
async fn all_pages(h: &Harness, key: &str, uri: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let cursor = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
        let r = h.get(&format!("{uri}&limit={limit}{cursor}"), Some(key)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        let got = page["items"].as_array().expect("items").clone();
        assert!(got.len() <= limit);
        items.extend(got);
        pages += 1;
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return (items, pages),
        }
    }
}

fn keys_of(items: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = items
        .iter()
        .map(|c| c["key"][0].as_str().expect("key").to_string())
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn a_diff_of_two_uploads_is_summed_paged_filtered_reported_and_recorded() {
    let h = Harness::new(|_| {});
    let analyst = h.key(Scope::Analyst, None);
    let read = h.key(Scope::Read, None);
    let admin = h.key(Scope::Admin, None);

    let id = id_of(&submit(&h, &analyst, diff_form(&json!({"key": ["id"]}), LEFT, RIGHT)).await);
    let run = finished(&h, &read, id).await;
    assert_eq!(run["kind"], "diff");
    assert_eq!(run["outcome"], "differences", "{run}");
    let s = &run["summary"];
    // By hand: 5 only on the right, 4 only on the left, 2 and 3 changed, 1 equal.
    for (field, n) in [
        ("left_rows", 4),
        ("right_rows", 4),
        ("added", 1),
        ("removed", 1),
        ("changed", 2),
        ("unchanged", 1),
    ] {
        assert_eq!(s[field], n, "{field}: {s}");
    }
    assert_eq!(s["changed_fields"], json!({"amount": 1, "name": 1}));
    assert_eq!(s["left"], "left.csv", "uploads are named as uploaded");
    // The inputs' fingerprints are those of the bytes sent.
    use sha2::Digest;
    let sha = |t: &str| sealtrail_meta::hex(&sha2::Sha256::digest(t.as_bytes()));
    assert_eq!(
        run["inputs"][0],
        json!({"address": "left.csv", "sha256": sha(LEFT), "bytes": LEFT.len()})
    );
    assert_eq!(run["inputs"][1]["sha256"], sha(RIGHT));
    assert_eq!(
        run["actor"]["id"],
        format!("key:{}", sealtrail_meta::key_id(&analyst).expect("id"))
    );

    // Every change, one a page, then filtered.
    let base = format!("/api/v1/data/runs/{id}/changes?");
    let (all, pages) = all_pages(&h, &read, &base, 1).await;
    assert_eq!((all.len(), pages), (4, 5), "{all:?}");
    assert_eq!(keys_of(&all), ["2", "3", "4", "5"]);
    let (changed, _) = all_pages(&h, &read, &format!("{base}kind=changed"), 10).await;
    assert_eq!(keys_of(&changed), ["2", "3"]);
    let (added, _) = all_pages(&h, &read, &format!("{base}kind=added"), 10).await;
    assert_eq!(keys_of(&added), ["5"]);
    assert_eq!(added[0]["row"], json!(["5", "erin", "50"]));
    let (amount, _) = all_pages(&h, &read, &format!("{base}column=amount"), 10).await;
    assert_eq!(keys_of(&amount), ["2"]);
    assert_eq!(
        amount[0]["fields"],
        json!([{"column": "amount", "old": "20", "new": "25"}])
    );
    let (none, _) = all_pages(&h, &read, &format!("{base}kind=duplicate"), 10).await;
    assert!(none.is_empty());
    let bad = h.get(&format!("{base}kind=moved"), Some(&read)).await;
    bad.problem_doc(
        400,
        "invalid-query",
        support::ProblemChecks {
            status_field: true,
            detail: true,
        },
    );

    // The workbook: a summary and the changes by kind.
    let r = h
        .get(&format!("/api/v1/data/runs/{id}/report?format=xlsx"), Some(&read))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut book = calamine::Xlsx::new(Cursor::new(r.bytes.clone())).expect("a workbook");
    let names = book.sheet_names();
    for sheet in ["summary", "added", "removed", "changed"] {
        assert!(names.iter().any(|n| n == sheet), "{names:?}");
    }
    let added_sheet = book.worksheet_range("added").expect("added sheet");
    let cells: Vec<String> = added_sheet.rows().flatten().map(|c| c.to_string()).collect();
    assert!(cells.contains(&"erin".to_string()), "{cells:?}");
    assert_eq!(added_sheet.rows().count(), 2, "a header and one row");
    let changed_sheet = book.worksheet_range("changed").expect("changed sheet");
    let cells: Vec<String> = changed_sheet.rows().flatten().map(|c| c.to_string()).collect();
    assert!(
        cells.contains(&"caroline".to_string()) && cells.contains(&"25".to_string()),
        "{cells:?}"
    );
    // CSV and JSON of the same changes.
    let r = h
        .get(&format!("/api/v1/data/runs/{id}/report?format=csv"), Some(&read))
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("erin") && r.text().contains("caroline"),
        "{}",
        r.text()
    );
    let r = h
        .get(&format!("/api/v1/data/runs/{id}/report?format=json"), Some(&read))
        .await;
    let doc = r.json();
    assert_eq!(doc["summary"]["added"], 1);
    assert_eq!(doc["changes"].as_array().map(Vec::len), Some(4));

    // Listed, and recorded in the system log under the analyst's key.
    let list = h.get("/api/v1/data/runs?kind=diff", Some(&read)).await.json();
    assert_eq!(list["runs"][0]["id"], id);
    h.settle("system");
    let events = h
        .get(
            &format!("/api/v1/logs/system/events?action=data.run.completed&target=data_run:{id}"),
            Some(&admin),
        )
        .await;
    assert_eq!(events.status, 200, "{}", events.text());
    let text = events.text();
    assert!(
        text.contains(&format!("key:{}", sealtrail_meta::key_id(&analyst).expect("id"))),
        "{text}"
    );

    // The metrics count it.
    let m = h.get("/metrics", None).await.text();
    assert!(
        m.contains("sealtrail_data_runs_total{kind=\"diff\",outcome=\"differences\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn validate_and_keys_runs() {
    let h = Harness::new(|_| {});
    let analyst = h.key(Scope::Analyst, None);
    let rules = "[columns.amount]\ntype = \"integer\"\nrange = { min = 0, max = 100 }\n";
    let input = "id,name,amount\n1,alice,10\n2,bob,20\n3,carol,x\n4,dave,500\n";
    let r = submit(
        &h,
        &analyst,
        form(&[
            ("kind", None, b"validate"),
            ("input", Some("invoices.csv"), input.as_bytes()),
            ("rules", Some("rules.toml"), rules.as_bytes()),
        ]),
    )
    .await;
    let id = id_of(&r);
    let run = finished(&h, &analyst, id).await;
    assert_eq!(run["outcome"], "differences", "{run}");
    assert_eq!(run["summary"]["violations"], 2, "{run}");
    assert_eq!(run["summary"]["rows"], 4);
    let base = format!("/api/v1/data/runs/{id}/changes?");
    let (items, pages) = all_pages(&h, &analyst, &base, 1).await;
    let got: Vec<(u64, String)> = items
        .iter()
        .map(|v| {
            (
                v["line"].as_u64().expect("line"),
                v["rule"].as_str().expect("rule").to_string(),
            )
        })
        .collect();
    assert_eq!(got, [(4, "type".to_string()), (5, "range".to_string())]);
    assert!(pages >= 2);
    let (range, _) = all_pages(&h, &analyst, &format!("{base}rule=range"), 10).await;
    assert_eq!(range.len(), 1);
    assert_eq!(range[0]["value"], "500");
    let report = h
        .get(&format!("/api/v1/data/runs/{id}/report"), Some(&analyst))
        .await
        .json();
    assert_eq!(report["violations"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["summary"]["violations"], 2);

    // Keys: neither a nor b nor c alone; {a, b} and {b, c}, not {a, c}.
    let table = "a,b,c\n1,x,p\n1,y,p\n2,x,q\n2,y,q\n";
    let r = submit(
        &h,
        &analyst,
        form(&[
            ("kind", None, b"keys"),
            ("options", None, br#"{"max_columns": 2}"#),
            ("input", Some("t.csv"), table.as_bytes()),
        ]),
    )
    .await;
    let id = id_of(&r);
    let run = finished(&h, &analyst, id).await;
    assert_eq!(run["outcome"], "success", "{run}");
    let mut keys: Vec<Vec<String>> = run["summary"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            let cols = if k.is_object() { &k["columns"] } else { k };
            cols.as_array()
                .expect("columns")
                .iter()
                .map(|c| c.as_str().expect("name").to_string())
                .collect()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, [["a", "b"], ["b", "c"]]);
    let r = h.get(&format!("/api/v1/data/runs/{id}/changes"), Some(&analyst)).await;
    r.problem_doc(
        409,
        "no-changes",
        support::ProblemChecks {
            status_field: true,
            detail: true,
        },
    );
    let r = h
        .get(&format!("/api/v1/data/runs/{id}/report?format=xlsx"), Some(&analyst))
        .await;
    r.problem_doc(
        400,
        "invalid-query",
        support::ProblemChecks {
            status_field: true,
            detail: true,
        },
    );
}

#[tokio::test]
async fn bad_requests_are_refused_and_bad_data_fails_the_run_where_it_is() {
    let h = Harness::new(|_| {});
    let analyst = h.key(Scope::Analyst, None);
    let checks = support::ProblemChecks {
        status_field: true,
        detail: true,
    };
    // A missing part, a missing key option, unknown options: 422 naming them.
    let r = submit(
        &h,
        &analyst,
        form(&[
            ("kind", None, b"diff"),
            ("options", None, br#"{"key": ["id"]}"#),
            ("left", Some("left.csv"), LEFT.as_bytes()),
        ]),
    )
    .await;
    let p = r.problem_doc(422, "invalid-run", checks);
    assert!(p["detail"].as_str().expect("detail").starts_with("part right:"), "{p}");
    let p = submit(&h, &analyst, diff_form(&json!({}), LEFT, RIGHT))
        .await
        .problem_doc(422, "invalid-run", checks);
    assert!(p["detail"].as_str().expect("detail").starts_with("options.key:"), "{p}");
    let p = submit(
        &h,
        &analyst,
        diff_form(&json!({"key": ["id"], "colour": 1}), LEFT, RIGHT),
    )
    .await
    .problem_doc(422, "invalid-run", checks);
    assert!(p["detail"].as_str().expect("detail").contains("colour"), "{p}");
    let p = submit(
        &h,
        &analyst,
        form(&[("kind", None, b"keys"), ("input", Some("t.exe"), b"a\n1\n")]),
    )
    .await
    .problem_doc(422, "invalid-run", checks);
    assert!(p["detail"].as_str().expect("detail").starts_with("part input:"), "{p}");
    // A source that is not configured.
    let p = h
        .post(
            "/api/v1/data/runs",
            Some(&analyst),
            json!({"kind": "keys", "inputs": ["/etc/passwd"]}),
        )
        .await
        .problem_doc(422, "invalid-run", checks);
    assert!(p["detail"].as_str().expect("detail").starts_with("inputs[0]:"), "{p}");
    // None of these became a run.
    let list = h.get("/api/v1/data/runs", Some(&analyst)).await.json();
    assert_eq!(list["runs"], json!([]));

    // A key column the files lack: the run fails, naming the file and column.
    let id = id_of(&submit(&h, &analyst, diff_form(&json!({"key": ["invoice"]}), LEFT, RIGHT)).await);
    let run = finished(&h, &analyst, id).await;
    assert_eq!(run["outcome"], "failure");
    let error = run["error"].as_str().expect("error");
    assert!(error.contains("left.csv") && error.contains("invoice"), "{error}");
    assert!(!error.contains("data-runs"), "no server path: {error}");
    // A row with too few values: the file and line.
    let broken = "id,name,amount\n1,alice,10\n2,bob\n";
    let id = id_of(&submit(&h, &analyst, diff_form(&json!({"key": ["id"]}), LEFT, broken)).await);
    let run = finished(&h, &analyst, id).await;
    assert_eq!(run["outcome"], "failure");
    let error = run["error"].as_str().expect("error");
    assert!(error.starts_with("right.csv:3"), "{error}");
    let r = h.get(&format!("/api/v1/data/runs/{id}/changes"), Some(&analyst)).await;
    r.problem_doc(409, "run-failed", checks);
    h.settle("system");
    let failed = h
        .get(
            &format!("/api/v1/logs/system/events?action=data.run.failed&target=data_run:{id}"),
            Some(&h.key(Scope::Admin, None)),
        )
        .await;
    assert!(failed.text().contains("right.csv:3"), "{}", failed.text());
}

#[tokio::test]
async fn scopes_and_tenants() {
    let h = Harness::new(|_| {});
    let read = h.key(Scope::Read, None);
    let ingest = h.key(Scope::Ingest, None);
    let tenant = h.key(Scope::Analyst, Some("acme"));
    let checks = support::ProblemChecks {
        status_field: true,
        detail: true,
    };
    for key in [&read, &ingest, &tenant] {
        submit(&h, key, diff_form(&json!({"key": ["id"]}), LEFT, RIGHT))
            .await
            .problem_doc(403, "forbidden", checks);
    }
    h.get("/api/v1/data/runs", Some(&ingest))
        .await
        .problem_doc(403, "forbidden", checks);
    h.get("/api/v1/data/runs", Some(&tenant))
        .await
        .problem_doc(403, "forbidden", checks);
    h.get("/api/v1/data/runs", None)
        .await
        .problem_doc(401, "unauthorized", checks);
    assert_eq!(h.get("/api/v1/data/runs", Some(&read)).await.status, 200);
    h.get("/api/v1/data/runs/99", Some(&read))
        .await
        .problem_doc(404, "not-found", checks);
}

#[tokio::test]
async fn an_upload_over_the_bound_is_refused_naming_its_part() {
    let h = Harness::new(|c| c.data.max_upload_bytes = 1024);
    let analyst = h.key(Scope::Analyst, None);
    let big = format!("id,v\n{}", (0..200).map(|i| format!("{i},value\n")).collect::<String>());
    assert!(big.len() > 1024);
    let p = submit(&h, &analyst, diff_form(&json!({"key": ["id"]}), LEFT, &big))
        .await
        .problem_doc(
            413,
            "upload-too-large",
            support::ProblemChecks {
                status_field: true,
                detail: true,
            },
        );
    assert!(p["detail"].as_str().expect("detail").starts_with("part right:"), "{p}");
    // Nothing kept of it.
    let dir = h.app.config.data_dir.join("data-runs");
    assert_eq!(std::fs::read_dir(&dir).expect("runs dir").count(), 0);

    // Within the bound, an upload larger than what bodies read into memory
    // may be (2 MiB by default in axum) is taken.
    let h = Harness::new(|c| c.data.max_upload_bytes = 8 << 20);
    let analyst = h.key(Scope::Analyst, None);
    let rows = 300_000;
    let big = format!(
        "id,v\n{}",
        (0..rows).map(|i| format!("{i},value\n")).collect::<String>()
    );
    assert!(big.len() > 3 << 20);
    let id = id_of(
        &submit(
            &h,
            &analyst,
            form(&[("kind", None, b"keys"), ("input", Some("big.csv"), big.as_bytes())]),
        )
        .await,
    );
    let run = finished(&h, &analyst, id).await;
    assert_eq!(run["outcome"], "success", "{run}");
    assert_eq!(run["inputs"][0]["bytes"], big.len());
    assert_eq!(run["summary"]["rows"], rows);
}

#[tokio::test]
async fn a_full_queue_is_refused_with_retry_after() {
    // The first run reads a FIFO, which holds it until this test writes.
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("slow.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let right = dir.path().join("right.csv");
    std::fs::write(&right, RIGHT).expect("write");
    let (f, r) = (fifo.clone(), right.clone());
    let h = Harness::new(move |c| {
        c.data.max_running = 1;
        c.data.max_queued = 0;
        c.data.sources.insert("slow".into(), f.to_string_lossy().into_owned());
        c.data.sources.insert("right".into(), r.to_string_lossy().into_owned());
    });
    // However this test ends, the run is let go (else the runtime would
    // wait for its thread forever): each time it opens the FIFO, an empty
    // input.
    struct Release(std::path::PathBuf);
    impl Drop for Release {
        fn drop(&mut self) {
            let fifo = self.0.clone();
            std::thread::spawn(move || loop {
                if std::fs::OpenOptions::new().write(true).open(&fifo).is_err() {
                    return;
                }
            });
        }
    }
    let release = Release(fifo);
    let analyst = h.key(Scope::Analyst, None);
    let request = json!({"kind": "diff", "left": "slow", "right": "right", "options": {"key": ["id"]}});
    let first = id_of(&h.post("/api/v1/data/runs", Some(&analyst), request.clone()).await);
    let r = h.post("/api/v1/data/runs", Some(&analyst), request.clone()).await;
    let checks = support::ProblemChecks {
        status_field: true,
        detail: true,
    };
    let p = r.problem_doc(503, "overloaded", checks);
    assert_eq!(r.headers.get("retry-after").expect("Retry-After"), "5");
    assert!(p["detail"].as_str().expect("detail").contains("data.max_queued"), "{p}");
    // Only this test is refused, in this process.
    let m = h.get("/metrics", None).await.text();
    assert_eq!(support::metric(&m, "sealtrail_data_runs_refused_total"), 1.0);
    // It takes its place to run at once, and stays there, held by the FIFO.
    let mut shown = Value::Null;
    for _ in 0..500 {
        shown = h
            .get(&format!("/api/v1/data/runs/{first}"), Some(&analyst))
            .await
            .json();
        if shown["state"] != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shown["state"], "running", "{shown}");
    assert_eq!(shown["progress"][0]["rows"], 0, "{shown}");
    assert_eq!(shown["outcome"], Value::Null);

    drop(release);
    let run = finished(&h, &analyst, first).await;
    assert_eq!(run["parameters"]["sources"], json!(["slow", "right"]));
    // Its place is free again.
    for _ in 0..500 {
        if h.app.data_runs.admitted() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = h
        .post(
            "/api/v1/data/runs",
            Some(&analyst),
            json!({"kind": "keys", "inputs": ["right"]}),
        )
        .await;
    let id = id_of(&r);
    assert_eq!(finished(&h, &analyst, id).await["outcome"], "success");
}

#[test]
fn a_run_left_running_by_a_stopped_server_is_failed_at_the_next_start() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = support::config(&dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().expect("address");
    let server = rt
        .block_on(sealtrail_server::Server::start(config.clone()))
        .expect("start");
    // A run begun and never finished, as a server stopping mid-run leaves it.
    let begun = sealtrail_meta::DataRun {
        kind: sealtrail_meta::RunKind::Diff,
        name: Some("nightly".into()),
        inputs: vec![],
        parameters: json!({}),
        summary: json!({}),
        started_at: sealtrail_meta::now_text(),
        finished_at: String::new(),
        duration_ms: 0,
        outcome: sealtrail_meta::RunOutcome::Failure,
        error: None,
        quality_score: None,
        actor: json!({"id": "test", "type": "user"}),
    };
    let id = server.app.meta.begin_data_run(&begun).expect("begin");
    let secret = support::create_key(&server.app, Scope::Read, None, "reader");
    let shown = rt.block_on(support::send(
        &sealtrail_server::router(server.app.clone()),
        Method::GET,
        &format!("/api/v1/data/runs/{id}"),
        Some(&format!("Bearer {secret}")),
        None,
    ));
    assert_eq!(shown.json()["state"], "running");
    server.shutdown();
    rt.block_on(server.wait()).expect("stopped");

    let server = rt.block_on(sealtrail_server::Server::start(config)).expect("restart");
    let shown = rt.block_on(support::send(
        &sealtrail_server::router(server.app.clone()),
        Method::GET,
        &format!("/api/v1/data/runs/{id}"),
        Some(&format!("Bearer {secret}")),
        None,
    ));
    let run = shown.json();
    assert_eq!(run["state"], "finished", "{run}");
    assert_eq!(run["outcome"], "failure");
    assert_eq!(run["error"], "the server stopped during the run");
    server.shutdown();
    rt.block_on(server.wait()).expect("stopped");
}

#[tokio::test]
async fn only_the_newest_runs_keep_their_files() {
    let h = Harness::new(|c| c.data.keep_runs = 2);
    let analyst = h.key(Scope::Analyst, None);
    let rules = "[columns.amount]\ntype = \"integer\"\n";
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = submit(
            &h,
            &analyst,
            form(&[
                ("kind", None, b"validate"),
                ("input", Some("in.csv"), b"id,amount\n1,x\n"),
                ("rules", None, rules.as_bytes()),
            ]),
        )
        .await;
        let id = id_of(&r);
        assert_eq!(finished(&h, &analyst, id).await["summary"]["violations"], 1);
        ids.push(id);
    }
    let dir = h.app.config.data_dir.join("data-runs");
    let mut kept: Vec<String> = std::fs::read_dir(&dir)
        .expect("runs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, [ids[1].to_string(), ids[2].to_string()]);
    let r = h
        .get(&format!("/api/v1/data/runs/{}/changes", ids[0]), Some(&analyst))
        .await;
    r.problem_doc(
        410,
        "run-files-deleted",
        support::ProblemChecks {
            status_field: true,
            detail: true,
        },
    );
    let r = h
        .get(&format!("/api/v1/data/runs/{}/changes", ids[2]), Some(&analyst))
        .await;
    assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(1));
    // The history of all three stays, newest first, in pages.
    let page = h.get("/api/v1/data/runs?limit=2", Some(&analyst)).await.json();
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["runs"][0]["id"], ids[2]);
    let before = page["next_before"].as_i64().expect("next_before");
    let rest = h
        .get(&format!("/api/v1/data/runs?limit=2&before={before}"), Some(&analyst))
        .await
        .json();
    assert_eq!(rest["runs"][0]["id"], ids[0]);
    assert_eq!(rest["next_before"], Value::Null);
}
