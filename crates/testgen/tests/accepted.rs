//! The generated events against the real validator: every one accepted,
//! and the trail has the documented shape.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use sealtrail_event::{accept_json, canonical_entry, event_id, Event, Outcome, Severity, Timestamp};
use sealtrail_testgen::{events, events_with, Shape};

fn accept_all(seed: u64, count: usize, shape: &Shape) -> Vec<(Event, usize)> {
    let received_at: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    let id = event_id(received_at, [7; 10]).unwrap();
    events_with(seed, count, shape)
        .enumerate()
        .map(|(i, text)| match accept_json(&text, received_at, id) {
            Ok(event) => {
                let size = canonical_entry(&event).unwrap().len();
                (event, size)
            }
            Err(e) => panic!(
                "seed {seed}, event {i} refused: {e}\n{}",
                String::from_utf8_lossy(&text)
            ),
        })
        .collect()
}

#[test]
fn every_event_is_accepted_and_the_trail_has_the_documented_shape() {
    for seed in [0, 1, 42, 0xdead_beef] {
        let count = 4000;
        let accepted = accept_all(seed, count, &Shape::default());
        assert_eq!(accepted.len(), count);

        let mean_size = accepted.iter().map(|(_, s)| *s).sum::<usize>() as f64 / count as f64;
        assert!(
            (330.0..=400.0).contains(&mean_size),
            "seed {seed}: mean canonical size {mean_size}"
        );

        let share = |f: &dyn Fn(&Event) -> bool| accepted.iter().filter(|(e, _)| f(e)).count() as f64 / count as f64;
        let failures = share(&|e| e.outcome == Some(Outcome::Failure));
        let unknown = share(&|e| e.outcome == Some(Outcome::Unknown));
        assert!((0.06..=0.10).contains(&failures), "seed {seed}: failures {failures}");
        assert!((0.01..=0.035).contains(&unknown), "seed {seed}: unknown {unknown}");
        assert!(share(&|e| e.severity == Severity::Info) > 0.7);
        for severity in [Severity::Debug, Severity::Warning, Severity::Error, Severity::Critical] {
            assert!(share(&|e| e.severity == severity) > 0.0, "seed {seed}: no {severity:?}");
        }
        assert!(share(&|e| e.duration_ms.is_some()) > 0.45);
        assert!(share(&|e| e.details.is_some()) > 0.1);
        assert!(share(&|e| e.message.is_some()) > 0.3);
        assert!((0.07..=0.13).contains(&share(&|e| e.idempotency_key.is_some())));
        let with_ip = |v6: bool| {
            share(&|e| {
                e.context
                    .as_ref()
                    .and_then(|c| c.ip)
                    .is_some_and(|ip| ip.is_ipv6() == v6)
            })
        };
        assert!(
            with_ip(false) > 0.3 && with_ip(true) > 0.03,
            "seed {seed}: v4 {} v6 {}",
            with_ip(false),
            with_ip(true)
        );
        assert!(share(&|e| e.context.as_ref().is_some_and(|c| c.session_id.is_some())) > 0.2);
        assert!(share(&|e| e.occurred_at.subsec_nanosecond() != 0) > 0.3);
        // Failures say why; the rest do not.
        assert!(accepted
            .iter()
            .all(|(e, _)| e.error.is_some() == (e.outcome == Some(Outcome::Failure))));

        let actions: HashSet<&str> = accepted.iter().map(|(e, _)| e.action.as_str()).collect();
        let namespaces: HashSet<&str> = actions.iter().filter_map(|a| a.split('.').next()).collect();
        assert!(actions.len() >= 38, "seed {seed}: {} actions", actions.len());
        assert!(namespaces.len() >= 8, "{namespaces:?}");

        // Actors: 20 in the population for 4000 events, skewed.
        let mut per_actor: HashMap<&str, usize> = HashMap::new();
        for (e, _) in &accepted {
            *per_actor.entry(e.actor.as_ref().unwrap().id.as_str()).or_default() += 1;
        }
        assert!(per_actor.len() <= 20 && per_actor.len() >= 15, "{}", per_actor.len());
        let busiest = per_actor.values().max().unwrap();
        assert!(*busiest > count / 10, "busiest actor: {busiest}");

        let targets: Vec<_> = accepted.iter().flat_map(|(e, _)| e.targets.iter().flatten()).collect();
        let types: HashSet<&str> = targets.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(types.len(), 6, "{types:?}");
        assert!(targets
            .iter()
            .all(|t| t.id.starts_with(&t.id[..t.id.find('-').unwrap()]) && t.id.len() >= 8));
        let tenants: HashSet<&str> = accepted.iter().filter_map(|(e, _)| e.tenant.as_deref()).collect();
        assert!(tenants.len() >= 15, "{}", tenants.len());

        // Time: starts at 2026-01-01 and advances, a few late ones aside.
        let first: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(accepted.iter().all(|(e, _)| e.occurred_at >= first));
        // Whole-second times may print up to a second before a neighbour;
        // late events lag up to 3 s.
        let backwards = accepted
            .windows(2)
            .filter(|w| w[0].0.occurred_at.duration_until(w[1].0.occurred_at).as_secs_f64() <= -1.0)
            .count();
        assert!(backwards < count / 20, "{backwards} steps back");
        let span = accepted[count - 1].0.occurred_at.duration_since(first).as_secs_f64();
        assert!((150.0..=250.0).contains(&span), "span {span} s");

        // Idempotency keys are unique within a seed.
        let keys: Vec<_> = accepted
            .iter()
            .filter_map(|(e, _)| e.idempotency_key.as_deref())
            .collect();
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
    }
}

#[test]
fn deterministic_for_a_seed_and_different_across_seeds() {
    let a: Vec<_> = events(9, 500).collect();
    assert_eq!(a, events(9, 500).collect::<Vec<_>>());
    assert_ne!(a, events(10, 500).collect::<Vec<_>>());
    assert_eq!(events(9, 500).len(), 500);
    assert_eq!(events(9, 0).count(), 0);

    // write_next appends the same bytes the iterator yields.
    let mut generator = events(9, 500);
    let mut buf = Vec::new();
    for expected in &a {
        buf.clear();
        assert!(generator.write_next(&mut buf));
        assert_eq!(&buf, expected);
    }
    assert!(!generator.write_next(&mut buf));
}

#[test]
fn shape_knobs_are_honoured() {
    let shape = Shape {
        actors: Some(3),
        target_ids: Some(2),
        tenants: 1,
        start_unix_ms: 1_700_000_000_000,
        mean_gap_ms: 1000.0,
        late_share: 0.0,
        failure_share: 0.5,
        unknown_share: 0.0,
        ipv6_share: 1.0,
        idempotency_share: 0.0,
        ..Shape::default()
    };
    let accepted = accept_all(5, 3000, &shape);
    let actors: HashSet<_> = accepted
        .iter()
        .map(|(e, _)| e.actor.as_ref().unwrap().id.clone())
        .collect();
    assert!(actors.len() <= 3);
    let ids: HashSet<_> = accepted
        .iter()
        .flat_map(|(e, _)| e.targets.iter().flatten().map(|t| t.id.clone()))
        .collect();
    assert!(ids.len() <= 12, "{ids:?}");
    assert!(accepted.iter().all(|(e, _)| e.tenant.as_deref() == Some("acme")));
    // Whole-second times may print up to a second before a neighbour.
    assert!(accepted
        .windows(2)
        .all(|w| w[0].0.occurred_at.duration_until(w[1].0.occurred_at).as_secs_f64() > -1.0));
    let start: Timestamp = "2023-11-14T22:13:20Z".parse().unwrap();
    let span = accepted[2999].0.occurred_at.duration_since(start).as_secs_f64();
    assert!((2700.0..=3300.0).contains(&span), "span {span}");
    let failures = accepted
        .iter()
        .filter(|(e, _)| e.outcome == Some(Outcome::Failure))
        .count();
    assert!((1300..=1700).contains(&failures), "{failures}");
    assert!(accepted
        .iter()
        .all(|(e, _)| e.outcome != Some(Outcome::Unknown) && e.idempotency_key.is_none()));
    let ips: Vec<_> = accepted.iter().filter_map(|(e, _)| e.context.as_ref()?.ip).collect();
    // Users' addresses are all IPv6; services use internal IPv4.
    assert!(ips.iter().filter(|ip| ip.is_ipv6()).count() > ips.len() / 2);
}

#[test]
fn tenant_and_actor_names_match_the_generated_ones() {
    assert_eq!(Shape::tenant_name(0), "acme");
    assert_eq!(Shape::tenant_name(21), "globex-1");
    assert_eq!(Shape::actor_id(0), "user-00000");
    assert_eq!(Shape::actor_id(4), "svc-billing-worker-4");
    assert_eq!(Shape::actor_id(17), "sys-scheduler-17");
    let text = events(1, 200)
        .map(|e| String::from_utf8(e).unwrap())
        .collect::<String>();
    assert!(text.contains(&format!("\"{}\"", Shape::actor_id(0))));
}
