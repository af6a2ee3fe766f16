//! `sealtrail pg install --mode logical`, `pg sync`, `pg status` and
//! `pg uninstall` from the command line, on a throw-away PostgreSQL
//! cluster with `wal_level = logical` (the shared server runs with
//! `replica`): changes with the application's actor synced once, the
//! slot's state shown, and a lost slot refused with its name.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

mod support;
use sealtrail_testgen::cluster::Cluster;
use support::cli;

fn events(data: &Path) -> Vec<Value> {
    let (code, out, err) = cli(
        data,
        &[
            "query",
            "--action",
            "pg.*",
            "--format",
            "jsonl",
            "--oldest-first",
            "--limit",
            "100",
        ],
    );
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn logical_mode_from_install_to_uninstall() {
    let pg = Cluster::new(&["wal_level = logical"]);
    let mut c = pg.client();
    c.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v int); ALTER TABLE items REPLICA IDENTITY FULL")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_eq!(cli(&data, &["init"]).0, 0);
    let dsn = pg.dsn();

    let (code, out, err) = cli(
        &data,
        &["pg", "install", "--mode", "logical", "--dsn", &dsn, "--tables", "items"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mode logical (replication slot sealtrail_"), "{out}");

    c.batch_execute(
        "BEGIN; SELECT sealtrail.set_actor('u-17', 'refund'); INSERT INTO items VALUES (1, 1); UPDATE items SET v = 2; COMMIT;",
    )
    .unwrap();
    let (code, out, err) = cli(&data, &["pg", "sync", "--dsn", &dsn]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("drained 2 change(s)"), "{out}");
    let (code, out, _) = cli(&data, &["pg", "sync", "--dsn", &dsn]);
    assert_eq!(code, 0);
    assert!(out.starts_with("drained 0 change(s)"), "{out}");
    let ev = events(&data);
    let summary: Vec<(String, String, Value)> = ev
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"]["id"].as_str().unwrap().to_string(),
                e["changes"]["after"]["v"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("pg.insert".to_string(), "u-17".to_string(), Value::from(1)),
            ("pg.update".to_string(), "u-17".to_string(), Value::from(2)),
        ]
    );

    let (code, out, err) = cli(&data, &["pg", "status", "--dsn", &dsn]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mode: logical"), "{out}");
    assert!(out.contains("retained WAL"), "{out}");
    let (code, out, _) = cli(&data, &["pg", "status", "--dsn", &dsn, "--json"]);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    let slot = &status["install"]["slot"];
    assert_eq!(slot["exists"], true, "{status}");
    assert_eq!(slot["invalidated"], false, "{status}");
    assert!(slot["retained_bytes"].as_i64().unwrap() >= 0, "{status}");
    let name = slot["name"].as_str().unwrap().to_string();

    // A slot dropped behind Sealtrail's back: sync fails naming it, status
    // says so.
    c.execute("SELECT pg_drop_replication_slot($1)", &[&name]).unwrap();
    let (code, _, err) = cli(&data, &["pg", "sync", "--dsn", &dsn]);
    assert_ne!(code, 0);
    assert!(err.contains(&name) && err.contains("does not exist"), "{err}");
    let (_, out, _) = cli(&data, &["pg", "status", "--dsn", &dsn]);
    assert!(
        out.contains(&format!("ERROR: replication slot {name} does not exist")),
        "{out}"
    );

    let (code, out, err) = cli(&data, &["pg", "uninstall", "--dsn", &dsn]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("capture removed"), "{out}");
    let publications: i64 = c.query_one("SELECT count(*) FROM pg_publication", &[]).unwrap().get(0);
    assert_eq!(publications, 0);
}
