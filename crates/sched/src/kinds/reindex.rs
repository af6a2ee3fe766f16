//! `reindex`: rebuild one log's query index from its ledger, in the
//! process that holds the log open ([`sealtrail_trail::Trail::rebuild_index`]).
//! Queries of the log answer `index-unavailable` until the rebuilt index
//! is swapped in; ingest goes on. The run waits for the swap, checking its
//! timeout every 50 ms.
//!
//! Fields: `log` (required), the name of the log.

use std::time::Duration;

use sealtrail_trail::IndexState;

use crate::kind::{string_param, JobKind, Params, RunContext};

pub struct Reindex;

impl JobKind for Reindex {
    fn name(&self) -> &'static str {
        "reindex"
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
        let trail = ctx.env.logs.trail(log)?;
        let before = trail.index_status().rebuilds;
        trail.rebuild_index(&format!("reindex job {}", ctx.job.name));
        loop {
            let status = trail.index_status();
            if status.rebuilds > before && status.state == IndexState::Ok {
                return Ok(format!(
                    "rebuilt the query index of log {log}: {} entries",
                    status.covered
                ));
            }
            if ctx.cancelled() {
                return Err(format!(
                    "stopped waiting for the rebuild of log {log}'s index at {} entries (it goes on)",
                    status.covered
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
