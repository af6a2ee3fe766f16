//! Shared by the capture tests: a throw-away database on the local
//! PostgreSQL server and a throw-away trail.
#![allow(dead_code)]

use sealtrail_ledger::DataDir;
use sealtrail_trail::{Trail, TrailOptions};
use serde_json::Value;

/// A database created for one test and dropped after it.
pub type Db = sealtrail_testgen::pg::TestDatabase;

/// A trail in a temporary directory.
pub struct TestTrail {
    pub dir: tempfile::TempDir,
    pub trail: Trail,
}

pub fn trail() -> TestTrail {
    let dir = tempfile::tempdir().expect("temp dir");
    let trail = open_trail(dir.path());
    TestTrail { dir, trail }
}

pub fn create_trail(path: &std::path::Path) {
    DataDir::new(path).create_log("default", None).expect("create log");
}

pub fn open_trail(path: &std::path::Path) -> Trail {
    let data = DataDir::new(path);
    if !path.join("logs").join("default").exists() {
        create_trail(path);
    }
    Trail::open(&data, "default", TrailOptions::default()).expect("open trail")
}

/// Every event in the trail, in ledger order, as JSON.
pub fn events(trail: &Trail) -> Vec<Value> {
    (0..trail.log().size())
        .map(|i| {
            let found = trail.read(i).expect("read entry");
            serde_json::from_slice(&found.entry).expect("entry is JSON")
        })
        .collect()
}

/// The first target's id of every event in the trail, as a number, in
/// ledger order.
pub fn target_ids(trail: &Trail) -> Vec<u64> {
    events(trail)
        .iter()
        .map(|e| {
            e["targets"][0]["id"]
                .as_str()
                .expect("target id")
                .parse()
                .expect("a number")
        })
        .collect()
}

/// Drain until `rows` outbox rows have been drained in all. A drain stops
/// at the oldest transaction still open anywhere on the server, and tests
/// running beside this one hold transactions open for a moment.
/// Drains `dsn` into `trail` until its outbox is empty (waiting for
/// transactions still in flight), at most 60 s.
pub fn drain_until_empty(dsn: &str, trail: &Trail) {
    let mut client = postgres::Client::connect(dsn, postgres::NoTls).expect("connect to the tracked database");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        sealtrail_pg::drain::drain(dsn, trail, &sealtrail_pg::drain::DrainOptions::default()).expect("drain");
        let left: i64 = client
            .query_one("SELECT count(*) FROM sealtrail.outbox", &[])
            .expect("count the outbox")
            .get(0);
        if left == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "outbox not empty after 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn drain_all(
    dsn: &str,
    trail: &Trail,
    opts: &sealtrail_pg::drain::DrainOptions,
    rows: u64,
) -> sealtrail_pg::drain::DrainReport {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut total = sealtrail_pg::drain::DrainReport::default();
    loop {
        let r = sealtrail_pg::drain::drain(dsn, trail, opts).expect("drain");
        total.rows += r.rows;
        total.appended += r.appended;
        total.duplicates += r.duplicates;
        total.skipped += r.skipped;
        total.batches += r.batches;
        if r.through.is_some() {
            total.through = r.through;
        }
        if total.rows >= rows {
            return total;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drained {} of {rows} rows in 60 s",
            total.rows
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A random number below its argument (xorshift seeded from the clock):
/// where the kill tests stop a drain differs from run to run.
pub fn random_below() -> impl FnMut(u64) -> u64 {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    }
}

/// One drain of `dsn` while a writer commits 500-row transactions into
/// `items (id int, v text)` without end (a 10 ms breath between them, so
/// that the rows stay few enough to check), starting once 5,000 rows are
/// in. The drain must end while the writer still writes: it takes the
/// transactions that had ended when it started and leaves the rest to the
/// next drain. It is given a limit of `limit` rows, far above that
/// backlog, so that a drain that followed the writer still ends, and then
/// fails here. The writer goes on until it has committed once more after
/// the drain ended, so that some rows are always the next drain's. The
/// rows the writer committed in all.
pub fn drain_beside_a_writer(dsn: &str, trail: &Trail, limit: u64) -> u64 {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    /// Stops the writer when dropped, a failed assertion's unwinding too.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let committed = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut c = postgres::Client::connect(dsn, postgres::NoTls).expect("connect the writer");
            let mut next: i32 = 1;
            // A bound on the writer too, should the drain never return.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
            while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                c.execute(
                    "INSERT INTO items SELECT g, 'v' FROM generate_series($1::int, $1::int + 499) g",
                    &[&next],
                )
                .expect("insert");
                next += 500;
                committed.fetch_add(500, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        let stopper = Stop(&stop);
        let wait_for = |rows: u64, what: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while committed.load(Ordering::SeqCst) < rows {
                assert!(std::time::Instant::now() < deadline, "the writer {what} in 60 s");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        wait_for(5_000, "wrote fewer than 5,000 rows");
        let before = committed.load(Ordering::SeqCst);
        let opts = sealtrail_pg::drain::DrainOptions {
            limit: Some(limit),
            ..sealtrail_pg::drain::DrainOptions::default()
        };
        let report = sealtrail_pg::drain::drain(dsn, trail, &opts);
        // A transaction that commits from now on ended after the drain's
        // horizon was taken.
        let at_end = committed.load(Ordering::SeqCst);
        wait_for(at_end + 1, "committed nothing after the drain");
        drop(stopper);
        writer.join().expect("the writer");
        let report = report.expect("drain");
        assert!(
            report.rows < limit,
            "the drain went on to its limit of {limit} rows: it followed a writer that never pauses"
        );
        // Everything committed before it started, and not the commit made
        // after it ended.
        let written = committed.load(Ordering::SeqCst);
        assert!(report.appended >= before, "{} < {before}", report.appended);
        assert!(report.appended < written, "{} >= {written}", report.appended);
        written
    })
}
