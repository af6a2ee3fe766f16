//! HTTP batch ingest at a target rate with and without live-stream
//! clients reading every event, the first run being the baseline of the
//! second, and the ratio.
//!
//! ```text
//! cargo bench -p sealtrail-server --bench stream          # table on stdout, progress on stderr
//! SEALTRAIL_BENCH_RATE=50000 SEALTRAIL_BENCH_SSE_CLIENTS=50 cargo bench -p sealtrail-server --bench stream
//! ```
//!
//! One server is started in this process (`Server::start` on
//! 127.0.0.1:0, a fresh data directory, default configuration). Senders
//! (`SENDERS` threads, blocking HTTP clients) `POST …/events/batch`
//! NDJSON bodies of `BATCH` events paced to `RATE` events per second for
//! `SECS` seconds: batch k is due at k × BATCH / RATE after the start and
//! sent then, or at once if the senders are late. The same events are
//! sent twice, into two fresh logs: first with no stream client, then
//! with `SSE_CLIENTS` clients (threads reading `GET /stream/events` of
//! that log over real HTTP connections, parsing every event's `id`)
//! connected before the first batch. Reported: the rate achieved
//! (acknowledged events over the time from the first request to the last
//! answer), request latencies, and how many events each client received
//! and how long after the last acknowledgement the slowest had them all.
//!
//! Knobs (environment variables; numbers may contain `_`):
//! - `SEALTRAIL_BENCH_RATE` (50,000): target events per second.
//! - `SEALTRAIL_BENCH_SECS` (10): seconds of load per run.
//! - `SEALTRAIL_BENCH_BATCH` (1,000): events per request.
//! - `SEALTRAIL_BENCH_SENDERS` (4): concurrent senders.
//! - `SEALTRAIL_BENCH_SSE_CLIENTS` (50): stream clients of the second run.
//! - `SEALTRAIL_BENCH_SSE_QUERY` (empty): filters of the stream clients,
//!   e.g. `action=user.login` (empty: every event).
//! - `SEALTRAIL_BENCH_DRAIN_SECS` (60): longest wait for the clients
//!   after the last acknowledgement.
//! - `SEALTRAIL_BENCH_SEED` (1): seed of the events.
//! - `SEALTRAIL_BENCH_DIR` (`target/bench-tmp`): where the data directory
//!   goes (removed afterwards). Keep it off tmpfs.
#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_loadgen::{millis, quantile, Events};
use sealtrail_meta::Scope;
use sealtrail_meta::{key_event, now_text};
use sealtrail_server::{Config, Server};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn knob<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}: cannot read {v:?}")),
        Err(_) => default,
    }
}

fn progress(message: &str) {
    eprintln!("[stream bench] {message}");
}

fn rate(v: f64) -> String {
    format!("{:.1} k/s", v / 1000.0)
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One run's figures.
struct Run {
    acked: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// When the last answer came.
    ended: Instant,
}

impl Run {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }
}

/// Send `bodies` (each of `batch` events) to `url`, paced to `target`
/// events per second, from `senders` threads.
fn send(url: &str, key: &str, bodies: &Arc<Vec<Vec<u8>>>, batch: usize, target: f64, senders: usize) -> Run {
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let (url, key, bodies) = (url.to_string(), key.to_string(), bodies.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut acked = 0u64;
                let mut latencies = Vec::new();
                for k in (s..bodies.len()).step_by(senders) {
                    let due = start + Duration::from_secs_f64(k as f64 * batch as f64 / target);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t = Instant::now();
                    let mut resp = agent
                        .post(&url)
                        .header("Authorization", format!("Bearer {key}"))
                        .header("Content-Type", "application/x-ndjson")
                        .send(&bodies[k][..])
                        .unwrap();
                    let status = resp.status().as_u16();
                    let body: serde_json::Value = resp.body_mut().read_json().unwrap();
                    assert_eq!(status, 200, "{body}");
                    latencies.push(t.elapsed());
                    acked += body["appended"].as_u64().unwrap() + body["duplicates"].as_u64().unwrap();
                }
                (acked, latencies, Instant::now())
            })
        })
        .collect();
    let mut run = Run {
        acked: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        ended: start,
    };
    for t in threads {
        let (acked, latencies, ended) = t.join().unwrap();
        run.acked += acked;
        run.latencies.extend(latencies);
        run.ended = run.ended.max(ended);
    }
    run.elapsed = run.ended - start;
    run.latencies.sort();
    run
}

/// A stream client: counts the events it has received and notes when it
/// had `expect` of them.
struct Reader {
    received: Arc<AtomicU64>,
    /// Nanoseconds after `epoch` when the client had every expected event.
    complete_at: Arc<AtomicU64>,
}

fn reader(url: String, key: String, expect: u64, epoch: Instant) -> Reader {
    let received = Arc::new(AtomicU64::new(0));
    let complete_at = Arc::new(AtomicU64::new(0));
    let (r, c) = (received.clone(), complete_at.clone());
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let resp = agent
            .get(&url)
            .header("Authorization", format!("Bearer {key}"))
            .header("Accept", "text/event-stream")
            .call()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let lines = std::io::BufReader::with_capacity(1 << 16, resp.into_body().into_reader());
        let mut count = 0u64;
        for line in lines.split(b'\n') {
            let Ok(line) = line else { return };
            if line.starts_with(b"id:") {
                count += 1;
                r.store(count, Ordering::Relaxed);
                if count == expect {
                    c.store(epoch.elapsed().as_nanos() as u64, Ordering::SeqCst);
                }
            }
        }
    });
    Reader { received, complete_at }
}

fn main() {
    let target: f64 = knob("SEALTRAIL_BENCH_RATE", 50_000.0);
    let secs: f64 = knob("SEALTRAIL_BENCH_SECS", 10.0);
    let batch: usize = knob("SEALTRAIL_BENCH_BATCH", 1_000);
    let senders: usize = knob("SEALTRAIL_BENCH_SENDERS", 4);
    let clients: usize = knob("SEALTRAIL_BENCH_SSE_CLIENTS", 50);
    let drain: u64 = knob("SEALTRAIL_BENCH_DRAIN_SECS", 60);
    let seed: u64 = knob("SEALTRAIL_BENCH_SEED", 1);
    let query: String = std::env::var("SEALTRAIL_BENCH_SSE_QUERY").unwrap_or_default();
    let dir_root: PathBuf =
        std::env::var("SEALTRAIL_BENCH_DIR").map_or_else(|_| PathBuf::from("target/bench-tmp"), PathBuf::from);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let dir = dir_root.join(format!("stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _remove = RemoveDir(dir.clone());
    let mut config = Config {
        data_dir: dir.join("data"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    config.web.max_stream_clients = config.web.max_stream_clients.max(clients);
    let server = runtime.block_on(Server::start(config)).unwrap();
    let app = server.app.clone();
    let key = |scope| {
        app.meta
            .create_key(scope, None, "bench", &now_text(), |k| {
                key_event(
                    serde_json::json!({"id": "stream-bench", "type": "service"}),
                    "api_key.created",
                    k,
                )
            })
            .unwrap()
            .1
    };
    let (ingest, read) = (key(Scope::Ingest), key(Scope::Read));
    let base = format!("http://{}", server.addr);

    let count = ((target * secs) as usize).div_ceil(batch) * batch;
    let events = Events::generate(seed, count);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..count / batch)
            .map(|b| {
                let mut body = Vec::new();
                for i in b * batch..(b + 1) * batch {
                    body.extend_from_slice(events.get(i));
                    body.push(b'\n');
                }
                body
            })
            .collect(),
    );
    drop(events);
    progress(&format!(
        "{count} events in {} bodies of {batch}; target {} for {secs} s; server {base}",
        bodies.len(),
        rate(target)
    ));

    // Run 1: no client.
    app.open_or_create("sse-none").unwrap();
    let url = |log: &str| format!("{base}/api/v1/logs/{log}/events/batch");
    let alone = send(&url("sse-none"), &ingest, &bodies, batch, target, senders);
    progress(&format!("without clients: {}", rate(alone.rate())));

    // Run 2: `clients` readers of the log, connected first.
    app.open_or_create("sse-clients").unwrap();
    let sep = if query.is_empty() { "" } else { "&" };
    let stream_url = format!("{base}/stream/events?log=sse-clients{sep}{query}");
    let expect = if query.is_empty() { count as u64 } else { u64::MAX };
    let epoch = Instant::now();
    let readers: Vec<Reader> = (0..clients)
        .map(|_| reader(stream_url.clone(), read.clone(), expect, epoch))
        .collect();
    let wait = Instant::now();
    while app.feeds.clients() < clients {
        assert!(
            wait.elapsed() < Duration::from_secs(30),
            "the stream clients did not connect"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let with = send(&url("sse-clients"), &ingest, &bodies, batch, target, senders);
    progress(&format!("with {clients} clients: {}", rate(with.rate())));
    let acked_at = with.ended;
    let deadline = acked_at + Duration::from_secs(drain);
    if query.is_empty() {
        while Instant::now() < deadline && readers.iter().any(|r| r.complete_at.load(Ordering::SeqCst) == 0) {
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        std::thread::sleep(Duration::from_secs(2));
    }
    let received: Vec<u64> = readers.iter().map(|r| r.received.load(Ordering::Relaxed)).collect();
    let (min, max) = (
        received.iter().copied().min().unwrap_or(0),
        received.iter().copied().max().unwrap_or(0),
    );
    let all = query.is_empty() && received.iter().all(|&n| n == count as u64);
    let slowest = readers
        .iter()
        .map(|r| r.complete_at.load(Ordering::SeqCst))
        .max()
        .unwrap_or(0);
    let behind = if all {
        let done = epoch + Duration::from_nanos(slowest);
        millis(done.saturating_duration_since(acked_at))
    } else {
        "—".into()
    };

    let ratio = with.rate() / alone.rate();
    let filters = if query.is_empty() {
        "every event".to_string()
    } else {
        format!("`{query}`")
    };
    println!("| measure | with {clients} stream clients ({filters}) | without clients | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| HTTP batch ingest rate (target {}, batches of {batch}, {senders} senders) | {} | {} | {ratio:.2}× | ≥ 0.90× {} |",
        rate(target),
        rate(with.rate()),
        rate(alone.rate()),
        if ratio >= 0.90 { "met" } else { "**not met**" }
    );
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        let (w, a) = (quantile(&with.latencies, q), quantile(&alone.latencies, q));
        println!(
            "| batch request latency {name} | {} | {} | {:.2}× |  |",
            millis(w),
            millis(a),
            w.as_secs_f64() / a.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "| events received per client (of {count} stored) | {min} to {max} |  |  | all: {} |",
        if all { "yes" } else { "no" }
    );
    println!("| slowest client had every event, after the last acknowledgement | {behind} |  |  |  |");
    println!(
        "| clients that fell behind the buffer (caught up from the ledger) | {} |  |  |  |",
        app.feeds.lag_count()
    );
    // The stream clients' threads end with the process.
    drop(readers);
    server.shutdown();
    drop(server);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
