//! `/`: a log's activity over a chosen range: events per hour or day and
//! failures per hour or day (uPlot charts drawn from JSON data blocks),
//! and the top actions and actors as SVG bar charts drawn on the server.
//! The numbers are the API's `stats` (`api::query::stats_of`), for all
//! events and for those with outcome `failure`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use sealtrail_event::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::view::{self, blocking_page, error_page, html, link, Time};
use super::{Layout, Viewer};
use crate::api::query::{self, EventQuery, StatsBody};
use crate::app::App;
use crate::problem::Problem;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/", get(overview))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverviewParams {
    log: Option<String>,
    range: Option<String>,
}

/// The ranges offered: name, label, seconds, bucket.
const RANGES: [(&str, &str, i64, &str); 4] = [
    ("1h", "last hour", 3_600, "hour"),
    ("24h", "last 24 hours", 86_400, "hour"),
    ("7d", "last 7 days", 7 * 86_400, "hour"),
    ("30d", "last 30 days", 30 * 86_400, "day"),
];

/// Bars shown in a top-N chart.
const TOP: usize = 10;

/// One bar of a server-drawn chart, laid out in SVG user units.
pub struct Bar {
    pub label: String,
    pub count: u64,
    pub href: String,
    pub y: u32,
    pub text_y: u32,
    pub width: u32,
}

/// A horizontal bar chart: labels left, bars right, counts at the bars' ends.
pub struct BarChart {
    pub title: String,
    pub id: &'static str,
    pub bars: Vec<Bar>,
    pub height: u32,
    pub bad: bool,
}

const ROW: u32 = 26;
/// Bars start at x = 230 (after the labels; see overview.html) and are at most this long.
const BAR_MAX: u32 = 300;

fn bar_chart(
    id: &'static str,
    title: &str,
    counts: &[query::Count],
    href: impl Fn(&str) -> String,
    bad: bool,
) -> BarChart {
    let top = &counts[..counts.len().min(TOP)];
    let max = top.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    let bars = top
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let y = i as u32 * ROW;
            Bar {
                label: view::cut_to(&c.value, 30),
                count: c.count,
                href: href(&c.value),
                y: y + 4,
                text_y: y + 18,
                width: ((c.count as f64 / max as f64) * BAR_MAX as f64).round().max(1.0) as u32,
            }
        })
        .collect::<Vec<_>>();
    BarChart {
        title: title.to_string(),
        id,
        height: (bars.len() as u32 * ROW).max(ROW),
        bars,
        bad,
    }
}

/// A time series as the page's script reads it: unix seconds and counts,
/// every bucket of the range present (zero where nothing happened).
fn series(stats: &StatsBody, label: &str, since: Timestamp, now: Timestamp, step: i64) -> serde_json::Value {
    let start = since.as_second().div_euclid(step) * step;
    let end = now.as_second();
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut t = start;
    while t <= end {
        x.push(t);
        y.push(0u64);
        t += step;
    }
    for tc in &stats.by_time {
        if let Ok(at) = tc.start.parse::<Timestamp>() {
            let slot = (at.as_second() - start).div_euclid(step);
            if let Some(v) = usize::try_from(slot).ok().and_then(|i| y.get_mut(i)) {
                *v += tc.count;
            }
        }
    }
    json!({"x": x, "series": [{"label": label, "values": y}]})
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    log: String,
    logs: Vec<String>,
    ranges: Vec<(&'static str, &'static str)>,
    range: String,
    since: Time,
    now: Time,
    total: u64,
    failures: u64,
    /// JSON for the charts, in `<script type="application/json">` blocks.
    rate_json: String,
    errors_json: String,
    /// Top actions, then top actors.
    charts: Vec<BarChart>,
    search: String,
    failed_search: String,
}

/// The overview of a server with no log the caller may read yet.
#[derive(Template)]
#[template(path = "overview_empty.html")]
struct EmptyOverview {
    layout: Layout,
}

/// JSON safe inside a `<script>` element: `<`, `>` and `&` escaped, so
/// no text from an event can close the element.
fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

async fn overview(State(app): State<Arc<App>>, viewer: Viewer, uri: Uri) -> Result<Response, Response> {
    let Query(p) = Query::<OverviewParams>::try_from_uri(&uri)
        .map_err(|e| error_page(&viewer, "/", Problem::bad_request("invalid-query", e.body_text())))?;
    let range_name = p.range.clone().unwrap_or_else(|| "24h".into());
    let Some(&(range, _, seconds, by)) = RANGES.iter().find(|r| r.0 == range_name) else {
        return Err(error_page(
            &viewer,
            "/",
            Problem::bad_request(
                "invalid-query",
                format!("range: {range_name:?}: use 1h, 24h, 7d or 30d"),
            ),
        ));
    };
    let now = super::view::next_second();
    let since = now.checked_sub(jiff::SignedDuration::from_secs(seconds)).unwrap_or(now);
    let caller = viewer.caller.clone();
    let raw = uri.query().map(str::to_string);
    let asked = p.log.clone();
    let found = blocking_page(&viewer, "/", move || {
        let logs = view::readable_logs(&app, &caller, asked.as_deref())?;
        let Some(log) = view::chosen_log(&logs, asked.as_deref()) else {
            return Ok(None);
        };
        let q = || EventQuery {
            since: Some(since.to_string()),
            until: Some(now.to_string()),
            by: Some(by.to_string()),
            ..EventQuery::default()
        };
        let all = query::stats_of(&app, &caller, &log, &q(), &raw)?;
        let failed = query::stats_of(
            &app,
            &caller,
            &log,
            &EventQuery {
                outcome: Some("failure".into()),
                ..q()
            },
            &raw,
        )?;
        Ok(Some((logs, log, all, failed)))
    })
    .await?;
    // A new server: nothing to chart yet, so say how to begin.
    let Some((logs, log, all, failed)) = found else {
        return Ok(view::html(&EmptyOverview {
            layout: viewer.layout("/"),
        }));
    };
    let step = if by == "day" { 86_400 } else { 3_600 };
    let (s, n) = (since.to_string(), now.to_string());
    let search_for = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("log", log.as_str()), ("since", s.as_str()), ("until", n.as_str())];
        pairs.extend_from_slice(extra);
        link("/search", &pairs)
    };
    let page = OverviewPage {
        layout: viewer.layout("/"),
        rate_json: script_json(&series(&all, "events", since, now, step)),
        errors_json: script_json(&series(&failed, "failures", since, now, step)),
        charts: vec![
            bar_chart(
                "top-actions",
                "Top actions",
                &all.by_action,
                |v| search_for(&[("action", v)]),
                false,
            ),
            bar_chart(
                "top-actors",
                "Top actors",
                &all.by_actor,
                |v| search_for(&[("actor", v)]),
                false,
            ),
        ],
        search: search_for(&[]),
        failed_search: search_for(&[("outcome", "failure")]),
        total: all.total,
        failures: failed.total,
        ranges: RANGES.iter().map(|r| (r.0, r.1)).collect(),
        range: range.to_string(),
        since: Time::of(since),
        now: Time::of(now),
        logs,
        log,
    };
    Ok(html(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_its_element() {
        let v = json!({"label": "</script><script>alert(1)</script>&"});
        let text = script_json(&v);
        assert!(
            !text.contains('<') && !text.contains('>') && !text.contains('&'),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn series_fill_every_bucket() {
        let since: Timestamp = "2026-03-01T10:30:00Z".parse().expect("time");
        let now: Timestamp = "2026-03-01T13:10:00Z".parse().expect("time");
        let stats = StatsBody {
            total: 5,
            by_action: vec![],
            by_actor: vec![],
            by_outcome: vec![],
            bucket: "hour".into(),
            by_time: vec![query::TimeCount {
                start: "2026-03-01T12:00:00Z".into(),
                count: 5,
            }],
        };
        let v = series(&stats, "events", since, now, 3600);
        assert_eq!(v["x"].as_array().map(Vec::len), Some(4), "10:00 to 13:00");
        assert_eq!(v["series"][0]["values"], json!([0, 0, 5, 0]));
    }

    #[test]
    fn bars_scale_to_the_largest() {
        let counts = vec![
            query::Count {
                value: "a".into(),
                count: 10,
            },
            query::Count {
                value: "b".into(),
                count: 5,
            },
        ];
        let c = bar_chart("x", "X", &counts, |v| format!("/s?{v}"), false);
        assert_eq!(c.bars[0].width, BAR_MAX);
        assert_eq!(c.bars[1].width, BAR_MAX / 2);
        assert_eq!(c.bars[1].y, ROW + 4);
        assert_eq!(c.height, 2 * ROW);
    }
}
