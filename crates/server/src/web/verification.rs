//! The verification page, `/verification`: each log the caller may read
//! with its latest signed checkpoint and the result of its last full
//! verification; admins and auditors start a full verification of a log
//! from it (`POST /verification`), which runs in the background.
//!
//! A full verification is the offline check of the `sealtrail verify`
//! command ([`sealtrail_ledger::verify::verify_log`]): every leaf hash
//! recomputed from the stored entries, the tree rebuilt and compared with
//! the stored hashes and the signed checkpoint. Its result is kept in
//! memory for the page and recorded in the system log as `log.verified`.
//!
//! What this is not: the background scrub ([`crate::integrity`]), which
//! checks entries a few at a time forever; the page shows its last full
//! pass beside.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use sealtrail_event::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::stream::readable_logs;
use super::{Layout, Viewer};
use crate::api::{b64, blocking};
use crate::app::{App, Caller};
use crate::problem::Problem;
use sealtrail_meta::Scope;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/verification", get(page).post(start))
}

/// The last full verification of one log.
#[derive(Debug, Clone)]
pub struct Run {
    /// When it started and ended (RFC 3339); `ended` is None while running.
    pub started: String,
    pub ended: Option<String>,
    /// `running`, `intact`, `failed` (findings) or `error` (could not run).
    pub result: &'static str,
    /// Entries checked.
    pub entries: u64,
    /// The size of the signed checkpoint it checked.
    pub checkpoint_size: Option<u64>,
    /// What was found wrong, or why it could not run.
    pub findings: Vec<String>,
    /// Who started it.
    pub by: String,
}

/// The last full verification of each log, by log name.
#[derive(Default)]
pub struct Verifications {
    runs: Mutex<HashMap<String, Run>>,
}

impl Verifications {
    pub fn get(&self, log: &str) -> Option<Run> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).get(log).cloned()
    }

    fn set(&self, log: &str, run: Run) {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(log.to_string(), run);
    }

    /// Mark `log` as being verified; false if a run is going already.
    fn begin(&self, log: &str, run: Run) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.get(log).is_some_and(|r| r.ended.is_none()) {
            return false;
        }
        runs.insert(log.to_string(), run);
        true
    }
}

/// One row of the page.
struct LogRow {
    name: String,
    size: u64,
    root: String,
    /// When the last signed entry was received, and how long ago.
    signed_at: String,
    age: String,
    run: Option<Run>,
    scrub_pass: String,
}

#[derive(Template)]
#[template(path = "verification.html")]
struct VerificationPage {
    layout: Layout,
    rows: Vec<LogRow>,
    /// Whether this caller may start a verification.
    can_run: bool,
}

/// "3 min ago"-style age of `millis` milliseconds.
fn age(millis: i64) -> String {
    let s = millis.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn rows(app: &App, caller: &Caller) -> Result<Vec<LogRow>, Problem> {
    let health: HashMap<String, String> = app
        .log_health()
        .into_iter()
        .map(|h| {
            let pass = h.scrub.last_full_pass_at.unwrap_or_else(|| "none yet".into());
            (h.name, pass)
        })
        .collect();
    let now = Timestamp::now();
    let mut out = Vec::new();
    for name in readable_logs(app, caller) {
        let Ok(trail) = app.trail(&name) else { continue };
        let (checkpoint, _) = trail.log().checkpoint();
        let (signed_at, since) = match checkpoint.size.checked_sub(1).map(|last| trail.read(last)) {
            Some(Ok(found)) => {
                let at = found.event.received_at;
                (at.to_string(), age(now.as_millisecond() - at.as_millisecond()))
            }
            Some(Err(_)) => ("unreadable".into(), String::new()),
            None => ("empty log".into(), String::new()),
        };
        out.push(LogRow {
            size: checkpoint.size,
            root: b64(&checkpoint.root),
            signed_at,
            age: since,
            run: app.verifications.get(&name),
            scrub_pass: health.get(&name).cloned().unwrap_or_else(|| "not open".into()),
            name,
        });
    }
    Ok(out)
}

/// `GET /verification`.
async fn page(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, Problem> {
    viewer.caller.require(Scope::Read)?;
    let layout = viewer.layout("/verification");
    let caller = viewer.caller;
    let can_run = caller.require_system_read().is_ok();
    let rows = blocking(move || rows(&app, &caller)).await?;
    let html = VerificationPage { layout, rows, can_run }
        .render()
        .map_err(|e| Problem::internal(format!("rendering the verification page: {e}")))?;
    Ok(Html(html).into_response())
}

#[derive(Debug, Deserialize)]
struct StartForm {
    log: String,
    /// Checked by the session layer; present in every state-changing form.
    #[serde(default)]
    #[allow(dead_code)]
    csrf: String,
}

/// `POST /verification`: start a full verification of `log` (admins and
/// auditors), then back to the page.
async fn start(State(app): State<Arc<App>>, viewer: Viewer, Form(form): Form<StartForm>) -> Result<Response, Problem> {
    let caller = viewer.caller;
    caller.require_system_read()?;
    let log = form.log;
    let name = log.clone();
    let check = {
        let (app, caller) = (app.clone(), caller.clone());
        blocking(move || {
            if !readable_logs(&app, &caller).contains(&name) {
                return Err(Problem::not_found(format!("no log named {name:?}")));
            }
            Ok(())
        })
    };
    check.await?;
    let run = Run {
        started: Timestamp::now().to_string(),
        ended: None,
        result: "running",
        entries: 0,
        checkpoint_size: None,
        findings: Vec::new(),
        by: match caller.actor()["id"].as_str() {
            Some(id) => id.to_string(),
            None => "unknown".into(),
        },
    };
    if !app.verifications.begin(&log, run.clone()) {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!("log {log} is being verified already"),
        ));
    }
    tokio::task::spawn_blocking(move || verify(&app, &caller, &log, run));
    Ok(Redirect::to("/verification").into_response())
}

/// Verify `log` in full and record the result.
fn verify(app: &App, caller: &Caller, log: &str, mut run: Run) {
    let dir = app.data.log_dir(log);
    let report = sealtrail_ledger::verify::verify_log(&**app.data.storage(), &dir, None, None);
    match &report {
        Ok(r) => {
            run.result = if r.intact() { "intact" } else { "failed" };
            run.entries = r.entries;
            run.checkpoint_size = r.checkpoint.as_ref().map(|c| c.size);
            run.findings = r.findings.iter().map(ToString::to_string).collect();
            if r.more_findings > 0 {
                run.findings.push(format!("and {} more findings", r.more_findings));
            }
        }
        Err(e) => {
            run.result = "error";
            run.findings = vec![e.to_string()];
        }
    }
    run.ended = Some(Timestamp::now().to_string());
    let details = json!({
        "result": run.result,
        "entries": run.entries,
        "checkpoint_size": run.checkpoint_size,
        "findings": run.findings.iter().take(10).collect::<Vec<_>>(),
        "started_at": run.started,
    });
    if let Err(p) = app.record(caller, "log.verified", log, details) {
        tracing::error!(log, "recording the verification of log {log}: {}", p.detail);
    }
    if run.result != "intact" {
        tracing::error!(
            log,
            result = run.result,
            "full verification of log {log}: {:?}",
            run.findings
        );
    }
    app.verifications.set(log, run);
}
