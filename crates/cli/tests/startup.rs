//! `sealtrail serve` refusing to start, as real processes: on a port
//! another process holds it leaves no data directory behind, and on a data
//! directory another server holds it says so in one line.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Output, Stdio};

mod support;

use support::serve;

/// The lines of a refused start's standard error, after checking it failed.
fn refused(out: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    stderr.lines().map(str::to_string).collect()
}

#[test]
fn serve_on_a_busy_port_fails_before_creating_the_data_directory() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let out = serve(&data, &addr).output().unwrap();
    let lines = refused(&out);
    assert_eq!(
        lines,
        [format!(
            "sealtrail: cannot listen on {addr}: the address is in use by another process; stop it or choose another address (--listen, or `listen` in the configuration)"
        )]
    );
    assert!(!data.exists(), "the data directory was created");
}

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_server_on_the_same_data_directory_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = serve(&data, "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready once the banner's first line is out.
    let mut banner = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let _first = Running(first);
    assert!(banner.contains("listening on"), "{banner:?}");

    let out = serve(&data, "127.0.0.1:0").output().unwrap();
    let lines = refused(&out);
    assert_eq!(
        lines,
        [format!(
            "sealtrail: the data directory {} is in use: another process holds log default (is a `sealtrail serve` already running on it?); stop that process, or give this one another data directory",
            data.display()
        )]
    );
}
