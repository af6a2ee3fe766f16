//! Finds the minimal keys of a CSV file and prints the report as JSON on
//! stdout, then the time taken (wall and CPU) and the peak resident memory
//! on stderr.
//!
//! `cargo run --release -p sealtrail-data --example keys_discover -- FILE
//! [--max-columns K] [--near] [--nulls-distinct] [--budget-mib M]`

use std::time::Instant;

use sealtrail_data::keys::{self, KeyOptions, NullEquality};

fn main() {
    const USAGE: &str = "usage: keys_discover FILE [--max-columns K] [--near] [--nulls-distinct] [--budget-mib M]";
    let usage = || -> ! {
        eprintln!("{USAGE}");
        std::process::exit(2)
    };
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut options = KeyOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--max-columns" => {
                let k = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                options.max_columns = Some(k);
            }
            "--near" => options.near = true,
            "--nulls-distinct" => options.nulls = NullEquality::Distinct,
            "--budget-mib" => {
                let mib: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                options.memory_budget = mib << 20;
            }
            _ if path.is_none() && !arg.starts_with("--") => path = Some(arg),
            _ => usage(),
        }
    }
    let Some(path) = path else { usage() };
    let start = Instant::now();
    let result = sealtrail_data::source::open(&path, &sealtrail_data::source::OpenOptions::default())
        .and_then(|mut source| keys::discover(source.as_mut(), &options));
    let elapsed = start.elapsed();
    match result {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    eprintln!("seconds {:.3}", elapsed.as_secs_f64());
    eprintln!("cpu_seconds {:.3}", cpu_seconds());
    eprintln!("peak_rss_mib {:.1}", peak_rss_kib() as f64 / 1024.0);
}

/// Time on a CPU so far, from /proc (Linux); 0 elsewhere. On a shared
/// machine it moves less than wall time.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// VmHWM from /proc (Linux); 0 elsewhere.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
