//! The dashboard in a real headless Chromium: the real `sealtrail serve`
//! on 127.0.0.1:0 with users made by `sealtrail users create`, events sent
//! over the API (some of them hostile: markup in names, messages and
//! details), then `tests/browser/dashboard.mjs` (playwright-core driving
//! Debian's /usr/bin/chromium) walks the pages as a person would. One
//! server for every flow: starting a browser is the slow part.
//!
//! `scripts/browser` installs Chromium and the node packages; this test
//! refuses to run without them rather than passing without a browser.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::{agent, create_key, expect, Running};

const CHROMIUM: &str = "/usr/bin/chromium";
const ADMIN: (&str, &str) = ("ada", "correct horse battery staple");
const VIEWER: (&str, &str) = ("vic", "viewer passphrase of some length");

/// Markup in every field a page may show: if any of it ran, a dialog
/// would open, which the browser side fails on.
const HOSTILE_ACTOR: &str = "<script>alert('actor')</script>";
const HOSTILE_MESSAGE: &str =
    "<img src=x onerror=alert('message')> hostile</textarea></title><script>alert(1)</script>";
const HOSTILE_TARGET: &str = "\"><svg onload=alert('target')>";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn post_event(agent: &ureq::Agent, base: &str, key: &str, event: &Value) -> u64 {
    let mut resp = agent
        .post(format!("{base}/api/v1/logs/default/events"))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(event.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(status, 201, "{body}");
    body["index"].as_u64().unwrap()
}

/// Wait until the server's search sees ledger index `last`.
fn wait_searchable(agent: &ureq::Agent, base: &str, key: &str, last: u64) {
    let started = Instant::now();
    loop {
        let mut resp = agent
            .get(format!("{base}/api/v1/logs/default/events?limit=1"))
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .unwrap();
        let body: Value = resp.body_mut().read_json().unwrap();
        if body["events"][0]["index"].as_u64().is_some_and(|n| n >= last) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "index {last} never searchable: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create_user(data: &Path, (name, password): (&str, &str), role: &str) {
    expect(
        data,
        &["users", "create", name, "--role", role, "--password-stdin"],
        format!("{password}\n").as_bytes(),
        0,
    );
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    let root = repo_root();
    let script = root.join("tests/browser/dashboard.mjs");
    assert!(
        Path::new(CHROMIUM).exists() && root.join("tests/browser/node_modules/playwright-core").exists(),
        "the browser tests need Debian's chromium at {CHROMIUM} and tests/browser/node_modules: run scripts/browser"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The server's log goes to a file: a pipe nobody reads would fill.
    let server_log = dir.path().join("server.log");
    let server = Running::spawn(
        support::serve(&data, "127.0.0.1:0").stderr(std::fs::File::create(&server_log).unwrap()),
        String::new,
    );
    create_user(&data, ADMIN, "admin");
    create_user(&data, VIEWER, "viewer");
    let ingest = create_key(&data, "ingest", Some("browser ingest"));
    let read = create_key(&data, "read", Some("browser read"));

    // Keys made beside a running server are picked up within a second.
    let agent = agent();
    let started = Instant::now();
    let mut last = 0;
    let mut search = Vec::new();
    for n in 0..5u64 {
        let event = json!({
            "action": "invoice.paid",
            "actor": {"id": "alice", "type": "user", "name": "Alice Example"},
            "targets": [{"type": "invoice", "id": format!("INV-{n}")}],
            "outcome": "success",
            "message": format!("quartz invoice {n} paid"),
            "duration_ms": 10 * n,
        });
        let index = loop {
            let mut resp = agent
                .post(format!("{}/api/v1/logs/default/events", server.base))
                .header("Authorization", format!("Bearer {ingest}"))
                .header("Content-Type", "application/json")
                .send(event.to_string())
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.body_mut().read_json().unwrap();
            if status == 201 {
                break body["index"].as_u64().unwrap();
            }
            assert!(
                status == 401 && started.elapsed() < Duration::from_secs(10),
                "{status} {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        search.push(index);
        last = index;
    }
    let hostile = post_event(
        &agent,
        &server.base,
        &ingest,
        &json!({
            "action": "user.renamed",
            "actor": {"id": "mallory", "type": "user", "name": HOSTILE_ACTOR, "email": "m@example.com"},
            "targets": [{"type": "account", "id": HOSTILE_TARGET, "name": HOSTILE_ACTOR}],
            "outcome": "failure",
            "severity": "warning",
            "message": HOSTILE_MESSAGE,
            "details": {"note": "<iframe src=javascript:alert('details')></iframe>", "<b>key</b>": "\"'><script>alert(2)</script>"},
            "error": {"type": "<script>alert('error')</script>", "message": HOSTILE_MESSAGE},
        }),
    );
    last = last.max(hostile);
    wait_searchable(&agent, &server.base, &read, last);

    let screenshots = root.join("target/browser-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let fixture = json!({
        "base": server.base,
        "log": "default",
        "chromium": CHROMIUM,
        "screenshots": screenshots,
        "admin": {"name": ADMIN.0, "password": ADMIN.1},
        "viewer": {"name": VIEWER.0, "password": VIEWER.1},
        "ingest_key": ingest,
        "read_key": read,
        "search": {"text": "quartz", "indices": search},
        "hostile": {
            "index": hostile,
            "actor_name": HOSTILE_ACTOR,
            "message": HOSTILE_MESSAGE,
            "target": {"type": "account", "id": HOSTILE_TARGET},
        },
    });
    let run = Instant::now();
    let out = Command::new("node")
        .arg(&script)
        .current_dir(root.join("tests/browser"))
        .env("SEALTRAIL_BROWSER_FIXTURE", fixture.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = run.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (code, _) = server.stop();
    let server_err = std::fs::read_to_string(&server_log).unwrap_or_default();
    assert!(
        out.status.success(),
        "node tests/browser/dashboard.mjs failed ({:?}) after {took:?}\n{stdout}\n{stderr}\nserver: {server_err}",
        out.status
    );
    println!("{stdout}{stderr}browser flows took {took:?}");
    assert_eq!(code, 0, "the server stopped uncleanly: {server_err}");
}
