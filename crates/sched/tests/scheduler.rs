//! The scheduler against a real `meta.db`, with a manual clock: DST,
//! misfires, overlap, retries, timeouts, history across a restart, the
//! lease between two schedulers, and the shipped job types on a real log.
//! Test job types are registered beside the shipped ones; nothing the
//! scheduler talks to is mocked.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sealtrail_ledger::DataDir;
use sealtrail_meta::jobs::{Trigger, RUNS_KEPT};
use sealtrail_meta::Meta;
use sealtrail_sched::admin;
use sealtrail_sched::scheduler::{from_millis, millis, rfc3339};
use sealtrail_sched::{
    JobEnv, JobKind, JobSpec, Logs, ManualClock, Params, Registry, RunContext, Scheduler, SchedulerOptions,
};
use sealtrail_trail::{Trail, TrailOptions};
use serde_json::{json, Value};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// What a `test` job does on its next runs (then: succeed).
#[derive(Clone, Copy, Debug)]
enum Step {
    Fail,
    /// Until released, or until cancelled.
    Block,
}

#[derive(Default)]
struct Script {
    steps: Mutex<VecDeque<Step>>,
    runs: AtomicUsize,
    active: AtomicUsize,
    max_active: AtomicUsize,
    release: AtomicBool,
    saw_cancel: AtomicBool,
}

/// A job type for tests: does what its script says next.
#[derive(Clone)]
struct TestKind(Arc<Script>);

impl JobKind for TestKind {
    fn name(&self) -> &'static str {
        "test"
    }
    fn fields(&self) -> &'static [&'static str] {
        &[]
    }
    fn check(&self, _: &Params) -> Result<(), String> {
        Ok(())
    }
    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String> {
        let s = &self.0;
        let n = s.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let active = s.active.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_active.fetch_max(active, Ordering::SeqCst);
        let step = s.steps.lock().unwrap().pop_front();
        let out = match step {
            Some(Step::Fail) => Err(format!("run {n} failed as scripted")),
            Some(Step::Block) => loop {
                if ctx.cancelled() {
                    s.saw_cancel.store(true, Ordering::SeqCst);
                    break Err("cancelled".into());
                }
                if s.release.load(Ordering::SeqCst) {
                    break Ok(format!("run {n} released"));
                }
                std::thread::sleep(Duration::from_millis(1));
            },
            None => Ok(format!("run {n} done")),
        };
        s.active.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

struct TestLogs {
    data: DataDir,
    trails: Mutex<HashMap<String, Arc<Trail>>>,
}

impl Logs for TestLogs {
    fn data(&self) -> &DataDir {
        &self.data
    }
    fn trail(&self, name: &str) -> Result<Arc<Trail>, String> {
        let mut trails = self.trails.lock().unwrap();
        if let Some(t) = trails.get(name) {
            return Ok(t.clone());
        }
        let t = Arc::new(Trail::open(&self.data, name, TrailOptions::default()).map_err(|e| e.to_string())?);
        trails.insert(name.into(), t.clone());
        Ok(t)
    }
}

struct Env {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    script: Arc<Script>,
    registry: Arc<Registry>,
    logs: Arc<TestLogs>,
}

impl Env {
    fn new(start: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let script = Arc::new(Script::default());
        let mut registry = Registry::builtin();
        registry.register(TestKind(script.clone()));
        let logs = Arc::new(TestLogs {
            data: DataDir::new(dir.path()),
            trails: Mutex::new(HashMap::new()),
        });
        Env {
            clock: Arc::new(ManualClock::new(utc(start))),
            dir,
            script,
            registry: Arc::new(registry),
            logs,
        }
    }

    fn meta(&self) -> Arc<Meta> {
        Arc::new(Meta::open(self.dir.path()).unwrap())
    }

    fn scheduler(&self, meta: &Arc<Meta>, holder: &str) -> Scheduler {
        let env = JobEnv {
            meta: meta.clone(),
            logs: self.logs.clone(),
            data_dir: self.dir.path().to_path_buf(),
        };
        let opts = SchedulerOptions {
            holder: holder.into(),
            lease: Duration::from_secs(60),
            max_running: 4,
        };
        Scheduler::new(self.registry.clone(), env, self.clock.clone(), opts)
    }

    fn put(&self, meta: &Meta, job: Value) {
        let spec = JobSpec::from_value(job, &self.registry).unwrap();
        admin::put(
            meta,
            &self.registry,
            &spec,
            false,
            &json!({"id": "test", "type": "user"}),
            self.clock.now_utc(),
        )
        .unwrap();
    }

    fn set(&self, at: &str) {
        self.clock.set(utc(at));
    }
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        sealtrail_sched::Clock::now(self)
    }
}

fn next_run(meta: &Meta, name: &str) -> Option<String> {
    meta.job(name)
        .unwrap()
        .unwrap()
        .next_run
        .map(|m| rfc3339(from_millis(m)))
}

/// Step the clock minute by minute from `from` to `to`, ticking (and
/// letting each started run finish) at each: the UTC minutes a run began.
fn starts_by_minute(env: &Env, sched: &Scheduler, from: &str, to: &str) -> Vec<String> {
    let (mut at, end) = (utc(from), utc(to));
    let mut out = Vec::new();
    while at <= end {
        env.clock.set(at);
        let r = sched.tick().unwrap();
        for _ in &r.started {
            out.push(rfc3339(at));
        }
        if !r.started.is_empty() {
            sched.settle(Duration::from_secs(5)).unwrap();
        }
        at += chrono::Duration::minutes(1);
    }
    out
}

#[test]
fn a_0230_berlin_job_runs_once_on_spring_forward_and_fall_back_days() {
    let env = Env::new("2026-03-28T12:00:00Z");
    let meta = env.meta();
    env.put(
        &meta,
        json!({"name": "berlin", "type": "test", "schedule": "30 2 * * *", "timezone": "Europe/Berlin"}),
    );
    let sched = env.scheduler(&meta, "a");
    // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z; 02:30 does not
    // exist, so the run is at the first time after the gap, 03:00 CEST.
    let starts = starts_by_minute(&env, &sched, "2026-03-28T22:00:00Z", "2026-03-29T23:59:00Z");
    assert_eq!(starts, vec!["2026-03-29T01:00:00.000Z"]);
    // The next day is back at 02:30 CEST.
    assert_eq!(next_run(&meta, "berlin").as_deref(), Some("2026-03-30T00:30:00.000Z"));

    // 2026-10-25: 03:00 CEST goes back to 02:00 CET at 01:00Z, so 02:30
    // comes at 00:30Z and again at 01:30Z: one run, at the first.
    env.set("2026-10-24T12:00:00Z");
    env.put(
        &meta,
        json!({"name": "berlin", "type": "test", "schedule": "daily at 02:30", "timezone": "Europe/Berlin"}),
    );
    let starts = starts_by_minute(&env, &sched, "2026-10-24T22:00:00Z", "2026-10-25T22:00:00Z");
    assert_eq!(starts, vec!["2026-10-25T00:30:00.000Z"]);
    assert_eq!(next_run(&meta, "berlin").as_deref(), Some("2026-10-26T01:30:00.000Z"));
    let runs = meta.job_runs("berlin", 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|r| r.outcome == "success" && r.trigger == Trigger::Schedule));
}

#[test]
fn misfire_after_downtime_skips_or_runs_once() {
    let env = Env::new("2026-01-05T10:05:00Z");
    let meta = env.meta();
    for (name, policy) in [("skipper", "skip"), ("catcher", "run-once")] {
        env.put(
            &meta,
            json!({"name": name, "type": "test", "schedule": "0 * * * *", "misfire": policy}),
        );
    }
    // Down from 10:05 to 13:30: 11:00, 12:00 and 13:00 were missed.
    env.set("2026-01-05T13:30:00Z");
    let sched = env.scheduler(&meta, "a");
    let r = sched.tick().unwrap();
    assert_eq!(r.started, vec![("catcher".to_string(), Trigger::Misfire)]);
    assert_eq!(r.skipped, vec!["skipper".to_string()]);
    sched.settle(Duration::from_secs(5)).unwrap();
    assert_eq!(env.script.runs.load(Ordering::SeqCst), 1, "one run for three missed");
    for name in ["skipper", "catcher"] {
        assert_eq!(
            next_run(&meta, name).as_deref(),
            Some("2026-01-05T14:00:00.000Z"),
            "{name}"
        );
    }
    // Within the grace (60 s) a late tick is on time.
    env.set("2026-01-05T14:00:59Z");
    let mut started = sched.tick().unwrap().started;
    started.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        started,
        vec![
            ("catcher".to_string(), Trigger::Schedule),
            ("skipper".to_string(), Trigger::Schedule)
        ]
    );
    sched.settle(Duration::from_secs(5)).unwrap();
    assert_eq!(meta.job_runs("skipper", 10).unwrap().len(), 1);
    assert_eq!(meta.job_runs("catcher", 10).unwrap().len(), 2);
}

#[test]
fn a_job_never_overlaps_itself() {
    let env = Env::new("2026-01-05T10:00:30Z");
    let meta = env.meta();
    env.put(
        &meta,
        json!({"name": "slow", "type": "test", "schedule": "* * * * *", "misfire": "run-once"}),
    );
    env.script.steps.lock().unwrap().push_back(Step::Block);
    let sched = env.scheduler(&meta, "a");
    let other = env.scheduler(&env.meta(), "b");
    env.set("2026-01-05T10:01:00Z");
    assert_eq!(sched.tick().unwrap().started.len(), 1);
    // Three more minutes pass while it runs: neither this process nor
    // another starts it again, and a run-now waits too.
    admin::request_run(&meta, "slow", &json!({"id": "test"})).unwrap();
    for minute in 2..=4 {
        env.set(&format!("2026-01-05T10:0{minute}:00Z"));
        assert!(sched.tick().unwrap().started.is_empty());
        assert!(other.tick().unwrap().started.is_empty());
    }
    env.script.release.store(true, Ordering::SeqCst);
    let r = sched.settle(Duration::from_secs(5)).unwrap();
    assert_eq!(r.recorded, vec![("slow".to_string(), "success".to_string())]);
    // Freed: the run-now goes first, then the missed minutes run once.
    assert_eq!(r.started, vec![("slow".to_string(), Trigger::Manual)]);
    let r = sched.settle(Duration::from_secs(5)).unwrap();
    assert_eq!(r.started, vec![("slow".to_string(), Trigger::Misfire)]);
    sched.settle(Duration::from_secs(5)).unwrap();
    assert_eq!(env.script.max_active.load(Ordering::SeqCst), 1);
    assert_eq!(env.script.runs.load(Ordering::SeqCst), 3);
}

#[test]
fn failures_are_retried_with_doubling_backoff() {
    let env = Env::new("2026-01-05T09:00:00Z");
    let meta = env.meta();
    env.put(
        &meta,
        json!({"name": "flaky", "type": "test", "schedule": "daily at 10:00", "retries": 3, "retry_backoff_seconds": 10}),
    );
    env.script.steps.lock().unwrap().extend([Step::Fail, Step::Fail]);
    let sched = env.scheduler(&meta, "a");
    let expect = |at: &str, started: bool| {
        env.set(at);
        let r = sched.settle(Duration::from_secs(5)).unwrap();
        assert_eq!(!r.started.is_empty(), started, "at {at}: {r:?}");
        if started {
            sched.settle(Duration::from_secs(5)).unwrap();
        }
    };
    expect("2026-01-05T10:00:00Z", true); // fails: retry in 10 s
    expect("2026-01-05T10:00:09Z", false);
    expect("2026-01-05T10:00:10Z", true); // fails: retry in 20 s
    expect("2026-01-05T10:00:29Z", false);
    expect("2026-01-05T10:00:30Z", true); // succeeds
    expect("2026-01-05T10:10:00Z", false);
    let mut runs = meta.job_runs("flaky", 10).unwrap();
    runs.reverse();
    let seen: Vec<(i64, Trigger, &str, &str)> = runs
        .iter()
        .map(|r| (r.attempt, r.trigger, r.outcome.as_str(), r.started_at.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, Trigger::Schedule, "failure", "2026-01-05T10:00:00.000Z"),
            (1, Trigger::Retry, "failure", "2026-01-05T10:00:10.000Z"),
            (2, Trigger::Retry, "success", "2026-01-05T10:00:30.000Z"),
        ]
    );
    assert_eq!(runs[0].error.as_deref(), Some("run 1 failed as scripted"));
    let row = meta.job("flaky").unwrap().unwrap();
    assert_eq!((row.attempt, row.retry_at), (0, None));
    assert_eq!(sealtrail_sched::scheduler::retry_wait(10, 3), Duration::from_secs(40));
    assert_eq!(
        sealtrail_sched::scheduler::retry_wait(3600, 20),
        Duration::from_secs(6 * 3600)
    );
}

#[test]
fn a_run_past_its_timeout_fails_and_the_job_waits_for_its_thread() {
    let env = Env::new("2026-01-05T09:00:00Z");
    let meta = env.meta();
    env.put(
        &meta,
        json!({"name": "stuck", "type": "test", "schedule": "daily at 10:00", "timeout_seconds": 30}),
    );
    env.script.steps.lock().unwrap().push_back(Step::Block);
    let sched = env.scheduler(&meta, "a");
    env.set("2026-01-05T10:00:00Z");
    assert_eq!(sched.tick().unwrap().started.len(), 1);
    env.set("2026-01-05T10:00:29Z");
    assert!(sched.tick().unwrap().recorded.is_empty());
    env.set("2026-01-05T10:00:30Z");
    let r = sched.tick().unwrap();
    assert_eq!(r.recorded, vec![("stuck".to_string(), "failure".to_string())]);
    let run = &meta.job_runs("stuck", 1).unwrap()[0];
    assert_eq!(run.error.as_deref(), Some("timed out after 30 s"));
    assert_eq!(run.duration_ms, 30_000);
    // The thread was asked to stop; until it has, the job stays taken.
    sched.settle(Duration::from_secs(5)).unwrap();
    assert!(env.script.saw_cancel.load(Ordering::SeqCst));
    let row = meta.job("stuck").unwrap().unwrap();
    assert_eq!(row.lease_holder, None);
    assert_eq!(
        meta.job_runs("stuck", 10).unwrap().len(),
        1,
        "the late end is not a second run"
    );
}

#[test]
fn run_history_survives_a_restart_and_keeps_the_last_runs() {
    let env = Env::new("2026-01-05T09:00:00Z");
    {
        let meta = env.meta();
        env.put(&meta, json!({"name": "often", "type": "test", "schedule": "0 0 1 1 *"}));
        let sched = env.scheduler(&meta, "a");
        for i in 0..(RUNS_KEPT + 5) {
            if i % 10 == 0 {
                env.script.steps.lock().unwrap().push_back(Step::Fail);
            }
            admin::request_run(&meta, "often", &json!({"id": "test"})).unwrap();
            env.clock.advance(Duration::from_secs(1));
            assert_eq!(sched.tick().unwrap().started.len(), 1);
            sched.settle(Duration::from_secs(5)).unwrap();
        }
    }
    let meta = env.meta();
    let runs = meta.job_runs("often", 1000).unwrap();
    assert_eq!(runs.len(), RUNS_KEPT);
    // Newest first; the five oldest are gone.
    assert_eq!(runs[0].summary, format!("run {} done", RUNS_KEPT + 5));
    assert_eq!(runs[RUNS_KEPT - 1].started_at, "2026-01-05T09:00:06.000Z");
    assert_eq!(runs.iter().filter(|r| r.outcome == "failure").count(), 10);
    // Every run is in the system log's outbox as job.run, with the
    // definition's changes.
    let outbox: Vec<Value> = meta
        .outbox(1000)
        .unwrap()
        .into_iter()
        .map(|(_, t)| serde_json::from_str(&t).unwrap())
        .collect();
    let actions: Vec<&str> = outbox.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "job.run").count(), RUNS_KEPT + 5);
    assert_eq!(
        actions.iter().filter(|a| **a == "job.run_requested").count(),
        RUNS_KEPT + 5
    );
    assert_eq!(actions[0], "job.created");
    let failed = outbox
        .iter()
        .find(|e| e["action"] == "job.run" && e["outcome"] == "failure")
        .unwrap();
    assert_eq!(failed["targets"][0], json!({"type": "job", "id": "often"}));
    assert_eq!(failed["details"]["job"], "often");
    assert_eq!(failed["severity"], "error");
}

#[test]
fn two_schedulers_on_one_meta_db_never_run_an_occurrence_twice() {
    let env = Arc::new(Env::new("2026-01-05T09:59:30Z"));
    let meta_a = env.meta();
    env.put(
        &meta_a,
        json!({"name": "shared", "type": "test", "schedule": "*/10 * * * * *"}),
    );
    let meta_b = env.meta();
    let a = env.scheduler(&meta_a, "a");
    let b = env.scheduler(&meta_b, "b");
    let occurrences = 60;
    let barrier = Barrier::new(2);
    // Both tick at every occurrence, as close together as the barrier
    // lets them, each on its own connection.
    std::thread::scope(|s| {
        for (first, sched) in [(true, &a), (false, &b)] {
            let (env, barrier) = (env.clone(), &barrier);
            s.spawn(move || {
                for i in 0..occurrences {
                    barrier.wait();
                    if first {
                        env.clock
                            .set(utc("2026-01-05T10:00:00Z") + chrono::Duration::seconds(10 * i));
                    }
                    barrier.wait();
                    sched.tick().unwrap();
                    sched.settle(Duration::from_secs(5)).unwrap();
                    barrier.wait();
                }
            });
        }
    });
    let runs = meta_a.job_runs("shared", 1000).unwrap();
    assert_eq!(runs.len(), occurrences as usize);
    assert_eq!(env.script.runs.load(Ordering::SeqCst), occurrences as usize);
    assert_eq!(env.script.max_active.load(Ordering::SeqCst), 1);
    let mut starts: Vec<&str> = runs.iter().map(|r| r.started_at.as_str()).collect();
    starts.sort();
    starts.dedup();
    assert_eq!(starts.len(), occurrences as usize, "each occurrence once");
    // Both took part.
    assert!(runs.iter().any(|r| r.holder == "a") && runs.iter().any(|r| r.holder == "b"));
}

#[test]
fn a_lease_is_renewed_while_running_and_expires_when_its_holder_stops() {
    let env = Env::new("2026-01-05T09:59:00Z");
    let meta_a = env.meta();
    env.put(
        &meta_a,
        json!({"name": "long", "type": "test", "schedule": "daily at 10:00", "misfire": "run-once"}),
    );
    env.script.steps.lock().unwrap().push_back(Step::Block);
    let meta_b = env.meta();
    let a = env.scheduler(&meta_a, "a");
    let b = env.scheduler(&meta_b, "b");
    env.set("2026-01-05T10:00:00Z");
    assert_eq!(a.tick().unwrap().started.len(), 1);
    // A renews every 30 s for five minutes: B never takes the job, even a
    // run-now.
    admin::request_run(&meta_b, "long", &json!({"id": "test"})).unwrap();
    for step in 1..=10 {
        env.clock.advance(Duration::from_secs(30));
        a.tick().unwrap();
        assert!(b.tick().unwrap().started.is_empty(), "step {step}");
    }
    let row = meta_b.job("long").unwrap().unwrap();
    assert_eq!(row.lease_holder.as_deref(), Some("a"));
    assert_eq!(row.lease_expires, Some(millis(utc("2026-01-05T10:06:00Z"))));
    // A stops ticking (as if its process died): 60 s after its last
    // renewal the lease is free, and B takes the run-now.
    env.clock.advance(Duration::from_secs(59));
    assert!(b.tick().unwrap().started.is_empty());
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(b.tick().unwrap().started, vec![("long".to_string(), Trigger::Manual)]);
    // A, come back, finds it lost the lease; its late end releases nothing
    // of B's.
    env.script.release.store(true, Ordering::SeqCst);
    b.settle(Duration::from_secs(5)).unwrap();
    a.settle(Duration::from_secs(5)).unwrap();
    let runs = meta_a.job_runs("long", 10).unwrap();
    let holders: Vec<&str> = runs.iter().map(|r| r.holder.as_str()).collect();
    assert_eq!(holders.len(), 2);
    assert!(holders.contains(&"a") && holders.contains(&"b"));
}

#[test]
fn at_most_max_running_jobs_run_at_once() {
    let env = Env::new("2026-01-05T09:00:00Z");
    let meta = env.meta();
    for i in 0..6 {
        env.put(
            &meta,
            json!({"name": format!("j{i}"), "type": "test", "schedule": "daily at 10:00"}),
        );
        env.script.steps.lock().unwrap().push_back(Step::Block);
    }
    let sched = env.scheduler(&meta, "a");
    env.set("2026-01-05T10:00:00Z");
    let r = sched.tick().unwrap();
    assert_eq!(r.started.len(), 4);
    assert_eq!(r.deferred, vec!["j4".to_string(), "j5".to_string()]);
    assert_eq!(sched.running_jobs(), ["j0", "j1", "j2", "j3"]);
    env.script.release.store(true, Ordering::SeqCst);
    let r = sched.settle(Duration::from_secs(5)).unwrap();
    assert_eq!(r.started.len(), 2, "the deferred start once the others end");
    sched.settle(Duration::from_secs(5)).unwrap();
    assert_eq!(env.script.runs.load(Ordering::SeqCst), 6);
}

#[test]
fn verify_and_reindex_run_on_a_real_log() {
    let env = Env::new("2026-01-05T09:00:00Z");
    let data = DataDir::new(env.dir.path());
    data.create_log("default", None).unwrap();
    let trail = env.logs.trail("default").unwrap();
    let events: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"action": "user.login", "actor": {{"id": "u{i}"}}}}"#))
        .collect();
    let inputs: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
    trail.ingest(&inputs, true).unwrap();
    let meta = env.meta();
    env.put(
        &meta,
        json!({"name": "check", "type": "verify", "log": "default", "schedule": "daily at 02:00"}),
    );
    env.put(
        &meta,
        json!({"name": "rebuild", "type": "reindex", "log": "default", "schedule": "daily at 03:00"}),
    );
    env.put(
        &meta,
        json!({"name": "missing", "type": "verify", "log": "nope", "schedule": "daily at 04:00"}),
    );
    let sched = env.scheduler(&meta, "a");
    for name in ["check", "rebuild", "missing"] {
        admin::request_run(&meta, name, &json!({"id": "test"})).unwrap();
    }
    assert_eq!(sched.tick().unwrap().started.len(), 3);
    sched.settle(Duration::from_secs(60)).unwrap();
    let check = &meta.job_runs("check", 1).unwrap()[0];
    assert_eq!(check.outcome, "success", "{check:?}");
    assert_eq!(
        check.summary,
        "log default intact: 50 entries, signed checkpoint of size 50"
    );
    let rebuild = &meta.job_runs("rebuild", 1).unwrap()[0];
    assert_eq!(rebuild.outcome, "success", "{rebuild:?}");
    assert_eq!(rebuild.summary, "rebuilt the query index of log default: 50 entries");
    let status = trail.index_status();
    assert_eq!(status.rebuilds, 1);
    // Asked for, not failed: health shows no failure and no error.
    assert_eq!((status.failures, status.last_error), (0, None));
    let missing = &meta.job_runs("missing", 1).unwrap()[0];
    assert_eq!(
        (missing.outcome.as_str(), missing.error.as_deref()),
        ("failure", Some("no log named \"nope\""))
    );
}

#[test]
fn retention_and_backup_run_on_a_real_log() {
    let env = Env::new("2026-01-05T09:00:00Z");
    let data = DataDir::new(env.dir.path());
    data.create_log("default", None).unwrap();
    let trail = env.logs.trail("default").unwrap();
    let events: Vec<String> = (0..600)
        .map(|i| format!(r#"{{"action": "user.login", "actor": {{"id": "u{i}"}}}}"#))
        .collect();
    let inputs: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
    trail.ingest(&inputs, true).unwrap();
    let root_before = trail.log().checkpoint().0.root;
    let meta = env.meta();
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("nightly");
    env.put(
        &meta,
        json!({"name": "prune", "type": "retention", "log": "default", "max_size": "1B", "schedule": "daily at 02:00"}),
    );
    env.put(
        &meta,
        json!({"name": "save", "type": "backup", "dest": dest.to_str().unwrap(), "schedule": "daily at 03:00"}),
    );
    let sched = env.scheduler(&meta, "a");
    // Pruning first, then the backup of what remains.
    admin::request_run(&meta, "prune", &json!({"id": "test"})).unwrap();
    assert_eq!(sched.tick().unwrap().started.len(), 1);
    sched.settle(Duration::from_secs(60)).unwrap();
    let prune = &meta.job_runs("prune", 1).unwrap()[0];
    assert_eq!(prune.outcome, "success", "{prune:?}");
    // 600 entries: two whole bundles may go, the third is not complete.
    assert!(
        prune.summary.starts_with("log default: pruned entries [0, 512), "),
        "{prune:?}"
    );
    assert_eq!(trail.pruned_below(), 512);
    assert_eq!(trail.log().checkpoint().0.root, root_before, "hashes stay");

    admin::request_run(&meta, "save", &json!({"id": "test"})).unwrap();
    assert_eq!(sched.tick().unwrap().started.len(), 1);
    sched.settle(Duration::from_secs(60)).unwrap();
    let save = &meta.job_runs("save", 1).unwrap()[0];
    assert_eq!(save.outcome, "success", "{save:?}");
    assert!(save.summary.starts_with("full backup into "), "{save:?}");
    let verified = sealtrail_backup::verify(&sealtrail_ledger::storage::OsStorage, &dest).unwrap();
    assert!(verified.intact(), "{:?}", verified.findings);
    let logs = &verified.manifest.as_ref().unwrap().logs;
    assert!(logs.iter().any(|l| l.name == "default" && l.size == 600), "{logs:?}");

    // Bad fields are refused when the job is stored, naming the field.
    for (job, why) in [
        (
            json!({"name": "x", "type": "retention", "log": "default", "schedule": "daily at 02:00"}),
            "older_than, max_size: give one or both",
        ),
        (
            json!({"name": "x", "type": "retention", "log": "default", "older_than": "soon", "schedule": "daily at 02:00"}),
            "older_than: ",
        ),
        (
            json!({"name": "x", "type": "backup", "dest": "relative/dir", "schedule": "daily at 02:00"}),
            "dest: \"relative/dir\" is not an absolute path",
        ),
    ] {
        let err = JobSpec::from_value(job, &env.registry).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn admin_refuses_what_cannot_run_and_records_changes() {
    let env = Env::new("2026-01-05T09:00:00Z");
    let meta = env.meta();
    let actor = json!({"id": "admin", "type": "user"});
    let spec = |v: Value| JobSpec::from_value(v, &env.registry);
    let e = spec(json!({"name": "x", "type": "vacuum", "schedule": "0 2 * * *"})).unwrap_err();
    assert!(e.to_string().contains("unknown job type \"vacuum\""), "{e}");
    let past = spec(json!({"name": "x", "type": "test", "schedule": "once at 2026-01-01T00:00:00Z"})).unwrap();
    let e = admin::put(&meta, &env.registry, &past, false, &actor, env.clock.now_utc()).unwrap_err();
    assert!(e.to_string().contains("has no occurrence after now"), "{e}");
    let ok = spec(json!({"name": "x", "type": "test", "schedule": "once at 2026-01-06T00:00:00+01:00"})).unwrap();
    admin::put(&meta, &env.registry, &ok, true, &actor, env.clock.now_utc()).unwrap();
    let e = admin::put(&meta, &env.registry, &ok, true, &actor, env.clock.now_utc()).unwrap_err();
    assert!(matches!(e, admin::JobError::Exists(_)));
    let view = admin::set_enabled(&meta, &env.registry, "x", false, &actor, env.clock.now_utc()).unwrap();
    assert_eq!(
        (view.enabled, view.spec["enabled"].clone(), view.next_run),
        (false, json!(false), None)
    );
    let view = admin::set_enabled(&meta, &env.registry, "x", true, &actor, env.clock.now_utc()).unwrap();
    assert_eq!(view.next_run.as_deref(), Some("2026-01-05T23:00:00.000Z"));
    // Disabled jobs do not run on schedule; once runs once.
    let sched = env.scheduler(&meta, "a");
    env.set("2026-01-05T23:00:00Z");
    assert_eq!(sched.tick().unwrap().started.len(), 1);
    sched.settle(Duration::from_secs(5)).unwrap();
    env.set("2026-01-07T23:00:00Z");
    assert!(sched.tick().unwrap().started.is_empty());
    admin::delete(&meta, "x", &actor).unwrap();
    assert!(matches!(
        admin::delete(&meta, "x", &actor),
        Err(admin::JobError::NotFound(_))
    ));
    assert!(meta.job_runs("x", 10).unwrap().is_empty());
    let actions: Vec<String> = meta
        .outbox(100)
        .unwrap()
        .into_iter()
        .map(|(_, t)| {
            serde_json::from_str::<Value>(&t).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        ["job.created", "job.disabled", "job.enabled", "job.run", "job.deleted"]
    );
}
