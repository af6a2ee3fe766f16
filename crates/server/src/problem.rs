//! Every error the API returns: an RFC 9457 problem document
//! (`application/problem+json`) whose `type` names the kind of problem
//! (listed in docs/api.md) and whose `detail` says what and where.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:sealtrail:problem:<kind>`; the kinds are listed in docs/api.md.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For bad JSON: where the text stops being JSON (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// For refused events: each field that is wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// Seconds to wait before retrying (rate limits, overload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `urn:sealtrail:request:<id>`: this occurrence, named by the
    /// request's `x-request-id` (filled in when the answer is sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request's `x-request-id`, as in the server's log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One wrong field of a refused event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldProblem {
    /// 0-based position of the event in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// 1-based line where the event starts in an NDJSON or JSON text
    /// sequence batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Dotted field path, e.g. `actor.id`; empty for the event as a whole.
    pub field: String,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:sealtrail:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            line: None,
            column: None,
            errors: Vec::new(),
            retry_after: None,
            instance: None,
            request_id: None,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    /// The server cannot keep what it would acknowledge (poisoned ledger,
    /// full disk, shutting down): refuse rather than lose.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// Stored data failed its integrity check: the damaged entry cannot be
    /// served and its log takes no writes until it is repaired. 503, as the
    /// server is fine but cannot serve this until an operator acts.
    pub fn integrity_failure(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "integrity-failure", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn at(mut self, line: usize, column: usize) -> Problem {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        let status = self.status();
        if self.request_id.is_none() {
            self.request_id = crate::request::current_id();
        }
        if self.instance.is_none() {
            self.instance = self.request_id.as_ref().map(|id| format!("urn:sealtrail:request:{id}"));
        }
        let id = self.request_id.as_deref().unwrap_or("-");
        // The server's faults are logged in full, with the request they hit.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(request_id = id, status = self.status, kind = %self.kind, "{}", self.detail);
        } else if status.is_server_error() {
            tracing::error!(request_id = id, status = self.status, kind = %self.kind, "{}", self.detail);
        }
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, Problem>;
