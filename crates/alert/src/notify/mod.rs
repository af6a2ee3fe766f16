//! Each channel's wire format, and sending it (docs/alert-channels.md).
//!
//! Two steps. [`render`] is pure: a channel and a [`Message`] become an
//! [`Outgoing`] — an HTTP POST with its headers and body bytes, or a mail
//! with its text and HTML parts — with no clock, randomness or network, so
//! every format is tested byte for byte. [`send`] puts an `Outgoing` on the
//! wire and says whether a failure is worth retrying.
//!
//! One module per wire format (`webhook`, `chat` for Slack, Discord and
//! Teams, `email`) and one for sending (`send`); the facts every format
//! shows are gathered here.
//!
//! Not here: queueing, retries and history (the [`outbox`](crate::outbox)),
//! or deciding what to send (the [`engine`](crate::engine)).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::spec::{ChannelKind, ChannelSpec, Message, MessageKind, SmtpSecurity};

mod chat;
mod email;
mod send;
mod webhook;

pub use chat::discord_color;
use chat::{discord, slack, teams};
use email::email;
pub use email::html_escape;
pub use send::{http_client, retryable_status, send, send_message, HttpClient, SendFailure, Sent, REFUSED};
pub use webhook::{render_template, signature};
use webhook::{webhook, Webhook};

/// `User-Agent` of every webhook request.
pub const USER_AGENT: &str = concat!("sealtrail/", env!("CARGO_PKG_VERSION"));

/// How long one SMTP conversation may take, connecting included.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a channel puts on the wire for one notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Http(HttpPost),
    Mail(Mail),
}

/// A webhook request: always a POST.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPost {
    pub url: String,
    /// In the order sent; names as written.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpPost {
    /// The first header named `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A mail with a plain-text and an HTML part (multipart/alternative).
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `Message-ID`, the same for every attempt at one delivery so mail
    /// systems can drop a resent duplicate.
    pub message_id: String,
    /// `Date`, Unix seconds.
    pub date_unix: i64,
    pub smtp: Smtp,
}

/// How to reach the SMTP server.
#[derive(Debug, Clone, PartialEq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Why a notification cannot be rendered for its channel. Permanent: the
/// channel must change before it can succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("body_template: {0}")]
    Template(String),
    #[error("headers.{name}: {reason}")]
    Header { name: String, reason: String },
    #[error("{field}: {value:?} is not a mail address: {reason}")]
    Address {
        field: String,
        value: String,
        reason: String,
    },
}

/// Render `message` for `channel`. `delivery_id` is the outbox row's id
/// (the webhook's `Sealtrail-Delivery`, the mail's `Message-ID`);
/// `unix_time` the send time in seconds (the signature's timestamp, the
/// mail's `Date`).
pub fn render(
    channel: &ChannelSpec,
    message: &Message,
    delivery_id: i64,
    unix_time: i64,
) -> Result<Outgoing, RenderError> {
    let json = |url: &str, body: Value| {
        Outgoing::Http(HttpPost {
            url: url.to_string(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), USER_AGENT.into()),
            ],
            body: body.to_string().into_bytes(),
        })
    };
    match &channel.kind {
        ChannelKind::Webhook {
            url,
            headers,
            secret,
            body_template,
            content_type,
        } => webhook(
            Webhook {
                url,
                headers: headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                secret: secret.as_deref(),
                body_template: body_template.as_deref(),
                content_type: content_type.as_deref(),
            },
            message,
            delivery_id,
            unix_time,
        )
        .map(Outgoing::Http),
        ChannelKind::Slack { url } => Ok(json(url, slack(message))),
        ChannelKind::Discord { url } => Ok(json(url, discord(message))),
        ChannelKind::Teams { url } => Ok(json(url, teams(message))),
        ChannelKind::Email {
            host,
            port,
            security,
            username,
            password,
            from,
            to,
        } => {
            let smtp = Smtp {
                host: host.clone(),
                port: port.unwrap_or(match security {
                    SmtpSecurity::Plain => 25,
                    SmtpSecurity::Starttls => 587,
                    SmtpSecurity::Tls => 465,
                }),
                security: *security,
                username: username.clone(),
                password: password.clone(),
            };
            email(message, from, to, smtp, delivery_id, unix_time).map(Outgoing::Mail)
        }
    }
}

fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Fired => "fired",
        MessageKind::Resolved => "resolved",
        MessageKind::Test => "test",
    }
}

fn kind_label(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Fired => "FIRING",
        MessageKind::Resolved => "RESOLVED",
        MessageKind::Test => "TEST",
    }
}

/// `FIRING warning: failed-logins`.
fn title(m: &Message) -> String {
    format!("{} {}: {}", kind_label(m.kind), m.level.as_str(), m.rule)
}

/// The facts every format shows, in order: the rule, then the group's
/// values by field path.
fn facts(m: &Message) -> Vec<(Cow<'_, str>, &str)> {
    let mut out: Vec<(Cow<'_, str>, &str)> = vec![
        ("Rule".into(), &m.rule),
        ("Level".into(), m.level.as_str()),
        ("Log".into(), &m.log),
        ("Condition".into(), &m.condition),
    ];
    out.extend(m.group.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), v.as_str())));
    out.push(("At".into(), &m.at));
    out.push(("Alert".into(), &m.alert_id));
    out
}

/// `01J… (#12), 01J… (#13)`: event ids with their ledger indices.
fn events(m: &Message) -> String {
    let mut out = String::new();
    for (i, id) in m.event_ids.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(id);
        if let Some(index) = m.indices.get(i) {
            let _ = write!(out, " (#{index})");
        }
    }
    out
}

/// At most `max` characters: longer text is cut and ends with `…`.
fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &text[..end]))
        }
    }
}

/// Chat formats refuse empty texts.
fn or_dash(text: &str) -> &str {
    if text.trim().is_empty() {
        "—"
    } else {
        text
    }
}

/// One line: control characters (newlines included) become spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests;
