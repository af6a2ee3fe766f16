//! The ingest pipeline end to end on a real data directory: items and
//! rejections, idempotency (in a batch, before and after an index commit,
//! across restarts, between racing threads), catch-up of the index from
//! the ledger, rebuild equality, and JSON Lines with bad lines.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_event::{Rejection, Timestamp};
use sealtrail_ledger::{DataDir, LogOptions};
use sealtrail_trail::{Filter, Item, Order, Page, Trail, TrailOptions};

struct Env {
    _tmp: tempfile::TempDir,
    data: DataDir,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    data.create_log("audit", None).unwrap();
    Env { _tmp: tmp, data }
}

fn options() -> TrailOptions {
    TrailOptions {
        clock: Arc::new(|| "2026-05-01T12:00:00Z".parse().unwrap()),
        ..TrailOptions::default()
    }
}

fn open(env: &Env) -> Trail {
    Trail::open(&env.data, "audit", options()).unwrap()
}

fn all(trail: &Trail) -> Vec<u64> {
    trail.sync_index().unwrap();
    let page = Page {
        order: Order::OldestFirst,
        limit: 1_000_000,
        after: None,
    };
    trail
        .query(&Filter::default(), &page)
        .unwrap()
        .into_iter()
        .map(|f| f.index)
        .collect()
}

fn keyed(action: &str, key: &str) -> Vec<u8> {
    format!(r#"{{"action":"{action}","idempotency_key":"{key}"}}"#).into_bytes()
}

#[test]
fn items_come_back_in_input_order_with_rejections_named() {
    let env = env();
    let trail = open(&env);
    let inputs: Vec<&[u8]> = vec![
        br#"{"action":"a.one"}"#,
        br#"{"action":"a.two","actor":{"id":7}}"#,
        b"{not json",
        br#"{"action":"a.three","occurred_at":"2026-04-30T10:00:00+02:00"}"#,
    ];
    let done = trail.ingest(&inputs, false).unwrap();
    assert_eq!(done.appended(), 2);
    assert_eq!(done.tree_size, 2);
    match &done.items[..] {
        [Item::Stored {
            index: 0,
            duplicate: false,
            ..
        }, Item::Rejected(Rejection::Invalid(errors)), Item::Rejected(Rejection::Json(json)), Item::Stored { index: 1, .. }] =>
        {
            assert_eq!(errors[0].to_string(), "actor.id: expected string, got number");
            assert_eq!((json.line, json.column), (1, 2));
        }
        other => panic!("{other:?}"),
    }
    let found = trail.read(1).unwrap();
    assert_eq!(found.event.action, "a.three");
    assert_eq!(found.event.occurred_at.to_string(), "2026-04-30T08:00:00Z");
    assert_eq!(found.event.received_at.to_string(), "2026-05-01T12:00:00Z");
    assert_eq!(all(&trail), vec![0, 1]);
}

#[test]
fn an_atomic_batch_with_one_bad_input_appends_nothing() {
    let env = env();
    let trail = open(&env);
    let inputs: Vec<&[u8]> = vec![br#"{"action":"a.one"}"#, br#"{"actor":{"id":"u1"}}"#];
    let done = trail.ingest(&inputs, true).unwrap();
    assert_eq!(done.appended(), 0);
    assert!(matches!(done.items[0], Item::NotAppended));
    assert!(matches!(&done.items[1], Item::Rejected(Rejection::Invalid(e)) if e[0].to_string() == "action: required"));
    assert_eq!(trail.log().size(), 0);
}

#[test]
fn idempotency_keys_hold_in_a_batch_before_and_after_commit_and_across_restart() {
    let env = env();
    let first_index;
    {
        let trail = open(&env);
        let a = keyed("k.first", "key-1");
        let b = keyed("k.again", "key-1");
        let done = trail.ingest(&[&a, &b], false).unwrap();
        let Item::Stored {
            index,
            id,
            leaf,
            duplicate: false,
        } = done.items[0]
        else {
            panic!("{:?}", done.items)
        };
        first_index = index;
        assert_eq!(
            done.items[1],
            Item::Stored {
                index,
                id,
                leaf,
                duplicate: true
            }
        );
        // Before the index commits: found among recent keys.
        let again = trail.ingest(&[&b], false).unwrap();
        assert_eq!(
            again.items[0],
            Item::Stored {
                index,
                id,
                leaf,
                duplicate: true
            }
        );
        // After the commit: found in the index.
        trail.sync_index().unwrap();
        let again = trail.ingest(&[&b], false).unwrap();
        assert_eq!(
            again.items[0],
            Item::Stored {
                index,
                id,
                leaf,
                duplicate: true
            }
        );
        assert_eq!(trail.log().size(), 1);
    }
    // After a restart.
    let trail = open(&env);
    let resend = keyed("k.after-restart", "key-1");
    let other = keyed("k.other", "key-2");
    let done = trail.ingest(&[&resend, &other], false).unwrap();
    assert!(matches!(done.items[0], Item::Stored { index, duplicate: true, .. } if index == first_index));
    assert!(matches!(
        done.items[1],
        Item::Stored {
            index: 1,
            duplicate: false,
            ..
        }
    ));
    assert_eq!(trail.log().size(), 2);
    assert_eq!(trail.read(first_index).unwrap().event.action, "k.first");
}

/// A rejected input takes no ledger index, so a key after it in the same
/// batch is remembered at the index it really got: a resend before the
/// index commits returns that event, not its neighbour.
#[test]
fn a_key_after_a_rejected_input_is_remembered_at_its_own_index() {
    let env = env();
    let trail = open(&env);
    let plain = br#"{"action":"k.plain"}"#.to_vec();
    trail.ingest(&[&plain], false).unwrap();
    let bad = br#"{"actor":{"id":"x"}}"#.to_vec();
    let a = keyed("k.first", "key-after-bad");
    let after = br#"{"action":"k.after"}"#.to_vec();
    let done = trail.ingest(&[&bad, &bad, &a, &after], false).unwrap();
    assert!(matches!(done.items[0], Item::Rejected(_)), "{:?}", done.items);
    let Item::Stored {
        index,
        id,
        duplicate: false,
        ..
    } = done.items[2]
    else {
        panic!("{:?}", done.items)
    };
    assert_eq!(index, 1);
    let again = trail.ingest(&[&a], false).unwrap();
    let Item::Stored {
        index: original,
        id: original_id,
        duplicate: true,
        ..
    } = again.items[0]
    else {
        panic!("{:?}", again.items)
    };
    assert_eq!((original, original_id), (index, id));
    assert_eq!(trail.read(original).unwrap().event.action, "k.first");
}

#[test]
fn keys_survive_a_restart_before_the_index_ever_committed() {
    let env = env();
    // Events written to the ledger behind the index's back, as if the
    // process died after the append was acknowledged and before any
    // index commit.
    let entries: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            let text = keyed("crash.test", &format!("key-{i}"));
            let received: Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
            let id = sealtrail_event::event_id(received, [i as u8; 10]).unwrap();
            sealtrail_event::accept_json_entry(&text, received, id).unwrap().1
        })
        .collect();
    {
        let log = env.data.open_log("audit", LogOptions::default()).unwrap();
        log.append(&[b"a raw entry, not an event".as_slice()]).unwrap();
        log.append(&entries).unwrap();
    }
    let trail = open(&env);
    assert_eq!(trail.indexed(), 51, "caught up on open");
    assert_eq!(all(&trail), (1..=50).collect::<Vec<_>>());
    let resend = keyed("crash.test", "key-17");
    let done = trail.ingest(&[&resend], false).unwrap();
    assert!(matches!(
        done.items[0],
        Item::Stored {
            index: 18,
            duplicate: true,
            ..
        }
    ));
}

#[test]
fn racing_threads_store_each_key_once() {
    let env = env();
    let trail = Arc::new(open(&env));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let trail = trail.clone();
            std::thread::spawn(move || {
                let mut stored = Vec::new();
                for round in 0..25 {
                    let batch: Vec<Vec<u8>> = (0..8).map(|k| keyed("race", &format!("r{round}-k{k}"))).collect();
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    let done = trail.ingest(&refs, false).unwrap();
                    for item in done.items {
                        let Item::Stored { index, duplicate, .. } = item else {
                            panic!()
                        };
                        stored.push((index, duplicate, t));
                    }
                }
                stored
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let fresh: Vec<_> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    assert_eq!(fresh.len(), 25 * 8, "each key appended exactly once");
    assert_eq!(fresh.iter().collect::<HashSet<_>>().len(), fresh.len());
    assert_eq!(trail.log().size(), 200);
    // Every duplicate points at an index that holds its key.
    for (index, _, _) in &results {
        assert!(*index < 200);
    }
    assert_eq!(all(&trail).len(), 200);
}

#[test]
fn events_become_searchable_without_an_explicit_sync() {
    let env = env();
    let trail = Trail::open(
        &env.data,
        "audit",
        TrailOptions {
            visibility: Duration::from_millis(100),
            ..options()
        },
    )
    .unwrap();
    trail
        .ingest(&[br#"{"action":"soon.visible"}"#.as_slice()], false)
        .unwrap();
    let filter = Filter {
        action: Some("soon.*".into()),
        ..Filter::default()
    };
    let page = Page {
        order: Order::NewestFirst,
        limit: 10,
        after: None,
    };
    let started = Instant::now();
    while trail.query(&filter, &page).unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "never became searchable");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn jsonl_appends_good_lines_and_names_bad_ones() {
    let env = env();
    let trail = open(&env);
    let input = concat!(
        "{\"action\":\"line.one\"}\n",
        "\n",
        "{\"action\":\"line.three\",\"severity\":\"loud\"}\r\n",
        "{\"action\":\"line.four\"}\r\n",
        "{\"action\":\"line.five\",\n",
        "   \n",
        "{\"action\":\"line.seven\",\"duration_ms\":-1}\n",
        "{\"action\":\"line.eight\"}",
    );
    let report = trail.ingest_jsonl(input.as_bytes(), false).unwrap();
    assert_eq!(report.lines, 6);
    assert_eq!(report.appended, 3);
    assert_eq!((report.first, report.last), (Some(0), Some(2)));
    let errors: Vec<String> = report.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("line 3: severity: "), "{errors:?}");
    assert!(errors[1].starts_with("line 5, column "), "{errors:?}");
    assert!(errors[2].starts_with("line 7: duration_ms: "), "{errors:?}");
    let actions: Vec<String> = (0..3).map(|i| trail.read(i).unwrap().event.action).collect();
    assert_eq!(actions, ["line.one", "line.four", "line.eight"]);

    // --strict: the same input appends nothing, and still names every bad line.
    let strict = trail.ingest_jsonl(input.as_bytes(), true).unwrap();
    assert_eq!(strict.appended, 0);
    assert_eq!(strict.rejected.len(), 3);
    assert_eq!(trail.log().size(), 3);
}

#[test]
fn a_rebuilt_index_answers_like_the_incremental_one() {
    let env = env();
    let events: Vec<Vec<u8>> = sealtrail_testgen::events(11, 3000).collect();
    // Built over three sessions, each ending with a commit.
    for chunk in events.chunks(1000) {
        let trail = open(&env);
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        for part in refs.chunks(250) {
            let done = trail.ingest(part, false).unwrap();
            assert_eq!(done.appended() + duplicates(&done.items), part.len());
        }
    }
    let filters = sample_filters(&env);
    let before = answers(&env, &filters);
    let n = Trail::reindex(&env.data, "audit", &Default::default()).unwrap();
    assert_eq!(n, env.data.open_log("audit", LogOptions::default()).unwrap().size());
    assert_eq!(answers(&env, &filters), before);
}

fn duplicates(items: &[Item]) -> usize {
    items
        .iter()
        .filter(|i| matches!(i, Item::Stored { duplicate: true, .. }))
        .count()
}

/// Filters built from values that occur in the stored events.
fn sample_filters(env: &Env) -> Vec<Filter> {
    let trail = open(env);
    let a = trail.read(5).unwrap().event;
    let b = trail.read(1234).unwrap().event;
    let mut filters = vec![Filter::default()];
    for e in [&a, &b] {
        filters.push(Filter {
            action: Some(e.action.clone()),
            ..Filter::default()
        });
        if let Some(actor) = &e.actor {
            filters.push(Filter {
                actor: Some(actor.id.clone()),
                ..Filter::default()
            });
        }
        if let Some(t) = e.targets.as_ref().and_then(|t| t.first()) {
            filters.push(Filter {
                target_type: Some(t.kind.clone()),
                target_id: Some(t.id.clone()),
                ..Filter::default()
            });
        }
        if let Some(tenant) = &e.tenant {
            filters.push(Filter {
                tenant: Some(tenant.clone()),
                failures: true,
                ..Filter::default()
            });
        }
    }
    filters
}

fn answers(env: &Env, filters: &[Filter]) -> Vec<(Vec<u64>, u64)> {
    let trail = open(env);
    let page = Page {
        order: Order::NewestFirst,
        limit: 50,
        after: None,
    };
    filters
        .iter()
        .map(|f| {
            let hits = trail.query(f, &page).unwrap().into_iter().map(|x| x.index).collect();
            (hits, trail.count(f).unwrap())
        })
        .collect()
}

#[test]
fn an_index_of_another_history_is_rebuilt_on_open() {
    let env = env();
    {
        let trail = open(&env);
        let events: Vec<Vec<u8>> = sealtrail_testgen::events(5, 40).collect();
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        trail.ingest(&refs, false).unwrap();
    }
    // Swap in a ledger with fewer entries under the same index: the index
    // claims 40 entries the ledger does not hold.
    let log_dir = env.data.log_dir("audit");
    let index_dir = log_dir.join(sealtrail_trail::INDEX_DIR);
    let kept = env._tmp.path().join("kept-index");
    std::fs::rename(&index_dir, &kept).unwrap();
    std::fs::remove_dir_all(&log_dir).unwrap();
    env.data.create_log("audit", None).unwrap();
    std::fs::rename(&kept, &index_dir).unwrap();
    let trail = open(&env);
    trail.ingest(&[br#"{"action":"only.one"}"#.as_slice()], false).unwrap();
    assert_eq!(all(&trail), vec![0]);
    assert_eq!(trail.read(0).unwrap().event.action, "only.one");

    // A manifest this version did not write is also rebuilt, not refused.
    drop(trail);
    let manifest = index_dir.join("MANIFEST");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.starts_with("sealtrail-index 5\nwatermark 1\n"), "{text}");
    std::fs::write(&manifest, text.replace("watermark 1", "something else")).unwrap();
    let trail = open(&env);
    assert_eq!(trail.indexed(), 1);
    assert_eq!(all(&trail), vec![0]);

    // So is a segment that does not hold together, and an index of an
    // earlier version (tantivy's, before schema version 3).
    drop(trail);
    let segment = std::fs::read_dir(&index_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() / 2]).unwrap();
    let trail = open(&env);
    assert_eq!(all(&trail), vec![0]);
    drop(trail);
    std::fs::remove_dir_all(&index_dir).unwrap();
    std::fs::create_dir(&index_dir).unwrap();
    std::fs::write(
        index_dir.join("meta.json"),
        br#"{"payload":"sealtrail-index v2 watermark 1"}"#,
    )
    .unwrap();
    let trail = open(&env);
    assert_eq!(all(&trail), vec![0]);
    assert!(!index_dir.join("meta.json").exists());
}

#[test]
fn a_large_batch_validated_in_parallel_keeps_input_order() {
    let env = env();
    let trail = open(&env);
    let mut inputs: Vec<Vec<u8>> = sealtrail_testgen::events(21, 1500).collect();
    inputs[700] = b"{\"action\":false}".to_vec();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let done = trail.ingest(&refs, false).unwrap();
    assert_eq!(done.items.len(), 1500);
    assert!(matches!(&done.items[700], Item::Rejected(_)));
    for (position, item) in done.items.iter().enumerate() {
        if let Item::Stored {
            index,
            duplicate: false,
            ..
        } = item
        {
            let sent: serde_json::Value = serde_json::from_slice(&inputs[position]).unwrap();
            assert_eq!(
                trail.read(*index).unwrap().event.action,
                sent["action"].as_str().unwrap()
            );
        }
    }
}

/// Replace log `audit` with a fresh one holding `events`, indexed by its
/// own trail, and return the index directory's path.
fn fill_new_ledger(env: &Env, events: &[Vec<u8>]) -> std::path::PathBuf {
    let log_dir = env.data.log_dir("audit");
    if log_dir.exists() {
        std::fs::remove_dir_all(&log_dir).unwrap();
    }
    env.data.create_log("audit", None).unwrap();
    let trail = open(env);
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    trail.ingest(&refs, false).unwrap();
    drop(trail);
    log_dir.join(sealtrail_trail::INDEX_DIR)
}

/// Leave a file no index writes in `index_dir`: open keeps it, a
/// rebuild (which starts from an empty directory) does not.
fn mark(index_dir: &std::path::Path) -> std::path::PathBuf {
    let marker = index_dir.join("marker");
    std::fs::write(&marker, b"kept").unwrap();
    marker
}

/// Every search answers from the ledger it sits on: all events, and for
/// each actor exactly the events the ledger holds for it.
fn check_exact(trail: &Trail, size: u64) {
    assert_eq!(trail.indexed(), size);
    assert_eq!(all(trail), (0..size).collect::<Vec<_>>());
    let actors: Vec<Option<String>> = (0..size)
        .map(|i| trail.read(i).unwrap().event.actor.map(|a| a.id))
        .collect();
    for actor in actors.iter().flatten() {
        let filter = Filter {
            actor: Some(actor.clone()),
            ..Filter::default()
        };
        let page = Page {
            order: Order::OldestFirst,
            limit: 1000,
            after: None,
        };
        let hits: Vec<u64> = trail
            .query(&filter, &page)
            .unwrap()
            .into_iter()
            .map(|f| f.index)
            .collect();
        let expected: Vec<u64> = (0..size)
            .filter(|&i| actors[i as usize].as_ref() == Some(actor))
            .collect();
        assert_eq!(hits, expected, "actor {actor}");
    }
}

#[test]
fn an_index_of_another_history_no_longer_than_the_ledger_is_rebuilt_on_open() {
    let env = env();
    let first: Vec<Vec<u8>> = sealtrail_testgen::events(5, 40).collect();
    let second: Vec<Vec<u8>> = sealtrail_testgen::events(6, 40).collect();
    let shorter: Vec<Vec<u8>> = sealtrail_testgen::events(7, 25).collect();
    let kept = env._tmp.path().join("kept-index");
    let keep = |index_dir: &std::path::Path| {
        if kept.exists() {
            std::fs::remove_dir_all(&kept).unwrap();
        }
        std::fs::rename(index_dir, &kept).unwrap();
    };

    // Its own index is kept as it is, and records the ledger's root.
    let index_dir = fill_new_ledger(&env, &first);
    let manifest = std::fs::read_to_string(index_dir.join("MANIFEST")).unwrap();
    let root_line = manifest.lines().nth(2).unwrap();
    assert!(
        root_line.starts_with("root ") && root_line.len() == 5 + 64,
        "{manifest}"
    );
    let marker = mark(&index_dir);
    check_exact(&open(&env), 40);
    assert!(marker.exists(), "an index of this ledger is kept");

    // The same size, other events: the watermark fits, the root does not.
    keep(&index_dir);
    let index_dir = fill_new_ledger(&env, &second);
    std::fs::remove_dir_all(&index_dir).unwrap();
    std::fs::rename(&kept, &index_dir).unwrap();
    let reader = sealtrail_trail::TrailReader::open(&env.data, "audit");
    assert!(
        matches!(
            reader,
            Err(sealtrail_trail::TrailError::IndexOfAnotherHistory { indexed: 40 })
        ),
        "a reader refuses it"
    );
    let marker = mark(&index_dir);
    let trail = open(&env);
    assert!(!marker.exists(), "rebuilt");
    check_exact(&trail, 40);
    drop(trail);

    // A shorter history of other events, under a longer ledger.
    let index_dir = fill_new_ledger(&env, &shorter);
    keep(&index_dir);
    let index_dir = fill_new_ledger(&env, &second);
    std::fs::remove_dir_all(&index_dir).unwrap();
    std::fs::rename(&kept, &index_dir).unwrap();
    let marker = mark(&index_dir);
    let trail = open(&env);
    assert!(!marker.exists(), "rebuilt");
    check_exact(&trail, 40);
    drop(trail);

    // A manifest without a root (written before roots were recorded)
    // cannot show its history: rebuilt too, and the rebuild records one.
    let manifest = std::fs::read_to_string(index_dir.join("MANIFEST")).unwrap();
    let without: String = manifest
        .lines()
        .filter(|l| !l.starts_with("root "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, manifest);
    std::fs::write(index_dir.join("MANIFEST"), without).unwrap();
    let marker = mark(&index_dir);
    let trail = open(&env);
    assert!(!marker.exists(), "rebuilt");
    check_exact(&trail, 40);
    drop(trail);
    assert!(std::fs::read_to_string(index_dir.join("MANIFEST"))
        .unwrap()
        .contains("\nroot "));
}

/// A phrase of three or more words is checked against the events read
/// back from the ledger, by the trail and by a reader beside it.
#[test]
fn long_phrases_are_checked_against_the_ledger() {
    let env = env();
    let trail = open(&env);
    let inputs: Vec<&[u8]> = vec![
        br#"{"action":"disk.alert","message":"Disk is full on /var/log"}"#,
        br#"{"action":"disk.alert","message":"disk is not full; full is disk is"}"#,
        br#"{"action":"disk.alert","message":"is full","details":{"note":"disk is"}}"#,
    ];
    trail.ingest(&inputs, false).unwrap();
    trail.sync_index().unwrap();
    let text = |t: &str| Filter {
        text: Some(t.into()),
        ..Filter::default()
    };
    let hits = |found: Vec<sealtrail_trail::Found>| found.into_iter().map(|f| f.index).collect::<Vec<_>>();
    let page = Page::oldest(10);
    // Every pair of "disk is full" is in events 0 and 1; only 0 holds it.
    assert_eq!(hits(trail.query(&text(r#""disk is full""#), &page).unwrap()), [0]);
    assert_eq!(trail.count(&text(r#""disk is full""#)).unwrap(), 1);
    assert_eq!(hits(trail.query(&text(r#""disk is""#), &page).unwrap()), [0, 1, 2]);
    assert_eq!(hits(trail.query(&text("/var/log"), &page).unwrap()), [0]);
    drop(trail);
    let reader = sealtrail_trail::TrailReader::open(&env.data, "audit").unwrap();
    assert_eq!(hits(reader.query(&text(r#""DISK IS FULL""#), &page).unwrap()), [0]);
}
