//! `checkpoint::Checkpoint::parse`: checkpoint text (a note's body). If it
//! parses, the text must round-trip, and signing it with a key named after
//! its origin then opening it must give the same checkpoint back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_merkle::checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint, CheckpointError};
use sealtrail_merkle::note::{is_valid_key_name, NoteError, Signer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cp) = Checkpoint::parse(text) else { return };
    assert!(!cp.origin.is_empty() && !cp.origin.contains('\n'));
    assert!(cp.extensions.iter().all(|e| !e.is_empty() && !e.contains('\n')));
    // Only one spelling parses: the text is exactly what to_text writes.
    assert_eq!(cp.to_text(), text, "checkpoint text is not canonical");
    assert_eq!(Checkpoint::parse(&cp.to_text()).as_ref(), Ok(&cp));

    // Sign it as its own log and open it again.
    if !is_valid_key_name(&cp.origin) {
        return;
    }
    let signer = match Signer::generate(&cp.origin, [0x42; 32]) {
        Ok(s) => s,
        Err(e) => panic!("valid key name {:?} refused: {e:?}", cp.origin),
    };
    match sign_checkpoint(&cp, &signer) {
        Ok(note) => match open_checkpoint(note.as_bytes(), &signer.verifier()) {
            Ok((opened, n)) => {
                assert_eq!(opened, cp, "signed then opened checkpoint differs");
                assert_eq!(n.text, text);
                assert_eq!(n.signatures.len(), 1);
            }
            Err(e) => panic!("checkpoint signed by its own log does not open: {e:?}"),
        },
        // Parse accepts control characters that a note may not carry, so
        // signing such a checkpoint is refused; nothing else may fail.
        Err(CheckpointError::Note(NoteError::TextControlCharacter { .. })) => {
            assert!(text.bytes().any(|b| b < 0x20 && b != b'\n'));
        }
        Err(e) => panic!("parsed checkpoint cannot be signed: {e:?}"),
    }
});
