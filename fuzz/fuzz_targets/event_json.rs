//! `sealtrail_event::accept_json` (an event as a client sends it over HTTP)
//! and the JSON/JCS layers under it (`json::parse`, `jcs::to_vec`).
//!
//! Properties: canonical JSON is a fixed point (it parses, and
//! canonicalizing it again gives the same bytes); an accepted event has a
//! canonical entry within the size limit, and reading that entry back with
//! `parse_entry` gives the same event and the same bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealtrail_event::limits::MAX_ENTRY_BYTES;
use sealtrail_event::{accept_json, canonical_entry, event_id, jcs, json, parse_entry, Rejection, Timestamp, Ulid};

/// The server-assigned fields, fixed: 2026-01-01T00:00:00Z and a fixed id.
fn server_fields() -> (Timestamp, Ulid) {
    static FIELDS: OnceLock<(Timestamp, Ulid)> = OnceLock::new();
    *FIELDS.get_or_init(|| {
        let received_at = match Timestamp::from_second(1_767_225_600) {
            Ok(t) => t,
            Err(e) => panic!("fixed timestamp: {e}"),
        };
        match event_id(received_at, [0x11; 10]) {
            Ok(id) => (received_at, id),
            Err(e) => panic!("fixed id: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let (received_at, id) = server_fields();

    // JSON and canonical JSON.
    let parsed = json::parse(data);
    if let Ok(value) = &parsed {
        if let Ok(canon) = jcs::to_vec(value) {
            let again = match json::parse(&canon) {
                Ok(v) => v,
                Err(e) => panic!("canonical JSON does not parse: {e}"),
            };
            assert_eq!(
                jcs::to_vec(&again).as_ref(),
                Ok(&canon),
                "canonical JSON is not a fixed point"
            );
        }
    }

    // The event layer.
    match accept_json(data, received_at, id) {
        Ok(event) => {
            assert!(parsed.is_ok());
            assert_eq!((event.id, event.received_at), (id, received_at));
            let bytes = match canonical_entry(&event) {
                Ok(b) => b,
                Err(e) => panic!("accepted event has no canonical entry: {e}"),
            };
            assert!(bytes.len() <= MAX_ENTRY_BYTES);
            let back = match parse_entry(&bytes) {
                Ok(e) => e,
                Err(e) => panic!("canonical entry of an accepted event does not read back: {e}"),
            };
            assert_eq!(canonical_entry(&back).as_ref(), Ok(&bytes));
            assert_eq!(
                back, event,
                "event read back from its entry differs from the accepted event"
            );
        }
        Err(Rejection::Json(e)) => assert_eq!(parsed.as_ref().err(), Some(&e)),
        Err(Rejection::Invalid(errors)) => {
            assert!(parsed.is_ok());
            assert!(!errors.is_empty(), "rejected with no error");
        }
    }
});
