//! A PostgreSQL cluster of its own for one test or benchmark: `initdb` in
//! a temporary directory, started on a free port with `pg_ctl`, stopped
//! and removed when dropped. For what the shared server on 127.0.0.1:5432
//! cannot be used for: crashing PostgreSQL, or settings that need a
//! restart such as `wal_level = logical`.

use std::path::PathBuf;
use std::process::Command;

use postgres::{Client, NoTls};

/// The PostgreSQL binaries of this machine (Debian puts each version's
/// under /usr/lib/postgresql/N/bin); the newest.
pub fn pg_bin() -> PathBuf {
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
pub struct Cluster {
    bin: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `program` of the PostgreSQL binaries, as the `postgres` user when
    /// run as root: initdb and postgres refuse to run as root.
    pub fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }

    /// Run `program` with `args`; panics with its output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) {
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

    /// A new cluster, started, with `settings` (postgresql.conf lines such
    /// as `wal_level = logical`) added to its configuration.
    pub fn new(settings: &[&str]) -> Cluster {
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
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = on\n",
            cluster.data.display()
        );
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let mut text = std::fs::read_to_string(cluster.data.join("postgresql.conf")).expect("conf");
        text.push_str(&conf);
        std::fs::write(cluster.data.join("postgresql.conf"), text).expect("write conf");
        cluster.start();
        cluster
    }

    pub fn start(&self) {
        let data = self.data.to_str().expect("UTF-8 path");
        let log = self.data.join("server.log");
        self.run(
            "pg_ctl",
            &["-D", data, "-w", "-l", log.to_str().expect("UTF-8 path"), "start"],
        );
    }

    /// A clean stop (a checkpoint first).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().expect("UTF-8 path"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// An immediate stop: no checkpoint, as if the machine lost power;
    /// the restart recovers from the WAL.
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", self.data.to_str().expect("UTF-8 path"), "-m", "immediate", "stop"],
        );
    }

    /// The key-value connection string of database `postgres`.
    pub fn dsn(&self) -> String {
        self.dsn_of("postgres")
    }

    pub fn dsn_of(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={database}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.dsn(), NoTls).expect("connect to the test cluster")
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
