//! The migration runner against the PostgreSQL server on 127.0.0.1:5432;
//! each test works in a database of its own, dropped at the end.

use postgres::Client;
use sealtrail_pg::logimport::BatchOutcome;
use sealtrail_pg::migrate::{self, MigrateError, MigrateOptions, MigrationState};
use sealtrail_testgen::pg::TestDatabase;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

fn opts() -> MigrateOptions {
    MigrateOptions {
        ticket: "CHG-1042".to_owned(),
        reason: "orders need a status".to_owned(),
        dry_run: false,
        installed_by: Some("deploy-bot".to_owned()),
    }
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).expect("write script");
}

fn sha256(dir: &Path, name: &str) -> String {
    let bytes = std::fs::read(dir.join(name)).expect("script");
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A sink that keeps the events after checking them with the schema's
/// validator.
fn collect(events: &mut Vec<Value>) -> impl FnMut(&[String]) -> Result<BatchOutcome, String> + '_ {
    |batch: &[String]| {
        for text in batch {
            sealtrail_event::accept_json(
                text.as_bytes(),
                sealtrail_event::Timestamp::now(),
                sealtrail_event::Ulid::nil(),
            )
            .unwrap_or_else(|e| panic!("the trail refuses {text}: {e:?}"));
            events.push(serde_json::from_str(text).expect("JSON"));
        }
        Ok(BatchOutcome::default())
    }
}

fn strings(client: &mut Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .expect("query")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Scripts whose every run logs its version, named so that text order
/// and version order differ.
fn ordered_scripts(dir: &Path) {
    write(
        dir,
        "V1__create_log.sql",
        "CREATE TABLE run_log (n serial, v text);\nINSERT INTO run_log (v) VALUES ('1');\n",
    );
    write(dir, "V10__tenth.sql", "INSERT INTO run_log (v) VALUES ('10');");
    write(dir, "V2__second.sql", "INSERT INTO run_log (v) VALUES ('2');");
    write(dir, "V1_1__between.sql", "INSERT INTO run_log (v) VALUES ('1.1');");
    write(dir, "README.txt", "not a script");
}

#[test]
fn scripts_apply_in_version_order_once() {
    let db = TestDatabase::new("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    ordered_scripts(dir.path());
    let mut events = Vec::new();
    let report = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect("run");
    assert!(report.failed.is_none());
    let order = [
        "V1__create_log.sql",
        "V1_1__between.sql",
        "V2__second.sql",
        "V10__tenth.sql",
    ];
    let applied: Vec<&str> = report.applied.iter().map(|a| a.script.as_str()).collect();
    assert_eq!(applied, order);

    let mut c = db.client();
    assert_eq!(
        strings(&mut c, "SELECT v FROM run_log ORDER BY n"),
        ["1", "1.1", "2", "10"]
    );
    let rows = c
        .query(
            "SELECT script, checksum, installed_by, success, ticket, reason, event_recorded
             FROM sealtrail_schema_history ORDER BY installed_rank",
            &[],
        )
        .expect("history");
    assert_eq!(rows.len(), 4);
    for (row, name) in rows.iter().zip(order) {
        assert_eq!(row.get::<_, String>(0), name);
        assert_eq!(row.get::<_, String>(1), sha256(dir.path(), name));
        assert_eq!(row.get::<_, String>(2), "deploy-bot");
        assert!(row.get::<_, bool>(3));
        assert_eq!(row.get::<_, String>(4), "CHG-1042");
        assert_eq!(row.get::<_, String>(5), "orders need a status");
        assert!(row.get::<_, bool>(6), "event recorded");
    }
    assert_eq!(events.len(), 4);
    for (e, name) in events.iter().zip(order) {
        assert_eq!(e["action"], "pg.migration");
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["actor"]["id"], "deploy-bot");
        assert_eq!(e["details"]["script"], name);
        assert_eq!(e["details"]["sha256"], sha256(dir.path(), name).as_str());
        assert_eq!(e["details"]["ticket"], "CHG-1042");
        assert_eq!(e["details"]["reason"], "orders need a status");
        assert_eq!(e["details"]["database"], db.name.as_str());
        assert!(e["details"]["duration_ms"].is_u64());
    }

    // Again: nothing to do, nothing emitted.
    let mut again = Vec::new();
    let report = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut again)).expect("rerun");
    assert!(report.applied.is_empty() && report.failed.is_none());
    assert!(again.is_empty());
    assert_eq!(strings(&mut c, "SELECT v FROM run_log ORDER BY n").len(), 4);
}

#[test]
fn a_failing_script_rolls_back_alone_and_stops_the_run() {
    let db = TestDatabase::new("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "V1__base.sql", "CREATE TABLE base (id int);");
    write(
        dir.path(),
        "V2__broken.sql",
        "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nINSERT INTO no_such_table VALUES (1);\n",
    );
    write(dir.path(), "V3__later.sql", "CREATE TABLE later (id int);");
    let mut events = Vec::new();
    let report = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect("run");
    assert_eq!(report.applied.len(), 1);
    let failed = report.failed.as_ref().expect("V2 fails");
    assert_eq!(failed.script, "V2__broken.sql");
    assert!(
        failed
            .error
            .starts_with("V2__broken.sql line 3, column 13: ERROR 42P01:"),
        "{}",
        failed.error
    );
    let pending: Vec<&str> = report.pending.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(pending, ["V2__broken.sql", "V3__later.sql"]);

    let mut c = db.client();
    let tables = strings(
        &mut c,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    assert_eq!(
        tables,
        ["base", "sealtrail_schema_history"],
        "V2 rolled back, V3 not run"
    );
    let history = c
        .query(
            "SELECT script, success, error FROM sealtrail_schema_history ORDER BY installed_rank",
            &[],
        )
        .expect("history");
    assert_eq!(history.len(), 2);
    assert!(!history[1].get::<_, bool>(1));
    assert_eq!(
        history[1].get::<_, Option<String>>(2).as_deref(),
        Some(failed.error.as_str())
    );

    assert_eq!(events.len(), 2, "the failure is in the trail too");
    assert_eq!(events[1]["outcome"], "failure");
    assert_eq!(events[1]["severity"], "error");
    assert_eq!(events[1]["details"]["script"], "V2__broken.sql");
    assert_eq!(events[1]["details"]["error"], failed.error.as_str());
    assert_eq!(events[1]["error"]["message"], failed.error.as_str());

    // Fixed: the failed attempt does not count as applied.
    write(dir.path(), "V2__broken.sql", "CREATE TABLE half_done (id int);");
    let report = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect("rerun");
    assert!(report.failed.is_none());
    assert_eq!(report.applied.len(), 2);
    assert_eq!(events.len(), 4);
}

#[test]
fn a_changed_or_missing_applied_script_is_refused() {
    let db = TestDatabase::new("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "V1__one.sql", "CREATE TABLE one (id int);");
    write(dir.path(), "V2__two.sql", "CREATE TABLE two (id int);");
    let mut events = Vec::new();
    migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect("run");
    let recorded = sha256(dir.path(), "V1__one.sql");

    write(dir.path(), "V1__one.sql", "CREATE TABLE one (id bigint);");
    write(dir.path(), "V3__three.sql", "CREATE TABLE three (id int);");
    let err = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect_err("refused");
    match &err {
        MigrateError::ChecksumChanged {
            script,
            recorded: r,
            current,
        } => {
            assert_eq!(script, "V1__one.sql");
            assert_eq!(r, &recorded);
            assert_eq!(current, &sha256(dir.path(), "V1__one.sql"));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("V1__one.sql"));
    let status = migrate::list(&mut db.client(), dir.path()).expect("list");
    assert_eq!(status[0].state, MigrationState::Changed { recorded });
    assert_eq!(status[2].state, MigrationState::Pending);
    let tables = strings(
        &mut db.client(),
        "SELECT tablename::text FROM pg_tables WHERE tablename = 'three'",
    );
    assert!(tables.is_empty(), "nothing ran");

    std::fs::remove_file(dir.path().join("V1__one.sql")).expect("remove");
    let err = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect_err("refused");
    assert!(
        matches!(&err, MigrateError::ScriptMissing { script, .. } if script == "V1__one.sql"),
        "{err}"
    );
    assert_eq!(events.len(), 2, "refusals change nothing");
}

#[test]
fn dry_run_changes_nothing() {
    let db = TestDatabase::new("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    ordered_scripts(dir.path());
    let mut events = Vec::new();
    let report = migrate::run(
        &mut db.client(),
        dir.path(),
        &MigrateOptions {
            dry_run: true,
            ..opts()
        },
        collect(&mut events),
    )
    .expect("dry run");
    let names: Vec<&str> = report.pending.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "V1__create_log.sql",
            "V1_1__between.sql",
            "V2__second.sql",
            "V10__tenth.sql"
        ]
    );
    assert!(report.applied.is_empty() && events.is_empty());
    let tables = strings(
        &mut db.client(),
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
    );
    assert!(tables.is_empty(), "{tables:?}");

    let status = migrate::list(&mut db.client(), dir.path()).expect("list");
    assert!(status.iter().all(|s| s.state == MigrationState::Pending));
    assert_eq!(status[3].checksum, sha256(dir.path(), "V10__tenth.sql"));
}

#[test]
fn ticket_and_reason_are_required() {
    let db = TestDatabase::new("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    ordered_scripts(dir.path());
    for o in [
        MigrateOptions {
            ticket: " ".to_owned(),
            ..opts()
        },
        MigrateOptions {
            reason: String::new(),
            ..opts()
        },
    ] {
        let err = migrate::run(&mut db.client(), dir.path(), &o, |_: &[String]| {
            Ok(BatchOutcome::default())
        })
        .expect_err("refused");
        assert!(matches!(err, MigrateError::Missing(_)), "{err}");
    }
}

#[test]
fn an_event_the_sink_lost_is_sent_again_with_the_same_key() {
    let db = TestDatabase::new("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "V1__one.sql", "CREATE TABLE one (id int);");
    let mut lost = Vec::new();
    let err = migrate::run(&mut db.client(), dir.path(), &opts(), |batch: &[String]| {
        lost.extend(batch.iter().cloned());
        Err("ledger unavailable".to_owned())
    })
    .expect_err("the sink failed");
    assert!(err.to_string().contains("ledger unavailable"), "{err}");
    // The script is applied (committed before delivery) ...
    assert_eq!(
        strings(&mut db.client(), "SELECT 'x' FROM pg_tables WHERE tablename = 'one'").len(),
        1
    );
    // ... and the next run delivers its event under the same key.
    let mut events = Vec::new();
    let report = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect("run");
    assert_eq!(report.events_resent, 1);
    assert!(report.applied.is_empty());
    let first: Value = serde_json::from_str(&lost[0]).expect("JSON");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["idempotency_key"], first["idempotency_key"]);
}

#[test]
fn bad_script_names_and_duplicate_versions_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "V1__one.sql", "SELECT 1;");
    write(dir.path(), "create_things.sql", "SELECT 1;");
    let err = migrate::plan(dir.path()).expect_err("bad name");
    assert!(err.to_string().contains("create_things.sql"), "{err}");
    std::fs::remove_file(dir.path().join("create_things.sql")).expect("remove");
    write(dir.path(), "V1.0__again.sql", "SELECT 1;");
    let err = migrate::plan(dir.path()).expect_err("duplicate");
    assert!(matches!(err, MigrateError::Duplicate { .. }), "{err}");
}

#[test]
fn an_unreachable_server_is_reported() {
    let Err(err) = migrate::connect("host=127.0.0.1 port=1 user=postgres connect_timeout=2") else {
        panic!("nothing listens on port 1");
    };
    assert!(err.to_string().starts_with("connecting to the database"), "{err}");
}

#[test]
fn a_script_ending_the_transaction_itself_is_a_failure() {
    let db = TestDatabase::new("migrate");
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "V1__sneaky.sql",
        "CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);",
    );
    let mut events = Vec::new();
    let report = migrate::run(&mut db.client(), dir.path(), &opts(), collect(&mut events)).expect("run");
    let failed = report.failed.expect("refused");
    assert!(failed.error.contains("ends the transaction itself"), "{}", failed.error);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["outcome"], "failure");
    let applied = strings(
        &mut db.client(),
        "SELECT script FROM sealtrail_schema_history WHERE success",
    );
    assert!(applied.is_empty());
}
