//! One append-only log: its files, group commit, recovery on open, and reads
//! (entries, proofs, tiles).
//!
//! Write path: callers encode and hash their entries on their own threads,
//! then queue them; callers take turns writing everything queued in one
//! write, and making everything written durable with one `fdatasync` of the
//! entries file, a checkpoint signed for the new size and synced into the
//! checkpoint file. Only then is anyone told their entries are stored. The
//! index and hashes files are derived from the entries and synced less
//! often; on open the entries written since their last sync are re-read to
//! rebuild them.
//!
//! `commit_queue` is the protocol of who commits and who is woken when
//! (model-checked on its own), `commit` what a write and a sync do,
//! `recover` creating, opening and reopening, `read` entries, proofs and
//! tiles.
//!
//! Deliberately not here: any notion of events, JSON or HTTP.

use crate::error::{LedgerError, Result};
use crate::format;
use crate::storage::{Storage, StorageFile};
use commit::{Syncer, Writer};
use commit_queue::CommitQueue;
use sealtrail_merkle::checkpoint::{sign_checkpoint, Checkpoint};
use sealtrail_merkle::note::{Signer, Verifier};
use sealtrail_merkle::{leaf_hash, Hash};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

mod commit;
mod commit_queue;
#[cfg(test)]
mod commit_queue_model;
mod compact;
mod pace;
pub(crate) mod packs;
mod prune;
mod read;
mod recover;
pub(crate) mod segments;

pub use compact::CompactReport;
pub use pace::{CpuMeter, Pace, PacedReport};
pub use packs::PackVersion;
pub use prune::PruneReport;
pub use recover::READ_ONLY_OPEN_ATTEMPTS;
use segments::{Segment, Segments};
pub mod snapshot;

/// The locks the commit protocol runs on. Its model check compiles
/// `commit_queue` a second time over shuttle's, which schedule the
/// interleavings it explores.
mod sync {
    pub(super) use std::sync::{Condvar, Mutex, MutexGuard};
}

pub const ENTRIES_FILE: &str = "entries";
pub const INDEX_FILE: &str = "index";
pub const HASHES_FILE: &str = "hashes";
pub const CHECKPOINT_FILE: &str = "checkpoint";
pub const KEY_FILE: &str = "log.key";
pub const PUBKEY_FILE: &str = "log.pub";
pub const LOCK_FILE: &str = "lock";

/// The zstd level bundles are packed with by default: the cheapest that
/// keeps packs at 5x of generated events (5.2x; level 3 makes 5.4x for
/// about a sixth more instructions and three times the cache misses, and
/// level 2 and the negative levels fall below 5x). See BENCHMARKS.md,
/// "Ledger compression".
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;

/// Tuning of the write path.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Most entries committed by one `fdatasync`.
    pub max_batch: usize,
    /// How long a writer waits for more entries before committing a batch
    /// smaller than `max_batch`. Zero: commit at once; batches still form
    /// from whatever queued during the previous sync.
    pub max_delay: Duration,
    /// Sync the derived files (index, hashes) after this many entries; bounds
    /// what must be re-read on open after a crash.
    pub derived_sync_every: u64,
    /// zstd level [`Log::compact`] compresses bundles with.
    pub compression_level: i32,
    /// The pack format version [`Log::compact`] writes: the newest by
    /// default; [`PackVersion::V2`] while releases that read only it must
    /// still read the log. Packs of either version are read.
    pub pack_version: PackVersion,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_batch: 16_384,
            max_delay: Duration::ZERO,
            derived_sync_every: 1 << 18,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            pack_version: PackVersion::default(),
        }
    }
}

/// What an append returns once its entries are durable.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Index of the first entry appended.
    pub first: u64,
    pub count: u64,
    /// A signed checkpoint (note text) whose tree contains the entries.
    pub checkpoint: Arc<[u8]>,
    /// Size of the tree `checkpoint` commits to.
    pub tree_size: u64,
}

/// Stored data of an open log that failed its integrity check: the first
/// entry found damaged, where it is, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub index: u64,
    /// Byte offset of the entry's record in the entries file.
    pub offset: u64,
    pub detail: String,
}

struct Files {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// The entry segments; changed only by prune (with the writer's and
    /// the syncer's locks held while the one appended to changes).
    entries: RwLock<Arc<Segments>>,
    index: Arc<dyn StorageFile>,
    hashes: Arc<dyn StorageFile>,
    checkpoint: Arc<dyn StorageFile>,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn segments(&self) -> RwLockReadGuard<'_, Arc<Segments>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The segment appends go to.
    fn active(&self) -> Segment {
        self.segments().active().clone()
    }
}

/// An entry hashed and checksummed ahead of [`Log::append_prepared`].
///
/// The leaf hash and the data part of the record checksum are most of an
/// append's CPU; preparing entries lets a caller do that work on its own
/// threads, in parallel, before the append. The fields are private so the
/// hash always belongs to the data beside it.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    data: Vec<u8>,
    digest: Digest,
}

/// What an append needs to know of an entry besides its bytes.
#[derive(Debug, Clone, Copy)]
struct Digest {
    leaf: Hash,
    /// [`format::unsealed_record_crc`] of the data.
    crc: u32,
}

impl Digest {
    fn of(data: &[u8]) -> Digest {
        Digest {
            leaf: leaf_hash(data),
            crc: format::unsealed_record_crc(data),
        }
    }
}

impl PreparedEntry {
    pub fn new(data: Vec<u8>) -> PreparedEntry {
        let digest = Digest::of(&data);
        PreparedEntry { data, digest }
    }

    /// The entry's RFC 9162 leaf hash.
    pub fn leaf(&self) -> Hash {
        self.digest.leaf
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

/// The committed state readers see.
#[derive(Clone)]
struct Head {
    checkpoint: Checkpoint,
    note: Arc<[u8]>,
}

struct Inner {
    name: String,
    signer: Signer,
    verifier: Verifier,
    opts: LogOptions,
    files: Files,
    commits: CommitQueue<Inner>,
    writer: Mutex<Writer>,
    syncer: Mutex<Syncer>,
    head: RwLock<Head>,
    /// Entries below this are pruned; raised only after the checkpoint
    /// file records it durably.
    pruned_below: AtomicU64,
    /// Serializes prunes.
    maintenance: Mutex<()>,
    /// Opened beside a writer: appends and flushes refuse or do nothing.
    read_only: bool,
    /// Held while open: one writer per log across processes (nothing for
    /// a read-only open).
    _lock: Box<dyn std::any::Any + Send + Sync>,
}

/// A handle to an open log; clones share it. Safe to use from many threads.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning of std locks only means another thread panicked; the log's
    // own poisoned state is the commit queue's.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn corrupt(dir: &Path, file: &str, detail: impl Into<String>) -> LedgerError {
    LedgerError::Corrupt {
        file: dir.join(file),
        detail: detail.into(),
    }
}

impl Log {
    /// Whether this handle was opened with [`Log::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn origin(&self) -> &str {
        self.inner.signer.name()
    }

    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    pub fn dir(&self) -> &Path {
        &self.inner.files.dir
    }

    /// Entries below this index are pruned (0 when nothing is): their
    /// bytes are gone, their leaf and subtree hashes are kept.
    pub fn pruned_below(&self) -> u64 {
        self.inner.pruned_below.load(Ordering::Acquire)
    }

    /// Entries covered by the latest signed checkpoint.
    pub fn size(&self) -> u64 {
        // Read in place: cloning the head (its origin, its note) for one
        // number cost more than the rest of reading an entry.
        self.inner
            .head
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .checkpoint
            .size
    }

    /// The latest signed checkpoint and its note text.
    pub fn checkpoint(&self) -> (Checkpoint, Arc<[u8]>) {
        let h = self.head();
        (h.checkpoint, h.note)
    }

    /// Why writes are refused, if they are.
    pub fn poisoned(&self) -> Option<Arc<str>> {
        self.inner.commits.poisoned()
    }

    /// The log is poisoned because the file system was full: once there is
    /// room again, [`Log::reopen`] resumes it.
    pub fn poisoned_by_full_disk(&self) -> bool {
        self.inner.commits.poisoned_by_full_disk()
    }

    /// The first entry found damaged since the log was opened, if any.
    pub fn damaged(&self) -> Option<Damage> {
        self.inner.commits.damaged()
    }

    /// Record that entry `index` (its record at byte `offset`) failed its
    /// integrity check, and return the error to answer with. The first
    /// detection of each entry is logged and counted.
    pub(crate) fn mark_damaged(&self, index: u64, offset: u64, detail: String) -> LedgerError {
        let name = &self.inner.name;
        let damage = Damage {
            index,
            offset,
            detail: detail.clone(),
        };
        if self.inner.commits.mark_damaged(damage) {
            tracing::error!(
                log = %name,
                entry = index,
                offset,
                "integrity failure: entry {index} of log {name} at byte {offset} of {}: {detail}",
                self.inner.files.segments().path(offset).display()
            );
            metrics::counter!("sealtrail_integrity_failures_total", "log" => name.clone()).increment(1);
        }
        LedgerError::Damaged {
            log: name.clone(),
            index,
            offset,
            detail,
        }
    }

    fn head(&self) -> Head {
        self.inner.head()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: a clean close means the next open re-reads nothing.
        // A failure here loses nothing; open rebuilds from the entries file.
        let _ = self.flush();
    }
}

impl Inner {
    fn head(&self) -> Head {
        self.head.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The error for the log's recorded damage, if it has any.
    fn damage_error(&self) -> Option<LedgerError> {
        self.commits.damage_error(&self.commits.lock())
    }

    fn sign(&self, checkpoint: &Checkpoint) -> Result<String> {
        sign_checkpoint(checkpoint, &self.signer).map_err(|e| LedgerError::Key {
            path: self.files.path(KEY_FILE),
            detail: e.to_string(),
        })
    }
}
