//! `data-diff` and `data-keys`: a named reconciliation on a schedule
//! (`sealtrail_data::job`, the path `sealtrail data diff` / `data keys`
//! and `POST /api/v1/data/runs` take). Each run is recorded in the data-run
//! history of `meta.db` with its `data.run.completed` / `data.run.failed`
//! event, under the job's name, with actor `job:<name>`; the job run's
//! summary names the data run's id and its counts.
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
use std::time::Instant;

use sealtrail_data::job::{self, JobInput, Ran, Watch};
use sealtrail_data::keys::{KeyOptions, NullEquality};
use sealtrail_data::source::OpenOptions;
use sealtrail_data::{Change, ChangeSink, DataError, DiffOptions, DiffSummary};
use sealtrail_meta::{now_text, DataRun, RunInput, RunKind, RunOutcome};
use serde_json::{json, Value};

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
}

impl Default for DataSettings {
    fn default() -> DataSettings {
        DataSettings {
            sources: None,
            memory_budget: 256 << 20,
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
/// diff; keeps nothing else (the counts are in the summary).
struct Stop<'c, 'a> {
    ctx: &'c RunContext<'a>,
}

impl ChangeSink for Stop<'_, '_> {
    fn change(&mut self, _: &Change) -> Result<(), DataError> {
        if self.ctx.cancelled() {
            return Err(DataError::new("job", "stopped at its timeout"));
        }
        Ok(())
    }
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

/// Records the data run `work` does, as the CLI does: its inputs,
/// parameters and outcome, with its system-log event, under the job's
/// name. Returns the data run's id and how the work went.
fn record(
    ctx: &RunContext<'_>,
    kind: RunKind,
    inputs: &[Input],
    parameters: Value,
    work: impl FnOnce() -> Result<(Done, String), DataError>,
) -> Result<(i64, Outcome), String> {
    let started_at = now_text();
    let started = Instant::now();
    let result = work();
    let finished_at = now_text();
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
            inputs
                .iter()
                .map(|i| RunInput {
                    address: i.address.clone(),
                    sha256: None,
                    bytes: None,
                })
                .collect(),
            json!({}),
            RunOutcome::Failure,
            Some(e.to_string()),
            None,
            Err(e.to_string()),
        ),
    };
    let run = DataRun {
        kind,
        name: Some(ctx.job.name.clone()),
        inputs: recorded,
        parameters,
        summary,
        started_at,
        finished_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        outcome,
        error,
        quality_score,
        actor: json!({"id": format!("job:{}", ctx.job.name), "type": "service"}),
    };
    metrics::counter!("sealtrail_data_runs_total", "kind" => kind.as_str(), "outcome" => outcome.as_str()).increment(1);
    let id = ctx
        .env
        .meta
        .record_data_run(&run)
        .map_err(|e| format!("recording the data run: {e}"))?;
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
        let (id, told) = record(ctx, RunKind::Diff, &inputs, parameters, || {
            let temp = tempfile::tempdir().map_err(|e| DataError::io("a temporary directory", &e))?;
            let options = DiffOptions {
                temp_dir: Some(temp.path().to_path_buf()),
                ..options.clone()
            };
            let mut sink = Stop { ctx };
            let ran = job::run_diff(
                &inputs[0].address,
                &inputs[1].address,
                &open,
                &options,
                &mut sink,
                &Watch::new(),
            )?;
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
        let (id, told) = record(ctx, RunKind::Keys, &inputs, parameters, || {
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
