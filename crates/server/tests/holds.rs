//! Legal holds through the router: `/api/v1/holds` (add, list, read,
//! release; refusals naming the field; who may do what) and the
//! dashboard's `/holds` page (list; admins add and release, with CSRF),
//! every change recorded in the system log.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request};
use sealtrail_meta::{Role, Scope};
use serde_json::{json, Value};

mod support;

use support::{oneshot, Harness, ProblemChecks, Reply};

const PASSWORD: &str = "correct horse battery staple";
const HOLDS: &str = "/api/v1/holds";
const FORM: &str = "application/x-www-form-urlencoded";
const CHECKS: ProblemChecks = ProblemChecks {
    status_field: true,
    detail: true,
};

fn add_user(h: &Harness, name: &str, role: Role, tenant: Option<&str>) {
    let hash = sealtrail_meta::hash_password(PASSWORD).unwrap();
    h.app
        .meta
        .create_user(
            name,
            role,
            tenant,
            &hash,
            jiff::Timestamp::now(),
            &json!({"id": "test", "type": "user"}),
        )
        .unwrap();
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", sealtrail_server::web::encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A request with the session `cookie`, extra headers and a form body.
async fn request(
    h: &Harness,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("sealtrail_session={c}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = match body {
        Some((kind, b)) => req.header(header::CONTENT_TYPE, kind).body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    oneshot(&h.router, req).await
}

/// Sign `name` in; the session secret and its CSRF token.
async fn sign_in(h: &Harness, name: &str) -> (String, String) {
    let r = request(
        h,
        Method::POST,
        "/login",
        None,
        &[],
        Some((FORM, form(&[("username", name), ("password", PASSWORD)]))),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let s = support::session(h, support::session_secret(&r));
    (s.secret, s.csrf)
}

/// System-log events with `action`, oldest first.
async fn system_events(h: &Harness, action: &str) -> Vec<Value> {
    h.app.drain_outbox().unwrap();
    h.settle("system");
    let admin = h.key(Scope::Admin, None);
    let r = h
        .get(
            &format!("/api/v1/logs/system/events?action={action}&limit=100&order=oldest"),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

/// The fields a refusal names.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn holds_are_added_listed_read_and_released_over_the_api() {
    let h = Harness::new(|_| {});
    let (admin, ingest) = (h.key(Scope::Admin, None), h.key(Scope::Ingest, None));
    h.store("default", &ingest, json!({"action": "doc.viewed"})).await;

    let r = h
        .post(
            HOLDS,
            Some(&admin),
            json!({"log": "default", "reason": "matter 2026-17",
                   "filter": {"occurred_since": "2026-01-01T00:00:00Z", "occurred_until": "2026-04-01T00:00:00Z",
                              "action": "lead.*"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let a = r.json();
    assert_eq!(a["log"], "default");
    assert_eq!(a["reason"], "matter 2026-17");
    assert_eq!(
        a["filter"],
        json!({"action": "lead.*", "occurred_since": "2026-01-01T00:00:00Z", "occurred_until": "2026-04-01T00:00:00Z"})
    );
    assert!(a["created_by"].as_str().unwrap().starts_with("key:"), "{a}");
    assert_eq!(a["released_at"], Value::Null);
    // Without a filter: the whole log.
    let b = h
        .post(HOLDS, Some(&admin), json!({"log": "default", "reason": "subpoena"}))
        .await;
    assert_eq!(b.status, 201, "{}", b.text());
    let b = b.json();
    assert_eq!(b["filter"], json!({}));

    // As stored, and as the planner sees them.
    let scopes = h.app.meta.hold_scopes("default").unwrap();
    assert_eq!(scopes.len(), 2);
    assert_eq!(scopes[0].filter.action.as_deref(), Some("lead.*"));

    let list = h.get(HOLDS, Some(&admin)).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json(), json!([a, b]));
    let one = h.get(&format!("{HOLDS}/{}", a["id"]), Some(&admin)).await;
    assert_eq!(one.json(), a);

    let released = h
        .call(Method::DELETE, &format!("{HOLDS}/{}", a["id"]), Some(&admin), None)
        .await;
    assert_eq!(released.status, 200, "{}", released.text());
    let released = released.json();
    assert!(released["released_at"].is_string() && released["released_by"].is_string());
    assert_eq!(h.get(HOLDS, Some(&admin)).await.json(), json!([b]));
    assert_eq!(
        h.get(&format!("{HOLDS}?released=true&log=default"), Some(&admin))
            .await
            .json(),
        json!([released, b])
    );
    assert_eq!(
        h.get(&format!("{HOLDS}?log=other"), Some(&admin)).await.json(),
        json!([])
    );

    let again = h
        .call(Method::DELETE, &format!("{HOLDS}/{}", a["id"]), Some(&admin), None)
        .await;
    again.problem_doc(409, "hold-released", CHECKS);
    h.get(&format!("{HOLDS}/999"), Some(&admin))
        .await
        .problem_doc(404, "not-found", CHECKS);
    h.call(Method::DELETE, &format!("{HOLDS}/999"), Some(&admin), None)
        .await
        .problem_doc(404, "not-found", CHECKS);

    // Recorded as `sealtrail holds` records them.
    let added = system_events(&h, "legal_hold.added").await;
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(added[0]["details"]["log"], "default");
    assert_eq!(added[0]["details"]["filter"], a["filter"]);
    assert_eq!(added[0]["details"]["reason"], "matter 2026-17");
    assert_eq!(
        added[0]["targets"][0],
        json!({"type": "legal_hold", "id": a["id"].to_string()})
    );
    assert_eq!(added[0]["actor"]["type"], "service");
    let gone = system_events(&h, "legal_hold.released").await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0]["targets"][0]["id"], a["id"].to_string());
}

#[tokio::test]
async fn a_bad_hold_is_refused_naming_each_field() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"log": "nope", "reason": "x"}), vec!["log"]),
        (json!({"log": "Bad Name", "reason": "x"}), vec!["log"]),
        (json!({"log": "default", "reason": "  "}), vec!["reason"]),
        (json!({"log": "default", "reason": "r".repeat(1001)}), vec!["reason"]),
        (
            json!({"log": "default", "reason": "x", "filter": {"occurred_since": "yesterday"}}),
            vec!["filter.occurred_since"],
        ),
        (
            json!({"log": "default", "reason": "x",
                   "filter": {"received_since": "2026-02-01T00:00:00Z", "received_until": "2026-01-01T00:00:00Z"}}),
            vec!["filter.received_until"],
        ),
        (
            json!({"log": "default", "reason": "x", "filter": {"outcome": "maybe"}}),
            vec!["filter.outcome"],
        ),
        (
            json!({"log": "default", "reason": "x", "filter": {"ip": "10.0.0.300"}}),
            vec!["filter.ip"],
        ),
        (
            json!({"log": "nope", "reason": "", "filter": {"min_severity": "dire"}}),
            vec!["log", "filter.min_severity", "reason"],
        ),
        (
            json!({"log": "default", "reason": "x", "filter": {"colour": "red"}}),
            vec!["filter.colour"],
        ),
        (json!({"log": "default", "reason": "x", "extra": 1}), vec!["extra"]),
        (json!({"log": "default", "reason": 7}), vec!["reason"]),
    ];
    for (body, want) in cases {
        let r = h.post(HOLDS, Some(&admin), body.clone()).await;
        let p = r.problem_doc(422, "invalid-hold", CHECKS);
        assert_eq!(fields(&p), want, "{body}: {p}");
        for f in want.iter().filter(|f| !f.is_empty()) {
            assert!(p["detail"].as_str().unwrap().contains(*f), "{body}: {p}");
        }
    }
    let p = h
        .post(
            HOLDS,
            Some(&admin),
            json!({"log": "default", "reason": "x", "filter": {"colour": "red"}}),
        )
        .await
        .json();
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");
    let r = h
        .call(
            Method::POST,
            HOLDS,
            Some(&admin),
            Some(("application/json", b"{\"log\": ".to_vec())),
        )
        .await;
    r.problem_doc(400, "invalid-json", CHECKS);
    // Nothing was added, nothing recorded.
    assert!(h.app.meta.holds(None, true).unwrap().is_empty());
    assert!(system_events(&h, "legal_hold.added").await.is_empty());
}

#[tokio::test]
async fn only_admins_change_holds_and_admins_and_auditors_read_them() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let hold = h
        .post(HOLDS, Some(&admin), json!({"log": "default", "reason": "matter"}))
        .await
        .json();
    let one = format!("{HOLDS}/{}", hold["id"]);
    let new = json!({"log": "default", "reason": "again"});

    // Keys: read, ingest and analyst scope may do nothing; a
    // tenant-restricted admin key neither; no key is 401.
    for scope in [Scope::Read, Scope::Ingest, Scope::Analyst] {
        let key = h.key(scope, None);
        h.get(HOLDS, Some(&key)).await.problem_doc(403, "forbidden", CHECKS);
        h.get(&one, Some(&key)).await.problem_doc(403, "forbidden", CHECKS);
        h.post(HOLDS, Some(&key), new.clone())
            .await
            .problem_doc(403, "forbidden", CHECKS);
        h.call(Method::DELETE, &one, Some(&key), None)
            .await
            .problem_doc(403, "forbidden", CHECKS);
    }
    let tenant_admin = h.key(Scope::Admin, Some("acme"));
    h.get(HOLDS, Some(&tenant_admin))
        .await
        .problem_doc(403, "forbidden", CHECKS);
    h.post(HOLDS, Some(&tenant_admin), new.clone())
        .await
        .problem_doc(403, "forbidden", CHECKS);
    h.get(HOLDS, None).await.problem_doc(401, "unauthorized", CHECKS);

    // Users: an auditor reads and may not change; a viewer may not read.
    add_user(&h, "audrey", Role::Auditor, None);
    add_user(&h, "vera", Role::Viewer, None);
    let (auditor, token) = sign_in(&h, "audrey").await;
    let r = request(&h, Method::GET, HOLDS, Some(&auditor), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!([hold]));
    let r = request(&h, Method::GET, &one, Some(&auditor), &[], None).await;
    assert_eq!(r.json(), hold);
    let r = request(
        &h,
        Method::POST,
        HOLDS,
        Some(&auditor),
        &[("x-csrf-token", token.as_str())],
        Some(("application/json", new.to_string())),
    )
    .await;
    r.problem_doc(403, "forbidden", CHECKS);
    let r = request(
        &h,
        Method::DELETE,
        &one,
        Some(&auditor),
        &[("x-csrf-token", token.as_str())],
        None,
    )
    .await;
    r.problem_doc(403, "forbidden", CHECKS);
    let (viewer, _) = sign_in(&h, "vera").await;
    let r = request(&h, Method::GET, HOLDS, Some(&viewer), &[], None).await;
    r.problem_doc(403, "forbidden", CHECKS);

    // Still one hold, active.
    let holds = h.app.meta.holds(None, true).unwrap();
    assert_eq!((holds.len(), holds[0].released_at.is_none()), (1, true));
}

#[tokio::test]
async fn the_holds_page_lists_and_admins_add_and_release_with_csrf() {
    let h = Harness::new(|_| {});
    add_user(&h, "ada", Role::Admin, None);
    add_user(&h, "audrey", Role::Auditor, None);
    add_user(&h, "vera", Role::Viewer, None);
    let (admin, token) = sign_in(&h, "ada").await;

    let page = request(&h, Method::GET, "/holds", Some(&admin), &[], None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("No legal hold is active."), "{html}");
    assert!(html.contains("action=\"/holds\""), "an admin gets the form: {html}");
    assert!(html.contains(&format!("name=\"csrf\" value=\"{token}\"")), "{html}");
    assert!(html.contains("href=\"/holds\""), "in the navigation: {html}");
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline code: {html}"
    );

    // Without the session's token the form is refused, nothing added.
    let fields = [
        ("log", "default"),
        ("reason", "matter <17>"),
        ("action", "lead.*"),
        ("occurred_since", "2026-01-01T00:00:00Z"),
        ("occurred_until", ""),
    ];
    let r = request(
        &h,
        Method::POST,
        "/holds",
        Some(&admin),
        &[],
        Some((FORM, form(&fields))),
    )
    .await;
    r.problem_doc(403, "csrf", CHECKS);
    assert!(h.app.meta.holds(None, true).unwrap().is_empty());

    let mut with_token = fields.to_vec();
    with_token.push(("csrf", token.as_str()));
    let r = request(
        &h,
        Method::POST,
        "/holds",
        Some(&admin),
        &[],
        Some((FORM, form(&with_token))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let holds = h.app.meta.holds(None, false).unwrap();
    assert_eq!(holds.len(), 1);
    let id = holds[0].id;
    assert_eq!(
        holds[0].filter,
        json!({"action": "lead.*", "occurred_since": "2026-01-01T00:00:00Z"})
    );
    assert!(
        html.contains(&format!("Added legal hold {id} on log default.")),
        "{html}"
    );
    assert!(html.contains("matter &#60;17&#62;"), "escaped: {html}");
    assert!(
        html.contains("action=lead.*, occurred_since=2026-01-01T00:00:00Z"),
        "{html}"
    );
    assert!(html.contains(&format!("action=\"/holds/{id}/release\"")), "{html}");

    // A bad form is shown again with the refusal naming the field.
    let bad = [
        ("log", "default"),
        ("reason", "x"),
        ("received_since", "soon"),
        ("csrf", token.as_str()),
    ];
    let r = request(&h, Method::POST, "/holds", Some(&admin), &[], Some((FORM, form(&bad)))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("filter.received_since"), "{}", r.text());
    assert_eq!(h.app.meta.holds(None, true).unwrap().len(), 1);

    // An auditor sees the list, no forms, and may not post one.
    let (auditor, auditor_token) = sign_in(&h, "audrey").await;
    let page = request(&h, Method::GET, "/holds", Some(&auditor), &[], None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("matter &#60;17&#62;"), "{html}");
    assert!(
        !html.contains("action=\"/holds\"") && !html.contains("/release\""),
        "{html}"
    );
    let release = format!("/holds/{id}/release");
    let r = request(
        &h,
        Method::POST,
        &release,
        Some(&auditor),
        &[],
        Some((FORM, form(&[("csrf", &auditor_token)]))),
    )
    .await;
    r.problem_doc(403, "forbidden", CHECKS);
    // A viewer may not see it.
    let (viewer, _) = sign_in(&h, "vera").await;
    let r = request(&h, Method::GET, "/holds", Some(&viewer), &[], None).await;
    r.problem_doc(403, "forbidden", CHECKS);
    assert!(!r.text().contains("matter"));

    // The admin releases it; released holds are listed on request.
    let r = request(
        &h,
        Method::POST,
        &release,
        Some(&admin),
        &[],
        Some((FORM, form(&[("csrf", &token)]))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("Released legal hold {id} on log default.")));
    assert!(h.app.meta.holds(None, false).unwrap().is_empty());
    let page = request(&h, Method::GET, "/holds?released=1", Some(&admin), &[], None).await;
    assert!(page.text().contains("matter &#60;17&#62;"), "{}", page.text());
    let again = request(
        &h,
        Method::POST,
        &release,
        Some(&admin),
        &[],
        Some((FORM, form(&[("csrf", &token)]))),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(again.text().contains("already released"), "{}", again.text());

    // Both changes are in the system log, by the signed-in admin.
    let added = system_events(&h, "legal_hold.added").await;
    let released = system_events(&h, "legal_hold.released").await;
    assert_eq!((added.len(), released.len()), (1, 1));
    assert_eq!(added[0]["actor"]["name"], "ada");
    assert_eq!(released[0]["actor"]["name"], "ada");
}

#[test]
fn the_openapi_document_describes_the_holds_routes_exactly() {
    let doc = serde_json::to_value(sealtrail_server::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        (HOLDS, &["get", "post"][..]),
        ("/api/v1/holds/{id}", &["get", "delete"][..]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{path} {m}");
        }
    }
    let schemas = &doc["components"]["schemas"];
    let new = &schemas["NewHold"];
    assert_eq!(new["additionalProperties"], false, "{new}");
    let mut required: Vec<&str> = new["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["log", "reason"]);
    let filter = &schemas["HoldFilter"];
    assert_eq!(filter["additionalProperties"], false, "{filter}");
    let props = filter["properties"].as_object().unwrap();
    // Every field the stored filter may hold, and no other.
    let mut names: Vec<&String> = props.keys().collect();
    names.sort();
    let mut want = vec![
        "action",
        "actor",
        "failures",
        "ip",
        "min_severity",
        "occurred_since",
        "occurred_until",
        "outcome",
        "received_since",
        "received_until",
        "service",
        "session",
        "target_id",
        "target_type",
        "tenant",
        "text",
        "workflow",
    ];
    want.sort_unstable();
    assert_eq!(names, want);
    assert!(props["occurred_since"].to_string().contains("date-time"), "{filter}");
    assert!(schemas["Hold"]["properties"]["filter"]
        .to_string()
        .contains("HoldFilter"));
}
