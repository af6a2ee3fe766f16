//! `sealtrail users …`: creating users with a given or generated
//! password, listing them, and every change recorded in the system log.

#![allow(clippy::unwrap_used)]

use serde_json::Value;

mod support;

use support::{cli, expect};

/// Actions of the system log's events, oldest first.
fn system_actions(data: &std::path::Path) -> Vec<String> {
    let (code, out, err) = cli(data, &["query", "--log", "system", "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    let mut actions: Vec<String> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            let event = e.get("event").unwrap_or(&e);
            event["action"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    actions.reverse();
    actions
}

#[test]
fn users_are_created_listed_changed_and_every_change_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let (out, err) = expect(
        &data,
        &["users", "create", "alice", "--role", "admin", "--password-stdin"],
        b"correct horse battery staple\n",
        0,
    );
    assert!(out.is_empty(), "a given password is not printed: {out}");
    assert!(err.contains("created user alice (role admin)"), "{err}");

    // Without a password one is generated, printed once, and works.
    let (out, err) = expect(
        &data,
        &["users", "create", "vic", "--role", "viewer", "--tenant", "acme"],
        b"",
        0,
    );
    let generated = out.trim();
    assert_eq!(generated.len(), 24, "{out}");
    assert!(err.contains("shown once"), "{err}");
    let meta = sealtrail_meta::Meta::open(&data).unwrap();
    let creds = meta.credentials("vic").unwrap().unwrap();
    assert!(sealtrail_meta::verify_password(&creds.password_hash, generated));
    assert_eq!(creds.user.tenant.as_deref(), Some("acme"));
    drop(meta);

    // Refusals name what is wrong.
    let (_, err) = expect(&data, &["users", "create", "alice", "--role", "viewer"], b"", 2);
    assert!(err.contains("user alice exists"), "{err}");
    let (_, err) = expect(
        &data,
        &["users", "create", "bob", "--role", "viewer", "--password-stdin"],
        b"short\n",
        2,
    );
    assert!(err.contains("password: 5 characters; at least 12 are needed"), "{err}");
    let (_, err) = expect(&data, &["users", "create", "b b", "--role", "viewer"], b"", 2);
    assert!(err.contains("name: ' ' at byte 1 is not allowed"), "{err}");
    let (_, err) = expect(&data, &["users", "create", "bob", "--role", "root"], b"", 2);
    assert!(err.contains("is not a role"), "{err}");
    let (_, err) = expect(&data, &["users", "disable", "nobody"], b"", 2);
    assert!(err.contains("no user named nobody"), "{err}");

    expect(&data, &["users", "disable", "vic"], b"", 0);
    expect(&data, &["users", "enable", "vic"], b"", 0);
    expect(&data, &["users", "require-totp", "vic"], b"", 0);
    expect(&data, &["users", "reset-totp", "vic"], b"", 0);
    let (out, _) = expect(&data, &["users", "reset-password", "vic"], b"", 0);
    assert_eq!(out.trim().len(), 24);
    assert_ne!(out.trim(), generated);

    let (out, _) = expect(&data, &["users", "list"], b"", 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("alice\tadmin\t-\tactive"), "{out}");
    assert!(
        lines[1].starts_with("vic\tviewer\tacme\tactive, totp required"),
        "{out}"
    );
    let (out, _) = expect(&data, &["users", "list", "--format", "json"], b"", 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[1]["name"], "vic");
    assert_eq!(list[1]["totp_required"], true);
    assert!(!out.contains("argon2"), "no hash is listed: {out}");

    assert_eq!(
        system_actions(&data),
        [
            "user.created",
            "user.created",
            "user.disabled",
            "user.enabled",
            "user.totp_required",
            "user.totp_reset",
            "user.password_reset",
        ]
    );
}
