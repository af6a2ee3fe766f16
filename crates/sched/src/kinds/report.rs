//! `report`: compute a report over the last `period` of a log
//! (`sealtrail_report::generate`, as `sealtrail report` does) and deliver
//! it through alert channels (`sealtrail_report::deliver`): an email
//! channel gets the HTML as body and the XLSX attached, a webhook channel
//! the JSON.
//!
//! Fields: `report` (`summary`, `compliance`, `access-review` or
//! `reconciliation`, required), `channels` (names of alert channels, at
//! least one, required), `log` (default `default`), `period` (how far back
//! from the run, e.g. `24h`, `7d`; default `24h`), `comparison` (the
//! name of the comparison a `reconciliation` report covers, as its data
//! runs were recorded: required for it, refused for the other types; a
//! `data-diff` or `data-keys` job records its runs under the job's name).
//!
//! A run fails if any channel refuses; its retry sends to every channel
//! again, so a receiver may get a report twice (the report's checkpoint
//! and period tell copies apart).

use std::collections::HashMap;
use std::time::Duration;

use sealtrail_alert::net::Destinations;
use sealtrail_alert::notify::http_client;
use sealtrail_alert::store::list_channels;
use sealtrail_event::Timestamp;
use sealtrail_report::{deliver, generate, ReportKind, Request};
use sealtrail_trail::retention::parse_age;
use serde_json::Value;

use crate::kind::{string_param, JobKind, Params, RunContext};

/// Longest a single delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most channels one report job sends to.
pub const MAX_CHANNELS: usize = 16;

/// The `report` job type; `destinations` is the network policy webhooks
/// are held to (the server's `alerts.allowed_networks`).
pub struct Report {
    pub destinations: Destinations,
}

fn kind(params: &Params) -> Result<ReportKind, String> {
    string_param(params, "report")?
        .parse()
        .map_err(|e| format!("report: {e}"))
}

fn log(params: &Params) -> Result<&str, String> {
    match params.get("log") {
        None | Some(Value::Null) => Ok("default"),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("log: expected a string, found {other}")),
    }
}

/// The comparison a reconciliation report covers (field `comparison`:
/// `name` is the job's own); whether its data runs exist is known only
/// when the job runs.
fn comparison(params: &Params, kind: ReportKind) -> Result<Option<String>, String> {
    let given = match params.get("comparison") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => return Err(format!("comparison: expected the name of a comparison, found {other}")),
    };
    match (kind, given) {
        (ReportKind::Reconciliation, None) => {
            Err("comparison: a reconciliation report covers one named comparison: give its name".into())
        }
        (ReportKind::Reconciliation, Some(n))
            if n.is_empty() || n.chars().count() > sealtrail_event::limits::ID_CHARS =>
        {
            Err(format!(
                "comparison: {n:?} is not a comparison name (1 to {} characters)",
                sealtrail_event::limits::ID_CHARS
            ))
        }
        (ReportKind::Reconciliation, Some(n)) => Ok(Some(n)),
        (_, None) => Ok(None),
        (other, Some(n)) => Err(format!(
            "comparison: {n:?}: only a reconciliation report covers a named comparison, not {other}"
        )),
    }
}

fn period(params: &Params) -> Result<Duration, String> {
    match params.get("period") {
        None | Some(Value::Null) => Ok(Duration::from_secs(24 * 3600)),
        Some(Value::String(s)) => parse_age(s).map_err(|e| format!("period: {e}")),
        Some(other) => Err(format!(
            "period: expected a string such as \"24h\" or \"7d\", found {other}"
        )),
    }
}

fn channels(params: &Params) -> Result<Vec<&str>, String> {
    let Some(Value::Array(list)) = params.get("channels") else {
        return Err("channels: missing or not a list (name at least one alert channel)".into());
    };
    if list.is_empty() || list.len() > MAX_CHANNELS {
        return Err(format!(
            "channels: give 1 to {MAX_CHANNELS} channel names, not {}",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .ok_or_else(|| format!("channels[{i}]: expected a channel name, found {v}"))
        })
        .collect()
}

impl JobKind for Report {
    fn name(&self) -> &'static str {
        "report"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["report", "channels", "log", "period", "comparison"]
    }

    fn check(&self, params: &Params) -> Result<(), String> {
        comparison(params, kind(params)?)?;
        sealtrail_ledger::datadir::check_log_name(log(params)?).map_err(|e| format!("log: {e}"))?;
        period(params)?;
        channels(params).map(|_| ())
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String> {
        let params = &ctx.job.params;
        let (kind, log, period, names) = (kind(params)?, log(params)?, period(params)?, channels(params)?);
        let comparison = comparison(params, kind)?;
        // Channels first: a job naming one that is gone fails before any
        // work.
        let meta = &ctx.env.meta;
        let known: HashMap<String, _> = list_channels(&meta.lock(), || meta.secrets())
            .map_err(|e| format!("reading the alert channels: {e}"))?
            .into_iter()
            .map(|c| (c.spec.name.clone(), c.spec))
            .collect();
        let specs = names
            .iter()
            .map(|n| {
                known
                    .get(*n)
                    .ok_or_else(|| format!("channels: no alert channel named {n:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = Timestamp::now();
        let since = now
            .checked_sub(jiff_span(period)?)
            .map_err(|e| format!("period: {e}"))?;
        let request = Request {
            kind,
            log: log.to_string(),
            since: Some(since),
            until: Some(now),
            now,
            name: comparison.clone(),
        };
        let report = generate(&ctx.env.data_dir, &request).map_err(|e| e.to_string())?;
        let http =
            http_client(SEND_TIMEOUT, self.destinations.clone()).map_err(|e| format!("making the HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the delivery runtime: {e}"))?;
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        for spec in specs {
            match runtime.block_on(deliver(&report, spec, &http, now.as_second())) {
                Ok(d) => sent.push(format!("{} ({})", spec.name, d.status)),
                Err(e) => failed.push(e.to_string()),
            }
        }
        let span = params.get("period").and_then(Value::as_str).unwrap_or("24h");
        let of = comparison.map(|n| format!(" of comparison {n:?}")).unwrap_or_default();
        let what = format!(
            "{kind} report{of} of log {log} over the last {span}, checkpoint size {}",
            report.checkpoint.size
        );
        if failed.is_empty() {
            Ok(format!("{what}, delivered to {}", sent.join(", ")))
        } else {
            Err(format!(
                "{what}: delivery failed: {}{}",
                failed.join("; "),
                if sent.is_empty() {
                    String::new()
                } else {
                    format!(" (delivered to {})", sent.join(", "))
                }
            ))
        }
    }
}

fn jiff_span(d: Duration) -> Result<jiff::SignedDuration, String> {
    jiff::SignedDuration::try_from(d).map_err(|e| format!("period: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(params: Value) -> Result<(), String> {
        let Value::Object(params) = params else {
            panic!("an object");
        };
        Report {
            destinations: Destinations::default(),
        }
        .check(&params)
    }

    #[test]
    fn a_reconciliation_job_names_its_comparison_and_only_it_does() {
        let channels = json!(["audit-mail"]);
        assert_eq!(
            check(json!({"report": "reconciliation", "comparison": "nightly-invoices", "channels": channels})),
            Ok(())
        );
        assert_eq!(
            check(json!({"report": "reconciliation", "channels": channels})),
            Err("comparison: a reconciliation report covers one named comparison: give its name".into())
        );
        assert_eq!(
            check(json!({"report": "reconciliation", "comparison": " ", "channels": channels})),
            Err("comparison: \"\" is not a comparison name (1 to 256 characters)".into())
        );
        assert_eq!(
            check(json!({"report": "reconciliation", "comparison": 7, "channels": channels})),
            Err("comparison: expected the name of a comparison, found 7".into())
        );
        assert_eq!(
            check(json!({"report": "summary", "comparison": "nightly-invoices", "channels": channels})),
            Err(
                "comparison: \"nightly-invoices\": only a reconciliation report covers a named comparison, not summary"
                    .into()
            )
        );
        assert_eq!(check(json!({"report": "summary", "channels": channels})), Ok(()));
    }
}
