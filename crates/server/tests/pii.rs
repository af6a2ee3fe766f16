//! PII protection through the API: who sees encrypted fields in clear
//! (keys with the `pii` permission) and who sees the stored marker, hmac
//! filters by clear value, erasure reaching lists, reads by id and exports
//! while leaf hashes stay, and the refusals at start (no master key, a
//! wrong one).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use sealtrail_meta::{key_event, Scope};
use sealtrail_pii::MasterKey;
use sealtrail_server::config::PiiField;
use sealtrail_server::App;
use serde_json::{json, Value};

mod support;

use support::Harness;

const EMAIL: &str = "alice.hidden@example.org";
const ALICE: &str = "alice-42";

fn fields() -> Vec<PiiField> {
    vec![
        PiiField {
            log: "default".into(),
            field: "actor.id".into(),
            mode: "hmac".into(),
            subject: None,
        },
        PiiField {
            log: "default".into(),
            field: "actor.email".into(),
            mode: "encrypt".into(),
            subject: None,
        },
    ]
}

fn key_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("master.key");
    std::fs::write(&path, MasterKey::generate().unwrap().to_hex().as_bytes()).unwrap();
    path
}

fn first_email(page: &Value) -> String {
    page["events"][0]["event"]["actor"]["email"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_pii_permission_decides_who_reads_clear_values() {
    let keys = tempfile::tempdir().unwrap();
    let master = key_file(&keys);
    let h = Harness::new(|c| {
        c.pii.master_key_file = master.display().to_string();
        c.pii.fields = fields();
    });
    let ingest = h.key(Scope::Ingest, None);
    let reader = h.key(Scope::Read, None);
    let admin = h.key(Scope::Admin, None);
    let pii_reader = h.key(Scope::Read, None);
    let id = pii_reader.split('_').nth(1).unwrap().to_string();
    h.app
        .meta
        .set_key_pii(&id, true, |k| {
            key_event(json!({"id": "test", "type": "user"}), "api_key.pii_granted", k)
        })
        .unwrap();
    h.app.forget_keys();

    let index = h
        .store(
            "default",
            &ingest,
            json!({"action": "user.login", "actor": {"id": ALICE, "email": EMAIL}}),
        )
        .await;
    h.store(
        "default",
        &ingest,
        json!({"action": "user.login", "actor": {"id": "bob-7", "email": "bob@example.org"}}),
    )
    .await;
    h.settle("default");

    // Found by the clear actor id whoever asks; the email in clear only
    // for the key with `pii`. The leaf hash is the stored entry's for both.
    let query = format!("/api/v1/logs/default/events?actor={ALICE}");
    let plain = h.get(&query, Some(&reader)).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let plain = plain.json();
    assert_eq!(plain["events"].as_array().unwrap().len(), 1);
    let marker = first_email(&plain);
    assert!(marker.starts_with("enc:"), "{marker}");
    assert!(!plain.to_string().contains(EMAIL));
    assert!(plain["events"][0]["event"]["actor"]["id"]
        .as_str()
        .unwrap()
        .starts_with("hmac:"));
    let admin_page = h.get(&query, Some(&admin)).await.json();
    assert_eq!(
        first_email(&admin_page),
        marker,
        "admin scope alone is not the permission"
    );
    let clear = h.get(&query, Some(&pii_reader)).await.json();
    assert_eq!(first_email(&clear), EMAIL);
    assert_eq!(clear["events"][0]["leaf_hash"], plain["events"][0]["leaf_hash"]);
    assert_eq!(clear["events"][0]["index"], index);

    // By id, and in an export.
    let event_id = plain["events"][0]["event"]["id"].as_str().unwrap().to_string();
    let by_id = format!("/api/v1/logs/default/events/{event_id}");
    assert_eq!(
        h.get(&by_id, Some(&pii_reader)).await.json()["event"]["actor"]["email"],
        EMAIL
    );
    assert_eq!(
        h.get(&by_id, Some(&reader)).await.json()["event"]["actor"]["email"],
        marker
    );
    let export = "/api/v1/logs/default/export?format=jsonl";
    assert!(h.get(export, Some(&pii_reader)).await.text().contains(EMAIL));
    let stored_export = h.get(export, Some(&reader)).await.text();
    assert!(!stored_export.contains(EMAIL) && stored_export.contains(&marker));
    let csv = "/api/v1/logs/default/export?format=csv";
    assert!(!h.get(csv, Some(&reader)).await.text().contains(EMAIL));

    // Erase Alice: nobody reads her email any more; the entry's bytes and
    // leaf hash are unchanged; Bob's still opens.
    let vault = h.app.pii.clone().unwrap();
    h.app
        .meta
        .erase_pii_subject(&vault, ALICE, None, json!({"id": "test", "type": "user"}))
        .unwrap();
    let after = h.get(&query, Some(&pii_reader)).await.json();
    assert_eq!(first_email(&after), marker);
    assert_eq!(after["events"][0]["leaf_hash"], plain["events"][0]["leaf_hash"]);
    assert_eq!(
        h.get(&by_id, Some(&pii_reader)).await.json()["event"]["actor"]["email"],
        marker
    );
    let export_after = h.get(export, Some(&pii_reader)).await.text();
    assert!(!export_after.contains(EMAIL));
    assert!(export_after.contains("bob@example.org"));
    assert_eq!(
        h.get(export, Some(&reader)).await.text(),
        stored_export,
        "the stored entries are byte for byte the same"
    );
}

#[test]
fn a_server_will_not_start_without_the_right_master_key() {
    let keys = tempfile::tempdir().unwrap();
    let master = key_file(&keys);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Fields protected, no key: refused, naming the log and the setting.
    let mut config = support::config(&data);
    config.pii.fields = fields();
    let err = App::open(config).err().unwrap();
    assert!(err.contains("default") && err.contains("pii.master_key_file"), "{err}");

    // With the key it starts (and makes the key store); with another key
    // it is refused, and the data directory's key store is unchanged.
    let mut config = support::config(&data);
    config.pii.fields = fields();
    config.pii.master_key_file = master.display().to_string();
    drop(App::open(config.clone()).unwrap());
    let other = keys.path().join("other.key");
    std::fs::write(&other, MasterKey::generate().unwrap().to_hex().as_bytes()).unwrap();
    config.pii.master_key_file = other.display().to_string();
    let err = App::open(config.clone()).err().unwrap();
    assert!(err.contains("does not open"), "{err}");
    // Nothing was changed: the right key still opens the key store.
    config.pii.master_key_file = master.display().to_string();
    drop(App::open(config.clone()).unwrap());

    // An unknown mode in the configuration is refused when it is loaded.
    let file = keys.path().join("sealtrail.toml");
    std::fs::write(
        &file,
        "[[pii.fields]]\nlog = \"default\"\nfield = \"actor.email\"\nmode = \"scramble\"\n",
    )
    .unwrap();
    let err = sealtrail_server::Config::load(Some(&file), Vec::new())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("pii.fields[0]") && err.contains("unknown PII mode"),
        "{err}"
    );
}

/// The stored `actor` of the event at ledger index `index` of `log`.
fn stored_actor(h: &Harness, log: &str, index: u64) -> Value {
    let found = h.app.trail(log).unwrap().read(index).unwrap();
    serde_json::to_value(&found.event).unwrap()["actor"].clone()
}

#[tokio::test]
async fn pii_set_applies_from_the_next_batch_without_a_restart() {
    let keys = tempfile::tempdir().unwrap();
    let master = key_file(&keys);
    let h = Harness::new(|c| c.pii.master_key_file = master.display().to_string());
    let ingest = h.key(Scope::Ingest, None);
    let login = |n: u32| json!({"action": "user.login", "actor": {"id": ALICE, "email": format!("{n}-{EMAIL}")}});
    let before = h.store("default", &ingest, login(0)).await;
    assert_eq!(stored_actor(&h, "default", before)["id"], ALICE);

    // Set as `sealtrail pii set` does, through meta.db; the next event is
    // protected, with no restart.
    let actor = json!({"id": "cli:test", "type": "user"});
    for (field, mode) in [("actor.id", "hmac"), ("actor.email", "encrypt")] {
        let rule = sealtrail_pii::Rule::parse(field, mode, None).unwrap();
        h.app.meta.set_pii_field("default", &rule, actor.clone()).unwrap();
    }
    let after = h.store("default", &ingest, login(1)).await;
    let stored = stored_actor(&h, "default", after);
    let vault = h.app.pii.clone().unwrap();
    assert_eq!(stored["id"], vault.pseudonym(ALICE));
    assert!(stored["email"].as_str().unwrap().starts_with("enc:"), "{stored}");
    // And searches hash the clear value with the new rule.
    h.settle("default");
    let reader = h.key(Scope::Read, None);
    let page = h
        .get(&format!("/api/v1/logs/default/events?actor={ALICE}"), Some(&reader))
        .await
        .json();
    let indices: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, vec![after]);

    // A rule for another log applies there only.
    let admin = h.key(Scope::Admin, None);
    let created = h.post("/api/v1/logs", Some(&admin), json!({"name": "other"})).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let rule = sealtrail_pii::Rule::parse("actor.id", "hmac", None).unwrap();
    h.app.meta.set_pii_field("other", &rule, actor).unwrap();
    let other = h.store("other", &ingest, login(2)).await;
    assert_eq!(stored_actor(&h, "other", other)["id"], vault.pseudonym(ALICE));
    assert_eq!(stored_actor(&h, "other", other)["email"], format!("2-{EMAIL}"));
}

#[tokio::test]
async fn a_log_protected_while_no_master_key_is_given_stores_nothing() {
    let h = Harness::new(|_| {});
    let ingest = h.key(Scope::Ingest, None);
    let event = json!({"action": "user.login", "actor": {"id": ALICE}});
    h.store("default", &ingest, event.clone()).await;
    let size = h.app.trail("default").unwrap().log().size();
    let rule = sealtrail_pii::Rule::parse("actor.id", "hmac", None).unwrap();
    h.app
        .meta
        .set_pii_field("default", &rule, json!({"id": "cli:test", "type": "user"}))
        .unwrap();
    let r = h.post("/api/v1/logs/default/events", Some(&ingest), event).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.bytes));
    let text = String::from_utf8_lossy(&r.bytes).into_owned();
    assert!(text.contains("default") && text.contains("no master key"), "{text}");
    assert!(!text.contains(ALICE), "{text}");
    assert_eq!(h.app.trail("default").unwrap().log().size(), size, "nothing stored");
}
