//! `/search`: events of a log by every filter of
//! `GET /api/v1/logs/{log}/events`, a page at a time, and the export of the
//! same filter (`/search/export`, CSV or XLSX).
//!
//! A search's URL is its deep link: relative times (`since=1h`, or the
//! quick range `last=24h`) are made absolute and empty fields dropped,
//! by redirecting a plain form submission to that canonical URL, or, for
//! htmx, by answering the results alone with `HX-Push-Url` set to it. The
//! query itself is the API's (`api::query::find`), authorised and
//! recorded the same way.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sealtrail_event::Timestamp;
use sealtrail_trail::when::parse_time;
use serde::Deserialize;

use super::view::{self, blocking_page, error_page, html, link, EventRow, Time};
use super::{Layout, Viewer};
use crate::api::query::{self, EventQuery};
use crate::app::{App, Caller};
use crate::problem::Problem;

/// Events per page unless `limit` says otherwise.
const PAGE: usize = 50;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/search", get(search))
        .route("/search/export", get(export))
}

/// The parameters of `/search`: those of the events API, plus `log`,
/// `last` (a quick range: since that long ago until now) and, for the
/// export, `format`. Empty values (blank form fields) count as absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub log: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub tenant: Option<String>,
    pub workflow: Option<String>,
    pub service: Option<String>,
    pub outcome: Option<String>,
    pub severity: Option<String>,
    pub ip: Option<String>,
    pub session: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub received_since: Option<String>,
    pub received_until: Option<String>,
    pub text: Option<String>,
    pub last: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

/// The filter fields in the order of the form and of canonical URLs.
const FILTERS: [&str; 15] = [
    "text",
    "action",
    "actor",
    "target",
    "tenant",
    "outcome",
    "severity",
    "workflow",
    "service",
    "ip",
    "session",
    "since",
    "until",
    "received_since",
    "received_until",
];

/// A search in canonical form: every value trimmed, empty ones dropped,
/// relative times made absolute against one `now`.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub log: Option<String>,
    /// `(name, value)` of each given filter, in the form's order (`FILTERS`).
    pub filters: Vec<(&'static str, String)>,
    pub limit: Option<String>,
    pub after: Option<String>,
    pub order: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `spec` made absolute if it is a time relative to now (`30m`, `7d`);
/// anything else is kept as given, for the filter to judge.
fn absolute(spec: &str, now: Timestamp) -> String {
    let later = now.checked_add(jiff::SignedDuration::from_secs(1)).unwrap_or(now);
    match (parse_time(spec, now), parse_time(spec, later)) {
        (Ok(a), Ok(b)) if a != b => a.to_string(),
        _ => spec.to_string(),
    }
}

impl Search {
    pub fn of(p: &SearchParams, now: Timestamp) -> Search {
        let mut filters = Vec::new();
        let last = given(&p.last);
        for name in FILTERS {
            let value = match name {
                "text" => given(&p.text),
                "action" => given(&p.action),
                "actor" => given(&p.actor),
                "target" => given(&p.target),
                "tenant" => given(&p.tenant),
                "outcome" => given(&p.outcome),
                "severity" => given(&p.severity),
                "workflow" => given(&p.workflow),
                "service" => given(&p.service),
                "ip" => given(&p.ip),
                "session" => given(&p.session),
                // A quick range replaces since and until.
                "since" => match &last {
                    Some(l) => Some(absolute(l, now)),
                    None => given(&p.since).map(|s| absolute(&s, now)),
                },
                "until" => match &last {
                    Some(_) => Some(now.to_string()),
                    None => given(&p.until).map(|s| absolute(&s, now)).or_else(|| {
                        // "since 1h" means "the last hour": pin its end too,
                        // so the link shows the same events tomorrow.
                        given(&p.since)
                            .filter(|s| absolute(s, now) != *s)
                            .map(|_| now.to_string())
                    }),
                },
                "received_since" => given(&p.received_since).map(|s| absolute(&s, now)),
                "received_until" => given(&p.received_until).map(|s| absolute(&s, now)).or_else(|| {
                    given(&p.received_since)
                        .filter(|s| absolute(s, now) != *s)
                        .map(|_| now.to_string())
                }),
                _ => None,
            };
            if let Some(v) = value {
                filters.push((name, v));
            }
        }
        Search {
            log: given(&p.log),
            filters,
            limit: given(&p.limit),
            after: given(&p.after),
            order: given(&p.order),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.filters.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The query pairs: `log`, the filters, then paging (`after` only if
    /// `with_after`).
    fn pairs(&self, with_paging: bool, with_after: bool) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        if let Some(l) = &self.log {
            out.push(("log", l.as_str()));
        }
        out.extend(self.filters.iter().map(|(n, v)| (*n, v.as_str())));
        if with_paging {
            if let Some(o) = &self.order {
                out.push(("order", o.as_str()));
            }
            if let Some(l) = &self.limit {
                out.push(("limit", l.as_str()));
            }
            if with_after {
                if let Some(a) = &self.after {
                    out.push(("after", a.as_str()));
                }
            }
        }
        out
    }

    /// The canonical URL of this search.
    pub fn url(&self) -> String {
        link("/search", &self.pairs(true, true))
    }

    /// The URL of this search's page starting after `cursor`.
    fn url_after(&self, cursor: Option<u64>) -> String {
        let mut pairs = self.pairs(true, false);
        let c = cursor.map(|c| c.to_string());
        if let Some(c) = &c {
            pairs.push(("after", c.as_str()));
        }
        link("/search", &pairs)
    }

    fn export_url(&self, format: &str) -> String {
        let mut pairs = self.pairs(false, false);
        pairs.push(("format", format));
        link("/search/export", &pairs)
    }

    /// The events API's query for this search.
    pub fn query(&self) -> Result<EventQuery, Problem> {
        let own = |name: &str| self.get(name).map(str::to_string);
        let number = |name: &str, v: &Option<String>| -> Result<Option<u64>, Problem> {
            v.as_deref()
                .map(|s| {
                    s.parse::<u64>().map_err(|_| {
                        Problem::bad_request("invalid-query", format!("{name}: {s:?} is not a whole number"))
                    })
                })
                .transpose()
        };
        Ok(EventQuery {
            action: own("action"),
            actor: own("actor"),
            target: own("target"),
            tenant: own("tenant"),
            workflow: own("workflow"),
            service: own("service"),
            outcome: own("outcome"),
            severity: own("severity"),
            ip: own("ip"),
            session: own("session"),
            since: own("since"),
            until: own("until"),
            received_since: own("received_since"),
            received_until: own("received_until"),
            text: own("text"),
            limit: Some(number("limit", &self.limit)?.map_or(PAGE, |n| usize::try_from(n).unwrap_or(usize::MAX))),
            after: number("after", &self.after)?,
            order: self.order.clone(),
            ..EventQuery::default()
        })
    }
}

/// One input of the filter form.
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub value: String,
    /// Choices of a `<select>`: `(value, label)`; empty for a text input.
    pub options: Vec<(String, String)>,
    pub readonly: bool,
}

impl Field {
    pub fn selected(&self, value: &str) -> bool {
        self.value == value
    }
}

/// Name, label, hint and the choices of a select (none for a text input).
type FieldSpec = (&'static str, &'static str, &'static str, Vec<(String, String)>);

const TIME_HINT: &str = "30m, 24h, 7d, a date or an RFC 3339 time";

fn fields(search: &Search, caller: &Caller) -> Vec<Field> {
    let opts = |list: &[&str]| -> Vec<(String, String)> {
        std::iter::once((String::new(), "any".to_string()))
            .chain(list.iter().map(|s| (s.to_string(), s.to_string())))
            .collect()
    };
    let spec: [FieldSpec; 15] = [
        (
            "text",
            "Text",
            "words and \"quoted phrases\" in message, error or details",
            vec![],
        ),
        ("action", "Action", "exact or a glob: lead.*, *.deleted", vec![]),
        ("actor", "Actor id", "actor.id", vec![]),
        ("target", "Target", "TYPE:ID, or TYPE", vec![]),
        ("tenant", "Tenant", "", vec![]),
        ("outcome", "Outcome", "", opts(&["success", "failure", "unknown"])),
        (
            "severity",
            "Severity at least",
            "",
            opts(&[
                "debug",
                "info",
                "notice",
                "warning",
                "error",
                "critical",
                "alert",
                "emergency",
            ]),
        ),
        ("workflow", "Workflow", "source.workflow", vec![]),
        ("service", "Service", "source.service", vec![]),
        ("ip", "IP address", "context.ip", vec![]),
        ("session", "Session id", "context.session_id", vec![]),
        ("since", "Occurred since", TIME_HINT, vec![]),
        ("until", "Occurred before", TIME_HINT, vec![]),
        ("received_since", "Received since", TIME_HINT, vec![]),
        ("received_until", "Received before", TIME_HINT, vec![]),
    ];
    spec.into_iter()
        .map(|(name, label, hint, options)| {
            let own_tenant = (name == "tenant").then(|| caller.tenant()).flatten();
            Field {
                name,
                label,
                hint: if own_tenant.is_some() {
                    "your access is limited to this tenant"
                } else {
                    hint
                },
                value: own_tenant
                    .map(str::to_string)
                    .or_else(|| search.get(name).map(str::to_string))
                    .unwrap_or_default(),
                options,
                readonly: own_tenant.is_some(),
            }
        })
        .collect()
}

/// The results part of the page, also answered alone to htmx.
pub struct Results {
    pub log: String,
    pub rows: Vec<EventRow>,
    /// Why there are no results: a refused filter, named.
    pub error: Option<String>,
    pub next: Option<String>,
    pub first: Option<String>,
    pub csv: String,
    pub xlsx: String,
    pub url: String,
    pub now: Time,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    layout: Layout,
    logs: Vec<String>,
    log: String,
    fields: Vec<Field>,
    last: Vec<(&'static str, &'static str)>,
    order: String,
    limit: String,
    results: Results,
}

#[derive(Template)]
#[template(path = "search_results.html")]
struct ResultsPart {
    results: Results,
}

/// Quick ranges offered beside the time fields.
const LAST: [(&str, &str); 6] = [
    ("", "—"),
    ("15m", "last 15 minutes"),
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
];

fn parse_params(viewer: &Viewer, uri: &Uri) -> Result<SearchParams, Response> {
    Query::<SearchParams>::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| error_page(viewer, "/search", Problem::bad_request("invalid-query", e.body_text())))
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request") && !headers.contains_key("hx-history-restore-request")
}

async fn search(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let params = parse_params(&viewer, &uri)?;
    if params.format.is_some() {
        return Err(error_page(
            &viewer,
            "/search",
            Problem::bad_request("invalid-query", "format: exports are at /search/export"),
        ));
    }
    let now = super::view::next_second();
    let mut search = Search::of(&params, now);
    let htmx = is_htmx(&headers);
    let canonical = search.url();
    if uri.query().is_some() && uri.path_and_query().map(|pq| pq.as_str()) != Some(canonical.as_str()) && !htmx {
        return Ok(Redirect::to(&canonical).into_response());
    }
    let caller = viewer.caller.clone();
    let asked = search.log.clone();
    let (logs, log) = {
        let app = app.clone();
        let caller = caller.clone();
        blocking_page(&viewer, "/search", move || {
            let logs = view::readable_logs(&app, &caller, asked.as_deref())?;
            let log = view::chosen_log(&logs, asked.as_deref());
            Ok((logs, log))
        })
        .await?
    };
    let Some(log) = log else {
        return Err(error_page(
            &viewer,
            "/search",
            Problem::not_found("there is no log you may read"),
        ));
    };
    search.log = Some(log.clone());
    let raw = uri.query().map(str::to_string);
    let (rows, next, error) = {
        let app = app.clone();
        let log = log.clone();
        let search = search.clone();
        blocking_page(&viewer, "/search", move || {
            let q = match search.query() {
                Ok(q) => q,
                Err(p) => return Ok((Vec::new(), None, Some(p))),
            };
            match query::find(&app, &caller, &log, &q, &raw, "search", |_| {}) {
                Ok((_, found, page)) => {
                    let next = (found.len() == page.limit)
                        .then(|| found.last().map(|f| f.index))
                        .flatten();
                    let rows = found.iter().map(|f| EventRow::of(&log, f)).collect();
                    Ok((rows, next, None))
                }
                // The caller's own mistakes are shown beside the form;
                // anything else is the server's and gets the error page.
                Err(p) if p.status == 400 || p.status == 403 => Ok((Vec::new(), None, Some(p))),
                Err(p) => Err(p),
            }
        })
        .await?
    };
    let status = error.as_ref().map(|p| p.status);
    let results = Results {
        log: log.clone(),
        rows,
        error: error.map(|p| p.detail),
        next: next.map(|n| search.url_after(Some(n))),
        first: search.after.is_some().then(|| search.url_after(None)),
        csv: search.export_url("csv"),
        xlsx: search.export_url("xlsx"),
        url: search.url(),
        now: Time::of(now),
    };
    let mut response = if htmx {
        html(&ResultsPart { results })
    } else {
        html(&SearchPage {
            layout: viewer.layout("/search"),
            logs,
            log,
            fields: fields(&search, &viewer.caller),
            last: LAST.to_vec(),
            order: search.order.clone().unwrap_or_default(),
            limit: search.limit.clone().unwrap_or_default(),
            results,
        })
    };
    if htmx {
        if let Ok(v) = HeaderValue::from_str(&search.url()) {
            response.headers_mut().insert("hx-push-url", v);
        }
    }
    // htmx swaps only successful answers: a refused filter is shown in
    // the results it replaces, and the full page carries the status.
    if let Some(s) = status
        .filter(|_| !htmx)
        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
    {
        *response.status_mut() = s;
    }
    Ok(response)
}

/// The export of a search's filter (`format` `csv` or `xlsx`; the API's
/// `jsonl` and `json` too), through the API's export.
async fn export(State(app): State<Arc<App>>, viewer: Viewer, uri: Uri) -> Result<Response, Response> {
    let params = parse_params(&viewer, &uri)?;
    let search = Search::of(&params, Timestamp::now());
    let Some(log) = search.log.clone() else {
        return Err(error_page(
            &viewer,
            "/search",
            Problem::bad_request("invalid-query", "log: name the log to export"),
        ));
    };
    let mut q = search.query().map_err(|p| error_page(&viewer, "/search", p))?;
    q.limit = None;
    q.after = None;
    q.order = None;
    q.format = Some(given(&params.format).unwrap_or_else(|| "csv".into()));
    let raw = uri.query().map(str::to_string);
    query::export_as(app, viewer.caller.clone(), log, q, raw)
        .await
        .map_err(|p| error_page(&viewer, "/search", p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a time")
    }

    #[test]
    fn relative_times_become_absolute_and_blanks_go() {
        let now = at("2026-03-01T12:00:00Z");
        let p = SearchParams {
            log: Some("main".into()),
            actor: Some("  ".into()),
            action: Some(" lead.* ".into()),
            since: Some("1h".into()),
            ..SearchParams::default()
        };
        let s = Search::of(&p, now);
        assert_eq!(
            s.url(),
            "/search?log=main&action=lead.%2A&since=2026-03-01T11%3A00%3A00Z&until=2026-03-01T12%3A00%3A00Z"
        );
        // The canonical form is a fixed point: the redirect happens once.
        let again = SearchParams {
            log: Some("main".into()),
            action: Some("lead.*".into()),
            since: Some("2026-03-01T11:00:00Z".into()),
            until: Some("2026-03-01T12:00:00Z".into()),
            ..SearchParams::default()
        };
        assert_eq!(Search::of(&again, at("2026-03-02T00:00:00Z")).url(), s.url());
    }

    #[test]
    fn a_quick_range_sets_both_ends() {
        let now = at("2026-03-01T12:00:00Z");
        let p = SearchParams {
            last: Some("7d".into()),
            since: Some("2020-01-01".into()),
            ..SearchParams::default()
        };
        let s = Search::of(&p, now);
        assert_eq!(s.get("since"), Some("2026-02-22T12:00:00Z"));
        assert_eq!(s.get("until"), Some("2026-03-01T12:00:00Z"));
    }

    #[test]
    fn absolute_and_bad_times_are_kept_for_the_filter_to_judge() {
        let now = at("2026-03-01T12:00:00Z");
        assert_eq!(absolute("2026-01-31", now), "2026-01-31");
        assert_eq!(absolute("yesterday", now), "yesterday");
        assert_eq!(absolute("30m", now), "2026-03-01T11:30:00Z");
    }

    #[test]
    fn paging_numbers_are_checked_by_name() {
        let s = Search {
            limit: Some("ten".into()),
            ..Search::default()
        };
        let e = s.query().expect_err("refused");
        assert!(e.detail.contains("limit"), "{}", e.detail);
    }
}
