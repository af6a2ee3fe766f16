//! Compression of sealed bundles (`[compression]`, docs/server-config.md):
//! every `interval_s`, each open log packs the whole bundles its latest
//! checkpoint covers into zstd packs and frees their uncompressed bytes
//! (`Log::compact_paced`, docs/ledger-format.md). On its own thread, at
//! the least scheduling priority, and paced: while the machine has fewer
//! than `idle_cpus` CPUs idle, packing waits and the backlog grows, up to
//! `max_deferred_entries` a log, past which it packs however busy the
//! machine is. Ingest on a busy machine so keeps its CPUs. The entries
//! waiting are a gauge (`sealtrail_compaction_waiting_entries`), the time
//! spent waiting a counter (`sealtrail_compaction_wait_ms_total`). A
//! failed run is logged, counted (`sealtrail_compaction_failures_total`)
//! and shown in health until a run of that log succeeds, and the next
//! interval tries again. Logs are packed one after another.
//!
//! Not here: the pack format and the crash-safe order of its steps (the
//! ledger).

use std::sync::Arc;
use std::time::Duration;

use sealtrail_ledger::{CpuMeter, Pace};

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
    let c = &app.config.compression;
    let pace = Pace {
        idle_cpus: c.idle_cpus,
        max_deferred: c.max_deferred_entries,
        ..Pace::default()
    };
    let mut meter = CpuMeter::new();
    let stop = || app.compaction.stopping() || app.shutting_down();
    for (log, trail) in app.open_trails() {
        let waiting = metrics::gauge!("sealtrail_compaction_waiting_entries", "log" => log.clone());
        waiting.set(trail.log().unpacked() as f64);
        let paced = trail.log().compact_paced(&pace, &mut meter, &stop);
        waiting.set(trail.log().unpacked() as f64);
        match paced {
            Ok(paced) => {
                metrics::counter!("sealtrail_compaction_wait_ms_total", "log" => log.clone())
                    .increment(paced.waited.as_millis() as u64);
                if !paced.waited.is_zero() {
                    tracing::info!(
                        log = %log,
                        waited_s = paced.waited.as_secs_f64(),
                        forced_steps = paced.forced_steps,
                        "compaction of log {log} waited {:.1} s for idle CPUs",
                        paced.waited.as_secs_f64()
                    );
                }
                let report = paced.packed;
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
