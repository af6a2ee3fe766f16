//! Channel credentials encrypted at rest: the URL of every HTTP channel
//! (Slack, Discord and Teams URLs are tokens; a webhook URL may carry one
//! in its query), a webhook's HMAC secret and header values, a mail
//! password. Each is sealed on its own with XChaCha20-Poly1305 under the
//! data directory's secrets key, with a random 192-bit nonce, and
//! associated data naming the channel and the field, so a sealed value
//! copied to another channel or field does not open.
//!
//! In the stored spec a sealed value takes the place of the string as an
//! object, `{"sealed": "<hex of nonce ‖ ciphertext ‖ tag>"}`, which no
//! written spec can hold (every credential is a string), so a clear-text
//! row written before encryption is told apart and still read.
//!
//! Not here: where the key is kept (the server keeps it in the data
//! directory, docs/alert-channels.md).

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};

use crate::spec::ChannelSpec;

/// The key channel credentials are sealed with: 256 random bits.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("reading the system's randomness: {0}")]
    Random(String),
    #[error("not a secrets key: expected 64 hexadecimal digits")]
    BadKey,
    /// The key file could not be read or written.
    #[error("the secrets key: {0}")]
    Key(String),
    /// A sealed value that does not open: another data directory's key,
    /// or a damaged or moved value.
    #[error("{field}: cannot be decrypted with this data directory's secrets key")]
    Open { field: String },
    #[error("{0}")]
    Shape(String),
}

/// The text of a secrets key file: the key in hexadecimal and a newline.
const KEY_TEXT_LEN: usize = 64;

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Result<SecretKey, SealError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(SecretKey(key))
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("{}\n", hex(&self.0))
    }

    /// Read a key file's text.
    pub fn from_text(text: &str) -> Result<SecretKey, SealError> {
        let text = text.trim();
        if text.len() != KEY_TEXT_LEN {
            return Err(SealError::BadKey);
        }
        let bytes = unhex(text).ok_or(SealError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(SecretKey(key))
    }

    /// Seal a secret that is not a channel credential (a user's TOTP
    /// secret, say): `place` names where it is kept and is bound in as
    /// associated data, so a value moved to another place does not open.
    /// Returns the hex of nonce, ciphertext and tag.
    pub fn seal_text(&self, place: &str, clear: &str) -> Result<String, SealError> {
        self.seal_with(&place_data(place), place, clear)
    }

    /// Open what [`SecretKey::seal_text`] sealed for `place`.
    pub fn open_text(&self, place: &str, sealed: &str) -> Result<String, SealError> {
        self.open_with(&place_data(place), place, sealed)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.0))
    }

    fn seal(&self, channel: &str, field: &str, clear: &str) -> Result<Value, SealError> {
        let text = self.seal_with(&associated_data(channel, field), field, clear)?;
        let mut object = Map::new();
        object.insert(SEALED.into(), Value::String(text));
        Ok(Value::Object(object))
    }

    fn seal_with(&self, aad: &str, field: &str, clear: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: clear.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Shape(format!("{field}: cannot be encrypted")))?;
        let mut text = hex(&nonce);
        text.push_str(&hex(&sealed));
        Ok(text)
    }

    fn open(&self, channel: &str, field: &str, sealed: &str) -> Result<String, SealError> {
        self.open_with(&associated_data(channel, field), field, sealed)
    }

    fn open_with(&self, aad: &str, field: &str, sealed: &str) -> Result<String, SealError> {
        let fail = || SealError::Open {
            field: field.to_string(),
        };
        let bytes = unhex(sealed).ok_or_else(fail)?;
        if bytes.len() < 24 + 16 {
            return Err(fail());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| fail())?;
        let clear = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(clear).map_err(|_| fail())
    }
}

/// The key of a sealed value's object.
const SEALED: &str = "sealed";

/// Binds a sealed secret that is not a channel credential to its place.
fn place_data(place: &str) -> String {
    format!("sealtrail sealed secret v1\n{place}")
}

/// Binds a sealed value to its place.
fn associated_data(channel: &str, field: &str) -> String {
    format!("sealtrail channel credential v1\n{channel}\n{field}")
}

/// The credential fields present in a channel spec's JSON object, as
/// (field path, JSON pointer) pairs.
fn credential_fields(spec: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in ["url", "secret", "password"] {
        if spec.get(field).is_some_and(|v| !v.is_null()) {
            out.push((field.to_string(), format!("/{field}")));
        }
    }
    if let Some(Value::Object(headers)) = spec.get("headers") {
        for name in headers.keys() {
            let pointer = name.replace('~', "~0").replace('/', "~1");
            out.push((format!("headers.{name}"), format!("/headers/{pointer}")));
        }
    }
    out
}

/// `spec` as it is stored: its JSON with every credential sealed.
pub fn seal(spec: &ChannelSpec, key: &SecretKey) -> Result<Value, SealError> {
    let mut value = serde_json::to_value(spec).map_err(|e| SealError::Shape(e.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(SealError::Shape("a channel is a JSON object".into()));
    };
    let fields = credential_fields(object);
    for (field, pointer) in fields {
        if let Some(slot) = value.pointer_mut(&pointer) {
            if let Value::String(clear) = slot {
                *slot = key.seal(&spec.name, &field, clear)?;
            }
        }
    }
    Ok(value)
}

/// Whether a stored channel holds a credential in clear (written before
/// credentials were encrypted). Needs no key.
pub fn holds_clear(stored: &Value) -> bool {
    let Value::Object(object) = stored else {
        return false;
    };
    credential_fields(object)
        .iter()
        .any(|(_, pointer)| matches!(stored.pointer(pointer), Some(Value::String(_))))
}

/// A stored channel opened: every sealed credential decrypted. Returns
/// the spec and whether any credential was stored in clear (written
/// before credentials were encrypted), so the caller can seal it.
/// `key` is asked for only when a value is sealed.
pub fn open<K: FnOnce() -> Result<SecretKey, SealError>>(
    mut stored: Value,
    key: K,
) -> Result<(ChannelSpec, bool), SealError> {
    let Value::Object(object) = &stored else {
        return Err(SealError::Shape("a channel is a JSON object".into()));
    };
    let name = object.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let mut clear_found = false;
    let mut key = Some(key);
    let mut opened_key: Option<SecretKey> = None;
    let fields = credential_fields(object);
    for (field, pointer) in fields {
        let Some(slot) = stored.pointer_mut(&pointer) else {
            continue;
        };
        match slot {
            Value::String(_) => clear_found = true,
            Value::Object(sealed) => {
                let Some(Value::String(text)) = sealed.get(SEALED) else {
                    return Err(SealError::Open { field });
                };
                let text = text.clone();
                if opened_key.is_none() {
                    let get = key.take().ok_or_else(|| SealError::Open { field: field.clone() })?;
                    opened_key = Some(get()?);
                }
                let k = opened_key
                    .as_ref()
                    .ok_or_else(|| SealError::Open { field: field.clone() })?;
                *slot = Value::String(k.open(&name, &field, &text)?);
            }
            _ => {}
        }
    }
    let spec = serde_json::from_value(stored).map_err(|e| SealError::Shape(e.to_string()))?;
    Ok((spec, clear_found))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::ChannelKind;

    #[test]
    fn sealed_text_opens_only_in_its_place_with_its_key() {
        let key = SecretKey::generate().unwrap();
        let sealed = key.seal_text("user 1 totp", "c0ffee").unwrap();
        assert!(!sealed.contains("c0ffee"));
        assert_ne!(sealed, key.seal_text("user 1 totp", "c0ffee").unwrap(), "fresh nonce");
        assert_eq!(key.open_text("user 1 totp", &sealed).unwrap(), "c0ffee");
        assert!(key.open_text("user 2 totp", &sealed).is_err());
        assert!(SecretKey::generate()
            .unwrap()
            .open_text("user 1 totp", &sealed)
            .is_err());
        // A channel credential's associated data differs from a place's.
        assert!(key.open("user 1 totp", "user 1 totp", &sealed).is_err());
    }

    fn hook(name: &str) -> ChannelSpec {
        ChannelSpec {
            name: name.into(),
            kind: ChannelKind::Webhook {
                url: "https://example.com/h?token=abc".into(),
                headers: BTreeMap::from([("Authorization".to_string(), "Bearer tok-1".to_string())]),
                secret: Some("whsec-1".into()),
                body_template: None,
                content_type: None,
            },
        }
    }

    #[test]
    fn sealed_credentials_open_only_in_their_place_and_with_their_key() {
        let key = SecretKey::generate().unwrap();
        let sealed = seal(&hook("a"), &key).unwrap();
        let text = sealed.to_string();
        for clear in ["whsec-1", "tok-1", "token=abc", "example.com"] {
            assert!(!text.contains(clear), "{clear} in {text}");
        }
        assert!(sealed["secret"]["sealed"].is_string(), "{text}");
        let (spec, clear) = open(sealed.clone(), || Ok(key.clone())).unwrap();
        assert_eq!((spec, clear), (hook("a"), false));
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(seal(&hook("a"), &key).unwrap()["secret"], sealed["secret"]);

        let other = SecretKey::generate().unwrap();
        let e = open(sealed.clone(), || Ok(other)).unwrap_err();
        assert!(matches!(e, SealError::Open { .. }), "{e}");
        // Moved to another channel, or to another field: refused.
        let mut renamed = sealed.clone();
        renamed["name"] = "b".into();
        assert!(open(renamed, || Ok(key.clone())).is_err());
        let mut swapped = sealed.clone();
        swapped["secret"] = sealed["url"].clone();
        assert_eq!(
            open(swapped, || Ok(key.clone())).unwrap_err(),
            SealError::Open { field: "secret".into() }
        );
    }

    #[test]
    fn clear_rows_are_read_and_reported() {
        let clear = serde_json::to_value(hook("a")).unwrap();
        assert!(holds_clear(&clear));
        assert!(!holds_clear(
            &seal(&hook("a"), &SecretKey::generate().unwrap()).unwrap()
        ));
        let (spec, was_clear) = open(clear, || -> Result<SecretKey, SealError> { panic!("no key needed") }).unwrap();
        assert_eq!((spec, was_clear), (hook("a"), true));
    }

    #[test]
    fn key_text_round_trips_and_refuses_garbage() {
        let key = SecretKey::generate().unwrap();
        let again = SecretKey::from_text(&key.to_text()).unwrap();
        assert_eq!(again.0, key.0);
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
        assert_eq!(SecretKey::from_text("abc").unwrap_err(), SealError::BadKey);
        assert_eq!(SecretKey::from_text(&"zz".repeat(32)).unwrap_err(), SealError::BadKey);
    }
}
