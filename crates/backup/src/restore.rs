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
use sealtrail_ledger::storage::OsStorage;
use sealtrail_ledger::{DataDir, LogOptions};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(target.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(BackupError::NotEmpty(target.to_path_buf()))
        }
        Err(e) => return Err(e).ctx("read directory", target),
    }
    let manifest_path = src.join(MANIFEST_FILE);
    let bytes = fs::read(&manifest_path).ctx("read", &manifest_path)?;
    let manifest = Manifest::decode(&bytes)?;
    let name = target
        .file_name()
        .ok_or_else(|| BackupError::Refused(format!("{}: not a directory name", target.display())))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).ctx("create directory", &parent)?;
    let staging = parent.join(format!(".{}.restoring-{}", name.to_string_lossy(), std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).ctx("remove", &staging)?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .ctx("create directory", &staging)?;
    let result = fill_and_check(src, &manifest, &staging).and_then(|report| {
        fs::rename(&staging, target).ctx("rename", &staging)?;
        File::open(&parent)
            .and_then(|d| d.sync_all())
            .ctx("sync directory", &parent)?;
        Ok(report)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn damaged(file: &str, detail: String) -> BackupError {
    BackupError::Damaged {
        file: file.to_string(),
        detail,
    }
}

fn fill_and_check(src: &Path, manifest: &Manifest, staging: &Path) -> Result<RestoreReport, BackupError> {
    // The ledger's verifier reads the logs in the backup while the files
    // are copied (two passes over the same bytes at once). The copy checks
    // every chunk against the SHA-256 the verified bytes have, so what is
    // verified is what is written.
    let (copied, verified) = std::thread::scope(|s| {
        let checker = s.spawn(|| verify_logs(src, manifest));
        let copied = copy_files(src, manifest, staging);
        (copied, checker.join())
    });
    let (mut report, dirs) = copied?;
    verified.map_err(|_| BackupError::Refused("the verification of the logs panicked".into()))??;

    let data = DataDir::new(staging);
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
        let _ = fs::remove_file(&lock);
        for name in [
            sealtrail_ledger::log::ENTRIES_FILE,
            sealtrail_ledger::log::INDEX_FILE,
            sealtrail_ledger::log::HASHES_FILE,
        ] {
            let p = dir.join(name);
            if p.exists() {
                File::open(&p).and_then(|f| f.sync_all()).ctx("fsync", &p)?;
            }
        }
        report.logs.push(log.clone());
    }
    if manifest.file(META_FILE).is_some() {
        let path = staging.join(META_FILE);
        integrity_check(&path, true).map_err(|e| damaged(META_FILE, format!("SQLite integrity check: {e}")))?;
    }
    for d in dirs.iter().rev() {
        File::open(d).and_then(|f| f.sync_all()).ctx("sync directory", d)?;
    }
    Ok(report)
}

/// Every log of the backup, read in place by the ledger's verifier, must
/// hold exactly the checkpoint the manifest records.
fn verify_logs(src: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let view = BackupView {
        storage: &OsStorage,
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

/// Every file into `staging`, each chunk checked; the directories made.
fn copy_files(src: &Path, manifest: &Manifest, staging: &Path) -> Result<(RestoreReport, Vec<PathBuf>), BackupError> {
    let mut report = RestoreReport::default();
    let mut dirs = vec![staging.to_path_buf()];
    let mut buf = vec![0u8; 4 << 20];
    for f in &manifest.files {
        let path = staging.join(&f.path);
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                fs::create_dir_all(dir).ctx("create directory", dir)?;
                let mut d = dir.to_path_buf();
                while d != staging && !dirs.contains(&d) {
                    dirs.push(d.clone());
                    if !d.pop() {
                        break;
                    }
                }
            }
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .ctx("create", &path)?;
        let mut whole = Sha256::new();
        let mut start = 0u64;
        for (k, c) in f.chunks.iter().enumerate() {
            let name = format!("{OBJECTS_DIR}/{}", hex(&c.sha256));
            let at = format!("chunk {k} (bytes {start}..{}, object {name})", start + c.len);
            let obj_path = src.join(&name);
            let mut obj = File::open(&obj_path).map_err(|e| damaged(&f.path, format!("{at} cannot be opened: {e}")))?;
            let mut piece = Sha256::new();
            let mut left = c.len;
            while left > 0 {
                let n = (left as usize).min(buf.len());
                obj.read_exact(&mut buf[..n])
                    .map_err(|e| damaged(&f.path, format!("{at}: {e}")))?;
                piece.update(&buf[..n]);
                whole.update(&buf[..n]);
                out.write_all(&buf[..n]).ctx("write", &path)?;
                left -= n as u64;
            }
            if obj.read(&mut buf[..1]).ctx("read", &obj_path)? != 0 {
                return Err(damaged(&f.path, format!("{at} is longer than {} bytes", c.len)));
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
        out.sync_all().ctx("fsync", &path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(f.mode)).ctx("set permissions of", &path)?;
        report.files += 1;
        report.bytes += f.len;
    }

    Ok((report, dirs))
}
