//! Aggregations over the matching events, computed from fast columns only
//! (no ledger reads): counts by action, actor, outcome and time bucket,
//! and duration statistics per action.
//!
//! Both are tantivy collectors: one pass over the matching documents of
//! each segment, counting by the segment's term ordinals, with strings
//! looked up once per distinct value when the segment is done.

use std::collections::HashMap;
use std::io;

use sealtrail_event::{Outcome, Timestamp};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use crate::schema::{ACTION, ACTOR, DURATION, OCCURRED, OUTCOME};

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

fn io_error(e: io::Error) -> TantivyError {
    TantivyError::from(e)
}

/// Counts one segment's documents by the ordinal of a string column.
struct OrdCounts {
    column: Option<StrColumn>,
    counts: Vec<u64>,
}

impl OrdCounts {
    fn new(column: Option<StrColumn>) -> OrdCounts {
        let terms = column.as_ref().map_or(0, |c| c.num_terms());
        OrdCounts {
            column,
            counts: vec![0; terms],
        }
    }

    #[inline]
    fn collect(&mut self, doc: DocId) {
        if let Some(ord) = self.column.as_ref().and_then(|c| c.ords().first(doc)) {
            if let Some(n) = usize::try_from(ord).ok().and_then(|o| self.counts.get_mut(o)) {
                *n += 1;
            }
        }
    }

    fn harvest(self, into: &mut HashMap<String, u64>) -> io::Result<()> {
        let Some(column) = self.column else { return Ok(()) };
        let mut name = String::new();
        for (ord, n) in self.counts.into_iter().enumerate() {
            if n > 0 && column.ord_to_str(ord as u64, &mut name)? {
                *into.entry(name.clone()).or_default() += n;
            }
        }
        Ok(())
    }
}

pub(crate) struct StatsCollector {
    pub bucket: Bucket,
}

pub(crate) struct StatsSegment {
    bucket: i64,
    total: u64,
    actions: OrdCounts,
    actors: OrdCounts,
    outcome: Option<Column<u64>>,
    outcomes: [u64; 3],
    occurred: Option<Column<i64>>,
    times: HashMap<i64, u64>,
}

#[derive(Default)]
pub(crate) struct StatsPart {
    total: u64,
    actions: HashMap<String, u64>,
    actors: HashMap<String, u64>,
    outcomes: [u64; 3],
    times: HashMap<i64, u64>,
}

impl Collector for StatsCollector {
    type Fruit = Stats;
    type Child = StatsSegment;

    fn for_segment(&self, _: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<StatsSegment> {
        let fast = reader.fast_fields();
        Ok(StatsSegment {
            bucket: self.bucket.seconds(),
            total: 0,
            actions: OrdCounts::new(fast.str(ACTION)?),
            actors: OrdCounts::new(fast.str(ACTOR)?),
            outcome: fast.column_opt(OUTCOME)?,
            outcomes: [0; 3],
            occurred: fast.column_opt(OCCURRED)?,
            times: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, parts: Vec<io::Result<StatsPart>>) -> tantivy::Result<Stats> {
        let mut all = StatsPart::default();
        for part in parts {
            let part = part.map_err(io_error)?;
            all.total += part.total;
            for (k, n) in part.actions {
                *all.actions.entry(k).or_default() += n;
            }
            for (k, n) in part.actors {
                *all.actors.entry(k).or_default() += n;
            }
            for (a, b) in all.outcomes.iter_mut().zip(part.outcomes) {
                *a += b;
            }
            for (k, n) in part.times {
                *all.times.entry(k).or_default() += n;
            }
        }
        let outcomes = Outcome::ALL
            .iter()
            .zip(all.outcomes)
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| (o.as_str().to_string(), n))
            .collect();
        let mut by_time: Vec<(i64, u64)> = all.times.into_iter().collect();
        by_time.sort_unstable();
        Ok(Stats {
            total: all.total,
            by_action: ranked(all.actions.into_iter().collect()),
            by_actor: ranked(all.actors.into_iter().collect()),
            by_outcome: ranked(outcomes),
            by_time: by_time
                .into_iter()
                .filter_map(|(s, n)| Timestamp::from_second(s).ok().map(|t| (t, n)))
                .collect(),
        })
    }
}

/// Count descending, then name ascending.
fn ranked(mut counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

impl SegmentCollector for StatsSegment {
    type Fruit = io::Result<StatsPart>;

    fn collect(&mut self, doc: DocId, _: Score) {
        self.total += 1;
        self.actions.collect(doc);
        self.actors.collect(doc);
        if let Some(code) = self.outcome.as_ref().and_then(|c| c.first(doc)) {
            if let Some(n) = usize::try_from(code).ok().and_then(|c| self.outcomes.get_mut(c)) {
                *n += 1;
            }
        }
        if let Some(ns) = self.occurred.as_ref().and_then(|c| c.first(doc)) {
            let second = ns.div_euclid(1_000_000_000);
            *self.times.entry(second - second.rem_euclid(self.bucket)).or_default() += 1;
        }
    }

    fn harvest(self) -> io::Result<StatsPart> {
        let mut part = StatsPart {
            total: self.total,
            outcomes: self.outcomes,
            times: self.times,
            ..StatsPart::default()
        };
        self.actions.harvest(&mut part.actions)?;
        self.actors.harvest(&mut part.actors)?;
        Ok(part)
    }
}

pub(crate) struct PerformanceCollector;

pub(crate) struct PerformanceSegment {
    actions: Option<StrColumn>,
    duration: Option<Column<f64>>,
    by_ord: HashMap<u64, Vec<f64>>,
}

impl Collector for PerformanceCollector {
    type Fruit = Vec<Performance>;
    type Child = PerformanceSegment;

    fn for_segment(&self, _: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<PerformanceSegment> {
        let fast = reader.fast_fields();
        Ok(PerformanceSegment {
            actions: fast.str(ACTION)?,
            duration: fast.column_opt(DURATION)?,
            by_ord: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, parts: Vec<io::Result<HashMap<String, Vec<f64>>>>) -> tantivy::Result<Vec<Performance>> {
        let mut all: HashMap<String, Vec<f64>> = HashMap::new();
        for part in parts {
            for (action, values) in part.map_err(io_error)? {
                all.entry(action).or_default().extend(values);
            }
        }
        let mut out: Vec<Performance> = all.into_iter().filter_map(|(a, v)| summary(a, v)).collect();
        out.sort_unstable_by(|a, b| a.action.cmp(&b.action));
        Ok(out)
    }
}

impl SegmentCollector for PerformanceSegment {
    type Fruit = io::Result<HashMap<String, Vec<f64>>>;

    fn collect(&mut self, doc: DocId, _: Score) {
        let Some(ms) = self.duration.as_ref().and_then(|c| c.first(doc)) else {
            return;
        };
        if let Some(ord) = self.actions.as_ref().and_then(|c| c.ords().first(doc)) {
            self.by_ord.entry(ord).or_default().push(ms);
        }
    }

    fn harvest(self) -> io::Result<HashMap<String, Vec<f64>>> {
        let mut out = HashMap::with_capacity(self.by_ord.len());
        let Some(column) = self.actions else { return Ok(out) };
        let mut name = String::new();
        for (ord, values) in self.by_ord {
            if column.ord_to_str(ord, &mut name)? {
                out.insert(name.clone(), values);
            }
        }
        Ok(out)
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
