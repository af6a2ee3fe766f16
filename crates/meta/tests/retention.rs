//! `retention::apply` on a real log with legal holds: a hold that keeps
//! blocking a periodic policy is recorded (`retention.stopped`) when it
//! starts to block and when what blocks changes, not at every run.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_meta::retention::{apply, Target};
use sealtrail_meta::Meta;
use sealtrail_trail::retention::{Policy, Stop};
use sealtrail_trail::{Filter, Trail, TrailOptions};
use serde_json::{json, Value};

/// Entries 0..1000; entry 300 is `doc.a`, entry 290 `doc.b`, the rest `doc.viewed`.
fn filled(data: &DataDir) -> Trail {
    data.create_log("audit", None).unwrap();
    let trail = Trail::open(data, "audit", TrailOptions::default()).unwrap();
    let texts: Vec<String> = (0..1000)
        .map(|i| {
            let action = match i {
                300 => "doc.a",
                290 => "doc.b",
                _ => "doc.viewed",
            };
            format!(r#"{{"action":"{action}","message":"m{i}"}}"#)
        })
        .collect();
    let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
    assert_eq!(trail.ingest(&inputs, true).unwrap().appended(), 1000);
    trail.sync_index().unwrap();
    trail
}

fn stopped_events(meta: &Meta) -> Vec<Value> {
    meta.outbox(1000)
        .unwrap()
        .into_iter()
        .map(|(_, t)| serde_json::from_str::<Value>(&t).unwrap())
        .filter(|e| e["action"] == "retention.stopped")
        .collect()
}

fn action(a: &str) -> Filter {
    Filter {
        action: Some(a.into()),
        ..Filter::default()
    }
}

#[test]
fn a_hold_that_keeps_blocking_is_recorded_once_until_what_blocks_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let trail = filled(&data);
    let meta = Meta::open(tmp.path()).unwrap();
    let actor = json!({"id": "sealtrail", "type": "system"});
    let all = Target::Policy(Policy {
        older_than: None,
        max_size: Some(1),
    });
    let run = |target: Target| apply(&meta, &trail, "audit", target, Timestamp::now(), &actor, false).unwrap();

    let a = meta
        .add_hold("audit", &action("doc.a"), "matter 1", "t", &actor)
        .unwrap();
    let first = run(all);
    assert_eq!(first.plan.stopped, Some(Stop::Hold { hold: a.id, index: 300 }));
    assert_eq!(first.plan.below, 256);
    for _ in 0..3 {
        let again = run(all);
        assert_eq!(again.plan.stopped, Some(Stop::Hold { hold: a.id, index: 300 }));
    }
    let events = stopped_events(&meta);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (&events[0]["details"]["hold"], &events[0]["details"]["below"]),
        (&json!(a.id), &json!(256))
    );

    // Another hold now blocks first: recorded, once.
    let b = meta
        .add_hold("audit", &action("doc.b"), "matter 2", "t", &actor)
        .unwrap();
    run(all);
    run(all);
    let events = stopped_events(&meta);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["details"]["hold"], json!(b.id));

    // Back to the first hold: what blocks changed again.
    meta.release_hold(b.id, "t", &actor).unwrap();
    run(all);
    assert_eq!(stopped_events(&meta).len(), 3);

    // A run that no hold stops lifts the block; the next one blocked is
    // recorded again.
    let nothing_old = Target::Policy(Policy {
        older_than: Some(Duration::from_secs(3600)),
        max_size: None,
    });
    assert_eq!(run(nothing_old).plan.stopped, None);
    run(all);
    run(all);
    let events = stopped_events(&meta);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[3]["details"]["hold"], json!(a.id));

    // Released: pruning goes on, nothing more is recorded as stopped.
    meta.release_hold(a.id, "t", &actor).unwrap();
    assert_eq!(run(all).plan.below, 768);
    assert_eq!(stopped_events(&meta).len(), 4);
}
