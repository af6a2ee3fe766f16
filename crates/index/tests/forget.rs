//! Forgetting pruned entries: after `forget_below(n)` no search, count,
//! statistic or idempotency lookup sees an entry below `n`, across commits,
//! merges and reopening; read-only opens see the same; bad calls change
//! nothing. Expected answers are computed from the events themselves.
#![allow(clippy::unwrap_used)]

use sealtrail_event::{accept_json, event_id, Event, Timestamp};
use sealtrail_index::{Bucket, EventIndex, Filter, IndexError, IndexOptions, Page};

/// Events with an idempotency key each; entry `i` is received `i` seconds
/// after the start.
fn events(n: usize) -> Vec<Event> {
    let start = "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap().as_millisecond();
    sealtrail_testgen::events(11, n)
        .enumerate()
        .map(|(i, json)| {
            let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            v["idempotency_key"] = format!("key-{i}").into();
            let received = Timestamp::from_millisecond(start + 1000 * i as i64).unwrap();
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&(i as u64).to_be_bytes());
            accept_json(v.to_string().as_bytes(), received, event_id(received, random).unwrap()).unwrap()
        })
        .collect()
}

fn all(index: &EventIndex) -> Vec<u64> {
    let mut out = index.search(&Filter::default(), &Page::oldest(100_000)).unwrap();
    out.sort_unstable();
    out
}

#[test]
fn forgotten_entries_are_never_returned_nor_counted() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(700);
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    // Many small commits, so that segments straddle the boundary and a
    // merge runs.
    for (c, chunk) in evs.chunks(37).enumerate() {
        index.add_events((c * 37) as u64, chunk).unwrap();
        index.commit().unwrap();
    }
    index.wait_for_merges().unwrap();
    assert_eq!(index.forgotten(), 0);
    assert_eq!(all(&index), (0..700).collect::<Vec<u64>>());

    index.forget_below(512).unwrap();
    assert_eq!(index.forgotten(), 512);
    let kept: Vec<u64> = (512..700).collect();
    assert_eq!(all(&index), kept);
    let newest = index.search(&Filter::default(), &Page::newest(1000)).unwrap();
    assert_eq!(newest, kept.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(index.count(&Filter::default()).unwrap(), 188);

    // By action, the expected counts come from the events themselves.
    let action = evs[600].action.clone();
    let expected = (512..700).filter(|&i| evs[i].action == action).count() as u64;
    let filter = Filter {
        action: Some(action.clone()),
        ..Filter::default()
    };
    assert_eq!(index.count(&filter).unwrap(), expected);
    let stats = index.stats(&Filter::default(), Bucket::Hour).unwrap();
    assert_eq!(stats.total, 188);
    let by_action = stats.by_action.iter().find(|(a, _)| *a == action).unwrap().1;
    assert_eq!(by_action, expected);
    let mut seen = Vec::new();
    index
        .for_each(&Filter::default(), |i| {
            seen.push(i);
            true
        })
        .unwrap();
    assert_eq!(seen, kept);

    // A received-time range that covers only forgotten entries finds none.
    let start = evs[0].received_at;
    let filter = Filter {
        received: sealtrail_index::TimeRange {
            since: Some(start),
            until: Some(evs[400].received_at),
        },
        ..Filter::default()
    };
    assert_eq!(index.count(&filter).unwrap(), 0);

    // Idempotency keys go with their events.
    assert_eq!(index.find_idempotency_key("key-3").unwrap(), None);
    assert_eq!(index.find_idempotency_key("key-600").unwrap(), Some(600));

    // Forgetting less changes nothing; past the watermark is refused.
    index.forget_below(256).unwrap();
    assert_eq!(index.forgotten(), 512);
    let err = index.forget_below(701).unwrap_err();
    assert!(
        matches!(err, IndexError::ForgetPastWatermark { n: 701, watermark: 700 }),
        "{err}"
    );
    assert_eq!(index.forgotten(), 512);

    // More commits keep the boundary; a read-only open and a reopen see it.
    let more = events(800);
    index.add_events(700, &more[700..]).unwrap();
    index.commit().unwrap();
    assert_eq!(all(&index), (512..800).collect::<Vec<u64>>());
    let reader = EventIndex::open_read_only(dir.path(), IndexOptions::default()).unwrap();
    assert_eq!(reader.forgotten(), 512);
    assert_eq!(reader.count(&Filter::default()).unwrap(), 288);
    assert!(matches!(reader.forget_below(768), Err(IndexError::ReadOnly(_))));
    drop(reader);
    drop(index);
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    assert_eq!(index.forgotten(), 512);
    assert_eq!(all(&index), (512..800).collect::<Vec<u64>>());
    let manifest = std::fs::read_to_string(dir.path().join("MANIFEST")).unwrap();
    assert!(manifest.lines().any(|l| l == "forgotten 512"), "{manifest}");
}

#[test]
fn a_bad_forgotten_line_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    index.add_events(0, &events(10)).unwrap();
    index.commit().unwrap();
    drop(index);
    let path = dir.path().join("MANIFEST");
    let text = std::fs::read_to_string(&path).unwrap();
    for bad in ["forgotten 11", "forgotten 0", "forgotten x", "forgotten"] {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, bad);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = EventIndex::open_read_only(dir.path(), IndexOptions::default())
            .err()
            .unwrap();
        assert!(matches!(&err, IndexError::BadManifest { line: 3, .. }), "{bad}: {err}");
    }
}

/// The ledger indices the index's segment files hold, read from the files
/// the manifest names (column 0 is the ledger index,
/// docs/index-segments.md), and how many segment files the directory holds.
fn held(dir: &std::path::Path) -> (Vec<u64>, usize) {
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    let mut out = Vec::new();
    for line in manifest.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        if words[0] != "segment" {
            continue;
        }
        let segment = sealtrail_segment::Segment::open(std::fs::read(dir.join(words[1])).unwrap()).unwrap();
        let column = segment.column(0).unwrap();
        for b in 0..column.blocks() {
            let mut values = Vec::new();
            column.block(b, &mut values).unwrap();
            out.extend(values);
        }
    }
    let files = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
        .count();
    (out, files)
}

#[test]
fn forgotten_documents_leave_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(700);
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    // Seven segments of 100 (too few to merge).
    for (c, chunk) in evs.chunks(100).enumerate() {
        index.add_events((c * 100) as u64, chunk).unwrap();
        index.commit().unwrap();
    }
    index.wait_for_merges().unwrap();
    assert_eq!(held(dir.path()), ((0..700).collect(), 7));

    // Segments of forgotten documents only are dropped; the one the
    // boundary cuts, 12 of its 100 forgotten, is kept whole for now.
    index.forget_below(512).unwrap();
    index.wait_for_merges().unwrap();
    assert_eq!(held(dir.path()), ((500..700).collect(), 2));
    assert_eq!(all(&index), (512..700).collect::<Vec<u64>>());

    // 30 of its 100 forgotten: it is rewritten without them.
    index.forget_below(530).unwrap();
    index.wait_for_merges().unwrap();
    assert_eq!(held(dir.path()), ((530..700).collect(), 2));
    assert_eq!(all(&index), (530..700).collect::<Vec<u64>>());
    assert_eq!(index.find_idempotency_key("key-529").unwrap(), None);
    assert_eq!(index.find_idempotency_key("key-530").unwrap(), Some(530));
    let action = evs[650].action.clone();
    let filter = Filter {
        action: Some(action.clone()),
        ..Filter::default()
    };
    let expected = (530..700).filter(|&i| evs[i].action == action).count() as u64;
    assert_eq!(index.count(&filter).unwrap(), expected);

    // Commits go on after it; a reopen reads the rewritten segments.
    let more = events(800);
    index.add_events(700, &more[700..]).unwrap();
    index.commit().unwrap();
    drop(index);
    let index = EventIndex::open(dir.path(), IndexOptions::default()).unwrap();
    assert_eq!(all(&index), (530..800).collect::<Vec<u64>>());
    assert_eq!(held(dir.path()).0, (530..800).collect::<Vec<u64>>());
}
