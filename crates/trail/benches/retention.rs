//! Retention: pruning the oldest entries of a large log, beside two
//! baselines measured in the same run on the same file system: writing
//! the same number of bytes to a new file with one `fdatasync` (the disk's
//! write bandwidth), and deleting files holding that many bytes (`unlink`,
//! what freeing them costs at the least).
//!
//! ```text
//! cargo bench -p sealtrail-trail --bench retention
//! SEALTRAIL_BENCH_ENTRIES=2000000 cargo bench -p sealtrail-trail --bench retention
//! ```
//!
//! Knobs (environment variables):
//! - `SEALTRAIL_BENCH_ENTRIES` (10,000,000): entries in the log, 100-byte
//!   raw entries (so the index steps over them and the plan reads only
//!   lengths).
//! - `SEALTRAIL_BENCH_DIR` (`target/bench-tmp`): where the data directory
//!   goes (removed afterwards). Keep it off tmpfs.
//!
//! Timed: the plan for a size target that keeps the newest 1/10 of the
//! log (it reads the length of every entry not yet pruned), and the prune of the other
//! 9/10 (ledger and index). Reported: time, entries, bytes freed (as the
//! ledger reports them and as the directory's size shrank).
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_trail::retention::{bundle_floor, Policy};
use sealtrail_trail::{Trail, TrailOptions};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
    }
    total
}

fn main() {
    let n = knob("SEALTRAIL_BENCH_ENTRIES", 10_000_000);
    let base = std::env::var("SEALTRAIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/bench-tmp"));
    let root = base.join(format!("retention-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let data = DataDir::new(root.join("data"));
    data.create_log("bench", None).unwrap();

    eprintln!("appending {n} entries of 100 bytes…");
    let started = Instant::now();
    {
        let log = data.open_log("bench", Default::default()).unwrap();
        let batch: Vec<Vec<u8>> = (0..65_536u64).map(|i| format!("{i:0>100}").into_bytes()).collect();
        let mut done = 0;
        while done < n {
            let k = (n - done).min(batch.len() as u64) as usize;
            log.append(&batch[..k]).unwrap();
            done += k as u64;
        }
    }
    eprintln!("appended in {:.1} s; indexing…", started.elapsed().as_secs_f64());
    let trail = Trail::open(&data, "bench", TrailOptions::default()).unwrap();
    trail.sync_index().unwrap();
    let log_dir = data.log_dir("bench");
    let before = dir_bytes(&log_dir);

    // Keep the newest tenth by size.
    let keep = (n / 10) * (100 + 8);
    let policy = Policy {
        older_than: None,
        max_size: Some(keep),
    };
    let t = Instant::now();
    let plan = trail.plan_retention(&policy, &[], Timestamp::now()).unwrap();
    let plan_s = t.elapsed().as_secs_f64();
    assert!(
        plan.below >= bundle_floor(n - n / 10) && plan.below <= bundle_floor(n),
        "{plan:?}"
    );
    let t = Instant::now();
    let report = trail.prune(plan.below).unwrap();
    let prune_s = t.elapsed().as_secs_f64();
    let after = dir_bytes(&log_dir);
    drop(trail);
    let freed = before.saturating_sub(after);

    // Baselines on the same file system: write the freed bytes with one
    // sync, then delete them again as files of 64 MiB (about the sizes a
    // log's entry files have).
    let scratch = root.join("baseline");
    std::fs::create_dir_all(&scratch).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let file_bytes: u64 = 64 << 20;
    let t = Instant::now();
    let mut paths = Vec::new();
    let mut left = report.bytes_freed;
    while left > 0 {
        let path = scratch.join(format!("f{}", paths.len()));
        let mut f = std::fs::File::create(&path).unwrap();
        let mut in_file = 0;
        while in_file < file_bytes && left > 0 {
            let k = (chunk.len() as u64).min(left);
            f.write_all(&chunk[..k as usize]).unwrap();
            in_file += k;
            left -= k;
        }
        f.sync_data().unwrap();
        paths.push(path);
    }
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for p in &paths {
        std::fs::remove_file(p).unwrap();
    }
    std::fs::File::open(&scratch).unwrap().sync_all().unwrap();
    let unlink_s = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&root).unwrap();

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| entries in the log | {n} |");
    println!("| entries pruned | {} |", report.to - report.from);
    println!(
        "| bytes freed (ledger's report) | {} ({:.0} MiB) |",
        report.bytes_freed,
        mib(report.bytes_freed)
    );
    println!("| log directory shrank by | {} ({:.0} MiB) |", freed, mib(freed));
    println!("| plan (size target, reads every entry length) | {plan_s:.3} s |");
    println!("| prune (ledger and index) | {prune_s:.3} s |");
    println!("| baseline: unlink the same bytes (64 MiB files) + dir sync | {unlink_s:.3} s |");
    println!("| baseline: write the same bytes + fdatasync | {write_s:.3} s |");
    println!("| prune / unlink | {:.1}× |", prune_s / unlink_s.max(1e-9));
    println!("| prune / write | {:.3}× |", prune_s / write_s.max(1e-9));
}
