//! Bounded requests and leak-free faults, through the router without a
//! socket: the request target and each query parameter held to `limits`
//! (tested at the bounds), long parameters recorded shortened with their
//! SHA-256, glob patterns bounded, and internal faults answered with a
//! generic problem that names no file.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use sealtrail_meta::Scope;
use sealtrail_server::{App, Config};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod support;

struct Harness {
    dir: tempfile::TempDir,
    app: Arc<App>,
    router: Router,
}

impl Harness {
    fn new(adjust: impl FnOnce(&mut Config)) -> Harness {
        let (dir, app, router) = support::open(adjust);
        Harness { dir, app, router }
    }

    fn key(&self, scope: Scope) -> String {
        support::create_key(&self.app, scope, None, "test")
    }

    async fn get(&self, uri: &str, key: &str) -> (StatusCode, String, Value) {
        let bearer = format!("Bearer {key}");
        let reply = support::send(&self.router, Method::GET, uri, Some(&bearer), None).await;
        let json = serde_json::from_slice(&reply.bytes).unwrap_or(Value::Null);
        (
            reply.status,
            format!("{}\n{}", reply.content_type(), reply.text()),
            json,
        )
    }

    async fn post(&self, uri: &str, key: &str, body: Value) -> StatusCode {
        let bearer = format!("Bearer {key}");
        let reply = support::send(
            &self.router,
            Method::POST,
            uri,
            Some(&bearer),
            support::json_body(&body),
        )
        .await;
        reply.status
    }

    fn settle(&self, log: &str) {
        self.app.trail(log).unwrap().sync_index().unwrap();
    }
}

/// Assert a problem document of this status and type.
fn problem(reply: &(StatusCode, String, Value), status: u16, kind: &str) -> String {
    let (s, text, json) = reply;
    assert_eq!(s.as_u16(), status, "{text}");
    assert!(text.starts_with("application/problem+json\n"), "{text}");
    assert_eq!(json["type"], format!("urn:sealtrail:problem:{kind}"), "{text}");
    json["detail"].as_str().unwrap().to_string()
}

const EVENTS: &str = "/api/v1/logs/default/events";

#[tokio::test]
async fn a_long_query_is_recorded_as_a_prefix_with_its_length_and_hash() {
    // Limits far above the default, so that the record must shorten a
    // query string longer than a whole event's `details` may be.
    let h = Harness::new(|c| {
        c.limits.max_uri_bytes = 200_000;
        c.limits.max_param_bytes = 100_000;
    });
    let read = h.key(Scope::Read);
    let admin = h.key(Scope::Admin);
    let query = format!("text={}", "word+".repeat(8_000));
    let (status, text, _) = h.get(&format!("{EVENTS}?{query}"), &read).await;
    assert_eq!(status, 200, "{text}");
    h.settle("system");
    let (_, _, system) = h
        .get("/api/v1/logs/system/events?action=trail.queried&limit=1", &admin)
        .await;
    let details = &system["events"][0]["event"]["details"];
    assert_eq!(details["query_bytes"], query.len());
    let sha: String = Sha256::digest(query.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(details["query_sha256"], sha);
    let prefix = details["query"].as_str().unwrap();
    assert_eq!(prefix.len(), 256);
    assert!(query.starts_with(prefix));
    assert_eq!(details["results"], 0);
}

#[tokio::test]
async fn an_over_long_query_string_gets_414_not_500() {
    let h = Harness::new(|_| {});
    let read = h.key(Scope::Read);
    // Longer than the schema lets `details` be: this used to fail the
    // system-log record and answer 500.
    let uri = format!("{EVENTS}?text={}", "a".repeat(33_000));
    let detail = problem(&h.get(&uri, &read).await, 414, "uri-too-long");
    assert!(detail.contains("limits.max_uri_bytes"), "{detail}");
}

#[tokio::test]
async fn each_query_parameter_is_held_to_its_limit_once_decoded() {
    let h = Harness::new(|c| c.limits.max_param_bytes = 50);
    let read = h.key(Scope::Read);
    // At the limit: 50 escapes of 3 bytes each decode to 50 bytes.
    let (status, text, _) = h.get(&format!("{EVENTS}?actor={}", "%41".repeat(50)), &read).await;
    assert_eq!(status, 200, "{text}");
    let over = h.get(&format!("{EVENTS}?actor={}", "%41".repeat(51)), &read).await;
    let detail = problem(&over, 400, "parameter-too-long");
    assert_eq!(
        detail,
        "query parameter \"actor\" is 51 bytes; the limit is 50 bytes (limits.max_param_bytes)"
    );
    // Every route is bounded, not only the queries.
    let over = h.get(&format!("/api/v1/logs?x={}", "a".repeat(51)), &read).await;
    problem(&over, 400, "parameter-too-long");
}

#[tokio::test]
async fn the_request_target_is_held_to_its_limit() {
    let h = Harness::new(|c| c.limits.max_uri_bytes = 300);
    let read = h.key(Scope::Read);
    let base = format!("{EVENTS}?actor=");
    let at_limit = format!("{base}{}", "a".repeat(300 - base.len()));
    assert_eq!(at_limit.len(), 300);
    let (status, text, _) = h.get(&at_limit, &read).await;
    assert_eq!(status, 200, "{text}");
    let detail = problem(&h.get(&format!("{at_limit}a"), &read).await, 414, "uri-too-long");
    assert_eq!(
        detail,
        "the request target is 301 bytes; the limit is 300 bytes (limits.max_uri_bytes)"
    );
}

#[tokio::test]
async fn an_action_glob_is_held_to_its_limit() {
    let h = Harness::new(|_| {});
    let ingest = h.key(Scope::Ingest);
    let read = h.key(Scope::Read);
    assert_eq!(h.post(EVENTS, &ingest, json!({"action": "invoice.paid"})).await, 201);
    h.settle("default");
    let max = sealtrail_event::glob::MAX_PATTERN_CHARS;
    let at_limit = "*".repeat(max - "paid".len()) + "paid";
    let (status, text, page) = h.get(&format!("{EVENTS}?action={at_limit}"), &read).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let over = h.get(&format!("{EVENTS}?action=*{at_limit}"), &read).await;
    let detail = problem(&over, 400, "parameter-too-long");
    assert_eq!(
        detail,
        format!(
            "query parameter \"action\" is {} characters; the limit is {max}",
            max + 1
        )
    );
}

/// What a response body must never hold: a path of the data directory or
/// Rust `Debug` output.
fn assert_leaks_nothing(text: &str, data_dir: &std::path::Path) {
    let dir = data_dir.to_str().unwrap();
    assert!(!text.contains(dir), "the data directory leaks: {text}");
    for debug in ["Some(", "Err(", "Ok(", " { ", "Corrupt", "Io {", "os error"] {
        assert!(!text.contains(debug), "Debug text {debug:?} leaks: {text}");
    }
}

#[tokio::test]
async fn an_internal_fault_answers_generically_and_is_logged_and_counted() {
    let h = Harness::new(|_| {});
    let ingest = h.key(Scope::Ingest);
    let read = h.key(Scope::Read);
    assert_eq!(h.post(EVENTS, &ingest, json!({"action": "invoice.paid"})).await, 201);
    h.settle("default");
    // Cut the stored entry short: reading it fails with an I/O error whose
    // text names the file. (Changed bytes are an integrity failure instead,
    // answered as such.)
    let data = h.dir.path().join("data");
    let entries = data.join("logs/default/entries");
    let len = std::fs::metadata(&entries).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&entries)
        .unwrap()
        .set_len(len - 20)
        .unwrap();

    let reply = h.get(EVENTS, &read).await;
    let detail = problem(&reply, 503, "unavailable");
    assert!(
        detail.starts_with("a storage operation of the log failed; see the server log, error id "),
        "{detail}"
    );
    assert_leaks_nothing(&reply.1, &data);
    let (_, metrics, _) = h.get("/metrics", &read).await;
    assert!(
        metrics.contains("sealtrail_http_internal_errors_total{kind=\"unavailable\"}"),
        "{metrics}"
    );
}
