//! Notification channels against real receivers on loopback: HTTP servers
//! that check each format and verify webhook signatures as a receiver
//! would, the outbox's retries and dead letters over a real SQLite file
//! with an injected clock, and mail through a real SMTP server
//! (scripts/smtp-sink).

#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use rusqlite::Connection;
use sealtrail_alert::net::Destinations;
use sealtrail_alert::notify::{self, Outgoing};
use sealtrail_alert::outbox::{self, Backoff, Deliverer, HistoryQuery, Status};
use sealtrail_alert::{ChannelKind, ChannelSpec, Level, Message, MessageKind, SmtpSecurity};
use serde_json::Value;
use sha2::Sha256;

// --- a scriptable HTTP receiver -----------------------------------------

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    /// Answers to give, in order; 200 once they run out.
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Receiver {
    fn answering(script: &[(u16, &'static str)]) -> Receiver {
        Receiver {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            ..Receiver::default()
        }
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Serve on `addr` (port 0 for any) until the test ends.
    async fn serve(&self, addr: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(receive).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    async fn start(&self) -> SocketAddr {
        self.serve("127.0.0.1:0".parse().unwrap()).await
    }
}

async fn receive(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    r.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if !r.delay.is_zero() {
        tokio::time::sleep(r.delay).await;
    }
    r.seen.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body,
    });
    let (code, text) = r.script.lock().unwrap().pop_front().unwrap_or((200, "ok"));
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    (StatusCode::from_u16(code).unwrap(), text)
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// What a receiver does with a signed webhook: the timestamp is recent,
/// and the signature is the HMAC of `<timestamp>.<body>` (compared in
/// constant time).
fn verify_signature(secret: &[u8], r: &Received, now_unix: i64) -> Result<(), String> {
    let ts = header(r, "sealtrail-timestamp");
    let ts_num: i64 = ts.parse().map_err(|_| format!("timestamp {ts:?}"))?;
    if (now_unix - ts_num).abs() > 300 {
        return Err(format!("timestamp {ts} is more than 5 minutes from {now_unix}"));
    }
    let sig = header(r, "sealtrail-signature");
    let hex = sig.strip_prefix("v1=").ok_or("no v1= scheme")?;
    if hex.len() != 64 {
        return Err("signature length".into());
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    mac.verify_slice(&bytes).map_err(|_| "signature mismatch".to_string())
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

// --- fixtures ------------------------------------------------------------

fn message(kind: MessageKind) -> Message {
    Message {
        version: 1,
        kind,
        alert_id: "01JD4ZQ8W9S6M4Q8V3R2T1Y0XA".into(),
        rule: "failed-logins".into(),
        condition: "frequency".into(),
        level: Level::Critical,
        log: "default".into(),
        group: BTreeMap::from([("actor.id".to_string(), "u-<1>".to_string())]),
        summary: "5 failed logins within 5m".into(),
        at: "2026-11-22T08:00:00Z".into(),
        indices: vec![12],
        event_ids: vec!["01JD4ZQ8W9S6M4Q8V3R2T1Y0XB".into()],
    }
}

fn webhook(name: &str, url: String, secret: Option<&str>) -> ChannelSpec {
    ChannelSpec {
        name: name.into(),
        kind: ChannelKind::Webhook {
            url,
            headers: BTreeMap::from([("X-Team".to_string(), "sec".to_string())]),
            secret: secret.map(Into::into),
            body_template: None,
            content_type: None,
        },
    }
}

/// The receivers here listen on loopback, which the destination policy
/// refuses unless allowed.
fn loopback() -> Destinations {
    Destinations::new(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
}

fn client() -> notify::HttpClient {
    notify::http_client(Duration::from_secs(5), loopback()).unwrap()
}

async fn render_and_send(channel: &ChannelSpec, m: &Message) -> Result<notify::Sent, notify::SendFailure> {
    let out = notify::render(channel, m, 77, unix_now()).unwrap();
    notify::send(&out, &client()).await
}

// --- HTTP formats --------------------------------------------------------

#[tokio::test]
async fn signed_webhook_is_verified_by_the_receiver() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let channel = webhook("hook", format!("http://{addr}/in"), Some("whsec_0123"));
    let sent = render_and_send(&channel, &message(MessageKind::Fired)).await.unwrap();
    assert_eq!(sent.status, 200);

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.path, "/in");
    verify_signature(b"whsec_0123", r, unix_now()).unwrap();
    // The same check refuses another key, a changed body, or a replay
    // from long ago.
    assert!(verify_signature(b"whsec_0124", r, unix_now()).is_err());
    let mut tampered = r.clone();
    tampered.body = Bytes::from(r.body.iter().rev().copied().collect::<Vec<u8>>());
    assert_eq!(
        verify_signature(b"whsec_0123", &tampered, unix_now()),
        Err("signature mismatch".into())
    );
    assert!(verify_signature(b"whsec_0123", r, unix_now() + 3600).is_err());

    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "user-agent"), notify::USER_AGENT);
    assert_eq!(header(r, "sealtrail-event"), "fired");
    assert_eq!(header(r, "sealtrail-delivery"), "77");
    assert_eq!(header(r, "x-team"), "sec");
    let back: Message = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(back, message(MessageKind::Fired));
}

#[tokio::test]
async fn unsigned_webhook_has_no_signature_headers() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let channel = webhook("hook", format!("http://{addr}/"), None);
    render_and_send(&channel, &message(MessageKind::Resolved))
        .await
        .unwrap();
    let r = &receiver.seen()[0];
    assert_eq!(header(r, "sealtrail-event"), "resolved");
    assert!(r.headers.get("sealtrail-signature").is_none());
    assert!(r.headers.get("sealtrail-timestamp").is_none());
}

fn chat(kind: ChannelKind) -> ChannelSpec {
    ChannelSpec {
        name: "chat".into(),
        kind,
    }
}

async fn received_json(receiver: &Receiver) -> (Received, Value) {
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let r = seen[0].clone();
    assert_eq!(header(&r, "content-type"), "application/json");
    let v = serde_json::from_slice(&r.body).unwrap();
    (r, v)
}

#[tokio::test]
async fn slack_receiver_gets_blocks() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let url = format!("http://{addr}/services/T0/B0/secret");
    render_and_send(&chat(ChannelKind::Slack { url }), &message(MessageKind::Fired))
        .await
        .unwrap();
    let (r, v) = received_json(&receiver).await;
    assert_eq!(r.path, "/services/T0/B0/secret");
    assert_eq!(v["text"], "FIRING critical: failed-logins: 5 failed logins within 5m");
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], ":red_circle: FIRING critical: failed-logins");
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"*actor.id*\nu-&lt;1&gt;"), "{fields:?}");
    assert!(fields.contains(&"*Log*\ndefault"), "{fields:?}");
}

#[tokio::test]
async fn discord_receiver_gets_an_embed() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let url = format!("http://{addr}/api/webhooks/1/tok");
    render_and_send(&chat(ChannelKind::Discord { url }), &message(MessageKind::Resolved))
        .await
        .unwrap();
    let (_, v) = received_json(&receiver).await;
    let e = &v["embeds"][0];
    assert_eq!(e["title"], "RESOLVED critical: failed-logins");
    assert_eq!(e["color"], 0x2ECC71);
    assert_eq!(e["timestamp"], "2026-11-22T08:00:00Z");
    assert_eq!(e["description"], "5 failed logins within 5m");
    assert!(e["fields"].as_array().unwrap().len() <= 25);
    assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
}

#[tokio::test]
async fn teams_receiver_gets_an_adaptive_card_and_202_is_success() {
    let receiver = Receiver::answering(&[(202, "")]);
    let addr = receiver.start().await;
    let url = format!("http://{addr}/workflows/abc/triggers/manual/paths/invoke");
    let sent = render_and_send(&chat(ChannelKind::Teams { url }), &message(MessageKind::Test))
        .await
        .unwrap();
    assert_eq!(sent.status, 202);
    let (_, v) = received_json(&receiver).await;
    assert_eq!(v["type"], "message");
    let a = &v["attachments"][0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(a["content"]["type"], "AdaptiveCard");
    assert_eq!(a["content"]["version"], "1.4");
    let body = a["content"]["body"].as_array().unwrap();
    assert_eq!(body[0]["text"], "TEST critical: failed-logins");
    let facts = body.iter().find(|b| b["type"] == "FactSet").unwrap();
    assert!(facts["facts"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"title": "actor.id", "value": "u-<1>"})));
}

#[tokio::test]
async fn failures_say_whether_to_retry_and_keep_only_the_status_line() {
    let receiver = Receiver::answering(&[
        (500, "database is on fire"),
        (429, "slow down"),
        (404, "no such hook"),
        (301, ""),
    ]);
    let addr = receiver.start().await;
    let channel = webhook("hook", format!("http://{addr}/"), None);
    let m = message(MessageKind::Fired);
    let e = render_and_send(&channel, &m).await.unwrap_err();
    assert_eq!((e.status, e.retryable), (Some(500), true));
    // The body is the receiver's, never echoed: a channel must not be a
    // way to read what answers at its URL.
    assert_eq!(e.message, "HTTP 500 Internal Server Error");
    let e = render_and_send(&channel, &m).await.unwrap_err();
    assert_eq!((e.status, e.retryable), (Some(429), true));
    assert_eq!(e.message, "HTTP 429 Too Many Requests");
    let e = render_and_send(&channel, &m).await.unwrap_err();
    assert_eq!((e.status, e.retryable), (Some(404), false));
    assert_eq!(e.message, "HTTP 404 Not Found");
    // Redirects are not followed: a POST must not become a GET.
    let e = render_and_send(&channel, &m).await.unwrap_err();
    assert_eq!((e.status, e.retryable), (Some(301), false));
    assert_eq!(receiver.seen().len(), 4);
}

/// A webhook at every kind of forbidden destination: `port` is a real
/// receiver on loopback, so a request that got through would be seen.
fn forbidden_channels(port: u16) -> Vec<ChannelSpec> {
    [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.8/".to_string(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, url)| webhook(&format!("hook-{i}"), url, None))
    .collect()
}

#[tokio::test]
async fn the_deliverer_refuses_forbidden_destinations_without_connecting() {
    let receiver = Receiver::default();
    let v4 = receiver.start().await;
    // The same receiver on ::1 and the same port, where the host has IPv6.
    let _ = tokio::net::TcpListener::bind(("::1", v4.port())).await.map(|l| {
        let app = axum::Router::new().fallback(receive).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(l, app).await })
    });
    let channels = forbidden_channels(v4.port());
    let db = db();
    let http = notify::http_client(Duration::from_secs(5), Destinations::default()).unwrap();
    let deliverer = Deliverer::new(&db.conn, &http);
    let ids: Vec<i64> = channels
        .iter()
        .map(|c| enqueue_alert(&db, &c.name, &format!("alert-{}", c.name), T0))
        .collect();
    let done = pass(&deliverer, T0, &channels).await;
    assert_eq!(done.len(), channels.len());
    for d in &done {
        let error = d.error.as_deref().unwrap_or("");
        assert_eq!(d.status, Status::Dead, "{}: {error}", d.channel);
        assert!(error.starts_with("refused destination: "), "{}: {error}", d.channel);
        assert!(error.contains("alerts.allowed_networks"), "{}: {error}", d.channel);
    }
    let error = |id: i64| notification(&db, id).history[0].error.clone().unwrap();
    assert!(error(ids[0]).contains("127.0.0.1 is loopback"), "{}", error(ids[0]));
    assert!(error(ids[2]).contains("127.0.0.1 is loopback"), "{}", error(ids[2]));
    assert!(error(ids[3]).contains("localhost is loopback"), "{}", error(ids[3]));
    assert!(error(ids[5]).contains("link-local"), "{}", error(ids[5]));
    assert!(error(ids[6]).contains("private network"), "{}", error(ids[6]));
    assert!(receiver.seen().is_empty(), "a forbidden destination was reached");

    // Allowed, the same loopback destinations are delivered to.
    let http = client();
    let allowed = Deliverer::new(&db.conn, &http);
    let reachable = &channels[..5];
    for c in reachable {
        enqueue_alert(&db, &c.name, &format!("again-{}", c.name), T0);
    }
    let done = pass(&allowed, T0, reachable).await;
    let delivered = done.iter().filter(|d| d.status == Status::Delivered).count();
    // ::1 is only there when the host has IPv6 on loopback.
    assert!(delivered >= 4, "{done:?}");
    assert_eq!(receiver.seen().len(), delivered);
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_does_not_leak_the_url() {
    let port = free_port();
    let channel = chat(ChannelKind::Slack {
        url: format!("http://127.0.0.1:{port}/services/T0/B0/SECRET-TOKEN"),
    });
    let e = render_and_send(&channel, &message(MessageKind::Fired))
        .await
        .unwrap_err();
    assert_eq!(e.status, None);
    assert!(e.retryable);
    assert!(!e.message.contains("SECRET-TOKEN"), "{}", e.message);
    assert!(e.message.to_lowercase().contains("connect"), "{}", e.message);
}

#[tokio::test]
async fn a_slow_receiver_times_out_retryably() {
    let receiver = Receiver {
        delay: Duration::from_secs(3),
        ..Receiver::default()
    };
    let addr = receiver.start().await;
    let channel = webhook("hook", format!("http://{addr}/"), None);
    let out = notify::render(&channel, &message(MessageKind::Fired), 1, 0).unwrap();
    let http = notify::http_client(Duration::from_millis(300), loopback()).unwrap();
    let e = notify::send(&out, &http).await.unwrap_err();
    assert!(e.retryable);
    assert!(
        e.message.contains("timed out") || e.message.contains("timeout"),
        "{}",
        e.message
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// --- the outbox over a real database -----------------------------------

struct Db {
    _dir: tempfile::TempDir,
    conn: Mutex<Connection>,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("meta.db")).unwrap();
    conn.execute_batch(outbox::SCHEMA).unwrap();
    Db {
        _dir: dir,
        conn: Mutex::new(conn),
    }
}

const T0: i64 = 1_790_000_000_000;

fn enqueue(db: &Db, channel: &str, now_ms: i64) -> i64 {
    outbox::enqueue(&db.conn.lock().unwrap(), channel, &message(MessageKind::Fired), now_ms).unwrap()
}

/// A notification of its own alert: not ordered behind any other.
fn enqueue_alert(db: &Db, channel: &str, alert_id: &str, now_ms: i64) -> i64 {
    let mut m = message(MessageKind::Fired);
    m.alert_id = alert_id.into();
    outbox::enqueue(&db.conn.lock().unwrap(), channel, &m, now_ms).unwrap()
}

fn notification(db: &Db, id: i64) -> outbox::Notification {
    outbox::get(&db.conn.lock().unwrap(), id).unwrap().unwrap()
}

/// One pass at `now`, with full jitter (each delay at its longest).
async fn pass(deliverer: &Deliverer<'_>, now: i64, channels: &[ChannelSpec]) -> Vec<outbox::Delivery> {
    let clock = Cell::new(now);
    deliverer
        .deliver_due(
            || clock.get(),
            |name| channels.iter().find(|c| c.name == name).cloned(),
            || 1.0,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn two_500s_then_200_is_delivered_on_the_third_attempt() {
    let receiver = Receiver::answering(&[(500, "boom"), (503, "busy")]);
    let addr = receiver.start().await;
    let channels = [webhook("hook", format!("http://{addr}/"), Some("k"))];
    let db = db();
    let http = client();
    let deliverer = Deliverer::new(&db.conn, &http);
    let id = enqueue(&db, "hook", T0);

    let done = pass(&deliverer, T0, &channels).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, Status::Pending);
    assert_eq!(done[0].status_code, Some(500));
    assert_eq!(done[0].next_attempt_ms, Some(T0 + 1000));
    // Not due yet: nothing happens.
    assert!(pass(&deliverer, T0 + 999, &channels).await.is_empty());
    let done = pass(&deliverer, T0 + 1000, &channels).await;
    assert_eq!(
        (done[0].status, done[0].next_attempt_ms),
        (Status::Pending, Some(T0 + 3000))
    );
    assert!(pass(&deliverer, T0 + 2999, &channels).await.is_empty());
    let done = pass(&deliverer, T0 + 3000, &channels).await;
    assert_eq!(done[0].status, Status::Delivered);
    assert_eq!(done[0].attempt, 3);

    let n = notification(&db, id);
    assert_eq!(n.status, Status::Delivered);
    assert_eq!(n.attempts, 3);
    assert_eq!(n.last_status, Some(200));
    let codes: Vec<_> = n.history.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(503), Some(200)]);
    assert_eq!(n.history[0].error.as_deref(), Some("HTTP 500 Internal Server Error"));
    assert_eq!(n.history[2].error, None);
    let ats: Vec<_> = n.history.iter().map(|a| a.at.as_str()).collect();
    assert_eq!(
        ats,
        ["2026-09-21T14:13:20Z", "2026-09-21T14:13:21Z", "2026-09-21T14:13:23Z"]
    );
    assert_eq!(n.delivered_at.as_deref(), Some("2026-09-21T14:13:23Z"));

    // Every attempt carried the same delivery id, and a valid signature.
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    for r in &seen {
        assert_eq!(header(r, "sealtrail-delivery"), id.to_string());
        verify_signature(b"k", r, T0 / 1000 + 3).unwrap();
    }
    // Nothing more to do.
    assert!(pass(&deliverer, T0 + 10_000_000, &channels).await.is_empty());
}

#[tokio::test]
async fn a_404_is_a_dead_letter_at_once_and_retry_dead_requeues_it() {
    let receiver = Receiver::answering(&[(404, "unknown hook")]);
    let addr = receiver.start().await;
    let channels = [webhook("hook", format!("http://{addr}/"), None)];
    let db = db();
    let http = client();
    let deliverer = Deliverer::new(&db.conn, &http);
    let id = enqueue(&db, "hook", T0);

    let done = pass(&deliverer, T0, &channels).await;
    assert_eq!((done[0].status, done[0].status_code), (Status::Dead, Some(404)));
    let n = notification(&db, id);
    assert_eq!(n.status, Status::Dead);
    assert_eq!(n.last_error.as_deref(), Some("HTTP 404 Not Found"));
    assert!(pass(&deliverer, T0 + 86_400_000, &channels).await.is_empty());
    let dead = outbox::history(
        &db.conn.lock().unwrap(),
        &HistoryQuery {
            status: Some(Status::Dead),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(dead.iter().map(|n| n.id).collect::<Vec<_>>(), [id]);

    // The receiver is fixed; the operator retries the dead letter.
    assert!(outbox::retry_dead(&db.conn.lock().unwrap(), id).unwrap());
    let done = pass(&deliverer, T0 + 90_000_000, &channels).await;
    assert_eq!(
        (done[0].id, done[0].status, done[0].attempt),
        (id, Status::Delivered, 2)
    );
    let n = notification(&db, id);
    let codes: Vec<_> = n.history.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(404), Some(200)]);
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn a_receiver_that_is_down_is_retried_with_growing_delays_until_it_is_up() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let channels = [webhook("hook", format!("http://{addr}/"), None)];
    let db = db();
    let http = client();
    let deliverer = Deliverer::new(&db.conn, &http);
    let id = enqueue(&db, "hook", T0);

    let mut now = T0;
    let mut delays = Vec::new();
    for _ in 0..4 {
        let done = pass(&deliverer, now, &channels).await;
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].status, done[0].status_code), (Status::Pending, None));
        assert!(
            done[0].error.as_deref().unwrap().contains("onnect"),
            "{:?}",
            done[0].error
        );
        let next = done[0].next_attempt_ms.unwrap();
        delays.push(next - now);
        assert!(pass(&deliverer, next - 1, &channels).await.is_empty());
        now = next;
    }
    assert_eq!(delays, [1000, 2000, 4000, 8000]);

    let receiver = Receiver::default();
    receiver.serve(addr).await;
    let done = pass(&deliverer, now, &channels).await;
    assert_eq!((done[0].status, done[0].attempt), (Status::Delivered, 5));
    let n = notification(&db, id);
    assert_eq!(n.history.iter().filter(|a| a.status_code.is_none()).count(), 4);
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_missing_channel_is_a_dead_letter_naming_it() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let channels = [webhook("hook", format!("http://{addr}/"), None)];
    let db = db();
    let http = client();
    let deliverer = Deliverer::new(&db.conn, &http);
    let gone = enqueue(&db, "gone", T0);
    let fine = enqueue(&db, "hook", T0);

    let mut done = pass(&deliverer, T0, &channels).await;
    done.sort_by_key(|d| d.id);
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].id, done[0].status), (gone, Status::Dead));
    assert_eq!((done[1].id, done[1].status), (fine, Status::Delivered));
    let n = notification(&db, gone);
    assert_eq!(n.status, Status::Dead);
    let error = n.last_error.unwrap();
    assert!(error.contains("channel \"gone\" does not exist"), "{error}");
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_bad_template_is_a_dead_letter_naming_the_problem() {
    let db = db();
    let http = client();
    let deliverer = Deliverer::new(&db.conn, &http);
    let channels = [ChannelSpec {
        name: "t".into(),
        kind: ChannelKind::Webhook {
            url: "http://127.0.0.1:9/".into(),
            headers: BTreeMap::new(),
            secret: None,
            body_template: Some("{{ rule ".into()),
            content_type: None,
        },
    }];
    let id = enqueue(&db, "t", T0);
    let done = pass(&deliverer, T0, &channels).await;
    assert_eq!(done[0].status, Status::Dead);
    let error = notification(&db, id).last_error.unwrap();
    assert!(
        error.starts_with("cannot render for channel \"t\": body_template: syntax error"),
        "{error}"
    );
}

#[tokio::test]
async fn a_pass_sends_at_most_concurrency_at_once_and_at_most_batch_rows() {
    let receiver = Receiver {
        delay: Duration::from_millis(150),
        ..Receiver::default()
    };
    let addr = receiver.start().await;
    let channels = [webhook("hook", format!("http://{addr}/"), None)];
    let db = db();
    let http = client();
    let mut deliverer = Deliverer::new(&db.conn, &http);
    deliverer.concurrency = 3;
    deliverer.batch = 10;
    for i in 0..12 {
        enqueue_alert(&db, "hook", &format!("a{i}"), T0);
    }
    let done = pass(&deliverer, T0, &channels).await;
    assert_eq!(done.len(), 10);
    assert!(done.iter().all(|d| d.status == Status::Delivered));
    let max = receiver.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "{max} in flight at once");
    assert_eq!(pass(&deliverer, T0, &channels).await.len(), 2);
    let counts = outbox::counts(&db.conn.lock().unwrap()).unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (0, 12, 0));
}

#[test]
fn a_pass_can_run_on_a_spawned_task() {
    fn assert_send<T: Send>(_: &T) {}
    let db = db();
    let http = client();
    let deliverer = Deliverer::new(&db.conn, &http);
    let pass = deliverer.deliver_due(|| 0, |_| None, outbox::random_jitter);
    assert_send(&pass);
}

#[test]
fn backoff_default_is_documented() {
    let b = Backoff::default();
    assert_eq!(b.base, Duration::from_secs(1));
    assert_eq!(b.max_delay, Duration::from_secs(3600));
    assert_eq!(b.max_attempts, 20);
}

// --- mail through a real SMTP server ------------------------------------

/// scripts/smtp-sink on a free loopback port, killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start(auth: &str) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp-sink");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(&script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .args(["--auth", auth])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sink = SmtpSink { child, port, dir };
        // The first run installs aiosmtpd into a cached virtualenv.
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) if line == "ready" => sink,
            other => {
                let status = sink.child.try_wait();
                panic!("smtp-sink did not get ready: {other:?}, {status:?}")
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The n-th mail's raw bytes and envelope recipients, once it is there.
    fn mail(&self, n: u32) -> (Vec<u8>, Vec<String>) {
        let eml = self.path(&format!("{n}.eml"));
        for _ in 0..200 {
            if eml.exists() {
                let rcpt = std::fs::read_to_string(self.path(&format!("{n}.rcpt"))).unwrap();
                return (std::fs::read(&eml).unwrap(), rcpt.lines().map(String::from).collect());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {}", eml.display());
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn email(port: u16, password: &str) -> ChannelSpec {
    ChannelSpec {
        name: "mail".into(),
        kind: ChannelKind::Email {
            host: "127.0.0.1".into(),
            port: Some(port),
            security: SmtpSecurity::Plain,
            username: Some("alerts".into()),
            password: Some(password.into()),
            from: "Sealtrail <sealtrail@example.org>".into(),
            to: vec![
                "oncall@example.org".into(),
                "Security Team <security@example.com>".into(),
            ],
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_reaches_two_recipients_with_text_and_html_parts() {
    let sink = SmtpSink::start("alerts:hunter2");
    let mut m = message(MessageKind::Fired);
    m.summary = "5 failed logins <script>alert(1)</script> within 5m".into();

    // Wrong credentials: the server says 535, which will not change.
    let out = notify::render(&email(sink.port, "wrong"), &m, 5, 1_790_000_000).unwrap();
    let e = notify::send(&out, &client()).await.unwrap_err();
    assert_eq!((e.status, e.retryable), (Some(535), false), "{e:?}");
    assert!(!sink.path("1.eml").exists());

    let out = notify::render(&email(sink.port, "hunter2"), &m, 5, 1_790_000_000).unwrap();
    assert!(matches!(out, Outgoing::Mail(_)));
    let sent = notify::send(&out, &client()).await.unwrap();
    assert_eq!(sent.status, 250);

    let (raw, rcpt) = sink.mail(1);
    assert_eq!(rcpt, ["oncall@example.org", "security@example.com"]);
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.subject(),
        Some("[Sealtrail] FIRING critical: failed-logins — 5 failed logins <script>alert(1)</script> within 5m")
    );
    assert_eq!(
        parsed.from().unwrap().first().unwrap().address(),
        Some("sealtrail@example.org")
    );
    let to: Vec<_> = parsed.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, ["oncall@example.org", "security@example.com"]);
    assert_eq!(
        parsed.message_id(),
        Some("sealtrail.5.01JD4ZQ8W9S6M4Q8V3R2T1Y0XA@example.org")
    );
    let ct = mail_parser::MimeHeaders::content_type(parsed.root_part()).unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("alternative")));
    assert_eq!(parsed.text_body.len(), 1);
    assert_eq!(parsed.html_body.len(), 1);
    let text = parsed.body_text(0).unwrap();
    let html = parsed.body_html(0).unwrap();
    for part in [&text, &html] {
        for needle in [
            "failed-logins",
            "critical",
            "default",
            "2026-11-22T08:00:00Z",
            "01JD4ZQ8W9S6M4Q8V3R2T1Y0XB",
        ] {
            assert!(part.contains(needle), "{needle:?} missing from {part}");
        }
    }
    assert!(text.contains("<script>alert(1)</script>"));
    assert!(text.contains("u-<1>"));
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(html.contains("u-&lt;1&gt;"), "{html}");
    // Only one mail arrived: the refused one was not kept.
    assert!(!sink.path("2.eml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_through_the_outbox_and_a_refused_smtp_connection_is_retried() {
    let sink = SmtpSink::start("alerts:hunter2");
    let db = db();
    let http = client();
    let deliverer = Deliverer::new(&db.conn, &http);
    let down = ChannelSpec {
        name: "down".into(),
        ..email(free_port(), "hunter2")
    };
    let channels = [email(sink.port, "hunter2"), down];
    let up = enqueue(&db, "mail", T0);
    let refused = enqueue(&db, "down", T0);
    let mut done = pass(&deliverer, T0, &channels).await;
    done.sort_by_key(|d| d.id);
    assert_eq!(
        (done[0].id, done[0].status, done[0].status_code),
        (up, Status::Delivered, Some(250))
    );
    assert_eq!(
        (done[1].id, done[1].status, done[1].status_code),
        (refused, Status::Pending, None)
    );
    assert_eq!(done[1].next_attempt_ms, Some(T0 + 1000));
    let (raw, rcpt) = sink.mail(1);
    assert_eq!(rcpt.len(), 2);
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.message_id(),
        Some(format!("sealtrail.{up}.01JD4ZQ8W9S6M4Q8V3R2T1Y0XA@example.org").as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn an_smtp_server_that_never_answers_times_out_retryably() {
    // Accepted by the kernel, never greeted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = notify::render(&email(port, "x"), &message(MessageKind::Fired), 1, 0).unwrap();
    let started = tokio::time::Instant::now();
    let e = notify::send(&out, &client()).await.unwrap_err();
    assert_eq!(e.message, "SMTP: no answer within 30 s");
    assert!(e.retryable);
    assert_eq!(started.elapsed(), notify::SMTP_TIMEOUT);
    drop(listener);
}

#[tokio::test]
async fn an_smtp_refusal_keeps_only_the_reply_code() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    // A server that refuses every sender with a reply whose text must
    // not come back to whoever configured the channel.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"220 relay ready\r\n").await.unwrap();
        let mut lines = tokio::io::BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply: &[u8] = match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                Some("EHLO") => b"250 relay\r\n",
                Some("MAIL") => b"550 5.7.1 internal-secret-detail\r\n",
                Some("QUIT") => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            if write.write_all(reply).await.is_err() {
                break;
            }
        }
    });
    let mut channel = email(port, "unused");
    if let ChannelKind::Email { username, password, .. } = &mut channel.kind {
        *username = None;
        *password = None;
    }
    let out = notify::render(&channel, &message(MessageKind::Fired), 1, 0).unwrap();
    let e = notify::send(&out, &client()).await.unwrap_err();
    assert_eq!((e.status, e.retryable), (Some(550), false));
    assert_eq!(e.message, "SMTP reply 550");
}
