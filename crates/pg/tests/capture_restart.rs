//! PostgreSQL itself crashing (an immediate stop, as at power loss) while
//! changes are being drained, then restarted: every committed change is
//! in the trail exactly once, and a transaction cut by the crash leaves
//! nothing. The test runs its own throw-away cluster on a free port, so
//! the shared server other tests use is never stopped.

mod capture_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture_support::{create_trail, drain_until_empty, events, open_trail};
use sealtrail_pg::capture::{install, InstallOptions, Tables};
use sealtrail_pg::drain::{drain, DrainOptions};
use sealtrail_testgen::cluster::Cluster;

#[test]
fn a_postgresql_crash_mid_drain_loses_and_duplicates_nothing() {
    let pg = Cluster::new(&[]);
    let mut c = pg.client();
    c.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v int)")
        .expect("schema");
    install(
        &pg.dsn(),
        &InstallOptions {
            tables: Tables::List(vec!["items".into()]),
            ..InstallOptions::default()
        },
    )
    .expect("install");
    let dir = tempfile::tempdir().expect("temp dir");
    create_trail(dir.path());
    let trail = Arc::new(open_trail(dir.path()));

    // Committed before the crash: 2,000 inserts in 20 transactions.
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    for t in 0..20 {
        let mut tx = c.transaction().expect("begin");
        for i in 0..100 {
            let id = t * 100 + i;
            tx.execute("INSERT INTO items VALUES ($1, 0)", &[&id]).expect("insert");
            *expected.entry(id.to_string()).or_default() += 1;
        }
        tx.commit().expect("commit");
    }
    // Open when the server dies: never committed, so never captured.
    let mut cut = pg.client();
    cut.batch_execute("BEGIN; INSERT INTO items SELECT g, 0 FROM generate_series(100000, 100499) g;")
        .expect("open transaction");

    // Drain in small batches on another thread while the server crashes.
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (trail, stop, dsn) = (trail.clone(), stop.clone(), pg.dsn());
        std::thread::spawn(move || {
            let mut drained = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Errors are expected while the server is down.
                if let Ok(report) = drain(
                    &dsn,
                    &trail,
                    &DrainOptions {
                        batch: 50,
                        limit: Some(200),
                    },
                ) {
                    drained += report.appended;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            drained
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while trail.log().size() < 300 {
        assert!(Instant::now() < deadline, "the drain made no progress before the crash");
        std::thread::sleep(Duration::from_millis(2));
    }
    pg.crash();
    drop(cut);
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    pg.start();
    stop.store(true, Ordering::Relaxed);
    drainer.join().expect("drainer thread");
    assert!(
        trail.log().size() < 2000,
        "the crash came after everything was drained; it proved nothing"
    );

    // After the restart, drain to the end.
    drain_until_empty(&pg.dsn(), &trail);

    let mut found: BTreeMap<String, u32> = BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    for e in events(&trail) {
        let key = e["idempotency_key"].as_str().expect("key").to_string();
        assert!(keys.insert(key.clone()), "key {key} stored twice");
        assert_eq!(e["action"], "pg.insert", "{e}");
        *found
            .entry(e["targets"][0]["id"].as_str().expect("target id").to_string())
            .or_default() += 1;
    }
    assert_eq!(found, expected);
    let rows: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM items", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 2000, "the cut transaction left no rows");
}
