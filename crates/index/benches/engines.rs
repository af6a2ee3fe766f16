//! Evidence for the query engine: the same generated events indexed into
//! (a) this crate's index (`sealtrail-segment` segments) and (b) SQLite with
//! B-tree indexes on the same fields and an FTS5 table for the text, then
//! the same first-page queries timed on both and their answers compared.
//! Baselines in the same run: `serde_json` parsing the same events, and the
//! event crate's `accept_json`.
//!
//! ```text
//! cargo bench -p sealtrail-index --bench engines
//! SEALTRAIL_BENCH_EVENTS=200000 cargo bench -p sealtrail-index --bench engines
//! ```
//!
//! Knobs: `SEALTRAIL_BENCH_EVENTS` (default 1,000,000),
//! `SEALTRAIL_BENCH_QUERIES` per kind (default 200),
//! `SEALTRAIL_BENCH_WRITER_MB` (the index's [`IndexOptions::writer_memory`]),
//! `SEALTRAIL_BENCH_COMMIT_EVERY` (commit after every this many events, as a
//! trail's indexer does every half second; default 0, once at the end),
//! `SEALTRAIL_BENCH_SQLITE=0` to skip SQLite. Progress goes to stderr, the
//! table to stdout.
//!
//! Until commit 56f579f this bench also ran tantivy, the index's engine
//! then; ARCHITECTURE.md and BENCHMARKS.md keep those figures.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use sealtrail_event::{accept_json, event_id, Event, Timestamp};
use sealtrail_index::{EventIndex, EventSource, Filter, IndexOptions, Page, SourceError, TimeRange};
use sealtrail_testgen::{process_cpu_secs, Rng};

/// A setting from the environment; a value that does not parse stops the
/// bench with a message rather than running with the default unnoticed.
fn knob(name: &str, default: usize) -> usize {
    sealtrail_testgen::knob("engines", name, default)
}

/// One query of each kind, as values both engines take.
enum Query {
    Actor(String),
    Target(String, String),
    ActionTime(String, Timestamp, Timestamp),
    /// As the events bench asks: a namespace glob (`lead.*`) three times in
    /// four, else an exact action, in a window of 1 to 48 hours.
    GlobTime(String, Timestamp, Timestamp),
    Text(String),
    /// A quoted run of two or three consecutive words of a message (not
    /// asked of SQLite, whose FTS5 table keeps no positions).
    Phrase(String),
}

impl Query {
    fn kind(&self) -> &'static str {
        match self {
            Query::Actor(_) => "actor",
            Query::Target(..) => "target",
            Query::ActionTime(..) => "action + time range",
            Query::GlobTime(..) => "action glob + 1-48 h",
            Query::Text(_) => "full text (1 word)",
            Query::Phrase(p) if p.split(' ').count() == 2 => "phrase (2 words)",
            Query::Phrase(_) => "phrase (3 words)",
        }
    }

    fn filter(&self) -> Filter {
        match self {
            Query::Actor(a) => Filter {
                actor: Some(a.clone()),
                ..Filter::default()
            },
            Query::Target(t, i) => Filter {
                target_type: Some(t.clone()),
                target_id: Some(i.clone()),
                ..Filter::default()
            },
            Query::ActionTime(a, s, u) | Query::GlobTime(a, s, u) => Filter {
                action: Some(a.clone()),
                occurred: TimeRange {
                    since: Some(*s),
                    until: Some(*u),
                },
                ..Filter::default()
            },
            Query::Text(w) | Query::Phrase(w) => Filter {
                text: Some(w.clone()),
                ..Filter::default()
            },
        }
    }
}

/// Query values drawn from random events, so popular values are drawn
/// as often as they occur.
fn queries(events: &[Event], per_kind: usize) -> Vec<Query> {
    let mut rng = Rng::new(42);
    let mut out = Vec::new();
    let (first, last) = (events[0].occurred_at, events[events.len() - 1].occurred_at);
    let span = last.as_second() - first.as_second();
    while out.iter().filter(|q| matches!(q, Query::Actor(_))).count() < per_kind {
        if let Some(a) = &events[rng.index(events.len())].actor {
            out.push(Query::Actor(a.id.clone()));
        }
    }
    while out.iter().filter(|q| matches!(q, Query::Target(..))).count() < per_kind {
        if let Some(t) = events[rng.index(events.len())].targets.as_ref().and_then(|t| t.first()) {
            out.push(Query::Target(t.kind.clone(), t.id.clone()));
        }
    }
    for _ in 0..per_kind {
        // A window of a sixth of the span, anywhere in it.
        let e = &events[rng.index(events.len())];
        let since = first.as_second() + rng.index((span - span / 6).max(1) as usize) as i64;
        let since = Timestamp::from_second(since).unwrap();
        let until = Timestamp::from_second(since.as_second() + span / 6).unwrap();
        out.push(Query::ActionTime(e.action.clone(), since, until));
    }
    for _ in 0..per_kind {
        let e = &events[rng.index(events.len())];
        let glob = if rng.index(4) == 0 {
            e.action.clone()
        } else {
            format!("{}.*", e.action.split('.').next().unwrap_or(&e.action))
        };
        let window_us = (3600 + rng.index(47 * 3600)) as i64 * 1_000_000;
        let until_us = e.occurred_at.as_microsecond() + (rng.index(1000) as i64 * window_us / 1000);
        let since = Timestamp::from_microsecond(until_us - window_us).unwrap();
        let until = Timestamp::from_microsecond(until_us).unwrap();
        out.push(Query::GlobTime(glob, since, until));
    }
    while out.iter().filter(|q| matches!(q, Query::Text(_))).count() < per_kind {
        if let Some(m) = &events[rng.index(events.len())].message {
            let words: Vec<&str> = m
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() > 2)
                .collect();
            if !words.is_empty() {
                out.push(Query::Text(words[rng.index(words.len())].to_lowercase()));
            }
        }
    }
    for len in [2, 3] {
        let mut n = 0;
        while n < per_kind {
            let Some(m) = &events[rng.index(events.len())].message else {
                continue;
            };
            let words: Vec<&str> = m
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            if words.len() >= len {
                let start = rng.index(words.len() - len + 1);
                out.push(Query::Phrase(format!("\"{}\"", words[start..start + len].join(" "))));
                n += 1;
            }
        }
    }
    out
}

/// The bench's events, read back by ledger index for long phrases.
struct Events(std::sync::Arc<Vec<Event>>);

impl EventSource for Events {
    fn event(&self, index: u64) -> Result<Option<Event>, SourceError> {
        Ok(self.0.get(index as usize).cloned())
    }
}

fn text_of(e: &Event) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.push_str(k);
                out.push(' ');
                walk(v, out);
            }),
            _ => {}
        }
    }
    let mut out = String::new();
    let err = e.error.as_ref();
    for s in e
        .message
        .iter()
        .chain(err.and_then(|x| x.kind.as_ref()))
        .chain(err.and_then(|x| x.message.as_ref()))
    {
        out.push_str(s);
        out.push(' ');
    }
    if let Some(d) = &e.details {
        walk(&serde_json::Value::Object(d.clone()), &mut out);
    }
    out
}

fn sqlite_load(path: &Path, events: &[Event]) -> Connection {
    let db = Connection::open(path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144;
         CREATE TABLE events (ledger INTEGER PRIMARY KEY, action TEXT NOT NULL, actor TEXT, tenant TEXT,
           workflow TEXT, service TEXT, outcome INTEGER, severity INTEGER NOT NULL, ip TEXT, session TEXT,
           occurred INTEGER NOT NULL, received INTEGER NOT NULL, duration REAL, failure INTEGER NOT NULL,
           idempotency_key TEXT);
         CREATE TABLE targets (ledger INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL);
         CREATE INDEX events_action ON events (action);
         CREATE INDEX events_actor ON events (actor);
         CREATE INDEX events_tenant ON events (tenant);
         CREATE INDEX events_workflow ON events (workflow);
         CREATE INDEX events_service ON events (service);
         CREATE INDEX events_outcome ON events (outcome);
         CREATE INDEX events_severity ON events (severity);
         CREATE INDEX events_ip ON events (ip);
         CREATE INDEX events_session ON events (session);
         CREATE INDEX events_occurred ON events (occurred);
         CREATE INDEX events_received ON events (received);
         CREATE INDEX events_failure ON events (failure);
         CREATE INDEX events_idempotency ON events (idempotency_key);
         CREATE INDEX targets_pair ON targets (type, id, ledger);
         CREATE INDEX targets_id ON targets (id, ledger);
         CREATE VIRTUAL TABLE words USING fts5 (text, content = '', detail = none);",
    )
    .unwrap();
    let ns = |t: Timestamp| i64::try_from(t.as_nanosecond()).unwrap();
    for chunk in events.chunks(100_000).enumerate() {
        let (c, chunk) = chunk;
        let tx = db.unchecked_transaction().unwrap();
        {
            let mut ev = tx
                .prepare_cached("INSERT INTO events VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)")
                .unwrap();
            let mut tg = tx.prepare_cached("INSERT INTO targets VALUES (?1, ?2, ?3)").unwrap();
            let mut fts = tx
                .prepare_cached("INSERT INTO words (rowid, text) VALUES (?1, ?2)")
                .unwrap();
            for (i, e) in chunk.iter().enumerate() {
                let ledger = (c * 100_000 + i) as i64;
                let source = e.source.clone().unwrap_or_default();
                let context = e.context.clone().unwrap_or_default();
                ev.execute(params![
                    ledger,
                    e.action,
                    e.actor.as_ref().map(|a| &a.id),
                    e.tenant,
                    source.workflow,
                    source.service,
                    e.outcome.map(|o| o as i64),
                    e.severity as i64,
                    context.ip.map(|ip| ip.to_string()),
                    context.session_id,
                    ns(e.occurred_at),
                    ns(e.received_at),
                    e.duration_ms,
                    e.outcome == Some(sealtrail_event::Outcome::Failure)
                        || e.severity >= sealtrail_event::Severity::Error
                        || e.error.is_some(),
                    e.idempotency_key,
                ])
                .unwrap();
                for t in e.targets.iter().flatten() {
                    tg.execute(params![ledger, t.kind, t.id]).unwrap();
                }
                let text = text_of(e);
                if !text.is_empty() {
                    fts.execute(params![ledger, text]).unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    db
}

fn sqlite_query(db: &Connection, q: &Query) -> Vec<u64> {
    let ns = |t: &Timestamp| i64::try_from(t.as_nanosecond()).unwrap();
    let rows = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Vec<u64> {
        let mut st = db.prepare_cached(sql).unwrap();
        st.query_map(p, |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|v| v.unwrap() as u64)
            .collect()
    };
    match q {
        Query::Actor(a) => rows(
            "SELECT ledger FROM events WHERE actor = ?1 ORDER BY ledger DESC LIMIT 100",
            &[a],
        ),
        Query::Target(t, i) => rows(
            "SELECT DISTINCT ledger FROM targets WHERE type = ?1 AND id = ?2 ORDER BY ledger DESC LIMIT 100",
            &[t, i],
        ),
        Query::ActionTime(a, s, u) => rows(
            "SELECT ledger FROM events WHERE action = ?1 AND occurred >= ?2 AND occurred < ?3
             ORDER BY ledger DESC LIMIT 100",
            &[a, &ns(s), &ns(u)],
        ),
        Query::GlobTime(a, s, u) => rows(
            "SELECT ledger FROM events WHERE action GLOB ?1 AND occurred >= ?2 AND occurred < ?3
             ORDER BY ledger DESC LIMIT 100",
            &[a, &ns(s), &ns(u)],
        ),
        Query::Text(w) => rows(
            "SELECT rowid FROM words WHERE words MATCH ?1 ORDER BY rowid DESC LIMIT 100",
            &[&format!("\"{w}\"")],
        ),
        Query::Phrase(_) => Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(p * sorted.len()).div_ceil(100).max(1) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn main() {
    let n = knob("SEALTRAIL_BENCH_EVENTS", 1_000_000);
    let per_kind = knob("SEALTRAIL_BENCH_QUERIES", 200);
    let defaults = IndexOptions::default();
    let opts = IndexOptions {
        writer_memory: knob("SEALTRAIL_BENCH_WRITER_MB", defaults.writer_memory >> 20) << 20,
    };
    let with_sqlite = knob("SEALTRAIL_BENCH_SQLITE", 1) != 0;
    let commit_every = knob("SEALTRAIL_BENCH_COMMIT_EVERY", 0);
    let tmp = tempfile::tempdir().unwrap();

    eprintln!("generating {n} events");
    let lines: Vec<Vec<u8>> = sealtrail_testgen::events(1, n).collect();
    let bytes: usize = lines.iter().map(Vec::len).sum();

    let cpu = process_cpu_secs();
    let t = Instant::now();
    for l in &lines {
        black_box(serde_json::from_slice::<serde_json::Value>(l).unwrap());
    }
    let parse = t.elapsed();
    let parse_cpu = process_cpu_secs() - cpu;

    let start = Timestamp::from_second(1_767_225_600).unwrap().as_millisecond();
    let (t, cpu) = (Instant::now(), process_cpu_secs());
    let events: Vec<Event> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let received = Timestamp::from_millisecond(start + i as i64 / 20).unwrap();
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&(i as u64).to_be_bytes());
            accept_json(l, received, event_id(received, random).unwrap()).unwrap()
        })
        .collect();
    let accept = t.elapsed();
    let accept_cpu = process_cpu_secs() - cpu;
    drop(lines);

    eprintln!("sealtrail index: indexing");
    let dir = tmp.path().join("index");
    let cpu = process_cpu_secs();
    let t = Instant::now();
    let index = EventIndex::open(&dir, opts).unwrap();
    for (i, e) in events.iter().enumerate() {
        index.add(i as u64, Some(e)).unwrap();
        if commit_every > 0 && i % commit_every == commit_every - 1 {
            index.commit().unwrap();
        }
    }
    let adds = t.elapsed();
    index.commit().unwrap();
    let index_load = t.elapsed();
    let index_cpu = process_cpu_secs() - cpu;
    let index_bytes = dir_bytes(&dir);
    eprintln!(
        "  adds {:.2} s, commit {:.2} s, {} segment files",
        adds.as_secs_f64(),
        (index_load - adds).as_secs_f64(),
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
    );

    let qs = queries(&events, per_kind);
    let events = std::sync::Arc::new(events);
    index.set_event_source(std::sync::Arc::new(Events(events.clone())));
    let mut sqlite = None;
    let mut sqlite_load_time = Duration::ZERO;
    let mut sqlite_bytes = 0;
    let mut sqlite_cpu = 0.0;
    if with_sqlite {
        eprintln!("sqlite: loading");
        let path = tmp.path().join("events.sqlite");
        let (t, cpu) = (Instant::now(), process_cpu_secs());
        sqlite = Some(sqlite_load(&path, &events));
        sqlite_load_time = t.elapsed();
        sqlite_cpu = process_cpu_secs() - cpu;
        sqlite_bytes = dir_bytes(tmp.path());
    }

    let rate = |d: Duration| format!("{:.0}", n as f64 / d.as_secs_f64());
    println!(
        "## Index engines, {n} events ({:.0} bytes of JSON each), 100 newest first\n",
        bytes as f64 / n as f64
    );
    println!(
        "index writer: {} MiB, commit every {} events\n",
        opts.writer_memory >> 20,
        if commit_every == 0 { n } else { commit_every }
    );
    let us = |cpu: f64| cpu * 1e6 / n as f64;
    println!("| load | events/s (wall) | CPU µs/event (all threads) | CPU ratio to serde_json parse | on disk (MB) |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, wall: Duration, cpu: f64, bytes: Option<u64>| {
        let disk = bytes.map_or(String::new(), |b| format!("{:.0}", b as f64 / 1e6));
        println!(
            "| {name} | {} | {:.2} | {:.2} | {disk} |",
            rate(wall),
            us(cpu),
            cpu / parse_cpu
        );
    };
    row("serde_json::from_slice::<Value> (baseline)", parse, parse_cpu, None);
    row("sealtrail_event::accept_json", accept, accept_cpu, None);
    row(
        "sealtrail index (this crate: add + commit)",
        index_load,
        index_cpu,
        Some(index_bytes),
    );
    if with_sqlite {
        row(
            "SQLite (B-trees + FTS5)",
            sqlite_load_time,
            sqlite_cpu,
            Some(sqlite_bytes),
        );
    }
    println!();
    println!("| query ({per_kind} each) | index p50 ms | index p99 ms | SQLite p50 ms | SQLite p99 ms | mean hits | answers differ |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for kind in [
        "actor",
        "target",
        "action + time range",
        "action glob + 1-48 h",
        "full text (1 word)",
        "phrase (2 words)",
        "phrase (3 words)",
    ] {
        let (mut tt, mut st) = (Vec::new(), Vec::new());
        let (mut hits, mut differ) = (0, 0);
        for q in qs.iter().filter(|q| q.kind() == kind) {
            let filter = q.filter();
            let t = Instant::now();
            let got = index.search(&filter, &Page::newest(100)).unwrap();
            tt.push(t.elapsed());
            hits += got.len();
            if let (Some(db), false) = (&sqlite, matches!(q, Query::Phrase(_))) {
                let t = Instant::now();
                let want = sqlite_query(db, q);
                st.push(t.elapsed());
                differ += usize::from(got != want);
            }
        }
        tt.sort();
        st.sort();
        let (s50, s99, differ) = if st.is_empty() {
            ("-".into(), "-".into(), "-".into())
        } else {
            (ms(percentile(&st, 50)), ms(percentile(&st, 99)), differ.to_string())
        };
        println!(
            "| {kind} | {} | {} | {s50} | {s99} | {:.0} | {differ} |",
            ms(percentile(&tt, 50)),
            ms(percentile(&tt, 99)),
            hits as f64 / tt.len() as f64
        );
    }
    let t = Instant::now();
    let stats = index.stats(&Filter::default(), sealtrail_index::Bucket::Hour).unwrap();
    let stats_time = t.elapsed();
    let t = Instant::now();
    let perf = index.performance(&Filter::default()).unwrap();
    let perf_time = t.elapsed();
    let t = Instant::now();
    let failures = index
        .count(&Filter {
            failures: true,
            ..Filter::default()
        })
        .unwrap();
    let count_time = t.elapsed();
    println!();
    println!("| index aggregate over all {} events | ms |", stats.total);
    println!("|---|---:|");
    println!("| stats (by action, actor, outcome, hour) | {} |", ms(stats_time));
    println!(
        "| performance ({} actions, exact percentiles) | {} |",
        perf.len(),
        ms(perf_time)
    );
    println!("| count failures ({failures}) | {} |", ms(count_time));
}
