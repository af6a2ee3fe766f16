//! Packs: sealed entry bundles compressed with zstd.
//!
//! A pack `pack-<first>` holds whole 256-entry bundles from entry `first`
//! on, each compressed on its own as one zstd frame. In pack version 3
//! (written now) a frame holds each entry's length and bytes only, and
//! carries zstd's checksum of its content; the records' own checksums,
//! 4 bytes an entry that do not compress, are recomputed on reading, so
//! every reader gets the very records the segment held (length, checksum
//! over the entry's index, data). In version 2 (still read) a frame holds
//! those records as they are. A table after the header gives each
//! frame's position, length and CRC-32C, so any entry is one read and one
//! frame's decompression away. Packs are written once (temporary name,
//! sync, rename, directory sync) and never change; pruning deletes them
//! or writes a shorter one, of the same version, under a new name.
//!
//! Deliberately not here: when to pack (compaction) and raw entries.

use crate::error::{IoContext, LedgerError, Result};
use crate::format::{self, be_u64, RECORD_HEADER_LEN};
use crate::storage::{Storage, StorageFile};
use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub(crate) const PACK_PREFIX: &str = "pack-";
pub(crate) const PACK_MAGIC: [u8; 8] = *b"STLPACKS";
pub(crate) const PACK_HEADER_LEN: u64 = 32;
pub(crate) const TABLE_ENTRY_LEN: u64 = 16;
pub(crate) const BUNDLE: u64 = 256;
/// Largest bundle: 256 records of the largest entry.
const MAX_BUNDLE_BYTES: usize = 256 * (RECORD_HEADER_LEN as usize + format::MAX_ENTRY);
/// Bytes before each entry's data in a version 3 frame: its length.
const BARE_HEADER_LEN: usize = 4;

/// The format version of a pack: what its frames hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PackVersion {
    /// Each bundle's records as the segments store them (length,
    /// checksum, bytes). Releases before version 3 read only these.
    V2,
    /// Each entry's length and bytes, without the record checksum (the
    /// frame's CRC-32C, zstd's content checksum, which this version
    /// requires, and the entries' hashes in the tree check the bytes).
    #[default]
    V3,
}

impl PackVersion {
    /// The version number in the pack header.
    pub fn number(self) -> u32 {
        match self {
            PackVersion::V2 => 2,
            PackVersion::V3 => 3,
        }
    }

    fn from_number(n: u32) -> Option<Self> {
        match n {
            2 => Some(PackVersion::V2),
            3 => Some(PackVersion::V3),
            _ => None,
        }
    }
}

/// Where one bundle's frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

/// An open pack.
pub(crate) struct Pack {
    pub(crate) name: String,
    pub(crate) file: Arc<dyn StorageFile>,
    /// Index of its first entry (a multiple of 256).
    pub(crate) first: u64,
    pub(crate) version: PackVersion,
    pub(crate) frames: Vec<Frame>,
}

impl Pack {
    /// One past its last entry.
    pub(crate) fn end(&self) -> u64 {
        self.first + BUNDLE * self.frames.len() as u64
    }

    /// The compressed bytes of bundle number `k` of this pack, checked
    /// against their CRC.
    pub(crate) fn frame(&self, k: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_frame(k, &mut buf)?;
        Ok(buf)
    }

    /// [`Pack::frame`] into `buf` (its memory reused).
    pub(crate) fn read_frame(&self, k: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let f = self.frames[k];
        buf.clear();
        buf.resize(f.len as usize, 0);
        self.file.read_exact_at(buf, f.offset)?;
        let crc = crc32c::crc32c(buf);
        if crc != f.crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "bundle {} (byte {} of {}): checksum mismatch (stored {:08x}, computed {crc:08x})",
                    self.first / BUNDLE + k as u64,
                    f.offset,
                    self.name,
                    f.crc
                ),
            ));
        }
        Ok(())
    }

    /// The records of bundle number `k` (entries `first + 256k ..`), as
    /// the segments stored them.
    pub(crate) fn records(&self, k: usize) -> io::Result<Vec<u8>> {
        let frame = self.frame(k)?;
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        UNPACKER.with(|u| match &mut *u.borrow_mut() {
            Some(u) => self.decode(k, &frame, u, &mut scratch, &mut out),
            none => self.decode(k, &frame, none.insert(Unpacker::new()?), &mut scratch, &mut out),
        })?;
        Ok(out)
    }

    /// The records of bundle number `k` from its frame (as
    /// [`Pack::read_frame`] read it) into `out`, `scratch` holding what
    /// the frame decompresses to meanwhile.
    pub(crate) fn decode(
        &self,
        k: usize,
        frame: &[u8],
        unpacker: &mut Unpacker,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let bundle_first = self.first + k as u64 * BUNDLE;
        decode_frame(self.version, bundle_first, frame, unpacker, scratch, out)
    }

    pub(crate) fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
}

/// The name of the pack whose first entry is `first`.
pub(crate) fn pack_name(first: u64) -> String {
    format!("{PACK_PREFIX}{first:016x}")
}

thread_local! {
    /// Each reading thread's decompression context, made on first use:
    /// one per frame would cost more than a small frame's decompression.
    static UNPACKER: RefCell<Option<Unpacker>> = const { RefCell::new(None) };
}

/// Decompresses frames, reusing one zstd context and the caller's buffers.
pub(crate) struct Unpacker {
    context: zstd::bulk::Decompressor<'static>,
}

impl Unpacker {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            context: zstd::bulk::Decompressor::new()?,
        })
    }

    /// The records `frame` holds, into `out` (replacing what it held).
    /// Memory is reserved for the size the frame declares, refused above
    /// the largest bundle; a frame that declares none (the format does
    /// not require it) may fill up to the largest bundle.
    pub(crate) fn unpack(&mut self, frame: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let declared = zstd::zstd_safe::get_frame_content_size(frame)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not a zstd frame"))?;
        let want = match declared {
            Some(n) if n > MAX_BUNDLE_BYTES as u64 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame declares {n} bytes, more than a bundle can hold ({MAX_BUNDLE_BYTES})"),
                ))
            }
            Some(n) => n as usize,
            None => MAX_BUNDLE_BYTES,
        };
        out.clear();
        out.reserve(want);
        self.context.decompress_to_buffer(frame, out)?;
        Ok(())
    }
}

/// A bundle's records (of entries `first..`) from its frame in a pack of
/// `version`, into `out`; `scratch` holds the decompressed frame.
pub(crate) fn decode_frame(
    version: PackVersion,
    first: u64,
    frame: &[u8],
    unpacker: &mut Unpacker,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    match version {
        PackVersion::V2 => unpack_frame(version, frame, unpacker, out),
        PackVersion::V3 => {
            unpack_frame(version, frame, unpacker, scratch)?;
            restore_records(scratch, first, out)
        }
    }
}

/// What a frame of a pack of `version` decompresses to, into `out`: the
/// bundle's records (version 2), or each entry's length and bytes
/// (version 3, whose frames must carry a content checksum).
pub(crate) fn unpack_frame(
    version: PackVersion,
    frame: &[u8],
    unpacker: &mut Unpacker,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    // Frame header descriptor (RFC 8878, 3.1.1.1.1), bit 2:
    // Content_Checksum_flag. Without it nothing would check the bytes of
    // a version 3 frame once decompressed.
    if version == PackVersion::V3 && (frame.len() < 5 || frame[4] & 0x04 == 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the frame carries no content checksum, which pack version 3 requires",
        ));
    }
    unpacker.unpack(frame, out)
}

/// Whether `records` are exactly the 256 records of entries `first..`,
/// each checked against its checksum for its index; for version 3, each
/// entry's length and bytes (what its frame holds) into `bare` meanwhile.
fn check_bundle(version: PackVersion, records: &[u8], first: u64, bare: &mut Vec<u8>) -> bool {
    bare.clear();
    if version == PackVersion::V3 {
        bare.reserve(records.len());
    }
    let mut at = 0usize;
    for index in first..first + BUNDLE {
        let Ok(data) = format::decode_record(&records[at..], index) else {
            return false;
        };
        if version == PackVersion::V3 {
            bare.extend_from_slice(&records[at..at + BARE_HEADER_LEN]);
            bare.extend_from_slice(data);
        }
        at += RECORD_HEADER_LEN as usize + data.len();
    }
    at == records.len()
}

/// The records of a whole bundle (entries `first..first + 256`) from
/// their lengths and bytes `bare`, each with its checksum recomputed for
/// its index, into `out`. Refuses a length over the largest entry, an
/// entry running past the end, fewer or more than 256 entries.
pub(crate) fn restore_records(bare: &[u8], first: u64, out: &mut Vec<u8>) -> io::Result<()> {
    let bad = |detail: String| io::Error::new(io::ErrorKind::InvalidData, detail);
    out.clear();
    out.reserve(bare.len() + BUNDLE as usize * (RECORD_HEADER_LEN as usize - BARE_HEADER_LEN));
    let mut at = 0usize;
    for index in first..first + BUNDLE {
        let Some(header) = bare.get(at..at + BARE_HEADER_LEN) else {
            return Err(bad(format!(
                "entry {index}: the bundle ends at byte {} of its {} decompressed bytes, before the entry's length",
                at,
                bare.len()
            )));
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > format::MAX_ENTRY {
            return Err(bad(format!(
                "entry {index}: length {len} (byte {at} of the decompressed bundle) is more than {}",
                format::MAX_ENTRY
            )));
        }
        let data = at + BARE_HEADER_LEN;
        let Some(entry) = bare.get(data..data + len) else {
            return Err(bad(format!(
                "entry {index}: its {len} bytes from byte {data} run past the end of the decompressed bundle ({} bytes)",
                bare.len()
            )));
        };
        format::encode_record(out, entry, index);
        at = data + len;
    }
    if at != bare.len() {
        return Err(bad(format!(
            "{} bytes after the bundle's last entry ({}), from byte {at} of the decompressed bundle",
            bare.len() - at,
            first + BUNDLE - 1
        )));
    }
    Ok(())
}

/// What [`Packer::pack`] made of a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packed {
    /// The frame, checked.
    Frame,
    /// The records are not the 256 records of the bundle's entries, each
    /// with its checksum: nothing was compressed.
    BadRecords,
    /// The frame does not decompress to what was compressed.
    BadFrame,
}

/// Compresses bundles (one zstd context for many) into the frames of a
/// pack of one version, and checks each frame by decompressing it again.
pub(crate) struct Packer {
    version: PackVersion,
    context: zstd::bulk::Compressor<'static>,
    unpacker: Unpacker,
    bare: Vec<u8>,
    scratch: Vec<u8>,
}

impl Packer {
    pub(crate) fn new(level: i32, version: PackVersion) -> io::Result<Self> {
        let mut context = zstd::bulk::Compressor::new(level)?;
        if version == PackVersion::V3 {
            context.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        }
        Ok(Self {
            version,
            context,
            unpacker: Unpacker::new()?,
            bare: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The records of one bundle (entries `first..`) compressed into
    /// `frame`, once they are checked and the frame is.
    ///
    /// The records are checked first, each against its checksum for its
    /// index. The frame is then decompressed as readers do (zstd's content
    /// checksum checked, in version 3) and compared byte for byte with
    /// what was compressed. A version 3 reader rebuilds each record from
    /// its length and bytes with the checksum for its index: from records
    /// that carry exactly those checksums, the very records. So a frame
    /// is accepted only if it decodes to exactly `records`.
    pub(crate) fn pack(&mut self, records: &[u8], first: u64, frame: &mut Vec<u8>) -> io::Result<Packed> {
        if !check_bundle(self.version, records, first, &mut self.bare) {
            return Ok(Packed::BadRecords);
        }
        let input = match self.version {
            PackVersion::V2 => records,
            PackVersion::V3 => &self.bare[..],
        };
        frame.clear();
        frame.reserve(zstd::zstd_safe::compress_bound(input.len()));
        self.context.compress_to_buffer(input, frame)?;
        #[cfg(test)]
        tests::TAMPER.with(|t| t.get().map(|tamper| tamper(frame)));
        // Never trust a frame that was not read back whole, as readers
        // will read it.
        match unpack_frame(self.version, frame, &mut self.unpacker, &mut self.scratch) {
            Ok(()) if self.scratch == input => Ok(Packed::Frame),
            _ => Ok(Packed::BadFrame),
        }
    }
}

/// Header and table of a pack of `version` holding `frames`.
pub(crate) fn encode_header(version: PackVersion, first: u64, frames: &[Frame]) -> Vec<u8> {
    let mut table = Vec::with_capacity(frames.len() * TABLE_ENTRY_LEN as usize);
    for f in frames {
        table.extend_from_slice(&f.offset.to_be_bytes());
        table.extend_from_slice(&f.len.to_be_bytes());
        table.extend_from_slice(&f.crc.to_be_bytes());
    }
    let mut out = Vec::with_capacity(PACK_HEADER_LEN as usize + table.len());
    out.extend_from_slice(&PACK_MAGIC);
    out.extend_from_slice(&version.number().to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&first.to_be_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&table).to_be_bytes());
    out.extend_from_slice(&table);
    out
}

/// Where the first frame of a pack of `bundles` bundles starts.
pub(crate) fn frames_start(bundles: usize) -> u64 {
    PACK_HEADER_LEN + TABLE_ENTRY_LEN * bundles as u64
}

/// Read and check a pack's header and table.
pub(crate) fn open_pack(name: String, file: Arc<dyn StorageFile>, path: &Path) -> Result<Pack> {
    let corrupt = |detail: String| LedgerError::Corrupt {
        file: path.to_path_buf(),
        detail,
    };
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0).ctx("read header", path)?;
    if h[..8] != PACK_MAGIC {
        return Err(corrupt("bad magic, expected STLPACKS".into()));
    }
    let number = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let Some(version) = PackVersion::from_number(number) else {
        return Err(corrupt(format!(
            "pack format version {number} (bytes 8..12) is not supported (2 and 3 are)"
        )));
    };
    if h[12..16] != [0; 4] {
        return Err(corrupt("reserved header bytes 12..16 are not zero".into()));
    }
    let first = be_u64(&h[16..24]);
    let count = u32::from_be_bytes([h[24], h[25], h[26], h[27]]) as usize;
    let table_crc = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
    let len = file.len().ctx("stat", path)?;
    if frames_start(count) > len || !first.is_multiple_of(BUNDLE) {
        return Err(corrupt(format!(
            "header says {count} bundles from entry {first}, which does not fit its {len} bytes"
        )));
    }
    let mut table = vec![0u8; count * TABLE_ENTRY_LEN as usize];
    file.read_exact_at(&mut table, PACK_HEADER_LEN).ctx("read", path)?;
    let crc = crc32c::crc32c(&table);
    if crc != table_crc {
        return Err(corrupt(format!(
            "bundle table checksum mismatch (stored {table_crc:08x}, computed {crc:08x})"
        )));
    }
    let frames: Vec<Frame> = table
        .chunks(TABLE_ENTRY_LEN as usize)
        .map(|t| Frame {
            offset: be_u64(&t[..8]),
            len: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            crc: u32::from_be_bytes([t[12], t[13], t[14], t[15]]),
        })
        .collect();
    if let Some((k, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.offset < frames_start(count) || f.offset + f.len as u64 > len)
    {
        return Err(corrupt(format!(
            "bundle {} is said to be at bytes {}..{}, outside the file ({len} bytes)",
            first / BUNDLE + k as u64,
            f.offset,
            f.offset + f.len as u64
        )));
    }
    Ok(Pack {
        name,
        file,
        first,
        version,
        frames,
    })
}

/// Open the packs of `dir`, by first entry.
pub(crate) fn load_packs(
    storage: &dyn Storage,
    dir: &Path,
    open: &dyn Fn(&Path) -> io::Result<Arc<dyn StorageFile>>,
) -> Result<Vec<Arc<Pack>>> {
    let mut packs = Vec::new();
    for name in storage.list_files(dir).ctx("list", dir)? {
        let Some(hex) = name.strip_prefix(PACK_PREFIX) else {
            continue;
        };
        let Ok(first) = u64::from_str_radix(hex, 16) else {
            continue;
        };
        if hex.len() != 16 {
            continue;
        }
        let path = dir.join(&name);
        let file = open(&path).ctx("open", &path)?;
        let pack = open_pack(name, file, &path)?;
        if pack.first != first {
            return Err(LedgerError::Corrupt {
                file: path,
                detail: format!("header says its first entry is {}, its name says {first}", pack.first),
            });
        }
        packs.push(Arc::new(pack));
    }
    packs.sort_by_key(|p| p.first);
    Ok(packs)
}

/// Where entries are packed: the pack serving entry `index` (the one with
/// the largest first entry at or below it, if it holds it).
pub(crate) fn pack_for(packs: &[Arc<Pack>], index: u64) -> Option<&Arc<Pack>> {
    let i = packs.partition_point(|p| p.first <= index);
    packs[..i].last().filter(|p| index < p.end())
}

/// One past the last entry packed without a gap from `from` on.
pub(crate) fn packed_end(packs: &[Arc<Pack>], from: u64) -> u64 {
    let mut end = from;
    while let Some(p) = pack_for(packs, end) {
        end = p.end();
    }
    end
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::cell::Cell;

    /// A change to a frame.
    pub(crate) type Tamper = fn(&mut Vec<u8>);

    thread_local! {
        /// Changes every frame [`Packer::pack`] makes on this thread once
        /// compressed, before it is checked: a compression gone wrong.
        pub(crate) static TAMPER: Cell<Option<Tamper>> = const { Cell::new(None) };
    }

    /// [`TAMPER`] set to `tamper` until dropped.
    pub(crate) struct Tampering;

    impl Tampering {
        pub(crate) fn new(tamper: Tamper) -> Self {
            TAMPER.with(|t| t.set(Some(tamper)));
            Tampering
        }
    }

    impl Drop for Tampering {
        fn drop(&mut self) {
            TAMPER.with(|t| t.set(None));
        }
    }

    /// A whole frame of `content` with its content checksum, as a packer
    /// would make it.
    pub(crate) fn checked_frame(content: &[u8]) -> Vec<u8> {
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        c.compress(content).unwrap()
    }

    /// A frame of other content, whole and with its content checksum: it
    /// decompresses without an error, to the wrong bytes.
    fn other_content(frame: &mut Vec<u8>) {
        let mut content = zstd::decode_all(&frame[..]).unwrap();
        let last = content.len() - 1;
        content[last] ^= 0x01;
        *frame = checked_frame(&content);
    }

    /// A bundle's records without their checksums: each entry's length
    /// and bytes (what a version 3 frame holds), into `out`; written apart
    /// from the packer's own stripping, as the tests' expectation.
    fn strip_records(records: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let mut at = 0;
        while at + RECORD_HEADER_LEN as usize <= records.len() {
            let len = u32::from_be_bytes([records[at], records[at + 1], records[at + 2], records[at + 3]]) as usize;
            let data = at + RECORD_HEADER_LEN as usize;
            let end = (data + len).min(records.len());
            out.extend_from_slice(&records[at..at + BARE_HEADER_LEN]);
            out.extend_from_slice(&records[data..end]);
            at = end;
        }
    }

    /// The same content without a content checksum.
    fn no_checksum(frame: &mut Vec<u8>) {
        let content = zstd::decode_all(&frame[..]).unwrap();
        *frame = zstd::bulk::compress(&content, 1).unwrap();
    }

    #[test]
    fn a_frame_that_does_not_decompress_to_its_records_is_refused() {
        let first = 2 * BUNDLE;
        let records = bundle_records(first);
        let tampers: [(&str, Tamper); 6] = [
            ("a byte of the compressed block", |f| {
                let at = f.len() / 2;
                f[at] ^= 0x20
            }),
            ("the content checksum", |f| {
                let last = f.len() - 1;
                f[last] ^= 0x01
            }),
            ("cut short", |f| f.truncate(f.len() - 1)),
            ("a byte more", |f| f.push(0)),
            ("other content", other_content),
            ("no content checksum", no_checksum),
        ];
        for version in [PackVersion::V2, PackVersion::V3] {
            let mut packer = Packer::new(1, version).unwrap();
            let mut frame = Vec::new();
            for (what, tamper) in tampers {
                let _tampering = Tampering::new(tamper);
                let packed = packer.pack(&records, first, &mut frame).unwrap();
                // Version 2 frames need no content checksum.
                let refused = !(version == PackVersion::V2 && what == "no content checksum");
                if refused {
                    assert_eq!(packed, Packed::BadFrame, "{version:?}, {what}");
                } else {
                    assert_eq!(packed, Packed::Frame, "{version:?}, {what}");
                }
            }
            assert_eq!(packer.pack(&records, first, &mut frame).unwrap(), Packed::Frame);
            let (mut unpacker, mut scratch, mut out) = (Unpacker::new().unwrap(), Vec::new(), Vec::new());
            decode_frame(version, first, &frame, &mut unpacker, &mut scratch, &mut out).unwrap();
            assert_eq!(out, records, "{version:?}");
        }
    }

    #[test]
    fn records_that_are_not_the_bundle_are_refused_before_compression() {
        let first = BUNDLE;
        let records = bundle_records(first);
        for version in [PackVersion::V2, PackVersion::V3] {
            let mut packer = Packer::new(1, version).unwrap();
            let mut frame = vec![7];
            let mut refused = |records: &[u8], first: u64, what: &str| {
                assert_eq!(
                    packer.pack(records, first, &mut frame).unwrap(),
                    Packed::BadRecords,
                    "{version:?}, {what}"
                );
            };
            // A byte of entry 400's data.
            let mut damaged = records.clone();
            let at = (first..400).map(|i| 8 + (i % 300) as usize).sum::<usize>() + 8 + 3;
            damaged[at] ^= 0x01;
            refused(&damaged, first, "damaged");
            refused(&records, first + BUNDLE, "another bundle's place");
            refused(&records[..records.len() - 1], first, "cut short");
            let mut more = records.clone();
            more.extend_from_slice(&records[..8]);
            refused(&more, first, "bytes after the last record");
            let one_short = records.len() - 8 - (511 % 300) as usize;
            refused(&records[..one_short], first, "a record less");
            refused(&[], first, "none");
            assert_eq!(packer.pack(&records, first, &mut frame).unwrap(), Packed::Frame);
        }
    }

    #[test]
    fn frames_unpack_with_or_without_a_declared_size_and_never_beyond_a_bundle() {
        let records = bundle_records(0);
        let mut unpacker = Unpacker::new().unwrap();
        let mut out = vec![1, 2, 3];

        // As compaction writes them: the size is declared.
        let mut packer = Packer::new(3, PackVersion::V2).unwrap();
        let mut frame = Vec::new();
        assert_eq!(packer.pack(&records, 0, &mut frame).unwrap(), Packed::Frame);
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&frame).ok(),
            Some(Some(records.len() as u64))
        );
        unpacker.unpack(&frame, &mut out).unwrap();
        assert_eq!(out, records);

        // A streamed frame declares none; it still unpacks, into the same buffer.
        let streamed = zstd::stream::encode_all(&records[..1000], 3).unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&streamed).ok(), Some(None));
        unpacker.unpack(&streamed, &mut out).unwrap();
        assert_eq!(out, records[..1000]);

        // One byte more than the largest bundle is refused before any
        // memory is reserved for it.
        let big = vec![0u8; MAX_BUNDLE_BYTES + 1];
        let frame = zstd::bulk::compress(&big, 1).unwrap();
        let e = unpacker.unpack(&frame, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .contains(&format!("declares {} bytes", MAX_BUNDLE_BYTES + 1)),
            "{e}"
        );

        // Not a frame at all.
        let e = unpacker.unpack(b"not zstd", &mut out).unwrap_err();
        assert!(e.to_string().contains("not a zstd frame"), "{e}");
    }

    /// Records of entries `first..first + 256`, built independently of
    /// the pack code: entry `i` is `i mod 300` bytes.
    fn bundle_records(first: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for i in first..first + BUNDLE {
            let data: Vec<u8> = (0..i % 300).map(|j| (i + j) as u8).collect();
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(&crate::format::record_crc(&data, i).to_be_bytes());
            out.extend_from_slice(&data);
        }
        out
    }

    #[test]
    fn version_3_frames_leave_out_the_record_checksums_and_rebuild_them() {
        let first = 3 * BUNDLE;
        let records = bundle_records(first);
        let mut packer = Packer::new(3, PackVersion::V3).unwrap();
        let mut frame = Vec::new();
        assert_eq!(packer.pack(&records, first, &mut frame).unwrap(), Packed::Frame);
        assert_ne!(frame[4] & 0x04, 0, "content checksum flag");
        // The frame holds lengths and bytes only: 4 bytes less an entry.
        let bare = zstd::decode_all(&frame[..]).unwrap();
        assert_eq!(bare.len(), records.len() - 4 * BUNDLE as usize);
        let mut at = 0;
        for i in first..first + BUNDLE {
            let len = u32::from_be_bytes(bare[at..at + 4].try_into().unwrap()) as usize;
            assert_eq!(len as u64, i % 300);
            at += 4 + len;
        }
        assert_eq!(at, bare.len());
        let (mut unpacker, mut scratch, mut out) = (Unpacker::new().unwrap(), Vec::new(), Vec::new());
        decode_frame(PackVersion::V3, first, &frame, &mut unpacker, &mut scratch, &mut out).unwrap();
        assert_eq!(out, records);
        // Decoded as another bundle, every checksum is for that bundle's
        // indexes: the records differ.
        decode_frame(
            PackVersion::V3,
            first + BUNDLE,
            &frame,
            &mut unpacker,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        assert_ne!(out, records);
        // A frame packed for the wrong place is caught at packing.
        assert_ne!(
            packer.pack(&bundle_records(first), 0, &mut frame).unwrap(),
            Packed::Frame
        );
    }

    #[test]
    fn version_3_refuses_frames_without_a_content_checksum_or_whole_entries() {
        let first = BUNDLE;
        let records = bundle_records(first);
        let mut bare = Vec::new();
        strip_records(&records, &mut bare);
        let (mut unpacker, mut scratch, mut out) = (Unpacker::new().unwrap(), Vec::new(), Vec::new());
        let decode = |bytes: &[u8], checksum: bool, u: &mut Unpacker, s: &mut Vec<u8>, o: &mut Vec<u8>| {
            let mut c = zstd::bulk::Compressor::new(3).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(checksum))
                .unwrap();
            let frame = c.compress(bytes).unwrap();
            decode_frame(PackVersion::V3, first, &frame, u, s, o).map_err(|e| e.to_string())
        };
        decode(&bare, true, &mut unpacker, &mut scratch, &mut out).unwrap();
        assert_eq!(out, records);

        let e = decode(&bare, false, &mut unpacker, &mut scratch, &mut out).unwrap_err();
        assert!(e.contains("no content checksum"), "{e}");
        // The same frame is fine as version 2, which does not need it.
        let frame = zstd::bulk::compress(&records, 3).unwrap();
        decode_frame(PackVersion::V2, first, &frame, &mut unpacker, &mut scratch, &mut out).unwrap();
        assert_eq!(out, records);

        // One entry short: entry 511's length is missing.
        let last_len = 4 + (511 % 300) as usize;
        let e = decode(
            &bare[..bare.len() - last_len],
            true,
            &mut unpacker,
            &mut scratch,
            &mut out,
        )
        .unwrap_err();
        assert!(e.contains("entry 511: the bundle ends at byte"), "{e}");
        // Entry 511 cut short.
        let e = decode(&bare[..bare.len() - 1], true, &mut unpacker, &mut scratch, &mut out).unwrap_err();
        assert!(e.contains("entry 511: its 211 bytes"), "{e}");
        // A byte after the last entry.
        let mut more = bare.clone();
        more.push(0);
        let e = decode(&more, true, &mut unpacker, &mut scratch, &mut out).unwrap_err();
        assert!(e.contains("1 bytes after the bundle's last entry (511)"), "{e}");
        // A length over the largest entry, in entry 256.
        let mut long = bare.clone();
        long[..4].copy_from_slice(&65_536u32.to_be_bytes());
        let e = decode(&long, true, &mut unpacker, &mut scratch, &mut out).unwrap_err();
        assert!(
            e.contains("entry 256: length 65536 (byte 0 of the decompressed bundle)"),
            "{e}"
        );
    }
}
