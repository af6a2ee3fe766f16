//! The router driven without a socket: the auth matrix (scopes × tenants),
//! bad bodies of every kind with their problem documents, receipts,
//! idempotency, audited reads, refusals when the disk is full, and limits.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use axum::Router;
use sealtrail_merkle::{leaf_hash, Receipt};
use sealtrail_meta::Scope;
use sealtrail_meta::{key_event, now_text};
use serde_json::{json, Value};

mod support;

use support::{Harness, ProblemChecks, Reply};

impl Reply {
    /// Assert a problem document with this status and type, returning it.
    fn problem(&self, status: u16, kind: &str) -> Value {
        let checks = ProblemChecks {
            status_field: true,
            detail: true,
        };
        self.problem_doc(status, kind, checks)
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
    let stored = sealtrail_alert::store::get_channel(&h.app.meta.lock(), "hook", || h.app.meta.secrets())
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

// --- alert channels: destinations, bounds, credentials at rest ----------

/// A real HTTP receiver on loopback: records each request, answers with
/// `status` and a body that must never come back to the caller, and
/// checks the HMAC signature when it is given the secret.
/// A request as received: headers and body bytes.
type Hook = (axum::http::HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct HookReceiver {
    seen: Arc<std::sync::Mutex<Vec<Hook>>>,
    status: u16,
}

impl HookReceiver {
    async fn start(status: u16) -> (HookReceiver, u16) {
        let receiver = HookReceiver {
            status,
            ..HookReceiver::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = receiver.clone();
        let app = Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                state.seen.lock().unwrap().push((headers, body.to_vec()));
                (
                    StatusCode::from_u16(state.status).unwrap(),
                    "internal detail: redis_version:7.2.4",
                )
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, port)
    }

    fn seen(&self) -> Vec<Hook> {
        self.seen.lock().unwrap().clone()
    }
}

fn json_bytes(v: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

#[tokio::test]
async fn channels_cannot_reach_forbidden_networks_unless_allowed() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let (receiver, port) = HookReceiver::start(200).await;
    // IP literals are refused when the channel is created, naming `url`.
    for (url, why) in [
        (format!("http://127.0.0.1:{port}/"), "127.0.0.1 is loopback"),
        (format!("http://[::1]:{port}/"), "::1 is loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "169.254.169.254 is link-local",
        ),
        ("http://10.1.2.3/".into(), "10.1.2.3 is private network"),
        (format!("http://2130706433:{port}/"), "127.0.0.1 is loopback"),
        ("http://127.0.0.1:6379/".into(), "127.0.0.1 is loopback"),
    ] {
        let body = json!({"name": "hook", "type": "webhook", "url": url});
        let p = h
            .call(Method::POST, "/api/v1/channels", Some(&admin), json_bytes(&body))
            .await
            .problem(422, "invalid-body");
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("url: {why}")), "{url}: {detail}");
        assert!(detail.contains("alerts.allowed_networks"), "{detail}");
    }
    // A name is checked when it is resolved: the test send fails, is
    // recorded, and nothing reaches the receiver.
    let body = json!({"name": "hook", "type": "slack", "url": format!("http://localhost:{port}/services/T/B/x")});
    let created = h
        .call(Method::POST, "/api/v1/channels", Some(&admin), json_bytes(&body))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let sent = h
        .call(
            Method::POST,
            "/api/v1/notify/test",
            Some(&admin),
            json_bytes(&json!({"channel": "hook"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK);
    let result = sent.json();
    assert_eq!(result["delivered"], false, "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(
        error.starts_with("refused destination: localhost is loopback"),
        "{error}"
    );
    assert!(receiver.seen().is_empty());
    let queued = h.app.meta.outbox(1000).unwrap();
    let recorded = queued.iter().find(|(_, e)| e.contains("alert_channel.tested")).unwrap();
    assert!(recorded.1.contains("refused destination"), "{}", recorded.1);
    // Channels stored before (or by a server allowing more) are checked
    // again at every send, IP literals included.
    for (i, url) in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://2130706433:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.1.2.3/".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("stored-{i}");
        let spec: sealtrail_alert::ChannelSpec =
            serde_json::from_value(json!({"name": name, "type": "webhook", "url": url})).unwrap();
        sealtrail_alert::store::put_channel(
            &h.app.meta.lock(),
            &spec,
            &h.app.meta.secrets().unwrap(),
            sealtrail_alert::store::Origin::Api,
            "t",
        )
        .unwrap();
        let result = h
            .call(
                Method::POST,
                "/api/v1/notify/test",
                Some(&admin),
                json_bytes(&json!({"channel": name})),
            )
            .await
            .json();
        assert_eq!(result["delivered"], false, "{url}: {result}");
        let error = result["error"].as_str().unwrap();
        assert!(error.starts_with("refused destination: "), "{url}: {error}");
    }
    assert!(receiver.seen().is_empty());
    let metrics = String::from_utf8(h.get("/metrics", None).await.bytes).unwrap();
    for via in ["channel", "test"] {
        let line = format!("sealtrail_notification_destinations_refused_total{{via=\"{via}\"}}");
        assert!(metrics.contains(&line), "/metrics lacks {line}");
    }

    // Allowed, the same loopback receiver gets the request.
    let h = Harness::new(|c| c.alerts.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()]);
    let admin = h.key(Scope::Admin, None);
    for (name, url) in [
        ("by-address", format!("http://127.0.0.1:{port}/a")),
        ("by-name", format!("http://localhost:{port}/b")),
    ] {
        let body = json!({"name": name, "type": "webhook", "url": url});
        let created = h
            .call(Method::POST, "/api/v1/channels", Some(&admin), json_bytes(&body))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json());
        let result = h
            .call(
                Method::POST,
                "/api/v1/notify/test",
                Some(&admin),
                json_bytes(&json!({"channel": name})),
            )
            .await
            .json();
        assert_eq!(result["delivered"], true, "{result}");
    }
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn a_failed_test_send_keeps_only_the_status_line() {
    let h = Harness::new(|c| c.alerts.allowed_networks = vec!["127.0.0.1".parse().unwrap()]);
    let admin = h.key(Scope::Admin, None);
    let (receiver, port) = HookReceiver::start(500).await;
    let body = json!({"name": "hook", "type": "webhook", "url": format!("http://127.0.0.1:{port}/")});
    h.call(Method::POST, "/api/v1/channels", Some(&admin), json_bytes(&body))
        .await;
    let result = h
        .call(
            Method::POST,
            "/api/v1/notify/test",
            Some(&admin),
            json_bytes(&json!({"channel": "hook"})),
        )
        .await
        .json();
    assert_eq!(receiver.seen().len(), 1);
    assert_eq!(result["delivered"], false);
    assert_eq!(result["status"], 500);
    assert_eq!(result["error"], "HTTP 500 Internal Server Error");
    assert!(!result.to_string().contains("redis_version"), "{result}");
}

#[tokio::test]
async fn admin_inputs_are_bounded_and_refusals_name_the_field() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let refused = |p: Value, starts: &str| {
        let detail = p["detail"].as_str().unwrap().to_string();
        assert!(detail.starts_with(starts), "{detail}");
        assert!(detail.len() < 500, "the value is echoed: {} bytes", detail.len());
    };
    let post = |uri: &'static str, body: Value| {
        let h = &h;
        let admin = admin.clone();
        async move { h.call(Method::POST, uri, Some(&admin), json_bytes(&body)).await }
    };
    // API keys: name and tenant, at the bound and past it.
    let ok = post(
        "/api/v1/keys",
        json!({"scope": "read", "name": "n".repeat(256), "tenant": "t".repeat(128)}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    refused(
        post("/api/v1/keys", json!({"scope": "read", "name": "n".repeat(100_000)}))
            .await
            .problem(422, "invalid-body"),
        "name: 100,000 characters; the limit is 256",
    );
    refused(
        post("/api/v1/keys", json!({"scope": "read", "tenant": "t".repeat(5_000)}))
            .await
            .problem(422, "invalid-body"),
        "tenant: 5,000 characters; the limit is 128",
    );
    refused(
        post("/api/v1/keys", json!({"scope": "read", "tenant": "t".repeat(129)}))
            .await
            .problem(422, "invalid-body"),
        "tenant: 129 characters; the limit is 128",
    );
    // Channels.
    let long_url = format!("https://example.com/{}", "a".repeat(40_000));
    refused(
        post(
            "/api/v1/channels",
            json!({"name": "c", "type": "slack", "url": long_url}),
        )
        .await
        .problem(422, "invalid-body"),
        "url: 40,020 characters; the limit is 1,024",
    );
    let at_bound = format!("https://example.com/{}", "a".repeat(1024 - 20));
    let ok = post(
        "/api/v1/channels",
        json!({"name": "c", "type": "slack", "url": at_bound}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.json());
    refused(
        post(
            "/api/v1/channels",
            json!({"name": "w", "type": "webhook", "url": "https://example.com/", "headers": {"X-Token": "v".repeat(1025)}}),
        )
        .await
        .problem(422, "invalid-body"),
        "headers.X-Token: 1,025 characters; the limit is 1,024",
    );
    refused(
        post(
            "/api/v1/channels",
            json!({"name": "w", "type": "webhook", "url": "https://example.com/", "body_template": "x".repeat(16_385)}),
        )
        .await
        .problem(422, "invalid-body"),
        "body_template: 16,385 characters; the limit is 16,384",
    );
    refused(
        post(
            "/api/v1/channels",
            json!({"name": "m", "type": "email", "host": "smtp.example.org", "from": "a@example.org",
                   "to": (0..65).map(|i| format!("u{i}@example.org")).collect::<Vec<_>>()}),
        )
        .await
        .problem(422, "invalid-body"),
        "to: 65 items; the limit is 64",
    );
    refused(
        post(
            "/api/v1/channels",
            json!({"name": "n".repeat(40_000), "type": "slack", "url": "https://example.com/"}),
        )
        .await
        .problem(422, "invalid-body"),
        "name: 40,000 characters; the limit is 100",
    );
    // Rules.
    refused(
        post(
            "/api/v1/alert-rules",
            json!({"name": "r", "condition": {"type": "any"}, "filter": {"actor": "u".repeat(5_000)}}),
        )
        .await
        .problem(422, "invalid-body"),
        "filter.actor: 5,000 characters; the limit is 256",
    );
    refused(
        post(
            "/api/v1/alert-rules",
            json!({"name": "r", "condition": {"type": "any"}, "filter": {"tenant": "t".repeat(129)}}),
        )
        .await
        .problem(422, "invalid-body"),
        "filter.tenant: 129 characters; the limit is 128",
    );
    refused(
        post(
            "/api/v1/alert-rules",
            json!({"name": "r", "condition": {"type": "any"}, "description": "d".repeat(4_097)}),
        )
        .await
        .problem(422, "invalid-body"),
        "description: 4,097 characters; the limit is 4,096",
    );
    refused(
        post(
            "/api/v1/alert-rules",
            json!({"name": "r", "condition": {"type": "new_value", "field": format!("details.{}", "k".repeat(200))}}),
        )
        .await
        .problem(422, "invalid-body"),
        "condition.field: 208 characters; the limit is 128",
    );
    // Silences.
    let until = "2999-01-01T00:00:00Z";
    refused(
        post(
            "/api/v1/silences",
            json!({"until": until, "comment": "c".repeat(4_097)}),
        )
        .await
        .problem(422, "invalid-body"),
        "comment: 4,097 characters; the limit is 4,096",
    );
    refused(
        post(
            "/api/v1/silences",
            json!({"until": until, "group": {"actor.id": "v".repeat(5_000)}}),
        )
        .await
        .problem(422, "invalid-body"),
        "group.actor.id: 5,000 characters; the limit is 4,096",
    );
    let ok = post(
        "/api/v1/silences",
        json!({"until": until, "comment": "c".repeat(4_096)}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

#[tokio::test]
async fn channel_credentials_are_encrypted_in_meta_db_and_still_sign() {
    use hmac::{Hmac, KeyInit, Mac};
    let h = Harness::new(|c| c.alerts.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()]);
    let admin = h.key(Scope::Admin, None);
    let (receiver, port) = HookReceiver::start(204).await;
    const SECRET: &str = "whsec-at-rest-5b2c91";
    const TOKEN: &str = "bearer-token-0f3e77";
    let body = json!({"name": "hook", "type": "webhook", "url": format!("http://127.0.0.1:{port}/hook?key=url-token-a9"),
                      "secret": SECRET, "headers": {"Authorization": TOKEN}});
    let created = h
        .call(Method::POST, "/api/v1/channels", Some(&admin), json_bytes(&body))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let shown = h.get("/api/v1/channels/hook", Some(&admin)).await.json();
    assert_eq!(shown["secret"], "********");
    assert_eq!(shown["headers"]["Authorization"], "********");
    assert!(!shown.to_string().contains("url-token-a9"), "{shown}");

    // Every file of the database, as bytes on disk.
    let data = h.app.config.data_dir.clone();
    let on_disk = || {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            bytes.extend(std::fs::read(data.join(format!("meta.db{suffix}"))).unwrap_or_default());
        }
        bytes
    };
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    let bytes = on_disk();
    assert!(contains(&bytes, "\"webhook\""), "the channel is not in meta.db at all");
    for clear in [SECRET, TOKEN, "url-token-a9"] {
        assert!(!contains(&bytes, clear), "{clear} is in meta.db in clear");
    }
    let key_mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.join("secrets.key")).unwrap().permissions());
    assert_eq!(key_mode & 0o777, 0o600);

    // The receiver verifies the signature made with the stored secret.
    let result = h
        .call(
            Method::POST,
            "/api/v1/notify/test",
            Some(&admin),
            json_bytes(&json!({"channel": "hook"})),
        )
        .await
        .json();
    assert_eq!(result["delivered"], true, "{result}");
    let seen = receiver.seen();
    let (headers, body) = &seen[0];
    assert_eq!(headers["authorization"], TOKEN);
    let ts = headers["sealtrail-timestamp"].to_str().unwrap();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(headers["sealtrail-signature"], format!("v1={expected}").as_str());
}

#[test]
fn meta_db_and_its_journal_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let meta = sealtrail_meta::Meta::open(dir.path()).unwrap();
    meta.create_key(Scope::Admin, None, "k", &now_text(), |_| "{}".into())
        .unwrap();
    meta.queue_system_event("{}").unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("meta.db"))
        .collect();
    assert!(files.len() >= 3, "meta.db, -wal and -shm while open: {files:?}");
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    // A database made group- and world-readable before is made private.
    drop(meta);
    std::fs::set_permissions(dir.path().join("meta.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let _meta = sealtrail_meta::Meta::open(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join("meta.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn channels_written_in_clear_are_read_and_encrypted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    const SECRET: &str = "whsec-old-clear-77aa";
    {
        // A database as an earlier version wrote it: the spec in clear.
        let meta = sealtrail_meta::Meta::open(dir.path()).unwrap();
        let spec = json!({"name": "old", "type": "webhook", "url": "https://example.com/h", "secret": SECRET});
        meta.lock()
            .execute(
                "INSERT INTO alert_channels (name, spec, origin, created_at, updated_at) VALUES ('old', ?1, 'api', 't', 't')",
                [spec.to_string()],
            )
            .unwrap();
    }
    let db = dir.path().join("meta.db");
    let contains = |needle: &str| {
        let bytes = std::fs::read(&db).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    };
    assert!(contains(SECRET), "the fixture is not in clear");
    let meta = sealtrail_meta::Meta::open(dir.path()).unwrap();
    let stored = sealtrail_alert::store::get_channel(&meta.lock(), "old", || meta.secrets())
        .unwrap()
        .unwrap();
    let sealtrail_alert::ChannelKind::Webhook { secret, .. } = &stored.spec.kind else {
        panic!("not a webhook")
    };
    assert_eq!(secret.as_deref(), Some(SECRET));
    assert_eq!(stored.created_at, "t");
    drop(meta);
    assert!(!contains(SECRET), "still in clear after the database was opened");
    for suffix in ["-wal", "-shm"] {
        let other = std::fs::read(dir.path().join(format!("meta.db{suffix}"))).unwrap_or_default();
        assert!(
            !other.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "in meta.db{suffix}"
        );
    }
    // Without its key the database still opens; the channel says why it
    // cannot be used.
    std::fs::remove_file(dir.path().join("secrets.key")).unwrap();
    let meta = sealtrail_meta::Meta::open(dir.path()).unwrap();
    let e = sealtrail_alert::store::get_channel(&meta.lock(), "old", || meta.secrets()).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot be decrypted with this data directory's secrets key"),
        "{e}"
    );
}

#[tokio::test]
async fn a_key_used_for_ingest_has_its_last_use_recorded_and_an_unused_one_none() {
    let h = Harness::new(|_| {});
    let sender = h.key(Scope::Ingest, None);
    let spare = h.key(Scope::Ingest, None);
    let id = |k: &str| k.split('_').nth(1).unwrap().to_string();
    let before = sealtrail_event::Timestamp::now().as_second();
    for _ in 0..3 {
        assert_eq!(
            h.post(EVENTS, Some(sender.as_str()), event(None)).await.status.as_u16(),
            201
        );
    }
    // Noted on the request path, written only off it.
    assert!(h.app.meta.key_last_use().unwrap().is_empty());
    h.app.record_key_uses();
    let after = sealtrail_event::Timestamp::now().as_second();
    let uses = h.app.meta.key_last_use().unwrap();
    assert_eq!(uses.len(), 1, "{uses:?}");
    let at = uses[&id(&sender)];
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    assert!(!uses.contains_key(&id(&spare)));
}

/// `sealtrail_key_reload_failures_total` in `/metrics` (absent before the
/// first failure in a server without the reload thread: 0).
fn reload_failures(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("sealtrail_key_reload_failures_total "))
        .map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_key_reload_is_counted_and_no_cached_key_is_trusted_until_one_succeeds() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let revoked = h.key(Scope::Admin, None);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    h.app.refresh_keys().unwrap();
    let health = "/api/v1/system/health";
    for key in [&admin, &revoked] {
        assert_eq!(h.get(health, Some(key)).await.status, 200);
    }
    let failures = reload_failures(&h.get("/metrics", Some(&admin)).await.text());

    // Another process (the CLI) revokes a key: until the next reload the
    // cache still holds it.
    let cli = sealtrail_meta::Meta::open(h.app.data.root()).unwrap();
    cli.revoke_key(&revoked_id, &now_text(), |k| {
        key_event(json!({"id": "cli", "type": "user"}), "api_key.revoked", k)
    })
    .unwrap();
    assert_eq!(h.get(health, Some(&revoked)).await.status, 200);

    // The reload fails: the table it joins is out of its reach, while a
    // single key's lookup (which reads only the keys' table for a key
    // without an owner) still works.
    let sql = rusqlite::Connection::open(h.app.meta.path()).unwrap();
    sql.execute_batch("ALTER TABLE users RENAME TO users_out_of_reach")
        .unwrap();
    assert!(h.app.refresh_keys().is_err());
    let metrics = h.get("/metrics", Some(&admin)).await.text();
    assert_eq!(reload_failures(&metrics), failures + 1.0);
    // No cached key is trusted: each is looked up in the database, so the
    // revoked one is refused and the live one still served.
    let r = h.get(health, Some(&revoked)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(h.get(health, Some(&admin)).await.status, 200);
    // Again on the next failed reload.
    assert!(h.app.refresh_keys().is_err());
    assert_eq!(h.get(health, Some(&revoked)).await.status, 401);
    let metrics = h.get("/metrics", Some(&admin)).await.text();
    assert_eq!(reload_failures(&metrics), failures + 2.0);

    // A reload that succeeds counts nothing and keeps the revocation.
    sql.execute_batch("ALTER TABLE users_out_of_reach RENAME TO users")
        .unwrap();
    h.app.refresh_keys().unwrap();
    assert_eq!(h.get(health, Some(&revoked)).await.status, 401);
    assert_eq!(h.get(health, Some(&admin)).await.status, 200);
    let metrics = h.get("/metrics", Some(&admin)).await.text();
    assert_eq!(reload_failures(&metrics), failures + 2.0);
}
