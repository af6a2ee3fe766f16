//! `/reports`: a form to compute a report (docs/reports.md) of a log over
//! a period, and `/reports/download`, which answers it as a file.
//!
//! The download runs the report endpoint's own code
//! (`api::reports::asked` and `answer`): the same checks, the same bound
//! of reports at once, the same system-log record and the same bytes as
//! `GET /api/v1/logs/{log}/reports/{type}`. Only refusals differ: they are
//! shown on the form, naming the field, with what was asked kept in it.
//! Plain HTML: no script is needed to use it.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use sealtrail_event::Timestamp;
use serde::Deserialize;

use super::view::{blocking_page, chosen_log, html, readable_logs};
use super::{Layout, Viewer};
use crate::api::reports::{answer, asked, ReportQuery};
use crate::app::{App, Caller};
use crate::problem::Problem;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/reports", get(page))
        .route("/reports/download", get(download))
}

/// What the form asks; blank fields are left out.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Asked {
    log: String,
    #[serde(rename = "type")]
    kind: String,
    since: String,
    until: String,
    format: String,
    /// The comparison a reconciliation report covers.
    name: String,
}

#[derive(askama::Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    layout: Layout,
    logs: Vec<String>,
    /// (value, label) of the report types this caller may have.
    kinds: Vec<(&'static str, &'static str)>,
    formats: [(&'static str, &'static str); 3],
    asked: Asked,
    error: Option<String>,
}

impl ReportsPage {
    fn is_log(&self, v: &str) -> bool {
        self.asked.log == v
    }
    fn is_kind(&self, v: &str) -> bool {
        self.asked.kind == v
    }
    fn is_format(&self, v: &str) -> bool {
        self.asked.format == v
    }
    fn offers(&self, v: &str) -> bool {
        self.kinds.iter().any(|(k, _)| *k == v)
    }
}

const FORMATS: [(&str, &str); 3] = [
    ("html", "HTML (one self-contained file)"),
    ("xlsx", "Excel workbook (XLSX)"),
    ("json", "JSON"),
];

fn kinds(caller: &Caller) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![("summary", "Summary"), ("compliance", "Compliance (PCI DSS 10)")];
    if caller.require_system_read().is_ok() {
        out.push(("access-review", "Access review (users and API keys)"));
    }
    out.push(("reconciliation", "Reconciliation (the runs of one named comparison)"));
    out
}

/// A caller may use reports with read access and no tenant restriction.
fn may_report(caller: &Caller) -> Result<(), Problem> {
    caller.require(sealtrail_meta::Scope::Read)?;
    caller.require_no_tenant("a report counts every tenant's events")
}

async fn form_page(
    app: Arc<App>,
    viewer: &Viewer,
    mut asked: Asked,
    refused: Option<Problem>,
) -> Result<Response, Response> {
    let caller = viewer.caller.clone();
    let logs = blocking_page(viewer, "/reports", move || {
        may_report(&caller)?;
        readable_logs(&app, &caller, None)
    })
    .await?;
    if asked.log.is_empty() {
        asked.log = chosen_log(&logs, None).unwrap_or_default();
    }
    if asked.format.is_empty() {
        asked.format = "html".into();
    }
    let status = refused
        .as_ref()
        .and_then(|p| StatusCode::from_u16(p.status).ok())
        .unwrap_or(StatusCode::OK);
    let retry_after = refused.as_ref().and_then(|p| p.retry_after);
    let mut response = html(&ReportsPage {
        layout: viewer.layout("/reports"),
        logs,
        kinds: kinds(&viewer.caller),
        formats: FORMATS,
        asked,
        error: refused.map(|p| p.detail),
    });
    *response.status_mut() = status;
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(response)
}

/// `GET /reports`: the form.
async fn page(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, Response> {
    form_page(app, &viewer, Asked::default(), None).await
}

/// `GET /reports/download?log=…&type=…&since=…&until=…&format=…&name=…`: the
/// report as a file, or the form again with the refusal.
async fn download(State(app): State<Arc<App>>, viewer: Viewer, RawQuery(raw): RawQuery) -> Result<Response, Response> {
    let form: Asked = match serde_urlencoded::from_str(raw.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => {
            let p = Problem::bad_request("invalid-query", format!("the form: {e}"));
            return form_page(app, &viewer, Asked::default(), Some(p)).await;
        }
    };
    if let Err(p) = may_report(&viewer.caller) {
        return Err(super::view::error_page(&viewer, "/reports", p));
    }
    let blank = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let checked = if form.log.trim().is_empty() {
        Err(Problem::bad_request("invalid-query", "log: choose a log"))
    } else if form.kind.trim().is_empty() {
        Err(Problem::bad_request("invalid-query", "type: choose a report type"))
    } else {
        let q = ReportQuery {
            since: blank(&form.since),
            until: blank(&form.until),
            format: blank(&form.format),
            name: blank(&form.name),
        };
        asked(form.log.trim(), form.kind.trim(), &q, Timestamp::now())
    };
    let result = match checked {
        Ok(a) => answer(app.clone(), viewer.caller.clone(), a).await,
        Err(p) => Err(p),
    };
    match result {
        Ok(response) => Ok(response),
        Err(p) if p.status >= 500 && p.retry_after.is_none() => Err(super::view::error_page(&viewer, "/reports", p)),
        Err(p) => form_page(app, &viewer, form, Some(p)).await,
    }
}
