//! Pruning: entries below the boundary are gone for good, everything the
//! tree proves stays, and a crash at any sync point of a prune leaves a log
//! that opens and verifies with the old boundary or the new one.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sealtrail_ledger::scrub::Scrub;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, LedgerError, LogOptions};
use sealtrail_storage::sim::{Fault, SimStorage};
use sealtrail_storage::Storage;

#[test]
fn prune_drops_entries_and_keeps_the_tree() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let log_dir = dir.log_dir("default");
    let mut model = Vec::new();
    let log = dir.open_log("default", opts()).unwrap();
    append_n(&log, &mut model, 1000, 37);
    check(&log, &model, 0);

    let before = entry_bytes(&storage, &log_dir);
    let r = log.prune(512).unwrap();
    let leaves: Vec<[u8; 32]> = model.iter().map(|e| leaf(e)).collect();
    assert_eq!((r.from, r.to), (0, 512));
    assert_eq!(r.root_at_to, mth(&leaves[..512]));
    let after = entry_bytes(&storage, &log_dir);
    let pruned_bytes: u64 = model[..512].iter().map(|e| 8 + e.len() as u64).sum();
    // The `entries` file went (its header too); the new segments have one each.
    assert_eq!(before - after, r.bytes_freed);
    assert_eq!(r.bytes_freed, pruned_bytes + 16 - 2 * 32, "{r:?}");
    assert!(!storage.exists(&log_dir.join("entries")));
    check(&log, &model, 512);

    // Appends go on; a repeated or lower prune changes nothing.
    append_n(&log, &mut model, 300, 50);
    let again = log.prune(512).unwrap();
    assert_eq!((again.from, again.to, again.bytes_freed), (512, 512, 0));
    assert_eq!(log.prune(256).unwrap().to, 512);
    check(&log, &model, 512);

    // A second prune splits the segment started by the first.
    let r = log.prune(1024).unwrap();
    let leaves: Vec<[u8; 32]> = model.iter().map(|e| leaf(e)).collect();
    assert_eq!((r.from, r.to), (512, 1024));
    assert_eq!(r.root_at_to, mth(&leaves[..1024]));
    check(&log, &model, 1024);
    let mut scrub = Scrub::new(&log).unwrap();
    scrub.start_pass(&log);
    assert!(scrub.check_pass(&log, 1 << 20).unwrap());
    drop(log);

    let report = verify_log(&storage, &log_dir, None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!((report.pruned_below, report.entries), (1024, 1300));
    assert!(report.notes.iter().any(|n| n.message.contains("0..1024 are pruned")));

    let log = dir.open_log("default", opts()).unwrap();
    check(&log, &model, 1024);
    append_n(&log, &mut model, 10, 10);
    check(&log, &model, 1024);
    drop(log);
    let ro = dir.open_log_read_only("default").unwrap();
    check(&ro, &model, 1024);
}

#[test]
fn prune_refuses_what_it_cannot_do_and_changes_nothing() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", opts()).unwrap();
    append_n(&log, &mut model, 700, 100);
    let files = |s: &SimStorage| {
        let d = dir.log_dir("default");
        s.list_files(&d)
            .unwrap()
            .into_iter()
            .map(|n| (n.clone(), s.read(&d.join(n)).unwrap()))
            .collect::<Vec<_>>()
    };
    let before = files(&storage);
    for (below, why) in [(300, "multiple of 256"), (768, "covers 700 entries, so at most 512")] {
        match log.prune(below) {
            Err(e @ LedgerError::PruneRefused { .. }) => assert!(e.to_string().contains(why), "{e}"),
            other => panic!("prune({below}): {other:?}"),
        }
    }
    assert_eq!(files(&storage), before);
    check(&log, &model, 0);
    // Pruning everything a checkpoint covers in whole bundles is allowed.
    append_n(&log, &mut model, 68, 68);
    assert_eq!(log.prune(768).unwrap().to, 768);
    check(&log, &model, 768);
    append_n(&log, &mut model, 5, 5);
    check(&log, &model, 768);
    drop(log);
    assert!(verify_log(&storage, &dir.log_dir("default"), None, None)
        .unwrap()
        .intact());
}

/// Power loss at every sync point of a prune (the second one of the log,
/// which splits a segment the first one started), with unsynced writes
/// kept, torn or lost and with or without the name changes that were not
/// synced: each image opens with the old or the new boundary, holds every
/// entry, verifies, and can be pruned again.
#[test]
fn crash_at_every_sync_point_of_a_prune() {
    let setup = || {
        let storage = SimStorage::new();
        let dir = sim_dir(&storage);
        dir.create_log("default", None).unwrap();
        let mut model = Vec::new();
        let log = dir.open_log("default", opts()).unwrap();
        append_n(&log, &mut model, 600, 45);
        log.prune(256).unwrap();
        append_n(&log, &mut model, 500, 45);
        (storage, dir, log, model)
    };
    let mut k = 1;
    loop {
        let (storage, dir, log, model) = setup();
        let base = storage.syncs();
        storage.set_fault(Some(Fault::CrashAtSync(base + k)));
        let result = log.prune(768);
        if !storage.has_crashed() {
            assert_eq!(result.unwrap().to, 768);
            assert!(k > 3, "a prune has several sync points");
            break;
        }
        // A crash at the last sync point (deleting the pruned files) comes
        // after the prune is recorded: it succeeded, and open finishes it.
        if let Ok(r) = result {
            assert_eq!(r.to, 768, "sync {k}");
        }
        drop(log);
        for (what, image) in [
            ("unsynced lost", storage.crash_image(|_| 0)),
            ("unsynced torn", storage.crash_image(|len| len / 2)),
            ("unsynced kept", storage.crash_image(|len| len)),
            ("names kept", storage.crash_image_all_names(|len| len)),
        ] {
            let dir = sim_dir(&image);
            let log = dir
                .open_log("default", opts())
                .unwrap_or_else(|e| panic!("sync {k}, {what}: open: {e}"));
            let pruned = log.pruned_below();
            assert!(
                pruned == 256 || pruned == 768,
                "sync {k}, {what}: pruned below {pruned}"
            );
            check(&log, &model, pruned);
            drop(log);
            let report = verify_log(&image, &dir.log_dir("default"), None, None).unwrap();
            assert!(report.intact(), "sync {k}, {what}: {:?}", report.findings);
            assert_eq!(report.pruned_below, pruned);
            // The prune can be done (again) and the log goes on.
            let log = dir.open_log("default", opts()).unwrap();
            log.prune(768).unwrap();
            let mut model = model.clone();
            append_n(&log, &mut model, 3, 3);
            check(&log, &model, 768);
            drop(log);
            let report = verify_log(&image, &dir.log_dir("default"), None, None).unwrap();
            assert!(report.intact(), "sync {k}, {what}, pruned again: {:?}", report.findings);
        }
        let _ = dir;
        k += 1;
    }
}

#[test]
fn prune_frees_disk_on_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    append_n(&log, &mut model, 5000, 1000);
    let log_dir = dir.log_dir("default");
    let size_of = |name: &str| std::fs::metadata(log_dir.join(name)).map(|m| m.len()).unwrap_or(0);
    let before = size_of("entries");
    let r = log.prune(4096).unwrap();
    let files: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("entries"))
        .collect();
    assert!(!files.contains(&"entries".to_string()), "{files:?}");
    let after: u64 = files.iter().map(|n| size_of(n)).sum();
    assert_eq!(before - after, r.bytes_freed);
    check(&log, &model, 4096);
    drop(log);
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    check(&log, &model, 4096);
}
