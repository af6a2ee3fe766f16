//! The manifest: the one file that says which segments are committed and
//! how many ledger entries they cover, replaced whole by rename so the two
//! change together (docs/query-index.md).

use std::path::Path;
use std::sync::Arc;

use sealtrail_storage::Storage;

use crate::error::{io_at, IndexError};
use crate::part::Part;
use crate::schema::SCHEMA_VERSION;

/// The committed state's file, replaced whole by rename.
pub(crate) const MANIFEST: &str = "MANIFEST";
pub(crate) const MANIFEST_TMP: &str = "MANIFEST.tmp";
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";

/// What a manifest says.
pub(crate) struct Manifest {
    pub(crate) watermark: u64,
    /// The root hash of the ledger's first `watermark` entries, when the
    /// writer was told it.
    pub(crate) root: Option<[u8; 32]>,
    /// Ledger entries below this are forgotten (pruned from the ledger):
    /// no query returns or counts them. 0 when none are.
    pub(crate) forgotten: u64,
    /// File name and length of each segment, oldest first.
    pub(crate) segments: Vec<(String, u64)>,
}

pub(crate) fn manifest_text(watermark: u64, root: Option<&[u8; 32]>, forgotten: u64, parts: &[Arc<Part>]) -> String {
    let mut text = format!("sealtrail-index {SCHEMA_VERSION}\nwatermark {watermark}\n");
    if let Some(root) = root {
        text.push_str("root ");
        for b in root {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
    }
    if forgotten > 0 {
        text.push_str(&format!("forgotten {forgotten}\n"));
    }
    for p in parts {
        text.push_str(&format!("segment {} {}\n", p.file, p.bytes));
    }
    text
}

pub(crate) fn parse_manifest(dir: &Path, text: &str) -> Result<Manifest, IndexError> {
    let path = dir.join(MANIFEST);
    let bad = |line: usize, reason: &str| IndexError::BadManifest {
        path: path.clone(),
        line,
        reason: reason.to_string(),
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split(' ').collect::<Vec<_>>()));
    match lines.next() {
        Some((_, words)) if words.len() == 2 && words[0] == "sealtrail-index" => {
            if words[1] != SCHEMA_VERSION.to_string() {
                return Err(IndexError::SchemaMismatch { dir: dir.to_path_buf() });
            }
        }
        _ => return Err(bad(1, "expected `sealtrail-index <version>`")),
    }
    let watermark = match lines.next() {
        Some((_, words)) if words.len() == 2 && words[0] == "watermark" => {
            words[1].parse().map_err(|_| bad(2, "watermark is not a number"))?
        }
        _ => return Err(bad(2, "expected `watermark <entries>`")),
    };
    let mut lines = lines.peekable();
    let mut root = None;
    if let Some((n, words)) = lines.next_if(|(_, words)| words[0] == "root") {
        root = match words.as_slice() {
            ["root", hex] => parse_root(hex),
            _ => None,
        };
        if root.is_none() {
            return Err(bad(n, "expected `root <64 lowercase hex digits>`"));
        }
    }
    let mut forgotten = 0;
    if let Some((n, words)) = lines.next_if(|(_, words)| words[0] == "forgotten") {
        forgotten = match words.as_slice() {
            ["forgotten", v] => v.parse().ok().filter(|&v| v > 0 && v <= watermark),
            _ => None,
        }
        .ok_or_else(|| {
            bad(
                n,
                "expected `forgotten <entries>`, at least 1 and at most the watermark",
            )
        })?;
    }
    let mut segments = Vec::new();
    for (n, words) in lines {
        match words.as_slice() {
            ["segment", file, bytes] if segment_number(file).is_some() => {
                let bytes = bytes.parse().map_err(|_| bad(n, "segment length is not a number"))?;
                segments.push((file.to_string(), bytes));
            }
            _ => return Err(bad(n, "expected `segment <NNNNNNNNNNNN.seg> <bytes>`")),
        }
    }
    Ok(Manifest {
        watermark,
        root,
        forgotten,
        segments,
    })
}

fn parse_root(hex: &str) -> Option<[u8; 32]> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut root = [0u8; 32];
    for (byte, pair) in root.iter_mut().zip(hex.chunks(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(root)
}

/// The number of a segment file name (`000000000042.seg`).
pub(crate) fn segment_number(file: &str) -> Option<u64> {
    let digits = file.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

pub(crate) fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<(), IndexError> {
    storage.sync_dir(dir).map_err(io_at(dir))
}

/// Replace the manifest with `text`: written beside it, synced, renamed
/// over it, and the rename synced.
pub(crate) fn write_manifest(storage: &dyn Storage, dir: &Path, text: &str) -> Result<(), IndexError> {
    let tmp = dir.join(MANIFEST_TMP);
    let f = storage.open(&tmp, true).map_err(io_at(&tmp))?;
    f.set_len(0).map_err(io_at(&tmp))?;
    f.write_all_at(text.as_bytes(), 0).map_err(io_at(&tmp))?;
    f.sync_data().map_err(io_at(&tmp))?;
    storage.rename(&tmp, &dir.join(MANIFEST)).map_err(io_at(&tmp))?;
    sync_dir(storage, dir)
}
