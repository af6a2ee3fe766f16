//! The server's scheduler (docs/scheduler.md): one thread that ticks
//! [`sealtrail_sched::Scheduler`] every `scheduler.tick_ms`, and at once
//! when a job is changed or asked to run through the API. Jobs reach the
//! server's open trails through [`AppLogs`].
//!
//! Several servers on one data directory each run a scheduler; the lease
//! row of each job in `meta.db` makes sure only one runs an occurrence.
//! At shutdown the thread stops taking jobs and waits up to
//! [`SHUTDOWN_WAIT`] for those running; a run still going then is left to
//! end on its own, its lease expiring if the process exits first.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use sealtrail_ledger::DataDir;
use sealtrail_meta::Meta;
use sealtrail_sched::data_runs::DataRunPool;
use sealtrail_sched::scheduler::{from_millis, millis, rfc3339};
use sealtrail_sched::{Clock, JobEnv, Logs, Registry, Scheduler, SchedulerOptions, SystemClock};
use sealtrail_trail::Trail;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;
use crate::config::Config;

/// How long shutdown waits for running jobs.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The window of [`SchedulerHealth::failed_runs_24h`].
const FAILURE_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// The scheduler in `GET /api/v1/system/health`. Failed runs do not
/// change the health's `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SchedulerHealth {
    /// Whether this server runs a scheduler (`scheduler.tick_ms` is not 0).
    pub active: bool,
    /// The name this process takes leases under; null when inactive.
    pub holder: Option<String>,
    /// When this process's scheduler started (RFC 3339).
    pub started_at: Option<String>,
    /// Jobs defined in the data directory, and those enabled.
    pub jobs_total: u64,
    pub jobs_enabled: u64,
    /// Jobs running now in any process on this data directory (their
    /// lease is held and not expired), by name.
    pub running_now: Vec<String>,
    /// Whether this process holds any job's lease, and which.
    pub holds_leases: bool,
    pub leases_held: Vec<String>,
    /// Runs that failed in the last 24 hours, by any process.
    pub failed_runs_24h: u64,
    /// Runs this process ran that failed since its scheduler started.
    pub failed_runs_since_start: u64,
    /// The latest failed run kept in the history, whenever it was.
    pub last_failure: Option<JobFailure>,
}

/// A failed run as health names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobFailure {
    pub job: String,
    /// When the run ended (RFC 3339).
    pub finished_at: String,
    pub error: String,
    /// The process that ran it.
    pub holder: String,
}

/// The open trails of the server, for jobs.
pub struct AppLogs {
    data: DataDir,
    app: Weak<App>,
}

impl Logs for AppLogs {
    fn data(&self) -> &DataDir {
        &self.data
    }

    fn trail(&self, name: &str) -> Result<Arc<Trail>, String> {
        let app = self.app.upgrade().ok_or("the server is stopping")?;
        app.trail(name).map_err(|p| p.detail)
    }
}

/// The job types this server runs, and its scheduler thread.
pub struct Jobs {
    pub registry: Arc<Registry>,
    scheduler: OnceLock<Arc<Scheduler>>,
    /// When the scheduler thread started (milliseconds since the epoch).
    started: OnceLock<i64>,
    wake: Mutex<Option<Sender<()>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Jobs {
    /// The job types that ship, with what `config` gives them: report
    /// delivery held to `alerts.allowed_networks`, data runs reading the
    /// sources of `[data.sources]` within `data.memory_budget`, taking
    /// the `data.max_running` slots of `data_runs` (those of the data
    /// API) and keeping their results in its run directories. No
    /// scheduler thread yet.
    pub fn new(config: &Config, data_runs: Arc<DataRunPool>) -> Jobs {
        use sealtrail_sched::kinds::data::{DataDiff, DataKeys, DataSettings};
        let mut registry = Registry::builtin();
        registry.register(sealtrail_sched::kinds::report::Report {
            destinations: config.alerts.destinations(),
        });
        let data = DataSettings {
            sources: Some(config.data.sources.clone()),
            memory_budget: config.data.memory_budget,
            runs: Some(data_runs),
        };
        registry.register(DataDiff(data.clone()));
        registry.register(DataKeys(data));
        Jobs {
            registry: Arc::new(registry),
            scheduler: OnceLock::new(),
            started: OnceLock::new(),
            wake: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
        }
    }
}

impl Jobs {
    /// Start the scheduler thread, unless `scheduler.tick_ms` is 0.
    pub fn start(app: &Arc<App>) -> Result<(), String> {
        let config = &app.config.scheduler;
        if config.tick_ms == 0 {
            tracing::info!("the scheduler is off (scheduler.tick_ms = 0): this server runs no jobs");
            return Ok(());
        }
        // A connection pair of its own: a long listing in a request never
        // holds up a lease renewal.
        let meta = Arc::new(Meta::open(app.data.root()).map_err(|e| e.to_string())?);
        let env = JobEnv {
            meta,
            logs: Arc::new(AppLogs {
                data: app.data.clone(),
                app: Arc::downgrade(app),
            }),
            data_dir: app.data.root().to_path_buf(),
        };
        let opts = SchedulerOptions {
            lease: Duration::from_secs(config.lease_s.max(1)),
            max_running: config.max_running.max(1),
            ..SchedulerOptions::default()
        };
        let jobs = &app.jobs;
        let scheduler = Arc::new(Scheduler::new(jobs.registry.clone(), env, Arc::new(SystemClock), opts));
        let _ = jobs.scheduler.set(scheduler.clone());
        let _ = jobs.started.set(millis(SystemClock.now()));
        let (tx, rx) = channel();
        *jobs.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let stop = jobs.stop.clone();
        let every = Duration::from_millis(config.tick_ms);
        metrics::counter!("sealtrail_scheduler_errors_total").increment(0);
        let thread = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || scheduler.run(every, &stop, &rx))
            .map_err(|e| format!("starting the scheduler thread: {e}"))?;
        *jobs.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(())
    }

    /// Tick now (a job changed or was asked to run).
    pub fn wake(&self) {
        if let Some(tx) = self.wake.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(());
        }
    }

    /// The jobs this process is running.
    pub fn running(&self) -> Vec<String> {
        self.scheduler.get().map(|s| s.running_jobs()).unwrap_or_default()
    }

    /// The scheduler as health reports it: the jobs of the data
    /// directory, those running now in any process, the runs failed
    /// lately, and what this process holds.
    pub fn health(&self, meta: &Meta) -> Result<SchedulerHealth, String> {
        let now = millis(SystemClock.now());
        let rows = meta.jobs().map_err(|e| e.to_string())?;
        let holder = self.scheduler.get().map(|s| s.holder().to_string());
        let leased =
            |r: &&sealtrail_meta::jobs::JobRow| r.lease_holder.is_some() && r.lease_expires.is_some_and(|t| t > now);
        let running: Vec<String> = rows.iter().filter(leased).map(|r| r.name.clone()).collect();
        let held: Vec<String> = rows
            .iter()
            .filter(leased)
            .filter(|r| holder.is_some() && r.lease_holder == holder)
            .map(|r| r.name.clone())
            .collect();
        let day_ago = rfc3339(from_millis(now - FAILURE_WINDOW_MS));
        let (failed_24h, last) = meta.job_failures_since(&day_ago, None).map_err(|e| e.to_string())?;
        let started = self.started.get().copied();
        let failed_here = match (started, &holder) {
            (Some(at), Some(h)) => {
                meta.job_failures_since(&rfc3339(from_millis(at)), Some(h))
                    .map_err(|e| e.to_string())?
                    .0
            }
            _ => 0,
        };
        Ok(SchedulerHealth {
            active: holder.is_some(),
            holds_leases: !held.is_empty(),
            holder,
            started_at: started.map(|at| rfc3339(from_millis(at))),
            jobs_total: rows.len() as u64,
            jobs_enabled: rows.iter().filter(|r| r.enabled).count() as u64,
            running_now: running,
            leases_held: held,
            failed_runs_24h: failed_24h,
            failed_runs_since_start: failed_here,
            last_failure: last.map(|r| JobFailure {
                job: r.job,
                finished_at: r.finished_at,
                error: r.error.unwrap_or_default(),
                holder: r.holder,
            }),
        })
    }

    /// Stop the thread; wait up to [`SHUTDOWN_WAIT`] for running jobs and
    /// record them.
    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        if let Some(s) = self.scheduler.get() {
            if let Err(e) = s.settle_only(SHUTDOWN_WAIT) {
                tracing::error!("scheduler: recording the last runs: {e}");
            }
            let left = s.running_jobs();
            if !left.is_empty() {
                tracing::warn!("stopping with jobs still running: {}", left.join(", "));
            }
        }
    }
}
