//! `/data/runs` and `/data/runs/{id}`: the reconciliation runs (diffs,
//! key profiles, validations) as the data API lists them, newest first,
//! and one run's inputs, parameters and summary. Read only: runs are
//! started through the API or the command line.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::view::{blocking_page, error_page, html, link, Time};
use super::{Layout, Viewer};
use crate::api::data::{self, DataRunView, ListParams};
use crate::app::App;
use crate::problem::Problem;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/data/runs", get(list))
        .route("/data/runs/{id}", get(one))
}

/// A run as a row of the list.
pub struct RunRow {
    pub id: i64,
    pub href: String,
    pub kind: String,
    pub name: String,
    pub state: String,
    pub outcome: String,
    pub started: Time,
    pub finished: Option<Time>,
    pub duration: String,
    pub quality: String,
    pub error: String,
}

fn row(r: &DataRunView) -> RunRow {
    RunRow {
        id: r.id,
        href: format!("/data/runs/{}", r.id),
        kind: r.kind.clone(),
        name: r.name.clone().unwrap_or_default(),
        state: serde_json::to_value(r.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        outcome: r.outcome.clone().unwrap_or_default(),
        started: Time::parse(&r.started_at),
        finished: r.finished_at.as_deref().map(Time::parse),
        duration: r.duration_ms.map(|ms| format!("{ms} ms")).unwrap_or_default(),
        quality: r.quality_score.map(|q| format!("{q:.3}")).unwrap_or_default(),
        error: r.error.as_deref().map(super::view::cut).unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    layout: Layout,
    runs: Vec<RunRow>,
    next: Option<String>,
}

async fn list(State(app): State<Arc<App>>, viewer: Viewer, uri: Uri) -> Result<Response, Response> {
    let Query(params) = Query::<ListParams>::try_from_uri(&uri).map_err(|e| {
        error_page(
            &viewer,
            "/data/runs",
            Problem::bad_request("invalid-query", e.body_text()),
        )
    })?;
    let kind = params.kind.clone();
    let name = params.name.clone();
    let caller = viewer.caller.clone();
    let page = blocking_page(&viewer, "/data/runs", move || data::runs_page(&app, &caller, params)).await?;
    let next = page.next_before.map(|b| {
        let b = b.to_string();
        let mut pairs = vec![("before", b.as_str())];
        if let Some(k) = &kind {
            pairs.push(("kind", k));
        }
        if let Some(n) = &name {
            pairs.push(("name", n));
        }
        link("/data/runs", &pairs)
    });
    Ok(html(&RunsPage {
        layout: viewer.layout("/data/runs"),
        runs: page.runs.iter().map(row).collect(),
        next,
    }))
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    layout: Layout,
    run: RunRow,
    inputs: Vec<data::RunInputView>,
    parameters: String,
    summary: String,
    actor: String,
}

async fn one(State(app): State<Arc<App>>, viewer: Viewer, Path(id): Path<String>) -> Result<Response, Response> {
    let id: i64 = id.parse().map_err(|_| {
        error_page(
            &viewer,
            "/data/runs",
            Problem::bad_request("invalid-path", format!("id: {id:?} is not a run number")),
        )
    })?;
    let caller = viewer.caller.clone();
    let run = blocking_page(&viewer, "/data/runs", move || data::run_view(&app, &caller, id)).await?;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    Ok(html(&RunPage {
        layout: viewer.layout("/data/runs"),
        run: row(&run),
        parameters: pretty(&run.parameters),
        summary: pretty(&run.summary),
        actor: pretty(&run.actor),
        inputs: run.inputs,
    }))
}
