//! Key discovery: the minimal unique column combinations of a table (its
//! candidate keys), optionally the combinations that are almost unique,
//! and the keys two tables share, for choosing the key of a diff.
//!
//! The table is read once into memory column-wise ([`KeyOptions::memory_budget`]
//! bounds it) and searched by HPIValid: sampled pairs of rows tell which
//! combinations cannot be keys, a tree search proposes the smallest
//! combinations that survive, and each proposal is checked on all rows.
//! The result is exact: every minimal key up to
//! [`KeyOptions::max_columns`] columns, and nothing else.
//!
//! Values are compared as text, exactly: `1` and `1.0` differ.
//! docs/data.md ("Key discovery") describes the report.

mod bits;
mod hpivalid;
mod near;
mod table;

use serde::{Deserialize, Serialize};

use crate::{DataError, Source};
use table::Table;

/// Whether two nulls count as the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NullEquality {
    /// Null equals null: two rows with null in a column agree on it (the
    /// usual choice of profiling tools, not SQL's).
    #[default]
    Equal,
    /// Every null differs from every value, other nulls included, as SQL's
    /// `UNIQUE` constraint has it: nulls never make a combination non-unique.
    Distinct,
}

/// What [`discover`] looks for, and with how much memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOptions {
    /// Keys of at most this many columns; `None` for all minimal keys
    /// (their number can grow exponentially with the columns of a wide
    /// table).
    pub max_columns: Option<usize>,
    pub nulls: NullEquality,
    /// Bytes the table and the search may hold. Default 256 MiB.
    pub memory_budget: usize,
    /// Also report near keys ([`NearKeys`]).
    pub near: bool,
    /// How many near keys to report at most. Default 10.
    pub near_limit: usize,
}

impl Default for KeyOptions {
    fn default() -> KeyOptions {
        KeyOptions {
            max_columns: None,
            nulls: NullEquality::Equal,
            memory_budget: 256 << 20,
            near: false,
            near_limit: 10,
        }
    }
}

/// The keys of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    pub rows: u64,
    pub columns: Vec<String>,
    /// Every minimal key (up to `max_columns` columns): each a list of
    /// column names in table order; fewer columns first, then by the
    /// position of their columns.
    pub keys: Vec<Vec<String>>,
    /// The limit the keys were searched with, absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_columns: Option<usize>,
    pub nulls: NullEquality,
    /// Columns holding at least one null, in table order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nullable: Vec<String>,
    /// Near keys, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<NearKeys>,
}

/// Combinations that are almost keys: see [`NearKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearKeys {
    /// Combinations of up to this many columns were considered.
    pub max_columns: usize,
    /// The best few, fewest duplicate rows first.
    pub keys: Vec<NearKey>,
}

/// A combination that is not unique but comes close: each of its columns
/// removes duplicates the others leave, and no subset of it is a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearKey {
    pub columns: Vec<String>,
    /// Rows whose values on `columns` some other row shares (two equal
    /// rows count as two).
    pub duplicate_rows: u64,
}

/// The keys two tables share, by column name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonKeys {
    /// Best first: keys without nulls, then those minimal in both tables,
    /// then fewer columns.
    pub keys: Vec<CommonKey>,
}

/// A combination unique in both tables, minimal as such: no proper subset
/// is unique in both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonKey {
    /// Column names, in the first table's order.
    pub columns: Vec<String>,
    /// A minimal key of each table on its own (otherwise it is the union
    /// of a key of one and a key of the other).
    pub minimal_in_both: bool,
    /// No null in these columns in either table: a diff can match rows by
    /// it without guessing how nulls compare.
    pub diffable: bool,
}

/// Reads `source` and finds its minimal keys (and near keys when asked).
/// Refuses a table that does not fit in `options.memory_budget`, naming
/// the line reached.
pub fn discover(source: &mut dyn Source, options: &KeyOptions) -> Result<KeyReport, DataError> {
    let table = Table::load(source, options)?;
    let n_cols = table.columns.len();
    let limit = options.max_columns.unwrap_or(n_cols).min(n_cols);

    // The search holds a refined partition per level of its path (two
    // for the first check), each at most the largest column's, and
    // per-row work space.
    let largest = table.partitions.iter().map(|p| p.bound()).max().unwrap_or(0);
    let mut search_bytes = table.bytes + largest * limit.saturating_sub(1).max(2) + table.rows * 8;
    if options.near {
        search_bytes += near::bytes_needed(&table, options, largest);
    }
    if search_bytes > options.memory_budget {
        let mib = |b: usize| b.div_ceil(1 << 20);
        return Err(DataError::new(
            source.name(),
            format!(
                "key discovery over {} rows may need {} MiB, budget {} MiB: \
                 lower the number of columns per key or raise the budget",
                table.rows,
                mib(search_bytes),
                mib(options.memory_budget)
            ),
        ));
    }

    let keys: Vec<Vec<usize>> = if n_cols == 0 || limit == 0 {
        Vec::new()
    } else if table.rows <= 1 {
        // With no two rows, every column alone is a key.
        (0..n_cols).map(|c| vec![c]).collect()
    } else {
        hpivalid::minimal_keys(&table, limit)
    };
    let near = options.near.then(|| near::near_keys(&table, options));

    let name = |c: usize| table.columns[c].clone();
    let mut keys = keys;
    keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    Ok(KeyReport {
        rows: table.rows as u64,
        columns: table.columns.clone(),
        keys: keys.iter().map(|k| k.iter().map(|&c| name(c)).collect()).collect(),
        max_columns: options.max_columns,
        nulls: options.nulls,
        nullable: (0..n_cols).filter(|&c| table.nulls[c] > 0).map(name).collect(),
        near: near.map(|(max_columns, found)| NearKeys {
            max_columns,
            keys: found
                .into_iter()
                .map(|(cols, duplicate_rows)| NearKey {
                    columns: cols.into_iter().map(name).collect(),
                    duplicate_rows,
                })
                .collect(),
        }),
    })
}

/// The keys `a` and `b` share: the minimal combinations (of columns both
/// have) unique in both tables. A combination is unique in both exactly
/// when it contains a key of each, so these are the minimal unions of a
/// key of `a` and a key of `b`; a key of both is its own union. The result
/// is complete up to the smaller of the two reports' `max_columns`.
pub fn common(a: &KeyReport, b: &KeyReport) -> CommonKeys {
    let position = |name: &str| a.columns.iter().position(|c| c == name);
    let shared = |key: &Vec<String>| key.iter().all(|c| a.columns.contains(c) && b.columns.contains(c));
    let as_set = |key: &Vec<String>| -> Option<Vec<usize>> {
        let mut set: Vec<usize> = key.iter().map(|c| position(c)).collect::<Option<_>>()?;
        set.sort_unstable();
        set.dedup();
        Some(set)
    };
    let keys_a: Vec<Vec<usize>> = a.keys.iter().filter(|k| shared(k)).filter_map(as_set).collect();
    let keys_b: Vec<Vec<usize>> = b.keys.iter().filter(|k| shared(k)).filter_map(as_set).collect();
    let limit = match (a.max_columns, b.max_columns) {
        (Some(x), Some(y)) => x.min(y),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => usize::MAX,
    };

    let mut unions: Vec<Vec<usize>> = Vec::new();
    for ka in &keys_a {
        for kb in &keys_b {
            let mut u: Vec<usize> = ka.iter().chain(kb).copied().collect();
            u.sort_unstable();
            u.dedup();
            if u.len() <= limit {
                unions.push(u);
            }
        }
    }
    unions.sort_by(|x, y| x.len().cmp(&y.len()).then_with(|| x.cmp(y)));
    unions.dedup();
    let subset = |x: &[usize], y: &[usize]| x.iter().all(|c| y.contains(c));
    let mut minimal: Vec<Vec<usize>> = Vec::new();
    for u in unions {
        if !minimal.iter().any(|m| subset(m, &u)) {
            minimal.push(u);
        }
    }

    let nullable = |c: &String| a.nullable.contains(c) || b.nullable.contains(c);
    let mut keys: Vec<CommonKey> = minimal
        .into_iter()
        .map(|set| {
            let in_both = keys_a.contains(&set) && keys_b.contains(&set);
            let columns: Vec<String> = set.iter().map(|&c| a.columns[c].clone()).collect();
            CommonKey {
                diffable: !columns.iter().any(nullable),
                columns,
                minimal_in_both: in_both,
            }
        })
        .collect();
    // Stable: ties keep the order by size and position from above.
    keys.sort_by_key(|k| (!k.diffable, !k.minimal_in_both, k.columns.len()));
    CommonKeys { keys }
}
