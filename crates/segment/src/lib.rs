//! Immutable segments of an inverted index whose documents arrive in
//! order and are never changed: Sealtrail's query index, where document
//! `d` of a segment is the `d`-th event it was given in ledger order.
//!
//! A segment holds, for a few thousand to a few million documents:
//! - **posting lists**: for each term (a field number and some bytes), the
//!   ascending documents that hold it;
//! - **a term dictionary**: terms grouped by field, sorted by a 64-bit hash
//!   of their bytes within each field, so that an exact lookup is a search
//!   over hashes and the few terms of a small field (action names) can be
//!   listed;
//! - **columns**: one `u64` per document each, in blocks of [`BLOCK`] with
//!   each block's least and greatest value, for range filters and
//!   aggregations. A [`ColumnKind::Term`] column holds a term of one field
//!   by its number within that field (or [`NONE`]).
//!
//! ```text
//! SegmentBuilder::add_doc / add_term / set ──finish──► bytes ──Segment::open──► lookups
//! Segment, Segment, … (ledger order) ──────────merge──► bytes (one segment)
//! ```
//!
//! Why by hand and not a search library: indexing costs one hash-table
//! probe per term and one `u64` appended to an occurrence log, and posting
//! lists come out of a counting sort at `finish`, already in order; merging
//! segments that cover consecutive ranges is concatenation, with no map
//! from old to new documents. `sealtrail-index` stores its segments
//! in this format; ARCHITECTURE.md has the measurements against tantivy.
//!
//! The byte layout is in docs/index-segments.md. Architecture invariant: a
//! segment's bytes are a pure function of what was added, in that order
//! (no clock, no randomness, no process state). Architecture invariant:
//! no read answers from bytes it has not checked: every page of
//! [`PAGE`] bytes has a checksum, checked when a read first touches it,
//! and damaged or inconsistent bytes give a [`FormatError`] naming the
//! section and byte, never a panic or another answer.

mod map;
mod read;
mod varint;
mod write;

pub use map::Mapped;
pub use read::{reseal, Column, FormatError, Postings, Segment};
pub use write::{merge, merge_dropping, MergeDamage, SegmentBuilder};

/// The last eight bytes of every segment: the format and its version.
pub const MAGIC: [u8; 8] = *b"STSEG002";

/// Bytes of each checksummed page of a section (the last page of a
/// section may be shorter).
pub const PAGE: usize = 4096;

/// Documents per column block and per posting-list block.
pub const BLOCK: u32 = 128;

/// A [`ColumnKind::Term`] column's value for a document without a term.
pub const NONE: u64 = u64::MAX;

/// Most documents one segment holds.
pub const MAX_DOCS: u32 = u32::MAX - 1;

/// What a column holds, fixed when the builder is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Any `u64`, copied as it is when segments merge.
    Value,
    /// A term of this field, by its number among the field's terms in the
    /// segment; renumbered when segments merge.
    Term(u8),
}

/// The hash that orders a field's terms and finds them: XXH3-64 of the
/// term's bytes with seed 0 (part of the format).
pub fn term_hash(term: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(term)
}
