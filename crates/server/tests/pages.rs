//! The dashboard's pages driven through the router with an API key (the
//! `Viewer` accepts `Authorization: Bearer`): each page renders for a
//! reader; a tenant-restricted key sees only its tenant's events; text
//! from events is escaped wherever it appears; bad and over-long
//! parameters are refused by name; every page carries the CSP; static
//! files are served with their types and cache rules.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{header, Method, Request};
use sealtrail_meta::Scope;
use serde_json::{json, Value};

mod support;

use support::{oneshot, Harness, Reply};

const CSP_START: &str = "default-src 'none'; script-src 'self'";

impl Reply {
    /// Assert an HTML page with this status and the dashboard's CSP.
    fn page(&self, status: u16) -> String {
        let text = self.text();
        assert_eq!(self.status.as_u16(), status, "{text}");
        assert!(self.content_type().starts_with("text/html"), "{}", self.content_type());
        let csp = self
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.starts_with(CSP_START), "{csp}");
        assert!(!text.contains(" style=\""), "no inline style attributes");
        text
    }
}

fn event(tenant: &str, actor: &str, action: &str, message: &str) -> Value {
    json!({
        "action": action,
        "tenant": tenant,
        "actor": {"id": actor, "name": format!("{actor} name")},
        "targets": [{"type": "lead", "id": format!("L-{tenant}")}],
        "outcome": "success",
        "message": message,
    })
}

/// A harness with events of tenants acme and globex in log `main`.
async fn seeded() -> (Harness, String) {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    h.store(
        "default",
        &admin,
        event("acme", "ann", "lead.created", "acme made a lead"),
    )
    .await;
    h.store(
        "default",
        &admin,
        event("globex", "gus", "lead.created", "globex made a lead"),
    )
    .await;
    let mut failed = event("acme", "ann", "lead.deleted", "acme could not delete");
    failed["outcome"] = json!("failure");
    failed["changes"] =
        json!({"before": {"status": "open", "owner": "ann"}, "after": {"status": "closed", "owner": "ann"}});
    h.store("default", &admin, failed).await;
    h.settle("default");
    (h, admin)
}

#[tokio::test]
async fn a_new_server_says_how_to_send_the_first_event() {
    // The harness makes log `default`; a reader bound to a tenant that
    // has no log of its own yet may read none.
    let h = Harness::new(|_| {});
    let read = h.key(Scope::Read, Some("acme"));
    let page = h.get("/", Some(read.as_str())).await.page(200);
    assert!(page.contains("No events yet"), "{page}");
    assert!(page.contains("/api/v1/logs/default/events"), "{page}");
    assert!(
        !page.contains("href=\"/users\""),
        "a reader is not sent to the users page: {page}"
    );
    // A log asked for by name that does not exist is still an error.
    h.get("/?log=nosuch", Some(read.as_str())).await.page(404);
}

#[tokio::test]
async fn every_page_renders_for_a_reader() {
    let (h, _) = seeded().await;
    let read = h.key(Scope::Read, None);
    let key = Some(read.as_str());

    let overview = h.get("/?log=default&range=24h", key).await.page(200);
    assert!(overview.contains("Overview of default"), "{overview}");
    assert!(overview.contains("3 events"), "{overview}");
    assert!(overview.contains("1 failures"), "{overview}");
    assert!(overview.contains("type=\"application/json\" id=\"rate-data\""));
    assert!(overview.contains("<svg class=\"bars\""));
    assert!(
        overview.contains(">lead.created</text>"),
        "top actions drawn: {overview}"
    );
    assert!(overview.contains(">2</text>"), "lead.created twice: {overview}");

    let search = h.get("/search?log=default", key).await.page(200);
    assert!(search.contains("acme made a lead") && search.contains("globex made a lead"));
    for label in [
        "f-text",
        "f-action",
        "f-actor",
        "f-target",
        "f-tenant",
        "f-outcome",
        "f-since",
        "f-until",
    ] {
        assert!(search.contains(&format!("<label for=\"{label}\"")), "{label} labelled");
    }
    assert!(search.contains("<time datetime=\""), "{search}");
    assert!(
        search.contains("href=\"/search/export?log=default&#38;format=csv\""),
        "{search}"
    );

    let filtered = h.get("/search?log=default&outcome=failure", key).await.page(200);
    assert!(filtered.contains("acme could not delete"));
    assert!(!filtered.contains("made a lead"), "{filtered}");

    let detail = h.get("/events/default/2", key).await.page(200);
    assert!(detail.contains("Verified against checkpoint size 3, root"), "{detail}");
    assert!(detail.contains("/api/v1/logs/default/receipts/2"));
    assert!(
        detail.contains("&#34;open&#34;") && detail.contains("&#34;closed&#34;"),
        "{detail}"
    );
    assert!(
        !detail.contains("<code>owner</code>"),
        "unchanged fields are not in the diff"
    );

    let timeline = h.get("/entities/lead/L-acme?log=default", key).await.page(200);
    assert!(timeline.contains("acme made a lead") && timeline.contains("acme could not delete"));
    assert!(!timeline.contains("globex"), "{timeline}");
    // Newest first.
    assert!(timeline.find("could not delete").unwrap() < timeline.find("made a lead").unwrap());
    let as_actor = h.get("/entities/user/gus?log=default", key).await.page(200);
    assert!(as_actor.contains("globex made a lead") && !as_actor.contains("acme"));

    let runs = h.get("/data/runs", key).await.page(200);
    assert!(runs.contains("No runs yet"), "{runs}");
    h.get("/data/runs/77", key).await.page(404);
    h.get("/events/default/99", key).await.page(404);
}

#[tokio::test]
async fn the_search_deep_link_is_absolute_and_htmx_gets_the_results_alone() {
    let (h, _) = seeded().await;
    let read = h.key(Scope::Read, None);
    let r = h.get("/search?log=default&actor=&since=1h&outcome=", Some(&read)).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let to = r.headers.get(header::LOCATION).unwrap().to_str().unwrap().to_string();
    assert!(to.starts_with("/search?log=default&since=20"), "{to}");
    assert!(to.contains("&until=20"), "{to}");
    assert!(!to.contains("actor="), "{to}");
    // The canonical link renders (no second redirect).
    let page = h.get(&to, Some(&read)).await.page(200);
    assert!(page.contains("acme made a lead"));

    let req = Request::builder()
        .uri("/search?log=default&text=globex&since=")
        .header(header::AUTHORIZATION, format!("Bearer {read}"))
        .header("HX-Request", "true")
        .body(Body::empty())
        .unwrap();
    let r = oneshot(&h.router, req).await;
    let part = r.page(200);
    assert!(part.starts_with("<section id=\"results\""), "{part}");
    assert!(part.contains("globex made a lead") && !part.contains("acme made"));
    assert_eq!(r.headers.get("hx-push-url").unwrap(), "/search?log=default&text=globex");

    // A refused filter is shown in the results htmx swaps in.
    let req = Request::builder()
        .uri("/search?log=default&outcome=maybe")
        .header(header::AUTHORIZATION, format!("Bearer {read}"))
        .header("HX-Request", "true")
        .body(Body::empty())
        .unwrap();
    let part = oneshot(&h.router, req).await.page(200);
    assert!(part.contains("outcome: &#34;maybe&#34;"), "{part}");

    // Paging with the API's cursor.
    let first = h.get("/search?log=default&limit=2", Some(&read)).await.page(200);
    assert!(
        first.contains("href=\"/search?log=default&#38;limit=2&#38;after=1\""),
        "{first}"
    );
    let second = h
        .get("/search?log=default&limit=2&after=1", Some(&read))
        .await
        .page(200);
    assert!(
        second.contains("acme made a lead") && !second.contains("globex"),
        "{second}"
    );
}

#[tokio::test]
async fn a_tenant_key_sees_only_its_tenant() {
    let (h, _) = seeded().await;
    let acme = h.key(Scope::Read, Some("acme"));
    let key = Some(acme.as_str());

    let search = h.get("/search?log=default", key).await.page(200);
    assert!(search.contains("acme made a lead"));
    assert!(!search.contains("globex"), "{search}");
    let other = h.get("/search?log=default&tenant=globex", key).await.page(403);
    assert!(other.contains("may only read events of tenant"), "{other}");

    h.get("/events/default/0", key).await.page(200);
    let hidden = h.get("/events/default/1", key).await.page(404);
    assert!(!hidden.contains("globex made"), "{hidden}");

    let timeline = h.get("/entities/lead/L-globex?log=default", key).await.page(200);
    assert!(timeline.contains("No events name this entity"), "{timeline}");
    let by_actor = h.get("/entities/user/gus?log=default", key).await.page(200);
    assert!(!by_actor.contains("globex"), "{by_actor}");

    let overview = h.get("/?log=default", key).await.page(200);
    assert!(overview.contains("2 events"), "{overview}");
    assert!(!overview.contains("gus"), "{overview}");

    // The export of the search runs the API's export for the same filter.
    let csv = h.get("/search/export?log=default&format=csv", key).await;
    assert_eq!(csv.status, 200);
    assert!(csv.content_type().starts_with("text/csv"));
    assert!(csv.text().contains("acme made a lead") && !csv.text().contains("globex"));
    // Data runs read beyond any one tenant.
    h.get("/data/runs", key).await.page(403);
}

#[tokio::test]
async fn xlsx_export_of_a_search_is_a_workbook() {
    let (h, _) = seeded().await;
    let read = h.key(Scope::Read, None);
    let r = h
        .get("/search/export?log=default&format=xlsx&outcome=failure", Some(&read))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.content_type().contains("spreadsheetml"), "{}", r.content_type());
    let book = calamine::open_workbook_auto_from_rs(std::io::Cursor::new(r.bytes.clone())).unwrap();
    let mut book = book;
    use calamine::Reader;
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.height(), 2, "a header and the one failure");
    let text: String = sheet.rows().flatten().map(|c| c.to_string()).collect();
    assert!(text.contains("acme could not delete"), "{text}");
}

#[tokio::test]
async fn text_from_events_is_escaped_everywhere() {
    let h = Harness::new(|_| {});
    let admin = h.key(Scope::Admin, None);
    let hostile = "\"><img src=x onerror=alert(1)><script>alert(2)</script>";
    let js = "javascript:alert(3)";
    h.store(
        "default",
        &admin,
        json!({
            "action": "lead.updated",
            "tenant": "acme",
            "actor": {"id": js, "name": hostile, "type": "user"},
            "targets": [{"type": "lead", "id": js, "name": hostile}],
            "message": hostile,
            "details": {hostile: hostile, "url": js},
            "changes": {"before": {hostile: "<b>old</b>"}, "after": {hostile: "<b>new</b>"}},
        }),
    )
    .await;
    h.settle("default");
    let read = h.key(Scope::Read, None);
    let pages = [
        "/?log=default".to_string(),
        "/search?log=default".to_string(),
        "/events/default/0".to_string(),
        "/entities/lead/javascript%3Aalert%283%29?log=default".to_string(),
        "/entities/user/javascript%3Aalert%283%29?log=default".to_string(),
    ];
    for uri in &pages {
        let html = h.get(uri, Some(&read)).await.page(200);
        // Only the page's own script elements: the vendored files.
        let scripts = html.matches("<script").count();
        let own = html.matches("<script defer src=\"/static/").count()
            + html.matches("<script type=\"application/json\"").count();
        assert_eq!(scripts, own, "{uri}: {html}");
        assert!(!html.contains("<img"), "{uri}: {html}");
        assert!(!html.contains("<b>"), "{uri}: {html}");
        assert!(!html.contains("href=\"javascript"), "{uri}: {html}");
        assert!(!html.contains(hostile), "{uri}: {html}");
        assert!(
            html.contains("alert(2)") || uri.starts_with("/?"),
            "{uri}: the text is shown, escaped"
        );
    }
    let detail = h.get("/events/default/0", Some(&read)).await.page(200);
    assert!(
        detail.contains("&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"),
        "{detail}"
    );
    assert!(detail.contains("&#60;b&#62;new&#60;/b&#62;"), "{detail}");
    // The link to the actor's timeline keeps the id inside a local path.
    assert!(
        detail.contains("href=\"/entities/user/javascript%3Aalert%283%29?log=default\""),
        "{detail}"
    );
}

#[tokio::test]
async fn bad_and_over_long_parameters_are_refused_by_name() {
    let (h, _) = seeded().await;
    let read = h.key(Scope::Read, None);
    let key = Some(read.as_str());
    let long = "a".repeat(5000);
    let r = h.get(&format!("/search?log=default&actor={long}"), key).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("\\\"actor\\\" is 5000 bytes"), "{}", r.text());
    let r = h
        .get(&format!("/search?log=default&text={}", "b".repeat(20_000)), key)
        .await;
    assert_eq!(r.status, 414, "{}", r.text());

    let bad = h.get("/search?log=default&outcome=maybe", key).await.page(400);
    assert!(bad.contains("outcome: &#34;maybe&#34;"), "{bad}");
    let bad = h.get("/search?log=default&limit=ten", key).await.page(400);
    assert!(bad.contains("limit: &#34;ten&#34; is not a whole number"), "{bad}");
    let bad = h.get("/search?log=default&colour=red", key).await.page(400);
    assert!(bad.contains("unknown field `colour`"), "{bad}");
    let bad = h.get("/?range=1y", key).await.page(400);
    assert!(bad.contains("range: &#34;1y&#34;"), "{bad}");
    h.get("/events/default/x", key).await.page(400);
    h.get("/search?log=nope", key).await.page(404);
}

#[tokio::test]
async fn pages_need_a_caller_and_the_read_scope() {
    let (h, _) = seeded().await;
    let r = h.get("/search?log=default", None).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.headers.get(header::LOCATION).unwrap(),
        "/login?next=%2Fsearch%3Flog%3Ddefault"
    );
    let ingest = h.key(Scope::Ingest, None);
    h.get("/search?log=default", Some(&ingest)).await.page(403);
    h.get("/events/default/0", Some(&ingest)).await.page(403);
}

#[tokio::test]
async fn static_files_have_types_hashes_and_cache_rules() {
    let h = Harness::new(|_| {});
    let read = h.key(Scope::Read, None);
    let page = h.get("/search", Some(&read)).await.text();
    let css = page
        .split("href=\"")
        .find_map(|s| s.strip_prefix("/static/app.css?v="))
        .map(|s| s.split('"').next().unwrap().to_string())
        .expect("the stylesheet is linked with its hash");
    let r = h
        .call(Method::GET, &format!("/static/app.css?v={css}"), None, None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/css; charset=utf-8");
    assert_eq!(
        r.headers.get(header::CACHE_CONTROL).unwrap(),
        "public, max-age=31536000, immutable"
    );
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&r.bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(digest.starts_with(&css), "the version is the content's hash");

    let r = h
        .call(Method::GET, "/static/htmx-2.0.11.min.js?v=stale", None, None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/javascript; charset=utf-8");
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-cache");
    let etag = r.headers.get(header::ETAG).unwrap().clone();
    let req = Request::builder()
        .uri("/static/htmx-2.0.11.min.js")
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(oneshot(&h.router, req).await.status, 304);

    for missing in ["/static/nope.js", "/static/../Cargo.toml", "/static/MANIFEST.toml"] {
        let r = h.call(Method::GET, missing, None, None).await;
        assert_eq!(r.status, 404, "{missing}");
    }
    let license = h
        .call(Method::GET, "/static/licenses/uplot-LICENSE.txt", None, None)
        .await;
    assert!(license.text().contains("MIT"));
}
