//! Cost of `accept_json_entry` (JSON text → validated `Event` + canonical
//! entry bytes) on generated events, beside the same run's baseline: plain
//! `serde_json::from_slice::<Value>` of the same texts, the least any
//! JSON-reading ingest pays. The ratio is the evidence; absolute times on a
//! shared machine are noise.
//!
//! `CARGO_TARGET_DIR=... cargo bench -p sealtrail-event --bench accept`;
//! SEALTRAIL_BENCH_EVENTS sets the count (default 200,000),
//! SEALTRAIL_BENCH_ONLY=accept skips the baseline (for profiling).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let count: usize = std::env::var("SEALTRAIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let only_accept = std::env::var("SEALTRAIL_BENCH_ONLY").is_ok_and(|v| v == "accept");
    let texts: Vec<Vec<u8>> = sealtrail_testgen::events(7, count).collect();
    let bytes: usize = texts.iter().map(Vec::len).sum();
    let received_at: sealtrail_event::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    let id = sealtrail_event::event_id(received_at, [0; 10]).unwrap();

    // Best of a few rounds: the least disturbed by other work on the machine.
    let rounds = if only_accept { 1 } else { 3 };
    let mut accept = f64::INFINITY;
    let mut stored = 0usize;
    for _ in 0..rounds {
        let started = Instant::now();
        stored = 0;
        for text in &texts {
            let (event, entry) = sealtrail_event::accept_json_entry(black_box(text), received_at, id).unwrap();
            stored += entry.len();
            black_box(event);
        }
        accept = accept.min(started.elapsed().as_secs_f64());
    }
    let mut parse = f64::NAN;
    if !only_accept {
        parse = f64::INFINITY;
        for _ in 0..rounds {
            let started = Instant::now();
            for text in &texts {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(text)).unwrap());
            }
            parse = parse.min(started.elapsed().as_secs_f64());
        }
    }

    let n = count as f64;
    println!(
        "{count} events, {:.0} bytes sent and {:.0} stored on average",
        bytes as f64 / n,
        stored as f64 / n
    );
    println!("| measure | events/s | µs/event |");
    println!("|---|---:|---:|");
    for (name, secs) in [
        ("accept_json_entry", accept),
        ("baseline: serde_json::from_slice::<Value>", parse),
    ] {
        println!("| {name} | {:.0} | {:.2} |", n / secs, secs / n * 1e6);
    }
    println!("ratio accept / baseline: {:.2}", accept / parse);
}
