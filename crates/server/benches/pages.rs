//! Server time of the dashboard's `/search` page beside the API's JSON
//! `GET /api/v1/logs/{log}/events` for the same filter and page size, in
//! the same run, and the ratio.
//!
//! ```text
//! cargo bench -p sealtrail-server --bench pages > bench.md    # table on stdout, progress on stderr
//! SEALTRAIL_BENCH_EVENTS=10000000 cargo bench -p sealtrail-server --bench pages
//! ```
//!
//! `EVENTS` events of `sealtrail_testgen::events(seed, EVENTS)` are
//! ingested into log `default` of a fresh `App` with `Trail::ingest`
//! (batches of 1,000 from 2 threads) and indexed; then each query kind is
//! sent `QUERIES` times to the page and to the API alternately, through
//! the server's whole router without a socket (`tower::ServiceExt::oneshot`,
//! with the API key's authentication, the system-log record of the read,
//! rendering and the body collected). Both ask for 50 events, newest
//! first.
//!
//! Knobs: `SEALTRAIL_BENCH_EVENTS` (1,000,000), `SEALTRAIL_BENCH_QUERIES`
//! (200 per kind and route), `SEALTRAIL_BENCH_SEED` (1),
//! `SEALTRAIL_BENCH_DIR` (`target/bench-tmp`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use sealtrail_loadgen::Events;
use sealtrail_meta::{key_event, now_text, Scope};
use sealtrail_server::{router, App, Config};
use sealtrail_trail::Item;
use serde_json::{json, Value};
use tower::ServiceExt;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn knob<T: FromStr>(name: &str, default: T) -> T {
    sealtrail_testgen::knob("pages", name, default)
}

/// Percent-encode a query value.
fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let count: usize = knob("SEALTRAIL_BENCH_EVENTS", 1_000_000);
    let queries: usize = knob("SEALTRAIL_BENCH_QUERIES", 200);
    let seed: u64 = knob("SEALTRAIL_BENCH_SEED", 1);
    let base: PathBuf = knob("SEALTRAIL_BENCH_DIR", PathBuf::from("target/bench-tmp"));
    let dir = base.join(format!("pages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    eprintln!("generating {count} events (seed {seed})");
    let events = Events::generate(seed, count);
    let app = App::open(Config {
        data_dir: dir.clone(),
        ..Config::default()
    })
    .unwrap();
    let trail = app.trail("default").unwrap();
    let t = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let first = next.fetch_add(1000, Ordering::Relaxed);
                if first >= events.len() {
                    break;
                }
                let inputs: Vec<&[u8]> = (first..(first + 1000).min(events.len()))
                    .map(|i| events.get(i))
                    .collect();
                let done = trail.ingest(&inputs, false).unwrap();
                assert!(done.items.iter().all(|i| matches!(i, Item::Stored { .. })));
            });
        }
    });
    trail.sync_index().unwrap();
    let ingest_secs = t.elapsed().as_secs_f64();
    eprintln!("ingested and indexed in {ingest_secs:.1} s");

    // Filters taken from the data: an actor and an action that occur.
    let sample: Value = serde_json::from_slice(events.get(count / 2)).unwrap();
    let actor = sample["actor"]["id"].as_str().unwrap_or("u-1").to_string();
    let action = sample["action"].as_str().unwrap_or("user.login").to_string();
    let glob = format!("{}.*", action.split('.').next().unwrap_or("user"));
    let (_, secret) = app
        .meta
        .create_key(Scope::Read, None, "bench", &now_text(), |k| {
            key_event(json!({"id": "bench", "type": "user"}), "api_key.created", k)
        })
        .unwrap();
    let routes = router(app.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // (name, query in the page's canonical order)
    let kinds: Vec<(String, String)> = vec![
        ("newest 50, no filter".into(), String::new()),
        (format!("actor {actor}"), format!("&actor={}", enc(&actor))),
        (
            format!("action {glob} + occurred range"),
            format!(
                "&action={}&since=2020-01-01T00%3A00%3A00Z&until=2100-01-01T00%3A00%3A00Z",
                enc(&glob)
            ),
        ),
        ("outcome failure".into(), "&outcome=failure".into()),
    ];
    println!(
        "Sealtrail dashboard benchmark: {count} generated events (seed {seed}), ingested and indexed in {ingest_secs:.1} s; \
         {queries} requests per kind and route through the router without a socket, 50 events per page, newest first; \
         {} CPUs\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| query | `/search` page p50 | p95 | API `GET …/events` p50 | p95 | ratio p95 | goal p95 ≤ 100 ms | met | page bytes |");
    println!("|---|---:|---:|---:|---:|---:|---|---|---:|");
    for (name, filter) in &kinds {
        let page_uri = format!("/search?log=default{filter}");
        let api_uri = format!("/api/v1/logs/default/events?limit=50{filter}");
        let mut page = Vec::with_capacity(queries);
        let mut api = Vec::with_capacity(queries);
        let mut bytes = 0;
        runtime.block_on(async {
            for _ in 0..queries {
                for (uri, times) in [(&page_uri, &mut page), (&api_uri, &mut api)] {
                    let req = Request::builder()
                        .uri(uri.as_str())
                        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                        .body(Body::empty())
                        .unwrap();
                    let t = Instant::now();
                    let response = routes.clone().oneshot(req).await.unwrap();
                    let status = response.status();
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    times.push(t.elapsed());
                    assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&body));
                    if uri.starts_with("/search") {
                        bytes = body.len();
                    }
                }
            }
        });
        page.sort();
        api.sort();
        let p95 = quantile(&page, 0.95);
        let ratio = p95.as_secs_f64() / quantile(&api, 0.95).as_secs_f64();
        println!(
            "| {name} | {} | {} | {} | {} | {ratio:.2}× | ≤ 100 ms | {} | {bytes} |",
            ms(quantile(&page, 0.5)),
            ms(p95),
            ms(quantile(&api, 0.5)),
            ms(quantile(&api, 0.95)),
            if p95 <= Duration::from_millis(100) { "yes" } else { "no" },
        );
    }
    drop(routes);
    drop(trail);
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
