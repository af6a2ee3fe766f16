//! Logs, API keys and system health.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::blocking;
use sealtrail_meta::{key_event, now_text};

use crate::app::App;
use crate::extract::{Auth, JsonBody, PathArgs};
use crate::integrity::{LogHealth, LogStatus};
use crate::problem::{ApiResult, Problem};
use crate::system::{Level, Resource};
use sealtrail_meta::{key_problems, ApiKey, MetaError, Scope, SYSTEM_LOG};

#[derive(Debug, Serialize, ToSchema)]
pub struct LogSummary {
    pub name: String,
    /// The checkpoint origin line.
    pub origin: String,
    /// The log's Ed25519 verifier key (C2SP signed-note form).
    pub verifier_key: String,
    pub size: u64,
    /// Entries searchable through the query index.
    pub indexed: u64,
}

impl LogSummary {
    fn of(name: &str, trail: &sealtrail_trail::Trail) -> LogSummary {
        LogSummary {
            name: name.to_string(),
            origin: trail.log().origin().to_string(),
            verifier_key: trail.log().verifier().to_string(),
            size: trail.log().size(),
            indexed: trail.indexed(),
        }
    }
}

/// Every log the caller may read.
#[utoipa::path(
    get, path = "/api/v1/logs", tag = "logs",
    responses(
        (status = 200, body = Vec<LogSummary>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_logs(State(app): State<Arc<App>>, Auth(caller): Auth) -> ApiResult<Json<Vec<LogSummary>>> {
    caller.require(Scope::Read)?;
    blocking(move || {
        let infos = app.data.list_logs().map_err(|e| Problem::internal(e.to_string()))?;
        let mut out = Vec::new();
        for info in infos {
            if info.name == SYSTEM_LOG && caller.require_system_read().is_err() {
                continue;
            }
            if caller.tenant().is_some_and(|t| t != info.name) {
                continue;
            }
            let trail = app.trail(&info.name)?;
            out.push(LogSummary::of(&info.name, &trail));
        }
        Ok(Json(out))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLog {
    /// 1–64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
}

/// Create a log with a fresh signing key.
#[utoipa::path(
    post, path = "/api/v1/logs", tag = "logs",
    request_body(content = NewLog, content_type = "application/json"),
    responses(
        (status = 201, body = LogSummary),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_log(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let new: NewLog = parse_json(&body.bytes)?;
    blocking(move || {
        sealtrail_ledger::datadir::check_log_name(&new.name)
            .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-log-name", format!("name: {e}")))?;
        if app.data.log_dir(&new.name).exists() {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "log-exists",
                format!("log {:?} already exists", new.name),
            ));
        }
        let trail = app.open_or_create(&new.name)?;
        app.record(&caller, "log.created", &new.name, json!({}))?;
        Ok((StatusCode::CREATED, Json(LogSummary::of(&new.name, &trail))).into_response())
    })
    .await
}

/// Parse a small JSON request body, naming the line and column of bad JSON.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        let kind = if e.is_data() { "invalid-body" } else { "invalid-json" };
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        Problem::new(status, kind, e.to_string()).at(e.line(), e.column())
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub scope: Scope,
    /// Restrict the key to this tenant's events.
    #[schema(min_length = 1, max_length = 128)]
    pub tenant: Option<String>,
    /// A name for people (who uses the key).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: ApiKey,
    /// The secret to send as `Authorization: Bearer <secret>`. Shown once:
    /// only its hash is stored.
    pub secret: String,
}

/// Every API key (never their secrets).
#[utoipa::path(
    get, path = "/api/v1/keys", tag = "keys",
    responses(
        (status = 200, body = Vec<ApiKey>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_keys(State(app): State<Arc<App>>, Auth(caller): Auth) -> ApiResult<Json<Vec<ApiKey>>> {
    caller.require(Scope::Admin)?;
    blocking(move || {
        app.meta
            .list_keys()
            .map(Json)
            .map_err(|e| Problem::internal(e.to_string()))
    })
    .await
}

/// Create an API key. The response carries its secret, once.
#[utoipa::path(
    post, path = "/api/v1/keys", tag = "keys",
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, body = CreatedKey),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_key(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let new: NewKey = parse_json(&body.bytes)?;
    if new.tenant.as_deref() == Some("") {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "tenant: must not be empty (leave it out for a key of every tenant)",
        ));
    }
    let problems = key_problems(&new.name, new.tenant.as_deref());
    if !problems.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            problems.join("; "),
        ));
    }
    blocking(move || {
        let (key, secret) = app
            .meta
            .create_key(new.scope, new.tenant.as_deref(), &new.name, &now_text(), |k| {
                key_event(caller.actor(), "api_key.created", k)
            })
            .map_err(|e| Problem::internal(e.to_string()))?;
        app.drain_outbox()?;
        Ok((StatusCode::CREATED, Json(CreatedKey { key, secret })).into_response())
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    pub id: String,
}

/// Revoke an API key: it stops working at once.
#[utoipa::path(
    delete, path = "/api/v1/keys/{id}", tag = "keys",
    params(KeyPath),
    responses(
        (status = 200, body = ApiKey),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn revoke_key(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(KeyPath { id }): PathArgs<KeyPath>,
) -> ApiResult<Json<ApiKey>> {
    caller.require(Scope::Admin)?;
    blocking(move || {
        let key = app
            .meta
            .revoke_key(&id, &now_text(), |k| key_event(caller.actor(), "api_key.revoked", k))
            .map_err(|e| match e {
                MetaError::NoSuchKey(_) => Problem::not_found(e.to_string()),
                other => Problem::internal(other.to_string()),
            })?;
        app.forget_keys();
        app.drain_outbox()?;
        Ok(Json(key))
    })
    .await
}

/// CPU, memory and the data directory's disk, each healthy, warning or
/// critical, and each open log's integrity (a damaged or poisoned log makes
/// the whole `critical`) and query index (one being rebuilt makes it at
/// least `warning`).
/// `GET /api/v1/system/health`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SystemHealth {
    /// The worst of the resources', and critical when a log is damaged or
    /// stopped (warning when its query index is being rebuilt).
    pub status: Level,
    pub cpu: Resource,
    pub memory: Resource,
    pub disk: Resource,
    /// The data directory whose file system `disk` describes.
    pub data_dir: String,
    /// Each open log's integrity: damage found, a write fault, the scrub's
    /// progress and recoveries, its query index.
    pub logs: Vec<LogHealth>,
    /// Each `[[postgres.sources]]` followed: `ok` or `failing`, its last
    /// error, events drained. A failing source does not change `status`.
    pub postgres: Vec<crate::pg_follow::PgSourceHealth>,
    /// Logs whose last retention run (`[retention.logs]`) failed, and why;
    /// empty when every run succeeded. A failure does not change `status`.
    pub retention_failures: Vec<RetentionFailure>,
    /// Logs whose last compaction run (`[compression]`) failed, and why;
    /// empty when every run succeeded. A failure does not change `status`.
    pub compaction_failures: Vec<RetentionFailure>,
    /// Scheduled jobs (docs/scheduler.md): how many, which run now, runs
    /// failed lately and the last failure, the leases this process holds.
    /// A failed run does not change `status`.
    pub scheduler: crate::jobs::SchedulerHealth,
}

/// One log's failed retention or compaction run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RetentionFailure {
    pub log: String,
    pub error: String,
}

#[utoipa::path(
    get, path = "/api/v1/system/health", tag = "operations",
    responses(
        (status = 200, body = SystemHealth),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn system_health(State(app): State<Arc<App>>, Auth(caller): Auth) -> ApiResult<Json<SystemHealth>> {
    caller.require(Scope::Read)?;
    blocking(move || {
        let r = app.system.health();
        let logs = app.log_health();
        let status = if logs.iter().any(|l| l.status != LogStatus::Ok) {
            Level::Critical
        } else if logs.iter().any(|l| l.index.state != "ok") && r.status == Level::Healthy {
            Level::Warning
        } else {
            r.status
        };
        let scheduler = app.jobs.health(&app.meta).map_err(Problem::internal)?;
        Ok(Json(SystemHealth {
            status,
            scheduler,
            cpu: r.cpu,
            memory: r.memory,
            disk: r.disk,
            data_dir: r.data_dir,
            logs,
            postgres: app.pg_follow.health(),
            retention_failures: app
                .retention
                .failures()
                .into_iter()
                .map(|(log, error)| RetentionFailure { log, error })
                .collect(),
            compaction_failures: app
                .compaction
                .failures()
                .into_iter()
                .map(|(log, error)| RetentionFailure { log, error })
                .collect(),
        }))
    })
    .await
}
