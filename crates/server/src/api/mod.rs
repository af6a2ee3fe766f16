//! API v1: the JSON routes under `/api/v1`, each documented in the OpenAPI
//! document the server serves.

pub mod admin;
pub mod alerts;
pub mod ingest;
pub mod proofs;
pub mod query;
pub mod routed;

use std::sync::Arc;

use base64::Engine;
use sealtrail_ledger::LedgerError;
use sealtrail_trail::{Trail, TrailError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::{App, Caller};
use crate::meta::{Scope, SYSTEM_LOG};
use crate::problem::Problem;

/// The `{log}` of a route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LogPath {
    /// Log name: lowercase letters, digits, `-` and `_`.
    pub log: String,
}

/// Run `f` on the blocking pool: ledger and index work blocks on disk.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        // A panic's text is for the log, never for the client.
        Err(match e.try_into_panic() {
            Ok(panic) => crate::request::panic_problem(&*panic),
            Err(e) => Problem::internal(format!("request worker failed: {e}")),
        })
    })
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
        other => Problem::internal(other),
    }
}

/// A ledger's error as the client may see it (see [`trail_problem`]).
pub fn ledger_problem(e: LedgerError) -> Problem {
    match e {
        LedgerError::OutOfRange { .. } => Problem::bad_request("out-of-range", e.to_string()),
        LedgerError::Damaged { .. } => Problem::integrity_failure(e.to_string()),
        // A storage fault: nothing was acknowledged, and the log refuses
        // writes until reopened (after a full disk, by itself once space is
        // free). The client learns what stopped; the server log has why.
        LedgerError::Poisoned(_) => Problem::unavailable(e.to_string()),
        LedgerError::Io { .. } => Problem::unavailable_after("a storage operation of the log failed", e),
        other => Problem::internal(other),
    }
}

/// The trail of `log` if `caller` may read it: read scope; the system log
/// (who read what) only with admin scope.
pub fn readable(app: &App, caller: &Caller, log: &str) -> Result<Arc<Trail>, Problem> {
    caller.require(Scope::Read)?;
    if log == SYSTEM_LOG {
        caller.require(Scope::Admin)?;
    }
    app.trail(log)
}
