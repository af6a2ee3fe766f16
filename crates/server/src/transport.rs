//! Serving HTTP/1.1 connections with every wait on a client bounded.
//!
//! ```text
//! accept ─► over http.max_connections? ── yes ─► canned 503, close
//!              │ no
//!              ▼
//!        Deadlines(TcpStream) ─► hyper http1 ─► router (request layers, routes)
//! ```
//!
//! A connection may take at most `http.header_timeout_ms` from the first
//! byte of a request to the end of its header (slow "loris" clients),
//! may sit at most `http.idle_timeout_ms` with no request and nothing sent
//! or received (kept-alive or silent connections), and may leave at most
//! `http.send_timeout_ms` an answer untaken (a client that stops reading
//! an export). Past any of these, `Deadlines` fails the connection's I/O
//! and hyper drops it. Bodies are bounded in time where they are read
//! (`http.body_timeout_ms`, 408), requests in flight by
//! [`crate::request`].
//!
//! On stop, the listener closes, every connection is asked to finish its
//! request in flight and close, and after `http.shutdown_timeout_ms` those
//! still open are dropped, so a client that never finishes its request
//! cannot hold the server up.
//!
//! HTTP/2 is not served: every client of this API speaks HTTP/1.1, and
//! each deadline above is written for its one-request-at-a-time framing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::config::Http;

/// Refusals of connections over the limit being written at once; past
/// this a refused connection is closed without an answer, so a flood
/// costs no more than this many small tasks.
const REFUSALS_AT_ONCE: usize = 64;

/// How long a refused connection gets to take its 503.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Serve `router` on `listener` until `stop` turns true, then shut down
/// within `http.shutdown_timeout_ms`.
pub async fn serve(listener: TcpListener, router: Router, http: Http, mut stop: watch::Receiver<bool>) {
    let open = Arc::new(Semaphore::new(http.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let refusal = refusal(&http);
    let mut connections = JoinSet::new();
    let for_connections = stop.clone();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, say: back off rather
                        // than spin, and let open connections finish.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    metrics::counter!("sealtrail_http_connections_refused_total").increment(1);
                    if let Ok(slot) = refusing.clone().try_acquire_owned() {
                        let refusal = refusal.clone();
                        tokio::spawn(async move {
                            refuse(stream, &refusal).await;
                            drop(slot);
                        });
                    }
                    continue;
                };
                let (router, http, stop) = (router.clone(), http.clone(), for_connections.clone());
                connections.spawn(async move {
                    metrics::gauge!("sealtrail_http_connections_open").increment(1.0);
                    serve_connection(stream, peer, router, &http, stop).await;
                    metrics::gauge!("sealtrail_http_connections_open").decrement(1.0);
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let deadline = Duration::from_millis(http.shutdown_timeout_ms);
    let drained = tokio::time::timeout(deadline, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "dropping connections still open after http.shutdown_timeout_ms ({} ms)",
            http.shutdown_timeout_ms
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    http: &Http,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(Connection::default());
    let io = Deadlines::new(stream, state.clone(), http);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        let state = state.clone();
        async move {
            let _busy = Busy::enter(state);
            router.call(request.map(Body::new)).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own header timer runs from the moment it waits for a request,
    // so it covers idle time too; `Deadlines` enforces each part, and this
    // is only a backstop.
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_millis(
            http.header_timeout_ms.saturating_add(http.idle_timeout_ms),
        ));
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The answer to a connection over `http.max_connections`.
fn refusal(http: &Http) -> Arc<[u8]> {
    let mut problem = crate::problem::Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!(
            "the server has its limit of {} connections open (http.max_connections); retry shortly",
            http.max_connections
        ),
    );
    problem.retry_after = Some(1);
    let body = serde_json::to_string(&problem).unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        crate::problem::CONTENT_TYPE,
        body.len()
    )
    .into_bytes()
    .into()
}

/// Send the refusal and close. Whatever the client sent is read and
/// dropped until it closes (or a second passes): closing with unread
/// input would reset the connection and could lose the answer.
async fn refuse(mut stream: TcpStream, refusal: &[u8]) {
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(refusal).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

/// What a connection's I/O needs to know of its requests.
#[derive(Default)]
struct Connection {
    /// Requests being handled (from their header to their answer's head).
    busy: AtomicUsize,
    /// Requests begun so far: a change means the last header is complete.
    begun: AtomicU64,
}

/// Marks a request as being handled while it lives.
struct Busy(Arc<Connection>);

impl Busy {
    fn enter(connection: Arc<Connection>) -> Busy {
        connection.begun.fetch_add(1, Ordering::Relaxed);
        connection.busy.fetch_add(1, Ordering::Relaxed);
        Busy(connection)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
enum Expiry {
    Header,
    Idle,
    Send,
}

impl Expiry {
    fn name(self) -> &'static str {
        match self {
            Expiry::Header => "header",
            Expiry::Idle => "idle",
            Expiry::Send => "send",
        }
    }
}

/// A TCP stream whose reads and writes fail once the client has taken too
/// long (see the module's documentation). One timer per connection,
/// moved only when a deadline changes.
struct Deadlines {
    stream: TcpStream,
    connection: Arc<Connection>,
    header: Duration,
    idle: Duration,
    send: Duration,
    /// Last time anything was read or written.
    last: Instant,
    /// When the first byte of the current request's header came.
    header_began: Option<Instant>,
    /// `Connection::begun` when `header_began` was set.
    seen: u64,
    /// Since when the client has taken none of what waits to be sent.
    send_blocked: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Deadlines {
    fn new(stream: TcpStream, connection: Arc<Connection>, http: &Http) -> Deadlines {
        let now = Instant::now();
        Deadlines {
            stream,
            connection,
            header: Duration::from_millis(http.header_timeout_ms),
            idle: Duration::from_millis(http.idle_timeout_ms),
            send: Duration::from_millis(http.send_timeout_ms),
            last: now,
            header_began: None,
            seen: 0,
            send_blocked: None,
            timer: Box::pin(tokio::time::sleep_until(now)),
            armed: None,
        }
    }

    fn busy(&mut self) -> bool {
        let begun = self.connection.begun.load(Ordering::Relaxed);
        if begun != self.seen {
            // A request began: its header is complete.
            self.seen = begun;
            self.header_began = None;
        }
        self.connection.busy.load(Ordering::Relaxed) > 0
    }

    /// The deadline that applies now, if any.
    fn deadline(&mut self) -> Option<(Instant, Expiry)> {
        let send = self.send_blocked.map(|t| (t + self.send, Expiry::Send));
        let waiting = if self.busy() {
            // A handler has the request; bodies have their own timeout.
            None
        } else {
            Some(match self.header_began {
                Some(t) => (t + self.header, Expiry::Header),
                None => (self.last + self.idle, Expiry::Idle),
            })
        };
        match (send, waiting) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Called when the stream would block: an error if a deadline passed,
    /// otherwise the timer is set to wake this task at the next one.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let (at, expiry) = self.deadline()?;
        // The deadline moves later with every read or write; moving the
        // timer each time would cost a timer-wheel update per packet. The
        // timer is only brought forward; when it fires early it is re-armed
        // at the deadline of that moment.
        if self.armed.is_none_or(|armed| armed > at) {
            self.timer.as_mut().reset(at);
            self.armed = Some(at);
        }
        if Instant::now() < at {
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            self.timer.as_mut().reset(at);
            self.armed = Some(at);
            // Registers this task's waker with the re-armed timer.
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
        metrics::counter!("sealtrail_http_timeouts_total", "kind" => expiry.name()).increment(1);
        tracing::debug!("closing a connection: {} timeout", expiry.name());
        Some(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{} timeout", expiry.name()),
        ))
    }

    fn wrote(&mut self, result: Poll<io::Result<usize>>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                self.send_blocked = None;
                self.last = Instant::now();
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                self.send_blocked.get_or_insert_with(Instant::now);
                match self.expired(cx) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl AsyncRead for Deadlines {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last = Instant::now();
                    if !this.busy() && this.header_began.is_none() {
                        this.header_began = Some(this.last);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Deadlines {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
