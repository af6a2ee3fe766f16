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
    #[error("log is poisoned after a failed write or sync ({0}); it accepts no writes until restarted")]
    Poisoned(Arc<str>),
    #[error("{file}: {detail}")]
    Corrupt { file: PathBuf, detail: String },
    #[error("index {index} is outside the log (size {size})")]
    OutOfRange { index: u64, size: u64 },
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

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Attach the operation and path to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| LedgerError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
