//! Generation rate of `sealtrail_testgen`, beside the rate of copying the
//! same bytes (the floor any generator pays). `cargo bench -p
//! sealtrail-testgen`; SEALTRAIL_BENCH_EVENTS sets the count (default 2M).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

fn main() {
    let count: usize = std::env::var("SEALTRAIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);

    let started = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut bytes = 0usize;
    let mut events = sealtrail_testgen::events(1, count);
    while {
        buf.clear();
        events.write_next(&mut buf)
    } {
        bytes += buf.len();
    }
    let write_next = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let owned: Vec<Vec<u8>> = sealtrail_testgen::events(1, count).collect();
    let iterator = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let copied: usize = owned.iter().map(|e| e.to_vec().len()).sum();
    let copy = started.elapsed().as_secs_f64();
    assert_eq!(copied, bytes);

    let received_at: sealtrail_event::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    let id = sealtrail_event::event_id(received_at, [0; 10]).unwrap();
    let sample = owned.len().min(100_000);
    let stored: usize = owned[..sample]
        .iter()
        .map(|e| {
            sealtrail_event::canonical_entry(&sealtrail_event::accept_json(e, received_at, id).unwrap())
                .unwrap()
                .len()
        })
        .sum();

    println!(
        "{count} events, {:.0} bytes sent and {:.0} stored on average",
        bytes as f64 / count as f64,
        stored as f64 / sample.max(1) as f64
    );
    println!("| measure | events/s | MB/s |");
    println!("|---|---:|---:|");
    for (name, secs) in [
        ("write_next (reused buffer)", write_next),
        ("iterator (a Vec per event)", iterator),
        ("baseline: copy the same bytes", copy),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} |",
            count as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
}
