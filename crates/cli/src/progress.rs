//! Progress bars on stderr for the long commands (`append` of a file,
//! `reindex`, `verify`, `export --output`), drawn only when stderr is a
//! terminal: piped or redirected stderr (scripts, CI logs) gets no escape
//! codes and no carriage returns.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a bar counts.
#[derive(Clone, Copy)]
pub enum Unit {
    Bytes,
    Entries,
    Events,
}

/// A bar of `total` units (0 until known) saying what it does in `what`;
/// hidden unless stderr is a terminal. Finish it with `finish_and_clear`.
pub fn bar(what: &'static str, total: u64, unit: Unit) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        Unit::Entries => "{msg} [{bar:30}] {human_pos}/{human_len} entries ({per_sec}, {eta} left)",
        Unit::Events => "{msg} [{bar:30}] {human_pos}/{human_len} events ({per_sec}, {eta} left)",
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(what)
}

/// A `progress(done, total)` callback, as the library's long operations
/// take, that moves `bar`.
pub fn follow(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}
