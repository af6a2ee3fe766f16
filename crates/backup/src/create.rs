//! Taking a backup: the metadata database through SQLite's online backup
//! first; then every log copied consistently beside its writer (its
//! checkpoint file read first, then each file up to its length at that
//! moment); then the metadata database's PII key store taken again into
//! the copy; then every other file of the data directory whole (the order
//! is the contract of docs/backup.md). New bytes become objects, then the
//! manifest is replaced in one rename, then objects it no longer names are
//! removed.
//!
//! Incremental: against the manifest already in the destination, an
//! immutable file of the same length is not read; an append-only file is
//! read up to the earlier backup's length and, when that prefix still has
//! the SHA-256 the earlier backup recorded, only what follows is copied as
//! one new chunk; otherwise (a tail cut by recovery and written again) the
//! whole file is copied anew. An object of the destination is used again
//! only once read back with its SHA-256, once per run.
//!
//! All reads of the data directory and all writes of the backup go through
//! [`Storage`], so crash tests cut the power at every sync point.

use crate::manifest::{hex, Chunk, Digest32, FileRecord, Kind, LogRecord, Manifest};
use crate::{BackupError, IoContext, INDEX_DIR, LOCK_FILE, MANIFEST_FILE, META_FILE, OBJECTS_DIR};
use sealtrail_ledger::log::snapshot::{self, FileKind};
use sealtrail_ledger::storage::{OsStorage, Storage, StorageFile};
use sealtrail_ledger::{DataDir, LedgerError};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The data directory to back up.
#[derive(Clone)]
pub struct Source {
    pub storage: Arc<dyn Storage>,
    pub root: PathBuf,
}

impl Source {
    /// The data directory at `root` on the real file system.
    pub fn os(root: impl Into<PathBuf>) -> Source {
        Source {
            storage: Arc::new(OsStorage),
            root: root.into(),
        }
    }
}

/// Tuning of [`create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Bytes read and written at a time.
    pub block: usize,
    /// How often one log is started again when a file of it vanishes while
    /// it is copied (pruned meanwhile) before the backup gives up.
    pub log_attempts: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            block: 4 << 20,
            log_attempts: 5,
        }
    }
}

/// What a backup did.
#[derive(Debug, Clone, Default)]
pub struct CreateReport {
    /// The destination held an earlier backup this one built on.
    pub incremental: bool,
    /// Files in the new backup.
    pub files: usize,
    /// Files not read at all (immutable and already in the backup).
    pub files_skipped: usize,
    /// Bytes read from the data directory (copied or checked).
    pub bytes_read: u64,
    /// Bytes written into new objects.
    pub bytes_written: u64,
    /// Bytes of objects already in the destination read back to check
    /// their SHA-256 before they are used again.
    pub bytes_checked: u64,
    /// Objects already in the destination that were damaged (not of
    /// their name's SHA-256) and so were written again or left unused.
    pub objects_damaged: Vec<String>,
    /// Append-only files whose earlier prefix had changed, copied whole.
    pub prefix_changed: Vec<String>,
    /// Logs skipped because they were being created, with why.
    pub skipped_logs: Vec<String>,
    /// Objects of earlier backups removed because no file uses them now.
    pub objects_removed: usize,
    /// Each log's signed checkpoint in the backup.
    pub logs: Vec<LogRecord>,
}

/// Back up the data directory `source` into `dest` on `dest_storage`.
pub fn create(
    source: &Source,
    dest_storage: &dyn Storage,
    dest: &Path,
    opts: &CreateOptions,
) -> Result<CreateReport, BackupError> {
    let fresh = !dest_storage.exists(dest);
    dest_storage.create_dir_all(dest).ctx("create directory", dest)?;
    if !dest_storage.exists(&dest.join(MANIFEST_FILE)) {
        private_dir(dest_storage, dest)?;
    }
    if fresh {
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            dest_storage.sync_dir(parent).ctx("sync directory", parent)?;
        }
    }
    let lock_path = dest.join(LOCK_FILE);
    let _lock = dest_storage.lock(&lock_path).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock => BackupError::Refused(format!(
            "another backup is being written into {} now; try again when it is done",
            dest.display()
        )),
        _ => BackupError::Io {
            op: "lock",
            path: lock_path.clone(),
            source: e,
        },
    })?;
    let previous = read_previous(dest_storage, dest)?;
    let objects = dest.join(OBJECTS_DIR);
    dest_storage
        .create_dir_all(&objects)
        .ctx("create directory", &objects)?;
    let mut w = Writer {
        dest: dest_storage,
        root: dest.to_path_buf(),
        objects,
        seq: 0,
        block: opts.block.max(4096),
        buf: Vec::new(),
        report: CreateReport {
            incremental: previous.is_some(),
            ..CreateReport::default()
        },
        previous: previous.unwrap_or_default(),
        files: BTreeMap::new(),
        sound: HashSet::new(),
    };
    // The order is the consistency contract of docs/backup.md: meta.db
    // first, then each log's checkpoint, then meta.db's key store again.
    let meta = w.snapshot_meta(source)?;
    let data = DataDir::with_storage(source.root.clone(), source.storage.clone());
    let logs_dir = source.root.join("logs");
    for name in data.log_names()? {
        w.copy_log(source, &data.log_dir(&name), &name, opts.log_attempts)?;
    }
    if source.storage.exists(&logs_dir) {
        let names = data.log_names()?;
        for d in source.storage.list_dirs(&logs_dir).ctx("list", &logs_dir)? {
            if !names.contains(&d) {
                w.copy_tree(source, &format!("logs/{d}"), &[])?;
            }
        }
        for f in source.storage.list_files(&logs_dir).ctx("list", &logs_dir)? {
            w.copy_other(source, &format!("logs/{f}"))?;
        }
    }
    if let Some(meta) = meta {
        w.store_meta(meta)?;
    }
    // `server.running` says which process serves this directory: true
    // of the source only, and gone when that server stops.
    w.copy_tree(
        source,
        "",
        &[
            "logs",
            META_FILE,
            "meta.db-wal",
            "meta.db-shm",
            "meta.db-journal",
            "server.running",
            "server.running.tmp",
        ],
    )?;
    w.commit()
}

/// Owner-only: the backup holds the logs' private keys.
fn private_dir(storage: &dyn Storage, dir: &Path) -> Result<(), BackupError> {
    if let Some(real) = storage.real_path(dir) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).ctx("set permissions of", dir)?;
    }
    Ok(())
}

/// The manifest of the backup already in `dest`, if any; a destination
/// holding something else, or a damaged manifest, is refused.
fn read_previous(storage: &dyn Storage, dest: &Path) -> Result<Option<Manifest>, BackupError> {
    let path = dest.join(MANIFEST_FILE);
    if storage.exists(&path) {
        let bytes = storage.read(&path).ctx("read", &path)?;
        return Manifest::decode(&bytes).map(Some).map_err(|e| {
            BackupError::Refused(format!(
                "{} holds a backup whose manifest is damaged ({e}); back up into another directory",
                dest.display()
            ))
        });
    }
    let files = storage.list_files(dest).ctx("list", dest)?;
    let dirs = storage.list_dirs(dest).ctx("list", dest)?;
    let foreign: Vec<String> = files
        .into_iter()
        .filter(|f| f != LOCK_FILE && f != "MANIFEST.tmp")
        .chain(dirs.into_iter().filter(|d| d != OBJECTS_DIR))
        .collect();
    if !foreign.is_empty() {
        return Err(BackupError::Refused(format!(
            "{} is not empty and holds no backup (it has {}); back up into an empty or new directory",
            dest.display(),
            foreign.join(", ")
        )));
    }
    Ok(None)
}

struct Writer<'a> {
    dest: &'a dyn Storage,
    root: PathBuf,
    objects: PathBuf,
    seq: u64,
    block: usize,
    buf: Vec<u8>,
    report: CreateReport,
    previous: Manifest,
    files: BTreeMap<String, FileRecord>,
    /// Objects known in this run to hold their name's SHA-256: written by
    /// it, or read back and checked once.
    sound: HashSet<Digest32>,
}

fn is_not_found(e: &BackupError) -> bool {
    match e {
        BackupError::Io { source, .. } => source.kind() == ErrorKind::NotFound,
        BackupError::Ledger(LedgerError::Io { source, .. }) => source.kind() == ErrorKind::NotFound,
        _ => false,
    }
}

/// The permission bits of a source file; where the storage has no real
/// files, keys are owner-only and the rest readable.
fn mode_of(source: &Source, path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if let Some(real) = source.storage.real_path(path) {
        if let Ok(m) = std::fs::symlink_metadata(real) {
            return m.permissions().mode() & 0o7777;
        }
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("key") => 0o600,
        _ => 0o644,
    }
}

impl Writer<'_> {
    /// One log, started again when one of its files vanishes meanwhile.
    fn copy_log(&mut self, source: &Source, dir: &Path, name: &str, attempts: u32) -> Result<(), BackupError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let saved = self.files.clone();
            match self.copy_log_once(source, dir, name) {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) && attempt < attempts => {
                    tracing::info!("log {name}: a file vanished while it was copied ({e}); starting the log again");
                    self.files = saved;
                }
                Err(e) if is_not_found(&e) && !source.storage.exists(&dir.join("checkpoint")) => {
                    // A log being created: nothing of it was ever acknowledged.
                    self.files = saved;
                    self.report.skipped_logs.push(format!("{name}: {e}"));
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn copy_log_once(&mut self, source: &Source, dir: &Path, name: &str) -> Result<(), BackupError> {
        let prefix = format!("logs/{name}");
        // The checkpoint first: every file copied after it holds at least
        // what it covers.
        let cp = snapshot::read_checkpoint(&*source.storage, dir)?;
        // A log a crash left with derived files behind its checkpoint is
        // repaired by its writer's next open, not copied half-derived.
        match sealtrail_ledger::Log::open_read_only(source.storage.clone(), dir, name) {
            Err(LedgerError::NeedsRecovery { detail, .. }) => {
                return Err(BackupError::Refused(format!(
                    "log {name} needs recovery after a crash ({detail}): start the server (or run any \
                     command that writes to the log) once, then back up"
                )))
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let mut rel = Vec::new();
        list_tree(&*source.storage, dir, "", &[INDEX_DIR], &mut rel)?;
        for r in rel {
            let path = dir.join(&r);
            let full = format!("{prefix}/{r}");
            match snapshot::file_kind(&r) {
                FileKind::NotData => {}
                FileKind::Checkpoint => {
                    let mode = mode_of(source, &path);
                    self.put_whole(&full, mode, &cp.bytes)?;
                }
                FileKind::Immutable => self.copy_file(source, &path, &full, Kind::Immutable)?,
                FileKind::AppendOnly => self.copy_file(source, &path, &full, Kind::AppendOnly)?,
            }
        }
        self.report.logs.retain(|l| l.name != name);
        self.report.logs.push(LogRecord {
            name: name.to_string(),
            size: cp.checkpoint.size,
            root: cp.checkpoint.root,
        });
        Ok(())
    }

    /// The metadata database through SQLite's online backup, before any
    /// log: one read transaction, so one committed state, taken beside
    /// writers without stopping them. A row names a log's entries only once
    /// they are in the log, so every log copied after it covers what it
    /// names. Stored by [`Writer::store_meta`] after the logs.
    fn snapshot_meta(&mut self, source: &Source) -> Result<Option<MetaCopy>, BackupError> {
        let path = source.root.join(META_FILE);
        if !source.storage.exists(&path) {
            return Ok(None);
        }
        let Some(real) = source.storage.real_path(&path) else {
            // No SQLite beside simulated storage: the file as it is now.
            self.copy_other(source, META_FILE)?;
            return Ok(None);
        };
        // In `objects/`, where whatever a crash leaves is removed by the
        // next backup as an object no file uses.
        let tmp_dir = self.dest.real_path(&self.objects).unwrap_or_else(std::env::temp_dir);
        let copy = MetaCopy {
            tmp: tmp_dir.join(format!("tmp-{META_FILE}-{}", std::process::id())),
            source: real,
            mode: mode_of(source, &path),
        };
        let _ = std::fs::remove_file(&copy.tmp);
        sqlite_snapshot(&copy.source, &copy.tmp)?;
        Ok(Some(copy))
    }

    /// The copy of the metadata database with its key store taken again
    /// now, after every log's checkpoint, as one more object. A data key is
    /// committed before any entry sealed under it is appended, so every
    /// entry the logs' copies hold finds its key; and a key erased before
    /// now is in no byte of the backup.
    fn store_meta(&mut self, copy: MetaCopy) -> Result<(), BackupError> {
        refresh_key_store(&copy.source, &copy.tmp)?;
        let len = std::fs::metadata(&copy.tmp).ctx("stat", &copy.tmp)?.len();
        let file = OsStorage.open_read(&copy.tmp).ctx("open", &copy.tmp)?;
        self.report.bytes_read += len;
        let (chunk, sha) = self.put_stream(&*file, &copy.tmp, 0, len, Sha256::new())?;
        self.files.insert(
            META_FILE.to_string(),
            FileRecord {
                path: META_FILE.to_string(),
                kind: Kind::Whole,
                mode: copy.mode,
                len,
                sha256: sha,
                chunks: chunk.into_iter().collect(),
            },
        );
        Ok(())
    }

    /// Every file under `rel` (a directory of the data directory) whole,
    /// but the top-level names in `skip`.
    fn copy_tree(&mut self, source: &Source, rel: &str, skip: &[&str]) -> Result<(), BackupError> {
        let dir = if rel.is_empty() {
            source.root.clone()
        } else {
            source.root.join(rel)
        };
        let mut found = Vec::new();
        list_tree(&*source.storage, &dir, "", skip, &mut found)?;
        for f in found {
            let full = if rel.is_empty() { f } else { format!("{rel}/{f}") };
            self.copy_other(source, &full)?;
        }
        Ok(())
    }

    /// A file that is no part of a log: copied whole; one that vanished
    /// meanwhile (a temporary file renamed away) is left out.
    fn copy_other(&mut self, source: &Source, rel: &str) -> Result<(), BackupError> {
        let path = source.root.join(rel);
        match self.copy_file(source, &path, rel, Kind::Whole) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other,
        }
    }

    fn copy_file(&mut self, source: &Source, path: &Path, rel: &str, kind: Kind) -> Result<(), BackupError> {
        if !crate::manifest::valid_path(rel) {
            return Err(BackupError::Refused(format!(
                "{}: a name with a control character cannot be backed up",
                path.display()
            )));
        }
        let mode = mode_of(source, path);
        let file = source.storage.open_read(path).ctx("open", path)?;
        let len = file.len().ctx("stat", path)?;
        let prev = self.previous.file(rel).filter(|p| p.kind == kind).cloned();
        if let Some(p) = &prev {
            if kind == Kind::Immutable && p.len == len && self.has_chunks(p) {
                self.report.files_skipped += 1;
                self.files.insert(rel.to_string(), FileRecord { mode, ..p.clone() });
                return Ok(());
            }
        }
        if let Some(p) = prev.as_ref().filter(|p| kind == Kind::Whole && p.len == len) {
            // Read first: an unchanged file costs a read, not a write.
            let mut h = Sha256::new();
            self.hash_range(&*file, path, 0, len, &mut h)?;
            if h.finalize().as_slice() == p.sha256 && self.has_chunks(p) {
                self.files.insert(rel.to_string(), FileRecord { mode, ..p.clone() });
                return Ok(());
            }
        }
        let mut hasher = Sha256::new();
        let mut chunks = Vec::new();
        let mut from = 0;
        if let Some(p) = prev.filter(|p| kind == Kind::AppendOnly && p.len <= len && self.has_chunks(p)) {
            self.hash_range(&*file, path, 0, p.len, &mut hasher)?;
            if hasher.clone().finalize().as_slice() == p.sha256 {
                chunks = p.chunks.clone();
                from = p.len;
            } else {
                self.report.prefix_changed.push(rel.to_string());
                hasher = Sha256::new();
            }
        }
        self.report.bytes_read += len - from;
        let (chunk, sha) = self.put_stream(&*file, path, from, len, hasher)?;
        chunks.extend(chunk);
        self.files.insert(
            rel.to_string(),
            FileRecord {
                path: rel.to_string(),
                kind,
                mode,
                len,
                sha256: sha,
                chunks,
            },
        );
        Ok(())
    }

    /// Whether every object of an earlier file is still in the backup,
    /// intact.
    fn has_chunks(&mut self, f: &FileRecord) -> bool {
        f.chunks.iter().all(|c| self.object_ok(&c.sha256, c.len))
    }

    /// Whether the object named `sha` is in the backup with exactly the
    /// bytes of that name. Its length alone would not do: bytes damaged
    /// in place, or a file cut and written again to the same length, would
    /// be named by the new manifest unseen. So each object is read back and
    /// hashed, once per run; a damaged one counts as absent (written again
    /// under its name, or left for removal).
    fn object_ok(&mut self, sha: &Digest32, len: u64) -> bool {
        if self.sound.contains(sha) {
            return true;
        }
        let path = self.objects.join(hex(sha));
        let Ok(file) = self.dest.open_read(&path) else {
            return false;
        };
        if !file.len().is_ok_and(|l| l == len) {
            self.damaged(sha);
            return false;
        }
        let mut h = Sha256::new();
        let mut at = 0;
        while at < len {
            let n = (len - at).min(self.block as u64) as usize;
            self.buf.resize(n, 0);
            if file.read_exact_at(&mut self.buf, at).is_err() {
                self.damaged(sha);
                return false;
            }
            self.report.bytes_checked += n as u64;
            h.update(&self.buf);
            at += n as u64;
        }
        if h.finalize().as_slice() != sha {
            self.damaged(sha);
            return false;
        }
        self.sound.insert(*sha);
        true
    }

    fn damaged(&mut self, sha: &Digest32) {
        let name = hex(sha);
        if !self.report.objects_damaged.contains(&name) {
            tracing::warn!("object {name} in the backup is damaged: not used again");
            self.report.objects_damaged.push(name);
        }
    }

    fn hash_range(
        &mut self,
        file: &dyn StorageFile,
        path: &Path,
        from: u64,
        to: u64,
        hasher: &mut Sha256,
    ) -> Result<(), BackupError> {
        let mut at = from;
        while at < to {
            let n = (to - at).min(self.block as u64) as usize;
            self.buf.resize(n, 0);
            file.read_exact_at(&mut self.buf, at).ctx("read", path)?;
            hasher.update(&self.buf);
            at += n as u64;
        }
        self.report.bytes_read += to - from;
        Ok(())
    }

    /// A file held in memory, as one object.
    fn put_whole(&mut self, rel: &str, mode: u32, bytes: &[u8]) -> Result<(), BackupError> {
        let sha: Digest32 = Sha256::digest(bytes).into();
        let chunk = if bytes.is_empty() {
            None
        } else {
            if !self.object_ok(&sha, bytes.len() as u64) {
                let tmp = self.tmp_name();
                let f = self.dest.open(&tmp, true).ctx("create", &tmp)?;
                f.set_len(0).ctx("truncate", &tmp)?;
                f.write_all_at(bytes, 0).ctx("write", &tmp)?;
                f.sync_data().ctx("fdatasync", &tmp)?;
                self.publish(&tmp, &sha)?;
                self.report.bytes_written += bytes.len() as u64;
            }
            Some(Chunk {
                len: bytes.len() as u64,
                sha256: sha,
            })
        };
        self.report.bytes_read += bytes.len() as u64;
        self.files.insert(
            rel.to_string(),
            FileRecord {
                path: rel.to_string(),
                kind: Kind::Whole,
                mode,
                len: bytes.len() as u64,
                sha256: sha,
                chunks: chunk.into_iter().collect(),
            },
        );
        Ok(())
    }

    /// Bytes [from, to) of `file` as one new object (none when empty);
    /// `whole` has hashed the file's bytes before `from` and gives the
    /// whole file's SHA-256.
    fn put_stream(
        &mut self,
        file: &dyn StorageFile,
        path: &Path,
        from: u64,
        to: u64,
        mut whole: Sha256,
    ) -> Result<(Option<Chunk>, Digest32), BackupError> {
        if from == to {
            return Ok((None, whole.finalize().into()));
        }
        let tmp = self.tmp_name();
        let out = self.dest.open(&tmp, true).ctx("create", &tmp)?;
        out.set_len(0).ctx("truncate", &tmp)?;
        let mut piece = Sha256::new();
        let mut at = from;
        while at < to {
            let n = (to - at).min(self.block as u64) as usize;
            self.buf.resize(n, 0);
            file.read_exact_at(&mut self.buf, at).ctx("read", path)?;
            if from != 0 {
                whole.update(&self.buf);
            }
            piece.update(&self.buf);
            out.write_all_at(&self.buf, at - from).ctx("write", &tmp)?;
            at += n as u64;
        }
        out.sync_data().ctx("fdatasync", &tmp)?;
        drop(out);
        let sha: Digest32 = piece.finalize().into();
        // From the start of the file, the piece is the whole file.
        let whole_sha = if from == 0 { sha } else { whole.finalize().into() };
        if self.object_ok(&sha, to - from) {
            self.dest.remove_file(&tmp).ctx("remove", &tmp)?;
        } else {
            self.publish(&tmp, &sha)?;
            self.report.bytes_written += to - from;
        }
        Ok((
            Some(Chunk {
                len: to - from,
                sha256: sha,
            }),
            whole_sha,
        ))
    }

    fn tmp_name(&mut self) -> PathBuf {
        self.seq += 1;
        self.objects.join(format!("tmp-{}-{}", std::process::id(), self.seq))
    }

    fn publish(&mut self, tmp: &Path, sha: &Digest32) -> Result<(), BackupError> {
        let to = self.objects.join(hex(sha));
        self.dest.rename(tmp, &to).ctx("rename", tmp)?;
        self.sound.insert(*sha);
        Ok(())
    }

    /// Make the objects durable, replace the manifest, then remove what it
    /// no longer names.
    fn commit(mut self) -> Result<CreateReport, BackupError> {
        self.dest.sync_dir(&self.objects).ctx("sync directory", &self.objects)?;
        let manifest = Manifest {
            created: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            logs: {
                let mut l = std::mem::take(&mut self.report.logs);
                l.sort_by(|a, b| a.name.cmp(&b.name));
                l
            },
            files: std::mem::take(&mut self.files).into_values().collect(),
        };
        let bytes = manifest.encode();
        let tmp = self.root.join("MANIFEST.tmp");
        let f = self.dest.open(&tmp, true).ctx("create", &tmp)?;
        f.set_len(0).ctx("truncate", &tmp)?;
        f.write_all_at(&bytes, 0).ctx("write", &tmp)?;
        f.sync_data().ctx("fdatasync", &tmp)?;
        drop(f);
        let path = self.root.join(MANIFEST_FILE);
        self.dest.rename(&tmp, &path).ctx("rename", &tmp)?;
        self.dest.sync_dir(&self.root).ctx("sync directory", &self.root)?;

        let used: std::collections::HashSet<String> = manifest
            .files
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| hex(&c.sha256)))
            .collect();
        let mut removed = 0;
        for name in self.dest.list_files(&self.objects).ctx("list", &self.objects)? {
            if !used.contains(&name) {
                let p = self.objects.join(&name);
                self.dest.remove_file(&p).ctx("remove", &p)?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.dest.sync_dir(&self.objects).ctx("sync directory", &self.objects)?;
        }
        let mut report = self.report;
        report.objects_removed = removed;
        report.files = manifest.files.len();
        report.logs = manifest.logs;
        Ok(report)
    }
}

/// Files under `dir` (recursively), relative to it, `/`-separated, sorted;
/// top-level names in `skip` left out.
fn list_tree(
    storage: &dyn Storage,
    dir: &Path,
    rel: &str,
    skip: &[&str],
    out: &mut Vec<String>,
) -> Result<(), BackupError> {
    let here = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    };
    let join = |n: &str| {
        if rel.is_empty() {
            n.to_string()
        } else {
            format!("{rel}/{n}")
        }
    };
    for f in storage.list_files(&here).ctx("list", &here)? {
        if !(rel.is_empty() && skip.contains(&f.as_str())) {
            out.push(join(&f));
        }
    }
    for d in storage.list_dirs(&here).ctx("list", &here)? {
        if !(rel.is_empty() && skip.contains(&d.as_str())) {
            list_tree(storage, dir, &join(&d), &[], out)?;
        }
    }
    Ok(())
}

/// The metadata database's copy while a backup is taken: removed however
/// the backup ends.
struct MetaCopy {
    tmp: PathBuf,
    source: PathBuf,
    mode: u32,
}

impl Drop for MetaCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// The tables of the PII key store: the data keys and the vault (the
/// wrapped HMAC key and the generation) they go with.
const KEY_STORE: [&str; 2] = ["pii_keys", "pii_vault"];

/// Replace the key store's tables in the copy `to` by their committed
/// state in the live database `from` now, both read in one transaction.
/// Deleted rows are overwritten (`secure_delete`) and the rollback journal
/// stays in memory, so an erased key leaves no byte in the copy.
fn refresh_key_store(from: &Path, to: &Path) -> Result<(), BackupError> {
    use rusqlite::{Connection, OpenFlags};
    let err = |e: rusqlite::Error| BackupError::Sqlite {
        path: from.to_path_buf(),
        detail: format!("key store: {e}"),
    };
    let mut dst = Connection::open_with_flags(
        to,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    dst.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
    dst.execute_batch("PRAGMA secure_delete = ON; PRAGMA journal_mode = MEMORY;")
        .map_err(err)?;
    dst.execute("ATTACH DATABASE ?1 AS live", [crate::sqlite_uri(from, "?mode=ro")])
        .map_err(err)?;
    let tx = dst.transaction().map_err(err)?;
    for table in KEY_STORE {
        let schema = |db: &str| -> rusqlite::Result<Option<String>> {
            use rusqlite::OptionalExtension;
            tx.query_row(
                &format!("SELECT sql FROM {db}.sqlite_master WHERE type = 'table' AND name = ?1"),
                [table],
                |r| r.get(0),
            )
            .optional()
        };
        let Some(live) = schema("live").map_err(err)? else {
            continue;
        };
        if schema("main").map_err(err)?.is_none() {
            // Created after the copy was taken.
            tx.execute_batch(&live).map_err(err)?;
        }
        // Unchanged, the copy is left as it is (and keeps its bytes, so an
        // incremental backup writes no new object for it).
        let changed: bool = tx
            .query_row(
                &format!(
                    "SELECT EXISTS (SELECT * FROM main.{table} EXCEPT SELECT * FROM live.{table}) \
                     OR EXISTS (SELECT * FROM live.{table} EXCEPT SELECT * FROM main.{table})"
                ),
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if changed {
            tx.execute_batch(&format!(
                "DELETE FROM main.{table}; INSERT INTO main.{table} SELECT * FROM live.{table};"
            ))
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    dst.execute_batch("DETACH DATABASE live; PRAGMA journal_mode = DELETE;")
        .map_err(err)?;
    drop(dst);
    let f = std::fs::File::open(to).ctx("open", to)?;
    f.sync_all().ctx("fsync", to)?;
    Ok(())
}

/// One committed state of the SQLite database at `from`, written to `to`.
fn sqlite_snapshot(from: &Path, to: &Path) -> Result<(), BackupError> {
    use rusqlite::{backup::Backup, Connection, OpenFlags};
    let err = |e: rusqlite::Error| BackupError::Sqlite {
        path: from.to_path_buf(),
        detail: format!("online backup: {e}"),
    };
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    src.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
    let mut dst = Connection::open(to).map_err(err)?;
    {
        let backup = Backup::new(&src, &mut dst).map_err(err)?;
        // All pages in one step: one read transaction, one state.
        backup.step(-1).map_err(err)?;
    }
    dst.execute_batch("PRAGMA journal_mode = DELETE;").map_err(err)?;
    drop(dst);
    let f = std::fs::File::open(to).ctx("open", to)?;
    f.sync_all().ctx("fsync", to)?;
    Ok(())
}
