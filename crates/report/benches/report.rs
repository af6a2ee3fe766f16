//! Report generation over a large trail, beside the `stats` and
//! `performance` queries a person would run for the same figures, in the
//! same run and on the same open data.
//!
//! ```text
//! cargo bench -p sealtrail-report --bench report
//! SEALTRAIL_BENCH_EVENTS=1000000 cargo bench -p sealtrail-report --bench report
//! ```
//!
//! Knobs (environment variables):
//! - `SEALTRAIL_BENCH_EVENTS` (10,000,000): generated events, spread
//!   evenly over `SEALTRAIL_BENCH_DAYS` days.
//! - `SEALTRAIL_BENCH_DAYS` (30).
//! - `SEALTRAIL_BENCH_RUNS` (5): timed runs of each measure; the median
//!   is shown.
//! - `SEALTRAIL_BENCH_DIR` (`target/bench-tmp`): where the data directory
//!   goes (removed afterwards).
//!
//! Measures: the `summary` of one day in the middle of the trail (goal
//! <= 2 s) against `stats` by hour plus `performance` over that day;
//! the `compliance` report of all the days (goal <= 10 s) against `stats`
//! by hour over them (the queries the flatline check needs); each
//! rendering of the day's summary. The first (untimed) run of each warms
//! the page cache.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_report::{generate, render, Format, ReportKind, Request};
use sealtrail_testgen::knob;
use sealtrail_trail::{Bucket, Filter, TimeRange, Trail, TrailOptions, TrailReader};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let events: usize = knob("report", "SEALTRAIL_BENCH_EVENTS", 10_000_000);
    let days: i64 = knob("report", "SEALTRAIL_BENCH_DAYS", 30);
    let runs: usize = knob("report", "SEALTRAIL_BENCH_RUNS", 5);
    let base: PathBuf = knob("report", "SEALTRAIL_BENCH_DIR", PathBuf::from("target/bench-tmp"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let data = dir.path().join("data");
    let dd = DataDir::new(&data);
    dd.create_log("default", None).unwrap();

    let shape = sealtrail_testgen::Shape {
        start_unix_ms: START_MS,
        mean_gap_ms: (days * 86_400_000) as f64 / events as f64,
        ..Default::default()
    };
    let load = Instant::now();
    {
        let trail = Trail::open(&dd, "default", TrailOptions::default()).unwrap();
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(10_000);
        let mut done = 0;
        for e in sealtrail_testgen::events_with(1, events, &shape) {
            batch.push(e);
            if batch.len() == 10_000 {
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                trail.ingest(&refs, false).unwrap();
                done += batch.len();
                batch.clear();
                if done.is_multiple_of(1_000_000) {
                    eprintln!("loaded {done} events in {:.1?}", load.elapsed());
                }
            }
        }
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        trail.ingest(&refs, false).unwrap();
        trail.sync_index().unwrap();
    }
    eprintln!("loaded {events} events in {:.1?}", load.elapsed());

    let day = |d: i64| Timestamp::from_millisecond(START_MS + d * 86_400_000).unwrap();
    let middle = days / 2;
    let request = |kind, since, until| Request {
        kind,
        log: "default".into(),
        since: Some(since),
        until: Some(until),
        now: day(days + 1),
        name: None,
    };
    let reader = TrailReader::open(&dd, "default").unwrap();
    let in_range = |since, until| Filter {
        occurred: TimeRange {
            since: Some(since),
            until: Some(until),
        },
        ..Filter::default()
    };

    let summary_req = request(ReportKind::Summary, day(middle), day(middle + 1));
    let report = generate(&data, &summary_req).unwrap();
    let Some(day_events) = serde_json::to_value(&report).unwrap()["total"].as_u64() else {
        panic!("no total")
    };
    let summary = time(runs, || generate(&data, &summary_req).unwrap());
    let day_filter = in_range(day(middle), day(middle + 1));
    let summary_base = time(runs, || {
        (
            reader.stats(&day_filter, Bucket::Hour).unwrap(),
            reader.performance(&day_filter).unwrap(),
        )
    });

    let compliance_req = request(ReportKind::Compliance, day(0), day(days));
    let compliance = time(runs, || generate(&data, &compliance_req).unwrap());
    let all_filter = in_range(day(0), day(days));
    let compliance_base = time(runs, || reader.stats(&all_filter, Bucket::Hour).unwrap());

    let html = time(runs, || render(&report, Format::Html).unwrap());
    let xlsx = time(runs, || render(&report, Format::Xlsx).unwrap());
    let json = time(runs, || render(&report, Format::Json).unwrap());

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("Report generation, {events} events over {days} days (median of {runs} runs, warm cache)\n");
    println!("| measure | time | baseline (same run) | baseline time | ratio | goal |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| summary of one day ({day_events} events) | {:.1} ms | `stats --by hour` + `performance` over the day | {:.1} ms | {:.2}x | <= 2 s |",
        ms(summary),
        ms(summary_base),
        ms(summary) / ms(summary_base)
    );
    println!(
        "| compliance of {days} days ({events} events) | {:.1} ms | `stats --by hour` over the {days} days | {:.1} ms | {:.2}x | <= 10 s |",
        ms(compliance),
        ms(compliance_base),
        ms(compliance) / ms(compliance_base)
    );
    println!(
        "| render the day's summary: HTML / XLSX / JSON | {:.1} / {:.1} / {:.1} ms | | | | |",
        ms(html),
        ms(xlsx),
        ms(json)
    );
}
