//! `note::Signer::from_private_key`: Go-style private keys
//! (`PRIVATE+KEY+<name>+<8 hex id>+<base64>`) as read from key files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_merkle::note::{self, is_valid_key_name, Note, Signer, Verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(signer) = Signer::from_private_key(text) else {
        return;
    };
    assert!(is_valid_key_name(signer.name()));
    // The key text round-trips exactly.
    let written = signer.to_private_key();
    assert_eq!(written, text, "private key is not in its canonical form");
    let again = match Signer::from_private_key(&written) {
        Ok(s) => s,
        Err(e) => panic!("written private key does not parse: {e:?}"),
    };
    assert_eq!((again.name(), again.key_id()), (signer.name(), signer.key_id()));
    // Debug must never print the secret.
    let debug = format!("{signer:?}");
    let secret = written.rsplit('+').next().unwrap_or_default();
    assert!(!debug.contains(secret), "Debug of a Signer leaks the key: {debug}");
    // Its verifier key parses back to the same verifier, and a note it signs
    // verifies under that verifier.
    let verifier = signer.verifier();
    assert_eq!((verifier.name(), verifier.key_id()), (signer.name(), signer.key_id()));
    assert_eq!(Verifier::parse(&verifier.to_string()).as_ref(), Ok(&verifier));
    let signed = match note::sign("fuzz\n", &[&signer]) {
        Ok(n) => n,
        Err(e) => panic!("cannot sign with a parsed key: {e:?}"),
    };
    let parsed = match Note::parse(signed.as_bytes()) {
        Ok(n) => n,
        Err(e) => panic!("signed note does not parse: {e:?}"),
    };
    assert!(
        parsed.verify(std::slice::from_ref(&verifier)).is_ok(),
        "note signed by a parsed key does not verify"
    );
});
