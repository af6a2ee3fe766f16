//! Backups end to end on real files: round trip, online under concurrent
//! appends, references between meta.db and the logs, incremental bytes,
//! damage (in the backup, and in objects an incremental backup would use
//! again), refusal of a non-empty target, and (on simulated storage) power
//! cut at every sync point of a backup and of a restore.

#![allow(clippy::unwrap_used)]

use sealtrail_backup::manifest::hex;
use sealtrail_backup::{create, restore, restore_with, verify, BackupError, CreateOptions, Manifest, Source};
use sealtrail_ledger::storage::sim::{Fault, SimStorage};
use sealtrail_ledger::storage::{OsStorage, Storage};
use sealtrail_ledger::{DataDir, LogOptions};
use sha2::Digest;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn entry(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 37) as usize)).into_bytes()
}

fn opts() -> CreateOptions {
    CreateOptions {
        block: 1000,
        ..CreateOptions::default()
    }
}

/// A data directory with two logs, meta.db (WAL), a secrets key, a report
/// and a query index that must not be copied.
fn populate(data: &Path, entries: u64) -> DataDir {
    let dir = DataDir::new(data);
    for name in ["default", "system"] {
        dir.create_log(name, None).unwrap();
        let log = dir.open_log(name, LogOptions::default()).unwrap();
        // Different bytes in each log: objects are shared by content.
        let base = if name == "system" { 1_000_000_000 } else { 0 };
        for b in 0..entries / 10 {
            log.append(&(b * 10..b * 10 + 10).map(|i| entry(base + i)).collect::<Vec<_>>())
                .unwrap();
        }
    }
    let conn = rusqlite::Connection::open(data.join("meta.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    for k in 0..100 {
        conn.execute("INSERT INTO t VALUES (?1, ?2)", (k, format!("value {k}")))
            .unwrap();
    }
    std::fs::write(data.join("secrets.key"), "secret\n").unwrap();
    std::fs::set_permissions(data.join("secrets.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(data.join("data-runs/1")).unwrap();
    std::fs::write(data.join("data-runs/1/report.json"), "{}\n").unwrap();
    let qi = dir.log_dir("default").join("query-index");
    std::fs::create_dir_all(&qi).unwrap();
    std::fs::write(qi.join("MANIFEST"), "index").unwrap();
    dir
}

fn rows(db: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut s = conn.prepare("SELECT k, v FROM t ORDER BY k").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read_manifest(dest: &Path) -> Manifest {
    Manifest::decode(&std::fs::read(dest.join("MANIFEST")).unwrap()).unwrap()
}

#[test]
fn offline_round_trip_serves_the_same_checkpoint_and_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = populate(&data, 200);
    let dest = tmp.path().join("backup");
    let report = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    assert!(!report.incremental);
    assert_eq!(report.logs.len(), 2);
    assert_eq!(mode(&dest), 0o700);

    let v = verify(&OsStorage, &dest).unwrap();
    assert!(v.intact(), "{:?}", v.findings);
    let m = v.manifest.unwrap();
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"meta.db") && paths.contains(&"secrets.key") && paths.contains(&"data-runs/1/report.json"));
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("query-index") && !p.ends_with("/lock") && !p.contains("-wal")),
        "{paths:?}"
    );

    let target = tmp.path().join("restored");
    let r = restore(&dest, &target).unwrap();
    assert_eq!(r.logs.len(), 2);
    let restored = DataDir::new(&target);
    for name in ["default", "system"] {
        let a = src.open_log_read_only(name).unwrap();
        let b = restored.open_log(name, LogOptions::default()).unwrap();
        assert_eq!(a.checkpoint().1, b.checkpoint().1, "log {name}: same signed checkpoint");
        assert_eq!(b.size(), 200);
        let base = if name == "system" { 1_000_000_000 } else { 0 };
        assert_eq!(
            b.entries(0, 200).unwrap(),
            (0..200).map(|i| entry(base + i)).collect::<Vec<_>>()
        );
        assert_eq!(mode(&restored.log_dir(name).join("log.key")), 0o600);
        // The restored log takes appends as its original would.
        b.append(&[b"after restore".to_vec()]).unwrap();
    }
    assert_eq!(rows(&target.join("meta.db")), rows(&data.join("meta.db")));
    assert_eq!(rows(&target.join("meta.db")).len(), 100);
    assert_eq!(mode(&target.join("secrets.key")), 0o600);
    assert_eq!(std::fs::read(target.join("data-runs/1/report.json")).unwrap(), b"{}\n");
    assert!(!restored.log_dir("default").join("query-index").exists());
    // No staging directory left beside the target.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
}

#[test]
fn online_backup_under_concurrent_appends_is_covered_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = populate(&data, 20);
    let log = Arc::new(dir.open_log("default", LogOptions::default()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..3u64 {
        let (log, stop) = (log.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                log.append(
                    &(0..5)
                        .map(|k| entry(1_000_000 * (t + 1) + n * 5 + k))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
                n += 1;
            }
            n
        }));
    }
    let meta_writer = {
        let (stop, db) = (stop.clone(), data.join("meta.db"));
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(db).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            let mut k = 1000;
            while !stop.load(Ordering::Relaxed) {
                conn.execute("INSERT INTO t VALUES (?1, 'online')", [k]).unwrap();
                k += 1;
            }
        })
    };
    let dest = tmp.path().join("backup");
    let mut sizes = Vec::new();
    for round in 0..3 {
        while log.size() < 20 + 300 * (round + 1) {
            std::thread::yield_now();
        }
        let r = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
        assert_eq!(r.incremental, round > 0);
        let v = verify(&OsStorage, &dest).unwrap();
        assert!(v.intact(), "round {round}: {:?}", v.findings);
        let rec = r.logs.iter().find(|l| l.name == "default").unwrap().clone();
        assert!(rec.size >= 20 + 300 * (round + 1), "round {round}: {rec:?}");
        sizes.push(rec.size);
    }
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    stop.store(true, Ordering::Relaxed);
    let appended: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    meta_writer.join().unwrap();
    assert!(appended > 0);

    // The backup's checkpoint is served by the restored copy with exactly
    // the entries the live log holds at those indices.
    let target = tmp.path().join("restored");
    restore(&dest, &target).unwrap();
    let restored = DataDir::new(&target)
        .open_log("default", LogOptions::default())
        .unwrap();
    let size = *sizes.last().unwrap();
    assert_eq!(restored.size(), size);
    assert_eq!(restored.root_at(size).unwrap(), log.root_at(size).unwrap());
    assert_eq!(restored.entries(0, size).unwrap(), log.entries(0, size).unwrap());
    let restored_rows = rows(&target.join("meta.db"));
    assert!(restored_rows.len() >= 100);
    // One committed state: the rows of a prefix of the inserts, no gap.
    let online: Vec<i64> = restored_rows.iter().map(|r| r.0).filter(|k| *k >= 1000).collect();
    assert!(online.iter().enumerate().all(|(i, k)| *k == 1000 + i as i64));
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn incremental_backup_copies_only_new_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = populate(&data, 500);
    std::fs::remove_file(data.join("meta.db")).unwrap();
    let _ = std::fs::remove_file(data.join("meta.db-wal"));
    let _ = std::fs::remove_file(data.join("meta.db-shm"));
    let extra = dir.log_dir("default").join("extra");
    std::fs::write(&extra, b"abc").unwrap();
    let dest = tmp.path().join("backup");
    let first = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    let total: u64 = read_manifest(&dest).files.iter().map(|f| f.len).sum();
    assert_eq!(first.bytes_written, total, "a first backup writes every byte once");

    let d = dir.log_dir("default");
    let before: Vec<u64> = ["entries", "index", "hashes"]
        .iter()
        .map(|f| file_len(&d.join(f)))
        .collect();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    log.append(&(500..700).map(entry).collect::<Vec<_>>()).unwrap();
    drop(log);
    let after: Vec<u64> = ["entries", "index", "hashes"]
        .iter()
        .map(|f| file_len(&d.join(f)))
        .collect();
    let grown: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    assert!(grown > 200 * 8);

    let first_manifest = read_manifest(&dest);
    let second = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    assert!(second.incremental);
    // What was appended, and the rewritten checkpoint file (8,192 bytes).
    assert_eq!(second.bytes_written, grown + 8192);
    assert_eq!(second.files_skipped, 4, "both logs' log.key and log.pub are not read");
    assert!(second.prefix_changed.is_empty());
    assert_eq!(second.objects_removed, 1, "the old checkpoint object");
    let m = read_manifest(&dest);
    // Every object the new backup uses again is read back and hashed once.
    let reused: u64 = objects_of(&first_manifest)
        .intersection(&objects_of(&m))
        .map(|(_, len)| len)
        .sum();
    assert_eq!(second.bytes_checked, reused);
    assert!(second.objects_damaged.is_empty());
    eprintln!(
        "incremental backup after 200 entries: read {} bytes of the data directory, \
         {} bytes of the backup's objects checked, {} bytes written",
        second.bytes_read, second.bytes_checked, second.bytes_written
    );
    assert_eq!(m.file("logs/default/entries").unwrap().chunks.len(), 2);
    assert_eq!(m.file("logs/system/entries").unwrap().chunks.len(), 1);
    assert!(verify(&OsStorage, &dest).unwrap().intact());

    // Nothing new: nothing written.
    let third = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    assert_eq!(third.bytes_written, 0);
    assert_eq!(
        third.bytes_checked,
        objects_of(&m).iter().map(|(_, len)| len).sum::<u64>()
    );

    // A prefix that changed (a tail cut and written again) is copied whole.
    std::fs::write(&extra, b"xbcdef").unwrap();
    let fourth = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    assert_eq!(fourth.prefix_changed, vec!["logs/default/extra".to_string()]);
    assert_eq!(fourth.bytes_written, 6);
    let target = tmp.path().join("restored");
    restore(&dest, &target).unwrap();
    assert_eq!(std::fs::read(target.join("logs/default/extra")).unwrap(), b"xbcdef");
    let restored = DataDir::new(&target).open_log_read_only("default").unwrap();
    assert_eq!(
        restored.entries(0, 700).unwrap(),
        (0..700).map(entry).collect::<Vec<_>>()
    );
}

/// The objects a manifest names: (name, length), each once.
fn objects_of(m: &Manifest) -> std::collections::BTreeSet<(String, u64)> {
    m.files
        .iter()
        .flat_map(|f| f.chunks.iter().map(|c| (hex(&c.sha256), c.len)))
        .collect()
}

/// An object of the backup damaged in place: one byte changed, or its
/// second half cut and written again with other bytes; its length stays.
fn damage_in_place(path: &Path, how: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    match how % 2 {
        0 => bytes[len / 2] ^= 0x01,
        _ => bytes[len / 2..].iter_mut().for_each(|b| *b = b'z'),
    }
    std::fs::write(path, &bytes).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len() as usize, len);
}

#[test]
fn a_damaged_object_of_the_same_length_is_written_again_not_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    populate(&data, 300);
    let dest = tmp.path().join("backup");
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    let m = read_manifest(&dest);
    // One file of each kind: immutable, append-only, copied whole.
    let files = ["logs/default/log.key", "logs/default/entries", "secrets.key"];
    let mut names = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let rec = m.file(f).unwrap();
        assert_eq!(rec.chunks.len(), 1, "{f}");
        let name = hex(&rec.chunks[0].sha256);
        damage_in_place(&dest.join("objects").join(&name), i);
        names.push(name);
    }
    let v = verify(&OsStorage, &dest).unwrap();
    let named: Vec<&str> = v.findings.iter().map(|f| f.file.as_str()).collect();
    for f in files {
        assert!(named.contains(&f), "{f} not named: {:?}", v.findings);
    }

    // Nothing changed in the data directory: the damaged objects alone
    // are written again, under their names.
    let r = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    let mut damaged = r.objects_damaged.clone();
    damaged.sort();
    names.sort();
    assert_eq!(damaged, names);
    let rewritten: u64 = files.iter().map(|f| m.file(f).unwrap().len).sum();
    assert_eq!(r.bytes_written, rewritten);
    assert_eq!(read_manifest(&dest).files, m.files);
    for name in &names {
        let bytes = std::fs::read(dest.join("objects").join(name)).unwrap();
        assert_eq!(hex(sha2::Sha256::digest(&bytes).as_slice()), *name);
    }
    let v = verify(&OsStorage, &dest).unwrap();
    assert!(v.intact(), "{:?}", v.findings);
    let target = tmp.path().join("restored");
    restore(&dest, &target).unwrap();
    assert_eq!(std::fs::read(target.join("secrets.key")).unwrap(), b"secret\n");
    assert_eq!(
        std::fs::read(target.join("logs/default/entries")).unwrap(),
        std::fs::read(data.join("logs/default/entries")).unwrap()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}

#[test]
fn a_flipped_byte_in_any_file_is_named_and_refuses_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    populate(&data, 300);
    let dest = tmp.path().join("backup");
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    // A second backup, so that entries has two chunks.
    let log = DataDir::new(&data).open_log("default", LogOptions::default()).unwrap();
    log.append(&[entry(300)]).unwrap();
    drop(log);
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    let m = read_manifest(&dest);
    let mut cases: Vec<(String, PathBuf)> = Vec::new();
    for f in &m.files {
        for c in &f.chunks {
            cases.push((f.path.clone(), PathBuf::from("objects").join(hex(&c.sha256))));
        }
    }
    cases.push(("MANIFEST".into(), PathBuf::from("MANIFEST")));
    let kinds = [
        "logs/default/entries",
        "logs/default/index",
        "logs/default/hashes",
        "logs/default/checkpoint",
        "logs/default/log.key",
        "logs/default/log.pub",
        "meta.db",
        "secrets.key",
        "MANIFEST",
    ];
    for k in kinds {
        assert!(cases.iter().any(|(p, _)| p == k), "{k} not in the backup");
    }
    for (i, (file, object)) in cases.iter().enumerate() {
        let copy = tmp.path().join(format!("damaged-{i}"));
        copy_dir(&dest, &copy);
        let path = copy.join(object);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();

        let v = verify(&OsStorage, &copy).unwrap();
        assert!(!v.intact(), "{file}: damage not found");
        assert_eq!(&v.findings[0].file, file, "{file}: {:?}", v.findings);

        let target = tmp.path().join(format!("restored-{i}"));
        match restore(&copy, &target) {
            Err(BackupError::Damaged { file: named, .. }) => assert_eq!(&named, file),
            other => panic!("{file}: restore gave {other:?}"),
        }
        assert!(!target.exists(), "{file}: restore left a target");
        let staging: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
            .collect();
        assert!(staging.is_empty(), "{file}: staging left behind");
        std::fs::remove_dir_all(&copy).unwrap();
    }
    // A missing object too.
    let copy = tmp.path().join("missing");
    copy_dir(&dest, &copy);
    let f = m.file("logs/system/hashes").unwrap();
    std::fs::remove_file(copy.join("objects").join(hex(&f.chunks[0].sha256))).unwrap();
    let v = verify(&OsStorage, &copy).unwrap();
    assert_eq!(v.findings[0].file, "logs/system/hashes", "{:?}", v.findings);
}

#[test]
fn a_backup_of_a_damaged_log_does_not_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = populate(&data, 50);
    // Damage the source itself: the backup's hashes match, the ledger's
    // verifier does not.
    let p = dir.log_dir("default").join("entries");
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x01;
    std::fs::write(&p, &bytes).unwrap();
    let dest = tmp.path().join("backup");
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    let v = verify(&OsStorage, &dest).unwrap();
    assert_eq!(v.findings[0].file, "logs/default/entries", "{:?}", v.findings);
    assert!(matches!(
        restore(&dest, &tmp.path().join("r")),
        Err(BackupError::Damaged { file, .. }) if file == "logs/default/entries"
    ));
}

/// A restore that died (killed, or the machine stopped) leaves its staging
/// directory beside the target; the next restore of that target removes
/// it. One whose lock is held, a restore still running, is left alone.
#[test]
fn the_next_restore_removes_what_a_dead_restore_left() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    populate(&data, 20);
    let dest = tmp.path().join("backup");
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    let dead = tmp.path().join(".restored.restoring-999999");
    std::fs::create_dir_all(dead.join("logs/default")).unwrap();
    std::fs::write(dead.join("logs/default/entries"), vec![7u8; 4096]).unwrap();
    let running = tmp.path().join(".restored.restoring-888888");
    std::fs::create_dir_all(&running).unwrap();
    let held = OsStorage
        .lock(&tmp.path().join(".restored.restoring-888888.lock"))
        .unwrap();
    // Another target's staging is not this restore's business.
    let other = tmp.path().join(".elsewhere.restoring-999999");
    std::fs::create_dir_all(&other).unwrap();

    let target = tmp.path().join("restored");
    restore(&dest, &target).unwrap();
    assert!(target.join("meta.db").exists());
    assert!(!dead.exists(), "the dead restore's staging directory is removed");
    assert!(running.exists(), "a running restore's staging directory stays");
    assert!(other.exists());
    let mut left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restoring"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".elsewhere.restoring-999999",
            ".restored.restoring-888888",
            ".restored.restoring-888888.lock"
        ]
    );
    drop(held);
}

#[test]
fn restore_into_a_non_empty_directory_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    populate(&data, 20);
    let dest = tmp.path().join("backup");
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    let target = tmp.path().join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    let err = restore(&dest, &target).unwrap_err();
    assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
    assert!(err.to_string().contains("is not empty"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep.txt")]);
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"mine");
    // A file in the target's place is refused too; an empty directory is fine.
    std::fs::write(tmp.path().join("file"), "x").unwrap();
    assert!(matches!(
        restore(&dest, &tmp.path().join("file")),
        Err(BackupError::NotEmpty(_))
    ));
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    restore(&dest, &empty).unwrap();
    assert!(empty.join("logs/default/entries").exists());
    // And backing up into a directory that holds something else.
    let err = create(&Source::os(&data), &OsStorage, &target, &opts()).unwrap_err();
    assert!(err.to_string().contains("holds no backup"), "{err}");
}

/// Power cut at every sync point of a first and of an incremental backup,
/// unsynced writes lost, torn or kept, name changes lost or kept: the
/// destination verifies as the old backup (none, for the first) or as the
/// new one, and a backup after the restart succeeds and leaves no debris.
#[test]
fn a_crash_at_every_sync_point_leaves_the_old_or_the_new_backup() {
    let src = Path::new("/data");
    let dest = Path::new("/backup");
    let sim_opts = CreateOptions {
        block: 300,
        ..CreateOptions::default()
    };
    // Build the source and back up; the fault applies to backup number
    // `phase` (1 or 2). Returns the first backup's manifest (phase 2) and
    // the syncs made before the backup under test.
    let run = |storage: &SimStorage, phase: u32, fault: Option<Fault>| -> (Option<Vec<u8>>, u64) {
        let dir = DataDir::with_storage(src, Arc::new(storage.clone()));
        dir.create_log("default", None).unwrap();
        let log = dir.open_log("default", LogOptions::default()).unwrap();
        log.append(&(0..40).map(entry).collect::<Vec<_>>()).unwrap();
        storage.create_dir_all(&src.join("data-runs")).unwrap();
        storage
            .create_new(&src.join("data-runs/a"), b"report a", false)
            .unwrap();
        let source = Source {
            storage: Arc::new(storage.clone()),
            root: src.to_path_buf(),
        };
        let mut first = None;
        if phase == 2 {
            create(&source, storage, dest, &sim_opts).unwrap();
            first = Some(storage.read(&dest.join("MANIFEST")).unwrap());
            log.append(&(40..90).map(entry).collect::<Vec<_>>()).unwrap();
            storage
                .create_new(&src.join("data-runs/b"), b"report b", false)
                .unwrap();
        }
        let before = storage.syncs();
        storage.set_fault(fault.map(|f| match f {
            Fault::CrashAtSync(k) => Fault::CrashAtSync(before + k),
            other => other,
        }));
        let _ = create(&source, storage, dest, &sim_opts);
        (first, before)
    };
    for phase in [1u32, 2] {
        let total = {
            let s = SimStorage::new();
            let (_, before) = run(&s, phase, None);
            s.syncs() - before
        };
        assert!(total > 8, "phase {phase}: {total} syncs");
        for k in 1..=total {
            let storage = SimStorage::new();
            let (first, _) = run(&storage, phase, Some(Fault::CrashAtSync(k)));
            assert!(storage.has_crashed(), "phase {phase} sync {k}");
            for (how, keep) in [("lost", 0usize), ("torn", 5), ("kept", usize::MAX)] {
                for all_names in [false, true] {
                    let at = format!("phase {phase} sync {k}/{total} writes {how} all names {all_names}");
                    let image = if all_names {
                        storage.crash_image_all_names(|l| keep.min(l))
                    } else {
                        storage.crash_image(|l| keep.min(l))
                    };
                    if !image.exists(&dest.join("MANIFEST")) {
                        assert!(first.is_none(), "{at}: the first backup was lost");
                    } else {
                        let v = verify(&image, dest).unwrap();
                        assert!(v.intact(), "{at}: {:?}", v.findings);
                        let m = v.manifest.unwrap();
                        let bytes = image.read(&dest.join("MANIFEST")).unwrap();
                        let old = first.as_ref().is_some_and(|f| *f == bytes);
                        let new_size = if phase == 1 { 40 } else { 90 };
                        assert_eq!(m.logs[0].size, if old { 40 } else { new_size }, "{at}");
                        assert_eq!(m.file("data-runs/b").is_some(), !old && phase == 2, "{at}");
                    }
                    // After the restart (the writer's open repairs the
                    // source), a backup completes, verifies and leaves no
                    // object behind that no file uses.
                    let source_dir = DataDir::with_storage(src, Arc::new(image.clone()));
                    drop(source_dir.open_log("default", LogOptions::default()).unwrap());
                    let source = Source {
                        storage: Arc::new(image.clone()),
                        root: src.to_path_buf(),
                    };
                    create(&source, &image, dest, &sim_opts).unwrap();
                    let v = verify(&image, dest).unwrap();
                    assert!(v.intact(), "{at}, backup after restart: {:?}", v.findings);
                    assert!(v.notes.iter().all(|n| !n.contains("object")), "{at}: {:?}", v.notes);
                }
            }
        }
    }
}

#[test]
fn an_existing_empty_destination_is_made_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    populate(&data, 10);
    let dest = tmp.path().join("b");
    std::fs::create_dir(&dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
    assert_eq!(mode(&dest), 0o700);
    assert!(verify(&OsStorage, &dest).unwrap().intact());
}

/// The real file system, with `before_read` run before every read of a
/// file (opened to read, or read whole): how these tests make the data
/// directory change under a backup, or fail a read.
struct Intercepted<F> {
    before_read: F,
}

impl<F: Fn(&Path) -> std::io::Result<()> + Send + Sync> Storage for Intercepted<F> {
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn sealtrail_ledger::storage::StorageFile>> {
        OsStorage.open(path, create)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Arc<dyn sealtrail_ledger::storage::StorageFile>> {
        (self.before_read)(path)?;
        OsStorage.open_read(path)
    }
    fn create_new(&self, path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
        OsStorage.create_new(path, bytes, private)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        (self.before_read)(path)?;
        OsStorage.read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        OsStorage.exists(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        OsStorage.create_dir_all(path)
    }
    fn list_dirs(&self, path: &Path) -> std::io::Result<Vec<String>> {
        OsStorage.list_dirs(path)
    }
    fn list_files(&self, path: &Path) -> std::io::Result<Vec<String>> {
        OsStorage.list_files(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        OsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        OsStorage.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        OsStorage.remove_dir_all(path)
    }
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        OsStorage.real_path(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        OsStorage.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> std::io::Result<Box<dyn std::any::Any + Send + Sync>> {
        OsStorage.lock(path)
    }
}

/// A file of the log whose name ends in `name` vanishes the first
/// `times` times the backup reads it (as pruning removes a file between
/// the listing and the copy).
fn vanishing(name: &'static str, times: u32) -> Intercepted<impl Fn(&Path) -> std::io::Result<()> + Send + Sync> {
    let left = std::sync::atomic::AtomicU32::new(times);
    Intercepted {
        before_read: move |path: &Path| {
            if path.ends_with(name)
                && left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                    .is_ok()
            {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            Ok(())
        },
    }
}

#[test]
fn a_log_file_that_vanishes_mid_copy_starts_the_log_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    populate(&data, 50);
    let source = |vanish: u32| Source {
        storage: Arc::new(vanishing("hashes", vanish)),
        root: data.clone(),
    };
    // Vanishes twice (once per log, or twice in one): started again, complete.
    let dest = tmp.path().join("backup");
    let r = create(&source(2), &OsStorage, &dest, &opts()).unwrap();
    assert_eq!(r.logs.len(), 2);
    let v = verify(&OsStorage, &dest).unwrap();
    assert!(v.intact(), "{:?}", v.findings);
    assert!(v.manifest.unwrap().file("logs/default/hashes").is_some());
    // Vanishing at every attempt: the backup fails and the earlier one stays.
    let before = std::fs::read(dest.join("MANIFEST")).unwrap();
    let err = create(&source(1000), &OsStorage, &dest, &opts()).unwrap_err();
    assert!(err.to_string().contains("hashes"), "{err}");
    assert_eq!(std::fs::read(dest.join("MANIFEST")).unwrap(), before);
    assert!(verify(&OsStorage, &dest).unwrap().intact());
}

#[test]
fn two_backups_into_one_destination_do_not_interleave() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    populate(&data, 10);
    let dest = tmp.path().join("backup");
    std::fs::create_dir(&dest).unwrap();
    let held = OsStorage.lock(&dest.join("lock")).unwrap();
    let err = create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap_err();
    assert!(err.to_string().contains("another backup"), "{err}");
    drop(held);
    create(&Source::os(&data), &OsStorage, &dest, &opts()).unwrap();
}

/// `hooks` run (each once) when the backup first reads a file whose path
/// ends as given: what a server does meanwhile.
type Hook = Box<dyn FnOnce() + Send>;

fn hooked(hooks: Vec<(&'static str, Hook)>) -> Intercepted<impl Fn(&Path) -> std::io::Result<()> + Send + Sync> {
    let hooks = std::sync::Mutex::new(hooks);
    Intercepted {
        before_read: move |path: &Path| {
            let due: Vec<Hook> = {
                let mut hooks = hooks.lock().unwrap();
                let (now, later): (Vec<_>, Vec<_>) = hooks.drain(..).partition(|(end, _)| path.ends_with(end));
                *hooks = later;
                now.into_iter().map(|(_, h)| h).collect()
            };
            for h in due {
                h();
            }
            Ok(())
        },
    }
}

/// The tables of meta.db that name log state or hold PII keys, as the
/// server's metadata store declares them (the columns these tests use).
const META_TABLES: &str = "
    PRAGMA secure_delete = ON;
    CREATE TABLE pii_vault (id INTEGER PRIMARY KEY CHECK (id = 1), hmac_key BLOB NOT NULL,
                            generation INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE pii_keys (key_id BLOB PRIMARY KEY, log TEXT NOT NULL, subject BLOB NOT NULL,
                           wrapped BLOB NOT NULL, created_at TEXT NOT NULL, UNIQUE (log, subject));
    CREATE TABLE retention_blocks (log TEXT PRIMARY KEY, hold INTEGER NOT NULL, entry INTEGER NOT NULL);
    CREATE TABLE system_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
    INSERT INTO pii_vault VALUES (1, x'00', 0);
";

/// A wrapped key no other byte of the test could hold by chance.
fn wrapped(subject: &str) -> Vec<u8> {
    (0..60u8)
        .map(|i| i.wrapping_mul(7) ^ subject.as_bytes()[0])
        .chain(*b"WRAPPED-")
        .collect()
}

fn add_key(conn: &rusqlite::Connection, subject: &str) {
    conn.execute(
        "INSERT INTO pii_keys VALUES (?1, 'default', ?2, ?3, 'now')",
        (subject.as_bytes(), subject.as_bytes(), wrapped(subject)),
    )
    .unwrap();
}

/// Erasure as the server makes it: the keys and the event in one transaction.
fn erase(conn: &rusqlite::Connection, subject: &str) {
    conn.execute_batch(&format!(
        "BEGIN; DELETE FROM pii_keys WHERE subject = CAST('{subject}' AS BLOB);
         UPDATE pii_vault SET generation = generation + 1;
         INSERT INTO system_outbox (event) VALUES ('pii.erased {subject}'); COMMIT;"
    ))
    .unwrap();
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes between meta.db's copy and the logs' checkpoints, and after the
/// last checkpoint: every reference between meta.db and the logs in the
/// backup resolves, and no key erased before the backup ended is in it.
#[test]
fn meta_db_and_the_logs_of_an_online_backup_refer_to_each_other_soundly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = populate(&data, 20);
    let db = data.join("meta.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(META_TABLES).unwrap();
    for s in ["alice", "bob", "dave", "erin"] {
        add_key(&conn, s);
    }
    // Erased before the backup starts.
    erase(&conn, "dave");
    // Named entry 5 of `default` (it holds 20): covered.
    conn.execute("INSERT INTO retention_blocks VALUES ('default', 1, 5)", [])
        .unwrap();
    // Queued, not yet in the system log.
    conn.execute("INSERT INTO system_outbox (event) VALUES ('queued early')", [])
        .unwrap();
    drop(conn);
    let default = Arc::new(dir.open_log("default", LogOptions::default()).unwrap());
    let system = Arc::new(dir.open_log("system", LogOptions::default()).unwrap());

    let h1: Hook = {
        let (db, default) = (db.clone(), default.clone());
        Box::new(move || {
            // After meta.db's copy, before `default`'s checkpoint: an
            // erasure, a key committed and an entry sealed under it.
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA secure_delete = ON").unwrap();
            erase(&c, "alice");
            add_key(&c, "carol");
            default.append(&[b"sealed under carol".to_vec()]).unwrap();
            // A row naming the entry just appended.
            c.execute("UPDATE retention_blocks SET entry = 20 WHERE log = 'default'", [])
                .unwrap();
        })
    };
    let h2: Hook = {
        let (db, system) = (db.clone(), system.clone());
        Box::new(move || {
            // After the last log's checkpoint: the queued event drained
            // into the system log (appended, then the row deleted), a row
            // naming the system log's new size, and one more erasure.
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA secure_delete = ON").unwrap();
            system.append(&[b"queued early".to_vec()]).unwrap();
            c.execute("DELETE FROM system_outbox WHERE event = 'queued early'", [])
                .unwrap();
            let named = system.size() as i64 - 1;
            c.execute("INSERT INTO retention_blocks VALUES ('system', 2, ?1)", [named])
                .unwrap();
            erase(&c, "bob");
        })
    };
    let source = Source {
        storage: Arc::new(hooked(vec![("logs/default/log.pub", h1), ("logs/system/entries", h2)])),
        root: data.clone(),
    };
    let dest = tmp.path().join("backup");
    let r = create(&source, &OsStorage, &dest, &opts()).unwrap();
    let size = |name: &str| r.logs.iter().find(|l| l.name == name).unwrap().size;
    // The first hook ran before `default`'s checkpoint was read, the second
    // after `system`'s.
    assert_eq!((size("default"), size("system")), (21, 20));
    assert!(verify(&OsStorage, &dest).unwrap().intact());

    let target = tmp.path().join("restored");
    restore(&dest, &target).unwrap();
    let c = rusqlite::Connection::open(target.join("meta.db")).unwrap();
    let subjects: Vec<String> = c
        .prepare("SELECT CAST(subject AS TEXT) FROM pii_keys ORDER BY subject")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // carol's key seals an entry of the backup; alice, bob and dave were
    // erased before the backup ended.
    assert_eq!(subjects, ["carol", "erin"]);
    assert_eq!(
        c.query_row("SELECT generation FROM pii_vault", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        3
    );
    let restored = DataDir::new(&target);
    for (log, entry) in c
        .prepare("SELECT log, entry FROM retention_blocks")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
        .unwrap()
        .map(|r| r.unwrap())
    {
        let n = restored.open_log_read_only(&log).unwrap().size();
        assert!(
            entry < n,
            "retention_blocks names entry {entry} of {log}, which holds {n}"
        );
    }
    // The drained event is in the outbox copy or in the system log.
    let queued: i64 = c
        .query_row(
            "SELECT count(*) FROM system_outbox WHERE event = 'queued early'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let sys = restored.open_log_read_only("system").unwrap();
    let logged = sys
        .entries(0, sys.size())
        .unwrap()
        .iter()
        .filter(|e| e.as_slice() == b"queued early")
        .count();
    assert_eq!(queued + logged as i64, 1, "outbox {queued}, log {logged}");
    drop(c);
    // No byte of an erased key anywhere in the backup.
    for e in std::fs::read_dir(dest.join("objects")).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        for s in ["alice", "bob", "dave"] {
            assert!(!contains(&bytes, &wrapped(s)), "{s}'s erased key is in the backup");
        }
    }
}

/// Every file under `dir` on `s`, relative, with its bytes.
fn files_under(s: &dyn Storage, dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for f in s.list_files(&d).unwrap() {
            let p = d.join(&f);
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.insert(rel, s.read(&p).unwrap());
        }
        todo.extend(s.list_dirs(&d).unwrap().into_iter().map(|n| d.join(n)));
    }
    out
}

/// Power cut at every sync point of a restore, and a failure of every
/// write and of every sync: the target holds either nothing (and restoring
/// again succeeds) or the complete restore, byte for byte the data
/// directory that was backed up; never part of it.
#[test]
fn a_crash_or_failure_at_every_step_of_a_restore_leaves_nothing_or_all() {
    let src = Path::new("/data");
    let dest = Path::new("/backup");
    let target = Path::new("/srv/restored");
    let sim_opts = CreateOptions {
        block: 300,
        ..CreateOptions::default()
    };
    // A data directory and a backup of it in two runs (so files have two
    // chunks), on one simulated machine; returns the syncs and writes
    // made so far.
    let build = |storage: &SimStorage| -> (u64, u64) {
        let dir = DataDir::with_storage(src, Arc::new(storage.clone()));
        let source = Source {
            storage: Arc::new(storage.clone()),
            root: src.to_path_buf(),
        };
        for name in ["default", "system"] {
            dir.create_log(name, None).unwrap();
        }
        let log = dir.open_log("default", LogOptions::default()).unwrap();
        log.append(&(0..40).map(entry).collect::<Vec<_>>()).unwrap();
        storage.create_dir_all(&src.join("data-runs")).unwrap();
        storage
            .create_new(&src.join("data-runs/a"), b"report a", false)
            .unwrap();
        create(&source, storage, dest, &sim_opts).unwrap();
        log.append(&(40..90).map(entry).collect::<Vec<_>>()).unwrap();
        storage.create_new(&src.join("secrets.key"), b"secret", true).unwrap();
        create(&source, storage, dest, &sim_opts).unwrap();
        // Its writer closed first: closing syncs.
        drop(log);
        (storage.syncs(), storage.writes())
    };
    // The data directory as it was backed up (each machine makes its own
    // keys and so its own signatures).
    // A checkpoint file also records how far its log's derived files were
    // synced, which the restore's reopening may change: its signed
    // checkpoint is compared instead, under a name no file has.
    let notes = |s: &SimStorage, root: &Path| {
        let dir = DataDir::with_storage(root, Arc::new(s.clone()));
        ["default", "system"].map(|name| {
            (
                format!("{name} signed checkpoint"),
                dir.open_log_read_only(name).unwrap().checkpoint().1.to_vec(),
            )
        })
    };
    let expected = |s: &SimStorage| {
        let mut files = files_under(s, src);
        files.retain(|p, _| !p.ends_with("/lock") && !p.ends_with("/checkpoint"));
        files.extend(notes(s, src));
        assert!(files.contains_key("logs/default/entries") && files.contains_key("secrets.key"));
        files
    };
    let restore_on = |s: &SimStorage| restore_with(s, dest, Arc::new(s.clone()), target);
    // Nothing a server would serve, or all of it.
    let check = |image: &SimStorage, expected: &std::collections::BTreeMap<String, Vec<u8>>, at: &str| {
        let served = image.exists(target)
            && !(image.list_files(target).unwrap().is_empty() && image.list_dirs(target).unwrap().is_empty());
        if !served {
            restore_on(image).unwrap_or_else(|e| panic!("{at}: restoring again: {e}"));
        }
        let mut got = files_under(image, target);
        got.retain(|p, _| !p.ends_with("/lock") && !p.ends_with("/checkpoint"));
        got.extend(notes(image, target));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{at} (served before restoring again: {served})"
        );
        for (p, bytes) in expected {
            assert!(
                got[p] == *bytes,
                "{at}: {p} differs: {} vs {} bytes, first diff at {:?}",
                got[p].len(),
                bytes.len(),
                got[p].iter().zip(bytes).position(|(a, b)| a != b)
            );
        }
        let log = DataDir::with_storage(target, Arc::new(image.clone()))
            .open_log_read_only("default")
            .unwrap();
        assert_eq!(log.size(), 90, "{at}");
        // No staging directory left beside the target.
        assert_eq!(image.list_dirs(Path::new("/srv")).unwrap(), ["restored"], "{at}");
    };
    let (syncs, writes) = {
        let s = SimStorage::new();
        let (syncs, writes) = build(&s);
        let r = restore_on(&s).unwrap();
        assert_eq!(r.logs.len(), 2);
        check(&s, &expected(&s), "no fault");
        (s.syncs() - syncs, s.writes() - writes)
    };
    assert!(syncs > 10 && writes > 10, "{syncs} syncs, {writes} writes");
    for k in 1..=syncs {
        let storage = SimStorage::new();
        let (before, _) = build(&storage);
        let want = expected(&storage);
        storage.set_fault(Some(Fault::CrashAtSync(before + k)));
        let r = restore_on(&storage);
        assert!(r.is_err(), "sync {k}: {r:?} {} {}", storage.syncs(), before);
        assert!(storage.has_crashed(), "sync {k}");
        for (how, keep) in [("lost", 0usize), ("torn", 5), ("kept", usize::MAX)] {
            for all_names in [false, true] {
                let at = format!("crash at sync {k}/{syncs}, writes {how}, all names {all_names}");
                let image = if all_names {
                    storage.crash_image_all_names(|l| keep.min(l))
                } else {
                    storage.crash_image(|l| keep.min(l))
                };
                check(&image, &want, &at);
            }
        }
    }
    for k in 1..=syncs {
        let storage = SimStorage::new();
        let (before, _) = build(&storage);
        let want = expected(&storage);
        storage.set_fault(Some(Fault::FailSync(before + k)));
        let r = restore_on(&storage);
        let at = format!("failed sync {k}/{syncs} ({:?})", r.as_ref().err());
        // A failed sync refuses the restore and leaves nothing; but the
        // last one (the parent's, after the rename) fails with the restore
        // complete, and the writer's close on reopening a log is best
        // effort (the restore syncs those files itself afterwards).
        if r.is_err() {
            assert_eq!(storage.exists(target), k == syncs, "{at}");
        }
        storage.set_fault(None);
        check(&storage, &want, &at);
    }
    for k in 1..=writes {
        let storage = SimStorage::new();
        let (_, before) = build(&storage);
        let want = expected(&storage);
        storage.set_fault(Some(Fault::FailWrite(before + k)));
        let r = restore_on(&storage);
        let at = format!("failed write {k}/{writes}");
        // A failed write refuses the restore and leaves nothing, but for
        // the writer's best-effort close on reopening a log.
        if r.is_err() {
            assert!(!storage.exists(target), "{at}");
        }
        storage.set_fault(None);
        check(&storage, &want, &at);
    }
}
