//! Sealtrail ledger benchmarks. Every figure is printed beside a baseline
//! measured in the same run, and the ratio of the two: on a shared VM
//! absolute times are noise, ratios are evidence.
//!
//! ```text
//! cargo bench -p sealtrail-ledger --bench ledger
//! SEALTRAIL_BENCH_ENTRIES=200000 SEALTRAIL_BENCH_SECS=0.5 SEALTRAIL_BENCH_ROUNDS=1 \
//!   SEALTRAIL_BENCH_PROOFS=5000 SEALTRAIL_BENCH_UNCLEAN_ENTRIES=20000 cargo bench -p sealtrail-ledger --bench ledger
//! ```
//!
//! Knobs (environment variables) are listed in `BENCHMARKS.md` at the
//! workspace root and in [`Config::from_env`]. Progress goes to stderr, the
//! result table (Markdown) to stdout.
#![allow(clippy::unwrap_used)]

use sealtrail_ledger::format::{Slot, HEADER_LEN, RECORD_HEADER_LEN, SLOT_LEN};
use sealtrail_ledger::log::{CHECKPOINT_FILE, ENTRIES_FILE, HASHES_FILE, INDEX_FILE};
use sealtrail_ledger::storage::OsStorage;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, Log, LogOptions};
use sealtrail_merkle::{leaf_hash, node_hash, stored_count, verify_inclusion, Hash};
use sealtrail_testgen::Rng;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Configuration

struct Config {
    /// Entries in the big log (proofs, verification, restart, RSS).
    entries: u64,
    /// Time budget of each throughput measurement.
    secs: f64,
    /// Options of the logs of the append measurement (default: the
    /// defaults; SEALTRAIL_BENCH_MAX_DELAY_US and SEALTRAIL_BENCH_MAX_BATCH
    /// change them, to explore group commit).
    append_opts: LogOptions,
    /// Rounds of each append measurement (median reported).
    reps: usize,
    /// Concurrent appending threads of the multi-threaded rows (besides 1).
    threads: Vec<usize>,
    /// Batch sizes (entries per `append` call) of the append measurement.
    batches: Vec<usize>,
    /// Random inclusion proofs to time.
    proofs: usize,
    /// Entries per `append` call while building the big log.
    build_batch: usize,
    /// Appending threads while building the big log.
    build_threads: usize,
    /// Entries appended, never flushed, before the simulated unclean stop.
    unclean: u64,
    /// Distinct entries in the pool the appends cycle through.
    pool: usize,
    /// Clean-close reopen repetitions.
    reopen_reps: usize,
    dir: PathBuf,
    keep: bool,
    cold: bool,
    run_append: bool,
    run_big: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.replace('_', "");
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value"))
        }
        Err(_) => default,
    }
}

fn list(name: &str, default: &str) -> Vec<usize> {
    let v = std::env::var(name).unwrap_or_else(|_| default.to_string());
    v.split(',')
        .map(|x| {
            x.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a list of numbers"))
        })
        .collect()
}

impl Config {
    fn from_env() -> Config {
        let default_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp");
        let only = std::env::var("SEALTRAIL_BENCH_ONLY").unwrap_or_default();
        let c = Config {
            entries: env_or("SEALTRAIL_BENCH_ENTRIES", 10_000_000),
            secs: env_or("SEALTRAIL_BENCH_SECS", 2.0),
            reps: env_or("SEALTRAIL_BENCH_ROUNDS", 3),
            append_opts: LogOptions {
                max_delay: Duration::from_micros(env_or(
                    "SEALTRAIL_BENCH_MAX_DELAY_US",
                    LogOptions::default().max_delay.as_micros() as u64,
                )),
                max_batch: env_or("SEALTRAIL_BENCH_MAX_BATCH", LogOptions::default().max_batch),
                ..LogOptions::default()
            },
            threads: list("SEALTRAIL_BENCH_THREADS", "4,8"),
            batches: list("SEALTRAIL_BENCH_BATCHES", "1,100,1000"),
            proofs: env_or("SEALTRAIL_BENCH_PROOFS", 100_000),
            build_batch: env_or("SEALTRAIL_BENCH_BUILD_BATCH", 16_384),
            build_threads: env_or("SEALTRAIL_BENCH_BUILD_THREADS", 2),
            unclean: env_or(
                "SEALTRAIL_BENCH_UNCLEAN_ENTRIES",
                LogOptions::default().derived_sync_every,
            ),
            pool: env_or("SEALTRAIL_BENCH_POOL", 32_768),
            reopen_reps: env_or("SEALTRAIL_BENCH_REOPENS", 5),
            dir: std::env::var_os("SEALTRAIL_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or(default_dir),
            keep: env_or("SEALTRAIL_BENCH_KEEP", 0u8) != 0,
            cold: env_or("SEALTRAIL_BENCH_COLD", 0u8) != 0,
            run_append: only.is_empty() || only == "append",
            run_big: only.is_empty() || only == "big",
        };
        assert!(
            c.entries >= 10
                && c.reps > 0
                && c.reopen_reps > 0
                && c.proofs > 0
                && c.threads.iter().all(|t| *t > 0)
                && c.build_batch > 0
                && c.build_threads > 0
        );
        let max_threads = c.threads.iter().copied().max().unwrap_or(1);
        let max_batch = (c.batches.iter().copied().max().unwrap_or(1) * max_threads).max(c.build_batch);
        assert!(
            c.pool >= max_batch,
            "SEALTRAIL_BENCH_POOL must be at least the largest batch times the most threads ({max_batch})"
        );
        c
    }
}

// ---------------------------------------------------------------------------
// Results table

#[derive(Clone, Copy)]
enum Unit {
    /// Entries per second.
    Rate,
    /// Seconds (latencies, durations).
    Time,
    /// Bytes (memory).
    Bytes,
}

struct Row {
    section: &'static str,
    figure: String,
    value: f64,
    baseline: String,
    base_value: f64,
    unit: Unit,
    goal: String,
    met: Option<bool>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        section: &'static str,
        figure: impl Into<String>,
        value: f64,
        baseline: impl Into<String>,
        base_value: f64,
        unit: Unit,
        goal: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            section,
            figure: figure.into(),
            value,
            baseline: baseline.into(),
            base_value,
            unit,
            goal: goal.into(),
            met,
        };
        eprintln!(
            "  -> {} = {}  | {} = {}  | ratio {}",
            row.figure,
            fmt_value(row.value, row.unit),
            row.baseline,
            fmt_value(row.base_value, row.unit),
            fmt_ratio(row.value / row.base_value)
        );
        self.rows.push(row);
    }

    fn print(&self) {
        println!(
            "| # | figure | value | baseline (same run) | baseline value | ratio (value ÷ baseline) | goal | met |"
        );
        println!("|---|---|---:|---|---:|---:|---|---|");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.section,
                r.figure,
                fmt_value(r.value, r.unit),
                r.baseline,
                fmt_value(r.base_value, r.unit),
                fmt_ratio(r.value / r.base_value),
                r.goal,
                met
            );
        }
    }
}

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Rate if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::Rate if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Unit::Rate => format!("{v:.0} /s"),
        Unit::Time => fmt_secs(v),
        Unit::Bytes => format!("{:.1} MiB", v / (1u64 << 20) as f64),
    }
}

fn fmt_secs(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.2} s")
    } else if v >= 1e-3 {
        format!("{:.2} ms", v * 1e3)
    } else {
        format!("{:.1} µs", v * 1e6)
    }
}

fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "n/a".into()
    } else if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.4}×")
    }
}

fn fmt_count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(100_000) {
        format!("{}M", n as f64 / 1e6)
    } else if n >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

// ---------------------------------------------------------------------------
// Test data

/// An audit event of about 300 bytes (280–320), JSON-ish, every one different.
fn make_entry(rng: &mut Rng, seq: u64) -> Vec<u8> {
    const ACTIONS: &[&str] = &[
        "document.update",
        "document.read",
        "user.login",
        "user.logout",
        "role.grant",
        "key.rotate",
        "export.create",
        "policy.change",
    ];
    const KINDS: &[&str] = &["user", "service", "admin", "robot"];
    const OUTCOMES: &[&str] = &["success", "denied", "error"];
    let target = 280 + rng.below(41) as usize;
    let mut s = format!(
        "{{\"v\":1,\"seq\":{seq},\"ts\":\"2026-05-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"actor\":{{\"type\":\"{}\",\"id\":\"u-{}\",\
         \"ip\":\"10.{}.{}.{}\"}},\"action\":\"{}\",\"target\":\"/orgs/o-{}/projects/p-{}/docs/d-{}\",\
         \"request_id\":\"{:016x}{:016x}\",\"outcome\":\"{}\",\"detail\":\"",
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1_000_000),
        rng.pick(KINDS),
        rng.below(100_000),
        rng.below(256),
        rng.below(256),
        rng.below(256),
        rng.pick(ACTIONS),
        rng.below(1_000),
        rng.below(10_000),
        rng.below(1_000_000),
        rng.next_u64(),
        rng.next_u64(),
        rng.pick(OUTCOMES),
    );
    const WORDS: &[&str] = &[
        "field=title",
        "old_len=12",
        "new_len=40",
        "via=api",
        "mfa=true",
        "scope=rw",
        "ttl=3600",
    ];
    while s.len() < target - 2 {
        s.push_str(rng.pick(WORDS));
        s.push(' ');
    }
    s.truncate(target - 2);
    s.push_str("\"}");
    s.into_bytes()
}

struct Pool {
    entries: Vec<Vec<u8>>,
    /// The entries framed as records (8-byte header + data), concatenated:
    /// the bytes the write baselines write.
    records: Vec<u8>,
    /// Offsets of each record in `records`, plus the end.
    offsets: Vec<usize>,
}

impl Pool {
    fn new(n: usize) -> Pool {
        let mut rng = Rng::new(0x5ea1_7a11);
        let entries: Vec<Vec<u8>> = (0..n as u64).map(|i| make_entry(&mut rng, i)).collect();
        let mut records = Vec::new();
        let mut offsets = vec![0];
        for (i, e) in entries.iter().enumerate() {
            sealtrail_ledger::format::encode_record(&mut records, e, i as u64);
            offsets.push(records.len());
        }
        Pool {
            entries,
            records,
            offsets,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Start of the next batch of `batch` entries after `at`, wrapping.
    fn next_start(&self, at: usize, batch: usize) -> usize {
        if at + 2 * batch > self.len() {
            0
        } else {
            at + batch
        }
    }

    fn batch(&self, at: usize, batch: usize) -> &[Vec<u8>] {
        &self.entries[at..at + batch]
    }

    fn batch_bytes(&self, at: usize, batch: usize) -> &[u8] {
        &self.records[self.offsets[at]..self.offsets[at + batch]]
    }

    fn mean_len(&self) -> f64 {
        self.entries.iter().map(|e| e.len()).sum::<usize>() as f64 / self.len() as f64
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn stat_kib(field: &str) -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss() -> (u64, u64) {
    (stat_kib("VmHWM:") * 1024, stat_kib("VmRSS:") * 1024)
}

/// The file system holding `path`, from /proc/mounts (longest prefix).
fn fs_of(path: &Path) -> (String, String, String) {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best = (String::new(), String::from("?"), String::from("?"));
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        if path.starts_with(f[1]) && f[1].len() >= best.0.len() {
            best = (f[1].to_string(), f[2].to_string(), f[0].to_string());
        }
    }
    best
}

fn drop_caches(cold: bool) {
    if cold {
        // Needs root; writes back dirty pages first so the drop is complete.
        let _ = std::process::Command::new("sync").status();
        if let Err(e) = fs::write("/proc/sys/vm/drop_caches", "1") {
            eprintln!("warning: SEALTRAIL_BENCH_COLD=1 but cannot drop caches: {e}");
        }
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Sequentially read `paths` in 4 MiB chunks; returns bytes read.
fn read_files(paths: &[PathBuf]) -> u64 {
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    for p in paths {
        let mut f = File::open(p).unwrap();
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
            black_box(&buf[..n]);
        }
    }
    total
}

/// Sequentially read the records of an entries file from `from` and hash
/// each entry once with SHA-256: the least work any full verification or
/// rescan must do. Returns the number of entries.
fn read_and_hash_entries(path: &Path, from: u64) -> u64 {
    const CHUNK: usize = 4 << 20;
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut buf = vec![0u8; CHUNK + 65_536 + 8];
    let mut pos = from;
    let mut have = 0usize; // valid bytes at the front of buf
    let mut count = 0u64;
    let mut acc = 0u8;
    while pos < len {
        let want = (CHUNK.min((len - pos) as usize)).min(buf.len() - have);
        f.read_exact_at(&mut buf[have..have + want], pos).unwrap();
        pos += want as u64;
        have += want;
        let mut at = 0usize;
        while at + RECORD_HEADER_LEN as usize <= have {
            let n = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            let end = at + RECORD_HEADER_LEN as usize + n;
            if end > have {
                break;
            }
            acc ^= Sha256::digest(&buf[at + RECORD_HEADER_LEN as usize..end])[0];
            count += 1;
            at = end;
        }
        buf.copy_within(at..have, 0);
        have -= at;
    }
    black_box(acc);
    count
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn slot_seq(dir: &Path) -> u64 {
    let b = fs::read(dir.join(CHECKPOINT_FILE)).unwrap();
    (0..2)
        .filter_map(|i| b.get(i * SLOT_LEN..(i + 1) * SLOT_LEN))
        .filter_map(|s| Slot::decode(s).ok())
        .map(|s| s.seq)
        .max()
        .unwrap_or(0)
}

fn fresh_log(dd: &DataDir, name: &str) {
    let dir = dd.log_dir(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    dd.create_log(name, None).unwrap();
}

// ---------------------------------------------------------------------------
// Baselines

/// SHA-256 of each pool entry, `threads` threads, for `secs`: entries/s.
fn sha_rate(pool: &Pool, threads: usize, secs: f64) -> f64 {
    let budget = Duration::from_secs_f64(secs);
    let barrier = Barrier::new(threads);
    let total = AtomicU64::new(0);
    let start = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, total) = (&barrier, &total);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut i = (t * 997) % pool.len();
                    let mut n = 0u64;
                    let mut acc = 0u8;
                    while start.elapsed() < budget {
                        for _ in 0..256 {
                            acc ^= Sha256::digest(&pool.entries[i])[0];
                            i = if i + 1 == pool.len() { 0 } else { i + 1 };
                        }
                        n += 256;
                    }
                    black_box(acc);
                    total.fetch_add(n, Ordering::Relaxed);
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    });
    total.load(Ordering::Relaxed) as f64 / start.as_secs_f64()
}

/// Sequential write of batches of `batch` records with one fdatasync each,
/// for `secs`: entries/s. With `log_pattern`, also the rest of the I/O a log
/// commit does, without any of its CPU work: index and hash bytes written
/// to two more files (not synced) and a 4 KiB checkpoint slot written and
/// fdatasync'd after the entries' sync.
fn write_sync_rate(dir: &Path, pool: &Pool, batch: usize, secs: f64, log_pattern: bool) -> f64 {
    let path = |n: &str| dir.join(format!("baseline-{n}"));
    let open = |n: &str| {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path(n))
            .unwrap()
    };
    let mut entries = open("entries");
    let mut index = open("index");
    let mut hashes = open("hashes");
    let checkpoint = open("checkpoint");
    checkpoint.write_all_at(&[0u8; 2 * SLOT_LEN], 0).unwrap();
    checkpoint.sync_all().unwrap();
    let slot = [0x5au8; SLOT_LEN];
    let derived = vec![0xa5u8; batch * (8 + 64)];
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let (mut at, mut n, mut seq) = (0usize, 0u64, 0u64);
    while start.elapsed() < budget {
        entries.write_all(pool.batch_bytes(at, batch)).unwrap();
        if log_pattern {
            index.write_all(&derived[..batch * 8]).unwrap();
            hashes.write_all(&derived[batch * 8..]).unwrap();
        }
        entries.sync_data().unwrap();
        if log_pattern {
            seq += 1;
            checkpoint.write_all_at(&slot, (seq % 2) * SLOT_LEN as u64).unwrap();
            checkpoint.sync_data().unwrap();
        }
        n += batch as u64;
        at = pool.next_start(at, batch);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for f in ["entries", "index", "hashes", "checkpoint"] {
        let _ = fs::remove_file(path(f));
    }
    rate
}

// ---------------------------------------------------------------------------
// 1. Durable appends

struct AppendRun {
    rate: f64,
    entries: u64,
    commits: u64,
}

fn append_run(cfg: &Config, dd: &DataDir, pool: &Pool, batch: usize, threads: usize) -> AppendRun {
    let secs = cfg.secs;
    let name = format!("append-b{batch}-t{threads}");
    fresh_log(dd, &name);
    let log = dd.open_log(&name, cfg.append_opts.clone()).unwrap();
    let seq0 = slot_seq(log.dir());
    let budget = Duration::from_secs_f64(secs);
    let barrier = Barrier::new(threads);
    let total = AtomicU64::new(0);
    let elapsed = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (log, barrier, total) = (&log, &barrier, &total);
                s.spawn(move || {
                    let mut at = (t * 4099) % (pool.len() - batch + 1);
                    barrier.wait();
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        let a = log.append(pool.batch(at, batch)).unwrap();
                        assert_eq!(a.count, batch as u64);
                        n += batch as u64;
                        at = pool.next_start(at, batch);
                    }
                    total.fetch_add(n, Ordering::Relaxed);
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    });
    let entries = total.load(Ordering::Relaxed);
    assert_eq!(log.size(), entries);
    let commits = slot_seq(log.dir()) - seq0;
    drop(log);
    fs::remove_dir_all(dd.log_dir(&name)).unwrap();
    AppendRun {
        rate: entries as f64 / elapsed.as_secs_f64(),
        entries,
        commits,
    }
}

fn bench_appends(cfg: &Config, dd: &DataDir, pool: &Pool, table: &mut Table) {
    eprintln!(
        "== 1. durable appends ({} rounds of {} s per measurement, interleaved; medians); log options {:?}",
        cfg.reps, cfg.secs, cfg.append_opts
    );
    let d = LogOptions::default();
    let opts = if cfg.append_opts.max_delay != d.max_delay || cfg.append_opts.max_batch != d.max_batch {
        format!(
            ", max_delay {} µs, max_batch {}",
            cfg.append_opts.max_delay.as_micros(),
            cfg.append_opts.max_batch
        )
    } else {
        String::new()
    };
    let mut counts = vec![1];
    counts.extend(cfg.threads.iter().copied().filter(|t| *t != 1));
    let sha: Vec<f64> = counts.iter().map(|t| sha_rate(pool, *t, cfg.secs)).collect();
    eprintln!("  SHA-256 over the entries, by threads {counts:?}: {sha:.0?} entries/s");
    for &batch in &cfg.batches {
        eprintln!("-- batch {batch}");
        // The disk's speed drifts by several times within seconds on a
        // shared VM, so every measurement is repeated in rounds, each round
        // running baselines and figures back to back; medians are reported.
        let (mut disk, mut skeleton) = (Vec::new(), Vec::new());
        let mut runs: Vec<Vec<AppendRun>> = counts.iter().map(|_| Vec::new()).collect();
        // What perfect group commit could reach: all threads' batches in
        // one write and one fdatasync.
        let mut merged: Vec<Vec<f64>> = counts.iter().map(|_| Vec::new()).collect();
        for round in 0..cfg.reps {
            disk.push(write_sync_rate(dd.root(), pool, batch, cfg.secs, false));
            skeleton.push(write_sync_rate(dd.root(), pool, batch, cfg.secs, true));
            for (i, &threads) in counts.iter().enumerate() {
                if threads > 1 {
                    merged[i].push(write_sync_rate(dd.root(), pool, batch * threads, cfg.secs, false));
                }
                runs[i].push(append_run(cfg, dd, pool, batch, threads));
            }
            eprintln!(
                "  round {round}: write+fdatasync {:.0}/s, log's I/O {:.0}/s, merged by threads {counts:?}: {:.0?}/s, \
                 log by threads: {:.0?}/s",
                disk[round],
                skeleton[round],
                merged
                    .iter()
                    .map(|m| m.get(round).copied().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>(),
                runs.iter().map(|r| r[round].rate).collect::<Vec<_>>()
            );
        }
        let (disk, skeleton) = (median(disk), median(skeleton));
        for (((&threads, &sha), runs), merged) in counts.iter().zip(&sha).zip(&runs).zip(merged) {
            let rate = median(runs.iter().map(|r| r.rate).collect());
            let entries: u64 = runs.iter().map(|r| r.entries).sum();
            let commits: u64 = runs.iter().map(|r| r.commits).sum();
            let fig = format!(
                "append, batch {batch}, {threads} thread{}{opts} ({:.1} entries/commit)",
                if threads == 1 { "" } else { "s" },
                entries as f64 / commits.max(1) as f64
            );
            let (g, met) = if batch >= 1000 {
                ("≥ 1 M/s", Some(rate >= 1e6))
            } else {
                ("", None)
            };
            let sha_name = format!(
                "SHA-256 of each entry, {threads} thread{}",
                if threads == 1 { "" } else { "s" }
            );
            table.add("1", fig.clone(), rate, sha_name, sha, Unit::Rate, g, met);
            let disk_name = format!("write + 1 fdatasync per {batch} entries");
            table.add("1", fig.clone(), rate, disk_name, disk, Unit::Rate, g, met);
            let skel_name = format!("log's I/O alone per {batch} entries: 4 writes + 2 fdatasyncs");
            table.add("1", fig.clone(), rate, skel_name, skeleton, Unit::Rate, g, met);
            if threads > 1 {
                let name = format!("write + 1 fdatasync per {threads}×{batch} entries (perfect merge)");
                table.add("1", fig, rate, name, median(merged), Unit::Rate, g, met);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Building the big log, with RSS samples

fn build_big(cfg: &Config, dd: &DataDir, pool: &Pool, name: &str, table: &mut Table) -> Log {
    let n = cfg.entries;
    eprintln!(
        "== building a log of {n} entries ({} threads, batches of {})",
        cfg.build_threads, cfg.build_batch
    );
    fresh_log(dd, name);
    let log = dd.open_log(name, LogOptions::default()).unwrap();
    // Reset VmHWM (Linux ≥ 4.0) so the peak is this build's, not the
    // append benchmarks'.
    let _ = fs::write("/proc/self/clear_refs", "5");
    let (hwm0, rss0) = rss();
    let milestones: Vec<u64> = [0.1, 0.2, 0.5, 1.0]
        .iter()
        .map(|f| ((n as f64 * f) as u64).max(1))
        .collect();
    let mut samples: Vec<(u64, u64, u64)> = Vec::new();
    let reserved = AtomicU64::new(0);
    let running = AtomicUsize::new(cfg.build_threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..cfg.build_threads {
            let (log, reserved, running) = (&log, &reserved, &running);
            s.spawn(move || {
                let mut at = (t * 7919) % (pool.len() - cfg.build_batch + 1);
                loop {
                    let first = reserved.fetch_add(cfg.build_batch as u64, Ordering::Relaxed);
                    if first >= n {
                        break;
                    }
                    let count = (cfg.build_batch as u64).min(n - first) as usize;
                    log.append(pool.batch(at, count)).unwrap();
                    at = pool.next_start(at, cfg.build_batch);
                }
                running.fetch_sub(1, Ordering::Release);
            });
        }
        let mut next = 0usize;
        let mut last_report = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let size = log.size();
            while next < milestones.len() && size >= milestones[next] {
                let (hwm, cur) = rss();
                samples.push((size, hwm, cur));
                next += 1;
            }
            let done = running.load(Ordering::Acquire) == 0;
            if last_report.elapsed() >= Duration::from_secs(5) || done {
                last_report = Instant::now();
                let el = start.elapsed().as_secs_f64();
                let rate = size as f64 / el;
                eprintln!(
                    "  built {size}/{n} entries in {el:.0} s ({rate:.0}/s, ETA {:.0} s), VmRSS {:.1} MiB",
                    (n - size.min(n)) as f64 / rate.max(1.0),
                    rss().1 as f64 / (1u64 << 20) as f64
                );
            }
            if done {
                break;
            }
        }
    });
    let el = start.elapsed().as_secs_f64();
    assert_eq!(log.size(), n);
    eprintln!("  built in {el:.1} s ({:.0} entries/s)", n as f64 / el);
    let (hwm_end, rss_end) = rss();
    eprintln!("  RSS before build: VmHWM {hwm0} B, VmRSS {rss0} B; samples (size, VmHWM, VmRSS): {samples:?}");
    // The first sample is compared with the process before the build (the
    // log's fixed working set); every later one with the first sample, so a
    // ratio of 1.00× is a flat line. "Flat": within 10%.
    let Some(&(size1, hwm1, rss1)) = samples.first() else {
        panic!("no RSS sample")
    };
    let at = |size: u64| format!("{} entries", fmt_count(size));
    table.add(
        "5",
        format!("peak RSS (VmHWM) at {}", at(size1)),
        hwm1 as f64,
        "VmHWM before the build",
        hwm0 as f64,
        Unit::Bytes,
        "",
        None,
    );
    table.add(
        "5",
        format!("current RSS (VmRSS) at {}", at(size1)),
        rss1 as f64,
        "VmRSS before the build",
        rss0 as f64,
        Unit::Bytes,
        "",
        None,
    );
    for &(size, hwm, cur) in &samples[1..] {
        let f = format!("peak RSS (VmHWM) at {}", at(size));
        let met = Some(hwm as f64 <= hwm1 as f64 * 1.10);
        table.add(
            "5",
            f,
            hwm as f64,
            format!("VmHWM at {}", at(size1)),
            hwm1 as f64,
            Unit::Bytes,
            "flat (≤ 1.10×)",
            met,
        );
        let f = format!("current RSS (VmRSS) at {}", at(size));
        let met = Some(cur as f64 <= rss1 as f64 * 1.10);
        table.add(
            "5",
            f,
            cur as f64,
            format!("VmRSS at {}", at(size1)),
            rss1 as f64,
            Unit::Bytes,
            "flat (≤ 1.10×)",
            met,
        );
    }
    eprintln!("  after build: VmHWM {hwm_end} B, VmRSS {rss_end} B");
    log
}

// ---------------------------------------------------------------------------
// 2. Full verification

fn bench_verify(cfg: &Config, dir: &Path, n: u64, table: &mut Table) {
    eprintln!(
        "== 2. full verification of {n} entries ({})",
        if cfg.cold { "cold cache" } else { "warm cache" }
    );
    let files: Vec<PathBuf> = [ENTRIES_FILE, INDEX_FILE, HASHES_FILE]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let bytes: u64 = files.iter().map(|f| file_len(f)).sum();
    if !cfg.cold {
        read_files(&files); // warm up: every measurement below then reads from the page cache
    }
    drop_caches(cfg.cold);
    let t = Instant::now();
    let read = read_files(&files);
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(read, bytes);
    eprintln!(
        "  plain read of {bytes} bytes: {read_s:.2} s ({:.0} MB/s)",
        bytes as f64 / read_s / 1e6
    );

    drop_caches(cfg.cold);
    let t = Instant::now();
    let hashed = read_and_hash_entries(&dir.join(ENTRIES_FILE), HEADER_LEN);
    let sha_s = t.elapsed().as_secs_f64();
    assert_eq!(hashed, n);

    drop_caches(cfg.cold);
    let t = Instant::now();
    let report = verify_log(&OsStorage, dir, None, None).unwrap();
    let verify_s = t.elapsed().as_secs_f64();
    assert!(report.intact(), "verify_log found problems: {:?}", report.findings);
    assert_eq!(report.entries, n);

    let rate = n as f64 / verify_s;
    let fig = format!("verify_log, {} entries", fmt_count(n));
    let goal = "≥ 1 M/s";
    table.add(
        "2",
        fig.clone(),
        rate,
        "read entries + SHA-256 each once",
        n as f64 / sha_s,
        Unit::Rate,
        goal,
        Some(rate >= 1e6),
    );
    table.add(
        "2",
        fig,
        rate,
        format!("plain read of entries+index+hashes ({:.2} GB)", bytes as f64 / 1e9),
        n as f64 / read_s,
        Unit::Rate,
        goal,
        Some(rate >= 1e6),
    );
}

// ---------------------------------------------------------------------------
// 3. Inclusion proofs

fn bench_proofs(cfg: &Config, log: &Log, table: &mut Table) {
    let size = log.size();
    let root = log.checkpoint().0.root;
    eprintln!("== 3. {} inclusion proofs at size {size}", cfg.proofs);
    let hashes_path = log.dir().join(HASHES_FILE);
    let hashes = File::open(&hashes_path).unwrap();
    let nodes = stored_count(size);
    let mut rng = Rng::new(0x00c0_ffee);
    let p = cfg.proofs;
    let (mut proof_t, mut verify_t, mut pread_t, mut preads_t, mut node_t) = (
        Vec::with_capacity(p),
        Vec::with_capacity(p),
        Vec::with_capacity(p),
        Vec::with_capacity(p),
        Vec::with_capacity(p),
    );
    let mut buf = [0u8; 32];
    let mut depth_sum = 0usize;
    let read_node = |rng: &mut Rng, buf: &mut [u8; 32]| {
        hashes.read_exact_at(buf, HEADER_LEN + rng.below(nodes) * 32).unwrap();
    };
    for i in 0..p {
        // Baseline: one 32-byte pread at a random node of the hashes file.
        let t = Instant::now();
        read_node(&mut rng, &mut buf);
        pread_t.push(t.elapsed().as_secs_f64());

        let index = rng.below(size);
        let t = Instant::now();
        let proof = log.inclusion_proof(index, size).unwrap();
        proof_t.push(t.elapsed().as_secs_f64());
        depth_sum += proof.len();

        // Baseline: as many random 32-byte preads as the proof has hashes.
        let t = Instant::now();
        for _ in 0..proof.len() {
            read_node(&mut rng, &mut buf);
        }
        preads_t.push(t.elapsed().as_secs_f64());

        let leaf: Hash = leaf_hash(&log.entry(index).unwrap());
        let t = Instant::now();
        verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
        verify_t.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        black_box(node_hash(black_box(&leaf), black_box(&buf)));
        node_t.push(t.elapsed().as_secs_f64());

        if (i + 1) % 20_000 == 0 {
            eprintln!("  {} proofs", i + 1);
        }
    }
    for v in [&mut proof_t, &mut verify_t, &mut pread_t, &mut preads_t, &mut node_t] {
        v.sort_by(f64::total_cmp);
    }
    let depth = depth_sum as f64 / p as f64;
    let fig = |what: &str| {
        format!(
            "inclusion_proof {what}, {} random proofs at size {}",
            fmt_count(p as u64),
            fmt_count(size)
        )
    };
    let q = |v: &[f64], what: &str| match what {
        "p50" => percentile(v, 0.5),
        "p99" => percentile(v, 0.99),
        _ => v[v.len() - 1],
    };
    for what in ["p50", "p99", "max"] {
        let (goal, met) = if what == "p99" {
            ("≤ 1 ms".to_string(), Some(q(&proof_t, what) <= 1e-3))
        } else {
            (String::new(), None)
        };
        table.add(
            "3",
            fig(what),
            q(&proof_t, what),
            format!("one random 32-byte pread of the hashes file, {what}"),
            q(&pread_t, what),
            Unit::Time,
            goal.clone(),
            met,
        );
        table.add(
            "3",
            fig(what),
            q(&proof_t, what),
            format!("{depth:.1} random 32-byte preads (one per proof hash), {what}"),
            q(&preads_t, what),
            Unit::Time,
            goal,
            met,
        );
    }
    for what in ["p50", "p99"] {
        table.add(
            "3",
            format!("verify_inclusion {what} ({depth:.1} hashes per proof)"),
            q(&verify_t, what),
            format!("one node_hash, {what}"),
            q(&node_t, what),
            Unit::Time,
            "",
            None,
        );
    }
}

// ---------------------------------------------------------------------------
// 4. Restart

fn bench_restart(cfg: &Config, dd: &DataDir, name: &str, log: Log, table: &mut Table) {
    let n = log.size();
    let dir = log.dir().to_path_buf();
    eprintln!("== 4. restart of the {n}-entry log");
    let t = Instant::now();
    drop(log);
    eprintln!("  clean close (drop, flush): {}", fmt_secs(t.elapsed().as_secs_f64()));
    let entries_path = dir.join(ENTRIES_FILE);
    let entries_bytes = file_len(&entries_path);

    let mut open_t = Vec::new();
    let mut ckpt_t = Vec::new();
    for _ in 0..cfg.reopen_reps {
        drop_caches(cfg.cold);
        let t = Instant::now();
        let b = fs::read(dir.join(CHECKPOINT_FILE)).unwrap();
        ckpt_t.push(t.elapsed().as_secs_f64());
        black_box(b);
        drop_caches(cfg.cold);
        let t = Instant::now();
        let log = dd.open_log(name, LogOptions::default()).unwrap();
        open_t.push(t.elapsed().as_secs_f64());
        assert_eq!(log.size(), n);
        drop(log);
    }
    drop_caches(cfg.cold);
    let t = Instant::now();
    read_files(std::slice::from_ref(&entries_path));
    let full_read = t.elapsed().as_secs_f64();
    drop_caches(cfg.cold);
    let t = Instant::now();
    assert_eq!(read_and_hash_entries(&entries_path, HEADER_LEN), n);
    let full_rescan = t.elapsed().as_secs_f64();

    let open_med = median(open_t.clone());
    let open_max = open_t.iter().copied().fold(0.0, f64::max);
    let goal = "≤ 2 s";
    let fig = format!(
        "open_log after clean close, median of {} ({} entries)",
        cfg.reopen_reps,
        fmt_count(n)
    );
    table.add(
        "4",
        fig.clone(),
        open_med,
        "open + read the checkpoint file (8 KiB)",
        median(ckpt_t),
        Unit::Time,
        goal,
        Some(open_med <= 2.0),
    );
    table.add(
        "4",
        fig,
        open_med,
        format!(
            "read the whole entries file ({:.2} GB): what a rescan would read",
            entries_bytes as f64 / 1e9
        ),
        full_read,
        Unit::Time,
        goal,
        Some(open_med <= 2.0),
    );
    table.add(
        "4",
        format!("open_log after clean close, max of {}", cfg.reopen_reps),
        open_max,
        "read + SHA-256 every entry: what a full rescan would cost",
        full_rescan,
        Unit::Time,
        goal,
        Some(open_max <= 2.0),
    );

    // Unclean stop: the derived files were last synced at `n`. A child
    // process (this binary again) appends `unclean` more entries with derived
    // syncs disabled and exits without dropping the log, as a killed server
    // would: nothing is flushed. Reopening must re-read exactly those entries.
    let k = cfg.unclean;
    eprintln!("  simulating an unclean stop after {k} unflushed entries (child process)");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, format!("{}\n{name}\n{k}", dd.root().display()))
        .status()
        .unwrap();
    assert!(status.success(), "unclean-stop child failed: {status}");

    drop_caches(cfg.cold);
    let t = Instant::now();
    let log = dd.open_log(name, LogOptions::default()).unwrap();
    let unclean_open = t.elapsed().as_secs_f64();
    assert_eq!(log.size(), n + k);
    drop(log);

    drop_caches(cfg.cold);
    let t = Instant::now();
    assert_eq!(read_and_hash_entries(&entries_path, entries_bytes), k);
    let tail_rescan = t.elapsed().as_secs_f64();

    let fig = format!("open_log after unclean stop ({} entries to re-read)", fmt_count(k));
    table.add(
        "4",
        fig.clone(),
        unclean_open,
        format!("read + SHA-256 of those {} entries", fmt_count(k)),
        tail_rescan,
        Unit::Time,
        goal,
        Some(unclean_open <= 2.0),
    );
    table.add(
        "4",
        fig,
        unclean_open,
        format!("read + SHA-256 every entry ({} entries): a full rescan", fmt_count(n)),
        full_rescan,
        Unit::Time,
        goal,
        Some(unclean_open <= 2.0),
    );
}

// ---------------------------------------------------------------------------

/// Set for the child process of the unclean-stop measurement: data
/// directory, log name and entry count, one a line.
const CHILD_ENV: &str = "SEALTRAIL_BENCH_INTERNAL_UNCLEAN_CHILD";

/// The child of the unclean-stop measurement: append, then exit without
/// running any destructor, so the log is never flushed.
fn unclean_child(cfg: &Config, spec: &str) -> ! {
    let mut parts = spec.lines();
    let (root, name, k) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let k: u64 = k.parse().unwrap();
    let pool = Pool::new(cfg.pool);
    let dd = DataDir::new(root);
    let opts = LogOptions {
        derived_sync_every: u64::MAX,
        ..LogOptions::default()
    };
    let log = dd.open_log(name, opts).unwrap();
    let n = log.size();
    let (mut done, mut at) = (0u64, 0usize);
    while done < k {
        let count = (cfg.build_batch as u64).min(k - done) as usize;
        log.append(pool.batch(at, count)).unwrap();
        at = pool.next_start(at, cfg.build_batch);
        done += count as u64;
    }
    assert_eq!(log.size(), n + k);
    std::process::exit(0)
}

fn main() {
    let cfg = Config::from_env();
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        unclean_child(&cfg, &spec);
    }
    fs::create_dir_all(&cfg.dir).unwrap();
    let dir = cfg.dir.canonicalize().unwrap();
    let (mount, fstype, dev) = fs_of(&dir);
    if fstype == "tmpfs" || fstype == "ramfs" {
        panic!(
            "{} is on {fstype}: fdatasync would measure nothing; set SEALTRAIL_BENCH_DIR to a directory on disk",
            dir.display()
        );
    }
    let data = dir.join(format!("run-{}", std::process::id()));
    fs::create_dir_all(&data).unwrap();
    let dd = DataDir::new(&data);

    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let pool = Pool::new(cfg.pool);
    eprintln!(
        "sealtrail ledger bench: {cpus} CPUs ({cpu}), {:.1} GiB RAM; data in {} ({fstype} on {dev}, mounted at {mount})",
        mem as f64 / (1u64 << 20) as f64,
        data.display()
    );
    eprintln!("entry pool: {} entries, mean {:.1} bytes", pool.len(), pool.mean_len());

    let mut table = Table::default();
    let started = Instant::now();
    if cfg.run_append {
        bench_appends(&cfg, &dd, &pool, &mut table);
    }
    if cfg.run_big {
        let name = "big";
        let log = build_big(&cfg, &dd, &pool, name, &mut table);
        bench_proofs(&cfg, &log, &mut table);
        let n = log.size();
        let log_dir = log.dir().to_path_buf();
        log.flush().unwrap();
        bench_verify(&cfg, &log_dir, n, &mut table);
        bench_restart(&cfg, &dd, name, log, &mut table);
    }

    println!();
    println!(
        "Sealtrail ledger benchmark: {cpus} CPUs ({cpu}), {:.1} GiB RAM, {fstype} on {dev}; \
         {} entries in the big log, mean entry {:.0} bytes, {} s per throughput figure, appending threads 1,{:?}, {}; total {:.0} s",
        mem as f64 / (1u64 << 20) as f64,
        cfg.entries,
        pool.mean_len(),
        cfg.secs,
        cfg.threads,
        if cfg.cold {
            "cold cache (caches dropped before each read)"
        } else {
            "warm page cache"
        },
        started.elapsed().as_secs_f64()
    );
    println!();
    table.sort_stable();
    table.print();

    if cfg.keep {
        eprintln!("kept {}", data.display());
    } else {
        fs::remove_dir_all(&data).unwrap();
        let _ = fs::remove_dir(&dir); // only if empty
    }
}

impl Table {
    /// Sections in numeric order, rows within a section in insertion order.
    fn sort_stable(&mut self) {
        self.rows.sort_by_key(|r| r.section);
    }
}
