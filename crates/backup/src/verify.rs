//! Checking a backup where it lies: the manifest's own SHA-256, every
//! object it names (present, of its length, of its SHA-256), every file's
//! SHA-256 over its chunks, every log with the ledger's verifier against
//! the checkpoint the manifest records, and the metadata database with
//! SQLite's integrity check. Each finding names the data directory's file
//! it damages.
//!
//! Deliberately read-only: it repairs nothing and removes nothing.

use crate::manifest::{hex, FileRecord, Manifest};
use crate::view::BackupView;
use crate::{BackupError, IoContext, MANIFEST_FILE, META_FILE, OBJECTS_DIR};
use sealtrail_ledger::storage::Storage;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;

/// One thing wrong in a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file of the data directory it concerns (`MANIFEST` for the
    /// manifest itself).
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    pub findings: Vec<Finding>,
    /// Not damage: objects no file names (left by an interrupted backup,
    /// removed by the next one), logs' tails past their checkpoints.
    pub notes: Vec<String>,
    /// Bytes of objects read and hashed.
    pub bytes_checked: u64,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.findings.is_empty() && self.manifest.is_some()
    }
}

/// Check the backup in `dir` on `storage`. `Err` only for a problem that
/// is not the backup's (an unreadable directory); damage is findings.
pub fn verify(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport, BackupError> {
    let mut report = VerifyReport::default();
    let path = dir.join(MANIFEST_FILE);
    if !storage.exists(&path) {
        report.findings.push(Finding {
            file: MANIFEST_FILE.into(),
            message: format!("missing: {} holds no backup", dir.display()),
        });
        return Ok(report);
    }
    let bytes = storage.read(&path).ctx("read", &path)?;
    let manifest = match Manifest::decode(&bytes) {
        Ok(m) => m,
        Err(e) => {
            report.findings.push(Finding {
                file: MANIFEST_FILE.into(),
                message: match e {
                    BackupError::Damaged { detail, .. } => detail,
                    other => other.to_string(),
                },
            });
            return Ok(report);
        }
    };
    let mut damaged = HashSet::new();
    let mut buf = Vec::new();
    for f in &manifest.files {
        if let Err(message) = check_file(storage, dir, f, &mut buf, &mut report.bytes_checked) {
            damaged.insert(f.path.clone());
            report.findings.push(Finding {
                file: f.path.clone(),
                message,
            });
        }
    }
    let view = BackupView {
        storage,
        root: dir.to_path_buf(),
        manifest: &manifest,
    };
    for log in &manifest.logs {
        let prefix = format!("logs/{}/", log.name);
        if damaged.iter().any(|d| d.starts_with(&prefix)) {
            continue;
        }
        let log_dir = dir.join("logs").join(&log.name);
        let r = match sealtrail_ledger::verify::verify_log(&view, &log_dir, None, None) {
            Ok(r) => r,
            Err(e) => {
                report.findings.push(Finding {
                    file: format!("logs/{}", log.name),
                    message: e.to_string(),
                });
                continue;
            }
        };
        for f in &r.findings {
            report.findings.push(Finding {
                file: format!("{prefix}{}", f.file),
                message: f.to_string(),
            });
        }
        match &r.checkpoint {
            Some(cp) if cp.size == log.size && cp.root == log.root => {}
            Some(cp) => report.findings.push(Finding {
                file: format!("{prefix}checkpoint"),
                message: format!(
                    "holds the checkpoint of size {} root {}, the manifest records size {} root {}",
                    cp.size,
                    hex(&cp.root),
                    log.size,
                    hex(&log.root)
                ),
            }),
            None => {}
        }
        if r.findings.is_empty() && r.entries < log.size {
            report.findings.push(Finding {
                file: format!("{prefix}entries"),
                message: format!("holds {} entries, its checkpoint covers {}", r.entries, log.size),
            });
        }
        if !r.notes.is_empty() {
            report.notes.push(format!(
                "log {}: {} entries past its checkpoint of {} (written while the backup was taken; a restore drops them)",
                log.name,
                r.entries.saturating_sub(log.size),
                log.size
            ));
        }
    }
    for f in &manifest.files {
        if let Some(rest) = f.path.strip_prefix("logs/") {
            if let Some((name, _)) = rest.split_once('/') {
                if sealtrail_ledger::datadir::check_log_name(name).is_ok()
                    && !manifest.logs.iter().any(|l| l.name == name)
                {
                    report.findings.push(Finding {
                        file: f.path.clone(),
                        message: format!("belongs to log {name}, which the manifest records no checkpoint of"),
                    });
                }
            }
        }
    }
    if let Some(meta) = manifest.file(META_FILE).filter(|_| !damaged.contains(META_FILE)) {
        match check_sqlite(storage, dir, meta) {
            Ok(None) => {}
            Ok(Some(note)) => report.notes.push(note),
            Err(message) => report.findings.push(Finding {
                file: META_FILE.into(),
                message,
            }),
        }
    }
    let used: HashSet<String> = manifest
        .files
        .iter()
        .flat_map(|f| f.chunks.iter().map(|c| hex(&c.sha256)))
        .collect();
    let objects = dir.join(OBJECTS_DIR);
    if storage.exists(&objects) {
        let extra = storage
            .list_files(&objects)
            .ctx("list", &objects)?
            .into_iter()
            .filter(|n| !used.contains(n))
            .count();
        if extra > 0 {
            report.notes.push(format!(
                "{extra} object(s) no file uses (left by an interrupted backup; the next backup removes them)"
            ));
        }
    }
    report.manifest = Some(manifest);
    Ok(report)
}

/// Every chunk present, of its length and SHA-256, and the file's SHA-256.
fn check_file(
    storage: &dyn Storage,
    dir: &Path,
    f: &FileRecord,
    buf: &mut Vec<u8>,
    checked: &mut u64,
) -> Result<(), String> {
    let mut whole = Sha256::new();
    let mut start = 0u64;
    for (k, c) in f.chunks.iter().enumerate() {
        let name = format!("{OBJECTS_DIR}/{}", hex(&c.sha256));
        let at = format!("chunk {k} (bytes {start}..{}, object {name})", start + c.len);
        let obj = storage
            .open_read(&dir.join(&name))
            .map_err(|e| format!("{at} cannot be opened: {e}"))?;
        let len = obj.len().map_err(|e| format!("{at}: {e}"))?;
        if len != c.len {
            return Err(format!("{at} is {len} bytes long"));
        }
        let mut piece = Sha256::new();
        let mut off = 0;
        while off < c.len {
            let n = (c.len - off).min(4 << 20) as usize;
            buf.resize(n, 0);
            obj.read_exact_at(buf, off).map_err(|e| format!("{at}: {e}"))?;
            piece.update(&buf[..]);
            whole.update(&buf[..]);
            off += n as u64;
        }
        *checked += c.len;
        if piece.finalize().as_slice() != c.sha256 {
            return Err(format!("{at} does not have its SHA-256: its bytes were changed"));
        }
        start += c.len;
    }
    if whole.finalize().as_slice() != f.sha256 {
        return Err("the file's SHA-256 does not match the manifest".into());
    }
    Ok(())
}

/// SQLite's integrity check of the database object, opened read-only and
/// immutable (nothing written beside it).
fn check_sqlite(storage: &dyn Storage, dir: &Path, f: &FileRecord) -> Result<Option<String>, String> {
    let [chunk] = f.chunks.as_slice() else {
        return Ok(None);
    };
    let obj = dir.join(OBJECTS_DIR).join(hex(&chunk.sha256));
    let Some(real) = storage.real_path(&obj) else {
        return Ok(Some("the metadata database was not opened (no real file)".into()));
    };
    integrity_check(&real, true)
        .map(|()| None)
        .map_err(|e| format!("SQLite integrity check: {e}"))
}

/// `PRAGMA integrity_check` of the database at `path`.
pub(crate) fn integrity_check(path: &Path, immutable: bool) -> Result<(), String> {
    use rusqlite::{Connection, OpenFlags};
    let uri = crate::sqlite_uri(path, if immutable { "?immutable=1" } else { "" });
    let conn = Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
        .map_err(|e| e.to_string())?;
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| e.to_string())?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(rows.join("; "))
    }
}
