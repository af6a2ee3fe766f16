//! `GET /api/v1/logs/{log}/reports/{type}` and the `/reports` page
//! through the router: the three formats with their media types and file
//! names, who may have which report, refusals naming the parameter, the
//! bound on reports at once (503 with `Retry-After`), and the system-log
//! record of each report.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Cursor;

use axum::http::{header, Method};
use calamine::Reader;
use sealtrail_meta::{Role, Scope};
use serde_json::json;
use support::{browser, sign_in, Harness, ProblemChecks, Reply};

const URL: &str = "/api/v1/logs/default/reports";

fn problem(r: &Reply, status: u16, kind: &str) -> String {
    let p = r.problem_doc(
        status,
        kind,
        ProblemChecks {
            status_field: true,
            detail: true,
        },
    );
    p["detail"].as_str().unwrap().to_string()
}

fn header(r: &Reply, name: header::HeaderName) -> &str {
    r.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// Five events: three logins by two actors, one failed payment, one
/// event outside the period asked for.
async fn seed(h: &Harness, key: &str) {
    for (action, actor, outcome, at) in [
        ("user.login", "alice", "success", "2026-03-01T10:00:00Z"),
        ("user.login", "bob", "success", "2026-03-01T11:00:00Z"),
        ("user.login", "alice", "success", "2026-03-02T09:00:00Z"),
        ("invoice.paid", "bob", "failure", "2026-03-02T10:00:00Z"),
        ("user.login", "carol", "success", "2026-02-20T10:00:00Z"),
    ] {
        h.store(
            "default",
            key,
            json!({"action": action, "actor": {"id": actor}, "outcome": outcome, "occurred_at": at}),
        )
        .await;
    }
    h.settle("default");
}

const PERIOD: &str = "since=2026-03-01&until=2026-03-03";

#[tokio::test]
async fn reports_come_in_three_formats_to_those_who_may_read_them() {
    let h = Harness::new(|_| {});
    let (admin, read) = (h.key(Scope::Admin, None), h.key(Scope::Read, None));
    let tenant = h.key(Scope::Read, Some("acme"));
    seed(&h, &admin).await;

    // JSON (the default): the figures of the period, and nothing outside it.
    let r = h.get(&format!("{URL}/summary?{PERIOD}"), Some(&read)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "application/json");
    let report = r.json();
    assert_eq!(report["report"], "summary");
    assert_eq!(report["total"], 4, "{report}");
    assert_eq!(report["by_action"], json!({"user.login": 3, "invoice.paid": 1}));
    assert_eq!(report["by_outcome"]["failure"], 1);
    assert_eq!(report["distinct_actors"], 2);
    let date = &report["generated_at"].as_str().unwrap()[..10];
    assert_eq!(
        header(&r, header::CONTENT_DISPOSITION),
        format!("attachment; filename=\"sealtrail-summary-default-{date}.json\"")
    );
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");

    // HTML: self-contained, with its inline styles allowed and nothing else.
    let r = h
        .get(&format!("{URL}/compliance?{PERIOD}&format=html"), Some(&read))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "text/html; charset=utf-8");
    assert!(r.text().starts_with("<!DOCTYPE html>"), "{}", &r.text()[..100]);
    assert!(!r.text().contains("<script"));
    assert_eq!(
        header(&r, header::CONTENT_SECURITY_POLICY),
        sealtrail_server::api::reports::REPORT_CSP
    );
    assert!(header(&r, header::CONTENT_DISPOSITION).ends_with(".html\""));

    // XLSX: a workbook whose first sheet is the report's key figures.
    let r = h.get(&format!("{URL}/summary?{PERIOD}&format=xlsx"), Some(&read)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.content_type(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(header(&r, header::CONTENT_DISPOSITION).ends_with(".xlsx\""));
    let book = calamine::Xlsx::new(Cursor::new(r.bytes.clone())).unwrap();
    assert_eq!(book.sheet_names().first().map(String::as_str), Some("Report"));

    // The access review lists users and keys: admins and auditors only.
    let p = problem(
        &h.get(&format!("{URL}/access-review"), Some(&read)).await,
        403,
        "forbidden",
    );
    assert!(p.contains("admin or auditor"), "{p}");
    let r = h.get(&format!("{URL}/access-review"), Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["report"], "access-review");

    // Reports count every tenant: tenant-restricted callers are refused.
    let p = problem(&h.get(&format!("{URL}/summary"), Some(&tenant)).await, 403, "forbidden");
    assert!(p.contains("tenant"), "{p}");
    // The system log only for admins and auditors, as every read.
    problem(
        &h.get("/api/v1/logs/system/reports/summary", Some(&read)).await,
        403,
        "forbidden",
    );
    assert_eq!(
        h.get("/api/v1/logs/system/reports/summary", Some(&admin)).await.status,
        200
    );
    problem(&h.get(&format!("{URL}/summary"), None).await, 401, "unauthorized");

    // Refusals name the parameter.
    for (query, kind, status, names) in [
        ("/weekly", "not-found", 404, "type: \"weekly\""),
        ("/summary?format=pdf", "invalid-query", 400, "format: \"pdf\""),
        ("/summary?since=yesterday", "invalid-query", 400, "since:"),
        ("/summary?until=never", "invalid-query", 400, "until:"),
        (
            "/summary?since=2026-03-03&until=2026-03-01",
            "invalid-query",
            400,
            "since:",
        ),
        (
            "/summary?since=2026-03-01&until=2026-03-01",
            "invalid-query",
            400,
            "since:",
        ),
        ("/summary?colour=red", "invalid-query", 400, "colour"),
    ] {
        let r = h.get(&format!("{URL}{query}"), Some(&read)).await;
        let detail = problem(&r, status, kind);
        assert!(detail.contains(names), "{query}: {detail}");
    }
    problem(
        &h.get("/api/v1/logs/nope/reports/summary", Some(&read)).await,
        404,
        "not-found",
    );

    // Each report is recorded in the system log before it leaves.
    h.settle("system");
    let events = h
        .get(
            "/api/v1/logs/system/events?action=trail.reported&order=oldest",
            Some(&admin),
        )
        .await
        .json();
    let seen: Vec<(String, String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let d = &e["event"]["details"];
            let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
            (
                s("report"),
                s("format"),
                e["event"]["targets"][0]["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("summary", "json", "default"),
        ("compliance", "html", "default"),
        ("summary", "xlsx", "default"),
        ("access-review", "json", "default"),
        ("summary", "json", "system"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, want, "{events}");
}

#[tokio::test]
async fn reports_beyond_the_bound_are_refused_with_retry_after() {
    let h = Harness::new(|c| c.limits.max_reports = 2);
    let read = h.key(Scope::Read, None);
    let held = [h.app.reports.admit().unwrap(), h.app.reports.admit().unwrap()];
    let r = h.get(&format!("{URL}/summary"), Some(&read)).await;
    let detail = problem(&r, 503, "busy");
    assert!(detail.contains("limits.max_reports"), "{detail}");
    assert_eq!(header(&r, header::RETRY_AFTER), "5");
    // Refusals of the caller come first: no slot is needed to say 403.
    let tenant = h.key(Scope::Read, Some("acme"));
    problem(&h.get(&format!("{URL}/summary"), Some(&tenant)).await, 403, "forbidden");

    // The page says the same on the form.
    let r = h
        .get("/reports/download?log=default&type=summary&format=json", Some(&read))
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(header(&r, header::RETRY_AFTER), "5");
    assert!(r.text().contains("limits.max_reports"), "{}", r.text());

    // One slot free: served, and the slot is given back after.
    drop(held);
    let _one = h.app.reports.admit().unwrap();
    for _ in 0..3 {
        let r = h.get(&format!("{URL}/summary"), Some(&read)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[tokio::test]
async fn the_reports_page_offers_what_the_caller_may_have() {
    let h = Harness::new(|_| {});
    let admin_key = h.key(Scope::Admin, None);
    seed(&h, &admin_key).await;
    let auditor = sign_in(&h, "otto", Role::Auditor).await;
    let viewer = sign_in(&h, "vic", Role::Viewer).await;

    let page = browser(&h, Method::GET, "/reports", Some(&viewer), None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("<a href=\"/reports\" aria-current=\"page\""), "{html}");
    assert!(html.contains("action=\"/reports/download\""), "{html}");
    for field in ["log", "type", "since", "until", "name", "format"] {
        assert!(html.contains(&format!("<label for=\"r-{field}\"")), "{field}: {html}");
        assert!(
            html.contains(&format!("id=\"r-{field}\" name=\"{field}\"")),
            "{field}: {html}"
        );
    }
    assert!(
        !html.contains("value=\"access-review\""),
        "viewers get no access review: {html}"
    );
    assert!(!html.contains("style=") && !html.contains("<style"), "{html}");
    assert_eq!(html.matches("<script").count(), 2, "only the vendored scripts: {html}");
    assert!(
        !html.contains("value=\"system\""),
        "viewers do not read the system log: {html}"
    );

    let html = browser(&h, Method::GET, "/reports", Some(&auditor), None).await.text();
    assert!(html.contains("value=\"access-review\""), "{html}");
    assert!(html.contains("value=\"system\""), "{html}");

    // The download is the endpoint's report.
    let r = browser(
        &h,
        Method::GET,
        &format!("/reports/download?log=default&type=summary&{PERIOD}&format=json"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["total"], 4);
    assert!(header(&r, header::CONTENT_DISPOSITION).starts_with("attachment; filename=\"sealtrail-summary-default-"));
    let r = browser(
        &h,
        Method::GET,
        "/reports/download?log=default&type=access-review&since=&until=&format=html",
        Some(&auditor),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "text/html; charset=utf-8");

    // Refusals come back on the form, naming the field, with what was asked.
    let r = browser(
        &h,
        Method::GET,
        "/reports/download?log=default&type=summary&since=soon&until=&format=xlsx",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let html = r.text();
    assert!(html.contains("role=\"alert\"") && html.contains("since:"), "{html}");
    assert!(html.contains("value=\"soon\""), "{html}");
    assert!(html.contains("<option value=\"xlsx\" selected>"), "{html}");
    let r = browser(
        &h,
        Method::GET,
        "/reports/download?log=default&type=access-review&format=json",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("admin or auditor"), "{}", r.text());

    // Tenant-restricted callers are neither offered nor given reports.
    let tenant = h.key(Scope::Read, Some("acme"));
    let jobs = h.get("/search", Some(&tenant)).await;
    assert!(!jobs.text().contains("href=\"/reports\""), "{}", jobs.text());
    assert_eq!(h.get("/reports", Some(&tenant)).await.status, 403);
    assert_eq!(
        h.get("/reports/download?log=default&type=summary", Some(&tenant))
            .await
            .status,
        403
    );
}

#[test]
fn the_openapi_document_describes_the_report_route() {
    let doc = serde_json::to_value(sealtrail_server::openapi()).unwrap();
    let op = &doc["paths"]["/api/v1/logs/{log}/reports/{type}"]["get"];
    assert!(op.is_object(), "{}", doc["paths"]);
    let params: Vec<(&str, &str)> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    assert_eq!(
        params,
        [
            ("log", "path"),
            ("type", "path"),
            ("since", "query"),
            ("until", "query"),
            ("format", "query"),
            ("name", "query")
        ]
    );
    let param = |name: &str| {
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        param("type")["schema"]["pattern"],
        "^(summary|compliance|access-review|reconciliation)$"
    );
    assert!(
        param("name")["description"]
            .as_str()
            .unwrap()
            .contains("reconciliation"),
        "{}",
        param("name")
    );
    let ok = &op["responses"]["200"];
    let types: Vec<&str> = ok["content"].as_object().unwrap().keys().map(String::as_str).collect();
    for t in [
        "application/json",
        "text/html",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ] {
        assert!(types.contains(&t), "{t}: {ok}");
    }
    assert!(ok["headers"]["Content-Disposition"].is_object(), "{ok}");
    assert!(op["responses"]["503"]["headers"]["Retry-After"].is_object(), "{op}");
}

#[tokio::test]
async fn a_reconciliation_report_covers_the_comparison_name_names() {
    let h = Harness::new(|_| {});
    let (admin, read) = (h.key(Scope::Admin, None), h.key(Scope::Read, None));
    seed(&h, &admin).await;
    // Runs of "nightly" in the period (one failed), one before it, and
    // one of another comparison.
    for (name, at, added, error) in [
        ("nightly", "2026-03-01T02:00:00Z", 3, None),
        ("nightly", "2026-03-02T02:00:00Z", 0, Some("right.csv: no such file")),
        ("nightly", "2026-02-01T02:00:00Z", 9, None),
        ("weekly", "2026-03-01T03:00:00Z", 5, None),
    ] {
        let run = sealtrail_meta::DataRun {
            kind: sealtrail_meta::RunKind::Diff,
            name: Some(name.to_string()),
            inputs: Vec::new(),
            parameters: json!({}),
            summary: if error.is_some() {
                json!({})
            } else {
                json!({"left_rows": 10, "right_rows": 10 + added, "added": added, "removed": 0, "changed": 0})
            },
            started_at: at.to_string(),
            finished_at: at.to_string(),
            duration_ms: 0,
            outcome: match error {
                Some(_) => sealtrail_meta::RunOutcome::Failure,
                None => sealtrail_meta::RunOutcome::Differences,
            },
            error: error.map(str::to_string),
            quality_score: None,
            actor: json!({"id": "test", "type": "user"}),
        };
        h.app.meta.record_data_run(&run).unwrap();
    }

    let r = h
        .get(&format!("{URL}/reconciliation?{PERIOD}&name=nightly"), Some(&read))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["report"], "reconciliation");
    assert_eq!(report["name"], "nightly");
    assert_eq!(report["runs_total"], 2, "{report}");
    assert_eq!(report["totals"]["added"], 3);
    assert_eq!(report["failures"][0]["error"], "right.csv: no such file");
    assert_eq!(report["previous"]["added"], 9);
    let date = &report["generated_at"].as_str().unwrap()[..10];
    assert_eq!(
        header(&r, header::CONTENT_DISPOSITION),
        format!("attachment; filename=\"sealtrail-reconciliation-default-{date}.json\"")
    );
    let r = h
        .get(
            &format!("{URL}/reconciliation?{PERIOD}&name=nightly&format=html"),
            Some(&read),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("right.csv: no such file") && !r.text().contains("<script"));

    // A missing or unknown name, or a name for another type: 400 naming `name`.
    for (path, detail) in [
        (
            format!("{URL}/reconciliation?{PERIOD}"),
            "name: a reconciliation report covers one named comparison: give its name".to_string(),
        ),
        (
            format!("{URL}/reconciliation?{PERIOD}&name=nightly-old"),
            "name: \"nightly-old\": no data run of a comparison of that name (known: \"nightly\", \"weekly\")"
                .to_string(),
        ),
        (
            format!("{URL}/summary?{PERIOD}&name=nightly"),
            "name: \"nightly\": only a reconciliation report covers a named comparison, not summary".to_string(),
        ),
    ] {
        let p = problem(&h.get(&path, Some(&read)).await, 400, "invalid-query");
        assert_eq!(p, detail, "{path}");
    }

    // The dashboard's form asks for the comparison and downloads the same
    // report; a blank name comes back on the form, naming the field.
    let viewer = sign_in(&h, "vic", Role::Viewer).await;
    let html = browser(&h, Method::GET, "/reports", Some(&viewer), None).await.text();
    assert!(html.contains("value=\"reconciliation\""), "{html}");
    let r = browser(
        &h,
        Method::GET,
        &format!("/reports/download?log=default&type=reconciliation&{PERIOD}&format=json&name=nightly"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["runs_total"], 2);
    let r = browser(
        &h,
        Method::GET,
        &format!("/reports/download?log=default&type=reconciliation&{PERIOD}&format=json&name="),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let html = r.text();
    assert!(
        html.contains("role=\"alert\"") && html.contains("name: a reconciliation report"),
        "{html}"
    );
    assert!(html.contains("<option value=\"reconciliation\" selected>"), "{html}");
}
