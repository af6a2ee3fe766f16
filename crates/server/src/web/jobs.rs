//! `/jobs` and `/jobs/{name}`: the scheduled jobs with their schedule,
//! next run and last outcome, and one job's definition and run history.
//!
//! Admins also change jobs here, each change a POST form with the
//! session's `csrf` field: create or replace a job from its JSON or TOML
//! text (`POST /jobs`, as `sealtrail jobs put`), and run now, enable,
//! disable or delete one (`POST /jobs/{name}/{action}`). They go through
//! the same `sealtrail_sched::admin` functions and checks as the API, so
//! each is recorded as its `job.*` system-log event. A refused definition
//! is shown on the page, every problem naming its field, with the text
//! kept in the form. Auditors and viewers see the pages without the
//! forms, and their POSTs are refused (403).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use sealtrail_meta::jobs::JobRun;
use sealtrail_meta::Scope;
use sealtrail_sched::admin::{self, JobError, JobView};
use sealtrail_sched::JobSpec;
use serde::Deserialize;

use super::view::{blocking_page, cut, error_page, html, Time};
use super::{encode_component, Layout, Viewer};
use crate::api::jobs::allowed;
use crate::app::App;
use crate::problem::Problem;

/// Runs shown on a job's page (of the 100 kept).
const RUNS_SHOWN: usize = 50;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/jobs", get(list).post(put))
        .route("/jobs/{name}", get(one))
        .route("/jobs/{name}/{action}", post(change))
}

pub struct JobRow {
    pub name: String,
    pub href: String,
    pub enabled: bool,
    pub kind: String,
    pub schedule: String,
    pub timezone: String,
    pub state: String,
    pub next: Option<Time>,
    pub last_outcome: String,
    pub last_started: Option<Time>,
    pub problem: String,
}

pub struct RunRow {
    pub started: Time,
    pub duration: String,
    pub outcome: String,
    pub trigger: String,
    pub attempt: i64,
    pub said: String,
}

fn job_row(v: &JobView) -> JobRow {
    let field = |k: &str| v.spec.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    // A job disabled during a run says both: the run goes on to its end,
    // and no further one starts.
    let mut state = match (v.running_since.is_some(), v.enabled) {
        (true, true) => "running",
        (true, false) => "running, disabled",
        (false, true) => "enabled",
        (false, false) => "disabled",
    }
    .to_string();
    if v.run_requested {
        state.push_str(", run requested");
    }
    JobRow {
        href: format!("/jobs/{}", encode_component(&v.name)),
        name: v.name.clone(),
        enabled: v.enabled,
        kind: field("type"),
        schedule: field("schedule"),
        timezone: field("timezone"),
        state,
        next: v.next_run.as_deref().map(Time::parse),
        last_outcome: v.last_run.as_ref().map(|r| r.outcome.clone()).unwrap_or_default(),
        last_started: v.last_run.as_ref().map(|r| Time::parse(&r.started_at)),
        problem: v.problem.clone().unwrap_or_default(),
    }
}

fn run_row(r: &JobRun) -> RunRow {
    RunRow {
        started: Time::parse(&r.started_at),
        duration: format!("{} ms", r.duration_ms),
        outcome: r.outcome.clone(),
        trigger: r.trigger.as_str().into(),
        attempt: r.attempt,
        said: cut(r.error.as_deref().unwrap_or(&r.summary)),
    }
}

fn refused(e: JobError) -> Problem {
    match e {
        JobError::NotFound(_) => Problem::not_found(e.to_string()),
        JobError::Invalid(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", e.to_string()),
        JobError::Exists(_) => Problem::new(StatusCode::CONFLICT, "exists", e.to_string()),
        other => Problem::internal(other.to_string()),
    }
}

/// A definition the form refused: its problems, each naming its field,
/// and the text as sent, to correct in place.
#[derive(Default)]
struct Refusal {
    problems: Vec<String>,
    text: String,
}

#[derive(askama::Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    layout: Layout,
    jobs: Vec<JobRow>,
    /// Whether the change forms are shown.
    admin: bool,
    refusal: Refusal,
}

async fn jobs_page(app: Arc<App>, viewer: &Viewer, refusal: Refusal, status: StatusCode) -> Result<Response, Response> {
    let caller = viewer.caller.clone();
    let views = blocking_page(viewer, "/jobs", move || {
        allowed(&caller, Scope::Read)?;
        admin::list(&app.meta, &app.jobs.registry, chrono::Utc::now()).map_err(refused)
    })
    .await?;
    let mut response = html(&JobsPage {
        layout: viewer.layout("/jobs"),
        jobs: views.iter().map(job_row).collect(),
        admin: viewer.caller.require(Scope::Admin).is_ok(),
        refusal,
    });
    *response.status_mut() = status;
    Ok(response)
}

async fn list(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, Response> {
    jobs_page(app, &viewer, Refusal::default(), StatusCode::OK).await
}

#[derive(askama::Template)]
#[template(path = "job.html")]
struct JobPage {
    layout: Layout,
    job: JobRow,
    definition: String,
    runs: Vec<RunRow>,
    /// Whether the change forms are shown.
    admin: bool,
    /// The action links' path: `/jobs/{name}`, the name encoded.
    base: String,
}

async fn one(State(app): State<Arc<App>>, viewer: Viewer, Path(name): Path<String>) -> Result<Response, Response> {
    let caller = viewer.caller.clone();
    let (view, runs) = blocking_page(&viewer, "/jobs", move || {
        allowed(&caller, Scope::Read)?;
        let view = admin::show(&app.meta, &app.jobs.registry, &name, chrono::Utc::now()).map_err(refused)?;
        let runs = admin::runs(&app.meta, &name, RUNS_SHOWN).map_err(refused)?;
        Ok((view, runs))
    })
    .await?;
    let job = job_row(&view);
    Ok(html(&JobPage {
        layout: viewer.layout("/jobs"),
        definition: serde_json::to_string_pretty(&view.spec).unwrap_or_default(),
        base: job.href.clone(),
        job,
        runs: runs.iter().map(run_row).collect(),
        admin: viewer.caller.require(Scope::Admin).is_ok(),
    }))
}

/// The fields of the jobs forms; `csrf` is checked by the session layer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JobForm {
    definition: String,
    confirm: String,
    #[allow(dead_code)]
    csrf: String,
}

fn form(body: &Bytes) -> Result<JobForm, Problem> {
    serde_urlencoded::from_bytes(body).map_err(|e| Problem::bad_request("invalid-form", format!("the form: {e}")))
}

/// `POST /jobs`: create a job, or replace the one of that name, from its
/// JSON or TOML text (field `definition`).
async fn put(State(app): State<Arc<App>>, viewer: Viewer, body: Bytes) -> Result<Response, Response> {
    let caller = viewer.caller.clone();
    allowed(&caller, Scope::Admin).map_err(|p| error_page(&viewer, "/jobs", p))?;
    let text = form(&body).map_err(|p| error_page(&viewer, "/jobs", p))?.definition;
    let spec = match JobSpec::from_text(&text, &app.jobs.registry) {
        Ok(spec) => spec,
        Err(e) => {
            let refusal = Refusal {
                problems: e.0.into_iter().map(|p| format!("definition: {p}")).collect(),
                text,
            };
            return jobs_page(app, &viewer, refusal, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let done = {
        let app = app.clone();
        crate::api::blocking(move || {
            let (_, view) = admin::put(
                &app.meta,
                &app.jobs.registry,
                &spec,
                false,
                &caller.actor(),
                chrono::Utc::now(),
            )
            .map_err(refused)?;
            app.jobs.wake();
            Ok(view)
        })
        .await
    };
    match done {
        Ok(view) => Ok(Redirect::to(&format!("/jobs/{}", encode_component(&view.name))).into_response()),
        Err(p) if p.status == StatusCode::UNPROCESSABLE_ENTITY.as_u16() => {
            let refusal = Refusal {
                problems: p.detail.split("; ").map(|d| format!("definition: {d}")).collect(),
                text,
            };
            jobs_page(app, &viewer, refusal, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(p) => Err(error_page(&viewer, "/jobs", p)),
    }
}

/// `POST /jobs/{name}/{action}`: `run` (now), `enable`, `disable`, or
/// `delete` (with the `confirm` box ticked: it deletes the run history).
async fn change(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Response> {
    let caller = viewer.caller.clone();
    let page = |p: Problem| error_page(&viewer, "/jobs", p);
    allowed(&caller, Scope::Admin).map_err(page)?;
    let confirmed = form(&body).map_err(page)?.confirm == "yes";
    if !["run", "enable", "disable", "delete"].contains(&action.as_str()) {
        return Err(page(Problem::not_found(format!(
            "action: {action:?} is not a job action (run, enable, disable or delete)"
        ))));
    }
    if action == "delete" && !confirmed {
        return Err(page(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-form",
            format!("confirm: tick the box to delete job {name:?} and its run history"),
        )));
    }
    let after = if action == "delete" {
        "/jobs".to_string()
    } else {
        format!("/jobs/{}", encode_component(&name))
    };
    crate::api::blocking(move || {
        let (meta, registry, actor, now) = (&app.meta, &app.jobs.registry, caller.actor(), chrono::Utc::now());
        match action.as_str() {
            "run" => admin::request_run(meta, &name, &actor),
            "enable" => admin::set_enabled(meta, registry, &name, true, &actor, now).map(drop),
            "disable" => admin::set_enabled(meta, registry, &name, false, &actor, now).map(drop),
            _ => admin::delete(meta, &name, &actor),
        }
        .map_err(refused)?;
        app.jobs.wake();
        Ok(())
    })
    .await
    .map_err(page)?;
    Ok(Redirect::to(&after).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(running: bool, enabled: bool, run_requested: bool) -> JobView {
        JobView {
            name: "nightly".into(),
            spec: serde_json::json!({"type": "verify", "schedule": "0 2 * * *"}),
            enabled,
            created_at: String::new(),
            updated_at: String::new(),
            next_run: None,
            retry_at: None,
            attempt: 0,
            run_requested,
            running_since: running.then(|| "2026-12-07T02:00:00Z".to_string()),
            running_on: running.then(|| "1".to_string()),
            last_run: None,
            problem: None,
        }
    }

    #[test]
    fn the_state_shows_a_run_and_whether_the_job_is_enabled() {
        let state = |running, enabled, requested| job_row(&view(running, enabled, requested)).state;
        assert_eq!(state(false, true, false), "enabled");
        assert_eq!(state(false, false, false), "disabled");
        assert_eq!(state(true, true, false), "running");
        assert_eq!(state(true, false, false), "running, disabled");
        assert_eq!(state(false, true, true), "enabled, run requested");
    }
}
