//! Applying retention to one log, as the CLI (`sealtrail retention
//! apply`) and the server's periodic runs both do: plan with the log's
//! active legal holds, prune the ledger, make the index forget, and record
//! `retention.pruned` (and `retention.stopped` when a hold or a limit
//! stopped it) in the system log through the outbox.
//!
//! Not here: how far to prune (`sealtrail_trail::retention` plans it) nor
//! how bytes leave the disk (the ledger prunes).

use serde_json::Value;

use sealtrail_event::Timestamp;
use sealtrail_trail::retention::{bundle_floor, Policy, RetentionPlan, Stop, BUNDLE};
use sealtrail_trail::{Trail, TrailError};

use crate::db::{Meta, MetaError};
use crate::holds::{pruned_event, stopped_event};

/// How far to prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// As far as the policy asks; a legal hold stops it, and the run says
    /// so (`retention.stopped`).
    Policy(Policy),
    /// Exactly below this entry (a multiple of 256). Refused, with nothing
    /// changed, if a hold covers an entry below it or it is beyond what
    /// may be pruned.
    Below(u64),
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub plan: RetentionPlan,
    /// What the ledger freed, when it pruned.
    pub bytes_freed: Option<u64>,
    /// The RFC 9162 root of the tree of size `plan.below`, when it pruned.
    pub root_at_to: Option<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// An explicit target crossing a legal hold; nothing changed.
    #[error("--below {below}: legal hold {hold} covers entry {index}; nothing was pruned (release the hold, or prune below {allowed} at most)")]
    Held {
        below: u64,
        hold: i64,
        index: u64,
        allowed: u64,
    },
    /// An explicit target that is not a bundle boundary or is too far.
    #[error("--below {below}: {reason}; nothing was pruned")]
    BadTarget { below: u64, reason: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Trail(#[from] TrailError),
}

/// Apply `target` to `trail` (log `log`), stopped by its holds in `meta`.
/// With `dry_run`, plan only: nothing changes and nothing is recorded.
pub fn apply(
    meta: &Meta,
    trail: &Trail,
    log: &str,
    target: Target,
    now: Timestamp,
    actor: &Value,
    dry_run: bool,
) -> Result<Applied, RetentionError> {
    let holds = meta.hold_scopes(log)?;
    let (plan, why) = match target {
        Target::Policy(policy) => (trail.plan_retention(&policy, &holds, now)?, policy_text(&policy)),
        Target::Below(below) => (explicit(trail, &holds, below)?, format!("below {below}")),
    };
    if dry_run {
        return Ok(Applied {
            plan,
            bytes_freed: None,
            root_at_to: None,
        });
    }
    // Recorded when a hold starts to block (or another does), not at
    // every run it keeps blocking.
    match (&plan.stopped, stopped_event(actor, log, &plan)) {
        (Some(Stop::Hold { hold, index }), Some(event)) => {
            meta.retention_blocked(log, Some((*hold, *index)), &event)?;
        }
        _ => {
            meta.retention_blocked(log, None, "")?;
        }
    }
    if plan.is_empty() {
        return Ok(Applied {
            plan,
            bytes_freed: None,
            root_at_to: None,
        });
    }
    let report = trail.prune(plan.below)?;
    meta.queue_system_event(&pruned_event(
        actor,
        log,
        report.from,
        report.to,
        report.bytes_freed,
        &report.root_at_to,
        &why,
    ))?;
    metrics::counter!("sealtrail_retention_pruned_entries_total", "log" => log.to_string())
        .increment(report.to - report.from);
    metrics::counter!("sealtrail_retention_freed_bytes_total", "log" => log.to_string()).increment(report.bytes_freed);
    tracing::info!(
        log,
        from = report.from,
        to = report.to,
        bytes_freed = report.bytes_freed,
        "retention pruned entries {}..{}",
        report.from,
        report.to
    );
    Ok(Applied {
        plan,
        bytes_freed: Some(report.bytes_freed),
        root_at_to: Some(report.root_at_to),
    })
}

fn policy_text(p: &Policy) -> String {
    let mut parts = Vec::new();
    if let Some(age) = p.older_than {
        parts.push(format!("older_than {}s", age.as_secs()));
    }
    if let Some(size) = p.max_size {
        parts.push(format!("max_size {size}"));
    }
    parts.join(", ")
}

/// The plan for an explicit `below`, or why it is refused.
fn explicit(
    trail: &Trail,
    holds: &[sealtrail_trail::retention::HoldScope],
    below: u64,
) -> Result<RetentionPlan, RetentionError> {
    let bad = |reason: String| RetentionError::BadTarget { below, reason };
    if !below.is_multiple_of(BUNDLE) {
        return Err(bad(format!(
            "not a multiple of {BUNDLE} (pruning drops whole bundles; {} or {} would be)",
            bundle_floor(below),
            bundle_floor(below) + BUNDLE
        )));
    }
    let from = trail.pruned_below();
    if below < from {
        return Err(bad(format!("entries below {from} are already pruned")));
    }
    let (most, why) = trail.prune_limit()?;
    if below > most {
        return Err(bad(format!("at most {most} may be pruned ({why})")));
    }
    if let Some((index, hold)) = trail.first_held(holds)? {
        if index < below {
            return Err(RetentionError::Held {
                below,
                hold,
                index,
                allowed: bundle_floor(index).max(from),
            });
        }
    }
    Ok(RetentionPlan {
        from,
        wanted: below,
        below,
        stopped: None,
        bytes: trail.entry_bytes(from, below)?,
    })
}
