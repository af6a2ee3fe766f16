//! The alert evaluator across restarts, driven pass by pass on a real data
//! directory: a restart is dropping the `App` and opening it again.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use sealtrail_alert::store::{self, Origin};
use sealtrail_alert::RuleSpec;
use sealtrail_meta::alerts::{put_rule, Put};
use sealtrail_server::alerts::Evaluator;
use sealtrail_server::{App, Config};
use serde_json::json;

fn open(data: &Path) -> Arc<App> {
    App::open(Config {
        data_dir: data.to_path_buf(),
        ..Config::default()
    })
    .unwrap()
}

fn rule(spec: serde_json::Value) -> RuleSpec {
    serde_json::from_value(spec).unwrap()
}

fn ingest(app: &App, log: &str, n: usize) {
    let trail = app.open_or_create(log).unwrap();
    let events: Vec<String> = (0..n)
        .map(|_| json!({"action": "job.heartbeat", "actor": {"id": "cron"}}).to_string())
        .collect();
    let inputs: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
    trail.ingest(&inputs, true).unwrap();
}

fn alerts(app: &App) -> Vec<(String, String)> {
    store::list_alerts(&app.meta.lock(), false, 100, None)
        .unwrap()
        .into_iter()
        .map(|a| (a.rule, a.status))
        .collect()
}

#[test]
fn a_rule_changed_while_the_server_was_down_ends_its_firing_alert_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let actor = json!({"id": "test", "type": "user"});
    let busy = json!({"name": "busy", "condition": {"type": "frequency", "threshold": 2, "window": "1h"}});
    {
        let app = open(&data);
        put_rule(&app.meta, &rule(busy.clone()), Origin::Api, Put::Upsert, &actor).unwrap();
        let mut evaluator = Evaluator::new(app.clone());
        evaluator.pass().unwrap();
        ingest(&app, "default", 2);
        evaluator.pass().unwrap();
        assert_eq!(alerts(&app), [("busy".to_string(), "firing".to_string())]);
    }
    // Stopped: the threshold changes (as the CLI or the config file would).
    {
        let app = open(&data);
        let mut stricter = busy.clone();
        stricter["condition"]["threshold"] = json!(10);
        put_rule(&app.meta, &rule(stricter), Origin::Api, Put::Upsert, &actor).unwrap();
    }
    let app = open(&data);
    Evaluator::new(app.clone()).pass().unwrap();
    assert_eq!(alerts(&app), [("busy".to_string(), "resolved".to_string())]);
}

#[test]
fn a_log_nobody_opens_after_a_restart_is_still_watched_for_silence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let actor = json!({"id": "test", "type": "user"});
    {
        let app = open(&data);
        let quiet = json!({"name": "heartbeat", "condition": {"type": "flatline", "threshold": 1, "window": "300ms"},
                           "logs": ["jobs"]});
        put_rule(&app.meta, &rule(quiet), Origin::Api, Put::Upsert, &actor).unwrap();
        ingest(&app, "jobs", 1);
        Evaluator::new(app.clone()).pass().unwrap();
        assert!(alerts(&app).is_empty());
    }
    // Restarted; nobody asks for the log "jobs", nothing arrives.
    let app = open(&data);
    assert!(!app.open_trails().iter().any(|(name, _)| name == "jobs"));
    let mut evaluator = Evaluator::new(app.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alerts(&app).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the flatline never fired");
        evaluator.pass().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(alerts(&app), [("heartbeat".to_string(), "firing".to_string())]);
}
