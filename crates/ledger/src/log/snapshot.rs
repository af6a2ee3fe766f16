//! What a consistent copy of a log directory needs from the ledger while a
//! writer (possibly another process) keeps appending: the signed
//! checkpoint, read first and checked, and which kind each file of the
//! directory is, so a copier knows what it may copy incrementally.
//!
//! The rule that makes the copy consistent (docs/ledger-format.md): every
//! file of a log directory only grows (append-only; recovery may cut a tail
//! no checkpoint covers) or never changes once its name appears
//! (immutable), except the checkpoint file, rewritten in place. The writer
//! writes every byte a checkpoint covers before it signs it, so files
//! copied up to their length at any moment after the checkpoint was read
//! hold everything that checkpoint covers; opening the copy cuts the rest.
//!
//! Deliberately not here: the copying itself, which takes no lock, reads
//! through [`Storage`] and writes nothing in the log directory.

use super::{corrupt, CHECKPOINT_FILE, ENTRIES_FILE, HASHES_FILE, INDEX_FILE, KEY_FILE, LOCK_FILE, PUBKEY_FILE};
use crate::error::{IoContext, LedgerError, Result};
use crate::format;
use crate::storage::Storage;
use sealtrail_merkle::checkpoint::{open_checkpoint, Checkpoint};
use sealtrail_merkle::note::Verifier;
use std::path::Path;

/// How a file of a log directory changes, which decides how it is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The checkpoint file: rewritten in place; copy it whole, first.
    Checkpoint,
    /// Only grows (recovery may cut a tail that no checkpoint covers and
    /// write it again): a copy may resume where an earlier one stopped once
    /// that earlier prefix is checked to be unchanged.
    AppendOnly,
    /// Never changes once its name appears (keys, packs).
    Immutable,
    /// Not part of the log's data (the writer's lock file, a file still
    /// being written under its temporary name): not copied.
    NotData,
}

/// The kind of the file at `relative` (a path inside the log directory,
/// `/`-separated). A name the ledger does not know is append-only: a copy
/// then checks its whole earlier prefix, which is right for every kind.
pub fn file_kind(relative: &str) -> FileKind {
    match relative {
        CHECKPOINT_FILE => FileKind::Checkpoint,
        LOCK_FILE => FileKind::NotData,
        KEY_FILE | PUBKEY_FILE => FileKind::Immutable,
        ENTRIES_FILE | INDEX_FILE | HASHES_FILE => FileKind::AppendOnly,
        // Half-written segment or pack: recovery deletes it on open.
        tmp if tmp.ends_with(".tmp") => FileKind::NotData,
        // Named only once complete and synced; deleted only by pruning.
        pack if pack.starts_with("pack-") => FileKind::Immutable,
        // `entries-<first>`: appended to while it is the last segment.
        _ => FileKind::AppendOnly,
    }
}

/// The checkpoint file of a log as read at one moment, and the signed
/// checkpoint it holds.
#[derive(Debug, Clone)]
pub struct CheckpointSnapshot {
    /// The checkpoint file's bytes, exactly as read (both slots).
    pub bytes: Vec<u8>,
    /// The current slot's checkpoint, its signature checked with `log.pub`.
    pub checkpoint: Checkpoint,
    /// The signed note of that checkpoint.
    pub note: Vec<u8>,
}

/// Read the checkpoint file of the log in `dir` without a lock and check
/// the signature of its current checkpoint with the log's `log.pub`. A slot
/// torn by a write in progress fails its checksum and the other, older one
/// is current, exactly as an open of a copy of these bytes would find.
pub fn read_checkpoint(storage: &dyn Storage, dir: &Path) -> Result<CheckpointSnapshot> {
    let pub_path = dir.join(PUBKEY_FILE);
    let text = storage.read(&pub_path).ctx("read", &pub_path)?;
    let verifier = Verifier::parse(String::from_utf8_lossy(&text).trim()).map_err(|e| LedgerError::Key {
        path: pub_path.clone(),
        detail: e.to_string(),
    })?;
    let path = dir.join(CHECKPOINT_FILE);
    let file = storage.open_read(&path).ctx("open", &path)?;
    let len = file.len().ctx("stat", &path)?.min(2 * format::SLOT_LEN as u64);
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).ctx("read", &path)?;
    let slot = format::newest_slot(&bytes).map_err(|e| corrupt(dir, CHECKPOINT_FILE, e))?;
    let (checkpoint, _) = open_checkpoint(&slot.note, &verifier).map_err(|e| {
        corrupt(
            dir,
            CHECKPOINT_FILE,
            format!("last signed checkpoint does not verify with {verifier}: {e}"),
        )
    })?;
    Ok(CheckpointSnapshot {
        bytes,
        checkpoint,
        note: slot.note,
    })
}
