//! Sealtrail's job scheduler (docs/scheduler.md): jobs defined in JSON or
//! TOML with a schedule (cron with an IANA time zone, or `daily`,
//! `weekly`, `monthly`, `once` forms), a type registered by its own
//! module, a misfire policy, retries with backoff and a timeout; state
//! and run history in the metadata database, where a lease makes sure
//! that of several processes on one data directory only one runs a job.
//!
//! - `schedule`: parsing schedules and the next occurrence, across DST.
//! - `spec`: a job's definition; every refusal names the field.
//! - `kind`: the [`JobKind`] trait and the [`Registry`] of types;
//!   `kinds`: the types that ship (`verify`, `reindex`, `retention`,
//!   `report`, `backup`, `data-diff`, `data-keys`).
//! - `scheduler`: the [`Scheduler`] and its [`Clock`].
//! - `admin`: the audited changes the API and the CLI share.
//! - `data_runs`: the runs directory and the `data.max_running` slots the
//!   data API and the data jobs share.
//!
//! Architecture invariant: no HTTP, no async runtime; time only from a
//! [`Clock`]. Architecture invariant: a job runs only while its process
//! holds its lease row in `meta.db`, taken together with the occurrence it
//! runs, so no two processes run one occurrence and no job overlaps itself.

pub mod admin;
pub mod data_runs;
pub mod kind;
pub mod kinds;
pub mod schedule;
pub mod scheduler;
pub mod spec;

pub use kind::{JobEnv, JobKind, Logs, Params, Registry, RunContext};
pub use schedule::{Schedule, ScheduleError};
pub use scheduler::{Clock, ManualClock, Scheduler, SchedulerOptions, SystemClock, TickReport};
pub use spec::{JobSpec, Misfire, SpecError};
