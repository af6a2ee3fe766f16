//! `POST /api/v1/events` and `POST /api/v1/events/batch`: ingest without
//! naming a log. With `logs.per_tenant` the event's `tenant` names its log
//! (created on first use, up to `logs.max_logs` logs, and only once the
//! tenant is known to be a log name the caller may write); otherwise, and
//! for events without a tenant, the `default_log` takes it.
//!
//! A batch goes to one log: a ledger append is atomic within one log only,
//! so a batch whose events name different tenants is refused, not split.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::ingest::{check_tenant, store_batch, store_event, tenant_of, BatchParams, BatchResult, Stored};
use crate::app::App;
use crate::extract::{Auth, JsonBody, Params};
use crate::problem::{ApiResult, FieldProblem, Problem};
use sealtrail_meta::{Scope, SYSTEM_LOG};

/// The log an event with this tenant goes to, creating it if needed.
fn log_for(app: &App, tenant: Option<&str>) -> Result<String, Problem> {
    let Some(tenant) = tenant.filter(|_| app.config.logs.per_tenant) else {
        return Ok(app.config.default_log.clone());
    };
    if sealtrail_ledger::datadir::check_log_name(tenant).is_err() || tenant == SYSTEM_LOG {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-event",
            format!("tenant {tenant:?} cannot name a log: use 1-64 of a-z, 0-9, '-', '_' (not \"system\")"),
        );
        p.errors = vec![FieldProblem {
            position: None,
            line: None,
            field: "tenant".into(),
            detail: "not a log name (logs.per_tenant is on)".into(),
        }];
        return Err(p);
    }
    app.open_or_create(tenant).map_err(|mut p| {
        if p.status == StatusCode::UNPROCESSABLE_ENTITY.as_u16() {
            p.errors = vec![FieldProblem {
                position: None,
                line: None,
                field: "tenant".into(),
                detail: "has no log yet, and no more logs may be created (logs.max_logs)".into(),
            }];
        }
        p
    })?;
    Ok(tenant.to_string())
}

/// The one log every event of a routed batch goes to.
fn batch_log(app: &App, inputs: &[&[u8]], lines: Option<&[u64]>) -> Result<String, Problem> {
    if !app.config.logs.per_tenant {
        return Ok(app.config.default_log.clone());
    }
    let tenants: Vec<Option<String>> = inputs.iter().map(|i| tenant_of(i).flatten()).collect();
    let first = tenants.first().cloned().flatten();
    let odd: Vec<FieldProblem> = tenants
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != first)
        .map(|(i, t)| FieldProblem {
            position: Some(i),
            line: lines.map(|l| l[i]),
            field: "tenant".into(),
            detail: format!("{t:?} differs from the first event's {first:?}"),
        })
        .collect();
    if !odd.is_empty() {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mixed-tenants",
            "a batch goes to one log, and with logs.per_tenant each tenant has its own: send one batch per tenant",
        );
        p.errors = odd;
        return Err(p);
    }
    log_for(app, first.as_deref())
}

/// Store one event in the log its tenant selects.
#[utoipa::path(
    post, path = "/api/v1/events", tag = "ingest",
    request_body(content = serde_json::Value, description = "One event (docs/event-schema.md)", content_type = "application/json"),
    responses(
        (status = 201, description = "Stored and durable", body = Stored),
        (status = 200, description = "Already stored under this idempotency key: the original", body = Stored),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "Not stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn post_event(State(app): State<Arc<App>>, Auth(caller): Auth, body: JsonBody) -> ApiResult<Response> {
    // Before a log may be created for the tenant.
    caller.require(Scope::Ingest)?;
    // A key restricted to one tenant creates no other tenant's log.
    check_tenant(&caller, &[&body.bytes], None)?;
    let tenant = tenant_of(&body.bytes).flatten();
    let log = {
        let app = app.clone();
        super::blocking(move || log_for(&app, tenant.as_deref())).await?
    };
    store_event(app, caller, log, body).await
}

/// Store a batch (JSON array or NDJSON) in the log its events' tenant selects.
#[utoipa::path(
    post, path = "/api/v1/events/batch", tag = "ingest",
    params(BatchParams),
    request_body(content = Vec<serde_json::Value>, description = "A JSON array of events; or NDJSON with Content-Type application/x-ndjson (also application/jsonl, application/jsonlines); or an RFC 7464 JSON text sequence with Content-Type application/json-seq", content_type = "application/json"),
    responses(
        (status = 200, description = "Per-event results; every stored event is durable", body = BatchResult),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "Not stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn post_batch(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    Params(params): Params<BatchParams>,
    body: JsonBody,
) -> ApiResult<Response> {
    store_batch(app, caller, batch_log, params.atomic, body).await
}
