//! Request extractors whose every refusal is a problem document: axum's
//! own rejections are plain text, and an audit API answers in one format.
//! Also [`bound_request`], which holds every request target and query
//! parameter to `limits` before any handler sees them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::app::{App, Caller};
use crate::problem::Problem;

/// The caller, from `Authorization: Bearer <key>`, or else the browser
/// session of the `sealtrail_session` cookie.
pub struct Auth(pub Caller);

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let header = match parts.headers.get(AUTHORIZATION) {
            // A browser session (CSRF already checked by `web::auth::sessions`).
            None if parts.extensions.get::<crate::web::auth::SessionCaller>().is_some() => {
                let session = parts
                    .extensions
                    .get::<crate::web::auth::SessionCaller>()
                    .expect("just checked");
                return Ok(Auth(session.caller.clone()));
            }
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| Problem::unauthorized("the Authorization header is not ASCII"))?,
            ),
        };
        app.authenticate(header).await.map(Auth)
    }
}

/// Query parameters; unknown or malformed ones are refused by name.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(t)| Params(t))
            .map_err(|e| Problem::bad_request("invalid-query", e.body_text()))
    }
}

/// Path parameters.
pub struct PathArgs<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathArgs<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathArgs(t))
            .map_err(|e| Problem::bad_request("invalid-path", e.body_text()))
    }
}

/// What a request body says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    /// Newline-delimited JSON: `application/x-ndjson`, `application/jsonl`,
    /// `application/jsonlines`.
    Ndjson,
    /// JSON text sequences (RFC 7464, `application/json-seq`): each text
    /// starts with RS (0x1E).
    JsonSeq,
}

/// A request body read whole, at most `limits.max_body_bytes`, with its
/// declared kind.
pub struct JsonBody {
    pub kind: BodyKind,
    pub bytes: Bytes,
}

impl FromRequest<Arc<App>> for JsonBody {
    type Rejection = Problem;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Problem> {
        let kind = body_kind(req.headers())?;
        let limit = app.config.limits.max_body_bytes;
        let timeout_ms = app.config.http.body_timeout_ms;
        let bytes = tokio::time::timeout(Duration::from_millis(timeout_ms), read_limited(req.into_body(), limit))
            .await
            .map_err(|_| {
                metrics::counter!("sealtrail_http_timeouts_total", "kind" => "body").increment(1);
                Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request-timeout",
                    format!("the request body did not arrive within {timeout_ms} ms (http.body_timeout_ms)"),
                )
            })??;
        Ok(JsonBody { kind, bytes })
    }
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, Problem> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type header"));
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => Ok(BodyKind::Ndjson),
        "application/json-seq" => Ok(BodyKind::JsonSeq),
        _ => Err(unsupported(&format!("Content-Type {text:?}"))),
    }
}

fn unsupported(what: &str) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        format!(
            "{what}: send application/json (batches also application/x-ndjson, application/jsonl, application/jsonlines or application/json-seq)"
        ),
    )
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the request body is larger than the limit of {limit} bytes (limits.max_body_bytes)"),
            )
        } else {
            Problem::bad_request("unreadable-body", format!("reading the request body: {e}"))
        }
    })
}

/// Refuse a request target longer than `limits.max_uri_bytes` (414) and a
/// query parameter longer than `limits.max_param_bytes` once decoded (400
/// `parameter-too-long`), so that no handler, filter or system-log record
/// ever works on an unbounded parameter.
pub async fn bound_request(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let limits = &app.config.limits;
    match check_target(request.uri(), limits.max_uri_bytes, limits.max_param_bytes) {
        Ok(()) => next.run(request).await,
        Err(p) => p.into_response(),
    }
}

fn check_target(uri: &axum::http::Uri, max_uri: usize, max_param: usize) -> Result<(), Problem> {
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > max_uri {
        return Err(Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!("the request target is {target} bytes; the limit is {max_uri} bytes (limits.max_uri_bytes)"),
        ));
    }
    for pair in uri.query().unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let len = decoded_len(value);
        if len > max_param {
            let name = String::from_utf8_lossy(&decode(name))
                .chars()
                .take(64)
                .collect::<String>();
            return Err(Problem::bad_request(
                "parameter-too-long",
                format!(
                    "query parameter {name:?} is {len} bytes; the limit is {max_param} bytes (limits.max_param_bytes)"
                ),
            ));
        }
    }
    Ok(())
}

/// The length of `text` once `application/x-www-form-urlencoded` decoded.
fn decoded_len(text: &str) -> usize {
    let b = text.as_bytes();
    let escapes = (0..b.len())
        .filter(|&i| b[i] == b'%' && b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
        .count();
    b.len() - 2 * escapes
}

/// `text` decoded as `application/x-www-form-urlencoded` (`+` is a space).
fn decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decoded_lengths_count_each_escape_as_one_byte() {
        for (text, decoded) in [
            ("", ""),
            ("abc", "abc"),
            ("a+b", "a b"),
            ("%41%42", "AB"),
            ("%4", "%4"),
            ("%zz1", "%zz1"),
            ("%C3%A9x", "éx"),
            ("%%41", "%A"),
        ] {
            assert_eq!(decode(text), decoded.as_bytes(), "{text}");
            assert_eq!(decoded_len(text), decoded.len(), "{text}");
        }
    }
}
