//! Benchmark of the keyed diff against polars.
//!
//! ```text
//! cargo run --release -p sealtrail-data --example diff_bench -- --rows 1000000
//! cargo run --release -p sealtrail-data --example diff_bench -- --rows 10000000 --no-polars
//! ```
//!
//! Writes two CSV files of `--rows` keys × 9 columns: the left in key
//! order, the right shuffled; about 1% of keys only on the left, 1% only on
//! the right, 1% with a changed amount. Then runs the diff in a child
//! process (so that its peak RSS, VmHWM, is the diff's alone) and, unless
//! `--no-polars`, `scripts/polars-baseline` on the same files, `--rounds`
//! times, alternating which goes first; checks that both count the same
//! and prints both times, CPU times and peak RSS, the ratio of each round
//! and the median ratio.
//!
//! Options: `--rows N` (default 1,000,000), `--budget MIB` (default 256),
//! `--rounds N` (default 3),
//! `--dir DIR` (where the files go; default a temporary directory),
//! `--no-polars`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sealtrail_data::diff::{diff, DiffOptions};
use sealtrail_data::source::{CsvOptions, CsvSource};
use sealtrail_data::{Change, ChangeKind, DataError};

const CITIES: [&str; 8] = ["Lyon", "Paris", "Köln", "Porto", "Gent", "Bergen", "Turku", "Graz"];
const STATUSES: [&str; 4] = ["open", "paid", "late", "void"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--measure") {
        measure(&args[1..]);
        return;
    }
    let mut rows = 1_000_000u64;
    let mut budget = 256usize;
    let mut dir: Option<PathBuf> = None;
    let mut polars = true;
    let mut rounds = 3u32;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--rows" => rows = value().parse().unwrap_or_else(|_| fail("--rows N")),
            "--budget" => budget = value().parse().unwrap_or_else(|_| fail("--budget MIB")),
            "--dir" => dir = Some(PathBuf::from(value())),
            "--rounds" => rounds = value().parse().unwrap_or_else(|_| fail("--rounds N")),
            "--no-polars" => polars = false,
            other => fail(&format!("unknown option {other}")),
        }
    }
    let temp = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
    let (left, right) = (dir.join("left.csv"), dir.join("right.csv"));
    let started = Instant::now();
    generate(rows, &left, &right).unwrap_or_else(|e| fail(&e.to_string()));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() >> 20).unwrap_or(0);
    println!(
        "generated {rows} keys × 9 columns: {} ({} MiB), {} ({} MiB) in {:.1} s",
        left.display(),
        size(&left),
        right.display(),
        size(&right),
        started.elapsed().as_secs_f64()
    );

    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    for round in 1..=rounds {
        // Alternate who goes first: the page cache and the machine's load
        // then favour neither.
        let (ours, theirs) = if round % 2 == 1 {
            let ours = run_ours(&left, &right, budget);
            (ours, polars.then(|| run_polars(&left, &right)))
        } else {
            let theirs = polars.then(|| run_polars(&left, &right));
            (run_ours(&left, &right, budget), theirs)
        };
        println!("round {round} sealtrail: {ours}");
        let Some(theirs) = theirs else {
            continue;
        };
        println!("round {round} polars:    {theirs}");
        for k in ["added", "removed", "changed", "unchanged"] {
            if ours[k] != theirs[k] {
                fail(&format!(
                    "the counts differ: {k} {} (sealtrail) vs {} (polars)",
                    ours[k], theirs[k]
                ));
            }
        }
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        ratios.push(f(&theirs, "seconds") / f(&ours, "seconds"));
        cpu_ratios.push(f(&theirs, "cpu_seconds") / f(&ours, "cpu_seconds"));
    }
    if !ratios.is_empty() {
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let list = |v: &[f64]| v.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
        println!(
            "same counts every round; polars time ÷ sealtrail time: {}",
            list(&ratios)
        );
        println!(
            "median: {:.2}× faster in wall-clock time (goal ≥ 2), {:.2}× less CPU time",
            median(&mut ratios),
            median(&mut cpu_ratios)
        );
    }
}

fn run_ours(left: &Path, right: &Path, budget: usize) -> serde_json::Value {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    let out = Command::new(exe)
        .arg("--measure")
        .arg(left)
        .arg(right)
        .arg(budget.to_string())
        .output()
        .unwrap_or_else(|e| fail(&e.to_string()));
    if !out.status.success() {
        fail(&format!("the diff failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| fail(&e.to_string()))
}

fn run_polars(left: &Path, right: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/polars-baseline");
    let out = Command::new(script)
        .arg(left)
        .arg(right)
        .arg("id")
        .output()
        .unwrap_or_else(|e| fail(&e.to_string()));
    if !out.status.success() {
        fail(&format!("polars failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| fail(&e.to_string()))
}

fn fail(message: &str) -> ! {
    eprintln!("diff_bench: {message}");
    std::process::exit(1)
}

/// The right side's version of key `i`: absent, changed, or as on the left.
fn fate(i: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()) % 100
}

fn write_row(out: &mut impl Write, i: u64, changed: bool) -> std::io::Result<()> {
    let mut rng = fastrand::Rng::with_seed(i);
    let cents = rng.u64(0..10_000_000) + if changed { 1 } else { 0 };
    writeln!(
        out,
        "{i},Customer {n},user{i}@example.com,{city},\"{street} Main St, Apt {apt}\",{euros}.{cents:02},{qty},2026-{m:02}-{d:02},{status}",
        n = rng.u32(0..1_000_000),
        city = CITIES[rng.usize(0..CITIES.len())],
        street = rng.u32(1..999),
        apt = rng.u32(1..99),
        euros = cents / 100,
        cents = cents % 100,
        qty = rng.u32(1..500),
        m = rng.u32(1..13),
        d = rng.u32(1..29),
        status = STATUSES[rng.usize(0..STATUSES.len())],
    )
}

fn generate(rows: u64, left: &Path, right: &Path) -> std::io::Result<()> {
    const HEADER: &str = "id,name,email,city,address,amount,qty,date,status\n";
    let mut l = BufWriter::with_capacity(1 << 20, std::fs::File::create(left)?);
    l.write_all(HEADER.as_bytes())?;
    for i in 0..rows {
        // 0: only on the right.
        if fate(i) != 0 {
            write_row(&mut l, i, false)?;
        }
    }
    l.flush()?;
    let mut order: Vec<u32> = (0..rows as u32).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    let mut r = BufWriter::with_capacity(1 << 20, std::fs::File::create(right)?);
    r.write_all(HEADER.as_bytes())?;
    for &i in &order {
        let i = u64::from(i);
        // 1: only on the left; 2: amount changed.
        match fate(i) {
            1 => {}
            f => write_row(&mut r, i, f == 2)?,
        }
    }
    r.flush()
}

/// The child: one diff, then its time, counts and peak RSS as JSON.
fn measure(args: &[String]) {
    let [left, right, budget] = args else {
        fail("--measure LEFT RIGHT BUDGET_MIB")
    };
    let budget: usize = budget.parse().unwrap_or_else(|_| fail("budget"));
    let started = Instant::now();
    let open =
        |p: &String| CsvSource::open(Path::new(p), CsvOptions::default()).unwrap_or_else(|e| fail(&e.to_string()));
    let (mut l, mut r) = (open(left), open(right));
    let options = DiffOptions {
        memory_budget: budget << 20,
        ..DiffOptions::with_key(&["id"])
    };
    let mut fields = 0u64;
    let mut sink = |c: &Change| -> Result<(), DataError> {
        if c.kind == ChangeKind::Changed {
            fields += c.fields.len() as u64;
        }
        Ok(())
    };
    let summary = diff(&mut l, &mut r, &options, &mut sink).unwrap_or_else(|e| fail(&e.to_string()));
    let seconds = started.elapsed().as_secs_f64();
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks
    // (100 a second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let json = serde_json::json!({
        "added": summary.added,
        "removed": summary.removed,
        "changed": summary.changed,
        "unchanged": summary.unchanged,
        "changed_fields": fields,
        "spilled": summary.spilled,
        "spilled_partitions": summary.spilled_partitions,
        "seconds": seconds,
        "cpu_seconds": ticks as f64 / 100.0,
        "peak_rss_mib": peak_kib as f64 / 1024.0,
        "budget_mib": budget,
    });
    println!("{json}");
}
