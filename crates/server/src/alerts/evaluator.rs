//! The evaluator: one thread that reads each log's new events from the
//! ledger, feeds them and the clock to the rule engine, and saves what
//! fired together with its progress.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use sealtrail_alert::engine::{Engine, LogState, Transition};
use sealtrail_alert::store;
use sealtrail_alert::{Level, MessageKind, RuleSpec, SilenceSpec};
use sealtrail_meta::alerts::AlertError;
use sealtrail_meta::{queue_event, SYSTEM_LOG};
use serde_json::json;
use tokio::sync::watch;

use sealtrail_trail::Trail;

use super::now_ms;
use crate::app::App;

/// Most events the evaluator reads from one log before it looks at the
/// others and saves its progress.
const PASS_EVENTS: u64 = 65_536;

/// How often progress is saved when nothing fired (alerts are saved at once).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How far behind the wall clock ticks run: an event is stamped
/// `received_at` a moment before its batch is in the log.
const TICK_GRACE_MS: i64 = 1_000;

/// The system-log event recording an alert firing or ending.
fn alert_event(t: &Transition, silenced: bool) -> String {
    let action = match t.kind {
        MessageKind::Fired => "alert.fired",
        MessageKind::Resolved => "alert.resolved",
        MessageKind::Test => "alert.test",
    };
    let severity = match (t.kind, t.level) {
        (MessageKind::Resolved, _) | (_, Level::Info) => "notice",
        (_, Level::Warning) => "warning",
        (_, Level::Critical) => "critical",
    };
    json!({
        "action": action,
        "actor": {"id": "sealtrail", "type": "system"},
        "targets": [{"type": "alert", "id": t.alert_id}, {"type": "log", "id": t.log}],
        "source": {"service": "sealtrail"},
        "outcome": "success",
        "severity": severity,
        "message": t.summary,
        "details": {
            "rule": t.rule,
            "condition": t.condition,
            "level": t.level.as_str(),
            "group": t.group,
            "silenced": silenced,
            "indices": t.cited.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        },
    })
    .to_string()
}

/// One log's evaluation state and what of it is saved.
struct Tracked {
    state: LogState,
    /// None until first saved.
    saved_index: Option<u64>,
    saved_at: Instant,
}

/// Feeds new events to the rules; see the module documentation.
pub struct Evaluator {
    app: Arc<App>,
    version: Option<i64>,
    rules: Vec<RuleSpec>,
    silences: Vec<SilenceSpec>,
    engine: Engine,
    logs: HashMap<String, Tracked>,
}

impl Evaluator {
    pub fn new(app: Arc<App>) -> Evaluator {
        Evaluator {
            app,
            version: None,
            rules: Vec::new(),
            silences: Vec::new(),
            engine: Engine::new(&[]),
            logs: HashMap::new(),
        }
    }

    /// Reload rules and silences if they changed; end the alerts of rules
    /// that changed or went away.
    fn reload(&mut self, now: i64) -> Result<(), AlertError> {
        let conn = self.app.meta.lock();
        let version = store::config_version(&conn)?;
        if self.version == Some(version) {
            return Ok(());
        }
        self.rules = store::list::<RuleSpec>(&conn)?.into_iter().map(|s| s.spec).collect();
        self.silences = store::list_silences(&conn, false, now)?
            .into_iter()
            .map(|s| s.spec)
            .collect();
        let first = self.version.is_none();
        drop(conn);
        self.engine = Engine::new(&self.rules);
        if first {
            // Logs evaluated before the restart are watched whether or not
            // anyone asks for them: a flatline on a log nobody writes to
            // any more is exactly what must fire.
            // The list first, the lock released: opening a log takes the
            // server's opening lock, and a follower creating a log holds
            // that one while it asks for the metadata lock.
            let evaluated = store::evaluated_logs(&self.app.meta.lock())?;
            for name in evaluated {
                if let Err(p) = self.app.trail(&name) {
                    tracing::warn!("alerts: cannot open log {name}: {}", p.detail);
                }
            }
        }
        let names: Vec<String> = self.logs.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.reconcile(&name, now) {
                tracing::warn!("alerts: log {name}: {e}");
                self.logs.remove(&name);
            }
        }
        self.version = Some(version);
        Ok(())
    }

    /// End the alerts of rules that changed or went away, for one log.
    fn reconcile(&mut self, name: &str, now: i64) -> Result<(), AlertError> {
        let Some(tracked) = self.logs.get_mut(name) else {
            return Ok(());
        };
        let ended = self.engine.reconcile(&mut tracked.state, name, &self.rules, now);
        if !ended.is_empty() {
            self.save(name, ended, now)?;
        }
        Ok(())
    }

    fn save(&mut self, log: &str, transitions: Vec<Transition>, now: i64) -> Result<(), AlertError> {
        let Some(tracked) = self.logs.get_mut(log) else {
            return Ok(());
        };
        let text = store::StateText::of(log, &tracked.state)?;
        let mut conn = self.app.meta.lock();
        let done = store::commit(
            &mut conn,
            log,
            &text,
            &transitions,
            &self.rules,
            &self.silences,
            now,
            |tx: &Connection, t, silenced| queue_event(tx, &alert_event(t, silenced)),
        )?;
        drop(conn);
        tracked.saved_index = Some(tracked.state.next_index);
        tracked.saved_at = Instant::now();
        for t in &transitions {
            let kind = if t.kind == MessageKind::Fired {
                "fired"
            } else {
                "resolved"
            };
            metrics::counter!("sealtrail_alerts_total", "rule" => t.rule.clone(), "transition" => kind).increment(1);
        }
        if done.notifications > 0 {
            metrics::counter!("sealtrail_notifications_queued_total").increment(done.notifications as u64);
        }
        Ok(())
    }

    /// One pass over every open log. Returns whether a log still has a
    /// backlog (the caller goes again at once). A log that fails (a read
    /// or a save) is dropped from memory and reloaded from its last saved
    /// state next time, so what was not saved is evaluated again rather
    /// than lost; the other logs go on.
    pub fn pass(&mut self) -> Result<bool, AlertError> {
        let now = now_ms();
        self.reload(now)?;
        let mut behind = false;
        for (name, trail) in self.app.open_trails() {
            match self.pass_log(&name, &trail, now) {
                Ok(b) => behind |= b,
                Err(e) => {
                    tracing::warn!("alerts: log {name}: {e}");
                    self.logs.remove(&name);
                }
            }
        }
        Ok(behind)
    }

    fn pass_log(&mut self, name: &str, trail: &Trail, now: i64) -> Result<bool, AlertError> {
        let size = trail.log().size();
        if !self.logs.contains_key(name) {
            let saved = store::load_state(&self.app.meta.lock(), name)?;
            let saved_index = saved.as_ref().map(|s| s.next_index);
            // Rules apply from here on; a log created by this process
            // starts at 0 (store::begin_log), so none of its events is missed.
            let state = saved.unwrap_or_else(|| LogState::starting_at(self.app.opened_size(name), now));
            self.logs.insert(
                name.to_string(),
                Tracked {
                    state,
                    saved_index,
                    saved_at: Instant::now(),
                },
            );
            // The rules may have changed while the state lay on disk.
            self.reconcile(name, now)?;
        }
        let Some(tracked) = self.logs.get_mut(name) else {
            return Ok(false);
        };
        let mut transitions = Vec::new();
        let mut behind = false;
        if !self.engine.watches(name) {
            // Nothing to evaluate: move on without reading, so a rule
            // added later starts from now, not from the log's past.
            tracked.state.next_index = tracked.state.next_index.max(size);
        } else {
            let end = size.min(tracked.state.next_index.saturating_add(PASS_EVENTS));
            while tracked.state.next_index < end {
                let first = tracked.state.next_index;
                let count = (end - first).min(1024);
                let entries = trail
                    .log()
                    .entries(first, count)
                    .map_err(|e| AlertError::Invalid(vec![format!("reading at {first}: {e}")]))?;
                for (i, entry) in entries.iter().enumerate() {
                    let index = first + i as u64;
                    match sealtrail_event::parse_entry(entry) {
                        // Alerts about alerts would feed themselves.
                        Ok(event) if name == SYSTEM_LOG && event.action.starts_with("alert.") => {
                            tracked.state.next_index = index + 1;
                        }
                        Ok(event) => transitions.extend(self.engine.observe(&mut tracked.state, name, index, &event)),
                        Err(e) => {
                            tracing::warn!("alerts: log {name} entry {index} is not an event: {e}");
                            tracked.state.next_index = index + 1;
                        }
                    }
                }
            }
            if tracked.state.next_index >= size {
                // A little behind the wall clock: an event stamped just
                // before `now` may not be in the log yet.
                transitions.extend(self.engine.tick(&mut tracked.state, name, now - TICK_GRACE_MS));
            } else {
                behind = true;
            }
        }
        metrics::gauge!("sealtrail_alert_lag_events", "log" => name.to_string())
            .set(size.saturating_sub(tracked.state.next_index) as f64);
        let due = match tracked.saved_index {
            None => true,
            Some(saved) => saved != tracked.state.next_index && tracked.saved_at.elapsed() >= SAVE_EVERY,
        };
        if !transitions.is_empty() || due {
            self.save(name, transitions, now)?;
        }
        Ok(behind)
    }

    /// The next ledger index of `log` to evaluate, once seen.
    pub fn next_index(&self, log: &str) -> Option<u64> {
        self.logs.get(log).map(|t| t.state.next_index)
    }

    /// Save every log's progress (at shutdown).
    pub fn flush(&mut self) -> Result<(), AlertError> {
        let now = now_ms();
        let names: Vec<String> = self.logs.keys().cloned().collect();
        for name in names {
            self.save(&name, Vec::new(), now)?;
        }
        Ok(())
    }
}

/// Run the evaluator on its own thread until `stop` turns true.
pub fn spawn_evaluator(app: Arc<App>, stop: watch::Receiver<bool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("alert-evaluator".into())
        .spawn(move || run_evaluator(app, || *stop.borrow(), |_| {}))
}

/// The evaluator's loop, on the calling thread: a pass, then a pause of
/// `alerts.interval_ms` unless a log is still behind, until `stop()`;
/// `progress` sees the evaluator after each pass. Progress is saved on
/// the way out.
///
/// The thread lowers its own scheduling priority to the least (nice 19):
/// when ingest keeps every core busy the evaluator yields to it and falls
/// behind, then catches up by index when there is room, so rules never
/// slow acknowledgements.
pub fn run_evaluator(app: Arc<App>, stop: impl Fn() -> bool, mut progress: impl FnMut(&Evaluator)) {
    if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
        tracing::warn!("alerts: could not lower the evaluator's priority: {e:?}");
    }
    let interval = Duration::from_millis(app.config.alerts.interval_ms);
    let mut evaluator = Evaluator::new(app);
    while !stop() {
        let behind = match evaluator.pass() {
            Ok(behind) => behind,
            Err(e) => {
                tracing::warn!("alerts: {e}");
                false
            }
        };
        progress(&evaluator);
        if !behind {
            std::thread::sleep(interval);
        }
    }
    if let Err(e) = evaluator.flush() {
        tracing::warn!("alerts: saving progress at shutdown: {e}");
    }
}
