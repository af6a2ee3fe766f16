//! `format::decode_header`: the 16-byte header every ledger data file
//! starts with. The input is the start of a file; it is checked against
//! every magic the ledger knows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_ledger::format::{
    decode_header, encode_header, FormatError, ENTRIES_MAGIC, HASHES_MAGIC, HEADER_LEN, INDEX_MAGIC, SLOT_MAGIC,
    VERSION,
};

const MAGICS: [[u8; 8]; 4] = [ENTRIES_MAGIC, INDEX_MAGIC, HASHES_MAGIC, SLOT_MAGIC];

fuzz_target!(|data: &[u8]| {
    let mut accepted = 0;
    for magic in MAGICS {
        match decode_header(data, magic) {
            Ok(()) => {
                accepted += 1;
                assert!(
                    data.len() >= HEADER_LEN as usize,
                    "accepted a {}-byte header",
                    data.len()
                );
                // Everything the decoder checks is what the encoder writes.
                assert_eq!(
                    &data[..12],
                    &encode_header(magic)[..12],
                    "accepted header differs from the encoder's"
                );
            }
            Err(FormatError::Short(n)) => {
                assert_eq!(n, data.len());
                assert!(data.len() < HEADER_LEN as usize, "Short error for {} bytes", data.len());
            }
            Err(FormatError::Magic { found, expected }) => {
                assert_eq!(expected, magic);
                assert_eq!(&found[..], &data[..8]);
                assert_ne!(found, magic);
            }
            Err(FormatError::Version(v)) => {
                assert_eq!(&data[..8], &magic[..]);
                assert_eq!(v.to_be_bytes(), [data[8], data[9], data[10], data[11]]);
                assert_ne!(v, VERSION);
            }
            Err(other) => panic!("decode_header returned an unexpected error: {other:?}"),
        }
        // The encoder's output is always accepted.
        assert_eq!(decode_header(&encode_header(magic), magic), Ok(()));
    }
    assert!(accepted <= 1, "one header accepted under {accepted} different magics");
});
