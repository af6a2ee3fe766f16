//! `sealtrail jobs …`: scheduled jobs (docs/scheduler.md), read and
//! changed in the metadata database directly, so they work whether or not
//! a server runs. The CLI runs no job itself: `run` asks for a run, which
//! a running server's scheduler takes within `scheduler.tick_ms`. Every
//! change is recorded in the system log, as the API's are.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use sealtrail_meta::Meta;
use sealtrail_sched::admin::{self, JobView};
use sealtrail_sched::{JobSpec, Registry};

use crate::changes::{cli_actor, record};
use crate::output::{say_if_empty, self_command};

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// One per line: name, type, schedule, enabled, next run, last outcome.
    List,
    /// A job as JSON: its definition and state.
    Show { name: String },
    /// Create or replace a job from a JSON or TOML file (`-` reads stdin).
    Put { file: PathBuf },
    /// Delete a job and its run history.
    Delete { name: String },
    /// Run on schedule again, from now.
    Enable { name: String },
    /// Stop running on schedule (run now still works).
    Disable { name: String },
    /// Ask for a run now; a running server takes it within a second.
    Run { name: String },
    /// The job's last runs, newest first: start, duration, outcome, trigger, summary or error.
    Runs {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Read a job from JSON or TOML text.
fn read_job(file: &Path, registry: &Registry) -> anyhow::Result<JobSpec> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    JobSpec::from_text(&text, registry).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

fn line(v: &JobView) -> String {
    let field = |k: &str| v.spec.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
    let last = v.last_run.as_ref().map_or("never run".to_string(), |r| {
        format!("last {} {}", r.outcome, r.started_at)
    });
    format!(
        "{}\t{}\t{} ({})\t{}\tnext {}\t{}",
        v.name,
        field("type"),
        field("schedule"),
        field("timezone"),
        if v.enabled { "enabled" } else { "disabled" },
        v.next_run.as_deref().unwrap_or("-"),
        last
    )
}

pub fn jobs(data: &Path, command: &JobsCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let meta = Meta::open(data)?;
    let registry = Registry::builtin();
    let actor = cli_actor();
    let now = chrono::Utc::now();
    match command {
        JobsCommand::List => {
            let all = admin::list(&meta, &registry, now)?;
            say_if_empty(
                all.is_empty(),
                &format!("no jobs (add one with `{} jobs put FILE`)", self_command()),
            );
            for v in &all {
                writeln!(out, "{}", line(v))?;
            }
        }
        JobsCommand::Show { name } => {
            let v = admin::show(&meta, &registry, name, now)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        JobsCommand::Put { file } => {
            let spec = read_job(file, &registry)?;
            let (outcome, v) = admin::put(&meta, &registry, &spec, false, &actor, now)?;
            record(data, &meta)?;
            let what = match outcome {
                sealtrail_meta::jobs::PutOutcome::Created => "created",
                sealtrail_meta::jobs::PutOutcome::Replaced => "replaced",
            };
            writeln!(
                out,
                "{what} job {}; next run {}",
                v.name,
                v.next_run.as_deref().unwrap_or("none")
            )?;
        }
        JobsCommand::Delete { name } => {
            admin::delete(&meta, name, &actor)?;
            record(data, &meta)?;
            writeln!(out, "deleted job {name}")?;
        }
        JobsCommand::Enable { name } | JobsCommand::Disable { name } => {
            let enable = matches!(command, JobsCommand::Enable { .. });
            let v = admin::set_enabled(&meta, &registry, name, enable, &actor, now)?;
            record(data, &meta)?;
            writeln!(out, "{} job {name}", if v.enabled { "enabled" } else { "disabled" })?;
        }
        JobsCommand::Run { name } => {
            admin::request_run(&meta, name, &actor)?;
            record(data, &meta)?;
            writeln!(
                out,
                "asked for a run of job {name}; a running server starts it within a second (see `{} jobs runs {name}`)",
                self_command()
            )?;
        }
        JobsCommand::Runs { name, limit, json } => {
            let runs = admin::runs(&meta, name, *limit)?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
                return Ok(());
            }
            say_if_empty(runs.is_empty(), &format!("job {name} has not run yet"));
            for r in runs {
                let said = match &r.error {
                    Some(e) => e.clone(),
                    None => r.summary.clone(),
                };
                writeln!(
                    out,
                    "{}\t{} ms\t{}\t{}#{}\t{said}",
                    r.started_at,
                    r.duration_ms,
                    r.outcome,
                    r.trigger.as_str(),
                    r.attempt
                )?;
            }
        }
    }
    Ok(())
}
