//! C2SP checkpoints (c2sp.org/tlog-checkpoint): the log's signed statement
//! "my tree of `size` leaves has this `root`", as the text of a signed note.
//!
//! This module writes and parses the checkpoint text and joins it to the note
//! layer: [`sign_checkpoint`] for the log, [`open_checkpoint`] for clients
//! holding the log's key. It deliberately is not a witness or a monitor: it
//! does not check consistency between checkpoints (see
//! [`crate::verify_consistency`]), does not evaluate witness cosignatures, and
//! gives no meaning to extension lines.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::hash::Hash;
use crate::note::{self, Note, NoteError, Signer, Verifier};

/// Why a checkpoint could not be parsed, signed or opened. Line numbers count
/// from 1 at the origin line, which is also line 1 of the signed note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint text does not end with a newline")]
    MissingFinalNewline,
    #[error("checkpoint has {found} line(s); it needs origin, tree size and root hash")]
    TooFewLines { found: usize },
    #[error("line {line}: {what} is empty")]
    EmptyLine { line: usize, what: &'static str },
    #[error("line {line}: {what} contains a newline")]
    EmbeddedNewline { line: usize, what: &'static str },
    #[error("line 2: tree size {value:?} {reason}")]
    BadSize { value: String, reason: &'static str },
    #[error("line 3: root hash is not the base64 encoding of exactly 32 bytes")]
    BadRoot,
    #[error("checkpoint origin {origin:?} is not the log key's name {key_name:?}")]
    OriginMismatch { origin: String, key_name: String },
    #[error("signed note: {0}")]
    Note(#[from] NoteError),
}

/// A log's tree head: its identity, size and root, plus opaque extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines, without newlines; each must be non-empty.
    pub extensions: Vec<String>,
}

/// Parses an ASCII decimal with no sign and no leading zeros ("0" itself
/// excepted), the one spelling C2SP formats allow for sizes and indices. The
/// error is a phrase completing "value …".
pub(crate) fn parse_decimal(text: &str) -> Result<u64, &'static str> {
    if text.is_empty() {
        return Err("is empty");
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a decimal number");
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err("has a leading zero");
    }
    text.parse().map_err(|_| "does not fit in 64 bits")
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, then any extension lines,
    /// each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for ext in &self.extensions {
            text.push_str(ext);
            text.push('\n');
        }
        text
    }

    /// Parses checkpoint text (a note's text, final newline included).
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { found: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyLine {
                line: 1,
                what: "origin",
            });
        }
        let size = parse_decimal(size).map_err(|reason| CheckpointError::BadSize {
            value: (*size).to_owned(),
            reason,
        })?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or(CheckpointError::BadRoot)?;
        if let Some(i) = extensions.iter().position(|e| e.is_empty()) {
            return Err(CheckpointError::EmptyLine {
                line: 4 + i,
                what: "extension line",
            });
        }
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }

    /// Refuses a checkpoint whose text would not parse back to it: fields are
    /// public, so nothing else stops an origin holding a newline from
    /// smuggling in a different size line.
    fn check_encodable(&self) -> Result<(), CheckpointError> {
        let fields = std::iter::once((1, "origin", &self.origin)).chain(
            self.extensions
                .iter()
                .enumerate()
                .map(|(i, e)| (4 + i, "extension line", e)),
        );
        for (line, what, value) in fields {
            if value.is_empty() {
                return Err(CheckpointError::EmptyLine { line, what });
            }
            if value.contains('\n') {
                return Err(CheckpointError::EmbeddedNewline { line, what });
            }
        }
        Ok(())
    }
}

/// Signs `checkpoint` as a note, returning the note's text.
///
/// The signer's key name must equal the origin, as [`open_checkpoint`]
/// requires; refusing here keeps the log from publishing checkpoints its own
/// clients would reject.
pub fn sign_checkpoint(checkpoint: &Checkpoint, signer: &Signer) -> Result<String, CheckpointError> {
    checkpoint.check_encodable()?;
    if checkpoint.origin != signer.name() {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin.clone(),
            key_name: signer.name().to_owned(),
        });
    }
    Ok(note::sign(&checkpoint.to_text(), &[signer])?)
}

/// Opens a signed checkpoint from the log whose key is `verifier`.
///
/// Succeeds only if the note carries a valid signature by `verifier` (other
/// signature lines, such as witness cosignatures, are ignored but kept in the
/// returned [`Note`] for the caller's witness policy) and the origin equals the
/// key's name. The spec only says the key name SHOULD match the origin; this
/// crate requires it, because the origin is the log's identity and the
/// verifier is the only configuration a caller hands in, so without the check
/// a key shared by two logs would let one log's checkpoints pass as the other's.
pub fn open_checkpoint(note: &[u8], verifier: &Verifier) -> Result<(Checkpoint, Note), CheckpointError> {
    let note = Note::parse(note)?;
    // The note text is untrusted until its signature checks out.
    note.verify(std::slice::from_ref(verifier))?;
    let checkpoint = Checkpoint::parse(&note.text)?;
    if checkpoint.origin != verifier.name() {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin,
            key_name: verifier.name().to_owned(),
        });
    }
    Ok((checkpoint, note))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::EMPTY_ROOT;

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "example.com/log".into(),
            size,
            root: [size as u8; 32],
            extensions: vec![],
        }
    }

    #[test]
    fn text_round_trip() {
        let mut c = cp(5);
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        c.extensions = vec!["ext one".into(), "— two".into()];
        assert_eq!(c.to_text().lines().count(), 5);
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        let empty = Checkpoint {
            size: 0,
            root: EMPTY_ROOT,
            ..cp(0)
        };
        assert_eq!(
            empty.to_text(),
            "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_decimal("18446744073709551616"), Err("does not fit in 64 bits"));
        assert_eq!(parse_decimal("007"), Err("has a leading zero"));
        assert_eq!(parse_decimal("00"), Err("has a leading zero"));
        assert_eq!(parse_decimal(""), Err("is empty"));
        for bad in ["+1", "-1", " 1", "1 ", "1e3", "0x1", "١"] {
            assert_eq!(parse_decimal(bad), Err("is not a decimal number"), "{bad:?}");
        }
    }

    #[test]
    fn parse_errors_name_the_line() {
        let root = B64.encode([1u8; 32]);
        let cases = [
            ("o\n1\nROOT".to_owned(), CheckpointError::MissingFinalNewline),
            ("o\n1\n".to_owned(), CheckpointError::TooFewLines { found: 2 }),
            (
                "\n1\nROOT\n".to_owned(),
                CheckpointError::EmptyLine {
                    line: 1,
                    what: "origin",
                },
            ),
            (
                "o\n01\nROOT\n".to_owned(),
                CheckpointError::BadSize {
                    value: "01".into(),
                    reason: "has a leading zero",
                },
            ),
            (
                "o\n\nROOT\n".to_owned(),
                CheckpointError::BadSize {
                    value: "".into(),
                    reason: "is empty",
                },
            ),
            ("o\n1\nAAAA\n".to_owned(), CheckpointError::BadRoot),
            ("o\n1\nROOT \n".to_owned(), CheckpointError::BadRoot),
            (format!("o\n1\n{}\n", B64.encode([1u8; 33])), CheckpointError::BadRoot),
            (
                "o\n1\nROOT\next\n\n".to_owned(),
                CheckpointError::EmptyLine {
                    line: 5,
                    what: "extension line",
                },
            ),
        ];
        for (text, want) in cases {
            let text = text.replace("ROOT", &root);
            assert_eq!(Checkpoint::parse(&text).unwrap_err(), want, "{text:?}");
        }
    }

    #[test]
    fn sign_and_open() {
        let log = Signer::generate("example.com/log", [9; 32]).unwrap();
        let c = Checkpoint {
            extensions: vec!["x".into()],
            ..cp(42)
        };
        let signed = sign_checkpoint(&c, &log).unwrap();
        let (opened, note) = open_checkpoint(signed.as_bytes(), &log.verifier()).unwrap();
        assert_eq!(opened, c);
        assert_eq!(note.signatures.len(), 1);

        let other = Signer::generate("example.com/log", [8; 32]).unwrap();
        let err = open_checkpoint(signed.as_bytes(), &other.verifier()).unwrap_err();
        assert_eq!(err, CheckpointError::Note(NoteError::Unverified));

        let tampered = signed.replace("\n42\n", "\n43\n");
        let err = open_checkpoint(tampered.as_bytes(), &log.verifier()).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Note(NoteError::InvalidSignature { line: 6, .. })),
            "{err}"
        );
    }

    #[test]
    fn origin_must_be_the_key_name() {
        let log = Signer::generate("example.com/other", [9; 32]).unwrap();
        let err = sign_checkpoint(&cp(1), &log).unwrap_err();
        assert!(matches!(err, CheckpointError::OriginMismatch { .. }));
        // A validly signed note whose origin differs is refused when opened.
        let note = note::sign(&cp(1).to_text(), &[&log]).unwrap();
        let err = open_checkpoint(note.as_bytes(), &log.verifier()).unwrap_err();
        assert_eq!(
            err,
            CheckpointError::OriginMismatch {
                origin: "example.com/log".into(),
                key_name: "example.com/other".into()
            }
        );
    }

    #[test]
    fn sign_refuses_unencodable_checkpoints() {
        let log = Signer::generate("example.com/log", [9; 32]).unwrap();
        let smuggled = Checkpoint {
            origin: "example.com/log\n7".into(),
            ..cp(1)
        };
        let err = sign_checkpoint(&smuggled, &log).unwrap_err();
        assert_eq!(
            err,
            CheckpointError::EmbeddedNewline {
                line: 1,
                what: "origin"
            }
        );
        let empty_ext = Checkpoint {
            extensions: vec!["a".into(), "".into()],
            ..cp(1)
        };
        let err = sign_checkpoint(&empty_ext, &log).unwrap_err();
        assert_eq!(
            err,
            CheckpointError::EmptyLine {
                line: 5,
                what: "extension line"
            }
        );
        let control = Checkpoint {
            extensions: vec!["a\tb".into()],
            ..cp(1)
        };
        let err = sign_checkpoint(&control, &log).unwrap_err();
        assert_eq!(
            err,
            CheckpointError::Note(NoteError::TextControlCharacter { line: 4, code: 9 })
        );
    }
}
