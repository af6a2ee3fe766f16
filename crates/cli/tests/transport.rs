//! `sealtrail serve` as a separate process against clients that never
//! finish: SIGTERM still ends it within `http.shutdown_timeout_ms`, with a
//! final checkpoint; and its log lines on standard error.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::{cli, BIN};

/// Start `sealtrail serve` on a free port; its address.
fn serve(data: &Path, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut serve = support::serve(data, "127.0.0.1:0");
    serve
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped());
    let (child, addr, _) = support::spawn_serve(&mut serve, String::new);
    (child, addr)
}

/// SIGTERM `child`; its exit code and standard error, and how long it took
/// to exit (at most `limit`, else the test fails).
fn terminate(mut child: Child, limit: Duration) -> (i32, String, Duration) {
    let started = Instant::now();
    support::sigterm(&child);
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait().unwrap();
        let _ = tx.send(status);
        child
    });
    let Ok(status) = rx.recv_timeout(limit) else {
        panic!("sealtrail serve did not exit within {limit:?} of SIGTERM");
    };
    let took = started.elapsed();
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    (status.code().unwrap_or(-1), text, took)
}

fn key(data: &Path, scope: &str) -> String {
    support::create_key(data, scope, Some("e2e"))
}

/// One request on a new connection; the status and the raw answer.
fn request(addr: &str, raw: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

fn post_event(addr: &str, key: &str, n: usize) -> u16 {
    let body = json!({"action": "order.placed", "message": format!("order {n}")}).to_string();
    let raw = format!(
        "POST /api/v1/logs/default/events HTTP/1.1\r\nhost: t\r\nconnection: close\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    request(addr, &raw).0
}

#[test]
fn sigterm_with_a_stalled_request_exits_0_at_the_deadline_with_a_final_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, addr) = serve(
        &data,
        &[],
        &[
            ("SEALTRAIL_HTTP_SHUTDOWN_TIMEOUT_MS", "300"),
            // Only the shutdown deadline can end the stalled requests.
            ("SEALTRAIL_HTTP_BODY_TIMEOUT_MS", "600000"),
            ("SEALTRAIL_HTTP_HEADER_TIMEOUT_MS", "600000"),
        ],
    );
    let ingest = key(&data, "ingest");
    for n in 0..10 {
        assert_eq!(post_event(&addr, &ingest, n), 201);
    }
    // A request whose body never finishes, and one whose header never does.
    let mut stalled_body = TcpStream::connect(&addr).unwrap();
    write!(
        stalled_body,
        "POST /api/v1/logs/default/events HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {ingest}\r\n\
         content-type: application/json\r\ncontent-length: 500\r\n\r\n{{\"action\":"
    )
    .unwrap();
    let mut stalled_header = TcpStream::connect(&addr).unwrap();
    stalled_header.write_all(b"GET /healthz HTTP/1.1\r\nhost:").unwrap();
    // Both are being served before the signal.
    assert_eq!(
        request(&addr, "GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").0,
        200
    );
    let (code, stderr, took) = terminate(child, Duration::from_secs(10));
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}: {stderr}");
    assert!(stderr.contains("shutdown_timeout_ms"), "{stderr}");
    assert!(stderr.contains("final checkpoint"), "{stderr}");
    // The final checkpoint covers every acknowledged event.
    let (code, checkpoint, err) = cli(&data, &["checkpoint"]);
    assert_eq!(code, 0, "{err}");
    let size: u64 = checkpoint.lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(size, 10, "{checkpoint}");
    let (code, out, err) = cli(&data, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn log_format_json_writes_json_lines_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, addr) = serve(&data, &["--log-format", "json"], &[]);
    let (status, answer) = request(
        &addr,
        "GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\nx-request-id: json-log-1\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(answer.contains("x-request-id: json-log-1"), "{answer}");
    let (code, stderr, _) = terminate(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("started")), "{stderr}");
    assert!(messages.iter().any(|m| m.contains("stopped")), "{stderr}");
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string()),
        "{stderr}"
    );

    // Text is the default; a level from the configuration file.
    let config = dir.path().join("sealtrail.toml");
    std::fs::write(&config, "[log]\nlevel = \"warn\"\n").unwrap();
    let (child, _) = serve(&data, &["--config", config.to_str().unwrap()], &[]);
    let (code, stderr, _) = terminate(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("started"), "info lines at level warn: {stderr}");
    let bad = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "xml", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("json or text"));
}
