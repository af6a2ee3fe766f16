//! An audited migration runner: applies the pending `V<version>__<description>.sql`
//! scripts of a directory in version order, each in its own transaction
//! together with its row in the database's `sealtrail_schema_history`, and
//! hands a `pg.migration` event for every attempt (success or failure) to
//! the caller's sink. It refuses to run when an applied script was changed
//! or removed. It does not write SQL for anyone, undo migrations, or run
//! scripts that cannot run inside a transaction.

use crate::logimport::BatchOutcome;
use postgres::{Client, NoTls};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The history table, in the first schema of the connection's search path.
pub const HISTORY_TABLE: &str = "sealtrail_schema_history";

/// Held for the whole run so two runners never apply the same script.
const LOCK_KEY: i64 = 0x5ea1_7a11_0001;

/// A script version: numbers separated by `.` or `_`, compared part by
/// part as numbers, missing trailing parts counting as 0 (`1.10` > `1.9`,
/// `2` = `2.0`).
#[derive(Debug, Clone, Eq)]
pub struct Version {
    parts: Vec<u64>,
    text: String,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let parts: Option<Vec<u64>> = text.split(['.', '_']).map(|p| p.parse().ok()).collect();
        let parts = parts?;
        (!parts.is_empty()).then(|| Version {
            parts,
            text: text.replace('_', "."),
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| {
                let a = self.parts.get(i).copied().unwrap_or(0);
                let b = other.parts.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One migration script found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub version: Version,
    /// From the file name, underscores as spaces.
    pub description: String,
    /// The file name, e.g. `V2__add_orders.sql`.
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub checksum: String,
}

/// What a run needs besides the scripts.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Change ticket and reason, both required, recorded with each script.
    pub ticket: String,
    pub reason: String,
    /// List what would run; change nothing and emit nothing.
    pub dry_run: bool,
    /// Recorded as who installed; `None`: the database's `current_user`.
    pub installed_by: Option<String>,
}

/// A script applied by this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub script: String,
    pub version: String,
    pub checksum: String,
    pub duration_ms: u64,
}

/// The script a run stopped at; its transaction was rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub script: String,
    pub version: String,
    pub checksum: String,
    pub duration_ms: u64,
    /// The server's error, with the line and column in the script where
    /// the server gave a position.
    pub error: String,
}

/// The result of [`run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub applied: Vec<Applied>,
    /// Scripts not applied: with `dry_run` what would run, after a failure
    /// what is left behind it (the failed one included).
    pub pending: Vec<Script>,
    pub failed: Option<Failed>,
    /// Events re-sent for attempts whose event had not reached the sink.
    pub events_resent: usize,
}

/// A script's state in [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied, but the file is gone.
    Missing,
    /// Applied, but the file's checksum is no longer the recorded one.
    Changed {
        recorded: String,
    },
}

/// One line of [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: String,
    pub description: String,
    pub script: String,
    /// The file's checksum, or the recorded one when the file is missing.
    pub checksum: String,
    pub state: MigrationState,
    pub installed_on: Option<String>,
    pub installed_by: Option<String>,
    pub execution_time_ms: Option<i64>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
}

/// Why a run did not start or could not continue. A script that fails is
/// not an error: it is [`MigrateReport::failed`].
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Name { file: String, message: String },
    #[error("{first} and {second} have the same version {version}")]
    Duplicate {
        version: String,
        first: String,
        second: String,
    },
    #[error("{0} is required and must not be empty")]
    Missing(&'static str),
    #[error(
        "{script} was applied with checksum {recorded} but the file now has {current}; restore it or add a new script"
    )]
    ChecksumChanged {
        script: String,
        recorded: String,
        current: String,
    },
    #[error("{script} (version {version}) was applied but is missing from the directory")]
    ScriptMissing { script: String, version: String },
    #[error("{script} is pending but version {applied} is already applied; give it a version above {applied}")]
    OutOfOrder { script: String, applied: String },
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    #[error("delivering the event for {script}: {message}")]
    Sink { script: String, message: String },
}

fn db(context: &str) -> impl Fn(postgres::Error) -> MigrateError + '_ {
    move |e| MigrateError::Database {
        context: context.to_owned(),
        message: describe(&e),
    }
}

fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut m = format!("{} {}: {}", d.severity(), d.code().code(), d.message());
            if let Some(detail) = d.detail() {
                m.push_str(&format!(" ({detail})"));
            }
            m
        }
        None => e.to_string(),
    }
}

/// Connect without TLS (loopback and socket use); the error never repeats
/// the connection string, which may hold a password.
pub fn connect(dsn: &str) -> Result<Client, MigrateError> {
    Client::connect(dsn, NoTls).map_err(db("connecting to the database"))
}

/// The migration scripts in `dir`, in version order. Files not ending in
/// `.sql` are ignored; a `.sql` file not named `V<version>__<description>.sql`
/// and two scripts with the same version are refused.
pub fn plan(dir: &Path) -> Result<Vec<Script>, MigrateError> {
    let io = |source| MigrateError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut scripts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        if !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        let bad = |message: &str| MigrateError::Name {
            file: entry.path().display().to_string(),
            message: message.to_owned(),
        };
        let rest = stem
            .strip_prefix('V')
            .ok_or_else(|| bad("not V<version>__<description>.sql: no leading 'V'"))?;
        let (version, description) = rest
            .split_once("__")
            .ok_or_else(|| bad("not V<version>__<description>.sql: no '__' after the version"))?;
        let version =
            Version::parse(version).ok_or_else(|| bad("the version must be numbers separated by '.' or '_'"))?;
        let bytes = std::fs::read(entry.path()).map_err(|source| MigrateError::Io {
            path: entry.path().display().to_string(),
            source,
        })?;
        scripts.push(Script {
            version,
            description: description.replace('_', " "),
            name,
            path: entry.path(),
            checksum: sha256_hex(&bytes),
        });
    }
    scripts.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.name.cmp(&b.name)));
    for pair in scripts.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(MigrateError::Duplicate {
                version: pair[1].version.to_string(),
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(scripts)
}

/// SHA-256 as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

const CREATE_HISTORY: &str = "
CREATE TABLE IF NOT EXISTS sealtrail_schema_history (
    installed_rank serial PRIMARY KEY,
    version text NOT NULL,
    description text NOT NULL,
    script text NOT NULL,
    checksum text NOT NULL,
    installed_by text NOT NULL,
    installed_on timestamptz NOT NULL DEFAULT now(),
    execution_time_ms bigint NOT NULL,
    success boolean NOT NULL,
    ticket text NOT NULL,
    reason text NOT NULL,
    error text,
    event_key uuid NOT NULL DEFAULT gen_random_uuid(),
    event_recorded boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS sealtrail_schema_history_applied
    ON sealtrail_schema_history (version) WHERE success;";

const ROW_COLUMNS: &str = "installed_rank, version, description, script, checksum, installed_by,
    to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
    execution_time_ms, success, ticket, reason, error, event_key::text, current_database()";

/// One row of the history table.
#[derive(Debug, Clone)]
struct HistoryRow {
    rank: i32,
    version: String,
    description: String,
    script: String,
    checksum: String,
    installed_by: String,
    installed_on: String,
    execution_time_ms: i64,
    success: bool,
    ticket: String,
    reason: String,
    error: Option<String>,
    event_key: String,
    database: String,
}

impl HistoryRow {
    fn from_row(r: &postgres::Row) -> HistoryRow {
        HistoryRow {
            rank: r.get(0),
            version: r.get(1),
            description: r.get(2),
            script: r.get(3),
            checksum: r.get(4),
            installed_by: r.get(5),
            installed_on: r.get(6),
            execution_time_ms: r.get(7),
            success: r.get(8),
            ticket: r.get(9),
            reason: r.get(10),
            error: r.get(11),
            event_key: r.get(12),
            database: r.get(13),
        }
    }

    /// The `pg.migration` event for this attempt.
    fn event(&self) -> String {
        #[derive(Serialize)]
        struct Target<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            id: &'a str,
        }
        #[derive(Serialize)]
        struct Actor<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct Error<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Details<'a> {
            script: &'a str,
            version: &'a str,
            description: &'a str,
            sha256: &'a str,
            ticket: &'a str,
            reason: &'a str,
            duration_ms: i64,
            database: &'a str,
            installed_rank: i32,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Event<'a> {
            action: &'static str,
            occurred_at: &'a str,
            outcome: &'static str,
            severity: &'static str,
            actor: Actor<'a>,
            targets: [Target<'a>; 2],
            message: String,
            duration_ms: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<Error<'a>>,
            details: Details<'a>,
            idempotency_key: String,
        }
        let error = self.error.as_deref().map(|e| cut(e, 4_000));
        let event = Event {
            action: "pg.migration",
            occurred_at: &self.installed_on,
            outcome: if self.success { "success" } else { "failure" },
            severity: if self.success { "notice" } else { "error" },
            actor: Actor {
                id: &self.installed_by,
                kind: "user",
            },
            targets: [
                Target {
                    kind: "postgresql.database",
                    id: &self.database,
                },
                Target {
                    kind: "migration",
                    id: &self.script,
                },
            ],
            message: format!(
                "{} {} on {}",
                self.script,
                if self.success { "applied" } else { "failed" },
                self.database
            ),
            duration_ms: self.execution_time_ms,
            error: error.map(|message| Error { kind: "sql", message }),
            details: Details {
                script: &self.script,
                version: &self.version,
                description: &self.description,
                sha256: &self.checksum,
                ticket: &self.ticket,
                reason: &self.reason,
                duration_ms: self.execution_time_ms,
                database: &self.database,
                installed_rank: self.rank,
                error,
            },
            idempotency_key: format!("pg.migration:{}", self.event_key),
        };
        serde_json::to_string(&event).unwrap_or_default()
    }
}

fn cut(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(at, _)| &s[..at])
}

fn history_exists(client: &mut Client) -> Result<bool, MigrateError> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .map_err(db("reading the history table"))?;
    Ok(row.get(0))
}

fn history(client: &mut Client, filter: &str) -> Result<Vec<HistoryRow>, MigrateError> {
    if !history_exists(client)? {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {ROW_COLUMNS} FROM {HISTORY_TABLE} WHERE {filter} ORDER BY installed_rank");
    Ok(client
        .query(sql.as_str(), &[])
        .map_err(db("reading the history table"))?
        .iter()
        .map(HistoryRow::from_row)
        .collect())
}

/// Check applied scripts against the directory; return the pending ones.
fn pending(scripts: &[Script], applied: &[HistoryRow]) -> Result<Vec<Script>, MigrateError> {
    let mut max_applied: Option<(Version, &str)> = None;
    for row in applied {
        let Some(version) = Version::parse(&row.version) else {
            return Err(MigrateError::ScriptMissing {
                script: row.script.clone(),
                version: row.version.clone(),
            });
        };
        match scripts.iter().find(|s| s.version == version) {
            None => {
                return Err(MigrateError::ScriptMissing {
                    script: row.script.clone(),
                    version: row.version.clone(),
                })
            }
            Some(s) if s.checksum != row.checksum => {
                return Err(MigrateError::ChecksumChanged {
                    script: s.name.clone(),
                    recorded: row.checksum.clone(),
                    current: s.checksum.clone(),
                })
            }
            Some(_) => {}
        }
        if max_applied.as_ref().is_none_or(|(v, _)| version > *v) {
            max_applied = Some((version, &row.version));
        }
    }
    let todo: Vec<Script> = scripts
        .iter()
        .filter(|s| {
            !applied
                .iter()
                .any(|r| Version::parse(&r.version).as_ref() == Some(&s.version))
        })
        .cloned()
        .collect();
    if let (Some((max, text)), Some(first)) = (&max_applied, todo.first()) {
        if first.version < *max {
            return Err(MigrateError::OutOfOrder {
                script: first.name.clone(),
                applied: (*text).to_owned(),
            });
        }
    }
    Ok(todo)
}

/// Apply the pending scripts of `dir`, each in its own transaction with
/// its history row, sending one `pg.migration` event per attempt to
/// `sink`. Stops at the first script that fails (see
/// [`MigrateReport::failed`]); refuses to start when an applied script
/// changed, is missing, or a pending one sorts below an applied one.
pub fn run<S>(
    client: &mut Client,
    dir: &Path,
    opts: &MigrateOptions,
    mut sink: S,
) -> Result<MigrateReport, MigrateError>
where
    S: FnMut(&[String]) -> Result<BatchOutcome, String>,
{
    if opts.ticket.trim().is_empty() {
        return Err(MigrateError::Missing("the ticket"));
    }
    if opts.reason.trim().is_empty() {
        return Err(MigrateError::Missing("the reason"));
    }
    let scripts = plan(dir)?;
    let mut report = MigrateReport::default();
    if opts.dry_run {
        let applied = history(client, "success")?;
        report.pending = pending(&scripts, &applied)?;
        return Ok(report);
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .map_err(db("waiting for other migration runs"))?;
    if let Err(e) = client.batch_execute(CREATE_HISTORY) {
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
        return Err(db("creating the history table")(e));
    }
    let result = run_locked(client, &scripts, opts, &mut sink, &mut report);
    // Closing the connection would release the lock too; say so explicitly.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .map_err(db("releasing the migration lock"));
    result?;
    unlocked?;
    Ok(report)
}

fn run_locked<S>(
    client: &mut Client,
    scripts: &[Script],
    opts: &MigrateOptions,
    sink: &mut S,
    report: &mut MigrateReport,
) -> Result<(), MigrateError>
where
    S: FnMut(&[String]) -> Result<BatchOutcome, String>,
{
    // Attempts recorded in the database whose event never reached the sink
    // (a crash between commit and delivery): send them first, under the
    // same idempotency key.
    for row in history(client, "NOT event_recorded")? {
        emit(client, sink, &row)?;
        report.events_resent += 1;
    }
    let applied = history(client, "success")?;
    let todo = pending(scripts, &applied)?;
    let installed_by: String = match &opts.installed_by {
        Some(who) if !who.trim().is_empty() => who.clone(),
        _ => client
            .query_one("SELECT current_user::text", &[])
            .map_err(db("reading current_user"))?
            .get(0),
    };
    for (i, script) in todo.iter().enumerate() {
        let bytes = std::fs::read(&script.path).map_err(|source| MigrateError::Io {
            path: script.path.display().to_string(),
            source,
        })?;
        // Read once: the checksum recorded is that of the text executed.
        let checksum = sha256_hex(&bytes);
        let sql = String::from_utf8(bytes).map_err(|e| MigrateError::Name {
            file: script.path.display().to_string(),
            message: format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        })?;
        let started = Instant::now();
        let outcome = apply(client, script, &sql, &checksum, &installed_by, opts);
        let elapsed = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(row) => {
                emit(client, sink, &row)?;
                report.applied.push(Applied {
                    script: script.name.clone(),
                    version: script.version.to_string(),
                    checksum,
                    duration_ms: row.execution_time_ms as u64,
                });
            }
            Err(Attempt::Failed(error)) => {
                let row = client
                    .query_one(
                        format!(
                            "INSERT INTO {HISTORY_TABLE} (version, description, script, checksum, installed_by,
                             execution_time_ms, success, ticket, reason, error)
                             VALUES ($1, $2, $3, $4, $5, $6, false, $7, $8, $9) RETURNING {ROW_COLUMNS}"
                        )
                        .as_str(),
                        &[
                            &script.version.to_string(),
                            &script.description,
                            &script.name,
                            &checksum,
                            &installed_by,
                            &(elapsed as i64),
                            &opts.ticket,
                            &opts.reason,
                            &error,
                        ],
                    )
                    .map_err(db("recording the failed script"))?;
                emit(client, sink, &HistoryRow::from_row(&row))?;
                report.failed = Some(Failed {
                    script: script.name.clone(),
                    version: script.version.to_string(),
                    checksum,
                    duration_ms: elapsed,
                    error,
                });
                report.pending = todo[i..].to_vec();
                return Ok(());
            }
            Err(Attempt::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}

enum Attempt {
    /// The script failed; its transaction is rolled back.
    Failed(String),
    /// The connection or the history table failed.
    Fatal(MigrateError),
}

fn apply(
    client: &mut Client,
    script: &Script,
    sql: &str,
    checksum: &str,
    installed_by: &str,
    opts: &MigrateOptions,
) -> Result<HistoryRow, Attempt> {
    let started = Instant::now();
    let mut tx = client
        .transaction()
        .map_err(|e| Attempt::Fatal(db("starting a transaction")(e)))?;
    let xact = |tx: &mut postgres::Transaction| -> Result<String, Attempt> {
        tx.query_one("SELECT pg_current_xact_id()::text", &[])
            .map(|r| r.get(0))
            .map_err(|e| Attempt::Fatal(db("reading the transaction id")(e)))
    };
    let before = xact(&mut tx)?;
    if let Err(e) = tx.batch_execute(sql) {
        return Err(Attempt::Failed(script_error(&script.name, sql, &e)));
    }
    // A COMMIT or ROLLBACK in the script ends our transaction: what came
    // before it is committed (or gone) outside the runner's control.
    if xact(&mut tx)? != before {
        return Err(Attempt::Failed(format!(
            "{}: the script ends the transaction itself (COMMIT or ROLLBACK); \
             statements after it ran outside the runner's transaction",
            script.name
        )));
    }
    let elapsed = started.elapsed().as_millis() as i64;
    let row = tx
        .query_one(
            format!(
                "INSERT INTO {HISTORY_TABLE} (version, description, script, checksum, installed_by,
                 execution_time_ms, success, ticket, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, true, $7, $8) RETURNING {ROW_COLUMNS}"
            )
            .as_str(),
            &[
                &script.version.to_string(),
                &script.description,
                &script.name,
                &checksum,
                &installed_by,
                &elapsed,
                &opts.ticket,
                &opts.reason,
            ],
        )
        .map_err(|e| Attempt::Failed(format!("{}: recording it: {}", script.name, describe(&e))))?;
    let row = HistoryRow::from_row(&row);
    // A deferred constraint fails here: the script failed.
    tx.commit()
        .map_err(|e| Attempt::Failed(script_error(&script.name, sql, &e)))?;
    Ok(row)
}

/// The server's error, placed at the line and column of the script when
/// the server gave a position.
fn script_error(name: &str, sql: &str, e: &postgres::Error) -> String {
    let position = e.as_db_error().and_then(|d| match d.position() {
        Some(postgres::error::ErrorPosition::Original(p)) => Some(*p as usize),
        _ => None,
    });
    match position {
        Some(p) => {
            let before: String = sql.chars().take(p.saturating_sub(1)).collect();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{name} line {line}, column {column}: {}", describe(e))
        }
        None => format!("{name}: {}", describe(e)),
    }
}

fn emit<S>(client: &mut Client, sink: &mut S, row: &HistoryRow) -> Result<(), MigrateError>
where
    S: FnMut(&[String]) -> Result<BatchOutcome, String>,
{
    let fail = |message: String| MigrateError::Sink {
        script: row.script.clone(),
        message,
    };
    let outcome = sink(&[row.event()]).map_err(fail)?;
    if let Some((_, why)) = outcome.rejected.first() {
        return Err(fail(format!("event refused: {why}")));
    }
    client
        .execute(
            format!("UPDATE {HISTORY_TABLE} SET event_recorded = true WHERE installed_rank = $1").as_str(),
            &[&row.rank],
        )
        .map_err(db("marking the event as recorded"))?;
    Ok(())
}

/// Every script, applied or pending, with its state; nothing is changed.
pub fn list(client: &mut Client, dir: &Path) -> Result<Vec<MigrationStatus>, MigrateError> {
    let scripts = plan(dir)?;
    let applied = history(client, "success")?;
    let mut out = Vec::new();
    for row in &applied {
        let version = Version::parse(&row.version);
        let file = scripts.iter().find(|s| Some(&s.version) == version.as_ref());
        let (state, checksum) = match file {
            None => (MigrationState::Missing, row.checksum.clone()),
            Some(s) if s.checksum != row.checksum => (
                MigrationState::Changed {
                    recorded: row.checksum.clone(),
                },
                s.checksum.clone(),
            ),
            Some(s) => (MigrationState::Applied, s.checksum.clone()),
        };
        out.push(MigrationStatus {
            version: row.version.clone(),
            description: row.description.clone(),
            script: row.script.clone(),
            checksum,
            state,
            installed_on: Some(row.installed_on.clone()),
            installed_by: Some(row.installed_by.clone()),
            execution_time_ms: Some(row.execution_time_ms),
            ticket: Some(row.ticket.clone()),
            reason: Some(row.reason.clone()),
        });
    }
    for s in &scripts {
        if !applied
            .iter()
            .any(|r| Version::parse(&r.version).as_ref() == Some(&s.version))
        {
            out.push(MigrationStatus {
                version: s.version.to_string(),
                description: s.description.clone(),
                script: s.name.clone(),
                checksum: s.checksum.clone(),
                state: MigrationState::Pending,
                installed_on: None,
                installed_by: None,
                execution_time_ms: None,
                ticket: None,
                reason: None,
            });
        }
    }
    out.sort_by(|a, b| Version::parse(&a.version).cmp(&Version::parse(&b.version)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_by_part() {
        let v = |s: &str| Version::parse(s).expect("a version");
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99"));
        assert_eq!(v("2"), v("2.0"));
        assert_eq!(v("1_2").to_string(), "1.2");
        assert!(Version::parse("1.x").is_none());
        assert!(Version::parse("").is_none());
    }
}
