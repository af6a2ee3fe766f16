//! Sign-in through an OpenID Provider (`[oidc]`): `/auth/oidc/start`
//! sends the browser to the provider, `/auth/oidc/callback` takes it back,
//! checks the provider's answer ([`crate::oidc`]) and opens a session for
//! the user the provider vouched for ([`sealtrail_meta::Meta::federated_user`]).
//!
//! The login in flight (state, nonce, PKCE verifier) stays on the server,
//! in a bounded table keyed by a random value that the browser holds in a
//! cookie scoped to `/auth/oidc`: the callback is honoured only in the
//! browser that started it, and only once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::app::App;
use crate::config::Config;
use crate::oidc::{Callback, Oidc, OidcConfig, PendingLogin};
use crate::problem::Problem;
use sealtrail_meta::{Client, FederatedIdentity, Role, SecondFactor, SignInRefused};

/// The cookie naming a login in flight.
const COOKIE: &str = "sealtrail_oidc";

/// Logins in flight at once; one more is refused with 503 until some end
/// or expire.
pub const MAX_PENDING: usize = 1024;

/// Seconds to wait before starting again when the table is full.
const RETRY_AFTER: u64 = 10;

/// Sign-in through the configured provider, if any.
pub struct ProviderSignIn {
    config: Option<OidcConfig>,
    /// Discovered on first use, so that a provider down at startup does
    /// not stop the server; a failed discovery is tried again next time.
    relying_party: OnceCell<Arc<Oidc>>,
    pending: Mutex<HashMap<String, (PendingLogin, String, Instant)>>,
}

impl ProviderSignIn {
    pub fn new(config: &Config) -> ProviderSignIn {
        ProviderSignIn {
            config: config.oidc.clone(),
            relying_party: OnceCell::new(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The label of the sign-in button, when a provider is configured.
    pub fn label(&self) -> Option<&str> {
        self.config.as_ref().map(|c| c.display_name.as_str())
    }

    async fn relying_party(&self) -> Result<&Arc<Oidc>, Problem> {
        let Some(config) = &self.config else {
            return Err(Problem::not_found(
                "sign-in through an OpenID Provider is not configured ([oidc])",
            ));
        };
        self.relying_party
            .get_or_try_init(|| async { Oidc::discover(config.clone()).await.map(Arc::new) })
            .await
            .map_err(|e| {
                metrics::counter!("sealtrail_oidc_failures_total", "stage" => "discovery").increment(1);
                Problem::unavailable_after("the OpenID Provider cannot be reached", e)
            })
    }

    fn max_age(&self) -> Duration {
        Duration::from_secs(self.config.as_ref().map_or(600, |c| c.max_login_seconds))
    }

    /// Keep `pending` under a new random key, returned; `None` when the
    /// table is full of live logins.
    fn hold(&self, pending: PendingLogin, next: String) -> Result<String, Problem> {
        let key = sealtrail_meta::new_session_secrets().map_err(Problem::internal)?.0;
        let max_age = self.max_age();
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= MAX_PENDING {
            table.retain(|_, (_, _, at)| at.elapsed() < max_age);
        }
        if table.len() >= MAX_PENDING {
            metrics::counter!("sealtrail_oidc_failures_total", "stage" => "pending-full").increment(1);
            let mut p = Problem::unavailable(format!(
                "{MAX_PENDING} sign-ins through the OpenID Provider are in progress; try again shortly"
            ));
            p.retry_after = Some(RETRY_AFTER);
            return Err(p);
        }
        table.insert(key.clone(), (pending, next, Instant::now()));
        Ok(key)
    }

    /// The login in flight under `key`, removed: each is used once.
    fn take(&self, key: &str) -> Option<(PendingLogin, String)> {
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(key).map(|(p, next, _)| (p, next))
    }

    /// Logins in flight, for tests and health.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/auth/oidc/start", get(start))
        .route("/auth/oidc/callback", get(callback))
}

#[derive(Deserialize)]
struct StartParams {
    next: Option<String>,
}

async fn start(State(app): State<Arc<App>>, parts: Parts, Query(q): Query<StartParams>) -> Response {
    let rp = match app.provider_sign_in.relying_party().await {
        Ok(rp) => rp,
        Err(p) => return p.into_response(),
    };
    let (url, pending) = rp.begin();
    let next = super::auth::safe_next(q.next.as_deref()).to_string();
    let key = match app.provider_sign_in.hold(pending, next) {
        Ok(k) => k,
        Err(p) => return p.into_response(),
    };
    let mut response = Redirect::to(&url).into_response();
    let secure = if super::auth::secure_cookies(&app.config.web, &parts) {
        "; Secure"
    } else {
        ""
    };
    let max_age = app.provider_sign_in.max_age().as_secs();
    // Lax, not Strict: the callback is a top-level navigation coming from
    // the provider's site, which must carry the cookie.
    let cookie = format!("{COOKIE}={key}; HttpOnly; SameSite=Lax; Path=/auth/oidc; Max-Age={max_age}{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn callback(State(app): State<Arc<App>>, parts: Parts, Query(answer): Query<Callback>) -> Response {
    if app.provider_sign_in.config.is_none() {
        return Problem::not_found("sign-in through an OpenID Provider is not configured ([oidc])").into_response();
    }
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(wait) = app.sign_in.over_ip_limit(ip) {
        let mut p = Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many sign-in attempts from this address; try again in {wait} seconds"),
        );
        p.retry_after = Some(wait);
        return p.into_response();
    }
    let client = super::auth::client_of(&parts);
    let Some((pending, next)) = super::auth::cookie(&parts.headers, COOKIE).and_then(|k| app.provider_sign_in.take(&k))
    else {
        return refused(
            &app,
            &client,
            None,
            "not started in this browser, expired or already used".into(),
            "This sign-in was not started in this browser, took too long, or was already used. Start again.".into(),
        )
        .await;
    };
    let rp = match app.provider_sign_in.relying_party().await {
        Ok(rp) => rp,
        Err(p) => return p.into_response(),
    };
    let identity = match rp.finish_callback(&pending, &answer).await {
        Ok(id) => id,
        Err(e) if e.is_provider_fault() => {
            metrics::counter!("sealtrail_oidc_failures_total", "stage" => "provider").increment(1);
            return Problem::unavailable_after("the OpenID Provider's answer could not be checked", e).into_response();
        }
        Err(e) => {
            metrics::counter!("sealtrail_oidc_failures_total", "stage" => "refused").increment(1);
            tracing::info!("sign-in through the OpenID Provider refused: {e}");
            return refused(
                &app,
                &client,
                None,
                e.to_string(),
                format!("Sign-in through the OpenID Provider was refused: {e}"),
            )
            .await;
        }
    };
    let name = Some(identity.username.clone());
    let Some(role) = Role::from_name(&identity.role) else {
        return refused(
            &app,
            &client,
            name,
            format!("unknown role {:?}", identity.role),
            format!("The OpenID Provider gave the unknown role {:?}.", identity.role),
        )
        .await;
    };
    if role == Role::Ingest {
        return refused(
            &app,
            &client,
            name,
            "role ingest".into(),
            "This account has role ingest: it owns API keys and cannot sign in to the pages.".into(),
        )
        .await;
    }
    let (secret, csrf) = match sealtrail_meta::new_session_secrets() {
        Ok(s) => s,
        Err(e) => return Problem::internal(e).into_response(),
    };
    let limits = super::auth::limits(&app.config.web);
    let opened = {
        let (app, secret, client) = (app.clone(), secret.clone(), client.clone());
        crate::request::blocking(move || {
            let now = jiff::Timestamp::now();
            let who = FederatedIdentity {
                issuer: &identity.issuer,
                subject: &identity.subject,
                username: &identity.username,
                role,
                tenant: identity.tenant.as_deref(),
            };
            let user = match app.meta.federated_user(&who, now).map_err(Problem::internal)? {
                Ok(u) => u,
                Err(refused) => return Ok(Err(refused.to_string())),
            };
            match app
                .meta
                .signed_in(&user.id, &SecondFactor::Provider, &secret, &csrf, &client, limits, now)
                .map_err(Problem::internal)?
            {
                Ok(_) => Ok(Ok(())),
                Err(SignInRefused::Gone) => Ok(Err(format!("the account {:?} is disabled", user.name))),
                Err(other) => Err(Problem::internal(format!("unexpected refusal {other:?}"))),
            }
        })
        .await
    };
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            let message = format!("Sign-in through the OpenID Provider was refused: {why}.");
            return refused(&app, &client, name, why, message).await;
        }
        Err(p) => return p.into_response(),
    }
    let mut response = Redirect::to(&next).into_response();
    let secure = super::auth::secure_cookies(&app.config.web, &parts);
    super::auth::set_cookie(&mut response, &secret, app.config.web.session_absolute_secs, secure);
    // The login in flight is spent: drop its cookie.
    let secure = if secure { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}=; HttpOnly; SameSite=Lax; Path=/auth/oidc; Max-Age=0{secure}"
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The sign-in page with `message`, after recording the refusal with
/// `reason` in the system log (`user.sign_in_failed`, method `oidc`), for
/// the user name the provider vouched for when its answer was checked.
async fn refused(app: &Arc<App>, client: &Client, name: Option<String>, reason: String, message: String) -> Response {
    let recorded = {
        let (app, client) = (app.clone(), client.clone());
        crate::request::blocking(move || {
            app.meta
                .provider_sign_in_failed(name.as_deref(), &reason, &client)
                .map_err(Problem::internal)
        })
        .await
    };
    if let Err(p) = recorded {
        return p.into_response();
    }
    super::auth::login_refused(message, app.provider_sign_in.label().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn pending(n: u32) -> PendingLogin {
        PendingLogin {
            state: format!("state-{n}"),
            nonce: format!("nonce-{n}"),
            pkce_verifier: format!("verifier-{n}"),
            created: 0,
        }
    }

    #[test]
    fn logins_in_flight_are_bounded_and_used_once() {
        let config = Config {
            oidc: Some(OidcConfig::new("http://127.0.0.1:9", "c", "http://127.0.0.1:9/cb")),
            ..Config::default()
        };
        let sign_in = ProviderSignIn::new(&config);
        let mut keys = Vec::new();
        for n in 0..MAX_PENDING as u32 {
            keys.push(sign_in.hold(pending(n), "/".into()).expect("room"));
        }
        let full = sign_in.hold(pending(9999), "/".into()).expect_err("full");
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE.as_u16());
        assert_eq!(full.retry_after, Some(RETRY_AFTER));
        let (p, next) = sign_in.take(&keys[7]).expect("held");
        assert_eq!((p.state.as_str(), next.as_str()), ("state-7", "/"));
        assert!(sign_in.take(&keys[7]).is_none(), "a login in flight is used once");
        sign_in.hold(pending(10_000), "/search".into()).expect("room again");
        assert_eq!(sign_in.in_flight(), MAX_PENDING);
    }
}
