//! Each channel's wire format, and sending it (docs/alert-channels.md).
//!
//! Two steps. [`render`] is pure: a channel and a [`Message`] become an
//! [`Outgoing`] — an HTTP POST with its headers and body bytes, or a mail
//! with its text and HTML parts — with no clock, randomness or network, so
//! every format is tested byte for byte. [`send`] puts an `Outgoing` on the
//! wire and says whether a failure is worth retrying.
//!
//! Not here: queueing, retries and history (the [`outbox`](crate::outbox)),
//! or deciding what to send (the [`engine`](crate::engine)).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::net::{Destinations, GuardedResolver, Refused};
use crate::spec::{ChannelKind, ChannelSpec, Level, Message, MessageKind, SmtpSecurity};

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

struct Webhook<'a, H> {
    url: &'a str,
    headers: H,
    secret: Option<&'a str>,
    body_template: Option<&'a str>,
    content_type: Option<&'a str>,
}

/// Headers a channel's own `headers` may not set: Sealtrail's, and those
/// the HTTP client owns.
fn reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("sealtrail-")
        || matches!(
            lower.as_str(),
            "content-length" | "host" | "transfer-encoding" | "connection"
        )
}

fn webhook<'a>(
    hook: Webhook<'a, impl Iterator<Item = (&'a str, &'a str)>>,
    message: &Message,
    delivery_id: i64,
    unix_time: i64,
) -> Result<HttpPost, RenderError> {
    let body = match hook.body_template {
        None => serde_json::to_vec(message).map_err(|e| RenderError::Template(e.to_string()))?,
        Some(template) => render_template(template, message, delivery_id)?.into_bytes(),
    };
    let mut headers: Vec<(String, String)> = vec![
        (
            "Content-Type".into(),
            hook.content_type.unwrap_or("application/json").into(),
        ),
        ("User-Agent".into(), USER_AGENT.into()),
        ("Sealtrail-Event".into(), kind_name(message.kind).into()),
        ("Sealtrail-Delivery".into(), delivery_id.to_string()),
    ];
    for (name, value) in hook.headers {
        let bad = |reason: &str| RenderError::Header {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if reserved(name) {
            return Err(bad("is set by Sealtrail and cannot be overridden"));
        }
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(bad("not a valid header name"));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err(bad("the value must be printable ASCII on one line"));
        }
        // A channel's own User-Agent or Content-Type replaces ours.
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.to_string(), value.to_string()));
    }
    if let Some(content_type) = hook.content_type {
        if reqwest::header::HeaderValue::from_str(content_type).is_err() {
            return Err(RenderError::Header {
                name: "Content-Type".into(),
                reason: "content_type must be printable ASCII on one line".into(),
            });
        }
    }
    if let Some(secret) = hook.secret {
        headers.push(("Sealtrail-Timestamp".into(), unix_time.to_string()));
        headers.push((
            "Sealtrail-Signature".into(),
            signature(secret.as_bytes(), unix_time, &body),
        ));
    }
    Ok(HttpPost {
        url: hook.url.to_string(),
        headers,
        body,
    })
}

/// `v1=` and the lowercase hex HMAC-SHA256, keyed with `secret`, of the
/// decimal `unix_time`, a `.`, and the body bytes exactly as sent.
pub fn signature(secret: &[u8], unix_time: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(unix_time.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut out = String::with_capacity(67);
    out.push_str("v1=");
    for byte in mac.finalize().into_bytes() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A webhook's `body_template` rendered with minijinja. The context is the
/// message's fields (`rule`, `summary`, `group`, ...) and `delivery_id`;
/// an undefined name renders as nothing, `|tojson` gives JSON text.
pub fn render_template(template: &str, message: &Message, delivery_id: i64) -> Result<String, RenderError> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_template("body_template", template)
        .map_err(|e| RenderError::Template(e.to_string()))?;
    let tmpl = env
        .get_template("body_template")
        .map_err(|e| RenderError::Template(e.to_string()))?;
    let ctx = minijinja::context! {
        delivery_id => delivery_id,
        ..minijinja::value::Serde(message)
    };
    tmpl.render(ctx).map_err(|e| RenderError::Template(e.to_string()))
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

/// Slack's mrkdwn: `&`, `<` and `>` escaped, so event data can neither
/// mention anyone (`<!channel>`) nor forge links.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack(m: &Message) -> Value {
    let emoji = match (m.kind, m.level) {
        (MessageKind::Resolved, _) => ":white_check_mark:",
        (MessageKind::Test, _) => ":test_tube:",
        (MessageKind::Fired, Level::Critical) => ":red_circle:",
        (MessageKind::Fired, Level::Warning) => ":large_orange_circle:",
        (MessageKind::Fired, Level::Info) => ":large_blue_circle:",
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {
            "type": "plain_text", "emoji": true, "text": clip(&format!("{emoji} {}", title(m)), 150),
        }}),
        json!({"type": "section", "text": {
            "type": "mrkdwn", "text": clip(&slack_escape(or_dash(&m.summary)), 3000),
        }}),
    ];
    let fields: Vec<Value> = facts(m)
        .iter()
        .map(|(name, value)| {
            let text = format!("*{}*\n{}", slack_escape(name), slack_escape(or_dash(value)));
            json!({"type": "mrkdwn", "text": clip(&text, 2000)})
        })
        .collect();
    // A section holds at most 10 fields.
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if !m.event_ids.is_empty() {
        let text = format!("Events: {}", slack_escape(&events(m)));
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&text, 3000)}]}));
    }
    json!({
        "text": clip(&format!("{}: {}", title(m), m.summary), 3000),
        "blocks": blocks,
    })
}

/// Discord markdown characters backslash-escaped, so event data shows as
/// written and cannot make a masked link (`[text](url)`).
fn discord_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '[' | ']' | '@') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Discord embed colours.
pub fn discord_color(kind: MessageKind, level: Level) -> u32 {
    match (kind, level) {
        (MessageKind::Resolved, _) => 0x2E_CC_71,
        (MessageKind::Test, _) => 0x95_A5_A6,
        (MessageKind::Fired, Level::Critical) => 0xE7_4C_3C,
        (MessageKind::Fired, Level::Warning) => 0xE6_7E_22,
        (MessageKind::Fired, Level::Info) => 0x34_98_DB,
    }
}

fn discord(m: &Message) -> Value {
    // Discord refuses an embed past these limits.
    const TITLE: usize = 256;
    const DESCRIPTION: usize = 4096;
    const FIELDS: usize = 25;
    const FIELD_NAME: usize = 256;
    const FIELD_VALUE: usize = 1024;
    const FOOTER: usize = 2048;
    const TOTAL: usize = 6000;
    let title = clip(&title(m), TITLE).into_owned();
    let footer = clip(&format!("Sealtrail · alert {}", m.alert_id), FOOTER).into_owned();
    let mut fields: Vec<(String, String)> = facts(m)
        .into_iter()
        .filter(|(name, _)| name != "Alert")
        .map(|(name, value)| {
            (
                clip(&name, FIELD_NAME).into_owned(),
                clip(&discord_escape(or_dash(value)), FIELD_VALUE).into_owned(),
            )
        })
        .collect();
    if !m.event_ids.is_empty() {
        fields.push((
            "Events".into(),
            clip(&discord_escape(&events(m)), FIELD_VALUE).into_owned(),
        ));
    }
    fields.truncate(FIELDS);
    let count = |s: &str| s.chars().count();
    let mut used = count(&title) + count(&footer);
    let mut kept = Vec::new();
    for (name, value) in fields {
        let size = count(&name) + count(&value);
        if used + size > TOTAL {
            break;
        }
        used += size;
        kept.push(json!({"name": name, "value": value, "inline": count(&value) <= 40}));
    }
    let description = clip(&discord_escape(or_dash(&m.summary)), DESCRIPTION.min(TOTAL - used)).into_owned();
    json!({
        "username": "Sealtrail",
        // Event data must not ping @everyone or anyone else.
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": title,
            "description": description,
            "color": discord_color(m.kind, m.level),
            "fields": kept,
            "timestamp": m.at,
            "footer": {"text": footer},
        }],
    })
}

fn teams(m: &Message) -> Value {
    let color = match (m.kind, m.level) {
        (MessageKind::Resolved, _) => "Good",
        (MessageKind::Test, _) => "Accent",
        (MessageKind::Fired, Level::Critical) => "Attention",
        (MessageKind::Fired, Level::Warning) => "Warning",
        (MessageKind::Fired, Level::Info) => "Accent",
    };
    let facts: Vec<Value> = facts(m)
        .iter()
        .map(|(name, value)| json!({"title": name, "value": or_dash(value)}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "text": title(m), "size": "Large", "weight": "Bolder", "color": color, "wrap": true}),
        json!({"type": "TextBlock", "text": or_dash(&m.summary), "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if !m.event_ids.is_empty() {
        body.push(json!({
            "type": "TextBlock", "text": format!("Events: {}", events(m)),
            "isSubtle": true, "size": "Small", "wrap": true,
        }));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "body": body,
                "msteams": {"width": "Full"},
            },
        }],
    })
}

/// `&`, `<`, `>`, `"` and `'` as HTML character references.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line: control characters (newlines included) become spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn email(
    m: &Message,
    from: &str,
    to: &[String],
    smtp: Smtp,
    delivery_id: i64,
    unix_time: i64,
) -> Result<Mail, RenderError> {
    let address = |field: String, value: &str| {
        value
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| RenderError::Address {
                field,
                value: value.to_string(),
                reason: e.to_string(),
            })
    };
    let sender = address("from".into(), from)?;
    for (i, addr) in to.iter().enumerate() {
        address(format!("to[{i}]"), addr)?;
    }
    let subject = clip(&one_line(&format!("[Sealtrail] {} — {}", title(m), m.summary)), 200).into_owned();

    let facts = facts(m);
    let width = facts.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0) + 1;
    let mut text = format!("{}\n\n{}\n\n", title(m), m.summary);
    for (name, value) in &facts {
        let _ = writeln!(text, "{:<width$} {}", format!("{name}:"), value, width = width);
    }
    if !m.event_ids.is_empty() {
        let _ = writeln!(text, "{:<width$} {}", "Events:", events(m), width = width);
    }
    text.push_str("\n-- \nSent by Sealtrail.\n");

    let color = match (m.kind, m.level) {
        (MessageKind::Resolved, _) => "#2ecc71",
        (MessageKind::Test, _) => "#95a5a6",
        (MessageKind::Fired, Level::Critical) => "#e74c3c",
        (MessageKind::Fired, Level::Warning) => "#e67e22",
        (MessageKind::Fired, Level::Info) => "#3498db",
    };
    let e = html_escape;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family: sans-serif\">\n\
         <h2 style=\"border-left: 6px solid {color}; padding-left: 8px\">{title}</h2>\n\
         <p>{summary}</p>\n<table cellpadding=\"4\">\n",
        title = e(&title(m)),
        summary = e(&m.summary),
    );
    for (name, value) in &facts {
        let _ = writeln!(
            html,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            e(name),
            e(value)
        );
    }
    if !m.event_ids.is_empty() {
        let _ = writeln!(
            html,
            "<tr><th align=\"left\">Events</th><td>{}</td></tr>",
            e(&events(m))
        );
    }
    html.push_str("</table>\n<p style=\"color: #888\">Sent by Sealtrail.</p>\n</body></html>\n");

    // The same for every attempt at this delivery; the alert id keeps it
    // unique across databases.
    let local: String = m
        .alert_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    let domain = sender.email.domain().to_string();
    Ok(Mail {
        from: from.to_string(),
        to: to.to_vec(),
        subject,
        text,
        html,
        message_id: format!("<sealtrail.{delivery_id}.{local}@{domain}>"),
        date_unix: unix_time,
        smtp,
    })
}

/// A delivery the receiver accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The HTTP status (2xx), or the SMTP reply code (250).
    pub status: u16,
}

/// A delivery that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendFailure {
    /// The HTTP status or SMTP reply code, when the receiver answered.
    pub status: Option<u16>,
    /// Short, one line: the HTTP status line or the SMTP reply code, or
    /// what went wrong on the way. Never the receiver's response body or
    /// reply text (a channel must not be a way to read what it points
    /// at), never the channel's URL (Slack, Discord and Teams URLs are
    /// secrets).
    pub message: String,
    /// Network errors, timeouts, 408, 429, 5xx and SMTP 4xx replies are
    /// worth another try; anything else will fail the same way again.
    pub retryable: bool,
}

/// Whether an HTTP status (not 2xx) is worth retrying.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// How the error of a delivery refused by the destination policy begins.
pub const REFUSED: &str = "refused destination: ";

/// An HTTP client for [`send`] with the destination policy it enforces
/// on every connection (see [`net`](crate::net)).
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    destinations: Arc<Destinations>,
}

/// An HTTP client for [`send`]: `timeout` for the whole exchange; only
/// to the destinations `destinations` allows, checked on every connection
/// (names through [`GuardedResolver`], IP literals before the request); no
/// redirects (a 3xx is a failure: following it would turn the POST into a
/// GET, and could lead anywhere); no proxy from the environment; TLS
/// through rustls with the platform's roots.
pub fn http_client(timeout: Duration, destinations: Destinations) -> reqwest::Result<HttpClient> {
    let destinations = Arc::new(destinations);
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(GuardedResolver::new(destinations.clone()))
        .build()?;
    Ok(HttpClient { client, destinations })
}

/// Put `out` on the wire. HTTP succeeds on any 2xx; mail when the SMTP
/// server accepts it for every recipient.
pub async fn send(out: &Outgoing, http: &HttpClient) -> Result<Sent, SendFailure> {
    match out {
        Outgoing::Http(post) => send_http(post, http).await,
        Outgoing::Mail(mail) => send_mail(mail).await,
    }
}

async fn send_http(post: &HttpPost, http: &HttpClient) -> Result<Sent, SendFailure> {
    // The policy will not change between attempts: a refusal is final.
    let refused = |reason: String| SendFailure {
        status: None,
        message: format!("{REFUSED}{reason}"),
        retryable: false,
    };
    http.destinations.check_url(&post.url).map_err(refused)?;
    let mut request = http.client.post(&post.url).body(post.body.clone());
    for (name, value) in &post.headers {
        request = request.header(name, value);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            if let Some(r) = find_cause::<Refused>(&e) {
                return Err(refused(r.to_string()));
            }
            return Err(SendFailure {
                status: None,
                retryable: !e.is_builder(),
                message: error_chain(&e.without_url()),
            });
        }
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(Sent { status });
    }
    // Only the status line: the body is whatever the receiver chose to
    // say, and echoing it would let a channel read what it points at.
    let reason = response.status().canonical_reason().unwrap_or("");
    Err(SendFailure {
        status: Some(status),
        message: format!("HTTP {status} {reason}").trim_end().to_string(),
        retryable: retryable_status(status),
    })
}

/// The first error of type `T` in `error`'s chain of causes.
fn find_cause<'e, T: std::error::Error + 'static>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e T> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

/// An error and its causes on one line: `a: b: c`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    clip(&one_line(&out), 500).into_owned()
}

async fn send_mail(mail: &Mail) -> Result<Sent, SendFailure> {
    use lettre::message::{header, Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let permanent = |message: String| SendFailure {
        status: None,
        message,
        retryable: false,
    };
    let mailbox = |text: &str| {
        text.parse::<Mailbox>()
            .map_err(|e| permanent(format!("{text:?} is not a mail address: {e}")))
    };
    let mut builder = lettre::Message::builder()
        .from(mailbox(&mail.from)?)
        .subject(&mail.subject)
        .message_id(Some(mail.message_id.clone()))
        .date(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(mail.date_unix).unwrap_or(0)))
        .header(header::UserAgent::from(USER_AGENT.to_string()));
    for to in &mail.to {
        builder = builder.to(mailbox(to)?);
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .map_err(|e| permanent(format!("cannot build the mail: {e}")))?;

    let smtp = &mail.smtp;
    let transport = match smtp.security {
        SmtpSecurity::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)),
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
    };
    let mut transport = transport
        .map_err(|e| permanent(format!("SMTP host {:?}: {}", smtp.host, error_chain(&e))))?
        .port(smtp.port)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(user) = &smtp.username {
        transport = transport.credentials(Credentials::new(
            user.clone(),
            smtp.password.clone().unwrap_or_default(),
        ));
    }
    // lettre's own timeout covers connecting only; this bounds the whole
    // conversation.
    let transport = transport.build();
    let Ok(result) = tokio::time::timeout(SMTP_TIMEOUT, transport.send(message)).await else {
        return Err(SendFailure {
            status: None,
            message: format!("SMTP: no answer within {} s", SMTP_TIMEOUT.as_secs()),
            retryable: true,
        });
    };
    match result {
        Ok(response) => Ok(Sent {
            status: u16::from(response.code()),
        }),
        Err(e) => Err(SendFailure {
            status: e.status().map(u16::from),
            // 5xx replies and our own mistakes fail again; 4xx replies,
            // timeouts, network and TLS trouble may pass.
            retryable: !(e.is_permanent() || e.is_client()),
            // The reply code only: the server's reply text is its own.
            message: match e.status() {
                Some(code) => format!("SMTP reply {code}"),
                None if e.is_response() => "SMTP: the server's reply could not be read".into(),
                None => format!("SMTP: {}", error_chain(&e)),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;

    fn message() -> Message {
        Message {
            version: 1,
            kind: MessageKind::Fired,
            alert_id: "01JD4ZQ8W9S6M4Q8V3R2T1Y0XA".into(),
            rule: "failed-logins".into(),
            condition: "frequency".into(),
            level: Level::Warning,
            log: "default".into(),
            group: BTreeMap::from([("actor.id".to_string(), "u-1".to_string())]),
            summary: "5 failed logins within 5m".into(),
            at: "2026-11-22T08:00:00Z".into(),
            indices: vec![12, 13],
            event_ids: vec!["01JD4ZQ8W9S6M4Q8V3R2T1Y0XB".into(), "01JD4ZQ8W9S6M4Q8V3R2T1Y0XC".into()],
        }
    }

    fn channel(kind: ChannelKind) -> ChannelSpec {
        ChannelSpec { name: "c".into(), kind }
    }

    fn hook(secret: Option<&str>, body_template: Option<&str>, content_type: Option<&str>) -> ChannelSpec {
        channel(ChannelKind::Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            headers: BTreeMap::from([("Authorization".to_string(), "Bearer t0k".to_string())]),
            secret: secret.map(Into::into),
            body_template: body_template.map(Into::into),
            content_type: content_type.map(Into::into),
        })
    }

    fn http(out: Outgoing) -> HttpPost {
        match out {
            Outgoing::Http(post) => post,
            Outgoing::Mail(_) => panic!("expected an HTTP POST"),
        }
    }

    fn body_json(post: &HttpPost) -> Value {
        serde_json::from_slice(&post.body).unwrap()
    }

    #[test]
    fn webhook_body_is_the_message_and_headers_name_the_delivery() {
        let post = http(render(&hook(None, None, None), &message(), 42, 1_790_000_000).unwrap());
        assert_eq!(post.url, "http://127.0.0.1:9/hook");
        assert_eq!(post.body, serde_json::to_vec(&message()).unwrap());
        let back: Message = serde_json::from_slice(&post.body).unwrap();
        assert_eq!(back, message());
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(post.header("User-Agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("sealtrail/0."));
        assert_eq!(post.header("Sealtrail-Event"), Some("fired"));
        assert_eq!(post.header("Sealtrail-Delivery"), Some("42"));
        assert_eq!(post.header("Authorization"), Some("Bearer t0k"));
        assert_eq!(post.header("Sealtrail-Signature"), None);
        assert_eq!(post.header("Sealtrail-Timestamp"), None);
        let mut resolved = message();
        resolved.kind = MessageKind::Resolved;
        let post = http(render(&hook(None, None, None), &resolved, 1, 0).unwrap());
        assert_eq!(post.header("Sealtrail-Event"), Some("resolved"));
    }

    #[test]
    fn webhook_payload_v1_field_names_and_types() {
        let post = http(render(&hook(None, None, None), &message(), 1, 0).unwrap());
        let expected = json!({
            "version": 1,
            "kind": "fired",
            "alert_id": "01JD4ZQ8W9S6M4Q8V3R2T1Y0XA",
            "rule": "failed-logins",
            "condition": "frequency",
            "level": "warning",
            "log": "default",
            "group": {"actor.id": "u-1"},
            "summary": "5 failed logins within 5m",
            "at": "2026-11-22T08:00:00Z",
            "indices": [12, 13],
            "event_ids": ["01JD4ZQ8W9S6M4Q8V3R2T1Y0XB", "01JD4ZQ8W9S6M4Q8V3R2T1Y0XC"],
        });
        assert_eq!(body_json(&post), expected);
    }

    /// Computed once, independently, with Python:
    /// `hmac.new(b"whsec_test", b"1790000000." + body, hashlib.sha256).hexdigest()`.
    #[test]
    fn signature_matches_an_independent_vector() {
        let body = br#"{"version":1,"kind":"test"}"#;
        assert_eq!(
            signature(b"whsec_test", 1_790_000_000, body),
            "v1=145fc6fccd896f67251c7c81eb5ceb7ef44229256ed819a2a624ba006650b019"
        );
    }

    #[test]
    fn signed_webhook_carries_timestamp_and_signature_of_the_body_sent() {
        let post = http(render(&hook(Some("s3cret"), None, None), &message(), 7, 1_790_000_123).unwrap());
        assert_eq!(post.header("Sealtrail-Timestamp"), Some("1790000123"));
        let sig = post.header("Sealtrail-Signature").unwrap();
        assert_eq!(sig, signature(b"s3cret", 1_790_000_123, &post.body));
        assert_eq!(sig.len(), 3 + 64);
        assert!(sig[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Another body, another time or another key: another signature.
        assert_ne!(sig, signature(b"s3cret", 1_790_000_124, &post.body));
        assert_ne!(sig, signature(b"s3cres", 1_790_000_123, &post.body));
    }

    #[test]
    fn body_template_renders_message_fields() {
        let template = r#"{"text": {{ (rule ~ ": " ~ summary) | tojson }}, "actor": "{{ group["actor.id"] }}", "n": {{ event_ids | length }}, "d": {{ delivery_id }}, "missing": "{{ nope }}"}"#;
        let post = http(
            render(
                &hook(Some("k"), Some(template), Some("application/vnd.x+json")),
                &message(),
                9,
                5,
            )
            .unwrap(),
        );
        assert_eq!(
            String::from_utf8(post.body.clone()).unwrap(),
            r#"{"text": "failed-logins: 5 failed logins within 5m", "actor": "u-1", "n": 2, "d": 9, "missing": ""}"#
        );
        assert_eq!(post.header("Content-Type"), Some("application/vnd.x+json"));
        // The signature covers the rendered body, not the message.
        assert_eq!(
            post.header("Sealtrail-Signature").unwrap(),
            signature(b"k", 5, &post.body)
        );
    }

    #[test]
    fn template_output_is_not_html_escaped() {
        let mut m = message();
        m.summary = "a < b & \"c\"".into();
        let out = render_template("{{ summary }}", &m, 1).unwrap();
        assert_eq!(out, "a < b & \"c\"");
    }

    #[test]
    fn bad_templates_are_errors_naming_the_problem() {
        let check = |template: &str, needle: &str| {
            let err = render(&hook(None, Some(template), None), &message(), 1, 0).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, RenderError::Template(_)), "{text}");
            assert!(text.starts_with("body_template: "), "{text}");
            assert!(text.contains(needle), "{template:?}: {text:?} lacks {needle:?}");
        };
        check("{{ rule ", "syntax error");
        check("{% if rule %}no end", "syntax error");
        check("{{ rule | no_such_filter }}", "no_such_filter");
        check("{{ 1 / 0 }}", "invalid operation");
    }

    #[test]
    fn custom_headers_are_checked() {
        let with = |name: &str, value: &str| {
            channel(ChannelKind::Webhook {
                url: "http://x/".into(),
                headers: BTreeMap::from([(name.to_string(), value.to_string())]),
                secret: None,
                body_template: None,
                content_type: None,
            })
        };
        let err = render(&with("Sealtrail-Delivery", "1"), &message(), 1, 0).unwrap_err();
        assert!(err.to_string().contains("cannot be overridden"), "{err}");
        let err = render(&with("X-A", "line\nbreak"), &message(), 1, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "headers.X-A: the value must be printable ASCII on one line"
        );
        let err = render(&with("Bad Name", "v"), &message(), 1, 0).unwrap_err();
        assert!(err.to_string().contains("not a valid header name"), "{err}");
        // A channel's own User-Agent replaces Sealtrail's, once.
        let post = http(render(&with("user-agent", "mine/1"), &message(), 1, 0).unwrap());
        let agents: Vec<_> = post
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
            .collect();
        assert_eq!(agents, [&("user-agent".to_string(), "mine/1".to_string())]);
    }

    #[test]
    fn slack_blocks() {
        let mut m = message();
        m.summary = "<!channel> & <https://evil|click>".into();
        let post = http(
            render(
                &channel(ChannelKind::Slack {
                    url: "https://hooks.slack.com/services/T/B/x".into(),
                }),
                &m,
                1,
                0,
            )
            .unwrap(),
        );
        assert_eq!(post.url, "https://hooks.slack.com/services/T/B/x");
        assert_eq!(post.header("Content-Type"), Some("application/json"));
        assert_eq!(post.header("Sealtrail-Delivery"), None);
        let v = body_json(&post);
        assert_eq!(
            v["text"],
            "FIRING warning: failed-logins: <!channel> & <https://evil|click>"
        );
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(
            blocks[0]["text"]["text"],
            ":large_orange_circle: FIRING warning: failed-logins"
        );
        assert_eq!(blocks[1]["type"], "section");
        assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
        assert_eq!(
            blocks[1]["text"]["text"],
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"
        );
        let fields = blocks[2]["fields"].as_array().unwrap();
        let texts: Vec<&str> = fields.iter().map(|f| f["text"].as_str().unwrap()).collect();
        assert_eq!(
            texts,
            [
                "*Rule*\nfailed-logins",
                "*Level*\nwarning",
                "*Log*\ndefault",
                "*Condition*\nfrequency",
                "*actor.id*\nu-1",
                "*At*\n2026-11-22T08:00:00Z",
                "*Alert*\n01JD4ZQ8W9S6M4Q8V3R2T1Y0XA",
            ]
        );
        assert_eq!(blocks[3]["type"], "context");
        assert_eq!(
            blocks[3]["elements"][0]["text"],
            "Events: 01JD4ZQ8W9S6M4Q8V3R2T1Y0XB (#12), 01JD4ZQ8W9S6M4Q8V3R2T1Y0XC (#13)"
        );
    }

    #[test]
    fn slack_sections_hold_at_most_ten_fields_and_header_is_clipped() {
        let mut m = message();
        m.rule = "r".repeat(300);
        m.group = (0..8).map(|i| (format!("details.k{i}"), format!("v{i}"))).collect();
        let v = body_json(&http(
            render(
                &channel(ChannelKind::Slack {
                    url: "https://x/".into(),
                }),
                &m,
                1,
                0,
            )
            .unwrap(),
        ));
        let header = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), 150);
        assert!(header.ends_with('…'));
        let sections: Vec<usize> = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["fields"].as_array().map(Vec::len))
            .collect();
        assert_eq!(sections, [10, 4]);
    }

    #[test]
    fn discord_embed() {
        let v = body_json(&http(
            render(
                &channel(ChannelKind::Discord {
                    url: "https://discord.com/api/webhooks/1/x".into(),
                }),
                &message(),
                1,
                0,
            )
            .unwrap(),
        ));
        assert_eq!(v["allowed_mentions"], json!({"parse": []}));
        let embeds = v["embeds"].as_array().unwrap();
        assert_eq!(embeds.len(), 1);
        let e = &embeds[0];
        assert_eq!(e["title"], "FIRING warning: failed-logins");
        assert_eq!(e["description"], "5 failed logins within 5m");
        assert_eq!(e["color"], 0xE67E22);
        assert_eq!(e["timestamp"], "2026-11-22T08:00:00Z");
        assert_eq!(e["footer"]["text"], "Sealtrail · alert 01JD4ZQ8W9S6M4Q8V3R2T1Y0XA");
        let fields: Vec<(&str, &str)> = e["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["value"].as_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                ("Rule", "failed-logins"),
                ("Level", "warning"),
                ("Log", "default"),
                ("Condition", "frequency"),
                ("actor.id", "u-1"),
                ("At", "2026-11-22T08:00:00Z"),
                (
                    "Events",
                    "01JD4ZQ8W9S6M4Q8V3R2T1Y0XB (#12), 01JD4ZQ8W9S6M4Q8V3R2T1Y0XC (#13)"
                ),
            ]
        );
    }

    #[test]
    fn discord_values_cannot_make_links_or_mentions() {
        let mut m = message();
        m.summary = "[click](https://evil.example) @everyone **now**".into();
        m.group = BTreeMap::from([("actor.id".to_string(), "<@123> a_b".to_string())]);
        let v = body_json(&http(
            render(
                &channel(ChannelKind::Discord {
                    url: "https://x/".into(),
                }),
                &m,
                1,
                0,
            )
            .unwrap(),
        ));
        let e = &v["embeds"][0];
        assert_eq!(
            e["description"],
            r"\[click\](https://evil.example) \@everyone \*\*now\*\*"
        );
        assert_eq!(e["fields"][4]["value"], r"\<\@123\> a\_b");
        assert_eq!(e["title"], "FIRING warning: failed-logins");
    }

    #[test]
    fn discord_colours_by_level_and_green_when_resolved() {
        assert_eq!(discord_color(MessageKind::Fired, Level::Critical), 0xE74C3C);
        assert_eq!(discord_color(MessageKind::Fired, Level::Info), 0x3498DB);
        for level in [Level::Info, Level::Warning, Level::Critical] {
            assert_eq!(discord_color(MessageKind::Resolved, level), 0x2ECC71);
        }
    }

    #[test]
    fn discord_respects_its_limits() {
        let mut m = message();
        m.rule = "r".repeat(400);
        m.summary = "s".repeat(10_000);
        m.group = (0..40)
            .map(|i| (format!("details.k{i:02}"), "v".repeat(2000)))
            .collect();
        m.summary.push('\n');
        let v = body_json(&http(
            render(
                &channel(ChannelKind::Discord {
                    url: "https://x/".into(),
                }),
                &m,
                1,
                0,
            )
            .unwrap(),
        ));
        let e = &v["embeds"][0];
        let len = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(len(&e["title"]) <= 256);
        assert!(len(&e["description"]) <= 4096);
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= 25);
        let mut total = len(&e["title"]) + len(&e["description"]) + len(&e["footer"]["text"]);
        for f in fields {
            assert!(len(&f["name"]) <= 256);
            assert!(len(&f["value"]) <= 1024);
            assert!(len(&f["value"]) > 0);
            total += len(&f["name"]) + len(&f["value"]);
        }
        assert!(total <= 6000, "{total}");
    }

    #[test]
    fn teams_adaptive_card() {
        let mut m = message();
        m.kind = MessageKind::Resolved;
        let v = body_json(&http(
            render(
                &channel(ChannelKind::Teams {
                    url: "https://x.logic.azure.com/w".into(),
                }),
                &m,
                1,
                0,
            )
            .unwrap(),
        ));
        assert_eq!(v["type"], "message");
        let attachments = v["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0]["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &attachments[0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
        assert_eq!(card["version"], "1.4");
        let body = card["body"].as_array().unwrap();
        assert_eq!(body[0]["type"], "TextBlock");
        assert_eq!(body[0]["text"], "RESOLVED warning: failed-logins");
        assert_eq!(body[0]["color"], "Good");
        assert_eq!(body[1]["text"], "5 failed logins within 5m");
        assert_eq!(body[2]["type"], "FactSet");
        assert_eq!(body[2]["facts"][4], json!({"title": "actor.id", "value": "u-1"}));
        assert_eq!(body[3]["type"], "TextBlock");
        assert!(body[3]["text"]
            .as_str()
            .unwrap()
            .contains("01JD4ZQ8W9S6M4Q8V3R2T1Y0XC (#13)"));
    }

    fn mail_channel() -> ChannelSpec {
        channel(ChannelKind::Email {
            host: "127.0.0.1".into(),
            port: None,
            security: SmtpSecurity::Starttls,
            username: Some("u".into()),
            password: Some("p".into()),
            from: "Sealtrail <alerts@example.org>".into(),
            to: vec!["a@example.org".into(), "b@example.org".into()],
        })
    }

    fn mail(out: Outgoing) -> Mail {
        match out {
            Outgoing::Mail(m) => m,
            Outgoing::Http(_) => panic!("expected a mail"),
        }
    }

    #[test]
    fn email_parts_carry_every_field() {
        let mail = mail(render(&mail_channel(), &message(), 17, 1_790_000_000).unwrap());
        assert_eq!(
            mail.subject,
            "[Sealtrail] FIRING warning: failed-logins — 5 failed logins within 5m"
        );
        assert_eq!(mail.from, "Sealtrail <alerts@example.org>");
        assert_eq!(mail.to, ["a@example.org", "b@example.org"]);
        assert_eq!(mail.message_id, "<sealtrail.17.01JD4ZQ8W9S6M4Q8V3R2T1Y0XA@example.org>");
        assert_eq!(mail.date_unix, 1_790_000_000);
        assert_eq!(
            mail.smtp,
            Smtp {
                host: "127.0.0.1".into(),
                port: 587,
                security: SmtpSecurity::Starttls,
                username: Some("u".into()),
                password: Some("p".into()),
            }
        );
        for part in [&mail.text, &mail.html] {
            for needle in [
                "failed-logins",
                "warning",
                "default",
                "frequency",
                "actor.id",
                "u-1",
                "5 failed logins within 5m",
                "2026-11-22T08:00:00Z",
                "01JD4ZQ8W9S6M4Q8V3R2T1Y0XB (#12)",
                "01JD4ZQ8W9S6M4Q8V3R2T1Y0XC (#13)",
            ] {
                assert!(part.contains(needle), "{needle:?} missing from {part}");
            }
        }
        assert!(mail.text.contains("actor.id:  u-1\n"), "{}", mail.text);
        let mut resolved = message();
        resolved.kind = MessageKind::Resolved;
        let mail = self::mail(render(&mail_channel(), &resolved, 17, 0).unwrap());
        assert!(mail.subject.starts_with("[Sealtrail] RESOLVED warning: failed-logins"));
    }

    #[test]
    fn email_html_escapes_every_value() {
        let mut m = message();
        m.rule = "r<script>".into();
        m.summary = "<b>bold</b> & \"quoted\" 'single'".into();
        m.group = BTreeMap::from([("details.<k>".to_string(), "<img src=x onerror=alert(1)>".to_string())]);
        m.event_ids = vec!["<e>".into()];
        m.log = "l&og".into();
        let mail = mail(render(&mail_channel(), &m, 1, 0).unwrap());
        for raw in [
            "<script>",
            "<b>",
            "<img",
            "<k>",
            "<e>",
            "l&og",
            "\"quoted\"",
            "'single'",
        ] {
            assert!(!mail.html.contains(raw), "{raw:?} unescaped in {}", mail.html);
        }
        for escaped in [
            "r&lt;script&gt;",
            "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; &#39;single&#39;",
            "details.&lt;k&gt;",
            "&lt;img src=x onerror=alert(1)&gt;",
            "&lt;e&gt;",
            "l&amp;og",
        ] {
            assert!(mail.html.contains(escaped), "{escaped:?} missing from {}", mail.html);
        }
        // The text part is as written.
        assert!(mail.text.contains("<b>bold</b> & \"quoted\""));
    }

    #[test]
    fn email_subject_is_one_line_and_bounded() {
        let mut m = message();
        m.summary = format!("line\r\nBcc: x@evil.example {}", "z".repeat(500));
        let mail = mail(render(&mail_channel(), &m, 1, 0).unwrap());
        assert!(!mail.subject.contains(['\r', '\n']));
        assert_eq!(mail.subject.chars().count(), 200);
    }

    #[test]
    fn email_default_ports_and_bad_addresses() {
        let with = |security, from: &str, to: &str| {
            render(
                &channel(ChannelKind::Email {
                    host: "h".into(),
                    port: None,
                    security,
                    username: None,
                    password: None,
                    from: from.into(),
                    to: vec!["ok@example.org".into(), to.into()],
                }),
                &message(),
                1,
                0,
            )
        };
        assert_eq!(mail(with(SmtpSecurity::Plain, "a@b.c", "d@e.f").unwrap()).smtp.port, 25);
        assert_eq!(mail(with(SmtpSecurity::Tls, "a@b.c", "d@e.f").unwrap()).smtp.port, 465);
        let err = with(SmtpSecurity::Plain, "a@b.c", "not an address").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("to[1]: \"not an address\" is not a mail address"),
            "{err}"
        );
        let err = with(SmtpSecurity::Plain, "@", "d@e.f").unwrap_err();
        assert!(err.to_string().starts_with("from: "), "{err}");
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("héllo", 5), "héllo");
        assert_eq!(clip("héllo!", 5), "héll…");
        assert_eq!(clip("ab", 1), "…");
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [300, 301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
