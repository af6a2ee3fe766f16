//! `sealtrail serve` and `sealtrail keys …`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sealtrail_meta::{key_event, now_text, Meta, Scope};

use crate::changes::{cli_actor, record};
use crate::output::self_command;
use sealtrail_server::config::{Log as LogConfig, LogFormat};
use sealtrail_server::{Config, Server};

/// The CLI's defaults for its global flags: a flag left at its default
/// does not override the configuration file.
pub const DEFAULT_DATA: &str = "./sealtrail-data";
pub const DEFAULT_LOG: &str = "default";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// TOML configuration file (docs/server-config.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How log lines on standard error look: `text` (for people) or `json`
    /// (one object a line); overrides `log.format`.
    #[arg(long, value_name = "json|text", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        _ => Err(format!("{s:?} is not a log format: use json or text")),
    }
}

/// Send the server's log lines to standard error (standard output has the
/// banner): at `log.level`, or as `RUST_LOG` says when it is set.
fn install_logging(config: &LogConfig, format: LogFormat) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => {
            EnvFilter::try_new(&text).with_context(|| format!("RUST_LOG={text:?} is not a log filter"))?
        }
        _ => EnvFilter::try_new(&config.level)
            .with_context(|| format!("log.level: {:?} is not a level or log filter", config.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log: {e}"))
}

pub fn serve(data: &Path, log: &str, args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if data != Path::new(DEFAULT_DATA) {
        config.data_dir = data.to_path_buf();
    }
    if log != DEFAULT_LOG {
        config.default_log = log.to_string();
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    install_logging(&config.log, args.log_format.unwrap_or(config.log.format))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async move {
        // Before anything else: a SIGTERM that arrives during start-up or
        // right after the banner stops the server gracefully.
        let stop = sealtrail_server::termination();
        let server = Server::start(config).await.map_err(anyhow::Error::msg)?;
        // The banner is for people; a closed stdout must not stop the server.
        if let Err(e) = banner(&server) {
            tracing::warn!("could not print the banner: {e}");
        }
        stop.await;
        server.shutdown();
        server.wait().await.map_err(anyhow::Error::msg)
    });
    // Connections were dropped by now; a blocking task still running (a
    // query whose client went away) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

fn banner(server: &Server) -> anyhow::Result<()> {
    let app = &server.app;
    let base = format!("http://{}", server.addr);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "sealtrail {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        server.addr
    )?;
    writeln!(out, "  data      {}", app.config.data_dir.display())?;
    writeln!(out, "  API       {base}/api/v1/logs/{}/events", app.config.default_log)?;
    writeln!(
        out,
        "  API docs  {base}/api/docs  (OpenAPI: {base}/api/v1/openapi.json)"
    )?;
    let access = if app.config.tiles.public { "public" } else { "read key" };
    writeln!(
        out,
        "  tiles     {base}/logs/{}/checkpoint  ({access})",
        app.config.default_log
    )?;
    writeln!(out, "  metrics   {base}/metrics   health {base}/healthz {base}/readyz")?;
    for info in app.data.list_logs()? {
        writeln!(out, "  log {:<10} {}", info.name, info.verifier)?;
    }
    if app.meta.list_keys()?.iter().all(|k| k.revoked_at.is_some()) {
        writeln!(
            out,
            "  no API keys yet: create one with `{} keys create --scope admin --data {}`",
            self_command(),
            app.config.data_dir.display()
        )?;
    }
    out.flush()?;
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key and print its secret (shown once; only a hash is kept).
    Create {
        #[arg(long, value_parser = parse_scope, value_name = "ingest|read|analyst|admin")]
        scope: Scope,
        /// Restrict the key to this tenant's events.
        #[arg(long)]
        tenant: Option<String>,
        /// Who or what uses the key.
        #[arg(long, default_value = "")]
        name: String,
        /// Grant the `pii` permission: reads with the key see encrypted PII fields in clear.
        #[arg(long)]
        pii: bool,
    },
    /// List API keys (never their secrets).
    List,
    /// Revoke an API key by id; it stops working within a second.
    Revoke { id: String },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::from_name(s).ok_or_else(|| format!("{s:?} is not a scope: use ingest, read, analyst or admin"))
}

pub fn keys(data: &Path, command: &KeysCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let meta = Meta::open(data)?;
    match command {
        KeysCommand::Create {
            scope,
            tenant,
            name,
            pii,
        } => {
            if tenant.as_deref() == Some("") {
                bail!("--tenant must not be empty (leave it out for a key of every tenant)");
            }
            let problems = sealtrail_meta::key_problems(name, tenant.as_deref());
            if !problems.is_empty() {
                bail!("cannot create the key: --{}", problems.join("; --"));
            }
            let (mut key, secret) = meta.create_key(*scope, tenant.as_deref(), name, &now_text(), |k| {
                key_event(cli_actor(), "api_key.created", k)
            })?;
            if *pii {
                key = meta.set_key_pii(&key.id, true, |k| key_event(cli_actor(), "api_key.pii_granted", k))?;
            }
            record(data, &meta)?;
            eprintln!(
                "created API key {} (scope {}{}{}); the secret below is shown once",
                key.id,
                key.scope.as_str(),
                if key.pii { ", pii" } else { "" },
                key.tenant
                    .as_deref()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default()
            );
            writeln!(out, "{secret}")?;
        }
        KeysCommand::List => {
            let keys = meta.list_keys()?;
            crate::output::say_if_empty(
                keys.is_empty(),
                &format!(
                    "no API keys (create one with `{} keys create --scope admin`)",
                    self_command()
                ),
            );
            for k in keys {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.scope.as_str(),
                    k.tenant.as_deref().unwrap_or("-"),
                    if k.name.is_empty() { "-" } else { &k.name },
                    k.created_at,
                    k.revoked_at
                        .as_deref()
                        .map_or("active".to_string(), |r| format!("revoked {r}")),
                )?;
            }
        }
        KeysCommand::Revoke { id } => {
            let key = meta.revoke_key(id, &now_text(), |k| key_event(cli_actor(), "api_key.revoked", k))?;
            record(data, &meta)?;
            writeln!(
                out,
                "revoked {} at {}",
                key.id,
                key.revoked_at.as_deref().unwrap_or("?")
            )?;
        }
    }
    Ok(())
}
