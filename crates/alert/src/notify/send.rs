//! Putting an [`Outgoing`] on the wire: HTTP through a client that
//! enforces the destination policy on every connection, mail over SMTP;
//! and whether a failure is worth another try.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{clip, one_line, HttpPost, Mail, Outgoing, Smtp, SMTP_TIMEOUT, USER_AGENT};
use crate::net::{Destinations, GuardedResolver, Refused};
use crate::spec::SmtpSecurity;

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
    send_message(&mail.smtp, message).await
}

/// Send a mail built by the caller (one with attachments, say) over SMTP
/// as `smtp` says, with the same timeout and failure classes as a
/// notification's mail.
pub async fn send_message(smtp: &Smtp, message: lettre::Message) -> Result<Sent, SendFailure> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let permanent = |message: String| SendFailure {
        status: None,
        message,
        retryable: false,
    };
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
