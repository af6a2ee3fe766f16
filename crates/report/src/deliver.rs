//! Sending a report through an alert channel (docs/reports.md,
//! "Delivery"): an `email` channel gets a mail whose body is the HTML
//! report (with a plain-text part beside it) and whose attachment is the
//! XLSX workbook; a `webhook` channel gets the JSON report in a POST,
//! signed like notifications when the channel has a secret. Both go
//! through `sealtrail-alert`'s senders, so the destination policy, the
//! timeouts and the failure classes are those of notifications.
//!
//! Not here: retries (the caller, e.g. the scheduler, decides) and chat
//! channels (a report does not fit a chat message).

use lettre::message::{header, Attachment, Mailbox, MultiPart};
use sealtrail_alert::notify::{
    send, send_message, signature, HttpClient, HttpPost, Outgoing, SendFailure, Smtp, USER_AGENT,
};
use sealtrail_alert::spec::{ChannelKind, ChannelSpec, SmtpSecurity};

use crate::html::thousands;
use crate::model::{Body, Report};
use crate::{file_name, render, Format, ReportError};

/// A report the receiver accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// HTTP status (2xx) or SMTP reply code (250).
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The channel cannot carry a report; permanent.
    #[error("channel {channel}: {reason}")]
    Channel { channel: String, reason: String },
    #[error(transparent)]
    Render(#[from] ReportError),
    /// The receiver refused or could not be reached; `retryable` says
    /// whether another try may succeed.
    #[error("channel {channel}: {failure}")]
    Send { channel: String, failure: SendFailure },
}

impl DeliveryError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, DeliveryError::Send { failure, .. } if failure.retryable)
    }
}

/// Send `report` through `channel` (email or webhook). `unix_time` is the
/// send time in seconds: the mail's `Date`, the webhook signature's
/// timestamp. `http` is the client webhooks go through (its destination
/// policy applies); mail goes over SMTP as the channel says.
pub async fn deliver(
    report: &Report,
    channel: &ChannelSpec,
    http: &HttpClient,
    unix_time: i64,
) -> Result<Delivered, DeliveryError> {
    let sent = match &channel.kind {
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
            let message = mail(report, &channel.name, from, to, unix_time)?;
            send_message(&smtp, message).await
        }
        ChannelKind::Webhook {
            url, headers, secret, ..
        } => {
            let body = render(report, Format::Json)?;
            let mut all = vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("User-Agent".to_string(), USER_AGENT.to_string()),
                ("Sealtrail-Event".to_string(), "report".to_string()),
                ("Sealtrail-Report".to_string(), report.report.to_string()),
            ];
            for (name, value) in headers {
                let lower = name.to_ascii_lowercase();
                if lower.starts_with("sealtrail-") || lower == "content-type" || lower == "content-length" {
                    continue;
                }
                all.push((name.clone(), value.clone()));
            }
            if let Some(secret) = secret {
                all.push(("Sealtrail-Timestamp".into(), unix_time.to_string()));
                all.push((
                    "Sealtrail-Signature".into(),
                    signature(secret.as_bytes(), unix_time, &body),
                ));
            }
            let post = HttpPost {
                url: url.clone(),
                headers: all,
                body,
            };
            send(&Outgoing::Http(post), http).await
        }
        other => {
            let kind = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                .unwrap_or_default();
            return Err(DeliveryError::Channel {
                channel: channel.name.clone(),
                reason: format!("a {kind} channel cannot carry a report; use an email or webhook channel"),
            });
        }
    };
    sent.map(|s| Delivered { status: s.status })
        .map_err(|failure| DeliveryError::Send {
            channel: channel.name.clone(),
            failure,
        })
}

/// The subject line: the title and the period.
pub(crate) fn subject(report: &Report) -> String {
    let date = |t: &Option<String>| t.as_deref().map(|s| s.get(..10).unwrap_or(s).to_string());
    match (date(&report.period.since), date(&report.period.until)) {
        (Some(s), Some(u)) => format!("{} ({s} to {u})", report.title),
        (Some(s), None) => format!("{} (from {s})", report.title),
        _ => report.title.clone(),
    }
}

/// The plain-text part: the key figures and the checkpoint.
fn text(report: &Report) -> String {
    let mut s = format!(
        "{}\nLog {}, generated {}.\nComputed from {} entries, root hash {}.\n",
        report.title,
        report.log,
        report.generated_at,
        thousands(report.checkpoint.size),
        report.checkpoint.root_hash
    );
    match &report.body {
        Body::Summary(x) => s.push_str(&format!(
            "Events: {}. Failures: {}. Errors: {}.\n",
            thousands(x.total),
            thousands(x.failures.count),
            thousands(x.errors.count)
        )),
        Body::Compliance(x) => {
            for c in &x.classes {
                s.push_str(&format!("{} {}: {}\n", c.requirement, c.title, thousands(c.count)));
            }
        }
        Body::AccessReview(x) => s.push_str(&format!(
            "Users: {}. API keys: {}. Findings: {}.\n",
            x.users.len(),
            x.keys.len(),
            x.findings.len()
        )),
        Body::Reconciliation(x) => s.push_str(&format!(
            "Comparison {}: {} runs, {} failed. Differences: {}.\n",
            x.name,
            thousands(x.runs_total),
            thousands(x.failures.len() as u64),
            x.totals
                .differences
                .map_or_else(|| "none counted".to_string(), thousands)
        )),
    }
    s.push_str("The full report is the HTML part of this mail; the workbook is attached.\n");
    s
}

fn mail(
    report: &Report,
    channel: &str,
    from: &str,
    to: &[String],
    unix_time: i64,
) -> Result<lettre::Message, DeliveryError> {
    let bad = |reason: String| DeliveryError::Channel {
        channel: channel.to_string(),
        reason,
    };
    let mailbox = |field: &str, text: &str| {
        text.parse::<Mailbox>()
            .map_err(|e| bad(format!("{field}: {text:?} is not a mail address: {e}")))
    };
    let html = String::from_utf8(render(report, Format::Html)?).map_err(|e| bad(e.to_string()))?;
    let xlsx = render(report, Format::Xlsx)?;
    let mut builder = lettre::Message::builder()
        .from(mailbox("from", from)?)
        .subject(subject(report))
        .message_id(Some(format!(
            "<report-{}-{}-{}@sealtrail>",
            report.report, report.checkpoint.size, unix_time
        )))
        .date(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix_time).unwrap_or(0)))
        .header(header::UserAgent::from(USER_AGENT.to_string()));
    for t in to {
        builder = builder.to(mailbox("to", t)?);
    }
    let media: header::ContentType = Format::Xlsx
        .media_type()
        .parse()
        .map_err(|e| bad(format!("content type: {e:?}")))?;
    builder
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(text(report), html))
                .singlepart(Attachment::new(file_name(report, Format::Xlsx)).body(xlsx, media)),
        )
        .map_err(|e| bad(format!("cannot build the mail: {e}")))
}
