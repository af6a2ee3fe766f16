//! What the dashboard's pages share: rendering a template as a response,
//! the error page, times as `<time>` elements, events as table rows, and
//! the logs a caller may pick from.
//!
//! Nothing here reads or authorises on its own: pages fetch through the
//! API's functions and only shape what those return for display.

use std::sync::Arc;

use askama::Template;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sealtrail_event::{Event, Timestamp};
use sealtrail_meta::SYSTEM_LOG;
use sealtrail_trail::Found;

use super::{encode_component, Layout, Viewer};
use crate::app::{App, Caller};
use crate::problem::Problem;

/// Characters of a message or label shown in a table cell before it is cut.
const CELL_CHARS: usize = 160;

/// `template` rendered as an HTML response.
pub fn html(template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => Problem::internal(format!("rendering a page: {e}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    title: String,
    detail: String,
}

/// A refusal or fault as an HTML page with the problem's status, title
/// and detail (and `Retry-After` when it has one).
pub fn error_page(viewer: &Viewer, current: &'static str, problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page = ErrorPage {
        layout: viewer.layout(current),
        status: problem.status,
        title: problem.title.clone(),
        detail: problem.detail.clone(),
    };
    let mut response = html(&page);
    *response.status_mut() = status;
    if let Some(seconds) = problem.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A moment as a `<time>` element shows it: machine-readable RFC 3339 in
/// `datetime`, and UTC text that the page's script may show in the
/// browser's zone instead.
pub struct Time {
    pub iso: String,
    pub text: String,
}

impl Time {
    pub fn of(t: Timestamp) -> Time {
        Time {
            iso: t.to_string(),
            text: t.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        }
    }

    /// A stored RFC 3339 text; shown as given when it does not parse.
    pub fn parse(text: &str) -> Time {
        match text.parse::<Timestamp>() {
            Ok(t) => Time::of(t),
            Err(_) => Time {
                iso: text.to_string(),
                text: text.to_string(),
            },
        }
    }
}

/// The start of the next whole second: the end of a range "until now"
/// in a deep link, readable and still covering what just arrived (the
/// end of a range is exclusive).
pub fn next_second() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second().saturating_add(1)).unwrap_or(now)
}

/// `text` cut to `CELL_CHARS` characters, marked with an ellipsis when cut.
pub fn cut(text: &str) -> String {
    cut_to(text, CELL_CHARS)
}

pub fn cut_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// A link into the dashboard: `path` and its query pairs, each
/// percent-encoded. Values from events only ever appear encoded inside
/// a local path, so they can never make a link of another scheme.
pub fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = path.to_string();
    let mut first = true;
    for (name, value) in pairs {
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(name);
        out.push('=');
        out.push_str(&encode_component(value));
    }
    out
}

/// A named entity link: text and the timeline it leads to.
pub struct EntityLink {
    pub text: String,
    pub href: String,
}

/// The timeline of entity `kind:id` in `log`.
pub fn entity_href(log: &str, kind: &str, id: &str) -> String {
    link(
        &format!("/entities/{}/{}", encode_component(kind), encode_component(id)),
        &[("log", log)],
    )
}

/// One event as a row of a results table.
pub struct EventRow {
    pub index: u64,
    pub href: String,
    pub occurred: Time,
    pub action: String,
    pub actor: Option<EntityLink>,
    pub targets: Vec<EntityLink>,
    pub outcome: String,
    pub severity: &'static str,
    pub tenant: String,
    pub message: String,
}

impl EventRow {
    pub fn of(log: &str, found: &Found) -> EventRow {
        EventRow::from_event(log, found.index, &found.event)
    }

    pub fn from_event(log: &str, index: u64, e: &Event) -> EventRow {
        EventRow {
            index,
            href: format!("/events/{}/{index}", encode_component(log)),
            occurred: Time::of(e.occurred_at),
            action: cut(&e.action),
            actor: e.actor.as_ref().map(|a| EntityLink {
                text: cut(a.name.as_deref().map_or(a.id.as_str(), |n| n)),
                href: entity_href(log, actor_kind(a), &a.id),
            }),
            targets: e
                .targets
                .iter()
                .flatten()
                .map(|t| EntityLink {
                    text: cut(&format!("{}:{}", t.kind, t.id)),
                    href: entity_href(log, &t.kind, &t.id),
                })
                .collect(),
            outcome: e.outcome.map_or("", |o| o.as_str()).to_string(),
            severity: e.severity.as_str(),
            tenant: e.tenant.as_deref().map(cut).unwrap_or_default(),
            message: e
                .message
                .as_deref()
                .or(e.error.as_ref().and_then(|f| f.message.as_deref()))
                .map(cut)
                .unwrap_or_default(),
        }
    }
}

/// The entity type an actor's timeline is filed under: its `type`
/// (`user`, `service`, …), `user` when it has none.
pub fn actor_kind(a: &sealtrail_event::Actor) -> &'static str {
    a.kind.map_or("user", |k| k.as_str())
}

/// The logs `caller` may pick from, as `GET /api/v1/logs` lists them
/// (the system log only for those who may read it), plus `asked` when
/// the caller may read it. Blocking.
pub fn readable_logs(app: &App, caller: &Caller, asked: Option<&str>) -> Result<Vec<String>, Problem> {
    let infos = app.data.list_logs().map_err(|e| Problem::internal(e.to_string()))?;
    let mut out: Vec<String> = infos
        .into_iter()
        .map(|i| i.name)
        .filter(|name| !(name == SYSTEM_LOG && caller.require_system_read().is_err()))
        .filter(|name| caller.tenant().is_none_or(|t| t == name))
        .collect();
    if let Some(asked) = asked {
        if !out.iter().any(|n| n == asked) && crate::api::readable(app, caller, asked).is_ok() {
            out.push(asked.to_string());
        }
    }
    Ok(out)
}

/// The log a page shows: the one asked for, else the first readable log
/// that is not the system log, else the system log.
pub fn chosen_log(logs: &[String], asked: Option<&str>) -> Option<String> {
    if let Some(a) = asked {
        return Some(a.to_string());
    }
    logs.iter().find(|n| n.as_str() != SYSTEM_LOG).or(logs.first()).cloned()
}

/// Run `work` on the blocking pool; its refusal is shown as an error page.
pub async fn blocking_page<T: Send + 'static>(
    viewer: &Viewer,
    current: &'static str,
    work: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Response> {
    crate::api::blocking(work)
        .await
        .map_err(|p| error_page(viewer, current, p))
}

/// The app, for handlers' signatures.
pub type AppState = axum::extract::State<Arc<App>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_on_character_boundaries() {
        assert_eq!(cut_to("abc", 3), "abc");
        assert_eq!(cut_to("abcd", 3), "abc…");
        assert_eq!(cut_to("ééé", 2), "éé…");
    }

    #[test]
    fn links_encode_every_value() {
        assert_eq!(
            link("/search", &[("log", "main"), ("actor", "javascript:alert(1)")]),
            "/search?log=main&actor=javascript%3Aalert%281%29"
        );
        assert_eq!(
            entity_href("main", "lead", "a/b?c"),
            "/entities/lead/a%2Fb%3Fc?log=main"
        );
    }

    #[test]
    fn times_show_utc_to_the_millisecond() {
        let t: Timestamp = "2026-01-31T09:00:00.5+01:00".parse().expect("a time");
        let shown = Time::of(t);
        assert_eq!(shown.text, "2026-01-31 08:00:00.500");
        assert_eq!(shown.iso, "2026-01-31T08:00:00.5Z");
    }
}
