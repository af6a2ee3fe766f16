//! Backup and restore of a data directory against `cp -a` + `sha256sum`
//! of the same files, measured in the same run, with the ratio.
//!
//! ```text
//! cargo bench -p sealtrail-backup --bench backup
//! SEALTRAIL_BENCH_EVENTS=2000000 cargo bench -p sealtrail-backup --bench backup
//! ```
//!
//! `SEALTRAIL_BENCH_EVENTS` (default 10,000,000): generated events in the
//! log; `SEALTRAIL_BENCH_DIR` (default `target/bench-tmp`, on the disk, not
//! a tmpfs): where the data directory and the copies go, removed after. Each side runs twice,
//! alternating, and the faster run counts. Progress on stderr, the table
//! (Markdown) on stdout.
#![allow(clippy::unwrap_used)]

use sealtrail_backup::{create, restore, verify, CreateOptions, Source};
use sealtrail_ledger::storage::OsStorage;
use sealtrail_ledger::{DataDir, LogOptions};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn sh(script: &str) {
    let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "{script}");
}

fn secs(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    let events: usize = std::env::var("SEALTRAIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let base: std::path::PathBuf = std::env::var("SEALTRAIL_BENCH_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp"),
        Into::into,
    );
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(base).unwrap();
    let data = tmp.path().join("data");
    let dir = DataDir::new(&data);
    dir.create_log("default", None).unwrap();
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    eprintln!("building a log of {events} generated events…");
    let build = Instant::now();
    let mut gen = sealtrail_testgen::events(7, events);
    let mut batch = Vec::with_capacity(16_384);
    let mut more = true;
    while more {
        batch.clear();
        while batch.len() < 16_384 {
            let mut e = Vec::with_capacity(512);
            if !gen.write_next(&mut e) {
                more = false;
                break;
            }
            batch.push(e);
        }
        if !batch.is_empty() {
            log.append(&batch).unwrap();
        }
    }
    drop(log);
    let bytes: u64 = ["entries", "index", "hashes", "checkpoint", "log.key", "log.pub"]
        .iter()
        .map(|f| std::fs::metadata(dir.log_dir("default").join(f)).unwrap().len())
        .sum();
    eprintln!(
        "built in {:.1} s: {:.0} MiB in the log directory",
        build.elapsed().as_secs_f64(),
        bytes as f64 / 1048576.0
    );
    let logs = data.join("logs");
    let (b, r, c) = (
        tmp.path().join("backup"),
        tmp.path().join("restored"),
        tmp.path().join("cp"),
    );
    let q = |p: &Path| format!("'{}'", p.display());
    // `hasher`: coreutils' sha256sum, or OpenSSL's (which uses the CPU's
    // SHA instructions where coreutils' may not).
    let baseline = |with_sync: bool, hasher: &str| {
        sh(&format!("rm -rf {}", q(&c)));
        secs(|| {
            sh(&format!(
                "cp -a {} {} {} && find {} -type f -print0 | xargs -0 {hasher} > /dev/null",
                q(&logs),
                q(&c),
                if with_sync { "&& sync" } else { "" },
                q(&c)
            ))
        })
    };
    let ours_backup = || {
        sh(&format!("rm -rf {}", q(&b)));
        secs(|| {
            create(&Source::os(&data), &OsStorage, &b, &CreateOptions::default()).unwrap();
        })
    };
    let ours_restore = || {
        sh(&format!("rm -rf {}", q(&r)));
        secs(|| {
            restore(&b, &r).unwrap();
        })
    };
    let mut base_t = f64::MAX;
    let mut base_sync_t = f64::MAX;
    let mut base_ossl_t = f64::MAX;
    let mut backup_t = f64::MAX;
    let mut restore_t = f64::MAX;
    for round in 0..2 {
        eprintln!("round {round}: cp -a + sha256sum…");
        base_t = base_t.min(baseline(false, "sha256sum"));
        eprintln!("round {round}: backup create…");
        backup_t = backup_t.min(ours_backup());
        eprintln!("round {round}: restore…");
        restore_t = restore_t.min(ours_restore());
        eprintln!("round {round}: cp -a + sync + sha256sum…");
        base_sync_t = base_sync_t.min(baseline(true, "sha256sum"));
        eprintln!("round {round}: cp -a + openssl dgst -sha256…");
        base_ossl_t = base_ossl_t.min(baseline(false, "openssl dgst -sha256"));
    }
    let verify_t = secs(|| assert!(verify(&OsStorage, &b).unwrap().intact()));
    // Incremental: 1% more events, then a second backup.
    let log = dir.open_log("default", LogOptions::default()).unwrap();
    let extra = (events / 100).max(1);
    let mut gen = sealtrail_testgen::events(8, extra);
    let mut e = Vec::new();
    let mut batch = Vec::new();
    while gen.write_next(&mut e) {
        batch.push(std::mem::take(&mut e));
    }
    log.append(&batch).unwrap();
    drop(log);
    let mut written = 0;
    let incr_t = secs(|| {
        written = create(&Source::os(&data), &OsStorage, &b, &CreateOptions::default())
            .unwrap()
            .bytes_written;
    });
    let mib = bytes as f64 / 1048576.0;
    println!(
        "| operation ({events} events, {mib:.0} MiB) | time | vs cp -a + sha256sum | vs cp -a + sync + sha256sum \
         | vs cp -a + openssl dgst -sha256 |"
    );
    println!("|---|---|---|---|---|");
    println!("| cp -a + sha256sum (baseline) | {base_t:.2} s | 1.00x | | |");
    println!("| cp -a + sync + sha256sum (baseline) | {base_sync_t:.2} s | | 1.00x | |");
    println!("| cp -a + openssl dgst -sha256 (baseline) | {base_ossl_t:.2} s | | | 1.00x |");
    for (what, t) in [
        ("backup create (full)", backup_t),
        ("restore (copy, check, verify, open)", restore_t),
    ] {
        println!(
            "| {what} | {t:.2} s | {:.2}x | {:.2}x | {:.2}x |",
            t / base_t,
            t / base_sync_t,
            t / base_ossl_t
        );
    }
    println!("| backup verify | {verify_t:.2} s | {:.2}x | | | |", verify_t / base_t);
    println!(
        "| backup create after 1% more events (incremental, {:.1} MiB written) | {incr_t:.2} s | {:.2}x | | | |",
        written as f64 / 1048576.0,
        incr_t / base_t
    );
}
