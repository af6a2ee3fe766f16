//! The alerts page, `/alerts`: alerts firing now, the history of alerts,
//! the silences in force, and the notification deliveries; admins create
//! and end silences from it (`POST /alerts/silences`,
//! `POST /alerts/silences/{id}/delete`).
//!
//! Everything goes through the same functions and checks as the alerting
//! API (crates/server/src/api/alerts.rs): read scope to look, admin to
//! change, tenant-restricted callers refused (alerting is configured for
//! the whole server), and every change recorded in the system log.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use sealtrail_alert::store::{self, AlertRow, Silence};
use sealtrail_alert::SilenceSpec;
use sealtrail_meta::alerts as ops;
use sealtrail_meta::Scope;
use serde::Deserialize;
use serde_json::Value;

use super::{Layout, Viewer};
use crate::api::alerts::{allowed, problem};
use crate::api::blocking;
use crate::app::App;
use crate::problem::Problem;

/// Rows of each list on the page.
const SHOWN: usize = 50;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/alerts", get(page))
        .route("/alerts/silences", post(create_silence))
        .route("/alerts/silences/{id}/delete", post(delete_silence))
}

/// One notification and how its delivery went.
struct DeliveryRow {
    id: i64,
    channel: String,
    alert_id: String,
    kind: String,
    status: String,
    attempts: u64,
    created_at: String,
    delivered_at: String,
    last: String,
}

impl DeliveryRow {
    fn of(v: &Value) -> DeliveryRow {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let last = match (v["last_status"].as_u64(), v["last_error"].as_str()) {
            (Some(code), Some(e)) => format!("HTTP {code}: {e}"),
            (Some(code), None) => format!("HTTP {code}"),
            (None, Some(e)) => e.to_string(),
            (None, None) => String::new(),
        };
        DeliveryRow {
            id: v["id"].as_i64().unwrap_or(0),
            channel: s("channel"),
            alert_id: s("alert_id"),
            kind: s("kind"),
            status: s("status"),
            attempts: v["attempts"].as_u64().unwrap_or(0),
            created_at: s("created_at"),
            delivered_at: s("delivered_at"),
            last,
        }
    }
}

/// A silence as listed.
struct SilenceRow {
    id: i64,
    rule: String,
    group: String,
    until: String,
    comment: String,
    created_by: String,
}

impl SilenceRow {
    fn of(s: Silence) -> SilenceRow {
        SilenceRow {
            id: s.id,
            rule: s.spec.rule.unwrap_or_else(|| "every rule".into()),
            group: s
                .spec
                .group
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
            until: s.spec.until,
            comment: s.spec.comment.unwrap_or_default(),
            created_by: s.created_by,
        }
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    firing: Vec<AlertRow>,
    history: Vec<AlertRow>,
    silences: Vec<SilenceRow>,
    deliveries: Vec<DeliveryRow>,
    admin: bool,
}

impl AlertsPage {
    /// An alert's group as `field=value, …`.
    fn group(&self, row: &AlertRow) -> String {
        row.group
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}={s}"),
                None => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `GET /alerts`.
async fn page(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, Problem> {
    allowed(&viewer.caller, Scope::Read)?;
    let layout = viewer.layout("/alerts");
    let admin = viewer.caller.require(Scope::Admin).is_ok();
    let page = blocking(move || {
        let internal = |e: store::StoreError| Problem::internal(e.to_string());
        let now = jiff::Timestamp::now().as_millisecond();
        let (firing, history, silences) = {
            let conn = app.meta.lock();
            (
                store::list_alerts(&conn, true, SHOWN, None).map_err(internal)?,
                store::list_alerts(&conn, false, SHOWN, None).map_err(internal)?,
                store::list_silences(&conn, false, now).map_err(internal)?,
            )
        };
        let deliveries = ops::notifications(&app.meta, None, None, None, SHOWN, None).map_err(problem)?;
        let deliveries = deliveries
            .as_array()
            .map(|rows| rows.iter().map(DeliveryRow::of).collect())
            .unwrap_or_default();
        Ok(AlertsPage {
            layout,
            firing,
            history,
            silences: silences.into_iter().map(SilenceRow::of).collect(),
            deliveries,
            admin,
        })
    })
    .await?;
    let html = page
        .render()
        .map_err(|e| Problem::internal(format!("rendering the alerts page: {e}")))?;
    Ok(Html(html).into_response())
}

#[derive(Debug, Deserialize)]
struct SilenceForm {
    #[serde(default)]
    rule: String,
    until: String,
    #[serde(default)]
    comment: String,
    /// Checked by the session layer.
    #[serde(default)]
    #[allow(dead_code)]
    csrf: String,
}

/// `POST /alerts/silences`: silence a rule (or every rule) until a time.
async fn create_silence(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Form(form): Form<SilenceForm>,
) -> Result<Response, Problem> {
    let caller = viewer.caller;
    allowed(&caller, Scope::Admin)?;
    let trimmed = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let spec = SilenceSpec {
        rule: trimmed(form.rule),
        group: Default::default(),
        until: form.until.trim().to_string(),
        comment: trimmed(form.comment),
    };
    blocking(move || {
        let by = match &caller {
            crate::app::Caller::Key(k) => format!("key:{}", k.id),
            crate::app::Caller::User(s) => format!("user:{}", s.user.name),
            crate::app::Caller::Anonymous => String::new(),
        };
        ops::add_silence(&app.meta, &spec, &caller.actor(), &by).map_err(problem)?;
        Ok(Redirect::to("/alerts#silences").into_response())
    })
    .await
}

/// `POST /alerts/silences/{id}/delete`: end a silence now.
async fn delete_silence(State(app): State<Arc<App>>, viewer: Viewer, Path(id): Path<i64>) -> Result<Response, Problem> {
    let caller = viewer.caller;
    allowed(&caller, Scope::Admin)?;
    blocking(move || {
        ops::delete_silence(&app.meta, id, &caller.actor()).map_err(problem)?;
        Ok(Redirect::to("/alerts#silences").into_response())
    })
    .await
}
