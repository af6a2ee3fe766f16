//! Who may use which route: every dashboard page and every API route,
//! walked by each role signed in through `/login` (admin, auditor,
//! viewer, and a viewer of tenant `acme`), with the status each must get
//! and, where events are shown, that a tenant's viewer sees only its
//! tenant's. The routes are read from the server itself — the OpenAPI
//! document for the API, the dashboard's route declarations for the rest
//! — so a route without a row here fails the test.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use sealtrail_meta::{Role, Scope};
use serde_json::{json, Value};
use tower::ServiceExt;

mod support;

use support::{json_body, Harness};

const PASSWORD: &str = "correct horse battery staple";

/// The signed-in roles, in the order of each row's statuses.
const ROLES: [(&str, Role, Option<&str>); 4] = [
    ("root", Role::Admin, None),
    ("audrey", Role::Auditor, None),
    ("vera", Role::Viewer, None),
    ("vic", Role::Viewer, Some("acme")),
];

/// Where the events of each tenant show: the actor of every event stored
/// for it.
const ACME: &str = "alice-of-acme";
const GLOBEX: &str = "gus-of-globex";

const LEFT: &str = "id,amount\n1,10\n2,20\n";
const RIGHT: &str = "id,amount\n1,10\n2,25\n";
const BOUNDARY: &str = "access-matrix-boundary";

/// The name of the fixture's data run, which a reconciliation report covers.
const COMPARISON: &str = "matrix-diff";

/// The period of the reports asked for: everything the fixture stores.
const PERIOD: &str = "since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z";

/// What the server holds before a role walks the routes.
struct Fixture {
    /// Index and id of an event of each tenant in log `default`.
    acme: (u64, String),
    globex: (u64, String),
    run: i64,
    silence: i64,
    /// An API key of the admin's, and of user vera's.
    key: String,
    owned_key: String,
    asset: String,
}

/// How a row's answer is checked beyond its status.
#[derive(Clone, Copy, PartialEq)]
enum Shows {
    /// Nothing more.
    Status,
    /// The events of `acme`, and of `globex` unless the caller is
    /// restricted to `acme`.
    Tenants,
    /// Status only, without reading the body (the live stream never ends).
    Stream,
}

struct Row {
    method: Method,
    /// The route as the router declares it.
    route: &'static str,
    uri: String,
    body: Option<(String, Vec<u8>)>,
    /// The status for each of [`ROLES`].
    expect: [u16; 4],
    shows: Shows,
}

fn row(method: Method, route: &'static str, uri: impl Into<String>, expect: [u16; 4]) -> Row {
    Row {
        method,
        route,
        uri: uri.into(),
        body: None,
        expect,
        shows: Shows::Status,
    }
}

impl Row {
    fn json(mut self, v: Value) -> Row {
        let (t, b) = json_body(&v).unwrap();
        self.body = Some((t.to_string(), b));
        self
    }

    fn form(mut self, fields: &[(&str, &str)]) -> Row {
        self.body = Some((
            "application/x-www-form-urlencoded".into(),
            serde_urlencoded::to_string(fields).unwrap().into_bytes(),
        ));
        self
    }

    fn tenants(mut self) -> Row {
        self.shows = Shows::Tenants;
        self
    }

    fn stream(mut self) -> Row {
        self.shows = Shows::Stream;
        self
    }
}

const ALL: [u16; 4] = [200, 200, 200, 200];
/// Readers of the system log: admins and auditors.
const SYSTEM: [u16; 4] = [200, 200, 403, 403];
/// Admins only.
const ADMIN: [u16; 4] = [200, 403, 403, 403];
/// Readers without a tenant: data runs, alerting, jobs and the tiles of
/// a log not named after the tenant are the whole server's.
const UNRESTRICTED: [u16; 4] = [200, 200, 200, 403];

fn admin_only(status: u16) -> [u16; 4] {
    [status, 403, 403, 403]
}

/// Every route, for the fixture `f`. Reads come first, then changes,
/// then what ends things (deleting, signing out).
fn rows(f: &Fixture) -> Vec<Row> {
    use Method as M;
    let (acme, globex) = (f.acme.0, f.globex.0);
    let (acme_id, globex_id) = (&f.acme.1, &f.globex.1);
    let run = f.run;
    let until = (jiff::Timestamp::now() + Duration::from_secs(3600)).to_string();
    vec![
        // Pages.
        row(M::GET, "/", "/", ALL),
        row(M::GET, "/static/{*file}", f.asset.clone(), ALL),
        row(M::GET, "/favicon.ico", "/favicon.ico", [204; 4]),
        row(M::GET, "/login", "/login", [303; 4]),
        row(M::GET, "/search", "/search?log=default", ALL).tenants(),
        row(M::GET, "/search", "/search?log=system", SYSTEM),
        row(M::GET, "/search/export", "/search/export?log=default&format=jsonl", ALL).tenants(),
        row(
            M::GET,
            "/search/export",
            "/search/export?log=system&format=jsonl",
            SYSTEM,
        ),
        row(M::GET, "/events/{log}/{index}", format!("/events/default/{acme}"), ALL),
        row(
            M::GET,
            "/events/{log}/{index}",
            format!("/events/default/{globex}"),
            [200, 200, 200, 404],
        ),
        row(M::GET, "/events/{log}/{index}", "/events/system/0", SYSTEM),
        row(
            M::GET,
            "/entities/{kind}/{id}",
            "/entities/invoice/inv-1?log=default",
            ALL,
        )
        .tenants(),
        row(M::GET, "/data/runs", "/data/runs", UNRESTRICTED),
        row(M::GET, "/data/runs/{id}", format!("/data/runs/{run}"), UNRESTRICTED),
        row(M::GET, "/stream", "/stream", ALL),
        row(M::GET, "/stream/events", "/stream/events?log=default", ALL).stream(),
        row(M::GET, "/verification", "/verification", ALL),
        row(M::GET, "/alerts", "/alerts", UNRESTRICTED),
        row(M::GET, "/jobs", "/jobs", UNRESTRICTED),
        row(M::GET, "/jobs/{name}", "/jobs/nightly-verify", UNRESTRICTED),
        // A report counts every tenant's events: not for a tenant's viewer.
        row(M::GET, "/reports", "/reports", UNRESTRICTED),
        row(
            M::GET,
            "/reports/download",
            format!("/reports/download?log=default&type=summary&format=json&{PERIOD}"),
            UNRESTRICTED,
        ),
        row(M::GET, "/holds", "/holds", SYSTEM),
        row(M::GET, "/users", "/users", ADMIN),
        row(M::GET, "/users/{name}", "/users/vera", ADMIN),
        row(M::GET, "/account", "/account", ALL),
        // The provider is not configured.
        row(M::GET, "/auth/oidc/start", "/auth/oidc/start", [404; 4]),
        row(
            M::GET,
            "/auth/oidc/callback",
            "/auth/oidc/callback?code=c&state=s",
            [404; 4],
        ),
        // API reads.
        row(M::GET, "/api/v1/logs", "/api/v1/logs", ALL),
        row(M::GET, "/api/v1/logs/{log}/events", "/api/v1/logs/default/events", ALL).tenants(),
        row(
            M::GET,
            "/api/v1/logs/{log}/events",
            "/api/v1/logs/system/events",
            SYSTEM,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/events",
            "/api/v1/logs/default/events?tenant=globex",
            [200, 200, 200, 403],
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/events/{id}",
            format!("/api/v1/logs/default/events/{acme_id}"),
            ALL,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/events/{id}",
            format!("/api/v1/logs/default/events/{globex_id}"),
            [200, 200, 200, 404],
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/entities/{type}/{id}/history",
            "/api/v1/logs/default/entities/invoice/inv-1/history",
            ALL,
        )
        .tenants(),
        row(M::GET, "/api/v1/logs/{log}/errors", "/api/v1/logs/default/errors", ALL).tenants(),
        row(M::GET, "/api/v1/logs/{log}/stats", "/api/v1/logs/default/stats", ALL),
        row(
            M::GET,
            "/api/v1/logs/{log}/performance",
            "/api/v1/logs/default/performance",
            ALL,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/export",
            "/api/v1/logs/default/export?format=jsonl",
            ALL,
        )
        .tenants(),
        row(
            M::GET,
            "/api/v1/logs/{log}/export",
            "/api/v1/logs/system/export?format=jsonl",
            SYSTEM,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/receipts/{index}",
            format!("/api/v1/logs/default/receipts/{acme}"),
            ALL,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/receipts/{index}",
            format!("/api/v1/logs/default/receipts/{globex}"),
            [200, 200, 200, 404],
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/receipts/{index}",
            "/api/v1/logs/system/receipts/0",
            SYSTEM,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/proofs/inclusion",
            format!("/api/v1/logs/default/proofs/inclusion?index={acme}"),
            ALL,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/proofs/inclusion",
            format!("/api/v1/logs/default/proofs/inclusion?index={globex}"),
            [200, 200, 200, 404],
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/proofs/consistency",
            "/api/v1/logs/default/proofs/consistency?from=1",
            ALL,
        ),
        row(
            M::GET,
            "/logs/{log}/checkpoint",
            "/logs/default/checkpoint",
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/logs/{log}/tile/{*rest}",
            "/logs/default/tile/0/000.p/4",
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/logs/{log}/tile/{*rest}",
            "/logs/default/tile/entries/000.p/4",
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/logs/{log}/tile/{*rest}",
            // The system log grows with each read recorded: a partial
            // tile of width 1 is beyond its tree for those who may read it.
            "/logs/system/tile/entries/000.p/1",
            [404, 404, 403, 403],
        ),
        row(M::GET, "/api/v1/keys", "/api/v1/keys", ADMIN),
        row(M::GET, "/api/v1/system/health", "/api/v1/system/health", ALL),
        row(M::GET, "/api/v1/alert-rules", "/api/v1/alert-rules", UNRESTRICTED),
        row(
            M::GET,
            "/api/v1/alert-rules/{name}",
            "/api/v1/alert-rules/none",
            [404, 404, 404, 403],
        ),
        row(M::GET, "/api/v1/channels", "/api/v1/channels", ADMIN),
        row(
            M::GET,
            "/api/v1/channels/{name}",
            "/api/v1/channels/none",
            admin_only(404),
        ),
        row(M::GET, "/api/v1/silences", "/api/v1/silences", UNRESTRICTED),
        row(M::GET, "/api/v1/alerts", "/api/v1/alerts", UNRESTRICTED),
        row(M::GET, "/api/v1/notifications", "/api/v1/notifications", UNRESTRICTED),
        row(M::GET, "/api/v1/jobs", "/api/v1/jobs", UNRESTRICTED),
        row(
            M::GET,
            "/api/v1/logs/{log}/reports/{type}",
            format!("/api/v1/logs/default/reports/summary?format=json&{PERIOD}"),
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/reports/{type}",
            format!("/api/v1/logs/default/reports/access-review?format=json&{PERIOD}"),
            SYSTEM,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/reports/{type}",
            format!("/api/v1/logs/default/reports/reconciliation?format=json&name={COMPARISON}&{PERIOD}"),
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/api/v1/logs/{log}/reports/{type}",
            format!("/api/v1/logs/system/reports/summary?format=json&{PERIOD}"),
            SYSTEM,
        ),
        row(M::GET, "/api/v1/holds", "/api/v1/holds", SYSTEM),
        row(
            M::GET,
            "/api/v1/holds/{id}",
            "/api/v1/holds/999999",
            [404, 404, 403, 403],
        ),
        row(
            M::GET,
            "/api/v1/jobs/{name}",
            "/api/v1/jobs/nightly-verify",
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/api/v1/jobs/{name}/runs",
            "/api/v1/jobs/nightly-verify/runs",
            UNRESTRICTED,
        ),
        row(M::GET, "/api/v1/data/runs", "/api/v1/data/runs", UNRESTRICTED),
        row(
            M::GET,
            "/api/v1/data/runs/{id}",
            format!("/api/v1/data/runs/{run}"),
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/api/v1/data/runs/{id}/changes",
            format!("/api/v1/data/runs/{run}/changes"),
            UNRESTRICTED,
        ),
        row(
            M::GET,
            "/api/v1/data/runs/{id}/report",
            format!("/api/v1/data/runs/{run}/report?format=json"),
            UNRESTRICTED,
        ),
        row(M::GET, "/healthz", "/healthz", ALL),
        row(M::GET, "/readyz", "/readyz", ALL),
        row(M::GET, "/metrics", "/metrics", ALL),
        // Changes through the API: admins only.
        row(
            M::POST,
            "/api/v1/logs/{log}/events",
            "/api/v1/logs/default/events",
            admin_only(201),
        )
        .json(json!({"action": "invoice.paid", "tenant": "acme", "actor": {"id": ACME}})),
        row(
            M::POST,
            "/api/v1/logs/{log}/events/batch",
            "/api/v1/logs/default/events/batch",
            admin_only(200),
        )
        .json(json!([{"action": "invoice.paid", "tenant": "acme", "actor": {"id": ACME}}])),
        row(M::POST, "/api/v1/events", "/api/v1/events", admin_only(201))
            .json(json!({"action": "invoice.paid", "tenant": "acme", "actor": {"id": ACME}})),
        row(M::POST, "/api/v1/events/batch", "/api/v1/events/batch", admin_only(200))
            .json(json!([{"action": "invoice.paid", "tenant": "acme", "actor": {"id": ACME}}])),
        row(M::POST, "/api/v1/logs", "/api/v1/logs", admin_only(201)).json(json!({"name": "payroll"})),
        row(M::POST, "/api/v1/keys", "/api/v1/keys", admin_only(201)).json(json!({"scope": "read", "name": "m"})),
        row(M::POST, "/api/v1/alert-rules", "/api/v1/alert-rules", admin_only(422)).json(json!({})),
        row(
            M::PUT,
            "/api/v1/alert-rules/{name}",
            "/api/v1/alert-rules/none",
            admin_only(422),
        )
        .json(json!({})),
        row(M::POST, "/api/v1/channels", "/api/v1/channels", admin_only(422)).json(json!({})),
        row(
            M::PUT,
            "/api/v1/channels/{name}",
            "/api/v1/channels/none",
            admin_only(422),
        )
        .json(json!({})),
        row(M::POST, "/api/v1/notify/test", "/api/v1/notify/test", admin_only(422)).json(json!({})),
        row(M::POST, "/api/v1/silences", "/api/v1/silences", admin_only(201)).json(json!({"until": until})),
        row(M::POST, "/api/v1/jobs", "/api/v1/jobs", admin_only(422)).json(json!({})),
        row(
            M::PUT,
            "/api/v1/jobs/{name}",
            "/api/v1/jobs/nightly-verify",
            admin_only(200),
        )
        .json(json!({
            "name": "nightly-verify", "type": "verify", "log": "default", "schedule": "0 3 * * *", "timezone": "UTC"
        })),
        row(
            M::POST,
            "/api/v1/jobs/{name}/disable",
            "/api/v1/jobs/nightly-verify/disable",
            admin_only(200),
        ),
        row(
            M::POST,
            "/api/v1/jobs/{name}/enable",
            "/api/v1/jobs/nightly-verify/enable",
            admin_only(200),
        ),
        row(
            M::POST,
            "/api/v1/jobs/{name}/run",
            "/api/v1/jobs/nightly-verify/run",
            admin_only(202),
        ),
        Row {
            body: Some(diff_form()),
            ..row(M::POST, "/api/v1/data/runs", "/api/v1/data/runs", admin_only(202))
        },
        row(M::POST, "/api/v1/holds", "/api/v1/holds", admin_only(201))
            .json(json!({"log": "default", "reason": "matter 7"})),
        // Changes through the pages.
        row(M::POST, "/jobs", "/jobs", admin_only(303)).form(&[(
            "definition",
            "name = \"weekly-verify\"\ntype = \"verify\"\nlog = \"default\"\nschedule = \"0 3 * * 1\"\n",
        )]),
        row(
            M::POST,
            "/jobs/{name}/{action}",
            "/jobs/nightly-verify/disable",
            admin_only(303),
        ),
        row(M::POST, "/holds", "/holds", admin_only(200)).form(&[("log", "default"), ("reason", "matter 8")]),
        row(M::POST, "/holds/{id}/release", "/holds/999999/release", admin_only(404)),
        row(M::POST, "/verification", "/verification", [303, 303, 403, 403]).form(&[("log", "default")]),
        row(M::POST, "/alerts/silences", "/alerts/silences", admin_only(303)).form(&[("until", until.as_str())]),
        row(M::POST, "/users", "/users", admin_only(200)).form(&[("name", "newcomer"), ("role", "viewer")]),
        row(
            M::POST,
            "/users/{name}/{action}",
            "/users/vera/totp-require",
            admin_only(200),
        )
        .form(&[("required", "on")]),
        row(
            M::POST,
            "/users/{name}/keys/{id}/revoke",
            format!("/users/vera/keys/{}/revoke", f.owned_key),
            admin_only(303),
        ),
        // One's own account: anyone signed in, each for themselves.
        row(M::POST, "/account/totp/start", "/account/totp/start", [303; 4]),
        row(M::POST, "/account/totp/confirm", "/account/totp/confirm", [400; 4]).form(&[("code", "12")]),
        row(M::POST, "/account/password", "/account/password", [400; 4]).form(&[
            ("current", "not the password at all"),
            ("new", "another long pass phrase"),
            ("confirm", "another long pass phrase"),
        ]),
        row(
            M::POST,
            "/account/sessions/revoke",
            "/account/sessions/revoke",
            [404; 4],
        )
        .form(&[("session", "00")]),
        // Ending things.
        row(
            M::POST,
            "/alerts/silences/{id}/delete",
            format!("/alerts/silences/{}/delete", f.silence),
            admin_only(303),
        ),
        row(
            M::DELETE,
            "/api/v1/silences/{id}",
            "/api/v1/silences/999999",
            admin_only(404),
        ),
        row(
            M::DELETE,
            "/api/v1/alert-rules/{name}",
            "/api/v1/alert-rules/none",
            admin_only(404),
        ),
        row(
            M::DELETE,
            "/api/v1/channels/{name}",
            "/api/v1/channels/none",
            admin_only(404),
        ),
        row(M::DELETE, "/api/v1/holds/{id}", "/api/v1/holds/999999", admin_only(404)),
        row(
            M::DELETE,
            "/api/v1/jobs/{name}",
            "/api/v1/jobs/nightly-verify",
            admin_only(204),
        ),
        row(
            M::DELETE,
            "/api/v1/keys/{id}",
            format!("/api/v1/keys/{}", f.key),
            admin_only(200),
        ),
        // Signing in again is refused with a wrong password, whoever asks.
        row(M::POST, "/login", "/login", [401; 4]).form(&[("username", "nobody"), ("password", "wrong")]),
        row(M::POST, "/logout", "/logout", [303; 4]),
    ]
}

fn diff_form() -> (String, Vec<u8>) {
    let mut body = Vec::new();
    let parts: [(&str, Option<&str>, &str); 5] = [
        ("kind", None, "diff"),
        ("name", None, COMPARISON),
        ("options", None, r#"{"key": ["id"]}"#),
        ("left", Some("left.csv"), LEFT),
        ("right", Some("right.csv"), RIGHT),
    ];
    for (name, file, content) in parts {
        write!(body, "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").unwrap();
        if let Some(f) = file {
            write!(body, "; filename=\"{f}\"\r\nContent-Type: application/octet-stream").unwrap();
        }
        write!(body, "\r\n\r\n{content}\r\n").unwrap();
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// A request as a browser signed in with session `cookie` sends it,
/// CSRF token included; the status and, unless `stream`, the body.
async fn send(h: &Harness, cookie: &str, csrf: &str, row: &Row) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(row.method.clone())
        .uri(&row.uri)
        .header(header::COOKIE, format!("sealtrail_session={cookie}"));
    if row.method != Method::GET {
        req = req.header("x-csrf-token", csrf);
    }
    let mut req = match &row.body {
        Some((t, b)) => req.header(header::CONTENT_TYPE, t).body(Body::from(b.clone())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.0.2.7:5000".parse::<SocketAddr>().unwrap()));
    let response = h.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    if row.shows == Shows::Stream {
        return (status, String::new());
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Sign in as `name`; the session secret, or the refusal's status.
async fn sign_in(h: &Harness, name: &str) -> Result<String, u16> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            serde_urlencoded::to_string([("username", name), ("password", PASSWORD)]).unwrap(),
        ))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.0.2.7:5000".parse::<SocketAddr>().unwrap()));
    let r = support::oneshot(&h.router, req).await;
    if r.status != StatusCode::SEE_OTHER {
        assert!(r.headers.get(header::SET_COOKIE).is_none(), "{}", r.text());
        return Err(r.status.as_u16());
    }
    Ok(support::session_secret(&r))
}

/// A server with users of every role, events of two tenants, a job, a
/// silence, a finished data run and keys.
async fn fixture() -> (Harness, Fixture) {
    let h = Harness::new(|c| c.web.sign_ins_per_user_per_minute = 0);
    let actor = json!({"id": "test", "type": "user"});
    let hash = sealtrail_meta::hash_password(PASSWORD).unwrap();
    for (name, role, tenant) in ROLES.iter().chain([&("ingo", Role::Ingest, None)]) {
        h.app
            .meta
            .create_user(name, *role, *tenant, &hash, jiff::Timestamp::now(), &actor)
            .unwrap();
    }
    let admin = h.key(Scope::Admin, None);
    let mut stored = Vec::new();
    for (tenant, who) in [("acme", ACME), ("globex", GLOBEX), ("acme", ACME), ("globex", GLOBEX)] {
        let event = json!({
            "action": "invoice.failed", "tenant": tenant, "actor": {"id": who},
            "outcome": "failure", "duration_ms": 12,
            "targets": [{"type": "invoice", "id": "inv-1"}],
        });
        let r = h.post("/api/v1/logs/default/events", Some(&admin), event).await;
        assert_eq!(r.status, 201, "{}", r.text());
        stored.push((
            r.json()["index"].as_u64().unwrap(),
            r.json()["id"].as_str().unwrap().to_string(),
        ));
    }
    h.settle("default");
    let job = json!({"name": "nightly-verify", "type": "verify", "log": "default", "schedule": "0 2 * * *", "timezone": "UTC"});
    let r = h.post("/api/v1/jobs", Some(&admin), job).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let until = (jiff::Timestamp::now() + Duration::from_secs(3600)).to_string();
    let r = h.post("/api/v1/silences", Some(&admin), json!({"until": until})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let silence = r.json()["id"].as_i64().unwrap();
    let (t, b) = diff_form();
    let r = h
        .call(Method::POST, "/api/v1/data/runs", Some(&admin), Some((t.as_str(), b)))
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let run = r.json()["id"].as_i64().unwrap();
    for _ in 0..1500 {
        let r = h.get(&format!("/api/v1/data/runs/{run}"), Some(&admin)).await;
        if r.json()["state"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = h.key(Scope::Read, None).split('_').nth(1).unwrap().to_string();
    let vera = h.app.meta.user("vera").unwrap().unwrap();
    let (owned, _) = h
        .app
        .meta
        .create_owned_key(
            Scope::Read,
            None,
            "vera's",
            Some(&vera.id),
            &sealtrail_meta::now_text(),
            |k| sealtrail_meta::key_event(actor.clone(), "api_key.created", k),
        )
        .unwrap();
    h.app.drain_outbox().unwrap();
    h.settle("system");
    let page = h.get("/", Some(&admin)).await.text();
    let asset = page
        .split("\"/static/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|s| format!("/static/{s}"))
        .expect("the page links a static file");
    let fixture = Fixture {
        acme: stored[0].clone(),
        globex: stored[1].clone(),
        run,
        silence,
        key,
        owned_key: owned.id,
        asset,
    };
    (h, fixture)
}

/// The dashboard's routes as its modules declare them: each
/// `.route("path", get(..).post(..))` of `src/web/*.rs` and `src/lib.rs`.
fn declared_routes() -> BTreeSet<(String, String)> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = std::fs::read_dir(src.join("web"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.push(src.join("lib.rs"));
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices(".route(\"") {
                let rest = &line[at + ".route(\"".len()..];
                let (path, handlers) = rest.split_once('"').unwrap();
                // This route's handlers end where the next route begins.
                let handlers = handlers.split(".route(").next().unwrap();
                let mut methods = 0;
                for m in ["get", "post", "put", "delete", "patch"] {
                    let call = format!("{m}(");
                    let found = handlers.match_indices(&call).any(|(i, _)| {
                        i == 0
                            || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric() && handlers.as_bytes()[i - 1] != b'_'
                    });
                    if found {
                        routes.insert((m.to_uppercase(), path.to_string()));
                        methods += 1;
                    }
                }
                assert!(
                    methods > 0,
                    "{}:{}: a route whose methods are not on its line: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
    routes
}

/// The API's routes from its OpenAPI document.
fn api_routes() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(sealtrail_server::openapi()).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "delete", "patch"] {
            if item.get(m).is_some() {
                routes.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_route_has_a_row() {
    let f = Fixture {
        acme: (0, String::new()),
        globex: (1, String::new()),
        run: 1,
        silence: 1,
        key: String::new(),
        owned_key: String::new(),
        asset: String::new(),
    };
    let covered: BTreeSet<(String, String)> = rows(&f)
        .iter()
        .map(|r| (r.method.to_string(), r.route.to_string()))
        .collect();
    let routes: BTreeSet<_> = declared_routes().union(&api_routes()).cloned().collect();
    assert!(routes.len() > 80, "found only {} routes: {routes:?}", routes.len());
    let missing: Vec<_> = routes.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the access matrix: {missing:?}"
    );
    let unknown: Vec<_> = covered.difference(&routes).collect();
    assert!(
        unknown.is_empty(),
        "rows for routes the server does not have: {unknown:?}"
    );
}

#[tokio::test]
async fn each_role_gets_what_it_may_and_a_tenant_only_its_own() {
    // An ingest user owns keys and cannot sign in.
    let (h, _) = fixture().await;
    assert_eq!(sign_in(&h, "ingo").await, Err(403));
    drop(h);

    let mut wrong = Vec::new();
    for (i, (name, _, tenant)) in ROLES.iter().enumerate() {
        // Each role on a server of its own: the changes one makes do not
        // decide what the next one gets.
        let (h, f) = fixture().await;
        let cookie = sign_in(&h, name).await.unwrap();
        let (_, session) = h
            .app
            .meta
            .session(&cookie, 3600, jiff::Timestamp::now())
            .unwrap()
            .unwrap();
        for row in rows(&f) {
            let (status, body) = send(&h, &cookie, &session.csrf, &row).await;
            if status.as_u16() != row.expect[i] {
                let start: String = body.chars().take(300).collect();
                wrong.push(format!(
                    "{name}: {} {} is {}, expected {}: {start}",
                    row.method, row.uri, status, row.expect[i]
                ));
                continue;
            }
            // A refusal names the caller as what it is: a signed-in user,
            // never an API key.
            let names_user = body.contains(&format!("user {name} is restricted to tenant"));
            if status.as_u16() == 403
                && (body.contains("this API key") || (body.contains("restricted to tenant") && !names_user))
            {
                let start: String = body.chars().take(300).collect();
                wrong.push(format!(
                    "{name}: {} {} refuses in other words: {start}",
                    row.method, row.uri
                ));
            }
            if row.shows == Shows::Tenants {
                let sees_globex = tenant.is_none();
                if !body.contains(ACME) || body.contains(GLOBEX) != sees_globex {
                    wrong.push(format!(
                        "{name}: {} {} shows acme: {}, globex: {} (expected {sees_globex})",
                        row.method,
                        row.uri,
                        body.contains(ACME),
                        body.contains(GLOBEX)
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} wrong answers:\n{}", wrong.len(), wrong.join("\n"));
}
