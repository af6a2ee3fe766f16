//! `sealtrail_event::parse_entry`: a stored event entry read back from the
//! ledger. An entry that parses is, byte for byte, the canonical entry of
//! the event it parses to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_event::{canonical_entry, parse_entry};

fuzz_target!(|data: &[u8]| {
    let Ok(event) = parse_entry(data) else { return };
    assert_eq!(
        canonical_entry(&event).as_deref(),
        Ok(data),
        "parsed entry is not its event's canonical entry"
    );
    assert_eq!(parse_entry(data).as_ref(), Ok(&event));
});
