//! `retention`: prune one log's oldest entries as a policy says, in whole
//! bundles, stopped by legal holds (`sealtrail_meta::retention::apply`,
//! the path `sealtrail retention apply` and the server's own policy take,
//! with the same `retention.pruned` / `retention.stopped` events).
//!
//! Fields: `log` (required); `older_than` (e.g. `365d`) and `max_size`
//! (e.g. `100GiB`), at least one.

use sealtrail_event::Timestamp;
use sealtrail_meta::retention::{apply, Target};
use sealtrail_trail::retention::Policy;
use serde_json::{json, Value};

use crate::kind::{string_param, JobKind, Params, RunContext};

pub struct Retention;

/// The policy `params` give, or what is wrong, naming the field.
fn policy(params: &Params) -> Result<Policy, String> {
    let text = |field: &str| match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!("{field}: expected a string, found {other}")),
    };
    Policy::parse(text("older_than")?, text("max_size")?)
        .map_err(|(field, e)| format!("{field}: {e}"))?
        .ok_or_else(|| "older_than, max_size: give one or both (a retention job without either prunes nothing)".into())
}

impl JobKind for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["log", "older_than", "max_size"]
    }

    fn check(&self, params: &Params) -> Result<(), String> {
        let log = string_param(params, "log")?;
        sealtrail_ledger::datadir::check_log_name(log).map_err(|e| format!("log: {e}"))?;
        policy(params).map(|_| ())
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String> {
        let log = string_param(&ctx.job.params, "log")?;
        let policy = policy(&ctx.job.params)?;
        let trail = ctx.env.logs.trail(log)?;
        let actor = json!({"id": format!("job:{}", ctx.job.name), "type": "service"});
        let applied = apply(
            &ctx.env.meta,
            &trail,
            log,
            Target::Policy(policy),
            Timestamp::now(),
            &actor,
            false,
        )
        .map_err(|e| format!("retention of log {log}: {e}"))?;
        let plan = &applied.plan;
        let stopped = plan
            .stopped
            .as_ref()
            .map(|s| format!("; stopped: {s}"))
            .unwrap_or_default();
        Ok(match applied.bytes_freed {
            Some(freed) => format!(
                "log {log}: pruned entries [{}, {}), {freed} bytes freed{stopped}",
                plan.from, plan.below
            ),
            None => format!("log {log}: nothing to prune (kept from entry {}){stopped}", plan.from),
        })
    }
}
