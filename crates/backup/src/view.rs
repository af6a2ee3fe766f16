//! A backup seen as the data directory it holds: a read-only [`Storage`]
//! whose files are their chunks read in order from the objects, so the
//! ledger's verifier reads the logs inside a backup where they are,
//! without restoring them first.
//!
//! Deliberately read-only: every write, creation, rename or lock fails.

use crate::manifest::{hex, Manifest};
use crate::OBJECTS_DIR;
use sealtrail_ledger::storage::{Storage, StorageFile};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct BackupView<'a> {
    pub storage: &'a dyn Storage,
    pub root: PathBuf,
    pub manifest: &'a Manifest,
}

struct ChunkedFile {
    /// (start in the file, length, object).
    parts: Vec<(u64, u64, Arc<dyn StorageFile>)>,
    len: u64,
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "a backup is read-only")
}

impl StorageFile for ChunkedFile {
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        let first = self.parts.partition_point(|(start, len, _)| start + len <= offset);
        for (start, len, obj) in &self.parts[first..] {
            if buf.is_empty() {
                break;
            }
            let within = offset - start;
            let n = ((len - within) as usize).min(buf.len());
            obj.read_exact_at(&mut buf[..n], within)?;
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(read_only())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
}

impl BackupView<'_> {
    fn rel<'p>(&self, path: &'p Path) -> Option<&'p str> {
        path.strip_prefix(&self.root).ok()?.to_str()
    }

    fn children(&self, path: &Path, dirs: bool) -> io::Result<Vec<String>> {
        let rel = self.rel(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        let mut out = BTreeSet::new();
        for f in &self.manifest.files {
            if let Some(rest) = f.path.strip_prefix(&prefix) {
                match (rest.split_once('/'), dirs) {
                    (Some((d, _)), true) => {
                        out.insert(d.to_string());
                    }
                    (None, false) => {
                        out.insert(rest.to_string());
                    }
                    _ => {}
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

impl Storage for BackupView<'_> {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        if create {
            return Err(read_only());
        }
        self.open_read(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let rel = self.rel(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let f = self
            .manifest
            .file(rel)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let mut parts = Vec::new();
        let mut start = 0;
        for c in &f.chunks {
            let obj = self
                .storage
                .open_read(&self.root.join(OBJECTS_DIR).join(hex(&c.sha256)))?;
            parts.push((start, c.len, obj));
            start += c.len;
        }
        Ok(Arc::new(ChunkedFile { parts, len: f.len }))
    }
    fn create_new(&self, _: &Path, _: &[u8], _: bool) -> io::Result<()> {
        Err(read_only())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open_read(path)?;
        let mut buf = vec![0u8; f.len()? as usize];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
    fn exists(&self, path: &Path) -> bool {
        self.rel(path).is_some_and(|r| {
            self.manifest.file(r).is_some() || self.manifest.files.iter().any(|f| f.path.starts_with(&format!("{r}/")))
        })
    }
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn list_dirs(&self, path: &Path) -> io::Result<Vec<String>> {
        self.children(path, true)
    }
    fn list_files(&self, path: &Path) -> io::Result<Vec<String>> {
        self.children(path, false)
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn remove_file(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn remove_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn lock(&self, _: &Path) -> io::Result<Box<dyn std::any::Any + Send + Sync>> {
        Err(read_only())
    }
}
