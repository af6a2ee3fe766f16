//! One committed segment as the index holds it: the mapped file, the
//! ledger range it covers, and a lazily built filter of its idempotency
//! keys.

use std::io;
use std::path::Path;
use std::sync::OnceLock;

use fastbloom::BloomFilter;
use sealtrail_segment::{FormatError, Mapped, Segment};
use sealtrail_storage::Storage;

use crate::error::{io_at, IndexError};
use crate::schema::{IDEMPOTENCY, LEDGER};

/// One committed segment.
pub(crate) struct Part {
    pub(crate) file: String,
    pub(crate) bytes: u64,
    pub(crate) segment: Seg,
    /// Ledger indices of its first and last documents.
    pub(crate) first: u64,
    pub(crate) last: u64,
    /// Built on the first idempotency lookup that reaches this segment
    /// (or the damage that stopped it).
    keys: OnceLock<Result<KeyFilter, FormatError>>,
}

/// The idempotency keys a segment may hold. A key absent from the filter
/// is certainly absent from the segment, so a lookup of a fresh key (the
/// usual case on ingest) skips the segment's dictionary; about 1% of the
/// segments without a key still look it up. About 10 bits per key, built
/// from the dictionary's stored term hashes.
pub(crate) struct KeyFilter(pub(crate) BloomFilter);

const KEY_FILTER_FALSE_POSITIVES: f64 = 0.01;

/// A committed segment as queries read it.
pub(crate) type Seg = Segment<SegmentBytes>;

/// A segment's bytes: the file mapped where the storage has a real one,
/// else read whole onto the heap (simulated storage, in crash tests).
pub(crate) enum SegmentBytes {
    Mapped(Mapped),
    Loaded(Vec<u8>),
}

impl AsRef<[u8]> for SegmentBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            SegmentBytes::Mapped(map) => map.as_ref(),
            SegmentBytes::Loaded(bytes) => bytes,
        }
    }
}

impl Part {
    pub(crate) fn open(storage: &dyn Storage, dir: &Path, file: &str, bytes: u64) -> Result<Part, IndexError> {
        let path = dir.join(file);
        let bad = |reason: String| IndexError::BadSegment {
            path: path.clone(),
            reason,
        };
        // A missing file is damage; any other failure to map it (no memory,
        // too many open files, permissions) is not the index's fault, and
        // must not get it wiped.
        let read = match storage.real_path(&path) {
            // SAFETY: this crate never truncates or writes a segment file once
            // written: each is created new under a fresh number, synced, and
            // later only deleted, which leaves maps valid. Another process
            // must not change files in the index directory.
            #[allow(unsafe_code)]
            Some(real) => unsafe { Mapped::open(&real) }.map(SegmentBytes::Mapped),
            None => storage.read(&path).map(SegmentBytes::Loaded),
        };
        let contents = match read {
            Ok(contents) => contents,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(bad("missing".into())),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let len = contents.as_ref().len() as u64;
        if len != bytes {
            return Err(bad(format!("{len} bytes where the manifest says {bytes}")));
        }
        let segment = match Segment::open(contents) {
            Ok(segment) => segment,
            // Written by another version: rebuilt, as for another schema.
            Err(FormatError::OtherVersion { .. }) => return Err(IndexError::SchemaMismatch { dir: dir.to_path_buf() }),
            Err(e) => return Err(bad(e.to_string())),
        };
        let ledger = segment.column(LEDGER).ok_or_else(|| bad("no ledger column".into()))?;
        let last_doc = segment
            .docs()
            .checked_sub(1)
            .ok_or_else(|| bad("no documents".into()))?;
        let (first, last) = match (ledger.get(0), ledger.get(last_doc)) {
            (Ok(Some(first)), Ok(Some(last))) => (first, last),
            (Err(e), _) | (_, Err(e)) => return Err(bad(e.to_string())),
            _ => return Err(bad("unreadable ledger column".into())),
        };
        Ok(Part {
            file: file.to_string(),
            bytes,
            segment,
            first,
            last,
            keys: OnceLock::new(),
        })
    }

    /// The key filter; an error if the dictionary is damaged, as a filter
    /// that missed a key would send a duplicate into the ledger.
    pub(crate) fn keys(&self) -> Result<&KeyFilter, FormatError> {
        let keys = self.keys.get_or_init(|| {
            let terms = self.segment.field_terms(IDEMPOTENCY);
            let mut filter =
                BloomFilter::with_false_pos(KEY_FILTER_FALSE_POSITIVES).expected_items((terms.len()).max(1));
            for t in terms {
                filter.insert_hash(self.segment.term_hash_at(t)?);
            }
            Ok(KeyFilter(filter))
        });
        keys.as_ref().map_err(Clone::clone)
    }
}
