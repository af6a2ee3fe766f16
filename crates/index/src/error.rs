//! [`IndexError`]: why the index could not do what was asked, each
//! variant naming the file, line or entry concerned.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::source::SourceError;

/// Why the index could not do what was asked.
#[derive(Debug, Error)]
pub enum IndexError {
    /// Entries must be added in ledger order, each exactly once.
    #[error("ledger entry {got} added to the index out of order: the next entry must be {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    /// An earlier write or commit failed; the index takes no more writes
    /// until it is reopened (uncommitted additions are then lost, and the
    /// caller adds them again from the watermark).
    #[error("the index refused writes after an earlier failure; reopen it")]
    Poisoned,
    /// The directory holds an index of another schema version, or one
    /// built by tantivy (Sealtrail before schema version 3).
    #[error("{dir}: index built by another version of Sealtrail; rebuild it with `sealtrail reindex`")]
    SchemaMismatch { dir: PathBuf },
    /// The manifest is not one this crate wrote.
    #[error("{path}: line {line}: {reason}; rebuild the index with `sealtrail reindex`")]
    BadManifest { path: PathBuf, line: usize, reason: String },
    /// A segment the manifest names is missing, of another size, or does
    /// not hold together.
    #[error("{path}: {reason}; rebuild the index with `sealtrail reindex`")]
    BadSegment { path: PathBuf, reason: String },
    /// Another [`EventIndex`](crate::EventIndex) (in this process or another) has the
    /// directory open.
    #[error("{0}: the index is open elsewhere (is a server running?)")]
    Locked(PathBuf),
    /// A write asked of an index opened with [`EventIndex::open_read_only`](crate::EventIndex::open_read_only).
    #[error("{0}: the index is open read-only")]
    ReadOnly(PathBuf),
    /// A text query with a phrase of three or more words, asked of an
    /// index without an [`EventSource`](crate::EventSource) to check candidates against.
    #[error("the phrase \"{phrase}\" needs the events read back, and this index has no event source")]
    NoEventSource { phrase: String },
    /// The [`EventSource`](crate::EventSource) failed to read back ledger entry `index` while
    /// checking a phrase.
    #[error("reading back ledger entry {index} to check a phrase: {source}")]
    Source {
        index: u64,
        #[source]
        source: SourceError,
    },
    /// [`EventIndex::forget_below`](crate::EventIndex::forget_below) past
    /// what the index holds.
    #[error("cannot forget entries below {n}: the index holds only the first {watermark} (commit first)")]
    ForgetPastWatermark { n: u64, watermark: u64 },
    /// `wipe` was pointed at a directory that is not an index.
    #[error("{0}: not an index directory (no MANIFEST); refusing to delete it")]
    NotAnIndex(PathBuf),
    /// The ledger could not tell its root hash at the watermark being
    /// committed; nothing was written and the commit may be tried again.
    #[error("{dir}: the ledger's root hash at {size} entries could not be read for the index's commit: {source}")]
    History {
        dir: PathBuf,
        size: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}
