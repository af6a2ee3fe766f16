//! Single-event ingest in groups.
//!
//! ```text
//! request ─┐                         ┌─ worker 1: Trail::ingest(group) ─┐
//! request ─┼─► channel of the log ──►┤                                  ├─► each request's reply
//! request ─┘                         └─ worker 2: Trail::ingest(group) ─┘    (index, receipt)
//! ```
//!
//! Each log that receives single events gets [`WORKERS`] threads. A request
//! hands its event to them and awaits its own reply; a worker takes every
//! request waiting (up to [`MAX_GROUP`]) and stores them with one
//! `Trail::ingest`: one validation pass, one ledger append, one hand-off to
//! the indexer. Two workers, so that one validates and appends the next
//! group while the other waits for its fsync (the ledger commits groups
//! that meet there together).
//!
//! Why: with one blocking-pool thread per request, each waiting in the
//! ledger on its own, 64 concurrent clients cost several thread hops and
//! wake-ups per event, and those cost more CPU than the events
//! (BENCHMARKS.md, "HTTP server").
//!
//! An event of a group is stored or refused on its own, exactly as if it
//! had come alone: a group is not atomic, and two events of a group with
//! the same idempotency key store one and answer the other as its
//! duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::http::StatusCode;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use sealtrail_event::{Rejection, Ulid};
use sealtrail_merkle::{Hash, Receipt};
use sealtrail_trail::{Item, Trail, TrailError};
use tokio::sync::oneshot;

use crate::problem::Problem;
use crate::problem::{ledger_problem, trail_problem};

/// Worker threads per log.
pub const WORKERS: usize = 2;

/// Most events one worker stores with one `Trail::ingest`.
pub const MAX_GROUP: usize = 512;

/// A stored event with what its acknowledgement carries.
#[derive(Debug)]
pub struct Receipted {
    pub index: u64,
    pub id: Ulid,
    pub leaf: Hash,
    pub duplicate: bool,
    pub tree_size: u64,
    /// Signed checkpoint (note text) covering the event.
    pub checkpoint: Arc<[u8]>,
    /// C2SP tlog-proof: the inclusion proof and that checkpoint.
    pub receipt: Vec<u8>,
}

/// The answer to one request: stored, or refused as an event (`Ok(Err)`),
/// or not stored because of the server (`Err`).
pub type Reply = Result<Result<Receipted, Rejection>, Problem>;

struct Request {
    body: Bytes,
    reply: oneshot::Sender<Reply>,
}

struct Workers {
    queue: Sender<Request>,
    threads: Vec<JoinHandle<()>>,
}

/// The single-event workers of every log that has had single events.
pub struct Singles {
    logs: Mutex<HashMap<String, Workers>>,
    /// Requests a log's queue holds (`limits.max_single_queue`).
    bound: usize,
}

impl Singles {
    /// Workers whose queues hold at most `bound` requests each.
    pub fn new(bound: usize) -> Singles {
        Singles {
            logs: Mutex::new(HashMap::new()),
            bound: bound.max(1),
        }
    }

    /// Queue `body` for log `log` (whose open trail is `trail`); the reply
    /// comes once the event is durable or refused. A full queue is refused
    /// at once (503 with `Retry-After`): waiting requests are bounded, and a
    /// refused event is not stored.
    pub fn submit(&self, log: &str, trail: &Arc<Trail>, body: Bytes) -> Result<oneshot::Receiver<Reply>, Problem> {
        let (reply, answer) = oneshot::channel();
        let spawn =
            || start(log, trail, self.bound).map_err(|e| Problem::internal(format!("starting ingest workers: {e}")));
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let workers = match logs.get(log) {
            Some(w) => w,
            None => logs.entry(log.to_string()).or_insert(spawn()?),
        };
        match workers.queue.try_send(Request { body, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("sealtrail_single_queue_full_total", "log" => log.to_string()).increment(1);
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    format!(
                        "log {log} has {} single events waiting to be stored (limits.max_single_queue); retry shortly",
                        self.bound
                    ),
                );
                p.retry_after = Some(1);
                return Err(p);
            }
            Err(TrySendError::Disconnected(unsent)) => {
                // Both workers are gone (they only stop when the queue
                // closes, so this is a bug): start the log's workers again.
                let w = spawn()?;
                let queue = w.queue.clone();
                logs.insert(log.to_string(), w);
                queue
                    .try_send(unsent)
                    .map_err(|_| Problem::internal("the ingest workers stopped at once"))?;
            }
        }
        Ok(answer)
    }

    /// Let the workers finish what is queued, then stop them.
    pub fn stop(&self) {
        let logs: Vec<Workers> = self
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in logs {
            drop(w.queue);
            for t in w.threads {
                let _ = t.join();
            }
        }
    }
}

fn start(log: &str, trail: &Arc<Trail>, bound: usize) -> std::io::Result<Workers> {
    let (queue, requests) = crossbeam_channel::bounded(bound);
    let mut threads = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let trail = trail.clone();
        let requests = requests.clone();
        // Thread names are cut at 15 bytes on Linux.
        let name: String = format!("ingest {log}").chars().take(15).collect();
        threads.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || work(&trail, &requests))?,
        );
    }
    Ok(Workers { queue, threads })
}

fn work(trail: &Trail, requests: &Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut group = Vec::with_capacity(64);
        group.push(first);
        group.extend(requests.try_iter().take(MAX_GROUP - 1));
        // A panic (a bug) answers this group with 500s, as a panicking
        // blocking-pool task would, and the worker goes on.
        let stored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store(trail, group)));
        if stored.is_err() {
            tracing::error!(
                "an ingest worker of log {} panicked; its group was answered 500",
                trail.log().name()
            );
        }
    }
}

/// Store one group and answer each of its requests.
fn store(trail: &Trail, mut group: Vec<Request>) {
    // Only the events of requests still waiting: a client that went away
    // before its event was stored gets nothing stored.
    group.retain(|r| !r.reply.is_closed());
    if group.is_empty() {
        return;
    }
    metrics::histogram!("sealtrail_ingest_group_events").record(group.len() as f64);
    let inputs: Vec<&[u8]> = group.iter().map(|r| r.body.as_ref()).collect();
    let done = match trail.ingest(&inputs, false) {
        Ok(done) => done,
        // Refused for the keys of some of its events: each is stored or
        // refused on its own, as if it had come alone.
        Err(TrailError::KeysUnchecked { .. } | TrailError::KeysFull { .. }) if group.len() > 1 => {
            for r in group {
                store(trail, vec![r]);
            }
            return;
        }
        Err(e) => return answer_all(group, &trail_problem(e)),
    };
    // Every stored event's proof at once: neighbours share their nodes.
    let stored: Vec<u64> = done
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Stored { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    let mut proofs = match trail.log().inclusion_proofs(&stored, done.tree_size) {
        Ok(proofs) => proofs.into_iter(),
        Err(e) => return answer_all(group, &ledger_problem(e)),
    };
    for (r, item) in group.into_iter().zip(done.items) {
        let reply = match item {
            Item::Stored {
                index,
                id,
                leaf,
                duplicate,
            } => proofs
                .next()
                .ok_or_else(|| Problem::internal("a stored event without its proof"))
                .map(|proof| {
                    let receipt = Receipt {
                        extra: None,
                        index,
                        proof,
                        checkpoint: done.checkpoint.to_vec(),
                    };
                    Ok(Receipted {
                        index,
                        id,
                        leaf,
                        duplicate,
                        tree_size: done.tree_size,
                        checkpoint: done.checkpoint.clone(),
                        receipt: receipt.to_bytes(),
                    })
                }),
            Item::Rejected(rejection) => Ok(Err(rejection)),
            Item::NotAppended => Err(Problem::internal("an event of a non-atomic group was not appended")),
        };
        let _ = r.reply.send(reply);
    }
}

/// Answer every request of `group` with `problem`.
fn answer_all(group: Vec<Request>, problem: &Problem) {
    for r in group {
        let _ = r.reply.send(Err(problem.clone()));
    }
}
