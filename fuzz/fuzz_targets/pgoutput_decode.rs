//! `logical::pgoutput::decode`: the messages PostgreSQL's pgoutput plugin
//! sends through a replication slot. Besides never panicking or
//! allocating beyond the input: a refusal's offset lies inside the input,
//! an accepted message used every byte (one more byte is refused as
//! trailing), and every value it holds is a piece of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_pg::logical::pgoutput::{decode, Message, Value};

fn text_bytes(values: &[Value<'_>]) -> usize {
    values
        .iter()
        .map(|v| match v {
            Value::Text(t) => t.len(),
            _ => 0,
        })
        .sum()
}

fuzz_target!(|data: &[u8]| {
    let message = match decode(data) {
        Ok(m) => m,
        Err(e) => {
            assert!(e.offset <= data.len(), "refusal at byte {} of {}", e.offset, data.len());
            assert!(!e.reason.is_empty());
            return;
        }
    };
    let mut longer = data.to_vec();
    longer.push(0);
    assert!(
        decode(&longer).is_err(),
        "a trailing byte was accepted after {message:?}"
    );
    let held = match &message {
        Message::Insert { new, .. } => text_bytes(new),
        Message::Update { old, new, .. } => text_bytes(new) + old.as_ref().map_or(0, |(_, o)| text_bytes(o)),
        Message::Delete { old, .. } => text_bytes(&old.1),
        Message::Message { prefix, content, .. } => prefix.len() + content.len(),
        Message::Relation(r) => {
            r.namespace.len() + r.name.len() + r.columns.iter().map(|c| c.name.len()).sum::<usize>()
        }
        Message::Truncate { relations, .. } => relations.len() * 4,
        _ => 0,
    };
    assert!(
        held < data.len(),
        "{held} bytes of values from a {}-byte message",
        data.len()
    );
});
