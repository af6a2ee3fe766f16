//! PII protection end to end on a real data directory: a trail whose log
//! pseudonymises and encrypts fields, its key store in `meta.db`, readers
//! with and without the keys, crypto-shredding of a subject with every
//! proof left valid, master key rotation, and the refusals (wrong master
//! key, unknown subject, unknown mode, values that cannot be stored).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealtrail_ledger::DataDir;
use sealtrail_merkle::hash::leaf_hash;
use sealtrail_merkle::proof::verify_inclusion;
use sealtrail_merkle::receipt::Receipt;
use sealtrail_meta::{Meta, PiiChangeError};
use sealtrail_pii::{LogPii, MasterKey, PiiError, Rule, Vault};
use sealtrail_trail::{Filter, Found, Item, Page, Trail, TrailOptions};
use serde_json::json;

const ALICE: &str = "alice.subject-7Q";
const ALICE_EMAIL: &str = "alice.private@example.org";
const ALICE_SSN: &str = "078-05-1120";
const BOB: &str = "bob.subject-9Z";
const BOB_EMAIL: &str = "bob.private@example.org";
const NOTE: &str = "Zanzibar confidential remark";

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    key_file: PathBuf,
    data: DataDir,
    meta: Meta,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let data = DataDir::new(&root);
    data.create_log("audit", None).unwrap();
    let meta = Meta::open(&root).unwrap();
    let key_file = tmp.path().join("master.key");
    std::fs::write(&key_file, MasterKey::generate().unwrap().to_hex().as_bytes()).unwrap();
    Env {
        _tmp: tmp,
        root,
        key_file,
        data,
        meta,
    }
}

fn actor() -> serde_json::Value {
    json!({"id": "cli:test", "type": "user"})
}

impl Env {
    fn master(&self) -> MasterKey {
        MasterKey::from_file(&self.key_file, Some(&self.root)).unwrap()
    }

    fn vault(&self) -> Arc<Vault> {
        Arc::new(self.meta.pii_vault(self.master()).unwrap())
    }

    fn protect(&self, field: &str, mode: &str, subject: Option<&str>) {
        let rule = Rule::parse(field, mode, subject).unwrap();
        self.meta.set_pii_field("audit", &rule, actor()).unwrap();
    }

    fn log_pii(&self, vault: &Arc<Vault>) -> Arc<LogPii> {
        Arc::new(LogPii::new(
            vault.clone(),
            "audit",
            self.meta.pii_policy("audit").unwrap(),
        ))
    }

    fn trail(&self, vault: &Arc<Vault>) -> Trail {
        let opts = TrailOptions {
            pii: Some(self.log_pii(vault)),
            ..TrailOptions::default()
        };
        Trail::open(&self.data, "audit", opts).unwrap()
    }
}

fn ingest(trail: &Trail, events: &[serde_json::Value]) -> Vec<u64> {
    let texts: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
    let done = trail.ingest(&inputs, false).unwrap();
    trail.sync_index().unwrap();
    done.items
        .iter()
        .map(|i| match i {
            Item::Stored { index, .. } => *index,
            other => panic!("not stored: {other:?}"),
        })
        .collect()
}

fn find(trail: &Trail, filter: Filter) -> Vec<Found> {
    trail.query(&filter, &Page::oldest(100)).unwrap()
}

fn actor_filter(id: &str) -> Filter {
    Filter {
        actor: Some(id.into()),
        ..Filter::default()
    }
}

fn text_filter(text: &str) -> Filter {
    Filter {
        text: Some(text.into()),
        ..Filter::default()
    }
}

/// Every file under `dir`, recursively, that holds `needle`'s bytes.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                seen += 1;
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    out.push(path);
                }
            }
        }
    }
    assert!(seen > 5, "the data directory holds its files (found {seen})");
    out
}

fn events() -> Vec<serde_json::Value> {
    vec![
        json!({"action": "user.login", "actor": {"id": ALICE, "email": ALICE_EMAIL},
               "message": NOTE, "details": {"ssn": ALICE_SSN, "plan": "gold"}}),
        json!({"action": "user.login", "actor": {"id": BOB, "email": BOB_EMAIL},
               "targets": [{"type": "account", "id": ALICE}]}),
        json!({"action": "invoice.paid", "actor": {"id": ALICE, "email": ALICE_EMAIL}}),
    ]
}

fn policy(env: &Env) {
    env.protect("actor.id", "hmac", None);
    env.protect("targets.id", "hmac", None);
    env.protect("message", "hmac", None);
    env.protect("actor.email", "encrypt", None);
    env.protect("details.ssn", "encrypt", Some("actor.id"));
}

#[test]
fn hmac_fields_are_found_by_their_clear_values() {
    let env = env();
    policy(&env);
    let vault = env.vault();
    let trail = env.trail(&vault);
    let idx = ingest(&trail, &events());

    let by_actor = find(&trail, actor_filter(ALICE));
    assert_eq!(by_actor.iter().map(|f| f.index).collect::<Vec<_>>(), [idx[0], idx[2]]);
    let stored_actor = &by_actor[0].event.actor.as_ref().unwrap().id;
    assert_eq!(stored_actor, &vault.pseudonym(ALICE));
    assert!(stored_actor.starts_with("hmac:") && stored_actor.len() == 69);

    let by_target = find(
        &trail,
        Filter {
            target_id: Some(ALICE.into()),
            ..Filter::default()
        },
    );
    assert_eq!(by_target.iter().map(|f| f.index).collect::<Vec<_>>(), [idx[1]]);
    let typed = find(
        &trail,
        Filter {
            target_type: Some("account".into()),
            target_id: Some(ALICE.into()),
            ..Filter::default()
        },
    );
    assert_eq!(typed.len(), 1);

    // Free text: the whole hmac'd message as typed, quoted or not.
    let by_text = find(&trail, text_filter(NOTE));
    assert_eq!(by_text.iter().map(|f| f.index).collect::<Vec<_>>(), [idx[0]]);
    assert_eq!(find(&trail, text_filter(&format!("\"{NOTE}\""))).len(), 1);
    // A word of it alone is not the value: the clear text is not indexed.
    assert!(find(&trail, text_filter("Zanzibar")).is_empty());
    // Counting sees the same.
    assert_eq!(trail.count(&actor_filter(BOB)).unwrap(), 1);
    // Another value finds nothing.
    assert!(find(&trail, actor_filter("carol")).is_empty());
}

#[test]
fn encrypted_fields_open_only_with_keys_and_erasure_keeps_every_proof() {
    let env = env();
    policy(&env);
    let vault = env.vault();
    let trail = env.trail(&vault);
    let idx = ingest(&trail, &events());
    let pii = trail.pii().unwrap().clone();

    // Stored: envelopes, not values.
    let first = trail.read(idx[0]).unwrap();
    let email = first.event.actor.as_ref().unwrap().email.clone().unwrap();
    assert!(email.starts_with("enc:"), "{email}");
    let ssn = first.event.details.as_ref().unwrap()["ssn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ssn.starts_with("enc:"));
    assert_eq!(first.event.details.as_ref().unwrap()["plan"], "gold");

    // A reader allowed to see PII reveals them; the stored bytes stay.
    let mut revealed = first.event.clone();
    vault.refresh().unwrap();
    assert_eq!(pii.reveal(&mut revealed), 2);
    assert_eq!(revealed.actor.as_ref().unwrap().email.as_deref(), Some(ALICE_EMAIL));
    assert_eq!(revealed.details.as_ref().unwrap()["ssn"], ALICE_SSN);
    // The hmac'd id stays a pseudonym: HMAC is one way.
    assert_eq!(revealed.actor.as_ref().unwrap().id, vault.pseudonym(ALICE));

    // No clear value in any file of the data directory.
    drop(trail);
    for needle in [ALICE, ALICE_EMAIL, ALICE_SSN, BOB, BOB_EMAIL, NOTE] {
        assert_eq!(files_holding(&env.root, needle), Vec::<PathBuf>::new(), "{needle}");
    }
    // The check can fail: a value stored in clear is found.
    let trail = Trail::open(&env.data, "audit", TrailOptions::default()).unwrap();
    ingest(&trail, &[json!({"action": "canary", "message": "canary-clear-value"})]);
    drop(trail);
    assert!(!files_holding(&env.root, "canary-clear-value").is_empty());

    let trail = env.trail(&vault);
    let before: Vec<Vec<u8>> = idx.iter().map(|&i| trail.log().entry(i).unwrap()).collect();
    let (checkpoint, note) = trail.log().checkpoint();
    let receipts: Vec<Vec<u8>> = idx
        .iter()
        .map(|&i| {
            Receipt {
                extra: None,
                index: i,
                proof: trail.log().inclusion_proof(i, checkpoint.size).unwrap(),
                checkpoint: note.to_vec(),
            }
            .to_bytes()
        })
        .collect();

    // Erase Alice everywhere.
    let logs = env.meta.erase_pii_subject(&vault, ALICE, None, actor()).unwrap();
    assert_eq!(logs, ["audit"]);

    // Her values no longer open, for anyone, through any read: by index,
    // by query and by the export's walk; Bob's still do.
    vault.refresh().unwrap();
    let mut event = trail.read(idx[0]).unwrap().event;
    assert_eq!(pii.reveal(&mut event), 0);
    assert_eq!(event.actor.as_ref().unwrap().email.as_deref(), Some(email.as_str()));
    let hers = find(&trail, actor_filter(ALICE));
    assert_eq!(hers.len(), 2, "still found by her pseudonym");
    for mut f in hers {
        assert_eq!(pii.reveal(&mut f.event), 0);
        assert!(f.event.actor.unwrap().email.unwrap().starts_with("enc:"));
    }
    let mut exported = Vec::new();
    trail
        .for_each(&Filter::default(), |mut f| {
            pii.reveal(&mut f.event);
            exported.push(serde_json::to_string(&f.event).unwrap());
            Ok(true)
        })
        .unwrap();
    let exported = exported.join("\n");
    assert!(!exported.contains(ALICE_EMAIL) && !exported.contains(ALICE_SSN));
    assert!(exported.contains(BOB_EMAIL), "Bob's key is intact");

    // Every entry is byte for byte what it was; the log verifies; the
    // receipts made before the erasure verify still.
    let after: Vec<Vec<u8>> = idx.iter().map(|&i| trail.log().entry(i).unwrap()).collect();
    assert_eq!(before, after);
    let (now, _) = trail.log().checkpoint();
    for (&i, entry) in idx.iter().zip(&after) {
        let proof = trail.log().inclusion_proof(i, now.size).unwrap();
        verify_inclusion(i, now.size, &leaf_hash(entry), &proof, &now.root).unwrap();
    }
    let verifier = env.data.verifier("audit").unwrap();
    for (receipt, entry) in receipts.iter().zip(&after) {
        Receipt::parse(receipt)
            .unwrap()
            .verify(&leaf_hash(entry), &verifier)
            .unwrap();
    }
    drop(trail);
    let report =
        sealtrail_ledger::verify::verify_log(&**env.data.storage(), &env.data.log_dir("audit"), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);

    // The erasure is in the system log's outbox, with the subject's HMAC
    // only.
    let outbox = env.meta.outbox(100).unwrap();
    let erased: Vec<&String> = outbox
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.contains("pii.erased"))
        .collect();
    assert_eq!(erased.len(), 1);
    assert!(erased[0].contains(&vault.pseudonym(ALICE)));
    assert!(!outbox.iter().any(|(_, t)| t.contains(ALICE)));

    // Still no clear value anywhere.
    for needle in [ALICE, ALICE_EMAIL, ALICE_SSN, BOB, BOB_EMAIL, NOTE] {
        assert_eq!(files_holding(&env.root, needle), Vec::<PathBuf>::new(), "{needle}");
    }

    // A new vault (a restart) opens Bob's but not Alice's.
    let fresh = env.vault();
    let pii2 = LogPii::new(fresh.clone(), "audit", env.meta.pii_policy("audit").unwrap());
    fresh.refresh().unwrap();
    let trail = env.trail(&vault);
    let mut alice = trail.read(idx[2]).unwrap().event;
    let mut bob = trail.read(idx[1]).unwrap().event;
    assert_eq!(pii2.reveal(&mut alice), 0);
    assert_eq!(pii2.reveal(&mut bob), 1);
}

#[test]
fn erasure_by_another_vault_reaches_a_running_reader() {
    let env = env();
    policy(&env);
    let vault = env.vault();
    let trail = env.trail(&vault);
    let idx = ingest(&trail, &events());
    let pii = trail.pii().unwrap().clone();
    vault.refresh().unwrap();
    let mut e = trail.read(idx[0]).unwrap().event;
    assert_eq!(pii.reveal(&mut e), 2, "cached now");
    // Another process (the CLI) erases with its own vault.
    let other = env.vault();
    env.meta
        .erase_pii_subject(&other, ALICE, Some("audit"), actor())
        .unwrap();
    vault.refresh().unwrap();
    let mut e = trail.read(idx[0]).unwrap().event;
    assert_eq!(pii.reveal(&mut e), 0, "the cached key is forgotten");
    // A new event of hers gets a new key, which opens.
    let more = ingest(&trail, &[events()[2].clone()]);
    let mut e = trail.read(more[0]).unwrap().event;
    assert_eq!(pii.reveal(&mut e), 1);
}

#[test]
fn wrong_master_key_is_refused_and_changes_nothing() {
    let env = env();
    policy(&env);
    let vault = env.vault();
    let trail = env.trail(&vault);
    ingest(&trail, &events());
    drop(trail);
    let keys_before = env.meta.pii_fields().unwrap();
    let meta_before = std::fs::read(env.root.join("meta.db")).unwrap();
    let wrong = MasterKey::generate().unwrap();
    let err = env.meta.pii_vault(wrong).err().unwrap();
    assert!(matches!(err, PiiChangeError::Pii(PiiError::WrongMasterKey)), "{err}");
    assert!(err.to_string().contains("does not open"), "{err}");
    assert_eq!(std::fs::read(env.root.join("meta.db")).unwrap(), meta_before);
    assert_eq!(env.meta.pii_fields().unwrap(), keys_before);
    // A master key kept inside the data directory is refused too.
    let inside = env.root.join("master.key");
    std::fs::copy(&env.key_file, &inside).unwrap();
    let err = MasterKey::from_file(&inside, Some(&env.root))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("inside the data directory"), "{err}");
}

#[test]
fn unknown_subject_is_refused_and_changes_nothing() {
    let env = env();
    policy(&env);
    let vault = env.vault();
    let trail = env.trail(&vault);
    let idx = ingest(&trail, &events());
    let outbox = env.meta.outbox(100).unwrap();
    let err = env
        .meta
        .erase_pii_subject(&vault, "nobody", None, actor())
        .err()
        .unwrap();
    assert!(matches!(err, PiiChangeError::UnknownSubject { .. }), "{err}");
    assert!(err.to_string().contains("nothing was erased"));
    // Known subject, other log: refused as well.
    let err = env
        .meta
        .erase_pii_subject(&vault, ALICE, Some("other"), actor())
        .err()
        .unwrap();
    assert!(err.to_string().contains("in log other"), "{err}");
    assert_eq!(env.meta.outbox(100).unwrap(), outbox);
    let pii = trail.pii().unwrap();
    vault.refresh().unwrap();
    let mut e = trail.read(idx[0]).unwrap().event;
    assert_eq!(pii.reveal(&mut e), 2);
}

#[test]
fn refusals_name_the_field_and_never_the_value() {
    let env = env();
    policy(&env);
    let vault = env.vault();
    let trail = env.trail(&vault);
    let long_email = format!("{}@example.org", "secretlocalpart".repeat(12));
    let cases = [
        (
            json!({"action": "a", "actor": {"id": ALICE, "email": long_email}}),
            "actor.email",
            long_email.clone(),
        ),
        (
            json!({"action": "a", "message": NOTE, "details": {"ssn": ALICE_SSN}}),
            "actor.id",
            ALICE_SSN.to_string(),
        ),
        (
            json!({"action": "a", "actor": {"id": ALICE}, "details": {"ssn": 78051120}}),
            "details.ssn",
            "78051120".into(),
        ),
        (
            json!({"action": "a", "actor": {"id": ALICE, "email": ""}}),
            "actor.email",
            ALICE.into(),
        ),
    ];
    for (event, path, secret) in cases {
        let text = event.to_string();
        let done = trail.ingest(&[text.as_bytes()], false).unwrap();
        let Item::Rejected(r) = &done.items[0] else {
            panic!("{event} was stored")
        };
        let why = r.to_string();
        assert!(why.contains(path), "{why}");
        assert!(!why.contains(&secret), "{why}");
    }
    assert_eq!(trail.log().size(), 0);
    let err = Rule::parse("actor.email", "rot13", None).err().unwrap().to_string();
    assert_eq!(err, "unknown PII mode \"rot13\": use hmac or encrypt");
    let err = Rule::parse("context.ip", "hmac", None).err().unwrap().to_string();
    assert!(err.contains("cannot be protected"), "{err}");
}

#[test]
fn master_key_rotation_rewraps_every_key() {
    let env = env();
    policy(&env);
    let vault = env.vault();
    let trail = env.trail(&vault);
    let idx = ingest(&trail, &events());
    drop(trail);
    let new = MasterKey::generate().unwrap();
    let n = env.meta.rotate_pii_master(&vault, &new, actor()).unwrap();
    assert_eq!(n, 2, "Alice's and Bob's data keys");
    // The old key opens nothing now; the new one opens everything.
    assert!(env.meta.pii_vault(env.master()).is_err());
    let rotated = Arc::new(env.meta.pii_vault(new).unwrap());
    assert_eq!(
        rotated.pseudonym(ALICE),
        vault.pseudonym(ALICE),
        "pseudonyms are stable"
    );
    let trail = env.trail(&rotated);
    let pii = trail.pii().unwrap();
    rotated.refresh().unwrap();
    let mut e = trail.read(idx[0]).unwrap().event;
    assert_eq!(pii.reveal(&mut e), 2);
    assert!(env
        .meta
        .outbox(100)
        .unwrap()
        .iter()
        .any(|(_, t)| t.contains("pii.master_rotated")));
}

/// The data keys of a batch's new subjects are kept in `meta.db` before
/// the batch is appended, all of them, and readable by a vault opened
/// afresh (as after a restart).
#[test]
fn a_batch_keeps_every_new_subjects_key_before_it_is_stored() {
    let env = env();
    env.protect("actor.email", "encrypt", None);
    let vault = env.vault();
    let trail = env.trail(&vault);
    let batch: Vec<serde_json::Value> = (0..40)
        .map(|i| json!({"action": "user.login", "actor": {"id": format!("subject-{i}"), "email": format!("p{i}@example.org")}}))
        .collect();
    let stored = ingest(&trail, &batch);
    assert_eq!(stored.len(), 40);
    let keys: i64 = rusqlite::Connection::open(env.root.join("meta.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM pii_keys WHERE log = 'audit'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 40, "one kept key per new subject");
    drop(trail);
    let fresh = env.vault();
    let trail = env.trail(&fresh);
    let pii = env.log_pii(&fresh);
    for (i, index) in stored.iter().enumerate() {
        let mut event = trail.read(*index).unwrap().event;
        assert_eq!(pii.reveal(&mut event), 1);
        assert_eq!(
            event.actor.unwrap().email.as_deref(),
            Some(format!("p{i}@example.org").as_str())
        );
    }
}

/// A subject erased while a batch that names it is being protected: the
/// fresh key made before the erasure is not kept, and the batch is
/// protected again under a key made after it.
#[test]
fn a_fresh_key_made_before_an_erasure_is_not_kept() {
    let env = env();
    env.protect("actor.email", "encrypt", None);
    let vault = env.vault();
    vault.refresh().unwrap();
    let pii = env.log_pii(&vault);
    let mark = vault.mark();
    let text = json!({"action": "user.login", "actor": {"id": ALICE, "email": ALICE_EMAIL}}).to_string();
    let mut event = sealtrail_event::accept_json(
        text.as_bytes(),
        sealtrail_event::Timestamp::UNIX_EPOCH,
        sealtrail_event::Ulid::nil(),
    )
    .unwrap();
    pii.protect(&mut event).unwrap();
    // An earlier key of ALICE's to erase, kept by another vault.
    let other = env.vault();
    other.refresh().unwrap();
    let mut earlier = event.clone();
    earlier.actor.as_mut().unwrap().email = Some(ALICE_EMAIL.into());
    env.log_pii(&other).protect(&mut earlier).unwrap();
    assert!(other.keep_fresh_keys(other.mark()).unwrap());
    env.meta.erase_pii_subject(&other, ALICE, None, actor()).unwrap();
    assert!(
        !vault.keep_fresh_keys(mark).unwrap(),
        "made before the erasure: not kept"
    );
    let keys = |subject: &str| -> i64 {
        rusqlite::Connection::open(env.root.join("meta.db"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM pii_keys WHERE subject = ?1",
                [&vault.subject_tag(subject)[..]],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(keys(ALICE), 0);
    // Ingest after the erasure keeps a new key.
    let trail = env.trail(&vault);
    let stored = ingest(&trail, &events()[2..]);
    assert_eq!(keys(ALICE), 1);
    let mut event = trail.read(stored[0]).unwrap().event;
    assert_eq!(pii.reveal(&mut event), 1);
    assert_eq!(event.actor.unwrap().email.as_deref(), Some(ALICE_EMAIL));
}
