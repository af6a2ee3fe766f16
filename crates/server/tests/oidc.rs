//! OpenID Connect sign-in against a real, certified OpenID Provider:
//! panva's oidc-provider run by Node.js from tests/oidc-provider (its
//! packages are installed by scripts/oidc-provider, which scripts/test
//! runs first). A cookie-keeping HTTP client plays the browser through the
//! provider's sign-in page, and the redirect back to `redirect_url` is
//! captured, not followed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openidconnect::url::Url;
use sealtrail_server::oidc::{Callback, Oidc, OidcConfig, OidcError, OidcIdentity, PendingLogin};

const REDIRECT_URL: &str = "http://127.0.0.1:9/auth/oidc/callback";

#[path = "support/oidc_provider.rs"]
mod oidc_provider;
use oidc_provider::CLIENT_ID;

/// The provider, redirecting to `REDIRECT_URL`.
struct Provider;

impl Provider {
    fn start() -> oidc_provider::Provider {
        oidc_provider::Provider::start_for(0, REDIRECT_URL)
    }

    fn start_on(port: u16) -> oidc_provider::Provider {
        oidc_provider::Provider::start_for(port, REDIRECT_URL)
    }
}

/// Plays the browser: follows the authorization URL through the
/// provider's sign-in form as `account`, and returns the parameters of the
/// redirect to `REDIRECT_URL` without following it.
async fn sign_in_at_provider(authorize_url: &str, account: &str) -> Callback {
    let browser = oidc_provider::browser();
    let mut url = Url::parse(authorize_url).expect("authorization URL");
    let mut posted = false;
    for _ in 0..10 {
        if url.as_str().starts_with(REDIRECT_URL) {
            let mut callback = Callback::default();
            for (k, v) in url.query_pairs() {
                let v = Some(v.into_owned());
                match k.as_ref() {
                    "code" => callback.code = v,
                    "state" => callback.state = v,
                    "error" => callback.error = v,
                    "error_description" => callback.error_description = v,
                    "iss" => callback.iss = v,
                    _ => {}
                }
            }
            return callback;
        }
        let response = browser.get(url.clone()).send().await.expect("provider answers");
        let status = response.status();
        if status.is_redirection() {
            url = oidc_provider::redirect_target(&url, &response);
            continue;
        }
        let page = response.text().await.expect("page text");
        assert_eq!(status, 200, "{url}: {page}");
        assert!(!posted, "the sign-in form came back after posting {account}: {page}");
        url = oidc_provider::submit_sign_in(&browser, &url, &page, account).await;
        posted = true;
    }
    panic!("no redirect to {REDIRECT_URL} after 10 steps; last at {url}");
}

/// Begins a sign-in, signs `account` in at the provider, and returns the
/// pending login and the callback parameters.
async fn authorize(oidc: &Oidc, account: &str) -> (PendingLogin, Callback) {
    let (url, pending) = oidc.begin();
    let callback = sign_in_at_provider(&url, account).await;
    assert_eq!(callback.state.as_deref(), Some(pending.state.as_str()));
    (pending, callback)
}

fn code(callback: &Callback) -> &str {
    callback.code.as_deref().expect("the provider sent a code")
}

#[tokio::test]
async fn users_sign_in_with_their_role_and_tenant() {
    let provider = Provider::start();
    let oidc = provider.relying_party().await;

    let (url, pending) = oidc.begin();
    let request = Url::parse(&url).expect("authorization URL");
    let params: std::collections::BTreeMap<String, String> = request.query_pairs().into_owned().collect();
    assert!(url.starts_with(&format!("{}/auth?", provider.issuer)), "{url}");
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["redirect_uri"], REDIRECT_URL);
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["state"], pending.state);
    assert_eq!(params["nonce"], pending.nonce);
    assert_eq!(params["scope"], "openid profile email sealtrail");
    assert_ne!(params["code_challenge"], pending.pkce_verifier, "S256, not plain");
    // The pending login survives a session store's round trip.
    let stored = serde_json::to_string(&pending).expect("serialise");
    let pending: PendingLogin = serde_json::from_str(&stored).expect("deserialise");

    let callback = sign_in_at_provider(&url, "alice").await;
    assert_eq!(callback.iss.as_deref(), Some(provider.issuer.as_str()));
    let alice = oidc.finish_callback(&pending, &callback).await.expect("alice signs in");
    assert_eq!(
        alice,
        OidcIdentity {
            issuer: provider.issuer.clone(),
            subject: "alice".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            role: "auditor".into(),
            tenant: Some("acme".into()),
        }
    );

    for (account, username, role, tenant) in [
        ("bob", "bob", "admin", None),
        // No preferred_username: the e-mail address names the user.
        ("carol", "carol@example.com", "viewer", Some("globex")),
    ] {
        let (pending, callback) = authorize(&oidc, account).await;
        let who = oidc
            .finish(&pending, code(&callback), callback.state.as_deref().expect("state"))
            .await
            .unwrap_or_else(|e| panic!("{account}: {e}"));
        assert_eq!(
            (
                who.subject.as_str(),
                who.username.as_str(),
                who.role.as_str(),
                who.tenant.as_deref()
            ),
            (account, username, role, tenant)
        );
    }
}

#[tokio::test]
async fn forged_replayed_and_stale_answers_are_refused() {
    let provider = Provider::start();
    let oidc = provider.relying_party().await;

    // Another state: refused before the code is spent...
    let (pending, callback) = authorize(&oidc, "alice").await;
    let e = oidc
        .finish(&pending, code(&callback), "forged-state")
        .await
        .expect_err("wrong state");
    assert!(matches!(e, OidcError::StateMismatch), "{e}");
    assert!(e.to_string().contains("state differs"), "{e}");
    let mut missing = callback.clone();
    missing.state = None;
    let e = oidc.finish_callback(&pending, &missing).await.expect_err("no state");
    assert_eq!(e.to_string(), "the sign-in answer has no `state` parameter");
    // ...so the right state still signs in with it, once.
    let state = callback.state.clone().expect("state");
    oidc.finish(&pending, code(&callback), &state)
        .await
        .expect("first use of the code");
    let e = oidc
        .finish(&pending, code(&callback), &state)
        .await
        .expect_err("replayed code");
    assert!(matches!(e, OidcError::CodeExchange { .. }), "{e}");
    assert!(e.to_string().contains("invalid_grant"), "{e}");

    // A pending login whose nonce was changed: the ID token does not match it.
    let (mut pending, callback) = authorize(&oidc, "alice").await;
    pending.nonce = "a-nonce-this-sign-in-never-sent".into();
    let e = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect_err("wrong nonce");
    assert!(matches!(e, OidcError::IdToken(_)), "{e}");
    assert!(e.to_string().contains("nonce differs"), "{e}");

    // A PKCE verifier that does not match the challenge: the provider refuses the code.
    let (mut pending, callback) = authorize(&oidc, "alice").await;
    pending.pkce_verifier = "x".repeat(64);
    let e = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect_err("wrong verifier");
    assert!(e.to_string().contains("invalid_grant"), "{e}");

    // Older than max_login_seconds (600 by default).
    let (mut pending, callback) = authorize(&oidc, "alice").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    pending.created = now - 601;
    let e = oidc.finish_callback(&pending, &callback).await.expect_err("stale");
    assert!(matches!(e, OidcError::Expired { max_seconds: 600, .. }), "{e}");
    pending.created = now - 590;
    oidc.finish_callback(&pending, &callback)
        .await
        .expect("within the bound");

    // The provider's error answer and an answer naming another issuer.
    let (pending, _) = authorize(&oidc, "alice").await;
    let refused = Callback {
        error: Some("access_denied".into()),
        error_description: Some("the user said no".into()),
        state: Some(pending.state.clone()),
        ..Callback::default()
    };
    let e = oidc.finish_callback(&pending, &refused).await.expect_err("refused");
    assert_eq!(
        e.to_string(),
        "the OpenID Provider refused the sign-in: access_denied (the user said no)"
    );
    assert!(!e.is_provider_fault());
    let long = Callback {
        error_description: Some("x".repeat(5000)),
        ..refused
    };
    let e = oidc.finish_callback(&pending, &long).await.expect_err("refused");
    assert!(e.to_string().ends_with(&format!("({}…)", "x".repeat(200))), "{e}");
    let (pending, mut callback) = authorize(&oidc, "alice").await;
    callback.iss = Some("https://elsewhere.example".into());
    let e = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect_err("other issuer");
    assert!(matches!(e, OidcError::WrongIssuer { .. }), "{e}");
}

#[tokio::test]
async fn accounts_without_a_known_role_are_refused() {
    let provider = Provider::start();
    let oidc = provider.relying_party().await;

    let (pending, callback) = authorize(&oidc, "dave").await;
    let e = oidc.finish_callback(&pending, &callback).await.expect_err("no role");
    assert_eq!(
        e.to_string(),
        "the ID token of \"dave\" has no `sealtrail_role` claim and oidc.default_role is not set; give the user a role at the OpenID Provider"
    );
    let (pending, callback) = authorize(&oidc, "erin").await;
    let e = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect_err("unknown role");
    assert_eq!(
        e.to_string(),
        "the ID token's `sealtrail_role` claim is \"superuser\"; expected one of admin, auditor, viewer, ingest (or a list holding exactly one)"
    );

    // A list holding one role among other entries names it; two are refused.
    let (pending, callback) = authorize(&oidc, "frank").await;
    let frank = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect("one role in a list");
    assert_eq!((frank.username.as_str(), frank.role.as_str()), ("frank", "auditor"));
    let (pending, callback) = authorize(&oidc, "grace").await;
    let e = oidc.finish_callback(&pending, &callback).await.expect_err("two roles");
    assert_eq!(
        e.to_string(),
        "the ID token's `sealtrail_role` claim holds several roles (admin, viewer); give the user exactly one at the OpenID Provider"
    );

    // With a default role, a user without the claim gets it; one with an
    // unknown role is still refused.
    let mut config = provider.config();
    config.default_role = Some("viewer".into());
    let oidc = Oidc::discover(config).await.expect("discovery");
    let (pending, callback) = authorize(&oidc, "dave").await;
    let dave = oidc.finish_callback(&pending, &callback).await.expect("default role");
    assert_eq!((dave.role.as_str(), dave.tenant), ("viewer", None));
    let (pending, callback) = authorize(&oidc, "erin").await;
    let e = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect_err("unknown role");
    assert!(matches!(e, OidcError::UnknownRole { .. }), "{e}");

    // The role read from another claim, here one holding a tenant name.
    let mut config = provider.config();
    config.role_claim = "sealtrail_tenant".into();
    let oidc = Oidc::discover(config).await.expect("discovery");
    let (pending, callback) = authorize(&oidc, "alice").await;
    let e = oidc.finish_callback(&pending, &callback).await.expect_err("not a role");
    assert!(
        e.to_string()
            .starts_with("the ID token's `sealtrail_tenant` claim is \"acme\""),
        "{e}"
    );
}

#[tokio::test]
async fn clients_sign_in_with_their_secret_or_as_public_clients() {
    let provider = Provider::start();
    let mut config = provider.config();
    config.client_secret = Some("not-the-secret".into());
    let oidc = Oidc::discover(config).await.expect("discovery needs no secret");
    let (pending, callback) = authorize(&oidc, "alice").await;
    let e = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect_err("wrong secret");
    assert!(matches!(e, OidcError::CodeExchange { .. }), "{e}");
    assert!(e.to_string().contains("invalid_client"), "{e}");

    // A public client (no secret): PKCE alone binds the code to this sign-in.
    let mut config = provider.config();
    config.client_id = format!("{CLIENT_ID}-public");
    config.client_secret = None;
    let public = Oidc::discover(config).await.expect("discovery");
    let (pending, callback) = authorize(&public, "bob").await;
    let bob = public
        .finish_callback(&pending, &callback)
        .await
        .expect("public client");
    assert_eq!((bob.username.as_str(), bob.role.as_str()), ("bob", "admin"));
    // The confidential client cannot redeem the public client's code, nor
    // take its ID token (audience).
    let (pending, callback) = authorize(&public, "bob").await;
    let e = provider
        .relying_party()
        .await
        .finish_callback(&pending, &callback)
        .await
        .expect_err("other client");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
}

fn config_at(issuer: &str) -> OidcConfig {
    let mut c = OidcConfig::new(issuer, CLIENT_ID, REDIRECT_URL);
    c.timeout_ms = 500;
    c
}

#[tokio::test]
async fn an_unreachable_issuer_is_named_with_the_cause() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let e = Oidc::discover(config_at(&issuer)).await.expect_err("nothing listens");
    let text = e.to_string();
    assert!(matches!(e, OidcError::Discovery { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "could not read the OpenID Provider's discovery document at {issuer}/.well-known/openid-configuration: "
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connect"), "{text}");
    assert!(e.is_provider_fault());
    assert!(
        text.ends_with("check oidc.issuer_url and that the provider is reachable from the server"),
        "{text}"
    );

    // A listener that never answers: the request ends at timeout_ms.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let issuer = format!("http://{}", silent.local_addr().expect("address"));
    let started = Instant::now();
    let e = Oidc::discover(config_at(&issuer)).await.expect_err("no answer");
    let waited = started.elapsed();
    assert!(
        e.to_string().contains("timed out after 500 ms (oidc.timeout_ms)"),
        "{e}"
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    drop(silent);

    // A configuration mistake is named before anything is sent.
    let e = Oidc::discover(config_at("not a url")).await.expect_err("bad URL");
    assert!(
        e.to_string().starts_with("oidc.issuer_url: \"not a url\" is not a URL"),
        "{e}"
    );
}

/// Answers every connection with `response` (read the request first).
fn one_answer_server(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream): Result<TcpStream, _> = stream else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn redirects_are_not_followed_and_answers_are_bounded() {
    let provider = Provider::start();
    // A redirect to the real provider's document is not followed.
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: {}/.well-known/openid-configuration\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        provider.issuer
    );
    let issuer = one_answer_server(redirect.into_bytes());
    let e = Oidc::discover(config_at(&issuer)).await.expect_err("redirect");
    assert!(e.to_string().contains("302"), "{e}");

    // An answer of more than 1 MiB, announced or not, is cut off.
    let big = vec![b' '; (1 << 20) + 1];
    for announced in [true, false] {
        let mut answer = if announced {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                big.len()
            )
        } else {
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_string()
        }
        .into_bytes();
        answer.extend_from_slice(&big);
        let issuer = one_answer_server(answer);
        let e = Oidc::discover(config_at(&issuer)).await.expect_err("too large");
        assert!(
            e.to_string().contains("larger than 1048576 bytes"),
            "announced {announced}: {e}"
        );
    }

    // A document naming another issuer than the one configured.
    let document = reqwest::get(format!("{}/.well-known/openid-configuration", provider.issuer))
        .await
        .expect("provider answers")
        .text()
        .await
        .expect("document");
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{document}",
        document.len()
    );
    let issuer = one_answer_server(answer.into_bytes());
    let e = Oidc::discover(config_at(&issuer)).await.expect_err("other issuer");
    assert!(e.to_string().contains(&provider.issuer), "{e}");
}

#[tokio::test]
async fn keys_rotated_by_the_provider_are_read_again_at_most_every_ten_seconds() {
    let first = Provider::start();
    let oidc = first.relying_party().await;
    let port: u16 = first
        .issuer
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("issuer port");
    let (pending, callback) = authorize(&oidc, "alice").await;
    oidc.finish_callback(&pending, &callback)
        .await
        .expect("the key read at start");

    // The provider restarts with a new key: the relying party reads it.
    drop(first);
    let second = Provider::start_on(port);
    let (pending, callback) = authorize(&oidc, "alice").await;
    let alice = oidc
        .finish_callback(&pending, &callback)
        .await
        .expect("the new key read");
    assert_eq!(
        (alice.issuer.as_str(), alice.role.as_str()),
        (second.issuer.as_str(), "auditor")
    );

    // Another rotation right after is not read: at most one read per
    // MIN_KEY_REFRESH, whatever tokens arrive.
    drop(second);
    let _third = Provider::start_on(port);
    let (pending, callback) = authorize(&oidc, "alice").await;
    let e = oidc.finish_callback(&pending, &callback).await.expect_err("too soon");
    assert_eq!(
        e.to_string(),
        "the ID token was refused: it is signed with a key the provider does not publish (its keys are read again at most every 10 s); start signing in again, and if it persists check the provider's and the server's clocks and oidc.client_id"
    );
    assert_eq!(sealtrail_server::oidc::MIN_KEY_REFRESH, Duration::from_secs(10));
}
