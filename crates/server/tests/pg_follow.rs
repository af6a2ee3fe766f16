//! The real server following PostgreSQL capture sources on 127.0.0.1:5432:
//! row changes made before and while it runs reach the log exactly once,
//! and an unreachable source shows `failing` without stopping the server.

// For the shared harness (`support`), written with `unwrap`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use sealtrail_meta::Scope;
use sealtrail_pg::capture::{self, InstallOptions, Tables};
use sealtrail_server::config::PgSource;
use sealtrail_server::{router, Server};
use sealtrail_testgen::pg::TestDatabase;
use serde_json::Value;

mod support;

/// Every event of `log` as JSON, in log order.
fn events(server: &Server, log: &str) -> Vec<Value> {
    let Some(trail) = server.app.open_trail(log) else {
        return Vec::new();
    };
    (0..trail.log().size())
        .map(|i| {
            let found = trail.read(i).expect("read an entry");
            serde_json::from_slice(&found.entry).expect("an entry is JSON")
        })
        .collect()
}

fn count_actions(events: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e["action"].as_str().expect("action").to_string()).or_insert(0) += 1;
    }
    m
}

/// Run `f` with a blocking PostgreSQL client, off the async threads.
async fn pg<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("PostgreSQL work")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_drains_changes_exactly_once_and_survives_an_unreachable_source() {
    let db = pg(|| TestDatabase::new("follow")).await;
    let dsn = db.dsn();
    let setup_dsn = dsn.clone();
    // Twenty rows before the server starts: waiting in the outbox.
    pg(move || {
        let mut c = Client::connect(&setup_dsn, NoTls).expect("connect");
        c.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL)")
            .expect("create table");
        capture::install(
            &setup_dsn,
            &InstallOptions {
                tables: Tables::List(vec!["orders".into()]),
                ..InstallOptions::default()
            },
        )
        .expect("install capture");
        for i in 0..20 {
            c.execute("INSERT INTO orders VALUES ($1, $2)", &[&i, &(i * 10)])
                .expect("insert");
        }
    })
    .await;

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = support::config(&dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.postgres.sources = vec![
        PgSource {
            name: "shop".into(),
            dsn: dsn.clone(),
            log: "shop-db".into(),
            poll_interval_ms: 50,
            batch: 7,
        },
        PgSource {
            name: "down".into(),
            // Nothing listens on port 1: connecting fails at once.
            dsn: "postgresql://postgres:hunter2@127.0.0.1:1/nowhere?connect_timeout=2".into(),
            log: "down-db".into(),
            poll_interval_ms: 50,
            batch: 100,
        },
    ];
    let server = Server::start(config).await.expect("server starts");

    // While it runs: 30 more inserts (one transaction of 10, 20 alone),
    // 10 updates, 5 deletes, and an update that changes nothing (not
    // captured).
    let mut c = pg({
        let dsn = dsn.clone();
        move || Client::connect(&dsn, NoTls).expect("connect")
    })
    .await;
    let mut c = pg(move || {
        let mut tx = c.transaction().expect("begin");
        for i in 20..30 {
            tx.execute("INSERT INTO orders VALUES ($1, $2)", &[&i, &(i * 10)])
                .expect("insert");
        }
        tx.commit().expect("commit");
        for i in 30..50 {
            c.execute("INSERT INTO orders VALUES ($1, $2)", &[&i, &(i * 10)])
                .expect("insert");
        }
        for i in 0..10 {
            c.execute("UPDATE orders SET total = total + 1 WHERE id = $1", &[&i])
                .expect("update");
        }
        c.execute("UPDATE orders SET total = total WHERE id = 11", &[])
            .expect("no-op update");
        c.execute("DELETE FROM orders WHERE id >= 45", &[]).expect("delete");
        c
    })
    .await;

    let expected: BTreeMap<String, usize> = [("pg.delete", 5), ("pg.insert", 50), ("pg.update", 10)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = count_actions(&events(&server, "shop-db"));
        if seen == expected {
            break;
        }
        assert!(Instant::now() < deadline, "events in shop-db after 60 s: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several more polls, and a drain from outside racing the server's
    // (the advisory lock lets one run at a time): nothing is added twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = events(&server, "shop-db");
    assert_eq!(count_actions(&all), expected);
    let keys: BTreeSet<&str> = all
        .iter()
        .map(|e| e["idempotency_key"].as_str().expect("idempotency key"))
        .collect();
    assert_eq!(keys.len(), all.len(), "every event once");
    let updated: BTreeSet<String> = all
        .iter()
        .filter(|e| e["action"] == "pg.update")
        .map(|e| e["targets"][0]["id"].as_str().expect("target id").to_string())
        .collect();
    assert_eq!(updated, (0..10).map(|i| i.to_string()).collect());

    // The outbox is empty.
    let status_dsn = dsn.clone();
    let status = pg(move || capture::status(&status_dsn).expect("status")).await;
    let install = status.install.expect("installed");
    assert_eq!(install.pending, 0);
    assert_eq!(install.drained_total, 65);

    // Health: the source is ok with everything counted; the unreachable
    // one is failing with its cause, its password nowhere.
    let app = server.app.clone();
    let routes = router(app.clone());
    let key = support::create_key(&app, Scope::Read, None, "test");
    let bearer = format!("Bearer {key}");
    // The pending count is read now and then, not at every drain.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let reply = support::send(&routes, http::Method::GET, "/api/v1/system/health", Some(&bearer), None).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if reply.json()["postgres"][0]["pending"] == 0 {
            break reply;
        }
        assert!(Instant::now() < deadline, "pending never 0: {}", reply.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!reply.text().contains("hunter2"), "{}", reply.text());
    let health = reply.json();
    let sources = health["postgres"].as_array().expect("postgres array");
    assert_eq!(sources.len(), 2, "{health}");
    assert_eq!(sources[0]["name"], "shop");
    assert_eq!(sources[0]["state"], "ok", "{health}");
    assert_eq!(sources[0]["drained_total"], 65);
    assert!(sources[0]["last_drain_at"].is_string(), "{health}");
    assert_eq!(sources[0]["pending"], 0, "{health}");
    assert_eq!(sources[1]["name"], "down");
    assert_eq!(sources[1]["state"], "failing", "{health}");
    let error = sources[1]["last_error"].as_str().expect("last_error");
    assert!(error.contains("cannot connect"), "{error}");
    assert_eq!(
        sources[1]["dsn"],
        "postgresql://postgres:***@127.0.0.1:1/nowhere?connect_timeout=2"
    );
    assert!(sources[1].get("last_drain_at").is_none(), "{health}");
    // The failing source appended nothing and did not stop the server.
    assert_eq!(app.open_trail("down-db").map_or(0, |t| t.log().size()), 0);
    let ready = support::send(&routes, http::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());

    let metrics = support::send(&routes, http::Method::GET, "/metrics", None, None)
        .await
        .text();
    assert!(
        metrics.contains("sealtrail_pg_drained_total{source=\"shop\"} 65"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sealtrail_pg_drain_errors_total{source=\"shop\"} 0"),
        "{metrics}"
    );
    let down_errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sealtrail_pg_drain_errors_total{source=\"down\"} "))
        .expect("errors of the down source")
        .parse::<f64>()
        .expect("a number");
    assert!(down_errors >= 1.0, "{metrics}");
    assert!(
        metrics.contains("sealtrail_pg_pending_rows{source=\"shop\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sealtrail_pg_last_drain_timestamp_seconds{source=\"shop\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("hunter2"));

    // A change after all that still arrives, then the server stops promptly.
    pg(move || {
        c.execute("INSERT INTO orders VALUES (100, 1)", &[]).expect("insert");
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while events(&server, "shop-db").len() < 66 {
        assert!(Instant::now() < deadline, "the late insert never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(routes);
    drop(app);
    let stopping = Instant::now();
    server.shutdown();
    server.wait().await.expect("clean stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        stopping.elapsed()
    );
    drop(db);
}
