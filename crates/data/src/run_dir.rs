//! A data run's directory, `<data_dir>/data-runs/<id>/`: what a run keeps
//! beside its record in the run history, written by the server's data API
//! and its scheduled `data-diff` / `data-keys` jobs alike, and read back a
//! page at a time by the API and the dashboard (docs/data.md, "Run
//! directories").
//!
//! - [`CHANGES_FILE`]: a diff's changes, one JSON object a line as the
//!   JSON Lines output writes them, the last line `{"summary": …}`;
//! - [`LAYOUT_FILE`]: the columns of a diff's inputs as the diff saw them,
//!   for the reports made later from the changes;
//! - [`VIOLATIONS_FILE`]: a validation's violations, one a line;
//! - [`TEMP_DIR`]: a diff's spill files while it runs, removed after.
//!
//! Uploads (`inputs/`) and reports (`report.<format>`) are the API's
//! business. A key discovery keeps no file: its summary, in the run
//! history, holds every key; its directory only says its files are kept.
//!
//! Not here: the run history (`sealtrail_meta`), or who may write when.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::diff::{ChangeSink, DiffSummary, Layout};
use crate::output::{self, DiffWriter, Format};
use crate::{Change, DataError};

/// The directory of every run's directory, under the data directory.
pub const RUNS_DIR: &str = "data-runs";
/// A diff's changes, one JSON object a line.
pub const CHANGES_FILE: &str = "changes.jsonl";
/// A validation's violations, one JSON object a line.
pub const VIOLATIONS_FILE: &str = "violations.jsonl";
/// The columns of a diff's inputs as the diff saw them.
pub const LAYOUT_FILE: &str = "layout.json";
/// Spill files while the run runs.
pub const TEMP_DIR: &str = "tmp";

/// The temporary directory of the run whose directory is `dir`, made.
pub fn temp_dir(dir: &Path) -> Result<PathBuf, DataError> {
    let temp = dir.join(TEMP_DIR);
    std::fs::create_dir_all(&temp).map_err(|e| DataError::io("run directory", &e))?;
    Ok(temp)
}

/// The sink that keeps a diff's results in its run directory: its changes
/// in [`CHANGES_FILE`] (JSON Lines) and its layout in [`LAYOUT_FILE`].
/// [`DiffFiles::finish`] writes the summary line once the diff is done.
pub struct DiffFiles {
    writer: Box<dyn DiffWriter>,
    layout: PathBuf,
}

impl DiffFiles {
    /// Start the files of the diff whose run directory is `dir` (made
    /// already); `temp` is its temporary directory ([`temp_dir`]).
    pub fn create(dir: &Path, temp: &Path) -> Result<DiffFiles, DataError> {
        let file = File::create(dir.join(CHANGES_FILE)).map_err(|e| DataError::io(CHANGES_FILE, &e))?;
        Ok(DiffFiles {
            writer: output::writer(Format::Jsonl, Box::new(file), Some(temp))?,
            layout: dir.join(LAYOUT_FILE),
        })
    }

    /// End the changes with the summary line, and flush.
    pub fn finish(self, summary: &DiffSummary) -> Result<(), DataError> {
        self.writer.finish(summary)
    }
}

impl ChangeSink for DiffFiles {
    fn begin(&mut self, layout: &Layout) -> Result<(), DataError> {
        let text = serde_json::to_vec(layout).map_err(|e| DataError::new(LAYOUT_FILE, e.to_string()))?;
        std::fs::write(&self.layout, text).map_err(|e| DataError::io(LAYOUT_FILE, &e))?;
        self.writer.as_sink().begin(layout)
    }

    fn change(&mut self, change: &Change) -> Result<(), DataError> {
        self.writer.as_sink().change(change)
    }
}

/// Delete the directories in `runs_dir` of all but the newest `keep` runs
/// (the highest ids), sparing those `busy` names (runs queued or running).
/// Entries whose name is not a run's id (uploads being received) are left
/// alone. Returns the runs whose directory could not be deleted, with why.
pub fn prune(runs_dir: &Path, keep: usize, busy: impl Fn(i64) -> bool) -> Vec<(i64, std::io::Error)> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut ids: Vec<i64> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut failed = Vec::new();
    for id in ids.into_iter().skip(keep) {
        if !busy(id) {
            if let Err(e) = std::fs::remove_dir_all(runs_dir.join(id.to_string())) {
                failed.push((id, e));
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_and_the_busy_and_leaves_other_names() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for name in ["1", "2", "3", "10", "11", "incoming-4"] {
            std::fs::create_dir(dir.path().join(name)).expect("a run directory");
        }
        // Newest two: 11 and 10 (by number, not by name); 2 is busy.
        let failed = prune(dir.path(), 2, |id| id == 2);
        assert!(failed.is_empty());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("listing")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["10", "11", "2", "incoming-4"]);
    }
}
