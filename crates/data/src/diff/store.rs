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

    /// Sorts the entries by (hash, key), ties in input order.
    pub fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_unstable_by(|a, b| {
            a.hash
                .cmp(&b.hash)
                .then_with(|| self.key(a).cmp(self.key(b)))
                .then_with(|| (a.chunk, a.at).cmp(&(b.chunk, b.at)))
        });
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
