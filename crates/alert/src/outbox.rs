//! The durable queue of notifications in the metadata database, their
//! retries with backoff, dead letters and delivery history
//! (docs/alert-channels.md).
//!
//! [`enqueue`] takes a `&Connection` so the evaluator can queue a
//! notification in the same transaction as the alert and the engine state
//! that caused it: after a crash either all three are there or none is.
//! A [`Deliverer`] pass takes the rows that are due, renders and sends each
//! with [`notify`], and records the outcome; a failure worth
//! retrying is tried again after a [`Backoff`] delay until the attempts run
//! out, then it is a dead letter, which [`retry_dead`] can queue again.
//!
//! Delivery is at least once. A send and its record are not atomic: a
//! crash after the receiver accepted a notification but before the record
//! commits sends it again on the next pass. Receivers deduplicate by the
//! row id, which every attempt carries (`Sealtrail-Delivery` on webhooks,
//! the `Message-ID` of mails).
//!
//! Exactly one deliverer may run per database (the server's): two would
//! take the same due rows and send them twice. Notifications of one alert
//! to one channel go out in the order they were queued: a later one waits
//! while an earlier one is pending (not once it is dead).
//!
//! Not here: what to notify (the [`engine`](crate::engine)), wire formats
//! ([`notify`]), or any clock or randomness of its own —
//! times and jitter come from the caller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::engine::time_text;
use crate::notify::{self, SendFailure, Sent};
use crate::spec::{ChannelSpec, Message, MessageKind};

/// The outbox's tables; the server executes this on `meta.db`.
///
/// `requeued_at` is the value of `attempts` when [`retry_dead`] last
/// queued the row again: the attempts since then are the ones the
/// [`Backoff`] counts.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT NOT NULL,
    alert_id        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    message         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    requeued_at     INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS notifications_due
    ON notifications (next_attempt_ms, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_alert ON notifications (alert_id, channel, id);
CREATE INDEX IF NOT EXISTS notifications_channel ON notifications (channel, id);
CREATE TABLE IF NOT EXISTS notification_attempts (
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    at              TEXT NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    duration_ms     INTEGER NOT NULL,
    PRIMARY KEY (notification_id, attempt)
) WITHOUT ROWID;
";

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its first or next attempt.
    Pending,
    /// A receiver accepted it.
    Delivered,
    /// Given up: a permanent failure, or every attempt failed.
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Pending, Status::Delivered, Status::Dead]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Fired => "fired",
        MessageKind::Resolved => "resolved",
        MessageKind::Test => "test",
    }
}

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Queue `message` for `channel`, due at once. Returns the row id, which
/// is the delivery id receivers see.
pub fn enqueue(conn: &Connection, channel: &str, message: &Message, now_ms: i64) -> rusqlite::Result<i64> {
    let json = serde_json::to_string(message).map_err(conversion)?;
    conn.execute(
        "INSERT INTO notifications (channel, alert_id, kind, message, status, next_attempt_ms, created_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
        params![
            channel,
            message.alert_id,
            kind_name(message.kind),
            json,
            now_ms,
            time_text(now_ms)
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// When to try a failed notification again.
///
/// The default tries after 1 s, then doubles the wait up to 1 h, for 20
/// attempts in all: the last comes 4 to 8 hours after the first, by the
/// jitter, then the notification is a dead letter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Wait after the first failed attempt.
    pub base: Duration,
    /// Each further failure multiplies the wait by this.
    pub factor: f64,
    /// The wait never exceeds this.
    pub max_delay: Duration,
    /// Attempts before a dead letter (at least 1).
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(3600),
            max_attempts: 20,
        }
    }
}

impl Backoff {
    /// The wait after the `attempt`-th failed attempt (from 1):
    /// `min(base × factor^(attempt−1), max_delay)`, scaled by
    /// `0.5 + 0.5 × jitter` for a `jitter` in [0, 1], so that receivers
    /// that fail together are not all retried together.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let full = self.base.as_secs_f64() * self.factor.powi(exponent);
        let max = self.max_delay.as_secs_f64();
        let full = if full.is_finite() { full.min(max) } else { max };
        let jitter = if jitter.is_nan() { 1.0 } else { jitter.clamp(0.0, 1.0) };
        Duration::try_from_secs_f64(full * (0.5 + 0.5 * jitter)).unwrap_or(self.max_delay)
    }

    /// Whether a retryable failure at this attempt (from 1) gets another.
    pub fn retries_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }
}

/// A uniformly random jitter in [0, 1) from the operating system; 0.5 if
/// it has none to give.
pub fn random_jitter() -> f64 {
    match getrandom::u64() {
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// A pending notification whose time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: i64,
    pub channel: String,
    pub alert_id: String,
    /// The [`Message`] as JSON.
    pub message: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// Up to `limit` pending notifications due at `now_ms`, the longest
/// waiting first, leaving out any queued after a still-pending one of the
/// same alert and channel.
pub fn due(conn: &Connection, now_ms: i64, limit: usize) -> rusqlite::Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.id, n.channel, n.alert_id, n.message, n.attempts FROM notifications n
         WHERE n.status = 'pending' AND n.next_attempt_ms <= ?1
           AND NOT EXISTS (
               SELECT 1 FROM notifications e
               WHERE e.alert_id = n.alert_id AND e.channel = n.channel AND e.id < n.id AND e.status = 'pending')
         ORDER BY n.next_attempt_ms, n.id
         LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![now_ms, limit], |r| {
        Ok(Due {
            id: r.get(0)?,
            channel: r.get(1)?,
            alert_id: r.get(2)?,
            message: r.get(3)?,
            attempts: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        /// HTTP status or SMTP reply code.
        status: u16,
    },
    Failed {
        status: Option<u16>,
        error: String,
        retryable: bool,
    },
}

impl Outcome {
    /// A failure that no retry can fix.
    pub fn permanent(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            status: None,
            error: error.into(),
            retryable: false,
        }
    }
}

impl From<&Result<Sent, SendFailure>> for Outcome {
    fn from(result: &Result<Sent, SendFailure>) -> Outcome {
        match result {
            Ok(sent) => Outcome::Delivered { status: sent.status },
            Err(f) => Outcome::Failed {
                status: f.status,
                error: f.message.clone(),
                retryable: f.retryable,
            },
        }
    }
}

/// What [`record`] made of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The attempt's number, from 1, over the notification's life.
    pub attempt: u32,
    pub status: Status,
    /// When pending again: the next attempt's time.
    pub next_attempt_ms: Option<i64>,
}

/// Record an attempt at pending notification `id`, made at `now_ms` and
/// lasting `duration_ms`: delivered; pending again after the backoff delay
/// (`jitter` in [0, 1]); or dead, when the failure is permanent or the
/// attempts ran out. `None` if `id` is not pending.
pub fn record(
    conn: &Connection,
    id: i64,
    outcome: &Outcome,
    duration_ms: i64,
    now_ms: i64,
    backoff: &Backoff,
    jitter: f64,
) -> rusqlite::Result<Option<Recorded>> {
    atomically(conn, |conn| {
        let row: Option<(u32, u32)> = conn
            .query_row(
                "SELECT attempts, requeued_at FROM notifications WHERE id = ?1 AND status = 'pending'",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((attempts, requeued_at)) = row else {
            return Ok(None);
        };
        let attempt = attempts + 1;
        let at = time_text(now_ms);
        let (code, error) = match outcome {
            Outcome::Delivered { status } => (Some(*status), None),
            Outcome::Failed { status, error, .. } => (*status, Some(error.as_str())),
        };
        conn.execute(
            "INSERT INTO notification_attempts (notification_id, attempt, at, status_code, error, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, attempt, at, code, error, duration_ms],
        )?;
        let (status, next) = match outcome {
            Outcome::Delivered { .. } => (Status::Delivered, None),
            Outcome::Failed { retryable: true, .. } if backoff.retries_after(attempt - requeued_at) => {
                let delay = backoff.delay(attempt - requeued_at, jitter);
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                (Status::Pending, Some(now_ms.saturating_add(delay_ms)))
            }
            Outcome::Failed { .. } => (Status::Dead, None),
        };
        conn.execute(
            "UPDATE notifications SET status = ?2, attempts = ?3, next_attempt_ms = COALESCE(?4, next_attempt_ms),
                 delivered_at = ?5, last_status = ?6, last_error = ?7
             WHERE id = ?1",
            params![
                id,
                status.as_str(),
                attempt,
                next,
                (status == Status::Delivered).then_some(&at),
                code,
                error
            ],
        )?;
        Ok(Some(Recorded {
            attempt,
            status,
            next_attempt_ms: next,
        }))
    })
}

/// Run `f` in a savepoint: all of it or none, inside or outside the
/// caller's transaction.
fn atomically<T>(conn: &Connection, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    conn.execute_batch("SAVEPOINT outbox")?;
    match f(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE outbox")?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO outbox; RELEASE outbox");
            Err(e)
        }
    }
}

/// Queue dead letter `id` again, due at once, with a fresh set of
/// attempts. False if there is no such dead letter.
pub fn retry_dead(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE notifications SET status = 'pending', next_attempt_ms = 0, requeued_at = attempts
         WHERE id = ?1 AND status = 'dead'",
        params![id],
    )?;
    Ok(changed == 1)
}

/// One attempt in a notification's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    /// RFC 3339.
    pub at: String,
    /// HTTP status or SMTP reply code, when the receiver answered.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A notification with its delivery history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub channel: String,
    pub alert_id: String,
    pub kind: MessageKind,
    pub status: Status,
    pub attempts: u32,
    /// When pending: the next attempt's time, RFC 3339.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub message: Message,
    /// Oldest first.
    pub history: Vec<AttemptRecord>,
}

/// Most notifications one [`history`] call returns.
pub const MAX_PAGE: usize = 1000;

/// Which notifications [`history`] lists; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub status: Option<Status>,
    pub channel: Option<String>,
    pub alert_id: Option<String>,
    /// Only ids below this: pass the last id of a page for the next.
    pub before: Option<i64>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

const COLUMNS: &str = "id, channel, alert_id, message, status, attempts, next_attempt_ms, created_at, \
                       delivered_at, last_status, last_error";

fn notification(r: &Row<'_>) -> rusqlite::Result<Notification> {
    let bad = |column: usize, text: String| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, text.into())
    };
    let json: String = r.get(3)?;
    let message: Message = serde_json::from_str(&json).map_err(|e| bad(3, e.to_string()))?;
    let status_text: String = r.get(4)?;
    let status = Status::parse(&status_text).ok_or_else(|| bad(4, format!("unknown status {status_text:?}")))?;
    let next: i64 = r.get(6)?;
    Ok(Notification {
        id: r.get(0)?,
        channel: r.get(1)?,
        alert_id: r.get(2)?,
        kind: message.kind,
        status,
        attempts: r.get(5)?,
        next_attempt_at: (status == Status::Pending).then(|| time_text(next)),
        created_at: r.get(7)?,
        delivered_at: r.get(8)?,
        last_status: r.get(9)?,
        last_error: r.get(10)?,
        message,
        history: Vec::new(),
    })
}

fn attempts_of(conn: &Connection, n: &mut Notification) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, at, status_code, error, duration_ms FROM notification_attempts
         WHERE notification_id = ?1 ORDER BY attempt",
    )?;
    let rows = stmt.query_map(params![n.id], |r| {
        Ok(AttemptRecord {
            attempt: r.get(0)?,
            at: r.get(1)?,
            status_code: r.get(2)?,
            error: r.get(3)?,
            duration_ms: r.get(4)?,
        })
    })?;
    n.history = rows.collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Notifications matching `query`, newest first, each with its attempts.
pub fn history(conn: &Connection, query: &HistoryQuery) -> rusqlite::Result<Vec<Notification>> {
    let mut sql = format!("SELECT {COLUMNS} FROM notifications WHERE 1 = 1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut and = |clause: &str, value: SqlValue| {
        args.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(status) = query.status {
        and("status =", SqlValue::Text(status.as_str().into()));
    }
    if let Some(channel) = &query.channel {
        and("channel =", SqlValue::Text(channel.clone()));
    }
    if let Some(alert_id) = &query.alert_id {
        and("alert_id =", SqlValue::Text(alert_id.clone()));
    }
    if let Some(before) = query.before {
        and("id <", SqlValue::Integer(before));
    }
    let limit = query.limit.min(MAX_PAGE);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
    let mut stmt = conn.prepare(&sql)?;
    let mut out = stmt
        .query_map(params_from_iter(args), notification)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for n in &mut out {
        attempts_of(conn, n)?;
    }
    Ok(out)
}

/// Notification `id` with its attempts.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Notification>> {
    let found = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"),
            params![id],
            notification,
        )
        .optional()?;
    match found {
        Some(mut n) => {
            attempts_of(conn, &mut n)?;
            Ok(Some(n))
        }
        None => Ok(None),
    }
}

/// How many notifications are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

pub fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let mut out = Counts::default();
    let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM notifications GROUP BY status")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let status: String = r.get(0)?;
        let n: i64 = r.get(1)?;
        let n = u64::try_from(n).unwrap_or(0);
        match Status::parse(&status) {
            Some(Status::Pending) => out.pending = n,
            Some(Status::Delivered) => out.delivered = n,
            Some(Status::Dead) => out.dead = n,
            None => {}
        }
    }
    Ok(out)
}

/// What a [`Deliverer`] pass did with one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub attempt: u32,
    /// Delivered, pending again, or dead.
    pub status: Status,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub next_attempt_ms: Option<i64>,
}

/// Sends due notifications, one pass per call; the server runs one pass
/// every second or so. Only one deliverer may run per database.
pub struct Deliverer<'a> {
    pub db: &'a Mutex<Connection>,
    pub http: &'a notify::HttpClient,
    pub backoff: Backoff,
    /// Most notifications taken per pass.
    pub batch: usize,
    /// Most sends in flight at once.
    pub concurrency: usize,
}

/// One notification ready to go.
struct Job {
    id: i64,
    channel: String,
    jitter: f64,
}

impl<'a> Deliverer<'a> {
    /// The default [`Backoff`], 100 notifications a pass, 8 at once.
    pub fn new(db: &'a Mutex<Connection>, http: &'a notify::HttpClient) -> Deliverer<'a> {
        Deliverer {
            db,
            http,
            backoff: Backoff::default(),
            batch: 100,
            concurrency: 8,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'a, Connection> {
        // A panic while the lock was held left no transaction open
        // (rusqlite rolls back on drop): the connection is still good.
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(
        &self,
        job: &Job,
        outcome: &Outcome,
        duration_ms: i64,
        now_ms: i64,
    ) -> rusqlite::Result<Option<Delivery>> {
        let recorded = record(
            &self.lock(),
            job.id,
            outcome,
            duration_ms,
            now_ms,
            &self.backoff,
            job.jitter,
        )?;
        let (status_code, error) = match outcome {
            Outcome::Delivered { status } => (Some(*status), None),
            Outcome::Failed { status, error, .. } => (*status, Some(error.clone())),
        };
        Ok(recorded.map(|r| Delivery {
            id: job.id,
            channel: job.channel.clone(),
            attempt: r.attempt,
            status: r.status,
            status_code,
            error,
            next_attempt_ms: r.next_attempt_ms,
        }))
    }

    /// Take the notifications due at `clock()`, find each one's channel
    /// with `channel` (a missing channel makes a dead letter), render,
    /// send, and record each outcome at `clock()` with a jitter drawn from
    /// `jitter` (e.g. [`random_jitter`]). Returns what happened to each,
    /// in the order the sends finished. The database lock is never held
    /// while sending.
    pub async fn deliver_due(
        &self,
        clock: impl Fn() -> i64,
        channel: impl Fn(&str) -> Option<ChannelSpec>,
        mut jitter: impl FnMut() -> f64,
    ) -> rusqlite::Result<Vec<Delivery>> {
        let rows = due(&self.lock(), clock(), self.batch)?;
        let mut done = Vec::new();
        let mut ready = Vec::new();
        for row in rows {
            let job = Job {
                id: row.id,
                channel: row.channel,
                jitter: jitter(),
            };
            let prepared = serde_json::from_str::<Message>(&row.message)
                .map_err(|e| format!("the stored message is not valid: {e}"))
                .and_then(|message| {
                    let spec = channel(&job.channel).ok_or_else(|| {
                        format!(
                            "channel {:?} does not exist (deleted or renamed?); retry the dead letter once it does",
                            job.channel
                        )
                    })?;
                    notify::render(&spec, &message, job.id, clock().div_euclid(1000))
                        .map_err(|e| format!("cannot render for channel {:?}: {e}", job.channel))
                });
            match prepared {
                Ok(out) => ready.push((job, out)),
                Err(error) => done.extend(self.record(&job, &Outcome::permanent(error), 0, clock())?),
            }
        }

        let mut tasks = tokio::task::JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, Job> = HashMap::new();
        let mut ready = ready.into_iter();
        loop {
            while tasks.len() < self.concurrency.max(1) {
                let Some((job, out)) = ready.next() else { break };
                let http = self.http.clone();
                let handle = tasks.spawn(async move {
                    let started = Instant::now();
                    let result = notify::send(&out, &http).await;
                    (result, started.elapsed())
                });
                in_flight.insert(handle.id(), job);
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (task, outcome, elapsed) = match joined {
                Ok((task, (result, elapsed))) => (task, Outcome::from(&result), elapsed),
                Err(e) => (
                    e.id(),
                    Outcome::Failed {
                        status: None,
                        error: format!("the send failed unexpectedly: {e}"),
                        retryable: true,
                    },
                    Duration::ZERO,
                ),
            };
            if let Some(job) = in_flight.remove(&task) {
                let ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
                done.extend(self.record(&job, &outcome, ms, clock())?);
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::Level;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    fn message(alert_id: &str, kind: MessageKind) -> Message {
        Message {
            version: 1,
            kind,
            alert_id: alert_id.into(),
            rule: "r".into(),
            condition: "any".into(),
            level: Level::Info,
            log: "default".into(),
            group: BTreeMap::new(),
            summary: "s".into(),
            at: "2026-11-22T08:00:00Z".into(),
            indices: vec![],
            event_ids: vec![],
        }
    }

    fn fail(retryable: bool) -> Outcome {
        Outcome::Failed {
            status: Some(503),
            error: "HTTP 503".into(),
            retryable,
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_between_half_and_full() {
        let b = Backoff::default();
        let secs = |attempt, jitter| b.delay(attempt, jitter).as_secs_f64();
        assert_eq!(secs(1, 1.0), 1.0);
        assert_eq!(secs(2, 1.0), 2.0);
        assert_eq!(secs(3, 1.0), 4.0);
        assert_eq!(secs(12, 1.0), 2048.0);
        assert_eq!(secs(13, 1.0), 3600.0);
        assert_eq!(secs(1000, 1.0), 3600.0);
        assert_eq!(secs(u32::MAX, 1.0), 3600.0);
        assert_eq!(secs(3, 0.0), 2.0);
        assert_eq!(secs(3, 0.5), 3.0);
        assert_eq!(secs(3, -7.0), 2.0);
        assert_eq!(secs(3, 9.0), 4.0);
        assert_eq!(secs(3, f64::NAN), 4.0);
        // The documented schedule: about 8 hours to the last attempt.
        let total: f64 = (1..b.max_attempts).map(|a| secs(a, 1.0)).sum();
        assert_eq!(total, 4095.0 + 7.0 * 3600.0);
        assert!(b.retries_after(19) && !b.retries_after(20));
    }

    #[test]
    fn random_jitter_is_in_range() {
        for _ in 0..100 {
            let j = random_jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn enqueue_inside_a_rolled_back_transaction_leaves_nothing() {
        let mut conn = db();
        {
            let tx = conn.transaction().unwrap();
            enqueue(&tx, "c", &message("a", MessageKind::Fired), 0).unwrap();
            // record's savepoint nests inside the caller's transaction.
            let id = enqueue(&tx, "c", &message("b", MessageKind::Fired), 0).unwrap();
            record(&tx, id, &fail(true), 1, 0, &Backoff::default(), 1.0)
                .unwrap()
                .unwrap();
            tx.rollback().unwrap();
        }
        assert!(due(&conn, i64::MAX, 10).unwrap().is_empty());
        let tx = conn.transaction().unwrap();
        enqueue(&tx, "c", &message("a", MessageKind::Fired), 0).unwrap();
        tx.commit().unwrap();
        assert_eq!(due(&conn, 0, 10).unwrap().len(), 1);
    }

    #[test]
    fn retryable_failures_back_off_then_die() {
        let conn = db();
        let b = Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(3),
            max_attempts: 4,
        };
        let id = enqueue(&conn, "c", &message("a", MessageKind::Fired), 1000).unwrap();
        let mut now = 1000;
        let mut expected = vec![];
        for (attempt, wait) in [(1, 1000), (2, 2000), (3, 3000)] {
            let r = record(&conn, id, &fail(true), 5, now, &b, 1.0).unwrap().unwrap();
            assert_eq!(r.attempt, attempt);
            assert_eq!(r.status, Status::Pending);
            assert_eq!(r.next_attempt_ms, Some(now + wait));
            assert!(due(&conn, now + wait - 1, 10).unwrap().is_empty());
            assert_eq!(due(&conn, now + wait, 10).unwrap()[0].attempts, attempt);
            expected.push(Some(503));
            now += wait;
        }
        let r = record(&conn, id, &fail(true), 5, now, &b, 1.0).unwrap().unwrap();
        assert_eq!((r.attempt, r.status, r.next_attempt_ms), (4, Status::Dead, None));
        assert!(due(&conn, i64::MAX, 10).unwrap().is_empty());
        // Not pending any more: nothing to record.
        assert_eq!(record(&conn, id, &fail(true), 5, now, &b, 1.0).unwrap(), None);
        let n = get(&conn, id).unwrap().unwrap();
        assert_eq!(n.status, Status::Dead);
        assert_eq!(n.attempts, 4);
        assert_eq!(n.history.len(), 4);
        assert_eq!(n.last_error.as_deref(), Some("HTTP 503"));

        // A retried dead letter gets a fresh set of attempts.
        assert!(retry_dead(&conn, id).unwrap());
        assert!(!retry_dead(&conn, id).unwrap());
        assert_eq!(due(&conn, 0, 10).unwrap()[0].id, id);
        let r = record(&conn, id, &fail(true), 5, now, &b, 1.0).unwrap().unwrap();
        assert_eq!(
            (r.attempt, r.status, r.next_attempt_ms),
            (5, Status::Pending, Some(now + 1000))
        );
    }

    #[test]
    fn permanent_failure_is_dead_at_once_and_success_is_delivered() {
        let conn = db();
        let a = enqueue(&conn, "c", &message("a", MessageKind::Fired), 0).unwrap();
        let b = enqueue(&conn, "c", &message("b", MessageKind::Fired), 0).unwrap();
        let r = record(&conn, a, &fail(false), 1, 10, &Backoff::default(), 0.0)
            .unwrap()
            .unwrap();
        assert_eq!(r.status, Status::Dead);
        let r = record(
            &conn,
            b,
            &Outcome::Delivered { status: 204 },
            1,
            2000,
            &Backoff::default(),
            0.0,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, Status::Delivered);
        let n = get(&conn, b).unwrap().unwrap();
        assert_eq!(n.delivered_at.as_deref(), Some("1970-01-01T00:00:02Z"));
        assert_eq!(n.last_status, Some(204));
        assert_eq!(n.next_attempt_at, None);
        assert_eq!(
            counts(&conn).unwrap(),
            Counts {
                pending: 0,
                delivered: 1,
                dead: 1
            }
        );
        assert!(!retry_dead(&conn, b).unwrap(), "only dead letters are retried");
    }

    #[test]
    fn an_alert_notifies_a_channel_in_order() {
        let conn = db();
        let fired = enqueue(&conn, "c", &message("a", MessageKind::Fired), 0).unwrap();
        let resolved = enqueue(&conn, "c", &message("a", MessageKind::Resolved), 0).unwrap();
        let other_channel = enqueue(&conn, "d", &message("a", MessageKind::Resolved), 0).unwrap();
        let ids = |now| due(&conn, now, 10).unwrap().iter().map(|d| d.id).collect::<Vec<_>>();
        assert_eq!(ids(0), [fired, other_channel]);
        record(
            &conn,
            other_channel,
            &Outcome::Delivered { status: 200 },
            1,
            0,
            &Backoff::default(),
            1.0,
        )
        .unwrap();
        record(&conn, fired, &fail(true), 1, 0, &Backoff::default(), 1.0).unwrap();
        // The resolved notice waits for the fired one's retry.
        assert_eq!(ids(500), Vec::<i64>::new());
        assert_eq!(ids(1000), [fired]);
        record(&conn, fired, &fail(false), 1, 1000, &Backoff::default(), 1.0).unwrap();
        assert_eq!(ids(1000), [resolved]);
    }

    #[test]
    fn history_filters_and_pages() {
        let conn = db();
        let mut ids = vec![];
        for i in 0..6 {
            let channel = if i % 2 == 0 { "even" } else { "odd" };
            ids.push(enqueue(&conn, channel, &message(&format!("a{}", i / 3), MessageKind::Fired), i).unwrap());
        }
        record(
            &conn,
            ids[0],
            &Outcome::Delivered { status: 200 },
            3,
            0,
            &Backoff::default(),
            0.0,
        )
        .unwrap();
        record(&conn, ids[1], &fail(false), 4, 0, &Backoff::default(), 0.0).unwrap();
        let list = |q: HistoryQuery| history(&conn, &q).unwrap().iter().map(|n| n.id).collect::<Vec<_>>();
        let all = HistoryQuery {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(list(all.clone()), [ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]]);
        assert_eq!(
            list(HistoryQuery {
                channel: Some("even".into()),
                ..all.clone()
            }),
            [ids[4], ids[2], ids[0]]
        );
        assert_eq!(
            list(HistoryQuery {
                alert_id: Some("a1".into()),
                ..all.clone()
            }),
            [ids[5], ids[4], ids[3]]
        );
        assert_eq!(
            list(HistoryQuery {
                status: Some(Status::Pending),
                channel: Some("odd".into()),
                ..all.clone()
            }),
            [ids[5], ids[3]]
        );
        let first = list(HistoryQuery {
            limit: 4,
            ..all.clone()
        });
        assert_eq!(first, [ids[5], ids[4], ids[3], ids[2]]);
        assert_eq!(
            list(HistoryQuery {
                before: first.last().copied(),
                limit: 4,
                ..all.clone()
            }),
            [ids[1], ids[0]]
        );
        let page = history(
            &conn,
            &HistoryQuery {
                status: Some(Status::Dead),
                ..all
            },
        )
        .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(
            page[0].history,
            [AttemptRecord {
                attempt: 1,
                at: "1970-01-01T00:00:00Z".into(),
                status_code: Some(503),
                error: Some("HTTP 503".into()),
                duration_ms: 4,
            }]
        );
        assert_eq!(page[0].message, message("a0", MessageKind::Fired));
        assert_eq!(page[0].kind, MessageKind::Fired);
    }
}
