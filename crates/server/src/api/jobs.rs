//! Scheduled jobs (docs/scheduler.md): `/api/v1/jobs`. Reading needs read
//! scope; every change (create, replace, delete, enable, disable, run now)
//! needs admin scope and is recorded in the system log. Jobs belong to
//! the whole server, so tenant-restricted keys are refused.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_meta::jobs::{JobRun, PutOutcome, RUNS_KEPT};
use sealtrail_meta::Scope;
use sealtrail_sched::admin::{self, JobError, JobView};
use sealtrail_sched::JobSpec;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::blocking;
use crate::app::{App, Caller};
use crate::extract::{Auth, JsonBody, Params, PathArgs};
use crate::problem::{ApiResult, Problem};

fn problem(e: JobError) -> Problem {
    match e {
        JobError::Invalid(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", e.to_string()),
        JobError::NotFound(_) => Problem::not_found(e.to_string()),
        JobError::Exists(_) => Problem::new(StatusCode::CONFLICT, "exists", e.to_string()),
        JobError::Meta(_) => Problem::internal(e.to_string()),
    }
}

/// Jobs act on the whole server: a caller of `scope` without tenant.
pub(crate) fn allowed(caller: &Caller, scope: Scope) -> Result<(), Problem> {
    caller.require(scope)?;
    caller.require_no_tenant("jobs are scheduled for the whole server")
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// 1–100 letters, digits, `.`, `_` or `-`.
    pub name: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Most runs to return, newest first (1–100; default 20).
    pub limit: Option<usize>,
}

/// The answer to a run-now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunRequested {
    pub job: String,
    /// Always true: a scheduler takes it at its next tick.
    pub requested: bool,
}

fn parse(bytes: &[u8], app: &App) -> Result<JobSpec, Problem> {
    JobSpec::from_json(bytes, &app.jobs.registry).map_err(|e| problem(e.into()))
}

/// Every job, with its next run and last run.
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs",
    responses(
        (status = 200, body = Vec<JobView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_jobs(State(app): State<Arc<App>>, Auth(caller): Auth) -> ApiResult<Json<Vec<JobView>>> {
    allowed(&caller, Scope::Read)?;
    blocking(move || {
        admin::list(&app.meta, &app.jobs.registry, now())
            .map(Json)
            .map_err(problem)
    })
    .await
}

/// Create a job (409 if the name is taken; PUT replaces).
#[utoipa::path(
    post, path = "/api/v1/jobs", tag = "jobs",
    request_body(content = Object, content_type = "application/json", description = "A job: docs/scheduler.md"),
    responses(
        (status = 201, body = JobView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_job(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    let spec = parse(&body.bytes, &app)?;
    blocking(move || {
        let (_, view) =
            admin::put(&app.meta, &app.jobs.registry, &spec, true, &caller.actor(), now()).map_err(problem)?;
        app.jobs.wake();
        Ok((StatusCode::CREATED, Json(view)).into_response())
    })
    .await
}

/// One job.
#[utoipa::path(
    get, path = "/api/v1/jobs/{name}", tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, body = JobView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_job(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(JobPath { name }): PathArgs<JobPath>,
) -> ApiResult<Json<JobView>> {
    allowed(&caller, Scope::Read)?;
    blocking(move || {
        admin::show(&app.meta, &app.jobs.registry, &name, now())
            .map(Json)
            .map_err(problem)
    })
    .await
}

/// Create or replace a job; its schedule starts again from now.
#[utoipa::path(
    put, path = "/api/v1/jobs/{name}", tag = "jobs",
    params(JobPath),
    request_body(content = Object, content_type = "application/json", description = "A job: docs/scheduler.md"),
    responses(
        (status = 200, body = JobView),
        (status = 201, body = JobView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn put_job(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(JobPath { name }): PathArgs<JobPath>,
    body: JsonBody,
) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    let spec = parse(&body.bytes, &app)?;
    if spec.name != name {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            format!("name: {:?} differs from the name in the path, {name:?}", spec.name),
        ));
    }
    blocking(move || {
        let (outcome, view) =
            admin::put(&app.meta, &app.jobs.registry, &spec, false, &caller.actor(), now()).map_err(problem)?;
        app.jobs.wake();
        let status = match outcome {
            PutOutcome::Created => StatusCode::CREATED,
            PutOutcome::Replaced => StatusCode::OK,
        };
        Ok((status, Json(view)).into_response())
    })
    .await
}

/// Delete a job and its run history (a run in progress finishes).
#[utoipa::path(
    delete, path = "/api/v1/jobs/{name}", tag = "jobs",
    params(JobPath),
    responses(
        (status = 204),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_job(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(JobPath { name }): PathArgs<JobPath>,
) -> ApiResult<StatusCode> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        admin::delete(&app.meta, &name, &caller.actor()).map_err(problem)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Run a job now (enabled or not), as soon as a scheduler takes it;
/// never beside a run of the same job.
#[utoipa::path(
    post, path = "/api/v1/jobs/{name}/run", tag = "jobs",
    params(JobPath),
    responses(
        (status = 202, body = RunRequested),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn run_job(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(JobPath { name }): PathArgs<JobPath>,
) -> ApiResult<Response> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        admin::request_run(&app.meta, &name, &caller.actor()).map_err(problem)?;
        app.jobs.wake();
        Ok((
            StatusCode::ACCEPTED,
            Json(RunRequested {
                job: name,
                requested: true,
            }),
        )
            .into_response())
    })
    .await
}

async fn set_enabled(
    app: Arc<App>,
    caller: crate::app::Caller,
    name: String,
    enabled: bool,
) -> ApiResult<Json<JobView>> {
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        let view = admin::set_enabled(&app.meta, &app.jobs.registry, &name, enabled, &caller.actor(), now())
            .map_err(problem)?;
        app.jobs.wake();
        Ok(Json(view))
    })
    .await
}

/// Enable a job: its schedule starts from now.
#[utoipa::path(
    post, path = "/api/v1/jobs/{name}/enable", tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, body = JobView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn enable_job(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(JobPath { name }): PathArgs<JobPath>,
) -> ApiResult<Json<JobView>> {
    set_enabled(app, caller, name, true).await
}

/// Disable a job: it runs on schedule no more (run now still works).
#[utoipa::path(
    post, path = "/api/v1/jobs/{name}/disable", tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, body = JobView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn disable_job(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(JobPath { name }): PathArgs<JobPath>,
) -> ApiResult<Json<JobView>> {
    set_enabled(app, caller, name, false).await
}

/// A job's last runs, newest first (at most the 100 kept).
#[utoipa::path(
    get, path = "/api/v1/jobs/{name}/runs", tag = "jobs",
    params(JobPath, RunsQuery),
    responses(
        (status = 200, body = Vec<JobRun>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_runs(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(JobPath { name }): PathArgs<JobPath>,
    Params(q): Params<RunsQuery>,
) -> ApiResult<Json<Vec<JobRun>>> {
    allowed(&caller, Scope::Read)?;
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > RUNS_KEPT {
        return Err(Problem::bad_request(
            "invalid-query",
            format!("limit: {limit} is not from 1 to {RUNS_KEPT}"),
        ));
    }
    blocking(move || admin::runs(&app.meta, &name, limit).map(Json).map_err(problem)).await
}
