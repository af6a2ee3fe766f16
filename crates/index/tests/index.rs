//! The index against an answer computed independently: every filter is
//! run through `search` (both orders, paged by cursor), `count` and
//! `for_each`, and compared with a scan of the events in memory.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::OnceLock;

use sealtrail_event::{accept_json, event_id, Event, Outcome, Severity, Timestamp};
use sealtrail_index::{Bucket, EventIndex, Facet, Filter, IndexError, IndexOptions, Order, Page, TimeRange};
use serde_json::Value;

/// Ledger entries: events, with a non-event entry every 61st position.
fn entries(seed: u64, count: usize) -> Vec<Option<Event>> {
    let start = "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap().as_millisecond();
    let mut out = Vec::new();
    let handmade = HANDMADE.iter().map(|s| s.as_bytes().to_vec());
    for (i, json) in handmade.chain(sealtrail_testgen::events(seed, count)).enumerate() {
        if out.len() % 61 == 60 {
            out.push(None);
        }
        let received = Timestamp::from_millisecond(start + 40 * i as i64).unwrap();
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let id = event_id(received, random).unwrap();
        out.push(Some(accept_json(&json, received, id).unwrap()));
    }
    out
}

/// Cases the generator may not produce: nested details, a target type and
/// id that belong to different targets, non-ASCII words, long IPv6.
const HANDMADE: &[&str] = &[
    r#"{"action":"lead.created","actor":{"id":"alice"},"targets":[{"type":"lead","id":"X-1"},{"type":"user","id":"X-2"}],
        "message":"Größe ÜBER alles","details":{"Outer":{"inner_key":["deep Value", 3, {"k2":"zeta"}]}},"duration_ms":5}"#,
    r#"{"action":"lead.created.again","actor":{"id":"bob"},"targets":[{"type":"user","id":"X-1"}],"outcome":"success",
        "context":{"ip":"2001:0db8:0000:0000:0000:0000:0000:0001","session_id":"s-1"},"error":{"type":"Timeout","message":"upstream slow"}}"#,
    r#"{"action":"leadXcreated","occurred_at":"2025-12-31T23:59:59.999999999Z","severity":"emergency","duration_ms":0.25}"#,
    r#"{"action":"a-b.c","tenant":"t-odd","source":{"service":"svc","workflow":"wf"},"idempotency_key":"key-handmade"}"#,
];

struct Fixture {
    _dir: tempfile::TempDir,
    index: EventIndex,
    entries: Vec<Option<Event>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let entries = entries(7, 3000);
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
        // Several commits, so that there are several segments.
        for (i, e) in entries.iter().enumerate() {
            index.add(i as u64, e.as_ref()).unwrap();
            if i % 700 == 699 {
                index.commit().unwrap();
            }
        }
        assert_eq!(index.commit().unwrap(), entries.len() as u64);
        Fixture {
            _dir: dir,
            index,
            entries,
        }
    })
}

// ---- the independent model -------------------------------------------------

/// Glob by recursion over chars (the index uses another algorithm).
fn glob(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|k| glob(rest, &t[k..])),
        Some(('?', rest)) => !t.is_empty() && glob(rest, &t[1..]),
        Some((c, rest)) => t.first() == Some(c) && glob(rest, &t[1..]),
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().flat_map(char::to_lowercase).collect())
        .collect()
}

fn event_words(e: &Event) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.extend(words(s)),
            Value::Number(n) => out.extend(words(&n.to_string())),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.extend(words(k));
                walk(v, out);
            }),
            _ => {}
        }
    }
    let mut out: Vec<String> = e.message.iter().flat_map(|m| words(m)).collect();
    if let Some(err) = &e.error {
        for s in err.kind.iter().chain(&err.message) {
            out.extend(words(s));
        }
    }
    if let Some(d) = &e.details {
        walk(&Value::Object(d.clone()), &mut out);
    }
    out
}

fn in_range(t: Timestamp, r: &TimeRange) -> bool {
    r.since.is_none_or(|s| t >= s) && r.until.is_none_or(|u| t < u)
}

fn matches(f: &Filter, e: &Event) -> bool {
    let targets = e.targets.as_deref().unwrap_or_default();
    let source = e.source.clone().unwrap_or_default();
    let context = e.context.clone().unwrap_or_default();
    let eq = |want: &Option<String>, have: Option<&String>| want.as_ref().is_none_or(|w| have == Some(w));
    f.action.as_ref().is_none_or(|a| {
        if a.contains(['*', '?']) {
            glob(&a.chars().collect::<Vec<_>>(), &e.action.chars().collect::<Vec<_>>())
        } else {
            *a == e.action
        }
    }) && eq(&f.actor, e.actor.as_ref().map(|a| &a.id))
        && match (&f.target_type, &f.target_id) {
            (None, None) => true,
            (t, i) => targets.iter().any(|x| eq(t, Some(&x.kind)) && eq(i, Some(&x.id))),
        }
        && eq(&f.tenant, e.tenant.as_ref())
        && eq(&f.workflow, source.workflow.as_ref())
        && eq(&f.service, source.service.as_ref())
        && f.outcome.is_none_or(|o| e.outcome == Some(o))
        && f.min_severity.is_none_or(|s| e.severity >= s)
        && f.ip.is_none_or(|ip| context.ip == Some(ip))
        && eq(&f.session, context.session_id.as_ref())
        && in_range(e.occurred_at, &f.occurred)
        && in_range(e.received_at, &f.received)
        && f.text.as_ref().is_none_or(|t| {
            let have = event_words(e);
            words(t).iter().all(|w| have.contains(w))
        })
        && (!f.failures || e.outcome == Some(Outcome::Failure) || e.severity >= Severity::Error || e.error.is_some())
}

fn expected(entries: &[Option<Event>], f: &Filter) -> Vec<u64> {
    let hits = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.as_ref().is_some_and(|e| matches(f, e)));
    hits.map(|(i, _)| i as u64).collect()
}

// ---- the one check ---------------------------------------------------------

/// Compare every way of reading `filter` with the model; `min` guards
/// against a filter that silently matches (almost) nothing.
fn check(filter: Filter, min: usize) {
    let Fixture { index, entries, .. } = fixture();
    check_on(index, entries, filter, min);
}

fn check_on(index: &EventIndex, entries: &[Option<Event>], filter: Filter, min: usize) {
    let want = expected(entries, &filter);
    assert!(
        want.len() >= min,
        "{filter:?} matches only {} events; pick a better case",
        want.len()
    );
    assert_eq!(index.count(&filter).unwrap(), want.len() as u64, "count {filter:?}");

    let mut all = Vec::new();
    index
        .for_each(&filter, |i| {
            all.push(i);
            true
        })
        .unwrap();
    assert_eq!(all, want, "for_each {filter:?}");
    let mut first = Vec::new();
    index
        .for_each(&filter, |i| {
            first.push(i);
            first.len() < 3
        })
        .unwrap();
    assert_eq!(first, want[..want.len().min(3)], "for_each stopped {filter:?}");

    let limit = (want.len() / 4).max(3);
    for order in [Order::NewestFirst, Order::OldestFirst] {
        let mut want = want.clone();
        if order == Order::NewestFirst {
            want.reverse();
        }
        let mut got: Vec<u64> = Vec::new();
        let mut after = None;
        loop {
            let page = index.search(&filter, &Page { order, limit, after }).unwrap();
            assert!(page.len() <= limit);
            got.extend(&page);
            if page.len() < limit {
                break;
            }
            after = page.last().copied();
        }
        assert_eq!(got, want, "search {order:?} {filter:?}");
        let top = index
            .search(
                &filter,
                &Page {
                    order,
                    limit: 100,
                    after: None,
                },
            )
            .unwrap();
        assert_eq!(top, want[..want.len().min(100)], "first 100 {order:?} {filter:?}");
    }
}

/// A few distinct values of a field, by how often they occur (most first).
fn common<T: Ord + Clone>(entries: &[Option<Event>], f: impl Fn(&Event) -> Option<T>) -> Vec<T> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    for e in entries.iter().flatten() {
        if let Some(v) = f(e) {
            *counts.entry(v).or_default() += 1;
        }
    }
    let mut v: Vec<(T, usize)> = counts.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v.into_iter().map(|(t, _)| t).collect()
}

fn f() -> Filter {
    Filter::default()
}

#[test]
fn every_field_alone() {
    let entries = &fixture().entries;
    check(f(), 3000);
    let actions = common(entries, |e| Some(e.action.clone()));
    check(
        Filter {
            action: Some(actions[0].clone()),
            ..f()
        },
        50,
    );
    check(
        Filter {
            action: Some(actions[actions.len() - 1].clone()),
            ..f()
        },
        1,
    );
    check(
        Filter {
            action: Some("no.such.action".into()),
            ..f()
        },
        0,
    );
    let actors = common(entries, |e| e.actor.as_ref().map(|a| a.id.clone()));
    check(
        Filter {
            actor: Some(actors[0].clone()),
            ..f()
        },
        20,
    );
    check(
        Filter {
            actor: Some(actors[actors.len() - 1].clone()),
            ..f()
        },
        1,
    );
    let targets = common(entries, |e| {
        e.targets
            .as_ref()
            .and_then(|t| t.first())
            .map(|t| (t.kind.clone(), t.id.clone()))
    });
    let (kind, id) = targets[0].clone();
    check(
        Filter {
            target_type: Some(kind.clone()),
            target_id: Some(id.clone()),
            ..f()
        },
        3,
    );
    check(
        Filter {
            target_type: Some(kind),
            ..f()
        },
        100,
    );
    check(
        Filter {
            target_id: Some(id),
            ..f()
        },
        3,
    );
    let tenants = common(entries, |e| e.tenant.clone());
    check(
        Filter {
            tenant: Some(tenants[0].clone()),
            ..f()
        },
        50,
    );
    let workflows = common(entries, |e| e.source.as_ref().and_then(|s| s.workflow.clone()));
    check(
        Filter {
            workflow: Some(workflows[0].clone()),
            ..f()
        },
        20,
    );
    let services = common(entries, |e| e.source.as_ref().and_then(|s| s.service.clone()));
    check(
        Filter {
            service: Some(services[1].clone()),
            ..f()
        },
        20,
    );
    for o in Outcome::ALL {
        check(
            Filter {
                outcome: Some(*o),
                ..f()
            },
            1,
        );
    }
    for s in Severity::ALL {
        check(
            Filter {
                min_severity: Some(*s),
                ..f()
            },
            1,
        );
    }
    let ips = common(entries, |e| e.context.as_ref().and_then(|c| c.ip));
    check(
        Filter {
            ip: Some(ips[0]),
            ..f()
        },
        2,
    );
    let v6 = ips.iter().find(|ip| ip.is_ipv6()).copied().unwrap();
    check(Filter { ip: Some(v6), ..f() }, 1);
    check(
        Filter {
            ip: Some("2001:db8::1".parse::<IpAddr>().unwrap()),
            ..f()
        },
        1,
    );
    let sessions = common(entries, |e| e.context.as_ref().and_then(|c| c.session_id.clone()));
    check(
        Filter {
            session: Some(sessions[0].clone()),
            ..f()
        },
        2,
    );
    check(Filter { failures: true, ..f() }, 100);
}

#[test]
fn action_globs() {
    for (pattern, min) in [
        ("lead.*", 50),
        ("*.viewed", 50),
        ("lead.created*", 2),
        ("lead?created", 1),
        ("*", 3000),
        ("user.log??", 50),
        ("*i*", 100),
        ("a?b*c", 1),
        ("nothing.*", 0),
        ("?", 0),
    ] {
        check(
            Filter {
                action: Some(pattern.into()),
                ..f()
            },
            min,
        );
    }
}

#[test]
fn time_ranges_and_their_edges() {
    let entries = &fixture().entries;
    let events: Vec<&Event> = entries.iter().flatten().collect();
    let (a, b) = (events[500].occurred_at, events[900].occurred_at);
    let (lo, hi) = (a.min(b), a.max(b));
    let range = |since, until| TimeRange { since, until };
    // Bounds exactly on events' instants: since is inclusive, until exclusive.
    check(
        Filter {
            occurred: range(Some(lo), Some(hi)),
            ..f()
        },
        300,
    );
    check(
        Filter {
            occurred: range(Some(lo), None),
            ..f()
        },
        1000,
    );
    check(
        Filter {
            occurred: range(None, Some(hi)),
            ..f()
        },
        500,
    );
    check(
        Filter {
            occurred: range(Some(lo), Some(lo)),
            ..f()
        },
        0,
    );
    check(
        Filter {
            occurred: range(Some(hi), Some(lo)),
            ..f()
        },
        0,
    );
    let plus = |t: Timestamp, ns: i128| Timestamp::from_nanosecond(t.as_nanosecond() + ns).unwrap();
    check(
        Filter {
            occurred: range(Some(lo), Some(plus(lo, 1))),
            ..f()
        },
        1,
    );
    check(
        Filter {
            occurred: range(Some(plus(lo, -1)), Some(lo)),
            ..f()
        },
        0,
    );
    let odd = events.iter().find(|e| e.action == "leadXcreated").unwrap().occurred_at;
    check(
        Filter {
            occurred: range(Some(odd), Some(plus(odd, 1))),
            ..f()
        },
        1,
    );
    let (r1, r2) = (events[100].received_at, events[2000].received_at);
    check(
        Filter {
            received: range(Some(r1), Some(r2)),
            ..f()
        },
        1900,
    );
    check(
        Filter {
            received: range(Some(r2), None),
            occurred: range(None, Some(hi)),
            ..f()
        },
        0,
    );
}

/// Pages of a time range in a segment of many blocks, where the page
/// executor skips blocks by their time summaries and checks the rest per
/// document (late events make neighbouring blocks' times overlap).
#[test]
fn time_ranges_across_blocks_of_one_large_segment() {
    let entries = entries(3, 12_000);
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    for (i, e) in entries.iter().enumerate() {
        index.add(i as u64, e.as_ref()).unwrap();
        if i == 11_000 {
            index.commit().unwrap();
        }
    }
    index.commit().unwrap();
    let events: Vec<&Event> = entries.iter().flatten().collect();
    let range = |since: &Event, until: &Event| TimeRange {
        since: Some(since.occurred_at),
        until: Some(until.occurred_at),
    };
    let received = |since: &Event, until: &Event| TimeRange {
        since: Some(since.received_at),
        until: Some(until.received_at),
    };
    let cases = [
        (
            Filter {
                occurred: range(events[3000], events[7000]),
                ..f()
            },
            3000,
        ),
        (
            Filter {
                occurred: range(events[5100], events[5130]),
                ..f()
            },
            20,
        ),
        (
            Filter {
                action: Some("lead.*".into()),
                occurred: range(events[1000], events[9000]),
                ..f()
            },
            300,
        ),
        (
            Filter {
                action: Some("*.viewed".into()),
                occurred: TimeRange {
                    since: Some(events[2000].occurred_at),
                    until: None,
                },
                received: received(events[100], events[10_500]),
                ..f()
            },
            300,
        ),
        (
            Filter {
                received: received(events[8000], events[11_500]),
                ..f()
            },
            3000,
        ),
        (
            Filter {
                failures: true,
                occurred: TimeRange {
                    since: None,
                    until: Some(events[6000].occurred_at),
                },
                ..f()
            },
            100,
        ),
    ];
    for (filter, min) in cases {
        check_on(&index, &entries, filter, min);
    }
}

#[test]
fn free_text() {
    let entries = &fixture().entries;
    let words: Vec<String> = common(entries, |e| event_words(e).into_iter().next());
    check(
        Filter {
            text: Some(words[0].clone()),
            ..f()
        },
        50,
    );
    check(
        Filter {
            text: Some(words[words.len() - 1].to_uppercase()),
            ..f()
        },
        1,
    );
    // AND of two words: the first and last of an event's words.
    let some = entries
        .iter()
        .flatten()
        .skip(10)
        .map(event_words)
        .find(|w| w.len() > 2)
        .unwrap();
    check(
        Filter {
            text: Some(format!("{} {}", some[0], some[some.len() - 1])),
            ..f()
        },
        1,
    );
    check(
        Filter {
            text: Some(format!("{} {}", words[0], words[1])),
            ..f()
        },
        0,
    );
    check(
        Filter {
            text: Some(format!("{}, {}!", words[0], words[0])),
            ..f()
        },
        50,
    );
    let first_events: Vec<&Event> = entries.iter().flatten().take(400).collect();
    let message = first_events.iter().find_map(|e| e.message.clone()).unwrap();
    check(
        Filter {
            text: Some(message),
            ..f()
        },
        1,
    );
    // Details keys and values at any depth, error type and message, unicode.
    for t in [
        "inner_key",
        "deep value",
        "ZETA",
        "outer",
        "timeout",
        "UPSTREAM",
        "größe über",
        "ÜBER ALLES",
    ] {
        check(
            Filter {
                text: Some(t.into()),
                ..f()
            },
            1,
        );
    }
    check(
        Filter {
            text: Some("3".into()),
            ..f()
        },
        0,
    );
    check(
        Filter {
            text: Some("nosuchwordanywhere".into()),
            ..f()
        },
        0,
    );
    check(
        Filter {
            text: Some("  ,;  ".into()),
            ..f()
        },
        3000,
    );
}

#[test]
fn combinations() {
    let entries = &fixture().entries;
    let actors = common(entries, |e| e.actor.as_ref().map(|a| a.id.clone()));
    let events: Vec<&Event> = entries.iter().flatten().collect();
    let (lo, hi) = (events[300].occurred_at, events[2500].occurred_at);
    let range = TimeRange {
        since: Some(lo.min(hi)),
        until: Some(lo.max(hi)),
    };
    check(
        Filter {
            action: Some("user.*".into()),
            occurred: range,
            ..f()
        },
        50,
    );
    check(
        Filter {
            actor: Some(actors[0].clone()),
            failures: true,
            ..f()
        },
        0,
    );
    check(
        Filter {
            actor: Some(actors[0].clone()),
            outcome: Some(Outcome::Success),
            occurred: range,
            ..f()
        },
        5,
    );
    check(
        Filter {
            failures: true,
            min_severity: Some(Severity::Warning),
            action: Some("*login*".into()),
            ..f()
        },
        1,
    );
    check(
        Filter {
            target_type: Some("user".into()),
            target_id: Some("X-2".into()),
            ..f()
        },
        1,
    );
    // X-1 is a lead in one event and a user in another: the pair must match one target.
    check(
        Filter {
            target_type: Some("lead".into()),
            target_id: Some("X-1".into()),
            ..f()
        },
        1,
    );
    check(
        Filter {
            target_type: Some("account".into()),
            target_id: Some("X-1".into()),
            ..f()
        },
        0,
    );
    check(
        Filter {
            tenant: Some("t-odd".into()),
            service: Some("svc".into()),
            workflow: Some("wf".into()),
            ..f()
        },
        1,
    );
    check(
        Filter {
            session: Some("s-1".into()),
            ip: Some("2001:db8::1".parse().unwrap()),
            ..f()
        },
        1,
    );
}

#[test]
fn pages_and_cursors() {
    let Fixture { index, entries, .. } = fixture();
    let all = expected(entries, &f());
    let last = *all.last().unwrap();
    assert!(index.search(&f(), &Page::newest(0)).unwrap().is_empty());
    assert_eq!(
        index
            .search(
                &f(),
                &Page {
                    after: Some(0),
                    ..Page::newest(5)
                }
            )
            .unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        index
            .search(
                &f(),
                &Page {
                    after: Some(last),
                    ..Page::oldest(5)
                }
            )
            .unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        index
            .search(
                &f(),
                &Page {
                    after: Some(u64::MAX),
                    ..Page::newest(2)
                }
            )
            .unwrap(),
        vec![last, last - 1]
    );
    // A cursor on a non-event entry (60 is one) works like any other.
    assert!(entries[60].is_none());
    assert_eq!(
        index
            .search(
                &f(),
                &Page {
                    after: Some(60),
                    ..Page::newest(2)
                }
            )
            .unwrap(),
        vec![59, 58]
    );
    assert_eq!(
        index
            .search(
                &f(),
                &Page {
                    after: Some(60),
                    ..Page::oldest(2)
                }
            )
            .unwrap(),
        vec![61, 62]
    );
    assert_eq!(index.search(&f(), &Page::oldest(3)).unwrap(), vec![0, 1, 2]);
}

// ---- aggregations ----------------------------------------------------------

fn check_stats(filter: Filter, bucket: Bucket) {
    let Fixture { index, entries, .. } = fixture();
    let events: Vec<&Event> = entries.iter().flatten().filter(|e| matches(&filter, e)).collect();
    let ranked = |m: HashMap<String, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| (std::cmp::Reverse(a.1), &a.0).cmp(&(std::cmp::Reverse(b.1), &b.0)));
        v
    };
    let (mut actions, mut actors, mut outcomes) = (HashMap::new(), HashMap::new(), HashMap::new());
    let mut failed = HashMap::new();
    let mut times: BTreeMap<i64, u64> = BTreeMap::new();
    let width = match bucket {
        Bucket::Hour => 3600,
        Bucket::Day => 86_400,
    };
    for e in &events {
        *actions.entry(e.action.clone()).or_default() += 1;
        if e.outcome == Some(Outcome::Failure) {
            *failed.entry(e.action.clone()).or_default() += 1;
        }
        if let Some(a) = &e.actor {
            *actors.entry(a.id.clone()).or_default() += 1;
        }
        if let Some(o) = e.outcome {
            *outcomes.entry(o.as_str().to_string()).or_default() += 1;
        }
        *times
            .entry(e.occurred_at.as_second().div_euclid(width) * width)
            .or_default() += 1;
    }
    let stats = index.stats(&filter, bucket).unwrap();
    assert_eq!(stats.total, events.len() as u64);
    assert_eq!(stats.by_action, ranked(actions));
    assert_eq!(stats.by_actor, ranked(actors));
    assert_eq!(stats.by_outcome, ranked(outcomes));
    assert_eq!(stats.failures_by_action, ranked(failed));
    let times: Vec<(Timestamp, u64)> = times
        .into_iter()
        .map(|(s, n)| (Timestamp::from_second(s).unwrap(), n))
        .collect();
    assert_eq!(stats.by_time, times);
}

#[test]
fn stats_match_a_scan() {
    check_stats(f(), Bucket::Hour);
    check_stats(f(), Bucket::Day);
    check_stats(
        Filter {
            action: Some("lead.*".into()),
            ..f()
        },
        Bucket::Hour,
    );
    check_stats(Filter { failures: true, ..f() }, Bucket::Day);
    check_stats(
        Filter {
            action: Some("nothing".into()),
            ..f()
        },
        Bucket::Day,
    );
}

/// `tally_globs` against the model and against one `stats`, failure
/// `count` and newest-first `search` per glob.
fn check_tally(filter: Filter, globs: &[&str], newest: usize) {
    let Fixture { index, entries, .. } = fixture();
    let tallies = index.tally_globs(&filter, globs, newest).unwrap();
    assert_eq!(tallies.len(), globs.len());
    for (glob, tally) in globs.iter().zip(&tallies) {
        let with = Filter {
            action: Some(glob.to_string()),
            ..filter.clone()
        };
        let hits = expected(entries, &with);
        let failed = Filter {
            outcome: Some(Outcome::Failure),
            ..with.clone()
        };
        let mut by_action: HashMap<String, u64> = HashMap::new();
        for &i in &hits {
            *by_action
                .entry(entries[i as usize].as_ref().unwrap().action.clone())
                .or_default() += 1;
        }
        let mut by_action: Vec<(String, u64)> = by_action.into_iter().collect();
        by_action.sort_by(|a, b| (std::cmp::Reverse(a.1), &a.0).cmp(&(std::cmp::Reverse(b.1), &b.0)));
        let top: Vec<u64> = hits.iter().rev().take(newest).copied().collect();
        assert_eq!(tally.total, hits.len() as u64, "{glob}");
        assert_eq!(tally.failures, expected(entries, &failed).len() as u64, "{glob}");
        assert_eq!(tally.by_action, by_action, "{glob}");
        assert_eq!(tally.newest, top, "{glob}");
        // The same as a query per glob.
        let stats = index.stats(&with, Bucket::Day).unwrap();
        assert_eq!(
            (tally.total, &tally.by_action),
            (stats.total, &stats.by_action),
            "{glob}"
        );
        assert_eq!(tally.failures, index.count(&failed).unwrap(), "{glob}");
        assert_eq!(
            tally.newest,
            index.search(&with, &Page::newest(newest)).unwrap(),
            "{glob}"
        );
    }
}

fn index_tally(filter: &Filter, glob: &str) -> u64 {
    fixture().index.tally_globs(filter, &[glob], 1).unwrap()[0].total
}

#[test]
fn glob_tallies_match_a_scan_and_a_query_per_glob() {
    // Overlapping globs, a literal, one matching nothing, every action.
    let globs = [
        "lead.*",
        "lead.created",
        "*.deleted",
        "user.login*",
        "*",
        "no.such.*",
        "?ead.viewed",
    ];
    check_tally(f(), &globs, 5);
    check_tally(f(), &globs, 0);
    check_tally(f(), &globs, 10_000);
    // The middle half of the events by time.
    let mut times: Vec<Timestamp> = fixture().entries.iter().flatten().map(|e| e.occurred_at).collect();
    times.sort();
    let middle = Filter {
        occurred: TimeRange {
            since: Some(times[times.len() / 4]),
            until: Some(times[times.len() * 3 / 4]),
        },
        ..f()
    };
    let lead = index_tally(&middle, "lead.*");
    assert!(lead > 100 && lead < index_tally(&f(), "lead.*"), "{lead}");
    check_tally(middle, &globs, 5);
    let day = |d: &str| Some(d.parse::<Timestamp>().unwrap());
    check_tally(
        Filter {
            tenant: common(&fixture().entries, |e| e.tenant.clone()).first().cloned(),
            ..f()
        },
        &globs,
        3,
    );
    check_tally(
        Filter {
            occurred: TimeRange {
                since: day("2030-01-01T00:00:00Z"),
                until: None,
            },
            ..f()
        },
        &globs,
        5,
    );
    check_tally(f(), &[], 5);
}

/// The values of `facet` each event holds, once per event.
fn facet_values(e: &Event, facet: Facet) -> Vec<String> {
    let mut v: Vec<String> = match facet {
        Facet::Target => e
            .targets
            .iter()
            .flatten()
            .map(|t| format!("{}:{}", t.kind, t.id))
            .collect(),
        Facet::Tenant => e.tenant.iter().cloned().collect(),
        Facet::Service => e.source.iter().filter_map(|s| s.service.clone()).collect(),
        Facet::Workflow => e.source.iter().filter_map(|s| s.workflow.clone()).collect(),
    };
    v.sort();
    v.dedup();
    v
}

#[test]
fn facets_match_a_scan() {
    let Fixture { index, entries, .. } = fixture();
    let events: Vec<&Event> = entries.iter().flatten().collect();
    let (a, b) = (events[500].occurred_at, events[2300].occurred_at);
    let middle = TimeRange {
        since: Some(a.min(b)),
        until: Some(a.max(b)),
    };
    for filter in [
        // Every document of every segment matches.
        f(),
        // Parts of several segments.
        Filter {
            occurred: middle,
            ..f()
        },
        Filter {
            action: Some("lead.*".into()),
            ..f()
        },
        Filter { failures: true, ..f() },
        Filter {
            action: Some("nothing".into()),
            ..f()
        },
    ] {
        for facet in [Facet::Target, Facet::Tenant, Facet::Service, Facet::Workflow] {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for e in events.iter().filter(|e| matches(&filter, e)) {
                for v in facet_values(e, facet) {
                    *counts.entry(v).or_default() += 1;
                }
            }
            let mut expected: Vec<(String, u64)> = counts.into_iter().collect();
            expected.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let got = index.facet(&filter, facet).unwrap();
            assert_eq!(got, expected, "{facet:?} of {filter:?}");
        }
    }
    // The handmade event's two targets of different types, named whole.
    let got = index.facet(&f(), Facet::Target).unwrap();
    assert!(got.iter().any(|(v, n)| v == "user:X-2" && *n == 1), "{got:?}");
}

#[test]
fn performance_matches_a_scan() {
    let Fixture { index, entries, .. } = fixture();
    for filter in [
        f(),
        Filter { failures: true, ..f() },
        Filter {
            action: Some("none".into()),
            ..f()
        },
    ] {
        let mut by_action: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for e in entries.iter().flatten().filter(|e| matches(&filter, e)) {
            if let Some(d) = e.duration_ms {
                by_action.entry(e.action.clone()).or_default().push(d);
            }
        }
        let got = index.performance(&filter).unwrap();
        assert_eq!(
            got.iter().map(|p| p.action.clone()).collect::<Vec<_>>(),
            by_action.keys().cloned().collect::<Vec<_>>()
        );
        for (p, (action, mut v)) in got.iter().zip(by_action) {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            // Nearest rank: the smallest rank r with r / n >= p / 100.
            let rank = |pct: usize| v[(1..=n).find(|r| r * 100 >= pct * n).unwrap() - 1];
            assert_eq!((p.count, p.min, p.max), (n as u64, v[0], v[n - 1]), "{action}");
            assert_eq!((p.p50, p.p95, p.p99), (rank(50), rank(95), rank(99)), "{action}");
            let mean = v.iter().sum::<f64>() / n as f64;
            assert!(
                (p.mean - mean).abs() <= 1e-9 * mean.abs().max(1.0),
                "{action}: {} vs {mean}",
                p.mean
            );
        }
    }
}

// ---- lifecycle --------------------------------------------------------------

#[test]
fn idempotency_keys() {
    let Fixture { index, entries, .. } = fixture();
    let mut seen = 0;
    for (i, e) in entries.iter().enumerate() {
        if let Some(key) = e.as_ref().and_then(|e| e.idempotency_key.as_ref()) {
            assert_eq!(index.find_idempotency_key(key).unwrap(), Some(i as u64));
            seen += 1;
        }
    }
    assert!(seen > 100);
    assert_eq!(index.find_idempotency_key("key-handmade").unwrap(), Some(3));
    assert_eq!(index.find_idempotency_key("no-such-key").unwrap(), None);

    // Together, on one snapshot: every stored key from every segment, keys
    // that are absent (each segment's key filter must let the stored ones
    // through and may let a few absent ones through), and a repeat.
    let mut keys: Vec<String> = Vec::new();
    let mut expected: Vec<Option<u64>> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(key) = e.as_ref().and_then(|e| e.idempotency_key.clone()) {
            keys.push(format!("{key}-absent"));
            expected.push(None);
            keys.push(key);
            expected.push(Some(i as u64));
        }
    }
    keys.push("key-handmade".into());
    expected.push(Some(3));
    keys.extend((0..1000).map(|i| format!("absent-{i}")));
    expected.extend((0..1000).map(|_| None));
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(index.find_idempotency_keys(&keys).unwrap(), expected);
    assert_eq!(index.find_idempotency_keys(&[]).unwrap(), Vec::<Option<u64>>::new());
}

/// Everything the index answers, for comparing two indexes.
/// An index of `entries` added and committed once, in a new directory.
fn build_in_one_commit(entries: &[Option<Event>]) -> (tempfile::TempDir, EventIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    for (i, e) in entries.iter().enumerate() {
        index.add(i as u64, e.as_ref()).unwrap();
    }
    index.commit().unwrap();
    (dir, index)
}

fn answers(index: &EventIndex) -> Vec<String> {
    let filters = [
        f(),
        Filter {
            action: Some("lead.*".into()),
            ..f()
        },
        Filter { failures: true, ..f() },
        Filter {
            text: Some("customer".into()),
            ..f()
        },
    ];
    let mut out = vec![index.indexed().to_string()];
    for filter in &filters {
        let mut all = Vec::new();
        index
            .for_each(filter, |i| {
                all.push(i);
                true
            })
            .unwrap();
        out.push(format!("{all:?}"));
        out.push(format!("{:?}", index.search(filter, &Page::newest(50)).unwrap()));
        out.push(format!("{:?}", index.stats(filter, Bucket::Hour).unwrap()));
        out.push(format!("{:?}", index.performance(filter).unwrap()));
    }
    out
}

#[test]
fn incremental_build_with_reopens_equals_a_rebuild() {
    let entries = &entries(11, 1500);
    let (_scratch, whole) = build_in_one_commit(entries);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/x/index");
    let mut at = 0;
    for chunk in [1, 300, 0, 457, entries.len() - 758] {
        let index = EventIndex::open(&path, IndexOptions::default()).unwrap();
        assert_eq!(index.indexed(), at as u64);
        for (i, e) in entries.iter().enumerate().skip(at).take(chunk) {
            index.add(i as u64, e.as_ref()).unwrap();
        }
        at += chunk;
        assert_eq!(index.commit().unwrap(), at as u64);
        // One more, never committed: lost on reopen, added again then.
        if let Some(e) = entries.get(at) {
            index.add(at as u64, e.as_ref()).unwrap();
        }
    }
    assert_eq!(at, entries.len());
    let index = EventIndex::open(
        &path,
        IndexOptions {
            // Other writer options: they change how segments are written,
            // not what an open index answers.
            writer_memory: 300 << 10,
        },
    )
    .unwrap();
    assert_eq!(answers(&index), answers(&whole));
}

#[test]
fn uncommitted_additions_are_lost_on_reopen() {
    let entries = &entries(3, 50);
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    for (i, e) in entries.iter().enumerate().take(20) {
        index.add(i as u64, e.as_ref()).unwrap();
    }
    assert_eq!(index.commit().unwrap(), 20);
    for (i, e) in entries.iter().enumerate().skip(20).take(10) {
        index.add(i as u64, e.as_ref()).unwrap();
    }
    assert_eq!(index.count(&f()).unwrap(), 20, "searches see only commits");
    drop(index);
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    assert_eq!(index.indexed(), 20);
    assert_eq!(index.count(&f()).unwrap(), 20);
    assert!(matches!(
        index.add(30, None),
        Err(IndexError::OutOfOrder { expected: 20, got: 30 })
    ));
    index.add(20, None).unwrap();
    assert_eq!(index.commit().unwrap(), 21, "a non-event entry advances the watermark");
}

#[test]
fn out_of_order_additions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    let e = entries(1, 3).into_iter().flatten().next().unwrap();
    assert!(matches!(
        index.add(1, Some(&e)),
        Err(IndexError::OutOfOrder { expected: 0, got: 1 })
    ));
    index.add(0, Some(&e)).unwrap();
    assert!(matches!(
        index.add(0, Some(&e)),
        Err(IndexError::OutOfOrder { expected: 1, got: 0 })
    ));
    assert!(matches!(
        index.add(5, None),
        Err(IndexError::OutOfOrder { expected: 1, got: 5 })
    ));
    index.add(1, None).unwrap();
    assert_eq!(index.commit().unwrap(), 2);
    assert_eq!(index.search(&f(), &Page::newest(10)).unwrap(), vec![0]);
}

/// `add_events` (runs of events handed over at once, as the trail's
/// indexer does) builds the same index as `add` one entry at a time, and
/// refuses a run that does not continue the ledger.
#[test]
fn runs_of_events_index_like_single_additions() {
    let entries = &fixture().entries;
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    let e = entries.iter().flatten().next().unwrap();
    assert!(matches!(
        index.add_events(3, std::slice::from_ref(e)),
        Err(IndexError::OutOfOrder { expected: 0, got: 3 })
    ));
    // Runs of 1 to 2,500 events (over the 1,024 of one batch the old index gave its engine), broken by
    // the entries that are not events, with commits in between.
    let (mut at, mut run, mut sizes) = (0usize, Vec::new(), [1usize, 7, 2500, 64].iter().cycle());
    let mut want = *sizes.next().unwrap();
    let mut commits = 0;
    while at < entries.len() {
        match &entries[at] {
            Some(event) => {
                run.push(event.clone());
                at += 1;
                if run.len() == want || at == entries.len() || entries[at].is_none() {
                    index.add_events((at - run.len()) as u64, &run).unwrap();
                    run.clear();
                    want = *sizes.next().unwrap();
                }
            }
            None => {
                index.add(at as u64, None).unwrap();
                at += 1;
                if commits < 3 {
                    index.commit().unwrap();
                    commits += 1;
                }
            }
        }
    }
    assert_eq!(index.commit().unwrap(), entries.len() as u64);
    let actions = common(entries, |e| Some(e.action.clone()));
    let actors = common(entries, |e| e.actor.as_ref().map(|a| a.id.clone()));
    for filter in [
        f(),
        Filter {
            action: Some(actions[0].clone()),
            ..f()
        },
        Filter {
            actor: Some(actors[0].clone()),
            ..f()
        },
        Filter {
            text: Some("upstream".into()),
            ..f()
        },
    ] {
        check_on(&index, entries, filter, 1);
    }
    let original = fixture().index.find_idempotency_key("key-handmade").unwrap();
    assert!(original.is_some());
    assert_eq!(index.find_idempotency_key("key-handmade").unwrap(), original);
}

#[test]
fn wipe_deletes_only_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    EventIndex::wipe(&path).unwrap();
    let index = EventIndex::open(&path, IndexOptions::default()).unwrap();
    index.add(0, None).unwrap();
    index.commit().unwrap();
    assert!(
        EventIndex::open(&path, IndexOptions::default()).is_err(),
        "one writer per index"
    );
    drop(index);
    EventIndex::wipe(&path).unwrap();
    assert!(!path.exists());
    assert_eq!(EventIndex::open(&path, IndexOptions::default()).unwrap().indexed(), 0);

    let other = dir.path().join("not-an-index");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious.txt"), b"keep").unwrap();
    assert!(matches!(EventIndex::wipe(&other), Err(IndexError::NotAnIndex(_))));
    assert!(other.join("precious.txt").exists());

    // An index stopped before its first commit (a full disk, a crash):
    // its lock and a segment, no manifest. Still an index.
    let unfinished = dir.path().join("unfinished");
    std::fs::create_dir(&unfinished).unwrap();
    std::fs::write(unfinished.join("LOCK"), b"").unwrap();
    std::fs::write(unfinished.join("000000000000.seg"), b"partial").unwrap();
    EventIndex::wipe(&unfinished).unwrap();
    assert!(!unfinished.exists());
}

/// The segment files of an index directory, sorted.
fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn many_small_commits_merge_and_answer_as_one_build() {
    let entries = &entries(17, 2500);
    let (scratch, whole) = build_in_one_commit(entries);
    assert_eq!(segment_files(scratch.path()).len(), 1);

    let dir = tempfile::tempdir().unwrap();
    // Small enough that segments are also written between commits.
    let small = IndexOptions {
        writer_memory: 48 << 10,
    };
    let index = EventIndex::open(dir.path(), small).unwrap();
    let mut commits = 0;
    for (i, e) in entries.iter().enumerate() {
        index.add(i as u64, e.as_ref()).unwrap();
        if i % 37 == 36 {
            index.commit().unwrap();
            commits += 1;
        }
    }
    index.commit().unwrap();
    // Merges run on their own thread; answers hold meanwhile.
    assert_eq!(answers(&index), answers(&whole));
    index.wait_for_merges().unwrap();
    let files = segment_files(dir.path());
    assert!(commits > 60, "{commits}");
    // Without merges there would be a segment per commit, at least.
    assert!(files.len() < 20, "{} segments: {files:?}", files.len());
    assert_eq!(answers(&index), answers(&whole));
    drop(index);
    let index = EventIndex::open(dir.path(), small).unwrap();
    index.wait_for_merges().unwrap();
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(answers(&index), answers(&whole));
}

#[test]
fn open_deletes_what_no_commit_named_and_resumes_at_the_watermark() {
    let entries = &entries(19, 600);
    let dir = tempfile::tempdir().unwrap();
    let small = IndexOptions {
        writer_memory: 32 << 10,
    };
    let index = EventIndex::open(dir.path(), small).unwrap();
    for (i, e) in entries.iter().enumerate().take(200) {
        index.add(i as u64, e.as_ref()).unwrap();
    }
    index.commit().unwrap();
    let committed = segment_files(dir.path());
    // Segments written for additions that are never committed, and a
    // manifest cut short, as a crash would leave them.
    for (i, e) in entries.iter().enumerate().skip(200).take(300) {
        index.add(i as u64, e.as_ref()).unwrap();
    }
    assert!(segment_files(dir.path()).len() > committed.len());
    drop(index);
    std::fs::write(dir.path().join("MANIFEST.tmp"), b"sealtrail-index 5\nwater").unwrap();

    let index = EventIndex::open(dir.path(), small).unwrap();
    assert_eq!(index.indexed(), 200);
    assert_eq!(segment_files(dir.path()), committed);
    assert!(!dir.path().join("MANIFEST.tmp").exists());
    for (i, e) in entries.iter().enumerate().skip(200) {
        index.add(i as u64, e.as_ref()).unwrap();
    }
    index.commit().unwrap();
    let (_rebuilt, whole) = build_in_one_commit(entries);
    assert_eq!(answers(&index), answers(&whole));
}

#[test]
fn damaged_indexes_are_refused_with_what_and_where() {
    let (dir, index) = build_in_one_commit(&entries(23, 100));
    assert!(matches!(
        EventIndex::open(dir.path(), IndexOptions::default()),
        Err(IndexError::Locked(_))
    ));
    drop(index);
    let manifest = dir.path().join("MANIFEST");
    let good = std::fs::read_to_string(&manifest).unwrap();
    let reopen = || EventIndex::open(dir.path(), IndexOptions::default());

    std::fs::write(&manifest, good.replace("watermark ", "watermark x")).unwrap();
    let e = reopen().err().unwrap();
    assert!(matches!(e, IndexError::BadManifest { line: 2, .. }), "{e}");
    assert!(
        e.to_string().contains("MANIFEST: line 2: watermark is not a number"),
        "{e}"
    );

    std::fs::write(&manifest, format!("{good}segment ../elsewhere 10\n")).unwrap();
    let e = reopen().err().unwrap();
    assert!(matches!(e, IndexError::BadManifest { line: 4, .. }), "{e}");

    // An index of the version before (encrypted PII values indexed as words).
    std::fs::write(&manifest, good.replace("sealtrail-index 5", "sealtrail-index 4")).unwrap();
    assert!(matches!(reopen(), Err(IndexError::SchemaMismatch { .. })));

    std::fs::write(&manifest, &good).unwrap();
    let segment = dir.path().join(&segment_files(dir.path())[0]);
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() - 1]).unwrap();
    let e = reopen().err().unwrap();
    assert!(matches!(e, IndexError::BadSegment { .. }), "{e}");
    assert!(e.to_string().contains("bytes where the manifest says"), "{e}");

    // The tail's checksum itself.
    let mut flipped = bytes.clone();
    let at = flipped.len() - 16;
    flipped[at] ^= 1;
    std::fs::write(&segment, &flipped).unwrap();
    let e = reopen().err().unwrap();
    assert!(matches!(e, IndexError::BadSegment { .. }), "{e}");
    assert!(e.to_string().contains("segment tail fails its checksum"), "{e}");

    std::fs::remove_file(&segment).unwrap();
    let e = reopen().err().unwrap();
    assert!(matches!(e, IndexError::BadSegment { .. }), "{e}");

    // An index of an earlier version (tantivy's): refused as another
    // version, and wipe takes it.
    let old = tempfile::tempdir().unwrap();
    let old = old.path().join("index");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("meta.json"), b"{}").unwrap();
    assert!(matches!(
        EventIndex::open(&old, IndexOptions::default()),
        Err(IndexError::SchemaMismatch { .. })
    ));
    EventIndex::wipe(&old).unwrap();
    assert!(!old.exists());
}

/// Make the posting list of action `a` in the segment at `path` descend
/// once, keeping its length: five one-byte deltas become the five-byte
/// varint of `u32::MAX` (docs/index-segments.md has the layout). The
/// checksums are recomputed, so that only the list's own checks catch it.
fn unsort_postings_of_a(path: &std::path::Path, docs: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let segment = sealtrail_segment::Segment::open(bytes.clone()).unwrap();
    let term = segment.find(0, b"a").unwrap().unwrap() as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let columns = u32_at(bytes.len() - 20);
    let table = bytes.len() - 32 - (7 + columns) * 8;
    let offsets = u64_at(table); // section 1 starts where section 0 ends
    let list = u64_at(offsets + term * 8);
    let skips = (docs.div_ceil(128) - 1) * 8;
    let deltas = list + 2 + skips; // a two-byte count
    assert_eq!(&bytes[deltas + 21..deltas + 26], &[1; 5]);
    bytes[deltas + 21..deltas + 26].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    sealtrail_segment::reseal(&mut bytes).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_merge_that_fails_refuses_writes_and_wakes_its_waiters() {
    let event = |i: u64| {
        let at = Timestamp::from_millisecond(1_767_225_600_000 + i as i64).unwrap();
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&i.to_be_bytes());
        accept_json(br#"{"action":"a"}"#, at, event_id(at, random).unwrap()).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut next = 0;
    let mut add_200 = |index: &EventIndex| {
        for _ in 0..200 {
            index.add(next, Some(&event(next))).unwrap();
            next += 1;
        }
        index.commit().unwrap();
    };
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    for _ in 0..15 {
        add_200(&index);
    }
    drop(index);
    unsort_postings_of_a(&dir.path().join(&segment_files(dir.path())[5]), 200);

    // The damage opens (lengths and sections hold); the 16th segment calls
    // for a merge, which refuses the list rather than panicking or writing it.
    let index = std::sync::Arc::new(EventIndex::open(dir.path(), IndexOptions::default()).unwrap());
    add_200(&index);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::sync::Arc::clone(&index);
    let thread = std::thread::spawn(move || tx.send(waiter.wait_for_merges().map_err(|e| e.to_string())));
    let waited = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("wait_for_merges hung");
    thread.join().unwrap().unwrap();
    assert!(waited.unwrap_err().contains("refused writes"));
    assert!(matches!(index.add(next, None), Err(IndexError::Poisoned)));
    // 16 committed segments and the failed merge's partial file, which the
    // next open deletes.
    assert_eq!(segment_files(dir.path()).len(), 17);
    drop(index);
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    assert_eq!(index.indexed(), next);
    assert!(segment_files(dir.path()).len() <= 17);
}

/// The answers of [`answers`] and more, each a value or the message of a
/// damaged segment (any other error panics).
fn answers_or_errors(index: &EventIndex, keys: &[&str]) -> Vec<Result<String, String>> {
    let filters = [
        f(),
        Filter {
            action: Some("lead.*".into()),
            ..f()
        },
        Filter { failures: true, ..f() },
        Filter {
            text: Some("customer".into()),
            ..f()
        },
    ];
    fn shown<T: std::fmt::Debug>(r: Result<T, IndexError>) -> Result<String, String> {
        match r {
            Ok(v) => Ok(format!("{v:?}")),
            Err(e @ IndexError::BadSegment { .. }) => Err(e.to_string()),
            Err(e) => panic!("not a damaged segment: {e}"),
        }
    }
    let mut out = Vec::new();
    for filter in &filters {
        let mut all = Vec::new();
        let each = shown(index.for_each(filter, |i| {
            all.push(i);
            true
        }));
        // What it gave before an error is no answer.
        let seen = match each {
            Ok(_) => Ok(format!("{all:?}")),
            Err(_) => Err("not asked".into()),
        };
        out.extend([each, seen]);
        out.push(shown(index.count(filter)));
        out.push(shown(index.search(filter, &Page::newest(50))));
        out.push(shown(index.search(filter, &Page::oldest(50))));
        out.push(shown(index.stats(filter, Bucket::Hour)));
        out.push(shown(index.performance(filter)));
    }
    out.push(shown(index.find_idempotency_keys(keys)));
    out
}

#[test]
fn a_damaged_segment_fails_the_queries_that_read_it_and_no_other_answer_changes() {
    let entries = &entries(31, 400);
    let (dir, index) = build_in_one_commit(entries);
    let keys: Vec<String> = entries
        .iter()
        .flatten()
        .filter_map(|e| e.idempotency_key.clone())
        .take(5)
        .chain(["absent".to_string()])
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let want = answers_or_errors(&index, &keys);
    assert!(want.iter().all(Result::is_ok));
    drop(index);
    let file = dir.path().join(&segment_files(dir.path())[0]);
    let good = std::fs::read(&file).unwrap();
    let mut refused = 0;
    // Forty places across the file, the same length: each either refuses
    // the open or fails the queries that read it.
    for i in 0..40 {
        let at = good.len() * i / 40;
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&file, &bad).unwrap();
        let index = match EventIndex::open_read_only(dir.path(), IndexOptions::default()) {
            Ok(index) => index,
            Err(e) => {
                assert!(matches!(e, IndexError::BadSegment { .. }), "byte {at}: {e}");
                continue;
            }
        };
        let got = answers_or_errors(&index, &keys);
        for (q, (g, w)) in got.iter().zip(&want).enumerate() {
            match g {
                Ok(g) => assert_eq!(Some(g), w.as_ref().ok(), "byte {at}, question {q}"),
                Err(e) if e == "not asked" => {}
                Err(e) => {
                    refused += 1;
                    assert!(e.contains(&file.display().to_string()), "{e}");
                    assert!(e.contains("fails its checksum"), "{e}");
                }
            }
        }
    }
    assert!(refused > 0, "no damage reached a query");

    // A segment of the format before checksums: the index is of another
    // version, and is rebuilt.
    let mut old = good.clone();
    let n = old.len();
    old[n - 8..].copy_from_slice(b"STSEG001");
    std::fs::write(&file, &old).unwrap();
    assert!(matches!(
        EventIndex::open(dir.path(), IndexOptions::default()),
        Err(IndexError::SchemaMismatch { .. })
    ));
}

/// Name and length of every file in `dir`.
fn files_with_lengths(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn read_only_opens_beside_the_writer_see_commits_through_merges_and_touch_nothing() {
    let entries = &entries(23, 2500);
    let dir = tempfile::tempdir().unwrap();
    let small = IndexOptions {
        writer_memory: 32 << 10,
    };
    let writer = EventIndex::open(dir.path(), small).unwrap();
    let events_before = |n: u64| entries[..n as usize].iter().flatten().count() as u64;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut opens = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                // Segments merge away under these opens; each sees one
                // whole commit.
                let reader = EventIndex::open_read_only(dir.path(), small).unwrap();
                let n = reader.indexed();
                assert_eq!(reader.count(&f()).unwrap(), events_before(n), "at watermark {n}");
                opens += 1;
            }
            opens
        });
        for (i, e) in entries.iter().enumerate() {
            writer.add(i as u64, e.as_ref()).unwrap();
            if i % 23 == 22 {
                writer.commit().unwrap();
            }
        }
        writer.commit().unwrap();
        writer.wait_for_merges().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Release);
        assert!(reader.join().unwrap() > 0);
    });

    // Uncommitted segments of the writer stay: only the writer deletes.
    for (i, e) in entries.iter().enumerate().take(300) {
        writer.add((entries.len() + i) as u64, e.as_ref()).unwrap();
    }
    let before = files_with_lengths(dir.path());
    let reader = EventIndex::open_read_only(dir.path(), small).unwrap();
    assert_eq!(reader.indexed(), entries.len() as u64);
    assert_eq!(answers(&reader), answers(&writer));
    assert!(matches!(
        reader.add(entries.len() as u64, None),
        Err(IndexError::ReadOnly(_))
    ));
    assert!(matches!(reader.commit(), Err(IndexError::ReadOnly(_))));
    drop(reader);
    assert_eq!(files_with_lengths(dir.path()), before);

    // No index yet: empty, and nothing is created.
    let absent = dir.path().join("absent");
    let reader = EventIndex::open_read_only(&absent, small).unwrap();
    assert_eq!(reader.indexed(), 0);
    assert_eq!(reader.count(&f()).unwrap(), 0);
    assert!(!absent.exists());
}

#[test]
fn a_read_only_open_refuses_a_manifest_naming_a_missing_segment() {
    let entries = &entries(29, 300);
    let (dir, index) = build_in_one_commit(entries);
    drop(index);
    let seg = segment_files(dir.path()).pop().unwrap();
    std::fs::remove_file(dir.path().join(&seg)).unwrap();
    let e = EventIndex::open_read_only(dir.path(), IndexOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&e, IndexError::BadSegment { reason, .. } if reason == "missing"),
        "{e}"
    );
    assert!(e.to_string().contains(&seg), "{e}");
}
