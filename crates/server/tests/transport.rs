//! The real server on 127.0.0.1:0 against slow and hostile clients on raw
//! sockets: slow headers and bodies, idle and silent connections, too many
//! connections, too many requests at once, a client that stops reading,
//! a full single-event queue; and the request layers (request ids, the
//! panic net) around a router of the test's own.

#![allow(clippy::unwrap_used)]
// The router's handlers return `Problem` as it is, as the server's do.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use sealtrail_meta::Scope;
use sealtrail_server::{request, transport, Config, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

/// A server with short timeouts (each test shortens what it tests).
async fn start(adjust: impl FnOnce(&mut Config)) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(&dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.index.visibility_ms = 20;
    config.http.header_timeout_ms = 5_000;
    config.http.body_timeout_ms = 5_000;
    config.http.idle_timeout_ms = 5_000;
    config.http.send_timeout_ms = 5_000;
    adjust(&mut config);
    (Server::start(config).await.unwrap(), dir)
}

fn key(server: &Server, scope: Scope) -> String {
    support::create_key(&server.app, scope, None, "test")
}

/// An HTTP answer read from a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Read one answer with a `content-length` body from `stream`.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before an answer: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut answer = Answer {
        status,
        head,
        body: buf[head_end..].to_vec(),
    };
    let length: usize = answer.header("content-length").unwrap().parse().unwrap();
    while answer.body.len() < length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed inside the body");
        answer.body.extend_from_slice(&chunk[..n]);
    }
    answer
}

/// Send `raw` on a new connection and read the answer.
async fn exchange(addr: std::net::SocketAddr, raw: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    read_answer(&mut stream).await
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n")
}

/// Wait until the server closes `stream` (EOF or reset), reading and
/// dropping whatever comes first; how long that took.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut sink = [0u8; 65536];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
}

/// `/healthz` answers on a new connection promptly (the bound leaves room
/// for a loaded test machine).
async fn assert_healthz_prompt(addr: std::net::SocketAddr) {
    let answer = tokio::time::timeout(Duration::from_secs(2), exchange(addr, &get_request("/healthz")))
        .await
        .expect("/healthz took more than 2 s");
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_at_the_header_timeout_while_others_are_served() {
    let (server, _dir) = start(|c| c.http.header_timeout_ms = 300).await;
    let addr = server.addr;
    // Many clients trickling a header line every 50 ms, never finishing.
    let lorises: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
                let started = Instant::now();
                let mut interval = tokio::time::interval(Duration::from_millis(50));
                loop {
                    interval.tick().await;
                    if stream.write_all(b"x-slow: 1\r\n").await.is_err() {
                        break;
                    }
                    let mut probe = [0u8; 1];
                    match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(_)) => panic!("an answer to an unfinished header"),
                        Err(_) => {}
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(3),
                        "a slow header was let go on"
                    );
                }
                started.elapsed()
            })
        })
        .collect();
    assert_healthz_prompt(addr).await;
    for loris in lorises {
        let took = loris.await.unwrap();
        assert!(
            took >= Duration::from_millis(250),
            "cut off before the timeout: {took:?}"
        );
    }
    assert_healthz_prompt(addr).await;
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_at_the_body_timeout() {
    let (server, _dir) = start(|c| c.http.body_timeout_ms = 300).await;
    let ingest = key(&server, Scope::Ingest);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/logs/default/events HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {ingest}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\nx-request-id: slow-body-1\r\n\r\n{{\"action\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        loop {
            interval.tick().await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    assert_healthz_prompt(server.addr).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), reader.read_to_end(&mut buf)).await;
    trickle.abort();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("x-request-id: slow-body-1"), "{text}");
    assert!(text.contains("\"request_id\":\"slow-body-1\""), "{text}");
    assert!(text.contains("http.body_timeout_ms"), "{text}");
    assert_eq!(server.app.trail("default").unwrap().log().size(), 0);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_silent_connections_are_closed_at_the_idle_timeout() {
    let (server, _dir) = start(|c| c.http.idle_timeout_ms = 300).await;
    // Connected, never a byte.
    let silent_since = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // One request answered, then kept alive with nothing more.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(get_request("/healthz").as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut kept).await.status, 200);
    let kept_since = Instant::now();
    for (stream, since) in [(&mut silent, silent_since), (&mut kept, kept_since)] {
        closed_after(stream, Duration::from_secs(3)).await;
        let took = since.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "closed before the idle timeout: {took:?}"
        );
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503_and_the_server_serves_again_once_they_go() {
    let (server, _dir) = start(|c| c.http.max_connections = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        // Each is accepted and holds its place once it is answered.
        stream.write_all(get_request("/healthz").as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut stream).await.status, 200);
        held.push(stream);
    }
    let started = Instant::now();
    let refused = exchange(server.addr, &get_request("/healthz")).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert_eq!(refused.header("connection").as_deref(), Some("close"));
    assert_eq!(
        refused.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let problem = refused.json();
    assert_eq!(problem["type"], "urn:sealtrail:problem:overloaded");
    assert!(
        problem["detail"].as_str().unwrap().contains("http.max_connections"),
        "{problem}"
    );
    drop(held);
    // The places free up as the server sees the connections close.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let answer = exchange(server.addr, &get_request("/metrics")).await;
        if answer.status == 200 {
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            assert!(text.contains("sealtrail_http_connections_refused_total"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "still refused after the connections closed");
        tokio::task::yield_now().await;
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_limit_get_503_with_retry_after() {
    let (server, _dir) = start(|c| c.http.max_in_flight = 1).await;
    let ingest = key(&server, Scope::Ingest);
    // One request held in flight: its handler waits for the rest of its body.
    let event = json!({"action": "user.login"}).to_string();
    let mut holder = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/logs/default/events HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {ingest}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        event.len()
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&event.as_bytes()[..5]).await.unwrap();
    // Until that request is in flight, the probes are answered.
    let deadline = Instant::now() + Duration::from_secs(3);
    let shed = loop {
        let answer = exchange(server.addr, &get_request("/readyz")).await;
        if answer.status == 503 {
            break answer;
        }
        assert_eq!(answer.status, 200);
        assert!(Instant::now() < deadline, "never over the limit");
    };
    assert_eq!(shed.header("retry-after").as_deref(), Some("1"));
    assert_eq!(shed.header("content-type").as_deref(), Some("application/problem+json"));
    let problem = shed.json();
    assert_eq!(problem["type"], "urn:sealtrail:problem:overloaded");
    assert!(
        problem["detail"].as_str().unwrap().contains("http.max_in_flight"),
        "{problem}"
    );
    assert_eq!(
        problem["request_id"].as_str(),
        shed.header("x-request-id").as_deref(),
        "{problem}"
    );
    // Liveness is answered whatever the load.
    assert_healthz_prompt(server.addr).await;
    // The held request completes, and its place is free again.
    holder.write_all(&event.as_bytes()[5..]).await.unwrap();
    assert_eq!(read_answer(&mut holder).await.status, 201);
    assert_eq!(exchange(server.addr, &get_request("/readyz")).await.status, 200);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_an_export_is_dropped_at_the_send_timeout() {
    let (server, _dir) = start(|c| c.http.send_timeout_ms = 300).await;
    let trail = server.app.trail("default").unwrap();
    let events: Vec<String> = (0..40_000)
        .map(|i| {
            json!({"action": "record.read", "actor": {"id": format!("user-{i}")}, "message": "x".repeat(100)})
                .to_string()
        })
        .collect();
    for group in events.chunks(5_000) {
        let inputs: Vec<&[u8]> = group.iter().map(|e| e.as_bytes()).collect();
        trail.ingest(&inputs, true).unwrap();
    }
    let read = key(&server, Scope::Read);
    // A small receive buffer, so the answer backs up into the server soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let request = format!(
        "GET /api/v1/logs/default/export?format=jsonl HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {read}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The client reads nothing until the server gave up on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics_text(server.addr).await.contains("kind=\"send\"") {
        assert!(
            Instant::now() < deadline,
            "the server still waits for a client that stopped reading"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("the connection stayed open");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(200)]);
    // Cut off: the chunked body never ends.
    assert!(!text.ends_with("0\r\n\r\n"), "the whole export arrived");
    assert!(received.len() < 40_000 * 100, "{} bytes", received.len());
    server.shutdown();
    server.wait().await.unwrap();
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    let answer = exchange(addr, &get_request("/metrics")).await;
    String::from_utf8_lossy(&answer.body).into_owned()
}

#[test]
fn a_full_single_event_queue_answers_503_and_stores_nothing_it_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, _dir) = runtime.block_on(start(|c| c.limits.max_single_queue = 1));
    let ingest = key(&server, Scope::Ingest);
    let url = format!("http://{}/api/v1/logs/default/events", server.addr);
    let stored = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(BTreeSet::new()));
    // Rounds of 64 clients at once until the queue has overflowed.
    for round in 0..20 {
        let threads: Vec<_> = (0..64)
            .map(|c| {
                let (url, ingest, stored, refused) = (url.clone(), ingest.clone(), stored.clone(), refused.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                    let id = format!("r{round}-c{c}");
                    let mut resp = agent
                        .post(&url)
                        .header("Authorization", format!("Bearer {ingest}"))
                        .header("Content-Type", "application/json")
                        .send(json!({"action": "order.placed", "idempotency_key": id}).to_string())
                        .unwrap();
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body: Value = resp.body_mut().read_json().unwrap();
                    match status {
                        201 => {
                            stored.lock().unwrap().insert(id);
                        }
                        503 => {
                            assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                            assert_eq!(body["type"], "urn:sealtrail:problem:overloaded", "{body}");
                            assert!(body["detail"].as_str().unwrap().contains("limits.max_single_queue"));
                            refused.lock().unwrap().insert(id);
                        }
                        other => panic!("{other}: {body}"),
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        if !refused.lock().unwrap().is_empty() {
            break;
        }
    }
    let stored = stored.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    assert!(!refused.is_empty(), "the queue of 1 never overflowed");
    let trail = server.app.trail("default").unwrap();
    let entries = trail.log().entries(0, trail.log().size()).unwrap();
    let keys: BTreeSet<String> = entries
        .iter()
        .map(|e| {
            serde_json::from_slice::<Value>(e).unwrap()["idempotency_key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(keys, stored, "the log holds exactly the acknowledged events");
    assert!(keys.is_disjoint(&refused));
    runtime.block_on(async {
        server.shutdown();
        server.wait().await.unwrap();
    });
}

/// Log lines of this test process, as JSON, for the tests that look at
/// what was logged.
fn captured_log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_writer(move || LogWriter(log))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_problem_json_with_the_request_id() {
    let log = captured_log();
    // The counters go to the server's recorder, as in `router`.
    let _ = sealtrail_server::ops::prometheus();
    let router = Router::new()
        .route(
            "/boom",
            get(|| async {
                if true {
                    panic!("secret detail of the panic");
                }
                "unreached"
            }),
        )
        .route(
            "/boom-blocking",
            get(|| async {
                sealtrail_server::api::blocking(|| -> Result<&'static str, _> { panic!("secret blocking detail") })
                    .await
            }),
        )
        .route("/fine", get(|| async { "fine" }));
    let router = request::layers(router, 16);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let http = sealtrail_server::config::Http::default();
    let served = tokio::spawn(transport::serve(listener, router, http, stopped));

    for path in ["/boom", "/boom-blocking"] {
        let id = format!("client-id{}", path.replace('/', "."));
        let answer = exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nhost: t\r\nx-request-id: {id}\r\n\r\n"),
        )
        .await;
        assert_eq!(answer.status, 500);
        assert_eq!(
            answer.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(answer.header("x-request-id").as_deref(), Some(id.as_str()));
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        assert!(!body.contains("secret"), "{body}");
        let problem = answer.json();
        assert_eq!(problem["status"], 500);
        assert_eq!(problem["type"], "urn:sealtrail:problem:internal");
        assert_eq!(problem["request_id"].as_str(), Some(id.as_str()));
        assert_eq!(
            problem["instance"].as_str(),
            Some(format!("urn:sealtrail:request:{id}").as_str())
        );
        let logged = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        let line = logged
            .lines()
            .find(|l| l.contains("panicked") && l.contains(&id))
            .unwrap_or_else(|| panic!("no log line of the panic under {id}: {logged}"));
        serde_json::from_str::<Value>(line).unwrap();
    }
    assert!(sealtrail_server::ops::prometheus()
        .render()
        .contains("sealtrail_http_panics_total 2"));

    // Still serving; ids are kept up to their bound and made up past it.
    let at_bound = "a".repeat(request::MAX_ID_LEN);
    let fine = exchange(
        addr,
        &format!("GET /fine HTTP/1.1\r\nhost: t\r\nx-request-id: {at_bound}\r\n\r\n"),
    )
    .await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.header("x-request-id"), Some(at_bound.clone()));
    for bad in [format!("{at_bound}a"), "has space".to_string(), "quote\"d".to_string()] {
        let answer = exchange(
            addr,
            &format!("GET /fine HTTP/1.1\r\nhost: t\r\nx-request-id: {bad}\r\n\r\n"),
        )
        .await;
        let made = answer.header("x-request-id").unwrap();
        assert_ne!(made, bad);
        assert!(request::well_formed(made.as_bytes()), "{made}");
    }
    let a = exchange(addr, &get_request("/fine"))
        .await
        .header("x-request-id")
        .unwrap();
    let b = exchange(addr, &get_request("/fine"))
        .await
        .header("x-request-id")
        .unwrap();
    assert_ne!(a, b);
    stop.send(true).unwrap();
    served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_and_problem_of_the_real_router_names_its_request_id() {
    let (server, _dir) = start(|_| {}).await;
    let ok = exchange(server.addr, &get_request("/healthz")).await;
    assert!(ok.header("x-request-id").is_some());
    let missing = exchange(
        server.addr,
        "GET /api/v1/logs/default/events HTTP/1.1\r\nhost: t\r\nx-request-id: mine-1\r\n\r\n",
    )
    .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["request_id"], "mine-1");
    let unknown = exchange(server.addr, &get_request("/nowhere")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json()["request_id"].as_str(),
        unknown.header("x-request-id").as_deref()
    );
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_a_stalled_request_at_the_deadline() {
    let (server, _dir) = start(|c| {
        c.http.shutdown_timeout_ms = 300;
        c.http.body_timeout_ms = 60_000;
        c.http.header_timeout_ms = 60_000;
    })
    .await;
    let ingest = key(&server, Scope::Ingest);
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/logs/default/events HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {ingest}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"action\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut half_header = TcpStream::connect(server.addr).await.unwrap();
    half_header.write_all(b"GET /healthz HTTP/1.1\r\nhost:").await.unwrap();
    // Both connections are open and being served before the stop.
    assert_healthz_prompt(server.addr).await;
    let started = Instant::now();
    server.shutdown();
    tokio::time::timeout(Duration::from_secs(5), server.wait())
        .await
        .expect("the server waited for a client that never finishes")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    closed_after(&mut stalled, Duration::from_secs(1)).await;
    closed_after(&mut half_header, Duration::from_secs(1)).await;
}
