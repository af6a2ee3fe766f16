//! `GET /api/v1/logs/{log}/reports/{type}`: a report (docs/reports.md)
//! computed on demand and answered as HTML, XLSX or JSON, the same bytes
//! `sealtrail report` writes.
//!
//! A report reads the whole period through the index and may take
//! seconds, so it runs on the blocking pool and at most
//! `limits.max_reports` run at once; one more is refused with 503 and
//! `Retry-After` rather than queued. Reports count every tenant's events,
//! so tenant-restricted callers are refused; an access review lists users
//! and keys, so it needs an admin or an auditor. A reconciliation report
//! covers the data runs of the comparison `name` names. Each report is recorded
//! in the system log (`trail.reported`) before its bytes leave.
//!
//! Not here: scheduled reports and their delivery (the `report` job type,
//! docs/scheduler.md).

use std::sync::Arc;

use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sealtrail_event::Timestamp;
use sealtrail_report::{Format, ReportError, ReportKind, Request};
use sealtrail_trail::when::parse_time;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::IntoParams;

use super::{blocking, readable};
use crate::app::{App, Caller};
use crate::extract::{Auth, Params, PathArgs};
use crate::problem::{ApiResult, Problem};

/// `Retry-After` of a report refused at `limits.max_reports`, in seconds.
pub const RETRY_AFTER_BUSY: u64 = 5;

/// The policy an HTML report is served with: it is self-contained, with
/// inline CSS and SVG and no script, so its styles may be inline and
/// nothing else is allowed; `sandbox` keeps it from acting as a page of
/// this site if it is opened in place.
pub const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox";

/// The reports being computed, at most `limits.max_reports` at once.
pub struct Reports {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Reports {
    pub fn new(max: usize) -> Reports {
        Reports {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot for one report, held until it is dropped; 503 with
    /// `Retry-After` when every slot is taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Problem> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "{} report(s) are being computed, the most at once (limits.max_reports); retry after {RETRY_AFTER_BUSY} s",
                    self.max
                ),
            );
            p.retry_after = Some(RETRY_AFTER_BUSY);
            p
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReportPath {
    /// Log name: lowercase letters, digits, `-` and `_`.
    pub log: String,
    /// `summary`, `compliance`, `access-review` or `reconciliation`.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^(summary|compliance|access-review|reconciliation)$")]
    pub kind: String,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Events that occurred at or after: `30m`, `24h`, `7d`, `1w` (before now), an RFC 3339 time, or a date (`2026-01-31`, its start in UTC). Default: the first event.
    pub since: Option<String>,
    /// Events that occurred before (same forms as `since`). Default: now.
    pub until: Option<String>,
    /// `html`, `xlsx` or `json` (default `json`).
    #[param(pattern = "^(html|xlsx|json)$")]
    pub format: Option<String>,
    /// The comparison a `reconciliation` report covers: the name its data runs were recorded under. Required for `reconciliation`, refused for the other types.
    #[param(min_length = 1, max_length = 256)]
    pub name: Option<String>,
}

fn invalid(param: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::bad_request("invalid-query", format!("{param}: {detail}"))
}

/// A checked report request: what to compute and how to render it.
pub(crate) struct Asked {
    pub request: Request,
    pub format: Format,
}

/// Check the type, period and format of a report asked for by `caller`
/// (authorisation is [`authorise`]'s).
pub(crate) fn asked(log: &str, kind: &str, q: &ReportQuery, now: Timestamp) -> Result<Asked, Problem> {
    let kind: ReportKind = kind.parse().map_err(|_| {
        Problem::not_found(format!(
            "type: {kind:?} is not a report type: use summary, compliance, access-review or reconciliation"
        ))
    })?;
    let name = q.name.as_deref().map(str::trim).map(str::to_string);
    match (kind, &name) {
        (ReportKind::Reconciliation, None) => {
            return Err(invalid(
                "name",
                "a reconciliation report covers one named comparison: give its name",
            ))
        }
        (ReportKind::Reconciliation, Some(n)) if n.is_empty() => {
            return Err(invalid(
                "name",
                "a reconciliation report covers one named comparison: give its name",
            ))
        }
        (ReportKind::Reconciliation, Some(_)) | (_, None) => {}
        (other, Some(n)) => {
            return Err(invalid(
                "name",
                format!("{n:?}: only a reconciliation report covers a named comparison, not {other}"),
            ))
        }
    }
    let format = match q.format.as_deref() {
        None => Format::Json,
        Some(f) => f
            .parse()
            .map_err(|_| invalid("format", format!("{f:?}: use html, xlsx or json")))?,
    };
    let time = |param: &str, v: &Option<String>| -> Result<Option<Timestamp>, Problem> {
        v.as_deref()
            .map(|s| parse_time(s, now).map_err(|e| invalid(param, e)))
            .transpose()
    };
    let (since, until) = (time("since", &q.since)?, time("until", &q.until)?);
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(invalid(
                "since",
                format!("{s} is not before until ({u}): the period is empty"),
            ));
        }
    }
    Ok(Asked {
        request: Request {
            kind,
            log: log.to_string(),
            since,
            until,
            now,
            name,
        },
        format,
    })
}

/// Refuse unless `caller` may have this report: read access to the log
/// (the system log only for admins and auditors), no tenant restriction
/// (a report counts every tenant), and for an access review, admin or
/// auditor. Blocking: it may open the log.
pub(crate) fn authorise(app: &App, caller: &Caller, kind: ReportKind, log: &str) -> Result<(), Problem> {
    readable(app, caller, log)?;
    caller.require_no_tenant("a report counts every tenant's events")?;
    if kind == ReportKind::AccessReview && caller.require_system_read().is_err() {
        return Err(Problem::forbidden(
            "access-review lists every user and API key: it needs role admin or auditor, or an admin key",
        ));
    }
    Ok(())
}

fn report_problem(e: ReportError) -> Problem {
    match e {
        ReportError::BadRange { since, until } => invalid(
            "since",
            format!("{since} is not before until ({until}): the period is empty"),
        ),
        ReportError::MissingName => invalid(
            "name",
            "a reconciliation report covers one named comparison: give its name",
        ),
        ReportError::UnknownName { .. } | ReportError::NameNotApplicable { .. } => {
            // The library names the CLI's flag; here it is the parameter.
            let text = e.to_string();
            invalid("name", text.strip_prefix("--name ").unwrap_or(&text))
        }
        other => Problem::internal(format!("computing a report: {other}")),
    }
}

/// Compute and render the report `asked` for `caller`, within the bound
/// of reports at once, and record it; the answer carries the media type
/// and a file name.
pub(crate) async fn answer(app: Arc<App>, caller: Caller, asked: Asked) -> Result<Response, Problem> {
    {
        let (app, caller) = (app.clone(), caller.clone());
        let (kind, log) = (asked.request.kind, asked.request.log.clone());
        blocking(move || authorise(&app, &caller, kind, &log)).await?;
    }
    let slot = app.reports.admit()?;
    let format = asked.format;
    let (bytes, name) = blocking(move || {
        let _slot = slot;
        let request = &asked.request;
        let report = sealtrail_report::generate(app.data.root(), request).map_err(report_problem)?;
        let bytes = sealtrail_report::render(&report, format).map_err(report_problem)?;
        let at = |t: Option<Timestamp>| t.map(|t| t.to_string());
        let mut details = json!({
            "report": request.kind.as_str(),
            "format": format.as_str(),
            "since": at(request.since),
            "until": at(request.until),
            "checkpoint_size": report.checkpoint.size,
            "bytes": bytes.len(),
        });
        if let Some(name) = &request.name {
            details["name"] = json!(name);
        }
        app.record(&caller, "trail.reported", &request.log, details)?;
        Ok((bytes, sealtrail_report::file_name(&report, format)))
    })
    .await?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    // file_name keeps only ASCII letters, digits, '-', '_' and '.'.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if format == Format::Html {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(REPORT_CSP));
    }
    Ok(response)
}

/// A report of the log over a period (docs/reports.md): `summary`,
/// `compliance` (PCI DSS 10), `access-review` (users and API keys;
/// admins and auditors only) or `reconciliation` (the data runs of the
/// comparison `name` and their trend), as self-contained HTML, an XLSX
/// workbook or JSON. At most `limits.max_reports` are computed at once.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/reports/{type}", tag = "query",
    params(ReportPath, ReportQuery),
    responses(
        (status = 200, description = "The report, as an attachment", content(
            (Object = "application/json"),
            ("text/html"),
            ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ), headers(("Content-Disposition" = String, description = "attachment; filename=\"sealtrail-TYPE-LOG-DATE.EXT\""))),
        (status = 400, description = "A bad or too long parameter (`invalid-query`, `parameter-too-long`), including a reconciliation without `name`, a `name` no data run was recorded under, or a `name` for another type", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No read access to the log, a tenant-restricted caller, or an access review for neither an admin nor an auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such log, or not a report type", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`busy`: `limits.max_reports` reports are being computed; retry after `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_report(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(ReportPath { log, kind }): PathArgs<ReportPath>,
    Params(q): Params<ReportQuery>,
) -> ApiResult<Response> {
    let asked = asked(&log, &kind, &q, Timestamp::now())?;
    answer(app, caller, asked).await
}
