//! The keys in use: the HMAC key and the data keys, unwrapped from a
//! [`KeyStore`] with the master key and cached (bounded); and [`LogPii`],
//! one log's policy applied to events at ingest and undone for readers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use aes_gcm::Aes256Gcm;
use sealtrail_event::jcs::string_len;
use sealtrail_event::{Event, FieldError, Resized};

use crate::crypto::{
    self, data_key_aad, hmac_form, open_envelope, open_secret, sealed_key_id, HmacKey, KeyId, MasterKey, Secret,
    HMAC_KEY_AAD,
};
use crate::fields::{FieldPath, Mode, Policy};
use crate::PiiError;

/// Data keys held unwrapped in memory at most, and subjects remembered at
/// most; past either the cache starts afresh (keys are unwrapped again
/// from the store as they are needed).
pub const MAX_CACHED_KEYS: usize = 65_536;

/// A key store failure, in the store's words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where wrapped keys are kept. Keys are only ever added by ingest; they
/// are removed (erasure) or rewrapped (master key rotation) by whoever
/// owns the store, which then changes [`KeyStore::generation`].
pub trait KeyStore: Send + Sync {
    /// The wrapped HMAC key, if one was made.
    fn wrapped_hmac_key(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keep `wrapped` as the HMAC key unless one is kept already; return
    /// the one kept.
    fn init_hmac_key(&self, wrapped: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// The wrapped data key `id`, unless erased (or never made).
    fn wrapped_key(&self, id: &KeyId) -> Result<Option<Vec<u8>>, StoreError>;
    /// The data key of `subject` (its HMAC) in `log`, if it has one.
    fn subject_key(&self, log: &str, subject: &[u8; 32]) -> Result<Option<WrappedKey>, StoreError>;
    /// Keep each of `fresh` as the data key of its subject in its log, in
    /// one durable transaction: a subject that has a key already keeps
    /// it, and a key made under another [`KeyStore::generation`] than the
    /// store's is not kept. Returns, in order, the key each subject has
    /// now (`None`: not kept, the generation moved).
    fn keep_subject_keys(&self, fresh: &[FreshKey]) -> Result<Vec<Option<WrappedKey>>, StoreError>;
    /// A number that changes whenever a key is erased or rewrapped.
    fn generation(&self) -> Result<u64, StoreError>;
}

/// A data key as a store keeps it: its id and the key wrapped by the
/// master key.
pub type WrappedKey = (KeyId, Vec<u8>);

/// A data key made by ingest and not yet kept by the store.
#[derive(Debug, Clone)]
pub struct FreshKey {
    pub log: String,
    pub subject: [u8; 32],
    pub id: KeyId,
    /// The key wrapped by the master key.
    pub wrapped: Vec<u8>,
    /// The store's generation the key was made under (`None`: not read).
    pub generation: Option<u64>,
}

/// Data keys made and in use but not yet durable, by (log, subject).
#[derive(Default)]
struct Fresh {
    keys: HashMap<(String, [u8; 32]), FreshKey>,
    /// Keys ever made, and how many of them a call of
    /// [`Vault::keep_fresh_keys`] has dealt with.
    made: u64,
    dealt: u64,
}

/// A data key ready for use: its cipher, key schedule worked out.
type DataKey = Arc<Aes256Gcm>;

/// One subject met in an event: where it was read, its HMAC, and its data
/// key (none when the subject was erased or has no key yet).
type Subject<'a> = (&'a FieldPath, [u8; 32], Option<(KeyId, DataKey)>);

#[derive(Default)]
struct Cache {
    generation: Option<u64>,
    /// `None`: the store does not have it (erased).
    keys: HashMap<KeyId, Option<DataKey>>,
    /// Each log's subjects (their HMACs) and their key ids.
    subjects: HashMap<String, HashMap<[u8; 32], KeyId>>,
    /// How many subjects `subjects` holds, over every log.
    subject_count: usize,
    /// Fresh keys the store did not keep: never cached, so that a batch
    /// protected again cannot find one. Kept when the cache starts
    /// afresh; as rare as an erasure racing an ingest.
    lost: std::collections::HashSet<KeyId>,
}

impl Cache {
    /// Empty, but for the lost keys.
    fn afresh(&mut self, generation: Option<u64>) {
        let lost = std::mem::take(&mut self.lost);
        *self = Cache {
            generation,
            lost,
            ..Cache::default()
        };
    }
}

/// The master key, the HMAC key and the data keys of one data directory.
pub struct Vault {
    master: MasterKey,
    hmac: HmacKey,
    store: Arc<dyn KeyStore>,
    cache: RwLock<Cache>,
    /// [`MAX_CACHED_KEYS`]; smaller in tests of the bound.
    cache_bound: usize,
    /// `cache` may be read while this is held, never the other way round.
    fresh: Mutex<Fresh>,
    /// One [`Vault::keep_fresh_keys`] at a time: a caller that finds its
    /// keys dealt with by another's commit waits for that commit.
    keeping: Mutex<()>,
    /// Fresh keys not kept (the generation moved, or the subject had a
    /// key already): events protected with them are protected again.
    lost: AtomicU64,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// Open the store's keys with `master`, making the HMAC key on first
    /// use. A master key that does not open them is refused
    /// ([`PiiError::WrongMasterKey`]) and nothing is changed.
    pub fn open(master: MasterKey, store: Arc<dyn KeyStore>) -> Result<Vault, PiiError> {
        let wrapped = match store.wrapped_hmac_key()? {
            Some(w) => w,
            None => {
                let fresh = Secret::random()?;
                let wrapped = crypto::wrap_key(&master, &fresh.0, HMAC_KEY_AAD)?;
                store.init_hmac_key(&wrapped)?
            }
        };
        let hmac = open_secret(&master.0, &wrapped, HMAC_KEY_AAD).ok_or(PiiError::WrongMasterKey)?;
        Ok(Vault {
            master,
            hmac: HmacKey::new(&hmac),
            store,
            cache: RwLock::new(Cache::default()),
            cache_bound: MAX_CACHED_KEYS,
            fresh: Mutex::new(Fresh::default()),
            keeping: Mutex::new(()),
            lost: AtomicU64::new(0),
        })
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// `hmac:` and the hex of the value's HMAC: the stored form of an hmac
    /// field, and how a subject is named in the key store and system log.
    pub fn pseudonym(&self, value: &str) -> String {
        hmac_form(&self.subject_tag(value))
    }

    /// The HMAC of `value` under the HMAC key.
    pub fn subject_tag(&self, value: &str) -> [u8; 32] {
        self.hmac.mac(value.as_bytes())
    }

    /// Forget cached keys if the store changed since they were read (an
    /// erasure or a rotation, maybe by another process). Callers do this
    /// once per request or batch.
    pub fn refresh(&self) -> Result<(), PiiError> {
        let generation = self.store.generation()?;
        let fresh = self
            .cache
            .read()
            .map(|c| c.generation == Some(generation))
            .unwrap_or(false);
        if !fresh {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            cache.afresh(Some(generation));
        }
        Ok(())
    }

    /// The cache, to add to: emptied first when it holds as many keys or
    /// subjects as it may.
    fn cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.keys.len() >= self.cache_bound || cache.subject_count >= self.cache_bound {
            let generation = cache.generation;
            cache.afresh(generation);
        }
        cache
    }

    fn unwrap_data_key(&self, id: &KeyId, wrapped: &[u8]) -> Result<DataKey, PiiError> {
        let key = open_secret(&self.master.0, wrapped, &data_key_aad(id)).ok_or(PiiError::WrongMasterKey)?;
        Ok(Arc::new(key.cipher()))
    }

    /// The data key of the subject whose HMAC is `tag` in `log`, made on
    /// first use. A key made here is fresh: usable at once, and durable
    /// only once [`Vault::keep_fresh_keys`] has kept it, which ingest does
    /// for a whole batch before anything it encrypted is appended (one
    /// durable commit per batch rather than one per new subject).
    fn subject_key(&self, log: &str, tag: &[u8; 32]) -> Result<(KeyId, DataKey), PiiError> {
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = cache.subjects.get(log).and_then(|s| s.get(tag)) {
                if let Some(Some(key)) = cache.keys.get(id) {
                    return Ok((*id, key.clone()));
                }
            }
        }
        let (id, key) = match self.store.subject_key(log, tag)? {
            Some((id, wrapped)) => (id, self.unwrap_data_key(&id, &wrapped)?),
            None => {
                let mut fresh = self.fresh();
                match fresh.keys.get(&(log.to_string(), *tag)) {
                    Some(made) => (made.id, self.unwrap_data_key(&made.id, &made.wrapped)?),
                    None => {
                        let mut id = [0u8; 16];
                        getrandom::fill(&mut id).map_err(|e| PiiError::Random(e.to_string()))?;
                        let id = KeyId(id);
                        let secret = Secret::random()?;
                        let wrapped = crypto::wrap_key(&self.master, &secret.0, &data_key_aad(&id))?;
                        let key = self.unwrap_data_key(&id, &wrapped)?;
                        let generation = self.cache.read().unwrap_or_else(|e| e.into_inner()).generation;
                        fresh.made += 1;
                        fresh.keys.insert(
                            (log.to_string(), *tag),
                            FreshKey {
                                log: log.to_string(),
                                subject: *tag,
                                id,
                                wrapped,
                                generation,
                            },
                        );
                        (id, key)
                    }
                }
            }
        };
        self.remember(log, tag, id, key.clone());
        Ok((id, key))
    }

    fn remember(&self, log: &str, tag: &[u8; 32], id: KeyId, key: DataKey) {
        let mut cache = self.cache_mut();
        // Lost while this caller used it: its batch is protected again, and
        // must not find it then.
        if cache.lost.contains(&id) {
            return;
        }
        cache.keys.insert(id, Some(key));
        let known = cache.subjects.entry(log.to_string()).or_default().insert(*tag, id);
        if known.is_none() {
            cache.subject_count += 1;
        }
    }

    fn fresh(&self) -> MutexGuard<'_, Fresh> {
        self.fresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A mark to take before protecting a batch, for
    /// [`Vault::keep_fresh_keys`].
    pub fn mark(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }

    /// Make durable, in one commit, every data key made so far that the
    /// store does not keep yet. `Ok(false)` when some fresh key was not
    /// kept since `mark` was taken (an erasure or a master-key rotation
    /// moved the store's generation first, or another process gave the
    /// subject a key meanwhile): what was protected since must be
    /// protected again, after [`Vault::refresh`]. On an error the keys
    /// stay fresh, for the next call.
    pub fn keep_fresh_keys(&self, mark: u64) -> Result<bool, PiiError> {
        // Every key this caller may have used was made by now.
        let wanted = self.fresh().made;
        let _one_at_a_time = self.keeping.lock().unwrap_or_else(|e| e.into_inner());
        // Keys are made and counted under one lock and leave `keys` only
        // here: what is in it now is every key made and not dealt with.
        let (batch, made): (Vec<FreshKey>, u64) = {
            let fresh = self.fresh();
            if fresh.dealt >= wanted {
                return Ok(self.mark() == mark);
            }
            (fresh.keys.values().cloned().collect(), fresh.made)
        };
        let kept = self.store.keep_subject_keys(&batch)?;
        let mut lost = Vec::new();
        {
            let mut fresh = self.fresh();
            for (key, now) in batch.iter().zip(&kept) {
                fresh.keys.remove(&(key.log.clone(), key.subject));
                if now.as_ref().map(|(id, _)| *id) != Some(key.id) {
                    lost.push(key.id);
                }
            }
            fresh.dealt = made;
        }
        if !lost.is_empty() {
            // Keys not kept are forgotten, and refused by the cache from
            // now on; the store's are read again. The mark moves only once
            // they are, and before any other caller can see these keys
            // dealt with (`keeping` is still held).
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            let generation = cache.generation;
            cache.afresh(generation);
            cache.lost.extend(lost.iter().copied());
            self.lost.fetch_add(lost.len() as u64, Ordering::SeqCst);
        }
        Ok(self.mark() == mark)
    }

    /// Data key `id`, unless erased.
    fn key(&self, id: &KeyId) -> Result<Option<DataKey>, PiiError> {
        if let Some(known) = self.cache.read().unwrap_or_else(|e| e.into_inner()).keys.get(id) {
            return Ok(known.clone());
        }
        let key = match self.store.wrapped_key(id)? {
            Some(wrapped) => Some(self.unwrap_data_key(id, &wrapped)?),
            None => None,
        };
        self.cache_mut().keys.insert(*id, key.clone());
        Ok(key)
    }
}

/// One log's PII policy over a data directory's [`Vault`].
#[derive(Debug, Clone)]
pub struct LogPii {
    vault: Arc<Vault>,
    log: String,
    policy: Policy,
    /// Each rule's field path as written, in rule order: refusals and
    /// envelopes name it.
    names: Vec<String>,
}

impl LogPii {
    pub fn new(vault: Arc<Vault>, log: &str, policy: Policy) -> LogPii {
        let names = policy.rules.iter().map(|r| r.field.name()).collect();
        LogPii {
            vault,
            log: log.to_string(),
            policy,
            names,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Replace every protected field of a validated event by its stored
    /// form; returns how that changed the event's canonical length (the
    /// caller checks the size limits on the stored form, see
    /// [`sealtrail_event::accept_json_changed`]). Refusals name field
    /// paths and never hold a value: a missing subject, a `details` key
    /// that is not a string, a value too long to store encrypted within
    /// its field's limit. Gives the same answer when called again for the
    /// same event.
    pub fn protect(&self, e: &mut Event) -> Result<Resized, Vec<FieldError>> {
        let mut errors = Vec::new();
        // Each subject's HMAC and data key, worked out once per event and
        // read before any field changes (a subject may be protected
        // itself; as an hmac field its stored form is this same HMAC).
        let mut subjects: Vec<Subject<'_>> = Vec::new();
        let mut keys: Vec<Option<usize>> = Vec::with_capacity(self.policy.rules.len());
        for rule in &self.policy.rules {
            keys.push(None);
            let Some(subject_path) = rule.subject.as_ref().filter(|_| rule.mode == Mode::Encrypt) else {
                continue;
            };
            let mut present = false;
            rule.field.visit_mut(e, &mut |_| present = true);
            if !present {
                continue;
            }
            let at = match subjects.iter().position(|(p, _, _)| *p == subject_path) {
                Some(at) => at,
                None => {
                    let Some(subject) = subject_path.first(e) else {
                        errors.push(FieldError {
                            path: subject_path.name(),
                            message: format!(
                                "required: it is the subject whose key encrypts {} in this log",
                                rule.field
                            ),
                        });
                        continue;
                    };
                    let tag = self.vault.subject_tag(subject);
                    let key = match self.vault.subject_key(&self.log, &tag) {
                        Ok(key) => Some(key),
                        Err(err) => {
                            errors.push(FieldError {
                                path: rule.field.name(),
                                message: format!("cannot be encrypted: {err}"),
                            });
                            None
                        }
                    };
                    subjects.push((subject_path, tag, key));
                    subjects.len() - 1
                }
            };
            if let Some(slot) = keys.last_mut() {
                *slot = Some(at);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut resized = Resized::default();
        for ((rule, key), path) in self.policy.rules.iter().zip(&keys).zip(&self.names) {
            let max = rule.field.max_chars();
            let known_tag = subjects
                .iter()
                .find(|(p, _, _)| **p == rule.field)
                .map(|(_, tag, _)| tag);
            let is_details = matches!(rule.field, FieldPath::Details(_));
            let key = key.and_then(|at| subjects[at].2.as_ref());
            rule.field.visit_mut(e, &mut |value| {
                let value = match value {
                    Ok(v) => v,
                    Err(kind) => {
                        errors.push(FieldError {
                            path: path.clone(),
                            message: format!("a protected field must hold a string, not {kind}"),
                        });
                        return;
                    }
                };
                let stored = match (rule.mode, key) {
                    (Mode::Hmac, _) => match known_tag {
                        Some(tag) => hmac_form(tag),
                        None => self.vault.pseudonym(value),
                    },
                    (Mode::Encrypt, Some((id, key))) => {
                        let sealed_len = crypto::sealed_len(value.len());
                        if let Some(max) = max.filter(|m| sealed_len > *m) {
                            errors.push(FieldError {
                                path: path.clone(),
                                message: format!(
                                    "{} bytes are too long to store encrypted: the stored form would have {sealed_len} characters; the limit is {max}",
                                    value.len()
                                ),
                            });
                            return;
                        }
                        match crypto::seal(key, id, path, value.as_bytes()) {
                            Ok(s) => s,
                            Err(err) => {
                                errors.push(FieldError {
                                    path: path.clone(),
                                    message: err.to_string(),
                                });
                                return;
                            }
                        }
                    }
                    (Mode::Encrypt, None) => return,
                };
                // Stored forms are ASCII with nothing to escape.
                let grown = (stored.len() + 2) as isize - string_len(value) as isize;
                resized.entry += grown;
                if is_details {
                    resized.details += grown;
                }
                *value = stored;
            });
        }
        if errors.is_empty() {
            Ok(resized)
        } else {
            Err(errors)
        }
    }

    /// Put back the clear value of every sealed field of `e` whose data
    /// key still exists; returns how many. Values whose key was erased,
    /// and anything that is not an envelope, stay as stored. Call
    /// [`Vault::refresh`] once per request before.
    pub fn reveal(&self, e: &mut Event) -> usize {
        let mut opened = 0;
        let mut open = |path: &FieldPath, value: Result<&mut String, &'static str>| {
            let Ok(value) = value else { return };
            if !value.starts_with(crypto::SEALED_PREFIX) {
                return;
            }
            let Some((id, envelope)) = sealed_key_id(value) else {
                return;
            };
            let Ok(Some(key)) = self.vault.key(&id) else { return };
            if let Some(clear) = open_envelope(&key, &envelope, &path.name()) {
                *value = clear;
                opened += 1;
            }
        };
        for path in FieldPath::fixed() {
            path.visit_mut(e, &mut |v| open(&path, v));
        }
        let detail_keys: Vec<String> = e
            .details
            .iter()
            .flat_map(|d| d.iter())
            .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with(crypto::SEALED_PREFIX)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in detail_keys {
            let path = FieldPath::Details(key);
            path.visit_mut(e, &mut |v| open(&path, v));
        }
        opened
    }

    /// The stored form of `value` if `field` is an hmac field: what a
    /// filter on that field must look for.
    pub fn filter_value(&self, field: &FieldPath, value: &str) -> Option<String> {
        (self.policy.mode(field) == Some(Mode::Hmac)).then(|| self.vault.pseudonym(value))
    }

    /// The index words a free-text query also matches when hmac text
    /// fields hold a term of it: the hex HMAC of the whole text and of
    /// each of its space-separated terms (quotes around them dropped).
    /// Empty when no text field is an hmac field.
    pub fn text_alternatives(&self, text: &str) -> Vec<String> {
        if !self.policy.hashes_text() {
            return Vec::new();
        }
        let unquote = |s: &str| {
            s.trim()
                .trim_matches(|c| matches!(c, '"' | '\u{201c}' | '\u{201d}'))
                .to_string()
        };
        let mut values: Vec<String> = vec![unquote(text)];
        values.extend(text.split_whitespace().map(unquote));
        let mut out: Vec<String> = values
            .iter()
            .filter(|v| !v.is_empty())
            .map(|v| crypto::pseudonym_hex(&self.vault.subject_tag(v)))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;
    use crate::Rule;

    /// Data keys by (log, subject HMAC).
    type Keys = HashMap<(String, [u8; 32]), (KeyId, Vec<u8>)>;

    /// Keys in memory, counting the data keys asked for and the commits
    /// that keep fresh ones.
    #[derive(Default)]
    struct Memory {
        hmac: Mutex<Option<Vec<u8>>>,
        keys: Mutex<Keys>,
        asked: Mutex<usize>,
        commits: Mutex<usize>,
        generation: Mutex<u64>,
        master: std::sync::OnceLock<MasterKey>,
    }

    impl KeyStore for Memory {
        fn wrapped_hmac_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.hmac.lock().unwrap().clone())
        }
        fn init_hmac_key(&self, wrapped: &[u8]) -> Result<Vec<u8>, StoreError> {
            Ok(self
                .hmac
                .lock()
                .unwrap()
                .get_or_insert_with(|| wrapped.to_vec())
                .clone())
        }
        fn wrapped_key(&self, id: &KeyId) -> Result<Option<Vec<u8>>, StoreError> {
            let keys = self.keys.lock().unwrap();
            Ok(keys.values().find(|(k, _)| k == id).map(|(_, w)| w.clone()))
        }
        fn subject_key(&self, log: &str, subject: &[u8; 32]) -> Result<Option<WrappedKey>, StoreError> {
            *self.asked.lock().unwrap() += 1;
            Ok(self.keys.lock().unwrap().get(&(log.to_string(), *subject)).cloned())
        }
        fn keep_subject_keys(&self, fresh: &[FreshKey]) -> Result<Vec<Option<WrappedKey>>, StoreError> {
            *self.commits.lock().unwrap() += 1;
            let mut keys = self.keys.lock().unwrap();
            let generation = *self.generation.lock().unwrap();
            Ok(fresh
                .iter()
                .map(|f| {
                    if f.generation.is_some_and(|g| g != generation) {
                        return None;
                    }
                    Some(
                        keys.entry((f.log.clone(), f.subject))
                            .or_insert((f.id, f.wrapped.clone()))
                            .clone(),
                    )
                })
                .collect())
        }
        fn generation(&self) -> Result<u64, StoreError> {
            Ok(*self.generation.lock().unwrap())
        }
    }

    fn event(actor: &str) -> Event {
        let text = serde_json::json!({"action": "user.login", "actor": {"id": actor, "email": "a@example.org"}});
        sealtrail_event::accept(
            &text,
            sealtrail_event::Timestamp::UNIX_EPOCH,
            sealtrail_event::Ulid::nil(),
        )
        .unwrap()
    }

    #[test]
    fn subjects_are_cached_up_to_the_bound_then_the_cache_starts_afresh() {
        let store = Arc::new(Memory::default());
        let mut vault = Vault::open(MasterKey::generate().unwrap(), store.clone()).unwrap();
        vault.cache_bound = 3;
        let vault = Arc::new(vault);
        let policy = Policy {
            rules: vec![Rule::parse("actor.email", "encrypt", None).unwrap()],
        };
        let pii = LogPii::new(vault, "audit", policy);
        let asked = || *store.asked.lock().unwrap();
        for actor in ["a", "b", "c"] {
            pii.protect(&mut event(actor)).unwrap();
        }
        assert_eq!(asked(), 3);
        // Cached: protecting them again asks the store for nothing.
        for actor in ["a", "b", "c", "a"] {
            pii.protect(&mut event(actor)).unwrap();
        }
        assert_eq!(asked(), 3);
        // A fourth subject finds the cache full: it starts afresh with d
        // alone, so a, remembered before, is asked for again, and keeps
        // its key.
        pii.protect(&mut event("d")).unwrap();
        assert_eq!(asked(), 4);
        pii.protect(&mut event("d")).unwrap();
        assert_eq!(asked(), 4);
        let mut again = event("a");
        pii.protect(&mut again).unwrap();
        assert_eq!(asked(), 5);
        let mut opened = again.clone();
        assert_eq!(pii.reveal(&mut opened), 1);
        assert_eq!(opened.actor.unwrap().email.as_deref(), Some("a@example.org"));
        // Nothing is kept until ingest keeps the batch's fresh keys: then
        // one commit keeps all four.
        assert!(store.keys.lock().unwrap().is_empty());
        assert!(pii.vault().keep_fresh_keys(0).unwrap());
        assert_eq!(*store.commits.lock().unwrap(), 1);
        assert_eq!(store.keys.lock().unwrap().len(), 4, "one key per subject");
    }

    /// A vault over `store` under the master key every test vault of
    /// this store shares, encrypting `actor.email` by `actor.id`.
    fn encrypting(store: &Arc<Memory>) -> LogPii {
        let master = store.master.get_or_init(|| MasterKey::generate().unwrap()).clone();
        let vault = Arc::new(Vault::open(master, store.clone()).unwrap());
        vault.refresh().unwrap();
        let policy = Policy {
            rules: vec![Rule::parse("actor.email", "encrypt", None).unwrap()],
        };
        LogPii::new(vault, "audit", policy)
    }

    /// The stored form of a's event, and whether it opens again.
    fn protect_and_reveal(pii: &LogPii, actor: &str) -> bool {
        let mut e = event(actor);
        pii.protect(&mut e).unwrap();
        assert_ne!(e.actor.as_ref().unwrap().email.as_deref(), Some("a@example.org"));
        pii.reveal(&mut e) == 1 && e.actor.unwrap().email.as_deref() == Some("a@example.org")
    }

    #[test]
    fn fresh_keys_are_kept_in_one_commit_and_only_once() {
        let store = Arc::new(Memory::default());
        let pii = encrypting(&store);
        let mark = pii.vault().mark();
        for actor in ["a", "b", "c", "d", "e"] {
            assert!(protect_and_reveal(&pii, actor));
        }
        assert!(store.keys.lock().unwrap().is_empty(), "fresh keys are not durable yet");
        assert!(pii.vault().keep_fresh_keys(mark).unwrap());
        assert_eq!(
            (*store.commits.lock().unwrap(), store.keys.lock().unwrap().len()),
            (1, 5)
        );
        // Nothing fresh: no commit.
        assert!(pii.vault().keep_fresh_keys(mark).unwrap());
        assert_eq!(*store.commits.lock().unwrap(), 1);
        // A vault opened afresh (a restart) uses c's kept key: nothing
        // fresh to keep, and the first vault reads what it encrypted.
        let again = encrypting(&store);
        let mut e = event("c");
        again.protect(&mut e).unwrap();
        assert!(again.vault().keep_fresh_keys(again.vault().mark()).unwrap());
        assert_eq!(*store.commits.lock().unwrap(), 1, "c's key came from the store");
        assert_eq!(pii.reveal(&mut e), 1);
    }

    #[test]
    fn a_fresh_key_overtaken_by_an_erasure_is_not_kept_and_the_batch_is_protected_again() {
        let store = Arc::new(Memory::default());
        let pii = encrypting(&store);
        let mark = pii.vault().mark();
        assert!(protect_and_reveal(&pii, "a"));
        let vault = pii.vault();
        let (slot, made) = {
            let fresh = vault.fresh();
            let (slot, key) = fresh.keys.iter().next().unwrap();
            (slot.clone(), key.clone())
        };
        let key = vault.unwrap_data_key(&made.id, &made.wrapped).unwrap();
        // An erasure or rotation moves the generation before the keep.
        *store.generation.lock().unwrap() += 1;
        assert!(!vault.keep_fresh_keys(mark).unwrap());
        assert!(
            store.keys.lock().unwrap().is_empty(),
            "made under the old generation: not kept"
        );
        // A caller that got the key before it was lost cannot put it back
        // in the cache for the batch protected again to find.
        vault.remember(&slot.0, &slot.1, made.id, key);
        assert!(!vault.cache.read().unwrap().keys.contains_key(&made.id));
        // Protected again: a new key, kept.
        pii.vault().refresh().unwrap();
        let mark = pii.vault().mark();
        assert!(protect_and_reveal(&pii, "a"));
        assert!(pii.vault().keep_fresh_keys(mark).unwrap());
        assert_eq!(store.keys.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_subject_given_a_key_elsewhere_meanwhile_keeps_that_key() {
        let store = Arc::new(Memory::default());
        let pii = encrypting(&store);
        let elsewhere = encrypting(&store);
        let mark = pii.vault().mark();
        let mut mine = event("a");
        pii.protect(&mut mine).unwrap();
        // Another process protects a and keeps its key first.
        let mut theirs = event("a");
        elsewhere.protect(&mut theirs).unwrap();
        assert!(elsewhere.vault().keep_fresh_keys(elsewhere.vault().mark()).unwrap());
        assert!(
            !pii.vault().keep_fresh_keys(mark).unwrap(),
            "a's fresh key here was not kept"
        );
        // Protected again, a's event is under the kept key, which both read.
        pii.vault().refresh().unwrap();
        let mark = pii.vault().mark();
        let mut again = event("a");
        pii.protect(&mut again).unwrap();
        assert!(pii.vault().keep_fresh_keys(mark).unwrap());
        assert_eq!(elsewhere.reveal(&mut again), 1);
        assert_eq!(pii.reveal(&mut theirs), 1);
        assert_eq!(store.keys.lock().unwrap().len(), 1);
    }

    #[test]
    fn resized_is_the_change_in_canonical_length() {
        let store = Arc::new(Memory::default());
        let vault = Arc::new(Vault::open(MasterKey::generate().unwrap(), store).unwrap());
        let policy = Policy {
            rules: vec![
                Rule::parse("actor.id", "hmac", None).unwrap(),
                Rule::parse("actor.email", "encrypt", None).unwrap(),
                Rule::parse("details.note", "hmac", None).unwrap(),
            ],
        };
        let pii = LogPii::new(vault, "audit", policy);
        let text = serde_json::json!({"action": "user.login", "actor": {"id": "x\"y", "email": "a@example.org"},
            "details": {"note": "line\nbreak \u{1} é", "n": 1}});
        let mut e = sealtrail_event::accept(
            &text,
            sealtrail_event::Timestamp::UNIX_EPOCH,
            sealtrail_event::Ulid::nil(),
        )
        .unwrap();
        let clear = sealtrail_event::canonical_entry(&e).unwrap();
        let clear_details =
            sealtrail_event::jcs::to_vec(&serde_json::Value::Object(e.details.clone().unwrap())).unwrap();
        let resized = pii.protect(&mut e).unwrap();
        let stored = sealtrail_event::canonical_entry(&e).unwrap();
        let stored_details =
            sealtrail_event::jcs::to_vec(&serde_json::Value::Object(e.details.clone().unwrap())).unwrap();
        assert_eq!(resized.entry, stored.len() as isize - clear.len() as isize);
        assert_eq!(
            resized.details,
            stored_details.len() as isize - clear_details.len() as isize
        );
        // The subject's HMAC is its hmac form too.
        assert_eq!(e.actor.unwrap().id, pii.vault().pseudonym("x\"y"));
    }
}
