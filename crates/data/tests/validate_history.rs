//! Validation summaries in the run history: their top-level numbers are
//! the metrics compared from run to run.

use sealtrail_data::history::{compare, trend, RunSummary};
use sealtrail_data::source::MemorySource;
use sealtrail_data::validate::{check, Rules};

const RULES: &str = "[columns.amount]\nrequired = true\ntype = \"decimal\"\nrange = { min = 0 }\n";

/// A validation of `rows` rows of which `bad` have a negative amount and
/// `missing` none, as a run summary.
fn validation(id: i64, rows: usize, bad: usize, missing: usize) -> RunSummary {
    let rules = Rules::from_toml(RULES, "r.toml").expect("rules read");
    let values = (0..rows)
        .map(|i| {
            vec![if i < bad {
                Some("-1".to_string())
            } else if i < bad + missing {
                None
            } else {
                Some("1.50".to_string())
            }]
        })
        .collect();
    let mut source = MemorySource::new("a.csv", &["amount"], values);
    let summary = check(&mut source, &rules, &mut |_| Ok(())).expect("check runs");
    RunSummary {
        id,
        finished_at: format!("2026-02-{:02}T00:00:00Z", id),
        quality_score: summary.quality_score,
        summary: serde_json::to_value(&summary).expect("serializable"),
    }
}

#[test]
fn validation_runs_compare_and_trend_by_their_counts() {
    let before = validation(1, 100, 2, 1);
    let after = validation(2, 100, 5, 0);
    let c = compare(&before, &after);
    assert_eq!(c.metrics["violations"].change, Some(2.0));
    assert_eq!(c.metrics["rows"].change, Some(0.0));
    assert_eq!(c.quality_before, Some(0.97));
    assert_eq!(c.quality_after, Some(0.95));
    assert_eq!(c.changed, vec!["quality_score", "rows_with_violations", "violations"]);

    // Seven steady runs (3 or 4 bad rows), then one with 40.
    let mut runs: Vec<RunSummary> = (0..7)
        .map(|i| validation(i + 1, 100, 3 + (i as usize % 2), 0))
        .collect();
    runs.push(validation(8, 100, 40, 0));
    let points = trend(&runs);
    let last = points.last().expect("points");
    assert_eq!(
        last.anomalies,
        vec!["quality_score", "rows_with_violations", "violations"]
    );
    let regressed: Vec<&str> = last.regressions.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(regressed, vec!["quality_score", "rows_with_violations", "violations"]);
    assert!(points[..7].iter().all(|p| p.anomalies.is_empty()));
}
