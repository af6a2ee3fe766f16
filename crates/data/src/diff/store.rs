//! Reading one side: rows into records, held in memory while the budget
//! allows, else written to partition files.

use std::path::Path;

use super::plan::SidePlan;
use super::record::{self, Encoder, HEADER};
use super::spill::{PartFile, FIRST_BITS};
use super::Budget;
use crate::{DataError, Row, Source};

/// Records are packed into chunks of this size, so that growing the store
/// never copies it.
const CHUNK: usize = 1 << 20;

/// Where a record lies in a [`Store`], with its hash for sorting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub hash: u64,
    pub chunk: u32,
    pub at: u32,
}

/// Records in memory.
#[derive(Default)]
pub(crate) struct Store {
    pub chunks: Vec<Vec<u8>>,
    pub entries: Vec<Entry>,
    /// Bytes this store has added to the budget.
    pub accounted: usize,
}

impl Store {
    /// Adds one record (header included); returns bytes newly held.
    pub fn push(&mut self, hash: u64, rec: &[u8]) -> usize {
        let mut grew = 0;
        let fits = self.chunks.last().is_some_and(|c| c.capacity() - c.len() >= rec.len());
        if !fits {
            // Chunks grow from 4 KiB, so that small partitions stay small.
            let next = self.chunks.last().map_or(4 << 10, |c| (c.capacity() * 2).min(CHUNK));
            let cap = next.max(rec.len());
            self.chunks.push(Vec::with_capacity(cap));
            grew += cap;
        }
        let chunk = self.chunks.len() - 1;
        let c = &mut self.chunks[chunk];
        let at = c.len() as u32;
        c.extend_from_slice(rec);
        let before = self.entries.capacity();
        self.entries.push(Entry {
            hash,
            chunk: chunk as u32,
            at,
        });
        grew += (self.entries.capacity() - before) * std::mem::size_of::<Entry>();
        self.accounted += grew;
        grew
    }

    /// A store over buffers of whole records (a record never spans two).
    pub fn from_chunks(chunks: Vec<Vec<u8>>) -> Option<Store> {
        let mut entries = Vec::new();
        for (c, bytes) in chunks.iter().enumerate() {
            let mut pos = 0;
            while pos < bytes.len() {
                let (hash, end) = record::frame(bytes, pos)?;
                entries.push(Entry {
                    hash,
                    chunk: u32::try_from(c).ok()?,
                    at: u32::try_from(pos).ok()?,
                });
                pos = end;
            }
        }
        Some(Store {
            accounted: chunks.iter().map(Vec::capacity).sum::<usize>()
                + entries.capacity() * std::mem::size_of::<Entry>(),
            chunks,
            entries,
        })
    }

    /// The record of `e`, header included.
    pub fn record(&self, e: &Entry) -> &[u8] {
        let c = &self.chunks[e.chunk as usize];
        let at = e.at as usize;
        // Written by `push` or checked by `from_bytes`.
        let end = record::frame(c, at).map_or(c.len(), |(_, end)| end);
        &c[at..end]
    }

    /// The key bytes of `e`.
    pub fn key(&self, e: &Entry) -> &[u8] {
        record::view(&self.record(e)[HEADER..]).map_or(&[], |v| v.key)
    }

    /// Sorts the entries by (hash, key), ties in input order (the order
    /// entries are added in).
    ///
    /// A stable radix sort on the hash, a byte at a time (skipping bytes
    /// that are the same in every entry, as the partition's top bits
    /// are), then a stable sort by key of any run of equal hashes whose
    /// keys differ, which takes a hash collision.
    pub fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        let n = entries.len();
        if n < 64 {
            entries.sort_by_key(|e| e.hash);
        } else {
            let mut counts = vec![[0usize; 256]; 8];
            for e in &entries {
                for (d, c) in counts.iter_mut().enumerate() {
                    c[((e.hash >> (8 * d)) & 0xff) as usize] += 1;
                }
            }
            let mut other = vec![
                Entry {
                    hash: 0,
                    chunk: 0,
                    at: 0
                };
                n
            ];
            for (d, c) in counts.iter().enumerate() {
                if c.contains(&n) {
                    continue;
                }
                let mut at = [0usize; 256];
                let mut sum = 0;
                for (a, &k) in at.iter_mut().zip(c.iter()) {
                    *a = sum;
                    sum += k;
                }
                for e in &entries {
                    let b = ((e.hash >> (8 * d)) & 0xff) as usize;
                    other[at[b]] = *e;
                    at[b] += 1;
                }
                std::mem::swap(&mut entries, &mut other);
            }
        }
        let mut i = 0;
        while i < n {
            let mut j = i + 1;
            while j < n && entries[j].hash == entries[i].hash {
                j += 1;
            }
            if j - i > 1 {
                let first = self.key(&entries[i]);
                if entries[i + 1..j].iter().any(|e| self.key(e) != first) {
                    entries[i..j].sort_by(|a, b| self.key(a).cmp(self.key(b)));
                }
            }
            i = j;
        }
        self.entries = entries;
    }
}

/// Level-0 partitions: records are split by the top bits of their hash.
pub(crate) const PARTITIONS: usize = 1 << FIRST_BITS;

/// The level-0 partition of a hash.
pub(crate) fn partition(hash: u64) -> usize {
    (hash >> (64 - FIRST_BITS)) as usize
}

/// What one side's reading left behind: per partition, the records held in
/// memory, or a file.
pub(crate) struct SideRead {
    pub rows: u64,
    pub memory: Vec<Store>,
    pub files: Vec<Option<PartFile>>,
}

impl SideRead {
    /// Moves partitions `from..` that are still in memory to files, in
    /// their input order (after any records already in the file).
    pub fn spill_from(&mut self, from: usize, budget: &Budget, temp: &Path) -> Result<(), DataError> {
        for q in from..PARTITIONS {
            let store = std::mem::take(&mut self.memory[q]);
            if store.entries.is_empty() {
                continue;
            }
            let file = match &mut self.files[q] {
                Some(f) => f,
                none => none.insert(PartFile::create(temp)?),
            };
            for e in &store.entries {
                file.push(store.record(e), temp)?;
            }
            budget.release(store.accounted);
        }
        Ok(())
    }
}

/// Reads every row of `source` once. Partitions below the budget's
/// spill line stay in memory; those above it go to files. Over budget,
/// the line moves down one partition, and both sides move that
/// partition's records out.
pub(crate) fn read_side(
    source: &mut dyn Source,
    plan: &SidePlan,
    budget: &Budget,
    temp: &Path,
) -> Result<SideRead, DataError> {
    let mut row = Row::new();
    let mut encoder = Encoder::new();
    let mut rec = Vec::new();
    let mut side = SideRead {
        rows: 0,
        memory: (0..PARTITIONS).map(|_| Store::default()).collect(),
        files: (0..PARTITIONS).map(|_| None).collect(),
    };
    // The spill line as this side last saw it.
    let mut line = PARTITIONS;
    while source.next_row(&mut row)? {
        side.rows += 1;
        let hash = encoder.encode(plan, &row, &mut rec);
        let p = partition(hash);
        // The shared counters are touched only when memory grows (a new
        // chunk, a longer index) or every 256 rows: touched on every row
        // by both readers, their cache line would bounce between cores.
        let mut look = side.rows.is_multiple_of(256);
        if p >= line {
            let file = match &mut side.files[p] {
                Some(f) => f,
                none => none.insert(PartFile::create(temp)?),
            };
            file.push(&rec, temp)?;
        } else {
            let grew = side.memory[p].push(hash, &rec);
            if grew > 0 {
                budget.add(grew);
                if budget.over() {
                    budget.lower(line);
                }
                look = true;
            }
        }
        if look {
            let now = budget.line();
            if now < line {
                side.spill_from(now, budget, temp)?;
                line = now;
            }
        }
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::plan::Fold;

    fn store(rows: &[(u64, &str)]) -> Store {
        let plan = SidePlan {
            name: "t".into(),
            columns: 1,
            key: vec![0],
            key_fold: vec![Fold::default()],
        };
        let mut store = Store::default();
        let (mut encoder, mut rec) = (Encoder::new(), Vec::new());
        for (line, &(hash, key)) in rows.iter().enumerate() {
            let mut row = Row::of([Some(key)]);
            row.line = line as u64;
            encoder.encode(&plan, &row, &mut rec);
            // The hash given, not the key's: to make collisions.
            store.push(hash, &rec);
        }
        store
    }

    fn order(store: &Store) -> Vec<(u64, String, u64)> {
        store
            .entries
            .iter()
            .map(|e| {
                let v = record::view(&store.record(e)[HEADER..]).expect("view");
                (e.hash, String::from_utf8_lossy(&v.key[1..]).into_owned(), v.line)
            })
            .collect()
    }

    #[test]
    fn sorts_by_hash_then_key_then_input_order() {
        for n in [10usize, 5_000] {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut rows = Vec::new();
            let keys = ["b", "a", "c", "b"];
            for i in 0..n {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Every eighth row collides on one hash with other keys.
                let hash = if i % 8 == 0 { 42 << 40 } else { rng >> (i % 3) };
                rows.push((hash, keys[i % 4]));
            }
            let mut s = store(&rows);
            let mut want = order(&s);
            want.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
            s.sort();
            assert_eq!(order(&s), want, "n = {n}");
        }
    }
}
