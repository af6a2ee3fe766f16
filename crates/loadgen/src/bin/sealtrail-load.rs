//! `sealtrail-load`: send generated audit events to a running Sealtrail
//! server and print throughput and latency percentiles.
//!
//! ```text
//! sealtrail-load --url http://127.0.0.1:8080 --key stk_… --mode batch --clients 2 --batch 1000 --events 200000
//! sealtrail-load --url http://127.0.0.1:8080 --key stk_… --mode single --clients 64 --duration 20 --events 1000000
//! ```
//!
//! The key needs ingest scope (`sealtrail keys create --scope ingest`).
//! Only point it at servers on this machine or ones you run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use sealtrail_loadgen::{run, Events, Load, Mode, Target};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// `POST …/events/batch`, `--batch` events per request.
    Batch,
    /// `POST …/events`, one event per request.
    Single,
}

#[derive(Parser)]
#[command(version, about = "HTTP load generator for a Sealtrail server")]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key with ingest scope.
    #[arg(long, env = "SEALTRAIL_KEY", hide_env_values = true)]
    key: String,
    /// Log to write to (must exist).
    #[arg(long, default_value = "default")]
    log: String,
    #[arg(long, value_enum, default_value = "batch")]
    mode: ModeArg,
    /// Concurrent senders, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Send batches as a JSON array instead of NDJSON.
    #[arg(long)]
    json_array: bool,
    /// Events generated and sent at most (each once).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Stop after this many seconds even if events remain.
    #[arg(long)]
    duration: Option<f64>,
    /// Seed of the generated events; change it to send fresh idempotency
    /// keys to a log that already has this seed's events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads of the sending runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let events = Arc::new(Events::generate(args.seed, args.events));
    eprintln!(
        "generated {} events ({:.0} bytes each) in {:.1} s",
        events.len(),
        events.total_bytes() as f64 / events.len().max(1) as f64,
        started.elapsed().as_secs_f64()
    );
    let target = Target {
        url: args.url,
        log: args.log,
        key: args.key,
    };
    let load = Load {
        mode: match args.mode {
            ModeArg::Single => Mode::Single,
            ModeArg::Batch => Mode::Batch {
                size: args.batch.max(1),
                ndjson: !args.json_array,
            },
        },
        clients: args.clients.max(1),
        duration: args.duration.map(Duration::from_secs_f64),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sealtrail-load: starting the runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run(&target, &load, events)) {
        Ok(report) => {
            print!("{}", report.summary());
            if report.failed > 0 {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("sealtrail-load: {e}");
            std::process::exit(2);
        }
    }
}
