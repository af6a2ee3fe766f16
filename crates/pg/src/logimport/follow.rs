//! Following a log file as the server writes it: polling for growth,
//! noticing rotation (a new file at the path, or the file truncated) and
//! keeping a durable position so a restart resumes where it stopped. Not
//! inotify: polling works the same on every file system, network ones
//! included.

use super::{deliver, file_identity, BatchOutcome, Decoder, Flush, ImportError, ImportOptions, ImportReport};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to follow a file.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub import: ImportOptions,
    /// How long to wait when the file has not grown.
    pub poll: Duration,
    /// Where the position is kept between runs (written atomically after
    /// every delivered batch); `None`: start at the beginning each time,
    /// relying on idempotency keys.
    pub position_file: Option<PathBuf>,
    /// How long the file must stay unchanged before its last entry counts
    /// as complete (a later DETAIL or continuation line could still
    /// belong to it while the server is writing).
    pub settle: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            import: ImportOptions::default(),
            poll: Duration::from_millis(500),
            position_file: None,
            settle: Duration::from_secs(1),
        }
    }
}

/// How far a followed file has been imported: which file (device, inode
/// and the identity of its first line) and up to which byte and line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub device: u64,
    pub inode: u64,
    pub identity: String,
    pub offset: u64,
    /// 1-based number of the line at `offset`.
    pub line: u64,
}

impl Position {
    /// Read a position file; `None` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<Position>, ImportError> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ImportError::Position {
                    file: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| ImportError::Position {
                file: path.display().to_string(),
                message: format!("line {}, column {}: {e}", e.line(), e.column()),
            })
    }

    /// Replace the position file atomically and durably.
    pub fn store(&self, path: &Path) -> Result<(), ImportError> {
        let err = |e: std::io::Error| ImportError::Position {
            file: path.display().to_string(),
            message: e.to_string(),
        };
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&serde_json::to_vec(self).unwrap_or_default())
            .map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, path).map_err(err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(())
    }
}

fn file_key(meta: &fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

struct Open {
    file: File,
    device: u64,
    inode: u64,
    identity: String,
}

/// Follow `path` until `stop` (asked before every poll with the report so
/// far) returns true, importing what the server appends, across rotation.
/// An entry is delivered once the next one has started or the file has
/// not grown for [`FollowOptions::settle`].
pub fn follow<S, F>(path: &Path, opts: &FollowOptions, mut sink: S, mut stop: F) -> Result<ImportReport, ImportError>
where
    S: FnMut(&[String]) -> Result<BatchOutcome, String>,
    F: FnMut(&ImportReport) -> bool,
{
    let display = path.display().to_string();
    let io = |source| ImportError::Io {
        file: display.clone(),
        source,
    };
    let mut saved = match &opts.position_file {
        Some(p) => Position::load(p)?,
        None => None,
    };
    let mut report = ImportReport::default();
    let mut dec = Decoder::new(path, &opts.import, String::new(), 0, 1)?;
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    let mut buf = vec![0u8; super::READ_CHUNK];
    let mut stored: Option<Position> = None;
    let mut grew = Instant::now();
    loop {
        if stop(&report) {
            break;
        }
        let Some(cur) = open.as_mut() else {
            // Wait for the file, and for its first line (its identity).
            match try_open(path, &mut saved) {
                Ok(Some((o, offset, line))) => {
                    let mut o = o;
                    o.file.seek(SeekFrom::Start(offset)).map_err(io)?;
                    dec.reset(o.identity.clone(), offset, line);
                    open = Some(o);
                }
                Ok(None) => std::thread::sleep(opts.poll),
                Err(e) => return Err(io(e)),
            }
            continue;
        };
        let n = cur.file.read(&mut buf).map_err(io)?;
        if n > 0 {
            grew = Instant::now();
            report.bytes += n as u64;
            dec.feed(&buf[..n]);
            dec.drain(Flush::More, &mut out)?;
            deliver(&display, &mut out, opts.import.batch_size, &mut report, &mut sink)?;
            save(opts, cur, &dec, &mut stored)?;
            continue;
        }
        // At the end: has the file been replaced or truncated?
        let now = fs::metadata(path).ok();
        let replaced = now.as_ref().is_none_or(|m| file_key(m) != (cur.device, cur.inode));
        let shrunk = now
            .as_ref()
            .is_some_and(|m| m.len() < dec.offset + dec.buffered() as u64)
            || file_identity(path).is_ok_and(|id| !id.is_empty() && id != cur.identity);
        if replaced {
            // The old file is complete: what is left of it is final.
            dec.drain(Flush::End, &mut out)?;
            deliver(&display, &mut out, opts.import.batch_size, &mut report, &mut sink)?;
            report.lines += dec.line - 1;
            open = None;
            continue;
        }
        if shrunk {
            // Truncated in place (copytruncate): the new text starts at 0.
            dec.drain(Flush::End, &mut out)?;
            deliver(&display, &mut out, opts.import.batch_size, &mut report, &mut sink)?;
            report.lines += dec.line - 1;
            let identity = file_identity(path).map_err(io)?;
            cur.file.seek(SeekFrom::Start(0)).map_err(io)?;
            cur.identity = identity.clone();
            dec.reset(identity, 0, 1);
            continue;
        }
        if grew.elapsed() >= opts.settle {
            dec.drain(Flush::Idle, &mut out)?;
            deliver(&display, &mut out, opts.import.batch_size, &mut report, &mut sink)?;
            save(opts, cur, &dec, &mut stored)?;
        }
        std::thread::sleep(opts.poll);
    }
    if let Some(cur) = &open {
        dec.drain(Flush::Idle, &mut out)?;
        deliver(&display, &mut out, opts.import.batch_size, &mut report, &mut sink)?;
        save(opts, cur, &dec, &mut stored)?;
        report.lines += dec.line - 1;
    }
    Ok(report)
}

/// Open the file at `path` if it exists and has a complete first line;
/// resume at the saved position if it is this file's.
fn try_open(path: &Path, saved: &mut Option<Position>) -> std::io::Result<Option<(Open, u64, u64)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let identity = file_identity(path)?;
    if identity.is_empty() {
        return Ok(None);
    }
    let meta = file.metadata()?;
    let (device, inode) = file_key(&meta);
    let (offset, line) = match saved.take() {
        Some(p) if (p.device, p.inode) == (device, inode) && p.identity == identity && p.offset <= meta.len() => {
            (p.offset, p.line)
        }
        _ => (0, 1),
    };
    Ok(Some((
        Open {
            file,
            device,
            inode,
            identity,
        },
        offset,
        line,
    )))
}

/// Store the position if it moved (each store is an fsync).
fn save(opts: &FollowOptions, cur: &Open, dec: &Decoder, stored: &mut Option<Position>) -> Result<(), ImportError> {
    let Some(p) = &opts.position_file else { return Ok(()) };
    let now = Position {
        device: cur.device,
        inode: cur.inode,
        identity: cur.identity.clone(),
        offset: dec.offset,
        line: dec.line,
    };
    if stored.as_ref() != Some(&now) {
        now.store(p)?;
        *stored = Some(now);
    }
    Ok(())
}
