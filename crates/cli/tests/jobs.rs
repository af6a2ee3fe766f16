//! `sealtrail jobs` end to end: a job put from a TOML file, refusals that
//! name the field, and a run asked from the command line taken by the
//! real server's scheduler, its history read back after the server stops.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::{cli, expect, Running};

#[test]
fn jobs_from_the_command_line_run_in_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    expect(&data, &["init"], b"", 0);
    expect(
        &data,
        &["append"],
        b"{\"action\": \"user.login\", \"actor\": {\"id\": \"u1\"}}\n",
        0,
    );

    // A bad file changes nothing and names the field.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"v\"\ntype = \"verify\"\nlog = \"default\"\nschedule = \"0 2 * * *\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let (code, _, err) = cli(&data, &["jobs", "put", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml: unknown field \"colour\""), "{err}");
    let (out, err) = expect(&data, &["jobs", "list"], b"", 0);
    assert_eq!(out, "");
    assert!(err.contains("no jobs"), "{err}");

    let file = dir.path().join("verify.toml");
    std::fs::write(
        &file,
        "name = \"nightly-verify\"\ntype = \"verify\"\nlog = \"default\"\nschedule = \"daily at 02:00\"\ntimezone = \"Europe/Berlin\"\n",
    )
    .unwrap();
    let (out, _) = expect(&data, &["jobs", "put", file.to_str().unwrap()], b"", 0);
    assert!(out.starts_with("created job nightly-verify; next run "), "{out}");
    let (out, _) = expect(&data, &["jobs", "list"], b"", 0);
    assert!(
        out.starts_with("nightly-verify\tverify\tdaily at 02:00 (Europe/Berlin)\tenabled\tnext "),
        "{out}"
    );
    assert!(out.trim_end().ends_with("never run"), "{out}");
    expect(&data, &["jobs", "disable", "nightly-verify"], b"", 0);
    let (out, _) = expect(&data, &["jobs", "show", "nightly-verify"], b"", 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (shown["enabled"].clone(), shown["next_run"].clone()),
        (Value::Bool(false), Value::Null)
    );

    // The server takes a run asked from the command line.
    let mut serve = support::serve(&data, "127.0.0.1:0");
    serve.stderr(Stdio::null());
    let server = Running::spawn(&mut serve, String::new);
    expect(&data, &["jobs", "run", "nightly-verify"], b"", 0);
    let start = Instant::now();
    let runs = loop {
        let (out, _) = expect(&data, &["jobs", "runs", "nightly-verify", "--json"], b"", 0);
        let runs: Value = serde_json::from_str(&out).unwrap();
        if !runs.as_array().unwrap().is_empty() {
            break runs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the server did not run the job"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(runs[0]["outcome"], "success", "{runs}");
    assert_eq!(runs[0]["trigger"], "manual");
    let (code, _) = server.stop();
    assert_eq!(code, 0);

    let (out, _) = expect(&data, &["jobs", "runs", "nightly-verify"], b"", 0);
    assert!(
        out.contains("\tsuccess\tmanual#0\tlog default intact: 1 entries, signed checkpoint of size 1"),
        "{out}"
    );
    expect(&data, &["jobs", "delete", "nightly-verify"], b"", 0);
    let (code, _, err) = cli(&data, &["jobs", "runs", "nightly-verify"]);
    assert_eq!(code, 2);
    assert!(err.contains("no job named \"nightly-verify\""), "{err}");
}
