//! What the report tests share: times, a report as JSON, the checkpoint
//! a report must name, and the readers that are not ours (openpyxl for
//! workbooks, Chromium through `tests/browser/report.mjs` for HTML).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sealtrail_event::Timestamp;
use sealtrail_ledger::DataDir;
use sealtrail_report::{render, Format, Report};
use serde_json::Value;

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn json_of(report: &Report) -> Value {
    serde_json::from_slice(&render(report, Format::Json).unwrap()).unwrap()
}

/// Size and base64 root hash of `log`'s signed checkpoint.
pub fn signed_root(data: &Path, log: &str) -> (u64, String) {
    use base64::Engine as _;
    let l = DataDir::new(data).open_log_read_only(log).unwrap();
    let (cp, _) = l.checkpoint();
    (cp.size, base64::engine::general_purpose::STANDARD.encode(cp.root))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// target/report-screens, where the screenshots and PDFs are kept.
pub fn screens() -> PathBuf {
    let dir = repo_root().join("target/report-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Render `html` (written to `out/NAME.html`) in headless Chromium, which
/// leaves `NAME.png` and `NAME.pdf` in `out`; what the page showed
/// (`sections`, `svgs`) as `report.mjs` prints it.
pub fn in_browser(html: &str, out: &Path, name: &str) -> Value {
    let root = repo_root();
    assert!(
        Path::new("/usr/bin/chromium").exists() && root.join("tests/browser/node_modules/playwright-core").exists(),
        "the browser tests need Debian's chromium at /usr/bin/chromium and tests/browser/node_modules: run scripts/browser"
    );
    let file = out.join(format!("{name}.html"));
    std::fs::write(&file, html).unwrap();
    let run = Command::new("node")
        .arg(root.join("tests/browser/report.mjs"))
        .arg(&file)
        .arg(out)
        .arg(name)
        .current_dir(root.join("tests/browser"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{name}: report.mjs failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// The workbook at `path` as openpyxl reads it (`scripts/report-xlsx`).
pub fn openpyxl(path: &Path) -> Value {
    let run = Command::new(repo_root().join("scripts/report-xlsx"))
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "scripts/report-xlsx failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

pub fn sheet<'a>(book: &'a Value, name: &str) -> &'a Value {
    book["sheets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sheet {name}"))
}
