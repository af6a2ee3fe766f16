//! The `reconciliation` report: the data runs of one named comparison
//! (`sealtrail data diff --name`, key discovery, validation) started in
//! the period, as `meta.db` stores them, with their counts, the failures
//! and their errors, and the trend of the differences they found.
//!
//! Counts come from each run's stored summary: the numbers at its top
//! level (`left_rows`, `added`, `removed`, `changed`, ... of a diff;
//! `rows` and the `keys` list of key discovery; `violations` of a
//! validation). A count a run's summary does not carry is `null`, never
//! zero.

use std::collections::{BTreeMap, BTreeSet};

use sealtrail_event::Timestamp;
use sealtrail_meta::{DataRunFilter, Meta, RunKind, RunOutcome, StoredDataRun, MAX_RUN_LIST};
use serde_json::Value;

use crate::gather;
use crate::model::{Body, Reconciliation, Report, RunFailure, RunItem, RunTotals, TrendPoint};
use crate::{ReportError, Request, Sources, MAX_DATA_RUNS_READ};

/// The outcomes `by_outcome` always holds; `running` is a run begun and
/// not finished when the report was computed.
const OUTCOMES: [&str; 4] = ["success", "differences", "failure", "running"];

pub(crate) fn generate(sources: &Sources, meta: &Meta, request: &Request) -> Result<Report, ReportError> {
    let name = request
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(ReportError::MissingName)?;
    let log = sources.log.as_str();
    let checkpoint = gather::checkpoint(log, &sources.trail)?;
    let (stored, truncated) = runs_of(meta, name)?;
    if stored.is_empty() {
        return Err(ReportError::UnknownName {
            name: name.to_string(),
            known: known_names(meta)?,
        });
    }
    let mut dated: Vec<(Timestamp, StoredDataRun)> = stored
        .into_iter()
        .filter_map(|r| Some((r.run.started_at.parse::<Timestamp>().ok()?, r)))
        .collect();
    dated.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let within = |t: Timestamp| request.since.is_none_or(|s| t >= s) && request.until.is_none_or(|u| t < u);
    let previous = match request.since {
        Some(since) => dated.iter().rev().find(|(t, _)| *t < since).map(|(_, r)| item(r)),
        None => None,
    };
    let runs: Vec<RunItem> = dated.iter().filter(|(t, _)| within(*t)).map(|(_, r)| item(r)).collect();

    let mut by_outcome: BTreeMap<String, u64> = OUTCOMES.iter().map(|o| (o.to_string(), 0)).collect();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut trend = Vec::new();
    let mut totals = RunTotals::default();
    for r in &runs {
        let outcome = if r.open { "running" } else { r.outcome.as_str() };
        *by_outcome.entry(outcome.to_string()).or_default() += 1;
        *by_kind.entry(r.kind.clone()).or_default() += 1;
        if r.open {
            continue;
        }
        if r.outcome == RunOutcome::Failure.as_str() {
            failures.push(RunFailure {
                id: r.id,
                kind: r.kind.clone(),
                started_at: r.started_at.clone(),
                error: r.error.clone().unwrap_or_default(),
            });
            continue;
        }
        add(&mut totals.added, r.added);
        add(&mut totals.removed, r.removed);
        add(&mut totals.changed, r.changed);
        add(&mut totals.differences, r.differences);
        trend.push(TrendPoint {
            id: r.id,
            started_at: r.started_at.clone(),
            kind: r.kind.clone(),
            added: r.added,
            removed: r.removed,
            changed: r.changed,
            differences: r.differences,
            keys_found: r.keys_found,
        });
    }
    let body = Reconciliation {
        name: name.to_string(),
        runs_total: runs.len() as u64,
        by_outcome,
        by_kind,
        totals,
        runs,
        failures,
        trend,
        previous,
        truncated,
    };
    Ok(Report {
        report: "reconciliation",
        title: format!("Reconciliation of {name}"),
        log: log.to_string(),
        generated_at: request.now.to_string(),
        period: gather::period(request),
        checkpoint,
        empty: body.runs_total == 0,
        body: Body::Reconciliation(Box::new(body)),
    })
}

fn add(total: &mut Option<u64>, n: Option<u64>) {
    if let Some(n) = n {
        *total = Some(total.unwrap_or(0).saturating_add(n));
    }
}

/// Every run named `name`, newest first, up to [`MAX_DATA_RUNS_READ`];
/// true when older ones were left unread.
fn runs_of(meta: &Meta, name: &str) -> Result<(Vec<StoredDataRun>, bool), ReportError> {
    let mut out: Vec<StoredDataRun> = Vec::new();
    let mut before = None;
    loop {
        let page = meta.list_data_runs(&DataRunFilter {
            kind: None,
            name: Some(name.to_string()),
            limit: MAX_RUN_LIST,
            before,
        })?;
        let full = page.len() == MAX_RUN_LIST;
        before = page.last().map(|r| r.id);
        out.extend(page);
        if !full {
            return Ok((out, false));
        }
        if out.len() >= MAX_DATA_RUNS_READ {
            let more = meta.list_data_runs(&DataRunFilter {
                kind: None,
                name: Some(name.to_string()),
                limit: 1,
                before,
            })?;
            return Ok((out, !more.is_empty()));
        }
    }
}

/// The names of the newest runs, sorted, for an unknown name's refusal.
fn known_names(meta: &Meta) -> Result<Vec<String>, ReportError> {
    let runs = meta.list_data_runs(&DataRunFilter {
        limit: MAX_RUN_LIST,
        ..DataRunFilter::default()
    })?;
    let names: BTreeSet<String> = runs.into_iter().filter_map(|r| r.run.name).collect();
    Ok(names.into_iter().collect())
}

/// A top-level count of a run's summary.
fn count(summary: &Value, key: &str) -> Option<u64> {
    let v = summary.get(key)?;
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
}

fn item(stored: &StoredDataRun) -> RunItem {
    let run = &stored.run;
    let s = &run.summary;
    let (added, removed, changed) = (count(s, "added"), count(s, "removed"), count(s, "changed"));
    let violations = count(s, "violations");
    let differences = match run.kind {
        RunKind::Diff if added.is_some() || removed.is_some() || changed.is_some() => Some(
            added
                .unwrap_or(0)
                .saturating_add(removed.unwrap_or(0))
                .saturating_add(changed.unwrap_or(0)),
        ),
        RunKind::Validate => violations,
        _ => None,
    };
    let metrics = s
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_number())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    RunItem {
        id: stored.id,
        kind: run.kind.as_str().to_string(),
        outcome: run.outcome.as_str().to_string(),
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone(),
        duration_ms: run.duration_ms,
        open: stored.open,
        quality_score: run.quality_score,
        left_rows: count(s, "left_rows"),
        right_rows: count(s, "right_rows"),
        rows: count(s, "rows"),
        added,
        removed,
        changed,
        unchanged: count(s, "unchanged"),
        keys_found: s.get("keys").and_then(Value::as_array).map(|k| k.len() as u64),
        violations,
        differences,
        error: run.error.clone(),
        metrics,
    }
}
