//! The `/jobs` pages' changes, as signed-in browsers make them: an admin
//! creates, replaces, runs, disables, enables and deletes a job with POST
//! forms carrying the CSRF token, refusals name the field on the page,
//! auditors and viewers get no forms and their POSTs are refused, and
//! every change lands in the system log as its `job.*` event.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use axum::http::{header, Method};
use sealtrail_meta::{Role, Scope};
use serde_json::Value;
use support::{browser, sign_in, Harness, Reply, Session};

const JOB: &str = "nightly-verify";

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", sealtrail_server::web::encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post(h: &Harness, s: &Session, uri: &str, fields: &[(&str, &str)]) -> Reply {
    let mut all = vec![("csrf", s.csrf.as_str())];
    all.extend_from_slice(fields);
    browser(h, Method::POST, uri, Some(s), Some(form(&all))).await
}

/// The page's `<main>`: the header's sign-out form is not the page's.
fn main_of(r: &Reply) -> String {
    let text = r.text();
    text.split_once("<main").map_or(text.clone(), |(_, m)| m.to_string())
}

fn location(r: &Reply) -> &str {
    r.headers.get(header::LOCATION).map_or("", |v| v.to_str().unwrap())
}

/// The job as the API shows it, or `None` (404).
async fn job(h: &Harness, key: &str) -> Option<Value> {
    let r = h.get(&format!("/api/v1/jobs/{JOB}"), Some(key)).await;
    match r.status.as_u16() {
        200 => Some(r.json()),
        404 => None,
        other => panic!("{other}: {}", r.text()),
    }
}

const TOML: &str = "name = \"nightly-verify\"\ntype = \"verify\"\nlog = \"default\"\nschedule = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_change_jobs_from_the_pages_and_others_may_only_look() {
    let h = Harness::new(|c| c.scheduler.tick_ms = 20);
    sealtrail_server::jobs::Jobs::start(&h.app).unwrap();
    let key = h.key(Scope::Admin, None);
    let admin = sign_in(&h, "ada", Role::Admin).await;
    let auditor = sign_in(&h, "otto", Role::Auditor).await;
    let viewer = sign_in(&h, "vic", Role::Viewer).await;

    // Only admins are offered the form.
    let page = browser(&h, Method::GET, "/jobs", Some(&admin), None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("action=\"/jobs\""), "{}", page.text());
    assert!(page.text().contains("<label for=\"j-definition\""), "{}", page.text());
    for s in [&auditor, &viewer] {
        let page = browser(&h, Method::GET, "/jobs", Some(s), None).await;
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(!main_of(&page).contains("method=\"post\""), "{}", page.text());
        let r = post(&h, s, "/jobs", &[("definition", TOML)]).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("this needs role admin"), "{}", r.text());
    }
    assert!(job(&h, &key).await.is_none(), "refused posts change nothing");

    // Without the session's token the form is refused before any page runs.
    let r = browser(
        &h,
        Method::POST,
        "/jobs",
        Some(&admin),
        Some(form(&[("definition", TOML)])),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("CSRF"), "{}", r.text());

    // A refused definition: every problem on the page, naming its field,
    // and the text kept to correct.
    let bad = "name = \"nightly-verify\"\ntype = \"verify\"\nlog = \"default\"\nschedule = \"0 2 * * *\"\ntimezone = \"Nowhere/City\"\ncolour = \"red\"\n";
    let r = post(&h, &admin, "/jobs", &[("definition", bad)]).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let html = r.text();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(
        html.contains("definition: timezone: unknown time zone &#34;Nowhere/City&#34;"),
        "{html}"
    );
    assert!(html.contains("unknown field &#34;colour&#34;"), "{html}");
    assert!(html.contains("colour = &#34;red&#34;"), "the text is kept: {html}");
    let r = post(&h, &admin, "/jobs", &[("definition", "{\"name\": ")]).await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("definition: invalid JSON at line 1"), "{}", r.text());
    assert!(job(&h, &key).await.is_none());

    // Created from TOML, then replaced from JSON.
    let r = post(&h, &admin, "/jobs", &[("definition", TOML)]).await;
    assert_eq!(
        (r.status.as_u16(), location(&r)),
        (303, "/jobs/nightly-verify"),
        "{}",
        r.text()
    );
    assert_eq!(job(&h, &key).await.unwrap()["spec"]["timezone"], "Europe/Berlin");
    let json = r#"{"name": "nightly-verify", "type": "verify", "log": "default", "schedule": "30 3 * * *", "timezone": "UTC"}"#;
    let r = post(&h, &admin, "/jobs", &[("definition", json)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let view = job(&h, &key).await.unwrap();
    assert_eq!(
        (view["spec"]["schedule"].as_str(), view["spec"]["timezone"].as_str()),
        (Some("30 3 * * *"), Some("UTC"))
    );

    // The job's page: actions for the admin only.
    let page = browser(&h, Method::GET, "/jobs/nightly-verify", Some(&admin), None)
        .await
        .text();
    for action in ["run", "disable", "delete"] {
        assert!(
            page.contains(&format!("action=\"/jobs/nightly-verify/{action}\"")),
            "{action}: {page}"
        );
    }
    assert!(page.contains(&format!("value=\"{}\"", admin.csrf)), "{page}");
    for s in [&auditor, &viewer] {
        let page = browser(&h, Method::GET, "/jobs/nightly-verify", Some(s), None).await;
        assert_eq!(page.status, 200);
        assert!(!main_of(&page).contains("method=\"post\""), "{}", page.text());
        for action in ["run", "enable", "disable", "delete"] {
            let r = post(&h, s, &format!("/jobs/{JOB}/{action}"), &[("confirm", "yes")]).await;
            assert_eq!(r.status, 403, "{action}: {}", r.text());
        }
    }
    let unchanged = job(&h, &key).await.unwrap();
    assert_eq!(
        (&unchanged["enabled"], &unchanged["run_requested"]),
        (&Value::Bool(true), &Value::Bool(false))
    );

    // Run now: the scheduler thread takes it.
    let r = post(&h, &admin, "/jobs/nightly-verify/run", &[]).await;
    assert_eq!((r.status.as_u16(), location(&r)), (303, "/jobs/nightly-verify"));
    let start = Instant::now();
    loop {
        let runs = h.get(&format!("/api/v1/jobs/{JOB}/runs"), Some(&key)).await.json();
        if let Some(run) = runs.as_array().unwrap().first() {
            assert_eq!(
                (run["trigger"].as_str(), run["outcome"].as_str()),
                (Some("manual"), Some("success"))
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Disable and enable.
    let r = post(&h, &admin, "/jobs/nightly-verify/disable", &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(job(&h, &key).await.unwrap()["enabled"], false);
    let page = browser(&h, Method::GET, "/jobs/nightly-verify", Some(&admin), None)
        .await
        .text();
    assert!(page.contains("action=\"/jobs/nightly-verify/enable\""), "{page}");
    let r = post(&h, &admin, "/jobs/nightly-verify/enable", &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(job(&h, &key).await.unwrap()["enabled"], true);

    // Unknown actions and jobs; delete wants its box ticked.
    let r = post(&h, &admin, "/jobs/nightly-verify/pause", &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("action: &#34;pause&#34;"), "{}", r.text());
    let r = post(&h, &admin, "/jobs/nope/run", &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = post(&h, &admin, "/jobs/nightly-verify/delete", &[]).await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("confirm: tick the box"), "{}", r.text());
    assert!(job(&h, &key).await.is_some());
    let r = post(&h, &admin, "/jobs/nightly-verify/delete", &[("confirm", "yes")]).await;
    assert_eq!((r.status.as_u16(), location(&r)), (303, "/jobs"));
    assert!(job(&h, &key).await.is_none());

    // Every change is in the system log, by the admin who made it (the
    // run by the scheduler).
    h.app.drain_outbox().unwrap();
    h.settle("system");
    let events = h
        .get(
            "/api/v1/logs/system/events?action=job.*&limit=100&order=oldest",
            Some(&key),
        )
        .await
        .json();
    let seen: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["event"];
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let by = |a: &str, who: &str| (a.to_string(), who.to_string());
    let scheduler = seen
        .iter()
        .find(|(a, _)| a == "job.run")
        .map(|(_, who)| who.clone())
        .unwrap_or_default();
    assert_eq!(
        seen,
        vec![
            by("job.created", "ada"),
            by("job.updated", "ada"),
            by("job.run_requested", "ada"),
            by("job.run", &scheduler),
            by("job.disabled", "ada"),
            by("job.enabled", "ada"),
            by("job.deleted", "ada"),
        ],
        "{events}"
    );
    h.app.jobs.stop();
}
