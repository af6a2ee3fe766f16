//! Sealtrail's ledger: append-only, crash-safe storage of log entries with
//! their Merkle tree and signed checkpoints, and offline verification of it.
//! Sealed bundles of entries can be compressed ([`Log::compact`]) and the
//! oldest pruned ([`Log::prune`]), keeping every tree hash.
//!
//! Architecture invariants: synchronous (no async runtime); all file I/O goes
//! through [`storage::Storage`]; knows nothing about events, JSON schemas or
//! HTTP. An append is acknowledged only after its entries and a signed
//! checkpoint covering them are durable; after a failed write or sync the log
//! refuses writes until reopened.

pub mod datadir;
pub mod error;
pub mod format;
pub mod log;
mod read_ahead;
pub mod scrub;
pub mod verify;

/// The storage trait the ledger does all its file I/O through, re-exported
/// from `sealtrail-storage` (whose feature `sim` adds the simulated one).
pub use sealtrail_storage as storage;

pub use datadir::{default_origin, DataDir, LogInfo};
pub use error::{Error, LedgerError, Result};
pub use log::{
    Appended, CompactReport, CpuMeter, Damage, Log, LogOptions, Pace, PacedReport, PackVersion, PreparedEntry,
    PruneReport, READ_ONLY_OPEN_ATTEMPTS,
};
