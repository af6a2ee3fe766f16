//! Alerts in the server: the evaluator that feeds every log's new events
//! to the rule engine, and the deliverer that empties the notification
//! outbox. The audited changes to rules, channels and silences live in
//! `sealtrail_meta::alerts`, shared with the CLI.
//!
//! The evaluator is one thread beside ingest, never in its path: it reads
//! what the ledger has stored, by index, from where its saved state says
//! it stopped. A slow rule or receiver therefore delays alerts, never an
//! acknowledgement, and after a restart or a backlog nothing is skipped.

mod deliverer;
mod evaluator;

pub use deliverer::spawn_deliverer;
pub use evaluator::{run_evaluator, spawn_evaluator, Evaluator};

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
