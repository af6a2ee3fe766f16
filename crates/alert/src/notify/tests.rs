//! Every format byte for byte (sending is tested against real receivers
//! in tests/channels.rs).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::spec::Level;

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
