//! PostgreSQL itself crashing (an immediate stop, as at power loss) while
//! changes are being drained, then restarted: every committed change is
//! in the trail exactly once, and a transaction cut by the crash leaves
//! nothing. The test runs its own throw-away cluster on a free port, so
//! the shared server other tests use is never stopped.

mod capture_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture_support::{create_trail, drain_until_empty, events, open_trail};
use sealtrail_pg::capture::{install, InstallOptions, Tables};
use sealtrail_pg::drain::{drain, DrainOptions};

/// The PostgreSQL binaries of this machine (Debian puts each version's
/// under /usr/lib/postgresql/N/bin).
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's binaries under /usr/lib/postgresql (the test command installs nothing else)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A cluster of its own in a temporary directory, stopped when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `program` of the PostgreSQL binaries, as the `postgres` user when
    /// run as root: initdb and postgres refuse to run as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let cluster = Cluster {
            bin: pg_bin(),
            data: dir.path().join("data"),
            port,
            _dir: dir,
        };
        let data = cluster.data.to_str().expect("UTF-8 path").to_string();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = on\n",
            cluster.data.display()
        );
        let mut text = std::fs::read_to_string(cluster.data.join("postgresql.conf")).expect("conf");
        text.push_str(&conf);
        std::fs::write(cluster.data.join("postgresql.conf"), text).expect("write conf");
        cluster.start();
        cluster
    }

    fn start(&self) {
        let data = self.data.to_str().expect("UTF-8 path");
        let log = self.data.join("server.log");
        self.run(
            "pg_ctl",
            &["-D", data, "-w", "-l", log.to_str().expect("UTF-8 path"), "start"],
        );
    }

    /// An immediate stop: no checkpoint, as if the machine lost power;
    /// the restart recovers from the WAL.
    fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", self.data.to_str().expect("UTF-8 path"), "-m", "immediate", "stop"],
        );
    }

    fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.dsn(), postgres::NoTls).expect("connect to the test cluster")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(data) = self.data.to_str() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", data, "-m", "immediate", "stop"])
                .output();
        }
    }
}

#[test]
fn a_postgresql_crash_mid_drain_loses_and_duplicates_nothing() {
    let pg = Cluster::new();
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
