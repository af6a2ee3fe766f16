//! Restoring a backup into a new data directory: everything is written to
//! a staging directory beside the target, each chunk checked against its
//! SHA-256 as it is copied, each log verified by the ledger's verifier and
//! opened (which drops entries past its checkpoint), the metadata database
//! checked by SQLite, and only then is the staging directory renamed to the
//! target. Nothing can serve a restored directory before all of it passed.
//!
//! Deliberately refused: a target that holds anything (a restore never
//! merges into or replaces a data directory).

use crate::manifest::{hex, LogRecord, Manifest};
use crate::view::BackupView;
use crate::{verify::integrity_check, BackupError, IoContext, MANIFEST_FILE, META_FILE, OBJECTS_DIR};
use sealtrail_ledger::storage::{OsStorage, Storage};
use sealtrail_ledger::{DataDir, LogOptions};
use sha2::{Digest, Sha256};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub files: usize,
    pub bytes: u64,
    /// The logs restored, each at the checkpoint the backup holds.
    pub logs: Vec<LogRecord>,
}

/// Restore the backup in `src` into the data directory `target`, which must
/// be missing or an empty directory.
pub fn restore(src: &Path, target: &Path) -> Result<RestoreReport, BackupError> {
    restore_with(&OsStorage, src, Arc::new(OsStorage), target)
}

/// [`restore`] reading the backup through `backup` and writing the data
/// directory through `storage`: every write and sync of a restore goes
/// through it, so crash tests cut the power at each of them.
pub fn restore_with(
    backup: &dyn Storage,
    src: &Path,
    storage: Arc<dyn Storage>,
    target: &Path,
) -> Result<RestoreReport, BackupError> {
    if storage.exists(target) {
        match storage.list_files(target) {
            Ok(files) => {
                if !files.is_empty() || !storage.list_dirs(target).ctx("list", target)?.is_empty() {
                    return Err(BackupError::NotEmpty(target.to_path_buf()));
                }
            }
            // A file in the directory's place.
            Err(e) if matches!(e.kind(), ErrorKind::NotADirectory | ErrorKind::NotFound) => {
                return Err(BackupError::NotEmpty(target.to_path_buf()))
            }
            Err(e) => return Err(e).ctx("read directory", target),
        }
    }
    let manifest_path = src.join(MANIFEST_FILE);
    let bytes = backup.read(&manifest_path).ctx("read", &manifest_path)?;
    let manifest = Manifest::decode(&bytes)?;
    let name = target
        .file_name()
        .ok_or_else(|| BackupError::Refused(format!("{}: not a directory name", target.display())))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    storage.create_dir_all(&parent).ctx("create directory", &parent)?;
    let prefix = format!(".{}.restoring-", name.to_string_lossy());
    remove_abandoned(&*storage, &parent, &prefix)?;
    let staging = parent.join(format!("{prefix}{}", std::process::id()));
    // Held for the whole restore: a staging directory whose lock nobody
    // holds was left by a restore that died, and the next one removes it.
    let lock_path = lock_path_of(&staging);
    let _restoring = storage.lock(&lock_path).ctx("lock", &lock_path)?;
    if storage.exists(&staging) {
        storage.remove_dir_all(&staging).ctx("remove", &staging)?;
    }
    storage.create_dir_all(&staging).ctx("create directory", &staging)?;
    set_mode(&*storage, &staging, 0o700)?;
    let result = fill_and_check(backup, src, &manifest, &storage, &staging).and_then(|report| {
        // Every file and directory of the staging directory is durable:
        // the rename publishes all of it or, lost in a crash, none.
        storage.rename(&staging, target).ctx("rename", &staging)?;
        storage.sync_dir(&parent).ctx("sync directory", &parent)?;
        Ok(report)
    });
    if result.is_err() && storage.exists(&staging) {
        let _ = storage.remove_dir_all(&staging);
    }
    let _ = storage.remove_file(&lock_path);
    result
}

/// The lock file beside a staging directory.
fn lock_path_of(staging: &Path) -> PathBuf {
    let mut name = staging.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Remove the staging directories of restores of the same target that
/// died (killed, or the machine stopped) before they finished: those
/// whose lock nobody holds. A restore still running holds its lock and
/// its directory is left alone.
fn remove_abandoned(storage: &dyn Storage, parent: &Path, prefix: &str) -> Result<(), BackupError> {
    for dir in storage.list_dirs(parent).ctx("list", parent)? {
        if !dir.starts_with(prefix) {
            continue;
        }
        let staging = parent.join(&dir);
        let lock_path = lock_path_of(&staging);
        let Ok(_lock) = storage.lock(&lock_path) else {
            continue;
        };
        tracing::warn!(dir = %staging.display(), "removing the staging directory of a restore that did not finish");
        storage.remove_dir_all(&staging).ctx("remove", &staging)?;
        match storage.remove_file(&lock_path) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e).ctx("remove", &lock_path),
            _ => {}
        }
    }
    Ok(())
}

/// Permission bits where the storage has real files.
fn set_mode(storage: &dyn Storage, path: &Path, mode: u32) -> Result<(), BackupError> {
    if let Some(real) = storage.real_path(path) {
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode)).ctx("set permissions of", path)?;
    }
    Ok(())
}

fn damaged(file: &str, detail: String) -> BackupError {
    BackupError::Damaged {
        file: file.to_string(),
        detail,
    }
}

fn fill_and_check(
    backup: &dyn Storage,
    src: &Path,
    manifest: &Manifest,
    storage: &Arc<dyn Storage>,
    staging: &Path,
) -> Result<RestoreReport, BackupError> {
    // The ledger's verifier reads the logs in the backup while the files
    // are copied (two passes over the same bytes at once). The copy checks
    // every chunk against the SHA-256 the verified bytes have, so what is
    // verified is what is written.
    let (copied, verified) = std::thread::scope(|s| {
        let checker = s.spawn(|| verify_logs(backup, src, manifest));
        let copied = copy_files(backup, src, manifest, &**storage, staging);
        (copied, checker.join())
    });
    let (mut report, dirs) = copied?;
    verified.map_err(|_| BackupError::Refused("the verification of the logs panicked".into()))??;

    let data = DataDir::with_storage(staging, storage.clone());
    for log in &manifest.logs {
        let prefix = format!("logs/{}/", log.name);
        let dir = data.log_dir(&log.name);
        // Open as a writer: drops what no checkpoint covers, as a server
        // would, and proves the log opens before anything serves it.
        let opened = data
            .open_log(&log.name, LogOptions::default())
            .map_err(|e| damaged(&format!("{prefix}entries"), e.to_string()))?;
        if opened.size() != log.size {
            return Err(damaged(
                &format!("{prefix}checkpoint"),
                format!("opens at size {}, the manifest records {}", opened.size(), log.size),
            ));
        }
        drop(opened);
        let lock = dir.join(sealtrail_ledger::log::LOCK_FILE);
        if storage.exists(&lock) {
            storage.remove_file(&lock).ctx("remove", &lock)?;
        }
        for name in [
            sealtrail_ledger::log::ENTRIES_FILE,
            sealtrail_ledger::log::INDEX_FILE,
            sealtrail_ledger::log::HASHES_FILE,
        ] {
            let p = dir.join(name);
            if storage.exists(&p) {
                storage.open(&p, false).and_then(|f| f.sync_data()).ctx("fsync", &p)?;
            }
        }
        report.logs.push(log.clone());
    }
    if manifest.file(META_FILE).is_some() {
        let path = staging.join(META_FILE);
        // Only real files can be opened by SQLite.
        if let Some(real) = storage.real_path(&path) {
            integrity_check(&real, true).map_err(|e| damaged(META_FILE, format!("SQLite integrity check: {e}")))?;
        }
    }
    for d in dirs.iter().rev() {
        storage.sync_dir(d).ctx("sync directory", d)?;
    }
    Ok(report)
}

/// Every log of the backup, read in place by the ledger's verifier, must
/// hold exactly the checkpoint the manifest records.
fn verify_logs(backup: &dyn Storage, src: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let view = BackupView {
        storage: backup,
        root: src.to_path_buf(),
        manifest,
    };
    for log in &manifest.logs {
        let prefix = format!("logs/{}/", log.name);
        let dir = src.join("logs").join(&log.name);
        let r = sealtrail_ledger::verify::verify_log(&view, &dir, None, None)
            .map_err(|e| damaged(&format!("logs/{}", log.name), e.to_string()))?;
        if let Some(f) = r.findings.first() {
            return Err(damaged(&format!("{prefix}{}", f.file), f.to_string()));
        }
        match &r.checkpoint {
            Some(cp) if cp.size == log.size && cp.root == log.root => {}
            _ => {
                return Err(damaged(
                    &format!("{prefix}checkpoint"),
                    format!(
                        "does not hold the checkpoint the manifest records (size {}, root {})",
                        log.size,
                        hex(&log.root)
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Every file into `staging`, each chunk checked, each file synced; the
/// directories made (to be synced once the logs are opened).
fn copy_files(
    backup: &dyn Storage,
    src: &Path,
    manifest: &Manifest,
    storage: &dyn Storage,
    staging: &Path,
) -> Result<(RestoreReport, Vec<PathBuf>), BackupError> {
    let mut report = RestoreReport::default();
    let mut dirs = vec![staging.to_path_buf()];
    let mut buf = vec![0u8; 4 << 20];
    for f in &manifest.files {
        let path = staging.join(&f.path);
        if let Some(dir) = path.parent() {
            if !dirs.iter().any(|d| d == dir) {
                storage.create_dir_all(dir).ctx("create directory", dir)?;
                let mut d = dir.to_path_buf();
                while d != staging && !dirs.contains(&d) {
                    dirs.push(d.clone());
                    if !d.pop() {
                        break;
                    }
                }
            }
        }
        if storage.exists(&path) {
            return Err(damaged(&f.path, "named twice in the manifest".into()));
        }
        let out = storage.open(&path, true).ctx("create", &path)?;
        // Its bits before its bytes, so the sync below covers both; the
        // staging directory is owner-only meanwhile.
        set_mode(storage, &path, f.mode)?;
        let mut whole = Sha256::new();
        let mut start = 0u64;
        for (k, c) in f.chunks.iter().enumerate() {
            let name = format!("{OBJECTS_DIR}/{}", hex(&c.sha256));
            let at = format!("chunk {k} (bytes {start}..{}, object {name})", start + c.len);
            let obj_path = src.join(&name);
            let obj = backup
                .open_read(&obj_path)
                .map_err(|e| damaged(&f.path, format!("{at} cannot be opened: {e}")))?;
            let len = obj.len().ctx("stat", &obj_path)?;
            if len != c.len {
                return Err(damaged(&f.path, format!("{at} is {len} bytes long")));
            }
            let mut piece = Sha256::new();
            let mut off = 0u64;
            while off < c.len {
                let n = ((c.len - off) as usize).min(buf.len());
                obj.read_exact_at(&mut buf[..n], off)
                    .map_err(|e| damaged(&f.path, format!("{at}: {e}")))?;
                piece.update(&buf[..n]);
                whole.update(&buf[..n]);
                out.write_all_at(&buf[..n], start + off).ctx("write", &path)?;
                off += n as u64;
            }
            if piece.finalize().as_slice() != c.sha256 {
                return Err(damaged(
                    &f.path,
                    format!("{at} does not have its SHA-256: its bytes were changed"),
                ));
            }
            start += c.len;
        }
        if whole.finalize().as_slice() != f.sha256 {
            return Err(damaged(
                &f.path,
                "the file's SHA-256 does not match the manifest".into(),
            ));
        }
        out.sync_data().ctx("fsync", &path)?;
        report.files += 1;
        report.bytes += f.len;
    }

    Ok((report, dirs))
}
