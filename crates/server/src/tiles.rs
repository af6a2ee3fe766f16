//! The log served read-only in the C2SP tlog-tiles layout, so that any
//! tlog-tiles client can verify it without trusting this server:
//! `/logs/{log}/checkpoint`, `/logs/{log}/tile/<L>/<N>[.p/<W>]` and
//! `/logs/{log}/tile/entries/<N>[.p/<W>]`.
//!
//! The checkpoint and hash tiles hold only hashes and may be public
//! (`tiles.public`); entry bundles are the events themselves and are
//! served only to keys that may read every event of the log (see
//! `visible`).
//!
//! Tiles and bundles never change once they exist (a partial tile of width
//! W stays the same W hashes), so they are cached for a year; the
//! checkpoint changes with every append and is cached for seconds.

use std::io::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::write::GzEncoder;
use flate2::Compression;
use sealtrail_merkle::tile::TILE_WIDTH;
use sealtrail_merkle::{EntryBundle, TileCoord, TileKind};
use sealtrail_trail::Trail;
use serde_json::json;

use crate::api::LogPath;
use crate::app::{App, Caller};
use crate::extract::{Auth, PathArgs};
use crate::problem::ledger_problem;
use crate::problem::Problem;
use crate::request::blocking;
use sealtrail_meta::{Scope, SYSTEM_LOG};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const TILE_WIDTH_U64: u64 = TILE_WIDTH as u64;

/// The trail of `log` if `caller` may fetch its checkpoint and hash tiles
/// (`entries` false) or its entry bundles (`entries` true).
///
/// Checkpoints and hash tiles reveal only hashes, so `tiles.public` may
/// serve them without a key. Entry bundles are the events themselves:
/// they need a read key entitled to every tenant the log can hold, which
/// is a key without tenant restriction or, when logs are per tenant
/// (`logs.per_tenant`) and the log is the tenant's own, that tenant's key.
fn visible(app: &App, caller: &Caller, log: &str, entries: bool) -> Result<Arc<Trail>, Problem> {
    if log == SYSTEM_LOG {
        caller.require_system_read()?;
    } else if entries || !app.config.tiles.public || caller.key().is_some() {
        caller.require(Scope::Read)?;
    }
    if let Some(t) = caller.tenant() {
        // A log holds every tenant's events unless it is the tenant's own.
        if t != log {
            return Err(Problem::forbidden(format!(
                "{} is restricted to tenant {t:?} and may fetch tiles of log {t:?} only",
                caller.describe()
            )));
        }
        if entries && !app.config.logs.per_tenant {
            return Err(Problem::forbidden(format!(
                "the entry bundles of log {log:?} may hold every tenant's events (logs.per_tenant is off), and {} is restricted to tenant {t:?}",
                caller.describe()
            )));
        }
    }
    app.trail(log)
}

/// The log's latest signed checkpoint (C2SP tlog-checkpoint in a signed
/// note). Its tiles follow at `/logs/{log}/tile/…` (C2SP tlog-tiles).
#[utoipa::path(
    get, path = "/logs/{log}/checkpoint", tag = "proofs",
    params(LogPath),
    responses(
        (status = 200, description = "C2SP signed note", body = String, content_type = "text/plain; charset=utf-8"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("api_key" = []))
)]
pub async fn checkpoint(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(LogPath { log }): PathArgs<LogPath>,
) -> Result<Response, Problem> {
    let trail = blocking({
        let app = app.clone();
        move || visible(&app, &caller, &log, false)
    })
    .await?;
    let (_, note) = trail.log().checkpoint();
    let cache = format!("public, max-age={}", app.config.tiles.checkpoint_max_age);
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (header::CACHE_CONTROL, cache),
        ],
        note.to_vec(),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
pub struct TilePath {
    log: String,
    rest: String,
}

/// A hash tile or an entry bundle.
pub async fn tile(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    PathArgs(TilePath { log, rest }): PathArgs<TilePath>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let gzip = accepts_gzip(&headers);
    // Who may fetch it depends on what it is; a path that is not a tile
    // is refused after that check, so it reveals nothing more.
    let entries = rest.split('/').next() == Some("entries");
    blocking(move || {
        let trail = visible(&app, &caller, &log, entries)?;
        let path = format!("tile/{rest}");
        let (kind, coord) =
            TileCoord::parse_path(&path).map_err(|e| Problem::not_found(format!("/logs/{log}/{path}: {e}")))?;
        let size = trail.log().size();
        if !exists(&coord, size) {
            return Err(Problem::not_found(format!(
                "/logs/{log}/{path} is beyond the tree (size {size})"
            )));
        }
        match kind {
            TileKind::Hashes => {
                let body = trail
                    .log()
                    .tile(coord.level(), coord.index(), coord.width())
                    .map_err(ledger_problem)?;
                Ok(octets(body, false))
            }
            TileKind::Entries => {
                let first = coord.index() * TILE_WIDTH_U64;
                // A pruned bundle is not there any more, as a bundle not
                // yet written is not; its hash tiles still are.
                let pruned = trail.log().pruned_below();
                if first < pruned {
                    return Err(Problem::not_found(format!(
                        "/logs/{log}/{path}: entries below {pruned} were pruned by retention (their hash tiles remain)"
                    )));
                }
                let entries = trail
                    .log()
                    .entries(first, u64::from(coord.width()))
                    .map_err(ledger_problem)?;
                let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
                let bundle = EntryBundle::encode(&refs).map_err(|e| Problem::internal(e.to_string()))?;
                app.record(
                    &caller,
                    "trail.bundle_read",
                    &log,
                    json!({"route": "tile", "path": path, "entries": refs.len()}),
                )?;
                if gzip {
                    let mut z = GzEncoder::new(Vec::with_capacity(bundle.len() / 3), Compression::fast());
                    z.write_all(&bundle)
                        .and_then(|()| z.finish())
                        .map(|body| octets(body, true))
                        .map_err(|e| Problem::internal(format!("gzip: {e}")))
                } else {
                    Ok(octets(bundle, false))
                }
            }
        }
    })
    .await
}

/// Whether the tree of `size` entries has the tile `coord` at its width:
/// a full tile once 256 nodes exist at its level, a partial one of width
/// W once W exist and the tile is not yet full.
fn exists(coord: &TileCoord, size: u64) -> bool {
    // Nodes at tree level 8·L: size / 256^L, rounded down.
    let shift = 8 * u32::from(coord.level());
    let nodes = if shift >= 64 { 0 } else { size >> shift };
    let start = coord.index().saturating_mul(TILE_WIDTH_U64);
    let available = nodes.saturating_sub(start).min(TILE_WIDTH_U64);
    if coord.is_partial() {
        available == u64::from(coord.width())
    } else {
        available == TILE_WIDTH_U64
    }
}

fn octets(body: Vec<u8>, gzipped: bool) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    r
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                matches!(
                    p.trim().replace(' ', "").as_str(),
                    "q=0" | "q=0.0" | "q=0.00" | "q=0.000"
                )
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}
