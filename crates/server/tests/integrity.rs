//! Damaged logs, the scrub and the disk reserve, through the router on real
//! files: a byte flipped on disk is reported (never served, never signed
//! over), the scrub finds what nobody reads, and writes that would eat the
//! disk's reserve are refused before anything is appended.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, Method};
use axum::Router;
use sealtrail_meta::Scope;
use sealtrail_server::{App, Config};
use serde_json::{json, Value};

mod support;

use support::{json_body, metric, ProblemChecks, Reply};

struct Harness {
    dir: tempfile::TempDir,
    app: Arc<App>,
    router: Router,
    admin: String,
}

impl Reply {
    /// Assert a problem document of this status and type; return it.
    fn problem(&self, status: u16, kind: &str) -> Value {
        let checks = ProblemChecks {
            status_field: false,
            detail: false,
        };
        self.problem_doc(status, kind, checks)
    }
}

impl Harness {
    fn new(adjust: impl FnOnce(&mut Config)) -> Harness {
        let (dir, app, router) = support::open(adjust);
        let admin = support::create_key(&app, Scope::Admin, None, "test");
        Harness {
            dir,
            app,
            router,
            admin,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let bearer = format!("Bearer {}", self.admin);
        let body = body.and_then(|v| json_body(&v));
        support::send(&self.router, method, uri, Some(&bearer), body).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    async fn create_log(&self, name: &str) {
        let r = self
            .call(Method::POST, "/api/v1/logs", Some(json!({"name": name})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }

    /// Store `n` events in `log`; returns their ids by index.
    async fn ingest(&self, log: &str, n: usize) -> Vec<String> {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"action": "invoice.paid", "actor": {"id": format!("u-{i}")}, "message": format!("event {i}")}))
            .collect();
        let r = self
            .call(
                Method::POST,
                &format!("/api/v1/logs/{log}/events/batch"),
                Some(Value::Array(events)),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn log_file(&self, log: &str, file: &str) -> PathBuf {
        self.dir.path().join("data/logs").join(log).join(file)
    }

    /// Flip one bit of entry `index`'s data in place, as a failing disk
    /// would, under the open server.
    fn flip(&self, log: &str, index: u64) {
        let mut offset = [0u8; 8];
        let idx = std::fs::File::open(self.log_file(log, "index")).unwrap();
        idx.read_exact_at(&mut offset, 16 + 8 * index).unwrap();
        let at = u64::from_be_bytes(offset) + 8 + 5;
        let entries = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.log_file(log, "entries"))
            .unwrap();
        let mut b = [0u8; 1];
        entries.read_exact_at(&mut b, at).unwrap();
        entries.write_all_at(&[b[0] ^ 0x04], at).unwrap();
    }

    async fn log_health(&self, log: &str) -> Value {
        let h = self.get("/api/v1/system/health").await;
        assert_eq!(h.status, 200, "{}", h.text());
        let h = h.json();
        h["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == log)
            .cloned()
            .unwrap_or_else(|| panic!("health lacks log {log}: {h}"))
    }

    /// Poll health (the scrub runs on its own thread) until `done` holds.
    /// The deadlines are generous: a loaded machine slows the paced scrub.
    async fn wait_for_health(&self, log: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let h = self.log_health(log).await;
            if done(&h) {
                return h;
            }
            assert!(start.elapsed() < within, "not within {within:?}: {h}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_flipped_byte_is_reported_as_an_integrity_failure_never_served_or_signed_over() {
    // No scrub: the read alone must notice.
    let h = Harness::new(|c| c.integrity.scrub_interval_ms = 0);
    h.create_log("tampered").await;
    let ids = h.ingest("tampered", 5).await;
    let health = h.log_health("tampered").await;
    assert_eq!(
        (&health["status"], &health["scrub"]["result"]),
        (&json!("ok"), &json!("off")),
        "{health}"
    );
    h.app.trail("tampered").unwrap().sync_index().unwrap();
    let size = h.app.trail("tampered").unwrap().log().size();
    assert_eq!(size, 5);
    h.flip("tampered", 2);

    // Entries around it still read.
    assert_eq!(
        h.get(&format!("/api/v1/logs/tampered/events/{}", ids[1])).await.status,
        200
    );
    let r = h.get(&format!("/api/v1/logs/tampered/events/{}", ids[2])).await;
    let p = r.problem(503, "integrity-failure");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("log tampered") && detail.contains("entry 2"), "{p}");
    assert!(!r.text().contains(h.dir.path().to_str().unwrap()), "a file path in {p}");
    assert!(!r.text().contains("/logs/"), "a file path in {p}");
    // A listing that reaches it is refused the same way.
    h.get("/api/v1/logs/tampered/events")
        .await
        .problem(503, "integrity-failure");

    let ready = h.get("/readyz").await;
    let p = ready.problem(503, "integrity-failure");
    assert!(p["detail"].as_str().unwrap().contains("entry 2"), "{p}");
    let alive = h.get("/healthz").await;
    assert_eq!(alive.status, 200);
    assert!(
        alive.text().contains("log tampered: damaged at entry 2"),
        "{}",
        alive.text()
    );
    let health = h.log_health("tampered").await;
    assert_eq!(health["status"], "damaged", "{health}");
    assert_eq!(health["damaged"]["entry"], 2, "{health}");
    assert_eq!(h.get("/api/v1/system/health").await.json()["status"], "critical");
    let metrics = h.get("/metrics").await.text();
    assert_eq!(
        metric(&metrics, "sealtrail_integrity_failures_total{log=\"tampered\"}"),
        1.0
    );
    assert_eq!(metric(&metrics, "sealtrail_log_damaged{log=\"tampered\"}"), 1.0);
    assert!(metric(&metrics, "sealtrail_logs_damaged ") >= 1.0);

    // Writes are refused before anything is appended; nothing new is signed.
    let (_, before) = h.app.trail("tampered").unwrap().log().checkpoint();
    let r = h
        .call(
            Method::POST,
            "/api/v1/logs/tampered/events",
            Some(json!({"action": "invoice.paid"})),
        )
        .await;
    r.problem(503, "integrity-failure");
    let checkpoint = h.get("/logs/tampered/checkpoint").await;
    assert_eq!(checkpoint.bytes, before.to_vec());
    assert_eq!(h.app.trail("tampered").unwrap().log().size(), size);
    // Other logs carry on.
    h.ingest("default", 1).await;
}

#[tokio::test]
async fn the_scrub_finds_a_flip_in_an_entry_nobody_reads() {
    let h = Harness::new(|c| {
        c.integrity.scrub_interval_ms = 20;
        c.integrity.scrub_period_s = 1;
    });
    h.create_log("scrubbed").await;
    h.ingest("scrubbed", 40).await;
    // New entries are re-read promptly, and a whole pass completes.
    let health = h
        .wait_for_health("scrubbed", Duration::from_secs(30), |l| {
            l["scrub"]["new_checked"] == 40 && l["scrub"]["full_passes"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(health["scrub"]["result"], "ok", "{health}");
    assert!(health["scrub"]["last_full_pass_at"].is_string(), "{health}");
    let metrics = h.get("/metrics").await.text();
    assert_eq!(
        metric(&metrics, "sealtrail_scrub_checked_entries{log=\"scrubbed\"}"),
        40.0
    );
    assert!(metrics.contains("sealtrail_scrub_last_full_pass_timestamp_seconds{log=\"scrubbed\"}"));

    h.flip("scrubbed", 31);
    // Found by the next whole-log pass (one a second here), unread.
    let health = h
        .wait_for_health("scrubbed", Duration::from_secs(30), |l| l["status"] == "damaged")
        .await;
    assert_eq!(health["damaged"]["entry"], 31, "{health}");
    assert_eq!(health["scrub"]["result"], "damaged", "{health}");
    h.get("/readyz").await.problem(503, "integrity-failure");
    let r = h
        .call(
            Method::POST,
            "/api/v1/logs/scrubbed/events",
            Some(json!({"action": "invoice.paid"})),
        )
        .await;
    r.problem(503, "integrity-failure");
    assert_eq!(h.app.trail("scrubbed").unwrap().log().size(), 40);
}

#[tokio::test]
async fn with_no_scrub_period_only_new_entries_are_rechecked() {
    let h = Harness::new(|c| {
        c.integrity.scrub_interval_ms = 20;
        c.integrity.scrub_period_s = 0;
    });
    h.ingest("default", 10).await;
    let health = h
        .wait_for_health("default", Duration::from_secs(30), |l| l["scrub"]["new_checked"] == 10)
        .await;
    assert_eq!(health["scrub"]["full_passes"], 0, "{health}");
    assert!(health["scrub"]["pass_position"].is_null(), "{health}");
    assert_eq!(health["scrub"]["result"], "ok", "{health}");
}

#[tokio::test]
async fn a_write_that_would_eat_the_disk_reserve_is_refused_with_retry_after() {
    // A reserve larger than any disk: every write is refused.
    let h = Harness::new(|c| c.health.disk_reserve_bytes = u64::MAX / 2);
    let r = h
        .call(
            Method::POST,
            "/api/v1/logs/default/events",
            Some(json!({"action": "invoice.paid"})),
        )
        .await;
    let p = r.problem(503, "unavailable");
    assert!(p["detail"].as_str().unwrap().contains("disk_reserve_bytes"), "{p}");
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    assert_eq!(h.app.trail("default").unwrap().log().size(), 0);
    h.get("/readyz").await.problem(503, "unavailable");
    let health = h.get("/api/v1/system/health").await.json();
    assert_eq!(health["disk"]["status"], "critical", "{health}");
    assert!(health["disk"]["free_bytes"].as_u64().unwrap() < u64::MAX / 2);

    // With no reserve, writes that fit are taken (the exact bound is
    // tested on fixed numbers in system.rs).
    let h = Harness::new(|c| c.health.disk_reserve_bytes = 0);
    h.ingest("default", 1).await;
    let disk = h.get("/api/v1/system/health").await.json()["disk"].clone();
    assert_eq!(disk["reserve_bytes"], 0);
    assert!(h.app.system.check_room(0).is_ok());
    let free = disk["free_bytes"].as_u64().unwrap();
    assert!(
        h.app.system.check_room(free * 4).is_err(),
        "a write larger than the free space"
    );
}
