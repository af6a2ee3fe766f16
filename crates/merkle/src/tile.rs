//! C2SP tiled logs (c2sp.org/tlog-tiles): which tiles a tree has, where each
//! is served, which tile holds a given node, and the entry bundle codec.
//!
//! A tile at level `L` is a run of up to 256 consecutive hashes from tree
//! level `8·L`; the tree levels in between are recomputed from them. This
//! module deliberately is not storage or HTTP: it names resources and
//! encodes bytes, and callers fetch, store and cache them. It hashes nothing;
//! turning a tile's hashes into nodes is the proof code's job.

use std::fmt::Write as _;

use crate::checkpoint::parse_decimal;
use crate::hash::Hash;

/// Hashes in a full tile, and entries in a full bundle.
pub const TILE_WIDTH: u16 = 256;
/// Tree levels one tile level spans.
pub const TILE_HEIGHT: u8 = 8;
/// Highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;

/// Why a tile coordinate, path or tile body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("tile level {0} is above {MAX_TILE_LEVEL}")]
    BadLevel(u8),
    #[error("tile width {0} is outside 1..=256")]
    BadWidth(u16),
    #[error("tile path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("tile {path} should be {expected} bytes ({width} hashes) but is {found}")]
    WrongSize {
        path: String,
        width: u16,
        expected: usize,
        found: usize,
    },
}

/// Why an entry bundle could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("entry {position} is {len} bytes; a bundle entry holds at most 65535")]
    EntryTooLarge { position: usize, len: usize },
    #[error("bundle has more than {} entries", TILE_WIDTH)]
    TooManyEntries,
    #[error("byte offset {offset}: length prefix of entry {position} is cut off")]
    TruncatedLength { offset: usize, position: usize },
    #[error("byte offset {offset}: entry {position} declares {len} bytes but only {available} remain")]
    TruncatedEntry {
        offset: usize,
        position: usize,
        len: usize,
        available: usize,
    },
}

/// Which of the two tile resources a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// `tile/<L>/<N>[.p/<W>]`: Merkle tree hashes.
    Hashes,
    /// `tile/entries/<N>[.p/<W>]`: the entry bundle matching level-0 tile `N`.
    Entries,
}

/// The `index`-th tile at tile level `level`, holding `width` hashes (256
/// for a full tile, fewer for the partial tile at the tree's right edge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileCoord {
    level: u8,
    index: u64,
    width: u16,
}

/// Number of hashes a tree of `size` leaves has at tile level `level`:
/// `floor(size / 256^level)`.
fn hashes_at_level(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT)).unwrap_or(0)
}

impl TileCoord {
    /// Checks the spec's bounds: level at most 63, width 1 to 256.
    pub fn new(level: u8, index: u64, width: u16) -> Result<TileCoord, TileError> {
        if level > MAX_TILE_LEVEL {
            return Err(TileError::BadLevel(level));
        }
        if width == 0 || width > TILE_WIDTH {
            return Err(TileError::BadWidth(width));
        }
        Ok(TileCoord { level, index, width })
    }

    /// Tile `index` at `level` as a tree of `size` leaves has it: full, or
    /// partial with the width the spec prescribes; `None` if that tree has no
    /// such tile (a partial tile of width 0 is never served).
    pub fn in_tree(size: u64, level: u8, index: u64) -> Option<TileCoord> {
        if level > MAX_TILE_LEVEL {
            return None;
        }
        let full = hashes_at_level(size, level) / u64::from(TILE_WIDTH);
        let width = match index.cmp(&full) {
            std::cmp::Ordering::Less => TILE_WIDTH,
            std::cmp::Ordering::Equal => (hashes_at_level(size, level) % u64::from(TILE_WIDTH)) as u16,
            std::cmp::Ordering::Greater => 0,
        };
        (width > 0).then_some(TileCoord { level, index, width })
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// `tile/<L>/<N>[.p/<W>]`, relative to the log's URL prefix.
    pub fn path(&self) -> String {
        let mut path = format!("tile/{}/", self.level);
        self.push_index_and_width(&mut path);
        path
    }

    /// `tile/entries/<N>[.p/<W>]`: the entry bundle whose entries hash to
    /// this tile's hashes. Only meaningful for level-0 tiles; the level is
    /// not part of the path.
    pub fn entries_path(&self) -> String {
        let mut path = String::from("tile/entries/");
        self.push_index_and_width(&mut path);
        path
    }

    /// `<N>` as 3-digit groups, all but the last prefixed by `x` (1234067 is
    /// `x001/x234/067`), then `.p/<W>` for a partial tile.
    fn push_index_and_width(&self, path: &mut String) {
        let digits = self.index.to_string();
        let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
        let groups = padded.len() / 3;
        for g in 0..groups {
            if g + 1 < groups {
                path.push('x');
            }
            path.push_str(&padded[3 * g..3 * g + 3]);
            if g + 1 < groups {
                path.push('/');
            }
        }
        if self.is_partial() {
            // Infallible: writing to a String cannot fail.
            let _ = write!(path, ".p/{}", self.width);
        }
    }

    /// Parses a tile or entry bundle path relative to the log's prefix
    /// (`tile/…`, no leading slash). Only the canonical spelling is accepted,
    /// so each resource has exactly one path: no leading zeros in the level
    /// or width, no leading `x000` groups, no `.p/256` for a full tile.
    /// Entry bundles come back with level 0.
    pub fn parse_path(path: &str) -> Result<(TileKind, TileCoord), TileError> {
        let bad = |reason| TileError::BadPath {
            path: path.to_owned(),
            reason,
        };
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("does not start with \"tile/\""))?;
        let (head, rest) = rest.split_once('/').ok_or_else(|| bad("has no tile index"))?;
        let (kind, level) = if head == "entries" {
            (TileKind::Entries, 0)
        } else {
            let level = parse_decimal(head).map_err(|_| bad("level is not a canonical decimal"))?;
            if level > u64::from(MAX_TILE_LEVEL) {
                return Err(bad("level is above 63"));
            }
            (TileKind::Hashes, level as u8)
        };
        let mut groups: Vec<&str> = rest.split('/').collect();
        let mut width = TILE_WIDTH;
        if let [.., last_group, w] = groups.as_slice() {
            if let Some(stripped) = last_group.strip_suffix(".p") {
                let w = parse_decimal(w).map_err(|_| bad("partial width is not a canonical decimal"))?;
                if w == 0 || w >= u64::from(TILE_WIDTH) {
                    return Err(bad("partial width is outside 1..=255"));
                }
                width = w as u16;
                groups.pop();
                if let Some(last) = groups.last_mut() {
                    *last = stripped;
                }
            }
        }
        let index = parse_index(&groups).map_err(bad)?;
        Ok((kind, TileCoord { level, index, width }))
    }

    /// Splits a tile's body into its hashes, checking it is exactly `width`
    /// hashes long.
    pub fn hashes(&self, body: &[u8]) -> Result<Vec<Hash>, TileError> {
        let expected = usize::from(self.width) * 32;
        if body.len() != expected {
            return Err(TileError::WrongSize {
                path: self.path(),
                width: self.width,
                expected,
                found: body.len(),
            });
        }
        Ok(body.chunks_exact(32).filter_map(|c| Hash::try_from(c).ok()).collect())
    }
}

/// Decodes the `<N>` groups of a tile path.
fn parse_index(groups: &[&str]) -> Result<u64, &'static str> {
    let Some((last, leading)) = groups.split_last() else {
        return Err("has no tile index");
    };
    let mut index: u64 = 0;
    for (i, group) in leading.iter().enumerate() {
        let digits = group.strip_prefix('x').ok_or("index group is missing its 'x' prefix")?;
        if i == 0 && digits == "000" {
            return Err("index has a leading zero group");
        }
        index = push_group(index, digits)?;
    }
    push_group(index, last)
}

fn push_group(index: u64, digits: &str) -> Result<u64, &'static str> {
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("index group is not 3 decimal digits");
    }
    let value = digits
        .parse::<u64>()
        .map_err(|_| "index group is not 3 decimal digits")?;
    index
        .checked_mul(1000)
        .and_then(|i| i.checked_add(value))
        .ok_or("index does not fit in 64 bits")
}

/// Number of tile levels a tree of `size` leaves has tiles on (0 for the
/// empty tree): level `L` exists while `size ≥ 256^L`.
pub fn tile_levels(size: u64) -> u8 {
    (0..=MAX_TILE_LEVEL)
        .take_while(|&l| hashes_at_level(size, l) > 0)
        .count() as u8
}

/// Every tile a tree of `size` leaves has at `level`, left to right: its full
/// tiles, then the partial one if the level's hash count is not a multiple
/// of 256. Lazy, since a large tree has millions of level-0 tiles, and
/// double-ended, so `next_back()` yields the rightmost tile without a walk.
pub fn tiles(size: u64, level: u8) -> impl DoubleEndedIterator<Item = TileCoord> {
    let hashes = if level > MAX_TILE_LEVEL {
        0
    } else {
        hashes_at_level(size, level)
    };
    let count = hashes.div_ceil(u64::from(TILE_WIDTH));
    (0..count).filter_map(move |index| TileCoord::in_tree(size, level, index))
}

/// Where node `(level, n)` of the tree (the root of leaves
/// `[n·2^level, (n+1)·2^level)`) is found in the tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLocation {
    /// Tile level `level / 8`.
    pub tile_level: u8,
    /// Which tile at that level.
    pub tile_index: u64,
    /// Position of the node's first tile hash within the tile.
    pub first: u16,
    /// How many consecutive tile hashes the node spans, a power of two below
    /// 256. One means the tile stores the node itself; otherwise the node is
    /// the Merkle root of those hashes.
    pub count: u16,
}

impl NodeLocation {
    /// The narrowest tile width that contains the node.
    pub fn min_width(&self) -> u16 {
        self.first + self.count
    }
}

/// Locates node `(level, n)` in the tiles. Tiles store only tree levels that
/// are multiples of 8; a node in between is the root of `2^(level mod 8)`
/// adjacent hashes of the tile below it. `None` if no tree of at most
/// 2^64 − 1 leaves has the node.
pub fn locate_node(level: u8, n: u64) -> Option<NodeLocation> {
    // The node's last leaf, (n+1)·2^level − 1, must be a valid index, and
    // the largest index is 2^64 − 2 (sizes are u64).
    if level >= 64 || n >= u64::MAX >> level {
        return None;
    }
    let tile_level = level / TILE_HEIGHT;
    let span = level % TILE_HEIGHT;
    // Position of the node's leftmost hash at tree level 8·tile_level.
    let position = n << span;
    Some(NodeLocation {
        tile_level,
        tile_index: position / u64::from(TILE_WIDTH),
        first: (position % u64::from(TILE_WIDTH)) as u16,
        count: 1 << span,
    })
}

/// The entry bundle codec: each entry as a big-endian u16 length and its
/// bytes, at most 256 entries (one tile's worth).
pub struct EntryBundle;

impl EntryBundle {
    /// Encodes `entries`, refusing any longer than 65535 bytes (the spec's
    /// u16 length prefix cannot express them) and more than 256 entries.
    pub fn encode(entries: &[&[u8]]) -> Result<Vec<u8>, BundleError> {
        if entries.len() > usize::from(TILE_WIDTH) {
            return Err(BundleError::TooManyEntries);
        }
        let mut out = Vec::with_capacity(entries.iter().map(|e| 2 + e.len()).sum());
        for (position, entry) in entries.iter().enumerate() {
            let len = u16::try_from(entry.len()).map_err(|_| BundleError::EntryTooLarge {
                position,
                len: entry.len(),
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(entry);
        }
        Ok(out)
    }

    /// Splits a bundle into its entries, borrowing from `bundle`. The caller
    /// compares the count with the tile width it expected: a bundle does not
    /// record its own.
    pub fn decode(bundle: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
        let mut entries = Vec::new();
        let mut offset = 0;
        while offset < bundle.len() {
            let position = entries.len();
            if position == usize::from(TILE_WIDTH) {
                return Err(BundleError::TooManyEntries);
            }
            let Some(&[hi, lo]) = bundle.get(offset..offset + 2) else {
                return Err(BundleError::TruncatedLength { offset, position });
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let start = offset + 2;
            let entry = bundle.get(start..start + len).ok_or(BundleError::TruncatedEntry {
                offset: start,
                position,
                len,
                available: bundle.len() - start,
            })?;
            entries.push(entry);
            offset = start + len;
        }
        Ok(entries)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn coord(level: u8, index: u64, width: u16) -> TileCoord {
        TileCoord::new(level, index, width).unwrap()
    }

    #[test]
    fn paths() {
        let cases = [
            (coord(0, 0, 256), "tile/0/000"),
            (coord(0, 67, 256), "tile/0/067"),
            (coord(0, 999, 256), "tile/0/999"),
            (coord(0, 1000, 256), "tile/0/x001/000"),
            (coord(0, 1234067, 256), "tile/0/x001/x234/067"),
            (coord(0, 1234067, 8), "tile/0/x001/x234/067.p/8"),
            (coord(63, 5, 255), "tile/63/005.p/255"),
            (coord(2, u64::MAX, 1), "tile/2/x018/x446/x744/x073/x709/x551/615.p/1"),
        ];
        for (c, path) in cases {
            assert_eq!(c.path(), path);
            assert_eq!(TileCoord::parse_path(path).unwrap(), (TileKind::Hashes, c));
            let entries = path.replacen(&format!("tile/{}/", c.level()), "tile/entries/", 1);
            assert_eq!(c.entries_path(), entries);
            let want = TileCoord { level: 0, ..c };
            assert_eq!(TileCoord::parse_path(&entries).unwrap(), (TileKind::Entries, want));
        }
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for path in [
            "",
            "tile",
            "tile/0",
            "tile/0/",
            "/tile/0/000",
            "tiles/0/000",
            "tile/00/000",
            "tile/64/000",
            "tile/-1/000",
            "tile/+1/000",
            "tile/0/67",
            "tile/0/0067",
            "tile/0/x067",
            "tile/0/001/234",
            "tile/0/x000/067",
            "tile/0/x001/x234/067/",
            "tile/0/x001/x234/x067",
            "tile/0/x01/234",
            "tile/0/X001/234",
            "tile/0/06a",
            "tile/0/067.p",
            "tile/0/067.p/",
            "tile/0/067.p/0",
            "tile/0/067.p/08",
            "tile/0/067.p/256",
            "tile/0/067.p/8/",
            "tile/0/067.p/8/9",
            "tile/0/x001.p/8/067",
            "tile/0/067.P/8",
            "tile/0/067.p/+8",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x001/x018/x446/x744/x073/x709/x551/615",
            "tile/entries/",
            "tile/entries/67",
            "tile/entry/067",
            "tile/0/067 ",
        ] {
            assert!(TileCoord::parse_path(path).is_err(), "{path:?}");
        }
    }

    #[test]
    fn coordinate_bounds() {
        assert_eq!(TileCoord::new(0, 0, 0), Err(TileError::BadWidth(0)));
        assert_eq!(TileCoord::new(0, 0, 257), Err(TileError::BadWidth(257)));
        assert_eq!(TileCoord::new(64, 0, 1), Err(TileError::BadLevel(64)));
        assert!(!coord(0, 0, 256).is_partial());
        assert!(coord(0, 0, 255).is_partial());
    }

    #[test]
    fn tiles_of_a_tree() {
        assert_eq!(tile_levels(0), 0);
        assert_eq!(tiles(0, 0).count(), 0);
        assert_eq!(tile_levels(1), 1);
        assert_eq!(tiles(1, 0).collect::<Vec<_>>(), vec![coord(0, 0, 1)]);
        assert_eq!(tile_levels(255), 1);
        assert_eq!(tile_levels(256), 2);
        assert_eq!(tile_levels(65535), 2);
        assert_eq!(tile_levels(65536), 3);
        assert_eq!(tile_levels(u64::MAX), 8);
        assert_eq!(tiles(u64::MAX, 7).collect::<Vec<_>>(), vec![coord(7, 0, 255)]);
        assert_eq!(tiles(u64::MAX, 8).count(), 0);
        assert_eq!(tiles(u64::MAX, 200).count(), 0);
        assert_eq!(TileCoord::in_tree(1000, 0, 3), Some(coord(0, 3, 232)));
        assert_eq!(TileCoord::in_tree(1024, 0, 3), Some(coord(0, 3, 256)));
        assert_eq!(TileCoord::in_tree(1024, 0, 4), None);
        assert_eq!(TileCoord::in_tree(1024, 64, 0), None);
    }

    #[test]
    fn node_locations() {
        let at = |tile_level, tile_index, first, count| {
            Some(NodeLocation {
                tile_level,
                tile_index,
                first,
                count,
            })
        };
        assert_eq!(locate_node(0, 0), at(0, 0, 0, 1));
        assert_eq!(locate_node(0, 300), at(0, 1, 44, 1));
        assert_eq!(locate_node(1, 5), at(0, 0, 10, 2));
        assert_eq!(locate_node(7, 1), at(0, 0, 128, 128));
        assert_eq!(locate_node(7, 3), at(0, 1, 128, 128));
        assert_eq!(locate_node(8, 0), at(1, 0, 0, 1));
        assert_eq!(locate_node(8, 257), at(1, 1, 1, 1));
        assert_eq!(locate_node(9, 1), at(1, 0, 2, 2));
        assert_eq!(locate_node(16, 3), at(2, 0, 3, 1));
        assert_eq!(locate_node(63, 0), at(7, 0, 0, 128));
        assert_eq!(locate_node(63, 1), None);
        assert_eq!(locate_node(64, 0), None);
        assert_eq!(locate_node(62, 2), at(7, 0, 128, 64));
        assert_eq!(locate_node(62, 3), None);
        assert_eq!(locate_node(0, u64::MAX - 1), at(0, u64::MAX / 256, 254, 1));
        assert_eq!(locate_node(0, u64::MAX), None);
        assert_eq!(locate_node(7, 3).unwrap().min_width(), 256);
    }

    #[test]
    fn tile_bodies() {
        let c = coord(0, 0, 2);
        let body = [[1u8; 32], [2u8; 32]].concat();
        assert_eq!(c.hashes(&body).unwrap(), vec![[1u8; 32], [2u8; 32]]);
        let err = c.hashes(&body[1..]).unwrap_err();
        assert_eq!(
            err,
            TileError::WrongSize {
                path: "tile/0/000.p/2".into(),
                width: 2,
                expected: 64,
                found: 63
            }
        );
    }

    #[test]
    fn bundles() {
        let entries: [&[u8]; 3] = [b"", b"a", &[7u8; 300]];
        let bytes = EntryBundle::encode(&entries).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(&bytes[5..7], &[1, 44]);
        assert_eq!(EntryBundle::decode(&bytes).unwrap(), entries);
        assert_eq!(EntryBundle::decode(&[]).unwrap(), Vec::<&[u8]>::new());

        let big = vec![0u8; 65536];
        let max = vec![0u8; 65535];
        assert_eq!(
            EntryBundle::encode(&[b"ok", &max, &big]).unwrap_err(),
            BundleError::EntryTooLarge {
                position: 2,
                len: 65536
            }
        );
        assert_eq!(
            EntryBundle::decode(&EntryBundle::encode(&[&max]).unwrap()).unwrap(),
            vec![&max[..]]
        );

        assert_eq!(
            EntryBundle::decode(&bytes[..6]).unwrap_err(),
            BundleError::TruncatedLength { offset: 5, position: 2 }
        );
        assert_eq!(
            EntryBundle::decode(&bytes[..100]).unwrap_err(),
            BundleError::TruncatedEntry {
                offset: 7,
                position: 2,
                len: 300,
                available: 93
            }
        );

        let many = vec![&b"x"[..]; 257];
        assert_eq!(EntryBundle::encode(&many).unwrap_err(), BundleError::TooManyEntries);
        assert_eq!(EntryBundle::encode(&many[..256]).map(|b| b.len()), Ok(256 * 3));
        let mut too_long = EntryBundle::encode(&many[..256]).unwrap();
        too_long.extend_from_slice(&[0, 0]);
        assert_eq!(EntryBundle::decode(&too_long).unwrap_err(), BundleError::TooManyEntries);
    }
}
