//! The router driven without a socket on what tenants may see of each
//! other (entry bundles, receipts, inclusion proofs), the bound on logs
//! that per-tenant routing creates, and request details: the
//! authorization scheme, batch framings, positions of bad JSON in a
//! batch, query parameters that cannot match, and the documentation UI.

#![allow(clippy::unwrap_used)]

use axum::http::Method;
use sealtrail_meta::Scope;
use serde_json::{json, Value};

mod support;

use support::{Harness, ProblemChecks, Reply};

impl Reply {
    /// Assert a problem document with this status and type, returning it.
    fn problem(&self, status: u16, kind: &str) -> Value {
        let checks = ProblemChecks {
            status_field: false,
            detail: true,
        };
        self.problem_doc(status, kind, checks)
    }
}

fn event(tenant: Option<&str>) -> Value {
    let mut e = json!({"action": "invoice.paid", "actor": {"id": "u-1"}});
    if let Some(t) = tenant {
        e["tenant"] = json!(t);
    }
    e
}

#[tokio::test]
async fn entry_bundles_need_a_key_that_may_read_every_tenant_of_the_log() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let read = h.key(Scope::Read, None);
    let ingest = h.key(Scope::Ingest, None);
    let read_acme = h.key(Scope::Read, Some("acme"));
    h.store("default", &admin, event(Some("acme"))).await;
    h.store("default", &admin, event(Some("globex"))).await;

    // Checkpoint and hash tiles hold hashes only: public.
    assert_eq!(h.get("/logs/default/checkpoint", None).await.status, 200);
    let tile = h.get("/logs/default/tile/0/000.p/2", None).await;
    assert_eq!(tile.status, 200);
    assert_eq!(tile.bytes.len(), 64);

    // The bundle holds both tenants' events.
    let bundle = "/logs/default/tile/entries/000.p/2";
    h.get(bundle, None).await.problem(401, "unauthorized");
    h.get(bundle, Some(&ingest)).await.problem(403, "forbidden");
    h.get(bundle, Some(&read_acme)).await.problem(403, "forbidden");
    for key in [&read, &admin] {
        let r = h.get(bundle, Some(key)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("globex") && r.text().contains("acme"));
    }
    // Even a path that names no tile is refused to the anonymous first.
    h.get("/logs/default/tile/entries/x", None)
        .await
        .problem(401, "unauthorized");

    // A log named like a tenant is not the tenant's own unless logs are
    // per tenant: anyone with an unrestricted key may have written to it.
    h.app.open_or_create("acme").unwrap();
    h.store("acme", &admin, event(Some("globex"))).await;
    h.get("/logs/acme/tile/entries/000.p/1", Some(&read_acme))
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn with_per_tenant_logs_a_tenant_key_reads_its_own_logs_bundles() {
    let h = Harness::new(|c| c.logs.per_tenant = true);
    let admin = h.key(Scope::Admin, None);
    let read = h.key(Scope::Read, None);
    let read_acme = h.key(Scope::Read, Some("acme"));
    let read_globex = h.key(Scope::Read, Some("globex"));
    let r = h.post("/api/v1/events", Some(&admin), event(Some("acme"))).await;
    assert_eq!(r.json()["log"], "acme");

    let bundle = "/logs/acme/tile/entries/000.p/1";
    h.get(bundle, None).await.problem(401, "unauthorized");
    h.get(bundle, Some(&read_globex)).await.problem(403, "forbidden");
    for key in [&read_acme, &read] {
        let r = h.get(bundle, Some(key)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("acme"));
    }
    // The default log holds events of no tenant and is nobody's own.
    h.get("/logs/default/checkpoint", Some(&read_acme))
        .await
        .problem(403, "forbidden");
    // The system log stays admin only.
    h.get("/logs/system/tile/entries/000.p/1", Some(&read))
        .await
        .problem(403, "forbidden");
    let size = h.app.trail("system").unwrap().log().size();
    let r = h
        .get(&format!("/logs/system/tile/entries/000.p/{size}"), Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn with_per_tenant_logs_a_tenants_log_holds_only_its_events_whoever_sends_them() {
    let h = Harness::new(|c| c.logs.per_tenant = true);
    let admin = h.key(Scope::Admin, None);
    let r = h.post("/api/v1/events", Some(&admin), event(Some("acme"))).await;
    assert_eq!(r.json()["log"], "acme");
    // An unrestricted key may not put another tenant's event (or one of no
    // tenant) where acme's key reads the entry bundles.
    for wrong in [event(Some("globex")), event(None)] {
        let r = h.post("/api/v1/logs/acme/events", Some(&admin), wrong.clone()).await;
        let p = r.problem(422, "invalid-event");
        assert!(p["detail"].as_str().unwrap().starts_with("tenant: "), "{p}");
        let r = h
            .call(
                Method::POST,
                "/api/v1/logs/acme/events/batch",
                Some(&admin),
                Some((
                    "application/x-ndjson",
                    format!("{}\n{}\n", event(Some("acme")), wrong).into_bytes(),
                )),
            )
            .await;
        let p = r.problem(422, "invalid-event");
        assert!(p["detail"].as_str().unwrap().contains("line 2"), "{p}");
    }
    assert_eq!(h.app.trail("acme").unwrap().log().size(), 1);
    // Its own events still go there, and the default log takes any.
    let r = h
        .post("/api/v1/logs/acme/events", Some(&admin), event(Some("acme")))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = h
        .post("/api/v1/logs/default/events", Some(&admin), event(Some("globex")))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn tenant_keys_get_receipts_and_inclusion_proofs_of_their_own_entries_only() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let read_acme = h.key(Scope::Read, Some("acme"));
    let ours = h.store("default", &admin, event(Some("acme"))).await;
    let theirs = h.store("default", &admin, event(Some("globex"))).await;
    let untenanted = h.store("default", &admin, event(None)).await;

    let receipt = |i: u64| format!("/api/v1/logs/default/receipts/{i}");
    let inclusion = |i: u64| format!("/api/v1/logs/default/proofs/inclusion?index={i}");
    assert_eq!(h.get(&receipt(ours), Some(&read_acme)).await.status, 200);
    assert_eq!(h.get(&inclusion(ours), Some(&read_acme)).await.status, 200);
    for i in [theirs, untenanted] {
        let p = h.get(&receipt(i), Some(&read_acme)).await.problem(404, "not-found");
        assert!(!p["detail"].as_str().unwrap().contains("globex"), "{p}");
        h.get(&inclusion(i), Some(&read_acme)).await.problem(404, "not-found");
        // An unrestricted key gets them all.
        assert_eq!(h.get(&receipt(i), Some(&admin)).await.status, 200);
        assert_eq!(h.get(&inclusion(i), Some(&admin)).await.status, 200);
    }
    // Consistency proofs are hashes only.
    let r = h
        .get("/api/v1/logs/default/proofs/consistency?from=1", Some(&read_acme))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // An event by id: another tenant's does not exist for this key.
    let id = |i: u64| {
        let log = h.app.trail("default").unwrap();
        let entry = log.log().entry(i).unwrap();
        sealtrail_event::parse_entry(&entry).unwrap().id.to_string()
    };
    h.app.trail("default").unwrap().sync_index().unwrap();
    let (ours_id, theirs_id) = (id(ours), id(theirs));
    assert_eq!(
        h.get(&format!("/api/v1/logs/default/events/{ours_id}"), Some(&read_acme))
            .await
            .status,
        200
    );
    h.get(&format!("/api/v1/logs/default/events/{theirs_id}"), Some(&read_acme))
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn per_tenant_routing_creates_logs_up_to_max_logs() {
    // The system log, the default log, and one more.
    let h = Harness::new(|c| {
        c.logs.per_tenant = true;
        c.logs.max_logs = 3;
    });
    let ingest = h.key(Scope::Ingest, None);
    let admin = h.key(Scope::Admin, None);
    let r = h.post("/api/v1/events", Some(&ingest), event(Some("acme"))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // At the bound: refused by name, nothing created.
    let p = h
        .post("/api/v1/events", Some(&ingest), event(Some("globex")))
        .await
        .problem(422, "too-many-logs");
    assert_eq!(p["errors"][0]["field"], "tenant", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("logs.max_logs"), "{p}");
    assert!(!h.app.data.log_dir("globex").exists());
    let batch = json!([event(Some("globex"))]).to_string().into_bytes();
    h.call(
        Method::POST,
        "/api/v1/events/batch",
        Some(&ingest),
        Some(("application/json", batch)),
    )
    .await
    .problem(422, "too-many-logs");
    h.post("/api/v1/logs", Some(&admin), json!({"name": "initech"}))
        .await
        .problem(422, "too-many-logs");
    // Existing logs still take events.
    let r = h.post("/api/v1/events", Some(&ingest), event(Some("acme"))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(h.app.trail("acme").unwrap().log().size(), 2);
    let text = sealtrail_server::ops::prometheus().render();
    assert!(text.contains("sealtrail_logs_refused_total"), "{text}");
}

#[tokio::test]
async fn per_tenant_routing_checks_the_tenant_before_creating_its_log() {
    let h = Harness::new(|c| c.logs.per_tenant = true);
    let ingest_acme = h.key(Scope::Ingest, Some("acme"));
    // A key restricted to acme cannot make globex a log.
    h.post("/api/v1/events", Some(&ingest_acme), event(Some("globex")))
        .await
        .problem(403, "forbidden");
    let batch = json!([event(Some("globex"))]).to_string().into_bytes();
    h.call(
        Method::POST,
        "/api/v1/events/batch",
        Some(&ingest_acme),
        Some(("application/json", batch)),
    )
    .await
    .problem(403, "forbidden");
    assert!(!h.app.data.log_dir("globex").exists());
    // A tenant that is no log name creates nothing either.
    h.post("/api/v1/events", Some(&ingest_acme), event(Some("../acme")))
        .await
        .problem(403, "forbidden");
    let admin = h.key(Scope::Admin, None);
    let p = h
        .post("/api/v1/events", Some(&admin), event(Some("../acme")))
        .await
        .problem(422, "invalid-event");
    assert_eq!(p["errors"][0]["field"], "tenant", "{p}");
    let logs: Vec<String> = h.app.data.list_logs().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let h = Harness::new(|_| {});
    let read = h.key(Scope::Read, None);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = h
            .send(
                Method::GET,
                "/api/v1/logs/default/events",
                Some(&format!("{scheme} {read}")),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    for bad in [format!("Basic {read}"), format!("Bearer{read}"), read.clone()] {
        h.send(Method::GET, "/api/v1/logs/default/events", Some(&bad), None)
            .await
            .problem(401, "unauthorized");
    }
}

#[tokio::test]
async fn json_text_sequences_are_framed_by_record_separators() {
    let h = Harness::new(|_| {});
    let k = h.key(Scope::Ingest, None);
    let batch = "/api/v1/logs/default/events/batch";
    // RFC 7464: RS, a JSON text, LF; a text may span lines.
    let body = format!(
        "\x1e{}\n\x1e{{\n  \"action\": 3\n}}\n\x1e\x1e  {}\n\x1enot json\n",
        event(None),
        event(Some("acme"))
    );
    let r = h
        .call(
            Method::POST,
            batch,
            Some(&k),
            Some(("application/json-seq", body.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(
        (b["appended"].as_u64(), b["rejected"].as_u64()),
        (Some(2), Some(2)),
        "{b}"
    );
    let items = b["items"].as_array().unwrap();
    let lines: Vec<u64> = items.iter().map(|i| i["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 2, 5, 6], "{b}");
    assert_eq!(items[1]["errors"][0]["field"], "action", "{b}");
    let detail = items[3]["errors"][0]["detail"].as_str().unwrap();
    // "not json" is refused at its "o", the line's third byte.
    assert!(detail.starts_with("invalid JSON at line 6, column 3:"), "{detail}");

    // Without a leading RS it is not a JSON text sequence.
    let p = h
        .call(
            Method::POST,
            batch,
            Some(&k),
            Some(("application/json-seq", event(None).to_string().into_bytes())),
        )
        .await
        .problem(400, "invalid-json-seq");
    assert!(p["detail"].as_str().unwrap().contains("RS"), "{p}");
    // A single event is application/json only; an unknown type is named.
    h.call(
        Method::POST,
        "/api/v1/logs/default/events",
        Some(&k),
        Some(("application/json-seq", format!("\x1e{}\n", event(None)).into_bytes())),
    )
    .await
    .problem(415, "unsupported-media-type");
    let p = h
        .call(
            Method::POST,
            batch,
            Some(&k),
            Some(("application/x-json-stream", b"{}".to_vec())),
        )
        .await
        .problem(415, "unsupported-media-type");
    let detail = p["detail"].as_str().unwrap();
    for t in ["application/x-ndjson", "application/json-seq", "application/jsonl"] {
        assert!(detail.contains(t), "{detail}");
    }
}

#[tokio::test]
async fn bad_json_in_a_batch_is_placed_by_its_line_in_the_body() {
    let h = Harness::new(|_| {});
    let k = h.key(Scope::Ingest, None);
    let batch = "/api/v1/logs/default/events/batch";
    // NDJSON: blank lines count; each line's text is its own.
    let ndjson = format!(
        "\n{}\n\n  {{\"action\": 'x'}}\r\n\n{{\"a\": 1, \"a\": 2}}\n",
        event(None)
    );
    let r = h
        .call(
            Method::POST,
            batch,
            Some(&k),
            Some(("application/x-ndjson", ndjson.into_bytes())),
        )
        .await;
    let b = r.json();
    let items = b["items"].as_array().unwrap();
    let at: Vec<(u64, &str)> = items
        .iter()
        .map(|i| {
            let detail = i["errors"][0]["detail"].as_str().unwrap_or("");
            (i["line"].as_u64().unwrap(), detail)
        })
        .collect();
    assert_eq!(at[0], (2, ""), "{b}");
    assert_eq!(at[1].0, 4, "{b}");
    assert!(at[1].1.starts_with("invalid JSON at line 4, column 14:"), "{b}");
    assert_eq!(at[2].0, 6, "{b}");
    assert!(at[2].1.starts_with("invalid JSON at line 6, column 12:"), "{b}");

    // A JSON array: the event's place in the body.
    let array = "[\n  {\"action\": \"a.b\"},\n  {\"action\": \"a.b\",\n   \"action\": \"c\"}\n]";
    let r = h
        .call(
            Method::POST,
            batch,
            Some(&k),
            Some(("application/json", array.as_bytes().to_vec())),
        )
        .await;
    let b = r.json();
    let detail = b["items"][1]["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("invalid JSON at line 4, column 11: duplicate key"),
        "{b}"
    );
}

#[tokio::test]
async fn backwards_time_ranges_and_wordless_text_are_refused() {
    let h = Harness::new(|_| {});
    let read = h.key(Scope::Read, None);
    let events = "/api/v1/logs/default/events";
    for (query, names) in [
        ("since=2024-05-02&until=2024-05-01", ["since", "until"]),
        (
            "received_since=2024-05-01T00:00:01Z&received_until=2024-05-01T00:00:00Z",
            ["received_since", "received_until"],
        ),
        ("since=1h&until=2h", ["since", "until"]),
    ] {
        for route in ["events", "stats", "export"] {
            let uri = format!("/api/v1/logs/default/{route}?{query}");
            let p = h.get(&uri, Some(&read)).await.problem(400, "invalid-query");
            let detail = p["detail"].as_str().unwrap();
            assert!(names.iter().all(|n| detail.contains(n)), "{uri}: {detail}");
        }
    }
    // Equal bounds are an empty range, not a mistake.
    let r = h
        .get(&format!("{events}?since=2024-05-01&until=2024-05-01"), Some(&read))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    for text in ["!!!", "%20%20", "-.-", "%E2%80%94"] {
        let p = h
            .get(&format!("{events}?text={text}"), Some(&read))
            .await
            .problem(400, "invalid-query");
        assert!(p["detail"].as_str().unwrap().starts_with("text:"), "{p}");
    }
    for text in ["disk", "caf%C3%A9!", "--x--"] {
        let r = h.get(&format!("{events}?text={text}"), Some(&read)).await;
        assert_eq!(r.status, 200, "{text}: {}", r.text());
    }
}

#[tokio::test]
async fn the_documentation_ui_calls_no_outside_validator() {
    let h = Harness::new(|_| {});
    let r = h.get("/api/docs/swagger-initializer.js", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(r#""validatorUrl": "none""#), "{}", r.text());
    assert!(r.text().contains("/api/v1/openapi.json"), "{}", r.text());
}
