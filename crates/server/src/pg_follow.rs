//! Continuous following of PostgreSQL capture sources (`[[postgres.sources]]`,
//! docs/postgresql.md "Capture"): one thread per source drains its
//! database's outbox, or its replication slot when the install is in
//! logical mode, into its log with [`sealtrail_pg::drain::drain`],
//! exactly once, sleeps `poll_interval_ms` while nothing comes, and
//! reconnects after a failure with a backoff of 1 s doubling to 60 s.
//!
//! A failing source never stops the server: it shows `failing` in health
//! with its last error and is retried. The DSN's password is never logged
//! or shown (errors and health name the source, not its DSN).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;
use utoipa::ToSchema;

use sealtrail_pg::drain::{drain, DrainOptions};

use crate::app::App;
use crate::config::{PgSource, Postgres};

/// The first wait after a failure; it doubles with every failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the pending count is asked of the source (`capture::status`
/// opens a connection of its own, so not at every poll)...
const PENDING_EVERY: Duration = Duration::from_secs(15);
/// ...or, while the last count was not 0, after a drain that found
/// nothing, at most this often.
const PENDING_AGAIN: Duration = Duration::from_secs(1);
/// Free bytes asked of the data directory before a drain: a drain's batch
/// is appended in pieces bounded by the drainer, so this is a floor, not
/// the batch's size.
const WRITE_ROOM: u64 = 1 << 20;

/// One source as `GET /api/v1/system/health` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PgSourceHealth {
    /// The source's `name` in `[[postgres.sources]]`.
    pub name: String,
    /// The log its changes go to.
    pub log: String,
    /// The DSN with any password replaced by `***`.
    pub dsn: String,
    /// `ok` (the last drain succeeded, or none was tried yet) or `failing`
    /// (the last attempt failed; it is retried with backoff).
    pub state: String,
    /// The cause of the last failure, kept after recovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Events appended from this source since the server started.
    pub drained_total: u64,
    /// When the last drain succeeded (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drain_at: Option<String>,
    /// Outbox rows waiting, as last read from the database (trigger mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    /// The install's capture mode, `triggers` or `logical`, as last read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Logical mode: the replication slot's `wal_status` (`reserved`,
    /// `extended`, `unreserved`, `lost`), or `missing` when the slot is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_wal_status: Option<String>,
    /// Logical mode: WAL the database server keeps for the slot, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_retained_bytes: Option<i64>,
    /// Logical mode: WAL not yet confirmed by a drain, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_lag_bytes: Option<i64>,
}

struct Source {
    config: PgSource,
    health: Mutex<PgSourceHealth>,
}

/// The followers of every configured source, and what they report.
pub struct Followers {
    sources: Vec<Arc<Source>>,
    /// Dropped to stop the threads: every wait on its receiver then ends.
    stop: Mutex<Option<Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Followers {
    /// The sources of `config`, none running yet.
    pub fn new(config: &Postgres) -> Followers {
        let sources = config
            .sources
            .iter()
            .map(|s| {
                Arc::new(Source {
                    health: Mutex::new(PgSourceHealth {
                        name: s.name.clone(),
                        log: s.log.clone(),
                        dsn: sealtrail_meta::redact_address(&s.dsn),
                        state: "ok".into(),
                        last_error: None,
                        drained_total: 0,
                        last_drain_at: None,
                        pending: None,
                        mode: None,
                        slot_wal_status: None,
                        slot_retained_bytes: None,
                        slot_lag_bytes: None,
                    }),
                    config: s.clone(),
                })
            })
            .collect();
        Followers {
            sources,
            stop: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Start one thread per source, following until [`Followers::stop`]
    /// or the server's shutdown.
    pub fn start(app: &Arc<App>) -> std::io::Result<()> {
        let me = &app.pg_follow;
        if me.sources.is_empty() {
            return Ok(());
        }
        // Counted from the first drain, which may end before the router
        // would install the recorder.
        let _ = crate::ops::prometheus();
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        *me.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let mut threads = me.threads.lock().unwrap_or_else(|e| e.into_inner());
        for source in &me.sources {
            let name = &source.config.name;
            // Present from the start, so rates over them work from zero.
            metrics::counter!("sealtrail_pg_drained_total", "source" => name.clone()).increment(0);
            metrics::counter!("sealtrail_pg_drain_errors_total", "source" => name.clone()).increment(0);
            let (app, source, rx) = (app.clone(), source.clone(), rx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("pg-follow-{name}"))
                    .spawn(move || follow(&app, &source, &rx))?,
            );
        }
        Ok(())
    }

    /// Stop every follower and wait for it: a drain under way finishes its
    /// batch first, so nothing is left half-done (and were it, the next
    /// drain would complete it exactly once).
    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Every source's state, in configuration order.
    pub fn health(&self) -> Vec<PgSourceHealth> {
        self.sources
            .iter()
            .map(|s| s.health.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}

/// Wait `d`, or less if the server stops meanwhile; true when it stops.
fn wait(app: &App, rx: &Receiver<()>, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if app.shutting_down() {
            return true;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Shutdown begins with a flag, not the channel: look at it often.
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return true,
        }
    }
}

fn follow(app: &App, source: &Source, rx: &Receiver<()>) {
    let c = &source.config;
    let opts = DrainOptions {
        batch: c.batch,
        limit: None,
    };
    let poll = Duration::from_millis(c.poll_interval_ms);
    let mut backoff = BACKOFF_FIRST;
    let mut pending_at: Option<Instant> = None;
    tracing::info!(source = %c.name, log = %c.log, dsn = %sealtrail_meta::redact_address(&c.dsn), "following PostgreSQL source {}", c.name);
    loop {
        if wait(app, rx, Duration::ZERO) {
            return;
        }
        match drain_once(app, c, &opts) {
            Ok((appended, drained)) => {
                backoff = BACKOFF_FIRST;
                let now = Instant::now();
                let recovered = {
                    let mut h = source.health.lock().unwrap_or_else(|e| e.into_inner());
                    let was = h.state != "ok";
                    h.state = "ok".into();
                    h.drained_total += appended;
                    h.last_drain_at = Some(sealtrail_meta::now_text());
                    was
                };
                if recovered {
                    tracing::info!(source = %c.name, "PostgreSQL source {} drains again", c.name);
                }
                metrics::counter!("sealtrail_pg_drained_total", "source" => c.name.clone()).increment(appended);
                metrics::gauge!("sealtrail_pg_last_drain_timestamp_seconds", "source" => c.name.clone())
                    .set(unix_seconds());
                let since = pending_at.map(|t| now.duration_since(t));
                let stale = source.health.lock().unwrap_or_else(|e| e.into_inner()).pending != Some(0);
                if since.is_none_or(|d| d >= PENDING_EVERY || (stale && appended == 0 && d >= PENDING_AGAIN)) {
                    pending_at = Some(now);
                    update_pending(source);
                }
                // More may be waiting already when this drain was busy
                // (rows it found already appended, or skipped, count).
                if drained == 0 && wait(app, rx, poll) {
                    return;
                }
            }
            Err(cause) => {
                metrics::counter!("sealtrail_pg_drain_errors_total", "source" => c.name.clone()).increment(1);
                tracing::warn!(source = %c.name, error = %cause, retry_in_ms = backoff.as_millis() as u64, "PostgreSQL source {}: {cause}", c.name);
                {
                    let mut h = source.health.lock().unwrap_or_else(|e| e.into_inner());
                    h.state = "failing".into();
                    h.last_error = Some(cause);
                }
                // A lost slot fails every drain: show its state as well.
                update_pending(source);
                if wait(app, rx, backoff) {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One drain of `c` into its log (created if missing, like any log the
/// server creates on use): the events appended and the rows drained, or
/// why not.
fn drain_once(app: &App, c: &PgSource, opts: &DrainOptions) -> Result<(u64, u64), String> {
    let trail = app
        .open_or_create(&c.log)
        .map_err(|p| format!("log {}: {}", c.log, p.detail))?;
    app.check_writable(&trail, WRITE_ROOM)
        .map_err(|p| format!("log {}: {}", c.log, p.detail))?;
    let report = drain(&c.dsn, &trail, opts).map_err(|e| hide_dsn(&e.to_string(), &c.dsn))?;
    Ok((report.appended, report.rows))
}

fn update_pending(source: &Source) {
    let c = &source.config;
    match sealtrail_pg::capture::status(&c.dsn) {
        Ok(s) => {
            let pending = s.install.as_ref().map(|i| i.pending);
            if let Some(p) = pending {
                metrics::gauge!("sealtrail_pg_pending_rows", "source" => c.name.clone()).set(p as f64);
            }
            let slot = s.install.as_ref().and_then(|i| i.slot.as_ref());
            if let Some(b) = slot.and_then(|s| s.retained_bytes) {
                metrics::gauge!("sealtrail_pg_slot_retained_wal_bytes", "source" => c.name.clone()).set(b as f64);
            }
            let mut h = source.health.lock().unwrap_or_else(|e| e.into_inner());
            h.pending = pending;
            h.mode = s.install.as_ref().map(|i| i.mode.as_str().to_string());
            h.slot_wal_status = slot.map(|s| {
                if s.exists {
                    s.wal_status.clone().unwrap_or_else(|| "unknown".into())
                } else {
                    "missing".into()
                }
            });
            h.slot_retained_bytes = slot.and_then(|s| s.retained_bytes);
            h.slot_lag_bytes = slot.and_then(|s| s.lag_bytes);
        }
        Err(e) => {
            tracing::debug!(source = %c.name, "PostgreSQL source {}: reading the pending count: {}", c.name, hide_dsn(&e.to_string(), &c.dsn));
        }
    }
}

/// `text` with the DSN, should an error quote it, replaced by its redacted
/// form.
fn hide_dsn(text: &str, dsn: &str) -> String {
    if dsn.is_empty() || !text.contains(dsn) {
        return text.to_string();
    }
    text.replace(dsn, &sealtrail_meta::redact_address(dsn))
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_quoting_the_dsn_loses_its_password() {
        let dsn = "postgresql://app:s3cret@db/shop";
        let shown = hide_dsn(&format!("bad {dsn} here"), dsn);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@db/shop"), "{shown}");
    }
}
