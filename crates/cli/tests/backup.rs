//! `backup create`, `backup verify` and `restore` as a user runs them:
//! beside a running server that keeps ingesting, then the restored
//! directory served by a new server; damage found with exit 1 naming the
//! file; a non-empty target refused.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

mod support;

use support::{agent, cli, create_key, Running};

fn start(data: &Path) -> Running {
    Running::spawn(support::serve(data, "127.0.0.1:0").stderr(Stdio::null()), String::new)
}

fn ingest(agent: &ureq::Agent, base: &str, key: &str, round: usize) -> Vec<u64> {
    let lines: Vec<String> = (0..10)
        .map(|k| {
            json!({"action": "order.placed", "actor": {"id": "shop"}, "outcome": "success",
                        "targets": [{"type": "order", "id": format!("o-{round}-{k}")}]})
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
        .map(|i| i["index"].as_u64().unwrap())
        .collect()
}

#[test]
fn backup_beside_a_server_that_ingests_then_restore_and_serve_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(&data);
    let key = create_key(&data, "ingest", None);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ingester = {
        let (base, key, acked, stop) = (server.base.clone(), key.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let agent = agent();
            let mut round = 0;
            while !stop.load(Ordering::Acquire) && round < 5000 {
                let got = ingest(&agent, &base, &key, round);
                acked.lock().unwrap().extend(got);
                round += 1;
            }
        })
    };
    let dest = tmp.path().join("backup");
    let mut sizes = Vec::new();
    for round in 0..2 {
        while acked.lock().unwrap().len() < 50 * (round + 1) {
            assert!(!ingester.is_finished());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (code, out, err) = cli(&data, &["backup", "create", dest.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(!err.contains("lock"), "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["incremental"], round > 0);
        let size = report["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "default")
            .unwrap()["size"]
            .as_u64()
            .unwrap();
        assert!(size >= 50 * (round as u64 + 1), "{report}");
        sizes.push(size);
    }
    stop.store(true, Ordering::Release);
    ingester.join().unwrap();
    let (code, _, err) = cli(&data, &["backup", "verify", dest.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("intact"), "{err}");
    let (_, live_checkpoint, _) = cli(&data, &["checkpoint"]);
    assert_eq!(server.stop().0, 0);

    // A non-empty target is refused, exit 2, and left as it was.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("x"), "x").unwrap();
    let (code, _, err) = cli(&busy, &["restore", dest.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    let restored = tmp.path().join("restored");
    let (code, _, err) = cli(&restored, &["restore", dest.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&restored, &["checkpoint"]);
    assert_eq!(code, 0, "{err}");
    let size: u64 = out.lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(size, *sizes.last().unwrap());
    // Same log, same history: the live log's later checkpoint extends it.
    let live_size: u64 = live_checkpoint.lines().nth(1).unwrap().parse().unwrap();
    assert!(live_size >= size);
    let proof_ok =
        cli(&data, &["entry", &(size - 1).to_string()]).1 == cli(&restored, &["entry", &(size - 1).to_string()]).1;
    assert!(proof_ok, "entry {} differs", size - 1);
    // The restored directory serves: keys from meta.db work, the index is rebuilt.
    let server = start(&restored);
    let mut resp = agent()
        .post(format!("{}/api/v1/logs/default/events", server.base))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(json!({"action": "after.restore", "actor": {"id": "shop"}, "outcome": "success"}).to_string())
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let body: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(body["index"].as_u64(), Some(size), "{body}");
    assert_eq!(server.stop().0, 0);
}

#[test]
fn verify_names_the_damaged_file_and_restore_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, _, err) = cli(&data, &["init"]);
    assert_eq!(code, 0, "{err}");
    let o = support::run(&data, &["append", "--raw"], b"one\ntwo\nthree\n");
    assert!(o.status.success());
    let dest = tmp.path().join("backup");
    let (code, _, err) = cli(&data, &["backup", "create", dest.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let manifest = std::fs::read_to_string(dest.join("MANIFEST")).unwrap();
    let line = manifest
        .lines()
        .skip_while(|l| !l.ends_with(" logs/default/entries"))
        .nth(1)
        .unwrap();
    let sha = line.rsplit(' ').next().unwrap();
    let object = dest.join("objects").join(sha);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&object, &bytes).unwrap();
    let (code, _, err) = cli(&data, &["backup", "verify", dest.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("damaged: logs/default/entries"), "{err}");
    let restored = tmp.path().join("restored");
    let (code, _, err) = cli(&restored, &["restore", dest.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("logs/default/entries"), "{err}");
    assert!(!restored.exists());
}
