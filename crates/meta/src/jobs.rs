//! Scheduled jobs as stored: each job's definition (JSON text, checked by
//! `sealtrail-sched` before it gets here), its schedule state (the next
//! occurrence not yet taken, a pending "run now", the retry in wait) and
//! its lease, and the bounded history of its runs.
//!
//! Why the schedule state lives here and not in a process: several
//! server processes may share one data directory. An occurrence is taken
//! by one conditional `UPDATE` that moves `next_run` on *and* takes the
//! lease, in one transaction ([`Meta::claim_job`]); whoever changes no row
//! lost the race and runs nothing. The lease expires unless its holder
//! renews it, so a process that died mid-run frees the job.
//!
//! Not here: parsing schedules, deciding what is due, or running anything
//! (`sealtrail-sched`).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{queue_event, Meta, MetaError};

/// Runs kept per job: the oldest beyond this are deleted when a run is
/// recorded.
pub const RUNS_KEPT: usize = 100;
/// Most bytes of a run's summary or error kept; longer text is cut at a
/// character boundary and marked.
pub const MAX_RUN_TEXT_BYTES: usize = 4096;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    revision      INTEGER NOT NULL,
    next_run      INTEGER,
    run_requested INTEGER NOT NULL DEFAULT 0,
    attempt       INTEGER NOT NULL DEFAULT 0,
    retry_at      INTEGER,
    lease_holder  TEXT,
    lease_expires INTEGER,
    running_since INTEGER
);
CREATE TABLE IF NOT EXISTS job_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    trigger     TEXT NOT NULL CHECK (trigger IN ('schedule', 'misfire', 'retry', 'manual')),
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    summary     TEXT NOT NULL,
    error       TEXT,
    holder      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_runs_by_job ON job_runs (job, id);
";

/// A job as stored, with its schedule state. Times are milliseconds since
/// the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    pub name: String,
    /// The definition, JSON text.
    pub spec: String,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Incremented by every change of the definition or of `enabled`: a
    /// scheduler that read an older one claims nothing.
    pub revision: i64,
    /// The next occurrence not yet taken; None until a scheduler has
    /// computed it (after a create or change) or when none is left.
    pub next_run: Option<i64>,
    /// "Run now" asked and not yet taken.
    pub run_requested: bool,
    /// Failed attempts of the current occurrence so far.
    pub attempt: i64,
    /// When the next retry of the current occurrence is due.
    pub retry_at: Option<i64>,
    /// The process holding the lease and until when (it renews it while
    /// the job runs), and since when it runs.
    pub lease_holder: Option<String>,
    pub lease_expires: Option<i64>,
    pub running_since: Option<i64>,
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Its occurrence came.
    Schedule,
    /// Its occurrence was missed (downtime, or an earlier run too long)
    /// and the misfire policy is `run-once`.
    Misfire,
    /// A retry after a failure.
    Retry,
    /// Run now, by an administrator.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Misfire => "misfire",
            Trigger::Retry => "retry",
            Trigger::Manual => "manual",
        }
    }

    fn from_name(s: &str) -> Trigger {
        match s {
            "misfire" => Trigger::Misfire,
            "retry" => Trigger::Retry,
            "manual" => Trigger::Manual,
            _ => Trigger::Schedule,
        }
    }
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobRun {
    pub id: i64,
    pub job: String,
    /// 0 for the first attempt of an occurrence, 1 for its first retry…
    pub attempt: i64,
    pub trigger: Trigger,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    /// `success` or `failure`.
    pub outcome: String,
    /// What the job reported (bounded, [`MAX_RUN_TEXT_BYTES`]).
    pub summary: String,
    pub error: Option<String>,
    /// The process that ran it.
    pub holder: String,
}

/// How [`Meta::claim_job`] takes a job.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub name: &'a str,
    pub holder: &'a str,
    /// The revision the decision was made on.
    pub revision: i64,
    pub now: i64,
    pub lease_ms: i64,
    /// What the claim consumes, which must still be there: the scheduled
    /// occurrence `next_run` (moved on to `new_next_run`), the retry due
    /// at `retry_at`, or the pending run-now.
    pub take: Take,
}

/// What a claim consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    Occurrence { next_run: i64, new_next_run: Option<i64> },
    Retry { retry_at: i64 },
    Requested,
}

/// What [`Meta::finish_job_run`] leaves for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    /// Failed attempts of the occurrence so far (0 after a success).
    pub attempt: i64,
    pub retry_at: Option<i64>,
}

/// Cut `text` to [`MAX_RUN_TEXT_BYTES`] at a character boundary.
pub fn bounded_run_text(text: &str) -> String {
    if text.len() <= MAX_RUN_TEXT_BYTES {
        return text.to_string();
    }
    let mut end = MAX_RUN_TEXT_BYTES - 16;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

const JOB_COLUMNS: &str = "name, spec, enabled, created_at, updated_at, revision, next_run, run_requested, attempt, \
                           retry_at, lease_holder, lease_expires, running_since";

fn row_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        name: r.get(0)?,
        spec: r.get(1)?,
        enabled: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
        revision: r.get(5)?,
        next_run: r.get(6)?,
        run_requested: r.get(7)?,
        attempt: r.get(8)?,
        retry_at: r.get(9)?,
        lease_holder: r.get(10)?,
        lease_expires: r.get(11)?,
        running_since: r.get(12)?,
    })
}

fn select_job(conn: &Connection, name: &str) -> rusqlite::Result<Option<JobRow>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE name = ?1"),
        params![name],
        row_job,
    )
    .optional()
}

/// A job to store: its name, definition (JSON text), whether it is
/// enabled, and its first occurrence.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    pub name: &'a str,
    pub spec: &'a str,
    pub enabled: bool,
    pub next_run: Option<i64>,
}

/// Whether a job was created or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Replaced,
}

impl Meta {
    /// Every job, by name.
    pub fn jobs(&self) -> Result<Vec<JobRow>, MetaError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY name"))
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], row_job).map_err(|e| self.sql(e))?;
        rows.map(|r| r.map_err(|e| self.sql(e))).collect()
    }

    pub fn job(&self, name: &str) -> Result<Option<JobRow>, MetaError> {
        select_job(&self.read(), name).map_err(|e| self.sql(e))
    }

    /// Create or replace job `name` with `spec`, with its system-log
    /// `event` (made from whether it existed) in the same transaction.
    /// With `create_only`, an existing job is left alone and `Ok(None)`
    /// returned. A replaced job's schedule starts again from its new
    /// definition; a run in progress goes on.
    pub fn put_job(
        &self,
        job: &NewJob<'_>,
        create_only: bool,
        now: &str,
        event: impl FnOnce(PutOutcome) -> String,
    ) -> Result<Option<PutOutcome>, MetaError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let NewJob {
            name,
            spec,
            enabled,
            next_run,
        } = *job;
        let existing = select_job(&tx, name).map_err(|e| self.sql(e))?;
        let outcome = match existing {
            Some(_) if create_only => return Ok(None),
            Some(_) => {
                tx.execute(
                    "UPDATE jobs SET spec = ?2, enabled = ?3, updated_at = ?4, revision = revision + 1,
                         next_run = ?5, attempt = 0, retry_at = NULL WHERE name = ?1",
                    params![name, spec, enabled, now, next_run],
                )
                .map_err(|e| self.sql(e))?;
                PutOutcome::Replaced
            }
            None => {
                tx.execute(
                    "INSERT INTO jobs (name, spec, enabled, created_at, updated_at, revision, next_run) VALUES (?1, ?2, ?3, ?4, ?4, 1, ?5)",
                    params![name, spec, enabled, now, next_run],
                )
                .map_err(|e| self.sql(e))?;
                PutOutcome::Created
            }
        };
        queue_event(&tx, &event(outcome)).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(Some(outcome))
    }

    /// Delete job `name` and its runs; false if there was none.
    pub fn delete_job(&self, name: &str, event: &str) -> Result<bool, MetaError> {
        self.change_job(name, event, |tx| {
            tx.execute("DELETE FROM job_runs WHERE job = ?1", params![name])?;
            tx.execute("DELETE FROM jobs WHERE name = ?1", params![name])
        })
    }

    /// Enable or disable job `name`; false if there is none. Enabling
    /// starts its schedule from now; a run in progress goes on.
    pub fn set_job_enabled(
        &self,
        name: &str,
        enabled: bool,
        now: &str,
        next_run: Option<i64>,
        event: &str,
    ) -> Result<bool, MetaError> {
        self.change_job(name, event, |tx| {
            tx.execute(
                "UPDATE jobs SET enabled = ?2, updated_at = ?3, revision = revision + 1, next_run = ?4,
                     spec = json_set(spec, '$.enabled', CASE WHEN ?2 THEN json('true') ELSE json('false') END),
                     attempt = 0, retry_at = NULL WHERE name = ?1",
                params![name, enabled, now, next_run],
            )
        })
    }

    /// Ask for job `name` to run as soon as a scheduler sees it (whether
    /// enabled or not); false if there is none.
    pub fn request_job_run(&self, name: &str, event: &str) -> Result<bool, MetaError> {
        self.change_job(name, event, |tx| {
            tx.execute("UPDATE jobs SET run_requested = 1 WHERE name = ?1", params![name])
        })
    }

    fn change_job(
        &self,
        name: &str,
        event: &str,
        change: impl FnOnce(&Connection) -> rusqlite::Result<usize>,
    ) -> Result<bool, MetaError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        if select_job(&tx, name).map_err(|e| self.sql(e))?.is_none() {
            return Ok(false);
        }
        change(&tx).map_err(|e| self.sql(e))?;
        queue_event(&tx, event).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(true)
    }

    /// Set the first `next_run` of a job whose schedule was (re)started,
    /// if it is still at `revision` and unset; or move a missed one on
    /// (`expected`) without running it (misfire policy `skip`).
    pub fn set_job_next_run(
        &self,
        name: &str,
        revision: i64,
        expected: Option<i64>,
        next_run: Option<i64>,
    ) -> Result<bool, MetaError> {
        let n = self
            .lock()
            .execute(
                "UPDATE jobs SET next_run = ?4 WHERE name = ?1 AND revision = ?2 AND next_run IS ?3",
                params![name, revision, expected, next_run],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// Take a job: consume what `claim.take` names and take the lease, in
    /// one conditional `UPDATE` inside an immediate transaction. True if
    /// this caller now holds the job; false if another process took it,
    /// holds its lease (it is running), or the job changed.
    pub fn claim_job(&self, claim: &Claim<'_>) -> Result<bool, MetaError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let free = "(lease_holder IS NULL OR lease_expires <= ?4)";
        let lease = "lease_holder = ?2, lease_expires = ?4 + ?5, running_since = ?4";
        let n = match &claim.take {
            Take::Occurrence { next_run, new_next_run } => tx.execute(
                &format!(
                    "UPDATE jobs SET {lease}, next_run = ?7, attempt = 0, retry_at = NULL
                     WHERE name = ?1 AND revision = ?3 AND next_run = ?6 AND {free}"
                ),
                params![
                    claim.name,
                    claim.holder,
                    claim.revision,
                    claim.now,
                    claim.lease_ms,
                    next_run,
                    new_next_run
                ],
            ),
            Take::Retry { retry_at } => tx.execute(
                &format!(
                    "UPDATE jobs SET {lease}, retry_at = NULL
                     WHERE name = ?1 AND revision = ?3 AND retry_at = ?6 AND {free}"
                ),
                params![
                    claim.name,
                    claim.holder,
                    claim.revision,
                    claim.now,
                    claim.lease_ms,
                    retry_at
                ],
            ),
            Take::Requested => tx.execute(
                &format!(
                    "UPDATE jobs SET {lease}, run_requested = 0, attempt = 0, retry_at = NULL
                     WHERE name = ?1 AND run_requested = 1 AND {free}"
                ),
                params![claim.name, claim.holder, claim.revision, claim.now, claim.lease_ms],
            ),
        }
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// Extend `holder`'s lease of job `name` to `now + lease_ms`; false if
    /// it no longer holds it (it expired and another process took it).
    pub fn renew_job_lease(&self, name: &str, holder: &str, now: i64, lease_ms: i64) -> Result<bool, MetaError> {
        let n = self
            .lock()
            .execute(
                "UPDATE jobs SET lease_expires = ?3 + ?4 WHERE name = ?1 AND lease_holder = ?2",
                params![name, holder, now, lease_ms],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// Record a finished run with its system-log `event`, keep only the
    /// last [`RUNS_KEPT`] runs of the job, release `run.holder`'s lease and
    /// leave `after` for the next attempt — all in one transaction.
    pub fn finish_job_run(&self, run: &JobRun, after: After, event: &str) -> Result<(), MetaError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        insert_run(&tx, run).map_err(|e| self.sql(e))?;
        tx.execute(
            "UPDATE jobs SET lease_holder = NULL, lease_expires = NULL, running_since = NULL, attempt = ?3,
                 retry_at = ?4 WHERE name = ?1 AND lease_holder = ?2",
            params![run.job, run.holder, after.attempt, after.retry_at],
        )
        .map_err(|e| self.sql(e))?;
        queue_event(&tx, event).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Record a finished run with its system-log `event`, keeping the
    /// lease: a run that timed out is recorded when its time is up, but
    /// the job stays taken until its thread has stopped.
    pub fn record_job_run(&self, run: &JobRun, event: &str) -> Result<(), MetaError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        insert_run(&tx, run).map_err(|e| self.sql(e))?;
        queue_event(&tx, event).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Release `holder`'s lease of job `name`, leaving `after`.
    pub fn release_job(&self, name: &str, holder: &str, after: After) -> Result<bool, MetaError> {
        let n = self
            .lock()
            .execute(
                "UPDATE jobs SET lease_holder = NULL, lease_expires = NULL, running_since = NULL, attempt = ?3,
                     retry_at = ?4 WHERE name = ?1 AND lease_holder = ?2",
                params![name, holder, after.attempt, after.retry_at],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// The last `limit` runs of job `name` (at most [`RUNS_KEPT`]), newest
    /// first.
    pub fn job_runs(&self, name: &str, limit: usize) -> Result<Vec<JobRun>, MetaError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare(
                "SELECT id, job, attempt, trigger, started_at, finished_at, duration_ms, outcome, summary, error, holder
                 FROM job_runs WHERE job = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![name, limit.min(RUNS_KEPT) as i64], job_run)
            .map_err(|e| self.sql(e))?;
        rows.map(|r| r.map_err(|e| self.sql(e))).collect()
    }
}

impl Meta {
    /// How many kept runs failed that finished at or after `since` (RFC
    /// 3339 as runs store it, `2026-01-05T09:00:00.000Z`), those of
    /// process `holder` only when given; and the latest failed run kept,
    /// whenever it finished. Counts what the history keeps: the last
    /// [`RUNS_KEPT`] runs of each job.
    pub fn job_failures_since(&self, since: &str, holder: Option<&str>) -> Result<(u64, Option<JobRun>), MetaError> {
        let conn = self.read();
        let count: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM job_runs WHERE outcome = 'failure' AND finished_at >= ?1
                 AND (?2 IS NULL OR holder = ?2)",
                params![since, holder],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        let last = conn
            .query_row(
                "SELECT id, job, attempt, trigger, started_at, finished_at, duration_ms, outcome, summary, error, holder
                 FROM job_runs WHERE outcome = 'failure' ORDER BY finished_at DESC, id DESC LIMIT 1",
                [],
                job_run,
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok((u64::try_from(count).unwrap_or(0), last))
    }
}

/// Insert `run` and keep only the job's last [`RUNS_KEPT`] runs.
fn insert_run(tx: &Connection, run: &JobRun) -> rusqlite::Result<()> {
    let summary = bounded_run_text(&run.summary);
    let error = run.error.as_deref().map(bounded_run_text);
    tx.execute(
        "INSERT INTO job_runs (job, attempt, trigger, started_at, finished_at, duration_ms, outcome, summary, error, holder)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            run.job,
            run.attempt,
            run.trigger.as_str(),
            run.started_at,
            run.finished_at,
            run.duration_ms.max(0),
            run.outcome,
            summary,
            error,
            run.holder
        ],
    )?;
    tx.execute(
        "DELETE FROM job_runs WHERE job = ?1 AND id <= (
             SELECT id FROM job_runs WHERE job = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![run.job, RUNS_KEPT as i64],
    )?;
    Ok(())
}

/// A run from a `job_runs` row selected as `id, job, attempt, trigger,
/// started_at, finished_at, duration_ms, outcome, summary, error, holder`.
fn job_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRun> {
    let trigger: String = r.get(3)?;
    Ok(JobRun {
        id: r.get(0)?,
        job: r.get(1)?,
        attempt: r.get(2)?,
        trigger: Trigger::from_name(&trigger),
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        duration_ms: r.get(6)?,
        outcome: r.get(7)?,
        summary: r.get(8)?,
        error: r.get(9)?,
        holder: r.get(10)?,
    })
}
