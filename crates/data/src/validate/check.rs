//! Checking a source against rules in one pass. Memory: the rules, one
//! row, and for `unique` columns a digest and a line per distinct value,
//! within the rules' budget (a clear refusal past it).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rules::{sanity_window, Rules};
use super::value::{self, Typed};
use super::UNIQUE_BYTES_PER_VALUE;
use crate::{DataError, Row, Source};

/// One value (or one row's pair of values) that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Line of the row in the input.
    pub line: u64,
    pub column: String,
    /// The value as read; null when missing.
    pub value: Option<String>,
    /// The rule's name: `required`, `type`, `range`, `pattern`, `allowed`,
    /// `unique`, `date_sanity` or `compare`.
    pub rule: String,
    /// What the rule demands, e.g. `between 0 and 100`.
    pub text: String,
    /// What else the violation involves: the first line of a duplicate,
    /// the other column's value of a comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Violations of one rule of one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSummary {
    pub column: String,
    pub rule: String,
    pub text: String,
    pub violations: u64,
}

/// What a validation found. The top-level numbers are the run's metrics
/// in the run history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationSummary {
    pub input: String,
    pub rules_file: String,
    pub rows: u64,
    /// Rows with at least one violation.
    pub rows_with_violations: u64,
    pub violations: u64,
    /// Share of rows without any violation, `(rows - rows_with_violations)
    /// / rows`, 0 to 1; null for an input without rows.
    pub quality_score: Option<f64>,
    pub violations_by_rule: BTreeMap<String, u64>,
    pub violations_by_column: BTreeMap<String, u64>,
    /// Every rule, in the rules file's order, with its count.
    pub rules: Vec<RuleSummary>,
}

struct Tally<'s> {
    counts: Vec<u64>,
    violations: u64,
    row_has_violation: bool,
    sink: &'s mut dyn FnMut(&Violation) -> Result<(), DataError>,
}

impl Tally<'_> {
    fn report(
        &mut self,
        rules: &Rules,
        rule: usize,
        line: u64,
        value: Option<&str>,
        detail: Option<String>,
    ) -> Result<(), DataError> {
        let info = &rules.infos[rule];
        self.counts[rule] += 1;
        self.violations += 1;
        self.row_has_violation = true;
        (self.sink)(&Violation {
            line,
            column: info.column.clone(),
            value: value.map(str::to_string),
            rule: info.rule.to_string(),
            text: info.text.clone(),
            detail,
        })
    }
}

/// Checks every row of `source` against `rules`, handing each violation
/// to `sink` as it is found (a sink error stops the check and is
/// returned). Refuses rules naming a column the input lacks, or has twice.
///
/// A value that is null or empty is missing: `required` reports it, every
/// other rule skips it. A value not of its column's type is reported by
/// `type` and skipped by `range`, `date_sanity` and `compare`; `pattern`,
/// `allowed` and `unique` look at the text as it is.
pub fn check(
    source: &mut dyn Source,
    rules: &Rules,
    sink: &mut dyn FnMut(&Violation) -> Result<(), DataError>,
) -> Result<ValidationSummary, DataError> {
    let positions = resolve(source, rules)?;
    let windows: Vec<_> = rules
        .columns
        .iter()
        .map(|c| {
            c.sanity
                .as_ref()
                .map(|(_, past, future)| sanity_window(rules.reference_date, *past, *future))
        })
        .collect();
    let mut seen: Vec<HashMap<u128, u64, DigestHash>> = vec![HashMap::default(); rules.columns.len()];
    let mut distinct: u64 = 0;
    let budget_values = rules.unique_memory / UNIQUE_BYTES_PER_VALUE;
    let mut tally = Tally {
        counts: vec![0; rules.infos.len()],
        violations: 0,
        row_has_violation: false,
        sink,
    };
    let mut rows: u64 = 0;
    let mut bad_rows: u64 = 0;
    let mut row = Row::new();
    while source.next_row(&mut row)? {
        rows += 1;
        tally.row_has_violation = false;
        let line = row.line;
        for (c, col) in rules.columns.iter().enumerate() {
            let value = row.get(positions[c]).filter(|v| !v.is_empty());
            let Some(text) = value else {
                if let Some(rule) = col.required {
                    tally.report(rules, rule, line, row.get(positions[c]), None)?;
                }
                continue;
            };
            let typed = match col.kind {
                Some(kind) => match value::read(kind, &col.format, text) {
                    Some(t) => Some(t),
                    None => {
                        if let Some(rule) = col.type_rule {
                            tally.report(rules, rule, line, Some(text), None)?;
                        }
                        None
                    }
                },
                None => None,
            };
            if let (Some(t), Some((rule, min, max))) = (typed, &col.range) {
                let below = min
                    .as_ref()
                    .is_some_and(|m| t.compare(&m.typed()) == Some(std::cmp::Ordering::Less));
                let above = max
                    .as_ref()
                    .is_some_and(|m| t.compare(&m.typed()) == Some(std::cmp::Ordering::Greater));
                if below || above {
                    tally.report(rules, *rule, line, Some(text), None)?;
                }
            }
            if let (Some(t), Some((rule, _, _)), Some((earliest, latest))) = (typed, &col.sanity, windows[c]) {
                let date = match t {
                    Typed::Date(d) => Some(d),
                    Typed::Timestamp(ts) => Some(value::utc_date(ts)),
                    _ => None,
                };
                if let Some(d) = date {
                    if earliest.is_some_and(|e| d < e) || latest.is_some_and(|l| d > l) {
                        let detail = format!("reference date {}", rules.reference_date);
                        tally.report(rules, *rule, line, Some(text), Some(detail))?;
                    }
                }
            }
            if let Some((rule, regex)) = &col.pattern {
                if !regex.is_match(text) {
                    tally.report(rules, *rule, line, Some(text), None)?;
                }
            }
            if let Some((rule, allowed)) = &col.allowed {
                if !allowed.contains(text) {
                    tally.report(rules, *rule, line, Some(text), None)?;
                }
            }
            if let Some(rule) = col.unique {
                let digest = Sha256::digest(text.as_bytes());
                let mut key = [0u8; 16];
                key.copy_from_slice(&digest[..16]);
                let key = u128::from_le_bytes(key);
                match seen[c].entry(key) {
                    Entry::Occupied(first) => {
                        let detail = format!("first seen on line {}", first.get());
                        tally.report(rules, rule, line, Some(text), Some(detail))?;
                    }
                    Entry::Vacant(slot) => {
                        if distinct >= budget_values {
                            return Err(DataError::new(
                                source.name(),
                                format!(
                                    "more distinct values than the unique rules' memory budget holds \
                                     ({distinct} values in {} MiB, {UNIQUE_BYTES_PER_VALUE} bytes each); \
                                     raise unique_memory_mib in {}",
                                    rules.unique_memory >> 20,
                                    rules.file
                                ),
                            )
                            .at_line(line)
                            .in_column(&col.name));
                        }
                        distinct += 1;
                        slot.insert(line);
                    }
                }
            }
        }
        for cmp in &rules.comparisons {
            let (lc, rc) = (&rules.columns[cmp.left], &rules.columns[cmp.right]);
            let left = row.get(positions[cmp.left]).filter(|v| !v.is_empty());
            let right = row.get(positions[cmp.right]).filter(|v| !v.is_empty());
            let (Some(lt), Some(rt)) = (left, right) else {
                continue;
            };
            // Declared types were checked when the rules were read.
            let (Some(lk), Some(rk)) = (lc.kind, rc.kind) else {
                continue;
            };
            let (Some(a), Some(b)) = (value::read(lk, &lc.format, lt), value::read(rk, &rc.format, rt)) else {
                continue;
            };
            if let Some(order) = a.compare(&b) {
                if !cmp.op.holds(order) {
                    let detail = format!("{} is {rt}", rc.name);
                    tally.report(rules, cmp.rule, line, Some(lt), Some(detail))?;
                }
            }
        }
        if tally.row_has_violation {
            bad_rows += 1;
        }
    }
    let mut by_rule = BTreeMap::new();
    let mut by_column = BTreeMap::new();
    let mut summaries = Vec::with_capacity(rules.infos.len());
    for (info, &n) in rules.infos.iter().zip(&tally.counts) {
        if n > 0 {
            *by_rule.entry(info.rule.to_string()).or_insert(0) += n;
            *by_column.entry(info.column.clone()).or_insert(0) += n;
        }
        summaries.push(RuleSummary {
            column: info.column.clone(),
            rule: info.rule.to_string(),
            text: info.text.clone(),
            violations: n,
        });
    }
    Ok(ValidationSummary {
        input: source.name().to_string(),
        rules_file: rules.file.clone(),
        rows,
        rows_with_violations: bad_rows,
        violations: tally.violations,
        quality_score: (rows > 0).then(|| (rows - bad_rows) as f64 / rows as f64),
        violations_by_rule: by_rule,
        violations_by_column: by_column,
        rules: summaries,
    })
}

/// Hashes a digest key by taking its bits: the key is already a SHA-256
/// prefix, so hashing it again would only cost time.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type DigestHash = BuildHasherDefault<DigestHasher>;

/// The input's position of each column the rules name.
fn resolve(source: &dyn Source, rules: &Rules) -> Result<Vec<usize>, DataError> {
    let names = source.columns();
    rules
        .columns
        .iter()
        .map(|col| {
            let mut at = names
                .iter()
                .enumerate()
                .filter(|(_, n)| **n == col.name)
                .map(|(i, _)| i);
            match (at.next(), at.next()) {
                (Some(i), None) => Ok(i),
                (None, _) => Err(DataError::new(
                    &rules.file,
                    format!("a rule names column {:?}, which {} lacks", col.name, source.name()),
                )
                .at_line(col.line)
                .in_column(&col.name)),
                (Some(_), Some(_)) => Err(DataError::new(
                    &rules.file,
                    format!("a rule names column {:?}, which {} has twice", col.name, source.name()),
                )
                .at_line(col.line)
                .in_column(&col.name)),
            }
        })
        .collect()
}
