//! Which fields may be protected, how, and the policy of a log: the
//! field paths of the event schema that hold strings, and a way to reach
//! their values in an [`Event`].

use std::fmt;

use sealtrail_event::limits::{ID_CHARS, TEXT_CHARS, USER_AGENT_CHARS};
use sealtrail_event::Event;
use serde_json::Value;

use crate::PiiError;

/// The subject of an encrypted field when none is given.
pub const DEFAULT_SUBJECT: &str = "actor.id";

/// How a field is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Hmac,
    Encrypt,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hmac => "hmac",
            Mode::Encrypt => "encrypt",
        }
    }

    pub fn parse(name: &str) -> Result<Mode, PiiError> {
        match name {
            "hmac" => Ok(Mode::Hmac),
            "encrypt" => Ok(Mode::Encrypt),
            other => Err(PiiError::Config(format!(
                "unknown PII mode {other:?}: use hmac or encrypt"
            ))),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string field of the event schema that may be protected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldPath {
    ActorId,
    ActorName,
    ActorEmail,
    ImpersonatorId,
    ImpersonatorName,
    ImpersonatorEmail,
    /// Every target's id.
    TargetId,
    /// Every target's name.
    TargetName,
    SourceHost,
    UserAgent,
    SessionId,
    Location,
    Message,
    ErrorMessage,
    /// A top-level key of `details` whose value is a string.
    Details(String),
}

/// Every fixed path, in schema order, with its name.
const FIXED: [(FieldPath, &str); 14] = [
    (FieldPath::ActorId, "actor.id"),
    (FieldPath::ActorName, "actor.name"),
    (FieldPath::ActorEmail, "actor.email"),
    (FieldPath::ImpersonatorId, "actor.impersonator.id"),
    (FieldPath::ImpersonatorName, "actor.impersonator.name"),
    (FieldPath::ImpersonatorEmail, "actor.impersonator.email"),
    (FieldPath::TargetId, "targets.id"),
    (FieldPath::TargetName, "targets.name"),
    (FieldPath::SourceHost, "source.host"),
    (FieldPath::UserAgent, "context.user_agent"),
    (FieldPath::SessionId, "context.session_id"),
    (FieldPath::Location, "context.location"),
    (FieldPath::Message, "message"),
    (FieldPath::ErrorMessage, "error.message"),
];

impl FieldPath {
    /// Parse a field path as `sealtrail pii set` and the configuration
    /// name it.
    pub fn parse(path: &str) -> Result<FieldPath, PiiError> {
        if let Some((fixed, _)) = FIXED.iter().find(|(_, name)| *name == path) {
            return Ok(fixed.clone());
        }
        if let Some(key) = path.strip_prefix("details.") {
            if !key.is_empty() && key.len() <= 128 && !key.contains('.') {
                return Ok(FieldPath::Details(key.to_string()));
            }
        }
        let names: Vec<&str> = FIXED.iter().map(|(_, n)| *n).collect();
        Err(PiiError::Config(format!(
            "{path:?} cannot be protected: use one of {}, or details.KEY (a top-level key of details holding a string)",
            names.join(", ")
        )))
    }

    /// The path as written.
    pub fn name(&self) -> String {
        match self {
            FieldPath::Details(key) => format!("details.{key}"),
            fixed => FIXED
                .iter()
                .find(|(f, _)| f == fixed)
                .map_or_else(String::new, |(_, n)| n.to_string()),
        }
    }

    /// Whether the field holds one value per event (a subject must).
    pub fn single(&self) -> bool {
        !matches!(self, FieldPath::TargetId | FieldPath::TargetName)
    }

    /// Whether free-text search reads this field.
    pub fn searched_as_text(&self) -> bool {
        matches!(
            self,
            FieldPath::Message | FieldPath::ErrorMessage | FieldPath::Details(_)
        )
    }

    /// The most characters the schema lets the field hold; `None` for
    /// `details`, bounded as a whole.
    pub(crate) fn max_chars(&self) -> Option<usize> {
        match self {
            FieldPath::UserAgent => Some(USER_AGENT_CHARS),
            FieldPath::Message | FieldPath::ErrorMessage => Some(TEXT_CHARS),
            FieldPath::Details(_) => None,
            _ => Some(ID_CHARS),
        }
    }

    /// The first value of the field in `e`, if any.
    pub(crate) fn first<'a>(&self, e: &'a Event) -> Option<&'a str> {
        let mut found = None;
        self.visit(e, &mut |s| {
            if found.is_none() {
                found = Some(s);
            }
        });
        found
    }

    fn visit<'a>(&self, e: &'a Event, f: &mut dyn FnMut(&'a str)) {
        let actor = e.actor.as_ref();
        let imp = actor.and_then(|a| a.impersonator.as_ref());
        let one = match self {
            FieldPath::ActorId => actor.map(|a| a.id.as_str()),
            FieldPath::ActorName => actor.and_then(|a| a.name.as_deref()),
            FieldPath::ActorEmail => actor.and_then(|a| a.email.as_deref()),
            FieldPath::ImpersonatorId => imp.map(|i| i.id.as_str()),
            FieldPath::ImpersonatorName => imp.and_then(|i| i.name.as_deref()),
            FieldPath::ImpersonatorEmail => imp.and_then(|i| i.email.as_deref()),
            FieldPath::TargetId => {
                e.targets.iter().flatten().for_each(|t| f(&t.id));
                None
            }
            FieldPath::TargetName => {
                e.targets
                    .iter()
                    .flatten()
                    .filter_map(|t| t.name.as_deref())
                    .for_each(&mut *f);
                None
            }
            FieldPath::SourceHost => e.source.as_ref().and_then(|s| s.host.as_deref()),
            FieldPath::UserAgent => e.context.as_ref().and_then(|c| c.user_agent.as_deref()),
            FieldPath::SessionId => e.context.as_ref().and_then(|c| c.session_id.as_deref()),
            FieldPath::Location => e.context.as_ref().and_then(|c| c.location.as_deref()),
            FieldPath::Message => e.message.as_deref(),
            FieldPath::ErrorMessage => e.error.as_ref().and_then(|x| x.message.as_deref()),
            FieldPath::Details(key) => e.details.as_ref().and_then(|d| d.get(key)).and_then(Value::as_str),
        };
        if let Some(s) = one {
            f(s);
        }
    }

    /// Call `f` with every value of the field in `e`, mutably; a `details`
    /// key holding anything but a string is passed as `Err` with its JSON
    /// type, for the caller to refuse.
    pub(crate) fn visit_mut(&self, e: &mut Event, f: &mut dyn FnMut(Result<&mut String, &'static str>)) {
        let actor = e.actor.as_mut();
        let one: Option<&mut String> = match self {
            FieldPath::ActorId => actor.map(|a| &mut a.id),
            FieldPath::ActorName => actor.and_then(|a| a.name.as_mut()),
            FieldPath::ActorEmail => actor.and_then(|a| a.email.as_mut()),
            FieldPath::ImpersonatorId => actor.and_then(|a| a.impersonator.as_mut()).map(|i| &mut i.id),
            FieldPath::ImpersonatorName => actor
                .and_then(|a| a.impersonator.as_mut())
                .and_then(|i| i.name.as_mut()),
            FieldPath::ImpersonatorEmail => actor
                .and_then(|a| a.impersonator.as_mut())
                .and_then(|i| i.email.as_mut()),
            FieldPath::TargetId => {
                e.targets.iter_mut().flatten().for_each(|t| f(Ok(&mut t.id)));
                None
            }
            FieldPath::TargetName => {
                e.targets
                    .iter_mut()
                    .flatten()
                    .filter_map(|t| t.name.as_mut())
                    .for_each(|n| f(Ok(n)));
                None
            }
            FieldPath::SourceHost => e.source.as_mut().and_then(|s| s.host.as_mut()),
            FieldPath::UserAgent => e.context.as_mut().and_then(|c| c.user_agent.as_mut()),
            FieldPath::SessionId => e.context.as_mut().and_then(|c| c.session_id.as_mut()),
            FieldPath::Location => e.context.as_mut().and_then(|c| c.location.as_mut()),
            FieldPath::Message => e.message.as_mut(),
            FieldPath::ErrorMessage => e.error.as_mut().and_then(|x| x.message.as_mut()),
            FieldPath::Details(key) => match e.details.as_mut().and_then(|d| d.get_mut(key)) {
                Some(Value::String(s)) => Some(s),
                Some(Value::Null) | None => None,
                Some(other) => {
                    f(Err(json_type(other)));
                    None
                }
            },
        };
        if let Some(s) = one {
            f(Ok(s));
        }
    }

    /// Every fixed path: what a reader scans for sealed values.
    pub(crate) fn fixed() -> impl Iterator<Item = FieldPath> {
        FIXED.into_iter().map(|(f, _)| f)
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One protected field of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub field: FieldPath,
    pub mode: Mode,
    /// For [`Mode::Encrypt`]: the field whose value picks the data key.
    pub subject: Option<FieldPath>,
}

impl Rule {
    /// A rule from its text form, as the CLI and configuration give it:
    /// the subject defaults to [`DEFAULT_SUBJECT`] for encrypted fields
    /// and must be a single-valued field; hmac fields take none.
    pub fn parse(field: &str, mode: &str, subject: Option<&str>) -> Result<Rule, PiiError> {
        let field = FieldPath::parse(field)?;
        let mode = Mode::parse(mode)?;
        let subject = match (mode, subject) {
            (Mode::Hmac, None) => None,
            (Mode::Hmac, Some(_)) => {
                return Err(PiiError::Config(format!(
                    "{field}: --subject applies to encrypted fields only (hmac needs no key per subject)"
                )))
            }
            (Mode::Encrypt, subject) => {
                let subject = FieldPath::parse(subject.unwrap_or(DEFAULT_SUBJECT))?;
                if !subject.single() {
                    return Err(PiiError::Config(format!(
                        "{field}: subject {subject} holds several values per event; pick a field with one, such as actor.id"
                    )));
                }
                Some(subject)
            }
        };
        Ok(Rule { field, mode, subject })
    }
}

/// The protected fields of one log, at most one rule per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Add `rule`; a field given twice with different rules is refused
    /// (`origin` names where the second came from).
    pub fn add(&mut self, rule: Rule, origin: &str) -> Result<(), PiiError> {
        match self.rules.iter().find(|r| r.field == rule.field) {
            Some(r) if *r == rule => Ok(()),
            Some(r) => Err(PiiError::Config(format!(
                "{}: protected as {} already, and as {} by {origin}",
                rule.field, r.mode, rule.mode
            ))),
            None => {
                self.rules.push(rule);
                Ok(())
            }
        }
    }

    /// The mode of `field`, if protected.
    pub fn mode(&self, field: &FieldPath) -> Option<Mode> {
        self.rules.iter().find(|r| r.field == *field).map(|r| r.mode)
    }

    /// Whether a free-text field is pseudonymised with HMAC.
    pub fn hashes_text(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.mode == Mode::Hmac && r.field.searched_as_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_modes() {
        for (f, name) in FIXED {
            assert_eq!(FieldPath::parse(name).ok(), Some(f.clone()));
            assert_eq!(f.name(), name);
        }
        assert_eq!(
            FieldPath::parse("details.ssn").ok(),
            Some(FieldPath::Details("ssn".into()))
        );
        for bad in ["actor", "context.ip", "details.", "details.a.b", "tenant", "action"] {
            let e = FieldPath::parse(bad).expect_err("refused").to_string();
            assert!(e.contains("cannot be protected"), "{e}");
        }
        let e = Rule::parse("actor.email", "scramble", None)
            .expect_err("refused")
            .to_string();
        assert_eq!(e, "unknown PII mode \"scramble\": use hmac or encrypt");
        let r = Rule::parse("actor.email", "encrypt", None).expect("valid");
        assert_eq!(r.subject, Some(FieldPath::ActorId));
        assert!(Rule::parse("actor.email", "encrypt", Some("targets.id")).is_err());
        assert!(Rule::parse("actor.email", "hmac", Some("actor.id")).is_err());
        let mut p = Policy::default();
        p.add(r.clone(), "a").expect("first");
        p.add(r, "b").expect("same again");
        assert!(p
            .add(Rule::parse("actor.email", "hmac", None).expect("valid"), "c")
            .is_err());
    }
}
