//! End-to-end tests through the `sealtrail` binary: the command names,
//! outputs and exit codes scripts rely on, and every tamper case `verify`
//! must catch, named by entry index.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod support;

struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        Env { _tmp: tmp, data }
    }

    /// Run and require exit code `code`; returns stdout.
    fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        self.expect(args, stdin, 0)
    }

    fn expect(&self, args: &[&str], stdin: &[u8], code: i32) -> String {
        let (out, err) = support::expect(&self.data, args, stdin, code);
        out + &err
    }

    fn log_file(&self, name: &str) -> PathBuf {
        self.data.join("logs/default").join(name)
    }

    /// A log with entries "entry 0" .. "entry {n-1}" (equal lengths up to 10).
    fn with_entries(n: u64) -> Env {
        let env = Env::new();
        env.ok(&["init"], b"");
        let lines: String = (0..n).map(|i| format!("entry {i:03}\n")).collect();
        env.ok(&["append", "--raw"], lines.as_bytes());
        env
    }
}

/// Byte offset of record `index` in the entries file (records of "entry NNN").
fn record_offset(index: u64) -> u64 {
    16 + index * (8 + 9)
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

/// `verify` must fail with exit 1 and a message containing each of `want`.
fn check_tamper(env: &Env, want: &[&str]) {
    let out = env.expect(&["verify"], b"", 1);
    for w in want {
        assert!(out.contains(w), "verify output lacks {w:?}:\n{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(env.expect(&["verify", "--json"], b"", 1).lines().next().unwrap()).unwrap();
    assert_eq!(json["intact"], false);
}

#[test]
fn init_append_read_prove_and_verify() {
    let env = Env::new();
    let vkey = env.ok(&["init"], b"");
    let vkey = vkey.lines().next().unwrap().to_string();
    assert!(vkey.starts_with("sealtrail.localhost/default+"), "{vkey}");
    assert_eq!(env.ok(&["key"], b"").trim(), vkey);
    let mode = std::fs::metadata(env.log_file("log.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "private key must be owner-only");

    // init again refuses and keeps the key.
    let out = env.expect(&["init"], b"", 2);
    assert!(out.contains("already exists"), "{out}");
    assert_eq!(env.ok(&["key"], b"").trim(), vkey);

    let out = env.ok(&["append", "--raw"], b"alpha\nbeta\n\ngamma");
    assert!(out.contains("appended entries 0..3 (4); tree size 4"), "{out}");
    assert_eq!(env.ok(&["entry", "1"], b""), "beta");
    assert_eq!(env.ok(&["entry", "2"], b""), "");
    assert_eq!(env.ok(&["entry", "3"], b""), "gamma");
    let out = env.expect(&["entry", "4"], b"", 2);
    assert!(out.contains("outside the log (size 4)"), "{out}");

    let cp = env.ok(&["checkpoint"], b"");
    assert!(cp.starts_with("sealtrail.localhost/default\n4\n"), "{cp}");

    let dir = env._tmp.path();
    for size in ["4", "3"] {
        let receipt = env.ok(&["prove", "2", "--size", size], b"");
        assert!(receipt.starts_with("c2sp.org/tlog-proof@v1\nindex 2\n"), "{receipt}");
        std::fs::write(dir.join("r.tlog-proof"), &receipt).unwrap();
        std::fs::write(dir.join("e"), b"").unwrap();
        let r = dir.join("r.tlog-proof");
        let e = dir.join("e");
        env.ok(
            &[
                "verify-receipt",
                r.to_str().unwrap(),
                "--key",
                &vkey,
                "--entry",
                e.to_str().unwrap(),
            ],
            b"",
        );
        std::fs::write(&e, b"beta").unwrap();
        let out = env.expect(
            &[
                "verify-receipt",
                r.to_str().unwrap(),
                "--key",
                &vkey,
                "--entry",
                e.to_str().unwrap(),
            ],
            b"",
            1,
        );
        assert!(out.contains("does not verify"), "{out}");
    }
    let other = env.ok(&["logs", "create", "other"], b"");
    let r = dir.join("r.tlog-proof");
    let e = dir.join("e");
    std::fs::write(&e, b"").unwrap();
    env.expect(
        &[
            "verify-receipt",
            r.to_str().unwrap(),
            "--key",
            other.trim(),
            "--entry",
            e.to_str().unwrap(),
        ],
        b"",
        1,
    );

    let list = env.ok(&["logs", "list"], b"");
    assert!(list.contains("default\t") && list.contains("other\t"), "{list}");

    let out = env.ok(&["verify"], b"");
    assert!(out.contains("intact: 4 entries"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["verify", "--json"], b"")).unwrap();
    assert_eq!(json["intact"], true);
    assert_eq!(json["entries"], 4);
}

#[test]
fn oversized_line_is_refused_with_its_line_number() {
    let env = Env::new();
    env.ok(&["init"], b"");
    let mut input = b"ok\n".to_vec();
    input.extend(vec![b'x'; 70_000]);
    input.push(b'\n');
    let out = env.expect(&["append", "--raw"], &input, 2);
    assert!(out.contains("line 2 is 70000 bytes"), "{out}");
    // Nothing was appended: the line-1 entry was still in the unwritten batch.
    assert!(env.ok(&["verify"], b"").contains("intact: 0 entries"));
}

#[test]
fn modified_byte_in_an_entry_is_named() {
    let env = Env::with_entries(20);
    edit(&env.log_file("entries"), |b| {
        b[record_offset(7) as usize + 8 + 3] ^= 0x20
    });
    check_tamper(&env, &["entry 7", "modified"]);
}

#[test]
fn deleted_entry_is_named() {
    let env = Env::with_entries(20);
    edit(&env.log_file("entries"), |b| {
        let at = record_offset(11) as usize;
        b.drain(at..at + 17);
    });
    check_tamper(
        &env,
        &[
            "entry 11 holds the record written as entry 12",
            "entries 19..20 are missing",
        ],
    );
}

#[test]
fn swapped_entries_are_named() {
    let env = Env::with_entries(20);
    edit(&env.log_file("entries"), |b| {
        let (a, c) = (record_offset(4) as usize, record_offset(5) as usize);
        let first = b[a..a + 17].to_vec();
        let second = b[c..c + 17].to_vec();
        b[a..a + 17].copy_from_slice(&second);
        b[c..c + 17].copy_from_slice(&first);
    });
    check_tamper(
        &env,
        &[
            "entry 4 holds the record written as entry 5",
            "entry 5 holds the record written as entry 4",
        ],
    );
}

#[test]
fn truncated_entries_file_is_named() {
    let env = Env::with_entries(20);
    edit(&env.log_file("entries"), |b| b.truncate(record_offset(15) as usize + 5));
    check_tamper(&env, &["entry 15", "truncated"]);
}

#[test]
fn modified_stored_hash_is_named() {
    let env = Env::with_entries(20);
    // Leaf 6's stored position: 2·6 − popcount(6) = 10.
    edit(&env.log_file("hashes"), |b| b[16 + 10 * 32] ^= 1);
    check_tamper(&env, &["hashes", "leaf hash of entry 6"]);
}

#[test]
fn checkpoint_signed_by_another_key_is_caught() {
    let env = Env::with_entries(5);
    let other = Env::with_entries(5);
    std::fs::copy(other.log_file("checkpoint"), env.log_file("checkpoint")).unwrap();
    check_tamper(&env, &["checkpoint", "not signed by sealtrail.localhost/default+"]);
}

#[test]
fn rollback_to_an_older_state_is_caught_with_since() {
    let env = Env::with_entries(5);
    let snapshot = env._tmp.path().join("snapshot");
    copy_dir(&env.data.join("logs/default"), &snapshot);
    env.ok(&["append", "--raw"], b"six\nseven\n");
    let newer = env._tmp.path().join("newer.checkpoint");
    std::fs::write(&newer, env.ok(&["checkpoint"], b"")).unwrap();
    env.ok(&["verify", "--since", newer.to_str().unwrap()], b"");
    // The operator restores the old state: on its own it looks intact ...
    std::fs::remove_dir_all(env.data.join("logs/default")).unwrap();
    copy_dir(&snapshot, &env.data.join("logs/default"));
    env.ok(&["verify"], b"");
    // ... but not against the checkpoint an auditor kept.
    let out = env.expect(&["verify", "--since", newer.to_str().unwrap()], b"", 1);
    assert!(out.contains("rollback") && out.contains("size 7"), "{out}");
}

#[test]
fn open_refuses_a_truncated_log_and_says_why() {
    let env = Env::with_entries(10);
    edit(&env.log_file("entries"), |b| b.truncate(record_offset(8) as usize));
    let out = env.expect(&["append", "--raw"], b"more\n", 1);
    assert!(
        out.contains("after 8 entries, but the last signed checkpoint covers 10"),
        "{out}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
