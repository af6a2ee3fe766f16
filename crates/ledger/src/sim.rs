//! An in-memory [`Storage`] that models power loss, for crash tests.
//!
//! Each file keeps the bytes that reached the disk (`durable`) and the writes
//! made since its last sync. [`SimStorage::crash_image`] returns what a
//! restarted machine could find: the durable bytes plus an arbitrary, possibly
//! torn, prefix of the unsynced writes. Sync points are counted so a test can
//! fail the k-th one ([`Fault`]) and so enumerate every crash point.
//!
//! Test support only: nothing here is for production use.

use crate::storage::{Storage, StorageFile};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What to do when the operation counter reaches a given value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The k-th `sync_data` (1-based) fails and every later operation fails
    /// too, as if the machine lost power there.
    CrashAtSync(u64),
    /// The k-th `sync_data` returns an error; the process keeps running.
    FailSync(u64),
    /// The k-th `write_all_at` returns an error (a full disk).
    FailWrite(u64),
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    durable: Vec<u8>,
    /// The file as the running process sees it.
    current: Vec<u8>,
    /// Unsynced writes in order: (offset, bytes); a truncation is (len, empty)
    /// with `truncate` set.
    pending: Vec<Pending>,
}

#[derive(Clone, Debug)]
struct Pending {
    offset: u64,
    bytes: Vec<u8>,
    truncate: bool,
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, SimFile>,
    dirs: Vec<PathBuf>,
    syncs: u64,
    writes: u64,
    fault: Option<Fault>,
    crashed: bool,
}

/// Shared handle; clones see the same files.
#[derive(Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not hide the files from the test's checks.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn crashed() -> io::Error {
    io::Error::other("simulated power loss")
}

impl SimStorage {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        lock(&self.state).fault = fault;
    }

    /// Number of `sync_data` calls so far (including a failed one).
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// Number of `write_all_at` calls so far (including a failed one).
    pub fn writes(&self) -> u64 {
        lock(&self.state).writes
    }

    pub fn has_crashed(&self) -> bool {
        lock(&self.state).crashed
    }

    /// The files a machine restarted now could find. `keep` decides, for each
    /// unsynced write in order, how many of its bytes reached the disk
    /// (`keep(len)` ≤ len); the first write that is not kept whole ends what
    /// survives of that file, modelling an in-order, torn write-back.
    pub fn crash_image(&self, mut keep: impl FnMut(usize) -> usize) -> SimStorage {
        let st = lock(&self.state);
        let mut files = BTreeMap::new();
        for (path, f) in &st.files {
            let mut bytes = f.durable.clone();
            for p in &f.pending {
                if p.truncate {
                    bytes.truncate(p.offset as usize);
                    continue;
                }
                let n = keep(p.bytes.len()).min(p.bytes.len());
                apply(&mut bytes, p.offset, &p.bytes[..n]);
                if n < p.bytes.len() {
                    break;
                }
            }
            files.insert(
                path.clone(),
                SimFile {
                    durable: bytes.clone(),
                    current: bytes,
                    pending: Vec::new(),
                },
            );
        }
        let state = State {
            files,
            dirs: st.dirs.clone(),
            ..State::default()
        };
        SimStorage {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Direct access for tamper tests: the current bytes of a file.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        lock(&self.state).files.get(path).map(|f| f.current.clone())
    }
}

fn apply(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset as usize..end].copy_from_slice(data);
}

struct SimHandle {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl SimHandle {
    fn with<T>(&self, f: impl FnOnce(&mut State, &PathBuf) -> io::Result<T>) -> io::Result<T> {
        let mut st = lock(&self.state);
        if st.crashed {
            return Err(crashed());
        }
        f(&mut st, &self.path)
    }
}

fn file<'a>(st: &'a mut State, path: &PathBuf) -> io::Result<&'a mut SimFile> {
    st.files
        .get_mut(path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))
}

impl StorageFile for SimHandle {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|st, p| {
            let f = file(st, p)?;
            let end = offset as usize + buf.len();
            if end > f.current.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"));
            }
            buf.copy_from_slice(&f.current[offset as usize..end]);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|st, p| {
            st.writes += 1;
            if st.fault == Some(Fault::FailWrite(st.writes)) {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated full disk"));
            }
            let f = file(st, p)?;
            apply(&mut f.current, offset, buf);
            f.pending.push(Pending {
                offset,
                bytes: buf.to_vec(),
                truncate: false,
            });
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|st, p| Ok(file(st, p)?.current.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st, p| {
            let f = file(st, p)?;
            f.current.resize(len as usize, 0);
            f.pending.push(Pending {
                offset: len,
                bytes: Vec::new(),
                truncate: true,
            });
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|st, p| {
            st.syncs += 1;
            match st.fault {
                Some(Fault::CrashAtSync(k)) if k == st.syncs => {
                    st.crashed = true;
                    return Err(crashed());
                }
                Some(Fault::FailSync(k)) if k == st.syncs => {
                    return Err(io::Error::other("simulated fsync failure"));
                }
                _ => {}
            }
            let f = file(st, p)?;
            f.durable = f.current.clone();
            f.pending.clear();
            Ok(())
        })
    }
}

impl Storage for SimStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = lock(&self.state);
        if st.crashed {
            return Err(crashed());
        }
        if !st.files.contains_key(path) {
            if !create {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} not found", path.display()),
                ));
            }
            st.files.insert(path.to_path_buf(), SimFile::default());
        }
        Ok(Arc::new(SimHandle {
            state: self.state.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn create_new(&self, path: &Path, bytes: &[u8], _private: bool) -> io::Result<()> {
        let mut st = lock(&self.state);
        if st.crashed {
            return Err(crashed());
        }
        if st.files.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let f = SimFile {
            durable: bytes.to_vec(),
            current: bytes.to_vec(),
            pending: Vec::new(),
        };
        st.files.insert(path.to_path_buf(), f);
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = lock(&self.state);
        st.files
            .get(path)
            .map(|f| f.current.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())))
    }

    fn exists(&self, path: &Path) -> bool {
        let st = lock(&self.state);
        st.files.contains_key(path) || st.dirs.iter().any(|d| d == path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        let mut p = Some(path);
        while let Some(d) = p {
            if !d.as_os_str().is_empty() && !st.dirs.iter().any(|x| x == d) {
                st.dirs.push(d.to_path_buf());
            }
            p = d.parent();
        }
        Ok(())
    }

    fn list_dirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = lock(&self.state);
        let mut names: Vec<String> = st
            .dirs
            .iter()
            .filter(|d| d.parent() == Some(path))
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self, _path: &Path) -> io::Result<Box<dyn std::any::Any + Send + Sync>> {
        // One process per simulated machine: nothing to exclude.
        Ok(Box::new(()))
    }
}
