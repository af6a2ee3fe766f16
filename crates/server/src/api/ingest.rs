//! `POST …/events` and `POST …/events/batch`: durable ingest with a receipt.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_event::Rejection;
use sealtrail_trail::{Item, Trail};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{b64, blocking, LogPath};
use crate::app::{App, Caller};
use crate::extract::{Auth, BodyKind, JsonBody, Params, PathArgs};
use crate::problem::{ApiResult, FieldProblem, Problem};
use sealtrail_meta::{Scope, SYSTEM_LOG};

/// A stored event's acknowledgement: durable when sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    /// The log that holds it.
    pub log: String,
    /// The event's ULID.
    pub id: String,
    /// Its position in the log (0-based).
    pub index: u64,
    /// RFC 9162 leaf hash of the stored entry, base64.
    pub leaf_hash: String,
    /// True when an event with the same idempotency key was already stored:
    /// this is the original, and nothing was appended.
    pub duplicate: bool,
    pub tree_size: u64,
    /// The signed checkpoint (C2SP signed note) covering the event.
    pub checkpoint: String,
    /// C2SP tlog-proof receipt: the inclusion proof and that checkpoint.
    pub receipt: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BatchParams {
    /// All or nothing: if any event is refused, none is appended.
    #[serde(default)]
    pub atomic: bool,
}

/// The fate of one event of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// 0-based position in the batch.
    pub position: usize,
    /// 1-based line, for NDJSON bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// `stored`, `duplicate`, `rejected`, or `not_appended` (atomic batch
    /// with another event refused).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    /// Why the event was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// The log that holds the stored events.
    pub log: String,
    pub appended: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub tree_size: u64,
    /// Signed checkpoint covering every stored event of the batch.
    pub checkpoint: String,
    pub items: Vec<BatchItem>,
}

/// Store one event.
#[utoipa::path(
    post, path = "/api/v1/logs/{log}/events", tag = "ingest",
    params(LogPath),
    request_body(content = serde_json::Value, description = "One event (docs/event-schema.md)", content_type = "application/json"),
    responses(
        (status = 201, description = "Stored and durable", body = Stored),
        (status = 200, description = "Already stored under this idempotency key: the original", body = Stored),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Nothing in the request stored: `idempotency-unavailable` when an idempotency key cannot be checked or held while the log's query index is rebuilt (retry after `Retry-After`); `unavailable` when the server cannot keep writes now; `integrity-failure` when the log's stored data failed a check and it takes no writes until repaired", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "Not stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn post_event(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    body: JsonBody,
) -> ApiResult<Response> {
    store_event(app, caller, log, body).await
}

/// Store the event in `body` in `log` (the caller's scope is checked here).
pub(crate) async fn store_event(app: Arc<App>, caller: Caller, log: String, body: JsonBody) -> ApiResult<Response> {
    caller.require(Scope::Ingest)?;
    if body.kind != BodyKind::Json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "one event is sent as application/json; use …/events/batch for NDJSON or JSON text sequences",
        ));
    }
    check_tenant(&caller, &[&body.bytes], None)?;
    check_log_tenant(&app, &log, &[&body.bytes], None)?;
    // An open log is looked up without leaving the async worker; opening
    // one reads files, so that happens on the blocking pool.
    let trail = match app.open_trail(&log) {
        Some(trail) => {
            writable_open(&app, &log, &trail, body.bytes.len())?;
            trail
        }
        None => {
            let (app, log) = (app.clone(), log.clone());
            let bytes = body.bytes.len();
            blocking(move || writable(&app, &log, bytes)).await?
        }
    };
    let started = Instant::now();
    let answer = app.singles.submit(&log, &trail, body.bytes)?;
    let reply = answer
        .await
        .map_err(|_| Problem::internal("the ingest worker stopped before answering"))?;
    metrics::histogram!("sealtrail_ingest_seconds", "route" => "single").record(started.elapsed());
    match reply? {
        Ok(r) => {
            metrics::counter!("sealtrail_events_ingested_total", "log" => log.clone())
                .increment(u64::from(!r.duplicate));
            let stored = Stored {
                log,
                id: r.id.to_string(),
                index: r.index,
                leaf_hash: b64(&r.leaf),
                duplicate: r.duplicate,
                tree_size: r.tree_size,
                checkpoint: String::from_utf8_lossy(&r.checkpoint).into_owned(),
                receipt: String::from_utf8_lossy(&r.receipt).into_owned(),
            };
            let status = if r.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(stored)).into_response())
        }
        Err(rejection) => {
            metrics::counter!("sealtrail_events_rejected_total", "log" => log).increment(1);
            Err(rejection_problem(&rejection))
        }
    }
}

/// Store a batch of events: a JSON array, or NDJSON (one event per line).
#[utoipa::path(
    post, path = "/api/v1/logs/{log}/events/batch", tag = "ingest",
    params(LogPath, BatchParams),
    request_body(content = Vec<serde_json::Value>, description = "A JSON array of events; or NDJSON with Content-Type application/x-ndjson (also application/jsonl, application/jsonlines); or an RFC 7464 JSON text sequence with Content-Type application/json-seq", content_type = "application/json"),
    responses(
        (status = 200, description = "Per-event results; every stored event is durable", body = BatchResult),
        (status = "4XX", description = "Refused (atomic batch with a bad event: 422, nothing stored)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Nothing in the request stored: `idempotency-unavailable` when an idempotency key cannot be checked or held while the log's query index is rebuilt (retry after `Retry-After`); `unavailable` when the server cannot keep writes now; `integrity-failure` when the log's stored data failed a check and it takes no writes until repaired", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "Not stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn post_batch(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(params): Params<BatchParams>,
    body: JsonBody,
) -> ApiResult<Response> {
    store_batch(
        app,
        caller,
        move |_: &App, _: &[&[u8]], _: Option<&[u64]>| Ok(log),
        params.atomic,
        body,
    )
    .await
}

/// Store the batch in `body` in the log `log` names once the batch is read
/// and its tenants checked: a fixed name, or the log the events' tenant
/// selects (which may create it, so only then).
pub(crate) async fn store_batch(
    app: Arc<App>,
    caller: Caller,
    log: impl FnOnce(&App, &[&[u8]], Option<&[u64]>) -> Result<String, Problem> + Send + 'static,
    atomic: bool,
    body: JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::Ingest)?;
    let max = app.config.limits.max_batch_events;
    blocking(move || {
        let (inputs, lines) = split_batch(&body)?;
        if inputs.len() > max {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch-too-large",
                format!(
                    "the batch holds {} events; the limit is {max} (limits.max_batch_events)",
                    inputs.len()
                ),
            ));
        }
        check_tenant(&caller, &inputs, lines.as_deref())?;
        // Only now may a routed batch create its tenant's log.
        let log = log(&app, &inputs, lines.as_deref())?;
        check_log_tenant(&app, &log, &inputs, lines.as_deref())?;
        let trail = writable(&app, &log, body.bytes.len())?;
        let started = Instant::now();
        let done = trail.ingest(&inputs, atomic).map_err(super::trail_problem)?;
        metrics::histogram!("sealtrail_ingest_seconds", "route" => "batch").record(started.elapsed());
        let line = |i: usize| lines.as_ref().map(|l| l[i]);
        let mut result = BatchResult {
            log: log.clone(),
            appended: 0,
            duplicates: 0,
            rejected: 0,
            tree_size: done.tree_size,
            checkpoint: String::from_utf8_lossy(&done.checkpoint).into_owned(),
            items: Vec::with_capacity(done.items.len()),
        };
        let mut problems = Vec::new();
        // Computed once, and only if some event is not JSON.
        let mut starts_at: Option<Vec<(usize, usize)>> = None;
        for (position, item) in done.items.into_iter().enumerate() {
            let mut out = BatchItem {
                position,
                line: line(position),
                status: String::new(),
                id: None,
                index: None,
                leaf_hash: None,
                errors: Vec::new(),
            };
            match item {
                Item::Stored {
                    index,
                    id,
                    leaf,
                    duplicate,
                } => {
                    out.status = if duplicate { "duplicate" } else { "stored" }.into();
                    if duplicate {
                        result.duplicates += 1;
                    } else {
                        result.appended += 1;
                    }
                    out.id = Some(id.to_string());
                    out.index = Some(index);
                    out.leaf_hash = Some(b64(&leaf));
                }
                Item::Rejected(r) => {
                    result.rejected += 1;
                    out.status = "rejected".into();
                    if matches!(r, Rejection::Json(_)) && starts_at.is_none() {
                        starts_at = Some(starts(&body.bytes, &inputs));
                    }
                    out.errors = field_problems(&r, starts_at.as_ref().map(|s| s[position]));
                    for mut p in out.errors.clone() {
                        p.position = Some(position);
                        p.line = line(position);
                        problems.push(p);
                    }
                }
                Item::NotAppended => out.status = "not_appended".into(),
            }
            result.items.push(out);
        }
        metrics::counter!("sealtrail_events_ingested_total", "log" => log.clone()).increment(result.appended as u64);
        metrics::counter!("sealtrail_events_rejected_total", "log" => log.clone()).increment(result.rejected as u64);
        if atomic && result.rejected > 0 {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-event",
                format!(
                    "{} of {} events refused; the batch is atomic, so nothing was stored",
                    result.rejected,
                    result.items.len()
                ),
            );
            p.errors = problems;
            return Err(p);
        }
        Ok(Json(result).into_response())
    })
    .await
}

/// The trail of `log`, if `bytes` of events may be written to it now.
fn writable(app: &App, log: &str, bytes: usize) -> Result<Arc<Trail>, Problem> {
    not_system(log)?;
    let trail = app.trail(log)?;
    app.check_writable(&trail, bytes as u64)?;
    Ok(trail)
}

/// [`writable`] for a log already open.
fn writable_open(app: &App, log: &str, trail: &Trail, bytes: usize) -> Result<(), Problem> {
    not_system(log)?;
    app.check_writable(trail, bytes as u64)
}

fn not_system(log: &str) -> Result<(), Problem> {
    if log == SYSTEM_LOG {
        return Err(Problem::forbidden(
            "the system log is written only by the server itself",
        ));
    }
    Ok(())
}

/// The events of a batch body and, for NDJSON and JSON text sequences,
/// the 1-based line each one starts on.
type Split<'a> = (Vec<&'a [u8]>, Option<Vec<u64>>);

/// RFC 7464's record separator, which starts each text of a JSON text
/// sequence.
const RS: u8 = 0x1e;

fn split_batch(body: &JsonBody) -> Result<Split<'_>, Problem> {
    match body.kind {
        BodyKind::Json => {
            let items: Vec<&RawValue> = serde_json::from_slice(&body.bytes).map_err(|e| {
                let what = if e.is_data() {
                    "a batch is a JSON array of event objects".to_string()
                } else {
                    format!("invalid JSON: {e}")
                };
                Problem::bad_request("invalid-json", what).at(e.line(), e.column())
            })?;
            Ok((items.iter().map(|r| r.get().as_bytes()).collect(), None))
        }
        BodyKind::Ndjson => {
            let mut inputs = Vec::new();
            let mut lines = Vec::new();
            for (n, line) in body.bytes.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                inputs.push(line);
                lines.push(n as u64 + 1);
            }
            Ok((inputs, Some(lines)))
        }
        BodyKind::JsonSeq => {
            let mut texts = body.bytes.split(|&b| b == RS);
            let before = texts.next().unwrap_or_default();
            if !before.iter().all(u8::is_ascii_whitespace) {
                return Err(Problem::bad_request(
                    "invalid-json-seq",
                    "an application/json-seq body starts each JSON text with RS (0x1E), and the body does not start with one",
                )
                .at(1, 1));
            }
            let mut line = 1 + newlines(before);
            let mut inputs = Vec::new();
            let mut lines = Vec::new();
            for text in texts {
                let trimmed = text.trim_ascii();
                // Empty texts (RS RS) are skipped, as RFC 7464 allows.
                if !trimmed.is_empty() {
                    let leading = text.len() - text.trim_ascii_start().len();
                    inputs.push(trimmed);
                    lines.push(line + newlines(&text[..leading]));
                }
                line += newlines(text);
            }
            Ok((inputs, Some(lines)))
        }
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The 1-based line and column (in bytes) where each input starts in
/// `body`, of which the inputs are slices in ascending order: so that bad
/// JSON in a batch is placed in the body as sent, not in its own text.
fn starts(body: &[u8], inputs: &[&[u8]]) -> Vec<(usize, usize)> {
    let base = body.as_ptr() as usize;
    let (mut line, mut line_start, mut at) = (1, 0, 0);
    inputs
        .iter()
        .map(|input| {
            let offset = (input.as_ptr() as usize).saturating_sub(base).min(body.len());
            if offset > at {
                for (i, &b) in body[at..offset].iter().enumerate() {
                    if b == b'\n' {
                        line += 1;
                        line_start = at + i + 1;
                    }
                }
                at = offset;
            }
            (line, offset.saturating_sub(line_start) + 1)
        })
        .collect()
}

/// A caller restricted to a tenant writes only that tenant's events.
pub(crate) fn check_tenant(caller: &Caller, inputs: &[&[u8]], lines: Option<&[u64]>) -> Result<(), Problem> {
    let Some(tenant) = caller.tenant() else { return Ok(()) };
    match stray_tenant(inputs, lines, tenant) {
        Some((at, given)) => Err(Problem::forbidden(format!(
            "{at} has tenant {given}; {} may only write events with \"tenant\": {tenant:?}",
            caller.describe()
        ))),
        None => Ok(()),
    }
}

/// With `logs.per_tenant`, a log other than the default and system logs
/// belongs to the tenant it is named after: its key may read its entry
/// bundles, so it must hold that tenant's events only, whoever sends them.
pub(crate) fn check_log_tenant(app: &App, log: &str, inputs: &[&[u8]], lines: Option<&[u64]>) -> Result<(), Problem> {
    if !app.config.logs.per_tenant || log == app.config.default_log || log == sealtrail_meta::SYSTEM_LOG {
        return Ok(());
    }
    match stray_tenant(inputs, lines, log) {
        Some((at, given)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-event",
            format!(
                "tenant: {at} has tenant {given}; with per-tenant logs, log {log:?} holds only events with \"tenant\": {log:?}"
            ),
        )),
        None => Ok(()),
    }
}

/// The first event whose tenant is not `want`: where it is (for a
/// message), and its tenant as written (`(none)` without one). Text that is
/// not an event object is skipped: validation refuses it later, with a
/// better message than a tenant check could give.
fn stray_tenant(inputs: &[&[u8]], lines: Option<&[u64]>, want: &str) -> Option<(String, String)> {
    inputs.iter().enumerate().find_map(|(i, input)| {
        let given = tenant_of(input)?;
        if given.as_deref() == Some(want) {
            return None;
        }
        let at = match lines {
            Some(l) => format!("the event on line {}", l[i]),
            None if inputs.len() > 1 => format!("the event at position {i}"),
            None => "the event".to_string(),
        };
        Some((at, given.map_or("(none)".to_string(), |g| format!("{g:?}"))))
    })
}

/// The `tenant` of an event text: `None` if the text is not a JSON object,
/// `Some(None)` if it has no string tenant.
pub(crate) fn tenant_of(input: &[u8]) -> Option<Option<String>> {
    #[derive(Deserialize)]
    struct TenantOf<'a> {
        #[serde(borrow, default)]
        tenant: Option<&'a RawValue>,
    }
    let t = serde_json::from_slice::<TenantOf>(input).ok()?;
    Some(t.tenant.and_then(|r| serde_json::from_str(r.get()).ok()))
}

/// The field problems of a refused event; `start` is where the event
/// starts in the request body (line, column), for placing bad JSON there.
fn field_problems(r: &Rejection, start: Option<(usize, usize)>) -> Vec<FieldProblem> {
    match r {
        Rejection::Json(e) => {
            let (line, column) = match start {
                Some((line, column)) if e.line <= 1 => (line, (column + e.column).saturating_sub(1)),
                Some((line, _)) => (line + e.line - 1, e.column),
                None => (e.line, e.column),
            };
            vec![FieldProblem {
                position: None,
                line: None,
                field: String::new(),
                detail: format!("invalid JSON at line {line}, column {column}: {}", e.message),
            }]
        }
        Rejection::Invalid(errors) => errors
            .iter()
            .map(|e| FieldProblem {
                position: None,
                line: None,
                field: e.path.clone(),
                detail: e.message.clone(),
            })
            .collect(),
    }
}

fn rejection_problem(r: &Rejection) -> Problem {
    match r {
        Rejection::Json(e) => {
            Problem::bad_request("invalid-json", format!("invalid JSON: {}", e.message)).at(e.line, e.column)
        }
        Rejection::Invalid(_) => {
            let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", r.to_string());
            p.errors = field_problems(r, None);
            p
        }
    }
}
