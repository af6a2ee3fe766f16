//! The changes to jobs that the API and the CLI share: each checked
//! against the registry, stored with its system-log event (`job.created`,
//! `job.updated`, `job.deleted`, `job.enabled`, `job.disabled`,
//! `job.run_requested`) in one transaction, and the views they show.

use chrono::{DateTime, Utc};
use sealtrail_meta::jobs::{JobRow, JobRun, NewJob, PutOutcome};
use sealtrail_meta::{job_event, Meta, MetaError};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::kind::Registry;
use crate::scheduler::{from_millis, millis, rfc3339};
use crate::spec::{name_problem, JobSpec, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The definition is refused; each problem names its field.
    #[error(transparent)]
    Invalid(#[from] SpecError),
    #[error("no job named {0:?}")]
    NotFound(String),
    #[error("a job named {0:?} exists already (PUT replaces it)")]
    Exists(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// A job as shown: its definition and its state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub name: String,
    /// The definition (docs/scheduler.md), with every default filled in.
    #[schema(value_type = Object)]
    pub spec: Value,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    /// The next scheduled occurrence (RFC 3339, UTC), if any.
    pub next_run: Option<String>,
    /// A retry waiting, and the failed attempts of its occurrence so far.
    pub retry_at: Option<String>,
    pub attempt: i64,
    /// Run now was asked and not yet taken.
    pub run_requested: bool,
    /// Running since (RFC 3339), by `running_on` (a process id).
    pub running_since: Option<String>,
    pub running_on: Option<String>,
    /// The last run recorded, if any.
    pub last_run: Option<JobRun>,
    /// Why this server cannot run the job (a type it does not know), if so.
    pub problem: Option<String>,
}

fn iso(ms: Option<i64>) -> Option<String> {
    ms.map(|m| rfc3339(from_millis(m)))
}

/// The view of a stored job.
pub fn view(meta: &Meta, registry: &Registry, row: JobRow, now: DateTime<Utc>) -> Result<JobView, MetaError> {
    let spec: Value = serde_json::from_str(&row.spec).unwrap_or(Value::Null);
    let problem = JobSpec::from_value(spec.clone(), registry).err().map(|e| e.to_string());
    let last_run = meta.job_runs(&row.name, 1)?.into_iter().next();
    let running = row.lease_holder.is_some() && row.lease_expires.is_some_and(|e| e > millis(now));
    Ok(JobView {
        name: row.name,
        spec,
        enabled: row.enabled,
        created_at: row.created_at,
        updated_at: row.updated_at,
        next_run: if row.enabled { iso(row.next_run) } else { None },
        retry_at: iso(row.retry_at),
        attempt: row.attempt,
        run_requested: row.run_requested,
        running_since: if running { iso(row.running_since) } else { None },
        running_on: if running { row.lease_holder } else { None },
        last_run,
        problem,
    })
}

/// Every job.
pub fn list(meta: &Meta, registry: &Registry, now: DateTime<Utc>) -> Result<Vec<JobView>, JobError> {
    let mut out = Vec::new();
    for row in meta.jobs()? {
        out.push(view(meta, registry, row, now)?);
    }
    Ok(out)
}

/// One job.
pub fn show(meta: &Meta, registry: &Registry, name: &str, now: DateTime<Utc>) -> Result<JobView, JobError> {
    let row = meta.job(name)?.ok_or_else(|| JobError::NotFound(name.into()))?;
    Ok(view(meta, registry, row, now)?)
}

/// Store `spec` (create, or replace unless `create_only`) by `actor`.
/// A `once` schedule already past is refused.
pub fn put(
    meta: &Meta,
    registry: &Registry,
    spec: &JobSpec,
    create_only: bool,
    actor: &Value,
    now: DateTime<Utc>,
) -> Result<(PutOutcome, JobView), JobError> {
    let schedule = spec.parsed_schedule().map_err(|e| SpecError(vec![e.to_string()]))?;
    let next = schedule.next_after(now);
    if next.is_none() {
        return Err(SpecError(vec![format!(
            "schedule: {:?} has no occurrence after now ({})",
            spec.schedule,
            rfc3339(now)
        )])
        .into());
    }
    let text = spec.to_value().to_string();
    let outcome = meta
        .put_job(
            &NewJob {
                name: &spec.name,
                spec: &text,
                enabled: spec.enabled,
                next_run: next.map(millis),
            },
            create_only,
            &rfc3339(now),
            |o| {
                let action = match o {
                    PutOutcome::Created => "job.created",
                    PutOutcome::Replaced => "job.updated",
                };
                job_event(
                    actor.clone(),
                    action,
                    &spec.name,
                    "success",
                    json!({"job": spec.to_value()}),
                )
            },
        )?
        .ok_or_else(|| JobError::Exists(spec.name.clone()))?;
    Ok((outcome, show(meta, registry, &spec.name, now)?))
}

/// Delete job `name` and its history.
pub fn delete(meta: &Meta, name: &str, actor: &Value) -> Result<(), JobError> {
    let event = job_event(actor.clone(), "job.deleted", name, "success", json!({"job": name}));
    if meta.delete_job(name, &event)? {
        Ok(())
    } else {
        Err(JobError::NotFound(name.into()))
    }
}

/// Enable or disable job `name`; enabling starts its schedule from now.
pub fn set_enabled(
    meta: &Meta,
    registry: &Registry,
    name: &str,
    enabled: bool,
    actor: &Value,
    now: DateTime<Utc>,
) -> Result<JobView, JobError> {
    let row = meta.job(name)?.ok_or_else(|| JobError::NotFound(name.into()))?;
    let next = serde_json::from_str(&row.spec)
        .ok()
        .and_then(|v| JobSpec::from_value(v, registry).ok())
        .and_then(|s| s.parsed_schedule().ok())
        .and_then(|s| s.next_after(now))
        .map(millis);
    let action = if enabled { "job.enabled" } else { "job.disabled" };
    let event = job_event(actor.clone(), action, name, "success", json!({"job": name}));
    if !meta.set_job_enabled(name, enabled, &rfc3339(now), next, &event)? {
        return Err(JobError::NotFound(name.into()));
    }
    show(meta, registry, name, now)
}

/// Ask for job `name` to run as soon as a scheduler sees it.
pub fn request_run(meta: &Meta, name: &str, actor: &Value) -> Result<(), JobError> {
    if let Some(p) = name_problem(name) {
        return Err(SpecError(vec![p]).into());
    }
    let event = job_event(
        actor.clone(),
        "job.run_requested",
        name,
        "success",
        json!({"job": name}),
    );
    if meta.request_job_run(name, &event)? {
        Ok(())
    } else {
        Err(JobError::NotFound(name.into()))
    }
}

/// The last `limit` runs of job `name`, newest first.
pub fn runs(meta: &Meta, name: &str, limit: usize) -> Result<Vec<JobRun>, JobError> {
    if meta.job(name)?.is_none() {
        return Err(JobError::NotFound(name.into()));
    }
    Ok(meta.job_runs(name, limit)?)
}
