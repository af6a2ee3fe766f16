//! `checkpoint::open_checkpoint` with the fixed fuzzing log key: a signed
//! checkpoint note as fetched from a log or read from disk.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealtrail_fuzz::{log_signer, LOG_NAME};
use sealtrail_merkle::checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint};
use sealtrail_merkle::note::{Note, Signer, Verifier};

fn keys() -> &'static (Signer, Verifier) {
    static KEYS: OnceLock<(Signer, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let s = log_signer();
        let v = s.verifier();
        (s, v)
    })
}

fuzz_target!(|data: &[u8]| {
    let (signer, verifier) = keys();
    let Ok((cp, note)) = open_checkpoint(data, verifier) else {
        return;
    };
    assert_eq!(cp.origin, LOG_NAME);
    assert_eq!(note.to_bytes(), data, "opened note does not re-serialize to its input");
    assert_eq!(Note::parse(data).as_ref(), Ok(&note));
    assert_eq!(cp.to_text(), note.text);
    assert_eq!(Checkpoint::parse(&note.text).as_ref(), Ok(&cp));
    assert!(note.verify(std::slice::from_ref(verifier)).is_ok());
    // The log re-signing the opened checkpoint produces a note that opens
    // to the same checkpoint and text.
    let resigned = match sign_checkpoint(&cp, signer) {
        Ok(n) => n,
        Err(e) => panic!("opened checkpoint cannot be re-signed: {e:?}"),
    };
    match open_checkpoint(resigned.as_bytes(), verifier) {
        Ok((again, again_note)) => {
            assert_eq!(again, cp);
            assert_eq!(again_note.text, note.text);
        }
        Err(e) => panic!("re-signed checkpoint does not open: {e:?}"),
    }
});
