//! The manifest of a backup (docs/backup.md): which files the backup holds,
//! each as a list of chunks stored as objects named by their SHA-256, the
//! SHA-256 of every whole file, and the checkpoint of every log. Text, one
//! record a line, closed by the SHA-256 of everything before that line, so
//! a damaged manifest is told apart from a damaged file.
//!
//! Deliberately only encoding and decoding: no I/O.

use crate::BackupError;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// First line of every manifest.
pub const MAGIC_LINE: &str = "sealtrail-backup 1";

/// How a file is copied into a backup and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows: a later backup keeps the earlier chunks once the source
    /// still starts with them, and adds one chunk with what was appended.
    AppendOnly,
    /// Never changes once named: skipped when an earlier backup holds it
    /// at the same length.
    Immutable,
    /// Copied whole every time (a checkpoint file, the metadata database,
    /// anything the data directory holds that is neither of the above).
    Whole,
}

impl Kind {
    fn code(self) -> char {
        match self {
            Kind::AppendOnly => 'a',
            Kind::Immutable => 'i',
            Kind::Whole => 'w',
        }
    }
    fn from_code(s: &str) -> Option<Kind> {
        match s {
            "a" => Some(Kind::AppendOnly),
            "i" => Some(Kind::Immutable),
            "w" => Some(Kind::Whole),
            _ => None,
        }
    }
}

/// A SHA-256 digest.
pub type Digest32 = [u8; 32];

/// One piece of a file, stored as the object named by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub len: u64,
    pub sha256: Digest32,
}

/// One file of the data directory as the backup holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Path inside the data directory, `/`-separated, relative.
    pub path: String,
    pub kind: Kind,
    /// Permission bits (e.g. 0o600 for keys), restored as they were.
    pub mode: u32,
    pub len: u64,
    /// SHA-256 of the whole file (the chunks' bytes in order).
    pub sha256: Digest32,
    /// The file's bytes in order; their lengths add up to `len`.
    pub chunks: Vec<Chunk>,
}

/// A log's signed checkpoint as the backup holds it: its entries are in
/// the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub name: String,
    pub size: u64,
    pub root: Digest32,
}

/// The decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// When the backup was taken, RFC 3339 UTC.
    pub created: String,
    pub logs: Vec<LogRecord>,
    /// Sorted by path.
    pub files: Vec<FileRecord>,
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex32(s: &str) -> Option<Digest32> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Whether `path` may be stored: relative, `/`-separated, no empty, `.` or
/// `..` component, no control character (a manifest line holds it whole).
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.chars().any(char::is_control)
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Manifest {
    /// The manifest's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::new();
        let _ = writeln!(s, "{MAGIC_LINE}");
        let _ = writeln!(s, "created {}", self.created);
        for l in &self.logs {
            let _ = writeln!(s, "log {} {} {}", l.name, l.size, hex(&l.root));
        }
        for f in &self.files {
            let _ = writeln!(
                s,
                "file {} {:04o} {} {} {} {}",
                f.kind.code(),
                f.mode,
                f.len,
                hex(&f.sha256),
                f.chunks.len(),
                f.path
            );
            for c in &f.chunks {
                let _ = writeln!(s, "chunk {} {}", c.len, hex(&c.sha256));
            }
        }
        let digest = Sha256::digest(s.as_bytes());
        let _ = writeln!(s, "end {}", hex(&digest));
        s.into_bytes()
    }

    /// Decode and check a manifest; errors name the line.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, BackupError> {
        let bad = |line: usize, detail: String| BackupError::Damaged {
            file: crate::MANIFEST_FILE.to_string(),
            detail: format!("line {line}: {detail}"),
        };
        let text = std::str::from_utf8(bytes).map_err(|e| bad(0, format!("not UTF-8 at byte {}", e.valid_up_to())))?;
        if !text.ends_with('\n') {
            return Err(bad(
                text.lines().count(),
                "the manifest does not end with a line `end <sha256>`".into(),
            ));
        }
        let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
        let last = lines.len();
        let end = lines[last - 1];
        let Some(sum) = end.strip_prefix("end ").and_then(unhex32) else {
            return Err(bad(last, "the manifest does not end with a line `end <sha256>`".into()));
        };
        let body_len = text.len() - end.len() - 1;
        if Sha256::digest(&bytes[..body_len]).as_slice() != sum {
            return Err(bad(
                last,
                "the SHA-256 of the manifest does not match its `end` line".into(),
            ));
        }
        if lines[0] != MAGIC_LINE {
            return Err(bad(1, format!("expected `{MAGIC_LINE}`")));
        }
        let mut m = Manifest::default();
        let mut i = 1;
        while i < last - 1 {
            let n = i + 1;
            let line = lines[i];
            i += 1;
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "created" => m.created = rest.to_string(),
                "log" => {
                    let f: Vec<&str> = rest.split(' ').collect();
                    let (Some(name), Some(size), Some(root)) = (
                        f.first(),
                        f.get(1).and_then(|s| s.parse().ok()),
                        f.get(2).and_then(|s| unhex32(s)),
                    ) else {
                        return Err(bad(n, "expected `log <name> <size> <root>`".into()));
                    };
                    if f.len() != 3 {
                        return Err(bad(n, "expected `log <name> <size> <root>`".into()));
                    }
                    m.logs.push(LogRecord {
                        name: name.to_string(),
                        size,
                        root,
                    });
                }
                "file" => {
                    let f: Vec<&str> = rest.splitn(6, ' ').collect();
                    let parsed = (|| {
                        Some((
                            Kind::from_code(f.first()?)?,
                            u32::from_str_radix(f.get(1)?, 8).ok()?,
                            f.get(2)?.parse::<u64>().ok()?,
                            unhex32(f.get(3)?)?,
                            f.get(4)?.parse::<usize>().ok()?,
                            f.get(5)?.to_string(),
                        ))
                    })();
                    let Some((kind, mode, len, sha256, count, path)) = parsed else {
                        return Err(bad(
                            n,
                            "expected `file <kind> <mode> <length> <sha256> <chunks> <path>`".into(),
                        ));
                    };
                    if !valid_path(&path) || mode > 0o7777 {
                        return Err(bad(n, format!("invalid path or mode for `{path}`")));
                    }
                    let mut chunks = Vec::new();
                    let mut total = 0u64;
                    for _ in 0..count {
                        let n = i + 1;
                        let c = lines
                            .get(i)
                            .filter(|_| i < last - 1)
                            .and_then(|l| l.strip_prefix("chunk "));
                        let c = c.and_then(|c| {
                            let (len, sha) = c.split_once(' ')?;
                            Some(Chunk {
                                len: len.parse().ok()?,
                                sha256: unhex32(sha)?,
                            })
                        });
                        let Some(c) = c else {
                            return Err(bad(n, format!("expected `chunk <length> <sha256>` of `{path}`")));
                        };
                        total = total.saturating_add(c.len);
                        chunks.push(c);
                        i += 1;
                    }
                    if total != len {
                        return Err(bad(
                            n,
                            format!("the chunks of `{path}` add up to {total} bytes, not {len}"),
                        ));
                    }
                    if m.files.last().is_some_and(|p: &FileRecord| p.path >= path) {
                        return Err(bad(n, format!("`{path}` is out of order or repeated")));
                    }
                    m.files.push(FileRecord {
                        path,
                        kind,
                        mode,
                        len,
                        sha256,
                        chunks,
                    });
                }
                _ => return Err(bad(n, format!("unknown record `{tag}`"))),
            }
        }
        Ok(m)
    }

    pub fn file(&self, path: &str) -> Option<&FileRecord> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            created: "2026-01-02T03:04:05Z".into(),
            logs: vec![LogRecord {
                name: "default".into(),
                size: 7,
                root: [3; 32],
            }],
            files: vec![
                FileRecord {
                    path: "logs/default/entries".into(),
                    kind: Kind::AppendOnly,
                    mode: 0o644,
                    len: 5,
                    sha256: [1; 32],
                    chunks: vec![
                        Chunk {
                            len: 2,
                            sha256: [4; 32],
                        },
                        Chunk {
                            len: 3,
                            sha256: [5; 32],
                        },
                    ],
                },
                FileRecord {
                    path: "logs/default/log key".into(),
                    kind: Kind::Immutable,
                    mode: 0o600,
                    len: 0,
                    sha256: [2; 32],
                    chunks: vec![],
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_every_flipped_byte_refused() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\nfile i 0600 0 0202"), "{text}");
        assert!(text.contains(" 2 logs/default/entries\nchunk 2 0404"), "{text}");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(Manifest::decode(&b).is_err(), "byte {i} flipped was accepted");
        }
    }

    #[test]
    fn paths_that_cannot_be_stored() {
        for p in ["", "/abs", "a//b", "a/../b", "./a", "a\nb", "a/"] {
            assert!(!valid_path(p), "{p:?}");
        }
        assert!(valid_path("logs/default/entries"));
    }
}
