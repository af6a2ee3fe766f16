//! The ledger against an in-memory model, through crashes and faults.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sealtrail_ledger::sim::{Fault, SimStorage};
use sealtrail_ledger::storage::Storage;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, LedgerError, Log, LogOptions, PreparedEntry};
use sealtrail_merkle::checkpoint::open_checkpoint;
use sealtrail_merkle::{leaf_hash, verify_consistency, verify_inclusion};
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
