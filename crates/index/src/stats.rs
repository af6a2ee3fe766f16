//! Aggregations over the matching events, computed from the segments' columns only
//! (no ledger reads): counts by action, actor, outcome and time bucket,
//! and duration statistics per action.
//!
//! One pass over the matching documents of each segment, counting by the
//! segment's term numbers, with strings looked up once per distinct value
//! when the segment is done.

use std::collections::HashMap;

use sealtrail_event::{Outcome, Timestamp};
use sealtrail_segment::NONE;

use crate::query::{Matches, Seg, Values};
use crate::schema::{time_nanos, ACTION, ACTION_COLUMN, ACTOR, ACTOR_COLUMN, DURATION, OCCURRED, OUTCOME};

/// Width of the time buckets of [`Stats::by_time`], in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    fn seconds(self) -> i64 {
        match self {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        }
    }
}

/// Counts of the matching events.
///
/// Each `by_*` list is sorted by count, largest first, then by name; events
/// without an actor or an outcome are left out of that list but counted
/// in `total`. `by_time` holds the non-empty buckets of `occurred_at`,
/// each named by its start, in ascending order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: u64,
    pub by_action: Vec<(String, u64)>,
    pub by_actor: Vec<(String, u64)>,
    pub by_outcome: Vec<(String, u64)>,
    pub by_time: Vec<(Timestamp, u64)>,
}

/// Durations (`duration_ms`) of one action's matching events that have
/// one. Percentiles are exact nearest-rank: the value at 1-based rank
/// ⌈p/100 · count⌉ of the sorted durations.
#[derive(Clone, Debug, PartialEq)]
pub struct Performance {
    pub action: String,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Counts of the matches of one query, summed segment by segment.
#[derive(Default)]
pub(crate) struct StatsSum {
    total: u64,
    actions: HashMap<String, u64>,
    actors: HashMap<String, u64>,
    outcomes: [u64; 3],
    times: HashMap<i64, u64>,
}

/// The string of each term number of `field` in `seg` counted in `counts`.
fn harvest(seg: &Seg, field: u8, counts: &[u64], into: &mut HashMap<String, u64>) {
    let first = seg.field_terms(field).start;
    for (number, &n) in (0u32..).zip(counts) {
        if n > 0 {
            let name = String::from_utf8_lossy(seg.term_bytes(first + number));
            *into.entry(name.into_owned()).or_default() += n;
        }
    }
}

impl StatsSum {
    /// Count the matches of one segment: by term number while reading its
    /// columns, each name looked up once at the end.
    pub fn add(&mut self, seg: &Seg, matches: &mut Matches<'_>, bucket: Bucket) {
        let columns = [ACTION_COLUMN, ACTOR_COLUMN, OUTCOME, OCCURRED].map(|c| seg.column(c).map(Values::new));
        let [Some(mut action), Some(mut actor), Some(mut outcome), Some(mut occurred)] = columns else {
            return;
        };
        let mut actions = vec![0u64; seg.field_terms(ACTION).len()];
        let mut actors = vec![0u64; seg.field_terms(ACTOR).len()];
        let seconds = bucket.seconds();
        matches.for_each(|doc| {
            self.total += 1;
            for (values, counts) in [(&mut action, &mut actions), (&mut actor, &mut actors)] {
                if let Some(n) = values.get(doc).and_then(|v| counts.get_mut(usize::try_from(v).ok()?)) {
                    *n += 1;
                }
            }
            if let Some(n) = outcome
                .get(doc)
                .and_then(|v| self.outcomes.get_mut(usize::try_from(v).ok()?))
            {
                *n += 1;
            }
            if let Some(v) = occurred.get(doc) {
                let second = time_nanos(v).div_euclid(1_000_000_000);
                *self.times.entry(second - second.rem_euclid(seconds)).or_default() += 1;
            }
        });
        harvest(seg, ACTION, &actions, &mut self.actions);
        harvest(seg, ACTOR, &actors, &mut self.actors);
    }

    pub fn finish(self) -> Stats {
        let outcomes = Outcome::ALL
            .iter()
            .zip(self.outcomes)
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| (o.as_str().to_string(), n))
            .collect();
        let mut by_time: Vec<(i64, u64)> = self.times.into_iter().collect();
        by_time.sort_unstable();
        Stats {
            total: self.total,
            by_action: ranked(self.actions.into_iter().collect()),
            by_actor: ranked(self.actors.into_iter().collect()),
            by_outcome: ranked(outcomes),
            by_time: by_time
                .into_iter()
                .filter_map(|(s, n)| Timestamp::from_second(s).ok().map(|t| (t, n)))
                .collect(),
        }
    }
}

/// Count descending, then name ascending.
fn ranked(mut counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// The durations of the matches of one query, by action.
#[derive(Default)]
pub(crate) struct Durations(HashMap<String, Vec<f64>>);

impl Durations {
    pub fn add(&mut self, seg: &Seg, matches: &mut Matches<'_>) {
        let (Some(mut action), Some(mut duration)) = (
            seg.column(ACTION_COLUMN).map(Values::new),
            seg.column(DURATION).map(Values::new),
        ) else {
            return;
        };
        let mut by_number: HashMap<u64, Vec<f64>> = HashMap::new();
        matches.for_each(|doc| {
            if let (Some(ms), Some(a)) = (duration.get(doc), action.get(doc)) {
                if ms != NONE {
                    by_number.entry(a).or_default().push(f64::from_bits(ms));
                }
            }
        });
        let first = seg.field_terms(ACTION).start;
        for (number, values) in by_number {
            let Ok(number) = u32::try_from(number) else { continue };
            let name = String::from_utf8_lossy(seg.term_bytes(first.saturating_add(number)));
            self.0.entry(name.into_owned()).or_default().extend(values);
        }
    }

    pub fn finish(self) -> Vec<Performance> {
        let mut out: Vec<Performance> = self.0.into_iter().filter_map(|(a, v)| summary(a, v)).collect();
        out.sort_unstable_by(|a, b| a.action.cmp(&b.action));
        out
    }
}

/// Exact statistics of one action's durations; `None` when there are none.
fn summary(action: String, mut values: Vec<f64>) -> Option<Performance> {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    let (&min, &max) = (values.first()?, values.last()?);
    // 1-based nearest rank ⌈p·n/100⌉, in integers so no rounding can move it.
    let rank = |p: usize| values[(p * n).div_ceil(100).max(1) - 1];
    Some(Performance {
        count: n as u64,
        min,
        max,
        mean: values.iter().sum::<f64>() / n as f64,
        p50: rank(50),
        p95: rank(95),
        p99: rank(99),
        action,
    })
}
