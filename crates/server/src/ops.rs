//! Liveness, readiness and Prometheus metrics.
//!
//! Request counts and latencies are counted by [`track`] around every
//! route; log sizes, disk use, checkpoint age and index lag are read fresh
//! at each scrape, so they are never stale.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sealtrail_ledger::log::CHECKPOINT_FILE;

use crate::app::App;
use crate::problem::Problem;

/// Latency buckets, seconds: an fsync is ~1 ms, a page of events a few.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Group sizes of single-event ingest: 1 when requests come one at a time.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process-wide Prometheus recorder (the `metrics` facade has one).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("sealtrail_ingest_group_events".into()), GROUP_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if something else installed a recorder first; then
        // this one simply stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Count every response by route and status, and time it.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("sealtrail_http_responses_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("sealtrail_http_request_seconds", "route" => route, "method" => method)
        .record(started.elapsed());
    response
}

/// Liveness: the process answers. Still 200 when a log is damaged or
/// poisoned (restarting would not help), but each such log is named on a
/// line of its own after `ok`.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive; then one line per damaged or poisoned log", body = String, content_type = "text/plain; charset=utf-8")))]
pub async fn healthz(State(app): State<Arc<App>>) -> String {
    let mut out = String::from("ok\n");
    for (name, trail) in app.open_trails() {
        let log = trail.log();
        if let Some(d) = log.damaged() {
            out.push_str(&format!(
                "log {name}: damaged at entry {} (byte {} of its entries file): {}\n",
                d.index, d.offset, d.detail
            ));
        } else if let Some(reason) = log.poisoned() {
            out.push_str(&format!("log {name}: poisoned: {reason}\n"));
        }
        let index = trail.index_status().state;
        if index != sealtrail_trail::IndexState::Ok {
            out.push_str(&format!(
                "log {name}: query index {index}: being rebuilt from the ledger, queries refused meanwhile\n"
            ));
        }
    }
    out
}

/// Readiness: every open log is intact and accepts writes, and the disk has room.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 503, description = "Not ready, and why", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, Problem> {
    if app.shutting_down() {
        return Err(Problem::unavailable("the server is shutting down"));
    }
    for (name, trail) in app.open_trails() {
        if let Some(d) = trail.log().damaged() {
            return Err(Problem::integrity_failure(format!(
                "log {name}: entry {} failed its integrity check: {}",
                d.index, d.detail
            )));
        }
        if let Some(reason) = trail.log().poisoned() {
            // The reason names files: the log has it, the client does not.
            tracing::warn!(log = %name, %reason, "not ready: the log is poisoned");
            return Err(Problem::unavailable(format!(
                "log {name} stopped accepting writes after a storage fault; see the server log"
            )));
        }
    }
    if let Some(reason) = app.system.disk_critical() {
        return Err(Problem::unavailable(reason));
    }
    Ok("ready\n")
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 503, description = "Over `http.max_in_flight` requests at once; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let handle = prometheus();
    let app2 = app.clone();
    let sampled = tokio::task::spawn_blocking(move || sample_logs(&app2)).await;
    if let Err(e) = sampled {
        return Problem::internal(format!("sampling metrics: {e}")).into_response();
    }
    let h = app.system.health();
    metrics::gauge!("sealtrail_disk_used_ratio").set(h.disk.used_percent / 100.0);
    metrics::gauge!("sealtrail_memory_used_ratio").set(h.memory.used_percent / 100.0);
    metrics::gauge!("sealtrail_cpu_used_ratio").set(h.cpu.used_percent / 100.0);
    metrics::gauge!("sealtrail_uptime_seconds").set(app.started.elapsed().as_secs_f64());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}

fn sample_logs(app: &App) {
    app.integrity_metrics();
    let now = SystemTime::now();
    for (name, trail) in app.open_trails() {
        let log = trail.log();
        let size = log.size();
        let indexed = trail.indexed();
        metrics::gauge!("sealtrail_log_entries", "log" => name.clone()).set(size as f64);
        metrics::gauge!("sealtrail_index_lag_entries", "log" => name.clone()).set(size.saturating_sub(indexed) as f64);
        let index = trail.index_status();
        metrics::gauge!("sealtrail_index_queued_events", "log" => name.clone()).set(index.queued as f64);
        metrics::gauge!("sealtrail_index_held_keys", "log" => name.clone()).set(index.held_keys as f64);
        metrics::gauge!("sealtrail_index_available", "log" => name.clone())
            .set(f64::from(u8::from(index.state == sealtrail_trail::IndexState::Ok)));
        metrics::gauge!("sealtrail_log_poisoned", "log" => name.clone())
            .set(f64::from(u8::from(log.poisoned().is_some())));
        metrics::gauge!("sealtrail_log_bytes", "log" => name.clone()).set(dir_bytes(log.dir()) as f64);
        let age = std::fs::metadata(log.dir().join(CHECKPOINT_FILE))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok());
        if let Some(age) = age {
            metrics::gauge!("sealtrail_checkpoint_age_seconds", "log" => name).set(age.as_secs_f64());
        }
    }
}

/// Bytes of every file under `dir` (the ledger files and the query index).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
