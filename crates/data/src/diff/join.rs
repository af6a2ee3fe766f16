//! The merge of two sides sorted by (hash, key): where changes are made.

use std::cmp::Ordering;

use super::plan::{Plan, SidePlan};
use super::record::{self, Spans, View, HEADER};
use super::store::{Entry, Store};
use super::{ChangeSink, DiffSummary, DuplicateSample, DUPLICATE_SAMPLES, LINES_PER_DUPLICATE};
use crate::{Change, ChangeKind, DataError, Duplicate, FieldChange};

pub(crate) struct Joiner<'a> {
    plan: &'a Plan,
    summary: &'a mut DiffSummary,
    sink: &'a mut dyn ChangeSink,
    left_spans: Spans,
    right_spans: Spans,
}

/// A record read back: only reached if memory or a checksummed file holds
/// something the encoder did not write.
fn damaged(side: &SidePlan) -> DataError {
    DataError::new(&side.name, "internal error: a stored row does not decode")
}

fn view<'s>(store: &'s Store, e: &Entry, side: &SidePlan) -> Result<View<'s>, DataError> {
    record::view(&store.record(e)[HEADER..]).ok_or_else(|| damaged(side))
}

/// The end of the group of entries with the key of `entries[i]`.
fn group_end(store: &Store, entries: &[Entry], i: usize) -> usize {
    let first = &entries[i];
    let mut j = i + 1;
    // Most keys are alone: the next hash differs and no key is decoded.
    while j < entries.len() && entries[j].hash == first.hash && store.key(&entries[j]) == store.key(first) {
        j += 1;
    }
    j
}

impl<'a> Joiner<'a> {
    pub fn new(plan: &'a Plan, summary: &'a mut DiffSummary, sink: &'a mut dyn ChangeSink) -> Joiner<'a> {
        Joiner {
            plan,
            summary,
            sink,
            left_spans: Spans::default(),
            right_spans: Spans::default(),
        }
    }

    /// Compares two sides held in memory, each sorted, emitting changes in order.
    pub fn join(&mut self, left: Store, right: Store) -> Result<(), DataError> {
        let (le, re) = (&left.entries, &right.entries);
        let (mut i, mut j) = (0, 0);
        while i < le.len() || j < re.len() {
            let order = if i == le.len() {
                Ordering::Greater
            } else if j == re.len() {
                Ordering::Less
            } else {
                le[i]
                    .hash
                    .cmp(&re[j].hash)
                    .then_with(|| left.key(&le[i]).cmp(right.key(&re[j])))
            };
            let i_end = if order != Ordering::Greater {
                group_end(&left, le, i)
            } else {
                i
            };
            let j_end = if order != Ordering::Less {
                group_end(&right, re, j)
            } else {
                j
            };
            self.group(&left, &le[i..i_end], &right, &re[j..j_end])?;
            i = i_end;
            j = j_end;
        }
        Ok(())
    }

    /// One key: its rows on the left and on the right (either may be empty).
    fn group(&mut self, left: &Store, l: &[Entry], right: &Store, r: &[Entry]) -> Result<(), DataError> {
        let plan = self.plan;
        match (l, r) {
            ([e], []) => {
                let v = view(left, e, &plan.left)?;
                self.left_spans
                    .split(&v, plan.left.columns)
                    .ok_or_else(|| damaged(&plan.left))?;
                self.summary.removed += 1;
                let change = Change {
                    kind: ChangeKind::Removed,
                    key: plan.left.key.iter().map(|&k| self.left_spans.owned(&v, k)).collect(),
                    left_line: Some(v.line),
                    right_line: None,
                    row: self.left_spans.all(&v),
                    fields: Vec::new(),
                    duplicate: None,
                };
                self.sink.change(&change)
            }
            ([], [e]) => {
                let v = view(right, e, &plan.right)?;
                self.right_spans
                    .split(&v, plan.right.columns)
                    .ok_or_else(|| damaged(&plan.right))?;
                self.summary.added += 1;
                let change = Change {
                    kind: ChangeKind::Added,
                    key: plan.right.key.iter().map(|&k| self.right_spans.owned(&v, k)).collect(),
                    left_line: None,
                    right_line: Some(v.line),
                    row: self.right_spans.all(&v),
                    fields: Vec::new(),
                    duplicate: None,
                };
                self.sink.change(&change)
            }
            ([a], [b]) => self.pair(left, a, right, b),
            _ => {
                let first = if let Some(e) = l.first() {
                    let v = view(left, e, &plan.left)?;
                    self.left_spans
                        .split(&v, plan.left.columns)
                        .ok_or_else(|| damaged(&plan.left))?;
                    plan.left.key.iter().map(|&k| self.left_spans.owned(&v, k)).collect()
                } else {
                    let v = view(right, &r[0], &plan.right)?;
                    self.right_spans
                        .split(&v, plan.right.columns)
                        .ok_or_else(|| damaged(&plan.right))?;
                    plan.right.key.iter().map(|&k| self.right_spans.owned(&v, k)).collect()
                };
                let lines = |store: &Store, es: &[Entry], side: &SidePlan| -> Result<Vec<u64>, DataError> {
                    es.iter()
                        .take(LINES_PER_DUPLICATE)
                        .map(|e| view(store, e, side).map(|v| v.line))
                        .collect()
                };
                let dup = Duplicate {
                    left_rows: l.len() as u64,
                    right_rows: r.len() as u64,
                    left_lines: lines(left, l, &plan.left)?,
                    right_lines: lines(right, r, &plan.right)?,
                };
                self.duplicate(first, dup)
            }
        }
    }

    /// A key with more than one row on a side.
    pub fn duplicate(&mut self, key: Vec<Option<String>>, dup: Duplicate) -> Result<(), DataError> {
        let s = &mut *self.summary;
        if dup.left_rows > 1 {
            s.left_duplicate_keys += 1;
            s.left_duplicate_rows += dup.left_rows;
        }
        if dup.right_rows > 1 {
            s.right_duplicate_keys += 1;
            s.right_duplicate_rows += dup.right_rows;
        }
        s.left_excluded_rows += dup.left_rows;
        s.right_excluded_rows += dup.right_rows;
        if s.duplicate_samples.len() < DUPLICATE_SAMPLES {
            s.duplicate_samples.push(DuplicateSample {
                key: key.clone(),
                left_rows: dup.left_rows,
                right_rows: dup.right_rows,
                left_lines: dup.left_lines.clone(),
                right_lines: dup.right_lines.clone(),
            });
        }
        self.sink.change(&Change {
            kind: ChangeKind::Duplicate,
            key,
            left_line: None,
            right_line: None,
            row: Vec::new(),
            fields: Vec::new(),
            duplicate: Some(dup),
        })
    }

    /// One row on each side under one key.
    fn pair(&mut self, left: &Store, a: &Entry, right: &Store, b: &Entry) -> Result<(), DataError> {
        let plan = self.plan;
        let lv = view(left, a, &plan.left)?;
        let rv = view(right, b, &plan.right)?;
        // Rows equal byte for byte, with every compared column at the same
        // place on both sides: unchanged without looking at any value.
        if plan.aligned && lv.values() == rv.values() {
            self.summary.unchanged += 1;
            return Ok(());
        }
        self.left_spans
            .split(&lv, plan.left.columns)
            .ok_or_else(|| damaged(&plan.left))?;
        self.right_spans
            .split(&rv, plan.right.columns)
            .ok_or_else(|| damaged(&plan.right))?;
        let (ls, rs) = (&self.left_spans, &self.right_spans);
        let differs = |c: &super::plan::Compared| {
            let (x, y) = (ls.bytes(&lv, c.left), rs.bytes(&rv, c.right));
            x != y && !record::equal(ls.get(&lv, c.left), rs.get(&rv, c.right), c.fold, plan.tolerance)
        };
        if !plan.compared.iter().any(differs) {
            self.summary.unchanged += 1;
            return Ok(());
        }
        let mut fields = Vec::new();
        for c in plan.compared.iter().filter(|c| differs(c)) {
            *self.summary.changed_fields.entry(c.name.clone()).or_insert(0) += 1;
            fields.push(FieldChange {
                column: c.name.clone(),
                old: ls.owned(&lv, c.left),
                new: rs.owned(&rv, c.right),
            });
        }
        self.summary.changed += 1;
        let change = Change {
            kind: ChangeKind::Changed,
            key: plan.left.key.iter().map(|&k| ls.owned(&lv, k)).collect(),
            left_line: Some(lv.line),
            right_line: Some(rv.line),
            row: Vec::new(),
            fields,
            duplicate: None,
        };
        self.sink.change(&change)
    }
}
