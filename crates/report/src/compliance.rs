//! The `compliance` report: the PCI DSS v4.0 10.2.1 event classes with
//! counts and samples, the 10.3 protection checks and the gaps (hours
//! without events, sources gone silent).
//!
//! Each class is a list of action globs, one list for Sealtrail's own
//! system log and one for the applications' logs (docs/reports.md,
//! "PCI DSS mapping"); the globs of one list never overlap, so their
//! counts add up. Every glob of every class is tallied in one pass per
//! log ([`TrailReader::tally_globs`]), with the figures a query per glob
//! would give; the hourly counts of the gaps give the total.

use std::collections::HashMap;

use sealtrail_event::Timestamp;
use sealtrail_meta::SYSTEM_LOG;
use sealtrail_trail::{Bucket, Facet, Filter, GlobTally, Stats, TimeRange, TrailReader};

use crate::gather::{self, at_second, hour_floor, in_period, trail_err};
use crate::model::{Body, Compliance, Count, EventClass, Flatline, Gaps, LogActions, Report, Sample};
use crate::{ReportError, Request, Sources, SAMPLES, TOP, TOP_GAPS};

/// One PCI DSS 10.2.1 event class and the actions that make it up.
pub struct ClassDef {
    pub id: &'static str,
    pub requirement: &'static str,
    pub title: &'static str,
    /// Actions of Sealtrail's system log.
    pub system: &'static [&'static str],
    /// Actions applications commonly send (and the generated test data
    /// uses).
    pub application: &'static [&'static str],
}

/// The classes, in requirement order.
pub const CLASSES: &[ClassDef] = &[
    ClassDef {
        id: "admin_actions",
        requirement: "10.2.1.2",
        title: "Actions by administrators",
        system: &[
            "user.created",
            "user.disabled",
            "user.enabled",
            "user.role_changed",
            "user.password_reset",
            "user.totp_reset",
            "user.totp_required",
            "session.revoked",
            "api_key.*",
            "alert_rule.*",
            "alert_channel.*",
            "silence.*",
            "log.created",
            "notification.retried",
        ],
        application: &[
            "admin.*",
            "settings.updated",
            "user.created",
            "user.deleted",
            "user.invited",
            "user.role_granted",
            "user.role_revoked",
        ],
    },
    ClassDef {
        id: "audit_log_access",
        requirement: "10.2.1.3",
        title: "Access to audit logs",
        system: &["trail.*", "log.verified"],
        application: &["audit_log.*"],
    },
    ClassDef {
        id: "authentication_failures",
        requirement: "10.2.1.4",
        title: "Invalid logical access attempts (failed authentications)",
        system: &["user.sign_in_failed", "user.locked"],
        application: &["*.login_failed", "auth.failed", "user.locked"],
    },
    ClassDef {
        id: "authentication_successes",
        requirement: "10.2.1.5",
        title: "Use of authentication mechanisms (successful sign-ins)",
        system: &["user.signed_in", "user.signed_out"],
        application: &["user.login", "user.logout", "auth.succeeded"],
    },
    ClassDef {
        id: "credential_changes",
        requirement: "10.2.1.5",
        title: "Changes to identification and authentication credentials",
        system: &[
            "user.created",
            "user.role_changed",
            "user.password_changed",
            "user.password_reset",
            "user.totp_*",
            "api_key.created",
            "api_key.revoked",
        ],
        application: &[
            "user.created",
            "user.role_granted",
            "user.role_revoked",
            "user.password_changed",
            "user.password_reset",
            "user.mfa_*",
            "api_key.created",
            "api_key.revoked",
        ],
    },
    ClassDef {
        id: "logging_changes",
        requirement: "10.2.1.6",
        title: "Initialization, stopping or pausing of audit logs, and changes to their settings",
        system: &[
            "log.created",
            "alert_rule.*",
            "alert_channel.*",
            "silence.*",
            "system.outbox_refused",
        ],
        application: &["audit_log.started", "audit_log.stopped", "logging.*"],
    },
];

/// The globs of `class` for the log named `log`.
pub fn globs_for(class: &ClassDef, log: &str) -> &'static [&'static str] {
    if log == SYSTEM_LOG {
        class.system
    } else {
        class.application
    }
}

pub(crate) fn generate(sources: &Sources, request: &Request) -> Result<Report, ReportError> {
    let log = sources.log.as_str();
    let trail = &sources.trail;
    let checkpoint = gather::checkpoint(log, trail)?;
    let filter = in_period(request);
    // The hourly counts the gaps need hold the period's total as well.
    let hourly = trail.stats(&filter, Bucket::Hour).map_err(trail_err(log))?;
    let total = hourly.total;

    let mut logs: Vec<(&str, &TrailReader)> = vec![(log, trail)];
    if let Some(system) = sources.system() {
        if system.0 != log {
            logs.push(system);
        }
    }
    let mut tallies = logs
        .iter()
        .map(|&(name, trail)| LogTally::of(name, trail, &filter))
        .collect::<Result<Vec<_>, _>>()?;
    let mut classes = Vec::new();
    for class in CLASSES {
        classes.push(event_class(class, &mut tallies)?);
    }
    let until = request.until.unwrap_or(request.now);
    let protection = gather::verification(sources, until, &checkpoint)?;
    let gaps = gaps(sources, request, until, &hourly)?;
    let compliance = Compliance {
        total,
        classes,
        protection,
        gaps,
    };
    Ok(Report {
        report: "compliance",
        title: format!("PCI DSS 10 compliance evidence for log {log}"),
        log: log.to_string(),
        generated_at: request.now.to_string(),
        period: gather::period(request),
        checkpoint,
        empty: total == 0 && compliance.classes.iter().all(|c| c.count == 0),
        body: Body::Compliance(Box::new(compliance)),
    })
}

/// Every glob of every class for one log, tallied in one pass over the
/// period's events, and the samples read back so far.
struct LogTally<'a> {
    name: &'a str,
    trail: &'a TrailReader,
    globs: Vec<&'static str>,
    tallies: Vec<GlobTally>,
    /// Samples by ledger index: classes sharing a glob read it once.
    read: HashMap<u64, Sample>,
}

impl<'a> LogTally<'a> {
    fn of(name: &'a str, trail: &'a TrailReader, filter: &Filter) -> Result<LogTally<'a>, ReportError> {
        let mut globs: Vec<&'static str> = Vec::new();
        for class in CLASSES {
            for &glob in globs_for(class, name) {
                if !globs.contains(&glob) {
                    globs.push(glob);
                }
            }
        }
        let tallies = trail.tally_globs(filter, &globs, SAMPLES).map_err(trail_err(name))?;
        Ok(LogTally {
            name,
            trail,
            globs,
            tallies,
            read: HashMap::new(),
        })
    }

    fn tally(&self, glob: &str) -> Option<&GlobTally> {
        let at = self.globs.iter().position(|g| *g == glob)?;
        self.tallies.get(at)
    }

    /// The newest events of `glob`, as samples.
    fn samples(&mut self, glob: &str) -> Result<Vec<Sample>, ReportError> {
        let newest = self.tally(glob).map(|t| t.newest.clone()).unwrap_or_default();
        let mut out = Vec::with_capacity(newest.len());
        for index in newest {
            if let Some(s) = self.read.get(&index) {
                out.push(s.clone());
                continue;
            }
            let found = self.trail.read(index).map_err(trail_err(self.name))?;
            let s = gather::sample(self.name, &found);
            self.read.insert(index, s.clone());
            out.push(s);
        }
        Ok(out)
    }
}

fn event_class(class: &'static ClassDef, logs: &mut [LogTally<'_>]) -> Result<EventClass, ReportError> {
    let mut actions = Vec::new();
    let mut by_action: HashMap<String, u64> = HashMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    let (mut count, mut failures) = (0, 0);
    for log in logs.iter_mut() {
        let globs = globs_for(class, log.name);
        let mut in_log = 0;
        for glob in globs {
            let Some(tally) = log.tally(glob) else { continue };
            failures += tally.failures;
            if tally.total == 0 {
                continue;
            }
            in_log += tally.total;
            for (action, n) in &tally.by_action {
                *by_action.entry(action.clone()).or_default() += n;
            }
            samples.extend(log.samples(glob)?);
        }
        count += in_log;
        actions.push(LogActions {
            log: log.name.to_string(),
            actions: globs.to_vec(),
            count: in_log,
        });
    }
    Ok(class_figures(class, actions, count, failures, by_action, samples))
}

/// The class's figures from its counts and the samples of each glob.
fn class_figures(
    class: &'static ClassDef,
    actions: Vec<LogActions>,
    count: u64,
    failures: u64,
    by_action: HashMap<String, u64>,
    mut samples: Vec<Sample>,
) -> EventClass {
    samples.sort_by(|a, b| b.occurred_at.cmp(&a.occurred_at).then_with(|| b.index.cmp(&a.index)));
    samples.truncate(SAMPLES);
    let mut by_action: Vec<(String, u64)> = by_action.into_iter().collect();
    by_action.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    EventClass {
        id: class.id,
        requirement: class.requirement,
        title: class.title,
        actions,
        count,
        failures,
        by_action: gather::counts(by_action, TOP),
        samples,
    }
}

/// Empty hours of the period (from its start, or the first event, to its
/// end, or `now`) and services silent in it that sent events in the
/// equally long window before.
fn gaps(sources: &Sources, request: &Request, until: Timestamp, stats: &Stats) -> Result<Gaps, ReportError> {
    let log = sources.log.as_str();
    let trail = &sources.trail;
    let err = trail_err(log);
    let filter = in_period(request);
    let start = match request.since {
        Some(s) => Some(hour_floor(s)),
        None => stats.by_time.first().map(|(t, _)| t.as_second()),
    };
    let mut runs: Vec<Flatline> = Vec::new();
    let mut empty_hours = 0;
    if let Some(start) = start {
        // The last hour is the one holding the instant just before `until`.
        let end = (until.as_second() - 1).div_euclid(3600) * 3600 + 3600;
        let mut next = start;
        for (t, _) in &stats.by_time {
            let hour = t.as_second();
            if hour < start || hour >= end {
                continue;
            }
            if hour > next {
                runs.push(flatline(next, hour));
            }
            next = hour + 3600;
        }
        if end > next {
            runs.push(flatline(next, end));
        }
        empty_hours = runs.iter().map(|r| r.hours).sum();
    }
    runs.sort_by(|a, b| b.hours.cmp(&a.hours).then_with(|| a.start.cmp(&b.start)));
    runs.truncate(TOP_GAPS);

    let mut missing_sources = Vec::new();
    if let Some(since) = request.since {
        let length = until.as_second() - since.as_second();
        if let Ok(before) = Timestamp::from_second(since.as_second() - length) {
            let previous = Filter {
                occurred: TimeRange {
                    since: Some(before),
                    until: Some(since),
                },
                ..Filter::default()
            };
            let now = trail.facet(&filter, Facet::Service).map_err(&err)?;
            let present: std::collections::HashSet<String> = now.into_iter().map(|(s, _)| s).collect();
            for (service, n) in trail.facet(&previous, Facet::Service).map_err(&err)? {
                if !present.contains(&service) {
                    missing_sources.push(Count {
                        value: service,
                        count: n,
                    });
                }
            }
        }
    }
    Ok(Gaps {
        empty_hours,
        flatlines: runs,
        missing_sources,
    })
}

fn flatline(start: i64, end: i64) -> Flatline {
    Flatline {
        start: at_second(start),
        end: at_second(end),
        hours: ((end - start) / 3600) as u64,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sealtrail_event::Outcome;
    use sealtrail_ledger::DataDir;
    use sealtrail_trail::{Trail, TrailOptions};
    use serde_json::json;

    use super::*;
    use crate::gather::{count_globs, newest};

    /// A class as one query per glob computes it: a `stats`, a page of the
    /// newest events and a count of failures for each glob of each log.
    fn per_glob(class: &'static ClassDef, logs: &[(&str, &TrailReader)], filter: &Filter) -> EventClass {
        let mut actions = Vec::new();
        let mut by_action: HashMap<String, u64> = HashMap::new();
        let mut samples: Vec<Sample> = Vec::new();
        let (mut count, mut failures) = (0, 0);
        for &(name, trail) in logs {
            let globs = globs_for(class, name);
            let mut in_log = 0;
            for glob in globs {
                let f = Filter {
                    action: Some((*glob).to_string()),
                    ..filter.clone()
                };
                let stats = trail.stats(&f, Bucket::Day).unwrap();
                if stats.total == 0 {
                    continue;
                }
                in_log += stats.total;
                for (action, n) in stats.by_action {
                    *by_action.entry(action).or_default() += n;
                }
                samples.extend(newest(name, trail, &f, SAMPLES).unwrap());
            }
            let failed = Filter {
                outcome: Some(Outcome::Failure),
                ..filter.clone()
            };
            failures += count_globs(name, trail, &failed, globs).unwrap();
            count += in_log;
            actions.push(LogActions {
                log: name.to_string(),
                actions: globs.to_vec(),
                count: in_log,
            });
        }
        class_figures(class, actions, count, failures, by_action, samples)
    }

    /// Actions each glob of every class matches (a glob's `*` filled in
    /// two ways), and actions no class holds.
    fn actions() -> Vec<String> {
        let mut out: Vec<String> = ["lead.viewed", "invoice.paid", "user.viewed", "trailer.parked"]
            .map(String::from)
            .to_vec();
        for class in CLASSES {
            for glob in class.system.iter().chain(class.application) {
                for fill in ["alpha", "beta.gamma"] {
                    let action = glob.replace('*', fill);
                    if !out.contains(&action) {
                        out.push(action);
                    }
                }
            }
        }
        out
    }

    /// Random events (action, outcome, time) in `log`, out of time order.
    fn fill(dd: &DataDir, log: &str, n: usize, seed: u64) {
        let actions = actions();
        let mut x = seed;
        let mut next = move |bound: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % bound
        };
        let start: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let texts: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let action = &actions[next(actions.len() as u64) as usize];
                let at = Timestamp::from_second(start.as_second() + next(3 * 86_400) as i64).unwrap();
                let mut e = json!({
                    "action": action,
                    "occurred_at": at.to_string(),
                    "actor": {"type": "user", "id": format!("u{}", next(7))},
                });
                match next(4) {
                    0 => e["outcome"] = json!("failure"),
                    1 => {}
                    _ => e["outcome"] = json!("success"),
                }
                serde_json::to_vec(&e).unwrap()
            })
            .collect();
        let trail = Trail::open(dd, log, TrailOptions::default()).unwrap();
        // Several batches, so the index holds several segments.
        for chunk in texts.chunks(700) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            trail.ingest(&refs, true).unwrap();
            trail.sync_index().unwrap();
        }
    }

    #[test]
    fn one_pass_over_the_period_gives_the_figures_of_a_query_per_glob() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::new(dir.path());
        for (log, seed) in [("default", 11), (SYSTEM_LOG, 29)] {
            dd.create_log(log, None).unwrap();
            fill(&dd, log, 3_000, seed);
        }
        let app = TrailReader::open(&dd, "default").unwrap();
        let system = TrailReader::open(&dd, SYSTEM_LOG).unwrap();
        let logs: Vec<(&str, &TrailReader)> = vec![("default", &app), (SYSTEM_LOG, &system)];
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let periods = [
            (None, None),
            (at("2026-03-01T13:20:00Z"), at("2026-03-02T19:00:00Z")),
            (at("2026-03-02T05:00:00Z"), None),
            // Before every event: nothing.
            (at("2026-02-01T00:00:00Z"), at("2026-02-02T00:00:00Z")),
        ];
        let mut checked = 0;
        for (since, until) in periods {
            let filter = Filter {
                occurred: TimeRange { since, until },
                ..Filter::default()
            };
            let mut tallies: Vec<LogTally<'_>> = logs
                .iter()
                .map(|&(name, trail)| LogTally::of(name, trail, &filter).unwrap())
                .collect();
            for class in CLASSES {
                let expected = per_glob(class, &logs, &filter);
                let got = event_class(class, &mut tallies).unwrap();
                assert_eq!(
                    serde_json::to_value(&got).unwrap(),
                    serde_json::to_value(&expected).unwrap(),
                    "class {} over {since:?}..{until:?}",
                    class.id
                );
                checked += expected.count;
            }
        }
        // The comparison saw events, failures and samples.
        assert!(checked > 1_000, "{checked}");
    }
}
