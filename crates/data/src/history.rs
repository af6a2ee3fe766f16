//! Run history arithmetic: comparing two runs, and the trend of a series
//! of runs with anomalies and regressions flagged. Pure functions over
//! summaries as JSON, so that diff, key discovery and validation runs all
//! work alike: a run's *metrics* are the numbers at the top level of its
//! summary (docs/data.md, "Run history").
//!
//! Not here: storing runs (the metadata database does) or deciding what
//! to do about an anomaly.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many earlier runs a run's metrics are measured against.
pub const TREND_WINDOW: usize = 30;
/// Fewer earlier runs than this give no z-score and no anomaly: the
/// spread of two or three runs says little.
pub const MIN_TREND_SAMPLES: usize = 5;
/// A metric at least this many standard deviations from the mean of
/// the earlier runs is an anomaly.
pub const ANOMALY_Z: f64 = 3.0;
/// Metrics that count differences or violations: a run where one of them
/// grew since the run before is a regression.
pub const DIFFERENCE_METRICS: &[&str] = &[
    "added",
    "removed",
    "changed",
    "left_duplicate_keys",
    "right_duplicate_keys",
    "violations",
    "rows_with_violations",
];
/// Quality scores closer than this are equal (they are ratios of counts,
/// so only rounding separates equal ones).
const QUALITY_EPSILON: f64 = 1e-9;

/// One run as the history functions see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id; ids grow with time.
    pub id: i64,
    pub finished_at: String,
    pub quality_score: Option<f64>,
    /// The run's summary: its top-level numbers are its metrics; a keys
    /// run lists its keys under `keys`.
    pub summary: Value,
}

impl RunSummary {
    /// The run's metrics: every number at the summary's top level, and
    /// `quality_score` from the run when the summary has none.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = self
            .summary
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect())
            .unwrap_or_default();
        if let Some(q) = self.quality_score {
            out.entry("quality_score".into()).or_insert(q);
        }
        out
    }

    /// The run's quality score, from the run or its summary.
    pub fn quality(&self) -> Option<f64> {
        self.quality_score
            .or_else(|| self.summary.get("quality_score")?.as_f64())
    }

    /// The keys a keys run found, each as its sorted column names: the
    /// summary's `keys` array holds, per key, an array of column names, a
    /// single column name, or an object with such an array under `columns`.
    pub fn keys(&self) -> BTreeSet<Vec<String>> {
        let Some(keys) = self.summary.get("keys").and_then(Value::as_array) else {
            return BTreeSet::new();
        };
        keys.iter()
            .filter_map(|k| {
                let columns = match k {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(_) => names(k)?,
                    Value::Object(o) => names(o.get("columns")?)?,
                    _ => return None,
                };
                let mut columns = columns;
                columns.sort();
                Some(columns)
            })
            .collect()
    }
}

fn names(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|c| c.as_str().map(str::to_string)).collect()
}

/// A metric in two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricChange {
    pub before: Option<f64>,
    pub after: Option<f64>,
    /// `after - before`, when both are there.
    pub change: Option<f64>,
}

/// What changed from one run to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunComparison {
    pub before: i64,
    pub after: i64,
    /// Every metric of either run.
    pub metrics: BTreeMap<String, MetricChange>,
    /// The metrics whose value differs (or is in one run only).
    pub changed: Vec<String>,
    pub quality_before: Option<f64>,
    pub quality_after: Option<f64>,
    pub quality_change: Option<f64>,
    /// Keys found by the later run and not the earlier (keys runs).
    pub new_keys: Vec<Vec<String>>,
    /// Keys found by the earlier run and not the later (keys runs).
    pub lost_keys: Vec<Vec<String>>,
}

/// What changed from run `a` (before) to run `b` (after).
pub fn compare(a: &RunSummary, b: &RunSummary) -> RunComparison {
    let (ma, mb) = (a.metrics(), b.metrics());
    let names: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    let mut metrics = BTreeMap::new();
    let mut changed = Vec::new();
    for name in names {
        let (before, after) = (ma.get(name).copied(), mb.get(name).copied());
        if before != after {
            changed.push(name.clone());
        }
        metrics.insert(
            name.clone(),
            MetricChange {
                before,
                after,
                change: before.zip(after).map(|(x, y)| y - x),
            },
        );
    }
    let (ka, kb) = (a.keys(), b.keys());
    let (qa, qb) = (a.quality(), b.quality());
    RunComparison {
        before: a.id,
        after: b.id,
        metrics,
        changed,
        quality_before: qa,
        quality_after: qb,
        quality_change: qa.zip(qb).map(|(x, y)| y - x),
        new_keys: kb.difference(&ka).cloned().collect(),
        lost_keys: ka.difference(&kb).cloned().collect(),
    }
}

/// One metric of one run against the runs before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricTrend {
    pub value: f64,
    /// How many earlier runs (at most [`TREND_WINDOW`], the latest ones
    /// that have the metric) the mean and spread come from.
    pub samples: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1) of the earlier runs.
    pub stddev: Option<f64>,
    /// `(value − mean) / stddev`; none with fewer than
    /// [`MIN_TREND_SAMPLES`] samples or a spread of zero.
    pub z: Option<f64>,
    pub anomaly: bool,
}

/// A metric that got worse since the run before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    pub metric: String,
    pub before: f64,
    pub after: f64,
}

/// One run in a trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    pub id: i64,
    pub finished_at: String,
    pub quality_score: Option<f64>,
    pub metrics: BTreeMap<String, MetricTrend>,
    /// Metrics flagged as anomalies.
    pub anomalies: Vec<String>,
    pub regressions: Vec<Regression>,
}

/// The trend of `runs` (in any order; taken oldest first by id): each
/// run's metrics against the [`TREND_WINDOW`] runs before it that have
/// them.
///
/// - A metric is an *anomaly* when there are at least
///   [`MIN_TREND_SAMPLES`] earlier values and either `|z| ≥` [`ANOMALY_Z`],
///   or the earlier values are all equal and this one differs (a spread
///   of zero gives no z-score, yet a change from a constant is news).
/// - A run *regresses* on `quality_score` when it is lower than in the
///   latest earlier run that has one, and on each of the
///   [`DIFFERENCE_METRICS`] when it is higher.
pub fn trend(runs: &[RunSummary]) -> Vec<TrendPoint> {
    let mut order: Vec<&RunSummary> = runs.iter().collect();
    order.sort_by_key(|r| r.id);
    // Per metric, its values in earlier runs, latest last, at most the window.
    let mut history: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut points = Vec::with_capacity(order.len());
    for run in order {
        let mut point = TrendPoint {
            id: run.id,
            finished_at: run.finished_at.clone(),
            quality_score: run.quality(),
            metrics: BTreeMap::new(),
            anomalies: Vec::new(),
            regressions: Vec::new(),
        };
        for (name, value) in run.metrics() {
            let earlier = history.entry(name.clone()).or_default();
            let trend = measure(value, earlier);
            if trend.anomaly {
                point.anomalies.push(name.clone());
            }
            if let Some(&before) = earlier.last() {
                let worse = if name == "quality_score" {
                    value < before - QUALITY_EPSILON
                } else {
                    DIFFERENCE_METRICS.contains(&name.as_str()) && value > before
                };
                if worse {
                    point.regressions.push(Regression {
                        metric: name.clone(),
                        before,
                        after: value,
                    });
                }
            }
            if earlier.len() == TREND_WINDOW {
                earlier.remove(0);
            }
            earlier.push(value);
            point.metrics.insert(name, trend);
        }
        points.push(point);
    }
    points
}

fn measure(value: f64, earlier: &[f64]) -> MetricTrend {
    let n = earlier.len();
    let mut trend = MetricTrend {
        value,
        samples: n,
        mean: None,
        stddev: None,
        z: None,
        anomaly: false,
    };
    if n == 0 {
        return trend;
    }
    let mean = earlier.iter().sum::<f64>() / n as f64;
    trend.mean = Some(mean);
    if n < 2 {
        return trend;
    }
    let variance = earlier.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let stddev = variance.sqrt();
    trend.stddev = Some(stddev);
    if n < MIN_TREND_SAMPLES {
        return trend;
    }
    // Relative to the values' size, so rounding in the mean of equal
    // values is not mistaken for a spread.
    let tiny = 1e-12 * mean.abs().max(1.0);
    if stddev > tiny {
        let z = (value - mean) / stddev;
        trend.z = Some(z);
        trend.anomaly = z.abs() >= ANOMALY_Z;
    } else {
        trend.anomaly = (value - mean).abs() > tiny;
    }
    trend
}

/// The quality score of a diff: the share of rows unchanged, `unchanged /
/// max(left_rows, right_rows)`, 0 to 1 (1 when the two tables are equal;
/// capped at 1 should duplicate keys count a row twice). `None` when both
/// tables are empty: there is nothing to score.
pub fn quality_score(unchanged: u64, left_rows: u64, right_rows: u64) -> Option<f64> {
    let rows = left_rows.max(right_rows);
    (rows > 0).then(|| (unchanged as f64 / rows as f64).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(id: i64, summary: Value) -> RunSummary {
        RunSummary {
            id,
            finished_at: format!("2026-01-{:02}T00:00:00Z", id % 28 + 1),
            quality_score: None,
            summary,
        }
    }

    #[test]
    fn comparison_names_changed_metrics_and_keys() {
        let a = run(
            1,
            json!({"rows": 100, "keys": [["b", "a"], "id", {"columns": ["x"]}], "quality_score": 0.9, "note": "x"}),
        );
        let b = run(
            2,
            json!({"rows": 120, "keys": [["a", "b"], ["email"]], "quality_score": 0.75, "new": 3}),
        );
        let c = compare(&a, &b);
        assert_eq!(c.changed, vec!["new", "quality_score", "rows"]);
        assert_eq!(
            c.metrics["rows"],
            MetricChange {
                before: Some(100.0),
                after: Some(120.0),
                change: Some(20.0)
            }
        );
        assert_eq!(c.metrics["new"].change, None);
        assert_eq!((c.quality_before, c.quality_after), (Some(0.9), Some(0.75)));
        assert!((c.quality_change.expect("both scored") + 0.15).abs() < 1e-12);
        assert_eq!(c.new_keys, vec![vec!["email".to_string()]]);
        assert_eq!(c.lost_keys, vec![vec!["id".to_string()], vec!["x".to_string()]]);
    }

    #[test]
    fn z_scores_against_the_earlier_runs() {
        // Ten runs, then an outlier. By hand: mean 10.6, squared deviations
        // sum to 8.4, sample variance 8.4 / 9, standard deviation 0.966092,
        // so 30 is 19.4 / 0.966092 = 20.0809 standard deviations out.
        let values = [10, 12, 11, 9, 10, 11, 10, 12, 11, 10, 30];
        let runs: Vec<RunSummary> = values
            .iter()
            .enumerate()
            .rev() // any order in, oldest first out
            .map(|(i, v)| run(i as i64 + 1, json!({ "changed": v })))
            .collect();
        let points = trend(&runs);
        assert_eq!(
            points.iter().map(|p| p.id).collect::<Vec<_>>(),
            (1..=11).collect::<Vec<_>>()
        );
        let last = &points[10].metrics["changed"];
        assert_eq!(last.samples, 10);
        assert!((last.mean.expect("mean") - 10.6).abs() < 1e-12);
        assert!((last.stddev.expect("stddev") - 0.966_091_783).abs() < 1e-8);
        assert!((last.z.expect("z") - 20.080_908).abs() < 1e-5);
        assert_eq!(points[10].anomalies, vec!["changed"]);
        // Too few samples before the fifth earlier run.
        assert!(points[..5].iter().all(|p| p.metrics["changed"].z.is_none()));
        assert!(points[..10].iter().all(|p| p.anomalies.is_empty()));
        // Runs 2, 5, 6, 8 and 11 grew; "changed" counts differences.
        let regressed: Vec<i64> = points
            .iter()
            .filter(|p| !p.regressions.is_empty())
            .map(|p| p.id)
            .collect();
        assert_eq!(regressed, vec![2, 5, 6, 8, 11]);
    }

    #[test]
    fn the_window_forgets_old_runs_and_a_constant_that_moves_is_an_anomaly() {
        // Ten huge values, then thirty alternating 1 and 3: with a window of
        // thirty the huge ones are gone, mean 2, stddev sqrt(30 / 29).
        let mut values: Vec<f64> = vec![1000.0; 10];
        values.extend((0..30).map(|i| if i % 2 == 0 { 1.0 } else { 3.0 }));
        values.push(5.0);
        let runs: Vec<RunSummary> = values
            .iter()
            .enumerate()
            .map(|(i, v)| run(i as i64, json!({ "rows": v })))
            .collect();
        let last = trend(&runs).pop().expect("points");
        let m = &last.metrics["rows"];
        assert_eq!(m.samples, TREND_WINDOW);
        assert!((m.mean.expect("mean") - 2.0).abs() < 1e-12);
        let sd = (30.0f64 / 29.0).sqrt();
        assert!((m.z.expect("z") - 3.0 / sd).abs() < 1e-12);
        assert!(!m.anomaly, "2.95 standard deviations");
        assert!(last.regressions.is_empty(), "rows is not a difference count");

        let flat: Vec<RunSummary> = (0..7)
            .map(|i| RunSummary {
                quality_score: Some(if i == 6 { 0.5 } else { 1.0 }),
                ..run(i, json!({"rows": 10}))
            })
            .collect();
        let points = trend(&flat);
        let last = &points[6];
        assert_eq!(last.anomalies, vec!["quality_score"]);
        assert_eq!(last.metrics["quality_score"].z, None);
        assert_eq!(
            last.regressions,
            vec![Regression {
                metric: "quality_score".into(),
                before: 1.0,
                after: 0.5
            }]
        );
        assert!(points[..6]
            .iter()
            .all(|p| p.anomalies.is_empty() && p.regressions.is_empty()));
    }

    #[test]
    fn diff_quality_is_the_share_unchanged() {
        assert_eq!(quality_score(90, 100, 95), Some(0.9));
        assert_eq!(quality_score(50, 40, 200), Some(0.25));
        assert_eq!(quality_score(0, 0, 10), Some(0.0));
        assert_eq!(quality_score(12, 10, 10), Some(1.0));
        assert_eq!(quality_score(0, 0, 0), None);
    }
}
