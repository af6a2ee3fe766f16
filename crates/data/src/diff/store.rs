//! Reading one side: rows into records, held in memory while the budget
//! allows, else written to partition files.

use std::path::Path;

use super::plan::SidePlan;
use super::record::{self, Encoder, HEADER};
use super::spill::Partitions;
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
            let cap = CHUNK.max(rec.len());
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

    /// A store over one buffer of whole records.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Store> {
        let mut entries = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let (hash, end) = record::frame(&bytes, pos)?;
            entries.push(Entry {
                hash,
                chunk: 0,
                at: u32::try_from(pos).ok()?,
            });
            pos = end;
        }
        Some(Store {
            accounted: bytes.capacity() + entries.capacity() * std::mem::size_of::<Entry>(),
            chunks: vec![bytes],
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

/// What one side's reading left behind.
pub(crate) enum Data {
    Memory(Store),
    Spilled(Partitions),
}

impl Data {
    /// The records as partition files, writing them out if still in memory.
    pub fn into_partitions(self, temp: &Path) -> Result<Partitions, DataError> {
        match self {
            Data::Spilled(p) => Ok(p),
            Data::Memory(store) => {
                // Sorted, so written in (hash, key) order, not input order:
                // what matters is that duplicates keep their input order,
                // which the sort keeps.
                let mut parts = Partitions::create(temp, 0)?;
                for e in &store.entries {
                    parts.write(e.hash, store.record(e))?;
                }
                Ok(parts)
            }
        }
    }
}

pub(crate) struct SideRead {
    pub rows: u64,
    pub data: Data,
}

/// Reads every row of `source` once.
pub(crate) fn read_side(
    source: &mut dyn Source,
    plan: &SidePlan,
    budget: &Budget,
    temp: &Path,
) -> Result<SideRead, DataError> {
    let mut row = Row::new();
    let mut encoder = Encoder::new();
    let mut rec = Vec::new();
    let mut store = Store::default();
    let mut parts: Option<Partitions> = None;
    let mut rows = 0u64;
    while source.next_row(&mut row)? {
        rows += 1;
        let hash = encoder.encode(plan, &row, &mut rec);
        if let Some(p) = parts.as_mut() {
            p.write(hash, &rec)?;
            continue;
        }
        budget.add(store.push(hash, &rec));
        if budget.spilling() {
            let mut p = Partitions::create(temp, 0)?;
            for e in &store.entries {
                p.write(e.hash, store.record(e))?;
            }
            budget.release(store.accounted);
            store = Store::default();
            parts = Some(p);
        }
    }
    let data = match parts {
        Some(p) => Data::Spilled(p),
        None => {
            // Sorted here, so that both sides sort at once, each on its thread.
            store.sort();
            Data::Memory(store)
        }
    };
    Ok(SideRead { rows, data })
}
