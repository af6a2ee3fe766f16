//! The integrity guard: a thread of its own that scrubs every open log
//! (`sealtrail_ledger::scrub`) and resumes logs stopped by a full disk once
//! space is free again; and what health and `/metrics` report of both.
//!
//! The ledger is synchronous, so this is a plain thread, not a task: each
//! interval it re-reads the entries appended to each open log since its
//! last look, then a share of the whole-log pass sized so that the pass
//! takes `integrity.scrub_period_s`, never more than ingest can spare.
//! Deliberately not here: the checks themselves, which are the ledger's,
//! and the server's state: the guard sees only what [`GuardedLogs`] hands
//! it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use sealtrail_event::Timestamp;
use sealtrail_ledger::scrub::{Scrub, ScrubStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::Integrity as IntegrityConfig;

/// Most new entries one log's scrub re-reads per interval: under a flood of
/// ingest it falls behind rather than take a core from it.
const NEW_PER_INTERVAL: u64 = 1 << 18;

/// Free space beyond the reserve a log stopped by a full disk waits for
/// before it resumes, so that it does not resume into the same wall.
pub const RESUME_ROOM_BYTES: u64 = 1 << 20;

/// A log's integrity as health reports it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogHealth {
    pub name: String,
    /// `ok`; `damaged` (stored data failed its check: reads of it and every
    /// write are refused until an operator repairs the log); `poisoned` (a
    /// write or sync failed: writes are refused until it is reopened,
    /// which the server does by itself after a full disk).
    pub status: LogStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<DamageReport>,
    /// Why writes stopped, when poisoned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poisoned: Option<String>,
    pub scrub: ScrubReport,
    /// Times the server resumed this log after a full disk.
    pub recoveries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_recovery_at: Option<String>,
    pub index: IndexHealth,
}

/// A log's query index: whether it serves queries, and what it covers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct IndexHealth {
    /// `ok`; `rebuilding` (it failed and is being rebuilt from the ledger:
    /// queries on the log answer 503 `index-unavailable`, ingest goes on);
    /// `failed` (the last rebuild failed too; the next starts after
    /// `retry_in_seconds`, 1 s doubling up to 60 s).
    pub state: String,
    /// The cause of the last failure of the index or of a rebuild, kept
    /// after it recovered (paths relative to the data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Ledger entries covered: by the index when `ok`, by the rebuild so
    /// far otherwise.
    pub covered: u64,
    /// Entries of the ledger.
    pub ledger_size: u64,
    /// Acknowledged events waiting for the indexer, and their bound.
    pub queued: u64,
    pub max_queued: u64,
    /// Failures of the index and rebuilds completed since the log opened.
    pub failures: u64,
    pub rebuilds: u64,
    /// Idempotency keys held in memory until an index commit holds them,
    /// and their bound: at it, appends with a new key answer 503
    /// `idempotency-unavailable`.
    pub held_keys: u64,
    pub max_held_keys: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_seconds: Option<u64>,
}

impl IndexHealth {
    /// `trail`'s index; error paths are shown relative to `data_dir`.
    pub fn of(trail: &sealtrail_trail::Trail, data_dir: &std::path::Path) -> IndexHealth {
        let s = trail.index_status();
        let root = format!("{}/", data_dir.display());
        IndexHealth {
            state: s.state.as_str().to_string(),
            last_error: s.last_error.map(|e| e.replace(&root, "")),
            covered: s.covered,
            ledger_size: trail.log().size(),
            queued: s.queued as u64,
            max_queued: s.max_queued as u64,
            failures: s.failures,
            rebuilds: s.rebuilds,
            held_keys: s.held_keys as u64,
            max_held_keys: s.max_held_keys as u64,
            retry_in_seconds: s.retry_in.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStatus {
    Ok,
    Poisoned,
    Damaged,
}

/// The first entry found damaged.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DamageReport {
    /// Ledger index of the entry.
    pub entry: u64,
    /// Byte offset of its record in the log's entries file.
    pub offset: u64,
    pub detail: String,
}

/// Where the scrub of a log stands.
#[derive(Debug, Clone, PartialEq, Default, Serialize, ToSchema)]
pub struct ScrubReport {
    /// `ok`, `damaged` (at `damaged.entry`), `error` (the scrub could not
    /// read: see `error`), or `off` (`integrity.scrub_interval_ms` is 0, or
    /// the scrub has not looked at this log yet).
    pub result: String,
    /// Entries appended since the log was opened are checked below this index.
    pub new_checked: u64,
    /// The whole-log pass in progress: next entry to check, and its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_end: Option<u64>,
    pub full_passes: u64,
    /// When the last whole-log pass completed (RFC 3339), and the size it
    /// covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_full_pass_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_full_pass_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the guard publishes of one log.
#[derive(Debug, Clone, Default)]
struct Published {
    scrub: ScrubReport,
    last_full_pass_unix: Option<f64>,
    recoveries: u64,
    last_recovery_at: Option<String>,
}

/// What the guard needs of the server: the logs open now, and whether
/// the disk has room to resume one.
pub trait GuardedLogs: Send + Sync {
    /// Every log open now, by name.
    fn open_trails(&self) -> Vec<(String, Arc<sealtrail_trail::Trail>)>;
    /// Whether the data directory could take `bytes` more and keep its
    /// reserve; the refusal says why not.
    fn check_room(&self, bytes: u64) -> Result<(), String>;
}

/// What the guard publishes, by log name; shared with its thread.
type PublishedByLog = Arc<Mutex<HashMap<String, Published>>>;

/// The guard's shared state: its configuration, the status it publishes,
/// and its thread.
#[derive(Default)]
pub struct Integrity {
    interval: Duration,
    period: Duration,
    published: PublishedByLog,
    thread: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Integrity {
    /// A guard configured by `[integrity]`, not started.
    pub fn new(config: &IntegrityConfig) -> Integrity {
        Integrity {
            interval: Duration::from_millis(config.scrub_interval_ms),
            period: Duration::from_secs(config.scrub_period_s),
            ..Integrity::default()
        }
    }

    /// Start the guard thread over `logs` (unless the scrub interval is 0).
    /// It holds them weakly, so that it never keeps a log open, and ends
    /// when they are dropped or on [`Integrity::stop`].
    pub fn start(&self, logs: Weak<dyn GuardedLogs>) -> std::io::Result<()> {
        let (interval, period) = (self.interval, self.period);
        if interval.is_zero() {
            return Ok(());
        }
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let published = self.published.clone();
        let thread = std::thread::Builder::new()
            .name("sealtrail-integrity".into())
            .spawn(move || run(&logs, &published, &stopped, interval, period))?;
        *lock(&self.thread) = Some((stop, thread));
        Ok(())
    }

    /// Stop the guard and wait for it; it stops within one step of one log.
    pub fn stop(&self) {
        let running = lock(&self.thread).take();
        if let Some((stop, thread)) = running {
            let _ = stop.send(());
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// The guard's own view of one log.
struct Guarded {
    scrub: Scrub,
    pass_started: Option<Instant>,
    published: Published,
}

fn run(
    logs_of: &Weak<dyn GuardedLogs>,
    published: &Mutex<HashMap<String, Published>>,
    stopped: &Receiver<()>,
    interval: Duration,
    period: Duration,
) {
    // The least scheduling priority (nice 19), as the alert evaluator's:
    // when ingest keeps every core busy the scrub yields and falls behind
    // (new entries are capped per interval), so it never slows an
    // acknowledgement; recovery waits on the disk, not on the CPU.
    if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
        tracing::warn!("integrity: could not lower the scrub's priority: {e:?}");
    }
    let mut logs: HashMap<String, Guarded> = HashMap::new();
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(server) = logs_of.upgrade() else { return };
        for (name, trail) in server.open_trails() {
            if !stopped.is_empty() {
                return;
            }
            let log = trail.log();
            let guarded = match logs.get_mut(&name) {
                Some(g) => g,
                None => match Scrub::new(log) {
                    Ok(scrub) => logs.entry(name.clone()).or_insert(Guarded {
                        scrub,
                        pass_started: None,
                        published: Published::default(),
                    }),
                    Err(e) => {
                        tracing::error!(log = %name, "integrity scrub cannot start: {e}");
                        continue;
                    }
                },
            };
            if recover_if_room(&*server, &name, &trail, &mut guarded.published) {
                // Health reads the log's state live: the count must not lag it.
                lock(published).insert(name.clone(), guarded.published.clone());
            }
            step(log, guarded, interval, period);
            lock(published).insert(name, guarded.published.clone());
        }
    }
}

/// Resume a log poisoned by a full disk once the disk has room again.
/// Returns true if it did.
fn recover_if_room(
    server: &dyn GuardedLogs,
    name: &str,
    trail: &sealtrail_trail::Trail,
    published: &mut Published,
) -> bool {
    if !trail.log().poisoned_by_full_disk() || server.check_room(RESUME_ROOM_BYTES).is_err() {
        return false;
    }
    match trail.recover() {
        Ok(true) => {
            published.recoveries += 1;
            published.last_recovery_at = Some(Timestamp::now().to_string());
            metrics::counter!("sealtrail_log_recoveries_total", "log" => name.to_string()).increment(1);
            tracing::warn!(
                log = %name,
                size = trail.log().size(),
                "log {name} resumed after a full disk, from its last durable state ({} entries)",
                trail.log().size()
            );
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!(log = %name, "log {name} could not be resumed after a full disk: {e}");
            false
        }
    }
}

/// One interval of the scrub of one log.
fn step(log: &sealtrail_ledger::Log, g: &mut Guarded, interval: Duration, period: Duration) {
    if log.damaged().is_none() {
        let mut result = g.scrub.check_new(log, NEW_PER_INTERVAL).map(|_| ());
        if result.is_ok() && !period.is_zero() {
            let due = g.pass_started.is_none_or(|t| t.elapsed() >= period);
            if !g.scrub.pass_running() && due {
                g.scrub.start_pass(log);
                g.pass_started = Some(Instant::now());
            }
            let end = g.scrub.status(log).pass.map_or(0, |(_, end)| end);
            result = g.scrub.check_pass(log, pass_budget(end, interval, period)).map(|done| {
                if done {
                    g.published.scrub.last_full_pass_at = Some(Timestamp::now().to_string());
                    g.published.last_full_pass_unix = Some(Timestamp::now().as_millisecond() as f64 / 1000.0);
                }
            });
        }
        g.published.scrub.error = match result {
            // Damage is reported from the log's own state below.
            Ok(()) | Err(sealtrail_ledger::LedgerError::Damaged { .. }) => None,
            Err(e) => Some(e.to_string()),
        };
    }
    let status: ScrubStatus = g.scrub.status(log);
    let s = &mut g.published.scrub;
    s.result = if status.damaged.is_some() {
        "damaged"
    } else if s.error.is_some() {
        "error"
    } else {
        "ok"
    }
    .to_string();
    s.new_checked = status.new_checked;
    s.pass_position = status.pass.map(|(at, _)| at);
    s.pass_end = status.pass.map(|(_, end)| end);
    s.full_passes = status.full_passes;
    s.last_full_pass_size = status.last_pass_size;
}

/// Entries of a pass over `end` entries to check per `interval` for the
/// pass to take `period`: at least one, so every pass ends.
fn pass_budget(end: u64, interval: Duration, period: Duration) -> u64 {
    let period_ms = period.as_millis().max(1);
    let share = (u128::from(end) * interval.as_millis()).div_ceil(period_ms);
    u64::try_from(share).unwrap_or(u64::MAX).max(1)
}

impl Integrity {
    /// The integrity of each of `trails` (the logs open now, by name);
    /// error paths are shown relative to `data_dir`.
    pub fn log_health(
        &self,
        trails: Vec<(String, Arc<sealtrail_trail::Trail>)>,
        data_dir: &std::path::Path,
    ) -> Vec<LogHealth> {
        let published = lock(&self.published).clone();
        let off = self.interval.is_zero();
        trails
            .into_iter()
            .map(|(name, trail)| {
                let log = trail.log();
                let damaged = log.damaged().map(|d| DamageReport {
                    entry: d.index,
                    offset: d.offset,
                    detail: d.detail,
                });
                let poisoned = log.poisoned().map(|r| r.to_string());
                let status = if damaged.is_some() {
                    LogStatus::Damaged
                } else if poisoned.is_some() {
                    LogStatus::Poisoned
                } else {
                    LogStatus::Ok
                };
                let p = published.get(&name).cloned().unwrap_or_default();
                let mut scrub = p.scrub;
                if off || scrub.result.is_empty() {
                    scrub.result = "off".into();
                }
                if damaged.is_some() {
                    scrub.result = "damaged".into();
                }
                LogHealth {
                    index: IndexHealth::of(&trail, data_dir),
                    name,
                    status,
                    damaged,
                    poisoned,
                    scrub,
                    recoveries: p.recoveries,
                    last_recovery_at: p.last_recovery_at,
                }
            })
            .collect()
    }

    /// Set the integrity gauges of each of `trails` (the logs open now, at
    /// each scrape).
    pub fn set_metrics(&self, trails: Vec<(String, Arc<sealtrail_trail::Trail>)>) {
        let published = lock(&self.published).clone();
        let mut damaged_logs = 0u32;
        for (name, trail) in trails {
            let damaged = trail.log().damaged().is_some();
            damaged_logs += u32::from(damaged);
            metrics::gauge!("sealtrail_log_damaged", "log" => name.clone()).set(f64::from(u8::from(damaged)));
            // Present from the start, so a rate over it works from zero.
            metrics::counter!("sealtrail_integrity_failures_total", "log" => name.clone()).increment(0);
            let Some(p) = published.get(&name) else { continue };
            metrics::gauge!("sealtrail_scrub_checked_entries", "log" => name.clone()).set(p.scrub.new_checked as f64);
            metrics::gauge!("sealtrail_scrub_pass_position", "log" => name.clone())
                .set(p.scrub.pass_position.or(p.scrub.last_full_pass_size).unwrap_or(0) as f64);
            metrics::gauge!("sealtrail_scrub_full_passes", "log" => name.clone()).set(p.scrub.full_passes as f64);
            if let Some(t) = p.last_full_pass_unix {
                metrics::gauge!("sealtrail_scrub_last_full_pass_timestamp_seconds", "log" => name.clone()).set(t);
            }
        }
        metrics::gauge!("sealtrail_logs_damaged").set(f64::from(damaged_logs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_spread_over_its_period_and_always_moves() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // 86,400 entries over a day at one look a second: one per look.
        assert_eq!(pass_budget(86_400, s(1), s(86_400)), 1);
        assert_eq!(pass_budget(86_401, s(1), s(86_400)), 2);
        assert_eq!(pass_budget(1_000_000, ms(100), s(10)), 10_000);
        // An empty log or a period shorter than the interval.
        assert_eq!(pass_budget(0, s(1), s(86_400)), 1);
        assert_eq!(pass_budget(500, s(2), s(1)), 1_000);
        assert_eq!(pass_budget(u64::MAX, s(1), ms(1)), u64::MAX);
    }
}
