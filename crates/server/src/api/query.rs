//! The read routes: events by filter, one event, an entity's history,
//! statistics, recent errors, performance, and streaming export. Every
//! one is recorded in the system log before its answer is sent.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_event::{Outcome, Severity, Timestamp, Ulid};
use sealtrail_export::{EventWriter, Format, Row};
use sealtrail_merkle::leaf_hash;
use sealtrail_pii::LogPii;
use sealtrail_trail::target::parse_target;
use sealtrail_trail::when::parse_time;
use sealtrail_trail::{Bucket, Filter, Found, Order, Page, TimeRange, Trail};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::{b64, blocking, readable, trail_problem, LogPath};
use crate::app::{App, Caller};
use crate::extract::{Auth, Params, PathArgs};
use crate::problem::{ApiResult, Problem};

const DEFAULT_LIMIT: usize = 100;

/// Filters shared by every read route (all given conditions must hold),
/// plus the paging and shaping parameters some routes take.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Action, exact or a glob (`lead.*`, `*.deleted`, `user.?et`); at most 1024 characters.
    #[param(max_length = 1024)]
    pub action: Option<String>,
    /// `actor.id`.
    pub actor: Option<String>,
    /// A target `TYPE:ID`, or `TYPE` for any target of that type.
    #[param(pattern = "^[^:]+(:.+)?$")]
    pub target: Option<String>,
    pub tenant: Option<String>,
    /// `source.workflow`.
    pub workflow: Option<String>,
    /// `source.service`.
    pub service: Option<String>,
    /// `success`, `failure` or `unknown`.
    #[param(pattern = "^(success|failure|unknown)$")]
    pub outcome: Option<String>,
    /// This severity or graver (`debug` … `emergency`).
    #[param(pattern = "^(debug|info|notice|warning|error|critical|alert|emergency)$")]
    pub severity: Option<String>,
    /// `context.ip`.
    pub ip: Option<String>,
    /// `context.session_id`.
    pub session: Option<String>,
    /// Occurred at or after: `30m`, `24h`, `7d`, `1w` (before now), an RFC 3339 time, or a date.
    pub since: Option<String>,
    /// Occurred before (same forms as `since`).
    pub until: Option<String>,
    /// Received at or after (same forms as `since`).
    pub received_since: Option<String>,
    /// Received before (same forms as `since`).
    pub received_until: Option<String>,
    /// Free text: words and identifiers that must all occur in message, error or details, and `"quoted phrases"` (docs/query-syntax.md).
    pub text: Option<String>,
    /// Page size (default 100, at most `limits.max_page`). Lists only.
    pub limit: Option<usize>,
    /// Cursor: the `next` of the previous page. Lists only.
    pub after: Option<u64>,
    /// `newest` (default) or `oldest` first. Lists only.
    #[param(pattern = "^(newest|oldest)$")]
    pub order: Option<String>,
    /// Add each event's inclusion proof against the returned checkpoint. Lists only.
    pub proofs: Option<bool>,
    /// `hour` or `day`: the time buckets of `stats` (default `hour`).
    #[param(pattern = "^(hour|day)$")]
    pub by: Option<String>,
    /// `csv`, `jsonl`, `json` or `xlsx`: the format of `export` (default `jsonl`).
    #[param(pattern = "^(csv|jsonl|json|xlsx)$")]
    pub format: Option<String>,
}

fn invalid(param: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::bad_request("invalid-query", format!("{param}: {detail}"))
}

/// The range from `since` to `until`, refused when it runs backwards: an
/// empty answer would hide the mistake.
fn range(
    since_name: &str,
    until_name: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<TimeRange, Problem> {
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(Problem::bad_request(
                "invalid-query",
                format!("{since_name} ({s}) is later than {until_name} ({u})"),
            ));
        }
    }
    Ok(TimeRange { since, until })
}

impl EventQuery {
    pub(crate) fn filter(&self, caller: &Caller, now: Timestamp) -> Result<Filter, Problem> {
        // A glob is matched against every distinct action: bound its cost.
        let max = sealtrail_event::glob::MAX_PATTERN_CHARS;
        if let Some(chars) = self.action.as_ref().map(|a| a.chars().count()).filter(|&n| n > max) {
            return Err(Problem::bad_request(
                "parameter-too-long",
                format!("query parameter \"action\" is {chars} characters; the limit is {max}"),
            ));
        }
        let time = |param: &str, v: &Option<String>| -> Result<Option<Timestamp>, Problem> {
            v.as_deref()
                .map(|s| parse_time(s, now).map_err(|e| invalid(param, e)))
                .transpose()
        };
        let (target_type, target_id) = match self.target.as_deref() {
            None => (None, None),
            Some(t) => parse_target(t)
                .map(|(kind, id)| (Some(kind), id))
                .map_err(|e| invalid("target", e))?,
        };
        let outcome = self
            .outcome
            .as_deref()
            .map(|s| {
                Outcome::from_name(s)
                    .ok_or_else(|| invalid("outcome", format!("{s:?}: use success, failure or unknown")))
            })
            .transpose()?;
        let min_severity = self
            .severity
            .as_deref()
            .map(|s| {
                Severity::from_name(s).ok_or_else(|| {
                    invalid(
                        "severity",
                        format!("{s:?}: use debug, info, notice, warning, error, critical, alert or emergency"),
                    )
                })
            })
            .transpose()?;
        let ip = self
            .ip
            .as_deref()
            .map(|s| s.parse::<IpAddr>().map_err(|e| invalid("ip", format!("{s:?}: {e}"))))
            .transpose()?;
        // A caller restricted to a tenant reads only that tenant's events.
        let tenant = match (caller.tenant(), self.tenant.as_deref()) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(Problem::forbidden(format!(
                    "{} may only read events of tenant {own:?}, not {asked:?}",
                    caller.describe()
                )))
            }
            (Some(own), _) => Some(own.to_string()),
            (None, asked) => asked.map(str::to_string),
        };
        let occurred = range(
            "since",
            "until",
            time("since", &self.since)?,
            time("until", &self.until)?,
        )?;
        let received = range(
            "received_since",
            "received_until",
            time("received_since", &self.received_since)?,
            time("received_until", &self.received_until)?,
        )?;
        // The index cuts text into words of letters and digits; a text
        // with none would silently set no condition at all.
        if let Some(text) = self.text.as_deref() {
            if sealtrail_trail::text_words(text).is_empty() {
                return Err(invalid(
                    "text",
                    format!("{text:?} has no word to search for: words are runs of letters and digits"),
                ));
            }
        }
        Ok(Filter {
            action: self.action.clone(),
            actor: self.actor.clone(),
            target_type,
            target_id,
            tenant,
            workflow: self.workflow.clone(),
            service: self.service.clone(),
            outcome,
            min_severity,
            ip,
            session: self.session.clone(),
            occurred,
            received,
            text: self.text.clone(),
            text_alternatives: Vec::new(),
            failures: false,
        })
    }

    pub(crate) fn page(&self, max: usize, default_order: Order) -> Result<Page, Problem> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > max {
            return Err(invalid("limit", format!("{limit}: must be 1 to {max}")));
        }
        let order = match self.order.as_deref() {
            None => default_order,
            Some("newest") => Order::NewestFirst,
            Some("oldest") => Order::OldestFirst,
            Some(o) => return Err(invalid("order", format!("{o:?}: use newest or oldest"))),
        };
        Ok(Page {
            order,
            limit,
            after: self.after,
        })
    }
}

/// One stored event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventItem {
    pub index: u64,
    /// RFC 9162 leaf hash of `entry`, base64.
    pub leaf_hash: String,
    /// The event as stored (its RFC 8785 form, which the leaf hash covers).
    #[schema(value_type = Object)]
    pub event: Box<RawValue>,
    /// Inclusion proof (base64 hashes, leaf's sibling first) against the
    /// page's `checkpoint`, when asked for with `proofs=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventItem>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// The signed checkpoint the proofs lead to (with `proofs=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// The log's PII protection when `caller` may see PII in clear (the `pii`
/// permission, docs/pii.md), its keys refreshed for this request; `None`
/// when the caller sees values as stored, or the log protects nothing.
pub(crate) fn revealer(trail: &Trail, caller: &Caller) -> Result<Option<Arc<LogPii>>, Problem> {
    let Some(pii) = trail.pii().filter(|_| caller.sees_pii()) else {
        return Ok(None);
    };
    pii.vault()
        .refresh()
        .map_err(|e| Problem::internal(format!("PII key store: {e}")))?;
    Ok(Some(pii))
}

/// `found` with its sealed fields opened by `pii`: the event, and as
/// entry its JSON (no longer the stored bytes, whose leaf hash the
/// caller takes before). Unchanged when nothing opens.
pub(crate) fn revealed(mut found: Found, pii: Option<&LogPii>) -> Found {
    if let Some(pii) = pii {
        if pii.reveal(&mut found.event) > 0 {
            if let Ok(json) = serde_json::to_vec(&found.event) {
                found.entry = json;
            }
        }
    }
    found
}

fn item(found: Found, proof: Option<Vec<String>>, pii: Option<&LogPii>) -> Result<EventItem, Problem> {
    let leaf = leaf_hash(&found.entry);
    let found = revealed(found, pii);
    let text =
        String::from_utf8(found.entry).map_err(|_| Problem::internal(format!("entry {} is not UTF-8", found.index)))?;
    let event = RawValue::from_string(text).map_err(|e| Problem::internal(format!("entry {}: {e}", found.index)))?;
    Ok(EventItem {
        index: found.index,
        leaf_hash: b64(&leaf),
        event,
        proof,
    })
}

pub(crate) fn page_of(
    trail: &Trail,
    found: Vec<Found>,
    page: &Page,
    proofs: bool,
    pii: Option<&LogPii>,
) -> Result<EventPage, Problem> {
    let next = (found.len() == page.limit)
        .then(|| found.last().map(|f| f.index))
        .flatten();
    let head = proofs.then(|| trail.log().checkpoint());
    let mut events = Vec::with_capacity(found.len());
    for f in found {
        let proof = match &head {
            Some((cp, _)) => Some(
                trail
                    .log()
                    .inclusion_proof(f.index, cp.size)
                    .map_err(super::ledger_problem)?
                    .iter()
                    .map(|h| b64(h))
                    .collect(),
            ),
            None => None,
        };
        events.push(item(f, proof, pii)?);
    }
    Ok(EventPage {
        events,
        next,
        checkpoint: head.map(|(_, note)| String::from_utf8_lossy(&note).into_owned()),
    })
}

fn details(route: &str, query: &Option<String>, results: u64) -> Value {
    json!({"route": route, "query": query.clone().unwrap_or_default(), "results": results})
}

/// Events matching the filters, newest first, one page at a time.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/events", tag = "query",
    params(LogPath, EventQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The request target is longer than `limits.max_uri_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`index-unavailable`: the log's query index failed and is being rebuilt from the ledger; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_events(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(q): Params<EventQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<EventPage>> {
    list(app, caller, log, q, raw, "events", |_| {}).await
}

/// One page of events (newest first unless asked otherwise) matching `q`
/// and what `narrow` adds, recorded as a read through `route`.
async fn list(
    app: Arc<App>,
    caller: Caller,
    log: String,
    q: EventQuery,
    raw: Option<String>,
    route: &'static str,
    narrow: fn(&mut Filter),
) -> ApiResult<Json<EventPage>> {
    blocking(move || {
        let (trail, found, page) = find(&app, &caller, &log, &q, &raw, route, narrow)?;
        let pii = revealer(&trail, &caller)?;
        Ok(Json(page_of(
            &trail,
            found,
            &page,
            q.proofs.unwrap_or(false),
            pii.as_deref(),
        )?))
    })
    .await
}

/// The events of one page matching `q` and what `narrow` adds (newest
/// first unless asked otherwise), with the log's trail and the page asked
/// for; recorded as a read through `route`. Blocking. The dashboard's
/// search runs the same.
pub(crate) fn find(
    app: &App,
    caller: &Caller,
    log: &str,
    q: &EventQuery,
    raw: &Option<String>,
    route: &'static str,
    narrow: fn(&mut Filter),
) -> Result<(Arc<Trail>, Vec<Found>, Page), Problem> {
    let trail = readable(app, caller, log)?;
    let mut filter = q.filter(caller, Timestamp::now())?;
    narrow(&mut filter);
    let page = q.page(app.config.limits.max_page, Order::NewestFirst)?;
    let found = trail.query(&filter, &page).map_err(trail_problem)?;
    app.record(caller, "trail.queried", log, details(route, raw, found.len() as u64))?;
    Ok((trail, found, page))
}

/// Recent failures: outcome `failure`, severity `error` or graver, or an `error` object.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/errors", tag = "query",
    params(LogPath, EventQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The request target is longer than `limits.max_uri_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`index-unavailable`: the log's query index failed and is being rebuilt from the ledger; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_errors(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(q): Params<EventQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<EventPage>> {
    list(app, caller, log, q, raw, "errors", |f| f.failures = true).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventPath {
    pub log: String,
    /// The event's ULID.
    #[param(pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub id: String,
}

/// One event by its id.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/events/{id}", tag = "query",
    params(EventPath),
    responses(
        (status = 200, body = EventItem),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The request target is longer than `limits.max_uri_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`index-unavailable`: the log's query index failed and is being rebuilt from the ledger; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_event(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(EventPath { log, id }): PathArgs<EventPath>,
) -> ApiResult<Json<EventItem>> {
    blocking(move || {
        let trail = readable(&app, &caller, &log)?;
        let ulid: Ulid = id
            .parse()
            .map_err(|e| Problem::bad_request("invalid-path", format!("id {id:?} is not a ULID: {e}")))?;
        let found = find_by_id(&trail, ulid)?;
        // Another tenant's event does not exist for a restricted key.
        let visible = found.filter(|f| caller.tenant().is_none_or(|t| f.event.tenant.as_deref() == Some(t)));
        let Some(found) = visible else {
            return Err(missing_event(&trail, ulid, &id, &log));
        };
        app.record(
            &caller,
            "trail.read",
            &log,
            json!({"route": "event", "id": id, "index": found.index}),
        )?;
        let pii = revealer(&trail, &caller)?;
        Ok(Json(item(found, None, pii.as_deref())?))
    })
    .await
}

/// Why an event id is not found: 410 `pruned` if an event received when
/// the id says would lie in the pruned range (received before the first
/// entry kept), else 404.
fn missing_event(trail: &Trail, id: Ulid, text: &str, log: &str) -> Problem {
    let pruned = trail.pruned_below();
    if pruned > 0 {
        let first_kept = trail.read(pruned).ok().map(|f| f.event.received_at.as_millisecond());
        let ms = i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX);
        if first_kept.is_some_and(|first| ms < first) {
            return Problem::pruned(
                format!(
                    "event {text} of log {log} was received before the first entry kept ({pruned}):                      entries below {pruned} were pruned by retention"
                ),
                pruned,
            );
        }
    }
    Problem::not_found(format!("no event with id {text} in log {log}"))
}

/// An id's time part is its `received_at` to the millisecond, so the event
/// is among that millisecond's arrivals: no separate id index is needed.
fn find_by_id(trail: &Trail, id: Ulid) -> Result<Option<Found>, Problem> {
    let ms = i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX);
    let (Ok(since), Ok(until)) = (
        Timestamp::from_millisecond(ms),
        Timestamp::from_millisecond(ms.saturating_add(1)),
    ) else {
        return Ok(None);
    };
    let filter = Filter {
        received: TimeRange {
            since: Some(since),
            until: Some(until),
        },
        ..Filter::default()
    };
    let mut hit = None;
    trail
        .for_each(&filter, |f| {
            if f.event.id == id {
                hit = Some(f);
                return Ok(false);
            }
            Ok(true)
        })
        .map_err(trail_problem)?;
    Ok(hit)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EntityPath {
    pub log: String,
    /// Target type, e.g. `lead`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: String,
    /// Target id, e.g. `LEAD-001`.
    pub id: String,
}

/// An entity's timeline: every event naming it as a target, oldest first.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/entities/{type}/{id}/history", tag = "query",
    params(EntityPath, EventQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The request target is longer than `limits.max_uri_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`index-unavailable`: the log's query index failed and is being rebuilt from the ledger; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn history(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(EntityPath { log, kind, id }): PathArgs<EntityPath>,
    Params(q): Params<EventQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<EventPage>> {
    blocking(move || {
        let (trail, found, page) = entity_history(&app, &caller, &log, &kind, &id, &q, &raw, Order::OldestFirst)?;
        let pii = revealer(&trail, &caller)?;
        Ok(Json(page_of(
            &trail,
            found,
            &page,
            q.proofs.unwrap_or(false),
            pii.as_deref(),
        )?))
    })
    .await
}

/// One page of the events naming entity `kind:id` as a target, in
/// `default_order` unless `q` asks otherwise; recorded as a read.
/// Blocking. The dashboard's entity timeline runs the same.
#[allow(clippy::too_many_arguments)]
pub(crate) fn entity_history(
    app: &App,
    caller: &Caller,
    log: &str,
    kind: &str,
    id: &str,
    q: &EventQuery,
    raw: &Option<String>,
    default_order: Order,
) -> Result<(Arc<Trail>, Vec<Found>, Page), Problem> {
    let trail = readable(app, caller, log)?;
    if q.target.is_some() {
        return Err(invalid("target", "the entity is given in the path"));
    }
    let mut filter = q.filter(caller, Timestamp::now())?;
    filter.target_type = Some(kind.to_string());
    filter.target_id = Some(id.to_string());
    let page = q.page(app.config.limits.max_page, default_order)?;
    let found = trail.query(&filter, &page).map_err(trail_problem)?;
    let mut d = details("history", raw, found.len() as u64);
    d["entity"] = json!({"type": kind, "id": id});
    app.record(caller, "trail.queried", log, d)?;
    Ok((trail, found, page))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Count {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimeCount {
    /// Start of the hour or day (UTC).
    pub start: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    pub total: u64,
    pub by_action: Vec<Count>,
    pub by_actor: Vec<Count>,
    pub by_outcome: Vec<Count>,
    /// `hour` or `day`.
    pub bucket: String,
    pub by_time: Vec<TimeCount>,
}

fn counts(v: Vec<(String, u64)>) -> Vec<Count> {
    v.into_iter().map(|(value, count)| Count { value, count }).collect()
}

/// Totals and counts by action, actor, outcome and hour or day.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/stats", tag = "query",
    params(LogPath, EventQuery),
    responses(
        (status = 200, body = StatsBody),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The request target is longer than `limits.max_uri_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`index-unavailable`: the log's query index failed and is being rebuilt from the ledger; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn stats(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(q): Params<EventQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<StatsBody>> {
    blocking(move || stats_of(&app, &caller, &log, &q, &raw).map(Json)).await
}

/// Totals and counts of the events matching `q`; recorded as a read.
/// Blocking. The dashboard's overview shows the same.
pub(crate) fn stats_of(
    app: &App,
    caller: &Caller,
    log: &str,
    q: &EventQuery,
    raw: &Option<String>,
) -> Result<StatsBody, Problem> {
    let trail = readable(app, caller, log)?;
    let filter = q.filter(caller, Timestamp::now())?;
    let (bucket, name) = match q.by.as_deref() {
        None | Some("hour") => (Bucket::Hour, "hour"),
        Some("day") => (Bucket::Day, "day"),
        Some(b) => return Err(invalid("by", format!("{b:?}: use hour or day"))),
    };
    let s = trail.stats(&filter, bucket).map_err(trail_problem)?;
    app.record(caller, "trail.queried", log, details("stats", raw, s.total))?;
    Ok(StatsBody {
        total: s.total,
        by_action: counts(s.by_action),
        by_actor: counts(s.by_actor),
        by_outcome: counts(s.by_outcome),
        bucket: name.into(),
        by_time: s
            .by_time
            .into_iter()
            .map(|(t, count)| TimeCount {
                start: t.to_string(),
                count,
            })
            .collect(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PerformanceRow {
    pub action: String,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    /// Whether p50, p95 and p99 are exact nearest-rank percentiles; false
    /// when the query matched more durations than are kept exactly
    /// (2^20), and they are within 1% of the value at that rank.
    pub exact: bool,
}

/// Per action: count, min, max, mean, p50, p95, p99 of `duration_ms`
/// (nearest-rank percentiles, exact up to 2^20 matching durations, then
/// within 1%).
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/performance", tag = "query",
    params(LogPath, EventQuery),
    responses(
        (status = 200, body = Vec<PerformanceRow>),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The request target is longer than `limits.max_uri_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`index-unavailable`: the log's query index failed and is being rebuilt from the ledger; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn performance(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(q): Params<EventQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<PerformanceRow>>> {
    blocking(move || {
        let trail = readable(&app, &caller, &log)?;
        let filter = q.filter(&caller, Timestamp::now())?;
        let rows = trail.performance(&filter).map_err(trail_problem)?;
        app.record(
            &caller,
            "trail.queried",
            &log,
            details("performance", &raw, rows.len() as u64),
        )?;
        Ok(Json(
            rows.into_iter()
                .map(|p| PerformanceRow {
                    action: p.action,
                    count: p.count,
                    min: p.min,
                    max: p.max,
                    mean: p.mean,
                    p50: p.p50,
                    p95: p.p95,
                    p99: p.p99,
                    exact: p.exact,
                })
                .collect(),
        ))
    })
    .await
}

/// Export every matching event, oldest first, streamed: CSV, JSON Lines
/// (the stored entries verbatim) or one JSON array.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/export", tag = "query",
    params(LogPath, EventQuery),
    responses(
        (status = 200, description = "The export, streamed", content(
            (String = "text/csv"),
            (String = "application/jsonl"),
            (String = "application/json"),
            (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "The request target is longer than `limits.max_uri_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`index-unavailable`: the log's query index failed and is being rebuilt from the ledger; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn export(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(q): Params<EventQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    export_as(app, caller, log, q, raw).await
}

/// The export of the events matching `q` in the format `q.format` names
/// (JSON Lines by default), streamed; recorded before the first byte
/// leaves. The dashboard's export links run the same.
pub(crate) async fn export_as(
    app: Arc<App>,
    caller: Caller,
    log: String,
    q: EventQuery,
    raw: Option<String>,
) -> ApiResult<Response> {
    let format = match q.format.as_deref().unwrap_or("jsonl") {
        "csv" => Format::Csv,
        "jsonl" => Format::Jsonl,
        "json" => Format::Json,
        "xlsx" => Format::Xlsx,
        other => return Err(invalid("format", format!("{other:?}: use csv, jsonl, json or xlsx"))),
    };
    let (trail, filter, pii) = {
        let app = app.clone();
        let caller = caller.clone();
        let log = log.clone();
        blocking(move || {
            let trail = readable(&app, &caller, &log)?;
            let pii = revealer(&trail, &caller)?;
            let filter = q.filter(&caller, Timestamp::now())?;
            let total = trail.count(&filter).map_err(trail_problem)?;
            if format == Format::Xlsx && total > XLSX_MAX_ROWS {
                return Err(Problem::bad_request(
                    "export-too-large",
                    format!(
                        "format: xlsx holds at most {XLSX_MAX_ROWS} rows and {total} events match; \
                         narrow the filter or use csv or jsonl"
                    ),
                ));
            }
            // Recorded before the first byte leaves: an export that could
            // not be recorded is not started.
            app.record(&caller, "trail.exported", &log, details("export", &raw, total))?;
            Ok((trail, filter, pii))
        })
        .await?
    };
    let body = if format == Format::Xlsx {
        xlsx_body(trail, filter, pii).await?
    } else {
        stream_body(format, trail, filter, pii)
    };
    let mut response = body.into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match format {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            _ => "application/jsonl",
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{log}-export.{}\"", format.extension())) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Rows of one worksheet, less the header row.
const XLSX_MAX_ROWS: u64 = 1_048_575;

/// Write every row through `w`, oldest first, revealed by `pii` if given
/// (JSON Lines and JSON then carry the revealed event, not the entry).
fn write_rows(trail: &Trail, filter: &Filter, w: &mut EventWriter, pii: Option<&LogPii>) -> Result<(), String> {
    trail
        .for_each(filter, |f| {
            let f = revealed(f, pii);
            w.write(&Row {
                index: f.index,
                event: &f.event,
                entry: &f.entry,
            })
            .map(|()| true)
            .map_err(|e| sealtrail_trail::TrailError::Io {
                what: "export".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })
        .map_err(|e| e.to_string())
}

/// A text export streamed as it is written.
fn stream_body(format: Format, trail: Arc<Trail>, filter: Filter, pii: Option<Arc<LogPii>>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = EventWriter::new(format, Box::new(sink))
            .map_err(|e| e.to_string())
            .and_then(|mut w| {
                write_rows(&trail, &filter, &mut w, pii.as_deref())?;
                w.finish().map(|_| ()).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            tracing::error!(error = %e, "export stopped before its end");
            metrics::counter!("sealtrail_http_internal_errors_total", "kind" => "export").increment(1);
            // The client sees a cut-off body, never a complete-looking one.
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// An XLSX export: a workbook is a zip archive finished at its end, so it
/// is written to a temporary file first (removed once opened) and then
/// streamed.
async fn xlsx_body(trail: Arc<Trail>, filter: Filter, pii: Option<Arc<LogPii>>) -> Result<Body, Problem> {
    let file = blocking(move || {
        let mut name = [0u8; 12];
        getrandom::fill(&mut name).map_err(|e| Problem::internal(format!("random name: {e}")))?;
        let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("sealtrail-export-{name}.xlsx"));
        let written = EventWriter::create(Format::Xlsx, &path)
            .map_err(|e| e.to_string())
            .and_then(|mut w| {
                write_rows(&trail, &filter, &mut w, pii.as_deref())?;
                w.finish().map(|_| ()).map_err(|e| e.to_string())
            })
            .and_then(|()| std::fs::File::open(&path).map_err(|e| e.to_string()));
        let _ = std::fs::remove_file(&path);
        written.map_err(|e| Problem::internal(format!("writing the xlsx export: {e}")))
    })
    .await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok(Body::from_stream(stream))
}

const CHUNK: usize = 64 * 1024;

/// A `Write` that hands 64 KiB chunks to the response body; it blocks
/// while the client is slow, so memory stays bounded.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
