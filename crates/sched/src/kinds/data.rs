//! `data-diff` and `data-keys`: a named reconciliation on a schedule
//! (`sealtrail_data::job`, the path `sealtrail data diff` / `data keys`
//! and `POST /api/v1/data/runs` take). Each run is recorded in the data-run
//! history of `meta.db` with its `data.run.completed` / `data.run.failed`
//! event, under the job's name, with actor `job:<name>`; the job run's
//! summary names the data run's id and its counts.
//!
//! In a server ([`DataSettings::runs`]) a run is one of the server's data
//! runs like those of the data API: it waits its turn for a slot of
//! `data.max_running`, is stored from its start, and keeps its results in
//! its run directory (`<data_dir>/data-runs/<id>/`, as
//! [`sealtrail_data::run_dir`] lays it out), where the API and the
//! dashboard read a diff's changes page by page; the oldest directories
//! beyond `data.keep_runs` are deleted.
//!
//! Inputs are absolute file paths or names of the server's
//! `[data.sources]`; a database is reached only through a named source,
//! so its address and password stay in the configuration.
//!
//! Fields of `data-diff`: `left`, `right` (required), `key` (required,
//! column names), `ignore`, `rename` (old → new), `ignore_case`,
//! `ignore_whitespace`, `tolerance`; of `data-keys`: `inputs` (one or
//! two), `max_columns` (default 4), `near`, `nulls` (`equal` or
//! `distinct`). Both: `delimiter`, `quote`, `header` (default true) and
//! `fail_on_differences` (default false: differences, or no key, are a
//! successful run whose summary says so).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_data::diff::Layout;
use sealtrail_data::job::{self, JobInput, Ran, Watch};
use sealtrail_data::keys::{KeyOptions, NullEquality};
use sealtrail_data::run_dir::{self, DiffFiles};
use sealtrail_data::source::OpenOptions;
use sealtrail_data::{Change, ChangeSink, DataError, DiffOptions, DiffSummary};
use sealtrail_meta::{now_text, DataRun, RunInput, RunKind, RunOutcome};
use serde_json::{json, Value};

use crate::data_runs::{DataRunPool, DataSlot};
use crate::kind::{JobKind, Params, RunContext};

/// Key discovery's column limit unless the job sets one, as the API's:
/// without a limit the keys of a wide table can be exponentially many.
pub const DEFAULT_KEY_COLUMNS: u64 = 4;
/// Most columns `max_columns` may allow.
pub const MAX_KEY_COLUMNS: u64 = 64;
/// Most column names one list field may hold.
const MAX_COLUMN_NAMES: usize = 1024;
/// Most bytes of a source name, as `[data.sources]` allows.
const MAX_SOURCE_NAME: usize = 128;
/// Keys named in a keys run's summary line; the data run holds them all.
const KEYS_SHOWN: usize = 5;

/// What the data job types take from the server that runs them.
#[derive(Debug, Clone)]
pub struct DataSettings {
    /// The server's `[data.sources]`, name → address. `None` where they
    /// are not known (the command line checking a definition): names are
    /// then checked when a run starts.
    pub sources: Option<BTreeMap<String, String>>,
    /// Bytes a run may hold (`data.memory_budget`).
    pub memory_budget: usize,
    /// The server's runs directory, `data.keep_runs` and the
    /// `data.max_running` slots its data API shares. With it a run takes
    /// a slot, is stored from its start and keeps its results in its run
    /// directory as an API run does; without it (no server) a run is
    /// stored when it ends, keeping its counts only.
    pub runs: Option<Arc<DataRunPool>>,
}

impl Default for DataSettings {
    fn default() -> DataSettings {
        DataSettings {
            sources: None,
            memory_budget: 256 << 20,
            runs: None,
        }
    }
}

/// The `data-diff` job type.
pub struct DataDiff(pub DataSettings);

/// The `data-keys` job type.
pub struct DataKeys(pub DataSettings);

/// One input as the job names it.
struct Input {
    /// What the data crate opens: a file path or a configured address.
    address: String,
    /// The source's name, for a configured one.
    source: Option<String>,
}

impl DataSettings {
    /// Input `field` given as `value`: an absolute file path or the name
    /// of a configured source.
    fn input(&self, field: &str, value: &Value) -> Result<Input, String> {
        let Value::String(text) = value else {
            return Err(format!(
                "{field}: expected an absolute file path or the name of a source of [data.sources], found {value}"
            ));
        };
        if text.contains("://") {
            return Err(format!(
                "{field}: a database is named through [data.sources] (its address stays in the server's configuration), not given here"
            ));
        }
        if Path::new(text).is_absolute() {
            return Ok(Input {
                address: text.clone(),
                source: None,
            });
        }
        if text.is_empty() || text.len() > MAX_SOURCE_NAME || text.chars().any(char::is_control) {
            return Err(format!(
                "{field}: {text:?} is neither an absolute file path nor a source name (1 to {MAX_SOURCE_NAME} bytes)"
            ));
        }
        match &self.sources {
            None => Ok(Input {
                address: String::new(),
                source: Some(text.clone()),
            }),
            Some(sources) => match sources.get(text.as_str()) {
                Some(address) => Ok(Input {
                    address: address.clone(),
                    source: Some(text.clone()),
                }),
                None => Err(format!(
                    "{field}: {text:?} is not an absolute file path, and the server's [data.sources] has no source of that name"
                )),
            },
        }
    }

    /// The inputs of a run, resolved now (the configuration may have
    /// changed since the job was stored).
    fn resolve(&self, inputs: &[(String, &Value)]) -> Result<Vec<Input>, String> {
        let known = DataSettings {
            sources: Some(self.sources.clone().unwrap_or_default()),
            memory_budget: self.memory_budget,
            runs: None,
        };
        inputs.iter().map(|(field, v)| known.input(field, v)).collect()
    }
}

fn flag(params: &Params, field: &str, default: bool) -> Result<bool, String> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("{field}: expected true or false, found {other}")),
    }
}

/// A list of column names; `required` refuses it empty or absent.
fn columns(params: &Params, field: &str, required: bool) -> Result<Vec<String>, String> {
    let list = match params.get(field) {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        None | Some(Value::Null) => {
            return Err(format!("{field}: missing (the key columns, e.g. [\"id\"])"));
        }
        Some(Value::Array(list)) => list,
        Some(other) => return Err(format!("{field}: expected a list of column names, found {other}")),
    };
    if required && list.is_empty() {
        return Err(format!("{field}: name at least one column"));
    }
    if list.len() > MAX_COLUMN_NAMES {
        return Err(format!(
            "{field}: at most {MAX_COLUMN_NAMES} columns, not {}",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            other => Err(format!("{field}[{i}]: expected a column name, found {other}")),
        })
        .collect()
}

/// One ASCII character (`"\t"` or `"tab"` for a tab).
fn byte(params: &Params, field: &str) -> Result<Option<u8>, String> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "tab" || s == "\t" => Ok(Some(b'\t')),
        Some(Value::String(s)) if s.len() == 1 && s.is_ascii() => Ok(Some(s.as_bytes()[0])),
        Some(other) => Err(format!(
            "{field}: expected one ASCII character (\"tab\" for a tab), found {other}"
        )),
    }
}

fn open_options(params: &Params) -> Result<OpenOptions, String> {
    Ok(OpenOptions {
        delimiter: byte(params, "delimiter")?,
        quote: byte(params, "quote")?,
        header: flag(params, "header", true)?,
        ..OpenOptions::default()
    })
}

fn diff_options(params: &Params, memory_budget: usize) -> Result<DiffOptions, String> {
    let rename = match params.get("rename") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(old, new)| match new {
                Value::String(n) if !n.is_empty() && !old.is_empty() => Ok((old.clone(), n.clone())),
                other => Err(format!("rename.{old}: expected the column's new name, found {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "rename: expected an object of old name → new name, found {other}"
            ))
        }
    };
    let tolerance = match params.get("tolerance") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Some(t),
            _ => return Err(format!("tolerance: expected a number of at least 0, found {n}")),
        },
        Some(other) => return Err(format!("tolerance: expected a number of at least 0, found {other}")),
    };
    Ok(DiffOptions {
        key: columns(params, "key", true)?,
        ignore: columns(params, "ignore", false)?,
        rename,
        case_insensitive: columns(params, "ignore_case", false)?,
        whitespace_insensitive: columns(params, "ignore_whitespace", false)?,
        numeric_tolerance: tolerance,
        memory_budget,
        temp_dir: None,
    })
}

fn key_options(params: &Params, memory_budget: usize) -> Result<KeyOptions, String> {
    let max_columns = match params.get("max_columns") {
        None | Some(Value::Null) => DEFAULT_KEY_COLUMNS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_KEY_COLUMNS).contains(&n) => n,
            _ => {
                return Err(format!(
                    "max_columns: expected a whole number from 1 to {MAX_KEY_COLUMNS}, found {v}"
                ))
            }
        },
    };
    let nulls = match params.get("nulls") {
        None | Some(Value::Null) => NullEquality::Equal,
        Some(Value::String(s)) if s == "equal" => NullEquality::Equal,
        Some(Value::String(s)) if s == "distinct" => NullEquality::Distinct,
        Some(other) => return Err(format!("nulls: expected \"equal\" or \"distinct\", found {other}")),
    };
    Ok(KeyOptions {
        max_columns: Some(max_columns as usize),
        nulls,
        memory_budget,
        near: flag(params, "near", false)?,
        ..KeyOptions::default()
    })
}

/// The inputs of a keys job, with the field each came from.
fn key_inputs(params: &Params) -> Result<Vec<(String, &Value)>, String> {
    match params.get("inputs") {
        Some(Value::Array(list)) if (1..=2).contains(&list.len()) => Ok(list
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("inputs[{i}]"), v))
            .collect()),
        Some(Value::Array(list)) => Err(format!("inputs: one or two tables, not {}", list.len())),
        Some(other) => Err(format!("inputs: expected a list of one or two tables, found {other}")),
        None => Err("inputs: missing (one table, or two to find the keys they share)".into()),
    }
}

fn diff_inputs(params: &Params) -> Result<Vec<(String, &Value)>, String> {
    ["left", "right"]
        .iter()
        .map(|f| match params.get(*f) {
            Some(v) => Ok((f.to_string(), v)),
            None => Err(format!("{f}: missing (this job type needs it)")),
        })
        .collect()
}

/// Refuses changes once the run's timeout has passed, which stops the
/// diff; keeps them in the run's directory when it has one, and nothing
/// otherwise (the counts are in the summary).
struct Stop<'c, 'a> {
    ctx: &'c RunContext<'a>,
    files: Option<DiffFiles>,
}

impl ChangeSink for Stop<'_, '_> {
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        match &mut self.files {
            Some(files) => files.begin(layout),
            None => Ok(()),
        }
    }

    fn change(&mut self, change: &Change) -> Result<(), DataError> {
        if self.ctx.cancelled() {
            return Err(DataError::new("job", "stopped at its timeout"));
        }
        match &mut self.files {
            Some(files) => files.change(change),
            None => Ok(()),
        }
    }
}

/// The share of a job's timeout its run waits for a slot of
/// `data.max_running`, in tenths: giving up before the timeout lets the
/// run's error say why it did not run.
const SLOT_WAIT_TENTHS: u32 = 9;

/// A slot of `data.max_running`, waited for in turn with the data API's
/// runs for at most nine tenths of the job's timeout, or why there is none.
fn take_slot(ctx: &RunContext<'_>, pool: &DataRunPool) -> Result<DataSlot, String> {
    let started = Instant::now();
    let limit = Duration::from_secs(ctx.job.timeout_seconds) * SLOT_WAIT_TENTHS / 10;
    pool.slot_blocking(|| ctx.cancelled() || started.elapsed() >= limit)
        .ok_or_else(|| {
            format!(
                "no data run started: data.max_running ({}) data runs were running for the {} ms this run waited for a slot (nine tenths of its timeout_seconds, {})",
                pool.max_running(),
                started.elapsed().as_millis(),
                ctx.job.timeout_seconds
            )
        })
}

/// How a data run went, ready to be recorded.
struct Done {
    inputs: Vec<JobInput>,
    summary: Value,
    differences: bool,
    quality_score: Option<f64>,
}

impl<S> From<(Ran<S>, Value)> for Done {
    fn from((ran, summary): (Ran<S>, Value)) -> Done {
        Done {
            inputs: ran.inputs,
            summary,
            differences: ran.differences,
            quality_score: ran.quality_score,
        }
    }
}

/// How a recorded data run went: whether it found differences and its
/// summary, or why it failed.
type Outcome = Result<(bool, String), String>;

/// The inputs as the run history stores them before they are read.
fn unread(inputs: &[Input]) -> Vec<RunInput> {
    inputs
        .iter()
        .map(|i| RunInput {
            address: i.address.clone(),
            sha256: None,
            bytes: None,
        })
        .collect()
}

/// The record of run `begun` once its work ended with `result` after
/// `took`, and how it went.
fn ended(
    begun: DataRun,
    inputs: &[Input],
    result: Result<(Done, String), DataError>,
    took: Duration,
) -> (DataRun, Outcome) {
    let (recorded, summary, outcome, error, quality_score, told) = match result {
        Ok((done, told)) => (
            done.inputs
                .into_iter()
                .map(|i| RunInput {
                    address: i.address,
                    sha256: i.sha256,
                    bytes: i.bytes,
                })
                .collect(),
            done.summary,
            if done.differences {
                RunOutcome::Differences
            } else {
                RunOutcome::Success
            },
            None,
            done.quality_score.filter(|q| (0.0..=1.0).contains(q)),
            Ok((done.differences, told)),
        ),
        Err(e) => (
            unread(inputs),
            json!({}),
            RunOutcome::Failure,
            Some(e.to_string()),
            None,
            Err(e.to_string()),
        ),
    };
    let run = DataRun {
        inputs: recorded,
        summary,
        finished_at: now_text(),
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        outcome,
        error,
        quality_score,
        ..begun
    };
    metrics::counter!("sealtrail_data_runs_total", "kind" => run.kind.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    (run, told)
}

/// Records the data run `work` does, as the CLI and the API do: its
/// inputs, parameters and outcome, with its system-log event, under the
/// job's name. With the server's runs (`settings.runs`) it first waits
/// for a slot of `data.max_running`, then stores the run's start, makes
/// its directory (which `work` is given, to keep its results in), stores
/// how it ended and prunes the oldest directories beyond `data.keep_runs`,
/// in the order the data API does; without, it stores the run when it
/// ends and `work` keeps nothing. Returns the data run's id and how the
/// work went.
fn record(
    ctx: &RunContext<'_>,
    settings: &DataSettings,
    kind: RunKind,
    inputs: &[Input],
    parameters: Value,
    work: impl FnOnce(Option<&Path>) -> Result<(Done, String), DataError>,
) -> Result<(i64, Outcome), String> {
    let slot = match &settings.runs {
        Some(pool) => Some((pool, take_slot(ctx, pool)?)),
        None => None,
    };
    let begun = DataRun {
        kind,
        name: Some(ctx.job.name.clone()),
        inputs: unread(inputs),
        parameters,
        summary: json!({}),
        started_at: now_text(),
        finished_at: String::new(),
        duration_ms: 0,
        outcome: RunOutcome::Failure,
        error: None,
        quality_score: None,
        actor: json!({"id": format!("job:{}", ctx.job.name), "type": "service"}),
    };
    let started = Instant::now();
    let Some((pool, _slot)) = slot else {
        let result = work(None);
        let (run, told) = ended(begun, inputs, result, started.elapsed());
        let id = ctx
            .env
            .meta
            .record_data_run(&run)
            .map_err(|e| format!("recording the data run: {e}"))?;
        return Ok((id, told));
    };
    let id = ctx
        .env
        .meta
        .begin_data_run(&begun)
        .map_err(|e| format!("recording the data run's start: {e}"))?;
    let busy = pool.hold(id);
    let dir = pool.run_dir(id);
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => work(Some(&dir)),
        Err(e) => Err(DataError::io("the run's directory", &e)),
    };
    let _ = std::fs::remove_dir_all(dir.join(run_dir::TEMP_DIR));
    let (run, told) = ended(begun, inputs, result, started.elapsed());
    let finished = ctx.env.meta.finish_data_run(id, &run);
    drop(busy);
    pool.prune();
    finished.map_err(|e| format!("recording the end of data run {id}: {e}"))?;
    Ok((id, told))
}

/// The job run's result for data run `id`: differences fail it only when
/// the job asks so.
fn verdict(params: &Params, id: i64, kind: &str, told: Result<(bool, String), String>) -> Result<String, String> {
    let strict = flag(params, "fail_on_differences", false)?;
    match told {
        Err(e) => Err(format!("data run {id} ({kind}) failed: {e}")),
        Ok((true, text)) if strict => Err(format!("data run {id} ({kind}): {text} (fail_on_differences)")),
        Ok((_, text)) => Ok(format!("data run {id} ({kind}): {text}")),
    }
}

fn shown(inputs: &[Input]) -> Vec<Value> {
    inputs
        .iter()
        .map(|i| match &i.source {
            Some(s) => json!({"source": s}),
            None => json!({"file": i.address}),
        })
        .collect()
}

/// The one line a diff's job run reports.
fn diff_line(s: &DiffSummary, differences: bool) -> String {
    let schema = &s.schema;
    let mut line = format!(
        "{}: {} added, {} removed, {} changed, {} unchanged; {} left rows, {} right rows; {} duplicate keys",
        if differences {
            "differences found"
        } else {
            "no differences"
        },
        s.added,
        s.removed,
        s.changed,
        s.unchanged,
        s.left_rows,
        s.right_rows,
        s.left_duplicate_keys + s.right_duplicate_keys,
    );
    if !schema.is_empty() {
        line.push_str(&format!(
            "; columns {} added, {} removed, {} renamed{}",
            schema.columns_added.len(),
            schema.columns_removed.len(),
            schema.columns_renamed.len(),
            if schema.columns_reordered { ", reordered" } else { "" }
        ));
    }
    line
}

fn keys_line(keys: &[Vec<String>], shared: bool, rows: u64) -> String {
    if keys.is_empty() {
        return format!("no {}key found; {rows} rows", if shared { "shared " } else { "" });
    }
    let mut list: Vec<String> = keys
        .iter()
        .take(KEYS_SHOWN)
        .map(|k| format!("[{}]", k.join(", ")))
        .collect();
    if keys.len() > KEYS_SHOWN {
        list.push("…".into());
    }
    format!(
        "{} {}key{} found: {}; {rows} rows",
        keys.len(),
        if shared { "shared " } else { "" },
        if keys.len() == 1 { "" } else { "s" },
        list.join(" ")
    )
}

impl JobKind for DataDiff {
    fn name(&self) -> &'static str {
        "data-diff"
    }

    fn fields(&self) -> &'static [&'static str] {
        &[
            "left",
            "right",
            "key",
            "ignore",
            "rename",
            "ignore_case",
            "ignore_whitespace",
            "tolerance",
            "delimiter",
            "quote",
            "header",
            "fail_on_differences",
        ]
    }

    fn check(&self, params: &Params) -> Result<(), String> {
        for (field, v) in diff_inputs(params)? {
            self.0.input(&field, v)?;
        }
        diff_options(params, self.0.memory_budget)?;
        open_options(params)?;
        flag(params, "fail_on_differences", false).map(|_| ())
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String> {
        let params = &ctx.job.params;
        let inputs = self.0.resolve(&diff_inputs(params)?)?;
        let options = diff_options(params, self.0.memory_budget)?;
        let open = open_options(params)?;
        let parameters = json!({
            "job": ctx.job.name,
            "inputs": shown(&inputs),
            "key": options.key, "ignore": options.ignore,
            "rename": options.rename.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
            "ignore_case": options.case_insensitive, "ignore_whitespace": options.whitespace_insensitive,
            "tolerance": options.numeric_tolerance, "memory": options.memory_budget,
        });
        let (id, told) = record(ctx, &self.0, RunKind::Diff, &inputs, parameters, |dir| {
            // Spill files go to the run's directory, as an API run's do.
            let (_temp, temp, files) = match dir {
                Some(dir) => {
                    let temp = run_dir::temp_dir(dir)?;
                    let files = DiffFiles::create(dir, &temp)?;
                    (None, temp, Some(files))
                }
                None => {
                    let temp = tempfile::tempdir().map_err(|e| DataError::io("a temporary directory", &e))?;
                    let path = temp.path().to_path_buf();
                    (Some(temp), path, None)
                }
            };
            let options = DiffOptions {
                temp_dir: Some(temp),
                ..options.clone()
            };
            let mut sink = Stop { ctx, files };
            let ran = job::run_diff(
                &inputs[0].address,
                &inputs[1].address,
                &open,
                &options,
                &mut sink,
                &Watch::new(),
            )?;
            if let Some(files) = sink.files {
                files.finish(&ran.summary)?;
            }
            let summary = serde_json::to_value(&ran.summary).map_err(|e| DataError::new("summary", e.to_string()))?;
            let line = diff_line(&ran.summary, ran.differences);
            Ok((Done::from((ran, summary)), line))
        })?;
        verdict(params, id, "diff", told)
    }
}

impl JobKind for DataKeys {
    fn name(&self) -> &'static str {
        "data-keys"
    }

    fn fields(&self) -> &'static [&'static str] {
        &[
            "inputs",
            "max_columns",
            "near",
            "nulls",
            "delimiter",
            "quote",
            "header",
            "fail_on_differences",
        ]
    }

    fn check(&self, params: &Params) -> Result<(), String> {
        for (field, v) in key_inputs(params)? {
            self.0.input(&field, v)?;
        }
        key_options(params, self.0.memory_budget)?;
        open_options(params)?;
        flag(params, "fail_on_differences", false).map(|_| ())
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String> {
        let params = &ctx.job.params;
        let inputs = self.0.resolve(&key_inputs(params)?)?;
        let options = key_options(params, self.0.memory_budget)?;
        let open = open_options(params)?;
        let parameters = json!({
            "job": ctx.job.name,
            "inputs": shown(&inputs),
            "max_columns": options.max_columns, "near": options.near, "nulls": options.nulls,
            "memory": options.memory_budget,
        });
        let addresses: Vec<String> = inputs.iter().map(|i| i.address.clone()).collect();
        // Every key is in the summary: the run's directory holds no file.
        let (id, told) = record(ctx, &self.0, RunKind::Keys, &inputs, parameters, |_| {
            let ran = job::run_keys(&addresses, &open, &options, &Watch::new())?;
            let found = &ran.summary;
            let rows = found.tables.iter().map(|t| t.rows).max().unwrap_or(0);
            let line = match &found.common {
                Some(common) => {
                    let keys: Vec<Vec<String>> = common.keys.iter().map(|k| k.columns.clone()).collect();
                    keys_line(&keys, true, rows)
                }
                None => keys_line(&found.tables[0].keys, false, rows),
            };
            let summary = found.to_json();
            Ok((Done::from((ran, summary)), line))
        })?;
        verdict(params, id, "keys", told)
    }
}
