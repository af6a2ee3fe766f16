//! Logical-decoding capture end to end, on a throw-away cluster with
//! `wal_level = logical` (the shared server runs with `replica`): changes
//! with the application's actor captured exactly once, drains killed
//! between the append and the slot's acknowledgement, and a lost slot.

mod capture_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use capture_support::{drain_beside_a_writer, events, open_trail, target_ids, trail};
use sealtrail_pg::capture::{install, status, uninstall, CaptureError, InstallOptions, Mode, Tables};
use sealtrail_pg::drain::{drain, DrainError, DrainOptions};
use sealtrail_pg::logical::SlotError;
use sealtrail_testgen::cluster::Cluster;
use serde_json::{json, Value};

fn logical(names: &[&str]) -> InstallOptions {
    InstallOptions {
        tables: Tables::List(names.iter().map(|s| s.to_string()).collect()),
        mode: Mode::Logical,
        ..InstallOptions::default()
    }
}

fn cluster() -> Cluster {
    Cluster::new(&["wal_level = logical", "max_replication_slots = 4"])
}

fn drain_once(dsn: &str, trail: &sealtrail_trail::Trail) -> sealtrail_pg::drain::DrainReport {
    drain(dsn, trail, &DrainOptions::default()).expect("drain")
}

#[test]
fn changes_with_their_actor_are_captured_exactly_once() {
    let pg = cluster();
    let mut c = pg.client();
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, v int, note text, secret text, doc jsonb, big numeric, ok boolean);
         ALTER TABLE items REPLICA IDENTITY FULL;
         CREATE TABLE plain (id int PRIMARY KEY, v int);
         CREATE TABLE untracked (id int PRIMARY KEY);",
    )
    .expect("schema");
    let mut opts = logical(&["items", "plain"]);
    opts.exclude_columns = vec!["items.secret".into()];
    let installed = install(&pg.dsn(), &opts).expect("install");
    assert_eq!(installed.mode, Mode::Logical);
    let slot = installed.slot.clone().expect("a slot");
    assert!(
        installed
            .warnings
            .iter()
            .any(|w| w.contains("public.plain") && w.contains("REPLICA IDENTITY FULL")),
        "{:?}",
        installed.warnings
    );
    assert!(
        !installed.warnings.iter().any(|w| w.contains("public.items")),
        "{:?}",
        installed.warnings
    );

    c.batch_execute(
        "BEGIN;
         SELECT sealtrail.set_actor('u-17', 'ticket OPS-1', 'req-9');
         INSERT INTO items VALUES (1, 10, 'a', 's1', '{\"k\": [1, 2]}', 12345678901234567.89, true),
                                  (2, 20, 'b', 's2', NULL, 1.5, false),
                                  (3, 30, 'c', 's3', NULL, NULL, NULL);
         UPDATE items SET v = 21, secret = 'changed' WHERE id = 2;
         UPDATE items SET secret = 'only excluded' WHERE id = 1;
         DELETE FROM items WHERE id = 3;
         INSERT INTO untracked VALUES (1);
         COMMIT;
         INSERT INTO plain VALUES (7, 1);
         UPDATE plain SET v = 2 WHERE id = 7;
         DELETE FROM plain WHERE id = 7;
         BEGIN; SELECT sealtrail.set_actor('u-18'); TRUNCATE plain; COMMIT;
         BEGIN; ROLLBACK;
         BEGIN; INSERT INTO items VALUES (99, 0); ROLLBACK;
         CREATE TABLE later (id int);",
    )
    .expect("changes");
    let t = trail();
    let report = drain_once(&pg.dsn(), &t.trail);
    assert_eq!(report.duplicates, 0, "{report:?}");
    // 3 inserts, 2 updates (one of excluded columns only: no event), 1
    // delete; plain's 3; the truncate; the DDL.
    assert_eq!(
        (report.rows, report.appended, report.skipped),
        (11, 10, 1),
        "{report:?}"
    );
    let ev = events(&t.trail);
    let actions: Vec<&str> = ev.iter().map(|e| e["action"].as_str().expect("action")).collect();
    assert_eq!(
        actions,
        [
            "pg.insert",
            "pg.insert",
            "pg.insert",
            "pg.update",
            "pg.delete",
            "pg.insert",
            "pg.update",
            "pg.delete",
            "pg.truncate",
            "pg.ddl"
        ]
    );
    let first = &ev[0];
    assert_eq!(first["actor"], json!({"id": "u-17", "type": "user"}));
    assert_eq!(first["context"], json!({"request_id": "req-9"}));
    assert_eq!(first["targets"], json!([{"type": "public.items", "id": "1"}]));
    assert_eq!(
        first["changes"]["after"],
        json!({"id": 1, "v": 10, "note": "a", "doc": {"k": [1, 2]}, "big": "12345678901234567.89", "ok": true})
    );
    assert_eq!(first["crud"], "c");
    let d = &first["details"];
    assert_eq!(d["database"], "postgres");
    assert_eq!(d["role"], "postgres");
    assert_eq!(d["reason"], "ticket OPS-1");
    assert_eq!(d["position"], 1);
    assert!(d["transaction_id"].as_str().expect("xid").parse::<u32>().is_ok(), "{d}");
    let lsn = d["commit_lsn"].as_str().expect("commit lsn");
    // The event's `occurred_at` is canonical (trailing zeros of the fraction
    // dropped); the detail keeps PostgreSQL's six digits: the same instant.
    let instant = |v: &Value| v.as_str().expect("time").parse::<jiff::Timestamp>().expect("timestamp");
    assert_eq!(instant(&d["commit_time"]), instant(&first["occurred_at"]));
    assert!(d["commit_time"].as_str().expect("time").ends_with('Z'), "{d}");
    assert_eq!(first["idempotency_key"], format!("pg-{}-{lsn}-1", installed.epoch));

    let update = &ev[3];
    assert_eq!(update["changes"]["before"]["v"], 20);
    assert_eq!(update["changes"]["after"]["v"], 21);
    assert_eq!(update["changes"]["fields"], json!(["v"]));
    assert!(update["changes"]["after"].get("secret").is_none(), "{update}");
    assert_eq!(update["details"]["position"], 4);
    let delete = &ev[4];
    assert_eq!(delete["targets"][0]["id"], "3");
    assert_eq!(delete["changes"]["before"]["note"], "c");
    assert_eq!(delete["actor"]["id"], "u-17");

    // Without set_actor, and with the default replica identity: no role,
    // no old row for the update, the key only for the delete.
    let plain_update = &ev[6];
    assert_eq!(plain_update["actor"], json!({"id": "unknown"}));
    assert!(plain_update["changes"].get("before").is_none(), "{plain_update}");
    assert!(plain_update["changes"].get("fields").is_none(), "{plain_update}");
    assert_eq!(plain_update["changes"]["after"], json!({"id": 7, "v": 2}));
    assert_eq!(ev[7]["changes"]["before"], json!({"id": 7, "v": null}));
    assert_eq!(ev[8]["targets"], json!([{"type": "table", "id": "public.plain"}]));
    assert_eq!(ev[8]["actor"]["id"], "u-18");
    assert_eq!(ev[9]["details"]["command_tag"], "CREATE TABLE");
    assert_eq!(ev[9]["targets"][0]["id"], "public.later");

    // The slot moved past everything: a second drain finds nothing, and
    // status shows the slot caught up.
    let again = drain_once(&pg.dsn(), &t.trail);
    assert_eq!((again.rows, again.appended), (0, 0), "{again:?}");
    let s = status(&pg.dsn()).expect("status");
    let i = s.install.expect("installed");
    assert_eq!(i.mode, Mode::Logical);
    let slot_status = i.slot.expect("slot status");
    assert_eq!(slot_status.name, slot);
    assert!(slot_status.exists && !slot_status.invalidated, "{slot_status:?}");
    assert_eq!(i.drained_total, 11);
    assert!(slot_status.retained_bytes.expect("retained") >= 0);

    // Uninstall refuses while the slot holds a change, then removes the
    // slot and the publication.
    c.batch_execute("INSERT INTO plain VALUES (8, 1)").expect("insert");
    let outbox: i64 = c
        .query_one("SELECT count(*) FROM sealtrail.outbox", &[])
        .expect("outbox")
        .get(0);
    assert_eq!(outbox, 0, "logical mode writes nothing to the outbox");
    match uninstall(&pg.dsn(), false) {
        Err(CaptureError::SlotPending { slot: s, .. }) => assert_eq!(s, slot),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drain_once(&pg.dsn(), &t.trail);
    assert!(uninstall(&pg.dsn(), false).expect("uninstall"));
    let left: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn refusals_name_what_is_missing() {
    // The shared server runs with wal_level = replica.
    let db = capture_support::Db::new("walrep");
    match install(&db.dsn(), &logical(&[])) {
        Err(e @ CaptureError::WalLevel { .. }) => {
            assert!(e.to_string().contains("wal_level = replica"), "{e}");
            assert!(e.to_string().contains("restart"), "{e}");
        }
        other => panic!("expected WalLevel, got {other:?}"),
    }

    let pg = cluster();
    let mut c = pg.client();
    c.batch_execute("CREATE TABLE nokey (a int); CREATE TABLE t (id int PRIMARY KEY)")
        .expect("schema");
    match install(&pg.dsn(), &logical(&["nokey"])) {
        Err(e @ CaptureError::NoReplicaIdentity { .. }) => {
            assert!(e.to_string().contains("public.nokey"), "{e}");
        }
        other => panic!("expected NoReplicaIdentity, got {other:?}"),
    }
    // Nothing was created by the refusal.
    let slots: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .expect("count")
        .get(0);
    assert_eq!(slots, 0);
    // A trigger-mode install is not turned into a logical one in place.
    install(
        &pg.dsn(),
        &InstallOptions {
            tables: Tables::List(vec!["t".into()]),
            ..InstallOptions::default()
        },
    )
    .expect("trigger install");
    match install(&pg.dsn(), &logical(&["t"])) {
        Err(CaptureError::ModeChange { found, wanted, .. }) => {
            assert_eq!((found.as_str(), wanted.as_str()), ("triggers", "logical"))
        }
        other => panic!("expected ModeChange, got {other:?}"),
    }
}

#[test]
fn a_dropped_or_invalidated_slot_is_a_clear_error_and_a_reported_gap() {
    let pg = cluster();
    let mut c = pg.client();
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE filler (x text)")
        .expect("schema");
    let installed = install(&pg.dsn(), &logical(&["t"])).expect("install");
    let slot = installed.slot.expect("slot");
    let t = trail();
    c.batch_execute("INSERT INTO t VALUES (1)").expect("insert");
    drain_once(&pg.dsn(), &t.trail);

    // Dropped by someone.
    c.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .expect("drop slot");
    let err = drain(&pg.dsn(), &t.trail, &DrainOptions::default()).expect_err("no slot");
    assert!(matches!(err, DrainError::Slot(SlotError::Missing { .. })), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&slot) && text.contains("pg install --mode logical"),
        "{text}"
    );
    let s = status(&pg.dsn())
        .expect("status")
        .install
        .expect("installed")
        .slot
        .expect("slot");
    assert!(!s.exists, "{s:?}");

    // Re-install: a new slot, and the gap is recorded once.
    c.batch_execute("INSERT INTO t VALUES (2)").expect("lost change");
    let again = install(&pg.dsn(), &logical(&["t"])).expect("re-install");
    assert!(
        again.warnings.iter().any(|w| w.contains("were not captured")),
        "{:?}",
        again.warnings
    );
    c.batch_execute("INSERT INTO t VALUES (3)").expect("insert");
    drain_once(&pg.dsn(), &t.trail);
    drain_once(&pg.dsn(), &t.trail);
    let actions: Vec<String> = events(&t.trail)
        .iter()
        .map(|e| format!("{} {}", e["action"].as_str().expect("action"), e["targets"][0]["id"]))
        .collect();
    assert_eq!(
        actions,
        ["pg.insert \"1\"", "pg.capture_gap \"postgres\"", "pg.insert \"3\""]
    );

    // Invalidated: PostgreSQL removes WAL the slot still needs.
    c.batch_execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        .expect("limit retained WAL");
    c.batch_execute("SELECT pg_reload_conf()").expect("reload");
    c.batch_execute("INSERT INTO t VALUES (4)").expect("insert");
    let mut lost = false;
    for _ in 0..40 {
        c.batch_execute(
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000);
             SELECT pg_switch_wal(); CHECKPOINT;",
        )
        .expect("write WAL");
        let wal_status: Option<String> = c
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .expect("slot")
            .get(0);
        if wal_status.as_deref() == Some("lost") {
            lost = true;
            break;
        }
    }
    assert!(lost, "the slot was never invalidated; the test proved nothing");
    let err = drain(&pg.dsn(), &t.trail, &DrainOptions::default()).expect_err("invalidated");
    assert!(
        matches!(err, DrainError::Slot(SlotError::Invalidated { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_slot_wal_keep_size"), "{err}");
    let s = status(&pg.dsn())
        .expect("status")
        .install
        .expect("installed")
        .slot
        .expect("slot");
    assert!(s.exists && s.invalidated, "{s:?}");
    assert_eq!(s.wal_status.as_deref(), Some("lost"));
}

const CHILD: &str = "SEALTRAIL_TEST_LOGICAL_DRAIN_CHILD";

#[test]
fn drains_killed_between_append_and_acknowledgement_lose_and_duplicate_nothing() {
    // Run as the drainer child: drain once and exit.
    if let Ok(spec) = std::env::var(CHILD) {
        let (dsn, path) = spec.split_once('\t').expect("dsn TAB path");
        let trail = open_trail(std::path::Path::new(path));
        drain(dsn, &trail, &DrainOptions { batch: 20, limit: None }).expect("child drain");
        return;
    }
    let pg = cluster();
    let mut c = pg.client();
    c.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v int)")
        .expect("schema");
    let installed = install(&pg.dsn(), &logical(&["items"])).expect("install");
    let slot = installed.slot.expect("slot");
    let dir = tempfile::tempdir().expect("temp dir");
    capture_support::create_trail(dir.path());

    let mut random = capture_support::random_below();
    let mut expected: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut next_id = 0i32;
    // Kills that left events in the trail whose transaction the slot had
    // not been moved past: the window this test is about.
    let (mut in_window, mut rounds) = (0, 0);
    while rounds < 12 || (in_window == 0 && rounds < 60) {
        rounds += 1;
        let mut tx = c.transaction().expect("begin");
        tx.execute("SELECT sealtrail.set_actor($1)", &[&format!("u-{rounds}")])
            .expect("actor");
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
                "drains_killed_between_append_and_acknowledgement_lose_and_duplicate_nothing",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, format!("{}\t{}", pg.dsn(), dir.path().display()))
            .spawn()
            .expect("spawn drain");
        std::thread::sleep(Duration::from_millis(20 + random(250)));
        child.kill().ok();
        child.wait().expect("reap child");

        // Is anything in the trail past the slot's confirmed position?
        let confirmed: String = c
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .expect("slot")
            .get(0);
        let confirmed = sealtrail_pg::logical::pgoutput::parse_lsn(&confirmed).expect("lsn");
        let trail = open_trail(dir.path());
        let ahead = events(&trail).iter().any(|e| {
            let lsn = e["details"]["commit_lsn"].as_str().expect("commit lsn");
            sealtrail_pg::logical::pgoutput::parse_lsn(lsn).expect("lsn") >= confirmed
        });
        if ahead {
            in_window += 1;
        }
    }
    assert!(
        in_window > 0,
        "no kill landed between an append and the slot's acknowledgement in {rounds} rounds"
    );

    let trail = open_trail(dir.path());
    let last = drain(&pg.dsn(), &trail, &DrainOptions::default()).expect("final drain");
    eprintln!("final drain: {last:?}");
    let ev = events(&trail);
    let mut found: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    for e in &ev {
        let key = e["idempotency_key"].as_str().expect("key").to_string();
        assert!(keys.insert(key.clone()), "key {key} stored twice");
        let id = e["targets"][0]["id"].as_str().expect("target id").to_string();
        match e["action"].as_str().expect("action") {
            "pg.insert" => {
                assert!(e["actor"]["id"].as_str().expect("actor").starts_with("u-"), "{e}");
                found.entry(id).or_default().0 += 1
            }
            "pg.update" => found.entry(id).or_default().1 += 1,
            other => panic!("unexpected {other}: {e}"),
        }
    }
    assert_eq!(found, expected);
    eprintln!(
        "{} events, {in_window} of {rounds} kills between append and acknowledgement",
        ev.len()
    );
}

/// A drain reads the slot up to the WAL's end as it starts and ends,
/// however fast writers keep committing; the next drain takes the rest,
/// each change once.
#[test]
fn a_drain_ends_beside_a_writer_that_never_pauses() {
    let pg = cluster();
    pg.client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .expect("schema");
    install(&pg.dsn(), &logical(&["items"])).expect("install");
    let t = trail();
    let written = drain_beside_a_writer(&pg.dsn(), &t.trail, 100_000);

    drain_once(&pg.dsn(), &t.trail);
    let ids = target_ids(&t.trail);
    assert_eq!(ids, (1..=written).collect::<Vec<_>>());
}
