//! Pruning: dropping the bytes of the oldest entries for good while their
//! leaf hashes and the tree above them stay, so proofs of the kept entries,
//! consistency proofs across the pruned range and hash tiles still work.
//!
//! A prune to `below` takes four steps, each safe to be cut short by a
//! crash (docs/ledger-format.md, "Pruning"):
//!
//! 1. if the segment appended to holds entries below `below`, start a new
//!    one (written under a temporary name, synced, renamed, directory
//!    synced), after syncing the old one, which never changes again;
//! 2. if a segment starts before `below` and holds entries from it on,
//!    copy those entries (checked) into a new segment starting at `below`,
//!    the same way;
//! 3. sync the index and hashes files and write the checkpoint slot that
//!    records `below` (the commit point);
//! 4. delete the segments wholly below `below` and sync the directory.
//!
//! Open finishes step 4 of a prune a crash interrupted and deletes what a
//! crash left of steps 1 and 2 unnamed.

use super::packs::{self, pack_for, pack_name, Frame, BUNDLE};
use super::segments::{segment_name, Segment, TEMP_SUFFIX};
use super::{lock, Inner, Log};
use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::storage::StorageFile;
use sealtrail_merkle::Hash;
use std::sync::atomic::Ordering;

/// Entries copied per read when a segment is split.
const COPY_ENTRIES: u64 = 4096;

/// What [`Log::prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// First pruned index (the old [`Log::pruned_below`]).
    pub from: u64,
    /// The new [`Log::pruned_below`].
    pub to: u64,
    /// Bytes of entry files deleted, less those written: the entries from
    /// `to` on that shared a file with pruned ones, and the header of a
    /// new file for appends.
    pub bytes_freed: u64,
    /// RFC 9162 root of the tree of size `to` (`MTH(D[0:to])`): what was
    /// dropped is committed to by the log's own tree; a consistency proof
    /// from `to` to any later checkpoint proves it.
    pub root_at_to: Hash,
}

impl Log {
    /// Drop entries `[pruned_below, below)` for good, freeing their disk
    /// space. `below` is a multiple of 256 (whole entry bundles) and at most
    /// the size of the latest checkpoint rounded down to a bundle;
    /// otherwise [`LedgerError::PruneRefused`] says why, and nothing
    /// changes. A `below` at or under the current boundary changes nothing
    /// (so a repeated prune is harmless). Appends wait while the entry file
    /// they go to changes, not while entries are copied or deleted.
    /// Crash-safe at every sync point: after a crash the log opens with
    /// the old boundary or the new one.
    pub fn prune(&self, below: u64) -> Result<PruneReport> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(LedgerError::ReadOnly(inner.name.clone()));
        }
        let _one_at_a_time = lock(&inner.maintenance);
        let refuse = |reason: String| LedgerError::PruneRefused {
            log: inner.name.clone(),
            below,
            reason,
        };
        if !below.is_multiple_of(256) {
            return Err(refuse("not a multiple of 256 (whole entry bundles only)".into()));
        }
        let from = self.pruned_below();
        if below <= from {
            return Ok(PruneReport {
                from,
                to: from,
                bytes_freed: 0,
                root_at_to: self.root_at(from)?,
            });
        }
        let size = self.size();
        let limit = size / 256 * 256;
        if below > limit {
            return Err(refuse(format!(
                "the latest checkpoint covers {size} entries, so at most {limit} can be pruned"
            )));
        }
        if let Some(e) = inner.damage_error() {
            return Err(e);
        }
        if let Some(reason) = inner.commits.poisoned() {
            return Err(LedgerError::Poisoned(reason));
        }
        let root_at_to = self.root_at(below)?;
        let written = self.start_segment_above(below)? + self.split_segment_at(below)? + self.split_pack_at(below)?;
        self.record_pruned(below)?;
        let deleted = inner.delete_segments_below(below, true) + inner.delete_packs_below(below);
        let bytes_freed = deleted.saturating_sub(written);
        tracing::info!(log = %inner.name, from, to = below, bytes_freed, "pruned entries {from}..{below}");
        Ok(PruneReport {
            from,
            to: below,
            bytes_freed,
            root_at_to,
        })
    }

    /// Step 1: make sure the segment appended to starts at or above
    /// `below`, so every segment holding entries below it is sealed.
    /// Returns the bytes written.
    pub(super) fn start_segment_above(&self, below: u64) -> Result<u64> {
        let inner = &*self.inner;
        let files = &inner.files;
        let writer = lock(&inner.writer);
        let _syncer = lock(&inner.syncer);
        let active = files.active();
        if active.first >= below {
            return Ok(0);
        }
        // Everything written so far, acknowledged or not, goes to the old
        // segment; the new one starts where the next write would. Its
        // index is at least the size, hence above `below` and every
        // existing segment's first entry: its name is new.
        let first = writer.frontier.size();
        let start = writer.entries_end;
        let path = files.path(&active.name);
        if let Err(e) = active.file.sync_data().ctx("fdatasync", &path) {
            inner.commits.poison(&e);
            return Err(e);
        }
        let segment = inner.create_segment(first, start, |_, _| Ok(()))?;
        std::sync::Arc::make_mut(&mut files.entries.write().unwrap_or_else(|e| e.into_inner()))
            .list
            .push(segment);
        Ok(SEGMENT_HEADER_LEN)
    }

    /// Step 2: copy the entries from `below` on of the segment holding
    /// entry `below`, if it starts before it, into a segment of their own.
    /// Returns the bytes written.
    pub(super) fn split_segment_at(&self, below: u64) -> Result<u64> {
        let inner = &*self.inner;
        let segments = inner.files.segments().clone();
        let Some(i) = segments.list.iter().rposition(|s| s.first <= below) else {
            return Ok(0);
        };
        let old = &segments.list[i];
        // Step 1 made the last segment start at or above `below`, so this
        // one has a successor unless it starts exactly there.
        let Some(next) = segments.list.get(i + 1).filter(|_| old.first < below) else {
            return Ok(0);
        };
        let start = self.offset(below)?;
        let segment = inner.create_segment(below, start, |file, at| {
            let mut k = below;
            let mut pos = at;
            while k < next.first {
                let count = COPY_ENTRIES.min(next.first - k);
                let from = self.offset(k)?;
                let to = if k + count == next.first {
                    next.start
                } else {
                    self.offset(k + count)?
                };
                if to < from {
                    return Err(self.mark_damaged(k, from, "the stored offsets go backwards (index file)".into()));
                }
                let mut buf = vec![0u8; (to - from) as usize];
                segments.read_at(&mut buf, from)?;
                // Copy only what checks: damage is never carried along.
                let mut r = 0usize;
                for index in k..k + count {
                    match format::decode_record(&buf[r..], index) {
                        Ok(data) => r += RECORD_HEADER_LEN as usize + data.len(),
                        Err(e) => {
                            let detail = format::explain_bad_record(&buf[r..], index, &e);
                            return Err(self.mark_damaged(index, from + r as u64, detail));
                        }
                    }
                }
                if r != buf.len() {
                    return Err(self.mark_damaged(
                        k + count,
                        from + r as u64,
                        "the stored offset does not follow the previous record (index file)".into(),
                    ));
                }
                file.write_all_at(&buf, pos)
                    .ctx("write", &inner.files.path(&segment_name(below)))?;
                pos += buf.len() as u64;
                k += count;
            }
            Ok(())
        })?;
        let written = segment.len().unwrap_or(0);
        let mut list_guard = inner.files.entries.write().unwrap_or_else(|e| e.into_inner());
        let list = std::sync::Arc::make_mut(&mut list_guard);
        let at = list.list.partition_point(|s| s.first < below);
        list.list.insert(at, segment);
        Ok(written)
    }

    /// Step 2 for packs: the bundles from `below` on of the pack holding
    /// entry `below`, if it starts before it, copied (frames as they are)
    /// into a pack of their own. Returns the bytes written.
    fn split_pack_at(&self, below: u64) -> Result<u64> {
        let inner = &*self.inner;
        let store = inner.files.segments().clone();
        let Some(old) = pack_for(&store.packs, below).filter(|p| p.first < below) else {
            return Ok(0);
        };
        let skip = ((below - old.first) / BUNDLE) as usize;
        let kept = &old.frames[skip..];
        let mut frames = Vec::with_capacity(kept.len());
        let mut at = packs::frames_start(kept.len());
        for f in kept {
            frames.push(Frame { offset: at, ..*f });
            at += f.len as u64;
        }
        let name = pack_name(below);
        let path = inner.files.path(&name);
        let file = inner.create_named(&name, |file| {
            file.write_all_at(&packs::encode_header(old.version, below, &frames), 0)
                .ctx("write", &path)?;
            for (k, f) in frames.iter().enumerate() {
                // Checked as copied: damage is never carried along.
                let bytes = old.frame(skip + k).map_err(|e| {
                    self.mark_damaged(below + k as u64 * BUNDLE, f.offset, format!("{}: {e}", old.name))
                })?;
                file.write_all_at(&bytes, f.offset).ctx("write", &path)?;
            }
            Ok(())
        })?;
        let pack = packs::open_pack(name, file, &path)?;
        let written = pack.len().unwrap_or(0);
        let mut list_guard = inner.files.entries.write().unwrap_or_else(|e| e.into_inner());
        let list = std::sync::Arc::make_mut(&mut list_guard);
        let at = list.packs.partition_point(|p| p.first < below);
        list.packs.insert(at, std::sync::Arc::new(pack));
        Ok(written)
    }

    /// Step 3: the commit point. The derived files must hold every hash
    /// and offset below `below` before open can no longer re-read them.
    pub(super) fn record_pruned(&self, below: u64) -> Result<()> {
        let inner = &*self.inner;
        let files = &inner.files;
        // Appends sync the derived files only now and then: most of what
        // they hold is synced here first, without holding up the appends'
        // commits, so the syncs under the lock below have little left.
        let r = (|| {
            files
                .index
                .sync_data()
                .ctx("fdatasync", &files.path(super::INDEX_FILE))?;
            files
                .hashes
                .sync_data()
                .ctx("fdatasync", &files.path(super::HASHES_FILE))
        })();
        if let Err(e) = &r {
            inner.commits.poison(e);
            return r;
        }
        let mut syncer = lock(&inner.syncer);
        if let Some(reason) = inner.commits.poisoned() {
            return Err(LedgerError::Poisoned(reason));
        }
        let head = inner.head();
        let r = (|| {
            files
                .index
                .sync_data()
                .ctx("fdatasync", &files.path(super::INDEX_FILE))?;
            files
                .hashes
                .sync_data()
                .ctx("fdatasync", &files.path(super::HASHES_FILE))?;
            syncer.derived_size = head.checkpoint.size;
            syncer.derived_offset = syncer.durable_end;
            syncer.pruned_below = below;
            inner.write_slot(&mut syncer, &head.note)
        })();
        if let Err(e) = &r {
            inner.commits.poison(e);
            return r;
        }
        inner.pruned_below.store(below, Ordering::Release);
        Ok(())
    }
}

impl Inner {
    /// Create the segment whose first entry is `first` at log offset
    /// `start`: header, then `body(file, position)`, under a temporary
    /// name, synced, renamed, directory synced. A failure after the rename
    /// poisons the log: the name may or may not survive a crash.
    pub(super) fn create_segment(
        &self,
        first: u64,
        start: u64,
        body: impl FnOnce(&dyn StorageFile, u64) -> Result<()>,
    ) -> Result<Segment> {
        let name = segment_name(first);
        let file = self.create_named(&name, |file| {
            file.write_all_at(&format::encode_segment_header(first, start), 0)
                .ctx("write", &self.files.path(&name))?;
            body(file, SEGMENT_HEADER_LEN)
        })?;
        Ok(Segment {
            name,
            file,
            first,
            start,
            header: SEGMENT_HEADER_LEN,
        })
    }

    /// Create file `name` with `body`: under a temporary name, synced,
    /// renamed, directory synced. A failure after the rename poisons the
    /// log: the name may or may not survive a crash.
    pub(super) fn create_named(
        &self,
        name: &str,
        body: impl FnOnce(&dyn StorageFile) -> Result<()>,
    ) -> Result<std::sync::Arc<dyn StorageFile>> {
        let file = self.write_named(name, body)?;
        self.sync_dir()?;
        Ok(file)
    }

    /// [`Inner::create_named`] but for the directory sync: the name is
    /// durable only after the caller's next [`Inner::sync_dir`], which
    /// must come before anything relies on the file.
    pub(super) fn write_named(
        &self,
        name: &str,
        body: impl FnOnce(&dyn StorageFile) -> Result<()>,
    ) -> Result<std::sync::Arc<dyn StorageFile>> {
        let files = &self.files;
        let storage = &*files.storage;
        let temp = files.path(&format!("{name}{TEMP_SUFFIX}"));
        let path = files.path(name);
        if storage.exists(&temp) {
            storage.remove_file(&temp).ctx("delete", &temp)?;
        }
        let file = storage.open(&temp, true).ctx("create", &temp)?;
        let unnamed = (|| {
            body(&*file)?;
            file.sync_data().ctx("fdatasync", &temp)?;
            storage.rename(&temp, &path).ctx("rename", &temp)
        })();
        if let Err(e) = unnamed {
            let _ = storage.remove_file(&temp);
            return Err(e);
        }
        Ok(file)
    }

    /// Sync the log's directory, making every name change so far durable.
    /// A failure poisons the log: the names may or may not survive a
    /// crash.
    pub(super) fn sync_dir(&self) -> Result<()> {
        let files = &self.files;
        if let Err(e) = files.storage.sync_dir(&files.dir).ctx("sync directory", &files.dir) {
            self.commits.poison(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Step 4 for packs: delete those every entry of which is below
    /// `below`, or that a pack starting at or below `below` holds the rest
    /// of; returns their bytes. Failures are logged, as for segments.
    pub(super) fn delete_packs_below(&self, below: u64) -> u64 {
        let files = &self.files;
        let storage = &*files.storage;
        let store = files.segments().clone();
        let packs = &store.packs;
        let mut gone = Vec::new();
        let mut bytes = 0;
        for (i, p) in packs.iter().enumerate() {
            let superseded = packs.get(i + 1).is_some_and(|n| n.first <= below && n.end() >= p.end());
            if p.end() > below && !superseded {
                continue;
            }
            let path = files.path(&p.name);
            let len = p.len().unwrap_or(0);
            if let Err(e) = storage.remove_file(&path) {
                tracing::warn!(log = %self.name, "pruned entries stay on disk until the next open: delete {}: {e}", path.display());
                break;
            }
            gone.push(p.name.clone());
            bytes += len;
        }
        if gone.is_empty() {
            return 0;
        }
        if let Err(e) = storage.sync_dir(&files.dir) {
            tracing::warn!(log = %self.name, "sync directory {}: {e}", files.dir.display());
        }
        let mut store_guard = files.entries.write().unwrap_or_else(|e| e.into_inner());
        let store = std::sync::Arc::make_mut(&mut store_guard);
        store.packs.retain(|p| !gone.contains(&p.name));
        bytes
    }

    /// Step 4: delete the segments every entry of which is below `below`,
    /// and sync the directory if `sync`; returns their bytes. A failure is
    /// logged, not returned: the prune is recorded, and the next open
    /// deletes what is left.
    pub(super) fn delete_segments_below(&self, below: u64, sync: bool) -> u64 {
        let files = &self.files;
        let storage = &*files.storage;
        let segments = files.segments().clone();
        let list = &segments.list;
        let mut gone = Vec::new();
        let mut bytes = 0;
        for i in 0..list.len().saturating_sub(1) {
            if list[i + 1].first > below {
                break;
            }
            let path = files.path(&list[i].name);
            let len = list[i].len().unwrap_or(0);
            if let Err(e) = storage.remove_file(&path) {
                tracing::warn!(log = %self.name, "pruned entries stay on disk until the next open: delete {}: {e}", path.display());
                break;
            }
            gone.push(list[i].name.clone());
            bytes += len;
        }
        if gone.is_empty() {
            return 0;
        }
        if sync {
            if let Err(e) = storage.sync_dir(&files.dir) {
                tracing::warn!(log = %self.name, "sync directory {}: {e}", files.dir.display());
            }
        }
        let mut segments_guard = files.entries.write().unwrap_or_else(|e| e.into_inner());
        let segments = std::sync::Arc::make_mut(&mut segments_guard);
        segments.list.retain(|s| !gone.contains(&s.name));
        bytes
    }
}
