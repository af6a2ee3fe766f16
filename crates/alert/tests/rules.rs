//! Rule semantics with an injected clock: every time below is a number of
//! seconds after T0, given to the engine as an event's `received_at` or as
//! the time of a tick.
#![allow(clippy::unwrap_used)]

use sealtrail_alert::engine::{Engine, LogState, Transition};
use sealtrail_alert::{MessageKind, RuleSpec, SilenceSpec};
use sealtrail_event::{Event, Timestamp, Ulid};
use serde_json::{json, Value};

const T0: i64 = 1_800_000_000_000;
const LOG: &str = "app";

fn at(secs: i64) -> i64 {
    T0 + secs * 1000
}

fn rule(spec: Value) -> RuleSpec {
    serde_json::from_value(spec).unwrap()
}

/// A harness: one log's state, its engine, and the next ledger index.
struct Run {
    engine: Engine,
    state: LogState,
    next: u64,
}

impl Run {
    fn new(rules: &[RuleSpec]) -> Run {
        Run {
            engine: Engine::new(rules),
            state: LogState::default(),
            next: 0,
        }
    }

    fn event(&mut self, secs: i64, fields: Value) -> Vec<Transition> {
        let ms = at(secs);
        let mut input = json!({"action": "login.failed", "outcome": "failure", "actor": {"id": "u-1"}});
        for (k, v) in fields.as_object().unwrap() {
            input[k] = v.clone();
        }
        let received = Timestamp::from_millisecond(ms).unwrap();
        let id = Ulid::from_parts(ms as u64, self.next as u128);
        let event: Event = sealtrail_event::accept(&input, received, id).unwrap();
        let index = self.next;
        self.next += 1;
        self.engine.observe(&mut self.state, LOG, index, &event)
    }

    fn tick(&mut self, secs: i64) -> Vec<Transition> {
        self.engine.tick(&mut self.state, LOG, at(secs))
    }

    /// Persist and reload the state, as a restart does.
    fn restart(&mut self, rules: &[RuleSpec]) {
        let text = serde_json::to_string(&self.state).unwrap();
        self.state = serde_json::from_str(&text).unwrap();
        self.engine = Engine::new(rules);
    }
}

fn kinds(ts: &[Transition]) -> Vec<MessageKind> {
    ts.iter().map(|t| t.kind).collect()
}

fn failures_per_actor() -> RuleSpec {
    rule(json!({
        "name": "brute-force",
        "condition": {"type": "frequency", "threshold": 3, "window": "5m"},
        "filter": {"action": "login.*", "outcome": "failure"},
        "group_by": ["actor.id"],
        "level": "critical",
        "channels": ["ops"],
    }))
}

#[test]
fn frequency_fires_once_per_group_within_the_window_and_resolves_when_it_slides_past() {
    let mut run = Run::new(&[failures_per_actor()]);
    assert!(run.event(0, json!({})).is_empty());
    assert!(run.event(10, json!({})).is_empty());
    // Not matching the filter: a success, another action.
    assert!(run.event(20, json!({"outcome": "success"})).is_empty());
    assert!(run.event(25, json!({"action": "invoice.paid"})).is_empty());
    // Another actor counts on its own.
    assert!(run.event(30, json!({"actor": {"id": "u-2"}})).is_empty());

    let fired = run.event(40, json!({}));
    assert_eq!(kinds(&fired), [MessageKind::Fired]);
    let f = &fired[0];
    assert_eq!(f.rule, "brute-force");
    assert_eq!(f.group.get("actor.id").map(String::as_str), Some("u-1"));
    assert_eq!(f.at_ms, at(40));
    assert_eq!(f.alert_id, "app-1");
    assert_eq!(f.cited.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1, 5]);
    assert!(
        f.summary.contains("at least 3 matching events within 5m"),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("actor.id=u-1"), "{}", f.summary);
    assert_eq!(f.message().version, 1);

    // Still above threshold: no repeat.
    assert!(run.event(50, json!({})).is_empty());
    // Latest three are at 10, 40, 50: the window (300 s) still holds them at 309.
    assert!(run.tick(309).is_empty());
    let resolved = run.tick(310);
    assert_eq!(kinds(&resolved), [MessageKind::Resolved]);
    assert_eq!(resolved[0].alert_id, "app-1");
    assert!(run.tick(400).is_empty());

    // Three failures spread wider than the window never fire.
    assert!(run.event(1000, json!({})).is_empty());
    assert!(run.event(1200, json!({})).is_empty());
    assert!(run.event(1301, json!({})).is_empty());
}

#[test]
fn cooldown_holds_back_a_group_that_fires_again_too_soon() {
    let mut spec = failures_per_actor();
    spec.cooldown = Some(sealtrail_alert::Span::parse("1h").unwrap());
    let mut run = Run::new(&[spec]);
    for s in [0, 1] {
        assert!(run.event(s, json!({})).is_empty());
    }
    assert_eq!(kinds(&run.event(2, json!({}))), [MessageKind::Fired]);
    assert_eq!(kinds(&run.tick(400)), [MessageKind::Resolved]);
    // Above threshold again 10 minutes later: inside the cooldown.
    for s in [600, 601, 602, 603] {
        assert!(run.event(s, json!({})).is_empty(), "at {s}");
    }
    // After the hour, the next event that finds the condition true fires.
    assert!(run.tick(3599).is_empty());
    for s in [3601, 3602] {
        assert!(run.event(s, json!({})).is_empty());
    }
    assert_eq!(kinds(&run.event(3603, json!({}))), [MessageKind::Fired]);
}

#[test]
fn any_notifies_every_match_but_not_within_a_groups_cooldown() {
    let spec = rule(json!({
        "name": "deletions",
        "condition": {"type": "any"},
        "filter": {"action": "invoice.deleted"},
        "group_by": ["actor.id"],
        "cooldown": "1m",
    }));
    let mut run = Run::new(&[spec]);
    let deleted =
        json!({"action": "invoice.deleted", "outcome": "success", "targets": [{"type": "invoice", "id": "INV-7"}]});
    let fired = run.event(0, deleted.clone());
    assert_eq!(kinds(&fired), [MessageKind::Fired]);
    assert!(!fired[0].stateful);
    assert_eq!(fired[0].summary, "invoice.deleted by u-1 on invoice:INV-7 (success)");
    assert!(run.event(30, deleted.clone()).is_empty(), "within the cooldown");
    let mut other = deleted.clone();
    other["actor"] = json!({"id": "u-2"});
    assert_eq!(kinds(&run.event(31, other)), [MessageKind::Fired]);
    assert_eq!(kinds(&run.event(61, deleted)), [MessageKind::Fired]);
    // `any` never resolves.
    assert!(run.tick(10_000).is_empty());
}

#[test]
fn flatline_fires_on_a_missing_heartbeat_and_resolves_when_it_returns() {
    let spec = rule(json!({
        "name": "heartbeat",
        "condition": {"type": "flatline", "threshold": 1, "window": "5m"},
        "filter": {"action": "job.heartbeat"},
    }));
    let mut run = Run::new(&[spec]);
    // The rule starts watching at the first tick; nothing ever came.
    assert!(run.tick(0).is_empty());
    assert!(run.tick(299).is_empty());
    let fired = run.tick(300);
    assert_eq!(kinds(&fired), [MessageKind::Fired]);
    assert!(fired[0].summary.starts_with("fewer than 1 matching events within 5m"));
    assert!(run.tick(301).is_empty());
    let beat = json!({"action": "job.heartbeat", "outcome": "success"});
    assert_eq!(kinds(&run.event(320, beat.clone())), [MessageKind::Resolved]);
    for s in [400, 500, 600] {
        assert!(run.event(s, beat.clone()).is_empty());
    }
    assert!(run.tick(899).is_empty());
    assert_eq!(kinds(&run.tick(900)), [MessageKind::Fired]);
}

#[test]
fn flatline_by_group_reports_the_group_that_went_quiet() {
    let spec = rule(json!({
        "name": "service-silent",
        "condition": {"type": "flatline", "threshold": 2, "window": "1m"},
        "group_by": ["source.service"],
    }));
    let mut run = Run::new(&[spec]);
    let from = |svc: &str| json!({"action": "tick", "source": {"service": svc}});
    for s in (0..=120).step_by(20) {
        assert!(run.event(s, from("billing")).is_empty());
        if s <= 40 {
            assert!(run.event(s, from("crm")).is_empty());
        }
    }
    // crm's last two events were at 20 and 40: fewer than two within the
    // minute before 80.
    let fired = run.tick(80);
    assert_eq!(kinds(&fired), [MessageKind::Fired]);
    assert_eq!(fired[0].group.get("source.service").map(String::as_str), Some("crm"));
}

#[test]
fn spike_compares_the_current_window_with_the_one_before() {
    let spec = rule(json!({
        "name": "export-spike",
        "condition": {"type": "spike", "window": "10m", "factor": 3.0, "min_count": 20},
        "filter": {"action": "data.exported"},
    }));
    let mut run = Run::new(&[spec]);
    let export = json!({"action": "data.exported", "outcome": "success"});
    // Ten an interval for the first two windows.
    for s in (0..1200).step_by(60) {
        assert!(run.event(s, export.clone()).is_empty(), "at {s}");
    }
    // Then a burst, one event every 3 s from 1200 s.
    let mut fired = Vec::new();
    for i in 0..40 {
        let got = run.event(1200 + i * 3, export.clone());
        if !got.is_empty() {
            fired.push((i, got));
        }
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    let (i, got) = &fired[0];
    assert_eq!(got[0].kind, MessageKind::Fired);
    // At 1263 s (the 22nd of the burst) the current window, 663..1263 s
    // in 10 s sub-windows, holds 8 heartbeats and 22 burst events: 30, three
    // times the 10 of the window before.
    assert_eq!(*i, 21, "{}", got[0].summary);
    assert!(
        got[0]
            .summary
            .starts_with("30 matching events in the last 10m, against 10"),
        "{}",
        got[0].summary
    );
    // Quiet again: resolves once the current window falls below min_count.
    let resolved = run.tick(1200 + 600 + 120);
    assert_eq!(kinds(&resolved), [MessageKind::Resolved]);
}

#[test]
fn spike_needs_min_count_and_a_whole_window_of_history() {
    let spec = rule(json!({
        "name": "s",
        "condition": {"type": "spike", "window": "1m", "factor": 2.0, "min_count": 5},
    }));
    let mut run = Run::new(&[spec]);
    // A burst in the very first window: there is no previous one yet.
    for s in 0..10 {
        assert!(run.event(s, json!({})).is_empty());
    }
    // From nothing to four: below min_count.
    for s in 200..204 {
        assert!(run.event(s, json!({})).is_empty());
    }
    assert_eq!(kinds(&run.event(205, json!({}))), [MessageKind::Fired]);
}

#[test]
fn new_value_fires_for_each_new_ip_of_an_actor_and_remembers_across_restart() {
    let spec = rule(json!({
        "name": "new-ip",
        "condition": {"type": "new_value", "field": "context.ip"},
        "filter": {"action": "login.succeeded"},
        "group_by": ["actor.id"],
    }));
    let rules = [spec];
    let mut run = Run::new(&rules);
    let login = |actor: &str, ip: &str| json!({"action": "login.succeeded", "outcome": "success", "actor": {"id": actor}, "context": {"ip": ip}});
    let first = run.event(0, login("u-1", "10.0.0.1"));
    assert_eq!(kinds(&first), [MessageKind::Fired]);
    assert_eq!(
        first[0].summary,
        "new context.ip \"10.0.0.1\" for actor.id=u-1 (login.succeeded by u-1)"
    );
    assert!(run.event(1, login("u-1", "10.0.0.1")).is_empty());
    assert_eq!(kinds(&run.event(2, login("u-1", "10.0.0.2"))), [MessageKind::Fired]);
    // Another actor's first sight of a known IP is new for that actor.
    assert_eq!(kinds(&run.event(3, login("u-2", "10.0.0.1"))), [MessageKind::Fired]);
    // No IP: nothing to compare.
    assert!(run
        .event(4, json!({"action": "login.succeeded", "actor": {"id": "u-1"}}))
        .is_empty());

    run.restart(&rules);
    assert!(run.event(100_000, login("u-1", "10.0.0.2")).is_empty());
    assert!(run.event(100_001, login("u-2", "10.0.0.1")).is_empty());
    let again = run.event(100_002, login("u-1", "192.0.2.9"));
    assert_eq!(kinds(&again), [MessageKind::Fired]);
    // Ids continue after the restart: never reused.
    assert_eq!(again[0].alert_id, "app-4");
    // Idle time does not make it forget.
    assert!(run.tick(10_000_000).is_empty());
    assert!(run.event(10_000_001, login("u-1", "10.0.0.1")).is_empty());
}

#[test]
fn cardinality_counts_distinct_values_in_the_window() {
    let spec = rule(json!({
        "name": "many-ips",
        "condition": {"type": "cardinality", "field": "context.ip", "threshold": 3, "window": "10m"},
        "group_by": ["actor.id"],
    }));
    let mut run = Run::new(&[spec]);
    let from = |ip: &str| json!({"context": {"ip": ip}});
    assert!(run.event(0, from("10.0.0.1")).is_empty());
    assert!(run.event(10, from("10.0.0.2")).is_empty());
    // Repeats do not count twice.
    assert!(run.event(20, from("10.0.0.2")).is_empty());
    assert!(run.event(30, from("10.0.0.1")).is_empty());
    assert!(run.event(40, from("10.0.0.3")).is_empty());
    let fired = run.event(50, from("10.0.0.4"));
    assert_eq!(kinds(&fired), [MessageKind::Fired]);
    assert!(fired[0]
        .summary
        .starts_with("more than 3 distinct values of context.ip within 10m"));
    // 10.0.0.2 was last seen at 20: four distinct until 620.
    assert!(run.tick(619).is_empty());
    assert_eq!(kinds(&run.tick(620)), [MessageKind::Resolved]);
}

#[test]
fn silences_mute_by_rule_group_and_until_they_expire() {
    let mut run = Run::new(&[failures_per_actor()]);
    for s in 0..2 {
        run.event(s, json!({}));
    }
    let fired = run.event(2, json!({})).remove(0);
    let silence = |rule: Option<&str>, actor: Option<&str>, until: i64| SilenceSpec {
        rule: rule.map(str::to_string),
        group: actor
            .map(|a| [("actor.id".to_string(), a.to_string())].into())
            .unwrap_or_default(),
        until: sealtrail_alert::engine::time_text(at(until)),
        comment: None,
    };
    let now = at(10);
    assert!(fired.silenced_by(&silence(None, None, 60), now));
    assert!(fired.silenced_by(&silence(Some("brute-force"), Some("u-1"), 60), now));
    assert!(!fired.silenced_by(&silence(Some("other"), None, 60), now));
    assert!(!fired.silenced_by(&silence(Some("brute-force"), Some("u-2"), 60), now));
    assert!(
        !fired.silenced_by(&silence(None, None, 10), now),
        "expired at its `until`"
    );
}

#[test]
fn replaying_from_a_saved_state_gives_the_same_alerts() {
    let rules = [failures_per_actor()];
    let mut run = Run::new(&rules);
    run.event(0, json!({}));
    let saved = run.state.clone();
    let first: Vec<_> = [1, 2, 3].iter().flat_map(|&s| run.event(s, json!({}))).collect();
    // A crash before `first` was committed: start again from the saved state.
    run.state = saved;
    run.next = 1;
    let second: Vec<_> = [1, 2, 3].iter().flat_map(|&s| run.event(s, json!({}))).collect();
    assert_eq!(first, second);
    assert_eq!(first.len(), 1);
    assert_eq!(run.state.next_index, 4);
}

#[test]
fn changing_what_a_rule_counts_resets_it_and_ends_its_alerts() {
    let rules = [failures_per_actor()];
    let mut run = Run::new(&rules);
    for s in 0..3 {
        run.event(s, json!({}));
    }
    // Only the channels change: state stays.
    let mut renotified = failures_per_actor();
    renotified.channels = vec!["pager".into()];
    let engine = Engine::new(std::slice::from_ref(&renotified));
    assert!(engine.reconcile(&mut run.state, LOG, &[renotified], at(5)).is_empty());
    // The threshold changes: the firing alert ends.
    let mut stricter = failures_per_actor();
    stricter.condition = serde_json::from_value(json!({"type": "frequency", "threshold": 5, "window": "5m"})).unwrap();
    let engine = Engine::new(std::slice::from_ref(&stricter));
    let ended = engine.reconcile(&mut run.state, LOG, &[stricter], at(6));
    assert_eq!(kinds(&ended), [MessageKind::Resolved]);
    assert_eq!(ended[0].alert_id, "app-1");
    assert_eq!(
        (ended[0].condition, ended[0].level),
        ("frequency", sealtrail_alert::Level::Critical)
    );
    assert_eq!(ended[0].summary, "rule brute-force was changed; its alert ends");
    // Deleted rules lose their state too.
    let engine = Engine::new(&[]);
    assert!(engine.reconcile(&mut run.state, LOG, &[], at(7)).is_empty());
    assert_eq!(run.state.rules().count(), 0);
    assert_eq!((run.state.next_index, run.state.alerts), (3, 1));
}

#[test]
fn rules_watch_every_log_but_system_unless_they_name_logs() {
    let everywhere = failures_per_actor();
    assert!(everywhere.watches("app") && !everywhere.watches("system"));
    let mut only = failures_per_actor();
    only.logs = vec!["system".into()];
    assert!(only.watches("system") && !only.watches("app"));
}

#[test]
fn bad_rules_are_refused_with_field_paths() {
    let err = serde_json::from_value::<RuleSpec>(json!({
        "name": "x", "condition": {"type": "frequency", "threshold": 3, "window": "5 minutes"}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown unit"), "{err}");
    let err = serde_json::from_value::<RuleSpec>(json!({
        "name": "x", "condition": {"type": "any"}, "filter": {"severity": "loud"}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown severity \"loud\""), "{err}");
    let err = serde_json::from_value::<RuleSpec>(json!({
        "name": "x", "condition": {"type": "any"}, "group_by": ["actor.ipaddr"]
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown field \"actor.ipaddr\""), "{err}");
    let spec = rule(json!({
        "name": "bad name!",
        "condition": {"type": "cardinality", "field": "context.ip", "threshold": 0, "window": "60d"},
        "group_by": ["context.ip"],
        "channels": ["ok", "not ok"],
    }));
    assert_eq!(
        spec.problems(),
        [
            "name: \"bad name!\" must be 1 to 100 characters of letters, digits, '.', '_' or '-'",
            "condition.threshold: must be between 1 and 99999",
            "condition.field: context.ip is also in group_by",
            "condition.window: 60d is longer than the longest window, 31d",
            "channels[1]: \"not ok\" is not a channel name",
        ]
    );
}

#[test]
fn an_action_pattern_is_bounded_at_its_limit() {
    let max = sealtrail_event::limits::NAME_CHARS;
    assert!(max <= sealtrail_event::glob::MAX_PATTERN_CHARS);
    let with_action =
        |action: String| rule(json!({"name": "x", "condition": {"type": "any"}, "filter": {"action": action}}));
    // At the bound: accepted, and matched as a glob.
    let at = "*".repeat(max - "failed".len()) + "failed";
    assert!(with_action(at.clone()).problems().is_empty());
    let mut run = Run::new(&[with_action(at)]);
    assert!(run.event(0, json!({"action": "login.passed"})).is_empty());
    assert_eq!(run.event(1, json!({})).len(), 1);
    let over = "*".repeat(max + 1);
    assert_eq!(
        with_action(over).problems(),
        [format!("filter.action: {} characters; the limit is {max}", max + 1)]
    );
}

#[test]
fn a_cooldown_longer_than_idle_time_is_still_honoured() {
    let mut spec = failures_per_actor();
    spec.cooldown = Some(sealtrail_alert::Span::parse("14d").unwrap());
    let mut run = Run::new(&[spec]);
    const DAY: i64 = 86_400;
    for s in 0..2 {
        run.event(s, json!({}));
    }
    assert_eq!(kinds(&run.event(2, json!({}))), [MessageKind::Fired]);
    assert_eq!(kinds(&run.tick(400)), [MessageKind::Resolved]);
    // Long idle: the group may be tidied, its last firing may not be forgotten.
    assert!(run.tick(8 * DAY).is_empty());
    for s in 0..3 {
        assert!(
            run.event(8 * DAY + s, json!({})).is_empty(),
            "fired again inside a 14-day cooldown"
        );
    }
    assert!(run.tick(15 * DAY).is_empty());
    for s in 0..2 {
        assert!(run.event(15 * DAY + s, json!({})).is_empty());
    }
    assert_eq!(kinds(&run.event(15 * DAY + 2, json!({}))), [MessageKind::Fired]);
}
