//! `note::Note::parse`: C2SP signed notes as received from the network or
//! read from the checkpoint slot. Also runs `Note::verify` against the fixed
//! fuzzing key and `Checkpoint::parse` on the note's text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealtrail_fuzz::{log_signer, log_verifier};
use sealtrail_merkle::checkpoint::Checkpoint;
use sealtrail_merkle::note::{self, is_valid_key_name, Note, NoteError, Signer, Verifier, MAX_SIGNATURES};

fn keys() -> &'static (Signer, Verifier) {
    static KEYS: OnceLock<(Signer, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| (log_signer(), log_verifier()))
}

fuzz_target!(|data: &[u8]| {
    let (signer, verifier) = keys();
    let note = match Note::parse(data) {
        Ok(note) => note,
        Err(NoteError::NotUtf8 { offset }) => {
            assert!(std::str::from_utf8(data).is_err());
            assert!(std::str::from_utf8(&data[..offset]).is_ok());
            return;
        }
        Err(_) => {
            assert!(Note::parse(data).is_err(), "Note::parse is not deterministic");
            return;
        }
    };
    // Structure the parser promises.
    assert!(
        note.text.ends_with('\n'),
        "note text {:?} does not end with a newline",
        note.text
    );
    assert!(!note.signatures.is_empty() && note.signatures.len() <= MAX_SIGNATURES);
    for sig in &note.signatures {
        assert!(is_valid_key_name(&sig.name), "accepted signature name {:?}", sig.name);
        assert!(!sig.signature.is_empty());
    }
    // to_bytes gives back exactly the parsed bytes, which parse to the same note.
    let bytes = note.to_bytes();
    assert_eq!(bytes, data, "Note::to_bytes differs from the parsed input");
    assert_eq!(Note::parse(&bytes).as_ref(), Ok(&note));

    // Verification against a fixed key must not panic; success means a
    // line names that key.
    if let Ok(signed) = note.verify(std::slice::from_ref(verifier)) {
        assert_eq!(signed.len(), 1);
        assert!(note
            .signatures
            .iter()
            .any(|s| s.name == verifier.name() && s.key_id == verifier.key_id()));
    }

    // Any parsed note's text is signable, and the signed note parses back to
    // the same text and verifies.
    let resigned = match note::sign(&note.text, &[signer]) {
        Ok(n) => n,
        Err(e) => panic!("text of a parsed note cannot be signed: {e:?}"),
    };
    let reparsed = match Note::parse(resigned.as_bytes()) {
        Ok(n) => n,
        Err(e) => panic!("re-signed note does not parse: {e:?}"),
    };
    assert_eq!(reparsed.text, note.text);
    assert!(
        reparsed.verify(std::slice::from_ref(verifier)).is_ok(),
        "re-signed note does not verify"
    );

    // The text may be a checkpoint: if so it must round-trip.
    if let Ok(cp) = Checkpoint::parse(&note.text) {
        assert_eq!(cp.to_text(), note.text);
        assert_eq!(Checkpoint::parse(&cp.to_text()).as_ref(), Ok(&cp));
    }
});
