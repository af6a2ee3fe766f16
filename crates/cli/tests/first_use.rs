//! What a new user meets first: help that groups its flags, empty lists
//! that say so, a missing log that says what to do, and progress bars that
//! show on a terminal only.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod support;

use support::BIN;

/// Run with `--data data`, stdin empty, stdout and stderr piped.
fn run(data: &Path, args: &[&str]) -> Output {
    support::run(data, args, b"")
}

/// Run, require exit code `code`, return (stdout, stderr).
fn expect(data: &Path, args: &[&str], code: i32) -> (String, String) {
    support::expect(data, args, b"", code)
}

/// The help text's sections: heading → the lines under it.
fn sections(help: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            out.push((line.trim_end_matches(':').to_string(), Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            if !line.trim().is_empty() {
                lines.push(line.to_string());
            }
        }
    }
    out
}

#[test]
fn query_help_groups_global_flags_apart_from_the_filters_and_describes_each() {
    let tmp = tempfile::tempdir().unwrap();
    let (help, _) = expect(tmp.path(), &["query", "--help"], 0);
    let sections = sections(&help);
    let section = |name: &str| -> Vec<String> {
        sections
            .iter()
            .find(|(h, _)| h == name)
            .unwrap_or_else(|| panic!("no {name:?} heading in:\n{help}"))
            .1
            .clone()
    };
    let flags = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .map(|l| l.split([' ', '<']).next().unwrap().to_string())
            .collect()
    };
    let filters = section("Filters (all must match)");
    let want = [
        "action",
        "actor",
        "target",
        "tenant",
        "workflow",
        "service",
        "outcome",
        "severity",
        "ip",
        "session",
        "since",
        "until",
        "received-since",
        "received-until",
        "text",
    ];
    assert_eq!(flags(&filters), want, "{help}");
    // Each filter is described: on the line below it (long help).
    for (at, line) in filters
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("--"))
    {
        let next = filters.get(at + 1).map(|l| l.trim_start());
        assert!(
            next.is_some_and(|d| !d.starts_with("--") && !d.starts_with('[')),
            "undescribed: {line:?}\n{help}"
        );
    }
    assert_eq!(flags(&section("Global options")), ["data", "log"], "{help}");
    let output = flags(&section("Output"));
    for flag in ["limit", "after", "oldest-first", "format", "verify"] {
        assert!(output.contains(&flag.to_string()), "--{flag} not under Output:\n{help}");
    }
}

#[test]
fn empty_lists_say_so_on_stderr_and_keep_stdout_for_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (out, err) = expect(&data, &["logs", "list"], 0);
    assert!(out.is_empty() && err.contains("no logs in"), "{out}{err}");
    expect(&data, &["init"], 0);
    for (args, says) in [
        (&["alerts", "rules", "list"][..], "no alert rules"),
        (&["alerts", "channels", "list"], "no notification channels"),
        (&["alerts", "silences"], "no silences in force"),
        (&["alerts", "silences", "--expired"], "no silences"),
        (&["alerts", "list"], "no alerts"),
        (&["alerts", "list", "--firing"], "no alerts firing"),
        (&["keys", "list"], "no API keys"),
    ] {
        let (out, err) = expect(&data, args, 0);
        assert_eq!(out, "", "{args:?}");
        assert!(err.contains(says), "{args:?}: {err:?}");
    }
    let (out, err) = expect(&data, &["query"], 0);
    assert!(out.is_empty() && err.contains("no events match"), "{out}{err}");
    let (out, err) = expect(&data, &["errors"], 0);
    assert!(
        out.is_empty() && err.contains("no failures or errors match"),
        "{out}{err}"
    );
    // JSON listings print an empty array.
    let (out, _) = expect(&data, &["query", "--format", "json"], 0);
    assert_eq!(out.trim(), "[]");
    let (out, err) = expect(&data, &["alerts", "notifications"], 0);
    assert_eq!(out.trim(), "[]");
    assert!(err.contains("no notifications"), "{err:?}");
    // A listing with rows does not say it is empty.
    expect(&data, &["keys", "create", "--scope", "read"], 0);
    let (out, err) = expect(&data, &["keys", "list"], 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(!err.contains("no API keys"), "{err}");
}

#[test]
fn a_missing_log_hints_at_init_serve_and_the_data_flag() {
    let tmp = tempfile::tempdir().unwrap();

    // No data directory at all: nothing is created by looking.
    let absent = tmp.path().join("absent");
    for args in [
        &["query"][..],
        &["stats"],
        &["checkpoint"],
        &["verify"],
        &["export", "--format", "csv", "--output", "-"],
    ] {
        let (_, err) = expect(&absent, args, 2);
        assert!(err.contains("no log named \"default\""), "{args:?}: {err}");
        assert!(
            err.contains("sealtrail init`") && err.contains("sealtrail serve`"),
            "{err}"
        );
        assert!(err.contains("--data"), "{err}");
        assert!(!absent.exists(), "{args:?} created the data directory");
    }

    // A directory that is not a data directory.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("notes.txt"), "hello").unwrap();
    let (_, err) = expect(&elsewhere, &["query"], 2);
    assert!(err.contains("is not a Sealtrail data directory"), "{err}");
    assert!(err.contains("--data"), "{err}");

    // A data directory without that log: the logs it has, and --log.
    let data = tmp.path().join("data");
    expect(&data, &["init"], 0);
    let (_, err) = expect(&data, &["--log", "billing", "query"], 2);
    assert!(err.contains("no log named \"billing\""), "{err}");
    assert!(err.contains("holds the logs default"), "{err}");
    assert!(err.contains("--log") && err.contains("logs create billing`"), "{err}");
}

fn events_file(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("events.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..n {
        writeln!(
            f,
            r#"{{"action":"doc.viewed","actor":{{"id":"u-{}"}},"message":"view {i}"}}"#,
            i % 7
        )
        .unwrap();
    }
    path
}

fn has_terminal_codes(text: &[u8]) -> bool {
    text.contains(&0x1b) || text.contains(&b'\r')
}

#[test]
fn progress_bars_stay_off_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    expect(&data, &["init"], 0);
    let file = events_file(tmp.path(), 3000);
    let export = tmp.path().join("out.csv");
    for args in [
        &["append", file.to_str().unwrap()][..],
        &["append", "--raw", file.to_str().unwrap()],
        &["reindex"],
        &["verify"],
        &["export", "--format", "csv", "--output", export.to_str().unwrap()],
    ] {
        let o = run(&data, args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !has_terminal_codes(&o.stderr),
            "{args:?}: {:?}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!has_terminal_codes(&o.stdout), "{args:?}");
    }
}

#[test]
fn progress_bars_show_when_stderr_is_a_terminal() {
    // `script` gives the command a pseudo-terminal and copies what it
    // writes there to its own stdout.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    expect(&data, &["init"], 0);
    let file = events_file(tmp.path(), 3000);
    let command = format!("{BIN} --data {} append {}", data.display(), file.display());
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("appended 3000 events"), "{text}");
    assert!(text.contains("appending") && has_terminal_codes(&o.stdout), "{text:?}");
}
