//! The Sealtrail HTTP server.
//!
//! [`router`] builds every route on an [`App`] (tests drive it without a
//! socket); [`Server::start`] binds and serves it ([`transport`]), and on
//! SIGTERM/SIGINT or [`Server::shutdown`] stops accepting, lets in-flight
//! requests finish within `http.shutdown_timeout_ms` (then drops the
//! connections left), writes a final checkpoint and returns.
//!
//! Invariants:
//! - A 2xx answer to an ingest means the events are durable and covered by
//!   the signed checkpoint in the answer; anything the server cannot keep
//!   (poisoned ledger, critically full disk, shutdown) is refused with 503.
//! - Every error is an RFC 9457 problem document, naming the request's
//!   `x-request-id`.
//! - Every wait on a client, and every queue, is bounded: connections,
//!   requests in flight, header, body, idle and send times, single events
//!   waiting for their log's workers.
//! - Every read and export of a trail, and every key change, is recorded in
//!   the system log before the answer leaves.

// A problem document is built at most once per refused request, off any
// hot loop; boxing it would only add noise to every handler.
#![allow(clippy::result_large_err)]

pub mod alerts;
pub mod api;
pub mod app;
pub mod compaction;
pub mod config;
pub mod extract;
pub mod feed;
pub mod integrity;
pub mod jobs;
pub mod key_use;
pub mod oidc;
pub mod ops;
pub mod periodic;
pub mod pg_follow;
pub mod pii;
pub mod problem;
pub mod request;
pub mod request_id;
pub mod retention;
pub mod running;
pub mod single;
pub mod system;
pub mod tiles;
pub mod transport;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use app::App;
pub use config::Config;
use problem::Problem;

/// The OpenAPI document's path.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Sealtrail",
        description = "Audit trail that proves its own integrity: durable ingest with receipts, queries, proofs, and the log in the C2SP tlog-tiles layout. Every error is an RFC 9457 problem document.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "ingest", description = "Store events; a 2xx answer means durable."),
        (name = "query", description = "Read the trail; every read is recorded in the system log."),
        (name = "proofs", description = "Receipts, inclusion and consistency proofs."),
        (name = "logs", description = "The logs of this server."),
        (name = "keys", description = "API keys (admin scope)."),
        (name = "holds", description = "Legal holds: retention never prunes what they cover (admin to add and release, admin or auditor to list; docs/retention.md)."),
        (name = "alerts", description = "Alert rules, channels, silences, alerts and notification history (docs/alerts.md)."),
        (name = "jobs", description = "Scheduled jobs: definitions, run now, run history (admin scope for changes; docs/scheduler.md)."),
        (name = "data", description = "Data reconciliation runs: diff, key discovery, validation (docs/api.md, docs/data.md)."),
        (name = "operations", description = "Health, readiness, metrics."),
    )
)]
struct ApiDoc;

/// The OpenAPI document and the API routes it describes.
fn api() -> (Router<Arc<App>>, OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(api::ingest::post_event))
        .routes(routes!(api::ingest::post_batch))
        .routes(routes!(api::routed::post_event))
        .routes(routes!(api::routed::post_batch))
        .routes(routes!(api::query::list_events))
        .routes(routes!(api::query::get_event))
        .routes(routes!(api::query::history))
        .routes(routes!(api::query::stats))
        .routes(routes!(api::query::list_errors))
        .routes(routes!(api::query::performance))
        .routes(routes!(api::query::export))
        .routes(routes!(api::reports::get_report))
        .routes(routes!(api::proofs::receipt))
        .routes(routes!(api::proofs::inclusion))
        .routes(routes!(api::proofs::consistency))
        .routes(routes!(api::admin::list_logs, api::admin::create_log))
        .routes(routes!(api::admin::list_keys, api::admin::create_key))
        .routes(routes!(api::admin::revoke_key))
        .routes(routes!(api::admin::system_health))
        .routes(routes!(api::holds::list_holds, api::holds::add_hold))
        .routes(routes!(api::holds::get_hold, api::holds::release_hold))
        .routes(routes!(api::alerts::list_rules, api::alerts::create_rule))
        .routes(routes!(
            api::alerts::get_rule,
            api::alerts::put_rule,
            api::alerts::delete_rule
        ))
        .routes(routes!(api::alerts::list_channels, api::alerts::create_channel))
        .routes(routes!(
            api::alerts::get_channel,
            api::alerts::put_channel,
            api::alerts::delete_channel
        ))
        .routes(routes!(api::alerts::list_silences, api::alerts::create_silence))
        .routes(routes!(api::alerts::delete_silence))
        .routes(routes!(api::alerts::list_alerts))
        .routes(routes!(api::alerts::list_notifications))
        .routes(routes!(api::alerts::test_send))
        .routes({
            // Uploads are bounded by data.max_upload_bytes as they stream
            // to disk, not by axum's default for bodies read into memory.
            let (schemas, paths, method) = routes!(api::data::create_run, api::data::list_runs);
            (schemas, paths, method.layer(axum::extract::DefaultBodyLimit::disable()))
        })
        .routes(routes!(api::jobs::list_jobs, api::jobs::create_job))
        .routes(routes!(api::jobs::get_job, api::jobs::put_job, api::jobs::delete_job))
        .routes(routes!(api::jobs::run_job))
        .routes(routes!(api::jobs::enable_job))
        .routes(routes!(api::jobs::disable_job))
        .routes(routes!(api::jobs::list_runs))
        .routes(routes!(api::data::get_run))
        .routes(routes!(api::data::list_changes))
        .routes(routes!(api::data::get_report))
        .routes(routes!(tiles::checkpoint))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics_text))
        .split_for_parts();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key from `sealtrail keys create`"))
                .build(),
        ),
    );
    (router, doc)
}

/// The OpenAPI 3.1 document the server serves.
pub fn openapi() -> OpenApi {
    api().1
}

/// Every route of the server on `app`, inside the request layers
/// ([`request::layers`]: request ids, the in-flight cap, the panic net).
pub fn router(app: Arc<App>) -> Router {
    // Install the recorder before the first request can count anything.
    let _ = ops::prometheus();
    let max_in_flight = app.config.http.max_in_flight;
    let (api_routes, doc) = api();
    let routes = api_routes
        .route("/logs/{log}/tile/{*rest}", get(tiles::tile))
        .merge(web::router().layer(axum::middleware::from_fn(web::security_headers)))
        // Serves the document at OPENAPI_PATH and the bundled (offline) UI,
        // which must not send the document to an outside validator either.
        .merge(
            SwaggerUi::new("/api/docs")
                .url(OPENAPI_PATH, doc)
                .config(utoipa_swagger_ui::Config::default().validator_url("none")),
        )
        .fallback(|| async { Problem::not_found("no such route; the API is described at /api/v1/openapi.json") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), web::auth::sessions))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            extract::bound_request,
        ))
        .layer(axum::middleware::from_fn(as_problem))
        .layer(axum::middleware::from_fn(ops::track))
        .with_state(app);
    request::layers(routes, max_in_flight)
}

/// Errors produced outside our handlers (405 from the router, a panic
/// caught by a layer) come without a body; give them one in the API's
/// error format.
async fn as_problem(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        // Pages answer errors in HTML of their own.
        v.as_bytes().starts_with(problem::CONTENT_TYPE.as_bytes()) || v.as_bytes().starts_with(b"text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not accept that method".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    };
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::NOT_FOUND => "not-found",
        _ => "http",
    };
    let mut replaced = Problem::new(status, kind, detail).into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replaced.headers_mut().insert(header::ALLOW, allow.clone());
    }
    replaced
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    evaluator: std::thread::JoinHandle<()>,
}

impl Server {
    /// Bind `config.listen`, then open the data directory and serve.
    ///
    /// Binding comes first, so that a server that cannot listen (the port
    /// is taken, say) leaves no data directory, log or key behind.
    pub async fn start(config: Config) -> Result<Server, String> {
        let listen = config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => format!(
                    "cannot listen on {listen}: the address is in use by another process; stop it or choose another address (--listen, or `listen` in the configuration)"
                ),
                _ => format!("cannot listen on {listen}: {e}"),
            })?;
        let app = tokio::task::spawn_blocking(move || App::open(config))
            .await
            .map_err(|e| e.to_string())??;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = watch::channel(false);
        spawn_outbox_drainer(app.clone(), stop.subscribe());
        let evaluator =
            alerts::spawn_evaluator(app.clone(), stop.subscribe()).map_err(|e| format!("starting alerts: {e}"))?;
        alerts::spawn_deliverer(app.clone(), stop.subscribe());
        pg_follow::Followers::start(&app).map_err(|e| format!("starting the PostgreSQL followers: {e}"))?;
        jobs::Jobs::start(&app)?;
        let router = router(app.clone());
        let http = app.config.http.clone();
        let task = tokio::spawn(async move {
            transport::serve(listener, router, http, stopped).await;
            Ok(())
        });
        // Only a hint for the messages of commands that need a log's lock.
        if let Err(e) = running::record(&app.config.data_dir, addr) {
            tracing::warn!("recording {} in the data directory: {e}", running::RUNNING_FILE);
        }
        tracing::info!(%addr, data_dir = %app.config.data_dir.display(), "sealtrail {} started", env!("CARGO_PKG_VERSION"));
        Ok(Server {
            addr,
            app,
            stop,
            task,
            evaluator,
        })
    }

    /// Stop accepting connections; in-flight requests finish (within
    /// `http.shutdown_timeout_ms`), and writes are refused from now on.
    pub fn shutdown(&self) {
        self.app.begin_shutdown();
        let _ = self.stop.send(true);
        tracing::info!(addr = %self.addr, "stopping: finishing requests in flight");
    }

    /// Wait until the server has stopped, then make every log's state
    /// durable (a final checkpoint) and record queued system events.
    pub async fn wait(self) -> Result<(), String> {
        let served = self.task.await.map_err(|e| e.to_string())?;
        let app = self.app;
        let data_dir = app.config.data_dir.clone();
        let _ = self.stop.send(true);
        let evaluator = self.evaluator;
        tokio::task::spawn_blocking(move || {
            // The evaluator saves its progress as it stops.
            let _ = evaluator.join();
            app.pg_follow.stop();
            app.jobs.stop();
            // Every request was answered; the workers only stop here.
            app.singles.stop();
            app.integrity.stop();
            app.retention.stop();
            app.compaction.stop();
            let _ = app.drain_outbox();
            app.record_key_uses();
            // A log stopped by a storage fault or found damaged keeps what
            // it last signed and is reported; every healthy log still gets
            // its final checkpoint, and the exit is clean.
            for (name, trail) in app.open_trails() {
                let log = trail.log();
                if let Some(d) = log.damaged() {
                    tracing::error!(log = %name, "log {name} stops damaged at entry {}: {}", d.index, d.detail);
                    continue;
                }
                if let Some(reason) = log.poisoned() {
                    tracing::error!(log = %name, "log {name} stops after a storage fault: {reason}");
                    continue;
                }
                // The index is derived: one that stopped after a fault is
                // caught up from the ledger at the next start.
                if let Err(e) = trail.sync_index() {
                    tracing::error!(log = %name, "log {name}: {e}");
                }
                log.flush().map_err(|e| format!("log {name}: {e}"))?;
            }
            Ok::<(), String>(())
        })
        .await
        .map_err(|e| e.to_string())??;
        running::clear(&data_dir);
        tracing::info!("stopped; every log has a final checkpoint");
        served
    }
}

/// Every second until the server stops: write when keys were last used,
/// reload the API keys if another process (the CLI) changed them, and move
/// the changes it queued into the system log.
fn spawn_outbox_drainer(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    // Present from the start, so a rate over it works from zero.
    metrics::counter!("sealtrail_key_reload_failures_total").increment(0);
    metrics::counter!("sealtrail_key_uses_dropped_total").increment(0);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let app = app.clone();
            let result = tokio::task::spawn_blocking(move || {
                app.record_key_uses();
                if let Err(e) = app.refresh_keys() {
                    tracing::warn!("reloading API keys: {e}");
                }
                app.drain_outbox()
            })
            .await;
            if let Ok(Err(p)) = result {
                tracing::warn!("system outbox: {}", p.detail);
            }
        }
    });
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed
/// when this is called, not when the future is first polled, so a signal
/// that arrives between the call and the first poll still stops the server
/// gracefully rather than killing it. Call it inside the runtime.
pub fn termination() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, interrupt) {
                (Some(mut term), Some(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Some(mut one), None) | (None, Some(mut one)) => {
                    one.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
