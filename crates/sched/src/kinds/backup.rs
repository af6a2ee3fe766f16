//! `backup`: an online backup of the whole data directory into `dest`
//! (`sealtrail_backup::create`, as `sealtrail backup create` does):
//! consistent per log, incremental when `dest` holds an earlier backup.
//!
//! Fields: `dest` (required), an absolute path outside the data
//! directory.

use std::path::Path;

use sealtrail_backup::{create, CreateOptions, Source};
use sealtrail_ledger::storage::OsStorage;

use crate::kind::{string_param, JobKind, Params, RunContext};

pub struct Backup;

impl JobKind for Backup {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["dest"]
    }

    fn check(&self, params: &Params) -> Result<(), String> {
        let dest = string_param(params, "dest")?;
        if !Path::new(dest).is_absolute() {
            return Err(format!("dest: {dest:?} is not an absolute path"));
        }
        Ok(())
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<String, String> {
        let dest = Path::new(string_param(&ctx.job.params, "dest")?);
        let data = &ctx.env.data_dir;
        if dest.starts_with(data) {
            return Err(format!(
                "dest: {} is inside the data directory {}; a backup goes elsewhere",
                dest.display(),
                data.display()
            ));
        }
        let report = create(&Source::os(data), &OsStorage, dest, &CreateOptions::default())
            .map_err(|e| format!("backup into {}: {e}", dest.display()))?;
        Ok(format!(
            "{} backup into {}: {} files ({} unchanged), {} bytes read, {} written, {} logs",
            if report.incremental { "incremental" } else { "full" },
            dest.display(),
            report.files,
            report.files_skipped,
            report.bytes_read,
            report.bytes_written,
            report.logs.len()
        ))
    }
}
