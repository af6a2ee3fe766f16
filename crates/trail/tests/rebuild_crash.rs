//! Power cut at every sync point of a background rebuild of the query
//! index, on simulated storage: whatever the crash leaves (a rebuild half
//! built, cut between the swap's two renames, or renamed but its
//! directory not synced), the next open serves exactly what the ledger
//! holds, every idempotency key stored before the crash is found, and no
//! rebuild or replaced index is left beside the index.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_ledger::DataDir;
use sealtrail_storage::sim::{Fault, SimStorage};
use sealtrail_storage::Storage;
use sealtrail_trail::{Filter, IndexState, Item, Order, Page, Trail, TrailOptions, INDEX_DIR};

const LOG: &str = "audit";
const EVENTS: usize = 40;

fn root() -> PathBuf {
    PathBuf::from("/data")
}

fn open(storage: &SimStorage) -> Trail {
    let data = DataDir::with_storage(root(), Arc::new(storage.clone()));
    let opts = TrailOptions {
        visibility: Duration::from_millis(20),
        ..TrailOptions::default()
    };
    Trail::open(&data, LOG, opts).unwrap()
}

fn event(i: usize) -> Vec<u8> {
    format!(
        r#"{{"action":"doc.edit","actor":{{"id":"u{}"}},"idempotency_key":"k{i}"}}"#,
        i % 5
    )
    .into_bytes()
}

fn ingest(trail: &Trail, i: usize) -> Vec<Item> {
    trail.ingest(&[&event(i)], false).unwrap().items
}

fn beside(suffix: &str) -> PathBuf {
    root().join("logs").join(LOG).join(format!("{INDEX_DIR}.{suffix}"))
}

/// A data directory with `EVENTS` events, all indexed.
fn filled() -> SimStorage {
    let storage = SimStorage::new();
    DataDir::with_storage(root(), Arc::new(storage.clone()))
        .create_log(LOG, None)
        .unwrap();
    let trail = open(&storage);
    for i in 0..EVENTS {
        ingest(&trail, i);
    }
    trail.sync_index().unwrap();
    storage
}

fn wait_for(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// The trail answers exactly what its ledger holds, and every key.
fn check(trail: &Trail, storage: &dyn Storage, at: &str) {
    trail.sync_index().unwrap();
    let size = trail.log().size();
    assert_eq!(size, EVENTS as u64, "{at}");
    let page = Page {
        order: Order::OldestFirst,
        limit: 1000,
        after: None,
    };
    let found: Vec<u64> = trail
        .query(&Filter::default(), &page)
        .unwrap()
        .iter()
        .map(|f| f.index)
        .collect();
    assert_eq!(found, (0..size).collect::<Vec<_>>(), "{at}");
    let u3 = Filter {
        actor: Some("u3".into()),
        ..Filter::default()
    };
    assert_eq!(
        trail.count(&u3).unwrap(),
        (0..EVENTS).filter(|i| i % 5 == 3).count() as u64,
        "{at}"
    );
    for i in [0, EVENTS / 2, EVENTS - 1] {
        match ingest(trail, i)[..] {
            [Item::Stored {
                index, duplicate: true, ..
            }] => assert_eq!(index, i as u64, "{at}"),
            ref other => panic!("{at}: key k{i}: {other:?}"),
        }
    }
    assert!(!storage.exists(&beside("rebuild")), "{at}: a rebuild left behind");
    assert!(
        !storage.exists(&beside("retired")),
        "{at}: a replaced index left behind"
    );
}

/// How much of an unsynced write a crash image keeps, by name.
type Keep = (&'static str, fn(usize) -> usize);

/// Keep every unsynced write whole, half of it, or none.
fn keeps() -> [Keep; 3] {
    [("whole", |n| n), ("half", |n| n / 2), ("none", |_| 0)]
}

#[test]
fn a_power_cut_at_any_sync_point_of_a_rebuild_leaves_an_index_the_next_open_serves() {
    // Sync points of a whole rebuild, counted on an uncut run.
    let syncs = {
        let storage = filled();
        let trail = open(&storage);
        let before = storage.syncs();
        trail.rebuild_index("a test asked for it");
        // Queries resume on the rebuilt index before the replaced one is
        // deleted: the rebuild's last sync points come after it reports.
        assert!(wait_for(Duration::from_secs(20), || {
            trail.index_status().rebuilds == 1 && !storage.exists(&beside("retired"))
        }));
        assert_eq!(trail.index_status().state, IndexState::Ok);
        let syncs = storage.syncs() - before;
        check(&trail, &storage, "uncut");
        syncs
    };
    // At least: the rebuild's manifest, its segment, the swap's directory sync.
    assert!(syncs >= 3, "{syncs} sync points");

    for k in 1..=syncs {
        let storage = filled();
        let trail = open(&storage);
        storage.set_fault(Some(Fault::CrashAtSync(storage.syncs() + k)));
        trail.rebuild_index("a test asked for it");
        assert!(
            wait_for(Duration::from_secs(20), || storage.has_crashed()),
            "sync point {k} of {syncs} not reached"
        );
        drop(trail);
        for (how, keep) in keeps() {
            let image = storage.crash_image(keep);
            let at = format!("power cut at sync point {k} of {syncs}, unsynced writes kept {how}");
            let trail = open(&image);
            check(&trail, &image, &at);
            // And it keeps serving: what is appended now is found.
            ingest(&trail, EVENTS + 1);
            trail.sync_index().unwrap();
            assert_eq!(trail.indexed(), EVENTS as u64 + 1, "{at}");
        }
        // A file system that wrote every name change before the cut.
        let image = storage.crash_image_all_names(|n| n);
        let at = format!("power cut at sync point {k} of {syncs}, every name change written");
        check(&open(&image), &image, &at);
    }
}
