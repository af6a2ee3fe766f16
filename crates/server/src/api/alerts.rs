//! Alert rules, channels, silences, alerts and notifications
//! (docs/alerts.md). Reading needs read scope (channels: admin, as their
//! URLs and secrets are credentials); every change needs admin scope and
//! is recorded in the system log. Alerting is configured for the whole
//! server, so tenant-restricted keys are refused.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_alert::store::{self, AlertRow, Origin, Silence, Stored};
use sealtrail_alert::{ChannelSpec, RuleSpec, SilenceSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::blocking;
use crate::app::{App, Caller};
use crate::extract::{Auth, JsonBody, Params, PathArgs};
use crate::problem::{ApiResult, Problem};
use sealtrail_meta::alerts::{self as ops, AlertError, Put, TestResult};
use sealtrail_meta::Scope;

pub(crate) fn allowed(caller: &Caller, scope: Scope) -> Result<(), Problem> {
    caller.require(scope)?;
    caller.require_no_tenant("alerting is configured for the whole server")
}

pub(crate) fn problem(e: AlertError) -> Problem {
    match e {
        AlertError::Invalid(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", e.to_string()),
        AlertError::NotFound(_) => Problem::not_found(e.to_string()),
        AlertError::Conflict(_) => Problem::new(StatusCode::CONFLICT, "in-use", e.to_string()),
        AlertError::Exists(_) => Problem::new(StatusCode::CONFLICT, "exists", e.to_string()),
        AlertError::Store(_) | AlertError::Secrets(_) => Problem::internal(e.to_string()),
    }
}

fn store_problem(e: store::StoreError) -> Problem {
    Problem::internal(e.to_string())
}

/// Parse a spec, naming the field path of what is wrong
/// (`condition.window: unknown unit "minutes"`).
fn parse_spec<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return Problem::bad_request("invalid-json", inner.to_string()).at(inner.line(), inner.column());
        }
        let path = e.path().to_string();
        let detail = if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", detail)
    })
}

fn same_name(path: &str, body: &str) -> Result<(), Problem> {
    if path != body {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            format!("name: {body:?} differs from the name in the path, {path:?}"),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NamePath {
    /// 1–100 letters, digits, `.`, `_` or `-`.
    pub name: String,
}

/// A stored rule or channel: its spec (docs/alerts.md) with `origin`
/// (`config` or `api`), `created_at` and `updated_at`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StoredSpec)]
pub struct StoredSchema {
    pub name: String,
    pub origin: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Every alert rule.
#[utoipa::path(
    get, path = "/api/v1/alert-rules", tag = "alerts",
    responses(
        (status = 200, body = Vec<StoredSchema>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_rules(State(app): State<Arc<App>>, Auth(caller): Auth) -> ApiResult<Json<Vec<Stored<RuleSpec>>>> {
    allowed(&caller, Scope::Read)?;
    blocking(move || {
        store::list::<RuleSpec>(&app.meta.lock())
            .map(Json)
            .map_err(store_problem)
    })
    .await
}

/// Create an alert rule (409 if the name is taken; PUT replaces).
#[utoipa::path(
    post, path = "/api/v1/alert-rules", tag = "alerts",
    request_body(content = Object, content_type = "application/json", description = "A rule: docs/alerts.md"),
    responses(
        (status = 201, body = StoredSchema),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_rule(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    let spec: RuleSpec = parse_spec(&body.bytes)?;
    blocking(move || {
        let (_, stored) =
            ops::put_rule(&app.meta, &spec, Origin::Api, Put::CreateOnly, &caller.actor()).map_err(problem)?;
        Ok((StatusCode::CREATED, Json(stored)).into_response())
    })
    .await
}

/// One alert rule.
#[utoipa::path(
    get, path = "/api/v1/alert-rules/{name}", tag = "alerts",
    params(NamePath),
    responses(
        (status = 200, body = StoredSchema),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_rule(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(NamePath { name }): PathArgs<NamePath>,
) -> ApiResult<Json<Stored<RuleSpec>>> {
    allowed(&caller, Scope::Read)?;
    blocking(move || {
        store::get::<RuleSpec>(&app.meta.lock(), &name)
            .map_err(store_problem)?
            .map(Json)
            .ok_or_else(|| Problem::not_found(format!("no alert rule named {name:?}")))
    })
    .await
}

/// Create or replace an alert rule. State kept for it (windows, values
/// seen) survives changes to its level, channels or description only.
#[utoipa::path(
    put, path = "/api/v1/alert-rules/{name}", tag = "alerts",
    params(NamePath),
    request_body(content = Object, content_type = "application/json", description = "A rule: docs/alerts.md"),
    responses(
        (status = 200, body = StoredSchema),
        (status = 201, body = StoredSchema),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn put_rule(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(NamePath { name }): PathArgs<NamePath>,
    body: JsonBody,
) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    let spec: RuleSpec = parse_spec(&body.bytes)?;
    same_name(&name, &spec.name)?;
    blocking(move || {
        let (created, stored) =
            ops::put_rule(&app.meta, &spec, Origin::Api, Put::Upsert, &caller.actor()).map_err(problem)?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(stored)).into_response())
    })
    .await
}

/// Delete an alert rule; its firing alerts end without a notice.
#[utoipa::path(
    delete, path = "/api/v1/alert-rules/{name}", tag = "alerts",
    params(NamePath),
    responses(
        (status = 204),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_rule(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(NamePath { name }): PathArgs<NamePath>,
) -> ApiResult<StatusCode> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        ops::delete_rule(&app.meta, &name, &caller.actor()).map_err(problem)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

fn redacted(stored: Stored<ChannelSpec>) -> Stored<ChannelSpec> {
    Stored {
        spec: stored.spec.redacted(),
        ..stored
    }
}

/// Every channel, secrets and passwords replaced by `********`.
#[utoipa::path(
    get, path = "/api/v1/channels", tag = "alerts",
    responses(
        (status = 200, body = Vec<StoredSchema>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_channels(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<Stored<ChannelSpec>>>> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        let all = store::list_channels(&app.meta.lock(), || app.meta.secrets()).map_err(store_problem)?;
        Ok(Json(all.into_iter().map(redacted).collect()))
    })
    .await
}

/// Create a channel (409 if the name is taken; PUT replaces).
#[utoipa::path(
    post, path = "/api/v1/channels", tag = "alerts",
    request_body(content = Object, content_type = "application/json", description = "A channel: docs/alerts.md"),
    responses(
        (status = 201, body = StoredSchema),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_channel(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    let spec: ChannelSpec = parse_spec(&body.bytes)?;
    blocking(move || {
        let (_, stored) = ops::put_channel(
            &app.meta,
            &spec,
            &app.config.alerts.destinations(),
            Origin::Api,
            Put::CreateOnly,
            &caller.actor(),
        )
        .map_err(problem)?;
        Ok((StatusCode::CREATED, Json(redacted(stored))).into_response())
    })
    .await
}

/// One channel, secrets replaced.
#[utoipa::path(
    get, path = "/api/v1/channels/{name}", tag = "alerts",
    params(NamePath),
    responses(
        (status = 200, body = StoredSchema),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_channel(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(NamePath { name }): PathArgs<NamePath>,
) -> ApiResult<Json<Stored<ChannelSpec>>> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        store::get_channel(&app.meta.lock(), &name, || app.meta.secrets())
            .map_err(store_problem)?
            .map(|s| Json(redacted(s)))
            .ok_or_else(|| Problem::not_found(format!("no channel named {name:?}")))
    })
    .await
}

/// Create or replace a channel. A `secret` or `password` of `********`
/// keeps the stored one, so a listed channel can be edited and sent back.
#[utoipa::path(
    put, path = "/api/v1/channels/{name}", tag = "alerts",
    params(NamePath),
    request_body(content = Object, content_type = "application/json", description = "A channel: docs/alerts.md"),
    responses(
        (status = 200, body = StoredSchema),
        (status = 201, body = StoredSchema),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn put_channel(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(NamePath { name }): PathArgs<NamePath>,
    body: JsonBody,
) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    let spec: ChannelSpec = parse_spec(&body.bytes)?;
    same_name(&name, &spec.name)?;
    blocking(move || {
        let (created, stored) = ops::put_channel(
            &app.meta,
            &spec,
            &app.config.alerts.destinations(),
            Origin::Api,
            Put::Upsert,
            &caller.actor(),
        )
        .map_err(problem)?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(redacted(stored))).into_response())
    })
    .await
}

/// Delete a channel no rule uses (409 names the rules that do).
#[utoipa::path(
    delete, path = "/api/v1/channels/{name}", tag = "alerts",
    params(NamePath),
    responses(
        (status = 204),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_channel(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(NamePath { name }): PathArgs<NamePath>,
) -> ApiResult<StatusCode> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        ops::delete_channel(&app.meta, &name, &caller.actor()).map_err(problem)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SilenceQuery {
    /// Include silences that have ended.
    #[serde(default)]
    pub expired: bool,
}

/// A silence: `rule` (absent: every rule), `group` field values, `until`
/// (RFC 3339), `comment`, plus `id`, `created_at`, `created_by`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Silence)]
pub struct SilenceSchema {
    pub id: i64,
    pub until: String,
    pub created_at: String,
    pub created_by: String,
}

/// Silences in force (and ended ones with `expired=true`), newest first.
#[utoipa::path(
    get, path = "/api/v1/silences", tag = "alerts",
    params(SilenceQuery),
    responses(
        (status = 200, body = Vec<SilenceSchema>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_silences(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    Params(q): Params<SilenceQuery>,
) -> ApiResult<Json<Vec<Silence>>> {
    allowed(&caller, Scope::Read)?;
    blocking(move || {
        let now = jiff::Timestamp::now().as_millisecond();
        store::list_silences(&app.meta.lock(), q.expired, now)
            .map(Json)
            .map_err(store_problem)
    })
    .await
}

/// Silence alerts until a time: they are still recorded, nobody is notified.
#[utoipa::path(
    post, path = "/api/v1/silences", tag = "alerts",
    request_body(content = Object, content_type = "application/json", description = "A silence: docs/alerts.md"),
    responses(
        (status = 201, body = SilenceSchema),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_silence(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    let spec: SilenceSpec = parse_spec(&body.bytes)?;
    blocking(move || {
        let by = caller.key().map(|k| format!("key:{}", k.id)).unwrap_or_default();
        let silence = ops::add_silence(&app.meta, &spec, &caller.actor(), &by).map_err(problem)?;
        Ok((StatusCode::CREATED, Json(silence)).into_response())
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SilencePath {
    pub id: i64,
}

/// End a silence now.
#[utoipa::path(
    delete, path = "/api/v1/silences/{id}", tag = "alerts",
    params(SilencePath),
    responses(
        (status = 204),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_silence(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(SilencePath { id }): PathArgs<SilencePath>,
) -> ApiResult<StatusCode> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        ops::delete_silence(&app.meta, id, &caller.actor()).map_err(problem)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// `firing`: only alerts firing now; `all` (default): every alert.
    pub status: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
    /// Only alerts raised before the one with this `seq` (the next page).
    pub before: Option<i64>,
}

/// An alert: `id`, `log`, `rule`, `condition`, `level`, `group`, `status`
/// (`firing`, `resolved`, or `fired` for one-off alerts), `summary`,
/// `fired_at`, `resolved_at`, `silenced`, `seq`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Alert)]
pub struct AlertSchema {
    pub id: String,
    pub rule: String,
    pub status: String,
    pub summary: String,
    pub seq: i64,
}

/// Alerts firing now, or every alert, newest first.
#[utoipa::path(
    get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertQuery),
    responses(
        (status = 200, body = Vec<AlertSchema>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_alerts(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    Params(q): Params<AlertQuery>,
) -> ApiResult<Json<Vec<AlertRow>>> {
    allowed(&caller, Scope::Read)?;
    let firing = match q.status.as_deref() {
        None | Some("all") => false,
        Some("firing") => true,
        Some(other) => {
            return Err(Problem::bad_request(
                "invalid-query",
                format!("status: {other:?} is neither firing nor all"),
            ))
        }
    };
    let limit = page_limit(&app, q.limit)?;
    blocking(move || {
        store::list_alerts(&app.meta.lock(), firing, limit, q.before)
            .map(Json)
            .map_err(store_problem)
    })
    .await
}

fn page_limit(app: &App, limit: Option<usize>) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > app.config.limits.max_page {
        return Err(Problem::bad_request(
            "invalid-query",
            format!("limit: must be between 1 and {}", app.config.limits.max_page),
        ));
    }
    Ok(limit)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// `pending`, `delivered` or `dead`.
    pub status: Option<String>,
    pub channel: Option<String>,
    /// Only notifications of this alert.
    pub alert: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
    /// Only notifications with a smaller `id` (the next page).
    pub before: Option<i64>,
}

/// Notifications, newest first, with every delivery attempt: the delivery
/// history and the dead letters.
#[utoipa::path(
    get, path = "/api/v1/notifications", tag = "alerts",
    params(NotificationQuery),
    responses(
        (status = 200, body = Vec<Object>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_notifications(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    Params(q): Params<NotificationQuery>,
) -> ApiResult<Json<Value>> {
    allowed(&caller, Scope::Read)?;
    let limit = page_limit(&app, q.limit)?;
    blocking(move || {
        let rows = ops::notifications(
            &app.meta,
            q.status.as_deref(),
            q.channel.as_deref(),
            q.alert.as_deref(),
            limit,
            q.before,
        )
        .map_err(problem)?;
        Ok(Json(rows))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSend {
    /// The channel to send a test notification to.
    pub channel: String,
}

/// Send a test notification to a channel now, bypassing the outbox; the
/// answer says whether the receiver took it.
#[utoipa::path(
    post, path = "/api/v1/notify/test", tag = "alerts",
    request_body(content = TestSend, content_type = "application/json"),
    responses(
        (status = 200, body = TestResult),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn test_send(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Json<TestResult>> {
    allowed(&caller, Scope::Admin)?;
    let req: TestSend = parse_spec(&body.bytes)?;
    let lookup = app.clone();
    let name = req.channel.clone();
    let channel = blocking(move || {
        store::get_channel(&lookup.meta.lock(), &name, || lookup.meta.secrets())
            .map_err(store_problem)?
            .ok_or_else(|| Problem::not_found(format!("no channel named {name:?}")))
    })
    .await?;
    let result = ops::test_send(
        &app.meta,
        &channel.spec,
        app.config.alerts.destinations(),
        &caller.actor(),
    )
    .await;
    Ok(Json(result))
}
