//! The harness shared by the server's integration tests: an `App` on a
//! temporary data directory, API keys, requests through the router
//! without a socket, and the replies they get.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sealtrail_meta::Scope;
use sealtrail_meta::{key_event, now_text};
use sealtrail_server::{router, App, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The defaults on `data_dir`, except for disk thresholds that refuse
/// writes only on a truly full disk: a test must not depend on the free
/// space of the machine running it (the tests of the thresholds set
/// their own).
pub fn config(data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.health.disk_reserve_bytes = 0;
    config.health.disk_warning_percent = 100.0;
    config.health.disk_critical_percent = 100.0;
    config
}

/// An `App` on a fresh temporary data directory (`config`, index
/// visibility 20 ms, then `adjust`), and its router.
pub fn open(adjust: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Arc<App>, Router) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("data"));
    config.index.visibility_ms = 20;
    adjust(&mut config);
    let app = App::open(config).unwrap();
    let router = router(app.clone());
    (dir, app, router)
}

/// A new API key named `name`; its secret.
pub fn create_key(app: &App, scope: Scope, tenant: Option<&str>, name: &str) -> String {
    let (_, secret) = app
        .meta
        .create_key(scope, tenant, name, &now_text(), |k| {
            key_event(json!({"id": "test", "type": "user"}), "api_key.created", k)
        })
        .unwrap();
    secret
}

/// Send `req` through `router`.
pub async fn oneshot(router: &Router, req: Request<Body>) -> Reply {
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, headers, bytes }
}

/// A request with `authorization` as the whole header value and `body` as
/// (content type, bytes).
pub async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    authorization: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = match body {
        Some((content_type, bytes)) => req.header(header::CONTENT_TYPE, content_type).body(Body::from(bytes)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    oneshot(router, req).await
}

/// The value of the first `/metrics` line starting with `line_start`
/// (a metric's name and labels).
pub fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("/metrics lacks {line_start}:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A JSON body for `send`.
pub fn json_body(v: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

/// An `App` on a temporary data directory, driven through its router.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub router: Router,
}

impl Harness {
    pub fn new(adjust: impl FnOnce(&mut Config)) -> Harness {
        let (dir, app, router) = open(adjust);
        Harness { dir, app, router }
    }

    pub fn key(&self, scope: Scope, tenant: Option<&str>) -> String {
        create_key(&self.app, scope, tenant, "test")
    }

    /// A request with `authorization` as the whole header value.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        authorization: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        send(&self.router, method, uri, authorization, body).await
    }

    pub async fn call(&self, method: Method, uri: &str, key: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Reply {
        let bearer = key.map(|k| format!("Bearer {k}"));
        self.send(method, uri, bearer.as_deref(), body).await
    }

    pub async fn post(&self, uri: &str, key: Option<&str>, event: Value) -> Reply {
        self.call(Method::POST, uri, key, json_body(&event)).await
    }

    pub async fn get(&self, uri: &str, key: Option<&str>) -> Reply {
        self.call(Method::GET, uri, key, None).await
    }

    /// Wait until everything acknowledged in `log` is searchable.
    pub fn settle(&self, log: &str) {
        self.app.trail(log).unwrap().sync_index().unwrap();
    }

    /// Store `event` in `log`, returning its index.
    pub async fn store(&self, log: &str, key: &str, event: Value) -> u64 {
        let r = self.post(&format!("/api/v1/logs/{log}/events"), Some(key), event).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.bytes));
        r.json()["index"].as_u64().unwrap()
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub bytes: Vec<u8>,
}

/// What `Reply::problem_doc` checks beyond status, content type and type.
#[derive(Clone, Copy)]
pub struct ProblemChecks {
    /// The document's `status` equals the HTTP status.
    pub status_field: bool,
    /// The document has a non-empty `detail`.
    pub detail: bool,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.bytes)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// Assert a problem document with this status and type, returning it.
    pub fn problem_doc(&self, status: u16, kind: &str, checks: ProblemChecks) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.content_type(), "application/problem+json");
        let p = self.json();
        assert_eq!(p["type"], format!("urn:sealtrail:problem:{kind}"), "{p}");
        if checks.status_field {
            assert_eq!(p["status"], status);
        }
        if checks.detail {
            assert!(!p["detail"].as_str().unwrap().is_empty());
        }
        p
    }
}

/// A signed-in browser: the session cookie's secret and its CSRF token.
pub struct Session {
    pub secret: String,
    pub csrf: String,
}

/// Create user `name` with `role` and sign in with a password, as a
/// browser does (the session layer's rate limits want a peer address).
pub async fn sign_in(h: &Harness, name: &str, role: sealtrail_meta::Role) -> Session {
    const PASSWORD: &str = "correct horse battery staple";
    let hash = sealtrail_meta::hash_password(PASSWORD).unwrap();
    h.app
        .meta
        .create_user(
            name,
            role,
            None,
            &hash,
            jiff::Timestamp::now(),
            &json!({"id": "test", "type": "user"}),
        )
        .unwrap();
    let form = format!("username={name}&password=correct%20horse%20battery%20staple");
    let r = browser(h, Method::POST, "/login", None, Some(form)).await;
    assert_eq!(r.status, 303, "{}", r.text());
    session(h, session_secret(&r))
}

/// The session secret a sign-in reply set in its cookie.
pub fn session_secret(r: &Reply) -> String {
    let set = r
        .headers
        .get(header::SET_COOKIE)
        .unwrap_or_else(|| panic!("no cookie set: {} {}", r.status, r.text()))
        .to_str()
        .unwrap();
    set.strip_prefix("sealtrail_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The live session `secret` opens, with its CSRF token.
pub fn session(h: &Harness, secret: String) -> Session {
    let (_, s) = h
        .app
        .meta
        .session(&secret, 3600, jiff::Timestamp::now())
        .unwrap()
        .expect("a live session");
    Session { secret, csrf: s.csrf }
}

/// A browser's request: the session cookie if any, a form body if any.
pub async fn browser(h: &Harness, method: Method, uri: &str, session: Option<&Session>, form: Option<String>) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(s) = session {
        req = req.header(header::COOKIE, format!("sealtrail_session={}", s.secret));
    }
    let mut req = match form {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let peer: std::net::SocketAddr = "192.0.2.7:5000".parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    oneshot(&h.router, req).await
}
