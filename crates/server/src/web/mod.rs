//! The dashboard: HTML pages served at `/` beside the API at `/api/…`.
//!
//! Pages are rendered on the server from askama templates (checked at
//! compile time, escaping on by default) and made live with a few small
//! vendored scripts; nothing is fetched from elsewhere at build or run
//! time. Every HTML response carries a strict Content-Security-Policy: no
//! inline scripts or styles, so text from events can never run.
//!
//! Architecture invariant: pages read and change state only through the
//! same `App` operations and authorisation checks (`Caller::require`) as
//! the API; a page never grants what the API would refuse.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderValue, AUTHORIZATION};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;

use crate::app::{App, Caller};

pub mod account;
pub mod alerts;
pub mod assets;
pub mod auth;
pub mod event;
pub mod holds;
pub mod jobs;
pub mod overview;
pub mod provider;
pub mod reports;
pub mod runs;
pub mod search;
pub mod stream;
pub mod users;
pub mod verification;
pub mod view;

/// The Content-Security-Policy of every page: scripts, styles, images
/// and connections from this server only; no inline code, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes; merged into the server's router.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .merge(assets::routes())
        .merge(auth::routes())
        .merge(provider::routes())
        .merge(account::routes())
        .merge(overview::routes())
        .merge(search::routes())
        .merge(event::routes())
        .merge(runs::routes())
        .merge(jobs::routes())
        .merge(reports::routes())
        .merge(stream::routes())
        .merge(verification::routes())
        .merge(alerts::routes())
        .merge(users::routes())
        .merge(holds::routes())
}

/// Security headers for every response that is not already carrying
/// its own policy.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    response
}

/// What every page's frame shows: who is signed in, the navigation
/// their role may use, and the session's CSRF token for the forms in it.
/// Page templates extend `base.html` and carry one of these as `layout`.
pub struct Layout {
    /// The signed-in user's name; `None` on the sign-in page.
    pub user: Option<String>,
    pub role: &'static str,
    /// The session's CSRF token, sent back by every form that changes state.
    pub csrf: String,
    /// The path of the current section, marked `aria-current` in the navigation.
    pub current: &'static str,
    /// Whether the administration pages are listed.
    pub admin: bool,
    /// Whether reports are offered: read access for every tenant.
    pub reports: bool,
}

/// An entry of the navigation.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

impl Layout {
    /// The frame of a page for `caller`, with `current` the page's section.
    pub fn for_caller(caller: &Caller, csrf: String, current: &'static str) -> Layout {
        let (user, role) = match caller {
            Caller::User(s) => (Some(s.user.name.clone()), s.user.role.as_str()),
            Caller::Key(k) => (Some(format!("key {}", k.id)), k.scope.as_str()),
            Caller::Anonymous => (None, ""),
        };
        Layout {
            user,
            role,
            csrf,
            current,
            admin: caller.require(sealtrail_meta::Scope::Admin).is_ok(),
            reports: caller.require(sealtrail_meta::Scope::Read).is_ok() && caller.tenant().is_none(),
        }
    }

    /// The link to embedded static file `name`, pinned to its content.
    pub fn asset(&self, name: &str) -> String {
        assets::url(name)
    }

    /// The navigation this caller may use. Sections are added here as
    /// their pages are.
    pub fn nav(&self) -> Vec<NavItem> {
        let mut items: Vec<(&'static str, &'static str)> = vec![("/", "Overview")];
        items.push(("/search", "Search"));
        items.push(("/data/runs", "Data runs"));
        items.push(("/stream", "Live stream"));
        items.push(("/verification", "Verification"));
        items.push(("/alerts", "Alerts"));
        items.push(("/jobs", "Jobs"));
        if self.reports {
            items.push(("/reports", "Reports"));
        }
        if self.admin || self.role == "auditor" {
            items.push(("/holds", "Legal holds"));
        }
        if self.admin {
            items.push(("/users", "Users"));
        }
        // Signed-in people have an account; key holders (`key …`, a name
        // no user can have) do not.
        if self.user.as_deref().is_some_and(|u| !u.starts_with("key ")) {
            items.push(("/account", "Account"));
        }
        items
            .into_iter()
            .map(|(href, label)| NavItem {
                href,
                label,
                current: href == self.current,
            })
            .collect()
    }
}

/// The caller of a page: the signed-in user of the browser session, or
/// the bearer of an API key (scripts and tests). Anyone else is sent to
/// `/login` and brought back to the page after signing in.
pub struct Viewer {
    pub caller: Caller,
    /// The session's CSRF token for the page's forms; empty for API keys,
    /// whose requests carry no cookie to forge.
    pub csrf: String,
}

impl Viewer {
    /// The frame of a page in section `current` for this viewer.
    pub fn layout(&self, current: &'static str) -> Layout {
        Layout::for_caller(&self.caller, self.csrf.clone(), current)
    }
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        if let Some((caller, csrf)) = session_caller(parts, app).await? {
            return Ok(Viewer { caller, csrf });
        }
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            let value = value.to_str().map_err(|_| {
                crate::problem::Problem::unauthorized("the Authorization header is not ASCII").into_response()
            })?;
            let caller = app
                .authenticate(Some(value))
                .await
                .map_err(IntoResponse::into_response)?;
            return Ok(Viewer {
                caller,
                csrf: String::new(),
            });
        }
        Err(to_login(parts))
    }
}

/// The signed-in caller of the request's session cookie and the
/// session's CSRF token, if there is a live session.
/// The session is found (and CSRF checked) by [`auth::sessions`], which
/// runs before every route and leaves the caller in the extensions.
async fn session_caller(parts: &Parts, _app: &Arc<App>) -> Result<Option<(Caller, String)>, Response> {
    if parts.headers.contains_key(AUTHORIZATION) {
        return Ok(None);
    }
    Ok(parts
        .extensions
        .get::<auth::SessionCaller>()
        .map(|s| (s.caller.clone(), s.csrf.clone())))
}

/// A redirect to the sign-in page that returns to this page afterwards.
fn to_login(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Redirect::to(&format!("/login?next={}", encode_component(here))).into_response()
}

/// Percent-encode everything but unreserved characters (RFC 3986 §2.3).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(askama::Template)]
    #[template(
        source = "{% extends \"base.html\" %}{% block title %}T{% endblock %}{% block content %}<p>{{ text }}</p>{% endblock %}",
        ext = "html"
    )]
    struct Probe {
        layout: Layout,
        text: String,
    }

    #[test]
    fn the_frame_escapes_what_it_shows() {
        use askama::Template as _;
        let layout = Layout {
            user: Some("<b>eve</b>".into()),
            role: "viewer",
            csrf: "t0k\"en".into(),
            current: "/",
            admin: false,
            reports: true,
        };
        let html = Probe {
            layout,
            text: "<script>alert(1)</script>".into(),
        }
        .render()
        .expect("renders");
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
        assert!(html.contains("&#60;b&#62;eve&#60;/b&#62;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert_eq!(
            html.matches("<script").count(),
            2,
            "only the two vendored scripts: {html}"
        );
        assert!(
            !html.contains("href=\"/users\""),
            "a viewer is not shown the users page: {html}"
        );
        assert!(html.contains("aria-current=\"page\""), "{html}");
        assert!(
            html.contains("href=\"/reports\""),
            "reports are offered to readers: {html}"
        );
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(
            encode_component("/search?q=a b&log=x"),
            "%2Fsearch%3Fq%3Da%20b%26log%3Dx"
        );
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_component("A-z_0.9~"), "A-z_0.9~");
    }
}
