//! The generic webhook: the message as JSON (or a channel's own
//! template), Sealtrail's headers, and the optional HMAC signature.

use std::fmt::Write as _;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{kind_name, HttpPost, RenderError, USER_AGENT};
use crate::spec::Message;

pub(super) struct Webhook<'a, H> {
    pub url: &'a str,
    pub headers: H,
    pub secret: Option<&'a str>,
    pub body_template: Option<&'a str>,
    pub content_type: Option<&'a str>,
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

pub(super) fn webhook<'a>(
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
