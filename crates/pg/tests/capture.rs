//! Capture end to end against the local PostgreSQL server: install into a
//! fresh database, change things, drain into a fresh trail, read the trail.

mod capture_support;

use std::collections::BTreeSet;

use capture_support::{drain_all, drain_beside_a_writer, events, target_ids, trail, Db};
use sealtrail_pg::capture::{install, status, uninstall, CaptureError, InstallOptions, Tables, CAPTURE_ROLE, VERSION};
use sealtrail_pg::drain::{drain, DrainError, DrainOptions};
use sealtrail_testgen::cluster::Cluster;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn tables(names: &[&str]) -> InstallOptions {
    InstallOptions {
        tables: Tables::List(names.iter().map(|s| s.to_string()).collect()),
        ..InstallOptions::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["action"].as_str().expect("action")).collect()
}

#[test]
fn row_changes_with_actor_reason_and_excluded_columns() {
    let db = Db::new("rows");
    let mut c = db.client();
    c.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, name text, secret text, balance numeric);
         CREATE TABLE untracked (id int PRIMARY KEY);",
    )
    .expect("schema");
    let mut opts = tables(&["accounts"]);
    opts.exclude_columns = vec!["accounts.secret".into()];
    let installed = install(&db.dsn(), &opts).expect("install");
    assert!(installed.fresh && installed.ddl_capture);
    assert_eq!(installed.tables[0].name, "public.accounts");
    assert_eq!(installed.tables[0].key_columns, vec!["id"]);

    c.batch_execute(
        "BEGIN;
         SET LOCAL sealtrail.actor = 'u-17';
         SET LOCAL sealtrail.reason = 'ticket OPS-4';
         SET LOCAL sealtrail.request_id = 'req-9';
         INSERT INTO accounts VALUES (1, 'ann', 's1', 12345678901234567.89), (2, 'bob', 's2', 5);
         COMMIT;
         UPDATE accounts SET name = 'anne', secret = 's1b' WHERE id = 1;
         UPDATE accounts SET name = name WHERE id = 2;
         UPDATE accounts SET secret = 'only the excluded column' WHERE id = 2;
         INSERT INTO untracked VALUES (1);
         DELETE FROM accounts WHERE id = 2;
         TRUNCATE accounts;",
    )
    .expect("changes");

    let t = trail();
    // Six outbox rows: the update of only the excluded column is read and
    // dropped; the update that changes nothing never reaches the outbox.
    let report = drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 6);
    assert_eq!(
        (report.rows, report.appended, report.duplicates, report.skipped),
        (6, 5, 0, 1)
    );
    let ev = events(&t.trail);
    assert_eq!(
        actions(&ev),
        ["pg.insert", "pg.insert", "pg.update", "pg.delete", "pg.truncate"]
    );
    let first = &ev[0];
    assert_eq!(first["actor"], json!({"id": "u-17", "type": "user"}));
    assert_eq!(first["details"]["reason"], "ticket OPS-4");
    assert_eq!(first["context"]["request_id"], "req-9");
    assert_eq!(first["targets"], json!([{"type": "public.accounts", "id": "1"}]));
    // numeric beyond a double's exact range travels as its decimal text.
    assert_eq!(
        first["changes"]["after"],
        json!({"id": 1, "name": "ann", "balance": "12345678901234567.89"})
    );
    assert_eq!(first["crud"], "c");
    assert_eq!(first["details"]["database"], db.name.as_str());
    assert_eq!(first["details"]["role"], "postgres");
    assert_eq!(ev[1]["changes"]["after"]["balance"], 5);
    // Both inserts were one transaction.
    assert_eq!(first["details"]["transaction_id"], ev[1]["details"]["transaction_id"]);

    let update = &ev[2];
    assert_eq!(
        update["actor"],
        json!({"id": "postgres"}),
        "no sealtrail.actor: the role"
    );
    assert!(update["details"].get("reason").is_none());
    assert_eq!(update["changes"]["fields"], json!(["name"]));
    assert_eq!(update["changes"]["before"]["name"], "ann");
    assert_eq!(update["changes"]["after"]["name"], "anne");
    assert!(update["changes"]["after"].get("secret").is_none());

    assert_eq!(ev[3]["targets"], json!([{"type": "public.accounts", "id": "2"}]));
    assert_eq!(
        ev[3]["changes"]["before"],
        json!({"id": 2, "name": "bob", "balance": 5})
    );
    assert!(ev[3]["changes"].get("after").is_none());
    assert_eq!(ev[4]["targets"], json!([{"type": "table", "id": "public.accounts"}]));
    // The statement is the client's whole query string (here one batch).
    assert!(ev[4]["details"]["statement"]
        .as_str()
        .expect("statement")
        .contains("TRUNCATE accounts;"));

    // Every key distinct, of the documented shape, and the outbox empty.
    let epoch = installed.epoch;
    for e in &ev {
        let key = e["idempotency_key"].as_str().expect("key");
        let xid = e["details"]["transaction_id"].as_str().expect("xid");
        let id = e["details"]["outbox_id"].as_i64().expect("outbox id");
        assert_eq!(key, format!("pg-{epoch}-{xid}-{id}"));
    }
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert_eq!((st.pending, st.drained_total), (0, 6));

    // A second drain finds nothing.
    let again = drain(&db.dsn(), &t.trail, &DrainOptions::default()).expect("drain again");
    assert_eq!(again.rows, 0);
    assert_eq!(t.trail.log().size(), 5);
}

#[test]
fn ddl_of_common_kinds() {
    let db = Db::new("ddl");
    install(&db.dsn(), &InstallOptions::default()).expect("install");
    let mut c = db.client();
    for statement in [
        "CREATE TABLE orders (id bigint PRIMARY KEY, total int)",
        "ALTER TABLE orders ADD COLUMN note text",
        "CREATE INDEX orders_total ON orders (total)",
        "ALTER TABLE orders RENAME TO purchases",
        "ALTER TABLE purchases ALTER COLUMN total TYPE bigint",
        "DROP TABLE purchases",
    ] {
        c.batch_execute(statement).expect(statement);
    }
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 7);
    let ev = events(&t.trail);
    assert!(actions(&ev).iter().all(|a| *a == "pg.ddl"), "{:?}", actions(&ev));
    let seen: Vec<(String, String)> = ev
        .iter()
        .map(|e| {
            (
                e["details"]["event"].as_str().expect("event").to_string(),
                e["details"]["command_tag"].as_str().expect("tag").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("ddl_command_end", "CREATE TABLE"),
        ("ddl_command_end", "ALTER TABLE"),
        ("ddl_command_end", "CREATE INDEX"),
        ("ddl_command_end", "ALTER TABLE"),
        ("table_rewrite", "ALTER TABLE"),
        ("ddl_command_end", "ALTER TABLE"),
        ("sql_drop", "DROP TABLE"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        ev[0]["details"]["statement"],
        "CREATE TABLE orders (id bigint PRIMARY KEY, total int)"
    );
    let targets = |i: usize| -> BTreeSet<String> {
        ev[i]["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["type"].as_str().expect("type"),
                    t["id"].as_str().expect("id")
                )
            })
            .collect()
    };
    assert!(targets(0).contains("table:public.orders"), "{:?}", targets(0));
    assert!(targets(2).contains("index:public.orders_total"), "{:?}", targets(2));
    assert!(targets(3).contains("table:public.purchases"), "{:?}", targets(3));
    assert!(targets(6).contains("table:public.purchases"), "{:?}", targets(6));
    assert_eq!(ev[0]["actor"], json!({"id": "postgres"}));
}

#[test]
fn a_late_committing_transaction_is_not_skipped() {
    let db = Db::new("late");
    db.client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, writer int)")
        .expect("schema");
    install(&db.dsn(), &tables(&["items"])).expect("install");
    let t = trail();

    // A long transaction takes its transaction id first, then others commit.
    let mut long = db.client();
    let mut long_tx = long.transaction().expect("begin");
    long_tx
        .execute("INSERT INTO items VALUES (0, 0)", &[])
        .expect("long insert");
    let writers: Vec<_> = (1..=4)
        .map(|w| {
            let dsn = db.dsn();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&dsn, postgres::NoTls).expect("connect");
                for i in 0..50 {
                    c.execute("INSERT INTO items VALUES ($1, $2)", &[&(w * 1000 + i), &w])
                        .expect("insert");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let before = drain(&db.dsn(), &t.trail, &DrainOptions { batch: 17, limit: None }).expect("drain");
    assert_eq!(before.rows, 0, "everything after the open transaction waits for it");
    long_tx.commit().expect("commit the long transaction");

    let after = drain_all(&db.dsn(), &t.trail, &DrainOptions { batch: 17, limit: None }, 201);
    assert_eq!(after.rows, 201);
    let ev = events(&t.trail);
    let ids: BTreeSet<String> = ev
        .iter()
        .map(|e| e["targets"][0]["id"].as_str().expect("id").to_string())
        .collect();
    let expected: BTreeSet<String> = std::iter::once(0)
        .chain((1..=4).flat_map(|w| (0..50).map(move |i| w * 1000 + i)))
        .map(|i: i32| i.to_string())
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(ev.len(), 201);
    let xids: Vec<u64> = ev
        .iter()
        .map(|e| {
            e["details"]["transaction_id"]
                .as_str()
                .expect("xid")
                .parse()
                .expect("number")
        })
        .collect();
    assert!(xids.windows(2).all(|w| w[0] <= w[1]), "in transaction order");
    assert_eq!(ev[0]["targets"][0]["id"], "0", "the long transaction began first");
}

#[test]
fn toast_sized_values_become_length_and_hash() {
    let db = Db::new("toast");
    db.client()
        .batch_execute("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
        .expect("schema");
    install(&db.dsn(), &tables(&["docs"])).expect("install");
    let body: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    db.client()
        .execute("INSERT INTO docs VALUES (1, 'big', $1)", &[&body])
        .expect("insert");
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 1);
    let ev = events(&t.trail);
    assert_eq!(ev.len(), 1);
    let quoted = format!("\"{body}\"");
    assert_eq!(
        ev[0]["changes"]["after"],
        json!({"id": 1, "title": "big", "body": {"omitted": true, "bytes": quoted.len(), "sha256": hex(quoted.as_bytes())}})
    );
    assert_eq!(ev[0]["details"]["omitted"], json!(["after.body"]));
}

#[test]
fn a_table_without_primary_key_is_identified_by_row_hash() {
    let db = Db::new("nopk");
    db.client()
        .batch_execute("CREATE TABLE log_lines (at int, line text)")
        .expect("schema");
    let installed = install(&db.dsn(), &tables(&["log_lines"])).expect("install");
    assert!(installed.tables[0].key_columns.is_empty());
    assert!(
        installed.warnings.iter().any(|w| w.contains("no primary key")),
        "{:?}",
        installed.warnings
    );
    db.client()
        .batch_execute("INSERT INTO log_lines VALUES (1, 'x'); DELETE FROM log_lines;")
        .expect("changes");
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 2);
    let ev = events(&t.trail);
    let row = br#"{"at":1,"line":"x"}"#;
    let id = format!("sha256:{}", hex(row));
    assert_eq!(ev[0]["targets"][0]["id"], id.as_str());
    assert_eq!(ev[1]["targets"][0]["id"], id.as_str(), "the delete names the same row");
}

#[test]
fn reinstall_upgrades_in_place_and_uninstall_removes_everything() {
    let db = Db::new("reinstall");
    let mut c = db.client();
    c.batch_execute(
        "CREATE SCHEMA app; CREATE TABLE app.a (id int PRIMARY KEY); CREATE TABLE app.b (id int PRIMARY KEY, doc json);",
    )
    .expect("schema");
    let first = install(&db.dsn(), &tables(&["app.a"])).expect("install");
    c.batch_execute("INSERT INTO app.a VALUES (1)").expect("insert");
    let second = install(
        &db.dsn(),
        &InstallOptions {
            tables: Tables::Schema("app".into()),
            ..InstallOptions::default()
        },
    )
    .expect("reinstall");
    assert!(!second.fresh);
    assert_eq!(first.epoch, second.epoch);
    let names: Vec<&str> = second.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["app.a", "app.b"]);
    // json has no equality operator; the update trigger must not need one.
    c.batch_execute("INSERT INTO app.b VALUES (1); UPDATE app.b SET doc = '{\"x\": 1}'; UPDATE app.b SET doc = doc;")
        .expect("insert and update");
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert!(st.missing_triggers.is_empty());
    // The row from before the reinstall is kept, plus the insert and the
    // one update that changed something.
    let pending = st.pending;
    assert_eq!(pending, 3);

    match uninstall(&db.dsn(), false) {
        Err(CaptureError::Pending { pending: p, .. }) => assert_eq!(p, pending),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(uninstall(&db.dsn(), true).expect("forced uninstall"));
    let left: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'sealtrail')
                  + (SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'sealtrail%')
                  + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'sealtrail%')
                  + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'capture_%')",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
    assert!(status(&db.dsn()).expect("status").install.is_none());
    assert!(!uninstall(&db.dsn(), false).expect("second uninstall"));
    // DDL after uninstall is not captured and needs nothing of ours.
    c.batch_execute("CREATE TABLE app.c (id int)")
        .expect("DDL after uninstall");
}

#[test]
fn bad_inputs_are_refused_clearly() {
    let unreachable = install(
        "host=127.0.0.1 port=1 user=postgres dbname=nowhere",
        &InstallOptions::default(),
    );
    match unreachable {
        Err(e @ CaptureError::Connect { .. }) => {
            assert!(e.to_string().contains("127.0.0.1:1, database nowhere"), "{e}")
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(matches!(
        install("port=notanumber", &InstallOptions::default()),
        Err(CaptureError::Dsn(_))
    ));

    let db = Db::new("bad");
    let mut c = db.client();
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, c text); CREATE VIEW v AS SELECT 1 AS x;")
        .expect("schema");
    match install(&db.dsn(), &tables(&["missing"])) {
        Err(e @ CaptureError::NoSuchTable { .. }) => {
            assert!(e.to_string().contains("table missing does not exist"), "{e}")
        }
        other => panic!("expected no such table, got {other:?}"),
    }
    assert!(matches!(
        install(&db.dsn(), &tables(&["a.b.c.d"])),
        Err(CaptureError::NoSuchTable { .. })
    ));
    assert!(matches!(
        install(&db.dsn(), &tables(&["v"])),
        Err(CaptureError::NotATable { .. })
    ));
    let excluding = |spec: &str| {
        let mut o = tables(&["t"]);
        o.exclude_columns = vec![spec.into()];
        install(&db.dsn(), &o)
    };
    for (spec, says) in [
        ("t.nope", "has no column nope"),
        ("t.id", "part of the primary key"),
        ("other.c", "not among the captured tables"),
        ("nodot", "expected TABLE.COLUMN"),
    ] {
        match excluding(spec) {
            Err(e @ CaptureError::BadExclude { .. }) => assert!(e.to_string().contains(says), "{spec}: {e}"),
            other => panic!("{spec}: expected a refusal, got {other:?}"),
        }
    }
    assert!(matches!(
        install(
            &db.dsn(),
            &InstallOptions {
                tables: Tables::Schema("nope".into()),
                ..InstallOptions::default()
            }
        ),
        Err(CaptureError::NoSuchSchema { .. })
    ));
    // Nothing was installed by the refused attempts.
    assert!(status(&db.dsn()).expect("status").install.is_none());
    let t = trail();
    assert!(matches!(
        drain(&db.dsn(), &t.trail, &DrainOptions::default()),
        Err(DrainError::Capture(CaptureError::NotInstalled { .. }))
    ));
}

#[test]
fn a_role_that_is_not_superuser_gets_row_capture_only_when_it_asks() {
    let db = Db::new("role");
    let role = format!("{}_owner", db.name);
    let mut c = db.client();
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE {} TO {role};
         CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO {role};",
        db.name
    ))
    .expect("role");
    let dsn = db.dsn_as(&role);
    let result = install(&dsn, &tables(&["t"]));
    match result {
        Err(e @ CaptureError::NotSuperuser { .. }) => assert!(e.to_string().contains("--no-ddl"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut opts = tables(&["t"]);
    opts.without_ddl = true;
    let installed = install(&dsn, &opts).expect("row capture only");
    assert!(!installed.ddl_capture);
    c.batch_execute("INSERT INTO t VALUES (1); CREATE TABLE u (id int);")
        .expect("changes");
    let t = trail();
    drain_all(&dsn, &t.trail, &DrainOptions::default(), 1);
    assert_eq!(actions(&events(&t.trail)), ["pg.insert"]);
    assert!(uninstall(&dsn, false).expect("uninstall"));
    drop(c);
    let name = db.name.clone();
    drop(db);
    sealtrail_testgen::pg::admin()
        .batch_execute(&format!("DROP ROLE IF EXISTS {name}_owner"))
        .expect("drop role");
}

#[test]
fn rows_whose_delete_was_lost_are_not_appended_twice() {
    // The window between a durable append and the committed delete: a
    // drainer killed there, or a PostgreSQL crash that rolls the delete
    // back, leaves the rows in the outbox. Put them back by hand.
    let db = Db::new("window");
    let mut c = db.client();
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").expect("schema");
    install(&db.dsn(), &tables(&["t"])).expect("install");
    c.batch_execute("INSERT INTO t SELECT generate_series(1, 40)")
        .expect("insert");
    c.batch_execute("CREATE TABLE saved AS SELECT * FROM sealtrail.outbox")
        .expect("save");
    let t = trail();
    // 40 inserts and the DDL of `saved`.
    let first = drain_all(&db.dsn(), &t.trail, &DrainOptions { batch: 16, limit: None }, 41);
    assert_eq!((first.appended, first.duplicates), (41, 0));
    c.batch_execute("INSERT INTO sealtrail.outbox SELECT * FROM saved")
        .expect("restore");
    let second = drain_all(&db.dsn(), &t.trail, &DrainOptions { batch: 16, limit: None }, 40);
    assert_eq!((second.appended, second.duplicates), (0, 40));
    assert_eq!(t.trail.log().size(), 41);
}

#[test]
fn a_row_too_wide_for_an_entry_is_shrunk_until_it_fits() {
    let db = Db::new("wide");
    let columns: Vec<String> = (0..100).map(|i| format!("c{i:02} text")).collect();
    db.client()
        .batch_execute(&format!(
            "CREATE TABLE wide (id int PRIMARY KEY, {})",
            columns.join(", ")
        ))
        .expect("schema");
    install(&db.dsn(), &tables(&["wide"])).expect("install");
    // 100 values of 1,000 characters: each under the first bound, together
    // far over an entry.
    let value = "x".repeat(1000);
    let names: Vec<String> = (0..100).map(|i| format!("c{i:02}")).collect();
    db.client()
        .execute(
            &format!(
                "INSERT INTO wide (id, {}) SELECT 1, {}",
                names.join(", "),
                names.iter().map(|_| "$1").collect::<Vec<_>>().join(", ")
            ),
            &[&value],
        )
        .expect("insert");
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 1);
    let ev = events(&t.trail);
    let quoted = format!("\"{value}\"");
    let digest = json!({"omitted": true, "bytes": 1002, "sha256": hex(quoted.as_bytes())});
    for name in &names {
        assert_eq!(ev[0]["changes"]["after"][name], digest, "{name}");
    }
    assert_eq!(ev[0]["changes"]["after"]["id"], 1);
    let omitted: Vec<String> = names.iter().map(|n| format!("after.{n}")).collect();
    assert_eq!(ev[0]["details"]["omitted"], json!(omitted));
}

#[test]
fn a_dropped_capture_trigger_shows_in_status_and_in_the_trail() {
    let db = Db::new("tamper");
    let mut c = db.client();
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").expect("schema");
    install(&db.dsn(), &tables(&["t"])).expect("install");
    c.batch_execute("DROP TRIGGER sealtrail_capture_update ON t")
        .expect("drop trigger");
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert_eq!(st.missing_triggers, ["public.t"]);
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 1);
    let ev = events(&t.trail);
    assert_eq!(ev[0]["action"], "pg.ddl");
    assert_eq!(ev[0]["details"]["command_tag"], "DROP TRIGGER");
    assert_eq!(
        ev[0]["targets"],
        json!([{"type": "trigger", "id": "sealtrail_capture_update on public.t"}])
    );
    // A re-install puts it back.
    install(&db.dsn(), &tables(&["t"])).expect("reinstall");
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert!(st.missing_triggers.is_empty());
}

/// Rows an install before version 3 stored (one jsonb `payload` built by
/// the trigger) still wait in the outbox after an upgrade; they must drain
/// into the same events as the plain columns the triggers now write.
#[test]
fn rows_in_the_earlier_payload_layout_drain_alike() {
    let db = Db::new("layout");
    let mut c = db.client();
    c.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v numeric, note text, doc jsonb)")
        .expect("schema");
    install(&db.dsn(), &tables(&["items"])).expect("install");
    c.batch_execute(
        "BEGIN;
         SET LOCAL sealtrail.actor = 'u-5';
         SET LOCAL sealtrail.reason = 'ticket OPS-7';
         SET LOCAL sealtrail.request_id = 'req-2';
         SET LOCAL application_name = 'billing';
         INSERT INTO items VALUES (1, 12345678901234567.89, 'a', '{\"k\": [1, 2]}');
         UPDATE items SET v = 1.50, note = NULL WHERE id = 1;
         DELETE FROM items WHERE id = 1;
         COMMIT;",
    )
    .expect("changes");
    // The same three changes as the version 2 trigger wrote them.
    let copied = c
        .execute(
            "INSERT INTO sealtrail.outbox (xid, kind, payload)
             SELECT xid, kind, jsonb_build_object(
                 'schema', table_schema, 'table', table_name, 'key', '[\"id\"]'::jsonb,
                 'before', before::jsonb, 'after', after::jsonb, 'actor', actor, 'reason', reason,
                 'request_id', request_id, 'role', role, 'application_name', application_name)
               FROM sealtrail.outbox WHERE payload IS NULL ORDER BY id",
            &[],
        )
        .expect("copy in the earlier layout");
    assert_eq!(copied, 3);
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 6);
    let ev = events(&t.trail);
    assert_eq!(
        actions(&ev),
        [
            "pg.insert",
            "pg.update",
            "pg.delete",
            "pg.insert",
            "pg.update",
            "pg.delete"
        ]
    );
    let comparable = |e: &Value| {
        let mut e = e.clone();
        let o = e.as_object_mut().expect("event");
        for key in ["id", "idempotency_key", "occurred_at", "received_at", "hash", "index"] {
            o.remove(key);
        }
        let d = o.get_mut("details").and_then(Value::as_object_mut).expect("details");
        d.remove("outbox_id");
        d.remove("captured_at");
        e
    };
    for (now, before) in ev[..3].iter().zip(&ev[3..]) {
        assert_eq!(comparable(now), comparable(before));
    }
    assert_eq!(ev[0]["changes"]["after"]["v"], json!("12345678901234567.89"));
    assert_eq!(ev[1]["changes"]["fields"], json!(["note", "v"]));
    assert_eq!(ev[0]["actor"], json!({"id": "u-5", "type": "user"}));
    assert_eq!(ev[0]["details"]["application_name"], "billing");
    assert_eq!(ev[2]["targets"], json!([{"type": "public.items", "id": "1"}]));
}

#[test]
fn rows_drain_in_transaction_order_when_ids_gain_a_digit() {
    let db = Db::new("digits");
    install(&db.dsn(), &InstallOptions::default()).expect("install");
    let mut c = db.client();
    c.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
        .expect("schema");
    // Copies of the captured DDL row under transaction ids 100 and 99,
    // both long ended: in number order 99 comes first, in text order last.
    for xid in ["100", "99"] {
        let copied = c
            .execute(
                "INSERT INTO sealtrail.outbox (xid, kind, payload)
                 SELECT $1::text::xid8, kind, payload FROM sealtrail.outbox
                  WHERE xid > '100'::xid8 ORDER BY id LIMIT 1",
                &[&xid],
            )
            .expect("copy under an earlier transaction id");
        assert_eq!(copied, 1);
    }
    let real: String = c
        .query_one("SELECT xid::text FROM sealtrail.outbox WHERE xid > '100'::xid8", &[])
        .expect("the captured row")
        .get(0);
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 3);
    let order: Vec<String> = events(&t.trail)
        .iter()
        .map(|e| e["details"]["transaction_id"].as_str().expect("xid").to_string())
        .collect();
    assert_eq!(order, ["99".to_string(), "100".to_string(), real]);
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert_eq!((st.pending, st.drained_total), (0, 3));
}

/// A captured table may have columns named as the capture functions'
/// own variables; inserts and deletes on it, with and without excluded
/// columns, are captured with the session's context, not the columns.
#[test]
fn columns_named_as_the_capture_variables_are_captured_as_columns() {
    let db = Db::new("varnames");
    let mut c = db.client();
    c.batch_execute(
        "CREATE TABLE notes (id int PRIMARY KEY, actor text, reason text, request_id text, app text, tg_op text);
         CREATE TABLE hidden (id int PRIMARY KEY, actor text, reason text, secret text);",
    )
    .expect("schema");
    let mut opts = tables(&["notes", "hidden"]);
    opts.exclude_columns = vec!["hidden.secret".into()];
    install(&db.dsn(), &opts).expect("install");
    c.batch_execute(
        "BEGIN;
         SET LOCAL sealtrail.actor = 'u-1';
         SET LOCAL sealtrail.reason = 'the session''s reason';
         INSERT INTO notes VALUES (1, 'column actor', 'column reason', 'column request', 'column app', 'column op');
         INSERT INTO hidden VALUES (1, 'column actor', 'column reason', 's');
         DELETE FROM notes;
         DELETE FROM hidden;
         COMMIT;",
    )
    .expect("changes on tables with such columns");
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 4);
    let ev = events(&t.trail);
    assert_eq!(actions(&ev), ["pg.insert", "pg.insert", "pg.delete", "pg.delete"]);
    for e in &ev {
        assert_eq!(e["actor"]["id"], "u-1", "{e}");
        assert_eq!(e["details"]["reason"], "the session's reason", "{e}");
    }
    assert_eq!(ev[0]["changes"]["after"]["actor"], "column actor");
    assert_eq!(ev[0]["changes"]["after"]["tg_op"], "column op");
    assert_eq!(ev[3]["changes"]["before"]["reason"], "column reason");
    assert!(ev[3]["changes"]["before"].get("secret").is_none(), "{}", ev[3]);
}

/// A backlog longer than a batch drains batch by batch from one ordered
/// read of the outbox's keys, each batch appended and then deleted, every
/// row once and in transaction order.
#[test]
fn a_backlog_drains_in_batches_in_transaction_order() {
    let db = Db::new("backlog");
    let mut c = db.client();
    // A publication of every table covers the outbox too: its deletes need
    // a replica identity, the outbox having no key.
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         CREATE PUBLICATION everything FOR ALL TABLES;",
    )
    .expect("schema");
    install(&db.dsn(), &tables(&["items"])).expect("install");
    // 2,500 rows in 25 transactions of 100, then a later update of the
    // first row, so that the last row in id order is not the last drained.
    for t in 0..25 {
        c.execute(
            "INSERT INTO items SELECT g, 'v' || g FROM generate_series($1::int, $1::int + 99) g",
            &[&(t * 100 + 1)],
        )
        .expect("insert");
    }
    c.batch_execute("UPDATE items SET v = 'changed' WHERE id = 1")
        .expect("update");

    let t = trail();
    let report = drain_all(
        &db.dsn(),
        &t.trail,
        &DrainOptions {
            batch: 1000,
            limit: None,
        },
        2501,
    );
    assert_eq!((report.rows, report.appended), (2501, 2501));
    // Three batches at least; more should a transaction elsewhere on the
    // server have held the horizon back for a while.
    assert!(report.batches >= 3, "{report:?}");
    let ev = events(&t.trail);
    let ids: Vec<&str> = ev
        .iter()
        .map(|e| e["targets"][0]["id"].as_str().expect("target id"))
        .collect();
    let expected: Vec<String> = (1..=2500).chain([1]).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
    assert_eq!(ev[2500]["action"], "pg.update");
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert_eq!((st.pending, st.drained_total), (0, 2501));
}

/// A drain takes the transactions that had ended when it started and
/// ends, however fast writers keep committing: `pg sync` returns, and the
/// server's follower comes back between drains to report and to stop. A
/// cluster of its own, so that no other test's transaction holds the
/// horizon back.
#[test]
fn a_drain_ends_beside_a_writer_that_never_pauses() {
    let pg = Cluster::new(&["autovacuum = off"]);
    pg.client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .expect("schema");
    install(&pg.dsn(), &tables(&["items"])).expect("install");
    let t = trail();
    let written = drain_beside_a_writer(&pg.dsn(), &t.trail, 100_000);

    // The next drain takes the rest; every row is there once.
    drain(&pg.dsn(), &t.trail, &DrainOptions::default()).expect("drain the rest");
    let ids = target_ids(&t.trail);
    assert_eq!(ids, (1..=written).collect::<Vec<_>>());
}

/// The outbox rewritten in the middle of a pass (`VACUUM FULL`), after the
/// next batch's rows were read and before they are deleted: they have
/// moved, so the delete by row version misses most of them, and the batch
/// after finds none of its rows where its keys said. The pass ends there,
/// a new one reads the keys again, the missed rows are appended again and
/// stored once, and every row is in the log once, in order.
///
/// Made deterministic with locks: a session holds the install row, so the
/// drain waits in its first batch's delete (after that batch and the
/// next were read); `VACUUM FULL` queues behind the drain; the install
/// row is released, the delete commits, and the rewrite runs before the
/// drain reads again. The rows of an earlier drain lie dead before the
/// batches (autovacuum off), so the rewrite moves every row: the ones the
/// drain deleted just now are kept by it, since the rewrite's snapshot is
/// older than their delete.
#[test]
fn an_outbox_rewritten_mid_pass_drains_each_row_once_in_order() {
    let pg = Cluster::new(&["autovacuum = off"]);
    let mut c = pg.client();
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         CREATE TABLE earlier (id int PRIMARY KEY);",
    )
    .expect("schema");
    install(&pg.dsn(), &tables(&["items", "earlier"])).expect("install");
    c.batch_execute("INSERT INTO earlier SELECT generate_series(1, 500)")
        .expect("insert");
    let earlier = trail();
    let report = drain(&pg.dsn(), &earlier.trail, &DrainOptions::default()).expect("drain the earlier rows");
    assert_eq!(report.appended, 500);
    for t in 0..30 {
        c.execute(
            "INSERT INTO items SELECT g, 'v' FROM generate_series($1::int, $1::int + 99) g",
            &[&(t * 100 + 1)],
        )
        .expect("insert");
    }
    let waiting = |c: &mut postgres::Client, query: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                    &[&format!("{query}%")],
                )
                .expect("pg_stat_activity")
                .get(0);
            if n > 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing waits in `{query}` after 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    let t = trail();
    let report = std::thread::scope(|s| {
        // Held inside the scope, so that a failed wait below drops it (and
        // its lock) before the scope waits for the drainer.
        let mut holder = pg.client();
        holder
            .batch_execute("BEGIN; SELECT 1 FROM sealtrail.install FOR UPDATE")
            .expect("hold the install row");
        let drainer = s.spawn(|| {
            drain(
                &pg.dsn(),
                &t.trail,
                &DrainOptions {
                    batch: 1000,
                    limit: None,
                },
            )
        });
        waiting(&mut c, "UPDATE sealtrail.install");
        let rewrite = s.spawn(|| {
            pg.client()
                .batch_execute("VACUUM FULL sealtrail.outbox")
                .expect("rewrite the outbox")
        });
        waiting(&mut c, "VACUUM FULL");
        holder.batch_execute("ROLLBACK").expect("release the install row");
        rewrite.join().expect("the rewrite");
        drainer.join().expect("the drainer").expect("drain")
    });
    // Rows of the second batch, read before the rewrite, were missed by
    // their delete and deleted only in a later pass: appended twice,
    // stored once.
    assert!(report.duplicates > 0, "{report:?}");
    assert_eq!(report.appended, 3000, "{report:?}");
    let ids = target_ids(&t.trail);
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>());
    let st = status(&pg.dsn()).expect("status").install.expect("installed");
    assert_eq!((st.pending, st.drained_total), (0, 3500));
}

/// The trigger functions run under the writer's `search_path`. A writer
/// that is no superuser puts a schema of its own before pg_catalog, with a
/// function, operator or type of the same name as each built-in the
/// functions use; the shadows forge values or raise. What is recorded
/// must be the true rows, settings and role all the same. The tables have
/// columns named as the functions' aliases of the transition tables.
#[test]
fn a_writer_search_path_that_shadows_pg_catalog_records_the_true_changes() {
    // Declared before the connections, so dropped after them.
    let guard = WithRole::new(Db::new("shadow"), "writer");
    let (db, writer) = (guard.db(), guard.role.clone());
    let mut c = db.client();
    c.batch_execute(&format!(
        "CREATE ROLE {writer} LOGIN;
         CREATE SCHEMA evil AUTHORIZATION {writer};
         CREATE TABLE items (id int PRIMARY KEY, n numeric, o text);
         CREATE TABLE secrets (id int PRIMARY KEY, n text, o text, secret text);
         GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON items, secrets TO {writer};"
    ))
    .expect("schema and role");
    let mut opts = tables(&["items", "secrets"]);
    opts.exclude_columns = vec!["secrets.secret".into()];
    install(&db.dsn(), &opts).expect("install");

    let mut w = postgres::Client::connect(&db.dsn_as(&writer), postgres::NoTls).expect("connect as the writer");
    w.batch_execute(
        r#"SET search_path = evil, pg_catalog;
         CREATE FUNCTION evil.row_to_json(r record) RETURNS pg_catalog.json LANGUAGE plpgsql
             AS $$ BEGIN RETURN '{"id": 1, "forged": "row_to_json"}'; END $$;
         CREATE FUNCTION evil.to_jsonb(v anyelement) RETURNS pg_catalog.jsonb LANGUAGE plpgsql
             AS $$ BEGIN RETURN '{"id": 1, "forged": "to_jsonb"}'; END $$;
         CREATE FUNCTION evil.current_setting(pg_catalog.text, pg_catalog.bool) RETURNS pg_catalog.text
             LANGUAGE plpgsql AS $$ BEGIN RETURN 'forged'; END $$;
         CREATE FUNCTION evil.current_query() RETURNS pg_catalog.text
             LANGUAGE plpgsql AS $$ BEGIN RETURN 'forged'; END $$;
         CREATE FUNCTION evil.minus(pg_catalog.jsonb, pg_catalog.text[]) RETURNS pg_catalog.jsonb
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil.- called'; END $$;
         CREATE OPERATOR evil.- (LEFTARG = pg_catalog.jsonb, RIGHTARG = pg_catalog.text[], FUNCTION = evil.minus);
         CREATE FUNCTION evil.eq(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.bool
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil.= called'; END $$;
         CREATE OPERATOR evil.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = evil.eq);
         CREATE FUNCTION evil.gt(pg_catalog.int4, pg_catalog.int4) RETURNS pg_catalog.bool
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil.> called'; END $$;
         CREATE OPERATOR evil.> (LEFTARG = pg_catalog.int4, RIGHTARG = pg_catalog.int4, FUNCTION = evil.gt);
         CREATE DOMAIN evil.json AS pg_catalog.text CHECK (VALUE IS NULL);
         CREATE DOMAIN evil.text AS pg_catalog.text CHECK (VALUE IS NULL);"#,
    )
    .expect("the writer's shadows");
    // The shadows are what an unqualified name finds in this session.
    let row = w.query_one(
        "SELECT current_setting('sealtrail.actor', true)::pg_catalog.text,
                    row_to_json(t)::pg_catalog.text, 'x'::text IS NULL
               FROM (SELECT 1 AS x) t",
        &[],
    );
    match row {
        Err(e) => {
            let d = e.as_db_error().expect("a database error");
            assert_eq!((d.schema(), d.datatype()), (Some("evil"), Some("text")), "{e:?}")
        }
        Ok(r) => panic!("the writer's text domain was not found: {r:?}"),
    }
    let row = w
        .query_one(
            "SELECT current_setting('sealtrail.actor', true)::pg_catalog.text,
                    row_to_json(t)::pg_catalog.text FROM (SELECT 1 AS x) t",
            &[],
        )
        .expect("shadowed calls");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("forged".into(), r#"{"id": 1, "forged": "row_to_json"}"#.into())
    );

    // The tables are named by schema: the writer's path has no public.
    w.batch_execute(
        "BEGIN;
         SET LOCAL sealtrail.actor = 'u-9';
         SET LOCAL sealtrail.reason = 'ticket 3';
         SET LOCAL sealtrail.request_id = 'req-4';
         SET LOCAL application_name = 'shop';
         INSERT INTO public.items VALUES (1, 1.5, 'ann');
         INSERT INTO public.secrets VALUES (1, 'bob', 'x', 's1');
         UPDATE public.items SET o = 'anne' WHERE id = 1;
         UPDATE public.secrets SET n = 'bobby', secret = 's2' WHERE id = 1;
         DELETE FROM public.items WHERE id = 1;
         DELETE FROM public.secrets WHERE id = 1;
         TRUNCATE public.items;
         COMMIT;",
    )
    .expect("changes under the shadowing search_path");

    let t = trail();
    // The writer's 12 statements that made its shadows are DDL, recorded
    // by the DDL function (which keeps its own search_path), then the
    // changes.
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 19);
    let all = events(&t.trail);
    assert_eq!(actions(&all[..12]), ["pg.ddl"; 12]);
    let ev = &all[12..];
    assert_eq!(
        actions(ev),
        [
            "pg.insert",
            "pg.insert",
            "pg.update",
            "pg.update",
            "pg.delete",
            "pg.delete",
            "pg.truncate"
        ]
    );
    let images: Vec<(&Value, &Value)> = ev[..6]
        .iter()
        .map(|e| (&e["changes"]["before"], &e["changes"]["after"]))
        .collect();
    assert_eq!(
        images,
        [
            (&Value::Null, &json!({"id": 1, "n": 1.5, "o": "ann"})),
            (&Value::Null, &json!({"id": 1, "n": "bob", "o": "x"})),
            (
                &json!({"id": 1, "n": 1.5, "o": "ann"}),
                &json!({"id": 1, "n": 1.5, "o": "anne"})
            ),
            (
                &json!({"id": 1, "n": "bob", "o": "x"}),
                &json!({"id": 1, "n": "bobby", "o": "x"})
            ),
            (&json!({"id": 1, "n": 1.5, "o": "anne"}), &Value::Null),
            (&json!({"id": 1, "n": "bobby", "o": "x"}), &Value::Null),
        ]
    );
    assert_eq!(ev[2]["changes"]["fields"], json!(["o"]));
    assert_eq!(ev[3]["changes"]["fields"], json!(["n"]));
    for e in ev {
        assert_eq!(e["actor"], json!({"id": "u-9", "type": "user"}), "{e}");
        assert_eq!(e["details"]["reason"], "ticket 3", "{e}");
        assert_eq!(e["context"]["request_id"], "req-4", "{e}");
        assert_eq!(e["details"]["application_name"], "shop", "{e}");
        assert_eq!(e["details"]["role"], writer.as_str(), "{e}");
    }
    assert_eq!(ev[6]["targets"], json!([{"type": "table", "id": "public.items"}]));
    assert!(ev[6]["details"]["statement"]
        .as_str()
        .expect("statement")
        .contains("TRUNCATE public.items;"));
}

/// A test database and a role owning objects in it: the database is
/// dropped first, then the role, also when the test fails.
struct WithRole {
    db: Option<Db>,
    role: String,
}

impl WithRole {
    /// `db` and the name of a role of it, `<database>_<suffix>`, which the
    /// test creates.
    fn new(db: Db, suffix: &str) -> WithRole {
        let role = format!("{}_{suffix}", db.name);
        WithRole { db: Some(db), role }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("database")
    }
}

impl Drop for WithRole {
    fn drop(&mut self) {
        drop(self.db.take());
        let dropped = sealtrail_testgen::pg::admin().batch_execute(&format!("DROP ROLE IF EXISTS {}", self.role));
        if let Err(e) = dropped {
            eprintln!("dropping role {}: {e}", self.role);
        }
    }
}

/// Converting a row to JSON runs a cast to `json` that the owner of a
/// column's type wrote. The row-capture functions are SECURITY DEFINER:
/// installed by a superuser, they belong to the capture role, so such a
/// cast runs with that role's rights (adding to the outbox), never the
/// installer's.
#[test]
fn a_cast_to_json_written_by_a_type_owner_runs_without_the_installers_rights() {
    let guard = WithRole::new(Db::new("cast_owner"), "owner");
    let (db, owner) = (guard.db(), guard.role.clone());
    let mut c = db.client();
    c.batch_execute(&format!(
        "CREATE ROLE {owner} LOGIN;
         GRANT CREATE ON SCHEMA public TO {owner};"
    ))
    .expect("the type owner");
    let mut o = postgres::Client::connect(&db.dsn_as(&owner), postgres::NoTls).expect("connect as the type owner");
    o.batch_execute(
        r#"CREATE TYPE public.mood AS ENUM ('calm', 'cross');
         CREATE TABLE public.ran_as (who text, super boolean);
         GRANT INSERT ON public.ran_as TO PUBLIC;
         CREATE FUNCTION public.mood_json(m public.mood) RETURNS json LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.ran_as
                 SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
             RETURN pg_catalog.to_json(m::text);
         END $$;
         CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);
         CREATE TABLE public.moods (id int PRIMARY KEY, m public.mood);"#,
    )
    .expect("a type with a cast to json, and a table of it");
    install(&db.dsn(), &tables(&["moods"])).expect("install as a superuser");
    o.batch_execute(
        "INSERT INTO public.moods VALUES (1, 'calm');
         UPDATE public.moods SET m = 'cross' WHERE id = 1;
         DELETE FROM public.moods;",
    )
    .expect("changes by the type owner");
    let ran: Vec<(String, bool)> = c
        .query("SELECT who, super FROM public.ran_as", &[])
        .expect("where the cast ran")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Once per image: the insert's, the update's two, the delete's.
    assert_eq!(ran, vec![("sealtrail_capture".to_string(), false); 4]);
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 3);
    let ev = events(&t.trail);
    assert_eq!(actions(&ev), ["pg.insert", "pg.update", "pg.delete"]);
    assert_eq!(ev[1]["changes"]["after"]["m"], "cross");
    // The type owner's cast and table go with the database; its role
    // must own nothing else when the guard drops it.
    drop(o);
}

/// The functions that the capture trigger `trigger` runs, on every table.
fn functions_of(c: &mut postgres::Client, trigger: &str) -> Vec<String> {
    c.query(
        "SELECT p.proname::text FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
          WHERE g.tgname = $1 ORDER BY 1",
        &[&trigger],
    )
    .expect("the trigger's function")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// An install of version 3 set `search_path` on every call of its trigger
/// functions, and installs before version 6 captured inserts and deletes
/// with one function, `capture_rows`; re-running install replaces them
/// with ones that do not, drops the old function, and keeps what waits in
/// the outbox.
#[test]
fn an_install_of_version_3_upgrades_in_place() {
    let db = Db::new("upgrade3");
    let mut c = db.client();
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .expect("schema");
    let first = install(&db.dsn(), &tables(&["t"])).expect("install");
    // What version 3 left: the same functions with a SET clause each.
    c.batch_execute(
        "INSERT INTO t VALUES (1, 'a');
         ALTER FUNCTION sealtrail.capture_row() SET search_path = pg_catalog, pg_temp;
         ALTER FUNCTION sealtrail.capture_row_excluding() SET search_path = pg_catalog, pg_temp;
         ALTER FUNCTION sealtrail.capture_truncate() SET search_path = pg_catalog, pg_temp;
         CREATE FUNCTION sealtrail.capture_rows() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
             SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$;
         DROP TRIGGER sealtrail_capture_insert ON t;
         CREATE TRIGGER sealtrail_capture_insert AFTER INSERT ON t REFERENCING NEW TABLE AS sealtrail_new
             FOR EACH STATEMENT EXECUTE FUNCTION sealtrail.capture_rows('[\"id\"]');
         ALTER TABLE sealtrail.outbox ADD PRIMARY KEY (xid, id);
         UPDATE sealtrail.install SET version = 3;
         -- The simulation's own trigger DDL was captured: not this test's business.
         DELETE FROM sealtrail.outbox WHERE kind = 'ddl';",
    )
    .expect("a version 3 install");
    let configured = |c: &mut postgres::Client| -> Vec<String> {
        c.query(
            "SELECT proname::text FROM pg_proc
              WHERE pronamespace = 'sealtrail'::regnamespace AND proconfig IS NOT NULL ORDER BY 1",
            &[],
        )
        .expect("functions with settings")
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(
        configured(&mut c),
        [
            "capture_ddl",
            "capture_row",
            "capture_row_excluding",
            "capture_rows",
            "capture_truncate",
            "set_actor"
        ]
    );
    assert_eq!(
        functions_of(&mut c, "sealtrail_capture_insert"),
        ["capture_rows"],
        "the earlier version's insert trigger"
    );
    let second = install(&db.dsn(), &tables(&["t"])).expect("upgrade");
    assert!(!second.fresh);
    assert_eq!((second.version, second.epoch.as_str()), (VERSION, first.epoch.as_str()));
    assert_eq!(configured(&mut c), ["capture_ddl", "set_actor"]);
    // The row-capture functions now belong to the capture role.
    let owners: Vec<(String, String)> = c
        .query(
            "SELECT p.proname::text, p.proowner::regrole::text FROM pg_proc p
              WHERE p.pronamespace = 'sealtrail'::regnamespace ORDER BY 1",
            &[],
        )
        .expect("owners")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let capture = |f: &str| (f.to_string(), CAPTURE_ROLE.to_string());
    let installer = |f: &str| (f.to_string(), "postgres".to_string());
    assert_eq!(
        owners,
        [
            installer("capture_ddl"),
            capture("capture_deleted"),
            capture("capture_inserted"),
            capture("capture_row"),
            capture("capture_row_excluding"),
            capture("capture_rows_excluding"),
            capture("capture_truncate"),
            installer("set_actor")
        ]
    );
    assert_eq!(functions_of(&mut c, "sealtrail_capture_insert"), ["capture_inserted"]);
    // Writers maintain no index of the outbox.
    let indexes: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'sealtrail.outbox'::regclass",
            &[],
        )
        .expect("the outbox's indexes")
        .get(0);
    assert_eq!(indexes, 0);
    let identity: i8 = c
        .query_one(
            "SELECT relreplident::\"char\" FROM pg_class WHERE oid = 'sealtrail.outbox'::regclass",
            &[],
        )
        .expect("the outbox's replica identity")
        .get(0);
    assert_eq!(identity as u8, b'f');
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert_eq!((st.version, st.pending), (VERSION, 1));
    // An update that changes nothing never reaches the outbox.
    c.batch_execute("UPDATE t SET v = v; UPDATE t SET v = 'b'")
        .expect("update");
    let st = status(&db.dsn()).expect("status").install.expect("installed");
    assert_eq!(st.pending, 2);
    let t = trail();
    drain_all(&db.dsn(), &t.trail, &DrainOptions::default(), 2);
    let ev = events(&t.trail);
    assert_eq!(actions(&ev), ["pg.insert", "pg.update"]);
    assert_eq!(ev[1]["changes"]["after"], json!({"id": 1, "v": "b"}));
}
