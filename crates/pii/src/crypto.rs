//! The keys and the stored forms (docs/pii.md, byte by byte): the master
//! key's text, wrapped keys, the HMAC form and the encrypted envelope.

use std::fmt;
use std::path::Path;

use std::cell::RefCell;

use aes_gcm::aead::{Aead, AeadInOut, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::PiiError;

/// The stored form of an hmac field begins with this, then 64 lowercase
/// hexadecimal digits.
pub const HMAC_PREFIX: &str = "hmac:";
/// The stored form of an encrypted field begins with this, then the
/// envelope in base64url without padding.
pub const SEALED_PREFIX: &str = "enc:";
/// The first byte of an envelope.
pub const ENVELOPE_VERSION: u8 = 1;

const KEY_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Version, key id, nonce: the envelope's header.
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Associated data of every envelope: this, then the header, then the
/// field path, so that a value moved to another field does not open.
const ENVELOPE_AAD: &[u8] = b"sealtrail-pii envelope v1\0";
/// Associated data of a wrapped data key, followed by its key id.
pub(crate) const DATA_KEY_AAD: &[u8] = b"sealtrail-pii data key v1\0";
/// Associated data of the wrapped HMAC key.
pub(crate) const HMAC_KEY_AAD: &[u8] = b"sealtrail-pii hmac key v1";

/// A data key's identifier: 16 random bytes, in every envelope it sealed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", hex(&self.0))
    }
}

/// 256 secret bits, wiped from memory when dropped.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Zeroizing<[u8; 32]>);

impl Secret {
    pub(crate) fn random() -> Result<Secret, PiiError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *key).map_err(|e| PiiError::Random(e.to_string()))?;
        Ok(Secret(key))
    }

    /// The AES-256-GCM instance of this key: its key schedule is worked
    /// out here, so keep it for every value sealed under the key.
    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&(*self.0).into())
    }
}

/// The key that wraps every other key. Kept outside the data directory
/// (a file or an environment variable holding 64 hexadecimal digits).
#[derive(Clone)]
pub struct MasterKey(pub(crate) Secret);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<MasterKey, PiiError> {
        Secret::random().map(MasterKey)
    }

    /// The key's text: 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex(&*self.0 .0))
    }

    /// Read a key from its text (surrounding white space ignored);
    /// `origin` names where it came from, for errors.
    pub fn from_text(text: &str, origin: &str) -> Result<MasterKey, PiiError> {
        let text = text.trim();
        let bad = || PiiError::MasterKey {
            origin: origin.to_string(),
            reason: "expected 64 hexadecimal digits (make one with `sealtrail pii new-master-key`)".into(),
        };
        if text.len() != 64 {
            return Err(bad());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => key[i] = (h * 16 + l) as u8,
                _ => return Err(bad()),
            }
        }
        Ok(MasterKey(Secret(key)))
    }

    /// Read the key file at `path`, which must not lie inside `data_dir`
    /// (a key kept beside what it protects protects nothing).
    pub fn from_file(path: &Path, data_dir: Option<&Path>) -> Result<MasterKey, PiiError> {
        let origin = format!("file {}", path.display());
        let err = |reason: String| PiiError::MasterKey {
            origin: origin.clone(),
            reason,
        };
        if let Some(dir) = data_dir {
            if let (Ok(file), Ok(dir)) = (path.canonicalize(), dir.canonicalize()) {
                if file.starts_with(&dir) {
                    return Err(err(format!(
                        "lies inside the data directory {}; keep the master key outside it",
                        dir.display()
                    )));
                }
            }
        }
        let mut text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let key = MasterKey::from_text(&text, &origin);
        text.zeroize();
        key
    }

    /// Read the key from environment variable `name`.
    pub fn from_env(name: &str) -> Result<MasterKey, PiiError> {
        let origin = format!("environment variable {name}");
        match std::env::var(name) {
            Ok(mut text) => {
                let key = MasterKey::from_text(&text, &origin);
                text.zeroize();
                key
            }
            Err(_) => Err(PiiError::MasterKey {
                origin,
                reason: "not set".into(),
            }),
        }
    }
}

/// Wrap `key` under `master`: nonce (12) ‖ ciphertext (32) ‖ tag (16),
/// with associated data `aad`.
pub fn wrap_key(master: &MasterKey, key: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, PiiError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| PiiError::Random(e.to_string()))?;
    let sealed = master
        .0
        .cipher()
        .encrypt(&nonce.into(), Payload { msg: key, aad })
        .map_err(|_| PiiError::Config("a key could not be wrapped".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Unwrap what [`wrap_key`] made; `None` if `master` or `aad` is not the
/// one it was wrapped with, or the bytes were changed.
pub fn open_wrapped(master: &MasterKey, wrapped: &[u8], aad: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    open_secret(&master.0, wrapped, aad).map(|s| s.0)
}

pub(crate) fn open_secret(with: &Secret, wrapped: &[u8], aad: &[u8]) -> Option<Secret> {
    if wrapped.len() != NONCE_LEN + 32 + TAG_LEN {
        return None;
    }
    let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let clear = Zeroizing::new(
        with.cipher()
            .decrypt(&nonce.into(), Payload { msg: sealed, aad })
            .ok()?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&clear);
    Some(Secret(key))
}

/// The associated data of data key `id`'s wrapping.
pub(crate) fn data_key_aad(id: &KeyId) -> Vec<u8> {
    let mut aad = DATA_KEY_AAD.to_vec();
    aad.extend_from_slice(&id.0);
    aad
}

/// HMAC-SHA-256 under one key, its inner and outer pads hashed once: each
/// value then costs only its own blocks.
#[derive(Clone)]
pub(crate) struct HmacKey(Hmac<Sha256>);

impl HmacKey {
    pub(crate) fn new(key: &Secret) -> HmacKey {
        HmacKey(<Hmac<Sha256> as KeyInit>::new_from_slice(&*key.0).expect("HMAC takes a key of any length"))
    }

    /// HMAC-SHA-256 of `value`.
    pub(crate) fn mac(&self, value: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

/// HMAC-SHA-256 of `value` under `key`.
#[cfg(test)]
pub(crate) fn hmac(key: &Secret, value: &[u8]) -> [u8; 32] {
    HmacKey::new(key).mac(value)
}

/// Nonces drawn from the system's randomness per thread, this many bytes
/// at a time: one system call per 85 nonces rather than one per value.
/// Nonces need to be unique, not secret; a random 96-bit nonce is unique
/// with overwhelming probability for far more values than a key seals.
const NONCE_POOL: usize = 85 * NONCE_LEN;

thread_local! {
    /// Unused nonce bytes: the pool and how many of it are used.
    static NONCES: RefCell<([u8; NONCE_POOL], usize)> = const { RefCell::new(([0; NONCE_POOL], NONCE_POOL)) };
}

/// A fresh random nonce, never handed out before.
fn fresh_nonce() -> Result<[u8; NONCE_LEN], PiiError> {
    NONCES.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if *used == NONCE_POOL {
            getrandom::fill(bytes).map_err(|e| PiiError::Random(e.to_string()))?;
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[*used..*used + NONCE_LEN]);
        // Wiped as it is taken: no nonce is ever handed out twice.
        bytes[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        Ok(nonce)
    })
}

/// The 64 hex digits of an HMAC, as the stored form ends with them (and
/// as the query index holds them, a word of the free text).
pub fn pseudonym_hex(mac: &[u8; 32]) -> String {
    hex(mac)
}

/// `hmac:` and the hex of `mac`.
pub(crate) fn hmac_form(mac: &[u8; 32]) -> String {
    let mut out = [0u8; HMAC_PREFIX.len() + 64];
    out[..HMAC_PREFIX.len()].copy_from_slice(HMAC_PREFIX.as_bytes());
    fill_hex(&mut out[HMAC_PREFIX.len()..], mac);
    ascii(out.to_vec())
}

/// Seal `clear` for field `path` under data key `id` (its cipher
/// `cipher`).
pub(crate) fn seal(cipher: &Aes256Gcm, id: &KeyId, path: &str, clear: &[u8]) -> Result<String, PiiError> {
    seal_with_nonce(cipher, id, path, clear, fresh_nonce()?)
}

thread_local! {
    /// Where [`seal`] builds the associated data and the envelope, kept
    /// from one value to the next rather than allocated for each. The
    /// clear value is encrypted in place, so only ciphertext stays in it.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// [`seal`] with the nonce given: the associated data and the envelope
/// are built side by side in one reused buffer, and the envelope is
/// encoded straight into the stored form.
fn seal_with_nonce(
    cipher: &Aes256Gcm,
    id: &KeyId,
    path: &str,
    clear: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<String, PiiError> {
    let refused = || PiiError::Config(format!("{path}: the value could not be encrypted"));
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        buf.clear();
        let mut header = [0u8; HEADER_LEN];
        header[0] = ENVELOPE_VERSION;
        header[1..1 + KEY_ID_LEN].copy_from_slice(&id.0);
        header[1 + KEY_ID_LEN..].copy_from_slice(&nonce);
        push_aad(&mut buf, &header, path);
        let aad_len = buf.len();
        buf.extend_from_slice(&header);
        buf.extend_from_slice(clear);
        let (aad, envelope) = buf.split_at_mut(aad_len);
        let sealed = cipher.encrypt_inout_detached(&nonce.into(), aad, (&mut envelope[HEADER_LEN..]).into());
        let Ok(tag) = sealed else {
            // Not encrypted: the clear value must not stay behind.
            buf.fill(0);
            return Err(refused());
        };
        buf.extend_from_slice(&tag);
        let envelope = &buf[aad_len..];
        let mut out = vec![0u8; SEALED_PREFIX.len() + (envelope.len() * 4).div_ceil(3)];
        out[..SEALED_PREFIX.len()].copy_from_slice(SEALED_PREFIX.as_bytes());
        let written = URL_SAFE_NO_PAD
            .encode_slice(envelope, &mut out[SEALED_PREFIX.len()..])
            .map_err(|_| refused())?;
        out.truncate(SEALED_PREFIX.len() + written);
        Ok(ascii(out))
    })
}

/// The key id of a sealed text, if it is one.
pub(crate) fn sealed_key_id(text: &str) -> Option<(KeyId, Vec<u8>)> {
    let body = text.strip_prefix(SEALED_PREFIX)?;
    let envelope = URL_SAFE_NO_PAD.decode(body).ok()?;
    if envelope.len() < HEADER_LEN + TAG_LEN || envelope[0] != ENVELOPE_VERSION {
        return None;
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&envelope[1..1 + KEY_ID_LEN]);
    Some((KeyId(id), envelope))
}

/// Whether `text` has the shape of a sealed value (prefix, base64url, a
/// version-1 header and room for a tag); the query index skips such text.
pub fn is_sealed_text(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX) && sealed_key_id(text).is_some()
}

/// Open an envelope (from [`sealed_key_id`]) with its data key's cipher.
pub(crate) fn open_envelope(cipher: &Aes256Gcm, envelope: &[u8], path: &str) -> Option<String> {
    let (header, sealed) = envelope.split_at(HEADER_LEN);
    let nonce: [u8; NONCE_LEN] = header[1 + KEY_ID_LEN..].try_into().ok()?;
    let aad = envelope_aad(header, path);
    let clear = cipher.decrypt(&nonce.into(), Payload { msg: sealed, aad: &aad }).ok()?;
    String::from_utf8(clear).ok()
}

fn envelope_aad(header: &[u8], path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ENVELOPE_AAD.len() + header.len() + path.len());
    push_aad(&mut aad, header, path);
    aad
}

/// The associated data of an envelope with `header` for field `path`,
/// appended to `out`: one layout for sealing and opening.
fn push_aad(out: &mut Vec<u8>, header: &[u8], path: &str) {
    out.extend_from_slice(ENVELOPE_AAD);
    out.extend_from_slice(header);
    out.extend_from_slice(path.as_bytes());
}

/// The length in characters of the sealed form of `clear_len` bytes.
pub(crate) fn sealed_len(clear_len: usize) -> usize {
    SEALED_PREFIX.len() + ((HEADER_LEN + clear_len + TAG_LEN) * 4).div_ceil(3)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    fill_hex(&mut out, bytes);
    ascii(out)
}

/// Write the hex digits of `bytes` into `out`, two per byte.
fn fill_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 15) as usize];
    }
}

/// `bytes`, which are ASCII, as a string: written byte by byte, which is
/// cheaper than pushing characters, and checked once here.
fn ascii(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_layout() {
        let key = Secret::random().expect("random");
        let id = KeyId([7; 16]);
        let sealed = seal(&key.cipher(), &id, "actor.email", b"alice@example.com").expect("seal");
        assert!(sealed.starts_with("enc:"));
        assert_eq!(sealed.len(), sealed_len(17));
        let (got_id, envelope) = sealed_key_id(&sealed).expect("an envelope");
        assert_eq!(got_id, id);
        assert_eq!(envelope[0], 1);
        assert_eq!(envelope.len(), 1 + 16 + 12 + 17 + 16);
        assert_eq!(
            open_envelope(&key.cipher(), &envelope, "actor.email").as_deref(),
            Some("alice@example.com")
        );
        // Another field's path, or another key, does not open it.
        assert_eq!(open_envelope(&key.cipher(), &envelope, "actor.name"), None);
        let other = Secret::random().expect("random");
        assert_eq!(open_envelope(&other.cipher(), &envelope, "actor.email"), None);
        assert!(is_sealed_text(&sealed));
        assert!(!is_sealed_text("enc:not base64!"));
        assert!(!is_sealed_text("enc:AAAA"));
    }

    /// The stored form as the format describes it, built the plain way:
    /// the envelope and its associated data in fresh buffers, sealed by
    /// the one-shot API, encoded by the engine's own `encode`.
    fn sealed_the_plain_way(key: &Secret, id: &KeyId, path: &str, clear: &[u8], nonce: [u8; NONCE_LEN]) -> String {
        let mut header = vec![ENVELOPE_VERSION];
        header.extend_from_slice(&id.0);
        header.extend_from_slice(&nonce);
        let aad = [ENVELOPE_AAD, &header[..], path.as_bytes()].concat();
        let sealed = key
            .cipher()
            .encrypt(&nonce.into(), Payload { msg: clear, aad: &aad })
            .expect("seals");
        format!("enc:{}", URL_SAFE_NO_PAD.encode([header, sealed].concat()))
    }

    #[test]
    fn sealing_in_the_reused_buffer_gives_the_plain_form() {
        let key = Secret::random().expect("random");
        let id = KeyId([0xa5; 16]);
        let long_path = format!("details.{}", "k".repeat(300));
        let long_value = "é and more ".repeat(400);
        // Long before short, so that what a longer value left in the
        // buffer would show if it leaked into a shorter one.
        let values: [&[u8]; 7] = [
            long_value.as_bytes(),
            b"",
            b"a",
            b"ab",
            b"abc",
            b"alice@example.com",
            &[0xff; 5],
        ];
        for (n, clear) in values.iter().enumerate() {
            for path in ["message", "actor.email", long_path.as_str()] {
                let nonce = [n as u8 + 1; NONCE_LEN];
                let fast = seal_with_nonce(&key.cipher(), &id, path, clear, nonce).expect("seal");
                assert_eq!(
                    fast,
                    sealed_the_plain_way(&key, &id, path, clear, nonce),
                    "{path}, value {n}"
                );
                assert_eq!(fast.len(), sealed_len(clear.len()));
            }
        }
    }

    #[test]
    fn hex_forms_are_lowercase_pairs() {
        assert_eq!(hex(&[0x00, 0xff, 0x1a, 0x90]), "00ff1a90");
        assert_eq!(hex(&[]), "");
        let mac: [u8; 32] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let want: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hmac_form(&mac), format!("hmac:{want}"));
        assert_eq!(pseudonym_hex(&mac), want);
    }

    #[test]
    fn nonces_are_not_repeated_across_refills() {
        let nonces: std::collections::HashSet<[u8; NONCE_LEN]> = (0..3 * NONCE_POOL / NONCE_LEN + 1)
            .map(|_| fresh_nonce().expect("random"))
            .collect();
        assert_eq!(nonces.len(), 3 * NONCE_POOL / NONCE_LEN + 1);
        assert!(!nonces.contains(&[0; NONCE_LEN]));
    }

    #[test]
    fn hmac_is_rfc_4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, so
        // check the 32-byte zero-padded equivalent against the same MAC
        // computed through the `hmac` crate directly.
        let key = Secret(Zeroizing::new([0x0b; 32]));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x0b; 32]).expect("any length");
        mac.update(b"Hi There");
        let want: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(hmac(&key, b"Hi There"), want);
        assert_eq!(hmac_form(&want).len(), 5 + 64);
    }

    #[test]
    fn master_key_text() {
        let key = MasterKey::generate().expect("random");
        let again = MasterKey::from_text(&format!(" {}\n", &*key.to_hex()), "test").expect("parses");
        assert_eq!(*again.0 .0, *key.0 .0);
        for bad in ["", "xyz", &"g".repeat(64), &"a".repeat(63)] {
            let err = MasterKey::from_text(bad, "test").expect_err("refused").to_string();
            assert!(err.contains("64 hexadecimal digits"), "{err}");
        }
        let wrapped = wrap_key(&key, &[9; 32], b"aad").expect("wrap");
        assert_eq!(wrapped.len(), 60);
        assert_eq!(open_wrapped(&key, &wrapped, b"aad").map(|k| *k), Some([9; 32]));
        let other = MasterKey::generate().expect("random");
        assert!(open_wrapped(&other, &wrapped, b"aad").is_none());
        assert!(open_wrapped(&key, &wrapped, b"other").is_none());
    }
}
