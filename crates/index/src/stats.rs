//! Aggregations over the matching events, computed from the segments' columns only
//! (no ledger reads): counts by action, actor, outcome and time bucket,
//! and duration statistics per action.
//!
//! One pass over the matching documents of each segment, counting by the
//! segment's term numbers, with strings looked up once per distinct value
//! when the segment is done.

use std::collections::HashMap;

use sealtrail_event::glob::Glob;
use sealtrail_event::{Outcome, Timestamp};
use sealtrail_segment::{FormatError, NONE};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use crate::part::Seg;
use crate::query::{Matches, Values};
use crate::schema::{
    outcome_code, time_nanos, ACTION, ACTION_COLUMN, ACTOR, ACTOR_COLUMN, DURATION, LEDGER, OCCURRED, OUTCOME, SERVICE,
    TARGET, TENANT, WORKFLOW,
};

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
    /// Counts by action of the events with outcome `failure`.
    pub failures_by_action: Vec<(String, u64)>,
}

/// Durations (`duration_ms`) of one action's matching events that have
/// one. While the matching durations of a query fit 2^20 (1,048,576),
/// percentiles are exact nearest-rank: the value at 1-based rank
/// ⌈p/100 · count⌉ of the sorted durations. Past it they come from a
/// DDSketch and are within 1% of the value at that rank
/// (`exact` is false); `count`, `min`, `max` and `mean` stay exact.
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
    pub exact: bool,
}

/// How many durations one `performance` query keeps exactly (8 MiB):
/// beyond, every action's durations go into a sketch, so the memory of a
/// query is bounded whatever the number of events it matches.
pub const EXACT_DURATIONS: usize = 1 << 20;

/// The relative error of a sketched percentile.
pub const RELATIVE_ERROR: f64 = 0.01;

/// A sketch holds at most this many bins (16 KiB): at 1% relative error
/// they span a ratio of about 10¹⁷ between the smallest and the largest
/// duration, from 10⁻⁹ ms; a wider spread merges the lowest bins, which
/// only the lowest percentiles would notice.
const SKETCH_BINS: u32 = 2048;

/// Counts of the matches of one query, summed segment by segment.
#[derive(Default)]
pub(crate) struct StatsSum {
    total: u64,
    actions: HashMap<String, u64>,
    actors: HashMap<String, u64>,
    outcomes: [u64; 3],
    times: HashMap<i64, u64>,
    failed_actions: HashMap<String, u64>,
}

/// The string of each term number of `field` in `seg` counted in `counts`.
fn harvest(seg: &Seg, field: u8, counts: &[u64], into: &mut HashMap<String, u64>) -> Result<(), FormatError> {
    let first = seg.field_terms(field).start;
    for (number, &n) in (0u32..).zip(counts) {
        if n > 0 {
            let name = String::from_utf8_lossy(seg.term_bytes(first + number)?);
            *into.entry(name.into_owned()).or_default() += n;
        }
    }
    Ok(())
}

/// A term column's value that names no term of its field.
fn no_such_term(field: u8, value: u64, terms: usize, doc: u32) -> FormatError {
    FormatError::Damaged {
        what: format!("term column of field {field} (document {doc} holds term {value} of {terms})"),
        offset: 0,
    }
}

impl StatsSum {
    /// Count the matches of one segment: by term number while reading its
    /// columns, each name looked up once at the end.
    pub fn add(&mut self, seg: &Seg, matches: &mut Matches<'_>, bucket: Bucket) -> Result<(), FormatError> {
        let columns = [ACTION_COLUMN, ACTOR_COLUMN, OUTCOME, OCCURRED].map(|c| seg.column(c).map(Values::new));
        let [Some(mut action), Some(mut actor), Some(mut outcome), Some(mut occurred)] = columns else {
            return Ok(());
        };
        let mut actions = vec![0u64; seg.field_terms(ACTION).len()];
        let mut failed_actions = vec![0u64; actions.len()];
        let mut actors = vec![0u64; seg.field_terms(ACTOR).len()];
        let seconds = bucket.seconds();
        let failure = outcome_code(Outcome::Failure);
        matches.for_each(|doc| {
            self.total += 1;
            let code = outcome.get(doc)?;
            if let Some(n) = code.and_then(|v| self.outcomes.get_mut(usize::try_from(v).ok()?)) {
                *n += 1;
            }
            for (field, values, counts) in [(ACTION, &mut action, &mut actions), (ACTOR, &mut actor, &mut actors)] {
                match values.get(doc)? {
                    None | Some(NONE) => {}
                    Some(v) => {
                        let terms = counts.len();
                        let n = usize::try_from(v).ok().and_then(|v| counts.get_mut(v));
                        *n.ok_or_else(|| no_such_term(field, v, terms, doc))? += 1;
                        if field == ACTION && code == Some(failure) {
                            // In range: `counts` has as many.
                            if let Some(n) = failed_actions.get_mut(v as usize) {
                                *n += 1;
                            }
                        }
                    }
                }
            }
            if let Some(v) = occurred.get(doc)? {
                let second = time_nanos(v).div_euclid(1_000_000_000);
                *self.times.entry(second - second.rem_euclid(seconds)).or_default() += 1;
            }
            Ok(())
        })?;
        harvest(seg, ACTION, &actions, &mut self.actions)?;
        harvest(seg, ACTION, &failed_actions, &mut self.failed_actions)?;
        harvest(seg, ACTOR, &actors, &mut self.actors)
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
            failures_by_action: ranked(self.failed_actions.into_iter().collect()),
        }
    }
}

/// What [`crate::EventIndex::tally_globs`] finds for one action glob
/// among the matching events: the same figures as a `stats` query, a
/// `count` with outcome `failure` and a newest-first page, each with the
/// glob as the filter's action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobTally {
    /// Matching events whose action the glob matches.
    pub total: u64,
    /// Those of them with outcome `failure`.
    pub failures: u64,
    /// Counts by action, largest first, then by name.
    pub by_action: Vec<(String, u64)>,
    /// The ledger indices of the newest of them (the highest), highest
    /// first, as many as asked for at most.
    pub newest: Vec<u64>,
}

/// Counts of one action of a segment among the matches.
struct ActionTally {
    total: u64,
    failures: u64,
    /// The highest ledger indices, at most `GlobSum::keep` of them.
    newest: Vec<u64>,
}

/// The tallies of several action globs over the matches of one query,
/// summed segment by segment. Each document is read once, whatever the
/// number of globs its action matches: it is counted under its action's
/// term, and each glob takes the sums of the terms it matches when the
/// segment is done, so overlapping globs count an event once each, as
/// separate queries would.
pub(crate) struct GlobSum {
    globs: Vec<Glob>,
    keep: usize,
    totals: Vec<u64>,
    failures: Vec<u64>,
    actions: Vec<HashMap<String, u64>>,
    newest: Vec<Vec<u64>>,
}

/// Keep the `keep` highest of `held` and `value`.
fn keep_highest(held: &mut Vec<u64>, value: u64, keep: usize) {
    if held.len() < keep {
        held.push(value);
    } else if let Some(least) = held.iter_mut().min().filter(|least| **least < value) {
        *least = value;
    }
}

impl GlobSum {
    pub fn new(globs: &[&str], keep: usize) -> GlobSum {
        GlobSum {
            globs: globs.iter().map(|g| Glob::new(g)).collect(),
            keep,
            totals: vec![0; globs.len()],
            failures: vec![0; globs.len()],
            actions: vec![HashMap::new(); globs.len()],
            newest: vec![Vec::new(); globs.len()],
        }
    }

    /// The action terms of `seg` (their numbers within the field) that
    /// some glob matches, each with the globs (their positions) matching
    /// it.
    pub fn terms(&self, seg: &Seg) -> Result<Vec<(u32, Vec<usize>)>, FormatError> {
        let field = seg.field_terms(ACTION);
        let mut out = Vec::new();
        for (number, term) in (0u32..).zip(field) {
            let Ok(action) = std::str::from_utf8(seg.term_bytes(term)?) else {
                continue;
            };
            let globs: Vec<usize> = (0..self.globs.len())
                .filter(|&g| self.globs[g].matches(action))
                .collect();
            if !globs.is_empty() {
                out.push((number, globs));
            }
        }
        Ok(out)
    }

    /// Count the matches of one segment, `matches` holding only events
    /// with one of `terms` (from [`GlobSum::terms`]) as action.
    pub fn add(
        &mut self,
        seg: &Seg,
        matches: &mut Matches<'_>,
        terms: &[(u32, Vec<usize>)],
    ) -> Result<(), FormatError> {
        let columns = [ACTION_COLUMN, OUTCOME, LEDGER].map(|c| seg.column(c).map(Values::new));
        let [Some(mut action), Some(mut outcome), Some(mut ledger)] = columns else {
            return Ok(());
        };
        let field = seg.field_terms(ACTION);
        // The position in `terms` of each action term number.
        let mut slot = vec![usize::MAX; field.len()];
        for (i, (number, _)) in terms.iter().enumerate() {
            if let Some(s) = slot.get_mut(*number as usize) {
                *s = i;
            }
        }
        let mut tallies: Vec<ActionTally> = terms
            .iter()
            .map(|_| ActionTally {
                total: 0,
                failures: 0,
                newest: Vec::with_capacity(self.keep),
            })
            .collect();
        let failure = outcome_code(Outcome::Failure);
        let keep = self.keep;
        matches.for_each(|doc| {
            let Some(v) = action.get(doc)?.filter(|&v| v != NONE) else {
                return Ok(());
            };
            let Some(tally) = usize::try_from(v)
                .ok()
                .and_then(|v| slot.get(v))
                .and_then(|&s| tallies.get_mut(s))
            else {
                return Err(no_such_term(ACTION, v, field.len(), doc));
            };
            tally.total += 1;
            if outcome.get(doc)? == Some(failure) {
                tally.failures += 1;
            }
            if let Some(index) = ledger.get(doc)? {
                keep_highest(&mut tally.newest, index, keep);
            }
            Ok(())
        })?;
        for ((number, globs), tally) in terms.iter().zip(tallies) {
            if tally.total == 0 {
                continue;
            }
            let name = String::from_utf8_lossy(seg.term_bytes(field.start + number)?).into_owned();
            for &g in globs {
                self.totals[g] += tally.total;
                self.failures[g] += tally.failures;
                *self.actions[g].entry(name.clone()).or_default() += tally.total;
                for &index in &tally.newest {
                    keep_highest(&mut self.newest[g], index, keep);
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Vec<GlobTally> {
        self.totals
            .into_iter()
            .zip(self.failures)
            .zip(self.actions)
            .zip(self.newest)
            .map(|(((total, failures), actions), mut newest)| {
                newest.sort_unstable_by(|a, b| b.cmp(a));
                GlobTally {
                    total,
                    failures,
                    by_action: ranked(actions.into_iter().collect()),
                    newest,
                }
            })
            .collect()
    }
}

/// Count descending, then name ascending.
fn ranked(mut counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// The durations of the matches of one query, by action: exact until
/// [`EXACT_DURATIONS`] of them are held, then sketched.
pub(crate) struct Durations {
    exact: HashMap<String, Vec<f64>>,
    held: usize,
    limit: usize,
    sketched: Option<HashMap<String, Sketch>>,
}

impl Default for Durations {
    fn default() -> Durations {
        Durations::with_limit(EXACT_DURATIONS)
    }
}

/// A DDSketch with the exact count, minimum, maximum and sum beside it.
struct Sketch {
    sketch: DDSketch,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl Sketch {
    fn new() -> Sketch {
        Sketch {
            sketch: DDSketch::new(SketchConfig::new(RELATIVE_ERROR, SKETCH_BINS, 1e-9)),
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
        }
    }

    fn add(&mut self, v: f64) {
        self.sketch.add(v);
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
    }

    fn summary(self, action: String) -> Option<Performance> {
        let n = self.count;
        if n == 0 {
            return None;
        }
        // The same nearest rank as the exact path, as the sketch's
        // quantile of that 0-based rank (it reads rank ⌊q·(n−1)⌋; the
        // half keeps float rounding from moving it down).
        let rank = |p: u64| {
            let r = (p * n).div_ceil(100).max(1) - 1;
            if r + 1 >= n {
                return self.max;
            }
            let q = (r as f64 + 0.5) / (n - 1) as f64;
            let v = self.sketch.quantile(q.min(1.0)).ok().flatten().unwrap_or(self.max);
            v.clamp(self.min, self.max)
        };
        Some(Performance {
            count: n,
            min: self.min,
            max: self.max,
            mean: self.sum / n as f64,
            p50: rank(50),
            p95: rank(95),
            p99: rank(99),
            exact: false,
            action,
        })
    }
}

impl Durations {
    fn with_limit(limit: usize) -> Durations {
        Durations {
            exact: HashMap::new(),
            held: 0,
            limit,
            sketched: None,
        }
    }

    pub fn add(&mut self, seg: &Seg, matches: &mut Matches<'_>) -> Result<(), FormatError> {
        let (Some(mut action), Some(mut duration)) = (
            seg.column(ACTION_COLUMN).map(Values::new),
            seg.column(DURATION).map(Values::new),
        ) else {
            return Ok(());
        };
        let actions = seg.field_terms(ACTION);
        let mut by_number: HashMap<u32, Vec<f64>> = HashMap::new();
        matches.for_each(|doc| {
            if let (Some(ms), Some(a)) = (duration.get(doc)?, action.get(doc)?) {
                if ms != NONE && a != NONE {
                    let number = u32::try_from(a)
                        .ok()
                        .filter(|&n| (n as usize) < actions.len())
                        .ok_or_else(|| no_such_term(ACTION, a, actions.len(), doc))?;
                    by_number.entry(number).or_default().push(f64::from_bits(ms));
                }
            }
            Ok(())
        })?;
        for (number, values) in by_number {
            let name = String::from_utf8_lossy(seg.term_bytes(actions.start + number)?).into_owned();
            self.extend(name, values);
        }
        Ok(())
    }

    fn extend(&mut self, action: String, values: Vec<f64>) {
        if self.sketched.is_none() && self.held + values.len() > self.limit {
            let mut sketches = HashMap::with_capacity(self.exact.len());
            for (a, held) in self.exact.drain() {
                let mut sketch = Sketch::new();
                held.into_iter().for_each(|v| sketch.add(v));
                sketches.insert(a, sketch);
            }
            self.held = 0;
            self.sketched = Some(sketches);
        }
        match &mut self.sketched {
            Some(sketches) => {
                let sketch = sketches.entry(action).or_insert_with(Sketch::new);
                values.into_iter().for_each(|v| sketch.add(v));
            }
            None => {
                self.held += values.len();
                self.exact.entry(action).or_default().extend(values);
            }
        }
    }

    pub fn finish(self) -> Vec<Performance> {
        let mut out: Vec<Performance> = match self.sketched {
            Some(sketches) => sketches.into_iter().filter_map(|(a, s)| s.summary(a)).collect(),
            None => self.exact.into_iter().filter_map(|(a, v)| summary(a, v)).collect(),
        };
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
        exact: true,
        action,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Log-uniform durations from 0.01 ms to 100 s, deterministic.
    fn durations(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                10f64.powf(-2.0 + 7.0 * u)
            })
            .collect()
    }

    fn run(limit: usize, actions: &[(&str, Vec<f64>)]) -> Vec<Performance> {
        let mut d = Durations::with_limit(limit);
        for (action, values) in actions {
            for chunk in values.chunks(997) {
                d.extend(action.to_string(), chunk.to_vec());
            }
        }
        d.finish()
    }

    #[test]
    fn within_the_limit_percentiles_are_exact_and_past_it_within_the_relative_error() {
        let actions = [
            ("a", durations(30_000, 1)),
            ("b", durations(20_000, 2)),
            ("c", vec![0.0, 5.0]),
        ];
        let exact = run(usize::MAX, &actions);
        assert!(exact.iter().all(|p| p.exact));
        let expected: Vec<Performance> = actions
            .iter()
            .map(|(a, v)| summary(a.to_string(), v.clone()).unwrap())
            .collect();
        assert_eq!(exact, expected);

        let sketched = run(10_000, &actions);
        assert_eq!(sketched.len(), exact.len());
        for (s, e) in sketched.iter().zip(&exact) {
            assert!(!s.exact);
            assert_eq!((&s.action, s.count, s.min, s.max), (&e.action, e.count, e.min, e.max));
            assert!((s.mean - e.mean).abs() <= 1e-9 * e.mean.abs().max(1.0), "{s:?} {e:?}");
            for (got, want) in [(s.p50, e.p50), (s.p95, e.p95), (s.p99, e.p99)] {
                assert!(
                    (got - want).abs() <= RELATIVE_ERROR * want + 1e-9,
                    "{}: {got} against {want}",
                    s.action
                );
            }
        }
    }
}

/// A term field whose values [`crate::EventIndex::facet`] counts among
/// the matching events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facet {
    /// Each target as `type:id`; an event with two targets counts for both.
    Target,
    Tenant,
    /// `source.service`.
    Service,
    /// `source.workflow`.
    Workflow,
}

impl Facet {
    fn field(self) -> u8 {
        match self {
            Facet::Target => TARGET,
            Facet::Tenant => TENANT,
            Facet::Service => SERVICE,
            Facet::Workflow => WORKFLOW,
        }
    }

    /// The value a term of this facet's field stands for.
    fn value(self, term: &[u8]) -> String {
        if self == Facet::Target {
            // `<type length>:<type><id>` (schema::push_target_term).
            let text = String::from_utf8_lossy(term);
            if let Some((len, rest)) = text.split_once(':') {
                if let Some((kind, id)) = len
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| Some((rest.get(..n)?, rest.get(n..)?)))
                {
                    return format!("{kind}:{id}");
                }
            }
            return text.into_owned();
        }
        String::from_utf8_lossy(term).into_owned()
    }
}

/// Counts of one facet's values among the matches of one query, summed
/// segment by segment.
#[derive(Default)]
pub(crate) struct FacetSum {
    counts: HashMap<String, u64>,
    bits: Vec<u64>,
    block: Vec<u32>,
}

impl FacetSum {
    /// Count the matches of one segment: the matching documents become a
    /// bit set, then each term's posting list is walked over the span of
    /// the matches (whole lists only when every document matches).
    pub fn add(&mut self, seg: &Seg, matches: &mut Matches<'_>, facet: Facet) -> Result<(), FormatError> {
        let docs = seg.docs() as usize;
        self.bits.clear();
        self.bits.resize(docs.div_ceil(64), 0);
        let (mut n, mut lo, mut hi) = (0u64, u32::MAX, 0u32);
        let bits = &mut self.bits;
        matches.for_each(|d| {
            if let Some(word) = bits.get_mut(d as usize / 64) {
                *word |= 1 << (d % 64);
            }
            n += 1;
            lo = lo.min(d);
            hi = hi.max(d);
            Ok(())
        })?;
        if n == 0 {
            return Ok(());
        }
        let every = n == u64::from(seg.docs());
        for term in seg.field_terms(facet.field()) {
            let postings = seg.postings(term)?;
            let count = if every {
                u64::from(postings.len())
            } else {
                let mut count = 0;
                let mut b = postings.seek_block(lo);
                while b < postings.blocks() && postings.block_base(b).is_none_or(|base| base < hi) {
                    self.block.clear();
                    postings.block(b, &mut self.block)?;
                    for &d in &self.block {
                        if self.bits.get(d as usize / 64).is_some_and(|w| w & (1 << (d % 64)) != 0) {
                            count += 1;
                        }
                    }
                    b += 1;
                }
                count
            };
            if count > 0 {
                *self.counts.entry(facet.value(seg.term_bytes(term)?)).or_default() += count;
            }
        }
        Ok(())
    }

    /// Count descending, then value ascending.
    pub fn finish(self) -> Vec<(String, u64)> {
        ranked(self.counts.into_iter().collect())
    }
}
