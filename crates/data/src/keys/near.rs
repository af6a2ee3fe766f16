//! Near keys: combinations that are not unique but leave few rows
//! duplicated. Every combination of up to a few columns is refined from
//! its prefix's partition (a depth-first walk, one partition per level),
//! skipping supersets of keys; the walk is bounded by a number of
//! combinations, lowering the depth when a wide table would exceed it.

use std::collections::HashMap;

use super::table::{Partition, Scratch, Table};
use super::KeyOptions;

/// Depth when keys are searched without a limit.
const DEFAULT_COLUMNS: usize = 3;
/// Combinations the walk may visit.
const MAX_COMBINATIONS: u64 = 200_000;

fn combinations(n: u64, k: usize) -> u64 {
    let mut total = 0u64;
    let mut c = 1u64;
    for i in 1..=k as u64 {
        if i > n {
            break;
        }
        c = c.saturating_mul(n - i + 1) / i;
        total = total.saturating_add(c);
    }
    total
}

fn depth(table: &Table, options: &KeyOptions) -> usize {
    let n_cols = table.columns.len();
    let mut depth = options.max_columns.unwrap_or(DEFAULT_COLUMNS).min(n_cols);
    while depth > 1 && combinations(n_cols as u64, depth) > MAX_COMBINATIONS {
        depth -= 1;
    }
    depth
}

/// At most what the walk holds: a partition per level, and an entry per
/// combination (its columns and count, in a hash map).
pub(crate) fn bytes_needed(table: &Table, options: &KeyOptions, largest_partition: usize) -> usize {
    let depth = depth(table, options);
    let entries = combinations(table.columns.len() as u64, depth) as usize;
    largest_partition * depth + entries * (48 + 8 * depth)
}

/// The depth searched, and the best near keys: column numbers with their
/// duplicate rows.
pub(crate) fn near_keys(table: &Table, options: &KeyOptions) -> (usize, Vec<(Vec<usize>, u64)>) {
    let n_cols = table.columns.len();
    let depth = depth(table, options);
    if table.rows < 2 || depth == 0 {
        return (depth, Vec::new());
    }
    let mut walk = Walk {
        table,
        depth,
        duplicates: HashMap::new(),
        levels: vec![Partition::default(); depth],
        scratch: Scratch::default(),
        path: Vec::new(),
    };
    for c in 0..n_cols {
        walk.visit(c);
    }
    let all_rows = table.rows as u64;
    let mut found: Vec<(Vec<usize>, u64)> = Vec::new();
    for (set, &d) in &walk.duplicates {
        if d == 0 {
            continue;
        }
        // Each column must remove duplicates the others leave.
        let minimal = (0..set.len()).all(|i| {
            let mut rest = set.clone();
            rest.remove(i);
            let before = if rest.is_empty() {
                all_rows
            } else {
                walk.duplicates.get(&rest).copied().unwrap_or(0)
            };
            before > d
        });
        if minimal {
            found.push((set.clone(), d));
        }
    }
    found.sort_by(|a, b| (a.1, a.0.len(), &a.0).cmp(&(b.1, b.0.len(), &b.0)));
    found.truncate(options.near_limit);
    (depth, found)
}

struct Walk<'t> {
    table: &'t Table,
    depth: usize,
    /// Duplicate rows of every combination visited (0 for keys).
    duplicates: HashMap<Vec<usize>, u64>,
    levels: Vec<Partition>,
    scratch: Scratch,
    path: Vec<usize>,
}

impl Walk<'_> {
    fn visit(&mut self, column: usize) {
        let k = self.path.len();
        self.path.push(column);
        let table = self.table;
        let d = if k == 0 {
            table.partitions[column].duplicate_rows()
        } else {
            let (before, after) = self.levels.split_at_mut(k);
            let previous = if k == 1 {
                &table.partitions[self.path[0]]
            } else {
                &before[k - 1]
            };
            previous.intersect(&table.groups[column], &mut after[0], &mut self.scratch);
            after[0].duplicate_rows()
        };
        self.duplicates.insert(self.path.clone(), d);
        if d > 0 && self.path.len() < self.depth {
            for next in column + 1..table.columns.len() {
                self.visit(next);
            }
        }
        self.path.pop();
    }
}
