//! The harness shared by the `sealtrail` binary's tests: running commands
//! on a data directory, API keys, and `sealtrail serve` as a separate
//! process (started, read for its banner, stopped with SIGTERM or kill -9).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sealtrail");

/// Run `sealtrail args --data data` to the end: exit code, stdout, stderr.
pub fn cli(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).arg("--data").arg(data).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new API key with this scope (and `--name name` if given); its secret.
pub fn create_key(data: &Path, scope: &str, name: Option<&str>) -> String {
    let mut args = vec!["keys", "create", "--scope", scope];
    if let Some(n) = name {
        args.extend(["--name", n]);
    }
    let (code, out, err) = cli(data, &args);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

/// Run `sealtrail --data data args` with `stdin` as its standard input,
/// stdout and stderr piped.
pub fn run(data: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `run`, require exit code `code`, return (stdout, stderr).
pub fn expect(data: &Path, args: &[&str], stdin: &[u8], code: i32) -> (String, String) {
    let o = run(data, args, stdin);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(code),
        "sealtrail {args:?}\nstdout: {out}\nstderr: {err}"
    );
    (out, err)
}

/// An HTTP agent that returns error statuses as answers, with a 30 s bound.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `sealtrail serve --listen listen --data data`, to add to and spawn.
/// Writes are refused only when the disk is truly full, not when the
/// machine running the tests is short of space: the tests of the disk
/// thresholds set their own.
pub fn serve(data: &Path, listen: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["serve", "--listen", listen, "--data"]).arg(data);
    c.env("SEALTRAIL_HEALTH_DISK_RESERVE_BYTES", "0")
        .env("SEALTRAIL_HEALTH_DISK_WARNING_PERCENT", "100.0")
        .env("SEALTRAIL_HEALTH_DISK_CRITICAL_PERCENT", "100.0");
    c
}

/// Spawn `serve` with stdout piped and wait for the banner's first line
/// (`why` adds to the message if it is not the banner); the address it
/// listens on, and the rest of the banner, read as it comes (the server
/// must never block on a full pipe).
pub fn spawn_serve(serve: &mut Command, why: impl FnOnce() -> String) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = serve.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().transpose().unwrap().unwrap_or_default();
    assert!(first.contains("listening on"), "{first:?}{}", why());
    let addr = first.trim().rsplit(' ').next().unwrap().to_string();
    let banner = Arc::new(Mutex::new(Vec::new()));
    let sink = banner.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, addr, banner)
}

/// Send SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A running `sealtrail serve`.
pub struct Running {
    pub child: Child,
    pub base: String,
    /// The banner after its first line.
    pub banner: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Start `serve` on a free port (see `spawn_serve`).
    pub fn spawn(serve: &mut Command, why: impl FnOnce() -> String) -> Running {
        let (child, addr, banner) = spawn_serve(serve, why);
        Running {
            child,
            base: format!("http://{addr}"),
            banner,
        }
    }

    /// SIGTERM and wait: the exit code and standard error (if piped).
    pub fn stop(self) -> (i32, String) {
        sigterm(&self.child);
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Every event in `base`'s default log, read page by page with `get`
/// (a URL to its status and body): ledger index → id.
pub fn stored_ids(base: &str, get: impl Fn(&str) -> (u16, Value)) -> BTreeMap<u64, String> {
    let mut stored = BTreeMap::new();
    let mut after = String::new();
    loop {
        let url = format!("{base}/api/v1/logs/default/events?order=oldest&limit=1000{after}");
        let (status, page) = get(&url);
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            stored.insert(
                e["index"].as_u64().unwrap(),
                e["event"]["id"].as_str().unwrap().to_string(),
            );
        }
        match page["next"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    stored
}
