//! A background task the server runs on every log at an interval
//! (retention, compaction): one thread at the least scheduling priority,
//! so it never slows ingest, and the last failure of each log's run, kept
//! for health until a run of that log succeeds.
//!
//! Not here: what a run does (the modules that start one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// What a periodic task runs over (the server): it says when to stop.
pub trait Owner: Send + Sync + 'static {
    fn shutting_down(&self) -> bool;
}

/// A periodic task's thread and the last failure of each log's run.
#[derive(Default)]
pub struct Periodic {
    failures: Mutex<HashMap<String, String>>,
    thread: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Periodic {
    /// Start a thread named `name` that calls `run` with `owner` every
    /// `interval` (the first call too waits an interval: a restart loop
    /// must not run it at every start). It holds the owner weakly and ends
    /// when the owner is dropped, shuts down, or on [`Periodic::stop`].
    pub fn start<T: Owner>(&self, owner: &Arc<T>, name: &str, interval: Duration, run: fn(&T)) -> std::io::Result<()> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let weak = Arc::downgrade(owner);
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run_every(&weak, &stopped, interval, &label, run))?;
        *lock(&self.thread) = Some((stop, thread));
        Ok(())
    }

    /// Stop the thread and wait for it (it finishes the run under way).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let running = lock(&self.thread).take();
        if let Some((stop, thread)) = running {
            let _ = stop.send(());
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    /// Whether [`Periodic::stop`] was called: a run that waits looks at
    /// this to end early.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Record that the run of `log` succeeded: its failure, if any, is over.
    pub fn succeeded(&self, log: &str) {
        lock(&self.failures).remove(log);
    }

    /// Record why the run of `log` failed.
    pub fn failed(&self, log: &str, error: String) {
        lock(&self.failures).insert(log.to_string(), error);
    }

    /// Logs whose last run failed, and why, sorted by log.
    pub fn failures(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = lock(&self.failures)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        out
    }
}

fn run_every<T: Owner>(owner: &Weak<T>, stopped: &Receiver<()>, interval: Duration, name: &str, run: fn(&T)) {
    if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
        tracing::warn!("{name}: could not lower the thread's priority: {e:?}");
    }
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(owner) = owner.upgrade() else { return };
        if owner.shutting_down() {
            return;
        }
        run(&owner);
    }
}
