//! Rule evaluation: a pure state machine over the events of one log and a
//! clock the caller supplies.
//!
//! Events are observed in ledger order at their `received_at` (the
//! server's clock when it stored them), so evaluating the same events
//! again, after a crash or while catching up, gives the same alerts.
//! [`Engine::tick`] advances the clock without an event: it is what makes a
//! flatline fire and a window's alert resolve when nothing arrives. The
//! caller ticks only once it has observed every stored event, so a
//! backlog never looks like silence.
//!
//! All memory is in [`LogState`], a serde value the caller persists in the
//! same transaction as the alerts it produced: an alert is never sent twice
//! nor lost across a restart, and `new_value` remembers what it has seen.
//!
//! Memory per group is bounded by the rule: frequency and flatline keep the
//! times of the last `threshold` matches, spike keeps 2 × 60 counters,
//! cardinality the `threshold + 1` most recent distinct values. Only
//! `new_value` grows with the data: one entry per distinct value per group.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use sealtrail_event::{Event, Ulid};
use serde::{Deserialize, Serialize};

use crate::spec::{Condition, Level, Message, MessageKind, RuleSpec, SilenceSpec, Span};

/// Events remembered per group to cite in a notification.
pub const CITED: usize = 20;

/// Sub-windows per window of a spike rule: its window edges are exact to
/// 1/60 of the window.
pub const SPIKE_BUCKETS: i64 = 60;

/// What the engine remembers about one log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogState {
    /// The next ledger index to observe.
    pub next_index: u64,
    /// Alerts raised so far; alert ids are `<log>-<n>`.
    pub alerts: u64,
    /// The latest time seen, from an event or a tick, in Unix milliseconds.
    pub now_ms: i64,
    rules: BTreeMap<String, RuleState>,
}

impl LogState {
    /// A fresh state that starts evaluating at ledger index `next_index`.
    pub fn starting_at(next_index: u64, now_ms: i64) -> LogState {
        LogState {
            next_index,
            now_ms,
            ..LogState::default()
        }
    }

    /// The rules this log holds state for.
    pub fn rules(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct RuleState {
    /// The parts of the rule that decide what its state means; state is
    /// dropped when they change.
    fingerprint: String,
    /// When evaluation of the rule began: a flatline or spike needs a
    /// whole window of observation before it can fire.
    started_ms: i64,
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Group {
    /// The group's field values, by field path.
    values: BTreeMap<String, String>,
    /// When the group was first seen (a flatline's observation starts then).
    created_ms: i64,
    /// Frequency, flatline: times of the latest matches, at most `threshold`.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    times: VecDeque<i64>,
    /// Spike: (sub-window number, count), oldest first, covering two windows.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    buckets: VecDeque<(i64, u64)>,
    /// Cardinality: each distinct value's last time.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    last_seen: HashMap<String, i64>,
    /// Cardinality: the same, ordered by time; at most `threshold + 1`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    by_time: BTreeSet<(i64, String)>,
    /// New value: every value seen.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    seen: BTreeSet<String>,
    /// The alert now firing for the group, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    firing: Option<(String, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_fired_ms: Option<i64>,
    /// Latest matching events, (index, id), at most [`CITED`].
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    cited: VecDeque<(u64, u128)>,
}

/// An alert starting or ending.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub kind: MessageKind,
    pub alert_id: String,
    pub rule: String,
    pub condition: &'static str,
    pub level: Level,
    pub log: String,
    pub group: BTreeMap<String, String>,
    pub summary: String,
    pub at_ms: i64,
    /// Events behind it, (index, id), oldest first.
    pub cited: Vec<(u64, String)>,
    /// Whether the alert stays firing until a resolved notice (false for
    /// `any` and `new_value`, which notify once per event).
    pub stateful: bool,
}

impl Transition {
    /// The notification for channels.
    pub fn message(&self) -> Message {
        Message {
            version: 1,
            kind: self.kind,
            alert_id: self.alert_id.clone(),
            rule: self.rule.clone(),
            condition: self.condition.to_string(),
            level: self.level,
            log: self.log.clone(),
            group: self.group.clone(),
            summary: self.summary.clone(),
            at: time_text(self.at_ms),
            indices: self.cited.iter().map(|(i, _)| *i).collect(),
            event_ids: self.cited.iter().map(|(_, id)| id.clone()).collect(),
        }
    }

    /// Whether `silence` mutes this alert at `now_ms`.
    pub fn silenced_by(&self, silence: &SilenceSpec, now_ms: i64) -> bool {
        let active = parse_time_ms(&silence.until).is_some_and(|until| now_ms < until);
        active
            && silence.rule.as_deref().is_none_or(|r| r == self.rule)
            && silence.group.iter().all(|(k, v)| self.group.get(k) == Some(v))
    }
}

/// Unix milliseconds as RFC 3339.
pub fn time_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// RFC 3339 as Unix milliseconds.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// A rule ready to evaluate.
struct Compiled {
    spec: RuleSpec,
    fingerprint: String,
    /// The action pattern, split so the common cases skip the glob.
    action: ActionMatch,
}

enum ActionMatch {
    Any,
    Exact(String),
    Prefix(String),
    /// Compiled once per rule, not per event.
    Glob(sealtrail_event::glob::Glob),
}

impl ActionMatch {
    fn new(pattern: Option<&str>) -> ActionMatch {
        match pattern {
            None => ActionMatch::Any,
            Some(p) if !sealtrail_event::glob::is_glob(p) => ActionMatch::Exact(p.to_string()),
            Some(p) if p.ends_with('*') && !sealtrail_event::glob::is_glob(&p[..p.len() - 1]) => {
                ActionMatch::Prefix(p[..p.len() - 1].to_string())
            }
            Some(p) => ActionMatch::Glob(sealtrail_event::glob::Glob::new(p)),
        }
    }

    fn matches(&self, action: &str) -> bool {
        match self {
            ActionMatch::Any => true,
            ActionMatch::Exact(a) => a == action,
            ActionMatch::Prefix(p) => action.starts_with(p.as_str()),
            ActionMatch::Glob(g) => g.matches(action),
        }
    }
}

/// The enabled rules, compiled.
pub struct Engine {
    rules: Vec<Compiled>,
}

impl Engine {
    /// An engine for `rules`; disabled ones are skipped (their state is
    /// kept, so re-enabling a `new_value` rule remembers what it saw).
    pub fn new(rules: &[RuleSpec]) -> Engine {
        let rules = rules
            .iter()
            .filter(|r| r.enabled)
            .map(|r| {
                let mut filter = r.filter.clone();
                let action = ActionMatch::new(filter.action.as_deref());
                filter.action = None;
                let mut spec = r.clone();
                spec.filter = filter;
                Compiled {
                    fingerprint: fingerprint(r),
                    action,
                    spec,
                }
            })
            .collect();
        Engine { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule watches `log`.
    pub fn watches(&self, log: &str) -> bool {
        self.rules.iter().any(|r| r.spec.watches(log))
    }

    /// Drop state the current rules no longer explain: rules deleted (all
    /// of `known`, enabled or not, are kept) or changed in what they
    /// count. Alerts firing for them end, reported as resolved.
    pub fn reconcile(&self, state: &mut LogState, log: &str, known: &[RuleSpec], now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let keep: HashMap<&str, (&RuleSpec, String)> =
            known.iter().map(|r| (r.name.as_str(), (r, fingerprint(r)))).collect();
        state.rules.retain(|name, rs| {
            let current = keep.get(name.as_str());
            let stays = current.is_some_and(|(_, f)| *f == rs.fingerprint);
            if !stays {
                // A changed rule's notice carries its level and condition
                // type; a deleted rule's has none left to carry.
                let (condition, level, why) = match current {
                    Some((r, _)) => (r.condition.name(), r.level, "was changed"),
                    None => ("", Level::Info, "was deleted"),
                };
                for g in rs.groups.values() {
                    if let Some((alert_id, _)) = &g.firing {
                        out.push(Transition {
                            kind: MessageKind::Resolved,
                            alert_id: alert_id.clone(),
                            rule: name.clone(),
                            condition,
                            level,
                            log: log.to_string(),
                            group: g.values.clone(),
                            summary: format!("rule {name} {why}; its alert ends"),
                            at_ms: now_ms,
                            cited: Vec::new(),
                            stateful: true,
                        });
                    }
                }
            }
            stays
        });
        out
    }

    /// Observe the event stored at `index` of `log`; returns the alerts it
    /// starts or ends.
    pub fn observe(&self, state: &mut LogState, log: &str, index: u64, event: &Event) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut key = String::new();
        let t = event.received_at.as_millisecond();
        state.now_ms = state.now_ms.max(t);
        state.next_index = state.next_index.max(index + 1);
        for rule in &self.rules {
            if !rule.spec.watches(log) || !rule.action.matches(&event.action) || !rule.spec.filter.matches(event) {
                continue;
            }
            let spec = &rule.spec;
            let rs = rule_state(&mut state.rules, rule, t);
            let started = rs.started_ms;
            key.clear();
            group_key_of(spec, event, &mut key);
            // Look up before building anything: most events join a group
            // that exists.
            let g = match rs.groups.get_mut(key.as_str()) {
                Some(g) => g,
                None => {
                    let mut values = BTreeMap::new();
                    for f in &spec.group_by {
                        if let Some(v) = f.value(event) {
                            values.insert(f.path().into_owned(), v.into_owned());
                        }
                    }
                    rs.groups.entry(key.clone()).or_insert(Group {
                        values,
                        created_ms: t,
                        ..Group::default()
                    })
                }
            };
            let id = u128::from(event.id);
            g.cited.push_back((index, id));
            if g.cited.len() > CITED {
                g.cited.pop_front();
            }
            match &spec.condition {
                Condition::Any => {
                    let summary = || describe_event(event);
                    fire_once(&mut state.alerts, log, rule, g, t, summary, (index, id), &mut out);
                }
                Condition::NewValue { field } => {
                    let Some(v) = field.value(event) else { continue };
                    if g.seen.contains(v.as_ref()) {
                        continue;
                    }
                    g.seen.insert(v.to_string());
                    let summary = format!(
                        "new {} {v:?}{} ({} by {})",
                        field.path(),
                        describe_group(&g.values),
                        event.action,
                        actor_of(event)
                    );
                    fire_once(&mut state.alerts, log, rule, g, t, || summary, (index, id), &mut out);
                }
                Condition::Frequency { threshold, .. } | Condition::Flatline { threshold, .. } => {
                    g.times.push_back(t);
                    while g.times.len() as u64 > *threshold {
                        g.times.pop_front();
                    }
                }
                Condition::Spike { window, .. } => {
                    let b = spike_bucket(window, t);
                    match g.buckets.back_mut() {
                        // Events arrive in ledger order, whose received_at may
                        // step back a little between writers: count a late one
                        // in the newest sub-window rather than reorder.
                        Some((last, n)) if *last >= b => *n += 1,
                        _ => g.buckets.push_back((b, 1)),
                    }
                    while g.buckets.front().is_some_and(|&(f, _)| f <= b - 2 * SPIKE_BUCKETS) {
                        g.buckets.pop_front();
                    }
                }
                Condition::Cardinality { field, threshold, .. } => {
                    let Some(v) = field.value(event) else { continue };
                    let v = v.into_owned();
                    if let Some(old) = g.last_seen.insert(v.clone(), t) {
                        g.by_time.remove(&(old, v.clone()));
                    }
                    g.by_time.insert((t, v));
                    while g.by_time.len() as u64 > threshold + 1 {
                        if let Some((_, gone)) = g.by_time.pop_first() {
                            g.last_seen.remove(&gone);
                        }
                    }
                }
            }
            if spec.condition.is_stateful() {
                // Never step back in time: a tick may have moved past this
                // event's time (a late writer), and an alert it resolved
                // must not fire again at an earlier instant.
                step(&mut state.alerts, log, rule, g, t.max(state.now_ms), started, &mut out);
            }
        }
        out
    }

    /// Advance the clock to `now_ms` with no event: flatlines fire, windows
    /// empty and their alerts resolve. Idle groups are forgotten.
    pub fn tick(&self, state: &mut LogState, log: &str, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        state.now_ms = state.now_ms.max(now_ms);
        let now = state.now_ms;
        for rule in &self.rules {
            if !rule.spec.watches(log) {
                continue;
            }
            if !rule.spec.condition.is_stateful() {
                if let Some(rs) = state.rules.get_mut(&rule.spec.name) {
                    rs.groups.retain(|_, g| !idle(&rule.spec, g, now));
                }
                continue;
            }
            let rs = rule_state(&mut state.rules, rule, now);
            let started = rs.started_ms;
            if rs.groups.is_empty() && rule.spec.group_by.is_empty() {
                // A rule with no group_by has one group from the start: a
                // flatline then reports silence even if nothing ever came.
                rs.groups.insert(
                    NO_GROUP.to_string(),
                    Group {
                        created_ms: started,
                        ..Group::default()
                    },
                );
            }
            for g in rs.groups.values_mut() {
                step(&mut state.alerts, log, rule, g, now, started, &mut out);
            }
            rs.groups.retain(|_, g| !idle(&rule.spec, g, now));
        }
        out
    }
}

fn rule_state<'s>(rules: &'s mut BTreeMap<String, RuleState>, rule: &Compiled, now: i64) -> &'s mut RuleState {
    // Looked up first, so the common case allocates no key.
    if !rules.contains_key(&rule.spec.name) {
        rules.insert(
            rule.spec.name.clone(),
            RuleState {
                fingerprint: rule.fingerprint.clone(),
                started_ms: now,
                groups: BTreeMap::new(),
            },
        );
    }
    let Some(rs) = rules.get_mut(&rule.spec.name) else {
        unreachable!("inserted above")
    };
    if rs.fingerprint != rule.fingerprint {
        *rs = RuleState {
            fingerprint: rule.fingerprint.clone(),
            started_ms: now,
            groups: BTreeMap::new(),
        };
    }
    rs
}

/// The key of the group of no `group_by` fields.
const NO_GROUP: &str = "";

/// A group's key: its values in `group_by` order, each as its length,
/// `:` and the value, or `-` when absent, so no two groups share a key.
fn group_key_of(spec: &RuleSpec, event: &Event, key: &mut String) {
    use std::fmt::Write;
    for f in &spec.group_by {
        match f.value(event) {
            Some(v) => {
                let _ = write!(key, "{}:", v.len());
                key.push_str(&v);
            }
            None => key.push('-'),
        }
    }
}

/// The parts of a rule that give its state a meaning.
fn fingerprint(rule: &RuleSpec) -> String {
    serde_json::json!([rule.condition, rule.filter, rule.group_by, rule.logs]).to_string()
}

fn next_alert_id(counter: &mut u64, log: &str) -> String {
    *counter += 1;
    format!("{log}-{counter}")
}

fn in_cooldown(rule: &Compiled, g: &Group, t: i64) -> bool {
    match (rule.spec.cooldown, g.last_fired_ms) {
        (Some(c), Some(last)) => t - last < c.millis(),
        _ => false,
    }
}

/// A one-off alert (`any`, `new_value`), unless the group is cooling down.
#[allow(clippy::too_many_arguments)]
fn fire_once(
    counter: &mut u64,
    log: &str,
    rule: &Compiled,
    g: &mut Group,
    t: i64,
    summary: impl FnOnce() -> String,
    (index, id): (u64, u128),
    out: &mut Vec<Transition>,
) {
    if in_cooldown(rule, g, t) {
        return;
    }
    let summary = summary();
    let cited = vec![(index, Ulid::from(id).to_string())];
    g.last_fired_ms = Some(t);
    out.push(Transition {
        kind: MessageKind::Fired,
        alert_id: next_alert_id(counter, log),
        rule: rule.spec.name.clone(),
        condition: rule.spec.condition.name(),
        level: rule.spec.level,
        log: log.to_string(),
        group: g.values.clone(),
        summary,
        at_ms: t,
        cited,
        stateful: false,
    });
}

/// Spike: the sub-window holding time `t`, exactly 1/60 of the window wide.
fn spike_bucket(window: &Span, t: i64) -> i64 {
    let n = i128::from(t) * i128::from(SPIKE_BUCKETS);
    i64::try_from(n.div_euclid(i128::from(window.millis().max(1)))).unwrap_or(i64::MAX)
}

/// Spike: the counts of the current window and the one before it.
fn spike_counts(window: &Span, g: &Group, now: i64) -> (u64, u64) {
    let nb = spike_bucket(window, now);
    let (mut current, mut previous) = (0u64, 0u64);
    for &(b, n) in &g.buckets {
        if b > nb - SPIKE_BUCKETS {
            current += n;
        } else if b > nb - 2 * SPIKE_BUCKETS {
            previous += n;
        }
    }
    (current, previous)
}

/// Whether a stateful condition holds for `g` at time `now`. Called for
/// every matching event, so it allocates nothing.
fn holds(cond: &Condition, g: &Group, now: i64, started: i64) -> bool {
    match cond {
        Condition::Frequency { threshold, window } => {
            g.times.len() as u64 == *threshold && g.times.front().is_some_and(|&f| f > now - window.millis())
        }
        Condition::Flatline { threshold, window } => {
            let enough =
                g.times.len() as u64 == *threshold && g.times.front().is_some_and(|&f| f > now - window.millis());
            let watched_long_enough = now - g.created_ms.max(started) >= window.millis();
            !enough && watched_long_enough
        }
        Condition::Spike {
            window,
            factor,
            min_count,
        } => {
            let (current, previous) = spike_counts(window, g, now);
            let full_history = now - started >= window.millis();
            full_history && current >= *min_count && current as f64 >= factor * previous.max(1) as f64
        }
        Condition::Cardinality { threshold, window, .. } => {
            g.by_time.len() as u64 > *threshold && g.by_time.first().is_some_and(|(f, _)| *f > now - window.millis())
        }
        Condition::Any | Condition::NewValue { .. } => false,
    }
}

/// The sentence saying what holds (or held) for `g` at `now`.
fn sentence(cond: &Condition, g: &Group, now: i64) -> String {
    match cond {
        Condition::Frequency { threshold, window } => format!("at least {threshold} matching events within {window}"),
        Condition::Flatline { threshold, window } => format!("fewer than {threshold} matching events within {window}"),
        Condition::Spike { window, factor, .. } => {
            let (current, previous) = spike_counts(window, g, now);
            format!(
                "{current} matching events in the last {window}, against {previous} in the {window} before (spike factor {factor})"
            )
        }
        Condition::Cardinality {
            field,
            threshold,
            window,
        } => {
            format!(
                "more than {threshold} distinct values of {} within {window}",
                field.path()
            )
        }
        Condition::Any | Condition::NewValue { .. } => String::new(),
    }
}

/// Evaluate a stateful group at `now`: fire when its condition starts to
/// hold (outside cooldown), resolve when it stops.
fn step(
    counter: &mut u64,
    log: &str,
    rule: &Compiled,
    g: &mut Group,
    now: i64,
    started: i64,
    out: &mut Vec<Transition>,
) {
    let on = holds(&rule.spec.condition, g, now, started);
    let transition = |kind, alert_id: String, summary: String, g: &Group| Transition {
        kind,
        alert_id,
        rule: rule.spec.name.clone(),
        condition: rule.spec.condition.name(),
        level: rule.spec.level,
        log: log.to_string(),
        group: g.values.clone(),
        summary,
        at_ms: now,
        cited: g.cited.iter().map(|&(i, id)| (i, Ulid::from(id).to_string())).collect(),
        stateful: true,
    };
    match (&g.firing, on) {
        (None, true) if !in_cooldown(rule, g, now) => {
            let id = next_alert_id(counter, log);
            g.firing = Some((id.clone(), now));
            g.last_fired_ms = Some(now);
            let summary = format!(
                "{}{}",
                sentence(&rule.spec.condition, g, now),
                describe_group(&g.values)
            );
            out.push(transition(MessageKind::Fired, id, summary, g));
        }
        (Some((id, _)), false) => {
            let id = id.clone();
            g.firing = None;
            let summary = format!(
                "resolved: no longer {}{}",
                sentence(&rule.spec.condition, g, now),
                describe_group(&g.values)
            );
            out.push(transition(MessageKind::Resolved, id, summary, g));
        }
        _ => {}
    }
}

/// Whether a group holds nothing worth keeping at `now`.
fn idle(rule: &RuleSpec, g: &Group, now: i64) -> bool {
    if g.firing.is_some() {
        return false;
    }
    // A group that fired keeps its time until its cooldown has passed.
    let cooling = match (rule.cooldown, g.last_fired_ms) {
        (Some(c), Some(last)) => now - last < c.millis(),
        _ => false,
    };
    match &rule.condition {
        // A flatline's groups are what it watches: a group that went
        // silent is the very thing to report, so keep it. New values are
        // remembered for good.
        Condition::Flatline { .. } | Condition::NewValue { .. } => false,
        Condition::Any => !cooling,
        Condition::Frequency { window, .. } => g.times.back().is_none_or(|&t| t <= now - window.millis()) && !cooling,
        Condition::Spike { window, .. } => {
            g.buckets
                .back()
                .is_none_or(|&(b, _)| b <= spike_bucket(window, now) - 2 * SPIKE_BUCKETS)
                && !cooling
        }
        Condition::Cardinality { window, .. } => {
            g.by_time.last().is_none_or(|(t, _)| *t <= now - window.millis()) && !cooling
        }
    }
}

fn describe_group(values: &BTreeMap<String, String>) -> String {
    if values.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" for {}", parts.join(", "))
}

fn actor_of(event: &Event) -> &str {
    event
        .actor
        .as_ref()
        .map(|a| a.id.as_str())
        .unwrap_or("an unknown actor")
}

fn describe_event(event: &Event) -> String {
    let mut s = format!("{} by {}", event.action, actor_of(event));
    if let Some(t) = event.targets.as_ref().and_then(|t| t.first()) {
        s.push_str(&format!(" on {}:{}", t.kind, t.id));
    }
    if let Some(o) = event.outcome {
        s.push_str(&format!(" ({})", o.as_str()));
    }
    s
}
