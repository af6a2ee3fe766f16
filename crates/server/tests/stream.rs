//! The live stream, `GET /stream/events`: events sent through the API
//! arrive; a reconnect with `Last-Event-ID` gets exactly what it missed;
//! a client further behind than the feed's buffer catches up from the
//! ledger; tenant-restricted callers see only their tenant; the client
//! bound answers 503 with `Retry-After`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use sealtrail_meta::Scope;
use serde_json::{json, Value};
use support::{json_body, Harness};
use tower::ServiceExt;

const LOG: &str = "default";

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<String>,
    event: String,
    data: String,
}

impl Sse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }

    fn index(&self) -> u64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }
}

/// An open stream and the text of it not yet parsed.
struct Stream {
    body: Body,
    buf: String,
}

impl Stream {
    /// The next event (comments skipped), or None if none comes within
    /// `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Sse {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim_start().to_string());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim_start().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return Some(ev);
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??;
            let frame = frame.unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    async fn next(&mut self) -> Sse {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("an event within 10 s")
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<Sse> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Nothing more comes within a short while.
    async fn assert_quiet(&mut self) {
        if let Some(ev) = self.next_within(Duration::from_millis(300)).await {
            panic!("no further event expected, got {ev:?}");
        }
    }
}

/// Open `uri` with `key`, and `Last-Event-ID` if given; the status and,
/// on 200, the stream.
async fn open(h: &Harness, uri: &str, key: &str, last: Option<u64>) -> (StatusCode, axum::http::HeaderMap, Stream) {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::ACCEPT, "text/event-stream");
    if let Some(id) = last {
        req = req.header("last-event-id", id.to_string());
    }
    let response = h
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        Stream {
            body: response.into_body(),
            buf: String::new(),
        },
    )
}

async fn open_ok(h: &Harness, uri: &str, key: &str, last: Option<u64>) -> Stream {
    let (status, headers, stream) = open(h, uri, key, last).await;
    if status != StatusCode::OK {
        let bytes = stream.body.collect().await.unwrap().to_bytes();
        panic!("{status}: {}", String::from_utf8_lossy(&bytes));
    }
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    stream
}

/// Store `events` in one batch; their indices.
async fn store_batch(h: &Harness, key: &str, events: &[Value]) -> Vec<u64> {
    let r = h
        .call(
            Method::POST,
            &format!("/api/v1/logs/{LOG}/events/batch"),
            Some(key),
            json_body(&Value::Array(events.to_vec())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].as_u64().unwrap())
        .collect()
}

fn ids(events: &[Sse]) -> Vec<u64> {
    events.iter().map(Sse::index).collect()
}

#[tokio::test]
async fn an_event_sent_through_the_api_arrives() {
    let h = Harness::new(|_| {});
    let (ingest, read) = (h.key(Scope::Ingest, None), h.key(Scope::Read, None));
    // Stored before the stream opens: not sent (the stream is live only).
    h.store(LOG, &ingest, json!({"action": "before.open"})).await;
    let mut stream = open_ok(&h, "/stream/events?log=default", &read, None).await;
    let index = h
        .store(
            LOG,
            &ingest,
            json!({"action": "invoice.paid", "actor": {"id": "u1"}, "message": "<b>hi</b>"}),
        )
        .await;
    let ev = stream.next().await;
    assert_eq!(ev.event, "message");
    assert_eq!(ev.index(), index);
    let data = ev.json();
    assert_eq!(data["index"], index);
    assert_eq!(data["event"]["action"], "invoice.paid");
    assert_eq!(data["event"]["message"], "<b>hi</b>");
    assert!(!data["leaf_hash"].as_str().unwrap().is_empty());
    stream.assert_quiet().await;
}

#[tokio::test]
async fn a_reconnect_gets_exactly_the_missed_events() {
    let h = Harness::new(|_| {});
    let (ingest, read) = (h.key(Scope::Ingest, None), h.key(Scope::Read, None));
    let mut stream = open_ok(&h, "/stream/events", &read, None).await;
    let first = store_batch(&h, &ingest, &[json!({"action": "a.one"}), json!({"action": "a.two"})]).await;
    let seen = stream.take(2).await;
    assert_eq!(ids(&seen), first);
    drop(stream);

    // Stored while disconnected: in two requests, and one single event.
    let mut missed = store_batch(&h, &ingest, &[json!({"action": "b.one"}), json!({"action": "b.two"})]).await;
    missed.push(h.store(LOG, &ingest, json!({"action": "b.three"})).await);
    let last = seen.last().unwrap().index();
    let mut stream = open_ok(&h, "/stream/events", &read, Some(last)).await;
    let replayed = stream.take(3).await;
    assert_eq!(ids(&replayed), missed, "exactly the missed events, in order");
    assert_eq!(replayed[2].json()["event"]["action"], "b.three");

    // Then live, with nothing repeated.
    let live = h.store(LOG, &ingest, json!({"action": "c.live"})).await;
    assert_eq!(stream.next().await.index(), live);
    stream.assert_quiet().await;

    // `?after=` does the same for a new connection.
    let mut again = open_ok(&h, &format!("/stream/events?after={last}"), &read, None).await;
    let all = again.take(4).await;
    assert_eq!(ids(&all), [missed.clone(), vec![live]].concat());
    again.assert_quiet().await;
}

#[tokio::test]
async fn a_lagging_client_catches_up_from_the_ledger() {
    // A buffer of one batch: a client that does not read falls behind at once.
    let h = Harness::new(|c| c.web.stream_buffer_batches = 1);
    let (ingest, read) = (h.key(Scope::Ingest, None), h.key(Scope::Read, None));
    let mut stream = open_ok(&h, "/stream/events", &read, None).await;
    let mut stored = Vec::new();
    for b in 0..40 {
        let batch: Vec<Value> = (0..25)
            .map(|i| json!({"action": "bulk.load", "details": {"b": b, "i": i}}))
            .collect();
        stored.extend(store_batch(&h, &ingest, &batch).await);
    }
    let got = stream.take(stored.len()).await;
    assert_eq!(ids(&got), stored, "every event, in order, none twice");
    stream.assert_quiet().await;
    assert!(h.app.feeds.lag_count() > 0, "the client fell behind the buffer");
}

#[tokio::test]
async fn filters_apply_on_the_server() {
    let h = Harness::new(|_| {});
    let (ingest, read) = (h.key(Scope::Ingest, None), h.key(Scope::Read, None));
    let mut stream = open_ok(
        &h,
        "/stream/events?log=default&action=login.*&outcome=failure&text=Locked",
        &read,
        None,
    )
    .await;
    let stored = store_batch(
        &h,
        &ingest,
        &[
            json!({"action": "login.failed", "outcome": "failure", "message": "account locked"}),
            json!({"action": "login.failed", "outcome": "failure", "message": "bad password"}),
            json!({"action": "login.succeeded", "outcome": "success", "message": "locked out earlier"}),
            json!({"action": "invoice.paid", "outcome": "failure", "message": "locked"}),
        ],
    )
    .await;
    assert_eq!(stream.next().await.index(), stored[0]);
    stream.assert_quiet().await;

    let bad = h.get("/stream/events?limit=5", Some(&read)).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("limit"), "{}", bad.text());
    let bad = h.get("/stream/events?outcome=maybe", Some(&read)).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("outcome"), "{}", bad.text());
    let (status, _, _) = open(&h, "/stream/events", &read, None).await;
    assert_eq!(status, 200);
    let mut req = Request::get("/stream/events")
        .header(header::AUTHORIZATION, format!("Bearer {read}"))
        .header("last-event-id", "x7");
    req = req.header(header::ACCEPT, "text/event-stream");
    let r = h
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("Last-Event-ID"), "{text}");
}

#[tokio::test]
async fn tenant_restricted_callers_see_only_their_tenant() {
    let h = Harness::new(|_| {});
    let ingest = h.key(Scope::Ingest, None);
    let acme = h.key(Scope::Read, Some("acme"));
    let mut stream = open_ok(&h, "/stream/events", &acme, None).await;
    let stored = store_batch(
        &h,
        &ingest,
        &[
            json!({"action": "doc.read", "tenant": "acme"}),
            json!({"action": "doc.read", "tenant": "globex"}),
            json!({"action": "doc.read"}),
            json!({"action": "doc.edit", "tenant": "acme"}),
        ],
    )
    .await;
    let got = stream.take(2).await;
    assert_eq!(ids(&got), vec![stored[0], stored[3]]);
    assert!(got.iter().all(|e| e.json()["event"]["tenant"] == "acme"));
    stream.assert_quiet().await;
    // Replays are filtered the same way.
    let mut replay = open_ok(&h, "/stream/events", &acme, Some(stored[0])).await;
    assert_eq!(replay.next().await.index(), stored[3]);
    replay.assert_quiet().await;

    let other = h.get("/stream/events?tenant=globex", Some(&acme)).await;
    assert_eq!(other.status, 403, "{}", other.text());
    let system = h.get("/stream/events?log=system", Some(&acme)).await;
    assert_eq!(system.status, 403, "{}", system.text());
    let ingest_only = h.get("/stream/events", Some(&ingest)).await;
    assert_eq!(ingest_only.status, 403, "{}", ingest_only.text());
}

#[tokio::test]
async fn the_client_bound_answers_503_with_retry_after() {
    let h = Harness::new(|c| c.web.max_stream_clients = 2);
    let read = h.key(Scope::Read, None);
    let one = open_ok(&h, "/stream/events", &read, None).await;
    let _two = open_ok(&h, "/stream/events", &read, None).await;
    assert_eq!(h.app.feeds.clients(), 2);
    let full = h.get("/stream/events", Some(&read)).await;
    assert_eq!(full.status, 503, "{}", full.text());
    assert_eq!(full.headers[header::RETRY_AFTER], "5");
    assert!(full.text().contains("web.max_stream_clients"), "{}", full.text());
    // A client that leaves frees its place.
    drop(one);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.app.feeds.clients() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "the place was not freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _three = open_ok(&h, "/stream/events", &read, None).await;
}

#[tokio::test]
async fn a_replay_is_bounded_and_says_what_it_skipped() {
    let h = Harness::new(|c| c.web.stream_replay_max = 3);
    let (ingest, read) = (h.key(Scope::Ingest, None), h.key(Scope::Read, None));
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"action": "n.th", "details": {"i": i}}))
        .collect();
    let stored = store_batch(&h, &ingest, &batch).await;
    let mut stream = open_ok(&h, "/stream/events", &read, Some(stored[0])).await;
    let gap = stream.next().await;
    assert_eq!(gap.event, "gap");
    let g = gap.json();
    assert_eq!(g["from"], stored[1]);
    assert_eq!(g["to"], stored[7]);
    assert_eq!(g["skipped"], 6);
    assert_eq!(gap.index(), stored[6], "a reconnect resumes after the gap");
    assert_eq!(ids(&stream.take(3).await), stored[7..].to_vec());
    stream.assert_quiet().await;
}
