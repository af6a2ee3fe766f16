//! `note::Verifier::parse`: verifier keys (`<name>+<8 hex id>+<base64>`) as
//! read from configuration files or handed over by operators.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_merkle::note::{is_valid_key_name, Verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(verifier) = Verifier::parse(text) else {
        assert!(text.parse::<Verifier>().is_err());
        return;
    };
    assert!(is_valid_key_name(verifier.name()));
    // The module promises one textual encoding per key: writing the parsed
    // key gives back exactly the input, which parses to the same key.
    let written = verifier.to_string();
    assert_eq!(written, text, "verifier key is not in its canonical form");
    assert_eq!(Verifier::parse(&written).as_ref(), Ok(&verifier));
    assert_eq!(text.parse::<Verifier>().as_ref(), Ok(&verifier));
    assert_eq!(format!("{verifier:?}"), format!("Verifier({written})"));
});
