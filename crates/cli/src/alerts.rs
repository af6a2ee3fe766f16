//! `sealtrail alerts …`: rules, channels, silences, alerts and the
//! notification history, read and changed in the metadata database
//! directly, so they work whether or not a server runs (a running server
//! picks changes up within `alerts.interval_ms`). Every change is recorded
//! in the system log, as the API's are.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use sealtrail_alert::net::Destinations;
use sealtrail_alert::store::{self, Origin};
use sealtrail_alert::{ChannelSpec, RuleSpec, SilenceSpec, Span};
use sealtrail_meta::alerts as ops;
use sealtrail_meta::Meta;
use sealtrail_server::Config;

use crate::changes::{cli_actor, record};
use crate::output::{say_if_empty, self_command};

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Alert rules.
    Rules {
        #[command(subcommand)]
        command: SpecCommand,
    },
    /// Notification channels (secrets are never printed).
    Channels {
        #[command(subcommand)]
        command: SpecCommand,
    },
    /// Silence alerts until a time: recorded, but nobody is notified.
    Silence {
        /// Only this rule's alerts (default: every rule).
        #[arg(long)]
        rule: Option<String>,
        /// Only alerts of this group, e.g. `--group actor.id=u-1` (repeatable).
        #[arg(long, value_name = "FIELD=VALUE")]
        group: Vec<String>,
        /// How long, e.g. `2h`, `1d`.
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        duration: Option<String>,
        /// Until this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Silences in force (`--expired` adds those that ended).
    Silences {
        #[arg(long)]
        expired: bool,
    },
    /// End a silence now.
    Unsilence { id: i64 },
    /// Alerts, newest first.
    List {
        /// Only alerts firing now.
        #[arg(long)]
        firing: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Notifications and their delivery attempts, newest first.
    Notifications {
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Queue a dead letter for delivery again.
    Retry { id: i64 },
    /// Send a test notification to a channel now.
    Test { channel: String },
}

#[derive(Subcommand, Debug)]
pub enum SpecCommand {
    /// One per line: name, type, origin, updated.
    List,
    /// As JSON (the shape `put` takes).
    Show {
        name: String,
    },
    /// Create or replace from a JSON or TOML file (`-` reads stdin).
    Put {
        file: PathBuf,
    },
    Delete {
        name: String,
    },
    /// Rules only: turn on.
    Enable {
        name: String,
    },
    /// Rules only: turn off (its state is kept).
    Disable {
        name: String,
    },
}

/// Read a spec from JSON or TOML text.
fn read_spec<T: serde::de::DeserializeOwned>(file: &Path) -> anyhow::Result<T> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    let name = file.display();
    if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| anyhow::anyhow!("{name}: {}: {}", e.path(), e.inner()))
    } else {
        let de = toml::Deserializer::parse(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        serde_path_to_error::deserialize(de).map_err(|e| anyhow::anyhow!("{name}: {}: {}", e.path(), e.inner()))
    }
}

/// Where channels may send, as the server is told: the CLI reads
/// `alerts.allowed_networks` from `SEALTRAIL_ALERTS_ALLOWED_NETWORKS`.
fn destinations() -> anyhow::Result<Destinations> {
    let config = Config::load(None, std::env::vars())?;
    Ok(config.alerts.destinations())
}

pub fn alerts(data: &Path, command: &AlertsCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let meta = Meta::open(data)?;
    let actor = cli_actor();
    match command {
        AlertsCommand::Rules { command } => match command {
            SpecCommand::List => {
                let rules = store::list::<RuleSpec>(&meta.lock())?;
                say_if_empty(
                    rules.is_empty(),
                    &format!(
                        "no alert rules (add one with `{} alerts rules put FILE`)",
                        self_command()
                    ),
                );
                for r in rules {
                    let on = if r.spec.enabled { "enabled" } else { "disabled" };
                    let channels = r.spec.channels.join(",");
                    writeln!(
                        out,
                        "{}\t{}\t{on}\t{}\t{}\t{}",
                        r.spec.name,
                        r.spec.condition.name(),
                        if channels.is_empty() { "-" } else { &channels },
                        origin(r.origin),
                        r.updated_at
                    )?;
                }
            }
            SpecCommand::Show { name } => {
                let Some(r) = store::get::<RuleSpec>(&meta.lock(), name)? else {
                    bail!("no alert rule named {name:?}");
                };
                writeln!(out, "{}", serde_json::to_string_pretty(&r.spec)?)?;
            }
            SpecCommand::Put { file } => {
                let spec: RuleSpec = read_spec(file)?;
                let (created, _) = ops::put_rule(&meta, &spec, Origin::Api, ops::Put::Upsert, &actor)?;
                record(data, &meta)?;
                writeln!(
                    out,
                    "{} rule {}",
                    if created { "created" } else { "replaced" },
                    spec.name
                )?;
            }
            SpecCommand::Delete { name } => {
                ops::delete_rule(&meta, name, &actor)?;
                record(data, &meta)?;
                writeln!(out, "deleted rule {name}")?;
            }
            SpecCommand::Enable { name } | SpecCommand::Disable { name } => {
                let enable = matches!(command, SpecCommand::Enable { .. });
                let Some(mut r) = store::get::<RuleSpec>(&meta.lock(), name)? else {
                    bail!("no alert rule named {name:?}");
                };
                r.spec.enabled = enable;
                ops::put_rule(&meta, &r.spec, r.origin, ops::Put::Upsert, &actor)?;
                record(data, &meta)?;
                writeln!(out, "{} rule {name}", if enable { "enabled" } else { "disabled" })?;
            }
        },
        AlertsCommand::Channels { command } => match command {
            SpecCommand::List => {
                let channels = store::list_channels(&meta.lock(), || meta.secrets())?;
                say_if_empty(
                    channels.is_empty(),
                    &format!(
                        "no notification channels (add one with `{} alerts channels put FILE`)",
                        self_command()
                    ),
                );
                for c in channels {
                    let kind = serde_json::to_value(&c.spec.kind)?;
                    let kind = kind.get("type").and_then(|t| t.as_str()).unwrap_or("?").to_string();
                    writeln!(out, "{}\t{kind}\t{}\t{}", c.spec.name, origin(c.origin), c.updated_at)?;
                }
            }
            SpecCommand::Show { name } => {
                let Some(c) = store::get_channel(&meta.lock(), name, || meta.secrets())? else {
                    bail!("no channel named {name:?}");
                };
                writeln!(out, "{}", serde_json::to_string_pretty(&c.spec.redacted())?)?;
            }
            SpecCommand::Put { file } => {
                let spec: ChannelSpec = read_spec(file)?;
                let (created, _) =
                    ops::put_channel(&meta, &spec, &destinations()?, Origin::Api, ops::Put::Upsert, &actor)?;
                record(data, &meta)?;
                writeln!(
                    out,
                    "{} channel {}",
                    if created { "created" } else { "replaced" },
                    spec.name
                )?;
            }
            SpecCommand::Delete { name } => {
                ops::delete_channel(&meta, name, &actor)?;
                record(data, &meta)?;
                writeln!(out, "deleted channel {name}")?;
            }
            SpecCommand::Enable { .. } | SpecCommand::Disable { .. } => {
                bail!("channels are not enabled or disabled; disable the rules that use them")
            }
        },
        AlertsCommand::Silence {
            rule,
            group,
            duration,
            until,
            comment,
        } => {
            let until = match (duration, until) {
                (Some(d), None) => {
                    let span = Span::parse(d).map_err(anyhow::Error::msg).context("--for")?;
                    let now = jiff::Timestamp::now().as_millisecond();
                    sealtrail_alert::engine::time_text(now + span.millis())
                }
                (None, Some(u)) => u.clone(),
                _ => bail!("say how long: --for 2h, or --until 2026-12-01T00:00:00Z"),
            };
            let mut values = std::collections::BTreeMap::new();
            for g in group {
                let Some((k, v)) = g.split_once('=') else {
                    bail!("--group {g:?}: write FIELD=VALUE, e.g. actor.id=u-1");
                };
                values.insert(k.to_string(), v.to_string());
            }
            let spec = SilenceSpec {
                rule: rule.clone(),
                group: values,
                until,
                comment: comment.clone(),
            };
            let by = actor["id"].as_str().unwrap_or("cli").to_string();
            let silence = ops::add_silence(&meta, &spec, &actor, &by)?;
            record(data, &meta)?;
            writeln!(out, "silence {} until {}", silence.id, silence.spec.until)?;
        }
        AlertsCommand::Silences { expired } => {
            let now = jiff::Timestamp::now().as_millisecond();
            let silences = store::list_silences(&meta.lock(), *expired, now)?;
            say_if_empty(
                silences.is_empty(),
                if *expired {
                    "no silences"
                } else {
                    "no silences in force"
                },
            );
            for s in silences {
                let group: Vec<String> = s.spec.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(
                    out,
                    "{}\t{}\t{}\tuntil {}\t{}\t{}",
                    s.id,
                    s.spec.rule.as_deref().unwrap_or("*"),
                    if group.is_empty() {
                        "-".to_string()
                    } else {
                        group.join(",")
                    },
                    s.spec.until,
                    s.created_by,
                    s.spec.comment.as_deref().unwrap_or("")
                )?;
            }
        }
        AlertsCommand::Unsilence { id } => {
            ops::delete_silence(&meta, *id, &actor)?;
            record(data, &meta)?;
            writeln!(out, "ended silence {id}")?;
        }
        AlertsCommand::List { firing, limit } => {
            let alerts = store::list_alerts(&meta.lock(), *firing, *limit, None)?;
            say_if_empty(
                alerts.is_empty(),
                if *firing { "no alerts firing" } else { "no alerts" },
            );
            for a in alerts {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}{}\t{}",
                    a.id,
                    a.status,
                    a.level,
                    a.rule,
                    a.fired_at,
                    a.resolved_at.map(|r| format!(" → {r}")).unwrap_or_default(),
                    a.summary
                )?;
            }
        }
        AlertsCommand::Notifications { status, channel, limit } => {
            let rows = ops::notifications(&meta, status.as_deref(), channel.as_deref(), None, *limit, None)?;
            say_if_empty(rows.as_array().is_some_and(|r| r.is_empty()), "no notifications");
            writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        }
        AlertsCommand::Retry { id } => {
            ops::retry_dead(&meta, *id, &actor)?;
            record(data, &meta)?;
            writeln!(out, "notification {id} queued again")?;
        }
        AlertsCommand::Test { channel } => {
            let Some(c) = store::get_channel(&meta.lock(), channel, || meta.secrets())? else {
                bail!("no channel named {channel:?}");
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let result = runtime.block_on(ops::test_send(&meta, &c.spec, destinations()?, &actor));
            record(data, &meta)?;
            match result.error {
                None => writeln!(
                    out,
                    "delivered a test notification to {channel}{}",
                    result.status.map(|s| format!(" (status {s})")).unwrap_or_default()
                )?,
                Some(e) => bail!("test notification to {channel} failed: {e}"),
            }
        }
    }
    Ok(())
}

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Config => "config",
        Origin::Api => "api",
    }
}
