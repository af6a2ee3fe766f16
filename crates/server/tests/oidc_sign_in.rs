//! Sign-in to the dashboard through a real OpenID Provider (panva's
//! oidc-provider, see tests/support/oidc_provider.rs), end to end: the
//! server's `/auth/oidc/start` and `/auth/oidc/callback` with a
//! cookie-keeping HTTP client playing the browser.

use std::net::TcpListener;

#[path = "support/oidc_provider.rs"]
mod oidc_provider;
use oidc_provider::browser;

use openidconnect::url::Url;
use sealtrail_meta::{key_event, now_text, Role, Scope};
use sealtrail_server::{Config, Server};
use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

struct Setup {
    server: Server,
    base: String,
    _provider: oidc_provider::Provider,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = oidc_provider::Provider::start_for(0, &format!("{base}/auth/oidc/callback"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: format!("127.0.0.1:{port}").parse().expect("address"),
        ..Config::default()
    };
    config.health.disk_reserve_bytes = 0;
    config.health.disk_warning_percent = 100.0;
    config.health.disk_critical_percent = 100.0;
    config.oidc = Some(provider.config());
    let server = Server::start(config).await.expect("server starts");
    Setup {
        server,
        base,
        _provider: provider,
        _dir: dir,
    }
}

/// Plays the browser from `start` (a URL of this server) through the
/// provider's sign-in form as `account` and back, following redirects,
/// until a page is answered. Returns that page's URL, status and text,
/// and the callback URL the provider sent the browser to.
async fn walk(browser: &reqwest::Client, start: &str, account: &str) -> (Url, u16, String, Option<Url>) {
    let mut url = Url::parse(start).expect("start URL");
    let mut callback = None;
    let mut posted = false;
    for _ in 0..15 {
        if url.path() == "/auth/oidc/callback" {
            callback = Some(url.clone());
        }
        let response = browser.get(url.clone()).send().await.expect("answered");
        let status = response.status();
        if status.is_redirection() {
            url = oidc_provider::redirect_target(&url, &response);
            continue;
        }
        let page = response.text().await.expect("page text");
        let at_provider = url.port() != Url::parse(start).expect("start URL").port();
        if !at_provider || posted {
            return (url, status.as_u16(), page, callback);
        }
        url = oidc_provider::submit_sign_in(browser, &url, &page, account).await;
        posted = true;
    }
    panic!("no page after 15 steps; last at {url}");
}

/// The `action` events in the system log, oldest first.
async fn system_events(s: &Setup, action: &str) -> Vec<Value> {
    let app = &s.server.app;
    app.drain_outbox().expect("outbox drained");
    app.trail("system")
        .expect("system log")
        .sync_index()
        .expect("searchable");
    let (_, admin) = app
        .meta
        .create_key(Scope::Admin, None, "reader", &now_text(), |k| {
            key_event(json!({"id": "test", "type": "user"}), "api_key.created", k)
        })
        .expect("key");
    let reply = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/logs/system/events?action={action}&limit=100&order=oldest",
            s.base
        ))
        .bearer_auth(admin)
        .send()
        .await
        .expect("answered");
    assert_eq!(reply.status(), 200);
    let body: Value = serde_json::from_str(&reply.text().await.expect("text")).expect("JSON");
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

/// The reasons of the refused sign-ins through the provider recorded so far.
async fn oidc_refusals(s: &Setup) -> Vec<(Option<String>, String)> {
    system_events(s, "user.sign_in_failed")
        .await
        .iter()
        .map(|e| {
            assert_eq!(e["details"]["method"], "oidc", "{e}");
            assert_eq!(e["outcome"], "failure", "{e}");
            (
                e["actor"]["name"].as_str().map(str::to_string),
                e["details"]["reason"].as_str().expect("a reason").to_string(),
            )
        })
        .collect()
}

/// Plays the browser from `start` through the provider's sign-in form as
/// `account` up to the provider's answer; returns the callback URL
/// without following it.
async fn to_callback(browser: &reqwest::Client, start: &str, account: &str) -> Url {
    let mut url = Url::parse(start).expect("start URL");
    for _ in 0..15 {
        if url.path() == "/auth/oidc/callback" {
            return url;
        }
        let response = browser.get(url.clone()).send().await.expect("answered");
        if response.status().is_redirection() {
            url = oidc_provider::redirect_target(&url, &response);
            continue;
        }
        let page = response.text().await.expect("page text");
        url = oidc_provider::submit_sign_in(browser, &url, &page, account).await;
    }
    panic!("no callback after 15 steps; last at {url}");
}

#[tokio::test]
async fn a_provider_account_signs_in_with_its_role_and_tenant_once() {
    let s = setup().await;
    let browser = browser();
    let login = browser
        .get(format!("{}/login", s.base))
        .send()
        .await
        .expect("sign-in page")
        .text()
        .await
        .expect("text");
    assert!(
        login.contains("/auth/oidc/start"),
        "the sign-in page links to the provider: {login}"
    );

    let (url, status, page, callback) = walk(
        &browser,
        &format!("{}/auth/oidc/start?next=%2Faccount", s.base),
        "alice",
    )
    .await;
    assert_eq!((url.path(), status), ("/account", 200), "{page}");
    assert!(page.contains("alice (auditor)"), "signed in as alice, auditor: {page}");
    let alice = s.server.app.meta.user("alice").expect("read").expect("created");
    assert_eq!((alice.role, alice.tenant.as_deref()), (Role::Auditor, Some("acme")));
    let linked = s.server.app.meta.federated_identities(&alice.id).expect("identities");
    assert_eq!(linked.len(), 1, "{linked:?}");
    let signed_in = system_events(&s, "user.signed_in").await;
    assert_eq!(signed_in.len(), 1, "{signed_in:?}");
    assert_eq!(signed_in[0]["details"]["method"], "oidc", "{}", signed_in[0]);
    assert_eq!(signed_in[0]["targets"][0]["id"], alice.id.as_str());
    assert!(oidc_refusals(&s).await.is_empty());

    // The provider's answer works once, and only in the browser that
    // started the sign-in.
    let callback = callback.expect("went through the callback");
    let replay = browser.get(callback.clone()).send().await.expect("answered");
    assert_eq!(replay.status(), 403);
    let other = self::browser().get(callback).send().await.expect("answered");
    assert_eq!(other.status(), 403);
    assert!(other
        .text()
        .await
        .expect("text")
        .contains("not started in this browser"));
    let not_started = (None, "not started in this browser, expired or already used".to_string());
    assert_eq!(oidc_refusals(&s).await, vec![not_started.clone(), not_started]);

    // Signing in again finds the same user.
    let (url, status, _, _) = walk(
        &self::browser(),
        &format!("{}/auth/oidc/start?next=%2Faccount", s.base),
        "alice",
    )
    .await;
    assert_eq!((url.path(), status), ("/account", 200));
    let again = s.server.app.meta.user("alice").expect("read").expect("exists");
    assert_eq!(again.id, alice.id);
    assert_eq!(
        s.server.app.provider_sign_in.in_flight(),
        0,
        "every login in flight was used"
    );
    let methods: Vec<Value> = system_events(&s, "user.signed_in")
        .await
        .iter()
        .map(|e| e["details"]["method"].clone())
        .collect();
    assert_eq!(methods, vec![json!("oidc"), json!("oidc")]);

    // A disabled account is refused, and the refusal recorded.
    s.server
        .app
        .meta
        .set_user_disabled("alice", true, &json!({"id": "test", "type": "user"}))
        .expect("disabled");
    let (url, status, page, _) = walk(&self::browser(), &format!("{}/auth/oidc/start", s.base), "alice").await;
    assert_eq!((url.path(), status), ("/auth/oidc/callback", 403), "{page}");
    let refusals = oidc_refusals(&s).await;
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    let (name, reason) = &refusals[2];
    assert_eq!(name.as_deref(), Some("alice"));
    assert!(reason.contains("disabled"), "{reason}");
    s.server.shutdown();
    s.server.wait().await.expect("stops");
}

#[tokio::test]
async fn accounts_the_provider_gives_no_usable_role_are_refused() {
    let s = setup().await;
    let browser = browser();
    let (url, status, page, _) = walk(&browser, &format!("{}/auth/oidc/start", s.base), "dave").await;
    assert_eq!((url.path(), status), ("/auth/oidc/callback", 403), "{page}");
    assert!(page.contains("sealtrail_role"), "the refusal names the claim: {page}");
    assert!(
        s.server.app.meta.user("dave").expect("read").is_none(),
        "no user was made"
    );
    let (url, status, page, _) = walk(&self::browser(), &format!("{}/auth/oidc/start", s.base), "erin").await;
    assert_eq!((url.path(), status), ("/auth/oidc/callback", 403), "{page}");
    // The provider's answer with a state other than the one sent, in
    // the browser that started the sign-in, is refused.
    let bob = self::browser();
    let callback = to_callback(&bob, &format!("{}/auth/oidc/start", s.base), "bob").await;
    let mut forged = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let answer = bob.get(forged).send().await.expect("answered");
    assert_eq!(answer.status(), 403);
    assert!(
        s.server.app.meta.user("bob").expect("read").is_none(),
        "no user was made"
    );
    let refusals = oidc_refusals(&s).await;
    assert_eq!(refusals.len(), 3, "dave, erin and the forged state: {refusals:?}");
    assert_eq!(refusals[2].0, None, "{refusals:?}");
    assert!(refusals[2].1.contains("state"), "{refusals:?}");

    // Callbacks count towards the sign-in limit of their address
    // (web.sign_ins_per_ip_per_minute, 30): refusals recorded are bounded.
    let stranger = self::browser();
    let (mut refused, mut limited) = (0, 0);
    for _ in 0..40 {
        let r = stranger
            .get(format!("{}/auth/oidc/callback?code=c&state=s", s.base))
            .send()
            .await
            .expect("answered");
        match r.status().as_u16() {
            403 => refused += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("callback answered {other}"),
        }
    }
    assert!(limited > 0 && refused < 30, "{refused} refused, {limited} limited");
    assert_eq!(oidc_refusals(&s).await.len(), 3 + refused, "each refusal once, no more");
    assert!(refusals[0].1.contains("sealtrail_role"), "{refusals:?}");
    assert!(refusals[1].1.contains("\"superuser\""), "{refusals:?}");
    // Without a session, pages still send the browser to sign in.
    let search = browser
        .get(format!("{}/search", s.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(search.status(), 303);
    s.server.shutdown();
    s.server.wait().await.expect("stops");
}
