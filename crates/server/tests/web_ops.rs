//! The operations pages of the dashboard: `/verification` (checkpoints,
//! full verification in the background), `/alerts` (silences), and
//! `/stream`; who may see and change what.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::http::{header, Method};
use base64::Engine;
use sealtrail_meta::Scope;
use serde_json::json;
use support::{Harness, Reply};

const FORM: &str = "application/x-www-form-urlencoded";

async fn post_form(h: &Harness, uri: &str, key: &str, form: &str) -> Reply {
    h.call(Method::POST, uri, Some(key), Some((FORM, form.as_bytes().to_vec())))
        .await
}

#[tokio::test]
async fn the_verification_page_shows_checkpoints_and_runs_a_verification() {
    let h = Harness::new(|_| {});
    let (ingest, admin, read) = (
        h.key(Scope::Ingest, None),
        h.key(Scope::Admin, None),
        h.key(Scope::Read, None),
    );
    for i in 0..5 {
        h.store("default", &ingest, json!({"action": "doc.edit", "details": {"i": i}}))
            .await;
    }
    let trail = h.app.trail("default").unwrap();
    let (checkpoint, _) = trail.log().checkpoint();
    let root = base64::engine::general_purpose::STANDARD.encode(checkpoint.root);

    let page = h.get("/verification", Some(&read)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains(&root), "the root hash is shown: {html}");
    assert!(
        html.contains(&format!("<td class=\"num\">{}</td>", checkpoint.size)),
        "{html}"
    );
    assert!(html.contains("not run since the server started"), "{html}");
    assert!(
        !html.contains("action=\"/verification\""),
        "a reader is offered no button: {html}"
    );
    assert!(
        !html.contains("<th scope=\"row\">system</th>"),
        "a reader does not see the system log: {html}"
    );

    // A reader may not start one.
    let refused = post_form(&h, "/verification", &read, "log=default&csrf=").await;
    assert_eq!(refused.status, 403, "{}", refused.text());

    let page = h.get("/verification", Some(&admin)).await;
    assert!(page.text().contains("action=\"/verification\""), "{}", page.text());
    assert!(page.text().contains("<th scope=\"row\">system</th>"), "{}", page.text());
    let started = post_form(&h, "/verification", &admin, "log=default&csrf=").await;
    assert_eq!(started.status, 303, "{}", started.text());
    assert_eq!(started.headers[header::LOCATION], "/verification");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let html = loop {
        let html = h.get("/verification", Some(&admin)).await.text();
        if html.contains("result-intact") {
            break html;
        }
        assert!(
            !html.contains("result-failed") && !html.contains("result-error"),
            "{html}"
        );
        assert!(tokio::time::Instant::now() < deadline, "no result: {html}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(html.contains(&format!("{} entries", checkpoint.size)), "{html}");

    // Recorded in the system log.
    h.settle("system");
    let events = h
        .get("/api/v1/logs/system/events?action=log.verified", Some(&admin))
        .await
        .json();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"]["details"]["result"], "intact");
    assert_eq!(events[0]["event"]["details"]["entries"], checkpoint.size);

    let unknown = post_form(&h, "/verification", &admin, "log=nope&csrf=").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
}

#[tokio::test]
async fn a_verification_finds_a_damaged_entry() {
    let h = Harness::new(|c| c.integrity.scrub_interval_ms = 0);
    let (ingest, admin) = (h.key(Scope::Ingest, None), h.key(Scope::Admin, None));
    for i in 0..3 {
        h.store(
            "default",
            &ingest,
            json!({"action": "doc.edit", "message": format!("entry-{i}-marker")}),
        )
        .await;
    }
    // Flip one byte of an entry's text behind the server's back.
    let entries = h.app.data.log_dir("default").join("entries");
    let mut bytes = std::fs::read(&entries).unwrap();
    let at = bytes.windows(14).position(|w| w == b"entry-1-marker").unwrap();
    bytes[at] = b'E';
    std::fs::write(&entries, bytes).unwrap();

    let started = post_form(&h, "/verification", &admin, "log=default&csrf=").await;
    assert_eq!(started.status, 303, "{}", started.text());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let html = h.get("/verification", Some(&admin)).await.text();
        if html.contains("result-failed") {
            assert!(html.contains("entries"), "the finding names the file: {html}");
            break;
        }
        assert!(!html.contains("result-intact"), "{html}");
        assert!(tokio::time::Instant::now() < deadline, "no result: {html}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admins_silence_alerts_from_the_alerts_page_and_others_may_not() {
    let h = Harness::new(|_| {});
    let (admin, read) = (h.key(Scope::Admin, None), h.key(Scope::Read, None));
    let tenant = h.key(Scope::Read, Some("acme"));

    let page = h.get("/alerts", Some(&read)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    for section in [
        "id=\"firing\"",
        "id=\"history\"",
        "id=\"silences\"",
        "id=\"deliveries\"",
    ] {
        assert!(html.contains(section), "{section}: {html}");
    }
    assert!(
        !html.contains("action=\"/alerts/silences\""),
        "no form for a reader: {html}"
    );
    assert_eq!(h.get("/alerts", Some(&tenant)).await.status, 403);

    let form = "rule=&until=2099-01-01T00%3A00%3A00Z&comment=%3Cb%3Emaintenance%3C%2Fb%3E&csrf=";
    let refused = post_form(&h, "/alerts/silences", &read, form).await;
    assert_eq!(refused.status, 403, "{}", refused.text());

    let created = post_form(&h, "/alerts/silences", &admin, form).await;
    assert_eq!(created.status, 303, "{}", created.text());
    let silences = h.get("/api/v1/silences", Some(&admin)).await.json();
    let silences = silences.as_array().unwrap();
    assert_eq!(silences.len(), 1, "{silences:?}");
    let id = silences[0]["id"].as_i64().unwrap();
    assert_eq!(silences[0]["comment"], "<b>maintenance</b>");

    let html = h.get("/alerts", Some(&admin)).await.text();
    assert!(html.contains("&#60;b&#62;maintenance&#60;/b&#62;"), "escaped: {html}");
    assert!(
        html.contains(&format!("action=\"/alerts/silences/{id}/delete\"")),
        "{html}"
    );

    let bad = post_form(&h, "/alerts/silences", &admin, "until=soon&csrf=").await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("until"), "{}", bad.text());

    let refused = post_form(&h, &format!("/alerts/silences/{id}/delete"), &read, "csrf=").await;
    assert_eq!(refused.status, 403);
    let ended = post_form(&h, &format!("/alerts/silences/{id}/delete"), &admin, "csrf=").await;
    assert_eq!(ended.status, 303, "{}", ended.text());
    let silences = h.get("/api/v1/silences", Some(&admin)).await.json();
    assert_eq!(silences.as_array().unwrap().len(), 0, "{silences}");
}

#[tokio::test]
async fn the_stream_page_carries_the_filters_to_its_stream() {
    let h = Harness::new(|_| {});
    let read = h.key(Scope::Read, None);
    let page = h
        .get(
            "/stream?log=default&action=login.*&outcome=failure&text=a%20%22b%22",
            Some(&read),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(
        html.contains(
            "data-src=\"/stream/events?log=default&#38;action=login.%2A&#38;outcome=failure&#38;text=a%20%22b%22\""
        ),
        "{html}"
    );
    assert!(html.contains("aria-live=\"polite\""), "{html}");
    assert!(html.contains("<script defer src=\"/static/stream.js?v="), "{html}");
    assert!(html.contains("<option value=\"failure\" selected>"), "{html}");
    assert!(html.contains("href=\"/stream\" aria-current=\"page\""), "{html}");

    let bad = h.get("/stream?outcome=maybe", Some(&read)).await;
    assert_eq!(bad.status, 200);
    assert!(bad.text().contains("role=\"alert\""), "{}", bad.text());
    assert!(!bad.text().contains("data-src"), "{}", bad.text());
    let ingest = h.key(Scope::Ingest, None);
    assert_eq!(h.get("/stream", Some(&ingest)).await.status, 403);
}
