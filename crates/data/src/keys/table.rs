//! A table held column-wise for key discovery: each value replaced by a
//! dense number (dictionary encoding), then each column reduced to its
//! stripped partition — the groups of rows that share a value, singletons
//! left out — and, per row, the number of its group. Two rows agree on a
//! column exactly when they are in the same group; nothing else of the
//! values is kept, so memory is a few bytes per cell.
//!
//! It is not a general column store: values cannot be read back.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use super::{KeyOptions, NullEquality};
use crate::{DataError, Row, Source};

/// The group number of a row whose value no other row has.
pub(crate) const UNIQUE: u32 = u32::MAX;

/// A stripped partition: groups of at least two row numbers, stored one
/// after the other; group `g` is `rows[starts[g]..starts[g + 1]]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Partition {
    pub(crate) rows: Vec<u32>,
    pub(crate) starts: Vec<u32>,
}

impl Partition {
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
        self.starts.clear();
        self.starts.push(0);
    }

    pub(crate) fn groups(&self) -> impl Iterator<Item = &[u32]> {
        self.starts.windows(2).map(|w| &self.rows[w[0] as usize..w[1] as usize])
    }

    pub(crate) fn group_count(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Rows that share their value with another row.
    pub(crate) fn duplicate_rows(&self) -> u64 {
        self.rows.len() as u64
    }

    pub(crate) fn is_unique(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn bytes(&self) -> usize {
        (self.rows.capacity() + self.starts.capacity()) * 4
    }

    /// The most bytes a refinement of this partition can hold.
    pub(crate) fn bound(&self) -> usize {
        (self.rows.len() + self.rows.len() / 2 + 1) * 4
    }

    /// The partition refined by a column given as each row's group number
    /// in it (`UNIQUE` for a value of its own), written into `out`.
    pub(crate) fn intersect(&self, groups: &[u32], out: &mut Partition, scratch: &mut Scratch) {
        out.clear();
        // Exactly what the result can need, so that memory stays within
        // `Partition::bound` whatever the order of calls.
        out.rows.reserve_exact(self.rows.len());
        out.starts.reserve_exact(self.rows.len() / 2 + 1);
        for group in self.groups() {
            if let [a, b] = *group {
                let g = groups[a as usize];
                if g != UNIQUE && g == groups[b as usize] {
                    out.rows.extend_from_slice(&[a, b]);
                    out.starts.push(out.rows.len() as u32);
                }
                continue;
            }
            // Count the rows of each sub-group, in order of first sight,
            // then place them: linear in the group, no sorting.
            let Scratch { count, seen } = scratch;
            seen.clear();
            for &r in group {
                let g = groups[r as usize];
                if g == UNIQUE {
                    continue;
                }
                let g = g as usize;
                if g >= count.len() {
                    count.resize(g + 1, 0);
                }
                if count[g] == 0 {
                    seen.push(g as u32);
                }
                count[g] += 1;
            }
            let base = out.rows.len() as u32;
            let mut end = base;
            for &g in seen.iter() {
                let n = count[g as usize];
                if n >= 2 {
                    // From here on, count[g] is where g's next row goes.
                    count[g as usize] = end;
                    end += n;
                    out.starts.push(end);
                } else {
                    count[g as usize] = u32::MAX;
                }
            }
            out.rows.resize(end as usize, 0);
            for &r in group {
                let g = groups[r as usize];
                if g == UNIQUE {
                    continue;
                }
                let slot = &mut count[g as usize];
                if *slot != u32::MAX {
                    out.rows[*slot as usize] = r;
                    *slot += 1;
                }
            }
            for &g in seen.iter() {
                count[g as usize] = 0;
            }
        }
    }
}

/// Work space of [`Partition::intersect`], kept from call to call: per
/// group number of the refining column, a count (zero between calls), and
/// the group numbers seen in the current group.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    count: Vec<u32>,
    seen: Vec<u32>,
}

/// The table, column-wise.
pub(crate) struct Table {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: usize,
    /// Per column, each row's group number (`UNIQUE` when alone).
    pub(crate) groups: Vec<Vec<u32>>,
    /// Per column, its stripped partition.
    pub(crate) partitions: Vec<Partition>,
    /// Per column, how many rows hold null.
    pub(crate) nulls: Vec<u64>,
    /// Bytes held by the above.
    pub(crate) bytes: usize,
}

/// One column's dictionary while the table is read: its distinct values
/// one after the other in `text`, and a hash table of value numbers.
struct Dictionary {
    text: Vec<u8>,
    ends: Vec<usize>,
    index: HashTable<u32>,
    null_id: Option<u32>,
    next_id: u32,
    ids: Vec<u32>,
}

impl Dictionary {
    fn new() -> Dictionary {
        Dictionary {
            text: Vec::new(),
            ends: Vec::new(),
            index: HashTable::new(),
            null_id: None,
            next_id: 0,
            ids: Vec::new(),
        }
    }

    fn value(&self, id: u32) -> &[u8] {
        let id = id as usize;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        &self.text[start..self.ends[id]]
    }

    fn push(&mut self, value: &str, hasher: &DefaultHashBuilder) {
        let bytes = value.as_bytes();
        let hash = hasher.hash_one(bytes);
        let found = self.index.find(hash, |&id| self.value(id) == bytes).copied();
        let id = match found {
            Some(id) => id,
            None => {
                // Value numbers of text are dense from 0 so that `value`
                // can find them; nulls get numbers from the top instead.
                let id = self.ends.len() as u32;
                self.text.extend_from_slice(bytes);
                self.ends.push(self.text.len());
                let (text, ends) = (&self.text, &self.ends);
                self.index.insert_unique(hash, id, |&id| {
                    let id = id as usize;
                    let start = if id == 0 { 0 } else { ends[id - 1] };
                    hasher.hash_one(&text[start..ends[id]])
                });
                id
            }
        };
        self.ids.push(id);
    }

    fn push_null(&mut self, nulls: NullEquality) {
        // Nulls are numbered downward from u32::MAX - 1, apart from text.
        let id = match (nulls, self.null_id) {
            (NullEquality::Equal, Some(id)) => id,
            _ => {
                self.next_id += 1;
                let id = u32::MAX - self.next_id;
                if nulls == NullEquality::Equal {
                    self.null_id = Some(id);
                }
                id
            }
        };
        self.ids.push(id);
    }

    fn bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 8 + self.index.capacity() * 5 + self.ids.capacity() * 4
    }
}

fn over_budget(source: &dyn Source, line: u64, needed: usize, budget: usize) -> DataError {
    let mib = |b: usize| b.div_ceil(1 << 20);
    DataError::new(
        source.name(),
        format!(
            "the table does not fit in the memory budget for key discovery: \
             {} MiB needed by then, budget {} MiB",
            mib(needed),
            mib(budget)
        ),
    )
    .at_line(line)
}

impl Table {
    /// Reads every row of `source`, within `options.memory_budget` bytes.
    pub(crate) fn load(source: &mut dyn Source, options: &KeyOptions) -> Result<Table, DataError> {
        let columns = source.columns().to_vec();
        let budget = options.memory_budget;
        let hasher = DefaultHashBuilder::default();
        let mut dictionaries: Vec<Dictionary> = columns.iter().map(|_| Dictionary::new()).collect();
        let mut nulls = vec![0u64; columns.len()];
        let mut row = Row::new();
        let mut rows = 0usize;
        let mut last_line = 0;
        while source.next_row(&mut row)? {
            last_line = row.line;
            if row.len() != columns.len() {
                return Err(DataError::new(
                    source.name(),
                    format!("{} values, expected {}", row.len(), columns.len()),
                )
                .at_line(row.line));
            }
            if rows >= (u32::MAX / 2) as usize {
                return Err(
                    DataError::new(source.name(), "more than 2^31 rows: too many for key discovery").at_line(row.line),
                );
            }
            for (c, dict) in dictionaries.iter_mut().enumerate() {
                match row.get(c) {
                    Some(v) => dict.push(v, &hasher),
                    None => {
                        nulls[c] += 1;
                        dict.push_null(options.nulls);
                    }
                }
            }
            rows += 1;
            let bytes: usize = dictionaries.iter().map(Dictionary::bytes).sum();
            if bytes > budget {
                return Err(over_budget(source, row.line, bytes, budget));
            }
        }

        // Values are no longer needed, only which rows share them.
        let mut groups = Vec::with_capacity(columns.len());
        let mut partitions = Vec::with_capacity(columns.len());
        let mut held = 0usize;
        for mut dict in dictionaries {
            let mut ids = std::mem::take(&mut dict.ids);
            let text_values = dict.ends.len();
            let null_values = dict.next_id as usize;
            drop(dict);
            ids.shrink_to_fit();
            let (partition, group_of) = partition_column(&mut ids, text_values, null_values);
            held += partition.bytes() + ids.capacity() * 4;
            // The transient counting arrays are freed at once; the held
            // part must fit alongside what other columns still hold.
            let pending: usize = held + group_of;
            if pending > budget {
                return Err(over_budget(source, last_line, pending, budget));
            }
            groups.push(ids);
            partitions.push(partition);
        }
        Ok(Table {
            columns,
            rows,
            groups,
            partitions,
            nulls,
            bytes: held,
        })
    }
}

/// Turns a column of value numbers into group numbers in place and returns
/// its stripped partition, and the bytes its counting needed.
fn partition_column(ids: &mut [u32], text_values: usize, null_values: usize) -> (Partition, usize) {
    // Null numbers count down from u32::MAX - 1: map them after the text.
    let slot = |id: u32| -> usize {
        if (id as usize) < text_values {
            id as usize
        } else {
            text_values + (u32::MAX - 1 - id) as usize
        }
    };
    let values = text_values + null_values;
    let mut count = vec![0u32; values];
    for &id in ids.iter() {
        count[slot(id)] += 1;
    }
    // Group numbers in order of first appearance, so the partition is the
    // same whatever the hash order.
    let mut group = vec![UNIQUE; values];
    let mut sizes: Vec<u32> = Vec::new();
    for &id in ids.iter() {
        let s = slot(id);
        if count[s] >= 2 && group[s] == UNIQUE {
            group[s] = sizes.len() as u32;
            sizes.push(count[s]);
        }
    }
    let transient = (count.capacity() + group.capacity()) * 4;
    drop(count);
    let mut starts = Vec::with_capacity(sizes.len() + 1);
    let mut total = 0u32;
    starts.push(0);
    for &s in &sizes {
        total += s;
        starts.push(total);
    }
    let mut fill: Vec<u32> = starts[..sizes.len()].to_vec();
    let mut rows = vec![0u32; total as usize];
    for (r, id) in ids.iter_mut().enumerate() {
        let g = group[slot(*id)];
        *id = g;
        if g != UNIQUE {
            rows[fill[g as usize] as usize] = r as u32;
            fill[g as usize] += 1;
        }
    }
    (Partition { rows, starts }, transient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    fn table(rows: &[&[Option<&str>]], nulls: NullEquality) -> Table {
        let columns: Vec<String> = (0..rows[0].len()).map(|i| format!("c{i}")).collect();
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let data = rows
            .iter()
            .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
            .collect();
        let mut source = MemorySource::new("t", &names, data);
        let options = KeyOptions {
            nulls,
            ..KeyOptions::default()
        };
        Table::load(&mut source, &options).expect("small table loads")
    }

    #[test]
    fn groups_follow_values_and_nulls() {
        let rows: &[&[Option<&str>]] = &[
            &[Some("a"), None],
            &[Some("b"), None],
            &[Some("a"), Some("x")],
            &[Some("c"), Some("x")],
        ];
        let t = table(rows, NullEquality::Equal);
        assert_eq!(t.groups[0], vec![0, UNIQUE, 0, UNIQUE]);
        assert_eq!(t.groups[1], vec![0, 0, 1, 1]);
        assert_eq!(t.partitions[1].groups().count(), 2);
        assert_eq!(t.nulls, vec![0, 2]);
        let t = table(rows, NullEquality::Distinct);
        assert_eq!(t.groups[1], vec![UNIQUE, UNIQUE, 0, 0]);
    }

    #[test]
    fn intersection_keeps_rows_agreeing_on_both() {
        let rows: &[&[Option<&str>]] = &[
            &[Some("a"), Some("1")],
            &[Some("a"), Some("1")],
            &[Some("a"), Some("2")],
            &[Some("b"), Some("2")],
            &[Some("b"), Some("2")],
        ];
        let t = table(rows, NullEquality::Equal);
        let mut out = Partition::default();
        t.partitions[0].intersect(&t.groups[1], &mut out, &mut Scratch::default());
        let groups: Vec<Vec<u32>> = out.groups().map(<[u32]>::to_vec).collect();
        assert_eq!(groups, vec![vec![0, 1], vec![3, 4]]);
    }

    #[test]
    fn a_table_over_budget_is_refused_at_a_line() {
        let data = (0..1000).map(|i| vec![Some(format!("value {i}"))]).collect();
        let mut source = MemorySource::new("big.csv", &["v"], data);
        let options = KeyOptions {
            memory_budget: 4096,
            ..KeyOptions::default()
        };
        let err = Table::load(&mut source, &options).err().expect("over budget");
        assert_eq!(err.input, "big.csv");
        assert!(err.line.is_some_and(|l| l > 2), "{err}");
        assert!(err.message.contains("memory budget"), "{err}");
    }
}
