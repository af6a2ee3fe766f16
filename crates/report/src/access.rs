//! The `access-review` report: every user and API key of `meta.db` with
//! role or scope, tenant, creation, last sign-in and last use, and the
//! rights not used in the last [`ACCESS_WINDOW_DAYS`] days, judged from
//! what the system log recorded each of them doing and, for keys, from
//! the last use the server records in `meta.db` (ingest included, which
//! the system log does not record).

use std::collections::HashMap;

use sealtrail_event::Timestamp;
use sealtrail_meta::{Meta, Role, Scope};
use sealtrail_trail::{Filter, Page, TimeRange, TrailReader};

use crate::compliance::CLASSES;
use crate::gather::{self, count_globs, trail_err};
use crate::model::{AccessReview, Body, Finding, KeyAccess, Report, UserAccess};
use crate::{ReportError, Request, Sources, ACCESS_WINDOW_DAYS};

/// System-log actions that read the trail.
const TRAIL_READS: &[&str] = &["trail.*"];

pub(crate) fn generate(sources: &Sources, meta: &Meta, request: &Request) -> Result<Report, ReportError> {
    let log = sources.log.as_str();
    let checkpoint = gather::checkpoint(log, &sources.trail)?;
    let until = request.until.unwrap_or(request.now);
    let window_start = Timestamp::from_second(until.as_second() - (ACCESS_WINDOW_DAYS as i64) * 86_400).ok();
    let window = TimeRange {
        since: window_start,
        until: Some(until),
    };
    let admin_globs = CLASSES
        .iter()
        .find(|c| c.id == "admin_actions")
        .map(|c| c.system)
        .unwrap_or(&[]);
    let system = sources.system();

    let users = meta.list_users()?;
    let keys = meta.list_keys()?;
    let names: HashMap<&str, &str> = users
        .iter()
        .map(|u| (u.user.id.as_str(), u.user.name.as_str()))
        .collect();
    let mut active_keys: HashMap<&str, u64> = HashMap::new();
    for k in keys.iter().filter(|k| k.revoked_at.is_none()) {
        if let Some(owner) = &k.owner {
            *active_keys.entry(owner.as_str()).or_default() += 1;
        }
    }

    let mut findings = Vec::new();
    let mut user_rows = Vec::new();
    for u in &users {
        let actor = format!("user:{}", u.user.id);
        let activity = Activity::of(system, &actor, window, until, admin_globs)?;
        let role = u.user.role;
        let mut unused = Vec::new();
        if !u.user.disabled {
            if role == Role::Admin && activity.admin == 0 {
                unused.push(format!(
                    "admin role: no administrative action in {ACCESS_WINDOW_DAYS} days"
                ));
            }
            if role == Role::Auditor && activity.reads == 0 {
                unused.push(format!(
                    "auditor role: no read of the trail in {ACCESS_WINDOW_DAYS} days"
                ));
            }
            let signed_in = u
                .last_sign_in
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| window_start.is_none_or(|s| t >= s));
            if !signed_in && activity.any == 0 && role != Role::Ingest {
                unused.push(format!(
                    "no sign-in and no recorded activity in {ACCESS_WINDOW_DAYS} days"
                ));
            }
        }
        let held = active_keys.get(u.user.id.as_str()).copied().unwrap_or(0);
        if u.user.disabled && held > 0 {
            unused.push(format!("disabled, still owns {held} active API key(s)"));
        }
        for f in &unused {
            findings.push(Finding {
                subject: "user",
                id: u.user.id.clone(),
                name: u.user.name.clone(),
                finding: f.clone(),
            });
        }
        user_rows.push(UserAccess {
            id: u.user.id.clone(),
            name: u.user.name.clone(),
            role: role.as_str().to_string(),
            tenant: u.user.tenant.clone(),
            disabled: u.user.disabled,
            created_at: u.user.created_at.clone(),
            last_sign_in: u.last_sign_in.clone(),
            last_activity: activity.last,
            admin_actions: activity.admin,
            trail_reads: activity.reads,
            active_keys: held,
            unused_rights: unused,
        });
    }

    let disabled: HashMap<&str, bool> = users.iter().map(|u| (u.user.id.as_str(), u.user.disabled)).collect();
    let recorded = meta.key_last_use()?;
    let mut key_rows = Vec::new();
    for k in &keys {
        let actor = format!("key:{}", k.id);
        let activity = Activity::of(system, &actor, window, until, admin_globs)?;
        // The server's record of the key's last use (ingest included),
        // unless it is after the window: then the use before is unknown.
        let used = recorded
            .get(&k.id)
            .and_then(|&s| Timestamp::from_second(s).ok())
            .filter(|t| *t < until);
        let logged = activity.last.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        let last_used = logged.max(used);
        let used_in_window = last_used.is_some_and(|t| window_start.is_none_or(|s| t >= s));
        let mut unused = Vec::new();
        if k.revoked_at.is_none() {
            let owner_disabled = k
                .owner
                .as_deref()
                .is_some_and(|o| disabled.get(o).copied().unwrap_or(false));
            if owner_disabled {
                unused.push("active key of a disabled user".to_string());
            }
            if k.scope == Scope::Admin && activity.admin == 0 {
                unused.push(format!(
                    "admin scope: no administrative action in {ACCESS_WINDOW_DAYS} days"
                ));
            }
            if matches!(k.scope, Scope::Read | Scope::Analyst) && activity.any == 0 && !used_in_window {
                unused.push(format!(
                    "{} scope: not used in {ACCESS_WINDOW_DAYS} days",
                    k.scope.as_str()
                ));
            }
        }
        for f in &unused {
            findings.push(Finding {
                subject: "api_key",
                id: k.id.clone(),
                name: k.name.clone(),
                finding: f.clone(),
            });
        }
        key_rows.push(KeyAccess {
            id: k.id.clone(),
            name: k.name.clone(),
            scope: k.scope.as_str().to_string(),
            tenant: k.tenant.clone(),
            owner: k
                .owner
                .as_deref()
                .map(|o| names.get(o).map_or_else(|| o.to_string(), |n| n.to_string())),
            created_at: k.created_at.clone(),
            revoked_at: k.revoked_at.clone(),
            last_used: last_used.map(|t| t.to_string()),
            unused_rights: unused,
        });
    }
    let empty = user_rows.is_empty() && key_rows.is_empty();
    let review = AccessReview {
        window_days: ACCESS_WINDOW_DAYS,
        users: user_rows,
        keys: key_rows,
        findings,
    };
    Ok(Report {
        report: "access-review",
        title: "Access review: users and API keys".to_string(),
        log: log.to_string(),
        generated_at: request.now.to_string(),
        period: crate::model::Period {
            since: window_start.map(|t| t.to_string()),
            until: Some(until.to_string()),
        },
        checkpoint,
        empty,
        body: Body::AccessReview(Box::new(review)),
    })
}

/// What one actor did, as the system log recorded it.
struct Activity {
    /// Newest event before the window's end.
    last: Option<String>,
    /// Events in the window: any, admin-class, trail reads.
    any: u64,
    admin: u64,
    reads: u64,
}

impl Activity {
    fn of(
        system: Option<(&str, &TrailReader)>,
        actor: &str,
        window: TimeRange,
        until: Timestamp,
        admin: &[&str],
    ) -> Result<Activity, ReportError> {
        let Some((name, trail)) = system else {
            return Ok(Activity {
                last: None,
                any: 0,
                admin: 0,
                reads: 0,
            });
        };
        let err = trail_err(name);
        let by_actor = Filter {
            actor: Some(actor.to_string()),
            occurred: TimeRange {
                since: None,
                until: Some(until),
            },
            ..Filter::default()
        };
        let last = trail
            .query(&by_actor, &Page::newest(1))
            .map_err(&err)?
            .first()
            .map(|f| f.event.occurred_at.to_string());
        let in_window = Filter {
            occurred: window,
            ..by_actor
        };
        Ok(Activity {
            last,
            any: trail.count(&in_window).map_err(&err)?,
            admin: count_globs(name, trail, &in_window, admin)?,
            reads: count_globs(name, trail, &in_window, TRAIL_READS)?,
        })
    }
}
