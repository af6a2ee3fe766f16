//! `format::decode_record_header` and `format::decode_record`: entry records
//! (`len u32 BE ‖ crc32c u32 BE ‖ data`) as read from the entries file.
//!
//! Input layout: 8 bytes of entry index (big-endian; shorter inputs use
//! index 0 and all bytes as the record), then the record bytes. The rest of
//! the input after the first record is scanned as following records, the way
//! recovery walks the entries file; then the same walk runs again with each
//! record's CRC patched to the correct value, so the fuzzer reaches the
//! accepting path with arbitrary lengths and data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_ledger::format::{
    decode_record, decode_record_header, encode_record, record_crc, FormatError, MAX_ENTRY, RECORD_HEADER_LEN,
};

const HDR: usize = RECORD_HEADER_LEN as usize;

/// Checks one record at the start of `bytes` as entry `index`; returns its
/// total length (header and data) if it decodes.
fn check_one(bytes: &[u8], index: u64) -> Option<usize> {
    let header = decode_record_header(bytes);
    let record = decode_record(bytes, index);
    match (&header, &record) {
        (Ok((len, crc)), Ok(data)) => {
            assert!(*len as usize <= MAX_ENTRY);
            assert_eq!(data.len(), *len as usize);
            assert_eq!(*data, &bytes[HDR..HDR + data.len()]);
            assert_eq!(record_crc(data, index), *crc);
            // Re-encoding gives back exactly the bytes that were decoded.
            let mut again = Vec::new();
            encode_record(&mut again, data, index);
            assert_eq!(&again[..], &bytes[..HDR + data.len()], "re-encoded record differs");
            // The same record read as another entry (one bit of the index
            // flipped, an error CRC-32C always detects) must fail its check.
            match decode_record(bytes, index ^ 1) {
                Err(FormatError::Checksum { .. }) => {}
                other => panic!("record of entry {index} accepted as entry {}: {other:?}", index ^ 1),
            }
            Some(HDR + data.len())
        }
        (Ok((len, crc)), Err(e)) => {
            match e {
                FormatError::Short(n) => {
                    assert_eq!(*n, bytes.len());
                    assert!(bytes.len() < HDR + *len as usize, "Short error but the record fits");
                }
                FormatError::Checksum { stored, computed } => {
                    assert_eq!(stored, crc);
                    assert_ne!(stored, computed);
                    let data = &bytes[HDR..HDR + *len as usize];
                    assert_eq!(record_crc(data, index), *computed);
                }
                other => panic!("decode_record: unexpected error {other:?} after a good header"),
            }
            None
        }
        (Err(h), Err(r)) => {
            // A bad header is the whole record's error, unchanged.
            assert_eq!(h, r);
            match h {
                FormatError::Short(n) => assert!(*n == bytes.len() && bytes.len() < HDR),
                FormatError::Length(len) => assert!(*len as usize > MAX_ENTRY),
                other => panic!("decode_record_header: unexpected error {other:?}"),
            }
            None
        }
        (Err(h), Ok(_)) => panic!("decode_record accepted a record whose header fails: {h:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (index, records) = match data.split_first_chunk::<8>() {
        Some((idx, rest)) => (u64::from_be_bytes(*idx), rest),
        None => (0, data),
    };
    // Walk consecutive records as entries index, index + 1, ... as they are.
    let mut rest = records;
    let mut i = index;
    while let Some(used) = check_one(rest, i) {
        assert!(used >= HDR && used <= rest.len());
        rest = &rest[used..];
        i = i.wrapping_add(1);
        if rest.is_empty() {
            break;
        }
    }

    // Random bytes almost never carry a matching CRC, so walk them again
    // with each record's CRC patched to the right value: every record whose
    // header is valid and whose data is all there must then decode.
    let mut fixed = records.to_vec();
    let mut offset = 0;
    let mut i = index;
    while let Ok((len, _)) = decode_record_header(&fixed[offset..]) {
        let end = offset + HDR + len as usize;
        if end > fixed.len() {
            assert_eq!(
                decode_record(&fixed[offset..], i),
                Err(FormatError::Short(fixed.len() - offset))
            );
            break;
        }
        let crc = record_crc(&fixed[offset + HDR..end], i);
        fixed[offset + 4..offset + 8].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            check_one(&fixed[offset..], i),
            Some(end - offset),
            "record with a correct CRC refused"
        );
        offset = end;
        i = i.wrapping_add(1);
    }

    // Encoding then decoding the leftover bytes as an entry always works.
    if rest.len() <= MAX_ENTRY {
        let mut out = Vec::new();
        encode_record(&mut out, rest, index);
        assert_eq!(decode_record(&out, index), Ok(rest));
        assert_eq!(
            decode_record_header(&out),
            Ok((rest.len() as u32, record_crc(rest, index)))
        );
    }
});
