//! Byte layouts of the ledger's files (format version 2, which reads
//! version 1), documented in docs/ledger-format.md. Encoders and decoders only; no I/O, so every
//! decoder can be fuzzed on arbitrary bytes.

/// Largest entry: the C2SP tlog-tiles entry bundle's u16 length prefix.
pub const MAX_ENTRY: usize = 65_535;
/// Version of the `entries`, `index` and `hashes` headers: their layout
/// did not change in format 2.
pub const VERSION: u32 = 1;
/// Version written in checkpoint slots and in the headers of the files
/// format 2 added (entry segments, packs).
pub const VERSION_2: u32 = 2;
pub const HEADER_LEN: u64 = 16;
/// Header of an entry segment file `entries-<first>` (format 2).
pub const SEGMENT_HEADER_LEN: u64 = 32;
pub const RECORD_HEADER_LEN: u64 = 8;
pub const SLOT_LEN: usize = 4096;
const SLOT_FIXED_V1: usize = 40;
const SLOT_FIXED: usize = 48;
/// Room for the signed note in a checkpoint slot.
pub const MAX_NOTE: usize = SLOT_LEN - SLOT_FIXED - 4;

pub const ENTRIES_MAGIC: [u8; 8] = *b"STLENTRS";
pub const INDEX_MAGIC: [u8; 8] = *b"STLINDEX";
pub const HASHES_MAGIC: [u8; 8] = *b"STLHASHS";
pub const SLOT_MAGIC: [u8; 8] = *b"STLCKPNT";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("bad magic {found:?}, expected {expected:?}")]
    Magic { found: [u8; 8], expected: [u8; 8] },
    #[error("format version {0} is not supported (this build reads versions 1 and 2)")]
    Version(u32),
    #[error("reserved header bytes 12..16 are not zero")]
    Reserved,
    #[error("{0} bytes is too short")]
    Short(usize),
    #[error("record length {0} exceeds the 65535-byte entry limit")]
    Length(u32),
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("note length {0} does not fit a checkpoint slot")]
    NoteLength(u32),
}

/// The 16-byte header every data file starts with: magic, version, zero.
pub fn encode_header(magic: [u8; 8]) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&VERSION.to_be_bytes());
    h
}

pub fn decode_header(bytes: &[u8], expected: [u8; 8]) -> Result<(), FormatError> {
    if check_magic_and_version(bytes, expected)? != VERSION {
        return Err(FormatError::Version(VERSION_2));
    }
    if bytes[12..16] != [0; 4] {
        return Err(FormatError::Reserved);
    }
    Ok(())
}

/// The first 12 bytes shared by file headers and checkpoint slots; returns
/// the version (1 or 2).
fn check_magic_and_version(bytes: &[u8], expected: [u8; 8]) -> Result<u32, FormatError> {
    if bytes.len() < HEADER_LEN as usize {
        return Err(FormatError::Short(bytes.len()));
    }
    let found: [u8; 8] = bytes[..8].try_into().map_err(|_| FormatError::Short(bytes.len()))?;
    if found != expected {
        return Err(FormatError::Magic { found, expected });
    }
    let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION && version != VERSION_2 {
        return Err(FormatError::Version(version));
    }
    Ok(version)
}

/// The header of entry segment `entries-<first>`: magic `STLENTRS`,
/// version 2, zero, the index of its first entry, and the log-wide offset
/// of that entry's record (which the index file stores).
pub fn encode_segment_header(first: u64, start: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&ENTRIES_MAGIC);
    h[8..12].copy_from_slice(&VERSION_2.to_be_bytes());
    h[16..24].copy_from_slice(&first.to_be_bytes());
    h[24..32].copy_from_slice(&start.to_be_bytes());
    h
}

/// Decode an entry segment header: `(first, start)`.
pub fn decode_segment_header(bytes: &[u8]) -> Result<(u64, u64), FormatError> {
    if bytes.len() < SEGMENT_HEADER_LEN as usize {
        return Err(FormatError::Short(bytes.len()));
    }
    if check_magic_and_version(bytes, ENTRIES_MAGIC)? != VERSION_2 {
        return Err(FormatError::Version(VERSION));
    }
    if bytes[12..16] != [0; 4] {
        return Err(FormatError::Reserved);
    }
    Ok((be_u64(&bytes[16..24]), be_u64(&bytes[24..32])))
}

/// The big-endian u64 in the first 8 bytes of `b` (zero-padded if short).
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// CRC-32C of an entry record: over its length, its bytes and its index, so
/// a record copied or moved to another position fails its check.
pub fn record_crc(data: &[u8], index: u64) -> u32 {
    seal_record_crc(unsealed_record_crc(data), index)
}

/// The part of [`record_crc`] that does not depend on the index, so the
/// ledger can checksum entries before it knows where they will go.
pub fn unsealed_record_crc(data: &[u8]) -> u32 {
    let len = (data.len() as u32).to_be_bytes();
    crc32c::crc32c_append(crc32c::crc32c(&len), data)
}

/// Finish an [`unsealed_record_crc`] with the entry's index.
pub fn seal_record_crc(unsealed: u32, index: u64) -> u32 {
    crc32c::crc32c_append(unsealed, &index.to_be_bytes())
}

/// Append one record (`len u32 BE ‖ crc u32 BE ‖ data`) to `out`.
pub fn encode_record(out: &mut Vec<u8>, data: &[u8], index: u64) {
    debug_assert!(data.len() <= MAX_ENTRY);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&record_crc(data, index).to_be_bytes());
    out.extend_from_slice(data);
}

/// Decode a record header: the entry length and stored checksum.
pub fn decode_record_header(bytes: &[u8]) -> Result<(u32, u32), FormatError> {
    if bytes.len() < RECORD_HEADER_LEN as usize {
        return Err(FormatError::Short(bytes.len()));
    }
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if len as usize > MAX_ENTRY {
        return Err(FormatError::Length(len));
    }
    Ok((len, u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])))
}

/// Check a whole record (header and data) read from disk as entry `index`;
/// returns the entry's bytes.
pub fn decode_record(bytes: &[u8], index: u64) -> Result<&[u8], FormatError> {
    let (len, stored) = decode_record_header(bytes)?;
    let end = RECORD_HEADER_LEN as usize + len as usize;
    if bytes.len() < end {
        return Err(FormatError::Short(bytes.len()));
    }
    let data = &bytes[RECORD_HEADER_LEN as usize..end];
    let computed = record_crc(data, index);
    if computed != stored {
        return Err(FormatError::Checksum { stored, computed });
    }
    Ok(data)
}

/// One of the two alternating slots of the checkpoint file: the latest
/// signed checkpoint and how far the derived files (index, hashes) are
/// known durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Increases by one with every write; the valid slot with the larger
    /// sequence is current.
    pub seq: u64,
    /// Entries whose index offsets and tree hashes were synced to disk.
    pub derived_size: u64,
    /// Byte offset in the entries file where entry `derived_size` starts.
    pub derived_offset: u64,
    /// Entries below this index are pruned (version 2; 0 in version 1).
    pub pruned_below: u64,
    /// The signed checkpoint note, verbatim.
    pub note: Vec<u8>,
}

impl Slot {
    pub fn encode(&self) -> Result<[u8; SLOT_LEN], FormatError> {
        if self.note.len() > MAX_NOTE {
            return Err(FormatError::NoteLength(self.note.len() as u32));
        }
        let mut b = [0u8; SLOT_LEN];
        b[..8].copy_from_slice(&SLOT_MAGIC);
        b[8..12].copy_from_slice(&VERSION_2.to_be_bytes());
        b[12..16].copy_from_slice(&(self.note.len() as u32).to_be_bytes());
        b[16..24].copy_from_slice(&self.seq.to_be_bytes());
        b[24..32].copy_from_slice(&self.derived_size.to_be_bytes());
        b[32..40].copy_from_slice(&self.derived_offset.to_be_bytes());
        b[40..48].copy_from_slice(&self.pruned_below.to_be_bytes());
        let end = SLOT_FIXED + self.note.len();
        b[SLOT_FIXED..end].copy_from_slice(&self.note);
        let crc = crc32c::crc32c(&b[..end]);
        b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(b)
    }

    /// Decode a version 2 slot, or a version 1 slot (no `pruned_below`).
    pub fn decode(b: &[u8]) -> Result<Slot, FormatError> {
        let version = check_magic_and_version(b, SLOT_MAGIC)?;
        let fixed = if version == VERSION { SLOT_FIXED_V1 } else { SLOT_FIXED };
        if b.len() < fixed + 4 {
            return Err(FormatError::Short(b.len()));
        }
        let u64_at = |i: usize| {
            u64::from_be_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let note_len = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        if note_len as usize > SLOT_LEN - fixed - 4 {
            return Err(FormatError::NoteLength(note_len));
        }
        let end = fixed + note_len as usize;
        if b.len() < end + 4 {
            return Err(FormatError::Short(b.len()));
        }
        let stored = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        let computed = crc32c::crc32c(&b[..end]);
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        Ok(Slot {
            seq: u64_at(16),
            derived_size: u64_at(24),
            derived_offset: u64_at(32),
            pruned_below: if version == VERSION { 0 } else { u64_at(40) },
            note: b[fixed..end].to_vec(),
        })
    }
}

/// Whether either slot of a checkpoint file's bytes is a valid version 1
/// slot (an earlier release would read it).
pub fn has_v1_slot(file: &[u8]) -> bool {
    (0..2).any(|i| {
        file.get(i * SLOT_LEN..(i + 1) * SLOT_LEN)
            .is_some_and(|b| b.get(8..12) == Some(&VERSION.to_be_bytes()[..]) && Slot::decode(b).is_ok())
    })
}

/// The current checkpoint slot of a checkpoint file's bytes: the valid slot
/// with the larger sequence number. The error says what is wrong with each.
pub fn newest_slot(file: &[u8]) -> Result<Slot, String> {
    let mut best: Option<Slot> = None;
    let mut errors = Vec::new();
    for i in 0..2 {
        let Some(bytes) = file.get(i * SLOT_LEN..(i + 1) * SLOT_LEN) else {
            errors.push(format!("slot {i}: file is only {} bytes", file.len()));
            continue;
        };
        match Slot::decode(bytes) {
            Ok(s) if best.as_ref().is_none_or(|b| s.seq > b.seq) => best = Some(s),
            Ok(_) => {}
            Err(e) => errors.push(format!("slot {i}: {e}")),
        }
    }
    best.ok_or_else(|| format!("no valid checkpoint slot ({})", errors.join("; ")))
}

/// The index a record that fails its check as entry `index` was written
/// for, if it is a nearby one: the record checksum covers the index, so a
/// record moved by a swap or a deletion still checks at its old place.
pub(crate) fn written_as(record: &[u8], index: u64) -> Option<u64> {
    (index.saturating_sub(16)..index + 16).find(|j| *j != index && decode_record(record, *j).is_ok())
}

/// What is wrong with `record`, read as entry `index`, which failed its
/// check with `error`; for the log's reads and its scrub, which see one
/// record at a time.
pub(crate) fn explain_bad_record(record: &[u8], index: u64, error: &FormatError) -> String {
    match written_as(record, index) {
        Some(j) => format!("it holds the record written as entry {j}: entries were moved, swapped or deleted"),
        None => match error {
            FormatError::Checksum { .. } => format!("{error}: its bytes were modified"),
            other => other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn record_round_trip_and_moved_record_fails() {
        let mut out = Vec::new();
        encode_record(&mut out, b"hello", 7);
        assert_eq!(decode_record(&out, 7).unwrap(), b"hello");
        assert!(matches!(decode_record(&out, 8), Err(FormatError::Checksum { .. })));
        out[9] ^= 1;
        assert!(matches!(decode_record(&out, 7), Err(FormatError::Checksum { .. })));
    }

    #[test]
    fn slot_round_trip_and_torn_slot_fails() {
        let s = Slot {
            seq: 3,
            derived_size: 10,
            derived_offset: 999,
            pruned_below: 256,
            note: b"note\n".to_vec(),
        };
        let b = s.encode().unwrap();
        assert_eq!(Slot::decode(&b).unwrap(), s);
        let mut torn = b;
        torn[49] = 0;
        assert!(Slot::decode(&torn).is_err());
        assert!(Slot::decode(&[0u8; SLOT_LEN]).is_err());
    }
}
