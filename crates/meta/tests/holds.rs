//! Legal holds in the metadata database: added and released with their
//! system-log events in the same transaction, listed by log, bad input
//! refused naming the field with nothing written.
#![allow(clippy::unwrap_used)]

use sealtrail_meta::{Meta, MetaError};
use sealtrail_trail::{Filter, TimeRange};
use serde_json::{json, Value};

fn outbox(meta: &Meta) -> Vec<Value> {
    meta.outbox(100)
        .unwrap()
        .into_iter()
        .map(|(_, t)| serde_json::from_str(&t).unwrap())
        .collect()
}

#[test]
fn holds_are_added_listed_and_released_with_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(dir.path()).unwrap();
    let actor = json!({"id": "cli", "type": "system"});
    let q1 = Filter {
        occurred: TimeRange {
            since: "2026-01-01T00:00:00Z".parse().ok(),
            until: "2026-04-01T00:00:00Z".parse().ok(),
        },
        ..Filter::default()
    };
    let a = meta
        .add_hold("default", &q1, "matter 2026-17", "alice", &actor)
        .unwrap();
    let lead = Filter {
        target_type: Some("lead".into()),
        target_id: Some("L-9".into()),
        ..Filter::default()
    };
    let b = meta.add_hold("crm", &lead, "subpoena", "bob", &actor).unwrap();
    assert_eq!(
        a.filter,
        json!({"occurred_since": "2026-01-01T00:00:00Z", "occurred_until": "2026-04-01T00:00:00Z"})
    );
    assert_eq!(meta.holds(None, false).unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(meta.holds(Some("crm"), false).unwrap(), vec![b.clone()]);
    let scopes = meta.hold_scopes("default").unwrap();
    assert_eq!((scopes.len(), scopes[0].id, &scopes[0].filter), (1, a.id, &q1));

    let released = meta.release_hold(a.id, "carol", &actor).unwrap();
    assert_eq!(released.released_by.as_deref(), Some("carol"));
    assert!(meta.holds(Some("default"), false).unwrap().is_empty());
    assert_eq!(meta.holds(Some("default"), true).unwrap(), vec![released]);

    let events = outbox(&meta);
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["legal_hold.added", "legal_hold.added", "legal_hold.released"]);
    assert_eq!(events[1]["details"]["log"], "crm");
    assert_eq!(events[1]["details"]["reason"], "subpoena");
    assert_eq!(events[1]["targets"][0]["id"], b.id.to_string());
    assert_eq!(events[2]["details"]["filter"], a.filter);
}

#[test]
fn bad_holds_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(dir.path()).unwrap();
    let actor = json!({"id": "cli", "type": "system"});
    let err = meta
        .add_hold("default", &Filter::default(), "  ", "a", &actor)
        .unwrap_err();
    assert!(err.to_string().contains("reason: empty"), "{err}");
    let backwards = Filter {
        received: TimeRange {
            since: "2026-02-01T00:00:00Z".parse().ok(),
            until: "2026-01-01T00:00:00Z".parse().ok(),
        },
        ..Filter::default()
    };
    let err = meta.add_hold("default", &backwards, "x", "a", &actor).unwrap_err();
    assert!(err.to_string().contains("received: since"), "{err}");
    assert!(matches!(
        meta.release_hold(42, "a", &actor),
        Err(MetaError::NoSuchHold(42))
    ));
    let h = meta
        .add_hold("default", &Filter::default(), "all", "a", &actor)
        .unwrap();
    meta.release_hold(h.id, "a", &actor).unwrap();
    let err = meta.release_hold(h.id, "a", &actor).unwrap_err();
    assert!(err.to_string().contains("already released"), "{err}");
    // Only the one good add and release were recorded.
    assert_eq!(outbox(&meta).len(), 2);
    assert_eq!(meta.holds(None, true).unwrap().len(), 1);
}
