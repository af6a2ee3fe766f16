//! Creating a log, opening it (checked against its last signed checkpoint,
//! derived files rebuilt, the unacknowledged tail cut), opening it read-only
//! beside its writer, and reopening it in place after a storage fault.
//!
//! Deliberately not here: the write path, which starts from the state
//! recovery leaves (`resume_signed`).

use super::commit::{Syncer, Writer, Written};
use super::commit_queue::{CommitQueue, Queue};
use super::packs::{packed_end, PACK_PREFIX};
use super::read::HashesFile;
use super::segments::{Segments, SEGMENT_PREFIX, TEMP_SUFFIX};
use super::{corrupt, lock, Files, Head, Inner, Log, LogOptions};
use super::{CHECKPOINT_FILE, ENTRIES_FILE, HASHES_FILE, INDEX_FILE, KEY_FILE, LOCK_FILE};
use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, FormatError, Slot, HEADER_LEN, MAX_ENTRY, RECORD_HEADER_LEN, SLOT_LEN};
use crate::storage::{Storage, StorageFile};
use sealtrail_merkle::checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint};
use sealtrail_merkle::note::{Signer, Verifier};
use sealtrail_merkle::tree::{stored_count, Frontier};
use sealtrail_merkle::{leaf_hash, EMPTY_ROOT};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

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
            pruned_below: 0,
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
    pub fn open(storage: Arc<dyn Storage>, dir: &Path, name: &str, opts: LogOptions) -> Result<Log> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = storage.lock(&lock_path).ctx("lock", &lock_path)?;
        let signer = read_signer(&*storage, dir)?;
        let verifier = signer.verifier();
        remove_temporaries(&*storage, dir)?;
        let st = storage.clone();
        let files = open_files(storage, dir, &|path| st.open(path, false))?;
        let (writer, syncer, head, queue) = resume_signed(&files, &verifier)?;
        let pruned_below = syncer.pruned_below;
        Ok(Log {
            inner: Arc::new(Inner {
                name: name.to_string(),
                signer,
                verifier,
                commits: CommitQueue::new(name, opts.max_batch, opts.max_delay, queue),
                opts,
                files,
                writer: Mutex::new(writer),
                syncer: Mutex::new(syncer),
                head: RwLock::new(head),
                pruned_below: AtomicU64::new(pruned_below),
                maintenance: Mutex::new(()),
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
    ///
    /// The writer's compaction and pruning delete entry files: one listed
    /// but deleted before it is opened makes the open list the directory
    /// again, up to [`READ_ONLY_OPEN_ATTEMPTS`] times in all (each retry
    /// follows a deletion that finished meanwhile), before the `NotFound`
    /// is returned.
    pub fn open_read_only(storage: Arc<dyn Storage>, dir: &Path, name: &str) -> Result<Log> {
        let signer = read_signer(&*storage, dir)?;
        let verifier = signer.verifier();
        let st = storage.clone();
        let mut attempt = 1;
        let files = loop {
            match open_files(storage.clone(), dir, &|path| st.open_read(path)) {
                Err(LedgerError::Io { op: "open", source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempt < READ_ONLY_OPEN_ATTEMPTS =>
                {
                    attempt += 1;
                }
                other => break other?,
            }
        };
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
        let opts = LogOptions::default();
        Ok(Log {
            inner: Arc::new(Inner {
                name: name.to_string(),
                signer,
                verifier,
                commits: CommitQueue::new(name, opts.max_batch, opts.max_delay, Queue::resume(size, written)),
                opts,
                files,
                writer: Mutex::new(Writer::new(frontier, 0)),
                syncer: Mutex::new(Syncer {
                    slot_seq: slot.seq,
                    derived_size: size,
                    derived_offset: 0,
                    durable_end: 0,
                    pruned_below: slot.pruned_below,
                    v1_slot: false,
                }),
                head: RwLock::new(Head {
                    checkpoint,
                    note: slot.note.into(),
                }),
                pruned_below: AtomicU64::new(slot.pruned_below),
                maintenance: Mutex::new(()),
                read_only: true,
                _lock: Box::new(()),
            }),
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
        let mut q = inner.commits.lock();
        if let Some(e) = inner.commits.damage_error(&q) {
            return Err(e);
        }
        if q.poisoned().is_none() {
            return Ok(());
        }
        if q.busy() {
            return Err(LedgerError::Poisoned(
                "a write or sync of the failed commit is still running; try again".into(),
            ));
        }
        let (w, s, head, queue) = resume_signed(&inner.files, &inner.verifier)?;
        inner
            .pruned_below
            .store(s.pruned_below, std::sync::atomic::Ordering::Release);
        *writer = w;
        *syncer = s;
        *inner.head.write().unwrap_or_else(|e| e.into_inner()) = head;
        *q = queue;
        Ok(())
    }
}

/// How many times a read-only open lists the log's files when a listed
/// one is deleted before it is opened.
pub const READ_ONLY_OPEN_ATTEMPTS: u32 = 5;

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

/// Delete files a crash left half written (they never got their names).
fn remove_temporaries(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let mut removed = false;
    for name in storage.list_files(dir).ctx("list", dir)? {
        if (name.starts_with(SEGMENT_PREFIX) || name.starts_with(PACK_PREFIX)) && name.ends_with(TEMP_SUFFIX) {
            let path = dir.join(&name);
            storage.remove_file(&path).ctx("delete", &path)?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(dir).ctx("sync directory", dir)?;
    }
    Ok(())
}

/// Open the log's files with `open` and check their headers.
fn open_files(
    storage: Arc<dyn Storage>,
    dir: &Path,
    open: &dyn Fn(&Path) -> std::io::Result<Arc<dyn StorageFile>>,
) -> Result<Files> {
    let open_one = |name: &str| -> Result<Arc<dyn StorageFile>> {
        let path = dir.join(name);
        open(&path).ctx("open", &path)
    };
    let entries = Segments::load(&*storage, dir, open)?;
    let files = Files {
        dir: dir.to_path_buf(),
        entries: RwLock::new(std::sync::Arc::new(entries)),
        index: open_one(INDEX_FILE)?,
        hashes: open_one(HASHES_FILE)?,
        checkpoint: open_one(CHECKPOINT_FILE)?,
        storage,
    };
    for (f, name, magic) in [
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
fn resume_signed(files: &Files, verifier: &Verifier) -> Result<(Writer, Syncer, Head, Queue<Inner>)> {
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
    let packed = packed_end(&files.segments().packs, slot.pruned_below);
    remove_pruned_segments(files, slot.pruned_below.max(packed.min(rec.derived_size)))?;
    remove_pruned_packs(files, slot.pruned_below)?;
    let writer = Writer::new(rec.frontier, rec.entries_end);
    let syncer = Syncer {
        slot_seq: slot.seq,
        derived_size: rec.derived_size,
        derived_offset: rec.derived_offset,
        durable_end: rec.entries_end,
        pruned_below: slot.pruned_below,
        v1_slot: slot_file_has_v1(files)?,
    };
    let written = Written {
        size: signed,
        root: checkpoint.root,
        entries_end: rec.entries_end,
    };
    let queue = Queue::resume(signed, written);
    let head = Head {
        checkpoint,
        note: slot.note.into(),
    };
    Ok((writer, syncer, head, queue))
}

/// Whether a slot of the checkpoint file is in version 1.
fn slot_file_has_v1(files: &Files) -> Result<bool> {
    let path = files.path(CHECKPOINT_FILE);
    let len = files.checkpoint.len().ctx("stat", &path)?.min(2 * SLOT_LEN as u64);
    let mut bytes = vec![0u8; len as usize];
    files.checkpoint.read_exact_at(&mut bytes, 0).ctx("read", &path)?;
    Ok(format::has_v1_slot(&bytes))
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
    let segments = files.segments().clone();
    let entries_len = segments
        .end()
        .ctx("stat", &segments.dir.join(&segments.active().name))?;
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
        || size < slot.pruned_below
    {
        (size, offset) = (0, HEADER_LEN);
        // Rebuild from the first entry still in a segment: entries below
        // are pruned or packed, and their hashes must be intact.
        let packed = packed_end(&segments.packs, slot.pruned_below);
        let pruned = [slot.pruned_below, packed]
            .into_iter()
            .find(|c| segments.list.iter().any(|s| s.first == *c))
            .unwrap_or(packed);
        if pruned > 0 {
            // Entries below the boundary are gone: the derived files must
            // hold them, which prune made sure of before it deleted any.
            if pruned > signed
                || index_len < HEADER_LEN + pruned * 8
                || hashes_len < HEADER_LEN + stored_count(pruned) * 32
            {
                return Err(corrupt(
                    dir,
                    HASHES_FILE,
                    format!(
                        "the index or hashes file ends before entry {pruned}, below which entries are pruned \
                         or packed: they cannot be rebuilt"
                    ),
                ));
            }
            // Prune and compaction leave a segment starting at exactly
            // the boundary; a compaction cut short, the index says.
            let mut start = segments.list.iter().find(|s| s.first == pruned).map(|s| s.start);
            if start.is_none() {
                let mut b = [0u8; 8];
                if files.index.read_exact_at(&mut b, HEADER_LEN + pruned * 8).is_ok() {
                    start = Some(u64::from_be_bytes(b));
                }
            }
            let Some(start) = start else {
                return Err(corrupt(
                    dir,
                    ENTRIES_FILE,
                    format!("no entries file starts at entry {pruned}, below which entries are pruned or packed"),
                ));
            };
            (size, offset) = (pruned, start);
        }
    }
    let (trusted_size, trusted_offset) = (size, offset);
    let _ = &entries_path;
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
            segments.read_at(&mut chunk, offset)?;
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
    cut_entries(files, &segments, signed, offset)?;
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

/// Cut the entries to end at log offset `end`, after entry `signed`:
/// delete segments a prune started past it (never covered by a signed
/// checkpoint), and cut the tail of the one holding it.
fn cut_entries(files: &Files, segments: &Segments, signed: u64, end: u64) -> Result<()> {
    let storage = &*files.storage;
    let mut keep = segments.clone();
    let beyond: Vec<_> = keep
        .list
        .iter()
        .filter(|s| s.first > signed && s.first > 0)
        .cloned()
        .collect();
    if !beyond.is_empty() {
        for s in &beyond {
            let path = files.path(&s.name);
            storage.remove_file(&path).ctx("delete", &path)?;
        }
        storage.sync_dir(&files.dir).ctx("sync directory", &files.dir)?;
        keep.list.retain(|s| s.first <= signed || s.first == 0);
    }
    let last = keep.active();
    let path = files.path(&last.name);
    let len = last.len().ctx("stat", &path)?;
    if end < last.start {
        return Err(missing(&files.dir, signed, end, signed));
    }
    if len > last.pos(end) {
        last.file.set_len(last.pos(end)).ctx("truncate", &path)?;
        last.file.sync_data().ctx("fdatasync", &path)?;
    }
    *files.entries.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(keep);
    Ok(())
}

/// Delete the packs every entry of which is below `pruned_below`, or whose
/// rest a later pack starting at or below it holds: a prune recorded the
/// boundary but did not get to delete them.
fn remove_pruned_packs(files: &Files, pruned_below: u64) -> Result<()> {
    if pruned_below == 0 {
        return Ok(());
    }
    let mut store_guard = files.entries.write().unwrap_or_else(|e| e.into_inner());
    let store = std::sync::Arc::make_mut(&mut store_guard);
    let packs = &store.packs;
    let gone: Vec<String> = packs
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            p.end() <= pruned_below
                || packs
                    .get(i + 1)
                    .is_some_and(|n| n.first <= pruned_below && n.end() >= p.end())
        })
        .map(|(_, p)| p.name.clone())
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    for name in &gone {
        let path = files.path(name);
        files.storage.remove_file(&path).ctx("delete", &path)?;
    }
    files.storage.sync_dir(&files.dir).ctx("sync directory", &files.dir)?;
    store.packs.retain(|p| !gone.contains(&p.name));
    Ok(())
}

/// Delete the segments every entry of which is below `below`: a prune or
/// a compaction recorded that open never needs them but did not get to
/// delete them.
fn remove_pruned_segments(files: &Files, pruned_below: u64) -> Result<()> {
    if pruned_below == 0 {
        return Ok(());
    }
    let mut segments_guard = files.entries.write().unwrap_or_else(|e| e.into_inner());
    let segments = std::sync::Arc::make_mut(&mut segments_guard);
    let list = &segments.list;
    let gone: Vec<usize> = (0..list.len().saturating_sub(1))
        .filter(|&i| list[i + 1].first <= pruned_below)
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    for &i in &gone {
        let path = files.path(&list[i].name);
        files.storage.remove_file(&path).ctx("delete", &path)?;
    }
    files.storage.sync_dir(&files.dir).ctx("sync directory", &files.dir)?;
    let mut i = 0;
    segments.list.retain(|_| {
        i += 1;
        !gone.contains(&(i - 1))
    });
    Ok(())
}
