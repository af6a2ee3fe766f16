//! Read-only opens beside a writer, on the real file system: no lock, no
//! file touched, and always a consistent prefix of what the writer signed.
#![allow(clippy::unwrap_used)]

use sealtrail_ledger::{DataDir, LedgerError, Log, LogOptions};
use sealtrail_merkle::checkpoint::open_checkpoint;
use sealtrail_merkle::{leaf_hash, verify_inclusion};
use sealtrail_storage::Storage as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i} {}", "y".repeat((i % 50) as usize)).into_bytes()
}

/// Name, length and modification time of every file under `dir`.
fn listing(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            (m.len(), m.modified().unwrap()),
        );
    }
    out
}

/// Everything a reader may ask of the prefix it sees holds together: the
/// checkpoint verifies, every entry is the one written, proofs verify.
fn check_prefix(log: &Log) {
    let (cp, note) = log.checkpoint();
    let (opened, _) = open_checkpoint(&note, log.verifier()).unwrap();
    assert_eq!(opened, cp);
    assert_eq!(log.size(), cp.size);
    let entries = log.entries(0, cp.size).unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e, &entry(i as u64), "entry {i}");
    }
    for i in [0, cp.size / 2, cp.size.saturating_sub(1)] {
        if i < cp.size {
            let p = log.inclusion_proof(i, cp.size).unwrap();
            verify_inclusion(i, cp.size, &leaf_hash(&entry(i)), &p, &cp.root).unwrap();
        }
    }
}

#[test]
fn read_only_open_beside_the_writer_takes_no_lock_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    data.create_log("default", None).unwrap();
    let writer = data.open_log("default", LogOptions::default()).unwrap();
    let batch: Vec<Vec<u8>> = (0..100).map(entry).collect();
    writer.append(&batch).unwrap();

    // A second writer is refused; a reader is not.
    assert!(data.open_log("default", LogOptions::default()).is_err());
    let dir = data.log_dir("default");
    let before = listing(&dir);
    let reader = data.open_log_read_only("default").unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.size(), 100);
    check_prefix(&reader);
    assert!(matches!(reader.append(&[b"no"]), Err(LedgerError::ReadOnly(_))));
    drop(reader);
    assert_eq!(listing(&dir), before, "a read-only open changed the directory");
    assert_eq!(writer.size(), 100);
}

#[test]
fn readers_see_a_consistent_prefix_while_the_writer_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    data.create_log("default", None).unwrap();
    let writer = data.open_log("default", LogOptions::default()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let appender = {
        let (writer, done) = (writer.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            for round in 0..200u64 {
                let n = 1 + round % 7;
                let batch: Vec<Vec<u8>> = (next..next + n).map(entry).collect();
                writer.append(&batch).unwrap();
                next += n;
            }
            done.store(true, Ordering::Release);
            next
        })
    };
    let mut sizes = Vec::new();
    while !done.load(Ordering::Acquire) {
        let reader = data.open_log_read_only("default").unwrap();
        check_prefix(&reader);
        sizes.push(reader.size());
    }
    let total = appender.join().unwrap();
    let reader = data.open_log_read_only("default").unwrap();
    assert_eq!(reader.size(), total);
    check_prefix(&reader);
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
}

#[test]
fn read_only_open_leaves_an_unsigned_tail_and_refuses_a_log_needing_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    data.create_log("default", None).unwrap();
    let batch: Vec<Vec<u8>> = (0..20).map(entry).collect();
    data.open_log("default", LogOptions::default())
        .unwrap()
        .append(&batch)
        .unwrap();
    let dir = data.log_dir("default");

    // A torn tail no checkpoint covers: shown as not there, and kept (a
    // writer's open is what cuts it).
    let entries = dir.join("entries");
    let mut bytes = std::fs::read(&entries).unwrap();
    bytes.extend_from_slice(b"\0\0\0\x09torn");
    std::fs::write(&entries, &bytes).unwrap();
    let reader = data.open_log_read_only("default").unwrap();
    assert_eq!(reader.size(), 20);
    check_prefix(&reader);
    drop(reader);
    assert_eq!(std::fs::read(&entries).unwrap(), bytes);

    // Derived files behind the signed checkpoint: refused, left as they are.
    let hashes = dir.join("hashes");
    let full = std::fs::read(&hashes).unwrap();
    std::fs::write(&hashes, &full[..full.len() - 32]).unwrap();
    let e = data.open_log_read_only("default").err().unwrap();
    assert!(matches!(e, LedgerError::NeedsRecovery { .. }), "{e}");
    assert!(e.to_string().contains("sealtrail serve"), "{e}");
    assert_eq!(std::fs::read(&hashes).unwrap().len(), full.len() - 32);

    // A writer's open repairs both; readers then see the same log.
    drop(data.open_log("default", LogOptions::default()).unwrap());
    let reader = data.open_log_read_only("default").unwrap();
    assert_eq!(reader.size(), 20);
    check_prefix(&reader);
}

/// Storage whose listing of the log's directory runs `between` once,
/// after the names are read and before the reader opens them (a writer's
/// prune deleting a listed file), and that can list a file that no longer
/// exists at every listing (`phantom`).
struct Racing {
    inner: sealtrail_storage::sim::SimStorage,
    between: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    phantom: Option<String>,
    listings: std::sync::atomic::AtomicU32,
}

impl sealtrail_storage::Storage for Racing {
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn sealtrail_storage::StorageFile>> {
        self.inner.open(path, create)
    }
    fn create_new(&self, path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
        self.inner.create_new(path, bytes, private)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dirs(&self, path: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dirs(path)
    }
    fn list_files(&self, path: &Path) -> std::io::Result<Vec<String>> {
        let mut names = self.inner.list_files(path)?;
        self.listings.fetch_add(1, Ordering::SeqCst);
        if let Some(between) = self.between.lock().unwrap().take() {
            between();
        }
        if let Some(p) = &self.phantom {
            names.push(p.clone());
            names.sort();
        }
        Ok(names)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> std::io::Result<Box<dyn std::any::Any + Send + Sync>> {
        self.inner.lock(path)
    }
}

#[test]
fn a_file_pruned_between_listing_and_opening_is_listed_again() {
    let sim = sealtrail_storage::sim::SimStorage::new();
    let data = DataDir::with_storage("/data", Arc::new(sim.clone()));
    data.create_log("default", None).unwrap();
    let writer = Arc::new(data.open_log("default", LogOptions::default()).unwrap());
    let batch: Vec<Vec<u8>> = (0..600).map(entry).collect();
    writer.append(&batch).unwrap();
    let dir = data.log_dir("default");
    assert!(sim.list_files(&dir).unwrap().contains(&"entries".to_string()));

    // The reader lists `entries`; the writer prunes below 256, which
    // moves the kept entries to a new file and deletes `entries`, before
    // the reader opens what it listed.
    let pruner = writer.clone();
    let racing = Arc::new(Racing {
        inner: sim.clone(),
        between: std::sync::Mutex::new(Some(Box::new(move || {
            pruner.prune(256).unwrap();
        }))),
        phantom: None,
        listings: Default::default(),
    });
    let reader = Log::open_read_only(racing.clone(), &dir, "default").unwrap();
    assert!(!sim.list_files(&dir).unwrap().contains(&"entries".to_string()));
    // The entry files; then again the entry files, and the packs.
    assert_eq!(racing.listings.load(Ordering::SeqCst), 3, "listed again once");
    assert_eq!(reader.pruned_below(), 256);
    assert_eq!(reader.size(), 600);
    let kept = reader.entries(256, 344).unwrap();
    assert_eq!(kept, (256..600).map(entry).collect::<Vec<_>>());

    // A file that stays missing is retried a bounded number of times,
    // then reported, naming it.
    let racing = Arc::new(Racing {
        inner: sim.clone(),
        between: std::sync::Mutex::new(None),
        phantom: Some("entries-00000000000000ff".into()),
        listings: Default::default(),
    });
    let err = Log::open_read_only(racing.clone(), &dir, "default").err().unwrap();
    assert!(
        matches!(&err, LedgerError::Io { op: "open", path, source }
            if path.ends_with("entries-00000000000000ff") && source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert_eq!(
        racing.listings.load(Ordering::SeqCst),
        sealtrail_ledger::READ_ONLY_OPEN_ATTEMPTS
    );
}
