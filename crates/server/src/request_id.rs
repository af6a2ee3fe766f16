//! The id of the request a task is answering. [`crate::request`] sets it
//! around each handler; problem documents and log lines read it. A leaf
//! module, so that the request layers (which answer with problems) and
//! the problem documents (which name the request) do not depend on each
//! other.

use axum::http::HeaderValue;

tokio::task_local! {
    /// The id of the request whose handler runs on this task.
    pub(crate) static REQUEST_ID: HeaderValue;
}

/// The id of the request being handled, if called while handling one.
pub fn current_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().ok().map(str::to_string))
        .ok()
        .flatten()
}
