//! Job types: the [`JobKind`] trait each type implements in its own
//! module, and the [`Registry`] that maps a job's `type` to it. Adding a
//! type is one module and one line in [`Registry::builtin`].
//!
//! Not here: when jobs run (the scheduler) or their common fields (spec).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sealtrail_ledger::DataDir;
use sealtrail_meta::Meta;
use sealtrail_trail::Trail;
use serde_json::{Map, Value};

use crate::spec::JobSpec;

/// The fields of a job beyond the common ones, as given (JSON values).
pub type Params = Map<String, Value>;

/// The logs of the data directory as the process running jobs holds them:
/// a server hands out its open trails.
pub trait Logs: Send + Sync {
    /// The data directory.
    fn data(&self) -> &DataDir;
    /// The open trail of log `name`, or why there is none.
    fn trail(&self, name: &str) -> Result<Arc<Trail>, String>;
}

/// What a running job may use.
#[derive(Clone)]
pub struct JobEnv {
    pub meta: Arc<Meta>,
    pub logs: Arc<dyn Logs>,
    /// The data directory's path (for types that write files beside it).
    pub data_dir: PathBuf,
}

/// One run of one job.
pub struct RunContext<'a> {
    pub job: &'a JobSpec,
    pub env: &'a JobEnv,
    cancel: &'a AtomicBool,
}

impl<'a> RunContext<'a> {
    pub fn new(job: &'a JobSpec, env: &'a JobEnv, cancel: &'a AtomicBool) -> RunContext<'a> {
        RunContext { job, env, cancel }
    }

    /// True once the run's timeout has passed: a long job checks this
    /// between steps and returns an error when it is set.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// A job type. Implementations are stateless or hold only what every run
/// shares; one value serves every job of its type, from several threads.
pub trait JobKind: Send + Sync + 'static {
    /// The job's `type`, e.g. `"verify"`.
    fn name(&self) -> &'static str;
    /// The fields its jobs take beside the common ones (`name`, `type`,
    /// `schedule` …); any other field is refused, named.
    fn fields(&self) -> &'static [&'static str];
    /// Check the values of those fields; the error names the field.
    fn check(&self, params: &Params) -> Result<(), String>;
    /// Run the job once: `Ok` with a one-line summary of what it did, or
    /// `Err` with what went wrong. Called on a thread of its own; a run
    /// past its timeout is recorded as failed, and its thread is asked to
    /// stop through [`RunContext::cancelled`] and waited for before the
    /// job runs again.
    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String>;
}

/// The job types this build knows, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn JobKind>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Every type that ships.
    pub fn builtin() -> Registry {
        let mut r = Registry::new();
        r.register(crate::kinds::verify::Verify);
        r.register(crate::kinds::reindex::Reindex);
        r.register(crate::kinds::retention::Retention);
        r.register(crate::kinds::backup::Backup);
        // Sources unknown here; a server registers them again with its
        // `[data.sources]` and `data.memory_budget`.
        r.register(crate::kinds::data::DataDiff(Default::default()));
        r.register(crate::kinds::data::DataKeys(Default::default()));
        // Webhooks held to the default policy (no private networks); a
        // server registers it again with its `alerts.allowed_networks`.
        r.register(crate::kinds::report::Report {
            destinations: Default::default(),
        });
        r
    }

    /// Add `kind` (replacing a type of the same name).
    pub fn register(&mut self, kind: impl JobKind) -> &mut Registry {
        self.kinds.insert(kind.name(), Arc::new(kind));
        self
    }

    /// The type named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn JobKind>> {
        self.kinds.get(name).cloned()
    }

    /// The names of the known types, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}

/// A string field `field` of `params`, required.
pub fn string_param<'p>(params: &'p Params, field: &str) -> Result<&'p str, String> {
    match params.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("{field}: expected a string, found {other}")),
        None => Err(format!("{field}: missing (this job type needs it)")),
    }
}
