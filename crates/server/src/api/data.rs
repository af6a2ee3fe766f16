//! Data reconciliation runs over HTTP (`/api/v1/data/runs`): a diff, key
//! discovery or validation submitted with uploaded files or the names of
//! sources from the configuration, run in the background, watched while it
//! runs, and read back afterwards: its summary, its changes or violations
//! page by page, and a report.
//!
//! A run goes through `sealtrail_data::job`, the same path as the CLI's,
//! and is stored in the metadata database's run history from submission on
//! ([`Meta::begin_data_run`]): a server that stops mid-run leaves a failure
//! behind, never a run that looks alive. Uploads and results live in the
//! run's directory, `<data_dir>/data-runs/<id>/` (laid out as
//! [`sealtrail_data::run_dir`] says); the newest `data.keep_runs`
//! directories are kept, the history of every run stays. The scheduler's
//! `data-diff` and `data-keys` jobs keep theirs there too, and take the
//! same `data.max_running` slots ([`DataRunPool`]): their changes read
//! back here like any other run's.
//!
//! Not here: comparing runs with each other (the CLI's history commands),
//! or any client-given path or URL: clients upload files or name a source
//! of `[data.sources]`.
//!
//! [`Meta::begin_data_run`]: sealtrail_meta::Meta::begin_data_run

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_data::diff::{DiffSummary, Layout};
use sealtrail_data::job::{self, JobInput, Watch};
use sealtrail_data::keys::{KeyOptions, NullEquality};
use sealtrail_data::output::{self, Format};
use sealtrail_data::run_dir::{self, DiffFiles, CHANGES_FILE, LAYOUT_FILE, VIOLATIONS_FILE};
use sealtrail_data::source::OpenOptions;
use sealtrail_data::validate::{Rules, Violation};
use sealtrail_data::{Change, DataError, DiffOptions};
use sealtrail_meta::{now_text, DataRun, DataRunFilter, RunInput, RunKind, RunOutcome, Scope, StoredDataRun};
use sealtrail_sched::data_runs::{Busy, DataRunPool};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::blocking;
use crate::app::{App, Caller};
use crate::config::Config;
use crate::extract::{Auth, JsonBody, Params, PathArgs};
use crate::problem::{ApiResult, Problem};

/// The directory of every run's files, under the data directory.
pub use sealtrail_data::run_dir::RUNS_DIR;
/// Most bytes of the `options` part or field, as JSON text.
const MAX_OPTIONS_BYTES: usize = 64 << 10;
/// Most bytes of validation rules (TOML).
const MAX_RULES_BYTES: usize = 1 << 20;
/// Most bytes of a short text part (`kind`, `name`).
const MAX_FIELD_BYTES: usize = 1024;
/// Most file parts of one run.
const MAX_FILES: usize = 2;
/// Rows of a page of changes unless `limit` says otherwise, and the most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Runs listed unless `limit` says otherwise.
const DEFAULT_LIST: usize = 50;
/// Most bytes of the changes file one page may scan: a page with a
/// filter that matches rarely ends early, with a cursor to go on from.
const MAX_PAGE_SCAN_BYTES: u64 = 16 << 20;
/// Key discovery's column limit unless the options set one: without a
/// limit the keys of a wide table can be exponentially many.
const DEFAULT_KEY_COLUMNS: usize = 4;
/// `Retry-After` of a run refused because the queue is full, in seconds.
const RETRY_AFTER_FULL: u64 = 5;
/// File name extensions a source is detected by (docs/data.md).
const EXTENSIONS: [&str; 7] = ["csv", "txt", "tsv", "tab", "jsonl", "ndjson", "xlsx"];

/// Numbers the upload directories of this process; those of an earlier
/// one are removed at start.
static INCOMING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs admitted and not finished: queued or running, with their progress.
pub struct DataRuns {
    /// The runs directory, `data.keep_runs` and the `data.max_running`
    /// slots, shared with the scheduler's data jobs.
    pool: Arc<DataRunPool>,
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    /// Places taken: queued, running, or being uploaded.
    admitted: usize,
    runs: HashMap<i64, Arc<LiveRun>>,
}

struct LiveRun {
    running: AtomicBool,
    watch: Arc<Watch>,
    inputs: usize,
}

impl DataRuns {
    /// The runs of a server starting on `config`: runs a stopped server
    /// left open become failures, and half-received uploads are removed.
    pub fn open(config: &Config, meta: &sealtrail_meta::Meta) -> Result<DataRuns, String> {
        let dir = config.data_dir.join(RUNS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let failed = meta
            .fail_open_data_runs(&now_text())
            .map_err(|e| format!("closing data runs left open: {e}"))?;
        for id in failed {
            tracing::warn!(run = id, "data run {id} failed: {}", sealtrail_meta::INTERRUPTED);
            if let Ok(Some(run)) = meta.data_run(id) {
                metrics::counter!("sealtrail_data_runs_total", "kind" => run.run.kind.as_str(), "outcome" => "failure")
                    .increment(1);
            }
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("incoming-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        metrics::counter!("sealtrail_data_runs_refused_total").increment(0);
        Ok(DataRuns {
            pool: Arc::new(DataRunPool::new(dir, config.data.keep_runs, config.data.max_running)),
            live: Mutex::new(Live::default()),
        })
    }

    /// The runs directory and slots, for the scheduler's data jobs.
    pub fn pool(&self) -> &Arc<DataRunPool> {
        &self.pool
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run_dir(&self, id: i64) -> PathBuf {
        self.pool.run_dir(id)
    }

    /// Take a place for one more run, or refuse with 503.
    fn admit(self: &Arc<Self>, config: &Config) -> Result<Ticket, Problem> {
        let mut live = self.live();
        let places = config.data.max_running + config.data.max_queued;
        if live.admitted >= places {
            metrics::counter!("sealtrail_data_runs_refused_total").increment(1);
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "{} data runs are running or waiting, the most this server takes (data.max_running {}, data.max_queued {}); retry later",
                    live.admitted, config.data.max_running, config.data.max_queued
                ),
            );
            p.retry_after = Some(RETRY_AFTER_FULL);
            return Err(p);
        }
        live.admitted += 1;
        Ok(Ticket { runs: self.clone() })
    }

    /// Places taken now: runs queued or running, and uploads being read.
    pub fn admitted(&self) -> usize {
        self.live().admitted
    }

    /// Where run `id` is, if it has not finished.
    fn state(&self, id: i64) -> Option<(RunState, Vec<InputProgress>)> {
        let live = self.live();
        let run = live.runs.get(&id)?;
        let running = run.running.load(Ordering::SeqCst);
        let progress = (0..run.inputs)
            .map(|i| {
                let p = run.watch.input(i);
                InputProgress {
                    rows: p.rows,
                    read_bytes: p.read_bytes,
                    total_bytes: p.total_bytes,
                }
            })
            .collect();
        Some((if running { RunState::Running } else { RunState::Queued }, progress))
    }
}

/// A place taken among `data.max_running + data.max_queued`, given back
/// when dropped.
struct Ticket {
    runs: Arc<DataRuns>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut live = self.runs.live();
        live.admitted = live.admitted.saturating_sub(1);
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for one of `data.max_running` places.
    Queued,
    Running,
    /// Ended; `outcome` says how.
    Finished,
}

/// How far one input has been read.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InputProgress {
    pub rows: u64,
    pub read_bytes: u64,
    /// 0 when unknown (a database query).
    pub total_bytes: u64,
}

/// One input of a run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunInputView {
    /// The uploaded file's name, or the source's address (without password).
    pub address: String,
    /// SHA-256 of the file's bytes, lower-case hex; null for a database
    /// query, and until the run has read the input.
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
}

/// A data run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DataRunView {
    pub id: i64,
    /// `diff`, `keys` or `validate`.
    pub kind: String,
    /// The recurring comparison this run belongs to.
    pub name: Option<String>,
    pub state: RunState,
    /// Once finished: `success`, `differences` (differences, violations, or
    /// no key found) or `failure`.
    pub outcome: Option<String>,
    /// Why it failed, naming input, line and column where known.
    pub error: Option<String>,
    pub inputs: Vec<RunInputView>,
    /// While queued or running: each input's progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Vec<InputProgress>>,
    /// The options the run was given.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// What it found (docs/data.md): the diff, keys or validation summary;
    /// `{}` until finished.
    #[schema(value_type = Object)]
    pub summary: Value,
    pub quality_score: Option<f64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// Who submitted it.
    #[schema(value_type = Object)]
    pub actor: Value,
}

impl DataRunView {
    fn of(stored: StoredDataRun, live: Option<(RunState, Vec<InputProgress>)>) -> DataRunView {
        let run = stored.run;
        let inputs = run
            .inputs
            .into_iter()
            .map(|i| RunInputView {
                address: i.address,
                sha256: i.sha256,
                bytes: i.bytes,
            })
            .collect();
        // An open run that is not live here was begun by a process still
        // running, or one that stopped: shown as it is stored (a failure)
        // only once closed; until then as running.
        let live = live.or_else(|| stored.open.then(|| (RunState::Running, Vec::new())));
        match live {
            Some((state, progress)) => DataRunView {
                id: stored.id,
                kind: run.kind.as_str().into(),
                name: run.name,
                state,
                outcome: None,
                error: None,
                inputs,
                progress: Some(progress),
                parameters: run.parameters,
                summary: json!({}),
                quality_score: None,
                started_at: run.started_at,
                finished_at: None,
                duration_ms: None,
                actor: run.actor,
            },
            None => DataRunView {
                id: stored.id,
                kind: run.kind.as_str().into(),
                name: run.name,
                state: RunState::Finished,
                outcome: Some(run.outcome.as_str().into()),
                error: run.error,
                inputs,
                progress: None,
                parameters: run.parameters,
                summary: run.summary,
                quality_score: run.quality_score,
                started_at: run.started_at,
                finished_at: Some(run.finished_at),
                duration_ms: Some(run.duration_ms),
                actor: run.actor,
            },
        }
    }
}

/// A run of sources named in the configuration (`[data.sources]`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// `diff`, `keys` or `validate`.
    pub kind: String,
    /// A recurring comparison's name, to list its runs together.
    pub name: Option<String>,
    /// Diff: the left source's name.
    pub left: Option<String>,
    /// Diff: the right source's name.
    pub right: Option<String>,
    /// Keys (one or two) and validate (one): the sources' names.
    pub inputs: Option<Vec<String>>,
    /// Validate: the rules, as TOML text (docs/data.md).
    pub rules: Option<String>,
    /// The kind's options (docs/api.md).
    #[schema(value_type = Object)]
    pub options: Option<Value>,
}

/// The parts of an upload (`multipart/form-data`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the request body only
pub struct RunUpload {
    /// `diff`, `keys` or `validate`.
    kind: String,
    name: Option<String>,
    /// The kind's options, as JSON text.
    options: Option<String>,
    /// Diff: the left file; its name's extension gives its format.
    #[schema(value_type = Option<String>, format = Binary)]
    left: Option<Vec<u8>>,
    /// Diff: the right file.
    #[schema(value_type = Option<String>, format = Binary)]
    right: Option<Vec<u8>>,
    /// Keys: one or two files (the part repeated); validate: one.
    #[schema(value_type = Option<String>, format = Binary)]
    input: Option<Vec<u8>>,
    /// Validate: the rules, TOML text or a file.
    rules: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DiffOptionsIn {
    key: Vec<String>,
    ignore: Vec<String>,
    rename: BTreeMap<String, String>,
    case_insensitive: Vec<String>,
    whitespace_insensitive: Vec<String>,
    numeric_tolerance: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct KeyOptionsIn {
    max_columns: Option<usize>,
    near: bool,
    nulls: NullEquality,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

/// What a run does, checked before it is admitted to run.
enum Plan {
    Diff(DiffOptions),
    Keys(KeyOptions),
    Validate(Box<Rules>),
}

/// One input: where the run reads it and how it is shown.
struct Input {
    /// A file path in the run's directory, or a configured address.
    address: String,
    /// The uploaded file's name; None for a configured source.
    upload: Option<String>,
}

/// A run request, checked.
struct Submission {
    kind: RunKind,
    name: Option<String>,
    parameters: Value,
    plan: Plan,
    inputs: Vec<Input>,
    /// The upload's directory, renamed to the run's once it has an id.
    incoming: Option<PathBuf>,
}

fn invalid(field: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-run",
        format!("{field}: {detail}"),
    )
}

fn too_large(part: &str, limit: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload-too-large",
        format!("part {part}: the upload is larger than the limit of {limit} bytes (data.max_upload_bytes)"),
    )
}

fn parse_kind(text: &str, field: &str) -> Result<RunKind, Problem> {
    RunKind::from_name(text.trim()).ok_or_else(|| invalid(field, format!("{text:?} is not diff, keys or validate")))
}

fn check_name(name: Option<String>, field: &str) -> Result<Option<String>, Problem> {
    match name {
        Some(n) if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) => {
            Err(invalid(field, "1 to 128 characters, no control characters"))
        }
        other => Ok(other),
    }
}

fn options_of<T: serde::de::DeserializeOwned + Default>(options: &Value) -> Result<T, Problem> {
    if options.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(options).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "options".to_string()
        } else {
            format!("options.{path}")
        };
        invalid(&field, e.inner())
    })
}

/// The plan of a `kind` run with these options, memory budget and temp
/// directory; `rules` for validation.
fn plan(kind: RunKind, options: &Value, rules: Option<(&str, &str)>, config: &Config) -> Result<Plan, Problem> {
    if !options.is_null() && !options.is_object() {
        return Err(invalid("options", "a JSON object"));
    }
    let budget = config.data.memory_budget;
    Ok(match kind {
        RunKind::Diff => {
            let o: DiffOptionsIn = options_of(options)?;
            if o.key.is_empty() {
                return Err(invalid("options.key", "required: the key columns, e.g. [\"id\"]"));
            }
            if let Some(t) = o.numeric_tolerance {
                if !t.is_finite() || t < 0.0 {
                    return Err(invalid("options.numeric_tolerance", "a number at least 0"));
                }
            }
            Plan::Diff(DiffOptions {
                key: o.key,
                ignore: o.ignore,
                rename: o.rename.into_iter().collect(),
                case_insensitive: o.case_insensitive,
                whitespace_insensitive: o.whitespace_insensitive,
                numeric_tolerance: o.numeric_tolerance,
                memory_budget: budget,
                temp_dir: None,
            })
        }
        RunKind::Keys => {
            let o: KeyOptionsIn = options_of(options)?;
            if o.max_columns == Some(0) {
                return Err(invalid("options.max_columns", "at least 1"));
            }
            Plan::Keys(KeyOptions {
                max_columns: Some(o.max_columns.unwrap_or(DEFAULT_KEY_COLUMNS)),
                nulls: o.nulls,
                memory_budget: budget,
                near: o.near,
                ..KeyOptions::default()
            })
        }
        RunKind::Validate => {
            let _: NoOptions = options_of(options)?;
            let Some((text, file)) = rules else {
                return Err(invalid("rules", "required: the validation rules (TOML)"));
            };
            let rules = Rules::from_toml(text, file).map_err(|e| invalid("rules", e))?;
            Plan::Validate(Box::new(rules))
        }
    })
}

/// How many inputs of each role a kind takes, checked.
fn check_inputs(kind: RunKind, left: usize, right: usize, input: usize, prefix: &str) -> Result<(), Problem> {
    let (l, r, i) = (
        format!("{prefix}left"),
        format!("{prefix}right"),
        format!("{prefix}input"),
    );
    match kind {
        RunKind::Diff => {
            if input > 0 {
                return Err(invalid(&i, "a diff takes left and right, not input"));
            }
            if left != 1 {
                return Err(invalid(&l, "a diff needs exactly one left input"));
            }
            if right != 1 {
                return Err(invalid(&r, "a diff needs exactly one right input"));
            }
        }
        RunKind::Keys | RunKind::Validate => {
            if left + right > 0 {
                return Err(invalid(
                    if left > 0 { &l } else { &r },
                    "only a diff takes left and right; name the inputs input",
                ));
            }
            let most = if kind == RunKind::Keys { 2 } else { 1 };
            if input == 0 || input > most {
                return Err(invalid(
                    &i,
                    format!(
                        "{} takes {} input(s), not {input}",
                        kind.as_str(),
                        if most == 2 { "one or two" } else { "one" }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The extension of an uploaded file's name that gives its format.
fn extension(part: &str, file_name: Option<&str>) -> Result<String, Problem> {
    let ext = file_name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if EXTENSIONS.contains(&ext.as_str()) {
        Ok(ext)
    } else {
        Err(invalid(
            &format!("part {part}"),
            format!(
                "the file name {:?} must end in one of .{} (it gives the file's format)",
                file_name.unwrap_or(""),
                EXTENSIONS.join(", .")
            ),
        ))
    }
}

/// The name an upload is recorded under: its last path component, bounded.
fn shown_name(file_name: Option<&str>, part: &str) -> String {
    let base = file_name
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .unwrap_or(part)
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect::<String>();
    if base.is_empty() {
        part.to_string()
    } else {
        base
    }
}

/// The next chunk of upload part `part`, waiting at most `wait` for it and
/// counting it into `total`, which may not pass `limit` (the whole
/// request's bound). `None` at the part's end.
async fn next_chunk(
    app: &App,
    field: &mut axum::extract::multipart::Field<'_>,
    part: &str,
    wait: Duration,
    total: &mut u64,
    limit: u64,
) -> Result<Option<axum::body::Bytes>, Problem> {
    let chunk = match tokio::time::timeout(wait, field.chunk()).await {
        Err(_) => return Err(body_timeout(app)),
        Ok(Err(e)) => return Err(multipart_problem(&e, part)),
        Ok(Ok(None)) => return Ok(None),
        Ok(Ok(Some(c))) => c,
    };
    *total += chunk.len() as u64;
    if *total > limit {
        return Err(too_large(part, limit));
    }
    Ok(Some(chunk))
}

/// Read a multipart upload: text parts into memory (bounded), file parts
/// streamed to `incoming/inputs/`, everything within
/// `data.max_upload_bytes`.
async fn read_upload(app: &App, mut form: Multipart, incoming: &Path) -> Result<Submission, Problem> {
    let limit = app.config.data.max_upload_bytes;
    let chunk_wait = Duration::from_millis(app.config.http.body_timeout_ms);
    let inputs_dir = incoming.join("inputs");
    tokio::fs::create_dir_all(&inputs_dir)
        .await
        .map_err(|e| Problem::internal(format!("creating {}: {e}", inputs_dir.display())))?;
    let mut total: u64 = 0;
    let mut kind = None;
    let mut name = None;
    let mut options = None;
    let mut rules: Option<(String, String)> = None;
    let mut files: Vec<(String, Input)> = Vec::new();
    loop {
        let field = match tokio::time::timeout(chunk_wait, form.next_field()).await {
            Err(_) => return Err(body_timeout(app)),
            Ok(Err(e)) => return Err(multipart_problem(&e, "")),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(f))) => f,
        };
        let part = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        match part.as_str() {
            "kind" | "name" | "options" | "rules" => {
                let max = match part.as_str() {
                    "options" => MAX_OPTIONS_BYTES,
                    "rules" => MAX_RULES_BYTES,
                    _ => MAX_FIELD_BYTES,
                };
                let mut bytes = Vec::new();
                let mut field = field;
                while let Some(chunk) = next_chunk(app, &mut field, &part, chunk_wait, &mut total, limit).await? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > max {
                        return Err(invalid(&format!("part {part}"), format!("at most {max} bytes")));
                    }
                }
                let text = String::from_utf8(bytes).map_err(|_| invalid(&format!("part {part}"), "not UTF-8 text"))?;
                match part.as_str() {
                    "kind" => kind = Some(parse_kind(&text, "part kind")?),
                    "name" => name = Some(text),
                    "options" => {
                        let value: Value = serde_json::from_str(&text)
                            .map_err(|e| invalid("part options", format!("not JSON: {e}")))?;
                        options = Some(value);
                    }
                    _ => rules = Some((text, shown_name(file_name.as_deref(), "rules"))),
                }
            }
            "left" | "right" | "input" => {
                if files.len() >= MAX_FILES {
                    return Err(invalid(&format!("part {part}"), format!("at most {MAX_FILES} files")));
                }
                let ext = extension(&part, file_name.as_deref())?;
                let path = inputs_dir.join(format!("{}-{part}.{ext}", files.len() + 1));
                let mut out = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| Problem::internal(format!("creating {}: {e}", path.display())))?;
                let mut field = field;
                while let Some(chunk) = next_chunk(app, &mut field, &part, chunk_wait, &mut total, limit).await? {
                    tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                        .await
                        .map_err(|e| Problem::internal(format!("writing {}: {e}", path.display())))?;
                }
                tokio::io::AsyncWriteExt::flush(&mut out)
                    .await
                    .map_err(|e| Problem::internal(format!("writing {}: {e}", path.display())))?;
                files.push((
                    part.clone(),
                    Input {
                        address: path.to_string_lossy().into_owned(),
                        upload: Some(shown_name(file_name.as_deref(), &part)),
                    },
                ));
            }
            other => {
                return Err(invalid(
                    &format!("part {other}"),
                    "unknown part (kind, name, options, left, right, input, rules)",
                ))
            }
        }
    }
    let kind = kind.ok_or_else(|| invalid("part kind", "required: diff, keys or validate"))?;
    let count = |role: &str| files.iter().filter(|(p, _)| p == role).count();
    check_inputs(kind, count("left"), count("right"), count("input"), "part ")?;
    let options = options.unwrap_or(Value::Null);
    let plan = plan(
        kind,
        &options,
        rules.as_ref().map(|(t, f)| (t.as_str(), f.as_str())),
        &app.config,
    )?;
    // Left before right, whatever order the parts came in.
    files.sort_by_key(|(p, _)| match p.as_str() {
        "left" => 0,
        "right" => 1,
        _ => 2,
    });
    Ok(Submission {
        kind,
        name: check_name(name, "part name")?,
        parameters: parameters(&options, rules.as_ref().map(|(_, f)| f.as_str())),
        plan,
        inputs: files.into_iter().map(|(_, i)| i).collect(),
        incoming: Some(incoming.to_path_buf()),
    })
}

fn parameters(options: &Value, rules_file: Option<&str>) -> Value {
    let mut p = json!({"options": if options.is_null() { json!({}) } else { options.clone() }});
    if let Some(f) = rules_file {
        p["rules_file"] = json!(f);
    }
    p
}

fn body_timeout(app: &App) -> Problem {
    metrics::counter!("sealtrail_http_timeouts_total", "kind" => "body").increment(1);
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-timeout",
        format!(
            "the upload stalled for {} ms (http.body_timeout_ms)",
            app.config.http.body_timeout_ms
        ),
    )
}

fn multipart_problem(e: &axum::extract::multipart::MultipartError, part: &str) -> Problem {
    let at = if part.is_empty() {
        String::new()
    } else {
        format!("part {part}: ")
    };
    Problem::bad_request("invalid-upload", format!("{at}{}", e.body_text()))
}

/// A run of configured sources.
fn read_named(app: &App, body: &[u8]) -> Result<Submission, Problem> {
    let new: NewRun = super::admin::parse_json(body)?;
    let kind = parse_kind(&new.kind, "kind")?;
    let source = |field: String, name: &str| -> Result<Input, Problem> {
        match app.config.data.sources.get(name) {
            Some(address) => Ok(Input {
                address: address.clone(),
                upload: None,
            }),
            None => Err(invalid(
                &field,
                format!("no source named {name:?} in the server's [data.sources]"),
            )),
        }
    };
    let named = new.inputs.clone().unwrap_or_default();
    check_inputs(
        kind,
        usize::from(new.left.is_some()),
        usize::from(new.right.is_some()),
        named.len(),
        "",
    )?;
    let mut inputs = Vec::new();
    if let Some(l) = &new.left {
        inputs.push(source("left".into(), l)?);
    }
    if let Some(r) = &new.right {
        inputs.push(source("right".into(), r)?);
    }
    for (i, n) in named.iter().enumerate() {
        inputs.push(source(format!("inputs[{i}]"), n)?);
    }
    if new.rules.as_ref().is_some_and(|r| r.len() > MAX_RULES_BYTES) {
        return Err(invalid("rules", format!("at most {MAX_RULES_BYTES} bytes")));
    }
    let options = new.options.unwrap_or(Value::Null);
    if options.to_string().len() > MAX_OPTIONS_BYTES {
        return Err(invalid("options", format!("at most {MAX_OPTIONS_BYTES} bytes of JSON")));
    }
    let plan = plan(kind, &options, new.rules.as_deref().map(|t| (t, "rules")), &app.config)?;
    let mut parameters = parameters(&options, new.rules.is_some().then_some("rules"));
    parameters["sources"] = json!(new
        .left
        .iter()
        .chain(new.right.iter())
        .chain(named.iter())
        .collect::<Vec<_>>());
    Ok(Submission {
        kind,
        name: check_name(new.name, "name")?,
        parameters,
        plan,
        inputs,
        incoming: None,
    })
}

/// May `caller` see runs? Read, analyst or admin scope, no tenant.
fn may_see(caller: &Caller) -> Result<(), Problem> {
    if caller.require(Scope::Read).is_err() && caller.require(Scope::Analyst).is_err() {
        caller.require(Scope::Read)?;
    }
    refuse_tenant(caller)
}

fn refuse_tenant(caller: &Caller) -> Result<(), Problem> {
    caller.require_no_tenant("data runs read sources beyond any one tenant and need a caller without tenant")
}

/// Start a data run.
#[utoipa::path(
    post, path = "/api/v1/data/runs", tag = "data",
    request_body(
        description = "Files uploaded as multipart/form-data, or a JSON object naming sources of the server's [data.sources]",
        content(
            (RunUpload = "multipart/form-data"),
            (NewRun = "application/json"),
        )
    ),
    responses(
        (status = 202, description = "Admitted: queued or running", body = DataRunView,
            headers(("Location" = String, description = "The run's URL"))),
        (status = 413, description = "The upload is larger than data.max_upload_bytes", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "data.max_running runs are running and data.max_queued waiting; see Retry-After", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_run(State(app): State<Arc<App>>, Auth(caller): Auth, request: Request) -> ApiResult<Response> {
    let key = caller.require(Scope::Analyst).or_else(|_| caller.require(Scope::Admin));
    if let (Err(_), Some(k)) = (&key, caller.key()) {
        return Err(Problem::forbidden(format!(
            "API key {} has scope {}; running data reconciliations needs scope analyst or admin",
            k.id,
            k.scope.as_str()
        )));
    }
    key?;
    refuse_tenant(&caller)?;
    if app.shutting_down() {
        return Err(Problem::unavailable("the server is shutting down"));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // An upload must fit the disk beside what the logs need.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(app.config.data.max_upload_bytes);
    if let Err(reason) = app.system.check_room(declared) {
        let mut p = Problem::unavailable(reason);
        p.retry_after = Some(RETRY_AFTER_FULL);
        return Err(p);
    }
    let ticket = app.data_runs.admit(&app.config)?;
    let submission = if content_type.starts_with("multipart/form-data") {
        let form = Multipart::from_request(request, &())
            .await
            .map_err(|e| Problem::bad_request("invalid-upload", e.body_text()))?;
        let incoming = app
            .data_runs
            .pool
            .dir()
            .join(format!("incoming-{}", INCOMING.fetch_add(1, Ordering::Relaxed)));
        let read = read_upload(&app, form, &incoming).await;
        if read.is_err() {
            let _ = tokio::fs::remove_dir_all(&incoming).await;
        }
        read?
    } else {
        let body = JsonBody::from_request(request, &app).await?;
        read_named(&app, &body.bytes)?
    };
    let (id, view) = {
        let app = app.clone();
        let caller = caller.clone();
        blocking(move || begin(&app, &caller, submission, ticket)).await?
    };
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/data/runs/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Store the run's start, move its upload into place and set it going.
fn begin(app: &Arc<App>, caller: &Caller, s: Submission, ticket: Ticket) -> Result<(i64, DataRunView), Problem> {
    let record = DataRun {
        kind: s.kind,
        name: s.name.clone(),
        inputs: s
            .inputs
            .iter()
            .map(|i| RunInput {
                address: i.upload.clone().unwrap_or_else(|| i.address.clone()),
                sha256: None,
                bytes: None,
            })
            .collect(),
        parameters: s.parameters.clone(),
        summary: json!({}),
        started_at: now_text(),
        finished_at: String::new(),
        duration_ms: 0,
        outcome: RunOutcome::Failure,
        error: None,
        quality_score: None,
        actor: caller.actor(),
    };
    let id = app.meta.begin_data_run(&record).map_err(|e| {
        if let Some(i) = &s.incoming {
            let _ = std::fs::remove_dir_all(i);
        }
        match e {
            sealtrail_meta::MetaError::InvalidDataRun(p) => invalid("run", p.join("; ")),
            other => Problem::internal(other),
        }
    })?;
    let runs = &app.data_runs;
    // Spared by pruning from now until the run is over.
    let busy = runs.pool.hold(id);
    let dir = runs.run_dir(id);
    let mut inputs = s.inputs;
    if let Some(incoming) = &s.incoming {
        if let Err(e) = std::fs::rename(incoming, &dir) {
            let _ = std::fs::remove_dir_all(incoming);
            let problem = Problem::internal(format!("moving {} to {}: {e}", incoming.display(), dir.display()));
            finish(
                app,
                id,
                &record,
                Err(format!("the upload could not be kept: {}", problem.detail)),
                s.kind,
            );
            return Err(problem);
        }
        for input in &mut inputs {
            if let Ok(rest) = Path::new(&input.address).strip_prefix(incoming) {
                input.address = dir.join(rest).to_string_lossy().into_owned();
            }
        }
    } else if let Err(e) = std::fs::create_dir_all(&dir) {
        let problem = Problem::internal(format!("creating {}: {e}", dir.display()));
        finish(
            app,
            id,
            &record,
            Err("the run's directory could not be made".into()),
            s.kind,
        );
        return Err(problem);
    }
    let watch = Watch::new();
    let live = Arc::new(LiveRun {
        running: AtomicBool::new(false),
        watch: watch.clone(),
        inputs: inputs.len(),
    });
    runs.live().runs.insert(id, live.clone());
    let stored = StoredDataRun {
        id,
        run: record.clone(),
        open: true,
    };
    let view = DataRunView::of(stored, runs.state(id));
    let job = Job {
        id,
        dir,
        kind: s.kind,
        plan: s.plan,
        inputs,
        record,
        watch,
    };
    let app = app.clone();
    let pool = runs.pool.clone();
    tokio::runtime::Handle::current().spawn(async move {
        // Holding the place and the directory until the run is over.
        let _ticket = ticket;
        let _busy: Busy = busy;
        let Some(_slot) = pool.slot().await else {
            return;
        };
        live.running.store(true, Ordering::SeqCst);
        let worker = app.clone();
        let _ = tokio::task::spawn_blocking(move || job.run(&worker)).await;
        app.data_runs.live().runs.remove(&id);
    });
    Ok((id, view))
}

/// Store how run `id` ended (with its system-log event), count it, and
/// log a failure.
fn finish(app: &App, id: i64, begun: &DataRun, result: Result<Ended, String>, kind: RunKind) {
    let finished_at = now_text();
    let duration = elapsed_ms(&begun.started_at, &finished_at);
    let run = match result {
        Ok(ended) => DataRun {
            inputs: ended.inputs,
            summary: ended.summary,
            finished_at,
            duration_ms: duration,
            outcome: ended.outcome,
            error: None,
            quality_score: ended.quality_score.filter(|q| (0.0..=1.0).contains(q)),
            ..begun.clone()
        },
        Err(error) => {
            tracing::warn!(run = id, kind = kind.as_str(), "data run {id} failed: {error}");
            DataRun {
                finished_at,
                duration_ms: duration,
                outcome: RunOutcome::Failure,
                error: Some(error),
                ..begun.clone()
            }
        }
    };
    metrics::counter!("sealtrail_data_runs_total", "kind" => kind.as_str(), "outcome" => run.outcome.as_str())
        .increment(1);
    if let Err(e) = app.meta.finish_data_run(id, &run) {
        tracing::error!(run = id, "recording the end of data run {id}: {e}");
        return;
    }
    if let Err(p) = app.drain_outbox() {
        tracing::warn!(run = id, "system outbox: {}", p.detail);
    }
}

fn elapsed_ms(start: &str, end: &str) -> u64 {
    match (start.parse::<jiff::Timestamp>(), end.parse::<jiff::Timestamp>()) {
        (Ok(s), Ok(e)) => u64::try_from(e.as_millisecond() - s.as_millisecond()).unwrap_or(0),
        _ => 0,
    }
}

struct Ended {
    inputs: Vec<RunInput>,
    summary: Value,
    outcome: RunOutcome,
    quality_score: Option<f64>,
}

/// A run admitted and stored, ready to execute.
struct Job {
    id: i64,
    dir: PathBuf,
    kind: RunKind,
    plan: Plan,
    inputs: Vec<Input>,
    record: DataRun,
    watch: Arc<Watch>,
}

impl Job {
    fn run(self, app: &App) {
        let result = self.execute().map_err(|e| self.shown(&e.to_string()));
        finish(app, self.id, &self.record, result, self.kind);
        app.data_runs.pool.prune();
    }

    /// `text` with the paths of uploads replaced by the uploaded names.
    fn shown(&self, text: &str) -> String {
        let mut out = text.to_string();
        for input in &self.inputs {
            if let Some(name) = &input.upload {
                out = out.replace(&input.address, name);
            }
        }
        out
    }

    fn shown_value(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.shown(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.shown_value(v)).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, self.shown_value(v))).collect()),
            other => other,
        }
    }

    fn recorded(&self, inputs: Vec<JobInput>) -> Vec<RunInput> {
        inputs
            .into_iter()
            .zip(&self.inputs)
            .map(|(j, i)| RunInput {
                address: i.upload.clone().unwrap_or(j.address),
                sha256: j.sha256,
                bytes: j.bytes,
            })
            .collect()
    }

    fn execute(&self) -> Result<Ended, DataError> {
        let temp = run_dir::temp_dir(&self.dir)?;
        let open = OpenOptions::default();
        let addresses: Vec<String> = self.inputs.iter().map(|i| i.address.clone()).collect();
        let outcome = |differences: bool| {
            if differences {
                RunOutcome::Differences
            } else {
                RunOutcome::Success
            }
        };
        let ended = match &self.plan {
            Plan::Diff(options) => {
                let mut options = options.clone();
                options.temp_dir = Some(temp.clone());
                let mut sink = DiffFiles::create(&self.dir, &temp)?;
                let ran = job::run_diff(&addresses[0], &addresses[1], &open, &options, &mut sink, &self.watch)?;
                sink.finish(&ran.summary)?;
                let summary =
                    serde_json::to_value(&ran.summary).map_err(|e| DataError::new("summary", e.to_string()))?;
                Ended {
                    summary: self.shown_value(summary),
                    outcome: outcome(ran.differences),
                    quality_score: ran.quality_score,
                    inputs: self.recorded(ran.inputs),
                }
            }
            Plan::Keys(options) => {
                let ran = job::run_keys(&addresses, &open, options, &self.watch)?;
                Ended {
                    summary: self.shown_value(ran.summary.to_json()),
                    outcome: outcome(ran.differences),
                    quality_score: ran.quality_score,
                    inputs: self.recorded(ran.inputs),
                }
            }
            Plan::Validate(rules) => {
                let path = self.dir.join(VIOLATIONS_FILE);
                let file = File::create(&path).map_err(|e| DataError::io(VIOLATIONS_FILE, &e))?;
                let mut out = BufWriter::new(file);
                let mut sink = |v: &Violation| -> Result<(), DataError> {
                    serde_json::to_writer(&mut out, v).map_err(|e| DataError::new(VIOLATIONS_FILE, e.to_string()))?;
                    out.write_all(b"\n").map_err(|e| DataError::io(VIOLATIONS_FILE, &e))
                };
                let ran = job::run_validate(&addresses[0], &open, rules, &mut sink, &self.watch)?;
                out.flush().map_err(|e| DataError::io(VIOLATIONS_FILE, &e))?;
                let summary =
                    serde_json::to_value(&ran.summary).map_err(|e| DataError::new("summary", e.to_string()))?;
                Ended {
                    summary: self.shown_value(summary),
                    outcome: outcome(ran.differences),
                    quality_score: ran.quality_score,
                    inputs: self.recorded(ran.inputs),
                }
            }
        };
        let _ = std::fs::remove_dir_all(&temp);
        Ok(ended)
    }
}

/// Which runs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `diff`, `keys` or `validate`.
    pub kind: Option<String>,
    /// A recurring comparison's name.
    pub name: Option<String>,
    /// Most runs (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only runs with a smaller id: the last id of the previous page.
    pub before: Option<i64>,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<DataRunView>,
    /// `before` of the next page; null on the last.
    pub next_before: Option<i64>,
}

/// Data runs, newest first.
#[utoipa::path(
    get, path = "/api/v1/data/runs", tag = "data",
    params(ListParams),
    responses(
        (status = 200, body = RunList),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_runs(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    Params(params): Params<ListParams>,
) -> ApiResult<Json<RunList>> {
    blocking(move || runs_page(&app, &caller, params).map(Json)).await
}

/// A page of data runs, newest first, if `caller` may see them. Blocking.
/// The dashboard's run list shows the same.
pub(crate) fn runs_page(app: &App, caller: &Caller, params: ListParams) -> Result<RunList, Problem> {
    may_see(caller)?;
    let kind = match params.kind.as_deref() {
        None => None,
        Some(k) => Some(RunKind::from_name(k).ok_or_else(|| {
            Problem::bad_request("invalid-query", format!("kind: {k:?} is not diff, keys or validate"))
        })?),
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIST);
    if limit == 0 || limit > sealtrail_meta::MAX_RUN_LIST {
        return Err(Problem::bad_request(
            "invalid-query",
            format!("limit: 1 to {}", sealtrail_meta::MAX_RUN_LIST),
        ));
    }
    let runs = app
        .meta
        .list_data_runs(&DataRunFilter {
            kind,
            name: params.name,
            limit,
            before: params.before,
        })
        .map_err(Problem::internal)?;
    let next_before = (runs.len() == limit).then(|| runs.last().map(|r| r.id)).flatten();
    let runs = runs
        .into_iter()
        .map(|r| {
            let live = app.data_runs.state(r.id);
            DataRunView::of(r, live)
        })
        .collect();
    Ok(RunList { runs, next_before })
}

/// Data run `id`, if `caller` may see it. Blocking.
pub(crate) fn run_view(app: &App, caller: &Caller, id: i64) -> Result<DataRunView, Problem> {
    may_see(caller)?;
    let run = stored(app, id)?;
    let live = app.data_runs.state(id);
    Ok(DataRunView::of(run, live))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    /// The run's id.
    pub id: i64,
}

fn stored(app: &App, id: i64) -> Result<StoredDataRun, Problem> {
    app.meta
        .data_run(id)
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::not_found(format!("no data run {id}")))
}

/// One data run: its state, progress while it runs, and once finished its
/// outcome and summary.
#[utoipa::path(
    get, path = "/api/v1/data/runs/{id}", tag = "data",
    params(RunPath),
    responses(
        (status = 200, body = DataRunView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_run(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(RunPath { id }): PathArgs<RunPath>,
) -> ApiResult<Json<DataRunView>> {
    blocking(move || run_view(&app, &caller, id).map(Json)).await
}

/// A page of changes or violations.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesParams {
    /// Most items (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// A diff's changes of this kind: `added`, `removed`, `changed` or
    /// `duplicate`.
    pub kind: Option<String>,
    /// A diff's changed rows where this column changed; a validation's
    /// violations in this column.
    pub column: Option<String>,
    /// A validation's violations of this rule (`required`, `type`, …).
    pub rule: Option<String>,
}

/// A page of a diff's changes (docs/data.md, "JSON Lines") or of a
/// validation's violations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangePage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// `after` of the next page; null when the file has no more.
    pub next: Option<String>,
}

/// The run's finished results directory, or why there is none.
fn results(app: &App, run: &StoredDataRun) -> Result<PathBuf, Problem> {
    if run.open || app.data_runs.state(run.id).is_some() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "run-not-finished",
            format!("data run {} has not finished; its state says how far it got", run.id),
        ));
    }
    if run.run.outcome == RunOutcome::Failure {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "run-failed",
            format!(
                "data run {} failed and has no results: {}",
                run.id,
                run.run.error.as_deref().unwrap_or("")
            ),
        ));
    }
    let dir = app.data_runs.run_dir(run.id);
    if !dir.exists() {
        return Err(Problem::new(
            StatusCode::GONE,
            "run-files-deleted",
            format!(
                "the files of data run {} were deleted to keep the newest {} (data.keep_runs); its summary remains",
                run.id, app.config.data.keep_runs
            ),
        ));
    }
    Ok(dir)
}

/// A diff's changes, or a validation's violations, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/data/runs/{id}/changes", tag = "data",
    params(RunPath, ChangesParams),
    responses(
        (status = 200, body = ChangePage),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_changes(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(RunPath { id }): PathArgs<RunPath>,
    Params(params): Params<ChangesParams>,
) -> ApiResult<Json<ChangePage>> {
    may_see(&caller)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::bad_request("invalid-query", format!("limit: 1 to {MAX_PAGE}")));
    }
    let after: u64 = match params.after.as_deref() {
        None => 0,
        Some(a) => a
            .parse()
            .map_err(|_| Problem::bad_request("invalid-query", "after: the next of a previous page"))?,
    };
    if let Some(k) = params.kind.as_deref() {
        if !["added", "removed", "changed", "duplicate"].contains(&k) {
            return Err(Problem::bad_request(
                "invalid-query",
                format!("kind: {k:?} is not added, removed, changed or duplicate"),
            ));
        }
    }
    blocking(move || {
        let run = stored(&app, id)?;
        let file = match run.run.kind {
            RunKind::Diff => CHANGES_FILE,
            RunKind::Validate => VIOLATIONS_FILE,
            RunKind::Keys => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "no-changes",
                    format!("data run {id} is a key discovery: its summary is its result"),
                ))
            }
        };
        if run.run.kind == RunKind::Diff && params.rule.is_some() {
            return Err(Problem::bad_request(
                "invalid-query",
                "rule: only for a validation's violations",
            ));
        }
        if run.run.kind == RunKind::Validate && params.kind.is_some() {
            return Err(Problem::bad_request("invalid-query", "kind: only for a diff's changes"));
        }
        let path = results(&app, &run)?.join(file);
        let keep = |v: &Value| -> bool {
            if v.get("summary").is_some() && v.as_object().is_some_and(|o| o.len() == 1) {
                return false;
            }
            if let Some(k) = &params.kind {
                if v["kind"] != json!(k) {
                    return false;
                }
            }
            if let Some(c) = &params.column {
                let hit = match run.run.kind {
                    RunKind::Diff => v["fields"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f["column"] == json!(c))),
                    _ => v["column"] == json!(c),
                };
                if !hit {
                    return false;
                }
            }
            if let Some(r) = &params.rule {
                if v["rule"] != json!(r) {
                    return false;
                }
            }
            true
        };
        page(&path, after, limit, keep).map(Json)
    })
    .await
}

/// Up to `limit` lines of `path` from byte `after` that `keep` keeps.
fn page(path: &Path, after: u64, limit: usize, keep: impl Fn(&Value) -> bool) -> Result<ChangePage, Problem> {
    let mut file = File::open(path).map_err(|e| Problem::internal(format!("{}: {e}", path.display())))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if after > len {
        return Err(Problem::bad_request(
            "invalid-query",
            "after: beyond the end of the results",
        ));
    }
    file.seek(SeekFrom::Start(after))
        .map_err(|e| Problem::internal(format!("{}: {e}", path.display())))?;
    let mut reader = BufReader::new(file);
    let mut items = Vec::new();
    let mut at = after;
    let mut line = String::new();
    while items.len() < limit && at - after < MAX_PAGE_SCAN_BYTES {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Problem::internal(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        at += n as u64;
        let value: Value =
            serde_json::from_str(&line).map_err(|e| Problem::internal(format!("{}: {e}", path.display())))?;
        if keep(&value) {
            items.push(value);
        }
    }
    Ok(ChangePage {
        items,
        next: (at < len).then(|| at.to_string()),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `xlsx`, `csv` or `json` for a diff; `json` for the others.
    pub format: Option<String>,
}

/// A report of a finished run: a diff as an Excel workbook, CSV or one
/// JSON document (docs/data.md, "Output"); a key discovery or validation
/// as JSON (the summary, with a validation's violations).
#[utoipa::path(
    get, path = "/api/v1/data/runs/{id}/report", tag = "data",
    params(RunPath, ReportParams),
    responses(
        (status = 200, description = "The report", content(
            ("application/json"),
            ("text/csv"),
            ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_report(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(RunPath { id }): PathArgs<RunPath>,
    Params(params): Params<ReportParams>,
) -> ApiResult<Response> {
    may_see(&caller)?;
    let format = params.format.as_deref().unwrap_or("json").to_ascii_lowercase();
    let path = {
        let app = app.clone();
        blocking(move || {
            let run = stored(&app, id)?;
            let allowed: &[&str] = match run.run.kind {
                RunKind::Diff => &["xlsx", "csv", "json"],
                _ => &["json"],
            };
            if !allowed.contains(&format.as_str()) {
                return Err(Problem::bad_request(
                    "invalid-query",
                    format!(
                        "format: {format:?}; a {} run's report is {}",
                        run.run.kind.as_str(),
                        allowed.join(", ")
                    ),
                ));
            }
            let dir = results(&app, &run)?;
            let path = dir.join(format!("report.{format}"));
            if !path.exists() {
                // Two requests may make the same report at once: each its own.
                let n = INCOMING.fetch_add(1, Ordering::Relaxed);
                let temp = dir.join(format!("report.{format}.partial-{n}"));
                make_report(&run, &dir, &format, &temp).map_err(Problem::internal)?;
                std::fs::rename(&temp, &path).map_err(|e| Problem::internal(format!("{}: {e}", path.display())))?;
            }
            Ok((path, format))
        })
        .await?
    };
    let (path, format) = path;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Problem::internal(format!("{}: {e}", path.display())))?;
    let content_type = match format.as_str() {
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "csv" => "text/csv; charset=utf-8",
        _ => "application/json",
    };
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"data-run-{id}.{format}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Write run `run`'s report in `format` to `out`, from its stored results.
fn make_report(run: &StoredDataRun, dir: &Path, format: &str, out: &Path) -> Result<(), String> {
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    match run.run.kind {
        RunKind::Diff => {
            let format: Format = format
                .parse()
                .map_err(|e: sealtrail_export::UnknownFormat| e.to_string())?;
            let layout: Layout = serde_json::from_slice(
                &std::fs::read(dir.join(LAYOUT_FILE)).map_err(|e| format!("{LAYOUT_FILE}: {e}"))?,
            )
            .map_err(|e| format!("{LAYOUT_FILE}: {e}"))?;
            let temp = dir.join("tmp-report");
            std::fs::create_dir_all(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
            let mut writer = output::writer(format, Box::new(file), Some(&temp)).map_err(|e| e.to_string())?;
            writer.as_sink().begin(&layout).map_err(|e| e.to_string())?;
            let changes = File::open(dir.join(CHANGES_FILE)).map_err(|e| format!("{CHANGES_FILE}: {e}"))?;
            let mut summary = None;
            for line in BufReader::new(changes).lines() {
                let line = line.map_err(|e| format!("{CHANGES_FILE}: {e}"))?;
                let bad = |e: serde_json::Error| format!("{CHANGES_FILE}: {e}");
                let v: Value = serde_json::from_str(&line).map_err(bad)?;
                if let Some(s) = v.get("summary") {
                    summary = Some(DiffSummary::deserialize(s).map_err(bad)?);
                } else {
                    let change = Change::deserialize(&v).map_err(bad)?;
                    writer.as_sink().change(&change).map_err(|e| e.to_string())?;
                }
            }
            // The stored summary names the uploads as the client did.
            let stored = DiffSummary::deserialize(&run.run.summary).map_err(|e| format!("the run's summary: {e}"))?;
            let mut summary = summary.unwrap_or_else(|| stored.clone());
            summary.left = stored.left;
            summary.right = stored.right;
            writer.finish(&summary).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(&temp);
            Ok(())
        }
        RunKind::Keys => {
            let mut out = BufWriter::new(file);
            serde_json::to_writer(&mut out, &json!({"run": run.id, "summary": run.run.summary}))
                .map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())
        }
        RunKind::Validate => {
            // {"run": …, "summary": …, "violations": [ … ]}, streamed.
            let mut out = BufWriter::new(file);
            let head = json!({"run": run.id, "summary": run.run.summary}).to_string();
            let head = head.strip_suffix('}').unwrap_or(&head);
            let io = |e: std::io::Error| e.to_string();
            write!(out, "{head},\"violations\":[").map_err(io)?;
            let violations = File::open(dir.join(VIOLATIONS_FILE)).map_err(|e| format!("{VIOLATIONS_FILE}: {e}"))?;
            for (i, line) in BufReader::new(violations).lines().enumerate() {
                let line = line.map_err(io)?;
                if i > 0 {
                    out.write_all(b",").map_err(io)?;
                }
                out.write_all(line.as_bytes()).map_err(io)?;
            }
            out.write_all(b"]}").map_err(io)?;
            out.flush().map_err(io)
        }
    }
}
