//! Every error the API returns: an RFC 9457 problem document
//! (`application/problem+json`) whose `type` names the kind of problem
//! (listed in docs/api.md) and whose `detail` says what and where.
//!
//! A client's mistake gets a precise detail written for the client. A fault
//! inside the server ([`Problem::internal`], [`Problem::unavailable_after`])
//! gets a generic detail with an error id, while the error itself, which
//! may name files of the data directory or carry `Debug` text, goes only to
//! the server log under that id and to the
//! `sealtrail_http_internal_errors_total` counter.
//!
//! Also here, for every module that answers requests: how trail and
//! ledger errors become problems.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sealtrail_ledger::LedgerError;
use sealtrail_trail::TrailError;
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
    /// For `pruned` (410): entries below this index were pruned by
    /// retention; their bytes are gone, their hashes and proofs remain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned_below: Option<u64>,
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
            pruned_below: None,
            instance: None,
            request_id: None,
        }
    }

    /// 410 `pruned`: what was asked for was pruned by retention.
    pub fn pruned(detail: impl Into<String>, pruned_below: u64) -> Problem {
        let mut p = Problem::new(StatusCode::GONE, "pruned", detail);
        p.pruned_below = Some(pruned_below);
        p
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
    /// full disk, shutting down): refuse rather than lose. `detail` is
    /// shown to the client: it must name no file and carry no error text
    /// of a lower layer (use [`Problem::unavailable_after`] for that).
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// Stored data failed its integrity check: the damaged entry cannot be
    /// served and its log takes no writes until it is repaired. 503, as the
    /// server is fine but cannot serve this until an operator acts.
    pub fn integrity_failure(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "integrity-failure", detail)
    }

    /// The query index of a log failed and is being rebuilt from the
    /// ledger by itself: queries on the log are refused until it is back
    /// (ingest goes on). `detail` names the log and nothing of the fault.
    pub fn index_unavailable(detail: impl Into<String>, retry_after: u64) -> Problem {
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "index-unavailable", detail);
        p.retry_after = Some(retry_after.max(1));
        p
    }

    /// A batch with idempotency keys that cannot be checked or held now
    /// (503): the query index of the log is being rebuilt.
    pub fn idempotency_unavailable(detail: impl Into<String>, retry_after: u64) -> Problem {
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "idempotency-unavailable", detail);
        p.retry_after = Some(retry_after.max(1));
        p
    }

    /// A fault that stops the server serving this request for now (503):
    /// the client reads `what`, written for it; `error` goes only to the
    /// server log, under the error id the detail names.
    pub fn unavailable_after(what: impl std::fmt::Display, error: impl std::fmt::Display) -> Problem {
        let id = fault("unavailable", &what, &error);
        Problem::unavailable(format!("{what}; see the server log, error id {id}"))
    }

    /// An internal fault: `error` goes only to the server log, under the
    /// error id the generic detail names, never to the client.
    pub fn internal(error: impl std::fmt::Display) -> Problem {
        let id = fault("internal", &"internal error", &error);
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error; see the server log, error id {id}"),
        )
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
            self.request_id = crate::request_id::current_id();
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

/// Log a fault in full under a fresh error id and count it; returns the id.
fn fault(kind: &'static str, what: &dyn std::fmt::Display, error: &dyn std::fmt::Display) -> String {
    let id = error_id();
    tracing::error!(error_id = %id, kind, "{what}: {error}");
    metrics::counter!("sealtrail_http_internal_errors_total", "kind" => kind).increment(1);
    id
}

/// 16 hex digits, random: unique enough to find one fault in a log.
fn error_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness the time still tells faults apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_be_bytes();
    }
    sealtrail_meta::hex(&bytes)
}

/// A trail's error as the client may see it: its own mistakes precisely,
/// faults generically (the error, which names files, is logged).
pub fn trail_problem(e: TrailError) -> Problem {
    match e {
        TrailError::Ledger(l) => ledger_problem(l),
        // The cause is in the server log (the indexer logged it) and in
        // health; the client learns which log and when to come back.
        TrailError::IndexUnavailable {
            log,
            state,
            retry_after,
        } => Problem::index_unavailable(
            format!(
                "the query index of log {log} failed and is being rebuilt from the ledger by itself (now {state}); \
                 queries on this log resume when it is back, ingest is not affected"
            ),
            retry_after.as_secs(),
        ),
        // Fields are protected that cannot be (no master key): nothing is
        // stored until the operator gives one; the message names only the
        // log and the settings.
        TrailError::Pii(e @ sealtrail_pii::PiiError::Config(_)) => Problem::unavailable(e.to_string()),
        // The key store (meta.db) could not keep the new data keys the
        // request needs, or changed under it twice: nothing was appended,
        // and a retry may well pass. The store's words go to the log only.
        TrailError::Pii(e @ sealtrail_pii::PiiError::Store(_)) => {
            let mut p = Problem::unavailable_after(
                "the PII key store could not keep the data keys this request needs; nothing was appended",
                e,
            );
            p.retry_after = Some(1);
            p
        }
        // Nothing was appended; the detail says why and the bound, never a key.
        e @ (TrailError::KeysUnchecked { .. } | TrailError::KeysFull { .. }) => {
            let retry_after = match &e {
                TrailError::KeysUnchecked { retry_after, .. } | TrailError::KeysFull { retry_after, .. } => {
                    retry_after.as_secs()
                }
                _ => 1,
            };
            Problem::idempotency_unavailable(format!("{e}; nothing in this request was appended"), retry_after)
        }
        other => Problem::internal(other),
    }
}

/// A ledger's error as the client may see it (see [`trail_problem`]).
pub fn ledger_problem(e: LedgerError) -> Problem {
    match e {
        LedgerError::OutOfRange { .. } => Problem::bad_request("out-of-range", e.to_string()),
        LedgerError::Pruned { pruned_below, .. } => Problem::pruned(e.to_string(), pruned_below),
        LedgerError::Damaged { .. } => Problem::integrity_failure(e.to_string()),
        // A storage fault: nothing was acknowledged, and the log refuses
        // writes until reopened (after a full disk, by itself once space is
        // free). The client learns what stopped; the server log has why.
        LedgerError::Poisoned(_) => Problem::unavailable(e.to_string()),
        LedgerError::Io { .. } => Problem::unavailable_after("a storage operation of the log failed", e),
        other => Problem::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `error` as a fault: the client's detail must hold none of it.
    fn check(error: &str, unavailable_what: &str) {
        let p = Problem::internal(error);
        assert_eq!((p.status, p.kind.as_str()), (500, "urn:sealtrail:problem:internal"));
        let id = p
            .detail
            .strip_prefix("internal error; see the server log, error id ")
            .unwrap_or_else(|| panic!("{}", p.detail));
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert!(!p.detail.contains(error), "{}", p.detail);

        let p = Problem::unavailable_after(unavailable_what, error);
        assert_eq!(p.status, 503);
        assert!(p
            .detail
            .starts_with(&format!("{unavailable_what}; see the server log, error id ")));
        assert!(!p.detail.contains(error), "{}", p.detail);
    }

    #[test]
    fn a_key_store_failure_is_a_503_to_retry_naming_no_file() {
        let e = TrailError::Pii(sealtrail_pii::PiiError::Store(sealtrail_pii::StoreError(
            "meta.db: disk I/O error".into(),
        )));
        let p = trail_problem(e);
        assert_eq!((p.status, p.retry_after), (503, Some(1)));
        assert!(p.detail.starts_with("the PII key store could not keep"), "{}", p.detail);
        assert!(!p.detail.contains("meta.db"), "{}", p.detail);
    }

    #[test]
    fn faults_never_reach_the_client() {
        check(
            "checksum mismatch in /var/lib/sealtrail/logs/default/entries at 4096",
            "the log stopped after a storage fault",
        );
        check("Some(Rejected(Rejection { errors: [..] }))", "recording failed");
        check(
            "lock /srv/data/logs/x/lock: held by another process",
            "log x is held by another process",
        );
    }

    #[test]
    fn each_fault_has_its_own_id() {
        assert_ne!(Problem::internal("a").detail, Problem::internal("a").detail);
    }
}
