//! The router driven without a socket: the auth matrix (scopes × tenants),
//! bad bodies of every kind with their problem documents, receipts,
//! idempotency, audited reads, refusals when the disk is full, and limits.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sealtrail_merkle::{leaf_hash, Receipt};
use sealtrail_server::app::{key_event, now_text};
use sealtrail_server::meta::Scope;
use sealtrail_server::{router, App, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    router: Router,
}

impl Harness {
    fn new(adjust: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.index.visibility_ms = 20;
        adjust(&mut config);
        let app = App::open(config).unwrap();
        let router = router(app.clone());
        Harness { _dir: dir, app, router }
    }

    fn key(&self, scope: Scope, tenant: Option<&str>) -> String {
        let (_, secret) = self
            .app
            .meta
            .create_key(scope, tenant, "test", &now_text(), |k| {
                key_event(json!({"id": "test", "type": "user"}), "api_key.created", k)
            })
            .unwrap();
        secret
    }

    async fn call(&self, method: Method, uri: &str, key: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = match body {
            Some((content_type, bytes)) => req.header(header::CONTENT_TYPE, content_type).body(Body::from(bytes)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply { status, headers, bytes }
    }

    async fn post(&self, uri: &str, key: Option<&str>, event: Value) -> Reply {
        self.call(
            Method::POST,
            uri,
            key,
            Some(("application/json", event.to_string().into_bytes())),
        )
        .await
    }

    async fn get(&self, uri: &str, key: Option<&str>) -> Reply {
        self.call(Method::GET, uri, key, None).await
    }

    /// Wait until everything acknowledged in `log` is searchable.
    fn settle(&self, log: &str) {
        self.app.trail(log).unwrap().sync_index().unwrap();
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.bytes)))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// Assert a problem document with this status and type, returning it.
    fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", String::from_utf8_lossy(&self.bytes));
        assert_eq!(self.content_type(), "application/problem+json");
        let p = self.json();
        assert_eq!(p["type"], format!("urn:sealtrail:problem:{kind}"), "{p}");
        assert_eq!(p["status"], status);
        assert!(!p["detail"].as_str().unwrap().is_empty());
        p
    }
}

fn event(tenant: Option<&str>) -> Value {
    let mut e =
        json!({"action": "invoice.paid", "actor": {"id": "u-1"}, "targets": [{"type": "invoice", "id": "INV-1"}]});
    if let Some(t) = tenant {
        e["tenant"] = json!(t);
    }
    e
}

const EVENTS: &str = "/api/v1/logs/default/events";

#[tokio::test]
async fn scopes_and_tenants_decide_who_may_do_what() {
    let h = Harness::new(|_| {});
    let ingest = h.key(Scope::Ingest, None);
    let read = h.key(Scope::Read, None);
    let admin = h.key(Scope::Admin, None);
    let ingest_acme = h.key(Scope::Ingest, Some("acme"));
    let read_acme = h.key(Scope::Read, Some("acme"));
    let revoked = h.key(Scope::Admin, None);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    h.app
        .meta
        .revoke_key(&revoked_id, &now_text(), |k| {
            key_event(json!({"id": "test", "type": "user"}), "api_key.revoked", k)
        })
        .unwrap();
    h.app.forget_keys();

    // Writing: (key, tenant of the event, expected status).
    let writes: &[(Option<&str>, Option<&str>, u16)] = &[
        (None, None, 401),
        (Some("stk_0000000000000000_00"), None, 401),
        (Some(revoked.as_str()), None, 401),
        (Some(read.as_str()), None, 403),
        (Some(ingest.as_str()), None, 201),
        (Some(admin.as_str()), Some("globex"), 201),
        (Some(ingest_acme.as_str()), Some("acme"), 201),
        (Some(ingest_acme.as_str()), Some("globex"), 403),
        (Some(ingest_acme.as_str()), None, 403),
        (Some(read_acme.as_str()), Some("acme"), 403),
    ];
    for (i, (key, tenant, expected)) in writes.iter().enumerate() {
        let r = h.post(EVENTS, *key, event(*tenant)).await;
        assert_eq!(
            r.status.as_u16(),
            *expected,
            "write case {i}: {}",
            String::from_utf8_lossy(&r.bytes)
        );
        if *expected >= 400 {
            let kind = if *expected == 401 { "unauthorized" } else { "forbidden" };
            r.problem(*expected, kind);
        }
        if *expected == 401 {
            assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        }
    }
    // Nobody writes the system log, not even admin.
    h.post("/api/v1/logs/system/events", Some(&admin), event(None))
        .await
        .problem(403, "forbidden");
    h.settle("default");

    // Reading: (key, query, expected status, expected number of events).
    let reads: &[(Option<&str>, &str, u16, usize)] = &[
        (None, "", 401, 0),
        (Some(ingest.as_str()), "", 403, 0),
        (Some(read.as_str()), "", 200, 3),
        (Some(admin.as_str()), "", 200, 3),
        (Some(read_acme.as_str()), "", 200, 1),
        (Some(read_acme.as_str()), "?tenant=acme", 200, 1),
        (Some(read_acme.as_str()), "?tenant=globex", 403, 0),
        (Some(read.as_str()), "?tenant=globex", 200, 1),
    ];
    for (i, (key, query, expected, n)) in reads.iter().enumerate() {
        let r = h.get(&format!("{EVENTS}{query}"), *key).await;
        assert_eq!(
            r.status.as_u16(),
            *expected,
            "read case {i}: {}",
            String::from_utf8_lossy(&r.bytes)
        );
        if *expected == 200 {
            assert_eq!(r.json()["events"].as_array().unwrap().len(), *n, "read case {i}");
        }
    }

    // The system log: admin only.
    h.get("/api/v1/logs/system/events", Some(&read))
        .await
        .problem(403, "forbidden");
    assert_eq!(h.get("/api/v1/logs/system/events", Some(&admin)).await.status, 200);

    // Keys: admin only.
    let body = json!({"scope": "read", "name": "n"}).to_string().into_bytes();
    for (key, expected) in [(read.as_str(), 403), (ingest.as_str(), 403), (admin.as_str(), 201)] {
        let r = h
            .call(
                Method::POST,
                "/api/v1/keys",
                Some(key),
                Some(("application/json", body.clone())),
            )
            .await;
        assert_eq!(r.status.as_u16(), expected, "{}", String::from_utf8_lossy(&r.bytes));
    }
    assert_eq!(h.get("/api/v1/keys", Some(&read)).await.status, 403);

    // Tiles are public by default, but a tenant key sees only its own log.
    assert_eq!(h.get("/logs/default/checkpoint", None).await.status, 200);
    h.get("/logs/default/checkpoint", Some(&read_acme))
        .await
        .problem(403, "forbidden");
    h.get("/logs/system/checkpoint", None)
        .await
        .problem(401, "unauthorized");
}

#[tokio::test]
async fn private_tiles_need_a_read_key() {
    let h = Harness::new(|c| c.tiles.public = false);
    let read = h.key(Scope::Read, None);
    let ingest = h.key(Scope::Ingest, None);
    h.get("/logs/default/checkpoint", None)
        .await
        .problem(401, "unauthorized");
    h.get("/logs/default/checkpoint", Some(&ingest))
        .await
        .problem(403, "forbidden");
    let r = h.get("/logs/default/checkpoint", Some(&read)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/plain; charset=utf-8");
    assert!(r
        .headers
        .get(header::CACHE_CONTROL)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("max-age=2"));
}

#[tokio::test]
async fn bad_bodies_get_precise_problems() {
    let h = Harness::new(|c| {
        c.limits.max_body_bytes = 4096;
        c.limits.max_batch_events = 3;
    });
    let k = h.key(Scope::Ingest, None);
    let key = Some(k.as_str());

    // Not JSON: where it stops being JSON.
    let p = h
        .call(
            Method::POST,
            EVENTS,
            key,
            Some(("application/json", b"{\"action\":\n  \"x\",,}".to_vec())),
        )
        .await
        .problem(400, "invalid-json");
    assert_eq!((p["line"].as_u64(), p["column"].as_u64()), (Some(2), Some(7)), "{p}");

    // Wrong types: every field path.
    let p = h
        .post(
            EVENTS,
            key,
            json!({"action": 7, "actor": {"id": true}, "duration_ms": -1}),
        )
        .await
        .problem(422, "invalid-event");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["action", "actor.id", "duration_ms"], "{p}");

    // Missing the one required field; unknown fields.
    let p = h
        .post(EVENTS, key, json!({"actr": "x"}))
        .await
        .problem(422, "invalid-event");
    assert!(p["detail"].as_str().unwrap().contains("action"), "{p}");

    // Too large.
    let big = json!({"action": "a.b", "message": "x".repeat(5000)});
    let p = h.post(EVENTS, key, big).await.problem(413, "body-too-large");
    assert!(p["detail"].as_str().unwrap().contains("4096"), "{p}");

    // Wrong or missing content type.
    h.call(
        Method::POST,
        EVENTS,
        key,
        Some(("text/plain", event(None).to_string().into_bytes())),
    )
    .await
    .problem(415, "unsupported-media-type");
    h.call(Method::POST, EVENTS, key, None)
        .await
        .problem(415, "unsupported-media-type");
    h.call(
        Method::POST,
        EVENTS,
        key,
        Some(("application/x-ndjson", event(None).to_string().into_bytes())),
    )
    .await
    .problem(415, "unsupported-media-type");

    // Batches: not an array; too many; a bad line in NDJSON.
    let batch = "/api/v1/logs/default/events/batch";
    h.call(
        Method::POST,
        batch,
        key,
        Some(("application/json", b"{\"action\":\"a\"}".to_vec())),
    )
    .await
    .problem(400, "invalid-json");
    let four = json!([event(None), event(None), event(None), event(None)])
        .to_string()
        .into_bytes();
    h.call(Method::POST, batch, key, Some(("application/json", four)))
        .await
        .problem(413, "batch-too-large");
    let ndjson = format!("{}\n\n{{\"action\": 3}}\nnot json\n", event(None));
    let r = h
        .call(
            Method::POST,
            batch,
            key,
            Some(("application/x-ndjson", ndjson.clone().into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let b = r.json();
    assert_eq!((b["appended"].as_u64(), b["rejected"].as_u64()), (Some(1), Some(2)));
    let items = b["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "stored");
    assert_eq!(items[1]["line"], 3);
    assert_eq!(items[1]["errors"][0]["field"], "action");
    assert_eq!(items[2]["line"], 4);
    assert_eq!(items[2]["status"], "rejected");

    // Atomic: nothing stored, each refusal named by position and line.
    let size_before = h.app.trail("default").unwrap().log().size();
    let p = h
        .call(
            Method::POST,
            &format!("{batch}?atomic=true"),
            key,
            Some(("application/x-ndjson", ndjson.into_bytes())),
        )
        .await
        .problem(422, "invalid-event");
    let at: Vec<(u64, u64)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["position"].as_u64().unwrap(), e["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(at, [(1, 3), (2, 4)], "{p}");
    assert_eq!(h.app.trail("default").unwrap().log().size(), size_before);

    // Bad query parameters and paths.
    let r = h.key(Scope::Read, None);
    h.get(&format!("{EVENTS}?limit=0"), Some(&r))
        .await
        .problem(400, "invalid-query");
    h.get(&format!("{EVENTS}?since=yesterday-ish"), Some(&r))
        .await
        .problem(400, "invalid-query");
    h.get(&format!("{EVENTS}?colour=red"), Some(&r))
        .await
        .problem(400, "invalid-query");
    h.get("/api/v1/logs/default/receipts/minus-one", Some(&r))
        .await
        .problem(400, "invalid-path");
    h.get("/api/v1/logs/nope/events", Some(&r))
        .await
        .problem(404, "not-found");
    h.get("/api/v1/nothing-here", Some(&r)).await.problem(404, "not-found");
    let p = h
        .call(Method::DELETE, EVENTS, Some(&r), None)
        .await
        .problem(405, "method-not-allowed");
    assert!(p["detail"].as_str().is_some());
}

#[tokio::test]
async fn an_acknowledgement_carries_a_receipt_that_verifies() {
    let h = Harness::new(|_| {});
    let k = h.key(Scope::Admin, None);
    for _ in 0..5 {
        assert_eq!(h.post(EVENTS, Some(&k), event(None)).await.status, 201);
    }
    let r = h.post(EVENTS, Some(&k), event(None)).await;
    assert_eq!(r.status, 201);
    let stored = r.json();
    assert_eq!(stored["index"], 5);
    assert_eq!(stored["tree_size"], 6);
    let receipt = Receipt::parse(stored["receipt"].as_str().unwrap().as_bytes()).unwrap();
    let trail = h.app.trail("default").unwrap();
    let entry = trail.log().entry(5).unwrap();
    let checkpoint = receipt.verify(&leaf_hash(&entry), trail.log().verifier()).unwrap();
    assert_eq!(checkpoint.size, 6);
    assert_eq!(
        stored["checkpoint"].as_str().unwrap().as_bytes(),
        receipt.checkpoint.as_slice()
    );

    // A later receipt for the same entry verifies against a newer checkpoint.
    h.post(EVENTS, Some(&k), event(None)).await;
    let later = h.get("/api/v1/logs/default/receipts/5", Some(&k)).await;
    assert_eq!(later.content_type(), "text/plain; charset=utf-8");
    let later = Receipt::parse(&later.bytes).unwrap();
    assert_eq!(
        later.verify(&leaf_hash(&entry), trail.log().verifier()).unwrap().size,
        7
    );
    h.get("/api/v1/logs/default/receipts/7", Some(&k))
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn a_resend_with_the_same_idempotency_key_returns_the_original() {
    let h = Harness::new(|_| {});
    let k = h.key(Scope::Ingest, None);
    let mut e = event(None);
    e["idempotency_key"] = json!("order-77");
    let first = h.post(EVENTS, Some(&k), e.clone()).await;
    assert_eq!(first.status, 201);
    let again = h.post(EVENTS, Some(&k), e).await;
    assert_eq!(again.status, 200);
    let (a, b) = (first.json(), again.json());
    assert_eq!(
        (a["id"].clone(), a["index"].clone()),
        (b["id"].clone(), b["index"].clone())
    );
    assert_eq!(b["duplicate"], true);
    assert_eq!(h.app.trail("default").unwrap().log().size(), 1);
}

#[tokio::test]
async fn every_read_and_key_change_is_recorded_in_the_system_log() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let read = h.key(Scope::Read, None);
    h.post(EVENTS, Some(&admin), event(None)).await;
    h.settle("default");
    let id = h.get(EVENTS, Some(&read)).await.json()["events"][0]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.get(&format!("{EVENTS}/{id}"), Some(&read)).await.status, 200);
    assert_eq!(
        h.get("/api/v1/logs/default/stats?by=day", Some(&read)).await.status,
        200
    );
    let export = h.get("/api/v1/logs/default/export?format=csv", Some(&read)).await;
    assert_eq!(export.status, 200);
    assert_eq!(export.content_type(), "text/csv; charset=utf-8");
    assert_eq!(String::from_utf8_lossy(&export.bytes).lines().count(), 2);
    let created = h
        .call(
            Method::POST,
            "/api/v1/keys",
            Some(&admin),
            Some((
                "application/json",
                br#"{"scope":"ingest","tenant":"acme","name":"etl"}"#.to_vec(),
            )),
        )
        .await;
    assert_eq!(created.status, 201);
    let new_id = created.json()["key"]["id"].as_str().unwrap().to_string();
    assert!(created.json()["secret"].as_str().unwrap().starts_with("stk_"));
    h.settle("system");

    let read_id = read.split('_').nth(1).unwrap();
    let system = h
        .get("/api/v1/logs/system/events?order=oldest&limit=100", Some(&admin))
        .await
        .json();
    let seen: Vec<(String, String)> = system["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"]["action"].as_str().unwrap().to_string(),
                e["event"]["actor"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let by_reader = |action: &str| seen.contains(&(action.to_string(), format!("key:{read_id}")));
    assert!(by_reader("trail.queried"), "{seen:?}");
    assert!(by_reader("trail.read"), "{seen:?}");
    assert!(by_reader("trail.exported"), "{seen:?}");
    let key_created: Vec<&Value> = system["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["action"] == "api_key.created" && e["event"]["targets"][0]["id"] == new_id.as_str())
        .collect();
    assert_eq!(key_created.len(), 1, "{system}");
    assert_eq!(key_created[0]["event"]["details"]["tenant"], "acme");
}

#[tokio::test]
async fn a_critically_full_disk_stops_writes_and_readiness() {
    // Thresholds of 0% make any disk "critically full".
    let h = Harness::new(|c| {
        c.health.disk_warning_percent = 0.0;
        c.health.disk_critical_percent = 0.0;
    });
    let k = h.key(Scope::Admin, None);
    let p = h.post(EVENTS, Some(&k), event(None)).await.problem(503, "unavailable");
    assert!(p["detail"].as_str().unwrap().contains("full"), "{p}");
    h.get("/readyz", None).await.problem(503, "unavailable");
    assert_eq!(h.app.trail("default").unwrap().log().size(), 0);
    let health = h.get("/api/v1/system/health", Some(&k)).await.json();
    assert_eq!(health["disk"]["status"], "critical");
    assert_eq!(health["status"], "critical");
    assert_eq!(h.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn each_key_is_held_to_its_rate() {
    let h = Harness::new(|c| {
        c.rate_limit.per_key_per_second = 1;
        c.rate_limit.burst = 2;
    });
    let a = h.key(Scope::Read, None);
    let b = h.key(Scope::Read, None);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(h.get("/api/v1/logs", Some(&a)).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let r = h.get("/api/v1/logs", Some(&a)).await;
    r.problem(429, "rate-limited");
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    // Another key has its own budget.
    assert_eq!(h.get("/api/v1/logs", Some(&b)).await.status, 200);
}

#[tokio::test]
async fn metrics_and_the_openapi_document_are_served() {
    let h = Harness::new(|_| {});
    let k = h.key(Scope::Ingest, None);
    h.post(EVENTS, Some(&k), event(None)).await;
    let m = h.get("/metrics", None).await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.bytes).unwrap();
    for name in [
        "sealtrail_events_ingested_total",
        "sealtrail_ingest_seconds_bucket",
        "sealtrail_fsync_seconds_bucket",
        "sealtrail_ingest_group_events_bucket",
        "sealtrail_http_responses_total",
        "sealtrail_log_entries",
        "sealtrail_log_bytes",
        "sealtrail_index_lag_entries",
        "sealtrail_checkpoint_age_seconds",
        "sealtrail_disk_used_ratio",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    let doc = h.get("/api/v1/openapi.json", None).await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/logs/{log}/events",
        "/api/v1/logs/{log}/events/batch",
        "/api/v1/logs/{log}/events/{id}",
        "/api/v1/logs/{log}/entities/{type}/{id}/history",
        "/api/v1/logs/{log}/receipts/{index}",
        "/api/v1/logs/{log}/proofs/consistency",
        "/api/v1/logs/{log}/export",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    let docs = h.get("/api/docs/", None).await;
    assert_eq!(docs.status, 200);
    assert!(String::from_utf8_lossy(&docs.bytes).contains("swagger"));
}

#[tokio::test]
async fn a_queued_system_event_the_log_refuses_is_kept_not_lost_and_blocks_nothing() {
    let h = Harness::new(|_| {});
    h.app.meta.queue_system_event("{\"not\": \"an event\"}").unwrap();
    h.key(Scope::Read, None);
    assert_eq!(h.app.drain_outbox().unwrap(), 2);
    assert!(h.app.meta.outbox(10).unwrap().is_empty());
    h.settle("system");
    let admin = h.key(Scope::Admin, None);
    h.app.drain_outbox().unwrap();
    h.settle("system");
    let system = h
        .get("/api/v1/logs/system/events?order=oldest", Some(&admin))
        .await
        .json();
    let events = system["events"].as_array().unwrap();
    assert_eq!(events[0]["event"]["action"], "system.outbox_refused", "{system}");
    assert!(events[0]["event"]["details"]["queued"]
        .as_str()
        .unwrap()
        .contains("an event"));
    assert_eq!(events[1]["event"]["action"], "api_key.created");
}

#[tokio::test]
async fn with_per_tenant_logs_the_tenant_picks_the_log() {
    let h = Harness::new(|c| c.logs.per_tenant = true);
    let k = h.key(Scope::Admin, None);
    let r = h.post("/api/v1/events", Some(&k), event(Some("acme"))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(r.json()["log"], "acme");
    let r = h.post("/api/v1/events", Some(&k), event(None)).await;
    assert_eq!(r.json()["log"], "default");
    assert_eq!(h.app.trail("acme").unwrap().log().size(), 1);
    assert_eq!(h.app.trail("default").unwrap().log().size(), 1);

    // A tenant that cannot be a log name, or the system log's name.
    for bad in ["Acme Corp", "system"] {
        let p = h
            .post("/api/v1/events", Some(&k), event(Some(bad)))
            .await
            .problem(422, "invalid-event");
        assert_eq!(p["errors"][0]["field"], "tenant", "{p}");
    }

    // A batch goes to one tenant's log; mixed tenants are refused by position.
    let batch = json!([event(Some("globex")), event(Some("globex"))])
        .to_string()
        .into_bytes();
    let r = h
        .call(
            Method::POST,
            "/api/v1/events/batch",
            Some(&k),
            Some(("application/json", batch)),
        )
        .await;
    assert_eq!(r.json()["log"], "globex");
    assert_eq!(r.json()["appended"], 2);
    let mixed = json!([event(Some("globex")), event(Some("acme")), event(None)])
        .to_string()
        .into_bytes();
    let p = h
        .call(
            Method::POST,
            "/api/v1/events/batch",
            Some(&k),
            Some(("application/json", mixed)),
        )
        .await
        .problem(422, "mixed-tenants");
    let positions: Vec<u64> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2]);

    // A read key cannot create logs by ingesting.
    let read = h.key(Scope::Read, None);
    h.post("/api/v1/events", Some(&read), event(Some("initech")))
        .await
        .problem(403, "forbidden");
    assert!(!h.app.data.log_dir("initech").exists());
}

#[tokio::test]
async fn without_per_tenant_logs_everything_goes_to_the_default_log() {
    let h = Harness::new(|_| {});
    let k = h.key(Scope::Ingest, None);
    let r = h.post("/api/v1/events", Some(&k), event(Some("acme"))).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["log"], "default");
    assert!(!h.app.data.log_dir("acme").exists());
}

#[tokio::test]
async fn alert_configuration_needs_admin_keys_of_every_tenant_and_never_shows_secrets() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let read = h.key(Scope::Read, None);
    let tenant_admin = h.key(Scope::Admin, Some("acme"));
    let json_body = |v: Value| Some(("application/json", v.to_string().into_bytes()));
    let channel = json!({"name": "hook", "type": "webhook", "url": "https://example.com/h", "secret": "s3cret"});
    let rule =
        json!({"name": "r1", "condition": {"type": "any"}, "filter": {"action": "invoice.*"}, "channels": ["hook"]});

    // Who may change and read.
    h.call(Method::POST, "/api/v1/channels", None, json_body(channel.clone()))
        .await
        .problem(401, "unauthorized");
    h.call(
        Method::POST,
        "/api/v1/channels",
        Some(&read),
        json_body(channel.clone()),
    )
    .await
    .problem(403, "forbidden");
    h.call(
        Method::POST,
        "/api/v1/channels",
        Some(&tenant_admin),
        json_body(channel.clone()),
    )
    .await
    .problem(403, "forbidden");
    h.get("/api/v1/channels", Some(&read)).await.problem(403, "forbidden");
    let created = h
        .call(
            Method::POST,
            "/api/v1/channels",
            Some(&admin),
            json_body(channel.clone()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["secret"], "********");
    assert_eq!(created.json()["origin"], "api");
    h.call(
        Method::POST,
        "/api/v1/channels",
        Some(&admin),
        json_body(channel.clone()),
    )
    .await
    .problem(409, "exists");

    // A rule: created by admin, readable with a read key.
    let r = h
        .call(
            Method::POST,
            "/api/v1/alert-rules",
            Some(&admin),
            json_body(rule.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.bytes));
    let listed = h.get("/api/v1/alert-rules", Some(&read)).await;
    assert_eq!(listed.json()[0]["name"], "r1");
    assert_eq!(listed.json()[0]["condition"], json!({"type": "any"}));
    h.get("/api/v1/alert-rules/nope", Some(&read))
        .await
        .problem(404, "not-found");

    // Sending the listed channel back keeps its secret.
    let mut listed = h.get("/api/v1/channels/hook", Some(&admin)).await.json();
    for k in ["origin", "created_at", "updated_at"] {
        listed.as_object_mut().unwrap().remove(k);
    }
    listed["url"] = json!("https://example.com/h2");
    let put = h
        .call(Method::PUT, "/api/v1/channels/hook", Some(&admin), json_body(listed))
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let stored = sealtrail_alert::store::get::<sealtrail_alert::ChannelSpec>(&h.app.meta.lock(), "hook")
        .unwrap()
        .unwrap();
    let sealtrail_alert::ChannelKind::Webhook { url, secret, .. } = stored.spec.kind else {
        panic!("not a webhook")
    };
    assert_eq!(
        (url.as_str(), secret.as_deref()),
        ("https://example.com/h2", Some("s3cret"))
    );

    // Bad bodies name what is wrong.
    let p = h
        .call(
            Method::POST,
            "/api/v1/alert-rules",
            Some(&admin),
            Some(("application/json", b"{\"name\": ".to_vec())),
        )
        .await
        .problem(400, "invalid-json");
    assert_eq!(p["line"], 1, "{p}");
    let p = h
        .call(
            Method::POST,
            "/api/v1/alert-rules",
            Some(&admin),
            json_body(json!({"name": "r2", "condition": {"type": "any"}, "group_by": ["actor.ipaddr"]})),
        )
        .await
        .problem(422, "invalid-body");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("group_by[0]: unknown field \"actor.ipaddr\""),
        "{p}"
    );
    let p = h
        .call(
            Method::POST,
            "/api/v1/alert-rules",
            Some(&admin),
            json_body(json!({"name": "r3", "condition": {"type": "any"}, "channels": ["missing"]})),
        )
        .await
        .problem(422, "invalid-body");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("channels[0]: no channel named \"missing\""),
        "{p}"
    );
    let p = h
        .call(
            Method::PUT,
            "/api/v1/alert-rules/other",
            Some(&admin),
            json_body(rule.clone()),
        )
        .await
        .problem(422, "invalid-body");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("differs from the name in the path"),
        "{p}"
    );
    h.call(Method::DELETE, "/api/v1/channels/hook", Some(&admin), None)
        .await
        .problem(409, "in-use");
    let past = json!({"until": "2020-01-01T00:00:00Z"});
    h.call(Method::POST, "/api/v1/silences", Some(&admin), json_body(past))
        .await
        .problem(422, "invalid-body");
    h.get("/api/v1/notifications?status=lost", Some(&read))
        .await
        .problem(422, "invalid-body");
    h.get("/api/v1/alerts?status=maybe", Some(&read))
        .await
        .problem(400, "invalid-query");

    // Deleting, in order; every change is queued for the system log.
    let d = h
        .call(Method::DELETE, "/api/v1/alert-rules/r1", Some(&admin), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let d = h
        .call(Method::DELETE, "/api/v1/channels/hook", Some(&admin), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let queued: Vec<String> = h
        .app
        .meta
        .outbox(100)
        .unwrap()
        .into_iter()
        .filter_map(|(_, e)| serde_json::from_str::<Value>(&e).ok())
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .filter(|a| a.starts_with("alert_"))
        .collect();
    assert_eq!(
        queued,
        [
            "alert_channel.created",
            "alert_rule.created",
            "alert_channel.updated",
            "alert_rule.deleted",
            "alert_channel.deleted"
        ]
    );
    // Secrets never reach the system log.
    let all: Vec<String> = h.app.meta.outbox(100).unwrap().into_iter().map(|(_, e)| e).collect();
    assert!(all.iter().all(|e| !e.contains("s3cret")));
}
