//! The `data-diff` and `data-keys` job types on real CSV files, run by the
//! scheduler against a real `meta.db`: each run recorded in the data-run
//! history with its system-log event, the job run's summary carrying the
//! data run's id and counts. Expected counts and keys are computed here,
//! from the rows written, by plain comparison and brute force.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sealtrail_ledger::DataDir;
use sealtrail_meta::{Meta, RunKind, RunOutcome, StoredDataRun};
use sealtrail_sched::admin;
use sealtrail_sched::data_runs::DataRunPool;
use sealtrail_sched::kinds::data::{DataDiff, DataKeys, DataSettings};
use sealtrail_sched::{JobEnv, JobSpec, Logs, ManualClock, Registry, Scheduler, SchedulerOptions};
use sealtrail_trail::Trail;
use serde_json::{json, Value};

struct NoLogs(DataDir);

impl Logs for NoLogs {
    fn data(&self) -> &DataDir {
        &self.0
    }
    fn trail(&self, name: &str) -> Result<Arc<Trail>, String> {
        Err(format!("no log {name} here"))
    }
}

struct Env {
    _dir: tempfile::TempDir,
    files: tempfile::TempDir,
    registry: Arc<Registry>,
    meta: Arc<Meta>,
    sched: Scheduler,
    clock: Arc<ManualClock>,
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

impl Env {
    /// A scheduler whose data jobs know `sources` (name → file name in
    /// the files directory).
    fn new(sources: &[(&str, &str)]) -> Env {
        Env::with_runs(sources, None)
    }

    /// As [`Env::new`], the data runs taking slots of `runs` and keeping
    /// their results in its directories.
    fn with_runs(sources: &[(&str, &str)], runs: Option<Arc<DataRunPool>>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let settings = DataSettings {
            sources: Some(
                sources
                    .iter()
                    .map(|(n, f)| (n.to_string(), files.path().join(f).to_string_lossy().into_owned()))
                    .collect(),
            ),
            memory_budget: 64 << 20,
            runs,
        };
        let mut registry = Registry::builtin();
        registry.register(DataDiff(settings.clone()));
        registry.register(DataKeys(settings));
        let registry = Arc::new(registry);
        let meta = Arc::new(Meta::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(utc("2026-03-02T09:00:00Z")));
        let env = JobEnv {
            meta: meta.clone(),
            logs: Arc::new(NoLogs(DataDir::new(dir.path()))),
            data_dir: dir.path().to_path_buf(),
        };
        let opts = SchedulerOptions {
            holder: "a".into(),
            lease: Duration::from_secs(60),
            max_running: 4,
        };
        let sched = Scheduler::new(registry.clone(), env, clock.clone(), opts);
        Env {
            _dir: dir,
            files,
            registry,
            meta,
            sched,
            clock,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    fn write(&self, name: &str, header: &[&str], rows: &[Vec<String>]) -> String {
        let mut text = header.join(",");
        text.push('\n');
        for r in rows {
            text.push_str(&r.join(","));
            text.push('\n');
        }
        std::fs::write(self.file(name), text).unwrap();
        self.file(name).to_string_lossy().into_owned()
    }

    fn spec(&self, job: Value) -> Result<JobSpec, String> {
        JobSpec::from_value(job, &self.registry).map_err(|e| e.to_string())
    }

    /// Store `job`, run it now, and return its run.
    fn run(&self, job: Value) -> sealtrail_meta::jobs::JobRun {
        let spec = self.spec(job).unwrap();
        let actor = json!({"id": "test", "type": "user"});
        let now = sealtrail_sched::Clock::now(&*self.clock);
        admin::put(&self.meta, &self.registry, &spec, false, &actor, now).unwrap();
        admin::request_run(&self.meta, &spec.name, &actor).unwrap();
        assert_eq!(self.sched.tick().unwrap().started.len(), 1);
        self.sched.settle(Duration::from_secs(60)).unwrap();
        self.meta.job_runs(&spec.name, 1).unwrap().remove(0)
    }

    /// The data run a job run's summary (or error) names.
    fn data_run(&self, text: &str) -> StoredDataRun {
        let rest = text.strip_prefix("data run ").unwrap_or_else(|| panic!("{text}"));
        let id: i64 = rest[..rest.find(' ').unwrap()].parse().unwrap();
        self.meta.data_run(id).unwrap().unwrap()
    }

    /// The system-log events queued so far with this action.
    fn events(&self, action: &str) -> Vec<Value> {
        self.meta
            .outbox(1000)
            .unwrap()
            .into_iter()
            .map(|(_, t)| serde_json::from_str::<Value>(&t).unwrap())
            .filter(|e| e["action"] == action)
            .collect()
    }
}

fn row(values: &[String]) -> Vec<String> {
    values.to_vec()
}

/// What a keyed comparison of `old` with `new` finds, by plain means:
/// (added, removed, changed, unchanged), with `updated_at` ignored and
/// `amount` equal within `tolerance`.
fn expected_diff(old: &[Vec<String>], new: &[Vec<String>], tolerance: f64) -> (u64, u64, u64, u64) {
    let by_id = |rows: &[Vec<String>]| -> HashMap<String, Vec<String>> {
        rows.iter().map(|r| (r[0].clone(), r.clone())).collect()
    };
    let (o, n) = (by_id(old), by_id(new));
    let added = n.keys().filter(|k| !o.contains_key(*k)).count() as u64;
    let removed = o.keys().filter(|k| !n.contains_key(*k)).count() as u64;
    let (mut changed, mut unchanged) = (0, 0);
    for (k, a) in &o {
        let Some(b) = n.get(k) else { continue };
        let name_same = a[1] == b[1];
        let x: f64 = a[2].parse().unwrap();
        let y: f64 = b[2].parse().unwrap();
        let amount_same = (x - y).abs() <= tolerance;
        if name_same && amount_same {
            unchanged += 1;
        } else {
            changed += 1;
        }
    }
    (added, removed, changed, unchanged)
}

const HEADER: [&str; 4] = ["id", "name", "amount", "updated_at"];

/// Ids 1 to 40; the new side drops 1 and 2, adds 41 to 43, moves some
/// amounts beyond the tolerance (every 5th) and some within it (every
/// 7th), renames every 11th, touches `updated_at` of every 3rd, and comes
/// in reverse order.
fn tables() -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let old: Vec<Vec<String>> = (1..=40)
        .map(|i| row(&[i.to_string(), format!("n{i}"), format!("{i}.50"), "2026-01-01".into()]))
        .collect();
    let mut new: Vec<Vec<String>> = (3..=43)
        .map(|i| {
            let amount = if i % 5 == 0 {
                format!("{i}.75")
            } else if i % 7 == 0 {
                format!("{i}.505")
            } else {
                format!("{i}.50")
            };
            let name = if i % 11 == 0 { format!("N{i}") } else { format!("n{i}") };
            let updated = if i % 3 == 0 { "2026-02-01" } else { "2026-01-01" };
            row(&[i.to_string(), name, amount, updated.into()])
        })
        .collect();
    new.reverse();
    (old, new)
}

#[test]
fn a_data_diff_job_records_a_data_run_and_reports_its_counts() {
    let env = Env::new(&[("orders-new", "new.csv")]);
    let (old, new) = tables();
    let left = env.write("old.csv", &HEADER, &old);
    env.write("new.csv", &HEADER, &new);
    let (added, removed, changed, unchanged) = expected_diff(&old, &new, 0.01);
    assert!(added > 0 && removed > 0 && changed > 0 && unchanged > 0);

    // The right side named as a configured source.
    let run = env.run(json!({
        "name": "nightly-orders", "type": "data-diff", "schedule": "daily at 02:00",
        "left": left, "right": "orders-new", "key": ["id"], "ignore": ["updated_at"], "tolerance": 0.01,
    }));
    assert_eq!(run.outcome, "success", "differences do not fail the run: {run:?}");
    let data = env.data_run(&run.summary);
    let want = format!(
        "data run {} (diff): differences found: {added} added, {removed} removed, {changed} changed, {unchanged} unchanged; {} left rows, {} right rows; 0 duplicate keys",
        data.id,
        old.len(),
        new.len()
    );
    assert_eq!(run.summary, want);
    let d = &data.run;
    assert_eq!(
        (d.kind, d.outcome, d.name.as_deref()),
        (RunKind::Diff, RunOutcome::Differences, Some("nightly-orders"))
    );
    let s = &d.summary;
    assert_eq!(
        [&s["added"], &s["removed"], &s["changed"], &s["unchanged"]],
        [&json!(added), &json!(removed), &json!(changed), &json!(unchanged)]
    );
    assert_eq!(d.actor, json!({"id": "job:nightly-orders", "type": "service"}));
    assert_eq!(d.parameters["inputs"][1], json!({"source": "orders-new"}));
    let bytes = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(
        (d.inputs[0].address.as_str(), d.inputs[0].bytes),
        (left.as_str(), Some(bytes(&env.file("old.csv"))))
    );
    assert_eq!(d.inputs[1].bytes, Some(bytes(&env.file("new.csv"))));
    assert_eq!(d.inputs[1].sha256.as_ref().map(String::len), Some(64));
    let q = d.quality_score.unwrap();
    assert!(
        (q - unchanged as f64 / old.len().max(new.len()) as f64).abs() < 1e-9,
        "{q}"
    );
    // Its system-log event, as the CLI's and the API's.
    let events = env.events("data.run.completed");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["targets"][0]["id"], json!(data.id.to_string()));

    // Asked to, differences fail the job run; the data run is recorded alike.
    let run = env.run(json!({
        "name": "strict", "type": "data-diff", "schedule": "daily at 02:00",
        "left": left, "right": "orders-new", "key": ["id"], "ignore": ["updated_at"], "tolerance": 0.01,
        "fail_on_differences": true,
    }));
    assert_eq!(run.outcome, "failure");
    let error = run.error.unwrap();
    let data = env.data_run(&error);
    assert!(error.ends_with("(fail_on_differences)"), "{error}");
    assert!(error.contains(&format!("{changed} changed")), "{error}");
    assert_eq!(data.run.outcome, RunOutcome::Differences);

    // Without the tolerance, the amounts within it count as changed too.
    let within = old
        .iter()
        .filter_map(|r| r[0].parse::<u32>().ok())
        .filter(|i| *i >= 3 && i % 7 == 0 && i % 5 != 0 && i % 11 != 0)
        .count() as u64;
    assert_eq!(expected_diff(&old, &new, 0.0).2, changed + within);
    let run = env.run(json!({
        "name": "exact", "type": "data-diff", "schedule": "daily at 02:00",
        "left": left, "right": "orders-new", "key": ["id"], "ignore": ["updated_at"],
    }));
    assert!(
        run.summary.contains(&format!("{} changed", changed + within)),
        "{run:?}"
    );

    // A table against itself: no differences, a success either way.
    let run = env.run(json!({
        "name": "same", "type": "data-diff", "schedule": "daily at 02:00",
        "left": left, "right": left, "key": ["id"], "fail_on_differences": true,
    }));
    assert_eq!(run.outcome, "success", "{run:?}");
    assert!(
        run.summary
            .contains(": no differences: 0 added, 0 removed, 0 changed, 40 unchanged"),
        "{run:?}"
    );
    assert_eq!(env.data_run(&run.summary).run.outcome, RunOutcome::Success);

    // A file that is not there: the job run fails, the data run is a failure.
    let gone = env.file("gone.csv").to_string_lossy().into_owned();
    let run = env.run(json!({
        "name": "broken", "type": "data-diff", "schedule": "daily at 02:00",
        "left": gone, "right": left, "key": ["id"],
    }));
    assert_eq!(run.outcome, "failure");
    let error = run.error.unwrap();
    let data = env.data_run(&error);
    assert!(
        error.contains("(diff) failed: ") && error.contains("gone.csv"),
        "{error}"
    );
    assert_eq!(data.run.outcome, RunOutcome::Failure);
    assert_eq!(env.events("data.run.failed").len(), 1);
}

/// The minimal unique column sets of at most `max` columns, by brute
/// force.
fn expected_keys(header: &[&str], rows: &[Vec<String>], max: usize) -> BTreeSet<Vec<String>> {
    let n = header.len();
    let unique = |cols: &[usize]| {
        let seen: HashSet<Vec<&String>> = rows.iter().map(|r| cols.iter().map(|c| &r[*c]).collect()).collect();
        seen.len() == rows.len()
    };
    let mut keys: Vec<Vec<usize>> = Vec::new();
    for mask in 1u32..(1 << n) {
        let cols: Vec<usize> = (0..n).filter(|c| mask & (1 << c) != 0).collect();
        if cols.len() > max || !unique(&cols) {
            continue;
        }
        let minimal = (0..cols.len()).all(|drop| {
            let fewer: Vec<usize> = cols
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, c)| *c)
                .collect();
            fewer.is_empty() || !unique(&fewer)
        });
        if minimal {
            keys.push(cols);
        }
    }
    keys.into_iter()
        .map(|k| k.into_iter().map(|c| header[c].to_string()).collect())
        .collect()
}

fn keys_of(summary: &Value) -> BTreeSet<Vec<String>> {
    summary["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            k.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn a_data_keys_job_records_the_keys_found() {
    let env = Env::new(&[("people", "people.csv")]);
    let header = ["id", "email", "first", "last", "country"];
    let rows: Vec<Vec<String>> = (0..30)
        .map(|i| {
            row(&[
                format!("{}", 100 + i),
                format!("u{i}@example.org"),
                ["ann", "bob", "cid"][i % 3].to_string(),
                format!("l{}", i / 3),
                ["de", "fr"][i % 2].to_string(),
            ])
        })
        .collect();
    let path = env.write("people.csv", &header, &rows);
    let want = expected_keys(&header, &rows, 2);
    assert!(want.len() >= 3, "{want:?}");

    let run = env.run(json!({
        "name": "people-keys", "type": "data-keys", "schedule": "weekly on monday at 06:00",
        "inputs": [path], "max_columns": 2,
    }));
    assert_eq!(run.outcome, "success", "{run:?}");
    let data = env.data_run(&run.summary);
    assert_eq!((data.run.kind, data.run.outcome), (RunKind::Keys, RunOutcome::Success));
    assert_eq!(keys_of(&data.run.summary), want);
    assert!(
        run.summary
            .contains(&format!("(keys): {} keys found: [id] [email]", want.len()))
            && run.summary.ends_with("; 30 rows"),
        "{run:?}"
    );

    // Two inputs (one a configured source): the keys both share.
    let run = env.run(json!({
        "name": "shared", "type": "data-keys", "schedule": "weekly at 06:00",
        "inputs": [path, "people"], "max_columns": 2,
    }));
    let data = env.data_run(&run.summary);
    assert_eq!(keys_of(&data.run.summary), want);
    assert!(
        run.summary.contains(&format!("{} shared keys found", want.len())),
        "{run:?}"
    );

    // No key within one column: a success unless the job asks otherwise.
    let twice: Vec<Vec<String>> = rows.iter().chain(rows.iter()).cloned().collect();
    let dup = env.write("twice.csv", &header, &twice);
    let run = env.run(json!({
        "name": "none", "type": "data-keys", "schedule": "weekly at 06:00", "inputs": [dup], "max_columns": 1,
    }));
    assert_eq!(run.outcome, "success");
    assert!(run.summary.ends_with("no key found; 60 rows"), "{run:?}");
    assert_eq!(env.data_run(&run.summary).run.outcome, RunOutcome::Differences);
    let run = env.run(json!({
        "name": "none-strict", "type": "data-keys", "schedule": "weekly at 06:00", "inputs": [dup],
        "max_columns": 1, "fail_on_differences": true,
    }));
    assert_eq!(run.outcome, "failure", "{run:?}");
}

#[test]
fn data_job_definitions_are_refused_naming_the_field() {
    let env = Env::new(&[("orders", "orders.csv")]);
    let diff = |extra: Value| {
        let mut job = json!({"name": "d", "type": "data-diff", "schedule": "daily at 02:00",
            "left": "/srv/a.csv", "right": "orders", "key": ["id"]});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                job.as_object_mut().unwrap().remove(k);
            } else {
                job[k] = v.clone();
            }
        }
        env.spec(job)
    };
    diff(json!({})).unwrap();
    let cases: BTreeMap<&str, (Value, &str)> = BTreeMap::from([
        ("no key", (json!({"key": null}), "key: missing")),
        ("empty key", (json!({"key": []}), "key: name at least one column")),
        ("key not a list", (json!({"key": "id"}), "key: expected a list of column names")),
        ("key item", (json!({"key": ["id", 3]}), "key[1]: expected a column name")),
        ("no right", (json!({"right": null}), "right: missing")),
        ("unknown source", (json!({"right": "nope"}), "right: \"nope\" is not an absolute file path, and the server's [data.sources] has no source of that name")),
        ("database", (json!({"left": "postgresql://app:pw@db/shop?table=t"}), "left: a database is named through [data.sources]")),
        ("tolerance", (json!({"tolerance": -1}), "tolerance: expected a number of at least 0")),
        ("rename", (json!({"rename": {"a": 1}}), "rename.a: expected the column's new name")),
        ("delimiter", (json!({"delimiter": ";;"}), "delimiter: expected one ASCII character")),
        ("flag", (json!({"fail_on_differences": "yes"}), "fail_on_differences: expected true or false")),
        ("unknown", (json!({"inputs": ["orders"]}), "unknown field \"inputs\"")),
    ]);
    for (case, (extra, why)) in cases {
        let err = diff(extra).unwrap_err();
        assert!(err.contains(why), "{case}: {err}");
    }
    let keys = |extra: Value| {
        let mut job = json!({"name": "k", "type": "data-keys", "schedule": "daily at 02:00", "inputs": ["orders"]});
        for (k, v) in extra.as_object().unwrap() {
            job[k] = v.clone();
        }
        env.spec(job)
    };
    keys(json!({})).unwrap();
    for (extra, why) in [
        (json!({"inputs": []}), "inputs: one or two tables, not 0"),
        (
            json!({"inputs": ["orders", "orders", "orders"]}),
            "inputs: one or two tables, not 3",
        ),
        (
            json!({"inputs": ["orders", "relative.csv"]}),
            "inputs[1]: \"relative.csv\" is not an absolute file path",
        ),
        (
            json!({"max_columns": 0}),
            "max_columns: expected a whole number from 1 to 64",
        ),
        (json!({"nulls": "same"}), "nulls: expected \"equal\" or \"distinct\""),
    ] {
        let err = keys(extra.clone()).unwrap_err();
        assert!(err.contains(why), "{extra}: {err}");
    }
    // Without the server's sources (the command line), a name is checked
    // when a run starts.
    let cli = Registry::builtin();
    let spec = json!({"name": "k", "type": "data-keys", "schedule": "daily at 02:00", "inputs": ["orders"]});
    JobSpec::from_value(spec, &cli).unwrap();
}

/// The lines of a run's `changes.jsonl`: its changes, and its last line,
/// the summary.
fn changes_of(dir: &Path) -> (Vec<Value>, Value) {
    let text = std::fs::read_to_string(dir.join("changes.jsonl")).unwrap();
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.pop().unwrap();
    (lines, last["summary"].clone())
}

#[test]
fn with_the_servers_runs_a_diff_keeps_its_changes_takes_a_slot_and_keeps_keep_runs_directories() {
    let runs_dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(DataRunPool::new(runs_dir.path().to_path_buf(), 2, 1));
    let env = Env::with_runs(&[], Some(pool.clone()));
    let (old, new) = tables();
    let left = env.write("old.csv", &HEADER, &old);
    let right = env.write("new.csv", &HEADER, &new);
    let (added, removed, changed, _) = expected_diff(&old, &new, 0.01);
    let job = |name: &str| {
        json!({"name": name, "type": "data-diff", "schedule": "daily at 02:00",
               "left": left, "right": right, "key": ["id"], "ignore": ["updated_at"], "tolerance": 0.01})
    };

    let run = env.run(job("kept"));
    assert_eq!(run.outcome, "success", "{run:?}");
    let data = env.data_run(&run.summary);
    let dir = pool.run_dir(data.id);
    let (lines, summary) = changes_of(&dir);
    let count = |kind: &str| lines.iter().filter(|l| l["kind"] == kind).count() as u64;
    assert_eq!(
        (count("added"), count("removed"), count("changed"), lines.len() as u64),
        (added, removed, changed, added + removed + changed)
    );
    assert_eq!(summary["changed"], json!(changed));
    // The ids added are those only the new side has.
    let mut ids: Vec<u64> = lines
        .iter()
        .filter(|l| l["kind"] == "added")
        .map(|l| l["key"][0].as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [41, 42, 43]);
    assert!(dir.join("layout.json").exists());
    assert!(!dir.join("tmp").exists(), "spill files are removed");
    assert!(!data.open);
    assert_eq!(pool.free_slots(), 1, "the slot is given back");

    // A key discovery's directory is there, holding no file.
    let run = env.run(json!({"name": "keys", "type": "data-keys", "schedule": "daily at 02:00", "inputs": [left]}));
    let keys = env.data_run(&run.summary);
    assert_eq!(std::fs::read_dir(pool.run_dir(keys.id)).unwrap().count(), 0);

    // With the one slot of data.max_running taken (an API run), a job
    // run waits nine tenths of its timeout and fails, saying so; no data
    // run is begun.
    let held = pool.slot_blocking(|| false).unwrap();
    let mut busy = job("waits");
    busy["timeout_seconds"] = json!(1);
    let started = std::time::Instant::now();
    let run = env.run(busy.clone());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.outcome, "failure");
    let error = run.error.unwrap();
    assert!(
        error.starts_with("no data run started: data.max_running (1) data runs were running"),
        "{error}"
    );
    assert!(env.meta.data_run(keys.id + 1).unwrap().is_none());
    drop(held);
    let run = env.run(busy);
    assert_eq!(run.outcome, "success", "{run:?}");

    // The newest two directories are kept, whatever the number of runs.
    let mut last = 0;
    for n in 0..3 {
        let run = env.run(job(&format!("more-{n}")));
        last = env.data_run(&run.summary).id;
    }
    let mut left_dirs: Vec<i64> = std::fs::read_dir(runs_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    left_dirs.sort_unstable();
    assert_eq!(left_dirs, [last - 1, last]);
}
