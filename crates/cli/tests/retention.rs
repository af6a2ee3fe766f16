//! `sealtrail retention apply` and `sealtrail holds` through the binary:
//! what they print, their exit codes, refusals that change nothing, and a
//! pruned log that still verifies and proves its kept entries.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

mod support;

struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
}

impl Env {
    /// A log of 700 events; event 300 alone has action `doc.held`.
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let env = Env { _tmp: tmp, data };
        env.run(&["init"], 0);
        let lines: String = (0..700)
            .map(|i| {
                let action = if i == 300 { "doc.held" } else { "doc.viewed" };
                format!("{{\"action\":\"{action}\",\"message\":\"view {i}\"}}\n")
            })
            .collect();
        support::expect(&env.data, &["append"], lines.as_bytes(), 0);
        env
    }

    /// Run and require exit code `code`; returns (stdout, stderr).
    fn run(&self, args: &[&str], code: i32) -> (String, String) {
        support::expect(&self.data, args, b"", code)
    }

    fn count(&self) -> u64 {
        let (out, _) = self.run(&["stats", "--format", "json"], 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["total"].as_u64().unwrap()
    }

    fn system_actions(&self) -> Vec<String> {
        let (out, _) = self.run(&["--log", "system", "query", "--format", "jsonl", "--limit", "100"], 0);
        let mut actions: Vec<String> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .filter(|a| a.starts_with("retention.") || a.starts_with("legal_hold."))
            .collect();
        actions.reverse();
        actions
    }
}

#[test]
fn bad_input_is_refused_naming_the_argument() {
    let env = Env::new();
    let (_, err) = env.run(&["retention", "apply", "--older-than", "ten days"], 2);
    assert!(err.contains("--older-than") && err.contains("not an age"), "{err}");
    let (_, err) = env.run(&["retention", "apply", "--max-size", "lots"], 2);
    assert!(err.contains("--max-size") && err.contains("not a size"), "{err}");
    let (_, err) = env.run(&["retention", "apply"], 2);
    assert!(err.contains("give --older-than"), "{err}");
    let (_, err) = env.run(&["--log", "nope", "retention", "apply", "--older-than", "1d"], 2);
    assert!(err.contains("nope"), "{err}");
    let (_, err) = env.run(&["--log", "nope", "holds", "add", "--reason", "x"], 2);
    assert!(err.contains("nope"), "{err}");
    let (_, err) = env.run(&["retention", "apply", "--below", "300"], 2);
    assert!(err.contains("--below 300") && err.contains("multiple of 256"), "{err}");
    let (_, err) = env.run(&["retention", "apply", "--below", "768"], 2);
    assert!(err.contains("at most 512"), "{err}");
    let (_, err) = env.run(&["holds", "release", "9"], 2);
    assert!(err.contains("no legal hold with id 9"), "{err}");
    assert_eq!(env.count(), 700);
    let (out, _) = env.run(&["entry", "0"], 0);
    assert!(out.contains("view 0"));
}

#[test]
fn holds_stop_policies_refuse_explicit_targets_and_pruning_keeps_proofs() {
    let env = Env::new();
    let (out, _) = env.run(&["holds", "add", "--reason", "matter 17", "--action", "doc.held"], 0);
    assert!(out.starts_with("added legal hold 1 on log default"), "{out}");
    let (out, _) = env.run(&["holds", "list"], 0);
    assert!(
        out.starts_with("1\tdefault\t{\"action\":\"doc.held\"}\tmatter 17\t"),
        "{out}"
    );

    // A dry run says what would go and changes nothing.
    let (out, err) = env.run(&["retention", "apply", "--max-size", "1", "--dry-run"], 0);
    assert!(out.contains("would prune entries 0..256 (256 entries"), "{out}");
    assert!(
        err.contains("stopped at entry 256 (asked for 512): legal hold 1 covers entry 300"),
        "{err}"
    );
    assert_eq!(env.count(), 700);

    // An explicit target across the hold: refused, nothing changed.
    let (_, err) = env.run(&["retention", "apply", "--below", "512"], 2);
    assert!(
        err.contains("legal hold 1 covers entry 300") && err.contains("nothing was pruned"),
        "{err}"
    );
    assert_eq!(env.count(), 700);

    // The policy prunes up to the hold and says so.
    let (out, err) = env.run(&["retention", "apply", "--max-size", "1", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["from"].as_u64(), v["to"].as_u64()), (Some(0), Some(256)));
    assert!(v["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(v["stopped"], "legal hold 1 covers entry 300");
    assert!(err.is_empty() || !err.contains("error"), "{err}");
    assert_eq!(env.count(), 444);

    // Released, the explicit target goes through.
    env.run(&["holds", "release", "1"], 0);
    let (out, _) = env.run(&["retention", "apply", "--below", "512"], 0);
    assert!(
        out.starts_with("log default: pruned entries 256..512 (256 entries, "),
        "{out}"
    );
    assert_eq!(env.count(), 188);
    let (out, _) = env.run(&["holds", "list", "--released", "--json"], 0);
    let holds: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        holds[0]["released_by"].as_str().map(|s| s.starts_with("cli:")),
        Some(true)
    );

    // A pruned entry: a clear error, exit 2; a kept one as before.
    let (_, err) = env.run(&["entry", "511"], 2);
    assert!(
        err.contains("entry 511 was pruned") && err.contains("below 512"),
        "{err}"
    );
    let (out, _) = env.run(&["entry", "512"], 0);
    assert!(out.contains("view 512"), "{out}");

    // The log verifies, reporting the pruned range; a receipt of a kept
    // entry verifies offline.
    let (out, _) = env.run(&["verify"], 0);
    assert!(out.contains("intact") && out.contains("0..512"), "{out}");
    let (receipt, _) = env.run(&["prove", "600"], 0);
    let (entry, _) = env.run(&["entry", "600"], 0);
    let dir = env.data.parent().unwrap();
    std::fs::write(dir.join("r.tlog-proof"), &receipt).unwrap();
    std::fs::write(dir.join("e"), &entry).unwrap();
    let (key, _) = env.run(&["key"], 0);
    let (out, _) = env.run(
        &[
            "verify-receipt",
            dir.join("r.tlog-proof").to_str().unwrap(),
            "--key",
            key.trim(),
            "--entry",
            dir.join("e").to_str().unwrap(),
        ],
        0,
    );
    assert!(out.starts_with("valid: entry 600"), "{out}");

    // Every change is in the system log, in order.
    assert_eq!(
        env.system_actions(),
        [
            "legal_hold.added",
            "retention.stopped",
            "retention.pruned",
            "legal_hold.released",
            "retention.pruned"
        ]
    );
}

#[test]
fn apply_beside_a_running_server_is_refused_naming_the_server() {
    let env = Env::new();
    let mut serve = support::serve(&env.data, "127.0.0.1:0");
    serve.stderr(std::process::Stdio::null());
    let server = support::Running::spawn(&mut serve, String::new);
    let pid = server.child.id();
    let listen = server.base.trim_start_matches("http://").to_string();
    let record = std::fs::read_to_string(env.data.join("server.running")).unwrap();
    assert!(record.starts_with(&format!("pid {pid}\nlisten {listen}\n")), "{record}");

    let (_, err) = env.run(&["retention", "apply", "--below", "256"], 2);
    assert!(
        err.contains("log default is open in the server on this data directory"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {pid}, listening on {listen}")), "{err}");
    assert!(err.contains("[retention.logs.default]"), "{err}");

    let (code, _) = server.stop();
    assert_eq!(code, 0);
    assert!(!env.data.join("server.running").exists(), "removed at shutdown");
    let (out, _) = env.run(&["retention", "apply", "--below", "256"], 0);
    assert!(out.contains("pruned entries 0..256"), "{out}");
}
