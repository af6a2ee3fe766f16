//! `sealtrail users …`: people who sign in to the pages, administered
//! from the data directory (the first admin is made here). Every change is
//! recorded in the system log, as `sealtrail keys` changes are.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use sealtrail_meta::{generate_password, hash_password, password_problem, Meta, Role};

use crate::changes::{cli_actor, record};

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user. Without --password-stdin a strong one-time password
    /// is generated and printed (change it on the account page).
    Create {
        name: String,
        #[arg(long, value_parser = parse_role, value_name = "admin|auditor|viewer|ingest")]
        role: Role,
        /// Restrict the user to this tenant's events.
        #[arg(long)]
        tenant: Option<String>,
        /// Read the password from standard input (one line) instead.
        #[arg(long)]
        password_stdin: bool,
        /// The user must set up TOTP before using the pages.
        #[arg(long)]
        require_totp: bool,
    },
    /// List users (never their passwords or TOTP secrets).
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Disable a user: sign-in is refused and their sessions end.
    Disable { name: String },
    /// Enable a disabled user again (also lifts a lockout).
    Enable { name: String },
    /// Set a new password (generated and printed unless --password-stdin);
    /// ends the user's sessions and lifts a lockout.
    ResetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user's TOTP secret and recovery codes.
    ResetTotp { name: String },
    /// Require TOTP of a user (`--off` to stop requiring it).
    RequireTotp {
        name: String,
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::from_name(s).ok_or_else(|| format!("{s:?} is not a role: use admin, auditor, viewer or ingest"))
}

/// The password to set: read from standard input, or generated (and then
/// printed by the caller).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((generate_password()?, true));
    }
    let mut text = String::new();
    std::io::stdin()
        .take(sealtrail_meta::MAX_PASSWORD_BYTES as u64 + 2)
        .read_to_string(&mut text)
        .context("reading the password from standard input")?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains('\n') {
        bail!("standard input: the password must be one line");
    }
    if let Some(p) = password_problem(line) {
        bail!("standard input: {p}");
    }
    Ok((line.to_string(), false))
}

pub fn users(data: &Path, command: &UsersCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let meta = Meta::open(data)?;
    let actor = cli_actor();
    match command {
        UsersCommand::Create {
            name,
            role,
            tenant,
            password_stdin,
            require_totp,
        } => {
            if tenant.as_deref() == Some("") {
                bail!("--tenant must not be empty (leave it out for a user of every tenant)");
            }
            if let Some(p) = sealtrail_meta::name_problem(name) {
                bail!("cannot create the user: {p}");
            }
            let (secret, generated) = password(*password_stdin)?;
            let hash = hash_password(&secret)?;
            let user = meta.create_user(name, *role, tenant.as_deref(), &hash, jiff::Timestamp::now(), &actor)?;
            if *require_totp {
                meta.require_totp(name, true, &actor)?;
            }
            record(data, &meta)?;
            eprintln!(
                "created user {} (role {}{})",
                user.name,
                user.role.as_str(),
                user.tenant
                    .as_deref()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default()
            );
            if generated {
                eprintln!("its one-time password is below; it is shown once");
                writeln!(out, "{secret}")?;
            }
        }
        UsersCommand::List { format } => {
            let users = meta.list_users()?;
            match format {
                ListFormat::Json => {
                    serde_json::to_writer_pretty(&mut *out, &users)?;
                    writeln!(out)?;
                }
                ListFormat::Table => {
                    crate::output::say_if_empty(
                        users.is_empty(),
                        "no users (create one with `sealtrail users create NAME --role admin`)",
                    );
                    for u in users {
                        let mut state = vec![if u.user.disabled { "disabled" } else { "active" }.to_string()];
                        if let Some(l) = &u.locked_until {
                            state.push(format!("locked until {l}"));
                        }
                        if u.totp_enabled {
                            state.push("totp".into());
                        } else if u.totp_required {
                            state.push("totp required".into());
                        }
                        writeln!(
                            out,
                            "{}\t{}\t{}\t{}\t{}",
                            u.user.name,
                            u.user.role.as_str(),
                            u.user.tenant.as_deref().unwrap_or("-"),
                            state.join(", "),
                            u.last_sign_in.as_deref().unwrap_or("never signed in"),
                        )?;
                    }
                }
            }
        }
        UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
            let disable = matches!(command, UsersCommand::Disable { .. });
            let user = meta.set_user_disabled(name, disable, &actor)?;
            record(data, &meta)?;
            writeln!(out, "{} {}", if disable { "disabled" } else { "enabled" }, user.name)?;
        }
        UsersCommand::ResetPassword { name, password_stdin } => {
            if meta.user(name)?.is_none() {
                bail!("no user named {name}");
            }
            let (secret, generated) = password(*password_stdin)?;
            let hash = hash_password(&secret)?;
            meta.set_password(name, &hash, None, "user.password_reset", &actor)?;
            record(data, &meta)?;
            eprintln!("reset the password of {name}; their sessions ended");
            if generated {
                eprintln!("the new one-time password is below; it is shown once");
                writeln!(out, "{secret}")?;
            }
        }
        UsersCommand::ResetTotp { name } => {
            meta.reset_totp(name, &actor)?;
            record(data, &meta)?;
            writeln!(out, "removed the TOTP secret and recovery codes of {name}")?;
        }
        UsersCommand::RequireTotp { name, off } => {
            meta.require_totp(name, !off, &actor)?;
            record(data, &meta)?;
            writeln!(
                out,
                "{name} {} TOTP",
                if *off { "no longer needs" } else { "now needs" }
            )?;
        }
    }
    Ok(())
}
