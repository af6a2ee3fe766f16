//! Live feeds of newly appended events, one per log, for the dashboard's
//! live stream.
//!
//! ```text
//! Trail::ingest ─on_append(size)─► watch ─► tailer task: reads the new
//!   entries from the ledger once, parses them ─► broadcast (bounded) ─► clients
//! ```
//!
//! An append only replaces the value of a `watch` channel: it never waits
//! for a reader, however slow. One tailer per log (started by its first
//! client) reads what was appended and hands it, parsed and serialised
//! once, to a bounded `broadcast` channel. A client that falls further
//! behind than the channel holds, or that starts after some position,
//! reads the missing entries from the ledger itself ([`read_range`]):
//! positions are ledger indices, so nothing is lost or repeated.
//!
//! Architecture invariant: the feed is derived from the ledger; it holds
//! no event that is not durable, and skips none of a log's entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sealtrail_event::{parse_entry, Event};
use sealtrail_merkle::leaf_hash;
use sealtrail_trail::Trail;
use tokio::sync::{broadcast, watch};

/// Most entries the tailer or a catching-up client reads at once.
pub const CHUNK: u64 = 512;

/// One stored event as the stream sends it.
pub struct FeedItem {
    pub index: u64,
    pub event: Event,
    /// The SSE `data`: `{"index":…,"leaf_hash":…,"event":{…}}`, one line.
    pub data: Arc<str>,
}

/// Consecutive entries of a log, starting at `first`.
pub struct Batch {
    pub first: u64,
    pub items: Vec<FeedItem>,
}

impl Batch {
    /// The index after the last entry.
    pub fn end(&self) -> u64 {
        self.first + self.items.len() as u64
    }
}

/// One log's feed.
pub struct Feed {
    size: watch::Sender<u64>,
    batches: broadcast::Sender<Arc<Batch>>,
    tailing: AtomicBool,
}

impl Feed {
    /// Receive the batches appended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batches.subscribe()
    }
}

/// Every log's feed, and the count of live-stream clients.
pub struct Feeds {
    capacity: usize,
    by_log: Mutex<HashMap<String, Arc<Feed>>>,
    clients: AtomicUsize,
    lagged: AtomicU64,
}

impl Feeds {
    /// Feeds whose broadcast channels keep `capacity` batches.
    pub fn new(capacity: usize) -> Feeds {
        Feeds {
            capacity: capacity.max(1),
            by_log: Mutex::new(HashMap::new()),
            clients: AtomicUsize::new(0),
            lagged: AtomicU64::new(0),
        }
    }

    fn feed(&self, log: &str, size: u64) -> Arc<Feed> {
        let mut by_log = self.by_log.lock().unwrap_or_else(|e| e.into_inner());
        by_log
            .entry(log.to_string())
            .or_insert_with(|| {
                Arc::new(Feed {
                    size: watch::channel(size).0,
                    batches: broadcast::channel(self.capacity).0,
                    tailing: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Tell log `log`'s feed of every append to `trail` (called when the
    /// server opens the log).
    pub fn attach(&self, log: &str, trail: &Trail) {
        let feed = self.feed(log, trail.log().size());
        trail.on_append(Arc::new(move |size| {
            feed.size.send_replace(size);
        }));
    }

    /// The feed of `log`, with its tailer running (started here on first
    /// use, on the current tokio runtime).
    pub fn follow(&self, log: &str, trail: Arc<Trail>) -> Arc<Feed> {
        let feed = self.feed(log, trail.log().size());
        if !feed.tailing.swap(true, Ordering::SeqCst) {
            tokio::spawn(tail(feed.clone(), trail));
        }
        feed
    }

    /// Count a client in, unless `max` are connected already.
    pub fn admit(self: &Arc<Self>, max: usize) -> Option<ClientSlot> {
        let admitted = self
            .clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .is_ok();
        if !admitted {
            return None;
        }
        metrics::gauge!("sealtrail_sse_clients").increment(1.0);
        Some(ClientSlot { feeds: self.clone() })
    }

    /// Count a client that fell further behind than the buffer holds.
    pub fn lagged(&self) {
        self.lagged.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sealtrail_sse_lagged_total").increment(1);
    }

    /// How many times a client fell further behind than the buffer holds.
    pub fn lag_count(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Live-stream clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }
}

/// A connected client's place; dropping it frees the place.
pub struct ClientSlot {
    feeds: Arc<Feeds>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.feeds.clients.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("sealtrail_sse_clients").decrement(1.0);
    }
}

/// The tailer of one log: reads each new run of entries once and
/// broadcasts it. With nobody listening it reads nothing and moves on;
/// a client that comes later reads what it needs from the ledger.
async fn tail(feed: Arc<Feed>, trail: Arc<Trail>) {
    let mut sizes = feed.size.subscribe();
    let mut next = *sizes.borrow_and_update();
    loop {
        if sizes.changed().await.is_err() {
            return;
        }
        let size = *sizes.borrow_and_update();
        while next < size {
            if feed.batches.receiver_count() == 0 {
                next = size;
                break;
            }
            let count = CHUNK.min(size - next);
            let t = trail.clone();
            let read = tokio::task::spawn_blocking(move || read_range(&t, next, count)).await;
            match read {
                Ok(Ok(batch)) => {
                    next = batch.end();
                    // No receiver left is no failure: the next run is skipped.
                    let _ = feed.batches.send(Arc::new(batch));
                }
                Ok(Err(e)) => {
                    tracing::error!(log = %trail.log().name(), "live stream: reading entries from {next}: {e}");
                    metrics::counter!("sealtrail_sse_read_failures_total").increment(1);
                    // Clients find the same entries missing and read them
                    // from the ledger themselves, reporting the failure.
                    next = size;
                }
                Err(e) => {
                    tracing::error!("live stream: the reading task failed: {e}");
                    next = size;
                }
            }
        }
    }
}

/// Read `count` entries of `trail` from `first` and make them feed items.
/// Blocks on the ledger: call it off the async threads.
pub fn read_range(trail: &Trail, first: u64, count: u64) -> Result<Batch, String> {
    let entries = trail.log().entries(first, count).map_err(|e| e.to_string())?;
    let mut items = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let index = first + i as u64;
        let event = parse_entry(&entry).map_err(|e| format!("entry {index} is not an event: {e}"))?;
        let leaf = base64::engine::general_purpose::STANDARD.encode(leaf_hash(&entry));
        let text = String::from_utf8(entry).map_err(|_| format!("entry {index} is not UTF-8"))?;
        let data = format!("{{\"index\":{index},\"leaf_hash\":\"{leaf}\",\"event\":{text}}}");
        items.push(FeedItem {
            index,
            event,
            data: data.into(),
        });
    }
    Ok(Batch { first, items })
}
