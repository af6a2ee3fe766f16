//! The HTTP server under load from `sealtrail-loadgen`,
//! every figure beside a baseline measured in the same run and the ratio.
//!
//! ```text
//! cargo bench -p sealtrail-server --bench http > bench.md    # table on stdout, progress on stderr
//! SEALTRAIL_BENCH_EVENTS=200000 SEALTRAIL_BENCH_SECS=20 cargo bench -p sealtrail-server --bench http
//! ```
//!
//! One server is started in this process (`Server::start` on
//! 127.0.0.1:0, a fresh data directory, default configuration, its own
//! tokio runtime); the load generator runs on a second runtime; both share
//! the machine's cores, and PostgreSQL does too.
//!
//! 1. **Batch ingest**: the same `sealtrail_testgen::events(seed, EVENTS)`
//!    are ingested twice, into two fresh logs of the same server: first
//!    in-process, `Trail::ingest` of `BATCH` events from `BATCH_CLIENTS`
//!    threads (the baseline: everything but HTTP), then over HTTP as
//!    `POST …/events/batch` bodies of `BATCH` events (NDJSON) from
//!    `BATCH_CLIENTS` concurrent clients. Rates count acknowledged
//!    (durable) events; a second row waits until the index has caught up.
//! 2. **Single-event ingest**: for `SECS` seconds each, `CLIENTS`
//!    concurrent clients `POST …/events` one event at a time (each
//!    answered 201 once durable, with its receipt); the same events as
//!    single-row INSERTs into PostgreSQL from `CLIENTS` tasks through a
//!    deadpool-postgres pool of `CLIENTS` connections (synchronous_commit
//!    on, the events bench's table and its 14 indexes; rows prepared before
//!    the clock starts, as there); and, as a second baseline, the same
//!    load in-process: `CLIENTS` threads calling `Trail::ingest` with one
//!    event each.
//!
//! Knobs (environment variables; numbers may contain `_`):
//! - `SEALTRAIL_BENCH_EVENTS` (200,000): events of section 1.
//! - `SEALTRAIL_BENCH_BATCH` (1,000): events per batch request and per
//!   in-process `Trail::ingest` call.
//! - `SEALTRAIL_BENCH_BATCH_CLIENTS` (2): concurrent batch senders
//!   (HTTP clients, or threads in-process).
//! - `SEALTRAIL_BENCH_NDJSON` (1): 0 sends batches as JSON arrays.
//! - `SEALTRAIL_BENCH_CLIENTS` (64): concurrent single-event clients.
//! - `SEALTRAIL_BENCH_SECS` (20): seconds of single-event load per system.
//! - `SEALTRAIL_BENCH_SINGLE_EVENTS` (40,000 × SECS): events generated for
//!   section 2; a run that uses them up stops early (and says so).
//! - `SEALTRAIL_BENCH_CLIENT_THREADS` (2): worker threads of the load
//!   generator's runtime (the server's runtime has one per core).
//! - `SEALTRAIL_BENCH_SEED` (1): seed of the events.
//! - `SEALTRAIL_BENCH_ONLY` (both): `batch` or `single`.
//! - `SEALTRAIL_BENCH_PG` (`host=127.0.0.1 port=5432`): libpq-style
//!   connection settings; without `user=`, `postgres` then `root` are
//!   tried. A uniquely named database is created and dropped.
//! - `SEALTRAIL_BENCH_DIR` (`target/bench-tmp`): where the server's data
//!   directory goes (removed afterwards). Keep it off tmpfs.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sealtrail_event::{accept_json_entry, event_id, Timestamp};
use sealtrail_loadgen::{millis, quantile, Events, Load, Mode, Report, Target};
use sealtrail_meta::Scope;
use sealtrail_meta::{key_event, now_text};
use sealtrail_server::{Config, Server};
use sealtrail_trail::{Item, Trail};
use tokio_postgres::types::ToSql;

// The allocator the `sealtrail` binary runs with, so the figures are the
// server's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// ---------------------------------------------------------------------------
// Configuration

struct Knobs {
    events: usize,
    batch: usize,
    batch_clients: usize,
    ndjson: bool,
    clients: usize,
    secs: f64,
    single_events: usize,
    client_threads: usize,
    seed: u64,
    only: Option<String>,
    pg: String,
    dir: PathBuf,
}

fn knob<T: FromStr>(name: &str, default: T) -> T {
    sealtrail_testgen::knob("http", name, default)
}

impl Knobs {
    fn from_env() -> Knobs {
        let default_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp");
        let secs = knob("SEALTRAIL_BENCH_SECS", 20.0f64).max(0.1);
        let only = std::env::var("SEALTRAIL_BENCH_ONLY").ok().filter(|s| !s.is_empty());
        if only.as_deref().is_some_and(|o| o != "batch" && o != "single") {
            fail("SEALTRAIL_BENCH_ONLY must be batch or single");
        }
        Knobs {
            events: knob("SEALTRAIL_BENCH_EVENTS", 200_000usize).max(1),
            batch: knob("SEALTRAIL_BENCH_BATCH", 1000usize).max(1),
            batch_clients: knob("SEALTRAIL_BENCH_BATCH_CLIENTS", 2usize).max(1),
            ndjson: knob("SEALTRAIL_BENCH_NDJSON", 1u8) != 0,
            clients: knob("SEALTRAIL_BENCH_CLIENTS", 64usize).max(1),
            secs,
            single_events: knob("SEALTRAIL_BENCH_SINGLE_EVENTS", (40_000.0 * secs) as usize).max(1),
            client_threads: knob("SEALTRAIL_BENCH_CLIENT_THREADS", 2usize).max(1),
            seed: knob("SEALTRAIL_BENCH_SEED", 1u64),
            only,
            pg: std::env::var("SEALTRAIL_BENCH_PG").unwrap_or_else(|_| "host=127.0.0.1 port=5432".into()),
            dir: std::env::var_os("SEALTRAIL_BENCH_DIR").map_or(default_dir, PathBuf::from),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == section)
    }
}

fn fail(message: &str) -> ! {
    eprintln!("http bench: {message}");
    std::process::exit(2)
}

fn progress(message: &str) {
    eprintln!("[{:>7.1} s] {message}", started().elapsed().as_secs_f64());
}

fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

// ---------------------------------------------------------------------------
// CPU time: this process (server + load generator), and the whole machine
// (PostgreSQL and anyone else included). Linux clock ticks, 100 per second.

#[derive(Clone, Copy)]
struct Cpu {
    process_secs: f64,
    machine_busy_ticks: u64,
    machine_total_ticks: u64,
}

impl Cpu {
    fn now() -> Cpu {
        let process_secs = sealtrail_testgen::process_cpu_secs();
        let machine = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = machine
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let get = |i: usize| cpu.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
        Cpu {
            process_secs,
            machine_busy_ticks: busy,
            machine_total_ticks: busy + get(3) + get(4),
        }
    }

    /// CPU used since `self`: (this process s, machine busy s, machine
    /// busy fraction of all cores).
    fn since(self) -> CpuUse {
        let now = Cpu::now();
        let busy = now.machine_busy_ticks - self.machine_busy_ticks;
        let total = (now.machine_total_ticks - self.machine_total_ticks).max(1);
        CpuUse {
            process_secs: now.process_secs - self.process_secs,
            machine_secs: busy as f64 / 100.0,
            machine_busy: busy as f64 / total as f64,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct CpuUse {
    process_secs: f64,
    machine_secs: f64,
    machine_busy: f64,
}

// ---------------------------------------------------------------------------
// One measured run

struct Run {
    events: usize,
    secs: f64,
    latencies: Vec<Duration>,
    cpu: CpuUse,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }

    fn q(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    fn process_us_per_event(&self) -> f64 {
        self.cpu.process_secs * 1e6 / self.events.max(1) as f64
    }

    fn machine_us_per_event(&self) -> f64 {
        self.cpu.machine_secs * 1e6 / self.events.max(1) as f64
    }

    fn from_report(r: &Report, cpu: CpuUse) -> Run {
        Run {
            events: r.stored + r.duplicates,
            secs: r.elapsed.as_secs_f64(),
            latencies: r.latencies.clone(),
            cpu,
        }
    }
}

fn check_report(what: &str, r: &Report) {
    progress(&format!("{what}: {}", r.summary().trim_end().replace('\n', "; ")));
    if r.failed > 0 || r.rejected > 0 || r.duplicates > 0 {
        fail(&format!(
            "{what}: {} failed requests, {} rejected, {} duplicates: {}",
            r.failed,
            r.rejected,
            r.duplicates,
            r.errors.join(" | ")
        ));
    }
}

/// Ingest in-process: `threads` threads each calling `trail.ingest` with
/// `take` events at a time from `events`, until they are used up or
/// `duration` has passed. Every event must be stored fresh.
fn ingest_in_process(trail: &Trail, events: &Events, take: usize, threads: usize, duration: Option<Duration>) -> Run {
    let next = AtomicUsize::new(0);
    let cpu = Cpu::now();
    let t = Instant::now();
    let deadline = duration.map(|d| t + d);
    let per_thread: Vec<(usize, Vec<Duration>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                s.spawn(move || {
                    let mut stored = 0;
                    let mut latencies = Vec::new();
                    while deadline.is_none_or(|d| Instant::now() < d) {
                        let first = next.fetch_add(take, Ordering::Relaxed);
                        if first >= events.len() {
                            break;
                        }
                        let inputs: Vec<&[u8]> = (first..(first + take).min(events.len()))
                            .map(|i| events.get(i))
                            .collect();
                        let sent = Instant::now();
                        let done = trail.ingest(&inputs, false).unwrap();
                        latencies.push(sent.elapsed());
                        for item in &done.items {
                            assert!(
                                matches!(item, Item::Stored { duplicate: false, .. }),
                                "a generated event was not stored fresh: {item:?}"
                            );
                        }
                        stored += done.items.len();
                    }
                    (stored, latencies)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu.since();
    let mut latencies: Vec<Duration> = per_thread.iter().flat_map(|(_, l)| l.iter().copied()).collect();
    latencies.sort_unstable();
    Run {
        events: per_thread.iter().map(|(n, _)| n).sum(),
        secs,
        latencies,
        cpu,
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// Connection settings with user and database, ready for a pool.
struct Pg {
    admin: postgres::Config,
    database: String,
}

impl Pg {
    fn connect_admin(settings: &str) -> (Pg, postgres::Client) {
        let mut base = postgres::Config::from_str(settings).unwrap_or_else(|e| {
            fail(&format!(
                "SEALTRAIL_BENCH_PG={settings:?} is not a connection string: {e}"
            ))
        });
        base.connect_timeout(Duration::from_secs(5));
        let users: Vec<String> = match base.get_user() {
            Some(u) => vec![u.to_string()],
            None => vec!["postgres".into(), "root".into()],
        };
        let mut errors = Vec::new();
        for user in users {
            let mut admin = base.clone();
            admin.user(&user).dbname("postgres");
            match admin.connect(postgres::NoTls) {
                Ok(client) => {
                    let millis = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_millis();
                    let database = format!("sealtrail_http_bench_{}_{millis}", std::process::id());
                    return (Pg { admin, database }, client);
                }
                Err(e) => errors.push(format!("as {user}: {e}")),
            }
        }
        fail(&format!(
            "PostgreSQL is unreachable with {settings:?} ({}). This benchmark needs a server with trust \
             authentication, e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or \
             SEALTRAIL_BENCH_PG set to reach one (or SEALTRAIL_BENCH_ONLY=batch).",
            errors.join("; ")
        ))
    }

    fn connect(&self) -> postgres::Client {
        let mut config = self.admin.clone();
        config.dbname(&self.database);
        config.connect(postgres::NoTls).unwrap()
    }

    /// The same settings for tokio-postgres, on the bench database.
    fn async_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        for host in self.admin.get_hosts() {
            match host {
                postgres::config::Host::Tcp(h) => config.host(h),
                postgres::config::Host::Unix(p) => config.host_path(p),
            };
        }
        for &port in self.admin.get_ports() {
            config.port(port);
        }
        if let Some(user) = self.admin.get_user() {
            config.user(user);
        }
        if let Some(password) = self.admin.get_password() {
            config.password(password);
        }
        config.dbname(&self.database);
        config
    }
}

/// Drops the bench database when the bench ends, whichever way.
struct DropDatabase<'a>(&'a Pg);

impl Drop for DropDatabase<'_> {
    fn drop(&mut self) {
        if let Ok(mut admin) = self.0.admin.connect(postgres::NoTls) {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0.database);
            if let Err(e) = admin.batch_execute(&sql) {
                eprintln!("http bench: could not drop database {}: {e}", self.0.database);
            }
        }
    }
}

const TSVECTOR: &str = "to_tsvector('simple', coalesce(message, '') || ' ' || coalesce(error_type, '') || ' ' || \
                        coalesce(error_message, '') || ' ' || coalesce(details::text, ''))";

/// The events bench's table and indexes (crates/trail/benches/events.rs),
/// with the row number drawn from an identity column, as single-row
/// INSERTs need.
fn create_schema(client: &mut postgres::Client) {
    let mut sql = String::from(
        "CREATE TABLE audit_event (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL,
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            tenant text,
            action text NOT NULL,
            outcome text,
            severity text NOT NULL,
            actor_id text,
            workflow text,
            service text,
            ip inet,
            session_id text,
            targets text[],
            message text,
            error_type text,
            error_message text,
            details jsonb,
            event jsonb NOT NULL
        );
        CREATE INDEX ON audit_event (action text_pattern_ops, seq);
        CREATE INDEX ON audit_event (occurred_at);
        CREATE INDEX ON audit_event (received_at);
        CREATE INDEX ON audit_event USING gin (targets);\n",
    );
    for column in [
        "actor_id",
        "tenant",
        "workflow",
        "service",
        "outcome",
        "severity",
        "ip",
        "session_id",
    ] {
        sql.push_str(&format!("CREATE INDEX ON audit_event ({column}, seq);\n"));
    }
    sql.push_str(&format!("CREATE INDEX ON audit_event USING gin ({TSVECTOR});\n"));
    client.batch_execute(&sql).unwrap();
}

const INSERT: &str = "INSERT INTO audit_event (id, occurred_at, received_at, tenant, action, outcome, severity, \
                      actor_id, workflow, service, ip, session_id, targets, message, error_type, error_message, \
                      details, event) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                      $16, $17::text::jsonb, $18::text::jsonb)";

/// One event's INSERT parameters.
struct Row {
    id: String,
    occurred_at: SystemTime,
    received_at: SystemTime,
    tenant: Option<String>,
    action: String,
    outcome: Option<&'static str>,
    severity: &'static str,
    actor_id: Option<String>,
    workflow: Option<String>,
    service: Option<String>,
    ip: Option<IpAddr>,
    session_id: Option<String>,
    targets: Option<Vec<String>>,
    message: Option<String>,
    error_type: Option<String>,
    error_message: Option<String>,
    details: Option<String>,
    event: String,
}

impl Row {
    fn params(&self) -> [&(dyn ToSql + Sync); 18] {
        [
            &self.id,
            &self.occurred_at,
            &self.received_at,
            &self.tenant,
            &self.action,
            &self.outcome,
            &self.severity,
            &self.actor_id,
            &self.workflow,
            &self.service,
            &self.ip,
            &self.session_id,
            &self.targets,
            &self.message,
            &self.error_type,
            &self.error_message,
            &self.details,
            &self.event,
        ]
    }
}

fn to_system_time(t: Timestamp) -> SystemTime {
    let us = t.as_microsecond();
    if us >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// The row of generated event `seq`, validated and canonicalised as the
/// server would (received times one microsecond apart).
fn row(events: &Events, seq: usize) -> Row {
    let base: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
    let received_at = Timestamp::from_microsecond(base.as_microsecond() + seq as i64).unwrap();
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&(seq as u64).to_be_bytes());
    let (e, entry) = accept_json_entry(events.get(seq), received_at, event_id(received_at, random).unwrap()).unwrap();
    let source = e.source.as_ref();
    let context = e.context.as_ref();
    let error = e.error.as_ref();
    Row {
        id: e.id.to_string(),
        occurred_at: to_system_time(e.occurred_at),
        received_at: to_system_time(e.received_at),
        tenant: e.tenant.clone(),
        action: e.action.clone(),
        outcome: e.outcome.map(|o| o.as_str()),
        severity: e.severity.as_str(),
        actor_id: e.actor.as_ref().map(|a| a.id.clone()),
        workflow: source.and_then(|s| s.workflow.clone()),
        service: source.and_then(|s| s.service.clone()),
        ip: context.and_then(|c| c.ip),
        session_id: context.and_then(|c| c.session_id.clone()),
        targets: e
            .targets
            .as_ref()
            .map(|ts| ts.iter().map(|t| format!("{}:{}", t.kind, t.id)).collect()),
        message: e.message.clone(),
        error_type: error.and_then(|x| x.kind.clone()),
        error_message: error.and_then(|x| x.message.clone()),
        details: e.details.as_ref().map(|d| serde_json::to_string(d).unwrap()),
        event: String::from_utf8(entry).unwrap(),
    }
}

/// Rows of the first `count` events, on two threads (not timed).
fn prepare_rows(events: &Events, count: usize) -> Vec<Row> {
    let half = count / 2;
    let (mut first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| (0..half).map(|i| row(events, i)).collect::<Vec<_>>());
        let second: Vec<Row> = (half..count).map(|i| row(events, i)).collect();
        (first.join().unwrap(), second)
    });
    first.extend(second);
    first
}

/// `clients` tasks INSERT one row at a time, each taking a connection
/// from a pool of `clients` per row, until the rows are used up or
/// `duration` has passed.
async fn insert_rows(pg: &Pg, rows: Arc<Vec<Row>>, clients: usize, duration: Duration) -> (Run, String) {
    let manager = deadpool_postgres::Manager::from_config(
        pg.async_config(),
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(clients)
        .build()
        .unwrap();
    // Open every connection and prepare the statement before the clock.
    let mut warm = Vec::new();
    for _ in 0..clients {
        let c = pool.get().await.unwrap();
        c.prepare_cached(INSERT).await.unwrap();
        warm.push(c);
    }
    let synchronous_commit: String = warm[0].query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
    drop(warm);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = Cpu::now();
    let t = Instant::now();
    let deadline = t + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (pool, rows, next) = (pool.clone(), rows.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= rows.len() {
                    break;
                }
                let sent = Instant::now();
                let client = pool.get().await.unwrap();
                let statement = client.prepare_cached(INSERT).await.unwrap();
                let n = client.execute(&statement, &rows[i].params()).await.unwrap();
                assert_eq!(n, 1);
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(l) = tasks.join_next().await {
        latencies.extend(l.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu.since();
    latencies.sort_unstable();
    let run = Run {
        events: latencies.len(),
        secs,
        latencies,
        cpu,
    };
    (run, synchronous_commit)
}

// ---------------------------------------------------------------------------
// Reporting

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k/s", v / 1e3)
    } else {
        format!("{v:.0}/s")
    }
}

fn us(v: f64) -> String {
    format!("{v:.1} µs")
}

fn met(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "**no**"
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    started();
    let knobs = Knobs::from_env();
    let load_at_start = load_average();

    // Fail early if the baseline database is missing.
    let pg = knobs.runs("single").then(|| {
        let (pg, mut admin) = Pg::connect_admin(&knobs.pg);
        let version: String = admin.query_one("SHOW server_version", &[]).unwrap().get(0);
        let mut settings = vec![format!("PostgreSQL {version}")];
        for name in ["shared_buffers", "fsync", "max_connections"] {
            let value: String = admin.query_one(&format!("SHOW {name}"), &[]).unwrap().get(0);
            settings.push(format!("{name}={value}"));
        }
        // Separate statements: CREATE DATABASE cannot share a transaction.
        admin
            .batch_execute(&format!("CREATE DATABASE {}", pg.database))
            .unwrap();
        admin
            .batch_execute(&format!("ALTER DATABASE {} SET synchronous_commit = on", pg.database))
            .unwrap();
        progress(&format!("{}; database {} created", settings[0], pg.database));
        (pg, settings)
    });
    let _drop_database = pg.as_ref().map(|(pg, _)| DropDatabase(pg));

    // The server, on its own runtime; the load generator on another.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let load_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("load")
        .worker_threads(knobs.client_threads)
        .enable_all()
        .build()
        .unwrap();
    let dir = knobs.dir.join(format!("http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _remove_dir = RemoveDir(dir.clone());
    let mut config = Config {
        data_dir: dir.join("data"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    // SEALTRAIL_BENCH_SCRUB=0 turns the background scrub off, to measure
    // its share; the default is the product's configuration.
    if std::env::var("SEALTRAIL_BENCH_SCRUB").is_ok_and(|v| v == "0") {
        config.integrity.scrub_interval_ms = 0;
    }
    let server = server_runtime.block_on(Server::start(config)).unwrap();
    let app = server.app.clone();
    let (_, secret) = app
        .meta
        .create_key(Scope::Ingest, None, "bench", &now_text(), |k| {
            key_event(
                serde_json::json!({"id": "http-bench", "type": "service"}),
                "api_key.created",
                k,
            )
        })
        .unwrap();
    let url = format!("http://{}", server.addr);
    let target = |log: &str| Target {
        url: url.clone(),
        log: log.to_string(),
        key: secret.clone(),
    };
    progress(&format!("server listening on {url}, data in {}", dir.display()));

    let mut lines = Vec::new();

    // 1. Batch ingest.
    if knobs.runs("batch") {
        let events = Arc::new(Events::generate(knobs.seed, knobs.events));
        let mean = events.total_bytes() as f64 / events.len() as f64;
        progress(&format!(
            "batch: {} events generated ({mean:.0} bytes each)",
            events.len()
        ));

        let trail = app.open_or_create("inproc-batch").unwrap();
        let t = Instant::now();
        let inproc = ingest_in_process(&trail, &events, knobs.batch, knobs.batch_clients, None);
        trail.sync_index().unwrap();
        let inproc_indexed = t.elapsed().as_secs_f64();
        progress(&format!(
            "batch in-process: {} acknowledged, {} until indexed",
            rate(inproc.rate()),
            rate(inproc.events as f64 / inproc_indexed)
        ));
        drop(trail);

        let trail = app.open_or_create("http-batch").unwrap();
        let load = Load {
            mode: Mode::Batch {
                size: knobs.batch,
                ndjson: knobs.ndjson,
            },
            clients: knobs.batch_clients,
            duration: None,
        };
        let cpu = Cpu::now();
        let t = Instant::now();
        let report = load_runtime
            .block_on(sealtrail_loadgen::run(&target("http-batch"), &load, events.clone()))
            .unwrap();
        let http = Run::from_report(&report, cpu.since());
        trail.sync_index().unwrap();
        let http_indexed = t.elapsed().as_secs_f64();
        check_report("batch HTTP", &report);
        assert_eq!(http.events, events.len());
        drop(trail);

        let body = if knobs.ndjson { "NDJSON" } else { "JSON array" };
        let (b, c) = (knobs.batch, knobs.batch_clients);
        let same = format!("in-process `Trail::ingest`, batches of {b}, {c} threads, same events, same server");
        lines.push(format!(
            "| 1 | HTTP batch ingest, {body} bodies of {b}, {c} clients, acknowledged | {} | {same} | {} | {:.2}× |  |  |",
            rate(http.rate()),
            rate(inproc.rate()),
            http.rate() / inproc.rate(),
        ));
        // The goal: durable and indexed over HTTP at 90% of the in-process rate.
        let (h, i) = (http.events as f64 / http_indexed, inproc.events as f64 / inproc_indexed);
        lines.push(format!(
            "| 1 | … until indexed (`sync_index`) | {} | in-process, until indexed | {} | {:.2}× | ≥ 0.90× | {} |",
            rate(h),
            rate(i),
            h / i,
            met(h / i >= 0.90)
        ));
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            lines.push(format!(
                "| 1 | batch request latency {name} | {} | in-process `Trail::ingest` call {name} | {} | {:.2}× |  |  |",
                millis(http.q(q)),
                millis(inproc.q(q)),
                http.q(q).as_secs_f64() / inproc.q(q).as_secs_f64()
            ));
        }
        lines.push(format!(
            "| 1 | CPU per event, this process (server + load generator) | {} | in-process | {} | {:.2}× |  |  |",
            us(http.process_us_per_event()),
            us(inproc.process_us_per_event()),
            http.process_us_per_event() / inproc.process_us_per_event()
        ));
        lines.push(format!(
            "| 1 | machine busy (all processes, {} cores) | {:.0}% | in-process | {:.0}% |  |  |  |",
            cpus(),
            http.cpu.machine_busy * 100.0,
            inproc.cpu.machine_busy * 100.0
        ));
    }

    // 2. Single-event ingest.
    let mut pg_settings = Vec::new();
    if let Some((pg, settings)) = &pg {
        let duration = Duration::from_secs_f64(knobs.secs);
        let clients = knobs.clients;
        let events = Arc::new(Events::generate(knobs.seed, knobs.single_events));
        progress(&format!("single: {} events generated", events.len()));

        let trail = app.open_or_create("http-single").unwrap();
        let load = Load {
            mode: Mode::Single,
            clients,
            duration: Some(duration),
        };
        let cpu = Cpu::now();
        let report = load_runtime
            .block_on(sealtrail_loadgen::run(&target("http-single"), &load, events.clone()))
            .unwrap();
        let http = Run::from_report(&report, cpu.since());
        check_report("single HTTP", &report);
        trail.sync_index().unwrap();
        drop(trail);

        let t = Instant::now();
        let rows = Arc::new(prepare_rows(&events, events.len()));
        progress(&format!(
            "single: {} PostgreSQL rows prepared in {:.1} s (not timed)",
            rows.len(),
            t.elapsed().as_secs_f64()
        ));
        create_schema(&mut pg.connect());
        let (postgres, synchronous_commit) = load_runtime.block_on(insert_rows(pg, rows.clone(), clients, duration));
        drop(rows);
        let counted: i64 = pg
            .connect()
            .query_one("SELECT count(*) FROM audit_event", &[])
            .unwrap()
            .get(0);
        assert_eq!(counted as usize, postgres.events);
        progress(&format!(
            "single PostgreSQL: {} ({} rows), p50 {} p99 {}",
            rate(postgres.rate()),
            postgres.events,
            millis(postgres.q(0.5)),
            millis(postgres.q(0.99))
        ));
        pg_settings = settings.clone();
        pg_settings.push(format!("synchronous_commit={synchronous_commit}"));

        let trail = app.open_or_create("inproc-single").unwrap();
        let inproc = ingest_in_process(&trail, &events, 1, clients, Some(duration));
        trail.sync_index().unwrap();
        drop(trail);
        progress(&format!(
            "single in-process: {}, p50 {} p99 {}",
            rate(inproc.rate()),
            millis(inproc.q(0.5)),
            millis(inproc.q(0.99))
        ));

        let pg_name = format!("PostgreSQL single-row INSERT, {clients} tasks, pool of {clients}");
        let inproc_name = format!("in-process `Trail::ingest` of 1 event, {clients} threads");
        lines.push(format!(
            "| 2 | HTTP single-event ingest, {clients} clients, events/s | {} | {pg_name} | {} | {:.2}× | ≥ 50 k/s | {} |",
            rate(http.rate()),
            rate(postgres.rate()),
            http.rate() / postgres.rate(),
            met(http.rate() >= 50_000.0)
        ));
        lines.push(format!(
            "| 2 | HTTP single-event ingest (as above) | {} | {inproc_name} | {} | {:.2}× |  |  |",
            rate(http.rate()),
            rate(inproc.rate()),
            http.rate() / inproc.rate()
        ));
        for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")] {
            let (goal, ok) = if name == "p99" {
                ("≤ 5 ms", met(http.q(q) <= Duration::from_millis(5)))
            } else {
                ("", "")
            };
            for (i, (base_name, base)) in [("PostgreSQL INSERT", &postgres), ("in-process ingest", &inproc)]
                .into_iter()
                .enumerate()
            {
                let (goal, ok) = if i == 0 { (goal, ok) } else { ("", "") };
                lines.push(format!(
                    "| 2 | single-event latency {name} | {} | {base_name} {name} | {} | {:.2}× | {goal} | {ok} |",
                    millis(http.q(q)),
                    millis(base.q(q)),
                    http.q(q).as_secs_f64() / base.q(q).as_secs_f64()
                ));
            }
        }
        for (base_name, base) in [
            ("PostgreSQL (its processes included)", &postgres),
            ("in-process", &inproc),
        ] {
            lines.push(format!(
                "| 2 | machine CPU per event, all processes | {} | {base_name} | {} | {:.2}× |  |  |",
                us(http.machine_us_per_event()),
                us(base.machine_us_per_event()),
                http.machine_us_per_event() / base.machine_us_per_event()
            ));
        }
        lines.push(format!(
            "| 2 | CPU per event, this process (server + load generator) | {} | in-process | {} | {:.2}× |  |  |",
            us(http.process_us_per_event()),
            us(inproc.process_us_per_event()),
            http.process_us_per_event() / inproc.process_us_per_event()
        ));
        lines.push(format!(
            "| 2 | machine busy ({} cores) | {:.0}% | PostgreSQL / in-process | {:.0}% / {:.0}% |  |  |  |",
            cpus(),
            http.cpu.machine_busy * 100.0,
            postgres.cpu.machine_busy * 100.0,
            inproc.cpu.machine_busy * 100.0
        ));
    }

    server.shutdown();
    server_runtime.block_on(server.wait()).unwrap();

    println!(
        "Sealtrail HTTP benchmark: seed {}, {} CPUs shared by the server, the load generator ({} runtime threads), \
         PostgreSQL and anything else running (load average at start {load_at_start}); {}; total {:.0} s",
        knobs.seed,
        cpus(),
        knobs.client_threads,
        if pg_settings.is_empty() {
            "no PostgreSQL".to_string()
        } else {
            pg_settings.join(", ")
        },
        started().elapsed().as_secs_f64()
    );
    println!();
    println!(
        "Ratio = Sealtrail ÷ baseline: for rates above 1 means Sealtrail is faster, for latencies and CPU above 1"
    );
    println!("means Sealtrail is slower. Latencies are per request, measured by the client from send to answer read.");
    println!();
    println!("| # | measure | Sealtrail | baseline (same run) | baseline value | ratio | goal | met |");
    println!("|---|---|---:|---|---:|---:|---|---|");
    for line in lines {
        println!("{line}");
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
