//! A query index that fails under ingest: ingest goes on acknowledging
//! with the queue to the indexer within its bound, queries are refused
//! while the index is rebuilt from the ledger by itself, and afterwards
//! they answer exactly what the ledger holds; a stop in the middle of a
//! rebuild leaves a directory the next open serves from. An index that
//! does not open at all is rebuilt the same way while the trail serves,
//! and idempotency keys held for a failed index stay within their bound.
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
        self.open_holding_keys(TrailOptions::default().max_unindexed_keys)
    }

    /// Open with at most `max_keys` idempotency keys held in memory.
    fn open_holding_keys(&self, max_keys: usize) -> Trail {
        let opts = TrailOptions {
            visibility: Duration::from_millis(20),
            max_index_backlog: BOUND,
            max_unindexed_keys: max_keys,
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

/// Events without an idempotency key.
fn unkeyed(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!(r#"{{"action":"doc.view","actor":{{"id":"u{}"}}}}"#, i % 7).into_bytes())
        .collect()
}

fn try_ingest(trail: &Trail, texts: &[Vec<u8>]) -> Result<Vec<Item>, TrailError> {
    let inputs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    trail.ingest(&inputs, false).map(|i| i.items)
}

/// The index's manifest cannot be read (here a directory stands in its
/// place: an I/O error, not damage the open recognises).
fn make_manifest_unreadable(env: &Env) {
    let manifest = env.index_dir().join("MANIFEST");
    std::fs::remove_file(&manifest).unwrap();
    std::fs::create_dir(&manifest).unwrap();
}

#[test]
fn an_index_that_does_not_open_is_rebuilt_while_the_trail_serves() {
    let env = Env::new();
    {
        let trail = env.open();
        ingest(&trail, &events(0, 30));
        trail.sync_index().unwrap();
    }
    make_manifest_unreadable(&env);
    // Rebuilds fail while a file sits where the replaced index goes.
    std::fs::write(env.beside("retired"), b"in the way").unwrap();

    let trail = env.open();
    let size = trail.log().size();
    assert_eq!(size, 30);
    wait_for("the first rebuild fails", Duration::from_secs(10), || {
        trail.index_status().state == IndexState::Failed
    });
    let status = trail.index_status();
    assert_eq!((status.failures, status.rebuilds), (1, 0), "{status:?}");
    assert_eq!(trail.indexed(), 0);
    // The cause of the open's failure is kept until the rebuild's own.
    assert!(status.last_error.unwrap().contains(INDEX_DIR));

    // Queries are refused, saying when to come back.
    for refused in [
        trail.count(&Filter::default()).err(),
        trail
            .query(
                &Filter::default(),
                &Page {
                    order: Order::OldestFirst,
                    limit: 10,
                    after: None,
                },
            )
            .err(),
        trail.sync_index().err(),
    ] {
        match refused {
            Some(TrailError::IndexUnavailable {
                log,
                state: IndexState::Failed,
                retry_after,
            }) => {
                assert_eq!(log, LOG);
                assert!((1..=2).contains(&retry_after.as_secs()), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    // No index holds the stored keys: keyed batches are refused whole,
    // new keys and resends alike, and nothing is appended.
    for batch in [events(1000, 1), events(5, 1), [unkeyed(2), events(1001, 1)].concat()] {
        match try_ingest(&trail, &batch) {
            Err(TrailError::KeysUnchecked { log, retry_after }) => {
                assert_eq!(log, LOG);
                assert!((1..=2).contains(&retry_after.as_secs()), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(trail.log().size(), size);
    }
    // Events without a key go on.
    let items = ingest(&trail, &unkeyed(5));
    assert!(items.iter().all(|i| matches!(i, Item::Stored { duplicate: false, .. })));
    assert_eq!(trail.log().size(), size + 5);

    // Out of the way: the next attempt rebuilds, without a reopen.
    std::fs::remove_file(env.beside("retired")).unwrap();
    wait_for("the index is rebuilt", Duration::from_secs(20), || {
        trail.index_status().state == IndexState::Ok
    });
    let status = trail.index_status();
    assert_eq!((status.failures, status.rebuilds), (1, 1));
    // The replaced index is deleted just after the swap.
    wait_for("the replaced index is deleted", Duration::from_secs(5), || {
        !env.beside("rebuild").exists() && !env.beside("retired").exists()
    });
    check_answers_equal_ledger(&trail);
    // Keys stored before the open are found again; new ones are taken.
    assert_eq!(duplicate_of(&ingest(&trail, &events(5, 1))), Some(5));
    let new = ingest(&trail, &events(1000, 1));
    assert!(matches!(new[..], [Item::Stored { duplicate: false, .. }]));
    check_answers_equal_ledger(&trail);

    drop(trail);
    let trail = env.open();
    assert_eq!(trail.index_status().failures, 0);
    check_answers_equal_ledger(&trail);
    assert_eq!(duplicate_of(&ingest(&trail, &events(29, 1))), Some(29));
}

#[test]
fn an_index_locked_by_another_writer_still_stops_the_open() {
    let env = Env::new();
    drop(env.open());
    let _other = sealtrail_index::EventIndex::open(&env.index_dir(), Default::default()).unwrap();
    match Trail::open(&env.data, LOG, TrailOptions::default()) {
        Err(TrailError::Index(sealtrail_index::IndexError::Locked(_))) => {}
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened beside another writer of its index"),
    }
}

#[test]
fn keys_held_for_a_failed_index_stop_at_their_bound() {
    const MAX_KEYS: usize = 50;
    let env = Env::new();
    let trail = env.open_holding_keys(MAX_KEYS);
    ingest(&trail, &events(0, 20));
    trail.sync_index().unwrap();
    // Committed: the keys left memory for the index.
    assert_eq!(trail.index_status().held_keys, 0);
    assert_eq!(trail.index_status().max_held_keys, MAX_KEYS);

    std::fs::write(env.beside("rebuild"), b"in the way").unwrap();
    std::fs::remove_dir_all(env.index_dir()).unwrap();
    ingest(&trail, &unkeyed(1));
    wait_for("the index fails", Duration::from_secs(10), || {
        trail.index_status().state == IndexState::Failed
    });

    // New keys one at a time: each is held until the bound.
    let mut accepted = Vec::new();
    let refusal = loop {
        let key = 10_000 + accepted.len();
        match try_ingest(&trail, &events(key, 1)) {
            Ok(items) => {
                let [Item::Stored {
                    index,
                    duplicate: false,
                    ..
                }] = items[..]
                else {
                    panic!("{items:?}")
                };
                accepted.push((key, index));
                assert_eq!(trail.index_status().held_keys, accepted.len());
            }
            Err(e) => break e,
        }
        assert!(accepted.len() <= MAX_KEYS, "held past the bound");
    };
    assert_eq!(accepted.len(), MAX_KEYS);
    match &refusal {
        TrailError::KeysFull {
            log,
            held,
            new,
            limit,
            retry_after,
        } => {
            assert_eq!((log.as_str(), *held, *new, *limit), (LOG, MAX_KEYS, 1, MAX_KEYS));
            assert!((1..=2).contains(&retry_after.as_secs()), "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
    let size = trail.log().size();
    // At the bound: a batch with a new key is refused whole, even beside
    // a held one; resends of held keys and of committed keys are answered,
    // and events without a key are stored.
    let (first_key, first_index) = accepted[0];
    assert!(matches!(
        try_ingest(&trail, &[events(first_key, 1), events(20_000, 1)].concat()),
        Err(TrailError::KeysFull { new: 1, .. })
    ));
    assert_eq!(trail.log().size(), size);
    assert_eq!(duplicate_of(&ingest(&trail, &events(first_key, 1))), Some(first_index));
    assert_eq!(duplicate_of(&ingest(&trail, &events(7, 1))), Some(7));
    ingest(&trail, &unkeyed(3));
    assert_eq!(trail.log().size(), size + 3);
    assert_eq!(trail.index_status().held_keys, MAX_KEYS);

    // Once the rebuilt index commits them, the keys leave memory and new
    // keys are taken again; every held key is still found.
    std::fs::remove_file(env.beside("rebuild")).unwrap();
    wait_for("the index is rebuilt", Duration::from_secs(20), || {
        trail.index_status().state == IndexState::Ok
    });
    trail.sync_index().unwrap();
    assert_eq!(trail.index_status().held_keys, 0);
    for (key, index) in &accepted {
        assert_eq!(duplicate_of(&ingest(&trail, &events(*key, 1))), Some(*index));
    }
    let items = ingest(&trail, &events(20_000, 1));
    assert!(matches!(items[..], [Item::Stored { duplicate: false, .. }]));
    check_answers_equal_ledger(&trail);
}
