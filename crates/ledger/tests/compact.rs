//! Compaction: sealed bundles packed with zstd are read, proved, tiled,
//! verified and scrubbed as before; their uncompressed bytes are freed; a
//! crash at any sync point of a compaction (or of a prune cutting through
//! a pack) loses nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sealtrail_ledger::scrub::Scrub;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{CpuMeter, DataDir, LedgerError, Log, LogOptions, Pace, PackVersion};
use sealtrail_storage::sim::{Fault, SimStorage};
use sealtrail_storage::Storage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn names(storage: &dyn Storage, dir: &DataDir) -> Vec<String> {
    storage.list_files(&dir.log_dir("default")).unwrap()
}

#[test]
fn compaction_is_transparent_and_frees_the_raw_bytes() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let log_dir = dir.log_dir("default");
    let mut model = Vec::new();
    let log = dir.open_log("default", opts()).unwrap();
    append_n(&log, &mut model, 3000, 77);
    let before = entry_bytes(&storage, &log_dir);

    let r = log.compact().unwrap();
    assert_eq!((r.from, r.to), (0, 2816));
    let raw: u64 = model[..2816].iter().map(|e| 8 + e.len() as u64).sum();
    assert_eq!(r.raw_bytes, raw);
    assert!(r.packed_bytes * 5 < r.raw_bytes, "{r:?}");
    let files = names(&storage, &dir);
    assert!(files.contains(&"pack-0000000000000000".to_string()), "{files:?}");
    assert!(!files.contains(&"entries".to_string()), "{files:?}");
    // Only what is not packed stays uncompressed.
    let unpacked: u64 = model[2816..].iter().map(|e| 8 + e.len() as u64).sum();
    assert_eq!(entry_bytes(&storage, &log_dir), unpacked + 2 * 32);
    assert_eq!(before - unpacked - 64 - r.packed_bytes, r.bytes_freed);
    check(&log, &model, 0);
    // A read across the packed and unpacked entries.
    assert_eq!(log.entries(2800, 100).unwrap(), model[2800..2900]);

    // Nothing new to pack; then more appends, packed after the first.
    assert_eq!(log.compact().unwrap().to, 2816);
    append_n(&log, &mut model, 700, 100);
    let r = log.compact().unwrap();
    assert_eq!((r.from, r.to), (2816, 3584));
    check(&log, &model, 0);

    // Pruning into a pack keeps the rest of that pack.
    let p = log.prune(1280).unwrap();
    assert!(p.bytes_freed > 0, "{p:?}");
    check(&log, &model, 1280);
    let mut scrub = Scrub::new(&log).unwrap();
    scrub.start_pass(&log);
    assert!(scrub.check_pass(&log, 1 << 20).unwrap());
    drop(log);

    let report = verify_log(&storage, &log_dir, None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!(report.entries, 3700);
    let log = dir.open_log("default", opts()).unwrap();
    check(&log, &model, 1280);
    append_n(&log, &mut model, 3, 3);
    check(&log, &model, 1280);
    drop(log);
    let ro = dir.open_log_read_only("default").unwrap();
    check(&ro, &model, 1280);
}

#[test]
fn a_damaged_pack_is_found_by_reads_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    append_n(&log, &mut model, 1024, 512);
    log.compact().unwrap();
    drop(log);
    let pack = dir.log_dir("default").join("pack-0000000000000000");
    let mut bytes = std::fs::read(&pack).unwrap();
    // The third bundle's frame: header (32) and table (4 × 16) first.
    let at = u64::from_be_bytes(bytes[32 + 2 * 16..32 + 2 * 16 + 8].try_into().unwrap()) as usize;
    bytes[at + 40] ^= 0x10;
    std::fs::write(&pack, &bytes).unwrap();

    let report = verify_log(
        &sealtrail_ledger::storage::OsStorage,
        &dir.log_dir("default"),
        None,
        None,
    )
    .unwrap();
    assert!(!report.intact());
    let f = &report.findings[0];
    assert_eq!((f.file, f.index), ("pack", Some(512)), "{f:?}");
    assert!(f.message.contains("checksum mismatch"), "{f:?}");

    let log = dir.open_log("default", LogOptions::default()).unwrap();
    assert_eq!(log.entry(511).unwrap(), model[511]);
    match log.entry(600) {
        Err(LedgerError::Damaged { index, .. }) => assert_eq!(index, 600),
        other => panic!("{other:?}"),
    }
    assert!(log.damaged().is_some());
    assert!(log.append(&[b"x"]).is_err());
}

#[test]
fn a_damaged_record_is_never_packed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    append_n(&log, &mut model, 1024, 512);
    drop(log);
    // Entry 600's number, "600" → "601", under its old checksum.
    let entries = dir.log_dir("default").join("entries");
    let mut bytes = std::fs::read(&entries).unwrap();
    let needle = b"\"n\":600,";
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    bytes[at + 6] ^= 0x01;
    std::fs::write(&entries, &bytes).unwrap();

    // Open does not re-read it; compaction does, and refuses it.
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    assert!(log.damaged().is_none());
    match log.compact() {
        Err(LedgerError::Damaged { index, .. }) => assert_eq!(index, 600),
        other => panic!("{other:?}"),
    }
    assert!(log.damaged().is_some());
    let files = std::fs::read_dir(dir.log_dir("default")).unwrap();
    let names: Vec<String> = files.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.starts_with("pack-")), "{names:?}");
    assert_eq!(log.entries(0, 600).unwrap(), model[..600]);
}

#[test]
fn a_frame_damaged_under_recomputed_crcs_is_found_by_reads_and_verify() {
    // Damage the CRCs in the table cannot see (as if it happened before
    // they were computed): zstd's content checksum over the decompressed
    // bytes, which version 3 requires, still finds it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    append_n(&log, &mut model, 1024, 512);
    log.compact().unwrap();
    drop(log);
    let pack = dir.log_dir("default").join("pack-0000000000000000");
    let mut bytes = std::fs::read(&pack).unwrap();
    assert_eq!(&bytes[8..12], [0, 0, 0, 3]);
    let t = 32 + 2 * 16;
    let at = u64::from_be_bytes(bytes[t..t + 8].try_into().unwrap()) as usize;
    let len = u32::from_be_bytes(bytes[t + 8..t + 12].try_into().unwrap()) as usize;
    // The content checksum itself, the frame's last 4 bytes.
    bytes[at + len - 2] ^= 0x01;
    let crc = crc32c::crc32c(&bytes[at..at + len]);
    bytes[t + 12..t + 16].copy_from_slice(&crc.to_be_bytes());
    let table_crc = crc32c::crc32c(&bytes[32..32 + 4 * 16]);
    bytes[28..32].copy_from_slice(&table_crc.to_be_bytes());
    std::fs::write(&pack, &bytes).unwrap();

    let report = verify_log(
        &sealtrail_ledger::storage::OsStorage,
        &dir.log_dir("default"),
        None,
        None,
    )
    .unwrap();
    assert!(!report.intact());
    let f = &report.findings[0];
    assert_eq!((f.file, f.index), ("pack", Some(512)), "{f:?}");
    assert!(!f.message.contains("checksum mismatch (stored"), "{f:?}");

    let log = dir.open_log("default", LogOptions::default()).unwrap();
    assert_eq!(log.entry(768).unwrap(), model[768]);
    match log.entry(600) {
        Err(LedgerError::Damaged { index, .. }) => assert_eq!(index, 600),
        other => panic!("{other:?}"),
    }
}

/// Cut power at every sync point of `op` run on the log `setup` makes;
/// every image must open (with `options`), hold every entry, verify, and
/// let `op` run again. Returns how many sync points there were.
fn crash_everywhere(
    setup: impl Fn() -> (SimStorage, DataDir, Log, Vec<Vec<u8>>),
    op: impl Fn(&Log) -> Result<(), LedgerError>,
    pruned: (u64, u64),
    options: &LogOptions,
) -> u64 {
    let mut k = 1;
    loop {
        let (storage, _dir, log, model) = setup();
        let base = storage.syncs();
        storage.set_fault(Some(Fault::CrashAtSync(base + k)));
        let result = op(&log);
        if !storage.has_crashed() {
            result.unwrap();
            return k - 1;
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
                .open_log("default", options.clone())
                .unwrap_or_else(|e| panic!("sync {k}, {what}: open: {e}"));
            let p = log.pruned_below();
            assert!(p == pruned.0 || p == pruned.1, "sync {k}, {what}: pruned below {p}");
            check(&log, &model, p);
            drop(log);
            let report = verify_log(&image, &dir.log_dir("default"), None, None).unwrap();
            assert!(report.intact(), "sync {k}, {what}: {:?}", report.findings);
            let log = dir.open_log("default", options.clone()).unwrap();
            op(&log).unwrap_or_else(|e| panic!("sync {k}, {what}: again: {e}"));
            let mut model = model.clone();
            append_n(&log, &mut model, 3, 3);
            check(&log, &model, pruned.1);
            drop(log);
            let report = verify_log(&image, &dir.log_dir("default"), None, None).unwrap();
            assert!(report.intact(), "sync {k}, {what}, again: {:?}", report.findings);
        }
        k += 1;
    }
}

/// The pack versions of the packs of the log in `storage`, by name.
fn pack_versions(storage: &SimStorage) -> Vec<(String, u8)> {
    let dir = sim_dir(storage).log_dir("default");
    let mut out: Vec<(String, u8)> = storage
        .list_files(&dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("pack-") && !n.ends_with(".tmp"))
        .map(|n| {
            let mut h = [0u8; 12];
            storage
                .open(&dir.join(&n), false)
                .unwrap()
                .read_exact_at(&mut h, 0)
                .unwrap();
            assert_eq!(&h[..11], b"STLPACKS\0\0\0", "{n}");
            (n, h[11])
        })
        .collect();
    out.sort();
    out
}

fn with_version(version: PackVersion) -> LogOptions {
    LogOptions {
        pack_version: version,
        ..opts()
    }
}

/// A compaction after one in `first`, crashed at every sync point, its
/// second pack written in `second`.
fn crash_compaction(first: PackVersion, second: PackVersion) -> u64 {
    crash_everywhere(
        || {
            let storage = SimStorage::new();
            let dir = sim_dir(&storage);
            dir.create_log("default", None).unwrap();
            let mut model = Vec::new();
            let log = dir.open_log("default", with_version(first)).unwrap();
            append_n(&log, &mut model, 600, 45);
            log.compact().unwrap();
            drop(log);
            let log = dir.open_log("default", with_version(second)).unwrap();
            append_n(&log, &mut model, 500, 45);
            (storage, dir, log, model)
        },
        |log| log.compact().map(|_| ()),
        (0, 0),
        &with_version(second),
    )
}

#[test]
fn crash_at_every_sync_point_of_a_compaction_in_each_pack_version() {
    for (first, second) in [
        (PackVersion::V3, PackVersion::V3),
        (PackVersion::V2, PackVersion::V2),
        (PackVersion::V2, PackVersion::V3),
    ] {
        let syncs = crash_compaction(first, second);
        assert!(syncs >= 8, "{first:?} then {second:?}: {syncs}");
    }
}

#[test]
fn compaction_writes_the_pack_version_asked_for() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", with_version(PackVersion::V2)).unwrap();
    append_n(&log, &mut model, 600, 45);
    log.compact().unwrap();
    drop(log);
    let log = dir.open_log("default", opts()).unwrap();
    append_n(&log, &mut model, 500, 45);
    log.compact().unwrap();
    assert_eq!(
        pack_versions(&storage),
        [
            ("pack-0000000000000000".to_string(), 2),
            ("pack-0000000000000200".to_string(), 3)
        ]
    );
    check(&log, &model, 0);
}

/// A prune through a pack of `version` (two of its three bundles kept),
/// crashed at every sync point; what is kept stays in `version`.
fn crash_prune_through(version: PackVersion) -> u64 {
    let syncs = crash_everywhere(
        || {
            let storage = SimStorage::new();
            let dir = sim_dir(&storage);
            dir.create_log("default", None).unwrap();
            let mut model = Vec::new();
            let log = dir.open_log("default", with_version(version)).unwrap();
            append_n(&log, &mut model, 1100, 45);
            log.compact().unwrap();
            append_n(&log, &mut model, 20, 5);
            (storage, dir, log, model)
        },
        |log| log.prune(768).map(|_| ()),
        (0, 768),
        &opts(),
    );
    // The same prune uncrashed: the pack of the bundles kept.
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", with_version(version)).unwrap();
    append_n(&log, &mut model, 1100, 45);
    log.compact().unwrap();
    log.prune(768).unwrap();
    let n = version.number() as u8;
    assert_eq!(pack_versions(&storage), [("pack-0000000000000300".to_string(), n)]);
    check(&log, &model, 768);
    syncs
}

#[test]
fn crash_at_every_sync_point_of_a_prune_through_a_pack_of_each_version() {
    for version in [PackVersion::V3, PackVersion::V2] {
        let syncs = crash_prune_through(version);
        assert!(syncs >= 5, "{version:?}: {syncs}");
    }
}

/// Syncs and writes of one compaction: each pack one write (header and
/// table included) and one sync; one directory sync for the packs and
/// the segment split off together; none for the deletions.
#[test]
fn a_compaction_writes_each_pack_at_once_and_syncs_the_directory_twice() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", opts()).unwrap();
    append_n(&log, &mut model, 1100, 50);
    let (syncs, writes) = (storage.syncs(), storage.writes());
    let r = log.compact().unwrap();
    assert_eq!((r.from, r.to), (0, 1024));
    // 1-3: the segment appended to, the new one it hands over to, the
    // directory; 4: the pack; 5-6: the segment of entries 1024.., the
    // directory; 7-10: index and hashes, twice (before and under the
    // commit lock); 11: the checkpoint slot.
    assert_eq!(storage.syncs() - syncs, 11);
    // The new segment's header; the pack; the split segment's header and
    // its entries; the checkpoint slot.
    assert_eq!(storage.writes() - writes, 5);
    check(&log, &model, 0);
    let files = names(&storage, &dir);
    assert!(!files.contains(&"entries".to_string()), "{files:?}");
    drop(log);
    let report = verify_log(&storage, &dir.log_dir("default"), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
}

/// Entry `i` of 1,000 bytes no compressor can shrink (xorshift64).
fn noise(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_pack_larger_than_one_write_is_written_in_parts_and_reads_back() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let log = dir.open_log("default", opts()).unwrap();
    // 24 bundles of about 256 KB each: more than the 4 MiB written at once.
    let model: Vec<Vec<u8>> = (0..24 * 256 + 10).map(noise).collect();
    for chunk in model.chunks(500) {
        log.append(chunk).unwrap();
    }
    let writes = storage.writes();
    let r = log.compact().unwrap();
    assert_eq!((r.from, r.to), (0, 24 * 256));
    assert!(r.packed_bytes > 5 << 20, "{r:?}");
    // As above, but the pack in two writes of frames and one of its
    // header and table.
    assert_eq!(storage.writes() - writes, 7);
    let pack = storage
        .file_bytes(&dir.log_dir("default").join("pack-0000000000000000"))
        .unwrap();
    assert_eq!(&pack[..12], b"STLPACKS\0\0\0\x03");
    assert_eq!(u32::from_be_bytes(pack[24..28].try_into().unwrap()), 24);
    check(&log, &model, 0);
    drop(log);
    let report = verify_log(&storage, &dir.log_dir("default"), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!(report.entries, model.len() as u64);
}

/// A machine of two CPUs, busy at normal priority or idle, whose
/// `/proc/stat` counters advance by two ticks at every look.
fn machine(busy: &Arc<AtomicBool>) -> CpuMeter {
    let busy = busy.clone();
    let (mut user, mut idle) = (0u64, 0u64);
    CpuMeter::from_source(move || {
        if busy.load(Ordering::Relaxed) {
            user += 2;
        } else {
            idle += 2;
        }
        Some(format!(
            "cpu  {user} 0 0 {idle} 0 0 0 0\ncpu0 0 0 0 0 0\ncpu1 0 0 0 0 0\n"
        ))
    })
}

/// The pace of these tests: files cut every 512 entries, one idle CPU
/// wanted, `max_deferred` entries waiting at most.
fn pace(max_deferred: u64) -> Pace {
    Pace {
        step: 512,
        idle_cpus: 1.0,
        max_deferred,
        look: Duration::from_millis(20),
    }
}

#[test]
fn paced_compaction_defers_while_the_machine_is_busy_up_to_its_bound() {
    let storage = SimStorage::new();
    let dir = sim_dir(&storage);
    dir.create_log("default", None).unwrap();
    let mut model = Vec::new();
    let log = dir.open_log("default", opts()).unwrap();
    let busy = Arc::new(AtomicBool::new(true));
    let mut meter = machine(&busy);
    let mut pace = pace(1 << 20);
    let entry_files = |storage: &SimStorage| -> Vec<String> {
        let mut n: Vec<String> = names(storage, &dir)
            .into_iter()
            .filter(|n| n.starts_with("entries"))
            .collect();
        n.sort();
        n
    };
    let never = || false;

    // Busy, far below the bound: nothing is packed, the run is deferred,
    // and the entry file appended to is cut once it holds 512 entries.
    for k in 1..=3 {
        append_n(&log, &mut model, 1000, 100);
        let r = log.compact_paced(&pace, &mut meter, &never).unwrap();
        assert_eq!((r.packed.to, r.steps, r.deferred), (0, 0, true), "{r:?}");
        assert_eq!(r.left, [768, 1792, 2816][k - 1], "{r:?}");
    }
    assert_eq!(meter.cpus(), 2.0);
    assert!(!names(&storage, &dir).iter().any(|n| n.starts_with("pack-")));
    assert_eq!(
        entry_files(&storage),
        [
            "entries",
            "entries-00000000000003e8",
            "entries-00000000000007d0",
            "entries-0000000000000bb8"
        ]
    );
    // Stopped before it looks: nothing done, nothing deferred.
    let r = log.compact_paced(&pace, &mut meter, &|| true).unwrap();
    assert_eq!((r.steps, r.deferred, r.left), (0, false, 2816), "{r:?}");

    // Busy, over the bound: the oldest files up to the first file start
    // (rounded down to a bundle) that leaves fewer than the bound
    // waiting, in one step, then deferred.
    pace.max_deferred = 2048;
    let r = log.compact_paced(&pace, &mut meter, &never).unwrap();
    assert_eq!(
        (r.packed.from, r.packed.to, r.steps, r.forced_steps),
        (0, 1792, 1, 1),
        "{r:?}"
    );
    assert_eq!((r.deferred, r.left, log.unpacked()), (true, 1024, 1024), "{r:?}");
    check(&log, &model, 0);
    // It copied only the entries of the file it packed into past the
    // bundle it packed up to: 2,000 - 1,792.
    assert_eq!(
        entry_files(&storage),
        [
            "entries-0000000000000700",
            "entries-00000000000007d0",
            "entries-0000000000000bb8"
        ]
    );

    // Idle: the rest, in one step.
    busy.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(10));
    let r = log.compact_paced(&pace, &mut meter, &never).unwrap();
    assert_eq!(
        (r.packed.from, r.packed.to, r.steps, r.forced_steps),
        (1792, 2816, 1, 0),
        "{r:?}"
    );
    assert_eq!((r.deferred, r.left, log.unpacked()), (false, 0, 0), "{r:?}");
    check(&log, &model, 0);

    // Told to want no idle CPU: packs on a busy machine.
    busy.store(true, Ordering::Relaxed);
    append_n(&log, &mut model, 600, 100);
    pace.idle_cpus = 0.0;
    let r = log.compact_paced(&pace, &mut meter, &never).unwrap();
    assert_eq!(
        (r.packed.from, r.packed.to, r.steps, r.deferred),
        (2816, 3584, 1, false),
        "{r:?}"
    );
    check(&log, &model, 0);
    drop(log);
    let log = dir.open_log("default", opts()).unwrap();
    check(&log, &model, 0);
}

#[test]
fn crash_at_every_sync_point_of_cutting_files_and_packing_past_the_bound() {
    // While deferred, the file appended to is cut (a crash at each of its
    // syncs is covered too: the setup's cuts run under no fault, the last
    // one inside the crashed operation); then, over the bound, the oldest
    // files are packed up to a file's start, then the rest.
    let busy = Arc::new(AtomicBool::new(true));
    let syncs = crash_everywhere(
        || {
            let storage = SimStorage::new();
            let dir = sim_dir(&storage);
            dir.create_log("default", None).unwrap();
            let mut model = Vec::new();
            let log = dir.open_log("default", opts()).unwrap();
            let mut meter = machine(&busy);
            for _ in 0..2 {
                append_n(&log, &mut model, 1000, 100);
                assert!(
                    log.compact_paced(&pace(1 << 20), &mut meter, &|| false)
                        .unwrap()
                        .deferred
                );
            }
            append_n(&log, &mut model, 1000, 100);
            (storage, dir, log, model)
        },
        |log| {
            let mut meter = machine(&busy);
            // Cut the last file, pack over a bound that leaves the last
            // file waiting, then pack with no bound.
            log.compact_paced(&pace(1 << 20), &mut meter, &|| false)?;
            log.compact_paced(&pace(1500), &mut meter, &|| false)?;
            let r = log.compact_paced(&pace(0), &mut meter, &|| false)?;
            assert!(!r.deferred && log.unpacked() == 0, "{r:?}");
            Ok(())
        },
        (0, 0),
        &opts(),
    );
    assert!(syncs >= 12, "{syncs}");
}
