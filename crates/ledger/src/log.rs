//! One append-only log: its files, group commit, recovery on open, and reads
//! (entries, proofs, tiles).
//!
//! Write path: callers encode and hash their entries on their own threads,
//! then queue them; one caller at a time becomes the *leader* and commits
//! everything queued in one write and one `fdatasync` of the entries file,
//! signs a checkpoint for the new size and syncs it into the checkpoint file.
//! Only then is anyone told their entries are stored. The index and hashes
//! files are derived from the entries and synced less often; on open the
//! entries written since their last sync are re-read to rebuild them.
//!
//! Deliberately not here: any notion of events, JSON or HTTP.

use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, FormatError, Slot, HEADER_LEN, MAX_ENTRY, RECORD_HEADER_LEN, SLOT_LEN};
use crate::storage::{Storage, StorageFile};
use sealtrail_merkle::checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint};
use sealtrail_merkle::note::{Signer, Verifier};
use sealtrail_merkle::tree::{stored_count, stored_index, Frontier, NodeSource};
use sealtrail_merkle::{leaf_hash, Hash, EMPTY_ROOT};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

pub const ENTRIES_FILE: &str = "entries";
pub const INDEX_FILE: &str = "index";
pub const HASHES_FILE: &str = "hashes";
pub const CHECKPOINT_FILE: &str = "checkpoint";
pub const KEY_FILE: &str = "log.key";
pub const PUBKEY_FILE: &str = "log.pub";
pub const LOCK_FILE: &str = "lock";

/// Tuning of the write path.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Most entries committed by one `fdatasync`.
    pub max_batch: usize,
    /// How long a leader waits for more entries before committing a batch
    /// smaller than `max_batch`. Zero: commit at once; batches still form
    /// from whatever queued during the previous sync.
    pub max_delay: Duration,
    /// Sync the derived files (index, hashes) after this many entries; bounds
    /// what must be re-read on open after a crash.
    pub derived_sync_every: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_batch: 16_384,
            max_delay: Duration::ZERO,
            derived_sync_every: 1 << 18,
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

/// Distinct damaged entries a log remembers (each counted once in
/// `sealtrail_integrity_failures_total`); beyond this, every detection counts.
const MAX_DAMAGED_REMEMBERED: usize = 1024;

struct Files {
    dir: PathBuf,
    entries: Arc<dyn StorageFile>,
    index: Arc<dyn StorageFile>,
    hashes: Arc<dyn StorageFile>,
    checkpoint: Arc<dyn StorageFile>,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
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

struct Pending {
    records: Vec<u8>,
    leaves: Vec<Hash>,
}

/// The tree as last written to the OS by a writer, not yet necessarily
/// durable: what the next sync will make durable and sign.
#[derive(Clone, Copy, Default)]
struct Written {
    size: u64,
    root: Hash,
    entries_end: u64,
}

/// Appends move through two stages, each run by one caller at a time on
/// behalf of everyone: a *writer* hashes and writes queued entries, a
/// *syncer* makes everything written so far durable and signs it. While one
/// batch syncs, the next is written, so CPU work overlaps the disk flush.
///
/// Every caller waits on its own condition variable: a commit wakes exactly
/// the callers it made durable, and a caller leaving with work still to do
/// wakes one sleeper per stage nobody runs. (One shared condition variable
/// woke all 64 waiters of 64 concurrent single-event appends at each stage,
/// and those wake-ups cost more CPU than the appends.)
#[derive(Default)]
struct Queue {
    next: u64,
    durable: u64,
    pending: VecDeque<Pending>,
    pending_entries: usize,
    writing: bool,
    syncing: bool,
    written: Written,
    poisoned: Option<Arc<str>>,
    /// The poisoning write or sync failed for want of space, so reopening
    /// from the last durable state is safe once space is free.
    poisoned_by_full_disk: bool,
    /// The first damaged entry found; appends and new checkpoints are
    /// refused while it is set.
    damaged: Option<Damage>,
    /// Every damaged entry found so far (up to [`MAX_DAMAGED_REMEMBERED`]).
    damaged_entries: BTreeSet<u64>,
    /// Every append in flight, in order of `end`.
    waiters: VecDeque<Waiter>,
}

struct Waiter {
    /// One past the append's last index: durable once `durable >= end`.
    end: u64,
    wake: Arc<Condvar>,
    sleeping: bool,
}

impl Queue {
    /// A stage nobody runs has work waiting.
    fn idle_stages(&self) -> usize {
        usize::from(!self.writing && !self.pending.is_empty())
            + usize::from(!self.syncing && self.written.size > self.durable)
    }

    /// Wake the callers whose entries are now durable.
    fn wake_durable(&mut self) {
        while self.waiters.front().is_some_and(|w| w.end <= self.durable) {
            if let Some(w) = self.waiters.pop_front() {
                w.wake.notify_one();
            }
        }
    }

    /// Wake up to `n` sleeping callers to run idle stages.
    fn wake_sleepers(&mut self, mut n: usize) {
        for w in self.waiters.iter_mut() {
            if n == 0 {
                break;
            }
            if w.sleeping {
                w.sleeping = false;
                w.wake.notify_one();
                n -= 1;
            }
        }
    }

    /// After a stage ends: this caller runs one idle stage itself (unless
    /// its entries are durable and it leaves, which wakes its own helpers);
    /// sleepers run the others, so writing overlaps syncing.
    fn hand_off(&mut self, end: u64) {
        if self.durable < end {
            let idle = self.idle_stages();
            self.wake_sleepers(idle.saturating_sub(1));
        }
    }

    /// Stop the log: every caller in flight gets the error. The reason
    /// kept (and shown to clients) names the log's file, not where it
    /// lives; the full error goes to the server's log.
    fn poison(&mut self, error: &LedgerError) {
        if self.poisoned.is_none() {
            self.poisoned_by_full_disk = error.is_storage_full();
            tracing::error!("log poisoned, writes stop until it is reopened: {error}");
        }
        let reason = match error {
            LedgerError::Io { op, path, source } => {
                let file = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
                format!("{op} {file}: {source}")
            }
            other => other.to_string(),
        };
        self.poisoned = Some(reason.into());
        for w in self.waiters.drain(..) {
            w.wake.notify_one();
        }
    }

    fn set_sleeping(&mut self, end: u64, sleeping: bool) {
        if let Ok(i) = self.waiters.binary_search_by_key(&end, |w| w.end) {
            self.waiters[i].sleeping = sleeping;
        }
    }
}

/// State only the writer touches.
struct Writer {
    frontier: Frontier,
    entries_end: u64,
    records: Vec<u8>,
    index: Vec<u8>,
    hashes: Vec<u8>,
}

/// State only the syncer (and `flush`) touches.
struct Syncer {
    slot_seq: u64,
    /// Entries whose index offsets and hashes are known durable.
    derived_size: u64,
    derived_offset: u64,
    /// End of the entries covered by the published checkpoint.
    durable_end: u64,
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
    queue: Mutex<Queue>,
    queued: Condvar,
    writer: Mutex<Writer>,
    syncer: Mutex<Syncer>,
    head: RwLock<Head>,
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
    // Poisoning of std locks only means another thread panicked; the ledger's
    // own poisoned state is tracked explicitly in `Queue::poisoned`.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn corrupt(dir: &Path, file: &str, detail: impl Into<String>) -> LedgerError {
    LedgerError::Corrupt {
        file: dir.join(file),
        detail: detail.into(),
    }
}

/// Reads stored tree nodes from the hashes file.
struct HashesFile<'a> {
    file: &'a dyn StorageFile,
    path: PathBuf,
}

/// A [`HashesFile`] that reads each node once.
struct Remembered<'a> {
    file: HashesFile<'a>,
    seen: RefCell<HashMap<(u8, u64), Hash>>,
}

impl NodeSource for Remembered<'_> {
    type Error = LedgerError;
    fn node(&self, level: u8, n: u64) -> Result<Hash> {
        if let Some(h) = self.seen.borrow().get(&(level, n)) {
            return Ok(*h);
        }
        let h = self.file.node(level, n)?;
        self.seen.borrow_mut().insert((level, n), h);
        Ok(h)
    }
}

impl NodeSource for HashesFile<'_> {
    type Error = LedgerError;
    fn node(&self, level: u8, n: u64) -> Result<Hash> {
        let mut h = [0u8; 32];
        let at = HEADER_LEN + stored_index(level, n) * 32;
        self.file.read_exact_at(&mut h, at).ctx("read hash", &self.path)?;
        Ok(h)
    }
}

impl Log {
    /// Create the files of a new, empty log in `dir` (which must exist and
    /// hold its key files) and sign the checkpoint of the empty tree.
    pub(crate) fn create(storage: &dyn Storage, dir: &Path, signer: &Signer) -> Result<()> {
        for (name, magic) in [
            (ENTRIES_FILE, format::ENTRIES_MAGIC),
            (INDEX_FILE, format::INDEX_MAGIC),
            (HASHES_FILE, format::HASHES_MAGIC),
        ] {
            let path = dir.join(name);
            storage
                .create_new(&path, &format::encode_header(magic), false)
                .ctx("create", &path)?;
        }
        let checkpoint = Checkpoint {
            origin: signer.name().to_string(),
            size: 0,
            root: EMPTY_ROOT,
            extensions: vec![],
        };
        let note = sign_checkpoint(&checkpoint, signer).map_err(|e| LedgerError::Key {
            path: dir.join(KEY_FILE),
            detail: e.to_string(),
        })?;
        let slot = Slot {
            seq: 1,
            derived_size: 0,
            derived_offset: HEADER_LEN,
            note: note.into_bytes(),
        };
        let mut bytes = vec![0u8; 2 * SLOT_LEN];
        let encoded = slot
            .encode()
            .map_err(|e| corrupt(dir, CHECKPOINT_FILE, e.to_string()))?;
        bytes[SLOT_LEN..].copy_from_slice(&encoded);
        let path = dir.join(CHECKPOINT_FILE);
        storage.create_new(&path, &bytes, false).ctx("create", &path)?;
        storage.sync_dir(dir).ctx("sync directory", dir)
    }

    /// Open the log in `dir`: check it against its last signed checkpoint,
    /// rebuild derived data written since its last sync, and drop any tail
    /// that no signed checkpoint covers (never acknowledged).
    pub fn open(storage: &dyn Storage, dir: &Path, name: &str, opts: LogOptions) -> Result<Log> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = storage.lock(&lock_path).ctx("lock", &lock_path)?;
        let signer = read_signer(storage, dir)?;
        let verifier = signer.verifier();
        let files = open_files(dir, |path| storage.open(path, false))?;
        let (writer, syncer, head, queue) = resume_signed(&files, &verifier)?;
        Ok(Log {
            inner: Arc::new(Inner {
                name: name.to_string(),
                signer,
                verifier,
                opts,
                files,
                queue: Mutex::new(queue),
                queued: Condvar::new(),
                writer: Mutex::new(writer),
                syncer: Mutex::new(syncer),
                head: RwLock::new(head),
                read_only: false,
                _lock: lock,
            }),
        })
    }

    /// Open the log in `dir` for reading beside its writer, which may be
    /// another process appending to it (a running server). Takes no lock
    /// and writes nothing: no repair, no truncation, no file created. The
    /// log it shows is the tree of the last signed checkpoint at the time
    /// of the open, whose entries, offsets and hashes the writer wrote
    /// before signing it; appends refuse with [`LedgerError::ReadOnly`].
    ///
    /// A log whose derived files are behind its last signed checkpoint (a
    /// crash of the machine before its writer reopened it) is refused with
    /// [`LedgerError::NeedsRecovery`]: only a writer's open repairs it.
    pub fn open_read_only(storage: &dyn Storage, dir: &Path, name: &str) -> Result<Log> {
        let signer = read_signer(storage, dir)?;
        let verifier = signer.verifier();
        let files = open_files(dir, |path| storage.open_read(path))?;
        let (slot, checkpoint) = read_signed_checkpoint(&files, &verifier)?;
        let size = checkpoint.size;
        let behind = |detail: String| LedgerError::NeedsRecovery {
            dir: dir.to_path_buf(),
            detail,
        };
        let index_len = files.index.len().ctx("stat", &files.path(INDEX_FILE))?;
        let hashes_len = files.hashes.len().ctx("stat", &files.path(HASHES_FILE))?;
        if index_len < HEADER_LEN + size * 8 || hashes_len < HEADER_LEN + stored_count(size) * 32 {
            return Err(behind(format!(
                "the index or hashes file ends before entry {size} of the last signed checkpoint"
            )));
        }
        let frontier = Frontier::load(
            &HashesFile {
                file: &*files.hashes,
                path: files.path(HASHES_FILE),
            },
            size,
        )?;
        if frontier.root() != checkpoint.root {
            return Err(behind(format!(
                "the stored hashes of its first {size} entries do not have the root of the last signed checkpoint \
                 (`sealtrail verify` tells damage apart)"
            )));
        }
        let written = Written {
            size,
            root: checkpoint.root,
            entries_end: 0,
        };
        Ok(Log {
            inner: Arc::new(Inner {
                name: name.to_string(),
                signer,
                verifier,
                opts: LogOptions::default(),
                files,
                queue: Mutex::new(Queue {
                    next: size,
                    durable: size,
                    written,
                    ..Queue::default()
                }),
                queued: Condvar::new(),
                writer: Mutex::new(Writer {
                    frontier,
                    entries_end: 0,
                    records: Vec::new(),
                    index: Vec::new(),
                    hashes: Vec::new(),
                }),
                syncer: Mutex::new(Syncer {
                    slot_seq: slot.seq,
                    derived_size: size,
                    derived_offset: 0,
                    durable_end: 0,
                }),
                head: RwLock::new(Head {
                    checkpoint,
                    note: slot.note.into(),
                }),
                read_only: true,
                _lock: Box::new(()),
            }),
        })
    }

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

    /// Entries covered by the latest signed checkpoint.
    pub fn size(&self) -> u64 {
        self.head().checkpoint.size
    }

    /// The latest signed checkpoint and its note text.
    pub fn checkpoint(&self) -> (Checkpoint, Arc<[u8]>) {
        let h = self.head();
        (h.checkpoint, h.note)
    }

    /// Why writes are refused, if they are.
    pub fn poisoned(&self) -> Option<Arc<str>> {
        lock(&self.inner.queue).poisoned.clone()
    }

    /// The log is poisoned because the file system was full: once there is
    /// room again, [`Log::reopen`] resumes it.
    pub fn poisoned_by_full_disk(&self) -> bool {
        let q = lock(&self.inner.queue);
        q.poisoned.is_some() && q.poisoned_by_full_disk
    }

    /// The first entry found damaged since the log was opened, if any.
    pub fn damaged(&self) -> Option<Damage> {
        lock(&self.inner.queue).damaged.clone()
    }

    /// Record that entry `index` (its record at byte `offset`) failed its
    /// integrity check, and return the error to answer with. The first
    /// detection of each entry is logged and counted.
    pub(crate) fn mark_damaged(&self, index: u64, offset: u64, detail: String) -> LedgerError {
        let name = &self.inner.name;
        let mut q = lock(&self.inner.queue);
        let new = q.damaged_entries.len() >= MAX_DAMAGED_REMEMBERED || q.damaged_entries.insert(index);
        if q.damaged.is_none() {
            q.damaged = Some(Damage {
                index,
                offset,
                detail: detail.clone(),
            });
            // Appends in flight must not be acknowledged or signed over it.
            for w in q.waiters.drain(..) {
                w.wake.notify_one();
            }
        }
        drop(q);
        if new {
            tracing::error!(
                log = %name,
                entry = index,
                offset,
                "integrity failure: entry {index} of log {name} at byte {offset} of {}: {detail}",
                self.inner.files.path(ENTRIES_FILE).display()
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

    /// The error for the log's recorded damage, if it has any.
    fn damage_error(&self, q: &Queue) -> Option<LedgerError> {
        q.damaged.as_ref().map(|d| LedgerError::Damaged {
            log: self.inner.name.clone(),
            index: d.index,
            offset: d.offset,
            detail: d.detail.clone(),
        })
    }

    /// Resume a log poisoned by a failed write or sync: reopen it from its
    /// last durable state, exactly as [`Log::open`] would after a restart
    /// (the unacknowledged tail is cut, derived data rebuilt), without
    /// giving up the handle or the lock. Does nothing to a healthy log;
    /// refuses a damaged one, which reopening cannot repair.
    pub fn reopen(&self) -> Result<()> {
        let inner = &*self.inner;
        // In the order the write path takes them (a syncer takes the queue
        // while holding its own lock). The queue lock then stays held:
        // appends wait, and are refused if the reopen fails.
        let mut writer = lock(&inner.writer);
        let mut syncer = lock(&inner.syncer);
        let mut q = lock(&inner.queue);
        if let Some(e) = self.damage_error(&q) {
            return Err(e);
        }
        if q.poisoned.is_none() {
            return Ok(());
        }
        if q.writing || q.syncing {
            return Err(LedgerError::Poisoned(
                "a write or sync of the failed commit is still running; try again".into(),
            ));
        }
        let (w, s, head, queue) = resume_signed(&inner.files, &inner.verifier)?;
        *writer = w;
        *syncer = s;
        *inner.head.write().unwrap_or_else(|e| e.into_inner()) = head;
        *q = queue;
        Ok(())
    }

    fn head(&self) -> Head {
        self.inner.head()
    }

    /// Append entries; returns once they are durable and covered by a signed
    /// checkpoint. Entries longer than 65,535 bytes are refused before
    /// anything is written.
    pub fn append<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<Appended> {
        let digests: Vec<Digest> = entries.iter().map(|e| Digest::of(e.as_ref())).collect();
        self.append_digested(entries.iter().map(AsRef::as_ref).zip(digests))
    }

    /// [`Log::append`] for entries hashed beforehand, maybe on other threads.
    pub fn append_prepared<P: std::borrow::Borrow<PreparedEntry>>(&self, entries: &[P]) -> Result<Appended> {
        self.append_digested(entries.iter().map(|p| {
            let p = p.borrow();
            (p.data.as_slice(), p.digest)
        }))
    }

    fn append_digested<'a, I>(&self, entries: I) -> Result<Appended>
    where
        I: ExactSizeIterator<Item = (&'a [u8], Digest)> + Clone,
    {
        let mut size = 0usize;
        for (position, (data, _)) in entries.clone().enumerate() {
            let len = data.len();
            if len > MAX_ENTRY {
                return Err(LedgerError::EntryTooLarge { position, len });
            }
            size += RECORD_HEADER_LEN as usize + len;
        }
        if entries.len() == 0 {
            let h = self.head();
            return Ok(Appended {
                first: h.checkpoint.size,
                count: 0,
                tree_size: h.checkpoint.size,
                checkpoint: h.note,
            });
        }
        // Encode on the caller's thread, outside any lock. The record
        // checksums cover the index, which is only known once queued.
        let count = entries.len() as u64;
        let mut leaves = Vec::with_capacity(entries.len());
        let mut records = Vec::with_capacity(size);
        let mut partial = Vec::with_capacity(entries.len());
        for (data, digest) in entries {
            leaves.push(digest.leaf);
            partial.push(digest.crc);
            records.extend_from_slice(&(data.len() as u32).to_be_bytes());
            records.extend_from_slice(&[0; 4]);
            records.extend_from_slice(data);
        }

        let inner = &*self.inner;
        if inner.read_only {
            return Err(LedgerError::ReadOnly(inner.name.clone()));
        }
        let mut q = lock(&inner.queue);
        if let Some(e) = self.damage_error(&q) {
            return Err(e);
        }
        if let Some(reason) = &q.poisoned {
            return Err(LedgerError::Poisoned(reason.clone()));
        }
        let first = q.next;
        let mut at = 0usize;
        for (i, crc) in partial.iter().enumerate() {
            let crc = format::seal_record_crc(*crc, first + i as u64);
            let len = u32::from_be_bytes([records[at], records[at + 1], records[at + 2], records[at + 3]]) as usize;
            records[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
            at += RECORD_HEADER_LEN as usize + len;
        }
        q.next += count;
        q.pending.push_back(Pending { records, leaves });
        q.pending_entries += count as usize;
        inner.queued.notify_one();
        let end = first + count;
        let wake = Arc::new(Condvar::new());
        q.waiters.push_back(Waiter {
            end,
            wake: wake.clone(),
            sleeping: false,
        });
        loop {
            if q.durable >= end {
                // Whoever is left waiting may need someone to run a stage.
                let idle = q.idle_stages();
                q.wake_sleepers(idle);
                drop(q);
                let h = self.head();
                return Ok(Appended {
                    first,
                    count,
                    tree_size: h.checkpoint.size,
                    checkpoint: h.note,
                });
            }
            if let Some(e) = self.damage_error(&q) {
                return Err(e);
            }
            if let Some(reason) = &q.poisoned {
                return Err(LedgerError::Poisoned(reason.clone()));
            }
            if !q.writing && !q.pending.is_empty() {
                q.writing = true;
                if !inner.opts.max_delay.is_zero() && q.pending_entries < inner.opts.max_batch {
                    let max = inner.opts.max_batch;
                    q = inner
                        .queued
                        .wait_timeout_while(q, inner.opts.max_delay, |q| q.pending_entries < max)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                let mut batch = Vec::new();
                let mut n = 0usize;
                while let Some(p) = q.pending.front() {
                    if n > 0 && n + p.leaves.len() > inner.opts.max_batch {
                        break;
                    }
                    n += p.leaves.len();
                    batch.extend(q.pending.pop_front());
                }
                q.pending_entries -= n;
                drop(q);
                let result = self.write_batch(&batch);
                q = lock(&inner.queue);
                q.writing = false;
                match result {
                    Ok(w) => q.written = w,
                    Err(e) => q.poison(&e),
                }
                q.hand_off(end);
                continue;
            }
            if !q.syncing && q.written.size > q.durable {
                q.syncing = true;
                let target = q.written;
                drop(q);
                let result = self.sync_to(target);
                q = lock(&inner.queue);
                q.syncing = false;
                match result {
                    Ok(()) => {
                        q.durable = target.size;
                        q.wake_durable();
                    }
                    Err(e) => q.poison(&e),
                }
                q.hand_off(end);
                continue;
            }
            q.set_sleeping(end, true);
            q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
            q.set_sleeping(end, false);
        }
    }

    /// Hash and write one batch to the OS (not yet durable). Any error
    /// leaves the log poisoned.
    fn write_batch(&self, batch: &[Pending]) -> Result<Written> {
        let files = &self.inner.files;
        let mut guard = lock(&self.inner.writer);
        let w = &mut *guard;
        let start_size = w.frontier.size();
        w.records.clear();
        w.index.clear();
        w.hashes.clear();
        let mut offset = w.entries_end;
        for p in batch {
            let mut at = 0usize;
            while at < p.records.len() {
                w.index.extend_from_slice(&offset.to_be_bytes());
                let len = u32::from_be_bytes([p.records[at], p.records[at + 1], p.records[at + 2], p.records[at + 3]]);
                let rec = RECORD_HEADER_LEN as usize + len as usize;
                at += rec;
                offset += rec as u64;
            }
            w.records.extend_from_slice(&p.records);
            for leaf in &p.leaves {
                let hashes = &mut w.hashes;
                w.frontier.push(*leaf, |_, _, h| hashes.extend_from_slice(h));
            }
        }
        files
            .entries
            .write_all_at(&w.records, w.entries_end)
            .ctx("write", &files.path(ENTRIES_FILE))?;
        files
            .index
            .write_all_at(&w.index, HEADER_LEN + start_size * 8)
            .ctx("write", &files.path(INDEX_FILE))?;
        files
            .hashes
            .write_all_at(&w.hashes, HEADER_LEN + stored_count(start_size) * 32)
            .ctx("write", &files.path(HASHES_FILE))?;
        w.entries_end = offset;
        Ok(Written {
            size: w.frontier.size(),
            root: w.frontier.root(),
            entries_end: offset,
        })
    }

    /// Make everything written up to `target` durable, then sign and persist
    /// its checkpoint and publish it. Any error leaves the log poisoned.
    fn sync_to(&self, target: Written) -> Result<()> {
        let inner = &*self.inner;
        let files = &inner.files;
        let mut guard = lock(&inner.syncer);
        let s = &mut *guard;
        // Covers `target` and maybe part of a later batch; the checkpoint
        // below commits only to `target`, so open cuts any such extra.
        let started = std::time::Instant::now();
        files.entries.sync_data().ctx("fdatasync", &files.path(ENTRIES_FILE))?;
        // The fsync every acknowledgement waits for; a recorder (the
        // server's /metrics) may collect it, otherwise this is a no-op.
        metrics::histogram!("sealtrail_fsync_seconds").record(started.elapsed());
        if target.size - s.derived_size >= inner.opts.derived_sync_every {
            files.index.sync_data().ctx("fdatasync", &files.path(INDEX_FILE))?;
            files.hashes.sync_data().ctx("fdatasync", &files.path(HASHES_FILE))?;
            s.derived_size = target.size;
            s.derived_offset = target.entries_end;
        }
        // Never sign over data found damaged, even if it was found while
        // this batch synced.
        if let Some(e) = self.damage_error(&lock(&inner.queue)) {
            return Err(e);
        }
        let checkpoint = Checkpoint {
            origin: inner.signer.name().to_string(),
            size: target.size,
            root: target.root,
            extensions: vec![],
        };
        let note: Arc<[u8]> = inner.sign(&checkpoint)?.into_bytes().into();
        inner.write_slot(s, &note)?;
        s.durable_end = target.entries_end;
        *inner.head.write().unwrap_or_else(|e| e.into_inner()) = Head { checkpoint, note };
        Ok(())
    }

    /// Sync the derived files and record that in the checkpoint file, so the
    /// next open re-reads nothing. Runs on drop; callable any time.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    fn hashes(&self) -> HashesFile<'_> {
        HashesFile {
            file: &*self.inner.files.hashes,
            path: self.inner.files.path(HASHES_FILE),
        }
    }

    fn check_size(&self, size: u64) -> Result<()> {
        let current = self.size();
        if size > current {
            return Err(LedgerError::OutOfRange {
                index: size,
                size: current,
            });
        }
        Ok(())
    }

    /// Byte offset of entry `index` in the entries file.
    pub(crate) fn offset(&self, index: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        let f = &self.inner.files;
        f.index
            .read_exact_at(&mut b, HEADER_LEN + index * 8)
            .ctx("read", &f.path(INDEX_FILE))?;
        Ok(u64::from_be_bytes(b))
    }

    /// The exact bytes of entry `index`, checked against its record checksum.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>> {
        let size = self.size();
        if index >= size {
            return Err(LedgerError::OutOfRange { index, size });
        }
        let mut out = self.entries(index, 1)?;
        out.pop().ok_or(LedgerError::OutOfRange { index, size })
    }

    /// Entries `[first, first+count)`, read in one pass.
    pub fn entries(&self, first: u64, count: u64) -> Result<Vec<Vec<u8>>> {
        let size = self.size();
        if first + count > size {
            return Err(LedgerError::OutOfRange {
                index: first + count - 1,
                size,
            });
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let f = &self.inner.files;
        let path = f.path(ENTRIES_FILE);
        let start = self.offset(first)?;
        let last = self.offset(first + count - 1)?;
        let mut hdr = [0u8; RECORD_HEADER_LEN as usize];
        f.entries.read_exact_at(&mut hdr, last).ctx("read", &path)?;
        let (len, _) = format::decode_record_header(&hdr)
            .map_err(|e| self.mark_damaged(first + count - 1, last, format!("record header: {e}")))?;
        let end = last + RECORD_HEADER_LEN + len as u64;
        if end < start {
            return Err(self.mark_damaged(
                first,
                start,
                format!(
                    "the stored offsets of entries {first}..{} go backwards (index file)",
                    first + count
                ),
            ));
        }
        let mut buf = vec![0u8; (end - start) as usize];
        f.entries.read_exact_at(&mut buf, start).ctx("read", &path)?;
        let mut out = Vec::with_capacity(count as usize);
        let mut at = 0usize;
        for index in first..first + count {
            let data = match format::decode_record(&buf[at..], index) {
                Ok(data) => data,
                Err(e) => {
                    let detail = crate::verify::explain_bad_record(&buf[at..], index, &e);
                    return Err(self.mark_damaged(index, start + at as u64, detail));
                }
            };
            at += RECORD_HEADER_LEN as usize + data.len();
            out.push(data.to_vec());
        }
        Ok(out)
    }

    /// The tree's frontier at `size` entries, from the stored hashes.
    pub(crate) fn frontier_at(&self, size: u64) -> Result<Frontier> {
        self.check_size(size)?;
        Frontier::load(&self.hashes(), size)
    }

    /// `count` stored hashes from post-order position `first` (see
    /// `tree::stored_index`), for checking many nodes with one read.
    pub(crate) fn stored_hashes(&self, first: u64, count: u64) -> Result<Vec<u8>> {
        let mut out = vec![0u8; (count * 32) as usize];
        let f = &self.inner.files;
        f.hashes
            .read_exact_at(&mut out, HEADER_LEN + first * 32)
            .ctx("read", &f.path(HASHES_FILE))?;
        Ok(out)
    }

    /// Stored hash of node `(level, n)`; the node must be complete within
    /// the committed tree.
    pub fn node(&self, level: u8, n: u64) -> Result<Hash> {
        self.hashes().node(level, n)
    }

    /// Root of the tree of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        sealtrail_merkle::tree_root(&self.hashes(), size)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        if index >= size {
            return Err(LedgerError::OutOfRange { index, size });
        }
        sealtrail_merkle::inclusion_proof(&self.hashes(), index, size)
    }

    /// Inclusion proofs of several entries in the tree of `size`, each node
    /// read once: the proofs of neighbouring entries (a group of single
    /// events) share most of their upper nodes.
    pub fn inclusion_proofs(&self, indices: &[u64], size: u64) -> Result<Vec<Vec<Hash>>> {
        self.check_size(size)?;
        let nodes = Remembered {
            file: self.hashes(),
            seen: RefCell::new(HashMap::new()),
        };
        indices
            .iter()
            .map(|&index| {
                if index >= size {
                    return Err(LedgerError::OutOfRange { index, size });
                }
                sealtrail_merkle::inclusion_proof(&nodes, index, size)
            })
            .collect()
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.check_size(new)?;
        if old > new {
            return Err(LedgerError::OutOfRange { index: old, size: new });
        }
        sealtrail_merkle::consistency_proof(&self.hashes(), old, new)
    }

    /// A signed checkpoint for the tree of `size` entries: the latest one if
    /// `size` is current, otherwise a new signature over the older, still
    /// valid prefix (it commits to nothing the latest one contradicts).
    pub fn checkpoint_at(&self, size: u64) -> Result<(Checkpoint, Arc<[u8]>)> {
        let head = self.head();
        if size == head.checkpoint.size {
            return Ok((head.checkpoint, head.note));
        }
        if let Some(e) = self.damage_error(&lock(&self.inner.queue)) {
            return Err(e);
        }
        let checkpoint = Checkpoint {
            origin: self.origin().to_string(),
            size,
            root: self.root_at(size)?,
            extensions: vec![],
        };
        let note = self.inner.sign(&checkpoint)?;
        Ok((checkpoint, note.into_bytes().into()))
    }

    /// The hashes of tile `(level, index)` of width `width` (tlog-tiles):
    /// tree level `8·level`, nodes `index·256 .. index·256+width`.
    pub fn tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<u8>> {
        let tree_level = level
            .checked_mul(8)
            .filter(|l| *l < 64)
            .ok_or(LedgerError::OutOfRange { index, size: 0 })?;
        let last_node = index * 256 + width as u64;
        self.check_size(last_node << tree_level)?;
        let src = self.hashes();
        let mut out = Vec::with_capacity(width as usize * 32);
        for n in index * 256..last_node {
            out.extend_from_slice(&src.node(tree_level, n)?);
        }
        Ok(out)
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

    fn sign(&self, checkpoint: &Checkpoint) -> Result<String> {
        sign_checkpoint(checkpoint, &self.signer).map_err(|e| LedgerError::Key {
            path: self.files.path(KEY_FILE),
            detail: e.to_string(),
        })
    }

    /// Persist `note` in the slot not holding the current checkpoint, so a
    /// torn write leaves the previous one intact.
    fn write_slot(&self, w: &mut Syncer, note: &[u8]) -> Result<()> {
        let files = &self.files;
        let path = files.path(CHECKPOINT_FILE);
        let slot = Slot {
            seq: w.slot_seq + 1,
            derived_size: w.derived_size,
            derived_offset: w.derived_offset,
            note: note.to_vec(),
        };
        let bytes = slot
            .encode()
            .map_err(|e| corrupt(&files.dir, CHECKPOINT_FILE, e.to_string()))?;
        files
            .checkpoint
            .write_all_at(&bytes, (slot.seq % 2) * SLOT_LEN as u64)
            .ctx("write", &path)?;
        files.checkpoint.sync_data().ctx("fdatasync", &path)?;
        w.slot_seq = slot.seq;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        if let Some(reason) = lock(&self.queue).poisoned.clone() {
            return Err(LedgerError::Poisoned(reason));
        }
        let mut guard = lock(&self.syncer);
        let s = &mut *guard;
        let head = self.head();
        if s.derived_size == head.checkpoint.size {
            return Ok(());
        }
        let files = &self.files;
        let r = (|| {
            files.index.sync_data().ctx("fdatasync", &files.path(INDEX_FILE))?;
            files.hashes.sync_data().ctx("fdatasync", &files.path(HASHES_FILE))?;
            s.derived_size = head.checkpoint.size;
            s.derived_offset = s.durable_end;
            self.write_slot(s, &head.note)
        })();
        if let Err(e) = &r {
            lock(&self.queue).poison(e);
        }
        r
    }
}

/// The log's signing key from its key file.
fn read_signer(storage: &dyn Storage, dir: &Path) -> Result<Signer> {
    let key_path = dir.join(KEY_FILE);
    let key_text = storage.read(&key_path).ctx("read", &key_path)?;
    let key_text = String::from_utf8(key_text).map_err(|_| LedgerError::Key {
        path: key_path.clone(),
        detail: "not UTF-8".into(),
    })?;
    Signer::from_private_key(key_text.trim()).map_err(|e| LedgerError::Key {
        path: key_path.clone(),
        detail: e.to_string(),
    })
}

/// Open the log's four files with `open` and check their headers.
fn open_files(dir: &Path, open: impl Fn(&Path) -> std::io::Result<Arc<dyn StorageFile>>) -> Result<Files> {
    let open = |name: &str| -> Result<Arc<dyn StorageFile>> {
        let path = dir.join(name);
        open(&path).ctx("open", &path)
    };
    let files = Files {
        dir: dir.to_path_buf(),
        entries: open(ENTRIES_FILE)?,
        index: open(INDEX_FILE)?,
        hashes: open(HASHES_FILE)?,
        checkpoint: open(CHECKPOINT_FILE)?,
    };
    for (f, name, magic) in [
        (&files.entries, ENTRIES_FILE, format::ENTRIES_MAGIC),
        (&files.index, INDEX_FILE, format::INDEX_MAGIC),
        (&files.hashes, HASHES_FILE, format::HASHES_MAGIC),
    ] {
        let mut h = [0u8; HEADER_LEN as usize];
        f.read_exact_at(&mut h, 0).ctx("read header", &files.path(name))?;
        format::decode_header(&h, magic).map_err(|e| corrupt(dir, name, format!("header: {e}")))?;
    }
    Ok(files)
}

/// The current checkpoint slot and its checkpoint, whose signature must
/// verify with the log's key.
fn read_signed_checkpoint(files: &Files, verifier: &Verifier) -> Result<(Slot, Checkpoint)> {
    let slot = read_current_slot(files)?;
    let (checkpoint, _) = open_checkpoint(&slot.note, verifier).map_err(|e| {
        corrupt(
            &files.dir,
            CHECKPOINT_FILE,
            format!("last signed checkpoint does not verify with {}: {e}", verifier),
        )
    })?;
    Ok((slot, checkpoint))
}

/// A writable log's state at its last signed checkpoint, the files
/// recovered to exactly the entries it covers: what open and a reopen after
/// a storage fault both start from.
fn resume_signed(files: &Files, verifier: &Verifier) -> Result<(Writer, Syncer, Head, Queue)> {
    let (slot, checkpoint) = read_signed_checkpoint(files, verifier)?;
    let signed = checkpoint.size;
    let mut rec = recover(files, &slot, signed, false)?;
    if rec.frontier.root() != checkpoint.root && rec.derived_size > 0 {
        // The derived files may be what is wrong: rebuild them from the
        // entries, which with the signed checkpoint are the truth.
        rec = recover(files, &slot, signed, true)?;
    }
    if rec.frontier.root() != checkpoint.root {
        return Err(corrupt(
            &files.dir,
            ENTRIES_FILE,
            format!("the tree of its first {signed} entries does not have the root of the last signed checkpoint"),
        ));
    }
    let writer = Writer {
        frontier: rec.frontier,
        entries_end: rec.entries_end,
        records: Vec::new(),
        index: Vec::new(),
        hashes: Vec::new(),
    };
    let syncer = Syncer {
        slot_seq: slot.seq,
        derived_size: rec.derived_size,
        derived_offset: rec.derived_offset,
        durable_end: rec.entries_end,
    };
    let queue = Queue {
        next: signed,
        durable: signed,
        written: Written {
            size: signed,
            root: checkpoint.root,
            entries_end: rec.entries_end,
        },
        ..Queue::default()
    };
    let head = Head {
        checkpoint,
        note: slot.note.into(),
    };
    Ok((writer, syncer, head, queue))
}

/// The valid slot with the highest sequence number.
fn read_current_slot(files: &Files) -> Result<Slot> {
    let path = files.path(CHECKPOINT_FILE);
    let len = files.checkpoint.len().ctx("stat", &path)?.min(2 * SLOT_LEN as u64);
    let mut bytes = vec![0u8; len as usize];
    files.checkpoint.read_exact_at(&mut bytes, 0).ctx("read", &path)?;
    format::newest_slot(&bytes).map_err(|e| corrupt(&files.dir, CHECKPOINT_FILE, e))
}

/// Bring the derived files up to `signed` entries and cut the entries file
/// to exactly the entries the last signed checkpoint covers.
/// `rebuild`: ignore the derived files and rebuild them from entry 0.
fn recover(files: &Files, slot: &Slot, signed: u64, rebuild: bool) -> Result<Recovered> {
    let dir = &files.dir;
    let entries_path = files.path(ENTRIES_FILE);
    let entries_len = files.entries.len().ctx("stat", &entries_path)?;
    let index_len = files.index.len().ctx("stat", &files.path(INDEX_FILE))?;
    let hashes_len = files.hashes.len().ctx("stat", &files.path(HASHES_FILE))?;

    // Trust the derived files up to what the slot says was synced, if they
    // are really that long; otherwise rebuild them from the first entry.
    let (mut size, mut offset) = (slot.derived_size.min(signed), slot.derived_offset);
    if rebuild
        || slot.derived_size > signed
        || index_len < HEADER_LEN + size * 8
        || hashes_len < HEADER_LEN + stored_count(size) * 32
        || offset > entries_len
    {
        (size, offset) = (0, HEADER_LEN);
    }
    let (trusted_size, trusted_offset) = (size, offset);
    let hashes = HashesFile {
        file: &*files.hashes,
        path: files.path(HASHES_FILE),
    };
    let mut frontier = Frontier::load(&hashes, size)?;

    // Re-read entries [size, signed): they were synced with their checkpoint.
    let mut index_buf = Vec::new();
    let mut hash_buf = Vec::new();
    let mut chunk = Vec::new();
    let mut chunk_start = offset;
    while size < signed {
        let mut at = (offset - chunk_start) as usize;
        let fits = chunk.len() >= at + RECORD_HEADER_LEN as usize
            && chunk.len() >= at + RECORD_HEADER_LEN as usize + record_len(&chunk[at..]);
        if !fits {
            // Read forward in 1 MiB steps, at least one largest record.
            let want = (1usize << 20).max(RECORD_HEADER_LEN as usize + MAX_ENTRY);
            let avail = entries_len.saturating_sub(offset) as usize;
            chunk.resize(want.min(avail), 0);
            files
                .entries
                .read_exact_at(&mut chunk, offset)
                .ctx("read", &entries_path)?;
            chunk_start = offset;
            at = 0;
        }
        let data = match format::decode_record(&chunk[at..], size) {
            Ok(d) => d,
            Err(FormatError::Short(_)) => return Err(missing(dir, size, offset, signed)),
            Err(e) => {
                return Err(corrupt(
                    dir,
                    ENTRIES_FILE,
                    format!("entry {size} at byte {offset}: {e}; the last signed checkpoint covers {signed} entries"),
                ))
            }
        };
        index_buf.extend_from_slice(&offset.to_be_bytes());
        frontier.push(leaf_hash(data), |_, _, h| hash_buf.extend_from_slice(h));
        offset += RECORD_HEADER_LEN + data.len() as u64;
        size += 1;
        if hash_buf.len() >= 4 << 20 || size == signed {
            // Written in pieces so a full rebuild runs in bounded memory.
            let done = (index_buf.len() / 8) as u64;
            let base = size - done;
            files
                .index
                .write_all_at(&index_buf, HEADER_LEN + base * 8)
                .ctx("write", &files.path(INDEX_FILE))?;
            files
                .hashes
                .write_all_at(&hash_buf, HEADER_LEN + stored_count(base) * 32)
                .ctx("write", &files.path(HASHES_FILE))?;
            index_buf.clear();
            hash_buf.clear();
        }
    }
    // Whatever follows was never covered by a signed checkpoint, so never
    // acknowledged: a torn or unsynced tail. Cut it, and stale derived data.
    if entries_len > offset {
        files.entries.set_len(offset).ctx("truncate", &entries_path)?;
        files.entries.sync_data().ctx("fdatasync", &entries_path)?;
    }
    files
        .index
        .set_len(HEADER_LEN + signed * 8)
        .ctx("truncate", &files.path(INDEX_FILE))?;
    files
        .hashes
        .set_len(HEADER_LEN + stored_count(signed) * 32)
        .ctx("truncate", &files.path(HASHES_FILE))?;
    Ok(Recovered {
        frontier,
        entries_end: offset,
        derived_size: trusted_size,
        derived_offset: trusted_offset,
    })
}

/// What open learns from the files: the tree, where the entries end, and how
/// far the derived files are known durable.
struct Recovered {
    frontier: Frontier,
    entries_end: u64,
    derived_size: u64,
    derived_offset: u64,
}

/// Length of the record starting at `b`; an invalid length counts as one
/// past the limit, so the caller reads on and the decoder reports it.
fn record_len(b: &[u8]) -> usize {
    format::decode_record_header(b).map_or(MAX_ENTRY + 1, |(len, _)| len as usize)
}

fn missing(dir: &Path, size: u64, offset: u64, signed: u64) -> LedgerError {
    corrupt(
        dir,
        ENTRIES_FILE,
        format!(
            "ends at byte {offset} after {size} entries, but the last signed checkpoint covers {signed}: \
             entries were removed or the file was rolled back"
        ),
    )
}
