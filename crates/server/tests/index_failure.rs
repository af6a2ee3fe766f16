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
