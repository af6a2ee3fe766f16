//! Receipts and proofs: what a client keeps to show later that its event
//! is in the log, and that the log only ever grew.
//!
//! A key restricted to a tenant gets receipts and inclusion proofs of that
//! tenant's entries only (404 for any other, as for an entry that does not
//! exist); consistency proofs hold only hashes and need no entitlement.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealtrail_merkle::Receipt;
use sealtrail_trail::Trail;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{b64, blocking, ledger_problem, readable, LogPath};
use crate::app::{App, Caller};
use crate::extract::{Auth, Params, PathArgs};
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReceiptPath {
    pub log: String,
    /// The entry's index.
    pub index: u64,
}

/// A C2SP tlog-proof receipt for entry `index` against the latest
/// checkpoint (text, as in a `.tlog-proof` file).
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/receipts/{index}", tag = "proofs",
    params(ReceiptPath),
    responses(
        (status = 200, description = "c2sp.org/tlog-proof@v1 receipt", body = String, content_type = "text/plain; charset=utf-8"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn receipt(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(ReceiptPath { log, index }): PathArgs<ReceiptPath>,
) -> ApiResult<Response> {
    blocking(move || {
        let trail = readable(&app, &caller, &log)?;
        let (checkpoint, note) = trail.log().checkpoint();
        if index >= checkpoint.size {
            return Err(out_of_range(index, checkpoint.size));
        }
        entitled(&trail, &caller, &log, index)?;
        let proof = trail
            .log()
            .inclusion_proof(index, checkpoint.size)
            .map_err(ledger_problem)?;
        app.record(
            &caller,
            "trail.proof_read",
            &log,
            json!({"route": "receipt", "index": index}),
        )?;
        let receipt = Receipt {
            extra: None,
            index,
            proof,
            checkpoint: note.to_vec(),
        };
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            receipt.to_bytes(),
        )
            .into_response())
    })
    .await
}

fn out_of_range(index: u64, size: u64) -> Problem {
    Problem::not_found(format!("index {index} is not in the log (size {size})"))
}

/// Refuse a key restricted to a tenant a receipt or inclusion proof of
/// another tenant's entry, as if it did not exist: the proof would carry
/// the entry's leaf hash, and the leaf hash confirms a guessed event.
/// Consistency proofs cover no particular entry and stay open to all.
fn entitled(trail: &Trail, caller: &Caller, log: &str, index: u64) -> Result<(), Problem> {
    let Some(tenant) = caller.tenant() else {
        return Ok(());
    };
    let entry = trail.log().entry(index).map_err(ledger_problem)?;
    // An entry that is not an event belongs to no tenant.
    let owner = sealtrail_event::parse_entry(&entry).ok().and_then(|e| e.tenant);
    if owner.as_deref() == Some(tenant) {
        Ok(())
    } else {
        Err(Problem::not_found(format!(
            "log {log} has no entry {index} of tenant {tenant:?}"
        )))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    pub index: u64,
    /// Tree size to prove against; the latest checkpoint's by default.
    pub size: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    /// RFC 9162 leaf hash of the entry, base64.
    pub leaf_hash: String,
    /// Root hash of the tree of `tree_size` entries, base64.
    pub root_hash: String,
    /// Base64 hashes, the leaf's sibling first.
    pub proof: Vec<String>,
    /// A signed checkpoint for `tree_size`, when the log has one (always
    /// for the latest size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/proofs/inclusion", tag = "proofs",
    params(LogPath, InclusionParams),
    responses(
        (status = 200, body = InclusionProof),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn inclusion(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(p): Params<InclusionParams>,
) -> ApiResult<Json<InclusionProof>> {
    blocking(move || {
        let trail = readable(&app, &caller, &log)?;
        let log_ = trail.log();
        let (latest, _) = log_.checkpoint();
        let size = p.size.unwrap_or(latest.size);
        if size > latest.size {
            return Err(Problem::not_found(format!(
                "size {size} is beyond the latest checkpoint (size {})",
                latest.size
            )));
        }
        if p.index >= size {
            return Err(out_of_range(p.index, size));
        }
        entitled(&trail, &caller, &log, p.index)?;
        let proof = log_.inclusion_proof(p.index, size).map_err(ledger_problem)?;
        let leaf = log_.node(0, p.index).map_err(ledger_problem)?;
        let root = log_.root_at(size).map_err(ledger_problem)?;
        let checkpoint = log_
            .checkpoint_at(size)
            .ok()
            .map(|(_, note)| String::from_utf8_lossy(&note).into_owned());
        app.record(
            &caller,
            "trail.proof_read",
            &log,
            json!({"route": "inclusion", "index": p.index, "size": size}),
        )?;
        Ok(Json(InclusionProof {
            index: p.index,
            tree_size: size,
            leaf_hash: b64(&leaf),
            root_hash: b64(&root),
            proof: proof.iter().map(|h| b64(h)).collect(),
            checkpoint,
        }))
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size; the latest checkpoint's by default.
    pub to: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Base64 root hashes of both trees.
    pub from_root: String,
    pub to_root: String,
    /// RFC 9162 consistency proof, base64 hashes.
    pub proof: Vec<String>,
}

/// RFC 9162 consistency proof between the trees of `from` and `to` entries.
#[utoipa::path(
    get, path = "/api/v1/logs/{log}/proofs/consistency", tag = "proofs",
    params(LogPath, ConsistencyParams),
    responses(
        (status = 200, body = ConsistencyProof),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn consistency(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
    Params(p): Params<ConsistencyParams>,
) -> ApiResult<Json<ConsistencyProof>> {
    blocking(move || {
        let trail = readable(&app, &caller, &log)?;
        let log_ = trail.log();
        let (latest, _) = log_.checkpoint();
        let to = p.to.unwrap_or(latest.size);
        if to > latest.size {
            return Err(Problem::not_found(format!(
                "size {to} is beyond the latest checkpoint (size {})",
                latest.size
            )));
        }
        if p.from > to {
            return Err(Problem::bad_request(
                "out-of-range",
                format!("from ({}) must not exceed to ({to})", p.from),
            ));
        }
        let proof = log_.consistency_proof(p.from, to).map_err(ledger_problem)?;
        let from_root = log_.root_at(p.from).map_err(ledger_problem)?;
        let to_root = log_.root_at(to).map_err(ledger_problem)?;
        app.record(
            &caller,
            "trail.proof_read",
            &log,
            json!({"route": "consistency", "from": p.from, "to": to}),
        )?;
        Ok(Json(ConsistencyProof {
            from: p.from,
            to,
            from_root: b64(&from_root),
            to_root: b64(&to_root),
            proof: proof.iter().map(|h| b64(h)).collect(),
        }))
    })
    .await
}
