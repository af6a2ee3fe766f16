//! The ledger against an in-memory model, through crashes and faults.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, LedgerError, Log, LogOptions, PreparedEntry};
use sealtrail_merkle::checkpoint::open_checkpoint;
use sealtrail_merkle::{leaf_hash, verify_consistency, verify_inclusion};
use sealtrail_storage::sim::{Fault, SimStorage};
use sealtrail_storage::Storage;
use std::path::Path;
use std::sync::Arc;

fn sim_dir(storage: &SimStorage) -> DataDir {
    DataDir::with_storage("/data", Arc::new(storage.clone()))
}

fn small_opts() -> LogOptions {
    LogOptions {
        derived_sync_every: 7,
        ..LogOptions::default()
    }
}

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i} {}", "x".repeat((i % 40) as usize)).into_bytes()
}

/// Check a log holds exactly `model`, with proofs and checkpoint that verify.
fn check(log: &Log, model: &[Vec<u8>]) {
    let size = model.len() as u64;
    assert_eq!(log.size(), size);
    let (cp, note) = log.checkpoint();
    let (opened, _) = open_checkpoint(&note, log.verifier()).unwrap();
    assert_eq!(opened, cp);
    assert_eq!(cp.size, size);
    for (i, want) in model.iter().enumerate() {
        assert_eq!(&log.entry(i as u64).unwrap(), want, "entry {i}");
    }
    if size > 0 {
        for i in [0, size / 2, size - 1] {
            let p = log.inclusion_proof(i, size).unwrap();
            verify_inclusion(i, size, &leaf_hash(&model[i as usize]), &p, &cp.root).unwrap();
        }
        // Proofs asked for together are the proofs asked for one by one.
        let indices: Vec<u64> = (0..size)
            .step_by(((size / 50) as usize).max(1))
            .chain([size - 1])
            .collect();
        let together = log.inclusion_proofs(&indices, size).unwrap();
        for (i, p) in indices.iter().zip(&together) {
            assert_eq!(p, &log.inclusion_proof(*i, size).unwrap(), "entry {i} of {size}");
        }
        assert!(matches!(
            log.inclusion_proofs(&[0, size], size),
            Err(LedgerError::OutOfRange { .. })
        ));
        let old = size / 3 + 1;
        let p = log.consistency_proof(old, size).unwrap();
        verify_consistency(old, size, &log.root_at(old).unwrap(), &cp.root, &p).unwrap();
    }
    assert!(matches!(log.entry(size), Err(LedgerError::OutOfRange { .. })));
}

#[test]
fn append_reopen_and_read_back() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    {
        let log = dir.open_log("default", small_opts()).unwrap();
        check(&log, &model);
        for (round, batch) in [1u64, 5, 17, 3].into_iter().enumerate() {
            let entries: Vec<Vec<u8>> = (0..batch).map(|i| entry(model.len() as u64 + i)).collect();
            // Entries hashed ahead of the append make the same log.
            let a = if round % 2 == 0 {
                log.append(&entries).unwrap()
            } else {
                let prepared: Vec<PreparedEntry> = entries.iter().cloned().map(PreparedEntry::new).collect();
                for (p, e) in prepared.iter().zip(&entries) {
                    assert_eq!(p.leaf(), leaf_hash(e));
                    assert_eq!(p.data(), e.as_slice());
                }
                log.append_prepared(&prepared).unwrap()
            };
            assert_eq!(a.first, model.len() as u64);
            assert_eq!(a.count, batch);
            model.extend(entries);
            assert_eq!(a.tree_size, model.len() as u64);
        }
        check(&log, &model);
    }
    let log = dir.open_log("default", small_opts()).unwrap();
    check(&log, &model);
    let report = verify_log(&storage, &dir.log_dir("default"), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
}

#[test]
fn oversized_entry_is_refused_and_nothing_is_written() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let log = dir.open_log("default", small_opts()).unwrap();
    let err = log.append(&[vec![1u8; 10], vec![0u8; 65_536]]).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::EntryTooLarge {
                position: 1,
                len: 65_536
            }
        ),
        "{err}"
    );
    assert_eq!(log.size(), 0);
    log.append(&[vec![0u8; 65_535]]).unwrap();
    assert_eq!(log.entry(0).unwrap().len(), 65_535);
}

#[test]
fn existing_log_key_is_never_overwritten() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    let v = dir.create_log("default", None).unwrap();
    assert!(matches!(
        dir.create_log("default", None),
        Err(LedgerError::LogExists(_))
    ));
    assert_eq!(dir.verifier("default").unwrap().to_string(), v.to_string());
    assert!(matches!(
        dir.create_log("Bad Name", None),
        Err(LedgerError::BadLogName(_))
    ));
}

#[test]
fn concurrent_appenders_get_unique_contiguous_indices() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let log = dir
        .open_log(
            "default",
            LogOptions {
                max_batch: 50,
                ..small_opts()
            },
        )
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..30u64 {
                    let batch: Vec<Vec<u8>> = (0..1 + i % 4).map(|j| format!("t{t} i{i} j{j}").into_bytes()).collect();
                    let a = log.append(&batch).unwrap();
                    for (k, e) in batch.into_iter().enumerate() {
                        got.push((a.first + k as u64, e));
                    }
                }
                got
            })
        })
        .collect();
    let mut all: Vec<(u64, Vec<u8>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    for (i, (index, e)) in all.iter().enumerate() {
        assert_eq!(*index, i as u64, "indices are contiguous and unique");
        assert_eq!(&log.entry(*index).unwrap(), e);
    }
    assert_eq!(log.size(), all.len() as u64);
}

#[test]
fn failed_sync_poisons_until_reopen() {
    for fault in [
        Fault::FailSync(1),
        Fault::FailWrite(1),
        Fault::FailSync(2),
        Fault::FailWrite(3),
    ] {
        let storage = SimStorage::new();
        let dir = sim_dir(&storage);
        dir.create_log("default", None).unwrap();
        let log = dir.open_log("default", small_opts()).unwrap();
        log.append(&[b"before".to_vec()]).unwrap();
        // Counters run from the start; make the fault land on this append.
        storage.set_fault(Some(match fault {
            Fault::FailSync(k) => Fault::FailSync(storage.syncs() + k),
            Fault::FailWrite(k) => Fault::FailWrite(storage.writes() + k),
            f => f,
        }));
        let err = log.append(&[b"doomed".to_vec()]).unwrap_err();
        assert!(
            err.to_string().contains("simulated"),
            "{fault:?}: the failure names its cause: {err}"
        );
        assert!(log.poisoned().is_some(), "{fault:?}");
        let again = log.append(&[b"refused".to_vec()]).unwrap_err();
        assert!(matches!(again, LedgerError::Poisoned(_)), "{fault:?}: {again}");
        storage.set_fault(None);
        drop(log);
        let log = dir.open_log("default", small_opts()).unwrap();
        assert_eq!(log.entry(0).unwrap(), b"before");
        assert!(log.size() <= 2);
        log.append(&[b"after".to_vec()]).unwrap();
    }
}

/// Power loss at every sync point of a workload, with unsynced writes torn
/// at several places: every acknowledged entry survives and the log
/// verifies.
#[test]
fn crash_at_every_sync_point_loses_no_acknowledged_entry() {
    let workload = |storage: &SimStorage| -> Vec<Vec<u8>> {
        let dir = sim_dir(storage);
        let mut acked = Vec::new();
        if dir.create_log("default", None).is_err() {
            return acked;
        }
        let Ok(log) = dir.open_log("default", small_opts()) else {
            return acked;
        };
        for b in 0..12u64 {
            let batch: Vec<Vec<u8>> = (0..1 + b % 3).map(|i| entry(b * 10 + i)).collect();
            match log.append(&batch) {
                Ok(_) => acked.extend(batch),
                Err(_) => break,
            }
        }
        acked
    };
    let total_syncs = {
        let s = SimStorage::new();
        workload(&s);
        s.syncs()
    };
    assert!(total_syncs > 20);
    for k in 1..=total_syncs {
        let storage = SimStorage::new();
        storage.set_fault(Some(Fault::CrashAtSync(k)));
        let acked = workload(&storage);
        assert!(storage.has_crashed(), "sync {k}");
        for (name, keep) in [("none", 0usize), ("torn", 7), ("all", usize::MAX)] {
            let image = storage.crash_image(|len| keep.min(len));
            let dir = sim_dir(&image);
            if !image.exists(Path::new("/data/logs/default/checkpoint")) {
                assert!(acked.is_empty());
                continue;
            }
            let log = match dir.open_log("default", small_opts()) {
                Ok(l) => l,
                Err(e) => panic!("crash at sync {k}, unsynced writes {name}: open failed: {e}"),
            };
            assert!(
                log.size() >= acked.len() as u64,
                "sync {k} {name}: lost acknowledged entries"
            );
            for (i, e) in acked.iter().enumerate() {
                assert_eq!(&log.entry(i as u64).unwrap(), e, "sync {k} {name}: entry {i}");
            }
            log.append(&[b"after restart".to_vec()]).unwrap();
            drop(log);
            let report = verify_log(&image, &dir.log_dir("default"), None, None).unwrap();
            assert!(report.intact(), "sync {k} {name}: {:?}", report.findings);
        }
    }
}

#[test]
fn open_refuses_a_log_behind_its_signed_checkpoint() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    {
        let log = dir.open_log("default", small_opts()).unwrap();
        for i in 0..10 {
            log.append(&[entry(i)]).unwrap();
        }
    }
    // Cut the last two records off the entries file: a rollback.
    let path = dir.log_dir("default").join("entries");
    let f = storage.open(&path, false).unwrap();
    let len = f.len().unwrap();
    f.set_len(len - 2 * (8 + entry(9).len() as u64)).unwrap();
    let err = dir.open_log("default", small_opts()).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("last signed checkpoint covers 10"), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    /// Random appends and reopens agree with a Vec.
    #[test]
    fn ledger_matches_model(ops in prop::collection::vec((0usize..6, prop::bool::weighted(0.2)), 1..25)) {
        let storage = SimStorage::new();
        let dir = sim_dir(&storage);
        dir.create_log("m", None).unwrap();
        let mut log = dir.open_log("m", small_opts()).unwrap();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for (n, reopen) in ops {
            let batch: Vec<Vec<u8>> = (0..n).map(|i| entry(model.len() as u64 * 7 + i as u64)).collect();
            let a = log.append(&batch).unwrap();
            prop_assert_eq!(a.first, model.len() as u64);
            model.extend(batch);
            if reopen {
                drop(log);
                log = dir.open_log("m", small_opts()).unwrap();
            }
        }
        check(&log, &model);
    }
}

#[test]
fn damaged_derived_files_are_rebuilt_from_the_entries_on_open() {
    for damage in ["frontier hash", "short index"] {
        let storage = SimStorage::new();
        let dir = sim_dir(&storage);
        dir.create_log("default", None).unwrap();
        let model: Vec<Vec<u8>> = (0..40).map(entry).collect();
        dir.open_log("default", small_opts()).unwrap().append(&model).unwrap();
        let log_dir = dir.log_dir("default");
        if damage == "frontier hash" {
            // The last stored hash is on the frontier a clean open reads.
            let f = storage.open(&log_dir.join("hashes"), false).unwrap();
            let len = f.len().unwrap();
            f.write_all_at(&[0xff; 32], len - 32).unwrap();
        } else {
            storage
                .open(&log_dir.join("index"), false)
                .unwrap()
                .set_len(16 + 8)
                .unwrap();
        }
        let log = dir.open_log("default", small_opts()).unwrap();
        check(&log, &model);
        drop(log);
        let report = verify_log(&storage, &log_dir, None, None).unwrap();
        assert!(report.intact(), "{damage}: {:?}", report.findings);
    }
}

/// The same with four appenders at once, so that a batch is being written
/// while the previous one syncs when the power goes.
#[test]
fn crash_with_concurrent_appenders_loses_no_acknowledged_entry() {
    for k in 1..=60u64 {
        let storage = SimStorage::new();
        let dir = sim_dir(&storage);
        dir.create_log("default", None).unwrap();
        let log = dir.open_log("default", small_opts()).unwrap();
        storage.set_fault(Some(Fault::CrashAtSync(storage.syncs() + k)));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for b in 0..12u64 {
                        let batch: Vec<Vec<u8>> =
                            (0..1 + b % 3).map(|i| format!("t{t} b{b} i{i}").into_bytes()).collect();
                        match log.append(&batch) {
                            Ok(a) => acked.extend(batch.into_iter().enumerate().map(|(i, e)| (a.first + i as u64, e))),
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked: Vec<(u64, Vec<u8>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        drop(log);
        for keep in [0usize, 5, usize::MAX] {
            let image = storage.crash_image(|len| keep.min(len));
            let dir = sim_dir(&image);
            let log = dir
                .open_log("default", small_opts())
                .unwrap_or_else(|e| panic!("sync {k} keep {keep}: {e}"));
            for (index, e) in &acked {
                assert_eq!(&log.entry(*index).unwrap(), e, "sync {k} keep {keep}: entry {index}");
            }
            drop(log);
            let report = verify_log(&image, &dir.log_dir("default"), None, None).unwrap();
            assert!(report.intact(), "sync {k} keep {keep}: {:?}", report.findings);
        }
    }
}

/// A log of `n` entries on real files, closed cleanly, and its directory.
fn real_log(n: u64) -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    dir.create_log("default", None).unwrap();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    let batch: Vec<Vec<u8>> = (0..n).map(entry).collect();
    log.append(&batch).unwrap();
    drop(log);
    (tmp, dir)
}

/// Byte offset of entry `index`'s record in a log of `entry(i)` entries.
fn record_offset(index: u64) -> u64 {
    16 + (0..index).map(|i| 8 + entry(i).len() as u64).sum::<u64>()
}

fn edit_entries(dir: &DataDir, f: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.log_dir("default").join("entries");
    let mut bytes = std::fs::read(&path).unwrap();
    f(&mut bytes);
    // In place, as a disk fault or an intruder would: the open log's
    // handle sees the change.
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&bytes, 0)
        .unwrap();
}

#[test]
fn a_flipped_byte_read_back_marks_the_log_damaged_and_stops_writes_and_signatures() {
    let (_tmp, dir) = real_log(5);
    edit_entries(&dir, |b| b[record_offset(2) as usize + 10] ^= 0x01);
    // A clean close leaves nothing to re-read: open does not see it.
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    assert!(log.damaged().is_none());
    assert_eq!(log.entry(1).unwrap(), entry(1));
    let err = log.entry(2).unwrap_err();
    match &err {
        LedgerError::Damaged { log, index, offset, .. } => {
            assert_eq!((log.as_str(), *index, *offset), ("default", 2, record_offset(2)));
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(text.contains("entry 2") && text.contains("checksum"), "{text}");
    assert!(!text.contains('/'), "no file path in {text}");
    let damage = log.damaged().unwrap();
    assert_eq!((damage.index, damage.offset), (2, record_offset(2)));
    // A read of several entries that spans it fails the same way.
    assert!(matches!(log.entries(0, 5), Err(LedgerError::Damaged { index: 2, .. })));

    let (before, note) = log.checkpoint();
    assert!(matches!(
        log.append(&[b"after".to_vec()]),
        Err(LedgerError::Damaged { index: 2, .. })
    ));
    assert!(matches!(log.checkpoint_at(3), Err(LedgerError::Damaged { .. })));
    assert_eq!(log.checkpoint(), (before, note));
    assert!(log.poisoned().is_none(), "damage is its own state");
    assert!(matches!(log.reopen(), Err(LedgerError::Damaged { .. })));
}

#[test]
fn the_scrub_finds_damage_nobody_read_in_old_and_new_entries() {
    use sealtrail_ledger::scrub::Scrub;
    // A whole-log pass over an intact log completes and finds nothing.
    let (_tmp, dir) = real_log(300);
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    let mut scrub = Scrub::new(&log).unwrap();
    scrub.start_pass(&log);
    let mut steps = 0;
    while !scrub.check_pass(&log, 64).unwrap() {
        steps += 1;
    }
    assert_eq!(steps, 300 / 64, "the budget paces the pass");
    let status = scrub.status(&log);
    assert_eq!(
        (status.full_passes, status.last_pass_size, status.pass),
        (1, Some(300), None)
    );

    // Entries appended later are re-read by the new-entry cursor.
    let more: Vec<Vec<u8>> = (300..310).map(entry).collect();
    log.append(&more).unwrap();
    assert_eq!(scrub.check_new(&log, 1000).unwrap(), 10);
    assert_eq!(scrub.status(&log).new_checked, 310);
    let more: Vec<Vec<u8>> = (310..320).map(entry).collect();
    log.append(&more).unwrap();
    // An entry rewritten with a valid record checksum: only the leaf hash
    // gives it away.
    edit_entries(&dir, |b| {
        let at = record_offset(315) as usize;
        let mut forged = entry(315);
        forged[0] ^= 0x20;
        let crc = sealtrail_ledger::format::record_crc(&forged, 315);
        b[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        b[at + 8..at + 8 + forged.len()].copy_from_slice(&forged);
    });
    let err = scrub.check_new(&log, 1000).unwrap_err();
    assert!(
        matches!(&err, LedgerError::Damaged { index: 315, .. }) && err.to_string().contains("leaf hash of entry 315"),
        "{err}"
    );
    assert_eq!(scrub.status(&log).damaged.unwrap().index, 315);
    drop(log);

    // A flip in an old entry is found by the next whole-log pass.
    let (_tmp, dir) = real_log(50);
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    let mut scrub = Scrub::new(&log).unwrap();
    edit_entries(&dir, |b| b[record_offset(17) as usize + 9] ^= 0x80);
    assert_eq!(scrub.check_new(&log, 1000).unwrap(), 0);
    scrub.start_pass(&log);
    let err = scrub.check_pass(&log, 1000).unwrap_err();
    assert!(matches!(err, LedgerError::Damaged { index: 17, .. }), "{err}");
    assert_eq!(
        scrub.status(&log).pass,
        Some((0, 50)),
        "the pass stays at the chunk holding it"
    );
    assert!(log.append(&[b"x".to_vec()]).is_err());
}

#[test]
fn a_log_poisoned_by_a_full_disk_reopens_in_place_and_loses_nothing_acknowledged() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let log = dir.open_log("default", small_opts()).unwrap();
    let mut model: Vec<Vec<u8>> = (0..10).map(entry).collect();
    log.append(&model).unwrap();
    storage.set_fault(Some(Fault::FailWrite(storage.writes() + 1)));
    let err = log.append(&[entry(10)]).unwrap_err();
    assert!(err.to_string().contains("simulated full disk"), "{err}");
    assert!(log.poisoned().is_some() && log.poisoned_by_full_disk());
    let reason = log.poisoned().unwrap();
    assert!(
        reason.contains("entries") && !reason.contains('/'),
        "no path in {reason}"
    );
    assert!(matches!(log.append(&[entry(11)]), Err(LedgerError::Poisoned(_))));
    storage.set_fault(None);
    log.reopen().unwrap();
    assert!(log.poisoned().is_none());
    check(&log, &model);
    let more: Vec<Vec<u8>> = (20..25).map(entry).collect();
    let a = log.append(&more).unwrap();
    assert_eq!(a.first, 10);
    model.extend(more);
    check(&log, &model);
    // Reopening a healthy log changes nothing.
    log.reopen().unwrap();
    check(&log, &model);
    drop(log);
    let log = dir.open_log("default", small_opts()).unwrap();
    check(&log, &model);

    // A failed sync is not a full disk: no reopen in place is offered.
    storage.set_fault(Some(Fault::FailSync(storage.syncs() + 1)));
    log.append(&[entry(30)]).unwrap_err();
    assert!(log.poisoned().is_some() && !log.poisoned_by_full_disk());
}
