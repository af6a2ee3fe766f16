//! Partition files: records split by the bits of their key hash, written in
//! checksummed blocks to anonymous temporary files (see `docs/data.md`).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

use super::plan::{Plan, SidePlan};
use super::record::{self, Spans, HEADER};
use super::store::{Entry, Store};
use super::{Budget, LINES_PER_DUPLICATE};
use crate::{DataError, Duplicate};

/// The first bytes of every partition file.
pub(crate) const MAGIC: &[u8; 8] = b"SLTPART1";

/// A block is written once its payload reaches this size.
const BLOCK: usize = 64 << 10;

/// Hash bits that pick a partition: the first split, then each re-split.
pub(crate) const FIRST_BITS: u32 = 6;
const NEXT_BITS: u32 = 4;

fn temp_error(temp: &Path, err: &std::io::Error) -> DataError {
    DataError::io(format!("temporary file in {}", temp.display()), err)
}

/// One partition file being written, then read.
pub(crate) struct PartFile {
    file: File,
    buf: Vec<u8>,
    /// Payload bytes written (blocks' contents, without their headers).
    pub bytes: u64,
    pub records: u64,
}

impl PartFile {
    pub fn create(temp: &Path) -> Result<PartFile, DataError> {
        let mut file = tempfile::tempfile_in(temp).map_err(|e| temp_error(temp, &e))?;
        file.write_all(MAGIC).map_err(|e| temp_error(temp, &e))?;
        Ok(PartFile {
            file,
            // A block and a typical record: no doubling past the block size.
            buf: Vec::with_capacity(BLOCK + (4 << 10)),
            bytes: 0,
            records: 0,
        })
    }

    /// Appends one record (header included).
    pub fn push(&mut self, rec: &[u8], temp: &Path) -> Result<(), DataError> {
        self.buf.extend_from_slice(rec);
        self.records += 1;
        if self.buf.len() >= BLOCK {
            self.flush_block(temp)?;
        }
        Ok(())
    }

    /// Writes the last block and frees the buffer.
    pub fn finish(&mut self, temp: &Path) -> Result<(), DataError> {
        self.flush_block(temp)?;
        self.buf = Vec::new();
        Ok(())
    }

    fn flush_block(&mut self, temp: &Path) -> Result<(), DataError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut head = [0u8; 12];
        head[..4].copy_from_slice(&(self.buf.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&xxh3_64(&self.buf).to_le_bytes());
        self.file.write_all(&head).map_err(|e| temp_error(temp, &e))?;
        self.file.write_all(&self.buf).map_err(|e| temp_error(temp, &e))?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Reads the file back, block by block, checking each checksum.
    fn reader<'f>(&'f mut self, temp: &'f Path) -> Result<BlockReader<'f>, DataError> {
        self.file.seek(SeekFrom::Start(0)).map_err(|e| temp_error(temp, &e))?;
        let mut reader = BlockReader {
            file: BufReader::with_capacity(BLOCK, &mut self.file),
            temp,
            at: 0,
            left: self.bytes,
            block: Vec::new(),
        };
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(reader.damaged("not a partition file"));
        }
        Ok(reader)
    }

    /// The whole payload, for comparing in memory: one buffer per block,
    /// each read straight into place and checked there. Buffers of a
    /// block's size reuse the memory that partitions held in memory have
    /// freed, where one large buffer would be new memory.
    fn load(&mut self, temp: &Path) -> Result<Vec<Vec<u8>>, DataError> {
        let mut all = Vec::new();
        let mut reader = self.reader(temp)?;
        while reader.left > 0 {
            let (len, sum) = reader.block_header()?;
            let mut block = vec![0; len];
            reader.read_exact(&mut block)?;
            reader.check(&block, sum)?;
            all.push(block);
        }
        Ok(all)
    }
}

struct BlockReader<'f> {
    file: BufReader<&'f mut File>,
    temp: &'f Path,
    /// Byte offset in the file.
    at: u64,
    /// Payload bytes still expected.
    left: u64,
    block: Vec<u8>,
}

impl BlockReader<'_> {
    fn damaged(&self, what: &str) -> DataError {
        DataError::new(
            format!("temporary file in {}", self.temp.display()),
            format!("damaged partition file: {what}"),
        )
        .at_byte(self.at)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), DataError> {
        match self.file.read_exact(buf) {
            Ok(()) => {
                self.at += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.damaged("cut short")),
            Err(e) => Err(temp_error(self.temp, &e)),
        }
    }

    /// Reads a block's header: its payload length and checksum.
    fn block_header(&mut self) -> Result<(usize, u64), DataError> {
        let mut head = [0u8; 12];
        self.read_exact(&mut head)?;
        let (len, sum) = head.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as u64;
        let sum = u64::from_le_bytes(sum.try_into().map_err(|_| self.damaged("block header"))?);
        if len == 0 || len > self.left {
            return Err(self.damaged("block length out of range"));
        }
        Ok((len as usize, sum))
    }

    /// Checks a payload just read against its checksum.
    fn check(&mut self, payload: &[u8], sum: u64) -> Result<(), DataError> {
        if xxh3_64(payload) != sum {
            self.at -= payload.len() as u64;
            return Err(self.damaged("block checksum mismatch"));
        }
        self.left -= payload.len() as u64;
        Ok(())
    }

    /// Reads the next block into `self.block`; `false` after the last.
    fn next_block(&mut self) -> Result<bool, DataError> {
        if self.left == 0 {
            return Ok(false);
        }
        let (len, sum) = self.block_header()?;
        let mut block = std::mem::take(&mut self.block);
        block.resize(len, 0);
        let read = self.read_exact(&mut block).and_then(|()| self.check(&block, sum));
        self.block = block;
        read.map(|()| true)
    }
}

/// The partition files of one side at one level.
pub(crate) struct Partitions {
    temp: std::path::PathBuf,
    /// Hash bits consumed by the levels above.
    consumed: u32,
    bits: u32,
    pub files: Vec<PartFile>,
}

impl Partitions {
    pub fn create(temp: &Path, consumed: u32) -> Result<Partitions, DataError> {
        let bits = if consumed == 0 { FIRST_BITS } else { NEXT_BITS };
        let files = (0..1usize << bits)
            .map(|_| PartFile::create(temp))
            .collect::<Result<_, _>>()?;
        Ok(Partitions {
            temp: temp.to_path_buf(),
            consumed,
            bits,
            files,
        })
    }

    fn index(&self, hash: u64) -> usize {
        ((hash << self.consumed) >> (64 - self.bits)) as usize
    }

    /// Appends one record (header included).
    pub fn write(&mut self, hash: u64, rec: &[u8]) -> Result<(), DataError> {
        let i = self.index(hash);
        self.files[i].push(rec, &self.temp)
    }

    /// Writes the last blocks and frees the buffers.
    fn finish(&mut self) -> Result<(), DataError> {
        for f in &mut self.files {
            f.finish(&self.temp)?;
        }
        Ok(())
    }
}

/// What the partition reader hands to the comparison, in order.
pub(crate) enum Work {
    /// Both sides of a partition, sorted.
    Pair(Store, Store),
    /// One key on more rows than memory holds.
    OneKey(Vec<Option<String>>, Duplicate),
}

/// Memory a partition pair needs in memory: payloads and sort entries.
fn need(l: &PartFile, r: &PartFile) -> usize {
    let entry = std::mem::size_of::<Entry>() as u64;
    (l.bytes + r.bytes + (l.records + r.records) * entry) as usize
}

/// Loads and sorts the partitions in order, splitting those too big,
/// and hands each to `out`. Two pairs may be in memory at once (one
/// compared while the next is loaded), so a pair is loaded whole only
/// within half the budget.
pub(crate) fn join_partitions(
    out: &mut dyn FnMut(Work) -> Result<(), DataError>,
    plan: &Plan,
    budget: &Budget,
    temp: &Path,
    mut left: Partitions,
    mut right: Partitions,
) -> Result<(), DataError> {
    left.finish()?;
    right.finish()?;
    let consumed = left.consumed + left.bits;
    for (l, r) in left.files.into_iter().zip(right.files) {
        join_pair(out, plan, budget, temp, l, r, consumed)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn join_pair(
    out: &mut dyn FnMut(Work) -> Result<(), DataError>,
    plan: &Plan,
    budget: &Budget,
    temp: &Path,
    mut l: PartFile,
    mut r: PartFile,
    consumed: u32,
) -> Result<(), DataError> {
    if l.records + r.records == 0 {
        return Ok(());
    }
    if need(&l, &r) <= budget.limit / 2 || l.records + r.records <= 2 {
        // Each side loaded and sorted on its own thread.
        let load = |f: &mut PartFile, side: &SidePlan| -> Result<Store, DataError> {
            let mut store = Store::from_chunks(f.load(temp)?)
                .ok_or_else(|| DataError::new(&side.name, "internal error: a stored row does not decode"))?;
            store.sort();
            Ok(store)
        };
        let (ls, rs) = std::thread::scope(|s| {
            let ls = s.spawn(|| load(&mut l, &plan.left));
            let rs = load(&mut r, &plan.right);
            let ls = ls
                .join()
                .unwrap_or_else(|_| Err(DataError::new(&plan.left.name, "the partition reader failed")));
            (ls, rs)
        });
        return out(Work::Pair(ls?, rs?));
    }
    if consumed + NEXT_BITS > 64 {
        return one_key(out, plan, temp, l, r);
    }
    let mut ls = Partitions::create(temp, consumed)?;
    let mut rs = Partitions::create(temp, consumed)?;
    let lh = split(&mut l, &mut ls, temp)?;
    let rh = split(&mut r, &mut rs, temp)?;
    drop((l, r));
    if let Same(h) = lh.and(rh) {
        // Splitting again would not help: every record has one hash.
        ls.finish()?;
        rs.finish()?;
        let i = ls.index(h);
        let l = ls.files.swap_remove(i);
        let r = rs.files.swap_remove(i);
        return one_key(out, plan, temp, l, r);
    }
    join_partitions(out, plan, budget, temp, ls, rs)
}

/// The hashes of a partition's records.
#[derive(Clone, Copy)]
enum Hashes {
    None,
    Same(u64),
    Many,
}
use Hashes::{Many, Same};

impl Hashes {
    fn add(self, h: u64) -> Hashes {
        match self {
            Hashes::None => Same(h),
            Same(s) if s == h => self,
            _ => Many,
        }
    }

    fn and(self, other: Hashes) -> Hashes {
        match (self, other) {
            (Hashes::None, o) | (o, Hashes::None) => o,
            (Same(a), Same(b)) if a == b => Same(a),
            _ => Many,
        }
    }
}

/// Moves the records of `from` into the finer partitions `to`.
fn split(from: &mut PartFile, to: &mut Partitions, temp: &Path) -> Result<Hashes, DataError> {
    let mut hashes = Hashes::None;
    let mut reader = from.reader(temp)?;
    while reader.next_block()? {
        let block = &reader.block;
        let mut pos = 0;
        while pos < block.len() {
            let Some((hash, end)) = record::frame(block, pos) else {
                return Err(reader.damaged("record cut across blocks"));
            };
            to.write(hash, &block[pos..end])?;
            hashes = hashes.add(hash);
            pos = end;
        }
    }
    Ok(hashes)
}

/// A partition too big for the budget whose records all share one 64-bit
/// key hash: one key duplicated more often than memory holds (or keys whose
/// hashes collide, which is refused). Streamed, never loaded.
fn one_key(
    out: &mut dyn FnMut(Work) -> Result<(), DataError>,
    plan: &Plan,
    temp: &Path,
    mut l: PartFile,
    mut r: PartFile,
) -> Result<(), DataError> {
    let mut key: Option<Vec<u8>> = None;
    let mut original: Option<Vec<Option<String>>> = None;
    let mut lines = [Vec::new(), Vec::new()];
    let mut spans = Spans::default();
    for (n, (file, side)) in [(&mut l, &plan.left), (&mut r, &plan.right)].into_iter().enumerate() {
        let mut reader = file.reader(temp)?;
        while reader.next_block()? {
            let block = &reader.block;
            let mut pos = 0;
            while pos < block.len() {
                let (_, end) = record::frame(block, pos).ok_or_else(|| reader.damaged("record cut across blocks"))?;
                let v = record::view(&block[pos + HEADER..end]).ok_or_else(|| reader.damaged("record"))?;
                match &key {
                    None => {
                        key = Some(v.key.to_vec());
                        spans.split(&v, side.columns).ok_or_else(|| reader.damaged("record"))?;
                        original = Some(side.key.iter().map(|&k| spans.owned(&v, k)).collect());
                    }
                    Some(k) if k.as_slice() == v.key => {}
                    Some(_) => {
                        return Err(DataError::new(
                            &side.name,
                            "too many rows whose keys share one hash for the memory budget",
                        )
                        .at_line(v.line))
                    }
                }
                if lines[n].len() < LINES_PER_DUPLICATE {
                    lines[n].push(v.line);
                }
                pos = end;
            }
        }
    }
    let [left_lines, right_lines] = lines;
    let dup = Duplicate {
        left_rows: l.records,
        right_rows: r.records,
        left_lines,
        right_lines,
    };
    out(Work::OneKey(original.unwrap_or_default(), dup))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn filled(temp: &Path) -> PartFile {
        let mut f = PartFile::create(temp).expect("create");
        // Three blocks' worth of records.
        let mut rec = vec![0u8; HEADER + 1000];
        rec[8..HEADER].copy_from_slice(&1000u32.to_le_bytes());
        for i in 0..200u8 {
            rec[HEADER] = i;
            f.buf.extend_from_slice(&rec);
            if f.buf.len() >= BLOCK {
                f.flush_block(temp).expect("flush");
            }
        }
        f.flush_block(temp).expect("flush");
        f
    }

    #[test]
    fn blocks_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = filled(dir.path());
        let all = f.load(dir.path()).expect("load").concat();
        assert_eq!(all.len(), 200 * (HEADER + 1000));
        assert_eq!(all[(HEADER + 1000) * 77 + HEADER], 77);
    }

    #[test]
    fn a_flipped_byte_is_an_error_naming_its_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = filled(dir.path());
        // A byte inside the second block's payload.
        let second = 8 + 12 + 65 * (HEADER + 1000) as u64;
        let at = second + 12 + 500;
        let mut b = [0u8; 1];
        f.file.read_exact_at(&mut b, at).expect("read");
        f.file.write_all_at(&[b[0] ^ 1], at).expect("write");
        let err = f.load(dir.path()).expect_err("damaged");
        assert!(err.message.contains("checksum mismatch"), "{err}");
        assert_eq!(err.byte, Some(second + 12));
    }

    #[test]
    fn a_short_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = filled(dir.path());
        let len = f.file.metadata().expect("metadata").len();
        f.file.set_len(len - 1).expect("truncate");
        let err = f.load(dir.path()).expect_err("short");
        assert!(err.message.contains("cut short"), "{err}");
        // Cut at a block boundary: the reader expects more payload.
        f.file.set_len(8 + 12 + 65 * (HEADER + 1000) as u64).expect("truncate");
        let err = f.load(dir.path()).expect_err("short");
        assert!(err.message.contains("cut short"), "{err}");
    }
}
