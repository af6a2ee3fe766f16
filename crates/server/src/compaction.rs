//! Compression of sealed bundles (`[compression]`, docs/server-config.md):
//! every `interval_s`, each open log packs the whole bundles its latest
//! checkpoint covers into zstd packs and frees their uncompressed bytes
//! (`Log::compact`, docs/ledger-format.md). On its own thread, at the
//! least scheduling priority, so it never slows ingest; a failed run is
//! logged, counted (`sealtrail_compaction_failures_total`) and shown in
//! health until a run of that log succeeds, and the next interval tries
//! again.
//!
//! Not here: the pack format and the crash-safe order of its steps (the
//! ledger).

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;

/// Start the compaction thread of `app` (unless the interval is 0).
pub fn start(app: &Arc<App>) -> std::io::Result<()> {
    let interval = Duration::from_secs(app.config.compression.interval_s);
    if interval.is_zero() {
        return Ok(());
    }
    metrics::counter!("sealtrail_compaction_failures_total").increment(0);
    app.compaction.start(app, "sealtrail-compact", interval, run_once)
}

/// One compaction run over every open log; what each did or why it
/// failed is logged, failures kept for health.
pub fn run_once(app: &App) {
    for (log, trail) in app.open_trails() {
        match trail.log().compact() {
            Ok(report) => {
                app.compaction.succeeded(&log);
                if report.to > report.from {
                    tracing::info!(
                        log = %log,
                        from = report.from,
                        to = report.to,
                        raw_bytes = report.raw_bytes,
                        packed_bytes = report.packed_bytes,
                        bytes_freed = report.bytes_freed,
                        "packed entries [{}, {}) of log {log}",
                        report.from,
                        report.to
                    );
                }
            }
            Err(e) => {
                metrics::counter!("sealtrail_compaction_failures_total", "log" => log.clone()).increment(1);
                tracing::error!(log = %log, "compaction failed: {e}");
                app.compaction.failed(&log, e.to_string());
            }
        }
    }
}
