//! An in-memory [`Storage`] that models power loss, for crash tests.
//!
//! Each file keeps the bytes that reached the disk (`durable`) and the writes
//! made since its last sync; each directory keeps the names that reached the
//! disk apart from those created, renamed or deleted since its last sync.
//! [`SimStorage::crash_image`] returns what a restarted machine could find:
//! the durable names, each file with its durable bytes plus an arbitrary,
//! possibly torn, prefix of its unsynced writes. Sync points (file and
//! directory syncs) are counted so a test can fail the k-th one ([`Fault`])
//! and so enumerate every crash point.
//!
//! A directory may be renamed (the query index's rebuild swaps
//! directories): the files under it move at once for the running process,
//! and on disk when the parent directory is next synced; until then a
//! crash image has the directory, and what it held durably, under its old
//! name.
//!
//! Test support only (feature `sim`): nothing here is for production use.

use crate::{Storage, StorageFile};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What to do when the operation counter reaches a given value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The k-th sync (1-based; `sync_data` and `sync_dir` alike) fails and
    /// every later operation fails too, as if the machine lost power there.
    CrashAtSync(u64),
    /// The k-th sync returns an error; the process keeps running.
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

/// A file's identity apart from its names, as an inode: open handles keep
/// reading and writing it across renames and after it is deleted.
type Inode = u64;

#[derive(Default)]
struct State {
    inodes: BTreeMap<Inode, SimFile>,
    next_inode: Inode,
    /// Names as the running process sees them.
    names: BTreeMap<PathBuf, Inode>,
    /// Names as they are on disk; a directory's changes reach here when it
    /// is synced.
    durable_names: BTreeMap<PathBuf, Inode>,
    dirs: Vec<PathBuf>,
    /// Directory renames (from, to) not yet made durable by a sync of
    /// the parent of `to`, in order.
    dir_renames: Vec<(PathBuf, PathBuf)>,
    syncs: u64,
    writes: u64,
    fault: Option<Fault>,
    crashed: bool,
}

impl State {
    fn check(&self) -> io::Result<()> {
        if self.crashed {
            Err(crashed())
        } else {
            Ok(())
        }
    }

    fn inode(&self, path: &Path) -> io::Result<Inode> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())))
    }

    /// Count a sync point and apply the fault set for it, if any.
    fn sync_point(&mut self) -> io::Result<()> {
        self.syncs += 1;
        match self.fault {
            Some(Fault::CrashAtSync(k)) if k == self.syncs => {
                self.crashed = true;
                Err(crashed())
            }
            Some(Fault::FailSync(k)) if k == self.syncs => Err(io::Error::other("simulated fsync failure")),
            _ => Ok(()),
        }
    }
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

    /// Number of syncs so far (`sync_data` and `sync_dir`, including a
    /// failed one).
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

    /// The files a machine restarted now could find, under the names their
    /// directories' last syncs made durable. `keep` decides, for each
    /// unsynced write in order, how many of its bytes reached the disk
    /// (`keep(len)` ≤ len); the first write that is not kept whole ends what
    /// survives of that file, modelling an in-order, torn write-back.
    pub fn crash_image(&self, keep: impl FnMut(usize) -> usize) -> SimStorage {
        let st = lock(&self.state);
        // Directories under the names they had before renames not yet durable.
        let mut dirs = st.dirs.clone();
        for (from, to) in st.dir_renames.iter().rev() {
            for d in &mut dirs {
                if let Some(p) = moved(d, to, from) {
                    *d = p;
                }
            }
        }
        image(&st, &st.durable_names, dirs, keep)
    }

    /// [`SimStorage::crash_image`] on a file system that had written every
    /// name change (creation, rename, deletion) before the power went, in
    /// order, but no more file data than `keep` says.
    pub fn crash_image_all_names(&self, keep: impl FnMut(usize) -> usize) -> SimStorage {
        let st = lock(&self.state);
        image(&st, &st.names, st.dirs.clone(), keep)
    }

    /// Direct access for tamper tests: the current bytes of a file.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        let inode = st.names.get(path)?;
        st.inodes.get(inode).map(|f| f.current.clone())
    }
}

/// `path` once the directory `from` is renamed to `to`; None if not under it.
fn moved(path: &Path, from: &Path, to: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix(from).ok()?;
    Some(if rest.as_os_str().is_empty() {
        to.to_path_buf()
    } else {
        to.join(rest)
    })
}

/// Rename every name under directory `from` to the same under `to`.
fn move_names(names: &mut BTreeMap<PathBuf, Inode>, from: &Path, to: &Path) {
    let under: Vec<(PathBuf, Inode)> = names
        .iter()
        .filter(|(p, _)| p.starts_with(from))
        .map(|(p, i)| (p.clone(), *i))
        .collect();
    for (p, inode) in under {
        names.remove(&p);
        if let Some(new) = moved(&p, from, to) {
            names.insert(new, inode);
        }
    }
}

fn image(
    st: &State,
    names: &BTreeMap<PathBuf, Inode>,
    dirs: Vec<PathBuf>,
    mut keep: impl FnMut(usize) -> usize,
) -> SimStorage {
    let mut inodes = BTreeMap::new();
    for inode in names.values() {
        if inodes.contains_key(inode) {
            continue;
        }
        let Some(f) = st.inodes.get(inode) else { continue };
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
        inodes.insert(
            *inode,
            SimFile {
                durable: bytes.clone(),
                current: bytes,
                pending: Vec::new(),
            },
        );
    }
    let state = State {
        inodes,
        next_inode: st.next_inode,
        names: names.clone(),
        durable_names: names.clone(),
        dirs,
        ..State::default()
    };
    SimStorage {
        state: Arc::new(Mutex::new(state)),
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
    inode: Inode,
}

impl SimHandle {
    fn with<T>(&self, f: impl FnOnce(&mut State, Inode) -> io::Result<T>) -> io::Result<T> {
        let mut st = lock(&self.state);
        st.check()?;
        f(&mut st, self.inode)
    }
}

fn file(st: &mut State, inode: Inode) -> io::Result<&mut SimFile> {
    st.inodes
        .get_mut(&inode)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file lost"))
}

impl StorageFile for SimHandle {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|st, inode| {
            let f = file(st, inode)?;
            let end = offset as usize + buf.len();
            if end > f.current.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"));
            }
            buf.copy_from_slice(&f.current[offset as usize..end]);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|st, inode| {
            st.writes += 1;
            if st.fault == Some(Fault::FailWrite(st.writes)) {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated full disk"));
            }
            let f = file(st, inode)?;
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
        self.with(|st, inode| Ok(file(st, inode)?.current.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st, inode| {
            let f = file(st, inode)?;
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
        self.with(|st, inode| {
            st.sync_point()?;
            let f = file(st, inode)?;
            f.durable = f.current.clone();
            f.pending.clear();
            Ok(())
        })
    }
}

impl Storage for SimStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = lock(&self.state);
        st.check()?;
        let inode = match st.inode(path) {
            Ok(inode) => inode,
            Err(e) if !create => return Err(e),
            Err(_) => {
                let inode = st.next_inode;
                st.next_inode += 1;
                st.inodes.insert(inode, SimFile::default());
                st.names.insert(path.to_path_buf(), inode);
                inode
            }
        };
        Ok(Arc::new(SimHandle {
            state: self.state.clone(),
            inode,
        }))
    }

    fn create_new(&self, path: &Path, bytes: &[u8], _private: bool) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check()?;
        if st.names.contains_key(path) {
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
        let inode = st.next_inode;
        st.next_inode += 1;
        st.inodes.insert(inode, f);
        st.names.insert(path.to_path_buf(), inode);
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = lock(&self.state);
        st.check()?;
        let inode = st.inode(path)?;
        Ok(st.inodes.get(&inode).map(|f| f.current.clone()).unwrap_or_default())
    }

    fn exists(&self, path: &Path) -> bool {
        let st = lock(&self.state);
        st.names.contains_key(path) || st.dirs.iter().any(|d| d == path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check()?;
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

    fn list_files(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = lock(&self.state);
        st.check()?;
        if !st.dirs.iter().any(|d| d == path) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", path.display()),
            ));
        }
        // BTreeMap order: sorted.
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check()?;
        if st.dirs.iter().any(|d| d == from) {
            let st = &mut *st;
            if st.names.keys().any(|p| p == to || p.starts_with(to)) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not empty", to.display()),
                ));
            }
            st.dirs.retain(|d| d != to);
            for d in &mut st.dirs {
                if let Some(p) = moved(d, from, to) {
                    *d = p;
                }
            }
            move_names(&mut st.names, from, to);
            st.dir_renames.push((from.to_path_buf(), to.to_path_buf()));
            return Ok(());
        }
        let inode = st.inode(from)?;
        st.names.remove(from);
        st.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check()?;
        st.inode(path)?;
        st.names.remove(path);
        Ok(())
    }

    /// Durable at once, unlike the other name changes: enough for the
    /// callers, which only wipe derived data they can rebuild.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check()?;
        if !st.dirs.iter().any(|d| d == path) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", path.display()),
            ));
        }
        st.names.retain(|p, _| !p.starts_with(path));
        st.durable_names.retain(|p, _| !p.starts_with(path));
        st.dirs.retain(|d| !d.starts_with(path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check()?;
        st.sync_point()?;
        let st = &mut *st;
        // Directory renames in `path` reach the disk, in order.
        let mut kept = Vec::new();
        for (from, to) in std::mem::take(&mut st.dir_renames) {
            if to.parent() == Some(path) {
                move_names(&mut st.durable_names, &from, &to);
            } else {
                kept.push((from, to));
            }
        }
        st.dir_renames = kept;
        st.durable_names.retain(|p, _| p.parent() != Some(path));
        for (p, inode) in &st.names {
            if p.parent() == Some(path) {
                st.durable_names.insert(p.clone(), *inode);
            }
        }
        Ok(())
    }

    fn lock(&self, _path: &Path) -> io::Result<Box<dyn std::any::Any + Send + Sync>> {
        // One process per simulated machine: nothing to exclude.
        Ok(Box::new(()))
    }
}
