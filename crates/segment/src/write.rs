//! Writing segments: [`SegmentBuilder`] from documents, [`merge`] from
//! segments. Both stream the large sections (postings, columns) to the
//! writer and keep only the dictionary in memory until the end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};

use hashbrown::HashTable;

use crate::read::{FormatError, Segment};
use crate::{term_hash, varint, ColumnKind, BLOCK, MAGIC, MAX_DOCS, NONE, PAGE};

/// A writer that counts what went through it, and sums each section's
/// pages as they pass.
struct Out<W> {
    w: W,
    at: u64,
    /// The bytes of the current section's page so far.
    page: Vec<u8>,
    page_sums: Vec<u8>,
    /// The end of each section so far.
    sections: Vec<u64>,
}

impl<W: Write> Out<W> {
    fn new(w: W) -> Out<W> {
        Out {
            w,
            at: 0,
            page: Vec::with_capacity(PAGE),
            page_sums: Vec::new(),
            sections: Vec::new(),
        }
    }

    fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.w.write_all(bytes)?;
        self.at += bytes.len() as u64;
        while !bytes.is_empty() {
            let n = (PAGE - self.page.len()).min(bytes.len());
            self.page.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.page.len() == PAGE {
                self.sum_page();
            }
        }
        Ok(())
    }

    fn sum_page(&mut self) {
        self.page_sums.extend_from_slice(&term_hash(&self.page).to_le_bytes());
        self.page.clear();
    }

    /// The current section ends here: its last page is summed short.
    fn end_section(&mut self) {
        if !self.page.is_empty() {
            self.sum_page();
        }
        self.sections.push(self.at);
    }

    /// Page sums, section table and trailer after the last section.
    fn finish(mut self, counts: [u32; 4]) -> io::Result<W> {
        let mut tail = std::mem::take(&mut self.page_sums);
        self.sections
            .iter()
            .for_each(|s| tail.extend_from_slice(&s.to_le_bytes()));
        counts.iter().for_each(|n| tail.extend_from_slice(&n.to_le_bytes()));
        let sum = term_hash(&tail);
        tail.extend_from_slice(&sum.to_le_bytes());
        tail.extend_from_slice(&MAGIC);
        self.w.write_all(&tail)?;
        Ok(self.w)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Where a term's bytes end in the term-bytes section: a `u32`, so a
/// segment's terms hold less than 4 GiB.
fn term_end(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| invalid("a segment's term bytes would pass 4 GiB".into()))
}

/// One posting list: count, skip entries, then delta-coded documents.
/// Refuses documents that do not ascend (a merge of damaged parts).
fn encode_list(docs: &[u32], data: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
    data.clear();
    let mut skips = Vec::new();
    let mut prev = 0u32;
    for (i, &d) in docs.iter().enumerate() {
        if i > 0 && d <= prev {
            return Err(invalid(format!("posting list not ascending: {d} after {prev}")));
        }
        if i > 0 && i % BLOCK as usize == 0 {
            let at = u32::try_from(data.len()).map_err(|_| invalid("posting list over 4 GiB".into()))?;
            skips.push((prev, at));
        }
        varint::put(data, u64::from(d - prev));
        prev = d;
    }
    varint::put(out, docs.len() as u64);
    for (base, offset) in skips {
        out.extend_from_slice(&base.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out.extend_from_slice(data);
    Ok(())
}

/// Sections 0 and 1: posting lists as they come, in term order, then
/// where each starts.
#[derive(Default)]
struct PostingsWriter {
    offsets: Vec<u8>,
    data: Vec<u8>,
    list: Vec<u8>,
}

impl PostingsWriter {
    fn add<W: Write>(&mut self, docs: &[u32], out: &mut Out<W>) -> io::Result<()> {
        self.offsets.extend_from_slice(&out.at.to_le_bytes());
        self.list.clear();
        encode_list(docs, &mut self.data, &mut self.list)?;
        out.put(&self.list)
    }

    /// End section 0 and write section 1, the offsets.
    fn finish<W: Write>(mut self, out: &mut Out<W>) -> io::Result<()> {
        self.offsets.extend_from_slice(&out.at.to_le_bytes());
        out.end_section();
        out.put(&self.offsets)?;
        out.end_section();
        Ok(())
    }
}

/// One column: blocks of frame-of-reference bit-packed values, then a
/// directory of (offset, least, greatest) per block.
struct ColumnWriter {
    start: u64,
    values: Vec<u64>,
    directory: Vec<u8>,
    buf: Vec<u8>,
}

impl ColumnWriter {
    fn new(start: u64) -> ColumnWriter {
        ColumnWriter {
            start,
            values: Vec::with_capacity(BLOCK as usize),
            directory: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn push<W: Write>(&mut self, v: u64, out: &mut Out<W>) -> io::Result<()> {
        self.values.push(v);
        if self.values.len() == BLOCK as usize {
            self.flush(out)?;
        }
        Ok(())
    }

    fn flush<W: Write>(&mut self, out: &mut Out<W>) -> io::Result<()> {
        let Some(&first) = self.values.first() else {
            return Ok(());
        };
        let (min, max) = self
            .values
            .iter()
            .fold((first, first), |(a, b), &v| (a.min(v), b.max(v)));
        let width = 64 - (max - min).leading_zeros();
        self.directory.extend_from_slice(&(out.at - self.start).to_le_bytes());
        self.directory.extend_from_slice(&min.to_le_bytes());
        self.directory.extend_from_slice(&max.to_le_bytes());
        self.buf.clear();
        self.buf.push(width as u8);
        self.buf.extend_from_slice(&min.to_le_bytes());
        let (mut acc, mut bits) = (0u128, 0u32);
        for &v in &self.values {
            acc |= u128::from(v - min) << bits;
            bits += width;
            while bits >= 8 {
                self.buf.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            self.buf.push(acc as u8);
        }
        self.values.clear();
        out.put(&self.buf)
    }

    fn finish<W: Write>(mut self, out: &mut Out<W>) -> io::Result<()> {
        self.flush(out)?;
        out.put(&self.directory)
    }
}

/// The dictionary, kinds and trailer, after postings and columns.
struct Tail {
    keys: Vec<u8>,
    ends: Vec<u32>,
    hashes: Vec<u64>,
    field_starts: Vec<u32>,
}

impl Tail {
    fn write<W: Write>(self, mut out: Out<W>, docs: u32, kinds: &[ColumnKind]) -> io::Result<W> {
        out.put(&self.keys)?;
        out.end_section();
        let mut buf = Vec::with_capacity(self.ends.len() * 12);
        self.ends.iter().for_each(|e| buf.extend_from_slice(&e.to_le_bytes()));
        out.put(&buf)?;
        out.end_section();
        buf.clear();
        self.hashes.iter().for_each(|h| buf.extend_from_slice(&h.to_le_bytes()));
        out.put(&buf)?;
        out.end_section();
        buf.clear();
        self.field_starts
            .iter()
            .for_each(|s| buf.extend_from_slice(&s.to_le_bytes()));
        out.put(&buf)?;
        out.end_section();
        buf.clear();
        for k in kinds {
            buf.extend_from_slice(&match k {
                ColumnKind::Value => [0, 0],
                ColumnKind::Term(f) => [1, *f],
            });
        }
        out.put(&buf)?;
        out.end_section();
        let count = |n: usize| u32::try_from(n).map_err(|_| invalid(format!("{n} terms or columns in one segment")));
        out.finish([
            docs,
            count(self.ends.len())?,
            count(self.field_starts.len().saturating_sub(1))?,
            count(kinds.len())?,
        ])
    }
}

/// Terms seen by a builder, each `field byte ++ term bytes`, numbered in
/// the order first seen.
#[derive(Default)]
struct TermTable {
    table: HashTable<u32>,
    /// [`term_hash`] of each term's bytes (without the field).
    hashes: Vec<u64>,
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

/// Where key `id` lies in the bytes of keys ending at `ends`.
fn key_range(ends: &[u32], id: u32) -> std::ops::Range<usize> {
    let start = id.checked_sub(1).map_or(0, |p| ends[p as usize] as usize);
    start..ends[id as usize] as usize
}

impl TermTable {
    fn key(&self, id: u32) -> &[u8] {
        &self.bytes[key_range(&self.ends, id)]
    }

    fn slot_hash(field: u8, hash: u64) -> u64 {
        hash ^ u64::from(field).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// The number of `field`'s `term`, and whether it is new.
    fn intern(&mut self, field: u8, term: &[u8]) -> (u32, bool) {
        let hash = term_hash(term);
        let slot = TermTable::slot_hash(field, hash);
        let (bytes, ends) = (&self.bytes, &self.ends);
        let same = |&id: &u32| {
            let key = &bytes[key_range(ends, id)];
            key.first() == Some(&field) && &key[1..] == term
        };
        if let Some(&id) = self.table.find(slot, same) {
            return (id, false);
        }
        let id = self.ends.len() as u32;
        let (hashes, ends) = (&self.hashes, &self.ends);
        let bytes = &self.bytes;
        self.table.insert_unique(slot, id, |&id| {
            TermTable::slot_hash(bytes[key_range(ends, id).start], hashes[id as usize])
        });
        self.bytes.push(field);
        self.bytes.extend_from_slice(term);
        self.ends.push(self.bytes.len() as u32);
        self.hashes.push(hash);
        (id, true)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn memory(&self) -> usize {
        self.table.capacity() * 5 + self.hashes.capacity() * 8 + self.ends.capacity() * 4 + self.bytes.capacity()
    }
}

/// Collects documents in order, then writes them as one segment.
///
/// ```
/// use sealtrail_segment::{ColumnKind, Segment, SegmentBuilder};
/// let mut b = SegmentBuilder::new(&[ColumnKind::Value]);
/// for (i, word) in ["red", "blue", "red"].iter().enumerate() {
///     b.add_doc();
///     b.add_term(0, word.as_bytes());
///     b.set(0, 100 + i as u64);
/// }
/// let segment = Segment::open(b.finish(Vec::new()).unwrap()).unwrap();
/// let red = segment.find(0, b"red").unwrap().unwrap();
/// let docs: Result<Vec<u32>, _> = segment.postings(red).unwrap().iter().collect();
/// assert_eq!(docs.unwrap(), [0, 2]);
/// assert_eq!(segment.column(0).unwrap().get(2), Ok(Some(102)));
/// ```
pub struct SegmentBuilder {
    terms: TermTable,
    /// Per term: the last document that holds it, so a term repeated in
    /// one document is posted once.
    last_doc: Vec<u32>,
    counts: Vec<u32>,
    /// `term << 32 | doc`, in the order added.
    occurrences: Vec<u64>,
    kinds: Vec<ColumnKind>,
    columns: Vec<Vec<u64>>,
    docs: u32,
}

impl SegmentBuilder {
    pub fn new(kinds: &[ColumnKind]) -> SegmentBuilder {
        SegmentBuilder {
            terms: TermTable::default(),
            last_doc: Vec::new(),
            counts: Vec::new(),
            occurrences: Vec::new(),
            kinds: kinds.to_vec(),
            columns: vec![Vec::new(); kinds.len()],
            docs: 0,
        }
    }

    /// Documents added so far.
    pub fn docs(&self) -> u32 {
        self.docs
    }

    /// Bytes the builder holds, about. [`SegmentBuilder::finish`] needs
    /// about as much again while it sorts.
    pub fn memory(&self) -> usize {
        self.occurrences.capacity() * 8
            + self.columns.iter().map(|c| c.capacity() * 8).sum::<usize>()
            + (self.last_doc.capacity() + self.counts.capacity()) * 4
            + self.terms.memory()
    }

    /// Start the next document, with every column at its default (0, or
    /// [`NONE`] for a term column); `None` once the segment holds
    /// [`MAX_DOCS`].
    pub fn add_doc(&mut self) -> Option<u32> {
        if self.docs >= MAX_DOCS {
            return None;
        }
        for (column, kind) in self.columns.iter_mut().zip(&self.kinds) {
            column.push(match kind {
                ColumnKind::Value => 0,
                ColumnKind::Term(_) => NONE,
            });
        }
        self.docs += 1;
        Some(self.docs - 1)
    }

    /// The current document holds `term` of `field` (a repeat is posted
    /// once). Returns the term's number for [`SegmentBuilder::set`] on a
    /// term column of that field. Before the first document, it only
    /// numbers the term.
    pub fn add_term(&mut self, field: u8, term: &[u8]) -> u64 {
        let (id, new) = self.terms.intern(field, term);
        if new {
            self.last_doc.push(u32::MAX);
            self.counts.push(0);
        }
        if let Some(doc) = self.docs.checked_sub(1) {
            let last = &mut self.last_doc[id as usize];
            if *last != doc {
                *last = doc;
                self.counts[id as usize] += 1;
                self.occurrences.push(u64::from(id) << 32 | u64::from(doc));
            }
        }
        u64::from(id)
    }

    /// Set column `column` of the current document: any value for a value
    /// column, a number from [`SegmentBuilder::add_term`] (of the column's
    /// field) for a term column. Ignored before the first document or for a
    /// column that does not exist.
    pub fn set(&mut self, column: usize, value: u64) {
        if let Some(v) = self.columns.get_mut(column).and_then(|c| c.last_mut()) {
            *v = value;
        }
    }

    /// Write the segment to `w` and return it.
    pub fn finish<W: Write>(self, w: W) -> io::Result<W> {
        let n = self.terms.len();
        // Dictionary order: by field, then hash, then bytes.
        let mut order: Vec<(u128, u32)> = (0..n as u32)
            .map(|id| {
                let field = self.terms.key(id)[0];
                (
                    (u128::from(field) << 64) | u128::from(self.terms.hashes[id as usize]),
                    id,
                )
            })
            .collect();
        order.sort_unstable();
        // Equal (field, hash) of different terms: order those by bytes.
        let mut i = 0;
        while i < order.len() {
            let j = i + order[i..].iter().take_while(|o| o.0 == order[i].0).count();
            if j - i > 1 {
                order[i..j].sort_unstable_by(|a, b| self.terms.key(a.1).cmp(self.terms.key(b.1)));
            }
            i = j;
        }
        let fields = order.last().map_or(0, |o| (o.0 >> 64) as usize + 1);
        let mut field_starts = vec![0u32; fields + 1];
        let mut new_id = vec![0u32; n];
        for (pos, &(k, id)) in order.iter().enumerate() {
            new_id[id as usize] = pos as u32;
            field_starts[(k >> 64) as usize + 1] = pos as u32 + 1;
        }
        for f in 1..=fields {
            field_starts[f] = field_starts[f].max(field_starts[f - 1]);
        }

        // Posting lists by counting sort: occurrences are in document
        // order, so each list comes out ascending.
        let mut starts = vec![0u32; n + 1];
        for (id, &c) in self.counts.iter().enumerate() {
            starts[new_id[id] as usize + 1] = c;
        }
        for t in 0..n {
            starts[t + 1] += starts[t];
        }
        let mut cursor = starts.clone();
        let mut docs = vec![0u32; self.occurrences.len()];
        for &o in &self.occurrences {
            let t = new_id[(o >> 32) as usize] as usize;
            docs[cursor[t] as usize] = o as u32;
            cursor[t] += 1;
        }
        drop(cursor);

        let mut out = Out::new(w);
        let mut postings = PostingsWriter::default();
        for t in 0..n {
            postings.add(&docs[starts[t] as usize..starts[t + 1] as usize], &mut out)?;
        }
        drop(docs);
        postings.finish(&mut out)?;
        for (column, kind) in self.columns.iter().zip(&self.kinds) {
            let mut cw = ColumnWriter::new(out.at);
            for &v in column {
                let v = match kind {
                    ColumnKind::Term(f) if v != NONE => new_id
                        .get(v as usize)
                        .and_then(|&id| id.checked_sub(field_starts.get(*f as usize).copied().unwrap_or(0)))
                        .map_or(NONE, u64::from),
                    _ => v,
                };
                cw.push(v, &mut out)?;
            }
            cw.finish(&mut out)?;
            out.end_section();
        }
        let mut keys = Vec::with_capacity(self.terms.bytes.len());
        let mut ends = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for &(_, id) in &order {
            keys.extend_from_slice(&self.terms.key(id)[1..]);
            ends.push(term_end(keys.len())?);
            hashes.push(self.terms.hashes[id as usize]);
        }
        Tail {
            keys,
            ends,
            hashes,
            field_starts,
        }
        .write(out, self.docs, &self.kinds)
    }
}

/// A part of a merge that does not read back whole; the merge's
/// [`io::Error`] (of kind [`io::ErrorKind::InvalidData`]) carries it.
#[derive(Debug, thiserror::Error)]
#[error("segment {part} of the merge: {error}")]
pub struct MergeDamage {
    /// The part's position in the merge's input.
    pub part: usize,
    pub error: FormatError,
}

/// The new number of a term a merge leaves out.
const DROPPED: u32 = u32::MAX;

/// Write one segment holding the documents of `parts`, in order: document
/// `d` of part `i` becomes document `d + (documents of parts before i)`.
/// Every part must have the same column kinds. A part that turns out
/// damaged fails the merge with a [`MergeDamage`] inside the error,
/// before a wrong list or value is written.
pub fn merge<B: AsRef<[u8]>, W: Write>(parts: &[&Segment<B>], w: W) -> io::Result<W> {
    merge_dropping(parts, &vec![0; parts.len()], w)
}

/// [`merge`], leaving out the first `drop[i]` documents of part `i` (at
/// most all of them): document `d >= drop[i]` of part `i` becomes
/// document `d - drop[i] + (documents kept of parts before i)`. A term
/// left without documents is left out too, and the term numbers in the
/// columns follow. For documents an index has forgotten, which its
/// segments hold first (each segment is in ledger order).
pub fn merge_dropping<B: AsRef<[u8]>, W: Write>(parts: &[&Segment<B>], drop: &[u32], w: W) -> io::Result<W> {
    let Some(first) = parts.first() else {
        return Err(invalid("nothing to merge".into()));
    };
    if drop.len() != parts.len() {
        return Err(invalid(format!(
            "{} parts but {} counts to drop",
            parts.len(),
            drop.len()
        )));
    }
    let drop: Vec<u32> = parts.iter().zip(drop).map(|(p, &d)| d.min(p.docs())).collect();
    let kinds = first.kinds().to_vec();
    if let Some(p) = parts.iter().position(|p| p.kinds() != kinds.as_slice()) {
        return Err(invalid(format!(
            "segment {p} of the merge has other columns than segment 0"
        )));
    }
    let total: u64 = parts.iter().zip(&drop).map(|(p, &d)| u64::from(p.docs() - d)).sum();
    if total > u64::from(MAX_DOCS) {
        return Err(invalid(format!("{total} documents are more than one segment holds")));
    }
    let mut bases = Vec::with_capacity(parts.len());
    let mut base = 0u32;
    for (p, &d) in parts.iter().zip(&drop) {
        bases.push(base);
        base += p.docs() - d;
    }
    let part_damage =
        |part: usize| move |error: FormatError| io::Error::new(io::ErrorKind::InvalidData, MergeDamage { part, error });
    // At most 256: open refuses more fields.
    let fields = parts.iter().map(|p| p.fields()).max().unwrap_or(0).min(256) as usize;
    // For the fields of term columns: per part, old number -> new number.
    let mut renumber: Vec<Vec<Vec<u32>>> = vec![Vec::new(); fields];

    let mut out = Out::new(w);
    let mut postings = PostingsWriter::default();
    let (mut keys, mut ends, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    let mut field_starts = vec![0u32];
    let mut docs = Vec::new();
    for (f, renumber) in (0u8..=255).zip(renumber.iter_mut()) {
        let wanted = kinds.contains(&ColumnKind::Term(f));
        if wanted {
            // A term left out keeps DROPPED: no kept document refers to it.
            *renumber = parts.iter().map(|p| vec![DROPPED; p.field_terms(f).len()]).collect();
        }
        let field_start = ends.len();
        // Each part's terms of the field are in (hash, bytes) order: merge.
        let mut heap = BinaryHeap::new();
        let entry = |i: usize, id: u32| -> io::Result<_> {
            let p = parts[i];
            Ok(Reverse((
                p.term_hash_at(id).map_err(part_damage(i))?,
                p.term_bytes(id).map_err(part_damage(i))?,
                i,
                id,
            )))
        };
        for (i, p) in parts.iter().enumerate() {
            let range = p.field_terms(f);
            if !range.is_empty() {
                heap.push(entry(i, range.start)?);
            }
        }
        while let Some(Reverse((hash, term, _, _))) = heap.peek().copied() {
            docs.clear();
            let new = u32::try_from(ends.len() - field_start).map_err(|_| invalid("over 4G terms".into()))?;
            let mut holders = Vec::new();
            while let Some(Reverse((h, t, i, id))) = heap.peek().copied() {
                if h != hash || t != term {
                    break;
                }
                heap.pop();
                let p = parts[i];
                let kept = docs.len();
                for d in p.postings(id).map_err(part_damage(i))?.iter() {
                    let d = d.map_err(part_damage(i))?;
                    // Below the part's documents (the decoder checks), so
                    // the sum stays below the total.
                    if d >= drop[i] {
                        docs.push(d - drop[i] + bases[i]);
                    }
                }
                let range = p.field_terms(f);
                if wanted && docs.len() > kept {
                    holders.push((i, (id - range.start) as usize));
                }
                let next = id + 1;
                if range.contains(&next) {
                    let e = entry(i, next)?;
                    // A part's terms must rise, or the output's would not.
                    if (e.0 .0, e.0 .1) <= (h, t) {
                        return Err(part_damage(i)(FormatError::Damaged {
                            what: format!("dictionary (field {f}: term {next} not after term {id})"),
                            offset: 0,
                        }));
                    }
                    heap.push(e);
                }
            }
            if docs.is_empty() {
                continue;
            }
            for (i, at) in holders {
                if let Some(slot) = renumber[i].get_mut(at) {
                    *slot = new;
                }
            }
            postings.add(&docs, &mut out)?;
            keys.extend_from_slice(term);
            ends.push(term_end(keys.len())?);
            hashes.push(hash);
        }
        field_starts.push(u32::try_from(ends.len()).map_err(|_| invalid("over 4G terms".into()))?);
    }
    postings.finish(&mut out)?;
    let mut values = Vec::new();
    for (c, kind) in kinds.iter().enumerate() {
        let mut cw = ColumnWriter::new(out.at);
        for (i, p) in parts.iter().enumerate() {
            let column = p
                .column(c)
                .ok_or_else(|| invalid(format!("segment {i} of the merge lacks column {c}")))?;
            let mut doc = 0u32;
            for b in 0..column.blocks() {
                values.clear();
                column.block(b, &mut values).map_err(part_damage(i))?;
                for &v in &values {
                    doc += 1;
                    if doc <= drop[i] {
                        continue;
                    }
                    let v = match kind {
                        ColumnKind::Term(f) if v != NONE => usize::try_from(v)
                            .ok()
                            .and_then(|v| renumber.get(usize::from(*f))?.get(i)?.get(v))
                            .filter(|&&n| n != DROPPED)
                            .map(|&n| u64::from(n))
                            .ok_or_else(|| {
                                part_damage(i)(FormatError::Damaged {
                                    what: format!(
                                        "column {c} (block {b}: term {v} of field {f}, which has {})",
                                        p.field_terms(*f).len()
                                    ),
                                    offset: 0,
                                })
                            })?,
                        _ => v,
                    };
                    cw.push(v, &mut out)?;
                }
            }
        }
        cw.finish(&mut out)?;
        out.end_section();
    }
    Tail {
        keys,
        ends,
        hashes,
        field_starts,
    }
    .write(out, base, &kinds)
}
