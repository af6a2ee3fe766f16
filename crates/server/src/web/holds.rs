//! `/holds`: the legal holds of every log (active, and released ones on
//! request), for admins and auditors; admins add holds
//! (`POST /holds`) and release them (`POST /holds/{id}/release`).
//!
//! Everything goes through the functions of the holds API
//! (crates/server/src/api/holds.rs): the same checks, each refusal
//! naming its field, and every change recorded in the system log.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sealtrail_meta::{Hold, HoldFilter};
use serde::Deserialize;

use super::{Layout, Viewer};
use crate::api::holds::{add, allowed, list, release, NewHold};
use crate::app::App;
use crate::problem::Problem;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/holds", get(page).post(create))
        .route("/holds/{id}/release", post(release_form))
}

/// A hold as listed.
struct HoldRow {
    id: i64,
    log: String,
    /// The filter's conditions, `field=value` each; "the whole log" if none.
    covers: String,
    reason: String,
    created: String,
    released: Option<String>,
}

impl HoldRow {
    fn of(h: Hold) -> HoldRow {
        let covers = match h.filter.as_object() {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => format!("{k}={s}"),
                    None => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => "the whole log".into(),
        };
        HoldRow {
            id: h.id,
            log: h.log,
            covers,
            reason: h.reason,
            created: format!("{} by {}", h.created_at, h.created_by),
            released: h
                .released_at
                .map(|at| format!("{at} by {}", h.released_by.unwrap_or_default())),
        }
    }
}

#[derive(Template)]
#[template(path = "holds.html")]
struct HoldsPage {
    layout: Layout,
    holds: Vec<HoldRow>,
    logs: Vec<String>,
    released: bool,
    admin: bool,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    /// `1`: released holds too.
    #[serde(default)]
    released: Option<String>,
}

/// What the page shows after a form.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
    notice: Option<String>,
    status: Option<StatusCode>,
}

async fn render(app: &Arc<App>, viewer: &Viewer, released: bool, out: Outcome) -> Response {
    let (app, caller) = (app.clone(), viewer.caller.clone());
    let loaded = crate::request::blocking(move || {
        let holds = list(&app, &caller, None, released)?;
        let logs = app
            .data
            .list_logs()
            .map_err(|e| Problem::internal(e.to_string()))?
            .into_iter()
            .map(|l| l.name)
            .collect::<Vec<String>>();
        Ok((holds, logs))
    })
    .await;
    let (holds, logs) = match loaded {
        Ok(x) => x,
        Err(p) => return p.into_response(),
    };
    let page = HoldsPage {
        layout: viewer.layout("/holds"),
        holds: holds.into_iter().map(HoldRow::of).collect(),
        logs,
        released,
        admin: allowed(&viewer.caller, true).is_ok(),
        error: out.error,
        notice: out.notice,
    };
    match page.render() {
        Ok(h) => (out.status.unwrap_or(StatusCode::OK), Html(h)).into_response(),
        Err(e) => Problem::internal(format!("rendering the holds page: {e}")).into_response(),
    }
}

/// `GET /holds`.
async fn page(State(app): State<Arc<App>>, viewer: Viewer, Query(q): Query<PageQuery>) -> Response {
    if let Err(p) = allowed(&viewer.caller, false) {
        return p.into_response();
    }
    let released = q.released.as_deref() == Some("1");
    render(&app, &viewer, released, Outcome::default()).await
}

/// The add form: every condition a text field, empty when not set.
#[derive(Debug, Deserialize)]
struct HoldForm {
    #[serde(default)]
    log: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    target_id: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    occurred_since: String,
    #[serde(default)]
    occurred_until: String,
    #[serde(default)]
    received_since: String,
    #[serde(default)]
    received_until: String,
    /// Checked by the session layer.
    #[serde(default)]
    #[allow(dead_code)]
    csrf: String,
}

impl HoldForm {
    fn new_hold(self) -> NewHold {
        let set = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        NewHold {
            log: self.log.trim().to_string(),
            reason: self.reason,
            filter: HoldFilter {
                action: set(self.action),
                actor: set(self.actor),
                target_type: set(self.target_type),
                target_id: set(self.target_id),
                tenant: set(self.tenant),
                text: set(self.text),
                occurred_since: set(self.occurred_since),
                occurred_until: set(self.occurred_until),
                received_since: set(self.received_since),
                received_until: set(self.received_until),
                ..HoldFilter::default()
            },
        }
    }
}

fn refused(p: Problem) -> Outcome {
    Outcome {
        error: Some(p.detail),
        status: StatusCode::from_u16(p.status).ok(),
        ..Outcome::default()
    }
}

/// `POST /holds`: add a hold.
async fn create(State(app): State<Arc<App>>, viewer: Viewer, body: Bytes) -> Response {
    if let Err(p) = allowed(&viewer.caller, true) {
        return p.into_response();
    }
    let form: HoldForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return Problem::bad_request("invalid-form", format!("the form: {e}")).into_response(),
    };
    let new = form.new_hold();
    let (app2, caller) = (app.clone(), viewer.caller.clone());
    let out = match crate::request::blocking(move || add(&app2, &caller, &new)).await {
        Ok(h) => Outcome {
            notice: Some(format!("Added legal hold {} on log {}.", h.id, h.log)),
            ..Outcome::default()
        },
        Err(p) => refused(p),
    };
    render(&app, &viewer, false, out).await
}

/// `POST /holds/{id}/release`: release a hold.
async fn release_form(State(app): State<Arc<App>>, viewer: Viewer, Path(id): Path<i64>) -> Response {
    if let Err(p) = allowed(&viewer.caller, true) {
        return p.into_response();
    }
    let (app2, caller) = (app.clone(), viewer.caller.clone());
    let out = match crate::request::blocking(move || release(&app2, &caller, id)).await {
        Ok(h) => Outcome {
            notice: Some(format!("Released legal hold {} on log {}.", h.id, h.log)),
            ..Outcome::default()
        },
        Err(p) => refused(p),
    };
    render(&app, &viewer, false, out).await
}
