//! HTTP load generator for a Sealtrail server.
//!
//! [`run`] sends events from an [`Events`] pool to one log of a running
//! server, from `clients` concurrent senders over kept-alive HTTP/1.1
//! connections, either one event per request (`POST …/events`, answered
//! 201 once durable) or batches (`POST …/events/batch`, NDJSON or a JSON
//! array). It stops when the pool is used up or the time is over, and
//! returns a [`Report`]: events acknowledged per second and request
//! latency percentiles (p50/p95/p99/max), each latency measured from
//! before the request is sent to after its whole answer is read.
//!
//! The `sealtrail-load` binary drives it from the command line; the
//! server's `http` benchmark drives it against an in-process server.
//!
//! Events come from `sealtrail_testgen::events`. Each generated event
//! appears once in a pool, and 10% carry an idempotency key unique within
//! the seed, so sending the same seed twice to one log gets duplicates
//! (counted, not failed): use another seed or another log.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

/// A pool of events as JSON text, each followed by `\n`, so that any run
/// of consecutive events is an NDJSON body without copying.
pub struct Events {
    bytes: Bytes,
    /// End of each event's text (before its `\n`).
    ends: Vec<usize>,
}

impl Events {
    /// `count` events from `sealtrail_testgen::events(seed, count)`.
    pub fn generate(seed: u64, count: usize) -> Events {
        let mut bytes = Vec::with_capacity(count * 300);
        let mut ends = Vec::with_capacity(count);
        let mut events = sealtrail_testgen::events(seed, count);
        while events.write_next(&mut bytes) {
            ends.push(bytes.len());
            bytes.push(b'\n');
        }
        Events {
            bytes: Bytes::from(bytes),
            ends,
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] + 1
        }
    }

    /// Event `i`'s JSON text.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i]]
    }

    /// Bytes of all events, separators excluded.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len() - self.ends.len()
    }

    fn single(&self, i: usize) -> Bytes {
        self.bytes.slice(self.start(i)..self.ends[i])
    }

    fn ndjson(&self, range: std::ops::Range<usize>) -> Bytes {
        self.bytes.slice(self.start(range.start)..self.ends[range.end - 1] + 1)
    }

    fn json_array(&self, range: std::ops::Range<usize>) -> Bytes {
        let mut body = Vec::with_capacity(self.ends[range.end - 1] - self.start(range.start) + 2);
        body.push(b'[');
        for i in range {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(self.get(i));
        }
        body.push(b']');
        Bytes::from(body)
    }
}

/// Where to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The log written to.
    pub log: String,
    /// An API key with ingest scope (the secret, sent as `Bearer`).
    pub key: String,
}

/// One event per request, or batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single,
    Batch {
        size: usize,
        /// NDJSON (`application/x-ndjson`) rather than a JSON array.
        ndjson: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Load {
    pub mode: Mode,
    /// Concurrent senders, each with at most one request in flight.
    pub clients: usize,
    /// Stop sending after this long even if events remain.
    pub duration: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests answered with success.
    pub requests: usize,
    /// Events newly stored (201, or counted `appended` in a batch answer).
    pub stored: usize,
    /// Events answered as already stored under their idempotency key.
    pub duplicates: usize,
    /// Events refused by the server in otherwise successful batches.
    pub rejected: usize,
    /// Requests that failed (transport error or an error status).
    pub failed: usize,
    /// The first few failures, described.
    pub errors: Vec<String>,
    /// From the first request sent to the last answer read.
    pub elapsed: Duration,
    /// Whether every event of the pool was sent (else time ran out).
    pub exhausted: bool,
    /// Bytes of request bodies sent successfully.
    pub body_bytes: usize,
    /// Latencies of successful requests, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    /// Events acknowledged (stored or duplicate) per second.
    pub fn events_per_sec(&self) -> f64 {
        (self.stored + self.duplicates) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q` (0..=1) by the nearest-rank method; zero
    /// when nothing succeeded.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    /// A few lines for people: rate, percentiles, failures.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} events acknowledged ({} stored, {} duplicates, {} rejected) in {} requests over {:.2} s: \
             {:.0} events/s, {:.0} requests/s, {:.1} MB/s of bodies\n\
             request latency p50 {} p95 {} p99 {} max {}\n",
            self.stored + self.duplicates,
            self.stored,
            self.duplicates,
            self.rejected,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.events_per_sec(),
            self.requests_per_sec(),
            self.body_bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6,
            millis(self.quantile(0.5)),
            millis(self.quantile(0.95)),
            millis(self.quantile(0.99)),
            millis(self.quantile(1.0)),
        );
        if self.failed > 0 {
            out.push_str(&format!(
                "{} requests failed; first: {}\n",
                self.failed,
                self.errors.join(" | ")
            ));
        }
        if !self.exhausted {
            out.push_str("stopped by time before the event pool was used up\n");
        }
        out
    }
}

/// Nearest-rank quantile of sorted `latencies`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// `1.23 ms` or `456 µs`.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.0} µs", ms * 1e3)
    }
}

/// The counts of a batch answer; the per-item results are skipped.
#[derive(Deserialize)]
struct BatchCounts {
    appended: usize,
    duplicates: usize,
    rejected: usize,
}

const KEPT_ERRORS: usize = 5;

/// Send `events` to `target` under `load`. Fails only if the HTTP client
/// cannot be built; request failures are counted in the report.
pub async fn run(target: &Target, load: &Load, events: Arc<Events>) -> Result<Report, String> {
    let clients = load.clients.max(1);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let base = target.url.trim_end_matches('/');
    let url = match load.mode {
        Mode::Single => format!("{base}/api/v1/logs/{}/events", target.log),
        Mode::Batch { .. } => format!("{base}/api/v1/logs/{}/events/batch", target.log),
    };
    let auth = format!("Bearer {}", target.key);
    let next = Arc::new(AtomicUsize::new(0));
    let over = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = load.duration.map(|d| started + d);
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, auth, events, next, over) = (
            client.clone(),
            url.clone(),
            auth.clone(),
            events.clone(),
            next.clone(),
            over.clone(),
        );
        let mode = load.mode;
        senders.spawn(async move { send(client, url, auth, mode, events, next, over, deadline).await });
    }
    let mut report = Report::default();
    while let Some(done) = senders.join_next().await {
        let r = done.map_err(|e| format!("a sender failed: {e}"))?;
        report.requests += r.requests;
        report.stored += r.stored;
        report.duplicates += r.duplicates;
        report.rejected += r.rejected;
        report.failed += r.failed;
        report.body_bytes += r.body_bytes;
        for e in r.errors {
            if report.errors.len() < KEPT_ERRORS {
                report.errors.push(e);
            }
        }
        report.latencies.extend(r.latencies);
    }
    report.elapsed = started.elapsed();
    report.exhausted = next.load(Ordering::Relaxed) >= events.len();
    report.latencies.sort_unstable();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn send(
    client: reqwest::Client,
    url: String,
    auth: String,
    mode: Mode,
    events: Arc<Events>,
    next: Arc<AtomicUsize>,
    over: Arc<AtomicBool>,
    deadline: Option<Instant>,
) -> Report {
    let mut report = Report::default();
    let r = &mut report;
    let take = match mode {
        Mode::Single => 1,
        Mode::Batch { size, .. } => size.max(1),
    };
    loop {
        if over.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            over.store(true, Ordering::Relaxed);
            break;
        }
        let first = next.fetch_add(take, Ordering::Relaxed);
        if first >= events.len() {
            break;
        }
        let range = first..(first + take).min(events.len());
        let (body, content_type) = match mode {
            Mode::Single => (events.single(range.start), "application/json"),
            Mode::Batch { ndjson: true, .. } => (events.ndjson(range.clone()), "application/x-ndjson"),
            Mode::Batch { ndjson: false, .. } => (events.json_array(range.clone()), "application/json"),
        };
        let body_len = body.len();
        let sent = Instant::now();
        let answer = client
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                fail(r, format!("sending: {e}"));
                continue;
            }
        };
        let status = answer.status();
        let text = match answer.bytes().await {
            Ok(t) => t,
            Err(e) => {
                fail(r, format!("reading the answer ({status}): {e}"));
                continue;
            }
        };
        let latency = sent.elapsed();
        if !status.is_success() {
            let detail = String::from_utf8_lossy(&text[..text.len().min(300)]).into_owned();
            fail(r, format!("{status}: {detail}"));
            continue;
        }
        match mode {
            Mode::Single if status.as_u16() == 201 => r.stored += 1,
            Mode::Single => r.duplicates += 1,
            Mode::Batch { .. } => match serde_json::from_slice::<BatchCounts>(&text) {
                Ok(c) => {
                    r.stored += c.appended;
                    r.duplicates += c.duplicates;
                    r.rejected += c.rejected;
                }
                Err(e) => {
                    fail(r, format!("{status} with an unreadable batch answer: {e}"));
                    continue;
                }
            },
        }
        r.requests += 1;
        r.body_bytes += body_len;
        r.latencies.push(latency);
    }
    report
}

fn fail(r: &mut Report, what: String) {
    r.failed += 1;
    if r.errors.len() < KEPT_ERRORS {
        r.errors.push(what);
    }
}
