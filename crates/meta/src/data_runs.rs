//! The history of data runs (diff, key discovery, validation): what ran on
//! which inputs, with which parameters, what it found and how long it
//! took. Each run is stored together with the system-log event recording
//! it ([`Meta::audited`]), so the history and the trail agree.
//!
//! Not here: comparing runs or finding trends (`sealtrail_data::history`
//! does that on the summaries stored here), or running anything.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::db::{Meta, MetaError};
use crate::system::bounded_details;

/// Most inputs a run may name.
pub const MAX_RUN_INPUTS: usize = 16;
/// Most bytes of a run's parameters or summary, as JSON text.
pub const MAX_RUN_JSON_BYTES: usize = 1 << 20;
/// Most bytes of a run's error text kept; longer text is cut (at a
/// character boundary) and marked.
pub const MAX_RUN_ERROR_BYTES: usize = 16 * 1024;
/// Most runs one listing returns.
pub const MAX_RUN_LIST: usize = 1000;
/// Most characters of an input's address.
const MAX_ADDRESS_CHARS: usize = 4096;

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Diff,
    Keys,
    Validate,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Diff => "diff",
            RunKind::Keys => "keys",
            RunKind::Validate => "validate",
        }
    }

    pub fn from_name(name: &str) -> Option<RunKind> {
        match name {
            "diff" => Some(RunKind::Diff),
            "keys" => Some(RunKind::Keys),
            "validate" => Some(RunKind::Validate),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Ran to the end and found nothing to report.
    Success,
    /// Ran to the end and found differences (or violations).
    Differences,
    /// Stopped by an error: `error` says which.
    Failure,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Differences => "differences",
            RunOutcome::Failure => "failure",
        }
    }

    pub fn from_name(name: &str) -> Option<RunOutcome> {
        match name {
            "success" => Some(RunOutcome::Success),
            "differences" => Some(RunOutcome::Differences),
            "failure" => Some(RunOutcome::Failure),
            _ => None,
        }
    }
}

/// One input of a run: where it came from (never with a password: see
/// [`redact_address`]), and what it held when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInput {
    pub address: String,
    /// SHA-256 of the bytes read, lower-case hex; null for inputs that are
    /// not files (a database query).
    pub sha256: Option<String>,
    /// Bytes read; null for inputs that are not files.
    pub bytes: Option<u64>,
}

/// A data run, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRun {
    pub kind: RunKind,
    /// The name of a recurring comparison (`nightly-invoices`), so that its
    /// runs can be listed and compared together.
    pub name: Option<String>,
    pub inputs: Vec<RunInput>,
    /// The run's options (key columns, rules file, budgets), as JSON.
    pub parameters: Value,
    /// What the run found, as JSON: the diff, keys or validation summary.
    /// Its top-level numbers are the run's metrics.
    pub summary: Value,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, not before `started_at`.
    pub finished_at: String,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    /// Why the run failed; required when the outcome is a failure.
    pub error: Option<String>,
    /// 0 to 1, or null when the run has none.
    pub quality_score: Option<f64>,
    /// Who ran it, as the system log's actors are written.
    pub actor: Value,
}

/// A run as stored, with its id (ids grow with time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDataRun {
    pub id: i64,
    #[serde(flatten)]
    pub run: DataRun,
    /// Begun ([`Meta::begin_data_run`]) and not finished yet. Until it
    /// finishes the stored run reads as a failure with [`INTERRUPTED`] as
    /// its error: what it becomes if the process running it stops.
    #[serde(default)]
    pub open: bool,
}

/// The error of a run begun by a process that stopped before finishing it.
pub const INTERRUPTED: &str = "the server stopped during the run";

/// Which runs to list: newest first, at most `limit` (capped at
/// [`MAX_RUN_LIST`]), with ids below `before` when given (the id of the
/// last run of the previous page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataRunFilter {
    pub kind: Option<RunKind>,
    pub name: Option<String>,
    pub limit: usize,
    pub before: Option<i64>,
}

/// `address` without a password: the password of a URL's user
/// information (`postgres://user:secret@host/db`), and `password=`
/// parameters of a query string or a key-value connection string
/// (`host=db password=secret`) become `***`.
pub fn redact_address(address: &str) -> String {
    let mut out = address.to_string();
    // URL user information: between "://" and the first '@' before any '/'.
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    // password=... as a query parameter or a key-value pair.
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = find_password_key(rest) {
        let value_start = i + "password=".len();
        result.push_str(&rest[..value_start]);
        result.push_str("***");
        let tail = &rest[value_start..];
        let end = if tail.starts_with('\'') {
            // A quoted key-value: up to the closing quote not escaped.
            let mut end = tail.len();
            let mut escaped = false;
            for (j, c) in tail.char_indices().skip(1) {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = j + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            end
        } else {
            tail.find(['&', ' ', ';', '#']).unwrap_or(tail.len())
        };
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

/// Where `password=` starts a key (at the start, or after a separator),
/// case-insensitive.
fn find_password_key(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password=") {
        let at = from + i;
        let before = lower[..at].chars().next_back();
        if before.is_none_or(|c| matches!(c, '?' | '&' | ' ' | ';' | '\t')) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Every problem with a run before it is stored, each naming its field.
pub fn data_run_problems(run: &DataRun) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(name) = &run.name {
        if name.is_empty() || name.chars().count() > sealtrail_event::limits::ID_CHARS {
            out.push(format!("name: 1 to {} characters", sealtrail_event::limits::ID_CHARS));
        }
        if name.chars().any(char::is_control) {
            out.push("name: no control characters".into());
        }
    }
    if run.inputs.len() > MAX_RUN_INPUTS {
        out.push(format!("inputs: at most {MAX_RUN_INPUTS}"));
    }
    for (i, input) in run.inputs.iter().enumerate() {
        if input.address.is_empty() || input.address.chars().count() > MAX_ADDRESS_CHARS {
            out.push(format!("inputs[{i}].address: 1 to {MAX_ADDRESS_CHARS} characters"));
        }
        if let Some(h) = &input.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                out.push(format!("inputs[{i}].sha256: 64 lower-case hex digits"));
            }
        }
    }
    for (field, value) in [("parameters", &run.parameters), ("summary", &run.summary)] {
        if value.to_string().len() > MAX_RUN_JSON_BYTES {
            out.push(format!("{field}: at most {MAX_RUN_JSON_BYTES} bytes of JSON"));
        }
    }
    let started = run.started_at.parse::<jiff::Timestamp>();
    let finished = run.finished_at.parse::<jiff::Timestamp>();
    if started.is_err() {
        out.push(format!("started_at: {:?} is not an RFC 3339 timestamp", run.started_at));
    }
    if finished.is_err() {
        out.push(format!(
            "finished_at: {:?} is not an RFC 3339 timestamp",
            run.finished_at
        ));
    }
    if let (Ok(s), Ok(f)) = (started, finished) {
        if f < s {
            out.push("finished_at: before started_at".into());
        }
    }
    if i64::try_from(run.duration_ms).is_err() {
        out.push("duration_ms: too large".into());
    }
    if let Some(q) = run.quality_score {
        if !(0.0..=1.0).contains(&q) {
            out.push(format!("quality_score: {q} is not between 0 and 1"));
        }
    }
    if run.outcome == RunOutcome::Failure && run.error.as_deref().is_none_or(str::is_empty) {
        out.push("error: a failed run says why".into());
    }
    out
}

/// The numbers at the top level of a summary: a run's metrics.
fn metrics(summary: &Value) -> Value {
    let map: serde_json::Map<String, Value> = summary
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_number())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(map)
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// The system-log event recording run `id`.
fn run_event(id: i64, run: &DataRun) -> String {
    let failed = run.outcome == RunOutcome::Failure;
    let mut target = json!({"type": "data_run", "id": id.to_string()});
    if let Some(name) = &run.name {
        target["name"] = json!(name);
    }
    let details = bounded_details(json!({
        "run_id": id,
        "kind": run.kind.as_str(),
        "name": run.name,
        "inputs": run.inputs,
        "outcome": run.outcome.as_str(),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "quality_score": run.quality_score,
        "metrics": metrics(&run.summary),
    }));
    let mut event = json!({
        "action": if failed { "data.run.failed" } else { "data.run.completed" },
        "actor": run.actor,
        "targets": [target],
        "source": {"service": "sealtrail"},
        "outcome": if failed { "failure" } else { "success" },
        "details": details,
    });
    if failed {
        event["severity"] = json!("error");
        event["error"] = json!({
            "type": "data_run",
            "message": cut(run.error.as_deref().unwrap_or_default(), sealtrail_event::limits::TEXT_CHARS / 4),
        });
    }
    event.to_string()
}

const COLUMNS: &str = "id, kind, name, inputs, parameters, summary, started_at, finished_at, duration_ms, outcome, error, quality_score, actor, id IN (SELECT id FROM data_runs_open)";

fn json_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn row_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDataRun> {
    let bad =
        |i: usize, what: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into());
    let kind: String = r.get(1)?;
    let outcome: String = r.get(9)?;
    let inputs = serde_json::from_value(json_column(r, 3)?).map_err(|e| bad(3, e.to_string()))?;
    let duration: i64 = r.get(8)?;
    Ok(StoredDataRun {
        id: r.get(0)?,
        run: DataRun {
            kind: RunKind::from_name(&kind).ok_or_else(|| bad(1, format!("run kind {kind:?}")))?,
            name: r.get(2)?,
            inputs,
            parameters: json_column(r, 4)?,
            summary: json_column(r, 5)?,
            started_at: r.get(6)?,
            finished_at: r.get(7)?,
            duration_ms: duration.max(0) as u64,
            outcome: RunOutcome::from_name(&outcome).ok_or_else(|| bad(9, format!("run outcome {outcome:?}")))?,
            error: r.get(10)?,
            quality_score: r.get(11)?,
            actor: json_column(r, 12)?,
        },
        open: r.get(13)?,
    })
}

fn update(conn: &Connection, id: i64, run: &DataRun) -> rusqlite::Result<()> {
    let inputs = serde_json::to_string(&run.inputs).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "UPDATE data_runs SET inputs = ?2, parameters = ?3, summary = ?4, finished_at = ?5, duration_ms = ?6,
                              outcome = ?7, error = ?8, quality_score = ?9
         WHERE id = ?1",
        params![
            id,
            inputs,
            run.parameters.to_string(),
            run.summary.to_string(),
            run.finished_at,
            run.duration_ms as i64,
            run.outcome.as_str(),
            run.error.as_deref().map(|e| cut(e, MAX_RUN_ERROR_BYTES)),
            run.quality_score,
        ],
    )?;
    Ok(())
}

fn insert(conn: &Connection, run: &DataRun) -> rusqlite::Result<i64> {
    let inputs = serde_json::to_string(&run.inputs).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO data_runs (kind, name, inputs, parameters, summary, started_at, finished_at,
                                duration_ms, outcome, error, quality_score, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            run.kind.as_str(),
            run.name,
            inputs,
            run.parameters.to_string(),
            run.summary.to_string(),
            run.started_at,
            run.finished_at,
            run.duration_ms as i64,
            run.outcome.as_str(),
            run.error.as_deref().map(|e| cut(e, MAX_RUN_ERROR_BYTES)),
            run.quality_score,
            run.actor.to_string(),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// `run` with its input addresses stripped of passwords.
fn redacted(run: &DataRun) -> DataRun {
    let mut out = run.clone();
    for input in &mut out.inputs {
        input.address = redact_address(&input.address);
    }
    out
}

/// `run` as stored when it begins: a failure that says the process
/// stopped, until [`Meta::finish_data_run`] replaces it.
fn as_begun(run: &DataRun) -> DataRun {
    DataRun {
        summary: json!({}),
        finished_at: run.started_at.clone(),
        duration_ms: 0,
        outcome: RunOutcome::Failure,
        error: Some(INTERRUPTED.into()),
        quality_score: None,
        ..redacted(run)
    }
}

fn sqlite_error(meta: &Meta, source: rusqlite::Error) -> MetaError {
    MetaError::Sqlite {
        path: meta.path().to_path_buf(),
        source,
    }
}

impl Meta {
    /// Stores `run` and queues the system-log event recording it
    /// (`data.run.completed`, or `data.run.failed` for a failure), in one
    /// transaction; returns the run's id. Input addresses are stored
    /// without passwords ([`redact_address`]); an error text is kept up to
    /// [`MAX_RUN_ERROR_BYTES`]. Refuses a run with problems
    /// ([`data_run_problems`]).
    pub fn record_data_run(&self, run: &DataRun) -> Result<i64, MetaError> {
        let problems = data_run_problems(run);
        if !problems.is_empty() {
            return Err(MetaError::InvalidDataRun(problems));
        }
        let redacted = redacted(run);
        self.audited(|conn| {
            let id = insert(conn, &redacted)?;
            Ok::<_, rusqlite::Error>((id, run_event(id, &redacted)))
        })
        .map_err(|e| sqlite_error(self, e))
    }

    /// Stores the start of a run that will take a while, so it has an id
    /// at once; returns the id. The run stays open until
    /// [`Meta::finish_data_run`] stores how it ended, together with its
    /// system-log event. Meanwhile it reads as a failure with error
    /// [`INTERRUPTED`] and `open` set. `run` gives kind, name, inputs,
    /// parameters, start and actor; the rest is ignored. Nothing is queued
    /// for the system log yet.
    pub fn begin_data_run(&self, run: &DataRun) -> Result<i64, MetaError> {
        let begun = as_begun(run);
        let problems = data_run_problems(&begun);
        if !problems.is_empty() {
            return Err(MetaError::InvalidDataRun(problems));
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate);
        let result = tx.and_then(|tx| {
            let id = insert(&tx, &begun)?;
            tx.execute("INSERT INTO data_runs_open (id) VALUES (?1)", params![id])?;
            tx.commit()?;
            Ok(id)
        });
        result.map_err(|e| sqlite_error(self, e))
    }

    /// Stores how open run `id` ended and queues the system-log event
    /// recording it, in one transaction, as [`Meta::record_data_run`]
    /// does. Refuses a run with problems, and an id that is not open
    /// (unknown, or finished already): [`MetaError::InvalidDataRun`].
    pub fn finish_data_run(&self, id: i64, run: &DataRun) -> Result<(), MetaError> {
        let problems = data_run_problems(run);
        if !problems.is_empty() {
            return Err(MetaError::InvalidDataRun(problems));
        }
        let redacted = redacted(run);
        let result = self.audited(|conn| {
            if conn.execute("DELETE FROM data_runs_open WHERE id = ?1", params![id])? == 0 {
                // Rolls the transaction back: nothing is queued.
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            update(conn, id, &redacted)?;
            Ok::<_, rusqlite::Error>(((), run_event(id, &redacted)))
        });
        match result {
            Ok(()) => Ok(()),
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                Err(MetaError::InvalidDataRun(vec![format!("id: run {id} is not open")]))
            }
            Err(e) => Err(sqlite_error(self, e)),
        }
    }

    /// Runs left open by a process that stopped: each becomes a failure
    /// ([`INTERRUPTED`]) finished at `now`, recorded with its system-log
    /// event. Call it where no other process can be running data runs on
    /// this database (the server, once it holds the data directory).
    /// Returns the ids closed.
    pub fn fail_open_data_runs(&self, now: &str) -> Result<Vec<i64>, MetaError> {
        let ids: Vec<i64> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare("SELECT id FROM data_runs_open ORDER BY id")
                .map_err(|e| sqlite_error(self, e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| sqlite_error(self, e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| sqlite_error(self, e))?
        };
        for &id in &ids {
            let Some(stored) = self.data_run(id)? else { continue };
            let started = stored.run.started_at.parse::<jiff::Timestamp>().ok();
            let finished = now.parse::<jiff::Timestamp>().ok();
            let (finished_at, duration_ms) = match (started, finished) {
                (Some(s), Some(f)) if f >= s => (
                    now.to_string(),
                    u64::try_from(f.as_millisecond() - s.as_millisecond()).unwrap_or(0),
                ),
                _ => (stored.run.started_at.clone(), 0),
            };
            let run = DataRun {
                finished_at,
                duration_ms,
                outcome: RunOutcome::Failure,
                error: Some(INTERRUPTED.into()),
                ..stored.run
            };
            match self.finish_data_run(id, &run) {
                Ok(()) | Err(MetaError::InvalidDataRun(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ids)
    }

    /// Runs matching `filter`, newest first.
    pub fn list_data_runs(&self, filter: &DataRunFilter) -> Result<Vec<StoredDataRun>, MetaError> {
        let conn = self.read();
        let sql = format!(
            "SELECT {COLUMNS} FROM data_runs
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR name = ?2) AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4"
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| sqlite_error(self, e))?;
        let limit = filter.limit.min(MAX_RUN_LIST) as i64;
        let rows = stmt
            .query_map(
                params![filter.kind.map(RunKind::as_str), filter.name, filter.before, limit],
                row_run,
            )
            .map_err(|e| sqlite_error(self, e))?;
        rows.map(|r| r.map_err(|e| sqlite_error(self, e))).collect()
    }

    /// Run `id`, if there is one.
    pub fn data_run(&self, id: i64) -> Result<Option<StoredDataRun>, MetaError> {
        let conn = self.read();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM data_runs WHERE id = ?1"),
            params![id],
            row_run,
        )
        .optional()
        .map_err(|e| sqlite_error(self, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_addresses() {
        for (given, kept) in [
            (
                "postgres://app:s3cr%40t@db:5432/ledger?sslmode=require",
                "postgres://app:***@db:5432/ledger?sslmode=require",
            ),
            ("postgres://app@db/ledger", "postgres://app@db/ledger"),
            (
                "postgres://db/x?user=a&password=hunter2&sslmode=off",
                "postgres://db/x?user=a&password=***&sslmode=off",
            ),
            (
                "host=db user=a password=hunter2 dbname=x",
                "host=db user=a password=*** dbname=x",
            ),
            (
                "host=db PASSWORD='it\\'s secret' dbname=x",
                "host=db PASSWORD=*** dbname=x",
            ),
            ("/data/old_password=1.csv", "/data/old_password=1.csv"),
            ("invoices.csv", "invoices.csv"),
        ] {
            assert_eq!(redact_address(given), kept, "{given}");
        }
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    fn run(kind: RunKind, name: Option<&str>, outcome: RunOutcome, added: u64) -> DataRun {
        DataRun {
            kind,
            name: name.map(str::to_string),
            inputs: vec![
                RunInput {
                    address: "left.csv".into(),
                    sha256: Some("ab".repeat(32)),
                    bytes: Some(1234),
                },
                RunInput {
                    address: "postgres://app:hunter2@db/ledger?table=invoices".into(),
                    sha256: None,
                    bytes: None,
                },
            ],
            parameters: json!({"key": ["invoice_id"]}),
            summary: json!({"added": added, "removed": 2, "unchanged": 97, "note": "text is not a metric"}),
            started_at: "2026-05-01T02:00:00Z".into(),
            finished_at: "2026-05-01T02:00:01.5Z".into(),
            duration_ms: 1500,
            outcome,
            error: (outcome == RunOutcome::Failure).then(|| "right.csv:7: 3 values, expected 4".to_string()),
            quality_score: (outcome != RunOutcome::Failure).then_some(0.97),
            actor: json!({"id": "cli:ops", "type": "user"}),
        }
    }

    /// The queued events, parsed, each checked against the event schema.
    fn queued(meta: &Meta) -> Vec<Value> {
        meta.outbox(100)
            .expect("outbox")
            .into_iter()
            .map(|(_, text)| {
                let received = sealtrail_event::Timestamp::from_second(1_780_000_000).expect("a time");
                sealtrail_event::accept_json(text.as_bytes(), received, sealtrail_event::Ulid::from(1u128))
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
                serde_json::from_str(&text).expect("json")
            })
            .collect()
    }

    #[test]
    fn runs_are_stored_with_their_event_and_listed_newest_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Meta::open(dir.path()).expect("open");
        let nightly = run(RunKind::Diff, Some("nightly"), RunOutcome::Differences, 3);
        let a = meta.record_data_run(&nightly).expect("record");
        let b = meta
            .record_data_run(&run(RunKind::Validate, None, RunOutcome::Success, 0))
            .expect("record");
        let c = meta
            .record_data_run(&run(RunKind::Diff, Some("nightly"), RunOutcome::Failure, 0))
            .expect("record");
        assert!(a < b && b < c);

        // Stored as given, but without the password.
        let stored = meta.data_run(a).expect("read").expect("run a");
        let mut want = nightly.clone();
        want.inputs[1].address = "postgres://app:***@db/ledger?table=invoices".into();
        assert_eq!(
            stored,
            StoredDataRun {
                id: a,
                run: want,
                open: false
            }
        );
        assert_eq!(meta.data_run(c + 1).expect("read"), None);

        let ids = |f: DataRunFilter| -> Vec<i64> {
            meta.list_data_runs(&f)
                .expect("list")
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        let all = DataRunFilter {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(ids(all.clone()), vec![c, b, a]);
        assert_eq!(
            ids(DataRunFilter {
                name: Some("nightly".into()),
                ..all.clone()
            }),
            vec![c, a]
        );
        assert_eq!(
            ids(DataRunFilter {
                kind: Some(RunKind::Validate),
                ..all.clone()
            }),
            vec![b]
        );
        // Paging: two, then what is before the second.
        assert_eq!(
            ids(DataRunFilter {
                limit: 2,
                ..all.clone()
            }),
            vec![c, b]
        );
        assert_eq!(
            ids(DataRunFilter {
                before: Some(b),
                ..all.clone()
            }),
            vec![a]
        );

        let events = queued(&meta);
        let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap_or("")).collect();
        assert_eq!(
            actions,
            vec!["data.run.completed", "data.run.completed", "data.run.failed"]
        );
        assert_eq!(
            events[0]["targets"][0],
            json!({"type": "data_run", "id": a.to_string(), "name": "nightly"})
        );
        assert_eq!(
            events[0]["details"]["metrics"],
            json!({"added": 3, "removed": 2, "unchanged": 97})
        );
        assert_eq!(
            events[0]["details"]["inputs"][1]["address"],
            "postgres://app:***@db/ledger?table=invoices"
        );
        assert!(!events.iter().any(|e| e.to_string().contains("hunter2")));
        assert_eq!(events[2]["outcome"], "failure");
        assert_eq!(events[2]["error"]["message"], "right.csv:7: 3 values, expected 4");

        // Durable: another opening sees the same runs.
        drop(meta);
        let meta = Meta::open(dir.path()).expect("reopen");
        assert_eq!(meta.list_data_runs(&all).expect("list").len(), 3);
    }

    #[test]
    fn a_run_with_problems_stores_nothing_and_queues_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Meta::open(dir.path()).expect("open");
        let mut bad = run(RunKind::Keys, Some(""), RunOutcome::Failure, 0);
        bad.error = None;
        bad.quality_score = Some(1.5);
        bad.finished_at = "2026-04-30T00:00:00Z".into();
        bad.inputs[0].sha256 = Some("XYZ".into());
        let Err(MetaError::InvalidDataRun(problems)) = meta.record_data_run(&bad) else {
            panic!("refused");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap_or("")).collect();
        assert_eq!(
            fields,
            vec!["name", "inputs[0].sha256", "finished_at", "quality_score", "error"]
        );
        assert!(meta
            .list_data_runs(&DataRunFilter {
                limit: 10,
                ..Default::default()
            })
            .expect("list")
            .is_empty());
        assert!(meta.outbox(10).expect("outbox").is_empty());
    }

    #[test]
    fn a_large_summary_is_stored_whole_and_its_event_stays_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Meta::open(dir.path()).expect("open");
        let mut big = run(RunKind::Keys, Some("k"), RunOutcome::Failure, 0);
        big.summary = json!({"rows": 10, "keys": (0..2000).map(|i| vec![format!("column_{i}")]).collect::<Vec<_>>()});
        big.error = Some("x".repeat(100_000));
        let id = meta.record_data_run(&big).expect("record");
        let stored = meta.data_run(id).expect("read").expect("run");
        assert_eq!(stored.run.summary, big.summary);
        let error = stored.run.error.expect("error kept");
        assert!(error.len() < MAX_RUN_ERROR_BYTES + 64 && error.ends_with("(100000 bytes in all)"));
        let events = queued(&meta);
        assert_eq!(events[0]["details"]["metrics"], json!({"rows": 10}));
    }

    #[test]
    fn a_begun_run_is_open_until_finished_and_a_stopped_one_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Meta::open(dir.path()).expect("open");
        let started = run(RunKind::Diff, Some("nightly"), RunOutcome::Success, 0);
        let a = meta.begin_data_run(&started).expect("begin a");
        let b = meta.begin_data_run(&started).expect("begin b");
        assert!(
            meta.outbox(10).expect("outbox").is_empty(),
            "nothing recorded before the end"
        );
        let open = meta.data_run(a).expect("read").expect("run a");
        assert!(open.open);
        assert_eq!(open.run.outcome, RunOutcome::Failure);
        assert_eq!(open.run.error.as_deref(), Some(INTERRUPTED));
        assert_eq!(
            open.run.inputs[1].address,
            "postgres://app:***@db/ledger?table=invoices"
        );

        let done = run(RunKind::Diff, Some("nightly"), RunOutcome::Differences, 4);
        meta.finish_data_run(a, &done).expect("finish a");
        let stored = meta.data_run(a).expect("read").expect("run a");
        assert!(!stored.open);
        assert_eq!(stored.run.summary, done.summary);
        assert_eq!(stored.run.outcome, RunOutcome::Differences);
        // Finished once only; an unknown id is refused; neither queues anything.
        assert!(matches!(
            meta.finish_data_run(a, &done),
            Err(MetaError::InvalidDataRun(_))
        ));
        assert!(matches!(
            meta.finish_data_run(b + 9, &done),
            Err(MetaError::InvalidDataRun(_))
        ));
        assert_eq!(queued(&meta).len(), 1);

        // The process stops with b open: the next start fails it.
        drop(meta);
        let meta = Meta::open(dir.path()).expect("reopen");
        assert_eq!(
            meta.fail_open_data_runs("2026-05-01T02:00:05Z").expect("sweep"),
            vec![b]
        );
        let failed = meta.data_run(b).expect("read").expect("run b");
        assert!(!failed.open);
        assert_eq!(failed.run.outcome, RunOutcome::Failure);
        assert_eq!(failed.run.duration_ms, 5000);
        let events = queued(&meta);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["action"], "data.run.failed");
        assert_eq!(events[1]["error"]["message"], INTERRUPTED);
        assert_eq!(events[1]["targets"][0]["id"], b.to_string());
        assert!(meta
            .fail_open_data_runs("2026-05-01T02:00:06Z")
            .expect("sweep")
            .is_empty());
    }

    #[test]
    fn analyst_keys_can_be_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Meta::open(dir.path()).expect("open");
        let (key, _) = meta
            .create_key(crate::Scope::Analyst, None, "a", "2026-05-01T00:00:00Z", |_| {
                json!({"action": "api_key.created", "actor": {"id": "t", "type": "user"}, "source": {"service": "sealtrail"}}).to_string()
            })
            .expect("analyst key");
        assert_eq!(key.scope, crate::Scope::Analyst);
    }
}
