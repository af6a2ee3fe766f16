//! Reading segments: [`Segment::open`] checks the trailer, the section
//! table and the checksum of the page sums once; lookups then slice into
//! the bytes without copying them, and each page of [`PAGE`] bytes is
//! checked against its sum the first time any read touches it.
//!
//! Every read that reaches damaged bytes returns a [`FormatError`] naming
//! the section and the byte: a checksum that fails, or bytes whose
//! checksum holds but whose structure does not (a list that does not
//! ascend, an offset out of its section). No read panics, none allocates
//! more than the file's size, and none answers from bytes it has not
//! checked.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use crate::{term_hash, varint, ColumnKind, BLOCK, MAGIC, MAX_DOCS, PAGE};

/// Why bytes are not a segment, or not a whole one.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("segment of {0} bytes is shorter than its trailer")]
    TooShort(usize),
    #[error("segment does not end with the magic {expected:?}", expected = String::from_utf8_lossy(&MAGIC))]
    BadMagic,
    /// A segment of another format version (the index rebuilds it).
    #[error("segment of format {found:?}, where this version reads {expected:?}", expected = String::from_utf8_lossy(&MAGIC))]
    OtherVersion { found: String },
    #[error("segment trailer claims {value} {what}, more than {limit}")]
    BadCount { what: &'static str, value: u64, limit: u64 },
    #[error("segment section {section} ends at byte {end}, outside {start}..{limit}")]
    BadSection {
        section: String,
        start: u64,
        end: u64,
        limit: u64,
    },
    #[error("segment section {section} holds {got} bytes where {counts} need {want}")]
    BadSize {
        section: String,
        got: u64,
        want: u64,
        counts: String,
    },
    #[error("segment column {column} has kind byte {kind}")]
    BadKind { column: usize, kind: u8 },
    #[error(
        "segment field starts: entry {field} is term {next}, after {start}; entries rise from 0 to the {terms} terms"
    )]
    BadFieldStart {
        field: usize,
        start: u32,
        next: u32,
        terms: u32,
    },
    /// The bytes of a page (or of the tail) do not match their checksum.
    #[error("segment {section} fails its checksum in the bytes from {offset}")]
    Checksum { section: String, offset: u64 },
    /// Bytes whose checksum holds but that do not decode.
    #[error("segment {what} is damaged at byte {offset}")]
    Damaged { what: String, offset: u64 },
}

/// Trailer: docs, terms, fields, columns (u32 each), tail sum (u64), magic.
const TRAILER: usize = 32;
/// Sections besides the columns: postings, posting offsets, term bytes,
/// term ends, term hashes, field starts, column kinds.
const FIXED_SECTIONS: usize = 7;
/// Bytes of a column block's directory entry: offset, min, max.
const DIR_ENTRY: usize = 24;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at.saturating_add(4))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at.saturating_add(8))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn damaged(what: impl Into<String>, offset: usize) -> FormatError {
    FormatError::Damaged {
        what: what.into(),
        offset: offset as u64,
    }
}

/// Where the sections lie and which pages have been checked.
struct Layout {
    columns: usize,
    /// Byte range of each section, in the order of docs/index-segments.md.
    sections: Vec<Range<usize>>,
    /// Number of each section's first page among all pages.
    first_page: Vec<usize>,
    /// Where the page sums start (checked on open with the tail).
    sums_at: usize,
    /// One bit per page: its sum matched.
    checked: Vec<AtomicU64>,
}

impl Layout {
    fn section_name(&self, s: usize) -> String {
        section_name(s, self.columns)
    }

    /// `len` bytes at `at` in section `s`, each page they touch checked.
    fn read<'a>(&self, all: &'a [u8], s: usize, at: usize, len: usize) -> Result<&'a [u8], FormatError> {
        let section = &self.sections[s];
        let Some(end) = at.checked_add(len).filter(|&e| e <= section.len()) else {
            return Err(damaged(
                format!("{} (a read of {len} bytes past its end)", self.section_name(s)),
                section.start.saturating_add(at),
            ));
        };
        if len > 0 {
            for page in at / PAGE..=(end - 1) / PAGE {
                self.check_page(all, s, page)?;
            }
        }
        Ok(&all[section.start + at..section.start + end])
    }

    fn check_page(&self, all: &[u8], s: usize, page: usize) -> Result<(), FormatError> {
        let n = self.first_page[s] + page;
        let (word, bit) = (&self.checked[n / 64], 1u64 << (n % 64));
        if word.load(Ordering::Relaxed) & bit != 0 {
            return Ok(());
        }
        let section = &self.sections[s];
        let start = section.start + page * PAGE;
        let end = (start + PAGE).min(section.end);
        if term_hash(&all[start..end]) != u64_at(all, self.sums_at + n * 8) {
            return Err(FormatError::Checksum {
                section: self.section_name(s),
                offset: start as u64,
            });
        }
        word.fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }
}

fn section_name(s: usize, columns: usize) -> String {
    match s {
        0 => "postings".into(),
        1 => "posting offsets".into(),
        s if s < 2 + columns => format!("column {}", s - 2),
        s => match s - columns {
            2 => "term bytes",
            3 => "term ends",
            4 => "term hashes",
            5 => "field starts",
            6 => "column kinds",
            _ => "tail",
        }
        .into(),
    }
}

/// Pages of a section of `len` bytes.
fn pages(len: usize) -> usize {
    len.div_ceil(PAGE)
}

/// The bytes of a segment and its layout, as one copyable reference.
#[derive(Clone, Copy)]
struct Pages<'a> {
    all: &'a [u8],
    layout: &'a Layout,
}

impl<'a> Pages<'a> {
    fn read(&self, s: usize, at: usize, len: usize) -> Result<&'a [u8], FormatError> {
        self.layout.read(self.all, s, at, len)
    }

    /// File offset of byte `at` of section `s`, for errors.
    fn offset(&self, s: usize, at: usize) -> usize {
        self.layout.sections[s].start.saturating_add(at)
    }

    fn u32(&self, s: usize, at: usize) -> Result<u32, FormatError> {
        Ok(u32_at(self.read(s, at, 4)?, 0))
    }

    fn u64(&self, s: usize, at: usize) -> Result<u64, FormatError> {
        Ok(u64_at(self.read(s, at, 8)?, 0))
    }
}

/// One segment over its bytes (a `Vec<u8>`, a mapped file, …).
pub struct Segment<B = Vec<u8>> {
    bytes: B,
    docs: u32,
    terms: u32,
    fields: u32,
    kinds: Vec<ColumnKind>,
    layout: Layout,
    /// Each field's first term, and the end of the last: checked on open.
    field_starts: Vec<u32>,
}

/// The trailer, section table and page sums of `all`, checked against
/// the tail sum: (docs, terms, fields, columns, section ends, sums_at).
struct Tail {
    docs: u32,
    terms: u32,
    fields: u32,
    columns: usize,
    sections: Vec<Range<usize>>,
    sums_at: usize,
    pages: usize,
}

fn read_tail(all: &[u8], check_sum: bool) -> Result<Tail, FormatError> {
    let len = all.len();
    if len < TRAILER {
        return Err(FormatError::TooShort(len));
    }
    let magic = &all[len - 8..];
    if magic != MAGIC {
        // "STSEG" and three digits: a segment of another version.
        if magic[..5] == MAGIC[..5] && magic[5..].iter().all(u8::is_ascii_digit) {
            return Err(FormatError::OtherVersion {
                found: String::from_utf8_lossy(magic).into_owned(),
            });
        }
        return Err(FormatError::BadMagic);
    }
    let t = len - TRAILER;
    let (docs, terms, fields, columns) = (
        u32_at(all, t),
        u32_at(all, t + 4),
        u32_at(all, t + 8),
        u32_at(all, t + 12),
    );
    let tail_sum_at = t + 16;
    let count_limit = |what, value: u64, limit: u64| {
        if value > limit {
            Err(FormatError::BadCount { what, value, limit })
        } else {
            Ok(())
        }
    };
    // Each section needs 8 bytes of table: a count the file cannot hold
    // is refused before anything is allocated for it.
    count_limit(
        "columns",
        u64::from(columns),
        ((t / 8).saturating_sub(FIXED_SECTIONS)) as u64,
    )?;
    count_limit("documents", u64::from(docs), u64::from(MAX_DOCS))?;
    count_limit("fields", u64::from(fields), 256)?;
    let columns = columns as usize;
    let count = FIXED_SECTIONS + columns;
    let table = t.checked_sub(count * 8).ok_or(FormatError::TooShort(len))?;
    let mut sections = Vec::with_capacity(count);
    let mut start = 0usize;
    for s in 0..count {
        let end = u64_at(all, table + s * 8);
        match usize::try_from(end).ok().filter(|&e| e >= start && e <= table) {
            Some(end) => {
                sections.push(start..end);
                start = end;
            }
            None => {
                return Err(FormatError::BadSection {
                    section: section_name(s, columns),
                    start: start as u64,
                    end,
                    limit: table as u64,
                })
            }
        }
    }
    let sums_at = start;
    let pages: usize = sections.iter().map(|s| pages(s.len())).sum();
    if check_sum && term_hash(&all[sums_at..tail_sum_at]) != u64_at(all, tail_sum_at) {
        return Err(FormatError::Checksum {
            section: "tail".into(),
            offset: sums_at as u64,
        });
    }
    if table - sums_at != pages * 8 {
        return Err(FormatError::BadSize {
            section: "page sums".into(),
            got: (table - sums_at) as u64,
            want: pages as u64 * 8,
            counts: format!("sections of {sums_at} bytes"),
        });
    }
    Ok(Tail {
        docs,
        terms,
        fields,
        columns,
        sections,
        sums_at,
        pages,
    })
}

/// Recompute every page sum and the tail sum of a segment whose trailer
/// and section table hold together, leaving every other byte as it is.
///
/// For tests and fuzzing only: it lets damage inside sections pass the
/// checksums, so that the structural checks behind them are exercised.
#[doc(hidden)]
pub fn reseal(bytes: &mut [u8]) -> Result<(), FormatError> {
    let tail = read_tail(bytes, false)?;
    let mut n = 0;
    for s in &tail.sections {
        let mut at = s.start;
        while at < s.end {
            let end = (at + PAGE).min(s.end);
            let sum = term_hash(&bytes[at..end]);
            let to = tail.sums_at + n * 8;
            bytes[to..to + 8].copy_from_slice(&sum.to_le_bytes());
            n += 1;
            at = end;
        }
    }
    let tail_sum_at = bytes.len() - 16;
    let sum = term_hash(&bytes[tail.sums_at..tail_sum_at]);
    bytes[tail_sum_at..tail_sum_at + 8].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

impl<B: AsRef<[u8]>> Segment<B> {
    /// Check the trailer, the section table, the page sums (against the
    /// tail sum) and the small sections; the rest is checked page by page
    /// as reads reach it.
    pub fn open(bytes: B) -> Result<Segment<B>, FormatError> {
        let all = bytes.as_ref();
        let Tail {
            docs,
            terms,
            fields,
            columns: c,
            sections,
            sums_at,
            pages: page_count,
        } = read_tail(all, true)?;
        let size = |s: usize| sections[s].len() as u64;
        let counts = format!("{docs} documents, {terms} terms, {fields} fields, {c} columns");
        let expect = |s: usize, want: u64| {
            if size(s) == want {
                Ok(())
            } else {
                Err(FormatError::BadSize {
                    section: section_name(s, c),
                    got: size(s),
                    want,
                    counts: counts.clone(),
                })
            }
        };
        expect(1, (u64::from(terms) + 1) * 8)?;
        expect(3 + c, u64::from(terms) * 4)?;
        expect(4 + c, u64::from(terms) * 8)?;
        expect(5 + c, (u64::from(fields) + 1) * 4)?;
        expect(6 + c, c as u64 * 2)?;
        let blocks = u64::from(docs.div_ceil(BLOCK));
        for col in 0..c {
            if size(2 + col) < blocks * DIR_ENTRY as u64 {
                return Err(FormatError::BadSize {
                    section: section_name(2 + col, c),
                    got: size(2 + col),
                    want: blocks * DIR_ENTRY as u64,
                    counts: counts.clone(),
                });
            }
        }
        let mut first_page = Vec::with_capacity(sections.len());
        let mut n = 0;
        for s in &sections {
            first_page.push(n);
            n += pages(s.len());
        }
        let layout = Layout {
            columns: c,
            sections,
            first_page,
            sums_at,
            checked: (0..page_count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        };
        let kind_bytes = layout.read(all, 6 + c, 0, c * 2)?;
        let mut kinds = Vec::with_capacity(c);
        for (col, k) in kind_bytes.chunks_exact(2).enumerate() {
            kinds.push(match (k[0], k[1]) {
                (0, 0) => ColumnKind::Value,
                (1, f) => ColumnKind::Term(f),
                (kind, _) => return Err(FormatError::BadKind { column: col, kind }),
            });
        }
        let starts = layout.read(all, 5 + c, 0, (fields as usize + 1) * 4)?;
        let field_starts: Vec<u32> = starts.chunks_exact(4).map(|b| u32_at(b, 0)).collect();
        // From 0, never decreasing, to every term: each term in one field.
        let mut start = 0;
        for (f, &next) in field_starts.iter().enumerate() {
            let last = f == fields as usize;
            if next < start || next > terms || (last && next != terms) || (f == 0 && next != 0) {
                return Err(FormatError::BadFieldStart {
                    field: f,
                    start,
                    next,
                    terms,
                });
            }
            start = next;
        }
        Ok(Segment {
            bytes,
            docs,
            terms,
            fields,
            kinds,
            layout,
            field_starts,
        })
    }

    /// Pages whose checksum reads have checked so far (each is checked
    /// once): what the reads since open have touched.
    pub fn checked_pages(&self) -> usize {
        let words = self.layout.checked.iter();
        words.map(|w| w.load(Ordering::Relaxed).count_ones() as usize).sum()
    }

    fn pages(&self) -> Pages<'_> {
        Pages {
            all: self.bytes.as_ref(),
            layout: &self.layout,
        }
    }

    fn column_count(&self) -> usize {
        self.kinds.len()
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
        self.layout.sections[2 + self.column_count()].len()
    }

    pub fn kinds(&self) -> &[ColumnKind] {
        &self.kinds
    }

    /// The numbers of `field`'s terms, in dictionary order.
    pub fn field_terms(&self, field: u8) -> Range<u32> {
        let f = usize::from(field);
        match (self.field_starts.get(f), self.field_starts.get(f + 1)) {
            (Some(&start), Some(&end)) => start..end,
            _ => 0..0,
        }
    }

    fn term_in_range(&self, term: u32, what: &str) -> Result<(), FormatError> {
        if term < self.terms {
            Ok(())
        } else {
            Err(damaged(
                format!("{what} (term {term} of {})", self.terms),
                self.layout.sections[3 + self.column_count()].start,
            ))
        }
    }

    /// The bytes of term `term` (without its field).
    pub fn term_bytes(&self, term: u32) -> Result<&[u8], FormatError> {
        self.term_in_range(term, "term ends")?;
        let (pages, c) = (self.pages(), self.column_count());
        let (start, end) = match term.checked_sub(1) {
            None => (0, pages.u32(3 + c, 0)?),
            Some(p) => {
                let ends = pages.read(3 + c, p as usize * 4, 8)?;
                (u32_at(ends, 0), u32_at(ends, 4))
            }
        };
        if start > end {
            return Err(damaged(
                format!("term ends (term {term} ends at {end}, before its start {start})"),
                pages.offset(3 + c, term as usize * 4),
            ));
        }
        pages.read(2 + c, start as usize, (end - start) as usize)
    }

    pub fn term_hash_at(&self, term: u32) -> Result<u64, FormatError> {
        self.term_in_range(term, "term hashes")?;
        self.pages().u64(4 + self.column_count(), term as usize * 8)
    }

    /// The number of `field`'s term `term`, if the segment has it.
    pub fn find(&self, field: u8, term: &[u8]) -> Result<Option<u32>, FormatError> {
        let range = self.field_terms(field);
        let hash = term_hash(term);
        // First term whose hash is not less than `hash`.
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.term_hash_at(mid)? < hash {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for t in lo..range.end {
            if self.term_hash_at(t)? != hash {
                break;
            }
            if self.term_bytes(t)? == term {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// The documents holding term `term`.
    pub fn postings(&self, term: u32) -> Result<Postings<'_>, FormatError> {
        self.term_in_range(term, "posting offsets")?;
        let pages = self.pages();
        let offsets = pages.read(1, term as usize * 8, 16)?;
        let (start, end) = (u64_at(offsets, 0), u64_at(offsets, 8));
        let bad = |what: String| damaged(format!("posting offsets ({what})"), pages.offset(1, term as usize * 8));
        let postings_len = self.layout.sections[0].len();
        let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
            return Err(bad(format!("term {term}'s list at {start}..{end}")));
        };
        if start > end || end > postings_len {
            return Err(bad(format!(
                "term {term}'s list at {start}..{end}, outside 0..{postings_len}"
            )));
        }
        Postings::parse(pages, term, start..end, self.docs)
    }

    /// Column `column`, if there is one.
    pub fn column(&self, column: usize) -> Option<Column<'_>> {
        (column < self.column_count()).then(|| {
            let section = 2 + column;
            let blocks = self.docs.div_ceil(BLOCK);
            // Open checked that the directory fits.
            let dir_at = self.layout.sections[section].len() - blocks as usize * DIR_ENTRY;
            Column {
                pages: self.pages(),
                section,
                dir_at,
                docs: self.docs,
            }
        })
    }
}

/// One posting list: ascending documents, in blocks of [`BLOCK`] that can
/// be decoded on their own (for reading backwards or skipping ahead).
#[derive(Clone, Copy)]
pub struct Postings<'a> {
    pages: Pages<'a>,
    term: u32,
    len: u32,
    /// Every document is below.
    docs: u32,
    /// (document before the block, offset in the data) for blocks 1…
    skips: &'a [u8],
    /// Where the delta-coded documents start in the postings section,
    /// and their length.
    data_at: usize,
    data_len: usize,
}

impl<'a> Postings<'a> {
    fn parse(pages: Pages<'a>, term: u32, list: Range<usize>, docs: u32) -> Result<Postings<'a>, FormatError> {
        let bad =
            |what: String, at: usize| damaged(format!("posting list of term {term} ({what})"), pages.offset(0, at));
        let head = pages.read(0, list.start, list.len().min(10))?;
        let mut at = 0;
        let len = varint::get(head, &mut at)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n <= docs)
            .ok_or_else(|| bad(format!("a count that is no number of {docs} documents"), list.start))?;
        let skip_len = len.div_ceil(BLOCK).saturating_sub(1) as usize * 8;
        let skips_at = list.start + at;
        if skip_len > list.end - skips_at {
            return Err(bad(format!("{len} documents, {skip_len} bytes of skips"), skips_at));
        }
        let skips = pages.read(0, skips_at, skip_len)?;
        let (data_at, data_len) = (skips_at + skip_len, list.end - skips_at - skip_len);
        if len == 0 && data_len > 0 {
            return Err(bad("no documents but some bytes".into(), data_at));
        }
        Ok(Postings {
            pages,
            term,
            len,
            docs,
            skips,
            data_at,
            data_len,
        })
    }

    fn damaged(&self, what: String, at: usize) -> FormatError {
        damaged(
            format!("posting list of term {} ({what})", self.term),
            self.pages.offset(0, at),
        )
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

    /// Where block `b`'s varints start within the data (the data's length
    /// past the last block).
    fn block_start(&self, b: u32) -> usize {
        match b.checked_sub(1) {
            None => 0,
            Some(_) if b >= self.blocks() => self.data_len,
            Some(p) => u32_at(self.skips, p as usize * 8 + 4) as usize,
        }
    }

    /// Append the documents of block `b` to `out` (nothing past the last
    /// block). On an error `out` is as it was.
    pub fn block(&self, b: u32, out: &mut Vec<u32>) -> Result<(), FormatError> {
        if b >= self.blocks() {
            return Ok(());
        }
        let (from, to) = (self.block_start(b), self.block_start(b + 1));
        if from > to || to > self.data_len {
            return Err(self.damaged(
                format!("block {b} at {from}..{to} of {} bytes", self.data_len),
                self.data_at,
            ));
        }
        let bytes = self.pages.read(0, self.data_at + from, to - from)?;
        let kept = out.len();
        let decoded = self.decode(b, bytes, out);
        if decoded.is_err() {
            out.truncate(kept);
        }
        decoded.map_err(|(what, at)| self.damaged(what, self.data_at + from + at))
    }

    fn decode(&self, b: u32, bytes: &[u8], out: &mut Vec<u32>) -> Result<(), (String, usize)> {
        let n = (self.len - b * BLOCK).min(BLOCK);
        let mut prev = self.block_base(b);
        let mut at = 0;
        for _ in 0..n {
            let start = at;
            let delta = varint::get(bytes, &mut at)
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| (format!("block {b} cut short or over 32 bits"), start))?;
            let doc = match prev {
                None => Some(delta),
                Some(p) if delta > 0 => p.checked_add(delta),
                Some(_) => None,
            }
            .filter(|&d| d < self.docs)
            .ok_or_else(|| {
                (
                    format!("block {b}: not ascending or past {} documents", self.docs),
                    start,
                )
            })?;
            out.push(doc);
            prev = Some(doc);
        }
        if at != bytes.len() {
            return Err((format!("block {b}: {} bytes after its documents", bytes.len() - at), at));
        }
        if let Some(next) = self.block_base(b + 1) {
            if prev != Some(next) {
                return Err((
                    format!("block {b} ends at {prev:?}, the next block's base is {next}"),
                    at,
                ));
            }
        }
        Ok(())
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

    /// Every document, ascending; an error ends it.
    pub fn iter(&self) -> impl Iterator<Item = Result<u32, FormatError>> + 'a {
        let list = *self;
        let mut block = Vec::with_capacity(BLOCK as usize);
        let (mut b, mut i, mut failed) = (0u32, 0usize, false);
        std::iter::from_fn(move || loop {
            if failed {
                return None;
            }
            if let Some(&d) = block.get(i) {
                i += 1;
                return Some(Ok(d));
            }
            if b >= list.blocks() {
                return None;
            }
            block.clear();
            i = 0;
            if let Err(e) = list.block(b, &mut block) {
                failed = true;
                return Some(Err(e));
            }
            b += 1;
        })
    }
}

/// One value per document, in blocks of [`BLOCK`] with their least and
/// greatest values.
#[derive(Clone, Copy)]
pub struct Column<'a> {
    pages: Pages<'a>,
    section: usize,
    /// Where the directory starts in the section (the data's length).
    dir_at: usize,
    docs: u32,
}

impl Column<'_> {
    pub fn blocks(&self) -> u32 {
        self.docs.div_ceil(BLOCK)
    }

    fn damaged(&self, what: String, at: usize) -> FormatError {
        damaged(
            format!("{} ({what})", self.pages.layout.section_name(self.section)),
            self.pages.offset(self.section, at),
        )
    }

    /// Block `b`'s directory entry: (offset, least, greatest).
    fn entry(&self, b: u32) -> Result<(usize, u64, u64), FormatError> {
        let at = self.dir_at + b as usize * DIR_ENTRY;
        let e = self.pages.read(self.section, at, DIR_ENTRY)?;
        let (offset, min, max) = (u64_at(e, 0), u64_at(e, 8), u64_at(e, 16));
        match usize::try_from(offset) {
            Ok(offset) if offset <= self.dir_at && min <= max => Ok((offset, min, max)),
            _ => Err(self.damaged(format!("block {b}: offset {offset}, least {min}, greatest {max}"), at)),
        }
    }

    /// Least and greatest value of block `b` (`None` past the last).
    pub fn block_range(&self, b: u32) -> Result<Option<(u64, u64)>, FormatError> {
        if b >= self.blocks() {
            return Ok(None);
        }
        let (_, min, max) = self.entry(b)?;
        Ok(Some((min, max)))
    }

    /// Block `b`'s packed values after their header checks: (offset,
    /// least, greatest, width, packed bytes, values).
    #[allow(clippy::type_complexity)]
    fn packed(&self, b: u32) -> Result<(usize, u64, u64, u32, &[u8], u32), FormatError> {
        let (from, min, max) = self.entry(b)?;
        let to = if b + 1 < self.blocks() {
            self.entry(b + 1)?.0
        } else {
            self.dir_at
        };
        if from > to {
            return Err(self.damaged(format!("block {b} at {from}..{to}"), from));
        }
        let bytes = self.pages.read(self.section, from, to - from)?;
        let n = (self.docs - b * BLOCK).min(BLOCK);
        let width = bytes.first().map_or(u32::MAX, |&w| u32::from(w));
        let packed_len = (u64::from(n) * u64::from(width)).div_ceil(8);
        if width > 64 || bytes.len() as u64 != 9 + packed_len || u64_at(bytes, 1) != min {
            return Err(self.damaged(
                format!(
                    "block {b}: {} bytes, width {width}, least {}",
                    bytes.len(),
                    u64_at(bytes, 1)
                ),
                from,
            ));
        }
        Ok((from, min, max, width, &bytes[9..], n))
    }

    /// The value of document `doc` (`None` past the last document).
    pub fn get(&self, doc: u32) -> Result<Option<u64>, FormatError> {
        if doc >= self.docs {
            return Ok(None);
        }
        let (b, i) = (doc / BLOCK, doc % BLOCK);
        let (from, min, max, width, packed, _) = self.packed(b)?;
        match min.checked_add(unpack(packed, width, i)).filter(|&v| v <= max) {
            Some(v) => Ok(Some(v)),
            None => Err(self.damaged(format!("document {doc} above its block's greatest {max}"), from)),
        }
    }

    /// Append the values of block `b` to `out` (nothing past the last
    /// block). On an error `out` is as it was.
    pub fn block(&self, b: u32, out: &mut Vec<u64>) -> Result<(), FormatError> {
        if b >= self.blocks() {
            return Ok(());
        }
        let (from, min, max, width, packed, n) = self.packed(b)?;
        let kept = out.len();
        let (mut least, mut greatest) = (u64::MAX, 0);
        for i in 0..n {
            let Some(v) = min.checked_add(unpack(packed, width, i)) else {
                out.truncate(kept);
                return Err(self.damaged(format!("block {b}: value {i} overflows"), from));
            };
            least = least.min(v);
            greatest = greatest.max(v);
            out.push(v);
        }
        if least != min || greatest != max {
            out.truncate(kept);
            return Err(self.damaged(
                format!("block {b} holds {least}..={greatest}, its directory says {min}..={max}"),
                from,
            ));
        }
        Ok(())
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
    (v & u128::from(mask)) as u64
}
