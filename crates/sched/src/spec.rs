//! A job's definition, as JSON or TOML (docs/scheduler.md): the common
//! fields every job has, and the fields of its type, checked by the type.
//! Every refusal names the field.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::kind::{Params, Registry};
use crate::schedule::Schedule;

/// Most characters of a job's name.
pub const MAX_NAME_CHARS: usize = 100;
/// Bounds of the numeric fields.
pub const MAX_RETRIES: u64 = 10;
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 86_400;
pub const MAX_BACKOFF_SECONDS: u64 = 86_400;
/// Most bytes of a job's definition.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;

/// What happens to occurrences missed while no scheduler ran (or while
/// the job's previous run went on past them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Misfire {
    /// Forget them; run at the next occurrence.
    #[serde(rename = "skip")]
    Skip,
    /// Run once as soon as possible, however many were missed.
    #[serde(rename = "run-once")]
    RunOnce,
}

/// A job's definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub schedule: String,
    /// IANA time zone of the schedule (default `UTC`).
    pub timezone: String,
    pub enabled: bool,
    pub misfire: Misfire,
    /// How late an occurrence may start and still count as on time.
    pub misfire_grace_seconds: u64,
    /// Further attempts after a failure (0: none).
    pub retries: u64,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff_seconds: u64,
    pub timeout_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The fields of its type.
    #[serde(flatten)]
    pub params: Params,
}

/// Why a definition was refused: one message per problem, each naming
/// its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct SpecError(pub Vec<String>);

const COMMON: [&str; 11] = [
    "name",
    "type",
    "schedule",
    "timezone",
    "enabled",
    "misfire",
    "misfire_grace_seconds",
    "retries",
    "retry_backoff_seconds",
    "timeout_seconds",
    "description",
];

/// A job name's problem, if any: 1 to 100 letters, digits, `.`, `_`, `-`.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
    (!ok).then(|| format!("name: {name:?} is not 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-'"))
}

impl JobSpec {
    /// Parse JSON text.
    pub fn from_json(text: &[u8], registry: &Registry) -> Result<JobSpec, SpecError> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(SpecError(vec![format!(
                "the job is {} bytes, more than {MAX_SPEC_BYTES}",
                text.len()
            )]));
        }
        let value: Value = serde_json::from_slice(text).map_err(|e| {
            SpecError(vec![format!(
                "invalid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            )])
        })?;
        JobSpec::from_value(value, registry)
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str, registry: &Registry) -> Result<JobSpec, SpecError> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(SpecError(vec![format!(
                "the job is {} bytes, more than {MAX_SPEC_BYTES}",
                text.len()
            )]));
        }
        let table: toml::Table = toml::from_str(text).map_err(|e| SpecError(vec![format!("invalid TOML: {e}")]))?;
        let value = serde_json::to_value(table).map_err(|e| SpecError(vec![format!("invalid TOML: {e}")]))?;
        JobSpec::from_value(value, registry)
    }

    /// Parse JSON or TOML text, told apart as `sealtrail jobs put` and the
    /// dashboard do: JSON when the first non-blank character is `{`.
    pub fn from_text(text: &str, registry: &Registry) -> Result<JobSpec, SpecError> {
        if text.trim_start().starts_with('{') {
            JobSpec::from_json(text.as_bytes(), registry)
        } else {
            JobSpec::from_toml(text, registry)
        }
    }

    /// Check a JSON value: every problem, each naming its field.
    pub fn from_value(value: Value, registry: &Registry) -> Result<JobSpec, SpecError> {
        let Value::Object(map) = value else {
            return Err(SpecError(vec!["a job is an object (JSON) or a table (TOML)".into()]));
        };
        let mut problems = Vec::new();
        let text = |field: &str, problems: &mut Vec<String>| -> Option<String> {
            match map.get(field) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    problems.push(format!("{field}: expected a string, found {other}"));
                    None
                }
                None => None,
            }
        };
        let number = |field: &str, default: u64, max: u64, problems: &mut Vec<String>| -> u64 {
            match map.get(field) {
                None => default,
                Some(v) => match v.as_u64() {
                    Some(n) if n <= max => n,
                    _ => {
                        problems.push(format!("{field}: expected a whole number from 0 to {max}, found {v}"));
                        default
                    }
                },
            }
        };
        let name = text("name", &mut problems);
        match &name {
            None if !map.contains_key("name") => problems.push("name: missing".into()),
            Some(n) => problems.extend(name_problem(n)),
            None => {}
        }
        let job_type = text("type", &mut problems);
        let kind = match &job_type {
            None if !map.contains_key("type") => {
                problems.push(format!("type: missing (one of: {})", registry.names().join(", ")));
                None
            }
            Some(t) => {
                let kind = registry.get(t);
                if kind.is_none() {
                    problems.push(format!(
                        "type: unknown job type {t:?} (this server knows: {})",
                        registry.names().join(", ")
                    ));
                }
                kind
            }
            None => None,
        };
        let schedule = text("schedule", &mut problems);
        if schedule.is_none() && !map.contains_key("schedule") {
            problems.push("schedule: missing".into());
        }
        let timezone = text("timezone", &mut problems).unwrap_or_else(|| "UTC".into());
        if let Some(s) = &schedule {
            if let Err(e) = Schedule::parse(s, &timezone) {
                problems.push(e.to_string());
            }
        }
        let enabled = match map.get("enabled") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                problems.push(format!("enabled: expected true or false, found {other}"));
                true
            }
        };
        let misfire = match text("misfire", &mut problems).as_deref() {
            None => Misfire::RunOnce,
            Some("skip") => Misfire::Skip,
            Some("run-once") => Misfire::RunOnce,
            Some(other) => {
                problems.push(format!("misfire: {other:?} is not \"skip\" or \"run-once\""));
                Misfire::RunOnce
            }
        };
        let misfire_grace_seconds = number("misfire_grace_seconds", 60, 86_400, &mut problems);
        let retries = number("retries", 0, MAX_RETRIES, &mut problems);
        let retry_backoff_seconds = number("retry_backoff_seconds", 30, MAX_BACKOFF_SECONDS, &mut problems);
        let timeout_seconds = number("timeout_seconds", 3600, MAX_TIMEOUT_SECONDS, &mut problems);
        if timeout_seconds == 0 {
            problems.push("timeout_seconds: must be at least 1".into());
        }
        let description = text("description", &mut problems);
        if description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
            problems.push("description: longer than 1000 characters".into());
        }
        let mut params = Map::new();
        for (key, value) in &map {
            if COMMON.contains(&key.as_str()) {
                continue;
            }
            match &kind {
                Some(k) if k.fields().contains(&key.as_str()) => {
                    params.insert(key.clone(), value.clone());
                }
                Some(k) => {
                    let mut allowed: Vec<&str> = COMMON.to_vec();
                    allowed.extend(k.fields());
                    problems.push(format!(
                        "unknown field {key:?} (a {} job has: {})",
                        k.name(),
                        allowed.join(", ")
                    ));
                }
                // The type is unknown: its fields cannot be judged.
                None => {}
            }
        }
        if let Some(k) = &kind {
            if problems.is_empty() {
                if let Err(e) = k.check(&params) {
                    problems.push(e);
                }
            }
        }
        if !problems.is_empty() {
            return Err(SpecError(problems));
        }
        Ok(JobSpec {
            name: name.unwrap_or_default(),
            job_type: job_type.unwrap_or_default(),
            schedule: schedule.unwrap_or_default(),
            timezone,
            enabled,
            misfire,
            misfire_grace_seconds,
            retries,
            retry_backoff_seconds,
            timeout_seconds,
            description,
            params,
        })
    }

    /// The parsed schedule (checked when the spec was made).
    pub fn parsed_schedule(&self) -> Result<Schedule, crate::ScheduleError> {
        Schedule::parse(&self.schedule, &self.timezone)
    }

    /// As stored and shown: a JSON object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn refused(text: &str) -> String {
        JobSpec::from_json(text.as_bytes(), &Registry::builtin())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn json_and_toml_give_the_same_job_with_defaults() {
        let json = JobSpec::from_json(
            br#"{"name": "nightly-verify", "type": "verify", "log": "default", "schedule": "0 2 * * *", "timezone": "Europe/Berlin"}"#,
            &Registry::builtin(),
        )
        .unwrap();
        let toml = JobSpec::from_toml(
            "name = \"nightly-verify\"\ntype = \"verify\"\nlog = \"default\"\nschedule = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"\n",
            &Registry::builtin(),
        )
        .unwrap();
        assert_eq!(json, toml);
        let told = |text: &str| JobSpec::from_text(text, &Registry::builtin()).unwrap();
        let json_text = r#"  {"name": "nightly-verify", "type": "verify", "log": "default", "schedule": "0 2 * * *", "timezone": "Europe/Berlin"}"#;
        assert_eq!(told(json_text), json);
        assert_eq!(
            told("name = \"nightly-verify\"\ntype = \"verify\"\nlog = \"default\"\nschedule = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"\n"),
            toml
        );
        assert_eq!(json.misfire, Misfire::RunOnce);
        assert_eq!(
            (json.retries, json.retry_backoff_seconds, json.timeout_seconds),
            (0, 30, 3600)
        );
        assert!(json.enabled);
        // What is stored reads back the same.
        let again = JobSpec::from_value(json.to_value(), &Registry::builtin()).unwrap();
        assert_eq!(again, json);
    }

    #[test]
    fn refusals_name_the_field() {
        let e =
            refused(r#"{"name": "a", "type": "verify", "log": "default", "schedule": "0 2 * * *", "colour": "red"}"#);
        assert!(e.contains("unknown field \"colour\""), "{e}");
        let e = refused(r#"{"name": "a", "type": "vacuum", "schedule": "0 2 * * *"}"#);
        assert!(
            e.contains(
                "type: unknown job type \"vacuum\" (this server knows: backup, data-diff, data-keys, reindex, report, retention, verify)"
            ),
            "{e}"
        );
        let e = refused(
            r#"{"name": "a", "type": "verify", "log": "default", "schedule": "0 2 * * *", "timezone": "Mars/Olympus"}"#,
        );
        assert!(e.contains("timezone: unknown time zone \"Mars/Olympus\""), "{e}");
        let e = refused(r#"{"name": "a", "type": "verify", "log": "default", "schedule": "0 2 * * 8"}"#);
        assert!(
            e.contains("invalid cron expression \"0 2 * * 8\", field 5 (day of week) \"8\""),
            "{e}"
        );
        let e = refused(r#"{"name": "a b", "type": "verify", "schedule": "0 2 * * *"}"#);
        assert!(e.contains("name: \"a b\" is not"), "{e}");
        let e = refused(r#"{"name": "a", "type": "verify", "schedule": "0 2 * * *"}"#);
        assert!(e.contains("log: missing"), "{e}");
        let e = refused(
            r#"{"name": "a", "type": "verify", "log": "Bad Name", "schedule": "0 2 * * *", "retries": 11, "misfire": "later"}"#,
        );
        assert!(
            e.contains("retries: expected a whole number from 0 to 10, found 11"),
            "{e}"
        );
        assert!(e.contains("misfire: \"later\" is not"), "{e}");
        let e = refused(r#"{"name": "a", "type": 5, "schedule": "0 2 * * *"}"#);
        assert!(e.contains("type: expected a string, found 5"), "{e}");
        let e = refused("[1]");
        assert!(e.contains("a job is an object"), "{e}");
        let e = refused("{\"name\": ");
        assert!(e.contains("invalid JSON at line 1"), "{e}");
        let e = JobSpec::from_toml("name = \"a\"\nlog = 3\n", &Registry::builtin())
            .unwrap_err()
            .to_string();
        assert!(e.contains("type: missing") && e.contains("schedule: missing"), "{e}");
    }
}
