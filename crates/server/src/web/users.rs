//! `/users`: administration of users, their sessions and the API keys
//! they own. Admins only (`Scope::Admin`, as the API's administration).
//!
//! Every change goes through the same audited `Meta` operations as
//! `sealtrail users` and `sealtrail keys`, with the admin as actor. New
//! passwords and key secrets are shown once, on the answer to the form
//! that made them.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::Timestamp;
use sealtrail_meta::{ApiKey, Role, Scope, UserStatus};
use serde::Deserialize;

use super::account::{session_rows, SessionRow};
use super::{Layout, Viewer};
use crate::app::App;
use crate::app::Caller;
use crate::problem::Problem;

/// The administration pages.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{name}", get(detail))
        .route("/users/{name}/{action}", post(change))
        .route("/users/{name}/keys/{id}/revoke", post(revoke_key))
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserStatus>,
    sessions: Vec<SessionRow>,
    roles: [&'static str; 4],
    error: Option<String>,
    notice: Option<String>,
    /// A password to show once: (user, password).
    secret: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    layout: Layout,
    user: UserStatus,
    keys: Vec<ApiKey>,
    sessions: Vec<SessionRow>,
    roles: [&'static str; 4],
    scopes: Vec<&'static str>,
    error: Option<String>,
    notice: Option<String>,
    /// A secret to show once: (what, secret).
    secret: Option<(String, String)>,
}

const ROLES: [&str; 4] = ["admin", "auditor", "viewer", "ingest"];

fn admin(viewer: &Viewer) -> Result<(), Response> {
    viewer.caller.require(Scope::Admin).map_err(IntoResponse::into_response)
}

fn session_handle(caller: &Caller) -> String {
    match caller {
        Caller::User(s) => s.session_id.clone(),
        _ => String::new(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Problem> + Send + 'static) -> Result<T, Response> {
    crate::request::blocking(f).await.map_err(IntoResponse::into_response)
}

fn html(page: impl Template, status: StatusCode) -> Response {
    match page.render() {
        Ok(h) => (status, Html(h)).into_response(),
        Err(e) => Problem::internal(format!("rendering the page: {e}")).into_response(),
    }
}

/// What a page shows after a form: an error, a notice, a secret.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
    notice: Option<String>,
    secret: Option<(String, String)>,
    status: Option<StatusCode>,
}

impl Outcome {
    fn error(e: impl Into<String>) -> Outcome {
        Outcome {
            error: Some(e.into()),
            status: Some(StatusCode::BAD_REQUEST),
            ..Outcome::default()
        }
    }
    fn notice(n: impl Into<String>) -> Outcome {
        Outcome {
            notice: Some(n.into()),
            ..Outcome::default()
        }
    }
}

async fn users_page(app: &Arc<App>, viewer: &Viewer, out: Outcome) -> Response {
    let loaded = {
        let app = app.clone();
        blocking(move || {
            let users = app.meta.list_users().map_err(Problem::internal)?;
            let sessions = app
                .meta
                .sessions(None, app.config.web.session_idle_secs, Timestamp::now())
                .map_err(Problem::internal)?;
            Ok((users, sessions))
        })
        .await
    };
    let (users, sessions) = match loaded {
        Ok(x) => x,
        Err(r) => return r,
    };
    html(
        UsersPage {
            layout: viewer.layout("/users"),
            users,
            sessions: session_rows(sessions, &session_handle(&viewer.caller)),
            roles: ROLES,
            error: out.error,
            notice: out.notice,
            secret: out.secret,
        },
        out.status.unwrap_or(StatusCode::OK),
    )
}

async fn user_page(app: &Arc<App>, viewer: &Viewer, name: String, out: Outcome) -> Response {
    let loaded = {
        let app = app.clone();
        blocking(move || {
            let Some(user) = app.meta.user_status(&name).map_err(Problem::internal)? else {
                return Err(Problem::not_found(format!("no user named {name}")));
            };
            let keys: Vec<ApiKey> = app
                .meta
                .list_keys()
                .map_err(Problem::internal)?
                .into_iter()
                .filter(|k| k.owner.as_deref() == Some(user.user.id.as_str()))
                .collect();
            let sessions = app
                .meta
                .sessions(Some(&user.user.id), app.config.web.session_idle_secs, Timestamp::now())
                .map_err(Problem::internal)?;
            Ok((user, keys, sessions))
        })
        .await
    };
    let (user, keys, sessions) = match loaded {
        Ok(x) => x,
        Err(r) => return r,
    };
    let scopes = allowed_scopes(user.user.role).iter().map(|s| s.as_str()).collect();
    html(
        UserPage {
            layout: viewer.layout("/users"),
            user,
            keys,
            sessions: session_rows(sessions, &session_handle(&viewer.caller)),
            roles: ROLES,
            scopes,
            error: out.error,
            notice: out.notice,
            secret: out.secret,
        },
        out.status.unwrap_or(StatusCode::OK),
    )
}

/// The key scopes a user of `role` may own: no key grants more than its
/// owner's role.
fn allowed_scopes(role: Role) -> &'static [Scope] {
    match role {
        Role::Admin => &[Scope::Ingest, Scope::Read, Scope::Analyst, Scope::Admin],
        Role::Auditor | Role::Viewer => &[Scope::Read],
        Role::Ingest => &[Scope::Ingest],
    }
}

async fn list(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    if let Err(r) = admin(&viewer) {
        return r;
    }
    users_page(&app, &viewer, Outcome::default()).await
}

async fn detail(State(app): State<Arc<App>>, viewer: Viewer, Path(name): Path<String>) -> Response {
    if let Err(r) = admin(&viewer) {
        return r;
    }
    user_page(&app, &viewer, name, Outcome::default()).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserForm {
    name: String,
    role: String,
    tenant: String,
    password: String,
    scope: String,
    key_name: String,
    session: String,
    required: String,
}

fn parse(body: &Bytes) -> Result<UserForm, Response> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| Problem::bad_request("invalid-form", format!("the form: {e}")).into_response())
}

fn tenant(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn role(text: &str) -> Result<Role, Outcome> {
    Role::from_name(text).ok_or_else(|| {
        Outcome::error(format!(
            "role: {text:?} is not a role (admin, auditor, viewer or ingest)"
        ))
    })
}

/// A password from the form, or a generated one to show once.
fn password(text: &str) -> Result<(String, bool), Outcome> {
    if text.is_empty() {
        return sealtrail_meta::generate_password()
            .map(|p| (p, true))
            .map_err(|e| Outcome::error(e.to_string()));
    }
    match sealtrail_meta::password_problem(text) {
        Some(p) => Err(Outcome::error(p)),
        None => Ok((text.to_string(), false)),
    }
}

fn meta_outcome(e: sealtrail_meta::MetaError) -> Outcome {
    match e {
        sealtrail_meta::MetaError::InvalidUser(_) | sealtrail_meta::MetaError::NoSuchUser(_) => {
            Outcome::error(e.to_string())
        }
        other => {
            tracing::error!("user administration: {other}");
            Outcome {
                error: Some("the change could not be written; the server log has the reason".into()),
                status: Some(StatusCode::INTERNAL_SERVER_ERROR),
                ..Outcome::default()
            }
        }
    }
}

async fn create(State(app): State<Arc<App>>, viewer: Viewer, body: Bytes) -> Response {
    if let Err(r) = admin(&viewer) {
        return r;
    }
    let form = match parse(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let out = create_user(&app, &viewer.caller, form).await;
    users_page(&app, &viewer, out).await
}

async fn create_user(app: &Arc<App>, caller: &Caller, form: UserForm) -> Outcome {
    let role = match role(&form.role) {
        Ok(r) => r,
        Err(o) => return o,
    };
    if let Some(p) = sealtrail_meta::name_problem(&form.name) {
        return Outcome::error(p);
    }
    let (secret, generated) = match password(&form.password) {
        Ok(p) => p,
        Err(o) => return o,
    };
    let copy = secret.clone();
    let hash = match app.sign_in.hash(move || sealtrail_meta::hash_password(&copy)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return meta_outcome(e),
        Err(p) => return Outcome::error(p.detail),
    };
    let (app2, actor, name, t) = (app.clone(), caller.actor(), form.name.clone(), tenant(&form.tenant));
    let made = crate::request::blocking(move || {
        Ok(app2
            .meta
            .create_user(&name, role, t.as_deref(), &hash, Timestamp::now(), &actor))
    })
    .await;
    match made {
        Ok(Ok(user)) => Outcome {
            notice: Some(format!("Created user {} (role {}).", user.name, user.role.as_str())),
            secret: generated.then(|| (user.name.clone(), secret)),
            ..Outcome::default()
        },
        Ok(Err(e)) => meta_outcome(e),
        Err(p) => Outcome::error(p.detail),
    }
}

async fn change(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(r) = admin(&viewer) {
        return r;
    }
    let form = match parse(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let actor = viewer.caller.actor();
    let meta_change = |f: MetaChange| {
        let app = app.clone();
        async move {
            match crate::request::blocking(move || Ok(f(&app.meta))).await {
                Ok(Ok(n)) => Outcome::notice(n),
                Ok(Err(e)) => meta_outcome(e),
                Err(p) => Outcome::error(p.detail),
            }
        }
    };
    let n = name.clone();
    let out = match action.as_str() {
        "disable" | "enable" => {
            let disable = action == "disable";
            meta_change(Box::new(move |m| {
                m.set_user_disabled(&n, disable, &actor)
                    .map(|u| format!("{} {}.", if disable { "Disabled" } else { "Enabled" }, u.name))
            }))
            .await
        }
        "role" => match role(&form.role) {
            Ok(r) => {
                let t = tenant(&form.tenant);
                meta_change(Box::new(move |m| {
                    m.set_user_role(&n, r, t.as_deref(), &actor)
                        .map(|u| format!("{} now has role {}.", u.name, u.role.as_str()))
                }))
                .await
            }
            Err(o) => o,
        },
        "totp-reset" => {
            meta_change(Box::new(move |m| {
                m.reset_totp(&n, &actor)
                    .map(|u| format!("Removed the TOTP of {}.", u.name))
            }))
            .await
        }
        "totp-require" => {
            let required = form.required != "off";
            meta_change(Box::new(move |m| {
                m.require_totp(&n, required, &actor).map(|u| {
                    format!(
                        "{} {} TOTP.",
                        u.name,
                        if required { "now needs" } else { "no longer needs" }
                    )
                })
            }))
            .await
        }
        "password" => match password(&form.password) {
            Ok((secret, generated)) => {
                let copy = secret.clone();
                match app.sign_in.hash(move || sealtrail_meta::hash_password(&copy)).await {
                    Ok(Ok(hash)) => {
                        let mut out = meta_change(Box::new(move |m| {
                            m.set_password(&n, &hash, None, "user.password_reset", &actor)
                                .map(|u| format!("Reset the password of {}; their sessions ended.", u.name))
                        }))
                        .await;
                        if out.error.is_none() && generated {
                            out.secret = Some((name.clone(), secret));
                        }
                        out
                    }
                    Ok(Err(e)) => meta_outcome(e),
                    Err(p) => Outcome::error(p.detail),
                }
            }
            Err(o) => o,
        },
        "revoke-session" => {
            let handle = form.session.clone();
            let app2 = app.clone();
            let ended = crate::request::blocking(move || {
                let owner = app2.meta.user(&n).map_err(Problem::internal)?;
                let Some(owner) = owner else { return Ok(None) };
                app2.meta
                    .end_session(&handle, Some(&owner.id), "session.revoked", &actor)
                    .map(Some)
                    .map_err(Problem::internal)
            })
            .await;
            match ended {
                Ok(Some(true)) => Outcome::notice("Revoked the session."),
                Ok(_) => Outcome {
                    error: Some(format!("session: no such session of {name}")),
                    status: Some(StatusCode::NOT_FOUND),
                    ..Outcome::default()
                },
                Err(p) => Outcome::error(p.detail),
            }
        }
        "keys" => create_key(&app, &viewer.caller, &name, &form).await,
        other => {
            return Problem::not_found(format!("no user action {other:?}")).into_response();
        }
    };
    if body_wants_list(&body) {
        return users_page(&app, &viewer, out).await;
    }
    user_page(&app, &viewer, name, out).await
}

/// A change to run on the metadata database, returning its notice.
type MetaChange = Box<dyn FnOnce(&sealtrail_meta::Meta) -> Result<String, sealtrail_meta::MetaError> + Send>;

/// Forms on `/users` send `back=list` to come back to the list.
fn body_wants_list(body: &Bytes) -> bool {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|f| f.iter().any(|(k, v)| k == "back" && v == "list"))
        .unwrap_or(false)
}

async fn create_key(app: &Arc<App>, caller: &Caller, name: &str, form: &UserForm) -> Outcome {
    let Some(scope) = Scope::from_name(&form.scope) else {
        return Outcome::error(format!(
            "scope: {:?} is not a scope (ingest, read, analyst or admin)",
            form.scope
        ));
    };
    let key_name = form.key_name.trim().to_string();
    let (app2, actor, owner_name) = (app.clone(), caller.actor(), name.to_string());
    let tenant_asked = tenant(&form.tenant);
    let made = crate::request::blocking(move || {
        let Some(owner) = app2.meta.user(&owner_name).map_err(Problem::internal)? else {
            return Ok(Err(format!("no user named {owner_name}")));
        };
        if !allowed_scopes(owner.role).contains(&scope) {
            return Ok(Err(format!(
                "scope: a user with role {} may own keys of scope {} only",
                owner.role.as_str(),
                allowed_scopes(owner.role)
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // A key never reads beyond its owner's tenant.
        let tenant = match (&owner.tenant, tenant_asked) {
            (Some(own), Some(asked)) if *own != asked => {
                return Ok(Err(format!("tenant: {owner_name} is restricted to tenant {own}")));
            }
            (Some(own), _) => Some(own.clone()),
            (None, asked) => asked,
        };
        let problems = sealtrail_meta::key_problems(&key_name, tenant.as_deref());
        if !problems.is_empty() {
            return Ok(Err(problems.join("; ")));
        }
        let made = app2
            .meta
            .create_owned_key(
                scope,
                tenant.as_deref(),
                &key_name,
                Some(&owner.id),
                &sealtrail_meta::now_text(),
                |k| sealtrail_meta::key_event(actor.clone(), "api_key.created", k),
            )
            .map_err(Problem::internal)?;
        app2.forget_keys();
        Ok(Ok(made))
    })
    .await;
    match made {
        Ok(Ok((key, secret))) => Outcome {
            notice: Some(format!(
                "Created API key {} (scope {}). Copy the secret now: it is not shown again.",
                key.id,
                key.scope.as_str()
            )),
            secret: Some((format!("key {}", key.id), secret)),
            ..Outcome::default()
        },
        Ok(Err(e)) => Outcome::error(e),
        Err(p) => Outcome::error(p.detail),
    }
}

async fn revoke_key(State(app): State<Arc<App>>, viewer: Viewer, Path((name, id)): Path<(String, String)>) -> Response {
    if let Err(r) = admin(&viewer) {
        return r;
    }
    let (app2, actor, owner_name, key_id) = (app.clone(), viewer.caller.actor(), name.clone(), id.clone());
    let revoked = crate::request::blocking(move || {
        let owner = app2.meta.user(&owner_name).map_err(Problem::internal)?;
        let owns = app2.meta.list_keys().map_err(Problem::internal)?.into_iter().any(|k| {
            k.id == key_id
                && owner
                    .as_ref()
                    .is_some_and(|o| k.owner.as_deref() == Some(o.id.as_str()))
        });
        if !owns {
            return Ok(false);
        }
        app2.meta
            .revoke_key(&key_id, &sealtrail_meta::now_text(), |k| {
                sealtrail_meta::key_event(actor, "api_key.revoked", k)
            })
            .map_err(Problem::internal)?;
        app2.forget_keys();
        Ok(true)
    })
    .await;
    let out = match revoked {
        Ok(true) => Outcome::notice(format!("Revoked API key {id}.")),
        Ok(false) => Outcome {
            error: Some(format!("key: {name} owns no key {id}")),
            status: Some(StatusCode::NOT_FOUND),
            ..Outcome::default()
        },
        Err(p) => Outcome::error(p.detail),
    };
    if out.error.is_none() {
        // Back to the page so a reload does not send the form again.
        return Redirect::to(&format!("/users/{}", super::encode_component(&name))).into_response();
    }
    user_page(&app, &viewer, name, out).await
}
