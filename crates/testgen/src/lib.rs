//! Deterministic generator of realistic audit events for Sealtrail's tests
//! and benchmarks.
//!
//! [`events`] yields `count` events as JSON text, one object each, as a
//! sender would submit them (no `id`, no `received_at`). The same seed and
//! count give the same bytes on every machine and run; the generator is
//! SplitMix64 and nothing else (no clock, no I/O, no hash-map order).
//! Every event is accepted by `sealtrail_event::accept_json`. Generation
//! runs at several million events per second in a release build.
//!
//! ```
//! let first: Vec<Vec<u8>> = sealtrail_testgen::events(42, 3).collect();
//! assert_eq!(first, sealtrail_testgen::events(42, 3).collect::<Vec<_>>());
//! ```
//!
//! # The shape of the generated trail
//!
//! With the default [`Shape`]:
//!
//! - **Size**: about 360 bytes per event once stored (canonical form,
//!   including the 93 bytes of the server's `id`, `received_at` and
//!   `severity`), most between 250 and 500. The fields every event
//!   carries (time, tenant, action, actor, targets) come to about 280;
//!   [`Shape::richness`] scales the optional rest.
//! - **Actions**: 46 dotted actions over 9 namespaces (`lead.*`,
//!   `invoice.*`, `user.*`, `order.*`, `document.*`, `report.*`,
//!   `api_key.*`, `payment.*`, `settings.*`), weighted: `user.login` and
//!   the `*.viewed` actions are common, `*.deleted` and `api_key.revoked`
//!   rare. `crud` on most events that have one, `category` on some.
//! - **Actors**: a population of one per 1,000 events (at least 20), used
//!   with a strong skew (the busiest 1% act in about 16% of events; slot 0
//!   alone in a few percent). About one in nine is a service
//!   (`svc-billing-worker-4`), one in 31 a system actor (`sys-scheduler`),
//!   the rest users (`user-00042`) with a name on a few events, an email
//!   or roles on fewer. A user belongs to one tenant.
//! - **Targets**: none (`user.login`), one, or two (`lead.assigned`: a lead
//!   and a user) of 6 types (`lead`, `invoice`, `user`, `order`,
//!   `document`, `account`), ids like `LEAD-000123` drawn with a mild skew
//!   from one id per 100 events per type (at least 50), so some entities
//!   have long histories.
//! - **Tenants**: 20 (`acme`, `globex`, …), skewed in size.
//! - **Source**: the namespace's service (`crm-api`, `billing-api`, …) on
//!   nearly half the events, a workflow (`lead-intake`, `checkout`,
//!   `month-end-close`, …) on half of those whose action belongs to one,
//!   and an environment, version or host on a few.
//! - **Outcome**: about 90% `success`, 8% `failure` (including the actions
//!   that always fail, `user.login_failed` and `payment.failed`), 2%
//!   `unknown`. **Severity**: mostly `info` (sent explicitly on a quarter
//!   of those), some `debug`/`notice`, and `warning`/`error`/`critical` on
//!   failures. Failures carry `error: {type, message}`.
//! - **Context**: users have an IP per day (about 15% IPv6, some written
//!   in long form that the server shortens), sent on half their events,
//!   and a session id per two hours, sent on 30%; services send an
//!   internal IPv4 or a request id on some; a few carry a user agent.
//! - **Outcome** is sent on every failure and `unknown` and on 60% of
//!   successes; the actor's `type` on services and 40% of users.
//! - **Message**: on 40% of events, from a per-action template filled with
//!   names, ids, common domain words (`customer`, `renewal`, …) and words
//!   from a 32,768-word invented vocabulary drawn Zipf-like, so full-text
//!   search meets both very common and very rare terms.
//! - **Numbers**: `duration_ms` on just over half the events, log-normal
//!   around a per-action median with a heavy tail, some with a fraction; a
//!   small `details` object on 15% (amounts, login method, file size, …);
//!   `changes` on a few updates.
//! - **Idempotency**: 10% carry an `idempotency_key`, unique within a seed
//!   (a generated trail has no retries).
//! - **Time**: `occurred_at` starts at 2026-01-01T00:00:00Z and advances by
//!   exponentially distributed gaps (mean 50 ms, so 10M events span about
//!   six days); 5% arrive late (up to 3 s before their neighbours). Half
//!   carry milliseconds, some microseconds, the rest whole seconds; 5% are
//!   written with a UTC offset rather than `Z`.
//!
//! The population sizes scale with `count`, so `events(s, 1000)` is not a
//! prefix of `events(s, 2000)`; fix them in a [`Shape`] when that matters.
//!
//! Beside the events, the benchmarks share [`Rng`] and
//! [`process_cpu_secs`].
//!
//! Not here: the server-side fields, invalid events (the event crate's own
//! tests cover those), and anything random at run time.

mod catalog;
#[cfg(feature = "postgres")]
pub mod cluster;
mod cpu;
mod knob;
#[cfg(feature = "postgres")]
pub mod pg;
mod rng;
mod stats;
mod threads;

use catalog::{Action, Ns, ACTIONS, TARGET_TYPES};
pub use cpu::process_cpu_secs;
pub use knob::knob;
pub use rng::Rng;
use rng::{mix, skewed, unit, Skew};
pub use stats::{load_average, median, spread};
pub use threads::round_robin;

/// `count` sender events (JSON text, one object each, no `id` or
/// `received_at`), deterministic for `seed`, with the default [`Shape`].
pub fn events(seed: u64, count: usize) -> Events {
    Events::new(seed, count, &Shape::default())
}

/// As [`events`], with the given shape.
pub fn events_with(seed: u64, count: usize, shape: &Shape) -> Events {
    Events::new(seed, count, shape)
}

/// The knobs of the generated trail. See the crate documentation for what
/// the defaults produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Distinct actors; `None`: one per 1,000 events, at least 20.
    pub actors: Option<usize>,
    /// Distinct ids per target type; `None`: one per 100 events, at
    /// least 50.
    pub target_ids: Option<usize>,
    /// Distinct tenants (at least 1).
    pub tenants: usize,
    /// `occurred_at` of the first event, in milliseconds since 1970.
    pub start_unix_ms: i64,
    /// Mean gap between consecutive events, in milliseconds.
    pub mean_gap_ms: f64,
    /// Share of events whose `occurred_at` lags behind their neighbours.
    pub late_share: f64,
    /// The most a late event lags, in milliseconds.
    pub max_lateness_ms: u64,
    /// Share of events with outcome `failure`, including the actions that
    /// always fail.
    pub failure_share: f64,
    /// Share of events with outcome `unknown`.
    pub unknown_share: f64,
    /// Share of IPv6 addresses among users' IPs.
    pub ipv6_share: f64,
    /// Share of events with an `idempotency_key`.
    pub idempotency_share: f64,
    /// Scales how often the optional fields appear (actor name and type,
    /// crud, category, source, context, message, duration, details,
    /// changes). 1.0 gives about 360 bytes per stored event, 2.0 about
    /// 450, 0.0 leaves only the fields every event carries (about 280).
    pub richness: f64,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            actors: None,
            target_ids: None,
            tenants: 20,
            start_unix_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            mean_gap_ms: 50.0,
            late_share: 0.05,
            max_lateness_ms: 3_000,
            failure_share: 0.08,
            unknown_share: 0.02,
            ipv6_share: 0.15,
            idempotency_share: 0.10,
            richness: 1.0,
        }
    }
}

impl Shape {
    /// The actor population for `count` events.
    pub fn actors_for(&self, count: usize) -> usize {
        self.actors.unwrap_or((count / 1000).max(20)).max(1)
    }

    /// The ids per target type for `count` events.
    pub fn target_ids_for(&self, count: usize) -> usize {
        self.target_ids.unwrap_or((count / 100).max(50)).max(1)
    }

    /// The name of tenant `index` (`acme`, `globex`, …; `acme-1` and so on
    /// beyond the first 20), as the generator writes it.
    pub fn tenant_name(index: usize) -> String {
        tenant_name(index)
    }

    /// The id of actor slot `index` (`user-00042`, `svc-crm-sync-13`,
    /// `sys-scheduler-17`), as the generator writes it; slot 0 is the
    /// busiest.
    pub fn actor_id(index: usize) -> String {
        let mut out = Vec::new();
        write_actor_id(&mut out, index);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The generated events: an iterator of JSON texts. [`Events::write_next`]
/// appends to a caller's buffer instead, without allocating.
#[derive(Debug, Clone)]
pub struct Events {
    rng: Rng,
    /// Per-seed key for the stable per-event values (idempotency keys,
    /// sessions).
    key: u64,
    index: u64,
    remaining: usize,
    clock_us: i64,
    start_us: i64,
    mean_gap_us: f64,
    max_lateness_us: u64,
    actors: usize,
    target_ids: usize,
    shape: Shape,
    cumulative: [u32; ACTIONS.len()],
    /// Outcome probabilities for the actions that do not always fail,
    /// adjusted so that the overall shares match the shape.
    p_failure: f64,
    p_unknown: f64,
}

impl Events {
    fn new(seed: u64, count: usize, shape: &Shape) -> Events {
        let mut cumulative = [0u32; ACTIONS.len()];
        let mut total = 0;
        let mut forced = 0;
        for (slot, action) in cumulative.iter_mut().zip(ACTIONS.iter()) {
            total += action.weight;
            *slot = total;
            if action.failed {
                forced += action.weight;
            }
        }
        let forced = f64::from(forced) / f64::from(total);
        let start_us = shape.start_unix_ms.saturating_mul(1000);
        Events {
            rng: Rng::new(seed),
            key: mix(seed.wrapping_add(0x2545_f491_4f6c_dd1d)),
            index: 0,
            remaining: count,
            clock_us: start_us,
            start_us,
            mean_gap_us: shape.mean_gap_ms.max(0.0) * 1000.0,
            max_lateness_us: shape.max_lateness_ms.saturating_mul(1000),
            actors: shape.actors_for(count),
            target_ids: shape.target_ids_for(count),
            shape: Shape {
                tenants: shape.tenants.max(1),
                ..shape.clone()
            },
            cumulative,
            p_failure: ((shape.failure_share - forced) / (1.0 - forced)).max(0.0),
            p_unknown: shape.unknown_share / (1.0 - forced),
        }
    }

    /// Append the next event to `out`; `false` when all have been written.
    pub fn write_next(&mut self, out: &mut Vec<u8>) -> bool {
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        self.write_event(out);
        self.index += 1;
        true
    }

    fn pick_action(&mut self) -> &'static Action {
        let total = self.cumulative[ACTIONS.len() - 1];
        let r = self.rng.below(u64::from(total)) as u32;
        let at = self.cumulative.partition_point(|&c| c <= r);
        &ACTIONS[at.min(ACTIONS.len() - 1)]
    }

    fn pick_actor(&mut self, action: &Action) -> (usize, Kind) {
        let wants_user = action.ns == Ns::User && action.targets.is_empty();
        let wants_machine = action.ns == Ns::Report && action.name != "report.scheduled";
        for _ in 0..8 {
            let slot = self.rng.skewed(self.actors, Skew::Strong);
            let kind = actor_kind(slot);
            if (wants_user && kind != Kind::User) || (wants_machine && kind == Kind::User) {
                continue;
            }
            return (slot, kind);
        }
        // Small populations may lack the kind; any actor will do.
        let slot = self.rng.skewed(self.actors, Skew::Strong);
        (slot, actor_kind(slot))
    }

    fn write_event(&mut self, out: &mut Vec<u8>) {
        let gap = -(1.0 - self.rng.unit()).ln() * self.mean_gap_us;
        self.clock_us = self.clock_us.saturating_add(gap as i64);
        let mut occurred_us = self.clock_us;
        if self.rng.chance(self.shape.late_share) && self.max_lateness_us > 0 {
            occurred_us = (occurred_us - self.rng.below(self.max_lateness_us) as i64).max(self.start_us);
        }

        let action = self.pick_action();
        let (slot, kind) = self.pick_actor(action);
        let tenant = match kind {
            Kind::User => skewed(mix(slot as u64 ^ 0x7e4a_11c3), self.shape.tenants, Skew::Mild),
            Kind::Service | Kind::System => self.rng.skewed(self.shape.tenants, Skew::Mild),
        };

        let u = self.rng.unit();
        let outcome = if action.failed || u < self.p_failure {
            Outcome::Failure
        } else if u < self.p_failure + self.p_unknown {
            Outcome::Unknown
        } else {
            Outcome::Success
        };
        let severity = self.severity(action, outcome);

        // Targets: drawn before writing because the message names them.
        let mut targets = [(0usize, 0usize); 2];
        let mut n_targets = 0;
        if let Some(&first) = action.targets.first() {
            targets[0] = (first, self.rng.skewed(self.target_ids, Skew::Mild));
            n_targets = 1;
            if let Some(&second) = action.targets.get(1) {
                if self.rng.chance(0.4) {
                    targets[1] = (second, self.rng.skewed(self.target_ids, Skew::Mild));
                    n_targets = 2;
                }
            }
        }
        let targets = &targets[..n_targets];

        out.push(b'{');
        key(out, "occurred_at");
        self.write_time(out, occurred_us);
        out.push(b',');
        key(out, "tenant");
        out.push(b'"');
        push_tenant(out, tenant);
        out.extend_from_slice(b"\",");
        field(out, "action", action.name);
        if let Some(crud) = action.crud {
            if self.optional(0.25) {
                field(out, "crud", crud);
            }
        }
        if self.optional(0.06) {
            field(out, "category", action.ns.category());
        }
        if outcome != Outcome::Success || self.rng.chance(0.6) {
            field(out, "outcome", outcome.as_str());
        }
        if severity != "info" || self.rng.chance(0.25) {
            field(out, "severity", severity);
        }

        self.write_actor(out, slot, kind);

        if !targets.is_empty() {
            key(out, "targets");
            out.push(b'[');
            for &(ty, id) in targets {
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(TARGET_TYPES[ty].name.as_bytes());
                out.extend_from_slice(b"\",\"id\":\"");
                push_target_id(out, ty, id);
                out.push(b'"');
                if ty == catalog::LEAD && self.optional(0.06) {
                    out.extend_from_slice(b",\"name\":\"");
                    push_person_name(out, id.wrapping_mul(7));
                    out.push(b'"');
                }
                out.extend_from_slice(b"},");
            }
            close(out, b']');
            out.push(b',');
        }

        self.write_source(out, action);
        self.write_context(out, slot, kind, occurred_us);

        if self.optional(0.4) {
            key(out, "message");
            out.push(b'"');
            self.write_message(out, action, slot, kind, targets);
            out.extend_from_slice(b"\",");
        }
        if !action.failed && self.rng.chance(0.55) {
            self.write_duration(out, action);
        }
        if outcome == Outcome::Failure {
            let (ty, message) = self.rng.pick(action.ns.errors());
            out.extend_from_slice(b"\"error\":{\"type\":\"");
            out.extend_from_slice(ty.as_bytes());
            out.extend_from_slice(b"\",\"message\":\"");
            out.extend_from_slice(message.as_bytes());
            out.extend_from_slice(b"\"},");
        }
        if action.crud == Some("u") && self.optional(0.06) {
            let (name, before, after) = self.rng.pick(&catalog::CHANGES);
            out.extend_from_slice(b"\"changes\":{\"fields\":[\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\"],\"before\":{\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(before.as_bytes());
            out.extend_from_slice(b"\"},\"after\":{\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(after.as_bytes());
            out.extend_from_slice(b"\"}},");
        }
        if self.optional(0.15) {
            self.write_details(out, action);
        }
        if self.rng.chance(self.shape.idempotency_share) {
            key(out, "idempotency_key");
            out.extend_from_slice(b"\"idem-");
            push_hex(out, mix(self.key ^ self.index), 16);
            out.extend_from_slice(b"\",");
        }
        close(out, b'}');
    }

    /// Whether an optional field appears: `p` scaled by the shape's
    /// richness.
    #[inline]
    fn optional(&mut self, p: f64) -> bool {
        self.rng.chance(p * self.shape.richness)
    }

    fn severity(&mut self, action: &Action, outcome: Outcome) -> &'static str {
        let u = self.rng.unit();
        match outcome {
            Outcome::Success => {
                let sensitive = action.crud == Some("d") || matches!(action.ns, Ns::ApiKey | Ns::Settings);
                if sensitive && u < 0.6 {
                    "notice"
                } else if u < 0.06 {
                    "debug"
                } else if u < 0.09 {
                    "notice"
                } else if u < 0.11 {
                    "warning"
                } else {
                    "info"
                }
            }
            Outcome::Failure => {
                if u < 0.55 {
                    "warning"
                } else if u < 0.93 {
                    "error"
                } else {
                    "critical"
                }
            }
            Outcome::Unknown => {
                if u < 0.6 {
                    "warning"
                } else {
                    "info"
                }
            }
        }
    }

    fn write_time(&mut self, out: &mut Vec<u8>, us: i64) {
        let offset_minutes = if self.rng.chance(0.05) {
            Some(self.rng.pick(&catalog::OFFSETS))
        } else {
            None
        };
        let local_us = us + offset_minutes.map_or(0, |(_, m)| m * 60_000_000);
        let secs = local_us.div_euclid(1_000_000);
        let micros = local_us.rem_euclid(1_000_000) as u64;
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u64;
        out.push(b'"');
        push_padded(out, year.max(0) as u64, 4);
        out.push(b'-');
        push_padded(out, month, 2);
        out.push(b'-');
        push_padded(out, day, 2);
        out.push(b'T');
        push_padded(out, sod / 3600, 2);
        out.push(b':');
        push_padded(out, sod / 60 % 60, 2);
        out.push(b':');
        push_padded(out, sod % 60, 2);
        let u = self.rng.unit();
        if u < 0.5 {
            out.push(b'.');
            push_padded(out, micros / 1000, 3);
        } else if u < 0.6 {
            out.push(b'.');
            push_padded(out, micros, 6);
        }
        match offset_minutes {
            Some((text, _)) => out.extend_from_slice(text.as_bytes()),
            None => out.push(b'Z'),
        }
        out.push(b'"');
    }

    fn write_actor(&mut self, out: &mut Vec<u8>, slot: usize, kind: Kind) {
        key(out, "actor");
        out.extend_from_slice(b"{\"id\":\"");
        write_actor_id(out, slot);
        out.extend_from_slice(b"\",");
        if kind != Kind::User || self.rng.chance(0.4) {
            field(out, "type", kind.as_str());
        }
        if kind == Kind::User {
            if self.optional(0.08) {
                out.extend_from_slice(b"\"name\":\"");
                push_person_name(out, slot);
                out.extend_from_slice(b"\",");
            }
            if self.optional(0.03) {
                out.extend_from_slice(b"\"email\":\"user");
                push_u64(out, slot as u64);
                out.push(b'@');
                let tenant = skewed(mix(slot as u64 ^ 0x7e4a_11c3), self.shape.tenants, Skew::Mild);
                push_tenant(out, tenant);
                out.extend_from_slice(b".example\",");
            }
            if self.optional(0.03) {
                out.extend_from_slice(b"\"roles\":[\"");
                out.extend_from_slice(catalog::ROLES[slot % catalog::ROLES.len()].as_bytes());
                out.extend_from_slice(b"\"],");
            }
            if self.rng.chance(0.002) {
                out.extend_from_slice(b"\"impersonator\":{\"id\":\"");
                write_actor_id(out, (slot + 1) * 9 % self.actors);
                out.extend_from_slice(b"\",\"type\":\"user\"},");
            }
        }
        close(out, b'}');
        out.push(b',');
    }

    fn write_source(&mut self, out: &mut Vec<u8>, action: &Action) {
        if !self.optional(0.45) {
            return;
        }
        key(out, "source");
        out.push(b'{');
        field(out, "service", action.ns.service());
        if let Some(workflow) = action.workflow {
            if self.optional(0.5) {
                field(out, "workflow", workflow);
            }
        }
        if self.optional(0.06) {
            field(out, "environment", self.rng.pick(&catalog::ENVIRONMENTS));
        }
        if self.optional(0.03) {
            out.extend_from_slice(b"\"version\":\"2.");
            push_u64(out, self.rng.below(20));
            out.push(b'.');
            push_u64(out, self.rng.below(10));
            out.extend_from_slice(b"\",");
        }
        if self.optional(0.02) {
            out.extend_from_slice(b"\"host\":\"");
            out.extend_from_slice(action.ns.service().as_bytes());
            out.push(b'-');
            push_u64(out, self.rng.below(6));
            out.extend_from_slice(b".internal\",");
        }
        close(out, b'}');
        out.push(b',');
    }

    fn write_context(&mut self, out: &mut Vec<u8>, slot: usize, kind: Kind, occurred_us: i64) {
        let user = kind == Kind::User;
        let ip = self.optional(if user { 0.5 } else { 0.2 });
        let session = user && self.optional(0.3);
        let request = self.optional(if user { 0.03 } else { 0.1 });
        let agent = user && self.optional(0.005);
        if !(ip || session || request || agent) {
            return;
        }
        key(out, "context");
        out.push(b'{');
        let actor_key = mix(slot as u64 ^ 0x1d8e_4e27_c47d_124f);
        if ip {
            key(out, "ip");
            out.push(b'"');
            if user {
                let day = occurred_us.div_euclid(86_400_000_000) as u64;
                let h = mix(actor_key ^ day.wrapping_mul(0x9e37_79b9));
                self.write_user_ip(out, h);
            } else {
                let h = self.rng.next_u64();
                out.extend_from_slice(b"10.0.");
                push_u64(out, (h >> 8) % 16);
                out.push(b'.');
                push_u64(out, 1 + (h >> 16) % 254);
            }
            out.extend_from_slice(b"\",");
        }
        if session {
            let bucket = occurred_us.div_euclid(7_200_000_000) as u64;
            out.extend_from_slice(b"\"session_id\":\"s-");
            push_hex(
                out,
                mix(actor_key ^ self.key ^ bucket.wrapping_mul(0xff51_afd7_ed55_8ccd)),
                12,
            );
            out.extend_from_slice(b"\",");
        }
        if request {
            out.extend_from_slice(b"\"request_id\":\"req-");
            push_hex(out, self.rng.next_u64(), 10);
            out.extend_from_slice(b"\",");
        }
        if agent {
            field(out, "user_agent", self.rng.pick(&catalog::USER_AGENTS));
        }
        close(out, b'}');
        out.push(b',');
    }

    fn write_user_ip(&self, out: &mut Vec<u8>, h: u64) {
        if unit(mix(h)) < self.shape.ipv6_share {
            // Some senders write IPv6 in long form; the server stores the
            // RFC 5952 form.
            let long = h & 0xf == 0;
            let groups = [
                0x2a02,
                (h >> 4) & 0xffff,
                (h >> 20) & 0xffff,
                (h >> 36) & 0xff,
                0,
                0,
                0,
                (h >> 44) & 0xfff,
            ];
            if long {
                for (i, g) in groups.iter().enumerate() {
                    if i > 0 {
                        out.push(b':');
                    }
                    push_hex(out, *g, 4);
                }
            } else {
                for g in &groups[..4] {
                    push_hex_short(out, *g);
                    out.push(b':');
                }
                out.push(b':');
                push_hex_short(out, groups[7]);
            }
        } else if (h >> 8) % 10 < 3 {
            out.extend_from_slice(b"10.");
            push_u64(out, (h >> 12) % 64);
            out.push(b'.');
            push_u64(out, (h >> 20) % 256);
            out.push(b'.');
            push_u64(out, 1 + (h >> 28) % 254);
        } else {
            const FIRST: [u64; 16] = [31, 45, 62, 81, 89, 91, 93, 104, 145, 178, 185, 188, 203, 212, 213, 217];
            push_u64(out, FIRST[((h >> 12) % 16) as usize]);
            out.push(b'.');
            push_u64(out, (h >> 20) % 256);
            out.push(b'.');
            push_u64(out, (h >> 28) % 256);
            out.push(b'.');
            push_u64(out, 1 + (h >> 36) % 254);
        }
    }

    fn write_message(
        &mut self,
        out: &mut Vec<u8>,
        action: &Action,
        slot: usize,
        kind: Kind,
        targets: &[(usize, usize)],
    ) {
        let template = action.message.as_bytes();
        let mut i = 0;
        while i < template.len() {
            let b = template[i];
            if b == b'{' && i + 2 < template.len() && template[i + 2] == b'}' {
                match template[i + 1] {
                    b'a' => {
                        if kind == Kind::User {
                            push_person_name(out, slot);
                        } else {
                            write_actor_id(out, slot);
                        }
                    }
                    b't' => match targets.first() {
                        Some(&(ty, id)) => push_target_id(out, ty, id),
                        None => out.extend_from_slice(b"unknown"),
                    },
                    b's' => match targets.get(1) {
                        Some(&(ty, id)) => push_target_id(out, ty, id),
                        None => out.extend_from_slice(self.rng.pick(&catalog::COMMON_WORDS).as_bytes()),
                    },
                    b'w' => self.push_word(out),
                    b'c' => out.extend_from_slice(self.rng.pick(&catalog::COMMON_WORDS).as_bytes()),
                    _ => push_u64(out, 1 + self.rng.below(12)),
                }
                i += 3;
            } else {
                out.push(b);
                i += 1;
            }
        }
        if self.optional(0.06) {
            out.extend_from_slice(b"; note: ");
            self.push_word(out);
            out.push(b' ');
            out.extend_from_slice(self.rng.pick(&catalog::COMMON_WORDS).as_bytes());
        }
    }

    fn push_word(&mut self, out: &mut Vec<u8>) {
        let n = catalog::SYLLABLES.len();
        let k = self.rng.skewed(n * n * n, Skew::Zipf);
        for part in [k % n, k / n % n, k / (n * n)] {
            out.extend_from_slice(catalog::SYLLABLES[part].as_bytes());
        }
    }

    fn write_duration(&mut self, out: &mut Vec<u8>, action: &Action) {
        let mut ms = action.median_ms * (0.8 * self.rng.gauss()).exp();
        if self.rng.chance(0.015) {
            ms *= 5.0 + 45.0 * self.rng.unit();
        }
        key(out, "duration_ms");
        if self.rng.chance(0.3) {
            let thousandths = (ms * 1000.0).round() as u64;
            push_u64(out, thousandths / 1000);
            out.push(b'.');
            push_padded(out, thousandths % 1000, 3);
        } else {
            push_u64(out, ms.round() as u64);
        }
        out.push(b',');
    }

    fn write_details(&mut self, out: &mut Vec<u8>, action: &Action) {
        key(out, "details");
        out.push(b'{');
        match action.ns {
            Ns::Invoice | Ns::Payment | Ns::Order => {
                key(out, "amount_cents");
                let cents = (2000.0 * (1.2 * self.rng.gauss()).exp()) as u64 * 100;
                push_u64(out, cents);
                out.push(b',');
                field(out, "currency", self.rng.pick(&catalog::CURRENCIES));
            }
            Ns::Lead => {
                field(out, "source", self.rng.pick(&catalog::LEAD_SOURCES));
                if self.rng.chance(0.3) {
                    key(out, "score");
                    push_u64(out, self.rng.below(101));
                    out.push(b',');
                }
            }
            Ns::User | Ns::ApiKey => {
                field(out, "method", self.rng.pick(&catalog::LOGIN_METHODS));
                if self.rng.chance(0.2) {
                    out.extend_from_slice(b"\"new_device\":true,");
                }
            }
            Ns::Document | Ns::Report => {
                key(out, "size_bytes");
                push_u64(out, (50_000.0 * (1.5 * self.rng.gauss()).exp()) as u64);
                out.push(b',');
                field(out, "format", self.rng.pick(&catalog::FORMATS));
            }
            Ns::Settings => {
                field(
                    out,
                    "setting",
                    self.rng.pick(&["sso.enforced", "retention.days", "mfa.required"]),
                );
                if self.rng.chance(0.5) {
                    out.extend_from_slice(b"\"previous\":null,");
                }
            }
        }
        close(out, b'}');
        out.push(b',');
    }
}

impl Iterator for Events {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(384);
        self.write_next(&mut out).then_some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Events {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Service,
    System,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Service => "service",
            Kind::System => "system",
        }
    }
}

fn actor_kind(slot: usize) -> Kind {
    if slot % 9 == 4 {
        Kind::Service
    } else if slot % 31 == 17 {
        Kind::System
    } else {
        Kind::User
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Unknown,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

fn write_actor_id(out: &mut Vec<u8>, slot: usize) {
    match actor_kind(slot) {
        Kind::User => {
            out.extend_from_slice(b"user-");
            push_padded(out, slot as u64, 5);
        }
        Kind::Service => {
            out.extend_from_slice(b"svc-");
            out.extend_from_slice(catalog::SERVICE_ACTORS[slot / 9 % catalog::SERVICE_ACTORS.len()].as_bytes());
            out.push(b'-');
            push_u64(out, slot as u64);
        }
        Kind::System => {
            out.extend_from_slice(b"sys-");
            out.extend_from_slice(catalog::SYSTEM_ACTORS[slot / 31 % catalog::SYSTEM_ACTORS.len()].as_bytes());
            out.push(b'-');
            push_u64(out, slot as u64);
        }
    }
}

fn push_person_name(out: &mut Vec<u8>, n: usize) {
    let n = mix(n as u64 ^ 0x51_7cc1_b727_220a) as usize;
    let first = catalog::FIRST_NAMES.len();
    out.extend_from_slice(catalog::FIRST_NAMES[n % first].as_bytes());
    out.push(b' ');
    out.extend_from_slice(catalog::LAST_NAMES[n / first % catalog::LAST_NAMES.len()].as_bytes());
}

fn push_target_id(out: &mut Vec<u8>, ty: usize, id: usize) {
    out.extend_from_slice(TARGET_TYPES[ty].prefix.as_bytes());
    out.push(b'-');
    push_padded(out, id as u64, 6);
}

fn tenant_name(index: usize) -> String {
    let mut out = Vec::new();
    push_tenant(&mut out, index);
    String::from_utf8_lossy(&out).into_owned()
}

fn push_tenant(out: &mut Vec<u8>, index: usize) {
    out.extend_from_slice(catalog::TENANTS[index % catalog::TENANTS.len()].as_bytes());
    if index >= catalog::TENANTS.len() {
        out.push(b'-');
        push_u64(out, (index / catalog::TENANTS.len()) as u64);
    }
}

/// `"name":` — every value written after it ends with a comma, which
/// [`close`] removes before the closing bracket.
#[inline]
fn key(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `"name":"value",`; every generated string is plain text that needs no
/// JSON escape.
#[inline]
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    debug_assert!(!value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
    key(out, name);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\",");
}

#[inline]
fn close(out: &mut Vec<u8>, bracket: u8) {
    if out.last() == Some(&b',') {
        out.pop();
    }
    out.push(bracket);
}

#[inline]
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `n` in decimal with at least `width` digits.
#[inline]
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - width.min(digits.len()));
    out.extend_from_slice(&digits[start..]);
}

/// The low `nibbles` hex digits of `n`, zero-padded, lower case.
#[inline]
fn push_hex(out: &mut Vec<u8>, n: u64, nibbles: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..nibbles).rev() {
        out.push(HEX[((n >> (4 * i)) & 0xf) as usize]);
    }
}

/// `n` in hex without leading zeros.
fn push_hex_short(out: &mut Vec<u8>, n: u64) {
    let nibbles = (64 - n.leading_zeros()).div_ceil(4).max(1);
    push_hex(out, n, nibbles);
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (20_454, (2026, 1, 1)),
            (19_782, (2024, 2, 29)),
            (-1, (1969, 12, 31)),
        ] {
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    #[test]
    fn number_writers() {
        let mut out = Vec::new();
        push_padded(&mut out, 42, 5);
        out.push(b' ');
        push_padded(&mut out, 1_234_567, 5);
        out.push(b' ');
        push_u64(&mut out, 0);
        out.push(b' ');
        push_hex_short(&mut out, 0x2a02);
        out.push(b' ');
        push_hex(&mut out, 0xab, 4);
        assert_eq!(String::from_utf8_lossy(&out), "00042 1234567 0 2a02 00ab");
    }
}
