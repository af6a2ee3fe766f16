//! Backups of a data directory (docs/backup.md): `create` copies the
//! metadata database, the logs and every other file of the data directory
//! into a backup directory, in an order under which every reference between
//! the metadata database and the logs resolves, while a server keeps
//! serving and appending, without taking any log's lock; `verify` checks a backup's manifest, every byte
//! it names, and every log inside with the ledger's verifier; `restore`
//! rebuilds a data directory from a backup in a staging directory, checks
//! all of it, and only then renames it into place.
//!
//! A backup directory holds `MANIFEST` and `objects/`, files named by the
//! SHA-256 of their bytes that never change once named. A new backup writes
//! its new objects, syncs them, then replaces `MANIFEST` in one rename; so a
//! crash at any point leaves the old backup or the new one, never a mix.
//! Objects the manifest no longer names are removed only after that rename.
//!
//! Deliberately not here: the query index (derived from the ledger, rebuilt
//! by the server or `sealtrail reindex`), argument parsing and output.

pub mod create;
pub mod manifest;
pub mod restore;
pub mod verify;
mod view;

pub use create::{create, CreateOptions, CreateReport, Source};
pub use manifest::{Chunk, FileRecord, Kind, LogRecord, Manifest};
pub use restore::{restore, restore_with, RestoreReport};
pub use verify::{verify, Finding, VerifyReport};

use std::path::PathBuf;

/// The manifest's name in a backup directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The directory of objects in a backup directory.
pub const OBJECTS_DIR: &str = "objects";
/// Held (flock) while a backup is written, so two never interleave.
pub const LOCK_FILE: &str = "lock";
/// The metadata database's name in the data directory.
pub const META_FILE: &str = "meta.db";
/// The query index's directory inside a log directory: not backed up.
pub const INDEX_DIR: &str = "query-index";

/// What can go wrong with a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file of the backup does not hold what its manifest says.
    #[error("damaged backup: {file}: {detail}")]
    Damaged { file: String, detail: String },
    #[error("ledger: {0}")]
    Ledger(#[from] sealtrail_ledger::LedgerError),
    #[error("{path}: {detail}")]
    Sqlite { path: PathBuf, detail: String },
    /// The data directory to restore into holds something already.
    #[error("{0} is not empty: restore only into an empty or missing data directory; nothing was changed")]
    NotEmpty(PathBuf),
    /// The destination is neither empty nor a backup.
    #[error("{0}")]
    Refused(String),
}

pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, BackupError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, BackupError> {
        self.map_err(|source| BackupError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The SQLite `file:` URI of `path` with `query` (`""` or `?name=value…`)
/// after it: the characters a URI gives a meaning to are escaped, so a
/// path holding them still names its file.
pub(crate) fn sqlite_uri(path: &std::path::Path, query: &str) -> String {
    let escaped = path
        .display()
        .to_string()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    format!("file:{escaped}{query}")
}
