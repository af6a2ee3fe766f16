//! The server's retention runs: every `retention.interval_s`, each log
//! with a policy in `[retention.logs.<name>]` is pruned as the policy says
//! (`sealtrail_meta::retention::apply`), stopped by legal holds. On its
//! own thread, at the least scheduling priority, so it never slows ingest;
//! a failed run is logged, counted (`sealtrail_retention_failures_total`)
//! and shown in health until a run of that log succeeds, and the next
//! interval tries again.
//!
//! Not here: planning and pruning (trail, ledger, meta).

use std::sync::Arc;
use std::time::Duration;

use sealtrail_meta::retention::{apply, Target};
use serde_json::json;

use crate::app::App;

/// Start the retention thread of `app` (unless no log has a policy or
/// the interval is 0).
pub fn start(app: &Arc<App>) -> std::io::Result<()> {
    let interval = Duration::from_secs(app.config.retention.interval_s);
    if interval.is_zero() || app.config.retention.logs.is_empty() {
        return Ok(());
    }
    app.retention.start(app, "sealtrail-retention", interval, run_once)
}

/// One retention run over every log with a policy; what each did or why
/// it failed is logged, failures kept for health.
pub fn run_once(app: &App) {
    let actor = json!({"id": "sealtrail", "type": "system"});
    for (log, written) in &app.config.retention.logs {
        // Checked when the configuration was loaded.
        let Ok(policy) = written.policy(log) else { continue };
        let result = app.trail(log).map_err(|p| p.detail).and_then(|trail| {
            apply(
                &app.meta,
                &trail,
                log,
                Target::Policy(policy),
                sealtrail_event::Timestamp::now(),
                &actor,
                false,
            )
            .map_err(|e| e.to_string())
        });
        match result {
            Ok(applied) => {
                app.retention.succeeded(log);
                if let Some(stop) = &applied.plan.stopped {
                    tracing::info!(log = %log, below = applied.plan.below, wanted = applied.plan.wanted, "retention stopped short: {stop}");
                }
            }
            Err(e) => {
                metrics::counter!("sealtrail_retention_failures_total", "log" => log.clone()).increment(1);
                tracing::error!(log = %log, "retention run failed: {e}");
                app.retention.failed(log, e);
            }
        }
    }
    let _ = app.drain_outbox();
}
