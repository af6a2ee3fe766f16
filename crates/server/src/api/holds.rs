//! Legal holds over HTTP: `GET`/`POST /api/v1/holds`, `GET`/`DELETE
//! /api/v1/holds/{id}` (docs/retention.md, "Legal holds"). Admins add
//! and release holds, admins and auditors list them; callers restricted
//! to a tenant are refused (a hold is a matter for the whole server). The
//! checks are those of `sealtrail holds add`, each refusal naming its
//! field, and every change is recorded in the system log
//! (`legal_hold.added`, `legal_hold.released`) in the transaction that
//! makes it. The dashboard's `/holds` page goes through the functions here.
//!
//! Not here: what a hold stops (retention, `sealtrail_meta::retention`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::blocking;
use crate::app::{App, Caller};
use crate::extract::{Auth, JsonBody, Params, PathArgs};
use crate::problem::{ApiResult, FieldProblem, Problem};
use sealtrail_meta::{hold_problems, Hold, HoldFilter, MetaError, Scope};

/// A legal hold to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    /// The log whose events are held.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub log: String,
    /// Why (a matter, a case number); recorded with the hold.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
    /// The events held; without it (or `{}`), the whole log.
    #[serde(default)]
    pub filter: HoldFilter,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HoldsQuery {
    /// Only this log's holds.
    pub log: Option<String>,
    /// Released holds too (default: active only).
    #[serde(default)]
    pub released: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct HoldPath {
    pub id: i64,
}

/// Refuse unless `caller` may do what `scope` guards and is not
/// restricted to a tenant. Listing needs what reading the system log
/// needs (admins and auditors), changing needs admin.
pub(crate) fn allowed(caller: &Caller, change: bool) -> Result<(), Problem> {
    if change {
        caller.require(Scope::Admin)?;
    } else {
        caller.require_system_read()?;
    }
    caller.require_no_tenant("legal holds are kept for the whole server")
}

/// 422 `invalid-hold` listing each wrong field.
fn invalid(problems: Vec<(String, String)>) -> Problem {
    let detail = problems
        .iter()
        .map(|(field, detail)| format!("{field}: {detail}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-hold", detail);
    p.errors = problems
        .into_iter()
        .map(|(field, detail)| FieldProblem {
            position: None,
            line: None,
            field,
            detail,
        })
        .collect();
    p
}

/// `field: detail` split at the first `": "`.
fn split(text: &str) -> (String, String) {
    match text.split_once(": ") {
        Some((field, detail)) => (field.to_string(), detail.to_string()),
        None => (String::new(), text.to_string()),
    }
}

/// Parse a request body, naming the field path of what is wrong.
pub(crate) fn parse_new_hold(bytes: &[u8]) -> Result<NewHold, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return Problem::new(StatusCode::BAD_REQUEST, "invalid-json", inner.to_string())
                .at(inner.line(), inner.column());
        }
        let field = if path == "." { String::new() } else { path };
        invalid(vec![(field, inner.to_string())])
    })
}

/// Add `new` as `caller`: the same checks as `sealtrail holds add`, then
/// the hold and its `legal_hold.added` event in one transaction.
pub(crate) fn add(app: &App, caller: &Caller, new: &NewHold) -> Result<Hold, Problem> {
    allowed(caller, true)?;
    let mut problems = Vec::new();
    if sealtrail_ledger::datadir::check_log_name(&new.log).is_err() || !app.data.log_dir(&new.log).exists() {
        problems.push(("log".to_string(), format!("no log named {:?}", new.log)));
    }
    let filter = match new.filter.filter() {
        Ok(f) => Some(f),
        Err(e) => {
            problems.push(split(&e));
            None
        }
    };
    if let Some(f) = &filter {
        for p in hold_problems(f, &new.reason) {
            let (field, detail) = split(&p);
            // The time ranges are named by the condition that ends them.
            let field = match field.as_str() {
                "occurred" | "received" => format!("filter.{field}_until"),
                _ => field,
            };
            problems.push((field, detail));
        }
    } else {
        // The reason is checked whatever else is wrong.
        problems.extend(hold_problems(&Default::default(), &new.reason).iter().map(|p| split(p)));
    }
    let Some(filter) = filter.filter(|_| problems.is_empty()) else {
        return Err(invalid(problems));
    };
    let actor = caller.actor();
    let by = actor["id"].as_str().unwrap_or_default().to_string();
    let hold = app
        .meta
        .add_hold(&new.log, &filter, &new.reason, &by, &actor)
        .map_err(|e| match e {
            // Only the bound of active holds is left to refuse here.
            MetaError::InvalidHold(p) => Problem::new(StatusCode::CONFLICT, "too-many-holds", p.join("; ")),
            other => Problem::internal(other.to_string()),
        })?;
    app.drain_outbox()?;
    Ok(hold)
}

/// Release hold `id` as `caller`, with its `legal_hold.released` event.
pub(crate) fn release(app: &App, caller: &Caller, id: i64) -> Result<Hold, Problem> {
    allowed(caller, true)?;
    let actor = caller.actor();
    let by = actor["id"].as_str().unwrap_or_default().to_string();
    let hold = app.meta.release_hold(id, &by, &actor).map_err(|e| match e {
        MetaError::NoSuchHold(_) => Problem::not_found(format!("no legal hold {id}")),
        MetaError::InvalidHold(p) => Problem::new(StatusCode::CONFLICT, "hold-released", p.join("; ")),
        other => Problem::internal(other.to_string()),
    })?;
    app.drain_outbox()?;
    Ok(hold)
}

/// Holds for `caller`, oldest first: of `log` only if given, active only
/// unless `released`.
pub(crate) fn list(app: &App, caller: &Caller, log: Option<&str>, released: bool) -> Result<Vec<Hold>, Problem> {
    allowed(caller, false)?;
    app.meta
        .holds(log, released)
        .map_err(|e| Problem::internal(e.to_string()))
}

/// Legal holds, oldest first: active ones unless `released=true`.
#[utoipa::path(
    get, path = "/api/v1/holds", tag = "holds",
    params(HoldsQuery),
    responses(
        (status = 200, body = Vec<Hold>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_holds(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    Params(q): Params<HoldsQuery>,
) -> ApiResult<Json<Vec<Hold>>> {
    allowed(&caller, false)?;
    blocking(move || list(&app, &caller, q.log.as_deref(), q.released).map(Json)).await
}

/// Add a legal hold: retention never prunes the events it covers, nor
/// anything after the first of them.
#[utoipa::path(
    post, path = "/api/v1/holds", tag = "holds",
    request_body(content = NewHold, content_type = "application/json"),
    responses(
        (status = 201, body = Hold),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn add_hold(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    allowed(&caller, true)?;
    let new = parse_new_hold(&body.bytes)?;
    blocking(move || add(&app, &caller, &new).map(|h| (StatusCode::CREATED, Json(h)).into_response())).await
}

/// One legal hold, active or released.
#[utoipa::path(
    get, path = "/api/v1/holds/{id}", tag = "holds",
    params(HoldPath),
    responses(
        (status = 200, body = Hold),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_hold(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(HoldPath { id }): PathArgs<HoldPath>,
) -> ApiResult<Json<Hold>> {
    allowed(&caller, false)?;
    blocking(move || {
        app.meta
            .hold(id)
            .map_err(|e| Problem::internal(e.to_string()))?
            .map(Json)
            .ok_or_else(|| Problem::not_found(format!("no legal hold {id}")))
    })
    .await
}

/// Release a legal hold (it is kept, released): retention may then prune
/// what it held. Releasing a released hold is refused (409).
#[utoipa::path(
    delete, path = "/api/v1/holds/{id}", tag = "holds",
    params(HoldPath),
    responses(
        (status = 200, body = Hold),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn release_hold(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(HoldPath { id }): PathArgs<HoldPath>,
) -> ApiResult<Json<Hold>> {
    allowed(&caller, true)?;
    blocking(move || release(&app, &caller, id).map(Json)).await
}
