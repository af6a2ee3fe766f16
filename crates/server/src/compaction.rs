//! Compression of sealed bundles (`[compression]`, docs/server-config.md):
//! every `interval_s`, each open log packs the whole bundles its latest
//! checkpoint covers into zstd packs and frees their uncompressed bytes
//! (`Log::compact_paced`, docs/ledger-format.md). On its own thread, at
//! the least scheduling priority, and paced: while the machine has fewer
//! than `idle_cpus` CPUs idle, a log's packing is deferred and the run
//! looks again every second, every log in turn, until each is packed or
//! has `max_deferred_entries` waiting, past which it packs however busy
//! the machine is. Ingest on a busy machine so keeps its CPUs. The entries
//! waiting are a gauge (`sealtrail_compaction_waiting_entries`), the time
//! spent waiting a counter (`sealtrail_compaction_wait_ms_total`). A
//! failed run is logged, counted (`sealtrail_compaction_failures_total`)
//! and shown in health until a run of that log succeeds, and the next
//! interval tries again.
//!
//! Not here: the pack format and the crash-safe order of its steps (the
//! ledger).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_ledger::{CpuMeter, Pace};

use crate::app::App;

/// Start the compaction thread of `app` (unless the interval is 0).
pub fn start(app: &Arc<App>) -> std::io::Result<()> {
    let interval = Duration::from_secs(app.config.compression.interval_s);
    if interval.is_zero() {
        return Ok(());
    }
    metrics::counter!("sealtrail_compaction_failures_total").increment(0);
    metrics::counter!("sealtrail_compaction_wait_ms_total").increment(0);
    app.compaction.start(app, "sealtrail-compact", interval, run_once)
}

/// One compaction run over every open log; what each did or why it
/// failed is logged, failures kept for health. Returns once every log is
/// packed or failed, or the server stops.
pub fn run_once(app: &App) {
    run_measured(app, CpuMeter::new());
}

/// [`run_once`] with the machine's load read by `meter`.
pub fn run_measured(app: &App, mut meter: CpuMeter) {
    let c = &app.config.compression;
    let pace = Pace {
        idle_cpus: c.idle_cpus,
        max_deferred: c.max_deferred_entries,
        ..Pace::default()
    };
    let stop = || app.compaction.stopping() || app.shutting_down();
    // Logs packed or failed in this run; the rest are looked at again.
    let mut finished: HashSet<String> = HashSet::new();
    let mut deferred_before: HashSet<String> = HashSet::new();
    loop {
        let mut deferred = false;
        for (log, trail) in app.open_trails() {
            if finished.contains(&log) || stop() {
                continue;
            }
            let paced = trail.log().compact_paced(&pace, &mut meter, &stop);
            metrics::gauge!("sealtrail_compaction_waiting_entries", "log" => log.clone())
                .set(trail.log().unpacked() as f64);
            match paced {
                Ok(paced) => {
                    app.compaction.succeeded(&log);
                    let report = &paced.packed;
                    if report.to > report.from {
                        tracing::info!(
                            log = %log,
                            from = report.from,
                            to = report.to,
                            raw_bytes = report.raw_bytes,
                            packed_bytes = report.packed_bytes,
                            bytes_freed = report.bytes_freed,
                            forced_steps = paced.forced_steps,
                            "packed entries [{}, {}) of log {log}",
                            report.from,
                            report.to
                        );
                    }
                    if paced.deferred {
                        deferred = true;
                        if deferred_before.insert(log.clone()) {
                            tracing::info!(
                                log = %log,
                                waiting = paced.left,
                                "compaction of log {log} waits for an idle CPU ({} entries waiting)",
                                paced.left
                            );
                        }
                    } else {
                        finished.insert(log);
                    }
                }
                Err(e) => {
                    metrics::counter!("sealtrail_compaction_failures_total", "log" => log.clone()).increment(1);
                    tracing::error!(log = %log, "compaction failed: {e}");
                    app.compaction.failed(&log, e.to_string());
                    finished.insert(log);
                }
            }
        }
        if !deferred || stop() {
            return;
        }
        let began = Instant::now();
        while began.elapsed() < pace.look && !stop() {
            std::thread::sleep(Duration::from_millis(100));
        }
        metrics::counter!("sealtrail_compaction_wait_ms_total").increment(began.elapsed().as_millis() as u64);
    }
}
