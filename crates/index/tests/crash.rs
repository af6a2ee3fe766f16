//! The index on simulated storage: power cut at every sync point of its
//! commits and of a merge, and a failed write or sync at each one. After a
//! crash the index reopens at a watermark no older than the last commit
//! it acknowledged, its segments cover exactly the entries below it, and
//! it resumes from there; after a failure it refuses writes until it is
//! reopened, and the reopen recovers.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use sealtrail_event::{accept_json, event_id, Event, Timestamp};
use sealtrail_index::{EventIndex, Filter, IndexError, IndexOptions, Page};
use sealtrail_storage::sim::{Fault, SimStorage};
use sealtrail_storage::Storage;

const DIR: &str = "/trail/index";
/// Entries per commit, and commits: the 16th commit calls for a merge of
/// the 16 segments (`MERGE_FACTOR`), one more commit follows it.
const PER_COMMIT: usize = 5;
const COMMITS: usize = 17;

/// Ledger entries: events, with a non-event entry every 7th position.
fn entries() -> Vec<Option<Event>> {
    let start = "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap().as_millisecond();
    let mut events = sealtrail_testgen::events(3, PER_COMMIT * COMMITS);
    (0..PER_COMMIT * COMMITS)
        .map(|i| {
            let json = events.next().unwrap();
            (i % 7 != 6).then(|| {
                let received = Timestamp::from_millisecond(start + 1000 * i as i64).unwrap();
                let mut random = [0u8; 10];
                random[..8].copy_from_slice(&(i as u64).to_be_bytes());
                accept_json(&json, received, event_id(received, random).unwrap()).unwrap()
            })
        })
        .collect()
}

fn open(storage: &SimStorage) -> Result<EventIndex, IndexError> {
    EventIndex::open_with(Arc::new(storage.clone()), Path::new(DIR), IndexOptions::default(), None)
}

/// What a run of the workload got done before its first failure.
struct Run {
    /// The watermark of the last commit acknowledged.
    acked: u64,
    /// The error that stopped it, and the index it happened to.
    failed: Option<(IndexError, EventIndex)>,
}

/// Commit `PER_COMMIT` entries at a time, waiting for merges after each
/// commit so that every file operation happens in one order, run to run.
fn workload(storage: &SimStorage, entries: &[Option<Event>]) -> Run {
    let mut run = Run { acked: 0, failed: None };
    let index = match open(storage) {
        Ok(index) => index,
        Err(_) => return run,
    };
    for (c, chunk) in entries.chunks(PER_COMMIT).enumerate() {
        let first = (c * PER_COMMIT) as u64;
        let step = chunk
            .iter()
            .enumerate()
            .try_for_each(|(i, e)| index.add(first + i as u64, e.as_ref()))
            .and_then(|()| index.commit())
            .map(|watermark| run.acked = watermark)
            .and_then(|()| index.wait_for_merges());
        if let Err(e) = step {
            run.failed = Some((e, index));
            return run;
        }
    }
    run
}

/// The index answers exactly for entries `0..index.indexed()`: every
/// event, no other, and one actor's events, by search and by count.
fn check_exact(index: &EventIndex, entries: &[Option<Event>], context: &str) {
    let w = index.indexed() as usize;
    assert!(w <= entries.len(), "{context}: watermark {w} past the entries");
    assert_eq!(w % PER_COMMIT, 0, "{context}: watermark {w} is no commit's");
    let events = || {
        entries[..w]
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i as u64, e.as_ref()?)))
    };
    let all: Vec<u64> = events().map(|(i, _)| i).collect();
    let mut found = Vec::new();
    index
        .for_each(&Filter::default(), |i| {
            found.push(i);
            true
        })
        .unwrap();
    assert_eq!(found, all, "{context}: every event below the watermark, once");
    assert_eq!(index.count(&Filter::default()).unwrap(), all.len() as u64, "{context}");
    let mut newest = all.clone();
    newest.reverse();
    assert_eq!(
        index.search(&Filter::default(), &Page::newest(1000)).unwrap(),
        newest,
        "{context}"
    );
    let actor = entries
        .iter()
        .flatten()
        .filter_map(|e| e.actor.as_ref())
        .next()
        .unwrap()
        .id
        .clone();
    let by_actor = Filter {
        actor: Some(actor.clone()),
        ..Filter::default()
    };
    let expected: Vec<u64> = events()
        .filter(|(_, e)| e.actor.as_ref().is_some_and(|a| a.id == actor))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        index.search(&by_actor, &Page::oldest(1000)).unwrap(),
        expected,
        "{context}"
    );
}

/// Add what the index lacks, commit, and check it answers for everything;
/// no segment file is left that the index does not use.
fn resume_and_finish(storage: &SimStorage, index: EventIndex, entries: &[Option<Event>], context: &str) {
    for (i, e) in entries.iter().enumerate().skip(index.indexed() as usize) {
        index.add(i as u64, e.as_ref()).unwrap();
    }
    assert_eq!(index.commit().unwrap(), entries.len() as u64, "{context}");
    index.wait_for_merges().unwrap();
    check_exact(&index, entries, context);
    drop(index);
    let index = open(storage).unwrap();
    check_exact(&index, entries, context);
    let files: Vec<String> = storage
        .list_files(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|f| f.ends_with(".seg"))
        .collect();
    let manifest = String::from_utf8(storage.read(&Path::new(DIR).join("MANIFEST")).unwrap()).unwrap();
    let mut named: Vec<String> = manifest
        .lines()
        .filter_map(|l| Some(l.strip_prefix("segment ")?.split(' ').next()?.to_string()))
        .collect();
    named.sort();
    assert_eq!(files, named, "{context}: segment files beside the manifest's");
}

#[test]
fn crash_at_every_sync_point_of_commits_and_a_merge() {
    let entries = &entries();
    let clean = SimStorage::new();
    let run = workload(&clean, entries);
    assert!(run.failed.is_none());
    assert_eq!(run.acked, entries.len() as u64);
    let total = clean.syncs();
    // Open, 17 commits and one merge: 4 syncs each, and 2 at open.
    assert!(total >= 2 + 4 * (COMMITS as u64 + 1), "{total} syncs");
    resume_and_finish(&clean, open(&clean).unwrap(), entries, "without a crash");

    for k in 1..=total {
        let storage = SimStorage::new();
        storage.set_fault(Some(Fault::CrashAtSync(k)));
        let run = workload(&storage, entries);
        assert!(storage.has_crashed(), "sync {k}");
        drop(run.failed);
        let images = [
            ("names synced, no unsynced data", storage.crash_image(|_| 0)),
            ("names synced, unsynced data torn", storage.crash_image(|len| len / 2)),
            ("names synced, all data", storage.crash_image(|len| len)),
            (
                "every name change, no unsynced data",
                storage.crash_image_all_names(|_| 0),
            ),
            ("every name change, all data", storage.crash_image_all_names(|len| len)),
        ];
        for (name, image) in images {
            let context = format!("crash at sync {k}, {name}");
            let index = open(&image).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            assert!(
                index.indexed() >= run.acked,
                "{context}: watermark {} behind the acknowledged {}",
                index.indexed(),
                run.acked
            );
            check_exact(&index, entries, &context);
            resume_and_finish(&image, index, entries, &context);
        }
    }
}

#[test]
fn a_failed_write_or_sync_refuses_writes_until_reopened() {
    let entries = &entries();
    let clean = SimStorage::new();
    workload(&clean, entries);
    let (syncs, writes) = (clean.syncs(), clean.writes());
    let faults = (1..=syncs)
        .map(Fault::FailSync)
        .chain((1..=writes).map(Fault::FailWrite));
    for fault in faults {
        let context = format!("{fault:?}");
        let storage = SimStorage::new();
        storage.set_fault(Some(fault));
        let run = workload(&storage, entries);
        // The process keeps running: the same storage, not a crash image.
        if let Some((error, index)) = run.failed {
            let refused = index.add(index.indexed(), None).unwrap_err();
            assert!(matches!(refused, IndexError::Poisoned), "{context}: {refused}");
            assert!(refused.to_string().contains("reopen"), "{context}: {refused}");
            assert!(matches!(index.commit(), Err(IndexError::Poisoned)), "{context}");
            assert!(!matches!(error, IndexError::OutOfOrder { .. }), "{context}: {error}");
            drop(index);
        } else {
            // Only the first open's manifest can fail before a handle
            // exists; nothing else may fail silently.
            assert!(run.acked == 0, "{context}: a fault that nothing noticed");
        }
        let index = open(&storage).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
        assert!(index.indexed() >= run.acked, "{context}");
        check_exact(&index, entries, &context);
        resume_and_finish(&storage, index, entries, &context);
    }
}

/// A history whose root at size n is n's bytes repeated, that cannot
/// answer for sizes in `unreadable`.
struct Roots {
    unreadable: std::ops::Range<u64>,
}

fn root_at(size: u64) -> [u8; 32] {
    let mut root = [0u8; 32];
    for chunk in root.chunks_mut(8) {
        chunk.copy_from_slice(&size.to_le_bytes());
    }
    root
}

impl sealtrail_index::History for Roots {
    fn root(&self, size: u64) -> Result<[u8; 32], Box<dyn std::error::Error + Send + Sync>> {
        if self.unreadable.contains(&size) {
            return Err(format!("no root at {size}").into());
        }
        Ok(root_at(size))
    }
}

#[test]
fn the_manifest_records_the_root_at_the_watermark_through_merges_and_reopens() {
    let entries = &entries();
    let storage = SimStorage::new();
    let history = Arc::new(Roots { unreadable: 10..11 });
    let open_with_history = || {
        EventIndex::open_with(
            Arc::new(storage.clone()),
            Path::new(DIR),
            IndexOptions::default(),
            Some(history.clone()),
        )
        .unwrap()
    };
    let manifest = || String::from_utf8(storage.read(&Path::new(DIR).join("MANIFEST")).unwrap()).unwrap();
    let index = open_with_history();
    assert_eq!(index.root(), None, "nothing committed");
    for (c, chunk) in entries.chunks(PER_COMMIT).enumerate() {
        let first = c * PER_COMMIT;
        for (i, e) in chunk.iter().enumerate() {
            index.add((first + i) as u64, e.as_ref()).unwrap();
        }
        let n = (first + chunk.len()) as u64;
        if n == 10 {
            // The history cannot answer: nothing is written, and the
            // writer goes on once it can.
            let refused = index.commit().unwrap_err();
            assert!(matches!(refused, IndexError::History { size: 10, .. }), "{refused}");
            assert!(refused.to_string().contains("no root at 10"), "{refused}");
            assert_eq!(index.indexed(), 5);
            continue;
        }
        assert_eq!(index.commit().unwrap(), n);
        index.wait_for_merges().unwrap();
        assert_eq!(index.root(), Some(root_at(n)));
    }
    let text = manifest();
    let hex: String = root_at(85).iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        text.contains(&format!("\nwatermark 85\nroot {hex}\nsegment ")),
        "{text}"
    );
    // 16 commits, merged into one segment by the last merge, which
    // rewrote the manifest at the same watermark and root.
    assert_eq!(text.lines().filter(|l| l.starts_with("segment ")).count(), 1, "{text}");
    drop(index);
    let index = open_with_history();
    assert_eq!(index.root(), Some(root_at(85)));
    drop(index);
    let reader = EventIndex::open_read_only_with(Arc::new(storage.clone()), Path::new(DIR), IndexOptions::default());
    assert_eq!(reader.unwrap().root(), Some(root_at(85)));

    // Without the history the next commit claims no root.
    let index = open(&storage).unwrap();
    index.add(85, None).unwrap();
    index.commit().unwrap();
    assert_eq!(index.root(), None);
    assert!(!manifest().contains("root"), "{}", manifest());
    drop(index);

    // A root line that is not 64 lowercase hex digits is refused, naming
    // the line.
    let upper = format!("root {}", "AB".repeat(32));
    let long = format!("root {hex}0");
    let path = Path::new(DIR).join("MANIFEST");
    let written = String::from_utf8(storage.read(&path).unwrap()).unwrap();
    let version_line = written.lines().next().unwrap().to_string();
    for bad in ["root", "root 12", &upper, &long] {
        let text = format!("{version_line}\nwatermark 0\n{bad}\n");
        let f = storage.open(&path, false).unwrap();
        f.set_len(0).unwrap();
        f.write_all_at(text.as_bytes(), 0).unwrap();
        match open(&storage) {
            Err(e @ IndexError::BadManifest { line: 3, .. }) => {
                assert!(e.to_string().contains("root <64 lowercase hex digits>"), "{e}")
            }
            Err(e) => panic!("{bad}: {e}"),
            Ok(_) => panic!("{bad}: accepted"),
        }
    }
}
