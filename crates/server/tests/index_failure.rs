//! A log whose query index fails while the server runs: every route that
//! queries the index answers 503 `index-unavailable` with `Retry-After`,
//! health and `/metrics` show it, ingest goes on, and once the index is
//! rebuilt from the ledger (by itself, no restart) queries answer every
//! stored event.
//!
//! The fault is real: the index directory is deleted under the running
//! index. A regular file where the rebuild directory goes keeps the
//! rebuilds failing until the test takes it away.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sealtrail_meta::Scope;
use serde_json::{json, Value};

mod support;

use support::{metric, Harness, ProblemChecks};

const LOG: &str = "default";

async fn health(h: &Harness, key: &str) -> Value {
    let r = h.get("/api/v1/system/health", Some(key)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The `index` object of `LOG` in health, and the whole document.
async fn index_health(h: &Harness, key: &str) -> (Value, Value) {
    let doc = health(h, key).await;
    let log = doc["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == LOG)
        .unwrap()
        .clone();
    (log["index"].clone(), doc)
}

async fn wait_for_state(h: &Harness, key: &str, state: &str, deadline: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (index, _) = index_health(h, key).await;
        if index["state"] == state {
            return index;
        }
        assert!(
            start.elapsed() < deadline,
            "index not {state} within {deadline:?}: {index}"
        );
        // Ingest goes on meanwhile.
        h.store(LOG, key, json!({"action": "doc.edit", "actor": {"id": "u2"}}))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_index_answers_503_shows_in_health_and_recovers_by_itself() {
    let h = Harness::new(|_| {});
    let key = h.key(Scope::Admin, None);
    let first = h
        .post(
            &format!("/api/v1/logs/{LOG}/events"),
            Some(&key),
            json!({"action": "doc.create", "actor": {"id": "u1"}, "targets": [{"type": "doc", "id": "d1"}]}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_string();
    for _ in 0..5 {
        h.store(
            LOG,
            &key,
            json!({"action": "doc.edit", "actor": {"id": "u1"}, "duration_ms": 5}),
        )
        .await;
    }
    h.settle(LOG);
    let (index, _) = index_health(&h, &key).await;
    assert_eq!(index["state"], "ok", "{index}");
    assert_eq!(index["covered"], index["ledger_size"]);

    let log_dir = h.app.data.log_dir(LOG);
    std::fs::write(log_dir.join("query-index.rebuild"), b"in the way").unwrap();
    std::fs::remove_dir_all(log_dir.join("query-index")).unwrap();
    let index = wait_for_state(&h, &key, "failed", Duration::from_secs(10)).await;
    assert_eq!(index["failures"], 1, "{index}");
    assert_eq!(index["queued"], 0, "{index}");
    assert!(index["retry_in_seconds"].as_u64().unwrap() <= 2, "{index}");
    let cause = index["last_error"].as_str().unwrap();
    assert!(cause.contains("logs/default/query-index"), "{cause}");
    let root = h.app.data.root().display().to_string();
    assert!(!cause.contains(&root), "{cause}");
    let (_, doc) = index_health(&h, &key).await;
    assert_ne!(doc["status"], "healthy", "{doc}");

    // Every route that queries the index.
    let routes = [
        format!("/api/v1/logs/{LOG}/events"),
        format!("/api/v1/logs/{LOG}/errors"),
        format!("/api/v1/logs/{LOG}/events/{id}"),
        format!("/api/v1/logs/{LOG}/entities/doc/d1/history"),
        format!("/api/v1/logs/{LOG}/stats"),
        format!("/api/v1/logs/{LOG}/performance"),
        format!("/api/v1/logs/{LOG}/export?format=jsonl"),
    ];
    let checks = ProblemChecks {
        status_field: true,
        detail: true,
    };
    for uri in &routes {
        let r = h.get(uri, Some(&key)).await;
        let p = r.problem_doc(503, "index-unavailable", checks);
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=5).contains(&retry), "{uri}: Retry-After {retry}");
        assert_eq!(p["retry_after"], retry);
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("log default") && !detail.contains(&root), "{detail}");
    }

    // Ingest goes on; what it stores is left to the rebuild.
    h.store(LOG, &key, json!({"action": "doc.edit", "actor": {"id": "u3"}}))
        .await;
    let healthz = h.get("/healthz", None).await.text();
    assert!(healthz.contains("log default: query index failed"), "{healthz}");
    let metrics = h.get("/metrics", Some(&key)).await.text();
    assert_eq!(metric(&metrics, "sealtrail_index_failures_total{log=\"default\"}"), 1.0);
    assert_eq!(metric(&metrics, "sealtrail_index_available{log=\"default\"}"), 0.0);
    assert_eq!(metric(&metrics, "sealtrail_index_queued_events{log=\"default\"}"), 0.0);
    assert!(metric(&metrics, "sealtrail_index_rebuild_failures_total{log=\"default\"}") >= 1.0);
    assert!(metric(&metrics, "sealtrail_index_dropped_events_total{log=\"default\"}") >= 1.0);

    // Out of the way: the next attempt rebuilds, without a restart.
    std::fs::remove_file(log_dir.join("query-index.rebuild")).unwrap();
    let index = wait_for_state(&h, &key, "ok", Duration::from_secs(20)).await;
    assert_eq!(index["rebuilds"], 1, "{index}");
    h.settle(LOG);
    let size = h.app.trail(LOG).unwrap().log().size();
    let r = h
        .get(&format!("/api/v1/logs/{LOG}/events?limit=1000"), Some(&key))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut indices: Vec<u64> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..size).collect::<Vec<_>>());
    for uri in &routes {
        let r = h.get(uri, Some(&key)).await;
        assert_eq!(r.status, 200, "{uri}: {}", r.text());
    }
    let metrics = h.get("/metrics", Some(&key)).await.text();
    assert_eq!(metric(&metrics, "sealtrail_index_rebuilds_total{log=\"default\"}"), 1.0);
    assert_eq!(metric(&metrics, "sealtrail_index_rebuilding{log=\"default\"}"), 0.0);
    assert_eq!(metric(&metrics, "sealtrail_index_available{log=\"default\"}"), 1.0);
}

/// A server started on a data directory whose log `name` holds events
/// with idempotency keys `k0..k{n}`, stored and indexed before the start.
fn stored_before_start(name: &str, n: usize, adjust: impl FnOnce(&mut sealtrail_server::Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(&dir.path().join("data"));
    config.index.visibility_ms = 20;
    adjust(&mut config);
    let data = sealtrail_ledger::DataDir::new(config.data_dir.clone());
    data.create_log(name, None).unwrap();
    {
        let trail = sealtrail_trail::Trail::open(&data, name, Default::default()).unwrap();
        let texts: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"action":"doc.edit","actor":{{"id":"u1"}},"idempotency_key":"k{i}"}}"#))
            .collect();
        let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        trail.ingest(&inputs, false).unwrap();
        trail.sync_index().unwrap();
    }
    let app = sealtrail_server::App::open(config).unwrap();
    let router = sealtrail_server::router(app.clone());
    Harness { dir, app, router }
}

async fn index_of(h: &Harness, key: &str, log: &str) -> Value {
    let doc = health(h, key).await;
    doc["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == log)
        .unwrap_or_else(|| panic!("{log} not in health: {doc}"))["index"]
        .clone()
}

/// `event` posted to `log`, expecting 503 `idempotency-unavailable`
/// with `Retry-After`; returns the problem's detail.
async fn refused_for_keys(h: &Harness, key: &str, log: &str, event: Value) -> String {
    let r = h.post(&format!("/api/v1/logs/{log}/events"), Some(key), event).await;
    let checks = ProblemChecks {
        status_field: true,
        detail: true,
    };
    let p = r.problem_doc(503, "idempotency-unavailable", checks);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_eq!(p["retry_after"], retry);
    p["detail"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_whose_index_does_not_open_is_served_and_its_index_rebuilt() {
    const BROKEN: &str = "broken";
    let h = stored_before_start(BROKEN, 5, |_| {});
    let key = h.key(Scope::Admin, None);
    let log_dir = h.app.data.log_dir(BROKEN);
    // The manifest cannot be read (a directory in its place), and rebuilds
    // fail while a file sits where the replaced index goes.
    let manifest = log_dir.join("query-index/MANIFEST");
    std::fs::remove_file(&manifest).unwrap();
    std::fs::create_dir(&manifest).unwrap();
    std::fs::write(log_dir.join("query-index.retired"), b"in the way").unwrap();

    // The log opens (here on its first request), its index failed.
    let r = h.get(&format!("/api/v1/logs/{BROKEN}/events"), Some(&key)).await;
    r.problem_doc(
        503,
        "index-unavailable",
        ProblemChecks {
            status_field: true,
            detail: true,
        },
    );
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    let start = Instant::now();
    let index = loop {
        let index = index_of(&h, &key, BROKEN).await;
        if index["state"] == "failed" {
            break index;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{index}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (index["failures"].as_u64(), index["rebuilds"].as_u64()),
        (Some(1), Some(0)),
        "{index}"
    );
    let cause = index["last_error"].as_str().unwrap();
    assert!(cause.contains("query-index"), "{cause}");
    assert!(!cause.contains(&h.app.data.root().display().to_string()), "{cause}");
    let metrics = h.get("/metrics", Some(&key)).await.text();
    assert_eq!(metric(&metrics, "sealtrail_index_failures_total{log=\"broken\"}"), 1.0);

    // No index holds the keys stored: keyed appends are refused, a resend
    // too, and nothing is stored; events without a key are.
    let trail = h.app.trail(BROKEN).unwrap();
    let size = trail.log().size();
    for k in ["k1", "fresh"] {
        let detail = refused_for_keys(
            &h,
            &key,
            BROKEN,
            json!({"action": "doc.edit", "actor": {"id": "u1"}, "idempotency_key": k}),
        )
        .await;
        assert!(detail.contains("log broken") && detail.contains("nothing"), "{detail}");
        assert!(!detail.contains(k), "{detail}");
    }
    assert_eq!(trail.log().size(), size);
    h.store(BROKEN, &key, json!({"action": "doc.view", "actor": {"id": "u2"}}))
        .await;
    assert_eq!(trail.log().size(), size + 1);
    // Sent at once, so that they may be stored as one group: each is
    // answered as if it had come alone.
    let uri = format!("/api/v1/logs/{BROKEN}/events");
    let unkeyed = json!({"action": "doc.view", "actor": {"id": "u3"}});
    let keyed = json!({"action": "doc.view", "actor": {"id": "u3"}, "idempotency_key": "k2"});
    let post = |i: usize| {
        let event = if i.is_multiple_of(4) {
            keyed.clone()
        } else {
            unkeyed.clone()
        };
        h.post(&uri, Some(&key), event)
    };
    let (r0, r1, r2, r3, r4, r5, r6, r7) =
        tokio::join!(post(0), post(1), post(2), post(3), post(4), post(5), post(6), post(7));
    let replies = [r0, r1, r2, r3, r4, r5, r6, r7];
    for (i, r) in replies.iter().enumerate() {
        let expected = if i % 4 == 0 { 503 } else { 201 };
        assert_eq!(r.status, expected, "{i}: {}", r.text());
    }
    assert_eq!(trail.log().size(), size + 7);

    // Out of the way: rebuilt without a restart; every event answers and
    // the stored keys are found again.
    std::fs::remove_file(log_dir.join("query-index.retired")).unwrap();
    let start = Instant::now();
    while index_of(&h, &key, BROKEN).await["state"] != "ok" {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.settle(BROKEN);
    let r = h
        .get(&format!("/api/v1/logs/{BROKEN}/events?limit=1000"), Some(&key))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut indices: Vec<u64> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..trail.log().size()).collect::<Vec<_>>());
    let again = h
        .post(
            &format!("/api/v1/logs/{BROKEN}/events"),
            Some(&key),
            json!({"action": "doc.edit", "actor": {"id": "u1"}, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["index"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_held_for_a_failed_index_are_bounded_and_past_the_bound_answer_503() {
    const BOUNDED: &str = "bounded";
    const MAX_KEYS: usize = 8;
    let h = stored_before_start(BOUNDED, 3, |c| c.index.max_unindexed_keys = MAX_KEYS);
    let key = h.key(Scope::Admin, None);
    let trail = h.app.trail(BOUNDED).unwrap();
    let log_dir = h.app.data.log_dir(BOUNDED);
    std::fs::write(log_dir.join("query-index.rebuild"), b"in the way").unwrap();
    std::fs::remove_dir_all(log_dir.join("query-index")).unwrap();
    let start = Instant::now();
    while index_of(&h, &key, BOUNDED).await["state"] != "failed" {
        assert!(start.elapsed() < Duration::from_secs(10));
        h.store(BOUNDED, &key, json!({"action": "doc.view", "actor": {"id": "u2"}}))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The old index's last commit answers the keys stored before; new
    // keys are held, up to the bound.
    let posted = |k: String| json!({"action": "doc.edit", "actor": {"id": "u1"}, "idempotency_key": k});
    let mut held = Vec::new();
    for i in 0..MAX_KEYS {
        let r = h
            .post(
                &format!("/api/v1/logs/{BOUNDED}/events"),
                Some(&key),
                posted(format!("new{i}")),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        held.push(r.json()["index"].as_u64().unwrap());
    }
    let index = index_of(&h, &key, BOUNDED).await;
    assert_eq!(
        (index["held_keys"].as_u64(), index["max_held_keys"].as_u64()),
        (Some(MAX_KEYS as u64), Some(MAX_KEYS as u64)),
        "{index}"
    );
    let size = trail.log().size();
    let detail = refused_for_keys(&h, &key, BOUNDED, posted("one-more".into())).await;
    assert!(detail.contains(&format!("limit of {MAX_KEYS}")), "{detail}");
    assert_eq!(trail.log().size(), size);
    // Resends are answered from memory or the old commit; no key, stored.
    let r = h
        .post(
            &format!("/api/v1/logs/{BOUNDED}/events"),
            Some(&key),
            posted("new0".into()),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.json()["index"].as_u64()), (200, Some(held[0])));
    let r = h
        .post(
            &format!("/api/v1/logs/{BOUNDED}/events"),
            Some(&key),
            posted("k2".into()),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.json()["index"].as_u64()), (200, Some(2)));
    h.store(BOUNDED, &key, json!({"action": "doc.view", "actor": {"id": "u2"}}))
        .await;

    // Rebuilt and committed: the keys leave memory, new ones are taken.
    std::fs::remove_file(log_dir.join("query-index.rebuild")).unwrap();
    let start = Instant::now();
    while index_of(&h, &key, BOUNDED).await["state"] != "ok" {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.settle(BOUNDED);
    assert_eq!(index_of(&h, &key, BOUNDED).await["held_keys"], 0);
    let r = h
        .post(
            &format!("/api/v1/logs/{BOUNDED}/events"),
            Some(&key),
            posted("one-more".into()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    for (i, at) in held.iter().enumerate() {
        let r = h
            .post(
                &format!("/api/v1/logs/{BOUNDED}/events"),
                Some(&key),
                posted(format!("new{i}")),
            )
            .await;
        assert_eq!((r.status.as_u16(), r.json()["index"].as_u64()), (200, Some(*at)));
    }
}
