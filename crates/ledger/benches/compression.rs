//! Ledger compression: how small packs make generated events, with and
//! without a trained zstd dictionary and at several levels, and what
//! compaction costs ingest and verification. Every figure is printed
//! beside a baseline measured in the same run (SHA-256 of the same bytes;
//! the same workload without compression) and the ratio.
//!
//! ```text
//! cargo bench -p sealtrail-ledger --bench compression
//! SEALTRAIL_BENCH_COMPRESS_EVENTS=50000 cargo bench -p sealtrail-ledger --bench compression
//! ```
//!
//! Knobs: `SEALTRAIL_BENCH_COMPRESS_EVENTS` (events, default 200,000),
//! `SEALTRAIL_BENCH_COMPRESS_BATCH` (entries per append, default 1,000),
//! `SEALTRAIL_BENCH_COMPRESS_EVERY` (entries between two compactions
//! during ingest, default 16,384), `SEALTRAIL_BENCH_COMPRESS_ROUNDS`
//! (rounds of ingest and verify in every mode, default 9; 0 for the
//! compression table alone), `SEALTRAIL_BENCH_COMPRESS_LEVELS` (the rows
//! of the compression table, `DEFAULT_ROWS`),
//! `SEALTRAIL_BENCH_COMPRESS_LEVEL` (the level of the ingest rounds'
//! compactions, default the ledger's). Progress to stderr, tables to
//! stdout.
//!
//! Compression's instructions per row, whatever the load (one row a run):
//!
//! ```text
//! SEALTRAIL_BENCH_COMPRESS_EVENTS=20000 SEALTRAIL_BENCH_COMPRESS_ROUNDS=0 SEALTRAIL_BENCH_COMPRESS_LEVELS=1 \
//!   valgrind --tool=callgrind --toggle-collect=compression::compress_all target/release/deps/compression-<hash>
//! ```
#![allow(clippy::unwrap_used)]

use sealtrail_ledger::storage::OsStorage;
use sealtrail_ledger::verify::verify_log;
use sealtrail_ledger::{DataDir, LogOptions};
use sealtrail_testgen::{load_average, median, spread};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Where compaction runs during ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    None,
    /// On the appending thread, between appends.
    Inline,
    /// On a thread of its own, beside the appends.
    Background,
    /// As `Background`, the thread at the least scheduling priority (as
    /// the server's compaction thread).
    Idle,
    /// As `Idle`, but only the work of compression in memory (entries
    /// read, bundles compressed and checked), no file written or synced:
    /// what compaction costs ingest in CPU alone.
    CpuOnly,
}

/// The zstd level of the ingest rounds' compactions:
/// `SEALTRAIL_BENCH_COMPRESS_LEVEL`, else the ledger's default.
fn level() -> i32 {
    std::env::var("SEALTRAIL_BENCH_COMPRESS_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(sealtrail_ledger::log::DEFAULT_COMPRESSION_LEVEL)
}

/// Verification passes over each log per round.
const VERIFY_PASSES: usize = 3;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A record as the ledger stores it: length, checksum, bytes.
fn records(events: &[Vec<u8>], first: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        sealtrail_ledger::format::encode_record(&mut out, e, first + i as u64);
    }
    out
}

/// What a version 3 pack's frame holds for these records: each entry's
/// length and bytes, the record checksums left out.
fn bare(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len());
    let mut at = 0;
    while at < records.len() {
        let (len, _) = sealtrail_ledger::format::decode_record_header(&records[at..]).unwrap();
        out.extend_from_slice(&records[at..at + 4]);
        out.extend_from_slice(&records[at + 8..at + 8 + len as usize]);
        at += 8 + len as usize;
    }
    out
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Bytes of the packs in `dir`.
fn pack_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pack-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn entry_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("entries") || n.starts_with("pack-")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Append `events` to a new log under `root`, compacting as `mode` says;
/// returns the seconds until the last append was acknowledged and the
/// seconds spent compacting meanwhile, and the CPU seconds of all threads
/// until then.
fn ingest(root: &Path, mode: Mode, events: &[Vec<u8>], batch: usize, every: u64) -> Run {
    let dir = DataDir::new(root);
    dir.create_log("default", None).unwrap();
    let opts = LogOptions {
        compression_level: level(),
        ..LogOptions::default()
    };
    let log = dir.open_log("default", opts).unwrap();
    let cpu = cpu_secs();
    let t = Instant::now();
    let mut since = 0u64;
    let mut compact_secs = 0.0;
    let mut slowest = 0.0f64;
    let done = AtomicBool::new(false);
    let background_secs = std::thread::scope(|s| {
        // The compaction a server runs beside ingest: another thread,
        // whenever `every` entries are waiting; the server's runs at the
        // least priority (`Mode::Idle`).
        let worker = matches!(mode, Mode::Background | Mode::Idle | Mode::CpuOnly).then(|| {
            let (log, done) = (log.clone(), &done);
            s.spawn(move || {
                if mode != Mode::Background {
                    thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min).unwrap();
                }
                let mut secs = 0.0;
                let mut packed = 0;
                while !done.load(Ordering::Relaxed) {
                    if log.size() >= packed + every {
                        let c = Instant::now();
                        packed = if mode == Mode::CpuOnly {
                            compress_in_memory(&log, packed)
                        } else {
                            log.compact().unwrap().to
                        };
                        secs += c.elapsed().as_secs_f64();
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
                secs
            })
        });
        for chunk in events.chunks(batch) {
            let a = Instant::now();
            log.append(chunk).unwrap();
            slowest = slowest.max(a.elapsed().as_secs_f64());
            since += chunk.len() as u64;
            if mode == Mode::Inline && since >= every {
                let c = Instant::now();
                log.compact().unwrap();
                compact_secs += c.elapsed().as_secs_f64();
                since = 0;
            }
        }
        done.store(true, Ordering::Relaxed);
        worker.map_or(0.0, |w| w.join().unwrap())
    });
    // Inline, the last bundles are packed within the timing too: the
    // worst case pays for every byte it packs. Beside ingest, what is
    // left when the last append is acknowledged is packed after.
    if mode == Mode::Inline {
        let c = Instant::now();
        log.compact().unwrap();
        compact_secs += c.elapsed().as_secs_f64();
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    if matches!(mode, Mode::Background | Mode::Idle) {
        log.compact().unwrap();
    }
    log.flush().unwrap();
    Run {
        secs,
        cpu,
        compact_secs: compact_secs + background_secs,
        slowest,
        own_cpu: 0.0,
    }
}

/// What compaction computes for the whole bundles from entry `from` on,
/// in memory only; returns where the bundles end.
fn compress_in_memory(log: &sealtrail_ledger::Log, from: u64) -> u64 {
    let to = log.size() / 256 * 256;
    let level = level();
    let mut c = zstd::bulk::Compressor::new(level).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .unwrap();
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    for first in (from..to).step_by(256) {
        // As a version 3 pack: compressed without the record checksums,
        // decompressed and the records rebuilt to be compared.
        let bundle = records(&log.entries(first, 256).unwrap(), first);
        let frame = c.compress(&bare(&bundle)).unwrap();
        let back = d.decompress(&frame, bundle.len()).unwrap();
        let mut rebuilt = Vec::with_capacity(bundle.len());
        let mut at = 0;
        for index in first..first + 256 {
            let len = u32::from_be_bytes(back[at..at + 4].try_into().unwrap()) as usize;
            sealtrail_ledger::format::encode_record(&mut rebuilt, &back[at + 4..at + 4 + len], index);
            at += 4 + len;
        }
        assert_eq!(rebuilt, bundle);
    }
    to
}

/// One timed run.
#[derive(Clone, Copy, Default)]
struct Run {
    secs: f64,
    /// CPU seconds of every thread of the process meanwhile.
    cpu: f64,
    compact_secs: f64,
    /// The longest one append took.
    slowest: f64,
    /// CPU seconds of the calling thread alone (verify's hashing: what
    /// bounds it when the reading ahead has a core of its own).
    own_cpu: f64,
}

/// CPU seconds (user and system) of every thread of this process so far,
/// in clock ticks of 10 ms (`/proc/self/stat`).
fn cpu_secs() -> f64 {
    ticks("/proc/self/stat")
}

/// CPU seconds of the calling thread so far (`/proc/thread-self/stat`).
fn thread_cpu_secs() -> f64 {
    ticks("/proc/thread-self/stat")
}

fn ticks(stat: &str) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Verify the log under `root`, which holds `n` entries and must be intact.
fn verify(root: &Path, n: usize) -> Run {
    let dir = DataDir::new(root);
    let (cpu, own) = (cpu_secs(), thread_cpu_secs());
    let t = Instant::now();
    let report = verify_log(&OsStorage, &dir.log_dir("default"), None, None).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (cpu, own) = (cpu_secs() - cpu, thread_cpu_secs() - own);
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!(report.entries, n as u64);
    Run {
        secs,
        cpu,
        own_cpu: own,
        ..Run::default()
    }
}

/// The compression rows of the table, unless `SEALTRAIL_BENCH_COMPRESS_LEVELS`
/// names others: a comma-separated list of levels, each a bundle as a
/// version 3 pack frames it, `d` before it for the trained dictionary,
/// `v2:` for a version 2 frame, `e` or `ed` for single events.
const DEFAULT_ROWS: &str = "-5,-3,-1,1,2,3,4,6,9,15,d-3,d-1,d1,d3,d9,v2:1,v2:3,e3,ed3";

/// Unit, dictionary, level of each row of `spec`.
fn compression_rows(spec: &str) -> Vec<(&'static str, bool, i32)> {
    spec.split(',')
        .map(|row| {
            let row = row.trim();
            let (unit, dict, level) = if let Some(l) = row.strip_prefix("v2:") {
                ("bundle, pack version 2", false, l)
            } else if let Some(l) = row.strip_prefix("ed") {
                ("event", true, l)
            } else if let Some(l) = row.strip_prefix('e') {
                ("event", false, l)
            } else if let Some(l) = row.strip_prefix('d') {
                ("bundle", true, l)
            } else {
                ("bundle", false, row)
            };
            let level = level
                .parse()
                .unwrap_or_else(|_| panic!("SEALTRAIL_BENCH_COMPRESS_LEVELS: {row:?} is not a row"));
            (unit, dict, level)
        })
        .collect()
}

/// Every input compressed, one frame each. A function of its own, so
/// that callgrind can count its instructions alone
/// (`--toggle-collect=compression::compress_all`).
#[inline(never)]
fn compress_all(c: &mut zstd::bulk::Compressor<'_>, inputs: &[&[u8]]) -> Vec<Vec<u8>> {
    inputs.iter().map(|b| c.compress(b).unwrap()).collect()
}

/// Every frame decompressed and its length checked (callgrind:
/// `--toggle-collect=compression::decompress_all`).
#[inline(never)]
fn decompress_all(d: &mut zstd::bulk::Decompressor<'_>, frames: &[Vec<u8>], inputs: &[&[u8]]) {
    for (f, b) in frames.iter().zip(inputs) {
        let out = d.decompress(f, b.len()).unwrap();
        assert_eq!(out.len(), b.len());
    }
}

fn main() {
    let n = knob("SEALTRAIL_BENCH_COMPRESS_EVENTS", 200_000) as usize;
    let batch = knob("SEALTRAIL_BENCH_COMPRESS_BATCH", 1_000) as usize;
    let every = knob("SEALTRAIL_BENCH_COMPRESS_EVERY", 16_384);
    let rounds = knob("SEALTRAIL_BENCH_COMPRESS_ROUNDS", 9) as usize;
    eprintln!("generating {n} events");
    let events: Vec<Vec<u8>> = sealtrail_testgen::events(7, n).collect();
    let bytes: u64 = events.iter().map(|e| e.len() as u64).sum();
    println!("## Ledger compression\n");
    println!(
        "{n} generated events (sealtrail-testgen, seed 7), {:.1} MB, mean {:.0} bytes.\n",
        bytes as f64 / 1e6,
        bytes as f64 / n as f64
    );

    // Baseline: SHA-256 over the same bytes (every append hashes them).
    let t = Instant::now();
    let mut h = Sha256::new();
    for e in &events {
        h.update(e);
    }
    black_box(h.finalize());
    let sha = mb_per_s(bytes, t.elapsed().as_secs_f64());
    println!("Baseline: SHA-256 of the events, {sha:.0} MB/s.\n");

    // Ratios: whole bundles (what packs hold: version 3 frames, each
    // entry's length and bytes with zstd's content checksum; version 2
    // frames, whole records, for comparison), and single events (what a
    // dictionary is for). A bundle's ratio is to its records as the
    // segments store them: what compaction frees.
    let bundles: Vec<Vec<u8>> = events
        .chunks(256)
        .filter(|c| c.len() == 256)
        .enumerate()
        .map(|(k, c)| records(c, k as u64 * 256))
        .collect();
    let bare_bundles: Vec<Vec<u8>> = bundles.iter().map(|b| bare(b)).collect();
    let raw: u64 = bundles.iter().map(|b| b.len() as u64).sum();
    let rows =
        compression_rows(&std::env::var("SEALTRAIL_BENCH_COMPRESS_LEVELS").unwrap_or_else(|_| DEFAULT_ROWS.into()));
    // Trained only if a row asks for it: under callgrind, training costs
    // more than all the rows.
    let (dict, train_secs) = if rows.iter().any(|r| r.1) {
        let training: Vec<Vec<u8>> = sealtrail_testgen::events(11, 20_000).collect();
        let t = Instant::now();
        (
            zstd::dict::from_samples(&training, 64 * 1024).unwrap(),
            t.elapsed().as_secs_f64(),
        )
    } else {
        (Vec::new(), 0.0)
    };
    println!("| unit | level | dictionary | ratio | compress MB/s | × SHA-256 | decompress MB/s |");
    println!("|---|---|---|---|---|---|---|");
    for (unit, with_dict, level) in rows {
        let inputs: Vec<&[u8]> = match unit {
            "bundle" => bare_bundles.iter().map(Vec::as_slice).collect(),
            "bundle, pack version 2" => bundles.iter().map(Vec::as_slice).collect(),
            _ => events.iter().take(50_000).map(Vec::as_slice).collect(),
        };
        let input_bytes: u64 = inputs.iter().map(|b| b.len() as u64).sum();
        // Speeds are over the bytes a pack stands for (records), ratios too.
        let over = if unit == "event" { input_bytes } else { raw };
        let mut c = if with_dict {
            zstd::bulk::Compressor::with_dictionary(level, &dict).unwrap()
        } else {
            zstd::bulk::Compressor::new(level).unwrap()
        };
        if unit == "bundle" {
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .unwrap();
        }
        let t = Instant::now();
        let frames = compress_all(&mut c, &inputs);
        let csecs = t.elapsed().as_secs_f64();
        let packed: u64 = frames.iter().map(|f| f.len() as u64).sum();
        let mut d = if with_dict {
            zstd::bulk::Decompressor::with_dictionary(&dict).unwrap()
        } else {
            zstd::bulk::Decompressor::new().unwrap()
        };
        let t = Instant::now();
        decompress_all(&mut d, &frames, &inputs);
        let dsecs = t.elapsed().as_secs_f64();
        let cmb = mb_per_s(over, csecs);
        println!(
            "| {unit} | {level} | {} | {:.2} | {cmb:.0} | {:.2} | {:.0} |",
            if with_dict { "64 KiB" } else { "none" },
            over as f64 / packed as f64,
            cmb / sha,
            mb_per_s(over, dsecs)
        );
    }
    println!(
        "\nDictionary: trained on 20,000 other events (seed 11) in {train_secs:.2} s; bundle rows over {} bundles ({:.1} MB of records), event rows over the first 50,000 events.\n",
        bundles.len(),
        raw as f64 / 1e6
    );

    if rounds == 0 {
        return;
    }
    // Ingest and verify, without and with compaction, on real files, in
    // rounds: every round runs each mode once (starting one further on
    // each round) and each figure is a ratio to the round's own run
    // without compaction, so a change of load between rounds cancels out.
    let tmp = tempfile::tempdir().unwrap();
    let modes = [Mode::None, Mode::Inline, Mode::Background, Mode::Idle, Mode::CpuOnly];
    // Per mode, per round: ingest, verify (all passes), entry file bytes.
    let mut runs: Vec<Vec<(Run, Run, u64)>> = vec![Vec::new(); modes.len()];
    let mut packs = vec![0u64; modes.len()];
    for round in 0..rounds {
        let order: Vec<usize> = (0..modes.len()).map(|m| (m + round) % modes.len()).collect();
        let mut ingests = vec![Run::default(); modes.len()];
        for &m in &order {
            let root = tmp.path().join(format!("{:?}", modes[m]));
            ingests[m] = ingest(&root, modes[m], &events, batch, every);
        }
        // Verification takes a tenth of the time of ingest: several
        // passes, each over every log in the round's order.
        let mut verifies = vec![Run::default(); modes.len()];
        for _ in 0..VERIFY_PASSES {
            for &m in order.iter().filter(|&&m| modes[m] != Mode::CpuOnly) {
                let v = verify(&tmp.path().join(format!("{:?}", modes[m])), n);
                verifies[m].secs += v.secs;
                verifies[m].cpu += v.cpu;
                verifies[m].own_cpu += v.own_cpu;
            }
        }
        for (m, mode) in modes.iter().enumerate() {
            let root = tmp.path().join(format!("{mode:?}"));
            let log_dir = DataDir::new(&root).log_dir("default");
            let disk = entry_file_bytes(&log_dir);
            packs[m] = pack_bytes(&log_dir);
            runs[m].push((ingests[m], verifies[m], disk));
            std::fs::remove_dir_all(&root).unwrap();
        }
        eprintln!("round {} of {rounds} done (load {})", round + 1, load_average());
    }
    println!(
        "{rounds} rounds; each verify figure over {VERIFY_PASSES} passes. Medians, and in brackets the least and \
         greatest of the rounds' ratios to the same round without compaction. CPU: seconds of all threads, mean of \
         the rounds.\n"
    );
    println!("| compaction | ingest events/s | × none | ingest CPU s | × none | slowest append ms | compaction s during ingest | verify events/s | × none | verify CPU s | × none | of it hashing thread | × none | entry files MB | ratio | packs ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (ingest_cpu0, verify_cpu0, own_cpu0) = (
        mean(&runs[0].iter().map(|r| r.0.cpu).collect::<Vec<_>>()),
        mean(&runs[0].iter().map(|r| r.1.cpu).collect::<Vec<_>>()),
        mean(&runs[0].iter().map(|r| r.1.own_cpu).collect::<Vec<_>>()),
    );
    for (m, mode) in modes.iter().enumerate() {
        let ingest_x: Vec<f64> = (0..rounds).map(|r| runs[0][r].0.secs / runs[m][r].0.secs).collect();
        let verify_x: Vec<f64> = (0..rounds).map(|r| runs[0][r].1.secs / runs[m][r].1.secs).collect();
        let ingest_s: Vec<f64> = runs[m].iter().map(|r| r.0.secs).collect();
        let compact_s: Vec<f64> = runs[m].iter().map(|r| r.0.compact_secs).collect();
        let slowest_s: Vec<f64> = runs[m].iter().map(|r| r.0.slowest).collect();
        let verify_s: Vec<f64> = runs[m].iter().map(|r| r.1.secs).collect();
        let ingest_cpu = mean(&runs[m].iter().map(|r| r.0.cpu).collect::<Vec<_>>());
        let verify_cpu = mean(&runs[m].iter().map(|r| r.1.cpu).collect::<Vec<_>>());
        let own_cpu = mean(&runs[m].iter().map(|r| r.1.own_cpu).collect::<Vec<_>>());
        let (disk0, disk) = (runs[0][0].2, runs[m][0].2);
        // No files are packed in memory only: nothing to verify.
        let verified = if *mode == Mode::CpuOnly {
            "– | – | – | – | – | – | – | – | –".to_string()
        } else {
            format!(
                "{:.0} | {} | {verify_cpu:.2} | {:.2} | {own_cpu:.2} | {:.2} | {:.1} | {:.3} | {}",
                (n * VERIFY_PASSES) as f64 / median(&verify_s),
                spread(&verify_x, 2),
                verify_cpu / verify_cpu0,
                own_cpu / own_cpu0,
                disk as f64 / 1e6,
                disk0 as f64 / disk as f64,
                // The packed entries' share of the raw bytes over the packs.
                if packs[m] == 0 {
                    "–".to_string()
                } else {
                    format!("{:.3}", (disk0 - (disk - packs[m])) as f64 / packs[m] as f64)
                }
            )
        };
        println!(
            "| {} | {:.0} | {} | {ingest_cpu:.2} | {:.2} | {:.0} | {:.2} | {verified} |",
            match mode {
                Mode::None => "none".to_string(),
                Mode::Inline => format!("inline, every {every} entries"),
                Mode::Background => format!("other thread, every {every} entries"),
                Mode::Idle => format!("other thread at least priority, every {every} entries"),
                Mode::CpuOnly => format!("as above, in memory only (no files), every {every} entries"),
            },
            n as f64 / median(&ingest_s),
            spread(&ingest_x, 2),
            ingest_cpu / ingest_cpu0,
            median(&slowest_s) * 1e3,
            median(&compact_s),
        );
    }
    println!(
        "\n{batch} events per append (one fsync each), default options at level {}.",
        level()
    );
}
