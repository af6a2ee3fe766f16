//! The `summary` report: volumes, top actions, actors and targets,
//! failures and errors with examples, duration percentiles, alerts fired
//! and the verification status, all for one period.

use std::collections::{BTreeMap, HashMap};

use sealtrail_alert::store::list_alerts;
use sealtrail_event::{Outcome, Timestamp};
use sealtrail_trail::{Bucket, Facet, Filter, Stats};

use crate::gather::{self, at_second, counts, in_period, newest, trail_err};
use crate::model::{AlertItem, Alerts, Body, Count, Examples, Point, Report, Summary, Timing};
use crate::{ReportError, Request, Sources, EXAMPLES, MAX_ALERTS_READ, TOP, TOP_ALERTS, TOP_TIMINGS};

/// Periods up to this long are charted by the hour, longer ones by the day.
const HOURLY_UP_TO_SECONDS: i64 = 3 * 86_400;
/// The most buckets a series is filled with empty ones to.
const MAX_FILLED_BUCKETS: i64 = 4_000;

pub(crate) fn generate(sources: &Sources, request: &Request) -> Result<Report, ReportError> {
    let log = sources.log.as_str();
    let trail = &sources.trail;
    let checkpoint = gather::checkpoint(log, trail)?;
    let filter = in_period(request);
    let bucket = match (request.since, request.until) {
        (Some(s), Some(u)) if u.as_second() - s.as_second() <= HOURLY_UP_TO_SECONDS => Bucket::Hour,
        (Some(s), None) if request.now.as_second() - s.as_second() <= HOURLY_UP_TO_SECONDS => Bucket::Hour,
        _ => Bucket::Day,
    };
    let err = trail_err(log);
    let stats = trail.stats(&filter, bucket).map_err(&err)?;
    let targets = trail.facet(&filter, Facet::Target).map_err(&err)?;
    // The period's counts hold the failures' counts: only their examples
    // are asked for.
    let failed = Filter {
        outcome: Some(Outcome::Failure),
        ..filter.clone()
    };
    let failures = Examples {
        count: stats
            .by_outcome
            .iter()
            .find(|(o, _)| o == Outcome::Failure.as_str())
            .map_or(0, |(_, n)| *n),
        by_action: counts(stats.failures_by_action.clone(), TOP),
        examples: newest(log, trail, &failed, EXAMPLES)?,
    };
    let errors = examples(
        sources,
        &Filter {
            failures: true,
            ..filter.clone()
        },
    )?;
    let mut timings = trail.performance(&filter).map_err(&err)?;
    timings.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.action.cmp(&b.action)));
    let performance = timings
        .into_iter()
        .take(TOP_TIMINGS)
        .map(|p| Timing {
            action: p.action,
            count: p.count,
            min: p.min,
            max: p.max,
            mean: p.mean,
            p50: p.p50,
            p95: p.p95,
            p99: p.p99,
            exact: p.exact,
        })
        .collect();
    let until = request.until.unwrap_or(request.now);
    let verification = gather::verification(sources, until, &checkpoint)?;
    let alerts = alerts(sources, request)?;
    let volume = series(&stats, bucket, request.since, request.until);
    let summary = Summary {
        total: stats.total,
        by_action: stats.by_action.iter().cloned().collect::<BTreeMap<_, _>>(),
        by_outcome: stats.by_outcome.iter().cloned().collect::<BTreeMap<_, _>>(),
        bucket: match bucket {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        },
        volume,
        top_actions: counts(stats.by_action.clone(), TOP),
        top_actors: counts(stats.by_actor.clone(), TOP),
        top_targets: counts(targets, TOP),
        distinct_actors: stats.by_actor.len() as u64,
        failures,
        errors,
        performance,
        alerts,
        verification,
    };
    Ok(Report {
        report: "summary",
        title: format!("Summary of log {log}"),
        log: log.to_string(),
        generated_at: request.now.to_string(),
        period: gather::period(request),
        checkpoint,
        empty: summary.total == 0,
        body: Body::Summary(Box::new(summary)),
    })
}

/// Count, counts by action and the newest examples of `filter`.
fn examples(sources: &Sources, filter: &Filter) -> Result<Examples, ReportError> {
    let log = sources.log.as_str();
    let stats = sources.trail.stats(filter, Bucket::Day).map_err(trail_err(log))?;
    Ok(Examples {
        count: stats.total,
        by_action: counts(stats.by_action, TOP),
        examples: newest(log, &sources.trail, filter, EXAMPLES)?,
    })
}

/// The buckets from the period's start to its end, empty ones included
/// (within [`MAX_FILLED_BUCKETS`]); an open bound is the first or last
/// non-empty bucket.
fn series(stats: &Stats, bucket: Bucket, since: Option<Timestamp>, until: Option<Timestamp>) -> Vec<Point> {
    let width = match bucket {
        Bucket::Hour => 3_600,
        Bucket::Day => 86_400,
    };
    let counted: HashMap<i64, u64> = stats.by_time.iter().map(|(t, n)| (t.as_second(), *n)).collect();
    let floor = |s: i64| s.div_euclid(width) * width;
    let first = since
        .map(|t| floor(t.as_second()))
        .or_else(|| stats.by_time.first().map(|(t, _)| t.as_second()));
    // `until` is exclusive: the last bucket is the one holding the
    // instant just before it.
    let last = until
        .map(|t| floor(t.as_second() - 1))
        .or_else(|| stats.by_time.last().map(|(t, _)| t.as_second()));
    match (first, last) {
        (Some(first), Some(last)) if last >= first && (last - first) / width < MAX_FILLED_BUCKETS => (0..)
            .map(|i| first + i * width)
            .take_while(|s| *s <= last)
            .map(|s| Point {
                start: at_second(s),
                count: counted.get(&s).copied().unwrap_or(0),
            })
            .collect(),
        _ => stats
            .by_time
            .iter()
            .map(|(t, n)| Point {
                start: t.to_string(),
                count: *n,
            })
            .collect(),
    }
}

/// Alerts raised on the log with `fired_at` in the period, from `meta.db`.
pub(crate) fn alerts(sources: &Sources, request: &Request) -> Result<Alerts, ReportError> {
    let Some(meta) = &sources.meta else {
        return Ok(Alerts {
            available: false,
            fired: 0,
            by_rule: Vec::new(),
            recent: Vec::new(),
        });
    };
    let rows = {
        let conn = meta.read();
        list_alerts(&conn, false, MAX_ALERTS_READ, None).map_err(|e| ReportError::Alerts(e.to_string()))?
    };
    let within = |fired: &str| {
        let Ok(t) = fired.parse::<Timestamp>() else {
            return false;
        };
        request.since.is_none_or(|s| t >= s) && request.until.is_none_or(|u| t < u)
    };
    let mut by_rule: HashMap<String, u64> = HashMap::new();
    let mut recent = Vec::new();
    let mut fired = 0;
    for row in rows.iter().filter(|r| r.log == sources.log && within(&r.fired_at)) {
        fired += 1;
        *by_rule.entry(row.rule.clone()).or_default() += 1;
        if recent.len() < TOP_ALERTS {
            recent.push(AlertItem {
                fired_at: row.fired_at.clone(),
                rule: row.rule.clone(),
                level: row.level.clone(),
                status: row.status.clone(),
                summary: row.summary.clone(),
            });
        }
    }
    let mut by_rule: Vec<(String, u64)> = by_rule.into_iter().collect();
    by_rule.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Alerts {
        available: true,
        fired,
        by_rule: by_rule
            .into_iter()
            .map(|(value, count)| Count { value, count })
            .collect(),
        recent,
    })
}
