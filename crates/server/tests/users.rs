//! Users and sign-in through the router: passwords, lockout and its
//! system-log events, rate limits, CSRF, sessions and their revocation,
//! `next` redirects, bounds, TOTP with recovery codes, and who may read
//! what once signed in.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request};
use sealtrail_meta::{Role, Scope};
use serde_json::{json, Value};

mod support;

use support::{oneshot, Harness, Reply};

const PASSWORD: &str = "correct horse battery staple";

fn actor() -> Value {
    json!({"id": "test", "type": "user"})
}

fn add_user(h: &Harness, name: &str, role: Role, tenant: Option<&str>) -> sealtrail_meta::User {
    let hash = sealtrail_meta::hash_password(PASSWORD).unwrap();
    h.app
        .meta
        .create_user(name, role, tenant, &hash, jiff::Timestamp::now(), &actor())
        .unwrap()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", sealtrail_server::web::encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A request from `ip` with `cookie` and extra headers.
async fn request(
    h: &Harness,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("sealtrail_session={c}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    oneshot(&h.router, req).await
}

async fn login(h: &Harness, fields: &[(&str, &str)]) -> Reply {
    request(h, Method::POST, "/login", None, &[], Some(form(fields))).await
}

/// The session secret a sign-in reply set.
fn cookie(r: &Reply) -> String {
    let secret = support::session_secret(r);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    secret
}

fn location(r: &Reply) -> &str {
    r.headers.get(header::LOCATION).map_or("", |v| v.to_str().unwrap())
}

async fn sign_in(h: &Harness, name: &str) -> String {
    let r = login(h, &[("username", name), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    cookie(&r)
}

/// The CSRF token of the session whose secret is `secret`.
fn csrf(h: &Harness, secret: &str) -> String {
    let (_, s) = h
        .app
        .meta
        .session(secret, 3600, jiff::Timestamp::now())
        .unwrap()
        .expect("a live session");
    s.csrf
}

/// System-log events with `action`, read with an admin key.
async fn system_events(h: &Harness, action: &str) -> Vec<Value> {
    h.app.drain_outbox().unwrap();
    h.settle("system");
    let admin = h.key(Scope::Admin, None);
    let r = h
        .get(
            &format!("/api/v1/logs/system/events?action={action}&limit=100"),
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

const EVENTS: &str = "/api/v1/logs/default/events";

#[tokio::test]
async fn a_password_signs_in_and_sign_out_ends_the_session() {
    let h = Harness::new(|_| {});
    add_user(&h, "alice", Role::Admin, None);

    let page = request(&h, Method::GET, "/login?next=%2Fsearch", None, &[], None).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains("name=\"username\"") && html.contains("name=\"password\""),
        "{html}"
    );
    assert!(html.contains("value=\"/search\""), "next is carried: {html}");

    let wrong = login(&h, &[("username", "alice"), ("password", "wrong password!!")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("The user name or password is wrong."));
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    // An unknown name gets the same words.
    let unknown = login(&h, &[("username", "mallory"), ("password", PASSWORD)]).await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.text().contains("The user name or password is wrong."));

    let ok = login(
        &h,
        &[("username", "alice"), ("password", PASSWORD), ("next", "/search?q=x")],
    )
    .await;
    assert_eq!(ok.status, 303);
    assert_eq!(location(&ok), "/search?q=x");
    let secret = cookie(&ok);
    assert_eq!(secret.len(), 64);

    // The session reads the API as the user's role allows.
    let r = request(&h, Method::GET, EVENTS, Some(&secret), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A made-up session is nobody.
    let r = request(&h, Method::GET, EVENTS, Some(&"ab".repeat(32)), &[], None).await;
    assert_eq!(r.status, 401);

    // Sign-out needs the token, then the cookie is worth nothing.
    let r = request(&h, Method::POST, "/logout", Some(&secret), &[], Some(String::new())).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let token = csrf(&h, &secret);
    let r = request(
        &h,
        Method::POST,
        "/logout",
        Some(&secret),
        &[],
        Some(form(&[("csrf", &token)])),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), "/login");
    assert!(r
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = request(&h, Method::GET, EVENTS, Some(&secret), &[], None).await;
    assert_eq!(r.status, 401);

    let signed_in = system_events(&h, "user.signed_in").await;
    assert_eq!(signed_in.len(), 1);
    assert_eq!(signed_in[0]["targets"][0]["name"], "alice");
    assert_eq!(signed_in[0]["context"]["ip"], "192.0.2.7");
    assert_eq!(signed_in[0]["details"]["method"], "password");
    let failed = system_events(&h, "user.sign_in_failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(system_events(&h, "user.signed_out").await.len(), 1);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_the_system_log_says_so() {
    let h = Harness::new(|c| {
        c.web.max_failed_sign_ins = 3;
        c.web.lockout_secs = 600;
    });
    add_user(&h, "bob", Role::Viewer, None);
    for i in 0..3 {
        let r = login(&h, &[("username", "bob"), ("password", "not the password")]).await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert_eq!(
            r.text().contains("now locked for 10 minute(s)"),
            i == 2,
            "attempt {i}: {}",
            r.text()
        );
    }
    // The right password is refused while locked.
    let r = login(&h, &[("username", "bob"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("locked after too many failed attempts"),
        "{}",
        r.text()
    );
    assert!(r.headers.get(header::SET_COOKIE).is_none());

    let locked = system_events(&h, "user.locked").await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["targets"][0]["name"], "bob");
    assert_eq!(locked[0]["details"]["failed_attempts"], 3);
    assert_eq!(system_events(&h, "user.sign_in_failed").await.len(), 3);

    // An admin lifts it by enabling the user.
    h.app.meta.set_user_disabled("bob", false, &actor()).unwrap();
    sign_in(&h, "bob").await;
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_with_retry_after() {
    let h = Harness::new(|c| {
        c.web.sign_ins_per_user_per_minute = 2;
        c.web.max_failed_sign_ins = 0;
    });
    add_user(&h, "carol", Role::Viewer, None);
    for _ in 0..2 {
        let r = login(&h, &[("username", "carol"), ("password", "nope nope nope")]).await;
        assert_eq!(r.status, 401);
    }
    let r = login(&h, &[("username", "carol"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r
        .headers
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.text().contains("Too many sign-in attempts"));
    // Another name is not held up by carol's.
    add_user(&h, "dave", Role::Viewer, None);
    sign_in(&h, "dave").await;

    // Per client address.
    let h = Harness::new(|c| {
        c.web.sign_ins_per_ip_per_minute = 1;
    });
    add_user(&h, "erin", Role::Viewer, None);
    sign_in(&h, "erin").await;
    let r = login(&h, &[("username", "someone"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn next_only_ever_leads_to_this_server() {
    let h = Harness::new(|_| {});
    add_user(&h, "alice", Role::Admin, None);
    for (next, expected) in [
        ("/events/default/1", "/events/default/1"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("javascript:alert(1)", "/"),
    ] {
        let r = login(&h, &[("username", "alice"), ("password", PASSWORD), ("next", next)]).await;
        assert_eq!(r.status, 303, "{next}");
        assert_eq!(location(&r), expected, "{next}");
    }
    // The sign-in page does not carry a foreign `next` either.
    let r = request(&h, Method::GET, "/login?next=%2F%2Fevil.example", None, &[], None).await;
    assert!(!r.text().contains("evil.example"), "{}", r.text());
}

#[tokio::test]
async fn over_long_fields_are_refused_by_name() {
    let h = Harness::new(|_| {});
    add_user(&h, "alice", Role::Admin, None);
    let long_name = "a".repeat(65);
    let r = login(&h, &[("username", &long_name), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("username: 65 bytes; the limit is 64"), "{}", r.text());
    let long_password = "p".repeat(1025);
    let r = login(&h, &[("username", "alice"), ("password", &long_password)]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("password: 1025 bytes; the limit is 1024"),
        "{}",
        r.text()
    );
    let huge = "x".repeat(100_000);
    let r = login(&h, &[("username", "alice"), ("password", &huge)]).await;
    assert_eq!(r.status, 413, "{}", r.text());
    // Nothing of it reached the system log as a failure.
    assert!(system_events(&h, "user.sign_in_failed").await.is_empty());
}

#[tokio::test]
async fn session_requests_need_the_token_and_this_site() {
    let h = Harness::new(|_| {});
    add_user(&h, "alice", Role::Admin, None);
    let secret = sign_in(&h, "alice").await;
    let token = csrf(&h, &secret);
    let event = json!({"action": "invoice.paid"}).to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let (h, secret, event) = (&h, secret.clone(), event.clone());
        async move {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(EVENTS)
                .header(header::COOKIE, format!("sealtrail_session={secret}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::HOST, "audit.example");
            for (k, v) in headers {
                req = req.header(k, v);
            }
            oneshot(&h.router, req.body(Body::from(event)).unwrap()).await
        }
    };
    let r = post(vec![]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("CSRF"), "{}", r.text());
    let r = post(vec![("x-csrf-token", "0".repeat(64))]).await;
    assert_eq!(r.status, 403);
    let r = post(vec![
        ("x-csrf-token", token.clone()),
        ("origin", "https://evil.example".into()),
    ])
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post(vec![
        ("x-csrf-token", token.clone()),
        ("sec-fetch-site", "cross-site".into()),
    ])
    .await;
    assert_eq!(r.status, 403);
    let r = post(vec![
        ("x-csrf-token", token.clone()),
        ("origin", "http://audit.example".into()),
        ("sec-fetch-site", "same-origin".into()),
    ])
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // A key is not a cookie: no token asked.
    let admin = h.key(Scope::Admin, None);
    let r = h.post(EVENTS, Some(&admin), json!({"action": "invoice.paid"})).await;
    assert_eq!(r.status, 201);
    // Sign-in itself is refused from another site.
    let r = request(
        &h,
        Method::POST,
        "/login",
        None,
        &[("origin", "https://evil.example"), ("host", "audit.example")],
        Some(form(&[("username", "alice"), ("password", PASSWORD)])),
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn sessions_are_bounded_and_revocable() {
    let h = Harness::new(|c| c.web.max_sessions_per_user = 2);
    let alice = add_user(&h, "alice", Role::Admin, None);
    let first = sign_in(&h, "alice").await;
    let second = sign_in(&h, "alice").await;
    let third = sign_in(&h, "alice").await;
    let live = h
        .app
        .meta
        .sessions(Some(&alice.id), 3600, jiff::Timestamp::now())
        .unwrap();
    assert_eq!(live.len(), 2);
    let r = request(&h, Method::GET, EVENTS, Some(&first), &[], None).await;
    assert_eq!(r.status, 401, "the oldest session ended");
    for s in [&second, &third] {
        assert_eq!(request(&h, Method::GET, EVENTS, Some(s), &[], None).await.status, 200);
    }
    // Revoked by an admin: the API refuses it at once.
    let handle = sealtrail_meta::session_handle(&second);
    assert!(h
        .app
        .meta
        .end_session(&handle, None, "session.revoked", &actor())
        .unwrap());
    assert_eq!(
        request(&h, Method::GET, EVENTS, Some(&second), &[], None).await.status,
        401
    );
    assert_eq!(system_events(&h, "session.revoked").await.len(), 1);
    // Disabling the user ends the rest.
    h.app.meta.set_user_disabled("alice", true, &actor()).unwrap();
    assert_eq!(
        request(&h, Method::GET, EVENTS, Some(&third), &[], None).await.status,
        401
    );
    let r = login(&h, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 401, "a disabled user is told what anyone is");
    assert!(r.text().contains("The user name or password is wrong."));
}

#[tokio::test]
async fn idle_sessions_end() {
    let h = Harness::new(|c| c.web.session_idle_secs = 2);
    add_user(&h, "alice", Role::Admin, None);
    let secret = sign_in(&h, "alice").await;
    assert_eq!(
        request(&h, Method::GET, EVENTS, Some(&secret), &[], None).await.status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(
        request(&h, Method::GET, EVENTS, Some(&secret), &[], None).await.status,
        401
    );
}

#[tokio::test]
async fn roles_and_tenants_decide_what_a_session_reads() {
    let h = Harness::new(|_| {});
    let key = h.key(Scope::Admin, None);
    for tenant in ["acme", "globex"] {
        h.store("default", &key, json!({"action": "invoice.paid", "tenant": tenant}))
            .await;
    }
    h.settle("default");
    add_user(&h, "root", Role::Admin, None);
    add_user(&h, "audrey", Role::Auditor, None);
    add_user(&h, "vera", Role::Viewer, None);
    add_user(&h, "vic", Role::Viewer, Some("acme"));
    add_user(&h, "ingo", Role::Ingest, None);

    let r = login(&h, &[("username", "ingo"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("cannot sign in to the pages"), "{}", r.text());
    assert!(r.headers.get(header::SET_COOKIE).is_none());

    // (user, status of the system log, tenants of the default log's events)
    let cases: &[(&str, u16, &[&str])] = &[
        ("root", 200, &["acme", "globex"]),
        ("audrey", 200, &["acme", "globex"]),
        ("vera", 403, &["acme", "globex"]),
        ("vic", 403, &["acme"]),
    ];
    let mut sessions = Vec::new();
    for (name, system, tenants) in cases {
        let s = sign_in(&h, name).await;
        sessions.push((*name, s.clone()));
        let r = request(&h, Method::GET, "/api/v1/logs/system/events", Some(&s), &[], None).await;
        assert_eq!(r.status.as_u16(), *system, "{name}: {}", r.text());
        let r = request(&h, Method::GET, EVENTS, Some(&s), &[], None).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let mut seen: Vec<String> = r.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["tenant"].as_str().unwrap().to_string())
            .collect();
        seen.sort();
        assert_eq!(seen, *tenants, "{name}");
    }
    // Writing needs admin.
    for (name, s) in sessions {
        let token = csrf(&h, &s);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(EVENTS)
            .header(header::COOKIE, format!("sealtrail_session={s}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-csrf-token", token);
        req = req.header(header::HOST, "localhost");
        let r = oneshot(
            &h.router,
            req.body(Body::from(json!({"action": "a.b"}).to_string())).unwrap(),
        )
        .await;
        let expected = if name == "root" { 201 } else { 403 };
        assert_eq!(r.status.as_u16(), expected, "{name} writes: {}", r.text());
    }
}

/// RFC 6238 TOTP with HMAC-SHA-1, written out here so that the server's
/// codes are checked against an independent computation.
fn rfc6238(secret: &[u8], unix: u64, digits: u32) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&(unix / 30).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    format!("{:0width$}", bin % 10u32.pow(digits), width = digits as usize)
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        value = (value << 5) | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        bits += 5;
        if bits >= 8 {
            out.push((value >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

#[test]
fn the_reference_totp_matches_the_rfc_6238_vectors() {
    let secret = b"12345678901234567890";
    for (t, code) in [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ] {
        assert_eq!(rfc6238(secret, t, 8), code, "T = {t}");
    }
    assert_eq!(base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), secret);
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    text.split(start)
        .skip(1)
        .map(|s| s.split(end).next().unwrap())
        .collect()
}

fn now() -> u64 {
    jiff::Timestamp::now().as_second() as u64
}

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code_or_a_recovery_code_once() {
    let h = Harness::new(|c| c.web.max_failed_sign_ins = 0);
    add_user(&h, "alice", Role::Auditor, None);
    let s = sign_in(&h, "alice").await;
    let token = csrf(&h, &s);
    let r = request(
        &h,
        Method::POST,
        "/account/totp/start",
        Some(&s),
        &[],
        Some(form(&[("csrf", &token)])),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let page = request(&h, Method::GET, "/account", Some(&s), &[], None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("src=\"data:image/svg+xml;base64,"), "{html}");
    let secret = base32_decode(between(&html, "<code class=\"secret\">", "</code>")[0]);
    assert_eq!(secret.len(), 20);

    // A wrong code does not turn it on.
    let wrong = if rfc6238(&secret, now(), 6) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = request(
        &h,
        Method::POST,
        "/account/totp/confirm",
        Some(&s),
        &[],
        Some(form(&[("csrf", &token), ("code", wrong)])),
    )
    .await;
    assert_eq!(r.status, 400);
    let code = rfc6238(&secret, now(), 6);
    let r = request(
        &h,
        Method::POST,
        "/account/totp/confirm",
        Some(&s),
        &[],
        Some(form(&[("csrf", &token), ("code", &code)])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let codes: Vec<String> = between(&r.text(), "<li><code>", "</code>")
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(codes.len(), 10, "{}", r.text());
    // Shown once.
    let again = request(&h, Method::GET, "/account", Some(&s), &[], None).await.text();
    assert!(!again.contains(&codes[0]));
    assert!(again.contains("10 recovery code(s) left"), "{again}");

    // The password alone now asks for the code.
    let r = login(&h, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=\"totp\""), "{}", r.text());
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    // The code used to confirm is spent; the next step's is not.
    let r = login(&h, &[("username", "alice"), ("password", PASSWORD), ("totp", &code)]).await;
    assert_eq!(r.status, 401, "a code works once: {}", r.text());
    let next = rfc6238(&secret, now() + 30, 6);
    let r = login(&h, &[("username", "alice"), ("password", PASSWORD), ("totp", &next)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    cookie(&r);
    let r = login(&h, &[("username", "alice"), ("password", PASSWORD), ("totp", &next)]).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("wrong or was already used"), "{}", r.text());
    // A wrong password with a good code is still wrong.
    let r = login(
        &h,
        &[("username", "alice"), ("password", "wrong password!"), ("totp", &next)],
    )
    .await;
    assert_eq!(r.status, 401);

    // A recovery code signs in once.
    let r = login(
        &h,
        &[("username", "alice"), ("password", PASSWORD), ("totp", &codes[3])],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let r = login(
        &h,
        &[("username", "alice"), ("password", PASSWORD), ("totp", &codes[3])],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = login(
        &h,
        &[
            ("username", "alice"),
            ("password", PASSWORD),
            ("totp", "aaaa-bbbb-cccc-dddd"),
        ],
    )
    .await;
    assert_eq!(r.status, 401);

    let methods: Vec<String> = system_events(&h, "user.signed_in")
        .await
        .iter()
        .map(|e| e["details"]["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(methods, ["recovery_code", "totp", "password"], "newest first");
    assert_eq!(system_events(&h, "user.totp_enabled").await.len(), 1);
}

#[tokio::test]
async fn a_revoked_session_is_sent_to_sign_in_and_totp_can_be_required() {
    let h = Harness::new(|_| {});
    add_user(&h, "alice", Role::Admin, None);
    let one = sign_in(&h, "alice").await;
    let two = sign_in(&h, "alice").await;
    // Revoked from the other session's account page.
    let token = csrf(&h, &two);
    let handle = sealtrail_meta::session_handle(&one);
    let page = request(&h, Method::GET, "/account", Some(&two), &[], None).await.text();
    assert!(page.contains(&handle), "both sessions are listed: {page}");
    let r = request(
        &h,
        Method::POST,
        "/account/sessions/revoke",
        Some(&two),
        &[],
        Some(form(&[("csrf", &token), ("session", &handle)])),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let r = request(&h, Method::GET, "/account", Some(&one), &[], None).await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), "/login?next=%2Faccount");
    // Another user's session cannot be revoked from here.
    add_user(&h, "bob", Role::Viewer, None);
    let bobs = sign_in(&h, "bob").await;
    let r = request(
        &h,
        Method::POST,
        "/account/sessions/revoke",
        Some(&two),
        &[],
        Some(form(&[
            ("csrf", &token),
            ("session", &sealtrail_meta::session_handle(&bobs)),
        ])),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        request(&h, Method::GET, EVENTS, Some(&bobs), &[], None).await.status,
        200
    );

    // Required TOTP: the pages and the API wait for enrolment.
    h.app.meta.require_totp("bob", true, &actor()).unwrap();
    let r = login(&h, &[("username", "bob"), ("password", PASSWORD), ("next", "/search")]).await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), "/account");
    let s = cookie(&r);
    assert_eq!(
        request(&h, Method::GET, "/account", Some(&s), &[], None).await.status,
        200
    );
    assert_eq!(request(&h, Method::GET, EVENTS, Some(&s), &[], None).await.status, 403);
    let r = request(&h, Method::GET, "/search", Some(&s), &[], None).await;
    assert_eq!(location(&r), "/account");
}

#[tokio::test]
async fn a_password_change_checks_the_old_one_and_ends_other_sessions() {
    let h = Harness::new(|_| {});
    add_user(&h, "alice", Role::Viewer, None);
    let a = sign_in(&h, "alice").await;
    let b = sign_in(&h, "alice").await;
    let token = csrf(&h, &a);
    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        let (h, a, token) = (&h, a.clone(), token.clone());
        async move {
            let body = form(&[
                ("csrf", &token),
                ("current", current),
                ("new", new),
                ("confirm", confirm),
            ]);
            request(h, Method::POST, "/account/password", Some(&a), &[], Some(body)).await
        }
    };
    let r = change("wrong password!!", "a brand new password", "a brand new password").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("current: the password is wrong"));
    let r = change(PASSWORD, "short", "short").await;
    assert!(
        r.text().contains("new password: 5 characters; at least 12 are needed"),
        "{}",
        r.text()
    );
    let r = change(PASSWORD, "a brand new password", "a brand new passwore").await;
    assert!(r.text().contains("confirm: does not match"));
    let r = change(PASSWORD, "a brand new password", "a brand new password").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(request(&h, Method::GET, EVENTS, Some(&a), &[], None).await.status, 200);
    assert_eq!(request(&h, Method::GET, EVENTS, Some(&b), &[], None).await.status, 401);
    let r = login(&h, &[("username", "alice"), ("password", "a brand new password")]).await;
    assert_eq!(r.status, 303);
    assert_eq!(system_events(&h, "user.password_changed").await.len(), 1);
}

#[tokio::test]
async fn only_admins_administer_users_and_their_keys() {
    let h = Harness::new(|_| {});
    add_user(&h, "root", Role::Admin, None);
    add_user(&h, "audrey", Role::Auditor, None);
    add_user(&h, "vic", Role::Viewer, Some("acme"));
    for (name, status) in [("audrey", 403), ("vic", 403), ("root", 200)] {
        let s = sign_in(&h, name).await;
        let r = request(&h, Method::GET, "/users", Some(&s), &[], None).await;
        assert_eq!(r.status.as_u16(), status, "{name}: {}", r.text());
        let token = csrf(&h, &s);
        let body = form(&[("csrf", &token), ("name", "eve"), ("role", "admin")]);
        let r = request(&h, Method::POST, "/users", Some(&s), &[], Some(body)).await;
        assert_eq!(r.status.as_u16(), status, "{name} creates: {}", r.text());
    }
    // Anonymous visitors are sent to sign in; a read key is refused.
    let r = request(&h, Method::GET, "/users", None, &[], None).await;
    assert_eq!(location(&r), "/login?next=%2Fusers");
    let read = h.key(Scope::Read, None);
    assert_eq!(h.get("/users", Some(&read)).await.status, 403);

    let root = sign_in(&h, "root").await;
    let token = csrf(&h, &root);
    let r = request(&h, Method::GET, "/users", Some(&root), &[], None).await;
    let html = r.text();
    assert!(html.contains("href=\"/users/eve\""), "root created eve: {html}");
    // eve got a generated password, shown once on the creation's answer.
    let r = request(
        &h,
        Method::POST,
        "/users",
        Some(&root),
        &[],
        Some(form(&[("csrf", &token), ("name", "ivan"), ("role", "ingest")])),
    )
    .await;
    let password = between(&r.text(), "<code class=\"secret\">", "</code>")[0].to_string();
    assert_eq!(password.len(), 24);
    let r = login(&h, &[("username", "ivan"), ("password", &password)]).await;
    assert_eq!(r.status, 403, "ingest cannot sign in, but the password is right");
    // Refusals name the field.
    let r = request(
        &h,
        Method::POST,
        "/users",
        Some(&root),
        &[],
        Some(form(&[("csrf", &token), ("name", "x y"), ("role", "viewer")])),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("at byte 1 is not allowed"), "{}", r.text());

    // A key owned by vic: never beyond vic's role or tenant.
    let make = |scope: &'static str, tenant: &'static str| {
        let (h, root, token) = (&h, root.clone(), token.clone());
        async move {
            let body = form(&[
                ("csrf", &token),
                ("scope", scope),
                ("tenant", tenant),
                ("key_name", "reports"),
            ]);
            request(h, Method::POST, "/users/vic/keys", Some(&root), &[], Some(body)).await
        }
    };
    let r = make("admin", "").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("may own keys of scope read only"), "{}", r.text());
    let r = make("read", "globex").await;
    assert!(r.text().contains("restricted to tenant acme"), "{}", r.text());
    let r = make("read", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = between(&r.text(), "<code class=\"secret\">", "</code>")[0].to_string();
    assert!(secret.starts_with("stk_"));
    let listed = request(&h, Method::GET, "/users/vic", Some(&root), &[], None)
        .await
        .text();
    assert!(!listed.contains(&secret), "shown once");
    let key_id = secret.split('_').nth(1).unwrap().to_string();
    let keys = h.app.meta.list_keys().unwrap();
    let key = keys.iter().find(|k| k.id == key_id).unwrap();
    assert_eq!(key.tenant.as_deref(), Some("acme"));
    let vic = h.app.meta.user("vic").unwrap().unwrap();
    assert_eq!(key.owner.as_deref(), Some(vic.id.as_str()));
    assert_eq!(h.get(EVENTS, Some(&secret)).await.status, 200);

    // Disabling the owner stops the key; enabling brings it back.
    let r = request(
        &h,
        Method::POST,
        "/users/vic/disable",
        Some(&root),
        &[],
        Some(form(&[("csrf", &token)])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    h.app.forget_keys();
    assert_eq!(h.get(EVENTS, Some(&secret)).await.status, 401);
    request(
        &h,
        Method::POST,
        "/users/vic/enable",
        Some(&root),
        &[],
        Some(form(&[("csrf", &token)])),
    )
    .await;
    h.app.forget_keys();
    assert_eq!(h.get(EVENTS, Some(&secret)).await.status, 200);
    let r = request(
        &h,
        Method::POST,
        &format!("/users/vic/keys/{key_id}/revoke"),
        Some(&root),
        &[],
        Some(form(&[("csrf", &token)])),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(h.get(EVENTS, Some(&secret)).await.status, 401);

    // Role change, password reset and TOTP requirement from the page.
    let r = request(
        &h,
        Method::POST,
        "/users/vic/role",
        Some(&root),
        &[],
        Some(form(&[("csrf", &token), ("role", "auditor"), ("tenant", "")])),
    )
    .await;
    assert!(r.text().contains("vic now has role auditor"), "{}", r.text());
    let vic_session = sign_in(&h, "vic").await;
    assert_eq!(
        request(
            &h,
            Method::GET,
            "/api/v1/logs/system/events",
            Some(&vic_session),
            &[],
            None
        )
        .await
        .status,
        200
    );
    let r = request(
        &h,
        Method::POST,
        "/users/vic/password",
        Some(&root),
        &[],
        Some(form(&[("csrf", &token)])),
    )
    .await;
    let new_password = between(&r.text(), "<code class=\"secret\">", "</code>")[0].to_string();
    assert_eq!(
        request(&h, Method::GET, EVENTS, Some(&vic_session), &[], None)
            .await
            .status,
        401
    );
    let r = login(&h, &[("username", "vic"), ("password", &new_password)]).await;
    assert_eq!(r.status, 303);
    let actions: Vec<String> = system_events(&h, "user.*")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "user.created",
        "user.disabled",
        "user.enabled",
        "user.role_changed",
        "user.password_reset",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    assert_eq!(system_events(&h, "api_key.revoked").await.len(), 1);
}

/// The `Set-Cookie` values of a reply.
fn set_cookies(r: &Reply) -> Vec<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Sign in as `name` from `peer` with extra headers; the reply.
async fn login_from(h: &Harness, name: &str, peer: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req
        .body(Body::from(form(&[("username", name), ("password", PASSWORD)])))
        .unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    oneshot(&h.router, req).await
}

/// Whether the session cookie set for a sign-in as alice from `peer`
/// with `headers` is `Secure`.
async fn secure(h: &Harness, peer: &str, headers: &[(&str, &str)]) -> bool {
    let r = login_from(h, "alice", peer, headers).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    cookies[0].contains("; Secure")
}

#[tokio::test]
async fn cookies_are_secure_when_configured_or_forwarded_over_https_by_a_trusted_proxy() {
    let https = [("x-forwarded-proto", "https")];
    let check = |secure_cookies: bool, proxies: &'static [&'static str]| {
        let h = Harness::new(move |c| {
            c.web.secure_cookies = secure_cookies;
            c.web.sign_ins_per_user_per_minute = 0;
            c.web.trusted_proxies = proxies.iter().map(|p| p.parse().unwrap()).collect();
        });
        add_user(&h, "alice", Role::Viewer, None);
        h
    };
    // Neither configured nor trusted: the header changes nothing.
    let h = check(false, &[]);
    assert!(!secure(&h, "192.0.2.7:5000", &[]).await);
    assert!(!secure(&h, "192.0.2.7:5000", &https).await);

    // Always, with `web.secure_cookies`.
    let h = check(true, &[]);
    assert!(secure(&h, "192.0.2.7:5000", &[]).await);
    assert!(secure(&h, "192.0.2.7:5000", &[("x-forwarded-proto", "http")]).await);

    // From a trusted proxy: as its first X-Forwarded-Proto says.
    let h = check(false, &["192.0.2.7", "2001:db8::/64"]);
    assert!(secure(&h, "192.0.2.7:5000", &https).await);
    assert!(secure(&h, "192.0.2.7:5000", &[("x-forwarded-proto", "HTTPS, http")]).await);
    assert!(secure(&h, "[::ffff:192.0.2.7]:5000", &https).await, "IPv4-mapped");
    assert!(secure(&h, "[2001:db8::1]:443", &https).await);
    assert!(!secure(&h, "192.0.2.7:5000", &[("x-forwarded-proto", "http")]).await);
    assert!(!secure(&h, "192.0.2.7:5000", &[("x-forwarded-proto", "http, https")]).await);
    assert!(!secure(&h, "192.0.2.7:5000", &[]).await);
    // From anyone else the header is not believed.
    assert!(!secure(&h, "192.0.2.8:5000", &https).await);
    assert!(secure(&h, "[2001:db8::2]:443", &https).await, "in the trusted network");
    assert!(!secure(&h, "[2001:db8:0:1::1]:443", &https).await);

    // Signing out clears the cookie with the same attribute.
    let r = login_from(&h, "alice", "192.0.2.7:5000", &https).await;
    let session = cookie(&r);
    let token = csrf(&h, &session);
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/logout")
        .header(header::COOKIE, format!("sealtrail_session={session}"))
        .header("x-forwarded-proto", "https")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[("csrf", &token)])))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.0.2.7:5000".parse::<SocketAddr>().unwrap()));
    let r = oneshot(&h.router, req).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let cleared = set_cookies(&r);
    assert!(
        cleared
            .iter()
            .any(|c| c.contains("Max-Age=0") && c.contains("; Secure")),
        "{cleared:?}"
    );
}

/// Enrol TOTP for the user of session `s` through the account page; the
/// shared secret.
async fn enrol_totp(h: &Harness, s: &str) -> Vec<u8> {
    let token = csrf(h, s);
    let r = request(
        h,
        Method::POST,
        "/account/totp/start",
        Some(s),
        &[],
        Some(form(&[("csrf", &token)])),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let html = request(h, Method::GET, "/account", Some(s), &[], None).await.text();
    let secret = base32_decode(between(&html, "<code class=\"secret\">", "</code>")[0]);
    let code = rfc6238(&secret, now(), 6);
    let r = request(
        h,
        Method::POST,
        "/account/totp/confirm",
        Some(s),
        &[],
        Some(form(&[("csrf", &token), ("code", &code)])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    secret
}

#[tokio::test]
async fn the_user_page_requires_and_resets_totp_revokes_sessions_and_makes_keys_on_record() {
    let h = Harness::new(|c| c.web.sign_ins_per_user_per_minute = 0);
    add_user(&h, "root", Role::Admin, None);
    add_user(&h, "vic", Role::Viewer, None);
    let root = sign_in(&h, "root").await;
    let token = csrf(&h, &root);
    let act = |action: &'static str, fields: Vec<(&'static str, String)>| {
        let (h, root, token) = (&h, root.clone(), token.clone());
        async move {
            let mut body = vec![("csrf", token)];
            body.extend(fields);
            let body: Vec<(&str, &str)> = body.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(
                h,
                Method::POST,
                &format!("/users/vic/{action}"),
                Some(&root),
                &[],
                Some(form(&body)),
            )
            .await
        }
    };
    let required = |h: &Harness| h.app.meta.credentials("vic").unwrap().unwrap().totp_required;

    // Require TOTP: vic's next sign-in is sent to enrol; then stop requiring it.
    let r = act("totp-require", vec![("required", "on".into())]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("vic now needs TOTP."), "{}", r.text());
    assert!(required(&h));
    let r = login(&h, &[("username", "vic"), ("password", PASSWORD), ("next", "/search")]).await;
    assert_eq!((r.status.as_u16(), location(&r)), (303, "/account"));
    let r = act("totp-require", vec![("required", "off".into())]).await;
    assert!(r.text().contains("vic no longer needs TOTP."), "{}", r.text());
    assert!(!required(&h));
    let r = login(&h, &[("username", "vic"), ("password", PASSWORD), ("next", "/search")]).await;
    assert_eq!((r.status.as_u16(), location(&r)), (303, "/search"));

    // Reset TOTP: the password alone signs in again.
    let vic = sign_in(&h, "vic").await;
    enrol_totp(&h, &vic).await;
    let r = login(&h, &[("username", "vic"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 200, "a code is asked for");
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    // Only an admin may.
    let vic_token = csrf(&h, &vic);
    let r = request(
        &h,
        Method::POST,
        "/users/vic/totp-reset",
        Some(&vic),
        &[],
        Some(form(&[("csrf", &vic_token)])),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = act("totp-reset", vec![]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Removed the TOTP of vic."), "{}", r.text());
    assert!(h.app.meta.credentials("vic").unwrap().unwrap().totp_secret.is_none());
    let vic2 = sign_in(&h, "vic").await;

    // Revoke one of vic's sessions from the user page; the other lives.
    let handle = sealtrail_meta::session_handle(&vic);
    let page = request(&h, Method::GET, "/users/vic", Some(&root), &[], None)
        .await
        .text();
    assert!(page.contains(&handle), "vic's sessions are listed: {page}");
    let r = act("revoke-session", vec![("session", handle.clone())]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Revoked the session."), "{}", r.text());
    let r = request(&h, Method::GET, EVENTS, Some(&vic), &[], None).await;
    assert_eq!(r.status, 401, "the revoked session is refused");
    assert_eq!(
        request(&h, Method::GET, EVENTS, Some(&vic2), &[], None).await.status,
        200
    );
    // Once only, and only vic's sessions under vic's name.
    let r = act("revoke-session", vec![("session", handle.clone())]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = act(
        "revoke-session",
        vec![("session", sealtrail_meta::session_handle(&root))],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        request(&h, Method::GET, "/users", Some(&root), &[], None).await.status,
        200
    );

    // A key made from the page is recorded as made by root.
    let r = act("keys", vec![("scope", "read".into()), ("key_name", "nightly".into())]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = between(&r.text(), "<code class=\"secret\">", "</code>")[0].to_string();
    let key_id = secret.split('_').nth(1).unwrap().to_string();

    let root_id = format!("user:{}", h.app.meta.user("root").unwrap().unwrap().id);
    let vic_id = h.app.meta.user("vic").unwrap().unwrap().id;
    let created = system_events(&h, "api_key.created").await;
    let made: Vec<&Value> = created
        .iter()
        .filter(|e| e["targets"][0]["id"] == key_id.as_str())
        .collect();
    assert_eq!(made.len(), 1, "{created:?}");
    assert_eq!(made[0]["actor"]["id"], root_id.as_str(), "{}", made[0]);
    assert_eq!(made[0]["targets"][0]["name"], "nightly", "{}", made[0]);
    assert_eq!(made[0]["details"]["scope"], "read", "{}", made[0]);

    let required: Vec<Value> = system_events(&h, "user.totp_required")
        .await
        .iter()
        .inspect(|e| {
            assert_eq!(e["actor"]["id"], root_id.as_str(), "{e}");
            assert_eq!(e["targets"][0]["id"], vic_id.as_str(), "{e}");
        })
        .map(|e| e["details"]["required"].clone())
        .collect();
    assert_eq!(required.len(), 2, "{required:?}");
    assert!(
        required.contains(&json!(true)) && required.contains(&json!(false)),
        "{required:?}"
    );
    let reset = system_events(&h, "user.totp_reset").await;
    assert_eq!(reset.len(), 1, "the refused reset is not recorded: {reset:?}");
    assert_eq!(reset[0]["actor"]["id"], root_id.as_str());
    let revoked = system_events(&h, "session.revoked").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["targets"][0]["id"], vic_id.as_str());
    assert_eq!(revoked[0]["details"]["session"], &handle[..16]);
}
