//! What every request goes through before any route: a request id, a cap
//! on requests handled at once, and a net for panics.
//!
//! - `x-request-id`: a client's own id is kept when it is well formed
//!   (1–[`MAX_ID_LEN`] characters of `A-Z a-z 0-9 - _ . : + / =`),
//!   otherwise the server makes one. It is sent back on every answer, named
//!   in every problem document (`request_id`, `instance`) and in the log
//!   lines of that request, so a client's report leads to the server's log.
//! - At most `http.max_in_flight` requests are handled at once; one more is
//!   answered 503 `overloaded` with `Retry-After` at once instead of
//!   queueing without bound. `/healthz` is always answered.
//! - A panicking handler is answered 500 with a generic problem document
//!   (the panic's text stays in the log), and the server goes on.
//!
//! This module does not read bodies or know routes; [`crate::router`]
//! puts these layers around every route, and tests can put them around
//! their own ([`layers`]).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::problem::Problem;

/// The header that carries a request's id, both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen request id kept; a longer one is replaced.
pub const MAX_ID_LEN: usize = 128;

pub use crate::request_id::current_id;
use crate::request_id::REQUEST_ID;

/// Put the request id, the in-flight cap and the panic net around
/// `router` (the order matters: the id is outermost, so that refusals and
/// panics are answered and logged under it).
pub fn layers(router: Router, max_in_flight: usize) -> Router {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    router
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(axum::middleware::from_fn_with_state(in_flight, limit_in_flight))
        .layer(axum::middleware::from_fn(with_request_id))
}

/// Whether a client's id may be reused: short, and safe to copy into log
/// lines and problem documents.
pub fn well_formed(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'='))
}

/// A new id: this process's random prefix and a counter, so ids are
/// unique across restarts without a lock or a clock.
fn new_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| getrandom::u64().unwrap_or(0x5ea1_7a11));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // 16 hex digits of the prefix, then the counter's low 32 bits: one
    // allocation (the header value's) per request.
    let mut text = [0u8; 24];
    for (i, slot) in text.iter_mut().enumerate() {
        let nibble = if i < 16 {
            (prefix >> (60 - 4 * i)) & 0xf
        } else {
            (n >> (28 - 4 * (i - 16))) & 0xf
        };
        *slot = b"0123456789abcdef"[nibble as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0"))
}

async fn with_request_id(request: Request, next: Next) -> Response {
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(v) if well_formed(v.as_bytes()) => v.clone(),
        _ => new_id(),
    };
    // Ids are ASCII by construction or by the check above.
    let span = tracing::info_span!("request", id = id.to_str().unwrap_or("-"));
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request).instrument(span)).await;
    response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    response
}

async fn limit_in_flight(State(in_flight): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    // A liveness probe must not fail because the server is busy.
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let Ok(_permit) = in_flight.try_acquire() else {
        metrics::counter!("sealtrail_http_requests_shed_total").increment(1);
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is handling as many requests as it may at once (http.max_in_flight); retry shortly",
        );
        p.retry_after = Some(1);
        return p.into_response();
    };
    next.run(request).await
}

/// The answer to a panicking handler: the panic's text is for the log,
/// never for the client.
fn answer_panic(panic: Box<dyn Any + Send + 'static>) -> Response {
    panic_problem(&*panic).into_response()
}

/// Log and count `panic`, met while answering the current request (in a
/// handler or a blocking task), and the generic problem that answers it.
pub fn panic_problem(panic: &(dyn Any + Send)) -> Problem {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    record_panic(text);
    Problem::internal("the server failed while answering this request; the fault is logged under its request id")
}

/// Log and count a panic met while answering the current request.
fn record_panic(text: &str) {
    metrics::counter!("sealtrail_http_panics_total").increment(1);
    let id = current_id();
    tracing::error!(request_id = id.as_deref().unwrap_or("-"), "a handler panicked: {text}");
}

/// Run `f` on the blocking pool: ledger and index work blocks on disk.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        // A panic's text is for the log, never for the client.
        Err(match e.try_into_panic() {
            Ok(panic) => panic_problem(&*panic),
            Err(e) => Problem::internal(format!("request worker failed: {e}")),
        })
    })
}
