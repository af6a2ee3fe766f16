//! The real server, as a separate process on 127.0.0.1:0: concurrent
//! clients, kill -9 in the middle of ingest, and graceful shutdown.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::{agent, cli, Running};

impl Running {
    fn start(data: &Path) -> Running {
        Running::spawn(support::serve(data, "127.0.0.1:0").stderr(Stdio::piped()), String::new)
    }

    fn terminate(self) -> (i32, String) {
        self.stop()
    }
}

fn key(data: &Path, scope: &str) -> String {
    support::create_key(data, scope, Some("e2e"))
}

fn post(agent: &ureq::Agent, url: &str, key: &str, content_type: &str, body: String) -> Result<(u16, Value), String> {
    let mut resp = agent
        .post(url)
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", content_type)
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?))
}

fn get(agent: &ureq::Agent, url: &str, key: &str) -> (u16, Value) {
    let mut resp = agent
        .get(url)
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn event(client: usize, n: usize) -> Value {
    json!({"action": "order.placed", "actor": {"id": format!("client-{client}")}, "message": format!("order {n}")})
}

/// Acknowledged events by ledger index: (id, client, n).
type Acked = BTreeMap<u64, (String, usize, usize)>;

#[test]
fn concurrent_clients_lose_nothing_and_get_unique_contiguous_indices() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data);
    let ingest = key(&data, "ingest");
    let acked = Arc::new(Mutex::new(Acked::new()));
    let threads: Vec<_> = (0..8)
        .map(|c| {
            let (base, ingest, acked) = (server.base.clone(), ingest.clone(), acked.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for n in 0..60 {
                    if c % 2 == 0 {
                        // Single events.
                        let url = format!("{base}/api/v1/logs/default/events");
                        let (status, body) =
                            post(&agent, &url, &ingest, "application/json", event(c, n).to_string()).unwrap();
                        assert_eq!(status, 201, "{body}");
                        let index = body["index"].as_u64().unwrap();
                        let prev = acked
                            .lock()
                            .unwrap()
                            .insert(index, (body["id"].as_str().unwrap().to_string(), c, n));
                        assert!(prev.is_none(), "index {index} acknowledged twice");
                    } else {
                        // NDJSON batches of 5.
                        let url = format!("{base}/api/v1/logs/default/events/batch");
                        let lines: Vec<String> = (0..5).map(|k| event(c, n * 5 + k).to_string()).collect();
                        let (status, body) =
                            post(&agent, &url, &ingest, "application/x-ndjson", lines.join("\n")).unwrap();
                        assert_eq!(status, 200, "{body}");
                        for (k, item) in body["items"].as_array().unwrap().iter().enumerate() {
                            assert_eq!(item["status"], "stored");
                            let index = item["index"].as_u64().unwrap();
                            let prev = acked
                                .lock()
                                .unwrap()
                                .insert(index, (item["id"].as_str().unwrap().to_string(), c, n * 5 + k));
                            assert!(prev.is_none(), "index {index} acknowledged twice");
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let total = 4 * 60 + 4 * 60 * 5;
    assert_eq!(acked.len(), total);
    // Contiguous from 0: no gap, nothing else in the log.
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (0..total as u64).collect::<Vec<_>>()
    );
    let read = key(&data, "read");
    let (_, logs) = get(&agent(), &format!("{}/api/v1/logs", server.base), &read);
    let default = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "default")
        .unwrap();
    assert_eq!(default["size"], total);
    // Each client's events are in the log in the order it sent them.
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    for (c, n) in acked.values().map(|(_, c, n)| (*c, *n)) {
        if let Some(prev) = last.insert(c, n) {
            assert!(n > prev, "client {c} sent {prev} before {n}");
        }
    }
    let (code, _) = server.terminate();
    assert_eq!(code, 0);
    let (code, out, err) = cli(&data, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Single events from many clients at once are stored in groups; each
/// request still gets its own answer: a receipt for its own event, a 422
/// naming the field for a bad one, and for a shared idempotency key one
/// 201 and the original's index for every other sender.
#[test]
fn grouped_single_events_each_get_their_own_answer() {
    use sealtrail_merkle::{Receipt, Verifier};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data);
    let ingest = key(&data, "ingest");
    let url = format!("{}/api/v1/logs/default/events", server.base);
    // (client, n, status, body)
    let answers = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..16)
        .map(|c| {
            let (url, ingest, answers) = (url.clone(), ingest.clone(), answers.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for n in 0..30 {
                    let body = match n % 10 {
                        // Every client sends the same idempotency key for n = 0, 10, 20.
                        0 => json!({"action": "invoice.sent", "idempotency_key": format!("shared-{n}"),
                                    "actor": {"id": format!("client-{c}")}}),
                        7 => json!({"actor": {"id": format!("client-{c}")}, "message": "no action"}),
                        8 => json!({"action": "order.placed", "duration_ms": "slow"}),
                        _ => event(c, n),
                    };
                    let (status, answer) = post(&agent, &url, &ingest, "application/json", body.to_string()).unwrap();
                    answers.lock().unwrap().push((c, n, status, answer));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let verifier_text = std::fs::read_to_string(data.join("logs/default/log.pub")).unwrap();
    let verifier = Verifier::parse(verifier_text.trim()).unwrap();
    let mut stored: BTreeMap<u64, String> = BTreeMap::new();
    let mut shared: BTreeMap<usize, Vec<(u16, u64, String)>> = BTreeMap::new();
    for (c, n, status, answer) in &answers {
        match n % 10 {
            7 => {
                assert_eq!(*status, 422, "client {c} event {n}: {answer}");
                assert_eq!(answer["errors"][0]["field"], "action", "{answer}");
                continue;
            }
            8 => {
                assert_eq!(*status, 422, "client {c} event {n}: {answer}");
                assert_eq!(answer["errors"][0]["field"], "duration_ms", "{answer}");
                continue;
            }
            _ => {}
        }
        let index = answer["index"].as_u64().unwrap();
        let id = answer["id"].as_str().unwrap().to_string();
        // The receipt proves this answer's own leaf at this answer's own index.
        let receipt = Receipt::parse(answer["receipt"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(receipt.index, index);
        let leaf: [u8; 32] = base64_decode(answer["leaf_hash"].as_str().unwrap()).try_into().unwrap();
        receipt.verify(&leaf, &verifier).unwrap();
        if n % 10 == 0 {
            shared.entry(*n).or_default().push((*status, index, id));
        } else {
            assert_eq!(*status, 201, "client {c} event {n}: {answer}");
            assert_eq!(answer["duplicate"], false);
            assert!(stored.insert(index, id).is_none(), "index {index} acknowledged twice");
        }
    }
    for (n, senders) in &shared {
        assert_eq!(senders.len(), 16);
        let created: Vec<_> = senders.iter().filter(|(status, _, _)| *status == 201).collect();
        assert_eq!(created.len(), 1, "key shared-{n}: {senders:?}");
        let (_, index, id) = created[0];
        for (status, i, other) in senders {
            assert!(*status == 201 || *status == 200, "{senders:?}");
            assert_eq!(
                (i, other),
                (index, id),
                "key shared-{n}: every sender gets the original: {senders:?}"
            );
        }
        assert!(stored.insert(*index, id.clone()).is_none());
    }
    // 16 clients × 21 events of their own each (30 sent, 6 refused, 3 with
    // shared keys), then one per shared key: nothing else in the log, no gap.
    let total = 16 * 21 + 3;
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (0..total as u64).collect::<Vec<_>>()
    );
    // Each event read back is the one its answer named.
    let read = key(&data, "read");
    let agent = agent();
    for (index, id) in stored.iter().step_by(17) {
        let (status, event) = get(&agent, &format!("{url}/{id}"), &read);
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["index"].as_u64(), Some(*index), "{event}");
        assert_eq!(event["event"]["id"].as_str(), Some(id.as_str()), "{event}");
    }
    let (code, _) = server.terminate();
    assert_eq!(code, 0);
    let (code, out, err) = cli(&data, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// Send batches from 4 threads until told to stop; every acknowledged
/// event lands in `acked`.
fn ingest_until(
    base: &str,
    key: &str,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<Acked>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|c| {
            let (base, key, stop, acked) = (base.to_string(), key.to_string(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let url = format!("{base}/api/v1/logs/default/events/batch");
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let batch: Vec<Value> = (0..50).map(|k| event(c, n + k)).collect();
                    // A refused connection or a cut-off answer means "not
                    // acknowledged": the client would retry.
                    let Ok((200, body)) = post(&agent, &url, &key, "application/json", Value::from(batch).to_string())
                    else {
                        return;
                    };
                    for (k, item) in body["items"].as_array().unwrap().iter().enumerate() {
                        let index = item["index"].as_u64().unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .insert(index, (item["id"].as_str().unwrap().to_string(), c, n + k));
                    }
                    n += 50;
                }
            })
        })
        .collect()
}

fn check_present(data: &Path, acked: &Acked) {
    let server = Running::start(data);
    let read = key(data, "read");
    let agent = agent();
    // A few by id, then all of them page by page.
    for (index, (id, _, _)) in acked.iter().step_by(97).chain(acked.iter().next_back()) {
        let (status, body) = get(
            &agent,
            &format!("{}/api/v1/logs/default/events/{id}", server.base),
            &read,
        );
        assert_eq!(status, 200, "acknowledged event {id} at {index} is missing: {body}");
        assert_eq!(body["index"], *index);
    }
    let stored = support::stored_ids(&server.base, |url| get(&agent, url, &read));
    for (index, (id, _, _)) in acked {
        assert_eq!(
            stored.get(index),
            Some(id),
            "acknowledged event {id} is not at index {index}"
        );
    }
    let (code, _) = server.terminate();
    assert_eq!(code, 0);
    let (code, out, err) = cli(data, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn kill_9_during_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data);
    let ingest = key(&data, "ingest");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::new()));
    let threads = ingest_until(&server.base, &ingest, &stop, &acked);
    let started = Instant::now();
    while acked.lock().unwrap().len() < 2_000 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 2_000,
        "only {} acknowledged before the kill",
        acked.len()
    );
    check_present(&data, &acked);
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data);
    let ingest = key(&data, "ingest");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::new()));
    let threads = ingest_until(&server.base, &ingest, &stop, &acked);
    let started = Instant::now();
    while acked.lock().unwrap().len() < 500 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server acknowledged too little"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, stderr) = server.terminate();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    let acked = acked.lock().unwrap().clone();
    // The final checkpoint covers everything in the log, and the log holds
    // every acknowledged event.
    let (code, checkpoint, _) = cli(&data, &["checkpoint"]);
    assert_eq!(code, 0);
    let size: u64 = checkpoint.lines().nth(1).unwrap().parse().unwrap();
    assert!(size >= acked.len() as u64);
    check_present(&data, &acked);
}
