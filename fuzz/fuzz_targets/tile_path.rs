//! `tile::TileCoord::parse_path`: tile and entry-bundle paths as requested
//! by clients over HTTP. Only canonical paths parse, so every accepted path
//! must be exactly the one `path()`/`entries_path()` writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_merkle::tile::{TileCoord, TileKind, MAX_TILE_LEVEL, TILE_WIDTH};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let Ok((kind, coord)) = TileCoord::parse_path(path) else {
        return;
    };
    assert!(coord.level() <= MAX_TILE_LEVEL);
    assert!(coord.width() >= 1 && coord.width() <= TILE_WIDTH);
    assert_eq!(coord.is_partial(), coord.width() < TILE_WIDTH);
    assert_eq!(TileCoord::new(coord.level(), coord.index(), coord.width()), Ok(coord));
    let written = match kind {
        TileKind::Hashes => coord.path(),
        TileKind::Entries => {
            assert_eq!(coord.level(), 0, "entry bundle parsed with a level");
            coord.entries_path()
        }
    };
    assert_eq!(written, path, "tile path is not canonical");
    assert_eq!(TileCoord::parse_path(&written), Ok((kind, coord)));
    // A tile body of exactly `width` hashes splits into them.
    let body = vec![0xabu8; usize::from(coord.width()) * 32];
    match coord.hashes(&body) {
        Ok(hashes) => assert_eq!(hashes.len(), usize::from(coord.width())),
        Err(e) => panic!("full-size body refused: {e:?}"),
    }
    assert!(coord.hashes(&body[1..]).is_err());
});
