//! Alerts end to end: the real server as a separate process, a real HTTP
//! receiver on loopback that checks each webhook's HMAC signature, and
//! kill -9 while the receiver is down.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use serde_json::{json, Value};

mod support;

use support::{agent, cli, Running, BIN};

const SECRET: &str = "whsec-test-3f9a";

impl Running {
    fn start(data: &Path, config: &Path) -> Running {
        let mut serve = support::serve(data, "127.0.0.1:0");
        serve.arg("--config").arg(config).stderr(Stdio::inherit());
        Running::spawn(&mut serve, String::new)
    }

    fn terminate(self) -> i32 {
        self.stop().0
    }
}

fn key(data: &Path, scope: &str) -> String {
    support::create_key(data, scope, None)
}

fn call(method: &str, url: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let agent = agent();
    let auth = format!("Bearer {key}");
    let resp = match (method, body) {
        ("GET", _) => agent.get(url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent.delete(url).header("Authorization", &auth).call(),
        ("PUT", Some(b)) => agent
            .put(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(b.to_string()),
        (_, b) => agent
            .post(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(b.unwrap_or(Value::Null).to_string()),
    };
    let mut resp = resp.unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Check the signature as a receiver should: HMAC-SHA256 over
    /// "<timestamp>.<body>" with the shared secret.
    fn verify_signature(&self) {
        let ts = self.header("Sealtrail-Timestamp").expect("no Sealtrail-Timestamp");
        let sig = self.header("Sealtrail-Signature").expect("no Sealtrail-Signature");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sig, format!("v1={want}"), "signature does not verify");
        let age = jiff::Timestamp::now().as_second() - ts.parse::<i64>().unwrap();
        assert!((-5..300).contains(&age), "timestamp {ts} is {age} s old");
    }
}

/// A real HTTP/1.1 receiver on a loopback port, answering 204 to every POST.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Receiver { port, got }
    }

    fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(stream: TcpStream, sink: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        sink.lock().unwrap().push(Received { headers, body });
        let mut w = &stream;
        w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    }
}

fn config(dir: &Path, receiver_port: u16) -> std::path::PathBuf {
    let path = dir.join("sealtrail.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[alerts]
interval_ms = 50
# The receiver listens on loopback, which channels may not reach by default.
allowed_networks = ["127.0.0.0/8"]
retry_base_ms = 200
retry_max_ms = 1000
max_attempts = 100

[[alerts.channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{receiver_port}/sealtrail"
secret = "{SECRET}"
headers = {{ X-Team = "compliance" }}

[[alerts.rules]]
name = "invoice-deleted"
condition = {{ type = "any" }}
filter = {{ action = "invoice.deleted" }}
level = "critical"
channels = ["hook"]

[[alerts.rules]]
name = "brute-force"
condition = {{ type = "frequency", threshold = 3, window = "5m" }}
filter = {{ action = "login.*", outcome = "failure" }}
group_by = ["actor.id"]
channels = ["hook"]
"#
        ),
    )
    .unwrap();
    path
}

fn ingest(base: &str, key: &str, events: &[Value]) -> Vec<String> {
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    let resp = agent()
        .post(&format!("{base}/api/v1/logs/default/events/batch"))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/x-ndjson")
        .send(lines.join("\n"));
    let body: Value = resp.unwrap().body_mut().read_json().unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn failed_login(actor: &str) -> Value {
    json!({"action": "login.failed", "outcome": "failure", "actor": {"id": actor}})
}

#[test]
fn rules_fire_signed_webhooks_and_every_alert_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap());
    let server = Running::start(&data, &config(dir.path(), receiver.port));
    let (ingest_key, admin) = (key(&data, "ingest"), key(&data, "admin"));

    let ids = ingest(
        &server.base,
        &ingest_key,
        &[
            failed_login("u-1"),
            failed_login("u-2"),
            json!({"action": "invoice.deleted", "actor": {"id": "u-9"}, "targets": [{"type": "invoice", "id": "INV-1"}]}),
            failed_login("u-1"),
            json!({"action": "login.succeeded", "outcome": "success", "actor": {"id": "u-1"}}),
            failed_login("u-1"),
        ],
    );
    let got = receiver.wait_for(2, Duration::from_secs(20));
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        r.verify_signature();
        assert_eq!(r.header("X-Team"), Some("compliance"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.header("Sealtrail-Event"), Some("fired"));
    }
    let mut payloads: Vec<Value> = got.iter().map(Received::json).collect();
    payloads.sort_by_key(|p| p["rule"].as_str().unwrap().to_string());
    let (brute, deleted) = (&payloads[0], &payloads[1]);
    assert_eq!(brute["version"], 1);
    assert_eq!(brute["rule"], "brute-force");
    assert_eq!(brute["condition"], "frequency");
    assert_eq!(brute["group"], json!({"actor.id": "u-1"}));
    assert_eq!(brute["indices"], json!([0, 3, 5]));
    assert_eq!(brute["event_ids"], json!([ids[0], ids[3], ids[5]]));
    assert_eq!(deleted["rule"], "invoice-deleted");
    assert_eq!(deleted["level"], "critical");
    assert_eq!(deleted["event_ids"], json!([ids[2]]));
    assert_eq!(deleted["summary"], "invoice.deleted by u-9 on invoice:INV-1");

    // The API shows both alerts and their deliveries.
    let (status, alerts) = call("GET", &format!("{}/api/v1/alerts", server.base), &admin, None);
    assert_eq!(status, 200, "{alerts}");
    let statuses: Vec<(&str, &str)> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["rule"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses.len(), 2, "{alerts}");
    assert!(statuses.contains(&("brute-force", "firing")) && statuses.contains(&("invoice-deleted", "fired")));
    let (_, firing) = call(
        "GET",
        &format!("{}/api/v1/alerts?status=firing", server.base),
        &admin,
        None,
    );
    assert_eq!(firing.as_array().unwrap().len(), 1);
    let (_, sent) = call(
        "GET",
        &format!("{}/api/v1/notifications?status=delivered", server.base),
        &admin,
        None,
    );
    assert_eq!(sent.as_array().unwrap().len(), 2, "{sent}");

    // A silence mutes the rule: the alert is recorded, nobody is told.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let (status, silence) = call(
        "POST",
        &format!("{}/api/v1/silences", server.base),
        &admin,
        Some(json!({"rule": "invoice-deleted", "until": until.to_string(), "comment": "cleanup"})),
    );
    assert_eq!(status, 201, "{silence}");
    std::thread::sleep(Duration::from_millis(300));
    ingest(
        &server.base,
        &ingest_key,
        &[json!({"action": "invoice.deleted", "actor": {"id": "u-9"}})],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let silenced = loop {
        let (_, alerts) = call("GET", &format!("{}/api/v1/alerts", server.base), &admin, None);
        let newest = alerts[0].clone();
        if alerts.as_array().unwrap().len() == 3 || Instant::now() > deadline {
            break newest;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(silenced["silenced"], true, "{silenced}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.got.lock().unwrap().len(), 2, "a silenced alert was sent");

    // Rules are managed over the API too; a bad one names its field.
    let (status, problem) = call(
        "POST",
        &format!("{}/api/v1/alert-rules", server.base),
        &admin,
        Some(json!({"name": "x", "condition": {"type": "frequency", "threshold": 3, "window": "5 minutes"}})),
    );
    assert_eq!(status, 422, "{problem}");
    // The tagged condition is read whole, so the path ends at `condition`;
    // the message names the bad value.
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("condition: \"5 minutes\": unknown unit"),
        "{problem}"
    );
    let (status, _) = call("DELETE", &format!("{}/api/v1/channels/hook", server.base), &admin, None);
    assert_eq!(status, 409, "a channel in use cannot be deleted");
    let (status, _) = call("GET", &format!("{}/api/v1/alert-rules", server.base), &ingest_key, None);
    assert_eq!(status, 403);

    // The test-send reaches the receiver at once.
    let (status, result) = call(
        "POST",
        &format!("{}/api/v1/notify/test", server.base),
        &admin,
        Some(json!({"channel": "hook"})),
    );
    assert_eq!((status, &result["delivered"]), (200, &json!(true)), "{result}");
    let got = receiver.wait_for(3, Duration::from_secs(5));
    assert_eq!(got[2].header("Sealtrail-Event"), Some("test"));
    got[2].verify_signature();

    // Every alert is in the system log (moved there from the metadata
    // database's queue within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = call(
            "GET",
            &format!("{}/api/v1/logs/system/events?action=alert.fired&limit=10", server.base),
            &admin,
            None,
        );
        assert_eq!(status, 200, "{page}");
        let fired = page["events"].as_array().unwrap();
        if fired.len() == 3 {
            let silenced: Vec<&Value> = fired.iter().map(|e| &e["event"]["details"]["silenced"]).collect();
            assert_eq!(silenced.iter().filter(|s| ***s == json!(true)).count(), 1, "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.terminate(), 0);
}

#[test]
fn a_notification_queued_while_the_receiver_is_down_survives_kill_9_and_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Reserve a port, then free it: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = config(dir.path(), port);
    let server = Running::start(&data, &config);
    let (ingest_key, admin) = (key(&data, "ingest"), key(&data, "admin"));
    ingest(
        &server.base,
        &ingest_key,
        &[json!({"action": "invoice.deleted", "actor": {"id": "u-9"}})],
    );
    // Wait until delivery has been tried and failed at least once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, rows) = call("GET", &format!("{}/api/v1/notifications", server.base), &admin, None);
        let attempts = rows[0]["attempts"].as_u64().unwrap_or(0);
        if attempts >= 1 {
            assert_eq!(rows[0]["status"], "pending", "{rows}");
            break;
        }
        assert!(Instant::now() < deadline, "no delivery attempt: {rows}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();

    let receiver = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let server = Running::start(&data, &config);
    let got = receiver.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "not delivered after the restart");
    got[0].verify_signature();
    assert_eq!(got[0].json()["rule"], "invoice-deleted");
    // Give a duplicate every chance to appear.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.got.lock().unwrap().len(), 1, "delivered twice");
    // The alert was raised once: the restart did not evaluate the event again.
    let (_, alerts) = call("GET", &format!("{}/api/v1/alerts", server.base), &admin, None);
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(server.terminate(), 0);
}

#[test]
fn events_stored_before_a_kill_9_are_evaluated_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap());
    // A slow evaluator: the events are stored long before it looks.
    let config = config(dir.path(), receiver.port);
    let slow = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval_ms = 50", "interval_ms = 5000");
    std::fs::write(&config, slow).unwrap();
    let server = Running::start(&data, &config);
    let ingest_key = key(&data, "ingest");
    // Let the evaluator save where it starts, then store and crash.
    std::thread::sleep(Duration::from_millis(300));
    ingest(
        &server.base,
        &ingest_key,
        &[failed_login("u-7"), failed_login("u-7"), failed_login("u-7")],
    );
    server.kill9();
    let fast = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval_ms = 5000", "interval_ms = 50");
    std::fs::write(&config, fast).unwrap();
    let server = Running::start(&data, &config);
    let got = receiver.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["group"], json!({"actor.id": "u-7"}));
    assert_eq!(server.terminate(), 0);
}

#[test]
fn the_cli_manages_rules_channels_and_silences() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let channel = dir.path().join("channel.json");
    std::fs::write(
        &channel,
        json!({"name": "ops", "type": "slack", "url": "https://hooks.slack.com/services/T/B/X"}).to_string(),
    )
    .unwrap();
    let rule = dir.path().join("rule.toml");
    std::fs::write(
        &rule,
        r#"
name = "new-ip"
condition = { type = "new_value", field = "context.ip" }
filter = { action = "login.succeeded" }
group_by = ["actor.id"]
channels = ["ops"]
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let (code, out, err) = cli(&data, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    // A rule naming a channel that does not exist is refused.
    let (code, _, err) = cli(&data, &["alerts", "rules", "put", rule.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("channels[0]: no channel named \"ops\""), "{err}");
    assert_eq!(
        run(&["alerts", "channels", "put", channel.to_str().unwrap()]),
        "created channel ops\n"
    );
    assert_eq!(
        run(&["alerts", "rules", "put", rule.to_str().unwrap()]),
        "created rule new-ip\n"
    );
    assert!(run(&["alerts", "rules", "list"]).starts_with("new-ip\tnew_value\tenabled\tops\tapi\t"));
    run(&["alerts", "rules", "disable", "new-ip"]);
    let shown: Value = serde_json::from_str(&run(&["alerts", "rules", "show", "new-ip"])).unwrap();
    assert_eq!(shown["enabled"], false);
    assert_eq!(shown["condition"], json!({"type": "new_value", "field": "context.ip"}));
    let out = run(&[
        "alerts",
        "silence",
        "--rule",
        "new-ip",
        "--group",
        "actor.id=u-1",
        "--for",
        "2h",
    ]);
    assert!(out.starts_with("silence 1 until "), "{out}");
    assert!(run(&["alerts", "silences"]).starts_with("1\tnew-ip\tactor.id=u-1\tuntil "));
    run(&["alerts", "unsilence", "1"]);
    assert_eq!(run(&["alerts", "silences"]), "");
    let (code, _, err) = cli(&data, &["alerts", "silence", "--group", "nope", "--for", "1h"]);
    assert_ne!(code, 0);
    assert!(err.contains("FIELD=VALUE"), "{err}");
    run(&["alerts", "rules", "delete", "new-ip"]);
    run(&["alerts", "channels", "delete", "ops"]);
    // Each change is recorded in the system log.
    let (code, out, err) = cli(
        &data,
        &["query", "--log", "system", "--action", "alert_*", "--format", "jsonl"],
    );
    assert_eq!(code, 0, "{err}");
    let actions: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for want in [
        "alert_channel.created",
        "alert_rule.created",
        "alert_rule.updated",
        "alert_rule.deleted",
        "alert_channel.deleted",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want} missing from {actions:?}");
    }
}

#[test]
fn the_cli_bounds_keys_and_channels_and_obeys_allowed_networks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tenant = "t".repeat(5_000);
    let (code, _, err) = cli(&data, &["keys", "create", "--scope", "read", "--tenant", &tenant]);
    assert_ne!(code, 0);
    assert!(err.contains("--tenant: 5,000 characters; the limit is 128"), "{err}");
    assert!(!err.contains(&tenant), "the value is echoed");
    let name = "n".repeat(100_000);
    let (code, _, err) = cli(&data, &["keys", "create", "--scope", "read", "--name", &name]);
    assert_ne!(code, 0);
    assert!(err.contains("--name: 100,000 characters; the limit is 256"), "{err}");

    let put = |spec: Value, env: Option<&str>| {
        let file = dir.path().join("channel.json");
        std::fs::write(&file, spec.to_string()).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["alerts", "channels", "put"])
            .arg(&file)
            .arg("--data")
            .arg(&data);
        command.env_remove("SEALTRAIL_ALERTS_ALLOWED_NETWORKS");
        if let Some(networks) = env {
            command.env("SEALTRAIL_ALERTS_ALLOWED_NETWORKS", networks);
        }
        let out = command.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let long = format!("https://example.com/{}", "a".repeat(40_000));
    let (code, _, err) = put(json!({"name": "c", "type": "slack", "url": long}), None);
    assert_ne!(code, 0);
    assert!(err.contains("url: 40,020 characters; the limit is 1,024"), "{err}");
    let local = json!({"name": "local", "type": "webhook", "url": "http://127.0.0.1:9/hook"});
    let (code, _, err) = put(local.clone(), None);
    assert_ne!(code, 0);
    assert!(err.contains("url: 127.0.0.1 is loopback"), "{err}");
    let (code, out, err) = put(local, Some(r#"["127.0.0.0/8"]"#));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "created channel local\n");
}
