//! Sign-in: the `/login` and `/logout` pages, browser sessions, and the
//! CSRF and cross-site checks of every request a session cookie
//! authenticates.
//!
//! A session is a 256-bit random secret in the `sealtrail_session` cookie
//! (`HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` with
//! `web.secure_cookies`); meta.db keeps only its SHA-256, with the
//! session's CSRF token ([`sealtrail_meta::users`]). [`sessions`] runs
//! before every route: it finds the request's session and, for a
//! state-changing method, refuses it (403) unless it carries the session's
//! token in the form field `csrf` or the header `X-CSRF-Token` and does not
//! come from another site (`Origin`, `Sec-Fetch-Site`). Requests with an
//! `Authorization: Bearer` key are not looked at: a key is not sent by a
//! browser on its own, so it cannot be forged across sites.
//!
//! Not here: what a signed-in user may do (`Caller::require`).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue, AUTHORIZATION};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use sealtrail_meta::{Client, Lockout, Role, SecondFactor, SessionLimits, SignInRefused, User};
use serde::Deserialize;

use super::Layout;
use crate::app::{App, Caller, SignedIn};
use crate::config::Web;
use crate::problem::Problem;

/// The session cookie's name.
pub const COOKIE: &str = "sealtrail_session";
/// The header that carries the CSRF token of scripted requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries it.
pub const CSRF_FIELD: &str = "csrf";
/// Longest form body `/login` and the CSRF check read, in bytes.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Longest `next` kept, in bytes.
const MAX_NEXT_BYTES: usize = 2048;

/// Rate limits of sign-in attempts and the bound on password hashes
/// computed at once.
pub struct Guard {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<String>>,
    hashes: tokio::sync::Semaphore,
}

impl Guard {
    pub fn new(web: &Web) -> Guard {
        Guard {
            per_ip: NonZeroU32::new(web.sign_ins_per_ip_per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            per_user: NonZeroU32::new(web.sign_ins_per_user_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            hashes: tokio::sync::Semaphore::new(web.max_concurrent_hashes.max(1)),
        }
    }

    /// Seconds to wait before another attempt from `ip` for `name`, if
    /// either is over its limit.
    fn over_limit(&self, ip: Option<IpAddr>, name: &str) -> Option<u64> {
        if let Some(wait) = self.over_ip_limit(ip) {
            return Some(wait);
        }
        let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
        let wait = |e: governor::NotUntil<_>| e.wait_time_from(now).as_secs().max(1);
        if let Some(l) = &self.per_user {
            if l.len() > 100_000 {
                l.retain_recent();
            }
            if let Err(e) = l.check_key(&name.to_lowercase()) {
                return Some(wait(e));
            }
        }
        None
    }

    /// Seconds to wait before another attempt from `ip`, if it is over
    /// its limit. Sign-ins through the OpenID Provider count here too:
    /// each refused one is recorded, so their rate is bounded.
    pub(super) fn over_ip_limit(&self, ip: Option<IpAddr>) -> Option<u64> {
        let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
        let (Some(l), Some(ip)) = (&self.per_ip, ip) else {
            return None;
        };
        if l.len() > 100_000 {
            l.retain_recent();
        }
        l.check_key(&ip).err().map(|e| e.wait_time_from(now).as_secs().max(1))
    }

    /// Run a password hash or check off the async threads, at most
    /// `web.max_concurrent_hashes` at once.
    pub async fn hash<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Problem> {
        let _permit = self
            .hashes
            .acquire()
            .await
            .map_err(|_| Problem::unavailable("the server is shutting down"))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Problem::internal(format!("password hashing failed: {e}")))
    }
}

/// The signed-in caller of a request's session, put in its extensions by
/// [`sessions`].
#[derive(Clone)]
pub struct SessionCaller {
    pub caller: Caller,
    pub csrf: String,
    /// TOTP is required of the user and not yet set up: only the account
    /// page (to set it up) and sign-out are open.
    pub must_enrol: bool,
}

/// The session limits of the configuration.
pub fn limits(web: &Web) -> SessionLimits {
    SessionLimits {
        idle_secs: web.session_idle_secs,
        absolute_secs: web.session_absolute_secs,
        per_user: web.max_sessions_per_user,
        total: web.max_sessions,
    }
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The value of the cookie `name` the request carries, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_string())
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Refuse a state-changing request a browser sent from another site: a
/// `Sec-Fetch-Site` other than `same-origin` or `none`, or an `Origin`
/// whose host is not the request's `Host`.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Some(format!(
                "Sec-Fetch-Site is {site:?}: the request came from another site"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Some(format!("Origin {origin:?} is not this server ({host:?})"));
        }
    }
    None
}

/// Compare without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn forbidden(detail: String) -> Response {
    Problem::new(StatusCode::FORBIDDEN, "csrf", detail).into_response()
}

/// Find the request's session, check CSRF on state-changing requests,
/// and hand the signed-in caller on to [`super::Viewer`] and
/// [`crate::extract::Auth`].
pub async fn sessions(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if parts.headers.contains_key(AUTHORIZATION) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let cookie = session_cookie(&parts.headers);
    let changing = is_state_changing(&parts.method);
    if changing && (cookie.is_some() || parts.uri.path() == "/login") {
        if let Some(why) = cross_site(&parts.headers) {
            return forbidden(why);
        }
    }
    let Some(secret) = cookie else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let found = {
        let app = app.clone();
        crate::request::blocking(move || {
            app.meta
                .session(&secret, app.config.web.session_idle_secs, Timestamp::now())
                .map_err(Problem::internal)
        })
        .await
    };
    let (user, session) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return next.run(Request::from_parts(parts, body)).await,
        Err(p) => return p.into_response(),
    };
    if user.role == Role::Ingest {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let mut body = body;
    if changing {
        let sent = match parts.headers.get(CSRF_HEADER) {
            Some(v) => Some(v.to_str().unwrap_or("").to_string()),
            None => {
                let form = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
                let mut token = None;
                if form {
                    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
                        Ok(b) => b,
                        Err(_) => {
                            return Problem::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "body-too-large",
                                format!("a form body is at most {MAX_FORM_BYTES} bytes"),
                            )
                            .into_response()
                        }
                    };
                    token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                        .ok()
                        .and_then(|fields| fields.into_iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v));
                    body = Body::from(bytes);
                } else if let Some(q) = parts.uri.query() {
                    // Multipart forms (uploads) carry it in the action's query.
                    token = serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                        .ok()
                        .and_then(|fields| fields.into_iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v));
                }
                token
            }
        };
        match sent {
            Some(t) if same(&t, &session.csrf) => {}
            Some(_) => return forbidden("the CSRF token does not match this session's: reload the page".into()),
            None => {
                return forbidden(
                    "a request signed in by the session cookie must carry the session's CSRF token \
                     (form field `csrf` or header X-CSRF-Token)"
                        .into(),
                )
            }
        }
    }
    let must_enrol = session.must_enrol_totp;
    let path = parts.uri.path();
    if must_enrol && !(path == "/account" || path.starts_with("/account/") || path == "/logout") {
        if parts.uri.path().starts_with("/api/") {
            return Problem::forbidden("set up TOTP on /account first: your account requires it").into_response();
        }
        return Redirect::to("/account").into_response();
    }
    parts.extensions.insert(SessionCaller {
        caller: Caller::User(SignedIn {
            user,
            session_id: session.handle,
        }),
        csrf: session.csrf,
        must_enrol,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// `/login` and `/logout`.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// Where to go after sign-in: `next` if it is a path on this server,
/// else `/`. Refused: anything not starting with exactly one `/`
/// (`//host`, `/\host`, `https://…`), backslashes and control characters
/// anywhere, and the same once percent-decoded.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if is_local_path(n) => n,
        _ => "/",
    }
}

fn is_local_path(next: &str) -> bool {
    fn shape(p: &str) -> bool {
        let b = p.as_bytes();
        b.first() == Some(&b'/')
            && !matches!(b.get(1), Some(b'/') | Some(b'\\'))
            && !p.chars().any(|c| c == '\\' || c.is_control())
    }
    if next.len() > MAX_NEXT_BYTES || !shape(next) {
        return false;
    }
    // Twice, for a doubly encoded `%252F`.
    let once = percent_decode(next);
    let twice = percent_decode(&once);
    shape(&once) && shape(&twice)
}

fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    username: String,
    /// Ask for the TOTP code (or a recovery code) too.
    totp: bool,
    error: Option<String>,
    notice: Option<String>,
    /// The label of the OpenID Provider's sign-in link, when one is set up.
    oidc: Option<String>,
}

/// The sign-in page with `message` as its error: a sign-in through the
/// OpenID Provider that was refused.
pub(super) fn login_refused(message: String, oidc: Option<String>) -> Response {
    render(
        LoginPage {
            layout: anonymous_layout(),
            next: "/".into(),
            username: String::new(),
            totp: false,
            error: Some(message),
            notice: None,
            oidc,
        },
        StatusCode::FORBIDDEN,
    )
}

fn anonymous_layout() -> Layout {
    Layout {
        user: None,
        role: "",
        csrf: String::new(),
        current: "/login",
        admin: false,
        reports: false,
    }
}

fn render(page: LoginPage, status: StatusCode) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => Problem::internal(format!("rendering the sign-in page: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct NextParam {
    next: Option<String>,
}

async fn login_page(
    State(app): State<Arc<App>>,
    Query(q): Query<NextParam>,
    request: axum::http::request::Parts,
) -> Response {
    let next = safe_next(q.next.as_deref()).to_string();
    if request.extensions.get::<SessionCaller>().is_some() {
        return Redirect::to(&next).into_response();
    }
    render(
        LoginPage {
            layout: anonymous_layout(),
            next,
            username: String::new(),
            totp: false,
            error: None,
            notice: None,
            oidc: app.provider_sign_in.label().map(str::to_string),
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
    #[serde(default)]
    next: Option<String>,
}

/// The one refusal for a wrong name, password or disabled account.
const WRONG: &str = "The user name or password is wrong.";

pub(super) fn client_of(parts: &axum::http::request::Parts) -> Client {
    Client {
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect()),
    }
}

async fn login(State(app): State<Arc<App>>, parts: axum::http::request::Parts, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the sign-in form is at most {MAX_FORM_BYTES} bytes"),
            )
            .into_response()
        }
    };
    let form = match serde_urlencoded::from_bytes::<LoginForm>(&bytes) {
        Ok(f) => f,
        Err(e) => return Problem::bad_request("invalid-form", format!("the sign-in form: {e}")).into_response(),
    };
    let next = safe_next(form.next.as_deref()).to_string();
    let page = |username: &str, totp: bool, error: String| LoginPage {
        layout: anonymous_layout(),
        next: next.clone(),
        username: username.chars().take(sealtrail_meta::MAX_NAME_BYTES).collect(),
        totp,
        error: Some(error),
        notice: None,
        oidc: None,
    };
    // Bounds first: nothing unbounded is hashed, looked up or recorded.
    if form.username.len() > sealtrail_meta::MAX_NAME_BYTES {
        let e = format!(
            "username: {} bytes; the limit is {}",
            form.username.len(),
            sealtrail_meta::MAX_NAME_BYTES
        );
        return render(page("", false, e), StatusCode::BAD_REQUEST);
    }
    if form.password.len() > sealtrail_meta::MAX_PASSWORD_BYTES {
        let e = format!(
            "password: {} bytes; the limit is {}",
            form.password.len(),
            sealtrail_meta::MAX_PASSWORD_BYTES
        );
        return render(page(&form.username, false, e), StatusCode::BAD_REQUEST);
    }
    if form.totp.len() > 64 {
        let e = format!("totp: {} bytes; the limit is 64", form.totp.len());
        return render(page(&form.username, true, e), StatusCode::BAD_REQUEST);
    }
    if form.username.is_empty() || form.password.is_empty() {
        return render(
            page(&form.username, false, "Enter your user name and password.".into()),
            StatusCode::BAD_REQUEST,
        );
    }
    let client = client_of(&parts);
    let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(wait) = app.sign_in.over_limit(ip, &form.username) {
        let mut response = render(
            page(
                &form.username,
                false,
                format!("Too many sign-in attempts. Try again in {wait} seconds."),
            ),
            StatusCode::TOO_MANY_REQUESTS,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let now = Timestamp::now();
    let name = form.username.clone();
    let creds = {
        let app = app.clone();
        crate::request::blocking(move || app.meta.credentials(&name).map_err(Problem::internal)).await
    };
    let creds = match creds {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    let web = app.config.web.clone();
    let policy = Lockout {
        max_failures: web.max_failed_sign_ins,
        lock_secs: web.lockout_secs,
    };
    let fail = |reason: &'static str| {
        let (app, name, client) = (app.clone(), form.username.clone(), client.clone());
        async move {
            crate::request::blocking(move || {
                app.meta
                    .sign_in_failed(&name, reason, &client, policy, now)
                    .map_err(Problem::internal)
            })
            .await
        }
    };
    let Some(creds) = creds else {
        let password = form.password.clone();
        if let Err(p) = app.sign_in.hash(move || sealtrail_meta::verify_nobody(&password)).await {
            return p.into_response();
        }
        if let Err(p) = fail("no such user").await {
            return p.into_response();
        }
        return render(page(&form.username, false, WRONG.into()), StatusCode::UNAUTHORIZED);
    };
    if let Some(until) = creds.locked_until.filter(|u| *u > now.as_second()) {
        let minutes = (until - now.as_second() + 59) / 60;
        return render(
            page(
                &form.username,
                false,
                format!(
                    "Sign-in for this user name is locked after too many failed attempts; try again in {minutes} minute(s) or ask an admin."
                ),
            ),
            StatusCode::FORBIDDEN,
        );
    }
    let (hash, password) = (creds.password_hash.clone(), form.password.clone());
    let matches = match app
        .sign_in
        .hash(move || sealtrail_meta::verify_password(&hash, &password))
        .await
    {
        Ok(m) => m,
        Err(p) => return p.into_response(),
    };
    if !matches || creds.user.disabled {
        let reason = if matches { "disabled" } else { "wrong password" };
        let locked = match fail(reason).await {
            Ok(l) => l,
            Err(p) => return p.into_response(),
        };
        let message = if locked.is_some() {
            format!(
                "{WRONG} Sign-in for this user name is now locked for {} minute(s).",
                web.lockout_secs.div_ceil(60)
            )
        } else {
            WRONG.to_string()
        };
        return render(page(&form.username, false, message), StatusCode::UNAUTHORIZED);
    }
    if creds.user.role == Role::Ingest {
        return render(
            page(
                &form.username,
                false,
                "This account has role ingest: it owns API keys and cannot sign in to the pages.".into(),
            ),
            StatusCode::FORBIDDEN,
        );
    }
    let second = match &creds.totp_secret {
        None => SecondFactor::None,
        Some(_) if form.totp.trim().is_empty() => {
            let mut p = page(
                &form.username,
                true,
                "Enter your password again with the code from your authenticator app (or a recovery code).".into(),
            );
            p.notice = p.error.take();
            return render(p, StatusCode::OK);
        }
        Some(secret) => {
            let code: String = form.totp.chars().filter(|c| !c.is_whitespace()).collect();
            if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
                match super::account::check_code(secret, &code, now) {
                    Some(step) => SecondFactor::Totp(step),
                    None => return second_factor_failed(&app, &form, &next, fail("wrong totp code").await),
                }
            } else {
                SecondFactor::Recovery(sealtrail_meta::recovery_digest(&code))
            }
        }
    };
    let (secret, csrf) = match sealtrail_meta::new_session_secrets() {
        Ok(s) => s,
        Err(e) => return Problem::internal(e).into_response(),
    };
    let opened = {
        let (app, user_id, secret, client) = (app.clone(), creds.user.id.clone(), secret.clone(), client.clone());
        let limits = limits(&web);
        crate::request::blocking(move || {
            app.meta
                .signed_in(&user_id, &second, &secret, &csrf, &client, limits, now)
                .map_err(Problem::internal)
        })
        .await
    };
    match opened {
        Ok(Ok(_)) => {}
        Ok(Err(SignInRefused::Gone)) => {
            return render(page(&form.username, false, WRONG.into()), StatusCode::UNAUTHORIZED)
        }
        Ok(Err(SignInRefused::CodeReused)) => {
            return second_factor_failed(&app, &form, &next, fail("reused totp code").await)
        }
        Ok(Err(SignInRefused::BadRecoveryCode)) => {
            return second_factor_failed(&app, &form, &next, fail("wrong recovery code").await)
        }
        Err(p) => return p.into_response(),
    }
    let must_enrol = creds.totp_required && creds.totp_secret.is_none();
    let to = if must_enrol { "/account" } else { next.as_str() };
    let mut response = Redirect::to(to).into_response();
    let secure = secure_cookies(&web, &parts);
    set_cookie(&mut response, &secret, web.session_absolute_secs, secure);
    response
}

fn second_factor_failed(
    _app: &Arc<App>,
    form: &LoginForm,
    next: &str,
    recorded: Result<Option<i64>, Problem>,
) -> Response {
    if let Err(p) = recorded {
        return p.into_response();
    }
    render(
        LoginPage {
            layout: anonymous_layout(),
            next: next.to_string(),
            username: form.username.clone(),
            totp: true,
            error: Some("The code is wrong or was already used. Enter your password and a new code.".into()),
            notice: None,
            oidc: None,
        },
        StatusCode::UNAUTHORIZED,
    )
}

/// Whether cookies set in answer to the request of `parts` are marked
/// `Secure`: always with `web.secure_cookies`, and otherwise when the
/// request came from one of `web.trusted_proxies` saying, in its first
/// `X-Forwarded-Proto`, that the browser used HTTPS.
pub fn secure_cookies(web: &Web, parts: &axum::http::request::Parts) -> bool {
    if web.secure_cookies {
        return true;
    }
    let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
        return false;
    };
    if !web.trusted_proxies.iter().any(|p| p.contains(peer)) {
        return false;
    }
    // Each proxy on the way may append its own value; the first is the
    // one the browser's connection was seen with.
    parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Set the session cookie on `response`.
pub fn set_cookie(response: &mut Response, secret: &str, max_age: u64, secure: bool) {
    let mut cookie = format!("{COOKIE}={secret}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Remove the session cookie.
fn clear_cookie(response: &mut Response, secure: bool) {
    let mut cookie = format!("{COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

async fn logout(State(app): State<Arc<App>>, parts: axum::http::request::Parts) -> Response {
    if let Some(s) = parts.extensions.get::<SessionCaller>() {
        if let Caller::User(signed) = &s.caller {
            let (app2, handle, user) = (app.clone(), signed.session_id.clone(), signed.user.clone());
            let ended = crate::request::blocking(move || {
                app2.meta
                    .end_session(&handle, None, "user.signed_out", &sealtrail_meta::user_actor(&user))
                    .map_err(Problem::internal)
            })
            .await;
            if let Err(p) = ended {
                return p.into_response();
            }
        }
    }
    let mut response = Redirect::to("/login").into_response();
    clear_cookie(&mut response, secure_cookies(&app.config.web, &parts));
    response
}

/// The signed-in user of a session caller.
pub fn signed_in_user(caller: &Caller) -> Option<&User> {
    caller.user()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for good in ["/", "/search?log=default&q=a", "/events/default/3", "/a%20b"] {
            assert_eq!(safe_next(Some(good)), good, "{good}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "http:/evil",
            "evil",
            "",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil",
            "/\tevil",
            "/a\\b",
            "\\\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(3000)))), "/");
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("audit.example:8080"));
        assert_eq!(cross_site(&h), None);
        h.insert(header::ORIGIN, HeaderValue::from_static("http://audit.example:8080"));
        assert_eq!(cross_site(&h), None);
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert_eq!(cross_site(&h), None);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h).is_some());
        h.remove("sec-fetch-site");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_site(&h).is_some());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h).is_some());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        let secret = "ab".repeat(32);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE}={secret}; b=2")).expect("ascii"),
        );
        assert_eq!(session_cookie(&h), Some(secret));
        h.insert(header::COOKIE, HeaderValue::from_static("sealtrail_session=short"));
        assert_eq!(session_cookie(&h), None);
    }
}
