//! Capture benchmarks against the local PostgreSQL server, each beside its
//! baseline from the same run:
//!
//! 1. overhead of the row triggers on pgbench-style single-row updates
//!    (autocommit, random key, several clients), without and with capture;
//! 2. overhead on a bulk `INSERT … SELECT`, without and with capture;
//! 3. drain throughput into a trail, beside a plain read of the same
//!    outbox rows in the drain's order (what PostgreSQL alone costs).
//!
//! cargo run --release -p sealtrail-pg --example capture_bench -- [updates] [bulk rows] [drain rows]

use std::time::Instant;

use postgres::{Client, NoTls};
use sealtrail_ledger::DataDir;
use sealtrail_pg::capture::{install, uninstall, InstallOptions, Tables};
use sealtrail_pg::drain::{drain, DrainOptions};
use sealtrail_trail::{Trail, TrailOptions};

const SERVER: &str = "host=127.0.0.1 port=5432 user=postgres";
const CLIENTS: usize = 4;
const ACCOUNTS: i32 = 100_000;

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map(|a| a.parse().expect("a count"))
            .unwrap_or(default)
    };
    let (updates, bulk, drained) = (arg(1, 20_000), arg(2, 1_000_000), arg(3, 200_000));
    let name = format!("st_capture_bench_{}", std::process::id());
    let mut admin = Client::connect(&format!("{SERVER} dbname=postgres"), NoTls).expect("PostgreSQL on 127.0.0.1:5432");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create database");
    let dsn = format!("{SERVER} dbname={name}");
    let result = std::panic::catch_unwind(|| run(&dsn, updates, bulk, drained));
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .expect("drop database");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn run(dsn: &str, updates: usize, bulk: usize, drained: usize) {
    let mut c = Client::connect(dsn, NoTls).expect("connect");
    c.batch_execute(&format!(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, branch int NOT NULL, filler char(84));
         INSERT INTO accounts SELECT g, 0, g % 10, '' FROM generate_series(1, {ACCOUNTS}) g;
         CREATE TABLE bulk (id bigint PRIMARY KEY, amount numeric, note text);"
    ))
    .expect("schema");
    c.batch_execute("VACUUM ANALYZE accounts").expect("vacuum");
    let capture = InstallOptions {
        tables: Tables::List(vec!["accounts".into(), "bulk".into()]),
        ..InstallOptions::default()
    };

    // 1. Single-row updates. Alternate runs so that drift of the shared
    // machine hits both sides alike; report the best of each.
    let (mut plain, mut captured) = (0f64, 0f64);
    for round in 0..3 {
        let _ = uninstall(dsn, true);
        plain = plain.max(update_rate(dsn, updates, round * 2));
        install(dsn, &capture).expect("install");
        captured = captured.max(update_rate(dsn, updates, round * 2 + 1));
        c.batch_execute("TRUNCATE sealtrail.outbox").expect("empty outbox");
    }
    println!(
        "single-row updates, {CLIENTS} clients, {updates} per run: without capture {plain:.0}/s, with capture {captured:.0}/s, overhead {:.1}%",
        (plain / captured - 1.0) * 100.0
    );

    // 2. Bulk INSERT … SELECT.
    let bulk_time = |c: &mut Client| {
        c.batch_execute("TRUNCATE bulk").expect("truncate");
        let start = Instant::now();
        c.batch_execute(&format!(
            "INSERT INTO bulk SELECT g, g * 0.01, 'note ' || g FROM generate_series(1, {bulk}) g"
        ))
        .expect("bulk insert");
        start.elapsed().as_secs_f64()
    };
    uninstall(dsn, true).expect("uninstall");
    let plain_bulk = bulk_time(&mut c);
    install(dsn, &capture).expect("install");
    let captured_bulk = bulk_time(&mut c);
    c.batch_execute("TRUNCATE sealtrail.outbox").expect("empty outbox");
    println!(
        "bulk INSERT … SELECT of {bulk} rows: without capture {plain_bulk:.2} s, with capture {captured_bulk:.2} s, {:.2}x",
        captured_bulk / plain_bulk
    );

    // 3. Drain throughput: `drained` row changes, 1,000 per transaction.
    c.batch_execute("TRUNCATE bulk; TRUNCATE sealtrail.outbox")
        .expect("empty");
    let mut at = 0;
    while at < drained {
        let n = (drained - at).min(1000);
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL sealtrail.actor = 'bench'; INSERT INTO bulk SELECT g, g * 0.01, 'note ' || g FROM generate_series({}, {}) g; COMMIT;",
            at + 1,
            at + n
        ))
        .expect("generate changes");
        at += n;
    }
    // Let the horizon pass the last writer.
    c.batch_execute("SELECT pg_sleep(0.2)").expect("sleep");
    let start = Instant::now();
    let read: u64 = c
        .query(
            "SELECT id, xid::text, kind, payload::text, captured_at FROM sealtrail.outbox
              WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid, id",
            &[],
        )
        .expect("read")
        .iter()
        .map(|r| r.get::<_, String>(3).len() as u64)
        .sum();
    let read_time = start.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = DataDir::new(dir.path());
    data.create_log("default", None).expect("create log");
    let trail = Trail::open(&data, "default", TrailOptions::default()).expect("open trail");
    let start = Instant::now();
    let mut rows = 0;
    while rows < drained as u64 {
        rows += drain(dsn, &trail, &DrainOptions::default()).expect("drain").rows;
    }
    let drain_time = start.elapsed().as_secs_f64();
    assert_eq!(trail.log().size(), drained as u64);
    println!(
        "drain of {drained} row changes into a trail: {:.0}/s ({drain_time:.2} s); baseline plain read of the outbox ({} MB of payload) {:.0}/s; drain at {:.2} of the read rate",
        drained as f64 / drain_time,
        read / 1_000_000,
        drained as f64 / read_time,
        read_time / drain_time
    );
}

/// Updates per second: `CLIENTS` connections, `total` autocommit updates of
/// one random account each.
fn update_rate(dsn: &str, total: usize, seed: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let dsn = dsn.to_string();
            std::thread::spawn(move || {
                let mut c = Client::connect(&dsn, NoTls).expect("connect");
                let update = c
                    .prepare("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
                    .expect("prepare");
                let mut x = (seed * 7919 + t * 104_729 + 1) as u64;
                for _ in 0..total / CLIENTS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = (x % ACCOUNTS as u64) as i32 + 1;
                    c.execute(&update, &[&((x % 1000) as i64 - 500), &id]).expect("update");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    total as f64 / start.elapsed().as_secs_f64()
}
