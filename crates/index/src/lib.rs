//! Sealtrail's query index over audit events: exact-match fields, time
//! ranges, full text, counts and timings, stored as `sealtrail-segment`
//! segments (docs/query-index.md).
//!
//! One [`EventIndex`] per log. It is derived from the ledger and can be
//! rebuilt from it at any time ([`EventIndex::wipe`], then add every entry
//! again): the ledger stays the only source of truth. Documents hold the
//! ledger index of their entry and only what filtering and aggregation
//! need, never the event body; callers read events back from the ledger.
//!
//! ```text
//! ledger entry i ─parse─► Event ─add(i, Some(&event))─► pending ─commit─► searchable,
//! non-event entry i ─────────────add(i, None)─────────►                    watermark = i + 1
//! ```
//!
//! Architecture invariant: no knowledge of the ledger's files or of HTTP;
//! the caller feeds entries in ledger order and reads events back itself,
//! and lends the index an [`EventSource`] to read back the candidates of a
//! long phrase.
//! Architecture invariant: the watermark (how many ledger entries the
//! index covers) changes with the segments it covers, in one rename of
//! the manifest, so the two never disagree, whatever the crash.
//! Architecture invariant: all file I/O goes through
//! [`sealtrail_storage::Storage`], so crash tests can cut power at any
//! sync point.

mod error;
mod filter;
mod history;
mod index;
mod manifest;
mod part;
mod policy;
mod query;
mod schema;
mod source;
mod stats;
mod text;

pub use error::IndexError;
pub use filter::{text_words, Filter, Order, Page, TimeRange};
pub use history::History;
pub use index::{EventIndex, IndexOptions};
pub use source::{EventSource, SourceError};
pub use stats::{Bucket, Facet, GlobTally, Performance, Stats};
