//! The read commands beside a running server on the same data directory:
//! they take no lock, write nothing, and see every event acknowledged
//! before they started (once the index has committed it).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::{agent, cli, Running, BIN};

impl Running {
    fn start(data: &Path) -> Running {
        Running::spawn(support::serve(data, "127.0.0.1:0").stderr(Stdio::null()), String::new)
    }

    fn terminate(self) -> i32 {
        self.stop().0
    }
}

fn ok(data: &Path, args: &[&str]) -> (String, String) {
    let (code, out, err) = cli(data, args);
    assert_eq!(code, 0, "sealtrail {args:?}: {out}{err}");
    assert!(!err.contains("lock"), "sealtrail {args:?}: {err}");
    (out, err)
}

/// Send `n` events in one batch; their ledger indices and ids.
fn ingest(agent: &ureq::Agent, base: &str, key: &str, round: usize, n: usize) -> Vec<(u64, String)> {
    let lines: Vec<String> = (0..n)
        .map(|k| {
            json!({"action": "order.placed", "actor": {"id": "shop"}, "outcome": if k % 3 == 0 { "failure" } else { "success" },
                   "targets": [{"type": "order", "id": format!("o-{round}-{k}")}], "duration_ms": k,
                   "message": format!("order {round}/{k}")})
            .to_string()
        })
        .collect();
    let mut resp = agent
        .post(format!("{base}/api/v1/logs/default/events/batch"))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/x-ndjson")
        .send(lines.join("\n"))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.body_mut().read_json().unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["index"].as_u64().unwrap(), i["id"].as_str().unwrap().to_string()))
        .collect()
}

/// Wait until the server's own search sees ledger index `last` (the index
/// commits in ledger order, so then everything before it is searchable).
fn wait_searchable(agent: &ureq::Agent, base: &str, key: &str, last: u64) {
    let started = Instant::now();
    loop {
        let mut resp = agent
            .get(format!("{base}/api/v1/logs/default/events?actor=shop&limit=1"))
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .unwrap();
        let body: Value = resp.body_mut().read_json().unwrap();
        let newest = body["events"][0]["index"].as_u64();
        if newest.is_some_and(|n| n >= last) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "index {last} never searchable: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn read_commands_work_while_the_server_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data);
    let (ingest_key, _) = ok(&data, &["keys", "create", "--scope", "ingest"]);
    let (read_key, _) = ok(&data, &["keys", "create", "--scope", "read"]);
    let (ingest_key, read_key) = (ingest_key.trim().to_string(), read_key.trim().to_string());

    // Ingest goes on throughout.
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ingester = {
        let (base, key, acked, stop) = (server.base.clone(), ingest_key.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let agent = agent();
            let mut round = 0;
            while !stop.load(Ordering::Acquire) && round < 2000 {
                let indices = ingest(&agent, &base, &key, round, 20);
                acked.lock().unwrap().extend(indices);
                round += 1;
            }
        })
    };
    let agent = agent();
    for _ in 0..3 {
        let waiting = Instant::now();
        while acked.lock().unwrap().len() < 40 {
            assert!(
                !ingester.is_finished(),
                "the ingester stopped before 40 events were acknowledged"
            );
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "40 events not acknowledged within 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let before: BTreeMap<u64, String> = acked.lock().unwrap().clone();
        let last = *before.keys().last().unwrap();
        let ids: BTreeSet<&str> = before.values().map(String::as_str).collect();
        wait_searchable(&agent, &server.base, &read_key, last);

        let (out, _) = ok(
            &data,
            &["query", "--actor", "shop", "--limit", "1000000", "--format", "jsonl"],
        );
        let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let seen: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert!(
            seen.is_superset(&ids),
            "query missed {:?}",
            ids.difference(&seen).collect::<Vec<_>>()
        );

        let (out, _) = ok(&data, &["stats", "--actor", "shop", "--format", "json"]);
        let stats: Value = serde_json::from_str(&out).unwrap();
        assert!(stats["total"].as_u64().unwrap() >= before.len() as u64, "{stats}");

        let (out, _) = ok(&data, &["checkpoint"]);
        let size: u64 = out.lines().nth(1).unwrap().parse().unwrap();
        assert!(size > last, "checkpoint of size {size} before index {last}");

        let (out, _) = ok(&data, &["verify"]);
        assert!(out.contains("intact"), "{out}");

        let (entry, _) = ok(&data, &["entry", &last.to_string()]);
        assert!(entry.contains("order.placed"), "{entry}");
        let (receipt, _) = ok(&data, &["prove", &last.to_string()]);
        assert!(!receipt.is_empty());

        let export = dir.path().join("export.jsonl");
        ok(
            &data,
            &[
                "export",
                "--actor",
                "shop",
                "--format",
                "jsonl",
                "--output",
                export.to_str().unwrap(),
            ],
        );
        assert!(std::fs::read_to_string(&export).unwrap().lines().count() >= before.len());
        let (out, _) = ok(&data, &["history", "order:o-0-1", "--format", "jsonl"]);
        assert_eq!(out.lines().count(), 1, "{out}");
        ok(&data, &["errors", "--limit", "5"]);
        ok(&data, &["performance", "--format", "json"]);
        ok(&data, &["query", "--actor", "shop", "--limit", "3", "--verify"]);
    }
    stop.store(true, Ordering::Release);
    ingester.join().unwrap();
    // The banner's hint names this binary so that it works as pasted.
    let banner = server.banner.lock().unwrap().join("\n");
    assert!(
        banner.contains(&format!(
            "`{} keys create --scope admin",
            std::fs::canonicalize(BIN).unwrap().display()
        )),
        "{banner}"
    );
    assert_eq!(server.terminate(), 0);
}
