//! Data-driven tests of the audit commands through the `sealtrail` binary:
//! a generated data set is appended, and every filter and command is
//! checked against an answer this file computes on its own from the
//! stored events.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use sealtrail_event::Timestamp;
use serde_json::Value;

mod support;

const EVENTS: usize = 2000;

struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let dir = tmp.path().to_path_buf();
        Env { _tmp: tmp, data, dir }
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        support::run(&self.data, args, stdin)
    }

    /// Run, require exit code `code`, return (stdout, stderr).
    fn expect(&self, args: &[&str], stdin: &[u8], code: i32) -> (String, String) {
        support::expect(&self.data, args, stdin, code)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.expect(args, b"", 0).0
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// One stored event as the test sees it: ledger index and JSON.
struct Stored {
    index: u64,
    json: Value,
}

impl Stored {
    fn str(&self, path: &[&str]) -> Option<&str> {
        let mut v = &self.json;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str()
    }
    fn time(&self, field: &str) -> Timestamp {
        self.str(&[field]).unwrap().parse().unwrap()
    }
    fn targets(&self) -> Vec<(&str, &str)> {
        self.json["targets"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| (t["type"].as_str().unwrap(), t["id"].as_str().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every ledger entry, read straight from the ledger (not through the index).
fn entries(env: &Env) -> Vec<Vec<u8>> {
    let log = sealtrail_ledger::DataDir::new(&env.data)
        .open_log("default", sealtrail_ledger::LogOptions::default())
        .unwrap();
    log.entries(0, log.size()).unwrap()
}

/// A data directory holding the generated events, and the events as
/// stored (read from the ledger, independent of the index).
fn setup() -> (Env, Vec<Stored>) {
    let env = Env::new();
    env.ok(&["init"]);
    let input: Vec<u8> = sealtrail_testgen::events(3, EVENTS)
        .flat_map(|mut e| {
            e.push(b'\n');
            e
        })
        .collect();
    let file = env.path("events.jsonl");
    std::fs::write(&file, &input).unwrap();
    let (out, _) = env.expect(&["append", file.to_str().unwrap()], b"", 0);
    assert!(out.contains("0 rejected"), "{out}");
    let size: u64 = out.rsplit("tree size ").next().unwrap().trim().parse().unwrap();
    let stored = entries(&env)
        .iter()
        .enumerate()
        .map(|(index, bytes)| Stored {
            index: index as u64,
            json: serde_json::from_slice(bytes).unwrap(),
        })
        .collect::<Vec<_>>();
    assert_eq!(stored.len() as u64, size);
    assert!(stored.len() > EVENTS * 9 / 10, "few duplicates expected");
    (env, stored)
}

/// Indices printed by a listing command in `--format jsonl`, matched back
/// to the stored events by id.
fn listed(env: &Env, stored: &[Stored], args: &[&str]) -> Vec<u64> {
    let mut all = args.to_vec();
    all.extend(["--format", "jsonl", "--limit", "100000"]);
    let out = env.ok(&all);
    let by_id: BTreeMap<&str, u64> = stored.iter().map(|s| (s.str(&["id"]).unwrap(), s.index)).collect();
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            by_id[v["id"].as_str().unwrap()]
        })
        .collect()
}

/// `query ARGS` must list exactly the events `keep` accepts, newest first.
fn check(env: &Env, stored: &[Stored], args: &[&str], keep: impl Fn(&Stored) -> bool) {
    let mut want: Vec<u64> = stored.iter().filter(|s| keep(s)).map(|s| s.index).collect();
    want.reverse();
    let mut query = vec!["query"];
    query.extend(args);
    let got = listed(env, stored, &query);
    assert!(
        !want.is_empty(),
        "{args:?} selects nothing in the data set: a vacuous check"
    );
    assert_eq!(got, want, "query {args:?}");
}

fn severity_rank(name: &str) -> usize {
    [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ]
    .iter()
    .position(|s| *s == name)
    .unwrap()
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn text_words(s: &Stored) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.extend(words(s)),
            // Numbers inside details are searchable text too.
            Value::Number(n) => out.extend(words(&n.to_string())),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.extend(words(k));
                walk(x, out)
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for f in [&["message"][..], &["error", "type"], &["error", "message"]] {
        if let Some(t) = s.str(f) {
            out.extend(words(t));
        }
    }
    if let Some(d) = s.json.get("details") {
        walk(d, &mut out);
    }
    out
}

fn is_failure(s: &Stored) -> bool {
    s.str(&["outcome"]) == Some("failure")
        || severity_rank(s.str(&["severity"]).unwrap()) >= severity_rank("error")
        || s.json.get("error").is_some()
}

#[test]
fn every_filter_matches_an_independent_scan() {
    let (env, stored) = setup();
    let e = &stored[stored.len() / 3];
    let action = e.str(&["action"]).unwrap().to_owned();
    let namespace = action.split('.').next().unwrap().to_owned();
    let actor = stored.iter().find_map(|s| s.str(&["actor", "id"])).unwrap().to_owned();
    let (ttype, tid) = stored.iter().find_map(|s| s.targets().first().copied()).unwrap();
    let tenant = stored.iter().find_map(|s| s.str(&["tenant"])).unwrap().to_owned();
    let workflow = stored
        .iter()
        .find_map(|s| s.str(&["source", "workflow"]))
        .unwrap()
        .to_owned();
    let service = stored
        .iter()
        .find_map(|s| s.str(&["source", "service"]))
        .unwrap()
        .to_owned();
    let ip = stored
        .iter()
        .find_map(|s| s.str(&["context", "ip"]))
        .unwrap()
        .to_owned();
    let session = stored
        .iter()
        .find_map(|s| s.str(&["context", "session_id"]))
        .unwrap()
        .to_owned();
    let from = stored[stored.len() / 4].time("occurred_at");
    let to = stored[stored.len() / 2].time("occurred_at");
    let with_message = stored[stored.len() / 3..]
        .iter()
        .find_map(|s| s.str(&["message"]))
        .unwrap();
    let word = words(with_message).into_iter().max_by_key(|w| w.len()).unwrap();

    check(&env, &stored, &[], |_| true);
    check(&env, &stored, &["--action", &action], |s| {
        s.str(&["action"]) == Some(&action)
    });
    let glob = format!("{namespace}.*");
    check(&env, &stored, &["--action", &glob], |s| {
        s.str(&["action"]).unwrap().starts_with(&format!("{namespace}."))
    });
    let suffix = action.rsplit('.').next().unwrap();
    let glob = format!("*.{suffix}");
    check(&env, &stored, &["--action", &glob], |s| {
        s.str(&["action"]).unwrap().ends_with(&format!(".{suffix}"))
    });
    check(&env, &stored, &["--actor", &actor], |s| {
        s.str(&["actor", "id"]) == Some(&actor)
    });
    check(&env, &stored, &["--target", &format!("{ttype}:{tid}")], |s| {
        s.targets().contains(&(ttype, tid))
    });
    check(&env, &stored, &["--target", ttype], |s| {
        s.targets().iter().any(|t| t.0 == ttype)
    });
    check(&env, &stored, &["--tenant", &tenant], |s| {
        s.str(&["tenant"]) == Some(&tenant)
    });
    check(&env, &stored, &["--workflow", &workflow], |s| {
        s.str(&["source", "workflow"]) == Some(&workflow)
    });
    check(&env, &stored, &["--service", &service], |s| {
        s.str(&["source", "service"]) == Some(&service)
    });
    for outcome in ["success", "failure", "unknown"] {
        check(&env, &stored, &["--outcome", outcome], |s| {
            s.str(&["outcome"]) == Some(outcome)
        });
    }
    for level in ["warning", "error"] {
        check(&env, &stored, &["--severity", level], |s| {
            severity_rank(s.str(&["severity"]).unwrap()) >= severity_rank(level)
        });
    }
    check(&env, &stored, &["--ip", &ip], |s| {
        s.str(&["context", "ip"]) == Some(&ip)
    });
    check(&env, &stored, &["--session", &session], |s| {
        s.str(&["context", "session_id"]) == Some(&session)
    });
    let (f, t) = (from.to_string(), to.to_string());
    check(&env, &stored, &["--since", &f, "--until", &t], |s| {
        (from..to).contains(&s.time("occurred_at"))
    });
    check(&env, &stored, &["--since", &f], |s| s.time("occurred_at") >= from);
    let day = &f[..10];
    let next_day = (from + jiff::SignedDuration::from_hours(24)).to_string()[..10].to_owned();
    check(&env, &stored, &["--since", day, "--until", &next_day], |s| {
        s.str(&["occurred_at"]).unwrap().starts_with(day)
    });
    check(&env, &stored, &["--since", "10000w"], |_| true);
    check(&env, &stored, &["--received-until", "2999-01-01"], |_| true);
    check(&env, &stored, &["--text", &word], |s| text_words(s).contains(&word));
    // Combinations narrow by every field at once.
    check(
        &env,
        &stored,
        &["--action", &glob_of(&namespace), "--outcome", "success", "--since", &f],
        |s| {
            s.str(&["action"]).unwrap().starts_with(&format!("{namespace}."))
                && s.str(&["outcome"]) == Some("success")
                && s.time("occurred_at") >= from
        },
    );
    check(&env, &stored, &["--tenant", &tenant, "--severity", "info"], |s| {
        s.str(&["tenant"]) == Some(&tenant) && severity_rank(s.str(&["severity"]).unwrap()) >= 1
    });

    // A filter nothing matches prints nothing, successfully.
    assert_eq!(
        listed(&env, &stored, &["query", "--actor", "nobody-at-all"]),
        Vec::<u64>::new()
    );
    // Bad filter values are refused with the flag named.
    let (_, err) = env.expect(&["query", "--since", "yesterday"], b"", 2);
    assert!(err.contains("--since") && err.contains("\"yesterday\""), "{err}");
    let (_, err) = env.expect(&["query", "--outcome", "maybe"], b"", 2);
    assert!(err.contains("maybe"), "{err}");
}

fn glob_of(namespace: &str) -> String {
    format!("{namespace}.*")
}

#[test]
fn listings_page_history_and_errors() {
    let (env, stored) = setup();
    // Paging newest first with --after walks the whole set without overlap.
    let mut seen = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let mut args = vec![
            "query".to_string(),
            "--limit".into(),
            "700".into(),
            "--format".into(),
            "jsonl".into(),
        ];
        if let Some(a) = after {
            args.extend(["--after".into(), a.to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.ok(&refs);
        let ids: Vec<String> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        if ids.is_empty() {
            break;
        }
        let last = stored
            .iter()
            .find(|s| s.str(&["id"]) == ids.last().map(String::as_str))
            .unwrap();
        after = Some(last.index);
        seen.extend(ids);
    }
    let want: Vec<String> = stored
        .iter()
        .rev()
        .map(|s| s.str(&["id"]).unwrap().to_owned())
        .collect();
    assert_eq!(seen, want);

    // history: the entity's timeline, oldest first.
    let (ttype, tid) = stored.iter().rev().find_map(|s| s.targets().first().copied()).unwrap();
    let want: Vec<u64> = stored
        .iter()
        .filter(|s| s.targets().contains(&(ttype, tid)))
        .map(|s| s.index)
        .collect();
    let got = listed(&env, &stored, &["history", &format!("{ttype}:{tid}")]);
    assert_eq!(got, want);
    let (_, err) = env.expect(&["history", "no-colon"], b"", 2);
    assert!(err.contains("TYPE:ID"), "{err}");

    // errors: failures and errors, newest first; the table shows error details.
    let want: Vec<u64> = stored.iter().rev().filter(|s| is_failure(s)).map(|s| s.index).collect();
    assert!(!want.is_empty());
    assert_eq!(listed(&env, &stored, &["errors"]), want);
    let table = env.ok(&["errors", "--limit", "3"]);
    let newest = stored.iter().rev().find(|s| is_failure(s)).unwrap();
    assert!(table.contains(&format!("#{} ", newest.index)), "{table}");
    if let Some(m) = newest.str(&["error", "message"]) {
        assert!(table.contains(m), "{table}");
    }

    // The table format names each event by index and action.
    let table = env.ok(&["query", "--limit", "5"]);
    let last = stored.last().unwrap();
    assert!(table.contains(last.str(&["action"]).unwrap()), "{table}");
}

#[test]
fn stats_and_performance_match_an_independent_count() {
    let (env, stored) = setup();
    let tenant = stored.iter().find_map(|s| s.str(&["tenant"])).unwrap().to_owned();
    let subset: Vec<&Stored> = stored.iter().filter(|s| s.str(&["tenant"]) == Some(&tenant)).collect();

    let out = env.ok(&["stats", "--tenant", &tenant, "--by", "hour", "--format", "json"]);
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["total"], subset.len() as u64);
    let count_by = |f: &dyn Fn(&Stored) -> Option<String>| -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for s in &subset {
            if let Some(k) = f(s) {
                *m.entry(k).or_default() += 1;
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    let pairs = |v: &Value| -> Vec<(String, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p["value"].as_str().unwrap().to_owned(), p["count"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(
        pairs(&got["by_action"]),
        count_by(&|s| s.str(&["action"]).map(str::to_owned))
    );
    assert_eq!(
        pairs(&got["by_actor"]),
        count_by(&|s| s.str(&["actor", "id"]).map(str::to_owned))
    );
    assert_eq!(
        pairs(&got["by_outcome"]),
        count_by(&|s| s.str(&["outcome"]).map(str::to_owned))
    );
    let mut hours: BTreeMap<String, u64> = BTreeMap::new();
    for s in &subset {
        let t = s.str(&["occurred_at"]).unwrap();
        *hours.entry(format!("{}:00:00Z", &t[..13])).or_default() += 1;
    }
    let by_time: Vec<(String, u64)> = got["by_time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["start"].as_str().unwrap().to_owned(), p["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_time, hours.into_iter().collect::<Vec<_>>());

    // performance: exact nearest-rank percentiles per action.
    let out = env.ok(&["performance", "--format", "json"]);
    let got: Value = serde_json::from_str(&out).unwrap();
    let mut durations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in &stored {
        if let Some(d) = s.json.get("duration_ms").and_then(Value::as_f64) {
            durations
                .entry(s.str(&["action"]).unwrap().to_owned())
                .or_default()
                .push(d);
        }
    }
    let rows = got.as_array().unwrap();
    assert_eq!(rows.len(), durations.len());
    for (row, (action, mut ds)) in rows.iter().zip(durations) {
        ds.sort_by(f64::total_cmp);
        let n = ds.len();
        let rank = |p: f64| ds[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        assert_eq!(row["action"], action.as_str());
        assert_eq!(row["count"], n as u64);
        assert_eq!(row["min"].as_f64().unwrap(), ds[0], "{action}");
        assert_eq!(row["max"].as_f64().unwrap(), ds[n - 1], "{action}");
        let mean = ds.iter().sum::<f64>() / n as f64;
        assert!(
            (row["mean"].as_f64().unwrap() - mean).abs() < 1e-6 * mean.max(1.0),
            "{action}"
        );
        for p in [50.0, 95.0, 99.0] {
            assert_eq!(row[format!("p{p}")].as_f64().unwrap(), rank(p), "{action} p{p}");
        }
    }
}

#[test]
fn exports_stream_every_match_and_queries_verify() {
    let (env, stored) = setup();
    let tenant = stored.iter().find_map(|s| s.str(&["tenant"])).unwrap().to_owned();
    let want: Vec<&Stored> = stored.iter().filter(|s| s.str(&["tenant"]) == Some(&tenant)).collect();

    // jsonl: the stored entries verbatim, oldest first.
    let jsonl = env.path("out.jsonl");
    env.ok(&[
        "export",
        "--tenant",
        &tenant,
        "--format",
        "jsonl",
        "--output",
        jsonl.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), want.len());
    let all = entries(&env);
    for (line, s) in lines.iter().zip(&want) {
        assert_eq!(line.as_bytes(), all[s.index as usize].as_slice());
    }

    // csv: one header and one row per event, ids in order.
    let csv_path = env.path("out.csv");
    env.ok(&[
        "export",
        "--tenant",
        &tenant,
        "--format",
        "csv",
        "--output",
        csv_path.to_str().unwrap(),
    ]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let id_col = headers.iter().position(|h| h == "id").unwrap();
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[id_col].to_owned()).collect();
    let want_ids: Vec<String> = want.iter().map(|s| s.str(&["id"]).unwrap().to_owned()).collect();
    assert_eq!(ids, want_ids);

    // json: one array of the same entries.
    let json_path = env.path("out.json");
    env.ok(&[
        "export",
        "--tenant",
        &tenant,
        "--format",
        "json",
        "--output",
        json_path.to_str().unwrap(),
    ]);
    let array: Vec<Value> = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(array.len(), want.len());

    // xlsx: a workbook (its contents are checked in sealtrail-export's tests).
    let xlsx = env.path("out.xlsx");
    env.ok(&["export", "--format", "xlsx", "--output", xlsx.to_str().unwrap()]);
    assert_eq!(&std::fs::read(&xlsx).unwrap()[..2], b"PK");

    // --verify checks every returned event against the signed checkpoint.
    let (_, err) = env.expect(&["query", "--tenant", &tenant, "--verify"], b"", 0);
    assert!(
        err.contains(&format!("verified: {} events", want.len().min(100))),
        "{err}"
    );
}

#[test]
fn reindex_rebuilds_the_same_answers_and_the_next_writer_catches_up() {
    let (env, stored) = setup();
    let actor = stored.iter().find_map(|s| s.str(&["actor", "id"])).unwrap().to_owned();
    let before = listed(&env, &stored, &["query", "--actor", &actor]);
    let stats_before = env.ok(&["stats", "--format", "json"]);
    let out = env.ok(&["reindex"]);
    assert!(out.contains(&format!("{} entries", stored.len())), "{out}");
    assert_eq!(listed(&env, &stored, &["query", "--actor", &actor]), before);
    assert_eq!(env.ok(&["stats", "--format", "json"]), stats_before);
    // Deleting the index altogether: reads only say what they miss (they
    // write nothing); the next command that writes rebuilds it.
    std::fs::remove_dir_all(env.data.join("logs/default/query-index")).unwrap();
    let (out, err) = env.expect(&["query", "--actor", &actor], b"", 0);
    assert_eq!(out, "");
    assert!(err.contains("no events match"), "{err}");
    let note = format!(
        "note: the newest {} entries (from index 0) are not indexed yet",
        stored.len()
    );
    assert!(err.contains(&note), "{err}");
    assert!(!env.data.join("logs/default/query-index").exists());
    env.ok_stdin(&["append"], b"");
    assert_eq!(listed(&env, &stored, &["query", "--actor", &actor]), before);
    // Raw entries are stepped over by the index.
    env.ok_stdin(&["append", "--raw"], b"not an event\n");
    assert_eq!(listed(&env, &stored, &["query", "--actor", &actor]), before);
}

#[test]
fn append_reports_bad_lines_by_number_and_strict_appends_nothing() {
    let env = Env::new();
    env.ok(&["init"]);
    let input = b"{\"action\":\"ok.one\"}\n{\"action\":7}\n\n{\"action\":\"ok.two\",\"idempotency_key\":\"k1\"}\n{\"action\":\"ok.two\",\"idempotency_key\":\"k1\"}\n[1,2\n";
    let strict = env.run(&["append", "--strict"], input);
    assert_eq!(strict.status.code(), Some(2));
    let out = String::from_utf8_lossy(&strict.stdout);
    assert!(out.contains("appended nothing: 2 of 5 lines rejected"), "{out}");
    let (out, err) = env.expect(&["append"], input, 2);
    assert!(err.contains("line 2: action: "), "{err}");
    assert!(err.contains("line 6, column "), "{err}");
    assert!(
        out.contains("appended 2 events (entries 0..1), 1 duplicates, 2 rejected; tree size 2"),
        "{out}"
    );
    // A resend in a later run is still a duplicate.
    let (out, _) = env.expect(&["append"], b"{\"action\":\"ok.two\",\"idempotency_key\":\"k1\"}\n", 0);
    assert!(out.contains("appended 0 events, 1 duplicates"), "{out}");
}

impl Env {
    fn ok_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        self.expect(args, stdin, 0).0
    }
}

#[test]
fn after_kill_9_during_append_the_index_catches_up_with_the_ledger() {
    let env = Env::new();
    env.ok(&["init"]);
    let input: Vec<u8> = sealtrail_testgen::events(9, 150_000)
        .flat_map(|mut e| {
            e.push(b'\n');
            e
        })
        .collect();
    let file = env.path("big.jsonl");
    std::fs::write(&file, &input).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .arg("--data")
        .arg(&env.data)
        .args(["append", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the ledger has acknowledged some events.
    let checkpoint = env.data.join("logs/default/checkpoint");
    let started = std::time::Instant::now();
    let initial = std::fs::read(&checkpoint).unwrap();
    while std::fs::read(&checkpoint).unwrap() == initial && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Long enough for some index commits (every 0.5 s) and not others.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    child.kill().unwrap();
    child.wait().unwrap();

    let size = entries(&env).len() as u64;
    assert!(size > 0, "nothing was acknowledged before the kill");
    eprintln!("killed after {size} of 150000 events were acknowledged");
    // A read leaves out what the index had not committed, and says so.
    let (out, err) = env.expect(&["stats", "--format", "json"], b"", 0);
    let stats: Value = serde_json::from_str(&out).unwrap();
    let indexed = stats["total"].as_u64().unwrap();
    assert!(indexed <= size);
    if indexed < size {
        let note = format!("note: the newest {} entries (from index {indexed})", size - indexed);
        assert!(err.contains(&note), "{err}");
    }
    // The next writer catches the index up.
    env.ok_stdin(&["append"], b"");
    let stats: Value = serde_json::from_str(&env.ok(&["stats", "--format", "json"])).unwrap();
    assert_eq!(
        stats["total"], size,
        "every acknowledged event is searchable after the restart"
    );
    let newest: Value = serde_json::from_str(&env.ok(&["query", "--limit", "1", "--format", "jsonl"])).unwrap();
    let last: Value = serde_json::from_slice(&entries(&env)[size as usize - 1]).unwrap();
    assert_eq!(newest["id"], last["id"]);
    let out = env.ok(&["verify"]);
    assert!(out.contains("intact"), "{out}");
}
