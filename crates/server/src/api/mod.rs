//! API v1: the JSON routes under `/api/v1`, each documented in the OpenAPI
//! document the server serves.

pub mod admin;
pub mod alerts;
pub mod data;
pub mod holds;
pub mod ingest;
pub mod jobs;
pub mod proofs;
pub mod query;
pub mod reports;
pub mod routed;

use std::sync::Arc;

use base64::Engine;
use sealtrail_trail::Trail;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::{App, Caller};
use crate::problem::Problem;
pub use crate::problem::{ledger_problem, trail_problem};
pub use crate::request::blocking;
use sealtrail_meta::{Scope, SYSTEM_LOG};

/// The `{log}` of a route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LogPath {
    /// Log name: lowercase letters, digits, `-` and `_`.
    pub log: String,
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The trail of `log` if `caller` may read it: read scope; the system log
/// (who read what) only with admin scope or as an auditor.
pub fn readable(app: &App, caller: &Caller, log: &str) -> Result<Arc<Trail>, Problem> {
    caller.require(Scope::Read)?;
    if log == SYSTEM_LOG {
        caller.require_system_read()?;
    }
    app.trail(log)
}
