//! Ingest with PII protection against ingest without, in the same run:
//! the same generated events through [`Trail::ingest`] into a fresh data
//! directory each run, once on a log that protects nothing and once on a
//! log whose `actor.id` is an hmac field and whose `actor.name`,
//! `actor.email` and `message` are encrypted under the actor's data key
//! (keys in `meta.db`, as the server keeps them). Runs alternate, and the
//! median of each is compared, so a busy machine slows both alike.
//!
//! ```text
//! cargo bench -p sealtrail-meta --bench pii
//! SEALTRAIL_BENCH_EVENTS=100000 SEALTRAIL_BENCH_ROUNDS=3 cargo bench -p sealtrail-meta --bench pii
//! ```
//!
//! Knobs: `SEALTRAIL_BENCH_EVENTS` (300,000), `SEALTRAIL_BENCH_BATCH`
//! (1,000 events per `ingest` call), `SEALTRAIL_BENCH_INGEST_THREADS` (1:
//! threads calling `ingest` at once, batch k from thread k mod threads, as
//! a server's connections do; with one, each batch's append and its sync
//! wait for its preparation and the next batch's preparation for them),
//! `SEALTRAIL_BENCH_ROUNDS` (5 runs of each), `SEALTRAIL_BENCH_DIR`
//! (`target/bench-tmp`),
//! `SEALTRAIL_BENCH_MODES` (`plain,pii`; one of them alone runs only it
//! and compares nothing: its instructions, whatever the load, are
//! `valgrind --tool=callgrind` of the benchmark binary).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_ledger::DataDir;
use sealtrail_meta::Meta;
use sealtrail_pii::{LogPii, MasterKey, Rule};
use sealtrail_testgen::{knob, process_cpu_secs, round_robin};
use sealtrail_trail::{Trail, TrailOptions};

// The allocator the `sealtrail` binary runs with, so the figures are the
// server's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BENCH: &str = "pii";

fn main() {
    let count: usize = knob(BENCH, "SEALTRAIL_BENCH_EVENTS", 300_000);
    let batch: usize = knob(BENCH, "SEALTRAIL_BENCH_BATCH", 1_000);
    let threads: usize = knob(BENCH, "SEALTRAIL_BENCH_INGEST_THREADS", 1usize).max(1);
    let rounds: usize = knob(BENCH, "SEALTRAIL_BENCH_ROUNDS", 5);
    let base: String = knob(BENCH, "SEALTRAIL_BENCH_DIR", "target/bench-tmp".to_string());
    let modes: String = knob(BENCH, "SEALTRAIL_BENCH_MODES", "plain,pii".to_string());
    let modes: Vec<bool> = [false, true]
        .into_iter()
        .filter(|&pii| modes.contains(if pii { "pii" } else { "plain" }))
        .collect();
    if modes.is_empty() {
        eprintln!("{BENCH} bench: SEALTRAIL_BENCH_MODES names neither plain nor pii");
        std::process::exit(2);
    }
    let mut events = Vec::with_capacity(count);
    let mut gen = sealtrail_testgen::events(1, count);
    loop {
        let mut e = Vec::new();
        if !gen.write_next(&mut e) {
            break;
        }
        events.push(e);
    }
    let with_email = events
        .iter()
        .filter(|e| e.windows(8).any(|w| w == b"\"email\":"))
        .count();
    let with_message = events
        .iter()
        .filter(|e| e.windows(10).any(|w| w == b"\"message\":"))
        .count();
    eprintln!(
        "{count} events ({with_email} with actor.email, {with_message} with message), batches of {batch} from \
         {threads} thread(s), {rounds} rounds"
    );
    let master = MasterKey::generate().expect("randomness");
    let mut plain = Vec::new();
    let mut protected = Vec::new();
    let (mut plain_cpu, mut protected_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for &pii in &modes {
            let dir = PathBuf::from(&base).join(format!("pii-{}-{round}-{pii}", std::process::id()));
            let cpu_before = process_cpu_secs();
            let took = run(&dir, &events, batch, threads, pii.then(|| master.clone()));
            let cpu = process_cpu_secs() - cpu_before;
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!(
                "round {round}: {} {:.0} events/s, {:.2} s of CPU",
                if pii { "pii  " } else { "plain" },
                count as f64 / took.as_secs_f64(),
                cpu
            );
            if pii { &mut protected } else { &mut plain }.push(took);
            if pii { &mut protected_cpu } else { &mut plain_cpu }.push(cpu);
        }
    }
    if modes.len() < 2 {
        // One mode alone (to count its instructions): nothing to compare.
        return;
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (p, q) = (median(&mut plain), median(&mut protected));
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    println!("| run | events/s (median of {rounds}) | µs per event |");
    println!("|---|---|---|");
    println!(
        "| without PII protection (baseline) | {:.0} | {:.2} |",
        rate(p),
        p.as_secs_f64() * 1e6 / count as f64
    );
    println!(
        "| hmac actor.id; encrypt actor.name, actor.email, message | {:.0} | {:.2} |",
        rate(q),
        q.as_secs_f64() * 1e6 / count as f64
    );
    println!(
        "\nprotected / baseline time: {:.3} (goal ≤ 1.15)",
        q.as_secs_f64() / p.as_secs_f64()
    );
    // CPU time of the whole process (every thread) during each run: less
    // at the mercy of other work on a busy machine than the elapsed time.
    let cpu_median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (pc, qc) = (cpu_median(&mut plain_cpu), cpu_median(&mut protected_cpu));
    println!(
        "protected / baseline CPU time: {:.3} ({qc:.2} s / {pc:.2} s, medians)",
        qc / pc
    );
}

/// Ingest `events` into a fresh data directory at `dir` and wait until
/// they are indexed; the time from open to searchable.
fn run(dir: &std::path::Path, events: &[Vec<u8>], batch: usize, threads: usize, master: Option<MasterKey>) -> Duration {
    let _ = std::fs::remove_dir_all(dir);
    let data = DataDir::new(dir);
    data.create_log("bench", None).expect("create log");
    let meta = Meta::open(dir).expect("meta.db");
    let pii = master.map(|master| {
        let actor = serde_json::json!({"id": "bench", "type": "system"});
        for (field, mode) in [
            ("actor.id", "hmac"),
            ("actor.name", "encrypt"),
            ("actor.email", "encrypt"),
            ("message", "encrypt"),
        ] {
            let rule = Rule::parse(field, mode, None).expect("rule");
            meta.set_pii_field("bench", &rule, actor.clone()).expect("set");
        }
        let vault = Arc::new(meta.pii_vault(master).expect("vault"));
        Arc::new(LogPii::new(vault, "bench", meta.pii_policy("bench").expect("policy")))
    });
    let trail = Trail::open(
        &data,
        "bench",
        TrailOptions {
            pii,
            ..TrailOptions::default()
        },
    )
    .expect("open");
    let batches: Vec<&[Vec<u8>]> = events.chunks(batch).collect();
    let start = Instant::now();
    round_robin(&batches, threads, |chunk| {
        let inputs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let done = trail.ingest(&inputs, false).expect("ingest");
        assert_eq!(done.appended(), chunk.len(), "every event is stored");
    });
    trail.sync_index().expect("index");
    start.elapsed()
}
