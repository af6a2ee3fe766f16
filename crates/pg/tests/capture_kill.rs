//! A drain killed with SIGKILL at random points, again and again, while
//! writers keep changing the database; then a final drain. Every change
//! must be in the trail exactly once.
//!
//! The drainer is this test run again as a child process (the environment
//! variable below tells it to drain once and exit), so that a kill lands
//! in a real process with a real trail open.

mod capture_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use capture_support::{drain_until_empty, events, open_trail, Db};
use sealtrail_pg::capture::{install, InstallOptions, Tables};
use sealtrail_pg::drain::{drain, DrainOptions};

const CHILD: &str = "SEALTRAIL_TEST_DRAIN_CHILD";

#[test]
fn killed_drains_lose_and_duplicate_nothing() {
    // Run as the drainer child: drain once and exit.
    if let Ok(spec) = std::env::var(CHILD) {
        let (dsn, path) = spec.split_once('\t').expect("dsn TAB path");
        let trail = open_trail(std::path::Path::new(path));
        drain(dsn, &trail, &DrainOptions { batch: 25, limit: None }).expect("child drain");
        return;
    }
    let db = Db::new("kill");
    let mut c = db.client();
    c.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v int)")
        .expect("schema");
    install(
        &db.dsn(),
        &InstallOptions {
            tables: Tables::List(vec!["items".into()]),
            ..InstallOptions::default()
        },
    )
    .expect("install");
    let dir = tempfile::tempdir().expect("temp dir");
    capture_support::create_trail(dir.path());

    let mut random = capture_support::random_below();

    // Expected: every insert and every update, counted per row id.
    let mut expected: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut next_id = 0i32;
    let (mut killed_running, rounds) = (0, 12);
    for round in 0..rounds {
        let mut tx = c.transaction().expect("begin");
        for _ in 0..150 {
            tx.execute("INSERT INTO items VALUES ($1, 0)", &[&next_id])
                .expect("insert");
            expected.entry(next_id.to_string()).or_default().0 += 1;
            next_id += 1;
        }
        tx.commit().expect("commit");
        for _ in 0..30 {
            let id = random(next_id as u64) as i32;
            c.execute("UPDATE items SET v = v + 1 WHERE id = $1", &[&id])
                .expect("update");
            expected.entry(id.to_string()).or_default().1 += 1;
        }
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "killed_drains_lose_and_duplicate_nothing",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, format!("{}\t{}", db.dsn(), dir.path().display()))
            .spawn()
            .expect("spawn drain");
        std::thread::sleep(Duration::from_millis(random(150)));
        if child.try_wait().expect("poll child").is_none() {
            killed_running += 1;
        }
        child.kill().ok();
        let status = child.wait().expect("reap child");
        eprintln!("round {round}: child {status}");
    }
    assert!(
        killed_running > 0,
        "no kill landed while a drain ran; the test proved nothing"
    );

    // Final drains until the outbox is empty.
    let trail = open_trail(dir.path());
    drain_until_empty(&db.dsn(), &trail);

    let ev = events(&trail);
    let mut found: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    for e in &ev {
        let key = e["idempotency_key"].as_str().expect("key").to_string();
        assert!(keys.insert(key.clone()), "key {key} stored twice");
        let id = e["targets"][0]["id"].as_str().expect("target id").to_string();
        match e["action"].as_str().expect("action") {
            "pg.insert" => found.entry(id).or_default().0 += 1,
            "pg.update" => found.entry(id).or_default().1 += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(found, expected);
    eprintln!(
        "{} events, {killed_running} of {rounds} drains killed while running",
        ev.len()
    );
}
