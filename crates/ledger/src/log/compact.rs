//! Compaction: packing sealed entry bundles into zstd-compressed packs and
//! freeing their uncompressed bytes.
//!
//! Only bundles a synced checkpoint covers are packed. In order, each step
//! safe to be cut short by a crash (docs/ledger-format.md, "Compaction"):
//!
//! 1. if the segment appended to holds entries below the last whole
//!    bundle `B`, start a new one (as prune does);
//! 2. write the packs of bundles `[packed end, B)`, each bundle read from
//!    its segment (checksums checked), compressed, decompressed again and
//!    compared with what was compressed, under a temporary name, synced,
//!    renamed;
//! 3. copy the entries from `B` on of the segment holding entry `B` into
//!    a segment starting at `B` (as prune does), and sync the directory:
//!    one sync makes the names of the packs and of that segment durable
//!    (one of its own if there is nothing to copy);
//! 4. sync the index and hashes files and record that in a checkpoint
//!    slot, so open never re-reads an entry below `B` from a segment;
//! 5. delete the segments wholly below `B`, the directory not synced:
//!    open deletes any that a crash brings back, as it does after a crash
//!    before this step.
//!
//! Reads, proofs, tiles, verify and the scrub see the same entries before,
//! during and after.

use super::packs::{self, pack_name, packed_end, Frame, Packed, Packer, BUNDLE};
use super::{lock, Log};
use crate::error::{IoContext, LedgerError, Result};
use std::sync::Arc;

/// Most bundles in one pack (262,144 entries).
pub(crate) const MAX_PACK_BUNDLES: u64 = 1024;

/// Bytes of frames gathered before they are written: a compaction of
/// 16,384 entries (a pack of about 1 MB at 5x) is one write.
const WRITE_BYTES: usize = 4 << 20;

/// What [`Log::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Entries `[from, to)` were packed (`from == to`: nothing to do).
    pub from: u64,
    pub to: u64,
    /// Bytes of their records (uncompressed).
    pub raw_bytes: u64,
    /// Bytes of the packs written.
    pub packed_bytes: u64,
    /// Bytes of entry files deleted, less every byte written.
    pub bytes_freed: u64,
}

impl Log {
    /// Compress every whole bundle the latest checkpoint covers that is
    /// not packed yet into packs (zstd, one frame per bundle, level
    /// [`LogOptions::compression_level`](super::LogOptions)), then free
    /// their uncompressed bytes. Transparent to reads, proofs, tiles,
    /// verify and the scrub. Appends wait only while the entry file they
    /// go to changes. Crash-safe at every sync point.
    pub fn compact(&self) -> Result<CompactReport> {
        self.compact_below(u64::MAX)
    }

    /// [`Log::compact`], packing no entry at or above `limit`: the whole
    /// bundles from the packed end up to `limit` (rounded down to a
    /// bundle) or to the checkpoint, whichever is lower. A paced
    /// compaction packs in steps of this size so that it can look at the
    /// machine's load between them.
    pub fn compact_below(&self, limit: u64) -> Result<CompactReport> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(LedgerError::ReadOnly(inner.name.clone()));
        }
        let _one_at_a_time = lock(&inner.maintenance);
        if let Some(e) = inner.damage_error() {
            return Err(e);
        }
        if let Some(reason) = inner.commits.poisoned() {
            return Err(LedgerError::Poisoned(reason));
        }
        let pruned = self.pruned_below();
        let from = self.packed_to();
        let to = self.size().min(limit) / BUNDLE * BUNDLE;
        if to <= from {
            return Ok(CompactReport {
                from,
                to: from,
                ..CompactReport::default()
            });
        }
        let mut written = self.start_segment_above(to)?;
        let (mut raw_bytes, mut packed_bytes) = (0, 0);
        let mut first = from;
        while first < to {
            let bundles = MAX_PACK_BUNDLES.min((to - first) / BUNDLE);
            let (raw, packed) = self.write_pack(first, bundles)?;
            raw_bytes += raw;
            packed_bytes += packed;
            first += bundles * BUNDLE;
        }
        // The split's directory sync makes the packs' names durable too;
        // without a split, one of its own does.
        let split = self.split_segment_at(to)?;
        if split == 0 {
            inner.sync_dir()?;
        }
        written += packed_bytes + split;
        self.record_pruned(pruned)?;
        // The deletions are left for the next directory sync: a crash
        // before it brings the files back, and open deletes them again,
        // as it does after a crash just before they were deleted.
        let deleted = inner.delete_segments_below(to, false);
        let bytes_freed = deleted.saturating_sub(written);
        tracing::info!(log = %inner.name, from, to, raw_bytes, packed_bytes, "packed entries {from}..{to}");
        metrics::counter!("sealtrail_ledger_packed_bytes_total", "log" => inner.name.clone()).increment(packed_bytes);
        Ok(CompactReport {
            from,
            to,
            raw_bytes,
            packed_bytes,
            bytes_freed,
        })
    }

    /// Entries in whole bundles the latest checkpoint covers that are not
    /// packed yet: what [`Log::compact`] would pack now.
    pub fn unpacked(&self) -> u64 {
        (self.size() / BUNDLE * BUNDLE).saturating_sub(self.packed_to())
    }

    /// Entries below this index are packed or pruned.
    pub(crate) fn packed_to(&self) -> u64 {
        packed_end(&self.inner.files.segments().packs, self.pruned_below())
    }

    /// The start of the first entry file above `from`'s, rounded down to a
    /// bundle, if it is above `from`: packing up to it copies fewer than a
    /// bundle's entries (step 3 of [`Log::compact`] copies the rest of the
    /// file holding the packed end).
    pub(crate) fn next_file_start(&self, from: u64) -> Option<u64> {
        let segments = self.inner.files.segments();
        segments
            .list
            .iter()
            .map(|s| s.first / BUNDLE * BUNDLE)
            .find(|&start| start > from)
    }

    /// Start a new entry file for appends if the one appended to holds
    /// `entries` or more, so that a later compaction can pack up to its
    /// start without copying. Returns whether it did.
    pub(crate) fn cut_entry_file(&self, entries: u64) -> Result<bool> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(LedgerError::ReadOnly(inner.name.clone()));
        }
        let _one_at_a_time = lock(&inner.maintenance);
        if let Some(reason) = inner.commits.poisoned() {
            return Err(LedgerError::Poisoned(reason));
        }
        let first = inner.files.active().first;
        if self.size() < first.saturating_add(entries.max(1)) {
            return Ok(false);
        }
        Ok(self.start_segment_above(first + entries.max(1))? > 0)
    }

    /// Write the pack of `bundles` bundles from entry `first`; returns the
    /// bytes of their records and of the pack.
    fn write_pack(&self, first: u64, bundles: u64) -> Result<(u64, u64)> {
        let inner = &*self.inner;
        let store = inner.files.segments().clone();
        let name = pack_name(first);
        let path = inner.files.path(&name);
        let level = inner.opts.compression_level;
        let version = inner.opts.pack_version;
        let mut raw = 0u64;
        // Named, not yet durably: the directory sync of the segment split
        // off next (or of the last step of `compact`) covers every pack's
        // name before anything is recorded or deleted.
        let file = inner.write_named(&name, |file| {
            // One compression context and one frame buffer for the whole
            // pack: a context per bundle costs more than a small bundle.
            let mut packer = Packer::new(level, version).ctx("compress", &path)?;
            let (mut records, mut frame) = (Vec::new(), Vec::new());
            let mut frames = Vec::with_capacity(bundles as usize);
            // Frames gathered into one write of up to `WRITE_BYTES`, after
            // room for the header and table: a pack that fits is one
            // write, header included.
            let start = packs::frames_start(bundles as usize);
            let mut out = vec![0u8; start as usize];
            let mut out_at = 0u64;
            let mut at = start;
            for b in 0..bundles {
                let bundle_first = first + b * BUNDLE;
                // Checked against their checksums by the packer, in the
                // pass that strips them; the same check here would be a
                // second one.
                let offset = self.read_raw_records(&store, bundle_first, BUNDLE, &mut records)?;
                match packer.pack(&records, bundle_first, &mut frame).ctx("compress", &path)? {
                    Packed::Frame => {}
                    Packed::BadRecords => {
                        // As any reader would: marks the log damaged and
                        // says what is wrong.
                        self.check_raw_records(&records, offset, bundle_first, BUNDLE)?;
                        return Err(LedgerError::Corrupt {
                            file: path.clone(),
                            detail: format!("bundle {}: its records were refused", bundle_first / BUNDLE),
                        });
                    }
                    Packed::BadFrame => {
                        return Err(LedgerError::Corrupt {
                            file: path.clone(),
                            detail: format!(
                                "bundle {} does not decompress to what was compressed",
                                bundle_first / BUNDLE
                            ),
                        });
                    }
                }
                if out.len() + frame.len() > WRITE_BYTES {
                    file.write_all_at(&out, out_at).ctx("write", &path)?;
                    out_at += out.len() as u64;
                    out.clear();
                }
                out.extend_from_slice(&frame);
                frames.push(Frame {
                    offset: at,
                    len: frame.len() as u32,
                    crc: crc32c::crc32c(&frame),
                });
                at += frame.len() as u64;
                raw += records.len() as u64;
            }
            let header = packs::encode_header(version, first, &frames);
            if out_at == 0 {
                out[..header.len()].copy_from_slice(&header);
                file.write_all_at(&out, 0).ctx("write", &path)
            } else {
                file.write_all_at(&out, out_at).ctx("write", &path)?;
                file.write_all_at(&header, 0).ctx("write", &path)
            }
        })?;
        let pack = packs::open_pack(name, file, &path)?;
        let packed = pack.len().ctx("stat", &path)?;
        let mut store_guard = inner.files.entries.write().unwrap_or_else(|e| e.into_inner());
        let store = std::sync::Arc::make_mut(&mut store_guard);
        let at = store.packs.partition_point(|p| p.first < first);
        store.packs.insert(at, Arc::new(pack));
        Ok((raw, packed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::packs::tests::{checked_frame, Tampering};
    use crate::{DataDir, LedgerError, LogOptions};

    #[test]
    fn a_compression_gone_wrong_writes_no_pack() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create_log("default", None).unwrap();
        let log = dir.open_log("default", LogOptions::default()).unwrap();
        let entries: Vec<Vec<u8>> = (0..1024u32).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        log.append(&entries).unwrap();
        let packs = || {
            std::fs::read_dir(dir.log_dir("default"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("pack-"))
                .collect::<Vec<_>>()
        };
        {
            // The third bundle's frame decompresses to other bytes.
            let _tampering = Tampering::new(|frame| {
                let mut content = zstd::decode_all(&frame[..]).unwrap();
                if content.windows(8).any(|w| w == b"\"n\":512}") {
                    content[0] ^= 0x01;
                    *frame = checked_frame(&content);
                }
            });
            match log.compact() {
                Err(LedgerError::Corrupt { detail, .. }) => {
                    assert!(detail.contains("bundle 2 does not decompress"), "{detail}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(packs(), Vec::<String>::new());
        assert_eq!(log.entries(0, 1024).unwrap(), entries);
        assert_eq!(log.compact().unwrap().to, 1024);
        assert_eq!(packs(), vec!["pack-0000000000000000".to_string()]);
        assert_eq!(log.entries(0, 1024).unwrap(), entries);
    }
}
