//! The only door to the file system of the ledger and the query index.
//! Everything they read or write goes through [`Storage`] and
//! [`StorageFile`], so tests can swap in `sim::SimStorage` (feature `sim`)
//! to cut power at any sync point or fail any write. Deliberately tiny:
//! positional reads and writes, length, sync, and the few directory
//! operations (create, rename, delete, list, sync) the two stores use.
//!
//! Architecture invariant: no knowledge of what the files hold, no
//! buffering, no retries; an error is the caller's to act on.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "sim")]
pub mod sim;

/// One open file. Implementations must be safe to read from several threads
/// while one thread writes beyond what the readers read.
#[allow(clippy::len_without_is_empty)] // a file's length, not a collection's
pub trait StorageFile: Send + Sync {
    /// Fill `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Make every write so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// A directory tree of files. A new, renamed or deleted name is durable
/// only once its directory is synced ([`Storage::sync_dir`]).
pub trait Storage: Send + Sync {
    /// Open for reading and writing, creating the file if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Open an existing file for reading only, for readers beside a
    /// writer in another process. Simulated storage may keep the default.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.open(path, false)
    }
    /// Create a file that must not exist yet, write `bytes`, make it durable.
    /// `private` files are readable by the owner only (keys).
    fn create_new(&self, path: &Path, bytes: &[u8], private: bool) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn exists(&self, path: &Path) -> bool;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the subdirectories of `path`, sorted.
    fn list_dirs(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Names of the files (not directories) in `path`, sorted.
    fn list_files(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Replace `to` with `from` in one step: a reader finds one or the
    /// other, never neither.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Delete `path` and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The real file behind `path`, for callers that map files which never
    /// change once written rather than read them; `None` where there is no
    /// real file (simulated storage), and the caller reads the bytes.
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        let _ = path;
        None
    }
    /// Make the directory's entries (new files) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Take an exclusive lock on `path` (created if missing) for as long as
    /// the returned guard lives, so two processes never write one log.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn std::any::Any + Send + Sync>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

struct OsFile(File);

impl StorageFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for OsStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new().read(true).write(true).create(create).open(path)?;
        Ok(Arc::new(OsFile(f)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(OsFile(File::open(path)?)))
    }

    fn create_new(&self, path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
        let mut opts = OpenOptions::new();
        opts.write(true)
            .create_new(true)
            .mode(if private { 0o600 } else { 0o644 });
        let f = opts.open(path)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn list_files(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        Some(path.to_path_buf())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn std::any::Any + Send + Sync>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(f)),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "held by another process (is a server running?)",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
