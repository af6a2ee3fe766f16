//! `sealtrail retention apply` and `sealtrail holds add|list|release`:
//! argument parsing and printing; the work is in `sealtrail_meta::retention`
//! (apply), `sealtrail_meta` (holds) and `sealtrail_trail::retention`
//! (the plan). docs/retention.md.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sealtrail_event::Timestamp;
use sealtrail_ledger::{DataDir, LedgerError};
use sealtrail_meta::retention::{apply, Applied, Target};
use sealtrail_meta::{drain_outbox, Meta, SYSTEM_LOG};
use sealtrail_trail::retention::{parse_age, parse_size, Policy};
use sealtrail_trail::{Trail, TrailError, TrailOptions};
use serde_json::json;

use crate::changes::{cli_actor, record};
use crate::events::FilterArgs;

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Prune the log's oldest entries, in whole bundles of 256, by age or to fit a size, or
    /// exactly below an entry; legal holds stop it. The tree's hashes stay: the log still
    /// verifies and proves what it kept. Run it with the server stopped (the server applies
    /// its own `retention` policies).
    Apply(ApplyArgs),
}

#[derive(Args)]
pub struct ApplyArgs {
    /// Prune entries received longer ago than this: 90d, 12h, 52w (s, m, h, d, w).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    older_than: Option<std::time::Duration>,
    /// Prune the oldest entries until the rest take at most this many bytes of entries:
    /// 500MiB, 10GiB (KiB, MiB, GiB, TiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// Prune exactly the entries below INDEX (a multiple of 256). Refused, with nothing
    /// changed, if a legal hold covers an entry below it.
    #[arg(long, value_name = "INDEX", conflicts_with_all = ["older_than", "max_size"])]
    below: Option<u64>,
    /// Say what would be pruned; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum HoldsCommand {
    /// Hold the log's events that match the filters (all of the log without any): retention
    /// never prunes them, nor anything after the first of them.
    Add {
        /// Why (a matter, a case number); recorded with the hold.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        filter: Box<FilterArgs>,
    },
    /// List active legal holds.
    List {
        /// Every log's holds, not only --log's.
        #[arg(long)]
        all_logs: bool,
        /// Released holds too.
        #[arg(long)]
        released: bool,
        #[arg(long)]
        json: bool,
    },
    /// Release a legal hold by id; retention may then prune what it held.
    Release { id: i64 },
}

/// The log must exist; the error is the one every command gives.
fn check_log(data: &Path, log: &str) -> anyhow::Result<()> {
    DataDir::new(data).verifier(log)?;
    Ok(())
}

pub fn holds(data: &Path, log: &str, command: &HoldsCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let who = cli_actor();
    let by = who["id"].as_str().unwrap_or("cli").to_string();
    match command {
        HoldsCommand::Add { reason, filter } => {
            check_log(data, log)?;
            let filter = filter.filter(Timestamp::now())?;
            let meta = Meta::open(data)?;
            let hold = meta.add_hold(log, &filter, reason, &by, &who)?;
            record(data, &meta)?;
            writeln!(out, "added legal hold {} on log {log}: {}", hold.id, hold.filter)?;
        }
        HoldsCommand::List {
            all_logs,
            released,
            json,
        } => {
            let meta = Meta::open(data)?;
            let holds = meta.holds((!all_logs).then_some(log), *released)?;
            if *json {
                writeln!(out, "{}", serde_json::to_string(&holds)?)?;
                return Ok(());
            }
            crate::output::say_if_empty(holds.is_empty(), "no legal holds");
            for h in holds {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{} by {}\t{}",
                    h.id,
                    h.log,
                    h.filter,
                    h.reason,
                    h.created_at,
                    h.created_by,
                    h.released_at
                        .as_deref()
                        .map_or("active".to_string(), |r| format!("released {r}")),
                )?;
            }
        }
        HoldsCommand::Release { id } => {
            let meta = Meta::open(data)?;
            let hold = meta.release_hold(*id, &by, &who)?;
            record(data, &meta)?;
            writeln!(out, "released legal hold {} on log {}", hold.id, hold.log)?;
        }
    }
    Ok(())
}

pub fn retention(data: &Path, log: &str, command: &RetentionCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let RetentionCommand::Apply(args) = command;
    let target = match (args.below, args.older_than, args.max_size) {
        (Some(below), ..) => Target::Below(below),
        (None, None, None) => bail!("retention apply: give --older-than AGE, --max-size SIZE or --below INDEX"),
        (None, older_than, max_size) => Target::Policy(Policy { older_than, max_size }),
    };
    check_log(data, log)?;
    let dir = DataDir::new(data);
    let trail = match Trail::open(&dir, log, TrailOptions::default()) {
        Err(TrailError::Ledger(LedgerError::Io { op: "lock", .. })) => {
            let holder = match sealtrail_server::running::read(data) {
                Some(server) if server.alive => server.to_string(),
                _ => "another process (a server or a sealtrail command writing to this data directory)".to_string(),
            };
            bail!(
                "log {log} is open in {holder}; retention apply needs the log to itself: stop the server \
                 first, or let it prune with a policy in its configuration ([retention.logs.{log}], \
                 docs/retention.md)"
            )
        }
        other => other?,
    };
    let meta = Meta::open(data)?;
    let applied = apply(&meta, &trail, log, target, Timestamp::now(), &cli_actor(), args.dry_run)
        .with_context(|| format!("retention of log {log}"))?;
    if !args.dry_run {
        if log == SYSTEM_LOG {
            drain_outbox(&meta, &trail)?;
            trail.sync_index()?;
        } else {
            drop(trail);
            record(data, &meta)?;
        }
    }
    print(out, log, &applied, args.dry_run, args.json)?;
    Ok(())
}

fn print(out: &mut impl Write, log: &str, a: &Applied, dry_run: bool, as_json: bool) -> anyhow::Result<()> {
    let p = &a.plan;
    if as_json {
        let v = json!({
            "log": log,
            "dry_run": dry_run,
            "from": p.from,
            "to": p.below,
            "wanted": p.wanted,
            "entries": p.below - p.from,
            "entry_bytes": p.bytes,
            "bytes_freed": a.bytes_freed,
            "root_at_to": a.root_at_to.map(|r| sealtrail_meta::hex(&r)),
            "stopped": p.stopped.as_ref().map(|s| s.to_string()),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if p.is_empty() {
        writeln!(out, "log {log}: nothing to prune (entries below {} are pruned)", p.from)?;
    } else if dry_run {
        writeln!(
            out,
            "log {log}: would prune entries {}..{} ({} entries, {} bytes of entries)",
            p.from,
            p.below,
            p.below - p.from,
            p.bytes
        )?;
    } else {
        writeln!(
            out,
            "log {log}: pruned entries {}..{} ({} entries, {} bytes freed); root at {}: {}",
            p.from,
            p.below,
            p.below - p.from,
            a.bytes_freed.unwrap_or(0),
            p.below,
            a.root_at_to.map(|r| sealtrail_meta::hex(&r)).unwrap_or_default()
        )?;
    }
    if let Some(stop) = &p.stopped {
        eprintln!("stopped at entry {} (asked for {}): {stop}", p.below, p.wanted);
    }
    Ok(())
}
