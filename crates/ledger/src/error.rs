use std::path::PathBuf;
use std::sync::Arc;

/// Everything the ledger refuses or fails at. Messages name the file, the
/// entry index and the byte offset wherever those are known.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("entry {position} of the batch is {len} bytes; the limit is 65535")]
    EntryTooLarge { position: usize, len: usize },
    #[error("log is poisoned after a failed write or sync ({0}); it accepts no writes until it is reopened")]
    Poisoned(Arc<str>),
    #[error("{file}: {detail}")]
    Corrupt { file: PathBuf, detail: String },
    /// Stored data failed its integrity check while the log was open (a
    /// read or the scrub). The log refuses writes and new checkpoints until
    /// it is repaired; the message names the entry, never a file path.
    #[error("log {log}: entry {index} (byte {offset} of its entries file) failed its integrity check: {detail}; the log accepts no writes and signs no checkpoint until it is repaired (see `sealtrail verify`)")]
    Damaged {
        log: String,
        index: u64,
        offset: u64,
        detail: String,
    },
    #[error("index {index} is outside the log (size {size})")]
    OutOfRange { index: u64, size: u64 },
    /// The entry was pruned: its bytes are gone for good, while its leaf
    /// hash and the tree above it are kept (proofs still work).
    #[error("entry {index} was pruned (entries below {pruned_below} are gone; their hashes remain)")]
    Pruned { index: u64, pruned_below: u64 },
    /// A prune or compaction that cannot be done as asked; nothing changed.
    #[error("log {log}: cannot prune below {below}: {reason}")]
    PruneRefused { log: String, below: u64, reason: String },
    #[error("log name {0:?} is not valid: use 1-64 of a-z, 0-9, '-', '_', starting with a letter or digit")]
    BadLogName(String),
    #[error("log {0:?} already exists")]
    LogExists(String),
    #[error("no log named {0:?} in {1}")]
    NoSuchLog(String, PathBuf),
    /// A write asked of a log opened read-only (beside its writer).
    #[error("log {0:?} is open read-only")]
    ReadOnly(String),
    /// A read-only open found the derived files behind the last signed
    /// checkpoint: the log was not closed cleanly and only a writer's open
    /// repairs it.
    #[error("{dir}: {detail}; open the log once with a writer (`sealtrail serve`, `sealtrail append` or `sealtrail reindex`) to repair it")]
    NeedsRecovery { dir: PathBuf, detail: String },
    #[error("key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
}

impl LedgerError {
    /// The write or sync failed because the file system is full: once space
    /// is free again, reopening the log from its last durable state is safe.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, LedgerError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
    }
}

/// The ledger's error under its short name.
pub type Error = LedgerError;

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Attach the operation and path to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;

    /// [`IoContext::ctx`] with the path built only on an error: for reads
    /// of every entry, where joining a path each time costs more than the
    /// read's own bookkeeping.
    fn ctx_with(self, op: &'static str, path: impl FnOnce() -> std::path::PathBuf) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.ctx_with(op, || path.to_path_buf())
    }

    fn ctx_with(self, op: &'static str, path: impl FnOnce() -> std::path::PathBuf) -> Result<T> {
        self.map_err(|source| LedgerError::Io {
            op,
            path: path(),
            source,
        })
    }
}
