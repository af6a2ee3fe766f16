//! `backup create`, `backup verify` and `restore`: a few calls into
//! `sealtrail-backup` and their output (docs/backup.md).

use crate::IntegrityFailure;
use anyhow::Context;
use clap::Subcommand;
use sealtrail_backup::{BackupError, CreateOptions, Source};
use sealtrail_ledger::storage::OsStorage;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Back up the data directory (logs, meta.db, keys, every other file; not the query index) into DEST,
    /// beside a running server or not. Incremental when DEST holds an earlier backup.
    Create {
        dest: PathBuf,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check the backup in DEST: its manifest, every file's SHA-256, every log with the ledger's
    /// verifier, meta.db with SQLite's. Exit 0 intact, 1 damaged (naming the file), 2 usage or I/O error.
    Verify {
        dest: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

pub fn backup(data: &Path, command: &BackupCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create { dest, json } => {
            if !data.is_dir() {
                anyhow::bail!("there is no data directory at {} (pass --data DIR)", data.display());
            }
            let r = sealtrail_backup::create(&Source::os(data), &OsStorage, dest, &CreateOptions::default())
                .with_context(|| format!("backing up {} into {}", data.display(), dest.display()))?;
            let logs: Vec<String> = r.logs.iter().map(|l| format!("{} at {}", l.name, l.size)).collect();
            if *json {
                let value = serde_json::json!({
                    "dest": dest.display().to_string(),
                    "incremental": r.incremental,
                    "files": r.files,
                    "files_skipped": r.files_skipped,
                    "bytes_read": r.bytes_read,
                    "bytes_written": r.bytes_written,
                    "bytes_checked": r.bytes_checked,
                    "objects_damaged": r.objects_damaged,
                    "prefix_changed": r.prefix_changed,
                    "skipped_logs": r.skipped_logs,
                    "objects_removed": r.objects_removed,
                    "logs": r.logs.iter().map(|l| serde_json::json!({
                        "name": l.name, "size": l.size, "root": sealtrail_backup::manifest::hex(&l.root),
                    })).collect::<Vec<_>>(),
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            }
            eprintln!(
                "backed up {} into {} ({}): {} files, {} read, {} of the backup checked, {} written; logs: {}",
                data.display(),
                dest.display(),
                if r.incremental { "incremental" } else { "full" },
                r.files,
                mib(r.bytes_read),
                mib(r.bytes_checked),
                mib(r.bytes_written),
                if logs.is_empty() {
                    "none".to_string()
                } else {
                    logs.join(", ")
                }
            );
            for f in &r.prefix_changed {
                eprintln!(
                    "note: {f} changed before where the earlier backup stopped (recovery cut its tail); copied whole"
                );
            }
            for o in &r.objects_damaged {
                eprintln!(
                    "warning: objects/{o} in {} was damaged (not of its SHA-256); it was not used again",
                    dest.display()
                );
            }
            for l in &r.skipped_logs {
                eprintln!("note: log {l} was being created and is not in the backup");
            }
        }
        BackupCommand::Verify { dest, json } => {
            let r = sealtrail_backup::verify(&OsStorage, dest)?;
            if *json {
                let value = serde_json::json!({
                    "dest": dest.display().to_string(),
                    "intact": r.intact(),
                    "bytes_checked": r.bytes_checked,
                    "findings": r.findings.iter().map(|f| serde_json::json!({"file": f.file, "message": f.message})).collect::<Vec<_>>(),
                    "notes": r.notes,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            }
            for n in &r.notes {
                eprintln!("note: {n}");
            }
            if !r.intact() {
                for f in &r.findings {
                    eprintln!("damaged: {f}");
                }
                return Err(IntegrityFailure(format!(
                    "the backup in {} is damaged: {}",
                    dest.display(),
                    r.findings
                        .iter()
                        .map(|f| f.file.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into());
            }
            if let Some(m) = &r.manifest {
                let logs: Vec<String> = m.logs.iter().map(|l| format!("{} at {}", l.name, l.size)).collect();
                eprintln!(
                    "backup {} intact (taken {}): {} files, {} checked; logs: {}",
                    dest.display(),
                    m.created,
                    m.files.len(),
                    mib(r.bytes_checked),
                    if logs.is_empty() {
                        "none".to_string()
                    } else {
                        logs.join(", ")
                    }
                );
            }
        }
    }
    Ok(())
}

pub fn restore(src: &Path, data: &Path) -> anyhow::Result<()> {
    match sealtrail_backup::restore(src, data) {
        Ok(r) => {
            let logs: Vec<String> = r.logs.iter().map(|l| format!("{} at {}", l.name, l.size)).collect();
            eprintln!(
                "restored {} into {}: {} files, {}; logs: {}. The query index is rebuilt when the server starts \
                 (or run `sealtrail reindex --log NAME`).",
                src.display(),
                data.display(),
                r.files,
                mib(r.bytes),
                if logs.is_empty() {
                    "none".to_string()
                } else {
                    logs.join(", ")
                }
            );
            Ok(())
        }
        Err(e @ BackupError::Damaged { .. }) => {
            Err(IntegrityFailure(format!("{e}; nothing was restored into {}", data.display())).into())
        }
        Err(e) => Err(e.into()),
    }
}
