//! The keyed diff of two tables, in bounded memory.
//!
//! Both inputs are read once, each on its own thread, into compact row
//! records (one byte string per row, see `record`), split into 64
//! partitions by the top bits of the key's hash. Partitions stay in memory
//! while the budget allows; past it, the highest ones move to temporary
//! files, one at a time (see `store::read_side`). The partitions are then
//! compared in order (one from files that is still too big is split again
//! on the next bits): each side sorted by (key hash, key), the two merged.
//! So changes always come out ordered by (key hash, key bytes), whatever
//! the row order of the inputs, the budget, or whether anything spilled.
//!
//! The format of the partition files is described in `docs/data.md`.

mod join;
mod plan;
mod record;
mod spill;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::{Change, DataError, Source};

pub use plan::Layout;

/// How many duplicated keys [`DiffSummary::duplicate_samples`] keeps.
pub const DUPLICATE_SAMPLES: usize = 10;

/// How many lines per side a [`crate::Duplicate`] lists.
pub const LINES_PER_DUPLICATE: usize = 10;

/// The default memory budget: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// What to compare and how. Column names are those of the right input; a
/// renamed left column may also be named by its left name.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// The key columns: together they identify a row. At least one.
    pub key: Vec<String>,
    /// Columns left out of the comparison (they still count as schema).
    pub ignore: Vec<String>,
    /// Left column name → right column name, for columns renamed between
    /// the two inputs.
    pub rename: Vec<(String, String)>,
    /// Columns compared without regard to case (Unicode lowercase). Applies
    /// to key columns too.
    pub case_insensitive: Vec<String>,
    /// Columns compared without regard to leading and trailing whitespace,
    /// with inner runs of whitespace counting as one space. Applies to key
    /// columns too.
    pub whitespace_insensitive: Vec<String>,
    /// Values of a compared column that both parse as decimal numbers are
    /// equal when they differ by at most this much. Not applied to keys.
    pub numeric_tolerance: Option<f64>,
    /// Bytes the diff may hold: rows, indexes and spill buffers.
    pub memory_budget: usize,
    /// Where temporary partition files go (default: the system's).
    pub temp_dir: Option<PathBuf>,
}

impl Default for DiffOptions {
    fn default() -> DiffOptions {
        DiffOptions {
            key: Vec::new(),
            ignore: Vec::new(),
            rename: Vec::new(),
            case_insensitive: Vec::new(),
            whitespace_insensitive: Vec::new(),
            numeric_tolerance: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            temp_dir: None,
        }
    }
}

impl DiffOptions {
    /// Options comparing by these key columns, everything else default.
    pub fn with_key<S: AsRef<str>>(key: &[S]) -> DiffOptions {
        DiffOptions {
            key: key.iter().map(|k| k.as_ref().to_string()).collect(),
            ..DiffOptions::default()
        }
    }
}

/// How the columns differ, compared by name after renames.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SchemaChanges {
    /// Columns only on the right, in right order.
    pub columns_added: Vec<String>,
    /// Columns only on the left (named after renames), in left order.
    pub columns_removed: Vec<String>,
    /// Renames that were applied, left name → right name.
    pub columns_renamed: Vec<(String, String)>,
    /// Whether the columns on both sides come in a different order.
    pub columns_reordered: bool,
    /// The columns on both sides, in left order, when reordered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_order: Vec<String>,
    /// The columns on both sides, in right order, when reordered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub right_order: Vec<String>,
}

impl SchemaChanges {
    pub fn is_empty(&self) -> bool {
        self.columns_added.is_empty()
            && self.columns_removed.is_empty()
            && self.columns_renamed.is_empty()
            && !self.columns_reordered
    }
}

/// One duplicated key, as a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DuplicateSample {
    pub key: Vec<Option<String>>,
    pub left_rows: u64,
    pub right_rows: u64,
    pub left_lines: Vec<u64>,
    pub right_lines: Vec<u64>,
}

/// The counts of a diff.
///
/// Rows under a key that is duplicated on either side take no part in the
/// comparison, so `left_rows = removed + changed + unchanged +
/// left_excluded_rows` and `right_rows = added + changed + unchanged +
/// right_excluded_rows`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DiffSummary {
    pub left: String,
    pub right: String,
    pub key_columns: Vec<String>,
    /// The columns compared: on both sides, neither key nor ignored.
    pub compared_columns: Vec<String>,
    pub left_rows: u64,
    pub right_rows: u64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Keys with more than one row on the left.
    pub left_duplicate_keys: u64,
    /// Rows on the left under those keys.
    pub left_duplicate_rows: u64,
    pub right_duplicate_keys: u64,
    pub right_duplicate_rows: u64,
    /// Rows on the left under a key duplicated on either side.
    pub left_excluded_rows: u64,
    pub right_excluded_rows: u64,
    /// Compared column → changed rows where its value differs.
    pub changed_fields: BTreeMap<String, u64>,
    pub schema: SchemaChanges,
    /// The first duplicated keys in output order, at most [`DUPLICATE_SAMPLES`].
    pub duplicate_samples: Vec<DuplicateSample>,
    /// Whether rows went to temporary files (the inputs did not fit the
    /// memory budget).
    pub spilled: bool,
    /// How many of the 64 partitions by key hash were compared from
    /// temporary files rather than from memory.
    pub spilled_partitions: u32,
}

/// Receives the diff: first the layout, then each change in order.
pub trait ChangeSink {
    /// Called once, before any change, when both inputs' columns are known.
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        let _ = layout;
        Ok(())
    }

    fn change(&mut self, change: &Change) -> Result<(), DataError>;
}

impl<F: FnMut(&Change) -> Result<(), DataError>> ChangeSink for F {
    fn change(&mut self, change: &Change) -> Result<(), DataError> {
        self(change)
    }
}

/// Accounts the bytes held against the budget, shared by both readers,
/// and holds the spill line: level-0 partitions from it up live in files.
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    line: AtomicUsize,
}

/// Held back from the budget for what is not rows: read buffers, 128
/// partition file buffers, the rows being compared, the sink's buffers,
/// and memory the allocator keeps after rows move to files.
const OVERHEAD: usize = 40 << 20;

/// The smallest budget for rows, so a tiny budget still makes progress.
const MIN_ROWS_BUDGET: usize = 16 << 10;

impl Budget {
    fn new(total: usize) -> Budget {
        Budget {
            limit: total.saturating_sub(OVERHEAD).max(MIN_ROWS_BUDGET),
            used: AtomicUsize::new(0),
            line: AtomicUsize::new(store::PARTITIONS),
        }
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }

    fn line(&self) -> usize {
        self.line.load(Ordering::Relaxed)
    }

    /// Moves the spill line down one partition from `seen`, unless the
    /// other side already moved it since.
    fn lower(&self, seen: usize) {
        if seen > 0 {
            let _ = self
                .line
                .compare_exchange(seen, seen - 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// Compares `left` with `right` by key, sending every difference to `sink`
/// in order of (key hash, key), and returns the counts.
///
/// Each input is read exactly once. Refuses (naming the input and column)
/// a key column missing from either side, a renamed or listed column that
/// does not exist, and columns named twice on one side.
pub fn diff(
    left: &mut dyn Source,
    right: &mut dyn Source,
    options: &DiffOptions,
    sink: &mut dyn ChangeSink,
) -> Result<DiffSummary, DataError> {
    let plan = plan::Plan::new(left, right, options)?;
    sink.begin(&plan.layout)?;
    let budget = Budget::new(options.memory_budget);
    let temp_dir = options.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let (left_read, right_read) = std::thread::scope(|scope| {
        let plan = &plan;
        let budget = &budget;
        let temp_dir = &temp_dir;
        let left_thread = scope.spawn(move || store::read_side(left, &plan.left, budget, temp_dir));
        let right_read = store::read_side(right, &plan.right, budget, temp_dir);
        let left_read = left_thread
            .join()
            .unwrap_or_else(|_| Err(DataError::new(plan.layout.left.clone(), "the reader thread failed")));
        (left_read, right_read)
    });
    let (mut left_read, mut right_read) = (left_read?, right_read?);
    // A side that finished before the line last moved still holds the
    // partitions above it.
    let line = budget.line();
    left_read.spill_from(line, &budget, &temp_dir)?;
    right_read.spill_from(line, &budget, &temp_dir)?;
    let mut summary = DiffSummary {
        left: plan.layout.left.clone(),
        right: plan.layout.right.clone(),
        key_columns: plan.layout.key_columns.clone(),
        compared_columns: plan.layout.compared_columns.clone(),
        left_rows: left_read.rows,
        right_rows: right_read.rows,
        schema: plan.schema.clone(),
        spilled: line < store::PARTITIONS,
        spilled_partitions: (store::PARTITIONS - line) as u32,
        ..DiffSummary::default()
    };
    let mut joiner = join::Joiner::new(&plan, &mut summary, sink);
    compare(&mut joiner, &plan, &budget, &temp_dir, line, left_read, right_read)?;
    drop(joiner);
    Ok(summary)
}

/// Compares partition by partition, in order: those below `line` from
/// memory, the rest from files. Two threads sort (or load and sort) the
/// two sides of the next pair while this one compares the current.
fn compare(
    joiner: &mut join::Joiner<'_>,
    plan: &plan::Plan,
    budget: &Budget,
    temp: &std::path::Path,
    line: usize,
    mut left: store::SideRead,
    mut right: store::SideRead,
) -> Result<(), DataError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<spill::Work, DataError>>(0);
        let loader = scope.spawn(move || {
            let mut send = |w: spill::Work| {
                // The comparison stopped (on an error it reports itself).
                tx.send(Ok(w))
                    .map_err(|_| DataError::new(&plan.left.name, "comparison stopped"))
            };
            let mut each = || -> Result<(), DataError> {
                for p in 0..store::PARTITIONS {
                    if p < line {
                        let mut l = std::mem::take(&mut left.memory[p]);
                        let mut r = std::mem::take(&mut right.memory[p]);
                        std::thread::scope(|s| {
                            s.spawn(|| l.sort());
                            r.sort();
                        });
                        send(spill::Work::Pair(l, r))?;
                    } else {
                        let file = |f: &mut Option<spill::PartFile>| -> Result<spill::PartFile, DataError> {
                            let mut f = match f.take() {
                                Some(f) => f,
                                None => spill::PartFile::create(temp)?,
                            };
                            f.finish(temp)?;
                            Ok(f)
                        };
                        let (l, r) = (file(&mut left.files[p])?, file(&mut right.files[p])?);
                        spill::join_pair(&mut send, plan, budget, temp, l, r, spill::FIRST_BITS)?;
                    }
                }
                Ok(())
            };
            if let Err(e) = each() {
                let _ = tx.send(Err(e));
            }
        });
        let mut result = Ok(());
        for work in rx.iter() {
            let step = match work {
                Ok(spill::Work::Pair(l, r)) => joiner.join(l, r),
                Ok(spill::Work::OneKey(key, dup)) => joiner.duplicate(key, dup),
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        drop(rx);
        if loader.join().is_err() && result.is_ok() {
            result = Err(DataError::new(&plan.left.name, "the partition reader failed"));
        }
        result
    })
}
