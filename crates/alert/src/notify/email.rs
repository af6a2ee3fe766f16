//! Mail: a plain-text and an HTML part, a subject on one line, and a
//! `Message-ID` that stays the same for every attempt at one delivery.

use std::fmt::Write as _;

use super::{clip, events, facts, one_line, title, Mail, RenderError, Smtp};
use crate::spec::{Level, Message, MessageKind};

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

pub(super) fn email(
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
