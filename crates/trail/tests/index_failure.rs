//! A query index that fails under ingest: ingest goes on acknowledging
//! with the queue to the indexer within its bound, queries are refused
//! while the index is rebuilt from the ledger by itself, and afterwards
//! they answer exactly what the ledger holds; a stop in the middle of a
//! rebuild leaves a directory the next open serves from.
//!
//! The fault is real: the index directory is deleted under the running
//! index, so its next segment write fails. A regular file where the
//! rebuild directory goes makes the rebuilds fail too, until it is taken
//! away.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_ledger::DataDir;
use sealtrail_trail::{Filter, IndexState, Item, Order, Page, Trail, TrailError, TrailOptions, INDEX_DIR};

const LOG: &str = "audit";
const BOUND: usize = 64;
/// The most that may queue: a batch that finds the queue below the bound
/// is queued whole, so the bound plus the largest batch these tests send.
const MOST_QUEUED: usize = BOUND + 20;

struct Env {
    _tmp: tempfile::TempDir,
    data: DataDir,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        data.create_log(LOG, None).unwrap();
        Env { _tmp: tmp, data }
    }

    fn open(&self) -> Trail {
        let opts = TrailOptions {
            visibility: Duration::from_millis(20),
            max_index_backlog: BOUND,
            ..TrailOptions::default()
        };
        Trail::open(&self.data, LOG, opts).unwrap()
    }

    fn index_dir(&self) -> PathBuf {
        self.data.log_dir(LOG).join(INDEX_DIR)
    }

    fn beside(&self, suffix: &str) -> PathBuf {
        self.data.log_dir(LOG).join(format!("{INDEX_DIR}.{suffix}"))
    }
}

fn events(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"action":"doc.edit","actor":{{"id":"u{}"}},"idempotency_key":"k{i}"}}"#,
                i % 7
            )
            .into_bytes()
        })
        .collect()
}

fn ingest(trail: &Trail, texts: &[Vec<u8>]) -> Vec<Item> {
    let inputs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    trail.ingest(&inputs, false).unwrap().items
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "not within {deadline:?}: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every query answers exactly what the ledger holds: each entry once, in
/// order, as stored.
fn check_answers_equal_ledger(trail: &Trail) {
    trail.sync_index().unwrap();
    let size = trail.log().size();
    assert_eq!(trail.indexed(), size);
    let page = Page {
        order: Order::OldestFirst,
        limit: 1_000_000,
        after: None,
    };
    let found = trail.query(&Filter::default(), &page).unwrap();
    assert_eq!(
        found.iter().map(|f| f.index).collect::<Vec<_>>(),
        (0..size).collect::<Vec<_>>()
    );
    for f in &found {
        assert_eq!(f.entry, trail.log().entry(f.index).unwrap());
    }
    assert_eq!(trail.count(&Filter::default()).unwrap(), size);
    let by_actor = Filter {
        actor: Some("u3".into()),
        ..Filter::default()
    };
    let expected = found
        .iter()
        .filter(|f| f.event.actor.as_ref().is_some_and(|a| a.id == "u3"))
        .count() as u64;
    assert_eq!(trail.count(&by_actor).unwrap(), expected);
    assert_eq!(
        trail
            .stats(&Filter::default(), sealtrail_trail::Bucket::Hour)
            .unwrap()
            .total,
        size
    );
}

fn duplicate_of(items: &[Item]) -> Option<u64> {
    match items {
        [Item::Stored {
            index, duplicate: true, ..
        }] => Some(*index),
        _ => None,
    }
}

/// Samples the indexer's queue every millisecond and keeps the longest.
struct QueueWatch {
    longest: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl QueueWatch {
    fn start(trail: &Arc<Trail>) -> QueueWatch {
        let longest = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (trail, longest, stop) = (trail.clone(), longest.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    longest.fetch_max(trail.index_status().queued, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        QueueWatch {
            longest,
            stop,
            thread: Some(thread),
        }
    }

    fn longest(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.longest.load(Ordering::Relaxed)
    }
}

#[test]
fn a_failed_index_is_rebuilt_by_itself_while_ingest_goes_on() {
    let env = Env::new();
    let trail = Arc::new(env.open());
    let watch = QueueWatch::start(&trail);
    for i in 0..10 {
        ingest(&trail, &events(i * 10, 10));
    }
    trail.sync_index().unwrap();
    assert_eq!(trail.index_status().state, IndexState::Ok);

    // Rebuilds fail while a file sits where they build; then the index
    // loses its directory.
    std::fs::write(env.beside("rebuild"), b"in the way").unwrap();
    std::fs::remove_dir_all(env.index_dir()).unwrap();
    let mut next = 100;
    wait_for("the index fails", Duration::from_secs(10), || {
        ingest(&trail, &events(next, 10));
        next += 10;
        trail.index_status().state == IndexState::Failed
    });

    // Ingest acknowledges from several threads at once, and nothing
    // queues for the failed index.
    std::thread::scope(|s| {
        for t in 0..4 {
            let trail = &trail;
            s.spawn(move || {
                for b in 0..50 {
                    let items = ingest(trail, &events(100_000 * (t + 1) + b * 20, 20));
                    assert!(items.iter().all(|i| matches!(i, Item::Stored { duplicate: false, .. })));
                    assert!(trail.index_status().queued <= MOST_QUEUED);
                }
            });
        }
    });
    let status = trail.index_status();
    assert_eq!(status.state, IndexState::Failed, "{status:?}");
    assert_eq!(status.failures, 1);
    assert_eq!(status.queued, 0);
    assert!(status.dropped >= 4 * 50 * 20, "{status:?}");
    let cause = status.last_error.unwrap();
    assert!(cause.contains(INDEX_DIR), "{cause}");

    // Queries are refused, saying when to come back; keys still hold,
    // from before the failure and from during it.
    match trail.count(&Filter::default()) {
        Err(TrailError::IndexUnavailable {
            log,
            state: IndexState::Failed,
            retry_after,
        }) => {
            assert_eq!(log, LOG);
            assert!((1..=2).contains(&retry_after.as_secs()), "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(trail.sync_index(), Err(TrailError::IndexUnavailable { .. })));
    assert_eq!(duplicate_of(&ingest(&trail, &events(5, 1))), Some(5));
    let during = ingest(&trail, &events(900_000, 1));
    assert!(matches!(during[..], [Item::Stored { duplicate: false, .. }]));

    // Out of the way: the next attempt (1 s after the first failed) rebuilds.
    std::fs::remove_file(env.beside("rebuild")).unwrap();
    wait_for("the index is rebuilt", Duration::from_secs(20), || {
        trail.index_status().state == IndexState::Ok
    });
    let status = trail.index_status();
    assert_eq!((status.failures, status.rebuilds), (1, 1));
    assert!(!env.beside("rebuild").exists() && !env.beside("retired").exists());

    ingest(&trail, &events(200, 10));
    check_answers_equal_ledger(&trail);
    let Item::Stored {
        index: first_during, ..
    } = during[0]
    else {
        unreachable!()
    };
    assert_eq!(duplicate_of(&ingest(&trail, &events(900_000, 1))), Some(first_during));
    assert_eq!(duplicate_of(&ingest(&trail, &events(5, 1))), Some(5));
    assert!(watch.longest() <= MOST_QUEUED);

    // And the rebuilt index is the one a restart opens.
    let size = trail.log().size();
    drop(Arc::into_inner(trail).unwrap());
    let trail = env.open();
    assert_eq!(trail.log().size(), size);
    check_answers_equal_ledger(&trail);
}

#[test]
fn ingest_waits_for_a_slow_index_only_up_to_the_bound_and_never_for_a_failed_one() {
    let env = Env::new();
    let trail = env.open();
    std::fs::write(env.beside("rebuild"), b"in the way").unwrap();
    std::fs::remove_dir_all(env.index_dir()).unwrap();
    ingest(&trail, &events(0, 10));
    wait_for("the index fails", Duration::from_secs(10), || {
        trail.index_status().state == IndexState::Failed
    });
    // Far more than the bound: nothing queues for an indexer that is not
    // indexing, and nothing waits for it.
    let start = Instant::now();
    for i in 0..20 {
        ingest(&trail, &events(1000 + i * 500, 500));
        assert_eq!(trail.index_status().queued, 0);
    }
    assert!(start.elapsed() < Duration::from_secs(30));
    // Dropping the trail ends the wait between attempts at once.
    let start = Instant::now();
    drop(trail);
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());

    // The failed index was never replaced: the next open builds it afresh
    // from the ledger.
    std::fs::remove_file(env.beside("rebuild")).unwrap();
    let trail = env.open();
    check_answers_equal_ledger(&trail);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_stop_in_the_middle_of_a_rebuild_leaves_a_state_the_next_open_serves() {
    let env = Env::new();
    {
        let trail = env.open();
        ingest(&trail, &events(0, 30));
        trail.sync_index().unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let snapshot = elsewhere.path().join("snapshot");
    copy_dir(&env.index_dir(), &snapshot);

    // Cut before the swap: a rebuild in progress beside the index in use.
    copy_dir(&snapshot, &env.beside("rebuild"));
    {
        let trail = env.open();
        assert!(!env.beside("rebuild").exists());
        ingest(&trail, &events(30, 30));
        check_answers_equal_ledger(&trail);
    }

    // Cut between the swap's renames: the failed index moved aside, the
    // rebuilt one (here 30 entries behind) not yet in place.
    std::fs::rename(env.index_dir(), env.beside("retired")).unwrap();
    copy_dir(&snapshot, &env.beside("rebuild"));
    {
        let trail = env.open();
        assert!(!env.beside("rebuild").exists() && !env.beside("retired").exists());
        assert!(env.index_dir().join("MANIFEST").exists());
        check_answers_equal_ledger(&trail);
    }
}
