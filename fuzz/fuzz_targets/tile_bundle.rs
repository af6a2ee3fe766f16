//! `tile::EntryBundle::decode` (entry bundles fetched from a tiled log) and
//! `TileCoord::hashes` (hash tile bodies). A decoded bundle must re-encode
//! to exactly its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_merkle::tile::{BundleError, EntryBundle, TileCoord, TILE_WIDTH};

fuzz_target!(|data: &[u8]| {
    match EntryBundle::decode(data) {
        Ok(entries) => {
            assert!(entries.len() <= usize::from(TILE_WIDTH));
            assert_eq!(entries.iter().map(|e| 2 + e.len()).sum::<usize>(), data.len());
            match EntryBundle::encode(&entries) {
                Ok(bytes) => assert_eq!(bytes, data, "re-encoded bundle differs"),
                Err(e) => panic!("decoded bundle does not re-encode: {e:?}"),
            }
        }
        Err(BundleError::TruncatedLength { offset, .. }) => assert_eq!(offset + 1, data.len()),
        Err(BundleError::TruncatedEntry {
            offset, len, available, ..
        }) => {
            assert!(available < len && offset + available == data.len())
        }
        Err(BundleError::TooManyEntries) => assert!(data.len() > 2 * usize::from(TILE_WIDTH)),
        Err(e @ BundleError::EntryTooLarge { .. }) => panic!("decode returned an encoder error: {e:?}"),
    }

    // The same bytes as a hash tile body: accepted only at the exact width.
    if data.len().is_multiple_of(32) {
        if let Ok(width) = u16::try_from(data.len() / 32) {
            if let Ok(coord) = TileCoord::new(0, 0, width) {
                match coord.hashes(data) {
                    Ok(hashes) => assert_eq!(hashes.concat(), data),
                    Err(e) => panic!("body of {width} hashes refused: {e:?}"),
                }
            }
        }
    }
    for width in [1u16, 2, 255, 256] {
        if let Ok(coord) = TileCoord::new(3, 7, width) {
            assert_eq!(coord.hashes(data).is_ok(), data.len() == usize::from(width) * 32);
        }
    }
});
