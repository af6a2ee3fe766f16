//! `format::Slot::decode`: one of the two slots of the checkpoint file.
//! A slot decodes from its first `40 + note_len + 4` bytes, so inputs need
//! not be a full 4096-byte slot. Each input is also tried with its CRC
//! patched to the correct value, so the fuzzer reaches the accepting path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_ledger::format::{decode_header, FormatError, Slot, MAX_NOTE, SLOT_LEN, SLOT_MAGIC};

/// Fixed part of a slot before the note: header, note length, three u64s.
const SLOT_FIXED: usize = 40;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Random bytes almost never carry a matching CRC: patch it in, and the
    // slot must then decode whenever its header and note length are valid.
    if data.len() >= SLOT_FIXED + 4 && decode_header(data, SLOT_MAGIC).is_ok() {
        let note_len = u32::from_be_bytes([data[12], data[13], data[14], data[15]]) as usize;
        let end = SLOT_FIXED + note_len;
        if note_len <= MAX_NOTE && data.len() >= end + 4 {
            let mut fixed = data.to_vec();
            let crc = crc32c::crc32c(&fixed[..end]);
            fixed[end..end + 4].copy_from_slice(&crc.to_be_bytes());
            assert!(
                check(&fixed),
                "slot with a correct CRC refused: {:?}",
                Slot::decode(&fixed)
            );
        }
    }
});

/// Decodes `data` as a slot and checks the result; returns whether it decoded.
fn check(data: &[u8]) -> bool {
    let slot = match Slot::decode(data) {
        Ok(slot) => slot,
        Err(e) => {
            match e {
                // Header errors are exactly decode_header's.
                FormatError::Magic { .. } | FormatError::Version(_) => {
                    assert_eq!(decode_header(data, SLOT_MAGIC), Err(e))
                }
                FormatError::Short(n) => assert_eq!(n, data.len()),
                FormatError::NoteLength(n) => assert!(n as usize > MAX_NOTE),
                FormatError::Checksum { stored, computed } => assert_ne!(stored, computed),
                FormatError::Length(_) => panic!("Slot::decode returned a record error: {e:?}"),
            }
            return false;
        }
    };
    assert!(slot.note.len() <= MAX_NOTE);
    let used = SLOT_FIXED + slot.note.len() + 4;
    assert!(data.len() >= used);
    // Re-encoding reproduces every byte the decoder read...
    let encoded = match slot.encode() {
        Ok(b) => b,
        Err(e) => panic!("decoded slot does not re-encode: {e:?}"),
    };
    assert_eq!(encoded.len(), SLOT_LEN);
    assert_eq!(
        &encoded[..used],
        &data[..used],
        "re-encoded slot differs from the decoded bytes"
    );
    // ...and decodes back to the same slot, full-size or trimmed.
    assert_eq!(Slot::decode(&encoded).as_ref(), Ok(&slot));
    assert_eq!(Slot::decode(&encoded[..used]).as_ref(), Ok(&slot));
    // One flipped bit in a covered field (the sequence number) is a torn
    // slot: CRC-32C detects every single-bit error.
    let mut torn = data[..used].to_vec();
    torn[16] ^= 1;
    assert!(
        matches!(Slot::decode(&torn), Err(FormatError::Checksum { .. })),
        "torn slot accepted"
    );
    true
}
