//! `/account`: the signed-in user's own account: TOTP enrolment with
//! recovery codes, password change, and their sessions with revoke.
//!
//! TOTP is RFC 6238 as every authenticator app does it: HMAC-SHA-1, six
//! digits, 30-second steps, one step of skew either way; the time step a
//! code matched is stored, so each code works once. Enrolment keeps the
//! new secret sealed beside the user until a code from it is confirmed;
//! the ten recovery codes are shown once, on that confirmation, and only
//! their digests are stored.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use jiff::Timestamp;
use sealtrail_meta::{Session, User};
use serde::Deserialize;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use super::{encode_component, Layout, Viewer};
use crate::app::{App, Caller};
use crate::problem::Problem;

/// The TOTP of `secret` with the parameters every authenticator app uses.
pub fn totp(secret: &[u8]) -> Totp {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .build_noncompliant()
}

/// The time step `code` matches for `secret` at `now` (±1 step), if any.
pub fn check_code(secret: &[u8], code: &str, now: Timestamp) -> Option<u64> {
    let t = u64::try_from(now.as_second()).ok()?;
    totp(secret).check(code, t)
}

/// The `otpauth://` URI authenticator apps read from the QR code.
pub fn otpauth_uri(user: &str, secret: &[u8]) -> String {
    let b32 = Secret::new(secret.to_vec().into_boxed_slice()).to_base32();
    format!(
        "otpauth://totp/Sealtrail:{}?secret={b32}&issuer=Sealtrail&algorithm=SHA1&digits=6&period=30",
        encode_component(user)
    )
}

/// The account pages.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/account", get(account_page))
        .route("/account/totp/start", post(totp_start))
        .route("/account/totp/confirm", post(totp_confirm))
        .route("/account/password", post(change_password))
        .route("/account/sessions/revoke", post(revoke_session))
}

/// A session as a page lists it.
pub struct SessionRow {
    pub handle: String,
    pub short: String,
    pub user: String,
    pub created: String,
    pub last_seen: String,
    pub expires: String,
    pub client: String,
    pub current: bool,
}

/// Sessions for a page; `current` is the viewer's own.
pub fn session_rows(sessions: Vec<Session>, current: &str) -> Vec<SessionRow> {
    let time = |t: i64| {
        Timestamp::from_second(t)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default()
    };
    sessions
        .into_iter()
        .map(|s| SessionRow {
            short: s.handle.chars().take(12).collect(),
            current: s.handle == current,
            user: s.user_name,
            created: time(s.created_at),
            last_seen: time(s.last_seen),
            expires: time(s.expires_at),
            client: [s.ip.unwrap_or_default(), s.user_agent.unwrap_or_default()]
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join(" · "),
            handle: s.handle,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    name: String,
    role: &'static str,
    tenant: Option<String>,
    totp_enabled: bool,
    totp_required: bool,
    recovery_left: usize,
    /// Enrolment under way: the QR code (data URI) and the secret in text.
    enrol: Option<(String, String)>,
    /// Recovery codes to show once.
    codes: Vec<String>,
    sessions: Vec<SessionRow>,
    error: Option<String>,
    notice: Option<String>,
}

/// The signed-in user of a page (not an API key).
fn signed_in(viewer: &Viewer) -> Result<(User, String), Response> {
    match &viewer.caller {
        Caller::User(s) => Ok((s.user.clone(), s.session_id.clone())),
        _ => Err(Problem::forbidden("the account page belongs to a signed-in user, not an API key").into_response()),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Problem> + Send + 'static) -> Result<T, Response> {
    crate::request::blocking(f).await.map_err(IntoResponse::into_response)
}

async fn render(
    app: &Arc<App>,
    viewer: &Viewer,
    codes: Vec<String>,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    let (user, handle) = match signed_in(viewer) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let loaded = {
        let (app, user) = (app.clone(), user.clone());
        blocking(move || {
            let m = &app.meta;
            let status = m.user_status(&user.name).map_err(Problem::internal)?;
            let pending = m.pending_totp(&user.id).map_err(Problem::internal)?;
            let left = m.recovery_codes_left(&user.id).map_err(Problem::internal)?;
            let sessions = m
                .sessions(Some(&user.id), app.config.web.session_idle_secs, Timestamp::now())
                .map_err(Problem::internal)?;
            Ok((status, pending, left, sessions))
        })
        .await
    };
    let (status_row, pending, left, sessions) = match loaded {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(status_row) = status_row else {
        return Redirect::to("/login").into_response();
    };
    let enrol = match pending {
        Some(secret) if !status_row.totp_enabled => {
            let uri = otpauth_uri(&user.name, &secret);
            let svg = match qrcode::QrCode::new(uri.as_bytes()) {
                Ok(code) => code
                    .render::<qrcode::render::svg::Color>()
                    .min_dimensions(200, 200)
                    .build(),
                Err(e) => return Problem::internal(format!("drawing the QR code: {e}")).into_response(),
            };
            let data = format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(svg)
            );
            Some((data, Secret::new(secret.into_boxed_slice()).to_base32()))
        }
        _ => None,
    };
    let page = AccountPage {
        layout: viewer.layout("/account"),
        name: user.name.clone(),
        role: user.role.as_str(),
        tenant: user.tenant.clone(),
        totp_enabled: status_row.totp_enabled,
        totp_required: status_row.totp_required,
        recovery_left: left,
        enrol,
        codes,
        sessions: session_rows(sessions, &handle),
        error,
        notice,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => Problem::internal(format!("rendering the account page: {e}")).into_response(),
    }
}

async fn account_page(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    render(&app, &viewer, Vec::new(), None, None, StatusCode::OK).await
}

fn parse_form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| Problem::bad_request("invalid-form", format!("the form: {e}")).into_response())
}

async fn totp_start(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    let (user, _) = match signed_in(&viewer) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut secret = [0u8; 20];
    if let Err(e) = getrandom::fill(&mut secret) {
        return Problem::internal(format!("reading the system's randomness: {e}")).into_response();
    }
    let actor = sealtrail_meta::user_actor(&user);
    let started = {
        let app = app.clone();
        blocking(move || {
            app.meta
                .begin_totp(&user.id, &secret, &actor)
                .map_err(Problem::internal)
        })
        .await
    };
    match started {
        Ok(()) => Redirect::to("/account#totp").into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn totp_confirm(State(app): State<Arc<App>>, viewer: Viewer, body: Bytes) -> Response {
    let (user, _) = match signed_in(&viewer) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let form: CodeForm = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let code: String = form.code.chars().filter(|c| !c.is_whitespace()).take(16).collect();
    let pending = {
        let (app, id) = (app.clone(), user.id.clone());
        blocking(move || app.meta.pending_totp(&id).map_err(Problem::internal)).await
    };
    let secret = match pending {
        Ok(Some(s)) => s,
        Ok(None) => {
            let e = "Start the TOTP set-up first.".to_string();
            return render(&app, &viewer, Vec::new(), Some(e), None, StatusCode::BAD_REQUEST).await;
        }
        Err(r) => return r,
    };
    let Some(step) = check_code(&secret, &code, Timestamp::now()) else {
        let e = "code: it does not match; check the device's clock and enter the current six digits.".to_string();
        return render(&app, &viewer, Vec::new(), Some(e), None, StatusCode::BAD_REQUEST).await;
    };
    let codes = match sealtrail_meta::generate_recovery_codes() {
        Ok(c) => c,
        Err(e) => return Problem::internal(e).into_response(),
    };
    let digests: Vec<[u8; 32]> = codes.iter().map(|c| sealtrail_meta::recovery_digest(c)).collect();
    let actor = sealtrail_meta::user_actor(&user);
    let confirmed = {
        let app = app.clone();
        blocking(move || {
            app.meta
                .confirm_totp(&user.id, step, &digests, &actor)
                .map_err(Problem::internal)
        })
        .await
    };
    match confirmed {
        Ok(true) => {
            let n = "TOTP is on. Keep these recovery codes somewhere safe: each signs in once in place of a code, and they are not shown again.".to_string();
            render(&app, &viewer, codes, None, Some(n), StatusCode::OK).await
        }
        Ok(false) => {
            let e = "Start the TOTP set-up first.".to_string();
            render(&app, &viewer, Vec::new(), Some(e), None, StatusCode::BAD_REQUEST).await
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

async fn change_password(State(app): State<Arc<App>>, viewer: Viewer, body: Bytes) -> Response {
    let (user, handle) = match signed_in(&viewer) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let form: PasswordForm = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let refuse = |e: String| render(&app, &viewer, Vec::new(), Some(e), None, StatusCode::BAD_REQUEST);
    if form.current.len() > sealtrail_meta::MAX_PASSWORD_BYTES {
        return refuse(format!(
            "current: {} bytes; the limit is {}",
            form.current.len(),
            sealtrail_meta::MAX_PASSWORD_BYTES
        ))
        .await;
    }
    if let Some(p) = sealtrail_meta::password_problem(&form.new) {
        return refuse(format!("new {p}")).await;
    }
    if form.new != form.confirm {
        return refuse("confirm: does not match the new password".into()).await;
    }
    let creds = {
        let (app, name) = (app.clone(), user.name.clone());
        blocking(move || app.meta.credentials(&name).map_err(Problem::internal)).await
    };
    let creds = match creds {
        Ok(Some(c)) => c,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(r) => return r,
    };
    let (hash, current, new) = (creds.password_hash, form.current.clone(), form.new.clone());
    let checked = app
        .sign_in
        .hash(move || {
            if sealtrail_meta::verify_password(&hash, &current) {
                sealtrail_meta::hash_password(&new).map(Some)
            } else {
                Ok(None)
            }
        })
        .await;
    let new_hash = match checked {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return refuse("current: the password is wrong".into()).await,
        Ok(Err(e)) => return Problem::internal(e).into_response(),
        Err(p) => return p.into_response(),
    };
    let actor = sealtrail_meta::user_actor(&user);
    let changed = {
        let app = app.clone();
        let name = user.name.clone();
        blocking(move || {
            app.meta
                .set_password(&name, &new_hash, Some(&handle), "user.password_changed", &actor)
                .map_err(Problem::internal)
        })
        .await
    };
    match changed {
        Ok(_) => {
            let n = "Your password is changed; your other sessions ended.".to_string();
            render(&app, &viewer, Vec::new(), None, Some(n), StatusCode::OK).await
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    session: String,
}

async fn revoke_session(State(app): State<Arc<App>>, viewer: Viewer, body: Bytes) -> Response {
    let (user, _) = match signed_in(&viewer) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let form: RevokeForm = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let actor = sealtrail_meta::user_actor(&user);
    let ended = {
        let app = app.clone();
        let id = user.id.clone();
        blocking(move || {
            app.meta
                .end_session(&form.session, Some(&id), "session.revoked", &actor)
                .map_err(Problem::internal)
        })
        .await
    };
    match ended {
        Ok(true) => Redirect::to("/account#sessions").into_response(),
        Ok(false) => {
            let e = "session: no such session of yours".to_string();
            render(&app, &viewer, Vec::new(), Some(e), None, StatusCode::NOT_FOUND).await
        }
        Err(r) => r,
    }
}
