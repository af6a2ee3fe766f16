//! A reconciliation run from its inputs' addresses to what a run history
//! records: the inputs opened and fingerprinted, the work done with
//! progress others can watch, and the outcome with its summary as JSON.
//! The CLI and the server both run data work through here, then record
//! the [`Ran`] where they keep runs.
//!
//! Fingerprints are taken before the rows are read, by a separate pass
//! over each file: a file changed while it is compared shows as a
//! fingerprint that does not match the file's final bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use crate::diff::{ChangeSink, DiffOptions, DiffSummary};
use crate::history::quality_score;
use crate::keys::{CommonKeys, KeyOptions, KeyReport};
use crate::source::{self, OpenOptions};
use crate::validate::{Rules, ValidationSummary, Violation};
use crate::{Change, ChangeKind, DataError, Row, Source};

/// One input of a run, as recorded: its address and, for a file, the
/// SHA-256 (hex) and size of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobInput {
    pub address: String,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
}

/// A run that ran to its end.
#[derive(Debug, Clone)]
pub struct Ran<S> {
    pub summary: S,
    pub inputs: Vec<JobInput>,
    /// Whether it found differences (a diff), violations (a validation),
    /// or no key at all (key discovery).
    pub differences: bool,
    /// 0 to 1 where the kind of run has one (see docs/data.md).
    pub quality_score: Option<f64>,
    pub duration_ms: u64,
}

/// How far a run has got, shared with whoever watches it: rows read and
/// bytes read of each input (in input order), and the inputs' sizes.
#[derive(Debug, Default)]
pub struct Watch {
    inputs: [InputProgress; 2],
}

#[derive(Debug, Default)]
struct InputProgress {
    rows: AtomicU64,
    read_bytes: AtomicU64,
    total_bytes: AtomicU64,
}

/// A snapshot of one input's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InputSnapshot {
    pub rows: u64,
    pub read_bytes: u64,
    /// 0 when unknown (a database query).
    pub total_bytes: u64,
}

impl Watch {
    pub fn new() -> Arc<Watch> {
        Arc::new(Watch::default())
    }

    /// Progress of input `i` (0 or 1).
    pub fn input(&self, i: usize) -> InputSnapshot {
        let p = &self.inputs[i.min(1)];
        InputSnapshot {
            rows: p.rows.load(Ordering::Relaxed),
            read_bytes: p.read_bytes.load(Ordering::Relaxed),
            total_bytes: p.total_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A source that reports its progress to a [`Watch`] every few thousand
/// rows, so watching costs the reader next to nothing.
struct Watched<'w> {
    inner: Box<dyn Source>,
    watch: &'w InputProgress,
    rows: u64,
}

impl Watched<'_> {
    fn publish(&self) {
        self.watch.rows.store(self.rows, Ordering::Relaxed);
        if let Some(p) = self.inner.progress() {
            self.watch.read_bytes.store(p.read_bytes, Ordering::Relaxed);
            self.watch
                .total_bytes
                .store(p.total_bytes.unwrap_or(0), Ordering::Relaxed);
        }
    }
}

impl Source for Watched<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn columns(&self) -> &[String] {
        self.inner.columns()
    }

    fn next_row(&mut self, row: &mut Row) -> Result<bool, DataError> {
        let more = self.inner.next_row(row)?;
        if more {
            self.rows += 1;
            if self.rows.is_multiple_of(4096) {
                self.publish();
            }
        } else {
            self.publish();
        }
        Ok(more)
    }

    fn progress(&self) -> Option<source::Progress> {
        self.inner.progress()
    }
}

/// Fingerprints and opens `address` as input `i` of a run.
fn open_input<'w>(
    address: &str,
    options: &OpenOptions,
    watch: &'w Watch,
    i: usize,
) -> Result<(Watched<'w>, JobInput), DataError> {
    let print = source::fingerprint(address)?;
    let inner = source::open(address, options)?;
    let input = JobInput {
        address: inner.name().to_string(),
        sha256: print.as_ref().map(|p| p.sha256_hex.clone()),
        bytes: print.as_ref().map(|p| p.bytes),
    };
    let watched = Watched {
        inner,
        watch: &watch.inputs[i.min(1)],
        rows: 0,
    };
    watched.publish();
    Ok((watched, input))
}

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64
}

/// Compares `left` with `right`, sending each change to `sink`.
pub fn run_diff(
    left: &str,
    right: &str,
    open: &OpenOptions,
    options: &DiffOptions,
    sink: &mut dyn ChangeSink,
    watch: &Watch,
) -> Result<Ran<DiffSummary>, DataError> {
    let started = Instant::now();
    let (mut l, left_input) = open_input(left, open, watch, 0)?;
    let (mut r, right_input) = open_input(right, open, watch, 1)?;
    let summary = crate::diff::diff(&mut l, &mut r, options, sink)?;
    let differences = summary.added + summary.removed + summary.changed > 0
        || summary.left_duplicate_keys + summary.right_duplicate_keys > 0
        || !summary.schema.is_empty();
    Ok(Ran {
        quality_score: quality_score(summary.unchanged, summary.left_rows, summary.right_rows),
        differences,
        inputs: vec![left_input, right_input],
        summary,
        duration_ms: elapsed_ms(started),
    })
}

/// What key discovery found: the keys of each input and, for two, the
/// keys they share.
#[derive(Debug, Clone, Serialize)]
pub struct KeysFound {
    /// One report per input.
    pub tables: Vec<KeyReport>,
    /// With two inputs: the keys unique in both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common: Option<CommonKeys>,
}

/// Finds the keys of one input, or of two and those they share.
pub fn run_keys(
    inputs: &[String],
    open: &OpenOptions,
    options: &KeyOptions,
    watch: &Watch,
) -> Result<Ran<KeysFound>, DataError> {
    if inputs.is_empty() || inputs.len() > 2 {
        return Err(DataError::new(
            "inputs",
            format!("key discovery takes one or two inputs, not {}", inputs.len()),
        ));
    }
    let started = Instant::now();
    let mut tables = Vec::new();
    let mut recorded = Vec::new();
    for (i, address) in inputs.iter().enumerate() {
        let (mut source, input) = open_input(address, open, watch, i)?;
        tables.push(crate::keys::discover(&mut source, options)?);
        recorded.push(input);
    }
    let common = (tables.len() == 2).then(|| crate::keys::common(&tables[0], &tables[1]));
    let differences = match &common {
        Some(c) => c.keys.is_empty(),
        None => tables.iter().any(|t| t.keys.is_empty()),
    };
    Ok(Ran {
        summary: KeysFound { tables, common },
        inputs: recorded,
        differences,
        quality_score: None,
        duration_ms: elapsed_ms(started),
    })
}

impl KeysFound {
    /// The summary a run history keeps: for one input its report as is
    /// (`rows`, `columns`, `keys`, …); for two, both reports and the common
    /// keys, with `keys` holding the common keys' columns.
    pub fn to_json(&self) -> Value {
        match (&self.tables[..], &self.common) {
            ([one], _) => serde_json::to_value(one).unwrap_or(Value::Null),
            (tables, Some(common)) => json!({
                "rows": tables.iter().map(|t| t.rows).max(),
                "tables": tables,
                "keys": common.keys.iter().map(|k| k.columns.clone()).collect::<Vec<_>>(),
                "common": common,
            }),
            _ => Value::Null,
        }
    }
}

/// Checks `input` against `rules`, sending each violation to `sink`.
pub fn run_validate(
    input: &str,
    open: &OpenOptions,
    rules: &Rules,
    sink: &mut dyn FnMut(&Violation) -> Result<(), DataError>,
    watch: &Watch,
) -> Result<Ran<ValidationSummary>, DataError> {
    let started = Instant::now();
    let (mut source, recorded) = open_input(input, open, watch, 0)?;
    let summary = crate::validate::check(&mut source, rules, sink)?;
    Ok(Ran {
        differences: summary.violations > 0,
        quality_score: summary.quality_score,
        summary,
        inputs: vec![recorded],
        duration_ms: elapsed_ms(started),
    })
}

/// The audit event recording one row change of a diff: action
/// `data.row.added`, `data.row.removed` or `data.row.changed`, the dataset
/// and the row's key as target, the values in `changes` (`before` and
/// `after` as column → value objects, `fields` the changed columns), and
/// the run in `details`. Duplicated keys are not row changes: `None`.
pub fn change_event(
    dataset: &str,
    key_columns: &[String],
    columns: (&[String], &[String]),
    change: &Change,
    run: &Value,
) -> Option<Value> {
    let action = match change.kind {
        ChangeKind::Added => "data.row.added",
        ChangeKind::Removed => "data.row.removed",
        ChangeKind::Changed => "data.row.changed",
        ChangeKind::Duplicate => return None,
    };
    let key_text = change
        .key
        .iter()
        .map(|v| v.as_deref().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("|");
    let key: serde_json::Map<String, Value> = key_columns
        .iter()
        .zip(&change.key)
        .map(|(c, v)| (c.clone(), json!(v)))
        .collect();
    let row = |names: &[String]| -> Value {
        Value::Object(
            names
                .iter()
                .zip(&change.row)
                .map(|(c, v)| (c.clone(), json!(v)))
                .collect(),
        )
    };
    let changes = match change.kind {
        ChangeKind::Added => json!({"after": row(columns.1)}),
        ChangeKind::Removed => json!({"before": row(columns.0)}),
        _ => {
            let before: serde_json::Map<String, Value> =
                change.fields.iter().map(|f| (f.column.clone(), json!(f.old))).collect();
            let after: serde_json::Map<String, Value> =
                change.fields.iter().map(|f| (f.column.clone(), json!(f.new))).collect();
            let fields: Vec<&str> = change.fields.iter().map(|f| f.column.as_str()).collect();
            json!({"before": before, "after": after, "fields": fields})
        }
    };
    Some(json!({
        "action": action,
        "category": "data",
        "crud": match change.kind { ChangeKind::Added => "c", ChangeKind::Removed => "d", _ => "u" },
        "targets": [{"type": "dataset", "id": dataset}, {"type": "row", "id": key_text}],
        "changes": changes,
        "details": {"key": key, "left_line": change.left_line, "right_line": change.right_line, "run": run},
    }))
}
