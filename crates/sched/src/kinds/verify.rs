//! `verify`: the full offline verification of one log
//! ([`sealtrail_ledger::verify::verify_log`], as `sealtrail verify` does):
//! every leaf hash recomputed from the stored entries, the tree rebuilt
//! and compared with the stored hashes and the signed checkpoint. It
//! reads the files only, so it runs beside a server writing the log. A
//! log with findings fails the run, the first findings in its error.
//!
//! Fields: `log` (required), the name of the log.

use crate::kind::{string_param, JobKind, Params, RunContext};

/// Findings quoted in a failed run's error.
const FINDINGS_QUOTED: usize = 10;

pub struct Verify;

impl JobKind for Verify {
    fn name(&self) -> &'static str {
        "verify"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["log"]
    }

    fn check(&self, params: &Params) -> Result<(), String> {
        let log = string_param(params, "log")?;
        sealtrail_ledger::datadir::check_log_name(log).map_err(|e| format!("log: {e}"))
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String> {
        let log = string_param(&ctx.job.params, "log")?;
        let data = ctx.env.logs.data();
        let dir = data.log_dir(log);
        if !dir.exists() {
            return Err(format!("no log named {log:?}"));
        }
        let report = sealtrail_ledger::verify::verify_log(&**data.storage(), &dir, None, None)
            .map_err(|e| format!("verifying log {log}: {e}"))?;
        let size = report.checkpoint.as_ref().map(|c| c.size);
        if report.intact() {
            return Ok(format!(
                "log {log} intact: {} entries, signed checkpoint of size {}",
                report.entries,
                size.map_or_else(|| "none".to_string(), |s| s.to_string())
            ));
        }
        let total = report.findings.len() + report.more_findings;
        let quoted: Vec<String> = report
            .findings
            .iter()
            .take(FINDINGS_QUOTED)
            .map(ToString::to_string)
            .collect();
        Err(format!(
            "log {log} failed verification: {total} finding(s) in {} entries: {}",
            report.entries,
            quoted.join("; ")
        ))
    }
}
