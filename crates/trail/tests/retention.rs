//! Retention planning on a real data directory: by age of `received_at`,
//! by size, stopped by legal holds, in whole bundles. Expected boundaries
//! are computed here from the clock the events were received at and from
//! the entries' own lengths.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_trail::retention::{HoldScope, Policy, Stop, BUNDLE};
use sealtrail_trail::{Filter, Trail, TrailOptions};

const BATCHES: i64 = 40;
const PER_BATCH: i64 = 50;
const MINUTE: i64 = 60_000;

fn start() -> i64 {
    "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap().as_millisecond()
}

/// A trail whose batch `k` (entries `[50k, 50k+50)`, action `batch.k`) was
/// received at `start + k` minutes.
fn filled() -> (tempfile::TempDir, Trail) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    data.create_log("audit", None).unwrap();
    let now = Arc::new(AtomicI64::new(start()));
    let clock = Arc::clone(&now);
    let opts = TrailOptions {
        clock: Arc::new(move || Timestamp::from_millisecond(clock.load(Ordering::SeqCst)).unwrap()),
        ..TrailOptions::default()
    };
    let trail = Trail::open(&data, "audit", opts).unwrap();
    for k in 0..BATCHES {
        now.store(start() + k * MINUTE, Ordering::SeqCst);
        let texts: Vec<String> = (0..PER_BATCH)
            .map(|i| {
                format!(
                    r#"{{"action":"batch.{k}","message":"m{}"}}"#,
                    "x".repeat((i * 7 % 40) as usize)
                )
            })
            .collect();
        let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        assert_eq!(trail.ingest(&inputs, true).unwrap().appended(), PER_BATCH as usize);
    }
    (tmp, trail)
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap()
}

#[test]
fn age_prunes_whole_bundles_received_before_the_cutoff() {
    let (_tmp, trail) = filled();
    let policy = Policy {
        older_than: Some(Duration::from_secs(3600)),
        max_size: None,
    };
    // Cutoff at batch 20 (entry 1000): everything before is older.
    let plan = trail
        .plan_retention(&policy, &[], at(start() + 20 * MINUTE + 3_600_000))
        .unwrap();
    assert_eq!((plan.from, plan.wanted, plan.below, plan.stopped), (0, 768, 768, None));
    let bytes: u64 = (0..768).map(|i| 8 + trail.log().entry(i).unwrap().len() as u64).sum();
    assert_eq!(plan.bytes, bytes);
    // Nothing old enough: nothing to prune.
    let plan = trail.plan_retention(&policy, &[], at(start() + 3_500_000)).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    // Everything old: the last, partial bundle stays (2000 = 7·256 + 208).
    let plan = trail.plan_retention(&policy, &[], at(start() + 1000 * MINUTE)).unwrap();
    assert_eq!((plan.wanted, plan.below, plan.stopped), (1792, 1792, None));
}

#[test]
fn size_drops_the_fewest_oldest_bundles_that_fit() {
    let (_tmp, trail) = filled();
    let size = trail.log().size();
    let lens: Vec<u64> = (0..size)
        .map(|i| 8 + trail.log().entry(i).unwrap().len() as u64)
        .collect();
    let total: u64 = lens.iter().sum();
    for max in [total, total - 1, total / 2, total / 3, 1] {
        // Independently: the least boundary b (a multiple of 256, at most
        // 1792) with the bytes from b on at most max.
        let mut want = 0;
        while want < 1792 && lens[want as usize..].iter().sum::<u64>() > max {
            want += BUNDLE;
        }
        let policy = Policy {
            older_than: None,
            max_size: Some(max),
        };
        let plan = trail.plan_retention(&policy, &[], at(start())).unwrap();
        assert_eq!(plan.below, want, "max {max}");
        assert_eq!(plan.bytes, lens[..want as usize].iter().sum::<u64>());
    }
}

#[test]
fn a_hold_stops_pruning_at_the_bundle_of_its_first_entry() {
    let (_tmp, trail) = filled();
    let policy = Policy {
        older_than: Some(Duration::from_secs(60)),
        max_size: None,
    };
    let now = at(start() + 1000 * MINUTE);
    // Batch 6 starts at entry 300, in the bundle [256, 512).
    let held = |action: &str, id| HoldScope {
        id,
        filter: Filter {
            action: Some(action.into()),
            ..Filter::default()
        },
    };
    let plan = trail
        .plan_retention(&policy, &[held("batch.9", 4), held("batch.6", 3)], now)
        .unwrap();
    assert_eq!((plan.wanted, plan.below), (1792, 256));
    assert_eq!(plan.stopped, Some(Stop::Hold { hold: 3, index: 300 }));
    // A hold on the first bundle stops everything; one on nothing stops nothing.
    let plan = trail.plan_retention(&policy, &[held("batch.0", 1)], now).unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.stopped, Some(Stop::Hold { hold: 1, index: 0 }));
    let plan = trail.plan_retention(&policy, &[held("nothing.here", 2)], now).unwrap();
    assert_eq!(plan.below, 1792);
    // A hold by received time: batches 30 and later.
    let by_time = HoldScope {
        id: 7,
        filter: Filter {
            received: sealtrail_trail::TimeRange {
                since: Some(at(start() + 30 * MINUTE)),
                until: None,
            },
            ..Filter::default()
        },
    };
    let plan = trail.plan_retention(&policy, &[by_time], now).unwrap();
    assert_eq!(plan.below, 1280);
    assert_eq!(plan.stopped, Some(Stop::Hold { hold: 7, index: 1500 }));
}

#[test]
fn forgotten_entries_leave_queries_and_stats() {
    let (_tmp, trail) = filled();
    trail.forget_below(512).unwrap();
    let all = Filter::default();
    assert_eq!(trail.count(&all).unwrap(), 2000 - 512);
    let stats = trail.stats(&all, sealtrail_trail::Bucket::Hour).unwrap();
    assert_eq!(stats.total, 1488);
    assert!(
        stats.by_action.iter().all(|(a, _)| a != "batch.0"),
        "{:?}",
        stats.by_action
    );
    // Batch 10 is [500, 550): 38 of it remain.
    let batch10 = Filter {
        action: Some("batch.10".into()),
        ..Filter::default()
    };
    assert_eq!(trail.count(&batch10).unwrap(), 38);
    let first = trail
        .query(&all, &sealtrail_trail::Page::oldest(1))
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(first.index, 512);
}

#[test]
fn pruning_drops_entries_the_index_forgets_across_reopen_and_reindex() {
    let (tmp, trail) = filled();
    let data = DataDir::new(tmp.path().join("data"));
    let root_512 = trail.log().root_at(512).unwrap();
    let report = trail.prune(512).unwrap();
    assert_eq!((report.from, report.to, report.root_at_to), (0, 512, root_512));
    assert!(report.bytes_freed > 0);
    assert_eq!(trail.pruned_below(), 512);
    let all = Filter::default();
    assert_eq!(trail.count(&all).unwrap(), 1488);
    // A pruned event reads as pruned, a kept one as before.
    let err = trail.read(511).unwrap_err();
    assert!(
        matches!(
            err,
            sealtrail_trail::TrailError::Ledger(sealtrail_ledger::LedgerError::Pruned {
                index: 511,
                pruned_below: 512
            })
        ),
        "{err}"
    );
    assert_eq!(trail.read(512).unwrap().event.action, "batch.10");
    // Pruning again below the boundary changes nothing.
    assert_eq!(trail.prune(256).unwrap().to, 512);
    // The plan starts at the boundary and counts only kept bytes.
    let policy = Policy {
        older_than: Some(Duration::from_secs(60)),
        max_size: None,
    };
    let plan = trail.plan_retention(&policy, &[], at(start() + 1000 * MINUTE)).unwrap();
    assert_eq!((plan.from, plan.below), (512, 1792));
    let bytes: u64 = (512..1792)
        .map(|i| 8 + trail.log().entry(i).unwrap().len() as u64)
        .sum();
    assert_eq!(plan.bytes, bytes);
    drop(trail);

    // Reopened, and rebuilt from the ledger: still forgotten.
    let trail = Trail::open(&data, "audit", TrailOptions::default()).unwrap();
    assert_eq!(trail.count(&all).unwrap(), 1488);
    drop(trail);
    assert_eq!(
        Trail::reindex(&data, "audit", &sealtrail_trail::IndexOptions::default()).unwrap(),
        2000
    );
    let trail = Trail::open(&data, "audit", TrailOptions::default()).unwrap();
    assert_eq!(trail.count(&all).unwrap(), 1488);
    let stats = trail.stats(&all, sealtrail_trail::Bucket::Day).unwrap();
    assert_eq!(stats.total, 1488);
    let reader = sealtrail_trail::TrailReader::open(&data, "audit").unwrap();
    assert_eq!(reader.count(&all).unwrap(), 1488);
}
