//! A throw-away database on the local PostgreSQL server (127.0.0.1:5432,
//! user `postgres`, trust authentication; the test command starts it with
//! `scripts/postgres`), for tests that talk to a real PostgreSQL.

use std::sync::atomic::{AtomicU32, Ordering};

use postgres::{Client, NoTls};

/// The local server, without a database.
pub const SERVER: &str = "host=127.0.0.1 port=5432 user=postgres";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A database created for one test and dropped, with its connections,
/// when this value is.
pub struct TestDatabase {
    pub name: String,
}

/// A connection to the server's `postgres` database.
pub fn admin() -> Client {
    Client::connect(&format!("{SERVER} dbname=postgres"), NoTls)
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/postgres starts it)")
}

impl TestDatabase {
    /// A new database named after `tag`, the process and a counter, so
    /// tests running at once never share one.
    pub fn new(tag: &str) -> TestDatabase {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let name = format!(
            "sealtrail_{tag}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        TestDatabase { name }
    }

    /// Its key-value connection string.
    pub fn dsn(&self) -> String {
        format!("{SERVER} dbname={}", self.name)
    }

    /// Its key-value connection string for logging in as `role`.
    pub fn dsn_as(&self, role: &str) -> String {
        format!("host=127.0.0.1 port=5432 user={role} dbname={}", self.name)
    }

    /// Its `postgresql://` URL.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.dsn(), NoTls).expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // On a thread of its own: the blocking client may not run on an
        // async test's threads, where a drop may happen.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(mut admin) = Client::connect(&format!("{SERVER} dbname=postgres"), NoTls) {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}
