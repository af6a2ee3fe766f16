//! The commit pipeline: encoding an append, and what the writer and the
//! syncer of [`commit_queue`](super::commit_queue) do — write a batch to
//! the three files, make it durable, sign its checkpoint and publish it.
//!
//! Deliberately not here: who runs a stage or when a caller is woken (the
//! commit queue's protocol), and recovery on open.

use super::commit_queue::Stages;
use super::{lock, Appended, Digest, Head, Inner, Log, PreparedEntry};
use super::{CHECKPOINT_FILE, HASHES_FILE, INDEX_FILE};
use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, Slot, HEADER_LEN, MAX_ENTRY, RECORD_HEADER_LEN, SLOT_LEN};
use sealtrail_merkle::checkpoint::Checkpoint;
use sealtrail_merkle::tree::{stored_count, Frontier};
use sealtrail_merkle::Hash;
use std::sync::Arc;

/// One append's records (checksums sealed with their indices) and leaf
/// hashes, queued for a writer.
pub(super) struct Pending {
    records: Vec<u8>,
    leaves: Vec<Hash>,
}

/// The tree as last written to the OS by a writer, not yet necessarily
/// durable: what the next sync will make durable and sign.
#[derive(Clone, Copy)]
pub(super) struct Written {
    pub(super) size: u64,
    pub(super) root: Hash,
    pub(super) entries_end: u64,
}

/// State only the writer touches.
pub(super) struct Writer {
    pub(super) frontier: Frontier,
    pub(super) entries_end: u64,
    records: Vec<u8>,
    index: Vec<u8>,
    hashes: Vec<u8>,
}

impl Writer {
    /// The writer of a tree `frontier` whose entries end at `entries_end`.
    pub(super) fn new(frontier: Frontier, entries_end: u64) -> Writer {
        Writer {
            frontier,
            entries_end,
            records: Vec::new(),
            index: Vec::new(),
            hashes: Vec::new(),
        }
    }
}

/// State only the syncer (and `flush`) touches.
pub(super) struct Syncer {
    pub(super) slot_seq: u64,
    /// Entries whose index offsets and hashes are known durable.
    pub(super) derived_size: u64,
    pub(super) derived_offset: u64,
    /// End of the entries covered by the published checkpoint.
    pub(super) durable_end: u64,
    /// Entries below this are pruned, as the checkpoint file records.
    pub(super) pruned_below: u64,
    /// A slot still holds a version 1 checkpoint: the next write also
    /// overwrites it, so that no release that reads only version 1 finds
    /// an older checkpoint there and cuts the log back to it.
    pub(super) v1_slot: bool,
}

impl Log {
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
        let first = inner.commits.append(inner, count, |first| {
            let mut at = 0usize;
            for (i, crc) in partial.iter().enumerate() {
                let crc = format::seal_record_crc(*crc, first + i as u64);
                let len = u32::from_be_bytes([records[at], records[at + 1], records[at + 2], records[at + 3]]) as usize;
                records[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
                at += RECORD_HEADER_LEN as usize + len;
            }
            Pending { records, leaves }
        })?;
        let h = self.head();
        Ok(Appended {
            first,
            count,
            tree_size: h.checkpoint.size,
            checkpoint: h.note,
        })
    }

    /// Sync the derived files and record that in the checkpoint file, so the
    /// next open re-reads nothing. Runs on drop; callable any time.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
}

impl Stages for Inner {
    type Batch = Pending;
    type Written = Written;

    fn entries(batch: &Pending) -> usize {
        batch.leaves.len()
    }

    fn size(written: &Written) -> u64 {
        written.size
    }

    /// Hash and write one batch to the OS (not yet durable). Any error
    /// leaves the log poisoned.
    fn write(&self, batch: &[Pending]) -> Result<Written> {
        let files = &self.files;
        let mut guard = lock(&self.writer);
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
        let active = files.active();
        active
            .file
            .write_all_at(&w.records, active.pos(w.entries_end))
            .ctx("write", &files.path(&active.name))?;
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
    fn sync(&self, target: Written) -> Result<()> {
        let inner = self;
        let files = &inner.files;
        let mut guard = lock(&inner.syncer);
        let s = &mut *guard;
        // Covers `target` and maybe part of a later batch; the checkpoint
        // below commits only to `target`, so open cuts any such extra.
        let started = std::time::Instant::now();
        let active = files.active();
        active.file.sync_data().ctx("fdatasync", &files.path(&active.name))?;
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
        if let Some(e) = inner.damage_error() {
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
}

impl Inner {
    /// Persist `note` in the slot not holding the current checkpoint, so a
    /// torn write leaves the previous one intact.
    pub(super) fn write_slot(&self, w: &mut Syncer, note: &[u8]) -> Result<()> {
        let files = &self.files;
        let path = files.path(CHECKPOINT_FILE);
        let slot = Slot {
            seq: w.slot_seq + 1,
            derived_size: w.derived_size,
            derived_offset: w.derived_offset,
            pruned_below: w.pruned_below,
            note: note.to_vec(),
        };
        let bytes = slot
            .encode()
            .map_err(|e| super::corrupt(&files.dir, CHECKPOINT_FILE, e.to_string()))?;
        files
            .checkpoint
            .write_all_at(&bytes, (slot.seq % 2) * SLOT_LEN as u64)
            .ctx("write", &path)?;
        files.checkpoint.sync_data().ctx("fdatasync", &path)?;
        w.slot_seq = slot.seq;
        if w.v1_slot {
            w.v1_slot = false;
            return self.write_slot(w, note);
        }
        Ok(())
    }

    pub(super) fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        if let Some(reason) = self.commits.poisoned() {
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
            self.commits.poison(e);
        }
        r
    }
}
