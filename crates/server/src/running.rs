//! `server.running` in the data directory: which process serves it, where
//! it listens and since when, written once the server listens and removed
//! when it stops. Commands that need a log's lock (`sealtrail retention
//! apply`) read it to name the server that holds the lock rather than
//! only saying that something does.
//!
//! Not here: the lock itself (the ledger takes it). The file is a hint
//! for messages, never trusted for exclusion: a server that dies leaves
//! it behind, and [`read`] says whether its process still runs.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub const RUNNING_FILE: &str = "server.running";

/// What `server.running` says (three lines: `pid N`, `listen ADDR`,
/// `started RFC3339`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    pub pid: u32,
    pub listen: String,
    pub started: String,
    /// Whether process `pid` still runs (Linux: `/proc/<pid>` exists;
    /// elsewhere assumed).
    pub alive: bool,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(RUNNING_FILE)
}

/// Record that this process serves `data_dir` on `addr`; written under a
/// temporary name and renamed, so a reader finds a whole file or none.
pub fn record(data_dir: &Path, addr: SocketAddr) -> io::Result<()> {
    let text = format!(
        "pid {}\nlisten {addr}\nstarted {}\n",
        std::process::id(),
        jiff::Timestamp::now()
    );
    let tmp = data_dir.join(format!("{RUNNING_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(data_dir))
}

/// Remove the record, if it is this process's.
pub fn clear(data_dir: &Path) {
    if read(data_dir).is_some_and(|r| r.pid == std::process::id()) {
        let _ = std::fs::remove_file(path(data_dir));
    }
}

/// The server recorded as serving `data_dir`, if a record is there and
/// reads.
pub fn read(data_dir: &Path) -> Option<RunningServer> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    let mut pid = None;
    let (mut listen, mut started) = (None, None);
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("pid", v)) => pid = v.parse::<u32>().ok(),
            Some(("listen", v)) => listen = Some(v.to_string()),
            Some(("started", v)) => started = Some(v.to_string()),
            _ => {}
        }
    }
    let pid = pid?;
    let proc_dir = Path::new("/proc");
    let alive = !proc_dir.exists() || proc_dir.join(pid.to_string()).exists();
    Some(RunningServer {
        pid,
        listen: listen?,
        started: started?,
        alive,
    })
}

impl std::fmt::Display for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server on this data directory (pid {}, listening on {}, started {})",
            self.pid, self.listen, self.started
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_is_removed_by_its_process_only() {
        let dir = tempfile::tempdir().expect("temporary directory");
        assert_eq!(read(dir.path()), None);
        let addr: SocketAddr = "127.0.0.1:8080".parse().expect("an address");
        record(dir.path(), addr).expect("recorded");
        let r = read(dir.path()).expect("a record");
        assert_eq!(
            (r.pid, r.listen.as_str(), r.alive),
            (std::process::id(), "127.0.0.1:8080", true)
        );
        assert!(r.started.parse::<jiff::Timestamp>().is_ok(), "{}", r.started);
        assert!(r.to_string().contains(&format!("pid {}", std::process::id())));

        // Another process's record stays; a dead process's reads as such.
        let other = "pid 4294967295\nlisten 127.0.0.1:9\nstarted 2026-01-01T00:00:00Z\n";
        std::fs::write(dir.path().join(RUNNING_FILE), other).expect("written");
        clear(dir.path());
        let r = read(dir.path()).expect("still there");
        assert_eq!((r.pid, r.alive), (u32::MAX, false));
        std::fs::write(dir.path().join(RUNNING_FILE), "pid x\n").expect("written");
        assert_eq!(read(dir.path()), None);

        record(dir.path(), addr).expect("recorded");
        clear(dir.path());
        assert_eq!(read(dir.path()), None);
    }
}
