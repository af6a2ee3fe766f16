//! The scheduler of one process: each [`Scheduler::tick`] reads the jobs
//! from the metadata database, takes what is due (an occurrence, a retry,
//! a run-now) through the lease ([`sealtrail_meta::Meta::claim_job`]),
//! starts it on a thread of its own, renews the leases of its running
//! jobs, stops waiting for those past their timeout, and records each
//! finished run with its `job.run` system-log event.
//!
//! Time comes from a [`Clock`]; nothing here sleeps. The server calls
//! `tick` about once a second from a thread of its own ([`Scheduler::run`]);
//! tests call it with a [`ManualClock`].
//!
//! Not here: parsing definitions (spec), what a job does (kinds).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use sealtrail_meta::jobs::{After, Claim, JobRow, JobRun, Take, Trigger};
use sealtrail_meta::{job_event, Meta, MetaError};
use serde_json::json;

use crate::kind::{JobEnv, Registry, RunContext};
use crate::spec::{JobSpec, Misfire};

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: for tests.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Milliseconds since the epoch.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant of `ms` milliseconds since the epoch.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// RFC 3339 text, to the millisecond, in UTC.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Longest wait before a retry, however many attempts failed.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(6 * 3600);

/// The wait before retry number `attempt` (1 for the first): the job's
/// backoff doubled for each retry before, at most [`MAX_RETRY_WAIT`].
pub fn retry_wait(backoff_seconds: u64, attempt: u64) -> Duration {
    let factor = 1u64 << attempt.saturating_sub(1).min(20);
    Duration::from_secs(backoff_seconds.saturating_mul(factor)).min(MAX_RETRY_WAIT)
}

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Who this process is in the lease column; unique per process.
    pub holder: String,
    /// A lease not renewed for this long is free for another process.
    pub lease: Duration,
    /// Most jobs this process runs at once; due jobs beyond wait.
    pub max_running: usize,
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            holder: format!("pid-{}-{}", std::process::id(), Utc::now().timestamp_micros()),
            lease: Duration::from_secs(60),
            max_running: 4,
        }
    }
}

/// What a tick did, for the caller's logs and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs started, with why.
    pub started: Vec<(String, Trigger)>,
    /// Runs recorded (finished or timed out), with their outcome.
    pub recorded: Vec<(String, String)>,
    /// Occurrences missed and skipped (misfire `skip`).
    pub skipped: Vec<String>,
    /// Due jobs left for a later tick because `max_running` were running.
    pub deferred: Vec<String>,
}

struct Running {
    spec: JobSpec,
    trigger: Trigger,
    attempt: i64,
    started: DateTime<Utc>,
    deadline: DateTime<Utc>,
    cancel: Arc<AtomicBool>,
    /// Set once recorded as timed out: what to leave when the thread ends.
    timed_out: Option<After>,
}

struct Finished {
    name: String,
    result: Result<String, String>,
    ended: DateTime<Utc>,
}

/// One process's scheduler over the jobs in `meta.db`.
pub struct Scheduler {
    meta: Arc<Meta>,
    registry: Arc<Registry>,
    env: JobEnv,
    clock: Arc<dyn Clock>,
    opts: SchedulerOptions,
    running: Mutex<HashMap<String, Running>>,
    done_tx: Sender<Finished>,
    done_rx: Mutex<Receiver<Finished>>,
    /// Jobs whose stored definition this build cannot run, by revision,
    /// so each is logged once.
    unusable: Mutex<HashSet<(String, i64)>>,
}

impl Scheduler {
    pub fn new(registry: Arc<Registry>, env: JobEnv, clock: Arc<dyn Clock>, opts: SchedulerOptions) -> Scheduler {
        let (done_tx, done_rx) = channel();
        Scheduler {
            meta: env.meta.clone(),
            registry,
            env,
            clock,
            opts,
            running: Mutex::new(HashMap::new()),
            done_tx,
            done_rx: Mutex::new(done_rx),
            unusable: Mutex::new(HashSet::new()),
        }
    }

    pub fn holder(&self) -> &str {
        &self.opts.holder
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names of the jobs this process is running.
    pub fn running_jobs(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running().keys().cloned().collect();
        names.sort();
        names
    }

    /// One round: record finished runs, time out, renew, start what is due.
    pub fn tick(&self) -> Result<TickReport, MetaError> {
        let mut report = TickReport::default();
        self.collect(&mut report, Duration::ZERO)?;
        let now = self.clock.now();
        self.time_out(now, &mut report)?;
        self.renew(now)?;
        for row in self.meta.jobs()? {
            self.consider(row, now, &mut report)?;
        }
        Ok(report)
    }

    /// Wait up to `max` (real time) for every run this process started to
    /// end (those past their timeout too), recording each; then one tick.
    /// For tests.
    pub fn settle(&self, max: Duration) -> Result<TickReport, MetaError> {
        let report = self.settle_only(max)?;
        let mut more = self.tick()?;
        let mut recorded = report.recorded;
        recorded.append(&mut more.recorded);
        more.recorded = recorded;
        Ok(more)
    }

    /// Wait up to `max` for the runs this process started and record
    /// them, starting nothing: for shutdown.
    pub fn settle_only(&self, max: Duration) -> Result<TickReport, MetaError> {
        let until = std::time::Instant::now() + max;
        let mut report = TickReport::default();
        loop {
            let waiting = !self.running().is_empty();
            let left = until.saturating_duration_since(std::time::Instant::now());
            if !waiting || left.is_zero() {
                return Ok(report);
            }
            self.collect(&mut report, left)?;
        }
    }

    /// Tick about every `every` until `stop` is set, waking early when
    /// `wake` is sent to (a run-now, a changed job) or a run ends. Errors
    /// are logged and counted; the loop goes on.
    pub fn run(&self, every: Duration, stop: &AtomicBool, wake: &Receiver<()>) {
        while !stop.load(Ordering::Relaxed) {
            match self.tick() {
                Ok(r) => {
                    for (name, trigger) in &r.started {
                        tracing::info!(job = %name, trigger = trigger.as_str(), "job {name} started");
                    }
                }
                Err(e) => {
                    metrics::counter!("sealtrail_scheduler_errors_total").increment(1);
                    tracing::error!("scheduler: {e}");
                }
            }
            match wake.recv_timeout(every) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(every),
            }
        }
    }

    /// Record runs that ended, waiting up to `wait` for the first.
    fn collect(&self, report: &mut TickReport, wait: Duration) -> Result<(), MetaError> {
        let mut first = if wait.is_zero() {
            None
        } else {
            let rx = self.done_rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv_timeout(wait).ok()
        };
        loop {
            let done = match first.take() {
                Some(d) => d,
                None => {
                    let rx = self.done_rx.lock().unwrap_or_else(|e| e.into_inner());
                    match rx.try_recv() {
                        Ok(d) => d,
                        Err(_) => return Ok(()),
                    }
                }
            };
            let Some(run) = self.running().remove(&done.name) else {
                continue;
            };
            if let Some(after) = run.timed_out {
                // Recorded when its time was up; now it may run again.
                if let Err(late) = &done.result {
                    tracing::warn!(job = %done.name, "job {} ended after its timeout: {late}", done.name);
                }
                self.meta.release_job(&done.name, &self.opts.holder, after)?;
                continue;
            }
            let (record, after) = self.outcome(&run, done.ended, done.result);
            report.recorded.push((record.job.clone(), record.outcome.clone()));
            self.meta
                .finish_job_run(&record, after, &run_event(&run.spec, &record))?;
        }
    }

    /// The run's record and what it leaves for the next attempt.
    fn outcome(&self, run: &Running, ended: DateTime<Utc>, result: Result<String, String>) -> (JobRun, After) {
        let failed = result.is_err();
        let (summary, error) = match result {
            Ok(s) => (s, None),
            Err(e) => (String::new(), Some(e)),
        };
        let after = if failed && (run.attempt as u64) < run.spec.retries {
            let next = run.attempt + 1;
            let wait = retry_wait(run.spec.retry_backoff_seconds, next as u64);
            let at = ended + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
            After {
                attempt: next,
                retry_at: Some(millis(at)),
            }
        } else {
            After {
                attempt: 0,
                retry_at: None,
            }
        };
        metrics::counter!("sealtrail_job_runs_total", "outcome" => if failed { "failure" } else { "success" })
            .increment(1);
        if let Some(e) = &error {
            tracing::error!(job = %run.spec.name, attempt = run.attempt, "job {} failed: {e}", run.spec.name);
        }
        let record = JobRun {
            id: 0,
            job: run.spec.name.clone(),
            attempt: run.attempt,
            trigger: run.trigger,
            started_at: rfc3339(run.started),
            finished_at: rfc3339(ended),
            duration_ms: (ended - run.started).num_milliseconds().max(0),
            outcome: if failed { "failure" } else { "success" }.into(),
            summary,
            error,
            holder: self.opts.holder.clone(),
        };
        (record, after)
    }

    fn time_out(&self, now: DateTime<Utc>, report: &mut TickReport) -> Result<(), MetaError> {
        let mut running = self.running();
        for run in running.values_mut() {
            if run.timed_out.is_some() || now < run.deadline {
                continue;
            }
            run.cancel.store(true, Ordering::Relaxed);
            let error = format!("timed out after {} s", run.spec.timeout_seconds);
            let (record, after) = self.outcome(run, now, Err(error));
            run.timed_out = Some(after);
            report.recorded.push((record.job.clone(), record.outcome.clone()));
            self.meta.record_job_run(&record, &run_event(&run.spec, &record))?;
        }
        Ok(())
    }

    fn renew(&self, now: DateTime<Utc>) -> Result<(), MetaError> {
        let names: Vec<String> = self.running().keys().cloned().collect();
        for name in names {
            if !self
                .meta
                .renew_job_lease(&name, &self.opts.holder, millis(now), self.lease_ms())?
            {
                metrics::counter!("sealtrail_job_leases_lost_total").increment(1);
                tracing::error!(job = %name, "lost the lease of job {name} while running it (not renewed in time)");
            }
        }
        Ok(())
    }

    fn lease_ms(&self) -> i64 {
        self.opts.lease.as_millis().min(i64::MAX as u128) as i64
    }

    fn unusable(&self, row: &JobRow, why: &str) {
        let mut seen = self.unusable.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert((row.name.clone(), row.revision)) {
            tracing::error!(job = %row.name, "job {} cannot run in this server: {why}", row.name);
        }
    }

    /// Decide about one job and take it if it is due.
    fn consider(&self, row: JobRow, now: DateTime<Utc>, report: &mut TickReport) -> Result<(), MetaError> {
        if self.running().contains_key(&row.name) {
            return Ok(());
        }
        let now_ms = millis(now);
        if row.lease_holder.is_some() && row.lease_expires.is_some_and(|e| e > now_ms) {
            return Ok(());
        }
        let spec = match serde_json::from_str(&row.spec)
            .map_err(|e| e.to_string())
            .and_then(|v| JobSpec::from_value(v, &self.registry).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                self.unusable(&row, &e);
                return Ok(());
            }
        };
        let Ok(schedule) = spec.parsed_schedule() else {
            return Ok(());
        };
        let (take, trigger) = if row.run_requested {
            (Take::Requested, Trigger::Manual)
        } else if !row.enabled {
            return Ok(());
        } else if let Some(at) = row.retry_at.filter(|at| *at <= now_ms) {
            (Take::Retry { retry_at: at }, Trigger::Retry)
        } else if let Some(next) = row.next_run {
            if next > now_ms {
                return Ok(());
            }
            let new_next_run = schedule.next_after(now).map(millis);
            let late = now_ms - next;
            if late > (spec.misfire_grace_seconds as i64) * 1000 {
                if spec.misfire == Misfire::Skip {
                    if self
                        .meta
                        .set_job_next_run(&row.name, row.revision, Some(next), new_next_run)?
                    {
                        metrics::counter!("sealtrail_job_misfires_skipped_total").increment(1);
                        tracing::warn!(
                            job = %row.name,
                            "job {} missed its run at {} (misfire policy skip)",
                            row.name,
                            rfc3339(from_millis(next))
                        );
                        report.skipped.push(row.name.clone());
                    }
                    return Ok(());
                }
                (
                    Take::Occurrence {
                        next_run: next,
                        new_next_run,
                    },
                    Trigger::Misfire,
                )
            } else {
                (
                    Take::Occurrence {
                        next_run: next,
                        new_next_run,
                    },
                    Trigger::Schedule,
                )
            }
        } else {
            // Never computed (a job stored without it): from now on.
            let first = schedule.next_after(now).map(millis);
            if first.is_some() {
                self.meta.set_job_next_run(&row.name, row.revision, None, first)?;
            }
            return Ok(());
        };
        if self.running().len() >= self.opts.max_running {
            report.deferred.push(row.name.clone());
            return Ok(());
        }
        let Some(kind) = self.registry.get(&spec.job_type) else {
            return Ok(());
        };
        let claim = Claim {
            name: &row.name,
            holder: &self.opts.holder,
            revision: row.revision,
            now: now_ms,
            lease_ms: self.lease_ms(),
            take,
        };
        if !self.meta.claim_job(&claim)? {
            return Ok(());
        }
        let attempt = if trigger == Trigger::Retry { row.attempt } else { 0 };
        let cancel = Arc::new(AtomicBool::new(false));
        let deadline = now + chrono::Duration::seconds(spec.timeout_seconds.min(i64::MAX as u64) as i64);
        self.running().insert(
            row.name.clone(),
            Running {
                spec: spec.clone(),
                trigger,
                attempt,
                started: now,
                deadline,
                cancel: cancel.clone(),
                timed_out: None,
            },
        );
        report.started.push((row.name.clone(), trigger));
        let (env, clock, tx, name) = (self.env.clone(), self.clock.clone(), self.done_tx.clone(), row.name);
        let spawned = std::thread::Builder::new().name(format!("job-{name}")).spawn({
            let name = name.clone();
            move || {
                let ctx = RunContext::new(&spec, &env, &cancel);
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| kind.run(&ctx)))
                    .unwrap_or_else(|_| Err("the job panicked".into()));
                let _ = tx.send(Finished {
                    name,
                    result,
                    ended: clock.now(),
                });
            }
        });
        if let Err(e) = spawned {
            let _ = self.done_tx.send(Finished {
                name,
                result: Err(format!("starting its thread: {e}")),
                ended: now,
            });
        }
        Ok(())
    }
}

/// The `job.run` system-log event of a finished run.
pub fn run_event(spec: &JobSpec, run: &JobRun) -> String {
    job_event(
        json!({"id": "scheduler", "type": "system"}),
        "job.run",
        &spec.name,
        &run.outcome,
        json!({
            "job": spec.name,
            "type": spec.job_type,
            "outcome": run.outcome,
            "trigger": run.trigger.as_str(),
            "attempt": run.attempt,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_ms": run.duration_ms,
            "summary": run.summary,
            "error": run.error,
            "holder": run.holder,
        }),
    )
}
