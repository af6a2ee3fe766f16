//! Two schedulers in two real OS processes on one `meta.db`, racing for
//! every occurrence of a job due every 10 s: each occurrence runs exactly
//! once, and never beside itself.
//!
//! The schedulers are this test run again as child processes (the
//! environment variable below tells one to be a scheduler). Their clock is
//! a file the parent writes: it moves to the next occurrence only once
//! both children have ticked at the current one, so both compete for
//! every occurrence.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sealtrail_ledger::DataDir;
use sealtrail_meta::Meta;
use sealtrail_sched::scheduler::{from_millis, millis, rfc3339};
use sealtrail_sched::{
    admin, Clock, JobEnv, JobKind, JobSpec, Logs, Params, Registry, RunContext, Scheduler, SchedulerOptions,
};
use sealtrail_trail::Trail;
use serde_json::{json, Value};

const CHILD: &str = "SEALTRAIL_TEST_LEASE_CHILD";
const TEST: &str = "two_scheduler_processes_run_each_occurrence_exactly_once";
/// What the clock file says to make the children exit.
const STOP: &str = "stop";
const OCCURRENCES: i64 = 150;

/// The time the parent writes to `clock`, in milliseconds.
struct FileClock(PathBuf);

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        let text = std::fs::read_to_string(&self.0).unwrap();
        from_millis(text.trim().parse().unwrap_or(0))
    }
}

/// Writes `text` to `path` whole: readers see the old or the new text.
fn put_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Runs a moment, holding a marker file that a second run at the same
/// time (in either process) could not create: it fails if it overlaps.
struct Marked(PathBuf);

impl JobKind for Marked {
    fn name(&self) -> &'static str {
        "marked"
    }
    fn fields(&self) -> &'static [&'static str] {
        &[]
    }
    fn check(&self, _: &Params) -> Result<(), String> {
        Ok(())
    }
    fn run(&self, _: &RunContext<'_>) -> Result<String, String> {
        let marker = self.0.join("running");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .map_err(|e| format!("another run is going on: {e}"))?;
        std::thread::sleep(Duration::from_millis(2));
        std::fs::remove_file(&marker).map_err(|e| e.to_string())?;
        Ok(format!("ran in {}", std::process::id()))
    }
}

struct NoLogs(DataDir);

impl Logs for NoLogs {
    fn data(&self) -> &DataDir {
        &self.0
    }
    fn trail(&self, name: &str) -> Result<Arc<Trail>, String> {
        Err(format!("no log {name} here"))
    }
}

fn registry(dir: &Path) -> Arc<Registry> {
    let mut r = Registry::new();
    r.register(Marked(dir.to_path_buf()));
    Arc::new(r)
}

/// The child: tick at every new time the clock file shows, let the run
/// end, then say so in `progress-<holder>`; exit on [`STOP`].
fn child(dir: &Path, holder: &str) {
    let meta = Arc::new(Meta::open(dir).unwrap());
    let env = JobEnv {
        meta: meta.clone(),
        logs: Arc::new(NoLogs(DataDir::new(dir))),
        data_dir: dir.to_path_buf(),
    };
    let opts = SchedulerOptions {
        holder: holder.into(),
        lease: Duration::from_secs(60),
        max_running: 4,
    };
    let clock = dir.join("clock");
    let sched = Scheduler::new(registry(dir), env, Arc::new(FileClock(clock.clone())), opts);
    let progress = dir.join(format!("progress-{holder}"));
    let mut last = String::new();
    loop {
        let now = std::fs::read_to_string(&clock).unwrap();
        if now.trim() == STOP {
            return;
        }
        if now != last {
            sched.tick().unwrap();
            sched.settle(Duration::from_secs(10)).unwrap();
            put_file(&progress, &now);
            last = now;
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Children killed if the parent fails before they exit.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn two_scheduler_processes_run_each_occurrence_exactly_once() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (dir, holder) = spec.split_once('\t').unwrap();
        child(Path::new(dir), holder);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-01-05T09:59:55Z")
        .unwrap()
        .with_timezone(&Utc);
    let first = millis(start) + 5_000;
    let clock = dir.path().join("clock");
    put_file(&clock, &millis(start).to_string());
    let meta = Meta::open(dir.path()).unwrap();
    let registry = registry(dir.path());
    let spec = JobSpec::from_value(
        json!({"name": "shared", "type": "marked", "schedule": "*/10 * * * * *", "misfire": "skip"}),
        &registry,
    )
    .unwrap();
    admin::put(&meta, &registry, &spec, false, &json!({"id": "test"}), start).unwrap();

    let holders = ["p1", "p2"];
    let mut children = Children(Vec::new());
    for holder in holders {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, format!("{}\t{holder}", dir.path().display()))
            .spawn()
            .unwrap();
        children.0.push(child);
    }
    let both_at = |t: &str| {
        holders
            .iter()
            .all(|h| std::fs::read_to_string(dir.path().join(format!("progress-{h}"))).is_ok_and(|p| p == t))
    };
    let mut at = millis(start).to_string();
    let mut expected = Vec::new();
    for i in 0..=OCCURRENCES {
        let waited = Instant::now();
        while !both_at(&at) {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "the children did not both tick at {at}"
            );
            for c in &mut children.0 {
                assert!(c.try_wait().unwrap().is_none(), "a child exited early");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if i == OCCURRENCES {
            break;
        }
        let next = first + 10_000 * i;
        expected.push(rfc3339(from_millis(next)));
        at = next.to_string();
        put_file(&clock, &at);
    }
    put_file(&clock, STOP);
    for mut c in std::mem::take(&mut children.0) {
        assert!(c.wait().unwrap().success());
    }

    // Every run is in the system outbox (nothing drained it), with its
    // occurrence as its start, since the clock stood there.
    let runs: Vec<Value> = meta
        .outbox(10_000)
        .unwrap()
        .into_iter()
        .map(|(_, t)| serde_json::from_str::<Value>(&t).unwrap())
        .filter(|e| e["action"] == "job.run")
        .map(|e| e["details"].clone())
        .collect();
    let mut by_occurrence: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &runs {
        assert_eq!(r["outcome"], "success", "{r}");
        by_occurrence
            .entry(r["started_at"].as_str().unwrap().to_string())
            .or_default()
            .push(r["holder"].as_str().unwrap().to_string());
    }
    let twice: Vec<_> = by_occurrence.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(twice.is_empty(), "run more than once: {twice:?}");
    assert_eq!(by_occurrence.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(runs.len() as i64, OCCURRENCES);
    // Both processes won some.
    for h in holders {
        let won = runs.iter().filter(|r| r["holder"] == h).count();
        assert!(won > 0, "{h} ran nothing of {OCCURRENCES}");
        eprintln!("{h} ran {won} of {OCCURRENCES} occurrences");
    }
}
