//! Changes made from the command line (API keys, alert configuration):
//! who made them, and moving their queued system-log events into the
//! system log.

use std::path::Path;

use sealtrail_ledger::{DataDir, LedgerError};
use sealtrail_meta::{drain_outbox, Meta, SYSTEM_LOG};
use sealtrail_trail::{Trail, TrailError, TrailOptions};
use serde_json::json;

/// The actor of changes made from the command line.
pub fn cli_actor() -> serde_json::Value {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    json!({"id": format!("cli:{user}"), "type": "user"})
}

/// Move the queued change events into the system log now if no server
/// holds it; a running server does so within a second.
pub fn record(data: &Path, meta: &Meta) -> anyhow::Result<()> {
    let dir = DataDir::new(data);
    if !dir.log_dir(SYSTEM_LOG).exists() {
        dir.create_log(SYSTEM_LOG, None)?;
    }
    match Trail::open(&dir, SYSTEM_LOG, TrailOptions::default()) {
        Ok(trail) => {
            drain_outbox(meta, &trail)?;
            trail.sync_index()?;
        }
        Err(TrailError::Ledger(LedgerError::Io { op: "lock", .. })) => {
            eprintln!("the server holds the system log; it records this change within a second");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
