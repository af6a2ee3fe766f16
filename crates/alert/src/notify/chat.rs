//! Chat formats: Slack blocks, Discord embeds and Teams adaptive cards,
//! each within the limits its receiver enforces and with event data
//! escaped so it can neither mention anyone nor forge links.

use serde_json::{json, Value};

use super::{clip, events, facts, or_dash, title};
use crate::spec::{Level, Message, MessageKind};

/// Slack's mrkdwn: `&`, `<` and `>` escaped, so event data can neither
/// mention anyone (`<!channel>`) nor forge links.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub(super) fn slack(m: &Message) -> Value {
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

pub(super) fn discord(m: &Message) -> Value {
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

pub(super) fn teams(m: &Message) -> Value {
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
