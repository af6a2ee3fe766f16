//! Reading segments: [`Segment::open`] checks the trailer and the section
//! table once; lookups then slice into the bytes without copying them.
//! Nothing here panics on bad bytes: a list or block that does not decode
//! yields what decoded before the fault.

use std::ops::Range;

use thiserror::Error;

use crate::{term_hash, varint, ColumnKind, BLOCK, MAGIC};

/// Why bytes are not a segment.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("segment of {0} bytes is shorter than its trailer")]
    TooShort(usize),
    #[error("segment does not end with the magic {expected:?}", expected = String::from_utf8_lossy(&MAGIC))]
    BadMagic,
    #[error("segment section {section} ends at byte {end}, outside {start}..{limit}")]
    BadSection {
        section: usize,
        start: u64,
        end: u64,
        limit: u64,
    },
    #[error("segment section {section} holds {got} bytes where {counts} need {want}")]
    BadSize {
        section: &'static str,
        got: u64,
        want: u64,
        counts: String,
    },
    #[error("segment column {column} has kind byte {kind}")]
    BadKind { column: usize, kind: u8 },
    #[error("segment field {field} starts at term {start}, after the next field's {next} or past {terms} terms")]
    BadFieldStart {
        field: usize,
        start: u32,
        next: u32,
        terms: u32,
    },
}

/// One segment over its bytes (a `Vec<u8>`, a mapped file, …).
pub struct Segment<B = Vec<u8>> {
    bytes: B,
    docs: u32,
    terms: u32,
    fields: u32,
    kinds: Vec<ColumnKind>,
    /// Byte range of each section, in the order of docs/index-segments.md.
    sections: Vec<Range<usize>>,
}

const TRAILER: usize = 24;
/// Sections besides the columns: postings, posting offsets, term bytes,
/// term ends, term hashes, field starts, column kinds.
const FIXED_SECTIONS: usize = 7;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl<B: AsRef<[u8]>> Segment<B> {
    pub fn open(bytes: B) -> Result<Segment<B>, FormatError> {
        let all = bytes.as_ref();
        let len = all.len();
        if len < TRAILER {
            return Err(FormatError::TooShort(len));
        }
        if all[len - 8..] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let t = len - TRAILER;
        let (docs, terms, fields, columns) = (
            u32_at(all, t),
            u32_at(all, t + 4),
            u32_at(all, t + 8),
            u32_at(all, t + 12),
        );
        let count = FIXED_SECTIONS + columns as usize;
        let table = count
            .checked_mul(8)
            .and_then(|n| t.checked_sub(n))
            .ok_or(FormatError::TooShort(len))?;
        let mut sections = Vec::with_capacity(count);
        let mut start = 0u64;
        for s in 0..count {
            let end = u64_at(all, table + s * 8);
            if end < start || end > table as u64 {
                return Err(FormatError::BadSection {
                    section: s,
                    start,
                    end,
                    limit: table as u64,
                });
            }
            sections.push(start as usize..end as usize);
            start = end;
        }
        let c = columns as usize;
        let size = |s: usize| sections[s].len() as u64;
        let counts = format!("{docs} documents, {terms} terms, {fields} fields, {columns} columns");
        let expect = |section: &'static str, got: u64, want: u64| {
            if got == want {
                Ok(())
            } else {
                Err(FormatError::BadSize {
                    section,
                    got,
                    want,
                    counts: counts.clone(),
                })
            }
        };
        expect("posting offsets", size(1), (u64::from(terms) + 1) * 8)?;
        expect("term ends", size(3 + c), u64::from(terms) * 4)?;
        expect("term hashes", size(4 + c), u64::from(terms) * 8)?;
        expect("field starts", size(5 + c), (u64::from(fields) + 1) * 4)?;
        expect("column kinds", size(6 + c), u64::from(columns) * 2)?;
        let blocks = u64::from(docs.div_ceil(BLOCK));
        for col in 0..c {
            if size(2 + col) < blocks * 24 {
                return Err(FormatError::BadSize {
                    section: "column",
                    got: size(2 + col),
                    want: blocks * 24,
                    counts: format!("{counts} (column {col})"),
                });
            }
        }
        let kinds_at = sections[6 + c].start;
        let mut kinds = Vec::with_capacity(c);
        for col in 0..c {
            kinds.push(match (all[kinds_at + 2 * col], all[kinds_at + 2 * col + 1]) {
                (0, _) => ColumnKind::Value,
                (1, f) => ColumnKind::Term(f),
                (kind, _) => return Err(FormatError::BadKind { column: col, kind }),
            });
        }
        let segment = Segment {
            bytes,
            docs,
            terms,
            fields,
            kinds,
            sections,
        };
        for f in 0..fields as usize {
            let (start, next) = (segment.field_start(f), segment.field_start(f + 1));
            if start > next || next > terms {
                return Err(FormatError::BadFieldStart {
                    field: f,
                    start,
                    next,
                    terms,
                });
            }
        }
        Ok(segment)
    }

    fn section(&self, s: usize) -> &[u8] {
        self.bytes.as_ref().get(self.sections[s].clone()).unwrap_or(&[])
    }

    fn column_count(&self) -> usize {
        self.kinds.len()
    }

    fn field_start(&self, f: usize) -> u32 {
        u32_at(self.section(5 + self.column_count()), f * 4)
    }

    pub fn docs(&self) -> u32 {
        self.docs
    }

    pub fn terms(&self) -> u32 {
        self.terms
    }

    /// One more than the greatest field number with terms.
    pub fn fields(&self) -> u32 {
        self.fields
    }

    /// Bytes of all terms together (the term-bytes section), which a
    /// merge holds in memory for its output's dictionary.
    pub fn term_bytes_len(&self) -> usize {
        self.section(2 + self.column_count()).len()
    }

    pub fn kinds(&self) -> &[ColumnKind] {
        &self.kinds
    }

    /// The numbers of `field`'s terms, in dictionary order.
    pub fn field_terms(&self, field: u8) -> Range<u32> {
        if u32::from(field) >= self.fields {
            return 0..0;
        }
        self.field_start(field as usize)..self.field_start(field as usize + 1)
    }

    /// The bytes of term `term` (without its field).
    pub fn term_bytes(&self, term: u32) -> &[u8] {
        let ends = self.section(3 + self.column_count());
        let start = term.checked_sub(1).map_or(0, |p| u32_at(ends, p as usize * 4)) as usize;
        let end = u32_at(ends, term as usize * 4) as usize;
        self.section(2 + self.column_count()).get(start..end).unwrap_or(&[])
    }

    pub fn term_hash_at(&self, term: u32) -> u64 {
        u64_at(self.section(4 + self.column_count()), term as usize * 8)
    }

    /// The number of `field`'s term `term`, if the segment has it.
    pub fn find(&self, field: u8, term: &[u8]) -> Option<u32> {
        let range = self.field_terms(field);
        let hash = term_hash(term);
        // First term whose hash is not less than `hash`.
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.term_hash_at(mid) < hash {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo..range.end)
            .take_while(|&t| self.term_hash_at(t) == hash)
            .find(|&t| self.term_bytes(t) == term)
    }

    /// The documents holding term `term`.
    pub fn postings(&self, term: u32) -> Postings<'_> {
        let offsets = self.section(1);
        let (start, end) = (
            u64_at(offsets, term as usize * 8) as usize,
            u64_at(offsets, term as usize * 8 + 8) as usize,
        );
        let list = self.section(0).get(start..end).unwrap_or(&[]);
        Postings::parse(list)
    }

    /// Column `column`, if there is one.
    pub fn column(&self, column: usize) -> Option<Column<'_>> {
        (column < self.column_count()).then(|| {
            let bytes = self.section(2 + column);
            let blocks = self.docs.div_ceil(BLOCK);
            let dir_at = bytes.len().saturating_sub(blocks as usize * 24);
            Column {
                data: &bytes[..dir_at],
                directory: &bytes[dir_at..],
                docs: self.docs,
            }
        })
    }
}

/// One posting list: ascending documents, in blocks of [`BLOCK`] that can
/// be decoded on their own (for reading backwards or skipping ahead).
#[derive(Clone, Copy)]
pub struct Postings<'a> {
    len: u32,
    /// (document before the block, offset in `data`) for blocks 1…
    skips: &'a [u8],
    data: &'a [u8],
}

impl<'a> Postings<'a> {
    fn parse(list: &'a [u8]) -> Postings<'a> {
        let mut at = 0;
        let len = varint::get(list, &mut at)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let skip_len = (len.div_ceil(BLOCK).saturating_sub(1) as usize) * 8;
        let skips = list.get(at..at + skip_len).unwrap_or(&[]);
        let data = list.get(at + skip_len..).unwrap_or(&[]);
        Postings { len, skips, data }
    }

    /// Documents in the list.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn blocks(&self) -> u32 {
        self.len.div_ceil(BLOCK)
    }

    /// The document before block `b` (`None` for the first block): every
    /// document of block `b` is greater.
    pub fn block_base(&self, b: u32) -> Option<u32> {
        let i = b.checked_sub(1)? as usize * 8;
        self.skips
            .get(i..i + 4)
            .and_then(|x| x.try_into().ok())
            .map(u32::from_le_bytes)
    }

    /// Append the documents of block `b` to `out`.
    pub fn block(&self, b: u32, out: &mut Vec<u32>) {
        if b >= self.blocks() {
            return;
        }
        let (mut doc, mut at) = match b.checked_sub(1) {
            None => (0u32, 0usize),
            Some(p) => (
                self.block_base(b).unwrap_or(0),
                u32_at(self.skips, p as usize * 8 + 4) as usize,
            ),
        };
        let n = (self.len - b * BLOCK).min(BLOCK);
        for _ in 0..n {
            let Some(delta) = varint::get(self.data, &mut at).and_then(|d| u32::try_from(d).ok()) else {
                return;
            };
            doc = doc.wrapping_add(delta);
            out.push(doc);
        }
    }

    /// The first block that may hold a document `>= target`.
    pub fn seek_block(&self, target: u32) -> u32 {
        // Blocks 1.. whose base is below `target` may be it: the last such.
        let (mut lo, mut hi) = (1, self.blocks());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.block_base(mid).is_some_and(|base| base < target) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - 1
    }

    /// Every document, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let data = self.data;
        let (mut at, mut doc, mut left) = (0usize, 0u32, self.len);
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let delta = varint::get(data, &mut at).and_then(|d| u32::try_from(d).ok());
            match delta {
                Some(d) => {
                    doc = doc.wrapping_add(d);
                    Some(doc)
                }
                None => {
                    left = 0;
                    None
                }
            }
        })
    }
}

/// One value per document, in blocks of [`BLOCK`] with their least and
/// greatest values.
#[derive(Clone, Copy)]
pub struct Column<'a> {
    data: &'a [u8],
    directory: &'a [u8],
    docs: u32,
}

impl Column<'_> {
    pub fn blocks(&self) -> u32 {
        self.docs.div_ceil(BLOCK)
    }

    /// Least and greatest value of block `b`.
    pub fn block_range(&self, b: u32) -> Option<(u64, u64)> {
        let at = b as usize * 24;
        (b < self.blocks()).then(|| (u64_at(self.directory, at + 8), u64_at(self.directory, at + 16)))
    }

    /// The value of document `doc`.
    pub fn get(&self, doc: u32) -> Option<u64> {
        if doc >= self.docs {
            return None;
        }
        let (b, i) = (doc / BLOCK, doc % BLOCK);
        let at = u64_at(self.directory, b as usize * 24) as usize;
        let width = u32::from(*self.data.get(at)?);
        let min = u64_at(self.data, at + 1);
        Some(min.wrapping_add(unpack(self.data.get(at + 9..)?, width, i)))
    }

    /// Append the values of block `b` to `out`.
    pub fn block(&self, b: u32, out: &mut Vec<u64>) {
        if b >= self.blocks() {
            return;
        }
        let at = u64_at(self.directory, b as usize * 24) as usize;
        let Some(&width) = self.data.get(at) else { return };
        let min = u64_at(self.data, at + 1);
        let packed = self.data.get(at + 9..).unwrap_or(&[]);
        let n = (self.docs - b * BLOCK).min(BLOCK);
        out.extend((0..n).map(|i| min.wrapping_add(unpack(packed, u32::from(width), i))));
    }
}

/// Value `i` of `width` bits, least significant bit first.
#[inline]
fn unpack(packed: &[u8], width: u32, i: u32) -> u64 {
    if width == 0 {
        return 0;
    }
    let bit = u64::from(i) * u64::from(width);
    let at = (bit / 8) as usize;
    let mut window = [0u8; 16];
    let avail = packed.get(at..).unwrap_or(&[]);
    let n = avail.len().min(16);
    window[..n].copy_from_slice(&avail[..n]);
    let v = u128::from_le_bytes(window) >> (bit % 8);
    let mask = if width >= 64 { u64::MAX } else { (1u64 << width) - 1 };
    v as u64 & mask
}
