//! Capture benchmarks, each beside its baseline from the same run, on a
//! throw-away PostgreSQL cluster of this machine's binaries started with
//! `wal_level = logical` (so that every column runs on the same server
//! with the same settings; the shared server runs with `replica`):
//!
//! 1. overhead on pgbench-style single-row updates (autocommit, random
//!    key, several clients): no capture, triggers, logical decoding with
//!    the default replica identity, and with REPLICA IDENTITY FULL (whole
//!    old rows, as the triggers record), best of five rounds and the
//!    median of each round's overhead against its own baseline (drift of
//!    the machine between rounds cancels out); and, apart from commit waits,
//!    the trigger's own cost per update inside one transaction;
//! 2. overhead on a bulk `INSERT … SELECT`: no capture, triggers, logical;
//! 3. drain throughput into a trail: the outbox (triggers) beside a plain
//!    read of the same rows, and the slot (logical) beside the server's
//!    decoding alone (`pg_logical_slot_peek_binary_changes` counted);
//! 4. overhead under the real `pgbench` in a database it initialized:
//!    its built-in `simple-update` transaction with the triggers on the
//!    tables it writes (`pgbench_accounts`, `pgbench_history`), and
//!    `tpcb-like` with them on all four tables, each beside runs without
//!    capture, alternating.
//!
//! cargo run --release -p sealtrail-pg --example capture_bench -- [updates] [bulk rows] [drain rows] [pgbench seconds] [pgbench scale]
//!
//! (defaults 20000, 1000000, 200000, 15 s per pgbench run, scale 10)

use std::time::Instant;

use postgres::{Client, NoTls};
use sealtrail_ledger::DataDir;
use sealtrail_pg::capture::{install, uninstall, InstallOptions, Mode, Tables};
use sealtrail_pg::drain::{drain, DrainOptions};
use sealtrail_testgen::cluster::Cluster;
use sealtrail_testgen::median;
use sealtrail_trail::{Trail, TrailOptions};

// The allocator the `sealtrail` binary runs with, so the drain's figures
// are the server's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CLIENTS: usize = 4;
/// Rounds of the single-row updates, each one run of every kind.
const ROUNDS: usize = 5;
const ACCOUNTS: i32 = 100_000;

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map(|a| a.parse().expect("a count"))
            .unwrap_or(default)
    };
    let (updates, bulk, drained) = (arg(1, 20_000), arg(2, 1_000_000), arg(3, 200_000));
    let (seconds, scale) = (arg(4, 15), arg(5, 10));
    // The shared server's settings (BENCHMARKS.md, "Machine"), but for
    // wal_level.
    let pg = Cluster::new(&[
        "wal_level = logical",
        "max_wal_size = 1GB",
        "shared_buffers = 128MB",
        "synchronous_commit = on",
        "max_replication_slots = 4",
    ]);
    let version: String = pg
        .client()
        .query_one("SHOW server_version", &[])
        .expect("version")
        .get(0);
    println!(
        "PostgreSQL {version}, throw-away cluster on port {}, wal_level = logical",
        pg.port
    );
    run(&pg.dsn(), updates, bulk, drained);
    pgbench(&pg, seconds, scale);
}

/// Measurement 4, the real pgbench: `pgbench -i` a database of its own,
/// then each built-in script for `seconds` per run from `CLIENTS`
/// clients, without capture and with the triggers on the tables the
/// script writes, alternating, best of 3 each.
fn pgbench(pg: &Cluster, seconds: usize, scale: usize) {
    pg.client()
        .batch_execute("CREATE DATABASE pgbench")
        .expect("create the pgbench database");
    let dsn = pg.dsn_of("pgbench");
    let port = pg.port.to_string();
    let connection = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];
    let scale_text = scale.to_string();
    let mut init = connection.to_vec();
    init.extend(["-i", "-q", "-s", scale_text.as_str(), "pgbench"]);
    pg.run("pgbench", &init);
    let mut c = Client::connect(&dsn, NoTls).expect("connect to the pgbench database");
    let scripts: [(&str, &[&str]); 2] = [
        ("simple-update", &["pgbench_accounts", "pgbench_history"]),
        (
            "tpcb-like",
            &[
                "pgbench_accounts",
                "pgbench_branches",
                "pgbench_tellers",
                "pgbench_history",
            ],
        ),
    ];
    for (script, captured) in scripts {
        let mut best = [0f64; 2];
        let mut each = Vec::new();
        for _ in 0..3 {
            let mut tps = [0f64; 2];
            for (k, best) in best.iter_mut().enumerate() {
                let _ = uninstall(&dsn, true);
                if k == 1 {
                    let opts = InstallOptions {
                        tables: Tables::List(captured.iter().map(|t| t.to_string()).collect()),
                        ..InstallOptions::default()
                    };
                    install(&dsn, &opts).expect("install triggers on the pgbench tables");
                }
                // pgbench's own vacuum (`-n` skips it) would truncate
                // pgbench_history, a captured change of its own.
                c.batch_execute("VACUUM").expect("vacuum");
                c.batch_execute("CHECKPOINT").expect("checkpoint");
                tps[k] = pgbench_tps(pg, &connection, script, seconds);
                *best = best.max(tps[k]);
            }
            each.push((tps[0] / tps[1] - 1.0) * 100.0);
        }
        each.sort_by(f64::total_cmp);
        println!(
            "pgbench -b {script}, scale {scale}, {CLIENTS} clients, {seconds} s per run, best of 3: no capture {:.0} tps; triggers on {} {:.0} tps ({:.1}% overhead); each round against its own baseline: median {:.1}% ({})",
            best[0],
            captured.join(", "),
            best[1],
            (best[0] / best[1] - 1.0) * 100.0,
            median(&each),
            each.iter().map(|o| format!("{o:.1}%")).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = uninstall(&dsn, true);
}

/// The tps pgbench reports for one run of built-in `script`.
fn pgbench_tps(pg: &Cluster, connection: &[&str], script: &str, seconds: usize) -> f64 {
    let clients = CLIENTS.to_string();
    let seconds = seconds.to_string();
    let out = pg
        .command("pgbench")
        .args(connection)
        .args([
            "-n", "-b", script, "-c", &clients, "-j", &clients, "-T", &seconds, "pgbench",
        ])
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench -b {script}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {text}"))
}

fn options(mode: Mode) -> InstallOptions {
    InstallOptions {
        tables: Tables::List(vec!["accounts".into(), "bulk".into()]),
        mode,
        ..InstallOptions::default()
    }
}

/// Capture as `setup` names it: `none`, `triggers`, `logical` or
/// `logical-full`, replacing whatever was installed.
fn setup(dsn: &str, c: &mut Client, how: &str) {
    let _ = uninstall(dsn, true);
    let full = if how == "logical-full" { "FULL" } else { "DEFAULT" };
    c.batch_execute(&format!("ALTER TABLE accounts REPLICA IDENTITY {full}"))
        .expect("replica identity");
    match how {
        "none" => {}
        "triggers" => {
            install(dsn, &options(Mode::Triggers)).expect("install triggers");
        }
        _ => {
            install(dsn, &options(Mode::Logical)).expect("install logical");
        }
    }
    // The WAL written so far is nobody's business.
    c.batch_execute("CHECKPOINT").expect("checkpoint");
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

    // 1. Single-row updates. Alternate runs so that drift of the shared
    // machine hits every column alike; report the best of each, and the
    // median of each round's own overhead against its own baseline.
    let kinds = ["none", "triggers", "logical", "logical-full"];
    let mut best = [0f64; 4];
    let mut rates = [[0f64; 4]; ROUNDS];
    for (round, rates) in rates.iter_mut().enumerate() {
        for (k, how) in kinds.iter().enumerate() {
            setup(dsn, &mut c, how);
            rates[k] = update_rate(dsn, updates, round * 4 + k);
            best[k] = best[k].max(rates[k]);
        }
    }
    let overhead = |rate: f64| (best[0] / rate - 1.0) * 100.0;
    for (k, how) in kinds.iter().enumerate().skip(1) {
        let mut each: Vec<f64> = rates.iter().map(|r| (r[0] / r[k] - 1.0) * 100.0).collect();
        each.sort_by(f64::total_cmp);
        println!(
            "single-row updates, {how}: overhead in each of {ROUNDS} rounds against that round's baseline, \
             median {:.1}% (rounds: {})",
            median(&each),
            each.iter().map(|o| format!("{o:.1}%")).collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "single-row updates, {CLIENTS} clients, {updates} per run, best of {ROUNDS}: no capture {:.0}/s; triggers {:.0}/s ({:.1}% overhead); logical {:.0}/s ({:.1}%); logical, REPLICA IDENTITY FULL {:.0}/s ({:.1}%)",
        best[0],
        best[1],
        overhead(best[1]),
        best[2],
        overhead(best[2]),
        best[3],
        overhead(best[3])
    );

    // 1b. What the trigger itself costs: single-row updates inside one
    // transaction (no commit, no fsync, one backend), best of 5. Commit
    // waits and scheduling on a shared machine blur the figures above;
    // this one is the writer's added work alone.
    let mut per_update = [f64::MAX; 2];
    for _ in 0..5 {
        for (k, how) in ["none", "triggers"].iter().enumerate() {
            setup(dsn, &mut c, how);
            c.batch_execute("VACUUM accounts").expect("vacuum");
            let start = Instant::now();
            c.batch_execute(&format!(
                "DO $$ BEGIN FOR i IN 1..{updates} LOOP
                     UPDATE accounts SET balance = balance + 1 WHERE id = 1 + (i * 7919) % {ACCOUNTS};
                 END LOOP; END $$"
            ))
            .expect("updates in one transaction");
            per_update[k] = per_update[k].min(start.elapsed().as_secs_f64() * 1e6 / updates as f64);
        }
    }
    println!(
        "single-row updates in one transaction, {updates} per run, best of 5: no capture {:.1} µs each; triggers {:.1} µs (+{:.1} µs, {:.2}x)",
        per_update[0],
        per_update[1],
        per_update[1] - per_update[0],
        per_update[1] / per_update[0]
    );

    // 2. Bulk INSERT … SELECT.
    let bulk_time = |c: &mut Client| {
        c.batch_execute("TRUNCATE bulk; CHECKPOINT").expect("truncate");
        let start = Instant::now();
        c.batch_execute(&format!(
            "INSERT INTO bulk SELECT g, g * 0.01, 'note ' || g FROM generate_series(1, {bulk}) g"
        ))
        .expect("bulk insert");
        start.elapsed().as_secs_f64()
    };
    let mut times = [0f64; 3];
    for (k, how) in ["none", "triggers", "logical"].iter().enumerate() {
        setup(dsn, &mut c, how);
        times[k] = bulk_time(&mut c);
    }
    println!(
        "bulk INSERT … SELECT of {bulk} rows: no capture {:.2} s; triggers {:.2} s ({:.2}x); logical {:.2} s ({:.2}x)",
        times[0],
        times[1],
        times[1] / times[0],
        times[2],
        times[2] / times[0]
    );

    // 3. Drain throughput: `drained` row changes, 1,000 per transaction.
    // Called after the install, and after `bulk` was emptied before it.
    let generate = |c: &mut Client| {
        let mut at = 0;
        while at < drained {
            let n = (drained - at).min(1000);
            c.batch_execute(&format!(
                "BEGIN; SELECT sealtrail.set_actor('bench'); INSERT INTO bulk SELECT g, g * 0.01, 'note ' || g FROM generate_series({}, {}) g; COMMIT;",
                at + 1,
                at + n
            ))
            .expect("generate changes");
            at += n;
        }
        // Let the horizon pass the last writer.
        c.batch_execute("SELECT pg_sleep(0.2)").expect("sleep");
    };
    let drain_rate = |dsn: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::new(dir.path());
        data.create_log("default", None).expect("create log");
        let trail = Trail::open(&data, "default", TrailOptions::default()).expect("open trail");
        let start = Instant::now();
        let mut rows = 0;
        while rows < drained as u64 {
            rows += drain(dsn, &trail, &DrainOptions::default()).expect("drain").rows;
        }
        let time = start.elapsed().as_secs_f64();
        assert_eq!(trail.log().size(), drained as u64);
        (drained as f64 / time, time)
    };

    c.batch_execute("TRUNCATE bulk").expect("empty");
    setup(dsn, &mut c, "triggers");
    generate(&mut c);
    let start = Instant::now();
    let read: u64 = c
        .query(
            "SELECT id, xid::text, kind,
                    coalesce(payload::text, '') || coalesce(before::text, '') || coalesce(after::text, ''),
                    captured_at FROM sealtrail.outbox
              WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid, id",
            &[],
        )
        .expect("read")
        .iter()
        .map(|r| r.get::<_, String>(3).len() as u64)
        .sum();
    let read_rate = drained as f64 / start.elapsed().as_secs_f64();
    let (rate, time) = drain_rate(dsn);
    println!(
        "triggers: drain of {drained} row changes into a trail: {rate:.0}/s ({time:.2} s); baseline plain read of the outbox ({} MB of payload) {read_rate:.0}/s; drain at {:.2} of the read rate",
        read / 1_000_000,
        rate / read_rate
    );

    c.batch_execute("TRUNCATE bulk").expect("empty");
    setup(dsn, &mut c, "logical");
    generate(&mut c);
    let slot: String = c
        .query_one("SELECT slot FROM sealtrail.install", &[])
        .expect("slot")
        .get(0);
    let start = Instant::now();
    let messages: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
                 'proto_version', '1', 'publication_names', 'sealtrail', 'messages', 'true')",
            &[&slot],
        )
        .expect("decode")
        .get(0);
    let decode_rate = drained as f64 / start.elapsed().as_secs_f64();
    let (rate, time) = drain_rate(dsn);
    println!(
        "logical: drain of {drained} row changes into a trail: {rate:.0}/s ({time:.2} s); baseline the server's decoding alone ({messages} pgoutput messages) {decode_rate:.0}/s; drain at {:.2} of the decoding rate",
        rate / decode_rate
    );
    let _ = uninstall(dsn, true);
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
