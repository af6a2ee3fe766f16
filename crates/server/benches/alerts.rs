//! Alert rules beside ingest: ingest with 20 active alert rules against ingest
//! with none, in the same run, on the same events.
//!
//! ```text
//! cargo bench -p sealtrail-server --bench alerts
//! SEALTRAIL_BENCH_EVENTS=400000 SEALTRAIL_BENCH_ROUNDS=3 cargo bench -p sealtrail-server --bench alerts
//! ```
//!
//! Each round runs both configurations, alternating which goes first, each
//! on a fresh data directory: an `App` (the server's state, as
//! `sealtrail serve` builds it) with the alert evaluator on its own thread
//! exactly as the server runs it, and `BATCH`-event `Trail::ingest` calls
//! from 2 threads into the default log. The baseline is the same
//! configuration with no rule. Reported: ingest rate (acknowledged, durable
//! events per second), the ratio with rules / without (goal ≥ 0.90), and
//! how long after the last acknowledgement the evaluator had seen every
//! event, with its overall rate.
//!
//! The 20 rules are a mix of every condition type, most grouped by actor
//! or tenant, with filters that match from a few percent to every event;
//! they have no channel, so the cost measured is evaluation and the
//! alerts' records, not HTTP.
//!
//! Knobs: `SEALTRAIL_BENCH_EVENTS` (200,000), `SEALTRAIL_BENCH_BATCH`
//! (1,000), `SEALTRAIL_BENCH_ROUNDS` (2), `SEALTRAIL_BENCH_SEED` (1),
//! `SEALTRAIL_BENCH_DIR` (`target/bench-tmp`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_alert::RuleSpec;
use sealtrail_loadgen::Events;
use sealtrail_server::{App, Config};
use sealtrail_trail::Item;
use serde_json::json;

fn knob<T: FromStr>(name: &str, default: T) -> T {
    sealtrail_testgen::knob("alerts", name, default)
}

fn rules() -> Vec<RuleSpec> {
    let specs = vec![
        json!({"name": "any-deleted", "condition": {"type": "any"}, "filter": {"action": "*.deleted"}, "group_by": ["actor.id"], "cooldown": "1m"}),
        json!({"name": "any-key-revoked", "condition": {"type": "any"}, "filter": {"action": "api_key.revoked"}}),
        json!({"name": "any-critical", "condition": {"type": "any"}, "filter": {"severity": "critical"}, "cooldown": "10s"}),
        json!({"name": "any-export", "condition": {"type": "any"}, "filter": {"action": "report.exported", "outcome": "success"}, "group_by": ["tenant"], "cooldown": "5m"}),
        json!({"name": "brute-force", "condition": {"type": "frequency", "threshold": 5, "window": "5m"}, "filter": {"action": "user.login_failed"}, "group_by": ["actor.id"]}),
        json!({"name": "payment-failures", "condition": {"type": "frequency", "threshold": 20, "window": "1m"}, "filter": {"action": "payment.*", "outcome": "failure"}, "group_by": ["tenant"]}),
        json!({"name": "busy-actor", "condition": {"type": "frequency", "threshold": 1000, "window": "1m"}, "group_by": ["actor.id"]}),
        json!({"name": "errors", "condition": {"type": "frequency", "threshold": 50, "window": "1m"}, "filter": {"severity": "error"}}),
        json!({"name": "view-spike", "condition": {"type": "spike", "window": "1m", "factor": 3.0, "min_count": 100}, "filter": {"action": "*.viewed"}, "group_by": ["tenant"]}),
        json!({"name": "login-spike", "condition": {"type": "spike", "window": "5m", "factor": 2.0, "min_count": 50}, "filter": {"action": "user.login"}}),
        json!({"name": "invoice-spike", "condition": {"type": "spike", "window": "1m", "factor": 4.0}, "filter": {"action": "invoice.*"}, "group_by": ["actor.id"]}),
        json!({"name": "scheduler-heartbeat", "condition": {"type": "flatline", "threshold": 1, "window": "5m"}, "filter": {"actor": "sys-scheduler"}}),
        json!({"name": "tenant-quiet", "condition": {"type": "flatline", "threshold": 10, "window": "10m"}, "group_by": ["tenant"]}),
        json!({"name": "billing-quiet", "condition": {"type": "flatline", "threshold": 1, "window": "1m"}, "filter": {"service": "billing-api"}}),
        json!({"name": "new-ip", "condition": {"type": "new_value", "field": "context.ip"}, "filter": {"action": "user.login"}, "group_by": ["actor.id"]}),
        json!({"name": "new-action-per-tenant", "condition": {"type": "new_value", "field": "action"}, "group_by": ["tenant"]}),
        json!({"name": "new-service", "condition": {"type": "new_value", "field": "source.service"}}),
        json!({"name": "many-ips", "condition": {"type": "cardinality", "field": "context.ip", "threshold": 3, "window": "10m"}, "group_by": ["actor.id"]}),
        json!({"name": "many-targets", "condition": {"type": "cardinality", "field": "target.id", "threshold": 200, "window": "1m"}, "filter": {"action": "*.viewed"}, "group_by": ["actor.id"]}),
        json!({"name": "many-sessions", "condition": {"type": "cardinality", "field": "context.session_id", "threshold": 50, "window": "5m"}, "group_by": ["tenant"]}),
    ];
    specs.into_iter().map(|s| serde_json::from_value(s).unwrap()).collect()
}

struct Outcome {
    /// Microseconds per event to parse every stored entry, and to parse
    /// and evaluate it, on one thread with nothing else running.
    parse_us: f64,
    evaluate_us: f64,
    ingest_secs: f64,
    /// From the last acknowledgement until the evaluator had seen everything.
    catch_up_secs: f64,
    alerts: usize,
}

fn run(dir: &Path, events: &Events, batch: usize, rules: &[RuleSpec]) -> Outcome {
    let _ = std::fs::remove_dir_all(dir);
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.alerts.rules = rules.to_vec();
    let app = App::open(config).unwrap();
    let trail = app.trail("default").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    // The server's evaluator loop, with its progress made visible.
    let evaluator = {
        let (app, stop, seen) = (app.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            sealtrail_server::alerts::run_evaluator(
                app,
                || stop.load(Ordering::Relaxed),
                |e| seen.store(e.next_index("default").unwrap_or(0), Ordering::Relaxed),
            )
        })
    };
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= events.len() {
                    break;
                }
                let inputs: Vec<&[u8]> = (first..(first + batch).min(events.len()))
                    .map(|i| events.get(i))
                    .collect();
                let done = trail.ingest(&inputs, false).unwrap();
                assert!(done.items.iter().all(|i| matches!(i, Item::Stored { .. })));
            });
        }
    });
    let ingest_secs = t.elapsed().as_secs_f64();
    let acked = Instant::now();
    let total = events.len() as u64;
    let deadline = acked + Duration::from_secs(600);
    // With no rule the evaluator skips ahead without reading; either way it
    // must reach the end.
    while seen.load(Ordering::Relaxed) < total {
        assert!(Instant::now() < deadline, "the evaluator did not catch up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let catch_up_secs = acked.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    evaluator.join().unwrap();
    let alerts = sealtrail_alert::store::list_alerts(&app.meta.lock(), false, usize::MAX >> 1, None)
        .unwrap()
        .len();
    let (parse_us, evaluate_us) = evaluation_alone(&trail, rules);
    drop(trail);
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
    Outcome {
        parse_us,
        evaluate_us,
        ingest_secs,
        catch_up_secs,
        alerts,
    }
}

/// Parse every stored entry, then parse and evaluate them with `rules` on
/// a fresh state: microseconds per event of each.
fn evaluation_alone(trail: &sealtrail_trail::Trail, rules: &[RuleSpec]) -> (f64, f64) {
    let size = trail.log().size();
    let mut entries = Vec::with_capacity(size as usize);
    let mut first = 0;
    while first < size {
        let n = (size - first).min(4096);
        entries.extend(trail.log().entries(first, n).unwrap());
        first += n;
    }
    let t = Instant::now();
    for e in &entries {
        std::hint::black_box(sealtrail_event::parse_entry(e).unwrap());
    }
    let parse = t.elapsed().as_secs_f64();
    let engine = sealtrail_alert::engine::Engine::new(rules);
    let mut state = sealtrail_alert::engine::LogState::default();
    let t = Instant::now();
    for (i, e) in entries.iter().enumerate() {
        let event = sealtrail_event::parse_entry(e).unwrap();
        std::hint::black_box(engine.observe(&mut state, "default", i as u64, &event));
    }
    let evaluate = t.elapsed().as_secs_f64();
    let per = |secs: f64| secs * 1e6 / size.max(1) as f64;
    (per(parse), per(evaluate))
}

fn main() {
    let count = knob("SEALTRAIL_BENCH_EVENTS", 200_000usize).max(1);
    let batch = knob("SEALTRAIL_BENCH_BATCH", 1000usize).max(1);
    let rounds = knob("SEALTRAIL_BENCH_ROUNDS", 2usize).max(1);
    let seed = knob("SEALTRAIL_BENCH_SEED", 1u64);
    let root = std::env::var_os("SEALTRAIL_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp"),
        PathBuf::from,
    );
    let dir = root.join(format!("alerts-{}", std::process::id()));
    eprintln!("alerts bench: generating {count} events");
    let events = Events::generate(seed, count);
    let rules = rules();
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..rounds {
        let order: [bool; 2] = if round % 2 == 0 { [false, true] } else { [true, false] };
        for with_rules in order {
            let r = run(&dir, &events, batch, if with_rules { &rules } else { &[] });
            eprintln!(
                "round {round}: {} rules: ingest {:.0}/s, evaluator caught up {:.2} s after, {} alerts",
                if with_rules { rules.len() } else { 0 },
                count as f64 / r.ingest_secs,
                r.catch_up_secs,
                r.alerts
            );
            if with_rules { &mut with } else { &mut without }.push(r);
        }
    }
    let median = |runs: &[Outcome], f: &dyn Fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rate = |runs: &[Outcome]| median(runs, &|r| count as f64 / r.ingest_secs);
    let (base, loaded) = (rate(&without), rate(&with));
    let catch_up = median(&with, &|r| r.catch_up_secs);
    let eval_rate = median(&with, &|r| count as f64 / (r.ingest_secs + r.catch_up_secs));
    println!("# Alert rules beside ingest\n");
    println!(
        "{count} generated events (seed {seed}), `Trail::ingest` of {batch}-event batches from 2 threads, \
         median of {rounds} rounds, {} cores.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| configuration | ingest events/s | ratio to no rules | evaluator done after last ack | alerts |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| no rules (baseline) | {base:.0} | 1.00 | {:.2} s | {} |",
        median(&without, &|r| r.catch_up_secs),
        without[0].alerts
    );
    println!(
        "| 20 rules | {loaded:.0} | {:.2} (goal ≥ 0.90: {}) | {catch_up:.2} s | {} |",
        loaded / base,
        if loaded / base >= 0.90 { "met" } else { "not met" },
        with[0].alerts
    );
    println!("\nEvaluation kept pace at {eval_rate:.0} events/s overall (first event to last evaluated).");
    println!(
        "Alone on one thread: parsing a stored entry {:.2} µs/event; parsing and evaluating the 20 rules {:.2} µs/event.",
        median(&with, &|r| r.parse_us),
        median(&with, &|r| r.evaluate_us)
    );
}
