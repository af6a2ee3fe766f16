//! `sealtrail pg migrate`, `pg migrations` and `pg import-log` from the
//! command line, against the PostgreSQL server on 127.0.0.1:5432 (the
//! test command starts it): scripts applied in order and recorded as
//! events with ticket and reason, a failing script rolled back with exit
//! 1, and a server log imported once however often it is given.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

mod support;
use sealtrail_testgen::pg::TestDatabase;
use support::cli;

fn events(data: &Path, action: &str) -> Vec<Value> {
    let (code, out, err) = cli(
        data,
        &[
            "query",
            "--action",
            action,
            "--format",
            "jsonl",
            "--oldest-first",
            "--limit",
            "1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn migrations_apply_in_order_stop_at_a_failure_and_are_recorded() {
    let db = TestDatabase::new("cli_migrate");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(
        scripts.join("V1__orders.sql"),
        "CREATE TABLE orders (id int PRIMARY KEY);\n",
    )
    .unwrap();
    std::fs::write(
        scripts.join("V2__bad.sql"),
        "INSERT INTO orders VALUES (1);\nSELECT nosuch FROM orders;\n",
    )
    .unwrap();
    std::fs::write(scripts.join("V10__later.sql"), "CREATE TABLE later (id int);\n").unwrap();
    assert_eq!(cli(&data, &["init"]).0, 0);
    let dsn = db.url();
    let dir_arg = scripts.to_str().unwrap();

    let (code, out, err) = cli(
        &data,
        &[
            "pg",
            "migrate",
            "--dsn",
            &dsn,
            dir_arg,
            "--ticket",
            "OPS-7",
            "--reason",
            "orders",
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().map(|l| l.split('\t').nth(2).unwrap()).collect::<Vec<_>>(),
        ["V1__orders.sql", "V2__bad.sql", "V10__later.sql"]
    );
    assert!(events(&data, "pg.migration").is_empty(), "a dry run records nothing");

    let (code, out, err) = cli(
        &data,
        &[
            "pg", "migrate", "--dsn", &dsn, dir_arg, "--ticket", "OPS-7", "--reason", "orders",
        ],
    );
    assert_eq!(code, 1, "a failing script exits 1: {out} {err}");
    assert!(err.contains("V2__bad.sql") && err.contains("nosuch"), "{err}");

    // V1 applied, V2 rolled back (its INSERT too), V10 not attempted.
    let mut client = db.client();
    let rows: i64 = client.query_one("SELECT count(*) FROM orders", &[]).unwrap().get(0);
    assert_eq!(rows, 0);
    let later: bool = client
        .query_one("SELECT to_regclass('later') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!later);

    let recorded = events(&data, "pg.migration");
    let outcomes: Vec<(&str, &str)> = recorded
        .iter()
        .map(|e| (e["details"]["script"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("V1__orders.sql", "success"), ("V2__bad.sql", "failure")]);
    let sha = sealtrail_pg::migrate::sha256_hex(&std::fs::read(scripts.join("V1__orders.sql")).unwrap());
    assert_eq!(recorded[0]["details"]["sha256"], sha);
    assert_eq!(recorded[0]["details"]["ticket"], "OPS-7");
    assert_eq!(recorded[0]["details"]["reason"], "orders");

    let (code, out, err) = cli(&data, &["pg", "migrations", "--dsn", &dsn, dir_arg]);
    assert_eq!(code, 0, "{err}");
    let states: Vec<&str> = out.lines().map(|l| l.split('\t').nth(2).unwrap()).collect();
    assert_eq!(states, ["applied", "pending", "pending"]);

    // An applied script changed afterwards: refused, exit 2, naming it.
    std::fs::write(
        scripts.join("V1__orders.sql"),
        "CREATE TABLE orders (id bigint PRIMARY KEY);\n",
    )
    .unwrap();
    let (code, _, err) = cli(
        &data,
        &[
            "pg", "migrate", "--dsn", &dsn, dir_arg, "--ticket", "OPS-8", "--reason", "again",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("V1__orders.sql"), "{err}");
}

#[test]
fn a_server_log_is_imported_once_in_whatever_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_eq!(cli(&data, &["init"]).0, 0);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pg/tests/fixtures");
    let csv = fixtures.join("server.csv");
    let json = fixtures.join("server.json");
    let entries = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(&csv)
        .unwrap()
        .records()
        .count();

    let (code, _, err) = cli(&data, &["pg", "import-log", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // The same entries in jsonlog, and the csvlog again: nothing new.
    let (code, _, err) = cli(
        &data,
        &["pg", "import-log", json.to_str().unwrap(), csv.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 entries imported"), "{err}");
    let logged = events(&data, "pg.log");
    assert_eq!(logged.len(), entries);
    assert!(logged.iter().all(|e| e["source"]["service"] == "postgresql"));

    // A malformed line is named with its file and line; the rest is imported.
    let broken = dir.path().join("broken.json");
    let mut text = std::fs::read_to_string(&json).unwrap();
    let second = text.find('\n').unwrap() + 1;
    text.insert_str(second, "{not json\n");
    std::fs::write(&broken, text).unwrap();
    let (code, _, err) = cli(
        &data,
        &["pg", "import-log", "--format", "jsonlog", broken.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(err.contains("broken.json:2"), "{err}");
}
