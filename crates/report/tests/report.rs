//! Reports on generated data, each figure checked against a scan of the
//! events the test itself sent; the HTML in a real headless Chromium
//! (PNG and A4 PDF kept under target/report-screens), the XLSX read by
//! openpyxl (scripts/report-xlsx), mail through a real SMTP server
//! (scripts/smtp-sink) and the JSON to a real HTTP receiver.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_meta::{Meta, Role, Scope};
use sealtrail_report::{generate, render, Format, ReportKind, Request};
use sealtrail_trail::{Trail, TrailOptions};
use serde_json::{json, Value};

mod support;
use support::{in_browser, json_of, openpyxl, repo_root, screens, sheet, signed_root, ts};

const DAY1: &str = "2026-01-01T00:00:00Z";
const DAY2: &str = "2026-01-02T00:00:00Z";
const DAY3: &str = "2026-01-03T00:00:00Z";
/// Events of day 2 in [10:00, 13:00) are not sent: a 3-hour flatline.
const QUIET: (&str, &str) = ("2026-01-02T10:00:00Z", "2026-01-02T13:00:00Z");
/// This service stops sending at the start of day 2: a missing source.
const SILENCED: &str = "billing-api";

/// One sent event as the test knows it.
struct Sent {
    index: u64,
    at: Timestamp,
    v: Value,
}

impl Sent {
    fn action(&self) -> &str {
        self.v["action"].as_str().unwrap()
    }
    fn outcome(&self) -> Option<&str> {
        self.v["outcome"].as_str()
    }
    fn is_error(&self) -> bool {
        self.outcome() == Some("failure")
            || matches!(
                self.v["severity"].as_str(),
                Some("error" | "critical" | "alert" | "emergency")
            )
            || self.v.get("error").is_some()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    events: Vec<Sent>,
    system: Vec<Sent>,
    bob: String,
    reader_key: String,
    size: u64,
}

fn system_event(action: &str, actor: Value, at: &str, target: Value, details: Value) -> Value {
    json!({
        "action": action, "actor": actor, "occurred_at": at,
        "targets": [target], "source": {"service": "sealtrail"},
        "outcome": "success", "details": details,
    })
}

/// Generated events over about three days from 2026-01-01 in log
/// `default`, system-log records of day 2, users and keys in meta.db and
/// alerts in its history.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dd = DataDir::new(&data);
    dd.create_log("default", None).unwrap();
    dd.create_log("system", None).unwrap();

    let shape = sealtrail_testgen::Shape {
        mean_gap_ms: 30_000.0,
        ..Default::default()
    };
    let (quiet_from, quiet_to, day2) = (ts(QUIET.0), ts(QUIET.1), ts(DAY2));
    let mut texts = Vec::new();
    let mut events = Vec::new();
    for text in sealtrail_testgen::events_with(7, 8_000, &shape) {
        let v: Value = serde_json::from_slice(&text).unwrap();
        let at = ts(v["occurred_at"].as_str().unwrap());
        if at >= quiet_from && at < quiet_to {
            continue;
        }
        if at >= day2 && v["source"]["service"].as_str() == Some(SILENCED) {
            continue;
        }
        events.push(Sent {
            index: events.len() as u64,
            at,
            v,
        });
        texts.push(text);
    }
    let trail = Trail::open(&dd, "default", TrailOptions::default()).unwrap();
    let refs: Vec<&[u8]> = texts.iter().map(|t| t.as_slice()).collect();
    let done = trail.ingest(&refs, true).unwrap();
    assert_eq!(done.appended(), events.len());
    trail.sync_index().unwrap();
    let size = trail.log().size();
    drop(trail);

    let meta = Meta::open(&data).unwrap();
    let cli = json!({"id": "cli:test", "type": "user"});
    let hash = sealtrail_meta::hash_password("a long enough password").unwrap();
    let now = Timestamp::now();
    let mut ids = HashMap::new();
    for (name, role) in [("alice", Role::Admin), ("bob", Role::Admin), ("carol", Role::Viewer)] {
        let u = meta.create_user(name, role, None, &hash, now, &cli).unwrap();
        ids.insert(name, u.id);
    }
    let (reader, _) = meta
        .create_key(Scope::Read, None, "reader", &now.to_string(), |k| {
            sealtrail_meta::key_event(cli.clone(), "api_key.created", k)
        })
        .unwrap();
    meta.create_key(Scope::Admin, None, "ops", &now.to_string(), |k| {
        sealtrail_meta::key_event(cli.clone(), "api_key.created", k)
    })
    .unwrap();
    meta.create_owned_key(
        Scope::Read,
        None,
        "carol's",
        Some(&ids["carol"]),
        &now.to_string(),
        |k| sealtrail_meta::key_event(cli.clone(), "api_key.created", k),
    )
    .unwrap();
    meta.set_user_disabled("carol", true, &cli).unwrap();
    {
        let conn = meta.lock();
        for (i, (log, rule, at)) in [
            ("default", "failed-logins", "2026-01-02T03:00:00Z"),
            ("default", "failed-logins", "2026-01-02T09:30:00Z"),
            ("default", "spike", "2026-01-02T15:00:00Z"),
            ("default", "spike", "2026-01-01T15:00:00Z"),
            ("other", "spike", "2026-01-02T15:00:00Z"),
        ]
        .into_iter()
        .enumerate()
        {
            conn.execute(
                &format!(
                    "INSERT INTO alerts (id, log, rule, condition, level, grp, status, summary, fired_at, resolved_at, silenced, seq)
                     VALUES ('a{i}', '{log}', '{rule}', 'frequency', 'warning', '{{}}', 'fired', '{rule} on {log}', '{at}', NULL, 0, {i})"
                ),
                [],
            )
            .unwrap();
        }
    }

    // The system log: the outbox of the changes above (stamped now), then
    // what day 2 recorded.
    let system_trail = Trail::open(&dd, "system", TrailOptions::default()).unwrap();
    sealtrail_meta::drain_outbox(&meta, &system_trail).unwrap();
    let first = system_trail.log().size();
    let bob = json!({"id": format!("user:{}", ids["bob"]), "type": "user", "name": "bob"});
    let log_target = json!({"type": "log", "id": "default"});
    let mut system_events = Vec::new();
    for (i, action) in ["user.created", "user.created"].iter().enumerate() {
        system_events.push(system_event(
            action,
            bob.clone(),
            &format!("2026-01-02T0{}:00:00Z", i + 1),
            json!({"type": "user", "id": format!("u{i}")}),
            json!({}),
        ));
    }
    for i in 0..3 {
        system_events.push(system_event(
            "trail.queried",
            bob.clone(),
            &format!("2026-01-02T14:0{i}:00Z"),
            log_target.clone(),
            json!({}),
        ));
    }
    for i in 0..4 {
        let mut e = system_event(
            "user.sign_in_failed",
            json!({"id": "anonymous", "type": "user"}),
            &format!("2026-01-02T16:0{i}:00Z"),
            json!({"type": "user", "id": "mallory"}),
            json!({}),
        );
        e["outcome"] = json!("failure");
        system_events.push(e);
    }
    for i in 0..2 {
        system_events.push(system_event(
            "user.signed_in",
            bob.clone(),
            &format!("2026-01-02T17:0{i}:00Z"),
            json!({"type": "user", "id": ids["bob"]}),
            json!({}),
        ));
    }
    system_events.push(system_event(
        "trail.exported",
        json!({"id": format!("key:{}", reader.id), "type": "service", "name": "reader"}),
        "2026-01-02T18:00:00Z",
        log_target.clone(),
        json!({}),
    ));
    system_events.push(system_event(
        "log.verified",
        bob.clone(),
        "2026-01-02T20:00:00Z",
        log_target,
        json!({"result": "intact", "entries": size, "checkpoint_size": size, "findings": []}),
    ));
    let texts: Vec<String> = system_events.iter().map(Value::to_string).collect();
    let refs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
    system_trail.ingest(&refs, true).unwrap();
    system_trail.sync_index().unwrap();
    drop(system_trail);
    let system = system_events
        .into_iter()
        .enumerate()
        .map(|(i, v)| Sent {
            index: first + i as u64,
            at: ts(v["occurred_at"].as_str().unwrap()),
            v,
        })
        .collect();
    Fixture {
        _dir: dir,
        data,
        events,
        system,
        bob: ids["bob"].clone(),
        reader_key: reader.id,
        size,
    }
}

fn request(kind: ReportKind, since: Option<&str>, until: Option<&str>) -> Request {
    Request {
        kind,
        log: "default".into(),
        since: since.map(ts),
        until: until.map(ts),
        now: ts("2026-01-03T00:00:00Z"),
        name: None,
    }
}

/// Counts as the report ranks them: count descending, then value.
fn ranked(counts: HashMap<String, u64>, top: usize) -> Vec<Value> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter()
        .take(top)
        .map(|(value, count)| json!({"value": value, "count": count}))
        .collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

/// `*` is any run of characters, as the report's action globs.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            text.starts_with(head) && (0..=text.len() - head.len()).any(|i| glob(rest, &text[head.len() + i..]))
        }
    }
}

#[test]
fn a_days_summary_matches_a_scan_of_the_events() {
    let f = fixture();
    let report = generate(&f.data, &request(ReportKind::Summary, Some(DAY2), Some(DAY3))).unwrap();
    let j = json_of(&report);
    let day: Vec<&Sent> = f
        .events
        .iter()
        .filter(|e| e.at >= ts(DAY2) && e.at < ts(DAY3))
        .collect();
    assert!(day.len() > 2_000, "{}", day.len());

    assert_eq!(j["report"], "summary");
    assert_eq!(j["total"], day.len() as u64);
    assert_eq!(j["empty"], false);
    let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
    let mut actors: HashMap<String, u64> = HashMap::new();
    let mut targets: HashMap<String, u64> = HashMap::new();
    let mut durations: HashMap<String, Vec<f64>> = HashMap::new();
    let mut hours = [0u64; 24];
    for e in &day {
        *by_action.entry(e.action().to_string()).or_default() += 1;
        if let Some(a) = e.v["actor"]["id"].as_str() {
            *actors.entry(a.to_string()).or_default() += 1;
        }
        for t in e.v["targets"].as_array().into_iter().flatten() {
            let key = format!("{}:{}", t["type"].as_str().unwrap(), t["id"].as_str().unwrap());
            *targets.entry(key).or_default() += 1;
        }
        if let Some(d) = e.v["duration_ms"].as_f64() {
            durations.entry(e.action().to_string()).or_default().push(d);
        }
        hours[((e.at.as_second() - ts(DAY2).as_second()) / 3600) as usize] += 1;
    }
    assert_eq!(j["by_action"], json!(by_action));
    assert_eq!(j["distinct_actors"], actors.len() as u64);
    assert_eq!(j["top_actors"], json!(ranked(actors, 10)));
    assert_eq!(j["top_targets"], json!(ranked(targets, 10)));
    let top_actions: HashMap<String, u64> = by_action.clone().into_iter().collect();
    assert_eq!(j["top_actions"], json!(ranked(top_actions, 10)));

    // Volume: every hour of the day, the quiet ones as zero.
    assert_eq!(j["bucket"], "hour");
    let volume = j["volume"].as_array().unwrap();
    assert_eq!(volume.len(), 24);
    for (h, point) in volume.iter().enumerate() {
        assert_eq!(point["start"], format!("2026-01-02T{h:02}:00:00Z"));
        assert_eq!(point["count"], hours[h], "hour {h}");
    }
    assert_eq!(&hours[10..13], &[0, 0, 0]);

    // Failures (outcome failure) and errors, with the newest examples.
    let failures: Vec<&&Sent> = day.iter().filter(|e| e.outcome() == Some("failure")).collect();
    assert_eq!(j["failures"]["count"], failures.len() as u64);
    let newest: Vec<u64> = failures.iter().rev().take(5).map(|e| e.index).collect();
    let shown: Vec<u64> = j["failures"]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(shown, newest);
    let example = &j["failures"]["examples"][0];
    let sent = &f.events[newest[0] as usize];
    assert_eq!(example["action"], sent.v["action"]);
    assert_eq!(example["error_type"], sent.v["error"]["type"]);
    let errors = day.iter().filter(|e| e.is_error()).count();
    assert_eq!(j["errors"]["count"], errors as u64);

    // Durations: exact nearest-rank percentiles per action.
    let perf = j["performance"].as_array().unwrap();
    assert_eq!(perf.len(), durations.len().min(30));
    for p in perf {
        let mut d = durations[p["action"].as_str().unwrap()].clone();
        d.sort_by(f64::total_cmp);
        assert_eq!(p["count"], d.len() as u64);
        assert_eq!(p["min"].as_f64().unwrap(), d[0]);
        assert_eq!(p["max"].as_f64().unwrap(), *d.last().unwrap());
        for (k, q) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
            assert_eq!(p[k].as_f64().unwrap(), percentile(&d, q), "{} {k}", p["action"]);
        }
        assert_eq!(p["exact"], true);
    }

    // Alerts of this log fired in the period, from meta.db.
    assert_eq!(j["alerts"]["available"], true);
    assert_eq!(j["alerts"]["fired"], 3);
    assert_eq!(
        j["alerts"]["by_rule"],
        json!([{"value": "failed-logins", "count": 2}, {"value": "spike", "count": 1}])
    );

    // The checkpoint it was computed from, and the verification status.
    let (size, root) = signed_root(&f.data, "default");
    assert_eq!(size, f.size);
    assert_eq!(j["checkpoint"]["size"], size);
    assert_eq!(j["checkpoint"]["root_hash"], root);
    assert_eq!(j["checkpoint"]["signature_valid"], true);
    assert_eq!(j["verification"]["last"]["result"], "intact");
    assert_eq!(j["verification"]["last"]["at"], "2026-01-02T20:00:00Z");
    assert_eq!(j["verification"]["consistent_with_verified"], true);
}

#[test]
fn top_targets_of_the_whole_log_match_a_scan() {
    // No period: every document of every segment matches, the facet's
    // other path.
    let f = fixture();
    let report = generate(&f.data, &request(ReportKind::Summary, None, None)).unwrap();
    let j = json_of(&report);
    let mut targets: HashMap<String, u64> = HashMap::new();
    for e in &f.events {
        for t in e.v["targets"].as_array().into_iter().flatten() {
            let key = format!("{}:{}", t["type"].as_str().unwrap(), t["id"].as_str().unwrap());
            *targets.entry(key).or_default() += 1;
        }
    }
    assert_eq!(j["total"], f.events.len() as u64);
    assert_eq!(j["bucket"], "day");
    assert_eq!(j["top_targets"], json!(ranked(targets, 10)));
    assert_eq!(j["alerts"]["fired"], 4);
}

/// The PCI DSS 10.2.1 mapping as docs/reports.md states it.
const APPLICATION: &[(&str, &[&str])] = &[
    (
        "admin_actions",
        &[
            "admin.*",
            "settings.updated",
            "user.created",
            "user.deleted",
            "user.invited",
            "user.role_granted",
            "user.role_revoked",
        ],
    ),
    ("audit_log_access", &["audit_log.*"]),
    (
        "authentication_failures",
        &["*.login_failed", "auth.failed", "user.locked"],
    ),
    (
        "authentication_successes",
        &["user.login", "user.logout", "auth.succeeded"],
    ),
    (
        "credential_changes",
        &[
            "user.created",
            "user.role_granted",
            "user.role_revoked",
            "user.password_changed",
            "user.password_reset",
            "user.mfa_*",
            "api_key.created",
            "api_key.revoked",
        ],
    ),
    (
        "logging_changes",
        &["audit_log.started", "audit_log.stopped", "logging.*"],
    ),
];

#[test]
fn compliance_classes_checks_and_gaps_match_the_events() {
    let f = fixture();
    let report = generate(&f.data, &request(ReportKind::Compliance, Some(DAY2), Some(DAY3))).unwrap();
    let j = json_of(&report);
    let day: Vec<&Sent> = f
        .events
        .iter()
        .filter(|e| e.at >= ts(DAY2) && e.at < ts(DAY3))
        .collect();
    assert_eq!(j["total"], day.len() as u64);
    // What the system log recorded on day 2, by class.
    let system: HashMap<&str, u64> = HashMap::from([
        ("admin_actions", 2),
        ("audit_log_access", 5),
        ("authentication_failures", 4),
        ("authentication_successes", 2),
        ("credential_changes", 2),
        ("logging_changes", 0),
    ]);
    let classes = j["classes"].as_array().unwrap();
    assert_eq!(classes.len(), APPLICATION.len());
    for (class, (id, globs)) in classes.iter().zip(APPLICATION) {
        assert_eq!(class["id"], *id);
        let matching: Vec<&&Sent> = day
            .iter()
            .filter(|e| globs.iter().any(|g| glob(g, e.action())))
            .collect();
        let app = matching.len() as u64;
        assert_eq!(class["actions"][0]["log"], "default");
        assert_eq!(class["actions"][0]["count"], app, "{id}");
        assert_eq!(class["actions"][1]["log"], "system");
        assert_eq!(class["actions"][1]["count"], system[id], "{id}");
        assert_eq!(class["count"], app + system[id], "{id}");
        let failed = matching.iter().filter(|e| e.outcome() == Some("failure")).count() as u64;
        let system_failed = if *id == "authentication_failures" { 4 } else { 0 };
        assert_eq!(class["failures"], failed + system_failed, "{id}");
        assert_eq!(
            class["samples"].as_array().unwrap().len() as u64,
            (app + system[id]).min(5),
            "{id}"
        );
    }
    // The generated data has logins, failed logins and credential changes.
    assert!(classes[2]["actions"][0]["count"].as_u64().unwrap() > 10);
    assert!(classes[3]["actions"][0]["count"].as_u64().unwrap() > 100);
    let sample = &classes[2]["samples"][0];
    assert!(sample["action"] == "user.sign_in_failed" || sample["action"].as_str().unwrap().ends_with(".login_failed"));

    // 10.3: the verification the system log holds, the checkpoint checked.
    assert_eq!(j["protection"]["last"]["result"], "intact");
    assert_eq!(j["protection"]["last"]["checkpoint_size"], f.size);
    assert_eq!(j["protection"]["signature_valid"], true);
    assert_eq!(j["protection"]["consistent_with_verified"], true);

    // Gaps: the three quiet hours, and the service that went silent.
    assert_eq!(j["gaps"]["empty_hours"], 3);
    assert_eq!(
        j["gaps"]["flatlines"],
        json!([{"start": QUIET.0, "end": QUIET.1, "hours": 3}])
    );
    let before = f
        .events
        .iter()
        .filter(|e| e.at >= ts(DAY1) && e.at < ts(DAY2) && e.v["source"]["service"] == SILENCED)
        .count() as u64;
    assert!(before > 0);
    assert_eq!(
        j["gaps"]["missing_sources"],
        json!([{"value": SILENCED, "count": before}])
    );
}

#[test]
fn access_review_finds_unused_rights_and_keys_of_disabled_users() {
    let f = fixture();
    let report = generate(&f.data, &request(ReportKind::AccessReview, None, None)).unwrap();
    let j = json_of(&report);
    let users = j["users"].as_array().unwrap();
    let user = |name: &str| users.iter().find(|u| u["name"] == name).unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(user("bob")["id"], f.bob);
    assert_eq!(user("bob")["role"], "admin");
    assert_eq!(user("bob")["admin_actions"], 2);
    assert_eq!(user("bob")["trail_reads"], 3);
    assert_eq!(user("bob")["last_activity"], "2026-01-02T20:00:00Z");
    assert_eq!(user("bob")["unused_rights"], json!([]));
    assert_eq!(
        user("alice")["unused_rights"],
        json!([
            "admin role: no administrative action in 90 days",
            "no sign-in and no recorded activity in 90 days"
        ])
    );
    assert_eq!(user("carol")["disabled"], true);
    assert_eq!(user("carol")["active_keys"], 1);
    assert_eq!(
        user("carol")["unused_rights"],
        json!(["disabled, still owns 1 active API key(s)"])
    );
    let keys = j["keys"].as_array().unwrap();
    let key = |name: &str| keys.iter().find(|k| k["name"] == name).unwrap();
    assert_eq!(key("reader")["id"], f.reader_key);
    assert_eq!(key("reader")["last_used"], "2026-01-02T18:00:00Z");
    assert_eq!(key("reader")["unused_rights"], json!([]));
    assert_eq!(
        key("ops")["unused_rights"],
        json!(["admin scope: no administrative action in 90 days"])
    );
    assert_eq!(key("carol's")["owner"], "carol");
    assert_eq!(
        key("carol's")["unused_rights"],
        json!(["active key of a disabled user", "read scope: not used in 90 days"])
    );
    assert_eq!(j["findings"].as_array().unwrap().len(), 6);
    assert_eq!(j["checkpoint"]["size"], f.size);
    let _ = &f.system;
}

#[test]
fn a_key_used_only_for_ingest_shows_its_recorded_last_use() {
    let f = fixture();
    let meta = Meta::open(&f.data).unwrap();
    let cli = json!({"id": "cli:test", "type": "user"});
    let created = ts("2026-01-01T00:00:00Z").to_string();
    let ingest_key = |name: &str| {
        meta.create_key(Scope::Ingest, None, name, &created, |k| {
            sealtrail_meta::key_event(cli.clone(), "api_key.created", k)
        })
        .unwrap()
        .0
        .id
    };
    let (sender, spare, late) = (ingest_key("sender"), ingest_key("spare"), ingest_key("late"));
    // What the server records: the key's last use, in Unix seconds; a
    // later record never moves it back.
    let at = |s: &str| ts(s).as_second();
    meta.record_key_use(&[(sender.clone(), at("2026-01-02T21:07:00Z"))])
        .unwrap();
    meta.record_key_use(&[
        (sender.clone(), at("2026-01-02T08:00:00Z")),
        (late.clone(), at("2026-01-05T00:00:00Z")),
    ])
    .unwrap();
    // The reader key's recorded use is older than its system-log record.
    meta.record_key_use(&[(f.reader_key.clone(), at("2026-01-01T06:00:00Z"))])
        .unwrap();
    drop(meta);

    let j = json_of(&generate(&f.data, &request(ReportKind::AccessReview, None, None)).unwrap());
    let keys = j["keys"].as_array().unwrap();
    let key = |id: &str| keys.iter().find(|k| k["id"] == id).unwrap();
    assert_eq!(key(&sender)["last_used"], "2026-01-02T21:07:00Z");
    assert_eq!(key(&spare)["last_used"], Value::Null);
    // Used after the window's end: its use within it is unknown.
    assert_eq!(key(&late)["last_used"], Value::Null);
    assert_eq!(key(&f.reader_key)["last_used"], "2026-01-02T18:00:00Z");

    // A read key without system-log activity but a recorded use in the
    // window is not reported unused.
    let meta = Meta::open(&f.data).unwrap();
    let (quiet, _) = meta
        .create_key(Scope::Read, None, "quiet reader", &created, |k| {
            sealtrail_meta::key_event(cli.clone(), "api_key.created", k)
        })
        .unwrap();
    let unused = |j: &Value| {
        j["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == quiet.id)
            .unwrap()["unused_rights"]
            .clone()
    };
    drop(meta);
    let j = json_of(&generate(&f.data, &request(ReportKind::AccessReview, None, None)).unwrap());
    assert_eq!(unused(&j), json!(["read scope: not used in 90 days"]));
    Meta::open(&f.data)
        .unwrap()
        .record_key_use(&[(quiet.id.clone(), at("2026-01-02T12:00:00Z"))])
        .unwrap();
    let j = json_of(&generate(&f.data, &request(ReportKind::AccessReview, None, None)).unwrap());
    assert_eq!(unused(&j), json!([]));
}

#[test]
fn an_empty_period_gives_an_empty_report_and_bad_arguments_are_named() {
    let f = fixture();
    let report = generate(
        &f.data,
        &request(
            ReportKind::Summary,
            Some("2030-01-01T00:00:00Z"),
            Some("2030-01-02T00:00:00Z"),
        ),
    )
    .unwrap();
    let j = json_of(&report);
    assert_eq!(j["total"], 0);
    assert_eq!(j["empty"], true);
    assert_eq!(j["by_action"], json!({}));
    assert_eq!(j["volume"].as_array().unwrap().len(), 24);
    assert!(j["volume"].as_array().unwrap().iter().all(|p| p["count"] == 0));
    assert_eq!(j["checkpoint"]["size"], f.size);
    let html = String::from_utf8(render(&report, Format::Html).unwrap()).unwrap();
    assert!(html.contains("No events in this period"), "{html}");
    assert!(render(&report, Format::Xlsx).unwrap().starts_with(b"PK"));
    let compliance = generate(
        &f.data,
        &request(
            ReportKind::Compliance,
            Some("2030-01-01T00:00:00Z"),
            Some("2030-01-02T00:00:00Z"),
        ),
    )
    .unwrap();
    let j = json_of(&compliance);
    assert_eq!(j["empty"], true);
    assert_eq!(j["gaps"]["empty_hours"], 24);

    let e = "weekly".parse::<ReportKind>().unwrap_err().to_string();
    assert!(e.starts_with("TYPE: \"weekly\" is not a report type"), "{e}");
    let e = "pdf".parse::<Format>().unwrap_err().to_string();
    assert!(e.starts_with("--format: \"pdf\""), "{e}");
    let e = generate(&f.data, &request(ReportKind::Summary, Some(DAY3), Some(DAY2)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--since") && e.contains("--until"), "{e}");
    let mut other = request(ReportKind::Summary, None, None);
    other.log = "nope".into();
    let e = generate(&f.data, &other).unwrap_err().to_string();
    assert!(e.starts_with("log \"nope\""), "{e}");
}

// --- the HTML in a real browser -----------------------------------------

#[test]
fn each_report_renders_and_prints_in_a_real_browser() {
    let f = fixture();
    let out = screens();
    for (kind, since, until, sections, min_svgs) in [
        (
            ReportKind::Summary,
            Some(DAY2),
            Some(DAY3),
            &["volume", "top", "failures", "performance", "alerts"][..],
            3,
        ),
        (
            ReportKind::Compliance,
            Some(DAY2),
            Some(DAY3),
            &["classes", "protection", "gaps"][..],
            1,
        ),
        (
            ReportKind::AccessReview,
            None,
            None,
            &["findings", "users", "keys"][..],
            0,
        ),
    ] {
        let report = generate(&f.data, &request(kind, since, until)).unwrap();
        let html = String::from_utf8(render(&report, Format::Html).unwrap()).unwrap();
        // Self-contained: no script, nothing fetched from elsewhere.
        assert!(!html.contains("<script"), "{kind}");
        assert_eq!(
            html.matches("http").count(),
            html.matches("http://www.w3.org/2000/svg").count(),
            "{kind}: a link or resource outside the file"
        );
        let seen = in_browser(&html, &out, kind.as_str());
        for s in sections {
            assert!(
                seen["sections"].as_array().unwrap().contains(&json!(s)),
                "{kind}: no section {s}: {seen}"
            );
        }
        assert!(seen["svgs"].as_u64().unwrap() >= min_svgs, "{kind}: {seen}");
        let pdf = std::fs::read(out.join(format!("{kind}.pdf"))).unwrap();
        assert!(pdf.starts_with(b"%PDF-"), "{kind}");
        let pages = count(&pdf, b"/Type /Page\n") + count(&pdf, b"/Type /Page/") + count(&pdf, b"/Type /Page>");
        if kind == ReportKind::Summary {
            // Sections that start a page: at least four pages.
            assert!(pages >= 4, "{kind}: {pages} pages");
        }
        let png = std::fs::read(out.join(format!("{kind}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{kind}");
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// --- the XLSX read by openpyxl --------------------------------------------

#[test]
fn the_workbooks_open_in_openpyxl_with_charts_and_the_same_figures() {
    let f = fixture();
    let dir = screens();
    let report = generate(&f.data, &request(ReportKind::Summary, Some(DAY2), Some(DAY3))).unwrap();
    let j = json_of(&report);
    let path = dir.join("summary.xlsx");
    std::fs::write(&path, render(&report, Format::Xlsx).unwrap()).unwrap();
    let book = openpyxl(&path);
    let names: Vec<&str> = book["sheets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Report",
            "Volume",
            "Actions",
            "Actors",
            "Targets",
            "Outcomes",
            "Failures",
            "Performance",
            "Alerts"
        ]
    );
    for s in book["sheets"].as_array().unwrap() {
        assert_eq!(s["freeze_panes"], "A2", "{}", s["name"]);
        assert!(s["auto_filter"].as_str().unwrap().starts_with("A1:"), "{}", s["name"]);
    }
    // Native charts, on the series and rankings.
    let volume = sheet(&book, "Volume");
    assert_eq!(volume["charts"][0]["kind"], "BarChart");
    assert_eq!(volume["charts"][0]["type"], "col");
    assert_eq!(volume["charts"][0]["series"][0]["values"], "Volume!$B$2:$B$25");
    assert_eq!(sheet(&book, "Actions")["charts"][0]["type"], "bar");
    assert_eq!(sheet(&book, "Outcomes")["charts"][0]["kind"], "PieChart");
    assert_eq!(sheet(&book, "Performance")["charts"].as_array().unwrap().len(), 1);
    // Values and number formats.
    let rows = volume["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 25);
    for (h, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], format!("2026-01-02T{h:02}:00:00"));
        assert_eq!(
            row[1].as_f64().unwrap() as u64,
            j["volume"][h]["count"].as_u64().unwrap()
        );
    }
    assert_eq!(volume["formats"][1][1], "#,##0");
    let actions = sheet(&book, "Actions")["rows"].as_array().unwrap();
    assert_eq!(actions.len() - 1, j["by_action"].as_object().unwrap().len());
    for row in &actions[1..] {
        assert_eq!(
            row[1].as_f64().unwrap() as u64,
            j["by_action"][row[0].as_str().unwrap()].as_u64().unwrap()
        );
    }
    let facts = sheet(&book, "Report")["rows"].as_array().unwrap();
    let fact = |name: &str| facts.iter().find(|r| r[0] == name).unwrap()[1].clone();
    assert_eq!(fact("total").as_f64().unwrap() as u64, j["total"].as_u64().unwrap());
    assert_eq!(fact("checkpoint.root_hash"), j["checkpoint"]["root_hash"]);
    assert_eq!(fact("checkpoint.size").as_f64().unwrap() as u64, f.size);

    let compliance = generate(&f.data, &request(ReportKind::Compliance, Some(DAY2), Some(DAY3))).unwrap();
    let cj = json_of(&compliance);
    let path = dir.join("compliance.xlsx");
    std::fs::write(&path, render(&compliance, Format::Xlsx).unwrap()).unwrap();
    let book = openpyxl(&path);
    let classes = sheet(&book, "Classes");
    assert_eq!(classes["charts"][0]["type"], "bar");
    for (row, class) in classes["rows"].as_array().unwrap()[1..]
        .iter()
        .zip(cj["classes"].as_array().unwrap())
    {
        assert_eq!(
            row[0],
            format!(
                "{} {}",
                class["requirement"].as_str().unwrap(),
                class["id"].as_str().unwrap()
            )
        );
        assert_eq!(row[1].as_f64().unwrap() as u64, class["count"].as_u64().unwrap());
    }
    assert_eq!(sheet(&book, "Gaps")["rows"][1][2].as_f64().unwrap(), 3.0);

    let access = generate(&f.data, &request(ReportKind::AccessReview, None, None)).unwrap();
    let path = dir.join("access-review.xlsx");
    std::fs::write(&path, render(&access, Format::Xlsx).unwrap()).unwrap();
    let book = openpyxl(&path);
    assert_eq!(sheet(&book, "Users")["rows"].as_array().unwrap().len(), 4);
    assert_eq!(sheet(&book, "Findings")["rows"].as_array().unwrap().len(), 7);
}

// --- delivery through a real SMTP server and a real HTTP receiver -------

/// scripts/smtp-sink on a free loopback port, killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let script = repo_root().join("scripts/smtp-sink");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(&script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "smtp-sink did not start");
        SmtpSink { child, port, dir }
    }

    fn mail(&self, n: u32) -> Vec<u8> {
        let eml = self.dir.path().join(format!("{n}.eml"));
        for _ in 0..200 {
            if eml.exists() {
                return std::fs::read(&eml).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {}", eml.display());
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_by_mail_with_the_workbook_and_by_webhook_as_json() {
    use mail_parser::MimeHeaders;
    use sealtrail_alert::net::Destinations;
    use sealtrail_alert::notify::http_client;
    use sealtrail_alert::spec::{ChannelKind, ChannelSpec, SmtpSecurity};

    let f = tokio::task::spawn_blocking(fixture).await.unwrap();
    let data = f.data.clone();
    let report = tokio::task::spawn_blocking(move || {
        generate(&data, &request(ReportKind::Summary, Some(DAY2), Some(DAY3))).unwrap()
    })
    .await
    .unwrap();
    let http = http_client(
        Duration::from_secs(10),
        Destinations::new(vec!["127.0.0.0/8".parse().unwrap()]),
    )
    .unwrap();

    // Mail: the HTML as body, the workbook attached.
    let sink = tokio::task::spawn_blocking(SmtpSink::start).await.unwrap();
    let mail = ChannelSpec {
        name: "compliance-team".into(),
        kind: ChannelKind::Email {
            host: "127.0.0.1".into(),
            port: Some(sink.port),
            security: SmtpSecurity::Plain,
            username: None,
            password: None,
            from: "sealtrail@example.test".into(),
            to: vec!["audit@example.test".into()],
        },
    };
    let sent = sealtrail_report::deliver(&report, &mail, &http, 1_767_398_400)
        .await
        .unwrap();
    assert_eq!(sent.status, 250);
    let raw = sink.mail(1);
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.subject().unwrap(),
        "Summary of log default (2026-01-02 to 2026-01-03)"
    );
    let html = parsed.body_html(0).unwrap();
    let expected = String::from_utf8(render(&report, Format::Html).unwrap()).unwrap();
    // SMTP carries lines ending in CRLF.
    assert_eq!(html.replace("\r\n", "\n").trim_end(), expected.trim_end());
    let text = parsed.body_text(0).unwrap();
    assert!(text.contains(&report.checkpoint.root_hash), "{text}");
    let attachment = parsed.attachment(0).unwrap();
    assert_eq!(
        attachment.attachment_name().unwrap(),
        "sealtrail-summary-default-2026-01-03.xlsx"
    );
    let workbook = sink.dir.path().join("attached.xlsx");
    std::fs::write(&workbook, attachment.contents()).unwrap();
    let book = tokio::task::spawn_blocking(move || openpyxl(&workbook)).await.unwrap();
    let j = json_of(&report);
    let facts = sheet(&book, "Report")["rows"].as_array().unwrap().clone();
    let total = facts.iter().find(|r| r[0] == "total").unwrap()[1].as_f64().unwrap();
    assert_eq!(total as u64, j["total"].as_u64().unwrap());

    // Webhook: the JSON, signed with the channel's secret.
    type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let keep = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body.to_vec()));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let hook = ChannelSpec {
        name: "siem".into(),
        kind: ChannelKind::Webhook {
            url,
            headers: [("X-Team".to_string(), "audit".to_string())].into(),
            secret: Some("hook secret".into()),
            body_template: None,
            content_type: None,
        },
    };
    let sent = sealtrail_report::deliver(&report, &hook, &http, 1_767_398_400)
        .await
        .unwrap();
    assert_eq!(sent.status, 204);
    let (headers, body) = seen.lock().unwrap().pop().unwrap();
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, j);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["sealtrail-report"], "summary");
    assert_eq!(headers["x-team"], "audit");
    assert_eq!(headers["sealtrail-timestamp"], "1767398400");
    let expected = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"hook secret").unwrap();
        mac.update(b"1767398400.");
        mac.update(&body);
        let bytes = mac.finalize().into_bytes();
        format!("v1={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    };
    assert_eq!(headers["sealtrail-signature"], expected.as_str());

    // A chat channel cannot carry a report: a permanent, named refusal.
    let slack = ChannelSpec {
        name: "chat".into(),
        kind: ChannelKind::Slack {
            url: "http://127.0.0.1:9/x".into(),
        },
    };
    let e = sealtrail_report::deliver(&report, &slack, &http, 0).await.unwrap_err();
    assert!(!e.retryable());
    assert_eq!(
        e.to_string(),
        "channel chat: a slack channel cannot carry a report; use an email or webhook channel"
    );
    let _ = HashSet::<u8>::new();
}
