//! Offline verification of a log directory from its entries up.
//!
//! Recomputes every leaf hash from the stored entries, rebuilds the tree,
//! and compares it with the stored hashes, the index, and the signed
//! checkpoint (whose signature it checks). Optionally checks that an older
//! checkpoint the caller kept is a prefix of what is stored now, which is
//! how a rollback or rewritten history is caught. Every finding names the
//! entry index, the file and the byte offset it concerns.
//!
//! Deliberately read-only and independent of [`crate::log::Log::open`]: it
//! must report on a directory that open would refuse.

use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, HEADER_LEN, RECORD_HEADER_LEN};
use crate::log::packs::{pack_for, Pack, Unpacker, BUNDLE};
use crate::log::segments::Segments;
use crate::log::{CHECKPOINT_FILE, ENTRIES_FILE, HASHES_FILE, INDEX_FILE, PUBKEY_FILE};
use crate::read_ahead::read_ahead;
use crate::storage::{Storage, StorageFile};
use sealtrail_merkle::checkpoint::{open_checkpoint, Checkpoint};
use sealtrail_merkle::note::{Note, Verifier};
use sealtrail_merkle::tree::Frontier;
use sealtrail_merkle::{leaf_hash, Hash};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// At most this many findings are listed; the count says how many there were.
const MAX_FINDINGS: usize = 100;
const CHUNK: usize = 4 << 20;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// File the finding is about (name within the log directory).
    pub file: &'static str,
    /// Entry index it concerns, when there is one.
    pub index: Option<u64>,
    /// Byte offset in `file`, when known.
    pub offset: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(o) = self.offset {
            write!(f, " at byte {o}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct Report {
    pub dir: PathBuf,
    /// Entries found: the pruned ones (counted from their stored leaf
    /// hashes) and those read from the entry files.
    pub entries: u64,
    /// Entries below this index are pruned (their bytes are gone by
    /// design): their stored leaf hashes were checked against the stored
    /// tree above them and the signed root, and nothing else.
    pub pruned_below: u64,
    /// The signed checkpoint found, if it could be read.
    pub checkpoint: Option<Checkpoint>,
    pub verifier: String,
    pub findings: Vec<Finding>,
    /// Findings beyond those listed.
    pub more_findings: usize,
    /// Observations that are not integrity failures, such as a tail of
    /// entries no signed checkpoint covers yet (a crash, or a writer
    /// mid-commit), which the next open of the log removes.
    pub notes: Vec<Finding>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

struct Collector {
    findings: Vec<Finding>,
    more: usize,
    notes: Vec<Finding>,
    /// Entries at or past this index were never acknowledged.
    signed: Option<u64>,
}

impl Collector {
    fn add(&mut self, file: &'static str, index: Option<u64>, offset: Option<u64>, message: String) {
        if let (Some(i), Some(signed)) = (index, self.signed) {
            if i >= signed && file != CHECKPOINT_FILE {
                if self.notes.len() < MAX_FINDINGS {
                    self.notes.push(Finding {
                        file,
                        index,
                        offset,
                        message: format!("{message} (after the last signed entry)"),
                    });
                }
                return;
            }
        }
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                file,
                index,
                offset,
                message,
            });
        } else {
            self.more += 1;
        }
    }
}

/// What a [`Sequential`] reads.
enum Source {
    File(Arc<dyn StorageFile>),
    /// The entry segments, by log-wide offset.
    Segments(Segments),
    /// Entry files that could not be opened (a finding says why).
    Nothing,
}

/// Sequential reader over a [`StorageFile`] in large chunks.
struct Sequential {
    src: Source,
    path: PathBuf,
    len: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl Sequential {
    fn new(storage: &dyn Storage, path: PathBuf) -> Result<Self> {
        let file = storage.open(&path, false).ctx("open", &path)?;
        let len = file.len().ctx("stat", &path)?;
        Ok(Self {
            src: Source::File(file),
            path,
            len,
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// `n` bytes at `offset`, or `None` if the file ends first.
    fn get(&mut self, offset: u64, n: usize) -> Result<Option<&[u8]>> {
        if offset + n as u64 > self.len {
            return Ok(None);
        }
        let in_buf = offset >= self.buf_start && offset + n as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let want = CHUNK.max(n).min((self.len - offset) as usize);
            self.buf.resize(want, 0);
            match &self.src {
                Source::File(f) => f.read_exact_at(&mut self.buf, offset).ctx("read", &self.path)?,
                Source::Segments(s) => s.read_at(&mut self.buf, offset)?,
                Source::Nothing => return Ok(None),
            }
            self.buf_start = offset;
        }
        let at = (offset - self.buf_start) as usize;
        Ok(Some(&self.buf[at..at + n]))
    }
}

/// Verify the log in `dir`. `key`: the verifier key to trust (default: the
/// log's own `log.pub`). `since`: an older signed checkpoint the caller kept.
/// `Err` only for I/O or usage problems; integrity problems are findings.
pub fn verify_log(storage: &dyn Storage, dir: &Path, key: Option<&Verifier>, since: Option<&[u8]>) -> Result<Report> {
    verify_log_with_progress(storage, dir, key, since, &mut |_, _| {})
}

/// [`verify_log`], calling `progress(bytes, total)` as it reads through the
/// entries file (`total` is the file's length when the check began).
pub fn verify_log_with_progress(
    storage: &dyn Storage,
    dir: &Path,
    key: Option<&Verifier>,
    since: Option<&[u8]>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report> {
    let verifier = match key {
        Some(v) => v.clone(),
        None => {
            let path = dir.join(PUBKEY_FILE);
            let text = storage.read(&path).ctx("read", &path)?;
            Verifier::parse(String::from_utf8_lossy(&text).trim()).map_err(|e| LedgerError::Key {
                path,
                detail: e.to_string(),
            })?
        }
    };
    let mut c = Collector {
        findings: Vec::new(),
        more: 0,
        notes: Vec::new(),
        signed: None,
    };
    let (checkpoint, pruned_below) = read_checkpoint(storage, dir, &verifier, &mut c)?;
    c.signed = checkpoint.as_ref().map(|cp| cp.size);
    let old = since.and_then(|note| match open_checkpoint(note, &verifier) {
        Ok((cp, _)) => Some(cp),
        Err(e) => {
            c.add(
                CHECKPOINT_FILE,
                None,
                None,
                format!("the checkpoint given with --since does not verify: {e}"),
            );
            None
        }
    });

    let open = |path: &Path| storage.open(path, false);
    let (src, len) = match Segments::load(storage, dir, &open).and_then(|s| {
        let end = s.end().ctx("stat", &s.dir.join(&s.active().name))?;
        Ok((s, end))
    }) {
        Ok((s, end)) => (Source::Segments(s), end),
        Err(e) => {
            c.add(ENTRIES_FILE, None, Some(0), e.to_string());
            (Source::Nothing, 0)
        }
    };
    let mut entries = Sequential {
        src,
        path: dir.join(ENTRIES_FILE),
        len,
        buf: Vec::new(),
        buf_start: 0,
    };
    let mut index = Sequential::new(storage, dir.join(INDEX_FILE))?;
    let mut hashes = Sequential::new(storage, dir.join(HASHES_FILE))?;
    for (seq, name, magic) in [
        (&mut index, INDEX_FILE, format::INDEX_MAGIC),
        (&mut hashes, HASHES_FILE, format::HASHES_MAGIC),
    ] {
        match seq.get(0, HEADER_LEN as usize)? {
            Some(h) => {
                if let Err(e) = format::decode_header(h, magic) {
                    c.add(name, None, Some(0), format!("header: {e}"));
                }
            }
            None => c.add(name, None, Some(0), "file is shorter than its 16-byte header".into()),
        }
    }

    let signed_size = checkpoint.as_ref().map(|cp| cp.size);
    let old_size = old.as_ref().map(|cp| cp.size);
    let mut root_at_signed: Option<Hash> = (signed_size == Some(0)).then_some(sealtrail_merkle::EMPTY_ROOT);
    let mut root_at_old: Option<Hash> = (old_size == Some(0)).then_some(sealtrail_merkle::EMPTY_ROOT);
    let mut frontier = Frontier::new();
    let mut bad_leaves: Vec<u64> = Vec::new();
    let mut offset = HEADER_LEN;
    let mut stored_seq = 0u64;
    let mut hashes_short_reported = false;
    let mut index_short_reported = false;
    let mut unreadable = false;

    let packs = match &entries.src {
        Source::Segments(s) => s.packs.clone(),
        _ => Vec::new(),
    };
    let mut tree = Tree {
        frontier: &mut frontier,
        stored_seq: &mut stored_seq,
        hashes: &mut hashes,
        signed_size,
        old_size,
        root_at_signed: &mut root_at_signed,
        root_at_old: &mut root_at_old,
    };
    if pruned_below > 0 {
        let pruned = pruned_below;
        c.notes.push(Finding {
            file: ENTRIES_FILE,
            index: Some(0),
            offset: None,
            message: format!(
                "entries 0..{pruned} are pruned: their bytes are gone, their stored hashes were checked \
                 against each other and the signed root"
            ),
        });
        // The stored leaf hashes stand in for the entries: the tree above
        // them must still be the stored one.
        while tree.frontier.size() < pruned {
            if !tree.push_stored_leaf(&mut c, "pruned")? {
                unreadable = true;
                break;
            }
        }
    }
    // Packed bundles: each frame checked, decompressed (version 3: its
    // content checksum checked, its records rebuilt), each record
    // checked, each leaf hashed and the tree compared as for segments.
    // Frames are read and decompressed on a second thread, a few bundles
    // ahead, while this one hashes.
    if !unreadable && pack_for(&packs, tree.frontier.size()).is_some() {
        let mut next = tree.frontier.size();
        let mut unpacker = Unpacker::new().ctx("decompress", &dir.join("pack"))?;
        let produce = |old: Option<Unpacked>| {
            let pack = pack_for(&packs, next)?.clone();
            let b = ((next - pack.first) / BUNDLE) as usize;
            let mut item = old.unwrap_or_else(|| Unpacked {
                pack: pack.clone(),
                b,
                frame: Vec::new(),
                scratch: Vec::new(),
                records: Vec::new(),
                error: None,
            });
            item.error = pack
                .read_frame(b, &mut item.frame)
                .and_then(|()| pack.decode(b, &item.frame, &mut unpacker, &mut item.scratch, &mut item.records))
                .err()
                .map(|e| e.to_string());
            (item.pack, item.b) = (pack, b);
            next += BUNDLE;
            Some(item)
        };
        read_ahead(PACKS_AHEAD, produce, |item: &Unpacked| {
            let k = tree.frontier.size();
            let (pack, records) = (&item.pack, &item.records);
            let frame_at = pack.frames[item.b].offset;
            if let Some(e) = &item.error {
                c.add(PACKS, Some(k), Some(frame_at), format!("{}: {e}", pack.name));
                for _ in 0..BUNDLE {
                    if !tree.push_stored_leaf(&mut c, "damaged")? {
                        unreadable = true;
                        return Ok(false);
                    }
                }
                return Ok(true);
            }
            let mut at = 0usize;
            for index in k..k + BUNDLE {
                match format::decode_record(&records[at..], index) {
                    Ok(data) => {
                        at += RECORD_HEADER_LEN as usize + data.len();
                        tree.push(leaf_hash(data), &mut c, index);
                    }
                    Err(e) => {
                        let detail = format::explain_bad_record(&records[at..], index, &e);
                        c.add(
                            PACKS,
                            Some(index),
                            Some(frame_at),
                            format!("{}: entry {index}: {detail}", pack.name),
                        );
                        // Go on from the stored hash, and from the next
                        // record if its length can be trusted.
                        let len = format::decode_record_header(&records[at..]).map_or(usize::MAX, |(l, _)| l as usize);
                        at = at
                            .saturating_add(RECORD_HEADER_LEN as usize)
                            .saturating_add(len)
                            .min(records.len());
                        if !tree.push_stored_leaf(&mut c, "damaged")? {
                            unreadable = true;
                            return Ok(false);
                        }
                    }
                }
            }
            Ok(true)
        })?;
    }
    // The first entry kept in a segment starts one (see prune, compact).
    let first_raw = frontier.size();
    if first_raw > 0 && !unreadable {
        // Or, after a crash mid-compaction, the index says where it is.
        let start = match &entries.src {
            Source::Segments(s) => s.list.iter().find(|seg| seg.first == first_raw).map(|seg| seg.start),
            _ => None,
        };
        let start = match start {
            Some(s) => Some(s),
            None => index
                .get(HEADER_LEN + first_raw * 8, 8)?
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
        };
        offset = start.unwrap_or(entries.len);
        if start.is_none() && signed_size.is_some_and(|n| n > first_raw) {
            c.add(
                ENTRIES_FILE,
                Some(first_raw),
                None,
                format!("no entries file starts at entry {first_raw}, the first one not pruned or packed"),
            );
        }
    }

    let total = entries.len;
    let mut reported = 0u64;
    loop {
        if unreadable {
            break;
        }
        let k = frontier.size();
        // About every 4 MiB, the size of a read.
        if offset - reported >= CHUNK as u64 {
            reported = offset;
            progress(offset, total);
        }
        let Some(hdr) = entries.get(offset, RECORD_HEADER_LEN as usize)? else {
            if offset < entries.len {
                c.add(
                    ENTRIES_FILE,
                    Some(k),
                    Some(offset),
                    format!(
                        "file ends {} bytes into the header of entry {k}: truncated",
                        entries.len - offset
                    ),
                );
            }
            break;
        };
        let header = match format::decode_record_header(hdr) {
            Ok((len, _)) if offset + RECORD_HEADER_LEN + len as u64 <= entries.len => Ok(len as usize),
            Ok((len, _)) => Err((
                true,
                format!("needs {len} bytes but the file ends at byte {}", entries.len),
            )),
            Err(e) => Err((false, e.to_string())),
        };
        let len = match header {
            Ok(len) => len,
            Err((past_end, why)) => {
                // The length field may be damaged: the index still says where
                // the next record starts, so carry on from there if it can.
                let next = index
                    .get(HEADER_LEN + (k + 1) * 8, 8)?
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
                let plausible = next.filter(|n| {
                    *n >= offset + RECORD_HEADER_LEN
                        && n - offset - RECORD_HEADER_LEN <= format::MAX_ENTRY as u64
                        && *n <= entries.len
                });
                match plausible {
                    Some(n) => {
                        let msg = format!(
                            "entry {k}: {why}; its length field was modified (the index says it ends at byte {n})"
                        );
                        c.add(ENTRIES_FILE, Some(k), Some(offset), msg);
                        bad_leaves.push(k);
                        (n - offset - RECORD_HEADER_LEN) as usize
                    }
                    None => {
                        let msg = if past_end {
                            format!("entry {k} {why}: truncated")
                        } else {
                            format!("entry {k}: {why}; nothing after it can be read")
                        };
                        c.add(ENTRIES_FILE, Some(k), Some(offset), msg);
                        unreadable = !past_end;
                        break;
                    }
                }
            }
        };
        let Some(record) = entries.get(offset, RECORD_HEADER_LEN as usize + len)? else {
            break;
        };
        let data = &record[RECORD_HEADER_LEN as usize..];
        // Checked after the tree hashes below, which tell a damaged
        // checksum field apart from damaged data.
        let crc_failed = format::decode_record(record, k).is_err() && bad_leaves.last() != Some(&k);
        let moved = if crc_failed {
            format::written_as(record, k)
        } else {
            None
        };
        // The index must point at this record.
        match index.get(HEADER_LEN + k * 8, 8)? {
            Some(b) => {
                let stored = u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                if stored != offset {
                    c.add(
                        INDEX_FILE,
                        Some(k),
                        Some(HEADER_LEN + k * 8),
                        format!("entry {k} is at byte {offset} of the entries file, the index says {stored}"),
                    );
                }
            }
            None if !index_short_reported => {
                index_short_reported = true;
                c.add(
                    INDEX_FILE,
                    Some(k),
                    Some(index.len),
                    format!("index ends before entry {k} (reopening the log rebuilds it)"),
                );
            }
            None => {}
        }
        let leaf = leaf_hash(data);
        let mut mismatches: Vec<(u8, u64, u64)> = Vec::new();
        let mut short = false;
        frontier.push(leaf, |level, n, h| {
            let at = HEADER_LEN + stored_seq * 32;
            stored_seq += 1;
            match hashes.get(at, 32) {
                Ok(Some(stored)) if stored == h => {}
                Ok(Some(_)) => mismatches.push((level, n, at)),
                _ => short = true,
            }
        });
        if crc_failed {
            let leaf_differs = mismatches.iter().any(|(level, _, _)| *level == 0) || short;
            let msg = match moved {
                Some(j) => {
                    format!("entry {k} holds the record written as entry {j}: entries were moved, swapped or deleted")
                }
                None if leaf_differs => format!("entry {k}: checksum mismatch, its bytes were modified"),
                None => {
                    format!("entry {k}: record checksum damaged, though its bytes still hash to the stored leaf hash")
                }
            };
            c.add(ENTRIES_FILE, Some(k), Some(offset), msg);
            bad_leaves.push(k);
        }
        for (level, n, at) in mismatches {
            let (lo, hi) = (n << level, (n + 1) << level);
            if bad_leaves.iter().any(|b| (lo..hi).contains(b)) {
                continue;
            }
            c.add(HASHES_FILE, Some(lo), Some(at), stored_hash_differs(level, n));
        }
        if short && !hashes_short_reported {
            hashes_short_reported = true;
            c.add(
                HASHES_FILE,
                Some(k),
                Some(hashes.len),
                format!("hashes end before entry {k} (reopening the log rebuilds them)"),
            );
        }
        offset += RECORD_HEADER_LEN + len as u64;
        let size = frontier.size();
        if Some(size) == signed_size {
            root_at_signed = Some(frontier.root());
        }
        if Some(size) == old_size {
            root_at_old = Some(frontier.root());
        }
    }
    let found = frontier.size();
    progress(offset.min(total), total);

    c.signed = None;
    if let Some(cp) = &checkpoint {
        match root_at_signed {
            None if unreadable => c.add(
                ENTRIES_FILE,
                Some(found),
                Some(offset),
                format!(
                    "entries {found}..{} of the signed checkpoint could not be read",
                    cp.size
                ),
            ),
            None => c.add(
                ENTRIES_FILE,
                Some(found),
                Some(offset),
                format!(
                    "holds {found} entries but the signed checkpoint covers {}: entries {found}..{} are missing \
                     (deleted, truncated or rolled back)",
                    cp.size, cp.size
                ),
            ),
            Some(root) if root != cp.root => c.add(
                CHECKPOINT_FILE,
                None,
                None,
                format!(
                    "the tree rebuilt from the entries at size {} does not have the signed root",
                    cp.size
                ),
            ),
            Some(_) => {}
        }
    }
    if let Some(old) = &old {
        match root_at_old {
            None => c.add(
                ENTRIES_FILE,
                Some(found),
                None,
                format!(
                    "rollback: the log holds {found} entries but the checkpoint given with --since (size {}) \
                     covers more",
                    old.size
                ),
            ),
            Some(root) if root != old.root => c.add(
                ENTRIES_FILE,
                None,
                None,
                format!("the log's tree at size {} is not the one in the checkpoint given with --since: history was rewritten", old.size),
            ),
            Some(_) => {}
        }
        if let Some(cp) = &checkpoint {
            if cp.size < old.size {
                c.add(
                    CHECKPOINT_FILE,
                    None,
                    None,
                    format!(
                        "rollback: the latest signed checkpoint (size {}) is older than the one given (size {})",
                        cp.size, old.size
                    ),
                );
            }
        }
    }
    let Collector {
        findings, more, notes, ..
    } = c;
    Ok(Report {
        dir: dir.to_path_buf(),
        entries: found,
        pruned_below,
        checkpoint,
        verifier: verifier.to_string(),
        findings,
        more_findings: more,
        notes,
    })
}

/// Findings about packs name this file kind.
const PACKS: &str = "pack";

/// Packed bundles decompressed ahead of the hashing (about 90 KB each).
const PACKS_AHEAD: usize = 8;

/// One packed bundle, read and decompressed.
struct Unpacked {
    pack: Arc<Pack>,
    /// Its number within `pack`.
    b: usize,
    frame: Vec<u8>,
    /// What the frame decompresses to (before version 3's records are
    /// rebuilt from it).
    scratch: Vec<u8>,
    records: Vec<u8>,
    /// Why its frame could not be read or decompressed.
    error: Option<String>,
}

/// The tree rebuilt so far, checked against the stored hashes as it grows.
struct Tree<'a> {
    frontier: &'a mut Frontier,
    stored_seq: &'a mut u64,
    hashes: &'a mut Sequential,
    signed_size: Option<u64>,
    old_size: Option<u64>,
    root_at_signed: &'a mut Option<Hash>,
    root_at_old: &'a mut Option<Hash>,
}

impl Tree<'_> {
    /// Add entry `index`'s leaf hash; every stored hash it completes must
    /// match.
    fn push(&mut self, leaf: Hash, c: &mut Collector, index: u64) {
        let mut mismatches: Vec<(u8, u64, u64)> = Vec::new();
        let (seq, hashes) = (&mut *self.stored_seq, &mut *self.hashes);
        self.frontier.push(leaf, |level, n, h| {
            let at = HEADER_LEN + *seq * 32;
            *seq += 1;
            match hashes.get(at, 32) {
                Ok(Some(stored)) if stored == h => {}
                _ => mismatches.push((level, n, at)),
            }
        });
        for (level, n, at) in mismatches {
            let msg = if level == 0 {
                format!("stored leaf hash of entry {index} differs from the hash of the packed entry")
            } else {
                stored_hash_differs(level, n)
            };
            c.add(HASHES_FILE, Some(n << level), Some(at), msg);
        }
        self.roots();
    }

    /// Add the next leaf from its stored hash (a pruned or unreadable
    /// entry): only the hashes above it are checked. False if the hashes
    /// file ends first.
    fn push_stored_leaf(&mut self, c: &mut Collector, why: &str) -> Result<bool> {
        let k = self.frontier.size();
        let at = HEADER_LEN + *self.stored_seq * 32;
        let Some(leaf) = self.hashes.get(at, 32)?.map(|b| {
            let mut h = [0u8; 32];
            h.copy_from_slice(b);
            h
        }) else {
            c.add(
                HASHES_FILE,
                Some(k),
                Some(self.hashes.len),
                format!("hashes end before {why} entry {k}: it can no longer be checked"),
            );
            return Ok(false);
        };
        let mut mismatches: Vec<(u8, u64, u64)> = Vec::new();
        let (seq, hashes) = (&mut *self.stored_seq, &mut *self.hashes);
        self.frontier.push(leaf, |level, n, h| {
            let at = HEADER_LEN + *seq * 32;
            *seq += 1;
            match hashes.get(at, 32) {
                Ok(Some(stored)) if stored == h => {}
                _ => mismatches.push((level, n, at)),
            }
        });
        for (level, n, at) in mismatches {
            c.add(
                HASHES_FILE,
                Some(n << level),
                Some(at),
                format!(
                    "stored hash of node ({level}, {n}) differs from the hash of its stored children ({why} range)"
                ),
            );
        }
        self.roots();
        Ok(true)
    }

    fn roots(&mut self) {
        let size = self.frontier.size();
        if Some(size) == self.signed_size {
            *self.root_at_signed = Some(self.frontier.root());
        }
        if Some(size) == self.old_size {
            *self.root_at_old = Some(self.frontier.root());
        }
    }
}

/// A stored tree hash that the entries no longer produce.
pub(crate) fn stored_hash_differs(level: u8, n: u64) -> String {
    let what = if level == 0 {
        format!("leaf hash of entry {n}")
    } else {
        let (lo, hi) = (n << level, (n + 1) << level);
        format!("hash of node ({level}, {n}) over entries {lo}..{hi}")
    };
    format!("stored {what} differs from the hash recomputed from the entries")
}

/// The current slot's checkpoint, with its signature checked; findings for
/// anything wrong. Returns the checkpoint's claims even when the signature
/// is bad, so the rest of the checks still run.
fn read_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
    verifier: &Verifier,
    c: &mut Collector,
) -> Result<(Option<Checkpoint>, u64)> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = storage.read(&path).ctx("read", &path)?;
    let slot = match format::newest_slot(&bytes) {
        Ok(slot) => slot,
        Err(e) => {
            c.add(CHECKPOINT_FILE, None, Some(0), e);
            return Ok((None, 0));
        }
    };
    let pruned = slot.pruned_below;
    match open_checkpoint(&slot.note, verifier) {
        Ok((cp, _)) => Ok((Some(cp), pruned)),
        Err(e) => {
            c.add(
                CHECKPOINT_FILE,
                None,
                None,
                format!("the signed checkpoint is not signed by {verifier}: {e}"),
            );
            let cp = Note::parse(&slot.note)
                .ok()
                .and_then(|n| Checkpoint::parse(&n.text).ok());
            Ok((cp, pruned))
        }
    }
}
