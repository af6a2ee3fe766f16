//! Reads of an open log: entries (checked against their record checksums,
//! damage recorded), stored tree hashes, inclusion and consistency proofs,
//! checkpoints for older sizes, and tlog tiles.
//!
//! Deliberately not here: anything that writes, except recording damage.

use super::packs::{pack_for, BUNDLE};
use super::segments::Segments;
use super::{Log, HASHES_FILE, INDEX_FILE};
use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, HEADER_LEN, RECORD_HEADER_LEN};
use crate::storage::StorageFile;
use sealtrail_merkle::checkpoint::Checkpoint;
use sealtrail_merkle::tree::{stored_index, Frontier, NodeSource};
use sealtrail_merkle::Hash;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Reads stored tree nodes from the hashes file.
pub(super) struct HashesFile<'a> {
    pub(super) file: &'a dyn StorageFile,
    pub(super) path: PathBuf,
}

/// A [`HashesFile`] that reads each node once.
struct Remembered<'a> {
    file: HashesFile<'a>,
    seen: RefCell<HashMap<(u8, u64), Hash>>,
}

impl NodeSource for Remembered<'_> {
    type Error = LedgerError;
    fn node(&self, level: u8, n: u64) -> Result<Hash> {
        if let Some(h) = self.seen.borrow().get(&(level, n)) {
            return Ok(*h);
        }
        let h = self.file.node(level, n)?;
        self.seen.borrow_mut().insert((level, n), h);
        Ok(h)
    }
}

impl NodeSource for HashesFile<'_> {
    type Error = LedgerError;
    fn node(&self, level: u8, n: u64) -> Result<Hash> {
        let mut h = [0u8; 32];
        let at = HEADER_LEN + stored_index(level, n) * 32;
        self.file.read_exact_at(&mut h, at).ctx("read hash", &self.path)?;
        Ok(h)
    }
}

impl Log {
    fn hashes(&self) -> HashesFile<'_> {
        HashesFile {
            file: &*self.inner.files.hashes,
            path: self.inner.files.path(HASHES_FILE),
        }
    }

    fn check_size(&self, size: u64) -> Result<()> {
        let current = self.size();
        if size > current {
            return Err(LedgerError::OutOfRange {
                index: size,
                size: current,
            });
        }
        Ok(())
    }

    /// Byte offset of entry `index` in the entries file.
    pub(crate) fn offset(&self, index: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        let f = &self.inner.files;
        f.index
            .read_exact_at(&mut b, HEADER_LEN + index * 8)
            .ctx_with("read", || f.path(INDEX_FILE))?;
        Ok(u64::from_be_bytes(b))
    }

    /// The exact bytes of entry `index`, checked against its record checksum.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>> {
        let size = self.size();
        if index >= size {
            return Err(LedgerError::OutOfRange { index, size });
        }
        let mut out = self.entries(index, 1)?;
        out.pop().ok_or(LedgerError::OutOfRange { index, size })
    }

    /// Entries `[first, first+count)`, read in one pass. Entries below
    /// [`Log::pruned_below`] are refused with [`LedgerError::Pruned`].
    /// Packed (compressed) bundles are read and decompressed whole, each
    /// checked against its checksum and every record against its own.
    pub fn entries(&self, first: u64, count: u64) -> Result<Vec<Vec<u8>>> {
        let size = self.size();
        if first + count > size {
            return Err(LedgerError::OutOfRange {
                index: first + count - 1,
                size,
            });
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        // Cloned before the boundary is read: a prune raises the boundary
        // before it drops a file from the list, and open handles still
        // read a file deleted meanwhile.
        let store = self.inner.files.segments().clone();
        let pruned_below = self.pruned_below();
        if first < pruned_below {
            return Err(LedgerError::Pruned {
                index: first,
                pruned_below,
            });
        }
        let end = first + count;
        let mut out = Vec::with_capacity(count as usize);
        let mut i = first;
        while i < end {
            if let Some(pack) = pack_for(&store.packs, i) {
                let k = ((i - pack.first) / BUNDLE) as usize;
                let bundle_first = pack.first + k as u64 * BUNDLE;
                let records = pack
                    .records(k)
                    .map_err(|e| self.mark_damaged(i, pack.frames[k].offset, format!("{}: {e}", pack.name)))?;
                let stop = end.min(bundle_first + BUNDLE);
                let mut at = 0usize;
                for index in bundle_first..stop {
                    let data = format::decode_record(&records[at..], index).map_err(|e| {
                        let detail = format::explain_bad_record(&records[at..], index, &e);
                        self.mark_damaged(
                            index,
                            pack.frames[k].offset,
                            format!("{} (packed): {detail}", pack.name),
                        )
                    })?;
                    at += RECORD_HEADER_LEN as usize + data.len();
                    if index >= i {
                        out.push(data.to_vec());
                    }
                }
                i = stop;
            } else {
                let next_pack = store.packs.iter().map(|p| p.first).find(|f| *f > i);
                let stop = next_pack.map_or(end, |f| f.min(end));
                let buf = self.raw_records(&store, i, stop - i)?;
                let mut at = 0usize;
                for _ in i..stop {
                    let len = format::decode_record_header(&buf[at..]).map_or(0, |(len, _)| len as usize);
                    let data = &buf[at + RECORD_HEADER_LEN as usize..at + RECORD_HEADER_LEN as usize + len];
                    out.push(data.to_vec());
                    at += RECORD_HEADER_LEN as usize + len;
                }
                i = stop;
            }
        }
        Ok(out)
    }

    /// The records of unpacked entries `[first, first+count)` (count > 0),
    /// back to back as stored, each checked against its checksum.
    pub(crate) fn raw_records(&self, store: &Segments, first: u64, count: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let start = self.read_raw_records(store, first, count, &mut buf)?;
        self.check_raw_records(&buf, start, first, count)?;
        Ok(buf)
    }

    /// The bytes [`Log::raw_records`] returns, into `buf` (its memory
    /// reused), not checked yet: [`Log::check_raw_records`] or a check of
    /// the same strength must follow. Returns their offset in the log.
    pub(crate) fn read_raw_records(&self, store: &Segments, first: u64, count: u64, buf: &mut Vec<u8>) -> Result<u64> {
        let start = self.offset(first)?;
        let last = self.offset(first + count - 1)?;
        let mut hdr = [0u8; RECORD_HEADER_LEN as usize];
        store.read_at(&mut hdr, last)?;
        let (len, _) = format::decode_record_header(&hdr)
            .map_err(|e| self.mark_damaged(first + count - 1, last, format!("record header: {e}")))?;
        let end = last + RECORD_HEADER_LEN + len as u64;
        if end < start {
            return Err(self.mark_damaged(
                first,
                start,
                format!(
                    "the stored offsets of entries {first}..{} go backwards (index file)",
                    first + count
                ),
            ));
        }
        // The read fills every byte: only memory the buffer has not held
        // before is zeroed.
        let len = (end - start) as usize;
        buf.truncate(len);
        buf.resize(len, 0);
        store.read_at(buf, start)?;
        Ok(start)
    }

    /// Check records read by [`Log::read_raw_records`] from log offset
    /// `start`: each against its checksum, and that they fill `buf`
    /// exactly. A failure marks the log damaged.
    pub(crate) fn check_raw_records(&self, buf: &[u8], start: u64, first: u64, count: u64) -> Result<()> {
        let mut at = 0usize;
        for index in first..first + count {
            match format::decode_record(&buf[at..], index) {
                Ok(data) => at += RECORD_HEADER_LEN as usize + data.len(),
                Err(e) => {
                    let detail = crate::format::explain_bad_record(&buf[at..], index, &e);
                    return Err(self.mark_damaged(index, start + at as u64, detail));
                }
            }
        }
        if at != buf.len() {
            let last = self.offset(first + count - 1)?;
            return Err(self.mark_damaged(
                first + count - 1,
                last,
                "the stored offsets do not follow the records (index file)".into(),
            ));
        }
        Ok(())
    }

    /// The tree's frontier at `size` entries, from the stored hashes.
    pub(crate) fn frontier_at(&self, size: u64) -> Result<Frontier> {
        self.check_size(size)?;
        Frontier::load(&self.hashes(), size)
    }

    /// `count` stored hashes from post-order position `first` (see
    /// `tree::stored_index`), for checking many nodes with one read.
    pub(crate) fn stored_hashes(&self, first: u64, count: u64) -> Result<Vec<u8>> {
        let mut out = vec![0u8; (count * 32) as usize];
        let f = &self.inner.files;
        f.hashes
            .read_exact_at(&mut out, HEADER_LEN + first * 32)
            .ctx_with("read", || f.path(HASHES_FILE))?;
        Ok(out)
    }

    /// Stored hash of node `(level, n)`; the node must be complete within
    /// the committed tree.
    pub fn node(&self, level: u8, n: u64) -> Result<Hash> {
        self.hashes().node(level, n)
    }

    /// Root of the tree of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        sealtrail_merkle::tree_root(&self.hashes(), size)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        if index >= size {
            return Err(LedgerError::OutOfRange { index, size });
        }
        sealtrail_merkle::inclusion_proof(&self.hashes(), index, size)
    }

    /// Inclusion proofs of several entries in the tree of `size`, each node
    /// read once: the proofs of neighbouring entries (a group of single
    /// events) share most of their upper nodes.
    pub fn inclusion_proofs(&self, indices: &[u64], size: u64) -> Result<Vec<Vec<Hash>>> {
        self.check_size(size)?;
        let nodes = Remembered {
            file: self.hashes(),
            seen: RefCell::new(HashMap::new()),
        };
        indices
            .iter()
            .map(|&index| {
                if index >= size {
                    return Err(LedgerError::OutOfRange { index, size });
                }
                sealtrail_merkle::inclusion_proof(&nodes, index, size)
            })
            .collect()
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.check_size(new)?;
        if old > new {
            return Err(LedgerError::OutOfRange { index: old, size: new });
        }
        sealtrail_merkle::consistency_proof(&self.hashes(), old, new)
    }

    /// A signed checkpoint for the tree of `size` entries: the latest one if
    /// `size` is current, otherwise a new signature over the older, still
    /// valid prefix (it commits to nothing the latest one contradicts).
    pub fn checkpoint_at(&self, size: u64) -> Result<(Checkpoint, Arc<[u8]>)> {
        let head = self.head();
        if size == head.checkpoint.size {
            return Ok((head.checkpoint, head.note));
        }
        if let Some(e) = self.inner.damage_error() {
            return Err(e);
        }
        let checkpoint = Checkpoint {
            origin: self.origin().to_string(),
            size,
            root: self.root_at(size)?,
            extensions: vec![],
        };
        let note = self.inner.sign(&checkpoint)?;
        Ok((checkpoint, note.into_bytes().into()))
    }

    /// The hashes of tile `(level, index)` of width `width` (tlog-tiles):
    /// tree level `8·level`, nodes `index·256 .. index·256+width`.
    pub fn tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<u8>> {
        let tree_level = level
            .checked_mul(8)
            .filter(|l| *l < 64)
            .ok_or(LedgerError::OutOfRange { index, size: 0 })?;
        let last_node = index * 256 + width as u64;
        self.check_size(last_node << tree_level)?;
        let src = self.hashes();
        let mut out = Vec::with_capacity(width as usize * 32);
        for n in index * 256..last_node {
            out.extend_from_slice(&src.node(tree_level, n)?);
        }
        Ok(out)
    }
}
