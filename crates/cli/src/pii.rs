//! `sealtrail pii`: protected fields, erasure and the master key
//! (docs/pii.md), and the PII protection the other commands apply: `append`
//! protects what the log's policy names, and the read commands hash filters
//! on hmac fields when the master key is given.
//!
//! The master key comes from `--master-key-file`, or the environment:
//! `SEALTRAIL_PII_MASTER_KEY_FILE` (a file) or `SEALTRAIL_PII_MASTER_KEY`
//! (the key itself).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Subcommand;
use sealtrail_meta::{Meta, META_FILE};
use sealtrail_pii::{LogPii, MasterKey, Rule, Vault};
use sealtrail_server::config::Config;
use sealtrail_server::pii::LogProtection;
use sealtrail_trail::PiiSource;

use crate::changes::{cli_actor, record};

/// The environment variable naming the master key file.
pub const MASTER_KEY_FILE_ENV: &str = "SEALTRAIL_PII_MASTER_KEY_FILE";
/// The environment variable holding the master key itself.
pub const MASTER_KEY_ENV: &str = "SEALTRAIL_PII_MASTER_KEY";

#[derive(Subcommand, Debug)]
pub enum PiiCommand {
    /// Protect FIELD of the log (--log) from now on: `hmac` replaces each value by a keyed
    /// HMAC (still searchable by its clear value), `encrypt` by AES-256-GCM under the key of
    /// the event's subject (erasable). A running server applies it from its next batch.
    Set {
        /// actor.id, actor.email, targets.id, message, details.KEY, ... (docs/pii.md).
        field: String,
        #[arg(long, value_name = "hmac|encrypt")]
        mode: String,
        /// For encrypt: the field naming whose key encrypts it (default actor.id).
        #[arg(long, value_name = "FIELD")]
        subject: Option<String>,
        /// The master key file (else $SEALTRAIL_PII_MASTER_KEY_FILE or $SEALTRAIL_PII_MASTER_KEY).
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// List the protected fields of every log.
    List,
    /// Destroy SUBJECT's data keys (its clear value, e.g. an actor id) in the log given with
    /// --log, or in every log: the values encrypted under them become unreadable for good,
    /// while every entry, hash, checkpoint and proof stays as it is. Recorded as pii.erased.
    Erase {
        subject: String,
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Rewrap every key under a new master key (one transaction); the old one opens nothing
    /// afterwards. Stop the server first, and start it with the new key.
    RotateMaster {
        /// The new master key file (make one with `sealtrail pii new-master-key`).
        #[arg(long, value_name = "FILE")]
        new_master_key_file: PathBuf,
        #[arg(long, value_name = "FILE")]
        master_key_file: Option<PathBuf>,
    },
    /// Print a fresh random master key (64 hexadecimal digits) to keep outside the data directory.
    NewMasterKey,
}

/// The master key from `file`, else from the environment, if any.
pub fn master_key(data: &Path, file: Option<&Path>) -> anyhow::Result<Option<MasterKey>> {
    if let Some(file) = file {
        return Ok(Some(MasterKey::from_file(file, Some(data))?));
    }
    if let Some(file) = std::env::var_os(MASTER_KEY_FILE_ENV).filter(|f| !f.is_empty()) {
        return Ok(Some(MasterKey::from_file(Path::new(&file), Some(data))?));
    }
    if std::env::var_os(MASTER_KEY_ENV).is_some_and(|v| !v.is_empty()) {
        return Ok(Some(MasterKey::from_env(MASTER_KEY_ENV)?));
    }
    Ok(None)
}

fn required_key(data: &Path, file: Option<&Path>) -> anyhow::Result<MasterKey> {
    master_key(data, file)?.with_context(|| {
        format!("this needs the PII master key: --master-key-file FILE, ${MASTER_KEY_FILE_ENV} or ${MASTER_KEY_ENV}")
    })
}

/// The PII protection of `log` for a command that stores events, as the
/// server applies it: the rules of `meta.db` and of the configuration
/// file `config` (its `[[pii.fields]]`), with the master key it names or
/// the one in the environment. `None` when no log is protected; an error
/// when `log` is and no master key is given, so nothing meant to be
/// protected is stored in clear.
pub fn for_writing(data: &Path, log: &str, config: Option<&Path>) -> anyhow::Result<Option<Arc<dyn PiiSource>>> {
    let config = Config::load(config, std::env::vars())?;
    let configured = config.pii.policies()?;
    if !data.join(META_FILE).exists() && configured.is_empty() {
        return Ok(None);
    }
    let meta = Meta::open(data)?;
    let master = match config.pii.master_key(data).map_err(anyhow::Error::msg)? {
        Some(master) => Some(master),
        None => master_key(data, None)?,
    };
    let keyless = master.is_none();
    let protection = LogProtection::open(&meta, configured, master)?;
    // Refused now rather than at the first batch.
    if let Err(e) = protection.current(log) {
        if keyless {
            bail!(
                "log {log} protects PII fields (`sealtrail pii list`, pii.fields): give the master key with ${MASTER_KEY_FILE_ENV} or ${MASTER_KEY_ENV}"
            );
        }
        return Err(e.into());
    }
    Ok(Some(Arc::new(protection)))
}

/// The PII protection of `log` for the read commands: only when a master
/// key is given (filters on hmac fields are then hashed); values are shown
/// as stored either way.
pub fn for_reading(data: &Path, log: &str) -> anyhow::Result<Option<Arc<LogPii>>> {
    let Some(master) = master_key(data, None)? else {
        return Ok(None);
    };
    if !data.join(META_FILE).exists() {
        return Ok(None);
    }
    let meta = Meta::open(data)?;
    let policy = meta.pii_policy(log)?;
    if policy.is_empty() {
        return Ok(None);
    }
    let vault = Arc::new(meta.pii_vault(master)?);
    Ok(Some(Arc::new(LogPii::new(vault, log, policy))))
}

fn vault(meta: &Meta, data: &Path, file: Option<&Path>) -> anyhow::Result<Vault> {
    Ok(meta.pii_vault(required_key(data, file)?)?)
}

/// Whether `--log` was given on the command line (its default names a log
/// too, but `erase` without it means every log).
fn log_given() -> bool {
    std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == "--log" || a.starts_with("--log=")
    })
}

pub fn pii(data: &Path, log: &str, command: &PiiCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        PiiCommand::NewMasterKey => {
            writeln!(out, "{}", &*MasterKey::generate()?.to_hex())?;
            return Ok(());
        }
        PiiCommand::Set {
            field,
            mode,
            subject,
            master_key_file,
        } => {
            let rule = Rule::parse(field, mode, subject.as_deref())?;
            let meta = Meta::open(data)?;
            // The master key is checked (and the HMAC key made) now, not
            // at the first event.
            vault(&meta, data, master_key_file.as_deref())?;
            meta.set_pii_field(log, &rule, cli_actor())?;
            record(data, &meta)?;
            writeln!(
                out,
                "log {log}: {} is protected with {}{}",
                rule.field,
                rule.mode,
                rule.subject
                    .as_ref()
                    .map(|s| format!(" (subject {s})"))
                    .unwrap_or_default()
            )?;
        }
        PiiCommand::List => {
            let meta = Meta::open(data)?;
            let fields = meta.pii_fields()?;
            crate::output::say_if_empty(
                fields.is_empty(),
                "no protected fields (protect one with `sealtrail pii set`)",
            );
            for f in fields {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    f.log,
                    f.field,
                    f.mode,
                    f.subject.as_deref().unwrap_or("-")
                )?;
            }
        }
        PiiCommand::Erase {
            subject,
            master_key_file,
        } => {
            let meta = Meta::open(data)?;
            let vault = vault(&meta, data, master_key_file.as_deref())?;
            let only = log_given().then_some(log);
            let logs = meta.erase_pii_subject(&vault, subject, only, cli_actor())?;
            record(data, &meta)?;
            writeln!(
                out,
                "erased subject {} in log(s) {}: its encrypted values are unreadable from now on",
                vault.pseudonym(subject),
                logs.join(", ")
            )?;
        }
        PiiCommand::RotateMaster {
            new_master_key_file,
            master_key_file,
        } => {
            let meta = Meta::open(data)?;
            let vault = vault(&meta, data, master_key_file.as_deref())?;
            let new = MasterKey::from_file(new_master_key_file, Some(data))?;
            let n = meta.rotate_pii_master(&vault, &new, cli_actor())?;
            record(data, &meta)?;
            writeln!(
                out,
                "rewrapped the HMAC key and {n} data keys under the new master key; the old one opens nothing now"
            )?;
        }
    }
    Ok(())
}
