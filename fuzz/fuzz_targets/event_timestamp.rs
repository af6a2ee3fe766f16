//! `sealtrail_event::timestamp::parse`: RFC 3339 times as senders write
//! `occurred_at`. A parsed time's stored form parses to the same instant and
//! is its own stored form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_event::timestamp::{format, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(t) = parse(text) else { return };
    let stored = format(t);
    match parse(&stored) {
        Ok(back) => assert_eq!(back, t, "stored form {stored:?} of {text:?} is another instant"),
        Err(e) => panic!("stored form {stored:?} of {text:?} does not parse: {e}"),
    }
    assert_eq!(format(t), stored);
});
