//! `/api/v1/jobs` and the `/jobs` pages through the router, with the
//! server's real scheduler thread running the jobs: scopes, refusals that
//! name the field, run now, the history and its system-log records.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use sealtrail_meta::Scope;
use serde_json::{json, Value};
use support::{json_body, Harness, ProblemChecks, Reply};

impl Reply {
    fn problem(&self, status: u16, kind: &str) -> Value {
        let checks = ProblemChecks {
            status_field: true,
            detail: true,
        };
        self.problem_doc(status, kind, checks)
    }
}

/// Poll `GET /api/v1/jobs/{name}/runs` until it lists `n` runs (the
/// scheduler thread ticks every 20 ms here).
async fn runs_of(h: &Harness, key: &str, name: &str, n: usize) -> Value {
    let start = Instant::now();
    loop {
        let runs = h.get(&format!("/api/v1/jobs/{name}/runs"), Some(key)).await.json();
        if runs.as_array().unwrap().len() >= n {
            return runs;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no run of {name}: {runs}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_managed_by_admins_and_run_now_by_the_scheduler() {
    let h = Harness::new(|c| c.scheduler.tick_ms = 20);
    sealtrail_server::jobs::Jobs::start(&h.app).unwrap();
    let admin = h.key(Scope::Admin, None);
    let read = h.key(Scope::Read, None);
    let tenant = h.key(Scope::Admin, Some("acme"));
    h.store(
        "default",
        &admin,
        json!({"action": "user.login", "actor": {"id": "u1"}}),
    )
    .await;
    let job = json!({"name": "nightly-verify", "type": "verify", "log": "default", "schedule": "0 2 * * *", "timezone": "Europe/Berlin"});

    // Changes need admin scope, for the whole server.
    h.call(Method::POST, "/api/v1/jobs", Some(&read), json_body(&job))
        .await
        .problem(403, "forbidden");
    h.call(Method::POST, "/api/v1/jobs", Some(&tenant), json_body(&job))
        .await
        .problem(403, "forbidden");
    let created = h
        .call(Method::POST, "/api/v1/jobs", Some(&admin), json_body(&job))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let view = created.json();
    assert_eq!(view["spec"]["misfire"], "run-once");
    assert_eq!(view["enabled"], true);
    // 02:00 in Berlin is 01:00Z in winter, 00:00Z in summer.
    let next = view["next_run"].as_str().unwrap();
    assert!(
        next.ends_with("T01:00:00.000Z") || next.ends_with("T00:00:00.000Z"),
        "{next}"
    );
    h.call(Method::POST, "/api/v1/jobs", Some(&admin), json_body(&job))
        .await
        .problem(409, "exists");

    // Refusals name the field.
    let mut bad = job.clone();
    bad["colour"] = json!("red");
    let p = h
        .call(
            Method::PUT,
            "/api/v1/jobs/nightly-verify",
            Some(&admin),
            json_body(&bad),
        )
        .await
        .problem(422, "invalid-body");
    assert!(
        p["detail"].as_str().unwrap().contains("unknown field \"colour\""),
        "{p}"
    );
    let p = h
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&admin),
            json_body(&json!({"name": "b", "type": "vacuum", "schedule": "0 61 * * *", "timezone": "Nowhere/City"})),
        )
        .await
        .problem(422, "invalid-body");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("type: unknown job type \"vacuum\""), "{detail}");
    assert!(
        detail.contains("timezone: unknown time zone \"Nowhere/City\""),
        "{detail}"
    );
    let p = h
        .call(Method::PUT, "/api/v1/jobs/other", Some(&admin), json_body(&job))
        .await
        .problem(422, "invalid-body");
    assert!(p["detail"].as_str().unwrap().starts_with("name:"), "{p}");

    // Run now: the scheduler thread verifies the log and records it.
    let r = h
        .call(Method::POST, "/api/v1/jobs/nightly-verify/run", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let runs = runs_of(&h, &read, "nightly-verify", 1).await;
    let run = &runs[0];
    assert_eq!(run["outcome"], "success", "{run}");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(
        run["summary"],
        "log default intact: 1 entries, signed checkpoint of size 1"
    );
    let listed = h.get("/api/v1/jobs", Some(&read)).await.json();
    assert_eq!(listed[0]["last_run"]["outcome"], "success");

    // Disable, enable, delete; each recorded in the system log.
    let off = h
        .call(Method::POST, "/api/v1/jobs/nightly-verify/disable", Some(&admin), None)
        .await;
    assert_eq!(
        (off.json()["enabled"].clone(), off.json()["next_run"].clone()),
        (json!(false), Value::Null)
    );
    let on = h
        .call(Method::POST, "/api/v1/jobs/nightly-verify/enable", Some(&admin), None)
        .await;
    assert_eq!(on.json()["spec"]["enabled"], true);
    h.get("/api/v1/jobs/nightly-verify/runs?limit=0", Some(&read))
        .await
        .problem(400, "invalid-query");
    h.get("/api/v1/jobs/nope/runs", Some(&read))
        .await
        .problem(404, "not-found");

    // The pages show it, with its history.
    let page = h.get("/jobs", Some(&read)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("href=\"/jobs/nightly-verify\""), "{}", page.text());
    let page = h.get("/jobs/nightly-verify", Some(&read)).await.text();
    assert!(
        page.contains("log default intact: 1 entries") && page.contains(">manual<"),
        "{page}"
    );
    assert_eq!(h.get("/jobs/nope", Some(&read)).await.status, StatusCode::NOT_FOUND);

    let r = h
        .call(Method::DELETE, "/api/v1/jobs/nightly-verify", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.get("/api/v1/jobs/nightly-verify", Some(&read))
        .await
        .problem(404, "not-found");

    h.app.drain_outbox().unwrap();
    h.settle("system");
    let events = h
        .get(
            "/api/v1/logs/system/events?action=job.*&limit=100&order=oldest",
            Some(&admin),
        )
        .await
        .json();
    let seen: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["event"];
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        "job.created",
        "job.run_requested",
        "job.run",
        "job.disabled",
        "job.enabled",
        "job.deleted",
    ]
    .iter()
    .map(|a| (a.to_string(), "success".to_string()))
    .collect();
    assert_eq!(seen, want, "{events}");
    h.app.jobs.stop();
}

#[test]
fn the_openapi_document_describes_every_jobs_route() {
    let doc = serde_json::to_value(sealtrail_server::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/jobs", &["get", "post"][..]),
        ("/api/v1/jobs/{name}", &["get", "put", "delete"][..]),
        ("/api/v1/jobs/{name}/run", &["post"][..]),
        ("/api/v1/jobs/{name}/enable", &["post"][..]),
        ("/api/v1/jobs/{name}/disable", &["post"][..]),
        ("/api/v1/jobs/{name}/runs", &["get"][..]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{path} {m}");
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("JobView") && schemas.contains_key("JobRun"));
}

/// scripts/smtp-sink on a free loopback port, killed when dropped.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        use std::io::BufRead;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp-sink");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(&script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "smtp-sink did not start");
        SmtpSink { child, port, dir }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_job_mails_the_report_and_posts_it_to_a_webhook() {
    let sink = tokio::task::spawn_blocking(SmtpSink::start).await.unwrap();
    // A real HTTP receiver keeping what it is sent.
    let seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
    let keep = seen.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body.to_vec());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let h = Harness::new(|c| {
        c.scheduler.tick_ms = 20;
        c.alerts.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    });
    sealtrail_server::jobs::Jobs::start(&h.app).unwrap();
    let admin = h.key(Scope::Admin, None);
    for (i, outcome) in ["success", "failure", "success"].into_iter().enumerate() {
        h.store(
            "default",
            &admin,
            json!({"action": "invoice.approve", "actor": {"id": format!("u{i}")}, "outcome": outcome}),
        )
        .await;
    }
    // The report reads the index, which follows acknowledged events
    // shortly after: the three must be in it before the job runs.
    h.settle("default");
    for channel in [
        json!({"name": "audit-mail", "type": "email", "host": "127.0.0.1", "port": sink.port, "security": "plain",
               "from": "sealtrail@example.test", "to": ["audit@example.test"]}),
        json!({"name": "siem", "type": "webhook", "url": url}),
    ] {
        let reply = h
            .call(Method::POST, "/api/v1/channels", Some(&admin), json_body(&channel))
            .await;
        assert!(reply.status.is_success(), "{}", reply.text());
    }
    // Refusals name the field.
    let p = h
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&admin),
            json_body(
                &json!({"name": "r", "type": "report", "report": "weekly", "channels": [], "schedule": "0 7 * * *"}),
            ),
        )
        .await
        .problem(422, "invalid-body");
    assert!(p["detail"].as_str().unwrap().contains("report: "), "{p}");

    let job = json!({"name": "daily-summary", "type": "report", "report": "summary", "log": "default",
                     "period": "24h", "channels": ["audit-mail", "siem"], "schedule": "0 7 * * *",
                     "timezone": "Europe/Berlin"});
    let reply = h
        .call(Method::POST, "/api/v1/jobs", Some(&admin), json_body(&job))
        .await;
    assert!(reply.status.is_success(), "{}", reply.text());
    let reply = h
        .call(Method::POST, "/api/v1/jobs/daily-summary/run", Some(&admin), None)
        .await;
    assert!(reply.status.is_success(), "{}", reply.text());
    let runs = runs_of(&h, &admin, "daily-summary", 1).await;
    let run = &runs[0];
    assert_eq!(run["outcome"], "success", "{run}");
    let summary = run["summary"].as_str().unwrap();
    assert!(
        summary.contains("summary report of log default over the last 24h")
            && summary.contains("delivered to audit-mail (250), siem (204)"),
        "{summary}"
    );

    // The webhook got the JSON report with the three events and its
    // checkpoint; the mail arrived with the workbook attached.
    let posted = seen.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    let report: Value = serde_json::from_slice(&posted[0]).unwrap();
    assert_eq!(report["report"], "summary");
    assert_eq!(report["total"], 3, "{report}");
    assert_eq!(report["by_action"]["invoice.approve"], 3, "{report}");
    assert!(report["checkpoint"]["size"].as_u64().unwrap() >= 3, "{report}");
    // The sink names the mail once it has written it all.
    let eml = sink.dir.path().join("1.eml");
    let start = Instant::now();
    while !eml.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no mail arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mail = std::fs::read(&eml).unwrap();
    let mail = String::from_utf8_lossy(&mail);
    assert!(mail.contains("Content-Type: text/html"), "{mail}");
    assert!(mail.contains(".xlsx"), "{mail}");
}

/// The `scheduler` section of `GET /api/v1/system/health`.
async fn scheduler_health(h: &Harness, key: &str) -> Value {
    let r = h.get("/api/v1/system/health", Some(key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["scheduler"].clone()
}

async fn create(h: &Harness, key: &str, job: Value) {
    let r = h.call(Method::POST, "/api/v1/jobs", Some(key), json_body(&job)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

async fn run_now(h: &Harness, key: &str, name: &str) {
    let r = h
        .call(Method::POST, &format!("/api/v1/jobs/{name}/run"), Some(key), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_the_scheduler_its_leases_and_failures() {
    // A webhook receiver that holds each request until released, then
    // refuses it: a report job through it runs (holding its lease) for as
    // long as the test wants, then fails.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel::<()>(1);
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (gate, open) = (release.clone(), released.clone());
    let receiver = axum::Router::new().route(
        "/hold",
        axum::routing::post(move || {
            let (arrived_tx, gate, open) = (arrived_tx.clone(), gate.clone(), open.clone());
            async move {
                if !open.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = arrived_tx.try_send(());
                    gate.notified().await;
                }
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hold", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let h = Harness::new(|c| {
        c.scheduler.tick_ms = 20;
        c.alerts.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    });
    let admin = h.key(Scope::Admin, None);
    let read = h.key(Scope::Read, None);
    let off = scheduler_health(&h, &read).await;
    assert_eq!(
        (off["active"].clone(), off["holder"].clone(), off["jobs_total"].clone()),
        (json!(false), Value::Null, json!(0)),
        "{off}"
    );
    sealtrail_server::jobs::Jobs::start(&h.app).unwrap();
    let idle = scheduler_health(&h, &read).await;
    assert_eq!(idle["active"], true, "{idle}");
    let holder = idle["holder"].as_str().unwrap().to_string();
    assert_eq!(
        [
            &idle["holds_leases"],
            &idle["failed_runs_24h"],
            &idle["failed_runs_since_start"],
            &idle["last_failure"]
        ],
        [&json!(false), &json!(0), &json!(0), &Value::Null],
        "{idle}"
    );

    for i in 0..20 {
        h.store(
            "default",
            &admin,
            json!({"action": "user.login", "actor": {"id": format!("u{i}")}}),
        )
        .await;
    }
    let r = h
        .call(
            Method::POST,
            "/api/v1/channels",
            Some(&admin),
            json_body(&json!({"name": "slow", "type": "webhook", "url": url})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    create(
        &h,
        &admin,
        json!({"name": "held", "type": "report", "report": "summary", "channels": ["slow"], "schedule": "0 7 * * *"}),
    )
    .await;
    create(
        &h,
        &admin,
        json!({"name": "broken", "type": "verify", "log": "nope", "schedule": "0 3 * * *"}),
    )
    .await;
    create(
        &h,
        &admin,
        json!({"name": "rebuild", "type": "reindex", "log": "default", "schedule": "0 4 * * *"}),
    )
    .await;
    create(
        &h,
        &admin,
        json!({"name": "idle", "type": "verify", "log": "default", "schedule": "0 5 * * *", "enabled": false}),
    )
    .await;

    // While the report waits for the receiver, this process holds its lease.
    run_now(&h, &admin, "held").await;
    tokio::time::timeout(Duration::from_secs(30), arrived.recv())
        .await
        .expect("the report job posts to the receiver");
    let busy = scheduler_health(&h, &read).await;
    assert_eq!(
        [
            &busy["jobs_total"],
            &busy["jobs_enabled"],
            &busy["running_now"],
            &busy["leases_held"],
            &busy["holds_leases"]
        ],
        [&json!(4), &json!(3), &json!(["held"]), &json!(["held"]), &json!(true)],
        "{busy}"
    );
    released.store(true, std::sync::atomic::Ordering::SeqCst);
    release.notify_one();
    let held = runs_of(&h, &read, "held", 1).await;
    assert_eq!(held[0]["outcome"], "failure", "{held}");

    run_now(&h, &admin, "broken").await;
    let broken = runs_of(&h, &read, "broken", 1).await;
    assert_eq!(broken[0]["outcome"], "failure", "{broken}");
    run_now(&h, &admin, "rebuild").await;
    let rebuilt = runs_of(&h, &read, "rebuild", 1).await;
    assert_eq!(rebuilt[0]["outcome"], "success", "{rebuilt}");

    let after = scheduler_health(&h, &read).await;
    assert_eq!(
        [&after["running_now"], &after["leases_held"], &after["holds_leases"]],
        [&json!([]), &json!([]), &json!(false)],
        "{after}"
    );
    assert_eq!(
        (
            after["failed_runs_24h"].clone(),
            after["failed_runs_since_start"].clone()
        ),
        (json!(2), json!(2)),
        "{after}"
    );
    let last = &after["last_failure"];
    assert_eq!(
        (last["job"].clone(), last["holder"].clone(), last["finished_at"].clone()),
        (json!("broken"), json!(holder), broken[0]["finished_at"].clone()),
        "{after}"
    );
    assert_eq!(last["error"], broken[0]["error"], "{after}");

    // The reindex run is a rebuild, not a failure of the index.
    let doc = h.get("/api/v1/system/health", Some(&read)).await.json();
    let log = doc["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "default")
        .unwrap();
    assert_eq!(
        (
            log["index"]["failures"].clone(),
            log["index"]["rebuilds"].clone(),
            log["index"]["last_error"].clone()
        ),
        (json!(0), json!(1), Value::Null),
        "{log}"
    );

    // The OpenAPI document describes the section.
    let api = serde_json::to_value(sealtrail_server::openapi()).unwrap();
    let schema = &api["components"]["schemas"]["SchedulerHealth"]["properties"];
    for field in [
        "active",
        "jobs_total",
        "running_now",
        "holds_leases",
        "failed_runs_24h",
        "last_failure",
    ] {
        assert!(schema.get(field).is_some(), "{field}: {schema}");
    }
    h.app.jobs.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_diff_job_reads_configured_sources_and_records_a_data_run() {
    let files = tempfile::tempdir().unwrap();
    let old = files.path().join("old.csv");
    let new = files.path().join("new.csv");
    // 30 rows; the new side drops id 1, adds 31 and 32, changes every 4th amount.
    let mut a = String::from("id,amount\n");
    let mut b = String::from("id,amount\n");
    for i in 1..=30 {
        a.push_str(&format!("{i},{i}.00\n"));
    }
    for i in 2..=32 {
        let amount = if i % 4 == 0 {
            format!("{i}.01")
        } else {
            format!("{i}.00")
        };
        b.push_str(&format!("{i},{amount}\n"));
    }
    std::fs::write(&old, a).unwrap();
    std::fs::write(&new, b).unwrap();
    let changed = (2..=30).filter(|i| i % 4 == 0).count();
    let unchanged = 29 - changed;
    let sources = [
        ("ledger-old".to_string(), old.to_string_lossy().into_owned()),
        ("ledger-new".to_string(), new.to_string_lossy().into_owned()),
    ];
    let h = Harness::new(move |c| {
        c.scheduler.tick_ms = 20;
        c.data.sources = sources.into_iter().collect();
    });
    sealtrail_server::jobs::Jobs::start(&h.app).unwrap();
    let admin = h.key(Scope::Admin, None);
    let p = h
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&admin),
            json_body(
                &json!({"name": "recon", "type": "data-diff", "left": "ledger-old", "right": "ledger-gone",
                              "key": ["id"], "schedule": "daily at 01:00"}),
            ),
        )
        .await
        .problem(422, "invalid-body");
    assert!(p["detail"].as_str().unwrap().contains("right: \"ledger-gone\""), "{p}");
    create(
        &h,
        &admin,
        json!({"name": "recon", "type": "data-diff", "left": "ledger-old", "right": "ledger-new",
                              "key": ["id"], "schedule": "daily at 01:00"}),
    )
    .await;
    run_now(&h, &admin, "recon").await;
    let runs = runs_of(&h, &admin, "recon", 1).await;
    let run = &runs[0];
    assert_eq!(run["outcome"], "success", "{run}");
    let summary = run["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!(
            ": differences found: 2 added, 1 removed, {changed} changed, {unchanged} unchanged"
        )),
        "{summary}"
    );
    // The data run, as the data API shows it, under the job's name.
    let listed = h.get("/api/v1/data/runs?name=recon", Some(&admin)).await.json();
    let data = &listed["runs"][0];
    assert_eq!(
        (
            data["kind"].clone(),
            data["outcome"].clone(),
            data["summary"]["changed"].clone()
        ),
        (json!("diff"), json!("differences"), json!(changed)),
        "{listed}"
    );
    assert!(
        summary.starts_with(&format!("data run {} (diff)", data["id"])),
        "{summary} {data}"
    );
    h.app.drain_outbox().unwrap();
    h.settle("system");
    let events = h
        .get(
            "/api/v1/logs/system/events?action=data.run.completed&limit=10",
            Some(&admin),
        )
        .await
        .json();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"]["actor"]["id"], "job:recon");
    h.app.jobs.stop();
}

/// Every item of `GET {base}` (a URL ending in `?` or `&`), following
/// `next`, `limit` a page; and how many pages that took.
async fn all_changes(h: &Harness, key: &str, base: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    for pages in 1..1000 {
        let mut uri = format!("{base}limit={limit}");
        if let Some(a) = &after {
            uri.push_str(&format!("&after={a}"));
        }
        let r = h.get(&uri, Some(key)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
        let page = r.json();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return (items, pages),
        }
    }
    panic!("{base}: no end");
}

/// The keys of `items`, each its first key value.
fn keys_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["key"][0].as_str().unwrap().to_string())
        .collect()
}

/// The data run a job run's summary or error names.
fn data_run_id(text: &str) -> i64 {
    let rest = text.strip_prefix("data run ").unwrap_or_else(|| panic!("{text}"));
    rest[..rest.find(' ').unwrap()].parse().unwrap()
}

/// The run directories kept, by id.
fn run_dirs(h: &Harness) -> Vec<i64> {
    let mut ids: Vec<i64> = std::fs::read_dir(h.app.config.data_dir.join("data-runs"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_data_diff_keeps_its_changes_for_the_data_api_within_keep_runs() {
    let files = tempfile::tempdir().unwrap();
    let old = files.path().join("old.csv");
    let new = files.path().join("new.csv");
    // The new side drops 1; changes the amount of 2, the name of 3, both
    // of 4; keeps 5 and 6; adds 7 and 8.
    std::fs::write(
        &old,
        "id,name,amount\n1,ann,10\n2,bob,20\n3,cy,30\n4,di,40\n5,ed,50\n6,flo,60\n",
    )
    .unwrap();
    std::fs::write(
        &new,
        "id,name,amount\n2,bob,25\n3,cyd,30\n4,dot,45\n5,ed,50\n6,flo,60\n7,gus,70\n8,hal,80\n",
    )
    .unwrap();
    let (old, new) = (old.to_string_lossy().into_owned(), new.to_string_lossy().into_owned());
    let h = Harness::new(|c| {
        c.scheduler.tick_ms = 20;
        c.data.keep_runs = 2;
    });
    sealtrail_server::jobs::Jobs::start(&h.app).unwrap();
    let admin = h.key(Scope::Admin, None);
    let read = h.key(Scope::Read, None);
    create(
        &h,
        &admin,
        json!({"name": "recon", "type": "data-diff", "left": old, "right": new,
               "key": ["id"], "schedule": "daily at 01:00"}),
    )
    .await;
    run_now(&h, &admin, "recon").await;
    let runs = runs_of(&h, &admin, "recon", 1).await;
    let summary = runs[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains(": differences found: 2 added, 1 removed, 3 changed, 2 unchanged"),
        "{summary}"
    );
    let id = data_run_id(summary);

    // Its changes, as the data API pages them: one a page, then filtered.
    let base = format!("/api/v1/data/runs/{id}/changes?");
    let (all, pages) = all_changes(&h, &read, &base, 1).await;
    assert_eq!(all.len(), 6, "{all:?}");
    // Six changes, and the summary line the last page skips.
    assert_eq!(pages, 7);
    let mut keys = keys_of(&all);
    keys.sort();
    assert_eq!(keys, ["1", "2", "3", "4", "7", "8"]);
    let of_kind = |kind: &str| {
        let mut k = keys_of(&all.iter().filter(|c| c["kind"] == kind).cloned().collect::<Vec<_>>());
        k.sort();
        k
    };
    assert_eq!(
        (of_kind("added"), of_kind("removed"), of_kind("changed")),
        (
            vec!["7".to_string(), "8".into()],
            vec!["1".to_string()],
            vec!["2".to_string(), "3".into(), "4".into()]
        )
    );
    let (amount, _) = all_changes(&h, &read, &format!("{base}kind=changed&column=amount&"), 10).await;
    let mut amount_keys = keys_of(&amount);
    amount_keys.sort();
    assert_eq!(amount_keys, ["2", "4"]);
    let two = amount.iter().find(|c| c["key"][0] == "2").unwrap();
    assert_eq!(two["fields"], json!([{"column": "amount", "old": "20", "new": "25"}]));
    let (removed, _) = all_changes(&h, &read, &format!("{base}kind=removed&"), 10).await;
    assert_eq!(removed[0]["row"], json!(["1", "ann", "10"]));
    // Its report is made from the kept changes: a header and six rows.
    let r = h
        .get(&format!("/api/v1/data/runs/{id}/report?format=csv"), Some(&read))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("gus"), "{}", r.text());
    // The run is finished, under the job's name.
    let view = h.get(&format!("/api/v1/data/runs/{id}"), Some(&read)).await.json();
    assert_eq!(
        (view["state"].clone(), view["outcome"].clone(), view["name"].clone()),
        (json!("finished"), json!("differences"), json!("recon"))
    );

    // The dashboard's run page shows it, under the job's name.
    let page = h.get(&format!("/data/runs/{id}"), Some(&read)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let page = page.text();
    assert!(
        page.contains(&format!("Data run {id}")) && page.contains("recon") && page.contains("differences"),
        "{page}"
    );

    // A key discovery's report holds its keys.
    create(
        &h,
        &admin,
        json!({"name": "profile", "type": "data-keys", "inputs": [old], "schedule": "daily at 01:00"}),
    )
    .await;
    run_now(&h, &admin, "profile").await;
    let runs = runs_of(&h, &admin, "profile", 1).await;
    let keys_id = data_run_id(runs[0]["summary"].as_str().unwrap());
    let r = h.get(&format!("/api/v1/data/runs/{keys_id}/report"), Some(&read)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Every column is unique in the old file, so each alone is a key.
    let mut keys: Vec<Value> = r.json()["summary"]["keys"].as_array().unwrap().clone();
    keys.sort_by_key(|k| k.to_string());
    assert_eq!(keys, [json!(["amount"]), json!(["id"]), json!(["name"])]);
    assert_eq!(run_dirs(&h), [id, keys_id]);

    // Two more diffs: only the newest two directories (data.keep_runs) stay.
    for n in 2..=3 {
        run_now(&h, &admin, "recon").await;
        runs_of(&h, &admin, "recon", n).await;
    }
    let runs = runs_of(&h, &admin, "recon", 3).await;
    let newest = data_run_id(runs[0]["summary"].as_str().unwrap());
    assert_eq!(run_dirs(&h), [newest - 1, newest]);
    let r = h.get(&format!("{base}limit=1"), Some(&read)).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text());
    let (again, _) = all_changes(&h, &read, &format!("/api/v1/data/runs/{newest}/changes?"), 100).await;
    assert_eq!(again.len(), 6);
    h.app.jobs.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_data_run_waits_for_a_slot_of_data_max_running() {
    let files = tempfile::tempdir().unwrap();
    let table = files.path().join("t.csv");
    std::fs::write(&table, "id,v\n1,a\n2,b\n").unwrap();
    let table = table.to_string_lossy().into_owned();
    let h = Harness::new(|c| {
        c.scheduler.tick_ms = 20;
        c.data.max_running = 1;
    });
    sealtrail_server::jobs::Jobs::start(&h.app).unwrap();
    let admin = h.key(Scope::Admin, None);
    // The one slot, taken as a running API run takes it.
    let pool = h.app.data_runs.pool().clone();
    let held = pool.slot().await.unwrap();
    create(
        &h,
        &admin,
        json!({"name": "busy", "type": "data-diff", "left": table, "right": table,
               "key": ["id"], "schedule": "daily at 01:00", "timeout_seconds": 5}),
    )
    .await;
    let before = h.get("/api/v1/data/runs", Some(&admin)).await.json()["runs"]
        .as_array()
        .unwrap()
        .len();
    let started = Instant::now();
    run_now(&h, &admin, "busy").await;
    // The waiting job is in the data-run gauges beside the slot's holder.
    let mut gauges = (0.0, 0.0);
    while started.elapsed() < Duration::from_secs(4) {
        let m = h.get("/metrics", None).await.text();
        gauges = (
            support::metric(&m, "sealtrail_data_runs_running"),
            support::metric(&m, "sealtrail_data_runs_queued"),
        );
        if gauges == (1.0, 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gauges, (1.0, 1.0), "running and queued data runs");
    let runs = runs_of(&h, &admin, "busy", 1).await;
    // Nine tenths of its timeout waited, then a failure saying why.
    assert!(
        started.elapsed() >= Duration::from_millis(4500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(runs[0]["outcome"], "failure", "{runs}");
    let error = runs[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("no data run started: data.max_running (1) data runs were running"),
        "{error}"
    );
    let after = h.get("/api/v1/data/runs", Some(&admin)).await.json()["runs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before, "no data run was begun");

    // Given back, the next run takes it while it runs, and gives it back.
    drop(held);
    run_now(&h, &admin, "busy").await;
    let runs = runs_of(&h, &admin, "busy", 2).await;
    assert_eq!(runs[0]["outcome"], "success", "{runs}");
    assert_eq!(pool.free_slots(), 1);
    h.app.jobs.stop();
}
