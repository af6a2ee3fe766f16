//! The entry records of a log, kept in one or more segment files.
//!
//! Every record has one log-wide byte offset, the one the index file
//! stores. A log starts with the single segment `entries`, whose file
//! offsets are these offsets. Pruning starts later segments,
//! `entries-<first>` (16 hex digits, the index of its first entry), each
//! with a header that says which offset its first record has, so offsets
//! stay what the index says while the bytes below the pruned boundary are
//! deleted with their files. The last segment is the one appends go to;
//! the others never change again.
//!
//! After a crash between writing a replacement segment and deleting what
//! it replaces, two segments may hold the same records: the one that
//! starts later serves every offset from its start on, so both hold the
//! same bytes for whatever is read.
//!
//! Deliberately not here: deciding when to start a segment (prune,
//! compaction, and a paced compaction that defers).

use super::packs::{load_packs, Pack};
use super::ENTRIES_FILE;
use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::storage::{Storage, StorageFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name prefix of the segments after the first.
pub(crate) const SEGMENT_PREFIX: &str = "entries-";
/// Suffix of a file still being written; open deletes leftovers.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// One segment file.
#[derive(Clone)]
pub(crate) struct Segment {
    pub(crate) name: String,
    pub(crate) file: Arc<dyn StorageFile>,
    /// Index of its first entry.
    pub(crate) first: u64,
    /// Log-wide offset of its first record.
    pub(crate) start: u64,
    /// Bytes before its first record.
    pub(crate) header: u64,
}

impl Segment {
    /// The file position of log-wide offset `offset`.
    pub(crate) fn pos(&self, offset: u64) -> u64 {
        offset - self.start + self.header
    }

    /// Log-wide offset just past its last byte.
    pub(crate) fn end(&self) -> io::Result<u64> {
        Ok(self.file.len()?.saturating_sub(self.header) + self.start)
    }

    pub(crate) fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
}

/// The name of the segment whose first entry is `first`.
pub(crate) fn segment_name(first: u64) -> String {
    if first == 0 {
        ENTRIES_FILE.to_string()
    } else {
        format!("{SEGMENT_PREFIX}{first:016x}")
    }
}

/// The entry files of a log: its segments, in order, the last the one
/// appended to, and its packs (compressed bundles), by first entry. One
/// value, so a reader's copy never misses entries that moved from a
/// segment to a pack.
#[derive(Clone)]
pub(crate) struct Segments {
    pub(crate) dir: PathBuf,
    pub(crate) list: Vec<Segment>,
    pub(crate) packs: Vec<Arc<Pack>>,
}

impl Segments {
    /// Find and open the segments in `dir` with `open`, checking their
    /// headers. Files being written (`.tmp`) are not segments.
    pub(crate) fn load(
        storage: &dyn Storage,
        dir: &Path,
        open: &dyn Fn(&Path) -> io::Result<Arc<dyn StorageFile>>,
    ) -> Result<Segments> {
        let corrupt = |name: &str, detail: String| LedgerError::Corrupt {
            file: dir.join(name),
            detail,
        };
        let mut list = Vec::new();
        for name in storage.list_files(dir).ctx("list", dir)? {
            let first = if name == ENTRIES_FILE {
                0
            } else if let Some(hex) = name.strip_prefix(SEGMENT_PREFIX) {
                match u64::from_str_radix(hex, 16) {
                    Ok(first) if hex.len() == 16 && first > 0 => first,
                    _ => continue,
                }
            } else {
                continue;
            };
            let path = dir.join(&name);
            let file = open(&path).ctx("open", &path)?;
            let segment = if first == 0 {
                let mut h = [0u8; HEADER_LEN as usize];
                file.read_exact_at(&mut h, 0).ctx("read header", &path)?;
                format::decode_header(&h, format::ENTRIES_MAGIC).map_err(|e| corrupt(&name, format!("header: {e}")))?;
                Segment {
                    name,
                    file,
                    first: 0,
                    start: HEADER_LEN,
                    header: HEADER_LEN,
                }
            } else {
                let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
                file.read_exact_at(&mut h, 0).ctx("read header", &path)?;
                let (stored_first, start) =
                    format::decode_segment_header(&h).map_err(|e| corrupt(&name, format!("header: {e}")))?;
                if stored_first != first {
                    return Err(corrupt(
                        &name,
                        format!("header says its first entry is {stored_first}, its name says {first}"),
                    ));
                }
                Segment {
                    name,
                    file,
                    first,
                    start,
                    header: SEGMENT_HEADER_LEN,
                }
            };
            list.push(segment);
        }
        list.sort_by_key(|s| s.first);
        if list.is_empty() {
            return Err(corrupt(
                ENTRIES_FILE,
                "no entries file (`entries` or `entries-<first>`)".into(),
            ));
        }
        for pair in list.windows(2) {
            if pair[1].start <= pair[0].start {
                return Err(corrupt(
                    &pair[1].name,
                    format!(
                        "its first record is at log offset {}, not after that of {} ({})",
                        pair[1].start, pair[0].name, pair[0].start
                    ),
                ));
            }
        }
        let packs = load_packs(storage, dir, open)?;
        Ok(Segments {
            dir: dir.to_path_buf(),
            list,
            packs,
        })
    }

    /// The segment appended to.
    pub(crate) fn active(&self) -> &Segment {
        // `load` refuses an empty list and nothing empties it.
        &self.list[self.list.len() - 1]
    }

    /// Position in `list` of the segment holding log-wide offset `offset`.
    fn holding(&self, offset: u64) -> Option<usize> {
        self.list.iter().rposition(|s| s.start <= offset)
    }

    /// Log-wide offset past the last record.
    pub(crate) fn end(&self) -> io::Result<u64> {
        self.active().end()
    }

    pub(crate) fn path(&self, offset: u64) -> PathBuf {
        let name = self
            .holding(offset)
            .map_or(ENTRIES_FILE, |i| self.list[i].name.as_str());
        self.dir.join(name)
    }

    /// Fill `buf` from log-wide offset `offset`, across segments.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let Some(i) = self.holding(at) else {
                return Err(LedgerError::Corrupt {
                    file: self.dir.join(ENTRIES_FILE),
                    detail: format!("no entries file holds log offset {at} (it was deleted)"),
                });
            };
            let s = &self.list[i];
            let limit = self.list.get(i + 1).map_or(u64::MAX, |n| n.start);
            let n = ((limit - at) as usize).min(buf.len() - done);
            s.file
                .read_exact_at(&mut buf[done..done + n], s.pos(at))
                .ctx_with("read", || self.dir.join(&s.name))?;
            done += n;
        }
        Ok(())
    }
}
