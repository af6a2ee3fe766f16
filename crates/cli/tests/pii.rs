//! `sealtrail pii` and the PII protection of `sealtrail append`, through
//! the binary: the configuration file's `[[pii.fields]]` apply as they do
//! on the server, each command's refusals (wrong master key, unknown
//! subject) change nothing, and a running server applies `pii set` from
//! its next batch.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use sealtrail_event::Event;
use sealtrail_meta::Meta;
use sealtrail_pii::{LogPii, MasterKey, PiiError};
use serde_json::{json, Value};

mod support;

use support::{agent, create_key, Running, BIN};

const ALICE: &str = "alice-42";
const EMAIL: &str = "alice.hidden@example.org";

struct Dir {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    /// Master key files, outside the data directory.
    key: PathBuf,
    other_key: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let key = tmp.path().join("master.key");
        let other_key = tmp.path().join("other.key");
        for path in [&key, &other_key] {
            std::fs::write(path, MasterKey::generate().unwrap().to_hex().as_bytes()).unwrap();
        }
        Dir {
            _tmp: tmp,
            data,
            key,
            other_key,
        }
    }

    /// `sealtrail --data DATA args` with `env` and `stdin`; exit code,
    /// stdout, stderr. No master key comes from this process's
    /// environment.
    fn run(&self, args: &[&str], env: &[(&str, &Path)], stdin: &str) -> (i32, String, String) {
        let mut c = Command::new(BIN);
        c.arg("--data").arg(&self.data).args(args);
        c.env_remove("SEALTRAIL_PII_MASTER_KEY_FILE")
            .env_remove("SEALTRAIL_PII_MASTER_KEY");
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str], env: &[(&str, &Path)], stdin: &str) -> String {
        let (code, out, err) = self.run(args, env, stdin);
        assert_eq!(code, 0, "sealtrail {args:?}: {out}{err}");
        out
    }

    /// Refused (exit code 2, an error); its standard error.
    #[track_caller]
    fn refused(&self, args: &[&str], env: &[(&str, &Path)]) -> String {
        let (code, out, err) = self.run(args, env, "");
        assert_eq!(code, 2, "sealtrail {args:?} was not refused: {out}{err}");
        err
    }

    fn with_key(&self) -> [(&'static str, &Path); 1] {
        [("SEALTRAIL_PII_MASTER_KEY_FILE", self.key.as_path())]
    }

    /// The entries of `log` as stored, oldest first, read with `sealtrail
    /// entry` (no master key: nothing is opened).
    fn stored(&self, log: &str) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let (code, out, _) = self.run(&["--log", log, "entry", &events.len().to_string()], &[], "");
            if code != 0 {
                return events;
            }
            events.push(sealtrail_event::parse_entry(out.as_bytes()).unwrap());
        }
    }

    fn list(&self) -> String {
        self.ok(&["pii", "list"], &[], "")
    }

    /// The PII protection of `log` opened with the key in `key_file`.
    fn protection(&self, key_file: &Path, log: &str) -> Result<LogPii, PiiError> {
        let meta = Meta::open(&self.data).unwrap();
        let master = MasterKey::from_file(key_file, None).unwrap();
        let vault = meta.pii_vault(master).map_err(|e| match e {
            sealtrail_meta::PiiChangeError::Pii(e) => e,
            other => panic!("{other}"),
        })?;
        Ok(LogPii::new(Arc::new(vault), log, meta.pii_policy(log).unwrap()))
    }

    /// Every file under the data directory holding `needle`.
    fn files_holding(&self, needle: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, needle: &[u8], found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, needle, found);
                } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.data, needle.as_bytes(), &mut found);
        found
    }
}

fn login(actor: &str, email: &str) -> String {
    format!(
        "{}\n",
        json!({"action": "user.login", "actor": {"id": actor, "email": email}})
    )
}

#[test]
fn append_applies_the_configuration_files_pii_fields() {
    let d = Dir::new();
    let config = d._tmp.path().join("sealtrail.toml");
    let fields = "[[pii.fields]]\nlog = \"default\"\nfield = \"actor.id\"\nmode = \"hmac\"\n\n\
                  [[pii.fields]]\nlog = \"default\"\nfield = \"actor.email\"\nmode = \"encrypt\"\n";
    // Fields protected by the configuration and no master key: refused,
    // nothing appended.
    std::fs::write(&config, fields).unwrap();
    let config_arg = config.to_str().unwrap();
    d.ok(&["logs", "create", "default"], &[], "");
    let (code, out, err) = d.run(&["append", "--config", config_arg], &[], &login(ALICE, EMAIL));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("log default protects PII fields"), "{err}");
    assert!(d.stored("default").is_empty());

    // With the key the configuration names, the stored entry holds the
    // pseudonym and the envelope; the clear values are in no file.
    std::fs::write(
        &config,
        format!("[pii]\nmaster_key_file = \"{}\"\n\n{fields}", d.key.display()),
    )
    .unwrap();
    let out = d.ok(&["append", "--config", config_arg], &[], &login(ALICE, EMAIL));
    assert!(out.contains("appended 1"), "{out}");
    let stored = d.stored("default");
    assert_eq!(stored.len(), 1);
    let pii = d.protection(&d.key, "default").unwrap();
    let actor = stored[0].actor.clone().unwrap();
    assert_eq!(actor.id, pii.vault().pseudonym(ALICE));
    let sealed = actor.email.unwrap();
    assert!(sealed.starts_with("enc:"), "{sealed}");
    // meta.db holds no rule of them: the configuration's applied.
    assert!(d.list().is_empty());
    for clear in [ALICE, EMAIL] {
        assert_eq!(d.files_holding(clear), Vec::<PathBuf>::new(), "{clear} stored in clear");
    }
    // The envelope opens with the configuration's rule and key.
    let mut event = stored[0].clone();
    let configured = sealtrail_pii::Policy {
        rules: vec![sealtrail_pii::Rule::parse("actor.email", "encrypt", None).unwrap()],
    };
    let opener = LogPii::new(pii.vault().clone(), "default", configured);
    assert_eq!(opener.reveal(&mut event), 1);
    assert_eq!(event.actor.unwrap().email.as_deref(), Some(EMAIL));

    // Without --config, append applies meta.db's rules only: here none.
    d.ok(&["append"], &[], &login("bob-7", "bob@example.org"));
    assert_eq!(d.stored("default")[1].actor.as_ref().unwrap().id, "bob-7");
}

#[test]
fn pii_commands_and_their_refusals() {
    let d = Dir::new();
    let key = d.with_key();
    let other = [("SEALTRAIL_PII_MASTER_KEY_FILE", d.other_key.as_path())];
    d.ok(&["logs", "create", "default"], &[], "");

    // new-master-key: 64 hexadecimal digits, fresh each time.
    let a = d.ok(&["pii", "new-master-key"], &[], "");
    let b = d.ok(&["pii", "new-master-key"], &[], "");
    for k in [&a, &b] {
        assert!(
            k.trim().len() == 64 && k.trim().bytes().all(|c| c.is_ascii_hexdigit()),
            "{k}"
        );
    }
    assert_ne!(a, b);

    // set: refused without a key, for a field that cannot be protected,
    // and for an unknown mode; nothing is set.
    let err = d.refused(&["pii", "set", "actor.email", "--mode", "encrypt"], &[]);
    assert!(err.contains("needs the PII master key"), "{err}");
    let err = d.refused(&["pii", "set", "context.ip", "--mode", "hmac"], &key);
    assert!(err.contains("\"context.ip\" cannot be protected"), "{err}");
    let err = d.refused(&["pii", "set", "actor.email", "--mode", "scramble"], &key);
    assert!(err.contains("unknown PII mode \"scramble\""), "{err}");
    assert!(d.list().is_empty());

    d.ok(&["pii", "set", "actor.email", "--mode", "encrypt"], &key, "");
    d.ok(&["pii", "set", "actor.id", "--mode", "hmac"], &key, "");
    let listed = d.list();
    assert_eq!(
        listed,
        "default\tactor.email\tencrypt\tactor.id\ndefault\tactor.id\thmac\t-\n"
    );

    // Another master key does not open the key store: refused, unchanged.
    let err = d.refused(&["pii", "set", "message", "--mode", "hmac"], &other);
    assert!(err.contains("does not open"), "{err}");
    assert_eq!(d.list(), listed);

    // append: refused without the key (nothing stored), protected with it.
    let (code, _, err) = d.run(&["append"], &[], &login(ALICE, EMAIL));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("protects PII fields"), "{err}");
    d.ok(&["append"], &key, &login(ALICE, EMAIL));
    let stored = d.stored("default");
    assert_eq!(stored.len(), 1);
    let pii = d.protection(&d.key, "default").unwrap();
    assert_eq!(stored[0].actor.as_ref().unwrap().id, pii.vault().pseudonym(ALICE));
    let opens = |pii: &LogPii| {
        let mut event = stored[0].clone();
        pii.reveal(&mut event) == 1 && event.actor.unwrap().email.as_deref() == Some(EMAIL)
    };
    assert!(opens(&pii));
    let system_events = || d.stored("system").len();
    let recorded = system_events();

    // erase: an unknown subject, a subject given by its stored form, and
    // the wrong master key are refused, and Alice's email still opens.
    let err = d.refused(&["pii", "erase", "nobody"], &key);
    assert!(
        err.contains("no data key for that subject: nothing was erased"),
        "{err}"
    );
    let pseudonym = pii.vault().pseudonym(ALICE);
    let err = d.refused(&["pii", "erase", &pseudonym], &key);
    assert!(err.contains("no data key for that subject"), "{err}");
    let err = d.refused(&["--log", "other", "pii", "erase", ALICE], &key);
    assert!(err.contains("no data key for that subject in log other"), "{err}");
    let err = d.refused(&["pii", "erase", ALICE], &other);
    assert!(err.contains("does not open"), "{err}");
    let err = d.refused(&["pii", "erase", ALICE], &[]);
    assert!(err.contains("needs the PII master key"), "{err}");
    assert!(opens(&d.protection(&d.key, "default").unwrap()));
    assert_eq!(system_events(), recorded, "a refusal records nothing");

    // rotate-master: the wrong current key is refused and the old key
    // still opens everything; then rotated, only the new one does.
    let other_file = d.other_key.to_str().unwrap();
    let err = d.refused(&["pii", "rotate-master", "--new-master-key-file", other_file], &other);
    assert!(err.contains("does not open"), "{err}");
    assert!(opens(&d.protection(&d.key, "default").unwrap()));
    let out = d.ok(&["pii", "rotate-master", "--new-master-key-file", other_file], &key, "");
    assert!(out.contains("1 data keys"), "{out}");
    assert!(matches!(
        d.protection(&d.key, "default").err(),
        Some(PiiError::WrongMasterKey)
    ));
    let rotated = d.protection(&d.other_key, "default").unwrap();
    assert!(opens(&rotated));
    assert_eq!(rotated.vault().pseudonym(ALICE), pseudonym, "hmac values stay");

    // erase with the new key: Alice's email opens no more; again is refused.
    let out = d.ok(&["pii", "erase", ALICE], &other, "");
    assert!(out.contains(&pseudonym) && out.contains("default"), "{out}");
    assert!(!opens(&d.protection(&d.other_key, "default").unwrap()));
    let err = d.refused(&["pii", "erase", ALICE], &other);
    assert!(err.contains("no data key for that subject"), "{err}");

    // Each change is in the system log, naming the subject by its HMAC.
    let actions: Vec<String> = d
        .stored("system")
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("pii."))
        .collect();
    assert_eq!(
        actions,
        ["pii.field_set", "pii.field_set", "pii.master_rotated", "pii.erased"]
    );
    assert_eq!(d.files_holding(ALICE), Vec::<PathBuf>::new());
}

#[test]
fn a_running_server_applies_pii_set_from_its_next_batch() {
    let d = Dir::new();
    d.ok(&["logs", "create", "default"], &[], "");
    let ingest = create_key(&d.data, "ingest", None);
    let server = Running::spawn(
        support::serve(&d.data, "127.0.0.1:0")
            .env("SEALTRAIL_PII_MASTER_KEY_FILE", &d.key)
            .stderr(Stdio::null()),
        String::new,
    );
    let agent = agent();
    let post = |actor: &str, email: &str| {
        let mut resp = agent
            .post(format!("{}/api/v1/logs/default/events/batch", server.base))
            .header("Authorization", format!("Bearer {ingest}"))
            .header("Content-Type", "application/x-ndjson")
            .send(login(actor, email))
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.body_mut().read_json().unwrap();
        body["items"][0]["index"].as_u64().unwrap()
    };
    // The stored event at `index`, read as stored beside the server.
    let entry = |index: u64| -> Event {
        let out = d.ok(&["entry", &index.to_string()], &[], "");
        sealtrail_event::parse_entry(out.as_bytes()).unwrap()
    };

    let first = post("bob-7", "bob@example.org");
    assert_eq!(entry(first).actor.unwrap().id, "bob-7");

    d.ok(&["pii", "set", "actor.id", "--mode", "hmac"], &d.with_key(), "");
    d.ok(&["pii", "set", "actor.email", "--mode", "encrypt"], &d.with_key(), "");
    let second = post(ALICE, EMAIL);
    let stored = entry(second).actor.unwrap();
    let pii = d.protection(&d.key, "default").unwrap();
    assert_eq!(stored.id, pii.vault().pseudonym(ALICE), "{stored:?}");
    assert!(stored.email.as_deref().unwrap().starts_with("enc:"), "{stored:?}");
    let (code, _) = server.stop();
    assert_eq!(code, 0);
    for clear in [ALICE, EMAIL] {
        assert_eq!(d.files_holding(clear), Vec::<PathBuf>::new(), "{clear} stored in clear");
    }
}
