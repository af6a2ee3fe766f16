//! The live stream: `GET /stream/events`, Server-Sent Events of a log's
//! new events as they are appended, and the page `/stream` that shows them.
//!
//! Each SSE event's `id` is the event's ledger index. A client that
//! reconnects with `Last-Event-ID` (or `?after=`) is first sent, from the
//! ledger, every matching event after that index (at most
//! `web.stream_replay_max` entries back; a `gap` event says what was
//! skipped beyond that), then the live ones; a client that falls behind
//! the feed's buffer reads what it missed from the ledger ([`crate::feed`]).
//! Filters are applied here, on the server; a tenant-restricted caller
//! only ever receives its tenant's events.
//!
//! What this is not: a query. Free text matches words anywhere in the
//! event's JSON, more loosely than the index's search.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::http::{HeaderMap, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sealtrail_event::{Event, Timestamp};
use sealtrail_trail::{Filter, TimeRange, Trail};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

use super::{Layout, Viewer};
use crate::api::query::EventQuery;
use crate::api::{blocking, readable};
use crate::app::{App, Caller};
use crate::feed::{read_range, Batch, ClientSlot, CHUNK};
use crate::problem::Problem;
use sealtrail_meta::{Scope, SYSTEM_LOG};

/// `Retry-After` of a stream refused at `web.max_stream_clients`, in seconds.
const RETRY_AFTER_FULL: u64 = 5;

/// Chunks of SSE text (each the matching events of one run of entries)
/// a client's task may have ready before it waits for the client to read
/// them.
const CLIENT_QUEUE: usize = 16;

/// The SSE text of one event: `id` its index, `data` its JSON (one line).
fn sse_event(out: &mut String, kind: Option<&str>, id: Option<u64>, data: &str) {
    use std::fmt::Write as _;
    if let Some(kind) = kind {
        let _ = writeln!(out, "event: {kind}");
    }
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    let _ = write!(out, "data: {data}\n\n");
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/stream", get(page))
        .route("/stream/events", get(events))
}

/// The parameters of the stream besides the filters.
#[derive(Debug, Default, Deserialize)]
struct LogParam {
    log: Option<String>,
}

/// Split the query string into the log and the filters (the parameters of
/// `GET /api/v1/logs/{log}/events`, of which `after` is the index to
/// resume after; paging and shaping parameters are refused).
fn parse_query(raw: Option<&str>) -> Result<(Option<String>, EventQuery), Problem> {
    let raw = raw.unwrap_or("");
    let mut log = None;
    let mut rest = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        if pair.starts_with("log=") || pair == "log" {
            let uri: Uri = format!("/?{pair}")
                .parse()
                .map_err(|e| Problem::bad_request("invalid-query", format!("log: {e}")))?;
            let axum::extract::Query(p) = axum::extract::Query::<LogParam>::try_from_uri(&uri)
                .map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
            log = p.log.filter(|l| !l.is_empty());
        } else {
            rest.push(pair);
        }
    }
    let uri: Uri = format!("/?{}", rest.join("&"))
        .parse()
        .map_err(|e| Problem::bad_request("invalid-query", format!("{e}")))?;
    let axum::extract::Query(q) = axum::extract::Query::<EventQuery>::try_from_uri(&uri)
        .map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    for (name, given) in [
        ("limit", q.limit.is_some()),
        ("order", q.order.is_some()),
        ("proofs", q.proofs.is_some()),
        ("by", q.by.is_some()),
        ("format", q.format.is_some()),
    ] {
        if given {
            return Err(Problem::bad_request(
                "invalid-query",
                format!("{name}: the live stream takes filters and `after` only"),
            ));
        }
    }
    Ok((log, q))
}

/// Whether `event` meets every condition of `filter`. `data` is the
/// event's JSON, searched for the words of `filter.text`.
pub fn matches(filter: &Filter, event: &Event, data: &str) -> bool {
    let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    if let Some(action) = &filter.action {
        if !sealtrail_event::glob_match(action, &event.action) {
            return false;
        }
    }
    if filter.outcome.is_some() && event.outcome != filter.outcome {
        return false;
    }
    if filter.min_severity.is_some_and(|min| event.severity < min) {
        return false;
    }
    let source = event.source.as_ref();
    let context = event.context.as_ref();
    if !eq(&filter.actor, event.actor.as_ref().map(|a| a.id.as_str()))
        || !eq(&filter.tenant, event.tenant.as_deref())
        || !eq(&filter.workflow, source.and_then(|s| s.workflow.as_deref()))
        || !eq(&filter.service, source.and_then(|s| s.service.as_deref()))
        || !eq(&filter.session, context.and_then(|c| c.session_id.as_deref()))
    {
        return false;
    }
    if filter.ip.is_some() && context.and_then(|c| c.ip) != filter.ip {
        return false;
    }
    if let Some(kind) = &filter.target_type {
        let hit = event
            .targets
            .iter()
            .flatten()
            .any(|t| &t.kind == kind && filter.target_id.as_ref().is_none_or(|id| &t.id == id));
        if !hit {
            return false;
        }
    }
    let within =
        |range: &TimeRange, t: Timestamp| range.since.is_none_or(|s| t >= s) && range.until.is_none_or(|u| t < u);
    if !within(&filter.occurred, event.occurred_at) || !within(&filter.received, event.received_at) {
        return false;
    }
    if filter.failures {
        let failed = event.outcome == Some(sealtrail_event::Outcome::Failure)
            || event.severity >= sealtrail_event::Severity::Error
            || event.error.is_some();
        if !failed {
            return false;
        }
    }
    if let Some(text) = &filter.text {
        let hay = data.to_lowercase();
        if !sealtrail_trail::text_words(text)
            .iter()
            .all(|w| hay.contains(&w.to_lowercase()))
        {
            return false;
        }
    }
    true
}

/// `GET /stream/events`: see the module documentation.
async fn events(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let (log, q) = parse_query(raw.as_deref())?;
    let log = log.unwrap_or_else(|| app.config.default_log.clone());
    let resume = match headers.get("last-event-id") {
        Some(v) => {
            let text = v.to_str().unwrap_or("").trim();
            Some(text.parse::<u64>().map_err(|_| {
                Problem::bad_request(
                    "invalid-header",
                    format!("Last-Event-ID: {text:?} is not an event index (a whole number)"),
                )
            })?)
        }
        None => q.after,
    };
    let Some(slot) = app.feeds.admit(app.config.web.max_stream_clients) else {
        metrics::counter!("sealtrail_sse_refused_total").increment(1);
        let mut p = Problem::unavailable(format!(
            "the live stream serves {} clients at once (web.max_stream_clients); try again shortly",
            app.config.web.max_stream_clients
        ));
        p.retry_after = Some(RETRY_AFTER_FULL);
        return Err(p);
    };
    let caller = viewer.caller;
    let (trail, filter) = {
        let (app, log) = (app.clone(), log.clone());
        blocking(move || {
            let trail = readable(&app, &caller, &log)?;
            let filter = q.filter(&caller, Timestamp::now())?;
            app.record(
                &caller,
                "trail.queried",
                &log,
                json!({"route": "stream", "query": raw.unwrap_or_default(), "after": resume}),
            )?;
            Ok((trail, filter))
        })
        .await?
    };
    // Subscribe before reading the size: whatever is appended after this
    // arrives through the feed, whatever before through the ledger.
    let feed = app.feeds.follow(&log, trail.clone());
    let live = feed.subscribe();
    let size = trail.log().size();
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let client = Client {
        feeds: app.feeds.clone(),
        trail,
        filter,
        next: size,
        tx,
        keep_alive: Duration::from_secs(app.config.web.stream_keepalive_s.max(1)),
        _slot: slot,
    };
    let replay_max = app.config.web.stream_replay_max;
    tokio::spawn(client.run(live, resume, size, replay_max));
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies must pass events on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One connected client: where it is in the log and what it wants.
struct Client {
    feeds: Arc<crate::feed::Feeds>,
    trail: Arc<Trail>,
    filter: Filter,
    /// The index of the next entry to consider.
    next: u64,
    tx: mpsc::Sender<Bytes>,
    keep_alive: Duration,
    _slot: ClientSlot,
}

/// Why a client's task stops.
enum Stop {
    Gone,
}

impl Client {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Batch>>, resume: Option<u64>, size: u64, replay_max: u64) {
        if let Some(after) = resume {
            let from = after.saturating_add(1).min(size);
            let oldest = size.saturating_sub(replay_max);
            self.next = from;
            if from < oldest {
                let gap = json!({"from": from, "to": oldest, "skipped": oldest - from}).to_string();
                let mut event = String::new();
                sse_event(&mut event, Some("gap"), Some(oldest - 1), &gap);
                if self.tx.send(Bytes::from(event)).await.is_err() {
                    return;
                }
                self.next = oldest;
            }
            if self.catch_up(size).await.is_err() {
                return;
            }
        }
        let mut keep_alive = tokio::time::interval(self.keep_alive);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keep_alive.tick().await;
        loop {
            let got = tokio::select! {
                _ = self.tx.closed() => return,
                _ = keep_alive.tick() => {
                    if self.tx.send(Bytes::from_static(b":\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                got = live.recv() => got,
            };
            let done = match got {
                Ok(batch) => self.deliver(&batch).await,
                Err(broadcast::error::RecvError::Lagged(batches)) => {
                    self.feeds.lagged();
                    tracing::debug!(
                        batches,
                        "live stream client fell behind the feed; reading from the ledger"
                    );
                    let size = self.trail.log().size();
                    self.catch_up(size).await
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if done.is_err() {
                return;
            }
        }
    }

    /// Send the batch's entries this client has not yet considered,
    /// reading any before them from the ledger first.
    async fn deliver(&mut self, batch: &Batch) -> Result<(), Stop> {
        if batch.first > self.next {
            self.catch_up(batch.first).await?;
        }
        self.send_items(batch).await
    }

    async fn send_items(&mut self, batch: &Batch) -> Result<(), Stop> {
        let mut sent = 0u64;
        let mut text = String::new();
        for item in &batch.items {
            if item.index < self.next {
                continue;
            }
            self.next = item.index + 1;
            if matches(&self.filter, &item.event, &item.data) {
                sse_event(&mut text, None, Some(item.index), &item.data);
                sent += 1;
            }
        }
        if sent > 0 {
            // One chunk for the run: one wake-up and one write, not one per event.
            self.tx.send(Bytes::from(text)).await.map_err(|_| Stop::Gone)?;
            metrics::counter!("sealtrail_sse_events_sent_total").increment(sent);
        }
        Ok(())
    }

    /// Read and send the entries from `self.next` up to `to` from the
    /// ledger.
    async fn catch_up(&mut self, to: u64) -> Result<(), Stop> {
        while self.next < to {
            let (trail, first) = (self.trail.clone(), self.next);
            let count = CHUNK.min(to - first);
            let read = tokio::task::spawn_blocking(move || read_range(&trail, first, count)).await;
            let batch = match read {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => return self.fail(first, &e).await,
                Err(e) => return self.fail(first, &e.to_string()).await,
            };
            metrics::counter!("sealtrail_sse_replayed_total").increment(batch.items.len() as u64);
            self.send_items(&batch).await?;
        }
        Ok(())
    }

    /// Tell the client the stream cannot go on, and end it.
    async fn fail(&mut self, at: u64, error: &str) -> Result<(), Stop> {
        tracing::error!(log = %self.trail.log().name(), "live stream: reading entries from {at}: {error}");
        let data = json!({"at": at, "detail": "the stream could not read the log; see the server log"}).to_string();
        let mut event = String::new();
        sse_event(&mut event, Some("error"), None, &data);
        let _ = self.tx.send(Bytes::from(event)).await;
        Err(Stop::Gone)
    }
}

#[derive(Template)]
#[template(path = "stream.html")]
struct StreamPage {
    layout: Layout,
    /// Each readable log, and whether it is the one shown.
    logs: Vec<(String, bool)>,
    outcomes: Vec<(&'static str, bool)>,
    log: String,
    action: String,
    actor: String,
    outcome: String,
    tenant: String,
    text: String,
    /// The tenant the caller is restricted to, if any.
    tenant_fixed: Option<String>,
    /// Why the filters cannot be streamed, if they cannot.
    error: Option<String>,
    /// The URL of the SSE stream for these filters.
    source: String,
}

/// The logs `caller` may read, by name.
pub fn readable_logs(app: &App, caller: &Caller) -> Vec<String> {
    let mut names = app.data.log_names().unwrap_or_default();
    names.retain(|name| name != SYSTEM_LOG || caller.require_system_read().is_ok());
    names.sort();
    names
}

/// `GET /stream`: the filter form and the events as they arrive.
async fn page(State(app): State<Arc<App>>, viewer: Viewer, RawQuery(raw): RawQuery) -> Result<Response, Problem> {
    viewer.caller.require(Scope::Read)?;
    let layout = viewer.layout("/stream");
    let caller = viewer.caller;
    let parsed = parse_query(raw.as_deref());
    let (log, q, error) = match parsed {
        Ok((log, q)) => {
            let error = q.filter(&caller, Timestamp::now()).err().map(|p| p.detail);
            (log, q, error)
        }
        Err(p) => (None, EventQuery::default(), Some(p.detail)),
    };
    let log = log.unwrap_or_else(|| app.config.default_log.clone());
    let logs = {
        let (app, caller) = (app.clone(), caller.clone());
        blocking(move || Ok(readable_logs(&app, &caller))).await?
    };
    let error =
        error.or_else(|| (!logs.contains(&log)).then(|| format!("there is no log named {log:?} that you may read")));
    let mut source = format!("/stream/events?log={}", super::encode_component(&log));
    for (name, value) in [
        ("action", &q.action),
        ("actor", &q.actor),
        ("outcome", &q.outcome),
        ("tenant", &q.tenant),
        ("text", &q.text),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            source.push_str(&format!("&{name}={}", super::encode_component(v)));
        }
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let outcome = text(&q.outcome);
    let page = StreamPage {
        layout,
        logs: logs
            .into_iter()
            .map(|l| {
                let chosen = l == log;
                (l, chosen)
            })
            .collect(),
        outcomes: ["success", "failure", "unknown"]
            .into_iter()
            .map(|o| (o, o == outcome))
            .collect(),
        log,
        action: text(&q.action),
        actor: text(&q.actor),
        outcome,
        tenant: text(&q.tenant),
        text: text(&q.text),
        tenant_fixed: caller.tenant().map(str::to_string),
        error,
        source,
    };
    let html = page
        .render()
        .map_err(|e| Problem::internal(format!("rendering the stream page: {e}")))?;
    Ok(Html(html).into_response())
}
