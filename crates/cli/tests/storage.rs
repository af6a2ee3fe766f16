//! Storage faults of the real server on a real, small file system: a tmpfs
//! of 16 MiB mounted as the data directory (the tests run as root). The
//! disk fills up under ingest (ENOSPC), writes stop without losing an
//! acknowledged event, resume without a restart once space is freed, and
//! shutdown after the fault still exits 0. Health reports the tmpfs, not
//! the root file system.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::{agent, cli, Running};

const TMPFS_BYTES: u64 = 16 << 20;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("THIS TEST NEEDS mount(8) TO MOUNT A TMPFS AND CANNOT RUN HERE: {e}"));
        assert!(
            out.status.success(),
            "THIS TEST NEEDS ROOT TO MOUNT A TMPFS AND CANNOT RUN HERE: mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir: dir.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server killed by a failed assertion may still hold files.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

impl Running {
    fn start(data: &Path, config: &Path, stderr: &Path) -> Running {
        let mut serve = support::serve(data, "127.0.0.1:0");
        serve
            .arg("--config")
            .arg(config)
            .stderr(std::fs::File::create(stderr).unwrap());
        Running::spawn(&mut serve, || {
            format!(": {}", std::fs::read_to_string(stderr).unwrap_or_default())
        })
    }

    fn terminate(self) -> i32 {
        self.stop().0
    }
}

fn key(data: &Path, scope: &str) -> String {
    support::create_key(data, scope, Some("storage"))
}

fn call(agent: &ureq::Agent, method: &str, url: &str, key: &str, body: Option<String>) -> (u16, Value, bool) {
    let mut resp = match body {
        Some(b) => agent
            .post(url)
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .send(b)
            .unwrap(),
        None => {
            assert_eq!(method, "GET");
            agent
                .get(url)
                .header("Authorization", format!("Bearer {key}"))
                .call()
                .unwrap()
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").is_some();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        retry_after,
    )
}

/// Acknowledged events: ledger index → id.
type Acked = BTreeMap<u64, String>;

/// Send batches until one is refused; returns the refusal. Tiny events
/// make each batch stored many times its request's size, so the ledger
/// meets the full disk (which the reserve check, sized by the request,
/// lets through with a reserve of 0).
fn ingest_until_refused(agent: &ureq::Agent, base: &str, key: &str, acked: &mut Acked) -> Value {
    let url = format!("{base}/api/v1/logs/default/events/batch");
    for _ in 0..100_000 {
        // About 9 KiB of request for about 120 KiB of ledger and index.
        let batch: Vec<Value> = (0..500).map(|_| json!({"action": "a.b"})).collect();
        let (status, body, _) = call(agent, "POST", &url, key, Some(Value::from(batch).to_string()));
        if status != 200 {
            assert_eq!(status, 503, "{body}");
            return body;
        }
        for item in body["items"].as_array().unwrap() {
            let prev = acked.insert(
                item["index"].as_u64().unwrap(),
                item["id"].as_str().unwrap().to_string(),
            );
            assert!(prev.is_none(), "index given twice: {item}");
        }
    }
    panic!("the disk never filled up");
}

fn log_health(agent: &ureq::Agent, base: &str, key: &str) -> (Value, Value) {
    let (status, h, _) = call(agent, "GET", &format!("{base}/api/v1/system/health"), key, None);
    assert_eq!(status, 200, "{h}");
    let log = h["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "default")
        .cloned()
        .unwrap();
    (h, log)
}

/// Fill the file system of `dir` up to `leave` free bytes with a ballast file.
fn ballast(dir: &Path, name: &str, free: u64, leave: u64) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 1 << 16];
    let mut left = free.saturating_sub(leave);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    path
}

#[test]
fn a_full_disk_stops_writes_then_they_resume_without_restart_and_nothing_acknowledged_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let fs = Tmpfs::mount(&mnt);
    let data = fs.dir.join("data");
    let config = tmp.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        "[health]\ndisk_warning_percent = 100.0\ndisk_critical_percent = 100.0\ndisk_reserve_bytes = 0\n\
         [integrity]\nscrub_interval_ms = 20\n[index]\nvisibility_ms = 50\n",
    )
    .unwrap();
    let stderr = tmp.path().join("stderr");
    let server = Running::start(&data, &config, &stderr);
    let ingest = key(&data, "ingest");
    let read = key(&data, "read");
    let agent = agent();

    // Health describes the tmpfs the data directory is on.
    let (h, _) = log_health(&agent, &server.base, &read);
    assert_eq!(h["disk"]["total_bytes"], TMPFS_BYTES, "{h}");
    assert!(h["data_dir"].as_str().unwrap().contains("mnt"), "{h}");

    let mut acked = Acked::new();
    let free = h["disk"]["free_bytes"].as_u64().unwrap();
    let weight = ballast(&fs.dir, "ballast", free, 512 << 10);
    let refusal = ingest_until_refused(&agent, &server.base, &ingest, &mut acked);
    assert!(acked.len() >= 500, "nothing was stored before the disk filled");
    // The ledger met the full disk: the log is stopped, and says why.
    let (h, log) = log_health(&agent, &server.base, &read);
    assert_eq!(log["status"], "poisoned", "{refusal} {h}");
    assert!(log["poisoned"].as_str().unwrap().contains("No space left"), "{log}");
    assert!(!refusal.to_string().contains("/mnt/"), "a path in {refusal}");
    let url = format!("{}/api/v1/logs/default/events", server.base);
    let (status, body, retry_after) = call(
        &agent,
        "POST",
        &url,
        &ingest,
        Some(json!({"action": "a.b"}).to_string()),
    );
    assert_eq!(status, 503, "{body}");
    assert!(retry_after, "{body}");
    let (status, _, _) = call(&agent, "GET", &format!("{}/readyz", server.base), &read, None);
    assert_eq!(status, 503);

    // Space comes back: the log resumes by itself, from its durable state.
    std::fs::remove_file(&weight).unwrap();
    let started = Instant::now();
    let log = loop {
        let (_, log) = log_health(&agent, &server.base, &read);
        // The recovery is counted just after the log resumes.
        if log["status"] == "ok" && log["recoveries"] != 0 {
            break log;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not resume: {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(log["recoveries"], 1, "{log}");
    let (status, body, _) = call(
        &agent,
        "POST",
        &url,
        &ingest,
        Some(json!({"action": "a.b"}).to_string()),
    );
    assert_eq!(status, 201, "{body}");
    acked.insert(
        body["index"].as_u64().unwrap(),
        body["id"].as_str().unwrap().to_string(),
    );
    let (_, metrics, _) = call(&agent, "GET", &format!("{}/metrics", server.base), &read, None);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("sealtrail_log_recoveries_total{log=\"default\"} 1"),
        "{metrics}"
    );

    // Full again, and stopped while full: the exit is still clean.
    let (h, _) = log_health(&agent, &server.base, &read);
    let free = h["disk"]["free_bytes"].as_u64().unwrap();
    let _weight = ballast(&fs.dir, "ballast2", free, 512 << 10);
    ingest_until_refused(&agent, &server.base, &ingest, &mut acked);
    assert_eq!(server.terminate(), 0, "{}", std::fs::read_to_string(&stderr).unwrap());
    std::fs::remove_file(&_weight).unwrap();

    // After a restart every acknowledged event is there, in its place.
    let server = Running::start(&data, &config, &stderr);
    let stored: Acked = support::stored_ids(&server.base, |url| {
        let (status, page, _) = call(&agent, "GET", url, &read, None);
        (status, page)
    });
    for (index, id) in &acked {
        assert_eq!(
            stored.get(index),
            Some(id),
            "acknowledged event {id} is not at index {index}"
        );
    }
    assert_eq!(server.terminate(), 0);
    let (code, out, err) = cli(&data, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Flip one bit of entry `index`'s data in `data`'s default log.
fn flip(data: &Path, index: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let dir = data.join("logs/default");
    let mut offset = [0u8; 8];
    std::fs::File::open(dir.join("index"))
        .unwrap()
        .read_exact_at(&mut offset, 16 + 8 * index)
        .unwrap();
    let record = u64::from_be_bytes(offset);
    let entries = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("entries"))
        .unwrap();
    let mut b = [0u8; 1];
    entries.read_exact_at(&mut b, record + 12).unwrap();
    entries.write_all_at(&[b[0] ^ 0x10], record + 12).unwrap();
    record
}

#[test]
fn an_entry_tampered_with_while_the_server_was_down_is_found_and_nothing_is_signed_over_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("sealtrail.toml");
    std::fs::write(&config, "[integrity]\nscrub_interval_ms = 20\nscrub_period_s = 1\n").unwrap();
    let stderr = tmp.path().join("stderr");
    let server = Running::start(&data, &config, &stderr);
    let ingest = key(&data, "ingest");
    let read = key(&data, "read");
    let agent = agent();
    let url = format!("{}/api/v1/logs/default/events/batch", server.base);
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"action": "a.b", "message": format!("{i}")}))
        .collect();
    let (status, body, _) = call(&agent, "POST", &url, &ingest, Some(Value::from(batch).to_string()));
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(server.terminate(), 0);
    let (_, before, _) = cli(&data, &["checkpoint"]);

    flip(&data, 2);
    let server = Running::start(&data, &config, &stderr);
    // Nobody reads it: the scrub's first whole-log pass finds it.
    let started = Instant::now();
    let problem = loop {
        let (status, body, _) = call(&agent, "GET", &format!("{}/readyz", server.base), &read, None);
        if status == 503 {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still ready: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(problem["type"], "urn:sealtrail:problem:integrity-failure", "{problem}");
    let (_, log) = log_health(&agent, &server.base, &read);
    assert_eq!(
        (&log["status"], &log["damaged"]["entry"]),
        (&json!("damaged"), &json!(2)),
        "{log}"
    );
    let (status, body, _) = call(
        &agent,
        "GET",
        &format!("{}/api/v1/logs/default/events/{}", server.base, ids[2]),
        &read,
        None,
    );
    assert_eq!(
        (status, &body["type"]),
        (503, &json!("urn:sealtrail:problem:integrity-failure")),
        "{body}"
    );
    assert!(
        !body.to_string().contains(tmp.path().to_str().unwrap()),
        "a path in {body}"
    );
    let batch = json!([{"action": "a.b"}]).to_string();
    let url = format!("{}/api/v1/logs/default/events/batch", server.base);
    let (status, body, _) = call(&agent, "POST", &url, &ingest, Some(batch));
    assert_eq!(
        (status, &body["type"]),
        (503, &json!("urn:sealtrail:problem:integrity-failure")),
        "{body}"
    );
    // Shutdown is clean and signs nothing over the damage.
    assert_eq!(server.terminate(), 0, "{}", std::fs::read_to_string(&stderr).unwrap());
    let (_, after, _) = cli(&data, &["checkpoint"]);
    assert_eq!(after, before);
}
